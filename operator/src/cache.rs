//! What the operator owns, watched once for both controllers: mover Jobs and their Pods, and
//! the PVCs and VolumeSnapshots syncs create.
//!
//! Each kind is one label-selected watch, so only Sluice's objects are held. Its store answers
//! every reconcile's questions about them without an API call, and its events wake the owner's
//! reconcile (mapped by the owner label every such object carries) instead of a poll: an
//! in-flight sync costs nothing until something about it changes. Managed fields, and the specs
//! of Jobs and Pods, are dropped from what is held; nothing reads them.
//!
//! What Sluice creates is read from its create until the watch delivers it ([`Unseen`]), so a
//! reconcile right after a create does not take the object for missing.
//!
//! Each watch hands every change to each controller as the object itself ([`Changes`]), not as
//! kube-runtime's shared-reflector `ReflectHandle`, which passes a reference and looks the
//! object up in the store: kube-runtime 5.0's returns `Pending` without a wake-up when the
//! object was deleted in between, and that controller's feed then stalls, and with it the
//! wake-ups of every later change (a mover Pod's end noticed only by the 5-minute safety timer
//! in the 5,000-source benchmark).

use std::{fmt::Debug, pin::pin, sync::Arc};

use futures::{
    StreamExt,
    future::BoxFuture,
    stream::{self, BoxStream},
};
use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{Container, PersistentVolumeClaim, Pod, PodSpec},
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{GroupVersionKind, PostParams},
    runtime::{
        WatchStreamExt,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use serde::{Serialize, de::DeserializeOwned};
use sluice_api::{labels, mover_result::MoverResult};
use tokio::sync::mpsc;

use crate::{
    mover,
    unseen::Unseen,
    volume::{self, VolumeSnapshot},
};

/// How many changes a store buffers for its slowest subscriber before the watch waits.
const FEED_BUFFER: usize = 1024;

/// What a watched kind is: a Kubernetes object the stores can hold and hand out.
pub trait Object:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
}

impl<K> Object for K where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
}

/// One controller's stream of the objects of one kind that changed, as they were at the change.
pub type Changes<K> = BoxStream<'static, Arc<K>>;

/// The stores of what Sluice owns, shared by both controllers.
#[derive(Clone)]
pub struct Owned {
    jobs: Watched<Job>,
    pods: Store<Pod>,
    claims: Watched<PersistentVolumeClaim>,
    /// `None` when the cluster has no VolumeSnapshot API (no snapshot controller installed).
    snapshots: Option<Watched<VolumeSnapshot>>,
}

/// The store of a kind Sluice creates, with its creates the watch has not delivered yet.
#[derive(Clone)]
pub struct Watched<K: Object> {
    store: Store<K>,
    unseen: Arc<Unseen<K>>,
    trim: fn(&mut K),
}

impl<K: Object> Watched<K> {
    /// [`shared`], with Sluice's creates held until the watch delivers them.
    fn watch(
        api: Api<K>,
        selector: &str,
        subscribers: usize,
        trim: fn(&mut K),
    ) -> (Self, Vec<Changes<K>>, BoxFuture<'static, ()>) {
        let unseen = Arc::new(Unseen::default());
        let (store, feeds, watch) = shared(api, selector, subscribers, trim, Some(unseen.clone()));
        (
            Self {
                store,
                unseen,
                trim,
            },
            feeds,
            watch,
        )
    }

    fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        let reference = ObjectRef::new(name).within(namespace);
        self.unseen.newest(&reference, self.store.get(&reference))
    }
}

/// The kinds Sluice creates and holds in [`Owned`]'s stores.
pub trait OwnedKind: Object<Scope = kube::core::NamespaceResourceScope> + Serialize {
    /// Where `owned` holds this kind: `None` for VolumeSnapshots on a cluster without them.
    fn watched(owned: &Owned) -> Option<&Watched<Self>>;
}

impl OwnedKind for Job {
    fn watched(owned: &Owned) -> Option<&Watched<Self>> {
        Some(&owned.jobs)
    }
}

impl OwnedKind for PersistentVolumeClaim {
    fn watched(owned: &Owned) -> Option<&Watched<Self>> {
        Some(&owned.claims)
    }
}

impl OwnedKind for VolumeSnapshot {
    fn watched(owned: &Owned) -> Option<&Watched<Self>> {
        owned.snapshots.as_ref()
    }
}

/// One controller's feed of changes to what Sluice owns.
pub struct Feed {
    /// Mover Jobs.
    pub jobs: Changes<Job>,
    /// Mover Pods.
    pub pods: Changes<Pod>,
    /// Copies and restore targets.
    pub claims: Changes<PersistentVolumeClaim>,
    /// Snapshots of sources and published restores.
    pub snapshots: Option<Changes<VolumeSnapshot>>,
}

impl Owned {
    /// Starts watching what Sluice owns: the stores, one [`Feed`] for each of `N` controllers,
    /// and the future that drives the watches, to run as long as the controllers do.
    pub async fn watch<const N: usize>(
        client: &Client,
    ) -> (Self, [Feed; N], BoxFuture<'static, ()>) {
        let ours = format!("{}={}", labels::MANAGED_BY, labels::MANAGED_BY_VALUE);
        let movers = format!("{ours},{}={}", labels::COMPONENT, labels::COMPONENT_MOVER);
        let (jobs, mut job_feeds, job_watch) =
            Watched::watch(Api::all(client.clone()), &ours, N, job_without_spec);
        let (pods, mut pod_feeds, pod_watch) =
            shared(Api::all(client.clone()), &movers, N, pod_without_spec, None);
        let (claims, mut claim_feeds, claim_watch) =
            Watched::watch(Api::all(client.clone()), &ours, N, |_| {});
        let mut watches = vec![job_watch, pod_watch, claim_watch];
        let (snapshots, mut snapshot_feeds) = if snapshots_served(client).await {
            let (watched, feeds, watch) =
                Watched::watch(Api::all(client.clone()), &ours, N, |_| {});
            watches.push(watch);
            (Some(watched), feeds)
        } else {
            (None, Vec::new())
        };
        let feeds = std::array::from_fn(|_| Feed {
            jobs: job_feeds.pop().expect("one job feed per controller"),
            pods: pod_feeds.pop().expect("one pod feed per controller"),
            claims: claim_feeds.pop().expect("one claim feed per controller"),
            snapshots: snapshot_feeds.pop(),
        });
        let owned = Self {
            jobs,
            pods,
            claims,
            snapshots,
        };
        let driving = Box::pin(async move {
            futures::future::join_all(watches).await;
        });
        (owned, feeds, driving)
    }

    /// Waits until every store holds its first full list, so no reconcile takes an object it
    /// has not seen yet for a missing one.
    pub async fn ready(&self) {
        let _ = self.jobs.store.wait_until_ready().await;
        let _ = self.pods.wait_until_ready().await;
        let _ = self.claims.store.wait_until_ready().await;
        if let Some(snapshots) = &self.snapshots {
            let _ = snapshots.store.wait_until_ready().await;
        }
    }

    /// The Job `name` in `namespace`.
    pub fn job(&self, namespace: &str, name: &str) -> Option<Arc<Job>> {
        self.jobs.get(namespace, name)
    }

    /// The Pods of Job `job` in `namespace`.
    pub fn pods_of(&self, namespace: &str, job: &str) -> Vec<Arc<Pod>> {
        self.pods.state_filter(|pod| {
            pod.namespace().as_deref() == Some(namespace)
                && pod.labels().get(mover::JOB_NAME_LABEL).map(String::as_str) == Some(job)
        })
    }

    /// What the mover of `job` (in `namespace`) reported: from its Pods, or, when none did, from
    /// the Job's own failure (deadline, deleted Pod); `None` while it runs.
    pub fn mover_result(&self, namespace: &str, job: &Job) -> Option<MoverResult> {
        self.pods_of(namespace, &job.name_any())
            .iter()
            .find_map(|pod| mover::result_from_pod(pod))
            .or_else(|| mover::result_from_failed_job(job))
    }

    /// Sluice's PVC `name` in `namespace`.
    pub fn claim(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        self.claims.get(namespace, name)
    }

    /// Sluice's VolumeSnapshot `name` in `namespace`; none without a VolumeSnapshot API.
    pub fn snapshot(&self, namespace: &str, name: &str) -> Option<Arc<VolumeSnapshot>> {
        self.snapshots.as_ref()?.get(namespace, name)
    }

    /// Creates `object` through `api`, or takes the one already there (a reconcile that raced
    /// itself), and reads it from now on, before its watch delivers it.
    pub async fn create<K: OwnedKind>(&self, api: &Api<K>, object: &K) -> kube::Result<K> {
        let created = create_or_existing(api, object).await?;
        if let Some(watched) = K::watched(self) {
            let mut held = created.clone();
            held.managed_fields_mut().clear();
            (watched.trim)(&mut held);
            watched.unseen.wrote(held);
        }
        Ok(created)
    }

    /// Sluice deleted `name` in `namespace`: a create of it not yet delivered is not read any
    /// more.
    pub fn deleted<K: OwnedKind>(&self, namespace: &str, name: &str) {
        if let Some(watched) = K::watched(self) {
            watched
                .unseen
                .forget(&ObjectRef::new(name).within(namespace));
        }
    }
}

/// Creates `object`, or returns the one already there (a reconcile that raced itself).
async fn create_or_existing<K>(api: &Api<K>, object: &K) -> kube::Result<K>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(created) => Ok(created),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            api.get(&object.meta().name.clone().unwrap_or_default())
                .await
        }
        Err(error) => Err(error),
    }
}

/// The reconcile requests a change to an owned object makes: one for the object named by its
/// `owner_label` (e.g. `sluice.dev/replication-source: db`), in its namespace.
pub fn owner<K, O>(owner_label: &'static str) -> impl Fn(Arc<O>) -> Option<ObjectRef<K>>
where
    K: Resource<DynamicType = ()>,
    O: Resource,
{
    move |object| {
        let name = object.meta().labels.as_ref()?.get(owner_label)?;
        Some(ObjectRef::new(name).within(object.meta().namespace.as_deref()?))
    }
}

/// What the store keeps of a mover Job: everything but its spec. Reconciles read a Job's
/// status, never its spec, which is most of its size (the Pod template: environment, volumes,
/// security context); with thousands of syncs in flight, Job and Pod specs were most of the
/// operator's memory.
fn job_without_spec(job: &mut Job) {
    job.spec = None;
}

/// What the store keeps of a mover Pod: its labels and status (the container states the result
/// is read from), and of its spec only each container's name and resources (a mover killed
/// without a result is explained by its memory limit, [`mover::result_from_pod`]).
fn pod_without_spec(pod: &mut Pod) {
    if let Some(spec) = pod.spec.take() {
        let containers = spec
            .containers
            .into_iter()
            .map(|container| Container {
                name: container.name,
                resources: container.resources,
                ..Default::default()
            })
            .collect();
        pod.spec = Some(PodSpec {
            containers,
            ..Default::default()
        });
    }
}

/// A label-selected watch into a store: the store, one [`Changes`] for each of `subscribers`,
/// and the future that drives it. `trim` drops what no reconcile reads from each object before
/// it is held; each object delivered catches `unseen` up. A change is handed on after the store
/// holds it; a relist, once it is complete, hands on every object listed. Deletions wake
/// nothing, as with kube-runtime's shared reflector: what Sluice deletes it no longer waits on.
fn shared<K: Object>(
    api: Api<K>,
    selector: &str,
    subscribers: usize,
    trim: fn(&mut K),
    unseen: Option<Arc<Unseen<K>>>,
) -> (Store<K>, Vec<Changes<K>>, BoxFuture<'static, ()>) {
    let (store, writer) = reflector::store();
    let (senders, feeds): (Vec<_>, Vec<_>) = (0..subscribers)
        .map(|_| {
            let (sender, receiver) = mpsc::channel::<Arc<K>>(FEED_BUFFER);
            let changes = stream::unfold(receiver, |mut receiver| async move {
                Some((receiver.recv().await?, receiver))
            });
            (sender, changes.boxed())
        })
        .unzip();
    let kind = std::any::type_name::<K>();
    let config = watcher::Config::default().labels(selector);
    let events = watcher(api, config)
        .default_backoff()
        .modify(move |object| {
            object.managed_fields_mut().clear();
            trim(object);
        })
        .reflect(writer);
    let listed = store.clone();
    let watch = async move {
        let mut events = pin!(events);
        while let Some(event) = events.next().await {
            let changed = match event {
                Err(error) => {
                    tracing::warn!(%error, kind, "watch of owned objects failed; retrying");
                    continue;
                }
                Ok(watcher::Event::Apply(object)) => {
                    if let Some(unseen) = &unseen {
                        unseen.seen(&object);
                    }
                    vec![Arc::new(object)]
                }
                Ok(watcher::Event::InitApply(object) | watcher::Event::Delete(object)) => {
                    if let Some(unseen) = &unseen {
                        unseen.seen(&object);
                    }
                    continue;
                }
                Ok(watcher::Event::InitDone) => listed.state(),
                Ok(watcher::Event::Init) => continue,
            };
            for object in changed {
                for sender in &senders {
                    // A controller that stopped takes no more changes; the others do.
                    let _ = sender.send(object.clone()).await;
                }
            }
        }
    };
    (store, feeds, Box::pin(watch))
}

/// Whether the cluster serves VolumeSnapshots; a watch of an API that does not exist would
/// only fail, over and over.
async fn snapshots_served(client: &Client) -> bool {
    let gvk = GroupVersionKind::gvk(volume::SNAPSHOT_GROUP, "v1", "VolumeSnapshot");
    match kube::discovery::pinned_kind(client, &gvk).await {
        Ok(_) => true,
        Err(error) => {
            tracing::warn!(
                %error,
                "no VolumeSnapshot API (snapshot.storage.k8s.io/v1): copyMethod Snapshot cannot \
                 work until a snapshot controller is installed and the operator restarted"
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    #[test]
    fn a_held_pod_keeps_its_containers_limits_and_nothing_else_of_its_spec() {
        let limits = ResourceRequirements {
            limits: Some([("memory".to_string(), Quantity("12Mi".into()))].into()),
            ..Default::default()
        };
        let mut pod = Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "mover".into(),
                    image: Some("sluice:1".into()),
                    env: Some(vec![Default::default()]),
                    resources: Some(limits.clone()),
                    ..Default::default()
                }],
                node_name: Some("node-1".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        pod_without_spec(&mut pod);
        let spec = pod.spec.unwrap();
        assert_eq!(
            spec,
            PodSpec {
                containers: vec![Container {
                    name: "mover".into(),
                    resources: Some(limits),
                    ..Default::default()
                }],
                ..Default::default()
            }
        );
    }
}
