//! The file reader stage: reads a changed file and cuts it into chunks,
//! sending each to the blob workers as soon as it is cut. Large files are
//! read by a helper thread into two alternating buffers while the cut
//! points are searched on every core; sparse files skip their holes.

use std::fs::{self, File};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use crate::handoff::{Receiver, Sender, bounded};

use super::blob_saver::BlobJob;
use super::holes::{Holes, Region};
use super::{Archiver, bump};
use crate::chunker::{MAX_SIZE, MIN_SIZE};
use crate::{Id, Result};

/// What reading a file gives: where each chunk's id will arrive (in file
/// order) and the size, or `None` when it could not be read (a warning, not
/// a failure).
pub(super) type FileContent = Option<(Vec<ChunkId>, u64)>;

/// One chunk of a file's content list.
pub(super) enum ChunkId {
    /// Known without hashing (a chunk of zeros from a hole).
    Known(Id),
    /// Arrives from the blob worker that hashes the chunk.
    Pending(Receiver<Id>),
}

impl ChunkId {
    pub(super) fn wait(self) -> Option<Id> {
        match self {
            ChunkId::Known(id) => Some(id),
            ChunkId::Pending(rx) => rx.recv().ok(),
        }
    }
}

/// A file the readers must read.
pub(super) struct FileJob {
    pub(super) path: PathBuf,
    /// The size the walker saw, to warn when reading finds another.
    pub(super) size: u64,
    pub(super) reply: Sender<Result<FileContent>>,
}

/// Bytes read from a file per system call.
const READ_SIZE: usize = 1 << 20;

/// Files with at least this many bytes allocated are chunked on every core
/// when the large-file buffers are free: below it, several files in flight
/// already keep the cores busy.
const LARGE_FILE: u64 = 32 << 20;

/// Fresh bytes per large-file buffer: one region of the parallel search's
/// minimum per core, capped so memory stays bounded on machines with many
/// cores. Each buffer also has room for the unfinished chunk in front.
pub(super) fn large_read_size(cpus: usize) -> usize {
    cpus.clamp(2, 4) * MAX_SIZE
}

impl Archiver<'_> {
    /// Reads and chunks one file, queueing every chunk for the blob
    /// workers, which hash it and store it if new. `Ok(None)` when the file
    /// could not be read (a warning, not a failure).
    ///
    /// The chunks go out as they are cut, so hashing, compression,
    /// encryption and upload of a file's early chunks run while later ones
    /// are read. A large file that gets the shared large-file buffers goes
    /// through [`Archiver::read_large`]; other files are read through the
    /// reader's own buffer, skipping holes.
    pub(super) fn read_file(
        &self,
        path: &Path,
        buf: &mut Vec<u8>,
        blobs: &Sender<BlobJob>,
    ) -> Result<FileContent> {
        if self.failed.load(Ordering::Relaxed) {
            return Err(self.stopped());
        }
        let open = |noatime: bool| {
            let mut o = fs::OpenOptions::new();
            o.read(true);
            if noatime {
                o.custom_flags(libc::O_NOATIME);
            }
            o.open(path)
        };
        let file: File = match open(true).or_else(|_| open(false)) {
            Ok(f) => f,
            Err(e) => {
                self.warn(format!("skipped {}: {e}", path.display()));
                return Ok(None);
            }
        };
        let meta = file.metadata().ok();
        let len = meta.as_ref().and_then(|m| content_size(path, m).ok());
        // Only regular files with fewer blocks than bytes have holes worth
        // looking for; the others (block devices too) are read without the
        // extra seeks, their zeros found in what is read.
        let sparse = meta
            .as_ref()
            .is_some_and(|m| m.is_file() && m.blocks().saturating_mul(512) < m.len());
        if !sparse
            && len.is_some_and(|len| len >= LARGE_FILE)
            && let Ok(mut buffers) = self.large_buffers.try_lock()
        {
            return self.read_large(path, &file, &mut buffers, blobs);
        }
        let mut holes = len.filter(|_| sparse).map(|len| Holes::new(&file, len));
        let mut chunker = self.chunker.clone();
        chunker.reset();
        let mut content = Vec::new();
        let mut size = 0u64;
        let mut pos = 0u64;
        // buf[..filled] holds the unfinished chunk, already consumed by the
        // chunker; every read appends to it.
        let mut filled = 0usize;
        loop {
            if self.failed.load(Ordering::Relaxed) {
                return Err(self.stopped());
            }
            // The buffer grows to what the longest unfinished chunk needs
            // (at most MAX_SIZE + READ_SIZE), so small files keep it small.
            let room = READ_SIZE;
            if buf.len() < filled + room {
                buf.resize(filled + room, 0);
            }
            let n = match holes.as_mut().map_or(Region::Data(u64::MAX), |h| h.at(pos)) {
                Region::Hole(end) => {
                    let hole = end - pos;
                    if filled == 0 && hole >= MIN_SIZE as u64 {
                        // A chunk starting in a run of zeros ends exactly
                        // MIN_SIZE later, whatever the polynomial: restic
                        // stores the run as identical zero chunks.
                        let whole = hole / MIN_SIZE as u64;
                        for _ in 0..whole {
                            content.push(self.zero_chunk(blobs)?);
                        }
                        size += whole * MIN_SIZE as u64;
                        pos += whole * MIN_SIZE as u64;
                        continue;
                    }
                    // Just enough zeros for the chunk in progress to end
                    // in the hole, so the next one starts at a cut.
                    let want = MIN_SIZE.saturating_sub(filled).max(64);
                    let n = (want as u64).min(hole).min(room as u64) as usize;
                    buf[filled..filled + n].fill(0);
                    n
                }
                Region::Data(end) => {
                    let n = (room as u64).min(end - pos) as usize;
                    match read_full_at(&file, &mut buf[filled..filled + n], pos) {
                        Ok(n) => n,
                        Err(e) => {
                            self.warn(format!("skipped {}: read failed: {e}", path.display()));
                            return Ok(None);
                        }
                    }
                }
            };
            if n == 0 {
                break;
            }
            pos += n as u64;
            let cuts = chunker.parallel_next_boundaries(&buf[filled..filled + n], 1);
            let mut start = 0;
            for cut in cuts {
                let end = filled + cut;
                content.push(self.queue_chunk(&buf[start..end], blobs)?);
                size += (end - start) as u64;
                start = end;
            }
            filled += n;
            buf.copy_within(start..filled, 0);
            filled -= start;
        }
        if filled > 0 {
            content.push(self.queue_chunk(&buf[..filled], blobs)?);
            size += filled as u64;
        }
        bump(&self.progress.files_done, 1);
        Ok(Some((content, size)))
    }

    /// Reads a large file on a helper thread while this one searches the
    /// cut points of what was read before on every core
    /// ([`Chunker::parallel_next_boundaries`], identical to the sequential
    /// cuts) and queues the chunks. The two buffers take turns; each keeps
    /// `MAX_SIZE` bytes in front of its fresh data, where the previous
    /// buffer's unfinished chunk is copied so that chunks stay contiguous.
    fn read_large(
        &self,
        path: &Path,
        file: &File,
        buffers: &mut [Vec<u8>; 2],
        blobs: &Sender<BlobJob>,
    ) -> Result<FileContent> {
        let total = MAX_SIZE + self.large_read_size;
        for b in buffers.iter_mut() {
            b.resize(total, 0);
        }
        let [first, second] = buffers;
        std::thread::scope(|s| {
            // Both channels live in this closure: returning early drops
            // them, which stops the helper.
            let (free_tx, free_rx) = bounded::<&mut Vec<u8>>(2);
            let (full_tx, full_rx) = bounded::<std::io::Result<(&mut Vec<u8>, usize)>>(2);
            let _ = free_tx.send(first);
            let _ = free_tx.send(second);
            s.spawn(move || {
                let mut pos = 0u64;
                for buf in free_rx {
                    let read = read_full_at(file, &mut buf[MAX_SIZE..], pos);
                    let more = matches!(read, Ok(n) if n > 0);
                    if let Ok(n) = read {
                        pos += n as u64;
                    }
                    if full_tx.send(read.map(|n| (buf, n))).is_err() || !more {
                        break;
                    }
                }
            });
            let mut chunker = self.chunker.clone();
            chunker.reset();
            let mut content = Vec::new();
            let mut size = 0u64;
            // The buffer read last and its unfinished chunk: buf[from..to].
            let mut last: Option<(&mut Vec<u8>, usize, usize)> = None;
            for read in full_rx {
                if self.failed.load(Ordering::Relaxed) {
                    return Err(self.stopped());
                }
                let (buf, n) = match read {
                    Ok(got) => got,
                    Err(e) => {
                        self.warn(format!("skipped {}: read failed: {e}", path.display()));
                        return Ok(None);
                    }
                };
                if n == 0 {
                    break;
                }
                let mut from = MAX_SIZE;
                if let Some((prev, prev_from, prev_to)) = last.take() {
                    from -= prev_to - prev_from;
                    buf[from..MAX_SIZE].copy_from_slice(&prev[prev_from..prev_to]);
                    let _ = free_tx.send(prev);
                }
                let cuts =
                    chunker.parallel_next_boundaries(&buf[MAX_SIZE..MAX_SIZE + n], self.cpus);
                for cut in cuts {
                    let end = MAX_SIZE + cut;
                    content.push(self.queue_chunk(&buf[from..end], blobs)?);
                    size += (end - from) as u64;
                    from = end;
                }
                last = Some((buf, from, MAX_SIZE + n));
            }
            if let Some((buf, from, to)) = last
                && to > from
            {
                content.push(self.queue_chunk(&buf[from..to], blobs)?);
                size += (to - from) as u64;
            }
            bump(&self.progress.files_done, 1);
            Ok(Some((content, size)))
        })
    }

    /// A whole chunk of zeros (from a hole, or read): its id is known
    /// without hashing, and only the first one of a backup goes to the
    /// workers (which store it unless the repository has it).
    fn zero_chunk(&self, blobs: &Sender<BlobJob>) -> Result<ChunkId> {
        let id = *self
            .zero_chunk_id
            .get_or_init(|| Id::hash(&vec![0u8; MIN_SIZE]));
        if self.reused.rely_on(self.repo, &id) || self.known.lock().expect("known").contains(&id) {
            bump(&self.progress.bytes_done, MIN_SIZE as u64);
            return Ok(ChunkId::Known(id));
        }
        self.send_chunk(&vec![0u8; MIN_SIZE], blobs)
    }

    /// Hands one chunk to the blob workers. A run of zeros is cut into
    /// chunks of exactly `MIN_SIZE` (see [`Archiver::read_file`]), so only
    /// chunks of that length are checked for zeros, which costs a scan that
    /// stops at the first non-zero byte, never a hash.
    fn queue_chunk(&self, chunk: &[u8], blobs: &Sender<BlobJob>) -> Result<ChunkId> {
        if chunk.len() == MIN_SIZE && is_zero(chunk) {
            return self.zero_chunk(blobs);
        }
        self.send_chunk(chunk, blobs)
    }

    /// Queues one chunk for hashing; its id arrives on the receiver.
    fn send_chunk(&self, chunk: &[u8], blobs: &Sender<BlobJob>) -> Result<ChunkId> {
        let (tx, rx) = bounded(1);
        blobs
            .send(BlobJob::Data {
                data: chunk.to_vec(),
                reply: tx,
            })
            .map_err(|_| self.stopped())?;
        Ok(ChunkId::Pending(rx))
    }
}

/// Whether every byte is zero; in blocks the compiler vectorizes, so it
/// runs at memory speed.
fn is_zero(data: &[u8]) -> bool {
    let mut blocks = data.chunks_exact(64);
    blocks
        .by_ref()
        .all(|b| b.iter().fold(0, |acc, &x| acc | x) == 0)
        && blocks.remainder().iter().all(|&x| x == 0)
}

/// The bytes a file or block device holds: a device's metadata says 0, its
/// end says how large it is.
pub(super) fn content_size(path: &Path, meta: &fs::Metadata) -> std::io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    use std::os::unix::fs::FileTypeExt;
    if meta.file_type().is_block_device() {
        File::open(path)?.seek(SeekFrom::End(0))
    } else {
        Ok(meta.len())
    }
}

/// Reads into all of `buf` from `offset` on, short only at the end of
/// the file.
fn read_full_at(f: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
