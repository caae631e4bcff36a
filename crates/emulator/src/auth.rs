//! Authentication as the emulator plays it: the Entra ID v2.0 client-credentials token
//! endpoint (with Entra's error codes for wrong tenant, client or secret) and the bearer
//! check in front of every Graph route. Tokens are random, opaque and kept in memory until
//! they expire; every token ever issued is also listed, so leak tests can search output for
//! them. Touches nothing outside the emulator's state.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use rand::Rng;
use serde_json::json;
use tokio::time::Instant;

use super::odata::GraphError;
use super::routes::EmulatorState;

/// Issued access tokens and when each expires. Uses tokio's clock so tests can pause time.
#[derive(Debug, Default)]
pub struct TokenStore {
    expiries: Mutex<HashMap<String, Instant>>,
    /// Every token handed out, in order, expired or not.
    issued: Mutex<Vec<String>>,
}

impl TokenStore {
    fn issue(&self, lifetime: Duration) -> String {
        let mut rng = rand::rng();
        let token = format!(
            "emu.{:032x}{:032x}",
            rng.random::<u128>(),
            rng.random::<u128>()
        );
        let now = Instant::now();
        let mut expiries = self
            .expiries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Forget expired tokens so a long-running emulator does not grow without bound.
        expiries.retain(|_, expiry| *expiry > now);
        expiries.insert(token.clone(), now + lifetime);
        self.issued
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(token.clone());
        token
    }

    /// Every access token issued so far.
    pub fn issued(&self) -> Vec<String> {
        self.issued
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn is_valid(&self, token: &str) -> bool {
        let expiries = self
            .expiries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        expiries
            .get(token)
            .is_some_and(|expiry| *expiry > Instant::now())
    }
}

/// An Entra ID (AADSTS) error response.
pub struct EntraError {
    status: StatusCode,
    error: &'static str,
    code: u32,
    description: String,
}

impl EntraError {
    fn new(status: StatusCode, error: &'static str, code: u32, description: String) -> Self {
        Self {
            status,
            error,
            code,
            description,
        }
    }
}

impl EntraError {
    /// Entra's answer when it cannot serve a token right now (a transient outage).
    pub fn temporarily_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            90033,
            "A transient error has occurred. Please try again.".to_owned(),
        )
    }
}

impl IntoResponse for EntraError {
    fn into_response(self) -> Response {
        let trace_id = uuid::Uuid::new_v4().to_string();
        let correlation_id = uuid::Uuid::new_v4().to_string();
        let timestamp = Utc::now().format("%Y-%m-%d %H:%M:%SZ");
        let body = json!({
            "error": self.error,
            "error_description": format!(
                "AADSTS{}: {} Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {timestamp}",
                self.code, self.description
            ),
            "error_codes": [self.code],
            "timestamp": timestamp.to_string(),
            "trace_id": trace_id,
            "correlation_id": correlation_id,
        });
        (self.status, Json(body)).into_response()
    }
}

/// `POST /{tenant}/oauth2/v2.0/token` with a form-encoded client-credentials grant.
pub async fn token(
    State(state): State<EmulatorState>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Response {
    match issue_token(&state, &tenant, &body) {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

fn issue_token(state: &EmulatorState, tenant: &str, body: &[u8]) -> Result<Response, EntraError> {
    let config = &state.config;
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    if tenant != config.tenant_id {
        return Err(EntraError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        ));
    }
    if field("grant_type") != "client_credentials" {
        return Err(EntraError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            format!(
                "The app requested an unsupported grant type '{}'.",
                field("grant_type")
            ),
        ));
    }
    if field("client_id") != config.client_id {
        return Err(EntraError::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant.",
                field("client_id")
            ),
        ));
    }
    if field("client_secret") != config.client_secret {
        return Err(EntraError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app.".to_owned(),
        ));
    }
    if !field("scope").ends_with("/.default") {
        return Err(EntraError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            format!(
                "The provided value for scope {} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).",
                field("scope")
            ),
        ));
    }
    let lifetime = config.token_lifetime.as_secs();
    let access_token = state.tokens.issue(config.token_lifetime);
    let body = json!({
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": access_token,
    });
    Ok((StatusCode::OK, Json(body)).into_response())
}

/// Lets a Graph request through only with `Authorization: Bearer <valid token>`.
pub async fn require_bearer(
    State(state): State<EmulatorState>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match presented {
        Some(token) if state.tokens.is_valid(token) => next.run(request).await,
        _ => GraphError::invalid_token().into_response(),
    }
}
