//! The arithmetic of `make bench-operator` (`sluice-e2e-bench-operator`): what it reads from
//! `/proc` and from Prometheus text, and what it computes from samples: percentiles, starts per
//! minute, request rates by verb over a window and over its busiest minute, and the JSON
//! summary the run ends with. Nothing here talks to a process or a cluster, so every rule the
//! benchmark reports by is tested by table.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// One look at the operator: its memory and CPU from `/proc`, and its counters from `/metrics`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// Seconds since the benchmark started.
    pub at: f64,
    /// Which operator process (0 the first, 1 after the restart): counters restart with it.
    pub process: u32,
    /// Resident memory, MiB (`VmRSS`).
    pub rss_mib: f64,
    /// Peak resident memory of the process so far, MiB (`VmHWM`).
    pub hwm_mib: f64,
    /// User and system CPU seconds of the process so far.
    pub cpu_s: f64,
    /// `sluice_api_requests_total`, summed by verb.
    pub requests: BTreeMap<String, f64>,
    /// `sluice_reconcile_total` of ReplicationSources.
    pub reconciles: f64,
}

/// A stretch of the run, in seconds since the benchmark started, within one process.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    /// Process whose samples count.
    pub process: u32,
    /// First second.
    pub from: f64,
    /// Last second.
    pub to: f64,
}

impl Window {
    fn samples<'a>(&self, samples: &'a [Sample]) -> Vec<&'a Sample> {
        samples
            .iter()
            .filter(|s| s.process == self.process && s.at >= self.from && s.at <= self.to)
            .collect()
    }
}

/// A field of `/proc/PID/status` given in kB (`VmRSS`, `VmHWM`), in MiB.
pub fn proc_status_mib(status: &str, field: &str) -> Option<f64> {
    let line = status
        .lines()
        .find(|line| line.split(':').next() == Some(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// User plus system CPU time from `/proc/PID/stat`, in clock ticks. The command name (field
/// 2) may hold spaces and parentheses, so fields are counted after its last `)`.
pub fn proc_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime 14 and stime 15 of the whole line.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The samples of counter `name` in Prometheus or OpenMetrics text whose labels include every
/// pair of `only`, summed by the value of `label` (a sample without it counts under `""`).
/// Comments and other metrics are skipped.
pub fn sum_by_label(
    text: &str,
    name: &str,
    label: &str,
    only: &[(&str, &str)],
) -> BTreeMap<String, f64> {
    let mut sums = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(rest) => match rest.split_once('}') {
                Some((labels, value)) => (labels, value),
                None => continue,
            },
            None if rest.starts_with(' ') => ("", rest),
            None => continue,
        };
        let Some(value) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        else {
            continue;
        };
        if only
            .iter()
            .any(|(l, v)| label_value(labels, l).as_deref() != Some(*v))
        {
            continue;
        }
        let key = label_value(labels, label).unwrap_or_default();
        *sums.entry(key).or_insert(0.0) += value;
    }
    sums
}

/// The value of `label` in `a="x",b="y"`.
fn label_value(labels: &str, label: &str) -> Option<String> {
    let prefix = format!("{label}=\"");
    let start = labels
        .split(',')
        .find_map(|pair| pair.trim().strip_prefix(prefix.as_str()))?;
    Some(start.strip_suffix('"').unwrap_or(start).to_string())
}

/// The `p`-th percentile (0 to 100) of `values` by nearest rank; `None` when there are none.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// How many of `times` (Unix seconds) fall in each wall-clock minute, by the minute's start.
pub fn per_minute(times: &[i64]) -> BTreeMap<i64, usize> {
    let mut counts = BTreeMap::new();
    for time in times {
        *counts.entry(time.div_euclid(60) * 60).or_insert(0) += 1;
    }
    counts
}

/// Requests per minute by verb over `window`: from its first sample to its last.
pub fn rate_per_minute(samples: &[Sample], window: Window) -> BTreeMap<String, f64> {
    let inside = window.samples(samples);
    match (inside.first(), inside.last()) {
        (Some(first), Some(last)) if last.at > first.at => per_minute_between(first, last),
        _ => BTreeMap::new(),
    }
}

/// The busiest minute of `window`: for each sample, the rate to the first sample at least 60 s
/// later; the pair with the most requests in all wins. Its rates by verb, or none when the
/// window is shorter than a minute.
pub fn busiest_minute(samples: &[Sample], window: Window) -> BTreeMap<String, f64> {
    let inside = window.samples(samples);
    let mut best: Option<BTreeMap<String, f64>> = None;
    for (i, first) in inside.iter().enumerate() {
        let Some(last) = inside[i..].iter().find(|s| s.at >= first.at + 60.0) else {
            break;
        };
        let rates = per_minute_between(first, last);
        if best.as_ref().is_none_or(|b| total(b) < total(&rates)) {
            best = Some(rates);
        }
    }
    best.unwrap_or_default()
}

fn per_minute_between(first: &Sample, last: &Sample) -> BTreeMap<String, f64> {
    let minutes = (last.at - first.at) / 60.0;
    last.requests
        .iter()
        .map(|(verb, count)| {
            let before = first.requests.get(verb).copied().unwrap_or(0.0);
            (verb.clone(), (count - before) / minutes)
        })
        .filter(|(_, rate)| *rate > 0.0)
        .collect()
}

/// The sum of a map's values.
pub fn total(by_verb: &BTreeMap<String, f64>) -> f64 {
    by_verb.values().sum()
}

/// CPU seconds the process spent over `window`.
pub fn cpu_seconds(samples: &[Sample], window: Window) -> f64 {
    let inside = window.samples(samples);
    match (inside.first(), inside.last()) {
        (Some(first), Some(last)) => last.cpu_s - first.cpu_s,
        _ => 0.0,
    }
}

/// The median resident memory over `window`, MiB.
pub fn median_rss(samples: &[Sample], window: Window) -> Option<f64> {
    let rss: Vec<f64> = window.samples(samples).iter().map(|s| s.rss_mib).collect();
    percentile(&rss, 50.0)
}

/// The highest peak resident memory of any process, MiB.
pub fn peak_rss(samples: &[Sample]) -> f64 {
    samples
        .iter()
        .map(|s| s.hwm_mib.max(s.rss_mib))
        .fold(0.0, f64::max)
}

/// CPU seconds for one hour of the schedule: `cycle_cpu_s` (every source started once, in a
/// cycle of `cycle_minutes`) plus the rest of the hour at the idle rate `steady_cpu_per_min`.
/// With `H * * * *` a cycle is the hour; a shorter cycle only compresses the starts.
pub fn cpu_per_hour(cycle_cpu_s: f64, cycle_minutes: f64, steady_cpu_per_min: f64) -> f64 {
    cycle_cpu_s + (60.0 - cycle_minutes).max(0.0) * steady_cpu_per_min
}

/// What a run measured; [`Summary::to_json`] is the line the benchmark ends with.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    /// ReplicationSources started.
    pub sources: usize,
    /// The schedule they ran.
    pub schedule: String,
    /// Peak resident memory of the operator, MiB.
    pub rss_peak_mib: f64,
    /// Median resident memory with every sync in flight and nothing due, MiB.
    pub rss_steady_mib: f64,
    /// CPU seconds for an hour of the schedule ([`cpu_per_hour`]).
    pub cpu_s_per_schedule_hour: f64,
    /// Requests per minute by verb with every sync in flight and nothing due.
    pub steady_by_verb: BTreeMap<String, f64>,
    /// Requests per minute by verb in the busiest minute of the starts.
    pub burst_by_verb: BTreeMap<String, f64>,
    /// Watches the operator holds open.
    pub watches: usize,
    /// Seconds from a sync being due to its Job existing: median.
    pub due_to_job_p50_s: Option<f64>,
    /// And 99th percentile.
    pub due_to_job_p99_s: Option<f64>,
    /// Jobs created in the busiest wall-clock minute.
    pub max_starts_per_minute: usize,
    /// Seconds from the restarted operator's start until it reconciled every source.
    pub resync_s: Option<f64>,
    /// What N syncs of one source left behind: syncs, Jobs, Pods, Events, conditions and the
    /// serialized status's size after the first and the last sync.
    pub bounded: Option<Bounded>,
    /// What the API server answered to every client over the run ([`Refusals::from_metrics`]).
    pub refusals: Refusals,
}

/// Requests the API server refused as conflicts (409) over a run, from its own
/// `apiserver_request_total`: a status apply decided on a stale copy, a create of an object
/// that exists.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Refusals {
    /// ReplicationSource status applies, all answers.
    pub status_applies: f64,
    /// Of those, refused with 409.
    pub status_applies_refused: f64,
    /// Creates (POST) of any resource refused with 409.
    pub creates_refused: f64,
}

impl Refusals {
    /// Reads them from the API server's `/metrics` text.
    pub fn from_metrics(text: &str) -> Self {
        // Any verb: a server-side apply is counted as `APPLY`, not `PATCH`.
        let status = [
            ("resource", "replicationsources"),
            ("subresource", "status"),
        ];
        let by_code = sum_by_label(text, "apiserver_request_total", "code", &status);
        let creates = sum_by_label(text, "apiserver_request_total", "code", &[("verb", "POST")]);
        Self {
            status_applies: by_code.values().sum(),
            status_applies_refused: by_code.get("409").copied().unwrap_or(0.0),
            creates_refused: creates.get("409").copied().unwrap_or(0.0),
        }
    }
}

/// What a series of syncs of one source left behind.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Bounded {
    /// Syncs completed.
    pub syncs: usize,
    /// Jobs left (the sync after the last, running).
    pub jobs: usize,
    /// Pods left.
    pub pods: usize,
    /// Events in the namespace.
    pub events: usize,
    /// Conditions in the status.
    pub conditions: usize,
    /// Serialized status after the first sync, bytes.
    pub status_bytes_first: usize,
    /// The largest serialized status after any sync, bytes.
    pub status_bytes_max: usize,
    /// The longest time between two syncs ending, seconds: a sync whose end woke nothing
    /// waits for the 5-minute safety timer.
    pub longest_sync_s: f64,
}

impl Summary {
    /// One line of JSON; rates rounded to whole requests a minute, times to 0.1 s.
    pub fn to_json(&self) -> String {
        let round = |v: f64| (v * 10.0).round() / 10.0;
        let verbs = |m: &BTreeMap<String, f64>| -> Value {
            m.iter()
                .map(|(verb, rate)| (verb.clone(), json!(rate.round())))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let bounded = self.bounded.as_ref().map(|b| {
            json!({
                "syncs": b.syncs, "jobs": b.jobs, "pods": b.pods, "events": b.events,
                "conditions": b.conditions, "status_bytes_first": b.status_bytes_first,
                "status_bytes_max": b.status_bytes_max,
                "longest_sync_s": round(b.longest_sync_s),
            })
        });
        json!({
            "sources": self.sources,
            "schedule": self.schedule,
            "rss_peak_mib": round(self.rss_peak_mib),
            "rss_steady_mib": round(self.rss_steady_mib),
            "cpu_s_per_schedule_hour": round(self.cpu_s_per_schedule_hour),
            "api_requests_per_min_steady": total(&self.steady_by_verb).round(),
            "api_requests_per_min_burst": total(&self.burst_by_verb).round(),
            "steady_by_verb": verbs(&self.steady_by_verb),
            "burst_by_verb": verbs(&self.burst_by_verb),
            "watches": self.watches,
            "due_to_job_p50_s": self.due_to_job_p50_s.map(round),
            "due_to_job_p99_s": self.due_to_job_p99_s.map(round),
            "max_starts_per_minute": self.max_starts_per_minute,
            "resync_s": self.resync_s.map(round),
            "bounded": bounded,
            "status_applies": self.refusals.status_applies,
            "status_applies_refused": self.refusals.status_applies_refused,
            "creates_refused": self.refusals.creates_refused,
        })
        .to_string()
    }
}

/// The schedule every source runs and its cycle in minutes: `H/n * * * *`, with `n` the
/// smallest divisor of 60 that keeps the starts near `per_minute` a minute, so 5,000 sources
/// start over 10 minutes (500 a minute, six times the rate of 5,000 on `H * * * *`) and a quick
/// run of 200 within one.
pub fn schedule_for(sources: usize, per_minute: usize) -> (String, u32) {
    let wanted = sources.div_ceil(per_minute.max(1));
    let cycle = [1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60]
        .into_iter()
        .find(|&n| n >= wanted)
        .unwrap_or(60);
    (format!("H/{cycle} * * * *"), cycle as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: f64, process: u32, requests: &[(&str, f64)]) -> Sample {
        Sample {
            at,
            process,
            requests: requests.iter().map(|(v, n)| (v.to_string(), *n)).collect(),
            ..Sample::default()
        }
    }

    fn verbs(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(v, n)| (v.to_string(), *n)).collect()
    }

    #[test]
    fn proc_fields() {
        let status = "Name:\tsluice-operator\nVmPeak:\t  300000 kB\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n";
        let cases = [
            ("VmRSS", Some(100.0)),
            ("VmHWM", Some(200.0)),
            ("VmSwap", None),
        ];
        for (field, mib) in cases {
            assert_eq!(proc_status_mib(status, field), mib, "{field}");
        }
        let stats = [
            (
                "42 (sluice-operator) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0",
                Some(175),
            ),
            // A name with spaces and a parenthesis.
            ("42 (a b) c) R 1 2 3 4 5 6 7 8 9 10 3 4 0 0", Some(7)),
            ("42 (short) S 1 2", None),
        ];
        for (stat, ticks) in stats {
            assert_eq!(proc_stat_ticks(stat), ticks, "{stat}");
        }
    }

    #[test]
    fn counters_summed_by_label() {
        let text = "# HELP sluice_api_requests Requests\n\
            # TYPE sluice_api_requests counter\n\
            sluice_api_requests_total{verb=\"get\",resource=\"jobs\"} 3\n\
            sluice_api_requests_total{verb=\"get\",resource=\"secrets\"} 4\n\
            sluice_api_requests_total{resource=\"pods\",verb=\"list\"} 2 1700000000\n\
            sluice_api_requests_total_other{verb=\"get\"} 100\n\
            sluice_reconcile_total{kind=\"ReplicationSource\"} 7\n\
            plain_total 5\n\
            # EOF\n";
        let get: &[(&str, &str)] = &[("verb", "get")];
        let cases = [
            (
                "sluice_api_requests_total",
                "verb",
                &[][..],
                verbs(&[("get", 7.0), ("list", 2.0)]),
            ),
            (
                "sluice_api_requests_total",
                "resource",
                get,
                verbs(&[("jobs", 3.0), ("secrets", 4.0)]),
            ),
            (
                "sluice_reconcile_total",
                "kind",
                &[],
                verbs(&[("ReplicationSource", 7.0)]),
            ),
            ("plain_total", "verb", &[], verbs(&[("", 5.0)])),
            ("plain_total", "verb", get, verbs(&[])),
            ("absent_total", "verb", &[], verbs(&[])),
        ];
        for (name, label, only, expected) in cases {
            assert_eq!(
                sum_by_label(text, name, label, only),
                expected,
                "{name} {only:?}"
            );
        }
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        let cases: [(&[f64], f64, Option<f64>); 6] = [
            (&[], 50.0, None),
            (&[3.0], 99.0, Some(3.0)),
            (&[5.0, 1.0, 3.0], 50.0, Some(3.0)),
            (&hundred, 50.0, Some(50.0)),
            (&hundred, 99.0, Some(99.0)),
            (&hundred, 0.0, Some(1.0)),
        ];
        for (values, p, expected) in cases {
            assert_eq!(percentile(values, p), expected, "p{p} of {values:?}");
        }
    }

    #[test]
    fn starts_per_wall_clock_minute() {
        /// Start times, and the starts counted in each minute.
        type Case = (&'static [i64], &'static [(i64, usize)]);
        let cases: [Case; 3] = [
            (&[], &[]),
            (&[60, 61, 119, 120], &[(60, 3), (120, 1)]),
            (&[-1, 0], &[(-60, 1), (0, 1)]),
        ];
        for (times, expected) in cases {
            let expected: BTreeMap<i64, usize> = expected.iter().copied().collect();
            assert_eq!(per_minute(times), expected, "{times:?}");
        }
    }

    #[test]
    fn rates_over_a_window_and_its_busiest_minute() {
        let samples = [
            sample(0.0, 0, &[("get", 0.0)]),
            sample(30.0, 0, &[("get", 10.0)]),
            sample(60.0, 0, &[("get", 20.0), ("patch", 0.0)]),
            sample(90.0, 0, &[("get", 140.0), ("patch", 30.0)]),
            sample(120.0, 0, &[("get", 150.0), ("patch", 30.0)]),
            // The restarted process counts from zero; it is not part of process 0's windows.
            sample(150.0, 1, &[("get", 1.0)]),
        ];
        let whole = Window {
            process: 0,
            from: 0.0,
            to: 1000.0,
        };
        assert_eq!(
            rate_per_minute(&samples, whole),
            verbs(&[("get", 75.0), ("patch", 15.0)])
        );
        // 30 s..90 s holds the jump: 130 gets and 30 patches.
        assert_eq!(
            busiest_minute(&samples, whole),
            verbs(&[("get", 130.0), ("patch", 30.0)])
        );
        let short = Window {
            process: 0,
            from: 0.0,
            to: 30.0,
        };
        assert_eq!(busiest_minute(&samples, short), verbs(&[]));
        assert_eq!(rate_per_minute(&samples, short), verbs(&[("get", 20.0)]));
        let empty = Window {
            process: 2,
            from: 0.0,
            to: 1000.0,
        };
        assert_eq!(rate_per_minute(&samples, empty), verbs(&[]));
    }

    #[test]
    fn cpu_and_memory_over_windows() {
        let mut samples = Vec::new();
        for (i, (rss, hwm, cpu)) in [(100.0, 120.0, 1.0), (110.0, 150.0, 4.0), (90.0, 150.0, 6.0)]
            .into_iter()
            .enumerate()
        {
            samples.push(Sample {
                at: i as f64 * 10.0,
                rss_mib: rss,
                hwm_mib: hwm,
                cpu_s: cpu,
                ..Sample::default()
            });
        }
        let window = |from, to| Window {
            process: 0,
            from,
            to,
        };
        assert_eq!(cpu_seconds(&samples, window(0.0, 20.0)), 5.0);
        assert_eq!(cpu_seconds(&samples, window(10.0, 20.0)), 2.0);
        assert_eq!(cpu_seconds(&samples, window(50.0, 60.0)), 0.0);
        assert_eq!(median_rss(&samples, window(0.0, 20.0)), Some(100.0));
        assert_eq!(median_rss(&samples, window(50.0, 60.0)), None);
        assert_eq!(peak_rss(&samples), 150.0);
        let cases = [
            (30.0, 10.0, 0.5, 55.0),
            (30.0, 60.0, 0.5, 30.0),
            (0.0, 1.0, 1.0, 59.0),
        ];
        for (cycle_cpu, cycle_minutes, steady, expected) in cases {
            assert_eq!(
                cpu_per_hour(cycle_cpu, cycle_minutes, steady),
                expected,
                "{cycle_cpu} {cycle_minutes} {steady}"
            );
        }
    }

    #[test]
    fn schedules_keep_the_start_rate() {
        let cases = [
            (5000, 500, "H/10 * * * *", 10),
            (200, 500, "H/1 * * * *", 1),
            (1, 500, "H/1 * * * *", 1),
            (2000, 500, "H/4 * * * *", 4),
            (3500, 500, "H/10 * * * *", 10),
            (100_000, 500, "H/60 * * * *", 60),
        ];
        for (sources, rate, schedule, cycle) in cases {
            assert_eq!(
                schedule_for(sources, rate),
                (schedule.to_string(), cycle),
                "{sources}"
            );
        }
    }

    #[test]
    fn summary_is_one_json_line_with_the_required_keys() {
        let summary = Summary {
            sources: 5000,
            schedule: "H/10 * * * *".into(),
            rss_peak_mib: 180.04,
            rss_steady_mib: 150.06,
            cpu_s_per_schedule_hour: 12.34,
            steady_by_verb: verbs(&[("patch", 0.4), ("update", 12.0)]),
            burst_by_verb: verbs(&[("create", 1000.2), ("get", 1500.0)]),
            watches: 5,
            due_to_job_p50_s: Some(1.04),
            due_to_job_p99_s: Some(3.26),
            max_starts_per_minute: 560,
            resync_s: None,
            bounded: Some(Bounded {
                syncs: 100,
                jobs: 1,
                ..Bounded::default()
            }),
            refusals: Refusals {
                status_applies: 300.0,
                status_applies_refused: 2.0,
                creates_refused: 0.0,
            },
        };
        let line = summary.to_json();
        assert!(!line.contains('\n'));
        let value: Value = serde_json::from_str(&line).unwrap();
        let cases = [
            ("sources", json!(5000)),
            ("rss_peak_mib", json!(180.0)),
            ("rss_steady_mib", json!(150.1)),
            ("api_requests_per_min_steady", json!(12.0)),
            ("api_requests_per_min_burst", json!(2500.0)),
            ("due_to_job_p50_s", json!(1.0)),
            ("due_to_job_p99_s", json!(3.3)),
            ("max_starts_per_minute", json!(560)),
            ("resync_s", Value::Null),
            ("watches", json!(5)),
            ("steady_by_verb", json!({"patch": 0.0, "update": 12.0})),
        ];
        for (key, expected) in cases {
            assert_eq!(value[key], expected, "{key} in {line}");
        }
        assert_eq!(value["bounded"]["syncs"], json!(100));
        assert_eq!(value["status_applies_refused"], json!(2.0));
    }

    #[test]
    fn refusals_are_read_from_the_api_servers_request_counter() {
        let text = r#"# HELP apiserver_request_total Counter
apiserver_request_total{code="200",component="apiserver",resource="replicationsources",subresource="status",verb="APPLY"} 40
apiserver_request_total{code="409",component="apiserver",resource="replicationsources",subresource="status",verb="APPLY"} 3
apiserver_request_total{code="409",component="apiserver",resource="replicationsources",subresource="",verb="PATCH"} 7
apiserver_request_total{code="201",component="apiserver",resource="jobs",subresource="",verb="POST"} 12
apiserver_request_total{code="409",component="apiserver",resource="jobs",subresource="",verb="POST"} 2
apiserver_request_total{code="409",component="apiserver",resource="events",subresource="",verb="POST"} 1
"#;
        assert_eq!(
            Refusals::from_metrics(text),
            Refusals {
                status_applies: 43.0,
                status_applies_refused: 3.0,
                creates_refused: 3.0,
            }
        );
    }
}
