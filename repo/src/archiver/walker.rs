//! The walker stage: visits directories in name order on the caller's
//! thread, compares each entry with the parent snapshot, sends changed
//! files to the readers and finished directories to the tree saver.

use std::ffi::OsStr;
use std::fs::{self, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::Ordering;

use crate::handoff::{Receiver, Sender, bounded};

use super::file_reader::{FileJob, content_size};
use super::parent::unchanged;
use super::tree_saver::{DirJob, Pending};
use super::{Archiver, bump};
use crate::tree::{Node, NodeType, Tree};
use crate::{Error, Id, Result};

/// The walking stage: runs on the caller's thread and feeds the others.
pub(super) struct Walker<'a, 'b> {
    pub(super) arch: &'a Archiver<'b>,
    pub(super) files: Sender<FileJob>,
    pub(super) dirs: Sender<DirJob>,
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
                    && unchanged(&node, old, a.restored_at)
                    && old.content().iter().all(|id| a.reused.rely_on(a.repo, id))
                {
                    node.content = old.content.clone();
                    bump(&a.counters.files_unmodified, 1);
                    bump(&a.progress.files_done, 1);
                    bump(&a.progress.bytes_done, node.size);
                    return Ok(Pending::Ready(node));
                }
                self.read(node, path, old.is_some())
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
    pub(super) fn walk_dir(
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

    /// Stores a block device (or image file) as the root's one regular
    /// file `name`. It is always read: writes to a device change neither
    /// its size nor its times, so the parent can only lend dedup, not skip.
    pub(super) fn walk_device(
        &self,
        path: &Path,
        name: &[u8],
        parent: Option<&Tree>,
        parent_subtree: Option<Id>,
    ) -> Result<Receiver<Result<Id>>> {
        let a = self.arch;
        let meta = fs::metadata(path).map_err(|e| Error::io("cannot back up", path, e))?;
        let size = content_size(path, &meta).map_err(|e| Error::io("cannot size", path, e))?;
        let mut node = a.node_from(name, path, &meta);
        node.node_type = NodeType::File;
        node.mode &= crate::tree::mode::PERM;
        node.device = 0;
        node.links = 1;
        node.size = size;
        bump(&a.progress.files_seen, 1);
        bump(&a.progress.bytes_seen, size);
        let file = self.read(node, path, Self::parent_node(parent, name).is_some())?;
        self.queue_dir(vec![file], parent_subtree)
    }

    /// Sends a file to the readers, counted as changed when the parent had
    /// it, else as new.
    fn read(&self, node: Node, path: &Path, in_parent: bool) -> Result<Pending> {
        let a = self.arch;
        bump(
            if in_parent {
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
                size: node.size,
                reply: tx,
            })
            .map_err(|_| a.stopped())?;
        Ok(Pending::File(node, rx))
    }

    /// Builds the virtual directories above the targets (`/data` is stored
    /// as a root holding `data`), with the real directories' metadata.
    pub(super) fn walk_virtual(
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
