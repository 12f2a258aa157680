//! restic's retention policy (`forget --keep-*`), decision for decision.
//!
//! Which snapshots survive must not depend on whether restic or Sluice ran
//! `forget`, so this follows restic (0.16 and later) exactly: snapshots are
//! grouped (by host and paths unless told otherwise), each group is ordered
//! newest first, and every snapshot is offered to each keep rule in turn.
//! Calendar buckets (hour, day, ISO week, month, year) are computed from the
//! wall-clock time in the offset stored with each snapshot, not in the local
//! time zone, as restic does.
//!
//! The logic works on anything that implements [`ForgetCandidate`], so it is
//! independent of how snapshots are stored.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use jiff::civil::{Date, DateTime};
use jiff::{SignedDuration, Span, Timestamp, Zoned};
use serde::Serialize;

/// What the policy needs to know about a snapshot.
pub trait ForgetCandidate {
    /// The snapshot's time, in the time zone or offset it was recorded in.
    fn time(&self) -> &Zoned;
    /// The host that made the snapshot.
    fn hostname(&self) -> &str;
    /// The backed-up paths.
    fn paths(&self) -> &[String];
    /// The snapshot's tags.
    fn tags(&self) -> &[String];
}

/// A `--keep-within*` duration: calendar years, months and days, then hours,
/// counted back from the newest snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeepDuration {
    /// Calendar years.
    pub years: i32,
    /// Calendar months.
    pub months: i32,
    /// Calendar days.
    pub days: i32,
    /// Hours of 3600 seconds.
    pub hours: i32,
}

/// Why a `--keep-within` value was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DurationError {
    /// A unit letter without its number, e.g. `"d"`.
    #[error("invalid duration {0:?}: expected a number before {1:?}; write it like 1y2m3d4h")]
    MissingNumber(String, String),
    /// A number without its unit, e.g. `"5"`.
    #[error("invalid duration {0:?}: no unit after {1}; use y, m, d or h, like 1y2m3d4h")]
    MissingUnit(String, String),
    /// A letter that is not y, m, d or h.
    #[error("invalid duration {0:?}: unknown unit {1:?}; use y, m, d or h, like 1y2m3d4h")]
    UnknownUnit(String, char),
    /// A number too large to count with.
    #[error("invalid duration {0:?}: {1} is too large")]
    TooLarge(String, String),
    /// restic's forget refuses negative durations.
    #[error("invalid duration {0:?}: negative values are not allowed")]
    Negative(String),
}

impl KeepDuration {
    /// Whether the duration is empty, which disables its rule.
    pub fn is_zero(&self) -> bool {
        *self == KeepDuration::default()
    }

    /// The instant `self` before `latest`: calendar arithmetic in latest's
    /// time zone, with Go's normalisation (31 March minus one month is
    /// 3 March, not 28 February), then whole hours. `None` when that lies
    /// before any representable time, which puts every snapshot within.
    fn before(&self, latest: &Zoned) -> Option<Timestamp> {
        let months = i64::from(latest.year()) * 12 + i64::from(latest.month())
            - 1
            - i64::from(self.years) * 12
            - i64::from(self.months);
        let year = i16::try_from(months.div_euclid(12)).ok()?;
        let month = (months.rem_euclid(12) + 1) as i8;
        // Days past the end of a month roll into the next one, like Go's
        // time.Date does.
        let day_offset = i64::from(latest.day()) - 1 - i64::from(self.days);
        let date = Date::new(year, month, 1)
            .ok()?
            .checked_add(Span::new().try_days(day_offset).ok()?)
            .ok()?;
        let wall = DateTime::from_parts(date, latest.time());
        let shifted = wall.to_zoned(latest.time_zone().clone()).ok()?;
        shifted
            .timestamp()
            .checked_sub(SignedDuration::from_hours(i64::from(self.hours)))
            .ok()
    }
}

impl FromStr for KeepDuration {
    type Err = DurationError;

    /// Parses restic's form: numbers each followed by `y`, `m`, `d` or `h`,
    /// e.g. `1y2m3d4h`; a later repetition of a unit replaces the earlier.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let mut rest = text;
        let mut duration = KeepDuration::default();
        while !rest.is_empty() {
            let unsigned = rest.strip_prefix('-');
            let digits_from = unsigned.unwrap_or(rest);
            let digits_len = digits_from.bytes().take_while(u8::is_ascii_digit).count();
            if digits_len == 0 {
                return Err(DurationError::MissingNumber(
                    s.to_owned(),
                    digits_from.to_owned(),
                ));
            }
            if unsigned.is_some() {
                return Err(DurationError::Negative(s.to_owned()));
            }
            let digits = &digits_from[..digits_len];
            let value: i32 = digits
                .parse()
                .map_err(|_| DurationError::TooLarge(s.to_owned(), digits.to_owned()))?;
            let mut after = digits_from[digits_len..].chars();
            let unit = after
                .next()
                .ok_or_else(|| DurationError::MissingUnit(s.to_owned(), digits.to_owned()))?;
            match unit {
                'y' => duration.years = value,
                'm' => duration.months = value,
                'd' => duration.days = value,
                'h' => duration.hours = value,
                other => return Err(DurationError::UnknownUnit(s.to_owned(), other)),
            }
            rest = after.as_str();
        }
        Ok(duration)
    }
}

impl fmt::Display for KeepDuration {
    /// restic's canonical form, which appears in keep reasons: `1y1m1d` for
    /// an input of `1y1d1m`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (value, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if value != 0 {
                write!(f, "{value}{unit}")?;
            }
        }
        Ok(())
    }
}

/// A `--keep-last`/`--keep-hourly`/... count: `UNLIMITED` keeps every
/// snapshot the rule applies to, 0 disables the rule.
pub type KeepCount = i32;

/// The count restic writes as `unlimited`.
pub const UNLIMITED: KeepCount = -1;

/// Parses a `--keep-*` count as restic does: a non-negative number or
/// `unlimited`.
pub fn parse_keep_count(s: &str) -> Result<KeepCount, String> {
    if s == "unlimited" {
        return Ok(UNLIMITED);
    }
    match s.parse::<KeepCount>() {
        Ok(n) if n >= 0 => Ok(n),
        Ok(_) => Err(format!(
            "invalid keep count {s:?}: negative values are not allowed, use 'unlimited'"
        )),
        Err(_) => Err(format!(
            "invalid keep count {s:?}: expected a number or 'unlimited'"
        )),
    }
}

/// The `--keep-*` options of `forget`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetainPolicy {
    /// Keep the newest n snapshots.
    pub last: KeepCount,
    /// Keep the newest snapshot of each of the last n hours that have one.
    pub hourly: KeepCount,
    /// The same per day.
    pub daily: KeepCount,
    /// The same per ISO week.
    pub weekly: KeepCount,
    /// The same per month.
    pub monthly: KeepCount,
    /// The same per year.
    pub yearly: KeepCount,
    /// Keep every snapshot newer than the newest one minus this.
    pub within: KeepDuration,
    /// Keep one snapshot per hour within this of the newest.
    pub within_hourly: KeepDuration,
    /// Keep one snapshot per day within this of the newest.
    pub within_daily: KeepDuration,
    /// Keep one snapshot per ISO week within this of the newest.
    pub within_weekly: KeepDuration,
    /// Keep one snapshot per month within this of the newest.
    pub within_monthly: KeepDuration,
    /// Keep one snapshot per year within this of the newest.
    pub within_yearly: KeepDuration,
    /// Keep snapshots carrying all tags of any one of these lists.
    pub tags: Vec<Vec<String>>,
}

impl RetainPolicy {
    /// Whether no rule is set; restic then removes nothing at all (rather
    /// than everything), so callers must check this first.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty() && *self == RetainPolicy::default()
    }
}

/// Counts still left in each bucket after a snapshot was considered, as
/// restic reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Left of `--keep-last` (-1: unlimited).
    #[serde(skip_serializing_if = "is_zero")]
    pub last: i32,
    /// Left of `--keep-hourly` (-1: unlimited).
    #[serde(skip_serializing_if = "is_zero")]
    pub hourly: i32,
    /// Left of `--keep-daily` (-1: unlimited).
    #[serde(skip_serializing_if = "is_zero")]
    pub daily: i32,
    /// Left of `--keep-weekly` (-1: unlimited).
    #[serde(skip_serializing_if = "is_zero")]
    pub weekly: i32,
    /// Left of `--keep-monthly` (-1: unlimited).
    #[serde(skip_serializing_if = "is_zero")]
    pub monthly: i32,
    /// Left of `--keep-yearly` (-1: unlimited).
    #[serde(skip_serializing_if = "is_zero")]
    pub yearly: i32,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// Why one snapshot is kept: restic's `matches` strings and `counters`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeepReason {
    /// E.g. `"daily snapshot"`, `"oldest monthly snapshot"`, `"within 1d"`.
    pub matches: Vec<String>,
    /// Counts left after this snapshot.
    pub counters: Counters,
}

/// The verdict for one group of snapshots.
#[derive(Debug)]
pub struct PolicyOutcome<'a, T> {
    /// Kept snapshots, newest first.
    pub keep: Vec<&'a T>,
    /// Removed snapshots, newest first.
    pub remove: Vec<&'a T>,
    /// One reason per kept snapshot, in the order of `keep`.
    pub reasons: Vec<KeepReason>,
}

/// The calendar bucket a keep rule sorts snapshots into.
#[derive(Clone, Copy)]
enum Bucket {
    /// Every snapshot is its own bucket.
    Each,
    Hour,
    Day,
    IsoWeek,
    Month,
    Year,
}

impl Bucket {
    fn key(self, time: &Zoned, position: usize) -> i64 {
        let (y, m, d, h) = (
            i64::from(time.year()),
            i64::from(time.month()),
            i64::from(time.day()),
            i64::from(time.hour()),
        );
        match self {
            Bucket::Each => position as i64,
            Bucket::Hour => y * 1_000_000 + m * 10_000 + d * 100 + h,
            Bucket::Day => y * 10_000 + m * 100 + d,
            Bucket::IsoWeek => {
                let week = time.date().iso_week_date();
                i64::from(week.year()) * 100 + i64::from(week.week())
            }
            Bucket::Month => y * 100 + m,
            Bucket::Year => y,
        }
    }
}

/// The newest snapshot time that is not in the future; restic measures
/// `--keep-within*` from it. With every snapshot in the future restic falls
/// back to Go's zero time, year 1.
fn latest_time<T: ForgetCandidate>(snapshots: &[&T], now: Timestamp) -> Zoned {
    snapshots
        .iter()
        .map(|s| s.time())
        .filter(|t| t.timestamp() < now)
        .max_by_key(|t| t.timestamp())
        .cloned()
        .unwrap_or_else(|| {
            Date::new(1, 1, 1)
                .expect("year 1 is a valid date")
                .to_zoned(jiff::tz::TimeZone::UTC)
                .expect("year 1 is representable")
        })
}

/// Decides which snapshots of one group to keep, as restic's `ApplyPolicy`.
///
/// `now` bounds the newest snapshot used for `--keep-within*` (snapshots
/// from the future don't count). Snapshots with equal times keep their
/// input order, as restic's stable sort does. An empty policy removes every
/// snapshot; check [`RetainPolicy::is_empty`] first.
pub fn apply_policy<'a, T: ForgetCandidate>(
    snapshots: &[&'a T],
    policy: &RetainPolicy,
    now: Timestamp,
) -> PolicyOutcome<'a, T> {
    let mut list: Vec<&'a T> = snapshots.to_vec();
    // Newest first; stable, so equal times keep the caller's order.
    list.sort_by_key(|s| std::cmp::Reverse(s.time().timestamp()));
    let mut outcome = PolicyOutcome {
        keep: Vec::new(),
        remove: Vec::new(),
        reasons: Vec::new(),
    };
    if list.is_empty() {
        return outcome;
    }

    struct CountRule {
        count: KeepCount,
        bucket: Bucket,
        last_key: Option<i64>,
        reason: &'static str,
    }
    let count_rule = |count, bucket, reason| CountRule {
        count,
        bucket,
        last_key: None,
        reason,
    };
    let mut count_rules = [
        count_rule(policy.last, Bucket::Each, "last snapshot"),
        count_rule(policy.hourly, Bucket::Hour, "hourly snapshot"),
        count_rule(policy.daily, Bucket::Day, "daily snapshot"),
        count_rule(policy.weekly, Bucket::IsoWeek, "weekly snapshot"),
        count_rule(policy.monthly, Bucket::Month, "monthly snapshot"),
        count_rule(policy.yearly, Bucket::Year, "yearly snapshot"),
    ];

    let latest = latest_time(&list, now);
    struct WithinRule {
        after: Option<Option<Timestamp>>,
        within: KeepDuration,
        bucket: Bucket,
        last_key: Option<i64>,
        reason: &'static str,
    }
    let within_rule = |within: KeepDuration, bucket, reason| WithinRule {
        after: (!within.is_zero()).then(|| within.before(&latest)),
        within,
        bucket,
        last_key: None,
        reason,
    };
    let mut within_rules = [
        within_rule(policy.within_hourly, Bucket::Hour, "hourly within"),
        within_rule(policy.within_daily, Bucket::Day, "daily within"),
        within_rule(policy.within_weekly, Bucket::IsoWeek, "weekly within"),
        within_rule(policy.within_monthly, Bucket::Month, "monthly within"),
        within_rule(policy.within_yearly, Bucket::Year, "yearly within"),
    ];
    let keep_all_after = (!policy.within.is_zero()).then(|| policy.within.before(&latest));
    // `None` as the bound means it lies before all time: everything is newer.
    let is_newer = |t: &Zoned, bound: Option<Timestamp>| {
        bound.is_none_or(|b| t.timestamp().cmp(&b) == Ordering::Greater)
    };

    let oldest = list.len() - 1;
    for (position, &snapshot) in list.iter().enumerate() {
        let time = snapshot.time();
        let mut matches = Vec::new();

        for tags in &policy.tags {
            if has_tags(snapshot.tags(), tags) {
                matches.push(format!("has tags [{}]", tags.join(", ")));
            }
        }

        if let Some(bound) = keep_all_after
            && is_newer(time, bound)
        {
            matches.push(format!("within {}", policy.within));
        }

        for rule in &mut count_rules {
            if rule.count > 0 || rule.count == UNLIMITED {
                let key = rule.bucket.key(time, position);
                let same_bucket = rule.last_key == Some(key);
                // restic also keeps the oldest snapshot while the rule has
                // count left: that keeps the longest history.
                if !same_bucket || position == oldest {
                    matches.push(if same_bucket {
                        format!("oldest {}", rule.reason)
                    } else {
                        rule.reason.to_owned()
                    });
                    rule.last_key = Some(key);
                    if rule.count > 0 {
                        rule.count -= 1;
                    }
                }
            }
        }

        for rule in &mut within_rules {
            let Some(bound) = rule.after else { continue };
            if !is_newer(time, bound) {
                continue;
            }
            let key = rule.bucket.key(time, position);
            let same_bucket = rule.last_key == Some(key);
            if !same_bucket || position == oldest {
                let prefix = if same_bucket { "oldest " } else { "" };
                matches.push(format!("{prefix}{} {}", rule.reason, rule.within));
                rule.last_key = Some(key);
            }
        }

        if matches.is_empty() {
            outcome.remove.push(snapshot);
        } else {
            outcome.keep.push(snapshot);
            let [last, hourly, daily, weekly, monthly, yearly] =
                count_rules.each_ref().map(|r| r.count);
            outcome.reasons.push(KeepReason {
                matches,
                counters: Counters {
                    last,
                    hourly,
                    daily,
                    weekly,
                    monthly,
                    yearly,
                },
            });
        }
    }
    outcome
}

/// restic's `HasTags`: all of `wanted` present; an empty tag in `wanted`
/// matches a snapshot without tags.
fn has_tags(tags: &[String], wanted: &[String]) -> bool {
    for tag in wanted {
        if tag.is_empty() && tags.is_empty() {
            return true;
        }
        if !tags.contains(tag) {
            return false;
        }
    }
    true
}

/// Which snapshot properties separate groups (`--group-by`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupBy {
    /// Group by hostname.
    pub host: bool,
    /// Group by the (sorted) list of paths.
    pub paths: bool,
    /// Group by the (sorted) list of tags.
    pub tags: bool,
}

impl Default for GroupBy {
    /// restic's default: host and paths.
    fn default() -> Self {
        GroupBy {
            host: true,
            paths: true,
            tags: false,
        }
    }
}

impl FromStr for GroupBy {
    type Err = String;

    /// Parses restic's comma-separated form, e.g. `host,paths`; `""`
    /// disables grouping.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut by = GroupBy {
            host: false,
            paths: false,
            tags: false,
        };
        for part in s.split(',') {
            match part {
                "host" | "hosts" => by.host = true,
                "path" | "paths" => by.paths = true,
                "tag" | "tags" => by.tags = true,
                "" => {}
                other => {
                    return Err(format!(
                        "unknown grouping option {other:?}: use host, paths and/or tags"
                    ));
                }
            }
        }
        Ok(by)
    }
}

/// What a group's snapshots share, in the shape of restic's `forget --json`
/// group header (`host` is empty and `paths`/`tags` null when not grouped
/// by them, or when the snapshots have none).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct GroupKey {
    /// Shared tags, sorted.
    pub tags: Option<Vec<String>>,
    /// Shared hostname.
    pub host: String,
    /// Shared paths, sorted.
    pub paths: Option<Vec<String>>,
}

/// Splits snapshots into groups that [`apply_policy`] treats separately,
/// each group in input order; groups are ordered by key.
pub fn group_snapshots<T: ForgetCandidate>(
    snapshots: &[T],
    by: GroupBy,
) -> Vec<(GroupKey, Vec<&T>)> {
    let mut groups: std::collections::BTreeMap<GroupKey, Vec<&T>> =
        std::collections::BTreeMap::new();
    // restic leaves empty lists out of snapshots, so they group as null.
    let sorted = |list: &[String]| {
        let mut list = list.to_vec();
        list.sort();
        (!list.is_empty()).then_some(list)
    };
    for snapshot in snapshots {
        let key = GroupKey {
            tags: by.tags.then(|| sorted(snapshot.tags())).flatten(),
            host: if by.host {
                snapshot.hostname().to_owned()
            } else {
                String::new()
            },
            paths: by.paths.then(|| sorted(snapshot.paths())).flatten(),
        };
        groups.entry(key).or_default().push(snapshot);
    }
    groups.into_iter().collect()
}
