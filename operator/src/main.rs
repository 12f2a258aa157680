//! sluice-operator: the Sluice controllers and their companion commands.

mod convert_volsync;

use std::{
    net::SocketAddr,
    process::ExitCode,
    sync::{Arc, Mutex, atomic::AtomicBool},
};

use clap::{Args, Parser, Subcommand};
use kube::Resource;
use kube::runtime::events::{Recorder, Reporter};
use sluice_api::{ReplicationDestination, ReplicationSource};
use sluice_operator::{
    cache::Owned,
    context::Context,
    controller::Wake,
    destination, http,
    leader::LeaderElector,
    metrics::Metrics,
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
    Run(RunArgs),
    /// Translate VolSync restic ReplicationSource/ReplicationDestination YAML into Sluice's.
    ConvertVolsync(convert_volsync::Args),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Image of the mover Jobs.
    #[arg(
        long,
        env = "SLUICE_MOVER_IMAGE",
        default_value = "ghcr.io/sluice-dev/sluice-mover:latest"
    )]
    mover_image: String,
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
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::ConvertVolsync(args) => convert_volsync::run(args),
        Command::Run(args) => {
            tracing_subscriber::fmt()
                .json()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info".into()),
                )
                .init();
            let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
            match runtime.block_on(run(args)) {
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

    let identity = args.identity.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    client.apiserver_version().await?;
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
    let (owned, [sources, destinations], watching) = Owned::watch(&client).await;
    let (wake, [woken_sources, woken_destinations]) = Wake::channels([
        ReplicationSource::kind(&()).as_ref(),
        ReplicationDestination::kind(&()).as_ref(),
    ]);
    let ctx = Arc::new(Context {
        client,
        recorder,
        metrics,
        mover_image: args.mover_image,
        owned: owned.clone(),
        queues: Mutex::new(Queues::new(args.max_concurrent_jobs.into())),
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
        }
    };
    tokio::select! {
        stopped = controllers => anyhow::bail!("the {stopped} controller stopped"),
        _ = watching => anyhow::bail!("the watches of owned objects stopped"),
        _ = elector.hold() => anyhow::bail!("lost the leader Lease; exiting so another replica takes over"),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}
