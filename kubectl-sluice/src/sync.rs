//! `kubectl sluice sync`: a manual trigger (`spec.trigger.manual` set to a new value), and with
//! `--wait` the sync followed to its end, as `kubectl rollout status` follows a rollout.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use jiff::Timestamp;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde::Serialize;
use sluice_api::{ReplicationDestination, ReplicationSource, SyncStatus};

use crate::{
    cli::{EXIT_FAILED, Format, SyncArgs},
    cluster::{Cluster, Object, ObjectRef},
    output,
    status::{self, State},
};

/// How often `--wait` reads the object.
const POLL: Duration = Duration::from_secs(2);

/// What `sync --wait -o json` prints.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct Outcome {
    kind: &'static str,
    namespace: String,
    name: String,
    trigger: String,
    succeeded: bool,
    reason: String,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_added: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<String>,
}

/// The value `sync` sets `spec.trigger.manual` to: unique per call, and telling whoever reads
/// the object where it came from.
fn trigger_value(now: Timestamp) -> String {
    format!("kubectl-sluice-{}", now.as_millisecond())
}

/// Where a sync that was triggered with `trigger` stands, from the object's generation after
/// the trigger and its status: `None` while it runs.
fn verdict(
    status: Option<&SyncStatus>,
    generation: i64,
    paused: bool,
    trigger: &str,
) -> Option<(bool, status::Health)> {
    let sync = status?;
    if sync.observed_generation.is_none_or(|o| o < generation) {
        return None;
    }
    let health = status::health(Some(sync), Some(generation), paused);
    if sync.last_manual_sync.as_deref() == Some(trigger) {
        return Some((true, health));
    }
    match health.state {
        State::Failing | State::Paused => Some((false, health)),
        State::Ready | State::Progressing => None,
    }
}

/// Runs `sync`.
pub async fn run(cluster: &Cluster, args: &SyncArgs, format: Format) -> Result<u8> {
    let trigger = trigger_value(Timestamp::now());
    let patch = serde_json::json!({ "spec": { "trigger": { "manual": trigger } } });
    let params = PatchParams::default();
    let (kind, generation) = match ObjectRef::parse(&args.object)? {
        ObjectRef::Source(name) => {
            cluster.source(&name).await?;
            let api: Api<ReplicationSource> = cluster.api();
            let patched = api
                .patch(&name, &params, &Patch::Merge(&patch))
                .await
                .with_context(|| {
                    format!(
                        "setting spec.trigger.manual of ReplicationSource {}/{name}",
                        cluster.namespace
                    )
                })?;
            (
                "ReplicationSource",
                patched.metadata.generation.unwrap_or_default(),
            )
        }
        ObjectRef::Destination(name) => {
            cluster.object(&args.object).await?;
            let api: Api<ReplicationDestination> = cluster.api();
            let patched = api
                .patch(&name, &params, &Patch::Merge(&patch))
                .await
                .with_context(|| {
                    format!(
                        "setting spec.trigger.manual of ReplicationDestination {}/{name}",
                        cluster.namespace
                    )
                })?;
            (
                "ReplicationDestination",
                patched.metadata.generation.unwrap_or_default(),
            )
        }
    };
    let name = match ObjectRef::parse(&args.object)? {
        ObjectRef::Source(n) | ObjectRef::Destination(n) => n,
    };
    eprintln!(
        "{kind} {}/{name}: sync requested (spec.trigger.manual={trigger})",
        cluster.namespace
    );
    if !args.wait {
        return Ok(0);
    }
    let deadline = Instant::now() + args.timeout;
    let mut last_reason = String::new();
    loop {
        let object = cluster.object(&args.object).await?;
        let (status, paused, done) = match &object {
            Object::Source(s) => (
                s.status.as_ref().map(|s| &s.sync),
                s.spec.paused,
                s.status.as_ref().and_then(|s| s.last_sync.clone()),
            ),
            Object::Destination(d) => (d.status.as_ref().map(|s| &s.sync), d.spec.paused, None),
        };
        let health = status::health(status, Some(generation), paused);
        if health.reason != last_reason {
            eprintln!("  {}: {}", health.reason, health.message);
            last_reason = health.reason.clone();
        }
        if let Some((succeeded, health)) = verdict(status, generation, paused, &trigger) {
            let outcome = Outcome {
                kind,
                namespace: cluster.namespace.clone(),
                name: name.clone(),
                trigger: trigger.clone(),
                succeeded,
                reason: health.reason,
                message: health.message,
                snapshot_id: done
                    .as_ref()
                    .filter(|_| succeeded)
                    .map(|l| l.snapshot_id.clone()),
                bytes_added: done.as_ref().filter(|_| succeeded).map(|l| l.bytes_added),
                duration: status
                    .filter(|_| succeeded)
                    .and_then(|s| s.last_sync_duration.as_ref())
                    .map(|d| d.to_string()),
            };
            if !output::structured(format, &outcome)? {
                print_outcome(&outcome);
            }
            return Ok(if succeeded { 0 } else { EXIT_FAILED });
        }
        if Instant::now() > deadline {
            bail!(
                "{kind} {}/{name} did not finish its sync within {}s (now {}: {}); it keeps running, follow it with `kubectl sluice status -n {}`",
                cluster.namespace,
                args.timeout.as_secs(),
                health.reason,
                health.message,
                cluster.namespace
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

fn print_outcome(outcome: &Outcome) {
    let colour = output::colour_wanted();
    if outcome.succeeded {
        let mut line = format!(
            "{} {}/{}: {}",
            outcome.kind,
            outcome.namespace,
            outcome.name,
            output::paint("sync succeeded", output::Tone::Good, colour)
        );
        if let Some(id) = &outcome.snapshot_id {
            line.push_str(&format!(
                ", snapshot {}",
                id.chars().take(8).collect::<String>()
            ));
        }
        if let Some(bytes) = outcome.bytes_added {
            line.push_str(&format!(", {} added", output::bytes(bytes)));
        }
        if let Some(duration) = &outcome.duration {
            line.push_str(&format!(", took {duration}"));
        }
        println!("{line}");
    } else {
        println!(
            "{} {}/{}: {} ({}): {}",
            outcome.kind,
            outcome.namespace,
            outcome.name,
            output::paint("sync failed", output::Tone::Bad, colour),
            outcome.reason,
            outcome.message
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    fn condition(type_: &str, status: &str, reason: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: String::new(),
            observed_generation: Some(5),
            last_transition_time: Time("2026-11-22T10:00:00Z".parse().unwrap()),
        }
    }

    #[test]
    fn a_sync_ends_when_its_trigger_is_recorded_or_it_fails() {
        let trigger = "kubectl-sluice-1";
        let status = |observed: i64, manual: Option<&str>, conditions: Vec<Condition>| SyncStatus {
            observed_generation: Some(observed),
            last_manual_sync: manual.map(str::to_string),
            conditions,
            ..Default::default()
        };
        let ready = condition("Ready", "True", "SyncSucceeded");
        let cases: Vec<(&str, SyncStatus, bool, Option<bool>)> = vec![
            (
                "not observed yet",
                status(4, None, vec![ready.clone()]),
                false,
                None,
            ),
            (
                "observed, running",
                status(
                    5,
                    None,
                    vec![condition("Synchronizing", "True", "MoverRunning")],
                ),
                false,
                None,
            ),
            (
                "the previous success is not this one",
                status(5, Some("other"), vec![ready.clone()]),
                false,
                None,
            ),
            (
                "recorded",
                status(5, Some(trigger), vec![ready.clone()]),
                false,
                Some(true),
            ),
            (
                "failed",
                status(
                    5,
                    None,
                    vec![condition("Degraded", "True", "WrongPassword")],
                ),
                false,
                Some(false),
            ),
            (
                "paused never runs",
                status(5, None, vec![ready.clone()]),
                true,
                Some(false),
            ),
        ];
        for (case, status, paused, expected) in cases {
            let got = verdict(Some(&status), 5, paused, trigger).map(|(ok, _)| ok);
            assert_eq!(got, expected, "{case}");
        }
        assert_eq!(verdict(None, 5, false, trigger).map(|(ok, _)| ok), None);
        assert!(trigger_value(Timestamp::now()).starts_with("kubectl-sluice-"));
    }
}
