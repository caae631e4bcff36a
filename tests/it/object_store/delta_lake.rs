//! Delta tables (`--format delta`) on S3 (moto) and Azure Blob (Azurite): delta-rs' Python
//! package and polars read the Parquet export's rows and the version before after a second
//! run; a run killed (or failing) in the middle of its table commits leaves every table
//! readable whole, and the next run is whole; the store refuses a second log entry of the
//! same version (the conditional PUT that keeps two writers from both winning).

use super::*;
use crate::readers::{python_has, run_python};

use callrecords_etl::delta;
use callrecords_etl::store::Location;

/// Each table's rows in its current Delta snapshot on the store (sorted JSON lines).
fn delta_rows(lake: &Lake) -> BTreeMap<String, Vec<String>> {
    let location = Location::parse(&lake.url, &lake.options).unwrap();
    let runtime = lake.rt();
    let mut tables = BTreeMap::new();
    for table in CALL_TABLES {
        let files = runtime
            .block_on(delta::snapshot_files(&location, table, None))
            .unwrap();
        let mut rows = Vec::new();
        for file in files {
            let bytes = lake.get(&file).expect("a file the log names is there");
            rows.extend(support::partition_file_rows(&file, bytes));
        }
        rows.sort();
        tables.insert(table.to_string(), rows);
    }
    tables
}

const DELTA: &[&str] = &["--format", "delta"];

fn readers_see_the_parquet_exports_rows(lake: &Lake) {
    if !python_has(&["deltalake", "polars", "pyarrow"]) {
        return;
    }
    let local = tempfile::tempdir().unwrap();
    let output = export(local.path().to_str().unwrap(), &[], (3, 1), &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    for _ in 0..2 {
        let output = export(&lake.url, &lake.env, (3, 1), DELTA);
        assert!(output.status.success(), "{}", stderr(&output));
    }
    let manifests = lake.keys("_manifests");
    let manifest: Value = manifests
        .iter()
        .map(|key| serde_json::from_slice::<Value>(&lake.get(key).unwrap()).unwrap())
        .max_by_key(|m| m["finished_at"].as_str().unwrap().to_string())
        .unwrap();
    let tables: Vec<Value> = CALL_TABLES
        .iter()
        .map(|table| {
            let declaration: Value =
                serde_json::from_str(callrecords_etl::schema::declaration(table).unwrap()).unwrap();
            json!({"declaration": declaration, "rows": support::read_table(local.path(), table)})
        })
        .collect();
    let versions: BTreeMap<&str, u64> = CALL_TABLES.iter().map(|t| (*t, 1)).collect();
    let expected = local.path().join("expected.json");
    let content = json!({
        "tables": tables,
        "versions": versions,
        "run_id": manifest["run_id"],
        "storage_options": lake.options,
    });
    std::fs::write(&expected, serde_json::to_vec(&content).unwrap()).unwrap();
    run_python("check_delta.py", &[Path::new(&lake.url), &expected]);
}

/// A crash (or an I/O error) after the first tables are committed: every table reads whole
/// (old or new), recovery gives the new (or the old) lake, and a rerun the new one.
fn a_failed_commit_leaves_every_table_whole(server: &Server, lake_of: fn(&Server, &str) -> Lake) {
    let old_template = lake_of(server, "delta-old");
    let output = export(&old_template.url, &old_template.env, (3, 1), DELTA);
    assert!(output.status.success(), "{}", stderr(&output));
    let old = delta_rows(&old_template);
    for (case, failpoints, committed) in [
        ("crash", "delta::commit=1*off->return(crash)", true),
        ("io", "delta::commit=1*off->return(io)", false),
    ] {
        let lake = lake_of(server, &format!("delta-{case}"));
        let output = export(&lake.url, &lake.env, (3, 1), DELTA);
        assert!(output.status.success(), "{}", stderr(&output));
        let before = delta_rows(&lake);
        assert_eq!(before, old, "the emulator is deterministic");
        let mut command = export_command(
            &lake.url,
            &lake.env,
            (3, 1),
            &["--format", "delta", "--full"],
        );
        let output = command.env("FAILPOINTS", failpoints).output().unwrap();
        assert_ne!(output.status.code(), Some(0), "{case}: {}", stderr(&output));
        let seen = delta_rows(&lake);
        assert_eq!(seen, old, "{case}: same data, every table whole");
        // The killed run's lease on the lock is made to have expired, as after its timeout.
        if let Some(bytes) = lake.get("_lock") {
            let mut holder: Value = serde_json::from_slice(&bytes).unwrap();
            holder["expires_at"] = json!((Utc::now() - chrono::Duration::seconds(1)).to_rfc3339());
            lake.put("_lock", serde_json::to_vec(&holder).unwrap());
        }
        let location = Location::parse(&lake.url, &lake.options).unwrap();
        // On a worker thread: the lock is released by blocking in place.
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime
            .block_on(runtime.spawn(async move {
                callrecords_etl::run::recover(&location, None)
                    .await
                    .unwrap()
            }))
            .unwrap();
        assert_eq!(delta_rows(&lake), old, "{case} (committed: {committed})");
        let output = export(&lake.url, &lake.env, (3, 1), DELTA);
        assert!(
            output.status.success(),
            "{case}, rerun: {}",
            stderr(&output)
        );
        assert_eq!(delta_rows(&lake), old);
        assert!(lake.keys("_commits").is_empty() && lake.keys("_staging").is_empty());
    }
}

/// The store refuses to create a log entry that exists: what makes one writer win.
fn a_second_log_entry_of_a_version_is_refused(lake: &Lake) {
    let output = export(&lake.url, &lake.env, (2, 1), DELTA);
    assert!(output.status.success(), "{}", stderr(&output));
    let entry = lake.key("call_records/_delta_log/00000000000000000000.json");
    let before = lake
        .get("call_records/_delta_log/00000000000000000000.json")
        .unwrap();
    let options = object_store::PutOptions::from(object_store::PutMode::Create);
    let second = lake.rt().block_on(lake.store.put_opts(
        &entry,
        PutPayload::from(b"{}".to_vec()),
        options,
    ));
    assert!(
        matches!(second, Err(object_store::Error::AlreadyExists { .. })),
        "{second:?}"
    );
    assert_eq!(
        lake.get("call_records/_delta_log/00000000000000000000.json")
            .unwrap(),
        before
    );
}

#[test]
fn delta_tables_on_s3_read_whole_through_commits_and_crashes() {
    let Some(server) = start_moto() else { return };
    readers_see_the_parquet_exports_rows(&s3_lake(&server, "delta-read"));
    a_second_log_entry_of_a_version_is_refused(&s3_lake(&server, "delta-put"));
    a_failed_commit_leaves_every_table_whole(&server, s3_lake);
}

#[test]
fn delta_tables_on_azure_blob_read_whole_through_commits_and_crashes() {
    let Some(server) = start_azurite() else {
        return;
    };
    readers_see_the_parquet_exports_rows(&azure_lake(&server, "delta-read"));
    a_second_log_entry_of_a_version_is_refused(&azure_lake(&server, "delta-put"));
    a_failed_commit_leaves_every_table_whole(&server, azure_lake);
}
