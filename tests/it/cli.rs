//! The built binary, as users and schedulers run it: against the embedded emulator,
//! reading the written Parquet back; exit codes and messages of bad input.

use crate::support;

use support::CALL_TABLES;

use support::{binary, days_ago, stderr};

use std::process::Output;

use callrecords_emulator::Tenant;
use callrecords_etl::schema;
use chrono::{DateTime, Utc};
use serde_json::Value;

fn run(args: &[&str]) -> Output {
    binary().args(args).output().unwrap()
}

fn at(text: &str) -> DateTime<Utc> {
    callrecords_etl::window::parse_bound(text).unwrap()
}

#[test]
fn an_emulator_export_writes_every_call_of_the_window_with_all_its_children() {
    let lake = tempfile::tempdir().unwrap();
    let out = lake.path().to_str().unwrap();
    let (from, to) = (days_ago(10), days_ago(8));
    let output = run(&[
        "export",
        "--emulator",
        "--streams",
        "call_records",
        "--from",
        &from,
        "--to",
        &to,
        "--out",
        out,
    ]);
    assert!(output.status.success(), "{}", stderr(&output));

    // The emulator's tenant is deterministic: compare against its own records.
    let tenant = Tenant::new(
        42,
        callrecords_emulator::EmulatorConfig::default().calls_per_day,
    );
    let listed = tenant.list(at(&from), at(&to));
    let records: Vec<Value> = listed
        .iter()
        .map(|item| tenant.record(item["id"].as_str().unwrap()).unwrap())
        .collect();
    let count = |f: &dyn Fn(&Value) -> usize| records.iter().map(f).sum::<usize>();
    let sessions = |r: &Value| r["sessions"].as_array().map_or(0, Vec::len);
    let segments = |r: &Value| {
        r["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["segments"].as_array().unwrap().len())
            .sum()
    };
    let media_of = |r: &Value| -> Vec<Value> {
        r["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["segments"].as_array().unwrap().clone())
            .flat_map(|g| g["media"].as_array().cloned().unwrap_or_default())
            .collect()
    };
    let streams = |r: &Value| {
        media_of(r)
            .iter()
            .map(|m| m["streams"].as_array().map_or(0, Vec::len))
            .sum()
    };
    let hops = |r: &Value| {
        media_of(r)
            .iter()
            .map(|m| {
                ["callerNetwork", "calleeNetwork"]
                    .iter()
                    .map(|n| m[n]["traceRouteHops"].as_array().map_or(0, Vec::len))
                    .sum::<usize>()
            })
            .sum()
    };
    let participants = |r: &Value| {
        r["participants_v2"].as_array().map_or(0, Vec::len)
            + usize::from(r["organizer_v2"].is_object())
    };

    let lake = lake.path();
    let calls = support::read_table(lake, "call_records");
    assert_eq!(calls.len(), records.len());
    assert!(
        records.len() > 100,
        "a believable tenant has many calls a day"
    );
    assert_eq!(
        support::read_table(lake, "call_sessions").len(),
        count(&sessions)
    );
    assert_eq!(
        support::read_table(lake, "call_segments").len(),
        count(&segments)
    );
    assert_eq!(
        support::read_table(lake, "call_media").len(),
        count(&|r| media_of(r).len())
    );
    assert_eq!(
        support::read_table(lake, "call_media_streams").len(),
        count(&streams)
    );
    assert_eq!(
        support::read_table(lake, "call_trace_route_hops").len(),
        count(&hops)
    );
    assert_eq!(
        support::read_table(lake, "call_participants").len(),
        count(&participants)
    );
    assert_eq!(
        support::read_table(lake, "call_quality").len(),
        records.len(),
        "one call_quality row per call"
    );
    assert_eq!(
        support::read_table(lake, "call_modalities").len(),
        count(&|r| r["modalities"].as_array().map_or(0, Vec::len))
    );
    // Sessions past the first page of 60 and participants past 130 are all there.
    let biggest = records.iter().max_by_key(|r| sessions(r)).unwrap();
    assert!(
        sessions(biggest) > 60,
        "the emulator serves meetings with more than 60 sessions"
    );
    assert!(
        records
            .iter()
            .any(|r| r["participants_v2"].as_array().unwrap().len() > 130)
    );

    // Exactly the calls that started in [from, to), each in its start date's partition.
    for call in &calls {
        let start = at(call["start_date_time"].as_str().unwrap());
        assert!(at(&from) <= start && start < at(&to));
        assert_eq!(call["dt"], start.format("%Y-%m-%d").to_string());
    }
    // The files carry the declared schema.
    for table in CALL_TABLES {
        let declared = schema::table(table).unwrap().arrow_schema();
        for (_, file) in support::parquet_files(lake, table) {
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                std::fs::File::open(&file).unwrap(),
            )
            .unwrap();
            let fields: Vec<_> = reader
                .schema()
                .fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect();
            let expected: Vec<_> = declared
                .fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect();
            assert_eq!(fields, expected, "{}", file.display());
        }
    }
    // Nothing is left in staging; the manifest names every file.
    assert!(
        !lake.join("_staging").exists()
            || std::fs::read_dir(lake.join("_staging"))
                .unwrap()
                .next()
                .is_none()
    );
    let manifests: Vec<_> = std::fs::read_dir(lake.join("_manifests"))
        .unwrap()
        .collect();
    assert_eq!(manifests.len(), 1);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(manifests[0].as_ref().unwrap().path()).unwrap())
            .unwrap();
    assert_eq!(manifest["records_exported"], records.len());
    assert_eq!(manifest["tables"]["call_records"]["rows"], records.len());
    let summary = stderr(&output);
    assert!(
        summary.contains("call_media_streams") && summary.contains("partitions replaced: 18"),
        "{summary}"
    );
}

#[test]
fn a_rerun_of_the_same_window_replaces_its_partitions_and_leaves_others_alone() {
    let lake = tempfile::tempdir().unwrap();
    let out = lake.path().to_str().unwrap();
    let export = |from: &str, to: &str| {
        let output = run(&[
            "export",
            "--emulator",
            "--streams",
            "call_records",
            "--from",
            from,
            "--to",
            to,
            "--out",
            out,
        ]);
        assert!(output.status.success(), "{}", stderr(&output));
    };
    let (day1, day2, day3) = (days_ago(10), days_ago(9), days_ago(8));
    export(&day1, &day2);
    export(&day2, &day3);
    let first: Vec<_> = support::read_table(lake.path(), "call_media_streams");
    export(&day1, &day2);
    let second = support::read_table(lake.path(), "call_media_streams");
    assert_eq!(
        first.len(),
        second.len(),
        "a rerun neither duplicates nor loses rows"
    );
    let key = |r: &serde_json::Map<String, Value>| {
        format!(
            "{}/{}/{}/{}/{}",
            r["call_id"],
            r["session_index"],
            r["segment_index"],
            r["media_index"],
            r["stream_index"]
        )
    };
    let mut a: Vec<_> = first.iter().map(key).collect();
    let mut b: Vec<_> = second.iter().map(key).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    let days: std::collections::BTreeSet<_> = second
        .iter()
        .map(|r| r["dt"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(days.into_iter().collect::<Vec<_>>(), vec![day1, day2]);
}

#[test]
fn a_partial_day_window_exports_exactly_its_calls() {
    let lake = tempfile::tempdir().unwrap();
    let out = lake.path().to_str().unwrap();
    let from = format!("{}T09:00:00Z", days_ago(5));
    let to = format!("{}T12:30:00Z", days_ago(5));
    let output = run(&[
        "export",
        "--emulator",
        "--streams",
        "call_records",
        "--from",
        &from,
        "--to",
        &to,
        "--out",
        out,
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("keep the rows the lake holds outside the window"),
        "the partial-day rule is shown"
    );
    let tenant = Tenant::new(
        42,
        callrecords_emulator::EmulatorConfig::default().calls_per_day,
    );
    let expected = tenant.list(at(&from), at(&to));
    let calls = support::read_table(lake.path(), "call_records");
    let mut got: Vec<&str> = calls
        .iter()
        .map(|c| c["call_id"].as_str().unwrap())
        .collect();
    let mut want: Vec<&str> = expected.iter().map(|c| c["id"].as_str().unwrap()).collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);
}

#[test]
fn usage_errors_exit_2_and_say_what_to_fix() {
    let cases: [(&[&str], &str); 6] = [
        (
            &[
                "export",
                "--emulator",
                "--from",
                "2026-11-21",
                "--to",
                "2026-11-20",
            ],
            "before --to",
        ),
        (
            &["export", "--emulator", "--from", "yesterday"],
            "neither a UTC date",
        ),
        (&["export", "--emulator", "--streams", "calls"], "calls"),
        (&["export", "--emulator", "--streams", "sms_logs"], "beta"),
        (&["export"], "--config"),
        (
            &["export", "--config", "/nonexistent/etl.toml"],
            "/nonexistent/etl.toml",
        ),
    ];
    for (args, expected) in cases {
        let output = run(args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(expected),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn a_bad_config_names_the_key_and_makes_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("etl.toml");
    std::fs::write(
        &config,
        "[graph]\ntenant_id = \"contoso.onmicrosoft.com\"\nclient_id = \"x\"\nclinet_secret = 1\n",
    )
    .unwrap();
    let output = run(&["export", "--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("clinet_secret"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn the_help_lists_exit_codes_and_examples() {
    let output = run(&["export", "--help"]);
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(
        help.contains("Exit codes") && help.contains("--emulator") && help.contains("Examples"),
        "{help}"
    );
    let version = run(&["--version"]);
    assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[tokio::test]
async fn the_standalone_emulator_serves_a_pipeline_until_stopped() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("callrecords-etl"))
        .args([
            "emulator",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--seed",
            "7",
            "--calls-per-day",
            "20",
        ])
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let token_url = format!(
        "{base}/{}/oauth2/v2.0/token",
        callrecords_emulator::DEFAULT_TENANT_ID
    );
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", callrecords_emulator::DEFAULT_CLIENT_ID),
        ("client_secret", callrecords_emulator::DEFAULT_CLIENT_SECRET),
        ("scope", &format!("{base}/.default")),
    ];
    let mut response = None;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if let Ok(answer) = client.post(&token_url).form(&form).send().await {
            response = Some(answer);
            break;
        }
    }
    let response = response.expect("the emulator answers");
    assert!(response.status().is_success());
    let token: Value = response.json().await.unwrap();
    let day = days_ago(2);
    let list: Value = client
        .get(format!(
            "{base}/v1.0/communications/callRecords?$filter=startDateTime ge {day}T00:00:00Z and startDateTime lt {day}T12:00:00Z"
        ))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tenant = Tenant::new(7, 20);
    let expected = tenant.list(
        at(&format!("{day}T00:00:00Z")),
        at(&format!("{day}T12:00:00Z")),
    );
    assert_eq!(list["value"].as_array().unwrap().len(), expected.len());
    // SIGINT stops it cleanly.
    // SAFETY: kill(2) on the pid of a child this test owns.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// Runs the binary with `CALLRECORDS_CLIENT_SECRET` set (for runs with a config file).
fn run_with_secret(args: &[&str]) -> Output {
    binary()
        .env("CALLRECORDS_CLIENT_SECRET", "s")
        .args(args)
        .output()
        .unwrap()
}

/// A config whose Graph is `graph_url` (and its login), with `extra` appended.
fn write_config(dir: &std::path::Path, graph_url: &str, extra: &str) -> String {
    let path = dir.join("etl.toml");
    std::fs::write(
        &path,
        format!(
            "[graph]\ntenant_id = \"contoso.onmicrosoft.com\"\n\
             client_id = \"00000000-0000-4000-8000-000000000001\"\n\
             graph_url = \"{graph_url}\"\nlogin_url = \"{graph_url}\"\n{extra}\n"
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn a_window_longer_than_max_window_days_is_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lake");
    let out = out.to_str().unwrap();
    let huge = ["--from", "0001-01-01", "--to", "9999-12-31"];
    let export = [
        &["export", "--emulator", "--dry-run", "--out", out][..],
        &huge,
    ]
    .concat();
    let reflatten = [
        &["reflatten", "--raw", "/nonexistent/raw", "--out", out][..],
        &huge,
    ]
    .concat();
    for args in [export, reflatten] {
        let output = run(&args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        let log = stderr(&output);
        assert!(
            log.contains("[0001-01-01T00:00:00Z, 9999-12-31T00:00:00Z) spans 3652058 days")
                && log.contains("[export] max_window_days = 400"),
            "{args:?}: {log}"
        );
        assert!(output.stdout.is_empty(), "no plan is printed");
    }
    assert!(!dir.path().join("lake").exists(), "nothing was written");

    // The key raises the limit; a window of 401 days is refused by default.
    let (from, to) = ("2025-01-01", "2026-02-06");
    let window = [
        "export",
        "--dry-run",
        "--from",
        from,
        "--to",
        to,
        "--config",
    ];
    let config = write_config(dir.path(), "http://127.0.0.1:9", "");
    let output = run_with_secret(&[&window[..], &[config.as_str()]].concat());
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("spans 401 days"),
        "{}",
        stderr(&output)
    );
    let config = write_config(
        dir.path(),
        "http://127.0.0.1:9",
        "[export]\nmax_window_days = 401",
    );
    let output = run_with_secret(&[&window[..], &[config.as_str()]].concat());
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(support::stdout(&output).contains("Dry run"));
}

#[test]
fn case6_the_raw_zone_and_the_output_must_be_separate_folders() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let lake = format!("{root}/lake");
    std::fs::create_dir(&lake).unwrap();
    let cases: [(String, &str); 6] = [
        (format!("{root}/lake/"), "is the same folder as"),
        (format!("file://{root}/lake"), "is the same folder as"),
        (format!("{root}/lake/raw"), "lies inside"),
        (root.to_string(), "contains"),
        (format!("{root}/lake2"), ""),
        (format!("{root}/raw"), ""),
    ];
    for (raw, relation) in &cases {
        let output = run(&[
            "export",
            "--emulator",
            "--dry-run",
            "--out",
            &lake,
            "--raw",
            raw,
        ]);
        let log = stderr(&output);
        if relation.is_empty() {
            assert!(output.status.success(), "{raw}: {log}");
        } else {
            assert_eq!(output.status.code(), Some(2), "{raw}: {log}");
            assert!(
                log.contains(&format!(
                    "the raw zone {raw} (--raw or [raw] path) {relation} the output {lake}"
                )) && log.contains("use separate folders"),
                "{raw}: {log}"
            );
        }
    }
    let output = run(&["reflatten", "--raw", &lake, "--out", &format!("{lake}/")]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("(--raw) is the same folder as the output"),
        "{}",
        stderr(&output)
    );

    // From the config file, refused before any request: Graph's port sees no connection.
    let graph = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    graph.set_nonblocking(true).unwrap();
    let url = format!("http://{}", graph.local_addr().unwrap());
    let keys = format!("[output]\npath = \"{lake}\"\n[raw]\npath = \"{lake}/raw\"");
    let config = write_config(dir.path(), &url, &keys);
    let output = run_with_secret(&["export", "--config", &config]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("lies inside the output"),
        "{}",
        stderr(&output)
    );
    assert!(graph.accept().is_err(), "no request reached Graph");
    assert_eq!(
        std::fs::read_dir(&lake).unwrap().count(),
        0,
        "nothing was written"
    );
}
