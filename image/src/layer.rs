//! One image layer: a reproducible, gzip-compressed tar of the image's
//! file system.
//!
//! Entries are written sorted by path with their parent directories, with
//! mtime 0 and explicit owners, so the same inputs always give the same
//! bytes and therefore the same digest. The tar is streamed to a file while
//! both digests are computed: `diff_id` over the uncompressed tar (what the
//! image config lists) and `digest` over the compressed blob (what the
//! manifest and registries name). Memory stays bounded whatever the size of
//! the binaries.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use flate2::{Compression, GzBuilder};
use sha2::{Digest, Sha256};

/// What one path of the image holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Content {
    /// A directory.
    Dir,
    /// A file whose bytes are read from the host.
    HostFile(PathBuf),
    /// A file with these bytes.
    Bytes(Vec<u8>),
    /// A symbolic link to this target.
    Symlink(PathBuf),
}

/// One path of the image's file system.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Absolute path in the image.
    pub path: String,
    pub content: Content,
    pub mode: u32,
    pub uid: u32,
}

impl Entry {
    /// A directory owned by root.
    pub fn dir(path: &str, mode: u32) -> Entry {
        Entry::new(path, Content::Dir, mode)
    }

    /// A file owned by root with `bytes`.
    pub fn bytes(path: &str, bytes: impl Into<Vec<u8>>, mode: u32) -> Entry {
        Entry::new(path, Content::Bytes(bytes.into()), mode)
    }

    /// A file owned by root with the bytes of `host`.
    pub fn host_file(path: &str, host: &Path, mode: u32) -> Entry {
        Entry::new(path, Content::HostFile(host.to_path_buf()), mode)
    }

    /// A symbolic link owned by root.
    pub fn symlink(path: &str, target: &Path) -> Entry {
        Entry::new(path, Content::Symlink(target.to_path_buf()), 0o777)
    }

    /// The same entry owned by `uid` (and the group of the same number).
    pub fn owned_by(self, uid: u32) -> Entry {
        Entry { uid, ..self }
    }

    fn new(path: &str, content: Content, mode: u32) -> Entry {
        Entry {
            path: path.to_string(),
            content,
            mode,
            uid: 0,
        }
    }
}

/// A layer blob written to disk.
#[derive(Debug)]
pub struct Layer {
    /// The gzip-compressed tar.
    pub path: PathBuf,
    /// `sha256:...` of the compressed blob.
    pub digest: String,
    /// Size of the compressed blob.
    pub size: u64,
    /// `sha256:...` of the uncompressed tar.
    pub diff_id: String,
    /// Size of the uncompressed tar.
    pub unpacked_size: u64,
}

/// Writes `entries` as a layer to `path`. Later entries for the same path
/// replace earlier ones; missing parent directories are added (0755, root).
pub fn write(entries: &[Entry], path: &Path) -> Result<Layer> {
    let mut by_path: BTreeMap<String, Entry> = BTreeMap::new();
    for entry in entries {
        let clean = entry.path.trim_matches('/').to_string();
        for dir in Path::new(&clean).ancestors().skip(1) {
            if dir.as_os_str().is_empty() {
                break;
            }
            let dir = dir.to_string_lossy().into_owned();
            by_path
                .entry(dir.clone())
                .or_insert_with(|| Entry::dir(&dir, 0o755));
        }
        by_path.insert(clean, entry.clone());
    }
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let compressed = Hashing::new(BufWriter::new(file));
    let gzip = GzBuilder::new()
        .mtime(0)
        .write(compressed, Compression::default());
    let mut tar = tar::Builder::new(Hashing::new(gzip));
    tar.mode(tar::HeaderMode::Deterministic);
    for (tar_path, entry) in &by_path {
        append(&mut tar, tar_path, entry)
            .with_context(|| format!("cannot add {} to the layer", entry.path))?;
    }
    let uncompressed = tar.into_inner()?;
    let (diff_id, unpacked_size, gzip) = uncompressed.finish();
    let (digest, size, mut file) = gzip.finish()?.finish();
    file.flush()?;
    Ok(Layer {
        path: path.to_path_buf(),
        digest,
        size,
        diff_id,
        unpacked_size,
    })
}

fn append<W: Write>(tar: &mut tar::Builder<W>, path: &str, entry: &Entry) -> Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_mode(entry.mode);
    header.set_uid(entry.uid.into());
    header.set_gid(entry.uid.into());
    header.set_mtime(0);
    match &entry.content {
        Content::Dir => {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            tar.append_data(&mut header, format!("{path}/"), io::empty())?;
        }
        Content::Bytes(bytes) => {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(bytes.len() as u64);
            tar.append_data(&mut header, path, bytes.as_slice())?;
        }
        Content::Symlink(target) => {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            tar.append_link(&mut header, path, target)?;
        }
        Content::HostFile(host) => {
            let file =
                File::open(host).with_context(|| format!("cannot read {}", host.display()))?;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(file.metadata()?.len());
            tar.append_data(&mut header, path, file)?;
        }
    }
    Ok(())
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W> Hashing<W> {
    fn new(inner: W) -> Hashing<W> {
        Hashing {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// The `sha256:` digest, the byte count and the inner writer.
    fn finish(self) -> (String, u64, W) {
        let digest = format!("sha256:{}", hex::encode(self.hasher.finalize()));
        (digest, self.written, self.inner)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(layer: &Path) -> Vec<(String, u32, u64)> {
        let file = File::open(layer).unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn same_entries_give_the_same_digest_with_parents_added() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("binary");
        std::fs::write(&host, b"\x7fELF...").unwrap();
        let entries = [
            Entry::host_file("/usr/local/bin/tool", &host, 0o755),
            Entry::bytes("/etc/passwd", "root:x:0:0::/:/x\n", 0o644),
            Entry::dir("/home/nonroot", 0o700).owned_by(65532),
            Entry::symlink("/etc/localtime", Path::new("/usr/share/zoneinfo/UTC")),
        ];
        let a = write(&entries, &dir.path().join("a.tar.gz")).unwrap();
        let mut reversed = entries.clone();
        reversed.reverse();
        let b = write(&reversed, &dir.path().join("b.tar.gz")).unwrap();
        assert_eq!(a.digest, b.digest);
        assert_eq!(a.diff_id, b.diff_id);
        assert_ne!(a.digest, a.diff_id);
        assert_eq!(
            std::fs::metadata(&a.path).unwrap().len(),
            a.size,
            "size is the blob's"
        );
        assert_eq!(
            listing(&a.path),
            [
                ("etc/".to_string(), 0o755, 0),
                ("etc/localtime".to_string(), 0o777, 0),
                ("etc/passwd".to_string(), 0o644, 0),
                ("home/".to_string(), 0o755, 0),
                ("home/nonroot/".to_string(), 0o700, 65532),
                ("usr/".to_string(), 0o755, 0),
                ("usr/local/".to_string(), 0o755, 0),
                ("usr/local/bin/".to_string(), 0o755, 0),
                ("usr/local/bin/tool".to_string(), 0o755, 0),
            ]
        );
    }
}
