//! Authentication end to end, from the config file to a loopback token endpoint that checks
//! the request: client secret (environment or a private file), certificate (a client
//! assertion whose signature is verified with the certificate), workload identity (the
//! federated token file, re-read for every token), national clouds, and the refusal of
//! secret files other users can read.

use crate::support::{LIST, list_url, security};

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use callrecords_etl::config::{self, Settings};
use callrecords_etl::graph::{Credential, GraphClient, GraphError};
use security::{AssertionEndpoint, TestCertificate, form, write_private};
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TENANT: &str = "00000000-0000-4000-8000-0000000000aa";
const CLIENT: &str = "00000000-0000-4000-8000-0000000000bb";
/// Writes `config.toml` into `dir` with `[graph]` pointing at `server` plus `extra` keys,
/// and loads it with the environment `env`.
fn load(
    dir: &Path,
    server: &MockServer,
    extra: &str,
    env: &[(&str, &str)],
) -> Result<Settings, config::ConfigError> {
    let text = format!(
        "[graph]\ngraph_url = \"{uri}\"\nlogin_url = \"{uri}\"\n{extra}\n",
        uri = server.uri()
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    config::load(&path, |name| env.get(name).cloned())
}

fn ids() -> String {
    format!("tenant_id = \"{TENANT}\"\nclient_id = \"{CLIENT}\"")
}

fn token_path() -> String {
    format!("/{TENANT}/oauth2/v2.0/token")
}

/// Graph answers the list with `token` only; `refuse_first` makes the first request a 401,
/// which forces a second token request.
async fn mount_graph(server: &MockServer, token: &str, refuse_first: bool) {
    if refuse_first {
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(401))
            .up_to_n_times(1)
            .with_priority(1)
            .mount(server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path(LIST))
        .and(header("authorization", format!("Bearer {token}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": []})))
        .mount(server)
        .await;
}

async fn token_forms(server: &MockServer) -> Vec<HashMap<String, String>> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == token_path())
        .map(|r| form(&r.body))
        .collect()
}

#[tokio::test]
async fn a_client_secret_from_a_private_file_is_sent_as_client_secret() {
    let dir = tempfile::tempdir().unwrap();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(token_path()))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"token_type": "Bearer", "expires_in": 3599, "access_token": "tok-secret"}),
        ))
        .mount(&server)
        .await;
    mount_graph(&server, "tok-secret", false).await;
    write_private(dir.path(), "secret.txt", b"  file-secret-value\n");
    let settings = load(
        dir.path(),
        &server,
        &format!("{}\nclient_secret_file = \"secret.txt\"", ids()),
        &[("CALLRECORDS_CLIENT_SECRET", "env-secret-not-used")],
    )
    .unwrap();

    GraphClient::new(settings.graph)
        .unwrap()
        .get_json(&list_url(&server))
        .await
        .unwrap();

    let forms = token_forms(&server).await;
    assert_eq!(forms.len(), 1);
    let sent = &forms[0];
    assert_eq!(sent["grant_type"], "client_credentials");
    assert_eq!(sent["client_id"], CLIENT);
    assert_eq!(sent["client_secret"], "file-secret-value");
    assert_eq!(sent["scope"], format!("{}/.default", server.uri()));
    assert!(!sent.contains_key("client_assertion"));
}

#[tokio::test]
async fn a_certificate_sends_a_signed_client_assertion_that_verifies_with_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let server = MockServer::start().await;
    let certificate = Arc::new(TestCertificate::new());
    let endpoint = AssertionEndpoint {
        certificate: Some(certificate.clone()),
        audience: format!("{}{}", server.uri(), token_path()),
        client_id: CLIENT.into(),
        access_token: "tok-cert".into(),
        seen: Default::default(),
    };
    Mock::given(method("POST"))
        .and(path(token_path()))
        .respond_with(endpoint.clone())
        .mount(&server)
        .await;
    mount_graph(&server, "tok-cert", true).await;
    write_private(dir.path(), "app.pem", certificate.combined_pem().as_bytes());
    // No auth key: the certificate file chooses the method, and a secret in the
    // environment is not used.
    let settings = load(
        dir.path(),
        &server,
        &format!("{}\nclient_certificate_file = \"app.pem\"", ids()),
        &[("CALLRECORDS_CLIENT_SECRET", "env-secret-not-used")],
    )
    .unwrap();
    let Credential::Certificate(loaded) = &settings.graph.credential else {
        panic!(
            "expected a certificate credential: {:?}",
            settings.graph.credential
        );
    };
    let debug = format!("{settings:?}");
    assert!(debug.contains(loaded.thumbprint()), "{debug}");
    for line in certificate.key_lines() {
        assert!(!debug.contains(&line), "the private key is in Debug output");
    }

    // The first Graph request is refused once, so a second token request follows.
    GraphClient::new(settings.graph)
        .unwrap()
        .get_json(&list_url(&server))
        .await
        .unwrap();

    let assertions = endpoint.assertions();
    assert_eq!(assertions.len(), 2, "two token requests");
    let jti = |jwt: &str| {
        security::check_assertion(jwt, &certificate, &endpoint.audience, CLIENT).unwrap()["jti"]
            .clone()
    };
    assert_ne!(
        jti(&assertions[0]),
        jti(&assertions[1]),
        "every assertion is new"
    );
}

#[tokio::test]
async fn an_assertion_signed_by_another_key_is_refused_by_the_checking_endpoint() {
    // The endpoint's check is only worth something if it can fail.
    let registered = TestCertificate::new();
    let other = TestCertificate::new();
    let dir = tempfile::tempdir().unwrap();
    let server = MockServer::start().await;
    write_private(dir.path(), "other.pem", other.combined_pem().as_bytes());
    let settings = load(
        dir.path(),
        &server,
        &format!("{}\nclient_certificate_file = \"other.pem\"", ids()),
        &[],
    )
    .unwrap();
    let endpoint = AssertionEndpoint {
        certificate: Some(Arc::new(registered)),
        audience: format!("{}{}", server.uri(), token_path()),
        client_id: CLIENT.into(),
        access_token: "tok".into(),
        seen: Default::default(),
    };
    Mock::given(method("POST"))
        .and(path(token_path()))
        .respond_with(endpoint.clone())
        .mount(&server)
        .await;

    let error = GraphClient::new(settings.graph)
        .unwrap()
        .authenticate()
        .await
        .unwrap_err();

    assert!(
        matches!(&error, GraphError::Token { code, .. } if code == "AADSTS700027"),
        "{error:?}"
    );
    assert!(error.to_string().contains("certificate"), "{error}");
    // The assertion is a credential: it is not repeated in the error.
    let assertion = &endpoint.assertions()[0];
    assert!(!format!("{error} {error:?}").contains(assertion.as_str()));
}

#[tokio::test]
async fn workload_identity_sends_the_federated_token_and_rereads_it_for_every_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = MockServer::start().await;
    let endpoint = AssertionEndpoint {
        certificate: None,
        audience: String::new(),
        client_id: CLIENT.into(),
        access_token: "tok-wi".into(),
        seen: Default::default(),
    };
    Mock::given(method("POST"))
        .and(path(token_path()))
        .respond_with(endpoint.clone())
        .mount(&server)
        .await;
    mount_graph(&server, "tok-wi", true).await;
    // Projected service account tokens are world-readable files; that is not refused.
    let token_file = dir.path().join("azure-identity-token");
    std::fs::write(&token_file, "federated-token-1\n").unwrap();
    // Nothing but the URLs in the file: AKS's webhook sets the rest in the environment.
    let settings = load(
        dir.path(),
        &server,
        "",
        &[
            ("AZURE_FEDERATED_TOKEN_FILE", token_file.to_str().unwrap()),
            ("AZURE_CLIENT_ID", CLIENT),
            ("AZURE_TENANT_ID", TENANT),
        ],
    )
    .unwrap();
    assert!(matches!(
        settings.graph.credential,
        Credential::FederatedTokenFile(_)
    ));
    let client = GraphClient::new(settings.graph).unwrap();
    client.authenticate().await.unwrap();
    // The kubelet rotates the token; the next token request must send the new one.
    std::fs::write(&token_file, "federated-token-2").unwrap();

    client.get_json(&list_url(&server)).await.unwrap();

    assert_eq!(
        endpoint.assertions(),
        ["federated-token-1", "federated-token-2"]
    );
}

#[tokio::test]
async fn an_unreadable_federated_token_file_is_a_config_error_then_a_credential_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = MockServer::start().await;
    let missing = dir.path().join("no-such-token");
    let problems = load(
        dir.path(),
        &server,
        &format!("{}\nauth = \"workload_identity\"", ids()),
        &[("AZURE_FEDERATED_TOKEN_FILE", missing.to_str().unwrap())],
    )
    .unwrap_err()
    .to_string();
    assert!(
        problems.contains("AZURE_FEDERATED_TOKEN_FILE"),
        "{problems}"
    );
    assert!(problems.contains("no-such-token"), "{problems}");

    // Removed after validation: the token request fails at once, without retries.
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "federated").unwrap();
    let settings = load(
        dir.path(),
        &server,
        &ids(),
        &[("AZURE_FEDERATED_TOKEN_FILE", token_file.to_str().unwrap())],
    )
    .unwrap();
    std::fs::remove_file(&token_file).unwrap();
    let error = GraphClient::new(settings.graph)
        .unwrap()
        .authenticate()
        .await
        .unwrap_err();
    assert!(matches!(error, GraphError::Credential { .. }), "{error:?}");
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn secret_and_certificate_files_readable_by_others_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let server = MockServer::start().await;
    let certificate = TestCertificate::new();
    for (name, content, key) in [
        ("secret.txt", "s3cret".to_string(), "client_secret_file"),
        (
            "app.pem",
            certificate.combined_pem(),
            "client_certificate_file",
        ),
    ] {
        let file = write_private(dir.path(), name, content.as_bytes());
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let message = load(
            dir.path(),
            &server,
            &format!("{}\n{key} = \"{name}\"", ids()),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            message.contains("readable by other users") && message.contains("0644"),
            "{message}"
        );
        assert!(message.contains(key), "{message}");
        assert!(!message.contains("s3cret"), "{message}");

        // Group-readable is fine (a service group); owner-only of course too.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        load(
            dir.path(),
            &server,
            &format!("{}\n{key} = \"{name}\"", ids()),
            &[],
        )
        .unwrap();
    }
}

#[tokio::test]
async fn certificate_files_that_cannot_work_are_config_errors_that_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let server = MockServer::start().await;
    let certificate = TestCertificate::new();
    let other = TestCertificate::new();
    let ec_key = rcgen::KeyPair::generate().unwrap().serialize_pem();
    let cases = [
        (certificate.cert_pem.clone(), "holds no private key"),
        (certificate.key_pem.clone(), "no PEM CERTIFICATE"),
        (
            format!("{}{}", certificate.cert_pem, other.key_pem),
            "does not belong to its (first) certificate",
        ),
        (format!("{}{ec_key}", certificate.cert_pem), "not RSA"),
        (
            format!(
                "{}-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
                certificate.cert_pem
            ),
            "encrypted private key",
        ),
    ];
    for (content, expected) in cases {
        write_private(dir.path(), "app.pem", content.as_bytes());
        let message = load(
            dir.path(),
            &server,
            &format!("{}\nclient_certificate_file = \"app.pem\"", ids()),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            message.contains(expected) && message.contains("client_certificate_file"),
            "{expected}: {message}"
        );
    }
}

#[test]
fn national_clouds_set_both_urls_and_explicit_urls_win() {
    let dir = tempfile::tempdir().unwrap();
    let load = |extra: &str| {
        let path = dir.path().join("config.toml");
        std::fs::write(&path, format!("[graph]\n{}\n{extra}\n", ids())).unwrap();
        config::load(&path, |name| {
            (name == config::SECRET_ENV).then(|| "s".to_string())
        })
    };
    for (cloud, graph, login) in [
        (
            "global",
            "https://graph.microsoft.com/",
            "https://login.microsoftonline.com/",
        ),
        (
            "usgov",
            "https://graph.microsoft.us/",
            "https://login.microsoftonline.us/",
        ),
        (
            "usgov-dod",
            "https://dod-graph.microsoft.us/",
            "https://login.microsoftonline.us/",
        ),
        (
            "china",
            "https://microsoftgraph.chinacloudapi.cn/",
            "https://login.chinacloudapi.cn/",
        ),
    ] {
        let settings = load(&format!("cloud = \"{cloud}\"")).unwrap();
        assert_eq!(settings.graph.graph_url.as_str(), graph, "{cloud}");
        assert_eq!(settings.graph.login_url.as_str(), login, "{cloud}");
    }
    let settings = load("cloud = \"china\"\ngraph_url = \"https://graph.example.cn\"").unwrap();
    assert_eq!(
        settings.graph.graph_url.as_str(),
        "https://graph.example.cn/"
    );
    assert_eq!(
        settings.graph.login_url.as_str(),
        "https://login.chinacloudapi.cn/"
    );
    let error = load("cloud = \"mars\"").unwrap_err().to_string();
    assert!(
        error.contains("cloud") && error.contains("usgov-dod"),
        "{error}"
    );
}
