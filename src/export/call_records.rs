//! Fetching the call records of a window: listed page by page, each record assembled from
//! its pages with bounded concurrency, flattened by its listed day and sent to the writer
//! (with its raw line); records the lake holds unchanged, rows outside a partial window
//! and quarantined records' rows copied from the lake instead; records that cannot be
//! read quarantined.
//!
//! May touch: Graph (through [`crate::streams::call_records`]), the lake and the raw zone
//! (reading, through [`crate::reuse`]), the run's writer and quarantine.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use anyhow::Context;
use chrono::NaiveDate;
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{BATCH_ROWS, Cancelled, FetchOutcome};
use crate::flatten::FlattenIssue;
use crate::flatten::call_records::{self as flatten_calls, CallRecordTables, RecordParser};
use crate::flatten::dom::Item;
use crate::graph::{GraphClient, GraphError};
use crate::privacy::Privacy;
use crate::progress::{Progress, StreamProgress, Unit};
use crate::quality::Derivation;
use crate::reuse;
use crate::run::quarantine::Quarantine;
use crate::run::rows;
use crate::run::writer::Batches;
use crate::store::Location;
use crate::streams::{StreamKind, call_records};
use crate::window::Window;

/// One stream's fetch: what it needs from the run.
pub(super) struct CallRecordRun<'a> {
    pub client: &'a GraphClient,
    pub privacy: &'a Privacy,
    pub derivation: &'a Derivation,
    /// The lake, whose rows of unchanged records are reused.
    pub lake: &'a Location,
    /// The raw zone, if the run keeps one: every fetched record is also sent as a raw line,
    /// and an unchanged record is reused only with its line.
    pub raw: Option<&'a Location>,
    /// Refetch records whose version the lake already holds.
    pub full: bool,
    pub window: Window,
    /// Records quarantined by earlier runs on days outside the window, fetched again.
    pub retry: &'a BTreeMap<NaiveDate, BTreeSet<String>>,
    pub concurrency: usize,
    pub progress: &'a Progress,
    pub cancel: &'a CancellationToken,
}

/// What the lake holds of the days a run writes, read before fetching.
#[derive(Default)]
struct LakeHoldings {
    /// Records that may be reused: `id → (dt, version)`. With a raw zone only those whose
    /// raw line is there too (a reused record keeps its raw line).
    versions: HashMap<String, (NaiveDate, i64)>,
    /// Per edge day (a day the window covers only in part), the records that started
    /// outside the window: kept as they are.
    outside: BTreeMap<NaiveDate, HashSet<String>>,
    /// Every record the lake holds with rows written under the run's fingerprint, by day:
    /// what a quarantined record, or a retried day, keeps.
    keepable: BTreeMap<NaiveDate, HashSet<String>>,
}

impl LakeHoldings {
    /// The day whose partition holds `id` with keepable rows.
    fn keepable_day(&self, id: &str) -> Option<NaiveDate> {
        self.keepable
            .iter()
            .find(|(_, ids)| ids.contains(id))
            .map(|(dt, _)| *dt)
    }
}

impl CallRecordRun<'_> {
    /// Fetches (or copies from the lake) every call record of the window and the retried
    /// ones into the writer.
    pub async fn fetch(
        &self,
        batches: &Batches,
        quarantine: &mut Quarantine,
    ) -> anyhow::Result<FetchOutcome> {
        let progress = self
            .progress
            .stream(StreamKind::CallRecords.name(), Unit::Records);
        let holdings = self.lake_holdings().await?;
        let mut listed_ids = HashSet::new();
        let mut reused = BTreeMap::new();
        let mut flattener =
            RecordFlattener::new(self.privacy, self.derivation, batches, self.raw.is_some());
        self.fetch_listed(
            quarantine,
            &progress,
            &holdings,
            &mut listed_ids,
            &mut reused,
            &mut flattener,
        )
        .await?;
        self.fetch_retried(quarantine, &mut flattener).await?;
        let mut outcome = flattener.finish().await?;
        let copied = self.rows_to_copy(&holdings, &listed_ids, reused, &mut outcome);
        self.copy_from_lake(copied, batches).await?;
        progress.finish();
        Ok(outcome)
    }

    /// Lists the window and fetches every listed record the lake does not hold at its
    /// version; the others are noted in `reused`.
    async fn fetch_listed(
        &self,
        quarantine: &mut Quarantine,
        progress: &StreamProgress,
        holdings: &LakeHoldings,
        listed_ids: &mut HashSet<String>,
        reused: &mut BTreeMap<NaiveDate, HashSet<String>>,
        flattener: &mut RecordFlattener<'_>,
    ) -> anyhow::Result<()> {
        let (client, window) = (self.client, self.window);
        let listing_complete = futures::stream::once(async move {
            progress.listing_complete();
            Ok::<Vec<Value>, GraphError>(Vec::new())
        });
        let reused = RefCell::new(reused);
        let ids = call_records::list(client, window.from, window.to)
            .map_ok(|page| {
                progress.page(page.len(), client.stats());
                page
            })
            .chain(listing_complete)
            .map_ok(|page| futures::stream::iter(page.into_iter().map(Ok::<Value, GraphError>)))
            .try_flatten()
            .try_filter_map(|item| {
                let keep = listed_record_to_fetch(&item, &window, listed_ids).filter(|(id, _)| {
                    let reuse = reuses(&item, id, &holdings.versions, &mut reused.borrow_mut());
                    if reuse {
                        progress.reused(1);
                    }
                    !reuse
                });
                futures::future::ready(Ok(keep))
            });
        self.fetch_each(ids, quarantine, Some(progress), flattener)
            .await
    }

    /// Fetches again the records earlier runs quarantined on days outside the window.
    async fn fetch_retried(
        &self,
        quarantine: &mut Quarantine,
        flattener: &mut RecordFlattener<'_>,
    ) -> anyhow::Result<()> {
        if self.retry.is_empty() {
            return Ok(());
        }
        let count: usize = self.retry.values().map(BTreeSet::len).sum();
        tracing::info!("Fetching again {count} call records that earlier runs quarantined.");
        let ids = self.retry.iter().flat_map(|(dt, ids)| {
            ids.iter()
                .map(move |id| Ok::<_, GraphError>((id.clone(), *dt)))
        });
        self.fetch_each(futures::stream::iter(ids), quarantine, None, flattener)
            .await
    }

    /// Fetches every `(id, listed day)` of `ids` with bounded concurrency into `flattener`;
    /// a record whose responses cannot be read is quarantined, any other failure
    /// (throttled past all retries, unreachable, refused) ends the run unpublished.
    async fn fetch_each(
        &self,
        ids: impl futures::Stream<Item = Result<(String, NaiveDate), GraphError>>,
        quarantine: &mut Quarantine,
        progress: Option<&StreamProgress>,
        flattener: &mut RecordFlattener<'_>,
    ) -> anyhow::Result<()> {
        let client = self.client;
        let records = ids
            .map_ok(|(id, listed_dt)| async move {
                match call_records::fetch_record(client, &id).await {
                    Ok(record) => Ok((id, listed_dt, Ok(record))),
                    Err(error) => error
                        .into_unreadable()
                        .map(|unreadable| (id, listed_dt, Err(unreadable))),
                }
            })
            .try_buffered(self.concurrency);
        let mut records = std::pin::pin!(records);
        loop {
            let next = tokio::select! {
                biased;
                () = self.cancel.cancelled() => return Err(Cancelled.into()),
                next = records.try_next() => next.context("cannot export the call records")?,
            };
            let Some((id, listed_dt, fetched)) = next else {
                break;
            };
            if let Some(progress) = progress {
                progress.done(1, client.stats());
            }
            match fetched {
                Ok(Some(record)) => {
                    flattener
                        .add(client, quarantine, &id, listed_dt, record)
                        .await?
                }
                Ok(None) => {
                    tracing::warn!(
                        call_id = %id,
                        "Call record {id} was listed but Graph answered 404 (expired, or not yet available); skipped."
                    );
                    flattener.outcome.records_not_found.push(id);
                }
                Err((url, message, body)) => {
                    flattener
                        .reject(quarantine, &id, listed_dt, url.as_str(), &message, &body)
                        .await?
                }
            }
        }
        Ok(())
    }

    /// Which records' rows are copied from the lake: the reused ones; on edge days those
    /// outside the window; the quarantined ones the lake holds; and on a day of retried
    /// records, every other record the lake holds of it (the day's partition is rewritten).
    fn rows_to_copy(
        &self,
        holdings: &LakeHoldings,
        listed_ids: &HashSet<String>,
        reused: BTreeMap<NaiveDate, HashSet<String>>,
        outcome: &mut FetchOutcome,
    ) -> BTreeMap<NaiveDate, HashSet<String>> {
        outcome.records_reused = reused.values().map(|ids| ids.len() as u64).sum();
        outcome.records_exported += outcome.records_reused;
        let mut copied = reused;
        for (dt, ids) in &holdings.outside {
            // A record listed in the window was fetched or reused: it is not kept twice.
            let kept: Vec<&String> = ids.iter().filter(|id| !listed_ids.contains(*id)).collect();
            outcome.records_kept_outside_window += kept.len() as u64;
            copied
                .entry(*dt)
                .or_default()
                .extend(kept.into_iter().cloned());
        }
        for id in outcome.quarantined.values().flatten() {
            if let Some(dt) = holdings.keepable_day(id) {
                copied.entry(dt).or_default().insert(id.clone());
                outcome.records_quarantined_kept += 1;
            }
        }
        for dt in self.retry.keys() {
            let refetched: Vec<&String> = self.retry[dt]
                .iter()
                .filter(|id| outcome.exported_ids.contains(*id))
                .collect();
            if refetched.is_empty() {
                continue;
            }
            outcome.retried_days.insert(*dt);
            let others = holdings.keepable.get(dt).into_iter().flatten();
            let others = others.filter(|id| !outcome.exported_ids.contains(*id));
            copied.entry(*dt).or_default().extend(others.cloned());
        }
        copied.retain(|_, ids| !ids.is_empty());
        copied
    }

    /// Copies the rows (and raw lines) of the records `ids` names from the lake.
    async fn copy_from_lake(
        &self,
        ids: BTreeMap<NaiveDate, HashSet<String>>,
        batches: &Batches,
    ) -> anyhow::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let records: usize = ids.values().map(HashSet::len).sum();
        tracing::info!(
            lake = %self.lake,
            "Copying the rows of {records} call records from the lake (unchanged, outside the window on its first or \
             last day, or quarantined in this run), and their raw lines."
        );
        let (lake, raw) = (self.lake.clone(), self.raw.cloned());
        let sender = batches.clone();
        // Blocking reads, and blocking sends to the writer: off the async threads.
        tokio::task::spawn_blocking(move || copy_records(&lake, raw.as_ref(), &ids, &sender))
            .await
            .context("the copy of call records from the lake stopped")?
            .context("cannot copy call records from the lake")
    }

    /// What the lake holds of the window's days and the retried days. A record is reused
    /// (or kept) only from a file written under the run's fingerprint (privacy settings,
    /// declarations). With `--full` nothing is reused.
    async fn lake_holdings(&self) -> anyhow::Result<LakeHoldings> {
        let (lake, raw, window, full) =
            (self.lake.clone(), self.raw.cloned(), self.window, self.full);
        let fingerprint = reuse::rows_fingerprint(self.privacy, self.derivation);
        let mut days = window.days();
        days.extend(self.retry.keys().copied());
        // Blocking reads (files, or GETs waited for on this runtime): off the async threads.
        tokio::task::spawn_blocking(move || {
            let runtime = tokio::runtime::Handle::current();
            let mut holdings = LakeHoldings::default();
            for dt in days {
                let records = reuse::lake_records(&lake, dt, &runtime)
                    .context("cannot read which call records the lake holds")?;
                let in_raw = match (&raw, full) {
                    (Some(raw), false) => Some(raw_ids(raw, dt, &runtime)?),
                    _ => None,
                };
                for (id, record) in records {
                    let same_rules = record.fingerprint.as_deref() == Some(fingerprint.as_str());
                    if same_rules {
                        holdings.keepable.entry(dt).or_default().insert(id.clone());
                    }
                    let in_window = window.days().contains(&dt);
                    if in_window && !window.covers_day(dt) && !record.started_in(window) {
                        holdings.outside.entry(dt).or_default().insert(id);
                    } else if let (true, false, Some(version)) = (in_window, full, record.version)
                        && same_rules
                        && in_raw.as_ref().is_none_or(|ids| ids.contains(&id))
                    {
                        holdings.versions.insert(id, (dt, version));
                    }
                }
            }
            Ok(holdings)
        })
        .await
        .context("the reading of the lake's call records stopped")?
    }
}

/// The ids of the call records in the raw zone's partition `dt`.
fn raw_ids(
    raw: &Location,
    dt: NaiveDate,
    runtime: &tokio::runtime::Handle,
) -> anyhow::Result<HashSet<String>> {
    let mut ids = HashSet::new();
    reuse::raw_records(raw, dt, runtime, |id, _| {
        ids.insert(id.to_string());
        Ok(())
    })
    .context("cannot read which call records the raw zone holds")?;
    Ok(ids)
}

/// Flattens fetched call records into per-day tables and sends full batches (and raw lines)
/// to the writer.
struct RecordFlattener<'a> {
    privacy: &'a Privacy,
    derivation: &'a Derivation,
    batches: &'a Batches,
    raw: bool,
    partitions: BTreeMap<NaiveDate, CallRecordTables>,
    issues: Vec<FlattenIssue>,
    outcome: FetchOutcome,
}

impl<'a> RecordFlattener<'a> {
    fn new(
        privacy: &'a Privacy,
        derivation: &'a Derivation,
        batches: &'a Batches,
        raw: bool,
    ) -> Self {
        RecordFlattener {
            privacy,
            derivation,
            batches,
            raw,
            partitions: BTreeMap::new(),
            issues: Vec::new(),
            outcome: FetchOutcome::default(),
        }
    }

    /// Adds one record (its JSON text), placed in the partition of its listed start
    /// (quarantined when its details cannot be placed at all). The text is parsed once for
    /// the rows, as `reflatten` parses a raw line, and is then the raw-zone line itself.
    async fn add(
        &mut self,
        client: &GraphClient,
        quarantine: &mut Quarantine,
        id: &str,
        listed_dt: NaiveDate,
        record: String,
    ) -> anyhow::Result<()> {
        let dt = match self.flatten(id, listed_dt, &record) {
            Ok(dt) => dt,
            Err(problem) => {
                let url = client.api_url(&format!("communications/callRecords/{id}"));
                return self
                    .reject(quarantine, id, listed_dt, url.as_str(), &problem, &record)
                    .await;
            }
        };
        if self.raw {
            self.batches
                .send_line(StreamKind::CallRecords, dt, record.into_bytes())
                .await?;
        }
        rows::report_issues(&mut self.issues, &mut self.outcome.value_issues);
        self.outcome.records_exported += 1;
        self.outcome.exported_ids.insert(id.to_string());
        let tables = self.partitions.get_mut(&dt).expect("flattened into it");
        let builders = tables.builders_mut().map(|builder| (dt, builder));
        self.batches.send_full(builders, BATCH_ROWS).await
    }

    /// Appends the rows of one record's text to the partition of its listed day, which it
    /// returns; why not, when its details cannot be placed at all.
    fn flatten(&mut self, id: &str, listed_dt: NaiveDate, text: &str) -> Result<NaiveDate, String> {
        let mut parser = RecordParser::default();
        let record = parser
            .parse(text)
            .map_err(|error| format!("the assembled record is not JSON: {error}"))?;
        if let Placement::Moved(detail_dt) = placement(record, listed_dt)? {
            tracing::warn!(
                call_id = %id,
                "Call record {id} was listed as starting on {listed_dt}, but its details say {detail_dt}; it is \
                 placed in the partition of {listed_dt}, as listed (the run replaces only its window's days)."
            );
            self.outcome.records_moved.push(id.to_string());
        }
        let tables = self
            .partitions
            .entry(listed_dt)
            .or_insert_with(|| CallRecordTables::deriving(self.privacy, self.derivation));
        flatten_calls::flatten_item(record, tables, &mut self.issues).expect("placed above");
        Ok(listed_dt)
    }

    /// Quarantines a record listed on `listed_dt`, noting it for the state (later runs
    /// fetch it again).
    async fn reject(
        &mut self,
        quarantine: &mut Quarantine,
        id: &str,
        listed_dt: NaiveDate,
        url: &str,
        problem: &str,
        body: &str,
    ) -> anyhow::Result<()> {
        quarantine
            .reject(StreamKind::CallRecords, id, url, problem, body)
            .await?;
        let ids = self.outcome.quarantined.entry(listed_dt).or_default();
        ids.insert(id.to_string());
        Ok(())
    }

    /// Sends what is left of every partition.
    async fn finish(mut self) -> anyhow::Result<FetchOutcome> {
        for (dt, tables) in &mut self.partitions {
            let builders = tables.builders_mut().map(|builder| (*dt, builder));
            self.batches.send_full(builders, 1).await?;
        }
        Ok(self.outcome)
    }
}

/// Where a fetched record goes, against the day it was listed on.
#[derive(Debug, PartialEq, Eq)]
enum Placement {
    AsListed,
    /// Its details start on another day (the value).
    Moved(NaiveDate),
}

/// Places a fetched record by its listed day: a run replaces only its window's days, so a
/// record whose details name another day stays in the listed one (and is counted).
fn placement(record: Item<'_, '_>, listed_dt: NaiveDate) -> Result<Placement, String> {
    let (_, start) = flatten_calls::identify_item(record).map_err(|problem| problem.0)?;
    let detail_dt = start.date_naive();
    Ok(if detail_dt == listed_dt {
        Placement::AsListed
    } else {
        Placement::Moved(detail_dt)
    })
}

/// Whether the listed `item` (whose id is `id`) is already in the lake at its listed version;
/// if so it is noted in `reused` under its day.
fn reuses(
    item: &Value,
    id: &str,
    known: &HashMap<String, (NaiveDate, i64)>,
    reused: &mut BTreeMap<NaiveDate, HashSet<String>>,
) -> bool {
    let listed = item.get("version").and_then(Value::as_i64);
    let start = flatten_calls::partition_date(item).ok();
    match (known.get(id), listed, start) {
        (Some(&(dt, version)), Some(listed), Some(start)) if version == listed && dt == start => {
            reused.entry(dt).or_default().insert(id.to_string());
            true
        }
        _ => false,
    }
}

/// Copies the rows (and raw lines) of the records `ids` names, per day, from the live
/// partitions into the run's staged files.
fn copy_records(
    lake: &Location,
    raw: Option<&Location>,
    ids: &BTreeMap<NaiveDate, HashSet<String>>,
    batches: &Batches,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Handle::current();
    for (dt, ids) in ids {
        let dt = *dt;
        reuse::copy_rows(lake, dt, ids, &runtime, |table, batch| {
            batches.write_rows_blocking(table, dt, batch)
        })?;
        if let Some(raw) = raw {
            reuse::raw_records(raw, dt, &runtime, |id, line| match ids.contains(id) {
                true => batches.send_line_blocking(StreamKind::CallRecords, dt, line),
                false => Ok(()),
            })?;
        }
    }
    Ok(())
}

/// The id to fetch for a listed item and the day it is listed on, or None for an item already listed in this run
/// (pages can shift while new records arrive) or outside the window.
fn listed_record_to_fetch(
    item: &Value,
    window: &Window,
    listed: &mut HashSet<String>,
) -> Option<(String, NaiveDate)> {
    let (id, start) = match flatten_calls::identify(item) {
        Ok((id, start)) => (id.to_string(), start),
        Err(problem) => {
            tracing::warn!("Graph listed an unusable call record ({problem}); skipped.");
            return None;
        }
    };
    if !window.contains(start) {
        tracing::warn!(call_id = %id, %start, "Graph listed call record {id} outside the window {window}; skipped.");
        return None;
    }
    listed
        .insert(id.clone())
        .then_some((id, start.date_naive()))
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use serde_json::json;

    use super::*;

    fn window() -> Window {
        Window::new(
            Utc.with_ymd_and_hms(2024, 5, 1, 6, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2024, 5, 3, 0, 0, 0).unwrap(),
        )
        .unwrap()
    }

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 5, d).unwrap()
    }

    #[test]
    fn a_listed_record_is_fetched_once_when_it_starts_in_the_window() {
        let mut listed = HashSet::new();
        let item = json!({"id": "a", "startDateTime": "2024-05-02T10:00:00Z"});
        assert_eq!(
            listed_record_to_fetch(&item, &window(), &mut listed),
            Some(("a".to_string(), day(2)))
        );
        // Listed again on a later page: skipped.
        assert_eq!(listed_record_to_fetch(&item, &window(), &mut listed), None);
        assert!(listed.contains("a"));
    }

    #[test]
    fn records_outside_the_window_or_without_id_or_start_are_skipped() {
        let mut listed = HashSet::new();
        for item in [
            json!({"id": "early", "startDateTime": "2024-05-01T05:59:59Z"}),
            json!({"id": "at-end", "startDateTime": "2024-05-03T00:00:00Z"}),
            json!({"startDateTime": "2024-05-02T10:00:00Z"}),
            json!({"id": "no-start"}),
            json!({"id": "bad-start", "startDateTime": "yesterday"}),
        ] {
            assert_eq!(
                listed_record_to_fetch(&item, &window(), &mut listed),
                None,
                "{item}"
            );
        }
        assert!(listed.is_empty());
    }

    #[test]
    fn a_record_is_reused_only_at_the_version_and_day_the_lake_holds() {
        let known = HashMap::from([("a".to_string(), (day(2), 3))]);
        let mut reused = BTreeMap::new();
        let item = |version: i64, start: &str| json!({"id": "a", "version": version, "startDateTime": start});
        assert!(!reuses(
            &item(4, "2024-05-02T10:00:00Z"),
            "a",
            &known,
            &mut reused
        ));
        assert!(!reuses(
            &item(3, "2024-05-01T10:00:00Z"),
            "a",
            &known,
            &mut reused
        ));
        assert!(!reuses(
            &item(3, "2024-05-02T10:00:00Z"),
            "b",
            &known,
            &mut reused
        ));
        assert!(!reuses(
            &json!({"id": "a", "startDateTime": "2024-05-02T10:00:00Z"}),
            "a",
            &known,
            &mut reused
        ));
        assert!(reused.is_empty());
        assert!(reuses(
            &item(3, "2024-05-02T10:00:00Z"),
            "a",
            &known,
            &mut reused
        ));
        assert_eq!(
            reused,
            BTreeMap::from([(day(2), HashSet::from(["a".to_string()]))])
        );
    }

    #[test]
    fn a_fetched_record_stays_on_its_listed_day() {
        let text = r#"{"id": "a", "startDateTime": "2024-05-02T23:59:00Z"}"#;
        let mut parser = RecordParser::default();
        let record = parser.parse(text).unwrap();
        assert_eq!(placement(record, day(2)), Ok(Placement::AsListed));
        let record = parser.parse(text).unwrap();
        assert_eq!(placement(record, day(3)), Ok(Placement::Moved(day(2))));
    }
}
