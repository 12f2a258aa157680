//! Status transitions: what each [`Decision`] writes into the status both kinds share, and the
//! conditions.
//!
//! The conditions follow kstatus, so Flux, Argo CD, `kubectl wait` and kstatus-based tools read
//! them without knowing Sluice: `Reconciling` (a sync is under way, or a failed one is retried
//! on its backoff), `Stalled` (a failure retrying cannot fix: only a change of the spec or the
//! Secret helps), and `Ready` (the last sync succeeded). `Degraded` says that the last sync
//! failed, retried or not. Each helper sets all four, so no combination contradicts itself;
//! every condition carries the generation it was written for, and `lastTransitionTime` moves
//! only when a status flips.

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

/// The condition types Sluice writes, in the order it lists them. Others (`Synchronizing`, which
/// earlier versions wrote) are dropped on the next status write.
pub const TYPES: [&str; 4] = [
    conditions::READY,
    conditions::RECONCILING,
    conditions::STALLED,
    conditions::DEGRADED,
];

/// Sets one condition, keeping its `lastTransitionTime` unless its status changes.
fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
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
        observed_generation: None,
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

/// Sets `type_` to `False` with `reason` unless it is already set: a fresh object has no
/// verdict yet, and says so instead of lacking the condition, so `kubectl wait
/// --for=condition=Ready=false` and printcolumns work from the start.
fn unless_set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    if condition(conditions, type_).is_none() {
        set_condition(conditions, type_, false, reason, message, now);
    }
}

/// Keeps only [`TYPES`], in their order, each stamped with `generation`: every write is made
/// for the current spec, so every condition describes it (Argo CD and kstatus ignore a
/// condition of an older generation).
fn settle(conditions: &mut Vec<Condition>, generation: Option<i64>) {
    conditions.retain(|c| TYPES.contains(&c.type_.as_str()));
    conditions.sort_by_key(|c| TYPES.iter().position(|t| *t == c.type_));
    for condition in conditions.iter_mut() {
        condition.observed_generation = generation;
    }
}

/// Nothing runs; the object waits for its trigger (`reason` says which). Ready, Stalled and
/// Degraded keep the last verdict.
pub fn waiting(
    conditions: &mut Vec<Condition>,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    set_condition(
        conditions,
        conditions::RECONCILING,
        false,
        reason,
        message,
        now,
    );
    for type_ in [conditions::READY, conditions::STALLED, conditions::DEGRADED] {
        unless_set(conditions, type_, reason, message, now);
    }
    settle(conditions, generation);
}

/// A sync is under way; `reason` is its stage (`WaitingForSnapshot`, `MoverRunning`, ...). It
/// makes progress, so nothing is stalled; Ready and Degraded keep the previous sync's verdict.
pub fn reconciling(
    conditions: &mut Vec<Condition>,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    set_condition(
        conditions,
        conditions::RECONCILING,
        true,
        reason,
        message,
        now,
    );
    set_condition(conditions, conditions::STALLED, false, reason, message, now);
    for type_ in [conditions::READY, conditions::DEGRADED] {
        unless_set(conditions, type_, reason, message, now);
    }
    settle(conditions, generation);
}

/// Sets all four verdict conditions with one message, each `(type, status, reason)`, then
/// settles them: the helpers below each say the whole verdict, so none contradicts another.
fn set_verdict(
    conditions: &mut Vec<Condition>,
    states: [(&str, bool, &str); 4],
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    for (type_, status, reason) in states {
        set_condition(conditions, type_, status, reason, message, now);
    }
    settle(conditions, generation);
}

/// The sync succeeded; `next_reason` says what the object waits for now.
pub fn succeeded(
    conditions: &mut Vec<Condition>,
    message: &str,
    next_reason: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    let ok = reason::SYNC_SUCCEEDED;
    let states = [
        (conditions::READY, true, ok),
        (conditions::STALLED, false, ok),
        (conditions::DEGRADED, false, ok),
        (conditions::RECONCILING, false, next_reason),
    ];
    set_verdict(conditions, states, message, generation, now);
}

/// The sync failed or could not start, for `reason`. `retrying`: a retry is scheduled, so the
/// object is still reconciling (reason `Backoff`); otherwise it is stalled until the spec or the
/// Secret changes.
pub fn failed(
    conditions: &mut Vec<Condition>,
    reason: &str,
    message: &str,
    retrying: bool,
    generation: Option<i64>,
    now: Timestamp,
) {
    let reconciling_reason = if retrying { reason::BACKOFF } else { reason };
    let states = [
        (conditions::READY, false, reason),
        (conditions::DEGRADED, true, reason),
        (conditions::STALLED, !retrying, reason),
        (conditions::RECONCILING, retrying, reconciling_reason),
    ];
    set_verdict(conditions, states, message, generation, now);
}

/// A due sync parked while its repository is unreachable: not Ready and Degraded (backups are
/// not being made), Reconciling (it resumes by itself once a probe reaches the backend), never
/// Stalled (nothing on the object needs to change).
pub fn unavailable(
    conditions: &mut Vec<Condition>,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    let reason = reason::REPOSITORY_UNAVAILABLE;
    let states = [
        (conditions::READY, false, reason),
        (conditions::DEGRADED, true, reason),
        (conditions::STALLED, false, reason),
        (conditions::RECONCILING, true, reason),
    ];
    set_verdict(conditions, states, message, generation, now);
}

/// The last restore test failed: `Degraded` says so (reason `VerificationFailed`) until one
/// passes, unless it already reports a failure of the sync itself, which is the more urgent
/// news. Ready, Reconciling and Stalled stay the sync's: backups go on.
pub fn verification_failed(
    conditions: &mut Vec<Condition>,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    let sync_failed = condition(conditions, conditions::DEGRADED)
        .is_some_and(|c| c.status == "True" && c.reason != reason::VERIFICATION_FAILED);
    if sync_failed {
        return;
    }
    set_condition(
        conditions,
        conditions::DEGRADED,
        true,
        reason::VERIFICATION_FAILED,
        message,
        now,
    );
    settle(conditions, generation);
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
            status.observed_generation = generation;
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
            status.observed_generation = generation;
            waiting(
                &mut status.conditions,
                reason::WAITING_FOR_SCHEDULE,
                &format!("next {noun} at {next}"),
                generation,
                now,
            );
        }
        Decision::ServesPopulators => {
            status.next_sync_time = None;
            status.observed_generation = generation;
            let serves = reason::SERVES_POPULATORS;
            let states = [
                (conditions::READY, true, serves),
                (conditions::STALLED, false, serves),
                (conditions::DEGRADED, false, serves),
                (conditions::RECONCILING, false, serves),
            ];
            let message = "no destinationPVC or capacity: restores only into the PVCs whose \
                           dataSourceRef names this ReplicationDestination";
            set_verdict(&mut status.conditions, states, message, generation, now);
        }
        Decision::WaitForTrigger => {
            status.next_sync_time = None;
            status.observed_generation = generation;
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
        Decision::Queued {
            repository,
            place,
            max,
        } => {
            // Not observed yet: a destination's restore for this generation is still due.
            reconciling(
                &mut status.conditions,
                reason::QUEUED,
                &place.describe(repository, *max),
                generation,
                now,
            );
        }
        Decision::Parked { repository, parked } => unavailable(
            &mut status.conditions,
            &parked.describe(repository),
            generation,
            now,
        ),
        Decision::Start { next, missed } => {
            // The spec this sync runs; a change during the sync is observed when it ends, so a
            // destination restores again for it.
            status.observed_generation = generation;
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
            reconciling(
                &mut status.conditions,
                reason::MOVER_RUNNING,
                &format!("{noun} {job} started"),
                generation,
                now,
            );
        }
        Decision::CreateJob(_) | Decision::Running => reconciling(
            &mut status.conditions,
            reason::MOVER_RUNNING,
            &format!("mover Job {job} running"),
            generation,
            now,
        ),
        Decision::Wait { waiting, .. } => reconciling(
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
