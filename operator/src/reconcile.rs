//! One reconcile of either kind: observe, [`decide`], apply.
//!
//! [`Kind`] is what a ReplicationSource and a ReplicationDestination supply around the shared
//! state machine: their words, how they observe and prepare their volumes, their Job, and what a
//! finished sync records of its own. Everything else happens here, once for both: reading the
//! Secret when the decision needs it, the stale-cache guard, creating and deleting objects,
//! the status write, events, metrics and log lines.

use std::{future::Future, sync::Arc};

use jiff::Timestamp;
use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{PersistentVolumeClaim, Secret},
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::DeleteParams,
    core::{
        NamespaceResourceScope,
        object::{HasSpec, HasStatus},
    },
    runtime::{controller::Action, events::EventType, reflector::ObjectRef},
};
use serde::Serialize;
use sluice_api::{
    SyncAction, SyncPlan, SyncSpec, SyncStatus,
    conditions::{self, reason},
    labels,
    mover_result::MoverResult,
};

use crate::{
    breaker::{self, Gate, ProbeEnd},
    cache::Owned,
    context::{Context, Result},
    controller::{Synced, ignore_not_found, is_current, object_labels, write_status},
    decide::{
        self, Decision, Mount, NewObject, Observed, Outcome, Phase, Progress, STEP, Spec, Step,
        Untriggered, Verdict,
    },
    job::{self, JobMeta, MoverJobParams, RepositoryAccess},
    metrics::Metrics,
    plan,
    queue::{self, Admission, Syncer},
    secret,
    spread::Identity,
    status::{self, Moment},
    unseen::Unseen,
    volume::{self, Owner, VolumeSnapshot},
};

/// What a kind supplies around the shared sync state machine. Its spec and status share their
/// sync fields through [`SyncSpec`] and [`SyncStatus`].
pub trait Kind:
    Synced
    + Serialize
    + HasSpec<Spec: SyncSpec + Sync>
    + HasStatus<
        Status: Clone
                    + Default
                    + PartialEq
                    + Serialize
                    + Send
                    + Sync
                    + AsRef<SyncStatus>
                    + AsMut<SyncStatus>,
    >
{
    /// The kind's word for a run, owner label and rule without a trigger.
    const PROFILE: Profile;

    /// When the object syncs without a trigger: the kind's rule, unless the object says
    /// otherwise.
    fn untriggered(&self) -> Untriggered {
        Self::PROFILE.untriggered
    }
    /// Why the kind's own spec fields cannot be planned, in one line; `None` when they can.
    fn invalid(&self) -> Option<String> {
        None
    }
    /// The plan of a run starting at `now`.
    fn plan(&self, now: Timestamp) -> SyncPlan;
    /// What `plan` does, for the event that it started: its actions, its target.
    fn describe(&self, plan: &SyncPlan) -> String;
    /// Before the Job exists: observes the volume it mounts and says what it needs next.
    fn prepare(
        &self,
        plan: &SyncPlan,
        scope: &Scope,
    ) -> impl Future<Output = Result<Step<Mount>>> + Send;
    /// The claim the running Job mounts, when Sluice made it and its binding is worth watching:
    /// its name, what it is to the user, and the action of the event if it does not bind.
    fn mounted_claim(&self, plan: &SyncPlan) -> Option<(String, &'static str, &'static str)>;
    /// After the mover reported `result`: how the kind reads it, and what publishing it needs.
    fn conclude(
        &self,
        plan: &SyncPlan,
        result: MoverResult,
        scope: &Scope,
    ) -> impl Future<Output = Result<Progress>> + Send;
    /// The mover Job of `plan`.
    fn job(&self, plan: &SyncPlan, params: &MoverJobParams) -> Job;
    /// What reaching its repository takes (the Secret, a CA, the mover's Pod settings), for the
    /// circuit breaker's probe Job.
    fn access(&self) -> RepositoryAccess<'_>;
    /// Records the kind's own fields of a finished run in `status`; pure.
    fn record(&self, status: &mut Self::Status, finished: &Finished) -> Recorded;
    /// After every status transition: conditions the kind's own fields hold up whatever the
    /// last sync did (a failed restore test keeps `Degraded`); pure.
    fn hold_conditions(
        &self,
        _status: &mut Self::Status,
        _generation: Option<i64>,
        _now: Timestamp,
    ) {
    }
    /// Updates the kind's own metrics from a status just written.
    fn report(&self, _status: &Self::Status, _metrics: &Metrics) {}
    /// Where `ctx` holds the kind's status writes its watch has not delivered yet.
    fn written(ctx: &Context) -> &Unseen<Self>;
}

/// A kind's word for one run, from which its messages and events are named, the label naming
/// the owner of what it creates, and its rule without a trigger.
#[derive(Clone, Copy, Debug)]
pub struct Profile {
    /// What one run is called in messages: `sync` or `restore`.
    pub noun: &'static str,
    /// The label naming the owner on everything a sync creates.
    pub owner_label: &'static str,
    /// When the kind syncs without a trigger.
    pub untriggered: Untriggered,
}

impl Profile {
    /// A ReplicationSource's: a backup.
    pub const BACKUP: Self = Self {
        noun: "sync",
        owner_label: labels::REPLICATION_SOURCE,
        untriggered: Untriggered::Continuously,
    };

    /// A ReplicationDestination's: a restore.
    pub const RESTORE: Self = Self {
        noun: "restore",
        owner_label: labels::REPLICATION_DESTINATION,
        untriggered: Untriggered::OncePerGeneration,
    };

    /// The action of the kind's events: the noun capitalized, `Sync` or `Restore`.
    pub fn action(&self) -> String {
        let mut chars = self.noun.chars();
        chars
            .next()
            .map(|first| first.to_uppercase().chain(chars).collect())
            .unwrap_or_default()
    }

    /// The reason of the event that a run started: `SyncStarted` or `RestoreStarted`.
    pub fn started(&self) -> String {
        format!("{}Started", self.action())
    }
}

/// Where a kind observes and creates the objects of a sync: the client, the object's namespace,
/// the owner of what it creates and the stores of what Sluice owns.
pub struct Scope {
    /// API client.
    pub client: Client,
    /// The object's namespace.
    pub namespace: String,
    /// Owner reference and labels.
    pub owner: Owner,
    /// What Sluice owns, as watched.
    pub owned: Owned,
}

impl Scope {
    /// The namespaced API of `T`s here.
    pub fn api<T>(&self) -> Api<T>
    where
        T: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }
}

/// A finished run, as a kind records it.
#[derive(Clone, Copy, Debug)]
pub struct Finished<'a> {
    /// Its plan.
    pub plan: &'a SyncPlan,
    /// How it went.
    pub outcome: &'a Outcome,
    /// When it was recorded.
    pub now: Timestamp,
}

/// What a kind recorded of a finished run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// One line for the condition and the event of a success.
    pub summary: String,
    /// Objects of the run (besides its Job) to delete now.
    pub temporary: Vec<Temporary>,
    /// A Warning event the run's own result calls for (reason, note), such as a failed
    /// restore test of a backup that succeeded.
    pub warning: Option<(&'static str, String)>,
}

/// An object a finished run no longer needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Temporary {
    /// A PersistentVolumeClaim.
    Claim(String),
    /// A VolumeSnapshot.
    Snapshot(String),
}

/// Takes the next step for one object of kind `K`.
pub async fn reconcile<K: Kind>(object: Arc<K>, ctx: Arc<Context>) -> Result<Action> {
    ctx.metrics.reconciled(&K::kind(&()));
    let now = Timestamp::now();
    // The cache can be behind this controller's own last status write; decide on the newer.
    let reference = ObjectRef::from_obj(object.as_ref());
    let object = K::written(&ctx)
        .newest(&reference, Some(object.clone()))
        .unwrap_or(object);
    let object = object.as_ref();
    let cached = object.status().cloned().unwrap_or_default();
    let scope = Scope {
        client: ctx.client.clone(),
        namespace: object.namespace().unwrap_or_default(),
        owner: Owner::of(object, K::PROFILE.owner_label),
        owned: ctx.owned.clone(),
    };
    let sync_spec = object.spec();
    let spec = Spec {
        generation: object.meta().generation,
        created: object.meta().creation_timestamp.as_ref().map(|t| t.0),
        paused: sync_spec.paused(),
        trigger: sync_spec.trigger(),
        untriggered: object.untriggered(),
        identity: Identity::of(&scope.namespace, &object.name_any()),
        invalid: object.invalid(),
    };
    let status: &SyncStatus = cached.as_ref();
    let phase = match &status.sync_plan {
        Some(plan) => Phase::Syncing {
            plan,
            progress: Box::new(observe_progress(object, plan, &scope).await?),
        },
        None => Phase::Idle { secret: None },
    };
    let mut observed = Observed {
        now,
        spec,
        status,
        phase,
    };
    let mut decision = decide::decide(&observed);
    if matches!(decision, Decision::ReadSecret) {
        let secrets: Api<Secret> = scope.api();
        let found = secrets.get_opt(sync_spec.repository()).await?;
        let seen = secret::seen(&scope.namespace, sync_spec.repository(), found.as_ref());
        observed.phase = Phase::Idle { secret: Some(seen) };
        decision = decide::decide(&observed);
    }
    let syncer = Syncer {
        kind: K::kind(&()).into_owned(),
        namespace: scope.namespace.clone(),
        name: object.name_any(),
    };
    let starting = match (&observed.phase, &decision) {
        (Phase::Idle { secret }, Decision::Start { .. }) => {
            let mut plan = object.plan(now);
            plan.repository = secret.as_ref().and_then(|seen| seen.repository.clone());
            Some(plan)
        }
        (Phase::Syncing { plan, .. }, _) => {
            hold(&ctx, &syncer, plan);
            None
        }
        _ => None,
    };
    if let Some(plan) = &starting {
        decision = gate(object, &ctx, &syncer, plan, decision, &scope, now).await?;
        if matches!(decision, Decision::Start { .. }) {
            decision = admit(&ctx, &syncer, plan, decision, now);
        }
    }
    let starting = starting.filter(|_| matches!(decision, Decision::Start { .. }));
    apply(
        object, &cached, decision, starting, &syncer, &scope, &ctx, now,
    )
    .await
}

/// Asks the repository's circuit breaker whether the sync of `plan` may go on to the queue. The
/// object that runs the breaker's probe first reads how its probe ended; when a probe is due,
/// this object runs it (its Job is created here). A parked sync turns `start` into
/// [`Decision::Parked`].
#[allow(clippy::too_many_arguments)]
async fn gate<K: Kind>(
    object: &K,
    ctx: &Context,
    syncer: &Syncer,
    plan: &SyncPlan,
    start: Decision,
    scope: &Scope,
    now: Timestamp,
) -> Result<Decision> {
    let Some(repository) = &plan.repository else {
        return Ok(start);
    };
    conclude_probe(object, ctx, syncer, scope, now).await?;
    let gate = ctx.breakers().gate(repository, syncer, now);
    let parked = match gate {
        Gate::Pass => return Ok(start),
        Gate::Parked(parked) => parked,
        Gate::Probe { job_name, parked } => {
            let started_at = Time(now);
            let meta = JobMeta {
                name: &job_name,
                started_at: &started_at,
                defaults: &ctx.mover,
                owner: &scope.owner.reference,
                owner_label: (K::PROFILE.owner_label, object.name_any()),
            };
            let probe = job::probe_job(meta, object.access());
            // A probe whose creation failed is given up at its deadline.
            scope.owned.create(&scope.api(), &probe).await?;
            tracing::info!(
                namespace = %scope.namespace,
                name = %syncer.name,
                job = %job_name,
                %repository,
                failed_probes = parked.failed_probes,
                "probing an unreachable repository"
            );
            parked
        }
    };
    Ok(Decision::Parked {
        repository: repository.clone(),
        parked,
    })
}

/// If this object runs a probe and it ended: tells the breaker, deletes the probe Job, and, when
/// the backend answered, wakes the syncs it parked and says so.
async fn conclude_probe<K: Kind>(
    object: &K,
    ctx: &Context,
    syncer: &Syncer,
    scope: &Scope,
    now: Timestamp,
) -> Result<()> {
    let Some((repository, probe)) = ctx.breakers().probe_of(syncer) else {
        return Ok(());
    };
    let Some(job) = scope.owned.job(&scope.namespace, &probe.job_name) else {
        return Ok(());
    };
    let Some(result) = scope.owned.mover_result(&scope.namespace, &job) else {
        return Ok(());
    };
    let reached = result.error_class.is_none();
    let message = result.message.unwrap_or_default();
    let ended = ctx
        .breakers()
        .probe_ended(&repository, &probe.job_name, reached, &message, now);
    let jobs: Api<Job> = scope.api();
    ignore_not_found(
        jobs.delete(&probe.job_name, &DeleteParams::background())
            .await
            .map(drop),
    )?;
    scope
        .owned
        .deleted::<Job>(&scope.namespace, &probe.job_name);
    let Some(ended) = ended else {
        return Ok(());
    };
    ctx.metrics.probe_ended(&repository, reached);
    match ended {
        ProbeEnd::StillDown {
            next_probe,
            failed_probes,
        } => tracing::warn!(
            %repository,
            job = %probe.job_name,
            failed_probes,
            %next_probe,
            "repository still unreachable: {message}"
        ),
        ProbeEnd::Healed { since, woken } => {
            ctx.publish_breakers();
            let note = healed_note(&repository, since, now, woken.len(), &message);
            tracing::info!(%repository, job = %probe.job_name, "{note}");
            ctx.event(
                object,
                EventType::Normal,
                reason::REPOSITORY_AVAILABLE,
                "Probe",
                note,
            )
            .await;
            ctx.wake.wake(&woken);
        }
    }
    Ok(())
}

/// The event and log line of a repository that answers again.
fn healed_note(
    repository: &str,
    since: Timestamp,
    now: Timestamp,
    parked: usize,
    how: &str,
) -> String {
    let seconds = now.duration_since(since).as_secs().max(0);
    format!(
        "repository {repository} answers again after {seconds} s unreachable ({how}); \
         {parked} parked syncs resume"
    )
}

/// After a sync into `repository` ended: a failure that says the backend is unreachable opens
/// its breaker (a Warning event and log line say so, once per outage); a success closes it and
/// wakes what it parked.
async fn update_breaker<K: Kind>(
    object: &K,
    ctx: &Context,
    repository: &str,
    outcome: &Outcome,
    now: Timestamp,
) {
    let failed = match &outcome.verdict {
        Verdict::Failed { .. } => outcome.result.error_class,
        Verdict::Succeeded { .. } => None,
    };
    match failed {
        Some(class) if breaker::trips(class) => {
            let cause = outcome.result.message.clone().unwrap_or_default();
            let opened = ctx.breakers().trip(repository, &cause, now);
            if !opened {
                return;
            }
            ctx.publish_breakers();
            let note = format!(
                "repository {repository} is unreachable ({cause}): syncs into it are parked \
                 without Jobs until a probe reaches it"
            );
            tracing::warn!(%repository, "{note}");
            ctx.event(
                object,
                EventType::Warning,
                reason::REPOSITORY_UNAVAILABLE,
                "Sync",
                note,
            )
            .await;
        }
        Some(_) => {}
        None => {
            let woken = ctx.breakers().close(repository);
            if let Some(woken) = woken {
                ctx.publish_breakers();
                tracing::info!(
                    %repository,
                    parked = woken.len(),
                    "a sync reached the repository: its breaker is closed, parked syncs resume"
                );
                ctx.wake.wake(&woken);
            }
        }
    }
}

/// Asks the repository's queue whether the sync of `plan` starts now; one that must wait turns
/// `start` into [`Decision::Queued`].
fn admit(
    ctx: &Context,
    syncer: &Syncer,
    plan: &SyncPlan,
    start: Decision,
    now: Timestamp,
) -> Decision {
    let Some(repository) = &plan.repository else {
        return start;
    };
    let sync = queue::Sync {
        syncer: syncer.clone(),
        exclusive: plan.exclusive(),
    };
    let (admission, max, loads) = {
        let mut queues = ctx.queues();
        let admission = queues.request(repository, &sync, now);
        (admission, queues.max(), queues.loads())
    };
    ctx.metrics.repository_loads(&loads);
    match admission {
        Admission::Start => start,
        Admission::Queued(place) => Decision::Queued {
            repository: repository.clone(),
            place,
            max,
        },
    }
}

/// Counts the sync of `plan`, in progress, in its repository's queue: after a restart, or when
/// its start was admitted by a reconcile whose status write the API server refused.
fn hold(ctx: &Context, syncer: &Syncer, plan: &SyncPlan) {
    let Some(repository) = &plan.repository else {
        return;
    };
    let sync = queue::Sync {
        syncer: syncer.clone(),
        exclusive: plan.exclusive(),
    };
    let loads = {
        let mut queues = ctx.queues();
        queues.hold(repository, &sync).then(|| queues.loads())
    };
    if let Some(loads) = loads {
        ctx.metrics.repository_loads(&loads);
    }
}

/// Where the sync of `plan` stands: its Job, the Job's Pods and the volumes it needs.
async fn observe_progress<K: Kind>(object: &K, plan: &SyncPlan, scope: &Scope) -> Result<Progress> {
    let namespace = &scope.namespace;
    let Some(job) = scope.owned.job(namespace, &plan.job_name) else {
        return Ok(Progress::Preparing(object.prepare(plan, scope).await?));
    };
    if let Some(result) = scope.owned.mover_result(namespace, &job) {
        return object.conclude(plan, result, scope).await;
    }
    let unbound = object
        .mounted_claim(plan)
        .and_then(|(claim, role, action)| {
            let found = scope.owned.claim(namespace, &claim)?;
            (!volume::is_bound(&found)).then(|| volume::unbound(&claim, role, action))
        });
    Ok(Progress::Running { unbound })
}

/// Applies `decision` (with the plan of a sync it starts): the stale-cache guard, objects
/// created or deleted, the status written, then events, metrics and log lines, and the place in
/// its repository's queue given up when the object neither runs nor waits.
#[allow(clippy::too_many_arguments)]
async fn apply<K: Kind>(
    object: &K,
    cached: &K::Status,
    decision: Decision,
    starting: Option<SyncPlan>,
    syncer: &Syncer,
    scope: &Scope,
    ctx: &Context,
    now: Timestamp,
) -> Result<Action> {
    if decision.changes_objects() && !is_current(object, &ctx.client).await? {
        // The cache may be behind a sync that just started or ended; wait for the watch.
        K::written(ctx).forget(&ObjectRef::from_obj(object));
        return Ok(Action::requeue(STEP));
    }
    let plan = starting.as_ref().or(cached.as_ref().sync_plan.as_ref());
    let mut status = cached.clone();
    let recorded = match (&decision, plan) {
        (Decision::Finish(outcome), Some(plan)) => {
            let finished = Finished { plan, outcome, now };
            object.record(&mut status, &finished)
        }
        _ => Recorded::default(),
    };
    let moment = Moment {
        now,
        generation: object.meta().generation,
        noun: K::PROFILE.noun,
        plan,
        manual_trigger: object.spec().trigger().is_some_and(|t| t.manual.is_some()),
        summary: &recorded.summary,
    };
    status::transition(status.as_mut(), &decision, &moment);
    object.hold_conditions(&mut status, moment.generation, now);

    match (&decision, plan) {
        (Decision::Create(NewObject::Claim(claim)), _) => {
            scope.owned.create(&scope.api(), claim.as_ref()).await?;
        }
        (Decision::Create(NewObject::Snapshot(snapshot)), _) => {
            scope
                .owned
                .create(&scope.api::<VolumeSnapshot>(), snapshot.as_ref())
                .await?;
        }
        (Decision::CreateJob(mount), Some(plan)) => {
            let params = MoverJobParams {
                defaults: ctx.mover.clone(),
                owner: scope.owner.reference.clone(),
                owner_label: (K::PROFILE.owner_label, object.name_any()),
                claim: mount.claim.clone(),
                node_name: mount.node.clone(),
                block: mount.block,
                scratch: mount.scratch.as_deref().cloned(),
            };
            scope
                .owned
                .create(&scope.api(), &object.job(plan, &params))
                .await?;
        }
        (Decision::Finish(_), Some(plan)) => delete_run(plan, &recorded.temporary, scope).await?,
        _ => {}
    }
    if !write_status(ctx, object, cached, &status).await? {
        return Ok(Action::requeue(STEP));
    }
    // The breaker first: the sync that releases its place in line may have found the
    // repository unreachable, and the next in line, woken by the release, must be parked.
    if let (Decision::Finish(outcome), Some(repository)) =
        (&decision, plan.and_then(|plan| plan.repository.as_deref()))
    {
        update_breaker(object, ctx, repository, outcome, now).await;
    }
    let syncing = cached.as_ref().sync_plan.is_some();
    let in_line = matches!(decision, Decision::Start { .. } | Decision::Queued { .. });
    if matches!(decision, Decision::Finish(_)) || (!syncing && !in_line) {
        ctx.release(syncer);
    }
    if let Decision::Parked { .. } = &decision
        && let Some(message) = newly_parked(cached.as_ref(), status.as_ref())
    {
        ctx.event(
            object,
            EventType::Warning,
            reason::REPOSITORY_UNAVAILABLE,
            &K::PROFILE.action(),
            message,
        )
        .await;
    }
    announce(object, &decision, &moment, ctx).await;
    if let Some((reason, note)) = recorded.warning {
        let labels = object_labels(object);
        tracing::warn!(
            namespace = %labels.namespace,
            name = %labels.name,
            reason,
            "{note}"
        );
        ctx.event(
            object,
            EventType::Warning,
            reason,
            &K::PROFILE.action(),
            note,
        )
        .await;
    }
    if matches!(decision, Decision::Finish(_)) {
        object.report(&status, &ctx.metrics);
        ctx.metrics.sync_ended(&object_labels(object));
    }
    Ok(decision
        .requeue(now)
        .map_or_else(Action::await_change, Action::requeue))
}

/// The Ready message of an object parked just now (its cached status did not say so yet), for
/// its one Warning event per outage.
fn newly_parked(before: &SyncStatus, after: &SyncStatus) -> Option<String> {
    let parked = |status: &SyncStatus| {
        status::condition(&status.conditions, conditions::READY)
            .filter(|c| c.reason == reason::REPOSITORY_UNAVAILABLE)
            .map(|c| c.message.clone())
    };
    match parked(before) {
        Some(_) => None,
        None => parked(after),
    }
}

/// Deletes a finished run's Job (with its Pods) and the temporary objects the kind named.
async fn delete_run(plan: &SyncPlan, temporary: &[Temporary], scope: &Scope) -> Result<()> {
    let background = DeleteParams::background();
    let jobs: Api<Job> = scope.api();
    ignore_not_found(jobs.delete(&plan.job_name, &background).await.map(drop))?;
    scope.owned.deleted::<Job>(&scope.namespace, &plan.job_name);
    for object in temporary {
        let deleted = match object {
            Temporary::Claim(name) => {
                let claims: Api<PersistentVolumeClaim> = scope.api();
                let deleted = claims.delete(name, &background).await.map(drop);
                scope
                    .owned
                    .deleted::<PersistentVolumeClaim>(&scope.namespace, name);
                deleted
            }
            Temporary::Snapshot(name) => {
                let snapshots = scope.api::<VolumeSnapshot>();
                let deleted = snapshots.delete(name, &background).await.map(drop);
                scope
                    .owned
                    .deleted::<VolumeSnapshot>(&scope.namespace, name);
                deleted
            }
        };
        ignore_not_found(deleted)?;
    }
    Ok(())
}

/// Tells people what happened, once the status says so: events, metrics and log lines.
async fn announce<K: Kind>(object: &K, decision: &Decision, moment: &Moment<'_>, ctx: &Context) {
    let labels = object_labels(object);
    let job = moment.plan.map_or("", |plan| plan.job_name.as_str());
    let action = K::PROFILE.action();
    match decision {
        Decision::Start { missed, .. } => {
            ctx.metrics.missed(&labels, *missed);
            ctx.metrics.sync_started(&labels);
            let actions = moment
                .plan
                .map(|plan| plan::actions_env(&plan.actions))
                .unwrap_or_default();
            tracing::info!(
                namespace = %labels.namespace,
                name = %labels.name,
                job,
                actions = %actions,
                missed,
                "{} started",
                K::PROFILE.noun
            );
            if let Some(plan) = moment.plan {
                let note = format!("started {job} ({})", object.describe(plan));
                let started = K::PROFILE.started();
                ctx.event(object, EventType::Normal, &started, &action, note)
                    .await;
            }
        }
        Decision::Wait { waiting, .. } if decision.warns(moment.now) => {
            let note = waiting.warning.clone();
            ctx.event(
                object,
                EventType::Warning,
                waiting.reason,
                waiting.action,
                note,
            )
            .await;
        }
        Decision::Finish(Outcome {
            result,
            verdict: Verdict::Succeeded { .. },
            ..
        }) => {
            let seconds = moment.plan.map_or(0.0, |plan| {
                moment.now.duration_since(plan.started_at.0).as_secs_f64()
            });
            let backed_up = moment
                .plan
                .is_some_and(|plan| plan.actions.contains(&SyncAction::Backup));
            let bytes_added = if backed_up { result.bytes_added } else { 0 };
            tracing::info!(
                namespace = %labels.namespace,
                name = %labels.name,
                job,
                snapshot = result.snapshot_id.as_deref().unwrap_or(""),
                bytes_added,
                seconds,
                "{} succeeded: {}",
                K::PROFILE.noun,
                moment.summary
            );
            let at = moment.now.as_second() as f64;
            let snapshot_bytes = backed_up.then_some(result.total_bytes);
            ctx.metrics
                .sync_succeeded(&labels, at, seconds, bytes_added, snapshot_bytes);
            let summary = moment.summary.to_string();
            ctx.event(
                object,
                EventType::Normal,
                reason::SYNC_SUCCEEDED,
                &action,
                summary,
            )
            .await;
        }
        _ => {}
    }
    if let Some(report) = status::failure_report(decision, moment) {
        let action = match decision {
            Decision::SecretInvalid { .. } => "Validate",
            _ => action.as_str(),
        };
        tracing::warn!(
            kind = %labels.kind,
            namespace = %labels.namespace,
            name = %labels.name,
            reason = report.reason,
            failures = report.failures,
            "{action} failed: {}",
            report.detail(moment.now)
        );
        let at = moment.now.as_second() as f64;
        ctx.metrics.sync_failed(&labels, at, report.reason);
        ctx.event(
            object,
            EventType::Warning,
            report.reason,
            action,
            report.message,
        )
        .await;
    }
}
