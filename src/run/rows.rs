//! Rows while they are built, before they go to the writer: a log stream's rows in the
//! partition of their day, and the values the flattener could not convert (logged, then
//! counted).
//!
//! Knows nothing of Graph, of raw input or of the writer.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde_json::Value;

use crate::flatten::{FlattenIssue, RowContext, TableBuilder};
use crate::privacy::Privacy;
use crate::schema::{self, TableSchema};
use crate::streams::StreamKind;

/// Value problems logged one by one; the rest are counted in the summary.
const LOGGED_ISSUES: usize = 50;

/// The rows of one log stream, per day: its one table's builder for each partition.
pub struct LogRows<'p> {
    table: &'static TableSchema,
    privacy: &'p Privacy,
    partitions: BTreeMap<NaiveDate, TableBuilder>,
}

impl<'p> LogRows<'p> {
    pub fn new(stream: StreamKind, privacy: &'p Privacy) -> Self {
        LogRows {
            table: schema::tables_of_stream(stream.name())
                .next()
                .unwrap_or_else(|| panic!("schemas/ declares no table of stream {stream}")),
            privacy,
            partitions: BTreeMap::new(),
        }
    }

    pub fn table(&self) -> &'static TableSchema {
        self.table
    }

    /// Appends `row` to the partition `dt`, whose builder it returns.
    pub fn append(
        &mut self,
        dt: NaiveDate,
        row: &Value,
        context: &RowContext,
        issues: &mut Vec<FlattenIssue>,
    ) -> &mut TableBuilder {
        let (table, privacy) = (self.table, self.privacy);
        let builder = self
            .partitions
            .entry(dt)
            .or_insert_with(|| TableBuilder::with_privacy(table, privacy));
        builder.append(row, context, issues);
        builder
    }

    /// Rows held in every partition.
    pub fn rows(&self) -> usize {
        self.partitions.values().map(TableBuilder::len).sum()
    }

    /// Every partition's builder, by day.
    pub fn builders(&mut self) -> impl Iterator<Item = (NaiveDate, &mut TableBuilder)> {
        self.partitions
            .iter_mut()
            .map(|(dt, builder)| (*dt, builder))
    }
}

/// Logs the first problems of a run one by one and counts them all in `count`.
pub fn report_issues(issues: &mut Vec<FlattenIssue>, count: &mut u64) {
    for issue in issues.drain(..) {
        *count += 1;
        if *count as usize <= LOGGED_ISSUES {
            tracing::warn!(table = issue.table, column = issue.column, call_id = %issue.record_id, "Value written as null: {issue}.");
        } else if *count as usize == LOGGED_ISSUES + 1 {
            tracing::warn!("More values could not be converted; they are counted in the summary.");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 5, d).unwrap()
    }

    #[test]
    fn log_rows_go_to_the_partition_of_their_day_in_their_stream_table() {
        let privacy = Privacy::default();
        let mut rows = LogRows::new(StreamKind::PstnCalls, &privacy);
        assert_eq!(rows.table().stream, StreamKind::PstnCalls.name());
        let mut issues = Vec::new();
        let row = json!({"id": "r1"});
        for dt in [day(2), day(1), day(2)] {
            rows.append(dt, &row, &RowContext::default(), &mut issues);
        }
        assert_eq!(rows.rows(), 3);
        let held: Vec<(NaiveDate, usize)> = rows
            .builders()
            .map(|(dt, builder)| (dt, builder.len()))
            .collect();
        assert_eq!(held, [(day(1), 1), (day(2), 2)]);
    }

    #[test]
    fn every_issue_is_counted_and_drained() {
        let mut issues = vec![
            FlattenIssue {
                table: "t",
                column: "c",
                record_id: "r".into(),
                message: "m".into(),
            };
            LOGGED_ISSUES + 3
        ];
        let mut count = 0;
        report_issues(&mut issues, &mut count);
        assert!(issues.is_empty());
        assert_eq!(count, LOGGED_ISSUES as u64 + 3);
    }
}
