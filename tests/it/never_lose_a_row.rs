//! Never lose a row, against a Graph that misbehaves and an output folder that was
//! tampered with, through the built binary: a detail or page larger than
//! `[graph] max_response_bytes` and a detail that answers with another record's id are
//! quarantined (exit 3) while the other records are exported; a `_lock` that is a
//! symbolic link is refused and what it points to is left alone.

use crate::support;

use support::{binary, days_ago, stderr};

use std::path::{Path, PathBuf};
use std::process::Output;

use callrecords_etl::store::StoreError;
use callrecords_etl::store::lock::OutputLock;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const RECORDS: &str = "/v1.0/communications/callRecords";

/// A listed call record (also a complete detail: no sessions, no participants).
fn item(id: &str) -> Value {
    let start = format!("{}T10:00:00Z", days_ago(2));
    json!({"id": id, "version": 1, "type": "peerToPeer", "modalities": ["audio"],
        "startDateTime": start, "endDateTime": start, "lastModifiedDateTime": start})
}

/// A Graph on wiremock with a token endpoint and a list of `ids`; each id's detail and
/// participants answer as `answer` says (None: the record itself, and no participants).
async fn graph(
    ids: &[&str],
    answer: impl Fn(&str) -> Option<(&'static str, ResponseTemplate)>,
) -> MockServer {
    let graph = MockServer::start().await;
    support::mount_token_endpoint(&graph, "tok-never-lose").await;
    let items: Vec<Value> = ids.iter().map(|id| item(id)).collect();
    Mock::given(method("GET"))
        .and(path(RECORDS))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": items})))
        .mount(&graph)
        .await;
    for id in ids {
        let (mut detail, mut participants) = (
            ResponseTemplate::new(200).set_body_json(item(id)),
            ResponseTemplate::new(200).set_body_json(json!({"value": []})),
        );
        match answer(id) {
            Some(("detail", response)) => detail = response,
            Some(("participants", response)) => participants = response,
            _ => {}
        }
        Mock::given(method("GET"))
            .and(path(format!("{RECORDS}/{id}")))
            .respond_with(detail)
            .mount(&graph)
            .await;
        Mock::given(method("GET"))
            .and(path(format!("{RECORDS}/{id}/participants_v2")))
            .respond_with(participants)
            .mount(&graph)
            .await;
    }
    graph
}

/// `export --streams call_records` of the day of [`item`] from `graph`, with `extra` added
/// to the `[graph]` section of its config; the lake is `<dir>/lake`.
async fn export(graph: &MockServer, dir: &Path, extra: &str) -> (Output, PathBuf) {
    let config = dir.join("etl.toml");
    std::fs::write(
        &config,
        format!(
            "[graph]\ntenant_id = \"contoso.onmicrosoft.com\"\n\
             client_id = \"00000000-0000-4000-8000-000000000001\"\n\
             graph_url = \"{0}\"\nlogin_url = \"{0}\"\n{extra}\n",
            graph.uri()
        ),
    )
    .unwrap();
    let lake = dir.join("lake");
    let mut command = binary();
    command
        .env("CALLRECORDS_CLIENT_SECRET", "s")
        .args(["export", "--streams", "call_records", "--config"])
        .arg(&config)
        .args(["--from", &days_ago(2), "--to", &days_ago(1), "--out"])
        .arg(&lake);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    (output, lake)
}

/// The quarantined records of the run that wrote the lake's only manifest, by id.
fn quarantined(lake: &Path) -> Vec<Value> {
    let manifests: Vec<_> = std::fs::read_dir(lake.join("_manifests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(manifests.len(), 1);
    let manifest: Value = serde_json::from_slice(&std::fs::read(&manifests[0]).unwrap()).unwrap();
    let run_id = manifest["run_id"].as_str().unwrap();
    let mut records: Vec<Value> =
        std::fs::read_to_string(lake.join(format!("_rejected/{run_id}/call_records.jsonl")))
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
    records.sort_by_key(|r| r["id"].as_str().unwrap().to_string());
    let mut rejected: Vec<&str> = manifest["records_rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    rejected.sort_unstable();
    let ids: Vec<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(rejected, ids, "the manifest lists the quarantined records");
    records
}

fn exported_ids(lake: &Path) -> Vec<String> {
    let mut ids: Vec<String> = support::read_table(lake, "call_records")
        .iter()
        .map(|row| row["call_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_detail_or_participant_page_quarantines_its_record_and_exits_3() {
    let two_mib = "x".repeat(2 * 1024 * 1024);
    let graph = graph(&["big-detail", "big-participants", "small"], |id| {
        let mut huge = item(id);
        huge["padding"] = json!(two_mib.as_str());
        match id {
            "big-detail" => Some(("detail", ResponseTemplate::new(200).set_body_json(huge))),
            "big-participants" => Some((
                "participants",
                ResponseTemplate::new(200).set_body_json(json!({"value": [huge]})),
            )),
            _ => None,
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();

    let (output, lake) = export(&graph, dir.path(), "max_response_bytes = 1048576").await;

    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    let records = quarantined(&lake);
    assert_eq!(records.len(), 2);
    for (record, (id, url)) in records.iter().zip([
        ("big-detail", format!("{RECORDS}/big-detail")),
        (
            "big-participants",
            format!("{RECORDS}/big-participants/participants_v2"),
        ),
    ]) {
        assert_eq!(record["id"], id);
        assert!(record["url"].as_str().unwrap().contains(&url), "{record}");
        let error = record["error"].as_str().unwrap();
        assert!(
            error.contains("larger than [graph] max_response_bytes = 1048576")
                && error.contains("raise max_response_bytes"),
            "{error}"
        );
        assert!(record["body"].as_str().unwrap().len() <= 4096);
    }
    assert_eq!(
        exported_ids(&lake),
        ["small"],
        "the other record is exported"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detail_with_another_id_quarantines_the_record_naming_both_ids() {
    let graph = graph(&["asked-for", "fine"], |id| {
        (id == "asked-for").then(|| {
            (
                "detail",
                ResponseTemplate::new(200).set_body_json(item("someone-else")),
            )
        })
    })
    .await;
    let dir = tempfile::tempdir().unwrap();

    let (output, lake) = export(&graph, dir.path(), "").await;

    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    let records = quarantined(&lake);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["id"], "asked-for");
    let error = records[0]["error"].as_str().unwrap();
    assert!(
        error.contains("call record asked-for") && error.contains("call record someone-else"),
        "{error}"
    );
    assert!(
        records[0]["body"]
            .as_str()
            .unwrap()
            .contains("someone-else")
    );
    assert_eq!(
        exported_ids(&lake),
        ["fine"],
        "nothing is stored under either id of the mismatched record"
    );
}

#[test]
fn a_lock_file_that_is_a_symlink_is_refused_and_its_target_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    std::fs::create_dir(&lake).unwrap();
    let target = dir.path().join("precious.txt");
    std::fs::write(&target, "keep me").unwrap();
    std::os::unix::fs::symlink(&target, lake.join("_lock")).unwrap();

    let error = OutputLock::acquire(&lake, "run-1").unwrap_err();
    assert!(
        matches!(error, StoreError::LockIsSymlink { .. }),
        "{error:?}"
    );

    let output = binary()
        .args(["export", "--emulator", "--streams", "call_records", "--out"])
        .arg(&lake)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let log = stderr(&output);
    let lock = lake.join("_lock");
    assert!(
        log.contains(&format!(
            "the lock file {} is a symbolic link",
            lock.display()
        )) && log.contains("remove it"),
        "{log}"
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
    assert!(!lake.join("call_records").exists(), "nothing was exported");

    // Once removed, the run takes the lock as usual.
    std::fs::remove_file(&lock).unwrap();
    drop(OutputLock::acquire(&lake, "run-2").unwrap());
}
