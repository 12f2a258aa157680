//! The ReplicationSource controller: on each trigger, take a point-in-time copy of the PVC, run
//! a backup Job over it, record the result and clean up.
//!
//! The steps are the shared state machine's ([`crate::decide`]); a sync's progress is kept in
//! `status.syncPlan`, so an operator restart mid-sync resumes where it was. What is a backup's
//! own: the copy (`Snapshot`: a VolumeSnapshot, then a PVC from it; `Clone`: a PVC with the
//! source as `dataSource`; `Direct`: the live PVC, on its Pod's node), and what a finished
//! backup records (its numbers, repository maintenance, the `unlock` value it answered).

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{PersistentVolumeClaim, Pod},
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Api, ResourceExt, api::ListParams};
use sluice_api::{
    CopyMethod, LastSync, ReplicationSource, ReplicationSourceStatus, ResticSourceStatus,
    SyncAction, SyncPlan, Verification, VerifySpec,
    conditions::reason,
    mover_result::{ErrorClass, MoverResult, Verified},
};
use tokio::sync::mpsc;

use crate::{
    cache::Feed,
    context::{Context, Result},
    controller,
    decide::{Mount, NewObject, Outcome, Progress, Step, Verdict},
    job::{self, MoverJobParams, RepositoryAccess},
    metrics::Metrics,
    plan,
    reconcile::{Finished, Kind, Profile, Recorded, Scope, Temporary},
    status,
    unseen::Unseen,
    volume::{self, Owner, PvcShape, VolumeSnapshot},
};

/// Runs the controller until the stream ends (shutdown).
pub async fn run(ctx: Arc<Context>, feed: Feed, woken: mpsc::Receiver<(String, String)>) {
    controller::run::<ReplicationSource>(ctx, feed, woken).await;
}

impl Kind for ReplicationSource {
    const PROFILE: Profile = Profile::BACKUP;

    fn invalid(&self) -> Option<String> {
        plan::verify_schedule(self)?
            .err()
            .map(|error| error.to_string())
    }

    fn plan(&self, now: Timestamp) -> SyncPlan {
        plan::source_plan(self, now)
    }

    fn describe(&self, plan: &SyncPlan) -> String {
        plan::actions_env(&plan.actions)
    }

    async fn prepare(&self, plan: &SyncPlan, scope: &Scope) -> Result<Step<Mount>> {
        let claims: Api<PersistentVolumeClaim> = scope.api();
        let seen = match self.spec.restic.copy_method {
            CopyMethod::Direct => {
                let pods: Api<Pod> = scope.api();
                let live = ListParams::default().fields(SCHEDULED_AND_LIVE);
                let pods = pods.list(&live).await?.items;
                CopySeen {
                    source: claims.get_opt(&self.spec.source_pvc).await?,
                    node: volume::node_mounting(&pods, &self.spec.source_pvc),
                    ..CopySeen::default()
                }
            }
            CopyMethod::Clone | CopyMethod::Snapshot => CopySeen {
                // The user's claim is not Sluice's, so not watched.
                source: claims.get_opt(&self.spec.source_pvc).await?,
                snapshot: scope
                    .owned
                    .snapshot(&scope.namespace, &plan.job_name)
                    .as_deref()
                    .cloned(),
                copy: scope
                    .owned
                    .claim(&scope.namespace, &plan.job_name)
                    .as_deref()
                    .cloned(),
                node: None,
            },
        };
        Ok(copy_step(self, plan, &scope.owner, &seen))
    }

    fn mounted_claim(&self, plan: &SyncPlan) -> Option<(String, &'static str, &'static str)> {
        match self.spec.restic.copy_method {
            // The live claim is bound: its Pod uses it.
            CopyMethod::Direct => None,
            CopyMethod::Clone | CopyMethod::Snapshot => {
                Some((plan.job_name.clone(), "the point-in-time copy", "Copy"))
            }
        }
    }

    async fn conclude(&self, _: &SyncPlan, result: MoverResult, _: &Scope) -> Result<Progress> {
        // Nothing to publish: the snapshot is in the repository.
        Ok(Progress::Ended {
            result,
            publish: Step::Ready(None),
        })
    }

    fn job(&self, plan: &SyncPlan, params: &MoverJobParams) -> Job {
        job::source_job(self, plan, params)
    }

    fn access(&self) -> RepositoryAccess<'_> {
        RepositoryAccess::of_source(self)
    }

    fn record(&self, status: &mut ReplicationSourceStatus, finished: &Finished) -> Recorded {
        let (plan, outcome) = (finished.plan, finished.outcome);
        record_backup(status, plan, outcome, finished.now);
        let verified = outcome.result.verification.as_ref();
        if let Some(verified) = verified {
            status.verification = Some(verification(verified, finished.now));
        }
        let warning = status
            .verification
            .as_ref()
            .filter(|verification| verified.is_some() && !verification.passed())
            .map(|verification| {
                (
                    reason::VERIFICATION_FAILED,
                    verification_message(verification),
                )
            });
        let name = plan.job_name.clone();
        let temporary = match self.spec.restic.copy_method {
            CopyMethod::Direct => Vec::new(),
            CopyMethod::Clone => vec![Temporary::Claim(name)],
            CopyMethod::Snapshot => vec![Temporary::Claim(name.clone()), Temporary::Snapshot(name)],
        };
        Recorded {
            summary: summary(&outcome.result),
            temporary,
            warning,
        }
    }

    fn hold_conditions(
        &self,
        status: &mut ReplicationSourceStatus,
        generation: Option<i64>,
        now: Timestamp,
    ) {
        if let Some(verification) = status.verification.as_ref().filter(|v| !v.passed()) {
            let message = verification_message(verification);
            status::verification_failed(&mut status.sync.conditions, &message, generation, now);
        }
    }

    fn report(&self, status: &ReplicationSourceStatus, metrics: &Metrics) {
        let prune_days = self
            .spec
            .restic
            .prune_interval_days
            .unwrap_or(plan::DEFAULT_PRUNE_INTERVAL_DAYS);
        let last_pruned = status
            .restic
            .as_ref()
            .and_then(|restic| restic.last_pruned.as_ref());
        metrics.prune_state(
            &controller::object_labels(self),
            last_pruned.map(|t| t.0.as_second() as f64),
            i64::from(prune_days) * 86_400,
        );
        if let Some(verification) = &status.verification {
            metrics.verification(
                &controller::object_labels(self),
                verification.time.0.as_second() as f64,
                verification.files_mismatched,
            );
        }
    }

    fn written(ctx: &Context) -> &Unseen<Self> {
        &ctx.written.sources
    }
}

/// The Pods [`volume::node_mounting`] can find a `Direct` source's node among: scheduled and
/// not finished. Selected by the API server, so a sync does not read every Pod of its namespace,
/// the Pending movers of every other sync in flight included (thousands in a namespace of many
/// sources when a node or the object store stalls).
const SCHEDULED_AND_LIVE: &str = "spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed";

/// The objects a backup's point-in-time copy is made of, as observed before its Job exists.
#[derive(Clone, Debug, Default)]
pub struct CopySeen {
    /// The source PVC.
    pub source: Option<PersistentVolumeClaim>,
    /// The VolumeSnapshot named after the sync (`Snapshot`).
    pub snapshot: Option<VolumeSnapshot>,
    /// The copy PVC named after the sync (`Clone`, `Snapshot`).
    pub copy: Option<PersistentVolumeClaim>,
    /// The node of the Pod that mounts the source (`Direct`).
    pub node: Option<String>,
}

/// What the copy of `plan` needs next: the claim to mount once it exists, else what to create
/// or wait for. A missing source PVC fails the sync (retried: the PVC may be on its way).
pub fn copy_step(
    source: &ReplicationSource,
    plan: &SyncPlan,
    owner: &Owner,
    seen: &CopySeen,
) -> Step<Mount> {
    let restic = &source.spec.restic;
    let name = &plan.job_name;
    let block = seen.source.as_ref().is_some_and(volume::is_block);
    let verify = restic
        .verify
        .as_ref()
        .filter(|_| plan.actions.contains(&SyncAction::Verify));
    let scratch = match (verify, &seen.source) {
        (None, _) => None,
        (Some(verify), Some(source_pvc)) => Some(Box::new(scratch_shape(verify, source_pvc))),
        (Some(_), None) => return source_not_found(source),
    };
    if restic.copy_method == CopyMethod::Direct {
        return Step::Ready(Mount {
            claim: source.spec.source_pvc.clone(),
            node: seen.node.clone(),
            block,
            scratch,
        });
    }
    let Some(source_pvc) = &seen.source else {
        return source_not_found(source);
    };
    let requested = PvcShape::requested(
        restic.capacity.as_ref(),
        restic.storage_class_name.as_ref(),
        restic.access_modes.as_deref(),
    );
    let shape = requested.or_from(source_pvc);
    let copy = if restic.copy_method == CopyMethod::Clone {
        volume::clone_pvc(owner.meta(name), &source.spec.source_pvc, shape)
    } else {
        let Some(snapshot) = &seen.snapshot else {
            return Step::Create(NewObject::Snapshot(Box::new(volume::volume_snapshot(
                owner.meta(name),
                &source.spec.source_pvc,
                restic.volume_snapshot_class_name.as_deref(),
            ))));
        };
        let Some(restore_size) = volume::snapshot_ready(snapshot) else {
            let of = format!("of PVC {}", source.spec.source_pvc);
            return Step::Wait(volume::snapshot_not_ready(snapshot, name, &of));
        };
        // The snapshot's restoreSize, not the source's request, sizes the copy unless
        // spec.restic.capacity says otherwise.
        let shape = PvcShape {
            capacity: restic.capacity.clone(),
            ..shape
        };
        volume::pvc_from_snapshot(owner.meta(name), name, restore_size, shape)
    };
    match &seen.copy {
        None => Step::Create(NewObject::Claim(Box::new(copy))),
        Some(_) => Step::Ready(Mount {
            claim: name.clone(),
            node: None,
            block,
            scratch,
        }),
    }
}

/// A missing source PVC fails the sync (retried: the PVC may be on its way).
fn source_not_found(source: &ReplicationSource) -> Step<Mount> {
    Step::Fail {
        class: ErrorClass::Internal,
        reason: reason::SOURCE_PVC_NOT_FOUND,
        message: format!(
            "source PVC {}/{} not found; create it or fix spec.sourcePVC",
            source.namespace().unwrap_or_default(),
            source.spec.source_pvc
        ),
    }
}

/// The scratch volume of a restore test: `verify.capacity` and `verify.storageClassName`, else
/// the source PVC's, one writer, a file system whatever the source is (a Block volume's image
/// restores as one sparse file).
pub fn scratch_shape(verify: &VerifySpec, source_pvc: &PersistentVolumeClaim) -> PvcShape {
    let requested = PvcShape::requested(
        verify.capacity.as_ref(),
        verify.storage_class_name.as_ref(),
        None,
    );
    PvcShape {
        access_modes: Some(vec!["ReadWriteOnce".into()]),
        volume_mode: Some("Filesystem".into()),
        ..requested.or_from(source_pvc)
    }
}

/// Records a finished backup's own fields: maintenance stamps for what really ran (even when a
/// later step failed: the repository was pruned), and on success the `unlock` value it answered
/// and its numbers. The fields both kinds share are [`crate::status::transition`]'s.
pub fn record_backup(
    status: &mut ReplicationSourceStatus,
    plan: &SyncPlan,
    outcome: &Outcome,
    finished: Timestamp,
) {
    let result = &outcome.result;
    let restic = status
        .restic
        .get_or_insert_with(ResticSourceStatus::default);
    if result.pruned {
        restic.last_pruned = Some(Time(finished));
    }
    if result.checked {
        restic.last_checked = Some(Time(finished));
    }
    if !matches!(outcome.verdict, Verdict::Succeeded { .. }) {
        return;
    }
    if plan.unlock.is_some() {
        restic.last_unlocked = plan.unlock.clone();
    }
    if let Some(id) = &result.snapshot_id {
        status.last_sync = Some(LastSync {
            snapshot_id: id.clone(),
            snapshot_time: result
                .snapshot_time
                .as_deref()
                .and_then(|t| t.parse().ok())
                .map(Time),
            files_new: result.files_new,
            files_changed: result.files_changed,
            files_unmodified: result.files_unmodified,
            bytes_added: result.bytes_added,
            total_bytes: result.total_bytes,
        });
    }
}

/// One line for a successful backup's condition and event, with its restore test's verdict.
fn summary(result: &MoverResult) -> String {
    let backup = match &result.snapshot_id {
        Some(id) => format!(
            "snapshot {}: {} new, {} changed files, {} bytes added",
            short(id),
            result.files_new,
            result.files_changed,
            result.bytes_added
        ),
        None => "sync finished".to_string(),
    };
    match &result.verification {
        None => backup,
        Some(v) if v.files_mismatched == 0 => format!(
            "{backup}; restore test passed: {} files, {} bytes read back as recorded",
            v.files_checked, v.bytes_checked
        ),
        Some(v) => format!(
            "{backup}; restore test FAILED: {} of {} files did not restore as recorded",
            v.files_mismatched, v.files_checked
        ),
    }
}

/// The first eight hex digits of a snapshot id, as restic shows it.
fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}

/// What `status.verification` records of a restore test that finished at `now`.
pub fn verification(verified: &Verified, now: Timestamp) -> Verification {
    Verification {
        time: Time(now),
        snapshot_id: verified.snapshot_id.clone(),
        files_checked: verified.files_checked,
        bytes_checked: verified.bytes_checked,
        files_mismatched: verified.files_mismatched,
        mismatches: verified.mismatches.clone(),
    }
}

/// The Degraded message and Warning event of a failed restore test: the snapshot, how much did
/// not restore, the first mismatch, and what to do.
pub fn verification_message(verification: &Verification) -> String {
    let first = verification
        .mismatches
        .first()
        .map(|line| format!(" (first: {line})"))
        .unwrap_or_default();
    format!(
        "restore test of snapshot {} at {}: {} of {} files did not restore as recorded{first}; \
         find the damage with `restic check --read-data`, repair it with `restic repair packs` \
         and `restic repair snapshots`, and do not rely on this snapshot until a restore test \
         passes",
        short(&verification.snapshot_id),
        verification.time.0,
        verification.files_mismatched,
        verification.files_checked,
    )
}

#[cfg(test)]
mod tests;
