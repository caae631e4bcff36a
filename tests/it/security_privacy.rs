//! Privacy modes:
//! - every column holding personal data declares its class in `schemas/*.json`, by rule;
//! - an export with `mode = "hash"` (the built binary against the emulator) writes no phone
//!   number, UPN, e-mail, display name, IP/MAC address or feedback text of the input, in no
//!   column and not inside JSON, while the same person gets the same hash in every table;
//! - `drop` writes null and per-class overrides win, identity JSON keeps its structure;
//! - hash mode without its key is a configuration error naming `salt_env`.

use crate::support;

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use aws_lc_rs::hmac;
use callrecords_emulator::{self as emulator, EmulatorConfig, Tenant};
use callrecords_etl::flatten::TableBuilder;
use callrecords_etl::flatten::call_records::{CallRecordTables, flatten};
use callrecords_etl::graph::Secret;
use callrecords_etl::privacy::{HashKey, Mode, PiiClass, Privacy};
use callrecords_etl::schema::{self, ColumnSchema, Convert};
use serde_json::{Map, Value};

const KEY: &str = "test-hash-key-0123456789abcdef";
const CALLS_PER_DAY: u32 = 20;
/// A day inside Graph's 30-day retention of call records.
fn day(offset: u64) -> String {
    support::days_ago(5 - offset)
}

/// Lowercase hex HMAC-SHA-256, computed here without the crate's own wrapper.
fn hmac_hex(value: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, KEY.as_bytes());
    hmac::sign(&key, value.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The class a column must declare, by what it holds: the rule the schemas follow.
fn expected_class(column: &ColumnSchema) -> Option<&'static str> {
    let last = column.path.rsplit('.').next().unwrap_or_default();
    let source = column.source.as_deref().unwrap_or_default();
    let is_identity = source.ends_with("participantBase.identity")
        || source.ends_with("participantEndpoint.associatedIdentity");
    match (column.convert, last.to_ascii_lowercase().as_str()) {
        (Convert::IdentityId, _) => Some("identity_id"),
        (Convert::IdentityDisplayName, _) => Some("display_name"),
        (Convert::IdentityUserPrincipalName, _) => Some("user_principal_name"),
        (Convert::Json, _) if is_identity => Some("identity_json"),
        (Convert::Plain, "id") if is_identity || source == "participant.id" => Some("identity_id"),
        (Convert::Plain, "displayname" | "capturedevicename" | "renderdevicename") => {
            Some("display_name")
        }
        (Convert::Plain, "name") if source == "participantEndpoint.name" => Some("display_name"),
        (Convert::Plain, "userprincipalname" | "email" | "mail") => Some("user_principal_name"),
        (Convert::Plain, "userdisplayname") => Some("display_name"),
        (
            Convert::Plain,
            "callernumber"
            | "calleenumber"
            | "sourcenumber"
            | "destinationnumber"
            | "usertelephonenumber",
        ) => Some("phone_number"),
        (
            Convert::Plain,
            "clientlocalipv4address"
            | "clientlocalipv6address"
            | "clientpublicipv4address"
            | "clientpublicipv6address",
        ) => Some("ip_address"),
        (
            Convert::Plain,
            "ipaddress"
            | "reflexiveipaddress"
            | "relayipaddress"
            | "macaddress"
            | "subnet"
            | "basicservicesetidentifier",
        ) => Some("ip_address"),
        (Convert::Plain, "text") if source == "userFeedback.text" => Some("feedback_text"),
        _ => None,
    }
}

#[test]
fn every_personal_data_column_declares_its_class() {
    let mut wrong = Vec::new();
    for table in schema::tables() {
        for column in &table.columns {
            if column.pii.as_deref() != expected_class(column) {
                wrong.push(format!(
                    "{}.{}: declared {:?}, expected {:?}",
                    table.table,
                    column.name,
                    column.pii,
                    expected_class(column)
                ));
            }
        }
        // Every declared class is known to the flattener (it panics otherwise).
        TableBuilder::with_privacy(table, &hashing(|_| Mode::Hash));
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

fn hashing(mode_of: impl Fn(PiiClass) -> Mode) -> Privacy {
    Privacy::new(mode_of, Some(HashKey::new(&Secret::new(KEY.into())))).unwrap()
}

/// The personal values of Graph JSON, by the property that holds them.
#[derive(Default)]
struct Personal {
    phone_numbers: BTreeSet<String>,
    user_principal_names: BTreeSet<String>,
    display_names: BTreeSet<String>,
    addresses: BTreeSet<String>,
    feedback: BTreeSet<String>,
    /// Entra object ids of users: not personal data by class, kept as join keys.
    user_ids: BTreeSet<String>,
}

impl Personal {
    fn collect(&mut self, value: &Value, key: &str, parent: &str) {
        match value {
            Value::Object(object) => {
                for (child_key, child) in object {
                    self.collect(child, child_key, key);
                }
            }
            Value::Array(items) => items
                .iter()
                .for_each(|item| self.collect(item, key, parent)),
            Value::String(text) => {
                let set = match key {
                    "id" if text.starts_with('+') => &mut self.phone_numbers,
                    "id" if parent == "user" => &mut self.user_ids,
                    "callerNumber"
                    | "calleeNumber"
                    | "sourceNumber"
                    | "destinationNumber"
                    | "userTelephoneNumber"
                        if text.starts_with('+') =>
                    {
                        &mut self.phone_numbers
                    }
                    "userPrincipalName" | "email" | "mail" => &mut self.user_principal_names,
                    "displayName" | "userDisplayName" | "name" | "captureDeviceName"
                    | "renderDeviceName" => &mut self.display_names,
                    "clientLocalIpV4Address"
                    | "clientLocalIpV6Address"
                    | "clientPublicIpV4Address"
                    | "clientPublicIpV6Address" => &mut self.addresses,
                    "ipAddress"
                    | "reflexiveIPAddress"
                    | "relayIPAddress"
                    | "subnet"
                    | "macAddress"
                    | "basicServiceSetIdentifier" => &mut self.addresses,
                    "text" if parent == "feedback" => &mut self.feedback,
                    _ => return,
                };
                set.insert(text.clone());
            }
            _ => {}
        }
    }

    fn all(&self) -> HashSet<&str> {
        [
            &self.phone_numbers,
            &self.user_principal_names,
            &self.display_names,
            &self.addresses,
            &self.feedback,
        ]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect()
    }
}

/// Every string in a cell: the cell itself, list elements, and the string leaves of JSON.
fn strings_of(cell: &Value, into: &mut Vec<String>) {
    match cell {
        Value::String(text) => {
            if (text.starts_with('{') || text.starts_with('['))
                && let Ok(json) = serde_json::from_str::<Value>(text)
            {
                strings_of(&json, into);
            }
            into.push(text.clone());
        }
        Value::Array(items) => items.iter().for_each(|item| strings_of(item, into)),
        Value::Object(object) => object.values().for_each(|item| strings_of(item, into)),
        _ => {}
    }
}

/// The values of `column` in `rows` (non-null).
fn column_values(rows: &[Map<String, Value>], column: &str) -> HashSet<String> {
    rows.iter()
        .filter_map(|row| row[column].as_str().map(str::to_owned))
        .collect()
}

fn tenant_records() -> Vec<Value> {
    let tenant = Tenant::new(EmulatorConfig::default().seed, CALLS_PER_DAY);
    let from = callrecords_etl::window::parse_bound(&day(0)).unwrap();
    tenant
        .list(from, from + chrono::Duration::days(1))
        .iter()
        .map(|item| tenant.record(item["id"].as_str().unwrap()).unwrap())
        .collect()
}

/// Every log row of the exported day, as the beta API serves them.
fn log_rows() -> Vec<Value> {
    let config = EmulatorConfig {
        calls_per_day: CALLS_PER_DAY,
        ..EmulatorConfig::default()
    };
    let logs = emulator::LogTenant::for_config(&config);
    let from = callrecords_etl::window::parse_bound(&day(0)).unwrap();
    emulator::LogFunction::ALL
        .into_iter()
        .flat_map(|function| {
            logs.rows(
                function,
                emulator::ApiVersion::Beta,
                from,
                from + chrono::Duration::days(1),
            )
        })
        .collect()
}

fn run_export(config: &Path, out: &Path, env: &[(&str, &str)]) -> std::process::Output {
    support::binary()
        .envs(env.iter().copied())
        .env("CALLRECORDS_CLIENT_SECRET", emulator::DEFAULT_CLIENT_SECRET)
        .args(["export", "-q", "--config", config.to_str().unwrap()])
        .args([
            "--from",
            &day(0),
            "--to",
            &day(1),
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap()
}

fn write_config(dir: &Path, graph_url: &str, privacy: &str) -> std::path::PathBuf {
    let path = dir.join("etl.toml");
    std::fs::write(
        &path,
        format!(
            "[graph]\ntenant_id = \"{}\"\nclient_id = \"{}\"\ngraph_url = \"{graph_url}\"\nlogin_url = \"{graph_url}\"\napi_version = \"beta\"\n\n[privacy]\n{privacy}\n",
            emulator::DEFAULT_TENANT_ID,
            emulator::DEFAULT_CLIENT_ID,
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hashed_export_holds_no_personal_value_and_the_same_hash_everywhere() {
    let config = EmulatorConfig {
        calls_per_day: CALLS_PER_DAY,
        ..EmulatorConfig::default()
    };
    let emulator = support::start_emulator(config).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &emulator.base_url(),
        "mode = \"hash\"\nsalt_env = \"ETL_HASH_KEY\"",
    );
    let out = dir.path().join("lake");
    let output = {
        let (config, out) = (config.clone(), out.clone());
        tokio::task::spawn_blocking(move || run_export(&config, &out, &[("ETL_HASH_KEY", KEY)]))
            .await
            .unwrap()
    };
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let records = tenant_records();
    let mut personal = Personal::default();
    for record in &records {
        personal.collect(record, "", "");
    }
    let mut log_personal = Personal::default();
    for row in &log_rows() {
        log_personal.collect(row, "", "");
    }
    assert!(log_personal.phone_numbers.len() > 10 && log_personal.user_principal_names.len() > 10);
    for (name, set, at_least) in [
        ("phone numbers", &personal.phone_numbers, 1),
        ("UPNs", &personal.user_principal_names, 20),
        ("display names", &personal.display_names, 20),
        ("addresses", &personal.addresses, 20),
    ] {
        assert!(set.len() >= at_least, "the input has {name}: {set:?}");
    }

    // Nothing personal in any cell, list element or JSON leaf of any table.
    let mut forbidden = personal.all();
    forbidden.extend(log_personal.all());
    for table in schema::tables() {
        let rows = support::read_table(&out, &table.table);
        assert!(!rows.is_empty(), "{} has rows", table.table);
        for row in &rows {
            for (column, cell) in row {
                let mut strings = Vec::new();
                strings_of(cell, &mut strings);
                for text in strings {
                    assert!(
                        !forbidden.contains(text.as_str()),
                        "{}.{column} holds the input's {text:?}",
                        table.table
                    );
                }
            }
        }
    }
    // Nor in the manifest or anywhere else in the files' plain bytes (footers, statistics).
    let manifests = std::fs::read_dir(out.join("_manifests")).unwrap();
    for manifest in manifests {
        let text = std::fs::read_to_string(manifest.unwrap().path()).unwrap();
        assert!(forbidden.iter().all(|value| !text.contains(value)));
    }

    // The same person has the same hash in every table and column.
    let participants = support::read_table(&out, "call_participants");
    let sessions = support::read_table(&out, "call_sessions");
    let mut session_upns =
        column_values(&sessions, "caller_associated_identity_user_principal_name");
    session_upns.extend(column_values(
        &sessions,
        "callee_associated_identity_user_principal_name",
    ));
    let participant_upns = column_values(&participants, "identity_user_principal_name");
    let mut shared = 0;
    for upn in &personal.user_principal_names {
        let hash = hmac_hex(upn);
        if participant_upns.contains(&hash) && session_upns.contains(&hash) {
            shared += 1;
        }
    }
    assert!(
        shared >= 10,
        "people in both tables under one hash: {shared}"
    );
    let participant_ids = column_values(&participants, "participant_id");
    let identity_ids = column_values(&participants, "identity_id");
    for phone in &personal.phone_numbers {
        let hash = hmac_hex(phone);
        assert!(
            participant_ids.contains(&hash) && identity_ids.contains(&hash),
            "{phone}"
        );
    }
    // Entra object ids are not personal data by class: kept, so they still join to Entra.
    assert!(personal.user_ids.iter().all(|id| identity_ids.contains(id)));
    // Identity JSON keeps its structure; its personal members are hashed in place.
    let user = participants
        .iter()
        .find(|row| row["identity_kind"] == "user")
        .unwrap();
    let json: Value = serde_json::from_str(user["identity_json"].as_str().unwrap()).unwrap();
    assert_eq!(
        json["user"]["displayName"].as_str().unwrap().len(),
        64,
        "{json}"
    );
    assert!(json["user"]["id"].as_str().unwrap().contains('-'), "{json}");
    assert_eq!(user["identity_display_name"], json["user"]["displayName"]);
}

#[test]
fn drop_writes_null_and_class_overrides_win() {
    let privacy = hashing(|class| match class {
        PiiClass::PhoneNumber => Mode::Hash,
        _ => Mode::Drop,
    });
    let mut tables = CallRecordTables::new(&privacy);
    let mut issues = Vec::new();
    let records = tenant_records();
    for record in &records {
        flatten(record, &mut tables, &mut issues).unwrap();
    }
    assert!(issues.is_empty(), "{issues:?}");
    let mut personal = Personal::default();
    records.iter().for_each(|r| personal.collect(r, "", ""));

    let mut out = std::collections::BTreeMap::new();
    for builder in tables.builders_mut() {
        out.insert(
            builder.schema().table.clone(),
            support::rows(&builder.finish()),
        );
    }
    for table in schema::tables_of_stream("call_records") {
        for column in table.columns.iter().filter(|c| {
            matches!(
                c.pii.as_deref(),
                Some("display_name" | "user_principal_name" | "ip_address" | "feedback_text")
            )
        }) {
            assert!(
                out[&table.table]
                    .iter()
                    .all(|row| row[&column.name].is_null()),
                "{}.{} is dropped",
                table.table,
                column.name
            );
        }
    }
    let participants = &out["call_participants"];
    let phone = participants
        .iter()
        .find(|row| row["identity_kind"] == "phone")
        .unwrap();
    let number = personal
        .phone_numbers
        .iter()
        .find(|p| hmac_hex(p) == phone["participant_id"])
        .expect("the phone number is hashed");
    assert_eq!(phone["identity_id"], hmac_hex(number));
    let json: Value = serde_json::from_str(phone["identity_json"].as_str().unwrap()).unwrap();
    assert_eq!(json["phone"]["id"], hmac_hex(number));
    let user = participants
        .iter()
        .find(|row| row["identity_kind"] == "user")
        .unwrap();
    let json: Value = serde_json::from_str(user["identity_json"].as_str().unwrap()).unwrap();
    let member = json["user"].as_object().unwrap();
    assert!(member["displayName"].is_null() && member["userPrincipalName"].is_null());
    assert!(
        member.contains_key("tenantId") && json.get("phone").is_some(),
        "{json}"
    );
    assert!(
        personal
            .user_ids
            .contains(user["identity_id"].as_str().unwrap())
    );
}

#[test]
fn hash_mode_without_its_key_is_a_usage_error_naming_salt_env() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "http://127.0.0.1:9", "mode = \"hash\"");
    let output = run_export(&config, &dir.path().join("lake"), &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("[privacy] salt_env"), "{stderr}");

    let config = write_config(
        dir.path(),
        "http://127.0.0.1:9",
        "mode = \"hash\"\nsalt_env = \"ETL_HASH_KEY\"",
    );
    let output = run_export(&config, &dir.path().join("lake"), &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ETL_HASH_KEY is not set"), "{stderr}");
}

/// Runs `export` on a blocking thread (the emulator keeps serving on the test's runtime).
async fn export_blocking(config: PathBuf, out: PathBuf) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        run_export(&config, &out, &[("ETL_HASH_KEY", &"k".repeat(32))])
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case3_a_privacy_change_reaches_the_rows_a_rescan_would_reuse() {
    let config = EmulatorConfig {
        calls_per_day: CALLS_PER_DAY,
        ..EmulatorConfig::default()
    };
    let emulator = support::start_emulator(config).await;
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let names = |lake: &Path| {
        let rows = support::read_table(lake, "call_records");
        let named = rows
            .iter()
            .filter(|row| !row["organizer_display_name"].is_null())
            .count();
        (rows.len(), named)
    };
    let keep = write_config(dir.path(), &emulator.base_url(), "mode = \"keep\"");
    let output = export_blocking(keep, lake.clone()).await;
    assert!(output.status.success(), "{}", support::stderr(&output));
    let (rows, named) = names(&lake);
    assert!(
        rows > 0 && named > rows / 2,
        "{named} of {rows} rows name their organizer"
    );

    // The same window again under other settings: nothing may be reused as it was.
    for (privacy, expect_named) in [
        ("mode = \"drop\"", false),
        ("mode = \"hash\"\nsalt_env = \"ETL_HASH_KEY\"", true),
    ] {
        let config = write_config(dir.path(), &emulator.base_url(), privacy);
        let output = export_blocking(config, lake.clone()).await;
        assert!(output.status.success(), "{}", support::stderr(&output));
        let manifest = support::last_manifest(&lake);
        assert_eq!(manifest["records_reused"], 0, "{privacy}: {manifest}");
        let (after, named) = names(&lake);
        assert_eq!(after, rows);
        assert_eq!(
            named > 0,
            expect_named,
            "{privacy}: {named} rows name their organizer"
        );
        if expect_named {
            for row in support::read_table(&lake, "call_records") {
                if let Some(name) = row["organizer_display_name"].as_str() {
                    assert_eq!(name.len(), 64, "hashed: {name}");
                }
            }
        }
    }
    // Unchanged settings: everything is reused again.
    let config = write_config(
        dir.path(),
        &emulator.base_url(),
        "mode = \"hash\"\nsalt_env = \"ETL_HASH_KEY\"",
    );
    let output = export_blocking(config, lake.clone()).await;
    assert!(output.status.success(), "{}", support::stderr(&output));
    assert_eq!(
        support::last_manifest(&lake)["records_reused"].as_u64(),
        Some(rows as u64)
    );
}
