//! Nothing in a ReplicationSource's status grows per sync (issue 17.5): one source is driven
//! through 100 syncs by the same pure steps a reconcile takes ([`decide`], the kind's
//! `record`, [`status::transition`]), on an hourly schedule, with every seventh sync failing
//! and retried on its backoff, and its serialized status is measured after each.

use jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use sluice_api::{
    ReplicationSource, ReplicationSourceStatus, SyncPlan,
    mover_result::{ErrorClass, MoverResult},
};
use sluice_operator::{
    decide::{self, Decision, Mount, Observed, Phase, Progress, SecretSeen, Spec, Step},
    reconcile::{Finished, Kind},
    spread::Identity,
    status::{self, Moment},
};

const SYNCS: usize = 100;

fn source() -> ReplicationSource {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "ReplicationSource",
        "metadata": {"name": "db", "namespace": "apps", "generation": 1,
                     "creationTimestamp": "2026-11-22T09:30:00Z"},
        "spec": {
            "sourcePVC": "data",
            "trigger": {"schedule": "H * * * *"},
            "restic": {"repository": "repo", "copyMethod": "Snapshot",
                       "retain": {"hourly": 24, "daily": 7}},
        },
    }))
    .expect("a valid ReplicationSource")
}

/// One source and its status, as the API server would hold them between reconciles.
struct World {
    source: ReplicationSource,
    status: ReplicationSourceStatus,
    now: Timestamp,
}

impl World {
    /// One reconcile: decide on `phase`, record what a finished sync records, apply the
    /// transition. `plan` is the plan a `Start` records.
    fn reconcile(&mut self, phase: Phase, plan: Option<&SyncPlan>) -> Decision {
        let trigger = self.source.spec.trigger.clone();
        let decision = decide::decide(&Observed {
            now: self.now,
            spec: Spec {
                generation: self.source.metadata.generation,
                created: self
                    .source
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0),
                paused: false,
                trigger: trigger.as_ref(),
                untriggered: decide::Untriggered::Continuously,
                identity: Identity::of("apps", &self.source.name_any()),
                invalid: None,
            },
            status: &self.status.sync,
            phase,
        });
        let in_progress = self.status.sync.sync_plan.clone();
        let plan = match decision {
            Decision::Start { .. } => plan.cloned(),
            _ => in_progress,
        };
        let summary = match (&decision, &plan) {
            (Decision::Finish(outcome), Some(plan)) => {
                let finished = Finished {
                    plan,
                    outcome,
                    now: self.now,
                };
                self.source.record(&mut self.status, &finished).summary
            }
            _ => String::new(),
        };
        let moment = Moment {
            now: self.now,
            generation: self.source.metadata.generation,
            noun: "sync",
            plan: plan.as_ref(),
            manual_trigger: false,
            summary: &summary,
        };
        status::transition(&mut self.status.sync, &decision, &moment);
        decision
    }

    fn idle(&mut self, secret: bool) -> Decision {
        let seen = secret.then(|| SecretSeen {
            modified: Some("2026-11-22T09:00:00Z".parse().unwrap()),
            unusable: None,
            repository: Some("s3:http://minio:9000/backups".into()),
        });
        self.reconcile(Phase::Idle { secret: seen }, None)
    }

    /// Waits out the schedule or a backoff, then starts the sync.
    fn start(&mut self) {
        loop {
            match self.idle(false) {
                Decision::WaitForSchedule(at) | Decision::BackingOff(at) => self.now = at,
                Decision::ReadSecret => break,
                other => panic!("between syncs at {}: {other:?}", self.now),
            }
        }
        let mut plan = self.source.plan(self.now);
        plan.repository = Some("s3:http://minio:9000/backups".into());
        let seen = SecretSeen {
            modified: Some("2026-11-22T09:00:00Z".parse().unwrap()),
            unusable: None,
            repository: plan.repository.clone(),
        };
        let decision = self.reconcile(Phase::Idle { secret: Some(seen) }, Some(&plan));
        assert!(
            matches!(decision, Decision::Start { .. }),
            "a due sync starts: {decision:?}"
        );
        // The cluster's object now carries the status written so far.
        self.source.status = Some(self.status.clone());
    }

    fn during(&mut self, progress: Progress) -> Decision {
        let plan = self
            .status
            .sync
            .sync_plan
            .clone()
            .expect("a sync in progress");
        let decision = self.reconcile(
            Phase::Syncing {
                plan: &plan,
                progress: Box::new(progress),
            },
            None,
        );
        self.source.status = Some(self.status.clone());
        decision
    }

    /// Runs the started sync to its end: the copy, the Job, the mover's result.
    fn finish(&mut self, fails: bool) {
        let mount = Mount {
            claim: "copy".into(),
            node: None,
            block: false,
            scratch: None,
        };
        let created = self.during(Progress::Preparing(Step::Ready(mount)));
        assert!(matches!(created, Decision::CreateJob(_)), "{created:?}");
        self.now += SignedDuration::from_secs(5);
        assert_eq!(
            self.during(Progress::Running { unbound: None }),
            Decision::Running
        );
        self.now += SignedDuration::from_mins(3);
        let result = if fails {
            MoverResult {
                error_class: Some(ErrorClass::Network),
                message: Some("dial tcp 10.0.0.9:9000: connection refused".into()),
                ..MoverResult::default()
            }
        } else {
            MoverResult {
                snapshot_id: Some(format!("{:064x}", self.now.as_second())),
                snapshot_time: Some(self.now.to_string()),
                files_new: 3,
                bytes_added: 4096,
                total_bytes: 1 << 20,
                unlocked: true,
                forgot: true,
                pruned: self.now.as_second() % 7 == 0,
                ..MoverResult::default()
            }
        };
        let ended = self.during(Progress::Ended {
            result,
            publish: Step::Ready(None),
        });
        assert!(matches!(ended, Decision::Finish(_)), "{ended:?}");
        assert!(self.status.sync.sync_plan.is_none(), "the sync ended");
    }
}

#[test]
fn one_source_through_100_syncs_keeps_its_status_the_same_size() {
    let mut world = World {
        source: source(),
        status: ReplicationSourceStatus::default(),
        now: "2026-11-22T09:30:00Z".parse().unwrap(),
    };
    let mut sizes = Vec::new();
    for sync in 1..=SYNCS {
        world.start();
        world.finish(sync % 7 == 0);
        let status = &world.status;
        assert_eq!(
            status.sync.conditions.len(),
            status::TYPES.len(),
            "sync {sync}: one condition of each type"
        );
        sizes.push(serde_json::to_string(status).unwrap().len());
    }
    assert!(
        world.status.last_sync.is_some() && world.status.sync.consecutive_failures.is_none(),
        "the last sync succeeded: {:?}",
        world.status
    );
    // The first ten syncs have seen a failure and its retry; after them the status never gets
    // larger than it was then.
    let bound = sizes[..10].iter().copied().max().unwrap();
    let largest = sizes[10..].iter().copied().max().unwrap();
    assert!(
        largest <= bound,
        "the status grew from at most {bound} bytes in the first 10 syncs to {largest}: {sizes:?}"
    );
    assert!(bound < 4096, "a status of {bound} bytes");
}
