//! Locks shared with restic: restic itself holds the lock while sluice-mover
//! acts.

mod support;

use std::process::{Child, Stdio};
use std::time::Duration;

use support::*;

/// Starts `restic backup --stdin` reading from a pipe we keep open: restic
/// holds its (shared) lock until the pipe closes.
fn restic_holding_lock(repo: &Repo) -> Child {
    let child = repo
        .restic()
        .args(["backup", "--stdin", "--stdin-filename", "held.txt"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_for_file(repo, "locks", Duration::from_secs(30)),
        "restic never wrote its lock"
    );
    child
}

fn release(mut child: Child) {
    use std::io::Write;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"held\n").unwrap();
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success(), "restic backup --stdin failed: {status}");
}

fn new_repo(root: &std::path::Path) -> Repo {
    let repo = Repo::local(&root.join("repo"));
    ok(repo.restic().arg("init"));
    let src = root.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), "data").unwrap();
    ok(repo.sluice().arg("backup").arg(&src));
    repo
}

/// Leaves a lock of a dead sluice-mover process: a backup killed while it
/// holds its lock.
fn leave_stale_lock(repo: &Repo, root: &std::path::Path) {
    let src = root.join("big");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..8 {
        std::fs::write(src.join(format!("f{i}")), random_bytes(i + 50, 8 << 20)).unwrap();
    }
    let mut child = repo
        .sluice()
        .arg("backup")
        .arg(&src)
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_for_file(repo, "locks", Duration::from_secs(30)),
        "sluice never wrote its lock"
    );
    kill9(&mut child);
    assert_eq!(
        repo.files("locks").len(),
        1,
        "the killed backup left no lock to test with"
    );
}

#[test]
fn exclusive_command_waits_for_or_reports_restics_lock() {
    let w = tempfile::tempdir().unwrap();
    let repo = new_repo(w.path());
    let restic = restic_holding_lock(&repo);
    let pid = restic.id();

    let out = exits(repo.sluice().args(["forget", "--keep-last", "1"]), 11);
    let err = stderr(&out);
    let host = stdout(&ok(&mut std::process::Command::new("hostname")))
        .trim()
        .to_string();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains(&host) && err.contains(&format!("pid {pid}")) && err.contains("old"),
        "holder not named: {err}"
    );

    // A shared lock coexists with restic's shared lock.
    ok(repo.sluice().arg("backup").arg(w.path().join("src")));

    // With --retry-lock the command waits until restic is done.
    let mut waiting = repo.sluice();
    waiting.args(["forget", "--keep-last", "1", "--retry-lock", "30s"]);
    let waiter = std::thread::spawn(move || waiting.output());
    std::thread::sleep(Duration::from_secs(2));
    release(restic);
    let out = waiter.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "forget --retry-lock failed: {}",
        stderr(&out)
    );
    // One snapshot per group: the directory's and restic's stdin backup.
    assert_eq!(repo.snapshot_ids().len(), 2);
}

#[test]
fn stale_lock_of_a_killed_process_is_removed_automatically() {
    let w = tempfile::tempdir().unwrap();
    let repo = new_repo(w.path());
    leave_stale_lock(&repo, w.path());
    let out = ok(repo.sluice().args(["forget", "--keep-last", "5"]));
    let err = stderr(&out);
    assert!(
        err.contains("removing stale lock"),
        "no log line about the stale lock: {err}"
    );
    assert!(repo.files("locks").is_empty());
    ok(repo.restic().arg("check"));
}

#[test]
fn unlock_removes_stale_locks_and_remove_all_removes_every_lock() {
    let w = tempfile::tempdir().unwrap();
    let repo = new_repo(w.path());
    leave_stale_lock(&repo, w.path());
    let out = ok(repo.sluice().arg("unlock"));
    assert!(stdout(&out).contains("removed 1 locks"), "{}", stdout(&out));
    assert!(repo.files("locks").is_empty());

    let mut restic = restic_holding_lock(&repo);
    let out = ok(repo.sluice().arg("unlock"));
    assert!(
        stdout(&out).contains("removed 0 locks"),
        "a live lock was removed: {}",
        stdout(&out)
    );
    assert_eq!(repo.files("locks").len(), 1);
    let out = ok(repo.sluice().args(["unlock", "--remove-all"]));
    assert!(stdout(&out).contains("removed 1 locks"), "{}", stdout(&out));
    assert!(repo.files("locks").is_empty());
    kill9(&mut restic);
}
