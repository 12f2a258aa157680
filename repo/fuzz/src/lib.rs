//! What the fuzz targets share: a repository held in memory (so an input costs no disk
//! writes), and a small valid repository to start every input from. The targets seal what
//! the fuzzer writes with the repository's own key, so inputs reach the parsers behind the
//! MAC instead of stopping at it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use sluice_repo::Id;
use sluice_repo::backend::{
    Backend, BackendError, BackendErrorKind, BackendResult, FileKind, ListedFile, Payload,
};
use sluice_repo::key::KdfParams;
use sluice_repo::pack::BlobType;
use sluice_repo::packer::PackSink;
use sluice_repo::repository::{Options, Repository};
use sluice_repo::snapshot::Snapshot;
use sluice_repo::tree::{Node, NodeType, Tree};

/// The password of [`template`].
pub const PASSWORD: &str = "fuzz";

/// Repository files in memory, keyed by kind and name.
#[derive(Default, Clone)]
pub struct MemBackend {
    files: Arc<Mutex<HashMap<(FileKind, String), Vec<u8>>>>,
}

impl MemBackend {
    /// A copy whose files can change without touching this one.
    pub fn fork(&self) -> MemBackend {
        let files = self.files.lock().unwrap().clone();
        MemBackend {
            files: Arc::new(Mutex::new(files)),
        }
    }

    /// Puts a file in place, replacing any of that name.
    pub fn put(&self, kind: FileKind, name: &str, bytes: Vec<u8>) {
        self.files
            .lock()
            .unwrap()
            .insert((kind, name.to_string()), bytes);
    }

    /// The names of the files of a kind.
    pub fn names(&self, kind: FileKind) -> Vec<String> {
        let mut names: Vec<String> = self
            .files
            .lock()
            .unwrap()
            .keys()
            .filter(|(k, _)| *k == kind)
            .map(|(_, n)| n.clone())
            .collect();
        names.sort();
        names
    }

    /// The content of a file.
    pub fn get(&self, kind: FileKind, name: &str) -> Option<Vec<u8>> {
        self.files
            .lock()
            .unwrap()
            .get(&(kind, name.to_string()))
            .cloned()
    }
}

fn not_found(kind: FileKind, name: &str) -> BackendError {
    BackendError {
        kind: BackendErrorKind::NotFound,
        context: format!("read {}", kind.path(name)),
        cause: "no such file".into(),
        hint: None,
    }
}

impl Backend for MemBackend {
    fn location(&self) -> String {
        "memory".into()
    }
    fn create(&self) -> BackendResult<()> {
        Ok(())
    }
    fn save(&self, kind: FileKind, name: &str, payload: Payload<'_>) -> BackendResult<()> {
        let bytes = match payload {
            Payload::Bytes(b) => b.to_vec(),
            Payload::File { file, len } | Payload::Staged { file, len, .. } => {
                use std::os::unix::fs::FileExt;
                let mut buf = vec![0u8; len as usize];
                file.read_exact_at(&mut buf, 0)
                    .map_err(|e| BackendError::from_io("read payload".into(), &e))?;
                buf
            }
        };
        self.put(kind, name, bytes);
        Ok(())
    }
    fn save_new(&self, kind: FileKind, name: &str, bytes: &[u8]) -> BackendResult<()> {
        let mut files = self.files.lock().unwrap();
        let key = (kind, name.to_string());
        if files.contains_key(&key) {
            return Err(BackendError {
                kind: BackendErrorKind::AlreadyExists,
                context: format!("create {}", kind.path(name)),
                cause: "exists".into(),
                hint: None,
            });
        }
        files.insert(key, bytes.to_vec());
        Ok(())
    }
    fn load(&self, kind: FileKind, name: &str) -> BackendResult<Vec<u8>> {
        self.get(kind, name).ok_or_else(|| not_found(kind, name))
    }
    fn load_range(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> BackendResult<Vec<u8>> {
        let files = self.files.lock().unwrap();
        let data = files
            .get(&(kind, name.to_string()))
            .ok_or_else(|| not_found(kind, name))?;
        let end = offset
            .checked_add(length)
            .filter(|&e| e <= data.len() as u64);
        match end {
            Some(end) => Ok(data[offset as usize..end as usize].to_vec()),
            None => Err(BackendError {
                kind: BackendErrorKind::Other,
                context: format!("read {}", kind.path(name)),
                cause: "shorter than asked".into(),
                hint: None,
            }),
        }
    }
    fn stat(&self, kind: FileKind, name: &str) -> BackendResult<u64> {
        self.get(kind, name)
            .map(|d| d.len() as u64)
            .ok_or_else(|| not_found(kind, name))
    }
    fn remove(&self, kind: FileKind, name: &str) -> BackendResult<()> {
        self.files.lock().unwrap().remove(&(kind, name.to_string()));
        Ok(())
    }
    fn list(&self, kind: FileKind) -> BackendResult<Vec<ListedFile>> {
        let files = self.files.lock().unwrap();
        Ok(files
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|((_, n), d)| ListedFile {
                name: n.clone(),
                size: d.len() as u64,
            })
            .collect())
    }
}

/// A small valid repository: a snapshot of a directory with a file, a subdirectory and a
/// symlink. Built once per process; every input works on a [`MemBackend::fork`] of it.
pub fn template() -> &'static MemBackend {
    static TEMPLATE: OnceLock<MemBackend> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let backend = MemBackend::default();
        let mut repo = Repository::init(
            Arc::new(backend.clone()),
            PASSWORD,
            KdfParams::INSECURE_FOR_TESTS,
            Options::default(),
        )
        .expect("init");
        let data = b"fuzz file content".to_vec();
        let data_id = Id::hash(&data);
        let inner = Tree {
            nodes: vec![Node {
                size: data.len() as u64,
                mode: 0o600,
                content: Some(vec![data_id]),
                ..Node::new(b"inner", NodeType::File)
            }],
        }
        .to_blob();
        let inner_id = Id::hash(&inner);
        let mut link = Node::new(b"link", NodeType::Symlink);
        link.set_link_target(b"inner");
        let root = Tree {
            nodes: vec![
                Node {
                    size: data.len() as u64,
                    mode: 0o644,
                    content: Some(vec![data_id]),
                    ..Node::new(b"file", NodeType::File)
                },
                link,
                Node {
                    mode: 0o755 | sluice_repo::tree::mode::DIR,
                    subtree: Some(inner_id),
                    ..Node::new(b"sub", NodeType::Dir)
                },
            ],
        }
        .to_blob();
        let root_id = Id::hash(&root);
        store_blobs(
            &mut repo,
            &[
                (BlobType::Data, data_id, data),
                (BlobType::Tree, inner_id, inner),
                (BlobType::Tree, root_id, root),
            ],
        );
        repo.save_snapshot(&snapshot(root_id)).expect("snapshot");
        backend
    })
}

/// A snapshot of `tree` with fixed fields.
pub fn snapshot(tree: Id) -> Snapshot {
    Snapshot {
        time: "2024-05-06T07:08:09+02:00".into(),
        parent: None,
        tree,
        paths: vec!["/data".into()],
        hostname: "fuzz".into(),
        username: String::new(),
        uid: 0,
        gid: 0,
        excludes: Vec::new(),
        tags: Vec::new(),
        original: None,
        program_version: String::new(),
        summary: None,
    }
}

/// Writes blobs into new packs and an index file listing them.
pub fn store_blobs(repo: &mut Repository, blobs: &[(BlobType, Id, Vec<u8>)]) {
    let sink = PackSink::new(
        repo.backend().clone(),
        repo.key(),
        repo.options().pack_size,
        1,
    );
    for (t, id, plain) in blobs {
        let (sealed, uncompressed) = repo.seal_blob(*t, plain);
        sink.add(*t, *id, &sealed, uncompressed).expect("add");
    }
    let (packs, _) = sink.finish().expect("packs");
    repo.save_index(packs).expect("index");
}

/// Opens a fork of the template.
pub fn open(backend: &MemBackend) -> Option<Repository> {
    Repository::open(Arc::new(backend.clone()), PASSWORD, Options::default()).ok()
}
