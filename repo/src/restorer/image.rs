//! Restore onto a block device: the snapshot's one regular file (a block-volume backup, or a
//! disk image that restic backed up) written from offset 0, blob by blob.
//!
//! A device cannot have holes, so a blob of zeros is written only where the device does not
//! already read as zeros: a fresh thin volume stays thin, and a reused one ends up exact.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use sha2::{Digest, Sha256};

use super::{RestoreOptions, RestoreProgress, RestoreResult};
use crate::backend::FileKind;
use crate::snapshot::SnapshotEntry;
use crate::tree::{Node, NodeType};
use crate::{Error, Id, Repository, Result};

/// Trees visited looking for the image, and how deep: a disk image that restic backed up sits
/// a few directories down; a hostile snapshot must not make the search unbounded.
const MAX_TREES: usize = 1024;
const MAX_DEPTH: usize = 64;

/// Restores the single regular file of `snapshot` onto the device (or image file) at
/// `options.target`, which must exist and be at least as large as the file. Blobs are fetched
/// in file order, one at a time, so memory holds one blob. `delete` has no meaning here;
/// `verify` reads the device back.
pub fn restore_image(
    repo: &Repository,
    snapshot: &SnapshotEntry,
    options: &RestoreOptions,
    progress: &RestoreProgress,
) -> Result<RestoreResult> {
    let device = &options.target;
    let (rel, node) = find_image(repo, snapshot)?;
    let file = open_device(device, node.size)?;
    progress.files_total.store(1, Ordering::Relaxed);
    progress.bytes_total.store(node.size, Ordering::Relaxed);
    let mut result = RestoreResult::default();
    if let Err(why) = write_image(repo, &file, &node, progress) {
        result.files_failed = 1;
        result.errors.push(format!("{}: {why}", device.display()));
        return Ok(result);
    }
    result.files = 1;
    result.bytes = node.size;
    if options.verify {
        match verify_image(repo, device, &node) {
            Ok(()) => result.verified = 1,
            Err(why) => result
                .errors
                .push(format!("{}: verification failed: {why}", device.display())),
        }
    }
    tracing::info!(file = %rel.display(), device = %device.display(), bytes = result.bytes, "restored the image");
    Ok(result)
}

/// Writes the file's blobs at their offsets, then flushes the device. A blob of zeros is
/// written only where the device does not already read as zeros.
fn write_image(
    repo: &Repository,
    file: &File,
    node: &Node,
    progress: &RestoreProgress,
) -> std::result::Result<(), String> {
    let mut offset = 0u64;
    for id in node.content() {
        let loc = repo.index().get(id).ok_or_else(|| {
            format!("blob {id} is not in the index; the image cannot be restored")
        })?;
        let name = loc.pack.to_hex();
        // A data blob holds at most one chunk; a longer claim is damage, not a size to allocate.
        if u64::from(loc.blob.length) > crate::chunker::MAX_SIZE as u64 + 4096 {
            return Err(format!(
                "the index says blob {id} in pack {name} is {} bytes, more than any data blob",
                loc.blob.length
            ));
        }
        let mut sealed = repo
            .backend()
            .load_range(
                FileKind::Pack,
                &name,
                u64::from(loc.blob.offset),
                u64::from(loc.blob.length),
            )
            .map_err(|e| format!("blob {id} in pack {name} could not be read: {e}"))?;
        let plain = repo
            .open_blob(&loc.pack, &loc.blob, &mut sealed)
            .map_err(|e| format!("blob {id} in pack {name} could not be opened: {e}"))?;
        write_at(file, &plain, offset)
            .map_err(|e| format!("write at offset {offset} failed: {e}"))?;
        offset += plain.len() as u64;
        progress
            .bytes_done
            .fetch_add(plain.len() as u64, Ordering::Relaxed);
    }
    file.sync_all()
        .map_err(|e| format!("flushing the device failed: {e}"))
}

fn write_at(file: &File, data: &[u8], offset: u64) -> std::io::Result<()> {
    if data.iter().all(|&b| b == 0) {
        let mut current = vec![0u8; data.len()];
        file.read_exact_at(&mut current, offset)?;
        if current.iter().all(|&b| b == 0) {
            return Ok(());
        }
    }
    file.write_all_at(data, offset)
}

/// Reads the device back and checks every chunk's hash, in pieces, so memory does not grow
/// with what the index claims a blob's length is.
fn verify_image(repo: &Repository, device: &Path, node: &Node) -> std::result::Result<(), String> {
    let mut h = File::open(device).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 1 << 20];
    for id in node.content() {
        let loc = repo
            .index()
            .get(id)
            .ok_or_else(|| format!("blob {id} is not in the index"))?;
        let mut left = u64::from(loc.blob.plain_length());
        let mut hash = Sha256::new();
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            h.read_exact(&mut buf[..n]).map_err(|e| e.to_string())?;
            hash.update(&buf[..n]);
            left -= n as u64;
        }
        if Id(hash.finalize().into()) != *id {
            return Err(format!("content differs from blob {id}"));
        }
    }
    Ok(())
}

/// The snapshot's one regular file and its path in the snapshot. Directories may lead to it;
/// other kinds of entry (links, devices) are ignored, a second regular file is an error.
fn find_image(repo: &Repository, snapshot: &SnapshotEntry) -> Result<(PathBuf, Node)> {
    let short = snapshot.id.short();
    let mut found: Option<(PathBuf, Node)> = None;
    let mut stack: Vec<(Id, PathBuf)> = vec![(snapshot.snapshot.tree, PathBuf::new())];
    let mut visited = 0;
    while let Some((tree_id, dir)) = stack.pop() {
        visited += 1;
        if visited > MAX_TREES || dir.components().count() > MAX_DEPTH {
            return Err(not_an_image(
                &short,
                format!(
                    "it has more than {MAX_TREES} directories or is deeper than {MAX_DEPTH}; restore it to a Filesystem volume"
                ),
            ));
        }
        for node in repo.load_tree(&tree_id)?.nodes {
            let path = dir.join(String::from_utf8_lossy(&node.name_bytes()).as_ref());
            match node.node_type {
                NodeType::Dir => stack.extend(node.subtree.map(|t| (t, path))),
                NodeType::File => {
                    if let Some((first, _)) = &found {
                        return Err(not_an_image(
                            &short,
                            format!(
                                "it holds more than one regular file ({} and {}), and a device takes exactly one image; restore it to a Filesystem volume",
                                first.display(),
                                path.display()
                            ),
                        ));
                    }
                    found = Some((path, node));
                }
                _ => {}
            }
        }
    }
    found.ok_or_else(|| {
        not_an_image(
            &short,
            "it holds no regular file to write onto the device".into(),
        )
    })
}

fn not_an_image(snapshot: &str, reason: String) -> Error {
    Error::NotAnImage {
        snapshot: snapshot.to_owned(),
        reason,
    }
}

/// Opens the device for reading and writing and checks that `size` bytes fit. A regular file
/// (an image file standing in for a device) is given exactly that size.
fn open_device(path: &Path, size: u64) -> Result<File> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io("cannot open the restore device", path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| Error::io("cannot inspect the restore device", path, e))?;
    if meta.is_file() {
        file.set_len(size)
            .map_err(|e| Error::io("cannot size the restore image", path, e))?;
        return Ok(file);
    }
    if !meta.file_type().is_block_device() {
        return Err(Error::Invalid(format!(
            "{} is neither a block device nor a regular file",
            path.display()
        )));
    }
    let capacity = file
        .seek(SeekFrom::End(0))
        .map_err(|e| Error::io("cannot size the restore device", path, e))?;
    if capacity < size {
        return Err(Error::Invalid(format!(
            "the image is {size} bytes but the device {} holds {capacity}: give the volume at least {size} bytes",
            path.display()
        )));
    }
    Ok(file)
}
