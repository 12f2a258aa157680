//! The point-in-time copies a sync reads from, and the volumes a restore writes to.
//!
//! `Snapshot` takes a VolumeSnapshot and restores it into a temporary PVC, `Clone` makes a
//! temporary PVC with the source as `dataSource`, and `Direct` uses the live PVC on the node of
//! the Pod that mounts it. [`VolumeSnapshot`] is `snapshot.storage.k8s.io/v1` as far as Sluice
//! writes and reads it; its CRD comes with the cluster's snapshot controller.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, Pod, TypedLocalObjectReference,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::{
    api::resource::Quantity,
    apis::meta::v1::{ObjectMeta, OwnerReference},
};
use kube::{CustomResource, Resource};
use serde::{Deserialize, Serialize};
use sluice_api::{AccessMode, VolumeMode, conditions::reason, labels};

use crate::decide::{READY_WARNING, Waiting};

/// API group of VolumeSnapshots.
pub const SNAPSHOT_GROUP: &str = "snapshot.storage.k8s.io";

/// What a VolumeSnapshot is taken of, and with which class. Fields Sluice does not use are
/// not kept: Sluice never writes back a VolumeSnapshot it read.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[kube(
    group = "snapshot.storage.k8s.io",
    version = "v1",
    kind = "VolumeSnapshot",
    namespaced,
    status = "VolumeSnapshotStatus",
    schema = "disabled",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotSpec {
    /// The PVC the snapshot is taken of.
    pub source: VolumeSnapshotSource,
    /// The VolumeSnapshotClass; the cluster's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_class_name: Option<String>,
}

/// The source of a VolumeSnapshot.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotSource {
    /// A PVC in the snapshot's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim_name: Option<String>,
}

/// What the snapshotter reports.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotStatus {
    /// The snapshot can be restored from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_to_use: Option<bool>,
    /// The smallest volume it restores into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_size: Option<Quantity>,
    /// Why the snapshotter failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<VolumeSnapshotError>,
}

/// A snapshotter's error.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct VolumeSnapshotError {
    /// What failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Who owns what a sync creates: the owner reference, so garbage collection removes it with its
/// ReplicationSource or ReplicationDestination, and Sluice's labels, which the controller
/// watches by.
#[derive(Clone, Debug)]
pub struct Owner {
    /// Controller reference to the object.
    pub reference: OwnerReference,
    /// `app.kubernetes.io/managed-by` and the label naming the object.
    pub labels: BTreeMap<String, String>,
}

impl Owner {
    /// The owner of what `object`'s syncs create, named by `owner_label` (e.g.
    /// `sluice.dev/replication-source`).
    pub fn of<K: Resource<DynamicType = ()>>(object: &K, owner_label: &str) -> Self {
        let name = object.meta().name.clone().unwrap_or_default();
        Self {
            reference: object
                .controller_owner_ref(&())
                .expect("a stored object has a name and uid"),
            labels: BTreeMap::from([
                (
                    labels::MANAGED_BY.to_string(),
                    labels::MANAGED_BY_VALUE.to_string(),
                ),
                (owner_label.to_string(), name),
            ]),
        }
    }

    /// Metadata of an owned object called `name`.
    pub fn meta(&self, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(self.labels.clone()),
            owner_references: Some(vec![self.reference.clone()]),
            ..Default::default()
        }
    }
}

/// A VolumeSnapshot of `pvc`.
pub fn volume_snapshot(meta: ObjectMeta, pvc: &str, class: Option<&str>) -> VolumeSnapshot {
    VolumeSnapshot {
        metadata: meta,
        spec: VolumeSnapshotSpec {
            source: VolumeSnapshotSource {
                persistent_volume_claim_name: Some(pvc.to_string()),
            },
            volume_snapshot_class_name: class.map(str::to_string),
        },
        status: None,
    }
}

/// A snapshot's `status.restoreSize` once it is `readyToUse`; `None` while it is not.
pub fn snapshot_ready(snapshot: &VolumeSnapshot) -> Option<Option<Quantity>> {
    let status = snapshot.status.as_ref()?;
    (status.ready_to_use == Some(true)).then(|| status.restore_size.clone())
}

/// A snapshot's `status.error.message`, when the snapshotter gave up.
pub fn snapshot_error(snapshot: &VolumeSnapshot) -> Option<String> {
    snapshot.status.as_ref()?.error.as_ref()?.message.clone()
}

/// Shape of a new PVC: size, class and access modes, each defaulting to the source's.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PvcShape {
    /// Requested storage.
    pub capacity: Option<Quantity>,
    /// StorageClass name.
    pub storage_class: Option<String>,
    /// Access modes.
    pub access_modes: Option<Vec<String>>,
    /// `Filesystem` or `Block`; a copy has its source's, which Kubernetes requires.
    pub volume_mode: Option<String>,
}

impl PvcShape {
    /// The shape a spec asks for with `capacity`, `storageClassName` and `accessModes`.
    pub fn requested(
        capacity: Option<&Quantity>,
        storage_class: Option<&String>,
        access_modes: Option<&[AccessMode]>,
    ) -> Self {
        Self {
            capacity: capacity.cloned(),
            storage_class: storage_class.cloned(),
            access_modes: access_modes
                .map(|modes| modes.iter().map(|m| m.as_str().to_string()).collect()),
            volume_mode: None,
        }
    }

    /// This shape with unset fields taken from `source`'s spec.
    pub fn or_from(self, source: &PersistentVolumeClaim) -> Self {
        let spec = source.spec.clone().unwrap_or_default();
        let source_size = spec
            .resources
            .and_then(|resources| resources.requests)
            .and_then(|requests| requests.get("storage").cloned());
        Self {
            capacity: self.capacity.or(source_size),
            storage_class: self.storage_class.or(spec.storage_class_name),
            access_modes: self.access_modes.or(spec.access_modes),
            volume_mode: self.volume_mode.or(spec.volume_mode),
        }
    }
}

/// Whether `claim` is a raw block device (`volumeMode: Block`) rather than a file system.
pub fn is_block(claim: &PersistentVolumeClaim) -> bool {
    claim
        .spec
        .as_ref()
        .and_then(|spec| spec.volume_mode.as_deref())
        == Some(VolumeMode::Block.as_str())
}

/// A PVC restored from a VolumeSnapshot, sized by the snapshot's `restoreSize` unless the
/// shape asks for more room.
pub fn pvc_from_snapshot(
    meta: ObjectMeta,
    snapshot: &str,
    restore_size: Option<Quantity>,
    shape: PvcShape,
) -> PersistentVolumeClaim {
    let data_source = TypedLocalObjectReference {
        api_group: Some(SNAPSHOT_GROUP.to_string()),
        kind: "VolumeSnapshot".to_string(),
        name: snapshot.to_string(),
    };
    let capacity = shape.capacity.clone().or(restore_size);
    pvc(meta, PvcShape { capacity, ..shape }, Some(data_source))
}

/// A PVC cloned from `source_pvc`.
pub fn clone_pvc(meta: ObjectMeta, source_pvc: &str, shape: PvcShape) -> PersistentVolumeClaim {
    let data_source = TypedLocalObjectReference {
        api_group: None,
        kind: "PersistentVolumeClaim".to_string(),
        name: source_pvc.to_string(),
    };
    pvc(meta, shape, Some(data_source))
}

/// A new, empty PVC (a restore's target).
pub fn pvc(
    meta: ObjectMeta,
    shape: PvcShape,
    data_source: Option<TypedLocalObjectReference>,
) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: meta,
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(
                shape
                    .access_modes
                    .unwrap_or_else(|| vec!["ReadWriteOnce".to_string()]),
            ),
            storage_class_name: shape.storage_class,
            resources: Some(VolumeResourceRequirements {
                requests: shape
                    .capacity
                    .map(|size| BTreeMap::from([("storage".to_string(), size)])),
                ..Default::default()
            }),
            data_source,
            volume_mode: shape.volume_mode,
            ..Default::default()
        }),
        status: None,
    }
}

/// Whether `claim` is bound to a volume.
pub fn is_bound(claim: &PersistentVolumeClaim) -> bool {
    claim
        .status
        .as_ref()
        .and_then(|status| status.phase.as_deref())
        == Some("Bound")
}

/// The wait of a sync whose mover Pod mounts `claim` (`role` says what it is to the user) while
/// it is not bound: the Pod cannot start before it is.
pub fn unbound(claim: &str, role: &str, action: &'static str) -> Waiting {
    Waiting {
        reason: reason::WAITING_FOR_PVC,
        message: format!("waiting for PVC {claim} ({role}) to be bound"),
        action,
        warning: format!(
            "PVC {claim} not bound after {}s: check its StorageClass and that its provisioner runs",
            READY_WARNING.as_secs()
        ),
    }
}

/// The wait for VolumeSnapshot `name` (`of` says of what) to become `readyToUse`, with the
/// snapshotter's error in the warning when it gave one.
pub fn snapshot_not_ready(snapshot: &VolumeSnapshot, name: &str, of: &str) -> Waiting {
    let detail = snapshot_error(snapshot).unwrap_or_else(|| "not readyToUse yet".to_string());
    Waiting {
        reason: reason::WAITING_FOR_SNAPSHOT,
        message: format!("waiting for VolumeSnapshot {name} {of} to become readyToUse"),
        action: "Snapshot",
        warning: format!("VolumeSnapshot {name}: {detail}"),
    }
}

/// The node of a live Pod that mounts `claim`, where a `Direct` mover must run to share the
/// volume. Finished Pods no longer hold the volume and are skipped.
pub fn node_mounting(pods: &[Pod], claim: &str) -> Option<String> {
    pods.iter()
        .filter(|pod| {
            let phase = pod
                .status
                .as_ref()
                .and_then(|status| status.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
        .filter(|pod| {
            pod.spec
                .iter()
                .flat_map(|spec| spec.volumes.iter().flatten())
                .any(|volume| {
                    volume
                        .persistent_volume_claim
                        .as_ref()
                        .is_some_and(|source| source.claim_name == claim)
                })
        })
        .find_map(|pod| pod.spec.as_ref()?.node_name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        PersistentVolumeClaimVolumeSource, PodSpec, PodStatus, Volume,
    };
    use serde_json::json;

    fn meta() -> ObjectMeta {
        ObjectMeta {
            name: Some("copy".into()),
            ..Default::default()
        }
    }

    #[test]
    fn snapshot_names_its_source_and_class() {
        let snapshot = volume_snapshot(meta(), "data", Some("csi-snap"));
        let value = serde_json::to_value(&snapshot).unwrap();
        assert_eq!(value["apiVersion"], "snapshot.storage.k8s.io/v1");
        assert_eq!(value["kind"], "VolumeSnapshot");
        assert_eq!(value["spec"]["source"]["persistentVolumeClaimName"], "data");
        assert_eq!(value["spec"]["volumeSnapshotClassName"], "csi-snap");
    }

    fn with_status(snapshot: &VolumeSnapshot, status: serde_json::Value) -> VolumeSnapshot {
        let mut value = serde_json::to_value(snapshot).unwrap();
        value["status"] = status;
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn snapshot_is_ready_only_with_ready_to_use() {
        let taken = volume_snapshot(meta(), "data", None);
        assert_eq!(snapshot_ready(&taken), None);
        let snapshot = with_status(&taken, json!({"readyToUse": false}));
        assert_eq!(snapshot_ready(&snapshot), None);
        let snapshot = with_status(&taken, json!({"readyToUse": true, "restoreSize": "2Gi"}));
        assert_eq!(
            snapshot_ready(&snapshot),
            Some(Some(Quantity("2Gi".into())))
        );
        let failed = with_status(
            &taken,
            json!({"readyToUse": false, "error": {"message": "no driver", "time": "2026-11-22T10:00:00Z"}}),
        );
        assert_eq!(snapshot_error(&failed).as_deref(), Some("no driver"));
    }

    #[test]
    fn pvc_from_snapshot_is_sized_by_restore_size() {
        let pvc = pvc_from_snapshot(
            meta(),
            "snap",
            Some(Quantity("2Gi".into())),
            PvcShape::default(),
        );
        let spec = pvc.spec.unwrap();
        assert_eq!(
            spec.resources.unwrap().requests.unwrap()["storage"],
            Quantity("2Gi".into())
        );
        let source = spec.data_source.unwrap();
        assert_eq!(
            (source.kind.as_str(), source.name.as_str()),
            ("VolumeSnapshot", "snap")
        );
        assert_eq!(source.api_group.as_deref(), Some(SNAPSHOT_GROUP));
    }

    #[test]
    fn clone_defaults_to_the_source_shape() {
        let source = pvc(
            meta(),
            PvcShape {
                capacity: Some(Quantity("5Gi".into())),
                storage_class: Some("fast".into()),
                access_modes: Some(vec!["ReadWriteMany".into()]),
                volume_mode: Some("Block".into()),
            },
            None,
        );
        let shape = PvcShape {
            storage_class: Some("other".into()),
            ..Default::default()
        }
        .or_from(&source);
        let clone = clone_pvc(meta(), "data", shape).spec.unwrap();
        assert_eq!(clone.storage_class_name.as_deref(), Some("other"));
        assert_eq!(clone.access_modes.unwrap(), ["ReadWriteMany"]);
        assert_eq!(
            clone.resources.unwrap().requests.unwrap()["storage"],
            Quantity("5Gi".into())
        );
        assert_eq!(clone.data_source.unwrap().kind, "PersistentVolumeClaim");
        assert_eq!(clone.volume_mode.as_deref(), Some("Block"));
        assert!(is_block(&source));
    }

    fn pod(node: &str, claim: &str, phase: &str) -> Pod {
        Pod {
            spec: Some(PodSpec {
                node_name: Some(node.into()),
                volumes: Some(vec![Volume {
                    name: "v".into(),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: claim.into(),
                        read_only: None,
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn direct_follows_the_live_pod_that_mounts_the_claim() {
        let pods = [
            pod("old", "data", "Succeeded"),
            pod("n1", "other", "Running"),
            pod("n2", "data", "Running"),
        ];
        assert_eq!(node_mounting(&pods, "data").as_deref(), Some("n2"));
        assert_eq!(node_mounting(&pods, "missing"), None);
    }
}
