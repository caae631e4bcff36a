//! A local folder as a store: the file-system calls behind [`super::Location`]'s operations,
//! and the primitives a local commit needs (durable folders, an atomic exchange of two
//! folders). Files and folders are created readable by the owner and the group (a lake
//! reader's service account), never by everyone: the tables hold personal data.
//!
//! May touch: the local file system under the paths it is given. Knows nothing of tables or runs.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::StoreError;

const FILE_MODE: u32 = 0o640;
const DIR_MODE: u32 = 0o750;

/// The error of `action` on `path`.
pub fn io_error<'p>(
    action: &'static str,
    path: &'p Path,
) -> impl FnOnce(io::Error) -> StoreError + 'p {
    move |source| StoreError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// `result`, with "not found" as None.
fn found<T>(result: io::Result<T>) -> io::Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The bytes of `path`, or None when there is no such file.
pub fn read(path: &Path) -> Result<Option<Bytes>, StoreError> {
    found(fs::read(path))
        .map(|bytes| bytes.map(Bytes::from))
        .map_err(io_error("read", path))
}

/// Removes the file `path`; nothing to remove is no error.
pub(super) fn remove(path: &Path) -> Result<(), StoreError> {
    found(fs::remove_file(path))
        .map(drop)
        .map_err(io_error("remove", path))
}

/// Removes the folder `path` with everything in it; nothing to remove is no error.
pub(super) fn remove_all(path: &Path) -> Result<(), StoreError> {
    found(fs::remove_dir_all(path))
        .map(drop)
        .map_err(io_error("remove", path))
}

/// The names of the entries directly in `dir` that are folders (`folders`) or not
/// (otherwise). A path that is missing, or a file (a raw input may be one), lists as empty,
/// as an object-store prefix without objects does.
pub(super) fn list(dir: &Path, folders: bool) -> Result<Vec<String>, StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(Vec::new());
        }
        Err(e) => return Err(io_error("list", dir)(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error("list", dir))?;
        let is_dir = entry.file_type().map_err(io_error("list", dir))?.is_dir();
        if is_dir == folders {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    Ok(names)
}

/// Writes `bytes` to `path` so that readers see the old file or the whole new one: a
/// temporary file, synced, renamed into place.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let parent = path.parent().expect("a relative file path has a parent");
    create_private_dirs(parent)?;
    let temporary = parent.join(format!(
        ".{}.tmp",
        path.file_name().expect("file name").to_string_lossy()
    ));
    {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&temporary)
            .map_err(io_error("create", &temporary))?;
        file.write_all(bytes)
            .map_err(io_error("write", &temporary))?;
        file.sync_all().map_err(io_error("fsync", &temporary))?;
    }
    fs::rename(&temporary, path).map_err(io_error("rename into place", path))?;
    sync_dir(parent)
}

/// Opens `path` for appending, creating it (and its folder) readable by the owner and
/// group only.
pub fn create_private_file(path: &Path) -> Result<File, StoreError> {
    create_private_dirs(path.parent().expect("a file path has a parent"))?;
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(io_error("create", path))
}

/// Creates the new file `path` (and its folder) readable by the owner and group only; an
/// existing file is an error.
pub(super) fn create_new_file(path: &Path) -> Result<File, StoreError> {
    create_private_dirs(path.parent().expect("a file path has a parent"))?;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(io_error("create", path))
}

/// Creates `path` and its missing parents, readable by the owner and group only.
pub fn create_private_dirs(path: &Path) -> Result<(), StoreError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
        .map_err(io_error("create directory", path))
}

/// Makes the entries of the folder `path` (creations, renames) durable.
pub fn sync_dir(path: &Path) -> Result<(), StoreError> {
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error("fsync directory", path))
}

/// Makes the file durable and returns its size.
pub(super) fn finish(file: File, path: &Path) -> Result<u64, StoreError> {
    file.sync_all().map_err(io_error("fsync", path))?;
    Ok(file.metadata().map_err(io_error("stat", path))?.len())
}

/// `root` made absolute, so that a command started from another folder finds it.
pub(super) fn absolute(root: &Path) -> PathBuf {
    std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf())
}

/// Renames `from` to `to`, creating `to`'s folder, and makes both folders durable; `from`
/// already gone while `to` is there means it was done.
pub fn move_file(from: &Path, to: &Path) -> Result<(), StoreError> {
    if !from.exists() && to.exists() {
        return Ok(());
    }
    let folder = to.parent().expect("a file has a folder");
    create_private_dirs(folder)?;
    fs::rename(from, to).map_err(io_error("move", from))?;
    sync_dir(folder)?;
    sync_dir(from.parent().expect("a file has a folder"))
}

/// Atomically swaps two directories; false where the kernel or file system cannot
/// (`renameat2` missing, or not supported by the file system).
pub fn exchange(a: &Path, b: &Path) -> Result<bool, StoreError> {
    #[cfg(target_os = "linux")]
    {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let a_c = CString::new(a.as_os_str().as_bytes()).expect("paths have no NUL byte");
        let b_c = CString::new(b.as_os_str().as_bytes()).expect("paths have no NUL byte");
        // SAFETY: both pointers are valid NUL-terminated strings for the duration of the call.
        let status = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                a_c.as_ptr(),
                libc::AT_FDCWD,
                b_c.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        if status == 0 {
            return Ok(true);
        }
        let error = io::Error::last_os_error();
        if !matches!(
            error.raw_os_error(),
            Some(libc::EINVAL) | Some(libc::ENOSYS)
        ) {
            return Err(io_error("swap in partition", b)(error));
        }
    }
    Ok(false)
}
