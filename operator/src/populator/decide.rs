//! What a PVC that names a ReplicationDestination in its `dataSourceRef` needs next, decided
//! from what is observed: pure, so every path of the volume-populator protocol is tested by
//! table ([`super`] carries the steps out).
//!
//! The protocol, as Kubernetes' lib-volume-populator defines it: the user's PVC stays pending;
//! a *prime* PVC of the same shape is made, and a Job restores into it; the prime's volume is
//! then handed to the user's PVC by pointing the PersistentVolume's `claimRef` at it, and the
//! PersistentVolume controller binds them. The prime PVC and the Job live in the PVC's own
//! namespace, owned by the PVC: the Job needs the ReplicationDestination's repository Secret and
//! CA, which only that namespace holds (copying credentials into the operator's namespace would
//! spread them), it runs under that namespace's Pod Security level and quota like every other
//! mover, and garbage collection removes both with the PVC.
//!
//! What the mover found is written on the user's PVC (the [`labels::POPULATION`] annotations)
//! before the volume is handed over, so the result survives the Job's deletion and an operator
//! restart in between.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{PersistentVolumeClaim, PersistentVolumeClaimSpec},
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::{Resource, ResourceExt};
use sluice_api::{
    ReplicationDestination, SyncAction, SyncPlan, conditions::reason, labels,
    mover_result::MoverResult,
};

use crate::{
    destination::read_result,
    job::{self, MoverDefaults, MoverJobParams},
    volume,
};

/// The API group and kind a PVC's `dataSourceRef` names to be populated by Sluice.
pub const DATA_SOURCE_GROUP: &str = "sluice.dev";
/// See [`DATA_SOURCE_GROUP`].
pub const DATA_SOURCE_KIND: &str = "ReplicationDestination";

/// The annotation the scheduler sets on a `WaitForFirstConsumer` PVC once a Pod using it is
/// placed: the node the volume must be made on.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

/// A failed restore that retrying can fix (the network) is tried again after this long.
pub const RETRY_AFTER_TRANSIENT: Duration = Duration::from_secs(30);
/// A failed restore that needs a person (wrong password, no snapshot) is tried again after
/// this long, so a fixed Secret or a first backup is picked up without a Job storm.
pub const RETRY_AFTER_PERMANENT: Duration = Duration::from_secs(300);

/// Everything the decision looks at for one PVC.
#[derive(Clone, Copy, Debug)]
pub struct Observed<'a> {
    /// The user's PVC, whose `dataSourceRef` names the ReplicationDestination.
    pub claim: &'a PersistentVolumeClaim,
    /// The ReplicationDestination it names, if it exists.
    pub destination: Option<&'a ReplicationDestination>,
    /// Whether the PVC's StorageClass binds volumes only when a Pod using them is scheduled.
    pub waits_for_consumer: bool,
    /// The prime PVC, once made.
    pub prime: Option<&'a PersistentVolumeClaim>,
    /// The populate Job, once made.
    pub job: Option<&'a Job>,
    /// What the Job's mover reported, once it ended.
    pub result: Option<&'a MoverResult>,
}

/// How a PVC was filled, as recorded on it.
#[derive(Clone, Debug, PartialEq)]
pub struct Population {
    /// [`reason::SNAPSHOT_RESTORED`], [`reason::EMPTY_NO_SNAPSHOT`] or
    /// [`reason::EMPTY_NO_REPOSITORY`].
    pub reason: String,
    /// The full id of the snapshot restored.
    pub snapshot: Option<String>,
    /// The snapshot's time, RFC 3339.
    pub snapshot_time: Option<String>,
}

/// The `sluice.dev/Populated` condition a step leaves on the PVC.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    /// `True` once the PVC holds its data.
    pub populated: bool,
    /// A CamelCase reason from [`sluice_api::conditions::reason`].
    pub reason: String,
    /// What happened or what is awaited, for `kubectl describe pvc`.
    pub message: String,
}

/// The next step for a PVC.
#[derive(Clone, Debug, PartialEq)]
pub enum Next {
    /// Being deleted: garbage collection removes the prime PVC and the Job with it.
    Nothing,
    /// The PVC holds its volume: the prime PVC and the Job go, and the condition says what the
    /// volume holds.
    Finish(Condition),
    /// Nothing to do until something changes; the condition says what is awaited.
    Wait(Condition),
    /// The ReplicationDestination is gone: whatever a population made goes too, so no prime PVC
    /// or volume is left behind, and the PVC waits for one to be created.
    Abandon(Condition),
    /// Make the prime PVC.
    CreatePrime(Box<PersistentVolumeClaim>),
    /// Make the Job restoring into the prime PVC.
    CreateJob(Box<Job>),
    /// The restore failed: say why, and run it again (a new Job) from `retry_at`.
    Failed {
        /// Why, for the PVC's condition and event.
        condition: Condition,
        /// When the failed Job is deleted so the next one starts.
        retry_at: Timestamp,
    },
    /// The restore ended well: write on the PVC what it holds, before the volume moves.
    Record(Population),
    /// Point PersistentVolume `volume` (the prime's) at the PVC.
    Rebind {
        /// The PersistentVolume's name.
        volume: String,
    },
    /// A recorded population lost its prime PVC before the hand-over (someone deleted it):
    /// drop the record so the population starts over.
    Forget,
}

/// The ReplicationDestination a PVC asks Sluice to populate it from, if it does.
pub fn destination_name(claim: &PersistentVolumeClaim) -> Option<&str> {
    let source = claim.spec.as_ref()?.data_source_ref.as_ref()?;
    let ours =
        source.api_group.as_deref() == Some(DATA_SOURCE_GROUP) && source.kind == DATA_SOURCE_KIND;
    ours.then_some(source.name.as_str())
}

/// Name of the prime PVC of `claim`: fixed per PVC, so a restarted operator finds it.
pub fn prime_name(claim: &PersistentVolumeClaim) -> String {
    format!("sluice-prime-{}", claim.uid().unwrap_or_default())
}

/// Name of the populate Job of `claim` (63 characters at most, a Pod label's limit).
pub fn job_name(claim: &PersistentVolumeClaim) -> String {
    format!("sluice-populate-{}", claim.uid().unwrap_or_default())
}

/// What the PVC's annotations record of a population that ended well.
pub fn recorded(claim: &PersistentVolumeClaim) -> Option<Population> {
    let annotations = claim.metadata.annotations.as_ref()?;
    Some(Population {
        reason: annotations.get(labels::POPULATION)?.clone(),
        snapshot: annotations.get(labels::RESTORED_SNAPSHOT).cloned(),
        snapshot_time: annotations.get(labels::RESTORED_SNAPSHOT_TIME).cloned(),
    })
}

/// The step `observed` calls for, at `now`; `defaults` are the operator's mover settings.
pub fn next(observed: &Observed, defaults: &MoverDefaults, now: Timestamp) -> Next {
    let claim = observed.claim;
    let rd = destination_name(claim).unwrap_or_default();
    if claim.metadata.deletion_timestamp.is_some() {
        return Next::Nothing;
    }
    let record = recorded(claim);
    if claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_ref())
        .is_some()
    {
        return Next::Finish(finished(record.as_ref(), rd));
    }
    if let Some(record) = &record {
        let volume = observed
            .prime
            .and_then(|prime| prime.spec.as_ref()?.volume_name.clone());
        return match (observed.prime, volume) {
            (None, _) => Next::Forget,
            (Some(_), Some(volume)) => Next::Rebind { volume },
            (Some(_), None) => Next::Wait(waiting(
                reason::REBINDING,
                format!(
                    "{}; waiting for the prime PVC's volume",
                    summary(record, rd)
                ),
            )),
        };
    }
    let Some(destination) = observed.destination else {
        return Next::Abandon(waiting(
            reason::REPLICATION_DESTINATION_NOT_FOUND,
            format!(
                "ReplicationDestination {rd} not found in namespace {}; create it, or fix \
                 spec.dataSourceRef.name",
                claim.namespace().unwrap_or_default()
            ),
        ));
    };
    if observed.waits_for_consumer && selected_node(claim).is_none() {
        return Next::Wait(waiting(
            reason::WAITING_FOR_FIRST_CONSUMER,
            "the StorageClass binds volumes when their first Pod is scheduled; waiting for a Pod \
             that uses this PVC"
                .into(),
        ));
    }
    let Some(prime) = observed.prime else {
        return Next::CreatePrime(Box::new(prime_claim(claim)));
    };
    let Some(job) = observed.job else {
        return Next::CreateJob(Box::new(populate_job(destination, claim, defaults, now)));
    };
    let Some(result) = observed.result else {
        let name = job.name_any();
        return Next::Wait(if volume::is_bound(prime) {
            waiting(
                reason::MOVER_RUNNING,
                format!("Job {name} restores from ReplicationDestination {rd}"),
            )
        } else {
            waiting(
                reason::WAITING_FOR_PVC,
                format!(
                    "waiting for the prime PVC {} to be provisioned",
                    prime.name_any()
                ),
            )
        });
    };
    let result = read_result(destination, result.clone());
    if let Some(class) = result.error_class {
        let after = if class.is_retryable() {
            RETRY_AFTER_TRANSIENT
        } else {
            RETRY_AFTER_PERMANENT
        };
        let ended = job_ended(job).unwrap_or(now);
        let retry_at = ended
            .checked_add(jiff::SignedDuration::try_from(after).unwrap_or_default())
            .unwrap_or(ended);
        return Next::Failed {
            condition: waiting(
                class.condition_reason(),
                format!(
                    "restoring from ReplicationDestination {rd} failed: {}; trying again at {}",
                    result
                        .message
                        .as_deref()
                        .unwrap_or("the mover gave no reason"),
                    retry_at.round(jiff::Unit::Second).unwrap_or(retry_at)
                ),
            ),
            retry_at,
        };
    }
    Next::Record(population(&result))
}

/// What a successful run put into the volume.
pub fn population(result: &MoverResult) -> Population {
    let reason = match (&result.snapshot_id, result.repository_missing) {
        (Some(_), _) => reason::SNAPSHOT_RESTORED,
        (None, true) => reason::EMPTY_NO_REPOSITORY,
        (None, false) => reason::EMPTY_NO_SNAPSHOT,
    };
    Population {
        reason: reason.into(),
        snapshot: result.snapshot_id.clone(),
        snapshot_time: result.snapshot_time.clone(),
    }
}

/// The condition of a PVC that holds its volume.
fn finished(record: Option<&Population>, rd: &str) -> Condition {
    match record {
        Some(record) => Condition {
            populated: true,
            reason: record.reason.clone(),
            message: summary(record, rd),
        },
        // Bound before Sluice filled it: the user's own binding (a pre-bound volumeName).
        None => Condition {
            populated: false,
            reason: reason::REBINDING.into(),
            message: "the PVC was bound to a volume Sluice did not populate".into(),
        },
    }
}

/// One line on what a population put into the volume.
fn summary(record: &Population, rd: &str) -> String {
    match (record.reason.as_str(), &record.snapshot) {
        (_, Some(id)) => format!(
            "restored snapshot {} ({}) of ReplicationDestination {rd}",
            &id[..id.len().min(8)],
            record.snapshot_time.as_deref().unwrap_or("time unknown")
        ),
        (reason::EMPTY_NO_REPOSITORY, None) => format!(
            "left empty: ReplicationDestination {rd}'s repository does not exist yet \
             (onMissingSnapshot: Empty)"
        ),
        _ => format!(
            "left empty: no snapshot of ReplicationDestination {rd} matched \
             (onMissingSnapshot: Empty)"
        ),
    }
}

fn waiting(reason: &str, message: String) -> Condition {
    Condition {
        populated: false,
        reason: reason.into(),
        message,
    }
}

fn selected_node(claim: &PersistentVolumeClaim) -> Option<&String> {
    claim.metadata.annotations.as_ref()?.get(SELECTED_NODE)
}

/// When a finished Job ended: its completion, or the time its last condition changed.
fn job_ended(job: &Job) -> Option<Timestamp> {
    let status = job.status.as_ref()?;
    status
        .completion_time
        .as_ref()
        .or_else(|| {
            status
                .conditions
                .as_ref()?
                .iter()
                .filter_map(|c| c.last_transition_time.as_ref())
                .max_by_key(|t| t.0)
        })
        .map(|t| t.0)
}

/// Who owns a population's prime PVC and Job: the user's PVC, so deleting it removes them.
/// No `blockOwnerDeletion`: the PVC's deletion must never wait on them.
fn owner(claim: &PersistentVolumeClaim) -> OwnerReference {
    OwnerReference {
        block_owner_deletion: None,
        ..claim
            .controller_owner_ref(&())
            .expect("a stored PVC has a name and uid")
    }
}

fn meta(claim: &PersistentVolumeClaim, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: claim.namespace(),
        labels: Some(
            [
                (labels::MANAGED_BY, labels::MANAGED_BY_VALUE.to_string()),
                (labels::POPULATES, claim.uid().unwrap_or_default()),
            ]
            .map(|(k, v)| (k.to_string(), v))
            .into(),
        ),
        owner_references: Some(vec![owner(claim)]),
        ..Default::default()
    }
}

/// The prime PVC: the user's PVC's shape (size, access modes, class, volume mode) without its
/// data source, on the node the scheduler picked for a `WaitForFirstConsumer` class.
pub fn prime_claim(claim: &PersistentVolumeClaim) -> PersistentVolumeClaim {
    let spec = claim.spec.clone().unwrap_or_default();
    let mut metadata = meta(claim, prime_name(claim));
    if let Some(node) = selected_node(claim) {
        metadata.annotations = Some([(SELECTED_NODE.to_string(), node.clone())].into());
    }
    PersistentVolumeClaim {
        metadata,
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: spec.access_modes,
            resources: spec.resources,
            storage_class_name: spec.storage_class_name,
            volume_mode: spec.volume_mode,
            volume_attributes_class_name: spec.volume_attributes_class_name,
            ..Default::default()
        }),
        status: None,
    }
}

/// The Job restoring the ReplicationDestination's pick into the prime PVC: the restore Job of
/// the ReplicationDestination itself, mounted on the prime PVC and owned by the user's PVC.
pub fn populate_job(
    destination: &ReplicationDestination,
    claim: &PersistentVolumeClaim,
    defaults: &MoverDefaults,
    now: Timestamp,
) -> Job {
    let plan = SyncPlan {
        actions: vec![SyncAction::Restore],
        started_at: Time(now),
        job_name: job_name(claim),
        manual: None,
        unlock: None,
        repository: None,
    };
    let params = MoverJobParams {
        defaults: defaults.clone(),
        owner: owner(claim),
        owner_label: (labels::POPULATES, claim.uid().unwrap_or_default()),
        claim: prime_name(claim),
        node_name: None,
        block: volume::is_block(claim),
        scratch: None,
    };
    job::destination_job(destination, &plan, &params)
}

#[cfg(test)]
mod tests;
