//! Every type survives JSON and YAML round trips, with the wire names VolSync users know.

use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};
use sluice_api::{
    AccessMode, CopyMethod, DestinationCopyMethod, MoverOutcome, OnMissingSnapshot,
    ReplicationDestination, ReplicationSource, SyncAction,
};

/// Parses `document` into `T` and checks that it serializes back to exactly `document`, through
/// JSON and through YAML.
fn assert_round_trip<T>(document: Value) -> T
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let typed: T = serde_json::from_value(document.clone()).expect("document parses");
    assert_eq!(
        serde_json::to_value(&typed).unwrap(),
        document,
        "JSON round trip changed it"
    );
    let yaml = serde_saphyr::to_string(&typed).unwrap();
    let from_yaml: T = serde_saphyr::from_str(&yaml).expect("own YAML parses");
    assert_eq!(from_yaml, typed, "YAML round trip changed it:\n{yaml}");
    typed
}

fn mover_fields() -> Value {
    json!({
        "moverSecurityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000, "runAsNonRoot": true},
        "moverServiceAccount": "backup-sa",
        "moverResources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
        "moverPodLabels": {"team": "storage"},
        "moverAffinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]
        }}},
    })
}

fn conditions() -> Value {
    json!([
        {"type": "Ready", "status": "True", "reason": "SyncSucceeded", "message": "backed up",
         "lastTransitionTime": "2026-11-22T10:00:00Z", "observedGeneration": 3},
        {"type": "Reconciling", "status": "False", "reason": "WaitingForSchedule", "message": "",
         "lastTransitionTime": "2026-11-22T10:00:01Z"},
    ])
}

fn merge(mut base: Value, extra: Value) -> Value {
    base.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    base
}

#[test]
fn replication_source_full_spec_and_status() {
    let restic = merge(
        json!({
            "repository": "restic-minio",
            "copyMethod": "Clone",
            "retain": {"last": 3, "hourly": 24, "daily": 7, "weekly": 4, "monthly": 12, "yearly": 2, "within": "3d"},
            "pruneIntervalDays": 7,
            "checkIntervalDays": 30,
            "capacity": "10Gi",
            "storageClassName": "fast",
            "accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
            "volumeSnapshotClassName": "csi-snap",
            "customCA": {"secretName": "minio-ca", "key": "ca.crt"},
            "unlock": "2026-11-22",
            "exclude": ["*.tmp", "/cache"],
            "tags": ["nightly"],
            "hostname": "db-host",
        }),
        mover_fields(),
    );
    let document = json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "ReplicationSource",
        "metadata": {"name": "db", "namespace": "prod", "generation": 3},
        "spec": {
            "sourcePVC": "db-data",
            "trigger": {"schedule": "0 * * * *", "manual": "now", "timeZone": "Europe/Berlin"},
            "paused": true,
            "restic": restic,
        },
        "status": {
            "observedGeneration": 3,
            "conditions": conditions(),
            "lastSyncTime": "2026-11-22T10:00:00Z",
            "lastSyncStartTime": "2026-11-22T09:58:30Z",
            "lastSyncDuration": "90s",
            "nextSyncTime": "2026-11-22T11:00:00Z",
            "lastManualSync": "before",
            "latestMoverStatus": {"result": "Successful", "logs": "added 12 MiB"},
            "lastSync": {
                "snapshotID": "4bba301e0c2c7f95b5c2ac0e0ea4d7ff8bb6c3f8f2c11c5e1ab5a9a7c5d2f1e0",
                "snapshotTime": "2026-11-22T09:58:31Z",
                "filesNew": 3, "filesChanged": 2, "filesUnmodified": 1000,
                "bytesAdded": 12582912, "totalBytes": 1073741824,
            },
            "syncPlan": {
                "actions": ["unlock", "backup", "forget", "prune", "check"],
                "startedAt": "2026-11-22T09:58:30Z",
                "jobName": "sluice-src-db-1",
                "manual": "now",
                "unlock": "2026-11-22",
            },
            "consecutiveFailures": 0,
            "missedSyncs": 2,
            "restic": {
                "lastPruned": "2026-11-20T00:00:00Z",
                "lastUnlocked": "2026-11-21",
                "lastChecked": "2026-11-01T00:00:00Z",
            },
        },
    });
    let source: ReplicationSource = assert_round_trip(document);
    assert_eq!(source.spec.restic.copy_method, CopyMethod::Clone);
    assert_eq!(source.restic_hostname(), "db-host");
    let status = source.status.unwrap();
    assert_eq!(status.sync.sync_plan.unwrap().actions.len(), 5);
    assert_eq!(
        status.sync.last_sync_duration.unwrap(),
        std::time::Duration::from_secs(90)
    );
}

#[test]
fn replication_source_minimal_spec() {
    let source: ReplicationSource = assert_round_trip(json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "ReplicationSource",
        "metadata": {"name": "db", "namespace": "prod"},
        "spec": {"sourcePVC": "db-data", "restic": {"repository": "r", "copyMethod": "Direct"}},
    }));
    assert_eq!(source.restic_hostname(), "prod-db-data");
    assert!(source.status.is_none());
}

#[test]
fn replication_destination_full_spec_and_status() {
    let restic = merge(
        json!({
            "repository": "restic-minio",
            "copyMethod": "Snapshot",
            "destinationPVC": "restored",
            "capacity": "5Gi",
            "accessModes": ["ReadWriteOncePod"],
            "storageClassName": "fast",
            "volumeSnapshotClassName": "csi-snap",
            "restoreAsOf": "2026-11-21T23:59:59Z",
            "previous": 1,
            "enableFileDeletion": true,
            "onMissingSnapshot": "Empty",
            "hostname": "prod-db-data",
            "customCA": {"configMapName": "minio-ca", "key": "ca.crt"},
        }),
        mover_fields(),
    );
    let document = json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "ReplicationDestination",
        "metadata": {"name": "db-restore", "namespace": "prod"},
        "spec": {"trigger": {"manual": "restore-2"}, "paused": true, "restic": restic},
        "status": {
            "observedGeneration": 1,
            "conditions": conditions(),
            "lastSyncTime": "2026-11-22T10:00:00Z",
            "lastSyncStartTime": "2026-11-22T09:59:00Z",
            "lastSyncDuration": "60.5s",
            "nextSyncTime": "2026-11-22T11:00:00Z",
            "lastManualSync": "restore-1",
            "latestMoverStatus": {"result": "Failed", "logs": "no snapshot"},
            "latestImage": {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "db-restore-1"},
            "restoredSnapshot": {"id": "4bba301e0c2c7f95b5c2ac0e0ea4d7ff8bb6c3f8f2c11c5e1ab5a9a7c5d2f1e0", "time": "2026-11-21T23:00:00Z"},
            "syncPlan": {"actions": ["restore"], "startedAt": "2026-11-22T09:59:00Z", "jobName": "sluice-dst-db-restore-1", "manual": "restore-2"},
            "consecutiveFailures": 1,
        },
    });
    let destination: ReplicationDestination = assert_round_trip(document);
    let restic = &destination.spec.restic;
    assert_eq!(restic.copy_method, DestinationCopyMethod::Snapshot);
    assert_eq!(restic.on_missing_snapshot, OnMissingSnapshot::Empty);
    assert_eq!(
        restic.access_modes,
        Some(vec![AccessMode::ReadWriteOncePod])
    );
    let status = destination.status.unwrap();
    assert_eq!(
        status.sync.latest_mover_status.unwrap().result,
        MoverOutcome::Failed
    );
    assert_eq!(
        status.sync.sync_plan.unwrap().actions,
        [SyncAction::Restore]
    );
}

#[test]
fn destination_defaults_to_failing_on_a_missing_snapshot() {
    let destination: ReplicationDestination = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "ReplicationDestination",
        "metadata": {"name": "r"},
        "spec": {"restic": {"repository": "r", "copyMethod": "Direct", "destinationPVC": "p"}},
    }))
    .unwrap();
    assert_eq!(
        destination.spec.restic.on_missing_snapshot,
        OnMissingSnapshot::Fail
    );
    assert!(!destination.spec.restic.enable_file_deletion);
}

#[test]
fn destination_parses_restore_as_of_with_an_offset() {
    let destination: ReplicationDestination = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "ReplicationDestination",
        "metadata": {"name": "r"},
        "spec": {"restic": {"repository": "r", "copyMethod": "Direct", "destinationPVC": "p",
                             "restoreAsOf": "2026-11-22T01:00:00+02:00"}},
    }))
    .unwrap();
    let as_of = destination.spec.restic.restore_as_of.unwrap();
    assert_eq!(as_of.0.to_string(), "2026-11-21T23:00:00Z");
}

#[test]
fn access_mode_strings_match_the_wire_names() {
    for mode in [
        AccessMode::ReadWriteOnce,
        AccessMode::ReadOnlyMany,
        AccessMode::ReadWriteMany,
        AccessMode::ReadWriteOncePod,
    ] {
        assert_eq!(serde_json::to_value(mode).unwrap(), json!(mode.as_str()));
    }
}
