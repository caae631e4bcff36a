//! Call quality: CQD stream classification, the session and call roll-ups and the sites of
//! a building file, on hand-made records with values on either side of every threshold;
//! and `reflatten` with other thresholds and a building file, through the binary.

use crate::support;

use std::path::Path;

use callrecords_etl::flatten::call_records::{CallRecordTables, flatten};
use callrecords_etl::privacy::Privacy;
use callrecords_etl::quality::{Derivation, Rules, Sites};
use serde_json::{Map, Value, json};
use support::{days_ago, rows};

fn audio_stream(direction: &str, jitter_ms: u64, packets: Value) -> Value {
    json!({
        "streamDirection": direction,
        "averageJitter": format!("PT{}S", jitter_ms as f64 / 1000.0),
        "averageRoundTripTime": "PT0.1S",
        "averagePacketLossRate": 0.01,
        "packetUtilization": packets,
    })
}

fn video_stream(direction: &str, frame_loss: Value, frame_rate: Value) -> Value {
    json!({
        "streamDirection": direction,
        "averageVideoFrameLossPercentage": frame_loss,
        "averageVideoFrameRate": frame_rate,
        "averageJitter": "PT0.012S",
        "averageRoundTripTime": "PT0.7S",
        "averagePacketLossRate": 0.25,
    })
}

fn medium(label: &str, caller_ip: &str, streams: Vec<Value>) -> Value {
    json!({
        "label": label,
        "callerNetwork": {"ipAddress": caller_ip, "subnet": null},
        "calleeNetwork": {"ipAddress": null, "subnet": "10.20.3.0"},
        "streams": streams,
    })
}

/// One call, two sessions. Session 0: audio just above the jitter threshold with 501
/// packets (poor) and its reverse stream far above it with only 500 (good); video at 50.01 %
/// frame loss (poor). Session 1: screen sharing at 1.99 fps (poor), RDP sharing and data
/// (not counted), audio without a packet count (unclassified), video without its metrics
/// (unclassified).
fn record() -> Value {
    let session0 = json!({"id": "s0", "segments": [{"media": [
        medium("main-audio", "10.10.2.7", vec![
            audio_stream("callerToCallee", 31, json!(501)),
            audio_stream("calleeToCaller", 90, json!(500)),
        ]),
        medium("main-video", "10.10.9.9", vec![
            video_stream("callerToCallee", json!(50.01), json!(30)),
            video_stream("calleeToCaller", json!(50.0), json!(1)),
        ]),
    ]}]});
    let session1 = json!({"id": "s1", "segments": [{"media": [
        medium("applicationsharing-video", "172.16.0.1", vec![
            video_stream("callerToCallee", Value::Null, json!(1.99)),
        ]),
        medium("applicationsharing", "172.16.0.1", vec![video_stream("callerToCallee", Value::Null, json!(0.5))]),
        medium("data", "172.16.0.1", vec![json!({"streamDirection": "calleeToCaller"})]),
        medium("main-audio", "172.16.0.1", vec![audio_stream("callerToCallee", 300, Value::Null)]),
        medium("main-video", "172.16.0.1", vec![json!({"streamDirection": "callerToCallee"})]),
    ]}]});
    json!({
        "id": "call-1",
        "startDateTime": "2026-11-20T10:00:00Z",
        "sessions": [session0, session1],
    })
}

fn buildings() -> Sites {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/buildings.sample.csv");
    Sites::load(&path).unwrap()
}

fn flatten_with(
    derivation: &Derivation,
) -> std::collections::BTreeMap<String, Vec<Map<String, Value>>> {
    let mut tables = CallRecordTables::deriving(&Privacy::default(), derivation);
    let mut issues = Vec::new();
    flatten(&record(), &mut tables, &mut issues).unwrap();
    assert!(issues.is_empty(), "{issues:?}");
    tables
        .builders_mut()
        .into_iter()
        .map(|builder| (builder.schema().table.clone(), rows(&builder.finish())))
        .collect()
}

#[test]
fn streams_on_either_side_of_the_thresholds_are_classified_and_rolled_up() {
    let tables = flatten_with(&Derivation::new(Rules::default(), buildings()));
    let streams: Vec<(Value, Value, Value)> = tables["call_media_streams"]
        .iter()
        .map(|row| {
            (
                row["quality"].clone(),
                row["poor_reasons"].clone(),
                row["receiving_endpoint"].clone(),
            )
        })
        .collect();
    assert_eq!(
        streams,
        vec![
            (json!("poor"), json!(["average_jitter_ms"]), json!("callee")),
            (json!("good"), json!([]), json!("caller")),
            (
                json!("poor"),
                json!(["average_video_frame_loss_percentage"]),
                json!("callee")
            ),
            (json!("good"), json!([]), json!("caller")),
            (
                json!("poor"),
                json!(["average_video_frame_rate"]),
                json!("callee")
            ),
            (json!("unclassified"), json!([]), json!("callee")),
            (json!("unclassified"), json!([]), json!("caller")),
            (json!("unclassified"), json!([]), json!("callee")),
            (json!("unclassified"), json!([]), json!("callee")),
        ]
    );
    assert!(
        tables["call_media_streams"]
            .iter()
            .all(|row| row["quality_rules"] == "cqd")
    );

    let sessions: Vec<(Value, Value)> = tables["call_sessions"]
        .iter()
        .map(|row| (row["audio_quality"].clone(), row["video_quality"].clone()))
        .collect();
    assert_eq!(
        sessions,
        vec![
            (json!("poor"), json!("poor")),
            (json!("unclassified"), json!("unclassified"))
        ]
    );

    let call = &tables["call_quality"];
    assert_eq!(call.len(), 1);
    let expected = json!({
        "call_id": "call-1",
        "audio_streams": 3, "audio_streams_classified": 2, "audio_streams_poor": 1,
        "video_streams_classified": 2, "video_streams_poor": 1,
        "screen_sharing_streams_classified": 1, "screen_sharing_streams_poor": 1,
        "is_poor_call": true,
        "worst_jitter_ms": 300.0, "worst_packet_loss_rate": 0.25, "worst_round_trip_time_ms": 700.0,
        "quality_rules": "cqd",
    });
    assert_eq!(Value::Object(call[0].clone()), expected);

    // Sites: the caller by its address (the /24 floor range beats the /16), the callee by
    // its subnet; an address no range holds has none.
    let media = &tables["call_media"];
    let site = |row: &Map<String, Value>, side: &str| {
        ["building", "city", "country", "inside_corp"].map(|f| row[&format!("{side}_{f}")].clone())
    };
    assert_eq!(
        site(&media[0], "caller"),
        [
            json!("HQ Building 1 Floor 2"),
            json!("Redmond"),
            json!("United States"),
            json!(true)
        ]
    );
    assert_eq!(site(&media[1], "caller")[0], json!("HQ Building 1"));
    assert_eq!(
        site(&media[0], "callee"),
        [
            json!("Dublin Office"),
            json!("Dublin"),
            json!("Ireland"),
            json!(true)
        ]
    );
    assert_eq!(
        site(&media[2], "caller"),
        [Value::Null, Value::Null, Value::Null, Value::Null]
    );
}

#[test]
fn custom_thresholds_change_the_classification_and_name_the_rules() {
    let rules: Rules =
        toml::from_str("audio_packet_utilization = 499\nvideo_frame_loss_percentage = 60").unwrap();
    let tables = flatten_with(&Derivation::new(rules, Sites::default()));
    let quality: Vec<&str> = tables["call_media_streams"]
        .iter()
        .map(|r| r["quality"].as_str().unwrap())
        .collect();
    // The 500-packet audio stream is poor now, the 50.01 % video stream good.
    assert_eq!(&quality[..3], ["poor", "poor", "good"]);
    let rules_id = "cqd-custom:audio_packet_utilization=499,video_frame_loss_percentage=60";
    assert_eq!(tables["call_media_streams"][0]["quality_rules"], rules_id);
    assert_eq!(tables["call_quality"][0]["audio_streams_poor"], 2);
    assert_eq!(tables["call_quality"][0]["video_streams_poor"], 0);
    assert!(
        tables["call_media"]
            .iter()
            .all(|row| row["caller_building"].is_null())
    );
}

fn run(args: &[&str]) -> std::process::Output {
    support::binary().args(args).output().unwrap()
}

/// The streams of a lake as (call, session, segment, media, stream) → (quality, reasons, rules).
fn classified(lake: &Path) -> std::collections::BTreeMap<String, (Value, Value, Value)> {
    support::read_table(lake, "call_media_streams")
        .into_iter()
        .map(|row| {
            let key = [
                "call_id",
                "session_index",
                "segment_index",
                "media_index",
                "stream_index",
            ]
            .map(|k| row[k].to_string())
            .join("/");
            (
                key,
                (
                    row["quality"].clone(),
                    row["poor_reasons"].clone(),
                    row["quality_rules"].clone(),
                ),
            )
        })
        .collect()
}

#[test]
fn reflatten_applies_the_current_thresholds_and_building_file() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, raw) = (dir.path().join("lake"), dir.path().join("raw"));
    let (from, to) = (days_ago(3), days_ago(2));
    let exported = run(&[
        "export",
        "--emulator",
        "--from",
        &from,
        "--to",
        &to,
        "--out",
        lake.to_str().unwrap(),
        "--raw",
        raw.to_str().unwrap(),
    ]);
    assert!(exported.status.success(), "{}", support::stderr(&exported));
    let before = classified(&lake);
    let media = support::read_table(&lake, "call_media");
    assert!(
        media.iter().all(|row| row["caller_building"].is_null()),
        "no building file, no sites"
    );

    let config = dir.path().join("quality.toml");
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/buildings.sample.csv");
    std::fs::write(
        &config,
        format!(
            "[quality]\naudio_jitter_ms = 10\n\n[sites]\nfile = {:?}\n",
            sample.to_str().unwrap()
        ),
    )
    .unwrap();
    let rebuilt = run(&[
        "reflatten",
        "--raw",
        raw.to_str().unwrap(),
        "--out",
        lake.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(rebuilt.status.success(), "{}", support::stderr(&rebuilt));
    let after = classified(&lake);
    assert_eq!(before.len(), after.len());

    // Expected from the rows' own metrics: audio with more than 500 packets and jitter over
    // 10 ms is poor and names the jitter column.
    let media_labels: std::collections::HashMap<String, String> = media
        .iter()
        .map(|row| {
            let key = ["call_id", "session_index", "segment_index", "media_index"]
                .map(|k| row[k].to_string())
                .join("/");
            (key, row["label"].as_str().unwrap_or_default().to_string())
        })
        .collect();
    let mut newly_poor = 0;
    for row in support::read_table(&lake, "call_media_streams") {
        let media_key = ["call_id", "session_index", "segment_index", "media_index"]
            .map(|k| row[k].to_string())
            .join("/");
        assert_eq!(row["quality_rules"], "cqd-custom:audio_jitter_ms=10");
        let audio = media_labels[&media_key] == "main-audio";
        let jitter = row["average_jitter_ms"].as_f64();
        let packets = row["packet_utilization"].as_i64();
        if audio && jitter.is_some_and(|j| j > 10.0) && packets.is_some_and(|p| p > 500) {
            assert_eq!(row["quality"], "poor", "{row:?}");
            assert!(
                row["poor_reasons"]
                    .as_array()
                    .unwrap()
                    .contains(&json!("average_jitter_ms"))
            );
            let key = format!("{media_key}/{}", row["stream_index"]);
            newly_poor += usize::from(before[&key].0 != "poor");
        }
    }
    assert!(
        newly_poor > 0,
        "a lower jitter threshold makes more audio streams poor"
    );

    // Sites from the building file, matched on the raw addresses.
    let media = support::read_table(&lake, "call_media");
    let in_hq_floor_2 = media
        .iter()
        .filter(|row| {
            row["caller_network_ip_address"]
                .as_str()
                .is_some_and(|ip| ip.starts_with("10.10.2."))
        })
        .collect::<Vec<_>>();
    assert!(!in_hq_floor_2.is_empty());
    assert!(
        in_hq_floor_2
            .iter()
            .all(|row| row["caller_building"] == "HQ Building 1 Floor 2")
    );
    assert!(
        media
            .iter()
            .any(|row| row["callee_building"] == "Dublin Office")
    );
}

#[test]
fn a_malformed_building_file_names_its_line_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let buildings = dir.path().join("buildings.csv");
    std::fs::write(
        &buildings,
        "10.1.0.0,HQ,16,HQ,,,,,,,,,1,0,0\n10.2.0.0,B,40,B,,,,,,,,,1,0,0\n",
    )
    .unwrap();
    let config = dir.path().join("etl.toml");
    std::fs::write(&config, "[sites]\nfile = \"buildings.csv\"\n").unwrap();
    let output = run(&[
        "reflatten",
        "--raw",
        dir.path().join("raw").to_str().unwrap(),
        "--out",
        dir.path().join("lake").to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "{}",
        support::stderr(&output)
    );
    let stderr = support::stderr(&output);
    assert!(
        stderr.contains("buildings.csv, line 2") && stderr.contains("NetworkRange 40"),
        "{stderr}"
    );
}
