//! Restoring one batch: the workers' side.
//!
//! A batch's blobs are grouped by pack and cut into ranges of at most [`MAX_RANGE`] bytes
//! (neighbouring blobs read in one request), so one pack full of small files is spread over
//! every worker, and packs of any size restore in bounded memory, with no pack cache to
//! overflow. A worker reads a range into its own reused buffer, opens each blob once and
//! writes it at every offset that uses it. The first write to a file creates it (one
//! `openat`, no probe), the last one applies its metadata through the same descriptor and
//! closes it: files are created, written and closed by the workers, never by one thread
//! ahead of them. Blobs of zeros are not written: a file with more than one blob is created
//! at its full size, so those regions stay holes and sparse files stay sparse.
//!
//! Then, in this order: what could not be restored completely is removed (before anything
//! gives it the look of a complete file), hard links are made, and the directories that
//! the batch finished get their metadata, deepest first, one depth at a time, in parallel.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::RestoreProgress;
use super::metadata::Attrs;
use super::plan::{Batch, FileTarget};
use crate::backend::FileKind;
use crate::pack::PackedBlob;
use crate::safe_dir::Dir;
use crate::tree::{Node, NodeType};
use crate::{Id, Repository};

/// The largest single range read from a pack (a blob larger than this is read on its own).
pub const MAX_RANGE: u64 = 4 << 20;

/// Blobs read as one range at most, so that a pack of tiny files still splits into work
/// for every worker.
const MAX_RANGE_BLOBS: usize = 512;

/// Files held open between writes, across all workers; past it, a file still waiting for
/// blobs is closed after each write and opened again by the next (the fd limit of a
/// container is often 1024).
const OPEN_FILES: usize = 256;

/// One use of a blob: file number in the batch and offset.
type Use = (u32, u64);

/// A pack's blobs that a batch needs, by id, each with its uses.
type PackBlobs = HashMap<Id, (PackedBlob, Vec<Use>)>;

/// What the workers share while restoring one batch.
pub(super) struct BatchRun<'a> {
    pub(super) repo: &'a Repository,
    pub(super) root: &'a Dir,
    pub(super) target: &'a Path,
    pub(super) errors: &'a Mutex<Vec<String>>,
    pub(super) progress: &'a RestoreProgress,
    pub(super) workers: usize,
    pub(super) verify: bool,
    /// (device, inode) of linked files that could not be restored, over all batches.
    pub(super) failed_links: &'a Mutex<std::collections::HashSet<(u64, u64)>>,
}

/// What one batch restored.
#[derive(Default)]
pub(super) struct BatchTotals {
    pub(super) files: u64,
    pub(super) files_failed: u64,
    pub(super) bytes: u64,
    pub(super) verified: u64,
}

/// Where a file is between its first write and its last.
enum Slot {
    /// Not created yet.
    New,
    Open(Arc<File>),
    /// Created, and closed to stay under [`OPEN_FILES`].
    Closed,
}

/// A file of the batch while it is restored.
struct FileState<'b> {
    target: &'b FileTarget,
    /// Uses not yet written; whoever writes the last one finishes the file.
    remaining: AtomicUsize,
    failed: AtomicBool,
    slot: Mutex<Slot>,
}

/// A range of one pack and the blobs in it, each with its uses.
struct Range {
    pack: Id,
    start: u64,
    end: u64,
    blobs: Vec<(PackedBlob, Vec<Use>)>,
}

/// One unit of work for a worker.
enum Task {
    Range(Range),
    /// A file with no blobs: create it at its size.
    Empty(u32),
    /// A symlink, fifo, socket or device.
    Other(usize),
}

/// A worker's buffers, reused from task to task.
#[derive(Default)]
struct Buffers {
    range: Vec<u8>,
    plain: Vec<u8>,
}

impl BatchRun<'_> {
    fn error(&self, message: String) {
        self.errors.lock().expect("errors").push(message);
    }

    fn show(&self, rel: &Path) -> PathBuf {
        self.target.join(rel)
    }

    /// Restores a batch completely, metadata included.
    pub(super) fn run(&self, batch: Batch) -> BatchTotals {
        let states: Vec<FileState> = batch
            .files
            .iter()
            .map(|f| FileState {
                target: f,
                remaining: AtomicUsize::new(f.node.content().len()),
                failed: AtomicBool::new(false),
                slot: Mutex::new(Slot::New),
            })
            .collect();
        let tasks = self.tasks(&batch, &states);
        let open = AtomicUsize::new(0);
        let next = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..self.workers.max(1).min(tasks.len()) {
                s.spawn(|| {
                    let mut buffers = Buffers::default();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(task) = tasks.get(i) else { break };
                        match task {
                            Task::Range(r) => self.restore_range(r, &states, &open, &mut buffers),
                            Task::Empty(f) => self.restore_empty(&states[*f as usize]),
                            Task::Other(o) => {
                                let (rel, node) = &batch.others[*o];
                                self.restore_other(rel, node);
                            }
                        }
                    }
                });
            }
        });
        drop(tasks);

        let mut totals = BatchTotals::default();
        let mut parents = Parents::new(self.root);
        for st in &states {
            let f = st.target;
            if st.failed.load(Ordering::Relaxed) {
                totals.files_failed += 1;
                if let Some(key) = f.link_key {
                    self.failed_links.lock().expect("failed links").insert(key);
                }
                // Closed first: the slot may still hold it.
                *st.slot.lock().expect("slot") = Slot::Closed;
                if let Err(e) = parents.get(&f.rel).and_then(|(dir, name)| dir.remove(name)) {
                    self.error(format!(
                        "{}: incomplete, and cannot be removed: {e}",
                        self.show(&f.rel).display()
                    ));
                }
            } else {
                totals.files += 1;
                totals.bytes += f.node.size;
            }
        }
        for link in &batch.links {
            self.link(link, &mut parents);
        }
        drop(parents);
        if self.verify {
            totals.verified = self.verify(&states);
        }
        self.finish_dirs(&batch.dirs_done);
        totals
    }

    /// The batch's work: its blobs grouped by pack (in the order files first use them, so
    /// files finish and close early) and cut into ranges, then the files without blobs and
    /// the other entries. A file with a blob that no index lists cannot be completed, so it
    /// is failed here, before anything of it is created or fetched.
    fn tasks(&self, batch: &Batch, states: &[FileState]) -> Vec<Task> {
        let index = self.repo.index();
        let mut pack_order: HashMap<Id, usize> = HashMap::new();
        let mut packs: Vec<(Id, PackBlobs)> = Vec::new();
        let mut tasks = Vec::new();
        for (i, st) in states.iter().enumerate() {
            let f = st.target;
            let content = f.node.content();
            if content.is_empty() {
                tasks.push(Task::Empty(i as u32));
                continue;
            }
            let mut locations = Vec::with_capacity(content.len());
            for id in content {
                match index.get(id) {
                    Some(loc) => locations.push(loc),
                    None => {
                        self.fail(
                            st,
                            format!("blob {id} is not in the index; the file cannot be restored"),
                        );
                        break;
                    }
                }
            }
            if st.failed.load(Ordering::Relaxed) {
                continue;
            }
            let mut offset = 0u64;
            for loc in locations {
                let slot = *pack_order.entry(loc.pack).or_insert_with(|| {
                    packs.push((loc.pack, HashMap::new()));
                    packs.len() - 1
                });
                packs[slot]
                    .1
                    .entry(loc.blob.id)
                    .or_insert_with(|| (loc.blob, Vec::new()))
                    .1
                    .push((i as u32, offset));
                offset += u64::from(loc.blob.plain_length());
            }
        }
        let mut ranges = Vec::new();
        for (pack, blobs) in packs {
            let mut blobs: Vec<_> = blobs.into_values().collect();
            blobs.sort_by_key(|(b, _)| b.offset);
            let mut current: Option<Range> = None;
            for (b, uses) in blobs {
                let b_start = u64::from(b.offset);
                let b_end = b_start + u64::from(b.length);
                if let Some(r) = &mut current {
                    // Neighbours (gaps up to 256 KiB read rather than skipped) share a read.
                    if b_start <= r.end + (256 << 10)
                        && b_end - r.start <= MAX_RANGE
                        && r.blobs.len() < MAX_RANGE_BLOBS
                    {
                        r.end = r.end.max(b_end);
                        r.blobs.push((b, uses));
                        continue;
                    }
                    ranges.push(Task::Range(current.take().expect("current range")));
                }
                current = Some(Range {
                    pack,
                    start: b_start,
                    end: b_end,
                    blobs: vec![(b, uses)],
                });
            }
            if let Some(r) = current {
                ranges.push(Task::Range(r));
            }
        }
        ranges.extend(tasks);
        ranges.extend((0..batch.others.len()).map(Task::Other));
        ranges
    }

    /// Marks a file failed; only its first failure is reported, so a full file system
    /// gives one line per file, not one per blob.
    fn fail(&self, st: &FileState, why: impl std::fmt::Display) {
        if !st.failed.swap(true, Ordering::Relaxed) {
            self.error(format!("{}: {why}", self.show(&st.target.rel).display()));
        }
    }

    /// Reads one range and writes every blob in it where it goes. When the range cannot be
    /// read (a truncated or partly unreadable pack), its blobs are read one by one, so one
    /// bad region costs only the blobs in it.
    fn restore_range(
        &self,
        r: &Range,
        states: &[FileState],
        open: &AtomicUsize,
        buffers: &mut Buffers,
    ) {
        let wanted = |uses: &[Use]| {
            uses.iter()
                .any(|&(f, _)| !states[f as usize].failed.load(Ordering::Relaxed))
        };
        if !r.blobs.iter().any(|(_, uses)| wanted(uses)) {
            return;
        }
        let name = r.pack.to_hex();
        let backend = self.repo.backend();
        let Buffers { range, plain } = buffers;
        match backend.load_range_into(FileKind::Pack, &name, r.start, r.end - r.start, range) {
            Ok(()) => {
                for (b, uses) in &r.blobs {
                    let at = (u64::from(b.offset) - r.start) as usize;
                    match range.get_mut(at..at + b.length as usize) {
                        Some(sealed) => {
                            self.write_blob(&r.pack, b, uses, sealed, plain, states, open)
                        }
                        None => self.fail_uses(
                            states,
                            uses,
                            &b.id,
                            &r.pack,
                            "the pack is shorter than the index says",
                        ),
                    }
                }
            }
            Err(e) if r.blobs.len() == 1 => {
                let (b, uses) = &r.blobs[0];
                self.fail_uses(states, uses, &b.id, &r.pack, &e.to_string());
            }
            Err(e) => {
                tracing::info!(pack = %name, error = %e, blobs = r.blobs.len(), "a range of a pack cannot be read; reading its blobs one by one");
                for (b, uses) in &r.blobs {
                    if !wanted(uses) {
                        continue;
                    }
                    let read = backend.load_range_into(
                        FileKind::Pack,
                        &name,
                        u64::from(b.offset),
                        u64::from(b.length),
                        range,
                    );
                    match read {
                        Ok(()) => self.write_blob(&r.pack, b, uses, range, plain, states, open),
                        Err(e) => self.fail_uses(states, uses, &b.id, &r.pack, &e.to_string()),
                    }
                }
            }
        }
    }

    /// Opens one sealed blob and writes it at every offset that uses it.
    #[allow(clippy::too_many_arguments)]
    fn write_blob(
        &self,
        pack: &Id,
        b: &PackedBlob,
        uses: &[Use],
        sealed: &mut [u8],
        scratch: &mut Vec<u8>,
        states: &[FileState],
        open: &AtomicUsize,
    ) {
        let data = match self.repo.open_blob_in(pack, b, sealed, scratch) {
            Ok(p) => p,
            Err(e) => {
                self.fail_uses(states, uses, &b.id, pack, &e.to_string());
                return;
            }
        };
        let zero = data.iter().all(|&x| x == 0);
        for &(fi, off) in uses {
            self.progress
                .bytes_done
                .fetch_add(data.len() as u64, Ordering::Relaxed);
            let st = &states[fi as usize];
            if st.failed.load(Ordering::Relaxed) {
                continue; // not to be kept
            }
            // One blob that is the whole file: the write gives it its size.
            let whole = !zero
                && st.target.node.content().len() == 1
                && data.len() as u64 == st.target.node.size;
            let file = match self.handle(st, whole, open) {
                Ok(f) => f,
                Err(e) => {
                    self.fail(st, format!("cannot create file: {e}"));
                    continue;
                }
            };
            if !zero && let Err(e) = file.write_all_at(data, off) {
                self.fail(st, format!("write at offset {off} failed: {e}"));
                continue;
            }
            if st.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                self.finish_file(st, &file, open);
            }
        }
    }

    /// The file's open descriptor, creating the file on its first use. A file written in
    /// one piece (`whole`) gets its size from that write; any other is given its full size
    /// first, so blobs of zeros, never written, stay holes.
    fn handle(
        &self,
        st: &FileState,
        whole: bool,
        open: &AtomicUsize,
    ) -> std::io::Result<Arc<File>> {
        let mut slot = st.slot.lock().expect("slot");
        let file = match &*slot {
            Slot::Open(f) => return Ok(f.clone()),
            Slot::New => {
                let f = self.root.create_file_beneath(&st.target.rel)?;
                if !whole && st.target.node.size > 0 {
                    f.set_len(st.target.node.size)?;
                }
                Arc::new(f)
            }
            Slot::Closed => Arc::new(self.root.open_file(&st.target.rel, true)?),
        };
        let more_to_come = st.remaining.load(Ordering::Acquire) > 1;
        *slot = if more_to_come && open.fetch_add(1, Ordering::Relaxed) < OPEN_FILES {
            Slot::Open(file.clone())
        } else {
            if more_to_come {
                open.fetch_sub(1, Ordering::Relaxed);
            }
            Slot::Closed
        };
        Ok(file)
    }

    /// After the last write: metadata through the open descriptor, then the file is closed
    /// (when the caller drops its handle).
    fn finish_file(&self, st: &FileState, file: &File, open: &AtomicUsize) {
        let mut slot = st.slot.lock().expect("slot");
        if matches!(*slot, Slot::Open(_)) {
            open.fetch_sub(1, Ordering::Relaxed);
        }
        *slot = Slot::Closed;
        drop(slot);
        for problem in Attrs::of(&st.target.node).apply_to_fd(file.as_fd()) {
            self.error(format!(
                "{}: {problem}",
                self.show(&st.target.rel).display()
            ));
        }
    }

    /// A file without blobs: created at its size, with its metadata, and closed.
    fn restore_empty(&self, st: &FileState) {
        let created = self.root.create_file_beneath(&st.target.rel).and_then(|f| {
            if st.target.node.size > 0 {
                f.set_len(st.target.node.size)?;
            }
            Ok(f)
        });
        match created {
            Ok(f) => {
                for problem in Attrs::of(&st.target.node).apply_to_fd(f.as_fd()) {
                    self.error(format!(
                        "{}: {problem}",
                        self.show(&st.target.rel).display()
                    ));
                }
            }
            Err(e) => self.fail(st, format!("cannot create file: {e}")),
        }
    }

    /// A symlink, fifo, socket or device: created by name in its parent, with its metadata.
    fn restore_other(&self, rel: &Path, node: &Node) {
        let parent = rel.parent().unwrap_or(Path::new(""));
        let Some(name) = rel.file_name() else { return };
        let done = self.root.open_dir(parent).and_then(|dir| {
            create_special(&dir, name, node)?;
            Ok(Attrs::of(node).apply_by_name(&dir, name))
        });
        match done {
            Ok(problems) => {
                for problem in problems {
                    self.error(format!("{}: {problem}", self.show(rel).display()));
                }
            }
            Err(e) => self.error(format!(
                "{}: cannot create {:?}: {e}",
                self.show(rel).display(),
                node.node_type
            )),
        }
    }

    fn fail_uses(&self, states: &[FileState], uses: &[Use], blob: &Id, pack: &Id, why: &str) {
        for &(fi, _) in uses {
            self.fail(
                &states[fi as usize],
                format!("blob {blob} in pack {pack} could not be restored: {why}"),
            );
        }
    }

    /// Makes a second name of a file restored in this batch or an earlier one.
    fn link(&self, link: &super::plan::HardLink, parents: &mut Parents) {
        if self
            .failed_links
            .lock()
            .expect("failed links")
            .contains(&link.key)
        {
            self.error(format!(
                "{}: not linked to {}, which could not be restored",
                self.show(&link.rel).display(),
                self.show(&link.original).display()
            ));
            return;
        }
        let mut link_it = || -> std::io::Result<()> {
            let (from, from_name) = parents.get(&link.original)?;
            let from = from.open_dir(Path::new(""))?;
            let (dir, name) = parents.get(&link.rel)?;
            dir.hard_link(name, &from, from_name)
        };
        if let Err(e) = link_it() {
            self.error(format!(
                "{}: cannot create hard link to {}: {e}",
                self.show(&link.rel).display(),
                self.show(&link.original).display()
            ));
        }
    }

    /// Directory metadata, deepest first: each depth in parallel, the next shallower one
    /// after it, so a parent's times are set after its children stop changing it.
    fn finish_dirs(&self, dirs: &[(PathBuf, Node)]) {
        let mut by_depth: Vec<(usize, &(PathBuf, Node))> =
            dirs.iter().map(|d| (d.0.components().count(), d)).collect();
        by_depth.sort_by_key(|(depth, _)| std::cmp::Reverse(*depth));
        for level in by_depth.chunk_by(|a, b| a.0 == b.0) {
            self.in_parallel(level.len(), |i| {
                let (rel, node) = level[i].1;
                match self.root.open_dir(rel) {
                    Ok(dir) => {
                        for problem in Attrs::of(node).apply_to_fd(dir.as_fd()) {
                            self.error(format!("{}: {problem}", self.show(rel).display()));
                        }
                    }
                    Err(e) => self.error(format!(
                        "{}: cannot set metadata: {e}",
                        self.show(rel).display()
                    )),
                }
            });
        }
    }

    /// Runs `job(0..n)` on the workers; small jobs stay on this thread.
    fn in_parallel(&self, n: usize, job: impl Fn(usize) + Sync) {
        if n < 32 || self.workers <= 1 {
            (0..n).for_each(job);
            return;
        }
        let next = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..self.workers {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        job(i);
                    }
                });
            }
        });
    }

    /// Re-reads each restored file of the batch and checks every chunk's hash, reading in
    /// pieces so memory does not grow with what the index claims a blob's length is.
    fn verify(&self, states: &[FileState]) -> u64 {
        let verified = std::sync::atomic::AtomicU64::new(0);
        self.in_parallel(states.len(), |i| {
            let st = &states[i];
            if st.failed.load(Ordering::Relaxed) {
                return;
            }
            let f = st.target;
            match self.verify_file(f) {
                Ok(Ok(())) => {
                    verified.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Err(why)) => self.error(format!(
                    "{}: verification failed: {why}",
                    self.show(&f.rel).display()
                )),
                Err(e) => self.error(format!(
                    "{}: verification failed: {e}",
                    self.show(&f.rel).display()
                )),
            }
        });
        verified.into_inner()
    }

    fn verify_file(&self, f: &FileTarget) -> std::io::Result<Result<(), String>> {
        let mut buf = vec![0u8; 1 << 20];
        let mut h = self.root.open_file(&f.rel, false)?;
        for id in f.node.content() {
            let Some(loc) = self.repo.index().get(id) else {
                return Ok(Err(format!("blob {id} is not in the index")));
            };
            let mut left = u64::from(loc.blob.plain_length());
            let mut hash = Sha256::new();
            while left > 0 {
                let n = left.min(buf.len() as u64) as usize;
                h.read_exact(&mut buf[..n])?;
                hash.update(&buf[..n]);
                left -= n as u64;
            }
            if Id(hash.finalize().into()) != *id {
                return Ok(Err(format!("content differs from blob {id}")));
            }
        }
        let meta = h.metadata()?;
        if meta.len() != f.node.size {
            return Ok(Err(format!(
                "size {} differs from the snapshot's {}",
                meta.len(),
                f.node.size
            )));
        }
        let (restored, recorded) = (
            meta.permissions().mode() & 0o7777,
            crate::tree::mode::to_unix_perm(f.node.mode),
        );
        if restored != recorded {
            return Ok(Err(format!(
                "mode {restored:04o} differs from the snapshot's {recorded:04o}"
            )));
        }
        Ok(Ok(()))
    }
}

fn create_special(dir: &Dir, name: &std::ffi::OsStr, node: &Node) -> std::io::Result<()> {
    let kind = match node.node_type {
        NodeType::Symlink => return dir.symlink(name, &node.link_target_bytes()),
        NodeType::Fifo => libc::S_IFIFO,
        NodeType::Dev => libc::S_IFBLK,
        NodeType::Chardev => libc::S_IFCHR,
        _ => libc::S_IFSOCK,
    };
    dir.mknod(name, kind | (node.mode & 0o777), node.device)
}

/// The directory handle of a path's parent, reused while consecutive paths share it (a
/// batch lists a directory's entries together).
struct Parents<'a> {
    root: &'a Dir,
    current: Option<(PathBuf, Dir)>,
}

impl<'a> Parents<'a> {
    fn new(root: &'a Dir) -> Parents<'a> {
        Parents {
            root,
            current: None,
        }
    }

    /// The open parent directory of `rel` and `rel`'s name in it.
    fn get<'p>(&mut self, rel: &'p Path) -> std::io::Result<(&Dir, &'p std::ffi::OsStr)> {
        let parent = rel.parent().unwrap_or(Path::new(""));
        let name = rel
            .file_name()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name"))?;
        if self.current.as_ref().is_none_or(|(p, _)| p != parent) {
            self.current = None;
            self.current = Some((parent.to_path_buf(), self.root.open_dir(parent)?));
        }
        Ok((&self.current.as_ref().expect("set above").1, name))
    }
}
