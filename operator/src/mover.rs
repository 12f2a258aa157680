//! Reading what a mover Job did, from its Pod's termination message.

use k8s_openapi::api::{batch::v1::Job, core::v1::Pod};
use sluice_api::mover_result::{ErrorClass, MoverResult};

use crate::job::MOVER_CONTAINER;

/// Label the Job controller puts on a Job's Pods.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";

/// The result of a mover Pod whose container has terminated; `None` while it runs.
///
/// A message that is not a result (the mover crashed before writing one, so the kubelet fell
/// back to the log tail) becomes an `Internal` failure carrying that tail.
pub fn result_from_pod(pod: &Pod) -> Option<MoverResult> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    let status = statuses
        .iter()
        .find(|status| status.name == MOVER_CONTAINER)?;
    let terminated = status.state.as_ref()?.terminated.as_ref()?;
    let message = terminated.message.clone().unwrap_or_default();
    // With FallbackToLogsOnError the message is the log tail when the result file could not
    // be written; the mover prints its result as the last line of its output too.
    let parsed = MoverResult::from_termination_message(&message).or_else(|error| {
        message
            .lines()
            .rev()
            .find(|line| !line.trim().is_empty() && line.trim_start().starts_with('{'))
            .map_or(Err(error), MoverResult::from_termination_message)
    });
    match parsed {
        Ok(result) if terminated.exit_code != 0 && result.error_class.is_none() => {
            Some(MoverResult {
                error_class: Some(ErrorClass::Internal),
                message: Some(format!(
                    "mover exited with code {} after reporting success",
                    terminated.exit_code
                )),
                ..result
            })
        }
        Ok(result) => Some(result),
        Err(_) => Some(MoverResult {
            error_class: Some(ErrorClass::Internal),
            message: Some(without_result(
                terminated.exit_code,
                terminated.reason.as_deref(),
                memory_limit(pod).as_deref(),
                &message,
            )),
            ..Default::default()
        }),
    }
}

/// The mover container's memory limit, as its Pod spec says it.
fn memory_limit(pod: &Pod) -> Option<String> {
    let container = pod
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == MOVER_CONTAINER)?;
    let limit = container
        .resources
        .as_ref()?
        .limits
        .as_ref()?
        .get("memory")?;
    Some(limit.0.clone())
}

/// What to say of a mover that ended without writing a result: the
/// kernel's OOM killer (the container's memory limit) and a SIGKILL are
/// told apart from a crash, because they are fixed differently. A SIGKILL
/// of a container with a memory limit is most often the OOM killer even when
/// the runtime did not see it (a kill within moments of the start is
/// reported as a plain exit 137), so the limit is named with its fix.
fn without_result(
    exit_code: i32,
    reason: Option<&str>,
    memory_limit: Option<&str>,
    message: &str,
) -> String {
    let tail = last_lines(message, 5);
    match (reason, exit_code, memory_limit) {
        (Some("OOMKilled"), ..) => format!(
            "mover was killed for exceeding its memory limit (OOMKilled, exit code {exit_code}): \
             raise spec.restic.moverResources.limits.memory; last output: {tail}"
        ),
        (_, 137, Some(limit)) => format!(
            "mover was killed (SIGKILL, exit code 137) before writing a result, most likely by \
             the kernel for exceeding its memory limit of {limit} though the runtime did not \
             report OOMKilled: raise spec.restic.moverResources.limits.memory, or look for \
             what else stopped it (the node, a user); last output: {tail}"
        ),
        (_, 137, None) => format!(
            "mover was killed (SIGKILL, exit code 137) before writing a result: \
             the node, a user or a deadline stopped it; last output: {tail}"
        ),
        _ => format!("mover exited with code {exit_code} without a result: {tail}"),
    }
}

/// A failure of a Job that ended without any Pod result (deadline exceeded, Pod deleted).
pub fn result_from_failed_job(job: &Job) -> Option<MoverResult> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    let failed = conditions
        .iter()
        .find(|c| c.type_ == "Failed" && c.status == "True")?;
    Some(MoverResult {
        error_class: Some(ErrorClass::Internal),
        message: Some(format!(
            "mover Job failed: {}",
            failed
                .message
                .clone()
                .or(failed.reason.clone())
                .unwrap_or_default()
        )),
        ..Default::default()
    })
}

fn last_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.trim().lines().collect();
    lines[lines.len().saturating_sub(count)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStatus, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn terminated(exit_code: i32, message: &str) -> Pod {
        terminated_because(exit_code, None, message)
    }

    fn terminated_because(exit_code: i32, reason: Option<&str>, message: &str) -> Pod {
        Pod {
            status: Some(PodStatus {
                container_statuses: Some(vec![ContainerStatus {
                    name: MOVER_CONTAINER.into(),
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code,
                            reason: reason.map(String::from),
                            message: Some(message.into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_running_pod_has_no_result() {
        assert_eq!(result_from_pod(&Pod::default()), None);
    }

    #[test]
    fn the_termination_message_is_the_result() {
        let written = MoverResult {
            snapshot_id: Some("a".repeat(64)),
            bytes_added: 7,
            ..Default::default()
        };
        let result = result_from_pod(&terminated(0, &written.to_termination_message())).unwrap();
        assert_eq!(result, written);
        let failed = MoverResult {
            error_class: Some(ErrorClass::WrongPassword),
            ..Default::default()
        };
        let result = result_from_pod(&terminated(1, &failed.to_termination_message())).unwrap();
        assert_eq!(result.error_class, Some(ErrorClass::WrongPassword));
    }

    #[test]
    fn a_result_line_in_the_log_tail_is_the_result() {
        let written = MoverResult {
            error_class: Some(ErrorClass::RepositoryNotFound),
            message: Some("no repository".into()),
            ..Default::default()
        };
        let tail = format!(
            "Fatal: no repository\n{}\nWARN could not write the result file\n",
            written.to_termination_message()
        );
        assert_eq!(result_from_pod(&terminated(10, &tail)), Some(written));
    }

    #[test]
    fn a_crash_without_result_is_internal_with_the_log_tail() {
        let result =
            result_from_pod(&terminated(101, "line1\nthread 'main' panicked at x\n")).unwrap();
        assert_eq!(result.error_class, Some(ErrorClass::Internal));
        let message = result.message.unwrap();
        assert!(
            message.contains("code 101") && message.contains("panicked"),
            "{message}"
        );
    }

    #[test]
    fn a_mover_without_a_result_says_how_it_ended() {
        for (exit_code, reason, expected) in [
            (
                137,
                Some("OOMKilled"),
                "exceeding its memory limit (OOMKilled",
            ),
            (137, Some("Error"), "killed (SIGKILL, exit code 137)"),
            (2, Some("Error"), "exited with code 2 without a result"),
        ] {
            let pod = terminated_because(exit_code, reason, "reading files\n");
            let result = result_from_pod(&pod).unwrap();
            let message = result.message.unwrap();
            assert!(
                message.contains(expected),
                "{reason:?}/{exit_code}: {message}"
            );
            assert!(message.contains("reading files"), "{message}");
            assert!(
                !message.contains("memory limit of"),
                "no limit set: {message}"
            );
        }
    }

    #[test]
    fn a_sigkill_under_a_memory_limit_names_the_limit_and_its_fix() {
        let mut pod = terminated_because(137, Some("Error"), "");
        let spec = pod.spec.get_or_insert_with(Default::default);
        if spec.containers.is_empty() {
            spec.containers.push(Default::default());
        }
        spec.containers[0].name = MOVER_CONTAINER.into();
        spec.containers[0].resources = Some(k8s_openapi::api::core::v1::ResourceRequirements {
            limits: Some(
                [("memory".to_string(), Quantity("12Mi".into()))]
                    .into_iter()
                    .collect(),
            ),
            ..Default::default()
        });
        let message = result_from_pod(&pod).unwrap().message.unwrap();
        assert!(
            message.contains("memory limit of 12Mi")
                && message.contains("did not report OOMKilled")
                && message.contains("moverResources.limits.memory"),
            "{message}"
        );
    }
}
