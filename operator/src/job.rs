//! The mover Job, built from the object's spec and the sync plan alone.
//!
//! Pure so it can be tested without a cluster and so the Job of a sync is the same every time
//! the controller rebuilds it. The Pod runs `sluice-mover job`, configured by the environment
//! contract in [`sluice_api::mover_env`] plus the repository Secret's keys under their restic
//! names.

use std::collections::BTreeMap;

use k8s_openapi::api::{
    batch::v1::{Job, JobSpec},
    core::v1::{
        Capabilities, Container, EmptyDirVolumeSource, EnvFromSource, EnvVar,
        EphemeralVolumeSource, PersistentVolumeClaimSpec, PersistentVolumeClaimTemplate,
        PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec,
        ResourceRequirements, SeccompProfile, SecretEnvSource, SecurityContext, Volume,
        VolumeDevice, VolumeMount, VolumeResourceRequirements,
    },
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use sluice_api::{
    CustomCa, MoverConfig, ReplicationDestination, ReplicationSource, SyncPlan, labels, mover_env,
};

use crate::{plan::actions_env, volume::PvcShape};

/// Where the volume is mounted in the mover.
pub const DATA_DIR: &str = "/data";

/// Where a restore test's scratch volume is mounted in the mover.
pub const SCRATCH_DIR: &str = "/scratch";

/// Where a Block volume's device appears in the mover.
pub const DEVICE_PATH: &str = "/dev/sluice-volume";

/// Where the custom CA bundle is mounted.
const CA_DIR: &str = "/etc/sluice/ca";

/// File name of the CA bundle inside [`CA_DIR`].
const CA_FILE: &str = "ca.crt";

/// A finished Job is removed by Kubernetes after a day even if the operator is gone; the
/// operator normally deletes it as soon as it has read the result.
pub const TTL_SECONDS_AFTER_FINISHED: i32 = 86_400;

/// A mover that runs longer than this is stuck (a hung mount, a dead endpoint) and is stopped.
pub const ACTIVE_DEADLINE_SECONDS: i64 = 12 * 3600;

/// Name of the mover container, so the controller finds its termination message.
pub const MOVER_CONTAINER: &str = "mover";

/// User the restricted default security context runs the mover as.
const DEFAULT_MOVER_UID: i64 = 65_532;

/// What the operator's configuration sets for every mover Job (the Helm chart's `mover`
/// values); an object's `moverResources` and `moverSecurityContext` take precedence.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MoverDefaults {
    /// The mover image (`--mover-image`, or the operator's own).
    pub image: String,
    /// Requests and limits of mover containers whose object sets none.
    pub resources: Option<ResourceRequirements>,
    /// Merged over the restricted defaults, below an object's `moverSecurityContext`.
    pub pod_security_context: Option<PodSecurityContext>,
    /// How long a mover waits for a lock another live process holds (a prune, a check,
    /// restic on another host) before it fails with `RepositoryLocked` (`--lock-wait`).
    pub lock_wait: std::time::Duration,
}

/// Everything a mover Job needs beyond the plan: where it runs and what it mounts.
#[derive(Clone, Debug)]
pub struct MoverJobParams {
    /// The operator-wide mover settings.
    pub defaults: MoverDefaults,
    /// Owner of the Job: the ReplicationSource or ReplicationDestination.
    pub owner: OwnerReference,
    /// Label naming the owner, e.g. `sluice.dev/replication-source=db`.
    pub owner_label: (&'static str, String),
    /// PVC mounted at [`DATA_DIR`], or attached at [`DEVICE_PATH`] when `block`.
    pub claim: String,
    /// With `copyMethod: Direct`, the node of the Pod that mounts the volume.
    pub node_name: Option<String>,
    /// The claim is a Block volume.
    pub block: bool,
    /// The scratch volume a restore test restores into, when the sync runs one.
    pub scratch: Option<PvcShape>,
}

/// The Job of a backup sync.
pub fn source_job(source: &ReplicationSource, plan: &SyncPlan, params: &MoverJobParams) -> Job {
    let restic = &source.spec.restic;
    let mut env = vec![
        env_var(mover_env::ACTIONS, actions_env(&plan.actions)),
        env_var(mover_env::HOSTNAME, source.restic_hostname()),
        lock_wait_env(&params.defaults),
    ];
    if !restic.tags.is_empty() {
        env.push(env_var(mover_env::TAGS, restic.tags.join(",")));
    }
    if !restic.exclude.is_empty() {
        env.push(env_var(mover_env::EXCLUDES, restic.exclude.join("\n")));
    }
    if let Some(retain) = &restic.retain {
        let counts = [
            (mover_env::RETAIN_LAST, retain.last),
            (mover_env::RETAIN_HOURLY, retain.hourly),
            (mover_env::RETAIN_DAILY, retain.daily),
            (mover_env::RETAIN_WEEKLY, retain.weekly),
            (mover_env::RETAIN_MONTHLY, retain.monthly),
            (mover_env::RETAIN_YEARLY, retain.yearly),
        ];
        for (name, count) in counts {
            if let Some(count) = count {
                env.push(env_var(name, count.to_string()));
            }
        }
        if let Some(within) = &retain.within {
            env.push(env_var(mover_env::RETAIN_WITHIN, within.clone()));
        }
    }
    let volume = DataVolume {
        claim: &params.claim,
        read_only: true,
        block: params.block,
        node_name: params.node_name.as_deref(),
        scratch: params.scratch.as_ref(),
    };
    let access = RepositoryAccess::of_source(source);
    mover_job(JobMeta::of_sync(plan, params), Some(volume), access, env)
}

/// The Job of a restore.
pub fn destination_job(
    destination: &ReplicationDestination,
    plan: &SyncPlan,
    params: &MoverJobParams,
) -> Job {
    let restic = &destination.spec.restic;
    let mut env = vec![
        env_var(mover_env::ACTIONS, actions_env(&plan.actions)),
        env_str(
            mover_env::ON_MISSING_SNAPSHOT,
            match restic.on_missing_snapshot {
                sluice_api::OnMissingSnapshot::Fail => "Fail",
                sluice_api::OnMissingSnapshot::Empty => "Empty",
            },
        ),
        lock_wait_env(&params.defaults),
    ];
    if let Some(hostname) = &restic.hostname {
        env.push(env_var(mover_env::HOSTNAME, hostname.clone()));
    }
    if let Some(as_of) = &restic.restore_as_of {
        env.push(env_var(mover_env::RESTORE_AS_OF, as_of.0.to_string()));
    }
    if let Some(previous) = restic.previous {
        env.push(env_var(mover_env::RESTORE_PREVIOUS, previous.to_string()));
    }
    if restic.enable_file_deletion {
        env.push(env_str(mover_env::RESTORE_DELETE, "true"));
    }
    let volume = DataVolume {
        claim: &params.claim,
        read_only: false,
        block: params.block,
        node_name: params.node_name.as_deref(),
        scratch: None,
    };
    let access = RepositoryAccess::of_destination(destination);
    mover_job(JobMeta::of_sync(plan, params), Some(volume), access, env)
}

/// What reaching a repository takes, as both kinds' `spec.restic` say it: the Secret, a custom
/// CA, and the mover's Pod settings.
#[derive(Clone, Copy, Debug)]
pub struct RepositoryAccess<'a> {
    /// The repository Secret's name.
    pub secret: &'a str,
    /// `spec.restic.customCA`.
    pub custom_ca: Option<&'a CustomCa>,
    /// `spec.restic`'s mover settings.
    pub mover: &'a MoverConfig,
}

impl<'a> RepositoryAccess<'a> {
    /// A ReplicationSource's.
    pub fn of_source(source: &'a ReplicationSource) -> Self {
        let restic = &source.spec.restic;
        Self {
            secret: &restic.repository,
            custom_ca: restic.custom_ca.as_ref(),
            mover: &restic.mover,
        }
    }

    /// A ReplicationDestination's.
    pub fn of_destination(destination: &'a ReplicationDestination) -> Self {
        let restic = &destination.spec.restic;
        Self {
            secret: &restic.repository,
            custom_ca: restic.custom_ca.as_ref(),
            mover: &restic.mover,
        }
    }
}

/// A probe ends within this: one quick request, and a Pod that cannot start is not worth
/// waiting for ([`crate::breaker::PROBE_DEADLINE`] is longer).
pub const PROBE_ACTIVE_DEADLINE_SECONDS: i64 = 90;

/// A probe Job left behind (its owner's reconcile did not delete it) is removed after this.
const PROBE_TTL_SECONDS_AFTER_FINISHED: i32 = 600;

/// The Job of the circuit breaker's probe ([`crate::breaker`]): `sluice-mover job` with the
/// one action `probe`, the object's Secret and CA and no volume.
pub fn probe_job(meta: JobMeta, access: RepositoryAccess) -> Job {
    let env = vec![env_str(mover_env::ACTIONS, "probe")];
    let mut job = mover_job(meta, None, access, env);
    if let Some(spec) = job.spec.as_mut() {
        spec.active_deadline_seconds = Some(PROBE_ACTIVE_DEADLINE_SECONDS);
        spec.ttl_seconds_after_finished = Some(PROBE_TTL_SECONDS_AFTER_FINISHED);
    }
    job
}

/// The volume at [`DATA_DIR`] (or its device at [`DEVICE_PATH`]): backups only read it,
/// restores write it. With `copyMethod: Direct`, the node of the Pod that uses it; with a
/// restore test, the scratch volume it restores into.
struct DataVolume<'a> {
    claim: &'a str,
    read_only: bool,
    block: bool,
    node_name: Option<&'a str>,
    scratch: Option<&'a PvcShape>,
}

/// A mover Job's name, creation time and owner: a sync's come from its plan, a probe's from
/// the object that runs it.
#[derive(Clone, Debug)]
pub struct JobMeta<'a> {
    /// The Job's name.
    pub name: &'a str,
    /// When it was created.
    pub started_at: &'a Time,
    /// The operator-wide mover settings.
    pub defaults: &'a MoverDefaults,
    /// Its owner: the ReplicationSource or ReplicationDestination.
    pub owner: &'a OwnerReference,
    /// The label naming the owner, so the owner's reconcile is woken when it changes.
    pub owner_label: (&'static str, String),
}

impl<'a> JobMeta<'a> {
    fn of_sync(plan: &'a SyncPlan, params: &'a MoverJobParams) -> Self {
        Self {
            name: &plan.job_name,
            started_at: &plan.started_at,
            defaults: &params.defaults,
            owner: &params.owner,
            owner_label: params.owner_label.clone(),
        }
    }
}

/// A restore test's scratch volume: a generic ephemeral volume, so its PVC (`<pod>-scratch`)
/// belongs to the Pod and Kubernetes deletes it with the Pod, after each run, whatever becomes
/// of the operator.
fn scratch_volume(shape: &PvcShape) -> Volume {
    let requests = shape
        .capacity
        .clone()
        .map(|size| BTreeMap::from([("storage".to_string(), size)]));
    Volume {
        name: "scratch".into(),
        ephemeral: Some(EphemeralVolumeSource {
            volume_claim_template: Some(PersistentVolumeClaimTemplate {
                metadata: Some(ObjectMeta {
                    labels: Some(BTreeMap::from([(
                        labels::MANAGED_BY.to_string(),
                        labels::MANAGED_BY_VALUE.to_string(),
                    )])),
                    ..Default::default()
                }),
                spec: PersistentVolumeClaimSpec {
                    access_modes: shape.access_modes.clone(),
                    storage_class_name: shape.storage_class.clone(),
                    volume_mode: shape.volume_mode.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            }),
        }),
        ..Default::default()
    }
}

fn mover_job(
    meta: JobMeta,
    volume: Option<DataVolume>,
    access: RepositoryAccess,
    mut env: Vec<EnvVar>,
) -> Job {
    let RepositoryAccess {
        secret: repository_secret,
        custom_ca,
        mover,
    } = access;
    if volume.is_some() {
        env.push(env_str(mover_env::DATA_DIR, DATA_DIR));
    }
    if volume.as_ref().is_some_and(|v| v.block) {
        env.push(env_str(mover_env::BLOCK_DEVICE, DEVICE_PATH));
    }
    let mut our_labels = BTreeMap::from([
        (
            labels::MANAGED_BY.to_string(),
            labels::MANAGED_BY_VALUE.to_string(),
        ),
        (
            labels::COMPONENT.to_string(),
            labels::COMPONENT_MOVER.to_string(),
        ),
        (meta.owner_label.0.to_string(), meta.owner_label.1.clone()),
    ]);
    // Users' labels first, so they can add but never remove the labels the operator selects by.
    let mut pod_labels = mover.mover_pod_labels.clone();
    pod_labels.append(&mut our_labels.clone());

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
    let mut devices = None;
    if let Some(volume) = &volume {
        volumes.insert(
            0,
            Volume {
                name: "data".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: volume.claim.to_string(),
                    read_only: Some(volume.read_only),
                }),
                ..Default::default()
            },
        );
        if volume.block {
            // A device has no read-only flag of its own: the claim's readOnly covers it.
            devices = Some(vec![VolumeDevice {
                name: "data".into(),
                device_path: DEVICE_PATH.into(),
            }]);
        } else {
            mounts.insert(
                0,
                VolumeMount {
                    name: "data".into(),
                    mount_path: DATA_DIR.into(),
                    read_only: Some(volume.read_only),
                    ..Default::default()
                },
            );
        }
    }
    if let Some(shape) = volume.as_ref().and_then(|v| v.scratch) {
        env.push(env_str(mover_env::VERIFY_DIR, SCRATCH_DIR));
        volumes.push(scratch_volume(shape));
        mounts.push(VolumeMount {
            name: "scratch".into(),
            mount_path: SCRATCH_DIR.into(),
            ..Default::default()
        });
    }
    let node_name = volume.as_ref().and_then(|v| v.node_name).map(String::from);
    if let Some(ca) = custom_ca {
        volumes.push(ca.volume("ca", CA_FILE));
        mounts.push(VolumeMount {
            name: "ca".into(),
            mount_path: CA_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
        env.push(env_var(mover_env::CACERT, format!("{CA_DIR}/{CA_FILE}")));
    }

    let container = Container {
        name: MOVER_CONTAINER.into(),
        image: Some(meta.defaults.image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(vec!["sluice-mover".into(), "job".into()]),
        env: Some(env),
        env_from: Some(vec![EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: repository_secret.to_string(),
                optional: Some(false),
            }),
            ..Default::default()
        }]),
        volume_mounts: Some(mounts),
        volume_devices: devices,
        resources: mover
            .mover_resources
            .clone()
            .or_else(|| meta.defaults.resources.clone()),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            seccomp_profile: Some(runtime_default()),
            ..Default::default()
        }),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    };

    let pod_security = pod_security_context(
        meta.defaults.pod_security_context.as_ref(),
        mover.mover_security_context.as_ref(),
    );

    Job {
        metadata: ObjectMeta {
            name: Some(meta.name.to_string()),
            namespace: None,
            labels: Some(std::mem::take(&mut our_labels)),
            annotations: Some(BTreeMap::from([(
                labels::SYNC_STARTED_AT.to_string(),
                meta.started_at.0.to_string(),
            )])),
            owner_references: Some(vec![meta.owner.clone()]),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            ttl_seconds_after_finished: Some(TTL_SECONDS_AFTER_FINISHED),
            active_deadline_seconds: Some(ACTIVE_DEADLINE_SECONDS),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    containers: vec![container],
                    volumes: Some(volumes),
                    security_context: Some(pod_security),
                    service_account_name: mover.mover_service_account.clone(),
                    automount_service_account_token: Some(false),
                    // Direct must share the node of the Pod that mounts the volume, which also
                    // makes any user affinity meaningless.
                    affinity: match node_name {
                        Some(_) => None,
                        None => mover.mover_affinity.clone(),
                    },
                    node_name,
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// The mover Pod's security context: the restricted defaults, with each field the operator's
/// configuration sets, then each field the user set in `moverSecurityContext`, taking their
/// values. Setting `runAsUser` alone keeps `runAsNonRoot` and the seccomp profile, so the Pod
/// still passes the restricted Pod Security Standard; running as root takes an explicit
/// `runAsNonRoot: false`.
pub fn pod_security_context(
    operator: Option<&PodSecurityContext>,
    user: Option<&PodSecurityContext>,
) -> PodSecurityContext {
    let defaults = PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(DEFAULT_MOVER_UID),
        run_as_group: Some(DEFAULT_MOVER_UID),
        fs_group: Some(DEFAULT_MOVER_UID),
        seccomp_profile: Some(runtime_default()),
        ..Default::default()
    };
    [operator, user]
        .into_iter()
        .flatten()
        .fold(defaults, |base, set| {
            over(&base, set).unwrap_or_else(|| set.clone())
        })
}

/// `base` with every field `set` has replaced by `set`'s, whatever fields the type has: unset
/// fields are absent from the serialized form. `None` only if serde fails, which it does not for
/// two values of one Kubernetes type.
fn over<T: serde::Serialize + serde::de::DeserializeOwned>(base: &T, set: &T) -> Option<T> {
    let mut merged = serde_json::to_value(base).ok()?;
    let serde_json::Value::Object(set) = serde_json::to_value(set).ok()? else {
        return None;
    };
    merged.as_object_mut()?.extend(set);
    serde_json::from_value(merged).ok()
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        ..Default::default()
    }
}

/// `SLUICE_RETRY_LOCK` in whole seconds, which the mover's duration parser reads.
fn lock_wait_env(defaults: &MoverDefaults) -> EnvVar {
    env_var(
        mover_env::RETRY_LOCK,
        format!("{}s", defaults.lock_wait.as_secs()),
    )
}

fn env_str(name: &str, value: &str) -> EnvVar {
    env_var(name, value.to_string())
}

fn env_var(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use sluice_api::ReplicationSource;

    use crate::plan;

    const SOURCE: &str = r#"
apiVersion: sluice.dev/v1alpha1
kind: ReplicationSource
metadata: {name: db, namespace: apps, uid: 1234}
spec:
  sourcePVC: data
  restic:
    repository: repo-secret
    copyMethod: Snapshot
    retain: {hourly: 24, daily: 7, within: 3d}
    tags: [a, b]
    exclude: ["*.tmp", cache]
"#;

    fn params() -> MoverJobParams {
        MoverJobParams {
            defaults: MoverDefaults {
                image: "sluice-mover:test".into(),
                lock_wait: std::time::Duration::from_secs(90),
                ..Default::default()
            },
            owner: OwnerReference {
                api_version: "sluice.dev/v1alpha1".into(),
                kind: "ReplicationSource".into(),
                name: "db".into(),
                uid: "1234".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            },
            owner_label: (labels::REPLICATION_SOURCE, "db".into()),
            claim: "sluice-src-db".into(),
            node_name: None,
            block: false,
            scratch: None,
        }
    }

    fn build(source: &ReplicationSource) -> (Job, PodSpec) {
        let now: Timestamp = "2026-11-22T10:00:00Z".parse().unwrap();
        let plan = plan::source_plan(source, now);
        let job = source_job(source, &plan, &params());
        let pod = job.spec.clone().unwrap().template.spec.unwrap();
        (job, pod)
    }

    fn env_of(pod: &PodSpec) -> BTreeMap<String, String> {
        pod.containers[0]
            .env
            .clone()
            .unwrap()
            .into_iter()
            .map(|var| (var.name, var.value.unwrap()))
            .collect()
    }

    #[test]
    fn backup_job_runs_the_mover_with_the_plan_in_its_environment() {
        let source: ReplicationSource = serde_saphyr::from_str(SOURCE).unwrap();
        let (job, pod) = build(&source);
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        assert_eq!(
            spec.ttl_seconds_after_finished,
            Some(TTL_SECONDS_AFTER_FINISHED)
        );
        assert_eq!(spec.active_deadline_seconds, Some(ACTIVE_DEADLINE_SECONDS));
        assert_eq!(
            job.metadata.owner_references.as_ref().unwrap()[0].name,
            "db"
        );
        let container = &pod.containers[0];
        assert_eq!(
            container.command.as_deref().unwrap(),
            ["sluice-mover", "job"]
        );
        assert_eq!(
            container.termination_message_policy.as_deref(),
            Some("FallbackToLogsOnError")
        );
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        let env = env_of(&pod);
        assert_eq!(env[mover_env::ACTIONS], "unlock,backup,forget,prune");
        assert_eq!(env[mover_env::HOSTNAME], "apps-data");
        assert_eq!(env[mover_env::DATA_DIR], "/data");
        assert_eq!(env[mover_env::RETAIN_HOURLY], "24");
        assert_eq!(env[mover_env::RETAIN_DAILY], "7");
        assert_eq!(env[mover_env::RETAIN_WITHIN], "3d");
        assert!(!env.contains_key(mover_env::RETAIN_LAST));
        assert_eq!(env[mover_env::TAGS], "a,b");
        assert_eq!(env[mover_env::EXCLUDES], "*.tmp\ncache");
        assert_eq!(
            env[mover_env::RETRY_LOCK],
            "90s",
            "the operator's --lock-wait"
        );
        let env_from = container.env_from.as_ref().unwrap();
        assert_eq!(env_from[0].secret_ref.as_ref().unwrap().name, "repo-secret");
    }

    #[test]
    fn backup_mounts_data_read_only_and_a_writable_tmp() {
        let source: ReplicationSource = serde_saphyr::from_str(SOURCE).unwrap();
        let (_, pod) = build(&source);
        let mounts = pod.containers[0].volume_mounts.clone().unwrap();
        let data = mounts.iter().find(|m| m.mount_path == "/data").unwrap();
        assert_eq!(data.read_only, Some(true));
        assert!(
            mounts
                .iter()
                .any(|m| m.mount_path == "/tmp" && m.read_only.is_none())
        );
        let claim = pod.volumes.as_ref().unwrap()[0]
            .persistent_volume_claim
            .clone()
            .unwrap();
        assert_eq!(claim.claim_name, "sluice-src-db");
        assert_eq!(claim.read_only, Some(true));
    }

    #[test]
    fn a_block_volume_is_attached_as_a_device_and_named_in_the_environment() {
        let source: ReplicationSource = serde_saphyr::from_str(SOURCE).unwrap();
        let now: Timestamp = "2026-11-22T10:00:00Z".parse().unwrap();
        let plan = plan::source_plan(&source, now);
        let params = MoverJobParams {
            block: true,
            ..params()
        };
        let job = source_job(&source, &plan, &params);
        let pod = job.spec.unwrap().template.spec.unwrap();
        let container = &pod.containers[0];
        let devices = container.volume_devices.clone().unwrap();
        assert_eq!(devices.len(), 1);
        assert_eq!(
            (devices[0].name.as_str(), devices[0].device_path.as_str()),
            ("data", DEVICE_PATH)
        );
        let mounts = container.volume_mounts.clone().unwrap();
        assert!(
            mounts.iter().all(|m| m.mount_path != DATA_DIR),
            "a Block volume cannot be mounted: {mounts:?}"
        );
        assert_eq!(env_of(&pod)[mover_env::BLOCK_DEVICE], DEVICE_PATH);
        let volumes = pod.volumes.unwrap();
        let claim = volumes[0].persistent_volume_claim.as_ref().unwrap();
        assert_eq!(claim.read_only, Some(true));

        let (_, filesystem) = build(&source);
        assert!(filesystem.containers[0].volume_devices.is_none());
        assert!(!env_of(&filesystem).contains_key(mover_env::BLOCK_DEVICE));
    }

    #[test]
    fn a_restore_test_restores_into_an_ephemeral_volume_the_pod_owns() {
        let mut source: ReplicationSource = serde_saphyr::from_str(SOURCE).unwrap();
        source.spec.restic.verify = Some(serde_saphyr::from_str("schedule: '@daily'").unwrap());
        let now: Timestamp = "2026-11-22T10:00:00Z".parse().unwrap();
        let plan = plan::source_plan(&source, now);
        let params = MoverJobParams {
            scratch: Some(PvcShape {
                capacity: Some(Quantity("5Gi".into())),
                storage_class: Some("fast".into()),
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                volume_mode: Some("Filesystem".into()),
            }),
            ..params()
        };
        let pod = source_job(&source, &plan, &params)
            .spec
            .unwrap()
            .template
            .spec
            .unwrap();
        let env = env_of(&pod);
        assert_eq!(env[mover_env::ACTIONS], "unlock,backup,forget,prune,verify");
        assert_eq!(env[mover_env::VERIFY_DIR], SCRATCH_DIR);
        let volumes = pod.volumes.clone().unwrap();
        let scratch = volumes.iter().find(|v| v.name == "scratch").unwrap();
        let template = scratch
            .ephemeral
            .as_ref()
            .and_then(|e| e.volume_claim_template.clone())
            .expect("a generic ephemeral volume, deleted with the Pod");
        assert_eq!(template.spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            template.spec.resources.unwrap().requests.unwrap()["storage"],
            Quantity("5Gi".into())
        );
        assert_eq!(template.spec.volume_mode.as_deref(), Some("Filesystem"));
        let mounts = pod.containers[0].volume_mounts.clone().unwrap();
        let mount = mounts.iter().find(|m| m.name == "scratch").unwrap();
        assert_eq!(
            (mount.mount_path.as_str(), mount.read_only),
            (SCRATCH_DIR, None)
        );

        let (_, without) = build(&serde_saphyr::from_str(SOURCE).unwrap());
        assert!(
            without
                .volumes
                .as_ref()
                .unwrap()
                .iter()
                .all(|v| v.ephemeral.is_none())
        );
        assert!(!env_of(&without).contains_key(mover_env::VERIFY_DIR));
    }

    #[test]
    fn restricted_security_by_default() {
        let source: ReplicationSource = serde_saphyr::from_str(SOURCE).unwrap();
        let (_, pod) = build(&source);
        let pod_security = pod.security_context.clone().unwrap();
        assert_eq!(pod_security.run_as_non_root, Some(true));
        assert_eq!(
            pod_security.seccomp_profile.unwrap().type_,
            "RuntimeDefault"
        );
        let container = pod.containers[0].security_context.clone().unwrap();
        assert_eq!(container.allow_privilege_escalation, Some(false));
        assert_eq!(container.read_only_root_filesystem, Some(true));
        assert_eq!(container.capabilities.unwrap().drop.unwrap(), ["ALL"]);
    }

    #[test]
    fn mover_overrides_are_honoured_but_cannot_drop_sluice_labels() {
        let mut source: ReplicationSource = serde_saphyr::from_str(SOURCE).unwrap();
        let mover = &mut source.spec.restic.mover;
        mover.mover_security_context = Some(PodSecurityContext {
            run_as_user: Some(1000),
            ..Default::default()
        });
        mover.mover_service_account = Some("backup".into());
        mover.mover_pod_labels = BTreeMap::from([
            ("team".to_string(), "db".to_string()),
            (labels::MANAGED_BY.to_string(), "someone-else".to_string()),
        ]);
        mover.mover_resources = Some(Default::default());
        mover.mover_affinity = Some(Default::default());
        let (_, pod_spec) = build(&source);
        assert_eq!(pod_spec.security_context.unwrap().run_as_user, Some(1000));
        assert_eq!(pod_spec.service_account_name.as_deref(), Some("backup"));
        assert!(pod_spec.containers[0].resources.is_some());
        assert!(pod_spec.affinity.is_some());
        let (job, _) = build(&source);
        let labels = job.spec.unwrap().template.metadata.unwrap().labels.unwrap();
        assert_eq!(labels["team"], "db");
        assert_eq!(labels[labels::MANAGED_BY], labels::MANAGED_BY_VALUE);
        assert_eq!(labels[labels::REPLICATION_SOURCE], "db");
    }

    /// An identity webhook (EKS Pod Identity, Azure Workload Identity) adds its
    /// variables to the Pod; a variable the Job names itself, even empty, would
    /// shadow them (VolSync #2032). So the Job names only its own `SLUICE_*`
    /// variables, and the repository Secret comes in through `envFrom`, which
    /// sets only the keys the Secret has.
    #[test]
    fn the_job_sets_no_variable_an_identity_webhook_injects() {
        let mut source: ReplicationSource = serde_saphyr::from_str(SOURCE).unwrap();
        source.spec.restic.mover.mover_service_account = Some("backup".into());
        source.spec.restic.custom_ca =
            serde_saphyr::from_str("{secretName: ca, key: ca.crt}").unwrap();
        let (_, pod) = build(&source);
        let container = &pod.containers[0];
        for var in container.env.as_deref().unwrap() {
            assert!(
                var.name.starts_with("SLUICE_"),
                "{} is set by the Job",
                var.name
            );
        }
        let env_from = container.env_from.as_deref().unwrap();
        assert_eq!(env_from.len(), 1);
        assert_eq!(env_from[0].prefix, None);
        assert_eq!(env_from[0].secret_ref.as_ref().unwrap().name, "repo-secret");
        assert_eq!(pod.service_account_name.as_deref(), Some("backup"));
    }

    #[test]
    fn mover_security_context_is_merged_over_the_restricted_defaults() {
        let restricted = pod_security_context(None, None);
        let seccomp = |type_: &str| SeccompProfile {
            type_: type_.into(),
            ..Default::default()
        };
        let cases = [
            (
                "runAsUser alone keeps runAsNonRoot, the group, fsGroup and seccomp",
                PodSecurityContext {
                    run_as_user: Some(1000),
                    ..Default::default()
                },
                PodSecurityContext {
                    run_as_user: Some(1000),
                    ..restricted.clone()
                },
            ),
            (
                "fsGroup alone keeps the default user",
                PodSecurityContext {
                    fs_group: Some(2000),
                    ..Default::default()
                },
                PodSecurityContext {
                    fs_group: Some(2000),
                    ..restricted.clone()
                },
            ),
            (
                "root needs an explicit runAsNonRoot: false",
                PodSecurityContext {
                    run_as_user: Some(0),
                    run_as_non_root: Some(false),
                    ..Default::default()
                },
                PodSecurityContext {
                    run_as_user: Some(0),
                    run_as_non_root: Some(false),
                    ..restricted.clone()
                },
            ),
            (
                "a seccomp profile replaces the default one whole",
                PodSecurityContext {
                    seccomp_profile: Some(seccomp("Unconfined")),
                    ..Default::default()
                },
                PodSecurityContext {
                    seccomp_profile: Some(seccomp("Unconfined")),
                    ..restricted.clone()
                },
            ),
            (
                "fields without a default are added",
                PodSecurityContext {
                    supplemental_groups: Some(vec![44]),
                    ..Default::default()
                },
                PodSecurityContext {
                    supplemental_groups: Some(vec![44]),
                    ..restricted.clone()
                },
            ),
            (
                "an empty override is the defaults",
                PodSecurityContext::default(),
                restricted.clone(),
            ),
        ];
        for (case, user, expected) in cases {
            assert_eq!(pod_security_context(None, Some(&user)), expected, "{case}");
            assert_eq!(pod_security_context(Some(&user), None), expected, "{case}");
        }
        let operator = PodSecurityContext {
            run_as_user: Some(1000),
            fs_group: Some(1000),
            ..Default::default()
        };
        let user = PodSecurityContext {
            run_as_user: Some(2000),
            ..Default::default()
        };
        assert_eq!(
            pod_security_context(Some(&operator), Some(&user)),
            PodSecurityContext {
                run_as_user: Some(2000),
                fs_group: Some(1000),
                ..restricted.clone()
            },
            "the object's fields win over the operator's, which win over the restricted defaults"
        );
        assert_eq!(restricted.run_as_non_root, Some(true));
        assert_eq!(restricted.seccomp_profile, Some(seccomp("RuntimeDefault")));
    }

    #[test]
    fn operator_resources_apply_unless_the_object_sets_its_own() {
        let mut source: ReplicationSource = serde_saphyr::from_str(SOURCE).unwrap();
        let now: Timestamp = "2026-11-22T10:00:00Z".parse().unwrap();
        let plan = plan::source_plan(&source, now);
        let resources = |cpu: &str| ResourceRequirements {
            requests: Some(BTreeMap::from([(
                "cpu".to_string(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity(cpu.into()),
            )])),
            ..Default::default()
        };
        let mut params = params();
        params.defaults.resources = Some(resources("100m"));
        let resources_of = |source: &ReplicationSource| {
            source_job(source, &plan, &params)
                .spec
                .unwrap()
                .template
                .spec
                .unwrap()
                .containers[0]
                .resources
                .clone()
        };
        assert_eq!(resources_of(&source), Some(resources("100m")));
        source.spec.restic.mover.mover_resources = Some(resources("2"));
        assert_eq!(resources_of(&source), Some(resources("2")));
    }

    #[test]
    fn custom_ca_is_mounted_and_named_in_restic_cacert() {
        let mut source: ReplicationSource = serde_saphyr::from_str(SOURCE).unwrap();
        source.spec.restic.custom_ca = Some(CustomCa {
            config_map_name: Some("ca-bundle".into()),
            key: "bundle.pem".into(),
            ..Default::default()
        });
        let (_, pod) = build(&source);
        assert_eq!(env_of(&pod)[mover_env::CACERT], "/etc/sluice/ca/ca.crt");
        let ca = pod
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "ca")
            .unwrap();
        let config_map = ca.config_map.unwrap();
        assert_eq!(config_map.name, "ca-bundle");
        assert_eq!(config_map.items.unwrap()[0].key, "bundle.pem");
        assert!(ca.secret.is_none());
    }

    #[test]
    fn direct_pins_the_node_and_ignores_affinity() {
        let mut source: ReplicationSource = serde_saphyr::from_str(SOURCE).unwrap();
        source.spec.restic.mover.mover_affinity = Some(Default::default());
        let now: Timestamp = "2026-11-22T10:00:00Z".parse().unwrap();
        let plan = plan::source_plan(&source, now);
        let mut params = params();
        params.node_name = Some("node-1".into());
        let pod = source_job(&source, &plan, &params)
            .spec
            .unwrap()
            .template
            .spec
            .unwrap();
        assert_eq!(pod.node_name.as_deref(), Some("node-1"));
        assert!(pod.affinity.is_none());
    }

    #[test]
    fn restore_job_writes_and_carries_restore_options() {
        let destination: ReplicationDestination = serde_saphyr::from_str(
            r#"
apiVersion: sluice.dev/v1alpha1
kind: ReplicationDestination
metadata: {name: restore, namespace: apps}
spec:
  restic:
    repository: repo-secret
    copyMethod: Direct
    destinationPVC: target
    restoreAsOf: "2026-11-01T00:00:00Z"
    previous: 1
    enableFileDeletion: true
    onMissingSnapshot: Empty
    hostname: apps-data
"#,
        )
        .unwrap();
        let now: Timestamp = "2026-11-22T10:00:00Z".parse().unwrap();
        let plan = plan::destination_plan(&destination, now);
        let pod = destination_job(&destination, &plan, &params())
            .spec
            .unwrap()
            .template
            .spec
            .unwrap();
        let env = env_of(&pod);
        assert_eq!(env[mover_env::ACTIONS], "restore");
        assert_eq!(env[mover_env::RESTORE_AS_OF], "2026-11-01T00:00:00Z");
        assert_eq!(env[mover_env::RESTORE_PREVIOUS], "1");
        assert_eq!(env[mover_env::RESTORE_DELETE], "true");
        assert_eq!(env[mover_env::ON_MISSING_SNAPSHOT], "Empty");
        assert_eq!(env[mover_env::RETRY_LOCK], "90s");
        assert_eq!(env[mover_env::HOSTNAME], "apps-data");
        let mounts = pod.containers[0].volume_mounts.clone().unwrap();
        assert_eq!(mounts[0].read_only, Some(false));
    }

    #[test]
    fn a_probe_job_reads_the_secret_and_mounts_no_volume() {
        let source: ReplicationSource = serde_saphyr::from_str(SOURCE).unwrap();
        let params = params();
        let started = Time("2026-11-22T10:00:00Z".parse().unwrap());
        let probe = JobMeta {
            name: "sluice-probe-db-1",
            started_at: &started,
            defaults: &params.defaults,
            owner: &params.owner,
            owner_label: params.owner_label.clone(),
        };
        let job = probe_job(probe, RepositoryAccess::of_source(&source));
        assert_eq!(job.metadata.name.as_deref(), Some("sluice-probe-db-1"));
        let labels = job.metadata.labels.clone().unwrap();
        assert_eq!(labels[labels::REPLICATION_SOURCE], "db");
        assert_eq!(labels[labels::COMPONENT], labels::COMPONENT_MOVER);
        let spec = job.spec.unwrap();
        assert_eq!(
            spec.active_deadline_seconds,
            Some(PROBE_ACTIVE_DEADLINE_SECONDS)
        );
        let pod = spec.template.spec.unwrap();
        let env = env_of(&pod);
        assert_eq!(env[mover_env::ACTIONS], "probe");
        assert!(!env.contains_key(mover_env::DATA_DIR), "{env:?}");
        let volumes: Vec<_> = pod.volumes.unwrap().into_iter().map(|v| v.name).collect();
        assert_eq!(volumes, ["tmp"]);
        let container = &pod.containers[0];
        assert_eq!(container.volume_devices, None);
        let env_from = container.env_from.as_ref().unwrap();
        assert_eq!(env_from[0].secret_ref.as_ref().unwrap().name, "repo-secret");
    }
}
