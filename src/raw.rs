//! The raw landing zone: what Graph returned, as JSON lines, one object per line,
//! `<raw>/<stream>/dt=YYYY-MM-DD/part-<run_id>-<n>.jsonl.zst`.
//!
//! A `call_records` line is one complete callRecord (all session pages merged into
//! `sessions`, all participant pages into `participants_v2`, unknown properties kept as
//! sent); a log-stream line is one row. Dial-out report rows carry the UTC day they
//! aggregate in the added properties [`REPORT_FROM`] and [`REPORT_TO`], the only thing a
//! row does not say itself.
//!
//! Files are written (streaming zstd, level `ZSTD_LEVEL`) into `<raw>/_staging/<run_id>/`
//! and handed to the sink as a [`StagedRun`], so they are published by the same
//! partition swap as the tables. Also reads raw files back ([`RawInput`]: `.jsonl`,
//! `.jsonl.zst`, `.jsonl.gz`, on disk or in an object store) for `reflatten` and for reusing
//! unchanged records.
//!
//! May touch: the raw zone under its root (writing), any raw file or object (reading), all
//! through [`crate::store`].

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde_json::Value;

use crate::commit;
use crate::sink::{self, SinkError, StagedRun, Staging, WrittenFile, write_error};
use crate::store::{Location, StoreError, StoreWriter};
use crate::streams::logs::LogStream;
use crate::window::Window;

/// Added to dial-out report rows: the start of the day the row aggregates (RFC 3339).
pub const REPORT_FROM: &str = "@callrecords_etl.reportFrom";
/// Added to dial-out report rows: the end of the day the row aggregates (RFC 3339).
pub const REPORT_TO: &str = "@callrecords_etl.reportTo";
/// Fast enough not to slow the export down, and JSON compresses ~10x at level 1 already.
const ZSTD_LEVEL: i32 = 2;
/// File name endings `reflatten` reads.
pub const EXTENSIONS: [&str; 3] = [".jsonl", ".jsonl.zst", ".jsonl.gz"];

struct RawFile {
    encoder: zstd::Encoder<'static, BufWriter<StoreWriter>>,
    /// The staged file, for messages.
    location: String,
    relative: String,
    rows: u64,
}

/// Writes one run's raw lines into staged files, one file per open `(stream, dt)`, on a
/// local folder or an object store (streamed uploads) like the tables.
pub struct RawSink {
    output: Location,
    run_id: String,
    staging: Staging,
    open: BTreeMap<(&'static str, NaiveDate), RawFile>,
}

impl RawSink {
    /// Prepares `<raw>/_staging/<run_id>/`. On an object store it must be called within a
    /// tokio runtime, whose handle the writer thread then uses for the uploads.
    pub fn create(output: &Location, run_id: &str) -> Result<Self, SinkError> {
        Ok(RawSink {
            output: output.clone(),
            run_id: run_id.to_string(),
            staging: Staging::create(output, run_id)?,
            open: BTreeMap::new(),
        })
    }

    /// Appends one JSON object (without its newline) to the partition `dt` of `stream`.
    pub fn write_line(
        &mut self,
        stream: &'static str,
        dt: NaiveDate,
        line: &[u8],
    ) -> Result<(), SinkError> {
        let file = match self.open.entry((stream, dt)) {
            std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::btree_map::Entry::Vacant(entry) => {
                let partition = format!("{stream}/{}", sink::partition_dir_name(dt));
                let name = format!("part-{}-00000.jsonl.zst", self.run_id);
                let (target, location) = self.staging.create_file(&partition, &name)?;
                let encoder = zstd::Encoder::new(BufWriter::new(target), ZSTD_LEVEL)
                    .map_err(write_error("start compressing", &location))?;
                entry.insert(RawFile {
                    encoder,
                    location,
                    relative: format!("{partition}/{name}"),
                    rows: 0,
                })
            }
        };
        file.encoder
            .write_all(line)
            .and_then(|()| file.encoder.write_all(b"\n"))
            .map_err(write_error("write", &file.location))?;
        file.rows += 1;
        Ok(())
    }

    /// Makes every file durable; nothing is visible until the returned run is published.
    pub fn finish(self) -> Result<StagedRun, SinkError> {
        let mut files = Vec::new();
        for ((stream, dt), file) in self.open {
            let location = file.location;
            let target = file
                .encoder
                .finish()
                .and_then(|writer| writer.into_inner().map_err(io::IntoInnerError::into_error))
                .map_err(write_error("finish", &location))?;
            let bytes = target.finish()?;
            files.push(WrittenFile {
                table: stream.to_string(),
                dt,
                path: file.relative,
                rows: file.rows,
                bytes,
            });
        }
        Ok(StagedRun::new(self.output, &self.run_id, files))
    }

    /// Removes the staged files of a run that will not be published.
    pub fn discard(mut self) {
        // Dropping an unfinished object writer aborts its upload.
        self.open.clear();
        self.staging.discard();
    }
}

/// The raw line of a log row: the row as sent, plus, for the dial-out report, the range
/// the row aggregates (the request's, which the row does not name).
pub fn log_line(log: &LogStream, row: &Value, chunk: Window) -> Vec<u8> {
    let line = match (log.time_field, row) {
        (None, Value::Object(object)) => {
            let mut object = object.clone();
            let at =
                |t: DateTime<Utc>| Value::String(t.to_rfc3339_opts(SecondsFormat::AutoSi, true));
            object.insert(REPORT_FROM.into(), at(chunk.from));
            object.insert(REPORT_TO.into(), at(chunk.to));
            serde_json::to_vec(&object)
        }
        _ => serde_json::to_vec(row),
    };
    line.expect("a JSON value serializes")
}

/// The range a raw dial-out report row aggregates, from [`REPORT_FROM`] and [`REPORT_TO`].
pub fn report_range(row: &Value) -> Result<Window, String> {
    let at = |key: &str| {
        let text = row
            .get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("the row has no {key}"))?;
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| format!("{key} `{text}` is not an RFC 3339 time: {e}"))
    };
    Ok(Window {
        from: at(REPORT_FROM)?,
        to: at(REPORT_TO)?,
    })
}

/// Whether the file or object `name` (a path; only its last part counts) is one `reflatten`
/// reads.
pub fn is_raw_file(name: &str) -> bool {
    let name = name.rsplit('/').next().unwrap_or(name);
    !name.starts_with('.') && EXTENSIONS.iter().any(|ext| name.ends_with(ext))
}

/// Every raw file under the local `dir` (recursively, in name order), skipping `_staging`
/// and other names that start with `_` or `.`; `dir` may be one file.
pub fn files_under(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    Ok(commit::local::live_files(dir, "")?
        .into_iter()
        .filter(|path| path.is_empty() || is_raw_file(path))
        .map(|path| match path.as_str() {
            "" => dir.to_path_buf(),
            _ => dir.join(path),
        })
        .collect())
}

/// One raw file to read: on local disk (where it can be mapped into memory), or in a
/// zone on an object store (read by a streamed GET).
#[derive(Debug, Clone)]
pub enum RawInput {
    Local(PathBuf),
    Stored {
        zone: Location,
        /// The file's path under the zone's root.
        relative: String,
        /// Reading blocks on this runtime: from threads outside its async tasks only.
        runtime: tokio::runtime::Handle,
    },
}

impl RawInput {
    /// Every raw file under `relative` in `zone` (recursively, in name order; a name
    /// starting with `_` or `.` is skipped, and on an object store a partition with a
    /// commit marker gives only the files it names: [`commit::live_files`]). The zone
    /// itself may be one file or object (`relative` empty).
    /// Must be called within a tokio runtime: objects are read through its handle.
    pub async fn list(zone: &Location, relative: &str) -> Result<Vec<RawInput>, StoreError> {
        let runtime = tokio::runtime::Handle::current();
        let files = commit::live_files(zone, relative).await?;
        // A URL naming one object: nothing lies under it as a folder.
        if files.is_empty()
            && relative.is_empty()
            && is_raw_file(&zone.to_string())
            && zone.exists("").await?
        {
            return Ok(vec![RawInput::at(zone, "", &runtime)]);
        }
        Ok(files
            .iter()
            // A local zone that is one file is read whatever its name.
            .filter(|path| path.is_empty() || is_raw_file(path))
            .map(|relative| RawInput::at(zone, relative, &runtime))
            .collect())
    }

    /// The file or object `relative` (slash-separated) under the root of `zone`.
    pub fn at(zone: &Location, relative: &str, runtime: &tokio::runtime::Handle) -> RawInput {
        match zone.local_path(relative) {
            Some(path) => RawInput::Local(path),
            None => RawInput::Stored {
                zone: zone.clone(),
                relative: relative.to_string(),
                runtime: runtime.clone(),
            },
        }
    }

    /// The lines of the file, decompressed by its name's ending.
    pub fn open_lines(&self) -> io::Result<Box<dyn BufRead + Send>> {
        match self {
            RawInput::Local(path) => lines_of(&path.to_string_lossy(), std::fs::File::open(path)?),
            RawInput::Stored {
                zone,
                relative,
                runtime,
            } => {
                let reader = zone.reader(relative, runtime).map_err(io::Error::other)?;
                lines_of(&self.to_string(), reader)
            }
        }
    }

    /// The file's local path when its lines are stored as they are (`.jsonl`, not
    /// compressed): such a file can be mapped into memory and parsed in place.
    pub fn plain_local_path(&self) -> Option<&Path> {
        match self {
            RawInput::Local(path) if path.to_string_lossy().ends_with(".jsonl") => Some(path),
            _ => None,
        }
    }

    /// How many lines the first `bytes` bytes (decompressed) of the file hold: turns a
    /// position into a line number for messages.
    pub fn count_lines(&self, bytes: u64) -> io::Result<u64> {
        let mut lines = 0u64;
        let mut reader = self.open_lines()?.take(bytes);
        loop {
            let buffer = reader.fill_buf()?;
            if buffer.is_empty() {
                return Ok(lines);
            }
            lines += memchr::memchr_iter(b'\n', buffer).count() as u64;
            let consumed = buffer.len();
            reader.consume(consumed);
        }
    }
}

impl std::fmt::Display for RawInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RawInput::Local(path) => write!(f, "{}", path.display()),
            RawInput::Stored { zone, relative, .. } if relative.is_empty() => write!(f, "{zone}"),
            RawInput::Stored { zone, relative, .. } => f.write_str(&zone.display_path(relative)),
        }
    }
}

/// The lines of `source`, decompressed by the ending of its `name`.
fn lines_of(name: &str, source: impl Read + Send + 'static) -> io::Result<Box<dyn BufRead + Send>> {
    const BUFFER: usize = 1 << 20;
    Ok(if name.ends_with(".zst") {
        Box::new(BufReader::with_capacity(
            BUFFER,
            zstd::Decoder::new(source)?,
        ))
    } else if name.ends_with(".gz") {
        Box::new(BufReader::with_capacity(
            BUFFER,
            flate2::read::MultiGzDecoder::new(BufReader::new(source)),
        ))
    } else {
        Box::new(BufReader::with_capacity(BUFFER, source))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn staged_lines_read_back_after_publishing() {
        let root = tempfile::tempdir().unwrap();
        let mut raw = RawSink::create(&Location::Local(root.path().to_path_buf()), "run1").unwrap();
        let dt = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        raw.write_line("pstn_calls", dt, br#"{"id":"a"}"#).unwrap();
        raw.write_line("pstn_calls", dt, br#"{"id":"b"}"#).unwrap();
        let staged = raw.finish().unwrap();
        let partitions = [("pstn_calls".to_string(), dt)].into_iter().collect();
        let (change, report) = staged.changes(&partitions);
        let journal = crate::commit::Journal {
            run_id: "run1".into(),
            direction: crate::commit::Direction::Forward,
            zones: vec![change],
            files: Vec::new(),
        };
        crate::commit::commit(staged.output(), journal, &[])
            .await
            .unwrap();
        assert_eq!(report.files[0].rows, 2);
        let files = files_under(root.path()).unwrap();
        assert_eq!(
            files,
            [root
                .path()
                .join("pstn_calls/dt=2026-11-20/part-run1-00000.jsonl.zst")]
        );
        let lines: Vec<String> = RawInput::Local(files[0].clone())
            .open_lines()
            .unwrap()
            .lines()
            .map(Result::unwrap)
            .collect();
        assert_eq!(lines, [r#"{"id":"a"}"#, r#"{"id":"b"}"#]);
        assert!(!root.path().join(crate::sink::STAGING_DIR).exists());
    }
}
