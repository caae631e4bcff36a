//! The flattener on Microsoft's documented sample payloads, with exact values.

use crate::support;

use arrow_array::RecordBatch;
use callrecords_etl::flatten::FlattenIssue;
use callrecords_etl::flatten::call_records::{
    CallRecordTables, RecordParser, flatten, flatten_item, partition_date,
};
use serde_json::{Map, Value, json};
use support::{rows, sample};

struct Flattened {
    tables: std::collections::BTreeMap<String, Vec<Map<String, Value>>>,
    issues: Vec<FlattenIssue>,
}

impl Flattened {
    fn table(&self, name: &str) -> &[Map<String, Value>] {
        &self.tables[name]
    }
}

fn flatten_all(records: &[Value]) -> Flattened {
    let mut tables = CallRecordTables::default();
    let mut issues = Vec::new();
    for record in records {
        flatten(record, &mut tables, &mut issues).unwrap();
    }
    let tables = tables
        .builders_mut()
        .into_iter()
        .map(|builder| (builder.schema().table.clone(), rows(&builder.finish())))
        .collect();
    Flattened { tables, issues }
}

/// The legacy full sample with the participants_v2 sample merged in, as the exporter
/// assembles a record.
fn full_record() -> Value {
    let mut record = sample("v1.0-get-callrecord-expand-sessions-segments-full-legacy.json");
    record["participants_v2"] = sample("v1.0-list-participants_v2.json")["value"].clone();
    record
}

#[test]
fn the_full_sample_fills_every_call_table_with_exact_values() {
    let out = flatten_all(&[full_record()]);
    assert!(out.issues.is_empty(), "{:?}", out.issues);

    let call = &out.table("call_records")[0];
    assert_eq!(call["call_id"], "e523d2ed-2966-4b6b-925b-754a88034cc5");
    assert_eq!(call["version"], 1);
    assert_eq!(call["type"], "peerToPeer");
    assert_eq!(call["modalities"], json!(["audio"]));
    // 7 fractional digits are truncated to microseconds.
    assert_eq!(call["start_date_time"], "2020-02-25T18:52:21.216988Z");
    assert_eq!(call["end_date_time"], "2020-02-25T18:52:46.764001Z");
    assert_eq!(
        call["last_modified_date_time"],
        "2020-02-25T19:00:24.582757Z"
    );
    assert_eq!(call["join_web_url"], Value::Null);
    assert_eq!(
        out.table("call_modalities"),
        &[json!({"call_id": call["call_id"], "modality": "audio"})
            .as_object()
            .unwrap()
            .clone()]
    );

    let participants = out.table("call_participants");
    assert_eq!(participants.len(), 2);
    assert_eq!(participants[1]["role"], "participant");
    assert_eq!(participants[1]["participant_index"], 1);
    assert_eq!(
        participants[1]["participant_id"],
        "13fd6bf0-f646-4b82-b0ad-cd28ce10d6e3"
    );
    assert_eq!(participants[1]["identity_kind"], "user");
    assert_eq!(participants[1]["identity_display_name"], "Daichi Maruyama");
    assert_eq!(
        participants[1]["identity_user_principal_name"],
        "daichi.maruyama@contoso.com"
    );
    assert_eq!(
        participants[1]["identity_tenant_id"],
        "dc368399-474c-4d40-900c-6265431fd81f"
    );
    let identity_json: Value =
        serde_json::from_str(participants[1]["identity_json"].as_str().unwrap()).unwrap();
    assert_eq!(
        identity_json,
        sample("v1.0-list-participants_v2.json")["value"][1]["identity"],
        "identity sets are kept whole"
    );

    let session = &out.table("call_sessions")[0];
    assert_eq!(session["session_index"], 0);
    assert_eq!(session["caller_endpoint_type"], "participantEndpoint");
    assert_eq!(session["caller_user_agent_type"], "clientUserAgent");
    assert_eq!(session["caller_user_agent_platform"], "android");
    assert_eq!(
        session["caller_user_agent_product_family"],
        "skypeForBusiness"
    );
    assert_eq!(session["callee_feedback_rating"], "poor");
    let tokens: Value =
        serde_json::from_str(session["callee_feedback_tokens"].as_str().unwrap()).unwrap();
    assert_eq!(tokens["Noisy"], true);
    assert_eq!(tokens["Echo"], false);

    let segments = out.table("call_segments");
    assert_eq!(segments.len(), 1);
    assert_eq!(
        segments[0]["segment_id"],
        "e523d2ed-2966-4b6b-925b-754a88034cc5"
    );
    assert_eq!(segments[0]["callee_user_agent_platform"], "windows");

    let media = &out.table("call_media")[0];
    assert_eq!(media["label"], "main-audio");
    assert_eq!(media["caller_network_link_speed"], 54_000_000);
    assert_eq!(media["callee_network_link_speed"], 4_294_967_295_i64);
    assert_eq!(media["caller_network_connection_type"], "wifi");
    assert_eq!(media["caller_network_received_quality_event_ratio"], 0.27);
    assert_eq!(media["caller_network_reflexive_ip_address"], "127.0.0.2");
    assert_eq!(media["callee_network_relay_port"], 52810);
    assert_eq!(media["caller_network_dns_suffix"], Value::Null);
    assert_eq!(
        media["caller_device_initial_signal_level_root_mean_square"],
        60.25816
    );
    assert_eq!(
        media["callee_device_capture_device_driver"],
        "Microsoft: 5.0.8638.1100"
    );
    assert_eq!(media["caller_device_speaker_glitch_rate"], 3830.0);

    let streams = out.table("call_media_streams");
    assert_eq!(streams.len(), 2);
    assert_eq!(streams[0]["stream_index"], 0);
    assert_eq!(streams[0]["stream_id"], "1504545584");
    assert_eq!(streams[0]["stream_direction"], "callerToCallee");
    assert_eq!(streams[0]["average_jitter_ms"], 16.0);
    assert_eq!(streams[0]["max_jitter_ms"], 21.0);
    assert_eq!(streams[0]["average_round_trip_time_ms"], 61.0);
    assert_eq!(streams[0]["average_audio_degradation"], Value::Null);
    assert_eq!(streams[0]["packet_utilization"], 67);
    assert_eq!(streams[0]["average_bandwidth_estimate"], 9_965_083);
    assert_eq!(streams[0]["was_media_bypassed"], false);
    assert_eq!(streams[1]["average_audio_degradation"], 1.160898);
    assert_eq!(streams[1]["average_packet_loss_rate"], 0.01381693);
    assert_eq!(streams[1]["average_audio_network_jitter_ms"], 266.0);
    assert_eq!(streams[1]["max_audio_network_jitter_ms"], 474.0);
    assert!(out.table("call_trace_route_hops").is_empty());
    assert_eq!(
        partition_date(&full_record()).unwrap().to_string(),
        "2020-02-25"
    );
}

#[test]
fn list_items_carry_the_organizer_including_phone_organizers() {
    let list = sample("v1.0-list-callrecords.json");
    let out = flatten_all(list["value"].as_array().unwrap());
    let calls = out.table("call_records");
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["organizer_kind"], "user");
    assert_eq!(calls[0]["organizer_display_name"], "Abbie Wilkins");
    assert_eq!(calls[0]["version"], 2);
    assert_eq!(calls[0]["type"], "unknown");
    assert_eq!(calls[1]["organizer_kind"], "phone");
    assert_eq!(calls[1]["organizer_id"], "+5564981205182");
    assert_eq!(calls[1]["organizer_display_name"], Value::Null);
    let organizers = out.table("call_participants");
    assert_eq!(organizers.len(), 2);
    assert!(organizers.iter().all(|o| o["role"] == "organizer"));
    assert_eq!(organizers[1]["participant_id"], "+5564981205182");
    assert_eq!(organizers[1]["identity_kind"], "phone");
}

#[test]
fn the_current_session_shape_reads_associated_identities_and_endpoint_names() {
    let out = flatten_all(&[sample("v1.0-get-callrecord-expand-sessions-segments.json")]);
    let session = &out.table("call_sessions")[0];
    assert_eq!(session["is_test"], false);
    assert_eq!(session["caller_name"], "machineName_2");
    assert_eq!(
        session["caller_associated_identity_user_principal_name"],
        "abbie.wilkins@contoso.com"
    );
    assert_eq!(
        session["callee_associated_identity_display_name"],
        "Owen Franklin"
    );
    assert_eq!(session["callee_feedback_tokens"], Value::Null);
    let stream = &out.table("call_media_streams")[0];
    assert_eq!(stream["average_jitter_ms"], 16.0);
    assert_eq!(stream["max_jitter_ms"], Value::Null);
    let organizer = &out.table("call_participants")[0];
    assert_eq!(organizer["identity_kind"], "user");
}

#[test]
fn listed_sessions_with_segments_read_cpu_and_forward_error_correction() {
    let mut record = sample("v1.0-get-callrecord.json");
    record["sessions"] = sample("v1.0-list-sessions-expand-segments.json")["value"].clone();
    let out = flatten_all(&[record]);
    let session = &out.table("call_sessions")[0];
    assert_eq!(
        session["caller_cpu_name"],
        "AMD EPYC 7452 32-Core Processor"
    );
    assert_eq!(session["caller_cpu_cores_count"], 8);
    assert_eq!(session["callee_cpu_processor_speed_in_mhz"], 2594);
    let streams = out.table("call_media_streams");
    assert_eq!(streams[0]["is_audio_forward_error_correction_used"], true);
    assert_eq!(streams[1]["is_audio_forward_error_correction_used"], false);
    assert_eq!(streams[0]["rms_freeze_duration_ms"], Value::Null);
}

#[test]
fn participants_v2_expansion_and_plain_sessions_flatten() {
    let mut record = sample("v1.0-get-callrecord-expand-participants_v2.json");
    record["sessions"] = sample("v1.0-list-sessions.json")["value"].clone();
    let out = flatten_all(std::slice::from_ref(&record));
    let expected = record["participants_v2"].as_array().unwrap().len();
    let participants: Vec<_> = out
        .table("call_participants")
        .iter()
        .filter(|p| p["role"] == "participant")
        .collect();
    assert_eq!(participants.len(), expected);
    assert!(participants.iter().all(|p| p["identity_kind"] == "user"));
    assert_eq!(
        out.table("call_sessions").len(),
        record["sessions"].as_array().unwrap().len()
    );
    assert!(out.table("call_segments").is_empty());
}

#[test]
fn subtypes_without_odata_type_are_inferred_and_bad_values_are_reported_not_lost() {
    let record = json!({
        "id": "r1", "version": 1, "type": "groupCall", "modalities": ["audio", "unknownFutureValue"],
        "startDateTime": "2026-11-20T23:59:59.9999999Z", "endDateTime": "2026-11-21T00:10:00Z",
        "lastModifiedDateTime": "2026-11-21T00:40:00Z",
        "sessions": [{
            "id": "s1", "modalities": ["audio"], "startDateTime": "2026-11-20T23:59:59Z", "endDateTime": "2026-11-21T00:10:00Z",
            "caller": {"userAgent": {"headerValue": "Teams", "platform": "windows", "productFamily": "teams"}},
            "callee": {"userAgent": {"role": "conferencingAttendant"}},
            "failureInfo": {"stage": "unknownFutureValue", "reason": "something new"},
            "segments": [{
                "id": "g1", "startDateTime": "2026-11-20T23:59:59Z", "endDateTime": "2026-11-21T00:10:00Z",
                "media": [{
                    "label": "main-audio",
                    "callerNetwork": {"linkSpeed": "not a number", "traceRouteHops": [
                        {"hopCount": 1, "ipAddress": "10.0.0.1", "roundTripTime": "PT0.002S"},
                        {"hopCount": 2, "ipAddress": "10.0.0.2", "roundTripTime": "PT1M2.5S"}
                    ]},
                    "calleeNetwork": {"traceRouteHops": [{"hopCount": 1, "ipAddress": "10.1.0.1", "roundTripTime": null}]},
                    "streams": [{"streamDirection": "callerToCallee", "averageJitter": "16 ms"}]
                }]
            }]
        }]
    });
    let out = flatten_all(std::slice::from_ref(&record));
    let session = &out.table("call_sessions")[0];
    assert_eq!(session["caller_endpoint_type"], "participantEndpoint");
    assert_eq!(session["caller_user_agent_type"], "clientUserAgent");
    assert_eq!(session["callee_endpoint_type"], "serviceEndpoint");
    assert_eq!(session["callee_user_agent_role"], "conferencingAttendant");
    assert_eq!(session["failure_info_stage"], "unknownFutureValue");
    assert_eq!(out.table("call_modalities").len(), 2);
    let hops = out.table("call_trace_route_hops");
    assert_eq!(hops.len(), 3);
    assert_eq!(
        (
            hops[1]["side"].clone(),
            hops[1]["hop_index"].clone(),
            hops[1]["round_trip_time_ms"].clone()
        ),
        (json!("caller"), json!(1), json!(62500.0))
    );
    assert_eq!(hops[2]["side"], "callee");
    assert_eq!(hops[2]["round_trip_time_ms"], Value::Null);
    // Unreadable values are null and reported with their table, column and record.
    let reported: Vec<(&str, &str)> = out.issues.iter().map(|i| (i.table, i.column)).collect();
    assert_eq!(
        reported,
        vec![
            ("call_media", "caller_network_link_speed"),
            ("call_media_streams", "average_jitter_ms")
        ]
    );
    assert!(out.issues.iter().all(|i| i.record_id == "r1"));
    // The call started a tenth of a microsecond before midnight: it belongs to the 20th.
    assert_eq!(partition_date(&record).unwrap().to_string(), "2026-11-20");
}

/// The rows of a log sample flattened into its table.
fn log_rows(table: &str, sample_name: &str) -> Vec<Map<String, Value>> {
    let schema = callrecords_etl::schema::table(table).unwrap();
    let mut builder = callrecords_etl::flatten::TableBuilder::new(schema);
    let mut issues = Vec::new();
    for row in sample(sample_name)["value"].as_array().unwrap() {
        builder.append(row, &Default::default(), &mut issues);
    }
    assert!(issues.is_empty(), "{issues:?}");
    rows(&builder.finish())
}

#[test]
fn pstn_rows_keep_exact_decimals_and_every_property() {
    let row = &log_rows("pstn_calls", "v1.0-getpstncalls.json")[0];
    assert_eq!(row["id"], "9c4984c7-6c3c-427d-a30c-bd0b2eacee90");
    assert_eq!(row["call_id"], "1835317186_112562680@61.221.3.176");
    assert_eq!(row["start_date_time"], "2019-11-01T00:00:08.258993Z");
    assert_eq!(row["duration"], 219);
    assert_eq!(row["charge"], "0.0000000000");
    assert_eq!(row["connection_charge"], "0.0000000000");
    assert_eq!(row["currency"], "USD");
    assert_eq!(row["call_type"], "user_in");
    assert_eq!(row["callee_number"], "+1234567890");
    assert_eq!(row["destination_context"], Value::Null);
    assert_eq!(row["call_duration_source"], "microsoft");
    assert_eq!(
        row["other_party_country_code"],
        Value::Null,
        "beta-only column, null on v1.0"
    );
    let beta = &log_rows("pstn_calls", "beta-getpstncalls.json")[0];
    assert_eq!(beta["other_party_country_code"], "US");
}

#[test]
fn direct_routing_rows_null_the_year_one_sentinel_and_keep_masked_numbers() {
    let row = &log_rows("direct_routing_calls", "v1.0-getdirectroutingcalls.json")[0];
    assert_eq!(row["failure_date_time"], Value::Null);
    assert_eq!(row["invite_date_time"], "2019-11-01T00:00:21.949000Z");
    assert_eq!(row["caller_number"], "+12345678***");
    assert_eq!(row["final_sip_code"], 0);
    assert_eq!(row["call_end_sub_reason"], 540000);
    assert_eq!(row["successful_call"], true);
    assert_eq!(
        row["correlation_id"],
        "c98e1515-a937-4b81-b8a8-3992afde64e0"
    );
    let beta = &log_rows("direct_routing_calls", "beta-getdirectroutingcalls.json")[0];
    assert_eq!(beta["user_country_code"], "US");
}

#[test]
fn beta_log_streams_flatten_their_samples() {
    let sms = &log_rows("sms_logs", "beta-getsmslog.json")[0];
    assert_eq!(sms["sms_id"], "ef36b3e8-9922-4763-90e2-f4345c04a5d6");
    assert_eq!(sms["sms_units"], 1);
    assert_eq!(sms["call_charge"], "0.0000000000");
    assert_eq!(sms["source_number"], "+12818602122");
    let blocked = log_rows("pstn_blocked_users", "beta-getpstnblockeduserslog.json");
    assert_eq!(blocked.len(), 2);
    assert_eq!(
        blocked[0]["user_block_mode"], "Blocked",
        "enums are kept as sent, even capitalised"
    );
    assert_eq!(blocked[1]["block_reason"], "Tenant Requested");
    let dialout = &log_rows(
        "pstn_online_meeting_dialouts",
        "beta-getpstnonlinemeetingdialoutreport.json",
    )[0];
    assert_eq!(dialout["total_call_charge"], "12.8300000000");
    assert_eq!(dialout["total_calls"], 12);
    assert_eq!(dialout["total_call_seconds"], 723);
}

/// Every table and every reported issue of `records`, flattened from their JSON text (as
/// `reflatten` reads raw lines) and from `serde_json::Value`s (as `export` assembles them).
fn flattened_both_ways(text: &str) -> [(Vec<RecordBatch>, Vec<FlattenIssue>); 2] {
    let finish = |mut tables: CallRecordTables, issues| {
        let batches = tables.builders_mut().map(|b| b.finish()).to_vec();
        (batches, issues)
    };
    let (mut from_text, mut text_issues) = (CallRecordTables::default(), Vec::new());
    let mut parser = RecordParser::default();
    for line in text.lines() {
        let record = parser.parse(line).unwrap();
        flatten_item(record, &mut from_text, &mut text_issues).unwrap();
    }
    let (mut from_value, mut value_issues) = (CallRecordTables::default(), Vec::new());
    for line in text.lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        flatten(&record, &mut from_value, &mut value_issues).unwrap();
    }
    [
        finish(from_text, text_issues),
        finish(from_value, value_issues),
    ]
}

#[test]
fn raw_lines_and_assembled_records_give_the_same_rows() {
    let mut lines: Vec<String> = [
        full_record(),
        sample("v1.0-get-callrecord-expand-sessions-segments.json"),
        sample("v1.0-get-callrecord.json"),
    ]
    .iter()
    .map(Value::to_string)
    .collect();
    // What Graph may also send: members in another order and with whitespace, escapes,
    // unknown members, numbers and booleans as strings, objects where values are expected,
    // duplicate keys, members of identity sets no column names, explicit nulls.
    lines.push(
        r##"{ "unknown": {"deep": [1, {"x": null}]}, "id": "r\u0032", "version": "3",
        "type": "peerToPeer", "startDateTime": "2026-11-20T10:00:00Z", "startDateTime": "2026-11-21T10:00:00.1234567Z",
        "modalities": ["audio", null, 7], "organizer_v2": {"id": "o", "identity": {"teamsVoiceBot": {"id": "b\"1", "displayName": "Bot"}, "user": null}},
        "participants_v2": [{"id": "p", "administrativeUnitInfos": [{"id": "a1"}, {"id": null}, {}, "x"],
            "identity": {"@odata.type": "#microsoft.graph.communicationsIdentitySet", "phone": {"id": "+15550100", "extra": [true]}}}],
        "sessions": [{"id": "s", "isTest": "true", "caller": {"name": "m", "userAgent": {"platform": null}, "associatedIdentity": {"id": "u", "z": {"y": 1.50}}},
            "callee": {"@odata.type": "#microsoft.graph.callRecords.serviceEndpoint", "userAgent": {"role": "voicemail"}, "feedback": {"rating": "good", "tokens": {"NoSound": "false"}}},
            "failureInfo": "gone", "segments": [{"id": "g", "media": [{"label": {"an": "object"}, "callerNetwork": {"port": "443", "linkSpeed": 1e3, "traceRouteHops": [{"hopCount": 1.0, "roundTripTime": "PT0,5S"}]},
            "streams": [{"averageJitter": "PT1M", "packetUtilization": 18446744073709551615, "averageAudioDegradation": "0.5"}]}]}]}] }"##
            .replace('\n', " "),
    );
    let [(text_batches, text_issues), (value_batches, value_issues)] =
        flattened_both_ways(&lines.join("\n"));
    assert_eq!(text_issues, value_issues);
    assert!(
        !text_issues.is_empty(),
        "the odd record has unreadable values"
    );
    for (from_text, from_value) in text_batches.iter().zip(&value_batches) {
        assert_eq!(from_text, from_value);
    }
    let rows_in = |table: usize| text_batches[table].num_rows();
    assert_eq!(rows_in(0), 4, "every record is a call_records row");
    assert!(
        rows_in(6) > 0 && rows_in(7) > 0,
        "streams and hops are read"
    );
    // Text kept whole keeps every member, also those no column names, in key order.
    let sessions = rows(&text_batches[3]);
    let odd = sessions.last().unwrap();
    assert_eq!(
        odd["caller_associated_identity_json"],
        r#"{"id":"u","z":{"y":1.5}}"#
    );
    assert_eq!(odd["callee_feedback_tokens"], r#"{"NoSound":"false"}"#);
    assert_eq!(odd["is_test"], true);
}
