//! The typed errors of the Graph client ([`GraphError`]), one variant per outcome a caller
//! may branch on (skip a record, fix the configuration, retry later).
//!
//! Touches nothing: pure data and messages. Messages never contain the client secret or a
//! token: URLs are shown through [`redact`] (a signed URL's signature, say), and the text
//! the variants carry from a server (error descriptions, bodies) is redacted when the
//! client builds them.

use std::num::NonZeroU64;

use url::Url;

use crate::redact::redact;

/// Why a Graph or token request failed.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// 404: the record expired (30-day retention) or is not generated yet. Never retried.
    #[error("not found (HTTP 404): {}", shown(url))]
    NotFound { url: Url },

    /// The token endpoint refused the credentials or could not be reached.
    /// `message` says in plain words what is wrong and what to change.
    #[error("could not get an access token ({code}{}): {message}", status_suffix(*status))]
    Token {
        status: Option<u16>,
        code: String,
        message: String,
    },

    /// The configured credential could not be used locally (the federated token file is
    /// unreadable, an assertion could not be signed). Retrying does not help.
    #[error("cannot use the configured credential: {message}")]
    Credential { message: String },

    /// Graph answered 401 again after the token was refreshed once.
    #[error(
        "Microsoft Graph rejected a freshly issued access token (HTTP 401) for {}; \
         check that tenant_id is the tenant the application is registered and consented in",
        shown(url)
    )]
    Unauthorized { url: Url },

    /// 403: the application lacks the permission (or its admin consent).
    #[error(
        "access denied (HTTP 403) for {}: {message}. The application needs the Microsoft Graph \
         application permission CallRecords.Read.All, with admin consent granted in this tenant",
        shown(url)
    )]
    Forbidden { url: Url, message: String },

    /// 400: Graph's `error.message` explains which part of the request it refused.
    #[error("bad request (HTTP 400) for {}: {message}", shown(url))]
    BadRequest { url: Url, message: String },

    /// Any other non-retryable status, or a 5xx that persisted through all attempts.
    #[error("HTTP {status} for {}: {message}", shown(url))]
    Status {
        url: Url,
        status: u16,
        message: String,
    },

    /// Still 429 when `max_attempts` or `max_total_wait` ran out.
    #[error(
        "still throttled (HTTP 429) by Microsoft Graph after {attempts} attempts for {}; \
         run again later or with lower concurrency",
        shown(url)
    )]
    Throttled { url: Url, attempts: u32 },

    /// Connection refused/reset or timeout, after the retries.
    #[error("could not reach {}: {source}", shown(url))]
    Transport {
        url: Url,
        #[source]
        source: reqwest::Error,
    },

    /// The body is not JSON, or not the shape Graph documents (e.g. a page without `value`).
    /// `body` is what was received (kept for the quarantine file, never in the message).
    #[error("unexpected response from {}: {message}", shown(url))]
    Decode {
        url: Url,
        message: Box<str>,
        body: Box<str>,
    },

    /// A URL (typically an `@odata.nextLink`) outside the configured Graph origin; refused
    /// before sending so the bearer token never leaves that origin.
    #[error(
        "refused to send a Graph request to host {}: {} is not on the configured Graph URL's \
         scheme/host/port",
        url.host_str().unwrap_or("(none)"),
        shown(url)
    )]
    ForeignOrigin { url: Url },

    /// The response body is larger than `[graph] max_response_bytes`: refused while it
    /// arrived (or from its `Content-Length`), so it never fills the memory. Not retried.
    /// `body` is the start of what was received (redacted), for the quarantine file.
    #[error(
        "the response from {} is larger than [graph] max_response_bytes = {limit} bytes{}; \
         raise max_response_bytes in the config file if such responses are expected",
        shown(url),
        length_suffix(*content_length)
    )]
    TooLarge {
        url: Url,
        limit: u64,
        /// The declared length, when it is what was refused (never zero then).
        content_length: Option<NonZeroU64>,
        body: Box<str>,
    },
}

impl GraphError {
    /// For the errors that condemn one record rather than the run (a response that cannot be
    /// read, or is too large): where it came from, why, and the body received, for the
    /// quarantine. Every other error is given back.
    pub fn into_unreadable(self) -> Result<(Url, Box<str>, Box<str>), GraphError> {
        let described: Box<str> = self.to_string().into();
        match self {
            GraphError::Decode { url, message, body } => Ok((url, message, body)),
            GraphError::TooLarge { url, body, .. } => Ok((url, described, body)),
            other => Err(other),
        }
    }
}

/// A URL as messages show it: with signatures and secrets of its query redacted.
fn shown(url: &Url) -> String {
    redact(url.as_str(), &[])
}

fn length_suffix(content_length: Option<NonZeroU64>) -> String {
    content_length
        .map(|n| format!(" (its Content-Length is {n})"))
        .unwrap_or_default()
}

fn status_suffix(status: Option<u16>) -> String {
    status.map(|s| format!(", HTTP {s}")).unwrap_or_default()
}
