//! The forget policy against restic's own golden files
//! (`policy_keep_snapshots_N` in testdata/restic/forget-golden).
//!
//! restic produced them from one list of 103 snapshots (its
//! `TestApplyPolicy`) and 40 policies in a fixed order; both are rebuilt here
//! as data, and every kept snapshot, its order and its reasons must match.

use std::path::PathBuf;

use jiff::{Timestamp, Zoned};
use serde::Deserialize;
use sluice_repo::forget::{Counters, ForgetCandidate, KeepDuration, RetainPolicy, apply_policy};

#[derive(Debug)]
struct Snap {
    time: Zoned,
    tags: Vec<String>,
    paths: Vec<String>,
}

impl ForgetCandidate for Snap {
    fn time(&self) -> &Zoned {
        &self.time
    }
    fn hostname(&self) -> &str {
        ""
    }
    fn paths(&self) -> &[String] {
        &self.paths
    }
    fn tags(&self) -> &[String] {
        &self.tags
    }
}

/// restic's test snapshots, in its order (which decides ties), all UTC.
/// Each line: time, then tags after `#`, then paths after `@`.
const SNAPSHOTS: &str = "
2014-09-01 10:20:30
2014-09-02 10:20:30
2014-09-05 10:20:30
2014-09-06 10:20:30
2014-09-08 10:20:30
2014-09-09 10:20:30
2014-09-10 10:20:30
2014-09-11 10:20:30
2014-09-20 10:20:30
2014-09-22 10:20:30
2014-08-08 10:20:30
2014-08-10 10:20:30
2014-08-12 10:20:30
2014-08-13 10:20:30
2014-08-13 10:20:30.1
2014-08-15 10:20:30
2014-08-18 10:20:30
2014-08-20 10:20:30
2014-08-21 10:20:30
2014-08-22 10:20:30
2014-10-01 10:20:30 #foo
2014-10-02 10:20:30 #foo
2014-10-05 10:20:30 #foo
2014-10-06 10:20:30 #foo
2014-10-08 10:20:30 #foo
2014-10-09 10:20:30 #foo
2014-10-10 10:20:30 #foo
2014-10-11 10:20:30 #foo
2014-10-20 10:20:30 #foo
2014-10-22 10:20:30 #foo
2014-11-08 10:20:30 #foo
2014-11-10 10:20:30 #foo
2014-11-12 10:20:30 #foo
2014-11-13 10:20:30 #foo
2014-11-13 10:20:30.1 #bar
2014-11-15 10:20:30 #foo,bar
2014-11-18 10:20:30
2014-11-20 10:20:30
2014-11-21 10:20:30
2014-11-22 10:20:30
2015-09-01 10:20:30
2015-09-02 10:20:30
2015-09-05 10:20:30
2015-09-06 10:20:30
2015-09-08 10:20:30
2015-09-09 10:20:30
2015-09-10 10:20:30
2015-09-11 10:20:30
2015-09-20 10:20:30
2015-09-22 10:20:30
2015-08-08 10:20:30
2015-08-10 10:20:30
2015-08-12 10:20:30
2015-08-13 10:20:30
2015-08-13 10:20:30.1
2015-08-15 10:20:30
2015-08-18 10:20:30
2015-08-20 10:20:30
2015-08-21 10:20:30
2015-08-22 10:20:30
2015-10-01 10:20:30
2015-10-02 10:20:30
2015-10-05 10:20:30
2015-10-06 10:20:30
2015-10-08 10:20:30
2015-10-09 10:20:30
2015-10-10 10:20:30
2015-10-11 10:20:30
2015-10-20 10:20:30
2015-10-22 10:20:30
2015-10-22 10:20:30
2015-10-22 10:20:30 #foo,bar
2015-10-22 10:20:30 #foo,bar
2015-10-22 10:20:30 #foo,bar @path1,path2
2015-11-08 10:20:30
2015-11-10 10:20:30
2015-11-12 10:20:30
2015-11-13 10:20:30
2015-11-13 10:20:30.1
2015-11-15 10:20:30
2015-11-18 10:20:30
2015-11-20 10:20:30
2015-11-21 10:20:30
2015-11-22 10:20:30
2016-01-01 01:02:03
2016-01-01 01:03:03
2016-01-01 07:08:03
2016-01-03 07:02:03
2016-01-04 10:23:03
2016-01-04 11:23:03
2016-01-04 12:23:03
2016-01-04 12:24:03
2016-01-04 12:28:03
2016-01-04 12:30:03
2016-01-04 16:23:03
2016-01-05 09:02:03
2016-01-06 08:02:03
2016-01-07 10:02:03
2016-01-08 20:02:03
2016-01-09 21:02:03
2016-01-12 21:02:03
2016-01-12 21:08:03
2016-01-18 12:02:03
";

/// restic's test policies, golden file N being line N. Space-separated
/// `rule=value`; `tags=a,b` adds one tag list; `-` is the empty policy.
const POLICIES: &str = "
-
last=10
last=15
last=99
last=200
hourly=20
daily=3
daily=10
daily=30
last=5 daily=5
last=2 daily=10
weekly=2
weekly=4
daily=3 weekly=4
monthly=6
daily=2 weekly=2 monthly=6
yearly=10
daily=7 weekly=2 monthly=3 yearly=10
tags=foo
tags=foo,bar
tags=foo tags=bar
within=1d
within=2d
within=7d
within=1m
within=1m14d
within=1y1d1m
within=13d23h
within=2m2h
within=1y2m3d3h
within-hourly=1y2m3d3h
within-daily=1y2m3d3h
within-weekly=1y2m3d3h
within-monthly=1y2m3d3h
within-yearly=1y2m3d3h
within=1h within-hourly=1d within-daily=7d within-weekly=1m within-monthly=1y within-yearly=9999y
last=-1
last=-1 hourly=-1
hourly=-1
daily=3 weekly=2 monthly=-1 yearly=-1
";

fn list(text: &str) -> Vec<String> {
    text.split(',').map(str::to_owned).collect()
}

fn snapshots() -> Vec<Snap> {
    SNAPSHOTS
        .lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let (line, paths) = line
                .split_once(" @")
                .map_or((line, vec![]), |(l, p)| (l, list(p)));
            let (time, tags) = line
                .split_once(" #")
                .map_or((line, vec![]), |(l, t)| (l, list(t)));
            let time: Zoned = format!("{}Z[UTC]", time.replace(' ', "T"))
                .parse()
                .expect("test time");
            Snap { time, tags, paths }
        })
        .collect()
}

fn policies() -> Vec<RetainPolicy> {
    POLICIES
        .lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let mut p = RetainPolicy::default();
            for rule in line.split(' ').filter(|r| *r != "-") {
                let (name, value) = rule.split_once('=').expect("rule=value");
                let duration = || value.parse::<KeepDuration>().expect("test duration");
                let count = || value.parse::<i32>().expect("test count");
                match name {
                    "last" => p.last = count(),
                    "hourly" => p.hourly = count(),
                    "daily" => p.daily = count(),
                    "weekly" => p.weekly = count(),
                    "monthly" => p.monthly = count(),
                    "yearly" => p.yearly = count(),
                    "tags" => p.tags.push(list(value)),
                    "within" => p.within = duration(),
                    "within-hourly" => p.within_hourly = duration(),
                    "within-daily" => p.within_daily = duration(),
                    "within-weekly" => p.within_weekly = duration(),
                    "within-monthly" => p.within_monthly = duration(),
                    "within-yearly" => p.within_yearly = duration(),
                    other => panic!("unknown test rule {other}"),
                }
            }
            p
        })
        .collect()
}

#[derive(Deserialize, Debug, PartialEq)]
struct GoldenSnapshot {
    time: Timestamp,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    paths: Option<Vec<String>>,
}

#[derive(Deserialize, Debug, Default, PartialEq)]
struct GoldenCounters {
    #[serde(default)]
    last: i32,
    #[serde(default)]
    hourly: i32,
    #[serde(default)]
    daily: i32,
    #[serde(default)]
    weekly: i32,
    #[serde(default)]
    monthly: i32,
    #[serde(default)]
    yearly: i32,
}

#[derive(Deserialize, Debug)]
struct GoldenReason {
    snapshot: GoldenSnapshot,
    matches: Vec<String>,
    counters: GoldenCounters,
}

#[derive(Deserialize, Debug)]
struct Golden {
    keep: Option<Vec<GoldenSnapshot>>,
    #[serde(default)]
    reasons: Vec<GoldenReason>,
}

fn golden_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/restic/forget-golden");
    assert!(
        dir.is_dir(),
        "{} missing: restic's forget golden files belong in testdata/restic (see its README.md)",
        dir.display()
    );
    dir
}

fn view(s: &Snap) -> GoldenSnapshot {
    let non_empty = |l: &[String]| (!l.is_empty()).then(|| l.to_vec());
    GoldenSnapshot {
        time: s.time.timestamp(),
        tags: non_empty(&s.tags),
        paths: non_empty(&s.paths),
    }
}

fn counters(c: Counters) -> GoldenCounters {
    GoldenCounters {
        last: c.last,
        hourly: c.hourly,
        daily: c.daily,
        weekly: c.weekly,
        monthly: c.monthly,
        yearly: c.yearly,
    }
}

#[test]
fn every_golden_file_matches() {
    let snapshots = snapshots();
    assert_eq!(snapshots.len(), 103);
    let refs: Vec<&Snap> = snapshots.iter().collect();
    let policies = policies();
    assert_eq!(policies.len(), 40);
    let now = Timestamp::now();
    let mut failures = Vec::new();
    for (n, policy) in policies.iter().enumerate() {
        let path = golden_dir().join(format!("policy_keep_snapshots_{n}"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let golden: Golden =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let outcome = apply_policy(&refs, policy, now);
        assert_eq!(outcome.keep.len() + outcome.remove.len(), snapshots.len());

        let keep: Vec<GoldenSnapshot> = outcome.keep.iter().map(|s| view(s)).collect();
        let want_keep = golden.keep.unwrap_or_default();
        if keep != want_keep {
            failures.push(format!(
                "policy {n} ({policy:?}): keep differs\n want {want_keep:?}\n got  {keep:?}"
            ));
            continue;
        }
        assert_eq!(
            golden.reasons.len(),
            outcome.reasons.len(),
            "policy {n}: reason count"
        );
        for (i, (want, (got, snap))) in golden
            .reasons
            .iter()
            .zip(outcome.reasons.iter().zip(&outcome.keep))
            .enumerate()
        {
            let got_view = (view(snap), got.matches.clone(), counters(got.counters));
            let want_view = (
                GoldenSnapshot {
                    time: want.snapshot.time,
                    tags: want.snapshot.tags.clone(),
                    paths: want.snapshot.paths.clone(),
                },
                want.matches.clone(),
                GoldenCounters { ..want.counters },
            );
            if got_view != want_view {
                failures.push(format!(
                    "policy {n} reason {i}:\n want {want_view:?}\n got  {got_view:?}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
