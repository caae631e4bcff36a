//! The run-wide commit: all the partitions a run replaces, in every table and in the raw
//! zone, become live together, or none of them does, whatever step a crash or an I/O
//! error interrupts.
//!
//! A run stages every file first (`<zone>/_staging/<run_id>/<table>/dt=…/`, made durable).
//! Then:
//!
//! 1. **Journal.** `<lake>/_commits/<run_id>.json` ([`Journal`]) records, before anything
//!    live changes, each partition to switch with the files the run staged for it, and the
//!    lake files to write afterwards (`_state.json`, the manifest) with what they held
//!    before. Its durable write is the commit point.
//! 2. **Switch** each partition, raw zone first: the run's files become the partition, the
//!    files it replaces move to `_staging/<run_id>/_replaced/`. How depends on the backend,
//!    chosen once (`Protocol`): folders exchanged on disk ([`local`]), commit markers on an
//!    object store ([`object`]); or, for a lake of Delta tables on either, one Delta commit
//!    per table ([`delta`]). The same choice says which files readers see as a partition
//!    ([`live_files`]).
//! 3. **Files**: `_state.json` and the manifest are written.
//! 4. **Clean up**: the staging (with the replaced files) is removed, then the journal.
//!
//! Every step finds out first whether it was done already, so it can be repeated after a
//! crash. The next command on the lake (export or reflatten, holding its lock) calls
//! [`recover`] before anything else: an unfinished commit whose staged files are all there
//! is rolled forward; one whose files are not (removed by hand, a disk that lost them) is
//! rolled back. An I/O error while switching rolls back at once, so a failed run's exit 1
//! still means "nothing was published"; if the roll-back fails too, the journal, now marked
//! [`Direction::Back`], makes the next command finish it.
//!
//! Tests inject a crash (`abort`) or an I/O error at each named step through the `fail`
//! crate (cargo feature `failpoints`, on in tests only): see [`crate::step!`].
//!
//! May touch: the lake's and the raw zone's partitions, their `_staging/<run_id>/`, and the
//! lake's `_commits/`, `_state.json` and `_manifests/`, through [`crate::store`]. Knows
//! nothing of Graph or Parquet.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::sink::STAGING_DIR;
use crate::store::{Location, ObjectLocation, StoreError};

pub mod delta;
pub mod local;
pub mod object;

/// Where journals of unfinished commits live, under the lake's root.
pub const COMMITS_DIR: &str = "_commits";
/// Under a run's staging: the files its switch replaced, kept until the commit is complete
/// so that it can still be rolled back.
pub const REPLACED_DIR: &str = "_replaced";

/// A named step (of the commit, or `sink::write`: a staged file's write) where tests inject
/// a failure: `FAILPOINTS=<step>=return(crash)`
/// kills the process there (as `kill -9` would), `return(io)` fails the step with an I/O
/// error. Compiled to nothing without the `failpoints` feature.
#[macro_export]
macro_rules! step {
    ($name:literal) => {
        fail::fail_point!($name, |action| Err(
            $crate::commit::injected($name, action).into()
        ))
    };
}

/// What a failpoint does when it triggers (see [`step!`]).
#[doc(hidden)]
pub fn injected(step: &'static str, action: Option<String>) -> InjectedFailure {
    if action.as_deref() == Some("crash") {
        eprintln!("failpoint {step}: crashing");
        std::process::abort();
    }
    InjectedFailure { step }
}

/// The I/O error a test injected at a step.
#[derive(Debug, thiserror::Error)]
#[error("injected I/O error at step {step}")]
pub struct InjectedFailure {
    pub step: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the commit journal {path} is damaged ({message}); it is what finishes an interrupted \
         run, so nothing was changed. Restore it from a backup, or, if no run was publishing, \
         move it away and run again"
    )]
    Damaged { path: String, message: String },
    #[error(
        "the commit journal {path} names the zone {root}, which this command cannot open \
         ({message}); run the command with the same --out and --raw as the interrupted run"
    )]
    UnknownZone {
        path: String,
        root: String,
        message: String,
    },
    #[error(transparent)]
    Injected(#[from] InjectedFailure),
    #[error(transparent)]
    Delta(#[from] crate::delta::DeltaError),
}

/// How a zone's tables are written and committed: Hive-partitioned Parquet, or Delta Lake
/// tables (Parquet files and a transaction log; [`delta`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TableFormat {
    #[default]
    Parquet,
    Delta,
}

impl TableFormat {
    pub fn name(self) -> &'static str {
        match self {
            TableFormat::Parquet => "parquet",
            TableFormat::Delta => "delta",
        }
    }
}

/// Which way an unfinished commit is completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Forward,
    Back,
}

/// One file the run staged for a partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedFile {
    /// Its name in the partition folder.
    pub name: String,
    pub bytes: u64,
    pub rows: u64,
}

/// A partition the commit replaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionChange {
    /// `<table>/dt=YYYY-MM-DD`, relative to the zone's root.
    pub folder: String,
    /// The run's files for it; none when the partition becomes empty.
    pub files: Vec<StagedFile>,
}

/// The partitions a commit replaces in one zone (the lake, or the raw zone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneChange {
    /// The zone's root: an absolute path or an object-store URL.
    pub root: String,
    /// Whether it is the lake that holds the journal: recovery then uses the lake it was
    /// found in, wherever that is mounted now.
    #[serde(default)]
    pub is_lake: bool,
    pub partitions: Vec<PartitionChange>,
    /// How its partitions are committed.
    #[serde(default)]
    pub format: TableFormat,
    /// For [`TableFormat::Delta`]: what each table's commit is based on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delta: Vec<crate::delta::TableCommit>,
}

/// A small lake file the commit writes after the partitions (`_state.json`, a manifest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChange {
    /// Relative to the lake's root.
    pub path: String,
    /// What it held before (None: absent), restored by a roll-back.
    pub before: Option<String>,
    pub after: String,
}

/// `<lake>/_commits/<run_id>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    pub run_id: String,
    pub direction: Direction,
    /// In the order they are switched: the raw zone before the lake, so that tables never
    /// hold rows whose raw lines are missing.
    pub zones: Vec<ZoneChange>,
    pub files: Vec<FileChange>,
}

/// A zone as a commit sees it: where it is, and its change.
struct Zone<'a> {
    output: Location,
    change: &'a ZoneChange,
}

/// `_staging/<run_id>`, relative to a zone's root.
pub fn staging_of(run_id: &str) -> String {
    format!("{STAGING_DIR}/{run_id}")
}

fn journal_path(run_id: &str) -> String {
    format!("{COMMITS_DIR}/{run_id}.json")
}

impl Journal {
    fn bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a journal serializes")
    }

    fn parse(bytes: &[u8], path: String) -> Result<Self, CommitError> {
        serde_json::from_slice(bytes).map_err(|e| CommitError::Damaged {
            path,
            message: e.to_string(),
        })
    }

    /// Opens the zones it names: the lake, the other outputs the command knows, or (for a
    /// run with other settings) the root parsed anew.
    fn zones<'a>(
        &'a self,
        lake: &Location,
        known: &[&Location],
    ) -> Result<Vec<Zone<'a>>, CommitError> {
        let mut by_root: BTreeMap<String, Location> = std::iter::once(lake)
            .chain(known.iter().copied())
            .map(|output| (output.root_name(), output.clone()))
            .collect();
        self.zones
            .iter()
            .map(|change| {
                let output = match by_root.get(&change.root) {
                    _ if change.is_lake => lake.clone(),
                    Some(output) => output.clone(),
                    None => {
                        let output =
                            Location::parse(&change.root, &BTreeMap::new()).map_err(|e| {
                                CommitError::UnknownZone {
                                    path: lake.display_path(&journal_path(&self.run_id)),
                                    root: change.root.clone(),
                                    message: e.to_string(),
                                }
                            })?;
                        by_root.insert(change.root.clone(), output.clone());
                        output
                    }
                };
                Ok(Zone { output, change })
            })
            .collect()
    }
}

/// Publishes a run: writes its journal, switches every partition, writes the files, then
/// cleans up. On an error before the commit is complete it rolls back, so the lake is as
/// it was, and returns the error.
pub async fn commit(
    lake: &Location,
    journal: Journal,
    known: &[&Location],
) -> Result<(), CommitError> {
    let zones = journal.zones(lake, known)?;
    let applied = async {
        write_journal(lake, &journal).await?;
        switch_all(&journal.run_id, &zones).await?;
        write_files(lake, &journal.files, |f| &f.after).await
    }
    .await;
    if let Err(error) = applied {
        tracing::error!(
            run_id = journal.run_id,
            "Publishing failed ({error}); rolling back."
        );
        return match roll_back(lake, journal.clone(), &zones).await {
            Ok(()) => Err(error),
            Err(second) => {
                tracing::error!(
                    run_id = journal.run_id,
                    "The roll-back failed too ({second}); the next run on {lake} finishes it from {}.",
                    lake.display_path(&journal_path(&journal.run_id))
                );
                Err(error)
            }
        };
    }
    // Published: a failed clean-up is finished by the next run's recovery.
    if let Err(error) = clean_up(lake, &journal.run_id, &zones).await {
        tracing::warn!(
            run_id = journal.run_id,
            "The run is published, but its staging or journal could not be removed ({error}); the next run on \
             {lake} removes them."
        );
    }
    Ok(())
}

async fn write_journal(lake: &Location, journal: &Journal) -> Result<(), CommitError> {
    step!("commit::journal");
    lake.write_atomically(&journal_path(&journal.run_id), &journal.bytes())
        .await?;
    step!("commit::journal_written");
    Ok(())
}

async fn switch_all(run_id: &str, zones: &[Zone<'_>]) -> Result<(), CommitError> {
    for zone in zones {
        if zone.change.format == TableFormat::Delta {
            delta::switch(&zone.output, run_id, zone.change).await?;
            continue;
        }
        Protocol::of(&zone.output)
            .switch_all(run_id, &zone.change.partitions)
            .await?;
    }
    Ok(())
}

async fn write_files(
    lake: &Location,
    files: &[FileChange],
    content: impl Fn(&FileChange) -> &String,
) -> Result<(), CommitError> {
    for file in files {
        step!("commit::write_file");
        lake.write_atomically(&file.path, content(file).as_bytes())
            .await?;
    }
    Ok(())
}

/// Restores every partition and file the journal names to what it was before, then cleans
/// up. The journal is first marked [`Direction::Back`], so that a crash during the roll-back
/// is finished the same way.
async fn roll_back(
    lake: &Location,
    mut journal: Journal,
    zones: &[Zone<'_>],
) -> Result<(), CommitError> {
    if journal.direction != Direction::Back {
        journal.direction = Direction::Back;
        lake.write_atomically(&journal_path(&journal.run_id), &journal.bytes())
            .await?;
    }
    for file in &journal.files {
        match &file.before {
            Some(before) => lake.write_atomically(&file.path, before.as_bytes()).await?,
            None => lake.remove(&file.path).await?,
        }
    }
    for zone in zones.iter().rev() {
        if zone.change.format == TableFormat::Delta {
            delta::roll_back(&zone.output, &journal.run_id, zone.change).await?;
            continue;
        }
        for partition in &zone.change.partitions {
            Protocol::of(&zone.output)
                .roll_back(&journal.run_id, partition)
                .await?;
        }
    }
    clean_up(lake, &journal.run_id, zones).await
}

/// Removes the run's staging (with the replaced files) in every zone, then its journal.
async fn clean_up(lake: &Location, run_id: &str, zones: &[Zone<'_>]) -> Result<(), CommitError> {
    step!("commit::clean_up");
    for zone in zones {
        zone.output.remove_all(&staging_of(run_id)).await?;
        zone.output.remove_if_empty(STAGING_DIR);
    }
    step!("commit::forget");
    lake.remove(&journal_path(run_id)).await?;
    lake.remove_if_empty(COMMITS_DIR);
    Ok(())
}

/// What [`recover`] did with an unfinished commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub run_id: String,
    pub direction: Direction,
}

/// The journals of unfinished commits under `lake`, read and checked (a damaged one is an
/// error before anything changes).
pub async fn pending(lake: &Location) -> Result<Vec<Journal>, CommitError> {
    let mut journals = Vec::new();
    for name in lake.list_names(COMMITS_DIR).await? {
        let Some(run_id) = name.strip_suffix(".json") else {
            continue;
        };
        let path = journal_path(run_id);
        let Some(bytes) = lake.read(&path).await? else {
            continue;
        };
        journals.push(Journal::parse(&bytes, lake.display_path(&path))?);
    }
    Ok(journals)
}

/// Finishes every unfinished commit of `lake`, oldest first: forward when all its staged
/// files are there, back otherwise. Only to be called with the lake's lock held.
/// `known` are the other zones the command has open (its raw zone).
pub async fn recover(lake: &Location, known: &[&Location]) -> Result<Vec<Recovered>, CommitError> {
    let mut recovered = Vec::new();
    for journal in pending(lake).await? {
        let zones = journal.zones(lake, known)?;
        let direction = match journal.direction {
            Direction::Forward if complete(&journal.run_id, &zones).await? => Direction::Forward,
            _ => Direction::Back,
        };
        tracing::warn!(
            run_id = journal.run_id,
            "Run {} was interrupted while publishing; {} its commit.",
            journal.run_id,
            match direction {
                Direction::Forward => "completing",
                Direction::Back => "rolling back",
            }
        );
        let run_id = journal.run_id.clone();
        match direction {
            Direction::Forward => {
                switch_all(&run_id, &zones).await?;
                write_files(lake, &journal.files, |f| &f.after).await?;
                clean_up(lake, &run_id, &zones).await?;
            }
            Direction::Back => roll_back(lake, journal.clone(), &zones).await?,
        }
        recovered.push(Recovered { run_id, direction });
    }
    Ok(recovered)
}

/// Whether every file the journal names is staged or already live, at its size.
async fn complete(run_id: &str, zones: &[Zone<'_>]) -> Result<bool, CommitError> {
    for zone in zones {
        for partition in &zone.change.partitions {
            let present = match zone.change.format {
                TableFormat::Delta => delta::present(&zone.output, run_id, partition).await?,
                TableFormat::Parquet => {
                    Protocol::of(&zone.output)
                        .present(run_id, partition)
                        .await?
                }
            };
            if !present {
                tracing::error!(
                    run_id,
                    partition = partition.folder,
                    "Files of the interrupted run are missing from {}; its commit cannot be completed.",
                    zone.output
                );
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Whether a run's file name is one of `partition`'s staged files.
fn is_staged(partition: &PartitionChange, name: &str) -> bool {
    partition.files.iter().any(|f| f.name == name)
}

/// How a zone's partitions are switched and read, by its backend: folders exchanged on
/// disk, commit markers on an object store. The one place that picks between the two.
enum Protocol<'a> {
    Folders(&'a Path),
    Markers(&'a ObjectLocation),
}

impl<'a> Protocol<'a> {
    fn of(zone: &'a Location) -> Self {
        match zone {
            Location::Local(root) => Protocol::Folders(root),
            Location::Object(object) => Protocol::Markers(object),
        }
    }

    async fn switch_all(
        &self,
        run_id: &str,
        partitions: &[PartitionChange],
    ) -> Result<(), CommitError> {
        match self {
            Protocol::Folders(root) => local::switch_all(root, run_id, partitions),
            Protocol::Markers(object) => {
                for partition in partitions {
                    object::switch(object, run_id, partition).await?;
                }
                Ok(())
            }
        }
    }

    async fn roll_back(
        &self,
        run_id: &str,
        partition: &PartitionChange,
    ) -> Result<(), CommitError> {
        match self {
            Protocol::Folders(root) => local::roll_back(root, run_id, partition),
            Protocol::Markers(object) => object::roll_back(object, run_id, partition).await,
        }
    }

    /// Whether each of the run's files for `partition` is staged or live, at its size.
    async fn present(&self, run_id: &str, partition: &PartitionChange) -> Result<bool, StoreError> {
        match self {
            Protocol::Folders(root) => Ok(local::present(root, run_id, partition)),
            Protocol::Markers(object) => object::present(object, run_id, partition).await,
        }
    }
}

/// The data files of the partition `<table>/<partition>` (`dt=…`) of the lake, as paths
/// relative to its root, in name order: in a Delta table (`<table>/_delta_log/` is there)
/// the files of its current snapshot, otherwise [`live_files`].
pub async fn live_table_files(
    lake: &Location,
    table: &str,
    partition: &str,
) -> Result<Vec<String>, CommitError> {
    if crate::delta::is_delta(lake, table).await? {
        let dt = partition.strip_prefix("dt=");
        return Ok(crate::delta::snapshot_files(lake, table, dt).await?);
    }
    Ok(live_files(lake, &format!("{table}/{partition}")).await?)
}

/// The data files under the folder `relative` of `zone` (recursively, in name order, as
/// paths relative to the root) as readers of the lake see them: on disk every file outside
/// folders and names starting with `_` or `.`; on an object store, in a partition with a
/// commit marker only the files the marker names ([`object::committed_files`]).
pub async fn live_files(zone: &Location, relative: &str) -> Result<Vec<String>, StoreError> {
    match Protocol::of(zone) {
        Protocol::Folders(root) => local::live_files(root, relative),
        Protocol::Markers(object) => object::committed_files(object, relative).await,
    }
}
