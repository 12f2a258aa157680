//! Exact comparison of two directory trees, for restore tests.
//!
//! A tree is read into a map from raw relative path to what a restore must
//! reproduce of the entry; two maps are compared and the first difference is
//! named by path. [`Compare`] says how much metadata counts: restic restores
//! modes, times, ownership (as root), xattrs and hard links, while a restore
//! into a Pod's volume by a non-root mover can only reproduce names, kinds,
//! contents and symlink targets.

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// What the comparison looks at beyond names, kinds, contents and symlink
/// targets.
#[derive(Clone, Copy, Debug)]
pub struct Compare {
    /// Permission bits, file mtimes, `user.*` xattrs and hard-link groups.
    pub metadata: bool,
    /// Directory mtimes too (restic restores them).
    pub dir_times: bool,
    /// Owner and group (only a root restore can reproduce them).
    pub ownership: bool,
}

impl Compare {
    /// Everything restic restores when run as root.
    pub const EXACT: Compare = Compare {
        metadata: true,
        dir_times: true,
        ownership: true,
    };
    /// Names, kinds, contents and symlink targets only (what `diff -r` sees).
    pub const CONTENT: Compare = Compare {
        metadata: false,
        dir_times: false,
        ownership: false,
    };
}

/// What a restore must reproduce of one entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    content: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    xattrs: BTreeMap<String, Vec<u8>>,
    /// The first path (in name order) of the same inode, for hard links.
    hardlink_of: Option<Vec<u8>>,
}

/// Reads the tree under `root`: raw relative path → entry.
pub fn read_tree(root: &Path, how: Compare) -> BTreeMap<Vec<u8>, Entry> {
    let mut out = BTreeMap::new();
    let mut inodes = HashMap::new();
    walk(root, root, how, &mut out, &mut inodes);
    out
}

/// Panics naming the first path that is missing, extra or different in
/// `actual` compared with `expected`.
pub fn assert_same_tree(expected: &Path, actual: &Path, how: Compare) {
    let want = read_tree(expected, how);
    let got = read_tree(actual, how);
    for (path, w) in &want {
        let p = String::from_utf8_lossy(path);
        let g = got
            .get(path)
            .unwrap_or_else(|| panic!("{p:?} missing from {}", actual.display()));
        if w != g {
            // Contents can be megabytes: show their lengths instead.
            let brief = |e: &Entry| Entry {
                content: e.content.as_ref().map(|c| c.len().to_le_bytes().to_vec()),
                ..e.clone()
            };
            panic!(
                "{p:?} differs between {} and {}:\nexpected {:?}\nactual   {:?}",
                expected.display(),
                actual.display(),
                brief(w),
                brief(g)
            );
        }
    }
    if let Some(extra) = got.keys().find(|path| !want.contains_key(*path)) {
        panic!(
            "{:?} should not exist in {}",
            String::from_utf8_lossy(extra),
            actual.display()
        );
    }
}

fn walk(
    root: &Path,
    dir: &Path,
    how: Compare,
    out: &mut BTreeMap<Vec<u8>, Entry>,
    inodes: &mut HashMap<(u64, u64), Vec<u8>>,
) {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").file_name())
        .collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let rel = path
            .strip_prefix(root)
            .expect("below root")
            .as_os_str()
            .as_bytes()
            .to_vec();
        let m = fs::symlink_metadata(&path)
            .unwrap_or_else(|e| panic!("cannot stat {}: {e}", path.display()));
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_fifo() {
            "fifo"
        } else if ft.is_file() {
            "file"
        } else {
            "other"
        };
        let metadata = how.metadata;
        let hardlink_of = (metadata && kind == "file" && m.nlink() > 1).then(|| {
            inodes
                .entry((m.dev(), m.ino()))
                .or_insert_with(|| rel.clone())
                .clone()
        });
        let times = metadata && (kind != "dir" || how.dir_times);
        let entry = Entry {
            kind,
            mode: if metadata && kind != "symlink" {
                m.mode() & 0o7777
            } else {
                0
            },
            uid: if how.ownership { m.uid() } else { 0 },
            gid: if how.ownership { m.gid() } else { 0 },
            size: if kind == "file" { m.len() } else { 0 },
            mtime: if times {
                (m.mtime(), m.mtime_nsec())
            } else {
                (0, 0)
            },
            content: (kind == "file").then(|| {
                fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
            }),
            link: (kind == "symlink").then(|| {
                fs::read_link(&path)
                    .expect("a symlink has a target")
                    .as_os_str()
                    .as_bytes()
                    .to_vec()
            }),
            xattrs: if metadata {
                user_xattrs(&path)
            } else {
                BTreeMap::new()
            },
            hardlink_of,
        };
        out.insert(rel, entry);
        if kind == "dir" {
            walk(root, &path, how, out, inodes);
        }
    }
}

/// The `user.*` extended attributes of `path` (not following a symlink).
fn user_xattrs(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let cpath = CString::new(path.as_os_str().as_bytes()).expect("no NUL in a path");
    let mut names = vec![0u8; 4096];
    // SAFETY: the buffers outlive the calls and their lengths are passed.
    let n = unsafe { libc::llistxattr(cpath.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return out;
    }
    for key in names[..n as usize].split(|&b| b == 0) {
        if !key.starts_with(b"user.") {
            continue;
        }
        let ckey = CString::new(key).expect("split at NUL");
        let mut value = vec![0u8; 65536];
        // SAFETY: as above.
        let m = unsafe {
            libc::lgetxattr(
                cpath.as_ptr(),
                ckey.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if m >= 0 {
            value.truncate(m as usize);
            out.insert(String::from_utf8_lossy(key).into_owned(), value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_comparison_ignores_modes_but_not_contents() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for dir in [a.path(), b.path()] {
            fs::create_dir(dir.join("sub")).unwrap();
            fs::write(dir.join("sub/f"), b"same").unwrap();
            std::os::unix::fs::symlink("sub/f", dir.join("link")).unwrap();
        }
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(b.path().join("sub/f"), fs::Permissions::from_mode(0o600)).unwrap();
        assert_same_tree(a.path(), b.path(), Compare::CONTENT);
        let exact = std::panic::catch_unwind(|| {
            assert_same_tree(a.path(), b.path(), Compare::EXACT);
        });
        assert!(exact.is_err(), "a mode difference must count when exact");
        fs::write(b.path().join("sub/f"), b"diff").unwrap();
        let content = std::panic::catch_unwind(|| {
            assert_same_tree(a.path(), b.path(), Compare::CONTENT);
        });
        assert!(content.is_err(), "a content difference must always count");
    }
}
