//! The log streams end to end: the built binary against the emulator's log functions,
//! compared with the emulator's own rows of the half-open window, across a window longer
//! than Graph's 90-day request limit.

use crate::support;

use support::date_days_ago as days_ago;

use std::collections::BTreeMap;

use callrecords_emulator::{ApiVersion, EmulatorConfig, LogFunction, LogTenant};
use serde_json::Value;

/// The table and the id column of each row-level log function.
const ROW_TABLES: [(LogFunction, &str, &str, &str); 4] = [
    (LogFunction::PstnCalls, "pstn_calls", "id", "id"),
    (
        LogFunction::DirectRoutingCalls,
        "direct_routing_calls",
        "id",
        "id",
    ),
    (LogFunction::SmsLog, "sms_logs", "smsId", "sms_id"),
    (
        LogFunction::PstnBlockedUsersLog,
        "pstn_blocked_users",
        "blockDateTime",
        "block_date_time",
    ),
];

fn export(lake: &std::path::Path, streams: &str, from: chrono::NaiveDate, to: chrono::NaiveDate) {
    let output = support::binary()
        .args([
            "export",
            "-q",
            "--emulator",
            "--api-version",
            "beta",
            "--streams",
            streams,
        ])
        .args([
            "--from",
            &from.to_string(),
            "--to",
            &to.to_string(),
            "--out",
        ])
        .arg(lake)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_window_longer_than_90_days_exports_exactly_its_rows_once() {
    let lake = tempfile::tempdir().unwrap();
    let (from, to) = (days_ago(100), days_ago(1));
    export(
        lake.path(),
        "pstn_calls,direct_routing_calls,sms_logs,pstn_blocked_users",
        from,
        to,
    );

    let logs = LogTenant::for_config(&EmulatorConfig::default());
    let (from, to) = (
        callrecords_etl::window::midnight(from),
        callrecords_etl::window::midnight(to),
    );
    for (function, table, key, column) in ROW_TABLES {
        let expected = logs.rows(function, ApiVersion::Beta, from, to);
        let written = support::read_table(lake.path(), table);
        assert_eq!(
            written.len(),
            expected.len(),
            "{table}: every row of [from, to) exactly once"
        );
        let mut want: Vec<String> = expected
            .iter()
            .map(|r| r[key].as_str().unwrap().to_string())
            .collect();
        let mut got: Vec<String> = written
            .iter()
            .map(|r| r[column].as_str().unwrap().to_string())
            .collect();
        want.sort();
        got.sort();
        if column.ends_with("date_time") {
            // Timestamps come back with microseconds; compare as instants.
            let instant = |t: &String| {
                callrecords_etl::window::parse_bound(t)
                    .unwrap()
                    .timestamp_micros()
            };
            assert_eq!(
                got.iter().map(instant).collect::<Vec<_>>(),
                want.iter().map(instant).collect::<Vec<_>>()
            );
        } else {
            assert_eq!(got, want, "{table}");
        }
        // Each row sits in the partition of its own UTC date.
        let time_column = match table {
            "sms_logs" => "sent_date_time",
            "pstn_blocked_users" => "block_date_time",
            _ => "start_date_time",
        };
        for row in &written {
            assert_eq!(
                row["dt"].as_str().unwrap(),
                &row[time_column].as_str().unwrap()[..10],
                "{table}"
            );
        }
    }
    assert!(
        logs.rows(LogFunction::PstnCalls, ApiVersion::Beta, from, to)
            .len()
            > 1000,
        "pages past 1000 rows"
    );

    // Exact decimals and the year-one sentinel, as the emulator sent them.
    let pstn = logs.rows(LogFunction::PstnCalls, ApiVersion::Beta, from, to);
    let charges: BTreeMap<&str, &Value> = pstn
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), &r["charge"]))
        .collect();
    for row in support::read_table(lake.path(), "pstn_calls") {
        let sent = charges[row["id"].as_str().unwrap()];
        let written: f64 = row["charge"].as_str().unwrap().parse().unwrap();
        assert_eq!(written, sent.as_f64().unwrap(), "charge of {}", row["id"]);
        assert!(
            row["charge"].as_str().unwrap().ends_with("000000"),
            "decimal(38,10) text: {}",
            row["charge"]
        );
    }
    let direct = support::read_table(lake.path(), "direct_routing_calls");
    assert!(direct.iter().any(|r| r["successful_call"] == true));
    assert!(
        direct
            .iter()
            .filter(|r| r["successful_call"] == true)
            .all(|r| r["failure_date_time"].is_null()),
        "the 0001-01-01 sentinel is null"
    );
    assert!(
        direct
            .iter()
            .filter(|r| r["successful_call"] == false)
            .all(|r| r["failure_date_time"].is_string())
    );
}

#[test]
fn the_dial_out_report_is_requested_per_day_without_the_next_days_calls() {
    // One request per day: a short window keeps the test under Graph's 50 requests a
    // minute per function, which the exporter paces itself under.
    let lake = tempfile::tempdir().unwrap();
    let (first, last) = (days_ago(8), days_ago(1));
    export(lake.path(), "pstn_online_meeting_dialouts", first, last);
    let logs = LogTenant::for_config(&EmulatorConfig::default());
    let (from, to) = (
        callrecords_etl::window::midnight(first),
        callrecords_etl::window::midnight(last),
    );
    let dialouts = support::read_table(lake.path(), "pstn_online_meeting_dialouts");
    let mut expected_rows = 0;
    let mut day = from;
    while day < to {
        let next = day + chrono::Duration::days(1);
        expected_rows += logs
            .rows(
                LogFunction::PstnOnlineMeetingDialoutReport,
                ApiVersion::Beta,
                day,
                next,
            )
            .len();
        day = next;
    }
    assert_eq!(dialouts.len(), expected_rows);
    for row in &dialouts {
        assert_eq!(
            row["dt"].as_str().unwrap(),
            &row["report_from_date_time"].as_str().unwrap()[..10]
        );
    }
}
