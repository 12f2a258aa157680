//! Crafted repositories: damaged or hostile content written with the engine's own
//! primitives, so every bad input a test uses is visible in its code rather than hidden
//! in a binary fixture.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_repo::Id;
use sluice_repo::backend::local::LocalBackend;
use sluice_repo::backend::{Backend, FileKind, Payload};
use sluice_repo::key::KdfParams;
use sluice_repo::pack::BlobType;
use sluice_repo::packer::PackSink;
use sluice_repo::repository::{Options, Repository};
use sluice_repo::snapshot::Snapshot;
use sluice_repo::tree::{Node, NodeType, Tree};

use super::PASSWORD;

/// A local repository whose blobs, trees and snapshots a test writes one by one.
pub struct Crafted {
    pub dir: PathBuf,
    pub repo: Repository,
    /// Blobs written by the next [`Crafted::flush`].
    pending: Vec<(BlobType, Id, Vec<u8>)>,
}

impl Crafted {
    /// A new, empty repository at `dir`, opened with [`PASSWORD`].
    pub fn new(dir: &Path) -> Crafted {
        let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir));
        let repo = Repository::init(
            backend,
            PASSWORD,
            KdfParams::INSECURE_FOR_TESTS,
            Options::default(),
        )
        .expect("init a crafted repository");
        Crafted {
            dir: dir.to_path_buf(),
            repo,
            pending: Vec::new(),
        }
    }

    /// Queues a data blob and returns its id.
    pub fn data(&mut self, bytes: &[u8]) -> Id {
        let id = Id::hash(bytes);
        self.pending.push((BlobType::Data, id, bytes.to_vec()));
        id
    }

    /// Queues a tree with exactly these nodes, in this order (never sorted or
    /// deduplicated: that is the point), and returns its id.
    pub fn tree(&mut self, nodes: Vec<Node>) -> Id {
        let blob = Tree { nodes }.to_blob();
        let id = Id::hash(&blob);
        self.pending.push((BlobType::Tree, id, blob));
        id
    }

    /// Writes the queued blobs into packs and an index.
    pub fn flush(&mut self) {
        let sink = PackSink::new(
            self.repo.backend().clone(),
            self.repo.key(),
            self.repo.options().pack_size,
            1,
        );
        for (t, id, plain) in self.pending.drain(..) {
            let (sealed, uncompressed) = self.repo.seal_blob(t, &plain);
            sink.add(t, id, &sealed, uncompressed).expect("add blob");
        }
        let (packs, _) = sink.finish().expect("upload packs");
        self.repo.save_index(packs).expect("save index");
    }

    /// Flushes, then writes a snapshot of `tree` and returns its id.
    pub fn snapshot(&mut self, tree: Id) -> Id {
        self.flush();
        self.repo
            .save_snapshot(&Snapshot {
                time: "2024-05-06T07:08:09.123456789+02:00".into(),
                parent: None,
                tree,
                paths: vec!["/data".into()],
                hostname: "crafted".into(),
                username: String::new(),
                uid: 0,
                gid: 0,
                excludes: Vec::new(),
                tags: Vec::new(),
                original: None,
                program_version: String::new(),
                summary: None,
            })
            .expect("save snapshot")
    }

    /// Replaces a stored file with `bytes`, as damage or a hostile writer would.
    pub fn overwrite(&self, kind: FileKind, name: &str, bytes: &[u8]) {
        let path = self.dir.join(kind.path(name));
        let _ = std::fs::remove_file(&path);
        LocalBackend::new(&self.dir)
            .save(kind, name, Payload::Bytes(bytes))
            .expect("overwrite");
    }

    /// The path of a stored file.
    pub fn path(&self, kind: FileKind, name: &str) -> PathBuf {
        self.dir.join(kind.path(name))
    }
}

/// A node with the given name and type, and times restic can read.
fn node(name: &[u8], node_type: NodeType) -> Node {
    let time = "2024-05-06T07:08:09.5+02:00".to_string();
    Node {
        mtime: time.clone(),
        atime: time.clone(),
        ctime: time,
        ..Node::new(name, node_type)
    }
}

/// A file node with its content blobs.
pub fn file(name: &[u8], content: Vec<Id>, size: u64, mode: u32) -> Node {
    Node {
        mode,
        size,
        content: Some(content),
        ..node(name, NodeType::File)
    }
}

/// A directory node.
pub fn dir(name: &[u8], subtree: Id) -> Node {
    Node {
        mode: 0o755 | sluice_repo::tree::mode::DIR,
        subtree: Some(subtree),
        ..node(name, NodeType::Dir)
    }
}

/// A symlink node.
pub fn symlink(name: &[u8], target: &[u8]) -> Node {
    let mut n = Node {
        mode: 0o777 | sluice_repo::tree::mode::SYMLINK,
        ..node(name, NodeType::Symlink)
    };
    n.set_link_target(target);
    n
}
