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

/// True when a file may keep its content list from the parent snapshot: same size and mtime,
/// and either the same inode and ctime, or (on a volume restored at `restored_at`) a ctime no
/// later than the restore. A restore gives every file a new inode and ctime, so without the
/// second rule the first backup after it would read the whole volume again; a file written
/// since has a later ctime and is read.
pub(super) fn unchanged(node: &Node, old: &Node, restored_at: Option<jiff::Timestamp>) -> bool {
    old.node_type == NodeType::File
        && node.size == old.size
        && same_time(&node.mtime, &old.mtime)
        && ((node.inode == old.inode && same_time(&node.ctime, &old.ctime))
            || restored_at.is_some_and(|at| {
                crate::time::parse(&node.ctime).is_some_and(|c| c.timestamp() <= at)
            }))
}

fn same_time(a: &str, b: &str) -> bool {
    a == b
        || matches!(
            (crate::time::parse(a), crate::time::parse(b)),
            (Some(x), Some(y)) if x.timestamp() == y.timestamp()
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(size: u64, inode: u64, mtime: &str, ctime: &str) -> Node {
        let mut node = Node::new(b"f", NodeType::File);
        node.size = size;
        node.inode = inode;
        node.mtime = mtime.into();
        node.ctime = ctime.into();
        node
    }

    #[test]
    fn a_file_is_unchanged_by_identity_or_by_a_restore_it_has_not_changed_since() {
        let old = file(10, 7, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z");
        let restored: jiff::Timestamp = "2026-06-01T12:00:00Z".parse().unwrap();
        let before = "2026-06-01T11:59:59.5Z";
        let after = "2026-06-01T12:00:01Z";
        for (now, restored_at, expected, why) in [
            (old.clone(), None, true, "same inode, times and size"),
            (
                file(10, 7, "2026-01-01T00:00:00Z", after),
                None,
                false,
                "ctime changed",
            ),
            (
                file(10, 8, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
                None,
                false,
                "new inode",
            ),
            (
                file(10, 8, "2026-01-01T00:00:00Z", before),
                Some(restored),
                true,
                "restored, untouched since",
            ),
            (
                file(10, 8, "2026-01-01T00:00:00Z", after),
                Some(restored),
                false,
                "written after the restore",
            ),
            (
                file(11, 8, "2026-01-01T00:00:00Z", before),
                Some(restored),
                false,
                "other size",
            ),
            (
                file(10, 8, "2026-01-02T00:00:00Z", before),
                Some(restored),
                false,
                "other mtime",
            ),
            (
                file(10, 8, "2026-01-01T00:00:00Z", "garbage"),
                Some(restored),
                false,
                "unreadable ctime",
            ),
        ] {
            assert_eq!(unchanged(&now, &old, restored_at), expected, "{why}");
        }
        let dir = Node::new(b"f", NodeType::Dir);
        assert!(
            !unchanged(&old, &dir, Some(restored)),
            "the parent's entry was no file"
        );
    }
}
