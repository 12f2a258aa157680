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

/// Whether a volume holds a file system or is a raw block device (a PVC's `volumeMode`).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum VolumeMode {
    /// Mounted as a directory; restores recreate the snapshot's tree in it.
    #[default]
    Filesystem,
    /// Attached as a device; restores write the snapshot's one regular file (a Block
    /// volume's backup, or a disk image) onto it.
    Block,
}

impl VolumeMode {
    /// The string a PVC's `spec.volumeMode` holds.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Filesystem => "Filesystem",
            Self::Block => "Block",
        }
    }
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
