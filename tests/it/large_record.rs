//! One huge call record (a meeting with thousands of sessions and participants, dozens of
//! pages) exported end to end against the in-process emulator: the tables hold exactly the
//! rows of the record the tenant generates, and its raw-zone line is the whole record on
//! one line. Memory is measured by hand, not here (BENCHMARKS.md).

use crate::support;

use support::CALL_TABLES;

use std::path::Path;

use callrecords_emulator::{EmulatorConfig, Tenant};
use callrecords_etl::export::{self, ExportPlan};
use callrecords_etl::flatten::call_records::{CallRecordTables, flatten};
use callrecords_etl::progress::{Progress, ProgressMode};
use callrecords_etl::store::Location;
use callrecords_etl::streams::StreamKind;
use callrecords_etl::window::{Window, midnight};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Participants besides the organizer, each with a session: 26 session pages, 13
/// participant pages, a record of about 13 MB.
const ATTENDEES: u32 = 1500;

/// Every table's rows as sorted JSON lines, without the partition column `dt`.
fn lake_tables(lake: &Path) -> Vec<Vec<String>> {
    CALL_TABLES
        .iter()
        .map(|table| {
            let rows = support::read_table(lake, table).into_iter();
            let rows = rows.map(|mut row| {
                row.remove("dt");
                Value::Object(row).to_string()
            });
            sorted(rows.collect())
        })
        .collect()
}

/// The rows `record` flattens to, table by table as [`lake_tables`] lists them.
fn expected_tables(record: &Value) -> Vec<Vec<String>> {
    let mut tables = CallRecordTables::default();
    flatten(record, &mut tables, &mut Vec::new()).unwrap();
    let batches: Vec<(String, Vec<String>)> = tables
        .builders_mut()
        .into_iter()
        .map(|builder| {
            let name = builder.schema().table.clone();
            let batch = builder.finish();
            let rows = support::rows(&batch).into_iter();
            (
                name,
                rows.map(|row| Value::Object(row).to_string()).collect(),
            )
        })
        .collect();
    CALL_TABLES
        .iter()
        .map(|table| {
            let (_, rows) = batches.iter().find(|(name, _)| name == table).unwrap();
            sorted(rows.clone())
        })
        .collect()
}

fn sorted(mut rows: Vec<String>) -> Vec<String> {
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_of_thousands_of_sessions_and_participants_exports_whole() {
    let config = EmulatorConfig {
        calls_per_day: 1,
        large_meeting_attendees: Some(ATTENDEES),
        ..EmulatorConfig::default()
    };
    let tenant = Tenant::new(config.seed, 1).with_large_meeting(Some(ATTENDEES));
    let emulator = support::start_emulator(config).await;
    let dir = tempfile::tempdir().unwrap();
    let (lake, raw) = (dir.path().join("lake"), dir.path().join("raw"));
    let day = support::date_days_ago(5);
    let window = Window::new(midnight(day), midnight(day + chrono::Days::new(1))).unwrap();
    let plan = ExportPlan {
        format: Default::default(),
        window,
        streams: vec![StreamKind::CallRecords],
        output: Location::Local(lake.clone()),
        concurrency: 2,
        api_version: callrecords_etl::graph::ApiVersion::V1,
        log_chunk_days: 30,
        privacy: Default::default(),
        derivation: Default::default(),
        raw: Some(Location::Local(raw.clone())),
        full: false,
    };
    let progress = Progress::new(ProgressMode::Hidden);
    let summary = export::export(
        &support::emulator_client(&emulator),
        &plan,
        &progress,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(summary.records_exported, 1);
    assert!(summary.records_rejected.is_empty());

    let listed = tenant.list(window.from, window.to);
    let id = listed[0]["id"].as_str().unwrap();
    let record = tenant.record(id).unwrap();
    let participants = record["participants_v2"].as_array().unwrap().len();
    assert_eq!(participants, ATTENDEES as usize + 1);
    assert_eq!(record["sessions"].as_array().unwrap().len(), participants);
    let (exported, expected) = (lake_tables(&lake), expected_tables(&record));
    for ((table, exported), expected) in CALL_TABLES.iter().zip(&exported).zip(&expected) {
        assert_eq!(exported.len(), expected.len(), "rows of {table}");
        let differ = exported.iter().zip(expected).find(|(a, b)| a != b);
        assert!(differ.is_none(), "{table}: {differ:?}");
    }

    let lines = support::raw_lines(&raw);
    assert_eq!(lines.len(), 1, "one record, one line");
    let (_, line) = lines[0].split_once(' ').unwrap();
    assert!(
        line.len() > 10_000_000,
        "a large record: {} bytes",
        line.len()
    );
    let stored: Value = serde_json::from_str(line).unwrap();
    assert_eq!(stored["id"], record["id"]);
    assert_eq!(stored["sessions"], record["sessions"]);
    assert_eq!(stored["participants_v2"], record["participants_v2"]);
}
