//! Status transitions: conditions and the fields a finished sync fills.
//!
//! Three conditions that `kubectl wait` can use: `Ready` (last sync good), `Synchronizing`
//! (a sync runs) and `Degraded` (syncs fail or cannot start). Each helper sets all three so no
//! combination contradicts itself, and `lastTransitionTime` moves only when a status flips.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use sluice_api::{
    LastSync, MoverOutcome, MoverStatus, ReplicationSourceStatus, ResticSourceStatus, SyncPlan,
    conditions::{self, reason},
    mover_result::MoverResult,
};

/// Sets one condition, keeping its `lastTransitionTime` unless its status changes.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" }.to_string();
    let previous = conditions.iter().position(|c| c.type_ == type_);
    let last_transition_time = match previous.map(|i| &conditions[i]) {
        Some(old) if old.status == status => old.last_transition_time.clone(),
        _ => Time(now),
    };
    let condition = Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time,
    };
    match previous {
        Some(i) => conditions[i] = condition,
        None => conditions.push(condition),
    }
}

/// The condition of `type_`, if set.
pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Nothing runs; the object waits for its trigger (`reason` says which).
pub fn waiting(
    conditions: &mut Vec<Condition>,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    set_condition(
        conditions,
        conditions::SYNCHRONIZING,
        false,
        reason,
        message,
        generation,
        now,
    );
    // A fresh object has no verdict yet; Ready says so instead of being absent, so
    // `kubectl wait --for=condition=Ready=false` and printcolumns work from the start.
    if condition(conditions, conditions::READY).is_none() {
        set_condition(
            conditions,
            conditions::READY,
            false,
            reason,
            message,
            generation,
            now,
        );
    }
    if condition(conditions, conditions::DEGRADED).is_none() {
        set_condition(
            conditions,
            conditions::DEGRADED,
            false,
            reason,
            message,
            generation,
            now,
        );
    }
}

/// A sync is under way; `reason` is its stage (`WaitingForSnapshot`, `MoverRunning`, ...).
/// Ready and Degraded keep the previous sync's verdict.
pub fn synchronizing(
    conditions: &mut Vec<Condition>,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    set_condition(
        conditions,
        conditions::SYNCHRONIZING,
        true,
        reason,
        message,
        generation,
        now,
    );
}

/// The sync succeeded.
pub fn succeeded(
    conditions: &mut Vec<Condition>,
    message: &str,
    next_reason: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    set_condition(
        conditions,
        conditions::READY,
        true,
        reason::SYNC_SUCCEEDED,
        message,
        generation,
        now,
    );
    set_condition(
        conditions,
        conditions::DEGRADED,
        false,
        reason::SYNC_SUCCEEDED,
        message,
        generation,
        now,
    );
    set_condition(
        conditions,
        conditions::SYNCHRONIZING,
        false,
        next_reason,
        message,
        generation,
        now,
    );
}

/// The sync failed or could not start, for `reason`; `retrying` says whether a retry is
/// scheduled (Synchronizing shows `Backoff`) or the object waits for a change.
pub fn failed(
    conditions: &mut Vec<Condition>,
    reason: &str,
    message: &str,
    retrying: bool,
    generation: Option<i64>,
    now: Timestamp,
) {
    set_condition(
        conditions,
        conditions::READY,
        false,
        reason,
        message,
        generation,
        now,
    );
    set_condition(
        conditions,
        conditions::DEGRADED,
        true,
        reason,
        message,
        generation,
        now,
    );
    let waiting_reason = if retrying { reason::BACKOFF } else { reason };
    set_condition(
        conditions,
        conditions::SYNCHRONIZING,
        false,
        waiting_reason,
        message,
        generation,
        now,
    );
}

/// Records a finished backup sync's result in `status`: the numbers and times on success,
/// maintenance stamps for what really ran, the manual/unlock values it answered, and the failure
/// count that drives the backoff. Conditions are set separately by [`succeeded`]/[`failed`].
pub fn record_source_result(
    status: &mut ReplicationSourceStatus,
    plan: &SyncPlan,
    result: &MoverResult,
    finished: Timestamp,
) {
    let restic = status
        .restic
        .get_or_insert_with(ResticSourceStatus::default);
    // Maintenance that completed counts even when a later step failed: the repository was pruned.
    if result.pruned {
        restic.last_pruned = Some(Time(finished));
    }
    if result.checked {
        restic.last_checked = Some(Time(finished));
    }
    status.latest_mover_status = Some(MoverStatus {
        result: if result.error_class.is_none() {
            MoverOutcome::Successful
        } else {
            MoverOutcome::Failed
        },
        logs: result.message.clone(),
    });
    status.last_sync_start_time = Some(plan.started_at.clone());
    if result.error_class.is_some() {
        status.consecutive_failures =
            Some(status.consecutive_failures.unwrap_or(0).saturating_add(1));
        return;
    }
    if plan.unlock.is_some() {
        restic.last_unlocked = plan.unlock.clone();
    }
    if plan.manual.is_some() {
        status.last_manual_sync = plan.manual.clone();
    }
    status.consecutive_failures = None;
    status.last_sync_time = Some(Time(finished));
    status.last_sync_duration = Some(sync_duration(plan.started_at.0, finished));
    if let Some(id) = &result.snapshot_id {
        status.last_sync = Some(LastSync {
            snapshot_id: id.clone(),
            snapshot_time: result
                .snapshot_time
                .as_deref()
                .and_then(|t| t.parse().ok())
                .map(Time),
            files_new: result.files_new,
            files_changed: result.files_changed,
            files_unmodified: result.files_unmodified,
            bytes_added: result.bytes_added,
            total_bytes: result.total_bytes,
        });
    }
}

/// Wall-clock time of a sync, as the `Duration` status fields hold it.
pub fn sync_duration(started: Timestamp, finished: Timestamp) -> kube::core::Duration {
    let elapsed = finished.duration_since(started);
    std::time::Duration::try_from(elapsed)
        .unwrap_or_default()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_api::{SyncAction, mover_result::ErrorClass};

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn plan() -> SyncPlan {
        SyncPlan {
            actions: vec![SyncAction::Unlock, SyncAction::Backup, SyncAction::Prune],
            started_at: Time(at("2026-11-22T10:00:00Z")),
            job_name: "sluice-src-db-1".into(),
            manual: Some("m1".into()),
            unlock: Some("u1".into()),
        }
    }

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

    #[test]
    fn success_fills_numbers_and_stamps_only_what_ran() {
        let mut status = ReplicationSourceStatus {
            consecutive_failures: Some(2),
            ..Default::default()
        };
        let result = MoverResult {
            snapshot_id: Some("f".repeat(64)),
            snapshot_time: Some("2026-11-22T10:00:01Z".into()),
            files_new: 3,
            bytes_added: 1000,
            total_bytes: 5000,
            unlocked: true,
            pruned: false,
            ..Default::default()
        };
        let finished = at("2026-11-22T10:01:30.5Z");
        record_source_result(&mut status, &plan(), &result, finished);
        let restic = status.restic.as_ref().unwrap();
        assert_eq!(
            restic.last_pruned, None,
            "prune was planned but did not run"
        );
        assert_eq!(restic.last_unlocked.as_deref(), Some("u1"));
        assert_eq!(status.last_manual_sync.as_deref(), Some("m1"));
        assert_eq!(status.consecutive_failures, None);
        assert_eq!(status.last_sync_time, Some(Time(finished)));
        assert_eq!(status.last_sync_duration.unwrap().to_string(), "90.5s");
        let last = status.last_sync.unwrap();
        assert_eq!(last.bytes_added, 1000);
        assert_eq!(last.files_new, 3);
        assert_eq!(last.snapshot_time, Some(Time(at("2026-11-22T10:00:01Z"))));
        assert_eq!(
            status.latest_mover_status.unwrap().result,
            MoverOutcome::Successful
        );
    }

    #[test]
    fn failure_counts_up_and_keeps_the_last_good_sync() {
        let mut status = ReplicationSourceStatus::default();
        let ok = MoverResult {
            snapshot_id: Some("a".repeat(64)),
            pruned: true,
            ..Default::default()
        };
        record_source_result(&mut status, &plan(), &ok, at("2026-11-22T10:05:00Z"));
        let bad = MoverResult {
            error_class: Some(ErrorClass::Network),
            message: Some("connection refused".into()),
            ..Default::default()
        };
        let mut next_plan = plan();
        next_plan.manual = Some("m2".into());
        record_source_result(&mut status, &next_plan, &bad, at("2026-11-22T11:05:00Z"));
        record_source_result(&mut status, &next_plan, &bad, at("2026-11-22T12:05:00Z"));
        assert_eq!(status.consecutive_failures, Some(2));
        assert_eq!(
            status.last_sync_time,
            Some(Time(at("2026-11-22T10:05:00Z")))
        );
        assert_eq!(
            status.last_manual_sync.as_deref(),
            Some("m1"),
            "a failed sync does not answer m2"
        );
        assert_eq!(
            status.restic.unwrap().last_pruned,
            Some(Time(at("2026-11-22T10:05:00Z")))
        );
        let mover = status.latest_mover_status.unwrap();
        assert_eq!(mover.result, MoverOutcome::Failed);
        assert_eq!(mover.logs.as_deref(), Some("connection refused"));
    }
}
