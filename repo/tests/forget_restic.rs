//! The forget policy against the real restic: snapshots made by
//! `restic backup --time` in several time zones (New Year in ISO weeks, DST
//! changes, the future, equal timestamps, two hosts and two paths), then
//! `restic forget --dry-run --json` compared with [`apply_policy`] per group.
//!
//! Needs restic 0.16 or newer (the "oldest snapshot" rule); `e2e/tools.sh
//! restic` builds one.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use jiff::{Timestamp, ToSpan, Zoned};
use serde::Deserialize;
use sluice_repo::forget::{
    ForgetCandidate, GroupBy, GroupKey, KeepDuration, RetainPolicy, apply_policy, group_snapshots,
    parse_keep_count,
};
use sluice_testkit::Tool;

#[derive(Deserialize, Debug, Clone)]
struct ResticSnapshot {
    time: String,
    hostname: String,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    tags: Option<Vec<String>>,
}

struct Snap {
    restic: ResticSnapshot,
    time: Zoned,
    tags: Vec<String>,
}

impl ForgetCandidate for Snap {
    fn time(&self) -> &Zoned {
        &self.time
    }
    fn hostname(&self) -> &str {
        &self.restic.hostname
    }
    fn paths(&self) -> &[String] {
        &self.restic.paths
    }
    fn tags(&self) -> &[String] {
        &self.tags
    }
}

/// A restic time string as a zoned time in the offset it was written with.
fn zoned(time: &str) -> Zoned {
    let ts: Timestamp = time
        .parse()
        .unwrap_or_else(|e| panic!("restic time {time}: {e}"));
    let offset = jiff::fmt::temporal::DateTimeParser::new()
        .parse_pieces(time)
        .ok()
        .and_then(|p| p.offset().map(|o| o.to_numeric_offset()))
        .unwrap_or_else(|| panic!("restic time {time} has no offset"));
    ts.to_zoned(jiff::tz::TimeZone::fixed(offset))
}

#[derive(Deserialize, Debug)]
struct ResticReason {
    snapshot: ResticSnapshot,
    matches: Vec<String>,
    /// restic 0.19 no longer prints counters; compared when present.
    #[serde(default)]
    counters: Option<BTreeMap<String, i32>>,
}

#[derive(Deserialize, Debug)]
struct ResticGroup {
    tags: Option<Vec<String>>,
    host: String,
    paths: Option<Vec<String>>,
    #[serde(default)]
    keep: Option<Vec<ResticSnapshot>>,
    #[serde(default)]
    remove: Option<Vec<ResticSnapshot>>,
    #[serde(default)]
    reasons: Option<Vec<ResticReason>>,
}

struct Restic {
    binary: std::path::PathBuf,
    repo: tempfile::TempDir,
}

impl Restic {
    fn command(&self, tz: &str) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.env("RESTIC_REPOSITORY", self.repo.path())
            .env("RESTIC_PASSWORD", "forget-test")
            .env("TZ", tz)
            .arg("--no-cache");
        cmd
    }

    fn run(&self, tz: &str, args: &[&str]) -> Vec<u8> {
        let output = self.command(tz).args(args).output().expect("run restic");
        assert!(
            output.status.success(),
            "restic {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }
}

fn restic() -> Restic {
    let binary = Tool::Restic.path();
    let version = Command::new(&binary)
        .arg("version")
        .output()
        .expect("run restic version");
    let text = String::from_utf8_lossy(&version.stdout).to_string();
    let numbers: Vec<u32> = text
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split('.')
        .filter_map(|n| n.parse().ok())
        .collect();
    assert!(
        numbers.as_slice() >= [0, 16].as_slice(),
        "{} is {text:?}; forget semantics need restic >= 0.16: run e2e/tools.sh restic (or set SLUICE_RESTIC)",
        binary.display()
    );
    let restic = Restic {
        binary,
        repo: tempfile::tempdir().expect("temp dir"),
    };
    restic.run("UTC", &["init", "--quiet"]);
    restic
}

/// A snapshot to create: local wall time `time` in zone `tz`.
struct Plan {
    tz: &'static str,
    time: String,
    host: &'static str,
    second_path: bool,
    tags: &'static str,
}

fn plan(tz: &'static str, time: impl Into<String>) -> Plan {
    Plan {
        tz,
        time: time.into(),
        host: "alpha",
        second_path: false,
        tags: "",
    }
}

fn snapshot_plans() -> Vec<Plan> {
    let now = Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC);
    let rel = |span: jiff::Span| {
        now.checked_add(span)
            .unwrap()
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    let mut plans = vec![
        // New Year: 2019-12-30 is ISO 2020-W01; 2021-01-03 is still 2020-W53.
        plan("Europe/Berlin", "2019-12-29 12:00:00"),
        plan("Europe/Berlin", "2019-12-30 12:00:00"),
        plan("Europe/Berlin", "2020-12-27 23:30:00"),
        plan("Europe/Berlin", "2020-12-28 00:30:00"),
        plan("Europe/Berlin", "2021-01-01 00:10:00"),
        plan("America/New_York", "2020-12-31 23:50:00"),
        plan("Europe/Berlin", "2021-01-03 23:59:00"),
        plan("Europe/Berlin", "2021-01-04 00:01:00"),
        // DST in Berlin: spring forward at 02:00, fall back at 03:00.
        plan("Europe/Berlin", "2021-03-28 01:30:00"),
        plan("Europe/Berlin", "2021-03-28 03:30:00"),
        plan("Europe/Berlin", "2021-10-31 01:30:00"),
        plan("Europe/Berlin", "2021-10-31 03:30:00"),
        plan("America/New_York", "2021-11-07 01:30:00"),
        // Recent history, measured from now, for the keep-within rules.
        plan("UTC", rel((-1).hours())),
        plan("UTC", rel((-5).hours())),
        plan("UTC", rel((-30).hours())),
        plan("Europe/Berlin", rel((-3).days())),
        plan("UTC", rel((-9).days())),
        plan("UTC", rel((-35).days())),
        plan("UTC", rel((-70).days())),
        // The future must not become "latest".
        plan("UTC", rel(30.days())),
        plan("UTC", rel(400.days())),
    ];
    // Equal timestamps. Equal snapshots only: restic's order among them is
    // its load order, which varies, so they must be interchangeable.
    for _ in 0..3 {
        plans.push(plan("UTC", "2022-05-05 05:05:05"));
    }
    // Tags, and other hosts and paths.
    plans.push(Plan {
        tags: "foo",
        ..plan("UTC", "2022-05-04 05:05:05")
    });
    plans.push(Plan {
        tags: "foo,bar",
        ..plan("UTC", "2022-05-03 05:05:05")
    });
    plans.push(Plan {
        tags: "bar",
        ..plan("Europe/Berlin", "2022-04-03 05:05:05")
    });
    plans.push(Plan {
        host: "beta",
        ..plan("UTC", "2022-05-05 05:05:05")
    });
    plans.push(Plan {
        host: "beta",
        ..plan("UTC", "2022-05-06 05:05:05")
    });
    plans.push(Plan {
        second_path: true,
        ..plan("UTC", "2022-05-07 05:05:05")
    });
    plans.push(Plan {
        second_path: true,
        tags: "foo",
        ..plan("UTC", "2022-05-08 05:05:05")
    });
    plans
}

fn create_snapshots(restic: &Restic, data: &Path) {
    let first = data.join("one");
    let second = data.join("two");
    for dir in [&first, &second] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("file"), b"forget test").unwrap();
    }
    for plan in snapshot_plans() {
        let path = if plan.second_path { &second } else { &first };
        let mut args = vec![
            "backup", "--quiet", "--host", plan.host, "--time", &plan.time,
        ];
        if !plan.tags.is_empty() {
            args.extend(["--tag", plan.tags]);
        }
        let path = path.to_str().unwrap();
        args.push(path);
        restic.run(plan.tz, &args);
    }
}

fn policy_args(args: &[&str]) -> (RetainPolicy, GroupBy) {
    let mut policy = RetainPolicy::default();
    let mut group_by = GroupBy::default();
    for pair in args.chunks(2) {
        let (flag, value) = (pair[0], pair[1]);
        let count = || parse_keep_count(value).unwrap();
        let duration = || value.parse::<KeepDuration>().unwrap();
        match flag {
            "--keep-last" => policy.last = count(),
            "--keep-hourly" => policy.hourly = count(),
            "--keep-daily" => policy.daily = count(),
            "--keep-weekly" => policy.weekly = count(),
            "--keep-monthly" => policy.monthly = count(),
            "--keep-yearly" => policy.yearly = count(),
            "--keep-within" => policy.within = duration(),
            "--keep-within-hourly" => policy.within_hourly = duration(),
            "--keep-within-daily" => policy.within_daily = duration(),
            "--keep-within-weekly" => policy.within_weekly = duration(),
            "--keep-within-monthly" => policy.within_monthly = duration(),
            "--keep-within-yearly" => policy.within_yearly = duration(),
            "--keep-tag" => policy
                .tags
                .push(value.split(',').map(str::to_owned).collect()),
            "--group-by" => group_by = value.parse().unwrap(),
            other => panic!("unknown test flag {other}"),
        }
    }
    (policy, group_by)
}

/// What must agree for one group: kept snapshots with their reasons, and
/// removed ones, each sorted, since snapshots with equal times and tags are
/// interchangeable.
type Verdict = (
    Vec<(
        Timestamp,
        Vec<String>,
        Vec<String>,
        Option<BTreeMap<String, i32>>,
    )>,
    Vec<(Timestamp, Vec<String>)>,
);

fn counters_map(c: sluice_repo::forget::Counters) -> BTreeMap<String, i32> {
    [
        ("last", c.last),
        ("hourly", c.hourly),
        ("daily", c.daily),
        ("weekly", c.weekly),
        ("monthly", c.monthly),
        ("yearly", c.yearly),
    ]
    .into_iter()
    .filter(|(_, v)| *v != 0)
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn tags_of(s: &ResticSnapshot) -> Vec<String> {
    let mut tags = s.tags.clone().unwrap_or_default();
    tags.sort();
    tags
}

#[test]
fn agrees_with_restic_forget() {
    let restic = restic();
    let data = tempfile::tempdir().unwrap();
    create_snapshots(&restic, data.path());

    let listed: Vec<ResticSnapshot> =
        serde_json::from_slice(&restic.run("UTC", &["snapshots", "--json"]))
            .expect("restic snapshots --json");
    assert_eq!(listed.len(), snapshot_plans().len());
    let snaps: Vec<Snap> = listed
        .iter()
        .map(|s| Snap {
            restic: s.clone(),
            time: zoned(&s.time),
            tags: s.tags.clone().unwrap_or_default(),
        })
        .collect();

    let policies: &[&[&str]] = &[
        &[
            "--keep-last",
            "2",
            "--keep-hourly",
            "3",
            "--keep-daily",
            "4",
            "--keep-weekly",
            "5",
            "--keep-monthly",
            "3",
            "--keep-yearly",
            "2",
        ],
        &["--keep-weekly", "8"],
        &["--keep-weekly", "unlimited", "--keep-daily", "2"],
        &["--keep-hourly", "6", "--group-by", "host"],
        &["--keep-daily", "unlimited", "--group-by", ""],
        &["--keep-within", "1m2d5h"],
        &["--keep-within", "2d", "--keep-last", "1"],
        &[
            "--keep-within-hourly",
            "2d",
            "--keep-within-daily",
            "1m",
            "--keep-within-weekly",
            "1y",
        ],
        &["--keep-within-monthly", "6y", "--keep-within-yearly", "10y"],
        &[
            "--keep-tag",
            "foo",
            "--keep-tag",
            "bar,foo",
            "--keep-last",
            "1",
        ],
        &["--keep-monthly", "4", "--group-by", "tags"],
        &[
            "--keep-yearly",
            "unlimited",
            "--group-by",
            "host,paths,tags",
        ],
    ];

    let mut failures = Vec::new();
    for args in policies {
        let (policy, group_by) = policy_args(args);
        let mut cmd_args = vec!["forget", "--dry-run", "--json"];
        cmd_args.extend_from_slice(args);
        let stdout = restic.run("UTC", &cmd_args);
        let groups: Vec<ResticGroup> = serde_json::from_slice(&stdout).unwrap_or_else(|e| {
            let text = String::from_utf8_lossy(&stdout);
            panic!(
                "restic forget {args:?} printed unexpected JSON ({e}): {}",
                &text[..text.len().min(2000)]
            )
        });

        let ours = group_snapshots(&snaps, group_by);
        assert_eq!(groups.len(), ours.len(), "{args:?}: group count");
        let now = Timestamp::now();
        for group in &groups {
            let key = GroupKey {
                tags: group.tags.clone(),
                host: group.host.clone(),
                paths: group.paths.clone(),
            };
            let members = &ours
                .iter()
                .find(|(k, _)| *k == key)
                .unwrap_or_else(|| panic!("{args:?}: restic group {key:?} not found among ours"))
                .1;
            let outcome = apply_policy(members, &policy, now);
            let prints_counters = group.reasons.iter().flatten().any(|r| r.counters.is_some());

            let mut theirs: Verdict = (
                group
                    .reasons
                    .iter()
                    .flatten()
                    .map(|r| {
                        (
                            zoned(&r.snapshot.time).timestamp(),
                            tags_of(&r.snapshot),
                            r.matches.clone(),
                            r.counters.clone(),
                        )
                    })
                    .collect(),
                group
                    .remove
                    .iter()
                    .flatten()
                    .map(|s| (zoned(&s.time).timestamp(), tags_of(s)))
                    .collect(),
            );
            let mut mine: Verdict = (
                outcome
                    .keep
                    .iter()
                    .zip(&outcome.reasons)
                    .map(|(s, r)| {
                        (
                            s.time.timestamp(),
                            tags_of(&s.restic),
                            r.matches.clone(),
                            prints_counters.then(|| counters_map(r.counters)),
                        )
                    })
                    .collect(),
                outcome
                    .remove
                    .iter()
                    .map(|s| (s.time.timestamp(), tags_of(&s.restic)))
                    .collect(),
            );
            assert_eq!(
                group.keep.iter().flatten().count(),
                theirs.0.len(),
                "restic gives a reason per kept snapshot"
            );
            for v in [&mut theirs, &mut mine] {
                v.0.sort();
                v.1.sort();
            }
            if theirs != mine {
                failures.push(format!(
                    "{args:?} group {key:?}:\n restic keep {:?}\n ours   keep {:?}\n restic remove {:?}\n ours   remove {:?}",
                    theirs.0, mine.0, theirs.1, mine.1
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} groups differ from restic:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
