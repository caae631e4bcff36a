//! One complete callRecord (sessions, segments, media, streams, participants merged in)
//! → rows of the eight call tables.
//!
//! This walker decides which JSON object is a row of which table and supplies the call
//! id and the 0-based position keys (API order); the columns themselves come from the
//! declarations in `schemas/call_*.json`. It also classifies each stream by the run's
//! [`Derivation`] (CQD rules), rolls the classifications up per session and per call (the
//! one `call_quality` row of a record), and finds the sites of each media's endpoints: all
//! read from the parsed record, before any privacy mode touches a value.

use std::sync::OnceLock;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

use super::columns::{float, integer};
use super::dom::{Dom, Item};
use super::shape::{ShapeId, Shapes};
use super::{
    FlattenIssue, RowContext, TableBuilder, declare_table, declare_table_kept_whole, values,
};
use crate::privacy::Privacy;
use crate::quality::{self, Derivation, Derivations, MediaClass, Rollup, StreamMetrics};
use crate::schema::{self, TableSchema};

/// Where each table's rows are in a callRecord: `(table, parent table, path from a parent
/// row)`. The walker ([`flatten_item`]) follows the same links; the parser keeps what the
/// tables read along them.
const ROW_LINKS: &[(&str, &str, &str)] = &[
    ("call_modalities", "call_records", "modalities"),
    ("call_participants", "call_records", "organizer_v2"),
    ("call_participants", "call_records", "participants_v2"),
    ("call_sessions", "call_records", "sessions"),
    ("call_segments", "call_sessions", "segments"),
    ("call_media", "call_segments", "media"),
    ("call_media_streams", "call_media", "streams"),
    (
        "call_trace_route_hops",
        "call_media",
        "callerNetwork.traceRouteHops",
    ),
    (
        "call_trace_route_hops",
        "call_media",
        "calleeNetwork.traceRouteHops",
    ),
];

/// The shapes of a complete callRecord and the slots the walker follows.
struct Layout {
    shapes: Shapes,
    /// Row shape of each call table, by name.
    rows: Vec<(&'static str, ShapeId)>,
    record: ShapeId,
    id: u16,
    start: u16,
    modalities: u16,
    organizer: u16,
    participants: u16,
    sessions: u16,
    session: ShapeId,
    segments: u16,
    segment: ShapeId,
    media: u16,
    medium: ShapeId,
    streams: u16,
    networks: [NetworkSlots; 2],
    /// Slots of each network's `ipAddress` and `subnet` (sites).
    addresses: [(u16, u16); 2],
    label: u16,
    stream: ShapeId,
    metrics: MetricSlots,
}

/// The slots of a stream's members the quality rules read.
struct MetricSlots {
    round_trip: u16,
    packet_loss: u16,
    jitter: u16,
    packets: u16,
    frame_loss: u16,
    frame_rate: u16,
    post_fec: u16,
    direction: u16,
}

impl MetricSlots {
    fn compile(shapes: &mut Shapes, stream: ShapeId) -> Self {
        let mut slot = |key| shapes.slot(stream, key);
        MetricSlots {
            round_trip: slot("averageRoundTripTime"),
            packet_loss: slot("averagePacketLossRate"),
            jitter: slot("averageJitter"),
            packets: slot("packetUtilization"),
            frame_loss: slot("averageVideoFrameLossPercentage"),
            frame_rate: slot("averageVideoFrameRate"),
            post_fec: slot("postForwardErrorCorrectionPacketLossRate"),
            direction: slot("streamDirection"),
        }
    }

    /// The metrics of `stream` (a value that is missing or unreadable is None).
    fn read(&self, stream: Item<'_, '_>, shape: ShapeId) -> StreamMetrics {
        let value =
            |slot| Some(stream.slot(shape, slot)).filter(|v| v.is_present() && !v.is_null());
        let number = |slot| value(slot).and_then(|v| float(v).ok());
        let duration = |slot| {
            value(slot)
                .and_then(|v| v.as_str())
                .and_then(|text| values::parse_iso8601_duration_ms(text).ok())
        };
        StreamMetrics {
            round_trip_ms: duration(self.round_trip),
            packet_loss_rate: number(self.packet_loss),
            jitter_ms: duration(self.jitter),
            packet_utilization: value(self.packets).and_then(|v| integer(v).ok()),
            video_frame_loss_percentage: number(self.frame_loss),
            video_frame_rate: number(self.frame_rate),
            post_fec_packet_loss_rate: number(self.post_fec),
        }
    }
}

impl Layout {
    fn get() -> &'static Layout {
        static LAYOUT: OnceLock<Layout> = OnceLock::new();
        LAYOUT.get_or_init(Layout::compile)
    }

    fn compile() -> Layout {
        let mut shapes = Shapes::new();
        let mut rows: Vec<(&'static str, ShapeId)> = Vec::new();
        let mut row_of = |shapes: &mut Shapes, table: &'static str| {
            if let Some(&(_, shape)) = rows.iter().find(|(name, _)| *name == table) {
                return shape;
            }
            let shape = shapes.add();
            rows.push((table, shape));
            shape
        };
        let record = row_of(&mut shapes, "call_records");
        for &(table, parent, path) in ROW_LINKS {
            let parent = row_of(&mut shapes, parent);
            let child = row_of(&mut shapes, table);
            // Modalities are plain values: their rows are the array's items themselves.
            if table == "call_modalities" {
                shapes.slot(parent, path);
                continue;
            }
            let (holder, slot) = shapes.path(parent, path);
            shapes.link(holder, shapes.get(holder).key(slot), child);
        }
        for &(table, shape) in &rows {
            declare_table(&mut shapes, shape, call_table(table));
        }
        for &(table, shape) in &rows {
            declare_table_kept_whole(&mut shapes, shape, call_table(table));
        }
        let (session, segment, medium) = (
            row_shape(&rows, "call_sessions"),
            row_shape(&rows, "call_segments"),
            row_shape(&rows, "call_media"),
        );
        let mut slot = |shape: ShapeId, key: &'static str| shapes.slot(shape, key);
        let (id, start) = (slot(record, "id"), slot(record, "startDateTime"));
        let (modalities, organizer, participants, sessions) = (
            slot(record, "modalities"),
            slot(record, "organizer_v2"),
            slot(record, "participants_v2"),
            slot(record, "sessions"),
        );
        let (segments, media, streams) = (
            slot(session, "segments"),
            slot(segment, "media"),
            slot(medium, "streams"),
        );
        let (networks, addresses) = network_slots(&mut shapes, medium);
        let label = shapes.slot(medium, "label");
        let stream = row_shape(&rows, "call_media_streams");
        let metrics = MetricSlots::compile(&mut shapes, stream);
        Layout {
            shapes,
            rows,
            record,
            id,
            start,
            modalities,
            organizer,
            participants,
            sessions,
            session,
            segments,
            segment,
            media,
            medium,
            streams,
            networks,
            addresses,
            label,
            stream,
            metrics,
        }
    }

    fn shapes(&'static self) -> &'static Shapes {
        &self.shapes
    }

    fn row(&self, table: &str) -> ShapeId {
        row_shape(&self.rows, table)
    }
}

/// A side of a media (`caller`, `callee`), the slot of its network, the network's shape and
/// the slot of its hops.
type NetworkSlots = (&'static str, u16, ShapeId, u16);

/// Per side of a media (caller, callee): the side, the slot of its network, the network's
/// shape and the slot of its hops; and the slots of its `ipAddress` and `subnet`.
fn network_slots(shapes: &mut Shapes, medium: ShapeId) -> ([NetworkSlots; 2], [(u16, u16); 2]) {
    let mut network = |side: &'static str, key: &'static str| {
        let network_slot = shapes.slot(medium, key);
        let network = shapes.object_at(medium, key);
        let hops = shapes.slot(network, "traceRouteHops");
        let address = (
            shapes.slot(network, "ipAddress"),
            shapes.slot(network, "subnet"),
        );
        ((side, network_slot, network, hops), address)
    };
    let (caller, caller_address) = network("caller", "callerNetwork");
    let (callee, callee_address) = network("callee", "calleeNetwork");
    ([caller, callee], [caller_address, callee_address])
}

/// The row shape of `table` among `rows`.
fn row_shape(rows: &[(&'static str, ShapeId)], table: &str) -> ShapeId {
    rows.iter()
        .find(|(name, _)| *name == table)
        .unwrap_or_else(|| panic!("{table} is not a call table"))
        .1
}

fn call_table(name: &str) -> &'static TableSchema {
    schema::table(name).unwrap_or_else(|| panic!("schemas/{name}.json is not declared"))
}

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
    /// One row per call: its streams' classifications rolled up.
    pub quality: TableBuilder,
    /// The quality rules and sites the rows are derived with.
    pub derivation: Derivation,
}

impl Default for CallRecordTables {
    /// Builders that write every value as read (privacy mode `keep`).
    fn default() -> Self {
        Self::new(&Privacy::default())
    }
}

impl CallRecordTables {
    /// Builders that write personal data as `privacy` says, with CQD's rules and no sites.
    pub fn new(privacy: &Privacy) -> Self {
        Self::deriving(privacy, &Derivation::default())
    }

    /// Builders that write personal data as `privacy` says and classify by `derivation`.
    pub fn deriving(privacy: &Privacy, derivation: &Derivation) -> Self {
        let layout = Layout::get();
        let builder = |name: &str| {
            TableBuilder::within(call_table(name), privacy, layout.shapes(), layout.row(name))
        };
        // Every column of `call_quality` is derived: its rows read nothing of the record.
        let quality = TableBuilder::within(
            call_table("call_quality"),
            privacy,
            layout.shapes(),
            layout.record,
        );
        CallRecordTables {
            records: builder("call_records"),
            participants: builder("call_participants"),
            modalities: builder("call_modalities"),
            sessions: builder("call_sessions"),
            segments: builder("call_segments"),
            media: builder("call_media"),
            streams: builder("call_media_streams"),
            hops: builder("call_trace_route_hops"),
            quality,
            derivation: derivation.clone(),
        }
    }

    pub fn builders_mut(&mut self) -> [&mut TableBuilder; 9] {
        [
            &mut self.records,
            &mut self.participants,
            &mut self.modalities,
            &mut self.sessions,
            &mut self.segments,
            &mut self.media,
            &mut self.streams,
            &mut self.hops,
            &mut self.quality,
        ]
    }
}

/// A parser of complete callRecords; it keeps its buffers from record to record.
pub struct RecordParser<'a> {
    dom: Dom<'a>,
}

impl Default for RecordParser<'_> {
    fn default() -> Self {
        RecordParser {
            dom: Dom::new(Layout::get().shapes()),
        }
    }
}

impl<'a> RecordParser<'a> {
    /// Parses one raw line (a callRecord as JSON text).
    pub fn parse(&mut self, line: &'a str) -> serde_json::Result<Item<'_, 'a>> {
        self.dom.parse_str(line, Layout::get().record)?;
        Ok(self.dom.root())
    }

    /// The same parser, with its buffers, for lines of another lifetime.
    pub fn recycle<'b>(self) -> RecordParser<'b> {
        RecordParser {
            dom: self.dom.recycle(),
        }
    }

    /// Reads a callRecord held as a `serde_json::Value` (samples and tests; the export and
    /// `reflatten` parse the record's text with [`RecordParser::parse`]).
    pub fn read(&mut self, record: &'a Value) -> Item<'_, 'a> {
        self.dom.parse_value(record, Layout::get().record);
        self.dom.root()
    }
}

/// Why a record cannot be flattened at all (it has no id or no start time to partition by).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct UnusableRecord(pub String);

/// The record's id and the UTC start time that decides its `dt` partition.
pub fn identify(record: &Value) -> Result<(&str, DateTime<Utc>), UnusableRecord> {
    identify_by(
        record.get("id").and_then(Value::as_str),
        record.get("startDateTime").and_then(Value::as_str),
    )
}

/// [`identify`] for a parsed record.
pub fn identify_item<'d>(record: Item<'d, '_>) -> Result<(&'d str, DateTime<Utc>), UnusableRecord> {
    let layout = Layout::get();
    identify_by(
        record.slot(layout.record, layout.id).as_str(),
        record.slot(layout.record, layout.start).as_str(),
    )
}

fn identify_by<'r>(
    id: Option<&'r str>,
    start: Option<&str>,
) -> Result<(&'r str, DateTime<Utc>), UnusableRecord> {
    let id = id.ok_or_else(|| UnusableRecord("the callRecord has no `id`".into()))?;
    let start =
        start.ok_or_else(|| UnusableRecord(format!("callRecord {id} has no `startDateTime`")))?;
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

/// Appends the rows of one complete record held as a value to `tables` (samples and tests;
/// the export and `reflatten` parse text and use [`flatten_item`]).
pub fn flatten(
    record: &Value,
    tables: &mut CallRecordTables,
    issues: &mut Vec<FlattenIssue>,
) -> Result<(), UnusableRecord> {
    let mut parser = RecordParser::default();
    flatten_item(parser.read(record), tables, issues)
}

/// Appends the rows of one parsed record to `tables`.
pub fn flatten_item(
    record: Item<'_, '_>,
    tables: &mut CallRecordTables,
    issues: &mut Vec<FlattenIssue>,
) -> Result<(), UnusableRecord> {
    let layout = Layout::get();
    let (call_id, _) = identify_item(record)?;
    let derivation = tables.derivation.clone();
    let call = RowContext {
        call_id,
        derived: Derivations {
            rules_id: derivation.rules_id(),
            ..Derivations::default()
        },
        ..RowContext::default()
    };
    let records = layout.record;
    tables.records.append_item(record, &call, issues);
    for modality in record.slot(records, layout.modalities).items() {
        tables.modalities.append_item(modality, &call, issues);
    }
    let organizer = record.slot(records, layout.organizer);
    if organizer.is_object() {
        let context = RowContext {
            role: "organizer",
            participant_index: 0,
            ..call
        };
        tables.participants.append_item(organizer, &context, issues);
    }
    let participants = record.slot(records, layout.participants).items();
    for (index, participant) in participants.enumerate() {
        let context = RowContext {
            role: "participant",
            participant_index: position(index),
            ..call
        };
        tables
            .participants
            .append_item(participant, &context, issues);
    }
    let mut rollup = Rollup::default();
    let sessions = record.slot(records, layout.sessions).items();
    for (session_index, session) in sessions.enumerate() {
        let session_context = RowContext {
            session_index: position(session_index),
            ..call
        };
        let walk = Walk {
            layout,
            derivation: &derivation,
        };
        rollup.merge(&walk.session(session, session_context, tables, issues));
    }
    let context = RowContext {
        derived: Derivations {
            rollup: Some(&rollup),
            ..call.derived
        },
        ..call
    };
    tables.quality.append_item(record, &context, issues);
    Ok(())
}

/// What the walk below a record reads with.
struct Walk<'w> {
    layout: &'static Layout,
    derivation: &'w Derivation,
}

impl Walk<'_> {
    /// Appends the rows of one session and those below it; the session's row comes last,
    /// with its streams rolled up, which it returns.
    fn session(
        &self,
        session: Item<'_, '_>,
        session_context: RowContext<'_>,
        tables: &mut CallRecordTables,
        issues: &mut Vec<FlattenIssue>,
    ) -> Rollup {
        let layout = self.layout;
        let mut rollup = Rollup::default();
        let segments = session.slot(layout.session, layout.segments).items();
        for (segment_index, segment) in segments.enumerate() {
            let segment_context = RowContext {
                segment_index: position(segment_index),
                ..session_context
            };
            tables
                .segments
                .append_item(segment, &segment_context, issues);
            let media = segment.slot(layout.segment, layout.media).items();
            for (media_index, medium) in media.enumerate() {
                let media_context = RowContext {
                    media_index: position(media_index),
                    ..segment_context
                };
                self.medium(medium, media_context, &mut rollup, tables, issues);
            }
        }
        let context = RowContext {
            derived: Derivations {
                rollup: Some(&rollup),
                ..session_context.derived
            },
            ..session_context
        };
        tables.sessions.append_item(session, &context, issues);
        rollup
    }

    /// Appends the rows of one media entry of a segment: the medium (with its endpoints'
    /// sites), its streams (classified, counted in `rollup`), and the hops of its caller's
    /// and callee's networks.
    fn medium(
        &self,
        medium: Item<'_, '_>,
        media_context: RowContext<'_>,
        rollup: &mut Rollup,
        tables: &mut CallRecordTables,
        issues: &mut Vec<FlattenIssue>,
    ) {
        let layout = self.layout;
        let site = |side: usize| {
            let (_, network_slot, network, _) = layout.networks[side];
            let (ip, subnet) = layout.addresses[side];
            let network_item = medium.slot(layout.medium, network_slot);
            self.derivation.sites().endpoint(
                network_item.slot(network, ip).as_str(),
                network_item.slot(network, subnet).as_str(),
            )
        };
        let context = RowContext {
            derived: Derivations {
                sites: [site(0), site(1)],
                ..media_context.derived
            },
            ..media_context
        };
        tables.media.append_item(medium, &context, issues);
        let class = MediaClass::of_label(medium.slot(layout.medium, layout.label).as_str());
        let streams = medium.slot(layout.medium, layout.streams).items();
        for (stream_index, stream) in streams.enumerate() {
            let metrics = layout.metrics.read(stream, layout.stream);
            let verdict = self.derivation.rules().classify(class, &metrics);
            rollup.add(class, verdict.quality, &metrics);
            let direction = stream.slot(layout.stream, layout.metrics.direction);
            let context = RowContext {
                stream_index: position(stream_index),
                derived: Derivations {
                    verdict: Some(verdict),
                    receiving_endpoint: quality::receiving_endpoint(direction.as_str()),
                    ..media_context.derived
                },
                ..media_context
            };
            tables.streams.append_item(stream, &context, issues);
        }
        for &(side, network_slot, network, hops_slot) in &layout.networks {
            let hops = medium
                .slot(layout.medium, network_slot)
                .slot(network, hops_slot)
                .items();
            for (hop_index, hop) in hops.enumerate() {
                let context = RowContext {
                    side,
                    hop_index: position(hop_index),
                    ..media_context
                };
                tables.hops.append_item(hop, &context, issues);
            }
        }
    }
}

/// A 0-based position as the declared int32 key (Graph collections are far smaller).
fn position(index: usize) -> i32 {
    i32::try_from(index).expect("a Graph collection holds fewer than 2^31 items")
}
