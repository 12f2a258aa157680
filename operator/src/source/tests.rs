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
) {
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
    let recorded = source("Direct").record(status, &finished);
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
