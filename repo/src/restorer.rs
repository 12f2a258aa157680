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
use std::ffi::{CString, OsStr};
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::backend::FileKind;
use crate::pack::PackedBlob;
use crate::snapshot::SnapshotEntry;
use crate::tree::{Node, NodeType, mode};
use crate::{Error, Id, Repository, Result};

/// The largest single range read from a pack (a blob larger than this is
/// read on its own).
pub const MAX_RANGE: u64 = 8 << 20;

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
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    pub deleted: u64,
    /// Files verified (with `verify`).
    pub verified: u64,
    /// Everything that went wrong, one line each; a restore with errors
    /// still restored everything else.
    pub errors: Vec<String>,
}

struct FileTarget {
    path: PathBuf,
    node: Node,
}

/// One use of a blob: file number and offset.
type Use = (usize, u64);

/// A pack's blobs that the restore needs, by offset, each with its uses.
type PackWork = (Id, Vec<(PackedBlob, Vec<Use>)>);

struct Plan {
    files: Vec<FileTarget>,
    dirs: Vec<(PathBuf, Node)>,
    /// Other nodes (symlinks, fifos, devices), for metadata at the end.
    others: Vec<(PathBuf, Node)>,
    hardlinks: Vec<(PathBuf, PathBuf, Node)>,
    /// Every path the snapshot has below the target (for `delete`).
    keep: HashSet<PathBuf>,
}

/// Restores `snapshot` into `options.target`.
pub fn restore(
    repo: &Repository,
    snapshot: &SnapshotEntry,
    options: &RestoreOptions,
    progress: &RestoreProgress,
) -> Result<RestoreResult> {
    check_target(&options.target)?;
    let mut result = RestoreResult::default();
    let errors = Mutex::new(Vec::<String>::new());
    let mut plan = Plan {
        files: Vec::new(),
        dirs: Vec::new(),
        others: Vec::new(),
        hardlinks: Vec::new(),
        keep: HashSet::new(),
    };
    let mut links_seen: HashMap<(u64, u64), PathBuf> = HashMap::new();
    lay_out(
        repo,
        &snapshot.snapshot.tree,
        &options.target,
        &mut plan,
        &mut links_seen,
        &errors,
    )?;
    result.dirs = plan.dirs.len() as u64;
    result.files = plan.files.len() as u64;
    progress.files_total.store(result.files, Ordering::Relaxed);

    // blob -> uses, grouped by pack.
    let mut by_pack: HashMap<Id, HashMap<Id, (PackedBlob, Vec<Use>)>> = HashMap::new();
    for (i, f) in plan.files.iter().enumerate() {
        let mut offset = 0u64;
        for id in f.node.content() {
            let Some(loc) = repo.index().get(id) else {
                errors.lock().expect("errors").push(format!(
                    "{}: blob {id} is not in the index; the file is incomplete",
                    f.path.display()
                ));
                break;
            };
            let len = loc.blob.plain_length() as u64;
            by_pack
                .entry(loc.pack)
                .or_default()
                .entry(*id)
                .or_insert_with(|| (loc.blob, Vec::new()))
                .1
                .push((i, offset));
            offset += len;
        }
        progress
            .bytes_total
            .fetch_add(f.node.size, Ordering::Relaxed);
        result.bytes += f.node.size;
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
                    restore_pack(repo, pack, blobs, &plan.files, &errors, progress);
                }
            });
        }
    });

    for (link, original, _) in &plan.hardlinks {
        let _ = fs::remove_file(link);
        if let Err(e) = fs::hard_link(original, link) {
            errors.lock().expect("errors").push(format!(
                "{}: cannot create hard link to {}: {e}",
                link.display(),
                original.display()
            ));
        }
    }
    for f in &plan.files {
        apply_metadata(&f.path, &f.node, &errors);
    }
    for (p, n) in &plan.others {
        apply_metadata(p, n, &errors);
    }
    if options.delete {
        result.deleted = delete_extra(&options.target, &plan.keep, &errors);
    }
    // Deepest directories first, so a parent's times are set after its
    // children stop changing it.
    plan.dirs
        .sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (p, n) in &plan.dirs {
        apply_metadata(p, n, &errors);
    }
    if options.verify {
        result.verified = verify(repo, &plan.files, &errors);
    }
    result.errors = errors.into_inner().expect("errors");
    Ok(result)
}

/// Fails early, before any work, when the target cannot be written.
fn check_target(target: &Path) -> Result<()> {
    fs::create_dir_all(target).map_err(|e| Error::io("cannot create restore target", target, e))?;
    let probe = target.join(format!(".sluice-restore-probe-{}", std::process::id()));
    File::create(&probe).map_err(|e| Error::io("restore target is not writable:", target, e))?;
    let _ = fs::remove_file(&probe);
    Ok(())
}

fn lay_out(
    repo: &Repository,
    tree_id: &Id,
    dir: &Path,
    plan: &mut Plan,
    links_seen: &mut HashMap<(u64, u64), PathBuf>,
    errors: &Mutex<Vec<String>>,
) -> Result<()> {
    let tree = match repo.load_tree(tree_id) {
        Ok(t) => t,
        Err(e) => {
            errors
                .lock()
                .expect("errors")
                .push(format!("{}: cannot read its tree: {e}", dir.display()));
            return Ok(());
        }
    };
    let err = |msg: String| errors.lock().expect("errors").push(msg);
    for node in tree.nodes {
        let name = node.name_bytes();
        if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
            err(format!(
                "{}: skipping unsafe name {:?}",
                dir.display(),
                node.quoted_name
            ));
            continue;
        }
        let path = dir.join(OsStr::from_bytes(&name));
        plan.keep.insert(path.clone());
        match node.node_type {
            NodeType::Dir => {
                if let Err(e) = ensure_dir(&path) {
                    err(format!("{}: cannot create directory: {e}", path.display()));
                    continue;
                }
                if let Some(sub) = node.subtree {
                    lay_out(repo, &sub, &path, plan, links_seen, errors)?;
                }
                plan.dirs.push((path, node));
            }
            NodeType::File => {
                if node.links > 1 && node.inode != 0 {
                    let key = (node.device_id, node.inode);
                    if let Some(first) = links_seen.get(&key) {
                        plan.hardlinks.push((path, first.clone(), node));
                        continue;
                    }
                    links_seen.insert(key, path.clone());
                }
                match create_sized(&path, node.size) {
                    Ok(()) => plan.files.push(FileTarget { path, node }),
                    Err(e) => err(format!("{}: cannot create file: {e}", path.display())),
                }
            }
            _ => {
                if let Err(e) = create_special(&path, &node) {
                    err(format!(
                        "{}: cannot create {:?}: {e}",
                        path.display(),
                        node.node_type
                    ));
                    continue;
                }
                plan.others.push((path, node));
            }
        }
    }
    Ok(())
}

fn ensure_dir(path: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => {
            fs::remove_file(path)?;
            fs::create_dir(path)
        }
        Err(_) => fs::create_dir(path),
    }
}

/// Creates (or empties) a file and gives it its final size, so unwritten
/// regions are holes.
fn create_sized(path: &Path, size: u64) -> std::io::Result<()> {
    if let Ok(m) = fs::symlink_metadata(path)
        && !m.is_file()
    {
        remove_any(path)?;
    }
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    f.set_len(size)
}

fn remove_any(path: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(_) => Ok(()),
    }
}

fn cstr(path: &Path) -> std::io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)
}

fn create_special(path: &Path, node: &Node) -> std::io::Result<()> {
    remove_any(path)?;
    match node.node_type {
        NodeType::Symlink => {
            std::os::unix::fs::symlink(OsStr::from_bytes(&node.link_target_bytes()), path)
        }
        NodeType::Fifo | NodeType::Dev | NodeType::Chardev | NodeType::Socket => {
            let kind = match node.node_type {
                NodeType::Fifo => libc::S_IFIFO,
                NodeType::Dev => libc::S_IFBLK,
                NodeType::Chardev => libc::S_IFCHR,
                _ => libc::S_IFSOCK,
            };
            let c = cstr(path)?;
            // SAFETY: c is a valid NUL-terminated path.
            let rc = unsafe {
                libc::mknod(
                    c.as_ptr(),
                    kind | (node.mode & 0o777),
                    node.device as libc::dev_t,
                )
            };
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Reads the needed ranges of one pack and writes every blob where it goes.
fn restore_pack(
    repo: &Repository,
    pack: &Id,
    blobs: &[(PackedBlob, Vec<Use>)],
    files: &[FileTarget],
    errors: &Mutex<Vec<String>>,
    progress: &RestoreProgress,
) {
    let name = pack.to_hex();
    let mut i = 0;
    while i < blobs.len() {
        // Coalesce neighbouring blobs into one range read.
        let start = blobs[i].0.offset as u64;
        let mut end = start + blobs[i].0.length as u64;
        let mut j = i + 1;
        while j < blobs.len() {
            let b = &blobs[j].0;
            let b_end = b.offset as u64 + b.length as u64;
            if b.offset as u64 > end + (256 << 10) || b_end - start > MAX_RANGE {
                break;
            }
            end = b_end;
            j += 1;
        }
        let group = &blobs[i..j];
        i = j;
        let mut data = match repo
            .backend()
            .load_range(FileKind::Pack, &name, start, end - start)
        {
            Ok(d) => d,
            Err(e) => {
                for (b, uses) in group {
                    report(errors, files, uses, &b.id, pack, &e.to_string());
                }
                continue;
            }
        };
        for (b, uses) in group {
            let at = (b.offset as u64 - start) as usize;
            let sealed = &mut data[at..at + b.length as usize];
            let plain = match repo.open_blob(pack, b, sealed) {
                Ok(p) => p,
                Err(e) => {
                    report(errors, files, uses, &b.id, pack, &e.to_string());
                    continue;
                }
            };
            let zero = plain.iter().all(|&x| x == 0);
            for &(fi, off) in uses {
                let f = &files[fi];
                progress
                    .bytes_done
                    .fetch_add(plain.len() as u64, Ordering::Relaxed);
                if zero {
                    continue; // a hole already
                }
                let res = OpenOptions::new()
                    .write(true)
                    .open(&f.path)
                    .and_then(|h| h.write_all_at(&plain, off));
                if let Err(e) = res {
                    errors.lock().expect("errors").push(format!(
                        "{}: write at offset {off} failed: {e}",
                        f.path.display()
                    ));
                }
            }
        }
    }
}

fn report(
    errors: &Mutex<Vec<String>>,
    files: &[FileTarget],
    uses: &[Use],
    blob: &Id,
    pack: &Id,
    why: &str,
) {
    let mut paths: Vec<&Path> = uses
        .iter()
        .map(|&(fi, _)| files[fi].path.as_path())
        .collect();
    paths.dedup();
    for p in paths {
        errors.lock().expect("errors").push(format!(
            "{}: blob {blob} in pack {pack} could not be restored: {why}",
            p.display()
        ));
    }
}

/// Owner, permissions, extended attributes and times, as restic restores them.
fn apply_metadata(path: &Path, node: &Node, errors: &Mutex<Vec<String>>) {
    let Ok(c) = cstr(path) else { return };
    // SAFETY: c is a valid path; lchown does not follow symlinks.
    let rc = unsafe { libc::lchown(c.as_ptr(), node.uid, node.gid) };
    if rc != 0 && crate::host::uid() == 0 {
        errors.lock().expect("errors").push(format!(
            "{}: cannot set owner {}:{}: {}",
            path.display(),
            node.uid,
            node.gid,
            std::io::Error::last_os_error()
        ));
    }
    if node.node_type != NodeType::Symlink {
        use std::os::unix::fs::PermissionsExt;
        let perm = fs::Permissions::from_mode(mode::to_unix_perm(node.mode));
        if let Err(e) = fs::set_permissions(path, perm) {
            errors
                .lock()
                .expect("errors")
                .push(format!("{}: cannot set mode: {e}", path.display()));
        }
    }
    for xa in &node.extended_attributes {
        if let Err(e) = xattr::set(path, &xa.name, &xa.value) {
            tracing::debug!(path = %path.display(), attr = %xa.name, error = %e, "extended attribute not restored");
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
    let times = [to_ts(&node.atime), to_ts(&node.mtime)];
    // SAFETY: valid path and a two-element timespec array.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        errors.lock().expect("errors").push(format!(
            "{}: cannot set times: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
}

/// Removes everything below `dir` that the snapshot does not have.
fn delete_extra(dir: &Path, keep: &HashSet<PathBuf>, errors: &Mutex<Vec<String>>) -> u64 {
    let mut deleted = 0;
    let Ok(rd) = fs::read_dir(dir) else { return 0 };
    for e in rd.flatten() {
        let p = e.path();
        if !keep.contains(&p) {
            match remove_any(&p) {
                Ok(()) => deleted += 1,
                Err(err) => errors
                    .lock()
                    .expect("errors")
                    .push(format!("{}: cannot delete: {err}", p.display())),
            }
        } else if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            deleted += delete_extra(&p, keep, errors);
        }
    }
    deleted
}

/// Re-reads each restored file and checks every chunk's hash.
fn verify(repo: &Repository, files: &[FileTarget], errors: &Mutex<Vec<String>>) -> u64 {
    let mut verified = 0;
    let mut buf = Vec::new();
    for f in files {
        let mut ok = true;
        let result = (|| -> std::io::Result<()> {
            let mut h = File::open(&f.path)?;
            for id in f.node.content() {
                let Some(loc) = repo.index().get(id) else {
                    ok = false;
                    return Ok(());
                };
                buf.resize(loc.blob.plain_length() as usize, 0);
                h.read_exact(&mut buf)?;
                if Id::hash(&buf) != *id {
                    errors.lock().expect("errors").push(format!(
                        "{}: verification failed: content differs from blob {id}",
                        f.path.display()
                    ));
                    ok = false;
                    return Ok(());
                }
            }
            if h.metadata()?.len() != f.node.size {
                errors.lock().expect("errors").push(format!(
                    "{}: verification failed: size differs from the snapshot",
                    f.path.display()
                ));
                ok = false;
            }
            Ok(())
        })();
        if let Err(e) = result {
            errors
                .lock()
                .expect("errors")
                .push(format!("{}: verification failed: {e}", f.path.display()));
            ok = false;
        }
        if ok {
            verified += 1;
        }
    }
    verified
}
