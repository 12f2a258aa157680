//! The node emulator: the one stand-in in Sluice's local cluster.
//!
//! No kubelet, scheduler or CSI driver can run here, so this module plays
//! them against the real API server, each as a level-triggered loop that
//! polls what it owns and moves it one step:
//!
//! - [`heartbeat`]: registers one Node and keeps its heartbeat lease fresh;
//! - [`scheduler`]: binds every unscheduled Pod to that node;
//! - [`storage`]: provisions PVCs of its StorageClass as directories, with
//!   clones and restores from VolumeSnapshots as directory copies;
//! - [`snapshots`]: serves VolumeSnapshots of its class by copying the source
//!   volume's directory, honouring `readyToUse` and `restoreSize`;
//! - [`kubelet`]: runs each Pod's containers as local processes with their
//!   volumes bind-mounted in a private mount namespace, and reports phases,
//!   exit codes and termination messages.
//!
//! The Job controller, garbage collection and PV binding stay real, in
//! kube-controller-manager.

pub mod heartbeat;
pub mod kubelet;
pub mod scheduler;
pub mod snapshots;
pub mod storage;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tempfile::TempDir;

use crate::cluster::Cluster;

/// The name of the emulated Node every Pod is bound to.
pub const NODE_NAME: &str = "sluice-e2e-node";
/// The CSI driver and provisioner name the emulator answers for.
pub const DRIVER: &str = "e2e.sluice.dev";
/// The default StorageClass it installs, provisioned by [`DRIVER`].
pub const STORAGE_CLASS: &str = "sluice-e2e";
/// The default VolumeSnapshotClass it installs, served by [`DRIVER`].
pub const SNAPSHOT_CLASS: &str = "sluice-e2e";

/// How often each loop looks at the cluster again.
const POLL: Duration = Duration::from_millis(300);

/// What the emulator needs besides the API server.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where volumes, snapshots and Pod files live.
    pub root: PathBuf,
    /// Local programs that stand in for container entrypoints, by name: a
    /// container whose command (or, without a command, image name) is
    /// `sluice-mover` runs `programs["sluice-mover"]`.
    pub programs: HashMap<String, PathBuf>,
}

/// State shared by the loops.
struct Context {
    client: Client,
    config: Config,
}

impl Context {
    fn volumes_dir(&self) -> PathBuf {
        self.config.root.join("volumes")
    }

    fn snapshots_dir(&self) -> PathBuf {
        self.config.root.join("snapshots")
    }

    fn pods_dir(&self) -> PathBuf {
        self.config.root.join("pods")
    }
}

/// A client for the cluster in `kubeconfig`.
pub async fn client(kubeconfig: &Path) -> anyhow::Result<Client> {
    let file = Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("cannot read kubeconfig {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("invalid kubeconfig {}", kubeconfig.display()))?;
    Ok(Client::try_from(config)?)
}

/// Registers the node and the storage classes, then runs every role until
/// the task is dropped; a failing step is logged and retried on the next
/// poll, as a real component would.
pub async fn run(client: Client, config: Config) -> anyhow::Result<()> {
    let context = prepare(client, config).await?;
    roles(context).await;
    Ok(())
}

async fn prepare(client: Client, config: Config) -> anyhow::Result<Arc<Context>> {
    for dir in ["volumes", "snapshots", "pods"] {
        let path = config.root.join(dir);
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
    }
    let context = Arc::new(Context { client, config });
    heartbeat::register(&context).await?;
    storage::install_class(&context).await?;
    snapshots::install_class(&context).await?;
    Ok(context)
}

async fn roles(context: Arc<Context>) {
    tokio::join!(
        heartbeat::keep_alive(context.clone()),
        poll("scheduler", context.clone(), scheduler::step),
        poll("provisioner", context.clone(), storage::step),
        poll("snapshotter", context.clone(), snapshots::step),
        kubelet::run(context.clone()),
    );
}

/// The emulator running in the background of a test, on its own runtime;
/// dropping it stops every role and kills the containers it runs.
pub struct NodeEmulator {
    runtime: Option<tokio::runtime::Runtime>,
    client: Client,
    root: TempDir,
}

impl NodeEmulator {
    /// Starts the emulator against `cluster`, with `programs` standing in
    /// for container entrypoints (see [`Config::programs`]); returns once
    /// the Node and the storage and snapshot classes exist.
    pub fn start(cluster: &Cluster, programs: HashMap<String, PathBuf>) -> NodeEmulator {
        let root = tempfile::Builder::new()
            .prefix("sluice-node-")
            .tempdir()
            .unwrap_or_else(|e| {
                panic!("cannot create a temporary directory for the node emulator: {e}")
            });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sluice-node")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start the node emulator's runtime: {e}"));
        let config = Config {
            root: root.path().to_path_buf(),
            programs,
        };
        let context = runtime
            .block_on(async { prepare(client(cluster.kubeconfig()).await?, config).await })
            .unwrap_or_else(|e| panic!("node emulator failed to start: {e:#}"));
        let client = context.client.clone();
        runtime.spawn(roles(context));
        NodeEmulator {
            runtime: Some(runtime),
            client,
            root,
        }
    }

    /// The directory holding the data of PVC `namespace/claim`, once bound.
    pub fn claim_dir(&self, namespace: &str, claim: &str) -> Option<PathBuf> {
        let runtime = self.runtime.as_ref().expect("runtime lives until drop");
        runtime
            .block_on(storage::claim_dir(&self.client, namespace, claim))
            .unwrap_or_else(|e| panic!("cannot look up PVC {namespace}/{claim}: {e:#}"))
    }

    /// Where volumes (`volumes/`), snapshots (`snapshots/`) and Pod files
    /// (`pods/UID/CONTAINER.log`) live.
    pub fn root(&self) -> &Path {
        self.root.path()
    }
}

impl Drop for NodeEmulator {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Dropping the tasks drops their children, which kills them.
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

/// Runs `step` every [`POLL`], logging its errors.
async fn poll<F, Fut>(role: &'static str, context: Arc<Context>, step: F)
where
    F: Fn(Arc<Context>) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    loop {
        if let Err(e) = step(context.clone()).await {
            tracing::warn!(role, "{e:#}");
        }
        tokio::time::sleep(POLL).await;
    }
}
