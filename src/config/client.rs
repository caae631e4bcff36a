//! The Graph client's settings from `[graph]`, `[retry]` and `[limits]`: the tenant and
//! application (from the file or the AKS workload identity variables), the endpoints, the
//! credential, the API version, retries and pacing. May touch: the environment and, through
//! [`super::credential`], the files that hold a secret.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use url::{Host, Url};

use super::credential::credential;
use super::file::{GraphSection, LimitsSection, RetrySection};
use super::{CLIENT_ID_ENV, MIN_RESPONSE_BYTES, TENANT_ID_ENV};
use crate::graph::{ApiVersion, ClientSettings, Credential, RateLimits};

/// Who signs in where, and how: the part of [`ClientSettings`] that [`ClientSettings::new`]
/// takes.
pub(super) struct Identity {
    tenant_id: String,
    client_id: String,
    graph_url: Url,
    login_url: Url,
    credential: Credential,
}

/// How the client behaves: the rest of [`ClientSettings`].
pub(super) struct Tuning {
    api_version: ApiVersion,
    max_response_bytes: u64,
    max_attempts: u32,
    max_total_wait: Duration,
    request_timeout: Duration,
    limits: RateLimits,
}

impl Identity {
    pub(super) fn into_client(self, tuning: Tuning) -> ClientSettings {
        let mut client = ClientSettings::new(
            self.graph_url,
            self.login_url,
            self.tenant_id,
            self.client_id,
            self.credential,
        );
        client.api_version = tuning.api_version;
        client.max_response_bytes = tuning.max_response_bytes;
        client.max_attempts = tuning.max_attempts;
        client.max_total_wait = tuning.max_total_wait;
        client.request_timeout = tuning.request_timeout;
        client.limits = tuning.limits;
        client
    }
}

/// The tenant, the application, the endpoints and the credential; `None` when one of them
/// has a problem (each said in `problems`).
pub(super) fn identity(
    graph: &GraphSection,
    base: &Path,
    env: &impl Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> Option<Identity> {
    let tenant_id = graph_value(&graph.tenant_id, "tenant_id", TENANT_ID_ENV, env, problems)
        .filter(|(source, value)| {
            let valid = is_guid(value) || is_domain(value);
            if !valid {
                problems.push(format!(
                    "{source} = {value:?} is neither a GUID nor a domain such as contoso.onmicrosoft.com \
                     (Entra admin center > Overview > Tenant ID)"
                ));
            }
            valid
        });
    let client_id = graph_value(&graph.client_id, "client_id", CLIENT_ID_ENV, env, problems)
        .filter(|(source, value)| {
            let valid = is_guid(value);
            if !valid {
                problems.push(format!(
                    "{source} = {value:?} is not a GUID (the app registration's Application (client) ID)"
                ));
            }
            valid
        });
    let graph_url = graph
        .graph_url
        .as_deref()
        .unwrap_or(graph.cloud.graph_url());
    let graph_url = check_url("[graph] graph_url", graph_url, problems);
    let login_url = graph
        .login_url
        .as_deref()
        .unwrap_or(graph.cloud.login_url());
    let login_url = check_url("[graph] login_url", login_url, problems);
    let credential = credential(graph, base, env, problems);
    Some(Identity {
        tenant_id: tenant_id?.1,
        client_id: client_id?.1,
        graph_url: graph_url?,
        login_url: login_url?,
        credential: credential?,
    })
}

/// The API version, the response cap, retries and pacing, with every problem in `problems`.
pub(super) fn tuning(
    graph: &GraphSection,
    retry: &RetrySection,
    limits: &LimitsSection,
    problems: &mut Vec<String>,
) -> Tuning {
    let max_response_bytes = graph
        .max_response_bytes
        .unwrap_or(crate::graph::DEFAULT_MAX_RESPONSE_BYTES);
    if max_response_bytes < MIN_RESPONSE_BYTES {
        problems.push(format!(
            "[graph] max_response_bytes = {max_response_bytes} is below {MIN_RESPONSE_BYTES} (1 MiB): \
             Graph's pages are larger than that; leave it out for the default of 512 MiB"
        ));
    }
    let api_version = api_version(graph.api_version.as_deref()).unwrap_or_else(|problem| {
        problems.push(problem);
        ApiVersion::default()
    });
    retry.check(problems);
    Tuning {
        api_version,
        max_response_bytes,
        max_attempts: retry.max_attempts,
        max_total_wait: Duration::from_secs(retry.max_total_wait_seconds),
        request_timeout: Duration::from_secs(retry.request_timeout_seconds),
        limits: limits.resolve(problems),
    }
}

/// `[graph] api_version`: `v1.0` when left out.
fn api_version(configured: Option<&str>) -> Result<ApiVersion, String> {
    let Some(name) = configured else {
        return Ok(ApiVersion::default());
    };
    name.parse()
        .map_err(|()| format!("[graph] api_version = {name:?} must be \"v1.0\" or \"beta\""))
}

/// A `[graph]` value from the file, else from the environment variable `env_name`, with
/// where it came from (for messages).
fn graph_value(
    configured: &Option<String>,
    key: &str,
    env_name: &str,
    env: &impl Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> Option<(String, String)> {
    let found = match configured {
        Some(value) => Some((format!("[graph] {key}"), value.clone())),
        None => env(env_name)
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty())
            .map(|value| (env_name.to_owned(), value)),
    };
    if found.is_none() {
        problems.push(format!(
            "[graph] {key} is missing: set it in the config file (or the environment variable {env_name})"
        ));
    }
    found
}

/// An `https` URL, or `http` to a loopback address (an emulator or a test server).
fn check_url(key: &str, text: &str, problems: &mut Vec<String>) -> Option<Url> {
    let url = match Url::parse(text) {
        Ok(url) => url,
        Err(e) => {
            problems.push(format!("{key} = {text:?} is not a URL ({e})"));
            return None;
        }
    };
    match url.scheme() {
        "https" => Some(url),
        "http" if is_loopback(&url) => Some(url),
        "http" => {
            problems.push(format!(
                "{key} = {text:?} uses plain http to a non-loopback host: credentials and call data must travel \
                 over https (http is allowed only for 127.0.0.1, ::1 and localhost)"
            ));
            None
        }
        other => {
            problems.push(format!("{key} = {text:?} has scheme {other:?}; use https"));
            None
        }
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn is_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && group.chars().all(|c| c.is_ascii_hexdigit()))
}

fn is_domain(text: &str) -> bool {
    text.contains('.')
        && text.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_version_defaults_to_v1_and_names_the_choices() {
        assert_eq!(api_version(None), Ok(ApiVersion::V1));
        assert_eq!(api_version(Some("beta")), Ok(ApiVersion::Beta));
        assert_eq!(
            api_version(Some("v2")),
            Err("[graph] api_version = \"v2\" must be \"v1.0\" or \"beta\"".to_string())
        );
    }

    #[test]
    fn tenants_are_guids_or_domains() {
        assert!(is_guid("00000000-0000-4000-8000-00000000c11e"));
        assert!(!is_guid("00000000-0000-4000-8000-00000000c11"));
        assert!(is_domain("contoso.onmicrosoft.com"));
        assert!(!is_domain("contoso"));
        assert!(!is_domain("contoso..com"));
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for url in ["http://127.0.0.1:1", "http://[::1]:1", "http://LOCALHOST"] {
            assert!(is_loopback(&Url::parse(url).unwrap()), "{url}");
        }
        assert!(!is_loopback(&Url::parse("http://10.0.0.1").unwrap()));
    }
}
