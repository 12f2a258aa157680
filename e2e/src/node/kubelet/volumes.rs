//! A Pod's volumes as host directories: PVCs are their emulated volume's
//! directory, Secrets, ConfigMaps and projected volumes are written out as
//! files, emptyDirs are fresh directories under the Pod's directory.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{KeyToPath, Pod, ServiceAccount, Volume};
use kube::Api;
use kube::api::PostParams;

use super::env::{config_map_data, pod_field, secret_data};
use crate::node::storage::claim_dir;

/// Resolves every volume of `pod` to a host directory; an error means "not
/// yet" (an unbound PVC, a missing Secret) and the kubelet retries.
pub(super) async fn prepare(
    client: &kube::Client,
    pod: &Pod,
    pod_dir: &Path,
) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut dirs = BTreeMap::new();
    for volume in pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
    {
        let dir = if let Some(claim) = &volume.persistent_volume_claim {
            claim_dir(client, namespace, &claim.claim_name)
                .await?
                .with_context(|| {
                    format!(
                        "PVC {namespace}/{} is not bound to an emulated volume yet",
                        claim.claim_name
                    )
                })?
        } else if let Some(host) = &volume.host_path {
            PathBuf::from(&host.path)
        } else {
            let dir = pod_dir.join("volumes").join(&volume.name);
            fill(client, pod, volume, &dir).await?;
            dir
        };
        if let Some(group) = fs_group(pod)
            && owned_by_fs_group(volume)
        {
            give_to_group(&dir, group)
                .with_context(|| format!("cannot apply fsGroup {group} to {}", dir.display()))?;
        }
        dirs.insert(volume.name.clone(), dir);
    }
    Ok(dirs)
}

fn fs_group(pod: &Pod) -> Option<u32> {
    pod.spec
        .as_ref()?
        .security_context
        .as_ref()?
        .fs_group
        .map(|g| g as u32)
}

/// Whether the kubelet hands `volume` to the Pod's fsGroup: writable PVCs
/// (of a driver whose fsGroupPolicy is `File`, as the emulated one is) and
/// emptyDirs. Read-only claims keep their ownership.
fn owned_by_fs_group(volume: &Volume) -> bool {
    match &volume.persistent_volume_claim {
        Some(claim) => claim.read_only != Some(true),
        None => volume.empty_dir.is_some(),
    }
}

/// What the kubelet does for `fsGroup`: every file and directory under
/// `dir` gets group `group` and the owner's permissions for the group, and
/// directories get the setgid bit so new files inherit the group.
fn give_to_group(dir: &Path, group: u32) -> std::io::Result<()> {
    let metadata = std::fs::symlink_metadata(dir)?;
    std::os::unix::fs::lchown(dir, None, Some(group))?;
    if metadata.file_type().is_symlink() {
        return Ok(());
    }
    let mode = metadata.permissions().mode();
    let group_bits = (mode & 0o700) >> 3 | 0o060;
    if metadata.is_dir() {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o2070))?;
        for entry in std::fs::read_dir(dir)? {
            give_to_group(&entry?.path(), group)?;
        }
    } else {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | group_bits))?;
    }
    Ok(())
}

async fn fill(client: &kube::Client, pod: &Pod, volume: &Volume, dir: &Path) -> anyhow::Result<()> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if volume.empty_dir.is_some() {
        return Ok(());
    }
    if let Some(secret) = &volume.secret {
        let name = secret.secret_name.clone().unwrap_or_default();
        let data = secret_data(client, namespace, &name, secret.optional == Some(true)).await?;
        return write_items(dir, &data, secret.items.as_deref(), secret.default_mode);
    }
    if let Some(map) = &volume.config_map {
        let data =
            config_map_data(client, namespace, &map.name, map.optional == Some(true)).await?;
        return write_items(dir, &data, map.items.as_deref(), map.default_mode);
    }
    if let Some(projected) = &volume.projected {
        for source in projected.sources.iter().flatten() {
            if let Some(map) = &source.config_map {
                let data =
                    config_map_data(client, namespace, &map.name, map.optional == Some(true))
                        .await?;
                write_items(dir, &data, map.items.as_deref(), projected.default_mode)?;
            } else if let Some(secret) = &source.secret {
                let data = secret_data(
                    client,
                    namespace,
                    &secret.name,
                    secret.optional == Some(true),
                )
                .await?;
                write_items(dir, &data, secret.items.as_deref(), projected.default_mode)?;
            } else if let Some(api) = &source.downward_api {
                for item in api.items.iter().flatten() {
                    let Some(field) = &item.field_ref else {
                        continue;
                    };
                    write_file(
                        &dir.join(&item.path),
                        &pod_field(pod, &field.field_path)?,
                        projected.default_mode,
                    )?;
                }
            } else if let Some(token) = &source.service_account_token {
                let value = service_account_token(
                    client,
                    pod,
                    token.audience.clone(),
                    token.expiration_seconds,
                )
                .await?;
                write_file(&dir.join(&token.path), &value, projected.default_mode)?;
            }
        }
        return Ok(());
    }
    bail!(
        "volume {} has a type the emulator does not support",
        volume.name
    )
}

/// A real token for the Pod's service account, from the TokenRequest API.
async fn service_account_token(
    client: &kube::Client,
    pod: &Pod,
    audience: Option<String>,
    expiration_seconds: Option<i64>,
) -> anyhow::Result<String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: audience.into_iter().collect(),
            expiration_seconds,
            ..Default::default()
        },
        ..Default::default()
    };
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let response: TokenRequest = accounts
        .create_subresource("token", &account, &PostParams::default(), &request)
        .await
        .with_context(|| {
            format!("cannot request a token for service account {namespace}/{account}")
        })?;
    Ok(response.status.map(|s| s.token).unwrap_or_default())
}

fn write_items(
    dir: &Path,
    data: &BTreeMap<String, String>,
    items: Option<&[KeyToPath]>,
    mode: Option<i32>,
) -> anyhow::Result<()> {
    match items {
        Some(items) => {
            for item in items {
                let Some(value) = data.get(&item.key) else {
                    bail!("key {} is missing", item.key);
                };
                write_file(&dir.join(&item.path), value, item.mode.or(mode))?;
            }
        }
        None => {
            for (key, value) in data {
                write_file(&dir.join(key), value, mode)?;
            }
        }
    }
    Ok(())
}

fn write_file(path: &Path, value: &str, mode: Option<i32>) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, value).with_context(|| format!("cannot write {}", path.display()))?;
    let mode = mode.unwrap_or(0o644) as u32;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))
}
