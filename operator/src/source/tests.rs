//! A backup's own steps: the point-in-time copy by copy method, and what a finished backup
//! records.

use super::*;
use crate::testing::{at, backup_plan as plan, object};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::json;
use sluice_api::{MoverOutcome, SyncStatus, conditions::reason, labels};

use crate::{
    backoff::Retry,
    status::{self, Moment},
};

fn source(copy_method: &str) -> ReplicationSource {
    object(&format!(
        r#"
apiVersion: sluice.dev/v1alpha1
kind: ReplicationSource
metadata: {{name: db, namespace: apps, uid: u-1}}
spec:
  sourcePVC: data
  restic: {{repository: repo, copyMethod: {copy_method}, volumeSnapshotClassName: csi-snap}}
"#
    ))
}

fn source_claim() -> PersistentVolumeClaim {
    volume::pvc(
        Default::default(),
        PvcShape {
            capacity: Some(Quantity("5Gi".into())),
            storage_class: Some("fast".into()),
            access_modes: Some(vec!["ReadWriteMany".into()]),
            volume_mode: None,
        },
        None,
    )
}

fn block_claim() -> PersistentVolumeClaim {
    let mut claim = source_claim();
    claim.spec.as_mut().unwrap().volume_mode = Some("Block".into());
    claim
}

fn snapshot(status: serde_json::Value) -> VolumeSnapshot {
    let mut snapshot = volume::volume_snapshot(Default::default(), "data", None);
    snapshot.status = serde_json::from_value(status).unwrap();
    snapshot
}

fn step(source: &ReplicationSource, seen: CopySeen) -> Step<Mount> {
    copy_step(
        source,
        &plan(),
        &Owner::of(source, labels::REPLICATION_SOURCE),
        &seen,
    )
}

fn created_claim(step: Step<Mount>) -> PersistentVolumeClaim {
    match step {
        Step::Create(NewObject::Claim(claim)) => *claim,
        other => panic!("expected a claim to create, got {other:?}"),
    }
}

fn ready_copy() -> Step<Mount> {
    Step::Ready(Mount {
        claim: "sluice-src-db-1".into(),
        node: None,
        block: false,
        scratch: None,
    })
}

#[test]
fn direct_mounts_the_live_claim_on_its_pods_node() {
    let seen = CopySeen {
        node: Some("node-2".into()),
        ..Default::default()
    };
    assert_eq!(
        step(&source("Direct"), seen),
        Step::Ready(Mount {
            claim: "data".into(),
            node: Some("node-2".into()),
            block: false,
            scratch: None,
        })
    );
}

#[test]
fn a_block_source_is_copied_as_block_and_attached_as_a_device() {
    for method in ["Clone", "Snapshot"] {
        let source = source(method);
        let mut seen = CopySeen {
            source: Some(block_claim()),
            snapshot: Some(snapshot(json!({"readyToUse": true, "restoreSize": "2Gi"}))),
            ..Default::default()
        };
        let copy = created_claim(step(&source, seen.clone()));
        assert_eq!(
            copy.spec.unwrap().volume_mode.as_deref(),
            Some("Block"),
            "{method}"
        );
        seen.copy = Some(PersistentVolumeClaim::default());
        assert_eq!(
            step(&source, seen),
            Step::Ready(Mount {
                claim: "sluice-src-db-1".into(),
                node: None,
                block: true,
                scratch: None,
            }),
            "{method}"
        );
    }
    let direct = CopySeen {
        source: Some(block_claim()),
        node: Some("node-2".into()),
        ..Default::default()
    };
    let Step::Ready(mount) = step(&source("Direct"), direct) else {
        panic!("Direct mounts the live claim");
    };
    assert!(mount.block);
}

#[test]
fn a_missing_source_claim_fails_the_sync_with_a_retry() {
    for method in ["Clone", "Snapshot"] {
        assert_eq!(
            step(&source(method), CopySeen::default()),
            Step::Fail {
                class: ErrorClass::Internal,
                reason: reason::SOURCE_PVC_NOT_FOUND,
                message: "source PVC apps/data not found; create it or fix spec.sourcePVC".into(),
            },
            "{method}"
        );
    }
}

#[test]
fn clone_creates_a_copy_shaped_like_the_source_then_mounts_it() {
    let source = source("Clone");
    let seen = CopySeen {
        source: Some(source_claim()),
        ..Default::default()
    };
    let copy = created_claim(step(&source, seen.clone()));
    assert_eq!(copy.metadata.name.as_deref(), Some("sluice-src-db-1"));
    let labels = copy.metadata.labels.clone().unwrap();
    assert_eq!(labels[labels::REPLICATION_SOURCE], "db");
    assert_eq!(labels[labels::MANAGED_BY], labels::MANAGED_BY_VALUE);
    assert_eq!(copy.metadata.owner_references.unwrap()[0].uid, "u-1");
    let spec = copy.spec.unwrap();
    assert_eq!(spec.data_source.unwrap().name, "data");
    assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
    assert_eq!(spec.access_modes.unwrap(), ["ReadWriteMany"]);
    assert_eq!(
        spec.resources.unwrap().requests.unwrap()["storage"],
        Quantity("5Gi".into())
    );
    let made = CopySeen {
        copy: Some(PersistentVolumeClaim::default()),
        ..seen
    };
    assert_eq!(step(&source, made), ready_copy());
}

#[test]
fn snapshot_takes_a_snapshot_waits_for_it_then_restores_a_copy_from_it() {
    let source = source("Snapshot");
    let seen = CopySeen {
        source: Some(source_claim()),
        ..Default::default()
    };
    let Step::Create(NewObject::Snapshot(taken)) = step(&source, seen.clone()) else {
        panic!("the snapshot comes first");
    };
    let taken = serde_json::to_value(&taken).unwrap();
    assert_eq!(taken["metadata"]["name"], "sluice-src-db-1");
    assert_eq!(taken["spec"]["source"]["persistentVolumeClaimName"], "data");
    assert_eq!(taken["spec"]["volumeSnapshotClassName"], "csi-snap");

    let failing = CopySeen {
        snapshot: Some(snapshot(
            json!({"readyToUse": false, "error": {"message": "no CSI driver"}}),
        )),
        ..seen.clone()
    };
    let Step::Wait(waiting) = step(&source, failing) else {
        panic!("a snapshot not ready is awaited");
    };
    assert_eq!(waiting.reason, reason::WAITING_FOR_SNAPSHOT);
    assert_eq!(
        waiting.message,
        "waiting for VolumeSnapshot sluice-src-db-1 of PVC data to become readyToUse"
    );
    assert_eq!(
        waiting.warning,
        "VolumeSnapshot sluice-src-db-1: no CSI driver"
    );

    let ready = CopySeen {
        snapshot: Some(snapshot(json!({"readyToUse": true, "restoreSize": "2Gi"}))),
        ..seen
    };
    let copy = created_claim(step(&source, ready.clone())).spec.unwrap();
    let data_source = copy.data_source.unwrap();
    assert_eq!(
        (data_source.kind.as_str(), data_source.name.as_str()),
        ("VolumeSnapshot", "sluice-src-db-1")
    );
    assert_eq!(
        copy.resources.unwrap().requests.unwrap()["storage"],
        Quantity("2Gi".into()),
        "sized by the snapshot's restoreSize, not the source's request"
    );
    let made = CopySeen {
        copy: Some(PersistentVolumeClaim::default()),
        ..ready
    };
    assert_eq!(step(&source, made), ready_copy());
}

#[test]
fn only_copies_are_watched_for_binding_and_removed_after_the_sync() {
    let outcome = Outcome {
        result: MoverResult::default(),
        verdict: Verdict::Succeeded { next: None },
        image: None,
    };
    let name = "sluice-src-db-1".to_string();
    let cases = [
        ("Direct", None, vec![]),
        (
            "Clone",
            Some((name.clone(), "the point-in-time copy", "Copy")),
            vec![Temporary::Claim(name.clone())],
        ),
        (
            "Snapshot",
            Some((name.clone(), "the point-in-time copy", "Copy")),
            vec![
                Temporary::Claim(name.clone()),
                Temporary::Snapshot(name.clone()),
            ],
        ),
    ];
    for (method, watched, temporary) in cases {
        let source = source(method);
        assert_eq!(source.mounted_claim(&plan()), watched, "{method}");
        let mut status = ReplicationSourceStatus::default();
        let finished = Finished {
            plan: &plan(),
            outcome: &outcome,
            now: at("2026-11-22T10:05:00Z"),
        };
        let recorded = source.record(&mut status, &finished);
        assert_eq!(recorded.temporary, temporary, "{method}");
    }
}

/// A finished backup recorded as the controller does: the kind's fields, then the shared ones.
fn finish(
    status: &mut ReplicationSourceStatus,
    plan: &SyncPlan,
    result: MoverResult,
    now: Timestamp,
) -> Recorded {
    let failures = status.sync.consecutive_failures.unwrap_or(0) as u32 + 1;
    let verdict = match result.error_class {
        None => Verdict::Succeeded { next: None },
        Some(class) => Verdict::Failed {
            reason: class.condition_reason(),
            failures,
            retry: Retry::After(std::time::Duration::from_secs(30)),
        },
    };
    let outcome = Outcome {
        result,
        verdict,
        image: None,
    };
    let finished = Finished {
        plan,
        outcome: &outcome,
        now,
    };
    let source = source("Direct");
    let recorded = source.record(status, &finished);
    let moment = Moment {
        now,
        generation: Some(1),
        noun: "sync",
        plan: Some(plan),
        manual_trigger: true,
        summary: &recorded.summary,
    };
    status::transition(
        &mut status.sync,
        &crate::decide::Decision::Finish(outcome),
        &moment,
    );
    source.hold_conditions(status, Some(1), now);
    recorded
}

#[test]
fn success_fills_numbers_and_stamps_only_what_ran() {
    let mut status = ReplicationSourceStatus {
        sync: SyncStatus {
            consecutive_failures: Some(2),
            ..Default::default()
        },
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
    finish(&mut status, &plan(), result, finished);
    let restic = status.restic.as_ref().unwrap();
    assert_eq!(
        restic.last_pruned, None,
        "prune was planned but did not run"
    );
    assert_eq!(restic.last_unlocked.as_deref(), Some("u1"));
    assert_eq!(status.sync.last_manual_sync.as_deref(), Some("m1"));
    assert_eq!(status.sync.consecutive_failures, None);
    assert_eq!(status.sync.last_sync_time, Some(Time(finished)));
    assert_eq!(status.sync.last_sync_duration.unwrap().to_string(), "90.5s");
    let last = status.last_sync.unwrap();
    assert_eq!(last.bytes_added, 1000);
    assert_eq!(last.files_new, 3);
    assert_eq!(last.snapshot_time, Some(Time(at("2026-11-22T10:00:01Z"))));
    assert_eq!(
        status.sync.latest_mover_status.unwrap().result,
        MoverOutcome::Successful
    );
    let condition = status::condition(&status.sync.conditions, "Ready").unwrap();
    assert_eq!(
        condition.message,
        "snapshot ffffffff: 3 new, 0 changed files, 1000 bytes added"
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
    finish(&mut status, &plan(), ok, at("2026-11-22T10:05:00Z"));
    let bad = MoverResult {
        error_class: Some(ErrorClass::Network),
        message: Some("connection refused".into()),
        ..Default::default()
    };
    let mut next_plan = plan();
    next_plan.manual = Some("m2".into());
    finish(
        &mut status,
        &next_plan,
        bad.clone(),
        at("2026-11-22T11:05:00Z"),
    );
    finish(&mut status, &next_plan, bad, at("2026-11-22T12:05:00Z"));
    assert_eq!(status.sync.consecutive_failures, Some(2));
    assert_eq!(
        status.sync.last_sync_time,
        Some(Time(at("2026-11-22T10:05:00Z")))
    );
    assert_eq!(
        status.sync.last_manual_sync.as_deref(),
        Some("m1"),
        "a failed sync does not answer m2"
    );
    assert_eq!(
        status.restic.unwrap().last_pruned,
        Some(Time(at("2026-11-22T10:05:00Z")))
    );
    let mover = status.sync.latest_mover_status.unwrap();
    assert_eq!(mover.result, MoverOutcome::Failed);
    assert_eq!(mover.logs.as_deref(), Some("connection refused"));
}

#[test]
fn maintenance_that_completed_counts_even_when_a_later_step_failed() {
    let mut status = ReplicationSourceStatus::default();
    let pruned_then_failed = MoverResult {
        pruned: true,
        checked: true,
        error_class: Some(ErrorClass::Network),
        ..Default::default()
    };
    let now = at("2026-11-22T10:05:00Z");
    finish(&mut status, &plan(), pruned_then_failed, now);
    let restic = status.restic.unwrap();
    assert_eq!(restic.last_pruned, Some(Time(now)));
    assert_eq!(restic.last_checked, Some(Time(now)));
    assert_eq!(
        restic.last_unlocked, None,
        "the unlock value is answered only by a success"
    );
    assert_eq!(status.last_sync, None);
}

fn with_verify(mut source: ReplicationSource, verify: &str) -> ReplicationSource {
    source.spec.restic.verify = Some(object(verify));
    source
}

fn verify_plan() -> SyncPlan {
    let mut plan = plan();
    plan.actions.push(SyncAction::Verify);
    plan
}

#[test]
fn a_restore_test_gets_a_scratch_volume_shaped_like_the_source() {
    // (spec.restic.verify, the scratch claim's size and class)
    let cases = [
        ("{schedule: '@daily'}", "5Gi", "fast"),
        (
            "{schedule: '@daily', capacity: 20Gi, storageClassName: cheap}",
            "20Gi",
            "cheap",
        ),
    ];
    for method in ["Direct", "Clone"] {
        for (verify, size, class) in cases {
            let source = with_verify(source(method), verify);
            let seen = CopySeen {
                source: Some(block_claim()),
                copy: Some(source_claim()),
                node: Some("node-1".into()),
                ..CopySeen::default()
            };
            let owner = Owner::of(&source, labels::REPLICATION_SOURCE);
            let Step::Ready(mount) = copy_step(&source, &verify_plan(), &owner, &seen) else {
                panic!("{method} {verify}: the copy is in place");
            };
            let scratch = mount.scratch.expect("a restore test has a scratch volume");
            assert_eq!(scratch.capacity, Some(Quantity(size.into())), "{verify}");
            assert_eq!(scratch.storage_class.as_deref(), Some(class), "{verify}");
            assert_eq!(scratch.access_modes, Some(vec!["ReadWriteOnce".into()]));
            assert_eq!(
                scratch.volume_mode.as_deref(),
                Some("Filesystem"),
                "a Block volume's image restores as a file"
            );
            let Step::Ready(mount) = copy_step(&source, &plan(), &owner, &seen) else {
                panic!("{method}: the copy is in place");
            };
            assert_eq!(mount.scratch, None, "no restore test planned, no scratch");
        }
    }
}

#[test]
fn an_invalid_verify_schedule_is_refused_naming_the_field() {
    let source = with_verify(source("Direct"), "{schedule: 'at dawn'}");
    let message = source.invalid().expect("refused");
    assert!(
        message.starts_with("spec.restic.verify.schedule \"at dawn\""),
        "{message}"
    );
    assert_eq!(
        with_verify(source.clone(), "{schedule: 'H 3 * * *'}").invalid(),
        None
    );
}

fn tested(snapshot: char, mismatched: u64) -> MoverResult {
    MoverResult {
        snapshot_id: Some(snapshot.to_string().repeat(64)),
        verification: Some(Verified {
            snapshot_id: snapshot.to_string().repeat(64),
            files_checked: 10,
            bytes_checked: 4096,
            files_mismatched: mismatched,
            mismatches: (0..mismatched)
                .map(|i| format!("f{i}: verification failed: content differs from blob 12"))
                .collect(),
        }),
        ..Default::default()
    }
}

fn degraded(status: &ReplicationSourceStatus) -> (String, String, String) {
    let c = status::condition(&status.sync.conditions, "Degraded").unwrap();
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

#[test]
fn a_failed_restore_test_keeps_degraded_naming_the_snapshot_until_one_passes() {
    let mut status = ReplicationSourceStatus::default();
    let plan = verify_plan();
    let recorded = finish(
        &mut status,
        &plan,
        tested('a', 0),
        at("2026-11-22T10:05:00Z"),
    );
    assert_eq!(recorded.warning, None);
    let verification = status.verification.clone().unwrap();
    assert!(verification.passed());
    assert_eq!(verification.time, Time(at("2026-11-22T10:05:00Z")));
    assert_eq!(
        (verification.files_checked, verification.bytes_checked),
        (10, 4096)
    );
    assert_eq!(degraded(&status).0, "False");
    let ready = status::condition(&status.sync.conditions, "Ready").unwrap();
    assert!(
        ready
            .message
            .ends_with("restore test passed: 10 files, 4096 bytes read back as recorded"),
        "{}",
        ready.message
    );

    let recorded = finish(
        &mut status,
        &plan,
        tested('b', 2),
        at("2026-11-23T10:05:00Z"),
    );
    let (state, reason, message) = degraded(&status);
    assert_eq!(
        (state.as_str(), reason.as_str()),
        ("True", "VerificationFailed")
    );
    assert!(message.starts_with("restore test of snapshot bbbbbbbb at 2026-11-23T10:05:00Z: 2 of 10 files did not restore as recorded (first: f0: verification failed"), "{message}");
    assert_eq!(
        recorded.warning,
        Some(("VerificationFailed", message.clone()))
    );
    assert_eq!(
        status::condition(&status.sync.conditions, "Ready")
            .unwrap()
            .status,
        "True",
        "the backup itself succeeded; backups go on"
    );
    assert_eq!(status.verification.as_ref().unwrap().mismatches.len(), 2);

    // A backup without a restore test: the failed one still stands, with no new event.
    let recorded = finish(
        &mut status,
        &crate::testing::backup_plan(),
        MoverResult::default(),
        at("2026-11-23T11:05:00Z"),
    );
    assert_eq!(
        degraded(&status),
        ("True".into(), "VerificationFailed".into(), message)
    );
    assert_eq!(recorded.warning, None);

    // A failing sync is the more urgent news.
    let down = MoverResult {
        error_class: Some(ErrorClass::Network),
        message: Some("connection refused".into()),
        ..Default::default()
    };
    finish(
        &mut status,
        &crate::testing::backup_plan(),
        down,
        at("2026-11-23T12:05:00Z"),
    );
    assert_eq!(degraded(&status).1, "NetworkError");

    finish(
        &mut status,
        &plan,
        tested('c', 0),
        at("2026-11-24T10:05:00Z"),
    );
    assert_eq!(degraded(&status).0, "False");
    assert_eq!(status.verification.unwrap().snapshot_id, "c".repeat(64));
}
