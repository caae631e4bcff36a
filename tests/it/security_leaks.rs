//! Nothing leaks and tokens stay home, checked on the built binary:
//! - an export at the highest verbosity (`-vv`, `RUST_LOG=trace`) prints and writes neither
//!   the client secret nor any access token, nor (with a certificate) the client assertion
//!   or the private key: stdout, stderr, every file under the output folder (raw bytes and
//!   every Parquet cell) are searched;
//! - everything the export writes is closed to other users;
//! - an `@odata.nextLink` to another scheme, host or port is refused, naming the host, and
//!   that host receives nothing.

use crate::support;
use crate::support::security;

use support::{days_ago, stderr};

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use callrecords_emulator::{self as emulator, EmulatorConfig, RunningEmulator};
use security::{AssertionEndpoint, TestCertificate, leaks, write_private};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Prefix of the access tokens the emulator issues (`emu.` and 64 hex digits).
const TOKEN_PREFIX: &str = "emu.";

async fn start_emulator(secret: &str) -> RunningEmulator {
    let config = EmulatorConfig {
        client_secret: secret.into(),
        calls_per_day: 40,
        ..EmulatorConfig::default()
    };
    support::start_emulator(config).await
}

/// An access token from the emulator's token endpoint. Its shape is what the scans look
/// for, so a change of the emulator's token format fails here instead of weakening them.
async fn emulator_token(emulator: &RunningEmulator) -> String {
    let token = support::emulator_token(emulator).await;
    let hex = &token[TOKEN_PREFIX.len().min(token.len())..];
    assert!(
        token.starts_with(TOKEN_PREFIX)
            && hex.len() >= 32
            && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "the emulator's tokens changed shape; update TOKEN_PREFIX and the scan"
    );
    token
}

/// A config for `graph_url` (and `login_url`) with the emulator's tenant and client.
fn write_config(dir: &Path, graph_url: &str, login_url: &str, extra: &str) -> PathBuf {
    let text = format!(
        "[graph]\ntenant_id = \"{}\"\nclient_id = \"{}\"\ngraph_url = \"{graph_url}\"\nlogin_url = \"{login_url}\"\n{extra}\n",
        emulator::DEFAULT_TENANT_ID,
        emulator::DEFAULT_CLIENT_ID,
    );
    let path = dir.join("etl.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `export` at the highest verbosity on a blocking thread (the emulator and mock
/// servers keep serving on the test's runtime meanwhile).
async fn export_at_trace(config: &Path, out: &Path, env: &[(&str, &str)]) -> Output {
    let mut command = support::binary();
    command
        .env("RUST_LOG", "trace")
        .envs(env.iter().copied())
        .args([
            "export",
            "-vv",
            "--config",
            config.to_str().unwrap(),
            "--from",
            &days_ago(3),
            "--to",
            &days_ago(2),
            "--out",
            out.to_str().unwrap(),
        ]);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

/// Everything a run left behind as text: its output, then every file under `out` (raw,
/// which covers Parquet footers and statistics, plus every Parquet cell decoded, because
/// column pages are compressed).
fn everything(output: &Output, out: &Path) -> Vec<(String, String)> {
    let mut texts = vec![
        (
            "stdout".to_string(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        ),
        (
            "stderr".to_string(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ),
    ];
    for file in files_under(out) {
        let bytes = std::fs::read(&file).unwrap();
        texts.push((
            file.display().to_string(),
            String::from_utf8_lossy(&bytes).into_owned(),
        ));
    }
    for table in callrecords_etl::schema::tables() {
        let rows = support::read_table(out, &table.table);
        assert!(!rows.is_empty(), "{} has rows to search", table.table);
        texts.push((
            format!("cells of {}", table.table),
            serde_json::to_string(&rows).unwrap(),
        ));
    }
    texts
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Fails naming the place and the needle when any needle, or anything that looks like an
/// emulator token (its prefix and 8+ hex digits), is in any text.
fn assert_nothing_leaked(texts: &[(String, String)], needles: &[String]) {
    for (place, text) in texts {
        let found = leaks(text, needles);
        assert!(found.is_empty(), "{place} contains {found:?}");
        let token_like = text.match_indices(TOKEN_PREFIX).any(|(at, _)| {
            text[at + TOKEN_PREFIX.len()..]
                .bytes()
                .take_while(u8::is_ascii_hexdigit)
                .count()
                >= 8
        });
        assert!(!token_like, "{place} contains an access token");
        for header in ["Bearer ", "client_secret=", "client_assertion="] {
            assert!(!text.contains(header), "{place} contains {header:?}");
        }
    }
}

/// No file or folder the export wrote is open to other users.
fn assert_closed_to_others(out: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut checked = 0;
    let mut pending = vec![out.to_path_buf()];
    while let Some(path) = pending.pop() {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o007, 0, "{} has mode {mode:o}", path.display());
        checked += 1;
        if path.is_dir() {
            pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
    let parquet = files_under(out)
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "parquet"))
        .count();
    assert!(
        parquet >= 8 && checked > parquet,
        "Parquet files and the manifest were checked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_level_export_with_a_client_secret_prints_and_writes_no_secret_or_token() {
    let secret = format!("canary-secret-{}", uuid::Uuid::new_v4().simple());
    let emulator = start_emulator(&secret).await;
    emulator_token(&emulator).await;
    let dir = tempfile::tempdir().unwrap();
    let base = emulator.base_url();
    // The beta API adds the beta-only log tables, so every table is searched.
    let config = write_config(dir.path(), &base, &base, "api_version = \"beta\"");
    let out = dir.path().join("lake");

    let output = export_at_trace(&config, &out, &[("CALLRECORDS_CLIENT_SECRET", &secret)]).await;

    assert!(output.status.success(), "{}", stderr(&output));
    let log = stderr(&output);
    assert!(
        log.contains("TRACE") && log.contains("DEBUG"),
        "the run logged at trace level"
    );
    let token_requests = emulator
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/oauth2/v2.0/token") && r.status == 200)
        .count();
    assert!(token_requests >= 1, "the emulator issued a token");
    assert_nothing_leaked(&everything(&output, &out), &[secret]);
    assert_closed_to_others(&out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_level_export_with_a_certificate_prints_and_writes_no_assertion_key_or_token() {
    let emulator = start_emulator(emulator::DEFAULT_CLIENT_SECRET).await;
    let base = emulator.base_url();
    // A real emulator token, handed out by a token endpoint that insists on a valid
    // assertion: the emulator itself only knows client secrets.
    let access_token = emulator_token(&emulator).await;
    let login = MockServer::start().await;
    let certificate = Arc::new(TestCertificate::new());
    let endpoint = AssertionEndpoint {
        certificate: Some(certificate.clone()),
        audience: format!(
            "{}/{}/oauth2/v2.0/token",
            login.uri(),
            emulator::DEFAULT_TENANT_ID
        ),
        client_id: emulator::DEFAULT_CLIENT_ID.into(),
        access_token: access_token.clone(),
        seen: Default::default(),
    };
    Mock::given(method("POST"))
        .respond_with(endpoint.clone())
        .mount(&login)
        .await;
    let dir = tempfile::tempdir().unwrap();
    write_private(dir.path(), "app.pem", certificate.combined_pem().as_bytes());
    let config = write_config(
        dir.path(),
        &base,
        &login.uri(),
        "client_certificate_file = \"app.pem\"\napi_version = \"beta\"",
    );
    let out = dir.path().join("lake");

    let output = export_at_trace(&config, &out, &[]).await;

    assert!(output.status.success(), "{}", stderr(&output));
    let assertions = endpoint.assertions();
    assert!(!assertions.is_empty(), "the binary sent an assertion");
    let mut needles = vec![access_token];
    for assertion in &assertions {
        needles.push(assertion.clone());
        // Each part on its own too: the signature is the secret part.
        needles.extend(assertion.split('.').map(str::to_owned));
    }
    needles.extend(certificate.key_lines());
    assert_nothing_leaked(&everything(&output, &out), &needles);
    assert_closed_to_others(&out);
}

/// Graph on `graph` lists one page whose nextLink points at `next`.
async fn export_following(next: &str, graph: &MockServer) -> Output {
    Mock::given(method("POST"))
        .and(path(format!(
            "/{}/oauth2/v2.0/token",
            emulator::DEFAULT_TENANT_ID
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"token_type": "Bearer", "expires_in": 3599, "access_token": "tok-home"}),
        ))
        .mount(graph)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/communications/callRecords"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"value": [], "@odata.nextLink": next})),
        )
        .mount(graph)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &graph.uri(), &graph.uri(), "");
    export_at_trace(
        &config,
        &dir.path().join("lake"),
        &[("CALLRECORDS_CLIENT_SECRET", "s")],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_link_to_another_origin_is_refused_and_gets_nothing() {
    let graph = MockServer::start().await;
    let foreign = MockServer::start().await;
    let foreign_port = foreign.address().port();
    let graph_port = graph.address().port();
    let page = "v1.0/communications/callRecords?$skiptoken=abc";
    for (next, host) in [
        // Another host (same port as nothing: localhost is not 127.0.0.1 by name).
        (
            format!("http://localhost:{foreign_port}/{page}"),
            "localhost",
        ),
        // Another port on the same host.
        (
            format!("http://127.0.0.1:{foreign_port}/{page}"),
            "127.0.0.1",
        ),
        // Another scheme on the same host and port.
        (
            format!("https://127.0.0.1:{graph_port}/{page}"),
            "127.0.0.1",
        ),
    ] {
        graph.reset().await;
        let output = export_following(&next, &graph).await;

        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        let log = stderr(&output);
        assert!(
            log.contains(&format!("refused to send a Graph request to host {host}"))
                && log.contains(&next),
            "{next}: {log}"
        );
        assert!(!log.contains("tok-home"));
    }
    assert!(foreign.received_requests().await.unwrap().is_empty());
}

/// A Graph on wiremock whose access token is `token` (a JWT, as Entra ID issues), listing
/// one call record of the day [`export_at_trace`] exports.
async fn graph_with_token(token: &str) -> MockServer {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!(
            "/{}/oauth2/v2.0/token",
            emulator::DEFAULT_TENANT_ID
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"token_type": "Bearer", "expires_in": 3599, "access_token": token}),
        ))
        .mount(&graph)
        .await;
    graph
}

fn listed(id: &str) -> serde_json::Value {
    let start = format!("{}T10:00:00Z", days_ago(3));
    json!({"id": id, "version": 1, "type": "peerToPeer", "modalities": ["audio"],
        "startDateTime": start, "endDateTime": start, "lastModifiedDateTime": start})
}

/// What a broken proxy or a debugging gateway might answer: the request's token echoed as
/// a header, as a JSON member, and bare.
fn echo(token: &str) -> String {
    format!(
        "{{\"error\": {{\"code\": \"InvalidAuthenticationToken\", \"message\": \
         \"Authorization: Bearer {token}\", \"access_token\": \"{token}\", \
         \"detail\": \"token {token} refused\""
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_body_that_echoes_the_token_is_redacted_from_logs_manifest_and_quarantine() {
    let token = format!(
        "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJhdWQiOiJncmFwaCIsIm5vbmNlIjoi{}.c2ln{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    // A record whose detail is an unreadable echo (cut JSON): quarantined, exit 3.
    let graph = graph_with_token(&token).await;
    Mock::given(method("GET"))
        .and(path("/v1.0/communications/callRecords"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"value": [listed("echoed")]})),
        )
        .mount(&graph)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/communications/callRecords/echoed"))
        .respond_with(ResponseTemplate::new(200).set_body_string(echo(&token)))
        .mount(&graph)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &graph.uri(), &graph.uri(), "");
    let out = dir.path().join("lake");
    let output = export_call_records(&config, &out, "text").await;

    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    let mut texts = vec![("stderr".to_string(), stderr(&output))];
    let files = files_under(&out);
    let quarantine = files.iter().find(|f| f.ends_with("call_records.jsonl"));
    let quarantine = std::fs::read_to_string(quarantine.expect("a quarantine file")).unwrap();
    assert!(
        quarantine.contains("InvalidAuthenticationToken") && quarantine.contains("[redacted]"),
        "the body is kept, redacted: {quarantine}"
    );
    for file in files {
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
        texts.push((file.display().to_string(), text));
    }
    assert_no_token(&texts, &token);

    // Graph refusing the list with the echo: the run fails (exit 1), logging as JSON.
    let graph = graph_with_token(&token).await;
    Mock::given(method("GET"))
        .and(path("/v1.0/communications/callRecords"))
        .respond_with(ResponseTemplate::new(403).set_body_string(echo(&token)))
        .mount(&graph)
        .await;
    let config = write_config(dir.path(), &graph.uri(), &graph.uri(), "");
    let output = export_call_records(&config, &dir.path().join("lake2"), "json").await;

    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let log = stderr(&output);
    assert!(
        log.contains("HTTP 403") || log.contains("access denied"),
        "{log}"
    );
    assert!(log.contains("\"level\":\"ERROR\""), "JSON logs: {log}");
    assert_no_token(&[("JSON stderr".into(), log)], &token);
}

/// `export --streams call_records` of the day of [`listed`] at trace level, logging in
/// `format`.
async fn export_call_records(config: &Path, out: &Path, format: &str) -> Output {
    let mut command = support::binary();
    command
        .env("CALLRECORDS_CLIENT_SECRET", "s")
        .env("RUST_LOG", "trace")
        .args([
            "--log-format",
            format,
            "-vv",
            "export",
            "--streams",
            "call_records",
        ])
        .arg("--config")
        .arg(config)
        .args(["--from", &days_ago(3), "--to", &days_ago(2), "--out"])
        .arg(out);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

/// Neither the payload nor the signature of the JWT `token` (nor a `Bearer` header value)
/// is in any text; its header is the same in every token, and no secret.
fn assert_no_token(texts: &[(String, String)], token: &str) {
    let parts: Vec<String> = token.split('.').skip(1).map(str::to_owned).collect();
    for (place, text) in texts {
        let found = leaks(text, &parts);
        assert!(found.is_empty(), "{place} contains {found:?}: {text}");
        assert!(
            !text.contains("Bearer e"),
            "{place} contains a bearer token: {text}"
        );
    }
}
