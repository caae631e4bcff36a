//! Windows of any shape replace only the rows whose time lies in the window: the first and
//! last day of a window that starts or ends within a day keep the rows the lake holds
//! outside it (call records with all their rows, log rows, raw lines). Partitions outside
//! the window are never touched, even when a record's details name another day.

use crate::support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;

use callrecords_emulator::{self as emulator, EmulatorConfig, RunningEmulator};
use callrecords_etl::export::{self, ExportPlan};
use callrecords_etl::progress::{Progress, ProgressMode};
use callrecords_etl::store::Location as Zone;
use callrecords_etl::streams::StreamKind;
use callrecords_etl::window::{Window, midnight};
use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use serde_json::{Map, Value};
use support::{CALL_TABLES, date_days_ago, stderr};
use tokio_util::sync::CancellationToken;

const STREAMS: &str = "call_records,pstn_calls,direct_routing_calls";

fn tables() -> Vec<&'static str> {
    CALL_TABLES
        .iter()
        .copied()
        .chain(["pstn_calls", "direct_routing_calls"])
        .collect()
}

fn export(root: &Path, from: &str, to: &str) -> Output {
    support::binary()
        .args([
            "export",
            "--emulator",
            "--streams",
            STREAMS,
            "--from",
            from,
            "--to",
            to,
        ])
        .arg("--out")
        .arg(root.join("lake"))
        .arg("--raw")
        .arg(root.join("raw"))
        .output()
        .unwrap()
}

fn lake(root: &Path) -> (Vec<String>, Vec<String>) {
    (
        support::lake_rows(&root.join("lake"), &tables()),
        support::raw_lines(&root.join("raw")),
    )
}

fn at(day: chrono::NaiveDate, hour: i64) -> String {
    (midnight(day) + Duration::hours(hour)).to_rfc3339()
}

#[test]
fn case2_a_window_within_a_day_replaces_only_its_hours() {
    let day = date_days_ago(3);
    let clean = tempfile::tempdir().unwrap();
    let output = export(clean.path(), &at(day, 0), &at(day, 24));
    assert!(output.status.success(), "{}", stderr(&output));

    let lake_root = tempfile::tempdir().unwrap();
    let output = export(lake_root.path(), &at(day, 0), &at(day, 24));
    assert!(output.status.success(), "{}", stderr(&output));
    let output = export(lake_root.path(), &at(day, 6), &at(day, 12));
    assert!(output.status.success(), "{}", stderr(&output));
    let manifest = support::last_manifest(&lake_root.path().join("lake"));
    assert!(
        manifest["records_kept_outside_window"].as_u64().unwrap() > 50,
        "{manifest}"
    );
    let (expected, actual) = (lake(clean.path()), lake(lake_root.path()));
    assert!(expected.0.len() > 1000 && expected.1.len() > 100);
    assert!(
        actual == expected,
        "the day lost or doubled rows: {} rows, {} raw lines (expected {}, {})",
        actual.0.len(),
        actual.1.len(),
        expected.0.len(),
        expected.1.len()
    );
}

#[test]
fn case2_a_catch_up_from_mid_day_keeps_the_rows_before_it() {
    let day = date_days_ago(4);
    let clean = tempfile::tempdir().unwrap();
    let output = export(clean.path(), &at(day, 0), &at(day, 48));
    assert!(output.status.success(), "{}", stderr(&output));

    let lake_root = tempfile::tempdir().unwrap();
    for (from, to) in [(0, 12), (12, 48)] {
        let output = export(lake_root.path(), &at(day, from), &at(day, to));
        assert!(output.status.success(), "{}", stderr(&output));
    }
    assert!(lake(lake_root.path()) == lake(clean.path()));
}

#[test]
fn case4_a_record_whose_details_name_another_day_stays_in_its_listed_day() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use wiremock::matchers::{method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let graph = MockServer::start().await;
        let (listed_day, detail_day) = (date_days_ago(3), date_days_ago(4));
        let record = |id: &str, day: chrono::NaiveDate| {
            let start = format!("{day}T23:59:00Z");
            serde_json::json!({"id": id, "version": 1, "type": "peerToPeer", "modalities": ["audio"],
                "startDateTime": start, "endDateTime": start, "lastModifiedDateTime": start})
        };
        support::mount_token_endpoint(&graph, "t").await;
        Mock::given(method("GET"))
            .and(path("/v1.0/communications/callRecords"))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                serde_json::json!({"value": [record("moved", listed_day)]}),
            ))
            .mount(&graph)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1.0/communications/callRecords/moved"))
            .respond_with(ResponseTemplate::new(200).set_body_json(record("moved", detail_day)))
            .mount(&graph)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1.0/communications/callRecords/moved/participants_v2"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(serde_json::json!({"value": []})),
            )
            .mount(&graph)
            .await;
        let dir = tempfile::tempdir().unwrap();
        let lake = dir.path().join("lake");
        // The day before holds a partition the run must not touch.
        let before = lake.join(format!("call_records/dt={detail_day}"));
        std::fs::create_dir_all(&before).unwrap();
        std::fs::write(before.join("part-other-00000.parquet"), b"not touched").unwrap();
        let config = dir.path().join("etl.toml");
        std::fs::write(
            &config,
            format!(
                "[graph]\ntenant_id = \"contoso.onmicrosoft.com\"\nclient_id = \"00000000-0000-4000-8000-000000000001\"\n\
                 graph_url = \"{0}\"\nlogin_url = \"{0}\"\n",
                graph.uri()
            ),
        )
        .unwrap();
        let mut command = support::binary();
        command
            .env("CALLRECORDS_CLIENT_SECRET", "s")
            .args(["export", "--streams", "call_records", "--config"])
            .arg(&config)
            .args(["--from", &listed_day.to_string(), "--to", &date_days_ago(2).to_string(), "--out"])
            .arg(&lake);
        let output = tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        let log = stderr(&output);
        assert!(log.contains("its details say") && log.contains("moved"), "{log}");
        assert_eq!(std::fs::read(before.join("part-other-00000.parquet")).unwrap(), b"not touched");
        assert_eq!(std::fs::read_dir(&before).unwrap().count(), 1);
        std::fs::remove_dir_all(&before).unwrap();
        let rows = support::read_table(&lake, "call_records");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["dt"], Value::String(listed_day.to_string()));
        let manifest = support::last_manifest(&lake);
        assert_eq!(manifest["records_moved"], serde_json::json!(["moved"]));
    });
}

// A property: any sequence of runs over random windows (whole days, partial days,
// overlapping) ends with the lake holding exactly the rows of a clean export whose time
// lies in the union of the windows.

/// The rows of the reference lake (a clean export of the whole range) whose time lies in
/// one of `windows`; call tables by their call record's start.
fn rows_within(reference: &[(String, Map<String, Value>)], windows: &[Window]) -> Vec<String> {
    let time = |row: &Map<String, Value>| {
        let text = row["start_date_time"].as_str().unwrap();
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    };
    let starts: std::collections::HashMap<String, DateTime<Utc>> = reference
        .iter()
        .filter(|(table, _)| table == "call_records")
        .map(|(_, row)| (row["call_id"].as_str().unwrap().to_string(), time(row)))
        .collect();
    let mut rows: Vec<String> = reference
        .iter()
        .filter(|(table, row)| {
            let at = match table.as_str() {
                "pstn_calls" => time(row),
                _ => starts[row["call_id"].as_str().unwrap()],
            };
            windows.iter().any(|w| w.contains(at))
        })
        .map(|(table, row)| format!("{table} {}", Value::Object(row.clone())))
        .collect();
    rows.sort();
    rows
}

async fn start_emulator() -> RunningEmulator {
    let config = EmulatorConfig {
        calls_per_day: 16,
        log_rows_per_day: 40,
        ..EmulatorConfig::default()
    };
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    emulator::start(config, listen).await.unwrap()
}

async fn export_in_process(emulator: &RunningEmulator, lake: &Path, window: Window) {
    let client = support::emulator_client(emulator);
    let plan = ExportPlan {
        format: Default::default(),
        window,
        streams: vec![StreamKind::CallRecords, StreamKind::PstnCalls],
        output: Zone::Local(lake.to_path_buf()),
        concurrency: 4,
        api_version: callrecords_etl::graph::ApiVersion::V1,
        log_chunk_days: 30,
        privacy: Default::default(),
        derivation: Default::default(),
        raw: None,
        full: false,
    };
    let progress = Progress::new(ProgressMode::Hidden);
    export::export(&client, &plan, &progress, &CancellationToken::new())
        .await
        .unwrap();
}

/// Windows within three days, on 6-hour steps, as (first step, steps long).
fn windows() -> impl Strategy<Value = Vec<(i64, i64)>> {
    prop::collection::vec((0i64..12, 1i64..=12), 1..=4)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_sequence_of_windows_leaves_exactly_the_rows_of_their_union(steps in windows()) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let first_day = midnight(date_days_ago(5));
        let reference = runtime.block_on(async {
            let emulator = start_emulator().await;
            let dir = tempfile::tempdir().unwrap();
            let whole = Window::new(first_day, first_day + Duration::days(3)).unwrap();
            export_in_process(&emulator, dir.path(), whole).await;
            let mut windows = Vec::new();
            for (start, length) in &steps {
                let from = first_day + Duration::hours(6 * start);
                let to = (from + Duration::hours(6 * length)).min(whole.to);
                let window = Window::new(from, to).unwrap();
                export_in_process(&emulator, &dir.path().join("runs"), window).await;
                windows.push(window);
            }
            let reference: Vec<(String, Map<String, Value>)> = ["call_records", "pstn_calls"]
                .into_iter()
                .chain(CALL_TABLES)
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .flat_map(|table| {
                    support::read_table(dir.path(), table)
                        .into_iter()
                        .map(move |row| (table.to_string(), row))
                })
                .collect();
            let mut tables: Vec<&str> = CALL_TABLES.to_vec();
            tables.push("pstn_calls");
            (rows_within(&reference, &windows), support::lake_rows(&dir.path().join("runs"), &tables))
        });
        let (expected, actual) = reference;
        prop_assert!(!expected.is_empty());
        prop_assert!(actual == expected, "{} rows, expected {}", actual.len(), expected.len());
    }
}
