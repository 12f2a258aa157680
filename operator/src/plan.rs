//! The sync plan: what one mover run does, decided once when the sync starts.
//!
//! The plan is written to `status.syncPlan` before the Job exists and the Job is built from it
//! alone, so a spec edit or an elapsed interval during a run never changes (or recreates) the
//! running Job.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use sluice_api::{ReplicationDestination, ReplicationSource, SyncAction, SyncPlan};

use crate::{
    schedule::{Schedule, ScheduleError},
    spread::Identity,
};

/// Days between prunes when `spec.restic.pruneIntervalDays` is not set.
pub const DEFAULT_PRUNE_INTERVAL_DAYS: i32 = 7;

/// Longest Job name: Job names become the `job-name` label of their Pods, limited to 63.
const MAX_JOB_NAME: usize = 63;

/// The actions of a backup sync starting at `now`.
///
/// Unlocking stale locks is cheap and makes a killed mover harmless, so it always runs. Prune
/// and check run when their interval has elapsed since they last completed, or never did; the
/// restore test when its schedule passed a time since the last one finished, or none ran.
pub fn source_actions(source: &ReplicationSource, now: Timestamp) -> Vec<SyncAction> {
    let restic = &source.spec.restic;
    let done = source
        .status
        .as_ref()
        .and_then(|status| status.restic.as_ref());
    let mut actions = vec![SyncAction::Unlock, SyncAction::Backup];
    if restic.retain.is_some() {
        actions.push(SyncAction::Forget);
    }
    let prune_days = restic
        .prune_interval_days
        .unwrap_or(DEFAULT_PRUNE_INTERVAL_DAYS);
    if interval_elapsed(done.and_then(|d| d.last_pruned.as_ref()), prune_days, now) {
        actions.push(SyncAction::Prune);
    }
    if let Some(check_days) = restic.check_interval_days
        && interval_elapsed(done.and_then(|d| d.last_checked.as_ref()), check_days, now)
    {
        actions.push(SyncAction::Check);
    }
    if verify_due(source, now) {
        actions.push(SyncAction::Verify);
    }
    actions
}

/// The field `spec.restic.verify.schedule`, as errors name it.
const VERIFY_SCHEDULE: &str = "spec.restic.verify.schedule";

/// The restore test's schedule, in `spec.trigger.timeZone`; `None` without `spec.restic.verify`.
pub fn verify_schedule(source: &ReplicationSource) -> Option<Result<Schedule, ScheduleError>> {
    let verify = source.spec.restic.verify.as_ref()?;
    let zone = source
        .spec
        .trigger
        .as_ref()
        .and_then(|trigger| trigger.time_zone.as_deref());
    let identity = Identity::of(&source.namespace().unwrap_or_default(), &source.name_any());
    Some(Schedule::parse_field(
        VERIFY_SCHEDULE,
        &verify.schedule,
        zone,
        None,
        identity,
    ))
}

/// Whether a sync starting at `now` runs the restore test: none ran yet, or the schedule has a
/// time after the last one finished. An invalid schedule never is (the spec is refused first).
fn verify_due(source: &ReplicationSource, now: Timestamp) -> bool {
    let Some(schedule) = verify_schedule(source) else {
        return false;
    };
    let last = source
        .status
        .as_ref()
        .and_then(|status| status.verification.as_ref())
        .map(|verification| verification.time.0);
    match (schedule, last) {
        (Err(_), _) => false,
        (Ok(_), None) => true,
        (Ok(schedule), Some(last)) => schedule.due(last, now).is_ok_and(|due| due.now),
    }
}

/// The plan of a backup sync starting at `now`.
pub fn source_plan(source: &ReplicationSource, now: Timestamp) -> SyncPlan {
    let done = source
        .status
        .as_ref()
        .and_then(|status| status.restic.as_ref());
    let unlock = source
        .spec
        .restic
        .unlock
        .clone()
        .filter(|wanted| done.and_then(|d| d.last_unlocked.as_ref()) != Some(wanted));
    SyncPlan {
        actions: source_actions(source, now),
        started_at: Time(now),
        job_name: job_name("sluice-src", &source.name_any(), now),
        manual: source
            .spec
            .trigger
            .as_ref()
            .and_then(|trigger| trigger.manual.clone()),
        unlock,
        repository: None,
    }
}

/// The plan of a restore starting at `now`.
pub fn destination_plan(destination: &ReplicationDestination, now: Timestamp) -> SyncPlan {
    SyncPlan {
        actions: vec![SyncAction::Restore],
        started_at: Time(now),
        job_name: job_name("sluice-dst", &destination.name_any(), now),
        manual: destination
            .spec
            .trigger
            .as_ref()
            .and_then(|trigger| trigger.manual.clone()),
        unlock: None,
        repository: None,
    }
}

/// The value of `SLUICE_JOB_ACTIONS` for a plan.
pub fn actions_env(actions: &[SyncAction]) -> String {
    actions
        .iter()
        .map(|action| match action {
            SyncAction::Unlock => "unlock",
            SyncAction::Backup => "backup",
            SyncAction::Forget => "forget",
            SyncAction::Prune => "prune",
            SyncAction::Check => "check",
            SyncAction::Verify => "verify",
            SyncAction::Restore => "restore",
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn interval_elapsed(last: Option<&Time>, days: i32, now: Timestamp) -> bool {
    match last {
        None => true,
        Some(Time(last)) => {
            now.duration_since(*last) >= SignedDuration::from_hours(24 * i64::from(days))
        }
    }
}

/// `<prefix>-<object>-<unix milliseconds>`, with the object name shortened so the whole stays
/// a valid 63-character name. The time suffix keeps successive syncs apart: two syncs of one
/// object start at least a status write apart, which takes more than a millisecond, while at
/// one-second resolution a sync ending and starting again within the second took the name of
/// the Job still being deleted, and with it that Job's result.
pub fn job_name(prefix: &str, object: &str, now: Timestamp) -> String {
    let suffix = format!("-{}", now.as_millisecond());
    let room = MAX_JOB_NAME - prefix.len() - 1 - suffix.len();
    let object: String = object.chars().take(room).collect();
    let object = object.trim_end_matches(['-', '.']);
    format!("{prefix}-{object}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_api::{ReplicationSourceStatus, ResticSourceStatus, RetainPolicy};

    fn source(yaml: &str) -> ReplicationSource {
        serde_saphyr::from_str(yaml).unwrap()
    }

    const MINIMAL: &str = r#"
apiVersion: sluice.dev/v1alpha1
kind: ReplicationSource
metadata: {name: db, namespace: apps}
spec:
  sourcePVC: data
  restic: {repository: repo, copyMethod: Snapshot}
"#;

    fn now() -> Timestamp {
        "2026-11-22T10:00:00Z".parse().unwrap()
    }

    fn with_restic_status(
        mut source: ReplicationSource,
        restic: ResticSourceStatus,
    ) -> ReplicationSource {
        source.status = Some(ReplicationSourceStatus {
            restic: Some(restic),
            ..Default::default()
        });
        source
    }

    fn days_ago(days: i64) -> Option<Time> {
        Some(Time(now() - SignedDuration::from_hours(24 * days)))
    }

    #[test]
    fn first_sync_unlocks_backs_up_and_prunes() {
        let actions = source_actions(&source(MINIMAL), now());
        assert_eq!(
            actions,
            [SyncAction::Unlock, SyncAction::Backup, SyncAction::Prune]
        );
    }

    #[test]
    fn retain_adds_forget() {
        let mut source = with_restic_status(
            source(MINIMAL),
            ResticSourceStatus {
                last_pruned: days_ago(1),
                ..Default::default()
            },
        );
        source.spec.restic.retain = Some(RetainPolicy {
            daily: Some(7),
            ..Default::default()
        });
        assert_eq!(
            source_actions(&source, now()),
            [SyncAction::Unlock, SyncAction::Backup, SyncAction::Forget]
        );
    }

    #[test]
    fn prune_waits_for_its_interval() {
        let mut source = with_restic_status(
            source(MINIMAL),
            ResticSourceStatus {
                last_pruned: days_ago(6),
                ..Default::default()
            },
        );
        assert!(!source_actions(&source, now()).contains(&SyncAction::Prune));
        source
            .status
            .as_mut()
            .unwrap()
            .restic
            .as_mut()
            .unwrap()
            .last_pruned = days_ago(7);
        assert!(source_actions(&source, now()).contains(&SyncAction::Prune));
        source.spec.restic.prune_interval_days = Some(30);
        assert!(!source_actions(&source, now()).contains(&SyncAction::Prune));
    }

    #[test]
    fn check_only_when_configured_and_due() {
        let mut source = with_restic_status(
            source(MINIMAL),
            ResticSourceStatus {
                last_pruned: days_ago(1),
                last_checked: days_ago(2),
                ..Default::default()
            },
        );
        assert!(!source_actions(&source, now()).contains(&SyncAction::Check));
        source.spec.restic.check_interval_days = Some(3);
        assert!(!source_actions(&source, now()).contains(&SyncAction::Check));
        source.spec.restic.check_interval_days = Some(2);
        assert_eq!(
            source_actions(&source, now()).last(),
            Some(&SyncAction::Check)
        );
    }

    #[test]
    fn the_restore_test_runs_first_then_on_its_schedule() {
        let verified_at = |at: &str| sluice_api::Verification {
            time: Time(at.parse().unwrap()),
            snapshot_id: "a".repeat(64),
            files_checked: 1,
            bytes_checked: 1,
            files_mismatched: 0,
            mismatches: vec![],
        };
        // (verify.schedule, trigger.timeZone, last restore test, due at now()=10:00Z)
        let cases = [
            (None, None, None, false),
            (Some("0 3 * * *"), None, None, true),
            (Some("0 3 * * *"), None, Some("2026-11-22T03:20:00Z"), false),
            (Some("0 3 * * *"), None, Some("2026-11-21T03:20:00Z"), true),
            (Some("0 9 * * *"), None, Some("2026-11-22T08:59:00Z"), true),
            // 09:00 in Berlin is 08:00Z: due; in New York it is 14:00Z: not yet.
            (
                Some("0 9 * * *"),
                Some("Europe/Berlin"),
                Some("2026-11-22T07:00:00Z"),
                true,
            ),
            (
                Some("0 9 * * *"),
                Some("America/New_York"),
                Some("2026-11-22T07:00:00Z"),
                false,
            ),
            (Some("@weekly"), None, Some("2026-11-20T00:00:00Z"), true),
            (Some("every night"), None, None, false),
        ];
        for (schedule, zone, last, due) in cases {
            let mut source = source(MINIMAL);
            source.spec.restic.verify = schedule.map(|schedule| sluice_api::VerifySpec {
                schedule: schedule.into(),
                capacity: None,
                storage_class_name: None,
            });
            source.spec.trigger = zone.map(|zone| sluice_api::Trigger {
                time_zone: Some(zone.into()),
                ..Default::default()
            });
            source.status = Some(ReplicationSourceStatus {
                verification: last.map(verified_at),
                ..Default::default()
            });
            let actions = source_actions(&source, now());
            assert_eq!(
                actions.contains(&SyncAction::Verify),
                due,
                "{schedule:?} in {zone:?} after {last:?}: {actions:?}"
            );
        }
    }

    #[test]
    fn plan_carries_manual_and_new_unlock_values() {
        let mut source = with_restic_status(
            source(MINIMAL),
            ResticSourceStatus {
                last_unlocked: Some("one".into()),
                ..Default::default()
            },
        );
        source.spec.trigger = Some(sluice_api::Trigger {
            manual: Some("m1".into()),
            ..Default::default()
        });
        source.spec.restic.unlock = Some("one".into());
        let plan = source_plan(&source, now());
        assert_eq!(plan.manual.as_deref(), Some("m1"));
        assert_eq!(
            plan.unlock, None,
            "an unlock value already done is not planned again"
        );
        source.spec.restic.unlock = Some("two".into());
        assert_eq!(source_plan(&source, now()).unlock.as_deref(), Some("two"));
        assert_eq!(plan.started_at, Time(now()));
    }

    #[test]
    fn job_names_are_valid_and_distinct_per_sync() {
        let plan = source_plan(&source(MINIMAL), now());
        assert_eq!(
            plan.job_name,
            format!("sluice-src-db-{}", now().as_millisecond())
        );
        let long = "a".repeat(200);
        let name = job_name("sluice-src", &long, now());
        assert!(name.len() <= MAX_JOB_NAME, "{name}");
        for apart in [
            SignedDuration::from_millis(1),
            SignedDuration::from_secs(60),
        ] {
            let later = job_name("sluice-src", &long, now() + apart);
            assert_ne!(name, later, "{apart:?} apart");
            assert!(later.len() <= MAX_JOB_NAME, "{later}");
        }
        assert!(!job_name("sluice-src", &format!("{}-b", "a".repeat(40)), now()).contains("--"));
    }

    #[test]
    fn actions_env_is_comma_separated_in_order() {
        assert_eq!(
            actions_env(&[
                SyncAction::Unlock,
                SyncAction::Backup,
                SyncAction::Forget,
                SyncAction::Prune
            ]),
            "unlock,backup,forget,prune"
        );
    }
}
