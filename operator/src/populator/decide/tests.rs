//! Every step of a population, from a PVC just created to one that holds its volume.

use super::*;
use crate::testing::{at, object};
use sluice_api::mover_result::ErrorClass;

fn claim(extra_meta: &str, extra_spec: &str) -> PersistentVolumeClaim {
    object(&format!(
        r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
  namespace: app
  uid: 0b5c3c4e-1111-2222-3333-444455556666
{extra_meta}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: fast
  resources: {{requests: {{storage: 2Gi}}}}
  dataSourceRef: {{apiGroup: sluice.dev, kind: ReplicationDestination, name: restore}}
{extra_spec}"#
    ))
}

fn destination(extra: &str) -> ReplicationDestination {
    object(&format!(
        r#"
apiVersion: sluice.dev/v1alpha1
kind: ReplicationDestination
metadata: {{name: restore, namespace: app, uid: u-2}}
spec:
  restic:
    repository: repo
    copyMethod: Direct
    capacity: 2Gi
    accessModes: [ReadWriteOnce]
    hostname: app/data
{extra}"#
    ))
}

fn prime(bound_to: Option<&str>) -> PersistentVolumeClaim {
    let mut prime = prime_claim(&claim("", ""));
    if let Some(volume) = bound_to {
        prime.spec.as_mut().unwrap().volume_name = Some(volume.into());
        prime.status = Some(object("phase: Bound"));
    }
    prime
}

fn job(ended: Option<&str>) -> Job {
    let mut job = populate_job(&destination(""), &claim("", ""), &defaults(), now());
    if let Some(time) = ended {
        job.status = Some(object(&format!("completionTime: '{time}'")));
    }
    job
}

fn defaults() -> MoverDefaults {
    MoverDefaults {
        image: "sluice:1".into(),
        ..Default::default()
    }
}

fn now() -> Timestamp {
    at("2026-12-02T10:00:00Z")
}

fn decide(
    claim: &PersistentVolumeClaim,
    destination: Option<&ReplicationDestination>,
    prime: Option<&PersistentVolumeClaim>,
    job: Option<&Job>,
    result: Option<&MoverResult>,
) -> Next {
    next(
        &Observed {
            claim,
            destination,
            waits_for_consumer: false,
            prime,
            job,
            result,
        },
        &defaults(),
        now(),
    )
}

fn reason_of(next: &Next) -> &str {
    match next {
        Next::Wait(c) | Next::Abandon(c) | Next::Finish(c) => &c.reason,
        Next::Failed { condition, .. } => &condition.reason,
        other => panic!("no condition in {other:?}"),
    }
}

const RECORDED: &str = "  annotations:
    sluice.dev/population: SnapshotRestored
    sluice.dev/restored-snapshot: abcdef0123456789
    sluice.dev/restored-snapshot-time: '2026-12-01T09:00:00Z'";

#[test]
fn only_a_data_source_ref_to_a_replication_destination_is_ours() {
    assert_eq!(destination_name(&claim("", "")), Some("restore"));
    let cases = [
        "apiGroup: sluice.dev, kind: ReplicationSource, name: x",
        "apiGroup: other.dev, kind: ReplicationDestination, name: x",
        "kind: PersistentVolumeClaim, name: x",
    ];
    for case in cases {
        let mut other = claim("", "");
        other.spec.as_mut().unwrap().data_source_ref = Some(object(&format!("{{{case}}}")));
        assert_eq!(destination_name(&other), None, "{case}");
    }
    let mut plain = claim("", "");
    plain.spec.as_mut().unwrap().data_source_ref = None;
    assert_eq!(destination_name(&plain), None);
}

#[test]
fn a_population_runs_its_steps_in_order() {
    let claim = claim("", "");
    let rd = destination("");
    // 1. The prime PVC, shaped like the user's, owned by it, without a data source.
    let Next::CreatePrime(made) = decide(&claim, Some(&rd), None, None, None) else {
        panic!("the prime PVC comes first");
    };
    assert_eq!(
        made.metadata.name.as_deref(),
        Some("sluice-prime-0b5c3c4e-1111-2222-3333-444455556666")
    );
    assert_eq!(made.metadata.namespace.as_deref(), Some("app"));
    let owner = &made.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("PersistentVolumeClaim", "data", Some(true))
    );
    assert_eq!(owner.block_owner_deletion, None);
    let spec = made.spec.as_ref().unwrap();
    assert_eq!(spec.data_source_ref, None);
    assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
    assert_eq!(spec.resources, claim.spec.as_ref().unwrap().resources);
    assert_eq!(
        made.metadata.labels.as_ref().unwrap()[labels::POPULATES],
        "0b5c3c4e-1111-2222-3333-444455556666"
    );

    // 2. The Job, the destination's restore Job mounted on the prime PVC.
    let unbound = prime(None);
    let Next::CreateJob(made) = decide(&claim, Some(&rd), Some(&unbound), None, None) else {
        panic!("the Job comes second");
    };
    let spec = made.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let volume = spec.volumes.as_ref().unwrap()[0]
        .persistent_volume_claim
        .as_ref()
        .unwrap();
    assert_eq!(volume.claim_name, unbound.name_any());
    let env = spec.containers[0].env.as_ref().unwrap();
    let hostname = env.iter().find(|e| e.name == "SLUICE_HOSTNAME").unwrap();
    assert_eq!(hostname.value.as_deref(), Some("app/data"));
    assert_eq!(
        made.metadata.owner_references.as_ref().unwrap()[0].name,
        "data"
    );

    // 3. Waiting: for the prime's volume, then for the mover.
    let job = job(None);
    let waiting = decide(&claim, Some(&rd), Some(&unbound), Some(&job), None);
    assert_eq!(reason_of(&waiting), reason::WAITING_FOR_PVC);
    let bound = prime(Some("pv-1"));
    let running = decide(&claim, Some(&rd), Some(&bound), Some(&job), None);
    assert_eq!(reason_of(&running), reason::MOVER_RUNNING);

    // 4. A restored snapshot is recorded on the PVC.
    let restored = MoverResult {
        snapshot_id: Some("abcdef0123456789".into()),
        snapshot_time: Some("2026-12-01T09:00:00Z".into()),
        ..Default::default()
    };
    assert_eq!(
        decide(&claim, Some(&rd), Some(&bound), Some(&job), Some(&restored)),
        Next::Record(Population {
            reason: reason::SNAPSHOT_RESTORED.into(),
            snapshot: Some("abcdef0123456789".into()),
            snapshot_time: Some("2026-12-01T09:00:00Z".into()),
        })
    );

    // 5. Recorded: the prime's volume goes to the PVC, even with the Job and the
    // ReplicationDestination gone by now.
    let recorded = super::tests::claim(RECORDED, "");
    assert_eq!(
        decide(&recorded, None, Some(&bound), None, None),
        Next::Rebind {
            volume: "pv-1".into()
        }
    );

    // 6. Bound: finished, and the condition says what the volume holds.
    let done = super::tests::claim(RECORDED, "  volumeName: pv-1");
    let Next::Finish(condition) = decide(&done, None, Some(&bound), Some(&job), None) else {
        panic!("a bound PVC is finished");
    };
    assert!(condition.populated);
    assert_eq!(condition.reason, reason::SNAPSHOT_RESTORED);
    assert_eq!(
        condition.message,
        "restored snapshot abcdef01 (2026-12-01T09:00:00Z) of ReplicationDestination restore"
    );
}

#[test]
fn an_empty_volume_only_when_allowed_and_only_for_a_missing_snapshot_or_repository() {
    let claim = claim("", "");
    let bound = prime(Some("pv-1"));
    let job = job(Some("2026-12-02T09:59:00Z"));
    let fail = destination("");
    let empty = destination("    onMissingSnapshot: Empty\n");
    let nothing = MoverResult::default();
    let no_repository = MoverResult {
        repository_missing: true,
        ..Default::default()
    };
    let failed = |class: ErrorClass| MoverResult {
        error_class: Some(class),
        message: Some("it failed".into()),
        ..Default::default()
    };
    let cases = [
        (&fail, nothing.clone(), reason::NO_SNAPSHOT),
        (&empty, nothing, reason::EMPTY_NO_SNAPSHOT),
        (&empty, no_repository, reason::EMPTY_NO_REPOSITORY),
        // Never taken for "nothing to restore", whatever onMissingSnapshot says.
        (
            &empty,
            failed(ErrorClass::WrongPassword),
            reason::WRONG_PASSWORD,
        ),
        (&empty, failed(ErrorClass::Network), reason::NETWORK_ERROR),
        (
            &empty,
            failed(ErrorClass::Locked),
            reason::REPOSITORY_LOCKED,
        ),
        (
            &empty,
            failed(ErrorClass::RepositoryNotFound),
            reason::REPOSITORY_NOT_FOUND,
        ),
        (
            &empty,
            failed(ErrorClass::Corrupt),
            reason::REPOSITORY_CORRUPT,
        ),
    ];
    for (rd, result, expected) in cases {
        let next = decide(&claim, Some(rd), Some(&bound), Some(&job), Some(&result));
        match &next {
            Next::Record(population) => assert_eq!(population.reason, expected, "{result:?}"),
            Next::Failed { condition, .. } => {
                assert_eq!(condition.reason, expected, "{result:?}");
                assert!(!condition.populated);
            }
            other => panic!("{result:?}: {other:?}"),
        }
    }
}

#[test]
fn a_failed_restore_is_retried_after_a_delay_that_fits_the_failure() {
    let claim = claim("", "");
    let rd = destination("");
    let bound = prime(Some("pv-1"));
    let job = job(Some("2026-12-02T09:59:00Z"));
    let cases = [
        (ErrorClass::Network, "2026-12-02T09:59:30Z"),
        (ErrorClass::WrongPassword, "2026-12-02T10:04:00Z"),
    ];
    for (class, retry) in cases {
        let result = MoverResult {
            error_class: Some(class),
            message: Some("what failed; what to do".into()),
            ..Default::default()
        };
        let Next::Failed {
            condition,
            retry_at,
        } = decide(&claim, Some(&rd), Some(&bound), Some(&job), Some(&result))
        else {
            panic!("{class:?} fails the population");
        };
        assert_eq!(retry_at, at(retry), "{class:?}");
        assert_eq!(
            condition.message,
            format!(
                "restoring from ReplicationDestination restore failed: what failed; what to do; \
                 trying again at {retry}"
            )
        );
    }
}

#[test]
fn a_missing_destination_abandons_what_the_population_made() {
    let claim = claim("", "");
    let bound = prime(Some("pv-1"));
    let job = job(None);
    for (prime, job) in [(None, None), (Some(&bound), Some(&job))] {
        let next = decide(&claim, None, prime, job, None);
        let Next::Abandon(condition) = next else {
            panic!("{next:?}");
        };
        assert_eq!(condition.reason, reason::REPLICATION_DESTINATION_NOT_FOUND);
        assert_eq!(
            condition.message,
            "ReplicationDestination restore not found in namespace app; create it, or fix \
             spec.dataSourceRef.name"
        );
    }
}

#[test]
fn wait_for_first_consumer_waits_for_the_scheduler_then_follows_it() {
    let rd = destination("");
    let observed = |claim| Observed {
        claim,
        destination: Some(&rd),
        waits_for_consumer: true,
        prime: None,
        job: None,
        result: None,
    };
    let unscheduled = claim("", "");
    let next = next(&observed(&unscheduled), &defaults(), now());
    assert_eq!(reason_of(&next), reason::WAITING_FOR_FIRST_CONSUMER);
    let scheduled = claim(
        "  annotations: {volume.kubernetes.io/selected-node: node-7}",
        "",
    );
    let Next::CreatePrime(prime) = super::next(&observed(&scheduled), &defaults(), now()) else {
        panic!("a scheduled PVC gets its prime");
    };
    assert_eq!(
        prime.metadata.annotations.unwrap()[SELECTED_NODE],
        "node-7",
        "the prime volume is made on the node the Pod goes to"
    );
}

#[test]
fn odd_states_end_well() {
    let bound = prime(Some("pv-1"));
    // Being deleted: garbage collection has it.
    let deleting = claim("  deletionTimestamp: '2026-12-02T09:00:00Z'", "");
    assert_eq!(decide(&deleting, None, None, None, None), Next::Nothing);
    // Recorded, but its prime PVC was deleted before the hand-over: start again.
    let recorded = claim(RECORDED, "");
    assert_eq!(decide(&recorded, None, None, None, None), Next::Forget);
    // Recorded, and the prime's volume not known yet.
    let unbound = prime(None);
    let next = decide(&recorded, None, Some(&unbound), None, None);
    assert_eq!(reason_of(&next), reason::REBINDING);
    // Bound to a volume of the user's own: finished, never populated.
    let prebound = claim("", "  volumeName: pv-user");
    let Next::Finish(condition) = decide(&prebound, None, Some(&bound), None, None) else {
        panic!("bound is finished");
    };
    assert!(!condition.populated);
    // Left empty, as recorded.
    let empty = claim(
        "  annotations: {sluice.dev/population: EmptyNoRepository}",
        "  volumeName: pv-1",
    );
    let Next::Finish(condition) = decide(&empty, None, None, None, None) else {
        panic!("bound is finished");
    };
    assert_eq!(
        condition.message,
        "left empty: ReplicationDestination restore's repository does not exist yet \
         (onMissingSnapshot: Empty)"
    );
}

#[test]
fn names_fit_in_a_label() {
    let claim = claim("", "");
    assert!(job_name(&claim).len() <= 63);
    assert!(prime_name(&claim).len() <= 63);
}
