//! What a run keeps in the output folder besides the tables: the lock that keeps two runs
//! apart (`_lock`), and the state of nightly runs (`_state.json`: per stream, the window
//! exported without a gap), from which a run without `--from/--to` plans its window.
//!
//! On a local folder the lock is an OS file lock; on an object store, which has none, it is
//! an object created only if absent (a conditional PUT) that names its run and a lease,
//! refreshed while the run lives ([`ObjectLock`]).
//!
//! May touch: files or objects directly under the output root. Knows nothing of Graph or Parquet.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use chrono::{DateTime, Days, NaiveDate, Utc};
use object_store::{PutMode, UpdateVersion};
use serde::{Deserialize, Serialize};

use crate::sink;
use crate::sink::store::{ObjectOutput, Output, StoreError};
use crate::window::{Window, midnight};

pub const LOCK_FILE: &str = "_lock";
pub const STATE_FILE: &str = "_state.json";

/// How long Graph keeps call records (404 and absent from the list afterwards).
pub const CALL_RECORD_RETENTION_DAYS: u64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("another run is writing to {out} ({holder}); wait for it to finish. {release}")]
    Locked {
        out: String,
        holder: String,
        /// How the lock goes away if that run crashed.
        release: String,
    },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the state file {path} is damaged ({message}); remove it to start over with the default window"
    )]
    Damaged { path: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the lock file {} is a symbolic link, which is never followed (it could make the run \
         write elsewhere): remove it (rm {0}) and run again", .path.display()
    )]
    LockIsSymlink { path: PathBuf },
}

/// An exclusive lock on an output folder, held for the life of the value. It is an OS file
/// lock (`flock`): the kernel releases it when the process ends, even when it is killed,
/// so a crashed run never leaves the folder locked.
#[derive(Debug)]
pub struct OutputLock {
    _file: File,
}

impl OutputLock {
    /// Takes the lock of `out` or fails at once, naming the run that holds it.
    pub fn acquire(out: &Path, run_id: &str) -> Result<Self, StateError> {
        sink::create_private_dirs(out).map_err(|source| StateError::Io {
            action: "create",
            path: out.into(),
            source: std::io::Error::other(source),
        })?;
        let path = out.join(LOCK_FILE);
        let io = |action| {
            move |source| StateError::Io {
                action,
                path: out.join(LOCK_FILE),
                source,
            }
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o640)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|source| match source.raw_os_error() {
                Some(libc::ELOOP) => StateError::LockIsSymlink { path: path.clone() },
                _ => io("open")(source),
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = if holder.trim().is_empty() {
                    "a run that just started".into()
                } else {
                    holder.trim().to_string()
                };
                return Err(StateError::Locked {
                    out: out.display().to_string(),
                    holder,
                    release: "The lock is released when that process ends, also if it crashed"
                        .into(),
                });
            }
            Err(TryLockError::Error(source)) => {
                return Err(StateError::Io {
                    action: "lock",
                    path,
                    source,
                });
            }
        }
        let holder = format!(
            "run {run_id}, process {}, started {}",
            std::process::id(),
            Utc::now().to_rfc3339()
        );
        file.set_len(0).map_err(io("truncate"))?;
        file.rewind().map_err(io("rewind"))?;
        file.write_all(holder.as_bytes()).map_err(io("write"))?;
        Ok(OutputLock { _file: file })
    }
}

/// The lock of a run on its output, local or on an object store; released when dropped.
#[derive(Debug)]
pub enum RunLock {
    Local(OutputLock),
    Object(ObjectLock),
}

impl RunLock {
    /// Takes the lock of `out` or fails at once with [`StateError::Locked`].
    pub async fn acquire(out: &Output, run_id: &str) -> Result<Self, StateError> {
        match out {
            Output::Local(root) => OutputLock::acquire(root, run_id).map(RunLock::Local),
            Output::Object(object) => ObjectLock::acquire(object, run_id)
                .await
                .map(RunLock::Object),
        }
    }
}

/// How long an object-store lock holds without being refreshed: the time after which the
/// lock of a crashed run may be taken over. A living run refreshes it every
/// [`LOCK_HEARTBEAT`], so only a run that cannot reach the store for this long loses it.
pub const LOCK_LEASE: std::time::Duration = std::time::Duration::from_secs(10 * 60);
pub const LOCK_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(60);

/// The content of `_lock` on an object store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockHolder {
    pub run_id: String,
    pub process: u32,
    pub started_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl LockHolder {
    fn bytes(&self) -> Bytes {
        serde_json::to_vec_pretty(self).expect("serializes").into()
    }

    fn renewed(&self) -> Self {
        LockHolder {
            expires_at: Utc::now() + LOCK_LEASE,
            ..self.clone()
        }
    }
}

/// `_lock` on an object store: created only if absent, refreshed by a heartbeat task with
/// conditional updates (so a run that lost it never overwrites its successor's), deleted
/// when dropped.
#[derive(Debug)]
pub struct ObjectLock {
    output: ObjectOutput,
    run_id: String,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl ObjectLock {
    async fn acquire(output: &ObjectOutput, run_id: &str) -> Result<Self, StateError> {
        let now = Utc::now();
        let holder = LockHolder {
            run_id: run_id.to_string(),
            process: std::process::id(),
            started_at: now,
            expires_at: now + LOCK_LEASE,
        };
        let created = match output.put(LOCK_FILE, holder.bytes(), PutMode::Create).await {
            Ok(created) => created,
            Err(StoreError::Object {
                source: object_store::Error::AlreadyExists { .. },
                ..
            }) => Self::take_over_expired(output, &holder).await?,
            Err(other) => return Err(other.into()),
        };
        let version = UpdateVersion {
            e_tag: created.e_tag,
            version: created.version,
        };
        let heartbeat = tokio::spawn(Self::heartbeat(output.clone(), holder, version));
        Ok(ObjectLock {
            output: output.clone(),
            run_id: run_id.to_string(),
            heartbeat,
        })
    }

    /// Replaces the lock of a run whose lease has passed (it crashed); fails with
    /// [`StateError::Locked`] while the lease holds, or when another run was quicker.
    async fn take_over_expired(
        output: &ObjectOutput,
        holder: &LockHolder,
    ) -> Result<object_store::PutResult, StateError> {
        let locked = |description: String, release: String| StateError::Locked {
            out: output.to_string(),
            holder: description,
            release,
        };
        let Some((bytes, meta)) = output.read_versioned(LOCK_FILE).await? else {
            return Err(locked(
                "a run that just finished".into(),
                "Start this run again".into(),
            ));
        };
        let current: LockHolder =
            serde_json::from_slice(&bytes).map_err(|e| StateError::Damaged {
                path: format!("{output}/{LOCK_FILE}"),
                message: format!("{e}; delete it if no run is writing"),
            })?;
        if current.expires_at > Utc::now() {
            return Err(locked(
                format!(
                    "run {}, process {}, started {}",
                    current.run_id, current.process, current.started_at
                ),
                format!(
                    "If that run crashed, its lock expires at {} and the next run takes it over",
                    current.expires_at
                ),
            ));
        }
        let version = UpdateVersion {
            e_tag: meta.e_tag,
            version: meta.version,
        };
        match output
            .put(LOCK_FILE, holder.bytes(), PutMode::Update(version))
            .await
        {
            Ok(result) => {
                tracing::warn!(
                    stale_run = current.run_id,
                    "Took over the lock of run {}, which expired at {} (that run crashed or was killed).",
                    current.run_id,
                    current.expires_at
                );
                Ok(result)
            }
            Err(StoreError::Object {
                source: object_store::Error::Precondition { .. },
                ..
            }) => Err(locked(
                "a run that took over an expired lock just now".into(),
                "Wait for it to finish".into(),
            )),
            Err(other) => Err(other.into()),
        }
    }

    async fn heartbeat(output: ObjectOutput, mut holder: LockHolder, mut version: UpdateVersion) {
        loop {
            tokio::time::sleep(LOCK_HEARTBEAT).await;
            holder = holder.renewed();
            match output
                .put(LOCK_FILE, holder.bytes(), PutMode::Update(version.clone()))
                .await
            {
                Ok(result) => {
                    version = UpdateVersion {
                        e_tag: result.e_tag,
                        version: result.version,
                    };
                }
                Err(error) => tracing::error!(
                    "Cannot refresh the lock {output}/{LOCK_FILE} ({error}); it expires at {} unless a \
                     later refresh succeeds.",
                    holder.expires_at
                ),
            }
        }
    }

    /// Deletes the lock if it still names this run.
    async fn release(output: ObjectOutput, run_id: String) {
        if let Ok(Some(bytes)) = output.read(LOCK_FILE).await
            && serde_json::from_slice::<LockHolder>(&bytes).is_ok_and(|h| h.run_id == run_id)
        {
            let _ = output.delete(&output.key(LOCK_FILE)).await;
        }
    }
}

impl Drop for ObjectLock {
    fn drop(&mut self) {
        self.heartbeat.abort();
        let release = Self::release(self.output.clone(), std::mem::take(&mut self.run_id));
        // The run ends right after this drop: release before returning, not in a task the
        // runtime may never poll. Blocking needs a multi-threaded runtime (the CLI's); on any
        // other the lock is left to expire.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime)
                if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread =>
            {
                tokio::task::block_in_place(|| runtime.block_on(release));
            }
            Ok(runtime) => drop(runtime.spawn(release)),
            Err(_) => {}
        }
    }
}

/// The exported history of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamState {
    /// Everything in `[complete_from, complete_to)` was exported by runs that finished.
    pub complete_from: DateTime<Utc>,
    pub complete_to: DateTime<Utc>,
}

/// `_state.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExportState {
    pub streams: BTreeMap<String, StreamState>,
    /// Call records that a run quarantined, by the day they were listed on: every later run
    /// (whatever its window) fetches them again, until Graph's retention ends.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub quarantined: BTreeMap<NaiveDate, BTreeSet<String>>,
}

impl ExportState {
    /// The state of the lake at `out`, local or on an object store.
    pub async fn load_from(out: &Output) -> Result<Self, StateError> {
        Ok(Self::read_from(out).await?.0)
    }

    /// The state of the lake at `out`, and the text of its file (None: no file yet), which
    /// a commit restores when it rolls back.
    pub async fn read_from(out: &Output) -> Result<(Self, Option<String>), StateError> {
        let Some(bytes) = out.read(STATE_FILE).await? else {
            return Ok((ExportState::default(), None));
        };
        let location = out.display_path(STATE_FILE);
        let text = String::from_utf8(bytes.to_vec()).map_err(|e| StateError::Damaged {
            path: location.clone(),
            message: e.to_string(),
        })?;
        Ok((Self::parse(text.as_bytes(), location)?, Some(text)))
    }

    /// The text of `_state.json`.
    pub fn to_text(&self) -> String {
        serde_json::to_string_pretty(self).expect("the state serializes")
    }

    fn parse(bytes: &[u8], location: String) -> Result<Self, StateError> {
        serde_json::from_slice(bytes).map_err(|e| StateError::Damaged {
            path: location,
            message: e.to_string(),
        })
    }

    pub fn load(out: &Path) -> Result<Self, StateError> {
        let path = out.join(STATE_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Self::parse(&bytes, path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ExportState::default()),
            Err(source) => Err(StateError::Io {
                action: "read",
                path,
                source,
            }),
        }
    }

    pub fn save(&self, out: &Path) -> Result<(), StateError> {
        sink::write_file_atomically(out, STATE_FILE, self.to_text().as_bytes())
            .map(drop)
            .map_err(|e| StateError::Io {
                action: "write",
                path: out.join(STATE_FILE),
                source: std::io::Error::other(e),
            })
    }

    /// The quarantined call records a run fetches again: those listed on a day whose
    /// records Graph still keeps, other than `window`'s days (there they are listed anew).
    pub fn quarantined_to_retry(
        &self,
        window: Option<Window>,
        now: DateTime<Utc>,
    ) -> BTreeMap<NaiveDate, BTreeSet<String>> {
        let available = call_records_available_from(now).date_naive();
        let listed = window.map(|w| w.days()).unwrap_or_default();
        self.quarantined
            .iter()
            .filter(|(dt, _)| **dt >= available && !listed.contains(dt))
            .map(|(dt, ids)| (*dt, ids.clone()))
            .collect()
    }

    /// Updates the quarantine after a run: the records it exported leave it, the ones it
    /// quarantined join it, and days past Graph's retention are dropped and returned (they
    /// can no longer be fetched).
    pub fn update_quarantine(
        &mut self,
        exported: &BTreeSet<String>,
        quarantined: &BTreeMap<NaiveDate, BTreeSet<String>>,
        now: DateTime<Utc>,
    ) -> BTreeMap<NaiveDate, BTreeSet<String>> {
        for ids in self.quarantined.values_mut() {
            ids.retain(|id| !exported.contains(id));
        }
        for (dt, ids) in quarantined {
            self.quarantined
                .entry(*dt)
                .or_default()
                .extend(ids.iter().cloned());
        }
        let available = call_records_available_from(now).date_naive();
        let retrievable = self.quarantined.split_off(&available);
        let expired = std::mem::replace(&mut self.quarantined, retrievable);
        self.quarantined.retain(|_, ids| !ids.is_empty());
        expired
            .into_iter()
            .filter(|(_, ids)| !ids.is_empty())
            .collect()
    }

    /// Records that `window` of `stream` was exported. The complete range grows only when
    /// the window overlaps or touches it: a window after a gap (a manual run of a later
    /// day) leaves the range as it is, so the next nightly run still exports the gap.
    pub fn record(&mut self, stream: &str, window: Window) {
        let updated = match self.streams.get(stream) {
            Some(state) if window.from <= state.complete_to && window.to >= state.complete_from => {
                StreamState {
                    complete_from: state.complete_from.min(window.from),
                    complete_to: state.complete_to.max(window.to),
                }
            }
            Some(state) => *state,
            None => StreamState {
                complete_from: window.from,
                complete_to: window.to,
            },
        };
        self.streams.insert(stream.to_string(), updated);
    }
}

/// A nightly window and what the operator must know about it.
#[derive(Debug, Clone, PartialEq)]
pub struct NightlyPlan {
    pub window: Window,
    /// Loud warnings: days that can no longer be exported, catch-up after missed nights.
    pub warnings: Vec<String>,
}

/// The window of a run without `--from/--to`: the trailing `lookback_days` ending at today
/// 00:00 UTC (late call-record versions are picked up), extended back to where the
/// previous complete run ended when nights were missed, so no day is skipped silently.
pub fn plan_nightly(
    state: &ExportState,
    streams: &[&str],
    now: DateTime<Utc>,
    lookback_days: u32,
) -> NightlyPlan {
    let trailing = Window::trailing_days(now, lookback_days);
    let mut warnings = Vec::new();
    let resume_from = streams
        .iter()
        .filter_map(|stream| state.streams.get(*stream).map(|s| (stream, s.complete_to)))
        .filter(|(_, complete_to)| *complete_to < trailing.from)
        .min_by_key(|(_, complete_to)| *complete_to);
    let from = match resume_from {
        Some((stream, complete_to)) => {
            warnings.push(format!(
                "{stream} was last exported up to {complete_to}: missed nights are caught up from there"
            ));
            complete_to
        }
        None => trailing.from,
    };
    let window = Window {
        from,
        to: trailing.to,
    };
    if streams.contains(&"call_records") {
        let available_from = call_records_available_from(now);
        if window.from < available_from {
            warnings.push(format!(
                "call records started before {available_from} are past Graph's {CALL_RECORD_RETENTION_DAYS}-day \
                 retention and can no longer be exported: the days from {} to {available_from} are lost for \
                 call_records (the log streams are still exported for them)",
                window.from
            ));
        }
    }
    NightlyPlan { window, warnings }
}

/// The first midnight from which Graph still holds every call record of the day.
pub fn call_records_available_from(now: DateTime<Utc>) -> DateTime<Utc> {
    let oldest = now - chrono::Duration::days(CALL_RECORD_RETENTION_DAYS as i64);
    let next_midnight = oldest
        .date_naive()
        .checked_add_days(Days::new(1))
        .expect("a representable date");
    midnight(next_midnight)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::parse_bound;

    fn at(text: &str) -> DateTime<Utc> {
        parse_bound(text).unwrap()
    }

    fn state(stream: &str, from: &str, to: &str) -> ExportState {
        let mut state = ExportState::default();
        state.streams.insert(
            stream.into(),
            StreamState {
                complete_from: at(from),
                complete_to: at(to),
            },
        );
        state
    }

    #[test]
    fn a_first_run_exports_the_trailing_lookback() {
        let plan = plan_nightly(
            &ExportState::default(),
            &["call_records"],
            at("2026-11-30T02:30:00Z"),
            3,
        );
        assert_eq!(
            plan.window,
            Window::new(at("2026-11-27"), at("2026-11-30")).unwrap()
        );
        assert!(plan.warnings.is_empty());
    }

    #[test]
    fn missed_nights_are_caught_up_from_the_last_complete_window() {
        let state = state("call_records", "2026-11-01", "2026-11-20");
        let plan = plan_nightly(&state, &["call_records"], at("2026-11-30T02:30:00Z"), 3);
        assert_eq!(plan.window.from, at("2026-11-20"));
        assert_eq!(plan.window.to, at("2026-11-30"));
        assert_eq!(plan.warnings.len(), 1);
        assert!(plan.warnings[0].contains("caught up"));
    }

    #[test]
    fn a_gap_past_the_retention_is_reported_as_lost() {
        let state = state("call_records", "2026-09-01", "2026-10-10");
        let plan = plan_nightly(&state, &["call_records"], at("2026-11-30T02:30:00Z"), 3);
        assert_eq!(plan.window.from, at("2026-10-10"));
        assert!(
            plan.warnings
                .iter()
                .any(|w| w.contains("lost") && w.contains("2026-11-01")),
            "{:?}",
            plan.warnings
        );
        assert_eq!(
            call_records_available_from(at("2026-11-30T02:30:00Z")),
            at("2026-11-01")
        );
    }

    #[test]
    fn recording_windows_grows_the_complete_range_only_without_gaps() {
        let mut state = ExportState::default();
        state.record(
            "s",
            Window::new(at("2026-11-20"), at("2026-11-23")).unwrap(),
        );
        state.record(
            "s",
            Window::new(at("2026-11-22"), at("2026-11-25")).unwrap(),
        );
        assert_eq!(
            state.streams["s"],
            StreamState {
                complete_from: at("2026-11-20"),
                complete_to: at("2026-11-25")
            }
        );
        // A backfill of older days does not claim the gap before the range as complete.
        state.record(
            "s",
            Window::new(at("2026-11-01"), at("2026-11-02")).unwrap(),
        );
        assert_eq!(state.streams["s"].complete_from, at("2026-11-20"));
        // A window after a gap leaves the range alone: the gap will be caught up.
        state.record(
            "s",
            Window::new(at("2026-11-27"), at("2026-11-28")).unwrap(),
        );
        assert_eq!(
            state.streams["s"],
            StreamState {
                complete_from: at("2026-11-20"),
                complete_to: at("2026-11-25")
            }
        );
    }

    #[test]
    fn the_lock_is_exclusive_and_released_with_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = OutputLock::acquire(dir.path(), "run-1").unwrap();
        let error = OutputLock::acquire(dir.path(), "run-2").unwrap_err();
        assert!(error.to_string().contains("run-1"), "{error}");
        drop(first);
        OutputLock::acquire(dir.path(), "run-3").unwrap();
    }

    #[test]
    fn quarantined_records_are_retried_until_the_retention_ends() {
        let now = DateTime::parse_from_rfc3339("2026-11-30T06:00:00Z")
            .unwrap()
            .to_utc();
        let day = |d: u32| NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
        let ids = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let mut state = ExportState::default();
        let quarantined = [(day(10), ids(&["a", "b"])), (day(28), ids(&["c"]))].into();
        assert!(
            state
                .update_quarantine(&ids(&[]), &quarantined, now)
                .is_empty()
        );
        let window = Window::trailing_days(now, 1);
        assert_eq!(
            state.quarantined_to_retry(Some(window), now),
            [(day(10), ids(&["a", "b"])), (day(28), ids(&["c"]))].into()
        );
        // The window's own days are listed anew: not retried separately.
        let window = Window::trailing_days(now, 3);
        assert_eq!(
            state.quarantined_to_retry(Some(window), now),
            [(day(10), ids(&["a", "b"]))].into()
        );

        // Exported records leave the list; days past the retention are dropped and named.
        assert!(
            state
                .update_quarantine(&ids(&["a", "c"]), &BTreeMap::new(), now)
                .is_empty()
        );
        assert_eq!(state.quarantined, [(day(10), ids(&["b"]))].into());
        let later = now + chrono::Duration::days(25);
        let expired = state.update_quarantine(&ids(&[]), &BTreeMap::new(), later);
        assert_eq!(expired, [(day(10), ids(&["b"]))].into());
        assert!(state.quarantined.is_empty());
        let text = state.to_text();
        assert!(
            !text.contains("quarantined"),
            "an empty list is not written: {text}"
        );
    }

    #[test]
    fn state_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            ExportState::load(dir.path()).unwrap(),
            ExportState::default()
        );
        let state = state("call_records", "2026-11-01", "2026-11-20");
        state.save(dir.path()).unwrap();
        assert_eq!(ExportState::load(dir.path()).unwrap(), state);
        std::fs::write(dir.path().join(STATE_FILE), "{").unwrap();
        assert!(matches!(
            ExportState::load(dir.path()),
            Err(StateError::Damaged { .. })
        ));
    }
}
