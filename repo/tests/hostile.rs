//! The engine against repository bytes that lie: lengths, sizes and parameters read from a
//! repository decide nothing about how much is allocated, and one unreadable file costs
//! only itself.

use std::sync::Arc;

use sluice_repo::backend::local::LocalBackend;
use sluice_repo::backend::{
    Backend, BackendError, BackendErrorKind, BackendResult, FileKind, ListedFile, Payload,
};
use sluice_repo::key::KdfParams;
use sluice_repo::repository::{Options, Repository, seal_unpacked};
use sluice_repo::{Error, Id};

const PASSWORD: &str = "hostile-test-password";

fn new_repo(dir: &std::path::Path) -> Repository {
    Repository::init(
        Arc::new(LocalBackend::new(dir)),
        PASSWORD,
        KdfParams::INSECURE_FOR_TESTS,
        Options::default(),
    )
    .unwrap()
}

#[test]
fn a_range_longer_than_the_file_fails_without_allocating_it() {
    let w = tempfile::tempdir().unwrap();
    let backend = LocalBackend::new(w.path());
    backend.create().unwrap();
    backend
        .save(
            FileKind::Pack,
            &"ab".repeat(32),
            Payload::Bytes(b"short pack"),
        )
        .unwrap();
    // An index may claim any length; a terabyte buffer would abort the process.
    let err = backend
        .load_range(FileKind::Pack, &"ab".repeat(32), 0, 1 << 40)
        .unwrap_err();
    assert!(err.to_string().contains("shorter"), "{err}");
    let err = backend
        .load_range(FileKind::Pack, &"ab".repeat(32), u64::MAX - 1, 10)
        .unwrap_err();
    assert!(err.to_string().contains("shorter"), "{err}");
    assert_eq!(
        backend
            .load_range(FileKind::Pack, &"ab".repeat(32), 6, 4)
            .unwrap(),
        b"pack"
    );
}

/// The real local backend, except that reading the named key file fails, as a file
/// with bad permissions or a flaky disk would.
struct OneKeyUnreadable {
    inner: LocalBackend,
    key: String,
}

impl Backend for OneKeyUnreadable {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create(&self) -> BackendResult<()> {
        self.inner.create()
    }
    fn save(&self, kind: FileKind, name: &str, payload: Payload<'_>) -> BackendResult<()> {
        self.inner.save(kind, name, payload)
    }
    fn save_new(&self, kind: FileKind, name: &str, bytes: &[u8]) -> BackendResult<()> {
        self.inner.save_new(kind, name, bytes)
    }
    fn load(&self, kind: FileKind, name: &str) -> BackendResult<Vec<u8>> {
        if kind == FileKind::Key && name == self.key {
            return Err(BackendError {
                kind: BackendErrorKind::PermissionDenied,
                context: format!("read keys/{name}"),
                cause: "Permission denied".into(),
                hint: None,
            });
        }
        self.inner.load(kind, name)
    }
    fn load_range(&self, kind: FileKind, name: &str, o: u64, l: u64) -> BackendResult<Vec<u8>> {
        self.inner.load_range(kind, name, o, l)
    }
    fn stat(&self, kind: FileKind, name: &str) -> BackendResult<u64> {
        self.inner.stat(kind, name)
    }
    fn remove(&self, kind: FileKind, name: &str) -> BackendResult<()> {
        self.inner.remove(kind, name)
    }
    fn list(&self, kind: FileKind) -> BackendResult<Vec<ListedFile>> {
        self.inner.list(kind)
    }
}

#[test]
fn an_unreadable_key_file_does_not_stop_the_others_from_opening() {
    let w = tempfile::tempdir().unwrap();
    let repo = new_repo(w.path());
    let other = sluice_repo::key::add(
        &**repo.backend(),
        repo.key(),
        "another password",
        KdfParams::INSECURE_FOR_TESTS,
    )
    .unwrap();
    let backend = Arc::new(OneKeyUnreadable {
        inner: LocalBackend::new(w.path()),
        key: other.to_hex(),
    });
    Repository::open(backend.clone(), PASSWORD, Options::default())
        .expect("the readable key opens the repository");
    // When the key that would open it is the unreadable one, the error says why, not
    // "wrong password".
    match Repository::open(backend, "another password", Options::default()) {
        Err(Error::Backend(e)) => assert!(e.to_string().contains("Permission denied"), "{e}"),
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("opened with an unreadable key"),
    }
}

#[test]
fn a_zstd_bomb_in_a_snapshot_file_is_skipped_as_damage() {
    let w = tempfile::tempdir().unwrap();
    let repo = new_repo(w.path());
    // A few kilobytes that expand to 100 MiB: far beyond any real snapshot.
    let mut json = br#"{"time":"2024-01-01T00:00:00Z","tree":""#.to_vec();
    json.extend(std::iter::repeat_n(b'0', 100 << 20));
    let sealed = seal_unpacked(repo.key(), 2, &json);
    assert!(sealed.len() < 1 << 20, "{}", sealed.len());
    let id = Id::hash(&sealed);
    repo.backend()
        .save(FileKind::Snapshot, &id.to_hex(), Payload::Bytes(&sealed))
        .unwrap();
    let (good, bad) = repo.read_snapshots().unwrap();
    assert!(good.is_empty());
    assert_eq!(bad.len(), 1);
    let why = bad[0].error.to_string();
    assert!(why.contains("decompresses to more than"), "{why}");
}

#[test]
fn a_blob_whose_index_entry_lies_about_its_length_is_corrupt() {
    let w = tempfile::tempdir().unwrap();
    let repo = new_repo(w.path());
    let plain = b"some tree or data".repeat(10);
    let (sealed, uncompressed) = repo.seal_blob(sluice_repo::pack::BlobType::Tree, &plain);
    assert_ne!(uncompressed, 0);
    let blob = |uncompressed_length| sluice_repo::pack::PackedBlob {
        id: Id::hash(&plain),
        blob_type: sluice_repo::pack::BlobType::Tree,
        offset: 0,
        length: sealed.len() as u32,
        uncompressed_length,
    };
    let pack = Id::hash(b"pack");
    assert_eq!(
        repo.open_blob(&pack, &blob(uncompressed), &mut sealed.clone())
            .unwrap(),
        plain
    );
    for claimed in [u32::MAX, uncompressed + 1, uncompressed - 1] {
        let err = repo
            .open_blob(&pack, &blob(claimed), &mut sealed.clone())
            .unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{claimed}: {err}");
    }
    // Shorter than IV and MAC.
    let mut tiny = sealed[..10].to_vec();
    let short = sluice_repo::pack::PackedBlob {
        length: 10,
        ..blob(0)
    };
    assert_eq!(short.plain_length(), 0);
    assert!(repo.open_blob(&pack, &short, &mut tiny).is_err());
}
