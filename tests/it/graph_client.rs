//! Tests of the Graph HTTP client against loopback wiremock servers: token caching and
//! refresh, retries and throttling, error mapping, the origin guard and secret redaction.
//! Real time with small waits (no paused clock: it would fire timeouts during socket I/O).

use std::time::{Duration, Instant};

use callrecords_etl::graph::{ClientSettings, Credential, GraphClient, GraphError, Secret};
use serde_json::json;

use crate::support::{LIST, list_url};
use wiremock::matchers::{body_string_contains, header, header_exists, method, path};
use wiremock::{Mock, MockBuilder, MockServer, ResponseTemplate};

const TENANT: &str = "contoso-tenant";
const SECRET: &str = "Zx9~super-secret-value";
fn settings(graph: &MockServer, login: &str) -> ClientSettings {
    let mut settings = ClientSettings::new(
        graph.uri().parse().unwrap(),
        login.parse().unwrap(),
        TENANT.into(),
        "11111111-2222-3333-4444-555555555555".into(),
        Secret::new(SECRET.into()),
    );
    settings.backoff_base = Duration::from_millis(10);
    settings.backoff_cap = Duration::from_millis(50);
    settings.max_total_wait = Duration::from_secs(30);
    settings.request_timeout = Duration::from_secs(5);
    settings
}

/// A client whose token endpoint and Graph are both served by `server`.
fn client(server: &MockServer) -> GraphClient {
    GraphClient::new(settings(server, &server.uri())).unwrap()
}

fn token_endpoint() -> MockBuilder {
    Mock::given(method("POST")).and(path(format!("/{TENANT}/oauth2/v2.0/token")))
}

fn token_response(token: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token
    }))
}

async fn mount_token(server: &MockServer, token: &str) {
    token_endpoint()
        .respond_with(token_response(token))
        .mount(server)
        .await;
}

fn page() -> serde_json::Value {
    json!({ "value": [{ "id": "a" }] })
}

/// Neither the secret nor any token issued by these tests may appear in a message.
fn assert_redacted(error: &GraphError) {
    let text = format!("{error} {error:?}");
    for needle in [SECRET, "tok-"] {
        assert!(!text.contains(needle), "{needle:?} leaked into {text}");
    }
}

async fn requests_to(server: &MockServer, path_: &str) -> usize {
    let received = server.received_requests().await.unwrap();
    received.iter().filter(|r| r.url.path() == path_).count()
}

#[tokio::test]
async fn api_url_joins_version_and_path() {
    let server = MockServer::start().await;
    let url = client(&server).api_url("communications/callRecords");
    assert_eq!(url.as_str(), format!("{}{LIST}", server.uri()));
}

#[tokio::test]
async fn token_is_requested_once_for_many_gets() {
    let server = MockServer::start().await;
    token_endpoint()
        .and(body_string_contains("grant_type=client_credentials"))
        .and(body_string_contains(
            "client_secret=Zx9%7Esuper-secret-value",
        ))
        .respond_with(token_response("tok-1"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(LIST))
        .and(header("authorization", "Bearer tok-1"))
        .and(header("accept", "application/json"))
        .and(header("prefer", "include-unknown-enum-members"))
        .and(header_exists("client-request-id"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page()))
        .expect(6)
        .mount(&server)
        .await;
    let client = client(&server);
    let url = list_url(&server);

    // Concurrent first use: one token request in flight, the others wait for it.
    let concurrent = futures::future::join_all((0..3).map(|_| client.get_json(&url))).await;
    for result in concurrent {
        assert_eq!(result.unwrap(), page());
    }
    for _ in 0..3 {
        client.get_json(&url).await.unwrap();
    }

    let stats = client.stats();
    assert_eq!(
        (stats.token_requests, stats.requests, stats.retries),
        (1, 6, 0)
    );
    let received = server.received_requests().await.unwrap();
    let token_body = String::from_utf8(received[0].body.clone()).unwrap();
    let scope = format!("scope={}", urlencode(&format!("{}/.default", server.uri())));
    assert!(token_body.contains(&scope), "{token_body}");
    let graph: Vec<_> = received.iter().filter(|r| r.url.path() == LIST).collect();
    let ids: std::collections::HashSet<_> = graph
        .iter()
        .map(|r| {
            r.headers
                .get("client-request-id")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 6, "a fresh client-request-id per request");
    let agent = graph[0]
        .headers
        .get("user-agent")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(agent.starts_with("callrecords-etl/"), "{agent}");
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn authenticate_fetches_a_token() {
    let server = MockServer::start().await;
    token_endpoint()
        .respond_with(token_response("tok-1"))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);
    client.authenticate().await.unwrap();
    client.authenticate().await.unwrap();
    assert_eq!(client.stats().token_requests, 1);
}

#[tokio::test]
async fn a_401_refreshes_the_token_once_and_succeeds() {
    let server = MockServer::start().await;
    token_endpoint()
        .respond_with(token_response("tok-old"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_token(&server, "tok-new").await;
    Mock::given(method("GET"))
        .and(header("authorization", "Bearer tok-old"))
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(header("authorization", "Bearer tok-new"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page()))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);

    assert_eq!(client.get_json(&list_url(&server)).await.unwrap(), page());
    assert_eq!(client.stats().token_requests, 2);
}

#[tokio::test]
async fn a_second_401_is_unauthorized() {
    let server = MockServer::start().await;
    mount_token(&server, "tok-1").await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401))
        .expect(2)
        .mount(&server)
        .await;
    let client = client(&server);

    let error = client.get_json(&list_url(&server)).await.unwrap_err();
    assert!(
        matches!(error, GraphError::Unauthorized { .. }),
        "{error:?}"
    );
    assert_redacted(&error);
    assert_eq!(client.stats().token_requests, 2);
}

#[tokio::test]
async fn retry_after_replaces_the_backoff() {
    let server = MockServer::start().await;
    mount_token(&server, "tok-1").await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page()))
        .mount(&server)
        .await;
    let mut settings = settings(&server, &server.uri());
    // A backoff this large would be obvious if it were added to Retry-After.
    settings.backoff_base = Duration::from_secs(60);
    settings.backoff_cap = Duration::from_secs(60);
    let client = GraphClient::new(settings).unwrap();

    let started = Instant::now();
    client.get_json(&list_url(&server)).await.unwrap();
    let elapsed = started.elapsed();

    assert!(elapsed >= Duration::from_millis(950), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(2500), "{elapsed:?}");
    let stats = client.stats();
    assert_eq!((stats.throttled, stats.retries, stats.requests), (1, 1, 2));
    assert_eq!(stats.throttle_wait_ms, 1000);
}

#[tokio::test]
async fn retry_after_as_http_date() {
    let server = MockServer::start().await;
    mount_token(&server, "tok-1").await;
    let at = chrono::Utc::now() + chrono::Duration::seconds(2);
    let date = at.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", date.as_str()))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page()))
        .mount(&server)
        .await;
    let client = client(&server);

    let started = Instant::now();
    client.get_json(&list_url(&server)).await.unwrap();
    let elapsed = started.elapsed();

    // The date has whole seconds, so the wait is between 1 and 2 s.
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(3000), "{elapsed:?}");
    assert_eq!(client.stats().throttled, 1);
}

#[tokio::test]
async fn two_503_then_success() {
    let server = MockServer::start().await;
    mount_token(&server, "tok-1").await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page()))
        .mount(&server)
        .await;
    let client = client(&server);

    assert_eq!(client.get_json(&list_url(&server)).await.unwrap(), page());
    let stats = client.stats();
    assert_eq!((stats.requests, stats.retries, stats.throttled), (3, 2, 0));
}

#[tokio::test]
async fn persistent_500_exhausts_max_attempts() {
    let server = MockServer::start().await;
    mount_token(&server, "tok-1").await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(500).set_body_json(
                json!({"error": {"code": "InternalServerError", "message": "boom"}}),
            ),
        )
        .expect(3)
        .mount(&server)
        .await;
    let mut settings = settings(&server, &server.uri());
    settings.max_attempts = 3;
    let client = GraphClient::new(settings).unwrap();

    let error = client.get_json(&list_url(&server)).await.unwrap_err();
    match &error {
        GraphError::Status {
            status, message, ..
        } => {
            assert_eq!(*status, 500);
            assert!(message.contains("boom"), "{message}");
        }
        other => panic!("expected Status, got {other:?}"),
    }
    assert_eq!(client.stats().retries, 2);
}

#[tokio::test]
async fn throttling_longer_than_max_total_wait_gives_up_at_once() {
    let server = MockServer::start().await;
    mount_token(&server, "tok-1").await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "30"))
        .expect(1)
        .mount(&server)
        .await;
    let mut settings = settings(&server, &server.uri());
    settings.max_total_wait = Duration::from_secs(5);
    let client = GraphClient::new(settings).unwrap();

    let error = client.get_json(&list_url(&server)).await.unwrap_err();
    assert!(
        matches!(error, GraphError::Throttled { attempts: 1, .. }),
        "{error:?}"
    );
    assert_eq!(client.stats().throttled, 1);
}

#[tokio::test]
async fn not_found_is_not_retried() {
    let server = MockServer::start().await;
    mount_token(&server, "tok-1").await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(404))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);

    let error = client.get_json(&list_url(&server)).await.unwrap_err();
    assert!(matches!(error, GraphError::NotFound { .. }), "{error:?}");
    let stats = client.stats();
    assert_eq!((stats.requests, stats.retries, stats.not_found), (1, 0, 1));
}

#[tokio::test]
async fn forbidden_names_the_permission() {
    let server = MockServer::start().await;
    mount_token(&server, "tok-1").await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "error": {"code": "Forbidden", "message": "Insufficient privileges to complete the operation."}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);

    let error = client.get_json(&list_url(&server)).await.unwrap_err();
    assert!(matches!(error, GraphError::Forbidden { .. }), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("CallRecords.Read.All"), "{text}");
    assert!(text.contains("admin consent"), "{text}");
    assert!(text.contains("Insufficient privileges"), "{text}");
    assert_redacted(&error);
}

#[tokio::test]
async fn bad_request_carries_graphs_message() {
    let server = MockServer::start().await;
    mount_token(&server, "tok-1").await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": {"code": "BadRequest", "message": "Invalid filter clause: startDateTime"}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);

    match client.get_json(&list_url(&server)).await.unwrap_err() {
        GraphError::BadRequest { message, .. } => {
            assert!(
                message.contains("Invalid filter clause: startDateTime"),
                "{message}"
            )
        }
        other => panic!("expected BadRequest, got {other:?}"),
    }
}

#[tokio::test]
async fn token_endpoint_errors_say_what_to_fix() {
    let cases = [
        (
            401,
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.\r\nTrace ID: 0000",
            "client secret is wrong",
        ),
        (
            400,
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided.",
            "client secret is wrong",
        ),
        (
            400,
            "unauthorized_client",
            "AADSTS700016: Application with identifier '1111' was not found in the directory 'contoso'.",
            "client_id",
        ),
        (
            400,
            "invalid_request",
            "AADSTS90002: Tenant 'contoso-tenant' not found.",
            "tenant_id",
        ),
    ];
    for (status, error, description, expected) in cases {
        let server = MockServer::start().await;
        token_endpoint()
            .respond_with(ResponseTemplate::new(status).set_body_json(json!({
                "error": error, "error_description": description, "error_codes": [7000215]
            })))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_json(page()))
            .expect(0)
            .mount(&server)
            .await;
        let client = client(&server);

        let failure = client.get_json(&list_url(&server)).await.unwrap_err();
        let GraphError::Token {
            status: got, code, ..
        } = &failure
        else {
            panic!("expected Token, got {failure:?}");
        };
        assert_eq!(*got, Some(status));
        assert!(code.starts_with("AADSTS"), "{code}");
        let text = failure.to_string();
        assert!(text.contains(expected), "{text}");
        assert!(
            !text.contains("Trace ID"),
            "only the first line of the description: {text}"
        );
        assert_redacted(&failure);
    }
}

#[tokio::test]
async fn an_echoed_secret_is_redacted_from_token_errors() {
    let server = MockServer::start().await;
    token_endpoint()
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_client", "error_description": format!("bad secret {SECRET}")
        })))
        .mount(&server)
        .await;
    let error = client(&server).authenticate().await.unwrap_err();
    assert_redacted(&error);
}

#[tokio::test]
async fn unreachable_login_host_is_a_token_error() {
    let graph = MockServer::start().await;
    // Port 9 (discard) on loopback: nothing listens there, so the connection is refused.
    let client = GraphClient::new(settings(&graph, "http://127.0.0.1:9")).unwrap();

    let error = client.authenticate().await.unwrap_err();
    match &error {
        GraphError::Token {
            status,
            code,
            message,
        } => {
            assert_eq!((*status, code.as_str()), (None, "unreachable"));
            assert!(message.contains("127.0.0.1"), "{message}");
        }
        other => panic!("expected Token, got {other:?}"),
    }
}

#[tokio::test]
async fn unreachable_graph_is_retried_then_a_transport_error() {
    let login = MockServer::start().await;
    mount_token(&login, "tok-1").await;
    let mut settings = settings(&login, &login.uri());
    settings.graph_url = "http://127.0.0.1:9".parse().unwrap();
    settings.max_attempts = 3;
    let client = GraphClient::new(settings).unwrap();

    let url = client.api_url("communications/callRecords");
    let error = client.get_json(&url).await.unwrap_err();
    assert!(matches!(error, GraphError::Transport { .. }), "{error:?}");
    assert_eq!((client.stats().requests, client.stats().retries), (3, 2));
}

#[tokio::test]
async fn a_body_that_is_not_json_is_retried_once_then_a_decode_error_with_the_body() {
    let server = MockServer::start().await;
    mount_token(&server, "tok-1").await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>gateway</html>"))
        .expect(2)
        .mount(&server)
        .await;

    let client = client(&server);
    let error = client.get_json(&list_url(&server)).await.unwrap_err();
    let GraphError::Decode { body, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(&**body, "<html>gateway</html>");
    assert!(
        !error.to_string().contains("gateway</html>"),
        "the body stays out of messages"
    );
    assert_eq!(client.stats().malformed, 2);
}

#[tokio::test]
async fn a_truncated_body_followed_by_a_good_one_succeeds() {
    let server = MockServer::start().await;
    mount_token(&server, "tok-1").await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{\"value\": [1, 2"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{\"value\": [1, 2]}"))
        .mount(&server)
        .await;
    let value = client(&server).get_json(&list_url(&server)).await.unwrap();
    assert_eq!(value["value"][1], 2);
}

#[tokio::test]
async fn a_url_on_another_port_is_refused_before_sending() {
    let server = MockServer::start().await;
    let foreign = MockServer::start().await;
    mount_token(&server, "tok-1").await;
    let client = client(&server);

    let url: url::Url = format!("{}{LIST}?$skiptoken=x", foreign.uri())
        .parse()
        .unwrap();
    let error = client.get_json(&url).await.unwrap_err();

    assert!(
        matches!(error, GraphError::ForeignOrigin { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("127.0.0.1"), "{error}");
    assert!(foreign.received_requests().await.unwrap().is_empty());
    assert_eq!(
        requests_to(&server, &format!("/{TENANT}/oauth2/v2.0/token")).await,
        0
    );
}

#[tokio::test]
async fn the_secret_is_not_in_debug_output() {
    let server = MockServer::start().await;
    let settings = settings(&server, &server.uri());
    let debug = format!("{settings:?}");
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(debug.contains("[redacted]"), "{debug}");
    assert!(
        matches!(&settings.credential, Credential::ClientSecret(secret) if secret.expose() == SECRET)
    );
}

#[tokio::test]
async fn a_transient_token_endpoint_failure_is_retried() {
    let server = MockServer::start().await;
    token_endpoint()
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_token(&server, "tok-1").await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page()))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);

    assert_eq!(client.get_json(&list_url(&server)).await.unwrap(), page());
    let stats = client.stats();
    assert_eq!(
        (stats.token_requests, stats.requests, stats.retries),
        (2, 1, 1)
    );
}

/// A Graph stand-in on a raw socket that answers every request with `200 OK` and a chunked
/// body that never ends (no `Content-Length`); returns its URL and the bytes it sent.
async fn endless_body_server() -> (url::Url, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}{LIST}", listener.local_addr().unwrap());
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                            transfer-encoding: chunked\r\n\r\n5\r\n[1,2,\r\n";
                socket.write_all(head.as_bytes()).await.unwrap();
                let chunk = format!("10000\r\n{}\r\n", "7,".repeat(0x8000));
                while socket.write_all(chunk.as_bytes()).await.is_ok() {
                    counter.fetch_add(0x10000, Ordering::Relaxed);
                }
            });
        }
    });
    (url.parse().unwrap(), sent)
}

#[tokio::test]
async fn an_endless_body_is_cut_off_at_max_response_bytes_while_it_streams() {
    let login = MockServer::start().await;
    mount_token(&login, "tok-1").await;
    let (url, sent) = endless_body_server().await;
    let mut settings = settings(&login, &login.uri());
    settings.graph_url = url.clone();
    settings.max_response_bytes = 1024 * 1024;
    let client = GraphClient::new(settings).unwrap();

    let error = client.get_json(&url).await.unwrap_err();

    let GraphError::TooLarge {
        limit,
        content_length,
        body,
        ..
    } = &error
    else {
        panic!("expected TooLarge, got {error}");
    };
    assert_eq!((*limit, *content_length), (1024 * 1024, None));
    assert!(
        body.starts_with("[1,2,7,7,") && body.len() <= 4096,
        "{body}"
    );
    let message = error.to_string();
    assert!(
        message.contains(url.as_str()) && message.contains("max_response_bytes = 1048576"),
        "{message}"
    );
    assert_eq!(client.stats().requests, 1, "a refused size is not retried");
    let read = sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        read < 64 * 1024 * 1024,
        "the client stopped reading soon after the cap ({read} bytes sent)"
    );
}

#[tokio::test]
async fn a_content_length_above_max_response_bytes_is_refused_before_reading() {
    let server = MockServer::start().await;
    mount_token(&server, "tok-1").await;
    let big = json!({ "value": ["x".repeat(2 * 1024 * 1024)] });
    Mock::given(method("GET"))
        .and(path(LIST))
        .respond_with(ResponseTemplate::new(200).set_body_json(big))
        .expect(1)
        .mount(&server)
        .await;
    let mut settings = settings(&server, &server.uri());
    settings.max_response_bytes = 1024 * 1024;
    let client = GraphClient::new(settings).unwrap();

    let error = client.get_json(&list_url(&server)).await.unwrap_err();

    assert!(
        matches!(&error, GraphError::TooLarge { content_length: Some(n), body, .. }
            if n.get() > 2 * 1024 * 1024 && body.is_empty()),
        "{error:?}"
    );
    assert!(error.to_string().contains("Content-Length"), "{error}");
}

#[tokio::test]
async fn an_error_body_that_echoes_the_token_is_redacted_from_the_error() {
    let server = MockServer::start().await;
    let token = "tok-4f3c2b1a0987-echoed";
    mount_token(&server, token).await;
    Mock::given(method("GET"))
        .and(path(LIST))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({"error": {
            "code": "Forbidden",
            "message": format!("request had Authorization: Bearer {token} and token {token}")
        }})))
        .mount(&server)
        .await;

    let error = client(&server)
        .get_json(&list_url(&server))
        .await
        .unwrap_err();

    assert!(matches!(error, GraphError::Forbidden { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("Forbidden: request had Authorization: [redacted]")
    );
    assert_redacted(&error);
}
