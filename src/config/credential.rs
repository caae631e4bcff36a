//! The Graph credential: the configured or inferred [`AuthMethod`], and the secret,
//! certificate or federated token file it needs, read and checked before any request.
//! May touch: the files that hold a secret or a private key, the environment.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::file::{AuthMethod, GraphSection};
use super::{FEDERATED_TOKEN_FILE_ENV, SECRET_ENV};
use crate::graph::credential::read_federated_token;
use crate::graph::{ClientCertificate, Credential, Secret};

/// The credential of the configured (or inferred) [`AuthMethod`].
pub(super) fn credential(
    graph: &GraphSection,
    base: &Path,
    env: &impl Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> Option<Credential> {
    let set = |name: &str| env(name).filter(|value| !value.trim().is_empty());
    let federated_token_file = set(FEDERATED_TOKEN_FILE_ENV);
    let inferred = || {
        infer_method(
            graph,
            federated_token_file.is_some(),
            set(SECRET_ENV).is_some(),
        )
    };
    let method = match graph.auth {
        Some(method) => method,
        None => match inferred() {
            Ok(method) => method,
            Err(problem) => {
                problems.push(problem);
                return None;
            }
        },
    };
    check_unused_keys(graph, method, problems);
    match method {
        AuthMethod::ClientSecret => {
            read_secret(graph.client_secret_file.as_deref(), base, env, problems)
                .map(Credential::ClientSecret)
        }
        AuthMethod::Certificate => certificate(graph, base, problems),
        AuthMethod::WorkloadIdentity => workload_identity(federated_token_file, problems),
    }
}

/// The method that the keys of `[graph]` and the environment imply, when `auth` is not set:
/// a file key names its method; otherwise the federated token file means workload identity,
/// unless the client secret variable is set too.
fn infer_method(
    graph: &GraphSection,
    federated_token_file: bool,
    secret_env: bool,
) -> Result<AuthMethod, String> {
    match (&graph.client_certificate_file, &graph.client_secret_file) {
        (Some(_), Some(_)) => Err(
            "[graph] client_certificate_file and client_secret_file are both set: keep the one \
             to use, or choose with [graph] auth"
                .into(),
        ),
        (Some(_), None) => Ok(AuthMethod::Certificate),
        (None, Some(_)) => Ok(AuthMethod::ClientSecret),
        (None, None) if federated_token_file && secret_env => Err(format!(
            "both {FEDERATED_TOKEN_FILE_ENV} (workload identity) and {SECRET_ENV} are set: choose \
             with [graph] auth = \"workload_identity\" or auth = \"client_secret\""
        )),
        (None, None) if federated_token_file => Ok(AuthMethod::WorkloadIdentity),
        (None, None) => Ok(AuthMethod::ClientSecret),
    }
}

/// A key of another method is a mistake to point out, not something to ignore.
fn check_unused_keys(graph: &GraphSection, method: AuthMethod, problems: &mut Vec<String>) {
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
}

fn certificate(
    graph: &GraphSection,
    base: &Path,
    problems: &mut Vec<String>,
) -> Option<Credential> {
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

fn workload_identity(
    federated_token_file: Option<String>,
    problems: &mut Vec<String>,
) -> Option<Credential> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(certificate: bool, secret_file: bool) -> GraphSection {
        GraphSection {
            client_certificate_file: certificate.then(|| PathBuf::from("app.pem")),
            client_secret_file: secret_file.then(|| PathBuf::from("secret")),
            ..GraphSection::default()
        }
    }

    #[test]
    fn a_file_key_names_its_method() {
        assert_eq!(
            infer_method(&graph(true, false), true, true),
            Ok(AuthMethod::Certificate)
        );
        assert_eq!(
            infer_method(&graph(false, true), true, false),
            Ok(AuthMethod::ClientSecret)
        );
        let both = infer_method(&graph(true, true), false, false).unwrap_err();
        assert!(both.contains("both set"), "{both}");
    }

    #[test]
    fn the_environment_decides_without_file_keys() {
        let none = graph(false, false);
        assert_eq!(
            infer_method(&none, true, false),
            Ok(AuthMethod::WorkloadIdentity)
        );
        assert_eq!(
            infer_method(&none, false, false),
            Ok(AuthMethod::ClientSecret)
        );
        let ambiguous = infer_method(&none, true, true).unwrap_err();
        assert!(
            ambiguous.contains("choose with [graph] auth"),
            "{ambiguous}"
        );
    }
}
