//! A parse-and-flatten thread of `reflatten`: takes chunks of raw lines, places each object
//! by its own time and flattens it into its own builders per partition, and writes them
//! into the run's staged files (encoding them in this thread) when they hold
//! [`max_rows`] rows, and at the end.
//!
//! Knows nothing of where the lines come from or where the rows go.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, SyncSender};

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

use super::reader::{Chunk, ChunkBytes, lines};
use crate::flatten::call_records::{self as flatten_calls, CallRecordTables, RecordParser};
use crate::flatten::{FlattenIssue, RowContext, TableBuilder};
use crate::privacy::Privacy;
use crate::quality::Derivation;
use crate::raw;
use crate::run::rows::{self, LogRows};
use crate::run::writer::{Batches, Unwritten};
use crate::streams::StreamKind;
use crate::window::Window;

/// Rows all workers together hold in their builders before each writes its rows out: two
/// workers' batches of 32 Ki rows write about as fast as larger ones, and more would only
/// hold memory (measured in BENCHMARKS.md). Shared, so that memory does not grow with the
/// number of workers (each holds up to twice its share: its builders, and rows passed over
/// because another worker was writing their partition).
const ALL_WORKERS_MAX_ROWS: usize = 64 * 1024;

/// A worker's share of [`ALL_WORKERS_MAX_ROWS`], and no fewer rows than make batches that
/// still write efficiently.
pub fn max_rows(workers: usize) -> usize {
    (ALL_WORKERS_MAX_ROWS / workers.max(1)).max(4 * 1024)
}

/// The most workers `reflatten` starts unless told otherwise. Past 16, each worker adds its
/// own rows (at least 4 Ki, [`max_rows`]), its chunk and its allocator's pages, about
/// 12 MiB: on a week of 0.5 GB, peak memory 0.30 GB with 16 workers, 0.40 GB with 24,
/// 0.44–0.48 GB with 32, 0.7 GB with 64 (BENCHMARKS.md), past the 512 MiB a run should
/// stay within. More workers than this trade memory for speed: `--workers N` asks for it.
const MAX_DEFAULT_WORKERS: usize = 16;

/// Workers for a machine of `cores` cores: one per core, at most 16 (see the constant
/// `MAX_DEFAULT_WORKERS` for why).
pub fn default_workers(cores: usize) -> usize {
    cores.clamp(1, MAX_DEFAULT_WORKERS)
}

/// A worker's counts.
#[derive(Default)]
pub(super) struct Counts {
    pub objects: u64,
    pub outside_window: u64,
    pub value_issues: u64,
    pub days: BTreeSet<(StreamKind, NaiveDate)>,
}

impl Counts {
    /// Adds another worker's counts.
    pub fn add(&mut self, other: Counts) {
        self.objects += other.objects;
        self.outside_window += other.outside_window;
        self.value_issues += other.value_issues;
        self.days.extend(other.days);
    }
}

/// One parse-and-flatten thread with its own builders per partition.
pub(super) struct Worker<'a> {
    privacy: &'a Privacy,
    derivation: &'a Derivation,
    window: Option<Window>,
    batches: Batches,
    /// Rows its builders hold before it writes them out ([`max_rows`]).
    max_rows: usize,
    /// Rows built but not written yet: another worker was writing their partitions.
    unwritten: Unwritten,
    calls: BTreeMap<NaiveDate, CallRecordTables>,
    logs: BTreeMap<StreamKind, LogRows<'a>>,
    issues: Vec<FlattenIssue>,
    counts: Counts,
}

impl<'a> Worker<'a> {
    pub fn new(
        privacy: &'a Privacy,
        derivation: &'a Derivation,
        window: Option<Window>,
        batches: Batches,
        max_rows: usize,
    ) -> Self {
        Worker {
            privacy,
            derivation,
            window,
            batches,
            max_rows,
            unwritten: Unwritten::default(),
            calls: BTreeMap::new(),
            logs: BTreeMap::new(),
            issues: Vec::new(),
            counts: Counts::default(),
        }
    }

    /// Flattens the chunks it takes from `chunks` until there are none, and hands the
    /// buffers of read chunks back through `spent`.
    pub fn run(
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
            let mut parser = idle_parser
                .take()
                .expect("put back after each chunk")
                .recycle();
            for line in lines(bytes) {
                if line.trim_ascii().is_empty() {
                    continue;
                }
                // `line` lies within `bytes`: its start is its distance from theirs.
                let line_at = || chunk.line_at(line.as_ptr() as usize - bytes.as_ptr() as usize);
                // Checked line by line, just before parsing: the parser then reads the
                // line from the cache the check brought it into, not from memory again.
                let text = simdutf8::basic::from_utf8(line).map_err(|_| {
                    anyhow::anyhow!("{}: not UTF-8 text (JSON lines must be UTF-8)", line_at())
                })?;
                self.object(&mut parser, chunk.stream, text)
                    .with_context(line_at)?;
            }
            idle_parser = Some(parser.recycle());
            // A full pool only means enough buffers circulate already.
            if let ChunkBytes::Read(buffer) = chunk.bytes {
                let _ = spent.try_send(buffer);
            }
            if self.buffered_rows() >= self.max_rows {
                // Rows of partitions the other workers are writing wait for the next time,
                // up to as many again.
                self.flush(self.max_rows)?;
            }
        }
        self.flush(0)?;
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
            let (privacy, derivation) = (self.privacy, self.derivation);
            let tables = self
                .calls
                .entry(dt)
                .or_insert_with(|| CallRecordTables::deriving(privacy, derivation));
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
        let privacy = self.privacy;
        let context = RowContext {
            call_id: log.row_id(&object).unwrap_or_default(),
            ..context
        };
        self.logs
            .entry(stream)
            .or_insert_with(|| LogRows::new(stream, privacy))
            .append(dt, &object, &context, &mut self.issues);
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
        rows::report_issues(&mut self.issues, &mut self.counts.value_issues);
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
        let logs = self.logs.values_mut().flat_map(LogRows::builders);
        calls.chain(logs)
    }

    /// Writes the rows of every table into the run's files, leaving at most `max_unwritten`
    /// rows of partitions another worker is writing for later.
    fn flush(&mut self, max_unwritten: usize) -> anyhow::Result<()> {
        let batches = self.batches.clone();
        let mut unwritten = std::mem::take(&mut self.unwritten);
        batches.write_full_blocking(self.builders(), &mut unwritten, max_unwritten)?;
        self.unwritten = unwritten;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_per_core_up_to_sixteen() {
        assert_eq!(default_workers(0), 1);
        assert_eq!(default_workers(2), 2);
        assert_eq!(default_workers(16), 16);
        assert_eq!(default_workers(64), 16);
    }

    #[test]
    fn workers_share_one_row_budget_down_to_efficient_batches() {
        assert_eq!(max_rows(1), 64 * 1024);
        assert_eq!(max_rows(2), 32 * 1024);
        assert_eq!(max_rows(8), 8 * 1024);
        assert_eq!(max_rows(64), 4 * 1024);
        assert_eq!(max_rows(0), 64 * 1024);
    }
}
