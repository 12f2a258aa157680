//! What a sync does and did: the status both kinds share, the plan recorded when a sync starts,
//! and the numbers of the last one.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::core::Duration;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{mover::MoverStatus, trigger::Trigger};

/// What both kinds record about their syncs (a backup for a ReplicationSource, a restore for a
/// ReplicationDestination): the fields the operator's one sync state machine reads and writes.
/// Each kind's status flattens it, so these fields sit at the top level of `status`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    /// `metadata.generation` of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling and Stalled (as kstatus reads them) and Degraded, one entry per type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// When the last successful sync ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
    /// When the last sync (successful or not) started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_start_time: Option<Time>,
    /// How long the last successful sync took (`1m30.5s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_duration: Option<Duration>,
    /// When the next sync starts: the schedule's next time, or the end of a retry backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_sync_time: Option<Time>,
    /// The last `spec.trigger.manual` value a sync completed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_manual_sync: Option<String>,
    /// Outcome and log tail of the latest mover Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_mover_status: Option<MoverStatus>,
    /// The sync in progress; absent between syncs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_plan: Option<SyncPlan>,
    /// Failed syncs since the last success; drives the retry backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub consecutive_failures: Option<i32>,
    /// Scheduled times that passed without a sync starting (collapsed into one later run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub missed_syncs: Option<i64>,
}

/// What the operator's one sync state machine reads of either kind's spec.
pub trait SyncSpec {
    /// `spec.paused`.
    fn paused(&self) -> bool;
    /// `spec.trigger`.
    fn trigger(&self) -> Option<&Trigger>;
    /// `spec.restic.repository`: the name of the repository Secret.
    fn repository(&self) -> &str;
}

/// Both kinds name these fields alike; written once, for both, so one state machine serves them.
macro_rules! shared_by_both_kinds {
    ($($spec:ty => $status:ty),+) => {$(
        impl SyncSpec for $spec {
            fn paused(&self) -> bool {
                self.paused
            }

            fn trigger(&self) -> Option<&Trigger> {
                self.trigger.as_ref()
            }

            fn repository(&self) -> &str {
                &self.restic.repository
            }
        }

        impl AsRef<SyncStatus> for $status {
            fn as_ref(&self) -> &SyncStatus {
                &self.sync
            }
        }

        impl AsMut<SyncStatus> for $status {
            fn as_mut(&mut self) -> &mut SyncStatus {
                &mut self.sync
            }
        }
    )+};
}

shared_by_both_kinds!(
    crate::ReplicationSourceSpec => crate::ReplicationSourceStatus,
    crate::ReplicationDestinationSpec => crate::ReplicationDestinationStatus
);

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
    /// Restore the latest snapshot into a scratch volume and read it back; planned by
    /// `spec.restic.verify.schedule`.
    Verify,
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
    /// The repository this sync runs against: the Secret's `RESTIC_REPOSITORY`, normalised and
    /// without credentials. Syncs into one repository share its queue, also after an operator
    /// restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
}

impl SyncPlan {
    /// Whether the sync prunes or checks, so it runs alone in its repository.
    pub fn exclusive(&self) -> bool {
        self.actions
            .iter()
            .any(|action| matches!(action, SyncAction::Prune | SyncAction::Check))
    }
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
