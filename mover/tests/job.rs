//! `sluice-mover job`, as mover Pods run it: configured by SLUICE_*
//! variables, result in the termination log.

mod support;

use std::fs;

use support::*;

/// The size of every regular file below `dir`, each hard-linked file once, no symlink followed.
fn regular_file_sizes(dir: &std::path::Path) -> Vec<u64> {
    use std::os::unix::fs::MetadataExt;
    fn walk(dir: &std::path::Path, seen: &mut std::collections::HashSet<u64>, out: &mut Vec<u64>) {
        for entry in fs::read_dir(dir).unwrap().flatten() {
            let meta = fs::symlink_metadata(entry.path()).unwrap();
            if meta.is_dir() {
                walk(&entry.path(), seen, out);
            } else if meta.is_file() && seen.insert(meta.ino()) {
                out.push(meta.len());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut Default::default(), &mut out);
    out
}

fn result(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn backup_then_restore_jobs_report_their_results() {
    let w = workdir();
    let data = w.path().join("data");
    make_awkward_tree(&data);
    let repo = Repo::local(&w.path().join("repo"));
    ok(repo.sluice().arg("init"));
    let log = w.path().join("termination-log");

    let run = ok(repo
        .sluice()
        .arg("job")
        .env("SLUICE_JOB_ACTIONS", "unlock,backup")
        .env("SLUICE_DATA_DIR", &data)
        .env("SLUICE_HOSTNAME", "ns-a/pvc-a")
        .env("SLUICE_TAGS", "hourly,sluice")
        .env("SLUICE_RESULT_FILE", &log));
    // The Pod's log (standard error) says what the Job did, step by step, without -v.
    let steps = stderr(&run);
    for line in [
        "mover job started actions=unlock,backup",
        "repository opened",
        "backup finished",
        "files_new=20",
    ] {
        assert!(steps.contains(line), "{line:?} in the job's log:\n{steps}");
    }
    let r = result(&log);
    assert_eq!(r["filesNew"], 20, "{r}");
    assert!(r["bytesAdded"].as_u64().unwrap() > 10 << 20);
    assert!(r["unlocked"].as_bool().unwrap());
    assert!(r.get("errorClass").is_none(), "{r}");
    let id = r["snapshotId"].as_str().unwrap().to_string();
    let snaps: serde_json::Value =
        serde_json::from_str(&stdout(&ok(repo.restic().args(["snapshots", "--json"])))).unwrap();
    assert_eq!(snaps[0]["id"], id.as_str());
    assert_eq!(snaps[0]["hostname"], "ns-a/pvc-a");
    assert_eq!(snaps[0]["tags"], serde_json::json!(["hourly", "sluice"]));

    let target = w.path().join("restored");
    fs::create_dir(&target).unwrap();
    ok(repo
        .sluice()
        .arg("job")
        .env("SLUICE_JOB_ACTIONS", "restore")
        .env("SLUICE_DATA_DIR", &target)
        .env("SLUICE_RESULT_FILE", &log));
    let r = result(&log);
    assert_eq!(r["snapshotId"], id.as_str());
    assert_same_tree(&data, &target, Compare::EXACT);
}

#[test]
fn restore_without_a_matching_snapshot_fails_unless_empty_is_allowed() {
    let w = workdir();
    let repo = Repo::local(&w.path().join("repo"));
    ok(repo.sluice().arg("init"));
    let log = w.path().join("termination-log");
    let target = w.path().join("restored");
    fs::create_dir(&target).unwrap();
    let out = fails(
        repo.sluice()
            .arg("job")
            .env("SLUICE_JOB_ACTIONS", "restore")
            .env("SLUICE_DATA_DIR", &target)
            .env("SLUICE_RESULT_FILE", &log),
    );
    assert_eq!(out.status.code(), Some(1));
    let r = result(&log);
    assert_eq!(r["errorClass"], "NoSnapshot", "{r}");
    assert!(r["message"].as_str().unwrap().contains("onMissingSnapshot"));

    ok(repo
        .sluice()
        .arg("job")
        .env("SLUICE_JOB_ACTIONS", "restore")
        .env("SLUICE_ON_MISSING_SNAPSHOT", "Empty")
        .env("SLUICE_DATA_DIR", &target)
        .env("SLUICE_RESULT_FILE", &log));
    assert!(result(&log).get("errorClass").is_none());

    // An exclusive holder (restic's `key passwd`, waiting for the new password) makes the
    // same restore fail as Locked: what it hides is never taken for "no snapshot yet".
    let mut holder = repo
        .restic()
        .args(["key", "passwd"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_for_file(&repo, "locks", std::time::Duration::from_secs(30)),
        "restic key passwd took no lock"
    );
    let out = fails(
        repo.sluice()
            .arg("job")
            .env("SLUICE_JOB_ACTIONS", "restore")
            .env("SLUICE_ON_MISSING_SNAPSHOT", "Empty")
            .env("SLUICE_RETRY_LOCK", "1s")
            .env("SLUICE_DATA_DIR", &target)
            .env("SLUICE_RESULT_FILE", &log),
    );
    drop(holder.stdin.take());
    let _ = holder.wait();
    let r = result(&log);
    assert_eq!(r["errorClass"], "Locked", "{r} {}", stderr(&out));
    assert!(
        r["message"].as_str().unwrap().contains("exclusive lock"),
        "{r}"
    );
}

#[test]
fn restore_from_a_repository_not_made_yet_leaves_the_volume_only_when_empty_is_allowed() {
    let w = workdir();
    // Never initialized: the first deployment of an application, before any backup.
    let repo = Repo::local(&w.path().join("repo"));
    let log = w.path().join("termination-log");
    let target = w.path().join("restored");
    fs::create_dir(&target).unwrap();
    let restore = |empty: bool| {
        let mut c = repo.sluice();
        c.arg("job")
            .env("SLUICE_JOB_ACTIONS", "restore")
            .env("SLUICE_DATA_DIR", &target)
            .env("SLUICE_RESULT_FILE", &log);
        if empty {
            c.env("SLUICE_ON_MISSING_SNAPSHOT", "Empty");
        }
        c
    };
    let out = fails(&mut restore(false));
    assert_ne!(out.status.code(), Some(0));
    let r = result(&log);
    assert_eq!(r["errorClass"], "RepositoryNotFound", "{r}");
    assert!(r.get("repositoryMissing").is_none(), "{r}");

    ok(&mut restore(true));
    let r = result(&log);
    assert!(r.get("errorClass").is_none(), "{r}");
    assert_eq!(r["repositoryMissing"], true, "{r}");
    assert!(r.get("snapshotId").is_none(), "{r}");
    assert_eq!(fs::read_dir(&target).unwrap().count(), 0);
    // Nothing was created: a restore never makes a repository.
    assert!(!w.path().join("repo").join("config").exists());
}

#[test]
fn restore_as_of_and_previous_pick_the_right_snapshot() {
    let w = workdir();
    let data = w.path().join("data");
    fs::create_dir_all(&data).unwrap();
    let repo = Repo::local(&w.path().join("repo"));
    ok(repo.sluice().arg("init"));
    for (i, time) in [
        "2024-01-01 10:00:00",
        "2024-01-02 10:00:00",
        "2024-01-03 10:00:00",
    ]
    .iter()
    .enumerate()
    {
        fs::write(data.join("version"), format!("v{i}")).unwrap();
        ok(repo
            .sluice()
            .current_dir(&data)
            .args(["backup", ".", "--time", time]));
    }
    let log = w.path().join("termination-log");
    let restore = |extra: &[(&str, &str)]| -> String {
        let target = tempfile::tempdir().unwrap();
        let mut c = repo.sluice();
        c.arg("job")
            .env("SLUICE_JOB_ACTIONS", "restore")
            .env("SLUICE_DATA_DIR", target.path())
            .env("SLUICE_RESULT_FILE", &log)
            .env("TZ", "UTC");
        for (k, v) in extra {
            c.env(k, v);
        }
        ok(&mut c);
        fs::read_to_string(target.path().join("version")).unwrap()
    };
    assert_eq!(restore(&[]), "v2");
    assert_eq!(restore(&[("SLUICE_RESTORE_PREVIOUS", "1")]), "v1");
    let as_of = stdout(&ok(repo.sluice().args(["snapshots", "--json"])));
    let snaps: serde_json::Value = serde_json::from_str(&as_of).unwrap();
    let second_time = snaps[1]["time"].as_str().unwrap().to_string();
    assert_eq!(restore(&[("SLUICE_RESTORE_AS_OF", &second_time)]), "v1");
    assert_eq!(
        restore(&[
            ("SLUICE_RESTORE_AS_OF", &second_time),
            ("SLUICE_RESTORE_PREVIOUS", "1")
        ]),
        "v0"
    );
}

#[test]
fn wrong_password_is_classified_for_the_operator() {
    let w = workdir();
    let mut repo = Repo::local(&w.path().join("repo"));
    ok(repo.sluice().arg("init"));
    repo.password = "wrong".into();
    let log = w.path().join("termination-log");
    let out = fails(
        repo.sluice()
            .arg("job")
            .env("SLUICE_JOB_ACTIONS", "backup")
            .env("SLUICE_DATA_DIR", w.path())
            .env("SLUICE_RESULT_FILE", &log),
    );
    assert_eq!(out.status.code(), Some(12));
    assert_eq!(result(&log)["errorClass"], "WrongPassword");
}

#[test]
fn maintenance_actions_follow_the_plan_and_are_reported() {
    let w = workdir();
    let data = w.path().join("data");
    fs::create_dir_all(&data).unwrap();
    let repo = Repo::local(&w.path().join("repo"));
    ok(repo.sluice().arg("init"));
    // Another source sharing the repository must be left alone by forget.
    ok(repo
        .sluice()
        .current_dir(&data)
        .args(["backup", ".", "--host", "other/source"]));
    let log = w.path().join("termination-log");
    for i in 0..4 {
        fs::write(data.join("counter"), random_bytes(i, 100_000)).unwrap();
        ok(repo
            .sluice()
            .arg("job")
            .env("SLUICE_JOB_ACTIONS", "unlock,backup,forget,prune,check")
            .env("SLUICE_DATA_DIR", &data)
            .env("SLUICE_HOSTNAME", "ns/src")
            .env("SLUICE_RETAIN_LAST", "2")
            .env("SLUICE_CHECK_SUBSET", "50%")
            .env("SLUICE_RESULT_FILE", &log));
        let r = result(&log);
        assert!(
            r["forgot"].as_bool().unwrap()
                && r["pruned"].as_bool().unwrap()
                && r["checked"].as_bool().unwrap(),
            "{r}"
        );
    }
    let snaps: serde_json::Value =
        serde_json::from_str(&stdout(&ok(repo.restic().args(["snapshots", "--json"])))).unwrap();
    let hosts: Vec<&str> = snaps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["hostname"].as_str().unwrap())
        .collect();
    assert_eq!(
        hosts.iter().filter(|h| **h == "ns/src").count(),
        2,
        "{hosts:?}"
    );
    assert_eq!(
        hosts.iter().filter(|h| **h == "other/source").count(),
        1,
        "{hosts:?}"
    );
    ok(repo.restic().args(["check", "--read-data"]));
}

/// One key derivation per Job, whatever its actions: the Job opens the
/// repository once and every step works on that handle (scrypt at restic's
/// calibration costs about half a second a derivation).
#[test]
fn a_job_derives_the_key_once() {
    let w = workdir();
    let data = w.path().join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("file"), random_bytes(1, 100_000)).unwrap();
    let repo = Repo::local(&w.path().join("repo"));
    ok(repo.sluice().arg("init"));
    let keys = w.path().join("repo/keys");
    assert_eq!(fs::read_dir(&keys).unwrap().count(), 1, "one key file");
    let log = w.path().join("termination-log");
    let job = |actions: &str, dir: &std::path::Path| {
        count_opens_in(&keys, || {
            ok(repo
                .sluice()
                .arg("job")
                .env("SLUICE_JOB_ACTIONS", actions)
                .env("SLUICE_DATA_DIR", dir)
                .env("SLUICE_HOSTNAME", "ns/src")
                .env("SLUICE_RETAIN_LAST", "1")
                .env("SLUICE_RESULT_FILE", &log));
        })
    };
    let backup = job("unlock,backup,forget,prune,check", &data);
    let target = w.path().join("restored");
    fs::create_dir(&target).unwrap();
    let restore = job("restore", &target);
    assert_eq!(
        (backup, restore),
        (1, 1),
        "key files read by a backup Job with every action, and by a restore Job"
    );
}

#[test]
fn a_backup_job_creates_a_missing_repository_and_a_restore_job_does_not() {
    let w = workdir();
    let data = w.path().join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("file"), b"first sync").unwrap();
    let repo = Repo::local(&w.path().join("repo"));
    let log = w.path().join("termination-log");
    let job = |actions: &str| {
        let mut c = repo.sluice();
        c.arg("job")
            .env("SLUICE_JOB_ACTIONS", actions)
            .env("SLUICE_DATA_DIR", &data)
            .env("SLUICE_RESULT_FILE", &log);
        c
    };

    let out = fails(&mut job("restore"));
    assert_eq!(out.status.code(), Some(10));
    assert_eq!(result(&log)["errorClass"], "RepositoryNotFound");
    assert!(!w.path().join("repo/config").exists());

    ok(&mut job("unlock,backup"));
    let r = result(&log);
    assert_eq!(r["initialized"], true, "{r}");
    assert_eq!(r["filesNew"], 1, "{r}");
    ok(repo.restic().args(["check", "--read-data"]));

    ok(&mut job("backup"));
    let r = result(&log);
    assert_eq!(r["initialized"], false, "{r}");
    assert_eq!(r["filesUnmodified"], 1, "{r}");
}

#[test]
fn the_first_backup_after_a_restore_reads_no_unchanged_file() {
    let w = workdir();
    let data = w.path().join("data");
    fs::create_dir_all(&data).unwrap();
    let files = 20;
    for i in 0..files {
        let p = data.join(format!("file-{i}"));
        fs::write(&p, random_bytes(i, 256 << 10)).unwrap();
        set_times(&p, 1_700_000_000 + i as i64, 123_456_789);
    }
    let repo = Repo::local(&w.path().join("repo"));
    let log = w.path().join("termination-log");
    let job = |actions: &str, dir: &std::path::Path| {
        let mut c = repo.sluice();
        c.arg("job")
            .env("SLUICE_JOB_ACTIONS", actions)
            .env("SLUICE_DATA_DIR", dir)
            .env("SLUICE_HOSTNAME", "ns/app")
            .env("SLUICE_RESULT_FILE", &log);
        ok(&mut c);
        result(&log)
    };
    job("backup", &data);

    // Into a new volume at the same path (Jobs see every volume at /data):
    // contents, mtimes, modes (and, as root, owners).
    let original = w.path().join("original");
    fs::rename(&data, &original).unwrap();
    fs::create_dir(&data).unwrap();
    job("restore", &data);
    let how = if is_root() {
        Compare::EXACT
    } else {
        Compare {
            ownership: false,
            ..Compare::EXACT
        }
    };
    assert_same_tree(&original, &data, how);
    let target = data;

    // Every file has a new inode and ctime, yet none is read again.
    let mut after_restore = serde_json::Value::Null;
    let opened = count_opens_in(&target, || after_restore = job("backup", &target));
    eprintln!(
        "first backup after a restore of {files} files ({} bytes): {opened} files opened, {} bytes added",
        files * (256 << 10),
        after_restore["bytesAdded"]
    );
    assert_eq!(
        (
            after_restore["filesUnmodified"].as_u64(),
            after_restore["filesChanged"].as_u64(),
            after_restore["filesNew"].as_u64(),
            opened
        ),
        (Some(files), Some(0), Some(0), 0),
        "{after_restore}"
    );

    // A file written since the restore is read, even at its old size and mtime.
    let changed = target.join("file-3");
    fs::write(&changed, random_bytes(99, 256 << 10)).unwrap();
    set_times(&changed, 1_700_000_003, 123_456_789);
    let mut next = serde_json::Value::Null;
    let opened = count_opens_in(&target, || next = job("backup", &target));
    assert_eq!(
        (next["filesChanged"].as_u64(), opened),
        (Some(1), 1),
        "{next}"
    );
    let restored = w.path().join("again");
    fs::create_dir(&restored).unwrap();
    job("restore", &restored);
    assert_eq!(
        fs::read(restored.join("file-3")).unwrap(),
        fs::read(&changed).unwrap()
    );
}

#[test]
fn a_restore_test_reads_the_snapshot_back_and_names_what_does_not_restore() {
    use std::os::unix::fs::PermissionsExt;
    let w = workdir();
    let data = w.path().join("data");
    make_awkward_tree(&data);
    fs::write(data.join("victim"), random_bytes(21, 3 << 20)).unwrap();
    let repo_dir = w.path().join("repo");
    let repo = Repo::local(&repo_dir);
    ok(repo.sluice().arg("init"));
    let log = w.path().join("termination-log");
    let scratch = w.path().join("scratch");
    fs::create_dir(&scratch).unwrap();
    ok(repo
        .sluice()
        .arg("job")
        .env("SLUICE_JOB_ACTIONS", "unlock,backup,verify")
        .env("SLUICE_DATA_DIR", &data)
        .env("SLUICE_VERIFY_DIR", &scratch)
        .env("SLUICE_HOSTNAME", "ns-a/pvc-a")
        .env("SLUICE_RESULT_FILE", &log));
    let r = result(&log);
    let verification = &r["verification"];
    assert_eq!(verification["snapshotId"], r["snapshotId"], "{r}");
    assert_eq!(verification["filesMismatched"], 0, "{r}");
    let regular = regular_file_sizes(&data);
    assert_eq!(verification["filesChecked"], regular.len(), "{r}");
    assert_eq!(
        verification["bytesChecked"],
        regular.iter().sum::<u64>(),
        "{r}"
    );
    assert!(verification.get("mismatches").is_none(), "{r}");
    assert_same_tree(&data, &scratch, Compare::EXACT);

    // Damage the victim's first blob in its pack, as a bad disk or a hostile writer would.
    let backend = std::sync::Arc::new(sluice_repo::backend::local::LocalBackend::new(&repo_dir));
    let mut opened = sluice_repo::Repository::open(
        backend,
        PASSWORD,
        sluice_repo::repository::Options::default(),
    )
    .unwrap();
    opened.load_index().unwrap();
    let snap = opened.find_snapshot("latest", &Default::default()).unwrap();
    let tree = opened.load_tree(&snap.snapshot.tree).unwrap();
    let victim = tree
        .nodes
        .iter()
        .find(|n| n.name_bytes() == b"victim")
        .unwrap();
    let blob = victim.content()[0];
    let loc = opened.index().get(&blob).unwrap();
    let pack = repo_dir.join(format!("data/{}/{}", &loc.pack.to_hex()[..2], loc.pack));
    fs::set_permissions(&pack, fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = fs::read(&pack).unwrap();
    bytes[loc.blob.offset as usize + 100] ^= 0x40;
    fs::write(&pack, &bytes).unwrap();

    // A run that only tests restores the host's latest snapshot, and reports the damage
    // without failing: the verdict is the operator's to record.
    let scratch = w.path().join("scratch-2");
    fs::create_dir(&scratch).unwrap();
    ok(repo
        .sluice()
        .arg("job")
        .env("SLUICE_JOB_ACTIONS", "verify")
        .env("SLUICE_VERIFY_DIR", &scratch)
        .env("SLUICE_HOSTNAME", "ns-a/pvc-a")
        .env("SLUICE_RESULT_FILE", &log));
    let r = result(&log);
    let verification = &r["verification"];
    assert_eq!(verification["snapshotId"], snap.id.to_hex().as_str(), "{r}");
    assert!(r.get("errorClass").is_none(), "{r}");
    let mismatched = verification["filesMismatched"].as_u64().unwrap();
    assert!(mismatched >= 1, "{r}");
    let lines = verification["mismatches"].as_array().unwrap();
    assert!(
        lines.iter().any(|l| {
            let l = l.as_str().unwrap();
            l.contains("victim") && l.contains(&blob.to_hex()[..8])
        }),
        "a mismatch names the file and the blob: {r}"
    );
    assert!(
        r.to_string().len() <= 4096,
        "the result fits a termination message"
    );
}
