//! Edge cases of restic's forget policy that its golden files do not cover:
//! duration parsing, Go's calendar normalisation, ISO weeks at New Year,
//! per-snapshot offsets, future snapshots, ties and grouping.

use jiff::{Timestamp, Zoned};
use sluice_repo::forget::{
    DurationError, ForgetCandidate, GroupBy, KeepDuration, RetainPolicy, apply_policy,
    group_snapshots, parse_keep_count,
};

#[derive(Debug, PartialEq)]
struct Snap {
    name: &'static str,
    time: Zoned,
    host: String,
    paths: Vec<String>,
    tags: Vec<String>,
}

impl ForgetCandidate for Snap {
    fn time(&self) -> &Zoned {
        &self.time
    }
    fn hostname(&self) -> &str {
        &self.host
    }
    fn paths(&self) -> &[String] {
        &self.paths
    }
    fn tags(&self) -> &[String] {
        &self.tags
    }
}

/// A snapshot named `name` at an RFC 3339 time (its offset is kept).
fn snap(name: &'static str, time: &str) -> Snap {
    let ts: Timestamp = time.parse().expect("test time");
    let offset = jiff::fmt::temporal::DateTimeParser::new()
        .parse_pieces(time)
        .expect("test time")
        .offset()
        .map(|o| o.to_numeric_offset())
        .expect("test time has an offset");
    Snap {
        name,
        time: ts.to_zoned(jiff::tz::TimeZone::fixed(offset)),
        host: "h".into(),
        paths: vec!["/data".into()],
        tags: vec![],
    }
}

fn names(list: &[&Snap]) -> Vec<&'static str> {
    list.iter().map(|s| s.name).collect()
}

fn far_future() -> Timestamp {
    "2100-01-01T00:00:00Z".parse().unwrap()
}

#[test]
fn parses_restic_durations() {
    let d: KeepDuration = "1y2m3d4h".parse().unwrap();
    assert_eq!(
        d,
        KeepDuration {
            years: 1,
            months: 2,
            days: 3,
            hours: 4
        }
    );
    assert_eq!(" 2d ".parse::<KeepDuration>().unwrap().days, 2);
    assert!("".parse::<KeepDuration>().unwrap().is_zero());
    assert_eq!(
        "1y1d1m".parse::<KeepDuration>().unwrap().to_string(),
        "1y1m1d"
    );
    assert_eq!(
        "13d23h".parse::<KeepDuration>().unwrap().to_string(),
        "13d23h"
    );
}

#[test]
fn rejects_malformed_durations() {
    assert!(matches!(
        "5".parse::<KeepDuration>(),
        Err(DurationError::MissingUnit(..))
    ));
    assert!(matches!(
        "d".parse::<KeepDuration>(),
        Err(DurationError::MissingNumber(..))
    ));
    assert!(matches!(
        "1x".parse::<KeepDuration>(),
        Err(DurationError::UnknownUnit(_, 'x'))
    ));
    assert!(matches!(
        "1d2".parse::<KeepDuration>(),
        Err(DurationError::MissingUnit(..))
    ));
    assert!(matches!(
        "-1d".parse::<KeepDuration>(),
        Err(DurationError::Negative(..))
    ));
    assert!(matches!(
        "99999999999d".parse::<KeepDuration>(),
        Err(DurationError::TooLarge(..))
    ));
    let message = "2 days".parse::<KeepDuration>().unwrap_err().to_string();
    assert!(
        message.contains("\"2 days\"") && message.contains("1y2m3d4h"),
        "{message}"
    );
}

#[test]
fn parses_keep_counts() {
    assert_eq!(parse_keep_count("7"), Ok(7));
    assert_eq!(parse_keep_count("unlimited"), Ok(-1));
    assert!(parse_keep_count("-1").is_err());
    assert!(parse_keep_count("many").is_err());
}

#[test]
fn keep_within_months_normalise_like_go() {
    // 31 March minus one month is "31 February", which Go rolls to 2 March.
    let list = [
        snap("latest", "2016-03-31T12:00:00Z"),
        snap("after-bound", "2016-03-02T12:00:01Z"),
        snap("on-bound", "2016-03-02T12:00:00Z"),
        snap("feb-29", "2016-02-29T13:00:00Z"),
    ];
    let refs: Vec<&Snap> = list.iter().collect();
    let policy = RetainPolicy {
        within: "1m".parse().unwrap(),
        ..Default::default()
    };
    let outcome = apply_policy(&refs, &policy, far_future());
    assert_eq!(names(&outcome.keep), ["latest", "after-bound"]);
    assert_eq!(outcome.reasons[0].matches, ["within 1m"]);
}

#[test]
fn keep_within_hours_are_absolute() {
    let list = [
        snap("latest", "2021-03-10T05:00:00+01:00"),
        snap("edge", "2021-03-10T02:00:00.000000001+01:00"),
    ];
    let refs: Vec<&Snap> = list.iter().collect();
    let policy = RetainPolicy {
        within: "3h".parse().unwrap(),
        ..Default::default()
    };
    assert_eq!(
        names(&apply_policy(&refs, &policy, far_future()).keep),
        ["latest", "edge"]
    );
}

#[test]
fn future_snapshots_do_not_move_latest() {
    let now: Timestamp = "2022-06-10T00:00:00Z".parse().unwrap();
    let list = [
        snap("future", "2030-01-01T00:00:00Z"),
        snap("latest", "2022-06-09T00:00:00Z"),
        snap("day-before", "2022-06-08T00:00:01Z"),
        snap("old", "2022-06-01T00:00:00Z"),
    ];
    let refs: Vec<&Snap> = list.iter().collect();
    let policy = RetainPolicy {
        within: "1d".parse().unwrap(),
        ..Default::default()
    };
    let outcome = apply_policy(&refs, &policy, now);
    assert_eq!(names(&outcome.keep), ["future", "latest", "day-before"]);
    assert_eq!(names(&outcome.remove), ["old"]);
}

#[test]
fn only_future_snapshots_measure_from_year_one() {
    let now: Timestamp = "2022-06-10T00:00:00Z".parse().unwrap();
    let list = [
        snap("a", "2030-01-01T00:00:00Z"),
        snap("b", "2029-01-01T00:00:00Z"),
    ];
    let refs: Vec<&Snap> = list.iter().collect();
    let policy = RetainPolicy {
        within: "1d".parse().unwrap(),
        ..Default::default()
    };
    assert_eq!(names(&apply_policy(&refs, &policy, now).keep), ["a", "b"]);
}

#[test]
fn weeks_are_iso_weeks_across_new_year() {
    let list = [
        snap("mon-2021-w01", "2021-01-04T10:00:00Z"),
        snap("sun-2020-w53", "2021-01-03T10:00:00Z"),
        snap("fri-2020-w53", "2021-01-01T10:00:00Z"),
        snap("mon-2020-w53", "2020-12-28T10:00:00Z"),
        snap("sun-2020-w52", "2020-12-27T10:00:00Z"),
        snap("sun-2020-w01", "2020-01-05T10:00:00Z"),
        snap("mon-2020-w01", "2019-12-30T10:00:00Z"),
        snap("sun-2019-w52", "2019-12-29T10:00:00Z"),
    ];
    let refs: Vec<&Snap> = list.iter().collect();
    let policy = RetainPolicy {
        weekly: 5,
        ..Default::default()
    };
    let outcome = apply_policy(&refs, &policy, far_future());
    assert_eq!(
        names(&outcome.keep),
        [
            "mon-2021-w01",
            "sun-2020-w53",
            "sun-2020-w52",
            "sun-2020-w01",
            "sun-2019-w52"
        ]
    );
    // The fifth count is spent on the last week, not the oldest-snapshot rule.
    assert_eq!(outcome.reasons[4].matches, ["weekly snapshot"]);
    assert_eq!(outcome.reasons[4].counters.weekly, 0);
}

#[test]
fn buckets_use_each_snapshots_own_offset() {
    // Instants 22:30Z and 23:30Z on 1 June; the first was taken at +02:00,
    // where it was already 2 June. Daily buckets follow each snapshot's
    // recorded wall clock, so these are two different days.
    let list = [
        snap("utc", "2021-06-01T23:30:00Z"),
        snap("cest", "2021-06-02T00:30:00+02:00"),
        snap("older", "2021-06-01T20:00:00Z"),
    ];
    let refs: Vec<&Snap> = list.iter().collect();
    let policy = RetainPolicy {
        daily: 2,
        ..Default::default()
    };
    let outcome = apply_policy(&refs, &policy, far_future());
    assert_eq!(names(&outcome.keep), ["utc", "cest"]);
    assert_eq!(outcome.reasons[1].matches, ["daily snapshot"]);

    // Across a DST change the offset differs per snapshot, and hourly
    // buckets are the local hours as recorded.
    let dst = [
        snap("after", "2021-03-28T03:10:00+02:00"),
        snap("before", "2021-03-28T01:50:00+01:00"),
        snap("earlier", "2021-03-28T01:10:00+01:00"),
    ];
    let refs: Vec<&Snap> = dst.iter().collect();
    let policy = RetainPolicy {
        hourly: 2,
        ..Default::default()
    };
    assert_eq!(
        names(&apply_policy(&refs, &policy, far_future()).keep),
        ["after", "before"]
    );
}

#[test]
fn equal_times_keep_input_order() {
    let list = [
        snap("first", "2021-01-01T00:00:00Z"),
        snap("second", "2021-01-01T00:00:00Z"),
    ];
    let refs: Vec<&Snap> = list.iter().collect();
    let outcome = apply_policy(
        &refs,
        &RetainPolicy {
            last: 1,
            ..Default::default()
        },
        far_future(),
    );
    assert_eq!(names(&outcome.keep), ["first"]);
    assert_eq!(names(&outcome.remove), ["second"]);
    let reversed: Vec<&Snap> = list.iter().rev().collect();
    let outcome = apply_policy(
        &reversed,
        &RetainPolicy {
            last: 1,
            ..Default::default()
        },
        far_future(),
    );
    assert_eq!(names(&outcome.keep), ["second"]);
}

/// Host, paths and member names of one group.
type GroupShape = (String, Option<Vec<String>>, Vec<&'static str>);

#[test]
fn groups_by_host_and_sorted_paths_by_default() {
    let mut a = snap("a", "2021-01-01T00:00:00Z");
    a.paths = vec!["/y".into(), "/x".into()];
    let mut b = snap("b", "2021-01-02T00:00:00Z");
    b.paths = vec!["/x".into(), "/y".into()];
    let mut c = snap("c", "2021-01-03T00:00:00Z");
    c.host = "other".into();
    c.paths = b.paths.clone();
    let mut d = snap("d", "2021-01-04T00:00:00Z");
    d.tags = vec!["t".into()];
    let list = [a, b, c, d];

    let groups = group_snapshots(&list, GroupBy::default());
    let shape: Vec<GroupShape> = groups
        .iter()
        .map(|(k, g)| (k.host.clone(), k.paths.clone(), names(g)))
        .collect();
    assert_eq!(
        shape,
        [
            ("h".to_owned(), Some(vec!["/data".to_owned()]), vec!["d"]),
            (
                "h".to_owned(),
                Some(vec!["/x".to_owned(), "/y".to_owned()]),
                vec!["a", "b"]
            ),
            (
                "other".to_owned(),
                Some(vec!["/x".to_owned(), "/y".to_owned()]),
                vec!["c"]
            ),
        ]
    );
    assert!(groups.iter().all(|(k, _)| k.tags.is_none()));

    let by_tags: GroupBy = "tags".parse().unwrap();
    let groups = group_snapshots(&list, by_tags);
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0].0.host, "");
    assert!(groups[0].0.paths.is_none());
    assert!("hosts,paths,tag".parse::<GroupBy>().is_ok());
    assert!("".parse::<GroupBy>().is_ok());
    assert!("colour".parse::<GroupBy>().is_err());
}

#[test]
fn empty_policy_is_detected() {
    assert!(RetainPolicy::default().is_empty());
    assert!(
        !RetainPolicy {
            tags: vec![vec!["x".into()]],
            ..Default::default()
        }
        .is_empty()
    );
    assert!(
        !RetainPolicy {
            within: "1h".parse().unwrap(),
            ..Default::default()
        }
        .is_empty()
    );
}
