//! The configuration file (TOML), validated into [`Settings`] before any request is made.
//!
//! `config.example.toml` documents every key; a test parses it. Unknown keys, wrong types
//! and missing values are refused with the key's name. The client secret never comes from
//! this file: it is read from `CALLRECORDS_CLIENT_SECRET` or from `client_secret_file`.
//! May touch: the file system (to read the config and the secret file), the environment.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::{Host, Url};

use crate::graph::{ClientSettings, Limit, RateLimits, Secret};

/// The environment variable holding the client secret.
pub const SECRET_ENV: &str = "CALLRECORDS_CLIENT_SECRET";

pub const DEFAULT_GRAPH_URL: &str = "https://graph.microsoft.com";
pub const DEFAULT_LOGIN_URL: &str = "https://login.microsoftonline.com";
pub const DEFAULT_OUTPUT_PATH: &str = "./lake";
pub const DEFAULT_CONCURRENCY: usize = 8;
pub const DEFAULT_LOOKBACK_DAYS: u32 = 3;
pub const DEFAULT_LOG_CHUNK_DAYS: u32 = 30;

/// The file as written by the user.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub graph: GraphSection,
    #[serde(default)]
    pub output: OutputSection,
    #[serde(default)]
    pub export: ExportSection,
    #[serde(default)]
    pub retry: RetrySection,
    #[serde(default)]
    pub limits: LimitsSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphSection {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret_file: Option<PathBuf>,
    #[serde(default = "default_graph_url")]
    pub graph_url: String,
    #[serde(default = "default_login_url")]
    pub login_url: String,
    /// `v1.0`, or `beta` for the beta-only log streams and properties.
    #[serde(default = "default_api_version")]
    pub api_version: String,
}

fn default_api_version() -> String {
    "v1.0".into()
}

fn default_graph_url() -> String {
    DEFAULT_GRAPH_URL.into()
}

fn default_login_url() -> String {
    DEFAULT_LOGIN_URL.into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    #[serde(default = "default_output_path")]
    pub path: String,
}

impl Default for OutputSection {
    fn default() -> Self {
        OutputSection {
            path: default_output_path(),
        }
    }
}

fn default_output_path() -> String {
    DEFAULT_OUTPUT_PATH.into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportSection {
    /// Call records fetched at the same time (each needs 2+ requests).
    pub concurrency: usize,
    /// Whole days a run without `--from/--to` re-exports, ending at today 00:00 UTC, so that
    /// late call-record versions replace earlier ones.
    pub lookback_days: u32,
    /// Longest window of one log-function request (Graph refuses more than 90 days).
    pub log_chunk_days: u32,
}

impl Default for ExportSection {
    fn default() -> Self {
        ExportSection {
            concurrency: DEFAULT_CONCURRENCY,
            lookback_days: DEFAULT_LOOKBACK_DAYS,
            log_chunk_days: DEFAULT_LOG_CHUNK_DAYS,
        }
    }
}

/// How each Graph request is retried.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySection {
    /// Attempts per request (429, 5xx, resets and timeouts together).
    pub max_attempts: u32,
    /// Waiting per request (Retry-After or backoff) before giving up.
    pub max_total_wait_seconds: u64,
    /// Timeout of one HTTP exchange.
    pub request_timeout_seconds: u64,
}

impl Default for RetrySection {
    fn default() -> Self {
        RetrySection {
            max_attempts: 8,
            max_total_wait_seconds: 15 * 60,
            request_timeout_seconds: 100,
        }
    }
}

/// Graph's throttling limits the exporter paces itself under (documented defaults).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    pub app_tenant: Option<Limit>,
    pub per_call_record: Option<Limit>,
    pub list: Option<Limit>,
    pub log_app_tenant: Option<Limit>,
    pub per_log_function: Option<Limit>,
}

impl LimitsSection {
    fn resolve(&self, problems: &mut Vec<String>) -> RateLimits {
        let defaults = RateLimits::default();
        let mut pick = |key: &str, value: Option<Limit>, default: Limit| {
            let limit = value.unwrap_or(default);
            if limit.requests == 0 || limit.seconds == 0 {
                problems.push(format!(
                    "[limits] {key} = {{ requests = {}, seconds = {} }}: both must be positive",
                    limit.requests, limit.seconds
                ));
            }
            limit
        };
        RateLimits {
            app_tenant: pick("app_tenant", self.app_tenant, defaults.app_tenant),
            per_call_record: pick(
                "per_call_record",
                self.per_call_record,
                defaults.per_call_record,
            ),
            list: pick("list", self.list, defaults.list),
            log_app_tenant: pick(
                "log_app_tenant",
                self.log_app_tenant,
                defaults.log_app_tenant,
            ),
            per_log_function: pick(
                "per_log_function",
                self.per_log_function,
                defaults.per_log_function,
            ),
        }
    }
}

/// Validated settings, ready to use.
#[derive(Debug)]
pub struct Settings {
    pub graph: ClientSettings,
    pub output: PathBuf,
    pub concurrency: usize,
    pub lookback_days: u32,
    pub log_chunk_days: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path} has {} problem(s):\n  - {}", .problems.len(), .problems.join("\n  - "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

/// Reads and validates the file at `path`; `env` looks up environment variables.
pub fn load(path: &Path, env: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    let file: FileConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.into(),
        message: e.to_string(),
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    validate(file, base, env).map_err(|problems| ConfigError::Invalid {
        path: path.into(),
        problems,
    })
}

/// Checks every value and collects all problems, so one run shows everything to fix.
pub fn validate(
    file: FileConfig,
    base: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Settings, Vec<String>> {
    let mut problems = Vec::new();
    let graph = &file.graph;
    if !is_guid(&graph.tenant_id) && !is_domain(&graph.tenant_id) {
        problems.push(format!(
            "[graph] tenant_id = {:?} is neither a GUID nor a domain such as contoso.onmicrosoft.com \
             (Entra admin center > Overview > Tenant ID)",
            graph.tenant_id
        ));
    }
    if !is_guid(&graph.client_id) {
        problems.push(format!(
            "[graph] client_id = {:?} is not a GUID (the app registration's Application (client) ID)",
            graph.client_id
        ));
    }
    let graph_url = check_url("[graph] graph_url", &graph.graph_url, &mut problems);
    let login_url = check_url("[graph] login_url", &graph.login_url, &mut problems);
    let secret = read_secret(
        graph.client_secret_file.as_deref(),
        base,
        &env,
        &mut problems,
    );
    if file.export.concurrency == 0 || file.export.concurrency > 64 {
        problems.push(format!(
            "[export] concurrency = {} must be between 1 and 64",
            file.export.concurrency
        ));
    }
    if !(1..=30).contains(&file.export.lookback_days) {
        problems.push(format!(
            "[export] lookback_days = {} must be between 1 and 30 (Graph keeps call records for 30 days)",
            file.export.lookback_days
        ));
    }
    if !(1..=crate::streams::logs::MAX_REQUEST_DAYS).contains(&file.export.log_chunk_days) {
        problems.push(format!(
            "[export] log_chunk_days = {} must be between 1 and 90 (Graph refuses longer windows)",
            file.export.log_chunk_days
        ));
    }
    if !matches!(graph.api_version.as_str(), "v1.0" | "beta") {
        problems.push(format!(
            "[graph] api_version = {:?} must be \"v1.0\" or \"beta\"",
            graph.api_version
        ));
    }
    let retry = &file.retry;
    if retry.max_attempts == 0 || retry.request_timeout_seconds == 0 {
        problems.push("[retry] max_attempts and request_timeout_seconds must be positive".into());
    }
    let limits = file.limits.resolve(&mut problems);
    if file.output.path.trim().is_empty() {
        problems.push("[output] path is empty: name the folder to write the tables to".into());
    }
    match (graph_url, login_url, secret) {
        (Some(graph_url), Some(login_url), Some(secret)) if problems.is_empty() => {
            let mut client = ClientSettings::new(
                graph_url,
                login_url,
                graph.tenant_id.clone(),
                graph.client_id.clone(),
                secret,
            );
            client.max_attempts = retry.max_attempts;
            client.max_total_wait = std::time::Duration::from_secs(retry.max_total_wait_seconds);
            client.request_timeout = std::time::Duration::from_secs(retry.request_timeout_seconds);
            client.limits = limits;
            client.api_version = graph.api_version.clone();
            Ok(Settings {
                graph: client,
                output: PathBuf::from(&file.output.path),
                concurrency: file.export.concurrency,
                lookback_days: file.export.lookback_days,
                log_chunk_days: file.export.log_chunk_days,
            })
        }
        _ => Err(problems),
    }
}

fn read_secret(
    file: Option<&Path>,
    base: &Path,
    env: &impl Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> Option<Secret> {
    if let Some(file) = file {
        let path = base.join(file);
        return match std::fs::read_to_string(&path) {
            Ok(text) if !text.trim().is_empty() => Some(Secret::new(text.trim().to_string())),
            Ok(_) => {
                problems.push(format!(
                    "[graph] client_secret_file {} is empty",
                    path.display()
                ));
                None
            }
            Err(e) => {
                problems.push(format!(
                    "[graph] client_secret_file {} cannot be read: {e}",
                    path.display()
                ));
                None
            }
        };
    }
    match env(SECRET_ENV).filter(|s| !s.trim().is_empty()) {
        Some(secret) => Some(Secret::new(secret.trim().to_string())),
        None => {
            problems.push(format!(
                "no client secret: set the environment variable {SECRET_ENV}, or point [graph] client_secret_file \
                 at a file that holds it (the secret is never read from the config file itself)"
            ));
            None
        }
    }
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

pub fn is_loopback(url: &Url) -> bool {
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

    fn settings(toml_text: &str, secret: Option<&str>) -> Result<Settings, Vec<String>> {
        let file: FileConfig = toml::from_str(toml_text).map_err(|e| vec![e.to_string()])?;
        validate(file, Path::new("."), |name| {
            (name == SECRET_ENV)
                .then(|| secret.map(String::from))
                .flatten()
        })
    }

    const GOOD: &str = r#"
        [graph]
        tenant_id = "contoso.onmicrosoft.com"
        client_id = "00000000-0000-4000-8000-00000000c11e"
    "#;

    #[test]
    fn defaults_fill_the_optional_keys() {
        let s = settings(GOOD, Some("s3cret")).unwrap();
        assert_eq!(s.graph.graph_url.as_str(), "https://graph.microsoft.com/");
        assert_eq!(
            s.graph.login_url.as_str(),
            "https://login.microsoftonline.com/"
        );
        assert_eq!(s.output, PathBuf::from("./lake"));
        assert_eq!(s.concurrency, DEFAULT_CONCURRENCY);
        assert_eq!(s.graph.client_secret.expose(), "s3cret");
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_key() {
        let unknown = settings(&format!("{GOOD}\ncolour = 1"), Some("x"))
            .unwrap_err()
            .join(" ");
        assert!(unknown.contains("colour"), "{unknown}");
        let wrong = settings("[graph]\ntenant_id = 5\nclient_id = \"x\"", Some("x"))
            .unwrap_err()
            .join(" ");
        assert!(wrong.contains("tenant_id"), "{wrong}");
        let missing = settings("[graph]\ntenant_id = \"contoso.com\"", Some("x"))
            .unwrap_err()
            .join(" ");
        assert!(missing.contains("client_id"), "{missing}");
    }

    #[test]
    fn all_problems_are_reported_together() {
        let problems = settings(
            "[graph]\ntenant_id = \"…\"\nclient_id = \"…\"\ngraph_url = \"http://graph.example.com\"",
            None,
        )
        .unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("tenant_id")));
        assert!(problems.iter().any(|p| p.contains("client_id")));
        assert!(
            problems
                .iter()
                .any(|p| p.contains("graph_url") && p.contains("loopback"))
        );
        assert!(problems.iter().any(|p| p.contains(SECRET_ENV)));
    }

    #[test]
    fn plain_http_is_allowed_only_to_loopback() {
        for url in [
            "http://127.0.0.1:8080",
            "http://[::1]:9",
            "http://localhost:1",
        ] {
            let text = format!("{GOOD}\ngraph_url = \"{url}\"\nlogin_url = \"{url}\"");
            assert!(settings(&text, Some("x")).is_ok(), "{url}");
        }
        let text = format!("{GOOD}\nlogin_url = \"http://10.0.0.1\"");
        assert!(settings(&text, Some("x")).is_err());
    }
}
