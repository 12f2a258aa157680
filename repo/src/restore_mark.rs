//! The mark a restore leaves on the directory it restored into: an extended attribute holding
//! the time it finished. A restore gives every file a new inode and ctime, so a backup that
//! compared only those would read the whole volume again; with the mark, a file whose ctime is
//! not later than the restore, and whose size and mtime match the parent snapshot, is known
//! unchanged (see [`crate::archiver::BackupOptions::restored_at`]).
//!
//! The mark sits on the directory itself, which a backup of its contents (`backup .`) does not
//! store, and travels with the volume through snapshots and clones.

use std::path::Path;

use crate::{Error, Result};

/// The extended attribute's name.
pub const ATTRIBUTE: &str = "user.sluice.restored-at";

/// Marks `dir` as restored at `at`.
pub fn write(dir: &Path, at: jiff::Timestamp) -> Result<()> {
    xattr::set(dir, ATTRIBUTE, at.to_string().as_bytes())
        .map_err(|e| Error::io("cannot mark the restore on", dir, e))
}

/// When `dir` was last restored, if a restore marked it. A mark that does not parse counts as
/// none, so the backup reads every file whose inode or ctime changed.
pub fn read(dir: &Path) -> Option<jiff::Timestamp> {
    let value = xattr::get(dir, ATTRIBUTE).ok()??;
    std::str::from_utf8(&value).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_reads_back_and_garbage_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()), None);
        let at: jiff::Timestamp = "2026-06-01T12:00:00.123456789Z".parse().unwrap();
        if let Err(e) = write(dir.path(), at) {
            panic!("the test directory's file system must take user xattrs: {e}");
        }
        assert_eq!(read(dir.path()), Some(at));
        xattr::set(dir.path(), ATTRIBUTE, b"yesterday").unwrap();
        assert_eq!(read(dir.path()), None);
    }
}
