//! Fault injection: what can go wrong between an exporter and Graph, on purpose and
//! reproducibly. [`Faults`] says how often each failure happens (and parses the
//! `throttle=0.2,5xx=0.1,…` form a `--faults` flag takes); [`FaultCounts`] says how often
//! each did. The fate of a request is a pure function of the fault seed, the method, the
//! path with query, and how many times that exact URL was requested before, so the n-th
//! attempt of a URL meets the same fate on every run, however requests interleave.
//! The HTTP side (answering with the fate) is in `gate`.
//! Pure configuration and decisions; touches nothing else.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::StatusCode;

use super::tenant::values::{fnv1a, mix, splitmix64, unit_fraction};

/// How often each fault happens. The default injects nothing.
///
/// The per-request rates (`throttle_rate` … `truncate_rate`) are fractions of Graph
/// requests (never token requests) and are exclusive: one request meets at most one of
/// them, so together they may not exceed 1.
#[derive(Clone, Debug, PartialEq)]
pub struct Faults {
    /// Seed of the fault decisions (independent of the tenant's seed).
    pub seed: u64,
    /// Fraction answered `429 Too Many Requests` with `Retry-After: retry_after_secs`.
    pub throttle_rate: f64,
    /// `Retry-After` seconds of injected 429s and of the 5xx that carry one.
    pub retry_after_secs: u64,
    /// Fraction answered 500, 502, 503 or 504; half of them carry `Retry-After`.
    pub server_error_rate: f64,
    /// Fraction whose connection is closed without any HTTP response.
    pub drop_rate: f64,
    /// Fraction answered normally, but only after `slow_delay`.
    pub slow_rate: f64,
    pub slow_delay: Duration,
    /// Fraction of would-be `200 OK` answers whose body is cut in the middle (the status
    /// and a matching `Content-Length` still arrive, so the client sees invalid JSON).
    pub truncate_rate: f64,
    /// Fraction of call-record ids whose detail answers (the record, its sessions and its
    /// participants_v2) are always cut in the middle: records a client must quarantine.
    /// Chosen by id, see [`Faults::is_corrupt`].
    pub corrupt_record_rate: f64,
    /// Fraction of token requests answered 503 (`temporarily_unavailable`) or dropped.
    pub token_fault_rate: f64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            seed: 0,
            throttle_rate: 0.0,
            retry_after_secs: 1,
            server_error_rate: 0.0,
            drop_rate: 0.0,
            slow_rate: 0.0,
            slow_delay: Duration::from_secs(2),
            truncate_rate: 0.0,
            corrupt_record_rate: 0.0,
            token_fault_rate: 0.0,
        }
    }
}

/// A `--faults` specification that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid fault specification: {0}")]
pub struct FaultSpecError(String);

/// What happens to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Pass,
    Throttle,
    ServerError {
        status: StatusCode,
        retry_after: bool,
    },
    Drop,
    Slow,
    Truncate,
}

impl Faults {
    /// Parses `key=value` pairs separated by commas; `""` and `"none"` mean no faults.
    /// Keys: `seed`, `throttle`, `retry_after` (seconds), `5xx` (or `server_error`),
    /// `drop`, `slow`, `slow_delay` (`250ms`, `2s`, or seconds), `truncate`, `corrupt`,
    /// `token`. Rates are fractions in `[0, 1]`.
    pub fn parse(spec: &str) -> Result<Self, FaultSpecError> {
        let mut faults = Faults::default();
        let spec = spec.trim();
        if spec.is_empty() || spec.eq_ignore_ascii_case("none") {
            return Ok(faults);
        }
        for pair in spec.split(',').map(str::trim) {
            let (key, value) = pair
                .split_once('=')
                .map(|(key, value)| (key.trim(), value.trim()))
                .ok_or_else(|| FaultSpecError(format!("'{pair}' is not key=value")))?;
            let rate = || parse_rate(key, value);
            match key.to_ascii_lowercase().as_str() {
                "seed" => faults.seed = parse_number(key, value)?,
                "throttle" => faults.throttle_rate = rate()?,
                "retry_after" | "retry-after" => {
                    faults.retry_after_secs = parse_number(key, value)?
                }
                "5xx" | "server_error" => faults.server_error_rate = rate()?,
                "drop" => faults.drop_rate = rate()?,
                "slow" => faults.slow_rate = rate()?,
                "slow_delay" | "slow-delay" => faults.slow_delay = parse_duration(key, value)?,
                "truncate" => faults.truncate_rate = rate()?,
                "corrupt" => faults.corrupt_record_rate = rate()?,
                "token" => faults.token_fault_rate = rate()?,
                _ => {
                    return Err(FaultSpecError(format!(
                        "unknown key '{key}' (known: seed, throttle, retry_after, 5xx, drop, \
                         slow, slow_delay, truncate, corrupt, token)"
                    )));
                }
            }
        }
        faults.validate()?;
        Ok(faults)
    }

    /// Checks that every rate is a fraction and the exclusive per-request rates fit in 1.
    pub fn validate(&self) -> Result<(), FaultSpecError> {
        for (name, rate) in [
            ("throttle", self.throttle_rate),
            ("5xx", self.server_error_rate),
            ("drop", self.drop_rate),
            ("slow", self.slow_rate),
            ("truncate", self.truncate_rate),
            ("corrupt", self.corrupt_record_rate),
            ("token", self.token_fault_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(FaultSpecError(format!(
                    "the {name} rate {rate} is not between 0 and 1"
                )));
            }
        }
        let per_request = self.per_request_rates().iter().sum::<f64>();
        if per_request > 1.0 + 1e-9 {
            return Err(FaultSpecError(format!(
                "throttle, 5xx, drop, slow and truncate add up to {per_request}, more than 1"
            )));
        }
        Ok(())
    }

    /// Whether any fault can happen (if not, the emulator keeps no per-URL counts).
    pub fn is_active(&self) -> bool {
        self.per_request_rates().iter().any(|rate| *rate > 0.0)
            || self.corrupt_record_rate > 0.0
            || self.token_fault_rate > 0.0
    }

    /// Whether the detail answers of call record `id` are always corrupt. Deterministic by
    /// fault seed and id (case-insensitive, like Graph ids), so tests can predict it.
    pub fn is_corrupt(&self, id: &str) -> bool {
        self.corrupt_record_rate > 0.0
            && unit_fraction(mix(&[
                self.seed,
                0xC022,
                fnv1a(id.bytes().map(|byte| byte.to_ascii_lowercase())),
            ])) < self.corrupt_record_rate
    }

    fn per_request_rates(&self) -> [f64; 5] {
        [
            self.throttle_rate,
            self.server_error_rate,
            self.drop_rate,
            self.slow_rate,
            self.truncate_rate,
        ]
    }

    /// The fate of attempt `attempt` (0 for the first) of a Graph request.
    pub fn fate(&self, method: &str, target: &str, attempt: u64) -> Fate {
        let hash = self.request_hash(method, target, attempt);
        let draw = unit_fraction(hash);
        let detail = splitmix64(hash);
        let mut threshold = 0.0;
        let fates = [
            Fate::Throttle,
            Fate::ServerError {
                status: [
                    StatusCode::INTERNAL_SERVER_ERROR,
                    StatusCode::BAD_GATEWAY,
                    StatusCode::SERVICE_UNAVAILABLE,
                    StatusCode::GATEWAY_TIMEOUT,
                ][(detail % 4) as usize],
                retry_after: detail & 0x100 != 0,
            },
            Fate::Drop,
            Fate::Slow,
            Fate::Truncate,
        ];
        for (fate, rate) in fates.into_iter().zip(self.per_request_rates()) {
            threshold += rate;
            if draw < threshold {
                return fate;
            }
        }
        Fate::Pass
    }

    /// The fate of attempt `attempt` of a token request: a 503 or a drop at
    /// `token_fault_rate`, else nothing.
    pub fn token_fate(&self, target: &str, attempt: u64) -> Fate {
        let hash = self.request_hash("POST", target, attempt);
        if unit_fraction(hash) >= self.token_fault_rate {
            Fate::Pass
        } else if splitmix64(hash) & 1 == 0 {
            Fate::ServerError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                retry_after: false,
            }
        } else {
            Fate::Drop
        }
    }

    fn request_hash(&self, method: &str, target: &str, attempt: u64) -> u64 {
        mix(&[
            self.seed,
            fnv1a(method.bytes()),
            fnv1a(target.bytes()),
            attempt,
        ])
    }
}

impl fmt::Display for Faults {
    /// The `--faults` form of these settings ([`Faults::parse`] reads it back).
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "seed={},throttle={},retry_after={},5xx={},drop={},slow={},slow_delay={}ms,\
             truncate={},corrupt={},token={}",
            self.seed,
            self.throttle_rate,
            self.retry_after_secs,
            self.server_error_rate,
            self.drop_rate,
            self.slow_rate,
            self.slow_delay.as_millis(),
            self.truncate_rate,
            self.corrupt_record_rate,
            self.token_fault_rate
        )
    }
}

fn parse_rate(key: &str, value: &str) -> Result<f64, FaultSpecError> {
    value
        .parse::<f64>()
        .ok()
        .filter(|rate| (0.0..=1.0).contains(rate))
        .ok_or_else(|| FaultSpecError(format!("{key}={value}: expected a fraction from 0 to 1")))
}

fn parse_number(key: &str, value: &str) -> Result<u64, FaultSpecError> {
    value
        .parse::<u64>()
        .map_err(|_| FaultSpecError(format!("{key}={value}: expected a whole number")))
}

fn parse_duration(key: &str, value: &str) -> Result<Duration, FaultSpecError> {
    let invalid = || FaultSpecError(format!("{key}={value}: expected e.g. 250ms, 2s or 1.5"));
    let (number, scale) = match value.strip_suffix("ms") {
        Some(millis) => (millis, 1e-3),
        None => (value.strip_suffix('s').unwrap_or(value), 1.0),
    };
    let seconds = number.trim().parse::<f64>().map_err(|_| invalid())? * scale;
    Duration::try_from_secs_f64(seconds).map_err(|_| invalid())
}

/// What an injected fault or an enforced limit did to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// An injected 429.
    Throttled,
    /// An injected 500/502/503/504.
    ServerError,
    /// The connection was closed without a response.
    Dropped,
    /// Answered after `slow_delay`.
    Slowed,
    /// A 200 whose body was cut.
    Truncated,
    /// A 200 of a corrupt record whose body was cut.
    Corrupt,
    /// An injected token-endpoint failure (503 or drop).
    TokenFault,
    /// A 429 because an enforced Graph limit was reached.
    Limited,
}

/// How many requests each fault kind hit so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub throttled: u64,
    pub server_errors: u64,
    pub dropped: u64,
    pub slowed: u64,
    pub truncated: u64,
    pub corrupt: u64,
    pub token_faults: u64,
    /// 429s from enforced limits (not injected).
    pub limited: u64,
}

/// The fault bookkeeping of a running emulator: per-URL attempt numbers (one entry per
/// distinct URL, kept only while faults are active) and counters.
#[derive(Default)]
pub(super) struct FaultLedger {
    attempts: Mutex<HashMap<(String, String), u64>>,
    counts: [AtomicU64; 8],
}

impl FaultLedger {
    /// How many times `method target` was requested before this request (and counts it).
    pub fn attempt(&self, method: &str, target: &str) -> u64 {
        let mut attempts = self
            .attempts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let seen = attempts
            .entry((method.to_owned(), target.to_owned()))
            .or_insert(0);
        *seen += 1;
        *seen - 1
    }

    pub fn count(&self, kind: FaultKind) {
        self.counts[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn counts(&self) -> FaultCounts {
        let count = |kind: FaultKind| self.counts[kind as usize].load(Ordering::Relaxed);
        FaultCounts {
            throttled: count(FaultKind::Throttled),
            server_errors: count(FaultKind::ServerError),
            dropped: count(FaultKind::Dropped),
            slowed: count(FaultKind::Slowed),
            truncated: count(FaultKind::Truncated),
            corrupt: count(FaultKind::Corrupt),
            token_faults: count(FaultKind::TokenFault),
            limited: count(FaultKind::Limited),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_key_and_round_trips_through_display() {
        let faults = Faults::parse(
            "seed=7, throttle=0.2,5xx=0.1,drop=0.05,slow=0.1,slow_delay=250ms,truncate=0.05,\
             corrupt=0.01,token=0.3,retry_after=3",
        )
        .unwrap();
        assert_eq!(
            faults,
            Faults {
                seed: 7,
                throttle_rate: 0.2,
                retry_after_secs: 3,
                server_error_rate: 0.1,
                drop_rate: 0.05,
                slow_rate: 0.1,
                slow_delay: Duration::from_millis(250),
                truncate_rate: 0.05,
                corrupt_record_rate: 0.01,
                token_fault_rate: 0.3,
            }
        );
        assert_eq!(Faults::parse(&faults.to_string()).unwrap(), faults);
        assert_eq!(Faults::parse("").unwrap(), Faults::default());
        assert_eq!(Faults::parse("none").unwrap(), Faults::default());
        assert_eq!(
            Faults::parse("slow_delay=2").unwrap().slow_delay,
            Duration::from_secs(2)
        );
        assert!(!Faults::default().is_active());
        assert!(faults.is_active());
    }

    #[test]
    fn rejects_bad_specifications() {
        for spec in [
            "throttle",
            "throttle=1.5",
            "throttle=-0.1",
            "throttle=abc",
            "jitter=0.1",
            "seed=-1",
            "slow_delay=soon",
            "throttle=0.6,5xx=0.6",
        ] {
            assert!(Faults::parse(spec).is_err(), "{spec}");
        }
    }

    #[test]
    fn fates_follow_the_rates_and_repeat_per_attempt() {
        let faults =
            Faults::parse("seed=1,throttle=0.2,5xx=0.2,drop=0.2,slow=0.2,truncate=0.2").unwrap();
        let mut seen = HashMap::new();
        for attempt in 0..2_000 {
            let fate = faults.fate("GET", "/v1.0/communications/callRecords", attempt);
            assert_eq!(
                fate,
                faults.fate("GET", "/v1.0/communications/callRecords", attempt)
            );
            let kind = match fate {
                Fate::ServerError { .. } => "5xx",
                Fate::Pass => "pass",
                Fate::Throttle => "throttle",
                Fate::Drop => "drop",
                Fate::Slow => "slow",
                Fate::Truncate => "truncate",
            };
            *seen.entry(kind).or_insert(0) += 1;
        }
        assert_eq!(seen.get("pass"), None, "the rates add up to 1");
        for kind in ["throttle", "5xx", "drop", "slow", "truncate"] {
            assert!((300..500).contains(&seen[kind]), "{kind}: {}", seen[kind]);
        }
        let none = Faults::default();
        assert_eq!(none.fate("GET", "/x", 0), Fate::Pass);
        assert_eq!(none.token_fate("/t", 0), Fate::Pass);
    }

    #[test]
    fn corrupt_ids_are_a_stable_fraction() {
        let faults = Faults {
            corrupt_record_rate: 0.1,
            ..Faults::default()
        };
        let ids: Vec<String> = (0..5_000).map(|n| format!("{n:08x}-0000")).collect();
        let corrupt = ids.iter().filter(|id| faults.is_corrupt(id)).count();
        assert!((400..600).contains(&corrupt), "{corrupt}");
        let id = ids.iter().find(|id| faults.is_corrupt(id)).unwrap();
        assert!(faults.is_corrupt(&id.to_uppercase()));
        assert!(!Faults::default().is_corrupt(id));
    }
}
