//! ReplicationSource reconciles against a real kube-apiserver and kube-controller-manager
//! (`sluice_e2e::Cluster`). No kubelet runs here, so the mover Pod's termination is written
//! through the Pod status API, exactly where a kubelet would write it.

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::{batch::v1::Job, core::v1::Pod};
use kube::{
    Api, Client,
    api::{ListParams, Patch, PatchParams},
    runtime::events::Recorder,
};
use serde_json::json;
use sluice_api::{
    ReplicationSource, ReplicationSourceStatus, conditions, labels, mover_env,
    mover_result::{ErrorClass, MoverResult},
};
use sluice_e2e::Cluster;
use sluice_operator::{
    breaker::{Breakers, ProbePolicy},
    cache::Owned,
    context::Context,
    controller::{self, Wake},
    metrics::Metrics,
    mover,
    queue::{self, Queues},
};

const NAMESPACE: &str = "apps";

fn install(cluster: &Cluster) {
    let crds = format!("{}/../config/crd", env!("CARGO_MANIFEST_DIR"));
    cluster.kubectl(&["apply", "-k", &crds]);
    cluster.wait_established(&["replicationsources.sluice.dev"]);
    cluster.kubectl(&["create", "namespace", NAMESPACE]);
}

fn secret(password: Option<&str>) -> String {
    let password = password
        .map(|p| format!("\n  RESTIC_PASSWORD: {p}"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: repo, namespace: {NAMESPACE}}}\nstringData:\n  RESTIC_REPOSITORY: s3:http://127.0.0.1:9000/bucket{password}\n"
    )
}

const SOURCE: &str = r#"
apiVersion: sluice.dev/v1alpha1
kind: ReplicationSource
metadata: {name: db, namespace: apps}
spec:
  sourcePVC: data
  trigger: {manual: first}
  restic:
    repository: repo
    copyMethod: Direct
    retain: {daily: 7}
"#;

/// A context whose stores watch the cluster as the operator's do (with no controller fed).
async fn context(client: Client) -> Arc<Context> {
    context_probing(client, ProbePolicy::default()).await
}

/// [`context`], with the circuit breaker probing by `probes`.
async fn context_probing(client: Client, probes: ProbePolicy) -> Arc<Context> {
    let (owned, [], watching) = Owned::watch::<0>(&client).await;
    tokio::spawn(watching);
    owned.ready().await;
    Arc::new(Context {
        recorder: Recorder::new(client.clone(), "sluice-operator-test".to_string().into()),
        client,
        metrics: Arc::new(Metrics::default()),
        mover: sluice_operator::job::MoverDefaults {
            image: "sluice-mover:test".into(),
            ..Default::default()
        },
        owned,
        written: Default::default(),
        queues: std::sync::Mutex::new(Queues::new(queue::DEFAULT_MAX_CONCURRENT_JOBS.into())),
        breakers: std::sync::Mutex::new(Breakers::new(probes)),
        wake: Wake::channels([]).0,
    })
}

/// Waits until the operator's store of Pods holds the termination of `job`'s mover, as a
/// reconcile woken by that change would see it.
async fn seen_terminated(ctx: &Context, job: &str) {
    for _ in 0..150 {
        let pods = ctx.owned.pods_of(NAMESPACE, job);
        if pods.iter().any(|pod| mover::result_from_pod(pod).is_some()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the store never saw the mover Pod of {job} terminate");
}

async fn reconcile(api: &Api<ReplicationSource>, ctx: &Arc<Context>) -> ReplicationSource {
    reconcile_named(api, ctx, "db").await
}

async fn reconcile_named(
    api: &Api<ReplicationSource>,
    ctx: &Arc<Context>,
    name: &str,
) -> ReplicationSource {
    let source = api.get(name).await.unwrap();
    sluice_operator::reconcile::reconcile(Arc::new(source), ctx.clone())
        .await
        .expect("reconcile");
    api.get(name).await.unwrap()
}

fn condition(source: &ReplicationSource, type_: &str) -> (String, String) {
    let status = source.status.as_ref().expect("status written");
    let condition = status
        .sync
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} in {status:?}"));
    (condition.status.clone(), condition.reason.clone())
}

async fn mover_jobs(client: &Client) -> Vec<Job> {
    mover_jobs_of(client, "db").await
}

async fn mover_jobs_of(client: &Client, source: &str) -> Vec<Job> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), NAMESPACE);
    let selector = format!("{}={source}", labels::REPLICATION_SOURCE);
    jobs.list(&ListParams::default().labels(&selector))
        .await
        .unwrap()
        .items
}

fn sync_plan(source: &ReplicationSource) -> Option<sluice_api::SyncPlan> {
    source.status.as_ref()?.sync.sync_plan.clone()
}

fn ready_message(source: &ReplicationSource) -> String {
    let status = source.status.as_ref().expect("status written");
    status
        .sync
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::READY)
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// The circuit breaker against the API server: a sync that fails because the repository is
/// unreachable parks the next source's sync without a Job; one probe Job at a time, on its
/// backoff, tests the backend; when one reaches it the parked source starts.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_repository_parks_syncs_until_a_probe_reaches_it() {
    let cluster = Cluster::start();
    install(&cluster);
    let client = sluice_e2e::cluster::client(cluster.kubeconfig())
        .await
        .unwrap();
    let probes = ProbePolicy {
        // Long enough that web is looked at before the first step even on a loaded machine.
        first: Duration::from_secs(5),
        max: Duration::from_secs(20),
    };
    let ctx = context_probing(client.clone(), probes).await;
    let api: Api<ReplicationSource> = Api::namespaced(client.clone(), NAMESPACE);
    cluster.apply(&secret(Some("pw")));
    cluster.apply(SOURCE);
    cluster.apply(&SOURCE.replace("name: db", "name: web"));

    // db's sync fails: the backend cannot be reached.
    reconcile(&api, &ctx).await;
    let plan = sync_plan(&reconcile(&api, &ctx).await).expect("db's sync started");
    let unreachable = MoverResult {
        error_class: Some(ErrorClass::Network),
        message: Some("connection refused by 127.0.0.1:9000".into()),
        ..Default::default()
    };
    terminate_mover_pod(&client, &plan.job_name, 1, &unreachable).await;
    seen_terminated(&ctx, &plan.job_name).await;
    let db = reconcile(&api, &ctx).await;
    assert_eq!(
        condition(&db, conditions::DEGRADED),
        ("True".into(), "NetworkError".into())
    );
    let repository = plan
        .repository
        .clone()
        .expect("the plan names its repository");
    assert!(
        ctx.breakers().is_open(&repository),
        "a network failure opens the breaker"
    );

    // web is due, and parked: no Job, a condition that says why.
    let web = reconcile_named(&api, &ctx, "web").await;
    assert_eq!(sync_plan(&web), None, "a parked sync records no plan");
    assert_eq!(
        condition(&web, conditions::READY),
        ("False".into(), "RepositoryUnavailable".into())
    );
    assert_eq!(condition(&web, conditions::STALLED).0, "False");
    let message = ready_message(&web);
    assert!(
        message.contains("connection refused by 127.0.0.1:9000"),
        "{message}"
    );
    assert!(mover_jobs_of(&client, "web").await.is_empty());

    // At the first step, one probe Job; a second look does not make another.
    tokio::time::sleep(Duration::from_millis(5100)).await;
    reconcile_named(&api, &ctx, "web").await;
    reconcile_named(&api, &ctx, "web").await;
    let jobs = mover_jobs_of(&client, "web").await;
    assert_eq!(jobs.len(), 1, "one probe at a time");
    let probe = jobs[0].metadata.name.clone().unwrap();
    assert!(probe.starts_with("sluice-probe-web-"), "{probe}");
    let env = jobs[0]
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .env
        .clone()
        .unwrap();
    assert!(
        env.iter()
            .any(|v| v.name == mover_env::ACTIONS && v.value.as_deref() == Some("probe")),
        "{env:?}"
    );

    // The probe fails: the breaker stays open and the next probe waits for its step.
    let still_down = MoverResult {
        error_class: Some(ErrorClass::Network),
        message: Some("503 Service Unavailable".into()),
        ..Default::default()
    };
    terminate_mover_pod(&client, &probe, 1, &still_down).await;
    seen_terminated(&ctx, &probe).await;
    let web = reconcile_named(&api, &ctx, "web").await;
    let message = ready_message(&web);
    assert!(
        message.contains("1 probes failed (last: 503 Service Unavailable)"),
        "{message}"
    );
    assert!(ctx.breakers().is_open(&repository));

    // The next probe reaches the backend: web's sync starts.
    tokio::time::sleep(Duration::from_millis(10_100)).await;
    reconcile_named(&api, &ctx, "web").await;
    let jobs: Vec<String> = mover_jobs_of(&client, "web")
        .await
        .into_iter()
        .filter(|job| job.metadata.deletion_timestamp.is_none())
        .filter_map(|job| job.metadata.name)
        .filter(|name| *name != probe)
        .collect();
    assert_eq!(jobs.len(), 1, "the second probe: {jobs:?}");
    let reached = MoverResult {
        message: Some("s3:http://127.0.0.1:9000/bucket answers".into()),
        ..Default::default()
    };
    terminate_mover_pod(&client, &jobs[0], 0, &reached).await;
    seen_terminated(&ctx, &jobs[0]).await;
    let web = reconcile_named(&api, &ctx, "web").await;
    assert!(!ctx.breakers().is_open(&repository), "the probe healed it");
    let plan = sync_plan(&web).expect("the parked sync starts once the probe reaches the backend");
    assert!(
        plan.job_name.starts_with("sluice-src-web-"),
        "{}",
        plan.job_name
    );
    let metrics = ctx.metrics.encode();
    for result in ["unreachable", "reached"] {
        let line = format!(
            "sluice_repository_probes_total{{repository=\"{repository}\",result=\"{result}\"}} 1"
        );
        assert!(metrics.contains(&line), "missing {line} in\n{metrics}");
    }
    assert!(
        !metrics.contains("sluice_repository_unavailable{"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn source_sync_flow_against_the_api_server() {
    let cluster = Cluster::start();
    install(&cluster);
    let client = sluice_e2e::cluster::client(cluster.kubeconfig())
        .await
        .unwrap();
    let ctx = context(client.clone()).await;
    let api: Api<ReplicationSource> = Api::namespaced(client.clone(), NAMESPACE);

    // SecretInvalid: a Secret without RESTIC_PASSWORD is reported and no Job is made.
    cluster.apply(&secret(None));
    cluster.apply(SOURCE);
    let source = reconcile(&api, &ctx).await;
    assert_eq!(
        condition(&source, conditions::DEGRADED),
        ("True".into(), "SecretInvalid".into())
    );
    assert_eq!(condition(&source, conditions::READY).0, "False");
    assert_eq!(
        condition(&source, conditions::STALLED),
        ("True".into(), "SecretInvalid".into())
    );
    assert!(
        mover_jobs(&client).await.is_empty(),
        "no Job may exist while the Secret is invalid"
    );
    // Reconciling again without a change does not retry.
    let again = reconcile(&api, &ctx).await;
    assert_eq!(again.status, source.status);
    assert!(mover_jobs(&client).await.is_empty());

    // Fixing the Secret starts the sync: the plan is in status and the Job has the right spec.
    // metav1.Time has second precision; the fix must land in a later second than the attempt.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    cluster.apply(&secret(Some("pw")));
    // The first reconcile records the plan, the next one makes the Job. That one is handed the
    // object from before the plan, as one woken by a Job or Pod event is while the watch lags
    // the status write: it decides on its own write, not on the older copy (which would start
    // the sync again and be refused as stale).
    let before_start = api.get("db").await.unwrap();
    reconcile(&api, &ctx).await;
    sluice_operator::reconcile::reconcile(Arc::new(before_start), ctx.clone())
        .await
        .expect("reconcile of a cached copy from before the last status write");
    let source = api.get("db").await.unwrap();
    let plan = source
        .status
        .as_ref()
        .unwrap()
        .sync
        .sync_plan
        .clone()
        .expect("sync plan recorded");
    assert_eq!(
        condition(&source, conditions::RECONCILING),
        ("True".into(), "MoverRunning".into())
    );
    let jobs = mover_jobs(&client).await;
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!(job.metadata.name.as_deref(), Some(plan.job_name.as_str()));
    assert_eq!(
        job.metadata.owner_references.as_ref().unwrap()[0].kind,
        "ReplicationSource"
    );
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.backoff_limit, Some(0));
    let pod_spec = spec.template.spec.as_ref().unwrap();
    let container = &pod_spec.containers[0];
    assert_eq!(
        container.command.as_deref().unwrap(),
        ["sluice-mover", "job"]
    );
    let env: Vec<(String, String)> = container
        .env
        .clone()
        .unwrap()
        .into_iter()
        .map(|v| (v.name, v.value.unwrap_or_default()))
        .collect();
    assert!(
        env.contains(&(
            mover_env::ACTIONS.into(),
            "unlock,backup,forget,prune".into()
        )),
        "{env:?}"
    );
    assert!(
        env.contains(&(mover_env::RETAIN_DAILY.into(), "7".into())),
        "{env:?}"
    );
    assert_eq!(
        container.env_from.as_ref().unwrap()[0]
            .secret_ref
            .as_ref()
            .unwrap()
            .name,
        "repo"
    );
    assert_eq!(
        pod_spec.volumes.as_ref().unwrap()[0]
            .persistent_volume_claim
            .as_ref()
            .unwrap()
            .claim_name,
        "data"
    );

    // A second reconcile while the mover runs changes nothing and makes no second Job.
    let running = reconcile(&api, &ctx).await;
    assert_eq!(
        running.status.as_ref().unwrap().sync.sync_plan,
        Some(plan.clone())
    );
    assert_eq!(mover_jobs(&client).await.len(), 1);

    // The real Job controller makes the Pod; play the kubelet's part and end it with a result.
    let result = MoverResult {
        snapshot_id: Some("ab".repeat(32)),
        snapshot_time: Some("2026-11-22T10:00:00Z".into()),
        files_new: 12,
        bytes_added: 4096,
        total_bytes: 8192,
        unlocked: true,
        forgot: true,
        pruned: true,
        ..Default::default()
    };
    terminate_mover_pod(&client, &plan.job_name, 0, &result).await;
    seen_terminated(&ctx, &plan.job_name).await;

    let done = reconcile(&api, &ctx).await;
    let status = done.status.clone().unwrap();
    assert_eq!(status.sync.sync_plan, None, "the sync ended");
    assert_eq!(status.sync.last_manual_sync.as_deref(), Some("first"));
    let last = status
        .last_sync
        .clone()
        .expect("lastSync filled from the result");
    assert_eq!(last.snapshot_id, "ab".repeat(32));
    assert_eq!(
        (last.files_new, last.bytes_added, last.total_bytes),
        (12, 4096, 8192)
    );
    assert!(
        status.restic.unwrap().last_pruned.is_some(),
        "prune ran, so lastPruned is stamped"
    );
    assert!(status.sync.last_sync_time.is_some() && status.sync.last_sync_duration.is_some());
    assert_eq!(
        condition(&done, conditions::READY),
        ("True".into(), "SyncSucceeded".into())
    );
    assert_eq!(condition(&done, conditions::DEGRADED).0, "False");

    // The Job is cleaned up, and the next reconcile waits for a new manual value.
    for _ in 0..50 {
        let left: Vec<Job> = mover_jobs(&client)
            .await
            .into_iter()
            .filter(|j| j.metadata.deletion_timestamp.is_none())
            .collect();
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        mover_jobs(&client)
            .await
            .iter()
            .all(|j| j.metadata.deletion_timestamp.is_some()),
        "the Job was deleted"
    );
    let idle = reconcile(&api, &ctx).await;
    assert_eq!(
        condition(&idle, conditions::RECONCILING),
        ("False".into(), "WaitingForManual".into())
    );
    let text = ctx.metrics.encode();
    assert!(text.contains(r#"sluice_sync_bytes_added_total{kind="ReplicationSource",namespace="apps",name="db"} 4096"#), "{text}");
    assert!(text.contains(r#"reason="SecretInvalid""#), "{text}");

    // A failure that retrying can fix, on a manual trigger, retries on the backoff only: a
    // reconcile before the retry time starts nothing, however often it runs.
    cluster.kubectl(&[
        "patch",
        "replicationsource",
        "db",
        "-n",
        NAMESPACE,
        "--type=merge",
        "-p",
        r#"{"spec":{"trigger":{"manual":"second"}}}"#,
    ]);
    let started = reconcile(&api, &ctx).await;
    let started_copy = started.clone();
    let plan = started
        .status
        .unwrap()
        .sync
        .sync_plan
        .expect("second sync planned");
    reconcile(&api, &ctx).await;
    let failed = MoverResult {
        error_class: Some(ErrorClass::Network),
        message: Some("connection refused".into()),
        ..Default::default()
    };
    terminate_mover_pod(&client, &plan.job_name, 1, &failed).await;
    seen_terminated(&ctx, &plan.job_name).await;
    let failed = reconcile(&api, &ctx).await;
    let status = failed.status.clone().unwrap();
    assert_eq!(
        condition(&failed, conditions::READY),
        ("False".into(), "NetworkError".into())
    );
    assert_eq!(status.sync.consecutive_failures, Some(1));
    let retry_at = status
        .sync
        .next_sync_time
        .clone()
        .expect("a retry is planned")
        .0;
    let wait = retry_at
        .duration_since(jiff::Timestamp::now())
        .as_secs_f64();
    assert!(
        (20.0..=31.0).contains(&wait),
        "first retry after ~30 s, not {wait} s"
    );
    // A status decided on a cache that is behind is refused, never applied over newer fields:
    // here, a status without the failure (and with the plan) decided on the object as it was
    // while the second sync ran.
    let stale = started_copy;
    let decided = stale.status.clone().unwrap_or_default();
    let before = api.get("db").await.unwrap();
    let applied =
        controller::write_status(&ctx, &stale, &ReplicationSourceStatus::default(), &decided)
            .await
            .expect("a refused write is not an error");
    assert!(
        !applied,
        "the API server refuses a status decided on an old version"
    );
    assert_eq!(api.get("db").await.unwrap().status, before.status);

    for _ in 0..3 {
        let again = reconcile(&api, &ctx).await;
        assert_eq!(
            again.status.as_ref().unwrap().sync.sync_plan,
            None,
            "no sync before {retry_at}"
        );
        assert_eq!(again.status.unwrap().sync.consecutive_failures, Some(1));
    }
}

/// Plays the kubelet: waits for the Job controller to create the mover Pod of `job`, then
/// writes its container's termination with `result` as the message.
async fn terminate_mover_pod(client: &Client, job: &str, exit_code: i32, result: &MoverResult) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let selector = ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}"));
    let mut pod = None;
    for _ in 0..150 {
        pod = pods.list(&selector).await.unwrap().items.into_iter().next();
        if pod.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pod = pod.expect("kube-controller-manager created the mover Pod");
    let phase = if exit_code == 0 {
        "Succeeded"
    } else {
        "Failed"
    };
    let terminated = json!({"status": {
        "phase": phase,
        "containerStatuses": [{
            "name": "mover", "image": "sluice-mover:test", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": exit_code, "reason": "Completed", "message": result.to_termination_message()}},
        }],
    }});
    pods.patch_status(
        &pod.metadata.name.clone().unwrap(),
        &PatchParams::default(),
        &Patch::Merge(&terminated),
    )
    .await
    .unwrap();
}
