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
    /// Why the run failed; absent on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<ErrorClass>,
    /// One line for humans: on failure what failed and what to do, on success a summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
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
    /// Another live process holds an exclusive lock.
    Locked,
    /// A restore found no snapshot matching the request.
    NoSnapshot,
    /// The storage backend could not be reached or kept failing.
    Network,
    /// The repository's data failed verification.
    Corrupt,
    /// The mover's configuration (environment, Secret keys, CA) is unusable.
    Config,
    /// Anything else: a bug or an unexpected condition in the mover.
    Internal,
}

impl ErrorClass {
    /// Whether running the same Job again, unchanged, can succeed. Non-retryable failures wait for
    /// a change of spec or Secret instead of a retry storm.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Locked | Self::Network | Self::Internal)
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
            Self::Internal => reason::MOVER_FAILED,
        }
    }
}

impl MoverResult {
    /// Encodes the result as JSON that fits in a termination message, shortening `message` if
    /// needed: a truncated message is better than one the kubelet cuts into invalid JSON.
    pub fn to_termination_message(&self) -> String {
        let mut result = self.clone();
        loop {
            let json = serde_json::to_string(&result).expect("MoverResult always serializes");
            if json.len() <= TERMINATION_MESSAGE_MAX_BYTES {
                return json;
            }
            let message = result.message.take().unwrap_or_default();
            if message.is_empty() {
                // Nothing left to shorten; the fixed fields alone are far below the limit.
                return json;
            }
            let excess = json.len() - TERMINATION_MESSAGE_MAX_BYTES;
            // JSON escaping can make a character longer than its UTF-8 form, so cut at least the
            // excess plus room for the ellipsis, and loop until it fits.
            let keep = message.len().saturating_sub(excess + 4);
            let mut cut = keep;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            result.message = Some(format!("{}…", &message[..cut]));
        }
    }

    /// Parses a termination message written by [`MoverResult::to_termination_message`].
    pub fn from_termination_message(message: &str) -> serde_json::Result<Self> {
        serde_json::from_str(message.trim())
    }
}
