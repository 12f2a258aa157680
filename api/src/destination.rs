//! The ReplicationDestination kind: restore a snapshot from a restic repository into a PVC.

use k8s_openapi::{
    api::core::v1::TypedLocalObjectReference,
    apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::Time},
};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    mover::{CustomCa, MoverConfig},
    sync::{RestoredSnapshot, SyncStatus},
    trigger::Trigger,
    volume::{AccessMode, DestinationCopyMethod, VolumeMode},
};

/// Which snapshot to restore, from which repository, into which volume.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "ReplicationDestination",
    namespaced,
    status = "ReplicationDestinationStatus",
    derive = "PartialEq",
    shortname = "rdst",
    category = "sluice",
    doc = "Restores a snapshot from a restic repository into a PersistentVolumeClaim.",
    printcolumn = r#"{"name":"Last sync","type":"string","format":"date-time","jsonPath":".status.lastSyncTime"}"#,
    printcolumn = r#"{"name":"Duration","type":"string","jsonPath":".status.lastSyncDuration"}"#,
    printcolumn = r#"{"name":"Next sync","type":"string","format":"date-time","jsonPath":".status.nextSyncTime"}"#,
    printcolumn = r#"{"name":"Snapshot","type":"string","jsonPath":".status.restoredSnapshot.id"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.restic.destinationPVC) || has(self.restic.capacity) || !has(self.trigger)",
        "message": "spec.trigger needs a volume to restore into: set spec.restic.destinationPVC, or capacity and accessModes; without them the ReplicationDestination only serves PVCs that name it in dataSourceRef",
    },
]))]
pub struct ReplicationDestinationSpec {
    /// When restores run. Without a trigger a restore runs once and then only when the spec
    /// changes; use `manual` to restore again on demand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
    /// Stops starting new restores; a running one finishes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// The repository, the snapshot to pick and the volume to restore into.
    pub restic: ResticDestinationSpec,
}

/// Restore settings, named as in VolSync's restic mover where the meaning is the same.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.destinationPVC) || has(self.capacity) == has(self.accessModes)",
        "message": "spec.restic.capacity and spec.restic.accessModes go together when spec.restic.destinationPVC is not set: both for a new PVC, or neither for a ReplicationDestination that only serves PVCs naming it in dataSourceRef",
    },
    {
        "rule": "self.copyMethod != 'Clone'",
        "message": "spec.restic.copyMethod: Clone is not supported on a ReplicationDestination; use Snapshot or Direct",
    },
]))]
pub struct ResticDestinationSpec {
    /// Name of the Secret holding the repository's environment, as for a ReplicationSource.
    #[schemars(length(min = 1, max = 253))]
    pub repository: String,
    /// How the restored data is published in `status.latestImage`.
    pub copy_method: DestinationCopyMethod,
    /// Existing PVC to restore into. Without it a new PVC is made from `capacity`,
    /// `accessModes` and `storageClassName`; with none of them the ReplicationDestination
    /// restores only into the PVCs that name it in `dataSourceRef` (the volume populator).
    #[serde(
        default,
        rename = "destinationPVC",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1, max = 253))]
    pub destination_pvc: Option<String>,
    /// Size of the new PVC, with `accessModes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Quantity>,
    /// Access modes of the new PVC, with `capacity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub access_modes: Option<Vec<AccessMode>>,
    /// StorageClass of the new PVC. Default: the cluster's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// `Block` restores the snapshot's one regular file (a Block volume's backup, or a disk
    /// image) onto a raw device; the new PVC is made with this `volumeMode`, and a
    /// `destinationPVC` must have it. Default: `Filesystem`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mode: Option<VolumeMode>,
    /// VolumeSnapshotClass used with `copyMethod: Snapshot`. Default: the cluster's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_class_name: Option<String>,
    /// Restore the latest snapshot taken at or before this time (RFC 3339). Default: latest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_as_of: Option<Time>,
    /// Skip this many snapshots back from the one otherwise picked. Default: 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub previous: Option<i32>,
    /// Delete files in the volume that are not in the snapshot, so the volume matches it exactly.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enable_file_deletion: bool,
    /// What to do when no snapshot matches: fail (the default), or publish the volume empty.
    #[serde(default)]
    pub on_missing_snapshot: OnMissingSnapshot,
    /// Only consider snapshots recorded under this host name. Default: any host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub hostname: Option<String>,
    /// CA the mover trusts for the repository's endpoint.
    #[serde(default, rename = "customCA", skip_serializing_if = "Option::is_none")]
    pub custom_ca: Option<CustomCa>,
    /// Mover Pod overrides.
    #[serde(flatten)]
    pub mover: MoverConfig,
}

/// The answer to "no snapshot matches": a restore from an empty repository is usually a
/// mistake, but bootstrapping a new application from an empty repository is not.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum OnMissingSnapshot {
    /// Set a failed condition and publish nothing.
    #[default]
    Fail,
    /// Publish the volume as it is (empty when new).
    Empty,
}

/// What the controller observed and did.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationDestinationStatus {
    /// What every kind records about its syncs; its fields sit at the top level of `status`.
    #[serde(flatten)]
    pub sync: SyncStatus,
    /// The restored data: a VolumeSnapshot (`copyMethod: Snapshot`) or the PVC (`Direct`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_image: Option<TypedLocalObjectReference>,
    /// The snapshot restored last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_snapshot: Option<RestoredSnapshot>,
}
