//! The export run: run lifecycle ([`crate::run`]) → window → Graph → flatten → staged
//! Parquet → one commit of every partition, the state and the manifest.
//!
//! Records are listed page by page and fetched with bounded concurrency (`buffered`, so the
//! output order follows the list order and reruns write identical files); each complete
//! record arrives as its JSON text (no tree of it is built), is flattened at once by the
//! parser `reflatten` uses, becomes its raw-zone line as it is, and is dropped; full
//! batches go to a writer thread through a bounded channel. Memory is bounded by the
//! concurrency, the batch size and the open partitions, never by the size of the window.
//! Rows the lake already holds are copied instead of fetched ([`crate::reuse`]): unchanged
//! records, rows outside a partial window on its edge days, quarantined records' rows.
//!
//! Nothing is published unless every listed record was fetched, is known to be gone (404)
//! or was quarantined (`_rejected/`, and listed in the state to be fetched again), and every
//! file was written; a cancelled or failed run removes its staging and leaves the lake as it
//! was.
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

use crate::commit::FileChange;
use crate::flatten::call_records::{self as flatten_calls, CallRecordTables, RecordParser};
use crate::flatten::dom::Item;
use crate::flatten::{FlattenIssue, RowContext, TableBuilder};
use crate::graph::{GraphClient, GraphError, RequestStats};
use crate::privacy::Privacy;
use crate::progress::{Progress, StreamProgress, Unit};
use crate::raw::{self, RawSink};
use crate::redact::redact;
use crate::reuse;
use crate::run::Run;
use crate::schema::{self, TableSchema};
use crate::sink::store::Output;
use crate::sink::{self, ParquetSink, SinkError, SinkOptions, StagedRun, WrittenFile};
use crate::state::{self, ExportState};
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
    /// Records that the window's first or last day held outside the window (it covers
    /// only part of those days): kept as they were, with their raw lines.
    pub records_kept_outside_window: u64,
    /// Records quarantined by this run whose rows the lake held: those rows were kept.
    pub records_quarantined_kept: u64,
    /// Listed records that Graph answered with 404 (expired, or not yet available).
    pub records_not_found: Vec<String>,
    /// Records whose details start on another day than the list said: placed by the
    /// listed day (a run replaces only its window's days).
    pub records_moved: Vec<String>,
    /// Records that could not be read and were quarantined under `_rejected/<run_id>/`.
    pub records_rejected: Vec<RejectedRecord>,
    /// Call records quarantined by this run or earlier ones that later runs fetch again
    /// (listed in `_state.json`).
    pub records_quarantined_pending: u64,
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
    records_kept_outside_window: u64,
    /// Quarantined in this run, but the lake's rows of them were kept.
    records_quarantined_kept: u64,
    records_not_found: Vec<String>,
    records_moved: Vec<String>,
    /// The call records fetched and written by this run.
    exported_ids: BTreeSet<String>,
    /// The call records quarantined in this run, by the day they were listed on.
    quarantined: BTreeMap<NaiveDate, BTreeSet<String>>,
    /// Days outside the window whose partitions the run rewrites because records
    /// quarantined there earlier were fetched now.
    retried_days: BTreeSet<NaiveDate>,
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
    let run = Run::begin(&plan.output, plan.raw.as_ref(), started_at).await?;
    // Read and checked before any request: a damaged state file stops the run here.
    let (state, state_text) = match ExportState::read_from(&plan.output).await {
        Ok(state) => state,
        Err(error) => {
            run.discard().await;
            return Err(error.into());
        }
    };
    tracing::info!(run_id = run.id, window = %plan.window, output = %plan.output, "Export started.");
    if !plan.window.is_whole_days() {
        tracing::info!(
            window = %plan.window,
            "The window covers part of its first or last day: those days keep the rows the lake holds outside \
             the window, and only the window's rows are replaced."
        );
    }
    let scope = Scope::plan(plan, &state, started_at).await?;
    let (fetched, staged, quarantine) =
        match stage(client, plan, &run, &scope, progress, cancel).await {
            Ok(staged) => staged,
            Err(error) => {
                run.discard().await;
                return Err(error);
            }
        };
    let days = scope.days(&fetched.retried_days);
    let mut zones = Vec::new();
    if let Some(raw) = &staged.raw {
        let raw_partitions = days
            .iter()
            .map(|(s, dt)| (s.name().to_string(), *dt))
            .collect();
        zones.push(raw.changes(&raw_partitions).0);
    }
    let (tables_change, report) = staged.tables.changes(&table_partitions(days.into_iter()));
    zones.push(tables_change);
    let new_state = scope.next_state(state, &fetched, started_at);
    let summary = RunSummary {
        run_id: run.id.clone(),
        version: env!("CARGO_PKG_VERSION"),
        api_version: plan.api_version.clone(),
        window_from: plan.window.from,
        window_to: plan.window.to,
        stream_windows: scope
            .windows
            .iter()
            .map(|(stream, window)| (stream.name().to_string(), *window))
            .collect(),
        streams: plan.streams.iter().map(|s| s.name().to_string()).collect(),
        started_at,
        finished_at: Utc::now(),
        elapsed_seconds: clock.elapsed().as_secs_f64(),
        records_exported: fetched.records_exported,
        records_reused: fetched.records_reused,
        records_kept_outside_window: fetched.records_kept_outside_window,
        records_quarantined_kept: fetched.records_quarantined_kept,
        records_not_found: fetched.records_not_found,
        records_moved: fetched.records_moved,
        records_rejected: quarantine.finish(),
        records_quarantined_pending: new_state
            .quarantined
            .values()
            .map(|ids| ids.len() as u64)
            .sum(),
        value_issues: fetched.value_issues,
        tables: table_totals(&plan.streams, &report.files),
        partitions_replaced: report.partitions_replaced,
        files: report.files,
        requests: client.stats(),
    };
    let state_change = FileChange {
        path: state::STATE_FILE.to_string(),
        before: state_text,
        after: new_state.to_text(),
    };
    if let Err(error) = run
        .publish(zones, vec![state_change, run.manifest(&summary)])
        .await
    {
        let _ = plan
            .output
            .remove_all(&format!("{REJECTED_DIR}/{}", run.id))
            .await;
        return Err(anyhow::Error::new(error).context(
            "cannot publish the exported partitions; nothing was published, the lake is as it was before this run",
        ));
    }
    Ok(summary)
}

/// What a run covers: per stream the window it exports, and the call records that earlier
/// runs quarantined, fetched again.
struct Scope {
    windows: BTreeMap<StreamKind, Option<Window>>,
    retry: BTreeMap<NaiveDate, BTreeSet<String>>,
}

impl Scope {
    async fn plan(
        plan: &ExportPlan,
        state: &ExportState,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Self> {
        let fingerprint = reuse::rows_fingerprint(&plan.privacy);
        let windows = widened_stream_windows(plan, &fingerprint, now).await?;
        let retry = match windows.get(&StreamKind::CallRecords) {
            Some(window) => state.quarantined_to_retry(*window, now),
            None => BTreeMap::new(),
        };
        Ok(Scope { windows, retry })
    }

    /// The `(stream, dt)` partitions the run replaces: every day of each stream's window,
    /// and the days outside it whose quarantined records were fetched now.
    fn days(&self, retried_days: &BTreeSet<NaiveDate>) -> Vec<(StreamKind, NaiveDate)> {
        let windows = self.windows.iter().filter_map(|(s, w)| w.map(|w| (*s, w)));
        let mut days: Vec<_> = windows
            .flat_map(|(stream, window)| window.days().into_iter().map(move |dt| (stream, dt)))
            .collect();
        days.extend(retried_days.iter().map(|dt| (StreamKind::CallRecords, *dt)));
        days
    }

    /// The state after the run: its windows exported, its quarantine updated (records
    /// past Graph's retention are named in a loud warning and dropped).
    fn next_state(
        &self,
        mut state: ExportState,
        fetched: &FetchOutcome,
        now: DateTime<Utc>,
    ) -> ExportState {
        for (stream, window) in &self.windows {
            if let Some(window) = window {
                state.record(stream.name(), *window);
            }
        }
        let expired = state.update_quarantine(&fetched.exported_ids, &fetched.quarantined, now);
        for (dt, ids) in expired {
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            tracing::error!(
                %dt,
                "Call records quarantined on {dt} could not be fetched again before Graph's {}-day retention ended \
                 and are lost for the lake: {}. Their responses are in _rejected/.",
                state::CALL_RECORD_RETENTION_DAYS,
                ids.join(", ")
            );
        }
        state
    }
}

/// Fetches every stream into staged files: the run up to its commit.
async fn stage(
    client: &GraphClient,
    plan: &ExportPlan,
    run: &Run,
    scope: &Scope,
    progress: &Progress,
    cancel: &CancellationToken,
) -> anyhow::Result<(FetchOutcome, Staged, Quarantine)> {
    let options = SinkOptions {
        footer: reuse::fingerprint_footer(&reuse::rows_fingerprint(&plan.privacy)),
        ..SinkOptions::default()
    };
    let sink = ParquetSink::create(&plan.output, &run.id, options)
        .with_context(|| format!("cannot prepare the output folder {}", plan.output))?;
    let raw_sink = match &plan.raw {
        Some(raw) => Some(
            RawSink::create(raw, &run.id)
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

    let mut quarantine = Quarantine::new(&plan.output, &run.id);
    let fetched = fetch_streams(
        client,
        plan,
        scope,
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
    match (fetched, staged) {
        (Ok(fetched), Ok(staged)) => Ok((fetched, staged, quarantine)),
        (Err(error), Ok(staged)) => {
            staged.discard().await;
            quarantine.discard().await;
            Err(error)
        }
        (_, Err(error)) => {
            quarantine.discard().await;
            Err(anyhow::Error::new(error)
                .context("nothing was published; the lake is as it was before this run"))
        }
    }
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
    scope: &Scope,
    batches: &mpsc::Sender<ToWriter>,
    quarantine: &mut Quarantine,
    progress: &Progress,
    cancel: &CancellationToken,
) -> anyhow::Result<FetchOutcome> {
    let mut outcome = FetchOutcome::default();
    for (stream, window) in &scope.windows {
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
                    retry: &scope.retry,
                    concurrency: plan.concurrency,
                    progress,
                    cancel,
                };
                let calls = run.fetch(batches, quarantine).await?;
                outcome.records_exported += calls.records_exported;
                outcome.records_reused += calls.records_reused;
                outcome.records_kept_outside_window += calls.records_kept_outside_window;
                outcome.records_quarantined_kept += calls.records_quarantined_kept;
                outcome.records_not_found.extend(calls.records_not_found);
                outcome.records_moved.extend(calls.records_moved);
                outcome.exported_ids.extend(calls.exported_ids);
                outcome.quarantined.extend(calls.quarantined);
                outcome.retried_days.extend(calls.retried_days);
                outcome.value_issues += calls.value_issues;
            }
            Some(log) => {
                let run = LogRun {
                    client,
                    privacy: &plan.privacy,
                    lake: &plan.output,
                    raw: plan.raw.as_ref(),
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

/// Per stream, the window it exports (None: nothing of it is available any more), each
/// widened to whole days where the lake cannot keep an edge day's rows as they are
/// ([`reuse::widen_for_fingerprint`]).
async fn widened_stream_windows(
    plan: &ExportPlan,
    fingerprint: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<BTreeMap<StreamKind, Option<Window>>> {
    let widened =
        reuse::widen_for_fingerprints(&plan.output, &plan.streams, plan.window, fingerprint)
            .await?;
    Ok(widened
        .into_iter()
        .map(|(stream, window)| (stream, stream_window(stream, window, now)))
        .collect())
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
    /// Records quarantined by earlier runs on days outside the window, fetched again.
    retry: &'a BTreeMap<NaiveDate, BTreeSet<String>>,
    concurrency: usize,
    progress: &'a Progress,
    cancel: &'a CancellationToken,
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
    async fn fetch(
        &self,
        batches: &mpsc::Sender<ToWriter>,
        quarantine: &mut Quarantine,
    ) -> anyhow::Result<FetchOutcome> {
        let progress = self
            .progress
            .stream(StreamKind::CallRecords.name(), Unit::Records);
        let holdings = self.lake_holdings().await?;
        let mut listed_ids = HashSet::new();
        let mut reused = BTreeMap::new();
        let mut flattener = RecordFlattener::new(self.privacy, batches, self.raw.is_some());
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
        batches: &mpsc::Sender<ToWriter>,
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
        // Blocking reads, sent with `blocking_send`: off the async threads.
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
        let fingerprint = reuse::rows_fingerprint(self.privacy);
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
    raw: &Output,
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
    batches: &'a mpsc::Sender<ToWriter>,
    raw: bool,
    partitions: BTreeMap<NaiveDate, CallRecordTables>,
    issues: Vec<FlattenIssue>,
    outcome: FetchOutcome,
}

impl<'a> RecordFlattener<'a> {
    fn new(privacy: &'a Privacy, batches: &'a mpsc::Sender<ToWriter>, raw: bool) -> Self {
        RecordFlattener {
            privacy,
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
            send_raw(
                self.batches,
                StreamKind::CallRecords,
                dt,
                record.into_bytes(),
            )
            .await?;
        }
        report_issues(&mut self.issues, &mut self.outcome.value_issues);
        self.outcome.records_exported += 1;
        self.outcome.exported_ids.insert(id.to_string());
        let tables = self.partitions.get_mut(&dt).expect("flattened into it");
        send_full_batches(tables.builders_mut(), dt, self.batches, BATCH_ROWS).await
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
            .or_insert_with(|| CallRecordTables::new(self.privacy));
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
            send_full_batches(tables.builders_mut(), *dt, self.batches, 1).await?;
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
    lake: &Output,
    raw: Option<&Output>,
    ids: &BTreeMap<NaiveDate, HashSet<String>>,
    batches: &mpsc::Sender<ToWriter>,
) -> anyhow::Result<()> {
    let send = |message| {
        batches
            .blocking_send(message)
            .map_err(|_| anyhow::anyhow!("the writer stopped"))
    };
    let runtime = tokio::runtime::Handle::current();
    for (dt, ids) in ids {
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
    /// The lake, whose rows outside the window on its edge days are kept.
    lake: &'a Output,
    /// The raw zone, if the run keeps one: every row also goes there as a line.
    raw: Option<&'a Output>,
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
                    if self.raw.is_some() {
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
        self.keep_outside_window(table, batches).await?;
        progress.finish();
        Ok(value_issues)
    }

    /// Copies the lake's rows (and raw lines) of the window's edge days that lie outside
    /// the window: the run replaces only the rows of its window.
    async fn keep_outside_window(
        &self,
        table: &'static TableSchema,
        batches: &mpsc::Sender<ToWriter>,
    ) -> anyhow::Result<()> {
        let window = self.window;
        let edge_days: Vec<NaiveDate> = window
            .days()
            .into_iter()
            .filter(|dt| !window.covers_day(*dt))
            .collect();
        if edge_days.is_empty() {
            return Ok(());
        }
        let (lake, raw, log) = (self.lake.clone(), self.raw.cloned(), self.log);
        let sender = batches.clone();
        tokio::task::spawn_blocking(move || {
            let runtime = tokio::runtime::Handle::current();
            let send = |message| {
                sender
                    .blocking_send(message)
                    .map_err(|_| anyhow::anyhow!("the writer stopped"))
            };
            for dt in edge_days {
                reuse::copy_rows_outside_window(
                    &lake,
                    log.kind,
                    dt,
                    window,
                    &runtime,
                    |table, batch| send(ToWriter::Batch(TableBatch { table, dt, batch })),
                )?;
                if let Some(raw) = &raw {
                    reuse::raw_log_lines_outside(raw, log, dt, window, &runtime, |line| {
                        send(ToWriter::Raw {
                            stream: log.kind.name(),
                            dt,
                            line: line.to_vec(),
                        })
                    })?;
                }
            }
            anyhow::Ok(())
        })
        .await
        .context("the copy of log rows from the lake stopped")?
        .with_context(|| {
            format!(
                "cannot keep the {} rows outside the window {window}",
                table.table
            )
        })
    }
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
