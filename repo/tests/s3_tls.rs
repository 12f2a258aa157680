//! An HTTPS MinIO whose certificate a private CA signed: trusted only when
//! that CA is given (restic's `--cacert` / `RESTIC_CACERT`), and refused
//! with a message that says so, without retrying, when it is not.

use std::process::Command;
use std::time::{Duration, Instant};

use sluice_repo::backend::retry::{RetryBackend, RetryPolicy};
use sluice_repo::backend::s3::{S3Backend, S3Options};
use sluice_repo::backend::{Backend, BackendErrorKind, FileKind, Payload};
use sluice_testkit::pki::Pki;
use sluice_testkit::process::{Daemon, free_port};
use sluice_testkit::{MinIo, Tool};

/// MinIO serving HTTPS with the PKI's server certificate (valid for 127.0.0.1).
fn start_tls_minio(dir: &std::path::Path, pki: &Pki) -> (Daemon, u16) {
    let certs = dir.join("certs");
    std::fs::create_dir_all(certs.join("CAs")).unwrap();
    std::fs::copy(&pki.server_cert, certs.join("public.crt")).unwrap();
    std::fs::copy(&pki.server_key, certs.join("private.key")).unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let port = free_port();
    let mut command = Command::new(Tool::Minio.path());
    command
        .arg("server")
        .arg("--quiet")
        .arg("--address")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--console-address")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--certs-dir")
        .arg(&certs)
        .arg(dir.join("data"))
        .env("MINIO_ROOT_USER", MinIo::ACCESS_KEY)
        .env("MINIO_ROOT_PASSWORD", MinIo::SECRET_KEY)
        .env("MINIO_BROWSER", "off")
        .env("MINIO_UPDATE", "off")
        .env("HOME", dir);
    let mut daemon = Daemon::spawn("minio-tls", command, &dir.join("minio.log"));
    daemon.wait_ready("listening", Duration::from_secs(60), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (daemon, port)
}

#[test]
fn custom_ca_is_required_and_sufficient() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path(), &[]);
    let (_minio, port) = start_tls_minio(dir.path(), &pki);
    let url = format!("s3:https://127.0.0.1:{port}/tls-bucket/repo");
    let options = S3Options {
        access_key_id: Some(MinIo::ACCESS_KEY.into()),
        secret_access_key: Some(MinIo::SECRET_KEY.into()),
        region: Some(MinIo::REGION.into()),
        ..S3Options::default()
    };
    // MinIO may answer 503 for a moment after it starts listening.
    let retries = RetryPolicy {
        initial_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(1),
        max_elapsed: Duration::from_secs(30),
    };

    let untrusted = RetryBackend::new(S3Backend::new(&url, options.clone()).unwrap(), retries);
    let start = Instant::now();
    let err = untrusted.create().unwrap_err();
    assert_eq!(err.kind, BackendErrorKind::Other, "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "a certificate error was retried"
    );
    let message = err.to_string();
    assert!(message.contains("certificate"), "{message}");
    assert!(message.contains("RESTIC_CACERT"), "{message}");
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(!message.contains('\n'), "{message}");

    let trusted = S3Options {
        ca_cert: Some(pki.ca_cert.clone()),
        ..options
    };
    let b = RetryBackend::new(S3Backend::new(&url, trusted).unwrap(), retries);
    b.create().unwrap();
    b.save(FileKind::Key, "k", Payload::Bytes(b"over tls"))
        .unwrap();
    assert_eq!(b.load(FileKind::Key, "k").unwrap(), b"over tls");
}
