//! The lock that keeps two runs of one lake apart (`<root>/_lock`), released when its
//! value is dropped. On a local folder it is an OS file lock; on an object store, which has
//! none, it is an object created only if absent (a conditional PUT) that names its run and a
//! lease, refreshed while the run lives ([`ObjectLock`]).
//!
//! May touch: `_lock` under the location's root. Knows nothing of runs beyond their id.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use object_store::{PutMode, UpdateVersion};
use serde::{Deserialize, Serialize};

use super::{Location, ObjectLocation, StoreError, local};

pub const LOCK_FILE: &str = "_lock";

/// An exclusive lock on an output folder, held for the life of the value. It is an OS file
/// lock (`flock`): the kernel releases it when the process ends, even when it is killed,
/// so a crashed run never leaves the folder locked.
#[derive(Debug)]
pub struct OutputLock {
    _file: File,
}

impl OutputLock {
    /// Takes the lock of `out` or fails at once, naming the run that holds it.
    pub fn acquire(out: &Path, run_id: &str) -> Result<Self, StoreError> {
        local::create_private_dirs(out)?;
        let path = out.join(LOCK_FILE);
        let io = |action| {
            move |source| StoreError::Io {
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
                Some(libc::ELOOP) => StoreError::LockIsSymlink { path: path.clone() },
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
                return Err(StoreError::Locked {
                    out: out.display().to_string(),
                    holder,
                    release: "The lock is released when that process ends, also if it crashed"
                        .into(),
                });
            }
            Err(TryLockError::Error(source)) => {
                return Err(StoreError::Io {
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
    /// Takes the lock of `out` or fails at once with [`StoreError::Locked`].
    pub async fn acquire(out: &Location, run_id: &str) -> Result<Self, StoreError> {
        match out {
            Location::Local(root) => OutputLock::acquire(root, run_id).map(RunLock::Local),
            Location::Object(object) => ObjectLock::acquire(object, run_id)
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
    output: ObjectLocation,
    run_id: String,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl ObjectLock {
    async fn acquire(output: &ObjectLocation, run_id: &str) -> Result<Self, StoreError> {
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
            Err(other) => return Err(other),
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
    /// [`StoreError::Locked`] while the lease holds, or when another run was quicker.
    async fn take_over_expired(
        output: &ObjectLocation,
        holder: &LockHolder,
    ) -> Result<object_store::PutResult, StoreError> {
        let locked = |description: String, release: String| StoreError::Locked {
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
            serde_json::from_slice(&bytes).map_err(|e| StoreError::DamagedLock {
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
            Err(other) => Err(other),
        }
    }

    async fn heartbeat(output: ObjectLocation, mut holder: LockHolder, mut version: UpdateVersion) {
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
    async fn release(output: ObjectLocation, run_id: String) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_is_exclusive_and_released_with_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = OutputLock::acquire(dir.path(), "run-1").unwrap();
        let error = OutputLock::acquire(dir.path(), "run-2").unwrap_err();
        assert!(error.to_string().contains("run-1"), "{error}");
        drop(first);
        OutputLock::acquire(dir.path(), "run-3").unwrap();
    }
}
