//! Who appears in the PSTN logs and how they are written: the tenant's users with a usage
//! country, currency and phone number each (fixed by directory index), outside numbers,
//! masked and non-E.164 numbers, money amounts as Graph's JSON decimals, and the
//! documentation-range IP addresses of the beta rows.
//! Pure data generation over a caller-supplied RNG; touches nothing else.

use rand::Rng;
use serde_json::{Value, json};

use crate::tenant::directory::{DIRECTORY_SIZE, Directory, Party};
use crate::tenant::values::{TenantRng, mix, pick, pick_weighted};

/// A country a user works in or a number belongs to; countries are the same when their
/// codes are.
#[derive(Debug)]
pub struct Country {
    /// ISO 3166 alpha-2, as `usageCountryCode` and friends carry it.
    pub code: &'static str,
    /// As `destinationName` shows it.
    pub name: &'static str,
    /// ISO 4217 currency of charges billed to users there.
    pub currency: &'static str,
    dial_prefix: &'static str,
    /// Digits after the prefix in a national number.
    national_digits: usize,
    /// Rough charge of one outbound minute in `currency`, for plausible amounts.
    minute_rate: f64,
}

/// The tenant is a US company with staff in five other countries (so charges come in USD,
/// EUR, GBP, JPY and AUD).
pub const COUNTRIES: [Country; 6] = [
    Country {
        code: "US",
        name: "United States",
        currency: "USD",
        dial_prefix: "+1",
        national_digits: 10,
        minute_rate: 0.02,
    },
    Country {
        code: "GB",
        name: "United Kingdom",
        currency: "GBP",
        dial_prefix: "+44",
        national_digits: 10,
        minute_rate: 0.018,
    },
    Country {
        code: "DE",
        name: "Germany",
        currency: "EUR",
        dial_prefix: "+49",
        national_digits: 11,
        minute_rate: 0.019,
    },
    Country {
        code: "FR",
        name: "France",
        currency: "EUR",
        dial_prefix: "+33",
        national_digits: 9,
        minute_rate: 0.019,
    },
    Country {
        code: "JP",
        name: "Japan",
        currency: "JPY",
        dial_prefix: "+81",
        national_digits: 10,
        minute_rate: 3.1,
    },
    Country {
        code: "AU",
        name: "Australia",
        currency: "AUD",
        dial_prefix: "+61",
        national_digits: 9,
        minute_rate: 0.03,
    },
];

/// The tenant's own country (`tenantCountryCode`, and the billing country of service
/// numbers that have no user).
pub const TENANT_COUNTRY: &Country = &COUNTRIES[0];

/// How many users organise the meetings that dial out.
const DIAL_OUT_ORGANIZERS: u32 = 16;

/// International minutes cost this many times a domestic one.
const INTERNATIONAL_FACTOR: f64 = 6.0;

/// A user of the tenant as the PSTN logs see them.
pub struct LogUser {
    pub party: Party,
    pub country: &'static Country,
    /// The user's own (Calling Plan or Direct Routing) number.
    pub number: String,
}

impl LogUser {
    /// User `index` of the directory; country and number are fixed by the index so the same
    /// person always bills in the same currency.
    pub fn new(directory: &Directory, seed: u64, index: u32) -> Self {
        let hash = mix(&[seed, 0x106, u64::from(index)]);
        let country = &COUNTRIES[pick_by_hash(hash, &[50, 15, 10, 10, 8, 7])];
        Self {
            party: directory.user(index),
            country,
            number: national_number(country, hash >> 8),
        }
    }

    /// A random user of the tenant.
    pub fn random(directory: &Directory, seed: u64, rng: &mut TenantRng) -> Self {
        Self::new(directory, seed, rng.random_range(0..DIRECTORY_SIZE))
    }

    /// One of the few users who organise meetings with dial-out, so the dial-out report
    /// aggregates several calls per organizer. (A stride of 37 spreads them over the
    /// directory's first names, which repeat every 40 users.)
    pub fn random_organizer(directory: &Directory, seed: u64, rng: &mut TenantRng) -> Self {
        let organizer = rng.random_range(0..DIAL_OUT_ORGANIZERS);
        Self::new(directory, seed, organizer * 37 % DIRECTORY_SIZE)
    }

    /// `[{"id": …}]` or `[]`, as the beta `callLogRow.administrativeUnitInfos`.
    pub fn administrative_units(&self) -> Value {
        match &self.party.administrative_unit {
            Some(unit) => json!([{ "id": unit }]),
            None => json!([]),
        }
    }
}

/// Index into weights chosen by a hash (for per-user facts that need no RNG stream).
fn pick_by_hash(hash: u64, weights: &[u64]) -> usize {
    let total: u64 = weights.iter().sum();
    let mut ticket = hash % total;
    for (index, weight) in weights.iter().enumerate() {
        if ticket < *weight {
            return index;
        }
        ticket -= weight;
    }
    unreachable!("ticket is below the total weight")
}

fn national_number(country: &Country, mut digits_source: u64) -> String {
    let mut number = String::from(country.dial_prefix);
    if country.code == "US" {
        // The fictitious 555 range Microsoft's samples use.
        number.push_str("425555");
        for _ in 0..4 {
            number.push(char::from(b'0' + (digits_source % 10) as u8));
            digits_source /= 10;
        }
        return number;
    }
    // A national number never starts with 0 after the country code.
    number.push(char::from(b'1' + (digits_source % 9) as u8));
    digits_source /= 9;
    for _ in 1..country.national_digits {
        number.push(char::from(b'0' + (digits_source % 10) as u8));
        digits_source /= 10;
    }
    number
}

/// The country of the other party: mostly the user's own, sometimes abroad.
pub fn other_country(rng: &mut TenantRng, home: &'static Country) -> &'static Country {
    if rng.random_bool(0.8) {
        home
    } else {
        &COUNTRIES[rng.random_range(0..COUNTRIES.len())]
    }
}

/// A random number in `country`.
pub fn outside_number(rng: &mut TenantRng, country: &Country) -> String {
    national_number(country, rng.random())
}

/// How an outside party's number shows in a log row: mostly E.164, sometimes masked by the
/// service (`+1425555****`), sometimes not a number at all (withheld, or a caller name).
pub fn shown_number(rng: &mut TenantRng, number: String) -> String {
    match pick_weighted(rng, &[(0, 85), (1, 10), (2, 3), (3, 2)]) {
        0 => number,
        1 => mask(&number),
        2 => "anonymous".to_owned(),
        _ => pick(rng, &["Fabrikam Sales", "Unknown Caller", "Tailspin Toys"]).to_owned(),
    }
}

/// The number with its last four digits hidden.
pub fn mask(number: &str) -> String {
    let keep = number.len().saturating_sub(4);
    format!("{}****", &number[..keep])
}

/// `Domestic` or `International`, from the user's point of view.
pub fn destination_context(home: &Country, other: &Country) -> &'static str {
    if home.code == other.code {
        "Domestic"
    } else {
        "International"
    }
}

/// The charge of an outbound call of `seconds` to `other` for a user in `home`, in the
/// home currency: a JSON decimal with 2 to 4 decimals.
pub fn call_charge(rng: &mut TenantRng, home: &Country, other: &Country, seconds: u32) -> f64 {
    let factor = if home.code == other.code {
        1.0
    } else {
        INTERNATIONAL_FACTOR
    };
    let minutes = f64::from(seconds.div_ceil(60).max(1));
    amount(rng, minutes * home.minute_rate * factor)
}

/// A connection fee in the home currency (a few cents), or 0.
pub fn connection_charge(rng: &mut TenantRng, home: &Country) -> f64 {
    if rng.random_bool(0.3) {
        let approx = home.minute_rate * rng.random_range(1.0..4.0);
        amount(rng, approx)
    } else {
        0.0
    }
}

/// An amount near `approx`, written with 2, 3 or 4 decimals whose last digit is never 0,
/// so its shortest JSON form (what serde_json prints) shows exactly that many decimals.
/// Charges are Edm.Decimal in Graph; an f64 with at most 4 decimals round-trips its text
/// exactly.
pub fn amount(rng: &mut TenantRng, approx: f64) -> f64 {
    let decimals = pick_weighted(rng, &[(2, 70), (3, 5), (4, 25)]);
    let scale = 10_f64.powi(decimals);
    let mut units = (approx * scale).round().max(1.0);
    if units % 10.0 == 0.0 {
        units += 1.0;
    }
    units / scale
}

/// An amount in ten-thousandths (exact for values with at most 4 decimals), for sums that
/// must not pick up binary rounding noise.
pub fn to_ten_thousandths(amount: f64) -> i64 {
    (amount * 10_000.0).round() as i64
}

pub fn from_ten_thousandths(units: i64) -> f64 {
    units as f64 / 10_000.0
}

/// Client addresses of the beta PSTN rows, from the documentation ranges (RFC 5737,
/// RFC 3849), so they never name a real host.
pub struct ClientAddresses {
    pub local_v4: Value,
    pub local_v6: Value,
    pub public_v4: Value,
    pub public_v6: Value,
}

impl ClientAddresses {
    /// Addresses of a Teams client; `None` when the call had no client (service numbers,
    /// conferences), where Graph reports nulls.
    pub fn draw(rng: &mut TenantRng, has_client: bool) -> Self {
        if !has_client {
            return Self {
                local_v4: Value::Null,
                local_v6: Value::Null,
                public_v4: Value::Null,
                public_v6: Value::Null,
            };
        }
        let with_v6 = rng.random_bool(0.3);
        let v6 = |rng: &mut TenantRng, prefix: &str| {
            with_v6.then(|| {
                format!(
                    "{prefix}:{:x}:{:x}:{:x}:{:x}",
                    rng.random::<u16>(),
                    rng.random::<u16>(),
                    rng.random::<u16>(),
                    rng.random::<u16>()
                )
            })
        };
        Self {
            local_v4: json!(format!(
                "10.{}.{}.{}",
                rng.random::<u8>(),
                rng.random::<u8>(),
                rng.random_range(1..255)
            )),
            local_v6: json!(v6(rng, "fe80::1")),
            public_v4: json!(format!(
                "{}.{}",
                pick(rng, &["192.0.2", "198.51.100", "203.0.113"]),
                rng.random_range(1..255)
            )),
            public_v6: json!(v6(rng, "2001:db8:1")),
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn amounts_print_with_two_to_four_decimals() {
        let mut rng = TenantRng::seed_from_u64(1);
        for approx in [0.0, 0.02, 1.0, 3.1, 12.5, 480.0] {
            for _ in 0..50 {
                let text = serde_json::to_string(&amount(&mut rng, approx)).unwrap();
                let decimals = text.split_once('.').unwrap().1.len();
                assert!((2..=4).contains(&decimals), "{text}");
            }
        }
    }

    #[test]
    fn numbers_have_their_country_prefix_and_mask_four_digits() {
        let mut rng = TenantRng::seed_from_u64(2);
        for country in &COUNTRIES {
            let number = outside_number(&mut rng, country);
            assert!(number.starts_with(country.dial_prefix), "{number}");
            assert!(number[1..].bytes().all(|byte| byte.is_ascii_digit()));
        }
        assert_eq!(mask("+14255551234"), "+1425555****");
    }
}
