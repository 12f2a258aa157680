//! The ReplicationDestination controller: ensure the target PVC, restore into it with a mover
//! Job, then publish the result as `status.latestImage`.
//!
//! The steps are the shared state machine's ([`crate::decide`]). What is a restore's own: the
//! target (a new PVC unless `destinationPVC` names one), reading a run that found no snapshot as
//! a failure (unless `onMissingSnapshot: Empty`, so a GitOps pipeline waiting on `latestImage`
//! never starts an application on an empty volume by accident), the published image (the PVC,
//! or a VolumeSnapshot of it), and what a finished restore records.

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{PersistentVolumeClaim, TypedLocalObjectReference},
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use sluice_api::{
    DestinationCopyMethod, OnMissingSnapshot, ReplicationDestination, ReplicationDestinationStatus,
    RestoredSnapshot, SyncPlan, VolumeMode,
    mover_result::{ErrorClass, MoverResult},
};
use tokio::sync::mpsc;

use crate::{
    cache::Feed,
    context::{Context, Result},
    controller,
    decide::{Mount, NewObject, Outcome, Progress, Step, Untriggered, Verdict},
    job::{self, MoverJobParams, RepositoryAccess},
    plan,
    reconcile::{Finished, Kind, Profile, Recorded, Scope, Temporary},
    unseen::Unseen,
    volume::{self, Owner, PvcShape, VolumeSnapshot},
};

/// Runs the controller until the stream ends.
pub async fn run(ctx: Arc<Context>, feed: Feed, woken: mpsc::Receiver<(String, String)>) {
    controller::run::<ReplicationDestination>(ctx, feed, woken).await;
}

/// Whether `destination` has no target of its own (neither `destinationPVC` nor `capacity`):
/// it restores only into the PVCs that name it in `dataSourceRef`, never by itself.
pub fn serves_populators_only(destination: &ReplicationDestination) -> bool {
    let restic = &destination.spec.restic;
    restic.destination_pvc.is_none() && restic.capacity.is_none()
}

/// Name of the PVC a destination without `destinationPVC` restores into.
pub fn target_pvc_name(destination: &ReplicationDestination) -> String {
    destination
        .spec
        .restic
        .destination_pvc
        .clone()
        .unwrap_or_else(|| format!("sluice-dst-{}", destination.name_any()))
}

impl Kind for ReplicationDestination {
    const PROFILE: Profile = Profile::RESTORE;

    fn untriggered(&self) -> Untriggered {
        if serves_populators_only(self) {
            Untriggered::Never
        } else {
            Self::PROFILE.untriggered
        }
    }

    fn plan(&self, now: Timestamp) -> SyncPlan {
        plan::destination_plan(self, now)
    }

    fn describe(&self, _: &SyncPlan) -> String {
        format!("restore into PVC {}", target_pvc_name(self))
    }

    async fn prepare(&self, _: &SyncPlan, scope: &Scope) -> Result<Step<Mount>> {
        let target = scope.owned.claim(&scope.namespace, &target_pvc_name(self));
        Ok(target_step(self, &scope.owner, target.as_deref()))
    }

    fn mounted_claim(&self, _: &SyncPlan) -> Option<(String, &'static str, &'static str)> {
        // The user's own destinationPVC is theirs to bind.
        let made = self.spec.restic.destination_pvc.is_none();
        made.then(|| (target_pvc_name(self), "the restore target", "Restore"))
    }

    async fn conclude(
        &self,
        plan: &SyncPlan,
        result: MoverResult,
        scope: &Scope,
    ) -> Result<Progress> {
        let result = read_result(self, result);
        let publish = match (&result.error_class, self.spec.restic.copy_method) {
            (Some(_), _) => Step::Ready(None),
            (None, DestinationCopyMethod::Direct) => publish_step(self, plan, &scope.owner, None),
            (None, DestinationCopyMethod::Snapshot) => {
                let snapshot = scope.owned.snapshot(&scope.namespace, &plan.job_name);
                publish_step(self, plan, &scope.owner, snapshot.as_deref())
            }
        };
        Ok(Progress::Ended { result, publish })
    }

    fn job(&self, plan: &SyncPlan, params: &MoverJobParams) -> Job {
        job::destination_job(self, plan, params)
    }

    fn access(&self) -> RepositoryAccess<'_> {
        RepositoryAccess::of_destination(self)
    }

    fn record(&self, status: &mut ReplicationDestinationStatus, finished: &Finished) -> Recorded {
        record_restore(status, finished.outcome, finished.now)
    }

    fn written(ctx: &Context) -> &Unseen<Self> {
        &ctx.written.destinations
    }
}

/// What the restore target needs before the Job: nothing when `destinationPVC` names the
/// user's claim or the new one exists, else creating it.
pub fn target_step(
    destination: &ReplicationDestination,
    owner: &Owner,
    target: Option<&PersistentVolumeClaim>,
) -> Step<Mount> {
    let name = target_pvc_name(destination);
    let restic = &destination.spec.restic;
    let mode = restic.volume_mode.unwrap_or_default();
    if restic.destination_pvc.is_none() && target.is_none() {
        let shape = PvcShape {
            volume_mode: (mode == VolumeMode::Block).then(|| mode.as_str().to_string()),
            ..PvcShape::requested(
                restic.capacity.as_ref(),
                restic.storage_class_name.as_ref(),
                restic.access_modes.as_deref(),
            )
        };
        let target = volume::pvc(owner.meta(&name), shape, None);
        return Step::Create(NewObject::Claim(Box::new(target)));
    }
    Step::Ready(Mount {
        claim: name,
        node: None,
        block: mode == VolumeMode::Block,
        scratch: None,
    })
}

/// A successful run that restored no snapshot is a failure unless `onMissingSnapshot: Empty`
/// allows publishing the volume as it is.
pub fn read_result(destination: &ReplicationDestination, result: MoverResult) -> MoverResult {
    let allowed = destination.spec.restic.on_missing_snapshot == OnMissingSnapshot::Empty;
    if result.error_class.is_none() && result.snapshot_id.is_none() && !allowed {
        return MoverResult {
            error_class: Some(ErrorClass::NoSnapshot),
            message: Some("no snapshot matched and the mover restored nothing".into()),
            ..result
        };
    }
    result
}

/// What publishing a successful restore needs: the target PVC itself (`Direct`), or a
/// VolumeSnapshot of it, created and then awaited until ready (`Snapshot`).
pub fn publish_step(
    destination: &ReplicationDestination,
    plan: &SyncPlan,
    owner: &Owner,
    snapshot: Option<&VolumeSnapshot>,
) -> Step<Option<TypedLocalObjectReference>> {
    let target = target_pvc_name(destination);
    if destination.spec.restic.copy_method == DestinationCopyMethod::Direct {
        return Step::Ready(Some(TypedLocalObjectReference {
            api_group: None,
            kind: "PersistentVolumeClaim".into(),
            name: target,
        }));
    }
    let name = &plan.job_name;
    let Some(snapshot) = snapshot else {
        return Step::Create(NewObject::Snapshot(Box::new(volume::volume_snapshot(
            owner.meta(name),
            &target,
            destination
                .spec
                .restic
                .volume_snapshot_class_name
                .as_deref(),
        ))));
    };
    if volume::snapshot_ready(snapshot).is_none() {
        let of = format!("of the restored PVC {target}");
        return Step::Wait(volume::snapshot_not_ready(snapshot, name, &of));
    }
    Step::Ready(Some(TypedLocalObjectReference {
        api_group: Some(volume::SNAPSHOT_GROUP.into()),
        kind: "VolumeSnapshot".into(),
        name: name.clone(),
    }))
}

/// Records a finished restore's own fields: on success the snapshot restored and the new
/// image, which replaces the previous one only now that it is ready (a previous VolumeSnapshot
/// is deleted). The fields both kinds share are [`crate::status::transition`]'s.
pub fn record_restore(
    status: &mut ReplicationDestinationStatus,
    outcome: &Outcome,
    now: Timestamp,
) -> Recorded {
    if !matches!(outcome.verdict, Verdict::Succeeded { .. }) {
        return Recorded::default();
    }
    let result = &outcome.result;
    status.restored_snapshot = result.snapshot_id.clone().map(|id| RestoredSnapshot {
        id,
        time: Time(
            result
                .snapshot_time
                .as_deref()
                .and_then(|t| t.parse().ok())
                .unwrap_or(now),
        ),
    });
    let previous = std::mem::replace(&mut status.latest_image, outcome.image.clone());
    let temporary = previous
        .filter(|previous| {
            previous.kind == "VolumeSnapshot"
                && outcome
                    .image
                    .as_ref()
                    .is_none_or(|new| new.name != previous.name)
        })
        .map(|previous| Temporary::Snapshot(previous.name))
        .into_iter()
        .collect();
    let summary = match &status.restored_snapshot {
        Some(snapshot) => format!(
            "restored snapshot {}",
            &snapshot.id[..snapshot.id.len().min(8)]
        ),
        None if result.repository_missing => {
            "no repository yet; published the volume empty (onMissingSnapshot: Empty)".to_string()
        }
        None => {
            "no snapshot matched; published the volume empty (onMissingSnapshot: Empty)".to_string()
        }
    };
    Recorded {
        summary,
        temporary,
        warning: None,
    }
}

#[cfg(test)]
mod tests;
