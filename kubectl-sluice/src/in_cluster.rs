//! `ls` and `dump --in-cluster`: `sluice-mover ls|dump` in a short-lived Pod of the object's
//! namespace, for repositories this machine cannot reach (an in-cluster endpoint, a private
//! network) or can reach only with the Pod's identity (IRSA, web identity).
//!
//! The Pod runs the mover image with the repository Secret as its environment and the
//! object's `moverServiceAccount`, as a mover Job does, under the restricted Pod Security
//! Standard. Its standard output comes back through the Pod's log, streamed while it runs: text
//! lines only, because the container runtime's log drops the `\r` of every `\r\n` (so `ls`
//! prints JSON lines and `dump` base64 lines). The mover writes its error, or what `dump`
//! wrote, to the termination log instead of standard error, so the log carries the data alone. The Pod is deleted when the command ends, and
//! stops on its own after [`POD_DEADLINE_SECONDS`] if the plugin is killed first.

use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use futures::AsyncReadExt as _;
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerStateTerminated, EmptyDirVolumeSource, EnvFromSource, EnvVar,
    Pod, PodSecurityContext, PodSpec, SeccompProfile, SecretEnvSource, SecurityContext, Volume,
    VolumeMount,
};
use kube::api::{DeleteParams, LogParams, ObjectMeta, PostParams};
use sluice_api::CustomCa;

use crate::cluster::Cluster;

/// A browse Pod that outlives the plugin (killed, disconnected) stops after this long.
pub const POD_DEADLINE_SECONDS: i64 = 3600;

/// How long the Pod may take to start (scheduling, image pull) before the command gives up.
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// Where the mover writes its last line in the Pod.
const TERMINATION_LOG: &str = "/dev/termination-log";

/// Where the `customCA` bundle is mounted.
const CA_DIR: &str = "/etc/sluice/ca";

/// What the Pod runs and with what access.
#[derive(Clone, Debug, PartialEq)]
pub struct BrowsePod {
    /// The mover image.
    pub image: String,
    /// The repository Secret, taken whole as the environment.
    pub secret: String,
    /// The object's `customCA`.
    pub custom_ca: Option<CustomCa>,
    /// The object's `moverServiceAccount`.
    pub service_account: Option<String>,
    /// The `sluice-mover` command after the global flags: `ls --json latest /etc`.
    pub command: Vec<String>,
}

/// The Pod of `browse`: restricted, never restarted, with a deadline.
pub fn pod(browse: &BrowsePod) -> Pod {
    let mut args: Vec<String> = ["--quiet", "--termination-log", TERMINATION_LOG]
        .map(String::from)
        .into();
    let mut volumes = vec![Volume {
        name: "tmp".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }];
    let mut mounts = vec![VolumeMount {
        name: "tmp".into(),
        mount_path: "/tmp".into(),
        ..Default::default()
    }];
    if let Some(ca) = &browse.custom_ca {
        volumes.push(ca.volume("ca", "ca.crt"));
        mounts.push(VolumeMount {
            name: "ca".into(),
            mount_path: CA_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
        args.extend(["--cacert".into(), format!("{CA_DIR}/ca.crt")]);
    }
    args.extend(browse.command.iter().cloned());
    Pod {
        metadata: ObjectMeta {
            generate_name: Some("sluice-browse-".into()),
            labels: Some(
                [
                    ("app.kubernetes.io/name", "sluice"),
                    ("app.kubernetes.io/component", "browse"),
                ]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into(),
            ),
            ..Default::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            active_deadline_seconds: Some(POD_DEADLINE_SECONDS),
            service_account_name: browse.service_account.clone(),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(65_532),
                run_as_group: Some(65_532),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            containers: vec![Container {
                name: "mover".into(),
                image: Some(browse.image.clone()),
                command: Some(vec!["sluice-mover".into()]),
                args: Some(args),
                env_from: Some(vec![EnvFromSource {
                    secret_ref: Some(SecretEnvSource {
                        name: browse.secret.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                // Nothing but the data on standard output: the Pod's log carries both streams.
                env: Some(vec![EnvVar {
                    name: "SLUICE_LOG".into(),
                    value: Some("off".into()),
                    ..Default::default()
                }]),
                volume_mounts: Some(mounts),
                security_context: Some(SecurityContext {
                    allow_privilege_escalation: Some(false),
                    read_only_root_filesystem: Some(true),
                    capabilities: Some(Capabilities {
                        drop: Some(vec!["ALL".into()]),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            volumes: Some(volumes),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// How the Pod ended: its exit code and termination message.
#[derive(Debug)]
pub struct Ended {
    pub exit_code: i32,
    pub message: String,
}

/// Creates the Pod, hands each chunk of its standard output to `out` as it arrives, and returns
/// how it ended. The Pod is deleted whatever happens.
pub async fn run(
    cluster: &Cluster,
    browse: &BrowsePod,
    out: &mut (dyn FnMut(&[u8]) -> Result<()> + Send),
) -> Result<Ended> {
    let pods = cluster.api::<Pod>();
    let created = pods
        .create(&PostParams::default(), &pod(browse))
        .await
        .with_context(|| {
            format!(
                "cannot create a browse Pod in namespace {}; it needs create on pods there",
                cluster.namespace
            )
        })?;
    let name = created.metadata.name.clone().unwrap_or_default();
    let result = stream(cluster, &name, out).await;
    // Best effort: the deadline stops a Pod this could not delete.
    let _ = pods.delete(&name, &DeleteParams::background()).await;
    result
}

async fn stream(
    cluster: &Cluster,
    name: &str,
    out: &mut (dyn FnMut(&[u8]) -> Result<()> + Send),
) -> Result<Ended> {
    let pods = cluster.api::<Pod>();
    let started = tokio::time::Instant::now();
    loop {
        let pod = pods.get(name).await?;
        match started_or_stuck(&pod) {
            Start::Started => break,
            Start::Waiting(reason) if started.elapsed() > START_TIMEOUT => bail!(
                "browse Pod {}/{name} did not start within {}s: {reason}",
                cluster.namespace,
                START_TIMEOUT.as_secs()
            ),
            Start::Waiting(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
    let params = LogParams {
        follow: true,
        container: Some("mover".into()),
        ..Default::default()
    };
    let mut log = pods
        .log_stream(name, &params)
        .await
        .with_context(|| format!("cannot read the log of browse Pod {name}"))?;
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = log
            .read(&mut buffer)
            .await
            .with_context(|| format!("reading the log of browse Pod {name}"))?;
        if read == 0 {
            break;
        }
        out(&buffer[..read])?;
    }
    // The log ends as the container does; its status can lag by a moment.
    for _ in 0..100 {
        if let Some(terminated) = terminated(&pods.get(name).await?) {
            return Ok(Ended {
                exit_code: terminated.exit_code,
                message: terminated.message.unwrap_or_default().trim().to_string(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(anyhow!(
        "browse Pod {name}'s log ended but its container did not terminate"
    ))
}

/// Whether the Pod's container has started, or why not yet.
#[derive(Debug, PartialEq)]
enum Start {
    Started,
    Waiting(String),
}

fn started_or_stuck(pod: &Pod) -> Start {
    let status = pod.status.as_ref();
    let container = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first());
    let state = container.and_then(|c| c.state.as_ref());
    if state.is_some_and(|s| s.running.is_some() || s.terminated.is_some()) {
        return Start::Started;
    }
    if let Some(waiting) = state.and_then(|s| s.waiting.as_ref()) {
        return Start::Waiting(format!(
            "{}: {}",
            waiting.reason.as_deref().unwrap_or("waiting"),
            waiting.message.as_deref().unwrap_or("")
        ));
    }
    let unscheduled = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
        .filter(|c| c.status == "False")
        .and_then(|c| c.message.clone());
    Start::Waiting(unscheduled.unwrap_or_else(|| "not scheduled yet".into()))
}

fn terminated(pod: &Pod) -> Option<ContainerStateTerminated> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .terminated
        .clone()
}

/// The bytes `dump` says it wrote, from its termination message (`dumped N bytes`).
pub fn dumped_bytes(message: &str) -> Option<u64> {
    message
        .strip_prefix("dumped ")?
        .strip_suffix(" bytes")?
        .parse()
        .ok()
}

/// The image mover Jobs run: the operator's `SLUICE_MOVER_IMAGE`, else the operator's own, from
/// the Pod holding its leader Lease.
pub async fn mover_image(cluster: &Cluster) -> Result<String> {
    use k8s_openapi::api::coordination::v1::Lease;
    use kube::{Api, api::ListParams};
    let leases = Api::<Lease>::all(cluster.client.clone())
        .list(&ListParams::default().fields("metadata.name=sluice-operator"))
        .await
        .context("cannot list the operator's leader Lease to find the mover image; pass --image")?;
    let (namespace, holder) = leases
        .items
        .iter()
        .find_map(|lease| {
            Some((
                lease.metadata.namespace.clone()?,
                lease.spec.as_ref()?.holder_identity.clone()?,
            ))
        })
        .ok_or_else(|| {
            anyhow!("no operator holds the sluice-operator Lease, so the mover image is unknown; pass --image")
        })?;
    let pod = Api::<Pod>::namespaced(cluster.client.clone(), &namespace)
        .get(&holder)
        .await
        .with_context(|| {
            format!("cannot read the operator Pod {namespace}/{holder} for the mover image; pass --image")
        })?;
    operator_mover_image(&pod)
        .ok_or_else(|| anyhow!("operator Pod {namespace}/{holder} names no image; pass --image"))
}

fn operator_mover_image(pod: &Pod) -> Option<String> {
    let container = pod.spec.as_ref()?.containers.first()?;
    let configured = container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "SLUICE_MOVER_IMAGE")
        .and_then(|e| e.value.clone())
        .filter(|v| !v.is_empty());
    configured.or_else(|| container.image.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn browse() -> BrowsePod {
        BrowsePod {
            image: "registry.example/sluice:1.0".into(),
            secret: "repo".into(),
            custom_ca: None,
            service_account: Some("backup".into()),
            command: ["ls", "--json", "--host", "apps-db", "latest", "/etc"]
                .map(String::from)
                .into(),
        }
    }

    #[test]
    fn the_pod_is_restricted_and_keeps_its_log_for_the_data() {
        let pod = pod(&browse());
        let spec = pod.spec.unwrap();
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(spec.active_deadline_seconds, Some(POD_DEADLINE_SECONDS));
        assert_eq!(spec.service_account_name.as_deref(), Some("backup"));
        assert_eq!(spec.security_context.unwrap().run_as_non_root, Some(true));
        let container = &spec.containers[0];
        assert_eq!(
            container.args.as_deref().unwrap(),
            [
                "--quiet",
                "--termination-log",
                "/dev/termination-log",
                "ls",
                "--json",
                "--host",
                "apps-db",
                "latest",
                "/etc"
            ]
        );
        let security = container.security_context.as_ref().unwrap();
        assert_eq!(security.allow_privilege_escalation, Some(false));
        assert_eq!(
            security.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_string()][..])
        );
        let env = container.env.as_ref().unwrap();
        assert!(
            env.iter()
                .any(|e| e.name == "SLUICE_LOG" && e.value.as_deref() == Some("off"))
        );
        assert_eq!(
            container.env_from.as_ref().unwrap()[0]
                .secret_ref
                .as_ref()
                .unwrap()
                .name,
            "repo"
        );
    }

    #[test]
    fn a_custom_ca_is_mounted_and_named_before_the_command() {
        for (ca, from_secret) in [
            (
                CustomCa {
                    secret_name: Some("ca".into()),
                    config_map_name: None,
                    key: "bundle.pem".into(),
                },
                true,
            ),
            (
                CustomCa {
                    secret_name: None,
                    config_map_name: Some("ca".into()),
                    key: "bundle.pem".into(),
                },
                false,
            ),
        ] {
            let pod = pod(&BrowsePod {
                custom_ca: Some(ca),
                ..browse()
            });
            let spec = pod.spec.unwrap();
            let volume = spec
                .volumes
                .unwrap()
                .into_iter()
                .find(|v| v.name == "ca")
                .unwrap();
            assert_eq!(volume.secret.is_some(), from_secret);
            assert_eq!(volume.config_map.is_some(), !from_secret);
            let args = spec.containers[0].args.clone().unwrap();
            let at = args.iter().position(|a| a == "--cacert").unwrap();
            assert_eq!(args[at + 1], "/etc/sluice/ca/ca.crt");
            assert!(at < args.iter().position(|a| a == "ls").unwrap());
        }
    }

    #[test]
    fn the_dumped_size_is_read_from_the_termination_message() {
        for (message, bytes) in [
            ("dumped 0 bytes", Some(0)),
            ("dumped 1048576 bytes", Some(1_048_576)),
            ("Fatal: no snapshot with id \"x\"", None),
            ("dumped many bytes", None),
            ("", None),
        ] {
            assert_eq!(dumped_bytes(message), bytes, "{message:?}");
        }
    }

    #[test]
    fn the_mover_image_is_the_operators_setting_else_its_own() {
        let operator = |env: &[(&str, &str)]| Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "operator".into(),
                    image: Some("ghcr.io/x/sluice:1".into()),
                    env: Some(
                        env.iter()
                            .map(|(name, value)| EnvVar {
                                name: name.to_string(),
                                value: Some(value.to_string()),
                                ..Default::default()
                            })
                            .collect(),
                    ),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        for (env, image) in [
            (vec![], "ghcr.io/x/sluice:1"),
            (vec![("SLUICE_MOVER_IMAGE", "")], "ghcr.io/x/sluice:1"),
            (
                vec![("SLUICE_MOVER_IMAGE", "mirror/sluice:1")],
                "mirror/sluice:1",
            ),
        ] {
            assert_eq!(
                operator_mover_image(&operator(&env)).as_deref(),
                Some(image)
            );
        }
    }

    #[test]
    fn a_pod_not_started_says_why() {
        let waiting: Pod = serde_json::from_value(serde_json::json!({
            "status": {"containerStatuses": [{
                "name": "mover", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ErrImagePull", "message": "not found"}}
            }]}
        }))
        .unwrap();
        assert_eq!(
            started_or_stuck(&waiting),
            Start::Waiting("ErrImagePull: not found".into())
        );
        let unscheduled: Pod = serde_json::from_value(serde_json::json!({
            "status": {"conditions": [{
                "type": "PodScheduled", "status": "False", "message": "0/1 nodes are available"
            }]}
        }))
        .unwrap();
        assert_eq!(
            started_or_stuck(&unscheduled),
            Start::Waiting("0/1 nodes are available".into())
        );
        let running: Pod = serde_json::from_value(serde_json::json!({
            "status": {"containerStatuses": [{
                "name": "mover", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
                "state": {"running": {}}
            }]}
        }))
        .unwrap();
        assert_eq!(started_or_stuck(&running), Start::Started);
    }
}
