//! Fetching one log stream (`getPstnCalls(…)` and the like) over a window: in chunks of at
//! most 90 days, pages of rows, each row kept by its own time in its chunk's half-open
//! range and placed in the partition of its day; rows outside a partial window on its
//! edge days copied from the lake; rows that cannot be placed quarantined.
//!
//! May touch: Graph (through [`crate::streams::logs`]), the lake and the raw zone (reading,
//! through [`crate::reuse`]), the run's writer and quarantine.

use std::collections::HashSet;

use anyhow::Context;
use chrono::NaiveDate;
use futures::TryStreamExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{BATCH_ROWS, Cancelled};
use crate::flatten::{FlattenIssue, RowContext};
use crate::graph::GraphClient;
use crate::privacy::Privacy;
use crate::progress::{Progress, StreamProgress, Unit};
use crate::raw;
use crate::reuse;
use crate::run::quarantine::Quarantine;
use crate::run::rows::{self, LogRows};
use crate::run::writer::Batches;
use crate::schema::TableSchema;
use crate::store::Location;
use crate::streams::logs::{self, LogStream};
use crate::window::Window;

/// One log stream's fetch.
pub(super) struct LogRun<'a> {
    pub client: &'a GraphClient,
    pub privacy: &'a Privacy,
    /// The lake, whose rows outside the window on its edge days are kept.
    pub lake: &'a Location,
    /// The raw zone, if the run keeps one: every row also goes there as a line.
    pub raw: Option<&'a Location>,
    pub log: &'static LogStream,
    pub window: Window,
    pub chunk_days: u32,
    pub progress: &'a Progress,
    pub cancel: &'a CancellationToken,
}

impl LogRun<'_> {
    /// Fetches every chunk of the window; returns the number of values written as null.
    pub async fn fetch(
        &self,
        batches: &Batches,
        quarantine: &mut Quarantine,
    ) -> anyhow::Result<u64> {
        let stream = self.log.kind;
        let mut rows = LogRows::new(stream, self.privacy);
        let mut value_issues = 0;
        let progress = self.progress.stream(stream.name(), Unit::Rows);
        for chunk in self.log.chunks(self.window, self.chunk_days) {
            let chunk_run = Chunk {
                log: self,
                chunk,
                url: logs::request_url(self.client, self.log, chunk),
                seen: HashSet::new(),
                issues: Vec::new(),
            };
            chunk_run
                .fetch(&mut rows, batches, quarantine, &progress, &mut value_issues)
                .await?;
        }
        batches.send_full(rows.builders(), 1).await?;
        self.keep_outside_window(rows.table(), batches).await?;
        progress.finish();
        Ok(value_issues)
    }

    /// Copies the lake's rows (and raw lines) of the window's edge days that lie outside
    /// the window: the run replaces only the rows of its window.
    async fn keep_outside_window(
        &self,
        table: &'static TableSchema,
        batches: &Batches,
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
            for dt in edge_days {
                reuse::copy_rows_outside_window(
                    &lake,
                    log.kind,
                    dt,
                    window,
                    &runtime,
                    |table, batch| sender.write_rows_blocking(table, dt, batch),
                )?;
                if let Some(raw) = &raw {
                    reuse::raw_log_lines_outside(raw, log, dt, window, &runtime, |line| {
                        sender.send_line_blocking(log.kind, dt, line)
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

/// One request window of a log stream's fetch.
struct Chunk<'r, 'a> {
    log: &'r LogRun<'a>,
    chunk: Window,
    url: url::Url,
    /// A page that shifts while rows arrive can repeat a row; ids are unique per chunk
    /// because chunks do not overlap.
    seen: HashSet<String>,
    issues: Vec<FlattenIssue>,
}

impl Chunk<'_, '_> {
    /// Fetches the chunk's pages into `rows`, sending full partitions (and every row's raw
    /// line) to the writer; values written as null are counted in `value_issues`.
    async fn fetch(
        mut self,
        rows: &mut LogRows<'_>,
        batches: &Batches,
        quarantine: &mut Quarantine,
        progress: &StreamProgress,
        value_issues: &mut u64,
    ) -> anyhow::Result<()> {
        let (client, stream, chunk) = (self.log.client, self.log.log.kind, self.chunk);
        let context = RowContext {
            report_from: chunk.from.timestamp_micros(),
            report_to: chunk.to.timestamp_micros(),
            ..RowContext::default()
        };
        let mut pages = std::pin::pin!(logs::pages(client, self.url.clone()));
        loop {
            let page = tokio::select! {
                biased;
                () = self.log.cancel.cancelled() => return Err(Cancelled.into()),
                page = pages.try_next() => page.with_context(|| format!("cannot export {stream} for {chunk}"))?,
            };
            let Some(page) = page else { break };
            progress.page(page.len(), client.stats());
            let before = rows.rows();
            let mut sent = 0;
            for row in page {
                let Some((dt, id)) = self.place(&row, quarantine).await? else {
                    continue;
                };
                let context = RowContext {
                    call_id: &id,
                    ..context
                };
                let builder = rows.append(dt, &row, &context, &mut self.issues);
                rows::report_issues(&mut self.issues, value_issues);
                if self.log.raw.is_some() {
                    let line = raw::log_line(self.log.log, &row, chunk);
                    batches.send_line(stream, dt, line).await?;
                }
                if builder.len() >= BATCH_ROWS {
                    sent += builder.len();
                    batches.send_full([(dt, builder)], BATCH_ROWS).await?;
                }
            }
            progress.done((rows.rows() + sent - before) as u64, client.stats());
        }
        Ok(())
    }

    /// The partition day and id of `row`, or None for a row that is not exported: one of
    /// another chunk, one seen already, or one quarantined (no time, or no id).
    async fn place(
        &mut self,
        row: &Value,
        quarantine: &mut Quarantine,
    ) -> anyhow::Result<Option<(NaiveDate, String)>> {
        let (log, chunk, url) = (self.log.log, self.chunk, self.url.as_str());
        let dt = match log.row_time(row) {
            None => chunk.from.date_naive(),
            // Inclusive ends and ignored filters bring rows of other chunks.
            Some(Ok(time)) if !chunk.contains(time) => return Ok(None),
            Some(Ok(time)) => time.date_naive(),
            Some(Err(problem)) => {
                let id = log.row_id(row).unwrap_or("(no id)").to_string();
                quarantine
                    .reject(log.kind, &id, url, &problem, &row.to_string())
                    .await?;
                return Ok(None);
            }
        };
        let id = match (log.id_field, log.row_id(row)) {
            (Some(field), None) => {
                let problem = format!("the row has no {field}");
                quarantine
                    .reject(log.kind, "(no id)", url, &problem, &row.to_string())
                    .await?;
                return Ok(None);
            }
            (_, Some(id)) if !self.seen.insert(id.to_string()) => return Ok(None),
            (_, id) => id.unwrap_or_default().to_string(),
        };
        Ok(Some((dt, id)))
    }
}
