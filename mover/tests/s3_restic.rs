//! sluice-mover and restic share a repository on a real MinIO: what one
//! writes there the other checks and restores exactly, and `init` creates
//! the bucket.

mod support;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use sluice_testkit::MinIo;
use sluice_testkit::oidc::OidcIssuer;
use support::*;

/// A small tree with a file big enough for several packs and a multipart
/// upload, plus small and empty files.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("sub/deeper")).unwrap();
    fs::write(root.join("hello.txt"), b"hello, object storage\n").unwrap();
    fs::write(root.join("sub/empty"), b"").unwrap();
    // 40 MiB of incompressible data.
    fs::write(
        root.join("sub/deeper/big.bin"),
        random_bytes(0x2545, 40 << 20),
    )
    .unwrap();
}

/// `tool` (sluice-mover or restic, against the repository) restores the
/// latest snapshot into `dst`, which then holds exactly what `src` holds.
fn assert_restores(mut tool: Command, src: &Path, dst: &Path) {
    ok(tool.args(["restore", "latest", "--target"]).arg(dst));
    assert_same_tree(src, dst, Compare::CONTENT);
}

#[test]
fn restic_reads_what_sluice_writes_to_minio() {
    let minio = MinIo::start();
    let repo = Repo::s3(&minio, "sluice-bucket/repo");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_tree(&src);

    // The bucket does not exist yet: init creates it, as restic's does.
    ok(repo.sluice().arg("init"));
    ok(repo.sluice().current_dir(&src).args(["backup", "."]));

    ok(repo.restic().args(["check", "--read-data"]));
    assert_restores(repo.restic(), &src, &work.path().join("restic-restored"));
}

#[test]
fn sluice_reads_what_restic_writes_to_minio() {
    let minio = MinIo::start();
    let repo = Repo::s3(&minio, "restic-bucket/repo");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_tree(&src);

    ok(repo.restic().arg("init"));
    ok(repo.restic().current_dir(&src).args(["backup", "."]));

    let listed = ok(repo.sluice().args(["snapshots", "--json"]));
    let snapshots: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(snapshots.as_array().map(Vec::len), Some(1), "{snapshots}");

    assert_restores(repo.sluice(), &src, &work.path().join("sluice-restored"));

    // And sluice adds to restic's repository, which restic still accepts.
    fs::write(src.join("added.txt"), b"written by sluice").unwrap();
    ok(repo.sluice().current_dir(&src).args(["backup", "."]));
    ok(repo.restic().args(["check", "--read-data"]));
}

#[test]
fn backup_rides_out_minio_stopping_midway() {
    let mut minio = MinIo::start();
    let repo = Repo::s3(&minio, "outage/repo");
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
    ok(repo.sluice().arg("init"));

    // The server goes away shortly after the backup starts and comes back
    // a few seconds later, well within the default two-minute retry budget.
    let mut backup = repo
        .sluice()
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

    ok(repo.restic().args(["check", "--read-data"]));
    assert_restores(repo.restic(), &src, &work.path().join("restored"));
}

#[test]
fn kill_9_mid_upload_to_minio_loses_nothing() {
    let minio = MinIo::start();
    let repo = Repo::s3(&minio, "crash/repo");
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
    ok(repo.sluice().arg("init"));
    // Kill at several points: while listing, mid-pack, mid-upload, near the end.
    for delay_ms in [150u64, 500, 1100, 2000] {
        let mut backup = repo
            .sluice()
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
        ok(repo.restic().args(["check", "--no-lock"]));
    }
    // The next backup takes over the killed one's stale lock and succeeds.
    ok(repo.sluice().current_dir(&src).args(["backup", "."]));
    ok(repo.restic().args(["check", "--read-data"]));
    assert_restores(repo.sluice(), &src, &work.path().join("restored"));
}

#[test]
fn many_inits_and_first_jobs_at_once_on_minio_make_one_repository() {
    let minio = MinIo::start();
    let seed = Repo::s3(&minio, "shared/seed");
    let by_init = Repo::s3(&minio, "shared/by-init");
    let by_jobs = Repo::s3(&minio, "shared/by-jobs");
    let work = tempfile::tempdir().unwrap();
    // The bucket exists, as a shared bucket would: only the config decides.
    ok(seed.sluice().arg("init"));
    let inits = all_at_once(10, |_| {
        let mut c = by_init.sluice();
        c.arg("init");
        c
    });
    let won = inits.iter().filter(|o| o.status.success()).count();
    assert_eq!(won, 1, "{won} inits succeeded");
    for o in inits.iter().filter(|o| !o.status.success()) {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("already exists"), "{err}");
    }
    ok(by_init.restic().args(["check", "--read-data"]));

    let jobs = all_at_once(5, |i| {
        let data = work.path().join(format!("data{i}"));
        fs::create_dir_all(&data).unwrap();
        fs::write(data.join("f"), format!("source {i}")).unwrap();
        let mut c = by_jobs.sluice();
        c.arg("job")
            .env("SLUICE_JOB_ACTIONS", "backup")
            .env("SLUICE_DATA_DIR", &data)
            .env("SLUICE_HOSTNAME", format!("ns/src-{i}"))
            .env("SLUICE_RESULT_FILE", work.path().join(format!("result{i}")));
        c
    });
    for o in &jobs {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let out = ok(by_jobs.restic().args(["snapshots", "--json"]));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 5);
    ok(by_jobs.restic().args(["check", "--read-data"]));
}

/// The operator's circuit breaker probes with `job` and `SLUICE_JOB_ACTIONS=probe`: a backend
/// that answers passes, whatever the answer (no bucket yet, no repository, a repository); a
/// stopped one fails within seconds as a network error, the class that trips the breaker.
#[test]
fn a_probe_job_tells_a_reachable_backend_from_a_stopped_one() {
    let mut minio = MinIo::start();
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("termination-log");
    let probe = |repo: &Repo| {
        let mut c = repo.sluice();
        c.arg("job")
            .env("SLUICE_JOB_ACTIONS", "probe")
            .env("SLUICE_RESULT_FILE", &log);
        c
    };
    let result = || -> serde_json::Value {
        serde_json::from_str(&fs::read_to_string(&log).unwrap()).unwrap()
    };
    let repo = Repo::s3(&minio, "probe-bucket/repo");
    // No bucket, then a bucket without a repository, then a repository: all answer.
    ok(&mut probe(&repo));
    assert!(
        result()["message"].as_str().unwrap().contains("answers"),
        "{}",
        result()
    );
    ok(repo.sluice().arg("init"));
    ok(&mut probe(&repo));
    let r = result();
    assert!(r.get("errorClass").is_none(), "{r}");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .ends_with("the repository is there"),
        "{r}"
    );
    // Nothing was written: restic finds the repository as init left it.
    assert_eq!(repo.snapshot_ids(), Vec::<String>::new());

    minio.stop();
    let started = std::time::Instant::now();
    let out = fails(&mut probe(&repo));
    let took = started.elapsed();
    let r = result();
    assert_eq!(r["errorClass"], "Network", "{r}");
    assert!(
        took < std::time::Duration::from_secs(60),
        "a probe retries for seconds, not minutes: it took {took:?}; {}",
        stderr(&out)
    );
}

/// A mover Pod with IRSA has no static keys: the webhook gives it a token
/// file and a role. The mover exchanges the token at the server's STS, backs
/// up and restores; restic, with the root keys, checks what it wrote. A
/// token STS refuses fails in one line that names the token file.
#[test]
fn the_mover_reaches_its_bucket_with_only_a_web_identity() {
    const AUDIENCE: &str = "sts.sluice.test";
    let work = tempfile::tempdir().unwrap();
    let issuer = OidcIssuer::start(work.path());
    let minio = MinIo::start_trusting(&issuer.config_url(), AUDIENCE);
    let token_file = work.path().join("token");
    let subject = "system:serviceaccount:apps:backup";
    fs::write(&token_file, issuer.token(subject, AUDIENCE, 3600)).unwrap();
    let identity = |token_file: &Path| {
        let mut repo = Repo::s3(&minio, "irsa/repo");
        repo.env = vec![
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE".into(),
                token_file.display().to_string(),
            ),
            ("AWS_ROLE_ARN".into(), minio.role_arn().unwrap()),
            ("AWS_REGION".into(), MinIo::REGION.into()),
        ];
        repo
    };
    let repo = identity(&token_file);
    let src = work.path().join("src");
    make_tree(&src);

    ok(repo.sluice().arg("init"));
    ok(repo.sluice().current_dir(&src).args(["backup", "."]));
    assert_restores(repo.sluice(), &src, &work.path().join("restored"));
    ok(Repo::s3(&minio, "irsa/repo")
        .restic()
        .args(["check", "--read-data"]));

    let wrong_audience = work.path().join("wrong-audience");
    fs::write(
        &wrong_audience,
        issuer.token(subject, "another-client", 3600),
    )
    .unwrap();
    let out = exits(identity(&wrong_audience).sluice().arg("snapshots"), 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.contains("cannot assume role"))
        .unwrap_or_else(|| panic!("no line says the role could not be assumed:\n{stderr}"));
    assert!(
        line.contains(&wrong_audience.display().to_string()),
        "{line}"
    );
    assert!(line.contains("HTTP 400"), "{line}");
}
