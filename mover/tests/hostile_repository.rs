//! Repositories that are damaged, hostile or shared: a bad key, snapshot or index file
//! costs only itself, `check` says what is wrong and what repairs it, creation is atomic,
//! and nothing read from the repository aborts the process.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sluice_repo::Id;
use sluice_repo::backend::local::LocalBackend;
use sluice_repo::backend::{Backend, FileKind, Payload};
use sluice_repo::crypto::Key;
use sluice_repo::key::KdfParams;
use support::craft::{Crafted, dir, file};
use support::*;

/// A repository with two snapshots of a small tree.
fn two_snapshots(w: &Path) -> (Repo, PathBuf) {
    let src = w.join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("a"), random_bytes(1, 300_000)).unwrap();
    fs::write(src.join("sub/b"), b"second file").unwrap();
    let repo = Repo::local(&w.join("repo"));
    ok(repo.sluice().arg("init"));
    ok(repo.sluice().current_dir(&src).args(["backup", "."]));
    fs::write(src.join("c"), b"third file").unwrap();
    ok(repo.sluice().current_dir(&src).args(["backup", "."]));
    (repo, src)
}

/// Stores `bytes` under the name of their hash, as every repository file is named.
fn store(repo: &Repo, kind: FileKind, bytes: &[u8]) -> Id {
    let id = Id::hash(bytes);
    LocalBackend::new(repo.path())
        .save(kind, &id.to_hex(), Payload::Bytes(bytes))
        .unwrap();
    id
}

#[test]
fn a_key_file_asking_for_terabytes_of_scrypt_memory_is_skipped_not_fatal() {
    let w = workdir();
    let (mut repo, _) = two_snapshots(w.path());
    let hostile = format!(
        r#"{{"created":"2024-01-01T00:00:00Z","username":"x","hostname":"x","kdf":"scrypt","N":{},"r":8,"p":1,"salt":"{}","data":"AAAA"}}"#,
        1u64 << 40,
        "A".repeat(88)
    );
    let id = store(&repo, FileKind::Key, hostile.as_bytes());

    ok(repo.sluice().arg("snapshots"));

    // A wrong password tries every key, the hostile one too.
    repo.password = "not the password".into();
    let out = fails(repo.sluice().arg("snapshots"));
    assert_eq!(out.status.code(), Some(12), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&id.to_hex()) && err.contains("MiB"),
        "the skipped key is named with why:\n{err}"
    );
}

#[test]
fn a_stray_key_of_the_same_password_does_not_shadow_the_real_one() {
    let w = workdir();
    let (repo, _) = two_snapshots(w.path());
    // What a lost race to create the repository can leave: keys that open with the same
    // password but protect master keys that open nothing here.
    let backend = LocalBackend::new(repo.path());
    for _ in 0..3 {
        sluice_repo::key::add(
            &backend,
            &Key::random(),
            PASSWORD,
            KdfParams::INSECURE_FOR_TESTS,
        )
        .unwrap();
    }
    for _ in 0..3 {
        let out = ok(repo.sluice().args(["snapshots", "--json"]));
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(list.as_array().unwrap().len(), 2);
    }
}

#[test]
fn one_damaged_snapshot_file_is_skipped_with_a_warning_and_check_says_how_to_remove_it() {
    let w = workdir();
    let (repo, src) = two_snapshots(w.path());
    let good: Vec<String> = {
        let out = ok(repo.sluice().args(["snapshots", "--json"]));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    };
    // Named by its hash like any snapshot file, but not a snapshot at all.
    let bad = store(&repo, FileKind::Snapshot, &random_bytes(9, 500));

    let out = ok(repo.sluice().args(["snapshots", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    let err = stderr(&out);
    assert_eq!(
        err.matches(&format!("snapshots/{bad}")).count(),
        1,
        "one warning names the file:\n{err}"
    );

    ok(repo
        .sluice()
        .args(["restore", &good[0][..8], "--target"])
        .arg(w.path().join("r1")));
    ok(repo
        .sluice()
        .args(["restore", "latest", "--target"])
        .arg(w.path().join("r2")));
    ok(repo.sluice().current_dir(&src).args(["backup", "."]));
    ok(repo.sluice().args(["forget", "--keep-last", "2"]));

    // prune cannot know what the damaged snapshot needs, so it refuses and says why.
    let out = fails(repo.sluice().arg("prune"));
    let err = stderr(&out);
    assert!(
        err.contains(&bad.short()) && err.contains("repair snapshots --forget"),
        "{err}"
    );
    let out = fails(repo.sluice().arg("check"));
    let err = stderr(&out);
    assert!(
        err.contains(&bad.short()) && err.contains("repair snapshots --forget"),
        "{err}"
    );

    ok(repo
        .sluice()
        .args(["repair", "snapshots", "--forget", &bad.to_hex()]));
    ok(repo.sluice().arg("prune"));
    ok(repo.sluice().arg("check"));
    ok(repo.restic().args(["check", "--read-data"]));
}

#[test]
fn check_says_an_index_is_missing_and_repair_index_rebuilds_it() {
    let w = workdir();
    let (repo, src) = two_snapshots(w.path());
    for f in files_below(&repo.path().join("index")) {
        fs::remove_file(f).unwrap();
    }

    let out = fails(repo.sluice().arg("check"));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(all.contains("repair index"), "{all}");
    assert!(
        !all.contains("prune` removes them"),
        "check must not advise deleting the only copy:\n{all}"
    );
    fails(repo.sluice().arg("prune"));

    let out = ok(repo.sluice().args(["repair", "index"]));
    assert!(stdout(&out).contains("packs"), "{}", stdout(&out));
    ok(repo.sluice().args(["check", "--read-data"]));
    ok(repo.restic().args(["check", "--read-data"]));
    let target = w.path().join("restored");
    ok(repo
        .sluice()
        .args(["restore", "latest", "--target"])
        .arg(&target));
    assert_eq!(
        fs::read(target.join("a")).unwrap(),
        fs::read(src.join("a")).unwrap()
    );
}

#[test]
fn repair_snapshots_drops_what_lost_its_data_and_keeps_the_rest() {
    let w = workdir();
    let mut c = Crafted::new(&w.path().join("repo"));
    let kept = c.data(b"kept");
    c.flush();
    let before = files_below(&c.dir.join("data"));
    let lost = c.data(b"lost data");
    c.flush();
    let lost_pack = added(&before, &files_below(&c.dir.join("data")));
    let before = files_below(&c.dir.join("data"));
    let gone_tree = c.tree(vec![file(b"inside", vec![kept], 4, 0o644)]);
    c.flush();
    let gone_tree_pack = added(&before, &files_below(&c.dir.join("data")));
    let root = c.tree(vec![
        file(b"a", vec![kept], 4, 0o644),
        file(b"b", vec![kept, lost], 13, 0o644),
        dir(b"sub", gone_tree),
    ]);
    c.snapshot(root);
    let repo = Repo::local(&c.dir);
    fs::remove_file(lost_pack).unwrap();
    fs::remove_file(gone_tree_pack).unwrap();
    ok(repo.sluice().args(["repair", "index"]));
    fails(repo.sluice().arg("check"));

    let out = ok(repo.sluice().args(["repair", "snapshots", "--forget"]));
    let said = stdout(&out);
    assert!(said.contains("removed missing content"), "{said}");
    assert!(said.contains("replaced with an empty directory"), "{said}");
    ok(repo.sluice().arg("check"));
    ok(repo.restic().args(["check", "--read-data"]));
    let target = w.path().join("restored");
    ok(repo
        .sluice()
        .args(["restore", "latest", "--target"])
        .arg(&target));
    assert_eq!(fs::read(target.join("a")).unwrap(), b"kept");
    assert_eq!(fs::read(target.join("b")).unwrap(), b"kept");
    assert!(target.join("sub").is_dir());
    assert_eq!(fs::read_dir(target.join("sub")).unwrap().count(), 0);
    let out = ok(repo.sluice().args(["snapshots", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1, "the original was forgotten");
}

/// The one file in `after` that is not in `before`.
fn added(before: &[PathBuf], after: &[PathBuf]) -> PathBuf {
    let new: Vec<_> = after.iter().filter(|p| !before.contains(p)).collect();
    assert_eq!(new.len(), 1, "{new:?}");
    new[0].clone()
}

#[test]
fn a_repository_without_its_config_is_not_covered_by_a_new_one() {
    let w = workdir();
    let (repo, src) = two_snapshots(w.path());
    let config = repo.path().join("config");
    let saved = fs::read(&config).unwrap();
    fs::remove_file(&config).unwrap();

    let out = fails(repo.sluice().arg("init"));
    let line = stderr(&out);
    assert!(
        line.contains("no config file") && line.contains("snapshots/"),
        "{line}"
    );
    let out = fails(repo.sluice().arg("snapshots"));
    assert_ne!(out.status.code(), Some(10), "not 'no repository, run init'");
    assert!(stderr(&out).contains("no config file"), "{}", stderr(&out));
    let log = w.path().join("result");
    let out = fails(
        repo.sluice()
            .arg("job")
            .env("SLUICE_JOB_ACTIONS", "backup")
            .env("SLUICE_DATA_DIR", &src)
            .env("SLUICE_RESULT_FILE", &log),
    );
    assert!(stderr(&out).contains("no config file"), "{}", stderr(&out));
    assert!(!config.exists(), "a job created a repository on top");

    // The advice works: with the config back, nothing was lost.
    fs::write(&config, saved).unwrap();
    ok(repo.restic().args(["check", "--read-data"]));
}

/// Runs `n` copies of a command at once and returns their outputs.
#[test]
fn many_inits_at_once_make_exactly_one_repository() {
    let w = workdir();
    for round in 0..3 {
        let repo = Repo::local(&w.path().join(format!("repo{round}")));
        let outs = all_at_once(12, |_| {
            let mut c = repo.sluice();
            c.arg("init");
            c
        });
        let won = outs.iter().filter(|o| o.status.success()).count();
        assert_eq!(won, 1, "round {round}: {won} inits succeeded");
        for o in outs.iter().filter(|o| !o.status.success()) {
            assert!(stderr(o).contains("already exists"), "{}", stderr(o));
        }
        assert_eq!(
            files_below(&repo.path().join("keys")).len(),
            1,
            "losers leave no key"
        );
        ok(repo.sluice().arg("snapshots"));
        ok(repo.restic().arg("check"));
    }
}

#[test]
fn first_jobs_of_several_sources_sharing_a_new_repository_all_back_up() {
    let w = workdir();
    let repo = Repo::local(&w.path().join("repo"));
    let n = 6;
    let data: Vec<PathBuf> = (0..n)
        .map(|i| {
            let d = w.path().join(format!("data{i}"));
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("f"), random_bytes(i as u64, 50_000)).unwrap();
            d
        })
        .collect();
    let outs = all_at_once(n, |i| {
        let mut c = repo.sluice();
        c.arg("job")
            .env("SLUICE_JOB_ACTIONS", "backup")
            .env("SLUICE_DATA_DIR", &data[i])
            .env("SLUICE_HOSTNAME", format!("ns/src-{i}"))
            .env("SLUICE_RESULT_FILE", w.path().join(format!("result{i}")));
        c
    });
    for o in &outs {
        assert!(o.status.success(), "{}", stderr(o));
    }
    let out = ok(repo.restic().args(["snapshots", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), n);
    ok(repo.restic().args(["check", "--read-data"]));
}

#[test]
fn an_empty_password_file_is_refused_like_an_empty_password() {
    let w = workdir();
    let repo = Repo::local(&w.path().join("repo"));
    let pw = w.path().join("password");
    fs::write(&pw, "\n").unwrap();
    let out = fails(repo.sluice().arg("init").arg("--password-file").arg(&pw));
    assert!(stderr(&out).contains("is empty"), "{}", stderr(&out));
    assert!(!repo.path().join("config").exists());
}

#[test]
fn restore_of_an_empty_snapshot_id_matches_nothing() {
    let w = workdir();
    let src = w.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"x").unwrap();
    let repo = Repo::local(&w.path().join("repo"));
    ok(repo.sluice().arg("init"));
    ok(repo.sluice().current_dir(&src).args(["backup", "."]));
    let target = w.path().join("t");
    let out = fails(repo.sluice().args(["restore", "", "--target"]).arg(&target));
    assert!(
        stderr(&out).contains("no snapshot given"),
        "{}",
        stderr(&out)
    );
    assert!(!target.join("f").exists());
}

#[test]
fn usage_errors_exit_2_as_help_says() {
    let help = ok(Command::new(env!("CARGO_BIN_EXE_sluice-mover")).arg("--help"));
    let text = stdout(&help);
    for line in [
        "2   usage error",
        "10  no repository",
        "11  the repository is locked",
        "12  wrong password",
    ] {
        assert!(text.contains(line), "--help lacks {line:?}:\n{text}");
    }
    let out = fails(Command::new(env!("CARGO_BIN_EXE_sluice-mover")).arg("frobnicate"));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn errors_of_a_local_repository_give_local_advice() {
    let w = workdir();
    let mnt = Tmpfs::mount(&w.path().join("mnt"), "20m");
    let src = w.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"data").unwrap();
    let repo = Repo::local(&mnt.path.join("repo"));
    ok(repo.sluice().arg("init"));
    mnt.read_only();
    let out = fails(repo.sluice().current_dir(&src).args(["backup", "."]));
    let line = stderr(&out);
    assert!(
        !line.contains("bucket"),
        "S3 advice for a directory: {line}"
    );
    assert!(line.contains("file system"), "{line}");
}

#[test]
fn a_backup_into_a_full_repository_says_why_the_upload_failed() {
    let w = workdir();
    let mnt = Tmpfs::mount(&w.path().join("mnt"), "3m");
    let src = w.path().join("src");
    fs::create_dir_all(&src).unwrap();
    // Many packs: uploads fail while more are queued behind them.
    fs::write(src.join("big"), random_bytes(3, 60 << 20)).unwrap();
    let repo = Repo::local(&mnt.path.join("repo"));
    ok(repo.sluice().arg("init"));
    let out = fails(
        repo.sluice()
            .current_dir(&src)
            .args(["backup", ".", "--pack-size", "4"]),
    );
    let err = stderr(&out);
    assert!(
        err.contains("No space left on device"),
        "the cause is shown:\n{err}"
    );
    assert!(!err.contains("stopped after"), "{err}");
}

#[test]
fn a_killed_jobs_lock_carries_the_identity_the_next_jobs_unlock_compares() {
    let w = workdir();
    let data = w.path().join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("big"), random_bytes(7, 40 << 20)).unwrap();
    let repo = Repo::local(&w.path().join("repo"));
    ok(repo.sluice().arg("init"));
    // Each Job runs in a Pod of its own: a hostname of its own, the same SLUICE_HOSTNAME.
    let job = |pod: &str, actions: &str| {
        let c = repo.sluice();
        let mut u = Command::new("unshare");
        u.arg("--uts")
            .arg("sh")
            .arg("-c")
            .arg(format!("hostname {pod} && exec \"$0\" job"))
            .arg(c.get_program());
        for (k, v) in c.get_envs() {
            match v {
                Some(v) => u.env(k, v),
                None => u.env_remove(k),
            };
        }
        u.env("SLUICE_JOB_ACTIONS", actions)
            .env("SLUICE_DATA_DIR", &data)
            .env("SLUICE_HOSTNAME", "ns-a/source-a")
            .env("SLUICE_RETRY_LOCK", "2s")
            .env("SLUICE_RESULT_FILE", w.path().join(format!("result-{pod}")));
        u
    };
    let mut first = job("mover-pod-1", "unlock,backup").spawn().unwrap();
    // Lock files, not the temporary files they are written under.
    let locks = || -> Vec<PathBuf> {
        files_below(&repo.path().join("locks"))
            .into_iter()
            .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while locks().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the first job never took its lock"
        );
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first job ended before it was killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(locks().len(), 1, "the killed job left its lock");

    let out = job("mover-pod-2", "unlock,backup,prune").output().unwrap();
    assert!(
        out.status.success(),
        "the next job was blocked by the killed job's lock: {}",
        stderr(&out)
    );
    assert!(locks().is_empty(), "{:?}", locks());
}

/// Unpacks one of restic's own test repositories (password `geheim`).
fn restic_fixture(w: &Path, name: &str) -> Repo {
    let tarball = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/restic/repos")
        .join(format!("{name}.tar.gz"));
    assert!(
        tarball.is_file(),
        "restic's fixture is missing at {}",
        tarball.display()
    );
    ok(Command::new("tar")
        .arg("xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(w));
    let mut repo = Repo::local(&w.join("repo"));
    repo.password = "geheim".into();
    repo
}

#[test]
fn restics_damaged_repositories_are_diagnosed_and_repaired_as_restic_would() {
    // An index file is gone: check says so, and `repair index` is the cure.
    let w = workdir();
    let repo = restic_fixture(w.path(), "cmd_restic__repo-index-missing");
    let out = fails(repo.sluice().arg("check"));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(all.contains("repair index"), "{all}");
    ok(repo.sluice().args(["repair", "index"]));
    ok(repo.sluice().args(["check", "--read-data"]));
    ok(repo.restic().args(["check", "--read-data"]));

    // Data is gone: `repair snapshots` rewrites what refers to it.
    let w = workdir();
    let repo = restic_fixture(w.path(), "cmd_restic__repo-data-missing");
    fails(repo.sluice().arg("check"));
    ok(repo.sluice().args(["repair", "index"]));
    ok(repo.sluice().args(["repair", "snapshots", "--forget"]));
    ok(repo.sluice().arg("check"));
    ok(repo.restic().args(["check", "--read-data"]));
}

#[test]
fn a_backup_that_reuses_a_pack_that_is_gone_saves_no_snapshot() {
    let w = workdir();
    let src = w.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), random_bytes(5, 300_000)).unwrap();
    let repo = Repo::local(&w.path().join("repo"));
    ok(repo.sluice().arg("init"));
    ok(repo.sluice().current_dir(&src).args(["backup", "."]));
    // The data pack goes (a prune that ignored the lock, lost storage); the index still
    // lists it, so the next backup would reuse what is not there. The tree pack, a few
    // hundred bytes, stays: the parent snapshot is still readable.
    let mut removed = 0;
    for p in files_below(&repo.path().join("data")) {
        if fs::metadata(&p).unwrap().len() > 100_000 {
            fs::remove_file(p).unwrap();
            removed += 1;
        }
    }
    assert_eq!(removed, 1);
    fs::write(src.join("b"), b"new file").unwrap();
    let out = fails(repo.sluice().current_dir(&src).args(["backup", "."]));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("gone from the repository"), "{err}");
    assert_eq!(
        files_below(&repo.path().join("snapshots")).len(),
        1,
        "no second snapshot"
    );
}

#[test]
fn a_file_that_changes_size_while_read_is_warned_about_once() {
    assert!(is_root(), "this test bind-mounts a file and needs root");
    let w = workdir();
    let src = w.path().join("src");
    fs::create_dir_all(&src).unwrap();
    // A /proc file says it is empty and reads as a line of text: a file that grew.
    let grows = src.join("grows");
    fs::write(&grows, b"").unwrap();
    let mounted = Command::new("mount")
        .args(["--bind", "/proc/version"])
        .arg(&grows)
        .status()
        .unwrap();
    assert!(mounted.success(), "bind mount");
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&grows);
    let repo = Repo::local(&w.path().join("repo"));
    ok(repo.sluice().arg("init"));
    let out = repo
        .sluice()
        .current_dir(&src)
        .args(["backup", "."])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(
        err.matches("changed size while it was read").count(),
        1,
        "one warning, printed once:\n{err}"
    );
}

#[test]
fn ls_and_dump_of_a_hostile_snapshot_fail_with_one_line_and_write_nothing_outside() {
    let w = workdir();
    let mut c = Crafted::new(&w.path().join("repo"));
    let content = c.data(b"twelve bytes");
    let missing = Id::hash(b"a blob nobody stored");
    let gone_tree = Id::hash(b"a tree nobody stored");
    let inner = c.tree(vec![file(b"x", vec![content], 12, 0o644)]);
    let root = c.tree(vec![
        // Claims a size its content does not have.
        file(b"liar", vec![content], 1 << 40, 0o644),
        // Content the index does not know.
        file(b"lost", vec![missing], 5, 0o644),
        // A name that looks like a path, and one that climbs.
        file(b"sub/x", vec![content], 12, 0o644),
        file(b"..", vec![content], 12, 0o644),
        dir(b"sub", inner),
        dir(b"void", gone_tree),
    ]);
    c.snapshot(root);
    let repo = Repo::local(&c.dir);

    // The size written is the content's, and the lie is named after it.
    let out = fails(repo.sluice().args(["dump", "latest", "/liar"]));
    assert_eq!(out.stdout, b"twelve bytes");
    let err = stderr(&out);
    assert!(
        err.contains("liar") && err.contains("1099511627776"),
        "{err}"
    );
    let out = fails(repo.sluice().args(["dump", "latest", "/lost"]));
    assert!(stderr(&out).contains(&missing.to_hex()), "{}", stderr(&out));
    // A path is split into names: "sub/x" is the directory's file, ".." is refused.
    let out = ok(repo.sluice().args(["dump", "latest", "/sub/x"]));
    assert_eq!(out.stdout, b"twelve bytes");
    let out = fails(repo.sluice().args(["dump", "latest", "/.."]));
    assert!(stderr(&out).contains("'..'"), "{}", stderr(&out));
    // The listing stops at the tree it cannot read, saying which.
    let out = fails(repo.sluice().args(["ls", "latest"]));
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(&gone_tree.to_hex()), "{err}");
    assert!(stdout(&out).contains("/sub/x\n"), "{}", stdout(&out));
}
