//! Switching the partitions of a Delta lake (`[output] format = "delta"`): the third way
//! of the one run-wide commit, beside folders exchanged on disk and markers on an object
//! store. The journal names the partitions and, per table, what its Delta commit is based
//! on ([`crate::delta::TableCommit`]). For each table:
//!
//! 1. The run's files move from its staging into their partition folders
//!    (`<table>/dt=…/part-<run>-<n>.parquet`, names no other run uses). Readers go by the
//!    Delta log, so files not in it are invisible.
//! 2. One Delta commit removes the files of the replaced partitions and adds the run's
//!    ([`crate::delta::commit_table`]): the table's switch, atomic for readers. Replaced
//!    files stay where they are (time travel) until `maintain` vacuums them.
//!
//! Repeatable: a moved file is found moved, a made commit by its `txn` version. A roll-back
//! undoes the commits made ([`crate::delta::undo_table`]) and removes the moved files of
//! the tables never committed.
//!
//! May touch: the lake's tables and the run's staging.

use super::{CommitError, PartitionChange, ZoneChange, staging_of};
use crate::delta::{self, PartitionFiles, TableCommit};
use crate::store::{Location, StoreError};

/// The partitions of `table` in `change`, with their days.
fn partitions_of<'a>(change: &'a ZoneChange, table: &str) -> Vec<(&'a PartitionChange, &'a str)> {
    change
        .partitions
        .iter()
        .filter_map(|p| {
            let (t, folder) = p.folder.split_once('/')?;
            let dt = folder.strip_prefix("dt=")?;
            (t == table).then_some((p, dt))
        })
        .collect()
}

fn files<'a>(partitions: &[(&'a PartitionChange, &'a str)]) -> Vec<PartitionFiles<'a>> {
    partitions
        .iter()
        .map(|(p, dt)| PartitionFiles {
            dt,
            files: p.files.iter().map(|f| (f.name.as_str(), f.bytes)).collect(),
        })
        .collect()
}

/// Moves the run's files into place and commits each table of the zone. Repeatable.
pub async fn switch(lake: &Location, run_id: &str, change: &ZoneChange) -> Result<(), CommitError> {
    for plan in &change.delta {
        let partitions = partitions_of(change, &plan.table);
        if !delta::committed(lake, run_id, plan).await? {
            for (partition, _) in &partitions {
                for file in &partition.files {
                    crate::step!("delta::place");
                    let folder = &partition.folder;
                    let name = &file.name;
                    lake.move_file(
                        &format!("{}/{folder}/{name}", staging_of(run_id)),
                        &format!("{folder}/{name}"),
                    )
                    .await?;
                }
            }
        }
        delta::commit_table(lake, run_id, plan, &files(&partitions)).await?;
    }
    Ok(())
}

/// Undoes what [`switch`] did, last table first. Repeatable.
pub async fn roll_back(
    lake: &Location,
    run_id: &str,
    change: &ZoneChange,
) -> Result<(), CommitError> {
    for plan in change.delta.iter().rev() {
        let partitions = partitions_of(change, &plan.table);
        if delta::committed(lake, run_id, plan).await? {
            delta::undo_table(lake, run_id, plan, &files(&partitions)).await?;
        } else {
            remove_placed(lake, &partitions).await?;
        }
    }
    Ok(())
}

async fn remove_placed(
    lake: &Location,
    partitions: &[(&PartitionChange, &str)],
) -> Result<(), StoreError> {
    for (partition, _) in partitions {
        for file in &partition.files {
            lake.remove(&format!("{}/{}", partition.folder, file.name))
                .await?;
        }
    }
    Ok(())
}

/// Whether each of the run's files for `partition` is staged or in place.
pub async fn present(
    lake: &Location,
    run_id: &str,
    partition: &PartitionChange,
) -> Result<bool, StoreError> {
    for file in &partition.files {
        let placed = format!("{}/{}", partition.folder, file.name);
        let staged = format!("{}/{placed}", staging_of(run_id));
        if !lake.exists(&staged).await? && !lake.exists(&placed).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn tables(change: &ZoneChange) -> std::collections::BTreeSet<String> {
    change
        .partitions
        .iter()
        .filter_map(|p| p.folder.split_once('/').map(|(t, _)| t.to_string()))
        .collect()
}

/// What each table's commit of the zone will be based on (see [`delta::plan`]).
pub async fn plan(lake: &Location, change: &ZoneChange) -> Result<Vec<TableCommit>, CommitError> {
    Ok(delta::plan(lake, &tables(change)).await?)
}

/// Refuses a run whose format is not its tables' (see [`delta::check_format`]).
pub async fn check_format(
    lake: &Location,
    change: &ZoneChange,
    delta: bool,
) -> Result<(), CommitError> {
    for table in tables(change) {
        delta::check_format(lake, &table, delta).await?;
    }
    Ok(())
}
