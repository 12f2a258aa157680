//! The restore plan: the snapshot's trees walked depth first, cut into batches of whole
//! files.
//!
//! The planner runs on its own thread ahead of the workers. It creates each directory as
//! it meets it (the workers need it to create files in), and queues everything else for
//! the workers: files, symlinks and special files are created by them, not here, so a file
//! system that is slow to create inodes is used from every worker at once. A batch closes
//! after [`BATCH_FILES`] entries or [`BATCH_BLOBS`] blob uses, so memory holds one batch
//! being planned and one being restored, never the whole tree: the walk keeps only the
//! directories on its current path (each with the subdirectories still to visit).
//!
//! Each batch also carries the directories whose whole subtree is in this batch or an
//! earlier one, in post-order (children before parents): their metadata can be applied
//! once the batch is written, deepest first, and nothing will touch them again.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::handoff::Sender;

use super::RestoreProgress;
use crate::safe_dir::Dir;
use crate::tree::{NameProblem, Node, NodeType, name_problems};
use crate::{Id, Repository};

/// The longest path below the target that is restored: the kernel's `PATH_MAX`. A deeper
/// chain of trees is reported, not walked, so a hostile snapshot cannot make the plan's paths
/// grow without bound.
pub(super) const MAX_PATH: usize = 4096;

/// Entries per batch: enough that the pause between batches (the workers finishing the last
/// pack of one) is rare, few enough that a batch's plan is a few MiB.
const BATCH_FILES: usize = 8192;

/// Blob uses per batch (a use is one blob at one offset of one file).
const BATCH_BLOBS: usize = 65_536;

/// A regular file to restore.
pub(super) struct FileTarget {
    /// Path below the target.
    pub(super) rel: PathBuf,
    pub(super) node: Node,
    /// Its (device, inode) when other names link to it.
    pub(super) link_key: Option<(u64, u64)>,
}

/// A second name of a file planned earlier (in this batch or before).
pub(super) struct HardLink {
    pub(super) rel: PathBuf,
    pub(super) original: PathBuf,
    pub(super) key: (u64, u64),
}

/// One batch of work.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) files: Vec<FileTarget>,
    /// Symlinks, fifos, sockets and devices.
    pub(super) others: Vec<(PathBuf, Node)>,
    pub(super) links: Vec<HardLink>,
    /// Directories finished with this batch, children before parents.
    pub(super) dirs_done: Vec<(PathBuf, Node)>,
    blob_uses: usize,
}

impl Batch {
    fn is_full(&self) -> bool {
        self.files.len() + self.others.len() >= BATCH_FILES || self.blob_uses >= BATCH_BLOBS
    }
}

/// What the walk did besides planning files.
#[derive(Default)]
pub(super) struct WalkTotals {
    pub(super) dirs: u64,
    pub(super) deleted: u64,
}

/// A directory on the walk's current path, with its subdirectories still to visit.
struct Frame {
    rel: PathBuf,
    /// `None` for the target itself, whose metadata the snapshot does not own.
    node: Option<Node>,
    subdirs: std::vec::IntoIter<(Node, Id)>,
}

/// The tree walk; sends batches to the workers' side as they fill.
pub(super) struct Planner<'a> {
    pub(super) repo: &'a Repository,
    pub(super) root: &'a Dir,
    pub(super) target: &'a Path,
    pub(super) delete: bool,
    pub(super) errors: &'a Mutex<Vec<String>>,
    pub(super) progress: &'a RestoreProgress,
    pub(super) batches: Sender<Batch>,
}

impl Planner<'_> {
    fn error(&self, message: String) {
        self.errors.lock().expect("errors").push(message);
    }

    /// Walks the whole snapshot from `tree`, with an explicit stack so no depth of trees can
    /// overflow the thread's stack. Stops early when the workers' side has gone away.
    pub(super) fn walk(&self, tree: &Id) -> WalkTotals {
        let mut totals = WalkTotals::default();
        let mut links_seen: HashMap<(u64, u64), PathBuf> = HashMap::new();
        let mut batch = Batch::default();
        let mut stack = vec![self.enter(
            tree,
            PathBuf::new(),
            None,
            &mut batch,
            &mut links_seen,
            &mut totals,
        )];
        loop {
            if batch.is_full() && self.batches.send(std::mem::take(&mut batch)).is_err() {
                return totals;
            }
            let Some(top) = stack.last_mut() else { break };
            match top.subdirs.next() {
                Some((node, subtree)) => {
                    let rel = top.rel.join(OsStr::from_bytes(&node.name_bytes()));
                    let frame = self.enter(
                        &subtree,
                        rel,
                        Some(node),
                        &mut batch,
                        &mut links_seen,
                        &mut totals,
                    );
                    stack.push(frame);
                }
                None => {
                    let done = stack.pop().expect("top of stack");
                    if let Some(node) = done.node {
                        batch.dirs_done.push((done.rel, node));
                    }
                }
            }
        }
        let _ = self.batches.send(batch);
        totals
    }

    /// Loads the tree of the directory `rel`, creates its subdirectories, and queues its
    /// other entries into `batch`. Returns the directory's frame, with the subdirectories
    /// that have trees to visit.
    fn enter(
        &self,
        tree_id: &Id,
        rel: PathBuf,
        node: Option<Node>,
        batch: &mut Batch,
        links_seen: &mut HashMap<(u64, u64), PathBuf>,
        totals: &mut WalkTotals,
    ) -> Frame {
        let mut subdirs = Vec::new();
        let shown = self.target.join(&rel);
        let tree = match self.repo.load_tree(tree_id) {
            Ok(t) => Some(t),
            Err(e) => {
                self.error(format!("{}: cannot read its tree: {e}", shown.display()));
                None
            }
        };
        let dir = match tree {
            Some(_) => match self.root.open_dir(&rel) {
                Ok(d) => Some(d),
                Err(e) => {
                    self.error(format!("{}: cannot open directory: {e}", shown.display()));
                    None
                }
            },
            None => None,
        };
        if let (Some(tree), Some(dir)) = (tree, dir) {
            let problems: HashMap<usize, NameProblem> =
                name_problems(&tree.nodes).into_iter().collect();
            let mut reported: HashSet<&str> = HashSet::new();
            for (i, problem) in &problems {
                let quoted = tree.nodes[*i].quoted_name.as_str();
                if reported.insert(quoted) {
                    self.error(format!(
                        "{}: skipping {quoted:?} of tree {tree_id}: {problem} (a damaged or hostile snapshot; `sluice-mover check` lists such trees)",
                        shown.display()
                    ));
                }
            }
            let mut keep: HashSet<OsString> = HashSet::new();
            let mut entries = Vec::with_capacity(tree.nodes.len());
            for (i, node) in tree.nodes.into_iter().enumerate() {
                if problems.contains_key(&i) {
                    continue;
                }
                let name = OsString::from_vec(node.name_bytes());
                let child = rel.join(&name);
                if child.as_os_str().len() >= MAX_PATH {
                    self.error(format!(
                        "{}: skipped, its path below the target is longer than {MAX_PATH} bytes",
                        shown.display()
                    ));
                    continue;
                }
                if self.delete {
                    keep.insert(name.clone());
                }
                entries.push((name, child, node));
            }
            if self.delete {
                totals.deleted += self.delete_extra(&dir, &shown, &keep);
            }
            for (name, child, node) in entries {
                self.entry(
                    &dir,
                    &name,
                    child,
                    node,
                    batch,
                    &mut subdirs,
                    links_seen,
                    totals,
                );
            }
        }
        Frame {
            rel,
            node,
            subdirs: subdirs.into_iter(),
        }
    }

    /// Plans one entry of a directory.
    #[allow(clippy::too_many_arguments)]
    fn entry(
        &self,
        dir: &Dir,
        name: &OsStr,
        rel: PathBuf,
        node: Node,
        batch: &mut Batch,
        subdirs: &mut Vec<(Node, Id)>,
        links_seen: &mut HashMap<(u64, u64), PathBuf>,
        totals: &mut WalkTotals,
    ) {
        match node.node_type {
            NodeType::Dir => {
                if let Err(e) = dir.ensure_dir(name) {
                    self.error(format!(
                        "{}: cannot create directory: {e}",
                        self.target.join(&rel).display()
                    ));
                    return;
                }
                totals.dirs += 1;
                match node.subtree {
                    Some(sub) => subdirs.push((node, sub)),
                    None => batch.dirs_done.push((rel, node)),
                }
            }
            NodeType::File => {
                let mut link_key = None;
                if node.links > 1 && node.inode != 0 {
                    let key = (node.device_id, node.inode);
                    if let Some(original) = links_seen.get(&key) {
                        batch.links.push(HardLink {
                            rel,
                            original: original.clone(),
                            key,
                        });
                        return;
                    }
                    links_seen.insert(key, rel.clone());
                    link_key = Some(key);
                }
                self.progress.files_total.fetch_add(1, Ordering::Relaxed);
                add(&self.progress.bytes_total, node.size);
                batch.blob_uses += node.content().len();
                batch.files.push(FileTarget {
                    rel,
                    node,
                    link_key,
                });
            }
            NodeType::Irregular => self.error(format!(
                "{}: skipped, an irregular file (as the backup recorded it) cannot be restored",
                self.target.join(&rel).display()
            )),
            _ => batch.others.push((rel, node)),
        }
    }

    /// Removes the entries of `dir` that the snapshot does not have (`keep` holds the names
    /// it does); a directory goes with everything below it, symlinks are removed, never
    /// followed. Returns how many entries went.
    fn delete_extra(&self, dir: &Dir, shown: &Path, keep: &HashSet<OsString>) -> u64 {
        let names = match dir.entries() {
            Ok(names) => names,
            Err(e) => {
                self.error(format!("{}: cannot list: {e}", shown.display()));
                return 0;
            }
        };
        let mut deleted = 0;
        for name in names.into_iter().filter(|n| !keep.contains(n)) {
            match dir.remove(&name) {
                Ok(()) => deleted += 1,
                Err(e) => self.error(format!(
                    "{}: cannot delete: {e}",
                    shown.join(&name).display()
                )),
            }
        }
        deleted
    }
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}
