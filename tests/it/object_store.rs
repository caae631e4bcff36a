//! The lake on object stores, against real servers on loopback: an S3-compatible server
//! (moto, `python3 -m moto.server`) and Azurite's blob service (`azurite-blob`), both
//! started here on free ports and stopped when the test ends. `.ci/run` installs them.
//!
//! Without the servers (a `cargo test` without the npm/pip installs) each test prints why
//! it is skipped, unless `CI` is set: then a missing server fails the test.

use crate::support::{self, days_ago};

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use callrecords_emulator::{self as emulator, EmulatorConfig, RunningEmulator};
use callrecords_etl::commit;
use callrecords_etl::store::Location as Zone;
use chrono::Utc;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Map, Value, json};

const BUCKET: &str = "lake";
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const CALL_TABLES: [&str; 3] = ["call_records", "call_sessions", "call_media_streams"];

/// A server process on a loopback port, stopped (by its own pid) when dropped.
struct Server {
    child: Child,
    port: u16,
    _data: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `program` or explains why it cannot: None means skip (outside CI).
fn start(name: &str, mut command: Command, port: u16, data: tempfile::TempDir) -> Option<Server> {
    let child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn();
    let unavailable = |why: String| {
        let message = format!(
            "{name} is not available ({why}); install it with .ci/run's steps to run the object-store tests"
        );
        if std::env::var_os("CI").is_some() {
            panic!("{message}");
        }
        // Straight to stderr, past the test harness's capture, so a plain `cargo test` shows it.
        let _ = writeln!(std::io::stderr(), "skipped: {message}");
        None
    };
    let child = match child {
        Ok(child) => child,
        Err(error) => return unavailable(format!("cannot start it: {error}")),
    };
    let mut server = Server {
        child,
        port,
        _data: data,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = server.child.try_wait() {
            return unavailable(format!("it exited with {status}"));
        }
        if Instant::now() > deadline {
            return unavailable("it did not listen within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(server)
}

fn start_moto() -> Option<Server> {
    let port = free_port();
    let mut command = Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()));
    command.args([
        "-m",
        "moto.server",
        "-H",
        "127.0.0.1",
        "-p",
        &port.to_string(),
    ]);
    let server = start(
        "moto (pip install \"moto[server]\")",
        command,
        port,
        tempfile::tempdir().unwrap(),
    )?;
    let created = reqwest::blocking_put(&format!("http://127.0.0.1:{port}/{BUCKET}"));
    assert!(created, "cannot create the bucket");
    Some(server)
}

fn azurite_program() -> PathBuf {
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/node_modules/.bin/azurite-blob");
    if local.exists() {
        local
    } else {
        PathBuf::from("azurite-blob")
    }
}

fn start_azurite() -> Option<Server> {
    let port = free_port();
    let data = tempfile::tempdir().unwrap();
    let mut command = Command::new(azurite_program());
    command
        .args([
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &port.to_string(),
            "--silent",
            "--skipApiVersionCheck",
            "--location",
        ])
        .arg(data.path());
    let server = start("Azurite (npm install azurite)", command, port, data)?;
    create_azure_container(port, BUCKET);
    Some(server)
}

mod reqwest {
    //! The two requests object_store cannot make: creating a bucket and a container.

    /// `PUT url` without credentials (moto accepts any).
    pub fn blocking_put(url: &str) -> bool {
        runtime().block_on(async {
            ::reqwest::Client::new()
                .put(url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
    }

    pub fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }
}

/// Creates a blob container on Azurite, signed with the emulator's well-known Shared Key.
fn create_azure_container(port: u16, container: &str) {
    use base64::Engine;
    let date = Utc::now().format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let version = "2021-08-06";
    let to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{container}\nrestype:container"
    );
    let key = base64::engine::general_purpose::STANDARD
        .decode(AZURITE_KEY)
        .unwrap();
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key);
    let signature = base64::engine::general_purpose::STANDARD
        .encode(aws_lc_rs::hmac::sign(&key, to_sign.as_bytes()).as_ref());
    let url = format!("http://127.0.0.1:{port}/{AZURITE_ACCOUNT}/{container}?restype=container");
    let status = reqwest::runtime().block_on(async {
        ::reqwest::Client::new()
            .put(&url)
            .header("x-ms-date", &date)
            .header("x-ms-version", version)
            .header("Content-Length", "0")
            .header(
                "Authorization",
                format!("SharedKey {AZURITE_ACCOUNT}:{signature}"),
            )
            .send()
            .await
            .unwrap()
            .status()
    });
    assert!(status.is_success(), "cannot create the container: {status}");
}

/// How a test reaches one store: the lake URL, the environment of the exporter, the same
/// credentials as `[output.options]` (for the library's own calls), and a client of the
/// same store for reading back.
struct Lake {
    url: String,
    env: Vec<(&'static str, String)>,
    options: BTreeMap<String, String>,
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
}

fn s3_lake(server: &Server, prefix: &str) -> Lake {
    let env = vec![
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ENDPOINT", format!("http://127.0.0.1:{}", server.port)),
        ("AWS_ALLOW_HTTP", "true".to_string()),
    ];
    let store = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(BUCKET)
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
        .with_region("us-east-1")
        .with_endpoint(format!("http://127.0.0.1:{}", server.port))
        .with_allow_http(true)
        .build()
        .unwrap();
    let options = [
        ("aws_access_key_id", "testing".to_string()),
        ("aws_secret_access_key", "testing".to_string()),
        ("aws_region", "us-east-1".to_string()),
        ("aws_endpoint", format!("http://127.0.0.1:{}", server.port)),
        ("aws_allow_http", "true".to_string()),
    ];
    Lake {
        url: format!("s3://{BUCKET}/{prefix}"),
        env,
        options: options.map(|(k, v)| (k.to_string(), v)).into(),
        store: Arc::new(store),
        prefix: ObjectPath::from(prefix),
    }
}

fn azure_lake(server: &Server, prefix: &str) -> Lake {
    let endpoint = format!("http://127.0.0.1:{}", server.port);
    let env = vec![
        ("AZURE_STORAGE_USE_EMULATOR", "true".to_string()),
        ("AZURITE_BLOB_STORAGE_URL", endpoint.clone()),
    ];
    let store = object_store::azure::MicrosoftAzureBuilder::new()
        .with_container_name(BUCKET)
        .with_endpoint(format!("{endpoint}/{AZURITE_ACCOUNT}"))
        .with_allow_http(true)
        .with_account(AZURITE_ACCOUNT)
        .with_access_key(AZURITE_KEY)
        .build()
        .unwrap();
    // The emulator's URL comes from the environment with AZURE_STORAGE_USE_EMULATOR; in
    // options, the endpoint and the well-known key say the same.
    let options = [
        ("azure_storage_account_name", AZURITE_ACCOUNT.to_string()),
        ("azure_storage_account_key", AZURITE_KEY.to_string()),
        (
            "azure_storage_endpoint",
            format!("{endpoint}/{AZURITE_ACCOUNT}"),
        ),
        ("azure_allow_http", "true".to_string()),
    ];
    Lake {
        url: format!("az://{BUCKET}/{prefix}"),
        env,
        options: options.map(|(k, v)| (k.to_string(), v)).into(),
        store: Arc::new(store),
        prefix: ObjectPath::from(prefix),
    }
}

impl Lake {
    fn rt(&self) -> tokio::runtime::Runtime {
        reqwest::runtime()
    }

    fn key(&self, relative: &str) -> ObjectPath {
        self.prefix
            .parts()
            .chain(ObjectPath::from(relative).parts())
            .collect()
    }

    /// Every key under `relative`, relative to the lake, sorted.
    fn keys(&self, relative: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .rt()
            .block_on(
                self.store
                    .list(Some(&self.key(relative)))
                    .try_collect::<Vec<_>>(),
            )
            .unwrap()
            .into_iter()
            .map(|m| m.location.as_ref()[self.prefix.as_ref().len() + 1..].to_string())
            .collect();
        keys.sort();
        keys
    }

    fn get(&self, relative: &str) -> Option<Bytes> {
        self.rt().block_on(async {
            match self.store.get(&self.key(relative)).await {
                Ok(result) => Some(result.bytes().await.unwrap()),
                Err(object_store::Error::NotFound { .. }) => None,
                Err(error) => panic!("{error}"),
            }
        })
    }

    fn put(&self, relative: &str, bytes: Vec<u8>) {
        self.rt()
            .block_on(self.store.put(&self.key(relative), PutPayload::from(bytes)))
            .unwrap();
    }

    /// Every line of the raw zone's `stream`, each file checked to be in a committed partition.
    fn raw_lines(&self, stream: &str) -> Vec<Value> {
        let mut lines = Vec::new();
        for key in self.keys(stream) {
            if key.ends_with(".jsonl.zst") {
                let folder = key.rsplit_once('/').unwrap().0;
                assert!(
                    self.get(&format!("_markers/{folder}/_SUCCESS")).is_some(),
                    "{key}"
                );
                let bytes = self.get(&key).unwrap();
                let text = String::from_utf8(zstd::decode_all(&bytes[..]).unwrap()).unwrap();
                lines.extend(
                    text.lines()
                        .map(|line| serde_json::from_str::<Value>(line).unwrap()),
                );
            }
        }
        lines
    }

    /// The manifest of the run that finished last.
    fn last_manifest(&self) -> Value {
        let manifests = self.keys("_manifests");
        serde_json::from_slice(&self.get(manifests.last().unwrap()).unwrap()).unwrap()
    }

    /// Every row of `table`, as `support::read_table` reads a local lake.
    fn read_table(&self, table: &str) -> Vec<Map<String, Value>> {
        let mut all = Vec::new();
        for key in self.keys(table) {
            if !key.ends_with(".parquet") {
                continue;
            }
            let dt = key
                .split('/')
                .nth(1)
                .unwrap()
                .strip_prefix("dt=")
                .unwrap()
                .to_string();
            let bytes = self.get(&key).unwrap();
            for batch in ParquetRecordBatchReaderBuilder::try_new(bytes)
                .unwrap()
                .build()
                .unwrap()
            {
                for mut row in support::rows(&batch.unwrap()) {
                    row.insert("dt".into(), json!(dt));
                    all.push(row);
                }
            }
        }
        all
    }
}

fn export_command(
    out: &str,
    env: &[(&'static str, String)],
    window: (u64, u64),
    extra: &[&str],
) -> Command {
    let mut command = Command::new(assert_cmd::cargo::cargo_bin("callrecords-etl"));
    command
        .args([
            "export",
            "--emulator",
            "--quiet",
            "--from",
            &days_ago(window.0),
            "--to",
            &days_ago(window.1),
            "--out",
            out,
        ])
        .args(extra)
        .env_remove("RUST_LOG")
        .env_remove("CALLRECORDS_CONFIG");
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

fn export(out: &str, env: &[(&'static str, String)], window: (u64, u64), extra: &[&str]) -> Output {
    export_command(out, env, window, extra).output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn sorted(mut rows: Vec<Map<String, Value>>) -> Vec<String> {
    let mut rows: Vec<String> = rows
        .drain(..)
        .map(|r| Value::Object(r).to_string())
        .collect();
    rows.sort();
    rows
}

/// A full export to the store is, row for row, the local-disk export of the same data;
/// every partition has its `_SUCCESS` marker (under `_markers/`, outside the partition
/// folders) naming its files, the folder holds those files only, and nothing else is left
/// (no staging, no lock).
fn export_matches_local(lake: &Lake) {
    let local = tempfile::tempdir().unwrap();
    let output = export(local.path().to_str().unwrap(), &[], (3, 0), &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let output = export(&lake.url, &lake.env, (3, 0), &[]);
    assert!(output.status.success(), "{}", stderr(&output));

    for table in callrecords_etl::schema::tables() {
        let table = table.table.as_str();
        let expected = sorted(support::read_table(local.path(), table));
        assert!(
            !expected.is_empty()
                || table.starts_with("sms")
                || table.starts_with("pstn_b")
                || table.starts_with("pstn_o"),
            "{table} has rows locally"
        );
        assert_eq!(sorted(lake.read_table(table)), expected, "{table}");
    }
    for day in 1..=3 {
        let partition = format!("call_records/dt={}", days_ago(day));
        let marker: Value =
            serde_json::from_slice(&lake.get(&format!("_markers/{partition}/_SUCCESS")).unwrap())
                .unwrap();
        let mut named: Vec<String> = marker["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| format!("{partition}/{}", f.as_str().unwrap()))
            .collect();
        named.sort();
        assert_eq!(lake.keys(&partition), named);
    }
    assert!(lake.keys("_staging").is_empty(), "staging removed");
    assert!(lake.get("_lock").is_none(), "lock released");
    assert!(lake.get("_state.json").is_some());
    assert_eq!(lake.keys("_manifests").len(), 1);
}

#[test]
fn an_export_to_s3_matches_the_local_export_row_for_row() {
    let Some(server) = start_moto() else { return };
    export_matches_local(&s3_lake(&server, "full"));
}

#[test]
fn an_export_to_azure_blob_matches_the_local_export_row_for_row() {
    let Some(server) = start_azurite() else {
        return;
    };
    export_matches_local(&azure_lake(&server, "full"));
}

#[test]
fn the_raw_landing_zone_goes_to_the_store_with_every_record_as_a_line() {
    let Some(server) = start_moto() else { return };
    let lake = s3_lake(&server, "lake");
    let raw = s3_lake(&server, "raw");
    let output = export(
        &lake.url,
        &lake.env,
        (3, 1),
        &["--raw", &raw.url, "--streams", "call_records"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    // Every call record of the lake is one line of the raw zone, in its day's partition.
    let lines = raw.raw_lines("call_records");
    let calls = lake.read_table("call_records");
    assert!(!calls.is_empty());
    assert!(
        !lines.is_empty(),
        "raw objects: {:?}\n{}",
        raw.keys(""),
        stderr(&output)
    );
    let mut raw_ids: Vec<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    let mut lake_ids: Vec<&str> = calls
        .iter()
        .map(|c| c["call_id"].as_str().unwrap())
        .collect();
    raw_ids.sort_unstable();
    lake_ids.sort_unstable();
    assert_eq!(raw_ids, lake_ids);
    assert!(
        lines
            .iter()
            .all(|l| l["sessions"].is_array() && l["participants_v2"].is_array())
    );
    assert!(
        raw.keys("_staging").is_empty(),
        "the raw staging is removed"
    );
}

/// The parquet keys of every partition of `tables`, with their bytes' length.
fn snapshot(lake: &Lake, tables: &[&str]) -> BTreeMap<String, usize> {
    tables
        .iter()
        .flat_map(|t| lake.keys(t))
        .map(|key| {
            let len = lake.get(&key).unwrap().len();
            (key, len)
        })
        .collect()
}

#[test]
fn a_killed_run_leaves_the_previous_partitions_and_a_rerun_replaces_exactly_its_window() {
    let Some(server) = start_moto() else { return };
    let lake = s3_lake(&server, "kill");
    let streams = ["--streams", "call_records"];
    // The lake before: days 6..1 ago.
    let output = export(&lake.url, &lake.env, (6, 1), &streams);
    assert!(output.status.success(), "{}", stderr(&output));
    let before = snapshot(&lake, &CALL_TABLES);

    // A slow run over days 4..2 ago, killed in the middle (`--full`: it refetches every
    // record, where a rescan would reuse them all and be done at once).
    let mut child = export_command(
        &lake.url,
        &lake.env,
        (4, 2),
        &[
            "--full",
            "--streams",
            "call_records",
            "--faults",
            "seed=1,slow=0.5,slow_delay=60ms",
            "--concurrency",
            "2",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        snapshot(&lake, &CALL_TABLES),
        before,
        "the killed run changed nothing"
    );

    // Its lock holds until its lease expires: the next run fails fast with exit code 4.
    let output = export(&lake.url, &lake.env, (4, 2), &streams);
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("expires at"),
        "{}",
        stderr(&output)
    );

    // Once the lease has passed, the rerun takes the lock over and replaces days 4..2 only.
    let mut holder: Value = serde_json::from_slice(&lake.get("_lock").unwrap()).unwrap();
    holder["expires_at"] = json!((Utc::now() - chrono::Duration::seconds(1)).to_rfc3339());
    lake.put("_lock", serde_json::to_vec(&holder).unwrap());
    let output = export(&lake.url, &lake.env, (4, 2), &streams);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("Took over the lock"),
        "{}",
        stderr(&output)
    );

    let manifests = lake.keys("_manifests");
    let rerun = manifests
        .last()
        .unwrap()
        .trim_start_matches("_manifests/")
        .trim_end_matches(".json")
        .to_string();
    let after = snapshot(&lake, &CALL_TABLES);
    for key in after.keys().filter(|k| k.ends_with(".parquet")) {
        let dt = key.split('/').nth(1).unwrap().trim_start_matches("dt=");
        let in_window = dt >= days_ago(4).as_str() && dt < days_ago(2).as_str();
        if in_window {
            assert!(key.contains(&rerun), "{key} is the rerun's");
        } else {
            assert!(before.contains_key(key), "{key} is untouched");
        }
    }
    let reference = tempfile::tempdir().unwrap();
    let output = export(reference.path().to_str().unwrap(), &[], (6, 1), &streams);
    assert!(output.status.success(), "{}", stderr(&output));
    for table in CALL_TABLES {
        assert_eq!(
            sorted(lake.read_table(table)),
            sorted(support::read_table(reference.path(), table)),
            "{table}"
        );
    }
    assert!(
        lake.keys("_staging").is_empty(),
        "the killed run's staging is removed"
    );
}

/// The sorted rows of every call table, and the sorted ids of the raw zone's lines.
fn call_tables_and_raw_ids(lake: &Lake, raw: &Lake) -> (Vec<Vec<String>>, Vec<String>) {
    let tables = callrecords_etl::schema::tables_of_stream("call_records")
        .map(|table| sorted(lake.read_table(&table.table)))
        .collect();
    let mut ids: Vec<String> = raw
        .raw_lines("call_records")
        .iter()
        .map(|line| line["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    (tables, ids)
}

/// A nightly rescan of a lake and raw zone on the store fetches no record whose listed
/// version the lake holds: their rows and raw lines are read back from the store (Parquet by
/// ranged GETs, raw files streamed) and republished; `--full` fetches them all again.
fn a_rescan_reuses_what_the_store_holds(lake: &Lake, raw: &Lake) {
    let args = ["--raw", raw.url.as_str(), "--streams", "call_records"];
    let output = export(&lake.url, &lake.env, (3, 1), &args);
    assert!(output.status.success(), "{}", stderr(&output));
    let first = lake.last_manifest();
    let records = first["records_exported"].as_u64().unwrap();
    assert!(records > 10, "{first}");
    assert_eq!(first["records_reused"], 0);
    let exported = call_tables_and_raw_ids(lake, raw);
    assert_eq!(exported.1.len() as u64, records);

    let output = export(&lake.url, &lake.env, (3, 1), &args);
    assert!(output.status.success(), "{}", stderr(&output));
    let rescan = lake.last_manifest();
    assert_eq!(rescan["records_exported"], records);
    assert_eq!(rescan["records_reused"], records, "{rescan}");
    let (requests, rescan_requests) = (
        first["requests"]["requests"].as_u64().unwrap(),
        rescan["requests"]["requests"].as_u64().unwrap(),
    );
    assert!(
        rescan_requests + 2 * records <= requests,
        "the rescan only lists: {rescan_requests} requests, the first run {requests} for {records} records"
    );
    assert_eq!(
        call_tables_and_raw_ids(lake, raw),
        exported,
        "the reused rows and raw lines are republished"
    );

    let mut full = args.to_vec();
    full.push("--full");
    let output = export(&lake.url, &lake.env, (3, 1), &full);
    assert!(output.status.success(), "{}", stderr(&output));
    let refetched = lake.last_manifest();
    assert_eq!(refetched["records_reused"], 0);
    assert_eq!(
        refetched["requests"]["requests"],
        first["requests"]["requests"]
    );
    assert_eq!(call_tables_and_raw_ids(lake, raw), exported);
}

#[test]
fn a_rescan_of_a_lake_on_s3_fetches_only_what_the_lake_lacks() {
    let Some(server) = start_moto() else { return };
    a_rescan_reuses_what_the_store_holds(&s3_lake(&server, "lake"), &s3_lake(&server, "raw"));
}

#[test]
fn a_rescan_of_a_lake_on_azure_blob_fetches_only_what_the_lake_lacks() {
    let Some(server) = start_azurite() else {
        return;
    };
    a_rescan_reuses_what_the_store_holds(&azure_lake(&server, "lake"), &azure_lake(&server, "raw"));
}

/// Runs `reflatten --raw <raw> --out <lake>` with the lake's credentials; it must succeed.
fn reflatten(raw: &str, lake: &Lake) {
    let mut command = Command::new(assert_cmd::cargo::cargo_bin("callrecords-etl"));
    command
        .args(["reflatten", "--raw", raw, "--out", &lake.url])
        .env_remove("CALLRECORDS_CONFIG");
    for (name, value) in &lake.env {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
}

/// `reflatten` reads a raw zone on the store (streamed GETs, committed files only) and
/// writes the lake there too: the tables the export wrote, row for row.
#[test]
fn reflatten_reads_a_raw_zone_on_s3_and_publishes_to_s3() {
    let Some(server) = start_moto() else { return };
    let (lake, raw) = (s3_lake(&server, "lake"), s3_lake(&server, "raw"));
    let output = export(&lake.url, &lake.env, (3, 1), &["--raw", &raw.url]);
    assert!(output.status.success(), "{}", stderr(&output));
    // A file no marker names (a run's copy not yet committed, say) is not read.
    let partition = raw
        .keys("_markers/call_records")
        .into_iter()
        .find(|key| key.ends_with("_SUCCESS"))
        .unwrap()
        .trim_start_matches("_markers/")
        .trim_end_matches("/_SUCCESS")
        .to_string();
    let stray = raw.get(&raw.keys(&partition)[0]).unwrap();
    raw.put(
        &format!("{partition}/part-uncommitted-00000.jsonl.zst"),
        stray.to_vec(),
    );

    let rebuilt = s3_lake(&server, "rebuilt");
    reflatten(&raw.url, &rebuilt);
    for table in callrecords_etl::schema::tables() {
        let table = table.table.as_str();
        assert_eq!(
            sorted(rebuilt.read_table(table)),
            sorted(lake.read_table(table)),
            "{table}"
        );
    }
    let manifest = rebuilt.last_manifest();
    assert_eq!(manifest["command"], "reflatten");
    assert_eq!(manifest["raw"], raw.url.as_str());
    assert!(rebuilt.keys("_staging").is_empty());
    assert!(rebuilt.get("_lock").is_none(), "lock released");

    // `--raw` naming one object: its calls, and only those, in every table.
    let object = raw
        .keys(&partition)
        .into_iter()
        .find(|key| key.ends_with(".jsonl.zst") && !key.contains("uncommitted"))
        .unwrap();
    let text = String::from_utf8(zstd::decode_all(&raw.get(&object).unwrap()[..]).unwrap());
    let ids: BTreeSet<String> = text
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["id"].to_string())
        .collect();
    let single = s3_lake(&server, "single");
    reflatten(&format!("{}/{object}", raw.url), &single);
    for table in callrecords_etl::schema::tables() {
        let table = table.table.as_str();
        let of_the_object: Vec<_> = lake
            .read_table(table)
            .into_iter()
            .filter(|row| {
                row.get("call_id")
                    .is_some_and(|id| ids.contains(&id.to_string()))
            })
            .collect();
        assert_eq!(
            sorted(single.read_table(table)),
            sorted(of_the_object),
            "{table}"
        );
    }
    assert!(!ids.is_empty());
}

// The run-wide commit on the store, step by step (tests/it/commit_crash.rs proves the same on
// local disk): a crash (the process aborts) or an I/O error injected at a step of the
// switch leaves, once the next command's recovery has run, exactly the old lake or exactly
// the new one, and a rerun then equals a clean export.

/// The streams of the crash tests, and their tables.
const CRASH_STREAMS: [&str; 2] = ["call_records", "pstn_calls"];

fn crash_tables() -> Vec<&'static str> {
    support::CALL_TABLES
        .iter()
        .copied()
        .chain(["pstn_calls"])
        .collect()
}

/// A small synthetic tenant, served by `runtime` (which must outlive it).
fn start_emulator(runtime: &tokio::runtime::Runtime, seed: u64) -> RunningEmulator {
    let config = EmulatorConfig {
        seed,
        calls_per_day: 12,
        log_rows_per_day: 40,
        ..EmulatorConfig::default()
    };
    runtime
        .block_on(emulator::start(config, "127.0.0.1:0".parse().unwrap()))
        .unwrap()
}

/// A lake and its raw zone, side by side on one store.
struct Zones {
    lake: Lake,
    raw: Lake,
}

impl Zones {
    fn new(zone: &impl Fn(&str) -> Lake, name: &str) -> Self {
        Zones {
            lake: zone(&format!("{name}/lake")),
            raw: zone(&format!("{name}/raw")),
        }
    }

    /// `export` of days 4..2 ago from the tenant of `config`, with `failpoints` set.
    fn export(&self, config: &Path, secret: &str, failpoints: &str) -> Output {
        let mut command = support::binary();
        command
            .env("CALLRECORDS_CLIENT_SECRET", secret)
            .env("FAILPOINTS", failpoints)
            .args(["export", "--streams", &CRASH_STREAMS.join(","), "--config"])
            .arg(config)
            .args(["--from", &days_ago(4), "--to", &days_ago(2)])
            .args(["--out", &self.lake.url, "--raw", &self.raw.url]);
        for (name, value) in &self.lake.env {
            command.env(name, value);
        }
        command.output().unwrap()
    }

    /// Everything a reader going by the commit markers sees: every row of every table, every
    /// raw line (both sorted), and the state file.
    fn contents(&self) -> Contents {
        let mut rows = Vec::new();
        for table in crash_tables() {
            for key in self.lake.committed(table) {
                let bytes = self
                    .lake
                    .get(&key)
                    .unwrap_or_else(|| panic!("{key} is missing"));
                let dt = key.split('/').nth(1).unwrap().trim_start_matches("dt=");
                for batch in ParquetRecordBatchReaderBuilder::try_new(bytes)
                    .unwrap()
                    .build()
                    .unwrap()
                {
                    for mut row in support::rows(&batch.unwrap()) {
                        row.insert("dt".into(), json!(dt));
                        rows.push(format!("{table} {}", Value::Object(row)));
                    }
                }
            }
        }
        rows.sort();
        let mut raw = Vec::new();
        for stream in CRASH_STREAMS {
            for key in self.raw.committed(stream) {
                let dt = key.split('/').nth(1).unwrap();
                let bytes = self
                    .raw
                    .get(&key)
                    .unwrap_or_else(|| panic!("{key} is missing"));
                let text = String::from_utf8(zstd::decode_all(&bytes[..]).unwrap()).unwrap();
                raw.extend(text.lines().map(|line| format!("{stream}/{dt} {line}")));
            }
        }
        raw.sort();
        let state = self
            .lake
            .get("_state.json")
            .map(|bytes| String::from_utf8(bytes.to_vec()).unwrap());
        Contents { rows, raw, state }
    }

    /// No journal, no staging, no lock, and in every partition only its marker and the files
    /// it names.
    fn nothing_left_over(&self, what: &str) {
        for (zone, dir) in [
            (&self.lake, "_commits"),
            (&self.lake, "_staging"),
            (&self.raw, "_staging"),
        ] {
            let left = zone.keys(dir);
            assert!(left.is_empty(), "{what}: {}/{dir} holds {left:?}", zone.url);
        }
        assert!(self.lake.get("_lock").is_none(), "{what}: the lock is left");
        let strays: Vec<String> = crash_tables()
            .into_iter()
            .flat_map(|table| self.lake.strays(table))
            .chain(CRASH_STREAMS.iter().flat_map(|s| self.raw.strays(s)))
            .collect();
        assert!(
            strays.is_empty(),
            "{what}: files no marker names: {strays:?}"
        );
    }

    /// Finishes what a crashed run left, as the next command does first (once the crashed
    /// run's lock has expired).
    fn recover(&self, runtime: &tokio::runtime::Runtime) -> Vec<commit::Recovered> {
        if let Some(bytes) = self.lake.get("_lock") {
            let mut holder: Value = serde_json::from_slice(&bytes).unwrap();
            holder["expires_at"] = json!((Utc::now() - chrono::Duration::seconds(1)).to_rfc3339());
            self.lake.put("_lock", serde_json::to_vec(&holder).unwrap());
        }
        let lake = Zone::parse(&self.lake.url, &self.lake.options).unwrap();
        let raw = Zone::parse(&self.raw.url, &self.raw.options).unwrap();
        // On a worker thread: the lock is released by blocking in place.
        runtime
            .block_on(runtime.spawn(async move {
                callrecords_etl::run::recover(&lake, Some(&raw))
                    .await
                    .unwrap()
            }))
            .unwrap()
    }
}

/// What [`Zones::contents`] reads.
#[derive(PartialEq)]
struct Contents {
    rows: Vec<String>,
    raw: Vec<String>,
    state: Option<String>,
}

impl Contents {
    /// How `self` differs from `other`, for messages.
    fn diff(&self, other: &Contents) -> String {
        let only = |a: &[String], b: &[String]| {
            let b: BTreeSet<&String> = b.iter().collect();
            a.iter().filter(|x| !b.contains(x)).count()
        };
        format!(
            "rows: {} only here, {} only there (of {}); raw lines: {} only here, {} only there \
             (of {}); state {}",
            only(&self.rows, &other.rows),
            only(&other.rows, &self.rows),
            other.rows.len(),
            only(&self.raw, &other.raw),
            only(&other.raw, &self.raw),
            other.raw.len(),
            if self.state == other.state {
                "equal"
            } else {
                "differs"
            }
        )
    }
}

impl Lake {
    /// The files the commit markers under `top` (a table or a stream) name, as keys.
    fn committed(&self, top: &str) -> Vec<String> {
        let mut files = Vec::new();
        for key in self.keys(&format!("_markers/{top}")) {
            let Some(folder) = key
                .strip_prefix("_markers/")
                .and_then(|key| key.strip_suffix("/_SUCCESS"))
            else {
                continue;
            };
            let marker: Value = serde_json::from_slice(&self.get(&key).unwrap()).unwrap();
            for name in marker["files"].as_array().unwrap() {
                files.push(format!("{folder}/{}", name.as_str().unwrap()));
            }
        }
        files.sort();
        files
    }

    /// The keys under `top` that no commit marker names (a marker left in a partition
    /// folder among them).
    fn strays(&self, top: &str) -> Vec<String> {
        let committed: BTreeSet<String> = self.committed(top).into_iter().collect();
        self.keys(top)
            .into_iter()
            .filter(|key| !committed.contains(key))
            .collect()
    }

    /// Copies every object of the lake to `to`, server-side.
    fn copy_into(&self, to: &Lake) {
        let keys = self.keys("");
        self.rt().block_on(async {
            for key in keys {
                self.store
                    .copy(&self.key(&key), &to.key(&key))
                    .await
                    .unwrap();
            }
        });
    }
}

/// The failure points of the object-store commit, and whether the new data is committed
/// afterwards. The export switches 22 partitions: the raw zone's 4, then the lake's 18, each
/// replacing one old file.
const CRASH_CASES: &[(&str, &str, bool)] = &[
    (
        "commit::journal=return(crash)",
        "crash before the journal",
        false,
    ),
    (
        "commit::journal_written=return(crash)",
        "crash right after the journal",
        true,
    ),
    (
        "commit::switch=return(crash)",
        "crash at the first switch",
        true,
    ),
    (
        "commit::switch=6*off->return(crash)",
        "crash at the 7th switch",
        true,
    ),
    (
        "commit::marker=return(crash)",
        "crash before the first marker",
        true,
    ),
    (
        "commit::marker=9*off->return(crash)",
        "crash before the 10th marker",
        true,
    ),
    (
        "commit::marker=9*off->return(io)",
        "I/O error before the 10th marker",
        false,
    ),
    (
        "commit::park_old=11*off->return(crash)",
        "crash parking the 12th old file",
        true,
    ),
    (
        "commit::write_file=1*off->return(crash)",
        "crash before writing the manifest",
        true,
    ),
    (
        "commit::clean_up=return(crash)",
        "crash before the clean-up",
        true,
    ),
];

fn a_crash_or_an_io_error_at_each_commit_step_leaves_the_old_or_the_new_lake_whole(
    zone: impl Fn(&str) -> Lake,
) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (old_graph, new_graph) = (start_emulator(&runtime, 101), start_emulator(&runtime, 202));
    let dir = tempfile::tempdir().unwrap();
    let (old_config, new_config) = (
        support::emulator_config_file(dir.path(), &old_graph),
        support::emulator_config_file(dir.path(), &new_graph),
    );
    let secret = new_graph.config().client_secret.clone();

    let template = Zones::new(&zone, "template");
    let output = template.export(&old_config, &secret, "");
    assert!(output.status.success(), "{}", stderr(&output));
    let reference = Zones::new(&zone, "reference");
    let output = reference.export(&new_config, &secret, "");
    assert!(output.status.success(), "{}", stderr(&output));
    let (old, new) = (template.contents(), reference.contents());
    assert!(
        old.rows != new.rows && old.raw != new.raw,
        "the two tenants differ"
    );
    assert!(
        new.rows.len() > 500 && new.raw.len() > 50,
        "{} rows, {} raw lines",
        new.rows.len(),
        new.raw.len()
    );
    template.nothing_left_over("the old lake");

    for (index, (failpoints, what, committed)) in CRASH_CASES.iter().enumerate() {
        let case = Zones::new(&zone, &format!("case-{index}"));
        template.lake.copy_into(&case.lake);
        template.raw.copy_into(&case.raw);

        let output = case.export(&new_config, &secret, failpoints);
        if failpoints.contains("crash") {
            assert_eq!(
                output.status.code(),
                None,
                "{what}: killed by a signal: {}",
                stderr(&output)
            );
            let recovered = case.recover(&runtime);
            let directions: Vec<commit::Direction> =
                recovered.iter().map(|r| r.direction).collect();
            let expected: &[commit::Direction] = if *committed {
                &[commit::Direction::Forward]
            } else {
                &[]
            };
            assert_eq!(directions, expected, "{what}: {recovered:?}");
        } else {
            assert_eq!(output.status.code(), Some(1), "{what}: {}", stderr(&output));
            assert!(
                stderr(&output).contains("injected I/O error"),
                "{what}: {}",
                stderr(&output)
            );
            let contents = case.contents();
            assert!(
                contents == old,
                "{what}: rolled back before exiting: {}",
                contents.diff(&old)
            );
            case.nothing_left_over(what);
            let recovered = case.recover(&runtime);
            assert!(recovered.is_empty(), "{what}: {recovered:?}");
        }
        let expected = if *committed { &new } else { &old };
        let contents = case.contents();
        assert!(
            &contents == expected,
            "{what}: the lake is not the whole {} one: {}",
            if *committed { "new" } else { "old" },
            contents.diff(expected)
        );
        case.nothing_left_over(what);
        // The old run's manifest, and the new run's once it is committed.
        let manifests = case.lake.keys("_manifests").len();
        assert_eq!(manifests, 1 + usize::from(*committed), "{what}: manifests");

        let output = case.export(&new_config, &secret, "");
        assert!(
            output.status.success(),
            "{what}, rerun: {}",
            stderr(&output)
        );
        let contents = case.contents();
        assert!(
            contents == new,
            "{what}: the rerun differs from a clean export: {}",
            contents.diff(&new)
        );
        case.nothing_left_over(what);
        assert_eq!(case.lake.keys("_manifests").len(), manifests + 1, "{what}");
    }
}

#[test]
fn a_crash_at_each_commit_step_on_s3_leaves_the_old_or_the_new_lake_whole() {
    let Some(server) = start_moto() else { return };
    a_crash_or_an_io_error_at_each_commit_step_leaves_the_old_or_the_new_lake_whole(|prefix| {
        s3_lake(&server, prefix)
    });
}

#[test]
fn a_crash_at_each_commit_step_on_azure_blob_leaves_the_old_or_the_new_lake_whole() {
    let Some(server) = start_azurite() else {
        return;
    };
    a_crash_or_an_io_error_at_each_commit_step_leaves_the_old_or_the_new_lake_whole(|prefix| {
        azure_lake(&server, prefix)
    });
}

/// The row counts polars reads from each table folder of `lake` must be those written:
/// `scan_parquet(<table folder>)` works only when the folders hold Parquet files alone.
fn polars_reads_every_table(lake: &Lake, tables: &[&str]) {
    let rows: BTreeMap<&str, usize> = tables
        .iter()
        .map(|table| (*table, lake.read_table(table).len()))
        .collect();
    assert!(rows.values().all(|n| *n > 0), "{rows:?}");
    let work = tempfile::tempdir().unwrap();
    let expected = work.path().join("polars.json");
    std::fs::write(
        &expected,
        serde_json::to_vec(&json!({
            "root": lake.url,
            "storage_options": lake.options,
            "rows": rows,
        }))
        .unwrap(),
    )
    .unwrap();
    crate::readers::run_python("check_polars.py", &[&expected]);
}

/// Commit markers live under `_markers/`, outside the partition folders, so polars scans a
/// table folder on S3. A lake written with the markers in the partition folders (as earlier
/// versions did) is still read, and the next run over its days moves them out.
#[test]
fn polars_scans_table_folders_on_s3_and_a_lake_of_the_old_layout_moves_its_markers_out() {
    if !crate::readers::python_has(&["polars"]) {
        return;
    }
    let Some(server) = start_moto() else { return };
    let lake = s3_lake(&server, "polars");
    let tables = ["call_records", "call_sessions", "pstn_calls"];
    let output = export(&lake.url, &lake.env, (3, 0), &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    for table in tables {
        assert!(lake.strays(table).is_empty(), "{:?}", lake.strays(table));
        assert!(!lake.keys(table).iter().any(|k| k.ends_with("_SUCCESS")));
    }
    polars_reads_every_table(&lake, &tables);

    // The layout of a lake written yesterday: each marker in its partition folder.
    let before: BTreeMap<&str, Vec<String>> = tables
        .iter()
        .map(|t| (*t, sorted(lake.read_table(t))))
        .collect();
    for key in lake.keys("_markers") {
        let legacy = key.strip_prefix("_markers/").unwrap().to_string();
        lake.put(&legacy, lake.get(&key).unwrap().to_vec());
        lake.rt()
            .block_on(lake.store.delete(&lake.key(&key)))
            .unwrap();
    }
    assert!(lake.keys("_markers").is_empty());
    let output = export(&lake.url, &lake.env, (3, 0), &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    for table in tables {
        assert_eq!(sorted(lake.read_table(table)), before[table], "{table}");
        assert!(lake.strays(table).is_empty(), "{:?}", lake.strays(table));
    }
    polars_reads_every_table(&lake, &tables);
}

mod delta_lake;
