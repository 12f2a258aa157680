//! Turning sealed blobs into uploaded packs.
//!
//! Blob workers hand sealed blobs to a [`PackSink`]. It appends them to an
//! open pack per blob type (data and tree blobs never share a pack), each a
//! temporary file, so memory never holds a pack. A full pack gets
//! its header, is named by the SHA-256 of its bytes, and goes through a
//! bounded queue to uploader threads. Back-pressure is the queue size.
//!
//! Where the backend has a staging directory (a local repository), the
//! temporary file is made there and renamed into place: every pack is written
//! once. Elsewhere it is a nameless temporary file that the upload reads.

use std::fs::File;
use std::io::{BufWriter, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread::JoinHandle;

use crate::handoff::{Receiver, Sender, bounded};
use sha2::{Digest, Sha256};

use crate::backend::{Backend, FileKind, Payload};
use crate::crypto::Key;
use crate::index::{IndexBlob, IndexPack};
use crate::pack::{BlobType, PackedBlob, encode_header};
use crate::{Error, Id, Result};

/// The file a pack is written to.
enum PackFile {
    /// Nameless, in the system's temporary directory; the upload copies it.
    Anonymous(File),
    /// Named, in the backend's staging directory; the backend renames it into place.
    Staged(tempfile::NamedTempFile),
}

impl PackFile {
    fn file(&self) -> &File {
        match self {
            PackFile::Anonymous(f) => f,
            PackFile::Staged(t) => t.as_file(),
        }
    }
}

impl Write for PackFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A pack being filled.
struct OpenPack {
    out: BufWriter<PackFile>,
    /// Where the file is, for error messages.
    dir: PathBuf,
    hash: Sha256,
    size: u64,
    blobs: Vec<PackedBlob>,
}

impl OpenPack {
    fn new(staging: Option<&Path>) -> Result<OpenPack> {
        let (file, dir) = match staging {
            Some(dir) => (
                tempfile::Builder::new()
                    .prefix(".pack-")
                    .tempfile_in(dir)
                    .map(PackFile::Staged),
                dir.to_path_buf(),
            ),
            None => (
                tempfile::tempfile().map(PackFile::Anonymous),
                std::env::temp_dir(),
            ),
        };
        let file = file.map_err(|e| Error::io("create temporary pack file in", &dir, e))?;
        Ok(OpenPack {
            out: BufWriter::with_capacity(1 << 20, file),
            dir,
            hash: Sha256::new(),
            size: 0,
            blobs: Vec::new(),
        })
    }

    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io("write temporary pack file in", &self.dir, e))?;
        self.hash.update(bytes);
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// Appends the encrypted header and its length, and names the pack.
    fn finish(mut self, key: &Key) -> Result<FinishedPack> {
        let header = key.seal(&encode_header(&self.blobs));
        self.append(&header)?;
        self.append(&(header.len() as u32).to_le_bytes())?;
        let dir = self.dir;
        let file = self
            .out
            .into_inner()
            .map_err(|e| Error::io("flush temporary pack file in", &dir, e.into_error()))?;
        Ok(FinishedPack {
            id: Id(self.hash.finalize().into()),
            file,
            dir,
            size: self.size,
            blobs: self.blobs,
        })
    }
}

/// A complete pack waiting for upload.
struct FinishedPack {
    id: Id,
    file: PackFile,
    dir: PathBuf,
    size: u64,
    blobs: Vec<PackedBlob>,
}

/// What an uploader thread hands back: the packs it stored with their sizes.
type Uploaded = Vec<(IndexPack, u64)>;

/// The error that stopped the first uploader to fail, kept for whoever meets the closed
/// queue next, so the cause (a full disk, an HTTP status) is what the user sees.
type Failure = std::sync::Arc<Mutex<Option<Error>>>;

/// Counters of what a sink stored.
#[derive(Default, Clone, Copy, Debug)]
pub struct SinkStats {
    pub packs: u64,
    pub pack_bytes: u64,
}

/// Collects sealed blobs into packs and uploads them on background threads.
pub struct PackSink<'a> {
    key: &'a Key,
    pack_size: u64,
    staging: Option<PathBuf>,
    open: [Mutex<Option<OpenPack>>; 2],
    queue: Option<Sender<FinishedPack>>,
    uploaders: Vec<JoinHandle<Uploaded>>,
    failure: Failure,
}

impl<'a> PackSink<'a> {
    /// Starts `uploaders` upload threads writing to `backend`.
    pub fn new(
        backend: std::sync::Arc<dyn Backend>,
        key: &'a Key,
        pack_size: u64,
        uploaders: usize,
    ) -> PackSink<'a> {
        let staging = backend.staging_dir();
        let (tx, rx) = bounded::<FinishedPack>(uploaders.max(1));
        let failure = Failure::default();
        let handles = (0..uploaders.max(1))
            .map(|_| {
                let rx: Receiver<FinishedPack> = rx.clone();
                let backend = backend.clone();
                let failure = failure.clone();
                std::thread::spawn(move || upload_loop(&*backend, rx, &failure))
            })
            .collect();
        PackSink {
            key,
            pack_size,
            staging,
            open: [Mutex::new(None), Mutex::new(None)],
            queue: Some(tx),
            uploaders: handles,
            failure,
        }
    }

    /// Adds a sealed blob. `uncompressed_length` is 0 for uncompressed blobs.
    pub fn add(
        &self,
        blob_type: BlobType,
        id: Id,
        sealed: &[u8],
        uncompressed_length: u32,
    ) -> Result<()> {
        let slot = &self.open[blob_type as usize];
        let full = {
            let mut guard = slot.lock().expect("pack lock");
            if guard.is_none() {
                *guard = Some(OpenPack::new(self.staging.as_deref())?);
            }
            let pack = guard.as_mut().expect("open pack");
            let offset = pack.size as u32;
            pack.append(sealed)?;
            pack.blobs.push(PackedBlob {
                id,
                blob_type,
                offset,
                length: sealed.len() as u32,
                uncompressed_length,
            });
            if pack.size >= self.pack_size {
                guard.take()
            } else {
                None
            }
        };
        if let Some(pack) = full {
            self.send(pack)?;
        }
        Ok(())
    }

    fn send(&self, pack: OpenPack) -> Result<()> {
        let finished = pack.finish(self.key)?;
        self.queue
            .as_ref()
            .expect("sink open")
            .send(finished)
            .map_err(|_| self.failure())
    }

    /// Why the uploads stopped: the first uploader error itself, once; a pointer to it for
    /// later callers.
    fn failure(&self) -> Error {
        self.failure
            .lock()
            .expect("failure")
            .take()
            .unwrap_or_else(|| {
                Error::Invalid("pack upload stopped after the error reported first".into())
            })
    }

    /// Flushes partly filled packs, waits for every upload, and returns the
    /// uploaded packs with their sizes, ready for the index.
    pub fn finish(mut self) -> Result<(Vec<IndexPack>, SinkStats)> {
        let mut first_err = None;
        for slot in &self.open {
            let pack = slot.lock().expect("pack lock").take();
            if let Some(pack) = pack
                && let Err(e) = self.send(pack)
            {
                first_err.get_or_insert(e);
            }
        }
        self.queue.take();
        let mut packs = Vec::new();
        let mut stats = SinkStats::default();
        for h in self.uploaders.drain(..) {
            for (p, size) in h.join().expect("uploader thread") {
                stats.packs += 1;
                stats.pack_bytes += size;
                packs.push(p);
            }
        }
        if let Some(e) = self.failure.lock().expect("failure").take() {
            // The uploader's cause comes before the closed queue it led to.
            first_err = Some(e);
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok((packs, stats)),
        }
    }
}

/// Uploads packs until the queue closes or an upload fails; a failure is kept in `failure`
/// (the first one wins) and ends this uploader.
fn upload_loop(backend: &dyn Backend, rx: Receiver<FinishedPack>, failure: &Failure) -> Uploaded {
    let mut done = Vec::new();
    for pack in rx {
        let name = pack.id.to_hex();
        let uploaded = match &pack.file {
            PackFile::Staged(t) => backend.save(
                FileKind::Pack,
                &name,
                Payload::Staged {
                    file: t.as_file(),
                    path: t.path(),
                    len: pack.size,
                },
            ),
            PackFile::Anonymous(f) => (&*f)
                .rewind()
                .map_err(|e| {
                    crate::backend::BackendError::from_io(
                        format!("rewind temporary pack file in {}", pack.dir.display()),
                        &e,
                    )
                })
                .and_then(|()| {
                    backend.save(
                        FileKind::Pack,
                        &name,
                        Payload::File {
                            file: f,
                            len: pack.size,
                        },
                    )
                }),
        }
        .map_err(Error::from);
        if uploaded.is_ok()
            && let PackFile::Staged(t) = pack.file
        {
            // Renamed into place: nothing is left to remove under the temporary name.
            let _ = t.into_temp_path().keep();
        }
        if let Err(e) = uploaded {
            failure.lock().expect("failure").get_or_insert(e);
            return done;
        }
        tracing::debug!(pack = %name, size = pack.size, blobs = pack.blobs.len(), "uploaded pack");
        done.push((
            IndexPack {
                id: pack.id,
                blobs: pack.blobs.iter().map(IndexBlob::from_packed).collect(),
            },
            pack.size,
        ));
    }
    done
}
