//! The Microsoft Graph HTTP client: one authenticated `GET` returning JSON, with the token
//! cache, retries, throttling (`429` + `Retry-After`) and request statistics.
//!
//! Touches only the configured Graph origin and the login endpoint. Knows nothing of
//! Arrow, Parquet or what the JSON means; paging is done by [`crate::streams`] on top of
//! [`GraphClient::get_json`]. The bearer token is only ever sent to the origin of
//! `graph_url`: other URLs are refused before sending and redirects are not followed.
//!
//! Every response body is read under a cap (`max_response_bytes`, see `body`), and what
//! a server sends back in an error (its message, a broken body) is redacted of secrets,
//! the token sent with the request included, before it is logged or returned.
//!
//! - `auth`: the token cache and [`Secret`]; [`credential`]: client secret, certificate
//!   (signed client assertion) or workload identity (federated token file).

mod auth;
mod body;
pub mod credential;
mod error;
mod pacing;
mod retry;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};
use reqwest::{Client, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use url::Url;

pub use auth::Secret;
pub use credential::{ClientCertificate, Credential};
pub use error::GraphError;
pub use pacing::{Limit, RateLimits};

use crate::redact::redact;
use auth::TokenSource;
use body::BodyError;
use pacing::Pacer;
use retry::Verdict;

const USER_AGENT: &str = concat!("callrecords-etl/", env!("CARGO_PKG_VERSION"));

/// Default of [`ClientSettings::max_response_bytes`]: 512 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 512 * 1024 * 1024;
/// Default of [`ClientSettings::max_attempts`].
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;
/// Default of [`ClientSettings::max_total_wait`]: 15 minutes.
pub const DEFAULT_MAX_TOTAL_WAIT: Duration = Duration::from_secs(15 * 60);
/// Default of [`ClientSettings::request_timeout`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(100);
/// How much of an error response is read: Graph's error JSON is a few hundred bytes.
const ERROR_BODY_LIMIT: u64 = 64 * 1024;

/// Everything the client needs; [`ClientSettings::new`] fills in the defaults.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// e.g. `https://graph.microsoft.com`, or `http://127.0.0.1:PORT` for the emulator.
    pub graph_url: Url,
    /// e.g. `https://login.microsoftonline.com`.
    pub login_url: Url,
    pub tenant_id: String,
    pub client_id: String,
    /// How the application proves its identity (secret, certificate or workload identity).
    pub credential: Credential,
    /// The path segment before every request path.
    pub api_version: ApiVersion,
    /// Attempts per request, all retryable causes together.
    pub max_attempts: u32,
    /// Total time one request may spend waiting between attempts before giving up.
    pub max_total_wait: Duration,
    /// Timeout of one HTTP exchange (connect + response body).
    pub request_timeout: Duration,
    /// First backoff ceiling when the server sent no `Retry-After`; doubles per retry.
    pub backoff_base: Duration,
    /// Largest backoff ceiling.
    pub backoff_cap: Duration,
    /// Graph's throttling limits, which the client paces its requests under.
    pub limits: RateLimits,
    /// Largest response body read; a larger one fails its request with
    /// [`GraphError::TooLarge`].
    pub max_response_bytes: u64,
}

impl ClientSettings {
    pub fn new(
        graph_url: Url,
        login_url: Url,
        tenant_id: String,
        client_id: String,
        credential: impl Into<Credential>,
    ) -> Self {
        Self {
            graph_url,
            login_url,
            tenant_id,
            client_id,
            credential: credential.into(),
            api_version: ApiVersion::V1,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            max_total_wait: DEFAULT_MAX_TOTAL_WAIT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
            limits: RateLimits::default(),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

/// The Graph API version: `v1.0`, or `beta` for the beta-only log streams and properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApiVersion {
    #[default]
    V1,
    Beta,
}

impl ApiVersion {
    pub const ALL: [ApiVersion; 2] = [ApiVersion::V1, ApiVersion::Beta];

    /// The name in URLs, in `[graph] api_version` and `--api-version`.
    pub fn name(self) -> &'static str {
        match self {
            ApiVersion::V1 => "v1.0",
            ApiVersion::Beta => "beta",
        }
    }
}

impl std::str::FromStr for ApiVersion {
    type Err = ();

    fn from_str(name: &str) -> Result<Self, ()> {
        ApiVersion::ALL
            .into_iter()
            .find(|version| version.name() == name)
            .ok_or(())
    }
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Counters since the client was created (a snapshot from [`GraphClient::stats`]).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RequestStats {
    /// Graph requests sent, retries included (token requests excluded).
    pub requests: u64,
    /// Requests that were repeated after a retryable failure.
    pub retries: u64,
    /// 429 responses.
    pub throttled: u64,
    /// Time slept before retries (`Retry-After` or backoff), in milliseconds.
    pub throttle_wait_ms: u64,
    /// 404 responses.
    pub not_found: u64,
    /// Token requests sent to the login endpoint.
    pub token_requests: u64,
    /// Time requests waited to stay under Graph's limits, in milliseconds (summed over
    /// concurrent requests).
    pub paced_wait_ms: u64,
    /// Responses that were not the JSON Graph documents (truncated, broken), retried once.
    pub malformed: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    retries: AtomicU64,
    throttled: AtomicU64,
    throttle_wait_ms: AtomicU64,
    not_found: AtomicU64,
    token_requests: AtomicU64,
    paced_wait_ms: AtomicU64,
    malformed: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// A cheap-to-clone handle; clones share the token cache and the counters.
#[derive(Clone)]
pub struct GraphClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: Client,
    settings: ClientSettings,
    tokens: TokenSource,
    pacer: Pacer,
    counters: Counters,
}

/// The outcome of one attempt that the retry loop acts on.
enum Attempt<T> {
    Done(T),
    /// Graph answered 401 to this token.
    Unauthorized(Arc<Secret>),
    /// A success status with a body that is not JSON (truncated, cut off by a proxy).
    Malformed {
        message: String,
        body: String,
    },
    Transient {
        cause: Transient,
        retry_after: Option<Duration>,
    },
}

impl<T> Attempt<T> {
    fn transport(error: reqwest::Error) -> Self {
        Attempt::Transient {
            cause: Transient::Transport(error),
            retry_after: None,
        }
    }
}

/// Why the last attempt failed, kept to build the error once the retries run out.
enum Transient {
    Status { status: StatusCode, message: String },
    Transport(reqwest::Error),
    Token(GraphError),
}

/// Graph's error body: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Deserialize)]
struct GraphErrorBody {
    error: GraphErrorDetail,
}

#[derive(Deserialize)]
struct GraphErrorDetail {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

impl GraphClient {
    pub fn new(settings: ClientSettings) -> Result<Self, GraphError> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        // Evolvable enum members after `unknownFutureValue` (e.g. productFamily
        // azureCommunicationServices) are only sent when asked for.
        headers.insert(
            "Prefer",
            HeaderValue::from_static("include-unknown-enum-members"),
        );
        let http = Client::builder()
            .user_agent(USER_AGENT)
            .default_headers(headers)
            .timeout(settings.request_timeout)
            // A redirect could carry the bearer token to another origin; Graph does not
            // redirect these GETs, so a 3xx is reported instead of followed.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|source| GraphError::Transport {
                url: settings.graph_url.clone(),
                source,
            })?;
        let tokens = TokenSource::new(
            &settings.login_url,
            &settings.tenant_id,
            &settings.client_id,
            settings.credential.clone(),
            &settings.graph_url,
        );
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                pacer: Pacer::new(settings.limits),
                settings,
                tokens,
                counters: Counters::default(),
            }),
        })
    }

    /// `{graph_url}/{api_version}/{path}`; `path` is plain text segments separated by `/`
    /// (e.g. `communications/callRecords`), each percent-encoded as needed.
    pub fn api_url(&self, path: &str) -> Url {
        let mut url = self.inner.settings.graph_url.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments
                .pop_if_empty()
                .push(self.inner.settings.api_version.name())
                .extend(path.split('/').filter(|s| !s.is_empty()));
        }
        url
    }

    /// Fetch a token now, to validate the credentials before any export work.
    pub async fn authenticate(&self) -> Result<(), GraphError> {
        self.token().await.map(drop)
    }

    pub fn stats(&self) -> RequestStats {
        let c = &self.inner.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        RequestStats {
            requests: load(&c.requests),
            retries: load(&c.retries),
            throttled: load(&c.throttled),
            throttle_wait_ms: load(&c.throttle_wait_ms),
            not_found: load(&c.not_found),
            token_requests: load(&c.token_requests),
            paced_wait_ms: load(&c.paced_wait_ms),
            malformed: load(&c.malformed),
        }
    }

    /// One GET with auth, retries and throttling handled; the body parsed as JSON.
    pub async fn get_json(&self, url: &Url) -> Result<serde_json::Value, GraphError> {
        self.get_parsed(url).await
    }

    /// [`GraphClient::get_json`] into any type read from JSON: a body it does not read is
    /// retried once and then a [`GraphError::Decode`], like a body that is not JSON.
    pub async fn get_parsed<T: DeserializeOwned>(&self, url: &Url) -> Result<T, GraphError> {
        self.check_origin(url)?;
        let settings = &self.inner.settings;
        let counters = &self.inner.counters;
        let mut waited = Duration::ZERO;
        let mut token_refreshed = false;
        let mut malformed_retried = false;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let (cause, retry_after) = match self.attempt(url).await? {
                Attempt::Done(value) => return Ok(value),
                Attempt::Unauthorized(token) if !token_refreshed => {
                    tracing::debug!(url = %redact(url.as_str(), &[]),
                        "401 from Graph; refreshing the token once");
                    self.inner.tokens.invalidate(&token).await;
                    token_refreshed = true;
                    continue;
                }
                Attempt::Unauthorized(_) => {
                    return Err(GraphError::Unauthorized { url: url.clone() });
                }
                // A broken body is retried once, at once: a second broken answer means the
                // record itself cannot be read, and the caller quarantines it.
                Attempt::Malformed { message, body } => {
                    bump(&counters.malformed, 1);
                    if malformed_retried {
                        return Err(GraphError::Decode {
                            url: url.clone(),
                            message: message.into(),
                            body: body.into(),
                        });
                    }
                    tracing::warn!(url = %redact(url.as_str(), &[]),
                        "Response is not valid JSON ({message}); requesting it once more.");
                    malformed_retried = true;
                    bump(&counters.retries, 1);
                    continue;
                }
                Attempt::Transient { cause, retry_after } => (cause, retry_after),
            };
            let wait = retry_after.unwrap_or_else(|| {
                retry::full_jitter(
                    settings.backoff_base,
                    settings.backoff_cap,
                    attempt - 1,
                    rand::random(),
                )
            });
            if attempt >= settings.max_attempts || waited + wait > settings.max_total_wait {
                return Err(exhausted(url, cause, attempt));
            }
            tracing::warn!(url = %redact(url.as_str(), &[]), cause = %redact(&describe(&cause), &[]),
                wait_ms = wait.as_millis() as u64, attempt, "retrying Graph request");
            bump(&counters.retries, 1);
            bump(&counters.throttle_wait_ms, wait.as_millis() as u64);
            tokio::time::sleep(wait).await;
            waited += wait;
        }
    }

    /// One token lookup and one GET; `Err` only for failures that retrying cannot fix.
    async fn attempt<T: DeserializeOwned>(&self, url: &Url) -> Result<Attempt<T>, GraphError> {
        let token = match self.token().await {
            Ok(token) => token,
            // A login host that is briefly unreachable or overloaded should not end the
            // run; refused credentials are final.
            Err(error @ GraphError::Token { status, .. })
                if status.is_none_or(|s| s == 429 || s >= 500) =>
            {
                return Ok(Attempt::Transient {
                    cause: Transient::Token(error),
                    retry_after: None,
                });
            }
            Err(error) => return Err(error),
        };
        let paced = self.inner.pacer.acquire(url).await;
        bump(&self.inner.counters.paced_wait_ms, paced.as_millis() as u64);
        let request_id = uuid::Uuid::new_v4();
        let sent = Instant::now();
        bump(&self.inner.counters.requests, 1);
        let result = self
            .inner
            .http
            .get(url.clone())
            .bearer_auth(token.expose())
            .header("client-request-id", request_id.to_string())
            .send()
            .await;
        let response = match result {
            Ok(response) => response,
            Err(e) if is_transient(&e) => return Ok(Attempt::transport(e)),
            Err(source) => {
                return Err(GraphError::Transport {
                    url: url.clone(),
                    source,
                });
            }
        };
        tracing::debug!(method = "GET", url = %redact(url.as_str(), &[]),
            status = response.status().as_u16(), elapsed_ms = sent.elapsed().as_millis() as u64,
            client_request_id = %request_id, "graph request");
        self.answer(url, response, token).await
    }

    /// What one response means for the retry loop.
    async fn answer<T: DeserializeOwned>(
        &self,
        url: &Url,
        response: reqwest::Response,
        token: Arc<Secret>,
    ) -> Result<Attempt<T>, GraphError> {
        let status = response.status();
        match retry::classify(status, response.headers(), chrono::Utc::now()) {
            Verdict::Success => {
                let limit = self.inner.settings.max_response_bytes;
                match body::read_capped(response, limit).await {
                    Ok(body) => Ok(decode(body, &token)),
                    Err(BodyError::Transport(e)) => Ok(Attempt::transport(e)),
                    Err(BodyError::TooLarge {
                        content_length,
                        start,
                    }) => Err(GraphError::TooLarge {
                        url: url.clone(),
                        limit,
                        content_length: content_length.and_then(std::num::NonZeroU64::new),
                        body: redact(&body::excerpt(&start), &[token.expose()]).into(),
                    }),
                }
            }
            Verdict::RefreshToken => Ok(Attempt::Unauthorized(token)),
            Verdict::Retry { after } => {
                if status == StatusCode::TOO_MANY_REQUESTS {
                    bump(&self.inner.counters.throttled, 1);
                }
                let message = error_message(response, &token).await;
                Ok(Attempt::Transient {
                    cause: Transient::Status { status, message },
                    retry_after: after,
                })
            }
            Verdict::Fail => Err(self.failure(url, response, &token).await),
        }
    }

    async fn token(&self) -> Result<Arc<Secret>, GraphError> {
        let counter = &self.inner.counters.token_requests;
        self.inner
            .tokens
            .token(&self.inner.http, || bump(counter, 1))
            .await
    }

    fn check_origin(&self, url: &Url) -> Result<(), GraphError> {
        if url.origin() == self.inner.settings.graph_url.origin() {
            Ok(())
        } else {
            Err(GraphError::ForeignOrigin { url: url.clone() })
        }
    }

    /// The error of a non-retryable, non-401 response.
    async fn failure(&self, url: &Url, response: reqwest::Response, token: &Secret) -> GraphError {
        let url = url.clone();
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            bump(&self.inner.counters.not_found, 1);
            return GraphError::NotFound { url };
        }
        let message = error_message(response, token).await;
        match status {
            StatusCode::BAD_REQUEST => GraphError::BadRequest { url, message },
            StatusCode::FORBIDDEN => GraphError::Forbidden { url, message },
            _ => GraphError::Status {
                url,
                status: status.as_u16(),
                message,
            },
        }
    }
}

/// A success body parsed as JSON, or what to report when it is not JSON (redacted: a
/// proxy's page may echo the request's token). The bytes are dropped once parsed.
fn decode<T: DeserializeOwned>(body: Vec<u8>, token: &Secret) -> Attempt<T> {
    match serde_json::from_slice(&body) {
        Ok(value) => Attempt::Done(value),
        Err(e) => Attempt::Malformed {
            message: format!("body is not JSON: {e}"),
            body: redact(&String::from_utf8_lossy(&body), &[token.expose()]),
        },
    }
}

/// Graph's `error.code: error.message`, or the start of the body when it is not Graph's
/// error shape (a gateway page, say); redacted of secrets and of `token` before it is cut.
async fn error_message(response: reqwest::Response, token: &Secret) -> String {
    let status = response.status();
    let body = match body::read_capped(response, ERROR_BODY_LIMIT).await {
        Ok(body) => body,
        Err(BodyError::TooLarge { start, .. }) => start,
        Err(BodyError::Transport(_)) => Vec::new(),
    };
    let redacted = |text: &str| redact(text, &[token.expose()]);
    match serde_json::from_slice::<GraphErrorBody>(&body) {
        Ok(GraphErrorBody { error }) if !error.code.is_empty() => {
            redacted(&format!("{}: {}", error.code, error.message))
        }
        Ok(GraphErrorBody { error }) => redacted(&error.message),
        Err(_) => {
            let text = redacted(String::from_utf8_lossy(&body).trim());
            if text.is_empty() {
                status
                    .canonical_reason()
                    .unwrap_or("no reason given")
                    .to_owned()
            } else {
                text.chars().take(300).collect()
            }
        }
    }
}

/// Connection refused/reset and timeouts are worth another attempt; builder or redirect
/// errors are not.
fn is_transient(error: &reqwest::Error) -> bool {
    error.is_timeout() || error.is_connect() || error.is_request() || error.is_body()
}

fn describe(cause: &Transient) -> String {
    match cause {
        Transient::Status { status, .. } => format!("HTTP {}", status.as_u16()),
        Transient::Transport(e) => e.to_string(),
        Transient::Token(e) => e.to_string(),
    }
}

fn exhausted(url: &Url, cause: Transient, attempts: u32) -> GraphError {
    let url = url.clone();
    match cause {
        Transient::Status { status, .. } if status == StatusCode::TOO_MANY_REQUESTS => {
            GraphError::Throttled { url, attempts }
        }
        Transient::Status { status, message } => GraphError::Status {
            url,
            status: status.as_u16(),
            message: format!("{message} (gave up after {attempts} attempts)"),
        },
        Transient::Transport(source) => GraphError::Transport { url, source },
        Transient::Token(error) => error,
    }
}
