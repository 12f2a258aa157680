//! What the operator owns, watched once for both controllers: mover Jobs and their Pods, and
//! the PVCs and VolumeSnapshots syncs create.
//!
//! Each kind is one label-selected watch, so only Sluice's objects are held. Its store answers
//! every reconcile's questions about them without an API call, and its events wake the owner's
//! reconcile (mapped by the owner label every such object carries) instead of a poll: an
//! in-flight sync costs nothing until something about it changes. Managed fields, and the specs
//! of Jobs and Pods, are dropped from what is held; nothing reads them.

use std::sync::Arc;

use futures::{StreamExt, future::BoxFuture};
use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{Container, PersistentVolumeClaim, Pod, PodSpec},
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::GroupVersionKind,
    runtime::{
        WatchStreamExt,
        reflector::{ObjectRef, ReflectHandle, Store, store::Writer},
        watcher,
    },
};
use serde::de::DeserializeOwned;
use sluice_api::{labels, mover_result::MoverResult};

use crate::{
    mover,
    volume::{self, VolumeSnapshot},
};

/// How many changes a store buffers for its slowest subscriber before the watch waits.
const FEED_BUFFER: usize = 1024;

/// The stores of what Sluice owns, shared by both controllers.
#[derive(Clone)]
pub struct Owned {
    jobs: Store<Job>,
    pods: Store<Pod>,
    claims: Store<PersistentVolumeClaim>,
    /// `None` when the cluster has no VolumeSnapshot API (no snapshot controller installed).
    snapshots: Option<Store<VolumeSnapshot>>,
}

/// One controller's feed of changes to what Sluice owns.
pub struct Feed {
    /// Mover Jobs.
    pub jobs: ReflectHandle<Job>,
    /// Mover Pods.
    pub pods: ReflectHandle<Pod>,
    /// Copies and restore targets.
    pub claims: ReflectHandle<PersistentVolumeClaim>,
    /// Snapshots of sources and published restores.
    pub snapshots: Option<ReflectHandle<VolumeSnapshot>>,
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
            shared(Api::all(client.clone()), &ours, N, job_without_spec);
        let (pods, mut pod_feeds, pod_watch) =
            shared(Api::all(client.clone()), &movers, N, pod_without_spec);
        let (claims, mut claim_feeds, claim_watch) =
            shared(Api::all(client.clone()), &ours, N, |_| {});
        let mut watches = vec![job_watch, pod_watch, claim_watch];
        let (snapshots, mut snapshot_feeds) = if snapshots_served(client).await {
            let (store, feeds, watch) = shared(Api::all(client.clone()), &ours, N, |_| {});
            watches.push(watch);
            (Some(store), feeds)
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
        let _ = self.jobs.wait_until_ready().await;
        let _ = self.pods.wait_until_ready().await;
        let _ = self.claims.wait_until_ready().await;
        if let Some(snapshots) = &self.snapshots {
            let _ = snapshots.wait_until_ready().await;
        }
    }

    /// The Job `name` in `namespace`.
    pub fn job(&self, namespace: &str, name: &str) -> Option<Arc<Job>> {
        self.jobs.get(&ObjectRef::new(name).within(namespace))
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
        self.claims.get(&ObjectRef::new(name).within(namespace))
    }

    /// Sluice's VolumeSnapshot `name` in `namespace`; none without a VolumeSnapshot API.
    pub fn snapshot(&self, namespace: &str, name: &str) -> Option<Arc<VolumeSnapshot>> {
        let snapshots = self.snapshots.as_ref()?;
        snapshots.get(&ObjectRef::new(name).within(namespace))
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

/// A label-selected watch into a shared store: the store, one subscriber for each of
/// `subscribers`, and the future that drives it. `trim` drops what no reconcile reads from
/// each object before it is held.
fn shared<K>(
    api: Api<K>,
    selector: &str,
    subscribers: usize,
    trim: fn(&mut K),
) -> (Store<K>, Vec<ReflectHandle<K>>, BoxFuture<'static, ()>)
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let writer = Writer::new_shared(FEED_BUFFER, ());
    let store = writer.as_reader();
    let feeds = (0..subscribers)
        .map(|_| writer.subscribe().expect("a shared writer has subscribers"))
        .collect();
    let kind = std::any::type_name::<K>();
    let config = watcher::Config::default().labels(selector);
    let watch = watcher(api, config)
        .default_backoff()
        .modify(move |object| {
            object.managed_fields_mut().clear();
            trim(object);
        })
        .reflect_shared(writer)
        .for_each(move |event| async move {
            if let Err(error) = event {
                tracing::warn!(%error, kind, "watch of owned objects failed; retrying");
            }
        });
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
