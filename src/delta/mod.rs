//! Delta Lake tables (`[output] format = "delta"`), through delta-rs (`deltalake-core`):
//! each table is a Delta table at `<lake>/<table>/`, partitioned by `dt`, whose data files
//! are the sink's Parquet files. This module opens a table on a [`Location`], says which
//! files its current snapshot holds ([`snapshot_files`]), plans and makes a run's commit of
//! a table ([`plan`], [`commit_table`], [`undo_table`]) and vacuums ([`vacuum`]).
//!
//! A run's commit of a table is one Delta commit: `remove` for every file of the partitions
//! the run replaces, `add` (with statistics from the file's footer, [`stats`]) for each of
//! its files, a `txn` action (app id [`APP_ID`], a version one above the table's last) and
//! the run id in `commitInfo`. It is based on the table version read when the run planned
//! it: a commit by anyone else since then fails it ([`DeltaError::Conflict`]) rather than
//! being merged, since the run's partitions were built from what that version held. A
//! commit after that version naming the run says the commit was made ([`committed`]), so
//! that finishing a crashed run never commits twice; the `txn` action tells other
//! idempotent writers (Spark's `txnAppId`/`txnVersion`) the same.
//!
//! May touch: `<lake>/<table>/` (its `_delta_log/` and data files) through delta-rs on the
//! lake's object store. Knows nothing of Graph or of runs beyond their ids.

pub mod stats;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use deltalake_core::kernel::engine::arrow_conversion::TryFromArrow;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties, TableReference};
use deltalake_core::kernel::{Action, Add, DataType, Remove, StructField, Transaction};
use deltalake_core::logstore::{LogStoreRef, StorageConfig, default_logstore};
use deltalake_core::operations::create::CreateBuilder;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::{DeltaTable, DeltaTableError};
use serde::{Deserialize, Serialize};

use crate::schema::{self, TableSchema};
use crate::store::{Location, StoreError};

/// The application id of the `txn` actions this tool writes.
pub const APP_ID: &str = "callrecords-etl";
/// The partition column of every table.
pub const PARTITION_COLUMN: &str = "dt";
/// Where a Delta table keeps its log, under the table's folder.
pub const LOG_DIR: &str = "_delta_log";

#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    #[error(
        "another writer committed to the Delta table {table} while this run was writing it \
         (it read version {read_version:?}); nothing of this run was committed to it. Run \
         again: the next run starts from the new version"
    )]
    Conflict {
        table: String,
        read_version: Option<u64>,
    },
    #[error("the Delta table {table}: {source}")]
    Delta {
        table: String,
        source: Box<DeltaTableError>,
    },
    #[error(
        "{location} is a Delta table, and this run writes Parquet: pass --format delta (or set \
         [output] format = \"delta\"), or write the Parquet lake to another --out"
    )]
    IsDelta { location: String },
    #[error(
        "{location} holds Parquet partitions without a Delta log, and this run writes Delta: write \
         the Delta lake to another --out (reflatten --format delta rebuilds it from a raw zone), or \
         pass --format parquet"
    )]
    IsParquet { location: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Injected(#[from] crate::commit::InjectedFailure),
}

/// What a run's commit of one table is based on, recorded in the run's journal before
/// anything is committed (so a finished crashed run makes the same commit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCommit {
    pub table: String,
    /// The table version the run read (None: the run creates the table).
    pub read_version: Option<u64>,
    /// The version of the run's `txn` action: one above the table's last for [`APP_ID`].
    pub txn_version: i64,
}

impl TableCommit {
    /// The table version the commit writes (a commit is based on `read_version` and fails
    /// if another one came first).
    pub fn version(&self) -> u64 {
        self.read_version.map_or(0, |v| v + 1)
    }
}

/// A partition the run replaces in a table: its day and the run's files for it (name, bytes).
pub struct PartitionFiles<'a> {
    pub dt: &'a str,
    pub files: Vec<(&'a str, u64)>,
}

fn delta_error(table: &str) -> impl FnOnce(DeltaTableError) -> DeltaError + '_ {
    move |source| DeltaError::Delta {
        table: table.to_string(),
        source: Box::new(source),
    }
}

/// The log store of `<lake>/<table>/`: delta-rs' default one, which writes each log entry
/// with a conditional PUT (put-if-absent), on the lake's own object store.
fn log_store(lake: &Location, table: &str) -> Result<LogStoreRef, DeltaError> {
    let view = lake.view(table)?;
    Ok(default_logstore(
        view.prefixed,
        view.root,
        &view.url,
        &StorageConfig::default(),
    ))
}

/// The table at its latest version, or None when `<lake>/<table>/` is no Delta table.
pub async fn open(lake: &Location, table: &str) -> Result<Option<DeltaTable>, DeltaError> {
    if !is_delta(lake, table).await? {
        return Ok(None);
    }
    let mut delta = DeltaTable::new(log_store(lake, table)?);
    delta.load().await.map_err(delta_error(table))?;
    Ok(Some(delta))
}

/// Whether `<lake>/<table>/` holds a Delta log.
pub async fn is_delta(lake: &Location, table: &str) -> Result<bool, StoreError> {
    Ok(!lake
        .list_names(&format!("{table}/{LOG_DIR}"))
        .await?
        .is_empty())
}

/// The data files of the table's current snapshot in the partition `dt` (every partition:
/// None), as paths relative to the lake's root, in name order.
pub async fn snapshot_files(
    lake: &Location,
    table: &str,
    dt: Option<&str>,
) -> Result<Vec<String>, DeltaError> {
    let Some(delta) = open(lake, table).await? else {
        return Ok(Vec::new());
    };
    let mut files: Vec<String> = live_adds(&delta, table)?
        .into_iter()
        .filter(|add| dt.is_none_or(|dt| partition_of(&add.partition_values) == Some(dt)))
        .map(|add| format!("{table}/{}", add.path))
        .collect();
    files.sort();
    Ok(files)
}

fn live_adds(delta: &DeltaTable, table: &str) -> Result<Vec<Add>, DeltaError> {
    let state = delta.snapshot().map_err(delta_error(table))?;
    let add = |file: deltalake_core::kernel::LogicalFileView| Add {
        path: file.path().to_string(),
        partition_values: file.partition_values_map(),
        size: file.size(),
        modification_time: file.modification_time(),
        data_change: true,
        stats: file.stats(),
        ..Default::default()
    };
    Ok(state.log_data().iter().map(add).collect())
}

fn partition_of(values: &HashMap<String, Option<String>>) -> Option<&str> {
    values.get(PARTITION_COLUMN)?.as_deref()
}

/// Refuses to write `table` as Delta (`delta`) over Parquet partitions, or as Parquet over
/// a Delta table: either would leave readers of the other format a broken table.
pub async fn check_format(lake: &Location, table: &str, delta: bool) -> Result<(), DeltaError> {
    let location = lake.display_path(table);
    match (delta, is_delta(lake, table).await?) {
        (false, true) => Err(DeltaError::IsDelta { location }),
        (true, false) => {
            let folders = lake.list_folders(table).await?;
            match folders.iter().any(|f| f.starts_with("dt=")) {
                true => Err(DeltaError::IsParquet { location }),
                false => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// What each table's commit will be based on: its version now and its next `txn` version.
pub async fn plan(
    lake: &Location,
    tables: &BTreeSet<String>,
) -> Result<Vec<TableCommit>, DeltaError> {
    let mut plans = Vec::new();
    for table in tables {
        let (read_version, txn) = match open(lake, table).await? {
            None => (None, None),
            Some(delta) => (delta.version(), txn_version(&delta, table).await?),
        };
        plans.push(TableCommit {
            table: table.clone(),
            read_version,
            txn_version: txn.map_or(1, |v| v + 1),
        });
    }
    Ok(plans)
}

async fn txn_version(delta: &DeltaTable, table: &str) -> Result<Option<i64>, DeltaError> {
    let state = delta.snapshot().map_err(delta_error(table))?;
    state
        .transaction_version(delta.log_store().as_ref(), APP_ID)
        .await
        .map_err(delta_error(table))
}

/// Whether the run's commit of the table was made: a version after the one it read whose
/// `commitInfo` names the run. (The `txn` version alone cannot say: another writer that
/// read the same version would write the same one.)
pub async fn committed(
    lake: &Location,
    run_id: &str,
    plan: &TableCommit,
) -> Result<bool, DeltaError> {
    let table = plan.table.as_str();
    if !is_delta(lake, table).await? {
        return Ok(false);
    }
    let log_store = log_store(lake, table)?;
    let first = plan.read_version.map_or(0, |v| v + 1);
    let latest = log_store
        .get_latest_version(first.saturating_sub(1))
        .await
        .map_err(delta_error(table))?;
    for version in first..=latest {
        let entry = log_store
            .read_commit_entry(version)
            .await
            .map_err(delta_error(table))?;
        if entry.is_some_and(|bytes| names_run(&bytes, run_id)) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether a log entry's `commitInfo` has `run_id`.
fn names_run(entry: &[u8], run_id: &str) -> bool {
    entry
        .split(|b| *b == b'\n')
        .filter_map(|line| serde_json::from_slice::<serde_json::Value>(line).ok())
        .any(|action| action["commitInfo"]["run_id"] == run_id)
}

/// Commits the run's files of `partitions` (already in their partition folders) as the
/// table's new content for those days, based on `plan.read_version`. Repeatable: a commit
/// already made is not made again. Returns the version written.
pub async fn commit_table(
    lake: &Location,
    run_id: &str,
    plan: &TableCommit,
    partitions: &[PartitionFiles<'_>],
) -> Result<u64, DeltaError> {
    let table = plan.table.as_str();
    if committed(lake, run_id, plan).await? {
        return Ok(plan.version());
    }
    let declared = schema::table(table).ok_or_else(|| DeltaError::Delta {
        table: table.to_string(),
        source: Box::new(DeltaTableError::Generic("no such declared table".into())),
    })?;
    let mut actions = Vec::new();
    for partition in partitions {
        for (name, bytes) in &partition.files {
            let add = add(lake, declared, partition.dt, name, *bytes).await?;
            actions.push(Action::Add(add));
        }
    }
    crate::step!("delta::commit");
    let conflict = |_| DeltaError::Conflict {
        table: table.to_string(),
        read_version: plan.read_version,
    };
    let properties = commit_properties(run_id, plan.txn_version);
    let log_store = log_store(lake, table)?;
    let Some(read_version) = plan.read_version else {
        return create(log_store, declared, actions, properties)
            .await
            .map_err(|e| classify(e, table, conflict));
    };
    let mut delta = DeltaTable::new(log_store.clone());
    delta
        .load_version(read_version)
        .await
        .map_err(delta_error(table))?;
    let days: BTreeSet<&str> = partitions.iter().map(|p| p.dt).collect();
    let now = chrono::Utc::now().timestamp_millis();
    for old in live_adds(&delta, table)? {
        if partition_of(&old.partition_values).is_some_and(|dt| days.contains(dt)) {
            actions.push(Action::Remove(removed(old, now)));
        }
    }
    let state = delta.snapshot().map_err(delta_error(table))?;
    let operation = DeltaOperation::Write {
        mode: SaveMode::Overwrite,
        partition_by: Some(vec![PARTITION_COLUMN.to_string()]),
        predicate: Some(days_predicate(&days)),
    };
    let done = CommitBuilder::from(properties)
        .with_actions(actions)
        .build(Some(state as &dyn TableReference), log_store, operation)
        .await
        .map_err(|e| classify(e, table, conflict))?;
    crate::step!("delta::committed");
    Ok(done.version())
}

/// `dt IN ('2024-05-01', …)`: the partitions a commit replaces, for `commitInfo`.
fn days_predicate(days: &BTreeSet<&str>) -> String {
    let list: Vec<String> = days.iter().map(|d| format!("'{d}'")).collect();
    format!("{PARTITION_COLUMN} IN ({})", list.join(", "))
}

/// A conflict (another commit came first) apart from other failures.
fn classify(
    error: DeltaTableError,
    table: &str,
    conflict: impl FnOnce(()) -> DeltaError,
) -> DeltaError {
    use deltalake_core::kernel::transaction::TransactionError as T;
    match &error {
        DeltaTableError::VersionAlreadyExists(_)
        | DeltaTableError::Transaction {
            source: T::MaxCommitAttempts(_) | T::CommitConflict(_) | T::VersionAlreadyExists(_),
        } => conflict(()),
        DeltaTableError::GenericError { source }
            if source.to_string().contains("already exists") =>
        {
            conflict(())
        }
        _ => delta_error(table)(error),
    }
}

/// The run id in `commitInfo`, the `txn` action, no retry on a conflict, and checkpoints
/// at delta-rs' default interval.
fn commit_properties(run_id: &str, txn_version: i64) -> CommitProperties {
    CommitProperties::default()
        .with_max_retries(0)
        .with_create_checkpoint(true)
        .with_application_transaction(Transaction::new(APP_ID, txn_version))
        .with_metadata([("run_id".to_string(), serde_json::json!(run_id))])
}

/// Version 0 of a table: its schema (descriptions as column comments), `dt` as partition
/// column, and the run's files.
async fn create(
    log_store: LogStoreRef,
    declared: &TableSchema,
    actions: Vec<Action>,
    properties: CommitProperties,
) -> Result<u64, DeltaTableError> {
    let created = CreateBuilder::new()
        .with_log_store(log_store)
        .with_table_name(declared.table.clone())
        .with_comment(declared.description.clone())
        .with_columns(columns(declared)?)
        .with_partition_columns([PARTITION_COLUMN])
        .with_save_mode(SaveMode::ErrorIfExists)
        .with_actions(actions)
        .with_commit_properties(properties)
        .await?;
    Ok(created.version().unwrap_or(0))
}

/// The Delta schema of a declared table: its columns with their descriptions as `comment`,
/// then `dt`.
fn columns(declared: &TableSchema) -> Result<Vec<StructField>, DeltaTableError> {
    let arrow = declared.arrow_schema();
    let mut fields = Vec::new();
    for (field, column) in arrow.fields().iter().zip(&declared.columns) {
        let field = StructField::try_from_arrow(field.as_ref())
            .map_err(|e| DeltaTableError::Generic(e.to_string()))?;
        let metadata = [("comment".to_string(), column.description.clone())];
        fields.push(field.with_metadata(metadata));
    }
    fields.push(
        StructField::new(PARTITION_COLUMN, DataType::DATE, true)
            .with_metadata([("comment", "The UTC day of the row (partition).")]),
    );
    Ok(fields)
}

/// The `add` action of the run's file `name` in partition `dt`.
async fn add(
    lake: &Location,
    declared: &TableSchema,
    dt: &str,
    name: &str,
    bytes: u64,
) -> Result<Add, DeltaError> {
    let relative = format!("dt={dt}/{name}");
    let path = format!("{}/{relative}", declared.table);
    let metadata = lake.parquet_metadata(&path).await?;
    Ok(Add {
        path: relative,
        partition_values: HashMap::from([(PARTITION_COLUMN.to_string(), Some(dt.to_string()))]),
        size: bytes as i64,
        modification_time: chrono::Utc::now().timestamp_millis(),
        data_change: true,
        stats: Some(stats::file_stats(declared, &metadata)),
        ..Default::default()
    })
}

fn removed(old: Add, deletion_timestamp: i64) -> Remove {
    Remove {
        path: old.path,
        data_change: true,
        deletion_timestamp: Some(deletion_timestamp),
        extended_file_metadata: Some(true),
        partition_values: Some(old.partition_values),
        size: Some(old.size),
        tags: old.tags,
        ..Default::default()
    }
}

/// Undoes the run's commit of a table if it was made: a commit that removes the run's files
/// and adds back the files it removed (as `RESTORE` does). Repeatable: when none of the
/// run's files is live any more there is nothing to undo.
pub async fn undo_table(
    lake: &Location,
    run_id: &str,
    plan: &TableCommit,
    partitions: &[PartitionFiles<'_>],
) -> Result<(), DeltaError> {
    let table = plan.table.as_str();
    let Some(delta) = open(lake, table).await? else {
        return Ok(());
    };
    let ours: BTreeSet<String> = partitions
        .iter()
        .flat_map(|p| p.files.iter().map(move |(f, _)| format!("dt={}/{f}", p.dt)))
        .collect();
    let now = chrono::Utc::now().timestamp_millis();
    let mut actions: Vec<Action> = live_adds(&delta, table)?
        .into_iter()
        .filter(|add| ours.contains(&add.path))
        .map(|add| Action::Remove(removed(add, now)))
        .collect();
    if actions.is_empty() {
        return Ok(());
    }
    let days: BTreeSet<&str> = partitions.iter().map(|p| p.dt).collect();
    if let Some(read_version) = plan.read_version {
        let mut before = DeltaTable::new(delta.log_store());
        before
            .load_version(read_version)
            .await
            .map_err(delta_error(table))?;
        actions.extend(
            live_adds(&before, table)?
                .into_iter()
                .filter(|a| partition_of(&a.partition_values).is_some_and(|d| days.contains(d)))
                .map(|a| {
                    Action::Add(Add {
                        modification_time: now,
                        data_change: true,
                        ..a
                    })
                }),
        );
    }
    let state = delta.snapshot().map_err(delta_error(table))?;
    let operation = DeltaOperation::Write {
        mode: SaveMode::Overwrite,
        partition_by: Some(vec![PARTITION_COLUMN.to_string()]),
        predicate: Some(days_predicate(&days)),
    };
    CommitBuilder::from(
        CommitProperties::default()
            .with_metadata([("undoes_run_id".to_string(), serde_json::json!(run_id))]),
    )
    .with_actions(actions)
    .build(
        Some(state as &dyn TableReference),
        delta.log_store(),
        operation,
    )
    .await
    .map_err(delta_error(table))?;
    Ok(())
}

/// What [`vacuum`] did to one table.
#[derive(Debug, Clone, Serialize)]
pub struct Vacuumed {
    pub table: String,
    pub files_deleted: Vec<String>,
    pub dry_run: bool,
}

/// Deletes the files of `table` that its current version no longer references and that
/// were removed longer than `retention` ago (delta-rs' vacuum). A retention below the
/// table's own (`delta.deletedFileRetentionDuration`, 168 hours by default) is refused
/// unless `allow_short`.
pub async fn vacuum(
    lake: &Location,
    table: &str,
    retention: chrono::Duration,
    allow_short: bool,
    dry_run: bool,
) -> Result<Option<Vacuumed>, DeltaError> {
    let Some(delta) = open(lake, table).await? else {
        return Ok(None);
    };
    let (_, metrics) = delta
        .vacuum()
        .with_retention_period(retention)
        .with_enforce_retention_duration(!allow_short)
        .with_dry_run(dry_run)
        .await
        .map_err(delta_error(table))?;
    Ok(Some(Vacuumed {
        table: table.to_string(),
        files_deleted: metrics.files_deleted,
        dry_run,
    }))
}

/// The versions the tables of `plans` get, by table (for summaries and manifests).
pub fn versions(plans: &[TableCommit]) -> BTreeMap<String, u64> {
    plans
        .iter()
        .map(|p| (p.table.clone(), p.version()))
        .collect()
}
