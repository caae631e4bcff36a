//! The configuration file as written (serde): its sections, their defaults, and the checks
//! of a single section's values. Knows nothing of the environment, the file system or the
//! command line.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::{
    DEFAULT_CONCURRENCY, DEFAULT_GRAPH_URL, DEFAULT_LOG_CHUNK_DAYS, DEFAULT_LOGIN_URL,
    DEFAULT_LOOKBACK_DAYS, DEFAULT_MAX_WINDOW_DAYS, DEFAULT_OUTPUT_PATH, MAX_MAX_WINDOW_DAYS,
};
use crate::graph::{
    DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_TOTAL_WAIT, DEFAULT_REQUEST_TIMEOUT, Limit, RateLimits,
};
use crate::privacy::{Mode, PiiClass};
use crate::quality::Rules;

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
    /// `[quality]`: the thresholds of the stream classification (CQD's by default).
    #[serde(default)]
    pub quality: Rules,
    #[serde(default)]
    pub sites: SitesSection,
}

/// `[sites]`: the building file that maps endpoint addresses to buildings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SitesSection {
    /// A CQD building file (`.csv`, or `.tsv` tab separated); relative to the config file.
    pub file: Option<PathBuf>,
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
    pub(super) fn name(self) -> &'static str {
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
    /// `parquet` (Hive-partitioned files, the default) or `delta` (Delta Lake tables).
    #[serde(default)]
    pub format: crate::commit::TableFormat,
}

impl Default for OutputSection {
    fn default() -> Self {
        OutputSection {
            path: default_output_path(),
            options: BTreeMap::new(),
            format: Default::default(),
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
    /// Every problem with the section's values.
    pub(super) fn check(&self, problems: &mut Vec<String>) {
        if self.concurrency == 0 || self.concurrency > 64 {
            problems.push(format!(
                "[export] concurrency = {} must be between 1 and 64",
                self.concurrency
            ));
        }
        if !(1..=30).contains(&self.lookback_days) {
            problems.push(format!(
                "[export] lookback_days = {} must be between 1 and 30 (Graph keeps call records for 30 days)",
                self.lookback_days
            ));
        }
        if !(1..=crate::streams::logs::MAX_REQUEST_DAYS).contains(&self.log_chunk_days) {
            problems.push(format!(
                "[export] log_chunk_days = {} must be between 1 and 90 (Graph refuses longer windows)",
                self.log_chunk_days
            ));
        }
        self.max_window_days(problems);
    }

    /// `[export] max_window_days`, or the problem with it.
    pub(super) fn max_window_days(&self, problems: &mut Vec<String>) -> u32 {
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
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            max_total_wait_seconds: DEFAULT_MAX_TOTAL_WAIT.as_secs(),
            request_timeout_seconds: DEFAULT_REQUEST_TIMEOUT.as_secs(),
        }
    }
}

impl RetrySection {
    /// The problem with the retry settings, if any.
    pub(super) fn check(&self, problems: &mut Vec<String>) {
        if self.max_attempts == 0 || self.request_timeout_seconds == 0 {
            problems
                .push("[retry] max_attempts and request_timeout_seconds must be positive".into());
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
    pub(super) fn resolve(&self, problems: &mut Vec<String>) -> RateLimits {
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
