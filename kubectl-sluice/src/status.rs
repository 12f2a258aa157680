//! `kubectl sluice status`: one row per source and destination, and the pure reading of an
//! object's conditions that `sync --wait` and `doctor` share.

use anyhow::Result;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::ListParams;
use serde::Serialize;
use sluice_api::{ReplicationDestination, ReplicationSource, SyncStatus, conditions};

use crate::{
    cli::{Format, StatusArgs},
    cluster::Cluster,
    output::{self, Tone},
};

/// What an object's conditions say, in one word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum State {
    /// The last sync succeeded and nothing runs.
    Ready,
    /// A sync runs, or the object waits for its first one.
    Progressing,
    /// Syncs fail, or cannot start until something changes.
    Failing,
    /// `spec.paused`.
    Paused,
}

/// The state of an object and the condition that decided it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// The word.
    pub state: State,
    /// The deciding condition's reason, e.g. `WrongPassword`.
    pub reason: String,
    /// Its message.
    pub message: String,
}

/// Reads the conditions as the Argo CD health check does (kstatus `Stalled`/`Reconciling`/
/// `Ready`, and the older `Degraded`/`Synchronizing`): failing wins over paused, paused over
/// progressing, progressing over ready.
pub fn health(status: Option<&SyncStatus>, generation: Option<i64>, paused: bool) -> Health {
    let progressing = |reason: &str, message: String| Health {
        state: State::Progressing,
        reason: reason.to_string(),
        message,
    };
    let Some(status) = status else {
        return progressing(
            "Pending",
            "the operator has not observed the object yet".into(),
        );
    };
    if let (Some(generation), observed) = (generation, status.observed_generation)
        && observed.is_none_or(|o| o < generation)
    {
        return progressing(
            "Pending",
            format!("the operator has not observed generation {generation} yet"),
        );
    }
    let holds = |type_: &str| -> Option<&Condition> {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == "True")
            .filter(|c| generation.is_none_or(|g| c.observed_generation.is_none_or(|o| o >= g)))
    };
    let from = |state: State, c: &Condition| Health {
        state,
        reason: c.reason.clone(),
        message: c.message.clone(),
    };
    if let Some(c) = holds(conditions::STALLED).or_else(|| holds(conditions::DEGRADED)) {
        return from(State::Failing, c);
    }
    if paused {
        return Health {
            state: State::Paused,
            reason: "Paused".into(),
            message: "spec.paused is set".into(),
        };
    }
    if let Some(c) = holds(conditions::RECONCILING).or_else(|| holds("Synchronizing")) {
        return from(State::Progressing, c);
    }
    if let Some(c) = holds(conditions::READY) {
        return from(State::Ready, c);
    }
    match status
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::READY)
    {
        Some(c) => from(State::Progressing, c),
        None => progressing("Pending", "no Ready condition yet".into()),
    }
}

/// One row of `status`.
#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub state: State,
    pub reason: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_sync_duration: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_sync_time: Option<Timestamp>,
    /// New bytes of the last backup (sources) or bytes restored (not known for destinations).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_added: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// The message of the last failure, while syncs fail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
}

fn row(
    kind: &'static str,
    meta: &kube::core::ObjectMeta,
    status: Option<&SyncStatus>,
    paused: bool,
    bytes_added: Option<u64>,
    snapshot: Option<String>,
) -> Row {
    let health = health(status, meta.generation, paused);
    let last_failure = (health.state == State::Failing).then(|| health.message.clone());
    Row {
        kind,
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        state: health.state,
        reason: health.reason,
        message: health.message,
        last_sync_time: status.and_then(|s| s.last_sync_time.as_ref()).map(|t| t.0),
        last_sync_duration: status
            .and_then(|s| s.last_sync_duration.as_ref())
            .map(|d| d.to_string()),
        next_sync_time: status.and_then(|s| s.next_sync_time.as_ref()).map(|t| t.0),
        bytes_added,
        snapshot,
        last_failure,
    }
}

/// The row of a ReplicationSource.
pub fn source_row(source: &ReplicationSource) -> Row {
    let last = source.status.as_ref().and_then(|s| s.last_sync.as_ref());
    row(
        "ReplicationSource",
        &source.metadata,
        source.status.as_ref().map(|s| &s.sync),
        source.spec.paused,
        last.map(|l| l.bytes_added),
        last.map(|l| l.snapshot_id.chars().take(8).collect()),
    )
}

/// The row of a ReplicationDestination.
pub fn destination_row(destination: &ReplicationDestination) -> Row {
    row(
        "ReplicationDestination",
        &destination.metadata,
        destination.status.as_ref().map(|s| &s.sync),
        destination.spec.paused,
        None,
        destination
            .status
            .as_ref()
            .and_then(|s| s.restored_snapshot.as_ref())
            .map(|r| r.id.chars().take(8).collect()),
    )
}

fn tone(state: State) -> Tone {
    match state {
        State::Ready => Tone::Good,
        State::Progressing | State::Paused => Tone::Busy,
        State::Failing => Tone::Bad,
    }
}

/// Runs `status`.
pub async fn run(cluster: &Cluster, args: &StatusArgs, format: Format) -> Result<u8> {
    let params = match &args.name {
        Some(name) => ListParams::default().fields(&format!("metadata.name={name}")),
        None => ListParams::default(),
    };
    let sources = cluster
        .list_api::<ReplicationSource>()
        .list(&params)
        .await?;
    let destinations = cluster
        .list_api::<ReplicationDestination>()
        .list(&params)
        .await?;
    let mut rows: Vec<Row> = sources.items.iter().map(source_row).collect();
    rows.extend(destinations.items.iter().map(destination_row));
    rows.sort_by(|a, b| (&a.namespace, a.kind, &a.name).cmp(&(&b.namespace, b.kind, &b.name)));
    if output::structured(format, &rows)? {
        return Ok(0);
    }
    if rows.is_empty() {
        let scope = if cluster.all_namespaces {
            "any namespace".to_string()
        } else {
            format!("namespace {}", cluster.namespace)
        };
        eprintln!("No ReplicationSources or ReplicationDestinations found in {scope}.");
        return Ok(0);
    }
    let now = Timestamp::now();
    let colour = output::colour_wanted();
    let mut header = vec![
        "KIND",
        "NAME",
        "STATUS",
        "LAST SYNC",
        "DURATION",
        "NEXT SYNC",
        "ADDED",
        "SNAPSHOT",
        "MESSAGE",
    ];
    if cluster.all_namespaces {
        header.insert(0, "NAMESPACE");
    }
    let dash = || ("-".to_string(), Tone::Plain);
    let table: Vec<Vec<(String, Tone)>> = rows
        .iter()
        .map(|r| {
            let mut cells = vec![
                (short_kind(r.kind).to_string(), Tone::Plain),
                (r.name.clone(), Tone::Plain),
                (r.reason.clone(), tone(r.state)),
                r.last_sync_time
                    .map_or_else(dash, |t| (output::relative(t, now), Tone::Plain)),
                r.last_sync_duration
                    .clone()
                    .map_or_else(dash, |d| (d, Tone::Plain)),
                r.next_sync_time
                    .map_or_else(dash, |t| (output::relative(t, now), Tone::Plain)),
                r.bytes_added
                    .map_or_else(dash, |b| (output::bytes(b), Tone::Plain)),
                r.snapshot.clone().map_or_else(dash, |s| (s, Tone::Plain)),
                (
                    r.last_failure.clone().unwrap_or_else(|| r.message.clone()),
                    if r.state == State::Failing {
                        Tone::Bad
                    } else {
                        Tone::Plain
                    },
                ),
            ];
            if cluster.all_namespaces {
                cells.insert(0, (r.namespace.clone(), Tone::Plain));
            }
            cells
        })
        .collect();
    output::table(&header, &table, colour);
    Ok(0)
}

fn short_kind(kind: &str) -> &'static str {
    if kind == "ReplicationSource" {
        "rsrc"
    } else {
        "rdst"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn condition(type_: &str, status: bool, reason: &str, generation: Option<i64>) -> Condition {
        Condition {
            type_: type_.into(),
            status: if status { "True" } else { "False" }.into(),
            reason: reason.into(),
            message: format!("{reason} message"),
            observed_generation: generation,
            last_transition_time: Time("2026-11-22T10:00:00Z".parse().unwrap()),
        }
    }

    fn status(observed: Option<i64>, conditions: Vec<Condition>) -> SyncStatus {
        SyncStatus {
            observed_generation: observed,
            conditions,
            ..Default::default()
        }
    }

    #[test]
    fn conditions_read_as_argo_cd_reads_them() {
        let ready = condition("Ready", true, "SyncSucceeded", Some(2));
        let cases = [
            ("no status", None, false, State::Progressing, "Pending"),
            (
                "generation not observed",
                Some(status(Some(1), vec![ready.clone()])),
                false,
                State::Progressing,
                "Pending",
            ),
            (
                "ready",
                Some(status(Some(2), vec![ready.clone()])),
                false,
                State::Ready,
                "SyncSucceeded",
            ),
            (
                "stalled wins",
                Some(status(
                    Some(2),
                    vec![
                        ready.clone(),
                        condition("Stalled", true, "WrongPassword", Some(2)),
                    ],
                )),
                false,
                State::Failing,
                "WrongPassword",
            ),
            (
                "degraded (before kstatus) fails too",
                Some(status(
                    Some(2),
                    vec![condition("Degraded", true, "NetworkError", Some(2))],
                )),
                false,
                State::Failing,
                "NetworkError",
            ),
            (
                "reconciling",
                Some(status(
                    Some(2),
                    vec![
                        condition("Ready", false, "MoverRunning", Some(2)),
                        condition("Reconciling", true, "MoverRunning", Some(2)),
                    ],
                )),
                false,
                State::Progressing,
                "MoverRunning",
            ),
            (
                "paused",
                Some(status(Some(2), vec![ready.clone()])),
                true,
                State::Paused,
                "Paused",
            ),
            (
                "a stale condition says nothing",
                Some(status(
                    Some(2),
                    vec![
                        condition("Stalled", true, "WrongPassword", Some(1)),
                        ready.clone(),
                    ],
                )),
                false,
                State::Ready,
                "SyncSucceeded",
            ),
            (
                "ready false waits",
                Some(status(
                    Some(2),
                    vec![condition("Ready", false, "WaitingForSchedule", Some(2))],
                )),
                false,
                State::Progressing,
                "WaitingForSchedule",
            ),
        ];
        for (case, status, paused, state, reason) in cases {
            let health = health(status.as_ref(), Some(2), paused);
            assert_eq!(
                (health.state, health.reason.as_str()),
                (state, reason),
                "{case}"
            );
        }
    }
}
