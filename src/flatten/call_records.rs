//! One complete callRecord (sessions, segments, media, streams, participants merged in)
//! → rows of the eight call tables.
//!
//! This walker decides which JSON object is a row of which table and supplies the call
//! id and the 0-based position keys (API order); the columns themselves come from the
//! declarations in `schemas/call_*.json`.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

use super::{FlattenIssue, RowContext, TableBuilder, child_array};
use crate::privacy::Privacy;
use crate::schema;

/// Builders of every table of the `call_records` stream, for one partition.
pub struct CallRecordTables {
    pub records: TableBuilder,
    pub participants: TableBuilder,
    pub modalities: TableBuilder,
    pub sessions: TableBuilder,
    pub segments: TableBuilder,
    pub media: TableBuilder,
    pub streams: TableBuilder,
    pub hops: TableBuilder,
}

impl Default for CallRecordTables {
    /// Builders that write every value as read (privacy mode `keep`).
    fn default() -> Self {
        Self::new(&Privacy::default())
    }
}

impl CallRecordTables {
    /// Builders that write personal data as `privacy` says.
    pub fn new(privacy: &Privacy) -> Self {
        let builder = |name: &str| {
            TableBuilder::with_privacy(
                schema::table(name)
                    .unwrap_or_else(|| panic!("schemas/{name}.json is not declared")),
                privacy,
            )
        };
        CallRecordTables {
            records: builder("call_records"),
            participants: builder("call_participants"),
            modalities: builder("call_modalities"),
            sessions: builder("call_sessions"),
            segments: builder("call_segments"),
            media: builder("call_media"),
            streams: builder("call_media_streams"),
            hops: builder("call_trace_route_hops"),
        }
    }

    pub fn builders_mut(&mut self) -> [&mut TableBuilder; 8] {
        [
            &mut self.records,
            &mut self.participants,
            &mut self.modalities,
            &mut self.sessions,
            &mut self.segments,
            &mut self.media,
            &mut self.streams,
            &mut self.hops,
        ]
    }
}

/// Why a record cannot be flattened at all (it has no id or no start time to partition by).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct UnusableRecord(pub String);

/// The record's id and the UTC start time that decides its `dt` partition.
pub fn identify(record: &Value) -> Result<(&str, DateTime<Utc>), UnusableRecord> {
    let id = record
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| UnusableRecord("the callRecord has no `id`".into()))?;
    let start = record
        .get("startDateTime")
        .and_then(Value::as_str)
        .ok_or_else(|| UnusableRecord(format!("callRecord {id} has no `startDateTime`")))?;
    let start = DateTime::parse_from_rfc3339(start).map_err(|e| {
        UnusableRecord(format!(
            "callRecord {id} has an unreadable startDateTime `{start}`: {e}"
        ))
    })?;
    Ok((id, start.with_timezone(&Utc)))
}

/// The `dt` partition of a record: the UTC date of its start.
pub fn partition_date(record: &Value) -> Result<NaiveDate, UnusableRecord> {
    identify(record).map(|(_, start)| start.date_naive())
}

/// Appends the rows of one complete record to `tables`.
pub fn flatten(
    record: &Value,
    tables: &mut CallRecordTables,
    issues: &mut Vec<FlattenIssue>,
) -> Result<(), UnusableRecord> {
    let (call_id, _) = identify(record)?;
    let call = RowContext {
        call_id,
        ..RowContext::default()
    };
    tables.records.append(record, &call, issues);
    for modality in child_array(record, "modalities") {
        tables.modalities.append(modality, &call, issues);
    }
    if let Some(organizer) = record.get("organizer_v2").filter(|o| o.is_object()) {
        let context = RowContext {
            role: "organizer",
            participant_index: 0,
            ..call
        };
        tables.participants.append(organizer, &context, issues);
    }
    for (index, participant) in child_array(record, "participants_v2").iter().enumerate() {
        let context = RowContext {
            role: "participant",
            participant_index: position(index),
            ..call
        };
        tables.participants.append(participant, &context, issues);
    }
    for (session_index, session) in child_array(record, "sessions").iter().enumerate() {
        let session_context = RowContext {
            session_index: position(session_index),
            ..call
        };
        tables.sessions.append(session, &session_context, issues);
        for (segment_index, segment) in child_array(session, "segments").iter().enumerate() {
            let segment_context = RowContext {
                segment_index: position(segment_index),
                ..session_context
            };
            tables.segments.append(segment, &segment_context, issues);
            for (media_index, media) in child_array(segment, "media").iter().enumerate() {
                let media_context = RowContext {
                    media_index: position(media_index),
                    ..segment_context
                };
                tables.media.append(media, &media_context, issues);
                for (stream_index, stream) in child_array(media, "streams").iter().enumerate() {
                    let context = RowContext {
                        stream_index: position(stream_index),
                        ..media_context
                    };
                    tables.streams.append(stream, &context, issues);
                }
                for (side, network) in [("caller", "callerNetwork"), ("callee", "calleeNetwork")] {
                    let hops = media
                        .get(network)
                        .map(|n| child_array(n, "traceRouteHops"))
                        .unwrap_or_default();
                    for (hop_index, hop) in hops.iter().enumerate() {
                        let context = RowContext {
                            side,
                            hop_index: position(hop_index),
                            ..media_context
                        };
                        tables.hops.append(hop, &context, issues);
                    }
                }
            }
        }
    }
    Ok(())
}

/// A 0-based position as the declared int32 key (Graph collections are far smaller).
fn position(index: usize) -> i32 {
    i32::try_from(index).expect("a Graph collection holds fewer than 2^31 items")
}
