//! The lake as other readers see it. An emulator export, read by DuckDB through the views
//! `schema --ddl duckdb` generates and by pyarrow's Hive-partitioned dataset, holds for every
//! table exactly the rows Rust reads, with the declared types and descriptions
//! (tests/readers/check_lake.py). sqlglot parses the Spark, Athena and Trino DDL
//! (tests/readers/check_ddl.py).
//!
//! The Python packages (tests/readers/requirements.txt) are not on a fresh machine: without
//! them these tests fail under CI (`CI` set; .ci/run installs them) and are skipped elsewhere,
//! with a line saying so.

use crate::support;

use support::days_ago;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use callrecords_etl::schema;
use serde_json::{Value, json};

fn binary(args: &[&str]) -> Output {
    let output = support::binary().args(args).output().unwrap();
    assert!(
        output.status.success(),
        "callrecords-etl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Whether `python3` can import `packages`. When it cannot: a failure under CI, else a
/// `skipped:` line and false.
pub(crate) fn python_has(packages: &[&str]) -> bool {
    let probe = Command::new("python3")
        .arg("-c")
        .arg(format!("import {}", packages.join(", ")))
        .output();
    if probe.as_ref().is_ok_and(|o| o.status.success()) {
        return true;
    }
    let install = format!("pip install {}", packages.join(" "));
    let why = match &probe {
        Ok(output) => String::from_utf8_lossy(&output.stderr)
            .lines()
            .last()
            .unwrap_or_default()
            .to_string(),
        Err(error) => format!("python3: {error}"),
    };
    assert!(
        std::env::var_os("CI").is_none_or(|v| v.is_empty()),
        "CI is set, so the reader tests must run, but {why}: {install} (versions in tests/readers/requirements.txt)"
    );
    // Straight to stderr, past the test harness's capture, so a plain `cargo test` shows it.
    let _ = writeln!(
        std::io::stderr(),
        "skipped: {install} ({why}); the reader tests need them"
    );
    false
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/readers")
        .join(name)
}

/// Runs a check script; its output is the failure message.
pub(crate) fn run_python(script_name: &str, args: &[&Path]) {
    let output = Command::new("python3")
        .arg(script(script_name))
        .args(args)
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{script_name}:\n{report}");
    // Shown with --nocapture: what was compared.
    print!("{report}");
}

fn declarations() -> Vec<Value> {
    schema::tables()
        .iter()
        .map(|t| serde_json::from_str(schema::declaration(&t.table).unwrap()).unwrap())
        .collect()
}

#[test]
fn duckdb_and_pyarrow_read_every_table_as_declared() {
    if !python_has(&["duckdb", "pyarrow"]) {
        return;
    }
    let lake = tempfile::tempdir().unwrap();
    let lake_path = lake.path().to_str().unwrap();
    binary(&[
        "export",
        "--emulator",
        "--api-version",
        "beta",
        "--from",
        &days_ago(3),
        "--to",
        &days_ago(1),
        "--out",
        lake_path,
    ]);
    let ddl = binary(&["-q", "schema", "--ddl", "duckdb", "--location", lake_path]);

    let tables: Vec<Value> = schema::tables()
        .iter()
        .zip(declarations())
        .map(|(table, declaration)| {
            let rows = support::read_table(lake.path(), &table.table);
            assert!(!rows.is_empty(), "the export has {} rows", table.table);
            json!({"declaration": declaration, "rows": rows})
        })
        .collect();
    let work = tempfile::tempdir().unwrap();
    let expected = work.path().join("expected.json");
    std::fs::write(
        &expected,
        serde_json::to_vec(&json!({
            "duckdb_ddl": String::from_utf8(ddl.stdout).unwrap(),
            "tables": tables,
        }))
        .unwrap(),
    )
    .unwrap();
    run_python("check_lake.py", &[lake.path(), &expected]);
}

#[test]
fn sqlglot_parses_the_spark_athena_and_trino_ddl() {
    if !python_has(&["sqlglot"]) {
        return;
    }
    let scripts: serde_json::Map<String, Value> = ["spark", "athena", "trino"]
        .into_iter()
        .map(|dialect| {
            let ddl = binary(&[
                "-q",
                "schema",
                "--ddl",
                dialect,
                "--location",
                "s3://bucket/it's/teams",
            ]);
            (
                dialect.to_string(),
                Value::String(String::from_utf8(ddl.stdout).unwrap()),
            )
        })
        .collect();
    let work = tempfile::tempdir().unwrap();
    let expected = work.path().join("ddl.json");
    std::fs::write(
        &expected,
        serde_json::to_vec(&json!({"tables": declarations(), "scripts": scripts})).unwrap(),
    )
    .unwrap();
    run_python("check_ddl.py", &[&expected]);
}
