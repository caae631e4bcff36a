//! Publishing on an object store, which has no rename and no directory to swap.
//!
//! The run's files are first written whole under `_staging/<run_id>/` (engines skip folders
//! starting with `_`), so nothing of an unfinished run is ever under a partition. Then a
//! journal `_staging/<run_id>/_publishing.json` lists the partitions about to change, and
//! each partition of the window is switched in turn:
//!
//! 1. list the objects the partition holds now (the old files);
//! 2. copy the run's files into it, server-side (`part-<run_id>-<n>.parquet` never collides
//!    with an old name);
//! 3. write `dt=…/_SUCCESS`, a JSON marker naming the run and its files: the commit point
//!    of the partition (one PUT, so it is the old marker or the new one);
//! 4. delete the old files.
//!
//! Readers that go by the marker (`_SUCCESS` → `files`) always see one complete run's
//! partition. Readers that glob `dt=…/*.parquet` see the old files until step 2 and only the
//! new ones after step 4; in between, for about one copy and one delete per file of that
//! partition, they can see both. Object stores offer nothing tighter short of a table
//! format (Delta, Iceberg) with its own log.
//!
//! A run killed in steps 2–4 leaves its journal; the next run (holding the lock) finishes
//! the partitions whose marker names the dead run (deletes the files the marker does not
//! name) and rolls back the others (deletes the dead run's copies), then removes the
//! staging. A run killed before the journal left nothing under any partition.
//!
//! May touch: the object store under the output prefix.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use object_store::PutMode;
use serde::{Deserialize, Serialize};

use super::store::{ObjectOutput, StoreError};
use super::{STAGING_DIR, WrittenFile, partition_dir_name, staging_prefix};

/// The per-partition commit marker; engines skip names starting with `_`.
pub const COMMIT_MARKER: &str = "_SUCCESS";
/// The partitions a run is publishing, kept in its staging until the staging is removed.
const JOURNAL: &str = "_publishing.json";

/// `dt=…/_SUCCESS`: which run's files make up the partition.
#[derive(Debug, Serialize, Deserialize)]
pub struct PartitionMarker {
    pub run_id: String,
    pub committed_at: DateTime<Utc>,
    /// File names in the partition folder; empty when the day has no rows.
    pub files: Vec<String>,
    pub rows: u64,
}

#[derive(Serialize, Deserialize)]
struct Journal {
    run_id: String,
    /// `table/dt=YYYY-MM-DD`, relative to the output root.
    partitions: Vec<String>,
}

/// Switches every partition of `replaced` to the run's files, as the module doc describes.
pub(super) async fn publish(
    output: &ObjectOutput,
    run_id: &str,
    files: &[WrittenFile],
    replaced: &[(String, NaiveDate)],
) -> Result<(), StoreError> {
    let mut by_partition: BTreeMap<(&str, NaiveDate), Vec<&WrittenFile>> = BTreeMap::new();
    for file in files {
        by_partition
            .entry((file.table.as_str(), file.dt))
            .or_default()
            .push(file);
    }
    let journal = Journal {
        run_id: run_id.to_string(),
        partitions: replaced
            .iter()
            .map(|(table, dt)| partition_path(table, *dt))
            .collect(),
    };
    let staging = staging_prefix(run_id);
    output
        .put(
            &format!("{staging}/{JOURNAL}"),
            json_bytes(&journal),
            PutMode::Overwrite,
        )
        .await?;
    for (table, dt) in replaced {
        let partition = partition_path(table, *dt);
        let new_files = by_partition
            .get(&(table.as_str(), *dt))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let names: BTreeSet<&str> = new_files.iter().map(|f| file_name(&f.path)).collect();
        let old: Vec<_> = output
            .list(&partition)
            .await?
            .into_iter()
            .filter(|meta| {
                let name = meta.location.filename().unwrap_or_default();
                name != COMMIT_MARKER && !names.contains(name)
            })
            .collect();
        for file in new_files {
            output
                .copy(&format!("{staging}/{}", file.path), &file.path)
                .await?;
        }
        let marker = PartitionMarker {
            run_id: run_id.to_string(),
            committed_at: Utc::now(),
            files: names.iter().map(|n| n.to_string()).collect(),
            rows: new_files.iter().map(|f| f.rows).sum(),
        };
        output
            .put(
                &format!("{partition}/{COMMIT_MARKER}"),
                json_bytes(&marker),
                PutMode::Overwrite,
            )
            .await?;
        for meta in &old {
            output.delete(&meta.location).await?;
        }
    }
    output.delete_all(&staging).await
}

/// Finishes or rolls back the publishing of every run that left its staging behind, then
/// removes that staging. Only to be called with the output lock held.
pub(super) async fn recover(output: &ObjectOutput) -> Result<(), StoreError> {
    for run_id in output.list_folders(STAGING_DIR).await? {
        let staging = staging_prefix(&run_id);
        tracing::info!(
            run_id,
            "Cleaning up after an earlier run that did not finish."
        );
        if let Some(bytes) = output.read(&format!("{staging}/{JOURNAL}")).await? {
            let journal: Journal =
                serde_json::from_slice(&bytes).map_err(|e| StoreError::Location {
                    location: format!("{staging}/{JOURNAL}"),
                    message: format!("damaged publishing journal: {e}"),
                })?;
            for partition in &journal.partitions {
                repair_partition(output, &run_id, partition).await?;
            }
        }
        output.delete_all(&staging).await?;
    }
    Ok(())
}

/// Leaves `partition` as its marker says: the files of the marker's run, nothing else.
async fn repair_partition(
    output: &ObjectOutput,
    dead_run: &str,
    partition: &str,
) -> Result<(), StoreError> {
    let marker: Option<PartitionMarker> = output
        .read(&format!("{partition}/{COMMIT_MARKER}"))
        .await?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let dead_prefix = format!("part-{dead_run}-");
    for meta in output.list(partition).await? {
        let name = meta.location.filename().unwrap_or_default();
        let stray = match &marker {
            // The dead run committed this partition: its old files are what is left to delete.
            Some(marker) if marker.run_id == dead_run => {
                name != COMMIT_MARKER && !marker.files.iter().any(|f| f == name)
            }
            // It did not: its copies are uncommitted.
            _ => name.starts_with(&dead_prefix),
        };
        if stray {
            output.delete(&meta.location).await?;
        }
    }
    Ok(())
}

/// The data files under the folder `relative` (recursively, in name order) as readers of
/// the lake should see them: in a folder with a commit marker only the files the marker
/// names, elsewhere every file. Names starting with `_` or `.`, and whatever lies in such
/// folders (a run's staging), are not data.
pub async fn committed_files(
    output: &ObjectOutput,
    relative: &str,
) -> Result<Vec<String>, StoreError> {
    let mut files = Vec::new();
    let mut marked_folders = Vec::new();
    for meta in output.list(relative).await? {
        let path = output.relative(&meta.location);
        let within = path
            .strip_prefix(relative)
            .unwrap_or(&path)
            .trim_start_matches('/');
        let (folder, name) = path.rsplit_once('/').unwrap_or(("", &path));
        if name == COMMIT_MARKER {
            marked_folders.push(folder.to_string());
        } else if !within.split('/').any(|part| part.starts_with(['_', '.'])) {
            files.push(path.clone());
        }
    }
    for folder in marked_folders {
        let location = format!("{folder}/{COMMIT_MARKER}");
        let Some(bytes) = output.read(&location).await? else {
            continue;
        };
        let marker: PartitionMarker =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::Location {
                location: format!("{output}/{location}"),
                message: format!("damaged commit marker: {e}"),
            })?;
        files.retain(|path| {
            path.rsplit_once('/').is_none_or(|(parent, name)| {
                parent != folder || marker.files.iter().any(|f| f == name)
            })
        });
    }
    files.sort();
    Ok(files)
}

fn partition_path(table: &str, dt: NaiveDate) -> String {
    format!("{table}/{}", partition_dir_name(dt))
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn json_bytes(value: &impl Serialize) -> Bytes {
    serde_json::to_vec_pretty(value).expect("serializes").into()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn put(output: &ObjectOutput, relative: &str, bytes: &[u8]) {
        output
            .put(relative, Bytes::copy_from_slice(bytes), PutMode::Overwrite)
            .await
            .unwrap();
    }

    fn marker(files: &[&str]) -> Vec<u8> {
        serde_json::to_vec(&PartitionMarker {
            run_id: "r2".into(),
            committed_at: Utc::now(),
            files: files.iter().map(|f| f.to_string()).collect(),
            rows: 1,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn committed_files_are_those_the_marker_names_or_all_without_one() {
        let output = ObjectOutput::in_memory("lake");
        // A partition being switched: the old run's file, the new run's, and the marker
        // that commits the new one.
        put(&output, "t/dt=2026-11-01/part-r1-00000.parquet", b"old").await;
        put(&output, "t/dt=2026-11-01/part-r2-00000.parquet", b"new").await;
        put(
            &output,
            "t/dt=2026-11-01/_SUCCESS",
            &marker(&["part-r2-00000.parquet"]),
        )
        .await;
        // A partition without a marker (written by another tool): every data file.
        put(&output, "t/dt=2026-11-02/a.parquet", b"a").await;
        put(&output, "t/dt=2026-11-02/b.parquet", b"b").await;
        put(&output, "t/dt=2026-11-02/.hidden", b"x").await;
        // Staging and other folders starting with `_` are not data.
        put(
            &output,
            "t/_staging/r3/dt=2026-11-01/part-r3-00000.parquet",
            b"s",
        )
        .await;

        assert_eq!(
            committed_files(&output, "t").await.unwrap(),
            [
                "t/dt=2026-11-01/part-r2-00000.parquet",
                "t/dt=2026-11-02/a.parquet",
                "t/dt=2026-11-02/b.parquet",
            ]
        );
        assert_eq!(
            committed_files(&output, "t/dt=2026-11-01").await.unwrap(),
            ["t/dt=2026-11-01/part-r2-00000.parquet"]
        );
        assert!(committed_files(&output, "u").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_damaged_marker_is_an_error_naming_it() {
        let output = ObjectOutput::in_memory("lake");
        put(&output, "t/dt=2026-11-01/part-r1-00000.parquet", b"old").await;
        put(&output, "t/dt=2026-11-01/_SUCCESS", b"{not json").await;
        let error = committed_files(&output, "t").await.unwrap_err().to_string();
        assert!(
            error.contains("memory:///lake/t/dt=2026-11-01/_SUCCESS")
                && error.contains("damaged commit marker"),
            "{error}"
        );
    }
}
