//! The `call_records` stream: list the call records whose `startDateTime` lies in a window,
//! and fetch each one completely (details, every session page, every participant page) as
//! one JSON value.
//!
//! Touches Graph only through [`GraphClient`]; returns Graph's JSON with unknown
//! properties kept as sent.

use chrono::{DateTime, SecondsFormat, Utc};
use futures::Stream;
use serde_json::{Map, Value};

use super::paging::{NEXT_LINK, Pager, get_object, next_link};
use crate::graph::{GraphClient, GraphError};
use crate::redact::redact;

const COLLECTION: &str = "communications/callRecords";

/// Pages of `GET {api}/communications/callRecords?$filter=startDateTime ge {from} and
/// startDateTime lt {to}`, following `@odata.nextLink` until absent. Each item is a list
/// item (`id`, `version`, `startDateTime`, ...); sessions and participants are not included.
pub fn list(
    client: &GraphClient,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> impl Stream<Item = Result<Vec<Value>, GraphError>> + '_ {
    let mut url = client.api_url(COLLECTION);
    let filter = format!(
        "startDateTime ge {} and startDateTime lt {}",
        odata_timestamp(from),
        odata_timestamp(to)
    );
    // `set_query` percent-encodes the spaces as %20; form encoding would turn them into
    // `+`, which Graph's docs do not promise to read as spaces.
    url.set_query(Some(&format!("$filter={filter}")));
    futures::stream::try_unfold(Pager::new(client, url), |mut pager| async move {
        Ok(pager.next_page().await?.map(|items| (items, pager)))
    })
}

/// The complete record: `GET {api}/communications/callRecords/{id}?$expand=sessions($expand=segments)`
/// plus every `sessions@odata.nextLink` page appended to `sessions`, and
/// `GET .../{id}/participants_v2` (all pages) stored as `participants_v2`. The paging
/// annotations of these merged collections are removed.
///
/// `Ok(None)` when Graph answers 404 at any step: the record expired (30-day retention)
/// or is not generated yet. A record whose `id` is not `id` is a [`GraphError::Decode`]:
/// stored under the id it holds, it would replace another record or duplicate it.
pub async fn fetch_record(client: &GraphClient, id: &str) -> Result<Option<Value>, GraphError> {
    match fetch_complete(client, id).await {
        Err(GraphError::NotFound { url }) => {
            tracing::debug!(%url, id, "call record not available (404)");
            Ok(None)
        }
        other => other.map(Some),
    }
}

async fn fetch_complete(client: &GraphClient, id: &str) -> Result<Value, GraphError> {
    let mut url = record_url(client, id, &[]);
    url.set_query(Some("$expand=sessions($expand=segments)"));
    let mut record = get_object(client, &url, |record| {
        record
            .get("id")
            .and_then(Value::as_str)
            .map(drop)
            .ok_or("expected a callRecord object with an id")
    })
    .await?;
    check_id(&record, id, &url)?;

    let more_sessions = take_paging(&mut record, "sessions", &url)?;
    if let Some(next) = more_sessions {
        let rest = Pager::new(client, next).collect().await?;
        append(&mut record, "sessions", rest, &url)?;
    }

    // Always listed separately: `$expand` takes one relationship per request, and the
    // expanded form would need the same paging anyway.
    take_paging(&mut record, "participants_v2", &url)?;
    let participants = Pager::new(client, record_url(client, id, &["participants_v2"]))
        .collect()
        .await?;
    record.insert("participants_v2".into(), Value::Array(participants));
    Ok(Value::Object(record))
}

/// The record Graph answered with is the one requested.
fn check_id(
    record: &Map<String, Value>,
    requested: &str,
    url: &url::Url,
) -> Result<(), GraphError> {
    let got = record.get("id").and_then(Value::as_str).unwrap_or_default();
    if got == requested {
        return Ok(());
    }
    Err(GraphError::Decode {
        url: url.clone(),
        message: format!(
            "Graph answered the request for call record {requested} with call record {got}; \
             it is not stored under either id"
        )
        .into(),
        body: redact(&serde_json::to_string(record).unwrap_or_default(), &[]).into(),
    })
}

fn record_url(client: &GraphClient, id: &str, tail: &[&str]) -> url::Url {
    let mut url = client.api_url(COLLECTION);
    // The id is pushed as one segment so that it is percent-encoded, whatever it holds.
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.push(id).extend(tail);
    }
    url
}

/// Removes `{property}@odata.context` and `{property}@odata.nextLink`, returning the link.
fn take_paging(
    record: &mut Map<String, Value>,
    property: &str,
    source: &url::Url,
) -> Result<Option<url::Url>, GraphError> {
    record.remove(&format!("{property}@odata.context"));
    next_link(source, record.remove(&format!("{property}{NEXT_LINK}")))
}

fn append(
    record: &mut Map<String, Value>,
    property: &str,
    items: Vec<Value>,
    source: &url::Url,
) -> Result<(), GraphError> {
    match record
        .entry(property)
        .or_insert_with(|| Value::Array(Vec::new()))
    {
        Value::Array(existing) => {
            existing.extend(items);
            Ok(())
        }
        other => Err(GraphError::Decode {
            url: source.clone(),
            message: format!("{property} is not an array").into(),
            body: redact(&other.to_string(), &[]).into(),
        }),
    }
}

/// RFC 3339 in UTC with `Z` (a `+00:00` offset would need encoding), fractional seconds
/// only when present.
fn odata_timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}
