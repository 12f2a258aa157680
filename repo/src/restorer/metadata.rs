//! Owner, permissions, extended attributes and times of restored entries, as restic
//! restores them.
//!
//! Files and directories get theirs through their own open descriptor, so no name is looked
//! up again (nothing can be swapped in between, and it costs no path walk); symlinks and
//! special files get theirs by name in their parent directory, never following a link.
//! What to set is decided once from the node ([`Attrs::of`]); applying it is the effect.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::safe_dir::Dir;
use crate::tree::{ExtendedAttribute, Node, NodeType, mode};

/// What a restored entry gets, decided from its node.
pub(super) struct Attrs<'a> {
    uid: u32,
    gid: u32,
    /// Unix permission bits with setuid, setgid and sticky; `None` for a symlink, which
    /// has none of its own.
    perm: Option<u32>,
    atime: libc::timespec,
    mtime: libc::timespec,
    xattrs: &'a [ExtendedAttribute],
}

/// A time as the kernel takes it; an unreadable time is left as it is (`UTIME_OMIT`).
fn timespec(s: &str) -> libc::timespec {
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
}

impl<'a> Attrs<'a> {
    /// What `node` says its restored entry gets.
    pub(super) fn of(node: &'a Node) -> Attrs<'a> {
        Attrs {
            uid: node.uid,
            gid: node.gid,
            perm: (node.node_type != NodeType::Symlink).then(|| mode::to_unix_perm(node.mode)),
            atime: timespec(&node.atime),
            mtime: timespec(&node.mtime),
            xattrs: &node.extended_attributes,
        }
    }

    /// Applies everything to the open file or directory `fd`; returns what could not be
    /// set, one line each, without the path (the caller knows it).
    pub(super) fn apply_to_fd(&self, fd: BorrowedFd<'_>) -> Vec<String> {
        let fd = fd.as_raw_fd();
        let mut problems = Vec::new();
        // Owner before mode: chown clears setuid and setgid.
        // SAFETY: `fd` is an open descriptor for the duration of the call.
        if let Err(e) = check(unsafe { libc::fchown(fd, self.uid, self.gid) }) {
            self.owner_problem(e, &mut problems);
        }
        if let Some(perm) = self.perm {
            // SAFETY: as above.
            if let Err(e) = check(unsafe { libc::fchmod(fd, perm as libc::mode_t) }) {
                problems.push(format!("cannot set mode: {e}"));
            }
        }
        for xa in self.xattrs {
            let Ok(name) = CString::new(xa.name.as_str()) else {
                continue;
            };
            // SAFETY: valid descriptor, NUL-terminated name and a buffer of `len` bytes.
            let rc = unsafe {
                libc::fsetxattr(
                    fd,
                    name.as_ptr(),
                    xa.value.as_ptr().cast(),
                    xa.value.len(),
                    0,
                )
            };
            if let Err(e) = check(rc) {
                tracing::debug!(attr = %xa.name, error = %e, "extended attribute not restored");
            }
        }
        // Last, so nothing above changes the times again.
        let times = [self.atime, self.mtime];
        // SAFETY: valid descriptor and a two-element array.
        if let Err(e) = check(unsafe { libc::futimens(fd, times.as_ptr()) }) {
            problems.push(format!("cannot set times: {e}"));
        }
        problems
    }

    /// Applies everything to `name` in `dir` itself (a symlink's own owner and times).
    pub(super) fn apply_by_name(&self, dir: &Dir, name: &OsStr) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = dir.set_owner(name, self.uid, self.gid) {
            self.owner_problem(e, &mut problems);
        }
        if let Some(perm) = self.perm
            && let Err(e) = dir.set_mode(name, perm)
        {
            problems.push(format!("cannot set mode: {e}"));
        }
        for xa in self.xattrs {
            if let Err(e) = dir.set_xattr(name, &xa.name, &xa.value) {
                tracing::debug!(attr = %xa.name, error = %e, "extended attribute not restored");
            }
        }
        if let Err(e) = dir.set_times(name, self.atime, self.mtime) {
            problems.push(format!("cannot set times: {e}"));
        }
        problems
    }

    /// Only root can give entries away; anyone else keeps them, as restic does.
    fn owner_problem(&self, e: io::Error, problems: &mut Vec<String>) {
        if crate::host::uid() == 0 {
            problems.push(format!("cannot set owner {}:{}: {e}", self.uid, self.gid));
        }
    }
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_follow_the_node() {
        let mut file = Node::new(b"f", NodeType::File);
        file.mode = 0o640 | mode::SETUID;
        file.mtime = "2024-05-06T07:08:09.5+02:00".into();
        file.atime = "not a time".into();
        let mut link = Node::new(b"l", NodeType::Symlink);
        link.mode = mode::SYMLINK | 0o777;
        for (node, perm, mtime, atime_omitted) in [
            (&file, Some(0o640 | libc::S_ISUID), 1_714_972_089, true),
            (&link, None, 0, true),
        ] {
            let a = Attrs::of(node);
            assert_eq!(a.perm, perm, "{}", node.quoted_name);
            if mtime != 0 {
                assert_eq!(a.mtime.tv_sec, mtime);
                assert_eq!(a.mtime.tv_nsec, 500_000_000);
            }
            assert_eq!(a.atime.tv_nsec == libc::UTIME_OMIT, atime_omitted);
        }
    }
}
