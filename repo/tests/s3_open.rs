//! `backend::open` takes an `s3:` URL and restic's environment variables to a
//! working, retrying backend on a real MinIO.
//!
//! Alone in its test binary because it sets process environment variables.

use sluice_repo::backend::{self, FileKind, Payload};
use sluice_testkit::MinIo;

#[test]
fn open_reads_restics_environment() {
    let minio = MinIo::start();
    // SAFETY: this is the only test in this binary, so no other thread reads
    // the environment while it changes.
    unsafe {
        for (name, value) in minio.env() {
            std::env::set_var(name, value);
        }
        std::env::remove_var("AWS_SESSION_TOKEN");
        std::env::remove_var("RESTIC_CACERT");
    }

    let url = minio.repository("opened/prefix");
    let b = backend::open(&url).unwrap();
    assert_eq!(b.location(), url);
    b.create().unwrap();
    b.save(FileKind::Config, "", Payload::Bytes(b"cfg"))
        .unwrap();
    assert_eq!(b.load(FileKind::Config, "").unwrap(), b"cfg");
    assert!(minio.data_dir().join("opened/prefix/config").exists());

    let err = backend::open("s3:http://127.0.0.1:1")
        .err()
        .expect("no bucket");
    assert!(
        err.to_string().contains("invalid S3 repository URL"),
        "{err}"
    );

    // SAFETY: as above.
    unsafe { std::env::set_var("RESTIC_CACERT", "/nonexistent/ca.pem") };
    let err = backend::open(&url).err().expect("unreadable CA file");
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}
