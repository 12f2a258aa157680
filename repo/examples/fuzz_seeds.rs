//! Writes the seed corpora of the fuzz targets (`repo/fuzz`) into the directory named by the
//! first argument, one subdirectory per target: the decrypted files of restic's own test
//! repositories (`testdata/restic`) and of a repository written here by a backup, as
//! the tests write them. `make fuzz` runs it; nothing it writes is committed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_repo::archiver::{self, BackupOptions, Progress};
use sluice_repo::backend::FileKind;
use sluice_repo::backend::local::LocalBackend;
use sluice_repo::check::read_header;
use sluice_repo::key::KdfParams;
use sluice_repo::lock::{Lock, LockOptions};
use sluice_repo::pack::encode_header;
use sluice_repo::repository::{Options, Repository};
use sluice_repo::{Id, Result};

/// One corpus directory per fuzz target, each input named by its hash as libFuzzer does.
struct Corpus {
    root: PathBuf,
    written: usize,
}

impl Corpus {
    fn add(&mut self, target: &str, bytes: &[u8]) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).expect("corpus directory");
        std::fs::write(dir.join(Id::hash(bytes).to_hex()), bytes).expect("corpus file");
        self.written += 1;
    }

    /// The same content as an input of the whole-repository target, which takes the kind
    /// of file from the first byte.
    fn add_both(&mut self, target: &str, choice: u8, bytes: &[u8]) {
        self.add(target, bytes);
        let mut whole = vec![choice];
        whole.extend_from_slice(bytes);
        self.add("repository", &whole);
    }
}

/// Adds every file of the repository at `dir`, decrypted, to the corpora.
fn harvest(dir: &Path, password: &str, corpus: &mut Corpus) -> Result<()> {
    let backend = Arc::new(LocalBackend::new(dir));
    let mut repo = Repository::open(backend.clone(), password, Options::default())?;
    for f in repo.backend().list(FileKind::Key)? {
        corpus.add_both("key_file", 5, &repo.backend().load(FileKind::Key, &f.name)?);
    }
    let config = repo.backend().load(FileKind::Config, "config")?;
    if let Ok(plain) = repo.key().open(&config) {
        corpus.add("repository", &[&[6u8][..], &plain].concat());
    }
    for f in repo.backend().list(FileKind::Index)? {
        corpus.add_both(
            "index_json",
            1,
            &repo.load_unpacked(FileKind::Index, &f.name)?,
        );
    }
    for f in repo.backend().list(FileKind::Snapshot)? {
        corpus.add_both(
            "snapshot_json",
            2,
            &repo.load_unpacked(FileKind::Snapshot, &f.name)?,
        );
    }
    for f in repo.backend().list(FileKind::Lock)? {
        if let Ok(plain) = repo.load_unpacked(FileKind::Lock, &f.name) {
            corpus.add_both("lock_file", 4, &plain);
        }
    }
    for f in repo.backend().list(FileKind::Pack)? {
        let Ok(id) = f.name.parse::<Id>() else {
            continue;
        };
        if let Ok(blobs) = read_header(&repo, &id, f.size) {
            let header = encode_header(&blobs);
            let area: u64 = blobs.iter().map(|b| u64::from(b.length)).sum();
            let mut input = (area as u32).to_le_bytes().to_vec();
            input.extend_from_slice(&header);
            corpus.add("pack_header", &input);
            corpus.add("repository", &[&[3u8][..], &header].concat());
        }
    }
    repo.load_index()?;
    let mut trees = BTreeSet::new();
    let (snapshots, _) = repo.read_snapshots()?;
    let mut stack: Vec<Id> = snapshots.iter().map(|s| s.snapshot.tree).collect();
    while let Some(id) = stack.pop() {
        if !trees.insert(id) {
            continue;
        }
        let Ok(blob) = repo.load_blob(&id) else {
            continue;
        };
        corpus.add_both("tree_json", 0, &blob);
        if let Ok(tree) = sluice_repo::tree::Tree::from_blob(&blob) {
            stack.extend(tree.nodes.iter().filter_map(|n| n.subtree));
        }
    }
    Ok(())
}

/// A repository as the tests write them: a backup of a tree with files, a directory, a
/// symlink and awkward names, and a lock held while it is harvested.
fn write_own(dir: &Path, corpus: &mut Corpus) -> Result<()> {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("sub")).expect("source");
    std::fs::write(src.join("file"), b"seed file").expect("source");
    std::fs::write(src.join("sub/\u{e9}t\u{e9} \"q\""), vec![7u8; 70_000]).expect("source");
    std::os::unix::fs::symlink("sub", src.join("link")).expect("source");
    let repo_dir = dir.join("repo");
    let mut repo = Repository::init(
        Arc::new(LocalBackend::new(&repo_dir)),
        "seed",
        KdfParams::INSECURE_FOR_TESTS,
        Options::default(),
    )?;
    archiver::backup(
        &mut repo,
        &BackupOptions::new(vec![src], dir.to_path_buf()),
        &Progress::default(),
    )?;
    let _lock = Lock::acquire(&repo, &LockOptions::shared())?;
    harvest(&repo_dir, "seed", corpus)
}

fn main() {
    let root = PathBuf::from(std::env::args().nth(1).expect("usage: fuzz_seeds OUT_DIR"));
    let mut corpus = Corpus { root, written: 0 };
    let work = tempfile::tempdir().expect("temp dir");
    write_own(&work.path().join("own"), &mut corpus).expect("a repository of our own");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/restic/repos");
    let tarballs = std::fs::read_dir(&fixtures)
        .unwrap_or_else(|e| panic!("restic's fixtures at {}: {e}", fixtures.display()));
    for t in tarballs {
        let path = t.expect("fixture").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let into = work.path().join(&name);
        std::fs::create_dir_all(&into).expect("fixture directory");
        let unpacked = std::process::Command::new("tar")
            .arg("xzf")
            .arg(&path)
            .arg("-C")
            .arg(&into)
            .status()
            .expect("tar");
        assert!(unpacked.success(), "cannot unpack {name}");
        if into.join("repo/config").is_file() {
            // Damaged fixtures give what they can.
            if let Err(e) = harvest(&into.join("repo"), "geheim", &mut corpus) {
                eprintln!("{name}: {e}");
            }
        }
    }
    println!(
        "wrote {} seed inputs to {}",
        corpus.written,
        corpus.root.display()
    );
}
