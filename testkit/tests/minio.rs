//! MinIO as the harness runs it: restic can use it as an S3 repository, and
//! the server can go away and come back without losing objects.

use std::fs;
use std::net::TcpStream;
use std::process::Command;

use sluice_testkit::MinIo;

const PASSWORD: &str = "e2e-password";

fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Backs up a small directory with restic into `bucket` and returns its path.
fn backup_sample(minio: &MinIo, bucket: &str) -> tempfile::TempDir {
    let source = tempfile::tempdir().unwrap();
    fs::write(source.path().join("hello.txt"), "hello from sluice e2e\n").unwrap();
    fs::create_dir(source.path().join("sub")).unwrap();
    fs::write(source.path().join("sub/data.bin"), vec![7u8; 100_000]).unwrap();
    run(minio.restic(bucket, PASSWORD).arg("init"));
    run(minio
        .restic(bucket, PASSWORD)
        .arg("backup")
        .arg(source.path()));
    source
}

fn snapshot_count(minio: &MinIo, bucket: &str) -> usize {
    let json = run(minio.restic(bucket, PASSWORD).args(["snapshots", "--json"]));
    json.matches("\"short_id\"").count()
}

#[test]
fn restic_inits_backs_up_and_lists_snapshots_on_minio() {
    let minio = MinIo::start();
    assert!(minio.repository("repo").starts_with("s3:http://127.0.0.1:"));

    // restic creates the bucket itself on init.
    let source = backup_sample(&minio, "repo/prefix");
    assert!(
        minio.data_dir().join("repo").is_dir(),
        "bucket directory missing"
    );
    assert_eq!(snapshot_count(&minio, "repo/prefix"), 1);

    let target = tempfile::tempdir().unwrap();
    run(minio
        .restic("repo/prefix", PASSWORD)
        .args(["restore", "latest", "--target"])
        .arg(target.path()));
    let restored = target.path().join(source.path().strip_prefix("/").unwrap());
    assert_eq!(
        fs::read(restored.join("sub/data.bin")).unwrap(),
        vec![7u8; 100_000]
    );
}

#[test]
fn minio_restart_on_the_same_port_keeps_objects() {
    let mut minio = MinIo::start();
    let port = minio.port();
    let _source = backup_sample(&minio, "restart");

    minio.stop();
    assert!(!minio.is_running());
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still accepts connections after stop"
    );

    minio.start_again();
    assert_eq!(minio.port(), port);
    assert_eq!(snapshot_count(&minio, "restart"), 1);

    // A crash (SIGKILL) loses nothing that was acknowledged either.
    minio.kill();
    minio.start_again();
    run(minio
        .restic("restart", PASSWORD)
        .arg("backup")
        .arg(minio.log_path()));
    assert_eq!(snapshot_count(&minio, "restart"), 2);
    run(minio.restic("restart", PASSWORD).arg("check"));
}

#[test]
fn minio_is_killed_and_its_files_removed_when_dropped_during_a_panic() {
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let result = std::panic::catch_unwind(move || {
        let minio = MinIo::start();
        port_tx
            .send((minio.port(), minio.dir().to_path_buf()))
            .unwrap();
        panic!("test failure while MinIO runs");
    });
    assert!(result.is_err());
    let (port, dir) = port_rx.recv().unwrap();
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "MinIO still listens on {port}"
    );
    assert!(!dir.exists(), "{} was not removed", dir.display());
}
