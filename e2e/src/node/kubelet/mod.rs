//! The kubelet's part: runs the Pods bound to the emulated node.
//!
//! Each Pod gets one task that resolves its volumes (waiting for PVCs to
//! bind and Secrets to exist, as the kubelet does), runs init containers in
//! order and then the containers, restarts them per `restartPolicy`, and
//! writes the Pod's phase, container states, exit codes and termination
//! messages. `activeDeadlineSeconds` and deletion stop the processes
//! (SIGTERM, then SIGKILL after the grace period), and a deleted Pod is
//! removed for good with a zero-grace delete, as the kubelet confirms it.

mod container;
mod env;
mod volumes;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, Pod, PodCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use self::container::{Launch, Mount};
use super::{Context, NODE_NAME, POLL};

/// The kubelet caps termination messages at this many bytes.
const MAX_MESSAGE: usize = 4096;
/// ... and a message taken from the log at this many bytes.
const MAX_LOG_MESSAGE: usize = 2048;

struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

pub(super) async fn run(context: Arc<Context>) {
    let mut pods = HashMap::new();
    loop {
        if let Err(e) = step(&context, &mut pods).await {
            tracing::warn!(role = "kubelet", "{e:#}");
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn step(context: &Arc<Context>, pods: &mut HashMap<String, Running>) -> anyhow::Result<()> {
    let api: Api<Pod> = Api::all(context.client.clone());
    let bound = api
        .list(&ListParams::default().fields(&format!("spec.nodeName={NODE_NAME}")))
        .await?;
    let mut seen = HashSet::new();
    for pod in bound {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        seen.insert(uid.clone());
        if pod.metadata.deletion_timestamp.is_some() {
            match pods.get(&uid) {
                Some(running) if !running.task.is_finished() => {
                    let _ = running.stop.send(true);
                }
                _ => confirm_deletion(context, &pod).await?,
            }
            continue;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if !pods.contains_key(&uid) && !matches!(phase, Some("Succeeded" | "Failed")) {
            let (stop, stopped) = watch::channel(false);
            let task = tokio::spawn(run_pod(context.clone(), pod, stopped));
            pods.insert(uid, Running { stop, task });
        }
    }
    pods.retain(|uid, running| {
        let keep = seen.contains(uid);
        if !keep {
            let _ = running.stop.send(true);
            let _ = std::fs::remove_dir_all(context.pods_dir().join(uid));
        }
        keep
    });
    Ok(())
}

/// The final, zero-grace delete the kubelet makes once a Pod's containers
/// are gone.
async fn confirm_deletion(context: &Context, pod: &Pod) -> anyhow::Result<()> {
    let api: Api<Pod> = Api::namespaced(
        context.client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
    );
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api
        .delete(pod.metadata.name.as_deref().unwrap_or_default(), &params)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Why a Pod's containers were stopped from outside.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Interruption {
    Deleted,
    DeadlineExceeded,
}

/// What the Pod's status says, republished whole on every change.
struct PodState {
    phase: &'static str,
    reason: Option<&'static str>,
    message: Option<String>,
    start_time: jiff::Timestamp,
    initialized: bool,
    init_statuses: Vec<ContainerStatus>,
    statuses: Vec<ContainerStatus>,
}

struct PodRun {
    context: Arc<Context>,
    pod: Pod,
    api: Api<Pod>,
    dir: PathBuf,
    stopped: watch::Receiver<bool>,
    deadline: Option<Instant>,
    state: PodState,
}

async fn run_pod(context: Arc<Context>, pod: Pod, stopped: watch::Receiver<bool>) {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let dir = context
        .pods_dir()
        .join(pod.metadata.uid.as_deref().unwrap_or_default());
    let spec = pod.spec.clone().unwrap_or_default();
    let deadline = spec
        .active_deadline_seconds
        .map(|s| Instant::now() + Duration::from_secs(s.max(0) as u64));
    let waiting = |c: &Container| status_of(c, 0, waiting_state("ContainerCreating", None), None);
    let mut run = PodRun {
        api: Api::namespaced(context.client.clone(), &namespace),
        context,
        dir,
        stopped,
        deadline,
        state: PodState {
            phase: "Pending",
            reason: None,
            message: None,
            start_time: jiff::Timestamp::now(),
            initialized: false,
            init_statuses: spec.init_containers.iter().flatten().map(waiting).collect(),
            statuses: spec.containers.iter().map(waiting).collect(),
        },
        pod,
    };
    if let Err(e) = std::fs::create_dir_all(&run.dir) {
        tracing::warn!(role = "kubelet", "cannot create {}: {e}", run.dir.display());
        return;
    }
    let outcome = run.run(&spec).await;
    match outcome {
        Err(Interruption::Deleted) => {
            if let Err(e) = confirm_deletion(&run.context, &run.pod).await {
                tracing::warn!(
                    role = "kubelet",
                    "cannot delete pod {namespace}/{name}: {e:#}"
                );
            }
        }
        Err(Interruption::DeadlineExceeded) => {
            run.state.phase = "Failed";
            run.state.reason = Some("DeadlineExceeded");
            run.state.message =
                Some("Pod was active on the node longer than the specified deadline".into());
            run.publish().await;
        }
        Ok(succeeded) => {
            run.state.phase = if succeeded { "Succeeded" } else { "Failed" };
            run.publish().await;
        }
    }
}

impl PodRun {
    /// Runs the Pod to completion: Ok(true) when every container succeeded.
    async fn run(
        &mut self,
        spec: &k8s_openapi::api::core::v1::PodSpec,
    ) -> Result<bool, Interruption> {
        let volumes = loop {
            match volumes::prepare(&self.context.client, &self.pod, &self.dir).await {
                Ok(volumes) => break volumes,
                Err(e) => {
                    self.state.message = Some(format!("{e:#}"));
                    self.publish().await;
                    self.pause(POLL).await?;
                }
            }
        };
        self.state.message = None;
        let policy = spec.restart_policy.as_deref().unwrap_or("Always");
        for (index, container) in spec.init_containers.iter().flatten().enumerate() {
            // Init containers are retried unless the policy is Never.
            let init_policy = if policy == "Never" {
                "Never"
            } else {
                "OnFailure"
            };
            if !self
                .run_container(container, &volumes, index, true, init_policy)
                .await?
            {
                return Ok(false);
            }
        }
        self.state.initialized = true;
        self.state.phase = "Running";
        let mut all_succeeded = true;
        // Mover Pods have one container; several run one after another here,
        // which only matters for Pods whose containers talk to each other.
        for (index, container) in spec.containers.iter().enumerate() {
            all_succeeded &= self
                .run_container(container, &volumes, index, false, policy)
                .await?;
        }
        Ok(all_succeeded)
    }

    /// Runs one container, restarting it per `policy`, until it exits for
    /// good; Ok(true) when it exited 0.
    async fn run_container(
        &mut self,
        container: &Container,
        volumes: &BTreeMap<String, PathBuf>,
        index: usize,
        init: bool,
        policy: &str,
    ) -> Result<bool, Interruption> {
        let mut restarts = 0;
        loop {
            let launch = loop {
                match self.launch(container, volumes).await {
                    Ok(launch) => break launch,
                    Err(e) => {
                        let waiting =
                            waiting_state("CreateContainerConfigError", Some(format!("{e:#}")));
                        self.set_status(init, index, status_of(container, restarts, waiting, None));
                        self.publish().await;
                        self.pause(POLL).await?;
                    }
                }
            };
            let termination_log = launch
                .mounts
                .last()
                .map(|m| m.source.clone())
                .expect("launch always mounts the termination log");
            // World-writable, as the kubelet makes it: the container may
            // run as any user.
            let _ = std::fs::write(&termination_log, "");
            let _ = std::fs::set_permissions(
                &termination_log,
                std::os::unix::fs::PermissionsExt::from_mode(0o666),
            );
            let started = jiff::Timestamp::now();
            let mut child = match container::spawn(&launch) {
                Ok(child) => child,
                Err(e) => {
                    let waiting = waiting_state("RunContainerError", Some(format!("{e:#}")));
                    self.set_status(init, index, status_of(container, restarts, waiting, None));
                    self.publish().await;
                    self.pause(Duration::from_secs(1)).await?;
                    restarts += 1;
                    continue;
                }
            };
            let running = ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(Time(started)),
                }),
                ..Default::default()
            };
            let mut status = status_of(container, restarts, running, None);
            status.ready = !init;
            status.container_id = child.id().map(|pid| format!("local://{pid}"));
            let previous = self.status(init, index).last_state.clone();
            status.last_state = previous;
            self.set_status(init, index, status);
            self.state.phase = if init { "Pending" } else { "Running" };
            self.publish().await;

            let exit = tokio::select! {
                exit = child.wait() => Ok(exit),
                interruption = self.interrupted() => Err(interruption),
            };
            let exit_code = match exit {
                Ok(Ok(status)) => exit_code(status),
                Ok(Err(e)) => {
                    tracing::warn!(role = "kubelet", "lost container {}: {e}", container.name);
                    128 + libc::SIGKILL
                }
                Err(interruption) => {
                    self.stop_container(&mut child, interruption).await;
                    let code = child
                        .wait()
                        .await
                        .map(exit_code)
                        .unwrap_or(128 + libc::SIGKILL);
                    let terminated = self.terminated(container, &launch, started, code);
                    self.set_status(
                        init,
                        index,
                        status_of(container, restarts, terminated, None),
                    );
                    return Err(interruption);
                }
            };
            let terminated = self.terminated(container, &launch, started, exit_code);
            let restart = match policy {
                "Always" => true,
                "OnFailure" => exit_code != 0,
                _ => false,
            };
            if !restart {
                self.set_status(
                    init,
                    index,
                    status_of(container, restarts, terminated, None),
                );
                self.publish().await;
                return Ok(exit_code == 0);
            }
            let backoff = waiting_state("CrashLoopBackOff", None);
            restarts += 1;
            self.set_status(
                init,
                index,
                status_of(container, restarts, backoff, Some(terminated)),
            );
            self.publish().await;
            self.pause(Duration::from_secs(1)).await?;
        }
    }

    /// The process to start for `container`: its program, arguments,
    /// environment and mounts, including the termination-message file.
    async fn launch(
        &self,
        container: &Container,
        volumes: &BTreeMap<String, PathBuf>,
    ) -> anyhow::Result<Launch> {
        let mut env = vec![
            (
                "PATH".to_string(),
                std::env::var("PATH").unwrap_or_default(),
            ),
            (
                "HOSTNAME".to_string(),
                self.pod.metadata.name.clone().unwrap_or_default(),
            ),
        ];
        env.extend(env::resolve(&self.context.client, &self.pod, container).await?);
        let mut argv: Vec<String> = container
            .command
            .iter()
            .flatten()
            .chain(container.args.iter().flatten())
            .map(|a| env::expand(a, &env))
            .collect();
        if container.command.as_ref().is_none_or(Vec::is_empty) {
            argv.insert(
                0,
                image_name(container.image.as_deref().unwrap_or_default()),
            );
        }
        let program = self.program(&argv[0])?;
        let mut mounts = Vec::new();
        for mount in container.volume_mounts.iter().flatten() {
            let source = volumes.get(&mount.name).ok_or_else(|| {
                anyhow::anyhow!("volume mount {} names no volume of the pod", mount.name)
            })?;
            let source = match mount.sub_path.as_deref() {
                Some(sub) if !sub.is_empty() => {
                    let path = source.join(sub);
                    if !path.exists() {
                        std::fs::create_dir_all(&path)?;
                    }
                    path
                }
                _ => source.clone(),
            };
            mounts.push(Mount {
                source,
                target: PathBuf::from(&mount.mount_path),
                read_only: mount.read_only == Some(true),
            });
        }
        let termination_path = container
            .termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".into());
        mounts.push(Mount {
            source: self.dir.join(format!("{}.termination-log", container.name)),
            target: PathBuf::from(termination_path),
            read_only: false,
        });
        let security = container.security_context.as_ref();
        let pod_security = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.as_ref());
        Ok(Launch {
            program,
            args: argv[1..].to_vec(),
            env,
            mounts,
            working_dir: container.working_dir.as_ref().map(PathBuf::from),
            uid: security
                .and_then(|s| s.run_as_user)
                .or(pod_security.and_then(|s| s.run_as_user))
                .map(|u| u as u32),
            gid: security
                .and_then(|s| s.run_as_group)
                .or(pod_security.and_then(|s| s.run_as_group))
                .map(|g| g as u32),
            groups: pod_security
                .into_iter()
                .flat_map(|s| {
                    s.fs_group
                        .into_iter()
                        .chain(s.supplemental_groups.iter().flatten().copied())
                })
                .map(|g| g as u32)
                .collect(),
            log: self.log_path(container),
        })
    }

    /// A configured stand-in program for the entrypoint's name, else the
    /// entrypoint itself when it is an existing path or on PATH.
    fn program(&self, entrypoint: &str) -> anyhow::Result<PathBuf> {
        let base = Path::new(entrypoint)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(entrypoint);
        if let Some(program) = self.context.config.programs.get(base) {
            return Ok(program.clone());
        }
        let path = Path::new(entrypoint);
        if path.is_absolute() && path.exists() {
            return Ok(path.to_path_buf());
        }
        let on_path = std::env::var_os("PATH")
            .map(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join(entrypoint))
                    .find(|c| c.is_file())
            })
            .unwrap_or_default();
        on_path.ok_or_else(|| {
            anyhow::anyhow!("no local program for entrypoint {entrypoint}: give the node emulator a program for {base}")
        })
    }

    fn log_path(&self, container: &Container) -> PathBuf {
        self.dir.join(format!("{}.log", container.name))
    }

    fn terminated(
        &self,
        container: &Container,
        launch: &Launch,
        started: jiff::Timestamp,
        exit_code: i32,
    ) -> ContainerState {
        let termination_log = &launch.mounts.last().expect("termination log mount").source;
        let mut message = std::fs::read(termination_log).unwrap_or_default();
        message.truncate(MAX_MESSAGE);
        let mut message = String::from_utf8_lossy(&message).into_owned();
        let fallback =
            container.termination_message_policy.as_deref() == Some("FallbackToLogsOnError");
        if message.is_empty() && fallback && exit_code != 0 {
            message = log_tail(&self.log_path(container));
        }
        ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code,
                reason: Some(if exit_code == 0 { "Completed" } else { "Error" }.into()),
                message: (!message.is_empty()).then_some(message),
                started_at: Some(Time(started)),
                finished_at: Some(Time(jiff::Timestamp::now())),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// SIGTERM, then SIGKILL once the grace period is over.
    async fn stop_container(&self, child: &mut tokio::process::Child, interruption: Interruption) {
        let grace = match interruption {
            Interruption::Deleted => self.pod.metadata.deletion_grace_period_seconds,
            Interruption::DeadlineExceeded => None,
        }
        .or(self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(30)
        .max(0) as u64;
        container::signal(child, libc::SIGTERM);
        if tokio::time::timeout(Duration::from_secs(grace), child.wait())
            .await
            .is_err()
        {
            container::signal(child, libc::SIGKILL);
        }
    }

    /// Resolves when the Pod is deleted or its deadline passes.
    async fn interrupted(&self) -> Interruption {
        let mut stopped = self.stopped.clone();
        let deadline = async {
            match self.deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => Interruption::Deleted,
            () = deadline => Interruption::DeadlineExceeded,
        }
    }

    /// Waits `duration` unless the Pod is interrupted first.
    async fn pause(&self, duration: Duration) -> Result<(), Interruption> {
        tokio::select! {
            () = tokio::time::sleep(duration) => Ok(()),
            interruption = self.interrupted() => Err(interruption),
        }
    }

    fn status(&self, init: bool, index: usize) -> &ContainerStatus {
        if init {
            &self.state.init_statuses[index]
        } else {
            &self.state.statuses[index]
        }
    }

    fn set_status(&mut self, init: bool, index: usize, status: ContainerStatus) {
        if init {
            self.state.init_statuses[index] = status;
        } else {
            self.state.statuses[index] = status;
        }
    }

    /// Writes the whole Pod status; failures are logged and the next change
    /// writes it again.
    async fn publish(&self) {
        let state = &self.state;
        let running = state.statuses.iter().all(|s| s.ready);
        let terminal = matches!(state.phase, "Succeeded" | "Failed");
        let ready = running && !terminal && state.phase == "Running";
        let now = Time(jiff::Timestamp::now());
        let condition = |type_: &str, status: bool, reason: Option<&str>| PodCondition {
            type_: type_.into(),
            status: if status { "True" } else { "False" }.into(),
            reason: reason.map(Into::into),
            last_transition_time: Some(now.clone()),
            ..Default::default()
        };
        let completed = terminal.then_some("PodCompleted");
        let status = json!({"status": {
            "phase": state.phase,
            "reason": state.reason,
            "message": state.message,
            "hostIP": "127.0.0.1",
            "podIP": "127.0.0.1",
            "startTime": Time(state.start_time),
            "conditions": [
                condition("PodScheduled", true, None),
                condition("Initialized", state.initialized, None),
                condition("ContainersReady", ready, completed),
                condition("Ready", ready, completed),
            ],
            "initContainerStatuses": state.init_statuses,
            "containerStatuses": state.statuses,
        }});
        let name = self.pod.metadata.name.as_deref().unwrap_or_default();
        if let Err(e) = self
            .api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
        {
            tracing::warn!(
                role = "kubelet",
                "cannot update the status of pod {name}: {e}"
            );
        }
    }
}

fn status_of(
    container: &Container,
    restarts: i32,
    state: ContainerState,
    last: Option<ContainerState>,
) -> ContainerStatus {
    ContainerStatus {
        name: container.name.clone(),
        image: container.image.clone().unwrap_or_default(),
        image_id: String::new(),
        ready: false,
        restart_count: restarts,
        started: Some(state.running.is_some()),
        state: Some(state),
        last_state: last,
        ..Default::default()
    }
}

fn waiting_state(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message,
        }),
        ..Default::default()
    }
}

/// An exit status as Kubernetes reports it: the code, or 128 + the signal.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// `ghcr.io/org/sluice-mover:v1` -> `sluice-mover`: the name a stand-in
/// program is registered under.
fn image_name(image: &str) -> String {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split(':').next().unwrap_or(last).to_string()
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let mut tail = lines[lines.len().saturating_sub(80)..].join("\n");
    if tail.len() > MAX_LOG_MESSAGE {
        let mut cut = tail.len() - MAX_LOG_MESSAGE;
        while !tail.is_char_boundary(cut) {
            cut += 1;
        }
        tail = tail[cut..].to_string();
    }
    tail
}

#[cfg(test)]
mod tests {
    use super::image_name;

    #[test]
    fn image_names_for_stand_in_programs() {
        assert_eq!(
            image_name("ghcr.io/sluice-dev/sluice-mover:v0.1.0"),
            "sluice-mover"
        );
        assert_eq!(image_name("sluice-mover@sha256:abc"), "sluice-mover");
        assert_eq!(image_name("localhost:5000/busybox"), "busybox");
    }
}
