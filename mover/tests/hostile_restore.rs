//! Restoring snapshots that are hostile or damaged: nothing is written outside the target,
//! what can be salvaged is, and what could not be restored is neither left looking complete
//! nor counted as restored.

mod support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use support::craft::{Crafted, dir, file, symlink};
use support::*;

/// A directory outside every target, holding a file a hostile snapshot wants to change.
fn outside_victim(w: &Path) -> std::path::PathBuf {
    let outside = w.join("outside");
    fs::create_dir_all(&outside).unwrap();
    let victim = outside.join("victim");
    fs::write(&victim, b"original").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
    outside
}

fn assert_untouched(outside: &Path) {
    let victim = outside.join("victim");
    assert_eq!(
        fs::read(&victim).unwrap(),
        b"original",
        "the file outside was overwritten"
    );
    assert_eq!(
        fs::metadata(&victim).unwrap().mode() & 0o7777,
        0o600,
        "the mode of the file outside was changed"
    );
    let names: Vec<_> = fs::read_dir(outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec!["victim"],
        "something was created outside the target"
    );
}

#[test]
fn a_directory_and_a_symlink_of_the_same_name_cannot_escape_the_target() {
    let w = workdir();
    let outside = outside_victim(w.path());
    let mut c = Crafted::new(&w.path().join("repo"));
    let pwned = c.data(b"pwned");
    let inner = c.tree(vec![file(b"victim", vec![pwned], 5, 0o777)]);
    // Sorted by name, as a tree must be: two entries named "a".
    let fine = c.data(b"fine");
    let root = c.tree(vec![
        dir(b"a", inner),
        symlink(b"a", outside.as_os_str().as_encoded_bytes()),
        file(b"fine", vec![fine], 4, 0o644),
    ]);
    c.snapshot(root);
    let repo = Repo::local(&c.dir);

    let target = w.path().join("target");
    let out = fails(
        repo.sluice()
            .args(["restore", "latest", "--target"])
            .arg(&target),
    );
    assert_untouched(&outside);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.lines()
            .any(|l| l.contains("\"a\"") && l.contains("more than once")),
        "the duplicate name is named:\n{err}"
    );
    assert_eq!(
        fs::read(target.join("fine")).unwrap(),
        b"fine",
        "the rest is restored"
    );
    assert!(
        fs::symlink_metadata(target.join("a")).is_err(),
        "neither entry named a is restored"
    );

    // check reports the tree too.
    let out = fails(repo.sluice().arg("check"));
    let err = stderr(&out);
    assert!(
        err.lines()
            .any(|l| l.contains("\"a\"") && l.contains(&root.to_hex())),
        "check names the tree and the entry:\n{err}"
    );
}

#[test]
fn names_that_leave_the_directory_are_refused_and_symlinks_in_the_target_are_not_followed() {
    let w = workdir();
    let outside = outside_victim(w.path());
    let mut c = Crafted::new(&w.path().join("repo"));
    let pwned = c.data(b"pwned");
    let escape_rel = "../outside/victim";
    let escape_abs = outside.join("victim");
    let inner = c.tree(vec![file(b"victim", vec![pwned], 5, 0o777)]);
    let root = c.tree(vec![
        file(b"..", vec![pwned], 5, 0o777),
        file(
            escape_abs.as_os_str().as_encoded_bytes(),
            vec![pwned],
            5,
            0o777,
        ),
        file(escape_rel.as_bytes(), vec![pwned], 5, 0o777),
        // The target already holds a symlink "link" to the outside: restoring a
        // directory there replaces the link, never writes through it.
        dir(b"link", inner),
    ]);
    c.snapshot(root);
    let repo = Repo::local(&c.dir);
    let target = w.path().join("target");
    fs::create_dir_all(&target).unwrap();
    std::os::unix::fs::symlink(&outside, target.join("link")).unwrap();

    let out = fails(
        repo.sluice()
            .args(["restore", "latest", "--target"])
            .arg(&target),
    );
    assert_untouched(&outside);
    let err = stderr(&out);
    assert_eq!(
        err.lines().filter(|l| l.contains("unsafe name")).count(),
        3,
        "each unsafe name is reported:\n{err}"
    );
    assert!(fs::symlink_metadata(target.join("link")).unwrap().is_dir());
    assert_eq!(fs::read(target.join("link/victim")).unwrap(), b"pwned");
}

#[test]
fn a_chain_of_twenty_thousand_trees_is_reported_not_a_stack_overflow() {
    let w = workdir();
    let mut c = Crafted::new(&w.path().join("repo"));
    let mut tree = c.tree(vec![file(b"bottom", Vec::new(), 0, 0o644)]);
    for _ in 0..20_000 {
        tree = c.tree(vec![dir(b"d", tree)]);
    }
    c.snapshot(tree);
    let repo = Repo::local(&c.dir);

    // check walks every tree.
    let out = ok(repo.sluice().arg("check"));
    assert!(stdout(&out).contains("no errors"), "{}", stdout(&out));

    // restore lays out what paths allow and reports the rest.
    let target = w.path().join("target");
    let out = fails(
        repo.sluice()
            .args(["restore", "latest", "--target"])
            .arg(&target),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("longer than 4096 bytes"), "{err}");
    assert!(target.join("d/d/d/d").is_dir());
}

/// A repository of 200 small files in one pack, then the pack cut short: restic restores
/// every file whose blobs lie before the cut.
#[test]
fn a_truncated_pack_gives_back_every_file_before_the_cut() {
    let w = workdir();
    let mut c = Crafted::new(&w.path().join("repo"));
    let contents: Vec<Vec<u8>> = (0..200u64).map(|i| random_bytes(1000 + i, 4000)).collect();
    let nodes = contents
        .iter()
        .enumerate()
        .map(|(i, data)| {
            let blob = c.data(data);
            file(
                format!("f{i:03}").as_bytes(),
                vec![blob],
                data.len() as u64,
                0o644,
            )
        })
        .collect();
    let root = c.tree(nodes);
    c.snapshot(root);
    let repo = Repo::local(&c.dir);

    // The data pack is the larger of the two; cut off its last third (and its header).
    let mut packs: Vec<_> = walk(&c.dir.join("data"));
    packs.sort_by_key(|p| fs::metadata(p).unwrap().len());
    let pack = packs.last().unwrap();
    let len = fs::metadata(pack).unwrap().len();
    fs::set_permissions(pack, fs::Permissions::from_mode(0o644)).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(pack)
        .unwrap()
        .set_len(len * 2 / 3)
        .unwrap();

    let target = w.path().join("target");
    let out = fails(
        repo.sluice()
            .args(["--json", "restore", "latest", "--target"])
            .arg(&target),
    );
    let summary = last_json(&out);
    let restored: Vec<_> = (0..200)
        .filter(|i| fs::read(target.join(format!("f{i:03}"))).ok().as_ref() == Some(&contents[*i]))
        .collect();
    assert!(
        restored.len() >= 120,
        "only {} of 200 files came back",
        restored.len()
    );
    let failed = summary["files_failed"].as_u64().unwrap();
    assert_eq!(restored.len() as u64 + failed, 200, "{summary}");
    assert_eq!(
        summary["files_restored"].as_u64().unwrap(),
        restored.len() as u64,
        "{summary}"
    );
    // What failed is gone, not left at full size looking complete.
    let present = fs::read_dir(&target).unwrap().count();
    assert_eq!(present, restored.len(), "incomplete files were left behind");
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{failed} of 200 files could not be restored")),
        "{err}"
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A restore into a file system with room for only part of the data: the files that did
/// not fit are removed, counted and named, and the exit code says it failed.
#[test]
fn a_full_file_system_leaves_no_file_looking_complete() {
    let w = workdir();
    let src = w.path().join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..8u64 {
        fs::write(src.join(format!("big{i}")), random_bytes(i, 3 << 20)).unwrap();
    }
    let repo = Repo::local(&w.path().join("repo"));
    ok(repo.sluice().arg("init"));
    ok(repo.sluice().current_dir(&src).args(["backup", "."]));

    let small = Tmpfs::mount(&w.path().join("small"), "10m");
    let target = small.path.clone();
    let out = fails(
        repo.sluice()
            .args(["--json", "restore", "latest", "--target"])
            .arg(&target),
    );
    assert_eq!(out.status.code(), Some(1));
    let summary = last_json(&out);
    let failed = summary["files_failed"].as_u64().unwrap();
    assert!(failed >= 5, "{summary}");
    let mut complete = 0;
    for e in fs::read_dir(&target).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        let i: u64 = name.trim_start_matches("big").parse().unwrap();
        assert_eq!(
            fs::read(&p).unwrap(),
            random_bytes(i, 3 << 20),
            "{name} is left incomplete"
        );
        complete += 1;
    }
    assert_eq!(complete + failed, 8, "{summary}");
    assert_eq!(summary["files_restored"].as_u64().unwrap(), complete);
    let err = stderr(&out);
    assert!(
        err.lines().filter(|l| l.contains("No space left")).count() as u64 == failed,
        "one line per failed file, naming the cause:\n{err}"
    );
}
