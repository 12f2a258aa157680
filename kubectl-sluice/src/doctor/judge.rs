//! The verdicts of `doctor`: pure functions from the facts it gathered to a finding that says
//! what is wrong and what to do. Tested by table in `tests.rs`.

use std::collections::BTreeMap;

use jiff::SignedDuration;
use serde::Serialize;
use sluice_api::conditions::reason;

use crate::status::{Health, State};

/// How one check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Nothing to do.
    Ok,
    /// Works, or may work, but deserves a look.
    Warn,
    /// Syncs fail, or will, until this is fixed.
    Fail,
}

/// The result of one check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Short name of the check: `secret`, `repository`, `snapshot-class`, …
    pub check: &'static str,
    /// How it came out.
    pub verdict: Verdict,
    /// What was found, in one line.
    pub detail: String,
    /// What to do, when something is to be done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    fn ok(check: &'static str, detail: impl Into<String>) -> Finding {
        Finding {
            check,
            verdict: Verdict::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn warn(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            check,
            verdict: Verdict::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    fn fail(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            check,
            verdict: Verdict::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// The repository Secret's keys (`None`: no such Secret), judged for the repository they name.
/// Values are never shown, only key names and the repository URL.
pub fn secret(
    name: &str,
    keys: Option<&BTreeMap<String, String>>,
    mover_service_account: Option<&str>,
) -> Finding {
    const CHECK: &str = "secret";
    let Some(keys) = keys else {
        return Finding::fail(
            CHECK,
            format!("Secret {name} not found"),
            format!(
                "kubectl create secret generic {} --from-literal=RESTIC_REPOSITORY=s3:https://HOST/BUCKET/PATH --from-literal=RESTIC_PASSWORD=... (plus the store's credentials)",
                name.rsplit('/').next().unwrap_or(name)
            ),
        );
    };
    let set = |key: &str| keys.get(key).is_some_and(|v| !v.trim().is_empty());
    let missing: Vec<&str> = ["RESTIC_REPOSITORY", "RESTIC_PASSWORD"]
        .into_iter()
        .filter(|k| !set(k))
        .collect();
    if !missing.is_empty() {
        return Finding::fail(
            CHECK,
            format!(
                "Secret {name} lacks {} (or it is empty)",
                missing.join(" and ")
            ),
            format!("add {} to Secret {name}", missing.join(" and ")),
        );
    }
    let location = keys["RESTIC_REPOSITORY"].trim();
    let present: Vec<&str> = keys.keys().map(String::as_str).collect();
    let listed = format!("Secret {name} has {} for {location}", present.join(", "));
    if !location.starts_with("s3:") {
        return Finding::ok(CHECK, listed);
    }
    match (set("AWS_ACCESS_KEY_ID"), set("AWS_SECRET_ACCESS_KEY")) {
        (true, true) => Finding::ok(CHECK, listed),
        (true, false) | (false, true) => Finding::fail(
            CHECK,
            format!("Secret {name} has only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
            "set both, or neither to use the mover ServiceAccount's web identity",
        ),
        (false, false) => match mover_service_account {
            Some(account) => Finding::warn(
                CHECK,
                format!(
                    "{listed}; no static S3 keys: the mover relies on ServiceAccount {account}'s web identity (AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE injected into the Pod)"
                ),
                format!(
                    "make sure ServiceAccount {account} carries the role (eks.amazonaws.com/role-arn) and the role trusts it"
                ),
            ),
            None => Finding::fail(
                CHECK,
                format!(
                    "{listed}; no S3 credentials: neither AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY nor a moverServiceAccount"
                ),
                format!(
                    "add AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to Secret {name}, or set spec.restic.moverServiceAccount to a ServiceAccount with a web identity"
                ),
            ),
        },
    }
}

/// What opening the repository from this machine gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// The key opened; this many snapshots of the object's host.
    Opened { snapshots: usize, host: String },
    /// No key opens with the password.
    WrongPassword,
    /// No repository at the location yet.
    NotFound,
    /// The store refused the credentials.
    Denied(String),
    /// The store could not be reached from here.
    Unreachable(String),
    /// Anything else (corrupt config, …).
    Other(String),
    /// Not tried: the Secret is not usable.
    Skipped,
}

/// The repository at `location`, as reached from this machine; for a source (`is_source`) a
/// missing repository is fine, since its first backup creates it.
pub fn repository(location: &str, probe: &Probe, is_source: bool) -> Finding {
    const CHECK: &str = "repository";
    match probe {
        Probe::Opened { snapshots, host } => Finding::ok(
            CHECK,
            format!("{location} opened with the password; {snapshots} snapshot(s) of host {host}"),
        ),
        Probe::WrongPassword => Finding::fail(
            CHECK,
            format!("no key of {location} opens with RESTIC_PASSWORD"),
            "put the repository's password in RESTIC_PASSWORD (restic key list shows its keys); a new password needs `restic key add` first",
        ),
        Probe::NotFound if is_source => Finding::ok(
            CHECK,
            format!("no repository at {location} yet; the first backup creates it"),
        ),
        Probe::NotFound => Finding::fail(
            CHECK,
            format!("no repository at {location}"),
            "check RESTIC_REPOSITORY: a restore needs the repository its source backs up into",
        ),
        Probe::Denied(cause) => Finding::fail(
            CHECK,
            format!("{location} refused the credentials: {cause}"),
            "check the Secret's keys and the bucket policy: the mover needs list, read, write and delete in the repository's prefix",
        ),
        Probe::Unreachable(cause) if cluster_internal(location) => Finding::warn(
            CHECK,
            format!("{location} is not reachable from this machine: {cause}"),
            "its host is a cluster-internal name; the mover reaches it from inside the cluster, so check the last sync's result below",
        ),
        Probe::Unreachable(cause) => Finding::fail(
            CHECK,
            format!("{location} is not reachable from this machine: {cause}"),
            "check the endpoint in RESTIC_REPOSITORY, DNS and network policies; a mover Pod needs the same route",
        ),
        Probe::Other(cause) => Finding::fail(
            CHECK,
            format!("{location}: {cause}"),
            "run `restic check` against the repository",
        ),
        Probe::Skipped => Finding::warn(
            CHECK,
            "not tried: the Secret is not usable",
            "fix the Secret first",
        ),
    }
}

/// Whether the repository's host only resolves inside a cluster (`minio.storage.svc`, a bare
/// Service name).
fn cluster_internal(location: &str) -> bool {
    let rest = location.strip_prefix("s3:").unwrap_or(location);
    let rest = rest
        .strip_prefix("https://")
        .or_else(|| rest.strip_prefix("http://"))
        .unwrap_or(rest);
    let host = rest.split(['/', ':']).next().unwrap_or_default();
    host.ends_with(".svc") || host.contains(".svc.") || (!host.contains('.') && host != "localhost")
}

/// A VolumeSnapshotClass, as far as `doctor` cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotClass {
    /// Its name.
    pub name: String,
    /// Its CSI driver.
    pub driver: String,
    /// Annotated `snapshot.storage.kubernetes.io/is-default-class: "true"`.
    pub default: bool,
}

/// The source PVC, as far as the snapshot check cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceClaim {
    /// `namespace/name`.
    pub name: String,
    /// The CSI driver provisioning it (from its StorageClass); `None` when unknown.
    pub driver: Option<String>,
}

/// Whether a `copyMethod: Snapshot` source can be snapshotted: the PVC exists, and a
/// VolumeSnapshotClass for its driver is named or default. `classes` is `None` when the
/// snapshot API is not installed.
pub fn snapshot_class(
    copy_method: &str,
    claim: Option<&SourceClaim>,
    requested: Option<&str>,
    classes: Option<&[SnapshotClass]>,
) -> Finding {
    const CHECK: &str = "snapshot-class";
    if copy_method != "Snapshot" {
        return Finding::ok(
            CHECK,
            format!("copyMethod {copy_method} takes no VolumeSnapshot"),
        );
    }
    let Some(claim) = claim else {
        return Finding::fail(
            CHECK,
            "the source PVC does not exist",
            "create the PVC spec.sourcePVC names, or fix the name",
        );
    };
    let Some(classes) = classes else {
        return Finding::fail(
            CHECK,
            "the VolumeSnapshot API (snapshot.storage.k8s.io/v1) is not installed",
            "install the external-snapshotter CRDs and snapshot controller, or use copyMethod Clone or Direct",
        );
    };
    let Some(driver) = &claim.driver else {
        return Finding::warn(
            CHECK,
            format!(
                "the CSI driver of PVC {} is unknown (no StorageClass)",
                claim.name
            ),
            "give the PVC a StorageClass with a CSI provisioner, or use copyMethod Direct",
        );
    };
    if let Some(name) = requested {
        return match classes.iter().find(|c| c.name == name) {
            None => Finding::fail(
                CHECK,
                format!(
                    "VolumeSnapshotClass {name} (spec.restic.volumeSnapshotClassName) does not exist"
                ),
                "create it, or remove volumeSnapshotClassName to use the driver's default class",
            ),
            Some(class) if &class.driver != driver => Finding::fail(
                CHECK,
                format!(
                    "VolumeSnapshotClass {name} is for driver {}, PVC {} is on {driver}",
                    class.driver, claim.name
                ),
                format!("name a VolumeSnapshotClass of driver {driver}"),
            ),
            Some(_) => Finding::ok(
                CHECK,
                format!("VolumeSnapshotClass {name} serves driver {driver}"),
            ),
        };
    }
    let of_driver: Vec<&SnapshotClass> = classes.iter().filter(|c| &c.driver == driver).collect();
    match (of_driver.iter().find(|c| c.default), of_driver.as_slice()) {
        (Some(class), _) => Finding::ok(
            CHECK,
            format!(
                "default VolumeSnapshotClass {} serves driver {driver}",
                class.name
            ),
        ),
        (None, []) => Finding::fail(
            CHECK,
            format!(
                "no VolumeSnapshotClass for driver {driver} of PVC {}",
                claim.name
            ),
            format!(
                "create a VolumeSnapshotClass with driver: {driver}, or use copyMethod Clone or Direct"
            ),
        ),
        (None, [only]) => Finding::warn(
            CHECK,
            format!(
                "VolumeSnapshotClass {} serves driver {driver} but is not the default",
                only.name
            ),
            format!(
                "set spec.restic.volumeSnapshotClassName: {}, or annotate it snapshot.storage.kubernetes.io/is-default-class=true",
                only.name
            ),
        ),
        (None, several) => Finding::fail(
            CHECK,
            format!(
                "{} VolumeSnapshotClasses serve driver {driver} and none is the default",
                several.len()
            ),
            "set spec.restic.volumeSnapshotClassName to one of them",
        ),
    }
}

/// Whether the namespace's Pod Security level admits the mover; `enforce` is the
/// `pod-security.kubernetes.io/enforce` label, `runs_as_root` whether the object's
/// `moverSecurityContext` asks for root.
pub fn pod_security(namespace: &str, enforce: Option<&str>, runs_as_root: bool) -> Finding {
    const CHECK: &str = "pod-security";
    let level = enforce.unwrap_or("privileged (no enforce label)");
    match (enforce, runs_as_root) {
        (Some("restricted"), true) => Finding::fail(
            CHECK,
            format!(
                "namespace {namespace} enforces restricted, which refuses the mover running as root (moverSecurityContext)"
            ),
            "give the mover the data's owner as runAsUser/fsGroup instead of root, or label the namespace pod-security.kubernetes.io/enforce=baseline",
        ),
        (Some(other), _) if !["privileged", "baseline", "restricted"].contains(&other) => {
            Finding::warn(
                CHECK,
                format!("namespace {namespace} has an unknown enforce level {other:?}"),
                "use privileged, baseline or restricted",
            )
        }
        _ => Finding::ok(
            CHECK,
            format!(
                "namespace {namespace} enforces {level}; the mover Pod {}",
                if runs_as_root {
                    "runs as root, which it admits"
                } else {
                    "meets restricted"
                }
            ),
        ),
    }
}

/// What the user running `doctor` may not do that the plugin's verbs need (`verb resource`),
/// and whether the mover's ServiceAccount exists.
pub fn access(
    missing: &[String],
    mover_service_account: Option<&str>,
    account_exists: bool,
) -> Finding {
    const CHECK: &str = "rbac";
    if let Some(account) = mover_service_account.filter(|_| !account_exists) {
        return Finding::fail(
            CHECK,
            format!(
                "ServiceAccount {account} (moverServiceAccount) does not exist, so the mover Job cannot create its Pod"
            ),
            format!("kubectl create serviceaccount {account}"),
        );
    }
    if missing.is_empty() {
        return Finding::ok(
            CHECK,
            "you may read the Secret, trigger syncs and create restores here",
        );
    }
    Finding::warn(
        CHECK,
        format!("you may not: {}", missing.join(", ")),
        "ask for a Role with these verbs; the operator itself is not affected",
    )
}

/// A mover Pod's image pull, as far as `doctor` cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoverPod {
    /// The Pod's name.
    pub name: String,
    /// The mover container's image.
    pub image: String,
    /// The container's waiting reason (`ImagePullBackOff`, …), if waiting.
    pub waiting: Option<(String, String)>,
    /// Whether the container started at some point (running or terminated).
    pub started: bool,
}

/// Whether the mover image pulls, from the object's mover Pods (newest first).
pub fn mover_image(pods: &[MoverPod]) -> Finding {
    const CHECK: &str = "mover-image";
    const PULL_FAILURES: [&str; 4] = [
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
    ];
    if let Some(pod) = pods.iter().find(|p| {
        p.waiting
            .as_ref()
            .is_some_and(|(reason, _)| PULL_FAILURES.contains(&reason.as_str()))
    }) {
        let (reason, message) = pod.waiting.clone().unwrap_or_default();
        return Finding::fail(
            CHECK,
            format!(
                "mover Pod {} cannot pull {}: {reason}: {message}",
                pod.name, pod.image
            ),
            "push the image to a registry the nodes can reach (README: Install on your cluster), set the operator's image or --mover-image to it, and add imagePullSecrets if the registry needs them",
        );
    }
    match pods.iter().find(|p| p.started) {
        Some(pod) => Finding::ok(CHECK, format!("mover Pod {} ran {}", pod.name, pod.image)),
        None => Finding::ok(
            CHECK,
            "no mover Pod of this object exists now; nothing to judge",
        ),
    }
}

/// A node's kubelet heartbeat: how far the API server's time is past its Lease's renewTime
/// (the kubelet's clock), and whether the node is Ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// The node.
    pub node: String,
    /// API server time minus renewTime.
    pub age: SignedDuration,
    /// The node's Ready condition is True.
    pub ready: bool,
}

/// Beyond this, times differ enough to matter: snapshot times, schedules, lock staleness.
const SKEW_WARN: SignedDuration = SignedDuration::from_secs(30);
/// Beyond this, restic's 30-minute lock staleness and `restoreAsOf` go wrong.
const SKEW_FAIL: SignedDuration = SignedDuration::from_secs(300);
/// A Ready node's kubelet renews its Lease every 10 s; older than this, its clock is behind.
const HEARTBEAT_LAG: SignedDuration = SignedDuration::from_secs(90);

/// Clock skew: this machine against the API server (`local - server`), and each node's kubelet
/// against the API server through its heartbeat.
pub fn clock(local_minus_server: SignedDuration, heartbeats: &[Heartbeat]) -> Finding {
    const CHECK: &str = "clock";
    let mut skewed = Vec::new();
    let mut worst = local_minus_server.abs();
    if local_minus_server.abs() > SKEW_WARN {
        skewed.push(format!(
            "this machine is {} {} the API server",
            short(local_minus_server.abs()),
            if local_minus_server.is_negative() {
                "behind"
            } else {
                "ahead of"
            }
        ));
    }
    for beat in heartbeats {
        if -beat.age > SKEW_WARN {
            skewed.push(format!("node {} is {} ahead", beat.node, short(-beat.age)));
            worst = worst.max(-beat.age);
        } else if beat.ready && beat.age > HEARTBEAT_LAG {
            skewed.push(format!(
                "node {} is Ready but its heartbeat is {} old: its clock is behind by about that",
                beat.node,
                short(beat.age)
            ));
            worst = worst.max(beat.age);
        }
    }
    if skewed.is_empty() {
        return Finding::ok(
            CHECK,
            format!(
                "this machine and {} node(s) agree with the API server within {}",
                heartbeats.len(),
                short(SKEW_WARN)
            ),
        );
    }
    let detail = skewed.join("; ");
    let fix = "run NTP (chrony, systemd-timesyncd) on the machines: snapshot times, schedules and restic's 30-minute lock staleness follow the node's clock";
    if worst > SKEW_FAIL {
        Finding::fail(CHECK, detail, fix)
    } else {
        Finding::warn(CHECK, detail, fix)
    }
}

fn short(duration: SignedDuration) -> String {
    let secs = duration.as_secs();
    if secs < 120 {
        format!("{secs}s")
    } else {
        format!("{}m", secs / 60)
    }
}

/// The operator's leader Lease (`sluice-operator`) in one namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorLease {
    /// Where the operator is installed.
    pub namespace: String,
    /// The replica that holds it (`holderIdentity`, the Pod name).
    pub holder: Option<String>,
    /// API server time minus `renewTime`; `None` when never renewed.
    pub age: Option<SignedDuration>,
}

/// The operator renews its Lease every few seconds and gives it up after 15 s; a Lease older
/// than this has no live holder.
const LEASE_STALE: SignedDuration = SignedDuration::from_secs(60);

/// Whether an operator runs: nothing syncs, and no status changes, while none holds its
/// leader Lease. Two installs in different namespaces both act on every object.
pub fn operator(leases: &[OperatorLease]) -> Finding {
    const CHECK: &str = "operator";
    let live: Vec<&OperatorLease> = leases
        .iter()
        .filter(|l| l.age.is_some_and(|age| age <= LEASE_STALE))
        .collect();
    match (leases, live.as_slice()) {
        ([], _) => Finding::fail(
            CHECK,
            "no sluice-operator leader Lease in any namespace: the operator is not installed, or has never started",
            "install it (helm install sluice charts/sluice -n sluice-system --create-namespace, or kubectl apply -k config/default), then: kubectl -n sluice-system get pods -l app.kubernetes.io/name=sluice",
        ),
        (_, []) => {
            let lease = &leases[0];
            let when = lease.age.map_or("never renewed".to_string(), |age| {
                format!("last renewed {} ago", short(age))
            });
            Finding::fail(
                CHECK,
                format!(
                    "the operator's leader Lease in {} was {when}{}: no replica runs, or none reaches the API server; nothing syncs meanwhile",
                    lease.namespace,
                    lease
                        .holder
                        .as_deref()
                        .map(|h| format!(" by {h}"))
                        .unwrap_or_default()
                ),
                format!(
                    "kubectl -n {ns} get pods -l app.kubernetes.io/name=sluice; kubectl -n {ns} logs deploy/sluice-operator",
                    ns = lease.namespace
                ),
            )
        }
        (_, [one]) if leases.len() == 1 => Finding::ok(
            CHECK,
            format!(
                "{} leads in {}, Lease renewed {} ago",
                one.holder.as_deref().unwrap_or("a replica"),
                one.namespace,
                short(one.age.unwrap_or_default())
            ),
        ),
        _ => {
            let namespaces: Vec<&str> = leases.iter().map(|l| l.namespace.as_str()).collect();
            Finding::warn(
                CHECK,
                format!(
                    "operator Leases in {} namespaces ({}), {} renewed within {}: two installs both act on every object",
                    leases.len(),
                    namespaces.join(", "),
                    live.len(),
                    short(LEASE_STALE)
                ),
                "keep one install: uninstall the others, or delete a stale Lease with kubectl -n NAMESPACE delete lease sluice-operator",
            )
        }
    }
}

/// The object's last result, with the fix for its failure reason.
pub fn last_result(health: &Health) -> Finding {
    const CHECK: &str = "last-result";
    let said = format!("{}: {}", health.reason, health.message);
    match health.state {
        State::Ready => Finding::ok(CHECK, said),
        State::Paused => Finding::warn(CHECK, said, "clear spec.paused to resume syncs"),
        State::Progressing => Finding::ok(CHECK, said),
        State::Failing => Finding::fail(
            CHECK,
            said,
            fix_for(&health.reason).unwrap_or(
                "read the message above and the mover Pod's log (kubectl logs -l sluice.dev/replication-source=NAME)",
            ),
        ),
    }
}

/// What to do about a failure reason of the operator's.
pub fn fix_for(reason: &str) -> Option<&'static str> {
    Some(match reason {
        reason::WRONG_PASSWORD => {
            "put the repository's password in RESTIC_PASSWORD; `kubectl sluice doctor` re-checks it"
        }
        reason::SECRET_INVALID => {
            "add the missing keys to the repository Secret (RESTIC_REPOSITORY, RESTIC_PASSWORD, the store's credentials)"
        }
        reason::REPOSITORY_NOT_FOUND => {
            "check RESTIC_REPOSITORY; a ReplicationDestination needs the repository its source writes"
        }
        reason::REPOSITORY_LOCKED => {
            "a lock is held; `kubectl sluice unlock NAME` removes stale ones (no mover running), --all every one"
        }
        reason::NETWORK_ERROR | reason::REPOSITORY_UNAVAILABLE => {
            "the mover cannot reach the store: check the endpoint, DNS, NetworkPolicies and customCA; the operator retries by itself"
        }
        reason::REPOSITORY_CORRUPT => {
            "run `restic check --read-data` on the repository and restore missing packs from a copy; do not prune until it passes"
        }
        reason::SOURCE_PVC_NOT_FOUND => "create the PVC spec.sourcePVC names, or fix the name",
        reason::NO_SNAPSHOT => {
            "no snapshot matches hostname/restoreAsOf: list them with `kubectl sluice snapshots`, or set onMissingSnapshot: Empty"
        }
        reason::MOVER_CONFIG_INVALID => "fix the spec field the message names",
        reason::VOLUME_MODE_MISMATCH => {
            "restore a Block snapshot with spec.restic.volumeMode: Block, a Filesystem one without"
        }
        reason::MOVER_FAILED | reason::BACKOFF => {
            "read the mover Pod's log: kubectl logs -l sluice.dev/replication-source=NAME --tail=50"
        }
        _ => return None,
    })
}
