//! Made for operators: progress on and off a terminal, the closing summary, exit codes,
//! `check` and `--dry-run`, through the built binary.

use crate::support;

use support::{binary, days_ago, stderr, stdout};

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use callrecords_emulator::{self as emulator, EmulatorConfig};

/// A config file pointing at `base_url` (an emulator or a test server).
fn write_config(dir: &Path, base_url: &str) -> PathBuf {
    let path = dir.join("etl.toml");
    std::fs::write(
        &path,
        format!(
            "[graph]\ntenant_id = \"{}\"\nclient_id = \"{}\"\ngraph_url = \"{base_url}\"\nlogin_url = \"{base_url}\"\n\
             [output]\npath = \"{}\"\n",
            emulator::DEFAULT_TENANT_ID,
            emulator::DEFAULT_CLIENT_ID,
            dir.join("lake").display()
        ),
    )
    .unwrap();
    path
}

async fn start_emulator() -> emulator::RunningEmulator {
    support::start_emulator(EmulatorConfig::default()).await
}

async fn run_blocking(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

#[test]
fn off_a_terminal_there_are_no_bars_or_escape_codes_and_the_summary_is_complete() {
    let lake = tempfile::tempdir().unwrap();
    let output = binary()
        .args([
            "export",
            "--emulator",
            "--from",
            &days_ago(3),
            "--to",
            &days_ago(2),
            "--out",
        ])
        .arg(lake.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let log = stderr(&output);
    assert!(
        !log.contains('\u{1b}'),
        "no escape codes off a terminal: {log:?}"
    );
    for expected in [
        "Finished call_records:",
        "Finished pstn_calls:",
        "records/s",
        "table",
        "call_media_streams",
        "direct_routing_calls",
        "partitions replaced: 11",
        "requests:",
        "throttled with 429",
        "records skipped (404): 0",
        "records rejected (quarantined in",
        "values written as null (unreadable): 0",
        "manifest:",
    ] {
        assert!(log.contains(expected), "summary lacks {expected:?}: {log}");
    }
}

#[test]
fn on_a_terminal_bars_are_drawn_and_log_lines_stay_whole() {
    let lake = tempfile::tempdir().unwrap();
    let binary_path = assert_cmd::cargo::cargo_bin("callrecords-etl");
    // `script` runs the command on a pseudo-terminal and copies what it drew to stdout.
    let command = format!(
        "{} export --emulator --streams call_records --faults seed=2,slow=0.3,slow_delay=40ms --concurrency 2 \
         --from {} --to {} --out {}",
        binary_path.display(),
        days_ago(3),
        days_ago(2),
        lake.path().display()
    );
    let output = std::process::Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let screen = stdout(&output);
    assert!(
        screen.contains('\u{1b}'),
        "a terminal gets a live bar: {screen:?}"
    );
    assert!(
        screen.contains("call_records") && screen.contains("records"),
        "{screen:?}"
    );
    // Log lines are printed above the bar, whole: each starts on a line of its own (after
    // the bar is cleared) and ends with its own fields, not with a piece of the bar.
    let started = screen
        .lines()
        .find(|line| line.contains("Export started."))
        .expect("the log line is there");
    let visible = strip_ansi(started);
    let visible = visible.rsplit('\r').next().unwrap_or_default();
    assert!(
        visible.starts_with("20")
            && visible.contains("Export started.")
            && visible.ends_with(&*lake.path().to_string_lossy()),
        "{visible:?}"
    );
    assert!(
        screen.contains("Exported") && screen.contains("manifest:"),
        "{screen:?}"
    );
}

/// The text a terminal shows: escape sequences (colours, cursor moves) removed.
fn strip_ansi(text: &str) -> String {
    let mut visible = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        visible.push(c);
    }
    visible
}

#[test]
fn a_runtime_failure_exits_1_and_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 9 of the loopback: the login host is unreachable.
    let config = write_config(dir.path(), "http://127.0.0.1:9");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("[retry]\nmax_attempts = 2\n");
    std::fs::write(&config, text).unwrap();
    let output = binary()
        .env("CALLRECORDS_CLIENT_SECRET", "s")
        .args(["export", "-q", "--config"])
        .arg(&config)
        .args(["--from", &days_ago(2), "--to", &days_ago(1)])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("127.0.0.1"), "{}", stderr(&output));
    assert!(support::parquet_files(&dir.path().join("lake"), "call_records").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_with_the_right_secret_and_says_what_to_fix_with_a_wrong_one() {
    let emulator = start_emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &emulator.base_url());

    let mut good = binary();
    good.env("CALLRECORDS_CLIENT_SECRET", emulator::DEFAULT_CLIENT_SECRET)
        .args(["check", "--config"])
        .arg(&config);
    let output = run_blocking(good).await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    let text = stdout(&output);
    for line in [
        "✓ configuration",
        "✓ sign-in",
        "✓ call_records",
        "✓ pstn_calls",
        "✓ direct_routing_calls",
    ] {
        assert!(text.contains(line), "{text}");
    }

    let mut bad = binary();
    bad.env("CALLRECORDS_CLIENT_SECRET", "not-the-secret")
        .args(["check", "--config"])
        .arg(&config);
    let output = run_blocking(bad).await;
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    let text = stdout(&output);
    assert!(
        text.contains("✗ sign-in") && text.to_lowercase().contains("secret"),
        "{text}"
    );
    assert!(
        text.contains("Certificates & secrets"),
        "the fix is named: {text}"
    );
    assert!(
        !text.contains("not-the-secret"),
        "the secret is not printed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_prints_the_plan_and_makes_no_request() {
    let emulator = start_emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &emulator.base_url());
    let mut command = binary();
    command
        .env("CALLRECORDS_CLIENT_SECRET", emulator::DEFAULT_CLIENT_SECRET)
        .args(["export", "--dry-run", "--config"])
        .arg(&config)
        .args(["--from", &days_ago(3), "--to", &days_ago(1)]);
    let output = run_blocking(command).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let plan = stdout(&output);
    assert!(
        plan.contains("Dry run") && plan.contains("partitions that would be replaced (22)"),
        "{plan}"
    );
    assert!(
        plan.contains(&format!("call_records/dt={}", days_ago(3))),
        "{plan}"
    );
    assert!(plan.contains("request(s) of getPstnCalls"), "{plan}");
    assert!(
        emulator.requests().is_empty(),
        "no request at all: {:?}",
        emulator.requests().len()
    );
    assert!(!dir.path().join("lake").exists(), "nothing is written");
}

#[test]
fn json_logs_are_one_object_per_line_and_end_with_the_summary() {
    let lake = tempfile::tempdir().unwrap();
    let output = binary()
        .args([
            "--log-format",
            "json",
            "export",
            "--emulator",
            "--streams",
            "call_records",
        ])
        .args(["--from", &days_ago(3), "--to", &days_ago(2), "--out"])
        .arg(lake.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let events: Vec<serde_json::Value> = stderr(&output)
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"))
        })
        .collect();
    let last = events.last().unwrap();
    assert_eq!(last["message"], "Export finished.");
    let summary: serde_json::Value =
        serde_json::from_str(last["summary"].as_str().unwrap()).unwrap();
    assert!(summary["tables"]["call_records"]["rows"].as_u64().unwrap() > 0);
    assert!(
        events
            .iter()
            .any(|e| e["level"] == "INFO" && e["message"] == "Export started.")
    );
}
