//! Shared helpers of the security tests: a self-signed RSA certificate (rcgen), files only
//! their owner may read, form bodies, a loopback token endpoint that checks client
//! assertions the way Entra ID does (header, claims, and the RS256 signature verified with
//! the certificate's public key through an independent X.509 parser), and a scan of text
//! for secrets.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use wiremock::{Request, Respond, ResponseTemplate};

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A self-signed RSA-2048 certificate and its private key.
pub struct TestCertificate {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl TestCertificate {
    pub fn new() -> Self {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["callrecords-etl.test".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    /// Certificate and key in one PEM file, as `client_certificate_file` expects.
    pub fn combined_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pem)
    }

    /// base64url SHA-1 of the DER: the `x5t` Entra ID looks the certificate up by.
    pub fn x5t(&self) -> String {
        URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &self.der))
    }

    pub fn x5t_s256(&self) -> String {
        URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, &self.der))
    }

    /// The base64 lines of the private key, each of which must never be printed.
    pub fn key_lines(&self) -> Vec<String> {
        self.key_pem
            .lines()
            .filter(|line| !line.starts_with("-----") && line.len() > 20)
            .map(str::to_owned)
            .collect()
    }
}

/// Writes `content` to `dir/name`, readable and writable by its owner only.
pub fn write_private(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// The fields of a form-encoded body.
pub fn form(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn decode_part(part: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|e| format!("not base64url: {e}"))
}

/// Checks a client assertion as Entra ID does and returns its claims: RS256 with the
/// certificate's `x5t` and `x5t#S256`, `aud` the token endpoint, `iss` = `sub` = client id,
/// a GUID `jti`, valid now for at most 10 minutes, signed by the certificate's key.
pub fn check_assertion(
    jwt: &str,
    certificate: &TestCertificate,
    audience: &str,
    client_id: &str,
) -> Result<Value, String> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err(format!("a JWT has three parts, this has {}", parts.len()));
    };
    let header: Value = serde_json::from_slice(&decode_part(header)?).map_err(|e| e.to_string())?;
    let claims: Value = serde_json::from_slice(&decode_part(claims)?).map_err(|e| e.to_string())?;
    let expected_header = json!({
        "alg": "RS256", "typ": "JWT", "x5t": certificate.x5t(), "x5t#S256": certificate.x5t_s256()
    });
    if header != expected_header {
        return Err(format!("header {header} != {expected_header}"));
    }
    let now = chrono::Utc::now().timestamp();
    let number = |name: &str| claims[name].as_i64().ok_or(format!("no numeric {name}"));
    let (nbf, iat, exp) = (number("nbf")?, number("iat")?, number("exp")?);
    let checks = [
        (claims["aud"] == audience, "aud is the token endpoint"),
        (claims["iss"] == client_id, "iss is the client id"),
        (claims["sub"] == client_id, "sub is the client id"),
        (
            claims["jti"]
                .as_str()
                .is_some_and(|jti| uuid::Uuid::parse_str(jti).is_ok()),
            "jti is a GUID",
        ),
        (nbf <= now + 5 && iat <= now + 5, "valid from now"),
        (exp > now && exp - iat <= 600, "expires within 10 minutes"),
    ];
    if let Some((_, failed)) = checks.iter().find(|(ok, _)| !ok) {
        return Err(format!("claim check failed: {failed}: {claims}"));
    }
    let der = rustls_pki_types::CertificateDer::from(certificate.der.as_slice());
    let end_entity = webpki::EndEntityCert::try_from(&der).map_err(|e| e.to_string())?;
    let signed = &jwt[..jwt.len() - signature.len() - 1];
    end_entity
        .verify_signature(
            webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA256,
            signed.as_bytes(),
            &decode_part(signature)?,
        )
        .map_err(|e| format!("the signature does not verify with the certificate: {e:?}"))?;
    Ok(claims)
}

/// A loopback token endpoint that accepts only a valid client assertion (signed with
/// `certificate`, or equal to `expected_assertion` for federated tokens) and answers with
/// `access_token`; every assertion it saw is kept.
#[derive(Clone)]
pub struct AssertionEndpoint {
    pub certificate: Option<Arc<TestCertificate>>,
    pub audience: String,
    pub client_id: String,
    pub access_token: String,
    pub seen: Arc<Mutex<Vec<String>>>,
}

impl AssertionEndpoint {
    pub fn assertions(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Respond for AssertionEndpoint {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let form = form(&request.body);
        let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
        let mut problems = Vec::new();
        if field("grant_type") != "client_credentials" {
            problems.push("grant_type".to_string());
        }
        if field("client_id") != self.client_id {
            problems.push("client_id".to_string());
        }
        if field("client_assertion_type") != ASSERTION_TYPE {
            problems.push("client_assertion_type".to_string());
        }
        if form.contains_key("client_secret") {
            problems.push("a client_secret was sent along".to_string());
        }
        if !field("scope").ends_with("/.default") {
            problems.push("scope".to_string());
        }
        let assertion = field("client_assertion").to_string();
        if let Some(certificate) = &self.certificate
            && let Err(problem) =
                check_assertion(&assertion, certificate, &self.audience, &self.client_id)
        {
            problems.push(problem);
        }
        self.seen.lock().unwrap().push(assertion);
        if problems.is_empty() {
            ResponseTemplate::new(200).set_body_json(json!({
                "token_type": "Bearer", "expires_in": 3599, "access_token": self.access_token
            }))
        } else {
            ResponseTemplate::new(401).set_body_json(json!({
                "error": "invalid_client",
                "error_description": format!("AADSTS700027: test endpoint refused: {}", problems.join("; "))
            }))
        }
    }
}

/// The needles found in `haystack`, for a message that says what leaked where.
pub fn leaks<'a>(haystack: &str, needles: &'a [String]) -> Vec<&'a str> {
    needles
        .iter()
        .filter(|needle| !needle.is_empty() && haystack.contains(needle.as_str()))
        .map(String::as_str)
        .collect()
}
