//! The result a mover Job reports back to the operator.
//!
//! `sluice-mover job` writes one [`MoverResult`] as JSON to `/dev/termination-log`; the kubelet
//! copies it into the Pod's `state.terminated.message`, where the operator reads it. This is the
//! only channel between the two, so the type is plain serde (no Kubernetes types) and must stay
//! within the kubelet's 4096-byte limit for termination messages.

use serde::{Deserialize, Serialize};

use crate::conditions::reason;

/// Where the mover writes its result, and where the kubelet looks for it.
pub const TERMINATION_LOG_PATH: &str = "/dev/termination-log";

/// The kubelet keeps at most this many bytes of a termination message; a longer one is cut and
/// would no longer parse as JSON.
pub const TERMINATION_MESSAGE_MAX_BYTES: usize = 4096;

/// What one mover run did, written by `sluice-mover job` and read by the operator.
///
/// A backup fills the snapshot it wrote and its file/byte counts; a restore fills the snapshot it
/// restored, with `totalBytes` the bytes written. A failed run sets `errorClass` and `message` and
/// keeps whatever counts it had reached.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MoverResult {
    /// Full id (64 hex digits) of the snapshot written (backup) or restored (restore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// The snapshot's time, RFC 3339, as recorded in the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_time: Option<String>,
    /// Files not present in the parent snapshot.
    #[serde(default)]
    pub files_new: u64,
    /// Files present in the parent snapshot whose content or metadata changed.
    #[serde(default)]
    pub files_changed: u64,
    /// Files taken over from the parent snapshot without reading them again.
    #[serde(default)]
    pub files_unmodified: u64,
    /// Bytes of new blobs stored in the repository, after deduplication, before compression.
    #[serde(default)]
    pub bytes_added: u64,
    /// Bytes of file content in the snapshot (backup) or written to the volume (restore).
    #[serde(default)]
    pub total_bytes: u64,
    /// Wall-clock duration of the whole run, in seconds.
    #[serde(default)]
    pub duration_seconds: f64,
    /// The backup found no repository and created it.
    #[serde(default)]
    pub initialized: bool,
    /// A restore allowed to leave the volume empty (`onMissingSnapshot: Empty`) found no
    /// repository at all, as on an application's first deployment.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repository_missing: bool,
    /// Stale locks were removed before the run.
    #[serde(default)]
    pub unlocked: bool,
    /// `forget` ran with the retain policy.
    #[serde(default)]
    pub forgot: bool,
    /// `prune` ran to completion, so the operator may stamp `status.restic.lastPruned`.
    #[serde(default)]
    pub pruned: bool,
    /// `check` ran to completion, so the operator may stamp `status.restic.lastChecked`.
    #[serde(default)]
    pub checked: bool,
    /// What the restore test (`verify`) found; absent when none ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verified>,
    /// Why the run failed; absent on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<ErrorClass>,
    /// One line for humans: on failure what failed and what to do, on success a summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The mismatches a result carries at most, and the characters of each: the termination
/// message holds 4096 bytes.
pub const MAX_MISMATCHES: usize = 5;
/// See [`MAX_MISMATCHES`].
pub const MAX_MISMATCH_CHARS: usize = 200;

/// What a restore test found: the snapshot, what was read back, and what did not match.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Verified {
    /// Full id of the snapshot restored.
    pub snapshot_id: String,
    /// Files restored and read back.
    pub files_checked: u64,
    /// Bytes restored and read back.
    pub bytes_checked: u64,
    /// Files that did not restore as recorded (unreadable data included).
    pub files_mismatched: u64,
    /// The first [`MAX_MISMATCHES`], one line each, at most [`MAX_MISMATCH_CHARS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mismatches: Vec<String>,
}

/// The kinds of failure the operator reacts to differently.
///
/// The class decides between retrying with backoff and waiting for the user to change something;
/// see [`ErrorClass::is_retryable`].
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// No key in the repository opens with the given password.
    WrongPassword,
    /// Nothing at `RESTIC_REPOSITORY` looks like a repository.
    RepositoryNotFound,
    /// Another live process held a conflicting lock for the whole lock-retry window
    /// (`SLUICE_RETRY_LOCK`): waiting longer is a person's decision, not a retry loop's.
    Locked,
    /// A restore found no snapshot matching the request.
    NoSnapshot,
    /// The storage backend could not be reached or kept failing.
    Network,
    /// The repository's data failed verification.
    Corrupt,
    /// The mover's configuration (environment, Secret keys, CA) is unusable.
    Config,
    /// The snapshot does not fit the volume's mode (`spec.restic.volumeMode`).
    VolumeModeMismatch,
    /// Anything else: a bug or an unexpected condition in the mover.
    Internal,
}

impl ErrorClass {
    /// Whether running the same Job again, unchanged, can succeed. Non-retryable failures wait for
    /// a change of spec or Secret instead of a retry storm.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Network | Self::Internal)
    }

    /// The condition reason the operator reports for this failure.
    pub fn condition_reason(self) -> &'static str {
        match self {
            Self::WrongPassword => reason::WRONG_PASSWORD,
            Self::RepositoryNotFound => reason::REPOSITORY_NOT_FOUND,
            Self::Locked => reason::REPOSITORY_LOCKED,
            Self::NoSnapshot => reason::NO_SNAPSHOT,
            Self::Network => reason::NETWORK_ERROR,
            Self::Corrupt => reason::REPOSITORY_CORRUPT,
            Self::Config => reason::MOVER_CONFIG_INVALID,
            Self::VolumeModeMismatch => reason::VOLUME_MODE_MISMATCH,
            Self::Internal => reason::MOVER_FAILED,
        }
    }
}

impl MoverResult {
    /// Encodes the result as JSON that fits in a termination message, shortening `message` if
    /// needed: a truncated message is better than one the kubelet cuts into invalid JSON.
    pub fn to_termination_message(&self) -> String {
        let encode = |result: &MoverResult| {
            serde_json::to_string(result).expect("MoverResult always serializes")
        };
        let json = encode(self);
        let Some(message) = self
            .message
            .as_deref()
            .filter(|_| json.len() > TERMINATION_MESSAGE_MAX_BYTES)
        else {
            return json;
        };
        // JSON escaping makes the encoded length of a prefix hard to predict, so search for the
        // longest prefix (in characters) whose encoding fits.
        let boundaries: Vec<usize> = message.char_indices().map(|(i, _)| i).collect();
        let with_prefix = |chars: usize| {
            let mut shortened = self.clone();
            shortened.message = Some(format!("{}…", &message[..boundaries[chars]]));
            encode(&shortened)
        };
        let (mut fits, mut too_long) = (0, boundaries.len());
        while too_long - fits > 1 {
            let middle = (fits + too_long) / 2;
            if with_prefix(middle).len() <= TERMINATION_MESSAGE_MAX_BYTES {
                fits = middle;
            } else {
                too_long = middle;
            }
        }
        with_prefix(fits)
    }

    /// Parses a termination message written by [`MoverResult::to_termination_message`].
    pub fn from_termination_message(message: &str) -> serde_json::Result<Self> {
        serde_json::from_str(message.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> MoverResult {
        MoverResult {
            snapshot_id: Some("a".repeat(64)),
            snapshot_time: Some("2026-11-22T10:00:00.123456789Z".into()),
            files_new: 1,
            files_changed: 2,
            files_unmodified: 3,
            bytes_added: 4,
            total_bytes: 5,
            duration_seconds: 6.5,
            initialized: true,
            repository_missing: true,
            unlocked: true,
            forgot: true,
            pruned: true,
            checked: false,
            verification: Some(Verified {
                snapshot_id: "b".repeat(64),
                files_checked: 7,
                bytes_checked: 8,
                files_mismatched: 1,
                mismatches: vec!["/etc/x: content differs from blob 1234".into()],
            }),
            error_class: Some(ErrorClass::Network),
            message: Some("saving pack: connection refused; check RESTIC_REPOSITORY".into()),
        }
    }

    #[test]
    fn wire_format_uses_camel_case_names() {
        let json = serde_json::to_value(full()).unwrap();
        for key in [
            "snapshotId",
            "snapshotTime",
            "filesNew",
            "filesChanged",
            "repositoryMissing",
            "filesUnmodified",
            "bytesAdded",
            "totalBytes",
            "durationSeconds",
            "unlocked",
            "forgot",
            "pruned",
            "checked",
            "errorClass",
            "message",
        ] {
            assert!(json.get(key).is_some(), "missing {key} in {json}");
        }
        assert_eq!(json["errorClass"], "Network");
    }

    #[test]
    fn termination_message_round_trips() {
        let message = full().to_termination_message();
        assert_eq!(
            MoverResult::from_termination_message(&message).unwrap(),
            full()
        );
    }

    #[test]
    fn missing_counts_default_to_zero() {
        let result = MoverResult::from_termination_message(
            r#"{"errorClass":"WrongPassword","message":"wrong password"}"#,
        )
        .unwrap();
        assert_eq!(result.files_new, 0);
        assert_eq!(result.error_class, Some(ErrorClass::WrongPassword));
    }

    #[test]
    fn long_message_is_cut_to_fit_the_termination_limit() {
        for filler in ["x", "\"", "é", "\u{1}"] {
            let mut result = full();
            result.message = Some(filler.repeat(10_000));
            let encoded = result.to_termination_message();
            assert!(
                encoded.len() <= TERMINATION_MESSAGE_MAX_BYTES,
                "{filler:?}: {}",
                encoded.len()
            );
            let decoded = MoverResult::from_termination_message(&encoded).unwrap();
            let message = decoded.message.unwrap();
            assert!(message.ends_with('…'));
            assert!(
                encoded.len() > TERMINATION_MESSAGE_MAX_BYTES - 8,
                "{filler:?}: cut far more than needed ({} bytes)",
                encoded.len()
            );
            assert_eq!(decoded.snapshot_id, result.snapshot_id);
        }
    }

    #[test]
    fn every_error_class_has_a_camel_case_reason() {
        use ErrorClass::*;
        for class in [
            WrongPassword,
            RepositoryNotFound,
            Locked,
            NoSnapshot,
            Network,
            Corrupt,
            Config,
            VolumeModeMismatch,
            Internal,
        ] {
            let reason = class.condition_reason();
            assert!(reason.chars().all(char::is_alphanumeric), "{reason}");
            assert!(reason.starts_with(char::is_uppercase), "{reason}");
        }
        assert!(!WrongPassword.is_retryable());
        assert!(!Locked.is_retryable());
        assert!(Network.is_retryable());
    }
}
