//! The cluster side: a client for the kubeconfig context, the namespace the flags mean, and the
//! Sluice objects and repository Secrets the verbs work on.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result, anyhow, bail};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{
    Api, Client,
    config::{KubeConfigOptions, Kubeconfig},
};
use sluice_api::{ReplicationDestination, ReplicationSource};

use crate::cli::Global;

/// A client and the namespace the command works in.
pub struct Cluster {
    /// The API client of the chosen context.
    pub client: Client,
    /// `-n`, else the context's namespace, else `default`.
    pub namespace: String,
    /// `-A`.
    pub all_namespaces: bool,
}

impl Cluster {
    /// Connects as kubectl would with the same flags.
    pub async fn connect(global: &Global) -> Result<Cluster> {
        let options = KubeConfigOptions {
            context: global.context.clone(),
            ..Default::default()
        };
        let config = match &global.kubeconfig {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path)
                    .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &options).await
            }
            None => kube::Config::from_kubeconfig(&options).await,
        }
        .map_err(|e| {
            anyhow!("cannot load the kubeconfig: {e}; check KUBECONFIG, --kubeconfig and --context")
        })?;
        let namespace = global
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config)
            .map_err(|e| anyhow!("cannot build a Kubernetes client: {e}"))?;
        Ok(Cluster {
            client,
            namespace,
            all_namespaces: global.all_namespaces,
        })
    }

    /// The API of a namespaced kind in the command's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The API of a namespaced kind across the namespaces `-A` or `-n` select.
    pub fn list_api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        if self.all_namespaces {
            Api::all(self.client.clone())
        } else {
            self.api()
        }
    }

    /// The ReplicationSource `name` in the namespace, or an error saying how to find one.
    pub async fn source(&self, name: &str) -> Result<ReplicationSource> {
        self.api::<ReplicationSource>()
            .get_opt(name)
            .await
            .with_context(|| format!("reading ReplicationSource {}/{name}", self.namespace))?
            .ok_or_else(|| {
                anyhow!(
                    "ReplicationSource {}/{name} not found; list them with `kubectl sluice status -n {}`",
                    self.namespace,
                    self.namespace
                )
            })
    }

    /// A source by name, or a destination by `rdst/NAME` (also `replicationdestination/NAME`).
    pub async fn object(&self, reference: &str) -> Result<Object> {
        match ObjectRef::parse(reference)? {
            ObjectRef::Source(name) => Ok(Object::Source(Box::new(self.source(&name).await?))),
            ObjectRef::Destination(name) => self
                .api::<ReplicationDestination>()
                .get_opt(&name)
                .await
                .with_context(|| format!("reading ReplicationDestination {}/{name}", self.namespace))?
                .map(|d| Object::Destination(Box::new(d)))
                .ok_or_else(|| {
                    anyhow!(
                        "ReplicationDestination {}/{name} not found; list them with `kubectl sluice status -n {}`",
                        self.namespace,
                        self.namespace
                    )
                }),
        }
    }

    /// The repository Secret's keys and values, in the command's namespace.
    pub async fn repository_env(&self, secret: &str) -> Result<BTreeMap<String, String>> {
        let found = self
            .api::<Secret>()
            .get_opt(secret)
            .await
            .with_context(|| format!("reading the repository Secret {}/{secret}", self.namespace))?
            .ok_or_else(|| {
                anyhow!(
                    "repository Secret {}/{secret} not found; create it with RESTIC_REPOSITORY and RESTIC_PASSWORD",
                    self.namespace
                )
            })?;
        Ok(secret_values(&found))
    }

    /// The PEM bundle a `customCA` names, from its Secret or ConfigMap.
    pub async fn custom_ca(&self, ca: &sluice_api::CustomCa) -> Result<Option<Vec<u8>>> {
        if let Some(name) = &ca.secret_name {
            let secret = self.api::<Secret>().get(name).await.with_context(|| {
                format!("reading the customCA Secret {}/{name}", self.namespace)
            })?;
            return Ok(secret_values(&secret)
                .remove(&ca.key)
                .map(String::into_bytes));
        }
        if let Some(name) = &ca.config_map_name {
            let map = self.api::<ConfigMap>().get(name).await.with_context(|| {
                format!("reading the customCA ConfigMap {}/{name}", self.namespace)
            })?;
            return Ok(map
                .data
                .and_then(|mut data| data.remove(&ca.key))
                .map(String::into_bytes));
        }
        Ok(None)
    }
}

/// Every key of a Secret as text (`data` decoded, `stringData` on top, as the API server
/// merges them); values that are not UTF-8 are left out.
pub fn secret_values(secret: &Secret) -> BTreeMap<String, String> {
    let mut values: BTreeMap<String, String> = secret
        .data
        .iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), String::from_utf8(v.0.clone()).ok()?)))
        .collect();
    values.extend(secret.string_data.clone().unwrap_or_default());
    values
}

/// How a command line names an object.
#[derive(Debug, PartialEq, Eq)]
pub enum ObjectRef {
    /// `NAME`, `rsrc/NAME` or `replicationsource/NAME`.
    Source(String),
    /// `rdst/NAME` or `replicationdestination/NAME`.
    Destination(String),
}

impl ObjectRef {
    /// Parses kubectl's `KIND/NAME` forms; a bare name is a ReplicationSource.
    pub fn parse(reference: &str) -> Result<ObjectRef> {
        let Some((kind, name)) = reference.split_once('/') else {
            return Ok(ObjectRef::Source(reference.to_string()));
        };
        if name.is_empty() {
            bail!("{reference:?} names no object after the '/'");
        }
        let kind = kind.to_ascii_lowercase();
        let kind = kind.split('.').next().unwrap_or_default();
        match kind {
            "rsrc" | "replicationsource" | "replicationsources" => {
                Ok(ObjectRef::Source(name.to_string()))
            }
            "rdst" | "replicationdestination" | "replicationdestinations" => {
                Ok(ObjectRef::Destination(name.to_string()))
            }
            _ => bail!(
                "{reference:?}: unknown kind {kind:?}; use NAME or rsrc/NAME for a ReplicationSource, rdst/NAME for a ReplicationDestination"
            ),
        }
    }
}

/// A ReplicationSource or a ReplicationDestination.
pub enum Object {
    /// A ReplicationSource.
    Source(Box<ReplicationSource>),
    /// A ReplicationDestination.
    Destination(Box<ReplicationDestination>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    #[test]
    fn object_references_follow_kubectl() {
        let cases = [
            ("db", Some(ObjectRef::Source("db".into()))),
            ("rsrc/db", Some(ObjectRef::Source("db".into()))),
            (
                "replicationsource.sluice.dev/db",
                Some(ObjectRef::Source("db".into())),
            ),
            ("rdst/r", Some(ObjectRef::Destination("r".into()))),
            (
                "ReplicationDestinations/r",
                Some(ObjectRef::Destination("r".into())),
            ),
            ("pvc/db", None),
            ("rdst/", None),
        ];
        for (text, expected) in cases {
            assert_eq!(ObjectRef::parse(text).ok(), expected, "{text}");
        }
    }

    #[test]
    fn secret_values_merge_data_and_string_data() {
        let secret = Secret {
            data: Some(BTreeMap::from([
                (
                    "RESTIC_REPOSITORY".into(),
                    ByteString(b"s3:http://h/b".to_vec()),
                ),
                ("RESTIC_PASSWORD".into(), ByteString(b"old".to_vec())),
                ("binary".into(), ByteString(vec![0xff, 0xfe])),
            ])),
            string_data: Some(BTreeMap::from([("RESTIC_PASSWORD".into(), "new".into())])),
            ..Default::default()
        };
        let values = secret_values(&secret);
        assert_eq!(values["RESTIC_REPOSITORY"], "s3:http://h/b");
        assert_eq!(values["RESTIC_PASSWORD"], "new");
        assert!(!values.contains_key("binary"));
    }
}
