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
//!
//! One module per stage, as restic's `internal/archiver`: `targets` and
//! `parent` prepare the walk, `walker` feeds the pipeline (with
//! `node` turning `lstat` into tree nodes), `file_reader` reads and
//! chunks (skipping `holes`), `blob_saver` stores blobs and
//! `tree_saver` stores trees. This module wires them together.

mod blob_saver;
mod file_reader;
mod holes;
mod node;
mod parent;
mod reuse;
mod targets;
mod tree_saver;
mod walker;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::handoff::bounded;

use self::blob_saver::BlobJob;
use self::file_reader::{FileJob, large_read_size};
use self::parent::find_parent;
use self::reuse::Reused;
use self::targets::{Layout, plan_device, plan_targets};
use self::tree_saver::DirJob;
use self::walker::Walker;
use crate::chunker::Chunker;
use crate::exclude::Excludes;
use crate::id_table::IdTable;
use crate::packer::PackSink;
use crate::snapshot::{Snapshot, Summary};
use crate::tree::Tree;
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

/// What a backup reads.
#[derive(Clone, Debug)]
pub enum BackupSource {
    /// Files and directories.
    Paths {
        /// Paths as given on the command line; `.` stores the contents of
        /// `working_dir` at the snapshot root.
        targets: Vec<PathBuf>,
        /// The absolute directory relative targets start from: the CLI's
        /// working directory, or the volume for mover Jobs. A value, so the
        /// engine never depends on the process's current directory.
        working_dir: PathBuf,
    },
    /// A block device (or an image file) stored as one regular file named
    /// `file_name` at the snapshot's root, as `restic backup --stdin
    /// --stdin-filename` stores it, so restic restores it as that file. It
    /// is read in full every time (a device's times say nothing about its
    /// content); unchanged regions deduplicate by their chunks.
    Device { path: PathBuf, file_name: String },
}

/// What to back up and how.
#[derive(Clone, Debug)]
pub struct BackupOptions {
    pub source: BackupSource,
    pub hostname: String,
    pub tags: Vec<String>,
    pub excludes: Vec<String>,
    /// The snapshot's time instead of now (restic's `--time`).
    pub time: Option<jiff::Timestamp>,
    pub parent: ParentChoice,
    /// When the volume was last restored: files whose ctime is not later keep their content
    /// from the parent snapshot when size and mtime match, though their inodes and ctimes are
    /// new (see `parent::unchanged`).
    pub restored_at: Option<jiff::Timestamp>,
    /// Files read at once.
    pub readers: usize,
    /// Threads compressing and encrypting blobs.
    pub workers: usize,
    /// Packs uploaded at once.
    pub uploaders: usize,
}

impl BackupOptions {
    /// Defaults sized to the machine for `targets` relative to `working_dir`.
    pub fn new(targets: Vec<PathBuf>, working_dir: PathBuf) -> BackupOptions {
        BackupOptions::of(BackupSource::Paths {
            targets,
            working_dir,
        })
    }

    /// Defaults sized to the machine for reading the block device (or image
    /// file) at `path` as the file `file_name`.
    pub fn device(path: PathBuf, file_name: String) -> BackupOptions {
        BackupOptions::of(BackupSource::Device { path, file_name })
    }

    fn of(source: BackupSource) -> BackupOptions {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        BackupOptions {
            source,
            hostname: crate::host::hostname(),
            tags: Vec::new(),
            excludes: Vec::new(),
            time: None,
            parent: ParentChoice::Auto,
            restored_at: None,
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

struct Archiver<'a> {
    repo: &'a Repository,
    excludes: Excludes,
    chunker: Chunker,
    /// Blobs stored or queued during this backup (the index has the rest): compact, as a
    /// first backup of millions of small files adds millions.
    known: Mutex<IdTable<()>>,
    /// Packs of the blobs used from the index as they are.
    reused: Reused,
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
    /// [`BackupOptions::restored_at`].
    restored_at: Option<jiff::Timestamp>,
}

/// Backs up `options.source` into `repo` and writes a snapshot.
pub fn backup(
    repo: &mut Repository,
    options: &BackupOptions,
    progress: &Progress,
) -> Result<BackupResult> {
    let start = jiff::Timestamp::now();
    let (abs_paths, layout) = match &options.source {
        BackupSource::Paths {
            targets,
            working_dir,
        } => plan_targets(targets, working_dir)?,
        BackupSource::Device { path, file_name } => plan_device(path, file_name)?,
    };
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
        known: Mutex::new(IdTable::default()),
        reused: Reused::default(),
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
        restored_at: options.restored_at,
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
    let reused = arch.reused;
    repo.save_index(packs)?;
    reused.verify(repo)?;
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
                        if let Ok(Some((_, read))) = &res
                            && *read != job.size
                        {
                            self.warn(format!(
                                "{} changed size while it was read ({} bytes when listed, {read} read): the snapshot holds what was read",
                                job.path.display(),
                                job.size
                            ));
                        }
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
                Layout::Device { path, name } => walker.walk_device(path, name, tree, root_id),
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

    /// Records a warning for the caller to show, once; it also makes the exit code 3.
    fn warn(&self, msg: String) {
        self.warnings.lock().expect("warnings").push(msg);
    }
}
