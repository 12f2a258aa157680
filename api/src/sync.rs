//! What a sync does and did: the plan recorded when it starts and the numbers of the last one.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One step of a sync, in the order the mover runs them.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum SyncAction {
    /// Remove stale locks (`spec.restic.unlock` changed, or locks of dead holders).
    Unlock,
    /// Back up the point-in-time copy.
    Backup,
    /// Forget snapshots by `spec.restic.retain`.
    Forget,
    /// Prune unreferenced data; planned when `pruneIntervalDays` elapsed since `lastPruned`.
    Prune,
    /// Check the repository, reading a subset of the data; planned by `checkIntervalDays`.
    Check,
    /// Restore a snapshot into the destination volume.
    Restore,
}

/// The sync in progress, decided once when it starts and kept until it ends, so the mover Job's
/// spec derives from it alone and never changes under a running Job.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncPlan {
    /// What this sync's mover does, in order.
    #[schemars(length(min = 1))]
    pub actions: Vec<SyncAction>,
    /// When the sync started; also names it (see the `sluice.dev/sync-started-at` annotation).
    pub started_at: Time,
    /// Name of the mover Job of this sync.
    #[schemars(length(min = 1, max = 63))]
    pub job_name: String,
    /// The `spec.trigger.manual` value this sync answers; copied to `lastManualSync` at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual: Option<String>,
    /// The `spec.restic.unlock` value this sync answers; copied to `restic.lastUnlocked` at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unlock: Option<String>,
}

/// Numbers of the last successful backup, from the mover's result.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastSync {
    /// Full id of the snapshot written.
    #[serde(rename = "snapshotID")]
    pub snapshot_id: String,
    /// The snapshot's time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_time: Option<Time>,
    /// Files not in the parent snapshot.
    pub files_new: u64,
    /// Files changed since the parent snapshot.
    pub files_changed: u64,
    /// Files unchanged since the parent snapshot.
    #[serde(default)]
    pub files_unmodified: u64,
    /// Bytes of new data stored in the repository, after deduplication.
    pub bytes_added: u64,
    /// Bytes of file content in the snapshot.
    pub total_bytes: u64,
}

/// The snapshot a ReplicationDestination restored last.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoredSnapshot {
    /// Full id of the snapshot.
    pub id: String,
    /// The snapshot's time (when it was taken, not when it was restored).
    pub time: Time,
}
