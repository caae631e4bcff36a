//! End-to-end tests of the emulator's PSTN log functions: real HTTP (reqwest) against
//! `emulator::start` on 127.0.0.1:0, compared with `LogTenant` directly, with the type
//! model and Microsoft's sample payloads in tests/fixtures as the reference for the rows'
//! shape.

use std::collections::{BTreeSet, HashSet};

use callrecords_emulator::{
    self as emulator, ApiVersion, EmulatorConfig, LogFunction, LogTenant, RunningEmulator, Tenant,
};
use chrono::{DateTime, TimeDelta, Utc};
use reqwest::{Client, StatusCode};
use serde_json::Value;

use crate::support::{self, at};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
const SENTINEL: &str = "0001-01-01T00:00:00Z";

fn fixture(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/{path}")).unwrap()).unwrap()
}

/// A running emulator, a client (one per test: building one is costly) and a valid token.
struct Session {
    emulator: RunningEmulator,
    client: Client,
    token: String,
}

impl Session {
    async fn start(config: EmulatorConfig) -> Self {
        let emulator = support::start_emulator(config).await;
        let client = Client::new();
        let token = support::emulator_token(&emulator).await;
        Self {
            emulator,
            client,
            token,
        }
    }

    /// `…/{version}/communications/callRecords/{name}(fromDateTime={from},toDateTime={to})`.
    fn function_url(&self, version: &str, name: &str, from: &str, to: &str) -> String {
        format!(
            "{}/{version}/communications/callRecords/{name}(fromDateTime={from},toDateTime={to})",
            self.emulator.base_url()
        )
    }

    async fn get(&self, url: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    async fn get_ok(&self, url: &str) -> Value {
        let (status, body) = self.get(url).await;
        assert_eq!(status, StatusCode::OK, "{url}: {body}");
        body
    }

    /// Every page from `url` on, following nextLinks verbatim.
    async fn pages(&self, url: &str) -> Vec<Value> {
        let mut pages = vec![self.get_ok(url).await];
        while let Some(next) = pages.last().unwrap()["@odata.nextLink"].as_str() {
            let next = next.to_owned();
            pages.push(self.get_ok(&next).await);
        }
        pages
    }

    /// All rows of a function call, across its pages.
    async fn rows(&self, url: &str) -> Vec<Value> {
        self.pages(url)
            .await
            .iter()
            .flat_map(|page| page["value"].as_array().unwrap().clone())
            .collect()
    }
}

async fn start_default() -> Session {
    Session::start(EmulatorConfig::default()).await
}

fn time_of(row: &Value, function: LogFunction) -> DateTime<Utc> {
    at(row[function.time_property().unwrap()].as_str().unwrap())
}

fn times(rows: &[Value], function: LogFunction) -> BTreeSet<String> {
    rows.iter()
        .map(|row| {
            row[function.time_property().unwrap()]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

fn keys(rows: &[Value]) -> BTreeSet<String> {
    rows.iter()
        .flat_map(|row| row.as_object().unwrap().keys().cloned())
        .collect()
}

/// The declared properties of a type of the model (following `base`).
fn model_properties(model: &Value, section: &str, type_name: &str) -> BTreeSet<String> {
    let declared = &model[section][type_name];
    let mut properties: BTreeSet<String> = declared["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("model has {section}.{type_name}"))
        .keys()
        .cloned()
        .collect();
    if let Some(base) = declared["base"].as_str() {
        properties.extend(model_properties(model, section, base));
    }
    properties
}

#[tokio::test]
async fn pages_hold_1000_rows_counted_per_page_with_skip_links() {
    let session = start_default().await;
    let base = session.emulator.base_url();
    let url = session.function_url("v1.0", "getPstnCalls", "2026-11-20", "2026-11-27");
    let pages = session.pages(&url).await;
    // 7 days of 300 rows, plus the row at exactly toDateTime (inclusive).
    let counts: Vec<u64> = pages
        .iter()
        .map(|page| page["@odata.count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, vec![1000, 1000, 101]);
    for (number, page) in pages.iter().enumerate() {
        assert_eq!(
            page["value"].as_array().unwrap().len() as u64,
            counts[number]
        );
        assert_eq!(
            page["@odata.context"],
            format!("{base}/v1.0/$metadata#Collection(microsoft.graph.callRecords.pstnCallLogRow)")
        );
    }
    assert_eq!(
        pages[0]["@odata.nextLink"],
        format!("{url}?$skip=1000"),
        "the same function URL with $skip"
    );
    assert_eq!(pages[1]["@odata.nextLink"], format!("{url}?$skip=2000"));
    assert!(pages[2].get("@odata.nextLink").is_none());

    let rows: Vec<Value> = pages
        .iter()
        .flat_map(|page| page["value"].as_array().unwrap().clone())
        .collect();
    let ids: HashSet<&str> = rows.iter().map(|row| row["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), rows.len(), "each row once");
    let starts: Vec<DateTime<Utc>> = rows
        .iter()
        .map(|row| time_of(row, LogFunction::PstnCalls))
        .collect();
    assert!(
        starts.windows(2).all(|pair| pair[0] <= pair[1]),
        "in time order"
    );

    // A $skip past the end is an empty last page.
    let beyond = session.get_ok(&format!("{url}?$skip=5000")).await;
    assert_eq!(beyond["@odata.count"], 0);
    assert!(beyond.get("@odata.nextLink").is_none());
    assert_eq!(
        session.get(&format!("{url}?$skip=-1")).await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn log_tenant_rows_are_the_served_rows_within_the_half_open_window() {
    let session = start_default().await;
    let logs = LogTenant::new(42, emulator::DEFAULT_LOG_ROWS_PER_DAY);
    let (from, to) = (at("2026-11-20T06:00:00Z"), at("2026-11-21T00:00:00Z"));
    for (version, segment) in [(ApiVersion::V1, "v1.0"), (ApiVersion::Beta, "beta")] {
        for function in LogFunction::ALL {
            if !function.is_available_in(version) || function.time_property().is_none() {
                continue;
            }
            let url = session.function_url(
                segment,
                function.name(),
                "2026-11-20T06:00:00Z",
                "2026-11-21T00:00:00Z",
            );
            let served = session.rows(&url).await;
            let within: Vec<Value> = served
                .iter()
                .filter(|row| time_of(row, function) < to)
                .cloned()
                .collect();
            let expected = logs.rows(function, version, from, to);
            assert!(!expected.is_empty(), "{}", function.name());
            assert_eq!(within, expected, "{segment} {}", function.name());
            assert!(
                served.len() - within.len() <= 1,
                "at most the midnight row lies beyond [from, to)"
            );
        }
    }
}

#[tokio::test]
async fn to_date_time_is_inclusive_for_pstn_sms_and_blocked_users_but_not_direct_routing() {
    let session = start_default().await;
    // Colons percent-encoded, as some clients send them.
    let (from, to) = ("2026-11-20T00%3A00%3A00Z", "2026-11-21T00%3A00%3A00Z");
    let pstn = session
        .rows(&session.function_url("v1.0", "getPstnCalls", from, to))
        .await;
    let direct = session
        .rows(&session.function_url("v1.0", "getDirectRoutingCalls", from, to))
        .await;
    let sms = session
        .rows(&session.function_url("beta", "getSmsLog", from, to))
        .await;
    let blocked = session
        .rows(&session.function_url("beta", "getPstnBlockedUsersLog", from, to))
        .await;
    for (rows, function, includes_to) in [
        (&pstn, LogFunction::PstnCalls, true),
        (&direct, LogFunction::DirectRoutingCalls, false),
        (&sms, LogFunction::SmsLog, true),
        (&blocked, LogFunction::PstnBlockedUsersLog, true),
    ] {
        let times = times(rows, function);
        assert!(
            times.contains("2026-11-20T00:00:00Z"),
            "{}: fromDateTime is inclusive",
            function.name()
        );
        assert!(times.contains("2026-11-20T23:59:59.9999999Z"));
        assert_eq!(
            times.contains("2026-11-21T00:00:00Z"),
            includes_to,
            "{}: the row at exactly toDateTime",
            function.name()
        );
        assert!(
            times
                .iter()
                .all(|time| at(time) >= at("2026-11-20T00:00:00Z")
                    && at(time) <= at("2026-11-21T00:00:00Z"))
        );
    }
    // The last tick of the day is the end of a range: kept by PSTN, left out by DR.
    let last_tick = "2026-11-20T23:59:59.9999999Z";
    let pstn = session
        .rows(&session.function_url("v1.0", "getPstnCalls", "2026-11-20", last_tick))
        .await;
    let direct = session
        .rows(&session.function_url("beta", "getDirectRoutingCalls", "2026-11-20", last_tick))
        .await;
    assert!(times(&pstn, LogFunction::PstnCalls).contains(last_tick));
    assert!(!times(&direct, LogFunction::DirectRoutingCalls).contains(last_tick));
}

#[tokio::test]
async fn ranges_over_90_days_reversed_ranges_and_beta_functions_on_v1_are_400() {
    let session = Session::start(EmulatorConfig {
        log_rows_per_day: 3,
        calls_per_day: 10,
        ..EmulatorConfig::default()
    })
    .await;
    let (status, body) = session
        .get(&session.function_url("v1.0", "getPstnCalls", "2026-01-01", "2026-04-02"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "BadRequest");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("may not exceed 90 days"),
        "{body}"
    );
    // Exactly 90 days is fine.
    let rows = session
        .rows(&session.function_url("v1.0", "getDirectRoutingCalls", "2026-01-01", "2026-04-01"))
        .await;
    assert_eq!(rows.len(), 90 * 3, "90 days, toDateTime exclusive");

    let (status, _) = session
        .get(&session.function_url("v1.0", "getPstnCalls", "2026-11-02", "2026-11-01"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    for name in [
        "getSmsLog",
        "getPstnBlockedUsersLog",
        "getPstnOnlineMeetingDialoutReport",
    ] {
        let (status, body) = session
            .get(&session.function_url("v1.0", name, "2026-11-01", "2026-11-02"))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}");
        assert_eq!(
            body["error"]["message"],
            format!("Resource not found for the segment '{name}'.")
        );
        session
            .get_ok(&session.function_url("beta", name, "2026-11-01", "2026-11-02"))
            .await;
    }
    let (status, _) = session
        .get(&format!(
            "{}/v1.0/communications/callRecords/getPstnCalls(from=2026-11-01,to=2026-11-02)",
            session.emulator.base_url()
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the docs' typo is no API");
}

#[tokio::test]
async fn direct_routing_ignores_filter_the_others_refuse_it() {
    let session = start_default().await;
    let filter = "?$filter=startDateTime%20ge%202026-11-20T12:00:00Z";
    let url = session.function_url("v1.0", "getDirectRoutingCalls", "2026-11-20", "2026-11-21");
    let unfiltered = session.get_ok(&url).await;
    let filtered = session.get_ok(&format!("{url}{filter}")).await;
    assert_eq!(filtered["value"], unfiltered["value"]);
    assert_eq!(filtered["@odata.count"], 300);

    for (version, name) in [("v1.0", "getPstnCalls"), ("beta", "getSmsLog")] {
        let url = session.function_url(version, name, "2026-11-20", "2026-11-21");
        let (status, body) = session.get(&format!("{url}{filter}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}");
        assert_eq!(body["error"]["code"], "BadRequest");
    }
}

#[tokio::test]
async fn rows_have_every_model_property_and_beta_ones_only_on_beta() {
    let session = start_default().await;
    let model = fixture("callrecords-model.json");
    for (function, v1_type) in [
        (LogFunction::PstnCalls, "pstnCallLogRow"),
        (LogFunction::DirectRoutingCalls, "directRoutingLogRow"),
    ] {
        let v1 = session
            .rows(&session.function_url("v1.0", function.name(), "2026-11-20", "2026-11-21"))
            .await;
        let beta = session
            .rows(&session.function_url("beta", function.name(), "2026-11-20", "2026-11-21"))
            .await;
        let v1_properties = model_properties(&model, "types", v1_type);
        let mut beta_properties = model_properties(&model, "beta_types", v1_type);
        beta_properties.extend(v1_properties.iter().cloned());
        assert_eq!(keys(&v1), v1_properties, "v1.0 {v1_type}");
        assert_eq!(keys(&beta), beta_properties, "beta {v1_type}");
        for row in &v1 {
            assert_eq!(row.as_object().unwrap().len(), v1_properties.len());
        }
        // Same rows apart from the beta-only properties.
        for (v1_row, beta_row) in v1.iter().zip(&beta) {
            let mut trimmed = beta_row.clone();
            trimmed
                .as_object_mut()
                .unwrap()
                .retain(|key, _| v1_properties.contains(key));
            assert_eq!(&trimmed, v1_row);
        }
    }
    for (function, beta_type) in [
        (LogFunction::SmsLog, "smsLogRow"),
        (LogFunction::PstnBlockedUsersLog, "pstnBlockedUsersLogRow"),
        (
            LogFunction::PstnOnlineMeetingDialoutReport,
            "pstnOnlineMeetingDialoutReport",
        ),
    ] {
        let rows = session
            .rows(&session.function_url("beta", function.name(), "2026-11-20", "2026-11-23"))
            .await;
        assert!(!rows.is_empty());
        assert_eq!(
            keys(&rows),
            model_properties(&model, "beta_types", beta_type),
            "{beta_type}"
        );
    }
}

#[tokio::test]
async fn rows_look_like_microsofts_samples() {
    let session = start_default().await;
    for sample in [
        "v1.0-getpstncalls.json",
        "beta-getpstncalls.json",
        "v1.0-getdirectroutingcalls.json",
        "beta-getdirectroutingcalls.json",
        "beta-getsmslog.json",
        "beta-getpstnblockeduserslog.json",
        "beta-getpstnonlinemeetingdialoutreport.json",
    ] {
        let sample = fixture(&format!("graph-samples/{sample}"));
        let (version, _) = sample["@odata.context"]
            .as_str()
            .unwrap()
            .trim_start_matches("https://graph.microsoft.com/")
            .split_once('/')
            .unwrap();
        let name = sample["@odata.nextLink"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .split('(')
            .next()
            .unwrap();
        let url = session.function_url(version, name, "2026-11-20", "2026-11-21");
        let page = session.get_ok(&url).await;
        assert_eq!(
            page["@odata.context"].as_str().unwrap().rsplit('#').next(),
            sample["@odata.context"]
                .as_str()
                .unwrap()
                .rsplit('#')
                .next()
        );
        let served = keys(page["value"].as_array().unwrap());
        for row in sample["value"].as_array().unwrap() {
            for (key, value) in row.as_object().unwrap() {
                assert!(served.contains(key), "{name} lacks {key}");
                // Same JSON kinds as the sample wherever the sample has a value.
                let kinds: HashSet<&str> = page["value"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|served| json_kind(&served[key]))
                    .collect();
                if !value.is_null() {
                    assert!(kinds.contains(json_kind(value)), "{name}.{key}: {kinds:?}");
                }
            }
        }
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(number) if number.is_f64() => "decimal",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[tokio::test]
async fn direct_routing_outcomes_sentinel_and_call_record_links() {
    let session = start_default().await;
    let rows = session
        .rows(&session.function_url("v1.0", "getDirectRoutingCalls", "2026-11-20", "2026-11-23"))
        .await;
    let tenant = Tenant::new(42, emulator::DEFAULT_CALLS_PER_DAY);
    let (mut failed, mut linked) = (BTreeSet::new(), 0);
    for row in &rows {
        let start = at(row["startDateTime"].as_str().unwrap());
        let end = at(row["endDateTime"].as_str().unwrap());
        assert!(at(row["inviteDateTime"].as_str().unwrap()) <= start);
        if row["successfulCall"] == true {
            assert_eq!(row["failureDateTime"], SENTINEL);
            assert!(row["finalSipCode"] == 0 || row["finalSipCode"] == 200);
            assert_eq!(row["finalSipCodePhrase"], "BYE");
            assert_eq!(
                row["duration"].as_i64().unwrap(),
                (end - start).num_seconds()
            );
        } else {
            assert_ne!(row["failureDateTime"], SENTINEL);
            assert!(at(row["failureDateTime"].as_str().unwrap()) >= start);
            assert_eq!(row["duration"], 0);
            assert!(row["callEndSubReason"].as_i64().unwrap() > 0);
            failed.insert(row["finalSipCode"].as_u64().unwrap());
        }
        if let Some(record) = tenant.record(row["correlationId"].as_str().unwrap()) {
            linked += 1;
            assert_eq!(row["successfulCall"], true);
            assert_eq!(record["startDateTime"], row["startDateTime"]);
        }
    }
    assert_eq!(
        failed,
        BTreeSet::from([404, 408, 480, 486, 487, 500, 503]),
        "every failure code appears in three days"
    );
    assert!(
        linked > 5,
        "some rows are the tenant's DR call records: {linked}"
    );
    let call_types: BTreeSet<&str> = rows
        .iter()
        .map(|row| row["callType"].as_str().unwrap())
        .collect();
    for call_type in ["ByotIn", "ByotOut", "dr_in", "dr_out", "dr_in_ucap"] {
        assert!(call_types.contains(call_type), "{call_type}");
    }
    let trunks: BTreeSet<&str> = rows
        .iter()
        .map(|row| row["trunkFullyQualifiedDomainName"].as_str().unwrap())
        .collect();
    assert!(trunks.contains("sbc1.contoso.com") && trunks.len() > 2);
}

#[tokio::test]
async fn pstn_charges_are_decimal_numbers_in_several_currencies() {
    let session = start_default().await;
    let url = session.function_url("beta", "getPstnCalls", "2026-11-20", "2026-11-23");
    let rows = session.rows(&url).await;
    let mut currencies = BTreeSet::new();
    let mut decimals = BTreeSet::new();
    let mut call_types = BTreeSet::new();
    let (mut masked, mut not_e164) = (0, 0);
    for row in &rows {
        let call_type = row["callType"].as_str().unwrap();
        call_types.insert(call_type.to_owned());
        currencies.insert(row["currency"].as_str().unwrap().to_owned());
        let charge = &row["charge"];
        assert!(charge.is_f64(), "{charge} is a JSON decimal");
        assert!(row["connectionCharge"].is_f64());
        if call_type.ends_with("_in") {
            assert_eq!(charge.as_f64(), Some(0.0), "inbound calls are free");
            assert!(row["destinationContext"].is_null());
        } else {
            let text = charge.to_string();
            decimals.insert(text.split_once('.').unwrap().1.len());
            assert!(charge.as_f64().unwrap() > 0.0);
            let context = row["destinationContext"].as_str().unwrap();
            assert!(context == "Domestic" || context == "International");
        }
        let start = at(row["startDateTime"].as_str().unwrap());
        let end = at(row["endDateTime"].as_str().unwrap());
        assert_eq!(
            TimeDelta::seconds(row["duration"].as_i64().unwrap()),
            end - start
        );
        if call_type.starts_with("ucap") {
            assert!(row["userId"].is_null() && row["userPrincipalName"].is_null());
        } else {
            assert!(row["userId"].is_string());
        }
        assert_eq!(
            call_type.starts_with("conf"),
            row["conferenceId"].is_string()
        );
        for number in [&row["callerNumber"], &row["calleeNumber"]] {
            let number = number.as_str().unwrap();
            masked += usize::from(number.ends_with("****"));
            not_e164 += usize::from(!number.starts_with('+'));
        }
    }
    assert_eq!(
        currencies,
        BTreeSet::from(["AUD", "EUR", "GBP", "JPY", "USD"].map(str::to_owned))
    );
    assert_eq!(decimals, BTreeSet::from([2, 3, 4]));
    for call_type in [
        "user_in",
        "user_out",
        "user_out_transfer",
        "user_out_forwarding",
        "conf_in",
        "conf_out",
        "ucap_in",
        "ucap_out",
    ] {
        assert!(call_types.contains(call_type), "{call_type}");
    }
    assert!(masked > 0 && not_e164 > 0);
    let sources: BTreeSet<&str> = rows
        .iter()
        .map(|row| row["callDurationSource"].as_str().unwrap())
        .collect();
    assert_eq!(sources, BTreeSet::from(["microsoft", "operator"]));
    let seven_digits = rows
        .iter()
        .filter(|row| row["startDateTime"].as_str().unwrap().len() == 28)
        .count();
    assert!(seven_digits > rows.len() / 2, "mostly 7 fractional digits");
}

#[tokio::test]
async fn beta_logs_blocked_modes_and_the_dialout_report_adds_up() {
    let session = start_default().await;
    let blocked = session
        .rows(&session.function_url("beta", "getPstnBlockedUsersLog", "2026-11-20", "2026-11-27"))
        .await;
    let modes: BTreeSet<&str> = blocked
        .iter()
        .map(|row| row["userBlockMode"].as_str().unwrap())
        .collect();
    assert_eq!(modes, BTreeSet::from(["Blocked", "Unblocked"]));

    let sms = session
        .rows(&session.function_url("beta", "getSmsLog", "2026-11-20", "2026-11-21"))
        .await;
    for row in &sms {
        assert!(row["callCharge"].is_f64());
        assert_eq!(row["smsType"] == "sms_in", row["callCharge"] == 0.0);
    }

    let (from, to) = ("2026-11-20", "2026-11-23");
    let report = session
        .rows(&session.function_url("beta", "getPstnOnlineMeetingDialoutReport", from, to))
        .await;
    let dial_outs: Vec<Value> = session
        .rows(&session.function_url("v1.0", "getPstnCalls", from, to))
        .await
        .into_iter()
        .filter(|row| row["callType"] == "conf_out")
        .collect();
    let total = |rows: &[Value], key: &str| -> i64 {
        rows.iter().map(|row| row[key].as_i64().unwrap()).sum()
    };
    assert_eq!(total(&report, "totalCalls"), dial_outs.len() as i64);
    assert_eq!(
        total(&report, "totalCallSeconds"),
        total(&dial_outs, "duration")
    );
    assert!(
        report
            .iter()
            .any(|line| line["totalCalls"].as_i64() > Some(1)),
        "organizers aggregate several dial-outs"
    );
    for line in &report {
        assert!(line["totalCallCharge"].is_f64());
        assert!(line.get("startDateTime").is_none());
    }
}

#[test]
fn log_tenant_is_deterministic_per_seed_with_boundary_rows_every_day() {
    let (from, to) = (at("2026-11-20T00:00:00Z"), at("2026-11-22T00:00:00Z"));
    for function in LogFunction::ALL {
        let rows = LogTenant::new(42, 300).rows(function, ApiVersion::Beta, from, to);
        assert_eq!(
            rows,
            LogTenant::new(42, 300).rows(function, ApiVersion::Beta, from, to)
        );
        assert_ne!(
            rows,
            LogTenant::new(7, 300).rows(function, ApiVersion::Beta, from, to),
            "{}",
            function.name()
        );
    }
    let pstn = LogTenant::new(42, 300).rows(LogFunction::PstnCalls, ApiVersion::V1, from, to);
    assert_eq!(pstn.len(), 600);
    for function in [LogFunction::PstnCalls, LogFunction::DirectRoutingCalls] {
        let rows = LogTenant::new(42, 300).rows(function, ApiVersion::V1, from, to);
        let times = times(&rows, function);
        for boundary in [
            "2026-11-20T00:00:00Z",
            "2026-11-20T23:59:59.9999999Z",
            "2026-11-21T00:00:00Z",
            "2026-11-21T23:59:59.9999999Z",
        ] {
            assert!(times.contains(boundary), "{} {boundary}", function.name());
        }
    }
    // Beta-only logs do not exist in v1.0; an empty window has no rows.
    let logs = LogTenant::new(42, 300);
    assert!(
        logs.rows(LogFunction::SmsLog, ApiVersion::V1, from, to)
            .is_empty()
    );
    assert!(
        logs.rows(LogFunction::PstnCalls, ApiVersion::V1, to, to)
            .is_empty()
    );
}
