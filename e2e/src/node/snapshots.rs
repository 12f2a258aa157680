//! The CSI snapshotter's part (the snapshot controller and the driver in
//! one): a VolumeSnapshot of the emulator's class becomes a copy of its
//! source volume's directory under `ROOT/snapshots`, a bound
//! VolumeSnapshotContent, and `readyToUse` with the source's size as
//! `restoreSize`. Deleting the VolumeSnapshot deletes the copy when the
//! deletion policy says so.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use serde_json::json;

use super::storage::{claim_dir, copy_dir, disk_usage, remove_dir};
use super::{Context, DRIVER, SNAPSHOT_CLASS};

const GROUP: &str = "snapshot.storage.k8s.io";

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: GROUP.into(),
        version: "v1".into(),
        api_version: format!("{GROUP}/v1"),
        kind: kind.into(),
        plural: plural.into(),
    }
}

fn snapshots_api(client: &kube::Client, namespace: Option<&str>) -> Api<DynamicObject> {
    let resource = resource("VolumeSnapshot", "volumesnapshots");
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

fn contents_api(client: &kube::Client) -> Api<DynamicObject> {
    Api::all_with(
        client.clone(),
        &resource("VolumeSnapshotContent", "volumesnapshotcontents"),
    )
}

fn classes_api(client: &kube::Client) -> Api<DynamicObject> {
    Api::all_with(
        client.clone(),
        &resource("VolumeSnapshotClass", "volumesnapshotclasses"),
    )
}

pub(super) async fn install_class(context: &Context) -> anyhow::Result<()> {
    let class = json!({
        "apiVersion": format!("{GROUP}/v1"),
        "kind": "VolumeSnapshotClass",
        "metadata": {
            "name": SNAPSHOT_CLASS,
            "annotations": {"snapshot.storage.kubernetes.io/is-default-class": "true"},
        },
        "driver": DRIVER,
        "deletionPolicy": "Delete",
    });
    classes_api(&context.client)
        .patch(
            SNAPSHOT_CLASS,
            &PatchParams::apply("sluice-node-emulator").force(),
            &Patch::Apply(&class),
        )
        .await
        .context(
            "cannot install the VolumeSnapshotClass (are the VolumeSnapshot CRDs installed?)",
        )?;
    Ok(())
}

pub(super) async fn step(context: Arc<Context>) -> anyhow::Result<()> {
    for snapshot in snapshots_api(&context.client, None)
        .list(&ListParams::default())
        .await?
    {
        let ready = snapshot.data["status"]["readyToUse"].as_bool() == Some(true);
        if ready || snapshot.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if let Err(e) = take(&context, &snapshot).await {
            tracing::info!(
                role = "snapshotter",
                "VolumeSnapshot {}/{} not ready yet: {e:#}",
                snapshot.metadata.namespace.as_deref().unwrap_or_default(),
                snapshot.metadata.name.as_deref().unwrap_or_default()
            );
        }
    }
    sweep(&context).await
}

/// Takes the snapshot if it is of one of the emulator's classes and its
/// source is bound; marks it ready.
async fn take(context: &Context, snapshot: &DynamicObject) -> anyhow::Result<()> {
    let namespace = snapshot.metadata.namespace.clone().unwrap_or_default();
    let name = snapshot.metadata.name.clone().unwrap_or_default();
    let uid = snapshot.metadata.uid.clone().unwrap_or_default();
    let spec = &snapshot.data["spec"];
    let class_name = spec["volumeSnapshotClassName"]
        .as_str()
        .unwrap_or(SNAPSHOT_CLASS);
    let class = classes_api(&context.client).get_opt(class_name).await?;
    let Some(class) = class else {
        bail!("VolumeSnapshotClass {class_name} does not exist");
    };
    if class.data["driver"].as_str() != Some(DRIVER) {
        return Ok(());
    }
    let Some(claim_name) = spec["source"]["persistentVolumeClaimName"].as_str() else {
        bail!("only snapshots of a PVC (spec.source.persistentVolumeClaimName) are supported");
    };
    let content_name = format!("snapcontent-{uid}");
    let contents = contents_api(&context.client);
    let content = match contents.get_opt(&content_name).await? {
        Some(content) => content,
        None => {
            let source = claim_dir(&context.client, &namespace, claim_name)
                .await?
                .with_context(|| {
                    format!(
                        "source PVC {namespace}/{claim_name} is not bound to an emulated volume"
                    )
                })?;
            let dir = context.snapshots_dir().join(&content_name);
            copy_dir(&source, &dir).await?;
            let claims: Api<PersistentVolumeClaim> =
                Api::namespaced(context.client.clone(), &namespace);
            let claim = claims.get(claim_name).await?;
            let restore_size = claim
                .status
                .and_then(|s| s.capacity)
                .and_then(|c| c.get("storage").and_then(|q| parse_quantity(&q.0)))
                .unwrap_or_else(|| disk_usage(&dir));
            let content: DynamicObject = serde_json::from_value(json!({
                "apiVersion": format!("{GROUP}/v1"),
                "kind": "VolumeSnapshotContent",
                "metadata": {"name": content_name},
                "spec": {
                    "deletionPolicy": class.data["deletionPolicy"].as_str().unwrap_or("Delete"),
                    "driver": DRIVER,
                    "source": {"volumeHandle": claim.spec.and_then(|s| s.volume_name).unwrap_or_default()},
                    "volumeSnapshotClassName": class_name,
                    "volumeSnapshotRef": {
                        "apiVersion": format!("{GROUP}/v1"),
                        "kind": "VolumeSnapshot",
                        "namespace": namespace,
                        "name": name,
                        "uid": uid,
                    },
                },
            }))?;
            contents.create(&PostParams::default(), &content).await?;
            let now = jiff::Timestamp::now();
            let status = json!({"status": {
                "readyToUse": true,
                "restoreSize": restore_size,
                "snapshotHandle": dir.display().to_string(),
                "creationTime": now.as_nanosecond() as i64,
            }});
            contents
                .patch_status(
                    &content_name,
                    &PatchParams::default(),
                    &Patch::Merge(&status),
                )
                .await?
        }
    };
    let creation_ns = content.data["status"]["creationTime"]
        .as_i64()
        .unwrap_or_default();
    let created = jiff::Timestamp::from_nanosecond(creation_ns.into())
        .unwrap_or_else(|_| jiff::Timestamp::now());
    let restore_size = content.data["status"]["restoreSize"]
        .as_u64()
        .unwrap_or_default();
    let status = json!({"status": {
        "boundVolumeSnapshotContentName": content_name,
        "readyToUse": true,
        "restoreSize": restore_size.to_string(),
        "creationTime": created.to_string(),
    }});
    snapshots_api(&context.client, Some(&namespace))
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}

/// Deletes the contents (and their copies) whose VolumeSnapshot is gone, as
/// the snapshot controller does for the `Delete` policy.
async fn sweep(context: &Context) -> anyhow::Result<()> {
    let contents = contents_api(&context.client);
    for content in contents.list(&ListParams::default()).await? {
        let spec = &content.data["spec"];
        if spec["driver"].as_str() != Some(DRIVER)
            || spec["deletionPolicy"].as_str() != Some("Delete")
        {
            continue;
        }
        let reference = &spec["volumeSnapshotRef"];
        let (Some(namespace), Some(name)) =
            (reference["namespace"].as_str(), reference["name"].as_str())
        else {
            continue;
        };
        let snapshot = snapshots_api(&context.client, Some(namespace))
            .get_opt(name)
            .await?;
        let alive =
            snapshot.is_some_and(|s| s.metadata.uid.as_deref() == reference["uid"].as_str());
        if alive {
            continue;
        }
        if let Some(handle) = content.data["status"]["snapshotHandle"].as_str() {
            remove_dir(&PathBuf::from(handle)).await?;
        }
        let content_name = content.metadata.name.clone().unwrap_or_default();
        contents
            .delete(&content_name, &DeleteParams::default())
            .await?;
    }
    Ok(())
}

/// The directory of a ready VolumeSnapshot and its restore size in bytes;
/// an error while it is not ready.
pub(super) async fn ready_snapshot(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<(PathBuf, Option<u64>)> {
    let snapshot = snapshots_api(client, Some(namespace))
        .get_opt(name)
        .await?
        .with_context(|| format!("VolumeSnapshot {namespace}/{name} does not exist"))?;
    let status = &snapshot.data["status"];
    if status["readyToUse"].as_bool() != Some(true) {
        bail!("VolumeSnapshot {namespace}/{name} is not ready to use");
    }
    let content_name = status["boundVolumeSnapshotContentName"]
        .as_str()
        .with_context(|| format!("VolumeSnapshot {namespace}/{name} is not bound to a content"))?;
    let content = contents_api(client).get(content_name).await?;
    let handle = content.data["status"]["snapshotHandle"]
        .as_str()
        .with_context(|| format!("VolumeSnapshotContent {content_name} has no snapshot handle"))?;
    Ok((
        PathBuf::from(handle),
        content.data["status"]["restoreSize"].as_u64(),
    ))
}

/// Bytes in a Kubernetes quantity such as `1Gi`, `500M` or `1048576`.
pub(super) fn parse_quantity(quantity: &str) -> Option<u64> {
    let quantity = quantity.trim();
    let split = quantity
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(quantity.len());
    let (number, suffix) = quantity.split_at(split);
    let number: f64 = number.parse().ok()?;
    let multiplier: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "Ki" => 1024.0,
        "Mi" => 1024.0f64.powi(2),
        "Gi" => 1024.0f64.powi(3),
        "Ti" => 1024.0f64.powi(4),
        "Pi" => 1024.0f64.powi(5),
        _ => return None,
    };
    Some((number * multiplier).ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_quantity;

    #[test]
    fn quantities_in_bytes() {
        assert_eq!(parse_quantity("1Gi"), Some(1 << 30));
        assert_eq!(parse_quantity("500M"), Some(500_000_000));
        assert_eq!(parse_quantity("1048576"), Some(1 << 20));
        assert_eq!(parse_quantity("1.5Ki"), Some(1536));
        assert_eq!(parse_quantity("3x"), None);
    }
}
