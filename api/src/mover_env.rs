//! The environment of a mover Pod: how the operator tells `sluice-mover job`
//! what to do. The operator sets these variables on the Job's container
//! (beside the repository Secret's keys, which keep restic's names); the
//! mover reads them. Both sides use these constants, so a rename cannot
//! split them.

/// Comma-separated actions of this run, in order, from the sync plan:
/// `unlock`, `backup`, `forget`, `prune`, `check` for a source; `restore`
/// for a destination.
pub const ACTIONS: &str = "SLUICE_JOB_ACTIONS";
/// Where the volume is mounted (default `/data`).
pub const DATA_DIR: &str = "SLUICE_DATA_DIR";
/// Hostname recorded in snapshots and written in locks. Every Job of one
/// ReplicationSource uses the same value and runs alone, so the mover treats
/// leftover locks with this hostname as stale.
pub const HOSTNAME: &str = "SLUICE_HOSTNAME";
/// Comma-separated snapshot tags.
pub const TAGS: &str = "SLUICE_TAGS";
/// Newline-separated exclude patterns.
pub const EXCLUDES: &str = "SLUICE_EXCLUDES";
/// Retain policy, restic's `--keep-*` values (integers) ...
pub const RETAIN_LAST: &str = "SLUICE_RETAIN_LAST";
pub const RETAIN_HOURLY: &str = "SLUICE_RETAIN_HOURLY";
pub const RETAIN_DAILY: &str = "SLUICE_RETAIN_DAILY";
pub const RETAIN_WEEKLY: &str = "SLUICE_RETAIN_WEEKLY";
pub const RETAIN_MONTHLY: &str = "SLUICE_RETAIN_MONTHLY";
pub const RETAIN_YEARLY: &str = "SLUICE_RETAIN_YEARLY";
/// ... and `--keep-within` (a restic duration such as `7d` or `1y6m`).
pub const RETAIN_WITHIN: &str = "SLUICE_RETAIN_WITHIN";
/// `check --read-data-subset` value for a scheduled check, e.g. `5%`.
pub const CHECK_SUBSET: &str = "SLUICE_CHECK_SUBSET";
/// Restore the newest snapshot at or before this RFC 3339 time.
pub const RESTORE_AS_OF: &str = "SLUICE_RESTORE_AS_OF";
/// Restore the snapshot this many before the selected one (0 = it).
pub const RESTORE_PREVIOUS: &str = "SLUICE_RESTORE_PREVIOUS";
/// `true`: delete files in the volume that the snapshot does not have.
pub const RESTORE_DELETE: &str = "SLUICE_RESTORE_DELETE";
/// `Fail` (default) or `Empty`: what a restore does when no snapshot matches.
pub const ON_MISSING_SNAPSHOT: &str = "SLUICE_ON_MISSING_SNAPSHOT";
/// How long to wait for a lock held by a live process (e.g. `10m`).
pub const RETRY_LOCK: &str = "SLUICE_RETRY_LOCK";
/// Where to write the result (default [`crate::mover_result::TERMINATION_LOG_PATH`]).
pub const RESULT_FILE: &str = "SLUICE_RESULT_FILE";
/// Path of a CA bundle for TLS to object storage (restic's `RESTIC_CACERT`).
pub const CACERT: &str = "RESTIC_CACERT";
