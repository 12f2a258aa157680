//! Every transition of the state machine, by scenario: a table of (what was observed, what the
//! reconcile does next).

use super::*;
use crate::testing::at;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use sluice_api::{SyncAction, conditions::reason};

const NOW: &str = "2026-11-22T10:30:00Z";

fn identity() -> Identity {
    Identity::of("apps", "db")
}

/// One object at [`NOW`], built up by the scenario.
#[derive(Clone)]
struct World {
    untriggered: Untriggered,
    generation: i64,
    created: Timestamp,
    paused: bool,
    trigger: Option<Trigger>,
    status: SyncStatus,
    secret: Option<SecretSeen>,
    invalid: Option<String>,
}

/// A ReplicationSource of generation 1, created at 09:30, with no trigger and no status.
fn source() -> World {
    World {
        untriggered: Untriggered::Continuously,
        generation: 1,
        created: at("2026-11-22T09:30:00Z"),
        paused: false,
        trigger: None,
        status: SyncStatus::default(),
        secret: None,
        invalid: None,
    }
}

/// The same as a ReplicationDestination.
fn destination() -> World {
    World {
        untriggered: Untriggered::OncePerGeneration,
        ..source()
    }
}

impl World {
    fn invalid(mut self, message: &str) -> Self {
        self.invalid = Some(message.into());
        self
    }
    fn manual(mut self, value: &str) -> Self {
        self.trigger.get_or_insert_with(Trigger::default).manual = Some(value.into());
        self
    }
    fn schedule(mut self, cron: &str, zone: Option<&str>) -> Self {
        let trigger = self.trigger.get_or_insert_with(Trigger::default);
        trigger.schedule = Some(cron.into());
        trigger.time_zone = zone.map(str::to_string);
        self
    }
    fn jitter(mut self, jitter: &str) -> Self {
        self.trigger.get_or_insert_with(Trigger::default).jitter = Some(jitter.into());
        self
    }
    fn answered(mut self, value: &str) -> Self {
        self.status.last_manual_sync = Some(value.into());
        self
    }
    fn paused(mut self) -> Self {
        self.paused = true;
        self
    }
    fn generation(mut self, generation: i64) -> Self {
        self.generation = generation;
        self
    }
    fn observed(mut self, generation: i64) -> Self {
        self.status.observed_generation = Some(generation);
        self
    }
    fn last_start(mut self, time: &str) -> Self {
        self.status.last_sync_start_time = Some(Time(at(time)));
        self
    }
    /// `failures` in a row, retried at `retry_at` (`None`: waiting for a change), of an attempt
    /// that ran generation 1.
    fn failed(mut self, failures: i32, retry_at: Option<&str>) -> Self {
        self.status.consecutive_failures = Some(failures);
        self.status.next_sync_time = retry_at.map(|t| Time(at(t)));
        self.status.observed_generation = Some(1);
        self.status.conditions = vec![Condition {
            type_: sluice_api::conditions::DEGRADED.into(),
            status: "True".into(),
            reason: reason::WRONG_PASSWORD.into(),
            message: "x".into(),
            observed_generation: Some(1),
            last_transition_time: Time(at("2026-11-22T10:00:00Z")),
        }];
        self.last_start("2026-11-22T10:00:00Z")
    }
    fn secret(mut self, modified: &str) -> Self {
        self.secret = Some(SecretSeen {
            modified: Some(at(modified)),
            unusable: None,
            repository: Some("s3:http://minio:9000/backups".into()),
        });
        self
    }
    fn secret_unusable(mut self, modified: &str) -> Self {
        self.secret = Some(SecretSeen {
            modified: Some(at(modified)),
            unusable: Some("repository Secret apps/repo lacks RESTIC_PASSWORD".into()),
            repository: None,
        });
        self
    }

    fn decide_idle(&self) -> Decision {
        self.decide(Phase::Idle {
            secret: self.secret.clone(),
        })
    }

    fn decide_syncing(&self, plan: &SyncPlan, progress: Progress) -> Decision {
        self.decide(Phase::Syncing {
            plan,
            progress: Box::new(progress),
        })
    }

    fn decide(&self, phase: Phase) -> Decision {
        decide(&Observed {
            now: at(NOW),
            spec: Spec {
                generation: Some(self.generation),
                created: Some(self.created),
                paused: self.paused,
                trigger: self.trigger.as_ref(),
                untriggered: self.untriggered,
                identity: identity(),
                invalid: self.invalid.clone(),
            },
            status: &self.status,
            phase,
        })
    }
}

const OLD_SECRET: &str = "2026-11-22T09:00:00Z";
const NEW_SECRET: &str = "2026-11-22T10:10:00Z";

fn start(next: Option<&str>, missed: u64) -> Decision {
    Decision::Start {
        next: next.map(at),
        missed,
    }
}

#[test]
fn between_syncs() {
    let cases: Vec<(&str, World, Decision)> = vec![
        (
            "paused starts nothing, even when due",
            source().manual("m1").secret(OLD_SECRET).paused(),
            Decision::Paused,
        ),
        (
            "paused wins over a failure waiting for a change",
            source().failed(1, None).paused(),
            Decision::Paused,
        ),
        (
            "a destination serving only populators never restores by itself",
            World {
                untriggered: Untriggered::Never,
                ..destination()
            }
            .generation(2)
            .observed(1),
            Decision::ServesPopulators,
        ),
        (
            "a new manual value is due; the Secret is read before starting",
            source().manual("m1"),
            Decision::ReadSecret,
        ),
        (
            "a new manual value with a usable Secret starts",
            source().manual("m1").secret(OLD_SECRET),
            start(None, 0),
        ),
        (
            "a manual value already answered waits for the next one",
            source().manual("m1").answered("m1"),
            Decision::WaitForTrigger,
        ),
        (
            "a due sync with an unusable Secret fails before any Job",
            source().manual("m1").secret_unusable(OLD_SECRET),
            Decision::SecretInvalid {
                message: "repository Secret apps/repo lacks RESTIC_PASSWORD".into(),
                failures: 1,
            },
        ),
        (
            "a schedule not due yet waits for its next time",
            source()
                .schedule("0 * * * *", None)
                .last_start("2026-11-22T10:00:00Z"),
            Decision::WaitForSchedule(at("2026-11-22T11:00:00Z")),
        ),
        (
            "a schedule counts its first occurrence from the object's creation",
            source().schedule("0 * * * *", None).secret(OLD_SECRET),
            start(Some("2026-11-22T11:00:00Z"), 0),
        ),
        (
            "missed occurrences collapse into one sync and are counted",
            source()
                .schedule("0 * * * *", None)
                .last_start("2026-11-22T07:00:00Z")
                .secret(OLD_SECRET),
            start(Some("2026-11-22T11:00:00Z"), 2),
        ),
        (
            "a schedule is read in its time zone",
            source()
                .schedule("0 11 * * *", Some("Europe/Berlin"))
                .last_start("2026-11-21T10:00:00Z")
                .secret(OLD_SECRET),
            start(Some("2026-11-23T10:00:00Z"), 0),
        ),
        (
            "H takes the object's own minute: apps/db syncs at :33, and nextSyncTime says so",
            source()
                .schedule("H * * * *", None)
                .last_start("2026-11-22T09:33:00Z"),
            Decision::WaitForSchedule(at("2026-11-22T10:33:00Z")),
        ),
        (
            "jitter delays each occurrence by the object's own offset (4m55.245s of 10m here)",
            source()
                .schedule("0 * * * *", None)
                .jitter("10m")
                .last_start("2026-11-22T10:04:55.245Z"),
            Decision::WaitForSchedule(at("2026-11-22T11:04:55.245Z")),
        ),
        (
            "a jittered occurrence that passed starts, and the next one is delayed alike",
            source()
                .schedule("0 * * * *", None)
                .jitter("10m")
                .secret(OLD_SECRET),
            start(Some("2026-11-22T11:04:55.245Z"), 0),
        ),
        (
            "a malformed jitter is a condition",
            source().schedule("@hourly", None).jitter("5 minutes"),
            Decision::InvalidSchedule(
                "spec.trigger.jitter \"5 minutes\" is not a duration of at most 168h such as \
                 90s, 5m or 1h30m"
                    .into(),
            ),
        ),
        (
            "a manual value is due between scheduled times",
            source()
                .schedule("0 * * * *", None)
                .last_start("2026-11-22T10:00:00Z")
                .manual("m2")
                .answered("m1")
                .secret(OLD_SECRET),
            start(Some("2026-11-22T11:00:00Z"), 0),
        ),
        (
            "a cron expression that does not parse is a condition, for both kinds",
            destination().schedule("every hour", None),
            Decision::InvalidSchedule(
                Schedule::parse("every hour", None, None, identity())
                    .unwrap_err()
                    .to_string(),
            ),
        ),
        (
            "a kind's own field that cannot be planned is a condition, even with a sync due",
            source()
                .manual("m2")
                .answered("m1")
                .invalid("spec.restic.verify.schedule \"x\" is not valid")
                .secret(OLD_SECRET),
            Decision::InvalidSchedule("spec.restic.verify.schedule \"x\" is not valid".into()),
        ),
        (
            "an unknown time zone is a condition",
            source().schedule("@hourly", Some("Mars/Olympus")),
            Decision::InvalidSchedule(
                "spec.trigger.timeZone \"Mars/Olympus\" is not a known IANA time zone; use a \
                 name such as Europe/Berlin"
                    .into(),
            ),
        ),
        (
            "a failure in backoff waits for its retry time, even with a new manual value",
            source()
                .manual("m2")
                .failed(1, Some("2026-11-22T10:31:00Z")),
            Decision::BackingOff(at("2026-11-22T10:31:00Z")),
        ),
        (
            "a continuous source in backoff waits too",
            source().failed(2, Some("2026-11-22T10:31:00Z")),
            Decision::BackingOff(at("2026-11-22T10:31:00Z")),
        ),
        (
            "a backoff that ended retries, though the schedule is not due",
            source()
                .schedule("0 * * * *", None)
                .failed(1, Some("2026-11-22T10:29:00Z"))
                .secret(OLD_SECRET),
            start(Some("2026-11-22T11:00:00Z"), 0),
        ),
        (
            "a destination's backoff that ended retries its restore",
            destination()
                .observed(1)
                .failed(3, Some("2026-11-22T10:29:00Z"))
                .secret(OLD_SECRET),
            start(None, 0),
        ),
        (
            "a failure waiting for a change reads the Secret to see whether it changed",
            source().manual("m1").failed(1, None),
            Decision::ReadSecret,
        ),
        (
            "a failure waiting for a change stays blocked while nothing changed",
            source().manual("m1").failed(1, None).secret(OLD_SECRET),
            Decision::Blocked,
        ),
        (
            "a Secret fixed after the failed attempt unblocks the pending manual sync",
            source().manual("m1").failed(1, None).secret(NEW_SECRET),
            start(None, 0),
        ),
        (
            "a Secret fixed after the failed attempt retries a scheduled source at once",
            source()
                .schedule("0 * * * *", None)
                .failed(1, None)
                .secret(NEW_SECRET),
            start(Some("2026-11-22T11:00:00Z"), 0),
        ),
        (
            "a new generation unblocks a destination",
            destination()
                .observed(1)
                .generation(2)
                .failed(1, None)
                .secret(OLD_SECRET),
            start(None, 0),
        ),
        (
            "a Secret still unusable after its change fails again, counted",
            source()
                .manual("m1")
                .failed(1, None)
                .secret_unusable(NEW_SECRET),
            Decision::SecretInvalid {
                message: "repository Secret apps/repo lacks RESTIC_PASSWORD".into(),
                failures: 2,
            },
        ),
        (
            "a source without a trigger syncs continuously",
            source().observed(1).secret(OLD_SECRET),
            start(None, 0),
        ),
        (
            "a destination without a trigger restored this generation and waits",
            destination().observed(1),
            Decision::WaitForTrigger,
        ),
        (
            "a destination without a trigger restores a new generation",
            destination().observed(1).generation(2).secret(OLD_SECRET),
            start(None, 0),
        ),
        (
            "a destination with a manual trigger restores only on a new value",
            destination()
                .manual("m1")
                .answered("m1")
                .generation(2)
                .observed(1),
            Decision::WaitForTrigger,
        ),
    ];
    for (scenario, world, expected) in cases {
        assert_eq!(world.decide_idle(), expected, "{scenario}");
    }
}

fn plan(started: &str) -> SyncPlan {
    SyncPlan {
        actions: vec![SyncAction::Unlock, SyncAction::Backup],
        started_at: Time(at(started)),
        job_name: "sluice-src-db-1".into(),
        manual: Some("m1".into()),
        unlock: None,
        repository: Some("s3:http://minio:9000/backups".into()),
    }
}

fn waiting() -> Waiting {
    Waiting {
        reason: reason::WAITING_FOR_SNAPSHOT,
        message: "waiting for VolumeSnapshot s".into(),
        action: "Snapshot",
        warning: "VolumeSnapshot s: not readyToUse yet".into(),
    }
}

fn claim() -> NewObject {
    NewObject::Claim(Box::default())
}

fn mount() -> Mount {
    Mount {
        claim: "data".into(),
        node: Some("node-1".into()),
        block: false,
        scratch: None,
    }
}

fn ended(result: MoverResult, publish: Step<Option<TypedLocalObjectReference>>) -> Progress {
    Progress::Ended { result, publish }
}

fn ok() -> MoverResult {
    MoverResult {
        snapshot_id: Some("a".repeat(64)),
        ..Default::default()
    }
}

fn failed_with(class: ErrorClass) -> MoverResult {
    MoverResult {
        error_class: Some(class),
        message: Some("it broke".into()),
        ..Default::default()
    }
}

fn image() -> TypedLocalObjectReference {
    TypedLocalObjectReference {
        api_group: None,
        kind: "PersistentVolumeClaim".into(),
        name: "restored".into(),
    }
}

fn finish(
    result: MoverResult,
    verdict: Verdict,
    image: Option<TypedLocalObjectReference>,
) -> Decision {
    Decision::Finish(Outcome {
        result,
        verdict,
        image,
    })
}

#[test]
fn during_a_sync() {
    let just = "2026-11-22T10:29:00Z";
    let long_ago = "2026-11-22T10:20:00Z";
    let snapshot_missing = MoverResult {
        error_class: Some(ErrorClass::Internal),
        message: Some("source PVC apps/data not found".into()),
        ..Default::default()
    };
    let cases: Vec<(&str, World, &str, Progress, Decision)> = vec![
        (
            "the volume is ready: the Job is created",
            source(),
            just,
            Progress::Preparing(Step::Ready(mount())),
            Decision::CreateJob(mount()),
        ),
        (
            "the volume needs an object first",
            source(),
            just,
            Progress::Preparing(Step::Create(claim())),
            Decision::Create(claim()),
        ),
        (
            "waiting for a snapshot warns five minutes after the sync started",
            source(),
            just,
            Progress::Preparing(Step::Wait(waiting())),
            Decision::Wait {
                waiting: waiting(),
                warn_at: at("2026-11-22T10:34:00Z"),
            },
        ),
        (
            "waiting for a snapshot past the warning time",
            source(),
            long_ago,
            Progress::Preparing(Step::Wait(waiting())),
            Decision::Wait {
                waiting: waiting(),
                warn_at: at("2026-11-22T10:25:00Z"),
            },
        ),
        (
            "a volume that cannot be prepared fails the sync, with backoff for a retryable class",
            source(),
            just,
            Progress::Preparing(Step::Fail {
                class: ErrorClass::Internal,
                reason: reason::SOURCE_PVC_NOT_FOUND,
                message: "source PVC apps/data not found".into(),
            }),
            finish(
                snapshot_missing,
                Verdict::Failed {
                    reason: reason::SOURCE_PVC_NOT_FOUND,
                    failures: 1,
                    retry: Retry::After(backoff::FIRST_RETRY),
                },
                None,
            ),
        ),
        (
            "the mover runs",
            source(),
            just,
            Progress::Running { unbound: None },
            Decision::Running,
        ),
        (
            "a paused object's running sync goes on",
            source().paused(),
            just,
            Progress::Running { unbound: None },
            Decision::Running,
        ),
        (
            "the Job waits for its claim to bind",
            source(),
            long_ago,
            Progress::Running {
                unbound: Some(waiting()),
            },
            Decision::Wait {
                waiting: waiting(),
                warn_at: at("2026-11-22T10:25:00Z"),
            },
        ),
        (
            "a success without a schedule has no next time",
            source().manual("m1"),
            just,
            ended(ok(), Step::Ready(None)),
            finish(ok(), Verdict::Succeeded { next: None }, None),
        ),
        (
            "a scheduled success names the schedule's next time",
            source().schedule("0 * * * *", None),
            just,
            ended(ok(), Step::Ready(None)),
            finish(
                ok(),
                Verdict::Succeeded {
                    next: Some(at("2026-11-22T11:00:00Z")),
                },
                None,
            ),
        ),
        (
            "a retryable failure backs off by the failures in a row",
            source().failed(2, None),
            just,
            ended(failed_with(ErrorClass::Network), Step::Ready(None)),
            finish(
                failed_with(ErrorClass::Network),
                Verdict::Failed {
                    reason: reason::NETWORK_ERROR,
                    failures: 3,
                    retry: Retry::After(backoff::retry_delay(3)),
                },
                None,
            ),
        ),
        (
            "a failure retrying cannot fix waits for a change",
            source(),
            just,
            ended(failed_with(ErrorClass::WrongPassword), Step::Ready(None)),
            finish(
                failed_with(ErrorClass::WrongPassword),
                Verdict::Failed {
                    reason: reason::WRONG_PASSWORD,
                    failures: 1,
                    retry: Retry::WaitForChange,
                },
                None,
            ),
        ),
        (
            "a failure is recorded whatever publishing would need",
            destination(),
            just,
            ended(failed_with(ErrorClass::NoSnapshot), Step::Create(claim())),
            finish(
                failed_with(ErrorClass::NoSnapshot),
                Verdict::Failed {
                    reason: reason::NO_SNAPSHOT,
                    failures: 1,
                    retry: Retry::WaitForChange,
                },
                None,
            ),
        ),
        (
            "a restore's image is created first",
            destination(),
            just,
            ended(ok(), Step::Create(claim())),
            Decision::Create(claim()),
        ),
        (
            "a restore's image is awaited",
            destination(),
            just,
            ended(ok(), Step::Wait(waiting())),
            Decision::Wait {
                waiting: waiting(),
                warn_at: at("2026-11-22T10:34:00Z"),
            },
        ),
        (
            "a restore's ready image is published with the result",
            destination(),
            just,
            ended(ok(), Step::Ready(Some(image()))),
            finish(ok(), Verdict::Succeeded { next: None }, Some(image())),
        ),
    ];
    for (scenario, world, started, progress, expected) in cases {
        assert_eq!(
            world.decide_syncing(&plan(started), progress),
            expected,
            "{scenario}"
        );
    }
}

#[test]
fn timers_are_for_what_time_alone_changes() {
    let now = at(NOW);
    let wait_until = |warn_at| Decision::Wait {
        waiting: waiting(),
        warn_at,
    };
    let cases = [
        (Decision::Paused, None),
        (Decision::WaitForTrigger, None),
        (Decision::InvalidSchedule("x".into()), None),
        (Decision::Blocked, Some(secret::RECHECK)),
        (
            Decision::SecretInvalid {
                message: "x".into(),
                failures: 1,
            },
            Some(secret::RECHECK),
        ),
        (
            Decision::BackingOff(now + SignedDuration::from_secs(90)),
            Some(Duration::from_secs(90)),
        ),
        (
            Decision::WaitForSchedule(now + SignedDuration::from_millis(200)),
            Some(STEP),
        ),
        (
            Decision::WaitForSchedule(now - SignedDuration::from_secs(5)),
            Some(STEP),
        ),
        (
            wait_until(now + SignedDuration::from_secs(120)),
            Some(Duration::from_secs(120)),
        ),
        // In a sync, what is owned is watched: a timer only covers a missed event.
        (wait_until(now - SignedDuration::from_secs(1)), Some(SAFETY)),
        (start(None, 0), Some(SAFETY)),
        // Woken when its line moves: a timer only covers a missed wake-up.
        (
            Decision::Queued {
                repository: "s3:http://minio:9000/backups".into(),
                place: crate::queue::Place {
                    position: 1,
                    waiting: 1,
                    blocked_by: crate::queue::Blocker::Full { running: 4 },
                },
                max: 4,
            },
            Some(SAFETY),
        ),
        (Decision::Create(claim()), Some(SAFETY)),
        (Decision::CreateJob(mount()), Some(SAFETY)),
        (Decision::Running, Some(SAFETY)),
        (
            finish(ok(), Verdict::Succeeded { next: None }, None),
            Some(SAFETY),
        ),
    ];
    for (decision, expected) in cases {
        assert_eq!(decision.requeue(now), expected, "{decision:?}");
    }
    assert!(!wait_until(now + SignedDuration::from_secs(1)).warns(now));
    assert!(wait_until(now).warns(now));
    assert!(!Decision::Running.warns(now));
}

#[test]
fn only_decisions_that_create_or_delete_need_a_current_object() {
    let changes = [
        Decision::Create(claim()),
        Decision::CreateJob(mount()),
        finish(ok(), Verdict::Succeeded { next: None }, None),
    ];
    assert!(changes.iter().all(Decision::changes_objects));
    let status_only = [
        Decision::Paused,
        Decision::Blocked,
        start(None, 0),
        Decision::Running,
        Decision::SecretInvalid {
            message: "x".into(),
            failures: 1,
        },
    ];
    assert!(!status_only.iter().any(Decision::changes_objects));
}
