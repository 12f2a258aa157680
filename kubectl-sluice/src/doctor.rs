//! `kubectl sluice doctor [OBJECT]`: checks what a backup needs and says what to fix, for one
//! source or destination, or every one in the namespace (`-A`: everywhere).
//!
//! This module gathers the facts (the API server, the repository from this machine); `judge`
//! turns each into a finding with pure functions. A check that cannot read its facts (RBAC)
//! says so instead of failing the run.

pub mod judge;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::{
    authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec},
    coordination::v1::Lease,
    core::v1::{Namespace, Node, PersistentVolumeClaim, Pod, Secret, ServiceAccount},
    storage::v1::StorageClass,
};
use kube::{
    Api,
    api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams},
};
use serde::Serialize;
use sluice_api::{MoverConfig, ReplicationDestination, ReplicationSource, labels};

use self::judge::{
    Finding, Heartbeat, MoverPod, OperatorLease, Probe, SnapshotClass, SourceClaim, Verdict,
};
use crate::{
    cli::{DoctorArgs, EXIT_FAILED, Format},
    cluster::{Cluster, Object, secret_values},
    output::{self, Tone},
    repository::{self, Access},
    status,
};

/// The findings about one object, or about the cluster.
#[derive(Serialize, Debug)]
pub struct Report {
    /// `ReplicationSource apps/db`, or `cluster`.
    pub object: String,
    /// One per check, in the order they ran.
    pub findings: Vec<Finding>,
}

/// Runs `doctor`.
pub async fn run(cluster: &Cluster, args: &DoctorArgs, format: Format) -> Result<u8> {
    let mut reports = vec![Report {
        object: "cluster".into(),
        findings: vec![operator(cluster).await, clock(cluster).await],
    }];
    let objects = match &args.object {
        Some(reference) => vec![(cluster.namespace.clone(), cluster.object(reference).await?)],
        None => every_object(cluster).await?,
    };
    if objects.is_empty() {
        eprintln!(
            "No ReplicationSource or ReplicationDestination in {}.",
            if cluster.all_namespaces {
                "any namespace".to_string()
            } else {
                format!("namespace {}", cluster.namespace)
            }
        );
    }
    for (namespace, object) in objects {
        reports.push(examine(cluster, &namespace, &object).await);
    }
    let failed = reports
        .iter()
        .flat_map(|r| &r.findings)
        .any(|f| f.verdict == Verdict::Fail);
    if !output::structured(format, &reports)? {
        print_text(&reports, output::colour_wanted());
    }
    Ok(if failed { EXIT_FAILED } else { 0 })
}

async fn every_object(cluster: &Cluster) -> Result<Vec<(String, Object)>> {
    let list = ListParams::default();
    let sources = cluster
        .list_api::<ReplicationSource>()
        .list(&list)
        .await
        .context("listing ReplicationSources")?;
    let destinations = cluster
        .list_api::<ReplicationDestination>()
        .list(&list)
        .await
        .context("listing ReplicationDestinations")?;
    let namespace_of = |meta: &kube::core::ObjectMeta| meta.namespace.clone().unwrap_or_default();
    Ok(sources
        .into_iter()
        .map(|s| (namespace_of(&s.metadata), Object::Source(Box::new(s))))
        .chain(
            destinations
                .into_iter()
                .map(|d| (namespace_of(&d.metadata), Object::Destination(Box::new(d)))),
        )
        .collect())
}

/// What every check of one object needs from its spec.
struct Subject<'a> {
    what: String,
    name: String,
    secret: &'a str,
    custom_ca: Option<&'a sluice_api::CustomCa>,
    mover: &'a MoverConfig,
    host: Option<String>,
    owner_label: &'static str,
    health: status::Health,
    source: Option<&'a ReplicationSource>,
}

fn subject<'a>(namespace: &str, object: &'a Object) -> Subject<'a> {
    match object {
        Object::Source(s) => {
            let name = s.metadata.name.clone().unwrap_or_default();
            Subject {
                what: format!("ReplicationSource {namespace}/{name}"),
                name,
                secret: &s.spec.restic.repository,
                custom_ca: s.spec.restic.custom_ca.as_ref(),
                mover: &s.spec.restic.mover,
                host: Some(s.restic_hostname()),
                owner_label: labels::REPLICATION_SOURCE,
                health: status::health(
                    s.status.as_ref().map(|st| &st.sync),
                    s.metadata.generation,
                    s.spec.paused,
                ),
                source: Some(s),
            }
        }
        Object::Destination(d) => {
            let name = d.metadata.name.clone().unwrap_or_default();
            Subject {
                what: format!("ReplicationDestination {namespace}/{name}"),
                name,
                secret: &d.spec.restic.repository,
                custom_ca: d.spec.restic.custom_ca.as_ref(),
                mover: &d.spec.restic.mover,
                host: d.spec.restic.hostname.clone(),
                owner_label: labels::REPLICATION_DESTINATION,
                health: status::health(
                    d.status.as_ref().map(|st| &st.sync),
                    d.metadata.generation,
                    d.spec.paused,
                ),
                source: None,
            }
        }
    }
}

async fn examine(cluster: &Cluster, namespace: &str, object: &Object) -> Report {
    let subject = subject(namespace, object);
    let scoped = Cluster {
        client: cluster.client.clone(),
        namespace: namespace.to_string(),
        all_namespaces: false,
    };
    let account = subject.mover.mover_service_account.as_deref();
    let secret_name = format!("{namespace}/{}", subject.secret);
    let keys = scoped
        .api::<Secret>()
        .get_opt(subject.secret)
        .await
        .ok()
        .flatten()
        .map(|s| secret_values(&s));
    let mut findings = vec![judge::secret(&secret_name, keys.as_ref(), account)];

    let location = keys
        .as_ref()
        .and_then(|k| k.get("RESTIC_REPOSITORY").cloned())
        .unwrap_or_default();
    let probe = match (&keys, findings[0].verdict) {
        (Some(keys), Verdict::Ok | Verdict::Warn) => {
            probe_repository(
                &scoped,
                keys,
                subject.custom_ca,
                &secret_name,
                subject.host.as_deref(),
            )
            .await
        }
        _ => Probe::Skipped,
    };
    findings.push(judge::repository(
        &location,
        &probe,
        subject.source.is_some(),
    ));

    if let Some(source) = subject.source {
        findings.push(snapshot_class(&scoped, source).await);
    }
    findings.push(pod_security(&scoped, subject.mover).await);
    findings.push(access(&scoped, account).await);
    findings.push(judge::mover_image(
        &mover_pods(&scoped, subject.owner_label, &subject.name).await,
    ));
    findings.push(judge::last_result(&subject.health));
    Report {
        object: subject.what,
        findings,
    }
}

async fn probe_repository(
    cluster: &Cluster,
    keys: &BTreeMap<String, String>,
    custom_ca: Option<&sluice_api::CustomCa>,
    secret_name: &str,
    host: Option<&str>,
) -> Probe {
    let ca = match custom_ca {
        Some(ca) => match cluster.custom_ca(ca).await {
            Ok(pem) => pem,
            Err(e) => return Probe::Other(format!("{e:#}")),
        },
        None => None,
    };
    let access = match Access::new(keys, ca, secret_name) {
        Ok(access) => access,
        Err(e) => return Probe::Other(format!("{e:#}")),
    };
    // The S3 backend drives its own runtime, which cannot start inside this one.
    std::thread::scope(|scope| {
        scope
            .spawn(|| repository::probe(&access, host))
            .join()
            .unwrap_or_else(|_| Probe::Other("the repository thread panicked".into()))
    })
}

const SNAPSHOT_GROUP: &str = "snapshot.storage.k8s.io";
const DEFAULT_CLASS_ANNOTATION: &str = "snapshot.storage.kubernetes.io/is-default-class";

async fn snapshot_class(cluster: &Cluster, source: &ReplicationSource) -> Finding {
    let copy_method = format!("{:?}", source.spec.restic.copy_method);
    let pvc = cluster
        .api::<PersistentVolumeClaim>()
        .get_opt(&source.spec.source_pvc)
        .await
        .ok()
        .flatten();
    let claim = match pvc {
        Some(pvc) => {
            let class_name = pvc.spec.as_ref().and_then(|s| s.storage_class_name.clone());
            let driver = match class_name {
                Some(name) => Api::<StorageClass>::all(cluster.client.clone())
                    .get_opt(&name)
                    .await
                    .ok()
                    .flatten()
                    .map(|c| c.provisioner),
                None => None,
            };
            Some(SourceClaim {
                name: format!("{}/{}", cluster.namespace, source.spec.source_pvc),
                driver,
            })
        }
        None => None,
    };
    let gvk = GroupVersionKind::gvk(SNAPSHOT_GROUP, "v1", "VolumeSnapshotClass");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "volumesnapshotclasses");
    let classes = Api::<DynamicObject>::all_with(cluster.client.clone(), &resource)
        .list(&ListParams::default())
        .await
        .ok()
        .map(|list| {
            list.items
                .into_iter()
                .map(|c| SnapshotClass {
                    name: c.metadata.name.clone().unwrap_or_default(),
                    driver: c.data["driver"].as_str().unwrap_or_default().to_string(),
                    default: c
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                        .is_some_and(|v| v == "true"),
                })
                .collect::<Vec<_>>()
        });
    judge::snapshot_class(
        &copy_method,
        claim.as_ref(),
        source.spec.restic.volume_snapshot_class_name.as_deref(),
        classes.as_deref(),
    )
}

async fn pod_security(cluster: &Cluster, mover: &MoverConfig) -> Finding {
    let enforce = Api::<Namespace>::all(cluster.client.clone())
        .get_opt(&cluster.namespace)
        .await
        .ok()
        .flatten()
        .and_then(|ns| ns.metadata.labels)
        .and_then(|l| l.get("pod-security.kubernetes.io/enforce").cloned());
    let runs_as_root = mover
        .mover_security_context
        .as_ref()
        .is_some_and(|c| c.run_as_user == Some(0) || c.run_as_non_root == Some(false));
    judge::pod_security(&cluster.namespace, enforce.as_deref(), runs_as_root)
}

/// What the plugin's verbs need here, as `(verb, group, resource)`.
const VERBS: [(&str, &str, &str); 4] = [
    ("get", "", "secrets"),
    ("patch", "sluice.dev", "replicationsources"),
    ("create", "sluice.dev", "replicationdestinations"),
    ("create", "", "persistentvolumeclaims"),
];

async fn access(cluster: &Cluster, account: Option<&str>) -> Finding {
    let reviews = Api::<SelfSubjectAccessReview>::all(cluster.client.clone());
    let mut missing = Vec::new();
    for (verb, group, resource) in VERBS {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(cluster.namespace.clone()),
                    verb: Some(verb.into()),
                    group: Some(group.into()),
                    resource: Some(resource.into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let allowed = reviews
            .create(&PostParams::default(), &review)
            .await
            .ok()
            .and_then(|r| r.status)
            .is_some_and(|s| s.allowed);
        if !allowed {
            missing.push(format!("{verb} {resource}"));
        }
    }
    let exists = match account {
        Some(name) => cluster
            .api::<ServiceAccount>()
            .get_opt(name)
            .await
            .ok()
            .flatten()
            .is_some(),
        None => true,
    };
    judge::access(&missing, account, exists)
}

async fn mover_pods(cluster: &Cluster, owner_label: &str, name: &str) -> Vec<MoverPod> {
    let params = ListParams::default().labels(&format!("{owner_label}={name}"));
    let mut pods = cluster
        .api::<Pod>()
        .list(&params)
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    pods.sort_by_key(|p| std::cmp::Reverse(p.metadata.creation_timestamp.clone().map(|t| t.0)));
    pods.into_iter()
        .map(|pod| {
            let container = pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|c| c.first())
                .cloned();
            let state = container.as_ref().and_then(|c| c.state.clone());
            MoverPod {
                name: pod.metadata.name.clone().unwrap_or_default(),
                image: pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.containers.first())
                    .and_then(|c| c.image.clone())
                    .unwrap_or_default(),
                waiting: state.as_ref().and_then(|s| s.waiting.as_ref()).map(|w| {
                    (
                        w.reason.clone().unwrap_or_default(),
                        w.message.clone().unwrap_or_default(),
                    )
                }),
                started: state
                    .as_ref()
                    .is_some_and(|s| s.running.is_some() || s.terminated.is_some()),
            }
        })
        .collect()
}

/// The operator's leader Lease, wherever it is installed.
async fn operator(cluster: &Cluster) -> Finding {
    let leases = match Api::<Lease>::all(cluster.client.clone())
        .list(&ListParams::default().fields("metadata.name=sluice-operator"))
        .await
    {
        Ok(list) => list.items,
        Err(e) => {
            return Finding {
                check: "operator",
                verdict: Verdict::Warn,
                detail: format!("cannot list the operator's leader Lease: {e}"),
                fix: Some(
                    "ask for get/list on leases.coordination.k8s.io in the operator's namespace"
                        .into(),
                ),
            };
        }
    };
    let server = server_time(cluster)
        .await
        .unwrap_or_else(|_| Timestamp::now());
    let leases: Vec<OperatorLease> = leases
        .into_iter()
        .map(|lease| {
            let spec = lease.spec.unwrap_or_default();
            OperatorLease {
                namespace: lease.metadata.namespace.unwrap_or_default(),
                holder: spec.holder_identity,
                age: spec.renew_time.map(|t| server.duration_since(t.0)),
            }
        })
        .collect();
    judge::operator(&leases)
}

/// This machine's and the nodes' clocks against the API server's (its `Date` header).
async fn clock(cluster: &Cluster) -> Finding {
    let server = match server_time(cluster).await {
        Ok(time) => time,
        Err(e) => {
            return Finding {
                check: "clock",
                verdict: Verdict::Warn,
                detail: format!("cannot read the API server's time: {e:#}"),
                fix: None,
            };
        }
    };
    let local_minus_server = Timestamp::now().duration_since(server);
    let leases = Api::<Lease>::namespaced(cluster.client.clone(), "kube-node-lease")
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let ready: BTreeMap<String, bool> = Api::<Node>::all(cluster.client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .map(|node| {
            let ready = node
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            (node.metadata.name.unwrap_or_default(), ready)
        })
        .collect();
    let heartbeats: Vec<Heartbeat> = leases
        .into_iter()
        .filter_map(|lease| {
            let node = lease.metadata.name?;
            let renewed = lease.spec?.renew_time?.0;
            Some(Heartbeat {
                ready: ready.get(&node).copied().unwrap_or(false),
                age: server.duration_since(renewed),
                node,
            })
        })
        .collect();
    judge::clock(local_minus_server, &heartbeats)
}

async fn server_time(cluster: &Cluster) -> Result<Timestamp> {
    let request = http::Request::get("/version")
        .body(Vec::new())
        .context("building the /version request")?;
    let response = cluster
        .client
        .send(request.map(kube::client::Body::from))
        .await
        .context("GET /version")?;
    let date = response
        .headers()
        .get(http::header::DATE)
        .context("the API server's answer has no Date header")?
        .to_str()
        .context("the Date header is not text")?;
    let time = jiff::fmt::rfc2822::parse(date)
        .with_context(|| format!("the Date header {date:?} is not an HTTP date"))?;
    // The header has whole seconds; half a second is the expected rounding.
    Ok(time.timestamp() + SignedDuration::from_millis(500))
}

fn print_text(reports: &[Report], colour: bool) {
    for report in reports {
        println!("{}", report.object);
        let width = report
            .findings
            .iter()
            .map(|f| f.check.len())
            .max()
            .unwrap_or(0);
        for finding in &report.findings {
            let (mark, tone) = match finding.verdict {
                Verdict::Ok => ("ok  ", Tone::Good),
                Verdict::Warn => ("warn", Tone::Busy),
                Verdict::Fail => ("FAIL", Tone::Bad),
            };
            println!(
                "  {} {:width$}  {}",
                output::paint(mark, tone, colour),
                finding.check,
                finding.detail
            );
            if let Some(fix) = &finding.fix {
                println!("       {:width$}  fix: {fix}", "");
            }
        }
    }
}
