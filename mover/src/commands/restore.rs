//! `restore`: restore a snapshot into a directory.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Result, bail};
use serde_json::json;
use sluice_repo::Repository;
use sluice_repo::restorer::{self, RestoreOptions, RestoreProgress, RestoreResult};
use sluice_repo::snapshot::{SnapshotEntry, SnapshotFilter};

use crate::args::{Global, RestoreArgs};
use crate::output::{bytes, duration};
use crate::progress::{Mode, Sample, Ticker};
use crate::repo_open::RepoConfig;

pub fn run(g: &Global, a: &RestoreArgs) -> Result<i32> {
    let filter = SnapshotFilter {
        hosts: a.host.clone(),
        tags: a.tag.clone(),
        paths: a.path.clone(),
    };
    let mut opts = RestoreOptions::new(a.target.clone());
    opts.delete = a.delete;
    opts.verify = a.verify;
    let mut repo = RepoConfig::from_env(g)?.open()?;
    // A block device as the target takes the snapshot's one file as its image.
    let onto = if is_block_device(&a.target) {
        Onto::Device
    } else {
        Onto::Directory
    };
    restore(&mut repo, g, &a.snapshot, &filter, &opts, onto)?;
    Ok(0)
}

/// What `RestoreOptions::target` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Onto {
    /// A directory the snapshot's tree is recreated in.
    Directory,
    /// A block device (or image file) the snapshot's one regular file is written onto.
    Device,
}

fn is_block_device(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device())
}

/// Locks the open repository, restores the snapshot `spec` names and prints
/// the summary: the core the `restore` command and the `job` share. Any file
/// that did not restore completely fails it.
pub fn restore(
    repo: &mut Repository,
    g: &Global,
    spec: &str,
    filter: &SnapshotFilter,
    opts: &RestoreOptions,
    onto: Onto,
) -> Result<(SnapshotEntry, RestoreResult)> {
    let (snap, result) = restore_listing_errors(repo, g, spec, filter, opts, onto)?;
    if !result.errors.is_empty() {
        let failed = if result.files_failed > 0 {
            format!(
                "{} of {} files could not be restored and were removed, ",
                result.files_failed,
                result.files + result.files_failed
            )
        } else {
            String::new()
        };
        bail!(
            "restore of snapshot {} finished with {} errors (listed above): {failed}{} files restored completely; run `sluice-mover check` to see what is damaged",
            snap.id.short(),
            result.errors.len(),
            result.files
        );
    }
    Ok((snap, result))
}

/// [`restore`], with the files that did not restore (or verify) listed in
/// the result instead of failing it: a restore test reports them.
pub fn restore_listing_errors(
    repo: &mut Repository,
    g: &Global,
    spec: &str,
    filter: &SnapshotFilter,
    opts: &RestoreOptions,
    onto: Onto,
) -> Result<(SnapshotEntry, RestoreResult)> {
    let _lock = super::lock(repo, g, false)?;
    let snap = repo.find_snapshot(spec, filter)?;
    repo.load_index()?;
    if !g.json && !g.quiet {
        println!(
            "restoring snapshot {} of {:?} at {} to {}",
            snap.id.short(),
            snap.snapshot.paths,
            snap.snapshot.time,
            opts.target.display()
        );
    }
    let progress = Arc::new(RestoreProgress::default());
    let p = progress.clone();
    let ticker = Ticker::start(
        Mode::detect(g.json, g.quiet, g.progress_log),
        "restore",
        move || Sample {
            files_done: 0,
            files_total: p.files_total.load(Ordering::Relaxed),
            bytes_done: p.bytes_done.load(Ordering::Relaxed),
            bytes_total: p.bytes_total.load(Ordering::Relaxed),
            totals_final: true,
        },
    );
    let started = std::time::Instant::now();
    let result = match onto {
        Onto::Directory => restorer::restore(repo, &snap, opts, &progress),
        Onto::Device => restorer::restore_image(repo, &snap, opts, &progress),
    };
    ticker.finish();
    let result = result?;
    let secs = started.elapsed().as_secs_f64();
    for e in &result.errors {
        eprintln!("error: {e}");
    }
    if g.json {
        crate::output::json_line(&json!({
            "message_type": "summary",
            "seconds_elapsed": secs as u64,
            "total_files": result.files + result.files_failed + result.dirs,
            "files_restored": result.files + result.dirs,
            "files_failed": result.files_failed,
            "total_bytes": result.bytes,
            "bytes_restored": result.bytes,
            "files_deleted": result.deleted,
            "files_verified": result.verified,
            "errors": result.errors.len(),
            "snapshot_id": snap.id.to_hex(),
        }));
    } else if !g.quiet {
        println!(
            "Summary: Restored {} files/dirs ({}) in {}",
            result.files + result.dirs,
            bytes(result.bytes),
            duration(secs)
        );
        if result.files_failed > 0 {
            println!(
                "{} files could not be restored completely and were removed (listed above)",
                result.files_failed
            );
        }
        if opts.delete {
            println!("Deleted {} files/dirs not in the snapshot", result.deleted);
        }
        if opts.verify {
            println!("Verified {} files", result.verified);
        }
    }
    Ok((snap, result))
}
