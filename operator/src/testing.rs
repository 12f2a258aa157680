//! Fixtures the unit tests share: times, a backup's plan, objects written as YAML.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::de::DeserializeOwned;
use sluice_api::{SyncAction, SyncPlan};

/// An RFC 3339 time.
pub fn at(time: &str) -> Timestamp {
    time.parse()
        .unwrap_or_else(|error| panic!("{time:?}: {error}"))
}

/// The plan of backup `sluice-src-db-1`, started at 10:00, answering manual `m1` and unlock
/// `u1`, that unlocks, backs up and prunes.
pub fn backup_plan() -> SyncPlan {
    SyncPlan {
        actions: vec![SyncAction::Unlock, SyncAction::Backup, SyncAction::Prune],
        started_at: Time(at("2026-11-22T10:00:00Z")),
        job_name: "sluice-src-db-1".into(),
        manual: Some("m1".into()),
        unlock: Some("u1".into()),
        repository: Some("s3:http://minio:9000/backups".into()),
    }
}

/// An object from its manifest.
pub fn object<K: DeserializeOwned>(manifest: &str) -> K {
    serde_saphyr::from_str(manifest).unwrap_or_else(|error| panic!("{manifest}: {error}"))
}
