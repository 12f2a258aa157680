//! The arithmetic of `make bench-job`: when each step of a sync happened, from what the
//! benchmark saw of the cluster and what the mover logged, and the table of where the time
//! went. The binary (`sluice-e2e-bench-job`) gathers; this module only computes.

use jiff::Timestamp;

/// When each step of one sync happened, on the machine's clock (the real node is this
/// machine, so the mover's log timestamps are on the same clock). A step not seen is `None`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timeline {
    /// The manual trigger was written.
    pub triggered: Option<Timestamp>,
    /// The mover Job was first seen.
    pub job_created: Option<Timestamp>,
    /// Its Pod was first seen.
    pub pod_created: Option<Timestamp>,
    /// The Pod was first seen bound to the node.
    pub pod_scheduled: Option<Timestamp>,
    /// The mover's first log line: the process is running.
    pub mover_started: Option<Timestamp>,
    /// The mover opened the repository (key derived, config read).
    pub repository_opened: Option<Timestamp>,
    /// The mover's backup wrote its snapshot.
    pub backup_finished: Option<Timestamp>,
    /// The Pod was first seen finished.
    pub pod_finished: Option<Timestamp>,
    /// The ReplicationSource's status showed the sync done.
    pub status_updated: Option<Timestamp>,
}

/// Reads one step's time out of a [`Timeline`].
type Step = fn(&Timeline) -> Option<Timestamp>;

/// The steps of a [`Timeline`] in order, each with the name of the interval that ends at it.
const STEPS: [(&str, Step); 9] = [
    ("triggered", |t| t.triggered),
    ("to Job", |t| t.job_created),
    ("to Pod", |t| t.pod_created),
    ("scheduled", |t| t.pod_scheduled),
    ("to mover process", |t| t.mover_started),
    ("repository open", |t| t.repository_opened),
    ("backup", |t| t.backup_finished),
    ("backup to Pod done", |t| t.pod_finished),
    ("backup to status", |t| t.status_updated),
];

/// Index in the intervals of the first one counted from the backup's end.
const AFTER_BACKUP: usize = 6;

/// The mover's own steps, read from its log: the timestamp that starts each line of
/// tracing's text format, for the first line and the lines saying the repository is open and
/// the backup finished.
pub fn mover_steps(log: &str, timeline: &mut Timeline) {
    for line in log.lines() {
        let Some((stamp, rest)) = line.trim_start().split_once(char::is_whitespace) else {
            continue;
        };
        let Ok(at) = stamp.parse::<Timestamp>() else {
            continue;
        };
        timeline.mover_started.get_or_insert(at);
        if rest.contains("repository opened") {
            timeline.repository_opened.get_or_insert(at);
        } else if rest.contains("backup finished") {
            timeline.backup_finished.get_or_insert(at);
        }
    }
}

/// Seconds from `a` to `b`, when both were seen.
fn seconds(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<f64> {
    Some(b?.duration_since(a?).as_secs_f64())
}

impl Timeline {
    /// Each interval's seconds, between consecutive steps that were seen (an interval after
    /// a step not seen runs from the last seen one). The Pod's end and the status both count
    /// from the backup's end: the operator reads the result before the kubelet reports the
    /// Pod finished, so neither follows the other.
    pub fn intervals(&self) -> Vec<(&'static str, Option<f64>)> {
        let mut last = self.triggered;
        STEPS[1..]
            .iter()
            .enumerate()
            .map(|(i, (name, step))| {
                let at = step(self);
                let d = seconds(last, at);
                if at.is_some() && i < AFTER_BACKUP {
                    last = at;
                }
                (*name, d)
            })
            .collect()
    }

    /// The fixed cost of a mover Job before it reads any of the volume: from the Pod's
    /// creation until the mover has the repository open.
    pub fn fixed_cost(&self) -> Option<f64> {
        seconds(self.pod_created, self.repository_opened)
    }

    /// The whole sync as a user sees it: from the trigger to the status saying it is done.
    pub fn whole(&self) -> Option<f64> {
        seconds(self.triggered, self.status_updated)
    }
}

/// A Markdown table of `runs` (label, timeline): one row a run, the intervals, the fixed
/// cost and the whole.
pub fn table(runs: &[(String, Timeline)]) -> String {
    let names: Vec<&str> = STEPS[1..].iter().map(|(n, _)| *n).collect();
    let mut out = format!(
        "| sync | {} | fixed cost (Pod to repository open) | whole (trigger to status) |\n|{}\n",
        names.join(" | "),
        "---|".repeat(names.len() + 3)
    );
    let cell = |s: Option<f64>| s.map_or("n/a".to_string(), |s| format!("{s:.2}"));
    for (label, t) in runs {
        let cells: Vec<String> = t.intervals().into_iter().map(|(_, s)| cell(s)).collect();
        out.push_str(&format!(
            "| {label} | {} | {} | {} |\n",
            cells.join(" | "),
            cell(t.fixed_cost()),
            cell(t.whole())
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Option<Timestamp> {
        Some(format!("2026-12-04T05:00:{s}Z").parse().unwrap())
    }

    #[test]
    fn mover_steps_are_read_from_tracing_lines() {
        let log = "\
2026-12-04T05:00:01.250000Z  INFO mover job started actions=unlock,backup
2026-12-04T05:00:01.900000Z  INFO repository opened elapsed_ms=650 initialized=false
{\"snapshotId\": \"abc\"}
2026-12-04T05:00:02.100000Z  INFO progress what=\"backup\"
2026-12-04T05:00:03.000000Z  INFO backup finished snapshot=1234abcd files_new=0
";
        let mut t = Timeline::default();
        mover_steps(log, &mut t);
        assert_eq!(t.mover_started, at("01.25"));
        assert_eq!(t.repository_opened, at("01.9"));
        assert_eq!(t.backup_finished, at("03"));
    }

    #[test]
    fn a_log_without_timestamps_gives_no_steps() {
        let mut t = Timeline::default();
        mover_steps("{\"errorClass\": \"Locked\"}\nerror: locked\n\n", &mut t);
        assert_eq!(t, Timeline::default());
    }

    #[test]
    fn intervals_run_between_the_steps_seen() {
        let t = Timeline {
            triggered: at("00"),
            job_created: at("00.5"),
            pod_created: at("00.6"),
            pod_scheduled: None,
            mover_started: at("02"),
            repository_opened: at("02.5"),
            backup_finished: at("03"),
            pod_finished: at("04"),
            status_updated: at("04.25"),
        };
        let got: Vec<(&str, Option<f64>)> = t.intervals();
        let want = [
            ("to Job", Some(0.5)),
            ("to Pod", Some(0.1)),
            ("scheduled", None),
            // From the last step seen, the Pod's creation.
            ("to mover process", Some(1.4)),
            ("repository open", Some(0.5)),
            ("backup", Some(0.5)),
            ("backup to Pod done", Some(1.0)),
            ("backup to status", Some(1.25)),
        ];
        assert_eq!(got.len(), want.len());
        for ((name, secs), (want_name, want_secs)) in got.iter().zip(want) {
            assert_eq!(*name, want_name);
            match (secs, want_secs) {
                (Some(a), Some(b)) => assert!((a - b).abs() < 1e-9, "{name}: {a} != {b}"),
                (a, b) => assert_eq!(*a, b, "{name}"),
            }
        }
        assert!((t.fixed_cost().unwrap() - 1.9).abs() < 1e-9);
        assert!((t.whole().unwrap() - 4.25).abs() < 1e-9);
        let table = table(&[("unchanged 1".into(), t)]);
        assert!(
            table.contains("| unchanged 1 | 0.50 | 0.10 | n/a | 1.40 | 0.50 | 0.50 | 1.00 | 1.25 | 1.90 | 4.25 |"),
            "{table}"
        );
    }
}
