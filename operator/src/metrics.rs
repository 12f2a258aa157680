//! Prometheus metrics, per ReplicationSource/Destination and for the controllers themselves.
//!
//! Labels are `kind`, `namespace`, `name` so alerts point at the object to look at; failures add
//! the condition `reason`, the same word users see in `kubectl describe`.

use std::sync::atomic::AtomicU64;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// Identifies one ReplicationSource or ReplicationDestination.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabels {
    /// `ReplicationSource` or `ReplicationDestination`.
    pub kind: String,
    /// The object's namespace.
    pub namespace: String,
    /// The object's name.
    pub name: String,
}

/// An object and the reason one of its syncs failed.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// `ReplicationSource` or `ReplicationDestination`.
    pub kind: String,
    /// The object's namespace.
    pub namespace: String,
    /// The object's name.
    pub name: String,
    /// Condition reason of the failure.
    pub reason: String,
}

/// One kind of request the operator makes to the API server.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, ...
    pub verb: String,
    /// The resource and subresource, e.g. `replicationsources/status`.
    pub resource: String,
}

/// One repository's syncs in one state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RepositoryLabels {
    /// The repository's normalised URL, without credentials.
    pub repository: String,
    /// `running` or `queued`.
    pub state: String,
}

/// One repository, for the circuit breaker's series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BreakerLabels {
    /// The repository's normalised URL, without credentials.
    pub repository: String,
}

/// A probe's repository and how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    /// The repository's normalised URL, without credentials.
    pub repository: String,
    /// `reached` or `unreachable`.
    pub result: String,
}

/// A PVC the volume populator filled or failed to fill, and how.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PopulationLabels {
    /// The PVC's namespace.
    pub namespace: String,
    /// The PVC's name.
    pub name: String,
    /// The `sluice.dev/Populated` reason: `SnapshotRestored`, `EmptyNoRepository`, a failure's.
    pub reason: String,
}

/// Which controller a reconcile belongs to.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// `ReplicationSource` or `ReplicationDestination`.
    pub kind: String,
}

type TimestampGauge = Gauge<f64, AtomicU64>;

/// All metrics the operator exports, registered once at startup.
pub struct Metrics {
    registry: Registry,
    last_success: Family<ObjectLabels, TimestampGauge>,
    last_failure: Family<ObjectLabels, TimestampGauge>,
    last_prune: Family<ObjectLabels, TimestampGauge>,
    prune_interval: Family<ObjectLabels, Gauge>,
    last_verification: Family<ObjectLabels, TimestampGauge>,
    verification_mismatched: Family<ObjectLabels, Gauge>,
    duration: Family<ObjectLabels, Histogram, fn() -> Histogram>,
    bytes_added: Family<ObjectLabels, Counter>,
    snapshot_bytes: Family<ObjectLabels, Gauge>,
    in_progress: Family<ObjectLabels, Gauge>,
    missed: Family<ObjectLabels, Counter>,
    out_of_sync: Family<ObjectLabels, Gauge>,
    failures: Family<FailureLabels, Counter>,
    reconciles: Family<ControllerLabels, Counter>,
    reconcile_errors: Family<ControllerLabels, Counter>,
    api_requests: Family<RequestLabels, Counter>,
    repository_syncs: Family<RepositoryLabels, Gauge>,
    repository_unavailable: Family<BreakerLabels, Gauge>,
    repository_probes: Family<ProbeLabels, Counter>,
    populations: Family<PopulationLabels, Counter>,
}

fn sync_duration_histogram() -> Histogram {
    // From ten seconds to about a day: small volumes to multi-terabyte first backups.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        10.0, 3.0, 10,
    ))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sluice");
        let metrics = Self {
            registry: Registry::default(),
            last_success: Family::default(),
            last_failure: Family::default(),
            last_prune: Family::default(),
            prune_interval: Family::default(),
            last_verification: Family::default(),
            verification_mismatched: Family::default(),
            duration: Family::new_with_constructor(sync_duration_histogram),
            bytes_added: Family::default(),
            snapshot_bytes: Family::default(),
            in_progress: Family::default(),
            missed: Family::default(),
            out_of_sync: Family::default(),
            failures: Family::default(),
            reconciles: Family::default(),
            reconcile_errors: Family::default(),
            api_requests: Family::default(),
            repository_syncs: Family::default(),
            repository_unavailable: Family::default(),
            repository_probes: Family::default(),
            populations: Family::default(),
        };
        registry.register(
            "sync_last_success_timestamp_seconds",
            "Unix time the last sync succeeded",
            metrics.last_success.clone(),
        );
        registry.register(
            "sync_last_failure_timestamp_seconds",
            "Unix time the last sync failed",
            metrics.last_failure.clone(),
        );
        registry.register(
            "prune_last_timestamp_seconds",
            "Unix time a prune last completed",
            metrics.last_prune.clone(),
        );
        registry.register(
            "prune_interval_seconds",
            "Configured time between prunes",
            metrics.prune_interval.clone(),
        );
        registry.register(
            "verification_last_timestamp_seconds",
            "Unix time the last restore test (spec.restic.verify) finished",
            metrics.last_verification.clone(),
        );
        registry.register(
            "verification_files_mismatched",
            "Files the last restore test could not restore as the snapshot records them; 0 when it passed",
            metrics.verification_mismatched.clone(),
        );
        registry.register(
            "sync_duration_seconds",
            "Wall-clock duration of successful syncs",
            metrics.duration.clone(),
        );
        registry.register(
            "sync_bytes_added",
            "Bytes of new data stored in the repository",
            metrics.bytes_added.clone(),
        );
        registry.register(
            "snapshot_size_bytes",
            "Bytes of file content in the latest snapshot a backup wrote",
            metrics.snapshot_bytes.clone(),
        );
        registry.register(
            "sync_in_progress",
            "1 from the start of a sync (its plan recorded) until its end: queued for a snapshot, a volume, a node or a lock, or running",
            metrics.in_progress.clone(),
        );
        registry.register(
            "sync_missed_intervals",
            "Scheduled syncs that were skipped and collapsed into a later one",
            metrics.missed.clone(),
        );
        registry.register(
            "volume_out_of_sync",
            "1 while the last sync failed or scheduled syncs were missed",
            metrics.out_of_sync.clone(),
        );
        registry.register(
            "sync_failures",
            "Failed syncs by condition reason",
            metrics.failures.clone(),
        );
        registry.register(
            "reconcile",
            "Reconciles started",
            metrics.reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that returned an error",
            metrics.reconcile_errors.clone(),
        );
        registry.register(
            "api_requests",
            "Requests the operator sent to the API server, by verb and resource",
            metrics.api_requests.clone(),
        );
        registry.register(
            "repository_syncs",
            "Syncs running into each repository, and waiting for it (--max-concurrent-jobs)",
            metrics.repository_syncs.clone(),
        );
        registry.register(
            "repository_unavailable",
            "1 while a repository's circuit breaker is open: its backend was unreachable and syncs into it are parked without Jobs",
            metrics.repository_unavailable.clone(),
        );
        registry.register(
            "repository_probes",
            "Probe Jobs of open circuit breakers, by whether they reached the backend",
            metrics.repository_probes.clone(),
        );
        registry.register(
            "populations",
            "PVCs the volume populator filled (reason SnapshotRestored, EmptyNoSnapshot, EmptyNoRepository) or failed to fill (the failure's reason)",
            metrics.populations.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }
}

impl Metrics {
    /// Records that a sync started: it is queued or running until [`Metrics::sync_ended`].
    /// The duration and bytes-added series exist from the first start, at zero: `increase()`
    /// over a series that appears with its first sample counts nothing, so a dashboard would
    /// miss the first sync of every object.
    pub fn sync_started(&self, object: &ObjectLabels) {
        self.in_progress.get_or_create(object).set(1);
        let _ = self.duration.get_or_create(object);
        let _ = self.bytes_added.get_or_create(object);
    }

    /// Records that the volume populator filled PVC `namespace/name`, or failed to, for `reason`.
    pub fn population_ended(&self, namespace: &str, name: &str, reason: &str) {
        let labels = PopulationLabels {
            namespace: namespace.to_string(),
            name: name.to_string(),
            reason: reason.to_string(),
        };
        self.populations.get_or_create(&labels).inc();
    }

    /// Records that a sync ended, whatever its outcome.
    pub fn sync_ended(&self, object: &ObjectLabels) {
        self.in_progress.get_or_create(object).set(0);
    }

    /// Records a successful sync that took `seconds` and stored `bytes_added`; a backup also
    /// gives the size of the snapshot it wrote.
    pub fn sync_succeeded(
        &self,
        object: &ObjectLabels,
        at_unix: f64,
        seconds: f64,
        bytes_added: u64,
        snapshot_bytes: Option<u64>,
    ) {
        if let Some(bytes) = snapshot_bytes {
            self.snapshot_bytes
                .get_or_create(object)
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        self.last_success.get_or_create(object).set(at_unix);
        self.duration.get_or_create(object).observe(seconds);
        self.bytes_added.get_or_create(object).inc_by(bytes_added);
        self.out_of_sync.get_or_create(object).set(0);
    }

    /// Records a failed sync (or one that could not start) for `reason`.
    pub fn sync_failed(&self, object: &ObjectLabels, at_unix: f64, reason: &str) {
        self.last_failure.get_or_create(object).set(at_unix);
        self.out_of_sync.get_or_create(object).set(1);
        let labels = FailureLabels {
            kind: object.kind.clone(),
            namespace: object.namespace.clone(),
            name: object.name.clone(),
            reason: reason.to_string(),
        };
        self.failures.get_or_create(&labels).inc();
    }

    /// Records scheduled syncs that were skipped.
    pub fn missed(&self, object: &ObjectLabels, count: u64) {
        if count > 0 {
            self.missed.get_or_create(object).inc_by(count);
            self.out_of_sync.get_or_create(object).set(1);
        }
    }

    /// Records the repository maintenance state of a source.
    pub fn prune_state(
        &self,
        object: &ObjectLabels,
        last_unix: Option<f64>,
        interval_seconds: i64,
    ) {
        if let Some(last) = last_unix {
            self.last_prune.get_or_create(object).set(last);
        }
        self.prune_interval
            .get_or_create(object)
            .set(interval_seconds);
    }

    /// Records the last restore test of a source: when it finished and how many files did not
    /// restore as recorded.
    pub fn verification(&self, object: &ObjectLabels, finished_unix: f64, mismatched: u64) {
        self.last_verification
            .get_or_create(object)
            .set(finished_unix);
        self.verification_mismatched
            .get_or_create(object)
            .set(i64::try_from(mismatched).unwrap_or(i64::MAX));
    }

    /// Counts a reconcile of `kind`.
    pub fn reconciled(&self, kind: &str) {
        self.reconciles
            .get_or_create(&ControllerLabels {
                kind: kind.to_string(),
            })
            .inc();
    }

    /// Counts a reconcile of `kind` that failed.
    pub fn reconcile_failed(&self, kind: &str) {
        self.reconcile_errors
            .get_or_create(&ControllerLabels {
                kind: kind.to_string(),
            })
            .inc();
    }

    /// Counts one request to the API server.
    pub fn api_request(&self, verb: &str, resource: &str) {
        self.api_requests
            .get_or_create(&RequestLabels {
                verb: verb.to_string(),
                resource: resource.to_string(),
            })
            .inc();
    }

    /// Sets the syncs running and queued of every repository that has any; the others' series
    /// go.
    pub fn repository_loads(&self, loads: &[(String, usize, usize)]) {
        self.repository_syncs.clear();
        for (repository, running, queued) in loads {
            for (state, count) in [("running", running), ("queued", queued)] {
                let labels = RepositoryLabels {
                    repository: repository.clone(),
                    state: state.to_string(),
                };
                let count = i64::try_from(*count).unwrap_or(i64::MAX);
                self.repository_syncs.get_or_create(&labels).set(count);
            }
        }
    }

    /// Sets the open circuit breakers: 1 for each repository in `open`, the others' series go.
    pub fn repositories_unavailable(&self, open: &[String]) {
        self.repository_unavailable.clear();
        for repository in open {
            let labels = BreakerLabels {
                repository: repository.clone(),
            };
            self.repository_unavailable.get_or_create(&labels).set(1);
        }
    }

    /// Counts a probe into `repository` that ended, reaching its backend or not.
    pub fn probe_ended(&self, repository: &str, reached: bool) {
        let labels = ProbeLabels {
            repository: repository.to_string(),
            result: if reached { "reached" } else { "unreachable" }.to_string(),
        };
        self.repository_probes.get_or_create(&labels).inc();
    }

    /// Drops every series of a deleted object, so alerts do not fire for it forever.
    pub fn forget(&self, object: &ObjectLabels) {
        self.last_success.remove(object);
        self.last_failure.remove(object);
        self.last_prune.remove(object);
        self.prune_interval.remove(object);
        self.last_verification.remove(object);
        self.verification_mismatched.remove(object);
        self.duration.remove(object);
        self.bytes_added.remove(object);
        self.snapshot_bytes.remove(object);
        self.in_progress.remove(object);
        self.missed.remove(object);
        self.out_of_sync.remove(object);
    }

    /// The OpenMetrics text exposition served on `/metrics`.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> ObjectLabels {
        ObjectLabels {
            kind: "ReplicationSource".into(),
            namespace: "apps".into(),
            name: "db".into(),
        }
    }

    #[test]
    fn a_started_sync_has_its_duration_and_bytes_at_zero() {
        let metrics = Metrics::default();
        metrics.sync_started(&db());
        let text = metrics.encode();
        let labels = r#"kind="ReplicationSource",namespace="apps",name="db""#;
        for line in [
            format!("sluice_sync_bytes_added_total{{{labels}}} 0"),
            format!("sluice_sync_duration_seconds_count{{{labels}}} 0"),
        ] {
            assert!(text.contains(&line), "{line} missing:\n{text}");
        }
    }

    #[test]
    fn populations_are_counted_by_pvc_and_reason() {
        let metrics = Metrics::default();
        metrics.population_ended("app", "data", "WrongPassword");
        metrics.population_ended("app", "data", "SnapshotRestored");
        let text = metrics.encode();
        for reason in ["WrongPassword", "SnapshotRestored"] {
            let line = format!(
                r#"sluice_populations_total{{namespace="app",name="data",reason="{reason}"}} 1"#
            );
            assert!(text.contains(&line), "{line} missing:\n{text}");
        }
    }

    #[test]
    fn exposition_names_the_object_and_reason() {
        let metrics = Metrics::default();
        metrics.sync_started(&db());
        assert!(metrics.encode().contains(
            r#"sluice_sync_in_progress{kind="ReplicationSource",namespace="apps",name="db"} 1"#
        ));
        metrics.sync_succeeded(&db(), 1_700_000_000.0, 42.0, 1000, Some(5000));
        metrics.sync_ended(&db());
        metrics.sync_failed(&db(), 1_700_000_100.0, "WrongPassword");
        metrics.missed(&db(), 2);
        metrics.reconciled("ReplicationSource");
        let text = metrics.encode();
        let labels = r#"kind="ReplicationSource",namespace="apps",name="db""#;
        for line in [
            format!("sluice_sync_last_success_timestamp_seconds{{{labels}}} 1700000000.0"),
            format!("sluice_sync_bytes_added_total{{{labels}}} 1000"),
            format!("sluice_sync_missed_intervals_total{{{labels}}} 2"),
            format!("sluice_snapshot_size_bytes{{{labels}}} 5000"),
            format!("sluice_sync_in_progress{{{labels}}} 0"),
            format!("sluice_volume_out_of_sync{{{labels}}} 1"),
            format!("sluice_sync_failures_total{{{labels},reason=\"WrongPassword\"}} 1"),
            format!("sluice_sync_duration_seconds_count{{{labels}}} 1"),
            r#"sluice_reconcile_total{kind="ReplicationSource"} 1"#.to_string(),
        ] {
            assert!(text.contains(&line), "missing {line} in\n{text}");
        }
        metrics.forget(&db());
        assert!(!metrics.encode().contains("sluice_volume_out_of_sync{"));
    }

    #[test]
    fn repository_gauges_follow_the_queues() {
        let metrics = Metrics::default();
        metrics.repository_loads(&[("s3:http://minio:9000/b".into(), 4, 2)]);
        let text = metrics.encode();
        for line in [
            r#"sluice_repository_syncs{repository="s3:http://minio:9000/b",state="running"} 4"#,
            r#"sluice_repository_syncs{repository="s3:http://minio:9000/b",state="queued"} 2"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        metrics.repository_loads(&[]);
        assert!(!metrics.encode().contains("sluice_repository_syncs{"));
    }

    #[test]
    fn breaker_series_follow_the_open_repositories_and_count_probes() {
        let metrics = Metrics::default();
        let repository = "s3:http://minio:9000/b".to_string();
        metrics.repositories_unavailable(std::slice::from_ref(&repository));
        metrics.probe_ended(&repository, false);
        metrics.probe_ended(&repository, false);
        metrics.probe_ended(&repository, true);
        let text = metrics.encode();
        for line in [
            r#"sluice_repository_unavailable{repository="s3:http://minio:9000/b"} 1"#,
            r#"sluice_repository_probes_total{repository="s3:http://minio:9000/b",result="unreachable"} 2"#,
            r#"sluice_repository_probes_total{repository="s3:http://minio:9000/b",result="reached"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        metrics.repositories_unavailable(&[]);
        assert!(!metrics.encode().contains("sluice_repository_unavailable{"));
    }
}
