//! Bad input gets a one-line error, the right exit code, and loses nothing.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use sluice_repo::backend::local::LocalBackend;
use sluice_repo::repository::Options;
use support::*;

fn one_line(err: &str) -> &str {
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got:\n{err}");
    lines[0]
}

#[test]
fn wrong_password_exits_12_with_one_line() {
    let w = workdir();
    let mut repo = Repo::local(&w.path().join("repo"));
    ok(repo.sluice().arg("init"));
    repo.password = "not the password".into();
    let out = fails(repo.sluice().arg("snapshots"));
    assert_eq!(out.status.code(), Some(12));
    let line = one_line(&stderr(&out)).to_string();
    assert!(line.contains("wrong password"), "{line}");
    assert!(
        !line.contains("not the password"),
        "the password must never be printed: {line}"
    );
}

#[test]
fn missing_repository_exits_10() {
    let w = workdir();
    let repo = Repo::local(&w.path().join("nothing-here"));
    let out = fails(repo.sluice().arg("snapshots"));
    assert_eq!(out.status.code(), Some(10));
    let line = one_line(&stderr(&out)).to_string();
    assert!(
        line.contains("nothing-here") && line.contains("init"),
        "{line}"
    );
}

#[test]
fn init_refuses_an_existing_repository() {
    let w = workdir();
    let repo = Repo::local(&w.path().join("repo"));
    ok(repo.sluice().arg("init"));
    let config_before = fs::read(w.path().join("repo/config")).unwrap();
    let out = fails(repo.sluice().arg("init"));
    assert!(one_line(&stderr(&out)).contains("already exists"));
    assert_eq!(
        fs::read(w.path().join("repo/config")).unwrap(),
        config_before
    );
    // restic created repositories are refused too.
    let r2 = Repo::local(&w.path().join("restic-repo"));
    ok(r2.restic().arg("init"));
    fails(r2.sluice().arg("init"));
    ok(r2.restic().arg("check"));
}

#[test]
fn unwritable_target_is_reported_before_any_work() {
    let w = workdir();
    let src = w.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"data").unwrap();
    let repo = Repo::local(&w.path().join("repo"));
    ok(repo.sluice().arg("init"));
    ok(repo.sluice().current_dir(&src).args(["backup", "."]));
    // A target below a regular file cannot be created, even by root.
    let blocker = w.path().join("a-file");
    fs::write(&blocker, b"").unwrap();
    let target = blocker.join("target");
    let out = fails(
        repo.sluice()
            .args(["restore", "latest", "--target"])
            .arg(&target),
    );
    let line = one_line(&stderr(&out)).to_string();
    assert!(
        line.contains("restore target") && line.contains("a-file"),
        "{line}"
    );
    assert!(
        !stdout(&out).contains("Summary"),
        "no work may start: {}",
        stdout(&out)
    );
}

#[test]
fn flipped_byte_in_a_pack_names_file_and_blob_and_restores_the_rest() {
    let w = workdir();
    let src = w.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let victim = random_bytes(21, 3 << 20);
    fs::write(src.join("victim"), &victim).unwrap();
    fs::write(src.join("bystander"), random_bytes(22, 2 << 20)).unwrap();
    let repo_dir = w.path().join("repo");
    let repo = Repo::local(&repo_dir);
    ok(repo.sluice().arg("init"));
    // Small packs put the two files' blobs in different packs.
    ok(repo
        .sluice()
        .current_dir(&src)
        .args(["backup", ".", "--pack-size", "4"]));

    // Find the pack and offset of the victim's first blob with the engine.
    let backend = std::sync::Arc::new(LocalBackend::new(&repo_dir));
    let mut r = sluice_repo::Repository::open(backend, PASSWORD, Options::default()).unwrap();
    r.load_index().unwrap();
    let snap = r.find_snapshot("latest", &Default::default()).unwrap();
    let tree = r.load_tree(&snap.snapshot.tree).unwrap();
    let node = tree
        .nodes
        .iter()
        .find(|n| n.name_bytes() == b"victim")
        .unwrap();
    let blob = node.content()[0];
    let loc = r.index().get(&blob).unwrap();
    let pack_path = repo_dir.join(format!("data/{}/{}", &loc.pack.to_hex()[..2], loc.pack));
    fs::set_permissions(&pack_path, fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = fs::read(&pack_path).unwrap();
    bytes[loc.blob.offset as usize + 100] ^= 0x40;
    fs::write(&pack_path, &bytes).unwrap();

    let dst = w.path().join("dst");
    let out = fails(
        repo.sluice()
            .args(["restore", "latest", "--target"])
            .arg(&dst),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.lines()
            .any(|l| l.contains("victim") && l.contains(&blob.to_hex())),
        "the error names the file and the blob:\n{err}"
    );
    assert_eq!(
        fs::read(dst.join("bystander")).unwrap(),
        random_bytes(22, 2 << 20),
        "everything else is restored"
    );
}

#[test]
fn missing_password_and_repository_say_what_to_set() {
    let out = fails(
        std::process::Command::new(env!("CARGO_BIN_EXE_sluice-mover"))
            .arg("snapshots")
            .env_remove("RESTIC_REPOSITORY")
            .env_remove("RESTIC_PASSWORD")
            .env_remove("RESTIC_PASSWORD_FILE"),
    );
    assert!(one_line(&stderr(&out)).contains("RESTIC_REPOSITORY"));
}
