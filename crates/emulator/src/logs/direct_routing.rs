//! `directRoutingLogRow`s of `getDirectRoutingCalls`: calls through the tenant's session
//! border controllers, in both `callType` vocabularies Graph uses (`dr_in`, `dr_out`, …
//! and `ByotIn`/`ByotOut`). Successful calls end with `BYE` and carry the documented
//! `failureDateTime` sentinel `0001-01-01T00:00:00Z`; failed ones carry a SIP 4xx/5xx code,
//! its phrase, a sub-reason, their failure time and no duration. Beta rows add the
//! `callLogRow` base properties, `userCountryCode` and `transferorCorrelationId`.
//! Pure data generation; touches nothing else.

use chrono::{DateTime, Duration, TimeDelta, Utc};
use rand::Rng;
use serde_json::{Value, json};

use super::people::{LogUser, TENANT_COUNTRY, mask, other_country, outside_number, shown_number};
use super::{LogTenant, for_version};
use crate::ApiVersion;
use crate::tenant::DirectRoutingCall;
use crate::tenant::values::{TenantRng, graph_timestamp, guid, pick, pick_weighted};

/// Seed tag of the Direct Routing log's row streams.
pub const TAG: u64 = 0xD12;

/// What Graph writes in `failureDateTime` of a call that did not fail.
const NO_FAILURE: &str = "0001-01-01T00:00:00Z";

/// Properties `/beta/` adds.
const BETA_ONLY: [&str; 4] = [
    "transferorCorrelationId",
    "userCountryCode",
    "otherPartyCountryCode",
    "administrativeUnitInfos",
];

/// The tenant's session border controllers.
const TRUNKS: [&str; 4] = [
    "sbc1.contoso.com",
    "sbc2.contoso.com",
    "sbc-eu.contoso.com",
    "sbc-apac.contoso.com",
];
/// Azure regions as the log abbreviates them.
const LOCATIONS: [&str; 7] = ["USWE", "USEA", "EUNO", "EUWE", "APSE", "JPEA", "AUEA"];

/// How failed calls end: SIP code and phrase.
const FAILURES: [(u16, &str); 7] = [
    (404, "Not Found"),
    (408, "Request Timeout"),
    (480, "Temporarily Unavailable"),
    (486, "Busy Here"),
    (487, "Request Terminated"),
    (500, "Server Internal Error"),
    (503, "Service Unavailable"),
];

/// A `callType`: its name, whether it is inbound, and whether a user is involved (the
/// `*_ucap` types are resource accounts).
const CALL_TYPES: [((&str, bool, bool), u32); 10] = [
    (("dr_in", true, true), 28),
    (("dr_out", false, true), 28),
    (("ByotIn", true, true), 8),
    (("ByotOut", false, true), 8),
    (("dr_out_user_conf", false, true), 4),
    (("dr_out_user_transfer", false, true), 5),
    (("dr_out_user_forwarding", false, true), 5),
    (("dr_emergency_out", false, true), 1),
    (("dr_in_ucap", true, false), 9),
    (("dr_out_ucap", false, false), 4),
];

/// The Direct Routing row of a call that started at `start`; `linked` is the tenant's
/// call record of the same call, if it has one.
pub fn row(
    logs: &LogTenant,
    start: DateTime<Utc>,
    linked: Option<&DirectRoutingCall>,
    rng: &mut TenantRng,
    version: ApiVersion,
) -> Value {
    let (call_type, inbound, has_user) = pick_weighted(rng, &CALL_TYPES);
    let user = has_user.then(|| LogUser::random(&logs.directory, logs.seed, rng));
    let home = user.as_ref().map_or(TENANT_COUNTRY, |user| user.country);
    let other = other_country(rng, home);
    let own_number = user
        .as_ref()
        .map_or_else(|| "+14255550150".to_owned(), |user| user.number.clone());
    let outside = outside_number(rng, other);
    let outside = shown_number(rng, outside);
    let (caller, callee) = if inbound {
        (outside, own_number)
    } else {
        (own_number, outside)
    };
    // SBCs often hide the tail of both numbers.
    let (caller, callee) = if rng.random_bool(0.3) {
        (mask(&caller), mask(&callee))
    } else {
        (caller, callee)
    };
    let invite = start - TimeDelta::milliseconds(rng.random_range(200..6_000));
    let outcome = Outcome::draw(rng, start, linked);
    // The call that transferred or forwarded this one.
    let transferor =
        (call_type.ends_with("_transfer") || call_type.ends_with("_forwarding")).then(|| guid(rng));
    let correlation_id = match linked {
        Some(call) => call.id.clone(),
        None => guid(rng),
    };
    let row = json!({
        "id": guid(rng),
        "correlationId": correlation_id,
        "userId": user.as_ref().map(|user| &user.party.id),
        "userPrincipalName": user.as_ref().map(|user| &user.party.user_principal_name),
        "userDisplayName": user.as_ref().map(|user| &user.party.display_name),
        "startDateTime": graph_timestamp(start),
        "inviteDateTime": graph_timestamp(invite),
        "failureDateTime": outcome.failure,
        "endDateTime": graph_timestamp(outcome.end),
        "duration": outcome.duration,
        "callType": call_type,
        "successfulCall": outcome.successful,
        "callerNumber": caller,
        "calleeNumber": callee,
        "mediaPathLocation": pick(rng, &LOCATIONS),
        "signalingLocation": pick(rng, &LOCATIONS),
        "finalSipCode": outcome.sip_code,
        "callEndSubReason": outcome.sub_reason,
        "finalSipCodePhrase": outcome.phrase,
        "trunkFullyQualifiedDomainName": pick(rng, &TRUNKS),
        "mediaBypassEnabled": rng.random_bool(0.4),
        "transferorCorrelationId": transferor,
        "userCountryCode": user.as_ref().map(|user| user.country.code),
        "otherPartyCountryCode": other.code,
        "administrativeUnitInfos": user.as_ref().map_or(json!([]), LogUser::administrative_units),
    });
    for_version(row, version, &BETA_ONLY)
}

/// How the call ended: answered and hung up, or failed with a SIP code.
struct Outcome {
    successful: bool,
    end: DateTime<Utc>,
    duration: u32,
    /// `failureDateTime`: the failure's time, or Graph's "no failure" value.
    failure: String,
    sip_code: u16,
    phrase: &'static str,
    sub_reason: u32,
}

impl Outcome {
    /// A call with a call record (`linked`) was answered and lasts as long as the record.
    fn draw(rng: &mut TenantRng, start: DateTime<Utc>, linked: Option<&DirectRoutingCall>) -> Self {
        let successful = linked.is_some() || rng.random_bool(0.8);
        if successful {
            let duration = match linked {
                Some(call) => u32::try_from((call.end - call.start).num_seconds()).unwrap_or(0),
                None => rng.random_range(1..3_600),
            };
            let (sip_code, sub_reason) = pick(rng, &[(0, 540_000), (200, 540_000), (0, 0)]);
            Outcome {
                successful,
                end: start + Duration::seconds(i64::from(duration)),
                duration,
                failure: NO_FAILURE.to_owned(),
                sip_code,
                phrase: "BYE",
                sub_reason,
            }
        } else {
            let (sip_code, phrase) = pick(rng, &FAILURES);
            let failed = start + TimeDelta::milliseconds(rng.random_range(0..30_000));
            Outcome {
                successful,
                end: failed,
                duration: 0,
                failure: graph_timestamp(failed),
                sip_code,
                phrase,
                sub_reason: 560_000 + u32::from(sip_code),
            }
        }
    }
}
