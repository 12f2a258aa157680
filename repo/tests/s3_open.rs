//! `backend::open` takes an `s3:` URL and the options its caller built to a
//! working, retrying backend on a real MinIO.

use sluice_repo::backend::s3::S3Options;
use sluice_repo::backend::{self, FileKind, Payload};
use sluice_testkit::MinIo;

#[test]
fn open_uses_the_options_it_is_given() {
    let minio = MinIo::start();
    let options = S3Options {
        access_key_id: Some(MinIo::ACCESS_KEY.into()),
        secret_access_key: Some(MinIo::SECRET_KEY.into()),
        region: Some(MinIo::REGION.into()),
        ..S3Options::default()
    };

    let url = minio.repository("opened/prefix");
    let b = backend::open(&url, options.clone()).unwrap();
    assert_eq!(b.location(), url);
    b.create().unwrap();
    b.save(FileKind::Config, "", Payload::Bytes(b"cfg"))
        .unwrap();
    assert_eq!(b.load(FileKind::Config, "").unwrap(), b"cfg");
    assert!(minio.data_dir().join("opened/prefix/config").exists());

    let err = backend::open("s3:http://127.0.0.1:1", options.clone())
        .err()
        .expect("no bucket");
    assert!(
        err.to_string().contains("invalid S3 repository URL"),
        "{err}"
    );

    let untrusted_ca = S3Options {
        ca_cert: Some("/nonexistent/ca.pem".into()),
        ..options
    };
    let err = backend::open(&url, untrusted_ca)
        .err()
        .expect("unreadable CA file");
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}
