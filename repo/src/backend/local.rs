//! A repository in a local directory, in restic's default layout.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{Backend, BackendError, BackendResult, FileKind, ListedFile, Payload};

/// A repository rooted at a local directory.
pub struct LocalBackend {
    root: PathBuf,
}

impl LocalBackend {
    /// A backend for the directory `root` (which need not exist yet).
    pub fn new(root: impl Into<PathBuf>) -> LocalBackend {
        LocalBackend { root: root.into() }
    }

    fn path(&self, kind: FileKind, name: &str) -> PathBuf {
        self.root.join(kind.path(name))
    }

    fn err(&self, op: &str, path: &Path, e: &std::io::Error) -> BackendError {
        BackendError::from_io(format!("{op} {}", path.display()), e)
    }
}

const KINDS_WITH_DIRS: [FileKind; 5] = [
    FileKind::Key,
    FileKind::Snapshot,
    FileKind::Index,
    FileKind::Lock,
    FileKind::Pack,
];

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn create(&self) -> BackendResult<()> {
        for kind in KINDS_WITH_DIRS {
            let dir = self.root.join(kind.dir());
            fs::create_dir_all(&dir).map_err(|e| self.err("create directory", &dir, &e))?;
        }
        for i in 0..=255u8 {
            let dir = self.root.join("data").join(format!("{i:02x}"));
            fs::create_dir_all(&dir).map_err(|e| self.err("create directory", &dir, &e))?;
        }
        Ok(())
    }

    /// `data/` itself: on the repository's file system, and a place neither restic nor
    /// this backend lists files in (packs live one level below).
    fn staging_dir(&self) -> Option<PathBuf> {
        Some(self.root.join(FileKind::Pack.dir()))
    }

    fn save(&self, kind: FileKind, name: &str, payload: Payload<'_>) -> BackendResult<()> {
        let path = self.path(kind, name);
        let dir = path.parent().expect("file in a directory");
        if kind == FileKind::Pack {
            // restic creates the fan-out directories lazily too.
            fs::create_dir_all(dir).map_err(|e| self.err("create directory", dir, &e))?;
        }
        if let Payload::Staged {
            file,
            path: staged,
            len,
        } = payload
        {
            // Written once: made durable and read-only where it is, then renamed into
            // place, so a crash never leaves a partial file under its final name.
            let place = || -> std::io::Result<()> {
                let found = file.metadata()?.len();
                if found != len {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("staged file holds {found} bytes, not {len}"),
                    ));
                }
                file.sync_all()?;
                let mut perm = file.metadata()?.permissions();
                perm.set_readonly(true);
                file.set_permissions(perm)?;
                fs::rename(staged, &path)
            };
            return place().map_err(|e| self.err("write", &path, &e));
        }
        // Write under a temporary name and rename, so a crash never leaves
        // a half-written file under its final (content-addressed) name.
        let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut out = File::create(&tmp)?;
            match payload {
                Payload::Bytes(b) => out.write_all(b)?,
                Payload::File { file, len } | Payload::Staged { file, len, .. } => {
                    let mut src = file.try_clone()?;
                    src.seek(SeekFrom::Start(0))?;
                    let copied = std::io::copy(&mut src.take(len), &mut out)?;
                    if copied != len {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            format!("payload file shorter than {len} bytes"),
                        ));
                    }
                }
            }
            out.sync_all()?;
            // restic's local backend stores files read-only.
            let mut perm = out.metadata()?.permissions();
            perm.set_readonly(true);
            fs::set_permissions(&tmp, perm)?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            self.err("write", &path, &e)
        })
    }

    /// Written under a temporary name, then linked into place: `link` fails when the
    /// name exists, so the file appears complete and only once. File systems without
    /// hard links get an exclusive create of the final name instead.
    fn save_new(&self, kind: FileKind, name: &str, bytes: &[u8]) -> BackendResult<()> {
        let path = self.path(kind, name);
        let dir = path.parent().expect("file in a directory");
        let tmp = dir.join(format!(".{name}.new{}", std::process::id()));
        let write = |at: &Path, exclusive: bool| -> std::io::Result<()> {
            let mut out = if exclusive {
                File::options().write(true).create_new(true).open(at)?
            } else {
                File::create(at)?
            };
            out.write_all(bytes)?;
            out.sync_all()?;
            let mut perm = out.metadata()?.permissions();
            perm.set_readonly(true);
            fs::set_permissions(at, perm)
        };
        let linked = write(&tmp, false).and_then(|()| fs::hard_link(&tmp, &path));
        let _ = fs::remove_file(&tmp);
        match linked {
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EPERM) | Some(libc::EOPNOTSUPP) | Some(libc::EXDEV)
                ) =>
            {
                write(&path, true).map_err(|e| self.err("create", &path, &e))
            }
            r => r.map_err(|e| self.err("create", &path, &e)),
        }
    }

    fn load(&self, kind: FileKind, name: &str) -> BackendResult<Vec<u8>> {
        let path = self.path(kind, name);
        fs::read(&path).map_err(|e| self.err("read", &path, &e))
    }

    fn load_range(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> BackendResult<Vec<u8>> {
        let mut buf = Vec::new();
        self.load_range_into(kind, name, offset, length, &mut buf)?;
        Ok(buf)
    }

    /// Reads into the buffer's spare capacity: no zero-filling of what is read over anyway.
    fn load_range_into(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> BackendResult<()> {
        let path = self.path(kind, name);
        let mut file = File::open(&path).map_err(|e| self.err("open", &path, &e))?;
        // The length comes from an index, which is untrusted: allocate only what the
        // file really holds.
        let size = file
            .metadata()
            .map_err(|e| self.err("stat", &path, &e))?
            .len();
        let short = || {
            BackendError::from_io(
                format!("read {}", path.display()),
                &std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "{length} bytes at offset {offset} asked for, but the file has only {size}: it is shorter than the index says"
                    ),
                ),
            )
        };
        if offset.checked_add(length).is_none_or(|end| end > size) {
            return Err(short());
        }
        buf.clear();
        buf.reserve(length as usize);
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| (&mut file).take(length).read_to_end(buf))
            .map_err(|e| self.err("read", &path, &e))?;
        if buf.len() as u64 != length {
            return Err(short());
        }
        Ok(())
    }

    fn stat(&self, kind: FileKind, name: &str) -> BackendResult<u64> {
        let path = self.path(kind, name);
        fs::metadata(&path)
            .map(|m| m.len())
            .map_err(|e| self.err("stat", &path, &e))
    }

    fn remove(&self, kind: FileKind, name: &str) -> BackendResult<()> {
        let path = self.path(kind, name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err("remove", &path, &e)),
        }
    }

    fn list(&self, kind: FileKind) -> BackendResult<Vec<ListedFile>> {
        let mut out = Vec::new();
        let dir = self.root.join(kind.dir());
        let mut dirs = vec![dir.clone()];
        if kind == FileKind::Pack {
            dirs.clear();
            match fs::read_dir(&dir) {
                Ok(rd) => {
                    for e in rd {
                        let e = e.map_err(|e| self.err("list", &dir, &e))?;
                        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                            dirs.push(e.path());
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(self.err("list", &dir, &e)),
            }
        }
        for d in dirs {
            let rd = match fs::read_dir(&d) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.err("list", &d, &e)),
            };
            for e in rd {
                let e = e.map_err(|e| self.err("list", &d, &e))?;
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue; // our temporary files
                }
                let meta = match e.metadata() {
                    Ok(meta) => meta,
                    // Removed since the directory was read (the key of a
                    // concurrent init that lost): no longer listed.
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(self.err("stat", &e.path(), &err)),
                };
                if meta.is_file() {
                    out.push(ListedFile {
                        name,
                        size: meta.len(),
                    });
                }
            }
        }
        Ok(out)
    }
}
