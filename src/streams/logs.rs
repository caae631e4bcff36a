//! The log streams: PSTN calls, Direct Routing calls and (beta) SMS, blocked users and
//! conferencing dial-outs, from the functions `getPstnCalls(fromDateTime=…,toDateTime=…)`
//! and its siblings.
//!
//! What the API does and what this module does about it (learn.microsoft.com, the
//! functions' pages; docs issue microsoftgraph/microsoft-graph-docs#12668):
//! - a request may span at most 90 days: windows are split into chunks;
//! - `toDateTime` is inclusive for PSTN, SMS and blocked users, exclusive for Direct
//!   Routing, and `$filter` is ignored by Direct Routing: every chunk keeps exactly the rows
//!   whose time lies in its half-open `[from, to)`, whatever the endpoint returned, so no
//!   row is lost or doubled at a chunk boundary;
//! - pages of 1,000 rows follow `@odata.nextLink` (`$skip`); `@odata.count` counts the page.
//!
//! Touches Graph only through [`GraphClient`]; rows come back as Graph sent them.

use chrono::{DateTime, SecondsFormat, Utc};
use futures::Stream;
use serde_json::Value;
use url::Url;

use super::StreamKind;
use super::paging::Pager;
use crate::graph::{GraphClient, GraphError};
use crate::window::Window;

/// The longest window one request may cover.
pub const MAX_REQUEST_DAYS: u32 = 90;
/// Rows per page of a log function, as Graph pages them (for estimates).
pub const PAGE_SIZE: u32 = 1000;

/// How a log function is called and how its rows are placed.
#[derive(Debug, PartialEq, Eq)]
pub struct LogStream {
    pub kind: StreamKind,
    /// The bound function of `communications/callRecords`.
    pub function: &'static str,
    pub beta_only: bool,
    /// The row's time that selects it and decides its `dt` partition; None for the dial-out
    /// report, which aggregates the requested range (requested one UTC day at a time).
    pub time_field: Option<&'static str>,
    /// The row's unique id, when it has one: used to drop a row a shifting page repeats.
    pub id_field: Option<&'static str>,
}

pub const LOG_STREAMS: [LogStream; 5] = [
    LogStream {
        kind: StreamKind::PstnCalls,
        function: "getPstnCalls",
        beta_only: false,
        time_field: Some("startDateTime"),
        id_field: Some("id"),
    },
    LogStream {
        kind: StreamKind::DirectRoutingCalls,
        function: "getDirectRoutingCalls",
        beta_only: false,
        time_field: Some("startDateTime"),
        id_field: Some("id"),
    },
    LogStream {
        kind: StreamKind::SmsLogs,
        function: "getSmsLog",
        beta_only: true,
        time_field: Some("sentDateTime"),
        id_field: Some("smsId"),
    },
    LogStream {
        kind: StreamKind::PstnBlockedUsers,
        function: "getPstnBlockedUsersLog",
        beta_only: true,
        time_field: Some("blockDateTime"),
        id_field: None,
    },
    LogStream {
        kind: StreamKind::PstnOnlineMeetingDialouts,
        function: "getPstnOnlineMeetingDialoutReport",
        beta_only: true,
        time_field: None,
        id_field: None,
    },
];

impl LogStream {
    /// The requests a window takes: chunks of at most `chunk_days` (≤ 90) days, or one per
    /// UTC day for the dial-out report so that each `dt` partition holds that day's report.
    pub fn chunks(&self, window: Window, chunk_days: u32) -> Vec<Window> {
        if self.time_field.is_none() {
            return window.chunks(1);
        }
        window.chunks(chunk_days.clamp(1, MAX_REQUEST_DAYS))
    }

    /// The row's time, which must lie in the chunk's `[from, to)` for the row to be kept.
    pub fn row_time(&self, row: &Value) -> Option<Result<DateTime<Utc>, String>> {
        let field = self.time_field?;
        Some(match row.get(field).and_then(Value::as_str) {
            Some(text) => DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| format!("{field} `{text}` is not an RFC 3339 time: {e}")),
            None => Err(format!("the row has no {field}")),
        })
    }

    pub fn row_id<'v>(&self, row: &'v Value) -> Option<&'v str> {
        row.get(self.id_field?).and_then(Value::as_str)
    }
}

/// `{api}/communications/callRecords/{function}(fromDateTime={from},toDateTime={to})`.
///
/// Rows are cut to the chunk on the client, but the dial-out report aggregates what the
/// function selects and has no time of its own to cut by: it is asked for the range up to
/// the last 100 ns tick before `to` (Graph's time resolution), so that an inclusive end
/// does not count calls of the next day.
pub fn request_url(client: &GraphClient, stream: &LogStream, chunk: Window) -> Url {
    let to = if stream.time_field.is_none() {
        chunk.to - chrono::Duration::nanoseconds(100)
    } else {
        chunk.to
    };
    let call = format!(
        "{}(fromDateTime={},toDateTime={})",
        stream.function,
        odata_timestamp(chunk.from),
        odata_timestamp(to)
    );
    client.api_url(&format!("communications/callRecords/{call}"))
}

/// Pages of rows from a [`request_url`], following `@odata.nextLink`. The rows are as Graph
/// sent them, also those outside the chunk at an inclusive end: the caller keeps only the
/// chunk's half-open range.
pub fn pages(
    client: &GraphClient,
    url: Url,
) -> impl Stream<Item = Result<Vec<Value>, GraphError>> + '_ {
    futures::stream::try_unfold(Pager::new(client, url), |mut pager| async move {
        Ok(pager.next_page().await?.map(|rows| (rows, pager)))
    })
}

/// RFC 3339 in UTC with `Z`, with Graph's 7 fractional digits when the time has any.
fn odata_timestamp(at: DateTime<Utc>) -> String {
    if at.timestamp_subsec_nanos() == 0 {
        at.to_rfc3339_opts(SecondsFormat::Secs, true)
    } else {
        let ticks = at.timestamp_subsec_nanos() / 100;
        format!("{}.{ticks:07}Z", at.format("%Y-%m-%dT%H:%M:%S"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::parse_bound;
    use serde_json::json;

    fn window(from: &str, to: &str) -> Window {
        Window::new(parse_bound(from).unwrap(), parse_bound(to).unwrap()).unwrap()
    }

    #[test]
    fn request_times_use_graph_precision() {
        assert_eq!(
            odata_timestamp(parse_bound("2026-11-20").unwrap()),
            "2026-11-20T00:00:00Z"
        );
        let tick_before = parse_bound("2026-11-21").unwrap() - chrono::Duration::nanoseconds(100);
        assert_eq!(odata_timestamp(tick_before), "2026-11-20T23:59:59.9999999Z");
    }

    #[test]
    fn every_log_stream_has_its_kind_and_function() {
        for stream in &LOG_STREAMS {
            assert_eq!(stream.kind.log(), Some(stream));
            assert!(stream.function.starts_with("get"));
        }
        assert!(StreamKind::CallRecords.log().is_none());
        assert!(StreamKind::SmsLogs.beta_only() && !StreamKind::PstnCalls.beta_only());
    }

    #[test]
    fn long_windows_are_split_at_90_days_and_the_dial_out_report_per_day() {
        let year = window("2026-01-01", "2027-01-01");
        let pstn = StreamKind::PstnCalls.log().unwrap();
        let chunks = pstn.chunks(year, 400);
        assert_eq!(chunks.len(), 5, "365 days in chunks of at most 90");
        assert!(
            chunks
                .iter()
                .all(|c| c.to - c.from <= chrono::Duration::days(90))
        );
        assert_eq!(pstn.chunks(year, 30).len(), 13);
        let dialouts = StreamKind::PstnOnlineMeetingDialouts.log().unwrap();
        assert_eq!(
            dialouts
                .chunks(window("2026-11-20", "2026-11-23"), 30)
                .len(),
            3
        );
    }

    #[test]
    fn rows_are_timed_and_identified_by_their_stream_fields() {
        let sms = StreamKind::SmsLogs.log().unwrap();
        let row = json!({"smsId": "s1", "sentDateTime": "2022-10-06T11:15:48.6113555Z"});
        assert_eq!(sms.row_id(&row), Some("s1"));
        assert_eq!(
            sms.row_time(&row).unwrap().unwrap(),
            parse_bound("2022-10-06T11:15:48.6113555Z").unwrap()
        );
        assert!(sms.row_time(&json!({})).unwrap().is_err());
        let dialouts = StreamKind::PstnOnlineMeetingDialouts.log().unwrap();
        assert!(dialouts.row_time(&row).is_none());
    }
}
