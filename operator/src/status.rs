//! Status transitions: what each [`Decision`] writes into the status both kinds share, and the
//! conditions.
//!
//! Three conditions that `kubectl wait` can use: `Ready` (last sync good), `Synchronizing`
//! (a sync runs) and `Degraded` (syncs fail or cannot start). Each helper sets all three so no
//! combination contradicts itself, and `lastTransitionTime` moves only when a status flips.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use sluice_api::{
    MoverOutcome, MoverStatus, SyncPlan, SyncStatus,
    conditions::{self, reason},
    mover_result::ErrorClass,
};

use crate::{
    backoff::Retry,
    decide::{Decision, Outcome, Verdict},
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

/// What a status transition needs besides the decision.
#[derive(Clone, Copy, Debug)]
pub struct Moment<'a> {
    /// The time of the reconcile.
    pub now: Timestamp,
    /// `metadata.generation` of the object.
    pub generation: Option<i64>,
    /// `sync` or `restore`, in messages.
    pub noun: &'a str,
    /// The sync's plan: the one a [`Decision::Start`] records, or the one in progress.
    pub plan: Option<&'a SyncPlan>,
    /// Whether `spec.trigger.manual` is set, so a wait names the right trigger.
    pub manual_trigger: bool,
    /// For a successful [`Decision::Finish`], the kind's one-line summary of the result.
    pub summary: &'a str,
}

/// The status fields both kinds share after `decision`, applied to `status`. Pure: the
/// controller writes the result and performs the decision's effects.
pub fn transition(status: &mut SyncStatus, decision: &Decision, moment: &Moment) {
    let Moment {
        now,
        generation,
        noun,
        plan,
        ..
    } = *moment;
    let job = plan.map_or("", |plan| plan.job_name.as_str());
    match decision {
        Decision::ReadSecret
        | Decision::Blocked
        | Decision::BackingOff(_)
        | Decision::Create(_) => {}
        Decision::Paused => {
            status.next_sync_time = None;
            waiting(
                &mut status.conditions,
                reason::PAUSED,
                "spec.paused is set",
                generation,
                now,
            );
        }
        Decision::InvalidSchedule(message) => {
            status.next_sync_time = None;
            status.observed_generation = generation;
            failed(
                &mut status.conditions,
                reason::MOVER_CONFIG_INVALID,
                message,
                false,
                generation,
                now,
            );
        }
        Decision::WaitForSchedule(next) => {
            status.next_sync_time = Some(Time(*next));
            waiting(
                &mut status.conditions,
                reason::WAITING_FOR_SCHEDULE,
                &format!("next {noun} at {next}"),
                generation,
                now,
            );
        }
        Decision::WaitForTrigger => {
            status.next_sync_time = None;
            let message = if moment.manual_trigger {
                "waiting for spec.trigger.manual to change"
            } else {
                "waiting for a spec change or spec.trigger.manual"
            };
            waiting(
                &mut status.conditions,
                reason::WAITING_FOR_MANUAL,
                message,
                generation,
                now,
            );
        }
        Decision::SecretInvalid { failures, .. } => {
            status.last_sync_start_time = Some(Time(now));
            status.consecutive_failures = Some(i32::try_from(*failures).unwrap_or(i32::MAX));
            status.observed_generation = generation;
        }
        Decision::Start { next, missed } => {
            if let Some(plan) = plan {
                status.last_sync_start_time = Some(plan.started_at.clone());
                status.sync_plan = Some(plan.clone());
            }
            status.next_sync_time = next.map(Time);
            status.missed_syncs = Some(
                status
                    .missed_syncs
                    .unwrap_or(0)
                    .saturating_add(i64::try_from(*missed).unwrap_or(i64::MAX)),
            );
            synchronizing(
                &mut status.conditions,
                reason::MOVER_RUNNING,
                &format!("{noun} {job} started"),
                generation,
                now,
            );
        }
        Decision::CreateJob(_) | Decision::Running => synchronizing(
            &mut status.conditions,
            reason::MOVER_RUNNING,
            &format!("mover Job {job} running"),
            generation,
            now,
        ),
        Decision::Wait { waiting, .. } => synchronizing(
            &mut status.conditions,
            waiting.reason,
            &waiting.message,
            generation,
            now,
        ),
        Decision::Finish(outcome) => finished(status, outcome, moment),
    }
    if let Some(report) = failure_report(decision, moment) {
        report_failure(status, &report, generation, now);
    }
}

fn finished(status: &mut SyncStatus, outcome: &Outcome, moment: &Moment) {
    let result = &outcome.result;
    status.observed_generation = moment.generation;
    status.sync_plan = None;
    status.latest_mover_status = Some(MoverStatus {
        result: match outcome.verdict {
            Verdict::Succeeded { .. } => MoverOutcome::Successful,
            Verdict::Failed { .. } => MoverOutcome::Failed,
        },
        logs: result.message.clone(),
    });
    if let Some(plan) = moment.plan {
        status.last_sync_start_time = Some(plan.started_at.clone());
    }
    match outcome.verdict {
        Verdict::Succeeded { next } => {
            status.consecutive_failures = None;
            status.last_sync_time = Some(Time(moment.now));
            if let Some(plan) = moment.plan {
                status.last_sync_duration = Some(sync_duration(plan.started_at.0, moment.now));
                if plan.manual.is_some() {
                    status.last_manual_sync = plan.manual.clone();
                }
            }
            status.next_sync_time = next.map(Time);
            let next_reason = if next.is_some() {
                reason::WAITING_FOR_SCHEDULE
            } else {
                reason::WAITING_FOR_MANUAL
            };
            succeeded(
                &mut status.conditions,
                moment.summary,
                next_reason,
                moment.generation,
                moment.now,
            );
        }
        Verdict::Failed { failures, .. } => {
            status.consecutive_failures = Some(i32::try_from(failures).unwrap_or(i32::MAX));
        }
    }
}

/// A failed sync, or one that could not start, as it is reported: in the conditions, the
/// failure metric, a Warning event and a log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailureReport {
    /// Condition and event reason, e.g. `WrongPassword`.
    pub reason: &'static str,
    /// What failed and what to do, one line; names the Job when there was one.
    pub message: String,
    /// Whether and when to try again.
    pub retry: Retry,
    /// Failures in a row, this one included.
    pub failures: u32,
}

impl FailureReport {
    /// The message with what happens next: when the retry is, or that only a change helps.
    pub fn detail(&self, now: Timestamp) -> String {
        match self.retry {
            Retry::After(_) => format!(
                "{}; retry {} at {}",
                self.message,
                self.failures,
                self.retry_at(now).unwrap_or(now)
            ),
            Retry::WaitForChange => format!(
                "{}; retrying cannot help: fix the cause, then change the Secret or the spec \
                 (e.g. spec.trigger.manual)",
                self.message
            ),
        }
    }

    fn retry_at(&self, now: Timestamp) -> Option<Timestamp> {
        match self.retry {
            Retry::After(delay) => Some(now + SignedDuration::try_from(delay).unwrap_or_default()),
            Retry::WaitForChange => None,
        }
    }
}

/// The failure `decision` reports, if it reports one.
pub fn failure_report(decision: &Decision, moment: &Moment) -> Option<FailureReport> {
    match decision {
        Decision::SecretInvalid { message, failures } => Some(FailureReport {
            reason: reason::SECRET_INVALID,
            message: message.clone(),
            retry: Retry::WaitForChange,
            failures: *failures,
        }),
        Decision::Finish(Outcome {
            result,
            verdict:
                Verdict::Failed {
                    reason,
                    failures,
                    retry,
                },
            ..
        }) => {
            let message = result.message.clone().unwrap_or_else(|| {
                let class = result.error_class.unwrap_or(ErrorClass::Internal);
                format!("{} failed: {class:?}", moment.noun)
            });
            let job = moment.plan.map_or("", |plan| plan.job_name.as_str());
            Some(FailureReport {
                reason,
                message: format!("{message} (Job {job})"),
                retry: *retry,
                failures: *failures,
            })
        }
        _ => None,
    }
}

/// The conditions and `nextSyncTime` of a failure.
fn report_failure(
    status: &mut SyncStatus,
    report: &FailureReport,
    generation: Option<i64>,
    now: Timestamp,
) {
    status.next_sync_time = report.retry_at(now).map(Time);
    failed(
        &mut status.conditions,
        report.reason,
        &report.detail(now),
        matches!(report.retry, Retry::After(_)),
        generation,
        now,
    );
}

/// Wall-clock time of a sync, as the `Duration` status fields hold it.
pub fn sync_duration(started: Timestamp, finished: Timestamp) -> kube::core::Duration {
    let elapsed = finished.duration_since(started);
    std::time::Duration::try_from(elapsed)
        .unwrap_or_default()
        .into()
}

#[cfg(test)]
mod tests;
