//! The ReplicationSource controller: on each trigger, take a point-in-time copy of the PVC, run
//! a backup Job over it, record the result and clean up.
//!
//! A sync is a small state machine kept in `status.syncPlan`: absent between syncs; present from
//! the moment a sync starts until its result is recorded. Every reconcile looks at the plan and
//! the cluster and takes the next step, so an operator restart mid-sync resumes where it was.

use std::{sync::Arc, time::Duration};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{PersistentVolumeClaim, Pod, Secret},
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, ListParams},
    runtime::{controller::Action, events::EventType},
};
use sluice_api::{
    CopyMethod, ReplicationSource, ReplicationSourceStatus, SyncPlan,
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
pub const KIND: &str = "ReplicationSource";

/// A VolumeSnapshot or copy PVC not ready after this long gets a warning event (the sync keeps
/// waiting).
const READY_WARNING: SignedDuration = SignedDuration::from_mins(5);

/// How often a running sync is looked at even without a watch event.
const POLL: Duration = Duration::from_secs(10);

/// Runs the controller until the stream ends (shutdown).
pub async fn run(ctx: Arc<Context>) {
    controller::run::<ReplicationSource, _, _>(ctx, reconcile).await;
}

/// Takes the next step for one ReplicationSource.
pub async fn reconcile(source: Arc<ReplicationSource>, ctx: Arc<Context>) -> Result<Action> {
    ctx.metrics.reconciled(KIND);
    let now = Timestamp::now();
    let mut status = source.status.clone().unwrap_or_default();
    let action = match status.sync_plan.clone() {
        Some(plan) => continue_sync(&source, plan, &mut status, &ctx, now).await?,
        None => idle(&source, &mut status, &ctx, now).await?,
    };
    controller::write_status(&ctx, source.as_ref(), source.status.as_ref(), &status).await?;
    Ok(action)
}

fn until(next: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(next.duration_since(now))
        .unwrap_or_default()
        .max(Duration::from_secs(1))
}

/// Between syncs: decide whether one is due, and start it.
async fn idle(
    source: &ReplicationSource,
    status: &mut ReplicationSourceStatus,
    ctx: &Context,
    now: Timestamp,
) -> Result<Action> {
    let generation = source.metadata.generation;
    if source.spec.paused {
        status.next_sync_time = None;
        status::waiting(
            &mut status.conditions,
            reason::PAUSED,
            "spec.paused is set",
            generation,
            now,
        );
        return Ok(Action::await_change());
    }
    let namespace = source.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let repository = &source.spec.restic.repository;

    // After a failure the same Job cannot fix, wait for the spec or the Secret to change.
    let failed = status.consecutive_failures.unwrap_or(0) > 0;
    if failed && status.next_sync_time.is_none() {
        let degraded_generation = status::condition(&status.conditions, conditions::DEGRADED)
            .and_then(|c| c.observed_generation);
        let last_attempt = status.last_sync_start_time.as_ref().map(|t| t.0);
        let secret_changed = match secrets.get_opt(repository).await? {
            Some(secret) => secret::last_modified(&secret)
                .zip(last_attempt)
                .is_some_and(|(modified, attempt)| modified > attempt),
            None => false,
        };
        if degraded_generation == generation && !secret_changed {
            return Ok(Action::requeue(secret::RECHECK));
        }
    }

    let trigger = source.spec.trigger.clone().unwrap_or_default();
    let reference = status
        .last_sync_start_time
        .as_ref()
        .or(source.metadata.creation_timestamp.as_ref())
        .map_or(now, |time| time.0);
    let schedule = match trigger
        .schedule
        .as_deref()
        .map(|expr| Schedule::parse(expr, trigger.time_zone.as_deref()))
    {
        None => None,
        Some(Ok(schedule)) => Some(schedule),
        Some(Err(error)) => {
            status::failed(
                &mut status.conditions,
                reason::MOVER_CONFIG_INVALID,
                &error.to_string(),
                false,
                generation,
                now,
            );
            status.next_sync_time = None;
            return Ok(Action::await_change());
        }
    };
    let due = match &schedule {
        Some(schedule) => Some(
            schedule
                .due(reference, now)
                .map_err(|e| invalid_spec(e.to_string()))?,
        ),
        None => None,
    };
    let retry_due = failed && status.next_sync_time.as_ref().is_some_and(|t| t.0 <= now);
    let manual_due = trigger.manual.is_some() && trigger.manual != status.last_manual_sync;
    let continuous = trigger.schedule.is_none() && trigger.manual.is_none();
    let schedule_due = due.as_ref().is_some_and(|due| due.now);

    // A failed sync, manual ones included, is retried on its backoff only: a manual trigger
    // that failed must not become a Job storm. status.nextSyncTime says when.
    if failed && !retry_due && status.next_sync_time.is_some() {
        let next = status.next_sync_time.as_ref().map_or(now, |t| t.0);
        return Ok(Action::requeue(until(next, now)));
    }
    if !(retry_due || manual_due || continuous || schedule_due) {
        match &due {
            Some(due) => {
                status.next_sync_time = Some(Time(due.next));
                status::waiting(
                    &mut status.conditions,
                    reason::WAITING_FOR_SCHEDULE,
                    &format!("next sync at {}", due.next),
                    generation,
                    now,
                );
                return Ok(Action::requeue(until(due.next, now)));
            }
            None => {
                status.next_sync_time = None;
                status::waiting(
                    &mut status.conditions,
                    reason::WAITING_FOR_MANUAL,
                    "waiting for spec.trigger.manual to change",
                    generation,
                    now,
                );
                return Ok(Action::await_change());
            }
        }
    }

    // Missing Secret keys are reported before any Job exists.
    let secret = secrets.get_opt(repository).await?;
    let missing = secret.as_ref().map(secret::missing_keys);
    if secret.is_none() || missing.as_ref().is_some_and(|m| !m.is_empty()) {
        let message = secret::invalid_message(
            &namespace,
            repository,
            missing.as_deref().unwrap_or_default(),
        );
        status.last_sync_start_time = Some(Time(now));
        let failures = status.consecutive_failures.unwrap_or(0) + 1;
        status.consecutive_failures = Some(failures);
        let failure = controller::Failure {
            reason: reason::SECRET_INVALID,
            message,
            action: "Validate",
            retry: Retry::WaitForChange,
            failures: failures as u32,
        };
        controller::report_failure(
            ctx,
            source,
            failure,
            &mut status.conditions,
            &mut status.next_sync_time,
            now,
        )
        .await;
        return Ok(Action::requeue(secret::RECHECK));
    }

    if !is_current(source, &ctx.client).await? {
        // The cache may be behind a sync that just started or ended; decide on a current copy.
        *status = source.status.clone().unwrap_or_default();
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let plan = plan::source_plan(source, now);
    let missed = due.as_ref().map_or(0, |due| due.missed);
    ctx.metrics
        .missed(&controller::object_labels(source), missed);
    status.missed_syncs = Some(status.missed_syncs.unwrap_or(0) + missed as i64);
    status.last_sync_start_time = Some(plan.started_at.clone());
    status.next_sync_time = due.map(|due| Time(due.next));
    status.sync_plan = Some(plan.clone());
    status::synchronizing(
        &mut status.conditions,
        reason::MOVER_RUNNING,
        &format!("sync {} started", plan.job_name),
        generation,
        now,
    );
    // The plan is stored (by reconcile) before anything is created, so the Job derives from it
    // alone; the next reconcile, woken by that write, creates the copy and the Job.
    tracing::info!(
        namespace = %namespace,
        name = %source.name_any(),
        job = %plan.job_name,
        actions = %plan::actions_env(&plan.actions),
        missed,
        "sync started"
    );
    ctx.event(
        source,
        EventType::Normal,
        "SyncStarted",
        "Sync",
        format!(
            "started {} ({})",
            plan.job_name,
            plan::actions_env(&plan.actions)
        ),
    )
    .await;
    Ok(Action::requeue(Duration::from_secs(1)))
}

fn invalid_spec(message: String) -> kube::Error {
    kube::Error::Service(message.into())
}

/// During a sync: make the copy, run the Job, and record the result when it ends.
async fn continue_sync(
    source: &ReplicationSource,
    plan: SyncPlan,
    status: &mut ReplicationSourceStatus,
    ctx: &Context,
    now: Timestamp,
) -> Result<Action> {
    let namespace = source.namespace().unwrap_or_default();
    let generation = source.metadata.generation;
    let client = ctx.client.clone();
    let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &namespace);
    let owner = source
        .controller_owner_ref(&())
        .expect("a stored object has a name and uid");
    let owned_labels = owned_labels(source);
    let restic = &source.spec.restic;

    let job = jobs.get_opt(&plan.job_name).await?;
    if job.is_none() {
        if !is_current(source, &client).await? {
            // The cache may be behind a sync that already ended; write nothing from it.
            *status = source.status.clone().unwrap_or_default();
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
        let (claim, node_name) = match restic.copy_method {
            CopyMethod::Direct => {
                let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
                let pods = pods.list(&ListParams::default()).await?.items;
                (
                    source.spec.source_pvc.clone(),
                    volume::node_mounting(&pods, &source.spec.source_pvc),
                )
            }
            CopyMethod::Clone | CopyMethod::Snapshot => {
                let Some(source_pvc) = pvcs.get_opt(&source.spec.source_pvc).await? else {
                    let message = format!(
                        "source PVC {namespace}/{} not found; create it or fix spec.sourcePVC",
                        source.spec.source_pvc
                    );
                    return finish(
                        source,
                        plan,
                        status,
                        ctx,
                        now,
                        failure(ErrorClass::Internal, message),
                        reason::SOURCE_PVC_NOT_FOUND,
                    )
                    .await;
                };
                let shape = PvcShape {
                    capacity: restic.capacity.clone(),
                    storage_class: restic.storage_class_name.clone(),
                    access_modes: restic
                        .access_modes
                        .as_ref()
                        .map(|modes| modes.iter().map(|m| m.as_str().to_string()).collect()),
                }
                .or_from(&source_pvc);
                let meta = volume::owned_meta(&plan.job_name, &owned_labels, &owner);
                let copy = if restic.copy_method == CopyMethod::Clone {
                    volume::clone_pvc(meta, &source.spec.source_pvc, shape)
                } else {
                    let snapshots: Api<kube::api::DynamicObject> = Api::namespaced_with(
                        client.clone(),
                        &namespace,
                        &volume::volume_snapshot_resource(),
                    );
                    let snapshot = match snapshots.get_opt(&plan.job_name).await? {
                        Some(snapshot) => snapshot,
                        None => {
                            let wanted = volume::volume_snapshot(
                                meta.clone(),
                                &source.spec.source_pvc,
                                restic.volume_snapshot_class_name.as_deref(),
                            );
                            create_or_existing(&snapshots, &wanted).await?
                        }
                    };
                    let Some(restore_size) = volume::snapshot_ready(&snapshot) else {
                        status::synchronizing(
                            &mut status.conditions,
                            reason::WAITING_FOR_SNAPSHOT,
                            &format!(
                                "waiting for VolumeSnapshot {} to become readyToUse",
                                plan.job_name
                            ),
                            generation,
                            now,
                        );
                        if now.duration_since(plan.started_at.0) > READY_WARNING {
                            let detail = volume::snapshot_error(&snapshot)
                                .unwrap_or_else(|| "not readyToUse yet".to_string());
                            ctx.event(
                                source,
                                EventType::Warning,
                                reason::WAITING_FOR_SNAPSHOT,
                                "Snapshot",
                                format!("VolumeSnapshot {}: {detail}", plan.job_name),
                            )
                            .await;
                        }
                        return Ok(Action::requeue(Duration::from_secs(5)));
                    };
                    // The snapshot's restoreSize, not the source's request, sizes the copy unless
                    // spec.restic.capacity says otherwise.
                    let shape = PvcShape {
                        capacity: restic.capacity.clone(),
                        ..shape
                    };
                    volume::pvc_from_snapshot(meta, &plan.job_name, restore_size, shape)
                };
                if pvcs.get_opt(&plan.job_name).await?.is_none() {
                    create_or_existing(&pvcs, &copy).await?;
                }
                (plan.job_name.clone(), None)
            }
        };
        let params = MoverJobParams {
            image: ctx.mover_image.clone(),
            owner: owner.clone(),
            owner_label: (labels::REPLICATION_SOURCE, source.name_any()),
            claim,
            read_only: true,
            node_name,
        };
        let built = job::source_job(source, &plan, &params);
        create_or_existing(&jobs, &built).await?;
        status::synchronizing(
            &mut status.conditions,
            reason::MOVER_RUNNING,
            &format!("mover Job {} running", plan.job_name),
            generation,
            now,
        );
        return Ok(Action::requeue(POLL));
    }
    let job = job.expect("checked above");

    let pods: Api<Pod> = Api::namespaced(client, &namespace);
    let pods = pods
        .list(&ListParams::default().labels(&format!(
            "{}={}",
            mover::JOB_NAME_LABEL,
            plan.job_name
        )))
        .await?;
    let result = pods
        .items
        .iter()
        .find_map(mover::result_from_pod)
        .or_else(|| mover::result_from_failed_job(&job));
    match result {
        None => {
            // A copy that never binds leaves the mover Pod pending: say so, not "running".
            let unbound_copy = match restic.copy_method {
                CopyMethod::Direct => None,
                CopyMethod::Clone | CopyMethod::Snapshot => pvcs
                    .get_opt(&plan.job_name)
                    .await?
                    .filter(|claim| !volume::is_bound(claim)),
            };
            if unbound_copy.is_some() {
                let message = format!(
                    "waiting for PVC {} (the point-in-time copy) to be bound",
                    plan.job_name
                );
                status::synchronizing(
                    &mut status.conditions,
                    reason::WAITING_FOR_PVC,
                    &message,
                    generation,
                    now,
                );
                if now.duration_since(plan.started_at.0) > READY_WARNING {
                    let note = format!(
                        "PVC {} not bound after {}s: check its StorageClass and that its \
                         provisioner runs",
                        plan.job_name,
                        READY_WARNING.as_secs()
                    );
                    ctx.event(
                        source,
                        EventType::Warning,
                        reason::WAITING_FOR_PVC,
                        "Copy",
                        note,
                    )
                    .await;
                }
                return Ok(Action::requeue(Duration::from_secs(5)));
            }
            status::synchronizing(
                &mut status.conditions,
                reason::MOVER_RUNNING,
                &format!("mover Job {} running", plan.job_name),
                generation,
                now,
            );
            Ok(Action::requeue(POLL))
        }
        Some(result) => {
            let failure_reason = result
                .error_class
                .map(ErrorClass::condition_reason)
                .unwrap_or(reason::MOVER_FAILED);
            finish(source, plan, status, ctx, now, result, failure_reason).await
        }
    }
}

fn failure(class: ErrorClass, message: String) -> MoverResult {
    MoverResult {
        error_class: Some(class),
        message: Some(message),
        ..Default::default()
    }
}

fn owned_labels(source: &ReplicationSource) -> std::collections::BTreeMap<String, String> {
    std::collections::BTreeMap::from([
        (
            labels::MANAGED_BY.to_string(),
            labels::MANAGED_BY_VALUE.to_string(),
        ),
        (labels::REPLICATION_SOURCE.to_string(), source.name_any()),
    ])
}

/// Records the result, sets conditions, events and metrics, removes the sync's temporary
/// objects and ends the sync.
async fn finish(
    source: &ReplicationSource,
    plan: SyncPlan,
    status: &mut ReplicationSourceStatus,
    ctx: &Context,
    now: Timestamp,
    result: MoverResult,
    failure_reason: &str,
) -> Result<Action> {
    let generation = source.metadata.generation;
    let object = controller::object_labels(source);
    status::record_source_result(status, &plan, &result, now);
    status.observed_generation = generation;
    let schedule = source.spec.trigger.as_ref().and_then(|t| {
        t.schedule
            .as_deref()
            .and_then(|expr| Schedule::parse(expr, t.time_zone.as_deref()).ok())
    });
    match result.error_class {
        None => {
            let next = schedule.as_ref().and_then(|s| s.next_after(now).ok());
            status.next_sync_time = next.map(Time);
            let next_reason = if next.is_some() {
                reason::WAITING_FOR_SCHEDULE
            } else {
                reason::WAITING_FOR_MANUAL
            };
            let message = match &result.snapshot_id {
                Some(id) => format!(
                    "snapshot {}: {} new, {} changed files, {} bytes added",
                    &id[..id.len().min(8)],
                    result.files_new,
                    result.files_changed,
                    result.bytes_added
                ),
                None => "sync finished".to_string(),
            };
            status::succeeded(
                &mut status.conditions,
                &message,
                next_reason,
                generation,
                now,
            );
            let seconds = now.duration_since(plan.started_at.0).as_secs_f64();
            tracing::info!(
                namespace = %source.namespace().unwrap_or_default(),
                name = %source.name_any(),
                job = %plan.job_name,
                snapshot = result.snapshot_id.as_deref().unwrap_or(""),
                bytes_added = result.bytes_added,
                seconds,
                "sync succeeded"
            );
            ctx.metrics.sync_succeeded(
                &object,
                now.as_second() as f64,
                seconds,
                result.bytes_added,
            );
            ctx.event(
                source,
                EventType::Normal,
                reason::SYNC_SUCCEEDED,
                "Sync",
                message,
            )
            .await;
        }
        Some(class) => {
            let failures = status.consecutive_failures.unwrap_or(1).max(1) as u32;
            let message = result
                .message
                .clone()
                .unwrap_or_else(|| format!("mover failed: {class:?}"));
            let failure = controller::Failure {
                reason: failure_reason,
                message: format!("{message} (Job {})", plan.job_name),
                action: "Sync",
                retry: backoff::after_failure(class, failures),
                failures,
            };
            controller::report_failure(
                ctx,
                source,
                failure,
                &mut status.conditions,
                &mut status.next_sync_time,
                now,
            )
            .await;
        }
    }
    let restic = status.restic.clone().unwrap_or_default();
    let prune_days = source
        .spec
        .restic
        .prune_interval_days
        .unwrap_or(plan::DEFAULT_PRUNE_INTERVAL_DAYS);
    ctx.metrics.prune_state(
        &object,
        restic.last_pruned.map(|t| t.0.as_second() as f64),
        i64::from(prune_days) * 86_400,
    );
    status.sync_plan = None;
    cleanup(source, &plan, ctx).await?;
    // The next reconcile (idle) decides from the new status when the next sync runs.
    Ok(Action::requeue(Duration::from_secs(1)))
}

/// Deletes the sync's Job (with its Pods), temporary PVC and VolumeSnapshot.
async fn cleanup(source: &ReplicationSource, plan: &SyncPlan, ctx: &Context) -> Result<()> {
    let namespace = source.namespace().unwrap_or_default();
    let client = ctx.client.clone();
    let background = DeleteParams::background();
    ignore_not_found(
        Api::<Job>::namespaced(client.clone(), &namespace)
            .delete(&plan.job_name, &background)
            .await
            .map(|_| ()),
    )?;
    match source.spec.restic.copy_method {
        CopyMethod::Direct => {}
        CopyMethod::Clone => {
            ignore_not_found(
                Api::<PersistentVolumeClaim>::namespaced(client, &namespace)
                    .delete(&plan.job_name, &background)
                    .await
                    .map(|_| ()),
            )?;
        }
        CopyMethod::Snapshot => {
            ignore_not_found(
                Api::<PersistentVolumeClaim>::namespaced(client.clone(), &namespace)
                    .delete(&plan.job_name, &background)
                    .await
                    .map(|_| ()),
            )?;
            let snapshots: Api<kube::api::DynamicObject> =
                Api::namespaced_with(client, &namespace, &volume::volume_snapshot_resource());
            ignore_not_found(
                snapshots
                    .delete(&plan.job_name, &background)
                    .await
                    .map(|_| ()),
            )?;
        }
    }
    Ok(())
}
