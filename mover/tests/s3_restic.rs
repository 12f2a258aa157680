//! sluice-mover and restic share a repository on a real MinIO: what one
//! writes there the other checks and restores exactly, and `init` creates
//! the bucket.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sluice_testkit::MinIo;

const PASSWORD: &str = "s3-interop-password";

/// sluice-mover with restic's environment for `bucket_and_prefix` on `minio`.
fn sluice(minio: &MinIo, bucket_and_prefix: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sluice-mover"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", minio.dir())
        .env("RESTIC_REPOSITORY", minio.repository(bucket_and_prefix))
        .env("RESTIC_PASSWORD", PASSWORD)
        .env("SLUICE_INSECURE_TEST_KDF", "1")
        .envs(minio.env());
    c
}

fn ok(c: &mut Command) -> Output {
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A small tree with a file big enough for several packs and a multipart
/// upload, plus small and empty files.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("sub/deeper")).unwrap();
    fs::write(root.join("hello.txt"), b"hello, object storage\n").unwrap();
    fs::write(root.join("sub/empty"), b"").unwrap();
    let mut big = fs::File::create(root.join("sub/deeper/big.bin")).unwrap();
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut buf = Vec::with_capacity(1 << 20);
    for _ in 0..40 {
        buf.clear();
        for _ in 0..(1 << 17) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf.extend_from_slice(&x.to_le_bytes());
        }
        big.write_all(&buf).unwrap();
    }
}

/// Every regular file under `root` by relative path, with its content.
fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    out
}

fn assert_same_files(expected: &Path, actual: &Path) {
    let (want, got) = (files(expected), files(actual));
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>(),
        "different files in {}",
        actual.display()
    );
    for (path, content) in &want {
        assert!(got[path] == *content, "{} differs", path.display());
    }
}

#[test]
fn restic_reads_what_sluice_writes_to_minio() {
    let minio = MinIo::start();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_tree(&src);

    // The bucket does not exist yet: init creates it, as restic's does.
    ok(sluice(&minio, "sluice-bucket/repo").arg("init"));
    ok(sluice(&minio, "sluice-bucket/repo")
        .current_dir(&src)
        .args(["backup", "."]));

    ok(minio
        .restic("sluice-bucket/repo", PASSWORD)
        .args(["check", "--read-data"]));
    let dst = work.path().join("restic-restored");
    ok(minio
        .restic("sluice-bucket/repo", PASSWORD)
        .args(["restore", "latest", "--target"])
        .arg(&dst));
    assert_same_files(&src, &dst);
}

#[test]
fn sluice_reads_what_restic_writes_to_minio() {
    let minio = MinIo::start();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_tree(&src);

    ok(minio.restic("restic-bucket/repo", PASSWORD).arg("init"));
    ok(minio
        .restic("restic-bucket/repo", PASSWORD)
        .current_dir(&src)
        .args(["backup", "."]));

    let listed = ok(sluice(&minio, "restic-bucket/repo").args(["snapshots", "--json"]));
    let snapshots: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(snapshots.as_array().map(Vec::len), Some(1), "{snapshots}");

    let dst = work.path().join("sluice-restored");
    ok(sluice(&minio, "restic-bucket/repo")
        .args(["restore", "latest", "--target"])
        .arg(&dst));
    assert_same_files(&src, &dst);

    // And sluice adds to restic's repository, which restic still accepts.
    fs::write(src.join("added.txt"), b"written by sluice").unwrap();
    ok(sluice(&minio, "restic-bucket/repo")
        .current_dir(&src)
        .args(["backup", "."]));
    ok(minio
        .restic("restic-bucket/repo", PASSWORD)
        .args(["check", "--read-data"]));
}

#[test]
fn backup_rides_out_minio_stopping_midway() {
    let mut minio = MinIo::start();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_tree(&src);
    for i in 0..3 {
        fs::copy(
            src.join("sub/deeper/big.bin"),
            src.join(format!("big-copy-{i}.bin")),
        )
        .unwrap();
        // Different content per copy, so every copy is uploaded.
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(src.join(format!("big-copy-{i}.bin")))
            .unwrap();
        f.write_all(&[i as u8; 4096]).unwrap();
    }
    ok(sluice(&minio, "outage/repo").arg("init"));

    // The server goes away shortly after the backup starts and comes back
    // a few seconds later, well within the default two-minute retry budget.
    let mut backup = sluice(&minio, "outage/repo")
        .current_dir(&src)
        .args(["backup", "."])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(400));
    minio.kill();
    assert!(
        backup.try_wait().unwrap().is_none(),
        "the backup ended before MinIO went away: make the tree bigger"
    );
    std::thread::sleep(std::time::Duration::from_secs(3));
    minio.start_again();
    let out = backup.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "backup did not survive the outage ({}): {stderr}",
        out.status
    );

    ok(minio
        .restic("outage/repo", PASSWORD)
        .args(["check", "--read-data"]));
    let dst = work.path().join("restored");
    ok(minio
        .restic("outage/repo", PASSWORD)
        .args(["restore", "latest", "--target"])
        .arg(&dst));
    assert_same_files(&src, &dst);
}

#[test]
fn kill_9_mid_upload_to_minio_loses_nothing() {
    let minio = MinIo::start();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_tree(&src);
    for i in 0..4u8 {
        let mut data = fs::read(src.join("sub/deeper/big.bin")).unwrap();
        // Different content per copy, so every copy has to be uploaded.
        for b in data.iter_mut().step_by(4096) {
            *b ^= i + 1;
        }
        fs::write(src.join(format!("copy-{i}.bin")), data).unwrap();
    }
    ok(sluice(&minio, "crash/repo").arg("init"));
    // Kill at several points: while listing, mid-pack, mid-upload, near the end.
    for delay_ms in [150u64, 500, 1100, 2000] {
        let mut backup = sluice(&minio, "crash/repo")
            .current_dir(&src)
            .args(["backup", "."])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = backup.kill(); // SIGKILL
        let _ = backup.wait();
        // No snapshot may point at missing data, whatever was written.
        ok(minio
            .restic("crash/repo", PASSWORD)
            .args(["check", "--no-lock"]));
    }
    // The next backup takes over the killed one's stale lock and succeeds.
    ok(sluice(&minio, "crash/repo")
        .current_dir(&src)
        .args(["backup", "."]));
    ok(minio
        .restic("crash/repo", PASSWORD)
        .args(["check", "--read-data"]));
    let dst = work.path().join("restored");
    ok(sluice(&minio, "crash/repo")
        .args(["restore", "latest", "--target"])
        .arg(&dst));
    assert_same_files(&src, &dst);
}

#[test]
fn many_inits_and_first_jobs_at_once_on_minio_make_one_repository() {
    let minio = MinIo::start();
    let work = tempfile::tempdir().unwrap();
    // The bucket exists, as a shared bucket would: only the config decides.
    ok(sluice(&minio, "shared/seed").arg("init"));
    let spawn_all = |commands: Vec<Command>| -> Vec<Output> {
        let children: Vec<_> = commands
            .into_iter()
            .map(|mut c| {
                c.stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect()
    };

    let inits = spawn_all(
        (0..10)
            .map(|_| {
                let mut c = sluice(&minio, "shared/by-init");
                c.arg("init");
                c
            })
            .collect(),
    );
    let won = inits.iter().filter(|o| o.status.success()).count();
    assert_eq!(won, 1, "{won} inits succeeded");
    for o in inits.iter().filter(|o| !o.status.success()) {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("already exists"), "{err}");
    }
    ok(minio
        .restic("shared/by-init", PASSWORD)
        .args(["check", "--read-data"]));

    let jobs = spawn_all(
        (0..5)
            .map(|i| {
                let data = work.path().join(format!("data{i}"));
                fs::create_dir_all(&data).unwrap();
                fs::write(data.join("f"), format!("source {i}")).unwrap();
                let mut c = sluice(&minio, "shared/by-jobs");
                c.arg("job")
                    .env("SLUICE_JOB_ACTIONS", "backup")
                    .env("SLUICE_DATA_DIR", &data)
                    .env("SLUICE_HOSTNAME", format!("ns/src-{i}"))
                    .env("SLUICE_RESULT_FILE", work.path().join(format!("result{i}")));
                c
            })
            .collect(),
    );
    for o in &jobs {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let out = ok(minio
        .restic("shared/by-jobs", PASSWORD)
        .args(["snapshots", "--json"]));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 5);
    ok(minio
        .restic("shared/by-jobs", PASSWORD)
        .args(["check", "--read-data"]));
}
