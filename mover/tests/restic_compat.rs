//! sluice-mover against the real restic binary, the format oracle: what
//! one writes, the other must read, check and restore exactly.

mod support;

use std::fs;
use std::path::Path;

use support::*;

const FULL: Compare = Compare::EXACT;

fn init_sluice(repo: &Repo) {
    ok(repo.sluice().arg("init"));
}

/// `backup .` from inside `src`, as mover Jobs do.
fn sluice_backup_dot(repo: &Repo, src: &Path, extra: &[&str]) -> serde_json::Value {
    let out = ok(repo
        .sluice()
        .current_dir(src)
        .args(["backup", ".", "--json"])
        .args(extra));
    last_json(&out)
}

/// A work directory holding the awkward tree at `src` and a fresh sluice
/// repository beside it.
fn awkward_tree_and_repo() -> (tempfile::TempDir, std::path::PathBuf, Repo) {
    let w = workdir();
    let src = w.path().join("src");
    make_awkward_tree(&src);
    let repo = Repo::local(&w.path().join("repo"));
    init_sluice(&repo);
    (w, src, repo)
}

#[test]
fn restic_checks_and_restores_what_sluice_wrote() {
    let (w, src, repo) = awkward_tree_and_repo();
    let summary = sluice_backup_dot(&repo, &src, &[]);
    assert_eq!(summary["message_type"], "summary");
    let id = summary["snapshot_id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 64);

    ok(repo.restic().args(["check", "--read-data"]));
    let snaps: serde_json::Value =
        serde_json::from_str(&stdout(&ok(repo.restic().args(["snapshots", "--json"])))).unwrap();
    assert_eq!(snaps[0]["id"], id.as_str());
    assert_eq!(
        snaps[0]["paths"][0],
        src.to_str().unwrap(),
        "paths records the absolute directory"
    );

    let dst = w.path().join("restic-restored");
    ok(repo.restic().args(["restore", &id, "--target"]).arg(&dst));
    // `backup .` stores the contents at the root, so restic restores them
    // directly into the target.
    assert_same_tree(&src, &dst, FULL);
}

#[test]
fn sluice_restores_its_own_backup_exactly_and_sparsely() {
    let (w, src, repo) = awkward_tree_and_repo();
    sluice_backup_dot(&repo, &src, &[]);
    let dst = w.path().join("dst");
    ok(repo
        .sluice()
        .args(["restore", "latest", "--verify", "--target"])
        .arg(&dst));
    assert_same_tree(&src, &dst, FULL);
    assert!(
        allocated(&dst.join("sparse")) < 8 << 20,
        "sparse file restored with {} bytes allocated for 64 MiB of mostly holes",
        allocated(&dst.join("sparse"))
    );
}

fn restic_variant_round_trip(init_args: &[&str], backup_args: &[&str]) {
    let w = workdir();
    let src = w.path().join("src");
    make_awkward_tree(&src);
    let repo = Repo::local(&w.path().join("repo"));
    ok(repo.restic().arg("init").args(init_args));
    ok(repo
        .restic()
        .current_dir(&src)
        .args(["backup", "."])
        .args(backup_args));
    let dst = w.path().join("dst");
    ok(repo
        .sluice()
        .args(["restore", "latest", "--verify", "--target"])
        .arg(&dst));
    assert_same_tree(&src, &dst, FULL);
}

#[test]
fn sluice_restores_restic_default_repository() {
    restic_variant_round_trip(&[], &[]);
}

#[test]
fn sluice_restores_restic_64mib_packs() {
    restic_variant_round_trip(&[], &["--pack-size", "64"]);
}

#[test]
fn sluice_restores_restic_max_compression() {
    restic_variant_round_trip(&[], &["--compression", "max"]);
}

#[test]
fn sluice_restores_restic_uncompressed() {
    restic_variant_round_trip(&[], &["--compression", "off"]);
}

#[test]
fn chunk_boundaries_match_restic_so_changes_deduplicate() {
    let w = workdir();
    let src = w.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let mut data = random_bytes(11, 40 << 20);
    fs::write(src.join("big"), &data).unwrap();
    let repo = Repo::local(&w.path().join("repo"));
    ok(repo.restic().arg("init"));
    ok(repo.restic().current_dir(&src).args(["backup", "."]));

    // Identical cut points: the same file adds nothing, even without a
    // parent snapshot to compare metadata with.
    let same = sluice_backup_dot(&repo, &src, &["--force"]);
    assert_eq!(
        same["data_added"], 0,
        "sluice chunked the file differently from restic: {same}"
    );

    // Change 1 MiB in the middle: only the chunks around it are new.
    let mid = data.len() / 2;
    data[mid..mid + (1 << 20)].copy_from_slice(&random_bytes(12, 1 << 20));
    fs::write(src.join("big"), &data).unwrap();
    let changed = sluice_backup_dot(&repo, &src, &[]);
    let added = changed["data_added"].as_u64().unwrap();
    assert!(
        added >= 1 << 20,
        "the changed MiB must be stored: {changed}"
    );
    assert!(
        added <= 10 << 20,
        "only the chunks around the change may be new, got {added} bytes"
    );
    assert_eq!(changed["files_changed"], 1);
    ok(repo.restic().args(["check", "--read-data"]));
    let dst = w.path().join("dst");
    ok(repo
        .restic()
        .args(["restore", "latest", "--target"])
        .arg(&dst));
    assert_eq!(fs::read(dst.join("big")).unwrap(), data);
}

#[test]
fn unchanged_files_are_not_read_again() {
    let (_work, src, repo) = awkward_tree_and_repo();
    let first = sluice_backup_dot(&repo, &src, &[]);
    assert_eq!(first["files_new"], 20, "{first}");
    let second = sluice_backup_dot(&repo, &src, &[]);
    assert_eq!(second["files_new"], 0);
    assert_eq!(second["files_changed"], 0);
    assert_eq!(second["files_unmodified"], first["files_new"]);
    assert_eq!(second["data_added"], 0);
    // Directory trees may still change: listing a directory updates its
    // atime (relatime), which restic records too.

    fs::write(src.join("one-byte"), b"y").unwrap();
    let third = sluice_backup_dot(&repo, &src, &[]);
    assert_eq!(third["files_changed"], 1, "{third}");
    let snaps: serde_json::Value =
        serde_json::from_str(&stdout(&ok(repo.sluice().args(["snapshots", "--json"])))).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 3);
    assert_eq!(
        snaps[2]["parent"], snaps[1]["id"],
        "the parent snapshot is recorded"
    );
}

#[test]
fn backup_of_an_absolute_path_nests_it_like_restic() {
    let w = workdir();
    let src = w.path().join("data");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"content").unwrap();
    let repo = Repo::local(&w.path().join("repo"));
    init_sluice(&repo);
    ok(repo.sluice().arg("backup").arg(&src));
    let ls = stdout(&ok(repo.restic().args(["ls", "latest"])));
    let expected = format!("{}/f", src.display());
    assert!(
        ls.lines().any(|l| l == expected),
        "restic ls shows {expected}:\n{ls}"
    );
}

/// Relative targets nest below the working directory, and excludes match
/// the absolute path of each entry: anchored patterns may name the working
/// directory, unanchored ones may match its components.
#[test]
fn relative_targets_nest_and_match_excludes_by_absolute_path_like_restic() {
    let w = workdir();
    let cwd = w.path().join("work");
    for f in ["keep", "skip", "other"] {
        fs::create_dir_all(cwd.join("sub")).unwrap();
        fs::write(cwd.join("sub").join(f), f).unwrap();
    }
    let repo = Repo::local(&w.path().join("repo"));
    init_sluice(&repo);
    let anchored = format!("--exclude={}/sub/skip", cwd.display());
    let args = ["backup", "sub", &anchored, "--exclude=work/sub/other"];
    ok(repo.restic().current_dir(&cwd).args(args));
    ok(repo.sluice().current_dir(&cwd).args(args));
    let snaps: serde_json::Value =
        serde_json::from_str(&stdout(&ok(repo.restic().args(["snapshots", "--json"])))).unwrap();
    let listing = |i: usize| {
        let id = snaps[i]["id"].as_str().unwrap();
        assert_eq!(snaps[i]["paths"][0], cwd.join("sub").to_str().unwrap());
        // The first line names the snapshot.
        let ls = stdout(&ok(repo.restic().args(["ls", id])));
        ls.lines().skip(1).map(String::from).collect::<Vec<_>>()
    };
    assert_eq!(listing(0), ["/sub", "/sub/keep"], "restic's view");
    assert_eq!(listing(1), listing(0), "sluice stores what restic stores");
}

#[test]
fn restore_delete_removes_files_not_in_the_snapshot() {
    let w = workdir();
    let src = w.path().join("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("keep"), b"k").unwrap();
    let repo = Repo::local(&w.path().join("repo"));
    init_sluice(&repo);
    sluice_backup_dot(&repo, &src, &[]);
    let dst = w.path().join("dst");
    fs::create_dir_all(dst.join("d/stale-dir")).unwrap();
    fs::write(dst.join("stale"), b"s").unwrap();
    fs::write(dst.join("d/stale-file"), b"s").unwrap();
    ok(repo
        .sluice()
        .args(["restore", "latest", "--target"])
        .arg(&dst));
    assert!(
        dst.join("stale").exists(),
        "without --delete extra files stay"
    );
    ok(repo
        .sluice()
        .args(["restore", "latest", "--delete", "--target"])
        .arg(&dst));
    assert!(!dst.join("stale").exists());
    assert!(!dst.join("d/stale-file").exists());
    assert!(!dst.join("d/stale-dir").exists());
    assert_eq!(fs::read(dst.join("keep")).unwrap(), b"k");
}

#[test]
fn restic_test_repositories_restore_like_restic() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/restic/repos");
    assert!(
        fixtures.is_dir(),
        "restic's fixtures are missing at {}",
        fixtures.display()
    );
    // Every fixture restic's check calls clean, v1 and v2 alike.
    for name in [
        "cmd_restic__small-repo",
        "cmd_restic__repo-mixed",
        "cmd_restic__repo-duplicates",
        "cmd_restic__repo-same-timestamps",
        "cmd_restic__repo-obsolete-index",
        "cmd_restic__repo-unreferenced-data",
        "cmd_restic__repo-restore-permissions-test",
        "cmd_restic__copy-unstable-json",
        "internal_backend__repo-layout-default",
    ] {
        let w = workdir();
        let tarball = fixtures.join(format!("{name}.tar.gz"));
        ok(std::process::Command::new("tar")
            .arg("xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(w.path()));
        let root = fs::read_dir(w.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut repo = Repo::local(&root);
        repo.password = "geheim".into();
        let snaps: serde_json::Value =
            serde_json::from_str(&stdout(&ok(repo.sluice().args(["snapshots", "--json"]))))
                .unwrap();
        let restic_snaps: serde_json::Value = serde_json::from_str(&stdout(&ok(repo
            .restic()
            .args(["snapshots", "--json", "--no-lock"]))))
        .unwrap();
        let ids = |v: &serde_json::Value| {
            let mut ids: Vec<String> = v
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].as_str().unwrap().to_string())
                .collect();
            ids.sort();
            ids
        };
        assert_eq!(
            ids(&snaps),
            ids(&restic_snaps),
            "{name}: snapshot lists differ"
        );
        for id in ids(&snaps) {
            let a = w.path().join(format!("by-restic-{id}"));
            let b = w.path().join(format!("by-sluice-{id}"));
            ok(repo
                .restic()
                .args(["restore", &id, "--no-lock", "--target"])
                .arg(&a));
            ok(repo
                .sluice()
                .args(["restore", &id, "--no-lock", "--target"])
                .arg(&b));
            assert_same_tree(
                &a,
                &b,
                Compare {
                    ownership: is_root(),
                    ..Compare::EXACT
                },
            );
        }
    }
}

#[test]
fn restore_with_128mib_packs_stays_in_bounded_memory() {
    let w = workdir();
    let src = w.path().join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..3 {
        fs::write(src.join(format!("f{i}")), random_bytes(100 + i, 100 << 20)).unwrap();
    }
    let repo = Repo::local(&w.path().join("repo"));
    ok(repo.restic().arg("init"));
    ok(repo.restic().current_dir(&src).args([
        "backup",
        ".",
        "--pack-size",
        "128",
        "--compression",
        "off",
    ]));
    let dst = w.path().join("dst");
    let (status, rss, err) = run_measuring_rss(
        repo.sluice()
            .args(["restore", "latest", "--target"])
            .arg(&dst),
    );
    assert!(status.success(), "restore failed: {err}");
    assert!(rss > 0, "the restore's memory was never read");
    assert!(
        rss < 256 << 20,
        "restore of 300 MiB in 128 MiB packs peaked at {} MiB",
        rss >> 20
    );
    for i in 0..3 {
        assert_eq!(
            fs::read(dst.join(format!("f{i}"))).unwrap(),
            random_bytes(100 + i, 100 << 20)
        );
    }
}

#[test]
fn ls_and_dump_read_what_restic_wrote_as_restic_does() {
    let w = workdir();
    let src = w.path().join("src");
    make_awkward_tree(&src);
    let repo = Repo::local(&w.path().join("repo"));
    ok(repo.restic().arg("init"));
    ok(repo.restic().current_dir(&src).args(["backup", "."]));

    // The same paths in the same order as `restic ls --json` (its first line is the snapshot).
    let restic_paths: Vec<String> = stdout(&ok(repo.restic().args(["ls", "--json", "latest"])))
        .lines()
        .skip(1)
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["path"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let ours: Vec<serde_json::Value> = stdout(&ok(repo.sluice().args(["ls", "--json", "latest"])))
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let our_paths: Vec<&str> = ours.iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(our_paths, restic_paths);
    let plain = stdout(&ok(repo.sluice().args(["ls", "latest"])));
    assert_eq!(plain, format!("{}\n", our_paths.join("\n")));

    // Every regular file dumps to restic's bytes.
    let files: Vec<&str> = ours
        .iter()
        .filter(|e| e["type"] == "file")
        .map(|e| e["path"].as_str().unwrap())
        .filter(|p| !p.contains('\u{fffd}'))
        .collect();
    assert!(files.len() > 3, "{files:?}");
    for file in files {
        let restic = ok(repo.restic().args(["dump", "latest", file])).stdout;
        let sluice = ok(repo.sluice().args(["dump", "latest", file])).stdout;
        assert!(
            restic == sluice,
            "{file}: {} bytes, restic {}",
            sluice.len(),
            restic.len()
        );
    }

    // A subtree lists under its own path; a file lists alone.
    let dir = our_paths
        .iter()
        .find(|p| ours.iter().any(|e| e["path"] == **p && e["type"] == "dir"))
        .unwrap();
    let below = stdout(&ok(repo.sluice().args(["ls", "latest", dir])));
    assert!(below.lines().all(|p| p.starts_with(*dir)), "{below}");

    // With --termination-log the error goes there, not to stderr, and what dump wrote too.
    let log = w.path().join("termination-log");
    let out = fails(repo.sluice().arg("--termination-log").arg(&log).args([
        "dump",
        "latest",
        "/not-there",
    ]));
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "{}",
        stderr(&out)
    );
    let said = fs::read_to_string(&log).unwrap();
    assert!(
        said.starts_with("Fatal: ") && said.contains("not in the snapshot"),
        "{said}"
    );
    let file = ours.iter().find(|e| e["type"] == "file").unwrap();
    let out = ok(repo.sluice().arg("--termination-log").arg(&log).args([
        "dump",
        "latest",
        file["path"].as_str().unwrap(),
    ]));
    assert_eq!(
        fs::read_to_string(&log).unwrap(),
        format!("dumped {} bytes", out.stdout.len())
    );
    assert_eq!(out.stdout.len() as u64, file["size"].as_u64().unwrap());
}
