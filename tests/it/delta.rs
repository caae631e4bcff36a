//! Delta Lake tables (`--format delta`), read by independent readers and put through
//! crashes:
//!
//! - delta-rs' Python package and polars read every table of a Delta export with exactly the
//!   rows of a Parquet export of the same window, the declared types and descriptions, and
//!   the version before (time travel) after a second run, which adds one version per table
//!   and no duplicate row (tests/readers/check_delta.py);
//! - a crash or an I/O error at every step of a Delta commit leaves every table readable,
//!   whole at its old or its new version, and the next run is whole;
//! - a writer whose table changed since it read it fails with a conflict, nothing of it
//!   committed, and the log stays readable.

use crate::commit_crash::copy_tree;
use crate::readers::{binary, python_has, run_python};
use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Output;

use callrecords_etl::delta::{self, DeltaError, PartitionFiles};
use callrecords_etl::schema;
use callrecords_etl::store::Location;
use serde_json::{Value, json};
use support::tenants::{TwoTenants, tables};
use support::{days_ago, stderr};

fn emulator_export(out: &Path, format: &str) -> Output {
    binary(&[
        "export",
        "--emulator",
        "--api-version",
        "beta",
        "--from",
        &days_ago(3),
        "--to",
        &days_ago(1),
        "--format",
        format,
        "--out",
        out.to_str().unwrap(),
    ])
}

#[test]
fn deltalake_and_polars_read_the_parquet_exports_rows_and_the_version_before() {
    if !python_has(&["deltalake", "polars", "pyarrow"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (parquet_lake, delta_lake) = (dir.path().join("parquet"), dir.path().join("delta"));
    emulator_export(&parquet_lake, "parquet");
    emulator_export(&delta_lake, "delta");
    emulator_export(&delta_lake, "delta");
    let manifest = support::last_manifest(&delta_lake);
    let versions: BTreeMap<String, u64> =
        serde_json::from_value(manifest["table_versions"].clone()).unwrap();
    assert_eq!(versions.len(), schema::tables().len(), "{manifest}");
    assert!(versions.values().all(|v| *v == 1), "{versions:?}");

    let tables: Vec<Value> = schema::tables()
        .iter()
        .map(|table| {
            let rows = support::read_table(&parquet_lake, &table.table);
            assert!(!rows.is_empty(), "the export has {} rows", table.table);
            let declaration: Value =
                serde_json::from_str(schema::declaration(&table.table).unwrap()).unwrap();
            json!({"declaration": declaration, "rows": rows})
        })
        .collect();
    let expected = dir.path().join("expected.json");
    let content = json!({"tables": tables, "versions": versions, "run_id": manifest["run_id"]});
    std::fs::write(&expected, serde_json::to_vec(&content).unwrap()).unwrap();
    run_python("check_delta.py", &[&delta_lake, &expected]);
}

/// `export --format delta` of the tenants' test window.
const DELTA: &[&str] = &["--format", "delta"];

/// Each table's rows as its current Delta snapshot holds them (sorted JSON lines), read
/// with the files the log names.
async fn delta_rows(lake: &Path) -> BTreeMap<&'static str, Vec<String>> {
    let location = Location::Local(lake.to_path_buf());
    let mut by_table = BTreeMap::new();
    for table in tables() {
        let files = delta::snapshot_files(&location, table, None).await.unwrap();
        let mut rows = Vec::new();
        for file in files {
            let content = std::fs::File::open(lake.join(&file)).unwrap();
            rows.extend(support::partition_file_rows(&file, content));
        }
        rows.sort();
        by_table.insert(table, rows);
    }
    by_table
}

/// The steps of a Delta commit where a failure is injected, and whether the new data is
/// committed afterwards.
const CASES: &[(&str, bool)] = &[
    ("commit::journal_written=return(crash)", true),
    ("delta::place=return(crash)", true),
    ("delta::place=5*off->return(crash)", true),
    ("delta::place=5*off->return(io)", false),
    ("delta::commit=return(crash)", true),
    ("delta::commit=3*off->return(crash)", true),
    ("delta::commit=3*off->return(io)", false),
    ("delta::committed=return(crash)", true),
    ("delta::committed=2*off->return(io)", false),
    ("commit::write_file=1*off->return(crash)", true),
    ("commit::write_file=1*off->return(io)", false),
    ("commit::clean_up=return(crash)", true),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_or_io_error_in_a_delta_commit_leaves_every_table_readable_and_whole() {
    let tenants = TwoTenants::start().await;
    let template = tenants.path("template");
    let output = tenants.old.export(&template, "", DELTA).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let reference = tenants.path("reference");
    let output = tenants.new.export(&reference, "", DELTA).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let old = delta_rows(&template.join("lake")).await;
    let new = delta_rows(&reference.join("lake")).await;
    assert!(
        old.values()
            .zip(new.values())
            .all(|(o, n)| o != n && !n.is_empty())
    );

    for (index, (failpoints, committed)) in CASES.iter().enumerate() {
        let root = tenants.path(&format!("case-{index}"));
        copy_tree(&template, &root);
        let output = tenants.new.export(&root, failpoints, DELTA).await;
        let lake = root.join("lake");
        if failpoints.contains("crash") {
            assert_eq!(output.status.code(), None, "{failpoints}: killed");
            // Before any recovery every table reads whole, at its old or its new version.
            let seen = delta_rows(&lake).await;
            for (table, rows) in &seen {
                assert!(
                    *rows == old[table] || *rows == new[table],
                    "{failpoints}: {table} is neither its old nor its new version"
                );
            }
        } else {
            assert_eq!(
                output.status.code(),
                Some(1),
                "{failpoints}: {}",
                stderr(&output)
            );
        }
        let lake_location = Location::Local(lake.clone());
        let raw_location = Location::Local(root.join("raw"));
        callrecords_etl::run::recover(&lake_location, Some(&raw_location))
            .await
            .unwrap();
        let expected = if *committed { &new } else { &old };
        assert!(
            delta_rows(&lake).await == *expected,
            "{failpoints}: the lake is not the whole {} one",
            if *committed { "new" } else { "old" }
        );
        let output = tenants.new.export(&root, "", DELTA).await;
        assert!(
            output.status.success(),
            "{failpoints}, rerun: {}",
            stderr(&output)
        );
        assert!(
            delta_rows(&lake).await == new,
            "{failpoints}: the rerun differs from a clean export"
        );
        assert!(!lake.join("_commits").exists() && !lake.join("_staging").exists());
    }
}

#[test]
fn a_writer_whose_table_changed_since_it_read_it_fails_and_the_log_stays_whole() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    emulator_export(&lake, "delta");
    let location = Location::Local(lake.clone());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let table = "pstn_calls";
    let tables = BTreeSet::from([table.to_string()]);
    let plan = runtime.block_on(delta::plan(&location, &tables)).unwrap();
    assert_eq!(plan[0].read_version, Some(0));

    // Another writer commits first.
    emulator_export(&lake, "delta");
    let day = days_ago(2);
    let partitions = [PartitionFiles {
        dt: &day,
        files: Vec::new(),
    }];
    let error = runtime
        .block_on(delta::commit_table(
            &location,
            "late-run",
            &plan[0],
            &partitions,
        ))
        .unwrap_err();
    assert!(matches!(error, DeltaError::Conflict { .. }), "{error}");
    let exit = callrecords_etl::exit::code_of(&anyhow::Error::new(error));
    assert_eq!(exit, callrecords_etl::exit::Exit::Locked);

    let log: BTreeSet<String> = std::fs::read_dir(lake.join(table).join("_delta_log"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json"))
        .collect();
    let expected: BTreeSet<String> = (0..2).map(|v| format!("{v:020}.json")).collect();
    assert_eq!(log, expected, "one commit per run, none of the late writer");
    let files = runtime
        .block_on(delta::snapshot_files(&location, table, None))
        .unwrap();
    let manifest = support::last_manifest(&lake);
    let run_id = manifest["run_id"].as_str().unwrap();
    assert!(
        !files.is_empty() && files.iter().all(|f| f.contains(run_id)),
        "{files:?}"
    );
}

#[test]
fn a_lake_keeps_its_format() {
    let dir = tempfile::tempdir().unwrap();
    let (parquet, delta_lake) = (dir.path().join("parquet"), dir.path().join("delta"));
    for (lake, first, second, word) in [
        (&parquet, "parquet", "delta", "holds Parquet partitions"),
        (&delta_lake, "delta", "parquet", "is a Delta table"),
    ] {
        emulator_export(lake, first);
        let output = support::binary()
            .args([
                "export",
                "--emulator",
                "--streams",
                "pstn_calls",
                "--format",
                second,
            ])
            .args(["--from", &days_ago(3), "--to", &days_ago(1), "--out"])
            .arg(lake)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        assert!(stderr(&output).contains(word), "{}", stderr(&output));
    }
}

/// Every Parquet file under the table folders of `lake`, relative to it.
fn files_on_disk(lake: &Path) -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    for table in schema::tables() {
        for (partition, file) in support::parquet_files(lake, &table.table) {
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            files.insert(format!("{}/{partition}/{name}", table.table));
        }
    }
    files
}

#[test]
fn maintain_vacuums_exactly_the_files_replaced_longer_ago_than_the_retention() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    emulator_export(&lake, "delta");
    emulator_export(&lake, "delta");
    let location = Location::Local(lake.clone());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let live: BTreeSet<String> = schema::tables()
        .iter()
        .flat_map(|t| {
            runtime
                .block_on(delta::snapshot_files(&location, &t.table, None))
                .unwrap()
        })
        .collect();
    let all = files_on_disk(&lake);
    let replaced: BTreeSet<&String> = all.difference(&live).collect();
    assert!(!replaced.is_empty() && live.is_subset(&all));
    let maintain = |extra: &[&str]| {
        support::binary()
            .args(["maintain", "--out", lake.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };

    let kept = maintain(&[]);
    assert!(kept.status.success(), "{}", stderr(&kept));
    assert_eq!(files_on_disk(&lake), all, "nothing is older than a week");
    let refused = maintain(&["--vacuum-hours", "1"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("--allow-short-retention"));
    let dry = maintain(&[
        "--vacuum-hours",
        "0",
        "--allow-short-retention",
        "--dry-run",
    ]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert_eq!(files_on_disk(&lake), all, "a dry run deletes nothing");

    let vacuumed = maintain(&["--vacuum-hours", "0", "--allow-short-retention"]);
    assert!(vacuumed.status.success(), "{}", stderr(&vacuumed));
    assert_eq!(
        files_on_disk(&lake),
        live,
        "exactly the replaced files are gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflatten_rebuilds_a_delta_lake_from_the_raw_zone_row_for_row() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, raw, rebuilt) = (
        dir.path().join("lake"),
        dir.path().join("raw"),
        dir.path().join("rebuilt"),
    );
    let mut export = support::binary();
    export
        .args([
            "export",
            "--emulator",
            "--streams",
            "call_records",
            "--format",
            "delta",
        ])
        .args(["--from", &days_ago(3), "--to", &days_ago(1), "--out"])
        .arg(&lake)
        .arg("--raw")
        .arg(&raw);
    let output = tokio::task::spawn_blocking(move || export.output().unwrap())
        .await
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let mut reflatten = support::binary();
    reflatten
        .args(["reflatten", "--format", "delta", "--raw"])
        .arg(&raw)
        .arg("--out")
        .arg(&rebuilt);
    let output = tokio::task::spawn_blocking(move || reflatten.output().unwrap())
        .await
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let (exported, rebuilt) = (delta_rows(&lake).await, delta_rows(&rebuilt).await);
    assert!(!exported["call_records"].is_empty());
    assert_eq!(exported, rebuilt);
}
