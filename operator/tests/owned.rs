//! The stores of what Sluice owns ([`sluice_operator::cache::Owned`]) against a real
//! kube-apiserver: a create is read before its watch delivers it, and a change whose object is
//! gone by the time its controller reads it does not stall that controller's feed.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::{Api, Client, ResourceExt, api::DeleteParams};
use sluice_api::labels;
use sluice_e2e::Cluster;
use sluice_operator::cache::Owned;

const NAMESPACE: &str = "apps";

/// A claim labelled as Sluice's, so the owned stores watch it.
fn claim(name: &str) -> PersistentVolumeClaim {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": { labels::MANAGED_BY: labels::MANAGED_BY_VALUE },
        },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": { "requests": { "storage": "1Mi" } },
            "storageClassName": "none",
        },
    }))
    .unwrap()
}

async fn started() -> (Cluster, Client) {
    let cluster = Cluster::start();
    cluster.kubectl(&["create", "namespace", NAMESPACE]);
    let client = sluice_e2e::cluster::client(cluster.kubeconfig())
        .await
        .unwrap();
    (cluster, client)
}

#[tokio::test]
async fn a_create_is_read_before_its_watch_delivers_it() {
    let (_cluster, client) = started().await;
    // The watches are never driven here, so the stores stay empty: whatever is read comes
    // from the create itself.
    let (owned, [], _not_driven) = Owned::watch::<0>(&client).await;
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NAMESPACE);
    assert!(owned.claim(NAMESPACE, "made").is_none());
    owned.create(&api, &claim("made")).await.unwrap();
    let read = owned
        .claim(NAMESPACE, "made")
        .expect("the created claim is read at once");
    assert_eq!(read.labels()[labels::MANAGED_BY], labels::MANAGED_BY_VALUE);
    assert!(
        read.managed_fields().is_empty(),
        "held trimmed like the store"
    );
    // Creating it again (a reconcile that raced itself) takes the one already there.
    owned.create(&api, &claim("made")).await.unwrap();
    owned.deleted::<PersistentVolumeClaim>(NAMESPACE, "made");
    assert!(
        owned.claim(NAMESPACE, "made").is_none(),
        "what Sluice deleted is not read from its create any more"
    );
}

#[tokio::test]
async fn a_change_to_an_object_deleted_before_it_is_read_does_not_stall_the_feed() {
    let (_cluster, client) = started().await;
    let (owned, [feed], driving) = Owned::watch::<1>(&client).await;
    tokio::spawn(driving);
    owned.ready().await;
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NAMESPACE);
    api.create(&Default::default(), &claim("gone"))
        .await
        .unwrap();
    api.delete("gone", &DeleteParams::default()).await.unwrap();
    // The feed is not read until the claim has left the store, as a busy controller reads it
    // late. kube-runtime's ReflectHandle stalled here for good: it looked the object up, found
    // nothing, and returned Pending without a wake-up.
    for _ in 0..300 {
        if owned.claim(NAMESPACE, "gone").is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        owned.claim(NAMESPACE, "gone").is_none(),
        "the claim was never deleted"
    );
    api.create(&Default::default(), &claim("next"))
        .await
        .unwrap();
    let mut claims = feed.claims;
    let mut delivered = Vec::new();
    let reading = async {
        while let Some(changed) = claims.next().await {
            delivered.push(changed.name_any());
            if changed.name_any() == "next" {
                break;
            }
        }
    };
    let in_time = tokio::time::timeout(Duration::from_secs(30), reading).await;
    assert!(
        in_time.is_ok(),
        "the change to claim next never reached the feed; delivered: {delivered:?}"
    );
    assert_eq!(
        delivered.first().map(String::as_str),
        Some("gone"),
        "the deleted claim's changes are delivered as they were: {delivered:?}"
    );
}
