//! The ReplicationSource kind: back a PVC up into a restic repository on a trigger.

use k8s_openapi::apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::Time};
use kube::{CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    mover::{CustomCa, MoverConfig},
    sync::{LastSync, SyncStatus},
    trigger::{SCHEDULE_PATTERN, Trigger},
    volume::{AccessMode, CopyMethod},
};

/// Which PVC to back up, when, and into which repository.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "ReplicationSource",
    namespaced,
    status = "ReplicationSourceStatus",
    derive = "PartialEq",
    shortname = "rsrc",
    category = "sluice",
    doc = "Backs a PersistentVolumeClaim up into a restic repository, on a schedule or on demand.",
    printcolumn = r#"{"name":"Source","type":"string","jsonPath":".spec.sourcePVC"}"#,
    printcolumn = r#"{"name":"Last sync","type":"string","format":"date-time","jsonPath":".status.lastSyncTime"}"#,
    printcolumn = r#"{"name":"Duration","type":"string","jsonPath":".status.lastSyncDuration"}"#,
    printcolumn = r#"{"name":"Next sync","type":"string","format":"date-time","jsonPath":".status.nextSyncTime"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Snapshot","type":"string","priority":1,"jsonPath":".status.lastSync.snapshotID"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationSourceSpec {
    /// Name of the PersistentVolumeClaim, in this namespace, to back up.
    #[serde(rename = "sourcePVC")]
    #[schemars(length(min = 1, max = 253))]
    pub source_pvc: String,
    /// When syncs start. Without a trigger a new sync starts as soon as the previous one ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
    /// Stops starting new syncs; a running one finishes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// The repository and how to back up into it.
    pub restic: ResticSourceSpec,
}

/// Backup settings, named as in VolSync's restic mover where the meaning is the same.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResticSourceSpec {
    /// Name of the Secret holding the repository's environment: `RESTIC_REPOSITORY`,
    /// `RESTIC_PASSWORD` and the backend's credentials (`AWS_ACCESS_KEY_ID`, ...). A VolSync
    /// restic Secret works unchanged.
    #[schemars(length(min = 1, max = 253))]
    pub repository: String,
    /// How the point-in-time copy of the source PVC is taken.
    pub copy_method: CopyMethod,
    /// Which snapshots `forget` keeps after each backup. Without it no snapshot is forgotten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain: Option<RetainPolicy>,
    /// Days between prunes, which free the space of forgotten snapshots. Default: 7.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub prune_interval_days: Option<i32>,
    /// Days between checks of the repository (`check --read-data-subset`). Default: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub check_interval_days: Option<i32>,
    /// A restore test of the latest snapshot, on its own schedule ([`VerifySpec`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifySpec>,
    /// Size of the temporary PVC of the copy. Default: the source PVC's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Quantity>,
    /// StorageClass of the temporary PVC of the copy. Default: the source PVC's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Access modes of the temporary PVC of the copy. Default: the source PVC's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub access_modes: Option<Vec<AccessMode>>,
    /// VolumeSnapshotClass used with `copyMethod: Snapshot`. Default: the cluster's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_class_name: Option<String>,
    /// CA the mover trusts for the repository's endpoint.
    #[serde(default, rename = "customCA", skip_serializing_if = "Option::is_none")]
    pub custom_ca: Option<CustomCa>,
    /// Any string; each new value removes all locks before the next backup (`unlock
    /// --remove-all`). Done once the value appears in `status.restic.lastUnlocked`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unlock: Option<String>,
    /// Patterns of paths not to back up, as restic's `--exclude`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// Tags recorded on every snapshot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Host name recorded in snapshots; `forget` and the parent snapshot are scoped to it.
    /// Default: `<namespace>-<sourcePVC>`. Set `volsync` to continue a VolSync repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub hostname: Option<String>,
    /// Mover Pod overrides.
    #[serde(flatten)]
    pub mover: MoverConfig,
}

/// A scheduled restore test: the latest snapshot is restored into a scratch volume and every
/// file read back against the snapshot's tree (content hashes, sizes, modes). It proves the data
/// restores, which `check --read-data` (packs intact) does not.
///
/// The test runs in a backup sync, after the backup, so it restores the snapshot just written:
/// in the first sync, then in the first sync at or after each scheduled time.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifySpec {
    /// When a restore test is due: cron syntax as `spec.trigger.schedule` (`H` fields, macros
    /// such as `@weekly`), in `spec.trigger.timeZone`.
    #[schemars(length(min = 1, max = 256), regex(pattern = SCHEDULE_PATTERN))]
    pub schedule: String,
    /// Size of the scratch volume. Default: the source PVC's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Quantity>,
    /// StorageClass of the scratch volume. Default: the source PVC's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

/// Which snapshots to keep, as restic's `forget --keep-*` flags.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.last) || has(self.hourly) || has(self.daily) || has(self.weekly) || has(self.monthly) || has(self.yearly) || has(self.within)",
    "message": "spec.restic.retain must set at least one of last, hourly, daily, weekly, monthly, yearly or within; omit retain to keep every snapshot",
}]))]
pub struct RetainPolicy {
    /// Keep the last N snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub last: Option<i32>,
    /// Keep the last snapshot of each of the last N hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub hourly: Option<i32>,
    /// Keep the last snapshot of each of the last N days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub daily: Option<i32>,
    /// Keep the last snapshot of each of the last N weeks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub weekly: Option<i32>,
    /// Keep the last snapshot of each of the last N months.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub monthly: Option<i32>,
    /// Keep the last snapshot of each of the last N years.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub yearly: Option<i32>,
    /// Keep every snapshot younger than this, counted back from the latest snapshot, in restic's
    /// form: a sequence of number-unit pairs with units y, m, d, h (`1y6m`, `14d`, `36h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+[ymdh])+$"))]
    pub within: Option<String>,
}

/// What the controller observed and did.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationSourceStatus {
    /// What every kind records about its syncs; its fields sit at the top level of `status`.
    #[serde(flatten)]
    pub sync: SyncStatus,
    /// Numbers of the last successful backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<LastSync>,
    /// Repository maintenance bookkeeping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restic: Option<ResticSourceStatus>,
    /// The last restore test (`spec.restic.verify`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
}

/// What the last restore test found.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// When it finished.
    pub time: Time,
    /// Full id of the snapshot restored.
    #[serde(rename = "snapshotID")]
    pub snapshot_id: String,
    /// Files restored and read back.
    pub files_checked: u64,
    /// Bytes restored and read back.
    pub bytes_checked: u64,
    /// Files that did not restore as the snapshot records them; 0 when the test passed.
    pub files_mismatched: u64,
    /// The first mismatches, one line each: the path and what differs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mismatches: Vec<String>,
}

impl Verification {
    /// Whether every file restored as recorded.
    pub fn passed(&self) -> bool {
        self.files_mismatched == 0
    }
}

/// When repository maintenance last ran, so the plan knows when it is due again.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResticSourceStatus {
    /// When a prune last completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_pruned: Option<Time>,
    /// The last `spec.restic.unlock` value a sync completed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_unlocked: Option<String>,
    /// When a check last completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checked: Option<Time>,
}

impl ReplicationSource {
    /// The host name this source's snapshots are recorded under: `spec.restic.hostname`, or
    /// `<namespace>-<sourcePVC>` so two PVCs sharing a repository keep separate histories.
    pub fn restic_hostname(&self) -> String {
        match &self.spec.restic.hostname {
            Some(hostname) => hostname.clone(),
            None => format!(
                "{}-{}",
                self.namespace().unwrap_or_default(),
                self.spec.source_pvc
            ),
        }
    }
}
