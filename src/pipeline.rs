//! The export run: lock → window → Graph → flatten → staged Parquet → publish → manifest
//! and state.
//!
//! Records are listed page by page and fetched with bounded concurrency (`buffered`, so the
//! output order follows the list order and reruns write identical files); each complete
//! record is flattened at once and dropped, and full batches go to a writer thread through
//! a bounded channel. Memory is bounded by the concurrency, the batch size and the open
//! partitions, never by the size of the window.
//!
//! Nothing is published unless every listed record was fetched, is known to be gone (404)
//! or was quarantined (`_rejected/`), and every file was written; a cancelled or failed run
//! removes its staging and leaves the lake as it was.
//!
//! The only module that sees everything: graph, streams, flatten, sink, state and progress.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::time::Instant;

use anyhow::Context;
use arrow_array::RecordBatch;
use chrono::{DateTime, NaiveDate, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::flatten::call_records::{self as flatten_calls, CallRecordTables};
use crate::flatten::{FlattenIssue, RowContext, TableBuilder};
use crate::graph::{GraphClient, GraphError, RequestStats};
use crate::privacy::Privacy;
use crate::progress::{Progress, Unit};
use crate::raw::{self, RawSink};
use crate::redact::redact;
use crate::reuse;
use crate::schema;
use crate::sink::store::Output;
use crate::sink::{self, ParquetSink, SinkError, SinkOptions, StagedRun, WrittenFile};
use crate::state::{self, ExportState, RunLock};
use crate::streams::logs::{self, LogStream};
use crate::streams::{StreamKind, call_records};
use crate::window::Window;

/// Rows a table buffers per partition before they go to the writer as one batch.
const BATCH_ROWS: usize = 8192;
/// Batches in flight between the flattener and the writer thread.
const WRITER_QUEUE: usize = 16;
/// Value problems logged one by one; the rest are counted in the summary.
const LOGGED_ISSUES: usize = 50;
/// Where quarantined records go: `<out>/_rejected/<run_id>/<stream>.jsonl`.
pub const REJECTED_DIR: &str = "_rejected";

/// What to export, and where.
#[derive(Debug, Clone)]
pub struct ExportPlan {
    pub window: Window,
    pub streams: Vec<StreamKind>,
    pub output: Output,
    pub concurrency: usize,
    /// Graph API version, recorded in the manifest.
    pub api_version: String,
    /// Longest window of one log-function request (at most 90 days).
    pub log_chunk_days: u32,
    /// What to write for personal data.
    pub privacy: Privacy,
    /// The raw landing zone's root, when what Graph returned is kept too.
    pub raw: Option<Output>,
    /// Refetch every listed call record, also those whose version the lake already holds.
    pub full: bool,
}

/// The run was stopped by a signal; nothing was published.
#[derive(Debug, thiserror::Error)]
#[error(
    "the export was interrupted before it finished; nothing was published and the staging area was removed"
)]
pub struct Cancelled;

/// Totals of one table.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct TableTotals {
    pub rows: u64,
    pub files: u64,
    pub bytes: u64,
}

/// A record that could not be read and was quarantined instead of exported.
#[derive(Debug, Clone, Serialize)]
pub struct RejectedRecord {
    pub stream: String,
    pub id: String,
    pub url: String,
    pub error: String,
}

/// What a run did; printed at the end and written to `<out>/_manifests/<run_id>.json`.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    pub version: &'static str,
    pub api_version: String,
    pub window_from: DateTime<Utc>,
    pub window_to: DateTime<Utc>,
    /// Per stream, the window actually exported (call records are limited to Graph's retention).
    pub stream_windows: BTreeMap<String, Option<Window>>,
    pub streams: Vec<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub elapsed_seconds: f64,
    pub records_exported: u64,
    /// Of the exported records, those whose listed version the lake already held: their
    /// rows were copied from the lake instead of fetched (none with `--full`).
    pub records_reused: u64,
    /// Listed records that Graph answered with 404 (expired, or not yet available).
    pub records_not_found: Vec<String>,
    /// Records that could not be read and were quarantined under `_rejected/<run_id>/`.
    pub records_rejected: Vec<RejectedRecord>,
    /// Values that could not be converted to their column and were written as null.
    pub value_issues: u64,
    pub tables: BTreeMap<String, TableTotals>,
    /// `table/dt=YYYY-MM-DD` partitions that now hold exactly this run's rows.
    pub partitions_replaced: Vec<String>,
    pub files: Vec<WrittenFile>,
    pub requests: RequestStats,
}

/// A batch for the writer thread.
struct TableBatch {
    table: &'static str,
    dt: NaiveDate,
    batch: RecordBatch,
}

/// What the writer thread receives: table rows, or one raw-zone line.
enum ToWriter {
    Batch(TableBatch),
    Raw {
        stream: &'static str,
        dt: NaiveDate,
        line: Vec<u8>,
    },
}

/// The staged output of a run: the tables, and the raw zone when one is kept.
struct Staged {
    tables: StagedRun,
    raw: Option<StagedRun>,
}

impl Staged {
    async fn discard(self) {
        self.tables.discard().await;
        if let Some(raw) = self.raw {
            raw.discard().await;
        }
    }
}

/// Counts kept while fetching.
#[derive(Default)]
struct FetchOutcome {
    records_exported: u64,
    records_reused: u64,
    records_not_found: Vec<String>,
    value_issues: u64,
}

/// Runs the export described by `plan` and publishes its partitions.
pub async fn export(
    client: &GraphClient,
    plan: &ExportPlan,
    progress: &Progress,
    cancel: &CancellationToken,
) -> anyhow::Result<RunSummary> {
    let started_at = Utc::now();
    let clock = Instant::now();
    let run_id = new_run_id(started_at);
    let _lock = RunLock::acquire(&plan.output, &run_id).await?;
    sink::remove_stale_staging(&plan.output)
        .await
        .context("cannot clean up after an earlier run that did not finish")?;
    tracing::info!(run_id, window = %plan.window, output = %plan.output, "Export started.");
    if let Some(raw) = &plan.raw {
        // The output lock covers the raw zone too: it is written only by runs of this lake.
        sink::remove_stale_staging(raw)
            .await
            .context("cannot clean up the raw zone after an earlier run that did not finish")?;
    }
    if !plan.window.is_whole_days() {
        tracing::warn!(
            window = %plan.window,
            "The window does not start and end at midnight UTC: the partitions of its first and last day will \
             hold only the calls of the window, replacing what they held before."
        );
    }
    let stream_windows = stream_windows(plan, started_at);

    let sink = ParquetSink::create(&plan.output, &run_id, SinkOptions::default())
        .with_context(|| format!("cannot prepare the output folder {}", plan.output))?;
    let raw_sink = match &plan.raw {
        Some(raw) => Some(
            RawSink::create(raw, &run_id)
                .with_context(|| format!("cannot prepare the raw zone {raw}"))?,
        ),
        None => None,
    };
    let (batches, receiver) = mpsc::channel(WRITER_QUEUE);
    let writer = std::thread::Builder::new()
        .name("parquet-writer".into())
        .spawn({
            let runtime = tokio::runtime::Handle::current();
            move || write_batches(sink, raw_sink, receiver, runtime)
        })
        .context("cannot start the writer thread")?;

    let mut quarantine = Quarantine::new(&plan.output, &run_id);
    let fetched = fetch_streams(
        client,
        plan,
        &stream_windows,
        &batches,
        &mut quarantine,
        progress,
        cancel,
    )
    .await;
    drop(batches);
    let staged = writer
        .join()
        .map_err(|_| anyhow::anyhow!("the Parquet writer thread panicked"))?;
    let (fetched, staged) = match (fetched, staged) {
        (Ok(fetched), Ok(staged)) => (fetched, staged),
        (Err(error), Ok(staged)) => {
            staged.discard().await;
            quarantine.discard().await;
            return Err(error);
        }
        (_, Err(error)) => {
            quarantine.discard().await;
            return Err(anyhow::Error::new(error)
                .context("nothing was published; the lake is as it was before this run"));
        }
    };

    let windows = stream_windows
        .iter()
        .filter_map(|(stream, window)| window.map(|w| (*stream, w)));
    let partitions = partitions_to_replace(&stream_windows);
    // Both are staged and fsynced before either is published; the raw zone goes first so
    // that tables never hold rows whose raw lines are missing.
    if let Some(raw) = staged.raw {
        let raw_partitions = windows
            .flat_map(|(stream, window)| {
                window
                    .days()
                    .into_iter()
                    .map(move |dt| (stream.name().to_string(), dt))
            })
            .collect();
        if let Err(error) = raw.publish(&raw_partitions).await {
            staged.tables.discard().await;
            return Err(anyhow::Error::new(error)
                .context("cannot publish the raw zone; the tables were not published"));
        }
    }
    let report = staged
        .tables
        .publish(&partitions)
        .await
        .context("cannot publish the exported partitions")?;

    let mut state = ExportState::load_from(&plan.output).await?;
    for (stream, window) in &stream_windows {
        if let Some(window) = window {
            state.record(stream.name(), *window);
        }
    }
    state
        .save_to(&plan.output)
        .await
        .context("the partitions were published, but the state file could not be written")?;

    let tables = table_totals(&plan.streams, &report.files);
    let summary = RunSummary {
        run_id,
        version: env!("CARGO_PKG_VERSION"),
        api_version: plan.api_version.clone(),
        window_from: plan.window.from,
        window_to: plan.window.to,
        stream_windows: stream_windows
            .iter()
            .map(|(stream, window)| (stream.name().to_string(), *window))
            .collect(),
        streams: plan.streams.iter().map(|s| s.name().to_string()).collect(),
        started_at,
        finished_at: Utc::now(),
        elapsed_seconds: clock.elapsed().as_secs_f64(),
        records_exported: fetched.records_exported,
        records_reused: fetched.records_reused,
        records_not_found: fetched.records_not_found,
        records_rejected: quarantine.finish(),
        value_issues: fetched.value_issues,
        tables,
        partitions_replaced: report
            .partitions_replaced
            .iter()
            .map(|(table, dt)| format!("{table}/{}", sink::partition_dir_name(*dt)))
            .collect(),
        files: report.files,
        requests: client.stats(),
    };
    let manifest = serde_json::to_vec_pretty(&summary).expect("the summary serializes");
    plan.output
        .write_atomically(&format!("_manifests/{}.json", summary.run_id), &manifest)
        .await
        .context("the partitions were published, but the run manifest could not be written")?;
    Ok(summary)
}

/// Every table of each `(stream, dt)`: the partitions a run replaces.
pub(crate) fn table_partitions(
    days: impl Iterator<Item = (StreamKind, NaiveDate)>,
) -> BTreeSet<(String, NaiveDate)> {
    days.flat_map(|(stream, dt)| {
        schema::tables_of_stream(stream.name()).map(move |table| (table.table.clone(), dt))
    })
    .collect()
}

/// Rows, files and bytes per table of `streams` (zero for a table without files).
pub(crate) fn table_totals(
    streams: &[StreamKind],
    files: &[WrittenFile],
) -> BTreeMap<String, TableTotals> {
    let mut tables: BTreeMap<String, TableTotals> = streams
        .iter()
        .flat_map(|stream| schema::tables_of_stream(stream.name()))
        .map(|table| (table.table.clone(), TableTotals::default()))
        .collect();
    for file in files {
        let totals = tables.entry(file.table.clone()).or_default();
        totals.rows += file.rows;
        totals.files += 1;
        totals.bytes += file.bytes;
    }
    tables
}

/// Fetches every stream in turn into the writer; the first failure ends the run.
async fn fetch_streams(
    client: &GraphClient,
    plan: &ExportPlan,
    stream_windows: &BTreeMap<StreamKind, Option<Window>>,
    batches: &mpsc::Sender<ToWriter>,
    quarantine: &mut Quarantine,
    progress: &Progress,
    cancel: &CancellationToken,
) -> anyhow::Result<FetchOutcome> {
    let mut outcome = FetchOutcome::default();
    for (stream, window) in stream_windows {
        let Some(window) = *window else { continue };
        match stream.log() {
            None => {
                let run = CallRecordRun {
                    client,
                    privacy: &plan.privacy,
                    lake: &plan.output,
                    raw: plan.raw.as_ref(),
                    full: plan.full,
                    window,
                    concurrency: plan.concurrency,
                    progress,
                    cancel,
                };
                let calls = run.fetch(batches, quarantine).await?;
                outcome.records_exported += calls.records_exported;
                outcome.records_reused += calls.records_reused;
                outcome.records_not_found.extend(calls.records_not_found);
                outcome.value_issues += calls.value_issues;
            }
            Some(log) => {
                let run = LogRun {
                    client,
                    privacy: &plan.privacy,
                    raw: plan.raw.is_some(),
                    log,
                    window,
                    chunk_days: plan.log_chunk_days,
                    progress,
                    cancel,
                };
                outcome.value_issues += run.fetch(batches, quarantine).await?;
            }
        }
    }
    Ok(outcome)
}

/// Per stream, the window it exports (None: nothing of it is available any more).
pub fn stream_windows(
    plan: &ExportPlan,
    now: DateTime<Utc>,
) -> BTreeMap<StreamKind, Option<Window>> {
    plan.streams
        .iter()
        .map(|stream| (*stream, stream_window(*stream, plan.window, now)))
        .collect()
}

/// The `(table, dt)` partitions a run with these stream windows replaces: every day of
/// each stream's window in each of its tables, also the days that turn out empty.
pub fn partitions_to_replace(
    stream_windows: &BTreeMap<StreamKind, Option<Window>>,
) -> BTreeSet<(String, NaiveDate)> {
    table_partitions(
        stream_windows
            .iter()
            .filter_map(|(stream, window)| window.map(|w| (*stream, w)))
            .flat_map(|(stream, window)| window.days().into_iter().map(move |dt| (stream, dt))),
    )
}

/// The part of `window` a stream can be exported for. Graph keeps call records for 30
/// days: days before that are skipped (with a warning), never replaced by empty partitions.
fn stream_window(stream: StreamKind, window: Window, now: DateTime<Utc>) -> Option<Window> {
    if stream != StreamKind::CallRecords {
        return Some(window);
    }
    let available_from = state::call_records_available_from(now);
    if window.from >= available_from {
        return Some(window);
    }
    if window.to <= available_from {
        tracing::warn!(
            window = %window,
            "Graph keeps call records for {} days: none of this window is available any more; the call tables \
             are left as they are.",
            state::CALL_RECORD_RETENTION_DAYS
        );
        return None;
    }
    let clamped = Window {
        from: available_from,
        to: window.to,
    };
    tracing::warn!(
        window = %window,
        exported = %clamped,
        "Graph keeps call records for {} days: call records are exported from {available_from} only; the call \
         tables of earlier days are left as they are.",
        state::CALL_RECORD_RETENTION_DAYS
    );
    Some(clamped)
}

/// The writer thread: batches and raw lines in, staged files out.
fn write_batches(
    mut sink: ParquetSink,
    mut raw: Option<RawSink>,
    mut receiver: mpsc::Receiver<ToWriter>,
    runtime: tokio::runtime::Handle,
) -> Result<Staged, SinkError> {
    while let Some(message) = receiver.blocking_recv() {
        let written = match (message, raw.as_mut()) {
            (ToWriter::Batch(TableBatch { table, dt, batch }), _) => sink.write(table, dt, &batch),
            (ToWriter::Raw { stream, dt, line }, Some(raw)) => raw.write_line(stream, dt, &line),
            (ToWriter::Raw { .. }, None) => unreachable!("raw lines are sent only with a raw zone"),
        };
        if let Err(error) = written {
            sink.discard();
            if let Some(raw) = raw {
                raw.discard();
            }
            return Err(error);
        }
    }
    let tables = match sink.finish() {
        Ok(tables) => tables,
        Err(error) => {
            if let Some(raw) = raw {
                raw.discard();
            }
            return Err(error);
        }
    };
    let raw = match raw.map(RawSink::finish).transpose() {
        Ok(raw) => raw,
        Err(error) => {
            runtime.block_on(tables.discard());
            return Err(error);
        }
    };
    Ok(Staged { tables, raw })
}

/// Sends one raw-zone line to the writer (when the run keeps a raw zone).
async fn send_raw(
    batches: &mpsc::Sender<ToWriter>,
    stream: StreamKind,
    dt: NaiveDate,
    line: Vec<u8>,
) -> anyhow::Result<()> {
    batches
        .send(ToWriter::Raw {
            stream: stream.name(),
            dt,
            line,
        })
        .await
        .map_err(|_| anyhow::anyhow!("the writer stopped"))
}

/// One stream's fetch: what it needs from the run.
struct CallRecordRun<'a> {
    client: &'a GraphClient,
    privacy: &'a Privacy,
    /// The lake, whose rows of unchanged records are reused.
    lake: &'a Output,
    /// The raw zone, if the run keeps one: every fetched record is also sent as a raw line,
    /// and an unchanged record is reused only with its line.
    raw: Option<&'a Output>,
    /// Refetch records whose version the lake already holds.
    full: bool,
    window: Window,
    concurrency: usize,
    progress: &'a Progress,
    cancel: &'a CancellationToken,
}

impl CallRecordRun<'_> {
    async fn fetch(
        &self,
        batches: &mpsc::Sender<ToWriter>,
        quarantine: &mut Quarantine,
    ) -> anyhow::Result<FetchOutcome> {
        let (client, window) = (self.client, self.window);
        let progress = self
            .progress
            .stream(StreamKind::CallRecords.name(), Unit::Records);
        let progress = &progress;
        let mut listed_ids = HashSet::new();
        let listing_complete = futures::stream::once(async move {
            progress.listing_complete();
            Ok::<Vec<Value>, GraphError>(Vec::new())
        });
        let known = match self.full {
            false => self.known_records().await?,
            true => HashMap::new(),
        };
        // Filled while the list is read, used after the fetches.
        let reused = RefCell::new(BTreeMap::<NaiveDate, HashSet<String>>::new());
        let ids = call_records::list(client, window.from, window.to)
            .map_ok(|page| {
                progress.page(page.len(), client.stats());
                page
            })
            .chain(listing_complete)
            .map_ok(|page| futures::stream::iter(page.into_iter().map(Ok::<Value, GraphError>)))
            .try_flatten()
            .try_filter_map(|item| {
                let keep = listed_record_to_fetch(&item, &window, &mut listed_ids).filter(|id| {
                    let reuse = reuses(&item, id, &known, &mut reused.borrow_mut());
                    if reuse {
                        progress.reused(1);
                    }
                    !reuse
                });
                futures::future::ready(Ok(keep))
            });
        // A record whose responses cannot be read is quarantined; any other failure
        // (throttled past all retries, unreachable, refused) ends the run unpublished.
        let records = ids
            .map_ok(|id| async move {
                match call_records::fetch_record(client, &id).await {
                    Ok(record) => Ok((id, Ok(record))),
                    Err(GraphError::Decode { url, message, body }) => {
                        Ok((id, Err((url, message, body))))
                    }
                    Err(error @ GraphError::TooLarge { .. }) => {
                        let message = error.to_string().into();
                        let GraphError::TooLarge { url, body, .. } = error else {
                            unreachable!()
                        };
                        Ok((id, Err((url, message, body))))
                    }
                    Err(other) => Err(other),
                }
            })
            .try_buffered(self.concurrency);
        let mut records = std::pin::pin!(records);

        let mut outcome = FetchOutcome::default();
        let mut partitions: BTreeMap<NaiveDate, CallRecordTables> = BTreeMap::new();
        let mut issues = Vec::new();
        loop {
            let next = tokio::select! {
                biased;
                () = self.cancel.cancelled() => return Err(Cancelled.into()),
                next = records.try_next() => next.context("cannot export the call records")?,
            };
            let Some((id, fetched)) = next else { break };
            progress.done(1, client.stats());
            let record = match fetched {
                Ok(Some(record)) => record,
                Ok(None) => {
                    tracing::warn!(
                        call_id = %id,
                        "Call record {id} was listed but Graph answered 404 (expired, or not yet available); skipped."
                    );
                    outcome.records_not_found.push(id);
                    continue;
                }
                Err((url, message, body)) => {
                    quarantine
                        .reject(StreamKind::CallRecords, &id, url.as_str(), &message, &body)
                        .await?;
                    continue;
                }
            };
            let dt = match flatten_calls::partition_date(&record) {
                Ok(dt) => dt,
                Err(problem) => {
                    let url = client.api_url(&format!("communications/callRecords/{id}"));
                    quarantine
                        .reject(
                            StreamKind::CallRecords,
                            &id,
                            url.as_str(),
                            &problem.0,
                            &record.to_string(),
                        )
                        .await?;
                    continue;
                }
            };
            let tables = partitions
                .entry(dt)
                .or_insert_with(|| CallRecordTables::new(self.privacy));
            flatten_calls::flatten(&record, tables, &mut issues).expect("identified above");
            if self.raw.is_some() {
                let line = serde_json::to_vec(&record).expect("a JSON value serializes");
                send_raw(batches, StreamKind::CallRecords, dt, line).await?;
            }
            report_issues(&mut issues, &mut outcome.value_issues);
            outcome.records_exported += 1;
            send_full_batches(tables.builders_mut(), dt, batches, BATCH_ROWS).await?;
        }
        for (dt, tables) in &mut partitions {
            send_full_batches(tables.builders_mut(), *dt, batches, 1).await?;
        }
        let reused = reused.take();
        outcome.records_reused = reused.values().map(|ids| ids.len() as u64).sum();
        outcome.records_exported += outcome.records_reused;
        if !reused.is_empty() {
            tracing::info!(
                records_reused = outcome.records_reused,
                lake = %self.lake,
                "Copying the rows of {} unchanged call records from the lake (and their raw lines).",
                outcome.records_reused
            );
            let (lake, raw) = (self.lake.clone(), self.raw.cloned());
            let sender = batches.clone();
            // Blocking reads, sent with `blocking_send`: off the async threads.
            tokio::task::spawn_blocking(move || copy_reused(&lake, raw.as_ref(), &reused, &sender))
                .await
                .context("the copy of unchanged records stopped")?
                .context("cannot copy the unchanged call records from the lake")?;
        }
        progress.finish();
        Ok(outcome)
    }

    /// `call_id → (dt, version)` of the records the window's partitions hold. With a raw zone,
    /// only records that are also in its partition: a reused record keeps its raw line too.
    async fn known_records(&self) -> anyhow::Result<HashMap<String, (NaiveDate, i64)>> {
        let (lake, raw, days) = (self.lake.clone(), self.raw.cloned(), self.window.days());
        // Blocking reads (files, or GETs waited for on this runtime): off the async threads.
        tokio::task::spawn_blocking(move || {
            let runtime = tokio::runtime::Handle::current();
            let mut known = HashMap::new();
            for dt in days {
                let mut versions = reuse::lake_versions(&lake, dt, &runtime)
                    .context("cannot read which call records the lake holds")?;
                if let Some(raw) = &raw {
                    let mut in_raw = HashSet::new();
                    reuse::raw_records(raw, dt, &runtime, |id, _| {
                        in_raw.insert(id.to_string());
                        Ok(())
                    })
                    .context("cannot read which call records the raw zone holds")?;
                    versions.retain(|id, _| in_raw.contains(id));
                }
                known.extend(versions.into_iter().map(|(id, v)| (id, (dt, v))));
            }
            Ok(known)
        })
        .await
        .context("the reading of the lake's call records stopped")?
    }
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

/// Copies the rows (and raw lines) of the reused records from the live partitions into the
/// run's staged files.
fn copy_reused(
    lake: &Output,
    raw: Option<&Output>,
    reused: &BTreeMap<NaiveDate, HashSet<String>>,
    batches: &mpsc::Sender<ToWriter>,
) -> anyhow::Result<()> {
    let send = |message| {
        batches
            .blocking_send(message)
            .map_err(|_| anyhow::anyhow!("the writer stopped"))
    };
    let runtime = tokio::runtime::Handle::current();
    for (dt, ids) in reused {
        let dt = *dt;
        reuse::copy_rows(lake, dt, ids, &runtime, |table, batch| {
            send(ToWriter::Batch(TableBatch { table, dt, batch }))
        })?;
        if let Some(raw) = raw {
            reuse::raw_records(raw, dt, &runtime, |id, line| match ids.contains(id) {
                true => send(ToWriter::Raw {
                    stream: StreamKind::CallRecords.name(),
                    dt,
                    line: line.to_vec(),
                }),
                false => Ok(()),
            })?;
        }
    }
    Ok(())
}

/// One log stream's fetch.
struct LogRun<'a> {
    client: &'a GraphClient,
    privacy: &'a Privacy,
    /// Whether rows also go to the raw zone.
    raw: bool,
    log: &'static LogStream,
    window: Window,
    chunk_days: u32,
    progress: &'a Progress,
    cancel: &'a CancellationToken,
}

impl LogRun<'_> {
    /// Fetches every chunk of the window; returns the number of values written as null.
    async fn fetch(
        &self,
        batches: &mpsc::Sender<ToWriter>,
        quarantine: &mut Quarantine,
    ) -> anyhow::Result<u64> {
        let stream = self.log.kind;
        let table = schema::tables_of_stream(stream.name())
            .next()
            .unwrap_or_else(|| panic!("schemas/ declares no table of stream {stream}"));
        let mut partitions: BTreeMap<NaiveDate, TableBuilder> = BTreeMap::new();
        let mut issues = Vec::new();
        let mut value_issues = 0;
        let progress = self.progress.stream(stream.name(), Unit::Rows);
        for chunk in self.log.chunks(self.window, self.chunk_days) {
            // A page that shifts while rows arrive can repeat a row; ids are unique per chunk
            // because chunks do not overlap.
            let mut seen = HashSet::new();
            let context = RowContext {
                report_from: chunk.from.timestamp_micros(),
                report_to: chunk.to.timestamp_micros(),
                ..RowContext::default()
            };
            let url = logs::request_url(self.client, self.log, chunk);
            let mut pages = std::pin::pin!(logs::pages(self.client, url.clone()));
            loop {
                let page = tokio::select! {
                    biased;
                    () = self.cancel.cancelled() => return Err(Cancelled.into()),
                    page = pages.try_next() => page.with_context(|| format!("cannot export {stream} for {chunk}"))?,
                };
                let Some(rows) = page else { break };
                progress.page(rows.len(), self.client.stats());
                let before: usize = partitions.values().map(TableBuilder::len).sum();
                let mut sent = 0;
                for row in rows {
                    let dt = match self.log.row_time(&row) {
                        None => chunk.from.date_naive(),
                        // Inclusive ends and ignored filters bring rows of other chunks.
                        Some(Ok(time)) if !chunk.contains(time) => continue,
                        Some(Ok(time)) => time.date_naive(),
                        Some(Err(problem)) => {
                            let id = self.log.row_id(&row).unwrap_or("(no id)").to_string();
                            quarantine
                                .reject(stream, &id, url.as_str(), &problem, &row.to_string())
                                .await?;
                            continue;
                        }
                    };
                    let id = match (self.log.id_field, self.log.row_id(&row)) {
                        (Some(field), None) => {
                            let problem = format!("the row has no {field}");
                            quarantine
                                .reject(stream, "(no id)", url.as_str(), &problem, &row.to_string())
                                .await?;
                            continue;
                        }
                        (_, Some(id)) if !seen.insert(id.to_string()) => continue,
                        (_, id) => id.unwrap_or_default().to_string(),
                    };
                    let builder = partitions
                        .entry(dt)
                        .or_insert_with(|| TableBuilder::with_privacy(table, self.privacy));
                    builder.append(
                        &row,
                        &RowContext {
                            call_id: &id,
                            ..context
                        },
                        &mut issues,
                    );
                    report_issues(&mut issues, &mut value_issues);
                    if self.raw {
                        send_raw(batches, stream, dt, raw::log_line(self.log, &row, chunk)).await?;
                    }
                    if builder.len() >= BATCH_ROWS {
                        sent += builder.len();
                        send_full_batches([&mut *builder], dt, batches, BATCH_ROWS).await?;
                    }
                }
                let after: usize = partitions.values().map(TableBuilder::len).sum();
                progress.done((after + sent - before) as u64, self.client.stats());
            }
        }
        for (dt, builder) in &mut partitions {
            send_full_batches([builder], *dt, batches, 1).await?;
        }
        progress.finish();
        Ok(value_issues)
    }
}

/// The id to fetch for a listed item, or None for an item already listed in this run
/// (pages can shift while new records arrive) or outside the window.
fn listed_record_to_fetch(
    item: &Value,
    window: &Window,
    listed: &mut HashSet<String>,
) -> Option<String> {
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
    listed.insert(id.clone()).then_some(id)
}

pub(crate) fn report_issues(issues: &mut Vec<FlattenIssue>, count: &mut u64) {
    for issue in issues.drain(..) {
        *count += 1;
        if *count as usize <= LOGGED_ISSUES {
            tracing::warn!(table = issue.table, column = issue.column, call_id = %issue.record_id, "Value written as null: {issue}.");
        } else if *count as usize == LOGGED_ISSUES + 1 {
            tracing::warn!("More values could not be converted; they are counted in the summary.");
        }
    }
}

/// Sends every table of `tables` holding at least `min_rows` rows to the writer.
async fn send_full_batches(
    tables: impl IntoIterator<Item = &mut TableBuilder>,
    dt: NaiveDate,
    batches: &mpsc::Sender<ToWriter>,
    min_rows: usize,
) -> anyhow::Result<()> {
    for builder in tables {
        if builder.len() >= min_rows {
            let batch = TableBatch {
                table: &builder.schema().table,
                dt,
                batch: builder.finish(),
            };
            // The writer only hangs up after a write error, which `export` reports.
            batches
                .send(ToWriter::Batch(batch))
                .await
                .map_err(|_| anyhow::anyhow!("the Parquet writer stopped"))?;
        }
    }
    Ok(())
}

/// Records that could not be read: `<out>/_rejected/<run_id>/<stream>.jsonl`, one JSON
/// object per record with its id, the URL, the error and the body as received. Each record
/// is durable before the run goes on: appended and synced on disk, or the whole file put
/// again on an object store (which cannot append; rejected records are few).
struct Quarantine {
    output: Output,
    /// `_rejected/<run_id>`, relative to the output root.
    dir: String,
    files: BTreeMap<&'static str, QuarantineFile>,
    rejected: Vec<RejectedRecord>,
}

enum QuarantineFile {
    Local(File),
    Object(Vec<u8>),
}

impl Quarantine {
    fn new(out: &Output, run_id: &str) -> Self {
        Quarantine {
            output: out.clone(),
            dir: format!("{REJECTED_DIR}/{run_id}"),
            files: BTreeMap::new(),
            rejected: Vec::new(),
        }
    }

    async fn reject(
        &mut self,
        stream: StreamKind,
        id: &str,
        url: &str,
        error: &str,
        body: &str,
    ) -> anyhow::Result<()> {
        // What a server sent back may quote a token or a signed URL.
        let (url, error, body) = (&*redact(url, &[]), &*redact(error, &[]), redact(body, &[]));
        let dir = self.output.display_path(&self.dir);
        tracing::error!(
            stream = stream.name(),
            id,
            url,
            "Record {id} could not be read ({error}); quarantined in {dir} and left out of the tables."
        );
        let relative = format!("{}/{}.jsonl", self.dir, stream.name());
        let file = match self.files.entry(stream.name()) {
            std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::btree_map::Entry::Vacant(entry) => entry.insert(match &self.output {
                Output::Local(root) => QuarantineFile::Local(
                    sink::create_private_file(&root.join(&relative))
                        .with_context(|| format!("cannot quarantine record {id}"))?,
                ),
                Output::Object(_) => QuarantineFile::Object(Vec::new()),
            }),
        };
        let line = json!({"id": id, "url": url, "error": error, "body": body});
        match (file, &self.output) {
            (QuarantineFile::Local(file), _) => writeln!(file, "{line}")
                .and_then(|()| file.sync_data())
                .with_context(|| format!("cannot quarantine record {id} in {dir}"))?,
            (QuarantineFile::Object(lines), Output::Object(object)) => {
                writeln!(lines, "{line}").expect("writing to memory");
                object
                    .put(
                        &relative,
                        lines.clone().into(),
                        object_store::PutMode::Overwrite,
                    )
                    .await
                    .with_context(|| format!("cannot quarantine record {id} in {dir}"))?;
            }
            (QuarantineFile::Object(_), Output::Local(_)) => unreachable!("opened for the output"),
        }
        self.rejected.push(RejectedRecord {
            stream: stream.name().into(),
            id: id.into(),
            url: url.into(),
            error: error.into(),
        });
        Ok(())
    }

    fn finish(self) -> Vec<RejectedRecord> {
        self.rejected
    }

    /// A run that publishes nothing keeps no quarantine either: its rerun fetches again.
    async fn discard(self) {
        if self.files.is_empty() {
            return;
        }
        match &self.output {
            Output::Local(root) => {
                let _ = std::fs::remove_dir_all(root.join(&self.dir));
            }
            Output::Object(object) => {
                let _ = object.delete_all(&self.dir).await;
            }
        }
    }
}

/// A run id that sorts by start time and is unique across concurrent runs.
pub(crate) fn new_run_id(started_at: DateTime<Utc>) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{}-{}", started_at.format("%Y%m%dT%H%M%SZ"), &random[..8])
}
