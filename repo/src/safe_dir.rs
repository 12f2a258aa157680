//! Directories of a restore target, held open as descriptors, so that nothing a snapshot holds
//! can make a restore write outside its target.
//!
//! A snapshot is untrusted input. A tree may name an entry twice (a directory `a`, then a
//! symlink `a` pointing at `/etc`), and a target may already hold symlinks. Path-based calls
//! (`open`, `chmod`, `set_permissions`) follow a symlink in any component of a path, so every
//! operation here works relative to an open directory: entries are created and changed by name
//! with the `*at` system calls, deeper paths are opened with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` (or, where the kernel or a seccomp profile
//! lacks it, one `openat(O_NOFOLLOW | O_DIRECTORY)` per component), and a symlink met on the way
//! is an error (`ELOOP`), never a detour. Metadata is changed with `AT_SYMLINK_NOFOLLOW`.
//!
//! Relative paths passed in are made of names the caller validated (see
//! [`crate::tree::name_problems`]); `RESOLVE_BENEATH` would refuse `..` and absolute paths anyway.
//! The handle is `Sync`: restore workers share one target handle and open files below it.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path};
use std::sync::atomic::{AtomicU8, Ordering};

/// An open directory; everything below it is reached without following symlinks.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
}

/// What a name in a directory is, looked at without following symlinks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File,
    Symlink,
    /// A fifo, socket or device.
    Special,
}

fn cstr(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains a NUL byte"))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by a successful open call and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether `openat2` works here: 0 not tried yet, 1 yes, 2 no (old kernel, or a seccomp
/// profile that refuses it).
static OPENAT2: AtomicU8 = AtomicU8::new(0);

const DIR_FLAGS: libc::c_int = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Dir {
    /// Opens the restore target itself. The user chose this path, so it may lead through
    /// symlinks; nothing below it will.
    pub fn open(path: &Path) -> io::Result<Dir> {
        let c = cstr(path.as_os_str())?;
        // SAFETY: `c` is a valid NUL-terminated path.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        Ok(Dir { fd: owned(fd)? })
    }

    fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Opens `rel` below this directory with `flags`, following no symlink in any component.
    fn open_beneath(&self, rel: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
        self.open_beneath_mode(rel, flags, 0)
    }

    /// [`Dir::open_beneath`] with the permission bits a file created by `O_CREAT` gets.
    fn open_beneath_mode(&self, rel: &Path, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
        let flags = flags | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        if OPENAT2.load(Ordering::Relaxed) != 2 {
            let c = cstr(rel.as_os_str())?;
            // SAFETY: open_how is plain data; zero is a valid value for every field.
            let mut how: libc::open_how = unsafe { std::mem::zeroed() };
            how.flags = flags as u64;
            how.mode = u64::from(mode);
            how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS;
            // SAFETY: the pointers are valid for the call and the size is the struct's.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_openat2,
                    self.raw(),
                    c.as_ptr(),
                    &how as *const libc::open_how,
                    std::mem::size_of::<libc::open_how>(),
                )
            };
            if fd >= 0 {
                OPENAT2.store(1, Ordering::Relaxed);
                return owned(fd as libc::c_int);
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ENOSYS) | Some(libc::EPERM) if OPENAT2.load(Ordering::Relaxed) == 0 => {
                    OPENAT2.store(2, Ordering::Relaxed);
                }
                _ => return Err(e),
            }
        }
        self.open_by_components(rel, flags, mode)
    }

    /// The fallback of [`Dir::open_beneath`]: one `openat(O_NOFOLLOW)` per component.
    fn open_by_components(&self, rel: &Path, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
        let names: Vec<&OsStr> = rel
            .components()
            .map(|c| match c {
                Component::Normal(n) => Ok(n),
                _ => Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is not a plain relative path", rel.display()),
                )),
            })
            .collect::<io::Result<_>>()?;
        let Some((last, parents)) = names.split_last() else {
            // SAFETY: duplicating our own valid descriptor.
            return owned(unsafe { libc::fcntl(self.raw(), libc::F_DUPFD_CLOEXEC, 0) });
        };
        let mut dir: Option<OwnedFd> = None;
        for name in parents {
            let at = dir.as_ref().map_or(self.raw(), AsRawFd::as_raw_fd);
            let c = cstr(name)?;
            // SAFETY: valid descriptor and NUL-terminated name.
            let fd = unsafe { libc::openat(at, c.as_ptr(), DIR_FLAGS | libc::O_CLOEXEC) };
            dir = Some(owned(fd)?);
        }
        let at = dir.as_ref().map_or(self.raw(), AsRawFd::as_raw_fd);
        let c = cstr(last)?;
        // SAFETY: valid descriptor and NUL-terminated name.
        owned(unsafe { libc::openat(at, c.as_ptr(), flags, mode as libc::c_uint) })
    }

    /// Opens the directory `rel` below this one (an empty path is this directory again).
    pub fn open_dir(&self, rel: &Path) -> io::Result<Dir> {
        if rel.as_os_str().is_empty() {
            return self.open_by_components(rel, 0, 0).map(|fd| Dir { fd });
        }
        Ok(Dir {
            fd: self.open_beneath(rel, DIR_FLAGS)?,
        })
    }

    /// Opens the regular file `rel` below this directory, for writing or for reading. It must
    /// exist; a symlink, at its end or on the way, is an error.
    pub fn open_file(&self, rel: &Path, write: bool) -> io::Result<File> {
        let access = if write {
            libc::O_WRONLY
        } else {
            libc::O_RDONLY
        };
        let fd = self.open_beneath(rel, access | libc::O_NONBLOCK)?;
        let file = File::from(fd);
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        Ok(file)
    }

    /// What `name` is, or `None` when there is nothing by that name.
    pub fn kind(&self, name: &OsStr) -> io::Result<Option<EntryKind>> {
        let c = cstr(name)?;
        // SAFETY: stat is plain data, filled in by the call.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid descriptor, name and buffer.
        let rc =
            unsafe { libc::fstatat(self.raw(), c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::NotFound {
                Ok(None)
            } else {
                Err(e)
            };
        }
        Ok(Some(match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => EntryKind::Dir,
            libc::S_IFREG => EntryKind::File,
            libc::S_IFLNK => EntryKind::Symlink,
            _ => EntryKind::Special,
        }))
    }

    /// Makes `name` a directory: an existing directory is kept, anything else there is removed
    /// first. A fresh target costs one `mkdirat`; only a name already taken is looked at.
    pub fn ensure_dir(&self, name: &OsStr) -> io::Result<()> {
        let c = cstr(name)?;
        // SAFETY: valid descriptor and name.
        let made = check(unsafe { libc::mkdirat(self.raw(), c.as_ptr(), 0o700) });
        match made {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            r => return r,
        }
        match self.kind(name)? {
            Some(EntryKind::Dir) => return Ok(()),
            Some(_) => self.remove(name)?,
            None => {}
        }
        // SAFETY: valid descriptor and name.
        check(unsafe { libc::mkdirat(self.raw(), c.as_ptr(), 0o700) })
    }

    /// Creates (or empties) the regular file `rel` below this directory and returns it open
    /// for writing. A name not yet taken costs one open (`O_CREAT | O_EXCL`, which creates a
    /// new regular file or fails, never following anything); only a name already taken is
    /// looked at, and whatever is there and is not a regular file is removed first.
    pub fn create_file_beneath(&self, rel: &Path) -> io::Result<File> {
        let fresh =
            self.open_beneath_mode(rel, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o600);
        match fresh {
            Ok(fd) => return Ok(File::from(fd)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let parent = rel.parent().unwrap_or(Path::new(""));
        let name = rel
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
        self.open_dir(parent)?.create_file(name)
    }

    /// Creates (or empties) the regular file `name` and returns it open for writing.
    /// Anything else by that name is removed first.
    pub fn create_file(&self, name: &OsStr) -> io::Result<File> {
        match self.kind(name)? {
            Some(EntryKind::File) | None => {}
            Some(_) => self.remove(name)?,
        }
        let c = cstr(name)?;
        // SAFETY: valid descriptor and name.
        let fd = unsafe {
            libc::openat(
                self.raw(),
                c.as_ptr(),
                libc::O_WRONLY
                    | libc::O_CREAT
                    | libc::O_TRUNC
                    | libc::O_NOFOLLOW
                    | libc::O_NONBLOCK
                    | libc::O_CLOEXEC,
                0o600 as libc::c_uint,
            )
        };
        let file = File::from(owned(fd)?);
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        Ok(file)
    }

    /// Creates the file `name`, failing when anything has that name already.
    pub fn create_new(&self, name: &OsStr) -> io::Result<File> {
        let c = cstr(name)?;
        // SAFETY: valid descriptor and name.
        let fd = unsafe {
            libc::openat(
                self.raw(),
                c.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600 as libc::c_uint,
            )
        };
        Ok(File::from(owned(fd)?))
    }

    /// Creates the symlink `name` pointing at `target` (which is never followed here).
    pub fn symlink(&self, name: &OsStr, target: &[u8]) -> io::Result<()> {
        self.remove(name)?;
        let c = cstr(name)?;
        let t = cstr(OsStr::from_bytes(target))?;
        // SAFETY: valid descriptor and strings.
        check(unsafe { libc::symlinkat(t.as_ptr(), self.raw(), c.as_ptr()) })
    }

    /// Creates the fifo, socket or device `name`; `mode` holds the `S_IF*` type and the
    /// permission bits.
    pub fn mknod(&self, name: &OsStr, mode: u32, device: u64) -> io::Result<()> {
        self.remove(name)?;
        let c = cstr(name)?;
        // SAFETY: valid descriptor and name.
        check(unsafe {
            libc::mknodat(
                self.raw(),
                c.as_ptr(),
                mode as libc::mode_t,
                device as libc::dev_t,
            )
        })
    }

    /// Makes `name` here another name of the file `from_name` in `from` (a symlink there is
    /// linked as itself, never followed).
    pub fn hard_link(&self, name: &OsStr, from: &Dir, from_name: &OsStr) -> io::Result<()> {
        self.remove(name)?;
        let c = cstr(name)?;
        let f = cstr(from_name)?;
        // SAFETY: valid descriptors and names; flags 0 do not follow a final symlink.
        check(unsafe { libc::linkat(from.raw(), f.as_ptr(), self.raw(), c.as_ptr(), 0) })
    }

    /// Removes `name` whatever it is; a directory goes with everything below it, symlinks
    /// inside are removed, never followed. A missing name is not an error.
    pub fn remove(&self, name: &OsStr) -> io::Result<()> {
        match self.kind(name)? {
            None => Ok(()),
            Some(EntryKind::Dir) => {
                // Depth-first without recursion: each level holds its directory open.
                let mut stack: Vec<(Dir, Vec<OsString>)> = Vec::new();
                let top = self.open_dir(Path::new(name))?;
                let names = top.entries()?;
                stack.push((top, names));
                while let Some((dir, names)) = stack.last_mut() {
                    let Some(child) = names.pop() else {
                        stack.pop();
                        continue;
                    };
                    if dir.kind(&child)? == Some(EntryKind::Dir) {
                        let sub = dir.open_dir(Path::new(&child))?;
                        let sub_names = sub.entries()?;
                        if sub_names.is_empty() {
                            dir.unlink(&child, true)?;
                        } else {
                            // Come back to `child` once it is empty.
                            names.push(child);
                            stack.push((sub, sub_names));
                        }
                    } else {
                        dir.unlink(&child, false)?;
                    }
                }
                self.unlink(name, true)
            }
            Some(_) => self.unlink(name, false),
        }
    }

    fn unlink(&self, name: &OsStr, dir: bool) -> io::Result<()> {
        let c = cstr(name)?;
        let flags = if dir { libc::AT_REMOVEDIR } else { 0 };
        // SAFETY: valid descriptor and name.
        match check(unsafe { libc::unlinkat(self.raw(), c.as_ptr(), flags) }) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }

    /// The names in this directory, without `.` and `..`.
    pub fn entries(&self) -> io::Result<Vec<OsString>> {
        // SAFETY: duplicating our own valid descriptor; fdopendir takes over the copy.
        let fd = unsafe { libc::fcntl(self.raw(), libc::F_DUPFD_CLOEXEC, 0) };
        let fd = owned(fd)?;
        // SAFETY: `fd` is a valid directory descriptor; on success the stream owns it.
        let stream = unsafe { libc::fdopendir(fd.as_raw_fd()) };
        if stream.is_null() {
            return Err(io::Error::last_os_error());
        }
        std::mem::forget(fd);
        let mut out = Vec::new();
        let result = loop {
            // SAFETY: errno is thread-local; reset to tell the end from an error.
            unsafe { *libc::__errno_location() = 0 };
            // SAFETY: `stream` is a valid open directory stream.
            let entry = unsafe { libc::readdir(stream) };
            if entry.is_null() {
                let e = io::Error::last_os_error();
                break if e.raw_os_error() == Some(0) {
                    Ok(())
                } else {
                    Err(e)
                };
            }
            // SAFETY: d_name is a NUL-terminated string inside the entry readdir returned.
            let name = unsafe { std::ffi::CStr::from_ptr((*entry).d_name.as_ptr()) };
            let bytes = name.to_bytes();
            if bytes != b"." && bytes != b".." {
                out.push(OsString::from_vec(bytes.to_vec()));
            }
        };
        // SAFETY: `stream` is valid and closed once; closing also closes the duplicated fd.
        unsafe { libc::closedir(stream) };
        result.map(|()| out)
    }

    /// Sets the owner of `name` (a symlink's own owner, not its target's).
    pub fn set_owner(&self, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
        let c = cstr(name)?;
        // SAFETY: valid descriptor and name.
        check(unsafe {
            libc::fchownat(self.raw(), c.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW)
        })
    }

    /// Sets the permission bits of `name`; a symlink has none and is left alone.
    pub fn set_mode(&self, name: &OsStr, mode: u32) -> io::Result<()> {
        let c = cstr(name)?;
        // SAFETY: valid descriptor and name.
        let rc = unsafe {
            libc::fchmodat(
                self.raw(),
                c.as_ptr(),
                mode as libc::mode_t,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            // The C library or kernel cannot honour the flag: look first, then change.
            Some(libc::EINVAL) | Some(libc::ENOSYS) => {
                if self.kind(name)? == Some(EntryKind::Symlink) {
                    return Ok(());
                }
                // SAFETY: valid descriptor and name.
                check(unsafe { libc::fchmodat(self.raw(), c.as_ptr(), mode as libc::mode_t, 0) })
            }
            Some(libc::EOPNOTSUPP) if self.kind(name)? == Some(EntryKind::Symlink) => Ok(()),
            _ => Err(e),
        }
    }

    /// Sets the access and modification times of `name` (a symlink's own).
    pub fn set_times(
        &self,
        name: &OsStr,
        atime: libc::timespec,
        mtime: libc::timespec,
    ) -> io::Result<()> {
        let c = cstr(name)?;
        let times = [atime, mtime];
        // SAFETY: valid descriptor, name and a two-element array.
        check(unsafe {
            libc::utimensat(
                self.raw(),
                c.as_ptr(),
                times.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })
    }

    /// Sets an extended attribute of `name` itself. There is no `*at` form of `setxattr`, so
    /// the directory is named through `/proc/self/fd`, a link the kernel resolves to this very
    /// directory, and `lsetxattr` does not follow `name`.
    pub fn set_xattr(&self, name: &OsStr, attr: &str, value: &[u8]) -> io::Result<()> {
        let mut path = format!("/proc/self/fd/{}/", self.raw()).into_bytes();
        path.extend_from_slice(name.as_bytes());
        let p = cstr(OsStr::from_bytes(&path))?;
        let a = CString::new(attr)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "attribute name has NUL"))?;
        // SAFETY: valid strings and a buffer of `value.len()` bytes.
        check(unsafe {
            libc::lsetxattr(
                p.as_ptr(),
                a.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn setup() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let w = tempfile::tempdir().unwrap();
        let target = w.path().join("target");
        let outside = w.path().join("outside");
        std::fs::create_dir_all(&target).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("victim"), b"keep me").unwrap();
        std::fs::set_permissions(
            outside.join("victim"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        std::os::unix::fs::symlink(&outside, target.join("escape")).unwrap();
        std::os::unix::fs::symlink(outside.join("victim"), target.join("victim-link")).unwrap();
        (w, target, outside)
    }

    #[test]
    fn symlinks_on_the_way_or_at_the_end_are_never_followed() {
        let (_w, target, outside) = setup();
        let dir = Dir::open(&target).unwrap();
        for (what, result) in [
            ("open_dir", dir.open_dir(Path::new("escape")).map(|_| ())),
            (
                "open_file through",
                dir.open_file(Path::new("escape/victim"), true).map(|_| ()),
            ),
            (
                "open_file at end",
                dir.open_file(Path::new("victim-link"), true).map(|_| ()),
            ),
            (
                "open_by_components",
                dir.open_by_components(
                    Path::new("escape/victim"),
                    libc::O_WRONLY | libc::O_NOFOLLOW,
                    0,
                )
                .map(|_| ()),
            ),
        ] {
            assert!(result.is_err(), "{what} followed a symlink");
        }
        // Changing metadata by name changes the link, never its target.
        dir.set_mode(OsStr::new("victim-link"), 0o777).unwrap();
        dir.set_times(
            OsStr::new("victim-link"),
            libc::timespec {
                tv_sec: 1,
                tv_nsec: 0,
            },
            libc::timespec {
                tv_sec: 1,
                tv_nsec: 0,
            },
        )
        .unwrap();
        let m = std::fs::metadata(outside.join("victim")).unwrap();
        assert_eq!(m.mode() & 0o777, 0o600);
        assert_ne!(m.mtime(), 1);
        // Creating a file where a symlink is replaces the symlink.
        dir.create_file(OsStr::new("victim-link")).unwrap();
        assert_eq!(std::fs::read(outside.join("victim")).unwrap(), b"keep me");
        assert!(
            std::fs::symlink_metadata(target.join("victim-link"))
                .unwrap()
                .is_file()
        );
        // Removing a directory with a symlink inside removes the link only.
        dir.ensure_dir(OsStr::new("d")).unwrap();
        let d = dir.open_dir(Path::new("d")).unwrap();
        d.symlink(OsStr::new("out"), outside.as_os_str().as_bytes())
            .unwrap();
        d.ensure_dir(OsStr::new("e")).unwrap();
        dir.remove(OsStr::new("d")).unwrap();
        dir.remove(OsStr::new("escape")).unwrap();
        assert!(outside.join("victim").exists());
        assert_eq!(dir.entries().unwrap(), vec![OsString::from("victim-link")]);
    }

    #[test]
    fn deep_paths_open_by_components_as_with_openat2() {
        let (_w, target, _) = setup();
        let dir = Dir::open(&target).unwrap();
        dir.ensure_dir(OsStr::new("a")).unwrap();
        dir.open_dir(Path::new("a"))
            .unwrap()
            .ensure_dir(OsStr::new("b"))
            .unwrap();
        let b = dir.open_dir(Path::new("a/b")).unwrap();
        b.create_file(OsStr::new("f")).unwrap().set_len(10).unwrap();
        assert_eq!(
            dir.open_file(Path::new("a/b/f"), false)
                .unwrap()
                .metadata()
                .unwrap()
                .len(),
            10
        );
        let fd = dir
            .open_by_components(Path::new("a/b/f"), libc::O_RDONLY, 0)
            .unwrap();
        assert_eq!(File::from(fd).metadata().unwrap().len(), 10);
        assert!(dir.open_by_components(Path::new("a/../a"), 0, 0).is_err());
    }
}
