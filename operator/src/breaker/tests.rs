use super::*;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

fn syncer(name: &str) -> Syncer {
    Syncer {
        kind: "ReplicationSource".into(),
        namespace: "apps".into(),
        name: name.into(),
    }
}

const REPO: &str = "s3:http://minio/bucket";

fn breakers() -> Breakers {
    Breakers::new(ProbePolicy::default())
}

fn probe_name(gate: &Gate) -> Option<&str> {
    match gate {
        Gate::Probe { job_name, .. } => Some(job_name),
        _ => None,
    }
}

#[test]
fn probe_delays_double_then_cap() {
    let policy = ProbePolicy::default();
    let delays: Vec<u64> = (0..8).map(|n| policy.delay(n).as_secs()).collect();
    assert_eq!(delays, [30, 60, 120, 240, 480, 600, 600, 600]);
    assert_eq!(policy.delay(u32::MAX), policy.max);
}

#[test]
fn only_an_unreachable_backend_trips() {
    let cases = [
        (ErrorClass::Network, true),
        (ErrorClass::WrongPassword, false),
        (ErrorClass::RepositoryNotFound, false),
        (ErrorClass::Locked, false),
        (ErrorClass::NoSnapshot, false),
        (ErrorClass::Corrupt, false),
        (ErrorClass::Config, false),
        (ErrorClass::VolumeModeMismatch, false),
        (ErrorClass::Internal, false),
    ];
    for (class, trip) in cases {
        assert_eq!(trips(class), trip, "{class:?}");
    }
}

#[test]
fn a_closed_breaker_lets_every_sync_through() {
    let mut b = breakers();
    assert_eq!(b.gate(REPO, &syncer("a"), at(0)), Gate::Pass);
    assert!(!b.is_open(REPO));
    assert_eq!(b.close(REPO), None);
}

#[test]
fn an_open_breaker_parks_syncs_and_lets_one_probe_through_per_step() {
    let mut b = breakers();
    assert!(b.trip(REPO, "connection refused", at(0)));
    assert!(
        !b.trip(REPO, "connection refused again", at(1)),
        "already open"
    );
    assert!(b.is_open(REPO));
    // Before the first step: parked, no probe.
    let Gate::Parked(parked) = b.gate(REPO, &syncer("a"), at(10)) else {
        panic!("a sync due during an outage is parked");
    };
    assert_eq!(parked.cause, "connection refused");
    assert_eq!(parked.next_probe, at(30));
    assert_eq!(parked.probing, None);
    assert!(matches!(
        b.gate(REPO, &syncer("b"), at(11)),
        Gate::Parked(_)
    ));
    // At the step: the first sync looked at runs the probe, the others stay parked.
    let gate = b.gate(REPO, &syncer("b"), at(30));
    let job = probe_name(&gate).expect("a probe is due").to_string();
    assert!(job.starts_with("sluice-probe-b-"), "{job}");
    let Gate::Parked(parked) = b.gate(REPO, &syncer("a"), at(31)) else {
        panic!("one probe at a time");
    };
    assert_eq!(parked.probing.as_deref(), Some(job.as_str()));
    assert_eq!(parked.parked, 2);
    assert_eq!(
        b.probe_of(&syncer("b")).map(|(r, p)| (r, p.job_name)),
        Some((REPO.into(), job.clone()))
    );
    assert_eq!(b.probe_of(&syncer("a")), None);
    // It fails: the next step is twice as far.
    assert_eq!(
        b.probe_ended(REPO, &job, false, "connection refused", at(40)),
        Some(ProbeEnd::StillDown {
            next_probe: at(100),
            failed_probes: 1
        })
    );
    let Gate::Parked(parked) = b.gate(REPO, &syncer("a"), at(99)) else {
        panic!("parked until the second step");
    };
    assert_eq!(parked.last_probe.as_deref(), Some("connection refused"));
    let gate = b.gate(REPO, &syncer("a"), at(100));
    let second = probe_name(&gate)
        .expect("the second step probes")
        .to_string();
    // A report of the first probe again changes nothing.
    assert_eq!(b.probe_ended(REPO, &job, true, "answers", at(101)), None);
    assert!(b.is_open(REPO));
    // It reaches the backend: closed, the parked syncs woken in the order they were parked.
    assert_eq!(
        b.probe_ended(REPO, &second, true, "answers", at(105)),
        Some(ProbeEnd::Healed {
            since: at(0),
            woken: vec![syncer("a"), syncer("b")]
        })
    );
    assert!(!b.is_open(REPO));
    assert_eq!(b.gate(REPO, &syncer("a"), at(106)), Gate::Pass);
}

#[test]
fn a_probe_that_never_reports_counts_as_failed_at_its_deadline() {
    let mut b = breakers();
    b.trip(REPO, "timeout", at(0));
    let job = probe_name(&b.gate(REPO, &syncer("a"), at(30)))
        .unwrap()
        .to_string();
    let deadline = 30 + PROBE_DEADLINE.as_secs() as i64;
    assert!(matches!(
        b.gate(REPO, &syncer("b"), at(deadline - 1)),
        Gate::Parked(_)
    ));
    // At the deadline it is given up, and the next step (60 s on) waits.
    let Gate::Parked(parked) = b.gate(REPO, &syncer("b"), at(deadline)) else {
        panic!("the lost probe is given up, the next waits for its step");
    };
    assert_eq!(parked.failed_probes, 1);
    assert_eq!(parked.next_probe, at(deadline + 60));
    assert_eq!(
        b.probe_ended(REPO, &job, true, "late", at(deadline + 1)),
        None
    );
    assert!(probe_name(&b.gate(REPO, &syncer("b"), at(deadline + 60))).is_some());
}

#[test]
fn a_successful_sync_closes_the_breaker_and_wakes_the_parked() {
    let mut b = breakers();
    b.trip(REPO, "503", at(0));
    b.gate(REPO, &syncer("c"), at(5));
    b.gate(REPO, &syncer("a"), at(6));
    assert_eq!(b.close(REPO), Some(vec![syncer("c"), syncer("a")]));
    assert!(!b.is_open(REPO));
    assert!(b.open_repositories().is_empty());
}

#[test]
fn repositories_have_breakers_of_their_own() {
    let mut b = breakers();
    b.trip(REPO, "503", at(0));
    assert_eq!(
        b.gate("s3:http://other/bucket", &syncer("a"), at(1)),
        Gate::Pass
    );
    assert_eq!(b.open_repositories(), vec![REPO.to_string()]);
}

#[test]
fn the_parked_condition_says_since_when_why_and_what_next() {
    let parked = Parked {
        since: at(0),
        cause: "connection refused".into(),
        next_probe: at(30),
        probing: None,
        failed_probes: 0,
        last_probe: None,
        parked: 3,
    };
    let message = parked.describe(REPO);
    assert!(
        message.starts_with(&format!(
            "repository {REPO} unreachable since {}: connection refused",
            at(0)
        )),
        "{message}"
    );
    assert!(
        message.contains("3 syncs parked without a Job"),
        "{message}"
    );
    assert!(
        message.contains(&format!("next probe at {}", at(30))),
        "{message}"
    );
    let probing = Parked {
        probing: Some("sluice-probe-a-1".into()),
        failed_probes: 2,
        last_probe: Some("503 Service Unavailable".into()),
        ..parked
    };
    let message = probing.describe(REPO);
    assert!(message.contains("2 probes failed (last: 503 Service Unavailable), probe Job sluice-probe-a-1 is checking it now"), "{message}");
}
