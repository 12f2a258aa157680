//! kill -9 during backups: the repository always passes `restic check`,
//! the next backup succeeds and every snapshot restores.

mod support;

use std::time::{Duration, Instant};

use support::*;

#[test]
fn killed_backups_never_damage_the_repository() {
    let w = tempfile::tempdir().unwrap();
    let repo = Repo::local(&w.path().join("repo"));
    ok(repo.sluice().arg("init"));
    let src = w.path().join("src");
    std::fs::create_dir_all(&src).unwrap();

    let write = |g: u64| {
        for i in 0..4 {
            std::fs::write(src.join(format!("f{i}")), random_bytes(g * 10 + i, 3 << 20)).unwrap();
        }
    };
    write(0);
    let t = Instant::now();
    ok(repo.sluice().arg("backup").arg(&src));
    let full = t.elapsed().as_millis() as u64;

    for seed in 1..=5u64 {
        write(seed);
        let delay = (seed * 2_654_435_761) % (full + 1);
        let mut child = repo.sluice().arg("backup").arg(&src).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        kill9(&mut child);
        ok(repo.restic().args(["check", "--no-lock"]));
        ok(repo.sluice().arg("backup").arg(&src));
    }
    ok(repo.restic().args(["check", "--read-data"]));
    let ids = repo.snapshot_ids();
    assert!(ids.len() >= 6);
    for id in &ids {
        restic_restore(&repo, id, &w.path().join("restore").join(id));
    }
    // The newest snapshot is the last completed backup of the final state.
    restic_restore(&repo, "latest", &w.path().join("latest"));
    let restored_root = w.path().join("latest").join(src.strip_prefix("/").unwrap());
    assert_same_tree(&src, &restored_root, Compare::EXACT);
}
