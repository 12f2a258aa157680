//! What kstatus makes of an object: the computation of `sigs.k8s.io/cli-utils`'
//! `pkg/kstatus/status.Compute` for a custom resource, which Flux, `kpt`,
//! `kubectl`-based tooling and Argo CD's kstatus checks run. Scenarios apply
//! it to the live ReplicationSources and ReplicationDestinations, so the
//! conditions Sluice writes are checked by the reading those tools make.
//!
//! For a kind without built-in rules, kstatus decides from the generic
//! properties only, in this order: a deletion timestamp is `Terminating`;
//! a `status.observedGeneration` other than `metadata.generation` is
//! `InProgress`; a condition `Reconciling=True` is `InProgress` and
//! `Stalled=True` is `Failed` (whichever comes first in the list);
//! anything else is `Current`.

use serde_json::Value;

/// kstatus' verdict on one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The controller has not finished acting on the spec.
    InProgress,
    /// The controller gave up until something changes.
    Failed,
    /// The spec is reconciled.
    Current,
    /// The object is being deleted.
    Terminating,
}

/// kstatus' verdict on `object` (as `kubectl get -o json` prints it), with
/// the message it gives.
pub fn compute(object: &Value) -> (Status, String) {
    if object
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.is_empty())
    {
        return (
            Status::Terminating,
            "Resource scheduled for deletion".into(),
        );
    }
    let generation = object
        .pointer("/metadata/generation")
        .and_then(Value::as_i64);
    let observed = object
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64);
    if let (Some(generation), Some(observed)) = (generation, observed)
        && generation != observed
    {
        return (
            Status::InProgress,
            format!("generation is {generation}, but latest observed generation is {observed}"),
        );
    }
    let conditions = object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for condition in conditions {
        let holds = condition["status"] == "True";
        let message = condition["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match condition["type"].as_str() {
            Some("Reconciling") if holds => return (Status::InProgress, message),
            Some("Stalled") if holds => return (Status::Failed, message),
            _ => {}
        }
    }
    (Status::Current, "Resource is current".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(generation: i64, observed: Option<i64>, conditions: Value) -> Value {
        let mut status = json!({ "conditions": conditions });
        if let Some(observed) = observed {
            status["observedGeneration"] = json!(observed);
        }
        json!({
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "ReplicationSource",
            "metadata": { "name": "db", "namespace": "apps", "generation": generation },
            "status": status,
        })
    }

    fn condition(type_: &str, status: &str, reason: &str) -> Value {
        json!({ "type": type_, "status": status, "reason": reason, "message": reason })
    }

    #[test]
    fn the_generic_rules_in_their_order() {
        let ready = condition("Ready", "True", "SyncSucceeded");
        let not_ready = condition("Ready", "False", "NetworkError");
        let reconciling = condition("Reconciling", "True", "MoverRunning");
        let idle = condition("Reconciling", "False", "WaitingForSchedule");
        let stalled = condition("Stalled", "True", "WrongPassword");
        let not_stalled = condition("Stalled", "False", "SyncSucceeded");
        let mut deleted = object(1, Some(1), json!([ready]));
        deleted["metadata"]["deletionTimestamp"] = json!("2026-11-22T10:00:00Z");
        let cases = [
            ("being deleted", deleted, Status::Terminating),
            (
                "a spec not yet observed, whatever the conditions say",
                object(2, Some(1), json!([ready, idle, not_stalled])),
                Status::InProgress,
            ),
            (
                "no observedGeneration: the conditions decide",
                object(2, None, json!([ready, idle])),
                Status::Current,
            ),
            (
                "a sync runs",
                object(1, Some(1), json!([ready, reconciling, not_stalled])),
                Status::InProgress,
            ),
            (
                "stalled",
                object(1, Some(1), json!([not_ready, idle, stalled])),
                Status::Failed,
            ),
            (
                "Reconciling listed before Stalled wins",
                object(1, Some(1), json!([reconciling, stalled])),
                Status::InProgress,
            ),
            (
                "Ready=False alone is not kstatus' business",
                object(1, Some(1), json!([not_ready, idle, not_stalled])),
                Status::Current,
            ),
            (
                "no conditions at all",
                object(1, Some(1), json!([])),
                Status::Current,
            ),
        ];
        for (name, object, expected) in cases {
            assert_eq!(compute(&object).0, expected, "{name}");
        }
    }

    #[test]
    fn the_message_is_the_deciding_condition_s() {
        let stalled = json!({"type": "Stalled", "status": "True", "reason": "WrongPassword",
            "message": "wrong password for the repository"});
        let (status, message) = compute(&object(1, Some(1), json!([stalled])));
        assert_eq!(
            (status, message.as_str()),
            (Status::Failed, "wrong password for the repository")
        );
    }
}
