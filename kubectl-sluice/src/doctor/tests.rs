//! `doctor`'s verdicts, one table per check.

use std::collections::BTreeMap;

use jiff::SignedDuration;

use super::judge::{
    self, Heartbeat, MoverPod, OperatorLease, Probe, SnapshotClass, SourceClaim, Verdict,
};
use crate::status::{Health, State};

fn keys(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn secret_keys_are_judged_for_their_store() {
    let s3 = ("RESTIC_REPOSITORY", "s3:https://s3.example.com/b/p");
    let password = ("RESTIC_PASSWORD", "pw");
    let id = ("AWS_ACCESS_KEY_ID", "AKID");
    let secret = ("AWS_SECRET_ACCESS_KEY", "shh");
    type Case<'a> = (
        Option<BTreeMap<String, String>>,
        Option<&'a str>,
        Verdict,
        &'a str,
    );
    let cases: [Case; 8] = [
        (None, None, Verdict::Fail, "not found"),
        (
            Some(keys(&[s3])),
            None,
            Verdict::Fail,
            "lacks RESTIC_PASSWORD",
        ),
        (
            Some(keys(&[s3, ("RESTIC_PASSWORD", " ")])),
            None,
            Verdict::Fail,
            "lacks RESTIC_PASSWORD",
        ),
        (
            Some(keys(&[s3, password, id, secret])),
            None,
            Verdict::Ok,
            "AWS_SECRET_ACCESS_KEY",
        ),
        (
            Some(keys(&[s3, password, id])),
            None,
            Verdict::Fail,
            "only one of",
        ),
        (
            Some(keys(&[s3, password])),
            None,
            Verdict::Fail,
            "no S3 credentials",
        ),
        (
            Some(keys(&[s3, password])),
            Some("backup"),
            Verdict::Warn,
            "web identity",
        ),
        (
            Some(keys(&[("RESTIC_REPOSITORY", "/srv/repo"), password])),
            None,
            Verdict::Ok,
            "/srv/repo",
        ),
    ];
    for (keys, account, verdict, says) in cases {
        let finding = judge::secret("apps/repo", keys.as_ref(), account);
        assert_eq!(finding.verdict, verdict, "{keys:?}: {finding:?}");
        assert!(finding.detail.contains(says), "{keys:?}: {finding:?}");
        assert!(
            !finding.detail.contains("shh") && !finding.detail.contains("AKID"),
            "a value leaked: {finding:?}"
        );
        assert_eq!(finding.fix.is_some(), verdict != Verdict::Ok, "{finding:?}");
    }
}

#[test]
fn repository_probes_name_their_cause() {
    let outside = "s3:https://s3.example.com/b";
    let inside = "s3:http://minio.storage.svc:9000/b";
    let cases = [
        (
            outside,
            Probe::Opened {
                snapshots: 3,
                host: "h".into(),
            },
            true,
            Verdict::Ok,
            "3 snapshot(s)",
        ),
        (outside, Probe::WrongPassword, true, Verdict::Fail, "no key"),
        (
            outside,
            Probe::NotFound,
            true,
            Verdict::Ok,
            "first backup creates it",
        ),
        (
            outside,
            Probe::NotFound,
            false,
            Verdict::Fail,
            "no repository",
        ),
        (
            outside,
            Probe::Denied("403".into()),
            true,
            Verdict::Fail,
            "refused the credentials",
        ),
        (
            outside,
            Probe::Unreachable("refused".into()),
            true,
            Verdict::Fail,
            "not reachable",
        ),
        (
            inside,
            Probe::Unreachable("dns".into()),
            true,
            Verdict::Warn,
            "not reachable",
        ),
        (
            "s3:http://minio:9000/b",
            Probe::Unreachable("dns".into()),
            true,
            Verdict::Warn,
            "not reachable",
        ),
        (
            outside,
            Probe::Other("corrupt config".into()),
            true,
            Verdict::Fail,
            "corrupt config",
        ),
        (outside, Probe::Skipped, true, Verdict::Warn, "not tried"),
    ];
    for (location, probe, is_source, verdict, says) in cases {
        let finding = judge::repository(location, &probe, is_source);
        assert_eq!(
            finding.verdict, verdict,
            "{location} {probe:?}: {finding:?}"
        );
        assert!(finding.detail.contains(says), "{probe:?}: {finding:?}");
    }
}

#[test]
fn snapshot_classes_are_matched_to_the_claims_driver() {
    let class = |name: &str, driver: &str, default: bool| SnapshotClass {
        name: name.into(),
        driver: driver.into(),
        default,
    };
    let claim = SourceClaim {
        name: "apps/data".into(),
        driver: Some("csi.example.com".into()),
    };
    let no_driver = SourceClaim {
        name: "apps/data".into(),
        driver: None,
    };
    let ours_default = [
        class("fast", "csi.example.com", true),
        class("x", "other", true),
    ];
    let ours_plain = [class("fast", "csi.example.com", false)];
    let two = [
        class("a", "csi.example.com", false),
        class("b", "csi.example.com", false),
    ];
    let others = [class("x", "other", true)];
    type Case<'a> = (
        &'a str,
        Option<&'a SourceClaim>,
        Option<&'a str>,
        Option<&'a [SnapshotClass]>,
        Verdict,
        &'a str,
    );
    let cases: [Case; 11] = [
        ("Direct", None, None, None, Verdict::Ok, "no VolumeSnapshot"),
        (
            "Snapshot",
            None,
            None,
            Some(&ours_default),
            Verdict::Fail,
            "source PVC",
        ),
        (
            "Snapshot",
            Some(&claim),
            None,
            None,
            Verdict::Fail,
            "not installed",
        ),
        (
            "Snapshot",
            Some(&no_driver),
            None,
            Some(&ours_default),
            Verdict::Warn,
            "unknown",
        ),
        (
            "Snapshot",
            Some(&claim),
            None,
            Some(&ours_default),
            Verdict::Ok,
            "default VolumeSnapshotClass fast",
        ),
        (
            "Snapshot",
            Some(&claim),
            None,
            Some(&ours_plain),
            Verdict::Warn,
            "not the default",
        ),
        (
            "Snapshot",
            Some(&claim),
            None,
            Some(&two),
            Verdict::Fail,
            "2 VolumeSnapshotClasses",
        ),
        (
            "Snapshot",
            Some(&claim),
            None,
            Some(&others),
            Verdict::Fail,
            "no VolumeSnapshotClass for driver",
        ),
        (
            "Snapshot",
            Some(&claim),
            Some("fast"),
            Some(&ours_plain),
            Verdict::Ok,
            "serves",
        ),
        (
            "Snapshot",
            Some(&claim),
            Some("x"),
            Some(&others),
            Verdict::Fail,
            "is for driver other",
        ),
        (
            "Snapshot",
            Some(&claim),
            Some("gone"),
            Some(&others),
            Verdict::Fail,
            "does not exist",
        ),
    ];
    for (method, claim, requested, classes, verdict, says) in cases {
        let finding = judge::snapshot_class(method, claim, requested, classes);
        assert_eq!(
            finding.verdict, verdict,
            "{method} {requested:?}: {finding:?}"
        );
        assert!(finding.detail.contains(says), "{finding:?}");
    }
}

#[test]
fn pod_security_levels_admit_the_mover_or_say_why_not() {
    let cases = [
        (None, false, Verdict::Ok),
        (Some("restricted"), false, Verdict::Ok),
        (Some("restricted"), true, Verdict::Fail),
        (Some("baseline"), true, Verdict::Ok),
        (Some("strict"), false, Verdict::Warn),
    ];
    for (enforce, root, verdict) in cases {
        let finding = judge::pod_security("apps", enforce, root);
        assert_eq!(finding.verdict, verdict, "{enforce:?} {root}: {finding:?}");
    }
}

#[test]
fn access_names_what_is_missing() {
    let none: [String; 0] = [];
    let some = ["get secrets".to_string()];
    assert_eq!(judge::access(&none, None, true).verdict, Verdict::Ok);
    let finding = judge::access(&some, None, true);
    assert_eq!(finding.verdict, Verdict::Warn);
    assert!(finding.detail.contains("get secrets"), "{finding:?}");
    let finding = judge::access(&none, Some("backup"), false);
    assert_eq!(finding.verdict, Verdict::Fail);
    assert!(
        finding
            .fix
            .unwrap()
            .contains("create serviceaccount backup")
    );
}

#[test]
fn mover_image_pull_failures_are_named() {
    let pod = |name: &str, waiting: Option<(&str, &str)>, started: bool| MoverPod {
        name: name.into(),
        image: "registry.example.com/sluice:1".into(),
        waiting: waiting.map(|(r, m)| (r.into(), m.into())),
        started,
    };
    let cases = [
        (vec![], Verdict::Ok, "no mover Pod"),
        (
            vec![pod("a", None, true)],
            Verdict::Ok,
            "ran registry.example.com/sluice:1",
        ),
        (
            vec![
                pod("b", Some(("ImagePullBackOff", "not found")), false),
                pod("a", None, true),
            ],
            Verdict::Fail,
            "cannot pull registry.example.com/sluice:1: ImagePullBackOff: not found",
        ),
        (
            vec![pod("c", Some(("ContainerCreating", "")), false)],
            Verdict::Ok,
            "no mover Pod",
        ),
    ];
    for (pods, verdict, says) in cases {
        let finding = judge::mover_image(&pods);
        assert_eq!(finding.verdict, verdict, "{pods:?}: {finding:?}");
        assert!(finding.detail.contains(says), "{finding:?}");
    }
}

#[test]
fn clock_skew_of_this_machine_and_nodes() {
    let secs = SignedDuration::from_secs;
    let beat = |age: i64, ready: bool| Heartbeat {
        node: "n1".into(),
        age: secs(age),
        ready,
    };
    let cases = [
        (secs(2), vec![beat(5, true)], Verdict::Ok, "agree"),
        (
            secs(-45),
            vec![],
            Verdict::Warn,
            "this machine is 45s behind",
        ),
        (secs(600), vec![], Verdict::Fail, "ahead of"),
        (
            secs(0),
            vec![beat(-60, true)],
            Verdict::Warn,
            "node n1 is 60s ahead",
        ),
        (secs(0), vec![beat(-900, true)], Verdict::Fail, "15m ahead"),
        (
            secs(0),
            vec![beat(400, true)],
            Verdict::Fail,
            "its clock is behind",
        ),
        // A node that stopped heartbeating is down, not skewed.
        (secs(0), vec![beat(400, false)], Verdict::Ok, "agree"),
    ];
    for (local, beats, verdict, says) in cases {
        let finding = judge::clock(local, &beats);
        assert_eq!(finding.verdict, verdict, "{local:?} {beats:?}: {finding:?}");
        assert!(finding.detail.contains(says), "{finding:?}");
    }
}

#[test]
fn last_results_carry_the_fix_for_their_reason() {
    let health = |state, reason: &str| Health {
        state,
        reason: reason.into(),
        message: "m".into(),
    };
    let cases = [
        (health(State::Ready, "SyncSucceeded"), Verdict::Ok, None),
        (
            health(State::Progressing, "MoverRunning"),
            Verdict::Ok,
            None,
        ),
        (
            health(State::Paused, "Paused"),
            Verdict::Warn,
            Some("spec.paused"),
        ),
        (
            health(State::Failing, "WrongPassword"),
            Verdict::Fail,
            Some("RESTIC_PASSWORD"),
        ),
        (
            health(State::Failing, "RepositoryLocked"),
            Verdict::Fail,
            Some("kubectl sluice unlock"),
        ),
        (
            health(State::Failing, "SomethingNew"),
            Verdict::Fail,
            Some("kubectl logs"),
        ),
    ];
    for (health, verdict, fix) in cases {
        let finding = judge::last_result(&health);
        assert_eq!(finding.verdict, verdict, "{health:?}");
        match fix {
            Some(text) => assert!(
                finding.fix.as_deref().unwrap().contains(text),
                "{finding:?}"
            ),
            None => assert_eq!(finding.fix, None),
        }
    }
}

#[test]
fn every_failure_reason_of_the_operator_has_a_fix() {
    use sluice_api::conditions::reason;
    for r in [
        reason::WRONG_PASSWORD,
        reason::SECRET_INVALID,
        reason::REPOSITORY_NOT_FOUND,
        reason::REPOSITORY_LOCKED,
        reason::NETWORK_ERROR,
        reason::REPOSITORY_UNAVAILABLE,
        reason::REPOSITORY_CORRUPT,
        reason::SOURCE_PVC_NOT_FOUND,
        reason::NO_SNAPSHOT,
        reason::MOVER_CONFIG_INVALID,
        reason::VOLUME_MODE_MISMATCH,
        reason::MOVER_FAILED,
        reason::BACKOFF,
    ] {
        assert!(judge::fix_for(r).is_some(), "{r} has no fix");
    }
}

#[test]
fn the_operator_is_judged_by_its_leader_lease() {
    let lease = |namespace: &str, age: Option<i64>| OperatorLease {
        namespace: namespace.into(),
        holder: Some(format!("sluice-operator-7d9f-{namespace}")),
        age: age.map(SignedDuration::from_secs),
    };
    for (leases, verdict, detail, fix) in [
        (vec![], Verdict::Fail, "not installed", "helm install"),
        (
            vec![lease("sluice-system", Some(3))],
            Verdict::Ok,
            "sluice-operator-7d9f-sluice-system leads in sluice-system, Lease renewed 3s ago",
            "",
        ),
        (
            vec![lease("sluice-system", Some(600))],
            Verdict::Fail,
            "last renewed 10m ago by sluice-operator-7d9f-sluice-system",
            "kubectl -n sluice-system logs deploy/sluice-operator",
        ),
        (
            vec![lease("backup", None)],
            Verdict::Fail,
            "in backup was never renewed",
            "kubectl -n backup get pods",
        ),
        (
            vec![lease("sluice-system", Some(2)), lease("old", Some(4000))],
            Verdict::Warn,
            "operator Leases in 2 namespaces (sluice-system, old), 1 renewed within 60s",
            "keep one install",
        ),
    ] {
        let finding = judge::operator(&leases);
        assert_eq!(finding.verdict, verdict, "{leases:?}: {finding:?}");
        assert!(finding.detail.contains(detail), "{leases:?}: {finding:?}");
        assert!(
            finding.fix.as_deref().unwrap_or("").contains(fix),
            "{leases:?}: {finding:?}"
        );
    }
}
