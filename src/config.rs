//! The configuration file (TOML), validated into [`Settings`] before any request is made.
//!
//! `config.example.toml` documents every key; a test parses it. Unknown keys, wrong types
//! and missing values are refused with the key's name, every problem at once. Secrets never
//! come from this file: the client secret is read from `CALLRECORDS_CLIENT_SECRET` or
//! `client_secret_file`, the certificate from `client_certificate_file`, the workload
//! identity token from the file named by `AZURE_FEDERATED_TOKEN_FILE`, the hashing key of
//! the privacy modes from the variable named by `[privacy] salt_env`. Files that hold a
//! secret or a private key must not be readable by other users.
//! May touch: the file system (to read the config and those files), the environment.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use url::{Host, Url};

use crate::graph::credential::read_federated_token;
use crate::graph::{ClientCertificate, ClientSettings, Credential, Limit, RateLimits, Secret};
use crate::privacy::{HashKey, Mode, PiiClass, Privacy};

/// The environment variable holding the client secret.
pub const SECRET_ENV: &str = "CALLRECORDS_CLIENT_SECRET";
/// Set by the AKS workload identity webhook: the file holding the federated token.
pub const FEDERATED_TOKEN_FILE_ENV: &str = "AZURE_FEDERATED_TOKEN_FILE";
/// Set by the AKS workload identity webhook; the default of `[graph] client_id`.
pub const CLIENT_ID_ENV: &str = "AZURE_CLIENT_ID";
/// Set by the AKS workload identity webhook; the default of `[graph] tenant_id`.
pub const TENANT_ID_ENV: &str = "AZURE_TENANT_ID";

pub const DEFAULT_GRAPH_URL: &str = "https://graph.microsoft.com";
pub const DEFAULT_LOGIN_URL: &str = "https://login.microsoftonline.com";
pub const DEFAULT_OUTPUT_PATH: &str = "./lake";
pub const DEFAULT_CONCURRENCY: usize = 8;
pub const DEFAULT_LOOKBACK_DAYS: u32 = 3;
pub const DEFAULT_LOG_CHUNK_DAYS: u32 = 30;
/// Default of `[export] max_window_days`: a year, plus slack for a catch-up.
pub const DEFAULT_MAX_WINDOW_DAYS: u32 = 400;
/// Largest `[export] max_window_days` accepted (a century).
const MAX_MAX_WINDOW_DAYS: u32 = 36_525;
/// Smallest `[graph] max_response_bytes` accepted: one page of sessions can be this large.
const MIN_RESPONSE_BYTES: u64 = 1024 * 1024;
/// Shortest accepted hashing key: phone numbers are few enough to be enumerated, so the
/// key is all that keeps their hashes from being reversed.
pub const MIN_HASH_KEY_LEN: usize = 16;

/// The file as written by the user.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// May be left out when `AZURE_TENANT_ID` and `AZURE_CLIENT_ID` say everything.
    #[serde(default)]
    pub graph: GraphSection,
    #[serde(default)]
    pub output: OutputSection,
    #[serde(default)]
    pub export: ExportSection,
    #[serde(default)]
    pub retry: RetrySection,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub privacy: PrivacySection,
    #[serde(default)]
    pub raw: RawSection,
}

/// The raw landing zone: what Graph returned, as JSON lines next to the tables.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSection {
    /// The raw zone's root; absent: no raw zone.
    pub path: Option<String>,
    /// The raw zone holds personal data as Graph sent it, whatever `[privacy]` says: with a
    /// hash or drop mode it is written only when this says so.
    #[serde(default)]
    pub allow_personal_data: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphSection {
    /// Default: the environment variable `AZURE_TENANT_ID`.
    pub tenant_id: Option<String>,
    /// Default: the environment variable `AZURE_CLIENT_ID`.
    pub client_id: Option<String>,
    /// Default: inferred from the keys and environment variables that are set.
    pub auth: Option<AuthMethod>,
    pub client_secret_file: Option<PathBuf>,
    pub client_certificate_file: Option<PathBuf>,
    #[serde(default)]
    pub cloud: Cloud,
    /// Default: the cloud's Graph URL.
    pub graph_url: Option<String>,
    /// Default: the cloud's login URL.
    pub login_url: Option<String>,
    /// `v1.0` (default), or `beta` for the beta-only log streams and properties.
    pub api_version: Option<String>,
    /// Largest response body read (default 512 MiB); a larger one fails its request.
    pub max_response_bytes: Option<u64>,
}

/// How the application authenticates to Entra ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// `CALLRECORDS_CLIENT_SECRET` or `client_secret_file`.
    ClientSecret,
    /// `client_certificate_file`: a client assertion signed with the certificate's key.
    Certificate,
    /// The federated token in `AZURE_FEDERATED_TOKEN_FILE` (AKS workload identity).
    WorkloadIdentity,
}

impl AuthMethod {
    fn name(self) -> &'static str {
        match self {
            AuthMethod::ClientSecret => "client_secret",
            AuthMethod::Certificate => "certificate",
            AuthMethod::WorkloadIdentity => "workload_identity",
        }
    }
}

/// The Microsoft cloud the tenant lives in; sets `graph_url` and `login_url` together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum Cloud {
    #[default]
    #[serde(rename = "global")]
    Global,
    #[serde(rename = "usgov")]
    UsGov,
    #[serde(rename = "usgov-dod")]
    UsGovDod,
    #[serde(rename = "china")]
    China,
}

impl Cloud {
    pub fn graph_url(self) -> &'static str {
        match self {
            Cloud::Global => DEFAULT_GRAPH_URL,
            Cloud::UsGov => "https://graph.microsoft.us",
            Cloud::UsGovDod => "https://dod-graph.microsoft.us",
            Cloud::China => "https://microsoftgraph.chinacloudapi.cn",
        }
    }

    pub fn login_url(self) -> &'static str {
        match self {
            Cloud::Global => DEFAULT_LOGIN_URL,
            Cloud::UsGov | Cloud::UsGovDod => "https://login.microsoftonline.us",
            Cloud::China => "https://login.chinacloudapi.cn",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    /// A folder, or `s3://`, `az://`, `abfss://`, `gs://`, `file://` URL.
    #[serde(default = "default_output_path")]
    pub path: String,
    /// Object-store builder keys (`aws_endpoint`, `azure_storage_use_emulator`, ...) that
    /// the environment does not provide.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

impl Default for OutputSection {
    fn default() -> Self {
        OutputSection {
            path: default_output_path(),
            options: BTreeMap::new(),
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
    /// Longest window a run (or `reflatten --from/--to`) accepts, in days.
    pub max_window_days: u32,
}

impl Default for ExportSection {
    fn default() -> Self {
        ExportSection {
            concurrency: DEFAULT_CONCURRENCY,
            lookback_days: DEFAULT_LOOKBACK_DAYS,
            log_chunk_days: DEFAULT_LOG_CHUNK_DAYS,
            max_window_days: DEFAULT_MAX_WINDOW_DAYS,
        }
    }
}

impl ExportSection {
    /// `[export] max_window_days`, or the problem with it.
    fn max_window_days(&self, problems: &mut Vec<String>) -> u32 {
        if !(1..=MAX_MAX_WINDOW_DAYS).contains(&self.max_window_days) {
            problems.push(format!(
                "[export] max_window_days = {} must be between 1 and {MAX_MAX_WINDOW_DAYS}",
                self.max_window_days
            ));
        }
        self.max_window_days
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

/// `[privacy]`: a mode for all personal data, and one per class that overrides it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacySection {
    #[serde(default)]
    pub mode: Mode,
    /// The environment variable holding the key of the hash mode.
    pub salt_env: Option<String>,
    pub phone_numbers: Option<Mode>,
    pub user_principal_names: Option<Mode>,
    pub display_names: Option<Mode>,
    pub ip_addresses: Option<Mode>,
    pub feedback_text: Option<Mode>,
}

impl PrivacySection {
    pub fn mode_of(&self, class: PiiClass) -> Mode {
        match class {
            PiiClass::PhoneNumber => self.phone_numbers,
            PiiClass::UserPrincipalName => self.user_principal_names,
            PiiClass::DisplayName => self.display_names,
            PiiClass::IpAddress => self.ip_addresses,
            PiiClass::FeedbackText => self.feedback_text,
        }
        .unwrap_or(self.mode)
    }
}

/// Validated settings, ready to use.
#[derive(Debug)]
pub struct Settings {
    pub graph: ClientSettings,
    /// `[output] path`: a folder or an object-store URL, parsed by `sink::store::Output`.
    pub output: String,
    pub output_options: BTreeMap<String, String>,
    pub concurrency: usize,
    pub lookback_days: u32,
    pub log_chunk_days: u32,
    /// `[export] max_window_days`.
    pub max_window_days: u32,
    pub privacy: Privacy,
    /// The raw zone's root (`[raw] path`).
    pub raw: Option<PathBuf>,
    /// `[raw] allow_personal_data`.
    pub raw_allows_personal_data: bool,
}

/// A raw zone keeps personal data as Graph sent it: refused when `[privacy]` hashes or drops
/// any of it, unless `[raw] allow_personal_data = true` says that is intended.
pub fn check_raw_privacy(privacy: &Privacy, allows_personal_data: bool) -> Result<(), String> {
    if privacy.keeps_everything() || allows_personal_data {
        return Ok(());
    }
    Err(
        "[raw] path with [privacy] hash or drop modes: the raw zone holds what Graph returned, personal \
         data in clear; set [raw] allow_personal_data = true to write it anyway, or remove [raw] path"
            .into(),
    )
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

fn read(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.into(),
        message: e.to_string(),
    })
}

/// Reads and validates the file at `path`; `env` looks up environment variables.
pub fn load(path: &Path, env: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
    let file = read(path)?;
    let base = path.parent().unwrap_or(Path::new("."));
    validate(file, base, env).map_err(|problems| ConfigError::Invalid {
        path: path.into(),
        problems,
    })
}

/// What `reflatten` takes from the export's configuration file.
#[derive(Debug)]
pub struct ReflattenSettings {
    /// `[privacy]`: applied to the rebuilt tables, as the export applied it.
    pub privacy: Privacy,
    /// `[output.options]`: for a raw zone or lake on an object store.
    pub output_options: BTreeMap<String, String>,
    /// `[export] max_window_days`: the longest `--from/--to` window.
    pub max_window_days: u32,
}

impl Default for ReflattenSettings {
    fn default() -> Self {
        ReflattenSettings {
            privacy: Privacy::default(),
            output_options: BTreeMap::new(),
            max_window_days: DEFAULT_MAX_WINDOW_DAYS,
        }
    }
}

/// Only what `reflatten` uses of the file at `path`: the privacy modes, the object-store
/// options and the longest window. The rest of the file must parse but is not checked: no
/// Graph credential is needed.
pub fn load_for_reflatten(
    path: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<ReflattenSettings, ConfigError> {
    let file = read(path)?;
    let mut problems = Vec::new();
    let max_window_days = file.export.max_window_days(&mut problems);
    match privacy(&file.privacy, &env, &mut problems) {
        Some(privacy) if problems.is_empty() => Ok(ReflattenSettings {
            privacy,
            output_options: file.output.options,
            max_window_days,
        }),
        _ => Err(ConfigError::Invalid {
            path: path.into(),
            problems,
        }),
    }
}

/// Checks every value and collects all problems, so one run shows everything to fix.
/// Relative file names are relative to `base` (the config file's folder).
pub fn validate(
    file: FileConfig,
    base: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Settings, Vec<String>> {
    let mut problems = Vec::new();
    let graph = &file.graph;
    let tenant_id = graph_value(&graph.tenant_id, "tenant_id", TENANT_ID_ENV, &env, &mut problems)
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
    let client_id = graph_value(&graph.client_id, "client_id", CLIENT_ID_ENV, &env, &mut problems)
        .filter(|(source, value)| {
            let valid = is_guid(value);
            if !valid {
                problems.push(format!(
                    "{source} = {value:?} is not a GUID (the app registration's Application (client) ID)"
                ));
            }
            valid
        });
    let graph_url = check_url(
        "[graph] graph_url",
        graph
            .graph_url
            .as_deref()
            .unwrap_or(graph.cloud.graph_url()),
        &mut problems,
    );
    let login_url = check_url(
        "[graph] login_url",
        graph
            .login_url
            .as_deref()
            .unwrap_or(graph.cloud.login_url()),
        &mut problems,
    );
    let credential = credential(graph, base, &env, &mut problems);
    let privacy = privacy(&file.privacy, &env, &mut problems);
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
    let max_window_days = file.export.max_window_days(&mut problems);
    let max_response_bytes = graph
        .max_response_bytes
        .unwrap_or(crate::graph::DEFAULT_MAX_RESPONSE_BYTES);
    if max_response_bytes < MIN_RESPONSE_BYTES {
        problems.push(format!(
            "[graph] max_response_bytes = {max_response_bytes} is below {MIN_RESPONSE_BYTES} (1 MiB): \
             Graph's pages are larger than that; leave it out for the default of 512 MiB"
        ));
    }
    let api_version = graph.api_version.as_deref().unwrap_or("v1.0");
    if !matches!(api_version, "v1.0" | "beta") {
        problems.push(format!(
            "[graph] api_version = {api_version:?} must be \"v1.0\" or \"beta\""
        ));
    }
    let retry = &file.retry;
    if retry.max_attempts == 0 || retry.request_timeout_seconds == 0 {
        problems.push("[retry] max_attempts and request_timeout_seconds must be positive".into());
    }
    let limits = file.limits.resolve(&mut problems);
    let raw = file.raw.path.as_deref().map(PathBuf::from);
    if let (Some(_), Some(privacy)) = (&raw, &privacy)
        && let Err(problem) = check_raw_privacy(privacy, file.raw.allow_personal_data)
    {
        problems.push(problem);
    }
    if file.output.path.trim().is_empty() {
        problems.push("[output] path is empty: name the folder to write the tables to".into());
    } else if let Err(error) =
        crate::sink::store::check_options(&file.output.path, &file.output.options)
    {
        problems.push(format!("[output] {error}"));
    }
    match (
        tenant_id, client_id, graph_url, login_url, credential, privacy,
    ) {
        (
            Some((_, tenant_id)),
            Some((_, client_id)),
            Some(graph_url),
            Some(login_url),
            Some(credential),
            Some(privacy),
        ) if problems.is_empty() => {
            let mut client =
                ClientSettings::new(graph_url, login_url, tenant_id, client_id, credential);
            client.max_attempts = retry.max_attempts;
            client.max_total_wait = std::time::Duration::from_secs(retry.max_total_wait_seconds);
            client.request_timeout = std::time::Duration::from_secs(retry.request_timeout_seconds);
            client.limits = limits;
            client.api_version = api_version.to_string();
            client.max_response_bytes = max_response_bytes;
            Ok(Settings {
                graph: client,
                output: file.output.path.clone(),
                output_options: file.output.options.clone(),
                concurrency: file.export.concurrency,
                lookback_days: file.export.lookback_days,
                log_chunk_days: file.export.log_chunk_days,
                max_window_days,
                privacy,
                raw,
                raw_allows_personal_data: file.raw.allow_personal_data,
            })
        }
        _ => Err(problems),
    }
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

/// The credential of the configured (or inferred) [`AuthMethod`].
fn credential(
    graph: &GraphSection,
    base: &Path,
    env: &impl Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> Option<Credential> {
    let set = |name: &str| env(name).filter(|value| !value.trim().is_empty());
    let federated_token_file = set(FEDERATED_TOKEN_FILE_ENV);
    let method = match graph.auth {
        Some(method) => method,
        None => match (&graph.client_certificate_file, &graph.client_secret_file) {
            (Some(_), Some(_)) => {
                problems.push(
                    "[graph] client_certificate_file and client_secret_file are both set: keep the one \
                     to use, or choose with [graph] auth"
                        .into(),
                );
                return None;
            }
            (Some(_), None) => AuthMethod::Certificate,
            (None, Some(_)) => AuthMethod::ClientSecret,
            (None, None) if federated_token_file.is_some() && set(SECRET_ENV).is_some() => {
                problems.push(format!(
                    "both {FEDERATED_TOKEN_FILE_ENV} (workload identity) and {SECRET_ENV} are set: choose \
                     with [graph] auth = \"workload_identity\" or auth = \"client_secret\""
                ));
                return None;
            }
            (None, None) if federated_token_file.is_some() => AuthMethod::WorkloadIdentity,
            (None, None) => AuthMethod::ClientSecret,
        },
    };
    // A key of another method is a mistake to point out, not something to ignore.
    for (key, is_set, owner) in [
        (
            "client_secret_file",
            graph.client_secret_file.is_some(),
            AuthMethod::ClientSecret,
        ),
        (
            "client_certificate_file",
            graph.client_certificate_file.is_some(),
            AuthMethod::Certificate,
        ),
    ] {
        if is_set && method != owner {
            problems.push(format!(
                "[graph] {key} is set, but auth = \"{}\" does not use it: remove it or change auth",
                method.name()
            ));
        }
    }
    match method {
        AuthMethod::ClientSecret => {
            read_secret(graph.client_secret_file.as_deref(), base, env, problems)
                .map(Credential::ClientSecret)
        }
        AuthMethod::Certificate => {
            let Some(file) = &graph.client_certificate_file else {
                problems.push(
                    "[graph] auth = \"certificate\" needs client_certificate_file: a PEM file with the \
                     certificate registered on the app and its private key"
                        .into(),
                );
                return None;
            };
            let path = base.join(file);
            let pem = read_private_file("[graph] client_certificate_file", &path, problems)?;
            match ClientCertificate::from_pem(&pem) {
                Ok(certificate) => Some(Credential::Certificate(Arc::new(certificate))),
                Err(error) => {
                    problems.push(format!(
                        "[graph] client_certificate_file {} {error}",
                        path.display()
                    ));
                    None
                }
            }
        }
        AuthMethod::WorkloadIdentity => {
            let Some(path) = federated_token_file else {
                problems.push(format!(
                    "[graph] auth = \"workload_identity\" needs the environment variable \
                     {FEDERATED_TOKEN_FILE_ENV} (set by the AKS workload identity webhook on pods whose \
                     service account is labelled azure.workload.identity/use: \"true\")"
                ));
                return None;
            };
            let path = PathBuf::from(path);
            // Read now to fail before any request; it is read again for every token.
            match read_federated_token(&path) {
                Ok(_) => Some(Credential::FederatedTokenFile(path)),
                Err(message) => {
                    problems.push(format!("{FEDERATED_TOKEN_FILE_ENV}: {message}"));
                    None
                }
            }
        }
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
        let bytes = read_private_file("[graph] client_secret_file", &path, problems)?;
        let text = String::from_utf8_lossy(&bytes);
        if text.trim().is_empty() {
            problems.push(format!(
                "[graph] client_secret_file {} is empty",
                path.display()
            ));
            return None;
        }
        return Some(Secret::new(text.trim().to_string()));
    }
    match env(SECRET_ENV).filter(|s| !s.trim().is_empty()) {
        Some(secret) => Some(Secret::new(secret.trim().to_string())),
        None => {
            problems.push(format!(
                "no client secret: set the environment variable {SECRET_ENV}, or point [graph] client_secret_file \
                 at a file that holds it (the secret is never read from the config file itself), or use \
                 client_certificate_file or workload identity"
            ));
            None
        }
    }
}

/// The content of a file holding a secret or a private key, refused when other users may
/// read or write it: a secret others can read is no longer a secret.
fn read_private_file(key: &str, path: &Path, problems: &mut Vec<String>) -> Option<Vec<u8>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Follows symlinks, as Kubernetes secret volumes use them: the target's mode counts.
        if let Ok(metadata) = std::fs::metadata(path) {
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o006 != 0 {
                let access = if mode & 0o004 != 0 {
                    "readable"
                } else {
                    "writable"
                };
                problems.push(format!(
                    "{key} {} is {access} by other users (mode {mode:04o}): restrict it with \
                     `chmod 600 {}` (or 640 for a group the exporter runs in; on Kubernetes, \
                     defaultMode: 0400 on the secret volume)",
                    path.display(),
                    path.display()
                ));
                return None;
            }
        }
    }
    match std::fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            problems.push(format!("{key} {} cannot be read: {e}", path.display()));
            None
        }
    }
}

/// The privacy settings; the hash mode's key comes from the variable named by `salt_env`.
fn privacy(
    section: &PrivacySection,
    env: &impl Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> Option<Privacy> {
    let hashes = PiiClass::ALL
        .iter()
        .any(|class| section.mode_of(*class) == Mode::Hash);
    let key = if hashes {
        let Some(name) = &section.salt_env else {
            problems.push(
                "[privacy] salt_env is missing: the hash mode needs a key; name the environment variable \
                 that holds it (e.g. salt_env = \"CALLRECORDS_HASH_KEY\")"
                    .into(),
            );
            return None;
        };
        let value = env(name)
            .map(|value| value.trim().to_owned())
            .unwrap_or_default();
        if value.len() < MIN_HASH_KEY_LEN {
            let what = if value.is_empty() {
                "is not set (or empty)".to_owned()
            } else {
                format!("holds fewer than {MIN_HASH_KEY_LEN} characters")
            };
            problems.push(format!(
                "[privacy] salt_env = {name:?}: the environment variable {name} {what}; it must hold the \
                 hashing key, a long random value such as the output of `openssl rand -hex 32`"
            ));
            return None;
        }
        Some(HashKey::new(&Secret::new(value)))
    } else {
        None
    };
    Privacy::new(|class| section.mode_of(class), key).ok()
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

    fn settings_env(toml_text: &str, env: &[(&str, &str)]) -> Result<Settings, Vec<String>> {
        let file: FileConfig = toml::from_str(toml_text).map_err(|e| vec![e.to_string()])?;
        validate(file, Path::new("."), |name| {
            env.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        })
    }

    #[test]
    fn object_store_options_are_passed_and_unknown_keys_are_named() {
        let good = format!(
            "{GOOD}\n[output]\npath = \"s3://bucket/teams\"\n[output.options]\naws_endpoint = \"http://127.0.0.1:9000\"\naws_allow_http = \"true\"\n"
        );
        let s = settings(&good, Some("s3cret")).unwrap();
        assert_eq!(s.output, "s3://bucket/teams");
        assert_eq!(s.output_options["aws_endpoint"], "http://127.0.0.1:9000");

        let typo = good.replace("aws_allow_http", "aws_alow_http");
        let problems = settings(&typo, Some("s3cret")).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("aws_alow_http") && p.contains("Amazon S3")),
            "{problems:?}"
        );
        let local =
            format!("{GOOD}\n[output]\npath = \"./lake\"\n[output.options]\naws_region = \"x\"\n");
        let problems = settings(&local, Some("s3cret")).unwrap_err();
        assert!(
            problems.iter().any(|p| p.contains("object stores only")),
            "{problems:?}"
        );
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
        assert_eq!(s.output, "./lake");
        assert_eq!(s.concurrency, DEFAULT_CONCURRENCY);
        assert!(
            matches!(&s.graph.credential, Credential::ClientSecret(secret) if secret.expose() == "s3cret")
        );
        assert!(s.privacy.keeps_everything());
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
    fn response_and_window_caps_are_validated_and_default() {
        let s = settings(GOOD, Some("s3cret")).unwrap();
        assert_eq!(
            (s.graph.max_response_bytes, s.max_window_days),
            (512 * 1024 * 1024, 400)
        );
        let set = GOOD.replace("client_id", "max_response_bytes = 2097152\nclient_id")
            + "\n[export]\nmax_window_days = 800\n";
        let s = settings(&set, Some("s3cret")).unwrap();
        assert_eq!(
            (s.graph.max_response_bytes, s.max_window_days),
            (2097152, 800)
        );
        let bad = GOOD.replace("client_id", "max_response_bytes = 1000\nclient_id")
            + "\n[export]\nmax_window_days = 0\n";
        let problems = settings(&bad, Some("s3cret")).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("[graph] max_response_bytes = 1000") && p.contains("1 MiB")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("[export] max_window_days = 0")),
            "{problems:?}"
        );
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

    #[test]
    fn tenant_and_client_default_to_the_azure_environment_variables() {
        let env = [
            (TENANT_ID_ENV, "00000000-0000-4000-8000-0000000000aa"),
            (CLIENT_ID_ENV, "00000000-0000-4000-8000-0000000000bb"),
            (SECRET_ENV, "x"),
        ];
        let s = settings_env("", &env).unwrap();
        assert_eq!(s.graph.tenant_id, env[0].1);
        assert_eq!(s.graph.client_id, env[1].1);
        // The file wins over the environment.
        let s = settings_env(GOOD, &env).unwrap();
        assert_eq!(s.graph.tenant_id, "contoso.onmicrosoft.com");
        let problems = settings_env("", &[(SECRET_ENV, "x"), (CLIENT_ID_ENV, "nope")]).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].contains("[graph] tenant_id is missing")
                && problems[0].contains(TENANT_ID_ENV)
        );
        assert!(
            problems[1].contains("AZURE_CLIENT_ID = \"nope\" is not a GUID"),
            "{problems:?}"
        );
    }

    #[test]
    fn the_auth_method_is_inferred_and_conflicts_are_refused() {
        let federated = (FEDERATED_TOKEN_FILE_ENV, "/nonexistent/token");
        let problems =
            |text: &str, env: &[(&str, &str)]| settings_env(text, env).unwrap_err().join("\n");
        // Both environment credentials: ambiguous.
        let text = problems(GOOD, &[federated, (SECRET_ENV, "x")]);
        assert!(text.contains("choose with [graph] auth"), "{text}");
        // The explicit method decides; the secret is used, the token file is ignored.
        let explicit = format!("{GOOD}\nauth = \"client_secret\"");
        assert!(settings_env(&explicit, &[federated, (SECRET_ENV, "x")]).is_ok());
        // Only the token file: workload identity, whose file must be readable.
        let text = problems(GOOD, &[federated]);
        assert!(
            text.contains(FEDERATED_TOKEN_FILE_ENV) && text.contains("/nonexistent/token"),
            "{text}"
        );
        let text = problems(&format!("{GOOD}\nauth = \"workload_identity\""), &[]);
        assert!(
            text.contains("needs the environment variable AZURE_FEDERATED_TOKEN_FILE"),
            "{text}"
        );
        let text = problems(&format!("{GOOD}\nauth = \"certificate\""), &[]);
        assert!(text.contains("needs client_certificate_file"), "{text}");
        let text = problems(
            &format!("{GOOD}\nclient_certificate_file = \"a.pem\"\nclient_secret_file = \"s\""),
            &[],
        );
        assert!(text.contains("both set"), "{text}");
        let text = problems(
            &format!("{GOOD}\nauth = \"client_secret\"\nclient_certificate_file = \"a.pem\""),
            &[(SECRET_ENV, "x")],
        );
        assert!(
            text.contains("client_certificate_file is set, but auth = \"client_secret\""),
            "{text}"
        );
        let text = problems(&format!("{GOOD}\nauth = \"password\""), &[]);
        assert!(
            text.contains("auth") && text.contains("workload_identity"),
            "{text}"
        );
    }

    #[test]
    fn hash_mode_needs_a_key_from_salt_env() {
        let hashed = format!("{GOOD}\n[privacy]\nmode = \"hash\"");
        let problems = settings(&hashed, Some("x")).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("[privacy] salt_env is missing"),
            "{problems:?}"
        );

        let with_env = format!("{hashed}\nsalt_env = \"ETL_KEY\"");
        let unset = settings_env(&with_env, &[(SECRET_ENV, "x")])
            .unwrap_err()
            .join(" ");
        assert!(
            unset.contains("salt_env = \"ETL_KEY\"") && unset.contains("is not set"),
            "{unset}"
        );
        let short =
            settings_env(&with_env, &[(SECRET_ENV, "x"), ("ETL_KEY", "short")]).unwrap_err();
        assert!(short[0].contains("fewer than 16 characters"), "{short:?}");
        assert!(
            !short[0].contains("short\""),
            "the key is not repeated: {short:?}"
        );

        let key = "k".repeat(32);
        let s = settings_env(&with_env, &[(SECRET_ENV, "x"), ("ETL_KEY", &key)]).unwrap();
        assert!(
            PiiClass::ALL
                .iter()
                .all(|c| s.privacy.mode(*c) == Mode::Hash)
        );
        assert!(!format!("{s:?}").contains(&key));
    }

    #[test]
    fn privacy_classes_override_the_mode() {
        let text = format!(
            "{GOOD}\n[privacy]\nmode = \"drop\"\nphone_numbers = \"keep\"\nip_addresses = \"hash\"\nsalt_env = \"K\""
        );
        let key = "0123456789abcdef";
        let s = settings_env(&text, &[(SECRET_ENV, "x"), ("K", key)]).unwrap();
        let modes: Vec<Mode> = PiiClass::ALL.iter().map(|c| s.privacy.mode(*c)).collect();
        assert_eq!(
            modes,
            [Mode::Keep, Mode::Drop, Mode::Drop, Mode::Hash, Mode::Drop]
        );
        // Dropping needs no key.
        let drop_only = format!("{GOOD}\n[privacy]\nmode = \"drop\"");
        assert!(settings(&drop_only, Some("x")).is_ok());
        let unknown =
            settings(&format!("{GOOD}\n[privacy]\nemails = \"drop\""), Some("x")).unwrap_err();
        assert!(unknown[0].contains("emails"), "{unknown:?}");
        let bad = settings(&format!("{GOOD}\n[privacy]\nmode = \"mask\""), Some("x")).unwrap_err();
        assert!(
            bad[0].contains("mask") && bad[0].contains("hash"),
            "{bad:?}"
        );
    }
}
