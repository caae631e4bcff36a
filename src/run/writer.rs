//! How every run stages its rows: plain threads (reflatten's workers, the copies of kept
//! rows) write table batches into the run's [`ParquetSink`] themselves, encoding them on
//! their own cores; async tasks send theirs, and every raw-zone line, through one bounded
//! channel to the run's writer thread. Staged files come out when all senders are gone.
//!
//! May touch: the run's staging, through [`ParquetSink`] and [`RawSink`].
//! Knows nothing of Graph, of raw input or of where the rows come from.

use std::sync::Arc;

use anyhow::Context;
use arrow_array::RecordBatch;
use chrono::NaiveDate;
use tokio::sync::mpsc;

use super::Run;
use crate::flatten::TableBuilder;
use crate::raw::RawSink;
use crate::reuse;
use crate::sink::{ParquetSink, SinkError, SinkOptions, StagedRun};
use crate::streams::StreamKind;

/// Rows of one table for one partition.
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

/// Where a run's rows go: the sink, written directly from plain threads, and the writer
/// thread's channel, for async tasks and raw lines. The writer finishes once every clone is
/// gone. A send fails only after a write failed, which [`Run::staged`] reports.
#[derive(Clone)]
pub struct Batches {
    // Declared (so dropped) before the channel: when the writer sees the channel close,
    // every other handle of the sink is gone and it can finish the sink.
    sink: Arc<ParquetSink>,
    channel: mpsc::Sender<ToWriter>,
}

fn stopped() -> anyhow::Error {
    anyhow::Error::new(SinkError::Stopped)
}

impl Batches {
    /// Sends from async code.
    async fn send(&self, message: ToWriter) -> anyhow::Result<()> {
        if self.sink.stopped() {
            return Err(stopped());
        }
        self.channel.send(message).await.map_err(|_| stopped())
    }

    /// Sends a raw-zone line from a plain thread (never from within the async runtime).
    fn send_blocking(&self, message: ToWriter) -> anyhow::Result<()> {
        if self.sink.stopped() {
            return Err(stopped());
        }
        self.channel.blocking_send(message).map_err(|_| stopped())
    }

    /// Writes rows in this (plain) thread.
    fn write_blocking(&self, batch: TableBatch) -> anyhow::Result<()> {
        let TableBatch { table, dt, batch } = batch;
        Ok(self.sink.write(table, dt, &batch)?)
    }

    /// Sends one raw-zone line of `stream`'s partition `dt`, from async code.
    pub async fn send_line(
        &self,
        stream: StreamKind,
        dt: NaiveDate,
        line: Vec<u8>,
    ) -> anyhow::Result<()> {
        let stream = stream.name();
        self.send(ToWriter::Raw { stream, dt, line }).await
    }

    /// Writes rows copied from the lake, in this (plain) thread.
    pub fn write_rows_blocking(
        &self,
        table: &'static str,
        dt: NaiveDate,
        batch: RecordBatch,
    ) -> anyhow::Result<()> {
        self.write_blocking(TableBatch { table, dt, batch })
    }

    /// Sends a raw-zone line copied from the raw zone, from a plain thread.
    pub fn send_line_blocking(
        &self,
        stream: StreamKind,
        dt: NaiveDate,
        line: &[u8],
    ) -> anyhow::Result<()> {
        let (stream, line) = (stream.name(), line.to_vec());
        self.send_blocking(ToWriter::Raw { stream, dt, line })
    }

    /// Sends every builder of `tables` (each with its partition's day) that holds at least
    /// `min_rows` rows (and one at least), from async code.
    pub async fn send_full<'b>(
        &self,
        tables: impl IntoIterator<Item = (NaiveDate, &'b mut TableBuilder)>,
        min_rows: usize,
    ) -> anyhow::Result<()> {
        for batch in full_batches(tables, min_rows) {
            self.send(ToWriter::Batch(batch)).await?;
        }
        Ok(())
    }

    /// Writes the rows of every builder of `tables` (each with its partition's day), and
    /// those `unwritten` holds, in this (plain) thread. Partitions another thread is writing
    /// are passed over and their rows kept in `unwritten` for the next call, so threads
    /// writing the same days do not wait for each other, unless more than `max_rows` rows
    /// are left: then it waits until they are written too.
    pub fn write_full_blocking<'b>(
        &self,
        tables: impl IntoIterator<Item = (NaiveDate, &'b mut TableBuilder)>,
        unwritten: &mut Unwritten,
        max_rows: usize,
    ) -> anyhow::Result<()> {
        unwritten.batches.extend(full_batches(tables, 1));
        self.write_free(unwritten)?;
        while unwritten.rows() > max_rows {
            // Every partition left is busy: wait for the first one's file.
            let first = unwritten.batches.remove(0);
            self.write_blocking(first)?;
            self.write_free(unwritten)?;
        }
        Ok(())
    }

    /// Writes the batches of `unwritten` whose partitions no other thread is writing, in
    /// order; a partition's batches stay in order (a busy one's later batches wait too).
    fn write_free(&self, unwritten: &mut Unwritten) -> anyhow::Result<()> {
        let mut busy: Vec<(&'static str, NaiveDate)> = Vec::new();
        let mut left = Vec::new();
        for table_batch in unwritten.batches.drain(..) {
            let partition = (table_batch.table, table_batch.dt);
            let written = !busy.contains(&partition)
                && self
                    .sink
                    .try_write(partition.0, partition.1, &table_batch.batch)?;
            if !written {
                busy.push(partition);
                left.push(table_batch);
            }
        }
        unwritten.batches = left;
        Ok(())
    }
}

/// Rows a plain thread built but has not written yet, because another thread was writing
/// their partitions ([`Batches::write_full_blocking`]).
#[derive(Default)]
pub struct Unwritten {
    batches: Vec<TableBatch>,
}

impl Unwritten {
    fn rows(&self) -> usize {
        self.batches.iter().map(|b| b.batch.num_rows()).sum()
    }
}

/// The rows of every builder of `tables` that holds at least `min_rows` rows (and one at
/// least), as batches of its day.
fn full_batches<'b>(
    tables: impl IntoIterator<Item = (NaiveDate, &'b mut TableBuilder)>,
    min_rows: usize,
) -> impl Iterator<Item = TableBatch> {
    tables
        .into_iter()
        .filter(move |(_, builder)| builder.len() >= min_rows.max(1))
        .map(|(dt, builder)| TableBatch {
            table: &builder.schema().table,
            dt,
            batch: builder.finish(),
        })
}

/// The staged output of a run: the tables, and the raw zone when one is kept.
pub struct Staged {
    pub(super) tables: StagedRun,
    pub(super) raw: Option<StagedRun>,
}

/// The writer thread of a run.
pub struct Writer {
    thread: std::thread::JoinHandle<Result<Staged, SinkError>>,
}

impl Writer {
    /// Prepares the run's staging in the lake (files marked with the rows' `fingerprint`)
    /// and in its raw zone, if it keeps one, and starts the thread with `queue` messages in
    /// flight at most. Call within the tokio runtime: an object-store sink uploads through it.
    pub(super) fn start(
        run: &Run,
        fingerprint: &str,
        queue: usize,
    ) -> anyhow::Result<(Writer, Batches)> {
        let options = SinkOptions {
            footer: reuse::fingerprint_footer(fingerprint),
            ..SinkOptions::default()
        };
        let tables = ParquetSink::create(&run.lake, &run.id, options)
            .with_context(|| format!("cannot prepare the output folder {}", run.lake))?;
        let raw = match &run.raw {
            Some(raw) => Some(
                RawSink::create(raw, &run.id)
                    .with_context(|| format!("cannot prepare the raw zone {raw}"))?,
            ),
            None => None,
        };
        let (channel, receiver) = mpsc::channel(queue);
        let runtime = tokio::runtime::Handle::current();
        let sink = Arc::new(tables);
        let writer_sink = sink.clone();
        let thread = std::thread::Builder::new()
            .name("parquet-writer".into())
            .spawn(move || write(writer_sink, raw, receiver, runtime))
            .context("cannot start the writer thread")?;
        Ok((Writer { thread }, Batches { sink, channel }))
    }

    /// Waits until the thread has made every file durable; call once every [`Batches`] is
    /// dropped. The inner error is the first write error (the staging is then removed).
    pub(super) fn finish(self) -> anyhow::Result<Result<Staged, SinkError>> {
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the Parquet writer thread panicked"))
    }
}

/// The writer loop: batches and raw lines in until every sender is gone, then the staged
/// files out. After a failure the rest is drained unwritten and everything is discarded.
fn write(
    sink: Arc<ParquetSink>,
    mut raw: Option<RawSink>,
    mut receiver: mpsc::Receiver<ToWriter>,
    runtime: tokio::runtime::Handle,
) -> Result<Staged, SinkError> {
    while let Some(message) = receiver.blocking_recv() {
        match (message, raw.as_mut()) {
            // A failure is kept by the sink, which refuses every later write.
            (ToWriter::Batch(TableBatch { table, dt, batch }), _) => {
                let _ = sink.write(table, dt, &batch);
            }
            (ToWriter::Raw { stream, dt, line }, Some(raw)) => {
                if !sink.stopped()
                    && let Err(error) = raw.write_line(stream, dt, &line)
                {
                    sink.fail(error);
                }
            }
            (ToWriter::Raw { .. }, None) => unreachable!("raw lines are sent only with a raw zone"),
        }
    }
    let Ok(sink) = Arc::try_unwrap(sink) else {
        unreachable!("every sender drops its handle of the sink before its channel end")
    };
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
