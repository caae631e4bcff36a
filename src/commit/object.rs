//! Switching a partition on an object store, which has no rename, and undoing it.
//!
//! 1. The partition's current marker (`_markers/<table>/dt=…/_SUCCESS`, naming the files
//!    that make it up) is saved under `_staging/<run_id>/_replaced/`, for a roll-back.
//! 2. The run's files are copied in, server-side (`part-<run_id>-<n>` never collides with
//!    an old name).
//! 3. The run's marker is written: one PUT, the partition's switch for readers that go by
//!    the marker ([`committed_files`]).
//! 4. The old files move to `_staging/<run_id>/_replaced/` (copy, then delete).
//!
//! Readers that glob `dt=…/*.parquet` can see old and new files together between steps 2
//! and 4, for about one copy and one delete per file of that partition: object stores offer
//! nothing tighter short of a table format with its own log. Whether a step is done is read
//! from the marker (does it name the run?), so each step can be repeated.
//!
//! Readers of the lake that go by the markers ([`committed_files`]: reuse, reflatten, the
//! tests) always see one complete run's partition.
//!
//! The markers live outside the partition folders, under `_markers/` at the zone's root:
//! a reader that scans a table's folder (polars, which refuses a folder of mixed file
//! extensions) finds only data there. Lakes written before kept the marker in the partition
//! (`dt=…/_SUCCESS`): it is still read where no marker under `_markers/` is, and the next
//! switch of the partition moves it out (its content saved as the replaced marker), so a
//! lake written by an earlier version commits and recovers as before.
//!
//! May touch: the partition under the zone's prefix, its marker and the run's staging.

use chrono::{DateTime, Utc};
use object_store::PutMode;
use serde::{Deserialize, Serialize};

use super::{PartitionChange, REPLACED_DIR, is_staged, staging_of};
use crate::store::{ObjectLocation, StoreError};

/// The per-partition commit marker's name; engines skip names starting with `_`.
pub const COMMIT_MARKER: &str = "_SUCCESS";
/// The folder, at the zone's root, of the commit markers: `_markers/<partition>/_SUCCESS`.
pub const MARKERS_DIR: &str = "_markers";

/// The marker of the partition folder `folder`, under [`MARKERS_DIR`].
fn marker_path(folder: &str) -> String {
    format!("{MARKERS_DIR}/{folder}/{COMMIT_MARKER}")
}

/// Where lakes written before kept the marker: in the partition folder.
fn legacy_marker_path(folder: &str) -> String {
    format!("{folder}/{COMMIT_MARKER}")
}

/// `_markers/<table>/dt=…/_SUCCESS`: which run's files make up the partition.
#[derive(Debug, Serialize, Deserialize)]
pub struct PartitionMarker {
    pub run_id: String,
    pub committed_at: DateTime<Utc>,
    /// File names in the partition folder; empty when the day has no rows.
    pub files: Vec<String>,
    pub rows: u64,
}

/// The data files under the folder `relative` (recursively, in name order) as readers of
/// the lake should see them: in a folder with a commit marker only the files the marker
/// names, elsewhere every file. Names starting with `_` or `.`, and whatever lies in such
/// folders (a run's staging), are not data.
pub async fn committed_files(
    output: &ObjectLocation,
    relative: &str,
) -> Result<Vec<String>, StoreError> {
    let mut files = Vec::new();
    let mut marked_folders = std::collections::BTreeSet::new();
    for meta in output.list(relative).await? {
        let path = output.relative(&meta.location);
        let within = path
            .strip_prefix(relative)
            .unwrap_or(&path)
            .trim_start_matches('/');
        let hidden = within.split('/').any(|part| part.starts_with(['_', '.']));
        let (folder, name) = path.rsplit_once('/').unwrap_or(("", &path));
        let in_hidden_folder = within
            .rsplit_once('/')
            .is_some_and(|(parents, _)| parents.split('/').any(|p| p.starts_with(['_', '.'])));
        if name == COMMIT_MARKER && !in_hidden_folder {
            marked_folders.insert(folder.to_string());
        } else if !hidden {
            files.push(path.clone());
        }
    }
    let markers = match relative {
        "" => MARKERS_DIR.to_string(),
        _ => format!("{MARKERS_DIR}/{relative}"),
    };
    for meta in output.list(&markers).await? {
        let path = output.relative(&meta.location);
        if let Some(folder) = path
            .strip_prefix(&format!("{MARKERS_DIR}/"))
            .and_then(|p| p.strip_suffix(&format!("/{COMMIT_MARKER}")))
        {
            marked_folders.insert(folder.to_string());
        }
    }
    for folder in marked_folders {
        let Some(marker) = marker(output, &folder).await? else {
            continue;
        };
        files.retain(|path| {
            path.rsplit_once('/').is_none_or(|(parent, name)| {
                parent != folder || marker.files.iter().any(|f| f == name)
            })
        });
    }
    files.sort();
    Ok(files)
}

/// The partition's marker now, as stored, if it has one: under [`MARKERS_DIR`], else (a
/// lake written before) in the partition folder.
async fn marker_bytes(
    output: &ObjectLocation,
    folder: &str,
) -> Result<Option<(String, bytes::Bytes)>, StoreError> {
    for location in [marker_path(folder), legacy_marker_path(folder)] {
        if let Some(bytes) = output.read(&location).await? {
            return Ok(Some((location, bytes)));
        }
    }
    Ok(None)
}

/// The partition's marker now, if it has one.
async fn marker(
    output: &ObjectLocation,
    folder: &str,
) -> Result<Option<PartitionMarker>, StoreError> {
    match marker_bytes(output, folder).await? {
        None => Ok(None),
        Some((location, bytes)) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError::Location {
                    location: format!("{output}/{location}"),
                    message: format!("damaged commit marker: {e}"),
                })
        }
    }
}

fn replaced(run_id: &str, folder: &str) -> String {
    format!("{}/{REPLACED_DIR}/{folder}", staging_of(run_id))
}

/// Makes the run's files the live partition (an empty marker when the run has none for it),
/// moving the replaced files to the run's `_replaced/`. Repeatable.
pub async fn switch(
    output: &ObjectLocation,
    run_id: &str,
    partition: &PartitionChange,
) -> Result<(), super::CommitError> {
    let folder = &partition.folder;
    let current = marker(output, folder).await?;
    if current.as_ref().is_none_or(|m| m.run_id != run_id) {
        if let Some((_, bytes)) = marker_bytes(output, folder).await? {
            let saved = format!("{}/{COMMIT_MARKER}", replaced(run_id, folder));
            output.put(&saved, bytes, PutMode::Overwrite).await?;
        }
        crate::step!("commit::switch");
        for file in &partition.files {
            let name = &file.name;
            output
                .copy(
                    &format!("{}/{folder}/{name}", staging_of(run_id)),
                    &format!("{folder}/{name}"),
                )
                .await?;
        }
        crate::step!("commit::marker");
        let marker = PartitionMarker {
            run_id: run_id.to_string(),
            committed_at: Utc::now(),
            files: partition.files.iter().map(|f| f.name.clone()).collect(),
            rows: partition.files.iter().map(|f| f.rows).sum(),
        };
        let bytes = serde_json::to_vec_pretty(&marker).expect("a marker serializes");
        output
            .put(&marker_path(folder), bytes.into(), PutMode::Overwrite)
            .await?;
    }
    for meta in output.list(folder).await? {
        let name = meta.location.filename().unwrap_or_default();
        if is_staged(partition, name) {
            continue;
        }
        if name == COMMIT_MARKER {
            // A marker an earlier version left in the folder: saved above while current,
            // superseded by the one under `_markers/` otherwise.
            output.delete(&meta.location).await?;
            continue;
        }
        crate::step!("commit::park_old");
        output
            .copy(
                &format!("{folder}/{name}"),
                &format!("{}/{name}", replaced(run_id, folder)),
            )
            .await?;
        output.delete(&meta.location).await?;
    }
    Ok(())
}

/// Puts the partition back as it was before the run switched it. Repeatable.
pub async fn roll_back(
    output: &ObjectLocation,
    run_id: &str,
    partition: &PartitionChange,
) -> Result<(), super::CommitError> {
    let folder = &partition.folder;
    let parked = replaced(run_id, folder);
    if marker(output, folder)
        .await?
        .is_some_and(|m| m.run_id == run_id)
    {
        let mut old_marker = None;
        for meta in output.list(&parked).await? {
            let name = meta.location.filename().unwrap_or_default().to_string();
            let location = output.relative(&meta.location);
            if name == COMMIT_MARKER {
                old_marker = Some(location);
            } else {
                output.copy(&location, &format!("{folder}/{name}")).await?;
            }
        }
        let live_marker = marker_path(folder);
        match old_marker {
            Some(saved) => output.copy(&saved, &live_marker).await?,
            None => output.delete(&output.key(&live_marker)).await?,
        }
    }
    for file in &partition.files {
        output
            .delete(&output.key(&format!("{folder}/{}", file.name)))
            .await?;
    }
    Ok(())
}

/// Whether each of the run's files for `partition` is staged or live, at its size.
pub async fn present(
    output: &ObjectLocation,
    run_id: &str,
    partition: &PartitionChange,
) -> Result<bool, StoreError> {
    if partition.files.is_empty() {
        return Ok(true);
    }
    let staged = format!("{}/{}", staging_of(run_id), partition.folder);
    let mut sizes = std::collections::HashMap::new();
    for prefix in [staged.as_str(), partition.folder.as_str()] {
        for meta in output.list(prefix).await? {
            if let Some(name) = meta.location.filename() {
                sizes.insert((prefix.len(), name.to_string()), meta.size);
            }
        }
    }
    Ok(partition.files.iter().all(|file| {
        [staged.len(), partition.folder.len()]
            .iter()
            .any(|prefix| sizes.get(&(*prefix, file.name.clone())) == Some(&file.bytes))
    }))
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::commit::StagedFile;

    fn change() -> PartitionChange {
        PartitionChange {
            folder: "t/dt=2026-11-01".into(),
            files: vec![StagedFile {
                name: "part-r2-0.parquet".into(),
                bytes: 3,
                rows: 1,
            }],
        }
    }

    /// The keys under `prefix`, sorted.
    async fn keys(output: &ObjectLocation, prefix: &str) -> Vec<String> {
        let mut keys: Vec<String> = output
            .list(prefix)
            .await
            .unwrap()
            .into_iter()
            .map(|m| output.relative(&m.location))
            .collect();
        keys.sort();
        keys
    }

    /// The old partition's marker in the folder, as lakes written before kept it: the
    /// switch moves it out to `_markers/`, and a roll-back restores it there.
    #[tokio::test]
    async fn switch_is_repeatable_and_roll_back_restores_the_old_partition() {
        let output = ObjectLocation::in_memory("lake");
        output
            .put_bytes("t/dt=2026-11-01/part-r1-0.parquet", b"old")
            .await;
        let old_marker = serde_json::to_vec(&PartitionMarker {
            run_id: "r1".into(),
            committed_at: Utc::now(),
            files: vec!["part-r1-0.parquet".into()],
            rows: 1,
        })
        .unwrap();
        output
            .put_bytes("t/dt=2026-11-01/_SUCCESS", &old_marker)
            .await;
        output
            .put_bytes("_staging/r2/t/dt=2026-11-01/part-r2-0.parquet", b"new")
            .await;
        let change = change();
        assert!(present(&output, "r2", &change).await.unwrap());

        switch(&output, "r2", &change).await.unwrap();
        switch(&output, "r2", &change).await.unwrap();
        let live = committed_files(&output, "t").await.unwrap();
        assert_eq!(live, ["t/dt=2026-11-01/part-r2-0.parquet"]);
        assert_eq!(
            keys(&output, "t").await,
            ["t/dt=2026-11-01/part-r2-0.parquet"],
            "the old file and the marker moved out of the folder"
        );
        let live_marker = super::marker(&output, "t/dt=2026-11-01").await.unwrap();
        assert_eq!(live_marker.unwrap().run_id, "r2");
        assert_eq!(
            keys(&output, MARKERS_DIR).await,
            ["_markers/t/dt=2026-11-01/_SUCCESS"]
        );

        roll_back(&output, "r2", &change).await.unwrap();
        roll_back(&output, "r2", &change).await.unwrap();
        let live = committed_files(&output, "t").await.unwrap();
        assert_eq!(live, ["t/dt=2026-11-01/part-r1-0.parquet"]);
        assert_eq!(
            keys(&output, "t").await,
            ["t/dt=2026-11-01/part-r1-0.parquet"],
            "the old file only"
        );
        let restored = output
            .read("_markers/t/dt=2026-11-01/_SUCCESS")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(restored.as_ref(), &old_marker[..]);
    }

    #[tokio::test]
    async fn a_partition_without_a_marker_loses_its_marker_again_on_roll_back() {
        let output = ObjectLocation::in_memory("lake");
        output.put_bytes("t/dt=2026-11-01/a.parquet", b"old").await;
        output
            .put_bytes("_staging/r2/t/dt=2026-11-01/part-r2-0.parquet", b"new")
            .await;
        let change = change();
        switch(&output, "r2", &change).await.unwrap();
        roll_back(&output, "r2", &change).await.unwrap();
        let mut names: Vec<String> = output
            .list("t")
            .await
            .unwrap()
            .into_iter()
            .map(|m| output.relative(&m.location))
            .collect();
        names.sort();
        assert_eq!(names, ["t/dt=2026-11-01/a.parquet"]);
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
        let output = ObjectLocation::in_memory("lake");
        // A partition being switched: the old run's file, the new run's, and the marker
        // that commits the new one.
        output
            .put_bytes("t/dt=2026-11-01/part-r1-00000.parquet", b"old")
            .await;
        output
            .put_bytes("t/dt=2026-11-01/part-r2-00000.parquet", b"new")
            .await;
        output
            .put_bytes(
                "_markers/t/dt=2026-11-01/_SUCCESS",
                &marker(&["part-r2-00000.parquet"]),
            )
            .await;
        // A partition without a marker (written by another tool): every data file.
        output.put_bytes("t/dt=2026-11-02/a.parquet", b"a").await;
        output.put_bytes("t/dt=2026-11-02/b.parquet", b"b").await;
        output.put_bytes("t/dt=2026-11-02/.hidden", b"x").await;
        // A partition of a lake written before, its marker in the folder.
        output
            .put_bytes("t/dt=2026-11-03/part-r1-00000.parquet", b"old")
            .await;
        output
            .put_bytes("t/dt=2026-11-03/part-r2-00000.parquet", b"new")
            .await;
        output
            .put_bytes(
                "t/dt=2026-11-03/_SUCCESS",
                &marker(&["part-r2-00000.parquet"]),
            )
            .await;
        // Staging and other folders starting with `_` are not data.
        output
            .put_bytes("t/_staging/r3/dt=2026-11-01/part-r3-00000.parquet", b"s")
            .await;

        assert_eq!(
            committed_files(&output, "t").await.unwrap(),
            [
                "t/dt=2026-11-01/part-r2-00000.parquet",
                "t/dt=2026-11-02/a.parquet",
                "t/dt=2026-11-02/b.parquet",
                "t/dt=2026-11-03/part-r2-00000.parquet",
            ]
        );
        assert_eq!(
            committed_files(&output, "").await.unwrap().len(),
            4,
            "nothing under _markers/ is data"
        );
        assert_eq!(
            committed_files(&output, "t/dt=2026-11-01").await.unwrap(),
            ["t/dt=2026-11-01/part-r2-00000.parquet"]
        );
        assert!(committed_files(&output, "u").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_damaged_marker_is_an_error_naming_it() {
        let output = ObjectLocation::in_memory("lake");
        output
            .put_bytes("t/dt=2026-11-01/part-r1-00000.parquet", b"old")
            .await;
        output
            .put_bytes("_markers/t/dt=2026-11-01/_SUCCESS", b"{not json")
            .await;
        let error = committed_files(&output, "t").await.unwrap_err().to_string();
        assert!(
            error.contains("memory:///lake/_markers/t/dt=2026-11-01/_SUCCESS")
                && error.contains("damaged commit marker"),
            "{error}"
        );
    }
}
