//! When a scheduled sync is due: cron arithmetic in the trigger's time zone.
//!
//! A schedule is read in local time (croner over jiff's `Zoned`), so `0 9 * * *` in
//! `Europe/Berlin` stays at nine o'clock across daylight-saving changes. Runs missed while the
//! operator was down or a sync ran long collapse into one run; how many were skipped is counted
//! for status and metrics instead of replaying them. An object's `H` fields and jitter
//! ([`crate::spread`]) are applied once, when the schedule is parsed: every occurrence is the
//! cron occurrence delayed by the object's own offset.

use croner::{Cron, parser::CronParser, parser::Seconds, parser::Year};
use jiff::{SignedDuration, Timestamp, Zoned, tz::TimeZone};

use crate::spread::{self, Identity};

/// Upper bound on the occurrences walked to count missed runs, so a minutely schedule after a
/// year of downtime costs milliseconds rather than a long loop.
const MAX_COUNTED_MISSES: u64 = 100_000;

/// A parsed schedule (`spec.trigger.schedule`, or another field such as
/// `spec.restic.verify.schedule`) with its time zone and jitter, for one object.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// The field the expression came from, named by errors.
    field: &'static str,
    cron: Cron,
    zone: TimeZone,
    /// The object's delay below `spec.trigger.jitter`.
    offset: SignedDuration,
}

/// A schedule or time zone the operator cannot use; shown in conditions and events.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// The cron expression does not parse.
    #[error(
        "{field} {expression:?} is not a valid 5-field cron expression ({reason}); fix the schedule"
    )]
    InvalidCron {
        /// The field the expression came from.
        field: &'static str,
        /// The expression as written.
        expression: String,
        /// croner's explanation.
        reason: String,
    },
    /// The time zone is not in the IANA database.
    #[error(
        "spec.trigger.timeZone {0:?} is not a known IANA time zone; use a name such as Europe/Berlin"
    )]
    UnknownTimeZone(String),
    /// The schedule never fires again (e.g. 30 February).
    #[error("{0} {1:?} has no future occurrence; fix the schedule")]
    NoOccurrence(&'static str, String),
    /// An `H` field is malformed.
    #[error("{field} {expression:?}: {reason}; fix the schedule")]
    InvalidHash {
        /// The field the expression came from.
        field: &'static str,
        /// The expression as written.
        expression: String,
        /// What is wrong and what to write.
        reason: String,
    },
    /// `spec.trigger.jitter` is not a duration Sluice takes.
    #[error("{0}")]
    InvalidJitter(String),
}

/// What the schedule says at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    /// A sync should start now: at least one occurrence passed since the reference time.
    pub now: bool,
    /// Occurrences that passed beyond the one the starting sync answers.
    pub missed: u64,
    /// The first occurrence after `now`: what `status.nextSyncTime` shows.
    pub next: Timestamp,
}

impl Schedule {
    /// Parses a 5-field cron expression or `@hourly`-style shorthand, read in `time_zone`
    /// (UTC when absent), with `H` fields and the `jitter` delay of the object `identity`.
    pub fn parse(
        expression: &str,
        time_zone: Option<&str>,
        jitter: Option<&str>,
        identity: Identity,
    ) -> Result<Self, ScheduleError> {
        Self::parse_field(
            "spec.trigger.schedule",
            expression,
            time_zone,
            jitter,
            identity,
        )
    }

    /// [`Schedule::parse`] for the expression of another `field`, which errors name.
    pub fn parse_field(
        field: &'static str,
        expression: &str,
        time_zone: Option<&str>,
        jitter: Option<&str>,
        identity: Identity,
    ) -> Result<Self, ScheduleError> {
        let expanded =
            spread::expand(expression, identity).map_err(|reason| ScheduleError::InvalidHash {
                field,
                expression: expression.to_string(),
                reason,
            })?;
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build();
        let cron = parser
            .parse(&expanded)
            .map_err(|error| ScheduleError::InvalidCron {
                field,
                expression: expression.to_string(),
                reason: error.to_string(),
            })?;
        let zone = match time_zone {
            None => TimeZone::UTC,
            Some(name) => {
                TimeZone::get(name).map_err(|_| ScheduleError::UnknownTimeZone(name.to_string()))?
            }
        };
        let offset = match jitter {
            None => SignedDuration::ZERO,
            Some(jitter) => {
                spread::offset(jitter, identity).map_err(ScheduleError::InvalidJitter)?
            }
        };
        Ok(Self {
            field,
            cron,
            zone,
            offset,
        })
    }

    /// The first occurrence strictly after `after`: the cron occurrence after `after - offset`,
    /// delayed by the offset.
    pub fn next_after(&self, after: Timestamp) -> Result<Timestamp, ScheduleError> {
        let no_occurrence =
            || ScheduleError::NoOccurrence(self.field, self.cron.pattern.to_string());
        let shifted = after
            .checked_sub(self.offset)
            .map_err(|_| no_occurrence())?;
        let start = Zoned::new(shifted, self.zone.clone());
        let occurrence = self
            .cron
            .find_next_occurrence(&start, false)
            .map_err(|_| no_occurrence())?;
        occurrence
            .timestamp()
            .checked_add(self.offset)
            .map_err(|_| no_occurrence())
    }

    /// Whether a sync is due at `now`, given the time the last sync started (or the object was
    /// created), and when the next one is.
    pub fn due(&self, reference: Timestamp, now: Timestamp) -> Result<Due, ScheduleError> {
        let mut passed = 0u64;
        let mut cursor = reference;
        loop {
            let occurrence = self.next_after(cursor)?;
            if occurrence > now {
                return Ok(Due {
                    now: passed > 0,
                    missed: passed.saturating_sub(1),
                    next: occurrence,
                });
            }
            passed += 1;
            cursor = occurrence;
            if passed >= MAX_COUNTED_MISSES {
                return Ok(Due {
                    now: true,
                    missed: passed - 1,
                    next: self.next_after(now)?,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn parse(expression: &str, time_zone: Option<&str>) -> Result<Schedule, ScheduleError> {
        Schedule::parse(expression, time_zone, None, Identity::of("apps", "db"))
    }

    #[test]
    fn hourly_shorthand_and_five_fields_agree() {
        let at = ts("2026-11-22T10:15:00Z");
        let shorthand = parse("@hourly", None).unwrap();
        let fields = parse("0 * * * *", None).unwrap();
        assert_eq!(
            shorthand.next_after(at).unwrap(),
            ts("2026-11-22T11:00:00Z")
        );
        assert_eq!(fields.next_after(at).unwrap(), ts("2026-11-22T11:00:00Z"));
        let daily = parse("@daily", None).unwrap();
        assert_eq!(daily.next_after(at).unwrap(), ts("2026-11-23T00:00:00Z"));
    }

    #[test]
    fn next_is_strictly_after_an_exact_occurrence() {
        let schedule = parse("*/15 * * * *", None).unwrap();
        assert_eq!(
            schedule.next_after(ts("2026-11-22T10:15:00Z")).unwrap(),
            ts("2026-11-22T10:30:00Z")
        );
    }

    #[test]
    fn six_fields_and_bad_zones_are_rejected_with_the_field_name() {
        let error = parse("0 0 * * * *", None).unwrap_err();
        assert!(
            error.to_string().contains("spec.trigger.schedule"),
            "{error}"
        );
        let error = parse("@hourly", Some("Mars/Olympus")).unwrap_err();
        assert!(
            error.to_string().contains("spec.trigger.timeZone"),
            "{error}"
        );
    }

    #[test]
    fn not_due_before_the_first_occurrence() {
        let schedule = parse("0 * * * *", None).unwrap();
        let due = schedule
            .due(ts("2026-11-22T10:00:00Z"), ts("2026-11-22T10:59:59Z"))
            .unwrap();
        assert_eq!(
            due,
            Due {
                now: false,
                missed: 0,
                next: ts("2026-11-22T11:00:00Z")
            }
        );
    }

    #[test]
    fn missed_runs_collapse_into_one_and_are_counted() {
        let schedule = parse("0 * * * *", None).unwrap();
        // Last sync at 10:00, operator back at 13:30: 11, 12 and 13 passed, one sync runs now.
        let due = schedule
            .due(ts("2026-11-22T10:00:00Z"), ts("2026-11-22T13:30:00Z"))
            .unwrap();
        assert_eq!(
            due,
            Due {
                now: true,
                missed: 2,
                next: ts("2026-11-22T14:00:00Z")
            }
        );
    }

    #[test]
    fn exactly_one_occurrence_passed_misses_nothing() {
        let schedule = parse("0 * * * *", None).unwrap();
        let due = schedule
            .due(ts("2026-11-22T10:00:00Z"), ts("2026-11-22T11:00:00Z"))
            .unwrap();
        assert!(due.now);
        assert_eq!(due.missed, 0);
        assert_eq!(due.next, ts("2026-11-22T12:00:00Z"));
    }

    #[test]
    fn long_downtime_is_bounded() {
        let schedule = parse("* * * * *", None).unwrap();
        let due = schedule
            .due(ts("2025-01-01T00:00:00Z"), ts("2026-11-22T00:00:30Z"))
            .unwrap();
        assert!(due.now);
        assert_eq!(due.missed, MAX_COUNTED_MISSES - 1);
        assert_eq!(due.next, ts("2026-11-22T00:01:00Z"));
    }

    #[test]
    fn local_time_survives_spring_forward() {
        // Berlin goes from UTC+1 to UTC+2 on 2026-03-29: 09:00 local moves from 08:00Z to 07:00Z.
        let schedule = parse("0 9 * * *", Some("Europe/Berlin")).unwrap();
        let first = schedule.next_after(ts("2026-03-28T00:00:00Z")).unwrap();
        assert_eq!(first, ts("2026-03-28T08:00:00Z"));
        assert_eq!(
            schedule.next_after(first).unwrap(),
            ts("2026-03-29T07:00:00Z")
        );
    }

    #[test]
    fn a_time_skipped_by_spring_forward_still_runs_that_day() {
        // 02:30 does not exist in Berlin on 2026-03-29; the day must not be skipped entirely.
        let schedule = parse("30 2 * * *", Some("Europe/Berlin")).unwrap();
        let next = schedule.next_after(ts("2026-03-28T12:00:00Z")).unwrap();
        assert!(
            next >= ts("2026-03-29T00:00:00Z") && next < ts("2026-03-29T12:00:00Z"),
            "{next}"
        );
    }

    #[test]
    fn a_time_repeated_by_fall_back_runs_once() {
        // 02:30 happens twice in Berlin on 2026-10-25; one sync that day, not two.
        let schedule = parse("30 2 * * *", Some("Europe/Berlin")).unwrap();
        let due = schedule
            .due(ts("2026-10-24T12:00:00Z"), ts("2026-10-25T12:00:00Z"))
            .unwrap();
        assert!(due.now);
        assert_eq!(due.missed, 0);
        assert_eq!(due.next, ts("2026-10-26T01:30:00Z"));
    }

    #[test]
    fn weekly_in_new_york() {
        let schedule = parse("0 3 * * SUN", Some("America/New_York")).unwrap();
        // Sunday 2026-11-22 03:00 EST is 08:00Z.
        assert_eq!(
            schedule.next_after(ts("2026-11-21T00:00:00Z")).unwrap(),
            ts("2026-11-22T08:00:00Z")
        );
    }

    #[test]
    fn h_fields_fire_at_the_objects_own_minute() {
        let identity = Identity::of("apps", "db");
        let expanded = spread::expand("H * * * *", identity).unwrap();
        let minute: i64 = expanded.split(' ').next().unwrap().parse().unwrap();
        let schedule = Schedule::parse("H * * * *", None, None, identity).unwrap();
        let next = schedule.next_after(ts("2026-11-22T10:59:59Z")).unwrap();
        assert_eq!(next.as_second() % 3600 / 60, minute);
        let after = schedule.next_after(next).unwrap();
        assert_eq!(after.duration_since(next), SignedDuration::from_hours(1));
    }

    #[test]
    fn jitter_delays_every_occurrence_by_the_same_offset() {
        let identity = Identity::of("apps", "db");
        let offset = spread::offset("10m", identity).unwrap();
        assert!(
            offset > SignedDuration::ZERO,
            "this identity's offset is not zero"
        );
        let schedule = Schedule::parse("0 * * * *", None, Some("10m"), identity).unwrap();
        let first = schedule.next_after(ts("2026-11-22T10:00:00Z")).unwrap();
        assert_eq!(
            first,
            ts("2026-11-22T10:00:00Z") + offset,
            "this hour's delayed run"
        );
        assert_eq!(
            schedule.next_after(first).unwrap(),
            ts("2026-11-22T11:00:00Z") + offset
        );
        // Not due at the hour, only once the delay passed.
        let due = schedule
            .due(ts("2026-11-22T09:30:00Z"), ts("2026-11-22T10:00:00Z"))
            .unwrap();
        assert!(!due.now);
        assert_eq!(due.next, first);
        assert!(schedule.due(ts("2026-11-22T09:30:00Z"), first).unwrap().now);
    }

    #[test]
    fn bad_h_fields_and_jitter_name_the_field() {
        let identity = Identity::of("apps", "db");
        let error = Schedule::parse("H(70-80) * * * *", None, None, identity).unwrap_err();
        assert!(
            error.to_string().starts_with("spec.trigger.schedule"),
            "{error}"
        );
        let error = Schedule::parse("@hourly", None, Some("soon"), identity).unwrap_err();
        assert!(
            error.to_string().starts_with("spec.trigger.jitter"),
            "{error}"
        );
    }
}
