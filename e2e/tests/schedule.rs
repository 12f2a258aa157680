//! Syncs over time: a cron schedule that fires at the right minutes with a
//! correct `nextSyncTime`, retention that leaves exactly what the policy
//! keeps (as restic sees it), prune stamped only when it ran, pausing,
//! sources sharing one repository waiting their turn, and repeated syncs of
//! one source leaving nothing behind that grows.

mod scenario;

use std::time::Duration;

use jiff::Timestamp;
use scenario::{OWNED, SYNC, manual_sync, merge_patch, source, trigger, write_sample};
use sluice_e2e::Stack;

#[test]
fn schedule_scenarios() {
    let stack = Stack::start();
    std::thread::scope(|scope| {
        scope.spawn(|| minute_schedule_syncs_twice_on_time(&stack));
        scope.spawn(|| retention_keeps_what_the_policy_says_and_prune_runs_on_its_interval(&stack));
        scope.spawn(|| paused_source_starts_nothing_until_resumed(&stack));
        scope.spawn(|| sources_sharing_a_repository_wait_their_turn(&stack));
        scope.spawn(|| repeated_syncs_leave_nothing_that_grows(&stack));
    });
}

fn time(value: &str) -> Timestamp {
    value
        .parse()
        .unwrap_or_else(|e| panic!("{value:?} is not a time: {e}"))
}

fn minute_schedule_syncs_twice_on_time(stack: &Stack) {
    let ns = "scheduled";
    stack.namespace(ns);
    stack.repository_secret(ns, "repo", "scheduled/repo", None);
    write_sample(&stack.claim(ns, "data"), "scheduled");
    stack.cluster.apply(
        "apiVersion: sluice.dev/v1alpha1
kind: ReplicationSource
metadata: {name: data, namespace: scheduled}
spec:
  sourcePVC: data
  trigger: {schedule: '* * * * *', timeZone: Europe/Berlin}
  restic:
    repository: repo
    copyMethod: Snapshot
    retain: {last: 5}
",
    );
    let object = "replicationsource/data";
    let next = stack.wait_field(ns, object, "{.status.nextSyncTime}", SYNC, |v| {
        !v.is_empty()
    });
    let first_due = time(&next);
    assert_eq!(
        first_due.as_second() % 60,
        0,
        "nextSyncTime on a minute: {next}"
    );
    let mut syncs = Vec::new();
    let two_minutes = Duration::from_secs(200);
    for round in 0..2 {
        let previous = syncs.last().cloned().unwrap_or_default();
        let finished = stack.wait_field(ns, object, "{.status.lastSyncTime}", two_minutes, |v| {
            !v.is_empty() && v != previous
        });
        let started = time(&stack.get(ns, object, "{.status.lastSyncStartTime}"));
        let due = first_due.as_second() + 60 * round;
        assert!(
            (due..due + 10).contains(&started.as_second()),
            "sync {round} started at {started}, due at {}",
            Timestamp::from_second(due).unwrap()
        );
        let next = time(&stack.get(ns, object, "{.status.nextSyncTime}"));
        assert_eq!(
            next.as_second() % 60,
            0,
            "nextSyncTime {next} is on a minute"
        );
        assert!(next > time(&finished), "nextSyncTime {next} after the sync");
        syncs.push(finished);
    }
    assert_eq!(stack.condition(ns, object, "Ready"), "True/SyncSucceeded");
    assert_eq!(stack.get(ns, object, "{.status.missedSyncs}"), "0");
    let snapshots = stack.run_restic("scheduled/repo", &["snapshots", "--json"]);
    assert!(snapshots.matches("\"id\"").count() >= 2, "{snapshots}");
    let metrics = stack.metrics();
    assert!(
        metrics.lines().any(|l| {
            l.starts_with("sluice_sync_duration_seconds_count")
                && l.contains("namespace=\"scheduled\"")
                && !l.ends_with(" 0")
        }),
        "no sync durations for scheduled/data:\n{metrics}"
    );
}

fn retention_keeps_what_the_policy_says_and_prune_runs_on_its_interval(stack: &Stack) {
    let ns = "retention";
    let bucket = "retention/repo";
    stack.namespace(ns);
    stack.repository_secret(ns, "repo", bucket, None);
    let data = stack.claim(ns, "data");
    write_sample(&data, "r0");
    stack.cluster.apply(
        &source(ns, "data", "Direct", "    pruneIntervalDays: 1\n")
            .replace("retain: {last: 10}", "retain: {last: 2}"),
    );
    let object = "replicationsource/data";
    stack.wait_field(ns, object, "{.status.lastManualSync}", SYNC, |v| v == "one");
    let first_prune = stack.get(ns, object, "{.status.restic.lastPruned}");
    assert!(!first_prune.is_empty(), "the first sync prunes");
    let mut ids = Vec::new();
    for round in ["r1", "r2", "r3"] {
        std::thread::sleep(Duration::from_millis(1100));
        write_sample(&data, round);
        ids.push(manual_sync(stack, ns, "data", round));
        // Pruned a moment ago; not due again for a day.
        assert_eq!(
            stack.get(ns, object, "{.status.restic.lastPruned}"),
            first_prune
        );
    }
    let listed = stack.run_restic(bucket, &["snapshots", "--json"]);
    let kept: Vec<&str> = ids[1..].iter().map(String::as_str).collect();
    for id in &ids {
        // By its own "id" field: a kept snapshot names a forgotten one as its parent.
        assert_eq!(
            listed.contains(&format!("\"id\":\"{id}\"")),
            kept.contains(&id.as_str()),
            "retain last 2 keeps exactly {kept:?}: {listed}"
        );
    }
    assert_eq!(listed.matches("\"id\"").count(), 2, "{listed}");
    stack.run_restic(bucket, &["check", "--read-data"]);
}

fn paused_source_starts_nothing_until_resumed(stack: &Stack) {
    let ns = "paused";
    stack.namespace(ns);
    stack.repository_secret(ns, "repo", "paused/repo", None);
    write_sample(&stack.claim(ns, "data"), "paused");
    stack.cluster.apply(
        &source(ns, "data", "Direct", "")
            .replace("  sourcePVC: data\n", "  sourcePVC: data\n  paused: true\n"),
    );
    let object = "replicationsource/data";
    let reason = "{.status.conditions[?(@.type==\"Reconciling\")].reason}";
    stack.wait_field(ns, object, reason, SYNC, |v| v == "Paused");
    trigger(stack, ns, object, "two");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(stack.get(ns, object, "{.status.lastManualSync}"), "");
    assert_eq!(stack.get(ns, object, "{.status.nextSyncTime}"), "");
    stack.wait_field(ns, OWNED.0, OWNED.1, Duration::from_secs(5), |v| {
        v == "data"
    });
    merge_patch(stack, ns, object, r#"{"spec":{"paused":false}}"#);
    stack.wait_field(ns, object, "{.status.lastManualSync}", SYNC, |v| v == "two");
}

/// One sync's times, as its status says.
struct Run {
    name: &'static str,
    started: Timestamp,
    ended: Timestamp,
}

fn sources_sharing_a_repository_wait_their_turn(stack: &Stack) {
    let ns = "queue";
    let bucket = "queue/repo";
    stack.namespace(ns);
    stack.repository_secret(ns, "repo", bucket, None);
    stack.run_restic(bucket, &["init"]);
    let names = ["a", "b", "c"];
    let manifests: Vec<String> = names
        .iter()
        .map(|name| {
            write_sample(&stack.claim(ns, name), name);
            source(ns, name, "Direct", "").replace("sourcePVC: data", &format!("sourcePVC: {name}"))
        })
        .collect();
    // All three at once. A source's first sync prunes, and a prune runs alone in its
    // repository: the three run one after the other, the others waiting as Queued.
    stack.cluster.apply(&manifests.join("---\n"));
    // Each waiting source's first place in line and message.
    let mut first_place: Vec<(&str, usize, String)> = Vec::new();
    let deadline = std::time::Instant::now() + 3 * SYNC;
    let reconciling = "{.status.conditions[?(@.type==\"Reconciling\")].reason}|{.status.conditions[?(@.type==\"Reconciling\")].message}";
    loop {
        for name in names {
            let object = format!("replicationsource/{name}");
            let seen = stack.get(ns, &object, reconciling);
            if let Some(message) = seen.strip_prefix("Queued|")
                && !first_place.iter().any(|(n, ..)| *n == name)
            {
                // "waiting for repository URL: 2 of 2 in line; ..."
                let position = message
                    .split(": ")
                    .nth(1)
                    .and_then(|place| place.split(" of ").next())
                    .and_then(|position| position.parse().ok())
                    .unwrap_or_else(|| panic!("a queued sync says where it stands: {message}"));
                first_place.push((name, position, message.to_string()));
            }
        }
        let done = names.iter().all(|name| {
            stack.get(
                ns,
                &format!("replicationsource/{name}"),
                "{.status.lastManualSync}",
            ) == "one"
        });
        if done {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the three syncs did not finish; queued: {first_place:?}\n{}",
            stack.diagnose(ns, "replicationsource/a")
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let mut runs: Vec<Run> = names
        .iter()
        .map(|name| {
            let object = format!("replicationsource/{name}");
            Run {
                name,
                started: time(&stack.get(ns, &object, "{.status.lastSyncStartTime}")),
                ended: time(&stack.get(ns, &object, "{.status.lastSyncTime}")),
            }
        })
        .collect();
    runs.sort_by_key(|run| run.started);
    for pair in runs.windows(2) {
        assert!(
            pair[1].started >= pair[0].ended,
            "{} started at {} while {} ran until {}: a prune runs alone",
            pair[1].name,
            pair[1].started,
            pair[0].name,
            pair[0].ended
        );
    }
    assert_eq!(
        first_place.len(),
        2,
        "the two that did not start first waited as Queued: {first_place:?}"
    );
    assert!(
        first_place
            .iter()
            .all(|(.., message)| message.contains("the prune or check of ReplicationSource queue/")),
        "{first_place:?}"
    );
    // Those waiting started in the order they came into line.
    let waited: Vec<&str> = runs[1..].iter().map(|run| run.name).collect();
    first_place.sort_by_key(|(_, position, _)| *position);
    let lined_up: Vec<&str> = first_place.iter().map(|(name, ..)| *name).collect();
    assert_eq!(waited, lined_up, "{first_place:?}");
    let snapshots = stack.run_restic(bucket, &["snapshots", "--json"]);
    assert_eq!(snapshots.matches("\"short_id\"").count(), 3, "{snapshots}");
    stack.run_restic(bucket, &["check"]);
    // Nothing waits or runs any more: the repository's gauges are gone.
    let metrics = stack.metrics();
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("sluice_repository_syncs{") && l.contains("/queue/repo\"")),
        "{metrics}"
    );
}

/// Syncs of one source on the real node in this scenario; `make bench-operator` runs 100
/// (mover Pods ended through the Pod status API): 100 here would take a quarter of an hour.
const REPEATED_SYNCS: usize = 6;

/// After each of [`REPEATED_SYNCS`] syncs (issue 17.5): no Job or mover Pod is left, the
/// status keeps its four conditions and does not grow, and the events are the two each sync
/// announces (`SyncStarted`, `SyncSucceeded`), repeats folded into an Event series; the API
/// server's event TTL bounds the rest.
fn repeated_syncs_leave_nothing_that_grows(stack: &Stack) {
    let ns = "repeated";
    stack.namespace(ns);
    stack.repository_secret(ns, "repo", "repeated/repo", None);
    write_sample(&stack.claim(ns, "data"), "repeated");
    stack.cluster.apply(&source(ns, "data", "Direct", ""));
    let object = "replicationsource/data";
    stack.wait_field(ns, object, "{.status.lastManualSync}", SYNC, |v| v == "one");
    let status_size = || stack.get(ns, object, "{.status}").len();
    let conditions = "{.status.conditions[*].type}";
    let mut sizes = vec![status_size()];
    for round in 2..=REPEATED_SYNCS {
        manual_sync(stack, ns, "data", &format!("sync-{round}"));
        stack.wait_field(ns, "jobs,pods", "{.items[*].metadata.name}", SYNC, |v| {
            v.is_empty()
        });
        assert_eq!(
            stack.get(ns, object, conditions),
            "Ready Reconciling Stalled Degraded",
            "after sync {round}"
        );
        sizes.push(status_size());
    }
    // Job names and times have fixed widths; a duration, a count or the manual value may
    // gain a few characters, a list that grew would add a hundred.
    let first = sizes[0];
    assert!(
        sizes.iter().all(|size| *size <= first + 32),
        "the status grew over {REPEATED_SYNCS} syncs: {sizes:?} bytes"
    );
    // Sluice's own events (the Job controller, scheduler and kubelet add theirs). An event
    // that repeats within minutes is one Event whose series counts it.
    let events = stack.cluster.kubectl(&[
        "get",
        "events.events.k8s.io",
        "-n",
        ns,
        "-o",
        "jsonpath={range .items[?(@.reportingController==\"sluice-operator\")]}{.reason}:{.series.count}{\"\\n\"}{end}",
    ]);
    let mut occurrences: Vec<(String, usize)> = Vec::new();
    for line in events.lines().filter(|l| !l.is_empty()) {
        let (reason, count) = line.split_once(':').unwrap_or((line, ""));
        occurrences.push((reason.to_string(), count.parse().unwrap_or(1)));
    }
    let count = |reason: &str| -> usize {
        occurrences
            .iter()
            .filter(|(r, _)| r == reason)
            .map(|(_, n)| n)
            .sum()
    };
    assert_eq!(count("SyncStarted"), REPEATED_SYNCS, "{events}");
    assert_eq!(count("SyncSucceeded"), REPEATED_SYNCS, "{events}");
    assert!(
        occurrences.len() <= 2 * REPEATED_SYNCS
            && occurrences.iter().all(|(r, _)| r.starts_with("Sync")),
        "no other events of Sluice's, at most one Event object per announcement: {events}"
    );
    let snapshots = stack.run_restic("repeated/repo", &["snapshots", "--json"]);
    assert_eq!(
        snapshots.matches("\"short_id\"").count(),
        REPEATED_SYNCS,
        "retain last 10 keeps every snapshot: {snapshots}"
    );
}
