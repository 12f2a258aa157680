//! The tree saver stage: waits for a directory's entries in order, builds
//! its tree and stores it when new, so trees are written after their
//! contents.

use crate::handoff::{Receiver, Sender};

use super::blob_saver::BlobJob;
use super::file_reader::FileContent;
use super::{Archiver, bump};
use crate::tree::{Node, Tree};
use crate::{Id, Result};

pub(super) enum Pending {
    Ready(Node),
    File(Node, Receiver<Result<FileContent>>),
    Dir(Node, Receiver<Result<Id>>),
}

/// A directory whose entries are all queued.
pub(super) struct DirJob {
    pub(super) entries: Vec<Pending>,
    pub(super) parent_subtree: Option<Id>,
    pub(super) reply: Sender<Result<Id>>,
}

impl Archiver<'_> {
    /// Collects a directory's results in order and stores its tree.
    pub(super) fn save_dir(
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
}
