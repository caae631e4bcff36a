//! The writer thread every run has: table batches and raw-zone lines come in through one
//! bounded channel (from async tasks or from plain threads), staged files go out.
//!
//! May touch: the run's staging, through [`ParquetSink`] and [`RawSink`].
//! Knows nothing of Graph, of raw input or of where the rows come from.

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

/// The sending end of the writer's channel; the writer finishes once every clone is gone.
/// A send fails only when the writer stopped after a write error, which
/// [`Run::staged`] reports.
#[derive(Clone)]
pub struct Batches(mpsc::Sender<ToWriter>);

fn stopped<T>(_: T) -> anyhow::Error {
    anyhow::anyhow!("the Parquet writer stopped")
}

impl Batches {
    /// Sends from async code.
    async fn send(&self, message: ToWriter) -> anyhow::Result<()> {
        self.0.send(message).await.map_err(stopped)
    }

    /// Sends from a plain thread (never from within the async runtime).
    fn send_blocking(&self, message: ToWriter) -> anyhow::Result<()> {
        self.0.blocking_send(message).map_err(stopped)
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

    /// Sends rows copied from the lake, from a plain thread.
    pub fn send_rows_blocking(
        &self,
        table: &'static str,
        dt: NaiveDate,
        batch: RecordBatch,
    ) -> anyhow::Result<()> {
        self.send_blocking(ToWriter::Batch(TableBatch { table, dt, batch }))
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

    /// [`Batches::send_full`], from a plain thread.
    pub fn send_full_blocking<'b>(
        &self,
        tables: impl IntoIterator<Item = (NaiveDate, &'b mut TableBuilder)>,
        min_rows: usize,
    ) -> anyhow::Result<()> {
        full_batches(tables, min_rows)
            .try_for_each(|batch| self.send_blocking(ToWriter::Batch(batch)))
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
        let (sender, receiver) = mpsc::channel(queue);
        let runtime = tokio::runtime::Handle::current();
        let thread = std::thread::Builder::new()
            .name("parquet-writer".into())
            .spawn(move || write(tables, raw, receiver, runtime))
            .context("cannot start the writer thread")?;
        Ok((Writer { thread }, Batches(sender)))
    }

    /// Waits until the thread has made every file durable; call once every [`Batches`] is
    /// dropped. The inner error is the first write error (the staging is then removed).
    pub(super) fn finish(self) -> anyhow::Result<Result<Staged, SinkError>> {
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the Parquet writer thread panicked"))
    }
}

/// The writer loop: batches and raw lines in, staged files out.
fn write(
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
