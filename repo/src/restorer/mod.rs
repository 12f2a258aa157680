//! Restore: recreate a snapshot's tree in a target directory.
//!
//! The restorer is pack-driven, like restic's, and streams: a planner thread walks the
//! snapshot's trees depth first, creates directories as it meets them and cuts the rest
//! into batches of whole files ([`plan`]); restore workers take each batch's packs in
//! ranges, decrypt every blob once and write it at every offset that uses it, creating
//! each file at its first write and closing it, metadata applied, at its last ([`write`]).
//! The planner fills the next batch while the workers restore the current one, so data is
//! written from the first batch on and memory holds two batches, never the whole tree.
//! Directory metadata (owner, mode, times) is applied once a directory's subtree is
//! written, deepest directories first ([`metadata`]).
//!
//! Every path is created through [`crate::safe_dir`], relative to the open target and
//! never following a symlink, so nothing a snapshot holds can make a restore write outside
//! its target.

mod image;
mod metadata;
mod plan;
mod write;

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use crate::handoff::bounded;

pub use self::image::restore_image;
use self::plan::{Batch, Planner};
use self::write::BatchRun;
pub use self::write::MAX_RANGE;
use crate::safe_dir::Dir;
use crate::snapshot::SnapshotEntry;
use crate::{Error, Repository, Result};

/// How to restore.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    pub target: PathBuf,
    /// Remove files in the target that the snapshot does not have.
    pub delete: bool,
    /// Re-read every restored file and check it against the snapshot.
    pub verify: bool,
    /// Ranges of packs restored at once. More than the cores: creating and writing files
    /// waits on the file system, and those waits overlap.
    pub workers: usize,
}

impl RestoreOptions {
    /// Defaults for restoring into `target`.
    pub fn new(target: PathBuf) -> RestoreOptions {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        RestoreOptions {
            target,
            delete: false,
            verify: false,
            workers: (cpus * 2).clamp(4, 16),
        }
    }
}

/// Live counters for progress displays. The totals grow as the planner walks the tree.
#[derive(Default, Debug)]
pub struct RestoreProgress {
    pub bytes_total: AtomicU64,
    pub bytes_done: AtomicU64,
    pub files_total: AtomicU64,
}

/// What a restore did.
#[derive(Debug, Default)]
pub struct RestoreResult {
    /// Files restored completely.
    pub files: u64,
    /// Files that could not be restored completely. They were removed, so that no file is
    /// left at full size looking complete; each is named in `errors`.
    pub files_failed: u64,
    pub dirs: u64,
    /// Bytes of the files restored completely.
    pub bytes: u64,
    pub deleted: u64,
    /// Files verified (with `verify`).
    pub verified: u64,
    /// Everything that went wrong, one line each.
    pub errors: Vec<String>,
}

/// Restores `snapshot` into `options.target`.
pub fn restore(
    repo: &Repository,
    snapshot: &SnapshotEntry,
    options: &RestoreOptions,
    progress: &RestoreProgress,
) -> Result<RestoreResult> {
    let root = open_target(&options.target)?;
    let errors = Mutex::new(Vec::new());
    let failed_links = Mutex::new(HashSet::new());
    let run = BatchRun {
        repo,
        root: &root,
        target: &options.target,
        errors: &errors,
        progress,
        workers: options.workers.max(1),
        verify: options.verify,
        failed_links: &failed_links,
    };
    let mut result = RestoreResult::default();
    // One batch planned ahead of the one being restored.
    let (tx, rx) = bounded::<Batch>(1);
    let walked = std::thread::scope(|s| {
        let planner = s.spawn(|| {
            Planner {
                repo,
                root: &root,
                target: &options.target,
                delete: options.delete,
                errors: &errors,
                progress,
                batches: tx,
            }
            .walk(&snapshot.snapshot.tree)
        });
        for batch in rx {
            let done = run.run(batch);
            result.files += done.files;
            result.files_failed += done.files_failed;
            result.bytes += done.bytes;
            result.verified += done.verified;
        }
        planner.join().expect("restore planner")
    });
    result.dirs = walked.dirs;
    result.deleted = walked.deleted;
    result.errors = errors.into_inner().expect("errors");
    Ok(result)
}

/// Opens the target (creating it), and fails early, before any work, when it cannot be
/// written.
fn open_target(target: &Path) -> Result<Dir> {
    fs::create_dir_all(target).map_err(|e| Error::io("cannot create restore target", target, e))?;
    let root = Dir::open(target).map_err(|e| Error::io("cannot open restore target", target, e))?;
    let probe = format!(".sluice-restore-probe-{}", std::process::id());
    root.create_new(OsStr::new(&probe))
        .map_err(|e| Error::io("restore target is not writable:", target, e))?;
    let _ = root.remove(OsStr::new(&probe));
    Ok(root)
}
