//! The application's credential for the client-credentials grant and what each kind puts
//! in a token request: a client secret; a client assertion signed with a certificate's
//! private key (an RS256 JWT with the certificate's thumbprints in its header, Microsoft
//! Entra ID's certificate credential); or a federated token (workload identity), read from
//! its file on every request because the kubelet rotates it.
//!
//! Touches only the federated token file. Certificates are parsed from bytes the caller
//! read (the config checks the file's permissions). Never formats a secret, a private key
//! or an assertion: those only leave as [`Secret`]s.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::pem::{self, PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;

use super::{GraphError, Secret};

/// `client_assertion_type` of a JWT client assertion (RFC 7523).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Lifetime of a signed client assertion. Entra ID accepts at most 10 minutes; one
/// assertion is used for one token request, so a few minutes leave room for clock skew.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// How the application proves its identity to the token endpoint.
#[derive(Clone, Debug)]
pub enum Credential {
    /// A client secret (`client_secret`).
    ClientSecret(Secret),
    /// A certificate registered on the app: every token request carries a fresh assertion
    /// signed with its private key.
    Certificate(Arc<ClientCertificate>),
    /// Workload identity federation: the token in this file (Kubernetes service account
    /// token projected by AKS) is the assertion. Re-read on every token request.
    FederatedTokenFile(PathBuf),
}

impl From<Secret> for Credential {
    fn from(secret: Secret) -> Self {
        Credential::ClientSecret(secret)
    }
}

/// The credential's part of one token request.
pub(crate) enum Proof {
    /// Sent as `client_secret`.
    Secret(Secret),
    /// Sent as `client_assertion` with [`ASSERTION_TYPE`].
    Assertion(Secret),
}

impl Proof {
    pub(crate) fn value(&self) -> &Secret {
        match self {
            Proof::Secret(value) | Proof::Assertion(value) => value,
        }
    }
}

impl Credential {
    /// The proof for one token request to `audience` (the token endpoint URL) as `client_id`.
    pub(crate) fn proof(
        &self,
        audience: &str,
        client_id: &str,
        now: SystemTime,
    ) -> Result<Proof, GraphError> {
        match self {
            Credential::ClientSecret(secret) => Ok(Proof::Secret(secret.clone())),
            Credential::Certificate(certificate) => certificate
                .assertion(audience, client_id, now)
                .map(Proof::Assertion),
            Credential::FederatedTokenFile(path) => read_federated_token(path)
                .map(Proof::Assertion)
                .map_err(|message| GraphError::Credential { message }),
        }
    }
}

/// The token in a federated token file, trimmed; the error names the file, never the content.
pub fn read_federated_token(path: &std::path::Path) -> Result<Secret, String> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => Ok(Secret::new(text.trim().to_owned())),
        Ok(_) => Err(format!(
            "the federated token file {} is empty",
            path.display()
        )),
        Err(error) => Err(format!(
            "cannot read the federated token file {}: {error}",
            path.display()
        )),
    }
}

/// Why a certificate file cannot be used; each message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error(
        "holds no PEM CERTIFICATE section: put the certificate and its private key in one PEM file"
    )]
    NoCertificate,
    #[error(
        "holds no private key: put the certificate and its unencrypted private key \
         (PRIVATE KEY or RSA PRIVATE KEY) in one PEM file"
    )]
    NoPrivateKey,
    #[error(
        "holds an encrypted private key, which cannot be used unattended: decrypt it \
         (e.g. `openssl pkey -in FILE -out key.pem`) and keep the file readable only by the exporter"
    )]
    EncryptedKey,
    #[error(
        "holds a private key that is not RSA: Entra ID client assertions need an RSA certificate (RS256)"
    )]
    NotRsa,
    #[error(
        "has an RSA private key that cannot be used ({0}); Entra ID needs RSA keys of 2048 bits or more"
    )]
    KeyRejected(String),
    #[error(
        "holds a private key that does not belong to its (first) certificate: the first CERTIFICATE \
         section must be the one registered on the app, and the key must be its key"
    )]
    KeyMismatch,
    #[error("is not valid PEM: {0}")]
    Pem(String),
}

/// A certificate registered on the app registration, with its private key.
pub struct ClientCertificate {
    key: RsaKeyPair,
    /// base64url SHA-1 of the certificate's DER: the `x5t` header Entra ID uses to find it.
    x5t: String,
    /// base64url SHA-256 of the certificate's DER: `x5t#S256`, which Entra ID also accepts.
    x5t_s256: String,
    /// Upper-case hex SHA-1, as the Entra admin center shows it (for messages).
    thumbprint: String,
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("thumbprint", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

impl ClientCertificate {
    /// Reads the first certificate and the private key of a PEM file's content.
    pub fn from_pem(text: &[u8]) -> Result<Self, CertificateError> {
        let mut certificate = None;
        let mut key = None;
        for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(text) {
            let (kind, der) = section.map_err(|e| match e {
                pem::Error::NoItemsFound => CertificateError::NoCertificate,
                other => CertificateError::Pem(other.to_string()),
            })?;
            match kind {
                SectionKind::Certificate if certificate.is_none() => {
                    certificate = Some(CertificateDer::from(der));
                }
                SectionKind::PrivateKey
                | SectionKind::RsaPrivateKey
                | SectionKind::EcPrivateKey
                    if key.is_none() =>
                {
                    key = PrivateKeyDer::from_pem(kind, der);
                }
                _ => {}
            }
        }
        let certificate = certificate.ok_or(CertificateError::NoCertificate)?;
        let key = match key {
            Some(PrivateKeyDer::Pkcs8(der)) => RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()),
            Some(PrivateKeyDer::Pkcs1(der)) => RsaKeyPair::from_der(der.secret_pkcs1_der()),
            Some(PrivateKeyDer::Sec1(_)) => return Err(CertificateError::NotRsa),
            // rustls-pki-types does not parse encrypted keys; name the problem precisely.
            Some(_) | None if contains(text, b"ENCRYPTED PRIVATE KEY") => {
                return Err(CertificateError::EncryptedKey);
            }
            Some(_) | None => return Err(CertificateError::NoPrivateKey),
        }
        .map_err(|e| match e.description_() {
            "WrongAlgorithm" => CertificateError::NotRsa,
            other => CertificateError::KeyRejected(other.to_owned()),
        })?;
        // The certificate carries the public key (RFC 8017 RSAPublicKey) in its
        // SubjectPublicKeyInfo; a key whose public half is not in there is the wrong key.
        if !contains(certificate.as_ref(), key.public_key().as_ref()) {
            return Err(CertificateError::KeyMismatch);
        }
        let sha1 = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, certificate.as_ref());
        let sha256 = digest::digest(&digest::SHA256, certificate.as_ref());
        Ok(Self {
            key,
            x5t: URL_SAFE_NO_PAD.encode(sha1.as_ref()),
            x5t_s256: URL_SAFE_NO_PAD.encode(sha256.as_ref()),
            thumbprint: hex::encode_upper(sha1.as_ref()),
        })
    }

    /// The SHA-1 thumbprint in upper-case hex, as the app registration lists it.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// A signed client assertion for one token request: `aud` the token endpoint,
    /// `iss` = `sub` = the client id, a random `jti`, valid from `now` for a few minutes.
    fn assertion(
        &self,
        audience: &str,
        client_id: &str,
        now: SystemTime,
    ) -> Result<Secret, GraphError> {
        let issued = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| GraphError::Credential {
                message: "the system clock is before 1970; cannot sign a client assertion".into(),
            })?
            .as_secs();
        let header = json!({
            "alg": "RS256",
            "typ": "JWT",
            "x5t": self.x5t,
            "x5t#S256": self.x5t_s256,
        });
        let claims = json!({
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "nbf": issued,
            "iat": issued,
            "exp": issued + ASSERTION_LIFETIME.as_secs(),
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| GraphError::Credential {
                message: format!(
                    "could not sign a client assertion with the certificate {}",
                    self.thumbprint
                ),
            })?;
        Ok(Secret::new(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        )))
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}
