//! A repository: a backend, the master key, the config and the index, and
//! the operations every command shares (load and save files and blobs).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::backend::{Backend, BackendErrorKind, FileKind, Payload};
use crate::compression;
use crate::config::Config;
use crate::crypto::Key;
use crate::id::IdSet;
use crate::index::{Index, IndexFile, IndexPack, MAX_BLOBS_PER_FILE};
use crate::key::KdfParams;
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
    /// Damaged snapshot files already warned about, so each is named once.
    warned: std::sync::Mutex<IdSet>,
}

/// A snapshot file that cannot be read, and why.
#[derive(Debug)]
pub struct UnreadableSnapshot {
    pub id: Id,
    pub error: Error,
}

impl Repository {
    /// Creates a new repository protected by `password`, its key derived with `kdf`.
    ///
    /// Creation is atomic: the key file is written first (content-named, harmless if left
    /// over), then `config` with create-if-absent semantics. Of two inits racing, exactly
    /// one config lands; the loser removes its key file and gets
    /// [`Error::RepositoryExists`], and a caller that wants a repository opens the
    /// winner's. A location that has no `config` but holds snapshots, index files or
    /// packs is a damaged repository, not an empty place: creating one on top would hide
    /// that data behind a new master key, so init refuses.
    pub fn init(
        backend: Arc<dyn Backend>,
        password: &str,
        kdf: KdfParams,
        options: Options,
    ) -> Result<Repository> {
        if config_exists(&*backend)? {
            return Err(Error::RepositoryExists {
                location: backend.location(),
            });
        }
        backend.create()?;
        if let Some(e) = refuse_to_cover(&*backend)? {
            return Err(e);
        }
        let key = Key::random();
        let config = Config::new();
        let sealed = key.seal(&serde_json::to_vec(&config).expect("config JSON"));
        let key_id = crate::key::add(&*backend, &key, password, kdf)?;
        match backend.save_new(FileKind::Config, "config", &sealed) {
            Ok(()) => {}
            // A retry after a lost response finds our own config: the content says so.
            Err(e)
                if e.kind == BackendErrorKind::AlreadyExists
                    && backend
                        .load(FileKind::Config, "config")
                        .is_ok_and(|raw| key.open(&raw).is_ok()) => {}
            Err(e) => {
                if let Err(cleanup) = backend.remove(FileKind::Key, &key_id.to_hex()) {
                    tracing::warn!(key = %key_id, error = %cleanup, "could not remove the key file of a repository that was not created");
                }
                return Err(if e.kind == BackendErrorKind::AlreadyExists {
                    Error::RepositoryExists {
                        location: backend.location(),
                    }
                } else {
                    e.into()
                });
            }
        }
        Ok(Repository {
            backend,
            key,
            config,
            index: Index::new(),
            options,
            warned: Default::default(),
        })
    }

    /// Opens an existing repository with `password`. The index is not
    /// loaded yet: commands that need it call [`Repository::load_index`].
    pub fn open(backend: Arc<dyn Backend>, password: &str, options: Options) -> Result<Repository> {
        let raw = match backend.load(FileKind::Config, "config") {
            Ok(raw) => raw,
            Err(e) if e.is_not_found() || e.kind == BackendErrorKind::NoSuchContainer => {
                if let Some(e) = config_missing(&*backend)? {
                    return Err(e);
                }
                return Err(Error::RepositoryNotFound {
                    location: backend.location(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let key = crate::key::open(&*backend, password, &|master| master.open(&raw).is_ok())?;
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
            warned: Default::default(),
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

    /// Reads every index file into memory, several at a time, replacing
    /// what an earlier call loaded.
    ///
    /// Up to eight files are fetched at once (object storage answers each after a round
    /// trip), but they are decrypted, decompressed and parsed one at a time, and each is
    /// merged as soon as it is parsed: besides the merged index, memory holds the fetched
    /// files and one file's JSON and parsed list (an index file of a pack of small files is
    /// 16 MiB of JSON), however many files the repository has.
    pub fn load_index(&mut self) -> Result<()> {
        let files = self.backend.list(FileKind::Index)?;
        let next = AtomicUsize::new(0);
        let workers = 8.min(files.len().max(1));
        // A fresh index replaces the old one, so a handle kept across steps
        // (a mover Job's backup, prune and check) sees packs a prune removed
        // disappear.
        let mut index = Index::new();
        let mut failed = None;
        let this = &*self;
        let decoding = std::sync::Mutex::new(());
        std::thread::scope(|s| {
            let (parsed, merge) = std::sync::mpsc::sync_channel::<Result<IndexFile>>(1);
            for _ in 0..workers {
                let parsed = parsed.clone();
                let (next, files, decoding) = (&next, &files, &decoding);
                s.spawn(move || {
                    while let Some(f) = files.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let file = this
                            .fetch_unpacked(FileKind::Index, &f.name)
                            .and_then(|raw| {
                                let _one = decoding.lock().unwrap_or_else(|e| e.into_inner());
                                let what = FileKind::Index.path(&f.name);
                                let plain = open_unpacked(&this.key, &what, &raw)?;
                                drop(raw);
                                IndexFile::parse(&plain)
                                    .map_err(|e| Error::corrupt(what, e.to_string()))
                            });
                        if parsed.send(file).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(parsed);
            for file in merge {
                match file {
                    Ok(file) => index.add_file(&file),
                    Err(e) => {
                        // The first error is the one reported; the others stop taking files.
                        next.store(files.len(), Ordering::Relaxed);
                        failed.get_or_insert(e);
                    }
                }
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        self.index = index;
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
        let raw = self.fetch_unpacked(kind, name)?;
        open_unpacked(&self.key, &kind.path(name), &raw)
    }

    /// The stored bytes of an unpacked file, checked against its name, still encrypted.
    fn fetch_unpacked(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        let raw = self.backend.load(kind, name)?;
        if Id::hash(&raw).to_hex() != name {
            return Err(Error::corrupt(
                kind.path(name),
                "content does not match its name (hash mismatch)",
            ));
        }
        Ok(raw)
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
    ///
    /// With `auto`, a data blob whose samples do not compress (see `compression`)
    /// is stored as it is: zstd would spend a pass on it and save nothing (a frame of raw
    /// blocks is even a little larger).
    pub fn seal_blob(&self, blob_type: BlobType, plain: &[u8]) -> (Vec<u8>, u32) {
        let compress = self.config.version >= 2
            && match (self.options.compression, blob_type) {
                (_, BlobType::Tree) | (Compression::Max, _) => true,
                (Compression::Off, _) => false,
                (Compression::Auto, _) => !compression::incompressible(plain),
            };
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
        let mut scratch = Vec::new();
        let len = self.open_blob_in(pack, blob, sealed, &mut scratch)?.len();
        if blob.uncompressed_length != 0 {
            Ok(scratch)
        } else {
            Ok(sealed[crate::crypto::IV_LEN..crate::crypto::IV_LEN + len].to_vec())
        }
    }

    /// [`Repository::open_blob`] without allocating: the plaintext is decrypted in place
    /// in `sealed`, or decompressed into `scratch` (a buffer the caller reuses), and the
    /// returned slice points at whichever holds it.
    pub fn open_blob_in<'a>(
        &self,
        pack: &Id,
        blob: &PackedBlob,
        sealed: &'a mut [u8],
        scratch: &'a mut Vec<u8>,
    ) -> Result<&'a [u8]> {
        let what = || format!("blob {} ({}) in pack {}", blob.id, blob.blob_type, pack);
        let plain = self
            .key
            .open_in_place(sealed)
            .map_err(|e| Error::corrupt(what(), e.to_string()))?;
        let data: &[u8] = if blob.uncompressed_length != 0 {
            let claimed = blob.uncompressed_length as usize;
            if claimed > max_expansion(plain.len()) {
                return Err(Error::corrupt(
                    what(),
                    format!(
                        "the index claims {claimed} bytes uncompressed from {}: not a real blob",
                        plain.len()
                    ),
                ));
            }
            zstd_context::decompress_into(plain, claimed, scratch)
                .map_err(|e| Error::corrupt(what(), format!("zstd: {e}")))?;
            // Restore places blobs by their indexed lengths: a wrong one would shift
            // every later blob of the file.
            if scratch.len() != claimed {
                return Err(Error::corrupt(
                    what(),
                    format!(
                        "decompresses to {} bytes, the index says {claimed}",
                        scratch.len()
                    ),
                ));
            }
            scratch
        } else {
            plain
        };
        if Id::hash(data) != blob.id {
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

    /// Reads and decodes the snapshot file `name`.
    pub fn load_snapshot(&self, name: &str) -> Result<Snapshot> {
        let plain = self.load_unpacked(FileKind::Snapshot, name)?;
        serde_json::from_slice(&plain)
            .map_err(|e| Error::corrupt(format!("snapshots/{name}"), e.to_string()))
    }

    /// Every snapshot that can be read, oldest first, and the snapshot files that cannot
    /// (damaged, or not a snapshot). Failures to reach the storage are errors; a file that
    /// vanished meanwhile (a concurrent forget) is left out.
    pub fn read_snapshots(&self) -> Result<(Vec<SnapshotEntry>, Vec<UnreadableSnapshot>)> {
        let mut out = Vec::new();
        let mut unreadable = Vec::new();
        for f in self.backend.list(FileKind::Snapshot)? {
            let Ok(id) = f.name.parse::<Id>() else {
                continue;
            };
            match self.load_snapshot(&f.name) {
                Ok(snapshot) => out.push(SnapshotEntry { id, snapshot }),
                Err(Error::Backend(e)) if e.is_not_found() => {}
                Err(error @ Error::Corrupt { .. }) => {
                    unreadable.push(UnreadableSnapshot { id, error });
                }
                Err(e) => return Err(e),
            }
        }
        out.sort_by_key(|e| (e.snapshot.timestamp(), e.id));
        Ok((out, unreadable))
    }

    /// Every snapshot that can be read, oldest first. A damaged snapshot file is skipped
    /// with a warning naming it (once per repository handle), as restic does, so one bad file
    /// does not block every command; `check` reports it.
    pub fn list_snapshots(&self) -> Result<Vec<SnapshotEntry>> {
        let (snapshots, unreadable) = self.read_snapshots()?;
        let mut warned = self.warned.lock().expect("warned snapshots");
        for u in unreadable {
            if warned.insert(u.id) {
                tracing::warn!(
                    "skipping a damaged snapshot: {}; `repair snapshots --forget {}` removes it",
                    u.error,
                    u.id.short()
                );
            }
        }
        Ok(snapshots)
    }

    /// Resolves `latest` or a (possibly abbreviated) snapshot id among the
    /// snapshots that pass `filter`.
    pub fn find_snapshot(&self, spec: &str, filter: &SnapshotFilter) -> Result<SnapshotEntry> {
        if spec.is_empty() {
            return Err(Error::Invalid(
                "no snapshot given: name a snapshot id (or a unique prefix of one) or `latest`"
                    .into(),
            ));
        }
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
            (None, _) => Err(Error::SnapshotNotFound {
                spec: spec.to_owned(),
            }),
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

/// True when the location has a `config`; a missing bucket or directory is no config.
fn config_exists(backend: &dyn Backend) -> Result<bool> {
    match backend.stat(FileKind::Config, "config") {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() || e.kind == BackendErrorKind::NoSuchContainer => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// What a location without `config` holds that only a repository holds (snapshots, index
/// files, packs), e.g. "3 files in snapshots/, 12 files in data/"; `None` when it holds
/// none of them.
fn repository_files(backend: &dyn Backend) -> Result<Option<String>> {
    let mut found = Vec::new();
    for kind in [FileKind::Snapshot, FileKind::Index, FileKind::Pack] {
        let n = match backend.list(kind) {
            Ok(files) => files.len(),
            Err(e) if e.is_not_found() || e.kind == BackendErrorKind::NoSuchContainer => 0,
            Err(e) => return Err(e.into()),
        };
        if n > 0 {
            found.push(format!("{n} files in {}/", kind.dir()));
        }
    }
    Ok((!found.is_empty()).then(|| found.join(", ")))
}

/// The error for a location without `config` that must not be taken for empty.
fn config_missing(backend: &dyn Backend) -> Result<Option<Error>> {
    let Some(found) = repository_files(backend)? else {
        return Ok(None);
    };
    // The files may belong to a concurrent init that won and whose backup is
    // already writing: its config, written before them, is there by now.
    if config_exists(backend)? {
        return Ok(None);
    }
    Ok(Some(Error::ConfigMissing {
        location: backend.location(),
        found,
    }))
}

/// How long a location with key files but no `config` is watched for the `config` of an
/// init running right now to appear.
const CONCURRENT_INIT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether `init` may create a repository here (`None`), or why not. Key files alone are
/// what an init writes before its config, so such a location is watched for a while in
/// case that init is running: a config that appears means a repository exists. Key files
/// that stay alone were left by an init that died; they open nothing and do no harm.
fn refuse_to_cover(backend: &dyn Backend) -> Result<Option<Error>> {
    if let Some(e) = config_missing(backend)? {
        return Ok(Some(e));
    }
    let keys = match backend.list(FileKind::Key) {
        Ok(files) => files.len(),
        Err(e) if e.is_not_found() || e.kind == BackendErrorKind::NoSuchContainer => 0,
        Err(e) => return Err(e.into()),
    };
    if keys > 0 {
        let deadline = std::time::Instant::now() + CONCURRENT_INIT_WAIT;
        while std::time::Instant::now() < deadline {
            if config_exists(backend)? {
                return Ok(Some(Error::RepositoryExists {
                    location: backend.location(),
                }));
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
    Ok(None)
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

/// The most a compressed file or blob may expand to: 64 MiB, or 1024 times its stored size
/// when that is more. Real JSON compresses a few times, a run of zeros (an 8 MiB chunk at
/// most) to a few hundred bytes; a small file claiming gigabytes is a zstd bomb.
pub fn max_expansion(stored: usize) -> usize {
    (64 << 20).max(stored.saturating_mul(1024))
}

/// Decodes the plaintext of an unpacked file: v2's version byte and zstd
/// frame, or raw JSON as v1 wrote it.
fn decode_unpacked(plain: &[u8]) -> std::result::Result<Vec<u8>, String> {
    match plain.first() {
        Some(b'{') | Some(b'[') => Ok(plain.to_vec()),
        Some(2) => {
            use std::io::Read;
            let limit = max_expansion(plain.len());
            let decoder =
                zstd::stream::read::Decoder::new(&plain[1..]).map_err(|e| format!("zstd: {e}"))?;
            // The frame's own size, when it states one within the limit: read_to_end alone
            // doubles its buffer, up to twice an index file's 16 MiB of JSON.
            let stated = zstd::zstd_safe::get_frame_content_size(&plain[1..])
                .ok()
                .flatten()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|&n| n <= limit);
            let mut out = Vec::with_capacity(stated.unwrap_or(0));
            decoder
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| format!("zstd: {e}"))?;
            if out.len() > limit {
                return Err(format!(
                    "decompresses to more than {limit} bytes from {}: not a real repository file",
                    plain.len()
                ));
            }
            Ok(out)
        }
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

    /// `compressed` decompressed into `out` (replacing what it held), failing when it is
    /// invalid or longer than `capacity`.
    pub fn decompress_into(
        compressed: &[u8],
        capacity: usize,
        out: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        out.clear();
        out.reserve(capacity);
        DECOMPRESSOR.with(|cell| {
            let mut cell = cell.borrow_mut();
            if cell.is_none() {
                *cell = Some(zstd::bulk::Decompressor::new()?);
            }
            cell.as_mut()
                .expect("set above")
                .decompress_to_buffer(compressed, out)
                .map(|_| ())
        })
    }
}
