//! Settings of the mover Pod and the summary of its last run, shared by both kinds.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, ConfigMapVolumeSource, KeyToPath, PodSecurityContext, ResourceRequirements,
    SecretVolumeSource, Volume,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Overrides for the mover Pod, named as VolSync names them. Without them the Pod runs with the
/// operator's restricted defaults.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MoverConfig {
    /// Pod security context of the mover, e.g. the `runAsUser`/`fsGroup` that can read the data.
    /// Each field set here replaces the restricted default of that field (`runAsNonRoot: true`,
    /// `runAsUser`, `runAsGroup` and `fsGroup` 65532, `seccompProfile: RuntimeDefault`); the
    /// others stay, so setting `runAsUser` alone still meets the restricted Pod Security
    /// Standard. Running as root takes `runAsNonRoot: false` as well.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mover_security_context: Option<PodSecurityContext>,
    /// ServiceAccount (in the object's namespace) the mover Pod runs as. Default: none needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub mover_service_account: Option<String>,
    /// Compute resources of the mover container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mover_resources: Option<ResourceRequirements>,
    /// Labels added to the mover Pod, in addition to Sluice's own.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mover_pod_labels: BTreeMap<String, String>,
    /// Affinity of the mover Pod. Ignored with `copyMethod: Direct`, where the Pod must run on
    /// the node that mounts the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mover_affinity: Option<Affinity>,
}

/// A CA certificate the mover trusts for the repository's endpoint, from a Secret or ConfigMap.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.secretName) != has(self.configMapName)",
    "message": "spec.restic.customCA: set exactly one of secretName or configMapName",
}]))]
pub struct CustomCa {
    /// Secret holding the certificate (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: Option<String>,
    /// ConfigMap holding the certificate (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub config_map_name: Option<String>,
    /// Key of the certificate within the Secret or ConfigMap.
    #[schemars(length(min = 1))]
    pub key: String,
}

impl CustomCa {
    /// The Pod volume `name` holding the certificate as the one file `file`, from the Secret or
    /// the ConfigMap: mover Jobs and the plugin's browse Pods mount it alike.
    pub fn volume(&self, name: &str, file: &str) -> Volume {
        let items = Some(vec![KeyToPath {
            key: self.key.clone(),
            path: file.into(),
            ..Default::default()
        }]);
        Volume {
            name: name.into(),
            secret: self.secret_name.as_ref().map(|name| SecretVolumeSource {
                secret_name: Some(name.clone()),
                items: items.clone(),
                ..Default::default()
            }),
            config_map: self
                .config_map_name
                .as_ref()
                .map(|name| ConfigMapVolumeSource {
                    name: name.clone(),
                    items,
                    ..Default::default()
                }),
            ..Default::default()
        }
    }
}

/// Outcome of the latest mover run, as VolSync reports it.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum MoverOutcome {
    /// The mover finished its plan.
    Successful,
    /// The mover failed; `logs` and the conditions say why.
    Failed,
}

/// Summary of the latest mover Job: its outcome and the tail of its log.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MoverStatus {
    /// Whether the latest mover run succeeded.
    pub result: MoverOutcome,
    /// The last lines of the mover's output, short enough for `kubectl describe`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<String>,
}
