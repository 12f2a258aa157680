//! A pack far bigger than the upload buffers goes to a real MinIO in a
//! multipart upload with bounded memory, and reads back byte for byte.
//!
//! Alone in its test binary, so no other test's allocations blur the
//! process's peak memory.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::time::Duration;

use sha2::{Digest, Sha256};
use sluice_repo::backend::retry::{RetryBackend, RetryPolicy};
use sluice_repo::backend::s3::{S3Backend, S3Options};
use sluice_repo::backend::{Backend, FileKind, Payload};
use sluice_testkit::MinIo;
use sluice_testkit::data::RandomBytes;

const MIB: u64 = 1 << 20;

/// Resident memory and its peak since the last reset, in bytes.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| -> u64 {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in /proc/self/status"));
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Makes the peak equal the current resident size (Linux `clear_refs` 5).
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("cannot reset the peak RSS");
}

/// A file of `len` pseudo-random (incompressible, non-repeating) bytes.
fn random_file(len: u64) -> File {
    let file = tempfile::tempfile().unwrap();
    let mut out = BufWriter::with_capacity(MIB as usize, file.try_clone().unwrap());
    let mut stream = RandomBytes::new(1);
    let mut buf = vec![0u8; MIB as usize];
    let mut left = len;
    while left > 0 {
        let n = left.min(MIB) as usize;
        stream.fill(&mut buf[..n]);
        out.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    out.flush().unwrap();
    file
}

fn sha256_of_file(file: &File, len: u64) -> [u8; 32] {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; MIB as usize];
    let mut offset = 0;
    while offset < len {
        let n = MIB.min(len - offset) as usize;
        file.read_exact_at(&mut buf[..n], offset).unwrap();
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    hasher.finalize().into()
}

#[test]
fn big_file_payload_uploads_in_parts_with_bounded_memory() {
    let minio = MinIo::start();
    let options = S3Options {
        access_key_id: Some(MinIo::ACCESS_KEY.into()),
        secret_access_key: Some(MinIo::SECRET_KEY.into()),
        region: Some(MinIo::REGION.into()),
        ..S3Options::default()
    };
    let b = S3Backend::new(&minio.repository("big/repo"), options).unwrap();
    // MinIO may answer 503 for a moment after it reports ready.
    let b = RetryBackend::new(
        b,
        RetryPolicy {
            max_elapsed: Duration::from_secs(30),
            ..RetryPolicy::default()
        },
    );
    b.create().unwrap();

    // 100 MiB: six 16 MiB parts and a short last one.
    let len = 100 * MIB + 12_345;
    let file = random_file(len);
    let name = format!("c0{}", "ff".repeat(31));

    reset_peak();
    let (before, _) = memory();
    b.save(FileKind::Pack, &name, Payload::File { file: &file, len })
        .unwrap();
    let (_, peak) = memory();
    let grew = peak.saturating_sub(before);
    // Two 16 MiB parts in flight, plus allocator and TLS/HTTP buffers: far
    // below the file's size, and independent of it.
    assert!(
        grew < 56 * MIB,
        "uploading {} MiB raised peak memory by {} MiB",
        len / MIB,
        grew / MIB
    );

    assert_eq!(b.stat(FileKind::Pack, &name).unwrap(), len);
    // Ranges across part boundaries and at the very end.
    for (offset, n) in [
        (0, 100),
        (16 * MIB - 50, 100),
        (48 * MIB - 1, 2),
        (len - 77, 77),
    ] {
        let mut want = vec![0u8; n as usize];
        file.read_exact_at(&mut want, offset).unwrap();
        assert_eq!(
            b.load_range(FileKind::Pack, &name, offset, n).unwrap(),
            want,
            "range {offset}+{n}"
        );
    }
    let stored = b.load(FileKind::Pack, &name).unwrap();
    assert_eq!(stored.len() as u64, len);
    let stored_hash: [u8; 32] = Sha256::digest(&stored).into();
    assert_eq!(stored_hash, sha256_of_file(&file, len));
    assert_eq!(b.list(FileKind::Pack).unwrap()[0].size, len);
}
