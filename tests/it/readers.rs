//! The lake as other readers see it. An emulator export, read by DuckDB through the views
//! `schema --ddl duckdb` generates and by pyarrow's Hive-partitioned dataset, holds for every
//! table exactly the rows Rust reads, with the declared types and descriptions
//! (tests/readers/check_lake.py). sqlglot parses the Spark, Athena and Trino DDL
//! (tests/readers/check_ddl.py). The query pack (docs/queries/, DuckDB and Spark SQL through
//! sqlglot) gives the numbers counted from the Parquet files (tests/readers/check_queries.py).
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

/// `callrecords-etl args`, which must succeed.
pub(crate) fn binary(args: &[&str]) -> Output {
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
                "--api-version",
                "beta",
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

#[test]
fn the_query_pack_gives_the_numbers_counted_from_the_parquet_files() {
    if !python_has(&["duckdb", "pyarrow", "sqlglot"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (lake, raw) = (dir.path().join("lake"), dir.path().join("raw"));
    let (lake_path, raw_path) = (lake.to_str().unwrap(), raw.to_str().unwrap());
    let (from, to) = (days_ago(3), days_ago(1));
    binary(&[
        "export",
        "--emulator",
        "--api-version",
        "beta",
        "--from",
        &from,
        "--to",
        &to,
        "--out",
        lake_path,
        "--raw",
        raw_path,
    ]);
    // The building file maps the emulator's office subnets: rebuilt with it, the lake has sites.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = dir.path().join("sites.toml");
    let sample = root.join("docs/buildings.sample.csv");
    std::fs::write(
        &config,
        format!("[sites]\nfile = {:?}\n", sample.to_str().unwrap()),
    )
    .unwrap();
    binary(&[
        "-q",
        "reflatten",
        "--raw",
        raw_path,
        "--out",
        lake_path,
        "--config",
        config.to_str().unwrap(),
    ]);
    let ddl = binary(&["-q", "schema", "--ddl", "duckdb", "--location", lake_path]);
    let ddl_file = dir.path().join("views.sql");
    std::fs::write(&ddl_file, ddl.stdout).unwrap();
    run_python(
        "check_queries.py",
        &[&lake, &ddl_file, &root.join("docs/queries")],
    );
}

/// The footers as parquet-mr (Spark's Java reader, Hive) judges them: float and double
/// columns declare the type-defined column order (parquet-mr ignores the statistics of an
/// order it does not know, IEEE 754 total order among them) and carry min/max statistics,
/// and created_by is in the form parquet-mr's version parser reads. The column orders are
/// read with the parquet crate (pyarrow does not expose them), the rest with pyarrow.
#[test]
fn footers_declare_the_type_defined_float_order_min_max_and_a_parseable_created_by() {
    use parquet::basic::{ColumnOrder, SortOrder, Type};
    use parquet::file::reader::{FileReader, SerializedFileReader};

    let lake = tempfile::tempdir().unwrap();
    binary(&[
        "export",
        "--emulator",
        "--from",
        &days_ago(2),
        "--to",
        &days_ago(1),
        "--out",
        lake.path().to_str().unwrap(),
    ]);
    let mut floats = 0;
    for table in ["call_media", "call_media_streams", "call_trace_route_hops"] {
        for (_, path) in support::parquet_files(lake.path(), table) {
            let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
            let metadata = reader.metadata().file_metadata();
            let created_by = metadata.created_by().unwrap();
            let build = created_by
                .strip_prefix(&format!(
                    "callrecords-etl version {} (build ",
                    env!("CARGO_PKG_VERSION")
                ))
                .and_then(|rest| rest.strip_suffix(')'));
            assert!(
                build
                    .is_some_and(|b| !b.is_empty() && b.chars().all(|c| c.is_ascii_alphanumeric())),
                "{}: created_by {created_by:?}",
                path.display()
            );
            for (i, column) in metadata.schema_descr().columns().iter().enumerate() {
                if matches!(column.physical_type(), Type::FLOAT | Type::DOUBLE) {
                    floats += 1;
                    assert_eq!(
                        metadata.column_order(i),
                        ColumnOrder::TYPE_DEFINED_ORDER(SortOrder::SIGNED),
                        "{}: {}",
                        path.display(),
                        column.path()
                    );
                }
            }
        }
    }
    assert!(floats > 0, "the export wrote float columns");
    if python_has(&["pyarrow"]) {
        run_python("check_footers.py", &[lake.path()]);
    }
}

/// `schema --ddl` on a lake as a v1.0 export leaves it (no beta-only log tables) with one
/// table that has no rows yet (not exported, and an empty day folder): the script registers
/// exactly the tables holding data, and names the others. DuckDB runs it and reads every
/// registered table's rows; sqlglot finds a CREATE for exactly those tables in the Spark,
/// Athena and Trino scripts (which read the lake through --lake), and Synapse's views name
/// only them too.
#[test]
fn the_ddl_of_a_v1_lake_with_an_empty_table_registers_only_the_tables_with_data() {
    if !python_has(&["duckdb", "pyarrow", "sqlglot"]) {
        return;
    }
    let lake = tempfile::tempdir().unwrap();
    let lake_path = lake.path().to_str().unwrap();
    binary(&[
        "export",
        "--emulator",
        "--streams",
        "call_records,pstn_calls",
        "--from",
        &days_ago(2),
        "--to",
        &days_ago(1),
        "--out",
        lake_path,
    ]);
    // A table with no rows yet, but a folder for a day (as a rerun that emptied it leaves).
    std::fs::create_dir_all(
        lake.path()
            .join(format!("direct_routing_calls/dt={}", days_ago(2))),
    )
    .unwrap();
    let with_data: Vec<(&schema::TableSchema, Value)> = schema::tables()
        .iter()
        .zip(declarations())
        .filter(|(table, _)| !support::read_table(lake.path(), &table.table).is_empty())
        .collect();
    let names: Vec<&str> = with_data.iter().map(|(t, _)| t.table.as_str()).collect();
    assert!(names.contains(&"call_records") && names.contains(&"pstn_calls"));
    assert!(!names.contains(&"sms_logs") && !names.contains(&"direct_routing_calls"));

    let output = support::binary()
        .args(["schema", "--ddl", "duckdb", "--location", lake_path])
        .output()
        .unwrap();
    assert!(output.status.success());
    let duckdb_ddl = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    for skipped in ["sms_logs", "pstn_blocked_users", "direct_routing_calls"] {
        let line = format!("Not registered: {skipped}: ");
        assert!(duckdb_ddl.contains(&format!("-- {line}")), "{duckdb_ddl}");
        assert!(stderr.contains(&line), "{stderr}");
    }
    assert!(duckdb_ddl.contains("Not registered: direct_routing_calls: the lake holds no rows"));

    let tables: Vec<Value> = with_data
        .iter()
        .map(|(table, declaration)| {
            json!({"declaration": declaration, "rows": support::read_table(lake.path(), &table.table)})
        })
        .collect();
    let declared: Vec<&Value> = with_data.iter().map(|(_, d)| d).collect();
    let scripts: serde_json::Map<String, Value> = ["spark", "athena", "trino"]
        .into_iter()
        .map(|dialect| {
            let ddl = binary(&[
                "-q",
                "schema",
                "--ddl",
                dialect,
                "--location",
                "s3://bucket/teams",
                "--lake",
                lake_path,
            ]);
            (
                dialect.to_string(),
                Value::String(String::from_utf8(ddl.stdout).unwrap()),
            )
        })
        .collect();
    let synapse = binary(&[
        "-q",
        "schema",
        "--ddl",
        "synapse",
        "--location",
        "https://acct.dfs.core.windows.net/lake/teams",
        "--lake",
        lake_path,
    ]);
    let views: Vec<String> = String::from_utf8(synapse.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| line.strip_prefix("CREATE OR ALTER VIEW ["))
        .map(|rest| rest.split(']').next().unwrap().to_string())
        .collect();
    assert_eq!(views, names);

    let work = tempfile::tempdir().unwrap();
    let expected = work.path().join("expected.json");
    std::fs::write(
        &expected,
        serde_json::to_vec(&json!({"duckdb_ddl": duckdb_ddl, "tables": tables})).unwrap(),
    )
    .unwrap();
    run_python("check_lake.py", &[lake.path(), &expected]);
    let expected = work.path().join("ddl.json");
    std::fs::write(
        &expected,
        serde_json::to_vec(&json!({"tables": declared, "scripts": scripts})).unwrap(),
    )
    .unwrap();
    run_python("check_ddl.py", &[&expected]);
}
