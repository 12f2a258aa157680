//! The archiver's fast paths against the real restic: a large file chunked
//! on every core and a sparse file whose holes are not read must give
//! exactly restic's chunks (backing them up into restic's repository adds
//! nothing), and what Sluice writes must pass `restic check --read-data`
//! and restore byte for byte, holes included.
//!
//! Needs restic; `e2e/tools.sh restic` builds the pinned one.

use std::fs::{self, File};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use sluice_repo::Repository;
use sluice_repo::archiver::{self, BackupOptions, ParentChoice, Progress};
use sluice_repo::backend;
use sluice_repo::backend::s3::S3Options;
use sluice_repo::chunker::MIN_SIZE;
use sluice_repo::repository::Options;
use sluice_repo::restorer::{self, RestoreOptions, RestoreProgress};
use sluice_testkit::Tool;
use sluice_testkit::data::random_bytes;

const PASSWORD: &str = "archiver-restic";
const MIB: usize = 1 << 20;

fn restic(repo: &Path, cwd: &Path, args: &[&str]) -> String {
    let out = Command::new(Tool::Restic.path())
        .args(args)
        .current_dir(cwd)
        .env("RESTIC_REPOSITORY", repo)
        .env("RESTIC_PASSWORD", PASSWORD)
        .env("RESTIC_CACHE_DIR", repo.with_extension("cache"))
        .output()
        .expect("run restic");
    assert!(
        out.status.success(),
        "restic {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn open(repo: &Path) -> Repository {
    let backend: Arc<dyn backend::Backend> = Arc::from(
        backend::open(&repo.display().to_string(), S3Options::default()).expect("open backend"),
    );
    let mut r = Repository::open(backend, PASSWORD, Options::default()).expect("open repository");
    r.load_index().expect("load index");
    r
}

/// Backs up `src` (as `.`) with Sluice without a parent; returns the bytes
/// of new data it stored.
fn sluice_backup(repo: &Path, src: &Path) -> u64 {
    let mut r = open(repo);
    let mut opts = BackupOptions::new(vec![PathBuf::from(".")], src.to_path_buf());
    opts.parent = ParentChoice::None;
    let result = archiver::backup(&mut r, &opts, &Progress::default()).expect("sluice backup");
    assert!(result.warnings.is_empty(), "{:?}", result.warnings);
    result.snapshot.summary.expect("summary").data_added
}

/// restic backs `src` up first, then Sluice into the same repository: equal
/// cut points mean Sluice adds no data. Then restic reads everything back.
fn assert_chunks_match_restic(src: &Path, work: &Path) {
    let repo = work.join("repo");
    restic(&repo, work, &["init"]);
    restic(&repo, src, &["backup", "."]);
    let added = sluice_backup(&repo, src);
    assert_eq!(
        added,
        0,
        "sluice cut {} differently from restic",
        src.display()
    );
    restic(&repo, work, &["check", "--read-data"]);
}

#[test]
fn large_file_chunked_on_every_core_matches_restic() {
    let work = tempfile::tempdir().expect("temp dir");
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    // Random data with a zero run and a short repeating pattern inside, so
    // the parallel search meets at once, late and never.
    let mut data = random_bytes(21, 100 * MIB + 12345);
    data[30 * MIB..47 * MIB].fill(0);
    for (i, b) in data[60 * MIB..78 * MIB].iter_mut().enumerate() {
        *b = (i % 64) as u8;
    }
    fs::write(src.join("large.bin"), &data).unwrap();
    fs::write(src.join("small.bin"), random_bytes(22, 3 * MIB)).unwrap();
    assert_chunks_match_restic(&src, work.path());
}

#[test]
fn sparse_file_holes_are_chunked_like_restic_and_restored_as_holes() {
    let work = tempfile::tempdir().expect("temp dir");
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    let path = src.join("disk.img");
    let size = 64 * MIB as u64 + 777;
    let f = File::create(&path).unwrap();
    f.set_len(size).unwrap();
    // Extents at a hole's start, straddling MIN_SIZE boundaries, close
    // together (a hole shorter than a chunk) and near the end; the file
    // starts and ends with holes.
    let extents: [(u64, usize); 6] = [
        (3 * MIN_SIZE as u64 + 4096, 200_000),
        (5 * MIB as u64, 3 * MIB),
        (8 * MIB as u64 + 4096, 8192),
        (8 * MIB as u64 + 65536, 1_500_000),
        (40 * MIB as u64 - 4096, MIN_SIZE + 4096),
        (size - 300_000 - 777, 100_000),
    ];
    for (i, (off, len)) in extents.iter().enumerate() {
        f.write_all_at(&random_bytes(30 + i as u64, *len), *off)
            .unwrap();
    }
    f.sync_all().unwrap();
    drop(f);
    let meta = fs::metadata(&path).unwrap();
    assert!(
        meta.blocks() * 512 < meta.len() / 2,
        "the test file system does not keep holes ({} blocks for {} bytes): run the test with TMPDIR on ext4, xfs or tmpfs",
        meta.blocks(),
        meta.len()
    );
    assert_chunks_match_restic(&src, work.path());

    let repo = open(&work.path().join("repo"));
    let snapshot = repo
        .find_snapshot("latest", &Default::default())
        .expect("latest snapshot");
    let target = work.path().join("restored");
    let result = restorer::restore(
        &repo,
        &snapshot,
        &RestoreOptions::new(target.clone()),
        &RestoreProgress::default(),
    )
    .expect("restore");
    assert!(result.errors.is_empty(), "{:?}", result.errors);
    let restored = target.join("disk.img");
    assert!(
        fs::read(&restored).unwrap() == fs::read(&path).unwrap(),
        "restored file differs"
    );
    // Chunks of zeros stay holes; only chunks that mix data and zeros
    // write zeros.
    let restored_bytes = fs::metadata(&restored).unwrap().blocks() * 512;
    assert!(
        restored_bytes < size / 4,
        "restore filled holes: {restored_bytes} bytes allocated of {size}"
    );
}
