//! `reflatten`: rebuilds the tables from a raw landing zone, without calling Graph.
//!
//! Each object is placed by its own time (a callRecord by `startDateTime`, a log row by its
//! stream's time field, a dial-out report row by the day recorded in the raw line), not by
//! the folder it was found in, and flattened exactly as `export` flattens it; the files are
//! staged and published by the same sink, with a manifest under `_manifests/`.
//!
//! Work is spread over threads: one reader, which cuts every file into chunks of whole
//! lines of about [`CHUNK_BYTES`] (plain local files mapped into memory and parsed in
//! place; compressed ones, and objects streamed from a store, read into pooled buffers),
//! `workers` parse-and-flatten threads,
//! each with its own builders per partition, and one Parquet writer. Channels are bounded,
//! a mapped chunk's pages are released when it is done, and each worker holds at most
//! [`WORKER_MAX_ROWS`] rows, so memory does not grow with the input.
//!
//! May touch: raw files and objects (reading), the lake (a folder or an object-store
//! prefix) through [`crate::sink`] and [`crate::state`]'s lock.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use arrow_array::RecordBatch;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::flatten::call_records::{self as flatten_calls, CallRecordTables, RecordParser};
use crate::flatten::{FlattenIssue, RowContext, TableBuilder};
use crate::pipeline::{self, TableTotals};
use crate::privacy::Privacy;
use crate::raw::{self, RawInput};
use crate::reuse;
use crate::run::Run;
use crate::schema;
use crate::sink::store::Output;
use crate::sink::{self, ParquetSink, SinkOptions, WrittenFile};
use crate::streams::StreamKind;
use crate::window::Window;

/// Lines are handed to the workers in chunks of about this many bytes.
const CHUNK_BYTES: usize = 4 << 20;
/// Rows one worker holds in all its builders together before it sends them all to the
/// writer: batches of a few thousand rows per table write about as fast as larger ones,
/// and more would only hold memory (measured in BENCHMARKS.md).
const WORKER_MAX_ROWS: usize = 32 * 1024;

/// What to rebuild, from where, into where.
#[derive(Debug, Clone)]
pub struct ReflattenPlan {
    /// A raw zone root (`<stream>/dt=…/` folders) or a folder of raw files, on disk or on
    /// an object store; or one raw file on disk.
    pub raw: Output,
    pub output: Output,
    /// Only objects whose own time lies in the window; its days' partitions are replaced
    /// (also by empty ones). Without a window, the days the objects fall on are replaced.
    pub window: Option<Window>,
    /// Streams to rebuild; None: every stream the raw zone holds.
    pub streams: Option<Vec<StreamKind>>,
    pub privacy: Privacy,
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
    pub tables: BTreeMap<String, TableTotals>,
    pub partitions_replaced: Vec<String>,
    pub files: Vec<WrittenFile>,
}

/// Lines of one raw file, for a worker.
struct Chunk {
    stream: StreamKind,
    file: Arc<RawInput>,
    /// Where the chunk starts in its (decompressed) file. Line numbers are counted from
    /// here only for a message: counting every chunk's lines would cost the reader time.
    offset: u64,
    bytes: ChunkBytes,
}

/// Where a chunk's lines are.
enum ChunkBytes {
    /// Read into a buffer of the pool (a compressed file, decompressed).
    Read(Vec<u8>),
    /// A range of a plain file mapped into memory: parsed in place, never copied.
    Mapped(MappedRange),
}

impl ChunkBytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            ChunkBytes::Read(buffer) => buffer,
            ChunkBytes::Mapped(mapped) => &mapped.map[mapped.range.clone()],
        }
    }
}

/// Lines of a mapped file. When the chunk is done with, its pages leave the process's
/// memory (they stay in the page cache): mapped pages count as the process's own while
/// they are mapped, and a whole file's would make memory grow with the input.
struct MappedRange {
    map: Arc<memmap2::Mmap>,
    range: Range<usize>,
}

impl Drop for MappedRange {
    fn drop(&mut self) {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        // Only the pages that lie wholly within this chunk: those at its ends may hold the
        // neighbouring chunks' lines, which other workers may still be reading.
        let start = self.range.start.next_multiple_of(page);
        let end = self.range.end / page * page;
        if start < end {
            // SAFETY: the map is shared and read-only, so dropped pages read back from the
            // file unchanged, and nothing borrows these pages: they hold only this
            // chunk's lines, whose last reader is going away.
            let _ = unsafe {
                self.map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    start,
                    end - start,
                )
            };
        }
    }
}

impl Chunk {
    /// `path line N` for the line that starts `within` bytes into the chunk.
    fn line_at(&self, within: usize) -> String {
        let before_chunk = self.file.count_lines(self.offset);
        let line = before_chunk.map(|lines| {
            let before = &self.bytes.as_slice()[..within];
            lines + memchr::memchr_iter(b'\n', before).count() as u64 + 1
        });
        match line {
            Ok(line) => format!("{} line {line}", self.file),
            Err(_) => format!("{} at byte {}", self.file, self.offset + within as u64),
        }
    }
}

struct TableBatch {
    table: &'static str,
    dt: NaiveDate,
    batch: RecordBatch,
}

/// A worker's counts.
#[derive(Default)]
struct Counts {
    objects: u64,
    outside_window: u64,
    value_issues: u64,
    days: BTreeSet<(StreamKind, NaiveDate)>,
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
    let run = Run::begin(&plan.output, None, started_at).await?;
    let run_id = run.id.clone();
    let output = &plan.output;
    tracing::info!(run_id, raw = %plan.raw, output = %plan.output, "Reflatten started.");

    let fingerprint = reuse::rows_fingerprint(&plan.privacy);
    let window = match plan.window {
        Some(window) => Some(widened_window(output, &streams, window, &fingerprint).await?),
        None => None,
    };
    let options = SinkOptions {
        footer: reuse::fingerprint_footer(&fingerprint),
        ..SinkOptions::default()
    };
    let sink = ParquetSink::create(output, &run_id, options)
        .with_context(|| format!("cannot prepare the output folder {}", plan.output))?;
    let workers = plan.workers.max(1);
    let failed = AtomicBool::new(false);
    let (chunks, chunk_receiver) = sync_channel::<Chunk>(workers * 2);
    let (spent, spent_receiver) = sync_channel::<Vec<u8>>(workers * 3);
    // Owned by the workers: when they are all gone (also by a panic) the reader's sends fail.
    let chunk_receiver = Arc::new(Mutex::new(chunk_receiver));
    let (batches, batch_receiver) = sync_channel::<TableBatch>(workers * 8);
    let files: Vec<(StreamKind, RawInput)> = inputs
        .into_iter()
        .filter(|(stream, _)| streams.contains(stream))
        .flat_map(|(stream, files)| files.into_iter().map(move |file| (stream, file)))
        .collect();

    let runtime = tokio::runtime::Handle::current();
    let (read, counts, staged) = std::thread::scope(|scope| {
        let failed = &failed;
        let keeper = window.map(|window| {
            let (batches, runtime, streams) = (batches.clone(), runtime.clone(), &streams);
            scope.spawn(move || keep_outside_window(output, streams, window, &runtime, &batches))
        });
        let reader = scope.spawn(move || read_chunks(&files, chunks, spent_receiver, failed));
        let worker_handles: Vec<_> = (0..workers)
            .map(|_| {
                let batches = batches.clone();
                let receiver = chunk_receiver.clone();
                let spent = spent.clone();
                scope.spawn(move || {
                    let outcome =
                        Worker::new(&plan.privacy, window, batches).run(&receiver, &spent);
                    if outcome.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    outcome
                })
            })
            .collect();
        drop((batches, chunk_receiver, spent));
        let writer = scope.spawn(move || write_batches(sink, batch_receiver));
        let read = reader.join().expect("the reader thread does not panic");
        let counts: Vec<_> = worker_handles
            .into_iter()
            .map(|w| w.join().expect("a worker thread does not panic"))
            .collect();
        let kept = keeper.map(|k| k.join().expect("the keeper thread does not panic"));
        let staged = writer.join().expect("the writer thread does not panic");
        let read = read.and_then(|read| kept.transpose().map(|_| read));
        (read, counts, staged)
    });
    let staged = match staged {
        Ok(staged) => staged,
        Err(error) => {
            run.discard().await;
            return Err(
                anyhow::Error::new(error).context("nothing was published; the lake is as it was")
            );
        }
    };
    let mut totals = Counts::default();
    let outcome = read.and_then(|read| {
        for counts in counts {
            let counts = counts?;
            totals.objects += counts.objects;
            totals.outside_window += counts.outside_window;
            totals.value_issues += counts.value_issues;
            totals.days.extend(counts.days);
        }
        Ok(read)
    });
    let (input_files, input_bytes) = match outcome {
        Ok(read) => read,
        Err(error) => {
            staged.discard().await;
            return Err(error.context("nothing was published; the lake is as it was"));
        }
    };

    let days: Vec<(StreamKind, NaiveDate)> = match window {
        Some(window) => streams
            .iter()
            .flat_map(|stream| window.days().into_iter().map(move |dt| (*stream, dt)))
            .collect(),
        None => totals.days.iter().copied().collect(),
    };
    let (change, report) = staged.changes(&pipeline::table_partitions(days.into_iter()));
    let summary = ReflattenSummary {
        run_id,
        version: env!("CARGO_PKG_VERSION"),
        command: "reflatten",
        raw: plan.raw.to_string(),
        window,
        streams: streams.iter().map(|s| s.name().to_string()).collect(),
        started_at,
        finished_at: Utc::now(),
        elapsed_seconds: clock.elapsed().as_secs_f64(),
        input_files,
        input_bytes,
        objects: totals.objects,
        objects_outside_window: totals.outside_window,
        value_issues: totals.value_issues,
        tables: pipeline::table_totals(&streams, &report.files),
        partitions_replaced: report.partitions_replaced,
        files: report.files,
    };
    let manifest = run.manifest(&summary);
    run.publish(vec![change], vec![manifest]).await.context(
        "cannot publish the rebuilt partitions; nothing was published, the lake is as it was",
    )?;
    Ok(summary)
}

/// `window`, widened to whole days where the lake cannot keep an edge day's rows as they
/// are ([`reuse::widen_for_fingerprint`]); the raw zone holds whole days.
async fn widened_window(
    lake: &Output,
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
    lake: &Output,
    streams: &[StreamKind],
    window: Window,
    runtime: &tokio::runtime::Handle,
    batches: &SyncSender<TableBatch>,
) -> anyhow::Result<()> {
    for dt in window
        .days()
        .into_iter()
        .filter(|dt| !window.covers_day(*dt))
    {
        for stream in streams {
            reuse::copy_rows_outside_window(lake, *stream, dt, window, runtime, |table, batch| {
                batches
                    .send(TableBatch { table, dt, batch })
                    .map_err(|_| anyhow::anyhow!("the writer stopped"))
            })
            .with_context(|| format!("cannot keep the rows of {dt} outside the window {window}"))?;
        }
    }
    Ok(())
}

/// The raw files of each stream: `<raw>/<stream>/…` holds that stream's files; a folder
/// without stream folders (or a single file) holds call records.
async fn find_inputs(
    raw: &Output,
    wanted: Option<&[StreamKind]>,
) -> anyhow::Result<BTreeMap<StreamKind, Vec<RawInput>>> {
    let list = |relative: &'static str| async move {
        RawInput::list(raw, relative)
            .await
            .context("cannot read the raw zone")
    };
    let zone: Vec<StreamKind> = match raw {
        Output::Local(root) => StreamKind::ALL
            .into_iter()
            .filter(|stream| root.join(stream.name()).is_dir())
            .collect(),
        Output::Object(object) => {
            let folders = object
                .list_folders("")
                .await
                .context("cannot read the raw zone")?;
            StreamKind::ALL
                .into_iter()
                .filter(|stream| folders.iter().any(|f| f == stream.name()))
                .collect()
        }
    };
    let mut inputs = BTreeMap::new();
    if zone.is_empty() {
        let files = list("").await?;
        if !files.is_empty() {
            inputs.insert(StreamKind::CallRecords, files);
        }
    }
    for stream in zone {
        if wanted.is_none_or(|wanted| wanted.contains(&stream)) {
            let files = list(stream.name()).await?;
            if !files.is_empty() {
                inputs.insert(stream, files);
            }
        }
    }
    Ok(inputs)
}

/// The reader thread: every file's lines, in chunks of whole lines, to the workers. Plain
/// files go in place ([`send_mapped`]); the buffers of decompressed chunks come back from
/// the workers through `spent`, so reading allocates (and the kernel zeroes) no new memory
/// once a few are in circulation. Returns the files and JSON bytes read.
fn read_chunks(
    files: &[(StreamKind, RawInput)],
    chunks: SyncSender<Chunk>,
    spent: Receiver<Vec<u8>>,
    failed: &AtomicBool,
) -> anyhow::Result<(u64, u64)> {
    let mut bytes_read = 0u64;
    for (stream, input) in files {
        let file = Arc::new(input.clone());
        if let Some(path) = input.plain_local_path() {
            let sent = send_mapped(*stream, path, &file, &chunks, failed)?;
            match sent {
                Some(bytes) => bytes_read += bytes,
                None => return Ok((0, 0)),
            }
            continue;
        }
        let mut source = input
            .open_lines()
            .with_context(|| format!("cannot open {input}"))?;
        // The start of a line that the previous chunk's end cut off.
        let mut carry = Vec::new();
        let mut offset = 0u64;
        loop {
            let mut bytes = spent
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(CHUNK_BYTES));
            bytes.clear();
            bytes.append(&mut carry);
            let complete = loop {
                let wanted = (CHUNK_BYTES.max(bytes.len() + 1) - bytes.len()) as u64;
                let read = (&mut source)
                    .take(wanted)
                    .read_to_end(&mut bytes)
                    .with_context(|| format!("cannot read {input} after byte {offset}"))?;
                if (read as u64) < wanted {
                    break true;
                }
                // Whole lines only: the rest goes to the next chunk. A line longer than a
                // chunk makes the chunk longer.
                if let Some(end) = memchr::memrchr(b'\n', &bytes) {
                    carry.extend_from_slice(&bytes[end + 1..]);
                    bytes.truncate(end + 1);
                    break false;
                }
            };
            if bytes.is_empty() {
                break;
            }
            let length = bytes.len() as u64;
            bytes_read += length;
            let chunk = Chunk {
                stream: *stream,
                file: file.clone(),
                offset,
                bytes: ChunkBytes::Read(bytes),
            };
            offset += length;
            // A worker that failed hung up or set `failed`; it reports why.
            if failed.load(Ordering::Relaxed) || chunks.send(chunk).is_err() {
                return Ok((0, 0));
            }
            if complete {
                break;
            }
        }
    }
    Ok((files.len() as u64, bytes_read))
}

/// Hands the lines of the plain file `path` to the workers in place: the file is mapped
/// into memory and cut into chunks of whole lines. Returns the bytes sent, or None when a
/// worker stopped (it reports why).
fn send_mapped(
    stream: StreamKind,
    path: &Path,
    input: &Arc<RawInput>,
    chunks: &SyncSender<Chunk>,
    failed: &AtomicBool,
) -> anyhow::Result<Option<u64>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let length = file
        .metadata()
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if length == 0 {
        // Nothing to map (and an empty mapping is refused on some systems).
        return Ok(Some(0));
    }
    // SAFETY: raw files are written once, published by rename and never changed after;
    // a file cut short while it is read would stop the process (SIGBUS), never feed it
    // other bytes. The map lives as long as the last chunk that points into it.
    let map = unsafe { memmap2::Mmap::map(&file) }
        .with_context(|| format!("cannot read {}", path.display()))?;
    // Read front to back once: the kernel may read ahead and drop pages behind.
    let _ = map.advise(memmap2::Advice::Sequential);
    let map = Arc::new(map);
    let mut start = 0;
    while start < map.len() {
        let wanted = (start + CHUNK_BYTES).min(map.len());
        // Whole lines only: the chunk ends after the first line end from `wanted` on.
        let end = memchr::memchr(b'\n', &map[wanted..]).map_or(map.len(), |at| wanted + at + 1);
        let chunk = Chunk {
            stream,
            file: input.clone(),
            offset: start as u64,
            bytes: ChunkBytes::Mapped(MappedRange {
                map: map.clone(),
                range: start..end,
            }),
        };
        if failed.load(Ordering::Relaxed) || chunks.send(chunk).is_err() {
            return Ok(None);
        }
        start = end;
    }
    Ok(Some(map.len() as u64))
}

/// The lines of `text`, as `text.split('\n')` gives them but split with the SIMD `memchr`,
/// which `str::split` does not use (public for `cargo bench --bench stages`).
pub fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut start = 0;
    memchr::memchr_iter(b'\n', text.as_bytes())
        .chain(std::iter::once(text.len()))
        .map(move |end| {
            // Both ends are at a `\n` or at the end: char boundaries.
            let line = &text[start..end];
            start = end + 1;
            line
        })
}

/// The writer thread.
fn write_batches(
    mut sink: ParquetSink,
    batches: Receiver<TableBatch>,
) -> Result<sink::StagedRun, sink::SinkError> {
    for TableBatch { table, dt, batch } in batches {
        if let Err(error) = sink.write(table, dt, &batch) {
            sink.discard();
            return Err(error);
        }
    }
    sink.finish()
}

/// One parse-and-flatten thread with its own builders per partition.
struct Worker<'a> {
    privacy: &'a Privacy,
    window: Option<Window>,
    batches: SyncSender<TableBatch>,
    calls: BTreeMap<NaiveDate, CallRecordTables>,
    logs: BTreeMap<(StreamKind, NaiveDate), TableBuilder>,
    issues: Vec<FlattenIssue>,
    counts: Counts,
}

impl<'a> Worker<'a> {
    fn new(privacy: &'a Privacy, window: Option<Window>, batches: SyncSender<TableBatch>) -> Self {
        Worker {
            privacy,
            window,
            batches,
            calls: BTreeMap::new(),
            logs: BTreeMap::new(),
            issues: Vec::new(),
            counts: Counts::default(),
        }
    }

    fn run(
        mut self,
        chunks: &Mutex<Receiver<Chunk>>,
        spent: &SyncSender<Vec<u8>>,
    ) -> anyhow::Result<Counts> {
        // Kept from chunk to chunk, so parsing allocates nothing once its buffers have grown.
        let mut idle_parser = Some(RecordParser::<'static>::default());
        loop {
            let next = chunks.lock().expect("no worker panics holding it").recv();
            let Ok(chunk) = next else { break };
            let bytes = chunk.bytes.as_slice();
            let text = simdutf8::compat::from_utf8(bytes).map_err(|error| {
                let line_start =
                    memchr::memrchr(b'\n', &bytes[..error.valid_up_to()]).map_or(0, |end| end + 1);
                anyhow::anyhow!(
                    "{}: not UTF-8 text (JSON lines must be UTF-8)",
                    chunk.line_at(line_start)
                )
            })?;
            let mut parser = idle_parser
                .take()
                .expect("put back after each chunk")
                .recycle();
            for line in lines(text) {
                if !line.trim_ascii().is_empty() {
                    self.object(&mut parser, chunk.stream, line)
                        .with_context(|| {
                            // `line` lies within `text`: its start is its distance from text's.
                            chunk.line_at(line.as_ptr() as usize - text.as_ptr() as usize)
                        })?;
                }
            }
            idle_parser = Some(parser.recycle());
            // A full pool only means enough buffers circulate already.
            if let ChunkBytes::Read(buffer) = chunk.bytes {
                let _ = spent.try_send(buffer);
            }
            if self.buffered_rows() >= WORKER_MAX_ROWS {
                self.flush()?;
            }
        }
        self.flush()?;
        Ok(self.counts)
    }

    /// Places and flattens one raw line.
    fn object<'line>(
        &mut self,
        parser: &mut RecordParser<'line>,
        stream: StreamKind,
        line: &'line str,
    ) -> anyhow::Result<()> {
        let Some(log) = stream.log() else {
            let record = parser.parse(line).context("not a JSON object")?;
            let (_, start) = flatten_calls::identify_item(record)?;
            if !self.keeps(start) {
                return Ok(());
            }
            let dt = start.date_naive();
            let privacy = self.privacy;
            let tables = self
                .calls
                .entry(dt)
                .or_insert_with(|| CallRecordTables::new(privacy));
            flatten_calls::flatten_item(record, tables, &mut self.issues)?;
            return self.placed(stream, dt);
        };
        let object: Value = serde_json::from_str(line).context("not a JSON object")?;
        let (time, context) = match log.row_time(&object) {
            Some(time) => (time.map_err(anyhow::Error::msg)?, RowContext::default()),
            None => {
                let range = raw::report_range(&object).map_err(anyhow::Error::msg)?;
                let context = RowContext {
                    report_from: range.from.timestamp_micros(),
                    report_to: range.to.timestamp_micros(),
                    ..RowContext::default()
                };
                (range.from, context)
            }
        };
        if !self.keeps(time) {
            return Ok(());
        }
        let dt = time.date_naive();
        let table = schema::tables_of_stream(stream.name())
            .next()
            .unwrap_or_else(|| panic!("schemas/ declares no table of stream {stream}"));
        let privacy = self.privacy;
        let builder = self
            .logs
            .entry((stream, dt))
            .or_insert_with(|| TableBuilder::with_privacy(table, privacy));
        let context = RowContext {
            call_id: log.row_id(&object).unwrap_or_default(),
            ..context
        };
        builder.append(&object, &context, &mut self.issues);
        self.placed(stream, dt)
    }

    fn keeps(&mut self, time: DateTime<Utc>) -> bool {
        let keep = self.window.is_none_or(|window| window.contains(time));
        if !keep {
            self.counts.outside_window += 1;
        }
        keep
    }

    fn placed(&mut self, stream: StreamKind, dt: NaiveDate) -> anyhow::Result<()> {
        self.counts.objects += 1;
        self.counts.days.insert((stream, dt));
        pipeline::report_issues(&mut self.issues, &mut self.counts.value_issues);
        Ok(())
    }

    fn buffered_rows(&mut self) -> usize {
        self.builders().map(|(_, builder)| builder.len()).sum()
    }

    fn builders(&mut self) -> impl Iterator<Item = (NaiveDate, &mut TableBuilder)> {
        let calls = self
            .calls
            .iter_mut()
            .flat_map(|(dt, tables)| tables.builders_mut().map(|builder| (*dt, builder)));
        let logs = self
            .logs
            .iter_mut()
            .map(|((_, dt), builder)| (*dt, builder));
        calls.chain(logs)
    }

    /// Sends the rows of every table to the writer.
    fn flush(&mut self) -> anyhow::Result<()> {
        let batches = self.batches.clone();
        for (dt, builder) in self.builders() {
            if !builder.is_empty() {
                let batch = TableBatch {
                    table: &builder.schema().table,
                    dt,
                    batch: builder.finish(),
                };
                batches
                    .send(batch)
                    .map_err(|_| anyhow::anyhow!("the Parquet writer stopped"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chunks `send_mapped` makes of a file holding `content`.
    fn mapped_chunks(content: &[u8]) -> Vec<Vec<u8>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lines.jsonl");
        std::fs::write(&path, content).unwrap();
        let (sender, receiver) = sync_channel(64);
        let sent = send_mapped(
            StreamKind::CallRecords,
            &path,
            &Arc::new(RawInput::Local(path.clone())),
            &sender,
            &AtomicBool::new(false),
        );
        assert_eq!(sent.unwrap(), Some(content.len() as u64));
        drop(sender);
        receiver
            .iter()
            .map(|chunk| {
                let bytes = chunk.bytes.as_slice().to_vec();
                let offset = usize::try_from(chunk.offset).unwrap();
                assert_eq!(&content[offset..offset + bytes.len()], bytes.as_slice());
                bytes
            })
            .collect()
    }

    #[test]
    fn mapped_files_are_cut_into_chunks_of_whole_lines() {
        let line = |n: usize| format!("{{\"n\":{n},\"pad\":\"{}\"}}\n", "x".repeat(n % 997));
        let mut content: Vec<u8> = (0..30_000).flat_map(|n| line(n).into_bytes()).collect();
        assert!(content.len() > 2 * CHUNK_BYTES);
        let chunks = mapped_chunks(&content);
        assert!(chunks.len() >= 3);
        assert!(chunks.iter().all(|c| c.ends_with(b"\n")));
        assert_eq!(chunks.concat(), content);
        // No line end at the very end: the last chunk ends with the last line all the same.
        content.extend_from_slice(b"{\"last\":true}");
        assert_eq!(mapped_chunks(&content).concat(), content);
        assert!(mapped_chunks(b"").is_empty());
    }

    #[test]
    fn lines_split_like_str_split() {
        for text in ["", "a", "a\n", "a\nb", "\n\n{\"x\":\"é\"}\r\n", "é\nü\n\n"] {
            assert_eq!(
                lines(text).collect::<Vec<_>>(),
                text.split('\n').collect::<Vec<_>>(),
                "{text:?}"
            );
        }
    }
}
