//! A repository: a backend, the master key, the config and the index, and
//! the operations every command shares (load and save files and blobs).

use std::sync::Arc;

use crate::backend::{Backend, BackendErrorKind, FileKind, Payload};
use crate::config::Config;
use crate::crypto::Key;
use crate::index::{Index, IndexFile, IndexPack, MAX_BLOBS_PER_FILE};
use crate::pack::{BlobType, PackedBlob};
use crate::snapshot::{Snapshot, SnapshotEntry, SnapshotFilter};
use crate::tree::Tree;
use crate::{Error, Id, Result};

/// How blobs are compressed, as restic's `--compression`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Compression {
    /// Data blobs stored as they are (trees and metadata still compressed).
    Off,
    /// zstd at its default level.
    #[default]
    Auto,
    /// zstd at a high level: smaller, slower.
    Max,
}

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "off" => Ok(Compression::Off),
            "auto" => Ok(Compression::Auto),
            "max" => Ok(Compression::Max),
            _ => Err(format!("invalid compression {s:?}: use off, auto or max")),
        }
    }
}

impl Compression {
    fn level(self) -> i32 {
        match self {
            Compression::Max => 11,
            _ => 3,
        }
    }
}

/// Options that shape how a repository writes.
#[derive(Clone, Debug)]
pub struct Options {
    pub compression: Compression,
    /// Target pack size in bytes.
    pub pack_size: u64,
}

/// restic's default pack size.
pub const DEFAULT_PACK_SIZE: u64 = 16 << 20;

impl Default for Options {
    fn default() -> Self {
        Options {
            compression: Compression::Auto,
            pack_size: DEFAULT_PACK_SIZE,
        }
    }
}

/// An open repository.
pub struct Repository {
    backend: Arc<dyn Backend>,
    key: Key,
    config: Config,
    index: Index,
    options: Options,
}

impl Repository {
    /// Creates a new repository protected by `password`.
    pub fn init(backend: Arc<dyn Backend>, password: &str, options: Options) -> Result<Repository> {
        match backend.stat(FileKind::Config, "config") {
            Ok(_) => {
                return Err(Error::RepositoryExists {
                    location: backend.location(),
                });
            }
            Err(e) if e.is_not_found() || e.kind == BackendErrorKind::NoSuchContainer => {}
            Err(e) => return Err(e.into()),
        }
        backend.create()?;
        let key = Key::random();
        let config = Config::new();
        let sealed = key.seal(&serde_json::to_vec(&config).expect("config JSON"));
        backend.save(FileKind::Config, "config", Payload::Bytes(&sealed))?;
        crate::key::add(&*backend, &key, password)?;
        Ok(Repository {
            backend,
            key,
            config,
            index: Index::new(),
            options,
        })
    }

    /// Opens an existing repository with `password`. The index is not
    /// loaded yet: commands that need it call [`Repository::load_index`].
    pub fn open(backend: Arc<dyn Backend>, password: &str, options: Options) -> Result<Repository> {
        let raw = match backend.load(FileKind::Config, "config") {
            Ok(raw) => raw,
            Err(e) if e.is_not_found() || e.kind == BackendErrorKind::NoSuchContainer => {
                return Err(Error::RepositoryNotFound {
                    location: backend.location(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let key = crate::key::open(&*backend, password)?;
        let plain = key
            .open(&raw)
            .map_err(|e| Error::corrupt("config", e.to_string()))?;
        let config: Config =
            serde_json::from_slice(&plain).map_err(|e| Error::corrupt("config", e.to_string()))?;
        if config.version == 0 || config.version > crate::config::VERSION {
            return Err(Error::Invalid(format!(
                "repository version {} is not supported (this build reads versions 1 and 2)",
                config.version
            )));
        }
        Ok(Repository {
            backend,
            key,
            config,
            index: Index::new(),
            options,
        })
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The master key.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// The repository config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The write options.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The in-memory index (empty until [`Repository::load_index`]).
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Reads every index file into memory, several at a time.
    pub fn load_index(&mut self) -> Result<()> {
        let files = self.backend.list(FileKind::Index)?;
        let next = std::sync::atomic::AtomicUsize::new(0);
        let parsed: Vec<Result<Vec<IndexFile>>> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..8.min(files.len().max(1)))
                .map(|_| {
                    s.spawn(|| {
                        let mut out = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(f) = files.get(i) else { break };
                            let plain = self.load_unpacked(FileKind::Index, &f.name)?;
                            out.push(IndexFile::parse(&plain).map_err(|e| {
                                Error::corrupt(format!("index/{}", f.name), e.to_string())
                            })?);
                        }
                        Ok(out)
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("index loader"))
                .collect()
        });
        for batch in parsed {
            for file in batch? {
                self.index.add_file(&file);
            }
        }
        Ok(())
    }

    /// Every index file with its id, as stored: prune and check need each
    /// pack's whole blob list, duplicates included, which the merged
    /// in-memory index does not keep.
    pub fn read_index_files(&self) -> Result<Vec<(Id, IndexFile)>> {
        let mut out = Vec::new();
        for f in self.backend.list(FileKind::Index)? {
            let Ok(id) = f.name.parse::<Id>() else {
                continue;
            };
            let plain = self.load_unpacked(FileKind::Index, &f.name)?;
            let file = IndexFile::parse(&plain)
                .map_err(|e| Error::corrupt(format!("index/{}", f.name), e.to_string()))?;
            out.push((id, file));
        }
        Ok(out)
    }

    /// Loads, authenticates and decodes an unpacked file (snapshot, index,
    /// lock), checking that its name is the hash of its content.
    pub fn load_unpacked(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        let raw = self.backend.load(kind, name)?;
        if Id::hash(&raw).to_hex() != name {
            return Err(Error::corrupt(
                kind.path(name),
                "content does not match its name (hash mismatch)",
            ));
        }
        open_unpacked(&self.key, &kind.path(name), &raw)
    }

    /// Encodes, encrypts and stores an unpacked file, returning its id.
    pub fn save_unpacked(&self, kind: FileKind, plain: &[u8]) -> Result<Id> {
        let sealed = seal_unpacked(&self.key, self.config.version, plain);
        let id = Id::hash(&sealed);
        self.backend
            .save(kind, &id.to_hex(), Payload::Bytes(&sealed))?;
        Ok(id)
    }

    /// Compresses (where the repository and options call for it) and
    /// encrypts a blob; returns the sealed bytes and the uncompressed length
    /// to record (0 when not compressed).
    pub fn seal_blob(&self, blob_type: BlobType, plain: &[u8]) -> (Vec<u8>, u32) {
        let compress = self.config.version >= 2
            && (self.options.compression != Compression::Off || blob_type == BlobType::Tree);
        if compress {
            let level = self.options.compression.level();
            let z = zstd_context::compress(plain, level);
            (self.key.seal(&z), plain.len() as u32)
        } else {
            (self.key.seal(plain), 0)
        }
    }

    /// Authenticates, decrypts and decompresses a blob read from its pack,
    /// and checks its hash.
    pub fn open_blob(&self, pack: &Id, blob: &PackedBlob, sealed: &mut [u8]) -> Result<Vec<u8>> {
        let what = || format!("blob {} ({}) in pack {}", blob.id, blob.blob_type, pack);
        let plain = self
            .key
            .open_in_place(sealed)
            .map_err(|e| Error::corrupt(what(), e.to_string()))?;
        let data = if blob.uncompressed_length != 0 {
            zstd_context::decompress(plain, blob.uncompressed_length as usize)
                .map_err(|e| Error::corrupt(what(), format!("zstd: {e}")))?
        } else {
            plain.to_vec()
        };
        if Id::hash(&data) != blob.id {
            return Err(Error::corrupt(
                what(),
                "content does not match its id (hash mismatch)",
            ));
        }
        Ok(data)
    }

    /// Reads one blob by id through the index.
    pub fn load_blob(&self, id: &Id) -> Result<Vec<u8>> {
        let loc = self.index.get(id).ok_or(Error::BlobMissing { id: *id })?;
        let mut sealed = self.backend.load_range(
            FileKind::Pack,
            &loc.pack.to_hex(),
            loc.blob.offset as u64,
            loc.blob.length as u64,
        )?;
        self.open_blob(&loc.pack, &loc.blob, &mut sealed)
    }

    /// Reads and parses a tree blob.
    pub fn load_tree(&self, id: &Id) -> Result<Tree> {
        let data = self.load_blob(id)?;
        Tree::from_blob(&data).map_err(|e| Error::corrupt(format!("tree {id}"), e.to_string()))
    }

    /// Writes index files listing `packs`, split as restic splits them.
    pub fn save_index(&mut self, packs: Vec<IndexPack>) -> Result<Vec<Id>> {
        let mut ids = Vec::new();
        let mut file = IndexFile::default();
        let mut blobs = 0;
        for p in packs {
            self.index
                .add_pack(&p.id, p.blobs.iter().map(|b| b.to_packed()));
            blobs += p.blobs.len();
            file.packs.push(p);
            if blobs >= MAX_BLOBS_PER_FILE {
                ids.push(self.save_unpacked(
                    FileKind::Index,
                    &serde_json::to_vec(&file).expect("index JSON"),
                )?);
                file = IndexFile::default();
                blobs = 0;
            }
        }
        if !file.packs.is_empty() {
            ids.push(self.save_unpacked(
                FileKind::Index,
                &serde_json::to_vec(&file).expect("index JSON"),
            )?);
        }
        Ok(ids)
    }

    /// Every snapshot, oldest first.
    pub fn list_snapshots(&self) -> Result<Vec<SnapshotEntry>> {
        let mut out = Vec::new();
        for f in self.backend.list(FileKind::Snapshot)? {
            let Ok(id) = f.name.parse::<Id>() else {
                continue;
            };
            let plain = self.load_unpacked(FileKind::Snapshot, &f.name)?;
            let snapshot: Snapshot = serde_json::from_slice(&plain)
                .map_err(|e| Error::corrupt(format!("snapshots/{}", f.name), e.to_string()))?;
            out.push(SnapshotEntry { id, snapshot });
        }
        out.sort_by_key(|e| (e.snapshot.timestamp(), e.id));
        Ok(out)
    }

    /// Resolves `latest` or a (possibly abbreviated) snapshot id among the
    /// snapshots that pass `filter`.
    pub fn find_snapshot(&self, spec: &str, filter: &SnapshotFilter) -> Result<SnapshotEntry> {
        let all: Vec<SnapshotEntry> = self
            .list_snapshots()?
            .into_iter()
            .filter(|e| filter.matches(&e.snapshot))
            .collect();
        if spec == "latest" {
            return all.into_iter().last().ok_or_else(|| {
                Error::Invalid("no snapshot found: the repository has no matching snapshot".into())
            });
        }
        let mut found = all.into_iter().filter(|e| e.id.to_hex().starts_with(spec));
        match (found.next(), found.next()) {
            (Some(e), None) => Ok(e),
            (Some(_), Some(_)) => Err(Error::Invalid(format!(
                "snapshot id prefix {spec:?} is ambiguous: give more digits"
            ))),
            (None, _) => Err(Error::Invalid(format!(
                "no snapshot with id {spec:?}: list them with `sluice-mover snapshots`"
            ))),
        }
    }

    /// Stores a snapshot file.
    pub fn save_snapshot(&self, snapshot: &Snapshot) -> Result<Id> {
        self.save_unpacked(
            FileKind::Snapshot,
            &serde_json::to_vec(snapshot).expect("snapshot JSON"),
        )
    }
}

/// Encodes an unpacked file for repository `version` (v2: a version byte
/// and a zstd frame) and encrypts it.
pub fn seal_unpacked(key: &Key, version: u32, plain: &[u8]) -> Vec<u8> {
    if version >= 2 {
        let mut v = vec![2u8];
        v.extend(zstd::bulk::compress(plain, 3).expect("zstd compression of a buffer"));
        key.seal(&v)
    } else {
        key.seal(plain)
    }
}

/// Authenticates, decrypts and decodes an unpacked file's bytes; `what`
/// names it in errors.
pub fn open_unpacked(key: &Key, what: &str, raw: &[u8]) -> Result<Vec<u8>> {
    let plain = key
        .open(raw)
        .map_err(|e| Error::corrupt(what, e.to_string()))?;
    decode_unpacked(&plain).map_err(|e| Error::corrupt(what, e))
}

/// Decodes the plaintext of an unpacked file: v2's version byte and zstd
/// frame, or raw JSON as v1 wrote it.
fn decode_unpacked(plain: &[u8]) -> std::result::Result<Vec<u8>, String> {
    match plain.first() {
        Some(b'{') | Some(b'[') => Ok(plain.to_vec()),
        Some(2) => zstd::stream::decode_all(&plain[1..]).map_err(|e| format!("zstd: {e}")),
        Some(v) => Err(format!("unknown encoding version byte {v}")),
        None => Err("empty file".into()),
    }
}

/// One zstd context per thread, reused for every blob. Creating a context costs more than
/// compressing a small blob: it was a quarter of the CPU of backing up small files, and of a
/// no-change backup's tree reads. Each context holds a few MiB, bounded by the thread count.
mod zstd_context {
    use std::cell::RefCell;

    thread_local! {
        static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
            const { RefCell::new(None) };
        static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { RefCell::new(None) };
    }

    /// `plain` compressed at `level`.
    pub fn compress(plain: &[u8], level: i32) -> Vec<u8> {
        COMPRESSOR.with(|cell| {
            let mut cell = cell.borrow_mut();
            if cell.as_ref().is_none_or(|(l, _)| *l != level) {
                let compressor =
                    zstd::bulk::Compressor::new(level).expect("a zstd compression context");
                *cell = Some((level, compressor));
            }
            let (_, compressor) = cell.as_mut().expect("set above");
            compressor
                .compress(plain)
                .expect("zstd compression of a buffer")
        })
    }

    /// `compressed` decompressed, failing when it is invalid or longer than `capacity`.
    pub fn decompress(compressed: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
        DECOMPRESSOR.with(|cell| {
            let mut cell = cell.borrow_mut();
            if cell.is_none() {
                *cell = Some(zstd::bulk::Decompressor::new()?);
            }
            cell.as_mut()
                .expect("set above")
                .decompress(compressed, capacity)
        })
    }
}
