//! A restore's own steps: the target claim, reading a result without a snapshot, publishing the
//! image, and what a finished restore records.

use super::*;
use crate::testing::{at, object};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::json;
use sluice_api::{SyncAction, conditions::reason, labels};

use crate::backoff::Retry;

fn destination(extra: &str) -> ReplicationDestination {
    object(&format!(
        r#"
apiVersion: sluice.dev/v1alpha1
kind: ReplicationDestination
metadata: {{name: restore, namespace: apps, uid: u-2}}
spec:
  restic:
    repository: repo
    capacity: 3Gi
    accessModes: [ReadWriteOnce]
    storageClassName: fast
{extra}"#
    ))
}

fn owner(destination: &ReplicationDestination) -> Owner {
    Owner::of(destination, labels::REPLICATION_DESTINATION)
}

fn plan() -> SyncPlan {
    SyncPlan {
        actions: vec![SyncAction::Restore],
        started_at: Time(at("2026-11-22T10:00:00Z")),
        job_name: "sluice-dst-restore-1".into(),
        manual: None,
        unlock: None,
        repository: Some("s3:http://minio:9000/backups".into()),
    }
}

#[test]
fn a_new_target_is_created_once_then_mounted() {
    let new = destination("    copyMethod: Direct\n");
    let Step::Create(NewObject::Claim(claim)) = target_step(&new, &owner(&new), None) else {
        panic!("the new target is created first");
    };
    assert_eq!(claim.metadata.name.as_deref(), Some("sluice-dst-restore"));
    assert_eq!(
        claim.metadata.labels.clone().unwrap()[labels::REPLICATION_DESTINATION],
        "restore"
    );
    let spec = claim.spec.clone().unwrap();
    assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
    assert_eq!(
        spec.resources.unwrap().requests.unwrap()["storage"],
        Quantity("3Gi".into())
    );
    let mounted = Step::Ready(Mount {
        claim: "sluice-dst-restore".into(),
        node: None,
        block: false,
        scratch: None,
    });
    assert_eq!(target_step(&new, &owner(&new), Some(&claim)), mounted);

    let existing = destination("    copyMethod: Direct\n    destinationPVC: mine\n");
    assert_eq!(
        target_step(&existing, &owner(&existing), None),
        Step::Ready(Mount {
            claim: "mine".into(),
            node: None,
            block: false,
            scratch: None,
        }),
        "the user's claim is never created"
    );
}

#[test]
fn a_block_destination_makes_a_block_claim_and_mounts_its_device() {
    let block = destination("    copyMethod: Direct\n    volumeMode: Block\n");
    let Step::Create(NewObject::Claim(claim)) = target_step(&block, &owner(&block), None) else {
        panic!("the new target is created first");
    };
    assert_eq!(
        claim.spec.clone().unwrap().volume_mode.as_deref(),
        Some("Block")
    );
    assert_eq!(
        target_step(&block, &owner(&block), Some(&claim)),
        Step::Ready(Mount {
            claim: "sluice-dst-restore".into(),
            node: None,
            block: true,
            scratch: None,
        })
    );
    let filesystem = destination("    copyMethod: Direct\n");
    let Step::Create(NewObject::Claim(claim)) = target_step(&filesystem, &owner(&filesystem), None)
    else {
        panic!("the new target is created first");
    };
    assert_eq!(
        claim.spec.unwrap().volume_mode,
        None,
        "Filesystem claims keep the cluster's default"
    );
}

#[test]
fn a_run_that_restored_no_snapshot_fails_unless_empty_is_allowed() {
    let nothing = MoverResult::default();
    let failing = read_result(&destination("    copyMethod: Direct\n"), nothing.clone());
    assert_eq!(failing.error_class, Some(ErrorClass::NoSnapshot));
    assert_eq!(
        failing.message.as_deref(),
        Some("no snapshot matched and the mover restored nothing")
    );
    let allowed = destination("    copyMethod: Direct\n    onMissingSnapshot: Empty\n");
    assert_eq!(read_result(&allowed, nothing), MoverResult::default());
    let restored = MoverResult {
        snapshot_id: Some("b".repeat(64)),
        ..Default::default()
    };
    let direct = destination("    copyMethod: Direct\n");
    assert_eq!(read_result(&direct, restored.clone()), restored);
    let failed = MoverResult {
        error_class: Some(ErrorClass::WrongPassword),
        ..Default::default()
    };
    assert_eq!(
        read_result(&direct, failed.clone()),
        failed,
        "a failure stays itself"
    );
}

#[test]
fn direct_publishes_the_claim_and_snapshot_a_ready_snapshot_of_it() {
    let direct = destination("    copyMethod: Direct\n");
    assert_eq!(
        publish_step(&direct, &plan(), &owner(&direct), None),
        Step::Ready(Some(TypedLocalObjectReference {
            api_group: None,
            kind: "PersistentVolumeClaim".into(),
            name: "sluice-dst-restore".into(),
        }))
    );

    let snapshot = destination("    copyMethod: Snapshot\n    volumeSnapshotClassName: csi\n");
    let Step::Create(NewObject::Snapshot(taken)) =
        publish_step(&snapshot, &plan(), &owner(&snapshot), None)
    else {
        panic!("the image is taken first");
    };
    let value = serde_json::to_value(&taken).unwrap();
    assert_eq!(value["metadata"]["name"], "sluice-dst-restore-1");
    assert_eq!(
        value["spec"]["source"]["persistentVolumeClaimName"],
        "sluice-dst-restore"
    );
    assert_eq!(value["spec"]["volumeSnapshotClassName"], "csi");

    let mut pending = taken.clone();
    pending.status = serde_json::from_value(json!({"readyToUse": false})).unwrap();
    let Step::Wait(waiting) = publish_step(&snapshot, &plan(), &owner(&snapshot), Some(&pending))
    else {
        panic!("the image is awaited");
    };
    assert_eq!(waiting.reason, reason::WAITING_FOR_SNAPSHOT);
    assert_eq!(
        waiting.message,
        "waiting for VolumeSnapshot sluice-dst-restore-1 of the restored PVC sluice-dst-restore \
         to become readyToUse"
    );

    let mut ready = taken;
    ready.status = serde_json::from_value(json!({"readyToUse": true})).unwrap();
    assert_eq!(
        publish_step(&snapshot, &plan(), &owner(&snapshot), Some(&ready)),
        Step::Ready(Some(TypedLocalObjectReference {
            api_group: Some(volume::SNAPSHOT_GROUP.into()),
            kind: "VolumeSnapshot".into(),
            name: "sluice-dst-restore-1".into(),
        }))
    );
}

fn image(kind: &str, name: &str) -> TypedLocalObjectReference {
    TypedLocalObjectReference {
        api_group: None,
        kind: kind.into(),
        name: name.into(),
    }
}

fn success(image: Option<TypedLocalObjectReference>, snapshot: Option<&str>) -> Outcome {
    Outcome {
        result: MoverResult {
            snapshot_id: snapshot.map(str::to_string),
            snapshot_time: Some("2026-11-21T23:00:00Z".into()),
            ..Default::default()
        },
        verdict: Verdict::Succeeded { next: None },
        image,
    }
}

#[test]
fn a_success_publishes_the_new_image_and_drops_the_previous_snapshot() {
    let id = "c".repeat(64);
    let now = at("2026-11-22T10:05:00Z");
    let mut status = ReplicationDestinationStatus {
        latest_image: Some(image("VolumeSnapshot", "sluice-dst-restore-0")),
        ..Default::default()
    };
    let new = image("VolumeSnapshot", "sluice-dst-restore-1");
    let recorded = record_restore(&mut status, &success(Some(new.clone()), Some(&id)), now);
    assert_eq!(status.latest_image, Some(new.clone()));
    assert_eq!(
        recorded.temporary,
        [Temporary::Snapshot("sluice-dst-restore-0".into())]
    );
    assert_eq!(recorded.summary, "restored snapshot cccccccc");
    let restored = status.restored_snapshot.clone().unwrap();
    assert_eq!(restored.id, id);
    assert_eq!(restored.time, Time(at("2026-11-21T23:00:00Z")));

    // The same image again, or a claim replacing a claim, deletes nothing.
    let again = record_restore(&mut status, &success(Some(new), Some(&id)), now);
    assert!(again.temporary.is_empty());
    let mut direct = ReplicationDestinationStatus {
        latest_image: Some(image("PersistentVolumeClaim", "t")),
        ..Default::default()
    };
    let claim = record_restore(
        &mut direct,
        &success(Some(image("PersistentVolumeClaim", "t")), None),
        now,
    );
    assert!(claim.temporary.is_empty());
    assert_eq!(
        claim.summary,
        "no snapshot matched; published the volume empty (onMissingSnapshot: Empty)"
    );
    let mut no_repository = success(Some(image("PersistentVolumeClaim", "t")), None);
    no_repository.result.repository_missing = true;
    assert_eq!(
        record_restore(&mut direct, &no_repository, now).summary,
        "no repository yet; published the volume empty (onMissingSnapshot: Empty)"
    );
}

#[test]
fn a_destination_without_a_target_serves_only_populators() {
    let cases = [
        ("    copyMethod: Direct\n", Untriggered::OncePerGeneration),
        (
            "    copyMethod: Direct\n    destinationPVC: mine\n",
            Untriggered::OncePerGeneration,
        ),
    ];
    for (extra, expected) in cases {
        assert_eq!(destination(extra).untriggered(), expected, "{extra}");
    }
    let bare: ReplicationDestination = object(
        r#"
apiVersion: sluice.dev/v1alpha1
kind: ReplicationDestination
metadata: {name: restore, namespace: apps, uid: u-2}
spec:
  restic: {repository: repo, copyMethod: Direct, onMissingSnapshot: Empty}
"#,
    );
    assert!(serves_populators_only(&bare));
    assert_eq!(bare.untriggered(), Untriggered::Never);
}

#[test]
fn a_failure_keeps_the_published_image() {
    let previous = Some(image("VolumeSnapshot", "sluice-dst-restore-0"));
    let mut status = ReplicationDestinationStatus {
        latest_image: previous.clone(),
        ..Default::default()
    };
    let failed = Outcome {
        result: MoverResult {
            error_class: Some(ErrorClass::Network),
            ..Default::default()
        },
        verdict: Verdict::Failed {
            reason: reason::NETWORK_ERROR,
            failures: 1,
            retry: Retry::After(std::time::Duration::from_secs(30)),
        },
        image: None,
    };
    let recorded = record_restore(&mut status, &failed, at("2026-11-22T10:05:00Z"));
    assert_eq!(recorded, Recorded::default());
    assert_eq!(status.latest_image, previous);
    assert_eq!(status.restored_snapshot, None);
}

#[test]
fn the_target_is_watched_for_binding() {
    let destination = destination("    copyMethod: Direct\n");
    assert_eq!(
        destination.mounted_claim(&plan()),
        Some((
            "sluice-dst-restore".to_string(),
            "the restore target",
            "Restore"
        ))
    );
}
