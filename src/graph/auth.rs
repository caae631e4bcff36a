//! OAuth2 client-credentials tokens from Microsoft Entra ID, cached until shortly before
//! expiry, plus [`Secret`], the redacting wrapper for secrets, assertions and tokens.
//!
//! Touches only the token endpoint `{login_url}/{tenant_id}/oauth2/v2.0/token` (and, through
//! [`Credential`], the federated token file). Never logs or formats a secret, an assertion
//! or a token; Entra ID's error descriptions are turned into messages that say what to fix.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::Client;
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

use super::GraphError;
use super::body::{self, BodyError};
use super::credential::{ASSERTION_TYPE, Credential, Proof};
use crate::redact::redact;

/// A value that must not leak into logs, errors or files (a client secret, a client
/// assertion, an access token, a hashing key): `Debug` and `Display` print `[redacted]`;
/// only [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Keep at least this much lifetime in reserve so a token never expires mid-request.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5 * 60);
/// Largest token endpoint answer read: a token response is a few kilobytes.
const TOKEN_BODY_LIMIT: u64 = 1024 * 1024;

struct CachedToken {
    /// Shared so that every request can hold the token without copying the string.
    value: Arc<Secret>,
    refresh_at: Instant,
}

/// The token cache. The mutex is held across a refresh so only one token request is in
/// flight; concurrent callers wait for it and then reuse its result.
pub(crate) struct TokenSource {
    endpoint: Url,
    client_id: String,
    credential: Credential,
    scope: String,
    cached: Mutex<Option<CachedToken>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    /// Entra ID v2 sends a number; older endpoints sent a string.
    expires_in: serde_json::Value,
}

#[derive(Deserialize, Default)]
struct AadError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

impl TokenSource {
    pub(crate) fn new(
        login_url: &Url,
        tenant_id: &str,
        client_id: &str,
        credential: Credential,
        graph_url: &Url,
    ) -> Self {
        let mut endpoint = login_url.clone();
        // A login URL with a base path keeps it; the tenant is percent-encoded as one segment.
        if let Ok(mut segments) = endpoint.path_segments_mut() {
            segments
                .pop_if_empty()
                .extend([tenant_id, "oauth2", "v2.0", "token"]);
        }
        Self {
            endpoint,
            client_id: client_id.to_owned(),
            credential,
            scope: format!("{}/.default", graph_url.origin().ascii_serialization()),
            cached: Mutex::new(None),
        }
    }

    /// The cached token, or a fresh one when there is none or it is about to expire.
    /// `on_request` is called once per token request actually sent (for the stats).
    pub(crate) async fn token(
        &self,
        http: &Client,
        on_request: impl FnOnce(),
    ) -> Result<Arc<Secret>, GraphError> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| Instant::now() < t.refresh_at) {
            return Ok(token.value.clone());
        }
        on_request();
        let fresh = self.request(http).await?;
        let value = fresh.value.clone();
        *cached = Some(fresh);
        Ok(value)
    }

    /// Drops `stale` after Graph refused it. A token that was already replaced by a
    /// concurrent caller is left alone, so N parallel 401s cause one refresh, not N.
    pub(crate) async fn invalidate(&self, stale: &Arc<Secret>) {
        let mut cached = self.cached.lock().await;
        if cached
            .as_ref()
            .is_some_and(|t| Arc::ptr_eq(&t.value, stale))
        {
            *cached = None;
        }
    }

    async fn request(&self, http: &Client) -> Result<CachedToken, GraphError> {
        // A fresh proof per request: assertions are single-use and short-lived, and the
        // federated token file is rotated by the kubelet.
        let proof =
            self.credential
                .proof(self.endpoint.as_str(), &self.client_id, SystemTime::now())?;
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("scope", self.scope.as_str()),
        ];
        match &proof {
            Proof::Secret(secret) => form.push(("client_secret", secret.expose())),
            Proof::Assertion(assertion) => form.extend([
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", assertion.expose()),
            ]),
        }
        let sent = Instant::now();
        let response = http
            .post(self.endpoint.clone())
            .form(&form)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        tracing::debug!(method = "POST", url = %self.endpoint, status = status.as_u16(),
            elapsed_ms = sent.elapsed().as_millis() as u64, "token request");
        let body = match body::read_capped(response, TOKEN_BODY_LIMIT).await {
            Ok(body) => body,
            Err(BodyError::Transport(e)) => return Err(self.unreachable(&e)),
            Err(BodyError::TooLarge { .. }) => {
                return Err(self.invalid(status.as_u16(), "answered with more than 1 MiB"));
            }
        };
        if !status.is_success() {
            let aad: AadError = serde_json::from_slice(&body).unwrap_or_default();
            return Err(self.refused(status.as_u16(), aad, proof.value()));
        }
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            self.invalid(
                status.as_u16(),
                &format!("answered without a usable access_token ({e})"),
            )
        })?;
        let lifetime = Duration::from_secs(lifetime_seconds(&parsed.expires_in));
        // Short lifetimes (test tenants, emulators) would leave nothing after the margin:
        // refresh at half the lifetime then.
        let usable = lifetime.saturating_sub(EXPIRY_MARGIN).max(lifetime / 2);
        Ok(CachedToken {
            value: Arc::new(Secret::new(parsed.access_token)),
            refresh_at: sent + usable,
        })
    }

    fn invalid(&self, status: u16, what: &str) -> GraphError {
        GraphError::Token {
            status: Some(status),
            code: "invalid_response".into(),
            message: format!(
                "the token endpoint {} {what}; check login_url",
                self.endpoint
            ),
        }
    }

    fn unreachable(&self, error: &reqwest::Error) -> GraphError {
        GraphError::Token {
            status: None,
            code: "unreachable".into(),
            message: format!(
                "could not reach the login host {} ({error}); check login_url and the network or proxy",
                self.endpoint.host_str().unwrap_or("(none)")
            ),
        }
    }

    fn refused(&self, status: u16, aad: AadError, sent: &Secret) -> GraphError {
        let aadsts = aadsts_code(&aad.error_description);
        let advice = match aadsts {
            Some("7000215") => {
                "the client secret is wrong: use the secret's Value (not its Secret ID) from the \
                 app registration's Certificates & secrets page"
            }
            Some("7000222") => {
                "the client secret has expired: create a new one in the app registration"
            }
            Some("700016") => {
                "no application with this client_id exists in the tenant: check client_id and \
                 tenant_id, and that the app is registered in (or consented to) this tenant"
            }
            Some("90002") | Some("900023") => {
                "the tenant was not found: check tenant_id (the directory ID GUID or a verified domain)"
            }
            Some("7000218") => "no client secret was sent: set client_secret",
            Some("700027") => {
                "the client assertion's certificate is not accepted: upload the certificate (its \
                 public part, same thumbprint) to the app registration's Certificates & secrets, and \
                 check that it has not expired"
            }
            Some("700024") => {
                "the client assertion is outside its validity period: check this machine's clock (NTP)"
            }
            Some("70021") | Some("700211") | Some("700212") | Some("700213") => {
                "no federated credential of the app matches the workload identity token: add one whose \
                 issuer is the cluster's OIDC issuer URL, subject is \
                 system:serviceaccount:<namespace>:<service account> and audience is api://AzureADTokenExchange"
            }
            Some("700022") | Some("50027") => {
                "the client assertion is not a valid token: check client_certificate_file or the \
                 federated token file"
            }
            Some("1002012") | Some("70011") => "the requested scope was refused: check graph_url",
            _ => "the login endpoint refused the credentials",
        };
        let first_line = aad.error_description.lines().next().unwrap_or_default();
        // Entra ID never echoes the secret or the assertion, but a proxy or emulator might;
        // redact defensively.
        let detail = redact(first_line, &[sent.expose()]);
        let code = match (aadsts, aad.error.is_empty()) {
            (Some(n), _) => format!("AADSTS{n}"),
            (None, false) => redact(&aad.error, &[sent.expose()]),
            (None, true) => format!("http_{status}"),
        };
        let message = if detail.is_empty() {
            advice.to_owned()
        } else {
            format!("{advice} (Entra ID said: {detail})")
        };
        GraphError::Token {
            status: Some(status),
            code,
            message,
        }
    }
}

fn lifetime_seconds(expires_in: &serde_json::Value) -> u64 {
    match expires_in {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .unwrap_or(0)
}

/// The digits after `AADSTS` in an Entra ID error description, e.g. `7000215`.
fn aadsts_code(description: &str) -> Option<&str> {
    let rest = &description[description.find("AADSTS")? + "AADSTS".len()..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    (digits > 0).then(|| &rest[..digits])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aadsts_code_is_extracted() {
        assert_eq!(
            aadsts_code("AADSTS7000215: Invalid client secret provided."),
            Some("7000215")
        );
        assert_eq!(aadsts_code("Trace: x AADSTS90002: Tenant"), Some("90002"));
        assert_eq!(aadsts_code("no code here"), None);
        assert_eq!(aadsts_code("AADSTS"), None);
    }

    #[test]
    fn secret_is_redacted() {
        let secret = Secret::new("hunter2".into());
        assert_eq!(format!("{secret:?} {secret}"), "[redacted] [redacted]");
        assert_eq!(secret.expose(), "hunter2");
    }
}
