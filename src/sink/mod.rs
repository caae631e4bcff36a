//! Hive-partitioned Parquet output: `<out>/<table>/dt=YYYY-MM-DD/part-<run_id>-<n>.parquet`,
//! on a local folder or an object store ([`crate::store::Location`]).
//!
//! Files are written into a staging area (`<out>/_staging/<run_id>/`, which Spark, Hive,
//! Trino and DuckDB ignore because of the leading `_`) and made durable; [`StagedRun::changes`]
//! says what publishing them changes, and [`crate::commit`] publishes them together with
//! every other zone of the run, all or nothing.
//!
//! Knows nothing of Graph: it receives `(table, dt, RecordBatch)` and publishes partitions.
//! May touch: parquet/arrow, and the lake only through [`crate::store`].

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use arrow_array::RecordBatch;
use chrono::NaiveDate;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use serde::Serialize;

use crate::commit;
use crate::store::{Location, StoreError, StoreWriter};

/// The files' `created_by`, in the form parquet-mr's version parser reads (Spark and Hive
/// decide from it which statistics to trust): `<app> version <semver> (build <commit>)`,
/// the commit from `build.rs`.
pub fn created_by() -> String {
    format!(
        "callrecords-etl version {} (build {})",
        env!("CARGO_PKG_VERSION"),
        env!("CALLRECORDS_BUILD")
    )
}

mod encoding;

/// The folder, under the output root, where a run stages its files.
pub const STAGING_DIR: &str = "_staging";

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot {action} {location}: {source}")]
    Write {
        action: &'static str,
        location: String,
        source: io::Error,
    },
    #[error("cannot write Parquet file {location}: {source}")]
    Parquet {
        location: String,
        source: parquet::errors::ParquetError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A write after the run's writing stopped on a failure (kept for the run's end).
    #[error("the Parquet writer stopped")]
    Stopped,
    #[error(transparent)]
    Injected(#[from] crate::commit::InjectedFailure),
}

/// The error of `action` on the file being written at `location`.
pub(crate) fn write_error<'l>(
    action: &'static str,
    location: &'l str,
) -> impl FnOnce(io::Error) -> SinkError + 'l {
    move |source| SinkError::Write {
        action,
        location: location.to_string(),
        source,
    }
}

/// How files are laid out; the defaults suit scans by Spark, Trino and DuckDB.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// Rows per row group: large enough for efficient scans and good compression, small
    /// enough that one open partition writer stays within a few tens of MB.
    pub row_group_rows: usize,
    /// A partition's file is closed and a new one started past this size.
    pub target_file_bytes: usize,
    /// Memory all open partition writers may hold together (their row groups being
    /// encoded: column buffers, dictionaries, pages); past it the row group of the partition
    /// written least recently is ended early, so memory does not grow with the partitions
    /// or the input. Small enough that a week of daily files reaches it already: then 5x
    /// the input takes barely more memory, and the finished days' row groups are encoded
    /// while the rest is read instead of all at the end (BENCHMARKS.md).
    pub buffered_bytes: usize,
    /// Footer key-value pairs of every file besides the table's own metadata (what made
    /// the rows: [`crate::reuse::rows_fingerprint`]).
    pub footer: Vec<(String, String)>,
}

impl Default for SinkOptions {
    fn default() -> Self {
        SinkOptions {
            row_group_rows: 128 * 1024,
            target_file_bytes: 256 * 1024 * 1024,
            buffered_bytes: 48 * 1024 * 1024,
            footer: Vec::new(),
        }
    }
}

/// One file written by the run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WrittenFile {
    pub table: String,
    pub dt: NaiveDate,
    /// Path relative to the output root, as it is after publishing.
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
}

/// One open partition's file.
struct PartitionWriter {
    writer: ArrowWriter<StoreWriter>,
    /// The staged file, for messages.
    location: String,
    file_name: String,
    rows: u64,
    /// `writer.memory_size()` after its last write or flush (it changes only then).
    memory: usize,
}

/// An open partition as the sink's registry knows it. Its file is `None` once closed (by
/// the thread that filled it); a thread that finds it so opens the partition's next file.
struct OpenPartition {
    file: Arc<Mutex<Option<PartitionWriter>>>,
    /// Its file's `memory`, as of the file's last write or flush.
    memory: usize,
    /// When it was last written to, in writes of the run.
    last_write: u64,
}

/// What the threads writing into the sink share, behind one short-held lock.
#[derive(Default)]
struct Registry {
    open: BTreeMap<(String, NaiveDate), OpenPartition>,
    next_file: BTreeMap<(String, NaiveDate), u32>,
    written: Vec<WrittenFile>,
    /// The sum of the open partitions' `memory`.
    buffered: usize,
    writes: u64,
    /// The first write error; once set, every write is refused and the files are discarded.
    failure: Option<SinkError>,
}

/// Threads per core that close the run's files at its end (see [`ParquetSink::finish`]):
/// on a week of `mixed`, that phase took 68 ms with one per core, 57 with two, 50 with four.
const CLOSING_THREADS_PER_CORE: usize = 4;

/// Where the run stages its files: `_staging/<run_id>/` under the location's root.
pub(crate) struct Staging {
    location: Location,
    run_id: String,
    /// The runtime the writing threads upload through, on an object store.
    runtime: Option<tokio::runtime::Handle>,
}

/// Writes the batches of one run into staged Parquet files, one file per open partition.
///
/// Any number of threads may write at once: each batch is encoded by the thread that
/// wrote it (which also built it and frees it), holding only its partition's file; two
/// threads wait for each other only on the same partition. Lock order: a file's lock may
/// be held while taking the registry's, never the other way round (the registry only
/// tries files' locks).
pub struct ParquetSink {
    output: Location,
    run_id: String,
    staging: Staging,
    options: SinkOptions,
    properties: WriterProperties,
    encodings: encoding::TableEncodings,
    registry: Mutex<Registry>,
}

/// `_staging/<run_id>`, relative to the output root.
fn staging_prefix(run_id: &str) -> String {
    format!("{STAGING_DIR}/{run_id}")
}

impl Staging {
    /// Prepares `<location>/_staging/<run_id>/`. On an object store it must be called within
    /// a tokio runtime, whose handle the writing threads then use for the uploads.
    pub(crate) fn create(location: &Location, run_id: &str) -> Result<Self, SinkError> {
        location.create_folder(&staging_prefix(run_id))?;
        Ok(Staging {
            location: location.clone(),
            run_id: run_id.to_string(),
            runtime: tokio::runtime::Handle::try_current().ok(),
        })
    }

    /// A new staged file `<partition>/<file_name>` (partition = `<table>/dt=…`), and its
    /// location for messages.
    pub(crate) fn create_file(
        &self,
        partition: &str,
        file_name: &str,
    ) -> Result<(StoreWriter, String), SinkError> {
        let relative = format!("{}/{partition}/{file_name}", staging_prefix(&self.run_id));
        let writer = self.location.writer(&relative, self.runtime.as_ref())?;
        let location = writer.location();
        Ok((writer, location))
    }

    /// Removes the staged files (from a plain thread: it blocks on the uploads' runtime).
    pub(crate) fn discard(&self) {
        let _ = self
            .location
            .remove_all_blocking(&staging_prefix(&self.run_id), self.runtime.as_ref());
    }
}

impl ParquetSink {
    /// Prepares the staging area of the run. On an object store it must be called within a
    /// tokio runtime, whose handle the writing threads then use for the uploads.
    pub fn create(
        output: &Location,
        run_id: &str,
        options: SinkOptions,
    ) -> Result<Self, SinkError> {
        let staging = Staging::create(output, run_id)?;
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(1).expect("zstd level 1 is valid"),
            ))
            .set_max_row_group_row_count(Some(options.row_group_rows))
            .set_created_by(created_by())
            .build();
        Ok(ParquetSink {
            output: output.clone(),
            run_id: run_id.to_string(),
            staging,
            options,
            properties,
            encodings: encoding::TableEncodings::default(),
            registry: Mutex::new(Registry::default()),
        })
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry
            .lock()
            .expect("no thread panics holding the registry")
    }

    /// Appends `batch` to the partition `dt` of `table`, encoding it in this thread. After
    /// a failure (this write's or an earlier one, kept for [`ParquetSink::finish`]) it
    /// returns [`SinkError::Stopped`].
    pub fn write(&self, table: &str, dt: NaiveDate, batch: &RecordBatch) -> Result<(), SinkError> {
        self.write_unless_busy(table, dt, batch, true).map(|_| ())
    }

    /// [`ParquetSink::write`], unless another thread is writing the partition: then it
    /// returns at once, with `false`.
    pub fn try_write(
        &self,
        table: &str,
        dt: NaiveDate,
        batch: &RecordBatch,
    ) -> Result<bool, SinkError> {
        self.write_unless_busy(table, dt, batch, false)
    }

    fn write_unless_busy(
        &self,
        table: &str,
        dt: NaiveDate,
        batch: &RecordBatch,
        wait: bool,
    ) -> Result<bool, SinkError> {
        if batch.num_rows() == 0 {
            return Ok(true);
        }
        let key = (table.to_string(), dt);
        let outcome = self.append(&key, batch, wait).and_then(|written| {
            if written {
                self.bound_buffers()?;
            }
            Ok(written)
        });
        match outcome {
            Ok(written) => Ok(written),
            Err(error) => {
                self.fail(error);
                Err(SinkError::Stopped)
            }
        }
    }

    /// Stops the sink because of `error` (also one of another sink of the run): every
    /// later write is refused, and [`ParquetSink::finish`] discards the files and returns
    /// the first error.
    pub fn fail(&self, error: SinkError) {
        let mut registry = self.registry();
        if registry.failure.is_none() && !matches!(error, SinkError::Stopped) {
            registry.failure = Some(error);
        }
    }

    /// Whether a write failed: the run will not be published.
    pub fn stopped(&self) -> bool {
        self.registry().failure.is_some()
    }

    /// Writes `batch` into its partition's open file (opening one if none is), and closes
    /// the file once it reaches its target size. Without `wait`, a file another thread is
    /// writing is left alone (`false`).
    fn append(
        &self,
        key: &(String, NaiveDate),
        batch: &RecordBatch,
        wait: bool,
    ) -> Result<bool, SinkError> {
        crate::step!("sink::write");
        loop {
            let file = self.open_file(key, batch)?;
            let mut guard = match file.try_lock() {
                Ok(guard) => guard,
                Err(std::sync::TryLockError::WouldBlock) if !wait => return Ok(false),
                Err(_) => file.lock().expect("no thread panics holding a file"),
            };
            // Closed by another thread since: the partition's next file takes the rows.
            let Some(partition) = guard.as_mut() else {
                continue;
            };
            partition
                .writer
                .write(batch)
                .map_err(parquet_error(&partition.location))?;
            partition.rows += batch.num_rows() as u64;
            let full = partition.writer.bytes_written() + partition.writer.in_progress_size()
                >= self.options.target_file_bytes;
            let before = std::mem::replace(&mut partition.memory, partition.writer.memory_size());
            let mut registry = self.registry();
            registry.writes += 1;
            registry.buffered = registry.buffered - before + partition.memory;
            if full {
                registry.buffered -= partition.memory;
                registry.open.remove(key);
                drop(registry);
                let partition = guard.take().expect("checked above");
                drop(guard);
                let written = close_partition(&key.0, key.1, partition)?;
                self.registry().written.push(written);
            } else {
                let writes = registry.writes;
                let open = registry
                    .open
                    .get_mut(key)
                    .expect("listed while its file is open");
                open.memory = partition.memory;
                open.last_write = writes;
            }
            return Ok(true);
        }
    }

    /// The open file of the partition `key`, opened for `batch`'s schema if there is none.
    fn open_file(
        &self,
        key: &(String, NaiveDate),
        batch: &RecordBatch,
    ) -> Result<Arc<Mutex<Option<PartitionWriter>>>, SinkError> {
        let mut registry = self.registry();
        if registry.failure.is_some() {
            return Err(SinkError::Stopped);
        }
        if let Some(open) = registry.open.get(key) {
            return Ok(open.file.clone());
        }
        let sequence = registry.next_file.entry(key.clone()).or_insert(0);
        let file_name = format!("part-{}-{:05}.parquet", self.run_id, *sequence);
        *sequence += 1;
        let file = Arc::new(Mutex::new(Some(self.open_writer(key, file_name, batch)?)));
        let open = OpenPartition {
            file: file.clone(),
            memory: 0,
            last_write: 0,
        };
        registry.open.insert(key.clone(), open);
        Ok(file)
    }

    /// Ends row groups, least recently written partition first, until the open files hold
    /// at most the budget. Input arrives roughly in time order, so the partitions ended
    /// first are mostly the days already complete. Files other threads are writing are
    /// passed over: those threads check the budget themselves when they are done.
    fn bound_buffers(&self) -> Result<(), SinkError> {
        loop {
            let candidates = {
                let registry = self.registry();
                if registry.buffered <= self.options.buffered_bytes {
                    return Ok(());
                }
                let mut candidates: Vec<_> = registry
                    .open
                    .iter()
                    .filter(|(_, open)| open.memory > 0)
                    .map(|(key, open)| (open.last_write, key.clone(), open.file.clone()))
                    .collect();
                candidates.sort_by_key(|(last_write, ..)| *last_write);
                candidates
            };
            let Some((key, mut guard)) = candidates
                .iter()
                .find_map(|(_, key, file)| file.try_lock().ok().map(|guard| (key, guard)))
            else {
                return Ok(());
            };
            let Some(partition) = guard.as_mut() else {
                continue;
            };
            partition
                .writer
                .flush()
                .map_err(parquet_error(&partition.location))?;
            let before = std::mem::replace(&mut partition.memory, partition.writer.memory_size());
            let mut registry = self.registry();
            registry.buffered = registry.buffered - before + partition.memory;
            let open = registry
                .open
                .get_mut(key)
                .expect("listed while its file is open");
            open.memory = partition.memory;
        }
    }

    fn open_writer(
        &self,
        (table, dt): &(String, NaiveDate),
        file_name: String,
        batch: &RecordBatch,
    ) -> Result<PartitionWriter, SinkError> {
        let partition = format!("{table}/{}", partition_dir_name(*dt));
        let (sink, location) = self.staging.create_file(&partition, &file_name)?;
        let schema = batch.schema();
        let properties = self.encodings.for_file(&self.properties, table, batch);
        let mut writer = ArrowWriter::try_new(sink, schema.clone(), Some(properties))
            .map_err(parquet_error(&location))?;
        // The table's metadata (its descriptions, keys, ...) in plain footer key-value pairs,
        // for readers that do not decode the Arrow schema embedded under `ARROW:schema`.
        let mut metadata: Vec<_> = schema
            .metadata()
            .iter()
            .chain(self.options.footer.iter().map(|(k, v)| (k, v)))
            .collect();
        metadata.sort();
        for (key, value) in metadata {
            writer.append_key_value_metadata(KeyValue::new(key.clone(), value.clone()));
        }
        Ok(PartitionWriter {
            writer,
            location,
            file_name,
            rows: 0,
            memory: 0,
        })
    }

    /// Closes every file; nothing is visible to readers until the run's commit ([`commit`]).
    /// Each file's last row group is encoded as it closes: that is spread over the cores
    /// (the rest of the run has stopped producing by then). After a failed write the files
    /// are removed instead, and the first error is returned.
    pub fn finish(self) -> Result<StagedRun, SinkError> {
        let registry = self
            .registry
            .into_inner()
            .expect("no thread panics holding the registry");
        if let Some(failure) = registry.failure {
            drop(registry.open);
            self.staging.discard();
            return Err(failure);
        }
        let mut open: Vec<_> = registry
            .open
            .into_iter()
            .map(|(key, open)| {
                let file = Arc::into_inner(open.file).expect("no thread writes once finishing");
                let file = file.into_inner().expect("no thread panics holding a file");
                (key, file.expect("listed while its file is open"))
            })
            .collect();
        // Smallest first, so that each thread takes the largest left when it is free; more
        // threads than cores, so that those waiting for their file's fsync leave the cores
        // to others encoding (the fsyncs were half of this phase: BENCHMARKS.md).
        open.sort_by_key(|(_, partition)| partition.memory);
        let threads = std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .saturating_mul(CLOSING_THREADS_PER_CORE)
            .min(open.len())
            .max(1);
        let pending = Mutex::new(open);
        let next = || pending.lock().expect("no thread panics holding it").pop();
        let closed: Vec<Result<Vec<WrittenFile>, SinkError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        std::iter::from_fn(next)
                            .map(|((table, dt), partition)| close_partition(&table, dt, partition))
                            .collect()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().expect("closing a file does not panic"))
                .collect()
        });
        let mut files = registry.written;
        for written in closed {
            files.extend(written?);
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(StagedRun {
            output: self.output.clone(),
            run_id: self.run_id.clone(),
            files,
        })
    }
}

/// The Parquet error of the file being written at `location`.
fn parquet_error(location: &str) -> impl FnOnce(parquet::errors::ParquetError) -> SinkError + '_ {
    move |source| SinkError::Parquet {
        location: location.to_string(),
        source,
    }
}

/// Writes the footer of `partition`'s file and makes it durable.
fn close_partition(
    table: &str,
    dt: NaiveDate,
    partition: PartitionWriter,
) -> Result<WrittenFile, SinkError> {
    let location = partition.location;
    let sink = partition
        .writer
        .into_inner()
        .map_err(parquet_error(&location))?;
    let bytes = sink.finish()?;
    Ok(WrittenFile {
        table: table.to_string(),
        dt,
        path: format!("{table}/{}/{}", partition_dir_name(dt), partition.file_name),
        rows: partition.rows,
        bytes,
    })
}

/// The closed, durable files of a run, waiting to be published.
pub struct StagedRun {
    output: Location,
    run_id: String,
    files: Vec<WrittenFile>,
}

/// What publishing changed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PublishReport {
    pub files: Vec<WrittenFile>,
    /// `table/dt=YYYY-MM-DD` partitions that now hold exactly this run's rows.
    pub partitions_replaced: Vec<String>,
}

impl StagedRun {
    /// Files that another writer staged under `<output>/_staging/<run_id>/<name>/dt=…/` (the
    /// raw landing zone's `<stream>` folders), to be published by the same commit as the
    /// tables. `files` name their partition in `table` (the folder under the root).
    pub fn new(output: Location, run_id: &str, files: Vec<WrittenFile>) -> Self {
        StagedRun {
            output,
            run_id: run_id.to_string(),
            files,
        }
    }

    pub fn files(&self) -> &[WrittenFile] {
        &self.files
    }

    pub fn output(&self) -> &Location {
        &self.output
    }

    /// What publishing the run changes: every `(table, dt)` in `partitions` is replaced,
    /// also when this run has no rows for it (an empty day removes the old partition's
    /// files), and so is every partition the run staged files for. Other partitions and
    /// tables are not touched.
    pub fn changes(
        &self,
        partitions: &BTreeSet<(String, NaiveDate)>,
    ) -> (commit::ZoneChange, PublishReport) {
        let mut by_partition: BTreeMap<(String, NaiveDate), Vec<commit::StagedFile>> = partitions
            .iter()
            .map(|partition| (partition.clone(), Vec::new()))
            .collect();
        for file in &self.files {
            let name = file.path.rsplit('/').next().unwrap_or(&file.path);
            by_partition
                .entry((file.table.clone(), file.dt))
                .or_default()
                .push(commit::StagedFile {
                    name: name.to_string(),
                    bytes: file.bytes,
                    rows: file.rows,
                });
        }
        let change = commit::ZoneChange {
            root: self.output.root_name(),
            is_lake: false,
            format: commit::TableFormat::Parquet,
            delta: Vec::new(),
            partitions: by_partition
                .iter()
                .map(|((table, dt), files)| commit::PartitionChange {
                    folder: format!("{table}/{}", partition_dir_name(*dt)),
                    files: files.clone(),
                })
                .collect(),
        };
        let report = PublishReport {
            files: self.files.clone(),
            partitions_replaced: by_partition
                .into_keys()
                .map(|(table, dt)| format!("{table}/{}", partition_dir_name(dt)))
                .collect(),
        };
        (change, report)
    }

    /// Removes the staged files without publishing them.
    pub async fn discard(self) {
        let _ = self.output.remove_all(&staging_prefix(&self.run_id)).await;
    }
}

/// Removes what runs that were killed before their commit left in `output`'s staging
/// (the runs `runs` names, or every run when `runs` is None); with the lock held, no other
/// run of this lake is using any of it. Unfinished commits must be recovered first
/// ([`commit::recover`]): their staging holds files they still need.
pub async fn remove_stale_staging(
    output: &Location,
    runs: Option<&[String]>,
) -> Result<Vec<String>, StoreError> {
    let stale = match runs {
        Some(runs) => runs.to_vec(),
        None => output.list_folders(STAGING_DIR).await?,
    };
    for run_id in &stale {
        tracing::info!(run_id, location = %output.display_path(&staging_prefix(run_id)), "Removing the staging area of an earlier run that did not finish.");
        output.remove_all(&staging_prefix(run_id)).await?;
    }
    Ok(stale)
}

/// The files that make up the live partition `<table>/dt=…` now, as paths relative to the
/// root, in name order ([`commit::live_table_files`]: a Delta table's current snapshot).
pub async fn live_partition_files(
    output: &Location,
    table: &str,
    dt: NaiveDate,
) -> Result<Vec<String>, commit::CommitError> {
    commit::live_table_files(output, table, &partition_dir_name(dt)).await
}

/// `dt=YYYY-MM-DD`, the Hive partition folder every engine recognises.
pub fn partition_dir_name(dt: NaiveDate) -> String {
    format!("dt={}", dt.format("%Y-%m-%d"))
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::sync::Arc;

    use arrow_array::{Int64Array, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;

    fn batch(from: i64, rows: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("text", DataType::Utf8, false),
        ]));
        let numbers: Vec<i64> = (from..from + rows).collect();
        let texts: Vec<String> = numbers
            .iter()
            .map(|n| format!("value number {n}"))
            .collect();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(numbers)),
                Arc::new(StringArray::from(texts)),
            ],
        )
        .unwrap()
    }

    /// A sink into `root` whose open files may hold 1 MiB together, and three days to write.
    fn small_budget_sink(root: &std::path::Path) -> (ParquetSink, Vec<NaiveDate>) {
        let options = SinkOptions {
            buffered_bytes: 1 << 20,
            ..SinkOptions::default()
        };
        let output = Location::Local(root.to_path_buf());
        let sink = ParquetSink::create(&output, "run", options).unwrap();
        let days = (1..=3)
            .map(|d| NaiveDate::from_ymd_opt(2026, 11, d).unwrap())
            .collect();
        (sink, days)
    }

    #[test]
    fn open_writers_stay_within_their_memory_budget_and_lose_no_row() {
        let root = tempfile::tempdir().unwrap();
        let (sink, days) = small_budget_sink(root.path());
        for round in 0..40 {
            for dt in &days {
                sink.write("t", *dt, &batch(round * 5_000, 5_000)).unwrap();
                let registry = sink.registry();
                assert!(
                    registry.buffered <= 1 << 20,
                    "{} bytes buffered",
                    registry.buffered
                );
                let measured: usize = (registry.open.values())
                    .map(|open| {
                        open.file
                            .lock()
                            .unwrap()
                            .as_ref()
                            .unwrap()
                            .writer
                            .memory_size()
                    })
                    .sum();
                assert_eq!(measured, registry.buffered);
            }
        }
        let staged = sink.finish().unwrap();
        assert_eq!(staged.files().len(), 3);
        for file in staged.files() {
            let path = root.path().join(STAGING_DIR).join("run").join(&file.path);
            let reader =
                ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
            let row_groups = reader.metadata().num_row_groups();
            let rows: usize = reader.build().unwrap().map(|b| b.unwrap().num_rows()).sum();
            assert_eq!(rows, 200_000, "{}", file.path);
            assert_eq!(file.rows, 200_000);
            // Ended early to stay within the budget, not only at 128 Ki rows.
            assert!(row_groups > 2, "{} has {row_groups} row groups", file.path);
        }
    }

    /// Rows of every staged file of `staged`, by path.
    fn staged_rows(root: &std::path::Path, staged: &StagedRun) -> BTreeMap<String, Vec<i64>> {
        let mut by_path = BTreeMap::new();
        for file in staged.files() {
            let path = root.join(STAGING_DIR).join("run").join(&file.path);
            let reader =
                ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
            let mut numbers = Vec::new();
            for batch in reader.build().unwrap() {
                let batch = batch.unwrap();
                let column = batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap();
                numbers.extend(column.values().iter().copied());
            }
            assert_eq!(numbers.len() as u64, file.rows, "{}", file.path);
            by_path.insert(file.path.clone(), numbers);
        }
        by_path
    }

    #[test]
    fn threads_writing_at_once_lose_no_row_and_share_one_file_per_partition() {
        let root = tempfile::tempdir().unwrap();
        let (sink, days) = small_budget_sink(root.path());
        let (threads, rounds, rows) = (4_i64, 30_i64, 1_000_i64);
        std::thread::scope(|scope| {
            for thread in 0..threads {
                let (sink, days) = (&sink, &days);
                scope.spawn(move || {
                    for round in 0..rounds {
                        // Every thread writes every day: they meet on the same partitions.
                        for dt in days {
                            let from = (thread * rounds + round) * rows;
                            sink.write("t", *dt, &batch(from, rows)).unwrap();
                        }
                    }
                });
            }
        });
        let staged = sink.finish().unwrap();
        let files = staged_rows(root.path(), &staged);
        assert_eq!(files.len(), days.len(), "{:?}", files.keys());
        for (path, mut numbers) in files {
            numbers.sort_unstable();
            let expected: Vec<i64> = (0..threads * rounds * rows).collect();
            assert!(numbers == expected, "{path} lost or repeated rows");
        }
    }

    #[test]
    fn a_failed_write_stops_every_writer_and_removes_the_staged_files() {
        let root = tempfile::tempdir().unwrap();
        let output = Location::Local(root.path().to_path_buf());
        let sink = ParquetSink::create(&output, "run", SinkOptions::default()).unwrap();
        let dt = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        sink.write("t", dt, &batch(0, 10)).unwrap();
        // A file where the table `u`'s folder would go: its partition cannot be created.
        std::fs::write(root.path().join(STAGING_DIR).join("run").join("u"), b"").unwrap();
        assert!(matches!(
            sink.write("u", dt, &batch(0, 10)),
            Err(SinkError::Stopped)
        ));
        assert!(sink.stopped());
        let later = sink.write("t", dt, &batch(10, 10));
        assert!(matches!(later, Err(SinkError::Stopped)));
        match sink.finish() {
            Err(SinkError::Stopped) => panic!("the first failure, not a later refusal"),
            Err(first) => assert!(first.to_string().contains("u/dt=2026-11-01"), "{first}"),
            Ok(_) => panic!("a failed sink stages nothing"),
        }
        assert!(!root.path().join(STAGING_DIR).join("run").exists());
    }

    #[test]
    fn a_full_file_is_closed_and_the_partition_goes_on_in_the_next() {
        let root = tempfile::tempdir().unwrap();
        let options = SinkOptions {
            target_file_bytes: 64 * 1024,
            row_group_rows: 2_000,
            ..SinkOptions::default()
        };
        let output = Location::Local(root.path().to_path_buf());
        let sink = ParquetSink::create(&output, "run", options).unwrap();
        let dt = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        std::thread::scope(|scope| {
            for thread in 0..2 {
                let sink = &sink;
                scope.spawn(move || {
                    for round in 0..50 {
                        sink.write("t", dt, &batch((thread * 50 + round) * 1_000, 1_000))
                            .unwrap();
                    }
                });
            }
        });
        let staged = sink.finish().unwrap();
        let files = staged_rows(root.path(), &staged);
        assert!(files.len() > 2, "{} files", files.len());
        let mut numbers: Vec<i64> = files.into_values().flatten().collect();
        numbers.sort_unstable();
        assert!(
            numbers == (0..100_000).collect::<Vec<_>>(),
            "rows lost or repeated"
        );
    }

    /// parquet's zstd codec is built from `vendor/zstd` (its PATCHED.md: a decompression
    /// context per column chunk otherwise). Cargo only warns when a patch stops applying,
    /// after a parquet update that asks for another `zstd`, say; the lock file says which
    /// copy is built: the patched one has no registry source.
    #[test]
    fn zstd_is_the_patched_copy() {
        let lock = include_str!("../../Cargo.lock");
        let zstd: Vec<&str> = lock
            .split("[[package]]")
            .filter(|package| package.contains("\nname = \"zstd\"\n"))
            .collect();
        assert!(!zstd.is_empty(), "zstd is in Cargo.lock");
        for package in zstd {
            assert!(
                !package.contains("\nsource = "),
                "zstd from a registry, not vendor/zstd: {package}"
            );
        }
    }
}
