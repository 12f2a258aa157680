//! `kubectl sluice restore SOURCE --to NEWPVC`: a new PVC filled with a snapshot of SOURCE by
//! the operator's volume populator. It creates a ReplicationDestination that reads SOURCE's
//! repository and host (owned by the new PVC, so deleting the PVC removes it) and the PVC,
//! shaped like SOURCE's, whose `dataSourceRef` names it; then it follows the PVC's
//! `sluice.dev/Populated` condition to its end.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimCondition};
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams, PostParams},
};
use serde::Serialize;
use serde_json::json;
use sluice_api::{ReplicationDestination, ReplicationSource, conditions, labels};

use crate::{
    cli::{EXIT_FAILED, Format, RestoreArgs},
    cluster::Cluster,
    output,
};

/// How often the PVC is read while it is filled.
const POLL: Duration = Duration::from_secs(2);

/// The reasons of a population on its way; any other `False` reason is a failure.
const IN_PROGRESS: [&str; 4] = [
    conditions::reason::MOVER_RUNNING,
    conditions::reason::WAITING_FOR_PVC,
    conditions::reason::REBINDING,
    // Only until the ReplicationDestination, created just before, is seen.
    conditions::reason::REPLICATION_DESTINATION_NOT_FOUND,
];

/// Where a PVC being filled stands, from its `sluice.dev/Populated` condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Filled (reason `SnapshotRestored`, or an allowed empty volume).
    Filled { reason: String, message: String },
    /// Its class binds on first use: it is filled when a Pod that uses it is scheduled.
    WaitsForPod { message: String },
    /// The restore failed; the operator tries again, the PVC stays pending.
    Failed { reason: String, message: String },
}

/// What `restore -o json` prints.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct Outcome {
    namespace: String,
    pvc: String,
    replication_destination: String,
    filled: bool,
    reason: String,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot_id: Option<String>,
}

/// The ReplicationDestination of a restore of `source` into PVC `pvc`: `source`'s repository,
/// host, CA and mover settings, the snapshot at or before `as_of` (RFC 3339; the latest
/// without), and no volume of its own.
pub fn destination_for(
    source: &ReplicationSource,
    pvc: &str,
    as_of: Option<&str>,
) -> Result<ReplicationDestination> {
    let restic = &source.spec.restic;
    let mut spec = json!({
        "repository": restic.repository,
        "copyMethod": "Direct",
        "hostname": source.restic_hostname(),
    });
    if let Some(as_of) = as_of {
        spec["restoreAsOf"] = json!(as_of);
    }
    if let Some(ca) = &restic.custom_ca {
        spec["customCA"] = serde_json::to_value(ca)?;
    }
    if let serde_json::Value::Object(mover) = serde_json::to_value(&restic.mover)? {
        spec.as_object_mut().expect("an object").extend(mover);
    }
    let destination = json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "ReplicationDestination",
        "metadata": {
            "name": pvc,
            "namespace": source.namespace(),
            "labels": {labels::MANAGED_BY: "kubectl-sluice"},
        },
        "spec": {"restic": spec},
    });
    serde_json::from_value(destination).context("building the ReplicationDestination")
}

/// The new PVC: `source_pvc`'s access modes, size, volume mode and class (or `class`), filled
/// from ReplicationDestination `pvc`.
pub fn claim_for(
    source_pvc: &PersistentVolumeClaim,
    pvc: &str,
    class: Option<&str>,
) -> PersistentVolumeClaim {
    let spec = source_pvc.spec.clone().unwrap_or_default();
    let size = source_pvc
        .status
        .as_ref()
        .and_then(|s| s.capacity.as_ref()?.get("storage").cloned())
        .or_else(|| {
            spec.resources
                .as_ref()?
                .requests
                .as_ref()?
                .get("storage")
                .cloned()
        });
    let mut claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": pvc, "namespace": source_pvc.namespace()},
        "spec": {
            "accessModes": spec.access_modes,
            "volumeMode": spec.volume_mode,
            "resources": {"requests": {"storage": size}},
            "dataSourceRef": {
                "apiGroup": "sluice.dev",
                "kind": "ReplicationDestination",
                "name": pvc,
            },
        },
    }))
    .expect("a PVC");
    let claim_spec = claim.spec.as_mut().expect("a spec");
    claim_spec.storage_class_name = class.map(str::to_string).or(spec.storage_class_name);
    claim
}

/// The PVC's `sluice.dev/Populated` condition, once the populator set it.
fn populated(claim: &PersistentVolumeClaim) -> Option<&PersistentVolumeClaimCondition> {
    claim
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == conditions::POPULATED)
}

/// What the PVC's condition says; `None` while there is nothing to report yet.
pub fn verdict(claim: &PersistentVolumeClaim) -> Option<Verdict> {
    let condition = populated(claim)?;
    let reason = condition.reason.clone().unwrap_or_default();
    let message = condition.message.clone().unwrap_or_default();
    if condition.status == "True" {
        return Some(Verdict::Filled { reason, message });
    }
    if reason == conditions::reason::WAITING_FOR_FIRST_CONSUMER {
        return Some(Verdict::WaitsForPod { message });
    }
    if IN_PROGRESS.contains(&reason.as_str()) {
        return None;
    }
    Some(Verdict::Failed { reason, message })
}

/// Runs `restore`.
pub async fn run(cluster: &Cluster, args: &RestoreArgs, format: Format) -> Result<u8> {
    let ns = &cluster.namespace;
    let source = cluster.source(&args.source).await?;
    let claims: Api<PersistentVolumeClaim> = cluster.api();
    if claims.get_opt(&args.to).await?.is_some() {
        bail!(
            "PVC {ns}/{} already exists; name a new one with --to",
            args.to
        );
    }
    let source_pvc = claims
        .get_opt(&source.spec.source_pvc)
        .await?
        .with_context(|| {
            format!(
                "the source PVC {ns}/{} of ReplicationSource {} is gone; its shape is needed \
                 for the new PVC",
                source.spec.source_pvc, args.source
            )
        })?;
    let as_of = args.as_of.as_ref().map(|t| t.to_string());
    let destination = destination_for(&source, &args.to, as_of.as_deref())?;
    let destinations: Api<ReplicationDestination> = cluster.api();
    destinations
        .create(&PostParams::default(), &destination)
        .await
        .with_context(|| format!("creating ReplicationDestination {ns}/{}", args.to))?;
    let claim = claim_for(&source_pvc, &args.to, args.storage_class.as_deref());
    let created = claims
        .create(&PostParams::default(), &claim)
        .await
        .with_context(|| format!("creating PVC {ns}/{}", args.to))?;
    // Deleting the PVC removes the ReplicationDestination made for it.
    let owner = created.controller_owner_ref(&()).map(|owner| {
        json!({"metadata": {"ownerReferences": [{
            "apiVersion": owner.api_version,
            "kind": owner.kind,
            "name": owner.name,
            "uid": owner.uid,
        }]}})
    });
    if let Some(owner) = owner {
        destinations
            .patch(&args.to, &PatchParams::default(), &Patch::Merge(&owner))
            .await
            .with_context(|| {
                format!("making PVC {ns}/{} own its ReplicationDestination", args.to)
            })?;
    }
    eprintln!(
        "PVC {ns}/{} created, to be filled from ReplicationSource {}'s snapshot{} by ReplicationDestination {}",
        args.to,
        args.source,
        as_of
            .as_deref()
            .map(|t| format!(" at or before {t}"))
            .unwrap_or_else(|| " (latest)".into()),
        args.to
    );
    let deadline = Instant::now() + args.timeout;
    let mut last = String::new();
    loop {
        let claim = claims.get(&args.to).await?;
        if let Some(progress) = progress_line(&claim)
            && progress != last
        {
            eprintln!("  {progress}");
            last = progress;
        }
        if let Some(verdict) = verdict(&claim) {
            return report(cluster, &args.to, &claim, verdict, format);
        }
        if Instant::now() > deadline {
            bail!(
                "PVC {ns}/{} was not filled within {}s ({last}); the operator keeps going, follow it with `kubectl describe pvc {} -n {ns}`",
                args.to,
                args.timeout.as_secs(),
                args.to
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

fn progress_line(claim: &PersistentVolumeClaim) -> Option<String> {
    let condition = populated(claim)?;
    Some(format!(
        "{}: {}",
        condition.reason.as_deref().unwrap_or_default(),
        condition.message.as_deref().unwrap_or_default()
    ))
}

fn report(
    cluster: &Cluster,
    pvc: &str,
    claim: &PersistentVolumeClaim,
    verdict: Verdict,
    format: Format,
) -> Result<u8> {
    let (filled, reason, message, code) = match verdict {
        Verdict::Filled { reason, message } => (true, reason, message, 0),
        Verdict::WaitsForPod { message } => (
            false,
            conditions::reason::WAITING_FOR_FIRST_CONSUMER.to_string(),
            message,
            0,
        ),
        Verdict::Failed { reason, message } => (false, reason, message, EXIT_FAILED),
    };
    let outcome = Outcome {
        namespace: cluster.namespace.clone(),
        pvc: pvc.to_string(),
        replication_destination: pvc.to_string(),
        filled,
        snapshot_id: claim
            .annotations()
            .get(labels::RESTORED_SNAPSHOT)
            .filter(|_| filled)
            .cloned(),
        reason,
        message,
    };
    if !output::structured(format, &outcome)? {
        let colour = output::colour_wanted();
        let (word, tone) = match (outcome.filled, code) {
            (true, _) => ("filled", output::Tone::Good),
            (false, 0) => ("waiting for a Pod", output::Tone::Busy),
            _ => ("not filled", output::Tone::Bad),
        };
        println!(
            "PVC {}/{}: {} ({}): {}",
            outcome.namespace,
            outcome.pvc,
            output::paint(word, tone, colour),
            outcome.reason,
            outcome.message
        );
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object<K: serde::de::DeserializeOwned>(yaml: &str) -> K {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn the_destination_reads_the_source_repository_and_host_and_has_no_volume() {
        let source: ReplicationSource = object(
            "apiVersion: sluice.dev/v1alpha1
kind: ReplicationSource
metadata: {name: db, namespace: apps}
spec:
  sourcePVC: db-data
  restic:
    repository: repo
    copyMethod: Snapshot
    customCA: {configMapName: ca, key: ca.crt}
    moverSecurityContext: {runAsUser: 1000}
",
        );
        let rd = destination_for(&source, "db-copy", Some("2026-12-01T10:00:00Z")).unwrap();
        let restic = &rd.spec.restic;
        assert_eq!(rd.metadata.name.as_deref(), Some("db-copy"));
        assert_eq!(rd.metadata.namespace.as_deref(), Some("apps"));
        assert_eq!(restic.repository, "repo");
        assert_eq!(restic.hostname.as_deref(), Some("apps-db-data"));
        assert_eq!(
            restic.restore_as_of.as_ref().map(|t| t.0.to_string()),
            Some("2026-12-01T10:00:00Z".into())
        );
        assert_eq!(restic.custom_ca, source.spec.restic.custom_ca);
        assert_eq!(restic.mover, source.spec.restic.mover);
        assert_eq!((&restic.capacity, &restic.destination_pvc), (&None, &None));
        assert_eq!(rd.spec.trigger, None);
    }

    #[test]
    fn the_claim_is_shaped_like_the_source_pvc() {
        let source: PersistentVolumeClaim = object(
            "apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: db-data, namespace: apps}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: fast
  volumeMode: Block
  resources: {requests: {storage: 1Gi}}
status: {capacity: {storage: 2Gi}}
",
        );
        let claim = claim_for(&source, "db-copy", None);
        let spec = claim.spec.as_ref().unwrap();
        assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(spec.volume_mode.as_deref(), Some("Block"));
        assert_eq!(
            spec.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"].0,
            "2Gi",
            "the size the source really has"
        );
        let reference = spec.data_source_ref.as_ref().unwrap();
        assert_eq!(
            (
                reference.api_group.as_deref(),
                reference.kind.as_str(),
                reference.name.as_str()
            ),
            (Some("sluice.dev"), "ReplicationDestination", "db-copy")
        );
        let other = claim_for(&source, "db-copy", Some("slow"));
        assert_eq!(
            other.spec.unwrap().storage_class_name.as_deref(),
            Some("slow")
        );
    }

    #[test]
    fn the_condition_decides_when_restore_stops_waiting() {
        let claim = |status: &str, reason: &str| -> PersistentVolumeClaim {
            object(&format!(
                "apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: c}}
status:
  conditions:
    - {{type: sluice.dev/Populated, status: '{status}', reason: {reason}, message: m}}
"
            ))
        };
        let filled = |reason: &str| {
            Some(Verdict::Filled {
                reason: reason.into(),
                message: "m".into(),
            })
        };
        let failed = |reason: &str| {
            Some(Verdict::Failed {
                reason: reason.into(),
                message: "m".into(),
            })
        };
        let cases = [
            ("True", "SnapshotRestored", filled("SnapshotRestored")),
            ("True", "EmptyNoSnapshot", filled("EmptyNoSnapshot")),
            ("False", "MoverRunning", None),
            ("False", "WaitingForPVC", None),
            ("False", "Rebinding", None),
            ("False", "ReplicationDestinationNotFound", None),
            (
                "False",
                "WaitingForFirstConsumer",
                Some(Verdict::WaitsForPod {
                    message: "m".into(),
                }),
            ),
            ("False", "WrongPassword", failed("WrongPassword")),
            ("False", "NoSnapshot", failed("NoSnapshot")),
            ("False", "NetworkError", failed("NetworkError")),
        ];
        for (status, reason, expected) in cases {
            assert_eq!(
                verdict(&claim(status, reason)),
                expected,
                "{status}/{reason}"
            );
        }
        let fresh: PersistentVolumeClaim =
            object("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: c}\n");
        assert_eq!(verdict(&fresh), None);
    }
}
