//! Incremental rescans: which call records the lake already holds, at which version, and
//! copying their rows (and raw lines) into the run that replaces their partitions.
//!
//! A nightly run re-lists the last days; a record whose listed `(id, version)` is already in
//! the lake's `call_records` partition of its day is not fetched again. Its rows are copied
//! from the live partition files of every call table (and its line from the raw zone's live
//! partition, when one is kept) into the run's staged files, so the republished partition
//! still holds it. Reads in batches: memory does not grow with the partitions.
//!
//! The lake and the raw zone may each be on disk or on an object store (read by ranged and
//! streamed GETs); the functions block on the given runtime, so they run on a blocking thread.
//!
//! May touch: the live Parquet files and raw files of the window's call-record partitions
//! (reading only).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::BufRead;

use anyhow::Context;
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, BooleanArray, RecordBatch};
use chrono::NaiveDate;
use futures::StreamExt;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderBuilder, ParquetRecordBatchReaderBuilder};
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use tokio::runtime::Handle;

use crate::raw::{self, RawInput};
use crate::schema;
use crate::sink;
use crate::sink::store::Output;
use crate::streams::StreamKind;

/// The table whose rows say which records (and versions) a partition holds.
const RECORDS_TABLE: &str = "call_records";

/// `call_id → version` of the records the lake holds in the `call_records` partition `dt`.
pub fn lake_versions(
    lake: &Output,
    dt: NaiveDate,
    runtime: &Handle,
) -> anyhow::Result<HashMap<String, i64>> {
    let mut versions = HashMap::new();
    for file in runtime.block_on(sink::live_partition_files(lake, RECORDS_TABLE, dt))? {
        if !file.ends_with(".parquet") {
            continue;
        }
        let location = lake.display_path(&file);
        for batch in read_parquet(lake, &file, Some(&["call_id", "version"]), runtime)? {
            let batch = batch?;
            let (Some(ids), Some(version)) = (
                batch.column_by_name("call_id"),
                batch.column_by_name("version"),
            ) else {
                anyhow::bail!("{location} has no call_id or version column");
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
    lake: &Output,
    dt: NaiveDate,
    ids: &HashSet<String>,
    runtime: &Handle,
    mut send: impl FnMut(&'static str, RecordBatch) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    for table in schema::tables_of_stream(StreamKind::CallRecords.name()) {
        let name: &'static str = &table.table;
        for file in runtime.block_on(sink::live_partition_files(lake, name, dt))? {
            if !file.ends_with(".parquet") {
                continue;
            }
            let location = lake.display_path(&file);
            for batch in read_parquet(lake, &file, None, runtime)? {
                let batch = batch?;
                let call_ids = batch
                    .column_by_name("call_id")
                    .with_context(|| format!("{location} has no call_id column"))?
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
    raw_zone: &Output,
    dt: NaiveDate,
    runtime: &Handle,
    mut found: impl FnMut(&str, &[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    #[derive(serde::Deserialize)]
    struct Id<'a> {
        #[serde(borrow)]
        id: std::borrow::Cow<'a, str>,
    }
    let stream = StreamKind::CallRecords.name();
    for file in runtime.block_on(sink::live_partition_files(raw_zone, stream, dt))? {
        if !raw::is_raw_file(&file) {
            continue;
        }
        let input = RawInput::at(raw_zone, &file, runtime);
        let mut lines = input
            .open_lines()
            .with_context(|| format!("cannot read {input}"))?;
        let mut line = Vec::new();
        while lines
            .read_until(b'\n', &mut line)
            .with_context(|| format!("cannot read {input}"))?
            > 0
        {
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            let record: Id = serde_json::from_slice(text)
                .with_context(|| format!("a line of {input} has no id"))?;
            found(&record.id, text)?;
            line.clear();
        }
    }
    Ok(())
}

/// The record batches of the Parquet file `relative` (only `columns`, when given), read
/// from disk or by ranged GETs, one row group's worth at a time.
fn read_parquet(
    lake: &Output,
    relative: &str,
    columns: Option<&[&str]>,
    runtime: &Handle,
) -> anyhow::Result<Box<dyn Iterator<Item = anyhow::Result<RecordBatch>>>> {
    let location = lake.display_path(relative);
    let cannot_read = move |error: parquet::errors::ParquetError| {
        anyhow::Error::new(error).context(format!("cannot read {location}"))
    };
    Ok(match lake {
        Output::Local(root) => {
            let path = root.join(relative);
            let file =
                File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
            let builder =
                ParquetRecordBatchReaderBuilder::try_new(file).map_err(cannot_read.clone())?;
            let batches = project(builder, columns)
                .build()
                .map_err(cannot_read.clone())?;
            Box::new(batches.map(move |batch| batch.map_err(|e| cannot_read(e.into()))))
        }
        Output::Object(object) => {
            let builder = runtime.block_on(async {
                let file = object.parquet_file(relative).await?;
                anyhow::Ok(
                    ParquetRecordBatchStreamBuilder::new(file)
                        .await
                        .map_err(cannot_read.clone())?,
                )
            })?;
            let mut batches = project(builder, columns)
                .build()
                .map_err(cannot_read.clone())?;
            let runtime = runtime.clone();
            Box::new(std::iter::from_fn(move || {
                let batch = runtime.block_on(batches.next())?;
                Some(batch.map_err(cannot_read.clone()))
            }))
        }
    })
}

fn project<T>(builder: ArrowReaderBuilder<T>, columns: Option<&[&str]>) -> ArrowReaderBuilder<T> {
    match columns {
        Some(columns) => {
            let mask = ProjectionMask::columns(builder.parquet_schema(), columns.iter().copied());
            builder.with_projection(mask)
        }
        None => builder,
    }
}
