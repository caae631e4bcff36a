//! The middleware in front of every route that plays Graph's bad days: enforced
//! throttling limits (`limits`) and injected faults (`faults`). It classifies a request by
//! its path (token endpoint, callRecords list, one call record, a log function), admits it
//! against the limits, decides its fate and answers accordingly: a Graph 429 or 5xx body, a
//! connection closed without a response, a late answer, or a 200 whose body is cut.
//! Every answer it shapes is marked with an [`Injected`] response extension so the request
//! log can say what happened. Touches only the emulator's shared state.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::EntraError;
use super::faults::{Fate, FaultKind};
use super::limits::{Refusal, Subject};
use super::odata::GraphError;
use super::routes::EmulatorState;

/// Marks a response the gate shaped, with what it did.
#[derive(Clone, Copy, Debug)]
pub struct Injected(pub FaultKind);

/// Marks a response that never reaches the client (its connection is dropped instead).
#[derive(Clone, Copy, Debug)]
pub struct Dropped;

/// What a request addresses.
enum Target {
    Token,
    /// A Graph request; `None` when it is about nothing the limits count.
    Graph(Option<Subject>),
    /// Anything else (unknown routes outside `/v1.0` and `/beta`).
    Other,
}

impl Target {
    /// Classifies by the raw path, so percent-encoded function calls
    /// (`getPstnCalls%28fromDateTime=…`) count like plain ones.
    fn of(path: &str) -> Self {
        if path.ends_with("/oauth2/v2.0/token") {
            return Target::Token;
        }
        let Some(rest) = path
            .strip_prefix("/v1.0")
            .or_else(|| path.strip_prefix("/beta"))
        else {
            return Target::Other;
        };
        let Some(rest) = rest.strip_prefix("/communications/callRecords") else {
            return Target::Graph(None);
        };
        let segment = match rest.strip_prefix('/') {
            None if rest.is_empty() => return Target::Graph(Some(Subject::List)),
            None => return Target::Graph(None),
            Some(rest) => rest.split('/').next().unwrap_or_default(),
        };
        let name_length = segment
            .bytes()
            .take_while(u8::is_ascii_alphanumeric)
            .count();
        let after_name = &segment[name_length..];
        let subject = if after_name.starts_with('(') || after_name.starts_with("%28") {
            Subject::LogFunction(segment[..name_length].to_ascii_lowercase())
        } else {
            Subject::Record(segment.to_ascii_lowercase())
        };
        Target::Graph(Some(subject))
    }

    /// The record whose detail answers may be corrupt.
    fn record_id(&self) -> Option<&str> {
        match self {
            Target::Graph(Some(Subject::Record(id))) => Some(id),
            _ => None,
        }
    }
}

pub async fn gate(State(state): State<EmulatorState>, request: Request, next: Next) -> Response {
    let target = Target::of(request.uri().path());
    let method = request.method().as_str().to_owned();
    let url = request
        .uri()
        .path_and_query()
        .map_or_else(|| request.uri().path().to_owned(), |url| url.to_string());
    let faults = &state.config.faults;
    match &target {
        Target::Other => return next.run(request).await,
        Target::Token => return token_gate(&state, &method, &url, request, next).await,
        Target::Graph(subject) => {
            if let (Some(limiter), Some(subject)) = (&state.limiter, subject)
                && let Err(refusal) = limiter.admit(subject)
            {
                return state.injected(FaultKind::Limited, over_limit(&refusal));
            }
        }
    }
    if !faults.is_active() {
        return next.run(request).await;
    }
    // Only admitted requests take an attempt number: refusals depend on timing, fates
    // must not.
    let fate = faults.fate(&method, &url, state.ledger.attempt(&method, &url));
    let retry_after = faults.retry_after_secs;
    let response = match fate {
        Fate::Throttle => {
            let response = GraphError::too_many_requests(
                "Application is over its request limit (injected fault).",
            );
            return state.injected(
                FaultKind::Throttled,
                with_retry_after(response.into_response(), retry_after),
            );
        }
        Fate::ServerError {
            status,
            retry_after: with_header,
        } => {
            let mut response = GraphError::server_error(status).into_response();
            if with_header {
                response = with_retry_after(response, retry_after);
            }
            return state.injected(FaultKind::ServerError, response);
        }
        Fate::Drop => return state.injected(FaultKind::Dropped, dropped()),
        Fate::Slow => {
            tokio::time::sleep(faults.slow_delay).await;
            let response = next.run(request).await;
            state.injected(FaultKind::Slowed, response)
        }
        Fate::Truncate => {
            let response = next.run(request).await;
            if response.status() == StatusCode::OK {
                return state.injected(FaultKind::Truncated, truncated(response).await);
            }
            response
        }
        Fate::Pass => next.run(request).await,
    };
    match target.record_id() {
        Some(id) if response.status() == StatusCode::OK && faults.is_corrupt(id) => {
            state.injected(FaultKind::Corrupt, truncated(response).await)
        }
        _ => response,
    }
}

/// The token endpoint's faults: a dropped connection or Entra ID's "temporarily
/// unavailable" (Graph's limits do not apply to it).
async fn token_gate(
    state: &EmulatorState,
    method: &str,
    url: &str,
    request: Request,
    next: Next,
) -> Response {
    let faults = &state.config.faults;
    if faults.token_fault_rate == 0.0 {
        return next.run(request).await;
    }
    match faults.token_fate(url, state.ledger.attempt(method, url)) {
        Fate::Pass => next.run(request).await,
        Fate::Drop => state.injected(FaultKind::TokenFault, dropped()),
        _ => state.injected(
            FaultKind::TokenFault,
            EntraError::temporarily_unavailable().into_response(),
        ),
    }
}

/// Graph's 429 for a request over one of its limits, with Retry-After.
fn over_limit(refusal: &Refusal) -> Response {
    let seconds = whole_seconds(refusal.retry_after);
    let message = format!(
        "Too many requests: the limit of {} {} per {} s is reached. Retry after {seconds} s.",
        refusal.rate.requests,
        refusal.limit,
        refusal.rate.per.as_secs_f64()
    );
    with_retry_after(
        GraphError::too_many_requests(message).into_response(),
        seconds,
    )
}

impl EmulatorState {
    /// Counts the fault and marks the response with it.
    fn injected(&self, kind: FaultKind, mut response: Response) -> Response {
        self.ledger.count(kind);
        response.extensions_mut().insert(Injected(kind));
        response
    }
}

/// Retry-After in whole seconds, at least 1 (a client that waits 0 s would hit again).
fn whole_seconds(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

fn with_retry_after(mut response: Response, seconds: u64) -> Response {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// A response hyper never sends: its body fails before the first byte, and hyper then
/// closes the connection without flushing the already-buffered head, so the client sees
/// the connection close with no HTTP response at all.
fn dropped() -> Response {
    let failing = futures::stream::once(async {
        Err::<Bytes, _>(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "connection dropped by fault injection",
        ))
    });
    let mut response = Response::new(Body::from_stream(failing));
    response.extensions_mut().insert(Dropped);
    response
}

/// The same response with the first half of its body only (and a matching length).
async fn truncated(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(bytes.slice(..bytes.len() / 2)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(path: &str) -> Option<Subject> {
        match Target::of(path) {
            Target::Graph(subject) => subject,
            Target::Token | Target::Other => panic!("{path} is not a Graph request"),
        }
    }

    #[test]
    fn classifies_paths() {
        assert!(matches!(
            Target::of("/tenant/oauth2/v2.0/token"),
            Target::Token
        ));
        assert!(matches!(Target::of("/favicon.ico"), Target::Other));
        assert_eq!(subject("/v1.0/me/events"), None);
        assert_eq!(
            subject("/beta/communications/callRecords"),
            Some(Subject::List)
        );
        assert_eq!(
            subject("/v1.0/communications/callRecords/ABC-1/sessions"),
            Some(Subject::Record("abc-1".into()))
        );
        assert_eq!(
            subject(
                "/v1.0/communications/callRecords/getPstnCalls(fromDateTime=2026-11-01,toDateTime=2026-11-02)"
            ),
            Some(Subject::LogFunction("getpstncalls".into()))
        );
        assert_eq!(
            subject(
                "/beta/communications/callRecords/getSmsLog%28fromDateTime=2026-11-01%2CtoDateTime=2026-11-02%29"
            ),
            Some(Subject::LogFunction("getsmslog".into()))
        );
    }

    #[test]
    fn retry_after_is_whole_seconds_and_at_least_one() {
        assert_eq!(whole_seconds(Duration::ZERO), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1_001)), 2);
        assert_eq!(whole_seconds(Duration::from_secs(20)), 20);
    }
}
