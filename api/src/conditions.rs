//! Condition types and reasons shared by the controllers, events, metrics and users' tooling.
//!
//! The names are API: people run `kubectl wait --for=condition=Ready` and alert on reasons, so
//! they live here, once, rather than as string literals in the operator.

/// The object's last sync succeeded and nothing is wrong with its configuration. For a
/// ReplicationDestination, the restored volume is published in `status.latestImage`.
pub const READY: &str = "Ready";

/// kstatus' `Reconciling`: a sync is in progress, or a failed one is retried on its backoff
/// (`True`); otherwise `False`, with the reason saying what the object waits for.
pub const RECONCILING: &str = "Reconciling";

/// kstatus' `Stalled`: the last sync failed for a reason retrying cannot fix (wrong password,
/// missing Secret keys, an invalid spec); nothing runs until the spec or the Secret changes.
pub const STALLED: &str = "Stalled";

/// The last sync failed or could not start, retried or not; the reason says why.
pub const DEGRADED: &str = "Degraded";

/// On a PVC whose `dataSourceRef` names a ReplicationDestination: whether Sluice's volume
/// populator filled it (`True`, the reason saying with what) or what it waits for (`False`).
pub const POPULATED: &str = "sluice.dev/Populated";

/// Condition reasons: CamelCase words a human can grep for in events and `kubectl describe`.
pub mod reason {
    /// The last sync succeeded.
    pub const SYNC_SUCCEEDED: &str = "SyncSucceeded";
    /// Waiting for the next time `spec.trigger.schedule` fires.
    pub const WAITING_FOR_SCHEDULE: &str = "WaitingForSchedule";
    /// Waiting for `spec.trigger.manual` to change.
    pub const WAITING_FOR_MANUAL: &str = "WaitingForManual";
    /// A ReplicationDestination without a target of its own: it restores only into the PVCs
    /// whose `dataSourceRef` names it (the volume populator).
    pub const SERVES_POPULATORS: &str = "ServesPopulators";
    /// `spec.paused` is set.
    pub const PAUSED: &str = "Paused";
    /// Waiting for a VolumeSnapshot to become `readyToUse`.
    pub const WAITING_FOR_SNAPSHOT: &str = "WaitingForSnapshot";
    /// Waiting for a PersistentVolumeClaim to be bound or provisioned.
    pub const WAITING_FOR_PVC: &str = "WaitingForPVC";
    /// The mover Job is running.
    pub const MOVER_RUNNING: &str = "MoverRunning";
    /// The sync is due and waits for its repository: other syncs fill it, or a prune or check
    /// runs there alone. The message gives the place in line.
    pub const QUEUED: &str = "Queued";
    /// The sync is due and its repository's backend was unreachable: it is parked without a
    /// Job until the operator's probe reaches the backend again. The message says since when,
    /// why and when the next probe is.
    pub const REPOSITORY_UNAVAILABLE: &str = "RepositoryUnavailable";
    /// The repository's backend answers again after an outage (an event's reason).
    pub const REPOSITORY_AVAILABLE: &str = "RepositoryAvailable";
    /// The mover Job failed for a reason the operator retries with backoff.
    pub const MOVER_FAILED: &str = "MoverFailed";
    /// Retrying after a failure; `nextSyncTime` says when.
    pub const BACKOFF: &str = "Backoff";
    /// The repository stayed locked by a live holder past the retry window.
    pub const REPOSITORY_LOCKED: &str = "RepositoryLocked";
    /// The repository password opens no key.
    pub const WRONG_PASSWORD: &str = "WrongPassword";
    /// No repository exists at `RESTIC_REPOSITORY`.
    pub const REPOSITORY_NOT_FOUND: &str = "RepositoryNotFound";
    /// The repository's data failed verification.
    pub const REPOSITORY_CORRUPT: &str = "RepositoryCorrupt";
    /// The storage backend could not be reached.
    pub const NETWORK_ERROR: &str = "NetworkError";
    /// The mover rejected its configuration.
    pub const MOVER_CONFIG_INVALID: &str = "MoverConfigInvalid";
    /// The repository Secret is missing or lacks required keys.
    pub const SECRET_INVALID: &str = "SecretInvalid";
    /// The source PVC does not exist.
    pub const SOURCE_PVC_NOT_FOUND: &str = "SourcePVCNotFound";
    /// A restore found no snapshot matching `restoreAsOf`/`previous`/`hostname`.
    pub const NO_SNAPSHOT: &str = "NoSnapshot";
    /// A snapshot's shape does not fit the volume: a Block volume's image restored to a
    /// Filesystem volume, or a tree of files to a Block one.
    pub const VOLUME_MODE_MISMATCH: &str = "VolumeModeMismatch";
    /// A populated PVC holds the snapshot its ReplicationDestination picked.
    pub const SNAPSHOT_RESTORED: &str = "SnapshotRestored";
    /// A populated PVC was left empty: no snapshot matched and `onMissingSnapshot: Empty`.
    pub const EMPTY_NO_SNAPSHOT: &str = "EmptyNoSnapshot";
    /// A populated PVC was left empty: the repository does not exist yet and
    /// `onMissingSnapshot: Empty` (an application's first deployment).
    pub const EMPTY_NO_REPOSITORY: &str = "EmptyNoRepository";
    /// A PVC of a `WaitForFirstConsumer` class waits for a Pod that uses it to be scheduled.
    pub const WAITING_FOR_FIRST_CONSUMER: &str = "WaitingForFirstConsumer";
    /// A PVC's `dataSourceRef` names a ReplicationDestination that does not exist.
    pub const REPLICATION_DESTINATION_NOT_FOUND: &str = "ReplicationDestinationNotFound";
    /// The populated volume is being handed over to the PVC.
    pub const REBINDING: &str = "Rebinding";
    /// The last restore test found files that do not restore as the snapshot records them, or
    /// data it could not read.
    pub const VERIFICATION_FAILED: &str = "VerificationFailed";
    /// Temporary copies of the last sync are being removed.
    pub const CLEANING_UP: &str = "CleaningUp";
}
