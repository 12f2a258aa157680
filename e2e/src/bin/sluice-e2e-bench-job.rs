//! `make bench-job`: what one mover Job costs on the real node (issue 15.5), a benchmark and
//! not a test: it reports and never fails on time.
//!
//! It starts the whole stack (control plane, containerd and kubelet, CSI driver, MinIO, the
//! operator from `config/e2e`, with the binaries it was built with: `make bench-job` builds
//! them in release), fills a 1 GiB volume, backs it up once, then runs
//! `SLUICE_BENCH_JOB_SYNCS` manual syncs (default 5) of the unchanged volume. For each it
//! prints where the time went: trigger to Job, Job to Pod, scheduling, the container's start,
//! the mover opening the repository (its one key derivation), the backup, the Pod's end and
//! the status; then the fixed cost (Pod created to repository open, before any byte of the
//! volume is read) and the whole sync as a user waits for it. Cluster steps are seen through
//! watches, the mover's own from the timestamps of its log, on the same clock.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use sluice_e2e::Stack;
use sluice_e2e::job_bench::{Timeline, mover_steps, table};

const NAMESPACE: &str = "bench-job";
const SOURCE: &str = "data";
/// How long one sync may take before the benchmark gives up on it.
const SYNC_TIMEOUT: Duration = Duration::from_secs(300);

/// What the watches saw of one mover Pod.
#[derive(Default)]
struct PodSeen {
    created: Option<Timestamp>,
    scheduled: Option<Timestamp>,
    finished: Option<Timestamp>,
    log: String,
}

/// What the watches saw, by Pod name, and the Jobs' first sightings.
#[derive(Default)]
struct Seen {
    pods: HashMap<String, PodSeen>,
    jobs: Vec<Timestamp>,
}

fn main() -> ExitCode {
    let syncs = match std::env::var("SLUICE_BENCH_JOB_SYNCS") {
        Ok(v) => match v.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!(
                    "sluice-e2e-bench-job: SLUICE_BENCH_JOB_SYNCS={v:?} is not a positive number"
                );
                return ExitCode::from(2);
            }
        },
        Err(_) => 5,
    };
    eprintln!("bench-job: starting the real node, control plane, MinIO and Sluice");
    let started = Instant::now();
    let stack = Stack::start();
    eprintln!(
        "bench-job: stack up in {:.0}s",
        started.elapsed().as_secs_f64()
    );
    stack.namespace(NAMESPACE);
    stack.repository_secret(NAMESPACE, "repo", "bench-job/repo", None);
    let dir = stack.claim(NAMESPACE, SOURCE);
    let bytes = fill(&dir);
    eprintln!("bench-job: wrote {} MiB into the volume", bytes >> 20);

    let seen = Arc::new(Mutex::new(Seen::default()));
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let client = runtime
        .block_on(sluice_e2e::cluster::client(stack.cluster.kubeconfig()))
        .expect("a client for the test cluster");
    runtime.spawn(watch_pods(client.clone(), seen.clone()));
    runtime.spawn(watch_jobs(client, seen.clone()));

    stack.cluster.apply(&format!(
        "apiVersion: sluice.dev/v1alpha1
kind: ReplicationSource
metadata: {{name: {SOURCE}, namespace: {NAMESPACE}}}
spec:
  sourcePVC: {SOURCE}
  trigger: {{manual: first}}
  restic:
    repository: repo
    copyMethod: Direct
    retain: {{last: 10}}
"
    ));
    let mut runs = Vec::new();
    let first = Timestamp::now();
    runs.push((
        format!("first, {} MiB new", bytes >> 20),
        sync(&stack, &seen, "first", first, false),
    ));
    for i in 1..=syncs {
        let value = format!("unchanged-{i}");
        let triggered = Timestamp::now();
        runs.push((
            format!("unchanged {i}"),
            sync(&stack, &seen, &value, triggered, true),
        ));
    }
    let report = table(&runs);
    println!("\n{report}");
    let fixed: Vec<f64> = runs[1..]
        .iter()
        .filter_map(|(_, t)| t.fixed_cost())
        .collect();
    let whole: Vec<f64> = runs[1..].iter().filter_map(|(_, t)| t.whole()).collect();
    println!(
        "unchanged volume: fixed cost median {} s, whole sync median {} s ({} syncs)",
        median(&fixed).map_or("n/a".into(), |s| format!("{s:.2}")),
        median(&whole).map_or("n/a".into(), |s| format!("{s:.2}")),
        syncs
    );
    let _ = std::io::stdout().flush();
    ExitCode::SUCCESS
}

/// Sets the manual trigger to `value` (unless it is the initial one) and waits for the sync
/// to finish; returns its timeline.
fn sync(
    stack: &Stack,
    seen: &Mutex<Seen>,
    value: &str,
    triggered: Timestamp,
    patch: bool,
) -> Timeline {
    let object = format!("replicationsource/{SOURCE}");
    if patch {
        stack.cluster.kubectl(&[
            "patch",
            "-n",
            NAMESPACE,
            &object,
            "--type=merge",
            "-p",
            &format!("{{\"spec\":{{\"trigger\":{{\"manual\":\"{value}\"}}}}}}"),
        ]);
    }
    let deadline = Instant::now() + SYNC_TIMEOUT;
    let status_updated = loop {
        let done = stack.get(NAMESPACE, &object, "{.status.lastManualSync}");
        if done == value {
            break Some(Timestamp::now());
        }
        if Instant::now() > deadline {
            eprintln!("bench-job: sync {value} did not finish in {SYNC_TIMEOUT:?}");
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let result = stack.get(NAMESPACE, &object, "{.status.latestMoverStatus.result}");
    // The log follower may still be reading the last lines of a Pod already gone.
    std::thread::sleep(Duration::from_secs(1));
    let seen = seen.lock().expect("seen");
    let mut timeline = Timeline {
        triggered: Some(triggered),
        status_updated,
        job_created: seen.jobs.iter().copied().filter(|t| *t >= triggered).min(),
        ..Timeline::default()
    };
    if let Some(pod) = seen
        .pods
        .values()
        .filter(|p| p.created.is_some_and(|c| c >= triggered))
        .min_by_key(|p| p.created)
    {
        timeline.pod_created = pod.created;
        timeline.pod_scheduled = pod.scheduled;
        timeline.pod_finished = pod.finished;
        mover_steps(&pod.log, &mut timeline);
    }
    eprintln!(
        "bench-job: sync {value}: {result}, whole {:.2}s",
        timeline.whole().unwrap_or(f64::NAN)
    );
    timeline
}

/// 1 GiB as users' volumes hold it: 60 files of 16 MiB and 4,096 of 4 KiB, of pseudo-random
/// bytes (nothing for the compressor to shorten). Returns the bytes written.
fn fill(dir: &std::path::Path) -> u64 {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |buf: &mut [u8]| {
        for chunk in buf.chunks_mut(8) {
            // xorshift64*: fast, and enough to defeat deduplication and compression.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let v = state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    };
    let mut total = 0;
    let mut big = vec![0u8; 16 << 20];
    for i in 0..60 {
        next(&mut big);
        std::fs::write(dir.join(format!("large-{i:02}.bin")), &big).expect("write a large file");
        total += big.len() as u64;
    }
    let small_dir = dir.join("small");
    std::fs::create_dir_all(&small_dir).expect("create small/");
    let mut small = vec![0u8; 4096];
    for i in 0..4096 {
        next(&mut small);
        std::fs::write(small_dir.join(format!("{i:04}")), &small).expect("write a small file");
        total += small.len() as u64;
    }
    total
}

fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// Sluice's mover Jobs and Pods, by the label the operator gives them.
fn mover_selector() -> watcher::Config {
    watcher::Config::default().labels("app.kubernetes.io/component=mover")
}

/// Records when each mover Pod is first seen, bound and finished, and follows its log.
async fn watch_pods(client: Client, seen: Arc<Mutex<Seen>>) {
    let pods: Api<Pod> = Api::namespaced(client, NAMESPACE);
    let mut events = watcher(pods.clone(), mover_selector())
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Ok(Some(pod)) = events.try_next().await {
        let now = Timestamp::now();
        let name = pod.name_any();
        let mut seen_now = seen.lock().expect("seen");
        let record = seen_now.pods.entry(name.clone()).or_insert_with(|| {
            tokio::spawn(follow_log(pods.clone(), name.clone(), seen.clone()));
            PodSeen {
                created: Some(now),
                ..PodSeen::default()
            }
        });
        if pod.spec.as_ref().is_some_and(|s| s.node_name.is_some()) {
            record.scheduled.get_or_insert(now);
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            record.finished.get_or_insert(now);
        }
    }
}

/// Records when each mover Job is first seen.
async fn watch_jobs(client: Client, seen: Arc<Mutex<Seen>>) {
    let jobs: Api<Job> = Api::namespaced(client, NAMESPACE);
    let mut known = std::collections::HashSet::new();
    let mut events = watcher(jobs, mover_selector())
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Ok(Some(job)) = events.try_next().await {
        if known.insert(job.name_any()) {
            seen.lock().expect("seen").jobs.push(Timestamp::now());
        }
    }
}

/// Follows Pod `name`'s log from its container's start to its end, retrying while the
/// container is still being created.
async fn follow_log(pods: Api<Pod>, name: String, seen: Arc<Mutex<Seen>>) {
    let params = LogParams {
        follow: true,
        ..LogParams::default()
    };
    let deadline = Instant::now() + SYNC_TIMEOUT;
    let stream = loop {
        match pods.log_stream(&name, &params).await {
            Ok(stream) => break stream,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err(error) => {
                eprintln!("bench-job: no log of {name}: {error}");
                return;
            }
        }
    };
    let mut lines = stream.lines();
    while let Some(Ok(line)) = lines.next().await {
        if let Some(pod) = seen.lock().expect("seen").pods.get_mut(&name) {
            pod.log.push_str(&line);
            pod.log.push('\n');
        }
    }
}
