//! The beta-only logs: `smsLogRow`s (`getSmsLog`), `pstnBlockedUsersLogRow`s
//! (`getPstnBlockedUsersLog`, `userBlockMode` capitalised as Microsoft's sample shows it)
//! and the `pstnOnlineMeetingDialoutReport` (`getPstnOnlineMeetingDialoutReport`), which
//! aggregates the `conf_out` PSTN rows per organizer, usage location, destination context
//! and currency.
//! Pure data generation; touches nothing else.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde_json::{Value, json};

use super::LogTenant;
use super::people::{
    LogUser, TENANT_COUNTRY, amount, destination_context, from_ten_thousandths, other_country,
    outside_number, to_ten_thousandths,
};
use crate::tenant::values::{TenantRng, graph_timestamp, guid, pick, pick_weighted};

/// Seed tag of the SMS log's row streams.
pub const SMS_TAG: u64 = 0x5315;
/// Seed tag of the blocked-users log's row streams.
pub const BLOCKED_TAG: u64 = 0xB10C;

/// An SMS a user sent or received at `sent`.
pub fn sms_row(logs: &LogTenant, sent: DateTime<Utc>, rng: &mut TenantRng) -> Value {
    let user = LogUser::random(&logs.directory, logs.seed, rng);
    let other = other_country(rng, user.country);
    let outside = outside_number(rng, other);
    let outbound = rng.random_bool(0.6);
    let (sms_type, source, destination) = if outbound {
        ("sms_out", user.number.clone(), outside)
    } else {
        ("sms_in", outside, user.number.clone())
    };
    let units: u32 = pick_weighted(rng, &[(1, 85), (2, 12), (3, 3)]);
    // Received messages are free.
    let charge = if outbound {
        amount(rng, 0.0075 * f64::from(units))
    } else {
        0.0
    };
    json!({
        "id": guid(rng),
        "smsId": guid(rng),
        "userId": user.party.id,
        "userPrincipalName": user.party.user_principal_name,
        "userDisplayName": user.party.display_name,
        "userCountryCode": user.country.code,
        "tenantCountryCode": TENANT_COUNTRY.code,
        "sourceNumber": source,
        "destinationNumber": destination,
        "sentDateTime": graph_timestamp(sent),
        "callCharge": charge,
        "currency": user.country.currency,
        "smsType": sms_type,
        "destinationContext": destination_context(user.country, other),
        "destinationName": other.name,
        "otherPartyCountryCode": other.code,
        "licenseCapability": "MCOSMS1",
        "smsUnits": units,
        "administrativeUnitInfos": user.administrative_units(),
    })
}

/// A user blocked from (or allowed back to) PSTN calling at `at`.
pub fn blocked_user_row(logs: &LogTenant, at: DateTime<Utc>, rng: &mut TenantRng) -> Value {
    let user = LogUser::random(&logs.directory, logs.seed, rng);
    let blocked = rng.random_bool(0.6);
    let (mode, reason) = if blocked {
        (
            "Blocked",
            pick(
                rng,
                &["High Overall Usage", "Suspected Fraud", "Tenant Requested"],
            ),
        )
    } else {
        ("Unblocked", pick(rng, &["Tenant Requested", "Remediated"]))
    };
    json!({
        "userId": user.party.id,
        "userPrincipalName": user.party.user_principal_name,
        "userDisplayName": user.party.display_name,
        "blockDateTime": graph_timestamp(at),
        "userTelephoneNumber": user.number,
        "userBlockMode": mode,
        "blockReason": reason,
        "remediationId": guid(rng),
    })
}

/// Running totals of one report line.
#[derive(Default)]
struct Totals {
    calls: u32,
    seconds: u32,
    /// Charges plus connection fees, in ten-thousandths (summed exactly).
    charge: i64,
    /// `[userDisplayName, userPrincipalName]` of the organizer.
    names: [Value; 2],
}

/// The dial-out report over `pstn_rows` (the v1.0 PSTN rows of the window): one line per
/// organizer, usage location, destination context and currency, ordered by those keys.
pub fn dialout_report(pstn_rows: &[Value]) -> Vec<Value> {
    let mut lines: BTreeMap<[String; 4], Totals> = BTreeMap::new();
    for row in pstn_rows.iter().filter(|row| row["callType"] == "conf_out") {
        let text = |key: &str| row[key].as_str().unwrap_or_default().to_owned();
        let key = [
            text("userId"),
            text("usageCountryCode"),
            text("destinationContext"),
            text("currency"),
        ];
        let totals = lines.entry(key).or_default();
        totals.calls += 1;
        totals.seconds += row["duration"].as_u64().map_or(0, |seconds| seconds as u32);
        totals.charge += ["charge", "connectionCharge"]
            .iter()
            .map(|key| to_ten_thousandths(row[*key].as_f64().unwrap_or(0.0)))
            .sum::<i64>();
        totals.names = [
            row["userDisplayName"].clone(),
            row["userPrincipalName"].clone(),
        ];
    }
    lines
        .into_iter()
        .map(|([user_id, location, context, currency], totals)| {
            let [display_name, principal_name] = totals.names;
            json!({
                "userId": user_id,
                "userPrincipalName": principal_name,
                "userDisplayName": display_name,
                "usageLocation": location,
                "destinationContext": context,
                "currency": currency,
                "totalCalls": totals.calls,
                "totalCallCharge": from_ten_thousandths(totals.charge),
                "totalCallSeconds": totals.seconds,
            })
        })
        .collect()
}
