//! End-to-end tests of the emulator's fault injection and enforced Graph limits, observed
//! the way an exporter would: through reqwest, against `emulator::start` on 127.0.0.1:0.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use callrecords_emulator::{
    self as emulator, EmulatorConfig, FaultCounts, FaultKind, Faults, Limits, Rate,
    RunningEmulator, Tenant,
};
use reqwest::{Client, StatusCode};
use serde_json::Value;

use crate::support::{self, at};

const DAY_FILTER: &str = "$filter=startDateTime%20ge%202026-11-20T00:00:00Z%20and%20startDateTime%20lt%202026-11-21T00:00:00Z";

/// Ids of the default tenant's calls on 2026-11-20.
fn day_ids(count: usize) -> Vec<String> {
    Tenant::new(42, emulator::DEFAULT_CALLS_PER_DAY)
        .list(at("2026-11-20T00:00:00Z"), at("2026-11-21T00:00:00Z"))
        .iter()
        .take(count)
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect()
}

fn with_faults(faults: Faults) -> EmulatorConfig {
    EmulatorConfig {
        faults,
        ..EmulatorConfig::default()
    }
}

/// What a client saw of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    /// A complete, parseable answer, with its `Retry-After` if any.
    Answer {
        status: u16,
        retry_after: Option<String>,
    },
    /// A 200 whose body is not valid JSON.
    Broken,
    /// No HTTP response at all.
    NoResponse,
}

async fn fetch(client: &Client, url: &str, token: &str) -> Outcome {
    let Ok(response) = client.get(url).bearer_auth(token).send().await else {
        return Outcome::NoResponse;
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().unwrap().to_owned());
    match response.json::<Value>().await {
        Ok(_) => Outcome::Answer {
            status,
            retry_after,
        },
        Err(_) => Outcome::Broken,
    }
}

fn urls(emulator: &RunningEmulator) -> Vec<String> {
    let base = format!("{}/v1.0/communications/callRecords", emulator.base_url());
    let mut urls = vec![format!("{base}?{DAY_FILTER}")];
    for id in day_ids(12) {
        urls.push(format!("{base}/{id}"));
        urls.push(format!("{base}/{id}/participants_v2"));
    }
    urls.push(format!(
        "{base}/getPstnCalls(fromDateTime=2026-11-20,toDateTime=2026-11-20T06:00:00Z)"
    ));
    urls
}

fn mixed_faults() -> Faults {
    Faults::parse("seed=5,throttle=0.15,5xx=0.15,drop=0.1,slow=0.05,slow_delay=20ms,truncate=0.15")
        .unwrap()
}

/// Requests each URL three times in a row; URLs one after another, or all at once.
async fn outcomes(concurrently: bool) -> (BTreeMap<String, Vec<Outcome>>, FaultCounts) {
    let emulator = support::start_emulator(with_faults(mixed_faults())).await;
    let token = support::emulator_token(&emulator).await;
    let base = emulator.base_url();
    let client = Client::new();
    let attempts = |url: String| {
        let (client, token, base) = (client.clone(), token.clone(), base.clone());
        async move {
            let mut seen = Vec::new();
            for _ in 0..3 {
                seen.push(fetch(&client, &url, &token).await);
            }
            // Ports differ between runs; the rest of the URL is what the fates hang on.
            (url.replacen(&base, "", 1), seen)
        }
    };
    let results: Vec<(String, Vec<Outcome>)> = if concurrently {
        futures::future::join_all(urls(&emulator).into_iter().map(attempts)).await
    } else {
        let mut results = Vec::new();
        for url in urls(&emulator) {
            results.push(attempts(url).await);
        }
        results
    };
    (results.into_iter().collect(), emulator.fault_counts())
}

#[tokio::test]
async fn the_same_url_sequence_meets_the_same_fates_even_concurrently() {
    let (first, first_counts) = outcomes(false).await;
    let (again, again_counts) = outcomes(false).await;
    let (parallel, parallel_counts) = outcomes(true).await;
    assert_eq!(first, again);
    assert_eq!(first, parallel);
    assert_eq!(first_counts, again_counts);
    assert_eq!(first_counts, parallel_counts);
    let all: Vec<&Outcome> = first.values().flatten().collect();
    assert!(all.contains(&&Outcome::NoResponse));
    assert!(all.contains(&&Outcome::Broken));
    assert!(
        all.iter()
            .any(|outcome| matches!(outcome, Outcome::Answer { status: 429, .. }))
    );
    assert!(
        all.iter()
            .any(|outcome| matches!(outcome, Outcome::Answer { status: 200, .. }))
    );
    // Retries of a URL do not all share its first fate.
    assert!(
        first
            .values()
            .any(|seen| seen.iter().any(|outcome| *outcome != seen[0]))
    );
    assert!(first_counts.throttled > 0 && first_counts.server_errors > 0);
    assert_eq!(first_counts.limited, 0);
}

#[tokio::test]
async fn throttling_and_server_errors_look_like_graphs() {
    let emulator = support::start_emulator(with_faults(
        Faults::parse("throttle=1,retry_after=3").unwrap(),
    ))
    .await;
    // Token requests are never throttled by the Graph fault rates.
    let token = support::emulator_token(&emulator).await;
    let url = format!(
        "{}/v1.0/communications/callRecords?{DAY_FILTER}",
        emulator.base_url()
    );
    let response = Client::new()
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "3");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "TooManyRequests");
    assert_eq!(emulator.fault_counts().throttled, 1);
    let recorded = emulator.requests();
    assert_eq!(recorded[1].status, 429);
    assert_eq!(recorded[1].fault, Some(FaultKind::Throttled));
    assert_eq!(recorded[0].fault, None, "the token request");

    let emulator = support::start_emulator(with_faults(Faults::parse("5xx=1").unwrap())).await;
    let token = support::emulator_token(&emulator).await;
    let base = format!("{}/v1.0/communications/callRecords", emulator.base_url());
    let client = Client::new();
    let mut statuses = BTreeMap::new();
    for id in day_ids(40) {
        let response = client
            .get(format!("{base}/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let with_retry_after = response.headers().contains_key("retry-after");
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert!(body["error"]["code"].is_string());
        *statuses.entry((status, with_retry_after)).or_insert(0) += 1;
    }
    let codes: Vec<u16> = statuses.keys().map(|(status, _)| *status).collect();
    assert!(codes.iter().all(|code| [500, 502, 503, 504].contains(code)));
    assert!(codes.contains(&503) && codes.contains(&500), "{statuses:?}");
    assert!(statuses.keys().any(|(_, with)| *with) && statuses.keys().any(|(_, with)| !*with));
    assert_eq!(emulator.fault_counts().server_errors, 40);
}

#[tokio::test]
async fn dropped_connections_slow_answers_and_truncated_bodies() {
    let emulator = support::start_emulator(with_faults(Faults::parse("drop=1").unwrap())).await;
    let token = support::emulator_token(&emulator).await;
    let url = format!(
        "{}/v1.0/communications/callRecords?{DAY_FILTER}",
        emulator.base_url()
    );
    let error = Client::new()
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .expect_err("no response");
    assert!(!error.is_status() && !error.is_timeout(), "{error:?}");
    assert_eq!(emulator.fault_counts().dropped, 1);
    let recorded = emulator.requests();
    assert_eq!(recorded.last().unwrap().status, 0);
    assert_eq!(recorded.last().unwrap().fault, Some(FaultKind::Dropped));
    // The emulator itself keeps serving.
    assert!(
        support::request_token(
            &Client::new(),
            &emulator,
            support::app_credentials(&emulator),
            support::GRAPH_SCOPE
        )
        .await
        .is_some()
    );

    let emulator = support::start_emulator(with_faults(
        Faults::parse("slow=1,slow_delay=300ms").unwrap(),
    ))
    .await;
    let token = support::emulator_token(&emulator).await;
    let url = format!(
        "{}/v1.0/communications/callRecords?{DAY_FILTER}",
        emulator.base_url()
    );
    let started = Instant::now();
    assert_eq!(
        fetch(&Client::new(), &url, &token).await,
        Outcome::Answer {
            status: 200,
            retry_after: None
        }
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(emulator.fault_counts().slowed, 1);

    let emulator = support::start_emulator(with_faults(Faults::parse("truncate=1").unwrap())).await;
    let token = support::emulator_token(&emulator).await;
    let url = format!(
        "{}/v1.0/communications/callRecords?{DAY_FILTER}",
        emulator.base_url()
    );
    let response = Client::new()
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(text.starts_with("{\"@odata.context\""), "{text}");
    assert!(serde_json::from_str::<Value>(&text).is_err());
    assert_eq!(emulator.fault_counts().truncated, 1);
    // Error answers are not truncated.
    let missing = format!(
        "{}/v1.0/communications/callRecords/e523d2ed-2966-4b6b-925b-754a88034cc5",
        emulator.base_url()
    );
    assert_eq!(
        fetch(&Client::new(), &missing, &token).await,
        Outcome::Answer {
            status: 404,
            retry_after: None
        }
    );
}

#[tokio::test]
async fn token_faults_happen_only_when_asked_for() {
    let emulator =
        support::start_emulator(with_faults(Faults::parse("seed=3,token=0.5").unwrap())).await;
    let client = Client::new();
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for _ in 0..30 {
        let outcome = match support::request_token(
            &client,
            &emulator,
            support::app_credentials(&emulator),
            support::GRAPH_SCOPE,
        )
        .await
        {
            None => "dropped".to_owned(),
            Some((status, body)) if status == StatusCode::OK => {
                assert!(body["access_token"].is_string());
                "ok".to_owned()
            }
            Some((status, body)) => {
                assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
                assert_eq!(body["error"], "temporarily_unavailable");
                "503".to_owned()
            }
        };
        *seen.entry(outcome).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(
        emulator.fault_counts().token_faults,
        seen["dropped"] + seen["503"]
    );
    assert_eq!(emulator.issued_tokens().len() as u64, seen["ok"]);
}

#[tokio::test]
async fn corrupt_records_are_always_broken_and_only_they() {
    let faults = Faults::parse("seed=9,corrupt=0.3").unwrap();
    let emulator = support::start_emulator(with_faults(faults.clone())).await;
    let token = support::emulator_token(&emulator).await;
    let client = Client::new();
    let base = format!("{}/v1.0/communications/callRecords", emulator.base_url());
    let ids = day_ids(20);
    let (corrupt, sound): (Vec<&String>, Vec<&String>) =
        ids.iter().partition(|id| faults.is_corrupt(id));
    assert!(!corrupt.is_empty() && !sound.is_empty());
    for id in &corrupt {
        for url in [
            format!("{base}/{id}"),
            format!("{base}/{id}?$expand=sessions($expand=segments)"),
            format!("{base}/{}/sessions", id.to_uppercase()),
            format!("{base}/{id}/participants_v2"),
        ] {
            for _ in 0..2 {
                assert_eq!(fetch(&client, &url, &token).await, Outcome::Broken, "{url}");
            }
        }
    }
    for id in &sound {
        let outcome = fetch(&client, &format!("{base}/{id}"), &token).await;
        assert!(matches!(outcome, Outcome::Answer { status: 200, .. }));
    }
    // The list still names them.
    assert!(matches!(
        fetch(&client, &format!("{base}?{DAY_FILTER}"), &token).await,
        Outcome::Answer { status: 200, .. }
    ));
    assert_eq!(emulator.fault_counts().corrupt, corrupt.len() as u64 * 8);
}

#[tokio::test]
async fn enforced_limits_answer_429_until_the_window_slides() {
    let second = Duration::from_secs(1);
    let emulator = support::start_emulator(EmulatorConfig {
        enforce_limits: true,
        limits: Limits {
            call_records: Rate::new(100, second),
            per_call_record: Rate::new(3, second),
            list_call_records: Rate::new(2, second),
            log_functions: Rate::new(100, second),
            per_log_function: Rate::new(2, second),
        },
        ..EmulatorConfig::default()
    })
    .await;
    let token = support::emulator_token(&emulator).await;
    let client = Client::new();
    let base = format!("{}/v1.0/communications/callRecords", emulator.base_url());
    let ids = day_ids(2);
    let record = |id: &str| format!("{base}/{id}");
    let ok = Outcome::Answer {
        status: 200,
        retry_after: None,
    };
    let limited = Outcome::Answer {
        status: 429,
        retry_after: Some("1".to_owned()),
    };

    // One record: its detail, sessions and participants share the record's limit.
    for url in [
        record(&ids[0]),
        format!("{}/sessions", record(&ids[0])),
        format!("{}/participants_v2", record(&ids[0])),
    ] {
        assert_eq!(fetch(&client, &url, &token).await, ok);
    }
    let response = client
        .get(record(&ids[0]))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "TooManyRequests");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("requests per call record"),
        "{body}"
    );
    // Other records, the list and the logs have limits of their own.
    assert_eq!(fetch(&client, &record(&ids[1]), &token).await, ok);
    let list = format!("{base}?{DAY_FILTER}");
    assert_eq!(fetch(&client, &list, &token).await, ok);
    assert_eq!(fetch(&client, &list, &token).await, ok);
    assert_eq!(fetch(&client, &list, &token).await, limited);
    let pstn =
        format!("{base}/getPstnCalls(fromDateTime=2026-11-20,toDateTime=2026-11-20T01:00:00Z)");
    let direct = format!(
        "{base}/getDirectRoutingCalls(fromDateTime=2026-11-20,toDateTime=2026-11-20T01:00:00Z)"
    );
    assert_eq!(fetch(&client, &pstn, &token).await, ok);
    assert_eq!(fetch(&client, &pstn, &token).await, ok);
    assert_eq!(fetch(&client, &pstn, &token).await, limited);
    assert_eq!(fetch(&client, &direct, &token).await, ok);

    tokio::time::sleep(second).await;
    assert_eq!(fetch(&client, &record(&ids[0]), &token).await, ok);
    assert_eq!(fetch(&client, &list, &token).await, ok);
    assert_eq!(fetch(&client, &pstn, &token).await, ok);
    let counts = emulator.fault_counts();
    assert_eq!(
        counts,
        FaultCounts {
            limited: 3,
            ..FaultCounts::default()
        }
    );
    assert_eq!(
        emulator
            .requests()
            .iter()
            .filter(|request| request.fault == Some(FaultKind::Limited))
            .count(),
        3
    );
}

#[tokio::test]
async fn no_faults_and_no_limits_by_default_and_every_token_is_listed() {
    let emulator = support::start_emulator(EmulatorConfig::default()).await;
    let tokens = [
        support::emulator_token(&emulator).await,
        support::emulator_token(&emulator).await,
    ];
    let client = Client::new();
    let url = format!(
        "{}/v1.0/communications/callRecords/{}",
        emulator.base_url(),
        day_ids(1)[0]
    );
    for _ in 0..45 {
        assert!(matches!(
            fetch(&client, &url, &tokens[0]).await,
            Outcome::Answer { status: 200, .. }
        ));
    }
    assert_eq!(emulator.fault_counts(), FaultCounts::default());
    assert_eq!(emulator.issued_tokens(), tokens.to_vec());
    assert!(
        emulator
            .requests()
            .iter()
            .all(|request| request.fault.is_none())
    );
}

#[tokio::test]
async fn invalid_fault_settings_are_refused_at_start() {
    let faults = Faults {
        throttle_rate: 0.7,
        drop_rate: 0.7,
        ..Faults::default()
    };
    let error = emulator::start(with_faults(faults), "127.0.0.1:0".parse().unwrap())
        .await
        .err()
        .expect("rates over 1 are refused");
    assert!(error.to_string().contains("more than 1"), "{error}");
}
