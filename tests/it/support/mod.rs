//! Shared helpers of the integration tests: Graph sample fixtures, reading the written
//! lake back (every Parquet file of a table) and turning Arrow cells into JSON values so
//! assertions read like the Graph payloads they come from.

pub mod security;
pub mod tenants;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Output;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use callrecords_emulator::{EmulatorConfig, RunningEmulator};
use chrono::{DateTime, Utc};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Map, Value, json};

/// The tables of the `call_records` stream, in declaration order.
pub const CALL_TABLES: [&str; 9] = [
    "call_records",
    "call_participants",
    "call_modalities",
    "call_sessions",
    "call_segments",
    "call_media",
    "call_media_streams",
    "call_trace_route_hops",
    "call_quality",
];

/// The built binary, with the environment variables that would change its behaviour removed.
pub fn binary() -> assert_cmd::Command {
    let mut command = assert_cmd::Command::cargo_bin("callrecords-etl").unwrap();
    for name in [
        "RUST_LOG",
        "CALLRECORDS_CONFIG",
        "CALLRECORDS_CLIENT_SECRET",
        "AZURE_FEDERATED_TOKEN_FILE",
        "AZURE_CLIENT_ID",
        "AZURE_TENANT_ID",
    ] {
        command.env_remove(name);
    }
    command
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The UTC date `n` days before today: test windows stay inside Graph's 30-day retention
/// of call records whatever day the tests run. "Today" is the day the test process first
/// asked, so a test whose runs span midnight UTC compares the same windows (two Delta
/// crash tests failed that way: their rerun exported a window a day later).
pub fn date_days_ago(n: u64) -> chrono::NaiveDate {
    static TODAY: std::sync::LazyLock<chrono::NaiveDate> =
        std::sync::LazyLock::new(|| chrono::Utc::now().date_naive());
    TODAY.checked_sub_days(chrono::Days::new(n)).unwrap()
}

/// An RFC 3339 time.
pub fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// [`date_days_ago`] as `YYYY-MM-DD`, for command lines.
pub fn days_ago(n: u64) -> String {
    date_days_ago(n).to_string()
}

pub fn fixture_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(relative)
}

/// A Graph sample payload from `tests/fixtures/graph-samples/`.
pub fn sample(name: &str) -> Value {
    let path = fixture_path(&format!("graph-samples/{name}"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// One Arrow cell as JSON: strings, numbers (float32 through its shortest text, so 0.27 stays
/// 0.27), booleans, timestamps as RFC 3339 with microseconds, decimals as exact text,
/// lists as arrays, null as null.
pub fn cell(array: &dyn Array, row: usize) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    match array.data_type() {
        DataType::Utf8 => json!(array.as_string::<i32>().value(row)),
        DataType::Int32 => json!(array.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => json!(array.as_primitive::<Int64Type>().value(row)),
        DataType::Float32 => {
            let value = array.as_primitive::<Float32Type>().value(row);
            serde_json::from_str(&value.to_string()).unwrap()
        }
        DataType::Float64 => json!(array.as_primitive::<Float64Type>().value(row)),
        DataType::Boolean => json!(array.as_boolean().value(row)),
        DataType::Timestamp(_, _) => {
            let micros = array.as_primitive::<TimestampMicrosecondType>().value(row);
            let time = chrono::DateTime::from_timestamp_micros(micros).unwrap();
            json!(time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        }
        DataType::Decimal128(_, _) => {
            json!(arrow_cast::display::array_value_to_string(array, row).unwrap())
        }
        DataType::List(_) => {
            let list = array.as_list::<i32>().value(row);
            Value::Array((0..list.len()).map(|i| cell(list.as_ref(), i)).collect())
        }
        other => panic!("unexpected column type {other}"),
    }
}

/// The rows of the Parquet file `file` (a table-relative `dt=…/part-….parquet` path) as
/// JSON texts, each with the `dt` of its partition folder.
pub fn partition_file_rows<R>(file: &str, content: R) -> Vec<String>
where
    R: parquet::file::reader::ChunkReader + 'static,
{
    let dt = file.split('/').nth(1).unwrap().trim_start_matches("dt=");
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(content)
        .unwrap()
        .build()
        .unwrap();
    let mut texts = Vec::new();
    for batch in reader {
        for mut row in rows(&batch.unwrap()) {
            row.insert("dt".into(), serde_json::json!(dt));
            texts.push(Value::Object(row).to_string());
        }
    }
    texts
}

/// The rows of a batch as JSON objects keyed by column name.
pub fn rows(batch: &RecordBatch) -> Vec<Map<String, Value>> {
    (0..batch.num_rows())
        .map(|row| {
            batch
                .schema()
                .fields()
                .iter()
                .zip(batch.columns())
                .map(|(field, column)| (field.name().clone(), cell(column.as_ref(), row)))
                .collect()
        })
        .collect()
}

/// Every Parquet file under `<lake>/<table>/`, with its partition folder.
pub fn parquet_files(lake: &Path, table: &str) -> Vec<(String, PathBuf)> {
    let mut files = Vec::new();
    let Ok(partitions) = std::fs::read_dir(lake.join(table)) else {
        return files;
    };
    for partition in partitions {
        let partition = partition.unwrap().path();
        for file in std::fs::read_dir(&partition).unwrap() {
            let file = file.unwrap().path();
            if file.extension().is_some_and(|e| e == "parquet") {
                files.push((
                    partition
                        .file_name()
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                    file,
                ));
            }
        }
    }
    files.sort();
    files
}

/// Every row of a table in the lake, each with its `dt` partition value added.
pub fn read_table(lake: &Path, table: &str) -> Vec<Map<String, Value>> {
    let mut all = Vec::new();
    for (partition, file) in parquet_files(lake, table) {
        let dt = partition
            .strip_prefix("dt=")
            .expect("Hive partition folder")
            .to_string();
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&file).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            for mut row in rows(&batch.unwrap()) {
                row.insert("dt".into(), json!(dt));
                all.push(row);
            }
        }
    }
    all
}

/// A table's rows as JSON text in a canonical order (writers may write in any order).
pub fn sorted_rows(lake: &Path, table: &str) -> Vec<String> {
    let mut rows: Vec<String> = read_table(lake, table)
        .into_iter()
        .map(|row| Value::Object(row).to_string())
        .collect();
    rows.sort();
    rows
}

/// Every row of every table in `tables`, as sorted `<table> <row JSON>` lines: two lakes
/// hold the same data when these are equal, whatever their files.
pub fn lake_rows(lake: &Path, tables: &[&str]) -> Vec<String> {
    let mut rows: Vec<String> = tables
        .iter()
        .flat_map(|table| {
            read_table(lake, table)
                .into_iter()
                .map(move |row| format!("{table} {}", Value::Object(row)))
        })
        .collect();
    rows.sort();
    rows
}

/// Every line of the raw zone's live partitions (`<raw>/<stream>/dt=…/*.jsonl.zst`), as
/// sorted `<stream>/<dt> <line>` lines. Graph's `@odata.context` URLs name the emulator's
/// loopback port, which differs from run to run: it is left out.
pub fn raw_lines(raw: &Path) -> Vec<String> {
    use std::io::BufRead;
    let mut lines = Vec::new();
    let Ok(streams) = std::fs::read_dir(raw) else {
        return lines;
    };
    for stream in streams {
        let stream = stream.unwrap().path();
        let name = stream.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with(['_', '.']) || !stream.is_dir() {
            continue;
        }
        for partition in std::fs::read_dir(&stream).unwrap() {
            let partition = partition.unwrap().path();
            let dt = partition
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            for file in std::fs::read_dir(&partition).unwrap() {
                let file = file.unwrap().path();
                let reader = zstd::Decoder::new(File::open(&file).unwrap()).unwrap();
                for line in std::io::BufReader::new(reader).lines() {
                    let line = without_emulator_port(&line.unwrap());
                    lines.push(format!("{name}/{dt} {line}"));
                }
            }
        }
    }
    lines.sort();
    lines
}

/// The manifest of the lake's latest run (by its `finished_at`: run ids sort by the second
/// a run started, and two short runs can start within one).
pub fn last_manifest(lake: &Path) -> Value {
    std::fs::read_dir(lake.join("_manifests"))
        .unwrap()
        .map(|entry| {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            serde_json::from_str::<Value>(&text).unwrap()
        })
        .max_by_key(|manifest| {
            let finished = manifest["finished_at"].as_str().expect("finished_at");
            chrono::DateTime::parse_from_rfc3339(finished).unwrap()
        })
        .expect("a manifest")
}

/// `text` with every `http://127.0.0.1:<port>` written as `http://127.0.0.1`.
fn without_emulator_port(text: &str) -> String {
    const HOST: &str = "http://127.0.0.1:";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(HOST) {
        out.push_str(&rest[..at + HOST.len() - 1]);
        rest = rest[at + HOST.len()..].trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    out
}

/// Starts the in-process emulator with `config` on a free loopback port.
pub async fn start_emulator(config: EmulatorConfig) -> RunningEmulator {
    callrecords_emulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// `emulator`'s own application: tenant id, client id and secret.
pub fn app_credentials(emulator: &RunningEmulator) -> [&str; 3] {
    let config = emulator.config();
    [&config.tenant_id, &config.client_id, &config.client_secret]
}

/// One client-credentials token request to `emulator` as `[tenant, client_id, secret]`
/// for `scope`: the status and JSON body, or `None` when the connection was dropped.
pub async fn request_token(
    client: &reqwest::Client,
    emulator: &RunningEmulator,
    [tenant, client_id, secret]: [&str; 3],
    scope: &str,
) -> Option<(reqwest::StatusCode, Value)> {
    let response = client
        .post(format!(
            "{}/{tenant}/oauth2/v2.0/token",
            emulator.base_url()
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            ("scope", scope),
        ])
        .send()
        .await
        .ok()?;
    Some((response.status(), response.json().await.unwrap()))
}

/// The scope an application asks for to call Graph with its granted permissions.
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";

/// An access token of `emulator`'s own application (scope [`GRAPH_SCOPE`]).
pub async fn emulator_token(emulator: &RunningEmulator) -> String {
    let (status, body) = request_token(
        &reqwest::Client::new(),
        emulator,
        app_credentials(emulator),
        GRAPH_SCOPE,
    )
    .await
    .expect("token answered");
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// A config file in `dir` that points the exporter at the in-process `emulator` (its
/// tenant and client; the secret goes in CALLRECORDS_CLIENT_SECRET).
pub fn emulator_config_file(dir: &Path, emulator: &RunningEmulator) -> PathBuf {
    let url = emulator.base_url();
    let text = format!(
        "[graph]\ntenant_id = \"{}\"\nclient_id = \"{}\"\ngraph_url = \"{url}\"\nlogin_url = \"{url}\"\n",
        emulator.config().tenant_id,
        emulator.config().client_id,
    );
    let path = dir.join(format!("etl-{}.toml", emulator.config().seed));
    std::fs::write(&path, text).unwrap();
    path
}

/// A Graph client signed in to the in-process `emulator` as its application.
pub fn emulator_client(emulator: &RunningEmulator) -> callrecords_etl::graph::GraphClient {
    use callrecords_etl::graph::{ClientSettings, GraphClient, Secret};
    let url = url::Url::parse(&emulator.base_url()).unwrap();
    let config = emulator.config();
    GraphClient::new(ClientSettings::new(
        url.clone(),
        url,
        config.tenant_id.clone(),
        config.client_id.clone(),
        Secret::new(config.client_secret.clone()),
    ))
    .unwrap()
}

/// The path of Graph's callRecords list.
pub const LIST: &str = "/v1.0/communications/callRecords";

/// The callRecords list URL of the mock Graph `server`.
pub fn list_url(server: &wiremock::MockServer) -> url::Url {
    format!("{}{LIST}", server.uri()).parse().unwrap()
}

/// Mounts on the mock Graph `server` a token endpoint (any tenant) that hands out `token`.
pub async fn mount_token_endpoint(server: &wiremock::MockServer, token: &str) {
    use wiremock::matchers::{method, path_regex};
    wiremock::Mock::given(method("POST"))
        .and(path_regex("/oauth2/v2.0/token$"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(
            json!({"token_type": "Bearer", "expires_in": 3599, "access_token": token}),
        ))
        .mount(server)
        .await;
}
