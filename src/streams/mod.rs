//! What to request from Microsoft Graph for each exported stream, and how to assemble a
//! complete record from several Graph pages.
//!
//! Touches Graph only through [`crate::graph::GraphClient`]; returns JSON exactly as Graph
//! sent it (plus merged pages), leaving its meaning to the flattener.

pub mod call_records;
pub mod logs;
mod paging;

use std::fmt;
use std::str::FromStr;

/// An exportable stream, named as on the command line and in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StreamKind {
    CallRecords,
    PstnCalls,
    DirectRoutingCalls,
    SmsLogs,
    PstnBlockedUsers,
    PstnOnlineMeetingDialouts,
}

impl StreamKind {
    pub const ALL: [StreamKind; 6] = [
        StreamKind::CallRecords,
        StreamKind::PstnCalls,
        StreamKind::DirectRoutingCalls,
        StreamKind::SmsLogs,
        StreamKind::PstnBlockedUsers,
        StreamKind::PstnOnlineMeetingDialouts,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StreamKind::CallRecords => "call_records",
            StreamKind::PstnCalls => "pstn_calls",
            StreamKind::DirectRoutingCalls => "direct_routing_calls",
            StreamKind::SmsLogs => "sms_logs",
            StreamKind::PstnBlockedUsers => "pstn_blocked_users",
            StreamKind::PstnOnlineMeetingDialouts => "pstn_online_meeting_dialouts",
        }
    }

    /// The log function behind a log stream; None for call records.
    pub fn log(self) -> Option<&'static logs::LogStream> {
        logs::LOG_STREAMS.iter().find(|stream| stream.kind == self)
    }

    /// Whether Graph offers the stream only on its beta endpoint.
    pub fn beta_only(self) -> bool {
        self.log().is_some_and(|log| log.beta_only)
    }
}

impl fmt::Display for StreamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A stream name that is not one of [`StreamKind::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown stream {0:?}; expected one of call_records, pstn_calls, direct_routing_calls, \
     sms_logs, pstn_blocked_users, pstn_online_meeting_dialouts"
)]
pub struct UnknownStream(pub String);

impl FromStr for StreamKind {
    type Err = UnknownStream;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StreamKind::ALL
            .into_iter()
            .find(|kind| kind.name() == s)
            .ok_or_else(|| UnknownStream(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in StreamKind::ALL {
            assert_eq!(kind.to_string().parse::<StreamKind>(), Ok(kind));
        }
        assert!("callRecords".parse::<StreamKind>().is_err());
    }
}
