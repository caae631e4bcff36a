//! The export run: window → Graph → flatten → staged Parquet → publish → manifest.
//!
//! Records are listed page by page and fetched with bounded concurrency (`buffered`, so the
//! output order follows the list order and reruns write identical files); each complete
//! record is flattened at once and dropped, and full batches go to a writer thread through
//! a bounded channel. Memory is bounded by the concurrency, the batch size and the open
//! partitions, never by the size of the window. Nothing is published unless every listed
//! record was fetched (or is known to be gone: 404) and every file was written.
//!
//! The only module that sees everything: graph, streams, flatten, sink and progress.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use arrow_array::RecordBatch;
use chrono::{DateTime, NaiveDate, Utc};
use futures::TryStreamExt;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::flatten::FlattenIssue;
use crate::flatten::call_records::{self as flatten_calls, CallRecordTables};
use crate::graph::{GraphClient, GraphError, RequestStats};
use crate::privacy::Privacy;
use crate::progress::Progress;
use crate::schema;
use crate::sink::{self, ParquetSink, SinkError, SinkOptions, StagedRun, WrittenFile};
use crate::streams::{StreamKind, call_records};
use crate::window::Window;

/// Rows a table buffers per partition before they go to the writer as one batch.
const BATCH_ROWS: usize = 8192;
/// Batches in flight between the flattener and the writer thread.
const WRITER_QUEUE: usize = 16;
/// Value problems logged one by one; the rest are counted in the summary.
const LOGGED_ISSUES: usize = 50;

/// What to export, and where.
#[derive(Debug, Clone)]
pub struct ExportPlan {
    pub window: Window,
    pub streams: Vec<StreamKind>,
    pub output: PathBuf,
    pub concurrency: usize,
    /// What to write for personal data.
    pub privacy: Privacy,
}

/// Totals of one table.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct TableTotals {
    pub rows: u64,
    pub files: u64,
    pub bytes: u64,
}

/// What a run did; printed at the end and written to `<out>/_manifests/<run_id>.json`.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    pub version: &'static str,
    pub window_from: DateTime<Utc>,
    pub window_to: DateTime<Utc>,
    pub streams: Vec<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub elapsed_seconds: f64,
    pub records_exported: u64,
    /// Listed records that Graph answered with 404 (expired or not yet available).
    pub records_not_found: Vec<String>,
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
) -> anyhow::Result<RunSummary> {
    let started_at = Utc::now();
    let clock = Instant::now();
    let run_id = new_run_id(started_at);
    tracing::info!(run_id, window = %plan.window, output = %plan.output.display(), "Export started.");
    if !plan.window.is_whole_days() {
        tracing::warn!(
            window = %plan.window,
            "The window does not start and end at midnight UTC: the partitions of its first and last day will \
             hold only the calls of the window, replacing what they held before."
        );
    }
    let sink = ParquetSink::create(&plan.output, &run_id, SinkOptions::default())
        .with_context(|| format!("cannot prepare the output folder {}", plan.output.display()))?;
    let (batches, receiver) = mpsc::channel(WRITER_QUEUE);
    let writer = std::thread::Builder::new()
        .name("parquet-writer".into())
        .spawn(move || write_batches(sink, receiver))
        .context("cannot start the writer thread")?;

    let fetched = if plan.streams.contains(&StreamKind::CallRecords) {
        fetch_call_records(client, plan, &batches, progress).await
    } else {
        Ok(FetchOutcome::default())
    };
    drop(batches);
    let staged = writer
        .join()
        .map_err(|_| anyhow::anyhow!("the Parquet writer thread panicked"))?;
    let (fetched, staged) = match (fetched, staged) {
        (Ok(fetched), Ok(staged)) => (fetched, staged),
        (Err(error), Ok(staged)) => {
            staged.discard();
            return Err(
                error.context("nothing was published; the lake is as it was before this run")
            );
        }
        (_, Err(error)) => {
            return Err(anyhow::Error::new(error)
                .context("nothing was published; the lake is as it was before this run"));
        }
    };

    let partitions: BTreeSet<(String, NaiveDate)> = plan
        .streams
        .iter()
        .flat_map(|stream| schema::tables_of_stream(stream.name()))
        .flat_map(|table| {
            plan.window
                .days()
                .into_iter()
                .map(move |dt| (table.table.clone(), dt))
        })
        .collect();
    let report = staged
        .publish(&partitions)
        .context("cannot publish the exported partitions")?;
    progress.finish();

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
        window_from: plan.window.from,
        window_to: plan.window.to,
        streams: plan.streams.iter().map(|s| s.name().to_string()).collect(),
        started_at,
        finished_at: Utc::now(),
        elapsed_seconds: clock.elapsed().as_secs_f64(),
        records_exported: fetched.records_exported,
        records_not_found: fetched.records_not_found,
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
    sink::write_file_atomically(
        &plan.output,
        &format!("_manifests/{}.json", summary.run_id),
        &manifest,
    )
    .context("the partitions were published, but the run manifest could not be written")?;
    Ok(summary)
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

async fn fetch_call_records(
    client: &GraphClient,
    plan: &ExportPlan,
    batches: &mpsc::Sender<TableBatch>,
    progress: &Progress,
) -> anyhow::Result<FetchOutcome> {
    let window = plan.window;
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
    let records = ids
        .map_ok(|id| async move {
            let record = call_records::fetch_record(client, &id).await?;
            Ok::<_, GraphError>((id, record))
        })
        .try_buffered(plan.concurrency);
    let mut records = std::pin::pin!(records);

    let mut outcome = FetchOutcome::default();
    let mut partitions: BTreeMap<NaiveDate, CallRecordTables> = BTreeMap::new();
    let mut issues = Vec::new();
    while let Some((id, record)) = records
        .try_next()
        .await
        .context("cannot export the call records")?
    {
        let Some(record) = record else {
            tracing::warn!(
                call_id = %id,
                "Call record {id} was listed but Graph answered 404 (expired, or not yet available); skipped."
            );
            outcome.records_not_found.push(id);
            progress.record_done(client.stats());
            continue;
        };
        let dt = flatten_calls::partition_date(&record)
            .with_context(|| format!("call record {id} cannot be placed in a partition"))?;
        let tables = partitions
            .entry(dt)
            .or_insert_with(|| CallRecordTables::new(&plan.privacy));
        flatten_calls::flatten(&record, tables, &mut issues)
            .with_context(|| format!("call record {id} cannot be flattened"))?;
        report_issues(&mut issues, &mut outcome.value_issues);
        outcome.records_exported += 1;
        progress.record_done(client.stats());
        send_full_batches(tables, dt, batches, BATCH_ROWS).await?;
    }
    for (dt, tables) in &mut partitions {
        send_full_batches(tables, *dt, batches, 1).await?;
    }
    Ok(outcome)
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
    tables: &mut CallRecordTables,
    dt: NaiveDate,
    batches: &mpsc::Sender<TableBatch>,
    min_rows: usize,
) -> anyhow::Result<()> {
    for builder in tables.builders_mut() {
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

/// A run id that sorts by start time and is unique across concurrent runs.
fn new_run_id(started_at: DateTime<Utc>) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{}-{}", started_at.format("%Y%m%dT%H%M%SZ"), &random[..8])
}
