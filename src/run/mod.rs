//! The lifecycle every command that writes the lake shares (`export`, `reflatten`): a run
//! id, the lake's lock, finishing what an interrupted run left (its commit, its staging),
//! the writer thread that stages the run's files ([`writer`]), the rows on their way to it
//! ([`rows`]), records set aside ([`quarantine`]), and publishing the staged partitions,
//! the state and the manifest ([`summary`]) through one run-wide [`commit`].
//!
//! ```text
//! Run::begin ─► Run::writer ─► (the command sends rows to Batches) ─► Run::staged ─► Staged
//!            ─► Staged::changes ─► Run::plan (Delta: the table versions) ─► Run::publish
//!               (journal, partitions, files, manifest)
//!            └► on a failure: Run::discard (Run::writer and Run::staged do it themselves;
//!               the command discards its Quarantine)
//! ```
//!
//! May touch: the lake's `_lock`, `_commits/`, `_staging/`, `_rejected/`, `_manifests/`,
//! and the raw zone's `_staging/`. Knows nothing of Graph or of raw input.

pub mod quarantine;
pub mod rows;
pub mod summary;
pub mod writer;

use anyhow::Context;
use chrono::{DateTime, Utc};

use std::collections::BTreeMap;

use crate::commit::{self, CommitError, FileChange, Journal, Recovered, TableFormat, ZoneChange};
use crate::sink;
use crate::store::Location;
use crate::store::lock::RunLock;
use writer::{Batches, Staged, Writer};

/// Where a run notes, in its own staging, that it started: a killed run's staging is then
/// found in the lake even before it staged a file, and with it the run's raw-zone staging.
const RUN_NOTE: &str = "_run.json";

/// What a failed run says after why it failed.
pub const NOT_PUBLISHED: &str = "nothing was published; the lake is as it was before this run";

/// A run holding the lake's lock.
pub struct Run {
    pub id: String,
    pub lake: Location,
    pub raw: Option<Location>,
    /// How the lake's tables are written.
    pub format: TableFormat,
    _lock: RunLock,
}

impl Run {
    /// Takes `lake`'s lock and finishes what interrupted runs left ([`recover`]).
    pub async fn begin(
        lake: &Location,
        raw: Option<&Location>,
        format: TableFormat,
        started_at: DateTime<Utc>,
    ) -> anyhow::Result<Run> {
        let id = new_run_id(started_at);
        let lock = RunLock::acquire(lake, &id).await?;
        finish_interrupted(lake, raw).await?;
        let note = serde_json::json!({ "run_id": id, "started_at": started_at });
        lake.write_atomically(
            &format!("{}/{RUN_NOTE}", commit::staging_of(&id)),
            note.to_string().as_bytes(),
        )
        .await
        .with_context(|| format!("cannot write to {lake}"))?;
        Ok(Run {
            id,
            lake: lake.clone(),
            raw: raw.cloned(),
            format,
            _lock: lock,
        })
    }

    /// Marks the lake's zone among `zones` and, for Delta tables, plans each table's commit
    /// (the version it reads, its `txn` version); returns the zones and the table versions
    /// the commit will write (none for Parquet). On an error the run's staging is removed.
    pub async fn plan(
        &self,
        zones: Vec<ZoneChange>,
    ) -> anyhow::Result<(Vec<ZoneChange>, BTreeMap<String, u64>)> {
        let lake_root = self.lake.root_name();
        let mut versions = BTreeMap::new();
        let mut planned = Vec::new();
        for mut zone in zones {
            zone.is_lake = zone.root == lake_root;
            if zone.is_lake {
                let delta = self.format == TableFormat::Delta;
                if let Err(error) = commit::delta::check_format(&self.lake, &zone, delta).await {
                    self.discard().await;
                    return Err(anyhow::Error::new(error).context(NOT_PUBLISHED));
                }
            }
            if zone.is_lake && self.format == TableFormat::Delta {
                zone.format = TableFormat::Delta;
                zone.delta = match commit::delta::plan(&self.lake, &zone).await {
                    Ok(plans) => plans,
                    Err(error) => {
                        self.discard().await;
                        return Err(anyhow::Error::new(error).context(NOT_PUBLISHED));
                    }
                };
                versions = crate::delta::versions(&zone.delta);
            }
            planned.push(zone);
        }
        Ok((planned, versions))
    }

    /// Publishes the run: every partition of `zones` (as [`Run::plan`] made them), every file of `files` and the
    /// manifest `_manifests/<run_id>.json` holding `summary`, together. On an error nothing
    /// was published (the commit rolled back).
    pub async fn publish(
        &self,
        zones: Vec<ZoneChange>,
        mut files: Vec<FileChange>,
        summary: &impl serde::Serialize,
    ) -> Result<(), CommitError> {
        files.push(self.manifest(summary));
        let journal = Journal {
            run_id: self.id.clone(),
            direction: commit::Direction::Forward,
            zones,
            files,
        };
        let known: Vec<&Location> = self.raw.iter().collect();
        commit::commit(&self.lake, journal, &known).await
    }

    /// Starts the run's writer thread (see `Writer::start`); on an error the run's staging
    /// is removed.
    pub async fn writer(
        &self,
        fingerprint: &str,
        queue: usize,
    ) -> anyhow::Result<(Writer, Batches)> {
        let started = Writer::start(self, fingerprint, queue);
        if started.is_err() {
            self.discard().await;
        }
        started
    }

    /// Waits for `writer` (every sender dropped) and returns what it staged with what the
    /// command's own `work` returned, when both succeeded; otherwise removes the run's
    /// staging and returns the error (a write error first: it is why the work stopped).
    pub async fn staged<T>(
        &self,
        writer: Writer,
        work: anyhow::Result<T>,
    ) -> anyhow::Result<(T, Staged)> {
        let written = writer.finish();
        let error = match (work, written) {
            (Ok(work), Ok(Ok(staged))) => return Ok((work, staged)),
            (_, Err(panicked)) => panicked,
            (_, Ok(Err(error))) => anyhow::Error::new(error).context(NOT_PUBLISHED),
            (Err(error), Ok(Ok(_))) => error,
        };
        self.discard().await;
        Err(error)
    }

    /// Removes the run's staging in the lake and the raw zone (a run that will not publish).
    pub async fn discard(&self) {
        for zone in std::iter::once(&self.lake).chain(&self.raw) {
            let _ = zone.remove_all(&commit::staging_of(&self.id)).await;
            zone.remove_if_empty(sink::STAGING_DIR);
        }
    }

    /// The manifest of the run, as the commit writes it.
    fn manifest(&self, summary: &impl serde::Serialize) -> FileChange {
        FileChange {
            path: format!("_manifests/{}.json", self.id),
            before: None,
            after: serde_json::to_string_pretty(summary).expect("the summary serializes"),
        }
    }
}

/// What every writing command does first, with the lake's lock held: completes or rolls
/// back the commit of a run that was interrupted, and removes the staging of runs that were
/// killed before their commit (in the raw zone only theirs: another lake may share it).
async fn finish_interrupted(
    lake: &Location,
    raw: Option<&Location>,
) -> anyhow::Result<Vec<Recovered>> {
    let known: Vec<&Location> = raw.into_iter().collect();
    let recovered = commit::recover(lake, &known)
        .await
        .context("cannot finish the commit of an earlier run that was interrupted")?;
    let stale = sink::remove_stale_staging(lake, None)
        .await
        .context("cannot clean up after an earlier run that did not finish")?;
    if let Some(raw) = raw {
        sink::remove_stale_staging(raw, Some(&stale))
            .await
            .context("cannot clean up the raw zone after an earlier run that did not finish")?;
    }
    Ok(recovered)
}

/// Takes the lake's lock and finishes what interrupted runs left, as the next command on
/// the lake would before anything else; for tools and tests that check a lake after a crash.
pub async fn recover(lake: &Location, raw: Option<&Location>) -> anyhow::Result<Vec<Recovered>> {
    let _lock = RunLock::acquire(lake, &new_run_id(Utc::now())).await?;
    finish_interrupted(lake, raw).await
}

/// A run id that sorts by start time and is unique across concurrent runs.
pub(crate) fn new_run_id(started_at: DateTime<Utc>) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{}-{}", started_at.format("%Y%m%dT%H%M%SZ"), &random[..8])
}
