//! Session and segment endpoints: `participantEndpoint` (a client with its user agent, CPU
//! and optional feedback) and `serviceEndpoint` (a Teams service with its role).
//! Pure data generation; touches nothing else.

use rand::Rng;
use serde_json::{Value, json};

use super::directory::{Party, PartyKind};
use super::values::{TenantRng, pick, pick_weighted, sometimes};

/// The Microsoft Teams client's Entra application id.
const TEAMS_CLIENT_APP_ID: &str = "1fec8e78-bce4-4aaf-ab1b-5451cc387264";

/// A kind of client software, with the user-agent header it sends.
#[derive(Clone, Copy)]
struct ClientProfile {
    platform: &'static str,
    product_family: &'static str,
    header_value: &'static str,
    application_version: &'static str,
    has_cpu: bool,
}

const CLIENT_PROFILES: [(ClientProfile, u32); 11] = [
    (
        profile(
            "windows",
            "teams",
            "SkypeSpaces/1415/25060.205.3499.6849/os=windows; osVer=10; deviceType=computer",
            "25060.205.3499.6849",
            true,
        ),
        40,
    ),
    (
        profile(
            "macOS",
            "teams",
            "SkypeSpaces/1415/25060.205.3499.6849/os=mac; osVer=14.5; deviceType=computer",
            "25060.205.3499.6849",
            true,
        ),
        14,
    ),
    (
        profile(
            "web",
            "teams",
            "SkypeSpaces/1415/1.0.0.2025062401/os=windows; osVer=10; deviceType=computer; browser=msedge; browserVer=138.0",
            "1.0.0.2025062401",
            true,
        ),
        8,
    ),
    (
        profile(
            "iOS",
            "teams",
            "SkypeSpaces/1415/7.12.1/os=ios; osVer=18.5; deviceType=phone",
            "7.12.1",
            false,
        ),
        10,
    ),
    (
        profile(
            "android",
            "teams",
            "SkypeSpaces/1415/1416/1.0.0.2025121201/os=android; osVer=14; deviceType=phone",
            "1416/1.0.0.2025121201",
            false,
        ),
        10,
    ),
    (
        profile(
            "roomSystem",
            "teams",
            "SkypeSpaces/1415/1449/1.0.96.2025052701/os=android; deviceType=teamsroom",
            "1449/1.0.96.2025052701",
            true,
        ),
        4,
    ),
    (
        profile(
            "ipPhone",
            "teams",
            "SkypeSpaces/1415/1449/1.0.94.2025031501/os=android; deviceType=ipphone",
            "1449/1.0.94.2025031501",
            false,
        ),
        3,
    ),
    (
        profile(
            "surfaceHub",
            "teams",
            "SkypeSpaces/1415/25060.205.3499.6849/os=windows; deviceType=surfacehub",
            "25060.205.3499.6849",
            true,
        ),
        1,
    ),
    (
        profile(
            "windows",
            "skypeForBusiness",
            "UCCAPI/16.0.12527.20122 OC/16.0.12527.20194 (Skype for Business)",
            "16.0.12527.20194",
            true,
        ),
        5,
    ),
    (
        profile(
            "android",
            "skypeForBusiness",
            "RTCC/7.0.0.0 UCWA/7.0.0.0 AndroidLync/6.25.0.27 (SM-G930U Android 8.0.0)",
            "6.25.0.27",
            false,
        ),
        2,
    ),
    // Clients Graph cannot classify, including families newer than the caller's enum view.
    (
        profile(
            "unknown",
            "unknownFutureValue",
            "CallSignalingAgent/1.0 (unrecognised)",
            "1.0",
            false,
        ),
        3,
    ),
];

const fn profile(
    platform: &'static str,
    product_family: &'static str,
    header_value: &'static str,
    application_version: &'static str,
    has_cpu: bool,
) -> ClientProfile {
    ClientProfile {
        platform,
        product_family,
        header_value,
        application_version,
        has_cpu,
    }
}

const CPU_MODELS: [(&str, u32); 5] = [
    ("Intel(R) Core(TM) i7-1185G7 @ 3.00GHz", 2995),
    ("Intel(R) Xeon(R) Platinum 8272CL CPU @ 2.60GHz", 2594),
    ("AMD EPYC 7452 32-Core Processor", 2346),
    ("Apple M2", 3504),
    ("AMD Ryzen 7 PRO 5850U with Radeon Graphics", 1897),
];

/// Adds `"@odata.type"` to an object, except in the few percent of cases where Graph
/// leaves it out and consumers must infer the subtype from the fields.
fn typed(rng: &mut TenantRng, odata_type: &str, mut object: Value) -> Value {
    if rng.random_bool(0.97) {
        object["@odata.type"] = json!(odata_type);
    }
    object
}

/// The endpoint through which `party` took part: a client for people, the PSTN
/// interconnect (a service) for phone numbers, a bot service for resource accounts.
pub fn party_endpoint(rng: &mut TenantRng, party: &Party, pstn_role: &str) -> Value {
    match party.kind {
        PartyKind::Phone => service_endpoint(rng, pstn_role),
        PartyKind::ApplicationInstance => service_endpoint(rng, "customBot"),
        _ => participant_endpoint(rng, party),
    }
}

fn participant_endpoint(rng: &mut TenantRng, party: &Party) -> Value {
    let client = match party.kind {
        // Azure Communication Services SDK clients; their family is only named with
        // `Prefer: include-unknown-enum-members`, which the tenant does not model.
        PartyKind::AcsUser => profile(
            "unknown",
            "unknownFutureValue",
            "azsdk-js-communication-calling/1.31.2",
            "1.31.2",
            true,
        ),
        _ => pick_weighted(rng, &CLIENT_PROFILES),
    };
    let (cpu_name, cpu_speed) = pick(rng, &CPU_MODELS);
    let has_cpu = client.has_cpu;
    let communication_service_id =
        (party.kind == PartyKind::AcsUser).then(|| super::values::guid(rng));
    let user_agent = json!({
            "headerValue": client.header_value,
            "applicationVersion": client.application_version,
            "platform": client.platform,
            "productFamily": client.product_family,
            "azureADAppId": (client.product_family == "teams").then_some(TEAMS_CLIENT_APP_ID),
            "communicationServiceId": communication_service_id,
    });
    let user_agent = typed(
        rng,
        "#microsoft.graph.callRecords.clientUserAgent",
        user_agent,
    );
    let name = format!("machineName_{}", rng.random_range(1..10_000));
    let cores = pick(rng, &[2, 4, 8, 12, 16]);
    typed(
        rng,
        "#microsoft.graph.callRecords.participantEndpoint",
        json!({
            "name": name,
            "cpuName": has_cpu.then_some(cpu_name),
            "cpuCoresCount": has_cpu.then_some(cores),
            "cpuProcessorSpeedInMhz": has_cpu.then_some(cpu_speed),
            "userAgent": user_agent,
            "associatedIdentity": party.associated_identity(),
            "feedback": null,
        }),
    )
}

/// A Teams service endpoint (conference server, PSTN gateway, ...) in `role`.
pub fn service_endpoint(rng: &mut TenantRng, role: &str) -> Value {
    let user_agent = json!({
        "headerValue": sometimes(rng, 0.7, |_| json!("Microsoft.Skype.MediaProcessor/2025.28.1.4")),
        "applicationVersion": null,
        "role": role,
    });
    let user_agent = typed(
        rng,
        "#microsoft.graph.callRecords.serviceUserAgent",
        user_agent,
    );
    typed(
        rng,
        "#microsoft.graph.callRecords.serviceEndpoint",
        json!({ "userAgent": user_agent }),
    )
}

/// The session-level copy of a client endpoint, where the user's star rating lives.
pub fn with_feedback(rng: &mut TenantRng, mut endpoint: Value) -> Value {
    if endpoint.get("feedback").is_some() && rng.random_bool(0.12) {
        let rating = pick(
            rng,
            &[
                "notRated",
                "bad",
                "poor",
                "fair",
                "good",
                "excellent",
                "unknownFutureValue",
            ],
        );
        let tokens: serde_json::Map<String, Value> = [
            "NoSound",
            "OtherNoSound",
            "Echo",
            "Noisy",
            "LowVolume",
            "Stopped",
            "DistortedSound",
            "Interruptions",
        ]
        .into_iter()
        .map(|token| (token.to_owned(), json!(rng.random_bool(0.15))))
        .collect();
        endpoint["feedback"] = json!({
            "rating": rating,
            "text": sometimes(rng, 0.3, |rng| json!(pick(rng, &["The audio kept cutting out.", "Great call", "Could not hear the other side"]))),
            "tokens": tokens,
        });
    }
    endpoint
}
