//! Retry decisions for Graph responses, kept apart from the waiting loop in `mod.rs`:
//! [`classify`] maps a status and its headers to a [`Verdict`] (pure, table-tested), and
//! [`full_jitter`] computes the backoff used when the server gave no `Retry-After`.
//!
//! Touches nothing: no I/O, no clock (the caller passes `now`), no randomness (the caller
//! passes the random fraction).

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

/// What to do with one HTTP response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// 2xx: decode the body.
    Success,
    /// 401: the cached token may be stale; drop it and try once more with a new one.
    RefreshToken,
    /// Transient (429, 500, 502, 503, 504). `after` is the server's `Retry-After`, which
    /// replaces the computed backoff when present.
    Retry { after: Option<Duration> },
    /// Anything else (400, 403, 404, other 4xx, 3xx): retrying cannot help.
    Fail,
}

pub(crate) fn classify(status: StatusCode, headers: &HeaderMap, now: DateTime<Utc>) -> Verdict {
    match status.as_u16() {
        200..=299 => Verdict::Success,
        401 => Verdict::RefreshToken,
        429 | 500 | 502 | 503 | 504 => Verdict::Retry {
            after: retry_after(headers, now),
        },
        _ => Verdict::Fail,
    }
}

/// `Retry-After` as delta-seconds or as an HTTP date (RFC 9110 §10.2.3). A date in the
/// past means "now"; an unparsable value is ignored so the backoff applies instead.
fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    // IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") is a subset of RFC 2822, which chrono parses.
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// Exponential backoff with full jitter: uniform in `[0, min(cap, base·2^retry))`, where
/// `retry` counts from 0 and `unit` is a random fraction in `[0, 1)`. Full jitter spreads
/// the retries of concurrent workers instead of having them hit Graph in lockstep.
pub(crate) fn full_jitter(base: Duration, cap: Duration, retry: u32, unit: f64) -> Duration {
    let ceiling = base.saturating_mul(2u32.saturating_pow(retry)).min(cap);
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(retry_after: Option<&str>) -> HeaderMap {
        let mut map = HeaderMap::new();
        if let Some(value) = retry_after {
            map.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn classification_table() {
        let now = DateTime::parse_from_rfc3339("2026-11-20T08:49:30Z")
            .unwrap()
            .with_timezone(&Utc);
        let secs = |s| Some(Duration::from_secs(s));
        let cases: &[(u16, Option<&str>, Verdict)] = &[
            (200, None, Verdict::Success),
            (204, Some("5"), Verdict::Success),
            (401, None, Verdict::RefreshToken),
            (429, Some("7"), Verdict::Retry { after: secs(7) }),
            (429, None, Verdict::Retry { after: None }),
            (429, Some("soon"), Verdict::Retry { after: None }),
            (
                429,
                Some("Fri, 20 Nov 2026 08:49:37 GMT"),
                Verdict::Retry { after: secs(7) },
            ),
            (
                503,
                Some("Fri, 20 Nov 2026 08:00:00 GMT"),
                Verdict::Retry { after: secs(0) },
            ),
            (500, None, Verdict::Retry { after: None }),
            (502, None, Verdict::Retry { after: None }),
            (503, Some("2"), Verdict::Retry { after: secs(2) }),
            (504, None, Verdict::Retry { after: None }),
            (400, Some("3"), Verdict::Fail),
            (403, None, Verdict::Fail),
            (404, None, Verdict::Fail),
            (406, None, Verdict::Fail),
            (501, None, Verdict::Fail),
            (302, None, Verdict::Fail),
        ];
        for (status, retry_after, expected) in cases {
            let got = classify(
                StatusCode::from_u16(*status).unwrap(),
                &headers(*retry_after),
                now,
            );
            assert_eq!(
                got, *expected,
                "status {status}, Retry-After {retry_after:?}"
            );
        }
    }

    #[test]
    fn full_jitter_is_bounded_by_the_capped_exponential() {
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(60);
        assert_eq!(full_jitter(base, cap, 0, 0.0), Duration::ZERO);
        assert_eq!(full_jitter(base, cap, 0, 0.5), Duration::from_millis(500));
        assert_eq!(full_jitter(base, cap, 3, 0.5), Duration::from_secs(4));
        assert_eq!(full_jitter(base, cap, 10, 0.5), Duration::from_secs(30));
        assert_eq!(full_jitter(base, cap, 40, 1.0), cap);
    }
}
