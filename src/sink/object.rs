//! Partition commit markers on an object store, which has no rename and no directory to
//! swap: `dt=…/_SUCCESS` names the files that make up the partition, and readers that go by
//! it ([`committed_files`]) always see one complete run's partition. How a run switches
//! markers is in [`crate::commit::object`].
//!
//! May touch: the object store under the output prefix (reading only).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::store::{ObjectOutput, StoreError};

/// The per-partition commit marker; engines skip names starting with `_`.
pub const COMMIT_MARKER: &str = "_SUCCESS";
/// `dt=…/_SUCCESS`: which run's files make up the partition.
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

#[cfg(test)]
mod tests {

    use super::*;

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
        output
            .put_bytes("t/dt=2026-11-01/part-r1-00000.parquet", b"old")
            .await;
        output
            .put_bytes("t/dt=2026-11-01/part-r2-00000.parquet", b"new")
            .await;
        output
            .put_bytes(
                "t/dt=2026-11-01/_SUCCESS",
                &marker(&["part-r2-00000.parquet"]),
            )
            .await;
        // A partition without a marker (written by another tool): every data file.
        output.put_bytes("t/dt=2026-11-02/a.parquet", b"a").await;
        output.put_bytes("t/dt=2026-11-02/b.parquet", b"b").await;
        output.put_bytes("t/dt=2026-11-02/.hidden", b"x").await;
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
        output
            .put_bytes("t/dt=2026-11-01/part-r1-00000.parquet", b"old")
            .await;
        output
            .put_bytes("t/dt=2026-11-01/_SUCCESS", b"{not json")
            .await;
        let error = committed_files(&output, "t").await.unwrap_err().to_string();
        assert!(
            error.contains("memory:///lake/t/dt=2026-11-01/_SUCCESS")
                && error.contains("damaged commit marker"),
            "{error}"
        );
    }
}
