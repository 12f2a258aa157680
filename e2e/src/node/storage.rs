//! The CSI provisioner's part: PVCs of the emulator's StorageClass become
//! directories under `ROOT/volumes`, each behind a PersistentVolume
//! pre-bound to its claim (kube-controller-manager completes the binding).
//!
//! A PVC with a `dataSource` starts as a copy: of another PVC's directory
//! (a clone) or of a VolumeSnapshot's directory (a restore), which must be
//! ready and no larger than the claim.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeSpec,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};

use super::snapshots::{self, parse_quantity};
use super::{Context, DRIVER, STORAGE_CLASS};

/// Annotation real provisioners put on the PVs they create.
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";

pub(super) async fn install_class(context: &Context) -> anyhow::Result<()> {
    let class = StorageClass {
        metadata: ObjectMeta {
            name: Some(STORAGE_CLASS.into()),
            annotations: Some(BTreeMap::from([(
                "storageclass.kubernetes.io/is-default-class".to_string(),
                "true".to_string(),
            )])),
            ..Default::default()
        },
        provisioner: DRIVER.into(),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some("Immediate".into()),
        allow_volume_expansion: Some(true),
        ..Default::default()
    };
    let classes: Api<StorageClass> = Api::all(context.client.clone());
    classes
        .patch(
            STORAGE_CLASS,
            &PatchParams::apply("sluice-node-emulator").force(),
            &Patch::Apply(&class),
        )
        .await?;
    Ok(())
}

pub(super) async fn step(context: Arc<Context>) -> anyhow::Result<()> {
    let claims: Api<PersistentVolumeClaim> = Api::all(context.client.clone());
    let volumes: Api<PersistentVolume> = Api::all(context.client.clone());
    for claim in claims.list(&ListParams::default()).await? {
        let spec = claim.spec.as_ref();
        let wanted = claim.metadata.deletion_timestamp.is_none()
            && spec.is_some_and(|s| {
                s.volume_name.is_none() && s.storage_class_name.as_deref() == Some(STORAGE_CLASS)
            });
        if !wanted {
            continue;
        }
        let name = pv_name(&claim);
        if volumes.get_opt(&name).await?.is_some() {
            continue;
        }
        if let Err(e) = provision(&context, &claim, &name).await {
            tracing::info!(
                role = "provisioner",
                "PVC {}/{} not provisioned yet: {e:#}",
                claim.metadata.namespace.as_deref().unwrap_or_default(),
                claim.metadata.name.as_deref().unwrap_or_default()
            );
        }
    }
    for volume in volumes.list(&ListParams::default()).await? {
        let ours = volume
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PROVISIONED_BY))
            .is_some_and(|p| p == DRIVER);
        let released = volume.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
        let delete = volume
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
            == Some("Delete");
        if ours && released && delete && volume.metadata.deletion_timestamp.is_none() {
            let name = volume.metadata.name.clone().unwrap_or_default();
            if let Some(path) = host_path(&volume) {
                remove_dir(&path).await?;
            }
            volumes.delete(&name, &DeleteParams::default()).await?;
        }
    }
    Ok(())
}

/// The directory that holds the data of a bound PVC, if it is bound to one
/// of the emulator's volumes.
pub async fn claim_dir(
    client: &kube::Client,
    namespace: &str,
    claim: &str,
) -> anyhow::Result<Option<PathBuf>> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let Some(claim) = claims.get_opt(claim).await? else {
        return Ok(None);
    };
    let Some(volume_name) = claim.spec.and_then(|s| s.volume_name) else {
        return Ok(None);
    };
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    Ok(volumes
        .get_opt(&volume_name)
        .await?
        .as_ref()
        .and_then(host_path))
}

fn host_path(volume: &PersistentVolume) -> Option<PathBuf> {
    volume
        .spec
        .as_ref()
        .and_then(|s| s.host_path.as_ref())
        .map(|h| PathBuf::from(&h.path))
}

/// Real provisioners name a claim's volume after the claim's uid.
fn pv_name(claim: &PersistentVolumeClaim) -> String {
    format!("pvc-{}", claim.metadata.uid.as_deref().unwrap_or_default())
}

async fn provision(
    context: &Context,
    claim: &PersistentVolumeClaim,
    name: &str,
) -> anyhow::Result<()> {
    let namespace = claim.metadata.namespace.clone().unwrap_or_default();
    let claim_name = claim.metadata.name.clone().unwrap_or_default();
    let spec = claim.spec.clone().unwrap_or_default();
    let size = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .cloned()
        .context("the claim requests no storage size")?;
    let dir = context.volumes_dir().join(name);
    let source = spec
        .data_source_ref
        .as_ref()
        .map(|r| (r.kind.clone(), r.name.clone(), r.api_group.clone()));
    let source = source.or_else(|| {
        spec.data_source
            .as_ref()
            .map(|r| (r.kind.clone(), r.name.clone(), r.api_group.clone()))
    });
    match source {
        None => tokio::fs::create_dir_all(&dir)
            .await
            .with_context(|| format!("cannot create {}", dir.display()))?,
        Some((kind, source, _)) if kind == "PersistentVolumeClaim" => {
            let from = claim_dir(&context.client, &namespace, &source)
                .await?
                .with_context(|| {
                    format!(
                        "source PVC {namespace}/{source} is not bound to an emulated volume yet"
                    )
                })?;
            copy_dir(&from, &dir).await?;
        }
        Some((kind, source, group))
            if kind == "VolumeSnapshot" && group.as_deref() == Some("snapshot.storage.k8s.io") =>
        {
            let (from, restore_size) =
                snapshots::ready_snapshot(&context.client, &namespace, &source).await?;
            if let Some(restore_size) = restore_size
                && parse_quantity(&size.0).is_some_and(|requested| requested < restore_size)
            {
                bail!(
                    "the claim requests {} but VolumeSnapshot {namespace}/{source} needs at least {restore_size} bytes",
                    size.0
                );
            }
            copy_dir(&from, &dir).await?;
        }
        Some((kind, source, _)) => {
            bail!("data source {kind} {source} is not supported by the emulator")
        }
    }
    let volume = PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: Some(BTreeMap::from([(
                PROVISIONED_BY.to_string(),
                DRIVER.to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some(BTreeMap::from([("storage".to_string(), size)])),
            access_modes: spec.access_modes.clone(),
            persistent_volume_reclaim_policy: Some("Delete".into()),
            storage_class_name: Some(STORAGE_CLASS.into()),
            volume_mode: spec.volume_mode.clone(),
            host_path: Some(HostPathVolumeSource {
                path: dir.display().to_string(),
                type_: Some("Directory".into()),
            }),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: Some(namespace),
                name: Some(claim_name),
                uid: claim.metadata.uid.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    };
    let volumes: Api<PersistentVolume> = Api::all(context.client.clone());
    volumes.create(&PostParams::default(), &volume).await?;
    Ok(())
}

/// Copies a directory tree with owners, modes, times and links (`cp -a`),
/// into a temporary name first so a half-made copy is never a volume.
pub(super) async fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    let partial = to.with_extension("partial");
    remove_dir(&partial).await?;
    let status = tokio::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(&partial)
        .status()
        .await
        .context("cannot run cp")?;
    if !status.success() {
        bail!(
            "cp -a {} {} failed ({status})",
            from.display(),
            partial.display()
        );
    }
    tokio::fs::rename(&partial, to)
        .await
        .with_context(|| format!("cannot rename {} to {}", partial.display(), to.display()))
}

pub(super) async fn remove_dir(path: &Path) -> anyhow::Result<()> {
    match tokio::fs::remove_dir_all(path).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Total size in bytes of the files under `dir`.
pub(super) fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}
