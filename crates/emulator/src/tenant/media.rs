//! Segment media: `media` items with caller/callee `networkInfo` and `deviceInfo` and their
//! `mediaStream`s, every declared property present (explicit null where unknown).
//! Pure data generation; touches nothing else.

use chrono::{DateTime, Utc};
use rand::Rng;
use serde_json::{Value, json};

use super::values::{
    TenantRng, dashed_hex, graph_timestamp, iso_duration, pick, pick_weighted, ratio, round4,
    sometimes, time_after,
};

/// What a media line carries; decides its label and which stream metrics apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaKind {
    Audio,
    Video,
    ScreenSharing,
}

impl MediaKind {
    fn label(self) -> &'static str {
        match self {
            MediaKind::Audio => "main-audio",
            MediaKind::Video => "main-video",
            MediaKind::ScreenSharing => "applicationsharing-video",
        }
    }
}

/// Which side of a media line a client (with a real network and audio devices) sits on;
/// service sides report a datacentre network and no device telemetry.
#[derive(Clone, Copy, Debug)]
pub struct MediaSides {
    pub caller_is_client: bool,
    pub callee_is_client: bool,
}

/// One `media` item spanning `[start, end)` of its segment.
pub fn media(
    rng: &mut TenantRng,
    kind: MediaKind,
    sides: MediaSides,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Value {
    let length_ms = (end - start).num_milliseconds().max(1);
    let streams: Vec<Value> = ["callerToCallee", "calleeToCaller"]
        .into_iter()
        .map(|direction| stream(rng, kind, direction, start, length_ms))
        .collect();
    json!({
        "label": kind.label(),
        "callerNetwork": network(rng, sides.caller_is_client),
        "calleeNetwork": network(rng, sides.callee_is_client),
        "callerDevice": device(rng, sides.caller_is_client),
        "calleeDevice": device(rng, sides.callee_is_client),
        "streams": streams,
    })
}

/// A client's address and its /24 subnet. About a third of clients sit in the offices of
/// `docs/buildings.sample.csv` (HQ with a more specific floor range, Dublin, Bangalore, the
/// VPN pool); the rest in networks no building file names.
fn private_address(rng: &mut TenantRng) -> (String, String) {
    let (a, b, c): (u32, u32, u32) = (
        rng.random_range(0..=255),
        rng.random_range(0..=255),
        rng.random_range(1..255),
    );
    let network = match (a < 90).then_some(a % 5) {
        Some(0) => "10.10.1".to_string(),
        Some(1) => "10.10.2".to_string(),
        Some(2) => format!("10.20.{}", b % 4),
        Some(3) => format!("10.30.{}", b % 8),
        Some(_) => format!("10.99.{}", b % 16),
        None => format!("10.{a}.{b}"),
    };
    (format!("{network}.{c}"), format!("{network}.0"))
}

fn public_address(rng: &mut TenantRng, first_octets: &str) -> String {
    format!(
        "{first_octets}.{}.{}",
        rng.random_range(0..=255),
        rng.random_range(1..255)
    )
}

fn network(rng: &mut TenantRng, is_client: bool) -> Value {
    if !is_client {
        return service_network(rng);
    }
    let connection_type = pick_weighted(
        rng,
        &[
            ("wired", 40),
            ("wifi", 40),
            ("mobile", 8),
            ("tunnel", 4),
            ("unknown", 5),
            ("unknownFutureValue", 3),
        ],
    );
    let (ip_address, subnet) = private_address(rng);
    let link_speed = match connection_type {
        "wired" => sometimes(rng, 0.85, |rng| {
            json!(pick(rng, &[100_000_000_i64, 1_000_000_000, 4_294_967_295]))
        }),
        "wifi" => sometimes(rng, 0.85, |rng| {
            json!(pick(
                rng,
                &[54_000_000_i64, 300_000_000, 866_700_000, 4_294_967_295]
            ))
        }),
        _ => Value::Null,
    };
    let hop_count: u64 = rng.random_range(0..=5);
    let trace_route_hops: Vec<Value> = (1..=hop_count)
        .map(|hop| {
            json!({
                "hopCount": hop,
                "ipAddress": if hop == 1 { subnet.replace(".0", ".1") } else { public_address(rng, "62.115") },
                "roundTripTime": iso_duration(hop * 5 + rng.random_range(0..10)),
            })
        })
        .collect();
    let mut network = json!({
        "connectionType": connection_type,
        "networkTransportProtocol": pick_weighted(rng, &[("udp", 85), ("tcp", 11), ("unknown", 3), ("unknownFutureValue", 1)]),
        "ipAddress": ip_address,
        "subnet": subnet,
        "port": rng.random_range(1024..65_535),
        "reflexiveIPAddress": public_address(rng, "20.190"),
        "relayIPAddress": public_address(rng, "52.114"),
        "relayPort": pick(rng, &[3478, 3479, 3480, 3481]),
        "macAddress": sometimes(rng, 0.9, |rng| json!(dashed_hex(rng, 6))),
        "dnsSuffix": sometimes(rng, 0.5, |_| json!("corp.contoso.com")),
        "linkSpeed": link_speed,
        "sentQualityEventRatio": ratio(rng, 0.4),
        "receivedQualityEventRatio": ratio(rng, 0.4),
        "delayEventRatio": ratio(rng, 0.2),
        "bandwidthLowEventRatio": ratio(rng, 0.2),
        "traceRouteHops": trace_route_hops,
    });
    add_wifi_details(rng, &mut network, connection_type == "wifi");
    network
}

/// Wi-Fi fields carry values only on Wi-Fi; elsewhere the non-nullable enums say `unknown`.
fn add_wifi_details(rng: &mut TenantRng, network: &mut Value, is_wifi: bool) {
    let details = if is_wifi {
        json!({
            "basicServiceSetIdentifier": dashed_hex(rng, 6),
            "wifiBand": pick_weighted(rng, &[("frequency24GHz", 30), ("frequency50GHz", 60), ("frequency60GHz", 5), ("unknownFutureValue", 5)]),
            "wifiRadioType": pick_weighted(rng, &[("wifi80211n", 20), ("wifi80211ac", 45), ("wifi80211ax", 30), ("wifi80211g", 3), ("unknownFutureValue", 2)]),
            "wifiChannel": pick(rng, &[1, 6, 11, 36, 44, 149]),
            "wifiSignalStrength": rng.random_range(20..=100),
            "wifiBatteryCharge": sometimes(rng, 0.6, |rng| json!(rng.random_range(5..=100))),
            "wifiMicrosoftDriver": "Microsoft Wi-Fi Direct Virtual Adapter",
            "wifiMicrosoftDriverVersion": "10.0.22621.1",
            "wifiVendorDriver": pick(rng, &["Intel(R) Wi-Fi 6 AX201 160MHz", "Realtek RTL8852BE WiFi 6 802.11ax PCIe Adapter"]),
            "wifiVendorDriverVersion": pick(rng, &["22.200.0.6", "6001.15.145.0"]),
        })
    } else {
        json!({
            "basicServiceSetIdentifier": null,
            "wifiBand": "unknown",
            "wifiRadioType": "unknown",
            "wifiChannel": null,
            "wifiSignalStrength": null,
            "wifiBatteryCharge": null,
            "wifiMicrosoftDriver": null,
            "wifiMicrosoftDriverVersion": null,
            "wifiVendorDriver": null,
            "wifiVendorDriverVersion": null,
        })
    };
    let (Value::Object(network), Value::Object(details)) = (network, details) else {
        unreachable!("both are JSON objects built above")
    };
    network.extend(details);
}

/// A Teams media server's network: wired, public, no client-side details.
fn service_network(rng: &mut TenantRng) -> Value {
    let mut network = json!({
        "connectionType": "wired",
        "networkTransportProtocol": "udp",
        "ipAddress": public_address(rng, "52.113"),
        "subnet": null,
        "port": rng.random_range(49_152..65_535),
        "reflexiveIPAddress": null,
        "relayIPAddress": null,
        "relayPort": null,
        "macAddress": null,
        "dnsSuffix": null,
        "linkSpeed": null,
        "sentQualityEventRatio": ratio(rng, 0.05),
        "receivedQualityEventRatio": ratio(rng, 0.05),
        "delayEventRatio": 0,
        "bandwidthLowEventRatio": 0,
        "traceRouteHops": [],
    });
    add_wifi_details(rng, &mut network, false);
    network
}

fn device(rng: &mut TenantRng, is_client: bool) -> Value {
    if !is_client {
        return json!({
            "captureDeviceName": null, "captureDeviceDriver": null, "renderDeviceName": null,
            "renderDeviceDriver": null, "captureNotFunctioningEventRatio": null,
            "cpuInsufficentEventRatio": null, "deviceClippingEventRatio": null,
            "deviceGlitchEventRatio": null, "howlingEventCount": null,
            "initialSignalLevelRootMeanSquare": null, "lowSpeechLevelEventRatio": null,
            "lowSpeechToNoiseEventRatio": null, "micGlitchRate": null, "receivedNoiseLevel": null,
            "receivedSignalLevel": null, "renderMuteEventRatio": null,
            "renderNotFunctioningEventRatio": null, "renderZeroVolumeEventRatio": null,
            "sentNoiseLevel": null, "sentSignalLevel": null, "speakerGlitchRate": null,
        });
    }
    let (capture, render, driver) = pick(
        rng,
        &[
            (
                "Microphone Array (Realtek(R) Audio)",
                "Speakers (Realtek(R) Audio)",
                "Realtek Semiconductor Corp.: 6.0.9235.1",
            ),
            (
                "Headset Microphone (Jabra Evolve2 65)",
                "Headset Earphone (Jabra Evolve2 65)",
                "Microsoft: 10.0.22621.1",
            ),
            (
                "Default input device",
                "Default output device",
                "Microsoft: 5.0.8638.1100",
            ),
            (
                "MacBook Pro Microphone",
                "MacBook Pro Speakers",
                "Apple: 1.0",
            ),
        ],
    );
    json!({
        "captureDeviceName": capture,
        "captureDeviceDriver": sometimes(rng, 0.8, |_| json!(driver)),
        "renderDeviceName": render,
        "renderDeviceDriver": sometimes(rng, 0.8, |_| json!(driver)),
        "captureNotFunctioningEventRatio": ratio(rng, 0.02),
        "cpuInsufficentEventRatio": ratio(rng, 0.05),
        "deviceClippingEventRatio": ratio(rng, 0.05),
        "deviceGlitchEventRatio": ratio(rng, 0.05),
        "howlingEventCount": rng.random_range(0..3),
        "initialSignalLevelRootMeanSquare": sometimes(rng, 0.9, |rng| json!(ratio(rng, 200.0))),
        "lowSpeechLevelEventRatio": ratio(rng, 0.1),
        "lowSpeechToNoiseEventRatio": ratio(rng, 0.1),
        "micGlitchRate": rng.random_range(0..200),
        "receivedNoiseLevel": rng.random_range(-90..-50),
        "receivedSignalLevel": rng.random_range(-30..0),
        "renderMuteEventRatio": ratio(rng, 1.0),
        "renderNotFunctioningEventRatio": ratio(rng, 0.02),
        "renderZeroVolumeEventRatio": ratio(rng, 0.3),
        "sentNoiseLevel": rng.random_range(-90..-50),
        "sentSignalLevel": rng.random_range(-30..0),
        "speakerGlitchRate": rng.random_range(0..4000),
    })
}

fn stream(
    rng: &mut TenantRng,
    kind: MediaKind,
    direction: &str,
    segment_start: DateTime<Utc>,
    segment_length_ms: i64,
) -> Value {
    let start_offset = rng.random_range(0..=segment_length_ms / 10);
    let end_offset = segment_length_ms - rng.random_range(0..=segment_length_ms / 10);
    // Mostly good networks, with a tail past each of CQD's audio thresholds (jitter > 30 ms
    // for about 5 % of streams, round trip > 500 ms for 3 %, packet loss > 0.1 for 2 %).
    let average_jitter = match rng.random_range(1..400_u64) {
        j if j <= 380 => 1 + j / 16,
        j => 31 + (j - 380) * 3,
    };
    let average_round_trip = match rng.random_range(10..1000_u64) {
        r if r <= 970 => 10 + r / 7,
        r => 520 + (r - 970) * 15,
    };
    let average_loss = match rng.random_range(0.0..1.0_f64) {
        v if v < 0.98 => round4(v * 0.03),
        v => round4(0.1 + v * 0.2),
    };
    // Some streams report no packet count: their audio is unclassified.
    let packets = Some(rng.random_range(50..200_000_i64)).filter(|p| *p >= 4_000);
    let mut stream = json!({
        "streamId": rng.random_range(1_000_000_000_u32..4_000_000_000).to_string(),
        "streamDirection": direction,
        "startDateTime": graph_timestamp(time_after(rng, segment_start, start_offset, 0.02)),
        "endDateTime": graph_timestamp(time_after(rng, segment_start, end_offset, 0.02)),
        "averageJitter": iso_duration(average_jitter),
        "maxJitter": iso_duration(average_jitter + rng.random_range(0..60)),
        "averagePacketLossRate": average_loss,
        "maxPacketLossRate": round4(average_loss + ratio(rng, 0.1)),
        "averageRoundTripTime": iso_duration(average_round_trip),
        "maxRoundTripTime": iso_duration(average_round_trip + rng.random_range(0..400)),
        "packetUtilization": packets,
        "averageBandwidthEstimate": sometimes(rng, 0.9, |rng| json!(rng.random_range(50_000..40_000_000_i64))),
        "wasMediaBypassed": rng.random_bool(0.02),
    });
    let kind_specific = match kind {
        MediaKind::Audio => audio_metrics(rng),
        MediaKind::Video | MediaKind::ScreenSharing => video_metrics(rng),
    };
    let (Value::Object(stream_fields), Value::Object(kind_fields)) = (&mut stream, kind_specific)
    else {
        unreachable!("both are JSON objects built above")
    };
    stream_fields.extend(kind_fields);
    stream
}

/// Audio-only stream metrics, with the video metrics null.
fn audio_metrics(rng: &mut TenantRng) -> Value {
    let concealed = ratio(rng, 0.08);
    let network_jitter = rng.random_range(5..300);
    json!({
        "audioCodec": pick_weighted(rng, &[("satin", 30), ("opus", 35), ("silkWide", 10), ("g722", 8), ("pcmu", 6), ("satinFullband", 5), ("unknown", 4), ("unknownFutureValue", 2)]),
        "averageAudioDegradation": sometimes(rng, 0.7, |rng| json!(ratio(rng, 3.0))),
        "averageAudioNetworkJitter": iso_duration(network_jitter),
        "maxAudioNetworkJitter": iso_duration(network_jitter + rng.random_range(0..300)),
        "averageRatioOfConcealedSamples": sometimes(rng, 0.8, |_| json!(concealed)),
        "maxRatioOfConcealedSamples": sometimes(rng, 0.8, |rng| json!(round4(concealed + ratio(rng, 0.1)))),
        "isAudioForwardErrorCorrectionUsed": rng.random_bool(0.4),
        "postForwardErrorCorrectionPacketLossRate": sometimes(rng, 0.8, |rng| json!(ratio(rng, 0.02))),
        "videoCodec": null,
        "averageVideoFrameRate": null,
        "averageReceivedFrameRate": null,
        "averageVideoFrameLossPercentage": null,
        "averageVideoPacketLossRate": null,
        "lowFrameRateRatio": null,
        "lowVideoProcessingCapabilityRatio": null,
        "averageFreezeDuration": null,
        "rmsFreezeDuration": null,
    })
}

/// Video-only stream metrics, with the audio metrics null.
fn video_metrics(rng: &mut TenantRng) -> Value {
    // A long freeze now and then, so consumers meet minute-sized durations (`PT1M2.5S`).
    let freeze_ms = if rng.random_bool(0.03) {
        rng.random_range(60_000..90_000)
    } else {
        rng.random_range(0..2_000)
    };
    let frame_rate = (rng.random_range(7.0..30.0_f64) * 100.0).round() / 100.0;
    // Frame loss past CQD's 50 % for about 5 % of streams; about 3 % report neither frame
    // loss nor frame rate (unclassified), 3 % only the frame rate.
    let frame_loss = rng.random_range(0.0..5.0_f64);
    let (frame_loss, sent_frame_rate) = match frame_loss {
        f if f < 0.15 => (Value::Null, Value::Null),
        f if f < 0.3 => (Value::Null, json!(frame_rate)),
        f if f >= 4.75 => (json!(round4(50.0 + f * 4.0)), json!(frame_rate)),
        f => (json!(round4(f)), json!(frame_rate)),
    };
    json!({
        "audioCodec": null,
        "averageAudioDegradation": null,
        "averageAudioNetworkJitter": null,
        "maxAudioNetworkJitter": null,
        "averageRatioOfConcealedSamples": null,
        "maxRatioOfConcealedSamples": null,
        "isAudioForwardErrorCorrectionUsed": null,
        "postForwardErrorCorrectionPacketLossRate": null,
        "videoCodec": pick_weighted(rng, &[("h264", 40), ("h264s", 10), ("av1", 15), ("xrtvc1", 15), ("rtVideo", 10), ("h265", 5), ("unknown", 3), ("unknownFutureValue", 2)]),
        "averageVideoFrameRate": sent_frame_rate,
        "averageReceivedFrameRate": sometimes(rng, 0.8, |_| json!(frame_rate)),
        "averageVideoFrameLossPercentage": frame_loss,
        "averageVideoPacketLossRate": ratio(rng, 0.05),
        "lowFrameRateRatio": ratio(rng, 0.3),
        "lowVideoProcessingCapabilityRatio": ratio(rng, 0.2),
        "averageFreezeDuration": sometimes(rng, 0.8, |_| json!(iso_duration(freeze_ms))),
        "rmsFreezeDuration": sometimes(rng, 0.8, |_| json!(iso_duration(freeze_ms + freeze_ms / 3))),
    })
}
