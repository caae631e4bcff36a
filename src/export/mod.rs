//! The export run: run lifecycle ([`crate::run`]) → window → Graph → flatten → staged
//! Parquet → one commit of every partition, the state and the manifest.
//!
//! Records are listed page by page and fetched with bounded concurrency (`buffered`, so the
//! output order follows the list order and reruns write identical files); each complete
//! record arrives as its JSON text (no tree of it is built), is flattened at once by the
//! parser `reflatten` uses, becomes its raw-zone line as it is, and is dropped; full
//! batches go to the run's writer thread through a bounded channel. Memory is bounded by
//! the concurrency, the batch size and the open partitions, never by the size of the window.
//! Rows the lake already holds are copied instead of fetched ([`crate::reuse`]): unchanged
//! records, rows outside a partial window on its edge days, quarantined records' rows.
//!
//! Nothing is published unless every listed record was fetched, is known to be gone (404)
//! or was quarantined (`_rejected/`, and listed in the state to be fetched again), and every
//! file was written; a cancelled or failed run removes its staging and leaves the lake as it
//! was.
//!
//! Here: the plan, the summary and the run's course; `scope`: which windows and days a
//! run covers; `call_records` and `logs`: fetching each kind of stream.
//!
//! The only module that sees everything: graph, streams, flatten, run, state and progress.

mod call_records;
mod logs;
mod scope;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::commit::FileChange;
use crate::graph::{ApiVersion, GraphClient, RequestStats};
use crate::privacy::Privacy;
use crate::progress::Progress;
use crate::quality::Derivation;
use crate::run::Run;
use crate::run::quarantine::{Quarantine, RejectedRecord};
use crate::run::summary::Published;
use crate::run::writer::{Batches, Staged};
use crate::state::{self, ExportState};
use crate::store::Location;
use crate::streams::StreamKind;
use crate::window::Window;
use call_records::CallRecordRun;
use logs::LogRun;
use scope::Scope;
pub use scope::{partitions_to_replace, stream_windows};

/// Rows a table buffers per partition before they go to the writer as one batch.
const BATCH_ROWS: usize = 8192;
/// Batches in flight between the flattener and the writer thread.
const WRITER_QUEUE: usize = 16;

/// What to export, and where.
#[derive(Debug, Clone)]
pub struct ExportPlan {
    pub window: Window,
    pub streams: Vec<StreamKind>,
    pub output: Location,
    /// How the tables are written.
    pub format: crate::commit::TableFormat,
    pub concurrency: usize,
    /// Graph API version, recorded in the manifest.
    pub api_version: ApiVersion,
    /// Longest window of one log-function request (at most 90 days).
    pub log_chunk_days: u32,
    /// What to write for personal data.
    pub privacy: Privacy,
    /// How streams are classified and endpoints placed (`[quality]`, `[sites]`).
    pub derivation: Derivation,
    /// The raw landing zone's root, when what Graph returned is kept too.
    pub raw: Option<Location>,
    /// Refetch every listed call record, also those whose version the lake already holds.
    pub full: bool,
}

/// The run was stopped by a signal; nothing was published.
#[derive(Debug, thiserror::Error)]
#[error(
    "the export was interrupted before it finished; nothing was published and the staging area was removed"
)]
pub struct Cancelled;

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
    #[serde(flatten)]
    pub published: Published,
    pub requests: RequestStats,
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
    let (run, state, state_text) = begin(plan, started_at).await?;
    let scope = Scope::plan(plan, &state, started_at).await?;
    let mut quarantine = Quarantine::new(&plan.output, &run.id);
    let (fetched, staged) = match stage(
        client,
        plan,
        &run,
        &scope,
        &mut quarantine,
        progress,
        cancel,
    )
    .await
    {
        Ok(staged) => staged,
        Err(error) => {
            quarantine.discard().await;
            return Err(error);
        }
    };
    let new_state = scope.next_state(state, &fetched, started_at);
    let (zones, mut published) = staged.changes(&plan.streams, &scope.days(&fetched.retried_days));
    let (zones, table_versions) = match run.plan(zones).await {
        Ok(planned) => planned,
        Err(error) => {
            quarantine.discard().await;
            return Err(error);
        }
    };
    published.table_versions = table_versions;
    let summary = RunSummary {
        run_id: run.id.clone(),
        version: env!("CARGO_PKG_VERSION"),
        api_version: plan.api_version.name().into(),
        window_from: plan.window.from,
        window_to: plan.window.to,
        stream_windows: scope.stream_windows(),
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
        records_rejected: quarantine.rejected().to_vec(),
        records_quarantined_pending: new_state
            .quarantined
            .values()
            .map(|ids| ids.len() as u64)
            .sum(),
        value_issues: fetched.value_issues,
        published,
        requests: client.stats(),
    };
    let state_change = FileChange {
        path: state::STATE_FILE.to_string(),
        before: state_text,
        after: new_state.to_text(),
    };
    if let Err(error) = run.publish(zones, vec![state_change], &summary).await {
        quarantine.discard().await;
        return Err(anyhow::Error::new(error).context(
            "cannot publish the exported partitions; nothing was published, the lake is as it was before this run",
        ));
    }
    Ok(summary)
}

/// Starts the run: the lake's lock, and its state, read and checked before any request (a
/// damaged state file stops the run here).
async fn begin(
    plan: &ExportPlan,
    started_at: DateTime<Utc>,
) -> anyhow::Result<(Run, ExportState, Option<String>)> {
    let run = Run::begin(&plan.output, plan.raw.as_ref(), plan.format, started_at).await?;
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
    Ok((run, state, state_text))
}

/// Fetches every stream into staged files: the run up to its commit. On an error the
/// run's staging is removed (its quarantine is the caller's).
async fn stage(
    client: &GraphClient,
    plan: &ExportPlan,
    run: &Run,
    scope: &Scope,
    quarantine: &mut Quarantine,
    progress: &Progress,
    cancel: &CancellationToken,
) -> anyhow::Result<(FetchOutcome, Staged)> {
    let (writer, batches) = run.writer(&scope.fingerprint, WRITER_QUEUE).await?;
    let fetched = fetch_streams(client, plan, scope, &batches, quarantine, progress, cancel).await;
    drop(batches);
    run.staged(writer, fetched).await
}

/// Fetches every stream in turn into the writer; the first failure ends the run.
async fn fetch_streams(
    client: &GraphClient,
    plan: &ExportPlan,
    scope: &Scope,
    batches: &Batches,
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
                    derivation: &plan.derivation,
                    lake: &plan.output,
                    raw: plan.raw.as_ref(),
                    full: plan.full,
                    window,
                    retry: &scope.retry,
                    concurrency: plan.concurrency,
                    progress,
                    cancel,
                };
                // One stream of call records, the others logs: only their value issues add up.
                let value_issues = outcome.value_issues;
                outcome = run.fetch(batches, quarantine).await?;
                outcome.value_issues += value_issues;
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
