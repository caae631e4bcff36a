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
//! A run whose window covers only part of a day (its edge days) keeps the rows of that day
//! whose time lies outside the window the same way: the call records that started outside
//! it (with their rows in every call table and their raw lines), and the log rows and raw
//! log lines timed outside it.
//!
//! May touch: the live Parquet files and raw files of the window's partitions (reading only).

use std::collections::{HashMap, HashSet};
use std::io::BufRead;

use anyhow::Context;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, BooleanArray, RecordBatch};
use chrono::NaiveDate;
use tokio::runtime::Handle;

use crate::privacy::Privacy;
use crate::quality::Derivation;
use crate::raw::{self, RawInput};
use crate::schema::{self, TableSchema};
use crate::sink;
use crate::store::Location;
use crate::streams::StreamKind;
use crate::streams::logs::LogStream;
use crate::window::Window;

/// The table whose rows say which records (and versions) a partition holds.
const RECORDS_TABLE: &str = "call_records";

/// The footer key under which every file names what made its rows.
pub const FINGERPRINT_KEY: &str = "callrecords_etl.rows_fingerprint";

/// What made a run's rows: its privacy settings (with the hash key's id), the quality rules
/// and building file (`[quality]`, `[sites]`) and the table declarations. Rows are reused
/// only from files with the same fingerprint, so changed privacy settings, rules, sites or
/// schemas apply to every row written after the change.
pub fn rows_fingerprint(privacy: &Privacy, derivation: &Derivation) -> String {
    format!(
        "{};{};declarations={}",
        privacy.fingerprint(),
        derivation.fingerprint(),
        schema::declarations_id()
    )
}

/// The footer entry that records `fingerprint` in every file a run writes.
pub fn fingerprint_footer(fingerprint: &str) -> Vec<(String, String)> {
    vec![(FINGERPRINT_KEY.to_string(), fingerprint.to_string())]
}

/// A call record the lake holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LakeRecord {
    pub version: Option<i64>,
    /// Its `start_date_time`, in microseconds since the epoch.
    pub start_micros: Option<i64>,
    /// The fingerprint of the file holding it (None: written before fingerprints).
    pub fingerprint: Option<String>,
}

/// `call_id → (version, start)` of the records the lake holds in the `call_records`
/// partition `dt`.
pub fn lake_records(
    lake: &Location,
    dt: NaiveDate,
    runtime: &Handle,
) -> anyhow::Result<HashMap<String, LakeRecord>> {
    let mut records = HashMap::new();
    for file in runtime.block_on(sink::live_partition_files(lake, RECORDS_TABLE, dt))? {
        if !file.ends_with(".parquet") {
            continue;
        }
        let location = lake.display_path(&file);
        let columns = ["call_id", "version", "start_date_time"];
        let (fingerprint, batches) = read_parquet(lake, &file, Some(&columns), runtime)?;
        for batch in batches {
            let batch = batch?;
            let (Some(ids), Some(version), Some(start)) = (
                batch.column_by_name("call_id"),
                batch.column_by_name("version"),
                batch.column_by_name("start_date_time"),
            ) else {
                anyhow::bail!("{location} has no call_id, version or start_date_time column");
            };
            let ids = ids.as_string::<i32>();
            let version = version.as_primitive::<Int64Type>();
            let start = start.as_primitive::<TimestampMicrosecondType>();
            for row in 0..batch.num_rows() {
                let record = LakeRecord {
                    version: version.is_valid(row).then(|| version.value(row)),
                    start_micros: start.is_valid(row).then(|| start.value(row)),
                    fingerprint: fingerprint.clone(),
                };
                records.insert(ids.value(row).to_string(), record);
            }
        }
    }
    Ok(records)
}

/// The rows of the live partition `dt` of the log table `table` whose time (the column
/// `time_column`) lies outside `window`, batch by batch: what a run whose window covers
/// part of the day keeps.
pub fn copy_rows_outside(
    lake: &Location,
    table: &'static str,
    time_column: &str,
    dt: NaiveDate,
    window: Window,
    runtime: &Handle,
    mut send: impl FnMut(RecordBatch) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let (from, to) = (window.from.timestamp_micros(), window.to.timestamp_micros());
    for file in runtime.block_on(sink::live_partition_files(lake, table, dt))? {
        if !file.ends_with(".parquet") {
            continue;
        }
        let location = lake.display_path(&file);
        for batch in read_parquet(lake, &file, None, runtime)?.1 {
            let batch = batch?;
            let times = batch
                .column_by_name(time_column)
                .with_context(|| format!("{location} has no {time_column} column"))?
                .as_primitive::<TimestampMicrosecondType>();
            // A row without a time was placed by its request's range, which lay outside.
            let keep: BooleanArray = times
                .iter()
                .map(|time| Some(time.is_none_or(|t| t < from || t >= to)))
                .collect();
            let kept = arrow_select::filter::filter_record_batch(&batch, &keep)?;
            if kept.num_rows() > 0 {
                send(kept)?;
            }
        }
    }
    Ok(())
}

/// The rows of `ids` in the live partition `dt` of every call table, batch by batch.
pub fn copy_rows(
    lake: &Location,
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
            for batch in read_parquet(lake, &file, None, runtime)?.1 {
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
    raw_zone: &Location,
    dt: NaiveDate,
    runtime: &Handle,
    mut found: impl FnMut(&str, &[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    #[derive(serde::Deserialize)]
    struct Id<'a> {
        #[serde(borrow)]
        id: std::borrow::Cow<'a, str>,
    }
    raw_lines(
        raw_zone,
        StreamKind::CallRecords.name(),
        dt,
        runtime,
        |text, input| {
            let record: Id = serde_json::from_slice(text)
                .with_context(|| format!("a line of {input} has no id"))?;
            found(&record.id, text)
        },
    )
}

/// Calls `found(line)` for every line of the raw zone's live partition `dt` of the log
/// stream `log` whose row time lies outside `window` (what a run covering part of the day
/// keeps).
pub fn raw_log_lines_outside(
    raw_zone: &Location,
    log: &LogStream,
    dt: NaiveDate,
    window: Window,
    runtime: &Handle,
    mut found: impl FnMut(&[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    raw_lines(raw_zone, log.kind.name(), dt, runtime, |text, input| {
        let row: serde_json::Value = serde_json::from_slice(text)
            .with_context(|| format!("a line of {input} is not JSON"))?;
        let time = match log.row_time(&row) {
            Some(time) => time,
            None => raw::report_range(&row).map(|range| range.from),
        };
        match time {
            Ok(time) if window.contains(time) => Ok(()),
            Ok(_) => found(text),
            Err(problem) => anyhow::bail!("a line of {input} has no usable time: {problem}"),
        }
    })
}

/// Calls `found(line, file)` for every line of the raw zone's live partition `dt` of `stream`.
fn raw_lines(
    raw_zone: &Location,
    stream: &str,
    dt: NaiveDate,
    runtime: &Handle,
    mut found: impl FnMut(&[u8], &RawInput) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
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
            found(text, &input)?;
            line.clear();
        }
    }
    Ok(())
}

/// The record batches of the Parquet file `relative` (only `columns`, when given), read
/// from disk or by ranged GETs, one row group's worth at a time; with the fingerprint its
/// footer records.
type Batches = Box<dyn Iterator<Item = anyhow::Result<RecordBatch>>>;
fn read_parquet(
    lake: &Location,
    relative: &str,
    columns: Option<&[&str]>,
    runtime: &Handle,
) -> anyhow::Result<(Option<String>, Batches)> {
    let file = lake.read_parquet(relative, columns, runtime)?;
    let fingerprint = footer_fingerprint(&file.metadata);
    let batches = file.batches.map(|batch| batch.map_err(anyhow::Error::from));
    Ok((fingerprint, Box::new(batches)))
}

fn footer_fingerprint(metadata: &parquet::file::metadata::ParquetMetaData) -> Option<String> {
    metadata
        .file_metadata()
        .key_value_metadata()?
        .iter()
        .find(|entry| entry.key == FINGERPRINT_KEY)
        .and_then(|entry| entry.value.clone())
}

/// The fingerprints of the files of the live partition `dt` of `table` (None for a file
/// without one), reading only footers.
pub fn partition_fingerprints(
    lake: &Location,
    table: &str,
    dt: NaiveDate,
    runtime: &Handle,
) -> anyhow::Result<std::collections::BTreeSet<Option<String>>> {
    let mut fingerprints = std::collections::BTreeSet::new();
    for file in runtime.block_on(sink::live_partition_files(lake, table, dt))? {
        if file.ends_with(".parquet") {
            fingerprints.insert(read_parquet(lake, &file, Some(&[]), runtime)?.0);
        }
    }
    Ok(fingerprints)
}

/// The column of a log table holding each row's time, by which it was placed: the one read
/// from the stream's time field, or the start of the aggregated range (dial-outs).
pub fn row_time_column(table: &'static TableSchema, log: &LogStream) -> &'static str {
    let path = log.time_field.unwrap_or("$report_from");
    table
        .columns
        .iter()
        .find(|column| column.path == path)
        .map(|column| column.name.as_str())
        .unwrap_or_else(|| {
            panic!(
                "schemas/{}.json declares no column read from {path}",
                table.table
            )
        })
}

/// Copies the rows of the lake's partition `dt` that lie outside `window`, in every table
/// of `stream`: the call records that started outside it with their rows in every call
/// table, or the log rows timed outside it. For a run whose window covers `dt` in part.
pub fn copy_rows_outside_window(
    lake: &Location,
    stream: StreamKind,
    dt: NaiveDate,
    window: Window,
    runtime: &Handle,
    mut send: impl FnMut(&'static str, RecordBatch) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    match stream.log() {
        None => {
            let outside: HashSet<String> = lake_records(lake, dt, runtime)?
                .into_iter()
                .filter(|(_, record)| !record.started_in(window))
                .map(|(id, _)| id)
                .collect();
            copy_rows(lake, dt, &outside, runtime, send)
        }
        Some(log) => {
            let table = schema::tables_of_stream(stream.name())
                .next()
                .unwrap_or_else(|| panic!("schemas/ declares no table of stream {stream}"));
            let name: &'static str = &table.table;
            let time_column = row_time_column(table, log);
            copy_rows_outside(lake, name, time_column, dt, window, runtime, |batch| {
                send(name, batch)
            })
        }
    }
}

impl LakeRecord {
    /// Whether it started in `window` (a record without a start did not).
    pub fn started_in(&self, window: Window) -> bool {
        self.start_micros
            .and_then(chrono::DateTime::from_timestamp_micros)
            .is_some_and(|start| window.contains(start))
    }
}

/// `window`, widened to whole days where an edge day's partition (in a table of `stream`)
/// holds rows written under another fingerprint: those rows cannot be kept as they are, so
/// the whole day is exported again.
pub fn widen_for_fingerprint(
    lake: &Location,
    stream: StreamKind,
    window: Window,
    fingerprint: &str,
    runtime: &Handle,
) -> anyhow::Result<Window> {
    let mut widened = window;
    for dt in window
        .days()
        .into_iter()
        .filter(|dt| !window.covers_day(*dt))
    {
        let mut other = false;
        for table in schema::tables_of_stream(stream.name()) {
            let fingerprints = partition_fingerprints(lake, &table.table, dt, runtime)?;
            other |= fingerprints
                .iter()
                .any(|f| f.as_deref() != Some(fingerprint));
        }
        if other {
            let start = crate::window::midnight(dt);
            widened.from = widened.from.min(start);
            widened.to = widened.to.max(start + chrono::Duration::days(1));
            tracing::warn!(
                stream = stream.name(),
                %dt,
                "The lake's {stream} rows of {dt} were written under other privacy settings or table declarations \
                 (or by an older version): the whole day is exported again instead of keeping the rows outside \
                 the window."
            );
        }
    }
    Ok(widened)
}

/// Per stream of `streams`, `window` widened as [`widen_for_fingerprint`] says; the lake's
/// footers are read on a blocking thread.
pub async fn widen_for_fingerprints(
    lake: &Location,
    streams: &[StreamKind],
    window: Window,
    fingerprint: &str,
) -> anyhow::Result<Vec<(StreamKind, Window)>> {
    let (lake, streams, fingerprint) = (lake.clone(), streams.to_vec(), fingerprint.to_string());
    tokio::task::spawn_blocking(move || {
        let runtime = Handle::current();
        streams
            .into_iter()
            .map(|stream| {
                let widened = widen_for_fingerprint(&lake, stream, window, &fingerprint, &runtime)?;
                Ok((stream, widened))
            })
            .collect::<anyhow::Result<Vec<_>>>()
    })
    .await
    .context("the reading of the lake's footers stopped")?
    .context("cannot read what made the lake's rows")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streams::logs::LOG_STREAMS;

    #[test]
    fn every_log_table_has_the_time_column_its_rows_are_placed_by() {
        let names: Vec<&str> = LOG_STREAMS
            .iter()
            .map(|log| {
                let table = schema::tables_of_stream(log.kind.name()).next().unwrap();
                row_time_column(table, log)
            })
            .collect();
        assert_eq!(
            names,
            [
                "start_date_time",
                "start_date_time",
                "sent_date_time",
                "block_date_time",
                "report_from_date_time"
            ]
        );
    }
}
