//! Conditions, and what each decision writes into the status both kinds share.

use super::*;
use crate::decide::Waiting;
use crate::testing::{at, backup_plan as plan};
use sluice_api::mover_result::MoverResult;

#[test]
fn transition_time_moves_only_when_status_flips() {
    let mut conditions = Vec::new();
    let t1 = at("2026-11-22T10:00:00Z");
    let t2 = at("2026-11-22T11:00:00Z");
    let t3 = at("2026-11-22T12:00:00Z");
    failed(
        &mut conditions,
        reason::NETWORK_ERROR,
        "down",
        true,
        Some(1),
        t1,
    );
    failed(
        &mut conditions,
        reason::NETWORK_ERROR,
        "still down",
        true,
        Some(1),
        t2,
    );
    let degraded = condition(&conditions, conditions::DEGRADED).unwrap();
    assert_eq!(degraded.last_transition_time, Time(t1));
    assert_eq!(degraded.message, "still down");
    succeeded(
        &mut conditions,
        "ok",
        reason::WAITING_FOR_SCHEDULE,
        Some(1),
        t3,
    );
    let degraded = condition(&conditions, conditions::DEGRADED).unwrap();
    assert_eq!(degraded.status, "False");
    assert_eq!(degraded.last_transition_time, Time(t3));
    assert_eq!(conditions.len(), 4);
}

#[test]
fn retryable_failure_shows_backoff_permanent_shows_the_reason() {
    let mut conditions = Vec::new();
    let now = at("2026-11-22T10:00:00Z");
    failed(&mut conditions, reason::NETWORK_ERROR, "x", true, None, now);
    let kstatus = |conditions: &[Condition]| {
        [conditions::RECONCILING, conditions::STALLED].map(|type_| {
            let c = condition(conditions, type_).unwrap();
            format!("{}/{}", c.status, c.reason)
        })
    };
    assert_eq!(
        kstatus(&conditions),
        ["True/Backoff", "False/NetworkError"],
        "a retry is scheduled: reconciling, not stalled"
    );
    failed(
        &mut conditions,
        reason::WRONG_PASSWORD,
        "x",
        false,
        None,
        now,
    );
    assert_eq!(
        kstatus(&conditions),
        ["False/WrongPassword", "True/WrongPassword"],
        "only a change helps: stalled"
    );
    assert_eq!(
        condition(&conditions, conditions::READY).unwrap().status,
        "False"
    );
}

#[test]
fn a_new_object_gets_all_four_conditions_while_waiting() {
    let mut conditions = Vec::new();
    waiting(
        &mut conditions,
        reason::WAITING_FOR_SCHEDULE,
        "next at 11:00",
        Some(1),
        at("2026-11-22T10:00:00Z"),
    );
    assert_eq!(conditions.len(), 4);
    reconciling(
        &mut conditions,
        reason::MOVER_RUNNING,
        "job x",
        Some(1),
        at("2026-11-22T11:00:00Z"),
    );
    let sync = condition(&conditions, conditions::RECONCILING).unwrap();
    assert_eq!(
        (sync.status.as_str(), sync.reason.as_str()),
        ("True", reason::MOVER_RUNNING)
    );
}

const NOW: &str = "2026-11-22T10:01:30.5Z";

fn moment<'a>(plan: Option<&'a SyncPlan>, summary: &'a str) -> Moment<'a> {
    Moment {
        now: at(NOW),
        generation: Some(3),
        noun: "sync",
        plan,
        manual_trigger: true,
        summary,
    }
}

fn after(status: &SyncStatus, decision: &Decision, moment: &Moment) -> SyncStatus {
    let mut status = status.clone();
    transition(&mut status, decision, moment);
    status
}

fn reason_of(status: &SyncStatus, type_: &str) -> (String, String) {
    let condition = condition(&status.conditions, type_).unwrap_or_else(|| panic!("no {type_}"));
    (condition.status.clone(), condition.reason.clone())
}

fn message_of(status: &SyncStatus, type_: &str) -> String {
    condition(&status.conditions, type_)
        .unwrap()
        .message
        .clone()
}

fn pair(status: &str, reason: &str) -> (String, String) {
    (status.to_string(), reason.to_string())
}

#[test]
fn decisions_that_only_look_change_nothing() {
    let status = SyncStatus {
        consecutive_failures: Some(1),
        next_sync_time: Some(Time(at("2026-11-22T10:05:00Z"))),
        ..Default::default()
    };
    for decision in [
        Decision::ReadSecret,
        Decision::Blocked,
        Decision::BackingOff(at("2026-11-22T10:05:00Z")),
        Decision::Create(crate::decide::NewObject::Claim(Default::default())),
    ] {
        assert_eq!(
            after(&status, &decision, &moment(None, "")),
            status,
            "{decision:?}"
        );
    }
}

#[test]
fn waits_say_what_they_wait_for() {
    let scheduled = SyncStatus {
        next_sync_time: Some(Time(at("2026-11-22T11:00:00Z"))),
        ..Default::default()
    };
    let paused = after(&scheduled, &Decision::Paused, &moment(None, ""));
    assert_eq!(paused.next_sync_time, None, "paused shows no next time");
    assert_eq!(
        reason_of(&paused, conditions::RECONCILING),
        pair("False", reason::PAUSED)
    );
    assert_eq!(
        reason_of(&paused, conditions::READY),
        pair("False", reason::PAUSED)
    );

    let next = at("2026-11-22T12:00:00Z");
    let waiting = after(
        &scheduled,
        &Decision::WaitForSchedule(next),
        &moment(None, ""),
    );
    assert_eq!(waiting.next_sync_time, Some(Time(next)));
    assert_eq!(
        message_of(&waiting, conditions::RECONCILING),
        "next sync at 2026-11-22T12:00:00Z"
    );

    for (manual_trigger, message) in [
        (true, "waiting for spec.trigger.manual to change"),
        (false, "waiting for a spec change or spec.trigger.manual"),
    ] {
        let at_moment = Moment {
            manual_trigger,
            ..moment(None, "")
        };
        let waiting = after(&scheduled, &Decision::WaitForTrigger, &at_moment);
        assert_eq!(waiting.next_sync_time, None);
        assert_eq!(
            reason_of(&waiting, conditions::RECONCILING),
            pair("False", reason::WAITING_FOR_MANUAL)
        );
        assert_eq!(message_of(&waiting, conditions::RECONCILING), message);
    }
}

#[test]
fn a_destination_serving_only_populators_is_ready_and_says_so() {
    let status = after(
        &SyncStatus::default(),
        &Decision::ServesPopulators,
        &moment(None, ""),
    );
    for (type_, state) in [
        (conditions::READY, "True"),
        (conditions::RECONCILING, "False"),
        (conditions::STALLED, "False"),
        (conditions::DEGRADED, "False"),
    ] {
        assert_eq!(
            reason_of(&status, type_),
            pair(state, reason::SERVES_POPULATORS),
            "{type_}"
        );
    }
    assert_eq!(status.observed_generation, Some(3));
    assert!(message_of(&status, conditions::READY).contains("dataSourceRef"));
}

#[test]
fn an_invalid_schedule_is_degraded_without_a_retry() {
    let status = after(
        &SyncStatus::default(),
        &Decision::InvalidSchedule("spec.trigger.schedule is bad".into()),
        &moment(None, ""),
    );
    assert_eq!(
        reason_of(&status, conditions::READY),
        pair("False", reason::MOVER_CONFIG_INVALID)
    );
    assert_eq!(
        reason_of(&status, conditions::DEGRADED),
        pair("True", reason::MOVER_CONFIG_INVALID)
    );
    assert_eq!(
        reason_of(&status, conditions::RECONCILING),
        pair("False", reason::MOVER_CONFIG_INVALID),
        "no Backoff: only a fix helps"
    );
    assert_eq!(
        reason_of(&status, conditions::STALLED),
        pair("True", reason::MOVER_CONFIG_INVALID)
    );
    assert_eq!(status.next_sync_time, None);
    assert_eq!(status.observed_generation, Some(3));
}

#[test]
fn an_invalid_secret_counts_a_failure_that_waits_for_a_change() {
    let status = after(
        &SyncStatus::default(),
        &Decision::SecretInvalid {
            message: "repository Secret apps/repo not found".into(),
            failures: 2,
        },
        &moment(None, ""),
    );
    assert_eq!(status.consecutive_failures, Some(2));
    assert_eq!(status.last_sync_start_time, Some(Time(at(NOW))));
    assert_eq!(status.next_sync_time, None);
    assert_eq!(status.observed_generation, Some(3));
    assert_eq!(
        reason_of(&status, conditions::DEGRADED),
        pair("True", reason::SECRET_INVALID)
    );
    assert_eq!(
        reason_of(&status, conditions::STALLED),
        pair("True", reason::SECRET_INVALID)
    );
    let message = message_of(&status, conditions::READY);
    assert!(
        message.starts_with("repository Secret apps/repo not found; retrying cannot help"),
        "{message}"
    );
}

#[test]
fn a_start_records_the_plan_and_the_missed_times() {
    let plan = plan();
    let status = SyncStatus {
        missed_syncs: Some(4),
        ..Default::default()
    };
    let next = at("2026-11-22T11:00:00Z");
    let started = after(
        &status,
        &Decision::Start {
            next: Some(next),
            missed: 2,
        },
        &moment(Some(&plan), ""),
    );
    assert_eq!(started.sync_plan, Some(plan.clone()));
    assert_eq!(started.last_sync_start_time, Some(plan.started_at.clone()));
    assert_eq!(started.next_sync_time, Some(Time(next)));
    assert_eq!(started.missed_syncs, Some(6));
    assert_eq!(
        reason_of(&started, conditions::RECONCILING),
        pair("True", reason::MOVER_RUNNING)
    );
    assert_eq!(
        message_of(&started, conditions::RECONCILING),
        "sync sluice-src-db-1 started"
    );
    let running = after(&started, &Decision::Running, &moment(Some(&plan), ""));
    assert_eq!(
        message_of(&running, conditions::RECONCILING),
        "mover Job sluice-src-db-1 running"
    );
    let waiting = Waiting {
        reason: reason::WAITING_FOR_PVC,
        message: "waiting for PVC x (the point-in-time copy) to be bound".into(),
        action: "Copy",
        warning: String::new(),
    };
    let waits = after(
        &started,
        &Decision::Wait {
            waiting: waiting.clone(),
            warn_at: at(NOW),
        },
        &moment(Some(&plan), ""),
    );
    assert_eq!(
        reason_of(&waits, conditions::RECONCILING),
        pair("True", reason::WAITING_FOR_PVC)
    );
    assert_eq!(message_of(&waits, conditions::RECONCILING), waiting.message);
    assert_eq!(waits.sync_plan, Some(plan), "waiting keeps the plan");
}

fn finish(result: MoverResult, verdict: Verdict) -> Decision {
    Decision::Finish(Outcome {
        result,
        verdict,
        image: None,
    })
}

#[test]
fn a_success_ends_the_sync_and_clears_the_failures() {
    let plan = plan();
    // The sync started on generation 2; the spec changed to 3 while it ran.
    let status = SyncStatus {
        observed_generation: Some(2),
        consecutive_failures: Some(2),
        sync_plan: Some(plan.clone()),
        last_manual_sync: Some("m0".into()),
        ..Default::default()
    };
    let result = MoverResult {
        message: Some("added 1 KiB".into()),
        ..Default::default()
    };
    let next = at("2026-11-22T11:00:00Z");
    let done = after(
        &status,
        &finish(result, Verdict::Succeeded { next: Some(next) }),
        &moment(Some(&plan), "snapshot aaaaaaaa: 3 new"),
    );
    assert_eq!(done.sync_plan, None);
    assert_eq!(done.consecutive_failures, None);
    assert_eq!(done.last_sync_time, Some(Time(at(NOW))));
    assert_eq!(done.last_sync_duration.unwrap().to_string(), "90.5s");
    assert_eq!(done.last_manual_sync.as_deref(), Some("m1"));
    assert_eq!(done.next_sync_time, Some(Time(next)));
    assert_eq!(
        done.observed_generation,
        Some(2),
        "the spec the sync ran; generation 3 is observed when the next decision is written"
    );
    let mover = done.latest_mover_status.clone().unwrap();
    assert_eq!(mover.result, MoverOutcome::Successful);
    assert_eq!(mover.logs.as_deref(), Some("added 1 KiB"));
    assert_eq!(
        reason_of(&done, conditions::READY),
        pair("True", reason::SYNC_SUCCEEDED)
    );
    assert_eq!(
        message_of(&done, conditions::READY),
        "snapshot aaaaaaaa: 3 new"
    );
    assert_eq!(
        reason_of(&done, conditions::DEGRADED),
        pair("False", reason::SYNC_SUCCEEDED)
    );
    assert_eq!(
        reason_of(&done, conditions::RECONCILING),
        pair("False", reason::WAITING_FOR_SCHEDULE)
    );
    let unscheduled = after(
        &status,
        &finish(MoverResult::default(), Verdict::Succeeded { next: None }),
        &moment(Some(&plan), "ok"),
    );
    assert_eq!(
        reason_of(&unscheduled, conditions::RECONCILING),
        pair("False", reason::WAITING_FOR_MANUAL)
    );
}

#[test]
fn a_failure_counts_up_keeps_the_last_success_and_says_when_it_retries() {
    let plan = plan();
    let last_success = Some(Time(at("2026-11-22T09:00:00Z")));
    let status = SyncStatus {
        consecutive_failures: Some(1),
        sync_plan: Some(plan.clone()),
        last_sync_time: last_success.clone(),
        last_manual_sync: Some("m0".into()),
        ..Default::default()
    };
    let result = MoverResult {
        error_class: Some(ErrorClass::Network),
        message: Some("connection refused".into()),
        ..Default::default()
    };
    let retrying = Verdict::Failed {
        reason: reason::NETWORK_ERROR,
        failures: 2,
        retry: Retry::After(std::time::Duration::from_secs(60)),
    };
    let failed = after(
        &status,
        &finish(result.clone(), retrying),
        &moment(Some(&plan), ""),
    );
    assert_eq!(failed.sync_plan, None);
    assert_eq!(failed.consecutive_failures, Some(2));
    assert_eq!(failed.last_sync_time, last_success);
    assert_eq!(
        failed.last_manual_sync.as_deref(),
        Some("m0"),
        "a failed sync answers nothing"
    );
    assert_eq!(
        failed.next_sync_time,
        Some(Time(at("2026-11-22T10:02:30.5Z"))),
        "the retry, 60 s on"
    );
    let mover = failed.latest_mover_status.clone().unwrap();
    assert_eq!(mover.result, MoverOutcome::Failed);
    assert_eq!(mover.logs.as_deref(), Some("connection refused"));
    assert_eq!(
        reason_of(&failed, conditions::READY),
        pair("False", reason::NETWORK_ERROR)
    );
    assert_eq!(
        reason_of(&failed, conditions::RECONCILING),
        pair("True", reason::BACKOFF)
    );
    assert_eq!(
        reason_of(&failed, conditions::STALLED),
        pair("False", reason::NETWORK_ERROR)
    );
    assert_eq!(
        message_of(&failed, conditions::DEGRADED),
        "connection refused (Job sluice-src-db-1); retry 2 at 2026-11-22T10:02:30.5Z"
    );

    let permanent = Verdict::Failed {
        reason: reason::WRONG_PASSWORD,
        failures: 2,
        retry: Retry::WaitForChange,
    };
    let blocked = after(
        &status,
        &finish(
            MoverResult {
                error_class: Some(ErrorClass::WrongPassword),
                message: None,
                ..Default::default()
            },
            permanent,
        ),
        &moment(Some(&plan), ""),
    );
    assert_eq!(blocked.next_sync_time, None);
    assert_eq!(
        reason_of(&blocked, conditions::RECONCILING),
        pair("False", reason::WRONG_PASSWORD)
    );
    assert_eq!(
        reason_of(&blocked, conditions::STALLED),
        pair("True", reason::WRONG_PASSWORD)
    );
    assert!(
        message_of(&blocked, conditions::DEGRADED)
            .starts_with("sync failed: WrongPassword (Job sluice-src-db-1); retrying cannot help"),
        "a result without a message says what failed"
    );
}

#[test]
fn every_condition_describes_the_current_generation_and_old_types_go() {
    let old = Condition {
        type_: "Synchronizing".into(),
        status: "False".into(),
        reason: reason::WAITING_FOR_SCHEDULE.into(),
        message: String::new(),
        observed_generation: Some(1),
        last_transition_time: Time(at("2026-11-22T09:00:00Z")),
    };
    let status = SyncStatus {
        observed_generation: Some(1),
        conditions: vec![old],
        ..Default::default()
    };
    let next = at("2026-11-22T11:00:00Z");
    let waiting = after(&status, &Decision::WaitForSchedule(next), &moment(None, ""));
    let types: Vec<(&str, Option<i64>)> = waiting
        .conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.observed_generation))
        .collect();
    assert_eq!(
        types,
        [
            ("Ready", Some(3)),
            ("Reconciling", Some(3)),
            ("Stalled", Some(3)),
            ("Degraded", Some(3)),
        ]
    );
    assert_eq!(
        waiting.observed_generation,
        Some(3),
        "the new spec is observed"
    );
}

#[test]
fn a_start_observes_the_generation_it_runs() {
    let plan = plan();
    let started = after(
        &SyncStatus {
            observed_generation: Some(1),
            ..Default::default()
        },
        &Decision::Start {
            next: None,
            missed: 0,
        },
        &moment(Some(&plan), ""),
    );
    assert_eq!(started.observed_generation, Some(3));
    assert_eq!(
        reason_of(&started, conditions::STALLED),
        pair("False", reason::MOVER_RUNNING),
        "a sync under way is progress"
    );
}

#[test]
fn a_queued_sync_is_reconciling_and_says_where_it_stands() {
    let status = SyncStatus {
        observed_generation: Some(2),
        ..Default::default()
    };
    let place = crate::queue::Place {
        position: 2,
        waiting: 3,
        blocked_by: crate::queue::Blocker::Full { running: 4 },
    };
    let queued = after(
        &status,
        &Decision::Queued {
            repository: "s3:http://minio:9000/backups".into(),
            place: place.clone(),
            max: 4,
        },
        &moment(None, ""),
    );
    assert_eq!(
        reason_of(&queued, conditions::RECONCILING),
        pair("True", reason::QUEUED)
    );
    assert_eq!(
        message_of(&queued, conditions::RECONCILING),
        place.describe("s3:http://minio:9000/backups", 4)
    );
    assert_eq!(
        queued.observed_generation,
        Some(2),
        "the generation is observed when its sync starts"
    );
    assert_eq!(queued.sync_plan, None);
}

#[test]
fn a_parked_sync_is_degraded_and_reconciling_never_stalled() {
    let status = SyncStatus {
        consecutive_failures: None,
        ..Default::default()
    };
    let since: jiff::Timestamp = "2026-11-22T10:00:00Z".parse().unwrap();
    let parked = crate::breaker::Parked {
        since,
        cause: "connection refused".into(),
        next_probe: since + jiff::SignedDuration::from_secs(30),
        probing: None,
        failed_probes: 0,
        last_probe: None,
        parked: 20,
    };
    let repository = "s3:http://minio:9000/backups";
    let after_parking = after(
        &status,
        &Decision::Parked {
            repository: repository.into(),
            parked: parked.clone(),
        },
        &moment(None, ""),
    );
    for (type_, expected) in [
        (conditions::READY, "False"),
        (conditions::DEGRADED, "True"),
        (conditions::RECONCILING, "True"),
        (conditions::STALLED, "False"),
    ] {
        assert_eq!(
            reason_of(&after_parking, type_),
            pair(expected, reason::REPOSITORY_UNAVAILABLE),
            "{type_}"
        );
    }
    assert_eq!(
        message_of(&after_parking, conditions::READY),
        parked.describe(repository)
    );
    assert_eq!(
        after_parking.consecutive_failures, None,
        "a parked sync ran no Job and is no failure of its own"
    );
    assert_eq!(after_parking.sync_plan, None);
}
