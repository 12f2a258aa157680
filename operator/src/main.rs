//! sluice-operator: the Sluice controllers (`sluice-operator run`).

use std::{
    net::SocketAddr,
    process::ExitCode,
    sync::{Arc, Mutex, atomic::AtomicBool},
};

use clap::{Args, Parser, Subcommand};
use k8s_openapi::api::core::v1::{PodSecurityContext, ResourceRequirements};
use kube::Resource;
use kube::runtime::events::{Recorder, Reporter};
use sluice_api::{ReplicationDestination, ReplicationSource};
use sluice_operator::{
    breaker::{Breakers, ProbePolicy},
    cache::Owned,
    context::Context,
    controller::Wake,
    destination, http,
    job::MoverDefaults,
    leader::LeaderElector,
    metrics::Metrics,
    mover_image, populator,
    queue::{self, Queues},
    source,
    traffic::CountRequests,
};

/// Kubernetes operator that backs PVCs up into restic-format repositories.
#[derive(Parser, Debug)]
#[command(name = "sluice-operator", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the controllers (only while holding the leader Lease).
    Run(Box<RunArgs>),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Image of the mover Jobs. Default: the image of the operator's own container, read from
    /// its Pod (`POD_NAME` in `POD_NAMESPACE`); the Sluice image carries the mover too.
    #[arg(long, env = "SLUICE_MOVER_IMAGE")]
    mover_image: Option<String>,
    /// Requests and limits of mover containers whose object sets none, as JSON
    /// (`{"requests":{"cpu":"100m"}}`).
    #[arg(long, env = "SLUICE_MOVER_RESOURCES", value_parser = json::<ResourceRequirements>)]
    mover_resources: Option<ResourceRequirements>,
    /// Pod security context fields of every mover, as JSON, merged over the restricted defaults
    /// and below each object's `moverSecurityContext` (`{"runAsUser":1000}`).
    #[arg(long, env = "SLUICE_MOVER_POD_SECURITY_CONTEXT", value_parser = json::<PodSecurityContext>)]
    mover_pod_security_context: Option<PodSecurityContext>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "SLUICE_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// Namespace of the leader Lease. Default: the Pod's namespace, else `sluice-system`.
    #[arg(long, env = "POD_NAMESPACE", default_value = "sluice-system")]
    lease_namespace: String,
    /// Identity in the leader Lease. Default: the host name and process id.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Mover Jobs running into one repository at once (sources and destinations whose Secrets
    /// name the same RESTIC_REPOSITORY); the others wait in line with reason Queued. A prune or
    /// check always runs alone.
    #[arg(
        long,
        env = "SLUICE_MAX_CONCURRENT_JOBS",
        default_value_t = queue::DEFAULT_MAX_CONCURRENT_JOBS,
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    max_concurrent_jobs: u16,
    /// The wait before a repository found unreachable is probed (a small mover Job asks its
    /// backend for the repository's config); syncs into it are parked without Jobs meanwhile.
    /// It doubles after each probe that fails, up to --probe-interval-max.
    #[arg(long, env = "SLUICE_PROBE_INTERVAL", default_value = "30s", value_parser = duration)]
    probe_interval: std::time::Duration,
    /// How long a mover waits for a lock another live process holds (a prune, a check, restic
    /// on another host) before its sync fails with RepositoryLocked. A stale lock (its holder
    /// gone) never waits: the mover removes it.
    #[arg(long, env = "SLUICE_LOCK_WAIT", default_value = "10m", value_parser = duration)]
    lock_wait: std::time::Duration,
    /// The longest wait between two probes of an unreachable repository.
    #[arg(long, env = "SLUICE_PROBE_INTERVAL_MAX", default_value = "10m", value_parser = duration)]
    probe_interval_max: std::time::Duration,
}

/// A flag's duration (`30s`, `10m`, `1h`), refused at startup with the parser's reason.
fn duration(value: &str) -> Result<std::time::Duration, String> {
    let signed: jiff::SignedDuration = value
        .parse()
        .map_err(|e| format!("not a duration like 30s or 10m: {e}"))?;
    std::time::Duration::try_from(signed).map_err(|_| "a duration cannot be negative".to_string())
}

/// A flag's JSON value as `T`, refused at startup with the parser's reason.
fn json<T: serde::de::DeserializeOwned>(value: &str) -> Result<T, String> {
    serde_json::from_str(value).map_err(|e| format!("not valid JSON for this setting: {e}"))
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run(args) => {
            tracing_subscriber::fmt()
                .json()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info".into()),
                )
                .init();
            let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
            match runtime.block_on(run(*args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!(error = format!("{error:#}"), "sluice-operator stopped");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let config = kube::Config::infer().await.map_err(|e| {
        anyhow::anyhow!(
            "no Kubernetes API to connect to: {e}; check KUBECONFIG or the in-cluster service account"
        )
    })?;
    let client = kube::client::ClientBuilder::try_from(config)
        .map_err(|e| anyhow::anyhow!("connecting to the Kubernetes API failed: {e}; check KUBECONFIG or the in-cluster service account"))?
        .with_layer(&CountRequests::new(metrics.clone()))
        .build();
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "listening on {} failed: {e}; pass --http-addr",
                args.http_addr
            )
        })?;
    let router = http::router(http::Health {
        metrics: metrics.clone(),
        ready: ready.clone(),
    });
    tokio::spawn(async move { axum::serve(listener, router).await });

    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    client.apiserver_version().await?;
    let mover_image = match args.mover_image {
        Some(image) => image,
        None => own_image(&client, &args.lease_namespace, args.identity.as_deref()).await?,
    };
    tracing::info!(%mover_image, "mover Jobs run this image");
    ready.store(true, std::sync::atomic::Ordering::Relaxed);
    let elector = LeaderElector::new(
        client.clone(),
        &args.lease_namespace,
        "sluice-operator",
        &identity,
    );
    tracing::info!(%identity, "waiting for the leader Lease");
    elector.acquire().await;
    tracing::info!(%identity, "leader Lease acquired; starting controllers");

    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "sluice-operator".into(),
            instance: Some(identity),
        },
    );
    let (owned, [sources, destinations, populations], watching) = Owned::watch(&client).await;
    let (wake, [woken_sources, woken_destinations]) = Wake::channels([
        ReplicationSource::kind(&()).as_ref(),
        ReplicationDestination::kind(&()).as_ref(),
    ]);
    let ctx = Arc::new(Context {
        client,
        recorder,
        metrics,
        mover: MoverDefaults {
            image: mover_image,
            resources: args.mover_resources,
            pod_security_context: args.mover_pod_security_context,
            lock_wait: args.lock_wait,
        },
        owned: owned.clone(),
        written: Default::default(),
        queues: Mutex::new(Queues::new(args.max_concurrent_jobs.into())),
        breakers: Mutex::new(Breakers::new(ProbePolicy {
            first: args.probe_interval,
            max: args.probe_interval_max.max(args.probe_interval),
        })),
        wake,
    });
    let controllers = async {
        // Reconciling before the stores are listed would take what they have not seen yet for
        // missing.
        owned.ready().await;
        tracing::info!("owned Jobs, Pods, PVCs and VolumeSnapshots listed; reconciling");
        tokio::select! {
            _ = source::run(ctx.clone(), sources, woken_sources) => "ReplicationSource",
            _ = destination::run(ctx.clone(), destinations, woken_destinations) => "ReplicationDestination",
            _ = populator::run(ctx.clone(), populations) => "volume populator",
        }
    };
    tokio::select! {
        stopped = controllers => anyhow::bail!("the {stopped} controller stopped"),
        _ = watching => anyhow::bail!("the watches of owned objects stopped"),
        _ = elector.hold() => anyhow::bail!("lost the leader Lease; exiting so another replica takes over"),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// The image of this operator's container, from its own Pod.
async fn own_image(
    client: &kube::Client,
    namespace: &str,
    pod_name: Option<&str>,
) -> anyhow::Result<String> {
    let Some(pod_name) = pod_name else {
        anyhow::bail!(
            "no mover image: set SLUICE_MOVER_IMAGE (or --mover-image), or run in a Pod with POD_NAME and POD_NAMESPACE set from the downward API so the operator's own image is used"
        );
    };
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(client.clone(), namespace);
    let pod = pods.get(pod_name).await.map_err(|e| {
        anyhow::anyhow!(
            "reading the operator's own Pod {namespace}/{pod_name} for its image failed: {e}; set SLUICE_MOVER_IMAGE or grant get on pods"
        )
    })?;
    mover_image::own_image(&pod).map_err(anyhow::Error::msg)
}
