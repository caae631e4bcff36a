//! What a run published, as both commands' summaries (and manifests) report it: the
//! partitions it replaces, with the files and totals per table; and the commit's changes
//! that replace them.
//!
//! Knows nothing of Graph, of raw input or of how the rows were made.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use serde::Serialize;

use super::writer::Staged;
use crate::commit::ZoneChange;
use crate::schema;
use crate::sink::WrittenFile;
use crate::streams::StreamKind;

/// Totals of one table.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct TableTotals {
    pub rows: u64,
    pub files: u64,
    pub bytes: u64,
}

/// The part of a summary both commands write alike (flattened into theirs, so the
/// manifest lists these fields among the command's own).
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    pub tables: BTreeMap<String, TableTotals>,
    /// `table/dt=YYYY-MM-DD` partitions that now hold exactly this run's rows.
    pub partitions_replaced: Vec<String>,
    pub files: Vec<WrittenFile>,
    /// Delta tables: the version each table's commit writes.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub table_versions: BTreeMap<String, u64>,
}

impl Staged {
    /// The commit's changes that replace the partitions of `days` in every table of their
    /// stream (and in the raw zone, when one is staged), also where the run has no rows
    /// (and every partition it staged files for); and what that publishes of `streams`.
    pub fn changes(
        &self,
        streams: &[StreamKind],
        days: &[(StreamKind, NaiveDate)],
    ) -> (Vec<ZoneChange>, Published) {
        let mut zones = Vec::new();
        if let Some(raw) = &self.raw {
            let raw_partitions = days
                .iter()
                .map(|(stream, dt)| (stream.name().to_string(), *dt))
                .collect();
            zones.push(raw.changes(&raw_partitions).0);
        }
        let (tables, report) = self.tables.changes(&table_partitions(days.iter().copied()));
        zones.push(tables);
        let published = Published {
            tables: table_totals(streams, &report.files),
            partitions_replaced: report.partitions_replaced,
            files: report.files,
            table_versions: BTreeMap::new(),
        };
        (zones, published)
    }
}

/// Every table of each `(stream, dt)`: the partitions a run replaces.
pub fn table_partitions(
    days: impl Iterator<Item = (StreamKind, NaiveDate)>,
) -> BTreeSet<(String, NaiveDate)> {
    days.flat_map(|(stream, dt)| {
        schema::tables_of_stream(stream.name()).map(move |table| (table.table.clone(), dt))
    })
    .collect()
}

/// Rows, files and bytes per table of `streams` (zero for a table without files).
fn table_totals(streams: &[StreamKind], files: &[WrittenFile]) -> BTreeMap<String, TableTotals> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 5, d).unwrap()
    }

    #[test]
    fn every_table_of_a_stream_is_replaced_on_each_day() {
        let partitions = table_partitions(
            [
                (StreamKind::CallRecords, day(1)),
                (StreamKind::CallRecords, day(2)),
            ]
            .into_iter(),
        );
        let tables: Vec<_> = schema::tables_of_stream(StreamKind::CallRecords.name()).collect();
        assert!(tables.len() > 1);
        assert_eq!(partitions.len(), 2 * tables.len());
        assert!(
            tables
                .iter()
                .all(|t| partitions.contains(&(t.table.clone(), day(2))))
        );
    }

    #[test]
    fn totals_count_every_table_of_the_streams_also_without_files() {
        let table = schema::tables_of_stream(StreamKind::CallRecords.name())
            .next()
            .unwrap();
        let file = |rows, bytes| WrittenFile {
            table: table.table.clone(),
            dt: day(1),
            path: String::new(),
            rows,
            bytes,
        };
        let totals = table_totals(&[StreamKind::CallRecords], &[file(3, 100), file(4, 50)]);
        assert_eq!(
            totals[&table.table],
            TableTotals {
                rows: 7,
                files: 2,
                bytes: 150
            }
        );
        assert_eq!(
            totals.len(),
            schema::tables_of_stream(StreamKind::CallRecords.name()).count()
        );
        assert!(
            totals
                .values()
                .filter(|t| t.files == 0)
                .all(|t| *t == TableTotals::default())
        );
    }
}
