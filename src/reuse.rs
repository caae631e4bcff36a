//! Incremental rescans: which call records the lake already holds, at which version, and
//! copying their rows (and raw lines) into the run that replaces their partitions.
//!
//! A nightly run re-lists the last days; a record whose listed `(id, version)` is already in
//! the lake's `call_records` partition of its day is not fetched again. Its rows are copied
//! from the live partition files of every call table (and its line from the raw zone's live
//! partition, when one is kept) into the run's staged files, so the republished partition
//! still holds it. Reads in batches: memory does not grow with the partitions.
//!
//! May touch: the live Parquet files and raw files of the window's call-record partitions
//! (reading only).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::Context;
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, BooleanArray, RecordBatch};
use chrono::NaiveDate;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::raw;
use crate::schema;
use crate::sink;
use crate::streams::StreamKind;

/// The table whose rows say which records (and versions) a partition holds.
const RECORDS_TABLE: &str = "call_records";

/// `call_id → version` of the records the lake holds in the `call_records` partition `dt`.
pub fn lake_versions(lake: &Path, dt: NaiveDate) -> anyhow::Result<HashMap<String, i64>> {
    let mut versions = HashMap::new();
    for path in partition_files(lake, RECORDS_TABLE, dt, "parquet")? {
        let builder = open(&path)?;
        let mask = ProjectionMask::columns(builder.parquet_schema(), ["call_id", "version"]);
        for batch in builder.with_projection(mask).build()? {
            let batch = batch.with_context(|| format!("cannot read {}", path.display()))?;
            let (Some(ids), Some(version)) = (
                batch.column_by_name("call_id"),
                batch.column_by_name("version"),
            ) else {
                anyhow::bail!("{} has no call_id or version column", path.display());
            };
            let (ids, version) = (ids.as_string::<i32>(), version.as_primitive::<Int64Type>());
            for row in 0..batch.num_rows() {
                if !version.is_null(row) {
                    versions.insert(ids.value(row).to_string(), version.value(row));
                }
            }
        }
    }
    Ok(versions)
}

/// The rows of `ids` in the live partition `dt` of every call table, batch by batch.
pub fn copy_rows(
    lake: &Path,
    dt: NaiveDate,
    ids: &HashSet<String>,
    mut send: impl FnMut(&'static str, RecordBatch) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    for table in schema::tables_of_stream(StreamKind::CallRecords.name()) {
        let name: &'static str = &table.table;
        for path in partition_files(lake, name, dt, "parquet")? {
            for batch in open(&path)?.build()? {
                let batch = batch.with_context(|| format!("cannot read {}", path.display()))?;
                let call_ids = batch
                    .column_by_name("call_id")
                    .with_context(|| format!("{} has no call_id column", path.display()))?
                    .as_string::<i32>();
                let keep: BooleanArray = call_ids
                    .iter()
                    .map(|id| Some(id.is_some_and(|id| ids.contains(id))))
                    .collect();
                let kept = arrow_select::filter::filter_record_batch(&batch, &keep)?;
                if kept.num_rows() > 0 {
                    send(name, kept)?;
                }
            }
        }
    }
    Ok(())
}

/// Calls `found(id, line)` for every call record in the raw zone's live partition `dt`.
pub fn raw_records(
    raw_root: &Path,
    dt: NaiveDate,
    mut found: impl FnMut(&str, &[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    #[derive(serde::Deserialize)]
    struct Id<'a> {
        #[serde(borrow)]
        id: std::borrow::Cow<'a, str>,
    }
    let dir = raw_root
        .join(StreamKind::CallRecords.name())
        .join(sink::partition_dir_name(dt));
    if !dir.is_dir() {
        return Ok(());
    }
    for path in raw::files_under(&dir)? {
        let mut lines = raw::open_lines(&path)?;
        let mut line = Vec::new();
        while lines.read_until(b'\n', &mut line)? > 0 {
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            let record: Id = serde_json::from_slice(text)
                .with_context(|| format!("a line of {} has no id", path.display()))?;
            found(&record.id, text)?;
            line.clear();
        }
    }
    Ok(())
}

fn partition_files(
    root: &Path,
    table: &str,
    dt: NaiveDate,
    extension: &str,
) -> anyhow::Result<Vec<PathBuf>> {
    let dir = root.join(table).join(sink::partition_dir_name(dt));
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot list {}", dir.display()))?
            .path();
        if path.extension().is_some_and(|e| e == extension) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn open(path: &Path) -> anyhow::Result<ParquetRecordBatchReaderBuilder<File>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("cannot read {}", path.display()))
}
