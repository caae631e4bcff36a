//! Client-side pacing under Microsoft Graph's documented throttling limits, so that a
//! large tenant runs at the limit instead of into storms of 429s.
//!
//! Each request counts against every scope it belongs to (the application in the tenant,
//! the list, one call record, the log functions, one log function); a request waits until
//! each of its scopes has room in its sliding window. Windows are exact ("N requests in
//! any 20 s"), the way Graph states its limits, and run on the tokio clock so tests can
//! drive them with a paused clock. Touches nothing but its own state.
//!
//! Limits (learn.microsoft.com/graph/throttling-limits, "Call records" and "PSTN call log"):
//! call records 1,500 requests / 20 s per app and tenant, 40 / 20 s per call record,
//! 40 / 20 s for listing; log functions 200 / 60 s per app and tenant, 50 / 60 s per function.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

/// At most `requests` in any `seconds`-long window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    pub requests: u32,
    pub seconds: u32,
}

impl Limit {
    const fn new(requests: u32, seconds: u32) -> Self {
        Limit { requests, seconds }
    }

    fn window(self) -> Duration {
        Duration::from_secs(u64::from(self.seconds))
    }
}

/// The limits the client paces itself under; the defaults are Graph's documented ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Call-record, session and participant requests of this application in the tenant.
    pub app_tenant: Limit,
    /// Requests about one call record (details, session pages, participant pages).
    pub per_call_record: Limit,
    /// List call records requests.
    pub list: Limit,
    /// Log-function requests (PSTN, Direct Routing, SMS, ...) of this application in the tenant.
    pub log_app_tenant: Limit,
    /// Requests to one log function.
    pub per_log_function: Limit,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            app_tenant: Limit::new(1500, 20),
            per_call_record: Limit::new(40, 20),
            list: Limit::new(40, 20),
            log_app_tenant: Limit::new(200, 60),
            per_log_function: Limit::new(50, 60),
        }
    }
}

/// A window a request counts against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Scope {
    AppTenant,
    List,
    CallRecord(String),
    LogAppTenant,
    LogFunction(String),
}

impl Scope {
    fn limit(&self, limits: &RateLimits) -> Limit {
        match self {
            Scope::AppTenant => limits.app_tenant,
            Scope::List => limits.list,
            Scope::CallRecord(_) => limits.per_call_record,
            Scope::LogAppTenant => limits.log_app_tenant,
            Scope::LogFunction(_) => limits.per_log_function,
        }
    }

    /// Per-record and per-function windows are dropped once empty; the others stay.
    fn is_transient(&self) -> bool {
        matches!(self, Scope::CallRecord(_) | Scope::LogFunction(_))
    }
}

/// The scopes of a request, from its URL:
/// `…/communications/callRecords` (list), `…/callRecords/{id}[/sessions|/participants_v2]`,
/// `…/callRecords/getPstnCalls(…)` (log functions). Other URLs are not paced.
fn scopes(url: &Url) -> Vec<Scope> {
    let segments: Vec<&str> = url
        .path_segments()
        .map(Iterator::collect)
        .unwrap_or_default();
    let Some(position) = segments
        .iter()
        .position(|s| s.eq_ignore_ascii_case("callRecords"))
    else {
        return Vec::new();
    };
    match segments.get(position + 1).filter(|s| !s.is_empty()) {
        None => vec![Scope::AppTenant, Scope::List],
        Some(next) if next.starts_with("get") && next.contains('(') => {
            let function = next.split('(').next().unwrap_or(next).to_string();
            vec![Scope::LogAppTenant, Scope::LogFunction(function)]
        }
        Some(id) => vec![Scope::AppTenant, Scope::CallRecord(id.to_string())],
    }
}

/// Sliding windows of recent request times, per scope.
pub(crate) struct Pacer {
    limits: RateLimits,
    windows: Mutex<HashMap<Scope, VecDeque<Instant>>>,
}

impl Pacer {
    pub(crate) fn new(limits: RateLimits) -> Self {
        Pacer {
            limits,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Waits until `url` may be sent without exceeding a limit, and counts it.
    /// Returns how long it waited.
    pub(crate) async fn acquire(&self, url: &Url) -> Duration {
        let scopes = scopes(url);
        if scopes.is_empty() {
            return Duration::ZERO;
        }
        let started = Instant::now();
        loop {
            let wait = {
                let mut windows = self.windows.lock().await;
                let now = Instant::now();
                let mut wait = Duration::ZERO;
                for scope in &scopes {
                    let limit = scope.limit(&self.limits);
                    let window = windows.entry(scope.clone()).or_default();
                    while window
                        .front()
                        .is_some_and(|&sent| now.duration_since(sent) >= limit.window())
                    {
                        window.pop_front();
                    }
                    if window.len() >= limit.requests.max(1) as usize {
                        let oldest = *window.front().expect("a full window is not empty");
                        wait = wait.max(limit.window() - now.duration_since(oldest));
                    }
                }
                if wait.is_zero() {
                    for scope in &scopes {
                        windows
                            .get_mut(scope)
                            .expect("created above")
                            .push_back(now);
                    }
                    windows.retain(|scope, window| {
                        !scope.is_transient()
                            || window.back().is_some_and(|&last| {
                                now.duration_since(last) < scope.limit(&self.limits).window()
                            })
                    });
                    return started.elapsed();
                }
                wait
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(path: &str) -> Url {
        Url::parse(&format!(
            "https://graph.microsoft.com/v1.0/communications/{path}"
        ))
        .unwrap()
    }

    #[test]
    fn requests_are_scoped_by_their_url() {
        assert_eq!(
            scopes(&url("callRecords?$filter=x")),
            vec![Scope::AppTenant, Scope::List]
        );
        assert_eq!(
            scopes(&url("callRecords/abc/sessions?$skiptoken=1")),
            vec![Scope::AppTenant, Scope::CallRecord("abc".into())]
        );
        assert_eq!(
            scopes(&url(
                "callRecords/getPstnCalls(fromDateTime=2026-11-01,toDateTime=2026-11-02)"
            )),
            vec![
                Scope::LogAppTenant,
                Scope::LogFunction("getPstnCalls".into())
            ]
        );
        assert!(scopes(&Url::parse("https://graph.microsoft.com/v1.0/me").unwrap()).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_window_waits_until_its_oldest_request_leaves_it() {
        let limits = RateLimits {
            per_call_record: Limit::new(3, 20),
            ..RateLimits::default()
        };
        let pacer = Pacer::new(limits);
        let record = url("callRecords/abc");
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(pacer.acquire(&record).await, Duration::ZERO);
        }
        // Another record is not held back by this one's window.
        assert_eq!(
            pacer.acquire(&url("callRecords/other")).await,
            Duration::ZERO
        );
        assert_eq!(pacer.acquire(&record).await, Duration::from_secs(20));
        assert_eq!(start.elapsed(), Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn the_tightest_scope_decides_and_the_rate_stays_at_the_limit() {
        let limits = RateLimits {
            list: Limit::new(4, 2),
            ..RateLimits::default()
        };
        let pacer = Pacer::new(limits);
        let start = Instant::now();
        for _ in 0..20 {
            pacer.acquire(&url("callRecords")).await;
        }
        // 20 requests at 4 per 2 s: the 20th starts in the 5th window, after 8 s.
        assert_eq!(start.elapsed(), Duration::from_secs(8));
    }
}
