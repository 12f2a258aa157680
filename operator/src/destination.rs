//! The ReplicationDestination controller: ensure the target PVC, restore into it with a mover
//! Job, then publish the result as `status.latestImage`.
//!
//! A restore that finds no matching snapshot publishes nothing (unless `onMissingSnapshot:
//! Empty`), so a GitOps pipeline waiting on `latestImage` never starts an application on an
//! empty volume by accident.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use jiff::Timestamp;
use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{PersistentVolumeClaim, Pod, Secret, TypedLocalObjectReference},
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, DynamicObject, ListParams},
    runtime::{controller::Action, events::EventType},
};
use sluice_api::{
    DestinationCopyMethod, MoverOutcome, MoverStatus, OnMissingSnapshot, ReplicationDestination,
    ReplicationDestinationStatus, RestoredSnapshot, SyncPlan,
    conditions::{self, reason},
    labels,
    mover_result::{ErrorClass, MoverResult},
};

use crate::{
    backoff::{self, Retry},
    context::{Context, Result},
    controller::{self, create_or_existing, ignore_not_found, is_current},
    job::{self, MoverJobParams},
    mover, plan,
    schedule::Schedule,
    secret, status,
    volume::{self, PvcShape},
};

/// Kind name used in metrics and logs.
pub const KIND: &str = "ReplicationDestination";

const POLL: Duration = Duration::from_secs(10);

/// Runs the controller until the stream ends.
pub async fn run(ctx: Arc<Context>) {
    controller::run::<ReplicationDestination, _, _>(ctx, reconcile).await;
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

/// Takes the next step for one ReplicationDestination.
pub async fn reconcile(
    destination: Arc<ReplicationDestination>,
    ctx: Arc<Context>,
) -> Result<Action> {
    ctx.metrics.reconciled(KIND);
    let now = Timestamp::now();
    let mut status = destination.status.clone().unwrap_or_default();
    let action = match status.sync_plan.clone() {
        Some(plan) => continue_restore(&destination, plan, &mut status, &ctx, now).await?,
        None => idle(&destination, &mut status, &ctx, now).await?,
    };
    controller::write_status(
        &ctx,
        destination.as_ref(),
        destination.status.as_ref(),
        &status,
    )
    .await?;
    Ok(action)
}

async fn idle(
    destination: &ReplicationDestination,
    status: &mut ReplicationDestinationStatus,
    ctx: &Context,
    now: Timestamp,
) -> Result<Action> {
    let generation = destination.metadata.generation;
    if destination.spec.paused {
        status::waiting(
            &mut status.conditions,
            reason::PAUSED,
            "spec.paused is set",
            generation,
            now,
        );
        return Ok(Action::await_change());
    }
    let namespace = destination.namespace().unwrap_or_default();
    let restic = &destination.spec.restic;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let trigger = destination.spec.trigger.clone().unwrap_or_default();
    let failed = status.consecutive_failures.unwrap_or(0) > 0;
    let retry_due = failed && status.next_sync_time.as_ref().is_some_and(|t| t.0 <= now);
    if failed && !retry_due && status.next_sync_time.is_some() {
        let next = status.next_sync_time.as_ref().map_or(now, |t| t.0);
        return Ok(Action::requeue(
            Duration::try_from(next.duration_since(now)).unwrap_or_default(),
        ));
    }
    let manual_due = trigger.manual.is_some() && trigger.manual != status.last_manual_sync;
    let schedule_due = match trigger.schedule.as_deref() {
        None => None,
        Some(expr) => {
            let schedule = Schedule::parse(expr, trigger.time_zone.as_deref())
                .map_err(|e| kube::Error::Service(e.to_string().into()))?;
            let reference = status
                .last_sync_start_time
                .as_ref()
                .or(destination.metadata.creation_timestamp.as_ref())
                .map_or(now, |t| t.0);
            Some(
                schedule
                    .due(reference, now)
                    .map_err(|e| kube::Error::Service(e.to_string().into()))?,
            )
        }
    };
    // Without a trigger, restore once per spec generation.
    let spec_due = trigger.schedule.is_none()
        && trigger.manual.is_none()
        && status.observed_generation != generation;
    let secret_changed = match secrets.get_opt(&restic.repository).await? {
        Some(secret) => secret::last_modified(&secret)
            .zip(status.last_sync_start_time.as_ref())
            .is_some_and(|(modified, attempt)| modified > attempt.0),
        None => false,
    };
    // After a failure the same Job cannot fix, only a spec or Secret change starts another.
    let blocked = failed && status.next_sync_time.is_none();
    let degraded_generation = status::condition(&status.conditions, conditions::DEGRADED)
        .and_then(|c| c.observed_generation);
    if blocked && degraded_generation == generation && !secret_changed {
        return Ok(Action::requeue(secret::RECHECK));
    }
    let unblocked = blocked;
    let due = retry_due
        || manual_due
        || spec_due
        || unblocked
        || schedule_due.as_ref().is_some_and(|d| d.now);
    if !due {
        if let Some(next) = schedule_due.as_ref().map(|d| d.next) {
            status.next_sync_time = Some(Time(next));
            status::waiting(
                &mut status.conditions,
                reason::WAITING_FOR_SCHEDULE,
                &format!("next restore at {next}"),
                generation,
                now,
            );
            return Ok(Action::requeue(
                Duration::try_from(next.duration_since(now)).unwrap_or_default(),
            ));
        }
        if !failed {
            status::waiting(
                &mut status.conditions,
                reason::WAITING_FOR_MANUAL,
                "waiting for spec.trigger.manual or a spec change",
                generation,
                now,
            );
            return Ok(Action::await_change());
        }
        // Blocked on a permanent failure: look at the Secret again later.
        return Ok(Action::requeue(secret::RECHECK));
    }

    let secret = secrets.get_opt(&restic.repository).await?;
    let missing = secret.as_ref().map(secret::missing_keys);
    if secret.is_none() || missing.as_ref().is_some_and(|m| !m.is_empty()) {
        let message = secret::invalid_message(
            &namespace,
            &restic.repository,
            missing.as_deref().unwrap_or_default(),
        );
        status.last_sync_start_time = Some(Time(now));
        let failures = status.consecutive_failures.unwrap_or(0) + 1;
        status.consecutive_failures = Some(failures);
        status.observed_generation = generation;
        let failure = controller::Failure {
            reason: reason::SECRET_INVALID,
            message,
            action: "Validate",
            retry: Retry::WaitForChange,
            failures: failures as u32,
        };
        controller::report_failure(
            ctx,
            destination,
            failure,
            &mut status.conditions,
            &mut status.next_sync_time,
            now,
        )
        .await;
        return Ok(Action::requeue(secret::RECHECK));
    }

    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
    let target = target_pvc_name(destination);
    if restic.destination_pvc.is_none() && pvcs.get_opt(&target).await?.is_none() {
        let owner = destination
            .controller_owner_ref(&())
            .expect("a stored object has a name and uid");
        let shape = PvcShape {
            capacity: restic.capacity.clone(),
            storage_class: restic.storage_class_name.clone(),
            access_modes: restic
                .access_modes
                .as_ref()
                .map(|modes| modes.iter().map(|m| m.as_str().to_string()).collect()),
        };
        create_or_existing(
            &pvcs,
            &volume::pvc(
                volume::owned_meta(&target, &owned_labels(destination), &owner),
                shape,
                None,
            ),
        )
        .await?;
    }

    if !is_current(destination, &ctx.client).await? {
        // The cache may be behind a restore that just started or ended; decide on a current copy.
        *status = destination.status.clone().unwrap_or_default();
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let plan = plan::destination_plan(destination, now);
    tracing::info!(
        namespace = %namespace,
        name = %destination.name_any(),
        job = %plan.job_name,
        "restore started"
    );
    status.last_sync_start_time = Some(plan.started_at.clone());
    status.sync_plan = Some(plan.clone());
    status::synchronizing(
        &mut status.conditions,
        reason::MOVER_RUNNING,
        &format!("restore {} started", plan.job_name),
        generation,
        now,
    );
    ctx.event(
        destination,
        EventType::Normal,
        "RestoreStarted",
        "Restore",
        format!("started {} into PVC {target}", plan.job_name),
    )
    .await;
    Ok(Action::requeue(Duration::from_secs(1)))
}

fn owned_labels(destination: &ReplicationDestination) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            labels::MANAGED_BY.to_string(),
            labels::MANAGED_BY_VALUE.to_string(),
        ),
        (
            labels::REPLICATION_DESTINATION.to_string(),
            destination.name_any(),
        ),
    ])
}

async fn continue_restore(
    destination: &ReplicationDestination,
    plan: SyncPlan,
    status: &mut ReplicationDestinationStatus,
    ctx: &Context,
    now: Timestamp,
) -> Result<Action> {
    let namespace = destination.namespace().unwrap_or_default();
    let generation = destination.metadata.generation;
    let client = ctx.client.clone();
    let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
    let owner = destination
        .controller_owner_ref(&())
        .expect("a stored object has a name and uid");
    let target = target_pvc_name(destination);

    let Some(job) = jobs.get_opt(&plan.job_name).await? else {
        if !is_current(destination, &client).await? {
            // The cache may be behind a restore that already ended; write nothing from it.
            *status = destination.status.clone().unwrap_or_default();
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
        let params = MoverJobParams {
            image: ctx.mover_image.clone(),
            owner: owner.clone(),
            owner_label: (labels::REPLICATION_DESTINATION, destination.name_any()),
            claim: target,
            read_only: false,
            node_name: None,
        };
        create_or_existing(&jobs, &job::destination_job(destination, &plan, &params)).await?;
        status::synchronizing(
            &mut status.conditions,
            reason::MOVER_RUNNING,
            &format!("mover Job {} running", plan.job_name),
            generation,
            now,
        );
        return Ok(Action::requeue(POLL));
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let pods = pods
        .list(&ListParams::default().labels(&format!(
            "{}={}",
            mover::JOB_NAME_LABEL,
            plan.job_name
        )))
        .await?;
    let Some(result) = pods
        .items
        .iter()
        .find_map(mover::result_from_pod)
        .or_else(|| mover::result_from_failed_job(&job))
    else {
        status::synchronizing(
            &mut status.conditions,
            reason::MOVER_RUNNING,
            &format!("mover Job {} running", plan.job_name),
            generation,
            now,
        );
        return Ok(Action::requeue(POLL));
    };

    if result.error_class.is_none() {
        let missing_allowed =
            destination.spec.restic.on_missing_snapshot == OnMissingSnapshot::Empty;
        if result.snapshot_id.is_none() && !missing_allowed {
            let failure = MoverResult {
                error_class: Some(ErrorClass::NoSnapshot),
                message: Some("no snapshot matched and the mover restored nothing".into()),
                ..result
            };
            return finish(destination, plan, status, ctx, now, failure, None).await;
        }
        let image = match destination.spec.restic.copy_method {
            DestinationCopyMethod::Direct => TypedLocalObjectReference {
                api_group: None,
                kind: "PersistentVolumeClaim".into(),
                name: target.clone(),
            },
            DestinationCopyMethod::Snapshot => {
                let snapshots: Api<DynamicObject> =
                    Api::namespaced_with(client, &namespace, &volume::volume_snapshot_resource());
                let meta = volume::owned_meta(&plan.job_name, &owned_labels(destination), &owner);
                let snapshot = match snapshots.get_opt(&plan.job_name).await? {
                    Some(snapshot) => snapshot,
                    None => {
                        create_or_existing(
                            &snapshots,
                            &volume::volume_snapshot(
                                meta,
                                &target,
                                destination
                                    .spec
                                    .restic
                                    .volume_snapshot_class_name
                                    .as_deref(),
                            ),
                        )
                        .await?
                    }
                };
                if volume::snapshot_ready(&snapshot).is_none() {
                    status::synchronizing(
                        &mut status.conditions,
                        reason::WAITING_FOR_SNAPSHOT,
                        &format!(
                            "waiting for VolumeSnapshot {} of the restored PVC",
                            plan.job_name
                        ),
                        generation,
                        now,
                    );
                    return Ok(Action::requeue(Duration::from_secs(5)));
                }
                TypedLocalObjectReference {
                    api_group: Some(volume::SNAPSHOT_GROUP.into()),
                    kind: "VolumeSnapshot".into(),
                    name: plan.job_name.clone(),
                }
            }
        };
        return finish(destination, plan, status, ctx, now, result, Some(image)).await;
    }
    finish(destination, plan, status, ctx, now, result, None).await
}

async fn finish(
    destination: &ReplicationDestination,
    plan: SyncPlan,
    status: &mut ReplicationDestinationStatus,
    ctx: &Context,
    now: Timestamp,
    result: MoverResult,
    image: Option<TypedLocalObjectReference>,
) -> Result<Action> {
    let namespace = destination.namespace().unwrap_or_default();
    let generation = destination.metadata.generation;
    let object = controller::object_labels(destination);
    status.observed_generation = generation;
    status.sync_plan = None;
    status.latest_mover_status = Some(MoverStatus {
        result: if result.error_class.is_none() {
            MoverOutcome::Successful
        } else {
            MoverOutcome::Failed
        },
        logs: result.message.clone(),
    });
    let snapshots: Api<DynamicObject> = Api::namespaced_with(
        ctx.client.clone(),
        &namespace,
        &volume::volume_snapshot_resource(),
    );
    match result.error_class {
        None => {
            status.consecutive_failures = None;
            status.next_sync_time = None;
            status.last_sync_time = Some(Time(now));
            status.last_sync_duration = Some(status::sync_duration(plan.started_at.0, now));
            if plan.manual.is_some() {
                status.last_manual_sync = plan.manual.clone();
            }
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
            // The previous image is replaced only now that the new one is ready.
            if let Some(previous) = status.latest_image.take()
                && previous.kind == "VolumeSnapshot"
                && image.as_ref().is_none_or(|new| new.name != previous.name)
            {
                ignore_not_found(
                    snapshots
                        .delete(&previous.name, &DeleteParams::background())
                        .await
                        .map(|_| ()),
                )?;
            }
            status.latest_image = image;
            let message = match &status.restored_snapshot {
                Some(snapshot) => format!(
                    "restored snapshot {}",
                    &snapshot.id[..snapshot.id.len().min(8)]
                ),
                None => {
                    "no snapshot matched; published the volume empty (onMissingSnapshot: Empty)"
                        .to_string()
                }
            };
            status::succeeded(
                &mut status.conditions,
                &message,
                reason::WAITING_FOR_MANUAL,
                generation,
                now,
            );
            tracing::info!(
                namespace = %namespace,
                name = %destination.name_any(),
                job = %plan.job_name,
                "restore succeeded: {message}"
            );
            ctx.metrics.sync_succeeded(
                &object,
                now.as_second() as f64,
                now.duration_since(plan.started_at.0).as_secs_f64(),
                0,
            );
            ctx.event(
                destination,
                EventType::Normal,
                reason::SYNC_SUCCEEDED,
                "Restore",
                message,
            )
            .await;
        }
        Some(class) => {
            let failures = status.consecutive_failures.unwrap_or(0).saturating_add(1);
            status.consecutive_failures = Some(failures);
            let message = result
                .message
                .clone()
                .unwrap_or_else(|| format!("restore failed: {class:?}"));
            let failure = controller::Failure {
                reason: class.condition_reason(),
                message: format!("{message} (Job {})", plan.job_name),
                action: "Restore",
                retry: backoff::after_failure(class, failures as u32),
                failures: failures as u32,
            };
            controller::report_failure(
                ctx,
                destination,
                failure,
                &mut status.conditions,
                &mut status.next_sync_time,
                now,
            )
            .await;
        }
    }
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    ignore_not_found(
        jobs.delete(&plan.job_name, &DeleteParams::background())
            .await
            .map(|_| ()),
    )?;
    Ok(Action::requeue(Duration::from_secs(1)))
}
