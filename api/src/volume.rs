//! How the operator reaches a volume's data: copy methods and PVC access modes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How a ReplicationSource takes the point-in-time copy it backs up.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum CopyMethod {
    /// A VolumeSnapshot of the source PVC, then a temporary PVC restored from it.
    Snapshot,
    /// A temporary PVC cloned from the source PVC (`dataSource`).
    Clone,
    /// The live source PVC itself, mounted read-only next to its user.
    Direct,
}

/// How a ReplicationDestination publishes the restored data. Cloning the destination makes no
/// sense, so `Clone` is not offered.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum DestinationCopyMethod {
    /// Take a VolumeSnapshot of the restored PVC and publish it as `status.latestImage`.
    Snapshot,
    /// Publish the restored PVC itself as `status.latestImage`.
    Direct,
}

/// A PersistentVolumeClaim access mode, restricted to the values Kubernetes accepts.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AccessMode {
    /// Mounted read-write by one node.
    ReadWriteOnce,
    /// Mounted read-only by many nodes.
    ReadOnlyMany,
    /// Mounted read-write by many nodes.
    ReadWriteMany,
    /// Mounted read-write by one Pod.
    ReadWriteOncePod,
}

impl AccessMode {
    /// The string a PVC's `spec.accessModes` holds.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadWriteOnce => "ReadWriteOnce",
            Self::ReadOnlyMany => "ReadOnlyMany",
            Self::ReadWriteMany => "ReadWriteMany",
            Self::ReadWriteOncePod => "ReadWriteOncePod",
        }
    }
}
