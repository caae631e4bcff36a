//! Where the lake and the raw zone live, and every operation the crate does on them: a
//! [`Location`] is a local folder or a prefix in an object store (Amazon S3 and
//! S3-compatible servers, Azure Blob Storage / ADLS Gen2, Google Cloud Storage), and this
//! module is the only code that knows which.
//!
//! [`Location::parse`] turns `--out`, `--raw` or `[output] path` into a [`Location`]:
//! `s3://bucket/prefix`, `az://container/prefix`,
//! `abfss://container@account.dfs.core.windows.net/prefix`, `gs://bucket/prefix`,
//! `file:///path` or a plain path. Cloud credentials come from the environment the way each
//! cloud's tools read them (`AWS_*`, `AZURE_*`, `GOOGLE_*`, and the instance, workload or
//! managed identity the crate finds there); `[output.options]` adds the builder keys the
//! environment does not say, and unknown keys are refused.
//!
//! The operations are what any reader or writer of the lake needs, whatever the backend:
//! read a small file, list a folder, write a file so that readers see the old or the whole
//! new bytes ([`Location::write_atomically`]), delete, stream a large file up
//! ([`Location::writer`]: multipart on an object store, never buffered whole) or down
//! ([`Location::reader`]), read Parquet (by ranges on an object store:
//! [`Location::read_parquet`]), and hold the lock of a run ([`lock`]). [`overlap()`] says
//! whether two locations (the lake and the raw zone) overlap, before either is opened. How partitions are
//! switched lives in `commit`, which picks its algorithm by backend once
//! (`commit::Protocol`), with the primitives of [`local`] and [`object`].
//!
//! May touch: the local file system under the location's root, the object store under its
//! prefix. Knows nothing of tables, Graph or runs.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::RecordBatch;
use bytes::Bytes;
use futures::StreamExt;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderBuilder, ParquetRecordBatchReaderBuilder};
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use parquet::file::metadata::ParquetMetaData;
use tokio::runtime::Handle;

pub mod local;
pub mod lock;
pub mod object;
mod overlap;

pub use object::{ObjectLocation, ObjectParquetFile, ObjectReader, ObjectWriter};
pub use overlap::{Overlap, overlap};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the output location {location} is not usable: {message}")]
    Location { location: String, message: String },
    #[error(
        "[output.options] has keys that {store} does not know: {}; see the object_store \
         builder keys of {store} (for example {example})", .keys.join(", ")
    )]
    UnknownOptions {
        store: &'static str,
        example: &'static str,
        keys: Vec<String>,
    },
    #[error("cannot {action} {location}: {source}")]
    Object {
        action: &'static str,
        location: String,
        source: object_store::Error,
    },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("another run is writing to {out} ({holder}); wait for it to finish. {release}")]
    Locked {
        out: String,
        holder: String,
        /// How the lock goes away if that run crashed.
        release: String,
    },
    #[error(
        "the lock file {} is a symbolic link, which is never followed (it could make the run \
         write elsewhere): remove it (rm {0}) and run again", .path.display()
    )]
    LockIsSymlink { path: PathBuf },
    // The same words as a damaged `_state.json` (`state::StateError::Damaged`).
    #[error(
        "the state file {path} is damaged ({message}); remove it to start over with the default window"
    )]
    DamagedLock { path: String, message: String },
    #[error("cannot read {location}: {source}")]
    Parquet {
        location: String,
        source: parquet::errors::ParquetError,
    },
}

/// The root of the lake or of the raw zone. Code outside `store` uses its operations, not
/// the variants; only `commit::Protocol` looks at them, to pick how partitions are switched
/// (and, until they move onto the operations, `pipeline` and `reflatten`).
#[derive(Debug, Clone)]
pub enum Location {
    Local(PathBuf),
    Object(ObjectLocation),
}

impl Location {
    /// Parses `location` (a URL or a plain path) and builds the store client. Makes no request.
    pub fn parse(location: &str, options: &BTreeMap<String, String>) -> Result<Self, StoreError> {
        let parsed = match location.contains("://") {
            false => object::Parsed::Local(PathBuf::from(location)),
            true => object::parse(location, options)?,
        };
        match parsed {
            object::Parsed::Object(object) => Ok(Location::Object(object)),
            object::Parsed::Local(_) if !options.is_empty() => Err(StoreError::Location {
                location: location.to_string(),
                message: format!(
                    "[output.options] ({}) apply to object stores only; remove them for a local folder",
                    options.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            }),
            object::Parsed::Local(path) => Ok(Location::Local(path)),
        }
    }

    /// `relative` under the root, for messages.
    pub fn display_path(&self, relative: &str) -> String {
        match self {
            Location::Local(root) => root.join(relative).display().to_string(),
            Location::Object(object) => format!("{object}/{relative}"),
        }
    }

    /// The root as journals name it: an absolute path (so that a command started from
    /// another folder finds it) or the URL.
    pub fn root_name(&self) -> String {
        match self {
            Location::Local(root) => local::absolute(root).display().to_string(),
            Location::Object(object) => object.to_string(),
        }
    }

    /// The local path of `relative`, when the location is a local folder: such a file can
    /// be mapped into memory. None on an object store.
    pub fn local_path(&self, relative: &str) -> Option<PathBuf> {
        match self {
            // `join("")` would add a slash, and the root may be one file.
            Location::Local(root) if relative.is_empty() => Some(root.clone()),
            Location::Local(root) => Some(root.join(relative)),
            Location::Object(_) => None,
        }
    }

    /// The bytes of `<root>/<relative>`, or None when there is no such file or object.
    pub async fn read(&self, relative: &str) -> Result<Option<Bytes>, StoreError> {
        match self {
            Location::Local(root) => local::read(&root.join(relative)),
            Location::Object(object) => object.read(relative).await,
        }
    }

    /// Whether the file or object `relative` exists (the root itself: `""`).
    pub async fn exists(&self, relative: &str) -> Result<bool, StoreError> {
        match self {
            Location::Local(_) => Ok(self.local_path(relative).is_some_and(|p| p.is_file())),
            Location::Object(object) => object.exists(relative).await,
        }
    }

    /// Writes `bytes` to `<root>/<relative>` so that readers see the old content or the
    /// whole new one: a renamed temporary file on disk, one PUT on an object store.
    pub async fn write_atomically(&self, relative: &str, bytes: &[u8]) -> Result<(), StoreError> {
        match self {
            Location::Local(root) => local::write_atomically(&root.join(relative), bytes),
            Location::Object(object) => object
                .put(
                    relative,
                    Bytes::copy_from_slice(bytes),
                    object_store::PutMode::Overwrite,
                )
                .await
                .map(drop),
        }
    }

    /// Removes the file or object `<root>/<relative>`; nothing to remove is no error.
    pub async fn remove(&self, relative: &str) -> Result<(), StoreError> {
        match self {
            Location::Local(root) => local::remove(&root.join(relative)),
            Location::Object(object) => object.delete(&object.key(relative)).await,
        }
    }

    /// Removes the folder `<root>/<relative>` with everything in it.
    pub async fn remove_all(&self, relative: &str) -> Result<(), StoreError> {
        match self {
            Location::Local(root) => local::remove_all(&root.join(relative)),
            Location::Object(object) => object.delete_all(relative).await,
        }
    }

    /// [`Location::remove_all`] for synchronous code (a writer thread): an object store is
    /// reached through `runtime`, which it needs.
    pub fn remove_all_blocking(
        &self,
        relative: &str,
        runtime: Option<&Handle>,
    ) -> Result<(), StoreError> {
        match self {
            Location::Local(root) => local::remove_all(&root.join(relative)),
            Location::Object(object) => runtime
                .expect("an object store is reached through a tokio runtime")
                .block_on(object.delete_all(relative)),
        }
    }

    /// Removes the local folder `relative` if nothing is in it (object stores have no
    /// folders); it fails harmlessly while another run is using it.
    pub fn remove_if_empty(&self, relative: &str) {
        if let Location::Local(root) = self {
            let _ = std::fs::remove_dir(root.join(relative));
        }
    }

    /// Creates the folder `relative` on disk (object stores have no folders).
    pub fn create_folder(&self, relative: &str) -> Result<(), StoreError> {
        match self {
            Location::Local(root) => local::create_private_dirs(&root.join(relative)),
            Location::Object(_) => Ok(()),
        }
    }

    /// Moves the file `from` to `to` (both relative; `to`'s folder is created): a rename
    /// made durable on disk, a server-side copy on an object store (where `from` stays until
    /// its folder is removed). Done already (`to` there, `from` gone) is no error.
    pub async fn move_file(&self, from: &str, to: &str) -> Result<(), StoreError> {
        match self {
            Location::Local(root) => local::move_file(&root.join(from), &root.join(to)),
            Location::Object(object) => object.copy(from, to).await,
        }
    }

    /// The footer of the Parquet file `relative` (on an object store by ranged GETs).
    pub async fn parquet_metadata(
        &self,
        relative: &str,
    ) -> Result<Arc<ParquetMetaData>, StoreError> {
        let cannot_read = |source| StoreError::Parquet {
            location: self.display_path(relative),
            source,
        };
        match self {
            Location::Local(root) => {
                let path = root.join(relative);
                let file = std::fs::File::open(&path).map_err(local::io_error("open", &path))?;
                parquet::file::metadata::ParquetMetaDataReader::new()
                    .parse_and_finish(&file)
                    .map(Arc::new)
                    .map_err(cannot_read)
            }
            Location::Object(object) => {
                use parquet::arrow::async_reader::AsyncFileReader;
                let mut file = object.parquet_file(relative).await?;
                file.get_metadata(None).await.map_err(cannot_read)
            }
        }
    }

    /// The folder `relative` as an `object_store` for libraries that take one (delta-rs):
    /// see [`StoreView`]. On disk the folder is created.
    pub fn view(&self, relative: &str) -> Result<StoreView, StoreError> {
        let bad = |message: String| StoreError::Location {
            location: self.display_path(relative),
            message,
        };
        match self {
            Location::Local(root) => {
                let path = local::absolute(&root.join(relative));
                local::create_private_dirs(&path)?;
                let prefixed = object_store::local::LocalFileSystem::new_with_prefix(&path)
                    .map_err(|e| bad(e.to_string()))?;
                let url = url::Url::from_directory_path(&path)
                    .map_err(|()| bad("not an absolute path".into()))?;
                Ok(StoreView {
                    prefixed: Arc::new(prefixed),
                    root: Arc::new(object_store::local::LocalFileSystem::new()),
                    url,
                })
            }
            Location::Object(object) => object.view(relative).map_err(|e| bad(e.to_string())),
        }
    }

    /// The names of the files (or objects) directly in the folder `relative`, sorted.
    pub async fn list_names(&self, relative: &str) -> Result<Vec<String>, StoreError> {
        let mut names = match self {
            Location::Local(root) => local::list(&root.join(relative), false)?,
            Location::Object(object) => object.list_names(relative).await?,
        };
        names.sort();
        Ok(names)
    }

    /// The names of the folders directly in the folder `relative`, sorted.
    pub async fn list_folders(&self, relative: &str) -> Result<Vec<String>, StoreError> {
        let mut names = match self {
            Location::Local(root) => local::list(&root.join(relative), true)?,
            Location::Object(object) => object.list_folders(relative).await?,
        };
        names.sort();
        Ok(names)
    }

    /// A file `relative` that grows by whole lines, each durable when
    /// [`LineLog::append`] returns.
    pub fn line_log(&self, relative: &str) -> Result<LineLog, StoreError> {
        let grown = match self {
            Location::Local(root) => Grown::File(
                local::create_private_file(&root.join(relative))?,
                root.join(relative),
            ),
            Location::Object(object) => Grown::Object(object.clone(), Vec::new()),
        };
        Ok(LineLog {
            relative: relative.to_string(),
            grown,
        })
    }

    /// A new file `relative`, written as a stream from synchronous code (a writer thread):
    /// created readable by the owner and group on disk, uploaded in parts through `runtime`
    /// on an object store (which needs one). Nothing is durable, nor on an object store
    /// visible, before [`StoreWriter::finish`].
    pub fn writer(
        &self,
        relative: &str,
        runtime: Option<&Handle>,
    ) -> Result<StoreWriter, StoreError> {
        Ok(match self {
            Location::Local(root) => {
                let path = root.join(relative);
                let file = local::create_new_file(&path)?;
                StoreWriter::Local { file, path }
            }
            Location::Object(object) => {
                let runtime = runtime.expect("an object store is written through a tokio runtime");
                StoreWriter::Object(Box::new(object.writer(relative, runtime.clone())))
            }
        })
    }

    /// A streaming reader of `relative` for synchronous code (a reader thread, a blocking
    /// task): an object's bytes are fetched through `runtime` as they are read, never held
    /// whole.
    pub fn reader(
        &self,
        relative: &str,
        runtime: &Handle,
    ) -> Result<Box<dyn io::Read + Send>, StoreError> {
        Ok(match self {
            Location::Local(_) => {
                let path = self.local_path(relative).expect("a local location");
                let file = std::fs::File::open(&path).map_err(local::io_error("open", &path))?;
                Box::new(file)
            }
            Location::Object(object) => Box::new(object.reader(relative, runtime.clone())?),
        })
    }

    /// The Parquet file `relative` (only `columns`, when given), read one row group's worth
    /// at a time: from disk, or by ranged GETs through `runtime` (so from a thread outside
    /// its async tasks).
    pub fn read_parquet(
        &self,
        relative: &str,
        columns: Option<&[&str]>,
        runtime: &Handle,
    ) -> Result<ParquetBatches, StoreError> {
        let location = self.display_path(relative);
        let cannot_read = move |source| StoreError::Parquet {
            location: location.clone(),
            source,
        };
        Ok(match self {
            Location::Local(root) => {
                let path = root.join(relative);
                let file = std::fs::File::open(&path).map_err(local::io_error("open", &path))?;
                let builder =
                    ParquetRecordBatchReaderBuilder::try_new(file).map_err(cannot_read.clone())?;
                let metadata = builder.metadata().clone();
                let batches = project(builder, columns)
                    .build()
                    .map_err(cannot_read.clone())?;
                let batches = batches.map(move |batch| batch.map_err(|e| cannot_read(e.into())));
                ParquetBatches {
                    metadata,
                    batches: Box::new(batches),
                }
            }
            Location::Object(object) => {
                let builder = runtime.block_on(async {
                    let file = object.parquet_file(relative).await?;
                    ParquetRecordBatchStreamBuilder::new(file)
                        .await
                        .map_err(cannot_read.clone())
                })?;
                let metadata = builder.metadata().clone();
                let mut batches = project(builder, columns)
                    .build()
                    .map_err(cannot_read.clone())?;
                let runtime = runtime.clone();
                let batches = std::iter::from_fn(move || {
                    let batch = runtime.block_on(batches.next())?;
                    Some(batch.map_err(cannot_read.clone()))
                });
                ParquetBatches {
                    metadata,
                    batches: Box::new(batches),
                }
            }
        })
    }
}

/// A folder of a [`Location`] as `object_store` clients: `prefixed` has its root at the
/// folder, `root` at the root of the store (the bucket or container; `/` on disk), and
/// `url` names the folder in `root`'s terms.
#[derive(Debug, Clone)]
pub struct StoreView {
    pub prefixed: Arc<dyn object_store::ObjectStore>,
    pub root: Arc<dyn object_store::ObjectStore>,
    pub url: url::Url,
}

/// A Parquet file being read: its footer, and its record batches.
pub struct ParquetBatches {
    pub metadata: Arc<ParquetMetaData>,
    pub batches: Box<dyn Iterator<Item = Result<RecordBatch, StoreError>>>,
}

fn project<T>(builder: ArrowReaderBuilder<T>, columns: Option<&[&str]>) -> ArrowReaderBuilder<T> {
    match columns {
        Some(columns) => {
            let mask = ProjectionMask::columns(builder.parquet_schema(), columns.iter().copied());
            builder.with_projection(mask)
        }
        None => builder,
    }
}

/// A file being written by [`Location::writer`].
pub enum StoreWriter {
    Local { file: std::fs::File, path: PathBuf },
    Object(Box<ObjectWriter>),
}

impl StoreWriter {
    /// Makes the file durable (fsync, or the upload completed); returns its size.
    pub fn finish(self) -> Result<u64, StoreError> {
        match self {
            StoreWriter::Local { file, path } => local::finish(file, &path),
            StoreWriter::Object(object) => object.finish(),
        }
    }

    /// Where it is written, for messages.
    pub fn location(&self) -> String {
        match self {
            StoreWriter::Local { path, .. } => path.display().to_string(),
            StoreWriter::Object(object) => object.location().to_string(),
        }
    }
}

impl io::Write for StoreWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            StoreWriter::Local { file, .. } => file.write(buf),
            StoreWriter::Object(object) => object.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            StoreWriter::Local { file, .. } => file.flush(),
            StoreWriter::Object(object) => object.flush(),
        }
    }
}

impl From<PathBuf> for Location {
    fn from(path: PathBuf) -> Self {
        Location::Local(path)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(root) => write!(f, "{}", root.display()),
            Location::Object(object) => write!(f, "{object}"),
        }
    }
}

/// The `[output.options]` keys that the store of `location` would refuse; for validating
/// the config file before anything runs. Plain paths take no options.
pub fn check_options(location: &str, options: &BTreeMap<String, String>) -> Result<(), StoreError> {
    match Location::parse(location, options) {
        Err(error @ StoreError::UnknownOptions { .. }) => Err(error),
        Err(error @ StoreError::Location { .. }) if !location.contains("://") => Err(error),
        // Other problems (a missing account name, say) may be fixed by the environment of
        // the run or by --out; they are reported when the run builds its store.
        _ => Ok(()),
    }
}

/// A file of lines that only grows (see [`Location::line_log`]): appended to and synced on
/// disk; on an object store, which cannot append, the whole object is put again (the
/// callers' logs, such as quarantined records, hold few lines).
pub struct LineLog {
    relative: String,
    grown: Grown,
}

enum Grown {
    File(std::fs::File, PathBuf),
    Object(ObjectLocation, Vec<u8>),
}

impl LineLog {
    /// Appends `line` and a line end, durably.
    pub async fn append(&mut self, line: &[u8]) -> Result<(), StoreError> {
        match &mut self.grown {
            Grown::File(file, path) => {
                use std::io::Write;
                file.write_all(&[line, b"\n"].concat())
                    .and_then(|()| file.sync_data())
                    .map_err(local::io_error("append to", path))
            }
            Grown::Object(object, lines) => {
                lines.extend_from_slice(line);
                lines.push(b'\n');
                let bytes = Bytes::copy_from_slice(lines);
                object
                    .put(&self.relative, bytes, object_store::PutMode::Overwrite)
                    .await
                    .map(drop)
            }
        }
    }
}

#[cfg(test)]
mod tests;
