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

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::File;
use std::io::Write;
use std::time::Instant;

use anyhow::Context;
use arrow_array::RecordBatch;
use chrono::{DateTime, NaiveDate, Utc};
use futures::TryStreamExt;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::flatten::call_records::{self as flatten_calls, CallRecordTables};
use crate::flatten::{FlattenIssue, RowContext, TableBuilder};
use crate::graph::{GraphClient, GraphError, RequestStats};
use crate::privacy::Privacy;
use crate::progress::Progress;
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

/// Counts kept while fetching.
#[derive(Default)]
struct FetchOutcome {
    records_exported: u64,
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
    if !plan.window.is_whole_days() {
        tracing::warn!(
            window = %plan.window,
            "The window does not start and end at midnight UTC: the partitions of its first and last day will \
             hold only the calls of the window, replacing what they held before."
        );
    }
    let stream_windows: BTreeMap<StreamKind, Option<Window>> = plan
        .streams
        .iter()
        .map(|stream| (*stream, stream_window(*stream, plan.window, started_at)))
        .collect();

    let sink = ParquetSink::create(&plan.output, &run_id, SinkOptions::default())
        .with_context(|| format!("cannot prepare the output folder {}", plan.output))?;
    let (batches, receiver) = mpsc::channel(WRITER_QUEUE);
    let writer = std::thread::Builder::new()
        .name("parquet-writer".into())
        .spawn(move || write_batches(sink, receiver))
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

    let partitions: BTreeSet<(String, NaiveDate)> = stream_windows
        .iter()
        .filter_map(|(stream, window)| window.map(|w| (*stream, w)))
        .flat_map(|(stream, window)| {
            schema::tables_of_stream(stream.name()).flat_map(move |table| {
                window
                    .days()
                    .into_iter()
                    .map(move |dt| (table.table.clone(), dt))
            })
        })
        .collect();
    let report = staged
        .publish(&partitions)
        .await
        .context("cannot publish the exported partitions")?;
    progress.finish();

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

    let mut tables: BTreeMap<String, TableTotals> = plan
        .streams
        .iter()
        .flat_map(|stream| schema::tables_of_stream(stream.name()))
        .map(|table| (table.table.clone(), TableTotals::default()))
        .collect();
    for file in &report.files {
        let totals = tables.entry(file.table.clone()).or_default();
        totals.rows += file.rows;
        totals.files += 1;
        totals.bytes += file.bytes;
    }
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

/// Fetches every stream in turn into the writer; the first failure ends the run.
async fn fetch_streams(
    client: &GraphClient,
    plan: &ExportPlan,
    stream_windows: &BTreeMap<StreamKind, Option<Window>>,
    batches: &mpsc::Sender<TableBatch>,
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
                    window,
                    concurrency: plan.concurrency,
                    progress,
                    cancel,
                };
                let calls = run.fetch(batches, quarantine).await?;
                outcome.records_exported += calls.records_exported;
                outcome.records_not_found.extend(calls.records_not_found);
                outcome.value_issues += calls.value_issues;
            }
            Some(log) => {
                let run = LogRun {
                    client,
                    privacy: &plan.privacy,
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

/// The writer thread: batches in, staged files out.
fn write_batches(
    mut sink: ParquetSink,
    mut receiver: mpsc::Receiver<TableBatch>,
) -> Result<StagedRun, SinkError> {
    while let Some(TableBatch { table, dt, batch }) = receiver.blocking_recv() {
        if let Err(error) = sink.write(table, dt, &batch) {
            sink.discard();
            return Err(error);
        }
    }
    sink.finish()
}

/// One stream's fetch: what it needs from the run.
struct CallRecordRun<'a> {
    client: &'a GraphClient,
    privacy: &'a Privacy,
    window: Window,
    concurrency: usize,
    progress: &'a Progress,
    cancel: &'a CancellationToken,
}

impl CallRecordRun<'_> {
    async fn fetch(
        &self,
        batches: &mpsc::Sender<TableBatch>,
        quarantine: &mut Quarantine,
    ) -> anyhow::Result<FetchOutcome> {
        let (client, window, progress) = (self.client, self.window, self.progress);
        let mut listed_ids = HashSet::new();
        let ids = call_records::list(client, window.from, window.to)
            .map_ok(|page| {
                progress.page_listed(page.len());
                futures::stream::iter(page.into_iter().map(Ok::<Value, GraphError>))
            })
            .try_flatten()
            .try_filter_map(|item| {
                let keep = listed_record_to_fetch(&item, &window, &mut listed_ids);
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
            progress.record_done(client.stats());
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
            report_issues(&mut issues, &mut outcome.value_issues);
            outcome.records_exported += 1;
            send_full_batches(tables.builders_mut(), dt, batches, BATCH_ROWS).await?;
        }
        for (dt, tables) in &mut partitions {
            send_full_batches(tables.builders_mut(), *dt, batches, 1).await?;
        }
        Ok(outcome)
    }
}

/// One log stream's fetch.
struct LogRun<'a> {
    client: &'a GraphClient,
    privacy: &'a Privacy,
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
        batches: &mpsc::Sender<TableBatch>,
        quarantine: &mut Quarantine,
    ) -> anyhow::Result<u64> {
        let stream = self.log.kind;
        let table = schema::tables_of_stream(stream.name())
            .next()
            .unwrap_or_else(|| panic!("schemas/ declares no table of stream {stream}"));
        let mut partitions: BTreeMap<NaiveDate, TableBuilder> = BTreeMap::new();
        let mut issues = Vec::new();
        let mut value_issues = 0;
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
                self.progress.page_listed(rows.len());
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
                    if builder.len() >= BATCH_ROWS {
                        send_full_batches([&mut *builder], dt, batches, BATCH_ROWS).await?;
                    }
                }
            }
        }
        for (dt, builder) in &mut partitions {
            send_full_batches([builder], *dt, batches, 1).await?;
        }
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

fn report_issues(issues: &mut Vec<FlattenIssue>, count: &mut u64) {
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
    batches: &mpsc::Sender<TableBatch>,
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
                .send(batch)
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
fn new_run_id(started_at: DateTime<Utc>) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{}-{}", started_at.format("%Y%m%dT%H%M%SZ"), &random[..8])
}
