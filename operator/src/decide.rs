//! The sync state machine both kinds share, as one pure function: [`decide`] takes what a
//! reconcile observed and says what to do next; the controller applies that.
//!
//! A ReplicationSource (a backup) and a ReplicationDestination (a restore) go through the same
//! steps. Between syncs (`status.syncPlan` absent): a paused object waits; an object blocked on
//! a failure that retrying cannot fix waits for its spec or its Secret to change; an object in a
//! retry backoff waits for it to end; otherwise the trigger decides (the schedule, a new
//! `trigger.manual`, or, without a trigger, the kind's rule), and a due sync checks the
//! repository Secret and starts by recording its plan. During a sync: the volumes the mover
//! needs are prepared, the Job is created, its result is awaited, a restore's image is
//! published, and the result is recorded. The kinds differ only in what they observe about their
//! volumes ([`Step`]s they evaluate themselves) and in what a finished sync records.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, TypedLocalObjectReference};
use sluice_api::{
    SyncPlan, SyncStatus, Trigger,
    mover_result::{ErrorClass, MoverResult},
};

use crate::{
    backoff::{self, Retry},
    breaker::{self, Parked},
    queue::Place,
    schedule::Schedule,
    secret,
    spread::Identity,
    volume::{PvcShape, VolumeSnapshot},
};

/// Waiting this long for something outside Sluice (a VolumeSnapshot to become ready, a claim to
/// bind) gets a Warning event on each look; the sync keeps waiting.
pub const READY_WARNING: SignedDuration = SignedDuration::from_mins(5);

/// How soon a reconcile looks again after reading a stale cache; also the shortest timer.
pub const STEP: Duration = Duration::from_secs(1);

/// How often a sync in progress is looked at without an event. Its Job, Pods and volumes are
/// watched, so any change to them wakes the reconcile at once; this only bounds what an event
/// that went missing costs.
pub const SAFETY: Duration = Duration::from_secs(300);

/// When an object without `spec.trigger` (neither a schedule nor `manual`) syncs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Untriggered {
    /// A backup: the next sync starts as soon as the previous one ends.
    Continuously,
    /// A restore: once per spec generation, so editing the spec restores again.
    OncePerGeneration,
    /// Never: a ReplicationDestination without a target of its own restores only into the
    /// PVCs that name it in `dataSourceRef` ([`crate::populator`]).
    Never,
}

/// What the state machine needs of an object's metadata and spec.
#[derive(Clone, Debug)]
pub struct Spec<'a> {
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// `metadata.creationTimestamp`: a schedule counts its first occurrence from here.
    pub created: Option<Timestamp>,
    /// `spec.paused`.
    pub paused: bool,
    /// `spec.trigger`.
    pub trigger: Option<&'a Trigger>,
    /// The kind's rule without a trigger.
    pub untriggered: Untriggered,
    /// Where the object's `H` schedule fields and jitter come from.
    pub identity: Identity,
    /// Why the kind's own spec fields cannot be planned (an invalid
    /// `spec.restic.verify.schedule`); refused like an invalid trigger.
    pub invalid: Option<String>,
}

/// The repository Secret, as far as deciding needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretSeen {
    /// When it was last written; `None` when it does not exist.
    pub modified: Option<Timestamp>,
    /// Why the mover cannot start with it, in one line; `None` when it can.
    pub unusable: Option<String>,
    /// Its repository's key ([`crate::repository::key`]), when it names one.
    pub repository: Option<String>,
}

/// Where a reconcile found the object: between syncs or in one.
#[derive(Clone, Debug)]
pub enum Phase<'a> {
    /// No sync in progress.
    Idle {
        /// The repository Secret once read: [`Decision::ReadSecret`] asks for it, so it is read
        /// only when the decision depends on it.
        secret: Option<SecretSeen>,
    },
    /// The sync of `plan` (`status.syncPlan`) is in progress.
    Syncing {
        /// The plan recorded when the sync started.
        plan: &'a SyncPlan,
        /// How far it got. Boxed: large next to `Idle`.
        progress: Box<Progress>,
    },
}

/// Everything [`decide`] looks at.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    /// The time of the reconcile.
    pub now: Timestamp,
    /// The object's metadata and spec.
    pub spec: Spec<'a>,
    /// The object's status as cached (the fields both kinds share).
    pub status: &'a SyncStatus,
    /// Between syncs or in one.
    pub phase: Phase<'a>,
}

/// The claim a mover Job mounts at `/data`, and, for `copyMethod: Direct`, the node it must
/// run on to share the volume with the Pod using it.
#[derive(Clone, Debug, PartialEq)]
pub struct Mount {
    /// PVC name.
    pub claim: String,
    /// Node of the Pod that mounts the claim.
    pub node: Option<String>,
    /// The claim is a Block volume: the mover gets its device, not a mount.
    pub block: bool,
    /// The shape of the scratch volume a restore test restores into, when the sync runs one.
    /// Boxed: rare, and large next to the rest.
    pub scratch: Option<Box<PvcShape>>,
}

/// An object a sync creates on its way (the Job aside): a point-in-time copy, a restore target,
/// a VolumeSnapshot. Boxed: decisions are moved around, objects are large.
#[derive(Clone, Debug, PartialEq)]
pub enum NewObject {
    /// A PersistentVolumeClaim.
    Claim(Box<PersistentVolumeClaim>),
    /// A VolumeSnapshot.
    Snapshot(Box<VolumeSnapshot>),
}

/// A wait for something outside Sluice, as the Reconciling condition and, when it lasts past
/// [`READY_WARNING`], a Warning event show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// Condition and event reason, e.g. `WaitingForSnapshot`.
    pub reason: &'static str,
    /// What the sync waits for.
    pub message: String,
    /// The event's action, e.g. `Snapshot`.
    pub action: &'static str,
    /// The Warning event's note: what is wrong and what to check.
    pub warning: String,
}

/// The next step of preparing something a sync needs, as a kind evaluates it from the objects it
/// observed: `Ready` with what the next stage needs, or what to do first.
#[derive(Clone, Debug, PartialEq)]
pub enum Step<T> {
    /// In place.
    Ready(T),
    /// Create this object, then look again.
    Create(NewObject),
    /// Wait for something outside Sluice.
    Wait(Waiting),
    /// The sync cannot go on; it fails.
    Fail {
        /// Decides whether to retry.
        class: ErrorClass,
        /// Condition reason, e.g. `SourcePVCNotFound`.
        reason: &'static str,
        /// What failed and what to do.
        message: String,
    },
}

/// How far a sync in progress got, observed from its Job, Pods and volumes.
#[derive(Clone, Debug, PartialEq)]
pub enum Progress {
    /// No mover Job yet: what the volume it mounts needs next.
    Preparing(Step<Mount>),
    /// The Job runs and has not reported; `unbound` when the claim it mounts is not bound yet.
    Running {
        /// The wait for the claim to bind.
        unbound: Option<Waiting>,
    },
    /// The mover reported `result`. For a successful run, `publish` is what making the result
    /// available needs next (a restore's VolumeSnapshot); `Ready(None)` when nothing is
    /// published.
    Ended {
        /// The mover's result, as the kind reads it.
        result: MoverResult,
        /// Publishing the result.
        publish: Step<Option<TypedLocalObjectReference>>,
    },
}

/// How a finished sync went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It succeeded; the schedule's next time, if there is a schedule.
    Succeeded {
        /// `status.nextSyncTime`.
        next: Option<Timestamp>,
    },
    /// It failed for `reason`; `failures` in a row, this one included, and when to retry.
    Failed {
        /// Condition reason.
        reason: &'static str,
        /// `status.consecutiveFailures` after this one.
        failures: u32,
        /// The backoff, or waiting for a change.
        retry: Retry,
    },
}

/// A finished sync, to be recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// What the mover reported, or what stopped the sync before its Job ran.
    pub result: MoverResult,
    /// Success or failure.
    pub verdict: Verdict,
    /// A restore's published volume.
    pub image: Option<TypedLocalObjectReference>,
}

/// What a reconcile does next.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// `spec.paused`: start nothing until the spec changes.
    Paused,
    /// Read the repository Secret, then decide again.
    ReadSecret,
    /// A failure retrying cannot fix, and neither the spec nor the Secret changed since: look at
    /// the Secret again after [`secret::RECHECK`].
    Blocked,
    /// `spec.trigger` cannot be scheduled; the message says why.
    InvalidSchedule(String),
    /// A failed sync is retried at this time.
    BackingOff(Timestamp),
    /// Nothing due before the schedule's next time.
    WaitForSchedule(Timestamp),
    /// Nothing due until `spec.trigger.manual` (or, for a restore, the spec) changes.
    WaitForTrigger,
    /// Nothing ever due: the object only serves the volume populator ([`Untriggered::Never`]).
    ServesPopulators,
    /// A sync is due but its repository Secret is missing or lacks keys.
    SecretInvalid {
        /// What is wrong and what to do.
        message: String,
        /// `status.consecutiveFailures` after this one.
        failures: u32,
    },
    /// A sync is due, and waits for its repository ([`crate::queue`]).
    Queued {
        /// The repository's key.
        repository: String,
        /// Where it stands in line.
        place: Place,
        /// Syncs at most running into one repository.
        max: usize,
    },
    /// A sync is due, and its repository's backend is unreachable ([`crate::breaker`]): it is
    /// parked, without a Job, until a probe reaches the backend.
    Parked {
        /// The repository's key.
        repository: String,
        /// Where the outage stands.
        parked: Parked,
    },
    /// Start a sync: record its plan.
    Start {
        /// The schedule's next time after this sync, if there is a schedule.
        next: Option<Timestamp>,
        /// Scheduled times that passed beyond the one this sync answers.
        missed: u64,
    },
    /// Create an object the sync needs.
    Create(NewObject),
    /// Create the mover Job, mounting this.
    CreateJob(Mount),
    /// Wait for a VolumeSnapshot or a claim; warn from `warn_at` on.
    Wait {
        /// What is awaited.
        waiting: Waiting,
        /// [`READY_WARNING`] after the sync started.
        warn_at: Timestamp,
    },
    /// The mover runs.
    Running,
    /// Record the finished sync and remove its temporary objects.
    Finish(Outcome),
}

/// What to do next, given what was observed. See the module documentation for the steps.
pub fn decide(observed: &Observed) -> Decision {
    match &observed.phase {
        Phase::Idle { secret } => between_syncs(observed, secret.as_ref()),
        Phase::Syncing { plan, progress } => during_sync(observed, plan, progress),
    }
}

fn between_syncs(observed: &Observed, secret: Option<&SecretSeen>) -> Decision {
    let Observed {
        now, spec, status, ..
    } = observed;
    if spec.paused {
        return Decision::Paused;
    }
    if spec.untriggered == Untriggered::Never {
        return Decision::ServesPopulators;
    }
    if let Some(message) = &spec.invalid {
        return Decision::InvalidSchedule(message.clone());
    }
    let failures = failures(status);
    let retry_at = status.next_sync_time.as_ref().map(|t| t.0);
    // A failure retrying cannot fix leaves no retry time: only a change starts another sync.
    if failures > 0 && retry_at.is_none() {
        let Some(secret) = secret else {
            return Decision::ReadSecret;
        };
        if !changed_since_failure(observed, secret) {
            return Decision::Blocked;
        }
    }
    let due = match schedule(spec) {
        Ok(None) => None,
        Ok(Some(schedule)) => match schedule.due(reference(observed), *now) {
            Ok(due) => Some(due),
            Err(error) => return Decision::InvalidSchedule(error.to_string()),
        },
        Err(message) => return Decision::InvalidSchedule(message),
    };
    // A failed sync, manual ones included, is retried on its backoff only: a manual trigger that
    // failed must not become a Job storm.
    if failures > 0
        && let Some(retry_at) = retry_at
        && retry_at > *now
    {
        return Decision::BackingOff(retry_at);
    }
    let trigger = spec.trigger;
    let manual = trigger.and_then(|t| t.manual.as_ref());
    let manual_due = manual.is_some() && manual != status.last_manual_sync.as_ref();
    let untriggered_due = trigger.is_none_or(|t| t.schedule.is_none() && t.manual.is_none())
        && match spec.untriggered {
            Untriggered::Continuously => true,
            Untriggered::OncePerGeneration => status.observed_generation != spec.generation,
            Untriggered::Never => false,
        };
    // Past the gates above, a failure is due again: its backoff ended, or the change that
    // unblocks it came.
    let retry_due = failures > 0;
    let scheduled_due = due.as_ref().is_some_and(|due| due.now);
    if !(retry_due || manual_due || untriggered_due || scheduled_due) {
        return match due {
            Some(due) => Decision::WaitForSchedule(due.next),
            None => Decision::WaitForTrigger,
        };
    }
    let Some(secret) = secret else {
        return Decision::ReadSecret;
    };
    if let Some(message) = &secret.unusable {
        return Decision::SecretInvalid {
            message: message.clone(),
            failures: failures.saturating_add(1),
        };
    }
    Decision::Start {
        next: due.as_ref().map(|due| due.next),
        missed: due.map_or(0, |due| due.missed),
    }
}

fn during_sync(observed: &Observed, plan: &SyncPlan, progress: &Progress) -> Decision {
    let warn_at = plan.started_at.0 + READY_WARNING;
    match progress {
        Progress::Preparing(step) => next_step(observed, step, warn_at, |mount| {
            Decision::CreateJob(mount.clone())
        }),
        Progress::Running {
            unbound: Some(waiting),
        } => Decision::Wait {
            waiting: waiting.clone(),
            warn_at,
        },
        Progress::Running { unbound: None } => Decision::Running,
        Progress::Ended { result, .. } if result.error_class.is_some() => {
            let class = result.error_class.unwrap_or(ErrorClass::Internal);
            finish_failed(observed, result.clone(), class.condition_reason())
        }
        Progress::Ended { result, publish } => next_step(observed, publish, warn_at, |image| {
            let next = schedule(&observed.spec)
                .ok()
                .flatten()
                .and_then(|schedule| schedule.next_after(observed.now).ok());
            Decision::Finish(Outcome {
                result: result.clone(),
                verdict: Verdict::Succeeded { next },
                image: image.clone(),
            })
        }),
    }
}

/// What `step` asks for next; `ready` says what to do once it is in place.
fn next_step<T>(
    observed: &Observed,
    step: &Step<T>,
    warn_at: Timestamp,
    ready: impl FnOnce(&T) -> Decision,
) -> Decision {
    match step {
        Step::Ready(value) => ready(value),
        Step::Create(object) => Decision::Create(object.clone()),
        Step::Wait(waiting) => Decision::Wait {
            waiting: waiting.clone(),
            warn_at,
        },
        Step::Fail {
            class,
            reason,
            message,
        } => finish_failed(observed, stopped(*class, message), reason),
    }
}

/// The result of a sync that stopped before (or after) its mover ran.
fn stopped(class: ErrorClass, message: &str) -> MoverResult {
    MoverResult {
        error_class: Some(class),
        message: Some(message.to_string()),
        ..Default::default()
    }
}

fn finish_failed(observed: &Observed, result: MoverResult, reason: &'static str) -> Decision {
    let class = result.error_class.unwrap_or(ErrorClass::Internal);
    let failures = failures(observed.status).saturating_add(1);
    Decision::Finish(Outcome {
        result,
        verdict: Verdict::Failed {
            reason,
            failures,
            retry: backoff::after_failure(class, failures),
        },
        image: None,
    })
}

fn failures(status: &SyncStatus) -> u32 {
    u32::try_from(status.consecutive_failures.unwrap_or(0)).unwrap_or(0)
}

/// Whether the spec or the Secret changed since the failure that blocks the object: a
/// generation other than the one the failed attempt ran (`status.observedGeneration`), or a
/// Secret written after the attempt started.
fn changed_since_failure(observed: &Observed, secret: &SecretSeen) -> bool {
    let judged = observed.status.observed_generation;
    let last_attempt = observed.status.last_sync_start_time.as_ref().map(|t| t.0);
    let secret_changed = secret
        .modified
        .zip(last_attempt)
        .is_some_and(|(modified, attempt)| modified > attempt);
    judged != observed.spec.generation || secret_changed
}

fn schedule(spec: &Spec) -> Result<Option<Schedule>, String> {
    let Some(trigger) = spec.trigger else {
        return Ok(None);
    };
    trigger
        .schedule
        .as_deref()
        .map(|expression| {
            let zone = trigger.time_zone.as_deref();
            Schedule::parse(expression, zone, trigger.jitter.as_deref(), spec.identity)
        })
        .transpose()
        .map_err(|error| error.to_string())
}

/// What a schedule counts occurrences from: the last sync's start, else the object's creation.
fn reference(observed: &Observed) -> Timestamp {
    observed
        .status
        .last_sync_start_time
        .as_ref()
        .map(|t| t.0)
        .or(observed.spec.created)
        .unwrap_or(observed.now)
}

impl Decision {
    /// When the controller looks again without a watch event: `None` waits for a change of the
    /// object (or of what it owns). Timers are for what time alone changes: a schedule, a
    /// backoff, a Secret that is not watched, a wait that becomes worth a warning.
    pub fn requeue(&self, now: Timestamp) -> Option<Duration> {
        match self {
            Self::Paused
            | Self::InvalidSchedule(_)
            | Self::WaitForTrigger
            | Self::ServesPopulators => None,
            Self::Blocked | Self::SecretInvalid { .. } => Some(secret::RECHECK),
            // Woken when the line moves; the timer only bounds a missed wake-up.
            Self::Queued { .. } => Some(SAFETY),
            // Woken when the breaker closes; the object that probes looks again when its probe
            // is due, the others when a probe in flight would be given up.
            Self::Parked { parked, .. } => Some(match parked.probing {
                Some(_) => breaker::PROBE_DEADLINE,
                None => until(parked.next_probe, now),
            }),
            Self::BackingOff(at) | Self::WaitForSchedule(at) => Some(until(*at, now)),
            Self::ReadSecret => Some(STEP),
            Self::Wait { warn_at, .. } if *warn_at > now => Some(until(*warn_at, now)),
            Self::Start { .. }
            | Self::Create(_)
            | Self::CreateJob(_)
            | Self::Running
            | Self::Wait { .. }
            | Self::Finish(_) => Some(SAFETY),
        }
    }

    /// Whether a wait has lasted long enough at `now` to be worth a Warning event.
    pub fn warns(&self, now: Timestamp) -> bool {
        matches!(self, Self::Wait { warn_at, .. } if *warn_at <= now)
    }

    /// Whether applying this creates or deletes objects, so it must come from the API server's
    /// current version of the object, not from a cache that may be behind the last status
    /// write (a sync already ended would run again). Decisions that only write status are
    /// guarded by the write itself, which names the version it was decided on.
    pub fn changes_objects(&self) -> bool {
        matches!(self, Self::Create(_) | Self::CreateJob(_) | Self::Finish(_))
    }
}

/// The time until `at`, at least [`STEP`], so a timer that fires a moment early does not spin.
fn until(at: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(now))
        .unwrap_or_default()
        .max(STEP)
}

#[cfg(test)]
mod tests;
