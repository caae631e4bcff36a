//! Switching a partition on local disk, and undoing it.
//!
//! A partition is a folder. The staged folder is swapped with the live one in one
//! `renameat2(RENAME_EXCHANGE)`, so readers see the old partition or the new one, never a
//! mix; the old files, now in the staged folder's place, move on to
//! `_staging/<run_id>/_replaced/`. Whether a step is done is read from the folders
//! themselves (does the live folder hold the run's files?), so each step can be repeated.
//! The folders a zone's switches change are made durable together, once each
//! ([`switch_all`]).
//!
//! May touch: the partition folder under the zone's root and the run's staging.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::{CommitError, PartitionChange, REPLACED_DIR, staging_of};
use crate::store::StoreError;
use crate::store::local::{create_private_dirs, exchange, io_error, sync_dir};

/// The three places a partition's files can be.
struct Places {
    live: PathBuf,
    staged: PathBuf,
    replaced: PathBuf,
}

impl Places {
    fn of(root: &Path, run_id: &str, partition: &PartitionChange) -> Self {
        let staging = root.join(staging_of(run_id));
        Places {
            live: root.join(&partition.folder),
            staged: staging.join(&partition.folder),
            replaced: staging.join(REPLACED_DIR).join(&partition.folder),
        }
    }
}

/// Whether `dir` holds one of the run's files for `partition`.
fn holds_run_files(dir: &Path, partition: &PartitionChange) -> bool {
    partition
        .files
        .first()
        .is_some_and(|file| dir.join(&file.name).is_file())
}

/// Switches every partition of a zone (one at a time, each step repeatable), waiting for
/// the disk twice in all rather than twice per partition: the staged folders are made
/// durable first (the first fsync commits the file system's journal with all of them; the
/// others find nothing left to write), then every partition is switched, then each table
/// folder a switch changed is made durable once. A reflatten of a week replaces 63
/// partitions: their 126 fsyncs, one after another, took 16 of the commit's 43 ms on a
/// local SSD (BENCHMARKS.md); on a network disk an fsync takes milliseconds.
///
/// Nothing relies on one switch being durable before the next: a switch that a power cut
/// undoes is redone by recovery (the journal lists it, and its staged folder is still
/// there, since the staging is removed only after this returns).
pub fn switch_all(
    root: &Path,
    run_id: &str,
    partitions: &[PartitionChange],
) -> Result<(), CommitError> {
    for partition in partitions {
        let places = Places::of(root, run_id, partition);
        if !partition.files.is_empty() && !holds_run_files(&places.live, partition) {
            sync_dir(&places.staged)?;
        }
    }
    let mut changed = BTreeSet::new();
    for partition in partitions {
        changed.extend(switch(root, run_id, partition)?);
    }
    for table in changed {
        sync_dir(&table)?;
    }
    Ok(())
}

/// Makes the run's files the live partition (or removes it, when the run has none for it);
/// the replaced folder goes to the run's `_replaced/`. Repeatable. Returns the table folder
/// when the live partition changed: that folder is not durable yet ([`switch_all`] makes
/// it so).
fn switch(
    root: &Path,
    run_id: &str,
    partition: &PartitionChange,
) -> Result<Option<PathBuf>, CommitError> {
    let places = Places::of(root, run_id, partition);
    let parent = places
        .live
        .parent()
        .expect("a partition has a table folder");
    if partition.files.is_empty() {
        if places.live.exists() {
            crate::step!("commit::park_old");
            park(&places.live, &places.replaced)?;
            return Ok(Some(parent.to_path_buf()));
        }
        return Ok(None);
    }
    let mut changed = None;
    if !holds_run_files(&places.live, partition) {
        create_private_dirs(parent)?;
        crate::step!("commit::switch");
        if places.live.exists() {
            if !exchange(&places.staged, &places.live)? {
                // No atomic exchange here: park the old folder first (the partition is
                // absent for a moment, never mixed).
                park(&places.live, &places.replaced)?;
                fs::rename(&places.staged, &places.live)
                    .map_err(io_error("publish", &places.live))?;
            }
        } else {
            fs::rename(&places.staged, &places.live).map_err(io_error("publish", &places.live))?;
        }
        changed = Some(parent.to_path_buf());
    }
    if places.staged.exists() {
        // After the exchange the staged folder holds the replaced files.
        crate::step!("commit::park_old");
        park(&places.staged, &places.replaced)?;
    }
    Ok(changed)
}

/// Moves `from` to `to` (creating `to`'s parents).
fn park(from: &Path, to: &Path) -> Result<(), StoreError> {
    create_private_dirs(to.parent().expect("a partition has a table folder"))?;
    fs::rename(from, to).map_err(io_error("move aside", from))
}

/// Puts the partition back as it was before the run switched it. Repeatable.
pub fn roll_back(
    root: &Path,
    run_id: &str,
    partition: &PartitionChange,
) -> Result<(), CommitError> {
    let places = Places::of(root, run_id, partition);
    if places.staged.exists() && !holds_run_files(&places.staged, partition) {
        // Interrupted between the exchange and parking: the staged folder holds the old files.
        park(&places.staged, &places.replaced)?;
    }
    if holds_run_files(&places.live, partition) {
        let discarded = root
            .join(staging_of(run_id))
            .join("_discarded")
            .join(&partition.folder);
        if places.replaced.exists() {
            if !exchange(&places.replaced, &places.live)? {
                park(&places.live, &discarded)?;
            } else {
                // `replaced` holds the run's files now; they go with the staging.
                return Ok(sync_dir(places.live.parent().expect("has a parent"))?);
            }
        } else {
            park(&places.live, &discarded)?;
        }
    }
    if !places.live.exists()
        && places.replaced.exists()
        && !holds_run_files(&places.replaced, partition)
    {
        fs::rename(&places.replaced, &places.live).map_err(io_error("restore", &places.live))?;
    }
    if let Some(parent) = places.live.parent().filter(|p| p.exists()) {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Whether each of the run's files for `partition` is staged or live, at its size.
pub fn present(root: &Path, run_id: &str, partition: &PartitionChange) -> bool {
    let places = Places::of(root, run_id, partition);
    partition.files.iter().all(|file| {
        [&places.staged, &places.live].iter().any(|dir| {
            fs::metadata(dir.join(&file.name)).is_ok_and(|meta| meta.len() == file.bytes)
        })
    })
}

/// The files under the folder `relative` of `root` (recursively, in name order, relative
/// to `root`), leaving out names starting with `_` or `.` and what lies in such folders (a
/// run's staging). A file named by `relative` is itself; a missing folder holds none, but a
/// missing root is an error.
pub fn live_files(root: &Path, relative: &str) -> Result<Vec<String>, StoreError> {
    // `join("")` would add a slash, and the root may be one file.
    let path = match relative {
        "" => root.to_path_buf(),
        _ => root.join(relative),
    };
    if path.is_file() {
        return Ok(vec![relative.to_string()]);
    }
    if !relative.is_empty() && !path.exists() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    walk(&path, relative, &mut found)?;
    Ok(found)
}

fn walk(dir: &Path, relative: &str, found: &mut Vec<String>) -> Result<(), StoreError> {
    let entries = fs::read_dir(dir).map_err(io_error("list", dir))?;
    let mut entries: Vec<_> = entries
        .collect::<Result<_, _>>()
        .map_err(io_error("list", dir))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(['_', '.']) {
            continue;
        }
        let path = match relative {
            "" => name,
            _ => format!("{relative}/{name}"),
        };
        if entry.file_type().map_err(io_error("list", dir))?.is_dir() {
            walk(&entry.path(), &path, found)?;
        } else {
            found.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commit::StagedFile;

    fn partition(files: &[(&str, &str)]) -> PartitionChange {
        PartitionChange {
            folder: "t/dt=2026-11-01".into(),
            files: files
                .iter()
                .map(|(name, content)| StagedFile {
                    name: name.to_string(),
                    bytes: content.len() as u64,
                    rows: 1,
                })
                .collect(),
        }
    }

    fn write(path: &Path, content: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// A live partition with run r1's file, and run r2's file staged to replace it.
    fn old_and_staged(root: &Path) -> PartitionChange {
        write(&root.join("t/dt=2026-11-01/part-r1-0.parquet"), "old");
        let staged = root.join("_staging/r2/t/dt=2026-11-01/part-r2-0.parquet");
        write(&staged, "new");
        partition(&[("part-r2-0.parquet", "new")])
    }

    #[test]
    fn switch_is_repeatable_and_roll_back_restores_the_old_files() {
        let dir = tempfile::tempdir().unwrap();
        let (root, change) = (dir.path(), old_and_staged(dir.path()));
        assert!(present(root, "r2", &change));

        switch(root, "r2", &change).unwrap();
        switch(root, "r2", &change).unwrap();
        assert_eq!(names(&root.join("t/dt=2026-11-01")), ["part-r2-0.parquet"]);
        assert!(present(root, "r2", &change));

        roll_back(root, "r2", &change).unwrap();
        roll_back(root, "r2", &change).unwrap();
        assert_eq!(names(&root.join("t/dt=2026-11-01")), ["part-r1-0.parquet"]);
    }

    #[test]
    fn roll_back_finds_the_old_files_where_an_interrupted_exchange_left_them() {
        let dir = tempfile::tempdir().unwrap();
        let (root, change) = (dir.path(), old_and_staged(dir.path()));
        let places = Places::of(root, "r2", &change);
        assert!(exchange(&places.staged, &places.live).unwrap());
        roll_back(root, "r2", &change).unwrap();
        assert_eq!(names(&root.join("t/dt=2026-11-01")), ["part-r1-0.parquet"]);
    }

    #[test]
    fn an_emptied_partition_is_removed_and_restored() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        let change = partition(&[]);
        write(&root.join("t/dt=2026-11-01/part-r1-0.parquet"), "old");
        switch(root, "r2", &change).unwrap();
        assert!(!root.join("t/dt=2026-11-01").exists());
        roll_back(root, "r2", &change).unwrap();
        assert_eq!(names(&root.join("t/dt=2026-11-01")), ["part-r1-0.parquet"]);
    }

    #[test]
    fn a_new_partition_is_moved_in_and_rolled_back_out() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        let change = partition(&[("part-r2-0.parquet", "new")]);
        write(
            &root.join("_staging/r2/t/dt=2026-11-01/part-r2-0.parquet"),
            "new",
        );
        switch(root, "r2", &change).unwrap();
        assert_eq!(names(&root.join("t/dt=2026-11-01")), ["part-r2-0.parquet"]);
        roll_back(root, "r2", &change).unwrap();
        assert!(!root.join("t/dt=2026-11-01").exists());
    }

    #[test]
    fn a_missing_staged_file_makes_the_commit_incomplete() {
        let root = tempfile::tempdir().unwrap();
        let change = partition(&[("part-r2-0.parquet", "new")]);
        assert!(!present(root.path(), "r2", &change));
        write(
            &root
                .path()
                .join("_staging/r2/t/dt=2026-11-01/part-r2-0.parquet"),
            "torn",
        );
        assert!(!present(root.path(), "r2", &change), "another size");
    }
}
