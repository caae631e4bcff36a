//! `pstnCallLogRow`s of `getPstnCalls`: Calling Plan and Operator Connect calls of users
//! (`user_in`, `user_out`, transfers, forwards, escalations), audio-conferencing dial-ins
//! and dial-outs (`conf_in`, `conf_out`, with `conferenceId`) and calls of service numbers
//! (`ucap_in`, `ucap_out`, without a user). Inbound calls cost nothing; outbound ones are
//! charged in the user's currency. Beta rows add the `callLogRow` base properties and the
//! client's addresses.
//! Pure data generation; touches nothing else.

use chrono::{DateTime, Duration, Utc};
use rand::Rng;
use serde_json::{Value, json};

use super::people::{
    ClientAddresses, Country, LogUser, TENANT_COUNTRY, call_charge, connection_charge,
    destination_context, mask, other_country, outside_number, shown_number,
};
use super::{LogTenant, for_version};
use crate::ApiVersion;
use crate::tenant::values::{TenantRng, graph_timestamp, guid, pick, pick_weighted};

/// Seed tag of the PSTN log's row streams.
pub const TAG: u64 = 0x9057;

/// Properties `/beta/` adds (the `callLogRow` base and the client addresses).
const BETA_ONLY: [&str; 6] = [
    "otherPartyCountryCode",
    "clientLocalIpV4Address",
    "clientLocalIpV6Address",
    "clientPublicIpV4Address",
    "clientPublicIpV6Address",
    "administrativeUnitInfos",
];

/// Conference bridge numbers of the tenant (audio conferencing).
const BRIDGE_NUMBERS: [&str; 2] = ["+14255550100", "+18005550111"];
/// Service numbers of resource accounts (auto attendants, call queues).
const SERVICE_NUMBERS: [(&str, &str); 3] = [
    ("+14255550150", "Main Line Auto Attendant"),
    ("+18005550199", "Helpdesk Call Queue"),
    ("+442079460150", "Reception"),
];

/// Who placed or took the call, and what kind of number answered for the tenant.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Party {
    User,
    Conference,
    Service,
}

/// A `callType` and what it implies.
#[derive(Clone, Copy)]
struct CallType {
    name: &'static str,
    party: Party,
    outbound: bool,
}

const CALL_TYPES: [(CallType, u32); 9] = [
    (call_type("user_in", Party::User, false), 26),
    (call_type("user_out", Party::User, true), 30),
    (call_type("user_out_conf", Party::User, true), 2),
    (call_type("user_out_transfer", Party::User, true), 4),
    (call_type("user_out_forwarding", Party::User, true), 4),
    (call_type("conf_in", Party::Conference, false), 10),
    (call_type("conf_out", Party::Conference, true), 10),
    (call_type("ucap_in", Party::Service, false), 10),
    (call_type("ucap_out", Party::Service, true), 4),
];

const fn call_type(name: &'static str, party: Party, outbound: bool) -> CallType {
    CallType {
        name,
        party,
        outbound,
    }
}

/// The PSTN row of a call that started at `start`.
pub fn row(
    logs: &LogTenant,
    start: DateTime<Utc>,
    rng: &mut TenantRng,
    version: ApiVersion,
) -> Value {
    let call_type = pick_weighted(rng, &CALL_TYPES);
    // Conference charges are billed to the meeting organizer.
    let user = match call_type.party {
        Party::User => Some(LogUser::random(&logs.directory, logs.seed, rng)),
        Party::Conference => Some(LogUser::random_organizer(&logs.directory, logs.seed, rng)),
        Party::Service => None,
    };
    let home = user.as_ref().map_or(TENANT_COUNTRY, |user| user.country);
    let other = other_country(rng, home);
    let (own_number, display_name) = own_number(rng, call_type, user.as_ref());
    let (caller, callee) = caller_and_callee(rng, call_type, own_number, other);
    let duration: u32 = if rng.random_bool(0.2) {
        rng.random_range(1..30)
    } else {
        rng.random_range(30..3_600)
    };
    let end = start + Duration::seconds(i64::from(duration));
    let (charge, connection, context) = if call_type.outbound {
        (
            call_charge(rng, home, other, duration),
            connection_charge(rng, home),
            json!(destination_context(home, other)),
        )
    } else {
        (0.0, 0.0, Value::Null)
    };
    let line = Line::draw(rng, call_type, home, other);
    let conference_id = (call_type.party == Party::Conference)
        .then(|| format!("{:09}", rng.random_range(100_000_000..1_000_000_000u32)));
    let call_id = call_id(rng);
    let addresses = ClientAddresses::draw(rng, call_type.party == Party::User);
    let row = json!({
        "id": guid(rng),
        "callId": call_id,
        "userId": user.as_ref().map(|user| &user.party.id),
        "userPrincipalName": user.as_ref().map(|user| &user.party.user_principal_name),
        "userDisplayName": display_name,
        "startDateTime": graph_timestamp(start),
        "endDateTime": graph_timestamp(end),
        "duration": duration,
        "charge": charge,
        "callType": call_type.name,
        "currency": home.currency,
        "calleeNumber": callee,
        "usageCountryCode": home.code,
        "tenantCountryCode": TENANT_COUNTRY.code,
        "connectionCharge": connection,
        "callerNumber": caller,
        "destinationContext": context,
        "destinationName": other.name,
        "conferenceId": conference_id,
        "licenseCapability": line.license,
        "inventoryType": line.inventory_type,
        "operator": line.operator,
        "callDurationSource": line.duration_source,
        "otherPartyCountryCode": other.code,
        "clientLocalIpV4Address": addresses.local_v4,
        "clientLocalIpV6Address": addresses.local_v6,
        "clientPublicIpV4Address": addresses.public_v4,
        "clientPublicIpV6Address": addresses.public_v6,
        "administrativeUnitInfos": user.as_ref().map_or(json!([]), LogUser::administrative_units),
    });
    for_version(row, version, &BETA_ONLY)
}

/// The tenant's own number of the call (the user's, a conference bridge's or a service's)
/// and the display name the row shows.
fn own_number(
    rng: &mut TenantRng,
    call_type: CallType,
    user: Option<&LogUser>,
) -> (String, Option<String>) {
    let user_name = || user.and_then(|user| user.party.display_name.clone());
    match call_type.party {
        Party::User => (
            user.map_or_else(String::new, |user| user.number.clone()),
            user_name(),
        ),
        Party::Conference => (pick(rng, &BRIDGE_NUMBERS).to_owned(), user_name()),
        Party::Service => {
            let (number, name) = pick(rng, &SERVICE_NUMBERS);
            (number.to_owned(), Some(name.to_owned()))
        }
    }
}

/// Caller and callee numbers: the own number and one outside `other`, by direction.
fn caller_and_callee(
    rng: &mut TenantRng,
    call_type: CallType,
    own_number: String,
    other: &Country,
) -> (String, String) {
    let outside = outside_number(rng, other);
    if call_type.outbound {
        // Outbound numbers are dialled, so they are numbers; some are masked.
        let callee = if rng.random_bool(0.1) {
            mask(&outside)
        } else {
            outside
        };
        (own_number, callee)
    } else {
        (shown_number(rng, outside), own_number)
    }
}

/// The line's licence, inventory and carrier columns.
struct Line {
    license: &'static str,
    inventory_type: &'static str,
    operator: &'static str,
    duration_source: &'static str,
}

impl Line {
    fn draw(rng: &mut TenantRng, call_type: CallType, home: &Country, other: &Country) -> Self {
        let license = match call_type.party {
            Party::User if home.code != other.code => pick(rng, &["MCOPSTN2", "MCOPSTNU"]),
            Party::User => pick(rng, &["MCOPSTN1", "MCOPSTN2", "MCOPSTNU"]),
            Party::Conference => "MCOMEETADV",
            Party::Service => "MCOEV_VIRTUALUSER",
        };
        let inventory_type = match call_type.party {
            Party::User => "Subscriber",
            _ => pick(rng, &["Service", "Toll free"]),
        };
        let (operator, duration_source) = if rng.random_bool(0.85) {
            ("Microsoft", "microsoft")
        } else {
            // Operator Connect carriers report the duration themselves.
            (
                pick(rng, &["Contoso Telecom", "Northwind Carrier"]),
                "operator",
            )
        };
        Line {
            license,
            inventory_type,
            operator,
            duration_source,
        }
    }
}

/// A SIP-style call id: `<n>_<n>@<documentation address>`.
fn call_id(rng: &mut TenantRng) -> String {
    format!(
        "{}_{}@{}.{}",
        rng.random::<u32>(),
        rng.random_range(100_000_000..1_000_000_000u32),
        pick(rng, &["192.0.2", "198.51.100", "203.0.113"]),
        rng.random_range(1..255)
    )
}
