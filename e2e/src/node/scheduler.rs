//! The scheduler's part: every Pod without a node goes to the one emulated
//! node, through the same `binding` subresource the real scheduler uses.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};

use super::{Context, NODE_NAME};

pub(super) async fn step(context: Arc<Context>) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::all(context.client.clone());
    let unscheduled = pods
        .list(&ListParams::default().fields("spec.nodeName="))
        .await?;
    for pod in unscheduled {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let (Some(name), Some(namespace)) = (pod.metadata.name, pod.metadata.namespace) else {
            continue;
        };
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            target: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(NODE_NAME.into()),
                ..Default::default()
            },
        };
        let namespaced: Api<Pod> = Api::namespaced(context.client.clone(), &namespace);
        if let Err(e) = namespaced
            .create_subresource::<_, serde_json::Value>(
                "binding",
                &name,
                &PostParams::default(),
                &binding,
            )
            .await
        {
            tracing::warn!(
                role = "scheduler",
                "cannot bind pod {namespace}/{name}: {e}"
            );
        }
    }
    Ok(())
}
