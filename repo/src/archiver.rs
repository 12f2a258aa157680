//! Backup: walk a directory tree, read and chunk what changed, store new
//! blobs, then the trees and the snapshot.
//!
//! The pipeline's stages are threads joined by bounded channels, so memory
//! is set by queue sizes, never by file or volume size:
//!
//! ```text
//! walker ──files──▶ file readers ──chunks──▶ blob workers ──▶ PackSink ──▶ uploaders
//!    │              (read, chunk)      (hash, compress, encrypt)
//!    └──dirs (post-order)──▶ tree saver ──tree blobs──┘
//! ```
//!
//! Readers cut chunks and pass them on at once; each chunk's id comes back
//! from the worker that hashed it, and the tree saver collects a file's ids
//! in order. Hashing on the workers keeps the reader, the one stage that
//! cannot split a file, doing only reads and cut-point search; a large file
//! additionally gets its cut points searched on every core. Each reader
//! reuses one buffer for every file it reads.
//!
//! The walker visits directories in name order and compares each file with
//! the same path in the parent snapshot: a file whose size, mtime, ctime and
//! inode are unchanged keeps its content list and is not read again. Each
//! directory goes to the tree saver once all its entries are queued; the
//! tree saver waits for their results in order, so trees are written after
//! their contents. Write order is restic's: packs, then index, then snapshot.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use crossbeam_channel::{Receiver, Sender, bounded};

use crate::chunker::{Chunker, MAX_SIZE, MIN_SIZE};
use crate::exclude::Excludes;
use crate::id::IdSet;
use crate::pack::BlobType;
use crate::packer::PackSink;
use crate::snapshot::{Snapshot, Summary};
use crate::tree::{Node, NodeType, Tree, mode};
use crate::{Error, Id, Repository, Result};

/// Which snapshot a backup compares against to skip unchanged files.
#[derive(Clone, Debug, Default)]
pub enum ParentChoice {
    /// The newest snapshot with the same host and paths.
    #[default]
    Auto,
    /// Read every file.
    None,
    /// This snapshot.
    Id(Id),
}

/// What to back up and how.
#[derive(Clone, Debug)]
pub struct BackupOptions {
    /// Paths as given on the command line; `.` stores the current
    /// directory's contents at the snapshot root.
    pub targets: Vec<PathBuf>,
    pub hostname: String,
    pub tags: Vec<String>,
    pub excludes: Vec<String>,
    /// The snapshot's time instead of now (restic's `--time`).
    pub time: Option<jiff::Timestamp>,
    pub parent: ParentChoice,
    /// Files read at once.
    pub readers: usize,
    /// Threads compressing and encrypting blobs.
    pub workers: usize,
    /// Packs uploaded at once.
    pub uploaders: usize,
}

impl BackupOptions {
    /// Defaults sized to the machine for `targets`.
    pub fn new(targets: Vec<PathBuf>) -> BackupOptions {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        BackupOptions {
            targets,
            hostname: crate::host::hostname(),
            tags: Vec::new(),
            excludes: Vec::new(),
            time: None,
            parent: ParentChoice::Auto,
            readers: 2.max(cpus / 2),
            workers: cpus,
            uploaders: 2,
        }
    }
}

/// Live counters, read by progress displays while a backup runs.
#[derive(Default, Debug)]
pub struct Progress {
    pub files_done: AtomicU64,
    pub bytes_done: AtomicU64,
    pub bytes_added: AtomicU64,
    /// Files and bytes seen by the walker so far (the ETA's estimate).
    pub files_seen: AtomicU64,
    pub bytes_seen: AtomicU64,
    /// Set once the walker has seen everything.
    pub walk_done: AtomicBool,
}

/// What a finished backup produced.
#[derive(Debug)]
pub struct BackupResult {
    pub id: Id,
    pub snapshot: Snapshot,
    pub parent: Option<Id>,
    /// Files that could not be read and were left out (the snapshot is
    /// still valid, as with restic's exit code 3).
    pub warnings: Vec<String>,
}

/// What reading a file gives: where each chunk's id will arrive (in file
/// order) and the size, or `None` when it could not be read (a warning, not
/// a failure).
type FileContent = Option<(Vec<ChunkId>, u64)>;

/// One chunk of a file's content list.
enum ChunkId {
    /// Known without hashing (a chunk of zeros from a hole).
    Known(Id),
    /// Arrives from the blob worker that hashes the chunk.
    Pending(Receiver<Id>),
}

impl ChunkId {
    fn wait(self) -> Option<Id> {
        match self {
            ChunkId::Known(id) => Some(id),
            ChunkId::Pending(rx) => rx.recv().ok(),
        }
    }
}

/// A file the readers must read.
struct FileJob {
    path: PathBuf,
    reply: Sender<Result<FileContent>>,
}

enum Pending {
    Ready(Node),
    File(Node, Receiver<Result<FileContent>>),
    Dir(Node, Receiver<Result<Id>>),
}

/// A directory whose entries are all queued.
struct DirJob {
    entries: Vec<Pending>,
    parent_subtree: Option<Id>,
    reply: Sender<Result<Id>>,
}

/// Work for the blob workers.
enum BlobJob {
    /// A file chunk: hash it, reply with its id, store it if new.
    Data { data: Vec<u8>, reply: Sender<Id> },
    /// A tree the tree saver found new.
    Tree { id: Id, data: Vec<u8> },
}

#[derive(Default)]
struct Counters {
    files_new: AtomicU64,
    files_changed: AtomicU64,
    files_unmodified: AtomicU64,
    dirs_new: AtomicU64,
    dirs_changed: AtomicU64,
    dirs_unmodified: AtomicU64,
    data_blobs: AtomicU64,
    tree_blobs: AtomicU64,
    data_added: AtomicU64,
    data_added_packed: AtomicU64,
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
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
fn large_read_size(cpus: usize) -> usize {
    cpus.clamp(2, 4) * MAX_SIZE
}

struct Archiver<'a> {
    repo: &'a Repository,
    excludes: Excludes,
    chunker: Chunker,
    /// Blobs stored or queued during this backup (the index has the rest).
    known: Mutex<IdSet>,
    counters: Counters,
    progress: &'a Progress,
    failed: AtomicBool,
    first_error: Mutex<Option<Error>>,
    warnings: Mutex<Vec<String>>,
    users: Mutex<HashMap<u32, String>>,
    groups: Mutex<HashMap<u32, String>>,
    /// The two read buffers for large files (allocated on first use): one
    /// is read into while the other is chunked. One set, so that a single
    /// large file uses every core while memory stays bounded whatever the
    /// number of readers.
    large_buffers: Mutex<[Vec<u8>; 2]>,
    large_read_size: usize,
    cpus: usize,
    /// The id of a chunk of MIN_SIZE zero bytes, computed on first use.
    zero_chunk_id: OnceLock<Id>,
}

/// Backs up `options.targets` into `repo` and writes a snapshot.
pub fn backup(
    repo: &mut Repository,
    options: &BackupOptions,
    progress: &Progress,
) -> Result<BackupResult> {
    let start = jiff::Timestamp::now();
    let (abs_paths, layout) = plan_targets(&options.targets)?;
    let parent = find_parent(repo, options, &abs_paths)?;
    let parent_tree = match &parent {
        Some(p) => Some((repo.load_tree(&p.snapshot.tree)?, p.snapshot.tree)),
        None => None,
    };

    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let arch = Archiver {
        repo,
        excludes: Excludes::new(&options.excludes),
        chunker: Chunker::new(repo.config().chunker_polynomial),
        known: Mutex::new(IdSet::default()),
        counters: Counters::default(),
        progress,
        failed: AtomicBool::new(false),
        first_error: Mutex::new(None),
        warnings: Mutex::new(Vec::new()),
        users: Mutex::new(HashMap::new()),
        groups: Mutex::new(HashMap::new()),
        large_buffers: Mutex::new([Vec::new(), Vec::new()]),
        large_read_size: large_read_size(cpus),
        cpus,
        zero_chunk_id: OnceLock::new(),
    };
    let sink = PackSink::new(
        repo.backend().clone(),
        repo.key(),
        repo.options().pack_size,
        options.uploaders,
    );
    let root = arch.run(&layout, parent_tree, &sink, options)?;
    let (packs, _) = match sink.finish() {
        Ok(done) => done,
        Err(e) => return Err(arch.first_error.lock().expect("error").take().unwrap_or(e)),
    };
    if let Some(e) = arch.first_error.lock().expect("error").take() {
        return Err(e);
    }
    let root = root?;
    drop(arch.known);
    let c = &arch.counters;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let summary = Summary {
        backup_start: crate::time::format_local(start),
        backup_end: crate::time::now_rfc3339(),
        files_new: get(&c.files_new),
        files_changed: get(&c.files_changed),
        files_unmodified: get(&c.files_unmodified),
        dirs_new: get(&c.dirs_new),
        dirs_changed: get(&c.dirs_changed),
        dirs_unmodified: get(&c.dirs_unmodified),
        data_blobs: get(&c.data_blobs),
        tree_blobs: get(&c.tree_blobs),
        data_added: get(&c.data_added),
        data_added_packed: get(&c.data_added_packed),
        total_files_processed: get(&progress.files_done),
        total_bytes_processed: get(&progress.bytes_done),
    };
    let warnings = arch.warnings.into_inner().expect("warnings");
    repo.save_index(packs)?;
    let snapshot = Snapshot {
        time: crate::time::format_local(options.time.unwrap_or(start)),
        parent: parent.as_ref().map(|p| p.id),
        tree: root,
        paths: abs_paths,
        hostname: options.hostname.clone(),
        username: crate::host::username(),
        uid: crate::host::uid(),
        gid: crate::host::gid(),
        excludes: options.excludes.clone(),
        tags: options.tags.clone(),
        original: None,
        program_version: format!("sluice {}", env!("CARGO_PKG_VERSION")),
        summary: Some(summary),
    };
    let id = repo.save_snapshot(&snapshot)?;
    Ok(BackupResult {
        id,
        snapshot,
        parent: parent.map(|p| p.id),
        warnings,
    })
}

/// Where each target goes in the snapshot tree.
enum Layout {
    /// `backup .` (or one directory given as `.`): its contents are the root.
    Contents(PathBuf),
    /// Targets placed at their path components (below `/`, or below the
    /// current directory when all are relative) under a virtual root:
    /// (components, real path).
    Nested(PathBuf, Vec<(Vec<Vec<u8>>, PathBuf)>),
}

/// Absolute, cleaned form of the targets (the snapshot's `paths`) and
/// their layout in the tree.
fn plan_targets(targets: &[PathBuf]) -> Result<(Vec<String>, Layout)> {
    if targets.is_empty() {
        return Err(Error::Invalid(
            "nothing to back up: give at least one path".into(),
        ));
    }
    let mut abs = Vec::new();
    let mut nested = Vec::new();
    let mut contents = None;
    let any_absolute = targets.iter().any(|t| t.is_absolute());
    for t in targets {
        fs::symlink_metadata(t).map_err(|e| Error::io("cannot back up", t, e))?;
        let a = clean(&std::path::absolute(t).map_err(|e| Error::io("resolve", t, e))?);
        abs.push(a.to_string_lossy().into_owned());
        let base = if any_absolute { a.clone() } else { clean(t) };
        let comps: Vec<Vec<u8>> = base
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.as_bytes().to_vec()),
                _ => None,
            })
            .collect();
        if comps.is_empty() {
            contents = Some(a);
        } else {
            nested.push((comps, a));
        }
    }
    abs.sort();
    abs.dedup();
    match contents {
        Some(dir) if nested.is_empty() => Ok((abs, Layout::Contents(dir))),
        Some(_) => Err(Error::Invalid(
            "`.` (or /) cannot be combined with other paths in one backup".into(),
        )),
        None => {
            let prefix = if any_absolute { "/" } else { "." };
            Ok((abs, Layout::Nested(PathBuf::from(prefix), nested)))
        }
    }
}

/// Lexically cleans a path (`a/./b/../c` → `a/c`), as Go's filepath.Clean.
fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() && !p.is_absolute() {
                    out.push("..");
                }
            }
            c => out.push(c.as_os_str()),
        }
    }
    out
}

fn find_parent(
    repo: &Repository,
    options: &BackupOptions,
    paths: &[String],
) -> Result<Option<crate::snapshot::SnapshotEntry>> {
    match &options.parent {
        ParentChoice::None => Ok(None),
        ParentChoice::Id(id) => Ok(Some(repo.find_snapshot(&id.to_hex(), &Default::default())?)),
        ParentChoice::Auto => {
            let now = options.time.unwrap_or_else(jiff::Timestamp::now);
            Ok(repo.list_snapshots()?.into_iter().rev().find(|e| {
                e.snapshot.hostname == options.hostname
                    && e.snapshot.has_paths(paths)
                    && e.snapshot.timestamp() <= now
            }))
        }
    }
}

impl Archiver<'_> {
    fn run(
        &self,
        layout: &Layout,
        parent_tree: Option<(Tree, Id)>,
        sink: &PackSink<'_>,
        options: &BackupOptions,
    ) -> Result<Result<Id>> {
        let (blob_tx, blob_rx) = bounded::<BlobJob>(options.workers.max(1) * 2);
        let (file_tx, file_rx) = bounded::<FileJob>(options.readers.max(1) * 8);
        let (dir_tx, dir_rx) = bounded::<DirJob>(1024);
        Ok(std::thread::scope(|s| {
            for _ in 0..options.workers.max(1) {
                let rx = blob_rx.clone();
                s.spawn(move || self.blob_worker(rx, sink));
            }
            drop(blob_rx);
            for _ in 0..options.readers.max(1) {
                let rx = file_rx.clone();
                let tx = blob_tx.clone();
                s.spawn(move || {
                    // Reused from file to file: reading allocates nothing.
                    let mut buf = Vec::new();
                    for job in rx {
                        let res = self.read_file(&job.path, &mut buf, &tx);
                        let _ = job.reply.send(res);
                    }
                });
            }
            drop(file_rx);
            let tree_tx = blob_tx.clone();
            s.spawn(move || {
                for job in dir_rx {
                    let res = self.save_dir(job.entries, job.parent_subtree, &tree_tx);
                    let _ = job.reply.send(res);
                }
            });
            drop(blob_tx);
            let walker = Walker {
                arch: self,
                files: file_tx,
                dirs: dir_tx,
            };
            let (tree, root_id) = match &parent_tree {
                Some((t, id)) => (Some(t), Some(*id)),
                None => (None, None),
            };
            let root = match layout {
                Layout::Contents(dir) => walker.walk_dir(dir, tree, root_id),
                Layout::Nested(prefix, targets) => {
                    walker.walk_virtual(prefix, targets, 0, tree, root_id)
                }
            };
            self.progress.walk_done.store(true, Ordering::Relaxed);
            drop(walker);
            root.and_then(|rx| rx.recv().unwrap_or_else(|_| Err(self.stopped())))
        }))
    }

    fn stopped(&self) -> Error {
        Error::Invalid("backup stopped after an earlier error".into())
    }

    fn fail(&self, e: Error) {
        self.failed.store(true, Ordering::Relaxed);
        self.first_error.lock().expect("error").get_or_insert(e);
    }

    fn warn(&self, msg: String) {
        tracing::warn!("{msg}");
        self.warnings.lock().expect("warnings").push(msg);
    }

    /// True when `id` must be stored: neither the index nor this backup has it.
    fn is_new_blob(&self, id: &Id) -> bool {
        !self.repo.index().contains(id) && self.known.lock().expect("known").insert(*id)
    }

    fn blob_worker(&self, rx: Receiver<BlobJob>, sink: &PackSink<'_>) {
        for job in rx {
            if self.failed.load(Ordering::Relaxed) {
                continue; // drain so senders never block
            }
            let (blob_type, id, data) = match job {
                BlobJob::Tree { id, data } => (BlobType::Tree, id, data),
                BlobJob::Data { data, reply } => {
                    let id = Id::hash(&data);
                    let len = data.len() as u64;
                    bump(&self.progress.bytes_done, len);
                    // The file's content list only needs the id.
                    let _ = reply.send(id);
                    if !self.is_new_blob(&id) {
                        continue;
                    }
                    bump(&self.counters.data_blobs, 1);
                    bump(&self.counters.data_added, len);
                    bump(&self.progress.bytes_added, len);
                    (BlobType::Data, id, data)
                }
            };
            let (sealed, ulen) = self.repo.seal_blob(blob_type, &data);
            drop(data);
            if blob_type == BlobType::Data {
                bump(&self.counters.data_added_packed, sealed.len() as u64);
            }
            if let Err(e) = sink.add(blob_type, id, &sealed, ulen) {
                self.fail(e);
            }
        }
    }

    /// Reads and chunks one file, queueing every chunk for the blob
    /// workers, which hash it and store it if new. `Ok(None)` when the file
    /// could not be read (a warning, not a failure).
    ///
    /// The chunks go out as they are cut, so hashing, compression,
    /// encryption and upload of a file's early chunks run while later ones
    /// are read. A large file that gets the shared large-file buffers goes
    /// through [`Archiver::read_large`]; other files are read through the
    /// reader's own buffer, skipping holes.
    fn read_file(
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
        // Only files with fewer blocks than bytes have holes worth looking
        // for; the others are read without the extra seeks.
        let sparse = meta
            .as_ref()
            .is_some_and(|m| m.blocks().saturating_mul(512) < m.len());
        if !sparse
            && meta.as_ref().is_some_and(|m| m.len() >= LARGE_FILE)
            && let Ok(mut buffers) = self.large_buffers.try_lock()
        {
            return self.read_large(path, &file, &mut buffers, blobs);
        }
        let mut holes = meta.filter(|_| sparse).map(|m| Holes::new(&file, m.len()));
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

    /// A whole chunk of zeros from a hole: its id is known without reading
    /// or hashing, and only the first one of a backup goes to the workers
    /// (which store it unless the repository has it).
    fn zero_chunk(&self, blobs: &Sender<BlobJob>) -> Result<ChunkId> {
        let id = *self
            .zero_chunk_id
            .get_or_init(|| Id::hash(&vec![0u8; MIN_SIZE]));
        if self.repo.index().contains(&id) || self.known.lock().expect("known").contains(&id) {
            bump(&self.progress.bytes_done, MIN_SIZE as u64);
            return Ok(ChunkId::Known(id));
        }
        self.queue_chunk(&vec![0u8; MIN_SIZE], blobs)
    }

    /// Hands one chunk to the blob workers; its id arrives on the receiver.
    fn queue_chunk(&self, chunk: &[u8], blobs: &Sender<BlobJob>) -> Result<ChunkId> {
        let (tx, rx) = bounded(1);
        blobs
            .send(BlobJob::Data {
                data: chunk.to_vec(),
                reply: tx,
            })
            .map_err(|_| self.stopped())?;
        Ok(ChunkId::Pending(rx))
    }

    /// Collects a directory's results in order and stores its tree.
    fn save_dir(
        &self,
        entries: Vec<Pending>,
        parent_subtree: Option<Id>,
        blobs: &Sender<BlobJob>,
    ) -> Result<Id> {
        let mut tree = Tree::default();
        for p in entries {
            match p {
                Pending::Ready(node) => tree.nodes.push(node),
                Pending::File(mut node, rx) => {
                    // An unreadable file is left out; it was already warned about.
                    if let Some((chunks, size)) =
                        rx.recv().unwrap_or_else(|_| Err(self.stopped()))?
                    {
                        let content = chunks
                            .into_iter()
                            .map(|c| c.wait().ok_or_else(|| self.stopped()))
                            .collect::<Result<Vec<Id>>>()?;
                        node.content = Some(content);
                        node.size = size;
                        tree.nodes.push(node);
                    }
                }
                Pending::Dir(mut node, rx) => {
                    node.subtree = Some(rx.recv().unwrap_or_else(|_| Err(self.stopped()))?);
                    tree.nodes.push(node);
                }
            }
        }
        let blob = tree.to_blob();
        let id = Id::hash(&blob);
        match parent_subtree {
            Some(p) if p == id => bump(&self.counters.dirs_unmodified, 1),
            Some(_) => bump(&self.counters.dirs_changed, 1),
            None => bump(&self.counters.dirs_new, 1),
        }
        if self.is_new_blob(&id) {
            bump(&self.counters.tree_blobs, 1);
            blobs
                .send(BlobJob::Tree { id, data: blob })
                .map_err(|_| self.stopped())?;
        }
        Ok(id)
    }

    fn user_name(&self, uid: u32) -> String {
        self.users
            .lock()
            .expect("users")
            .entry(uid)
            .or_insert_with(|| crate::host::user_name(uid).unwrap_or_default())
            .clone()
    }

    fn group_name(&self, gid: u32) -> String {
        self.groups
            .lock()
            .expect("groups")
            .entry(gid)
            .or_insert_with(|| crate::host::group_name(gid).unwrap_or_default())
            .clone()
    }

    /// A node with everything `lstat` and the file system tell.
    fn node_from(&self, name: &[u8], path: &Path, meta: &Metadata) -> Node {
        let ft = meta.file_type();
        let node_type = if ft.is_file() {
            NodeType::File
        } else if ft.is_dir() {
            NodeType::Dir
        } else if ft.is_symlink() {
            NodeType::Symlink
        } else if ft.is_block_device() {
            NodeType::Dev
        } else if ft.is_char_device() {
            NodeType::Chardev
        } else if ft.is_fifo() {
            NodeType::Fifo
        } else if ft.is_socket() {
            NodeType::Socket
        } else {
            NodeType::Irregular
        };
        let mut node = Node::new(name, node_type);
        node.mode = mode::from_unix(meta.mode());
        node.mtime = crate::time::from_unix(meta.mtime(), meta.mtime_nsec());
        node.atime = crate::time::from_unix(meta.atime(), meta.atime_nsec());
        node.ctime = crate::time::from_unix(meta.ctime(), meta.ctime_nsec());
        node.uid = meta.uid();
        node.gid = meta.gid();
        node.user = self.user_name(meta.uid());
        node.group = self.group_name(meta.gid());
        node.inode = meta.ino();
        node.device_id = meta.dev();
        node.links = meta.nlink();
        match node_type {
            NodeType::File => node.size = meta.len(),
            NodeType::Dev | NodeType::Chardev => node.device = meta.rdev(),
            NodeType::Symlink => match fs::read_link(path) {
                Ok(t) => node.set_link_target(t.as_os_str().as_bytes()),
                Err(e) => self.warn(format!("cannot read symlink {}: {e}", path.display())),
            },
            _ => {}
        }
        if let Ok(names) = xattr::list(path) {
            for n in names {
                if let Ok(Some(value)) = xattr::get(path, &n) {
                    node.extended_attributes
                        .push(crate::tree::ExtendedAttribute {
                            name: n.to_string_lossy().into_owned(),
                            value,
                        });
                }
            }
        }
        node
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

/// What lies at a file offset, up to which offset.
enum Region {
    Data(u64),
    Hole(u64),
}

/// A sparse file's holes, found with `SEEK_DATA`/`SEEK_HOLE` so they are
/// not read from disk.
struct Holes {
    fd: std::os::fd::RawFd,
    /// The size when the file was opened; bytes past it are read as data
    /// (the file may have grown).
    size: u64,
    /// The data extent last found: [start, end).
    data: (u64, u64),
}

impl Holes {
    fn new(file: &File, size: u64) -> Holes {
        use std::os::fd::AsRawFd;
        Holes {
            fd: file.as_raw_fd(),
            size,
            data: (0, 0),
        }
    }

    fn at(&mut self, pos: u64) -> Region {
        if pos >= self.size {
            return Region::Data(u64::MAX);
        }
        if (self.data.0..self.data.1).contains(&pos) {
            return Region::Data(self.data.1);
        }
        let seek = |whence| {
            // SAFETY: lseek on a descriptor the caller keeps open.
            let r = unsafe { libc::lseek(self.fd, pos as libc::off_t, whence) };
            (r >= 0).then_some(r as u64)
        };
        match seek(libc::SEEK_DATA) {
            // No data after `pos`: a hole up to the end.
            None if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) => {
                Region::Hole(self.size)
            }
            // The file system cannot tell: read everything.
            None => Region::Data(u64::MAX),
            Some(d) if d > pos => Region::Hole(d.min(self.size)),
            Some(_) => {
                let end = seek(libc::SEEK_HOLE).unwrap_or(u64::MAX).max(pos + 1);
                self.data = (pos, end);
                Region::Data(end)
            }
        }
    }
}

/// True when a file may keep its content list from the parent snapshot.
fn unchanged(node: &Node, old: &Node) -> bool {
    old.node_type == NodeType::File
        && node.size == old.size
        && node.inode == old.inode
        && same_time(&node.mtime, &old.mtime)
        && same_time(&node.ctime, &old.ctime)
}

fn same_time(a: &str, b: &str) -> bool {
    a == b
        || matches!(
            (crate::time::parse(a), crate::time::parse(b)),
            (Some(x), Some(y)) if x.timestamp() == y.timestamp()
        )
}

/// The walking stage: runs on the caller's thread and feeds the others.
struct Walker<'a, 'b> {
    arch: &'a Archiver<'b>,
    files: Sender<FileJob>,
    dirs: Sender<DirJob>,
}

impl Walker<'_, '_> {
    fn components(path: &Path) -> Vec<&[u8]> {
        path.components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.as_bytes()),
                _ => None,
            })
            .collect()
    }

    fn parent_node<'t>(parent: Option<&'t Tree>, name: &[u8]) -> Option<&'t Node> {
        parent?.nodes.iter().find(|n| n.name_bytes() == name)
    }

    fn load_parent_subtree(&self, old: Option<&Node>) -> Option<Tree> {
        let id = old.filter(|n| n.node_type == NodeType::Dir)?.subtree?;
        match self.arch.repo.load_tree(&id) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(tree = %id, error = %e, "parent tree unreadable; reading files again");
                None
            }
        }
    }

    /// Queues one entry and returns its pending result.
    fn entry(
        &self,
        name: &[u8],
        path: &Path,
        meta: &Metadata,
        old: Option<&Node>,
    ) -> Result<Pending> {
        let a = self.arch;
        let mut node = a.node_from(name, path, meta);
        match node.node_type {
            NodeType::File => {
                bump(&a.progress.files_seen, 1);
                bump(&a.progress.bytes_seen, node.size);
                if let Some(old) = old
                    && unchanged(&node, old)
                    && old.content().iter().all(|id| a.repo.index().contains(id))
                {
                    node.content = old.content.clone();
                    bump(&a.counters.files_unmodified, 1);
                    bump(&a.progress.files_done, 1);
                    bump(&a.progress.bytes_done, node.size);
                    return Ok(Pending::Ready(node));
                }
                bump(
                    if old.is_some() {
                        &a.counters.files_changed
                    } else {
                        &a.counters.files_new
                    },
                    1,
                );
                let (tx, rx) = bounded(1);
                self.files
                    .send(FileJob {
                        path: path.to_path_buf(),
                        reply: tx,
                    })
                    .map_err(|_| a.stopped())?;
                Ok(Pending::File(node, rx))
            }
            NodeType::Dir => {
                let sub = self.load_parent_subtree(old);
                let rx = self.walk_dir(path, sub.as_ref(), old.and_then(|o| o.subtree))?;
                Ok(Pending::Dir(node, rx))
            }
            _ => Ok(Pending::Ready(node)),
        }
    }

    /// Walks a real directory; returns where its tree id will arrive.
    fn walk_dir(
        &self,
        dir: &Path,
        parent: Option<&Tree>,
        parent_subtree: Option<Id>,
    ) -> Result<Receiver<Result<Id>>> {
        let a = self.arch;
        if a.failed.load(Ordering::Relaxed) {
            return Err(a.stopped());
        }
        let mut names: Vec<Vec<u8>> = Vec::new();
        match fs::read_dir(dir) {
            Ok(rd) => {
                for e in rd {
                    match e {
                        Ok(e) => names.push(e.file_name().as_bytes().to_vec()),
                        Err(e) => a.warn(format!("error listing {}: {e}", dir.display())),
                    }
                }
            }
            Err(e) => a.warn(format!("cannot list {}: {e}", dir.display())),
        }
        names.sort();
        let mut entries = Vec::with_capacity(names.len());
        for name in names {
            let path = dir.join(OsStr::from_bytes(&name));
            if a.excludes.is_excluded(&Self::components(&path)) {
                continue;
            }
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    a.warn(format!("skipped {}: {e}", path.display()));
                    continue;
                }
            };
            let old = Self::parent_node(parent, &name);
            entries.push(self.entry(&name, &path, &meta, old)?);
        }
        self.queue_dir(entries, parent_subtree)
    }

    fn queue_dir(
        &self,
        entries: Vec<Pending>,
        parent_subtree: Option<Id>,
    ) -> Result<Receiver<Result<Id>>> {
        let (tx, rx) = bounded(1);
        self.dirs
            .send(DirJob {
                entries,
                parent_subtree,
                reply: tx,
            })
            .map_err(|_| self.arch.stopped())?;
        Ok(rx)
    }

    /// Builds the virtual directories above the targets (`/data` is stored
    /// as a root holding `data`), with the real directories' metadata.
    fn walk_virtual(
        &self,
        prefix: &Path,
        targets: &[(Vec<Vec<u8>>, PathBuf)],
        depth: usize,
        parent: Option<&Tree>,
        parent_subtree: Option<Id>,
    ) -> Result<Receiver<Result<Id>>> {
        let mut names: Vec<&[u8]> = targets.iter().map(|(c, _)| c[depth].as_slice()).collect();
        names.sort();
        names.dedup();
        let mut entries = Vec::new();
        for name in names {
            let path = prefix.join(OsStr::from_bytes(name));
            let old = Self::parent_node(parent, name);
            let meta =
                fs::symlink_metadata(&path).map_err(|e| Error::io("cannot back up", &path, e))?;
            let (here, deeper): (Vec<_>, Vec<_>) = targets
                .iter()
                .filter(|(c, _)| c[depth] == name)
                .cloned()
                .partition(|(c, _)| c.len() == depth + 1);
            if !here.is_empty() || !meta.is_dir() {
                entries.push(self.entry(name, &path, &meta, old)?);
            } else {
                let node = self.arch.node_from(name, &path, &meta);
                let sub = self.load_parent_subtree(old);
                let rx = self.walk_virtual(
                    &path,
                    &deeper,
                    depth + 1,
                    sub.as_ref(),
                    old.and_then(|o| o.subtree),
                )?;
                entries.push(Pending::Dir(node, rx));
            }
        }
        self.queue_dir(entries, parent_subtree)
    }
}
