//! `check`: clean repositories pass; damage is named by pack, blob and the
//! snapshots it breaks.

mod support;

use std::path::Path;

use support::*;

fn repo_with_two_snapshots(root: &Path) -> (Repo, Vec<String>) {
    let repo = Repo::local(&root.join("repo"));
    ok(repo.sluice().arg("init"));
    let src = root.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("big.bin"), random_bytes(7, 2 << 20)).unwrap();
    ok(repo.sluice().arg("backup").arg(&src));
    std::fs::write(src.join("other.txt"), "x").unwrap();
    ok(repo.restic().arg("backup").arg(&src));
    let ids = repo.snapshot_ids();
    (repo, ids)
}

/// The largest pack: the one holding the file's data.
fn data_pack(repo: &Repo) -> std::path::PathBuf {
    repo.files("data")
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap()
}

#[test]
fn clean_repository_passes() {
    let w = tempfile::tempdir().unwrap();
    let (repo, _) = repo_with_two_snapshots(w.path());
    ok(repo.sluice().arg("check"));
    ok(repo.sluice().args(["check", "--read-data"]));
    ok(repo.sluice().args(["check", "--read-data-subset", "50%"]));
    ok(repo.sluice().args(["check", "--read-data-subset", "2/3"]));
    exits(
        repo.sluice().args(["check", "--read-data-subset", "0/3"]),
        1,
    );
}

#[test]
fn flipped_byte_is_named_by_pack_blob_and_snapshot() {
    let w = tempfile::tempdir().unwrap();
    let (repo, ids) = repo_with_two_snapshots(w.path());
    let pack = data_pack(&repo);
    let name = pack.file_name().unwrap().to_string_lossy().into_owned();
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[40] ^= 0x01;
    std::fs::write(&pack, bytes).unwrap();

    // The structure is intact; only reading the data finds the damage.
    ok(repo.sluice().arg("check"));
    let out = exits(repo.sluice().args(["check", "--read-data"]), 1);
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.contains(&format!("pack {name}")) && l.contains("blob "))
        .unwrap_or_else(|| panic!("no error naming pack {name} and a blob:\n{err}"));
    // The first blob of the pack is the file's first chunk: both snapshots
    // contain the file.
    for id in &ids {
        assert!(line.contains(&id[..8]), "snapshot {id} not named: {line}");
    }
    // restic agrees there is damage.
    let restic = repo
        .restic()
        .args(["check", "--read-data"])
        .output()
        .unwrap();
    assert!(!restic.status.success());
}

#[test]
fn deleted_pack_is_named_by_the_structure_check() {
    let w = tempfile::tempdir().unwrap();
    let (repo, ids) = repo_with_two_snapshots(w.path());
    let pack = data_pack(&repo);
    let name = pack.file_name().unwrap().to_string_lossy().into_owned();
    std::fs::remove_file(&pack).unwrap();
    let out = exits(repo.sluice().arg("check"), 1);
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.contains(&format!("pack {name}")) && l.contains("missing"))
        .unwrap_or_else(|| panic!("no error naming missing pack {name}:\n{err}"));
    for id in &ids {
        assert!(line.contains(&id[..8]), "snapshot {id} not named: {line}");
    }
}

#[test]
fn unreferenced_pack_is_a_note_not_an_error() {
    let w = tempfile::tempdir().unwrap();
    let (repo, _) = repo_with_two_snapshots(w.path());
    for f in repo.files("index") {
        std::fs::remove_file(f).unwrap();
    }
    // Without any index every tree is missing: that is an error...
    exits(repo.sluice().arg("check"), 1);
    // ...but a pack that merely no index lists is only a note.
    ok(repo.restic().args(["repair", "index"]));
    // A copy of a pack under a name no index lists: another first byte
    // (copying a pack whose name starts with 00 onto 00... would truncate it).
    let stray = data_pack(&repo);
    let original = stray.file_name().unwrap().to_string_lossy().into_owned();
    let prefix = if original.starts_with("00") {
        "01"
    } else {
        "00"
    };
    let extra = repo.path().join("data").join(prefix);
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::copy(&stray, extra.join(format!("{prefix}{}", &original[2..]))).unwrap();
    let out = ok(repo.sluice().arg("check"));
    assert!(
        stdout(&out).contains("not referenced by any index"),
        "{}",
        stdout(&out)
    );
}
