//! Nothing lost: the output lock, nightly state and catch-up, quarantine, faults, kills and
//! signals, exercised through the built binary against the embedded emulator.

mod support;

use std::path::Path;
use std::process::Output;

use assert_cmd::Command;
use callrecords_etl::state::{ExportState, OutputLock, StreamState};
use chrono::{Days, Utc};
use serde_json::Value;

fn binary() -> Command {
    let mut command = Command::cargo_bin("callrecords-etl").unwrap();
    command
        .env_remove("RUST_LOG")
        .env_remove("CALLRECORDS_CONFIG")
        .env_remove("CALLRECORDS_CLIENT_SECRET");
    command
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn days_ago(n: u64) -> chrono::NaiveDate {
    Utc::now()
        .date_naive()
        .checked_sub_days(Days::new(n))
        .unwrap()
}

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
    let available = callrecords_etl::state::call_records_available_from(Utc::now());
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(exported_from).unwrap(),
        available
    );
}
