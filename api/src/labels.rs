//! Label and annotation keys Sluice puts on the objects it creates.
//!
//! The operator selects its Jobs, temporary PVCs and VolumeSnapshots by these labels, and users
//! find them the same way (`kubectl get jobs -l sluice.dev/replication-source=db`).

/// Standard `app.kubernetes.io/managed-by` label key.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";

/// Value of [`MANAGED_BY`] on everything the operator creates.
pub const MANAGED_BY_VALUE: &str = "sluice";

/// Standard `app.kubernetes.io/component` label key; mover Pods carry [`COMPONENT_MOVER`].
pub const COMPONENT: &str = "app.kubernetes.io/component";

/// Value of [`COMPONENT`] on mover Jobs and their Pods.
pub const COMPONENT_MOVER: &str = "mover";

/// Label carrying the name of the ReplicationSource an object was created for.
pub const REPLICATION_SOURCE: &str = "sluice.dev/replication-source";

/// Label carrying the name of the ReplicationDestination an object was created for.
pub const REPLICATION_DESTINATION: &str = "sluice.dev/replication-destination";

/// Label carrying the uid of the PVC a volume population's prime PVC and Job were made for.
pub const POPULATES: &str = "sluice.dev/populates";

/// Annotation on a populated PVC: how it was filled, as its `sluice.dev/Populated` reason
/// (`SnapshotRestored`, `EmptyNoSnapshot`, `EmptyNoRepository`).
pub const POPULATION: &str = "sluice.dev/population";

/// Annotation on a populated PVC: the full id of the snapshot it holds.
pub const RESTORED_SNAPSHOT: &str = "sluice.dev/restored-snapshot";

/// Annotation on a populated PVC: the time of the snapshot it holds, RFC 3339.
pub const RESTORED_SNAPSHOT_TIME: &str = "sluice.dev/restored-snapshot-time";

/// Annotation on a mover Job naming the sync (its `status.syncPlan.startedAt`), so a Job left
/// from an earlier sync is never mistaken for the current one.
pub const SYNC_STARTED_AT: &str = "sluice.dev/sync-started-at";

/// Field manager of the operator's server-side apply patches.
pub const FIELD_MANAGER: &str = "sluice-operator";
