//! Nothing lost: the output lock, nightly state and catch-up, quarantine, faults, kills and
//! signals, exercised through the built binary against the embedded emulator.

use crate::support;

use support::CALL_TABLES;

use support::{binary, date_days_ago as days_ago, stderr};

use std::path::Path;
use std::process::Output;

use callrecords_etl::state::{ExportState, StreamState};
use callrecords_etl::store::lock::OutputLock;
use chrono::Utc;
use serde_json::Value;

fn midnight(date: chrono::NaiveDate) -> chrono::DateTime<Utc> {
    callrecords_etl::window::midnight(date)
}

fn partitions(lake: &Path, table: &str) -> Vec<String> {
    let mut days: Vec<String> = std::fs::read_dir(lake.join(table))
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    days.sort();
    days
}

fn manifests(lake: &Path) -> Vec<Value> {
    let mut all: Vec<_> = std::fs::read_dir(lake.join("_manifests"))
        .unwrap()
        .map(|e| {
            serde_json::from_slice::<Value>(&std::fs::read(e.unwrap().path()).unwrap()).unwrap()
        })
        .collect();
    all.sort_by_key(|m| m["started_at"].as_str().unwrap().to_string());
    all
}

#[test]
fn a_second_run_on_the_same_output_fails_fast_with_exit_code_4() {
    let lake = tempfile::tempdir().unwrap();
    let _held = OutputLock::acquire(lake.path(), "the-first-run").unwrap();
    let started = std::time::Instant::now();
    let output = binary()
        .args(["export", "--emulator", "--streams", "call_records", "--out"])
        .arg(lake.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("the-first-run"),
        "{}",
        stderr(&output)
    );
    assert!(
        started.elapsed().as_secs() < 10,
        "fails fast instead of waiting"
    );
    assert!(partitions(lake.path(), "call_records").is_empty());
}

#[test]
fn a_nightly_run_exports_the_lookback_and_records_its_state() {
    let lake = tempfile::tempdir().unwrap();
    let output = binary()
        .args(["export", "--emulator", "--streams", "call_records", "--out"])
        .arg(lake.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let expected: Vec<String> = (1..=3)
        .rev()
        .map(|n| format!("dt={}", days_ago(n)))
        .collect();
    assert_eq!(partitions(lake.path(), "call_records"), expected);
    let state = ExportState::load(lake.path()).unwrap();
    assert_eq!(
        state.streams["call_records"],
        StreamState {
            complete_from: midnight(days_ago(3)),
            complete_to: midnight(days_ago(0))
        }
    );
}

#[test]
fn missed_nights_are_caught_up_from_the_state() {
    let lake = tempfile::tempdir().unwrap();
    let mut state = ExportState::default();
    let last = StreamState {
        complete_from: midnight(days_ago(20)),
        complete_to: midnight(days_ago(7)),
    };
    state.streams.insert("call_records".into(), last);
    state.save(lake.path()).unwrap();
    let output = binary()
        .args(["export", "--emulator", "--streams", "call_records", "--out"])
        .arg(lake.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("caught up"), "{}", stderr(&output));
    let expected: Vec<String> = (1..=7)
        .rev()
        .map(|n| format!("dt={}", days_ago(n)))
        .collect();
    assert_eq!(
        partitions(lake.path(), "call_records"),
        expected,
        "every missed day is exported"
    );
    let state = ExportState::load(lake.path()).unwrap();
    assert_eq!(
        state.streams["call_records"].complete_to,
        midnight(days_ago(0))
    );
    assert_eq!(
        state.streams["call_records"].complete_from,
        midnight(days_ago(20))
    );
}

#[test]
fn a_gap_past_the_retention_is_reported_and_old_partitions_are_left_alone() {
    let lake = tempfile::tempdir().unwrap();
    // A partition from long ago, which Graph can no longer refill.
    let old_day = days_ago(40);
    let old = lake
        .path()
        .join("call_records")
        .join(format!("dt={old_day}"));
    std::fs::create_dir_all(&old).unwrap();
    std::fs::write(old.join("part-old.parquet"), b"kept").unwrap();
    // The oldest day Graph still holds moves at midnight UTC: the run saw one of these two.
    let available_before = callrecords_etl::state::call_records_available_from(Utc::now());
    let output = binary()
        .args([
            "export",
            "--emulator",
            "--streams",
            "call_records",
            "--from",
        ])
        .arg(days_ago(41).to_string())
        .args(["--to"])
        .arg(days_ago(28).to_string())
        .arg("--out")
        .arg(lake.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("30 days"), "{}", stderr(&output));
    assert_eq!(
        std::fs::read(old.join("part-old.parquet")).unwrap(),
        b"kept"
    );
    let manifest = &manifests(lake.path())[0];
    let exported_from = manifest["stream_windows"]["call_records"]["from"]
        .as_str()
        .unwrap();
    let available_after = callrecords_etl::state::call_records_available_from(Utc::now());
    let exported_from = chrono::DateTime::parse_from_rfc3339(exported_from).unwrap();
    assert!(
        exported_from == available_before || exported_from == available_after,
        "exported from {exported_from}, Graph holds records from {available_before} or {available_after}"
    );
}

fn export(lake: &Path, extra: &[&str]) -> Output {
    let (from, to) = (days_ago(4).to_string(), days_ago(2).to_string());
    binary()
        .args([
            "export",
            "--emulator",
            "--from",
            &from,
            "--to",
            &to,
            "--out",
        ])
        .arg(lake)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn faults_at_a_high_rate_still_give_the_complete_exact_output() {
    let clean = tempfile::tempdir().unwrap();
    let output = export(
        clean.path(),
        &["--streams", "call_records,pstn_calls,direct_routing_calls"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let faulty = tempfile::tempdir().unwrap();
    let faults = "seed=11,throttle=0.1,5xx=0.05,drop=0.03,slow=0.02,slow_delay=50ms,truncate=0.01,retry_after=0";
    let output = export(
        faulty.path(),
        &[
            "--streams",
            "call_records,pstn_calls,direct_routing_calls",
            "--faults",
            faults,
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let manifest = &manifests(faulty.path())[0];
    assert!(
        manifest["requests"]["retries"].as_u64().unwrap() > 20,
        "faults were injected: {manifest}"
    );
    let mut tables = CALL_TABLES.to_vec();
    tables.extend(["pstn_calls", "direct_routing_calls"]);
    let expected = support::lake_rows(clean.path(), &tables);
    assert!(expected.len() > 10_000);
    assert!(
        expected == support::lake_rows(faulty.path(), &tables),
        "the faulty run wrote other rows"
    );
}

#[test]
fn unreadable_records_are_quarantined_and_the_run_exits_3() {
    let lake = tempfile::tempdir().unwrap();
    let faults = callrecords_emulator::Faults::parse("seed=5,corrupt=0.03").unwrap();
    let output = export(
        lake.path(),
        &[
            "--streams",
            "call_records",
            "--faults",
            "seed=5,corrupt=0.03",
        ],
    );
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    let tenant = callrecords_emulator::Tenant::new(42, callrecords_emulator::DEFAULT_CALLS_PER_DAY);
    let listed = tenant.list(midnight(days_ago(4)), midnight(days_ago(2)));
    let (corrupt, healthy): (Vec<String>, Vec<String>) = listed
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_string())
        .partition(|id| faults.is_corrupt(id));
    assert!(!corrupt.is_empty());
    let manifest = &manifests(lake.path())[0];
    let run_id = manifest["run_id"].as_str().unwrap();
    let quarantined: Vec<Value> = std::fs::read_to_string(
        lake.path()
            .join(format!("_rejected/{run_id}/call_records.jsonl")),
    )
    .unwrap()
    .lines()
    .map(|line| serde_json::from_str(line).unwrap())
    .collect();
    let mut quarantined_ids: Vec<String> = quarantined
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    quarantined_ids.sort();
    let mut expected = corrupt.clone();
    expected.sort();
    assert_eq!(quarantined_ids, expected);
    assert!(quarantined.iter().all(|r| {
        r["url"]
            .as_str()
            .unwrap()
            .contains(r["id"].as_str().unwrap())
    }));
    assert!(
        quarantined
            .iter()
            .all(|r| !r["error"].as_str().unwrap().is_empty() && r["body"].is_string())
    );
    let mut exported: Vec<String> = support::read_table(lake.path(), "call_records")
        .iter()
        .map(|row| row["call_id"].as_str().unwrap().to_string())
        .collect();
    exported.sort();
    let mut healthy = healthy;
    healthy.sort();
    assert_eq!(exported, healthy, "every other record is exported");
    let rejected = manifest["records_rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), corrupt.len());
    assert!(
        stderr(&output).contains(&corrupt[0]),
        "the summary names the ids"
    );
}

fn send_signal(child: &std::process::Child, signal: i32) {
    // SAFETY: kill(2) on the pid of a child this test owns.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
}

fn spawn_slow_export(lake: &Path) -> std::process::Child {
    let (from, to) = (days_ago(4).to_string(), days_ago(2).to_string());
    std::process::Command::new(assert_cmd::cargo::cargo_bin("callrecords-etl"))
        .args([
            "export",
            "--emulator",
            "--streams",
            "call_records,pstn_calls",
            "--from",
            &from,
            "--to",
            &to,
        ])
        .args([
            "--faults",
            "seed=1,slow=0.5,slow_delay=60ms",
            "--concurrency",
            "2",
            "--out",
        ])
        .arg(lake)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// No file under `<table>/dt=…/` is partial: every one is a whole, readable Parquet file.
fn assert_no_torn_file(lake: &Path) {
    for table in callrecords_etl::schema::tables() {
        for (_, file) in support::parquet_files(lake, &table.table) {
            let reader = std::fs::File::open(&file).unwrap();
            let builder =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(reader)
                    .unwrap_or_else(|e| panic!("{} is torn: {e}", file.display()));
            for batch in builder.build().unwrap() {
                batch.unwrap_or_else(|e| panic!("{} is torn: {e}", file.display()));
            }
        }
    }
}

#[test]
fn a_run_killed_at_any_moment_leaves_no_torn_file_and_the_rerun_completes() {
    let reference = tempfile::tempdir().unwrap();
    let output = export(reference.path(), &["--streams", "call_records,pstn_calls"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let tables: Vec<&str> = CALL_TABLES.iter().copied().chain(["pstn_calls"]).collect();
    let expected = support::lake_rows(reference.path(), &tables);

    let lake = tempfile::tempdir().unwrap();
    // Kill points spread over the run (fixed, so the test is reproducible).
    for delay_ms in [150, 700, 1500, 2600, 4000] {
        let mut child = spawn_slow_export(lake.path());
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        child.wait().unwrap();
        assert_no_torn_file(lake.path());
    }
    let output = export(lake.path(), &["--streams", "call_records,pstn_calls"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_no_torn_file(lake.path());
    assert_eq!(support::lake_rows(lake.path(), &tables), expected);
    let staging = lake.path().join("_staging");
    assert!(
        !staging.exists() || std::fs::read_dir(&staging).unwrap().next().is_none(),
        "stale staging is cleaned"
    );
}

#[test]
fn sigterm_and_sigint_stop_without_publishing_anything() {
    for (signal, code) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        let lake = tempfile::tempdir().unwrap();
        let mut child = spawn_slow_export(lake.path());
        std::thread::sleep(std::time::Duration::from_millis(1200));
        send_signal(&child, signal);
        let status = child.wait().unwrap();
        let mut log = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut log).unwrap();
        assert_eq!(status.code(), Some(code), "{log}");
        for table in callrecords_etl::schema::tables() {
            assert!(
                partitions(lake.path(), &table.table).is_empty(),
                "{} was published: {log}",
                table.table
            );
        }
        let staging = lake.path().join("_staging");
        assert!(
            !staging.exists() || std::fs::read_dir(&staging).unwrap().next().is_none(),
            "staging removed: {log}"
        );
        assert!(!lake.path().join("_state.json").exists());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_record_that_is_gone_is_a_named_warning_counted_in_the_summary() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let graph = MockServer::start().await;
    let day = days_ago(2);
    let start = format!("{day}T10:00:00Z");
    let item = |id: &str| {
        serde_json::json!({"id": id, "version": 1, "type": "peerToPeer", "modalities": ["audio"],
        "startDateTime": start, "endDateTime": start, "lastModifiedDateTime": start})
    };
    support::mount_token_endpoint(&graph, "t").await;
    Mock::given(method("GET"))
        .and(path("/v1.0/communications/callRecords"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"value": [item("kept"), item("gone")]})),
        )
        .mount(&graph)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/communications/callRecords/kept"))
        .respond_with(ResponseTemplate::new(200).set_body_json(item("kept")))
        .mount(&graph)
        .await;
    Mock::given(method("GET"))
        .and(path(
            "/v1.0/communications/callRecords/kept/participants_v2",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"value": []})))
        .mount(&graph)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/communications/callRecords/gone"))
        .respond_with(
            ResponseTemplate::new(404).set_body_json(
                serde_json::json!({"error": {"code": "NotFound", "message": "gone"}}),
            ),
        )
        .mount(&graph)
        .await;
    let dir = tempfile::tempdir().unwrap();
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
    let lake = dir.path().join("lake");
    let mut command = binary();
    command
        .env("CALLRECORDS_CLIENT_SECRET", "s")
        .args(["export", "--streams", "call_records", "--config"])
        .arg(&config)
        .args([
            "--from",
            &day.to_string(),
            "--to",
            &days_ago(1).to_string(),
            "--out",
        ])
        .arg(&lake);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let log = stderr(&output);
    assert!(
        log.contains("Call record gone was listed but Graph answered 404"),
        "{log}"
    );
    assert!(log.contains("records skipped (404): 1 (gone)"), "{log}");
    let manifest = &manifests(&lake)[0];
    assert_eq!(manifest["records_not_found"], serde_json::json!(["gone"]));
    assert_eq!(support::read_table(&lake, "call_records").len(), 1);
}

/// Every row of the call tables of `lake`, sorted.
fn call_rows(lake: &Path) -> Vec<String> {
    support::lake_rows(lake, &CALL_TABLES)
}

#[test]
fn case5_quarantined_records_keep_their_rows_and_are_fetched_again_by_any_later_run() {
    let clean = tempfile::tempdir().unwrap();
    let output = export(clean.path(), &["--streams", "call_records"]);
    assert!(output.status.success(), "{}", stderr(&output));

    let lake = tempfile::tempdir().unwrap();
    let output = export(lake.path(), &["--streams", "call_records"]);
    assert!(output.status.success(), "{}", stderr(&output));
    // A full rerun of the same days meets broken responses.
    let output = export(
        lake.path(),
        &[
            "--streams",
            "call_records",
            "--full",
            "--faults",
            "seed=5,corrupt=0.03",
        ],
    );
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    let manifest = support::last_manifest(lake.path());
    let rejected = manifest["records_rejected"].as_array().unwrap().len() as u64;
    assert!(rejected > 0);
    assert_eq!(
        manifest["records_quarantined_kept"].as_u64(),
        Some(rejected)
    );
    assert_eq!(
        manifest["records_quarantined_pending"].as_u64(),
        Some(rejected)
    );
    assert!(
        call_rows(lake.path()) == call_rows(clean.path()),
        "the quarantined records kept their rows"
    );
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(lake.path().join("_state.json")).unwrap())
            .unwrap();
    let listed: usize = state["quarantined"]
        .as_object()
        .unwrap()
        .values()
        .map(|ids| ids.as_array().unwrap().len())
        .sum();
    assert_eq!(listed as u64, rejected, "{state}");

    // A later run of another day fetches exactly those records again.
    let (from, to) = (days_ago(2).to_string(), days_ago(1).to_string());
    let output = binary()
        .args([
            "export",
            "--emulator",
            "--streams",
            "call_records",
            "--from",
            &from,
            "--to",
            &to,
            "--out",
        ])
        .arg(lake.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let manifest = support::last_manifest(lake.path());
    assert_eq!(
        manifest["records_quarantined_pending"].as_u64(),
        Some(0),
        "{manifest}"
    );
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(lake.path().join("_state.json")).unwrap())
            .unwrap();
    assert!(state.get("quarantined").is_none(), "{state}");
    let replaced = manifest["partitions_replaced"].as_array().unwrap();
    assert!(
        replaced.iter().any(|p| p
            .as_str()
            .unwrap()
            .ends_with(&format!("dt={}", days_ago(4)))
            || p.as_str()
                .unwrap()
                .ends_with(&format!("dt={}", days_ago(3)))),
        "the days of the refetched records are rewritten: {replaced:?}"
    );
    let days: Vec<String> = call_rows(lake.path())
        .into_iter()
        .filter(|row| !row.contains(&format!("\"dt\":\"{}\"", days_ago(2))))
        .collect();
    assert!(
        days == call_rows(clean.path()),
        "the refetched records' days equal a clean export"
    );
}

#[test]
fn case6_a_damaged_state_file_is_refused_before_anything_changes() {
    let lake = tempfile::tempdir().unwrap();
    std::fs::write(lake.path().join("_state.json"), "{ torn").unwrap();
    let output = export(lake.path(), &["--streams", "call_records"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let log = stderr(&output);
    assert!(
        log.contains("_state.json") && log.contains("damaged"),
        "{log}"
    );
    let mut left: Vec<String> = std::fs::read_dir(lake.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["_lock", "_state.json"], "nothing was written");
    assert_eq!(
        std::fs::read_to_string(lake.path().join("_state.json")).unwrap(),
        "{ torn"
    );
}
