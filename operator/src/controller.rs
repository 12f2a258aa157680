//! What the ReplicationSource and ReplicationDestination controllers share around their
//! reconcile logic: running a kube `Controller` that owns the Jobs and PVCs it makes, writing
//! status by server-side apply, retrying API errors, and the guards on a stale cache and a
//! delete that finds nothing. The reconcile itself is [`crate::reconcile`].

use std::{fmt::Debug, sync::Arc, time::Duration};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{PersistentVolumeClaim, Pod},
};
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    core::NamespaceResourceScope,
    runtime::{
        WatchStreamExt,
        controller::{Action, Controller, Error as ControllerError},
        reflector::{self, ObjectRef},
        watcher,
    },
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::json;
use sluice_api::labels;
use tokio::sync::mpsc;

use crate::{
    cache::{self, Feed},
    context::Context,
    metrics::ObjectLabels,
    queue::Syncer,
    reconcile::{self, Kind},
    volume::VolumeSnapshot,
};

/// The kinds the controllers reconcile: namespaced, statically typed custom resources.
pub trait Synced:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> Synced for K where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static
{
}

/// Wakes the reconciles of objects their repository's queue lets start, through each
/// controller's `reconcile_on` stream. Bounded: a wake-up that finds its channel full is
/// dropped, and the queued object's own timer looks again.
#[derive(Clone, Debug)]
pub struct Wake {
    channels: Vec<(String, mpsc::Sender<(String, String)>)>,
}

/// Wake-ups buffered for one controller.
const WAKE_BUFFER: usize = 1024;

impl Wake {
    /// One channel for each of `kinds`; the receivers go to [`run`] in the same order.
    pub fn channels<const N: usize>(
        kinds: [&str; N],
    ) -> (Self, [mpsc::Receiver<(String, String)>; N]) {
        let pairs = kinds.map(|kind| (kind.to_string(), mpsc::channel(WAKE_BUFFER)));
        let mut channels = Vec::with_capacity(N);
        let receivers = pairs.map(|(kind, (sender, receiver))| {
            channels.push((kind, sender));
            receiver
        });
        (Self { channels }, receivers)
    }

    /// Asks for a reconcile of each of `syncers`.
    pub fn wake(&self, syncers: &[Syncer]) {
        for syncer in syncers {
            let channel = self.channels.iter().find(|(kind, _)| *kind == syncer.kind);
            if let Some((_, sender)) = channel
                && sender
                    .try_send((syncer.namespace.clone(), syncer.name.clone()))
                    .is_err()
            {
                tracing::debug!(%syncer, "wake-up dropped; its queue timer looks again");
            }
        }
    }
}

/// How long after an API error a reconcile is tried again.
const API_ERROR_RETRY: Duration = Duration::from_secs(15);

/// Runs the controller for `K` until the stream ends (shutdown): every object of `K` in the
/// cluster, woken by changes to it, through `feed` by changes to the Jobs, Pods, PVCs and
/// VolumeSnapshots Sluice made for it (mapped by the owner label they carry), and through
/// `woken` when its repository's queue lets its sync start.
pub async fn run<K: Kind>(ctx: Arc<Context>, feed: Feed, woken: mpsc::Receiver<(String, String)>) {
    let label = K::PROFILE.owner_label;
    let wakeups = futures::stream::unfold(woken, |mut woken| async move {
        let (namespace, name) = woken.recv().await?;
        Some((ObjectRef::<K>::new(&name).within(&namespace), woken))
    });
    // The objects as Controller::new would watch them, without their managed fields: nothing
    // reads them, and with Sluice's status applies they were a large part of each object held.
    let (reader, writer) = reflector::store();
    let written = ctx.clone();
    let objects = watcher(
        Api::<K>::all(ctx.client.clone()),
        watcher::Config::default(),
    )
    .modify(|object| object.managed_fields_mut().clear())
    .reflect(writer)
    .applied_objects()
    .inspect_ok(move |object| K::written(&written).seen(object));
    let controller = Controller::for_stream(objects, reader)
        .reconcile_on(wakeups)
        .watches_shared_stream(feed.jobs, cache::owner::<K, Job>(label))
        .watches_shared_stream(feed.pods, cache::owner::<K, Pod>(label))
        .watches_shared_stream(feed.claims, cache::owner::<K, PersistentVolumeClaim>(label));
    let controller = match feed.snapshots {
        Some(snapshots) => {
            controller.watches_shared_stream(snapshots, cache::owner::<K, VolumeSnapshot>(label))
        }
        None => controller,
    };
    controller
        .run(reconcile::reconcile::<K>, error_policy::<K>, ctx.clone())
        .for_each(|result| {
            match result {
                // Deleted: whatever place it held in a repository's queue is free.
                Err(ControllerError::ObjectNotFound(object)) => {
                    let name = object.name.clone();
                    let namespace = object.namespace.clone().unwrap_or_default();
                    K::written(&ctx).forget(&ObjectRef::new(&name).within(&namespace));
                    ctx.release(&Syncer {
                        kind: K::kind(&()).into_owned(),
                        namespace,
                        name,
                    });
                }
                Err(error) => tracing::warn!(kind = %K::kind(&()), %error, "reconcile failed"),
                Ok(_) => {}
            }
            std::future::ready(())
        })
        .await;
}

/// Retries a reconcile that failed on an API error.
fn error_policy<K: Synced>(object: Arc<K>, error: &kube::Error, ctx: Arc<Context>) -> Action {
    let kind = K::kind(&());
    ctx.metrics.reconcile_failed(&kind);
    tracing::warn!(
        %error,
        %kind,
        name = %object.name_any(),
        namespace = ?object.namespace(),
        "reconcile error; retrying in {}s",
        API_ERROR_RETRY.as_secs()
    );
    Action::requeue(API_ERROR_RETRY)
}

/// Writes `status` by server-side apply under Sluice's field manager, unless it equals
/// `current`, what the cached object already has. A missing status compares as the default one:
/// a reconcile that decided to write nothing hands back the cached status, and applying an empty
/// status would clear the fields Sluice owns.
///
/// The patch names the resource version the status was decided on, so the API server refuses
/// it when the object changed since: a status decided on a cache that is behind (one without
/// the sync that just started) would otherwise remove fields of that sync. Returns `false`
/// when refused; the caller looks again once the watch caught up. The object as written is
/// what the next reconciles read until the watch delivers it ([`crate::unseen`]).
pub async fn write_status<K, S>(
    ctx: &Context,
    object: &K,
    current: &S,
    status: &S,
) -> kube::Result<bool>
where
    K: Kind,
    S: Serialize + PartialEq,
{
    if current == status {
        return Ok(true);
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &object.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": { "resourceVersion": object.meta().resource_version },
        "status": status,
    });
    let applied = api
        .patch_status(
            &object.name_any(),
            &PatchParams::apply(labels::FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await;
    match applied {
        Ok(mut written) => {
            written.managed_fields_mut().clear();
            K::written(ctx).wrote(written);
            Ok(true)
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {
            K::written(ctx).forget(&ObjectRef::from_obj(object));
            Ok(false)
        }
        Err(error) => Err(error),
    }
}

/// The labels of `object`'s per-object metrics.
pub fn object_labels<K: Synced>(object: &K) -> ObjectLabels {
    ObjectLabels {
        kind: K::kind(&()).into_owned(),
        namespace: object.namespace().unwrap_or_default(),
        name: object.name_any(),
    }
}

/// Whether the controller's cached `object` is the API server's current version. A reconcile
/// woken by a Job event can read an object from before the last status write: from before a
/// sync ended (its Job then looks "missing"), or before one started (so it looks due again).
/// Acting on that would run a sync twice, so Jobs and plans are only created from a current
/// object; otherwise the reconcile waits for the watch to catch up.
pub async fn is_current<K: Synced>(object: &K, client: &kube::Client) -> kube::Result<bool> {
    let api: Api<K> = Api::namespaced(client.clone(), &object.namespace().unwrap_or_default());
    let fresh = api.get_opt(&object.name_any()).await?;
    Ok(fresh.is_some_and(|fresh| fresh.meta().resource_version == object.meta().resource_version))
}

/// Treats "already gone" as success.
pub fn ignore_not_found(result: kube::Result<()>) -> kube::Result<()> {
    match result {
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        other => other,
    }
}
