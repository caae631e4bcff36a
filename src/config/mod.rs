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
//!
//! Three stages: [`FileConfig`] is the file as written (`file`); [`validate`] checks it
//! into [`Settings`] (the Graph client's part in `client`, the credential in `credential`);
//! [`Settings::resolve`] lays the command line's [`Overrides`] over them into the
//! [`ExportSettings`] of one run (`resolve`), the only place where the two meet.

mod client;
mod credential;
mod file;
mod resolve;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use file::{
    AuthMethod, Cloud, ExportSection, FileConfig, GraphSection, LimitsSection, OutputSection,
    PrivacySection, RawSection, RetrySection, SitesSection,
};
pub use resolve::{ExportSettings, Overrides, UsageError, check_apart, select_streams};

#[cfg(test)]
use crate::graph::Credential;
use crate::graph::{ClientSettings, Secret};
use crate::privacy::{HashKey, Mode, PiiClass, Privacy};
use crate::quality::{Derivation, Rules, Sites};

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

/// Validated settings, ready to use.
#[derive(Debug)]
pub struct Settings {
    pub graph: ClientSettings,
    /// `[output] path`: a folder or an object-store URL, parsed by `store::Location`.
    pub output: String,
    pub output_options: BTreeMap<String, String>,
    /// `[output] format`.
    pub output_format: crate::commit::TableFormat,
    pub concurrency: usize,
    pub lookback_days: u32,
    pub log_chunk_days: u32,
    /// `[export] max_window_days`.
    pub max_window_days: u32,
    pub privacy: Privacy,
    /// The raw zone's root (`[raw] path`): a folder or an object-store URL, like `output`.
    pub raw: Option<String>,
    /// `[raw] allow_personal_data`.
    pub raw_allows_personal_data: bool,
    /// `[quality]` and `[sites]`: how streams are classified and endpoints placed.
    pub derivation: Derivation,
}

impl Settings {
    /// The settings of a file that sets nothing but the Graph client (the embedded emulator's).
    pub fn with_defaults(graph: ClientSettings) -> Settings {
        let (output, export) = (OutputSection::default(), ExportSection::default());
        Settings {
            graph,
            output: output.path,
            output_options: output.options,
            output_format: output.format,
            concurrency: export.concurrency,
            lookback_days: export.lookback_days,
            log_chunk_days: export.log_chunk_days,
            max_window_days: export.max_window_days,
            privacy: Privacy::default(),
            raw: None,
            raw_allows_personal_data: false,
            derivation: Derivation::default(),
        }
    }
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
    /// `[quality]` and `[sites]`: applied to the rebuilt tables (the current ones, which
    /// need not be the export's).
    pub derivation: Derivation,
    /// `[output] format`.
    pub output_format: crate::commit::TableFormat,
    /// `[output] path`: the lake `maintain` works on without `--out`.
    pub output: String,
}

impl Default for ReflattenSettings {
    fn default() -> Self {
        ReflattenSettings {
            output: DEFAULT_OUTPUT_PATH.to_string(),
            privacy: Privacy::default(),
            output_options: BTreeMap::new(),
            output_format: Default::default(),
            max_window_days: DEFAULT_MAX_WINDOW_DAYS,
            derivation: Derivation::default(),
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
    let base = path.parent().unwrap_or(Path::new("."));
    let derivation = derivation(&file.quality, &file.sites, base, &mut problems);
    match privacy(&file.privacy, &env, &mut problems) {
        Some(privacy) if problems.is_empty() => Ok(ReflattenSettings {
            privacy,
            output_options: file.output.options,
            output_format: file.output.format,
            output: file.output.path,
            max_window_days,
            derivation,
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
    let identity = client::identity(&file.graph, base, &env, &mut problems);
    let privacy = privacy(&file.privacy, &env, &mut problems);
    let derivation = derivation(&file.quality, &file.sites, base, &mut problems);
    file.export.check(&mut problems);
    let tuning = client::tuning(&file.graph, &file.retry, &file.limits, &mut problems);
    if let (Some(_), Some(privacy)) = (&file.raw.path, &privacy)
        && let Err(problem) = check_raw_privacy(privacy, file.raw.allow_personal_data)
    {
        problems.push(problem);
    }
    let output = &file.output;
    if output.path.trim().is_empty() {
        problems.push("[output] path is empty: name the folder to write the tables to".into());
    } else if let Err(error) = crate::store::check_options(&output.path, &output.options) {
        problems.push(format!("[output] {error}"));
    }
    match (identity, privacy) {
        (Some(identity), Some(privacy)) if problems.is_empty() => Ok(Settings {
            graph: identity.into_client(tuning),
            output: file.output.path,
            output_options: file.output.options,
            output_format: file.output.format,
            concurrency: file.export.concurrency,
            lookback_days: file.export.lookback_days,
            log_chunk_days: file.export.log_chunk_days,
            max_window_days: file.export.max_window_days,
            privacy,
            raw: file.raw.path,
            raw_allows_personal_data: file.raw.allow_personal_data,
            derivation,
        }),
        _ => Err(problems),
    }
}

/// The quality rules and the sites of the building file, if one is named (relative to
/// `base`); a file that cannot be read or parsed is a problem naming its line.
fn derivation(
    rules: &Rules,
    sites: &SitesSection,
    base: &Path,
    problems: &mut Vec<String>,
) -> Derivation {
    problems.extend(rules.problems());
    let sites = match &sites.file {
        None => Sites::default(),
        Some(file) => Sites::load(&base.join(file)).unwrap_or_else(|error| {
            problems.push(error.to_string());
            Sites::default()
        }),
    };
    Derivation::new(*rules, sites)
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
