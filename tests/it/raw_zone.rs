//! The raw landing zone and `reflatten`, through the built binary against the embedded
//! emulator: what export writes raw, that reflatten rebuilds the same tables from it
//! (whatever the files are called, compressed or not), reruns, and the privacy guard.

use crate::support;

use support::{CALL_TABLES, days_ago, sorted_rows};

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;

const LOG_TABLES: [&str; 5] = [
    "pstn_calls",
    "direct_routing_calls",
    "sms_logs",
    "pstn_blocked_users",
    "pstn_online_meeting_dialouts",
];

fn run(args: &[&str]) -> Output {
    Command::cargo_bin("callrecords-etl")
        .unwrap()
        .env_remove("RUST_LOG")
        .env_remove("CALLRECORDS_CONFIG")
        .args(args)
        .output()
        .unwrap()
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn assert_same_tables(expected: &Path, actual: &Path, tables: &[&str]) {
    for table in tables {
        let (expected, actual) = (sorted_rows(expected, table), sorted_rows(actual, table));
        assert_eq!(expected.len(), actual.len(), "rows of {table}");
        assert!(expected == actual, "{table} differs");
    }
}

fn raw_lines(path: &Path) -> Vec<Value> {
    callrecords_etl::raw::RawInput::Local(path.to_path_buf())
        .open_lines()
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(&line.unwrap()).unwrap())
        .collect()
}

/// The folders of an exported lake, its raw zone and a lake rebuilt from it, under `dir`.
fn lake_raw_rebuilt(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    (dir.join("lake"), dir.join("raw"), dir.join("rebuilt"))
}

fn export(lake: &Path, raw: &Path, from: &str, to: &str) {
    assert_success(&run(&[
        "export",
        "--emulator",
        "--api-version",
        "beta",
        "--from",
        from,
        "--to",
        to,
        "--out",
        lake.to_str().unwrap(),
        "--raw",
        raw.to_str().unwrap(),
    ]));
}

#[test]
fn reflatten_of_the_raw_zone_gives_the_tables_export_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, raw, rebuilt) = lake_raw_rebuilt(dir.path());
    let (from, to) = (days_ago(6), days_ago(4));
    export(&lake, &raw, &from, &to);

    // One line per call record, every page merged in; one file per (stream, dt).
    let files = callrecords_etl::raw::files_under(&raw.join("call_records")).unwrap();
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(
        files
            .iter()
            .all(|f| f.to_string_lossy().ends_with(".jsonl.zst"))
    );
    let records: Vec<Value> = files.iter().flat_map(|f| raw_lines(f)).collect();
    assert_eq!(
        records.len(),
        support::read_table(&lake, "call_records").len()
    );
    for record in &records {
        assert!(record["sessions"].is_array() && record["participants_v2"].is_array());
        assert!(record.get("sessions@odata.nextLink").is_none());
    }
    let dialouts =
        callrecords_etl::raw::files_under(&raw.join("pstn_online_meeting_dialouts")).unwrap();
    let row = &raw_lines(&dialouts[0])[0];
    assert!(row[callrecords_etl::raw::REPORT_FROM].is_string(), "{row}");
    assert!(!raw.join("_staging").exists());

    let output = run(&[
        "reflatten",
        "--raw",
        raw.to_str().unwrap(),
        "--out",
        rebuilt.to_str().unwrap(),
        "--from",
        &from,
        "--to",
        &to,
    ]);
    assert_success(&output);
    assert_same_tables(&lake, &rebuilt, &CALL_TABLES);
    assert_same_tables(&lake, &rebuilt, &LOG_TABLES);
    assert!(rebuilt.join("_manifests").read_dir().unwrap().count() == 1);
}

#[test]
fn reflatten_reads_plain_and_gzip_lines_and_places_records_by_their_own_start() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, raw, rebuilt) = lake_raw_rebuilt(dir.path());
    let (from, to) = (days_ago(9), days_ago(7));
    export(&lake, &raw, &from, &to);
    let records: Vec<Value> = callrecords_etl::raw::files_under(&raw.join("call_records"))
        .unwrap()
        .iter()
        .flat_map(|f| raw_lines(f))
        .collect();
    let (first, second) = records.split_at(records.len() / 2);

    // A folder of files named after the wrong day: the records' own start decides.
    let loose = dir.path().join("loose/dt=1999-01-01");
    std::fs::create_dir_all(&loose).unwrap();
    let mut plain = std::fs::File::create(loose.join("a.jsonl")).unwrap();
    for record in first {
        writeln!(plain, "{record}").unwrap();
    }
    let gz = std::fs::File::create(loose.join("b.jsonl.gz")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(gz, flate2::Compression::fast());
    for record in second {
        writeln!(gz, "{record}").unwrap();
    }
    gz.finish().unwrap();

    let output = run(&[
        "reflatten",
        "--raw",
        dir.path().join("loose").to_str().unwrap(),
        "--out",
        rebuilt.to_str().unwrap(),
        "--workers",
        "3",
    ]);
    assert_success(&output);
    assert_same_tables(&lake, &rebuilt, &CALL_TABLES);
    assert!(!rebuilt.join("call_records/dt=1999-01-01").exists());
    // The three workers wrote every partition together, into one file.
    for table in CALL_TABLES {
        for partition in std::fs::read_dir(rebuilt.join(table)).unwrap() {
            let files = std::fs::read_dir(partition.unwrap().path()).unwrap();
            let parquet = files
                .filter(|f| f.as_ref().unwrap().path().extension() == Some("parquet".as_ref()));
            assert_eq!(parquet.count(), 1, "{table}");
        }
    }
}

/// A staged file's write failing, or the process dying there, while three workers write:
/// every worker stops, nothing is published, and the next run cleans up and succeeds.
#[test]
fn a_write_failing_or_crashing_while_workers_write_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, raw, rebuilt) = lake_raw_rebuilt(dir.path());
    export(&lake, &raw, &days_ago(9), &days_ago(7));
    let reflatten = |failpoints: Option<&str>| {
        let mut command = Command::cargo_bin("callrecords-etl").unwrap();
        command.env_remove("RUST_LOG").env_remove("FAILPOINTS");
        if let Some(failpoints) = failpoints {
            command.env("FAILPOINTS", failpoints);
        }
        let (raw, out) = (raw.to_str().unwrap(), rebuilt.to_str().unwrap());
        let args = ["reflatten", "--raw", raw, "--out", out, "--workers", "3"];
        command.args(args).output().unwrap()
    };
    let manifests = || rebuilt.join("_manifests").read_dir().unwrap().count();
    let staged_runs = || match rebuilt.join("_staging").read_dir() {
        Ok(entries) => entries.count(),
        Err(_) => 0,
    };
    assert_success(&reflatten(None));
    assert_eq!(staged_runs(), 0);

    let failed = reflatten(Some("sink::write=3*off->return(io)"));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("injected I/O error at step sink::write"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was published"), "{stderr}");
    assert_same_tables(&lake, &rebuilt, &CALL_TABLES);
    assert_eq!(
        (manifests(), staged_runs()),
        (1, 0),
        "no manifest, no staging left"
    );

    let crashed = reflatten(Some("sink::write=5*off->return(crash)"));
    assert!(crashed.status.code().is_none(), "killed by a signal");
    assert_same_tables(&lake, &rebuilt, &CALL_TABLES);
    assert_eq!(
        (manifests(), staged_runs()),
        (1, 1),
        "the crashed run's staging is left"
    );

    assert_success(&reflatten(None));
    assert_same_tables(&lake, &rebuilt, &CALL_TABLES);
    assert_eq!(
        (manifests(), staged_runs()),
        (2, 0),
        "the next run removed it"
    );
}

#[test]
fn a_rerun_replaces_the_raw_partitions_of_its_window() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, raw) = (dir.path().join("lake"), dir.path().join("raw"));
    let (from, to) = (days_ago(3), days_ago(2));
    export(&lake, &raw, &from, &to);
    export(&lake, &raw, &from, &to);
    let files = callrecords_etl::raw::files_under(&raw.join("call_records")).unwrap();
    assert_eq!(
        files.len(),
        1,
        "the second run's file replaced the first: {files:?}"
    );
    assert_eq!(
        raw_lines(&files[0]).len(),
        support::read_table(&lake, "call_records").len()
    );
}

#[test]
fn a_raw_zone_with_hashed_or_dropped_personal_data_must_be_allowed_explicitly() {
    let dir = tempfile::tempdir().unwrap();
    let config = |raw: &str| {
        let text = format!(
            "[graph]\ntenant_id = \"contoso.onmicrosoft.com\"\nclient_id = \"00000000-0000-4000-8000-000000000000\"\n\
             [privacy]\nmode = \"drop\"\n[raw]\npath = \"{}\"\n{raw}",
            dir.path().join("raw").display()
        );
        let file: callrecords_etl::config::FileConfig = toml::from_str(&text).unwrap();
        callrecords_etl::config::validate(file, dir.path(), |name| {
            (name == callrecords_etl::config::SECRET_ENV).then(|| "secret".to_string())
        })
    };
    let problems = config("").unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("[raw] allow_personal_data")),
        "{problems:?}"
    );
    let settings = config("allow_personal_data = true").unwrap();
    assert_eq!(
        settings.raw,
        Some(dir.path().join("raw").display().to_string())
    );

    // The same through the binary: a usage error (exit 2) naming the keys.
    let path = dir.path().join("etl.toml");
    std::fs::write(
        &path,
        format!(
            "[graph]\ntenant_id = \"contoso.onmicrosoft.com\"\nclient_id = \"00000000-0000-4000-8000-000000000000\"\n\
             [privacy]\nmode = \"drop\"\n[raw]\npath = \"{}\"\n",
            dir.path().join("raw").display()
        ),
    )
    .unwrap();
    let output = Command::cargo_bin("callrecords-etl")
        .unwrap()
        .env("CALLRECORDS_CLIENT_SECRET", "secret")
        .args(["export", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("allow_personal_data"));
}

#[test]
fn reflatten_with_the_export_config_protects_personal_data_as_the_export_did() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, raw) = (dir.path().join("lake"), dir.path().join("raw"));
    let (clear, protected) = (dir.path().join("clear"), dir.path().join("protected"));
    export(&lake, &raw, &days_ago(3), &days_ago(2));
    let key = "k".repeat(32);
    // Only [privacy] is read: the file needs no Graph settings or credential.
    let config = dir.path().join("etl.toml");
    std::fs::write(
        &config,
        "[privacy]\nmode = \"keep\"\ndisplay_names = \"hash\"\nuser_principal_names = \"drop\"\nsalt_env = \"TEST_HASH_KEY\"\n",
    )
    .unwrap();
    let raw_arg = raw.to_str().unwrap();
    assert_success(&run(&[
        "reflatten",
        "--raw",
        raw_arg,
        "--out",
        clear.to_str().unwrap(),
    ]));
    let reflatten_with_config = |key: Option<&str>| {
        let mut command = Command::cargo_bin("callrecords-etl").unwrap();
        command.env_remove("RUST_LOG").env_remove("TEST_HASH_KEY");
        if let Some(key) = key {
            command.env("TEST_HASH_KEY", key);
        }
        command
            .args([
                "reflatten",
                "--raw",
                raw_arg,
                "--out",
                protected.to_str().unwrap(),
            ])
            .args(["--config", config.to_str().unwrap()])
            .output()
            .unwrap()
    };
    // A hash mode without its key is a configuration error naming the variable.
    let refused = reflatten_with_config(None);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("TEST_HASH_KEY"));
    assert!(!protected.join("call_participants").exists());
    assert_success(&reflatten_with_config(Some(&key)));

    let hasher = callrecords_etl::privacy::HashKey::new(&callrecords_etl::graph::Secret::new(key));
    let by_key = |lake: &Path| {
        let mut rows = support::read_table(lake, "call_participants");
        rows.sort_by_key(|row| {
            let key = |name: &str| row[name].to_string();
            (key("call_id"), key("role"), key("participant_index"))
        });
        rows
    };
    let (clear_rows, protected_rows) = (by_key(&clear), by_key(&protected));
    assert_eq!(clear_rows.len(), protected_rows.len());
    assert!(
        clear_rows
            .iter()
            .any(|row| row["identity_display_name"].is_string())
    );
    for (clear, protected) in clear_rows.iter().zip(&protected_rows) {
        let expected = clear["identity_display_name"]
            .as_str()
            .map_or(Value::Null, |name| Value::String(hasher.hash(name)));
        assert_eq!(protected["identity_display_name"], expected);
        assert_eq!(protected["identity_user_principal_name"], Value::Null);
        assert_eq!(protected["participant_id"], clear["participant_id"]);
    }
}

#[test]
fn a_broken_line_fails_reflatten_naming_its_file_and_line_and_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("records.jsonl");
    let file = std::fs::File::create(&dump).unwrap();
    callrecords_emulator::synthetic_records::write(
        file,
        &callrecords_emulator::Tenant::new(42, 400),
        1,
    )
    .unwrap();
    let good = std::fs::read(&dump).unwrap();
    let lines = good.iter().filter(|b| **b == b'\n').count();
    assert!(
        good.len() > 2 * (4 << 20),
        "the file spans several chunks of 4 MiB"
    );
    for (name, bad_line, message) in [
        (
            "broken.jsonl",
            &b"{\"id\": \"x\", \"startDateTime\": "[..],
            "not a JSON object",
        ),
        ("latin1.jsonl", &b"{\"id\": \"caf\xe9\"}"[..], "not UTF-8"),
    ] {
        let path = dir.path().join(name);
        let mut bytes = good.clone();
        bytes.extend_from_slice(bad_line);
        bytes.extend_from_slice(b"\n");
        bytes.extend_from_slice(&good[..good.iter().position(|b| *b == b'\n').unwrap() + 1]);
        std::fs::write(&path, bytes).unwrap();
        let out = dir.path().join(format!("out-{name}"));
        let output = run(&[
            "reflatten",
            "--raw",
            path.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        let expected = format!("{} line {}", path.display(), lines + 1);
        assert!(stderr.contains(&expected), "{expected} in {stderr}");
        assert!(stderr.contains(message), "{message} in {stderr}");
        assert!(!out.join("call_records").exists(), "nothing is published");
    }
}
