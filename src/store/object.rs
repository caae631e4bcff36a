//! A prefix in an object store (Amazon S3 and S3-compatible servers, Azure Blob Storage /
//! ADLS Gen2, Google Cloud Storage) reached through the `object_store` crate: building the
//! client from a URL and `[output.options]`, and the requests behind [`super::Location`]'s
//! operations: GET, conditional PUT, LIST, server-side copy, DELETE, streamed uploads
//! ([`ObjectWriter`]: multipart, never buffered whole) and downloads ([`ObjectReader`]), and
//! Parquet read by ranges ([`ObjectParquetFile`]).
//!
//! May touch: the object store under its prefix. Knows nothing of tables or runs.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::buffered::BufWriter;
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{
    ObjectMeta, ObjectStore, ObjectStoreExt, ObjectStoreScheme, PutMode, PutOptions, PutPayload,
    PutResult,
};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use tokio::io::AsyncWriteExt;
use url::Url;

use super::StoreError;

/// A prefix in an object store.
#[derive(Debug, Clone)]
pub struct ObjectLocation {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    /// The location as the user wrote it, for messages.
    url: String,
}

/// What a URL names: a local folder (`file://`) or a prefix in an object store.
pub(super) enum Parsed {
    Local(std::path::PathBuf),
    Object(ObjectLocation),
}

/// Parses the URL `location` and builds the store client. Makes no request.
pub(super) fn parse(
    location: &str,
    options: &BTreeMap<String, String>,
) -> Result<Parsed, StoreError> {
    let bad = |message: String| StoreError::Location {
        location: location.to_string(),
        message,
    };
    let url = Url::parse(location).map_err(|e| bad(e.to_string()))?;
    let (scheme, prefix) = ObjectStoreScheme::parse(&url).map_err(|e| bad(e.to_string()))?;
    let built = match scheme {
        ObjectStoreScheme::Local => {
            let path = url
                .to_file_path()
                .map_err(|()| bad("not a local path".into()))?;
            return Ok(Parsed::Local(path));
        }
        ObjectStoreScheme::AmazonS3 => configure(
            AmazonS3Builder::from_env().with_url(location),
            options,
            |b, k: AmazonS3ConfigKey, v| b.with_config(k, v),
            "Amazon S3",
            "aws_endpoint, aws_region, aws_allow_http",
        )?
        .build()
        .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
        ObjectStoreScheme::MicrosoftAzure => configure(
            MicrosoftAzureBuilder::from_env().with_url(location),
            options,
            |b, k: AzureConfigKey, v| b.with_config(k, v),
            "Azure Blob Storage",
            "azure_storage_account_name, azure_storage_use_emulator",
        )?
        .build()
        .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
        ObjectStoreScheme::GoogleCloudStorage => configure(
            GoogleCloudStorageBuilder::from_env().with_url(location),
            options,
            |b, k: GoogleConfigKey, v| b.with_config(k, v),
            "Google Cloud Storage",
            "google_service_account, google_application_credentials",
        )?
        .build()
        .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
        other => {
            return Err(bad(format!(
                "{other:?} is not a supported lake location; use s3://, az://, abfss://, gs://, file:// or a path"
            )));
        }
    };
    let store = built.map_err(|e| bad(e.to_string()))?;
    Ok(Parsed::Object(ObjectLocation {
        store,
        prefix,
        url: location.trim_end_matches('/').to_string(),
    }))
}

/// Applies `options` to a store builder, refusing every key the builder does not know
/// (a typo must not silently fall back to a default, as elsewhere in the config).
fn configure<B, K: std::str::FromStr>(
    builder: B,
    options: &BTreeMap<String, String>,
    with_config: impl Fn(B, K, String) -> B,
    store: &'static str,
    example: &'static str,
) -> Result<B, StoreError> {
    let mut unknown = Vec::new();
    let mut builder = builder;
    for (key, value) in options {
        match key.to_ascii_lowercase().parse::<K>() {
            Ok(key) => builder = with_config(builder, key, value.clone()),
            Err(_) => unknown.push(key.clone()),
        }
    }
    if unknown.is_empty() {
        Ok(builder)
    } else {
        Err(StoreError::UnknownOptions {
            store,
            example,
            keys: unknown,
        })
    }
}

impl fmt::Display for ObjectLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

impl ObjectLocation {
    /// The key of `relative` (slash-separated) under the prefix.
    pub fn key(&self, relative: &str) -> ObjectPath {
        self.prefix
            .parts()
            .chain(ObjectPath::from(relative).parts())
            .collect()
    }

    /// `key` relative to the prefix, slash-separated.
    pub fn relative(&self, key: &ObjectPath) -> String {
        key.prefix_match(&self.prefix)
            .map(|parts| parts.map(|p| p.as_ref().to_string()).collect::<Vec<_>>())
            .unwrap_or_default()
            .join("/")
    }

    fn error(
        &self,
        action: &'static str,
        relative: &str,
    ) -> impl FnOnce(object_store::Error) -> StoreError {
        let location = format!("{}/{relative}", self.url);
        move |source| StoreError::Object {
            action,
            location,
            source,
        }
    }

    pub async fn read(&self, relative: &str) -> Result<Option<Bytes>, StoreError> {
        match self.store.get(&self.key(relative)).await {
            Ok(result) => result
                .bytes()
                .await
                .map(Some)
                .map_err(self.error("read", relative)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(self.error("read", relative)(error)),
        }
    }

    /// The object and its version (for a later conditional update), or None.
    pub async fn read_versioned(
        &self,
        relative: &str,
    ) -> Result<Option<(Bytes, ObjectMeta)>, StoreError> {
        match self.store.get(&self.key(relative)).await {
            Ok(result) => {
                let meta = result.meta.clone();
                let bytes = result.bytes().await.map_err(self.error("read", relative))?;
                Ok(Some((bytes, meta)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(self.error("read", relative)(error)),
        }
    }

    /// One PUT: readers see the old object or the whole new one. `mode` makes it
    /// conditional (create only, or replace only an unchanged version); a failed
    /// condition is the store's `AlreadyExists` / `Precondition` error, kept as the source.
    pub async fn put(
        &self,
        relative: &str,
        bytes: Bytes,
        mode: PutMode,
    ) -> Result<PutResult, StoreError> {
        let options = PutOptions {
            mode,
            ..PutOptions::default()
        };
        self.store
            .put_opts(&self.key(relative), PutPayload::from(bytes), options)
            .await
            .map_err(self.error("write", relative))
    }

    /// Every object under `relative` (a folder, matched by whole path segments).
    pub async fn list(&self, relative: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        self.store
            .list(Some(&self.key(relative)))
            .try_collect()
            .await
            .map_err(self.error("list", relative))
    }

    /// The object names directly under `relative`.
    pub async fn list_names(&self, relative: &str) -> Result<Vec<String>, StoreError> {
        let listing = self
            .store
            .list_with_delimiter(Some(&self.key(relative)))
            .await
            .map_err(self.error("list", relative))?;
        Ok(listing
            .objects
            .iter()
            .filter_map(|meta| meta.location.filename().map(str::to_string))
            .collect())
    }

    /// The folder names directly under `relative`.
    pub async fn list_folders(&self, relative: &str) -> Result<Vec<String>, StoreError> {
        let listing = self
            .store
            .list_with_delimiter(Some(&self.key(relative)))
            .await
            .map_err(self.error("list", relative))?;
        Ok(listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }

    /// Server-side copy (no bytes pass through this machine), replacing `to`.
    pub async fn copy(&self, from: &str, to: &str) -> Result<(), StoreError> {
        self.store
            .copy(&self.key(from), &self.key(to))
            .await
            .map_err(self.error("copy into place", to))
    }

    pub async fn delete(&self, key: &ObjectPath) -> Result<(), StoreError> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(self.error("delete", &self.relative(key))(error)),
        }
    }

    /// Deletes every object under `relative`, a few at a time.
    pub async fn delete_all(&self, relative: &str) -> Result<(), StoreError> {
        let objects = self.list(relative).await?;
        futures::stream::iter(objects.into_iter().map(Ok))
            .try_for_each_concurrent(8, |meta| async move { self.delete(&meta.location).await })
            .await
    }

    /// A streaming reader of `relative` for synchronous code (a reader thread, a blocking
    /// task): the object's bytes are fetched as they are read, never held whole.
    pub fn reader(
        &self,
        relative: &str,
        runtime: tokio::runtime::Handle,
    ) -> Result<ObjectReader, StoreError> {
        let result = runtime
            .block_on(self.store.get(&self.key(relative)))
            .map_err(self.error("read", relative))?;
        Ok(ObjectReader {
            parts: result.into_stream(),
            part: Bytes::new(),
            runtime,
            location: format!("{}/{relative}", self.url),
        })
    }

    /// Whether the object `relative` exists (a HEAD request).
    pub async fn exists(&self, relative: &str) -> Result<bool, StoreError> {
        match self.store.head(&self.key(relative)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(error) => Err(self.error("read", relative)(error)),
        }
    }

    /// The Parquet file `relative`, for parquet's async reader (asks for its size once).
    pub async fn parquet_file(&self, relative: &str) -> Result<ObjectParquetFile, StoreError> {
        let key = self.key(relative);
        let meta = self
            .store
            .head(&key)
            .await
            .map_err(self.error("read", relative))?;
        Ok(ObjectParquetFile {
            store: self.store.clone(),
            key,
            size: meta.size,
        })
    }

    /// The folder `relative` as `object_store` clients (see [`super::StoreView`]).
    pub fn view(&self, relative: &str) -> Result<super::StoreView, url::ParseError> {
        let url = Url::parse(&format!("{}/{}/", self.url, relative.trim_matches('/')))?;
        Ok(super::StoreView {
            prefixed: Arc::new(object_store::prefix::PrefixStore::new(
                self.store.clone(),
                self.key(relative),
            )),
            root: self.store.clone(),
            url,
        })
    }

    /// A streaming writer of `relative` for synchronous code (a writer thread): the bytes
    /// go up in parts as they come (one PUT when the whole object fits in the first part),
    /// and the object appears only when [`ObjectWriter::finish`] completes the upload.
    pub fn writer(&self, relative: &str, runtime: tokio::runtime::Handle) -> ObjectWriter {
        ObjectWriter {
            writer: Some(BufWriter::new(self.store.clone(), self.key(relative))),
            runtime,
            location: format!("{}/{relative}", self.url),
            bytes: 0,
        }
    }
}

/// A Parquet file in the store, read by parquet's async reader: the footer and the column
/// chunks it needs come by ranged GETs, never the whole file. The footer is found from the
/// size (no suffix range, which Azure Blob Storage does not offer).
pub struct ObjectParquetFile {
    store: Arc<dyn ObjectStore>,
    key: ObjectPath,
    size: u64,
}

fn parquet_error(error: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(error))
}

impl AsyncFileReader for ObjectParquetFile {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.store
                .get_range(&self.key, range)
                .await
                .map_err(parquet_error)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        // The store merges nearby ranges into fewer requests.
        async move {
            self.store
                .get_ranges(&self.key, &ranges)
                .await
                .map_err(parquet_error)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_metadata_options(options.map(|o| o.metadata_options().clone()))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

/// A `std::io::Read` over a streamed GET; each call that needs more bytes blocks on the
/// runtime, so it must be used from a thread outside the runtime's async tasks.
pub struct ObjectReader {
    parts: BoxStream<'static, object_store::Result<Bytes>>,
    /// What is left of the part last received.
    part: Bytes,
    runtime: tokio::runtime::Handle,
    location: String,
}

impl std::io::Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.part.is_empty() {
            match self.runtime.block_on(self.parts.next()) {
                Some(Ok(part)) => self.part = part,
                Some(Err(error)) => {
                    return Err(std::io::Error::other(format!(
                        "cannot read {}: {error}",
                        self.location
                    )));
                }
                None => return Ok(0),
            }
        }
        let length = buf.len().min(self.part.len());
        buf[..length].copy_from_slice(&self.part[..length]);
        self.part.advance(length);
        Ok(length)
    }
}

/// A `std::io::Write` over a multipart upload; each call blocks on the runtime, so it must
/// be used from a thread outside the runtime (the Parquet writer thread).
pub struct ObjectWriter {
    writer: Option<BufWriter>,
    runtime: tokio::runtime::Handle,
    location: String,
    bytes: u64,
}

impl ObjectWriter {
    /// Completes the upload; the object is visible from now on. Returns its size.
    pub fn finish(mut self) -> Result<u64, StoreError> {
        let mut writer = self.writer.take().expect("finished once");
        self.runtime
            .block_on(writer.shutdown())
            .map_err(|e| StoreError::Object {
                action: "complete the upload of",
                location: self.location.clone(),
                source: object_store::Error::Generic {
                    store: "upload",
                    source: Box::new(e),
                },
            })?;
        Ok(self.bytes)
    }

    pub fn location(&self) -> &str {
        &self.location
    }
}

impl Drop for ObjectWriter {
    /// An upload that is not finished is aborted, so no parts are left behind to pay for.
    fn drop(&mut self) {
        if let Some(mut writer) = self.writer.take() {
            let _ = self.runtime.block_on(writer.abort());
        }
    }
}

impl std::io::Write for ObjectWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let writer = self.writer.as_mut().expect("not finished");
        self.runtime.block_on(writer.write_all(buf))?;
        self.bytes += buf.len() as u64;
        Ok(buf.len())
    }

    /// Parts go up as they fill; what is left goes up in `finish`.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
impl ObjectLocation {
    /// A store in memory under `prefix`, for tests of what reads and writes the lake.
    pub(crate) fn in_memory(prefix: &str) -> Self {
        ObjectLocation {
            store: Arc::new(object_store::memory::InMemory::new()),
            prefix: ObjectPath::from(prefix),
            url: format!("memory:///{prefix}"),
        }
    }

    /// Puts `bytes` at `relative`, for tests that lay out a lake.
    pub(crate) async fn put_bytes(&self, relative: &str, bytes: &[u8]) {
        self.put(relative, Bytes::copy_from_slice(bytes), PutMode::Overwrite)
            .await
            .unwrap();
    }
}
