//! Restore: recreate a snapshot's tree in a target directory.
//!
//! The restorer is pack-driven, like restic's: it first lays out the tree
//! (directories, empty files at their final size, links, special files),
//! then plans, for every pack, which blobs it needs and at which file
//! offsets each one goes. Worker threads take packs one at a time, fetch
//! the needed byte ranges (never more than [`MAX_RANGE`] at once, so packs
//! of any size restore in bounded memory, with no pack cache to overflow),
//! decrypt each blob once and write it at every offset that uses it. Blobs
//! of zeros are not written: files are created at full size, so those
//! regions stay holes and sparse files stay sparse. Metadata (owner, mode,
//! times) is applied last, deepest directories first, so writing files does
//! not disturb directory times.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use sha2::{Digest, Sha256};

use crate::backend::FileKind;
use crate::pack::PackedBlob;
use crate::safe_dir::{Dir, EntryKind};
use crate::snapshot::SnapshotEntry;
use crate::tree::{NameProblem, Node, NodeType, mode, name_problems};
use crate::{Error, Id, Repository, Result};

/// The largest single range read from a pack (a blob larger than this is
/// read on its own).
pub const MAX_RANGE: u64 = 8 << 20;

/// The longest path below the target that is restored: the kernel's `PATH_MAX`. A deeper
/// chain of trees is reported, not walked, so a hostile snapshot cannot make the plan's paths
/// grow without bound.
const MAX_PATH: usize = 4096;

/// How to restore.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    pub target: PathBuf,
    /// Remove files in the target that the snapshot does not have.
    pub delete: bool,
    /// Re-read every restored file and check it against the snapshot.
    pub verify: bool,
    /// Packs processed at once.
    pub workers: usize,
}

impl RestoreOptions {
    /// Defaults for restoring into `target`.
    pub fn new(target: PathBuf) -> RestoreOptions {
        RestoreOptions {
            target,
            delete: false,
            verify: false,
            workers: 4,
        }
    }
}

/// Live counters for progress displays.
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

struct FileTarget {
    /// Path below the target.
    rel: PathBuf,
    node: Node,
}

/// One use of a blob: file number and offset.
type Use = (usize, u64);

/// A pack's blobs that the restore needs, by offset, each with its uses.
type PackWork = (Id, Vec<(PackedBlob, Vec<Use>)>);

/// A second name of an already planned file.
struct HardLink {
    rel: PathBuf,
    /// The file (in [`Plan::files`]) it names.
    file: usize,
}

#[derive(Default)]
struct Plan {
    files: Vec<FileTarget>,
    dirs: Vec<(PathBuf, Node)>,
    /// Other nodes (symlinks, fifos, devices), for metadata at the end.
    others: Vec<(PathBuf, Node)>,
    hardlinks: Vec<HardLink>,
    /// Every path the snapshot has below the target (for `delete`).
    keep: HashSet<PathBuf>,
}

/// What went wrong so far; shared by the restore workers.
struct Outcome<'a> {
    target: &'a Path,
    errors: Mutex<Vec<String>>,
    /// Per planned file: it cannot be restored completely. Its first error is in `errors`.
    failed: Vec<AtomicBool>,
}

impl Outcome<'_> {
    fn show(&self, rel: &Path) -> PathBuf {
        self.target.join(rel)
    }

    fn error(&self, message: String) {
        self.errors.lock().expect("errors").push(message);
    }

    fn is_failed(&self, file: usize) -> bool {
        self.failed[file].load(Ordering::Relaxed)
    }

    /// Marks a file failed; only its first failure is reported, so a full file system
    /// gives one line per file, not one per blob.
    fn fail(&self, files: &[FileTarget], file: usize, why: impl std::fmt::Display) {
        if !self.failed[file].swap(true, Ordering::Relaxed) {
            self.error(format!("{}: {why}", self.show(&files[file].rel).display()));
        }
    }
}

/// Restores `snapshot` into `options.target`.
pub fn restore(
    repo: &Repository,
    snapshot: &SnapshotEntry,
    options: &RestoreOptions,
    progress: &RestoreProgress,
) -> Result<RestoreResult> {
    let root = open_target(&options.target)?;
    let mut plan = Plan::default();
    let mut layout_errors = Vec::new();
    lay_out(
        repo,
        &root,
        &options.target,
        &snapshot.snapshot.tree,
        &mut plan,
        &mut layout_errors,
    );
    let out = Outcome {
        target: &options.target,
        errors: Mutex::new(layout_errors),
        failed: plan.files.iter().map(|_| AtomicBool::new(false)).collect(),
    };
    progress
        .files_total
        .store(plan.files.len() as u64, Ordering::Relaxed);

    // blob -> uses, grouped by pack. A file with a blob no index lists cannot be completed,
    // so none of its blobs are fetched.
    let mut by_pack: HashMap<Id, HashMap<Id, (PackedBlob, Vec<Use>)>> = HashMap::new();
    for (i, f) in plan.files.iter().enumerate() {
        progress
            .bytes_total
            .fetch_add(f.node.size, Ordering::Relaxed);
        let mut locations = Vec::with_capacity(f.node.content().len());
        for id in f.node.content() {
            match repo.index().get(id) {
                Some(loc) => locations.push(loc),
                None => {
                    out.fail(
                        &plan.files,
                        i,
                        format!("blob {id} is not in the index; the file cannot be restored"),
                    );
                    break;
                }
            }
        }
        if out.is_failed(i) {
            continue;
        }
        let mut offset = 0u64;
        for loc in locations {
            let len = u64::from(loc.blob.plain_length());
            by_pack
                .entry(loc.pack)
                .or_default()
                .entry(loc.blob.id)
                .or_insert_with(|| (loc.blob, Vec::new()))
                .1
                .push((i, offset));
            offset += len;
        }
    }
    let packs: Vec<PackWork> = by_pack
        .into_iter()
        .map(|(p, blobs)| {
            let mut v: Vec<_> = blobs.into_values().collect();
            v.sort_by_key(|(b, _)| b.offset);
            (p, v)
        })
        .collect();

    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..options.workers.max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((pack, blobs)) = packs.get(i) else {
                        break;
                    };
                    restore_pack(repo, &root, pack, blobs, &plan.files, &out, progress);
                }
            });
        }
    });

    let mut errors = out.errors.into_inner().expect("errors");
    let failed: Vec<bool> = out.failed.into_iter().map(AtomicBool::into_inner).collect();
    let show = |rel: &Path| options.target.join(rel);
    let mut parents = Parents::new(&root);
    for link in &plan.hardlinks {
        let original = &plan.files[link.file].rel;
        if failed[link.file] {
            errors.push(format!(
                "{}: not linked to {}, which could not be restored",
                show(&link.rel).display(),
                show(original).display()
            ));
            continue;
        }
        let mut link_it = || -> std::io::Result<()> {
            let (from, from_name) = parents.get(original)?;
            let from = from.open_dir(Path::new(""))?;
            let (dir, name) = parents.get(&link.rel)?;
            dir.hard_link(name, &from, from_name)
        };
        let linked = link_it();
        if let Err(e) = linked {
            errors.push(format!(
                "{}: cannot create hard link to {}: {e}",
                show(&link.rel).display(),
                show(original).display()
            ));
        }
    }
    // Remove what could not be restored completely, before anything gives it a real size's
    // look of completeness (times, mode).
    let mut result = RestoreResult {
        dirs: plan.dirs.len() as u64,
        ..RestoreResult::default()
    };
    for (f, &bad) in plan.files.iter().zip(&failed) {
        if !bad {
            continue;
        }
        result.files_failed += 1;
        if let Err(e) = parents.get(&f.rel).and_then(|(dir, name)| dir.remove(name)) {
            errors.push(format!(
                "{}: incomplete, and cannot be removed: {e}",
                show(&f.rel).display()
            ));
        }
    }
    for (f, _) in plan.files.iter().zip(&failed).filter(|(_, bad)| !**bad) {
        result.files += 1;
        result.bytes += f.node.size;
        apply_metadata(&mut parents, &f.rel, &f.node, &show, &mut errors);
    }
    for (rel, node) in &plan.others {
        apply_metadata(&mut parents, rel, node, &show, &mut errors);
    }
    if options.delete {
        result.deleted = delete_extra(&root, &plan.keep, &show, &mut errors);
    }
    // Deepest directories first, so a parent's times are set after its
    // children stop changing it.
    plan.dirs
        .sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (rel, node) in &plan.dirs {
        apply_metadata(&mut parents, rel, node, &show, &mut errors);
    }
    if options.verify {
        result.verified = verify(repo, &root, &plan.files, &failed, &show, &mut errors);
    }
    result.errors = errors;
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

/// Creates the snapshot's directories, empty files at their final size, links and special
/// files, walking trees with an explicit stack so no depth of trees can overflow the stack.
fn lay_out(
    repo: &Repository,
    root: &Dir,
    target: &Path,
    tree_id: &Id,
    plan: &mut Plan,
    errors: &mut Vec<String>,
) {
    let mut links_seen: HashMap<(u64, u64), usize> = HashMap::new();
    let mut stack: Vec<(Id, PathBuf)> = vec![(*tree_id, PathBuf::new())];
    while let Some((tree_id, rel_dir)) = stack.pop() {
        let shown = target.join(&rel_dir);
        let tree = match repo.load_tree(&tree_id) {
            Ok(t) => t,
            Err(e) => {
                errors.push(format!("{}: cannot read its tree: {e}", shown.display()));
                continue;
            }
        };
        let dir = match root.open_dir(&rel_dir) {
            Ok(d) => d,
            Err(e) => {
                errors.push(format!("{}: cannot open directory: {e}", shown.display()));
                continue;
            }
        };
        let problems: HashMap<usize, NameProblem> =
            name_problems(&tree.nodes).into_iter().collect();
        let mut reported: HashSet<&str> = HashSet::new();
        for (i, problem) in &problems {
            let quoted = tree.nodes[*i].quoted_name.as_str();
            if reported.insert(quoted) {
                errors.push(format!(
                    "{}: skipping {quoted:?} of tree {tree_id}: {problem} (a damaged or hostile snapshot; `sluice-mover check` lists such trees)",
                    shown.display()
                ));
            }
        }
        for (i, node) in tree.nodes.into_iter().enumerate() {
            if problems.contains_key(&i) {
                continue;
            }
            let name_bytes = node.name_bytes();
            let name = OsStr::from_bytes(&name_bytes);
            let rel = rel_dir.join(name);
            let path = target.join(&rel);
            if rel.as_os_str().len() >= MAX_PATH {
                errors.push(format!(
                    "{}: skipped, its path below the target is longer than {MAX_PATH} bytes",
                    shown.display()
                ));
                continue;
            }
            plan.keep.insert(rel.clone());
            match node.node_type {
                NodeType::Dir => {
                    if let Err(e) = dir.ensure_dir(name) {
                        errors.push(format!("{}: cannot create directory: {e}", path.display()));
                        continue;
                    }
                    if let Some(sub) = node.subtree {
                        stack.push((sub, rel.clone()));
                    }
                    plan.dirs.push((rel, node));
                }
                NodeType::File => {
                    if node.links > 1 && node.inode != 0 {
                        let key = (node.device_id, node.inode);
                        if let Some(&file) = links_seen.get(&key) {
                            plan.hardlinks.push(HardLink { rel, file });
                            continue;
                        }
                        links_seen.insert(key, plan.files.len());
                    }
                    match dir.create_file(name, node.size) {
                        Ok(()) => plan.files.push(FileTarget { rel, node }),
                        Err(e) => {
                            links_seen.retain(|_, f| *f != plan.files.len());
                            errors.push(format!("{}: cannot create file: {e}", path.display()));
                        }
                    }
                }
                NodeType::Irregular => {
                    errors.push(format!(
                        "{}: skipped, an irregular file (as the backup recorded it) cannot be restored",
                        path.display()
                    ));
                }
                _ => {
                    if let Err(e) = create_special(&dir, name, &node) {
                        errors.push(format!(
                            "{}: cannot create {:?}: {e}",
                            path.display(),
                            node.node_type
                        ));
                        continue;
                    }
                    plan.others.push((rel, node));
                }
            }
        }
    }
}

fn create_special(dir: &Dir, name: &OsStr, node: &Node) -> std::io::Result<()> {
    let kind = match node.node_type {
        NodeType::Symlink => return dir.symlink(name, &node.link_target_bytes()),
        NodeType::Fifo => libc::S_IFIFO,
        NodeType::Dev => libc::S_IFBLK,
        NodeType::Chardev => libc::S_IFCHR,
        _ => libc::S_IFSOCK,
    };
    dir.mknod(name, kind | (node.mode & 0o777), node.device)
}

/// Reads the needed ranges of one pack and writes every blob where it goes. When a range
/// cannot be read (a truncated or partly unreadable pack), its blobs are read one by one, so
/// one bad region costs only the blobs in it.
fn restore_pack(
    repo: &Repository,
    root: &Dir,
    pack: &Id,
    blobs: &[(PackedBlob, Vec<Use>)],
    files: &[FileTarget],
    out: &Outcome,
    progress: &RestoreProgress,
) {
    let name = pack.to_hex();
    let mut i = 0;
    while i < blobs.len() {
        // Coalesce neighbouring blobs into one range read.
        let start = u64::from(blobs[i].0.offset);
        let mut end = start + u64::from(blobs[i].0.length);
        let mut j = i + 1;
        while j < blobs.len() {
            let b = &blobs[j].0;
            let b_end = u64::from(b.offset) + u64::from(b.length);
            if u64::from(b.offset) > end + (256 << 10) || b_end - start > MAX_RANGE {
                break;
            }
            end = b_end;
            j += 1;
        }
        let group = &blobs[i..j];
        i = j;
        let wanted = |uses: &[Use]| uses.iter().any(|&(f, _)| !out.is_failed(f));
        if !group.iter().any(|(_, uses)| wanted(uses)) {
            continue;
        }
        match repo
            .backend()
            .load_range(FileKind::Pack, &name, start, end - start)
        {
            Ok(mut data) => {
                for (b, uses) in group {
                    let at = (u64::from(b.offset) - start) as usize;
                    match data.get_mut(at..at + b.length as usize) {
                        Some(sealed) => {
                            write_blob(repo, root, pack, b, uses, sealed, files, out, progress)
                        }
                        None => fail_uses(
                            files,
                            out,
                            uses,
                            &b.id,
                            pack,
                            "the pack is shorter than the index says",
                        ),
                    }
                }
            }
            Err(e) if group.len() == 1 => {
                let (b, uses) = &group[0];
                fail_uses(files, out, uses, &b.id, pack, &e.to_string());
            }
            Err(e) => {
                tracing::info!(pack = %name, error = %e, blobs = group.len(), "a range of a pack cannot be read; reading its blobs one by one");
                for (b, uses) in group {
                    if !wanted(uses) {
                        continue;
                    }
                    match repo.backend().load_range(
                        FileKind::Pack,
                        &name,
                        u64::from(b.offset),
                        u64::from(b.length),
                    ) {
                        Ok(mut sealed) => {
                            write_blob(repo, root, pack, b, uses, &mut sealed, files, out, progress)
                        }
                        Err(e) => fail_uses(files, out, uses, &b.id, pack, &e.to_string()),
                    }
                }
            }
        }
    }
}

/// Opens one sealed blob and writes it at every offset that uses it.
#[allow(clippy::too_many_arguments)]
fn write_blob(
    repo: &Repository,
    root: &Dir,
    pack: &Id,
    b: &PackedBlob,
    uses: &[Use],
    sealed: &mut [u8],
    files: &[FileTarget],
    out: &Outcome,
    progress: &RestoreProgress,
) {
    let plain = match repo.open_blob(pack, b, sealed) {
        Ok(p) => p,
        Err(e) => {
            fail_uses(files, out, uses, &b.id, pack, &e.to_string());
            return;
        }
    };
    let zero = plain.iter().all(|&x| x == 0);
    for &(fi, off) in uses {
        progress
            .bytes_done
            .fetch_add(plain.len() as u64, Ordering::Relaxed);
        if zero || out.is_failed(fi) {
            continue; // a hole already, or not to be kept
        }
        let res = root
            .open_file(&files[fi].rel, true)
            .and_then(|h| h.write_all_at(&plain, off));
        if let Err(e) = res {
            out.fail(files, fi, format!("write at offset {off} failed: {e}"));
        }
    }
}

fn fail_uses(files: &[FileTarget], out: &Outcome, uses: &[Use], blob: &Id, pack: &Id, why: &str) {
    for &(fi, _) in uses {
        out.fail(
            files,
            fi,
            format!("blob {blob} in pack {pack} could not be restored: {why}"),
        );
    }
}

/// The directory handle of a path's parent, reused while consecutive paths share it (the
/// plan lists a directory's entries together).
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
    fn get<'p>(&mut self, rel: &'p Path) -> std::io::Result<(&Dir, &'p OsStr)> {
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

/// Owner, permissions, extended attributes and times, as restic restores them; all by name
/// in the parent directory, never following a symlink.
fn apply_metadata(
    parents: &mut Parents,
    rel: &Path,
    node: &Node,
    show: &dyn Fn(&Path) -> PathBuf,
    errors: &mut Vec<String>,
) {
    let (dir, name) = match parents.get(rel) {
        Ok(found) => found,
        Err(e) => {
            errors.push(format!("{}: cannot set metadata: {e}", show(rel).display()));
            return;
        }
    };
    if let Err(e) = dir.set_owner(name, node.uid, node.gid)
        && crate::host::uid() == 0
    {
        errors.push(format!(
            "{}: cannot set owner {}:{}: {e}",
            show(rel).display(),
            node.uid,
            node.gid
        ));
    }
    if node.node_type != NodeType::Symlink
        && let Err(e) = dir.set_mode(name, mode::to_unix_perm(node.mode))
    {
        errors.push(format!("{}: cannot set mode: {e}", show(rel).display()));
    }
    for xa in &node.extended_attributes {
        if let Err(e) = dir.set_xattr(name, &xa.name, &xa.value) {
            tracing::debug!(path = %show(rel).display(), attr = %xa.name, error = %e, "extended attribute not restored");
        }
    }
    let to_ts = |s: &str| -> libc::timespec {
        match crate::time::parse(s) {
            Some(z) => {
                let t = z.timestamp();
                libc::timespec {
                    tv_sec: t.as_second() as libc::time_t,
                    tv_nsec: t.subsec_nanosecond() as libc::c_long,
                }
            }
            None => libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_OMIT,
            },
        }
    };
    if let Err(e) = dir.set_times(name, to_ts(&node.atime), to_ts(&node.mtime)) {
        errors.push(format!("{}: cannot set times: {e}", show(rel).display()));
    }
}

/// Removes everything below the target that the snapshot does not have, walking with an
/// explicit stack and never following a symlink.
fn delete_extra(
    root: &Dir,
    keep: &HashSet<PathBuf>,
    show: &dyn Fn(&Path) -> PathBuf,
    errors: &mut Vec<String>,
) -> u64 {
    let mut deleted = 0;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel_dir) = stack.pop() {
        let listed = root
            .open_dir(&rel_dir)
            .and_then(|dir| dir.entries().map(|names| (dir, names)));
        let (dir, names) = match listed {
            Ok(found) => found,
            Err(e) => {
                errors.push(format!("{}: cannot list: {e}", show(&rel_dir).display()));
                continue;
            }
        };
        for name in names {
            let rel = rel_dir.join(&name);
            if !keep.contains(&rel) {
                match dir.remove(&name) {
                    Ok(()) => deleted += 1,
                    Err(e) => errors.push(format!("{}: cannot delete: {e}", show(&rel).display())),
                }
            } else if matches!(dir.kind(&name), Ok(Some(EntryKind::Dir))) {
                stack.push(rel);
            }
        }
    }
    deleted
}

/// Re-reads each restored file and checks every chunk's hash, reading in pieces so memory
/// does not grow with what the index claims a blob's length is.
fn verify(
    repo: &Repository,
    root: &Dir,
    files: &[FileTarget],
    failed: &[bool],
    show: &dyn Fn(&Path) -> PathBuf,
    errors: &mut Vec<String>,
) -> u64 {
    let mut verified = 0;
    let mut buf = vec![0u8; 1 << 20];
    for (f, _) in files.iter().zip(failed).filter(|(_, bad)| !**bad) {
        let outcome = (|| -> std::io::Result<std::result::Result<(), String>> {
            let mut h = root.open_file(&f.rel, false)?;
            for id in f.node.content() {
                let Some(loc) = repo.index().get(id) else {
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
            if h.metadata()?.len() != f.node.size {
                return Ok(Err("size differs from the snapshot".into()));
            }
            Ok(Ok(()))
        })();
        match outcome {
            Ok(Ok(())) => verified += 1,
            Ok(Err(why)) => errors.push(format!(
                "{}: verification failed: {why}",
                show(&f.rel).display()
            )),
            Err(e) => errors.push(format!(
                "{}: verification failed: {e}",
                show(&f.rel).display()
            )),
        }
    }
    verified
}
