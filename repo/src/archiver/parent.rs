//! The parent snapshot: which one a backup compares against, and when a
//! file may keep its content list from it.

use super::{BackupOptions, ParentChoice};
use crate::snapshot::SnapshotEntry;
use crate::tree::{Node, NodeType};
use crate::{Repository, Result};

/// The snapshot whose tree the walk compares against, if any.
pub(super) fn find_parent(
    repo: &Repository,
    options: &BackupOptions,
    paths: &[String],
) -> Result<Option<SnapshotEntry>> {
    match &options.parent {
        ParentChoice::None => Ok(None),
        ParentChoice::Id(id) => Ok(Some(repo.find_snapshot(&id.to_hex(), &Default::default())?)),
        ParentChoice::Auto => {
            let now = options.time.unwrap_or_else(jiff::Timestamp::now);
            Ok(repo.list_snapshots()?.into_iter().rev().find(|e| {
                e.snapshot.hostname == options.hostname
                    && e.snapshot.has_paths(paths)
                    && e.snapshot.timestamp() <= now
            }))
        }
    }
}

/// True when a file may keep its content list from the parent snapshot.
pub(super) fn unchanged(node: &Node, old: &Node) -> bool {
    old.node_type == NodeType::File
        && node.size == old.size
        && node.inode == old.inode
        && same_time(&node.mtime, &old.mtime)
        && same_time(&node.ctime, &old.ctime)
}

fn same_time(a: &str, b: &str) -> bool {
    a == b
        || matches!(
            (crate::time::parse(a), crate::time::parse(b)),
            (Some(x), Some(y)) if x.timestamp() == y.timestamp()
        )
}
