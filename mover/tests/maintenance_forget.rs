//! `forget` against restic's own `forget --dry-run --json` on generated
//! snapshot sets: New Year ISO weeks, DST change days (Europe/Berlin),
//! future times and equal timestamps, several hosts and paths.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use support::*;

const TZ: &str = "Europe/Berlin";

/// (host, directory, local time, tag)
const SNAPSHOTS: &[(&str, &str, &str, &str)] = &[
    ("h1", "a", "2019-12-29 10:00:00", ""),
    ("h1", "a", "2019-12-30 10:00:00", "t1"),
    ("h1", "a", "2020-12-31 23:30:00", ""),
    ("h1", "a", "2021-01-01 00:30:00", ""),
    ("h1", "a", "2021-01-03 12:00:00", ""),
    ("h1", "a", "2021-01-04 08:00:00", "t1"),
    ("h1", "a", "2021-03-27 12:00:00", ""),
    ("h1", "a", "2021-03-28 01:30:00", ""),
    ("h1", "a", "2021-03-28 03:30:00", ""),
    ("h1", "a", "2021-10-31 01:30:00", ""),
    ("h1", "a", "2021-10-31 02:30:00", ""),
    ("h1", "a", "2021-10-31 03:30:00", "t1"),
    ("h1", "a", "2021-11-01 09:00:00", ""),
    ("h1", "a", "2021-11-01 09:00:00", ""),
    ("h1", "a", "2021-12-31 23:59:59", ""),
    ("h1", "a", "2022-01-01 00:00:01", ""),
    ("h1", "a", "2099-01-01 00:00:00", ""),
    ("h2", "a", "2015-12-31 12:00:00", ""),
    ("h2", "a", "2016-01-01 12:00:00", ""),
    ("h2", "a", "2016-01-03 12:00:00", "t1"),
    ("h2", "a", "2016-01-04 12:00:00", ""),
    ("h2", "a", "2021-11-01 09:00:00", ""),
    ("h2", "a", "2021-11-01 09:00:00", ""),
    ("h1", "b", "2021-03-28 00:10:00", ""),
    ("h1", "b", "2021-03-28 01:10:00", ""),
    ("h1", "b", "2021-03-28 01:50:00", ""),
    ("h1", "b", "2021-03-28 03:10:00", ""),
    ("h1", "b", "2021-03-28 04:10:00", ""),
    ("h1", "b", "2098-05-05 05:05:05", ""),
];

const POLICIES: &[&[&str]] = &[
    &["--keep-last", "3"],
    &["--keep-daily", "5", "--keep-weekly", "3"],
    &[
        "--keep-hourly",
        "4",
        "--keep-monthly",
        "6",
        "--keep-yearly",
        "2",
    ],
    &["--keep-weekly", "10", "--group-by", "host"],
    &["--keep-within", "1y2m"],
    &["--keep-within", "2d5h", "--keep-last", "1"],
    &["--keep-within-daily", "1m", "--keep-within-weekly", "1y"],
    &["--keep-daily", "2", "--keep-tag", "t1"],
    &["--keep-last", "2", "--host", "h1"],
    &["--keep-monthly", "unlimited", "--tag", "t1"],
    &["--keep-yearly", "3", "--group-by", "paths,tags"],
];

/// Makes the snapshot set, alternating restic and sluice-mover as writer.
fn make_repo(root: &Path) -> Repo {
    let repo = Repo::local(&root.join("repo"));
    ok(repo.restic().arg("init"));
    for dir in ["a", "b"] {
        let d = root.join(dir);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("f"), dir).unwrap();
    }
    for (i, (host, dir, time, tag)) in SNAPSHOTS.iter().enumerate() {
        let path = root.join(dir);
        let mut c = if i % 2 == 0 {
            repo.restic()
        } else {
            repo.sluice()
        };
        c.env("TZ", TZ)
            .args(["backup", "--host", host, "--time", time])
            .arg(&path);
        if !tag.is_empty() {
            c.args(["--tag", tag]);
        }
        ok(&mut c);
    }
    repo
}

/// group key → (kept ids in order, removed ids sorted, matches per kept id),
/// with every id replaced by its snapshot's time: restic orders snapshots
/// with equal times arbitrarily, so tied snapshots are interchangeable.
type Groups = BTreeMap<String, (Vec<String>, Vec<String>, BTreeMap<String, Value>)>;

/// Snapshot id → time, from restic.
fn times(repo: &Repo) -> BTreeMap<String, String> {
    let out = ok(repo.restic().args(["snapshots", "--json", "--no-lock"]));
    let v: Value = serde_json::from_slice(&out.stdout).expect("snapshots JSON");
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_string(),
                s["time"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn groups(stdout: &[u8], times: &BTreeMap<String, String>) -> Groups {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with('['))
        .unwrap_or_else(|| panic!("no JSON array in forget output:\n{text}"));
    let v: Value = serde_json::from_str(line).expect("forget JSON");
    let ids = |list: &Value| -> Vec<String> {
        list.as_array()
            .map(|a| {
                a.iter()
                    .map(|s| times[s["id"].as_str().unwrap()].clone())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = Groups::new();
    for g in v.as_array().unwrap() {
        let key = format!("tags={} host={} paths={}", g["tags"], g["host"], g["paths"]);
        let keep = ids(&g["keep"]);
        let mut remove = ids(&g["remove"]);
        remove.sort();
        let mut reasons = BTreeMap::new();
        for r in g["reasons"].as_array().into_iter().flatten() {
            reasons.insert(
                times[r["snapshot"]["id"].as_str().unwrap()].clone(),
                r["matches"].clone(),
            );
        }
        out.insert(key, (keep, remove, reasons));
    }
    out
}

#[test]
fn forget_decides_like_restic() {
    let w = tempfile::tempdir().unwrap();
    let repo = make_repo(w.path());
    assert_eq!(repo.snapshot_ids().len(), SNAPSHOTS.len());
    let times = times(&repo);
    for policy in POLICIES {
        let theirs = ok(repo
            .restic()
            .env("TZ", TZ)
            .args(["forget", "--dry-run", "--json"])
            .args(*policy));
        let ours = ok(repo
            .sluice()
            .env("TZ", TZ)
            .args(["forget", "--dry-run", "--json"])
            .args(*policy));
        let (theirs, ours) = (groups(&theirs.stdout, &times), groups(&ours.stdout, &times));
        assert!(!theirs.is_empty(), "restic formed no groups for {policy:?}");
        assert_eq!(
            ours, theirs,
            "policy {policy:?}: sluice (left) and restic (right) disagree"
        );
    }
    assert_eq!(
        repo.snapshot_ids().len(),
        SNAPSHOTS.len(),
        "--dry-run removed snapshots"
    );

    // A real forget removes exactly what restic said it would.
    let policy = ["--keep-daily", "5", "--keep-weekly", "3"];
    let plan = groups(
        &ok(repo
            .restic()
            .env("TZ", TZ)
            .args(["forget", "--dry-run", "--json"])
            .args(policy))
        .stdout,
        &times,
    );
    let mut expected: Vec<String> = plan
        .values()
        .flat_map(|(keep, _, _)| keep.clone())
        .collect();
    expected.sort();
    let removed: usize = plan.values().map(|(_, r, _)| r.len()).sum();
    assert!(
        removed > 0,
        "policy removes nothing: the test would prove nothing"
    );
    ok(repo.sluice().env("TZ", TZ).arg("forget").args(policy));
    let mut kept: Vec<String> = repo
        .snapshot_ids()
        .iter()
        .map(|id| times[id].clone())
        .collect();
    kept.sort();
    assert_eq!(kept, expected);
    ok(repo.restic().args(["check"]));
}

#[test]
fn malformed_keep_within_is_rejected_before_any_work() {
    let w = tempfile::tempdir().unwrap();
    // No repository exists: a rejection that names the flag proves the
    // value was checked before the repository was even opened.
    let repo = Repo::local(&w.path().join("absent"));
    for bad in ["1x", "d", "5", "-1d", "1y2"] {
        let out = exits(
            repo.sluice()
                .arg("forget")
                .arg(format!("--keep-within={bad}")),
            1,
        );
        let err = stderr(&out);
        assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
        assert!(
            err.contains("--keep-within") && err.contains(bad),
            "unclear error: {err}"
        );
    }
    let out = exits(
        repo.sluice().args([
            "forget",
            "--keep-last",
            "1",
            "--prune",
            "--max-unused",
            "abc",
        ]),
        1,
    );
    assert!(stderr(&out).contains("--max-unused"), "{}", stderr(&out));
}
