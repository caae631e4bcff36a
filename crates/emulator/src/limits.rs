//! Graph's documented throttling limits for call records and the PSTN log functions
//! (docs/graph-api.md §3), enforced with sliding windows: a request is admitted when every
//! limit it falls under admitted fewer than `requests` requests in the last `per`. A
//! refused request answers 429 with the seconds until it would be admitted.
//!
//! Refused requests do not count against the limits. Graph says throttled requests keep
//! accruing; not counting them keeps the emulator's `Retry-After` exact, which is what a
//! client under test needs to rely on. Time is tokio's clock, so tests can pause it.
//! Touches only its own memory.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// At most `requests` requests in any `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub requests: u32,
    pub per: Duration,
}

impl Rate {
    pub const fn new(requests: u32, per: Duration) -> Self {
        Self { requests, per }
    }
}

/// The limits the emulator enforces when `EmulatorConfig::enforce_limits` is set. The
/// default is Graph's documented set; tests scale them down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// All call-record requests (list, get, sessions, participants_v2) of the app in the
    /// tenant: 1,500 per 20 s.
    pub call_records: Rate,
    /// Requests about one call record (get, sessions, participants_v2): 40 per 20 s.
    pub per_call_record: Rate,
    /// List call records requests: 40 per 20 s.
    pub list_call_records: Rate,
    /// All log-function requests of the app in the tenant: 200 per 60 s.
    pub log_functions: Rate,
    /// Requests of one log function ("per collection"): 50 per 60 s.
    pub per_log_function: Rate,
}

impl Default for Limits {
    fn default() -> Self {
        const TWENTY_SECONDS: Duration = Duration::from_secs(20);
        const MINUTE: Duration = Duration::from_secs(60);
        Self {
            call_records: Rate::new(1_500, TWENTY_SECONDS),
            per_call_record: Rate::new(40, TWENTY_SECONDS),
            list_call_records: Rate::new(40, TWENTY_SECONDS),
            log_functions: Rate::new(200, MINUTE),
            per_log_function: Rate::new(50, MINUTE),
        }
    }
}

/// What a Graph request is about, as far as the limits care.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Subject {
    /// `GET /communications/callRecords`.
    List,
    /// A call record or one of its collections, by lowercase id.
    Record(String),
    /// A log function, by lowercase name.
    LogFunction(String),
}

/// One counted limit.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Bucket {
    CallRecords,
    List,
    Record(String),
    LogFunctions,
    LogFunction(String),
}

/// Admitted requests per bucket within their window.
pub(super) struct Limiter {
    limits: Limits,
    windows: Mutex<Windows>,
}

#[derive(Default)]
struct Windows {
    admitted: HashMap<Bucket, VecDeque<Instant>>,
    /// Admissions since idle buckets were last dropped.
    since_sweep: usize,
}

/// A refusal: which limit, and how long until the request would be admitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Refusal {
    pub limit: &'static str,
    pub rate: Rate,
    pub retry_after: Duration,
}

impl Limiter {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            windows: Mutex::default(),
        }
    }

    /// Admits the request (counting it against every limit it falls under) or says which
    /// limit refuses it and for how long (the longest wait when several do).
    pub fn admit(&self, subject: &Subject) -> Result<(), Refusal> {
        let buckets = self.buckets(subject);
        let now = Instant::now();
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut refusal: Option<Refusal> = None;
        for (bucket, name, rate) in &buckets {
            let admitted = windows.admitted.entry(bucket.clone()).or_default();
            forget_before(admitted, now, rate.per);
            if admitted.len() >= rate.requests as usize {
                let retry_after = admitted
                    .front()
                    .map_or(rate.per, |oldest| *oldest + rate.per - now);
                if refusal
                    .as_ref()
                    .is_none_or(|known| known.retry_after < retry_after)
                {
                    refusal = Some(Refusal {
                        limit: name,
                        rate: *rate,
                        retry_after,
                    });
                }
            }
        }
        if let Some(refusal) = refusal {
            return Err(refusal);
        }
        for (bucket, _, _) in buckets {
            windows.admitted.entry(bucket).or_default().push_back(now);
        }
        windows.since_sweep += 1;
        // Drop idle buckets (one per call record ever requested) now and then, so a long
        // run does not grow without bound; amortised O(1) per request.
        if windows.since_sweep > windows.admitted.len() {
            let longest = self.longest_window();
            windows
                .admitted
                .retain(|_, admitted| admitted.back().is_some_and(|last| *last + longest > now));
            windows.since_sweep = 0;
        }
        Ok(())
    }

    fn buckets(&self, subject: &Subject) -> Vec<(Bucket, &'static str, Rate)> {
        let limits = &self.limits;
        match subject {
            Subject::List => vec![
                (
                    Bucket::CallRecords,
                    "call record requests per app and tenant",
                    limits.call_records,
                ),
                (
                    Bucket::List,
                    "list call records requests",
                    limits.list_call_records,
                ),
            ],
            Subject::Record(id) => vec![
                (
                    Bucket::CallRecords,
                    "call record requests per app and tenant",
                    limits.call_records,
                ),
                (
                    Bucket::Record(id.clone()),
                    "requests per call record",
                    limits.per_call_record,
                ),
            ],
            Subject::LogFunction(name) => vec![
                (
                    Bucket::LogFunctions,
                    "PSTN log requests per app and tenant",
                    limits.log_functions,
                ),
                (
                    Bucket::LogFunction(name.clone()),
                    "requests per PSTN log function",
                    limits.per_log_function,
                ),
            ],
        }
    }

    fn longest_window(&self) -> Duration {
        let limits = &self.limits;
        [
            limits.call_records,
            limits.per_call_record,
            limits.list_call_records,
            limits.log_functions,
            limits.per_log_function,
        ]
        .iter()
        .map(|rate| rate.per)
        .max()
        .unwrap_or_default()
    }
}

fn forget_before(admitted: &mut VecDeque<Instant>, now: Instant, per: Duration) {
    while admitted.front().is_some_and(|oldest| *oldest + per <= now) {
        admitted.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Limits {
        let second = Duration::from_secs(1);
        Limits {
            call_records: Rate::new(5, second),
            per_call_record: Rate::new(2, second),
            list_call_records: Rate::new(3, second),
            log_functions: Rate::new(4, second),
            per_log_function: Rate::new(3, second),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn sliding_windows_refuse_and_then_admit() {
        let limiter = Limiter::new(small());
        let record = Subject::Record("a".into());
        assert!(limiter.admit(&record).is_ok());
        tokio::time::advance(Duration::from_millis(400)).await;
        assert!(limiter.admit(&record).is_ok());
        let refusal = limiter.admit(&record).unwrap_err();
        assert_eq!(refusal.limit, "requests per call record");
        assert_eq!(refusal.retry_after, Duration::from_millis(600));
        // Another record is not affected, until the app-wide limit is reached.
        assert!(limiter.admit(&Subject::Record("b".into())).is_ok());
        assert!(limiter.admit(&Subject::List).is_ok());
        assert!(limiter.admit(&Subject::List).is_ok());
        let refusal = limiter.admit(&Subject::List).unwrap_err();
        assert_eq!(refusal.limit, "call record requests per app and tenant");
        // Log functions count separately.
        for _ in 0..3 {
            assert!(
                limiter
                    .admit(&Subject::LogFunction("getpstncalls".into()))
                    .is_ok()
            );
        }
        let refusal = limiter
            .admit(&Subject::LogFunction("getpstncalls".into()))
            .unwrap_err();
        assert_eq!(refusal.limit, "requests per PSTN log function");
        tokio::time::advance(Duration::from_millis(600)).await;
        assert!(limiter.admit(&record).is_ok());
    }
}
