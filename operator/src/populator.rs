//! The volume populator: a PVC whose `dataSourceRef` names a ReplicationDestination binds with
//! that destination's snapshot already in it, so a GitOps repository declares an application's
//! PVC and never creates the volume by hand.
//!
//! [`decide`] says what a PVC needs next (the protocol is described there); this module observes
//! and carries it out. Every PVC in the cluster is watched (only those that name a
//! ReplicationDestination are acted on), and the prime PVCs and Jobs it makes wake the PVC
//! that owns them, through the same watches of Sluice's objects the other controllers use.
//! What a PVC waits for, and how it was filled, is its `sluice.dev/Populated` condition, with an
//! event on each change.
//!
//! A populate Job is not queued behind a repository's other syncs: the PVC's Pod waits on it.

pub mod decide;

use std::{sync::Arc, time::Duration};

use futures::{StreamExt, TryStreamExt};
use jiff::Timestamp;
use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{PersistentVolume, PersistentVolumeClaim},
    storage::v1::StorageClass,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
    runtime::{
        WatchStreamExt,
        controller::{Action, Controller},
        events::EventType,
        reflector::{self, ObjectRef},
        watcher,
    },
};
use serde_json::json;
use sluice_api::{ReplicationDestination, conditions, labels};

use crate::{
    cache::{Feed, OwnedKind},
    context::{Context, Result},
};

use decide::{Condition, Next, Observed, Population};

/// How long after an API error a PVC is looked at again.
const API_ERROR_RETRY: Duration = Duration::from_secs(15);
/// A PVC waiting on something no watch reports (a ReplicationDestination being created) is
/// looked at again this often.
const RECHECK: Duration = Duration::from_secs(30);
/// Every population in flight is looked at again at least this often, whatever woke it last.
const SAFETY_RECHECK: Duration = Duration::from_secs(300);
/// Field manager of the populator's writes to users' PVCs.
const FIELD_MANAGER: &str = "sluice-populator";

/// Runs the populator until the stream ends.
pub async fn run(ctx: Arc<Context>, feed: Feed) {
    let (reader, writer) = reflector::store();
    let written = ctx.clone();
    let claims = watcher(
        Api::<PersistentVolumeClaim>::all(ctx.client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(|claim| claim.managed_fields_mut().clear())
    .reflect(writer)
    .applied_objects()
    .inspect_ok(move |claim| written.written.claims.seen(claim));
    Controller::for_stream(claims, reader)
        .watches_shared_stream(feed.jobs, owning_claim::<Job>)
        .watches_shared_stream(feed.claims, owning_claim::<PersistentVolumeClaim>)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| {
            if let Err(error) = result {
                tracing::debug!(%error, "populator reconcile ended without a result");
            }
            std::future::ready(())
        })
        .await;
}

/// The PVC a prime PVC or populate Job was made for: its controller owner, when that is a PVC.
fn owning_claim<O: Resource>(object: Arc<O>) -> Option<ObjectRef<PersistentVolumeClaim>> {
    let meta = object.meta();
    meta.labels.as_ref()?.get(labels::POPULATES)?;
    let owner =
        meta.owner_references.as_ref()?.iter().find(|owner| {
            owner.controller == Some(true) && owner.kind == "PersistentVolumeClaim"
        })?;
    Some(ObjectRef::new(&owner.name).within(meta.namespace.as_deref()?))
}

fn error_policy(
    claim: Arc<PersistentVolumeClaim>,
    error: &kube::Error,
    ctx: Arc<Context>,
) -> Action {
    ctx.metrics.reconcile_failed("PersistentVolumeClaim");
    tracing::warn!(
        %error,
        name = %claim.name_any(),
        namespace = ?claim.namespace(),
        "populator reconcile error; retrying in {}s",
        API_ERROR_RETRY.as_secs()
    );
    Action::requeue(API_ERROR_RETRY)
}

async fn reconcile(claim: Arc<PersistentVolumeClaim>, ctx: Arc<Context>) -> Result<Action> {
    // The cache can be behind the populator's own last write of this PVC (its condition, its
    // annotations); deciding on that older copy wrote the condition again, with a second event
    // and a second count of the population.
    let claim = ctx
        .written
        .claims
        .newest(&ObjectRef::from_obj(claim.as_ref()), Some(claim.clone()))
        .unwrap_or(claim);
    let Some(rd) = decide::destination_name(&claim) else {
        return Ok(Action::await_change());
    };
    let namespace = claim.namespace().unwrap_or_default();
    let pending = claim
        .spec
        .as_ref()
        .is_some_and(|spec| spec.volume_name.is_none());
    let (destination, waits_for_consumer) = if pending {
        let destination = Api::<ReplicationDestination>::namespaced(ctx.client.clone(), &namespace)
            .get_opt(rd)
            .await?;
        (destination, waits_for_consumer(&ctx, &claim).await?)
    } else {
        (None, false)
    };
    let prime = ctx.owned.claim(&namespace, &decide::prime_name(&claim));
    let job = ctx.owned.job(&namespace, &decide::job_name(&claim));
    let result = job
        .as_ref()
        .and_then(|job| ctx.owned.mover_result(&namespace, job));
    let observed = Observed {
        claim: &claim,
        destination: destination.as_ref(),
        waits_for_consumer,
        prime: prime.as_deref(),
        job: job.as_deref(),
        result: result.as_ref(),
    };
    let now = Timestamp::now();
    let next = decide::next(&observed, &ctx.mover, now);
    tracing::debug!(%namespace, claim = %claim.name_any(), ?next, "populator step");
    let claims = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &namespace);
    let jobs = Api::<Job>::namespaced(ctx.client.clone(), &namespace);
    match next {
        Next::Nothing => Ok(Action::await_change()),
        Next::Finish(condition) => {
            remove_leftovers(&ctx, &claim).await?;
            set_condition(&ctx, &claim, &claims, &condition).await?;
            Ok(Action::await_change())
        }
        Next::Wait(condition) => {
            set_condition(&ctx, &claim, &claims, &condition).await?;
            Ok(Action::requeue(SAFETY_RECHECK))
        }
        Next::Abandon(condition) => {
            remove_leftovers(&ctx, &claim).await?;
            set_condition(&ctx, &claim, &claims, &condition).await?;
            Ok(Action::requeue(RECHECK))
        }
        Next::CreatePrime(prime) => {
            ctx.owned.create(&claims, &prime).await?;
            Ok(Action::requeue(SAFETY_RECHECK))
        }
        Next::CreateJob(job) => {
            ctx.owned.create(&jobs, &job).await?;
            let condition = Condition {
                populated: false,
                reason: conditions::reason::MOVER_RUNNING.into(),
                message: format!(
                    "Job {} restores from ReplicationDestination {rd}",
                    job.name_any()
                ),
            };
            set_condition(&ctx, &claim, &claims, &condition).await?;
            Ok(Action::requeue(SAFETY_RECHECK))
        }
        Next::Failed {
            condition,
            retry_at,
        } => {
            set_condition(&ctx, &claim, &claims, &condition).await?;
            let wait = now.duration_until(retry_at);
            if wait.is_positive() {
                return Ok(Action::requeue(Duration::try_from(wait).unwrap_or(RECHECK)));
            }
            delete::<Job>(&ctx, &namespace, &decide::job_name(&claim)).await?;
            Ok(Action::requeue(Duration::from_secs(1)))
        }
        Next::Record(population) => {
            record(&ctx, &claims, &claim, Some(&population)).await?;
            Ok(Action::requeue(SAFETY_RECHECK))
        }
        Next::Rebind { volume } => {
            rebind(&ctx, &claim, &volume).await?;
            Ok(Action::requeue(SAFETY_RECHECK))
        }
        Next::Forget => {
            record(&ctx, &claims, &claim, None).await?;
            Ok(Action::requeue(Duration::from_secs(1)))
        }
    }
}

/// Whether the PVC's StorageClass binds only for a scheduled Pod; a class that does not exist
/// (yet) counts as binding at once, as the PersistentVolume controller treats it.
async fn waits_for_consumer(ctx: &Context, claim: &PersistentVolumeClaim) -> Result<bool> {
    let Some(class) = claim
        .spec
        .as_ref()
        .and_then(|spec| spec.storage_class_name.as_deref())
    else {
        return Ok(false);
    };
    let class = Api::<StorageClass>::all(ctx.client.clone())
        .get_opt(class)
        .await?;
    Ok(class.and_then(|c| c.volume_binding_mode).as_deref() == Some("WaitForFirstConsumer"))
}

/// Writes (or, with `None`, removes) what a population put into the PVC as its annotations.
async fn record(
    ctx: &Context,
    claims: &Api<PersistentVolumeClaim>,
    claim: &PersistentVolumeClaim,
    population: Option<&Population>,
) -> Result<()> {
    let value = |f: fn(&Population) -> Option<String>| population.and_then(f);
    let patch = json!({"metadata": {"annotations": {
        labels::POPULATION: value(|p| Some(p.reason.clone())),
        labels::RESTORED_SNAPSHOT: value(|p| p.snapshot.clone()),
        labels::RESTORED_SNAPSHOT_TIME: value(|p| p.snapshot_time.clone()),
    }}});
    let written = claims
        .patch(
            &claim.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    remember(ctx, written);
    Ok(())
}

/// Holds the PVC as the API server returned it from the populator's write, until the watch
/// delivers it.
fn remember(ctx: &Context, mut written: PersistentVolumeClaim) {
    written.managed_fields_mut().clear();
    ctx.written.claims.wrote(written);
}

/// Hands the prime PVC's volume to the user's PVC: its `claimRef` names the PVC, and the
/// PersistentVolume controller binds the two.
async fn rebind(ctx: &Context, claim: &PersistentVolumeClaim, volume: &str) -> Result<()> {
    let patch = json!({"spec": {"claimRef": {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "namespace": claim.namespace(),
        "name": claim.name_any(),
        "uid": claim.uid(),
        "resourceVersion": null,
    }}});
    Api::<PersistentVolume>::all(ctx.client.clone())
        .patch(volume, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    tracing::info!(
        namespace = ?claim.namespace(),
        claim = %claim.name_any(),
        %volume,
        "populated volume handed to its PVC"
    );
    Ok(())
}

/// Deletes the population's Job and prime PVC, if they are there. The prime's volume goes with
/// it while still bound to it (its class' reclaim policy), or stays with the user's PVC after the
/// hand-over.
async fn remove_leftovers(ctx: &Context, claim: &PersistentVolumeClaim) -> Result<()> {
    let namespace = claim.namespace().unwrap_or_default();
    let job = decide::job_name(claim);
    if ctx.owned.job(&namespace, &job).is_some() {
        delete::<Job>(ctx, &namespace, &job).await?;
    }
    let prime = decide::prime_name(claim);
    if ctx.owned.claim(&namespace, &prime).is_some() {
        delete::<PersistentVolumeClaim>(ctx, &namespace, &prime).await?;
    }
    Ok(())
}

/// Deletes Sluice's `name` in `namespace` (its dependents in the background), if it is there.
async fn delete<K: OwnedKind>(ctx: &Context, namespace: &str, name: &str) -> Result<()> {
    let api = Api::<K>::namespaced(ctx.client.clone(), namespace);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(error) => return Err(error),
    }
    ctx.owned.deleted::<K>(namespace, name);
    Ok(())
}

/// Sets the PVC's `sluice.dev/Populated` condition by server-side apply, with an event, unless
/// it already says the same.
async fn set_condition(
    ctx: &Context,
    claim: &PersistentVolumeClaim,
    claims: &Api<PersistentVolumeClaim>,
    condition: &Condition,
) -> Result<()> {
    let current = claim
        .status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .and_then(|all| all.iter().find(|c| c.type_ == conditions::POPULATED));
    let status = if condition.populated { "True" } else { "False" };
    if current.is_some_and(|c| {
        c.status == status
            && c.reason.as_deref() == Some(condition.reason.as_str())
            && c.message.as_deref() == Some(condition.message.as_str())
    }) {
        return Ok(());
    }
    let now = Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or(Timestamp::now());
    let transition = current
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time.as_ref())
        .map_or(now, |t| t.0);
    let patch = json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "status": {"conditions": [{
            "type": conditions::POPULATED,
            "status": status,
            "reason": condition.reason,
            "message": condition.message,
            "lastTransitionTime": transition,
        }]},
    });
    let written = claims
        .patch_status(
            &claim.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    remember(ctx, written);
    let reason_changed = current.and_then(|c| c.reason.as_deref()) != Some(&condition.reason);
    if reason_changed {
        let failure = is_failure(&condition.reason);
        if condition.populated || failure {
            ctx.metrics.population_ended(
                &claim.namespace().unwrap_or_default(),
                &claim.name_any(),
                &condition.reason,
            );
        }
        let (type_, action) = match (condition.populated, failure) {
            (true, _) => (EventType::Normal, "Populated"),
            (false, true) => (EventType::Warning, "Populate"),
            (false, false) => (EventType::Normal, "Populate"),
        };
        ctx.event(
            claim,
            type_,
            &condition.reason,
            action,
            condition.message.clone(),
        )
        .await;
    }
    Ok(())
}

/// Whether a condition reason reports a failure (a warning event) rather than progress.
fn is_failure(reason: &str) -> bool {
    use conditions::reason::*;
    !matches!(
        reason,
        MOVER_RUNNING
            | WAITING_FOR_PVC
            | WAITING_FOR_FIRST_CONSUMER
            | REBINDING
            | SNAPSHOT_RESTORED
            | EMPTY_NO_SNAPSHOT
            | EMPTY_NO_REPOSITORY
    )
}
