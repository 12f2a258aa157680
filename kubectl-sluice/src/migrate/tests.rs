//! Conversions of VolSync manifests, one case per test: what converts, what is noted, and what
//! is refused with which error.

use sluice_api::AccessMode;

use super::*;

/// A ReplicationSource as home-lab GitOps repositories write them, with the repository
/// Secret in the same file.
const GITOPS_SOURCE: &str = r#"
---
apiVersion: v1
kind: Secret
metadata:
  name: plex-volsync-secret
  namespace: media
stringData:
  RESTIC_REPOSITORY: s3:http://minio.storage.svc:9000/volsync/plex
  RESTIC_PASSWORD: hunter2
---
apiVersion: volsync.backube/v1alpha1
kind: ReplicationSource
metadata:
  name: plex
  namespace: media
  labels:
    app.kubernetes.io/name: plex
spec:
  sourcePVC: plex-config
  trigger:
    schedule: "0 * * * *"
  restic:
    copyMethod: Snapshot
    pruneIntervalDays: 7
    repository: plex-volsync-secret
    volumeSnapshotClassName: csi-ceph-blockpool
    cacheCapacity: 2Gi
    cacheStorageClassName: local-hostpath
    cacheAccessModes: ["ReadWriteOnce"]
    storageClassName: ceph-block
    accessModes: ["ReadWriteOnce"]
    moverSecurityContext:
      runAsUser: 568
      runAsGroup: 568
      fsGroup: 568
    retain:
      hourly: 24
      daily: 7
      weekly: 0
"#;

/// A ReplicationDestination as `kubectl get -o yaml` prints it: server fields, status, the
/// empty `customCA: {}` VolSync always serializes, and its cleanup flags.
const LIVE_DESTINATION: &str = r#"
apiVersion: volsync.backube/v1alpha1
kind: ReplicationDestination
metadata:
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: |
      {"apiVersion":"volsync.backube/v1alpha1"}
    team: storage
  creationTimestamp: "2025-05-19T21:58:03Z"
  generation: 1
  name: technitium-dst
  namespace: network
  resourceVersion: "6291315"
  uid: 6e5dee73-c304-4bc5-b4b3-ce186e9be91d
spec:
  trigger:
    manual: restore-once
  restic:
    accessModes:
    - ReadWriteOnce
    cacheAccessModes:
    - ReadWriteOnce
    cacheCapacity: 5Gi
    cacheStorageClassName: democratic-volsync-nfs
    capacity: 10Gi
    cleanupCachePVC: true
    cleanupTempPVC: true
    copyMethod: Snapshot
    customCA: {}
    enableFileDeletion: true
    moverResources:
      limits:
        memory: 1Gi
    moverSecurityContext:
      fsGroup: 1000
      runAsGroup: 1000
      runAsUser: 1000
    previous: 1
    repository: technitium-volsync-secret
    restoreAsOf: "2025-05-18T00:00:00Z"
    storageClassName: democratic-volsync-nfs
    volumeSnapshotClassName: democratic-volsync-nfs
status:
  lastSyncDuration: 1m2.5s
  lastSyncTime: "2025-05-19T22:00:00Z"
  latestImage:
    apiGroup: snapshot.storage.k8s.io
    kind: VolumeSnapshot
    name: volsync-technitium-dst-dest-20250519220000
"#;

fn converted(input: &str) -> Conversion {
    convert(input).expect("input is YAML")
}

fn fields_with(notes: &[Note], severity: Severity) -> Vec<&str> {
    notes
        .iter()
        .filter(|n| n.severity == severity)
        .map(|n| n.field.as_str())
        .collect()
}

#[test]
fn gitops_source_converts_and_reports_the_cache_fields() {
    let conversion = converted(GITOPS_SOURCE);
    assert_eq!(conversion.documents.len(), 2);
    let secret: Value = serde_saphyr::from_str(&conversion.documents[0]).unwrap();
    assert_eq!(secret["kind"], "Secret", "other kinds pass through");
    assert_eq!(secret["stringData"]["RESTIC_PASSWORD"], "hunter2");

    let source: ReplicationSource = serde_saphyr::from_str(&conversion.documents[1]).unwrap();
    assert_eq!(source.metadata.name.as_deref(), Some("plex"));
    assert_eq!(source.metadata.namespace.as_deref(), Some("media"));
    assert_eq!(
        source.metadata.labels.as_ref().unwrap()["app.kubernetes.io/name"],
        "plex"
    );
    assert_eq!(source.spec.source_pvc, "plex-config");
    assert_eq!(
        source.spec.trigger.unwrap().schedule.as_deref(),
        Some("0 * * * *")
    );
    let restic = source.spec.restic;
    assert_eq!(restic.repository, "plex-volsync-secret");
    assert_eq!(restic.copy_method, CopyMethod::Snapshot);
    assert_eq!(restic.prune_interval_days, Some(7));
    assert_eq!(
        restic.volume_snapshot_class_name.as_deref(),
        Some("csi-ceph-blockpool")
    );
    assert_eq!(restic.storage_class_name.as_deref(), Some("ceph-block"));
    assert_eq!(restic.access_modes, Some(vec![AccessMode::ReadWriteOnce]));
    assert_eq!(
        restic.mover.mover_security_context.unwrap().fs_group,
        Some(568)
    );
    let retain = restic.retain.unwrap();
    assert_eq!(
        (retain.hourly, retain.daily, retain.weekly),
        (Some(24), Some(7), None)
    );
    assert_eq!(restic.hostname.as_deref(), Some("volsync"));

    assert_eq!(
        fields_with(&conversion.notes, Severity::Dropped),
        [
            "spec.restic.retain.weekly",
            "spec.restic.cacheAccessModes",
            "spec.restic.cacheCapacity",
            "spec.restic.cacheStorageClassName",
        ]
    );
    assert_eq!(
        fields_with(&conversion.notes, Severity::Info),
        ["spec.restic.hostname"]
    );
    assert!(
            conversion.notes.iter().any(|n| n.to_string()
                == "ReplicationSource media/plex: spec.restic.cacheAccessModes not carried over: Sluice's mover keeps no restic cache volume"),
            "{:?}",
            conversion.notes.iter().map(ToString::to_string).collect::<Vec<_>>()
        );
}

#[test]
fn live_destination_drops_server_fields_and_reports_cleanup_flags() {
    let conversion = converted(LIVE_DESTINATION);
    assert_eq!(conversion.documents.len(), 1);
    let text = &conversion.documents[0];
    for server_field in [
        "status",
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "last-applied",
    ] {
        assert!(
            !text.contains(server_field),
            "{server_field} leaked into:\n{text}"
        );
    }
    let destination: ReplicationDestination = serde_saphyr::from_str(text).unwrap();
    assert_eq!(
        destination.metadata.annotations.as_ref().unwrap()["team"],
        "storage"
    );
    assert_eq!(
        destination.spec.trigger.unwrap().manual.as_deref(),
        Some("restore-once")
    );
    let restic = destination.spec.restic;
    assert_eq!(restic.repository, "technitium-volsync-secret");
    assert_eq!(restic.copy_method, DestinationCopyMethod::Snapshot);
    assert_eq!(restic.capacity.unwrap().0, "10Gi");
    assert_eq!(restic.access_modes, Some(vec![AccessMode::ReadWriteOnce]));
    assert_eq!(restic.previous, Some(1));
    assert!(restic.enable_file_deletion);
    assert_eq!(
        restic.restore_as_of.unwrap().0.to_string(),
        "2025-05-18T00:00:00Z"
    );
    assert!(
        restic.custom_ca.is_none(),
        "VolSync's empty customCA means none"
    );
    assert!(
        restic.hostname.is_none(),
        "restores consider every host, as VolSync does"
    );
    assert_eq!(
        restic.mover.mover_resources.unwrap().limits.unwrap()["memory"].0,
        "1Gi"
    );

    assert_eq!(
        fields_with(&conversion.notes, Severity::Dropped),
        [
            "spec.restic.cacheAccessModes",
            "spec.restic.cacheCapacity",
            "spec.restic.cacheStorageClassName",
            "spec.restic.cleanupCachePVC",
            "spec.restic.cleanupTempPVC",
        ]
    );
    assert!(
        conversion
            .notes
            .iter()
            .all(|n| n.object == "ReplicationDestination network/technitium-dst")
    );
}

#[test]
fn other_movers_are_refused_and_the_rest_still_converts() {
    let input = r#"
apiVersion: volsync.backube/v1alpha1
kind: ReplicationSource
metadata: {name: mirror, namespace: apps}
spec:
  sourcePVC: data
  rsync:
    address: backup.example.com
    copyMethod: Clone
---
apiVersion: volsync.backube/v1alpha1
kind: ReplicationSource
metadata: {name: direct, namespace: apps}
spec:
  sourcePVC: data
  paused: true
  restic:
    repository: restic-config
    copyMethod: None
    customCA:
      secretName: minio-ca
      key: ca.crt
    unlock: "2024-01-01"
    moverServiceAccount: backup
    moverPodLabels: {team: storage}
"#;
    let conversion = converted(input);
    assert_eq!(conversion.documents.len(), 1);
    let refused = &conversion.notes[0];
    assert_eq!(refused.severity, Severity::NotConverted);
    assert_eq!(
        refused.to_string(),
        "ReplicationSource apps/mirror: not converted: uses VolSync's rsync mover; Sluice converts only the restic mover"
    );

    let source: ReplicationSource = serde_saphyr::from_str(&conversion.documents[0]).unwrap();
    assert!(source.spec.paused);
    let restic = source.spec.restic;
    assert_eq!(
        restic.copy_method,
        CopyMethod::Direct,
        "VolSync's deprecated None is Direct"
    );
    let ca = restic.custom_ca.unwrap();
    assert_eq!(
        (ca.secret_name.as_deref(), ca.key.as_str()),
        (Some("minio-ca"), "ca.crt")
    );
    assert_eq!(restic.unlock.as_deref(), Some("2024-01-01"));
    assert_eq!(
        restic.mover.mover_service_account.as_deref(),
        Some("backup")
    );
    assert_eq!(restic.mover.mover_pod_labels["team"], "storage");
}

#[test]
fn unknown_fields_and_bad_values_are_reported_not_guessed() {
    let input = r#"
apiVersion: volsync.backube/v1alpha1
kind: ReplicationDestination
metadata: {name: restore}
spec:
  restic:
    repository: restic-config
    copyMethod: Clone
    destinationPVC: data
    someFutureField: 3
---
apiVersion: volsync.backube/v1alpha1
kind: ReplicationDestination
metadata: {name: broken}
spec:
  restic:
    repository: restic-config
    copyMethod: Direct
    destinationPVC: data
    previous: many
"#;
    let conversion = converted(input);
    assert_eq!(conversion.documents.len(), 1);
    let destination: ReplicationDestination =
        serde_saphyr::from_str(&conversion.documents[0]).unwrap();
    assert_eq!(
        destination.spec.restic.copy_method,
        DestinationCopyMethod::Snapshot
    );
    let notes: Vec<String> = conversion.notes.iter().map(ToString::to_string).collect();
    assert_eq!(notes.len(), 3, "{notes:#?}");
    assert!(notes[0].starts_with(
        "ReplicationDestination restore: spec.restic.copyMethod not carried over: Some(\"Clone\")"
    ));
    assert_eq!(
        notes[1],
        "ReplicationDestination restore: spec.restic.someFutureField not carried over: no Sluice equivalent"
    );
    assert!(
        notes[2].starts_with(
            "ReplicationDestination broken: not converted: spec.restic.previous: invalid type"
        ),
        "{}",
        notes[2]
    );
}

#[test]
fn new_pvc_without_capacity_gets_a_reminder() {
    let conversion = converted(
        "apiVersion: volsync.backube/v1alpha1\nkind: ReplicationDestination\nmetadata: {name: r}\nspec:\n  restic: {repository: x, copyMethod: Direct}\n",
    );
    assert_eq!(conversion.documents.len(), 1);
    assert_eq!(
        fields_with(&conversion.notes, Severity::Info),
        ["spec.restic.capacity"]
    );
}

#[test]
fn invalid_yaml_is_an_error() {
    assert!(convert("spec: [unclosed").is_err());
}
