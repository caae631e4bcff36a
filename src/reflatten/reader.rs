//! The reader thread of `reflatten`: finds the raw files of each stream and cuts them into
//! chunks of whole lines for the workers (plain local files mapped into memory, the others
//! read into pooled buffers).
//!
//! May touch: raw files and objects (reading). Knows nothing of JSON or of the tables.

use std::collections::BTreeMap;
use std::io::Read;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};

use anyhow::Context;

use crate::raw::RawInput;
use crate::store::Location;
use crate::streams::StreamKind;

/// Lines are handed to a few workers in chunks of about this many bytes.
const CHUNK_BYTES: usize = 4 << 20;

/// The smallest chunks, for many workers: still thousands of lines of most records.
const MIN_CHUNK_BYTES: usize = 1 << 20;

/// The chunk size for `workers` workers: every worker holds the chunk it parses (and
/// twice as many wait), so with many workers chunks get smaller, down to
/// [`MIN_CHUNK_BYTES`], and the chunks in memory stay about the same.
pub fn chunk_bytes(workers: usize) -> usize {
    (2 * CHUNK_BYTES / workers.max(1)).clamp(MIN_CHUNK_BYTES, CHUNK_BYTES)
}

/// Lines of one raw file, for a worker.
pub(super) struct Chunk {
    pub stream: StreamKind,
    file: Arc<RawInput>,
    /// Where the chunk starts in its (decompressed) file. Line numbers are counted from
    /// here only for a message: counting every chunk's lines would cost the reader time.
    offset: u64,
    pub bytes: ChunkBytes,
}

/// Where a chunk's lines are.
pub(super) enum ChunkBytes {
    /// Read into a buffer of the pool (a compressed file, decompressed).
    Read(Vec<u8>),
    /// A range of a plain file mapped into memory: parsed in place, never copied.
    Mapped(MappedRange),
}

impl ChunkBytes {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            ChunkBytes::Read(buffer) => buffer,
            ChunkBytes::Mapped(mapped) => &mapped.map[mapped.range.clone()],
        }
    }
}

/// Lines of a mapped file. When the chunk is done with, its pages leave the process's
/// memory (they stay in the page cache): mapped pages count as the process's own while
/// they are mapped, and a whole file's would make memory grow with the input.
pub(super) struct MappedRange {
    map: Arc<memmap2::Mmap>,
    range: Range<usize>,
}

impl Drop for MappedRange {
    fn drop(&mut self) {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        // Only the pages that lie wholly within this chunk: those at its ends may hold the
        // neighbouring chunks' lines, which other workers may still be reading.
        let start = self.range.start.next_multiple_of(page);
        let end = self.range.end / page * page;
        if start < end {
            // SAFETY: the map is shared and read-only, so dropped pages read back from the
            // file unchanged, and nothing borrows these pages: they hold only this
            // chunk's lines, whose last reader is going away.
            let _ = unsafe {
                self.map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    start,
                    end - start,
                )
            };
        }
    }
}

impl Chunk {
    /// `path line N` for the line that starts `within` bytes into the chunk.
    pub fn line_at(&self, within: usize) -> String {
        let before_chunk = self.file.count_lines(self.offset);
        let line = before_chunk.map(|lines| {
            let before = &self.bytes.as_slice()[..within];
            lines + memchr::memchr_iter(b'\n', before).count() as u64 + 1
        });
        match line {
            Ok(line) => format!("{} line {line}", self.file),
            Err(_) => format!("{} at byte {}", self.file, self.offset + within as u64),
        }
    }
}

/// The raw files of each stream: `<raw>/<stream>/…` holds that stream's files; a folder
/// without stream folders (or a single file) holds call records.
pub(super) async fn find_inputs(
    raw: &Location,
    wanted: Option<&[StreamKind]>,
) -> anyhow::Result<BTreeMap<StreamKind, Vec<RawInput>>> {
    let list = |relative: &'static str| async move {
        RawInput::list(raw, relative)
            .await
            .context("cannot read the raw zone")
    };
    let folders = raw
        .list_folders("")
        .await
        .context("cannot read the raw zone")?;
    let zone: Vec<StreamKind> = StreamKind::ALL
        .into_iter()
        .filter(|stream| folders.iter().any(|folder| folder == stream.name()))
        .collect();
    let mut inputs = BTreeMap::new();
    if zone.is_empty() {
        let files = list("").await?;
        if !files.is_empty() {
            inputs.insert(StreamKind::CallRecords, files);
        }
    }
    for stream in zone {
        if wanted.is_none_or(|wanted| wanted.contains(&stream)) {
            let files = list(stream.name()).await?;
            if !files.is_empty() {
                inputs.insert(stream, files);
            }
        }
    }
    Ok(inputs)
}

/// The reader thread: every file's lines, in chunks of whole lines, to the workers. Plain
/// files go in place ([`send_mapped`]); the buffers of decompressed chunks come back from
/// the workers through `spent`, so reading allocates (and the kernel zeroes) no new memory
/// once a few are in circulation. Returns the files and JSON bytes read.
pub(super) fn read_chunks(
    files: &[(StreamKind, RawInput)],
    chunk_bytes: usize,
    chunks: SyncSender<Chunk>,
    spent: Receiver<Vec<u8>>,
    failed: &AtomicBool,
) -> anyhow::Result<(u64, u64)> {
    let mut bytes_read = 0u64;
    for (stream, input) in files {
        let file = Arc::new(input.clone());
        if let Some(path) = input.plain_local_path() {
            let sent = send_mapped(*stream, path, &file, chunk_bytes, &chunks, failed)?;
            match sent {
                Some(bytes) => bytes_read += bytes,
                None => return Ok((0, 0)),
            }
            continue;
        }
        let mut source = input
            .open_lines()
            .with_context(|| format!("cannot open {input}"))?;
        // The start of a line that the previous chunk's end cut off.
        let mut carry = Vec::new();
        let mut offset = 0u64;
        loop {
            let mut bytes = spent
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(chunk_bytes));
            bytes.clear();
            bytes.append(&mut carry);
            let complete = !fill_chunk(&mut source, &mut bytes, &mut carry, chunk_bytes)
                .with_context(|| format!("cannot read {input} after byte {offset}"))?;
            if bytes.is_empty() {
                break;
            }
            let length = bytes.len() as u64;
            bytes_read += length;
            let chunk = Chunk {
                stream: *stream,
                file: file.clone(),
                offset,
                bytes: ChunkBytes::Read(bytes),
            };
            offset += length;
            // A worker that failed hung up or set `failed`; it reports why.
            if failed.load(Ordering::Relaxed) || chunks.send(chunk).is_err() {
                return Ok((0, 0));
            }
            if complete {
                break;
            }
        }
    }
    Ok((files.len() as u64, bytes_read))
}

/// Reads whole lines from `source` onto `bytes` (which holds the start of a line that the
/// previous chunk's end cut off) until it holds about `size` bytes, and moves the start of
/// a line that the end cuts off into `carry`. A line longer than `size` makes the chunk
/// longer: each further read is `size` bytes again and only it is searched for a line end,
/// so a huge line costs time in proportion to its length. Returns false at the end of
/// `source`, with every byte left in `bytes`.
fn fill_chunk(
    source: &mut impl Read,
    bytes: &mut Vec<u8>,
    carry: &mut Vec<u8>,
    size: usize,
) -> std::io::Result<bool> {
    // The carried start of a line holds no line end.
    let mut searched = bytes.len();
    let mut target = size.max(bytes.len() + 1);
    loop {
        let wanted = (target - bytes.len()) as u64;
        let read = (&mut *source).take(wanted).read_to_end(bytes)?;
        if (read as u64) < wanted {
            return Ok(false);
        }
        if let Some(end) = memchr::memrchr(b'\n', &bytes[searched..]) {
            let end = searched + end + 1;
            carry.extend_from_slice(&bytes[end..]);
            bytes.truncate(end);
            return Ok(true);
        }
        searched = bytes.len();
        target = bytes.len() + size;
    }
}

/// Hands the lines of the plain file `path` to the workers in place: the file is mapped
/// into memory and cut into chunks of whole lines. Returns the bytes sent, or None when a
/// worker stopped (it reports why).
fn send_mapped(
    stream: StreamKind,
    path: &Path,
    input: &Arc<RawInput>,
    chunk_bytes: usize,
    chunks: &SyncSender<Chunk>,
    failed: &AtomicBool,
) -> anyhow::Result<Option<u64>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let length = file
        .metadata()
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if length == 0 {
        // Nothing to map (and an empty mapping is refused on some systems).
        return Ok(Some(0));
    }
    // SAFETY: raw files are written once, published by rename and never changed after;
    // a file cut short while it is read would stop the process (SIGBUS), never feed it
    // other bytes. The map lives as long as the last chunk that points into it.
    let map = unsafe { memmap2::Mmap::map(&file) }
        .with_context(|| format!("cannot read {}", path.display()))?;
    // Read front to back once: the kernel may read ahead and drop pages behind.
    let _ = map.advise(memmap2::Advice::Sequential);
    let map = Arc::new(map);
    let mut start = 0;
    while start < map.len() {
        let wanted = (start + chunk_bytes).min(map.len());
        // Whole lines only: the chunk ends after the first line end from `wanted` on.
        let end = memchr::memchr(b'\n', &map[wanted..]).map_or(map.len(), |at| wanted + at + 1);
        let chunk = Chunk {
            stream,
            file: input.clone(),
            offset: start as u64,
            bytes: ChunkBytes::Mapped(MappedRange {
                map: map.clone(),
                range: start..end,
            }),
        };
        if failed.load(Ordering::Relaxed) || chunks.send(chunk).is_err() {
            return Ok(None);
        }
        start = end;
    }
    Ok(Some(map.len() as u64))
}

/// The lines of `bytes`, as `bytes.split(|b| *b == b'\n')` gives them but split with the
/// SIMD `memchr`, which `split` does not use (public for `cargo bench --bench stages`).
pub fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    memchr::memchr_iter(b'\n', bytes)
        .chain(std::iter::once(bytes.len()))
        .map(move |end| {
            let line = &bytes[start..end];
            start = end + 1;
            line
        })
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::sync_channel;

    use super::*;

    /// The chunks `send_mapped` makes of a file holding `content`.
    fn mapped_chunks(content: &[u8]) -> Vec<Vec<u8>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lines.jsonl");
        std::fs::write(&path, content).unwrap();
        let (sender, receiver) = sync_channel(64);
        let sent = send_mapped(
            StreamKind::CallRecords,
            &path,
            &Arc::new(RawInput::Local(path.clone())),
            CHUNK_BYTES,
            &sender,
            &AtomicBool::new(false),
        );
        assert_eq!(sent.unwrap(), Some(content.len() as u64));
        drop(sender);
        receiver
            .iter()
            .map(|chunk| {
                let bytes = chunk.bytes.as_slice().to_vec();
                let offset = usize::try_from(chunk.offset).unwrap();
                assert_eq!(&content[offset..offset + bytes.len()], bytes.as_slice());
                bytes
            })
            .collect()
    }

    #[test]
    fn more_workers_get_smaller_chunks_down_to_a_floor() {
        assert_eq!(chunk_bytes(1), CHUNK_BYTES);
        assert_eq!(chunk_bytes(2), CHUNK_BYTES);
        assert_eq!(chunk_bytes(4), CHUNK_BYTES / 2);
        assert_eq!(chunk_bytes(64), MIN_CHUNK_BYTES);
    }

    #[test]
    fn mapped_files_are_cut_into_chunks_of_whole_lines() {
        let line = |n: usize| format!("{{\"n\":{n},\"pad\":\"{}\"}}\n", "x".repeat(n % 997));
        let mut content: Vec<u8> = (0..30_000).flat_map(|n| line(n).into_bytes()).collect();
        assert!(content.len() > 2 * CHUNK_BYTES);
        let chunks = mapped_chunks(&content);
        assert!(chunks.len() >= 3);
        assert!(chunks.iter().all(|c| c.ends_with(b"\n")));
        assert_eq!(chunks.concat(), content);
        // No line end at the very end: the last chunk ends with the last line all the same.
        content.extend_from_slice(b"{\"last\":true}");
        assert_eq!(mapped_chunks(&content).concat(), content);
        assert!(mapped_chunks(b"").is_empty());
    }

    /// A source that returns at most `step` bytes per read, as a pipe or a decoder may,
    /// and counts the reads asked of it.
    struct Trickle<'a> {
        rest: &'a [u8],
        step: usize,
        reads: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
            self.reads += 1;
            let n = buffer.len().min(self.step).min(self.rest.len());
            buffer[..n].copy_from_slice(&self.rest[..n]);
            self.rest = &self.rest[n..];
            Ok(n)
        }
    }

    /// The chunks `fill_chunk` cuts `content` into, read `step` bytes at a time.
    fn filled_chunks(content: &[u8], size: usize, step: usize) -> Vec<Vec<u8>> {
        let mut source = Trickle {
            rest: content,
            step,
            reads: 0,
        };
        let (mut chunks, mut carry) = (Vec::new(), Vec::new());
        loop {
            let mut bytes = std::mem::take(&mut carry);
            let more = fill_chunk(&mut source, &mut bytes, &mut carry, size).unwrap();
            if !bytes.is_empty() {
                chunks.push(bytes);
            }
            if !more {
                assert!(carry.is_empty());
                // Lines longer than a chunk are read `size` bytes at a time, not byte by
                // byte: a few reads per chunk's worth of bytes (and a few probes at ends).
                let chunk_reads = content.len().div_ceil(size.min(step)) + chunks.len() + 4;
                assert!(source.reads <= 4 * chunk_reads, "{} reads", source.reads);
                return chunks;
            }
        }
    }

    #[test]
    fn read_files_are_cut_into_chunks_of_whole_lines_also_around_huge_lines() {
        let huge = |n: usize| format!("{{\"huge\":\"{}\"}}\n", "é".repeat(n));
        let mut content = Vec::new();
        for n in 0..200 {
            let line = match n % 50 {
                7 => huge(5_000),
                8 => huge(700),
                _ => format!("{{\"n\":{n}}}\n"),
            };
            content.extend_from_slice(line.as_bytes());
        }
        for (size, step) in [
            (64, 1 << 20),
            (64, 3),
            (1, 1),
            (10_000, 17),
            (1 << 20, 1 << 20),
        ] {
            let chunks = filled_chunks(&content, size, step);
            assert_eq!(chunks.concat(), content, "size {size}, step {step}");
            assert!(chunks.iter().all(|c| c.ends_with(b"\n")), "size {size}");
            // About `size` bytes each: the next chunk's first line would not have fitted,
            // and a chunk holds more only when its first line alone is longer.
            let first_line = |chunk: &[u8]| memchr::memchr(b'\n', chunk).unwrap() + 1;
            for pair in chunks.windows(2) {
                assert!(pair[0].len() + first_line(&pair[1]) > size, "size {size}");
                if pair[0].len() > size {
                    assert!(pair[0].len() - first_line(&pair[0]) <= size, "size {size}");
                }
            }
        }
        // No line end at the very end: the last chunk ends with the last line all the same.
        content.extend_from_slice(&huge(3_000).as_bytes()[..6_000]);
        let chunks = filled_chunks(&content, 64, 5);
        assert_eq!(chunks.concat(), content);
        assert!(filled_chunks(b"", 64, 5).is_empty());
        assert_eq!(filled_chunks(b"\n", 64, 5), vec![b"\n".to_vec()]);
    }

    #[test]
    fn lines_split_like_str_split() {
        for text in ["", "a", "a\n", "a\nb", "\n\n{\"x\":\"é\"}\r\n", "é\nü\n\n"] {
            let text = text.as_bytes();
            assert_eq!(
                lines(text).collect::<Vec<_>>(),
                text.split(|&b| b == b'\n').collect::<Vec<_>>(),
                "{text:?}"
            );
        }
    }
}
