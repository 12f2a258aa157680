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
    assert_eq!(conditions.len(), 3);
}

#[test]
fn retryable_failure_shows_backoff_permanent_shows_the_reason() {
    let mut conditions = Vec::new();
    let now = at("2026-11-22T10:00:00Z");
    failed(&mut conditions, reason::NETWORK_ERROR, "x", true, None, now);
    assert_eq!(
        condition(&conditions, conditions::SYNCHRONIZING)
            .unwrap()
            .reason,
        reason::BACKOFF
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
        condition(&conditions, conditions::SYNCHRONIZING)
            .unwrap()
            .reason,
        reason::WRONG_PASSWORD
    );
    assert_eq!(
        condition(&conditions, conditions::READY).unwrap().status,
        "False"
    );
}

#[test]
fn a_new_object_gets_all_three_conditions_while_waiting() {
    let mut conditions = Vec::new();
    waiting(
        &mut conditions,
        reason::WAITING_FOR_SCHEDULE,
        "next at 11:00",
        Some(1),
        at("2026-11-22T10:00:00Z"),
    );
    assert_eq!(conditions.len(), 3);
    synchronizing(
        &mut conditions,
        reason::MOVER_RUNNING,
        "job x",
        Some(1),
        at("2026-11-22T11:00:00Z"),
    );
    let sync = condition(&conditions, conditions::SYNCHRONIZING).unwrap();
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
        reason_of(&paused, conditions::SYNCHRONIZING),
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
        message_of(&waiting, conditions::SYNCHRONIZING),
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
            reason_of(&waiting, conditions::SYNCHRONIZING),
            pair("False", reason::WAITING_FOR_MANUAL)
        );
        assert_eq!(message_of(&waiting, conditions::SYNCHRONIZING), message);
    }
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
        reason_of(&status, conditions::SYNCHRONIZING),
        pair("False", reason::MOVER_CONFIG_INVALID),
        "no Backoff: only a fix helps"
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
        reason_of(&started, conditions::SYNCHRONIZING),
        pair("True", reason::MOVER_RUNNING)
    );
    assert_eq!(
        message_of(&started, conditions::SYNCHRONIZING),
        "sync sluice-src-db-1 started"
    );
    let running = after(&started, &Decision::Running, &moment(Some(&plan), ""));
    assert_eq!(
        message_of(&running, conditions::SYNCHRONIZING),
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
        reason_of(&waits, conditions::SYNCHRONIZING),
        pair("True", reason::WAITING_FOR_PVC)
    );
    assert_eq!(
        message_of(&waits, conditions::SYNCHRONIZING),
        waiting.message
    );
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
    let status = SyncStatus {
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
    assert_eq!(done.observed_generation, Some(3));
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
        reason_of(&done, conditions::SYNCHRONIZING),
        pair("False", reason::WAITING_FOR_SCHEDULE)
    );
    let unscheduled = after(
        &status,
        &finish(MoverResult::default(), Verdict::Succeeded { next: None }),
        &moment(Some(&plan), "ok"),
    );
    assert_eq!(
        reason_of(&unscheduled, conditions::SYNCHRONIZING),
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
        reason_of(&failed, conditions::SYNCHRONIZING),
        pair("False", reason::BACKOFF)
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
        reason_of(&blocked, conditions::SYNCHRONIZING),
        pair("False", reason::WRONG_PASSWORD)
    );
    assert!(
        message_of(&blocked, conditions::DEGRADED)
            .starts_with("sync failed: WrongPassword (Job sluice-src-db-1); retrying cannot help"),
        "a result without a message says what failed"
    );
}
