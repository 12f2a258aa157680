//! `prune` judged by restic: after it, `restic check --read-data` passes
//! and every kept snapshot restores exactly as before; killed at random
//! points, the repository still checks and the next prune completes.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::*;

/// Writes generation `g` of the source: some files stay, some change, some
/// go, so snapshots share part of their data.
fn write_generation(src: &Path, g: u64) {
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("stable.bin"), random_bytes(1, 3 << 20)).unwrap();
    std::fs::write(
        src.join(format!("gen{g}.bin")),
        random_bytes(100 + g, 1 << 20),
    )
    .unwrap();
    if g > 0 {
        let _ = std::fs::remove_file(src.join(format!("gen{}.bin", g - 1)));
    }
    std::fs::write(
        src.join("sub/small.txt"),
        format!("generation {g}\n").repeat(50),
    )
    .unwrap();
}

/// Backs up four generations (with `writer` naming the tool) and returns
/// the snapshot ids, oldest first.
fn fill(repo: &Repo, src: &Path, restic_writes: bool) -> Vec<String> {
    let mut ids = Vec::new();
    for g in 0..4 {
        write_generation(src, g);
        let mut c = if restic_writes {
            repo.restic()
        } else {
            repo.sluice()
        };
        ok(c.args(["backup", "--json"]).arg(src));
        let all = repo.snapshot_ids();
        let new: Vec<_> = all.into_iter().filter(|i| !ids.contains(i)).collect();
        assert_eq!(new.len(), 1);
        ids.push(new[0].clone());
    }
    ids
}

/// Restores every snapshot of `ids` with restic into `into/ID`.
fn restore_all(repo: &Repo, ids: &[String], into: &Path) {
    for id in ids {
        restic_restore(repo, id, &into.join(id));
    }
}

fn prune_and_verify(repo: &Repo, src: &Path, work: &Path) {
    let ids = repo.snapshot_ids();
    restore_all(repo, &ids, &work.join("before"));
    ok(repo.sluice().args(["forget", "--keep-last", "2"]));
    let kept = repo.snapshot_ids();
    assert_eq!(kept.len(), 2);
    let packs_before = repo.files("data").len();
    let out = ok(repo.sluice().args(["prune", "--max-unused", "0%"]));
    let report = stdout(&out);
    assert!(
        report.contains("to repack:")
            && report.contains("to delete:")
            && report.contains("unused size after prune"),
        "{report}"
    );
    ok(repo.restic().args(["check", "--read-data"]));
    restore_all(repo, &kept, &work.join("after"));
    for id in &kept {
        // A difference names the snapshot by its directory.
        assert_same_tree(
            &work.join("before").join(id),
            &work.join("after").join(id),
            Compare::EXACT,
        );
    }
    assert!(repo.files("data").len() <= packs_before);
    // Nothing unused is left with --max-unused 0%: a second prune has
    // nothing to do.
    let again = stdout(&ok(repo.sluice().args(["prune", "--max-unused", "0%"])));
    assert!(again.contains("nothing to do"), "{again}");
    let _ = src;
}

#[test]
fn prune_after_forget_on_a_sluice_repo() {
    let w = tempfile::tempdir().unwrap();
    let repo = Repo::local(&w.path().join("repo"));
    ok(repo.sluice().arg("init"));
    let src = w.path().join("src");
    fill(&repo, &src, false);
    // Dry run changes nothing.
    let files = repo.files("");
    ok(repo.sluice().args(["prune", "--dry-run"]));
    assert_eq!(repo.files(""), files);
    prune_and_verify(&repo, &src, w.path());
}

#[test]
fn prune_on_a_restic_repo() {
    let w = tempfile::tempdir().unwrap();
    let repo = Repo::local(&w.path().join("repo"));
    ok(repo.restic().arg("init"));
    let src = w.path().join("src");
    fill(&repo, &src, true);
    prune_and_verify(&repo, &src, w.path());
}

#[test]
fn malformed_max_unused_is_rejected_before_any_work() {
    let w = tempfile::tempdir().unwrap();
    let repo = Repo::local(&w.path().join("absent"));
    for bad in ["5%%", "abc", "101%", "-3%"] {
        let out = exits(
            repo.sluice()
                .arg("prune")
                .arg(format!("--max-unused={bad}")),
            1,
        );
        let err = stderr(&out);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("--max-unused"), "{err}");
    }
}

#[test]
fn killed_prune_leaves_a_checkable_repository() {
    let w = tempfile::tempdir().unwrap();
    let template = Repo::local(&w.path().join("template"));
    ok(template.sluice().arg("init"));
    let src = w.path().join("src");
    fill(&template, &src, false);
    ok(template.sluice().args(["forget", "--keep-last", "2"]));
    let kept = template.snapshot_ids();
    restore_all(&template, &kept, &w.path().join("expected"));

    // How long an undisturbed prune takes bounds where kills land.
    let probe = Repo::local(&w.path().join("probe"));
    copy_dir(&template.path(), &probe.path());
    let t = Instant::now();
    ok(probe.sluice().args(["prune", "--max-unused", "0%"]));
    let full = t.elapsed().as_millis() as u64;

    for seed in 1..=5u64 {
        let repo = Repo::local(&w.path().join(format!("kill{seed}")));
        copy_dir(&template.path(), &repo.path());
        let delay = (seed * 2_654_435_761) % (full + 1);
        let mut child = repo
            .sluice()
            .args(["prune", "--max-unused", "0%"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        kill9(&mut child);
        ok(repo.restic().args(["check", "--no-lock"]));
        // The killed prune's lock is stale (same host, dead pid) and must
        // not stop the next one.
        ok(repo.sluice().args(["prune", "--max-unused", "0%"]));
        ok(repo.restic().args(["check", "--read-data"]));
        assert_eq!(repo.snapshot_ids(), kept);
        let restored = w.path().join(format!("restored{seed}"));
        restore_all(&repo, &kept, &restored);
        eprintln!("seed {seed}: prune killed after {delay} ms of {full}");
        for id in &kept {
            assert_same_tree(
                &w.path().join("expected").join(id),
                &restored.join(id),
                Compare::EXACT,
            );
        }
    }
}
