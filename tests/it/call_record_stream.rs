//! Tests of the call-record stream against a loopback wiremock Graph: the window filter,
//! list paging, complete-record assembly from session and participant pages, 404 handling
//! and the paging loop guard.

use std::time::Duration;

use callrecords_etl::graph::{ClientSettings, GraphClient, GraphError, Secret};
use callrecords_etl::streams::call_records;
use futures::TryStreamExt;
use serde_json::{Value, json};

use crate::support::at;
use wiremock::matchers::{method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TENANT: &str = "contoso";
const ID: &str = "e523d2ed-2966-4b6b-925b-754a88034cc5";
const LIST: &str = "/v1.0/communications/callRecords";

async fn graph() -> (MockServer, GraphClient) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/{TENANT}/oauth2/v2.0/token")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": "tok", "expires_in": 3599})),
        )
        .mount(&server)
        .await;
    let mut settings = ClientSettings::new(
        server.uri().parse().unwrap(),
        server.uri().parse().unwrap(),
        TENANT.into(),
        "client".into(),
        Secret::new("secret".into()),
    );
    settings.backoff_base = Duration::from_millis(10);
    settings.request_timeout = Duration::from_secs(5);
    (server, GraphClient::new(settings).unwrap())
}

fn ok(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(body)
}

fn items(prefix: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({ "id": format!("{prefix}-{i}"), "unknownFutureProperty": i }))
        .collect()
}

fn ids(values: &[Value]) -> Vec<String> {
    values
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect()
}

/// `GET {LIST}` pages: the first has no `$skiptoken`, the others answer `$skiptoken={token}`.
async fn mount_page(server: &MockServer, route: &str, token: Option<&str>, body: Value) {
    let mock = Mock::given(method("GET")).and(path(route));
    let mock = match token {
        Some(token) => mock.and(query_param("$skiptoken", token)),
        None => mock.and(query_param_is_missing("$skiptoken")),
    };
    mock.respond_with(ok(body)).mount(server).await;
}

fn link(server: &MockServer, route: &str, token: &str) -> String {
    format!("{}{route}?$skiptoken={token}", server.uri())
}

#[tokio::test]
async fn list_follows_next_links_and_filters_the_window() {
    let (server, client) = graph().await;
    let first = json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#communications/callRecords",
        "value": [{"id": "r1", "version": 1}, {"id": "r2", "version": 3}],
        "@odata.nextLink": link(&server, LIST, "p2"),
    });
    mount_page(&server, LIST, None, first).await;
    mount_page(
        &server,
        LIST,
        Some("p2"),
        json!({"value": [{"id": "r3"}, {"id": "r4"}, {"id": "r5"}], "@odata.nextLink": link(&server, LIST, "p3")}),
    )
    .await;
    mount_page(&server, LIST, Some("p3"), json!({"value": [{"id": "r6"}]})).await;

    let pages: Vec<Vec<Value>> = call_records::list(
        &client,
        at("2026-11-20T00:00:00Z"),
        at("2026-11-21T00:00:00Z"),
    )
    .try_collect()
    .await
    .unwrap();

    let all: Vec<Value> = pages.concat();
    assert_eq!(pages.len(), 3);
    assert_eq!(ids(&all), ["r1", "r2", "r3", "r4", "r5", "r6"]);
    assert_eq!(all[1]["version"], 3, "items are passed through as sent");

    let received = server.received_requests().await.unwrap();
    let list_requests: Vec<_> = received.iter().filter(|r| r.url.path() == LIST).collect();
    assert_eq!(list_requests.len(), 3);
    let first_url = &list_requests[0].url;
    let filter: Vec<_> = first_url
        .query_pairs()
        .filter(|(k, _)| k == "$filter")
        .map(|(_, v)| v.into_owned())
        .collect();
    assert_eq!(
        filter,
        ["startDateTime ge 2026-11-20T00:00:00Z and startDateTime lt 2026-11-21T00:00:00Z"]
    );
    assert!(
        first_url.query().unwrap().contains("%20ge%20"),
        "spaces percent-encoded: {first_url}"
    );
}

#[tokio::test]
async fn fetch_record_merges_all_session_and_participant_pages() {
    let (server, client) = graph().await;
    let record = format!("{LIST}/{ID}");
    let sessions = format!("{record}/sessions");
    let participants = format!("{record}/participants_v2");
    Mock::given(method("GET"))
        .and(path(&record))
        .and(query_param("$expand", "sessions($expand=segments)"))
        .respond_with(ok(json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#communications/callRecords(sessions(segments()))/$entity",
            "id": ID,
            "version": 2,
            "futureTopLevelProperty": {"kept": true},
            "organizer_v2@odata.context": "kept: not a merged collection",
            "participants_v2@odata.context": "https://graph.microsoft.com/v1.0/$metadata#participants_v2",
            "sessions@odata.context": "https://graph.microsoft.com/v1.0/$metadata#sessions",
            "sessions": items("s", 60),
            "sessions@odata.nextLink": format!("{}{sessions}?$expand=segments&$skiptoken=p2", server.uri()),
        })))
        .expect(1)
        .mount(&server)
        .await;
    mount_page(
        &server,
        &sessions,
        Some("p2"),
        json!({"@odata.context": "ctx", "value": items("s2", 5)}),
    )
    .await;
    mount_page(
        &server,
        &participants,
        None,
        json!({
            "@odata.context": "ctx",
            "value": items("p", 130),
            "@odata.nextLink": link(&server, &participants, "p2"),
        }),
    )
    .await;
    mount_page(
        &server,
        &participants,
        Some("p2"),
        json!({"value": items("p2", 3)}),
    )
    .await;

    let text = call_records::fetch_record(&client, ID)
        .await
        .unwrap()
        .unwrap();
    assert!(!text.contains('\n'), "one raw-zone line: {text}");
    let record: Value = serde_json::from_str(&text).unwrap();

    let sessions = record["sessions"].as_array().unwrap();
    let participants = record["participants_v2"].as_array().unwrap();
    assert_eq!(sessions.len(), 65);
    assert_eq!(participants.len(), 133);
    assert_eq!(ids(&sessions[58..62]), ["s-58", "s-59", "s2-0", "s2-1"]);
    assert_eq!(ids(&participants[129..131]), ["p-129", "p2-0"]);
    assert_eq!(sessions[64]["unknownFutureProperty"], 4);
    let object = record.as_object().unwrap();
    for removed in [
        "sessions@odata.nextLink",
        "sessions@odata.context",
        "participants_v2@odata.context",
        "participants_v2@odata.nextLink",
    ] {
        assert!(!object.contains_key(removed), "{removed} should be removed");
    }
    assert_eq!(record["futureTopLevelProperty"], json!({"kept": true}));
    assert_eq!(
        record["organizer_v2@odata.context"],
        "kept: not a merged collection"
    );
    assert_eq!(record["version"], 2);
    assert!(object.contains_key("@odata.context"));
}

#[tokio::test]
async fn fetch_record_without_session_paging_still_lists_participants() {
    let (server, client) = graph().await;
    let record = format!("{LIST}/{ID}");
    Mock::given(method("GET"))
        .and(path(&record))
        .respond_with(ok(json!({"id": ID, "sessions": items("s", 2)})))
        .mount(&server)
        .await;
    mount_page(
        &server,
        &format!("{record}/participants_v2"),
        None,
        json!({"value": []}),
    )
    .await;

    let text = call_records::fetch_record(&client, ID)
        .await
        .unwrap()
        .unwrap();
    assert!(!text.contains('\n'), "one raw-zone line: {text}");
    let record: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(record["sessions"].as_array().unwrap().len(), 2);
    assert_eq!(record["participants_v2"], json!([]));
}

/// Pretty-printed responses (line breaks between tokens) still make one raw-zone line;
/// items sent compactly are kept as sent, escapes included.
#[tokio::test]
async fn fetch_record_of_pretty_printed_pages_is_one_line() {
    let (server, client) = graph().await;
    let record = format!("{LIST}/{ID}");
    let details = json!({"id": ID, "sessions": items("s", 2), "sessions@odata.nextLink": link(&server, &format!("{record}/sessions"), "p2")});
    Mock::given(method("GET"))
        .and(path(&record))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string(serde_json::to_string_pretty(&details).unwrap())
                .insert_header("content-type", "application/json"),
        )
        .mount(&server)
        .await;
    mount_page(
        &server,
        &format!("{record}/sessions"),
        Some("p2"),
        json!({"value": items("s2", 1)}),
    )
    .await;
    Mock::given(method("GET"))
        .and(path(format!("{record}/participants_v2")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string(r#"{"value": [{"id":"p-0","displayName":"Ren\u00e9e"}]}"#)
                .insert_header("content-type", "application/json"),
        )
        .mount(&server)
        .await;

    let text = call_records::fetch_record(&client, ID)
        .await
        .unwrap()
        .unwrap();
    assert!(!text.contains('\n'), "one raw-zone line: {text}");
    assert!(
        text.contains(r#"{"id":"p-0","displayName":"Ren\u00e9e"}"#),
        "{text}"
    );
    let record: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        ids(record["sessions"].as_array().unwrap()),
        ["s-0", "s-1", "s2-0"]
    );
    assert_eq!(record["participants_v2"][0]["displayName"], "Renée");
    assert!(record.get("sessions@odata.nextLink").is_none());
}

#[tokio::test]
async fn fetch_record_is_none_on_404() {
    let (server, client) = graph().await;
    Mock::given(method("GET"))
        .and(path(format!("{LIST}/{ID}")))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "error": {"code": "NotFound", "message": "CallRecord not found"}
        })))
        .expect(1)
        .mount(&server)
        .await;

    assert_eq!(call_records::fetch_record(&client, ID).await.unwrap(), None);
    assert_eq!(client.stats().not_found, 1);
}

#[tokio::test]
async fn a_repeated_next_link_is_an_error_not_a_loop() {
    let (server, client) = graph().await;
    mount_page(
        &server,
        LIST,
        None,
        json!({"value": [{"id": "r1"}], "@odata.nextLink": link(&server, LIST, "again")}),
    )
    .await;
    // This page links to itself.
    mount_page(
        &server,
        LIST,
        Some("again"),
        json!({"value": [{"id": "r2"}], "@odata.nextLink": link(&server, LIST, "again")}),
    )
    .await;

    let stream = call_records::list(
        &client,
        at("2026-11-20T00:00:00Z"),
        at("2026-11-21T00:00:00Z"),
    );
    let result = tokio::time::timeout(Duration::from_secs(10), stream.try_collect::<Vec<_>>())
        .await
        .expect("paging must stop");

    let error = result.unwrap_err();
    assert!(matches!(error, GraphError::Decode { .. }), "{error:?}");
    assert!(error.to_string().contains("paging loop"), "{error}");
    assert_eq!(client.stats().requests, 2);
}

#[tokio::test]
async fn a_next_link_to_another_origin_is_refused() {
    let (server, client) = graph().await;
    let foreign = MockServer::start().await;
    mount_page(
        &server,
        LIST,
        None,
        json!({"value": [{"id": "r1"}], "@odata.nextLink": link(&foreign, LIST, "p2")}),
    )
    .await;

    let mut stream = Box::pin(call_records::list(
        &client,
        at("2026-11-20T00:00:00Z"),
        at("2026-11-21T00:00:00Z"),
    ));
    assert_eq!(ids(&stream.try_next().await.unwrap().unwrap()), ["r1"]);
    let error = stream.try_next().await.unwrap_err();
    assert!(
        matches!(error, GraphError::ForeignOrigin { .. }),
        "{error:?}"
    );
    assert!(foreign.received_requests().await.unwrap().is_empty());
}
