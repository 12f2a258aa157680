//! The emulated Node object and its heartbeat.
//!
//! kube-controller-manager's node lifecycle controller marks a node whose
//! lease is not renewed NotReady and then evicts its Pods, so the heartbeat
//! is what keeps mover Pods alive through a long test.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeStatus, NodeSystemInfo};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};

use super::{Context, NODE_NAME};

const HEARTBEAT: Duration = Duration::from_secs(10);

pub(super) async fn register(context: &Context) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(context.client.clone());
    if nodes.get_opt(NODE_NAME).await?.is_none() {
        let labels = BTreeMap::from([
            ("kubernetes.io/hostname".to_string(), NODE_NAME.to_string()),
            ("kubernetes.io/os".to_string(), "linux".to_string()),
            (
                "kubernetes.io/arch".to_string(),
                std::env::consts::ARCH.replace("x86_64", "amd64"),
            ),
        ]);
        let node = Node {
            metadata: ObjectMeta {
                name: Some(NODE_NAME.to_string()),
                labels: Some(labels),
                ..Default::default()
            },
            ..Default::default()
        };
        nodes.create(&PostParams::default(), &node).await?;
    }
    heartbeat(context).await
}

pub(super) async fn keep_alive(context: Arc<Context>) {
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        if let Err(e) = heartbeat(&context).await {
            tracing::warn!(role = "node", "heartbeat failed: {e:#}");
        }
    }
}

async fn heartbeat(context: &Context) -> anyhow::Result<()> {
    let now = jiff::Timestamp::now();
    let capacity = BTreeMap::from([
        ("cpu".to_string(), Quantity("2".into())),
        ("memory".to_string(), Quantity("24Gi".into())),
        ("pods".to_string(), Quantity("110".into())),
        ("ephemeral-storage".to_string(), Quantity("100Gi".into())),
    ]);
    let status = NodeStatus {
        capacity: Some(capacity.clone()),
        allocatable: Some(capacity),
        conditions: Some(vec![NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: Some("KubeletReady".into()),
            message: Some("sluice node emulator is running".into()),
            last_heartbeat_time: Some(Time(now)),
            last_transition_time: Some(Time(now)),
        }]),
        node_info: Some(NodeSystemInfo {
            architecture: std::env::consts::ARCH.into(),
            operating_system: "linux".into(),
            kubelet_version: "sluice-node-emulator".into(),
            kube_proxy_version: String::new(),
            container_runtime_version: "local-process://0".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let nodes: Api<Node> = Api::all(context.client.clone());
    nodes
        .patch_status(
            NODE_NAME,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "status": status })),
        )
        .await?;
    let leases: Api<Lease> = Api::namespaced(context.client.clone(), "kube-node-lease");
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(NODE_NAME.into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(NODE_NAME.into()),
            lease_duration_seconds: Some(40),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        }),
    };
    leases
        .patch(
            NODE_NAME,
            &PatchParams::apply("sluice-node-emulator").force(),
            &Patch::Apply(&lease),
        )
        .await?;
    Ok(())
}
