//! The `call_records` stream: list the call records whose `startDateTime` lies in a window,
//! and fetch each one completely (details, every session page, every participant page) as
//! one JSON text.
//!
//! Touches Graph only through [`GraphClient`]; returns Graph's JSON with unknown
//! properties kept as sent.

use chrono::{DateTime, SecondsFormat, Utc};
use futures::Stream;
use serde_json::{Map, Value};

use super::paging::{JsonObjectWriter, NEXT_LINK, Pager, RawObject, get_raw_object, next_link};
use crate::graph::{GraphClient, GraphError};
use crate::redact::redact;

const COLLECTION: &str = "communications/callRecords";

/// Call records per page of the listing, as Graph pages it (for estimates).
pub const LIST_PAGE_SIZE: u32 = 60;
/// Sessions per page of a record's sessions, as Graph pages them (for estimates).
pub const SESSIONS_PAGE_SIZE: u32 = 60;
/// Participants per page of a record's `participants_v2`, as Graph pages them (for estimates).
pub const PARTICIPANTS_PAGE_SIZE: u32 = 130;

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

/// The complete record as one JSON text: `GET {api}/communications/callRecords/{id}?$expand=sessions($expand=segments)`
/// plus every `sessions@odata.nextLink` page appended to `sessions`, and
/// `GET .../{id}/participants_v2` (all pages) stored as `participants_v2`. The paging
/// annotations of these merged collections are removed.
///
/// The items of the merged collections are kept as the text Graph sent (no tree of them is
/// built; one written over several lines is made one line), written after the record's
/// other members: memory for a record is about the size of its text, however many pages
/// it spans.
///
/// `Ok(None)` when Graph answers 404 at any step: the record expired (30-day retention)
/// or is not generated yet. A record whose `id` is not `id` is a [`GraphError::Decode`]:
/// stored under the id it holds, it would replace another record or duplicate it.
pub async fn fetch_record(client: &GraphClient, id: &str) -> Result<Option<String>, GraphError> {
    match fetch_complete(client, id).await {
        Err(GraphError::NotFound { url }) => {
            tracing::debug!(%url, id, "call record not available (404)");
            Ok(None)
        }
        other => other.map(Some),
    }
}

async fn fetch_complete(client: &GraphClient, id: &str) -> Result<String, GraphError> {
    let mut url = record_url(client, id, &[]);
    url.set_query(Some("$expand=sessions($expand=segments)"));
    let mut record = get_raw_object(client, &url, |record| {
        record
            .members
            .get("id")
            .and_then(Value::as_str)
            .map(drop)
            .ok_or("expected a callRecord object with an id")
    })
    .await?;
    check_id(&record, id, &url)?;

    let more_sessions = take_paging(&mut record.members, "sessions", &url)?;
    // Always listed separately: `$expand` takes one relationship per request, and the
    // expanded form would need the same paging anyway.
    take_paging(&mut record.members, "participants_v2", &url)?;
    record.take_collection("participants_v2");
    record.members.remove("participants_v2");
    let sessions = record.take_collection("sessions");
    if let (None, Some(_), Some(other)) =
        (&sessions, &more_sessions, record.members.get("sessions"))
    {
        return Err(GraphError::Decode {
            url: url.clone(),
            message: "sessions is not an array".into(),
            body: redact(&other.to_string(), &[]).into(),
        });
    }

    let mut text = JsonObjectWriter::new();
    for (key, value) in &record.members {
        text.member(key, value);
    }
    drop(record.members);
    if sessions.is_some() || more_sessions.is_some() {
        text.open_array("sessions");
        for item in sessions.iter().flatten() {
            text.item(item);
        }
        drop(sessions);
        if let Some(next) = more_sessions {
            append_pages(&mut text, Pager::new(client, next)).await?;
        }
        text.close_array();
    }
    text.open_array("participants_v2");
    append_pages(
        &mut text,
        Pager::new(client, record_url(client, id, &["participants_v2"])),
    )
    .await?;
    text.close_array();
    Ok(text.finish())
}

/// Appends the items of every page of `pager` to the open array, page by page.
async fn append_pages(text: &mut JsonObjectWriter, mut pager: Pager<'_>) -> Result<(), GraphError> {
    while let Some(items) = pager.next_raw_page().await? {
        for item in &items {
            text.item(item);
        }
    }
    Ok(())
}

/// The record Graph answered with is the one requested.
fn check_id(record: &RawObject, requested: &str, url: &url::Url) -> Result<(), GraphError> {
    let got = record
        .members
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default();
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
        body: redact(&record.to_json(), &[]).into(),
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

/// RFC 3339 in UTC with `Z` (a `+00:00` offset would need encoding), fractional seconds
/// only when present.
fn odata_timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}
