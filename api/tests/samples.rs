//! The samples in `config/samples/` are valid instances of the types.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Secret;
use sluice_api::{CopyMethod, DestinationCopyMethod, ReplicationDestination, ReplicationSource};

fn samples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/samples")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[test]
fn repository_secret_carries_restic_environment() {
    let secret: Secret = serde_saphyr::from_str(&read(&samples().join("repository_secret.yaml")))
        .expect("repository_secret.yaml is a Secret");
    let data = secret.string_data.expect("stringData");
    for key in [
        "RESTIC_REPOSITORY",
        "RESTIC_PASSWORD",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ] {
        assert!(data.contains_key(key), "sample Secret lacks {key}");
    }
    assert!(data["RESTIC_REPOSITORY"].starts_with("s3:http"));
}

#[test]
fn hourly_source_keeps_24_hourly_7_daily_4_weekly_and_prunes_weekly() {
    let source: ReplicationSource =
        serde_saphyr::from_str(&read(&samples().join("replicationsource.yaml")))
            .expect("replicationsource.yaml is a ReplicationSource");
    assert_eq!(
        source.spec.trigger.unwrap().schedule.as_deref(),
        Some("@hourly")
    );
    let restic = source.spec.restic;
    assert_eq!(restic.repository, "restic-minio");
    assert_eq!(restic.copy_method, CopyMethod::Snapshot);
    assert_eq!(restic.prune_interval_days, Some(7));
    let retain = restic.retain.unwrap();
    assert_eq!(
        (retain.hourly, retain.daily, retain.weekly),
        (Some(24), Some(7), Some(4))
    );
    assert_eq!(restic.verify.unwrap().schedule, "H 3 * * 0");
}

#[test]
fn destination_restores_latest_into_a_new_pvc() {
    let destination: ReplicationDestination =
        serde_saphyr::from_str(&read(&samples().join("replicationdestination.yaml")))
            .expect("replicationdestination.yaml is a ReplicationDestination");
    let restic = destination.spec.restic;
    assert_eq!(restic.repository, "restic-minio");
    assert_eq!(restic.copy_method, DestinationCopyMethod::Direct);
    assert!(
        restic.destination_pvc.is_none(),
        "the sample restores into a new PVC"
    );
    assert!(restic.capacity.is_some() && restic.access_modes.is_some());
    assert!(
        restic.restore_as_of.is_none() && restic.previous.is_none(),
        "latest snapshot"
    );
}

#[test]
fn samples_kustomization_lists_every_sample() {
    let kustomization = read(&samples().join("kustomization.yaml"));
    for entry in std::fs::read_dir(samples()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".yaml") && name != "kustomization.yaml" {
            assert!(
                kustomization.contains(&name),
                "kustomization.yaml does not list {name}"
            );
        }
    }
}

#[test]
fn every_invalid_sample_states_the_error_it_expects() {
    let dir = samples().join("invalid");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = read(&path);
        let expect = text
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} must start with '# expect: <message>'", path.display()));
        assert!(
            expect.contains("spec."),
            "{}: expected message names no field",
            path.display()
        );
        let document: serde_json::Value = serde_saphyr::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
        assert_eq!(
            document["apiVersion"],
            "sluice.dev/v1alpha1",
            "{}",
            path.display()
        );
        count += 1;
    }
    assert!(count >= 5, "only {count} invalid samples");
}
