//! `make bench-operator`: the real `sluice-operator` binary against the real control plane
//! (etcd, kube-apiserver, kube-controller-manager; no node) with `SLUICE_BENCH_SOURCES`
//! ReplicationSources (default 5,000). A benchmark, not a test: it reports and never fails on
//! time.
//!
//! With no node, mover Pods stay Pending, so every source's first sync stays in flight: the
//! state an object-store or node outage leaves thousands of syncs in, where an operator that
//! polls what it owns costs the most. Each source has its own repository Secret (syncs into
//! one repository would queue behind each other's first prune), uses `copyMethod: Direct`
//! (nothing to copy without a node) and the schedule `H/n * * * *`, with `n` chosen so about
//! 500 sources start a minute: 5,000 start over 10 minutes, a compressed hour of `H * * * *`,
//! and a quick run of 200 within one minute.
//!
//! The run: the operator starts, the sources are created, their first syncs start (the
//! burst), everything stays in flight for `SLUICE_BENCH_STEADY_SECONDS` (default 180: the
//! steady state), the operator is restarted and its resync timed. Meanwhile one more source,
//! with no trigger (it syncs again as soon as a sync ends), runs `SLUICE_BENCH_SYNCS` syncs
//! (default 100) whose mover Pods the benchmark ends with a result through the Pod status API,
//! where a kubelet writes it; afterwards the Jobs, Pods, Events and status it left are counted.
//!
//! It prints what it measured; the last line is a JSON summary (see
//! `sluice_e2e::operator_bench::Summary`). `SLUICE_BENCH_OPERATOR` names the operator binary
//! (default: the `sluice-operator` next to this one).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use sluice_e2e::Cluster;
use sluice_e2e::operator_bench::{self as bench, Bounded, Refusals, Sample, Summary, Window};
use sluice_e2e::stack::workspace_binary;
use sluice_testkit::probe::http_get;
use sluice_testkit::process::{Daemon, free_port};

/// Sources a namespace holds.
const PER_NAMESPACE: usize = 500;
/// Sources starting a minute the schedule aims at.
const STARTS_PER_MINUTE: usize = 500;
/// How often the operator is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// The label saying what a source is for: `load`, or `bounded` for the one whose syncs are
/// counted.
const ROLE: &str = "bench.sluice.dev/role";
/// The namespace of the source whose syncs are counted.
const BOUNDED_NS: &str = "bench-bounded";
/// The label naming a Job's ReplicationSource.
const OWNER_LABEL: &str = "sluice.dev/replication-source";

struct Config {
    sources: usize,
    steady: Duration,
    syncs: usize,
    operator: PathBuf,
}

impl Config {
    fn from_env() -> Result<Self, String> {
        let number = |name: &str, default: usize| -> Result<usize, String> {
            match std::env::var(name) {
                Ok(value) if !value.is_empty() => value
                    .parse()
                    .map_err(|_| format!("{name}={value:?} is not a number")),
                _ => Ok(default),
            }
        };
        let operator = std::env::var_os("SLUICE_BENCH_OPERATOR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_binary("sluice-operator"));
        Ok(Self {
            sources: number("SLUICE_BENCH_SOURCES", 5000)?.max(1),
            steady: Duration::from_secs(number("SLUICE_BENCH_STEADY_SECONDS", 180)? as u64),
            syncs: number("SLUICE_BENCH_SYNCS", 100)?,
            operator,
        })
    }
}

fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("sluice-e2e-bench-operator: {message}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    eprintln!("bench: starting etcd, kube-apiserver and kube-controller-manager (no node)");
    let cluster = Cluster::start();
    let crds = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/crd");
    cluster.kubectl(&["apply", "-k", crds]);
    cluster.wait_established(&["replicationsources.sluice.dev"]);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(run(&cluster, &config, started)) {
        Ok(summary) => {
            println!("{}", summary.to_json());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("sluice-e2e-bench-operator: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// What the sampler thread looks at and what it collected.
struct Probe {
    t0: Instant,
    pid: AtomicU32,
    port: AtomicU32,
    process: AtomicU32,
    stop: AtomicBool,
    samples: Mutex<Vec<Sample>>,
}

impl Probe {
    fn now(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    /// One sample of the current operator process, if it answers.
    fn take(&self) -> Option<Sample> {
        let pid = self.pid.load(Ordering::SeqCst);
        let port = self.port.load(Ordering::SeqCst) as u16;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (code, text) = http_get(port, "/metrics")?;
        if code != 200 {
            return None;
        }
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        Some(Sample {
            at: self.now(),
            process: self.process.load(Ordering::SeqCst),
            rss_mib: bench::proc_status_mib(&status, "VmRSS")?,
            hwm_mib: bench::proc_status_mib(&status, "VmHWM")?,
            cpu_s: bench::proc_stat_ticks(&stat)? as f64 / ticks,
            requests: bench::sum_by_label(&text, "sluice_api_requests_total", "verb", &[]),
            reconciles: bench::sum_by_label(&text, "sluice_reconcile_total", "kind", &[])
                .get("ReplicationSource")
                .copied()
                .unwrap_or(0.0),
        })
    }

    fn sample_until_stopped(&self) {
        while !self.stop.load(Ordering::SeqCst) {
            let next = Instant::now() + SAMPLE_EVERY;
            if let Some(sample) = self.take() {
                self.samples.lock().unwrap().push(sample);
            }
            while Instant::now() < next && !self.stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    fn last(&self) -> Option<Sample> {
        self.samples.lock().unwrap().last().cloned()
    }
}

/// What the benchmark's own watches saw.
#[derive(Default)]
struct Seen {
    /// Each load source's first due time (`nextSyncTime` before its first sync).
    due: HashMap<(String, String), Timestamp>,
    /// Each load source's first Job's creation.
    jobs: HashMap<(String, String), Timestamp>,
    /// The bounded source's serialized status after each sync it finished, and its conditions.
    bounded_sizes: Vec<usize>,
    bounded_last_sync: Option<String>,
    /// When each of the bounded source's syncs was seen ending.
    bounded_ends: Vec<Instant>,
    bounded_conditions: usize,
    /// Mover Pods of the bounded source ended by the benchmark.
    terminated: BTreeSet<String>,
}

async fn run(cluster: &Cluster, config: &Config, started: Instant) -> anyhow::Result<Summary> {
    let client = sluice_e2e::cluster::client(cluster.kubeconfig()).await?;
    let (schedule, cycle) = bench::schedule_for(config.sources, STARTS_PER_MINUTE);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let sources_ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("sluice.dev", "v1alpha1", "ReplicationSource"),
        "replicationsources",
    );
    tokio::spawn(watch_sources(
        client.clone(),
        sources_ar.clone(),
        seen.clone(),
    ));
    tokio::spawn(watch_jobs(client.clone(), seen.clone()));
    tokio::spawn(end_bounded_movers(
        client.clone(),
        seen.clone(),
        config.syncs,
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let baseline_watches = apiserver_watches(cluster);

    let probe = Arc::new(Probe {
        t0: started,
        pid: AtomicU32::new(0),
        port: AtomicU32::new(0),
        process: AtomicU32::new(0),
        stop: AtomicBool::new(false),
        samples: Mutex::new(Vec::new()),
    });
    let mut operator = start_operator(cluster, config, &probe, 0);
    let sampler = {
        let probe = probe.clone();
        std::thread::spawn(move || probe.sample_until_stopped())
    };
    eprintln!(
        "bench: operator {} running; creating {} sources on {schedule:?} (plus 1 for {} syncs)",
        config.operator.display(),
        config.sources,
        config.syncs
    );

    let create_start = probe.now();
    create_sources(&client, &sources_ar, config.sources, &schedule).await?;
    create_bounded(&client, &sources_ar).await?;
    let create_end = probe.now();
    eprintln!(
        "bench: {} sources and Secrets created in {:.0}s",
        config.sources,
        create_end - create_start
    );

    // The burst: until every load source has its Job, or the cycle and 5 minutes passed.
    let give_up = create_end + f64::from(cycle) * 60.0 + 300.0;
    let mut shown = create_end;
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let jobs = seen.lock().unwrap().jobs.len();
        if jobs >= config.sources || probe.now() > give_up {
            break;
        }
        if probe.now() - shown >= 60.0 {
            shown = probe.now();
            let last = probe.last().unwrap_or_default();
            eprintln!(
                "bench: {:.0}s: {jobs}/{} Jobs, RSS {:.0} MiB, {:.0} CPU-s",
                probe.now(),
                config.sources,
                last.rss_mib,
                last.cpu_s
            );
        }
    }
    let burst_end = probe.now();
    eprintln!(
        "bench: burst over at {burst_end:.0}s; steady for {}s",
        config.steady.as_secs()
    );

    tokio::time::sleep(config.steady / 2).await;
    let watches_seen = apiserver_watches(cluster).saturating_sub(baseline_watches);
    let operator_watches = operator_watches(&probe);
    tokio::time::sleep(config.steady / 2).await;
    let steady_end = probe.now();

    let bounded = count_bounded(&client, &seen, config.syncs).await?;

    eprintln!("bench: restarting the operator");
    operator.stop(Duration::from_secs(10));
    let restart = probe.now();
    operator = start_operator(cluster, config, &probe, 1);
    let resync = wait_resync(&probe, config.sources + 1, restart).await;
    let resync_end = probe.now();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let after_end = probe.now();

    let refusals = Refusals::from_metrics(
        &cluster
            .try_kubectl(&["get", "--raw", "/metrics"])
            .unwrap_or_default(),
    );
    probe.stop.store(true, Ordering::SeqCst);
    sampler.join().expect("sampler thread");
    operator.stop(Duration::from_secs(10));

    let samples = probe.samples.lock().unwrap().clone();
    let seen = seen.lock().unwrap();
    let window = |process, from, to| Window { process, from, to };
    let burst = window(0, create_end, burst_end);
    let steady = window(0, burst_end, steady_end);
    let resyncing = window(1, restart, resync_end);
    let after = window(1, resync_end, after_end);

    let latencies: Vec<f64> = seen
        .jobs
        .iter()
        .filter_map(|(key, created)| {
            let due = seen.due.get(key)?;
            Some(created.duration_since(*due).as_secs_f64())
        })
        .collect();
    let starts: Vec<i64> = seen.jobs.values().map(|t| t.as_second()).collect();
    let per_minute = bench::per_minute(&starts);
    let steady_minutes = (steady.to - steady.from) / 60.0;
    let steady_cpu_per_min = bench::cpu_seconds(&samples, steady) / steady_minutes.max(1e-9);
    let burst_cpu = bench::cpu_seconds(&samples, burst);
    let summary = Summary {
        sources: config.sources,
        schedule: schedule.clone(),
        rss_peak_mib: bench::peak_rss(&samples),
        rss_steady_mib: bench::median_rss(&samples, steady).unwrap_or(0.0),
        cpu_s_per_schedule_hour: bench::cpu_per_hour(
            burst_cpu,
            (burst.to - burst.from) / 60.0,
            steady_cpu_per_min,
        ),
        steady_by_verb: bench::rate_per_minute(&samples, steady),
        burst_by_verb: bench::busiest_minute(&samples, burst),
        watches: operator_watches,
        due_to_job_p50_s: bench::percentile(&latencies, 50.0),
        due_to_job_p99_s: bench::percentile(&latencies, 99.0),
        max_starts_per_minute: per_minute.values().copied().max().unwrap_or(0),
        resync_s: resync,
        bounded: Some(bounded),
        refusals,
    };

    println!(
        "sluice-operator bench: {} sources on {schedule:?} (cycle {cycle} min), operator {}",
        config.sources,
        config.operator.display()
    );
    println!(
        "  created in {:.0}s; starts {:.0}s..{:.0}s; steady {:.0}s..{:.0}s; restart at {:.0}s",
        create_end - create_start,
        burst.from,
        burst.to,
        steady.from,
        steady.to,
        restart
    );
    println!(
        "  RSS: peak {:.1} MiB, steady median {:.1} MiB, after restart {:.1} MiB",
        summary.rss_peak_mib,
        summary.rss_steady_mib,
        bench::median_rss(&samples, after).unwrap_or(0.0)
    );
    println!(
        "  CPU: {burst_cpu:.1} s over the starts ({:.1} min), {steady_cpu_per_min:.2} s/min steady, {:.1} s per hour of schedule; resync {:.1} s",
        (burst.to - burst.from) / 60.0,
        summary.cpu_s_per_schedule_hour,
        bench::cpu_seconds(&samples, resyncing)
    );
    let show = |rates: &BTreeMap<String, f64>| {
        rates
            .iter()
            .map(|(verb, rate)| format!("{verb} {rate:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "  API requests/min: steady {:.0} ({}); busiest minute of the starts {:.0} ({})",
        bench::total(&summary.steady_by_verb),
        show(&summary.steady_by_verb),
        bench::total(&summary.burst_by_verb),
        show(&summary.burst_by_verb)
    );
    println!(
        "  API requests/min during the resync: {}; after it: {}",
        show(&bench::rate_per_minute(&samples, resyncing)),
        show(&bench::rate_per_minute(&samples, after))
    );
    println!(
        "  watches: {operator_watches} resources watched by the operator; the API server's WATCH gauge rose by {watches_seen}"
    );
    println!(
        "  due -> Job: p50 {:.1}s, p99 {:.1}s, max {:.1}s over {} syncs ({} Jobs seen); max {} starts in one minute",
        summary.due_to_job_p50_s.unwrap_or(f64::NAN),
        summary.due_to_job_p99_s.unwrap_or(f64::NAN),
        bench::percentile(&latencies, 100.0).unwrap_or(f64::NAN),
        latencies.len(),
        seen.jobs.len(),
        summary.max_starts_per_minute
    );
    println!(
        "  resync after restart: {}",
        resync.map_or("not finished in 10 min".to_string(), |s| format!("{s:.1}s"))
    );
    if let Some(b) = &summary.bounded {
        println!(
            "  after {} syncs of one source: {} Jobs, {} Pods, {} Events, {} conditions; status {} bytes after the first sync, at most {}",
            b.syncs,
            b.jobs,
            b.pods,
            b.events,
            b.conditions,
            b.status_bytes_first,
            b.status_bytes_max
        );
        println!(
            "  longest time between two of its syncs ending: {:.1}s",
            b.longest_sync_s
        );
    }
    let r = &summary.refusals;
    println!(
        "  refused by the API server as conflicts (409): {} of {} ReplicationSource status applies, {} creates",
        r.status_applies_refused, r.status_applies, r.creates_refused
    );
    Ok(summary)
}

/// Starts operator process `process` (0, then 1 after the restart) and points the probe at it.
fn start_operator(cluster: &Cluster, config: &Config, probe: &Probe, process: u32) -> Daemon {
    let port = free_port();
    let mut command = Command::new(&config.operator);
    command
        .args(["run", "--mover-image", "localhost/sluice:bench"])
        .arg(format!("--http-addr=127.0.0.1:{port}"))
        // A fixed identity: the restarted process takes its own Lease back at once.
        .args(["--lease-namespace", "default", "--identity", "sluice-bench"])
        .env("KUBECONFIG", cluster.kubeconfig())
        .env("RUST_LOG", "info");
    let log = cluster.dir().join(format!("sluice-operator-{process}.log"));
    let mut daemon = Daemon::spawn("sluice-operator", command, &log);
    daemon.wait_ready("serving /readyz", Duration::from_secs(60), || {
        matches!(http_get(port, "/readyz"), Some((200, _)))
    });
    probe.process.store(process, Ordering::SeqCst);
    probe.port.store(u32::from(port), Ordering::SeqCst);
    probe
        .pid
        .store(daemon.pid().expect("a running daemon"), Ordering::SeqCst);
    daemon
}

/// Seconds from `restart` until the new process reconciled `sources` ReplicationSources.
async fn wait_resync(probe: &Probe, sources: usize, restart: f64) -> Option<f64> {
    let deadline = restart + 600.0;
    while probe.now() < deadline {
        if let Some(sample) = probe.take()
            && sample.process == 1
            && sample.reconciles >= sources as f64
        {
            return Some(sample.at - restart);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    None
}

/// Resources the operator opened watches on, from its own request counter.
fn operator_watches(probe: &Probe) -> usize {
    let port = probe.port.load(Ordering::SeqCst) as u16;
    http_get(port, "/metrics")
        .map(|(_, text)| {
            let only = [("verb", "watch")];
            bench::sum_by_label(&text, "sluice_api_requests_total", "resource", &only).len()
        })
        .unwrap_or(0)
}

/// Watches the API server holds open, all clients together.
fn apiserver_watches(cluster: &Cluster) -> usize {
    let text = cluster
        .try_kubectl(&["get", "--raw", "/metrics"])
        .unwrap_or_default();
    let gauges = bench::sum_by_label(&text, "apiserver_longrunning_requests", "verb", &[]);
    gauges.get("WATCH").copied().unwrap_or(0.0) as usize
}

fn namespace_of(index: usize) -> String {
    format!("bench-{:02}", index / PER_NAMESPACE)
}

async fn create_sources(
    client: &kube::Client,
    sources: &ApiResource,
    count: usize,
    schedule: &str,
) -> anyhow::Result<()> {
    let namespaces: BTreeSet<String> = (0..count).map(namespace_of).collect();
    for namespace in &namespaces {
        create_namespace(client, namespace).await?;
    }
    futures::stream::iter(0..count)
        .map(|i| {
            let namespace = namespace_of(i);
            let name = format!("src-{i:05}");
            let source = json!({
                "apiVersion": "sluice.dev/v1alpha1",
                "kind": "ReplicationSource",
                "metadata": {"name": name, "namespace": namespace,
                             "labels": {ROLE: "load"}},
                "spec": {
                    "sourcePVC": format!("data-{i:05}"),
                    "trigger": {"schedule": schedule},
                    "restic": {"repository": format!("repo-{i:05}"), "copyMethod": "Direct",
                               "retain": {"daily": 7}},
                },
            });
            async move {
                create_secret(client, &namespace, &format!("repo-{i:05}"), &name).await?;
                create_source(client, sources, &namespace, source).await
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// The source whose syncs are counted: no trigger, so it syncs again as each sync ends.
async fn create_bounded(client: &kube::Client, sources: &ApiResource) -> anyhow::Result<()> {
    create_namespace(client, BOUNDED_NS).await?;
    create_secret(client, BOUNDED_NS, "repo", "bounded").await?;
    let source = json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "ReplicationSource",
        "metadata": {"name": "bounded", "namespace": BOUNDED_NS,
                     "labels": {ROLE: "bounded"}},
        "spec": {
            "sourcePVC": "data",
            "restic": {"repository": "repo", "copyMethod": "Direct", "retain": {"last": 3}},
        },
    });
    create_source(client, sources, BOUNDED_NS, source).await
}

async fn create_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await?;
    Ok(())
}

async fn create_secret(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    repository: &str,
) -> anyhow::Result<()> {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": namespace},
        "stringData": {
            // Nothing listens there: no mover ever runs.
            "RESTIC_REPOSITORY": format!("s3:http://127.0.0.1:9/bench/{namespace}/{repository}"),
            "RESTIC_PASSWORD": "bench",
        },
    }))?;
    Api::<Secret>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &secret)
        .await?;
    Ok(())
}

async fn create_source(
    client: &kube::Client,
    sources: &ApiResource,
    namespace: &str,
    source: Value,
) -> anyhow::Result<()> {
    let object: DynamicObject = serde_json::from_value(source)?;
    Api::<DynamicObject>::namespaced_with(client.clone(), namespace, sources)
        .create(&PostParams::default(), &object)
        .await?;
    Ok(())
}

fn key_of(meta: &kube::api::ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// Records each load source's first due time, and the bounded source's status after each sync.
async fn watch_sources(client: kube::Client, sources: ApiResource, seen: Arc<Mutex<Seen>>) {
    let api = Api::<DynamicObject>::all_with(client, &sources);
    let config = watcher::Config::default().labels(ROLE);
    let mut stream = watcher(api, config)
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(event) = stream.next().await {
        let Ok(object) = event else { continue };
        let status = object.data.get("status").cloned().unwrap_or(Value::Null);
        let key = key_of(&object.metadata);
        let role = object
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(ROLE))
            .cloned()
            .unwrap_or_default();
        let mut seen = seen.lock().unwrap();
        if role == "load" {
            let first = status.get("lastSyncStartTime").is_none();
            let next = status
                .get("nextSyncTime")
                .and_then(Value::as_str)
                .and_then(|t| t.parse::<Timestamp>().ok());
            if let Some(next) = next
                && first
            {
                seen.due.entry(key).or_insert(next);
            }
        } else {
            // Each sync reports its own snapshot; times have whole seconds, and several of
            // these syncs end within one.
            let last = status
                .pointer("/lastSync/snapshotID")
                .and_then(Value::as_str)
                .map(str::to_string);
            if last.is_some() && last != seen.bounded_last_sync {
                seen.bounded_last_sync = last;
                seen.bounded_sizes.push(status.to_string().len());
                seen.bounded_ends.push(Instant::now());
            }
            seen.bounded_conditions = status
                .get("conditions")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
        }
    }
}

/// Records the creation of each load source's first Job.
async fn watch_jobs(client: kube::Client, seen: Arc<Mutex<Seen>>) {
    let api = Api::<PartialObjectMeta<Job>>::all(client);
    let config = watcher::Config::default().labels("app.kubernetes.io/managed-by=sluice");
    let mut stream = watcher(api, config)
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(event) = stream.next().await {
        let Ok(job) = event else { continue };
        let meta = &job.metadata;
        let (Some(owner), Some(created)) = (
            meta.labels.as_ref().and_then(|l| l.get(OWNER_LABEL)),
            meta.creation_timestamp.as_ref(),
        ) else {
            continue;
        };
        if meta.namespace.as_deref() == Some(BOUNDED_NS) {
            continue;
        }
        let key = (meta.namespace.clone().unwrap_or_default(), owner.clone());
        seen.lock().unwrap().jobs.entry(key).or_insert(created.0);
    }
}

/// Plays the kubelet for the bounded source's first `syncs` mover Pods: ends each with a
/// successful result in its termination message, where the mover's would be.
async fn end_bounded_movers(client: kube::Client, seen: Arc<Mutex<Seen>>, syncs: usize) {
    let pods = Api::<Pod>::namespaced(client, BOUNDED_NS);
    let mut stream = watcher(pods.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(event) = stream.next().await {
        let Ok(pod) = event else { continue };
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ended = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .is_some_and(|statuses| {
                statuses
                    .iter()
                    .any(|s| s.state.as_ref().is_some_and(|s| s.terminated.is_some()))
            });
        {
            let seen = seen.lock().unwrap();
            if ended || seen.terminated.contains(&name) || seen.terminated.len() >= syncs {
                continue;
            }
        }
        // A mover takes seconds; one ending within the second its Job was made would let the
        // next sync's Job (named by the second it starts) collide with this one's, still
        // being deleted.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let n = seen.lock().unwrap().terminated.len();
        let result = json!({
            "snapshotId": format!("{n:064x}"),
            "snapshotTime": Timestamp::now().to_string(),
            "filesNew": 1, "bytesAdded": 100, "totalBytes": 100,
            "unlocked": true, "forgot": true, "pruned": true,
        });
        let patch = json!({"status": {
            "phase": "Succeeded",
            "containerStatuses": [{
                "name": "mover", "image": "localhost/sluice:bench", "imageID": "", "ready": false,
                "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                         "message": result.to_string()}},
            }],
        }});
        match pods
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                seen.lock().unwrap().terminated.insert(name);
            }
            Err(error) => eprintln!("bench: ending mover Pod {name} failed: {error}"),
        }
    }
}

/// Waits (up to 10 minutes) for the bounded source's syncs, then counts what they left.
async fn count_bounded(
    client: &kube::Client,
    seen: &Arc<Mutex<Seen>>,
    syncs: usize,
) -> anyhow::Result<Bounded> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while seen.lock().unwrap().bounded_sizes.len() < syncs && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    // The Jobs of finished syncs are deleted in the background; give the garbage collector a
    // moment with their Pods.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let list = ListParams::default();
    let jobs = Api::<Job>::namespaced(client.clone(), BOUNDED_NS)
        .list(&list)
        .await?;
    let pods = Api::<Pod>::namespaced(client.clone(), BOUNDED_NS)
        .list(&list)
        .await?;
    let events = Api::<Event>::namespaced(client.clone(), BOUNDED_NS)
        .list(&list)
        .await?;
    let seen = seen.lock().unwrap();
    Ok(Bounded {
        syncs: seen.bounded_sizes.len(),
        jobs: jobs
            .items
            .iter()
            .filter(|j| j.metadata.deletion_timestamp.is_none())
            .count(),
        pods: pods
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .count(),
        events: events.items.len(),
        conditions: seen.bounded_conditions,
        status_bytes_first: seen.bounded_sizes.first().copied().unwrap_or(0),
        status_bytes_max: seen.bounded_sizes.iter().copied().max().unwrap_or(0),
        longest_sync_s: seen
            .bounded_ends
            .windows(2)
            .map(|pair| pair[1].duration_since(pair[0]).as_secs_f64())
            .fold(0.0, f64::max),
    })
}
