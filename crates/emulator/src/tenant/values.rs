//! Small value generators shared by the synthetic tenant: seed mixing, GUIDs, Graph-style
//! timestamps and ISO-8601 durations, weighted choices and rounded ratios.
//! Pure functions over a caller-supplied RNG; touches nothing else.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

/// The RNG every generator uses: ChaCha8 is specified bit-for-bit, so the tenant is stable
/// across platforms and crate versions (unlike `StdRng` or `DefaultHasher`).
pub type TenantRng = ChaCha8Rng;

/// splitmix64 finaliser: a fixed, well-mixed 64-bit hash used to derive per-call seeds
/// (`DefaultHasher` is not guaranteed stable between Rust releases).
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Mixes several words into one seed, order-sensitively.
pub fn mix(words: &[u64]) -> u64 {
    words
        .iter()
        .fold(0x6A09_E667_F3BC_C908, |acc, word| splitmix64(acc ^ word))
}

/// FNV-1a over bytes: a fixed hash of text (URLs, ids) to feed into [`mix`].
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xCBF2_9CE4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01B3)
    })
}

/// A hash mapped to a uniform fraction in `[0, 1)`, for decisions made without an RNG.
pub fn unit_fraction(hash: u64) -> f64 {
    (hash >> 11) as f64 / (1_u64 << 53) as f64
}

/// A random RFC 4122 version-4 GUID in lowercase hyphenated form.
pub fn guid(rng: &mut TenantRng) -> String {
    uuid::Builder::from_random_bytes(rng.random())
        .into_uuid()
        .to_string()
}

/// A version-4 GUID derived from a hash, for ids that must be recomputable without an RNG
/// (directory objects).
pub fn guid_from_hash(hash: u64) -> String {
    let low = splitmix64(hash);
    let bytes = ((u128::from(hash) << 64) | u128::from(low)).to_be_bytes();
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// Formats like Graph does: 7 fractional digits with trailing zeros trimmed, no fraction
/// for whole seconds (`2026-11-20T18:52:21.2169889Z`, `...:46.76Z`, `...:40Z`).
pub fn graph_timestamp(time: DateTime<Utc>) -> String {
    let formatted = time.to_rfc3339_opts(SecondsFormat::Nanos, true);
    // Nanos always prints 9 digits; Graph's precision is 100 ns ticks.
    let (seconds, fraction) = formatted
        .trim_end_matches('Z')
        .split_once('.')
        .expect("SecondsFormat::Nanos always prints a fraction");
    let ticks = fraction[..7].trim_end_matches('0');
    if ticks.is_empty() {
        format!("{seconds}Z")
    } else {
        format!("{seconds}.{ticks}Z")
    }
}

/// A time `offset_ms` after `start` plus random sub-millisecond ticks, so most stamps carry
/// the full 7 digits; `whole_second_chance` of them are cut to whole seconds as Graph
/// sometimes reports.
pub fn time_after(
    rng: &mut TenantRng,
    start: DateTime<Utc>,
    offset_ms: i64,
    whole_second_chance: f64,
) -> DateTime<Utc> {
    let ticks = rng.random_range(0..10_000i64);
    let time = start + Duration::milliseconds(offset_ms) + Duration::nanoseconds(ticks * 100);
    if rng.random_bool(whole_second_chance) {
        time - Duration::nanoseconds(i64::from(time.timestamp_subsec_nanos()))
    } else {
        time
    }
}

/// ISO-8601 duration as Graph writes it: `PT0.016S`, `PT1S`, `PT1M2.5S`, `PT1H0M3S`.
pub fn iso_duration(millis: u64) -> String {
    let hours = millis / 3_600_000;
    let minutes = millis / 60_000 % 60;
    let seconds = (millis % 60_000) as f64 / 1000.0;
    let mut text = String::from("PT");
    if hours > 0 {
        text.push_str(&format!("{hours}H"));
    }
    if hours > 0 || minutes > 0 {
        text.push_str(&format!("{minutes}M"));
    }
    text.push_str(&format!("{seconds}S"));
    text
}

/// Picks one item with probability proportional to its weight.
pub fn pick_weighted<T: Copy>(rng: &mut TenantRng, weighted: &[(T, u32)]) -> T {
    let total: u32 = weighted.iter().map(|(_, weight)| weight).sum();
    let mut ticket = rng.random_range(0..total);
    for &(item, weight) in weighted {
        if ticket < weight {
            return item;
        }
        ticket -= weight;
    }
    unreachable!("ticket is below the total weight")
}

/// Picks one item uniformly.
pub fn pick<T: Copy>(rng: &mut TenantRng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

/// A ratio in `[0, max)` rounded to 4 decimals (Graph reports Edm.Single values).
pub fn ratio(rng: &mut TenantRng, max: f64) -> f64 {
    round4(rng.random_range(0.0..max))
}

/// Rounds to 4 decimals, so the value survives a JSON text round trip bit for bit
/// (sums like `0.0386 + 0.01` would not).
pub fn round4(value: f64) -> f64 {
    (value * 10_000.0).round() / 10_000.0
}

/// `value` with probability `chance`, else JSON null: telemetry Graph could not collect.
pub fn sometimes(
    rng: &mut TenantRng,
    chance: f64,
    value: impl FnOnce(&mut TenantRng) -> Value,
) -> Value {
    if rng.random_bool(chance) {
        value(rng)
    } else {
        Value::Null
    }
}

/// A dash-separated hex byte string, the format Graph uses for MAC addresses and BSSIDs.
pub fn dashed_hex(rng: &mut TenantRng, bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02X}", rng.random::<u8>()))
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_look_like_graph() {
        assert_eq!(iso_duration(16), "PT0.016S");
        assert_eq!(iso_duration(1000), "PT1S");
        assert_eq!(iso_duration(62_500), "PT1M2.5S");
        assert_eq!(iso_duration(3_603_000), "PT1H0M3S");
    }

    #[test]
    fn timestamps_trim_trailing_zeros() {
        let time = DateTime::parse_from_rfc3339("2026-11-20T18:52:21.2169889Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(graph_timestamp(time), "2026-11-20T18:52:21.2169889Z");
        let time = DateTime::parse_from_rfc3339("2026-11-20T18:52:21.5Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(graph_timestamp(time), "2026-11-20T18:52:21.5Z");
        let time = DateTime::parse_from_rfc3339("2026-11-20T18:52:21Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(graph_timestamp(time), "2026-11-20T18:52:21Z");
    }
}
