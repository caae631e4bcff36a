//! End-to-end tests of the embedded Microsoft Graph emulator: real HTTP (reqwest) against
//! `emulator::start` on 127.0.0.1:0, compared with the synthetic `Tenant` directly.
//! Reads the shared Graph type model so the coverage test cannot drift from it.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use callrecords_emulator::{self as emulator, EmulatorConfig, RunningEmulator, Tenant};
use chrono::{DateTime, Utc};
use reqwest::{Client, StatusCode, Url};
use serde_json::Value;

use crate::support::{self, at};

const MODEL_PATH: &str = "/work/shared/graph-model/callrecords-model.json";
const DAY_FILTER: &str =
    "startDateTime ge 2026-11-20T00:00:00Z and startDateTime lt 2026-11-21T00:00:00Z";

async fn start_default() -> RunningEmulator {
    support::start_emulator(EmulatorConfig::default()).await
}

async fn request_token(
    emulator: &RunningEmulator,
    tenant: &str,
    client_id: &str,
    secret: &str,
) -> (StatusCode, Value) {
    let scope = format!("{}/.default", emulator.base_url());
    support::request_token(
        &Client::new(),
        emulator,
        [tenant, client_id, secret],
        &scope,
    )
    .await
    .expect("token answered")
}

async fn get(url: impl reqwest::IntoUrl, token: &str) -> (StatusCode, Value) {
    let response = Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

async fn get_ok(url: impl reqwest::IntoUrl, token: &str) -> Value {
    let (status, body) = get(url, token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn list_url(emulator: &RunningEmulator, filter: &str) -> Url {
    Url::parse_with_params(
        &format!("{}/v1.0/communications/callRecords", emulator.base_url()),
        &[("$filter", filter)],
    )
    .unwrap()
}

/// Follows `@odata.nextLink` verbatim from `first`, returning the pages' items and page sizes.
async fn collect_pages(first: Value, token: &str) -> (Vec<Value>, Vec<usize>) {
    let mut items = Vec::new();
    let mut sizes = Vec::new();
    let mut body = first;
    loop {
        let value = body["value"].as_array().unwrap();
        sizes.push(value.len());
        items.extend(value.iter().cloned());
        match body["@odata.nextLink"].as_str() {
            Some(link) => body = get_ok(link, token).await,
            None => return (items, sizes),
        }
    }
}

fn without_annotations(mut item: Value) -> Value {
    item.as_object_mut()
        .unwrap()
        .retain(|key, _| !key.contains("@odata."));
    item
}

fn large_meeting_id(tenant: &Tenant) -> String {
    let day = tenant.list(at("2026-11-20T00:00:00Z"), at("2026-11-21T00:00:00Z"));
    // Call 0 of every day is the large meeting; its id carries index 0000.
    day.iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .find(|id| &id[9..13] == "0000")
        .expect("the day has its large meeting")
}

#[tokio::test]
async fn token_endpoint_issues_tokens_and_rejects_bad_credentials() {
    let emulator = start_default().await;
    let config = emulator.config().clone();

    let (status, body) = request_token(
        &emulator,
        &config.tenant_id,
        &config.client_id,
        &config.client_secret,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(body["access_token"].as_str().unwrap().len() > 20);

    let (status, body) =
        request_token(&emulator, &config.tenant_id, &config.client_id, "wrong").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS7000215")
    );

    let (status, body) = request_token(
        &emulator,
        "someone-else",
        &config.client_id,
        &config.client_secret,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_request");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS90002")
    );

    let (status, body) = request_token(
        &emulator,
        &config.tenant_id,
        "unknown-app",
        &config.client_secret,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "unauthorized_client");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS700016")
    );

    let (status, body) = support::request_token(
        &Client::new(),
        &emulator,
        support::app_credentials(&emulator),
        "https://graph.microsoft.com/CallRecords.Read.All",
    )
    .await
    .expect("token answered");
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_scope");
}

#[tokio::test]
async fn graph_requires_a_valid_unexpired_token() {
    let config = EmulatorConfig {
        token_lifetime: Duration::from_secs(1),
        ..EmulatorConfig::default()
    };
    let emulator = support::start_emulator(config).await;
    let url = list_url(&emulator, DAY_FILTER);

    let response = Client::new().get(url.clone()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");

    let (status, body) = get(url.clone(), "not-a-token").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");

    let token = support::emulator_token(&emulator).await;
    assert_eq!(get(url.clone(), &token).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (status, body) = get(url, &token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body["error"]["message"],
        "Access token has expired or is not yet valid."
    );
}

#[tokio::test]
async fn list_pages_through_a_window_exactly_once_in_order() {
    let emulator = start_default().await;
    let token = support::emulator_token(&emulator).await;
    let first = get_ok(list_url(&emulator, DAY_FILTER), &token).await;
    assert_eq!(
        first["@odata.context"],
        format!(
            "{}/v1.0/$metadata#communications/callRecords",
            emulator.base_url()
        )
    );
    assert!(
        first["@odata.nextLink"]
            .as_str()
            .unwrap()
            .starts_with(&emulator.base_url())
    );
    let (items, sizes) = collect_pages(first, &token).await;
    assert_eq!(sizes, vec![60, 60, 60, 20]);

    let starts: Vec<DateTime<Utc>> = items
        .iter()
        .map(|item| at(item["startDateTime"].as_str().unwrap()))
        .collect();
    assert!(
        starts.iter().all(
            |start| at("2026-11-20T00:00:00Z") <= *start && *start < at("2026-11-21T00:00:00Z")
        )
    );
    assert!(
        starts.windows(2).all(|pair| pair[0] <= pair[1]),
        "sorted by startDateTime"
    );
    let ids: HashSet<&str> = items
        .iter()
        .map(|item| item["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), items.len(), "each call exactly once");
    for item in &items {
        assert!(
            item["organizer_v2@odata.context"]
                .as_str()
                .unwrap()
                .contains("/organizer_v2/$entity")
        );
        assert!(item.get("sessions").is_none() && item.get("participants_v2").is_none());
    }

    let tenant = Tenant::new(42, 200);
    let expected = tenant.list(at("2026-11-20T00:00:00Z"), at("2026-11-21T00:00:00Z"));
    let served: Vec<Value> = items.into_iter().map(without_annotations).collect();
    assert_eq!(served, expected);
}

#[tokio::test]
async fn list_honours_max_page_size_offsets_and_strict_operators() {
    let emulator = start_default().await;
    let token = support::emulator_token(&emulator).await;
    // An offset literal, gt/le and a window across a day boundary.
    let filter =
        "startDateTime gt 2026-11-20T20:00:00.5+02:00 and startDateTime le 2026-11-21T03:00:00Z";
    let response = Client::new()
        .get(list_url(&emulator, filter))
        .bearer_auth(&token)
        .header("Prefer", "odata.maxpagesize=7")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["preference-applied"],
        "odata.maxpagesize=7"
    );
    let first: Value = response.json().await.unwrap();
    assert_eq!(first["value"].as_array().unwrap().len(), 7);
    let mut items = first["value"].as_array().unwrap().clone();
    let mut next = first["@odata.nextLink"].as_str().map(str::to_owned);
    while let Some(link) = next {
        let body: Value = Client::new()
            .get(&link)
            .bearer_auth(&token)
            .header("Prefer", "odata.maxpagesize=7")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(body["value"].as_array().unwrap().len() <= 7);
        items.extend(body["value"].as_array().unwrap().iter().cloned());
        next = body["@odata.nextLink"].as_str().map(str::to_owned);
    }
    let expected = Tenant::new(42, 200).list(
        at("2026-11-20T18:00:00.5000001Z"),
        at("2026-11-21T03:00:00.000000001Z"),
    );
    assert!(!expected.is_empty());
    assert_eq!(
        items
            .into_iter()
            .map(without_annotations)
            .collect::<Vec<_>>(),
        expected
    );

    for bad in [
        "endDateTime ge 2026-11-20T00:00:00Z",
        "startDateTime eq 2026-11-20T00:00:00Z",
        "startDateTime ge 2026-11-20",
        "participants_v2/any(p:p/id eq '821809f5-0000-0000-0000-3b5136c0e777')",
    ] {
        let (status, body) = get(list_url(&emulator, bad), &token).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(body["error"]["code"], "BadRequest");
    }
    let garbage = format!(
        "{}/v1.0/communications/callRecords?$skiptoken=garbage",
        emulator.base_url()
    );
    assert_eq!(
        get(garbage.as_str(), &token).await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn unfiltered_list_covers_the_last_thirty_days() {
    let config = EmulatorConfig {
        calls_per_day: 3,
        ..EmulatorConfig::default()
    };
    let emulator = support::start_emulator(config).await;
    let token = support::emulator_token(&emulator).await;
    let url = format!("{}/beta/communications/callRecords", emulator.base_url());
    let (items, _) = collect_pages(get_ok(url.as_str(), &token).await, &token).await;
    let now = Utc::now();
    assert!(
        (88..=93).contains(&items.len()),
        "about 30 days x 3 calls, got {}",
        items.len()
    );
    for item in &items {
        let start = at(item["startDateTime"].as_str().unwrap());
        assert!(start < now && start >= now - chrono::TimeDelta::days(30));
    }
}

#[tokio::test]
async fn large_meeting_sessions_and_participants_page_like_graph() {
    let emulator = start_default().await;
    let token = support::emulator_token(&emulator).await;
    let tenant = Tenant::new(42, 200);
    let id = large_meeting_id(&tenant);
    let record = tenant.record(&id).unwrap();
    let all_sessions = record["sessions"].as_array().unwrap();
    let all_participants = record["participants_v2"].as_array().unwrap();
    assert!(all_sessions.len() > 60 && all_participants.len() > 130);
    let record_url = format!(
        "{}/v1.0/communications/callRecords/{id}",
        emulator.base_url()
    );

    let plain = get_ok(record_url.as_str(), &token).await;
    assert!(plain.get("sessions").is_none() && plain.get("participants_v2").is_none());
    assert_eq!(plain["organizer_v2"], record["organizer_v2"]);
    assert!(plain["organizer_v2@odata.context"].is_string());

    let expanded = get_ok(
        format!("{record_url}?$expand=sessions($expand=segments)").as_str(),
        &token,
    )
    .await;
    let mut sessions = expanded["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 60);
    let next = expanded["sessions@odata.nextLink"].as_str().unwrap();
    assert!(next.starts_with(&format!(
        "{record_url}/sessions?$expand=segments&$skiptoken="
    )));
    let (rest, sizes) = collect_pages(get_ok(next, &token).await, &token).await;
    assert!(sizes.iter().all(|size| *size <= 60));
    sessions.extend(rest);
    assert_eq!(&sessions, all_sessions);

    let expanded = get_ok(
        format!("{record_url}?$expand=participants_v2").as_str(),
        &token,
    )
    .await;
    let mut participants = expanded["participants_v2"].as_array().unwrap().clone();
    assert_eq!(participants.len(), 130);
    let next = expanded["participants_v2@odata.nextLink"].as_str().unwrap();
    assert!(next.starts_with(&format!("{record_url}/participants_v2?$skiptoken=")));
    let (rest, sizes) = collect_pages(get_ok(next, &token).await, &token).await;
    assert!(sizes.iter().all(|size| *size <= 130));
    participants.extend(rest);
    assert_eq!(&participants, all_participants);

    // Sessions without segments, both from $expand and from the collection.
    let expanded = get_ok(format!("{record_url}?$expand=sessions").as_str(), &token).await;
    assert!(expanded["sessions"][0].get("segments").is_none());
    let listed = get_ok(format!("{record_url}/sessions").as_str(), &token).await;
    assert_eq!(listed["value"].as_array().unwrap().len(), 60);
    assert!(listed["value"][0].get("segments").is_none());
    assert!(
        !listed["@odata.nextLink"]
            .as_str()
            .unwrap()
            .contains("$expand")
    );

    // A skip token of one collection is no good for another.
    let token_of_sessions = next.split("$skiptoken=").nth(1).unwrap();
    let misused = format!("{record_url}/sessions?$skiptoken={token_of_sessions}");
    assert_eq!(
        get(misused.as_str(), &token).await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn get_rejects_double_expansion_unknown_ids_and_routes() {
    let emulator = start_default().await;
    let token = support::emulator_token(&emulator).await;
    let id = large_meeting_id(&Tenant::new(42, 200));
    let base = format!("{}/v1.0/communications/callRecords", emulator.base_url());

    let (status, body) = get(
        format!("{base}/{id}?$expand=sessions($expand=segments),participants_v2").as_str(),
        &token,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "BadRequest");

    for unknown in [
        "e523d2ed-2966-4b6b-925b-754a88034cc5",
        "not-a-guid",
        &id.replace('-', ""),
    ] {
        let (status, body) = get(format!("{base}/{unknown}").as_str(), &token).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{unknown}");
        assert_eq!(body["error"]["code"], "NotFound");
    }
    let (status, _) = get(
        format!("{base}/e523d2ed-2966-4b6b-925b-754a88034cc5/sessions").as_str(),
        &token,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, body) = get(
        format!("{}/v1.0/me/events", emulator.base_url()).as_str(),
        &token,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "NotFound");

    let response = Client::new()
        .delete(format!("{base}/{id}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"]["code"],
        "BadRequest"
    );
}

#[tokio::test]
async fn requests_are_recorded_and_shutdown_stops_the_server() {
    let emulator = start_default().await;
    let token = support::emulator_token(&emulator).await;
    get_ok(list_url(&emulator, DAY_FILTER), &token).await;
    let requests = emulator.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[1].path, "/v1.0/communications/callRecords");
    assert!(requests[1].query.as_deref().unwrap().contains("filter"));
    assert_eq!(requests[1].status, 200);

    // A client holding a keep-alive connection must not stall the graceful shutdown.
    let keep_alive = Client::new();
    let url = list_url(&emulator, DAY_FILTER);
    let status = keep_alive
        .get(url.clone())
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::OK);
    let started = std::time::Instant::now();
    emulator.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "shutdown took {:?}",
        started.elapsed()
    );
    assert!(Client::new().get(url).send().await.is_err());
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    let emulator = start_default().await;
    let url = list_url(&emulator, DAY_FILTER);
    drop(emulator);
    tokio::task::yield_now().await;
    assert!(Client::new().get(url).send().await.is_err());
}

#[tokio::test]
async fn non_loopback_listen_addresses_are_refused() {
    for address in ["0.0.0.0:0", "192.0.2.10:8080", "[::]:0"] {
        let error = emulator::start(EmulatorConfig::default(), address.parse().unwrap())
            .await
            .err()
            .unwrap_or_else(|| panic!("{address} must be refused"));
        assert!(error.to_string().contains("loopback"), "{error}");
    }
}

#[test]
fn tenant_is_deterministic_per_seed() {
    let (from, to) = (at("2026-11-20T00:00:00Z"), at("2026-11-21T00:00:00Z"));
    let first = Tenant::new(42, 200).list(from, to);
    let again = Tenant::new(42, 200).list(from, to);
    assert_eq!(first.len(), 200);
    assert_eq!(first, again);
    let id = first[17]["id"].as_str().unwrap();
    assert_eq!(
        Tenant::new(42, 200).record(id),
        Tenant::new(42, 200).record(id)
    );
    assert_ne!(Tenant::new(7, 200).list(from, to), first);
    assert_eq!(
        Tenant::new(7, 200).record(id),
        None,
        "ids belong to their seed"
    );
}

/// Every key found anywhere in a JSON value, with whether some occurrence is non-null.
fn collect_keys(value: &Value, keys: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                if !child.is_null() {
                    keys.insert(key.clone());
                }
                collect_keys(child, keys);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_keys(item, keys)),
        _ => {}
    }
}

#[test]
fn one_day_covers_every_model_property() {
    let model: Value = serde_json::from_str(&std::fs::read_to_string(MODEL_PATH).unwrap()).unwrap();
    let tenant = Tenant::new(42, 200);
    let started = std::time::Instant::now();
    let day = tenant.list(at("2026-11-20T00:00:00Z"), at("2026-11-21T00:00:00Z"));
    let records: Vec<Value> = day
        .iter()
        .map(|item| tenant.record(item["id"].as_str().unwrap()).unwrap())
        .collect();
    let elapsed = started.elapsed();
    let bytes: usize = records
        .iter()
        .map(|record| serde_json::to_vec(record).unwrap().len())
        .sum();
    eprintln!(
        "one default day: {} records, {bytes} bytes of JSON, generated in {elapsed:?}",
        records.len()
    );

    let mut seen = BTreeSet::new();
    records
        .iter()
        .for_each(|record| collect_keys(record, &mut seen));
    let types = &model["types"];
    for type_name in [
        "networkInfo",
        "deviceInfo",
        "mediaStream",
        "traceRouteHop",
        "media",
        "segment",
        "session",
        "callRecord",
        "participantBase",
        "participantEndpoint",
        "clientUserAgent",
        "serviceUserAgent",
        "userFeedback",
        "failureInfo",
        "administrativeUnitInfo",
    ] {
        let properties = types[type_name]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("model has type {type_name}"));
        for (property, declaration) in properties {
            if declaration["deprecated"] == true {
                continue;
            }
            assert!(
                seen.contains(property),
                "{type_name}.{property} never has a value in a generated day"
            );
        }
    }
    for value in [
        "unknownFutureValue",
        "peerToPeer",
        "groupCall",
        "mediationServer",
        "gateway",
        "conferencingAttendant",
        "mediaController",
        "4294967295",
    ] {
        assert!(
            records
                .iter()
                .any(|record| record.to_string().contains(value)),
            "{value} never generated"
        );
    }
}
