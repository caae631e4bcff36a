//! `reflatten`: rebuilds the tables from a raw landing zone, without calling Graph.
//!
//! Each object is placed by its own time (a callRecord by `startDateTime`, a log row by its
//! stream's time field, a dial-out report row by the day recorded in the raw line), not by
//! the folder it was found in, and flattened exactly as `export` flattens it; the files are
//! staged and published by the same run lifecycle ([`crate::run`]), with a manifest under
//! `_manifests/`.
//!
//! Work is spread over threads: one reader (`reader`), which cuts every file into chunks
//! of whole lines of `reader::chunk_bytes` (4 MiB for a few workers, smaller for many;
//! plain local files mapped into memory and parsed in place; compressed ones, and objects
//! streamed from a store, read into pooled buffers), and `workers` parse-and-flatten
//! threads (`worker`), each with its own builders per partition, which encode their rows
//! into the run's staged files themselves ([`crate::run::writer`]): no queue between
//! flattening and encoding, every core encodes, and a batch's memory is freed by the
//! thread that allocated it. Channels are bounded, a mapped chunk's pages are released
//! when it is done, the workers together hold a fixed number of rows
//! (`worker::max_rows`), and the open files a bounded budget, so memory does not grow
//! with the input.
//!
//! May touch: raw files and objects (reading), the lake (a folder or an object-store
//! prefix) through [`crate::run`].

mod reader;
mod worker;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::privacy::Privacy;
use crate::quality::Derivation;
use crate::raw::RawInput;
use crate::reuse;
use crate::run::summary::Published;
use crate::run::writer::Batches;
use crate::run::{NOT_PUBLISHED, Run};
use crate::store::Location;
use crate::streams::StreamKind;
use crate::window::Window;
pub use reader::lines;
use reader::{Chunk, find_inputs, read_chunks};
pub use worker::default_workers;
use worker::{Counts, Worker};

/// Messages in flight to the writer thread: the workers write the rows themselves, so only
/// the raw lines of a run that keeps a raw zone would queue (reflatten keeps none).
const WRITER_QUEUE: usize = 8;

/// What to rebuild, from where, into where.
#[derive(Debug, Clone)]
pub struct ReflattenPlan {
    /// A raw zone root (`<stream>/dt=…/` folders) or a folder of raw files, on disk or on
    /// an object store; or one raw file on disk.
    pub raw: Location,
    pub output: Location,
    /// How the tables are written.
    pub format: crate::commit::TableFormat,
    /// Only objects whose own time lies in the window; its days' partitions are replaced
    /// (also by empty ones). Without a window, the days the objects fall on are replaced.
    pub window: Option<Window>,
    /// Streams to rebuild; None: every stream the raw zone holds.
    pub streams: Option<Vec<StreamKind>>,
    pub privacy: Privacy,
    /// How streams are classified and endpoints placed (`[quality]`, `[sites]`).
    pub derivation: Derivation,
    /// Parse-and-flatten threads.
    pub workers: usize,
}

/// What a reflatten did; printed at the end and written to `<out>/_manifests/<run_id>.json`.
#[derive(Debug, Clone, Serialize)]
pub struct ReflattenSummary {
    pub run_id: String,
    pub version: &'static str,
    pub command: &'static str,
    pub raw: String,
    pub window: Option<Window>,
    pub streams: Vec<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub elapsed_seconds: f64,
    pub input_files: u64,
    /// JSON bytes read (after decompression).
    pub input_bytes: u64,
    pub objects: u64,
    /// Objects whose own time lies outside the window, left out.
    pub objects_outside_window: u64,
    pub value_issues: u64,
    #[serde(flatten)]
    pub published: Published,
}

/// What reading and flattening did.
struct Flattened {
    input_files: u64,
    input_bytes: u64,
    counts: Counts,
}

/// Rebuilds the tables of `plan` and publishes their partitions.
pub async fn reflatten(plan: &ReflattenPlan) -> anyhow::Result<ReflattenSummary> {
    let started_at = Utc::now();
    let clock = Instant::now();
    let inputs = find_inputs(&plan.raw, plan.streams.as_deref()).await?;
    let streams: Vec<StreamKind> = match &plan.streams {
        Some(streams) => streams.clone(),
        None => inputs.keys().copied().collect(),
    };
    anyhow::ensure!(
        !streams.is_empty(),
        "{} holds no raw files (*.jsonl, *.jsonl.zst, *.jsonl.gz)",
        plan.raw
    );
    let run = Run::begin(&plan.output, None, plan.format, started_at).await?;
    tracing::info!(run_id = run.id, raw = %plan.raw, output = %plan.output, "Reflatten started.");

    let fingerprint = reuse::rows_fingerprint(&plan.privacy, &plan.derivation);
    let window = match plan.window {
        Some(window) => Some(widened_window(&plan.output, &streams, window, &fingerprint).await?),
        None => None,
    };
    let (writer, batches) = run.writer(&fingerprint, WRITER_QUEUE).await?;
    let files: Vec<(StreamKind, RawInput)> = inputs
        .into_iter()
        .filter(|(stream, _)| streams.contains(stream))
        .flat_map(|(stream, files)| files.into_iter().map(move |file| (stream, file)))
        .collect();
    let flattened = flatten_all(plan, window, &streams, &files, batches).context(NOT_PUBLISHED);
    let (flattened, staged) = run.staged(writer, flattened).await?;

    let days: Vec<(StreamKind, NaiveDate)> = match window {
        Some(window) => streams
            .iter()
            .flat_map(|stream| window.days().into_iter().map(move |dt| (*stream, dt)))
            .collect(),
        None => flattened.counts.days.iter().copied().collect(),
    };
    let (zones, mut published) = staged.changes(&streams, &days);
    let (zones, table_versions) = run.plan(zones).await?;
    published.table_versions = table_versions;
    let summary = ReflattenSummary {
        run_id: run.id.clone(),
        version: env!("CARGO_PKG_VERSION"),
        command: "reflatten",
        raw: plan.raw.to_string(),
        window,
        streams: streams.iter().map(|s| s.name().to_string()).collect(),
        started_at,
        finished_at: Utc::now(),
        elapsed_seconds: clock.elapsed().as_secs_f64(),
        input_files: flattened.input_files,
        input_bytes: flattened.input_bytes,
        objects: flattened.counts.objects,
        objects_outside_window: flattened.counts.outside_window,
        value_issues: flattened.counts.value_issues,
        published,
    };
    run.publish(zones, Vec::new(), &summary).await.context(
        "cannot publish the rebuilt partitions; nothing was published, the lake is as it was",
    )?;
    Ok(summary)
}

/// Reads `files` and flattens their objects into `batches` on the reader's, the workers'
/// and (for a window) the keeper's threads; the first failure stops them all.
fn flatten_all(
    plan: &ReflattenPlan,
    window: Option<Window>,
    streams: &[StreamKind],
    files: &[(StreamKind, RawInput)],
    batches: Batches,
) -> anyhow::Result<Flattened> {
    let workers = plan.workers.max(1);
    let failed = AtomicBool::new(false);
    let (chunks, chunk_receiver) = sync_channel::<Chunk>(workers * 2);
    let (spent, spent_receiver) = sync_channel::<Vec<u8>>(workers * 3);
    // Owned by the workers: when they are all gone (also by a panic) the reader's sends fail.
    let chunk_receiver = Arc::new(Mutex::new(chunk_receiver));
    let runtime = tokio::runtime::Handle::current();
    std::thread::scope(|scope| {
        let failed = &failed;
        let keeper = window.map(|window| {
            let (batches, runtime, lake) = (batches.clone(), runtime.clone(), &plan.output);
            scope.spawn(move || keep_outside_window(lake, streams, window, &runtime, &batches))
        });
        let (chunk_bytes, max_rows) = (reader::chunk_bytes(workers), worker::max_rows(workers));
        let reader =
            scope.spawn(move || read_chunks(files, chunk_bytes, chunks, spent_receiver, failed));
        let worker_handles: Vec<_> = (0..workers)
            .map(|_| {
                let batches = batches.clone();
                let receiver = chunk_receiver.clone();
                let spent = spent.clone();
                scope.spawn(move || {
                    let outcome =
                        Worker::new(&plan.privacy, &plan.derivation, window, batches, max_rows)
                            .run(&receiver, &spent);
                    if outcome.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    outcome
                })
            })
            .collect();
        drop((batches, chunk_receiver, spent));
        let read = reader.join().expect("the reader thread does not panic");
        let counts: Vec<_> = worker_handles
            .into_iter()
            .map(|w| w.join().expect("a worker thread does not panic"))
            .collect();
        let kept = keeper.map(|k| k.join().expect("the keeper thread does not panic"));
        let (input_files, input_bytes) = read?;
        kept.transpose()?;
        let mut total = Counts::default();
        for counts in counts {
            total.add(counts?);
        }
        Ok(Flattened {
            input_files,
            input_bytes,
            counts: total,
        })
    })
}

/// `window`, widened to whole days where the lake cannot keep an edge day's rows as they
/// are ([`reuse::widen_for_fingerprint`]); the raw zone holds whole days.
async fn widened_window(
    lake: &Location,
    streams: &[StreamKind],
    window: Window,
    fingerprint: &str,
) -> anyhow::Result<Window> {
    let widened = reuse::widen_for_fingerprints(lake, streams, window, fingerprint).await?;
    Ok(widened.into_iter().fold(window, |all, (_, w)| Window {
        from: all.from.min(w.from),
        to: all.to.max(w.to),
    }))
}

/// Copies the lake's rows of the window's edge days that lie outside the window, in every
/// table of `streams`: a window that covers part of a day replaces only its rows.
fn keep_outside_window(
    lake: &Location,
    streams: &[StreamKind],
    window: Window,
    runtime: &tokio::runtime::Handle,
    batches: &Batches,
) -> anyhow::Result<()> {
    for dt in window
        .days()
        .into_iter()
        .filter(|dt| !window.covers_day(*dt))
    {
        for stream in streams {
            reuse::copy_rows_outside_window(lake, *stream, dt, window, runtime, |table, batch| {
                batches.write_rows_blocking(table, dt, batch)
            })
            .with_context(|| format!("cannot keep the rows of {dt} outside the window {window}"))?;
        }
    }
    Ok(())
}
