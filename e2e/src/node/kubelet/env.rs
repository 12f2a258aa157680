//! A container's environment, resolved as the kubelet does: `envFrom`
//! first, then `env` in order with `$(VAR)` references to earlier entries,
//! values from Secrets, ConfigMaps and the Pod's own fields.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::Api;

/// Resolves the environment of `container` in `pod`; an error is what the
/// kubelet reports as `CreateContainerConfigError`.
pub(super) async fn resolve(
    client: &kube::Client,
    pod: &Pod,
    container: &Container,
) -> anyhow::Result<Vec<(String, String)>> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut vars: Vec<(String, String)> = Vec::new();
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        let data = if let Some(secret) = &source.secret_ref {
            secret_data(
                client,
                namespace,
                &secret.name,
                secret.optional == Some(true),
            )
            .await?
        } else if let Some(map) = &source.config_map_ref {
            config_map_data(client, namespace, &map.name, map.optional == Some(true)).await?
        } else {
            continue;
        };
        for (key, value) in data {
            set(&mut vars, format!("{prefix}{key}"), value);
        }
    }
    for var in container.env.iter().flatten() {
        let value = if let Some(value) = &var.value {
            Some(expand(value, &vars))
        } else if let Some(from) = &var.value_from {
            if let Some(key) = &from.secret_key_ref {
                let data =
                    secret_data(client, namespace, &key.name, key.optional == Some(true)).await?;
                match data.get(&key.key) {
                    Some(value) => Some(value.clone()),
                    None if key.optional == Some(true) => None,
                    None => bail!(
                        "couldn't find key {} in Secret {namespace}/{}",
                        key.key,
                        key.name
                    ),
                }
            } else if let Some(key) = &from.config_map_key_ref {
                let data =
                    config_map_data(client, namespace, &key.name, key.optional == Some(true))
                        .await?;
                match data.get(&key.key) {
                    Some(value) => Some(value.clone()),
                    None if key.optional == Some(true) => None,
                    None => bail!(
                        "couldn't find key {} in ConfigMap {namespace}/{}",
                        key.key,
                        key.name
                    ),
                }
            } else if let Some(field) = &from.field_ref {
                Some(pod_field(pod, &field.field_path)?)
            } else {
                bail!(
                    "env {}: only secretKeyRef, configMapKeyRef and fieldRef are emulated",
                    var.name
                );
            }
        } else {
            Some(String::new())
        };
        if let Some(value) = value {
            set(&mut vars, var.name.clone(), value);
        }
    }
    Ok(vars)
}

/// Replaces `$(NAME)` with earlier variables' values; `$$(NAME)` escapes,
/// and unknown names stay as written, as in Kubernetes.
pub(super) fn expand(value: &str, vars: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(escaped) = rest.strip_prefix("$$") {
            out.push('$');
            rest = escaped;
        } else if let Some(open) = rest.strip_prefix("$(")
            && let Some(close) = open.find(')')
        {
            let name = &open[..close];
            match vars.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => out.push_str(&rest[..close + 3]),
            }
            rest = &open[close + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

fn set(vars: &mut Vec<(String, String)>, name: String, value: String) {
    vars.retain(|(k, _)| *k != name);
    vars.push((name, value));
}

pub(super) async fn secret_data(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    optional: bool,
) -> anyhow::Result<BTreeMap<String, String>> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    match secrets.get_opt(name).await? {
        Some(secret) => {
            let mut data: BTreeMap<String, String> = secret.string_data.unwrap_or_default();
            for (key, bytes) in secret.data.unwrap_or_default() {
                data.insert(key, String::from_utf8_lossy(&bytes.0).into_owned());
            }
            Ok(data)
        }
        None if optional => Ok(BTreeMap::new()),
        None => bail!("secret {namespace}/{name} not found"),
    }
}

pub(super) async fn config_map_data(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    optional: bool,
) -> anyhow::Result<BTreeMap<String, String>> {
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    match maps.get_opt(name).await? {
        Some(map) => Ok(map.data.unwrap_or_default()),
        None if optional => Ok(BTreeMap::new()),
        None => bail!("configmap {namespace}/{name} not found"),
    }
}

/// The downward API fields a mover could ask for.
pub(super) fn pod_field(pod: &Pod, path: &str) -> anyhow::Result<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref().context("pod has no spec")?;
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.node_name.clone().unwrap_or_default(),
        "spec.serviceAccountName" => spec.service_account_name.clone().unwrap_or_default(),
        "status.podIP" | "status.hostIP" => "127.0.0.1".into(),
        other => {
            let labels = other
                .strip_prefix("metadata.labels['")
                .map(|k| (k, meta.labels.as_ref()));
            let annotations = other
                .strip_prefix("metadata.annotations['")
                .map(|k| (k, meta.annotations.as_ref()));
            match labels.or(annotations) {
                Some((key, map)) => {
                    let key = key.trim_end_matches("']");
                    map.and_then(|m| m.get(key)).cloned().unwrap_or_default()
                }
                None => bail!("fieldRef {other} is not emulated"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::expand;

    #[test]
    fn expands_references_like_kubernetes() {
        let vars = vec![
            ("A".to_string(), "1".to_string()),
            ("B".to_string(), "two".to_string()),
        ];
        assert_eq!(expand("x$(A)y$(B)", &vars), "x1ytwo");
        assert_eq!(expand("$$(A)", &vars), "$(A)");
        assert_eq!(expand("$(MISSING) $A", &vars), "$(MISSING) $A");
    }
}
