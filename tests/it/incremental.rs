//! Incremental rescans against the in-process emulator, counting the requests it served: a
//! second run of the same window fetches no record again and still republishes every row; a
//! record whose version moved on is refetched; `--full` refetches everything; a record the
//! raw zone lacks is refetched (a record is reused only with its raw line).

use crate::support;

use support::CALL_TABLES;

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Int64Array, RecordBatch};
use callrecords_emulator::{EmulatorConfig, RunningEmulator};
use callrecords_etl::export::{self, ExportPlan, RunSummary};
use callrecords_etl::progress::{Progress, ProgressMode};
use callrecords_etl::streams::StreamKind;
use callrecords_etl::window::{Window, midnight};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::properties::WriterProperties;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

async fn export(
    emulator: &RunningEmulator,
    lake: &Path,
    raw: Option<&Path>,
    full: bool,
) -> RunSummary {
    export_deriving(emulator, lake, raw, full, Default::default()).await
}

/// [`export`] with quality rules and sites.
async fn export_deriving(
    emulator: &RunningEmulator,
    lake: &Path,
    raw: Option<&Path>,
    full: bool,
    derivation: callrecords_etl::quality::Derivation,
) -> RunSummary {
    let plan = ExportPlan {
        format: Default::default(),
        window: Window::new(
            midnight(support::date_days_ago(6)),
            midnight(support::date_days_ago(4)),
        )
        .unwrap(),
        streams: vec![StreamKind::CallRecords],
        output: callrecords_etl::store::Location::Local(lake.to_path_buf()),
        concurrency: 8,
        api_version: callrecords_etl::graph::ApiVersion::V1,
        log_chunk_days: 30,
        privacy: Default::default(),
        derivation,
        raw: raw.map(|raw| callrecords_etl::store::Location::Local(raw.to_path_buf())),
        full,
    };
    let progress = Progress::new(ProgressMode::Hidden);
    export::export(
        &support::emulator_client(emulator),
        &plan,
        &progress,
        &CancellationToken::new(),
    )
    .await
    .unwrap()
}

/// The ids of the records each per-record request (details, sessions, participants) was about.
fn record_requests(emulator: &RunningEmulator) -> Vec<String> {
    emulator
        .requests()
        .into_iter()
        .filter_map(|request| {
            let rest = request
                .path
                .strip_prefix("/v1.0/communications/callRecords/")?;
            let id = rest.split('/').next()?;
            (!id.starts_with("get")).then(|| id.to_string())
        })
        .collect()
}

fn snapshot(lake: &Path) -> Vec<Vec<String>> {
    CALL_TABLES
        .iter()
        .map(|table| support::sorted_rows(lake, table))
        .collect()
}

/// Lowers the version the lake holds for `call_id`, as if Graph had a newer one since.
fn age_in_lake(lake: &Path, call_id: &str) {
    for (_, path) in support::parquet_files(lake, "call_records") {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        // The footer says what made the rows; a rescan reuses only rows it vouches for.
        let footer = reader
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .cloned();
        let batches: Vec<RecordBatch> = reader.build().unwrap().map(Result::unwrap).collect();
        let mut changed = false;
        let batches: Vec<RecordBatch> = batches
            .into_iter()
            .map(|batch| {
                let ids = batch.column_by_name("call_id").unwrap().as_string::<i32>();
                let index = batch.schema().index_of("version").unwrap();
                let versions = batch.column(index).as_primitive::<Int64Type>();
                let aged: Int64Array = (0..batch.num_rows())
                    .map(|row| {
                        let version = versions.value(row);
                        if ids.value(row) == call_id {
                            changed = true;
                            Some(version - 1)
                        } else {
                            Some(version)
                        }
                    })
                    .collect();
                let mut columns = batch.columns().to_vec();
                columns[index] = Arc::new(aged);
                RecordBatch::try_new(batch.schema(), columns).unwrap()
            })
            .collect();
        if changed {
            let properties = WriterProperties::builder()
                .set_key_value_metadata(footer)
                .build();
            let mut writer = ArrowWriter::try_new(
                File::create(&path).unwrap(),
                batches[0].schema(),
                Some(properties),
            )
            .unwrap();
            for batch in &batches {
                writer.write(batch).unwrap();
            }
            writer.close().unwrap();
            return;
        }
    }
    panic!("{call_id} is not in the lake");
}

/// The ids of the call records in the raw zone `raw`, sorted.
fn raw_ids(raw: &Path) -> Vec<String> {
    let mut ids = Vec::new();
    for file in callrecords_etl::raw::files_under(&raw.join("call_records")).unwrap() {
        let input = callrecords_etl::raw::RawInput::Local(file);
        for line in std::io::BufRead::lines(input.open_lines().unwrap()) {
            let record: Value = serde_json::from_str(&line.unwrap()).unwrap();
            ids.push(record["id"].as_str().unwrap().to_string());
        }
    }
    ids.sort();
    ids
}

async fn start_emulator() -> RunningEmulator {
    support::start_emulator(EmulatorConfig {
        calls_per_day: 40,
        ..EmulatorConfig::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rescan_fetches_only_new_and_changed_records_and_republishes_every_row() {
    let emulator = start_emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let (lake, raw) = (dir.path().join("lake"), dir.path().join("raw"));

    let first = export(&emulator, &lake, Some(&raw), false).await;
    assert_eq!(first.records_reused, 0);
    let records = first.records_exported as usize;
    assert!(records > 40);
    let fetched = record_requests(&emulator);
    let per_record = fetched.len() as f64 / records as f64;
    assert!(
        (2.0..2.5).contains(&per_record),
        "details + participants (+ extra pages): {per_record} requests per record"
    );
    let expected = snapshot(&lake);

    // The same window again: nothing is fetched, every row is still there.
    let second = export(&emulator, &lake, Some(&raw), false).await;
    assert_eq!(record_requests(&emulator).len(), fetched.len());
    assert_eq!(second.records_reused as usize, records);
    assert_eq!(second.records_exported as usize, records);
    assert!(
        snapshot(&lake) == expected,
        "the reused rows are republished"
    );
    assert_eq!(
        raw_ids(&raw).len(),
        records,
        "the reused raw lines are republished"
    );

    // A record whose listed version is newer than the lake's is fetched again.
    let changed = support::read_table(&lake, "call_records")[3]["call_id"]
        .as_str()
        .unwrap()
        .to_string();
    age_in_lake(&lake, &changed);
    let before = record_requests(&emulator).len();
    let third = export(&emulator, &lake, Some(&raw), false).await;
    let refetched: Vec<String> = record_requests(&emulator).split_off(before);
    assert!(!refetched.is_empty());
    assert!(refetched.iter().all(|id| *id == changed), "{refetched:?}");
    assert_eq!(third.records_reused as usize, records - 1);
    assert!(snapshot(&lake) == expected);

    // --full fetches every record.
    let before = record_requests(&emulator).len();
    let full = export(&emulator, &lake, Some(&raw), true).await;
    assert_eq!(full.records_reused, 0);
    assert_eq!(record_requests(&emulator).len() - before, fetched.len());
    assert!(snapshot(&lake) == expected);
}

/// A raw zone kept from tonight on (the lake older than it): a record is reused only with
/// its raw line, so the first run with the raw zone fetches every record again, and the
/// raw zone then holds every record the lake holds; the next run reuses them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_missing_from_the_raw_zone_is_fetched_again() {
    let emulator = start_emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let (lake, raw) = (dir.path().join("lake"), dir.path().join("raw"));

    let without_raw = export(&emulator, &lake, None, false).await;
    let records = without_raw.records_exported as usize;
    let fetched = record_requests(&emulator).len();
    let expected = snapshot(&lake);

    let with_raw = export(&emulator, &lake, Some(&raw), false).await;
    assert_eq!(with_raw.records_reused, 0, "the raw zone has none of them");
    assert_eq!(record_requests(&emulator).len(), 2 * fetched);
    let lake_ids: Vec<String> = {
        let mut ids: Vec<String> = support::read_table(&lake, "call_records")
            .iter()
            .map(|row| row["call_id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(raw_ids(&raw), lake_ids);
    assert_eq!(lake_ids.len(), records);
    assert!(snapshot(&lake) == expected);

    let rescan = export(&emulator, &lake, Some(&raw), false).await;
    assert_eq!(rescan.records_reused as usize, records);
    assert_eq!(record_requests(&emulator).len(), 2 * fetched);
    assert_eq!(raw_ids(&raw), lake_ids);
    assert!(snapshot(&lake) == expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rescan_under_other_quality_rules_or_sites_reuses_no_row() {
    use callrecords_etl::quality::{Derivation, Rules, Sites};
    let emulator = start_emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let first = export(&emulator, &lake, None, false).await;
    let records = first.records_exported;

    let rules: Rules = toml::from_str("audio_jitter_ms = 10").unwrap();
    let strict = export_deriving(
        &emulator,
        &lake,
        None,
        false,
        Derivation::new(rules, Sites::default()),
    )
    .await;
    assert_eq!(
        strict.records_reused, 0,
        "rows classified under CQD's thresholds are not reused"
    );
    assert_eq!(strict.records_exported, records);
    let streams = support::read_table(&lake, "call_media_streams");
    assert!(
        streams
            .iter()
            .all(|row| row["quality_rules"] == "cqd-custom:audio_jitter_ms=10")
    );

    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/buildings.sample.csv");
    let with_sites = || Derivation::new(rules, Sites::load(&sample).unwrap());
    let placed = export_deriving(&emulator, &lake, None, false, with_sites()).await;
    assert_eq!(
        placed.records_reused, 0,
        "rows matched without the building file are not reused"
    );
    assert!(
        support::read_table(&lake, "call_media")
            .iter()
            .any(|row| row["caller_building"].is_string())
    );

    let again = export_deriving(&emulator, &lake, None, false, with_sites()).await;
    assert_eq!(
        again.records_reused, records,
        "the same rules and file reuse every record"
    );
}
