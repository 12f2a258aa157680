//! Environment variables through which the operator configures a `sluice-mover job` run.
//!
//! The mover Pod gets these next to the repository Secret's restic variables. Both sides use
//! the names from here, so a rename cannot leave them disagreeing.

/// Comma-separated actions of the sync plan, in order (`unlock,backup,forget,prune,check` or
/// `restore`), spelled as `status.syncPlan.actions`.
pub const ACTIONS: &str = "SLUICE_JOB_ACTIONS";
/// Directory backed up from or restored into. Default: `/data`.
pub const DATA_DIR: &str = "SLUICE_DATA_DIR";
/// A Block volume's device in the mover: backups read it as one file, restores write the
/// snapshot's one regular file onto it. Unset for Filesystem volumes, which are at
/// [`DATA_DIR`].
pub const BLOCK_DEVICE: &str = "SLUICE_BLOCK_DEVICE";
/// Host name recorded in snapshots (backup) or required of them (restore).
pub const HOSTNAME: &str = "SLUICE_HOSTNAME";
/// Comma-separated tags recorded on the snapshot.
pub const TAGS: &str = "SLUICE_TAGS";
/// Newline-separated exclude patterns, as restic's `--exclude`.
pub const EXCLUDES: &str = "SLUICE_EXCLUDES";
/// Where the result JSON goes. Default: [`crate::mover_result::TERMINATION_LOG_PATH`].
pub const RESULT_FILE: &str = "SLUICE_RESULT_FILE";
/// How long to retry taking the repository lock (restic's `--retry-lock`, e.g. `5m`).
pub const RETRY_LOCK: &str = "SLUICE_RETRY_LOCK";
/// Path of a PEM CA certificate to trust for the repository endpoint.
pub const CACERT: &str = "SLUICE_CACERT";
/// `forget --keep-last`.
pub const RETAIN_LAST: &str = "SLUICE_RETAIN_LAST";
/// `forget --keep-hourly`.
pub const RETAIN_HOURLY: &str = "SLUICE_RETAIN_HOURLY";
/// `forget --keep-daily`.
pub const RETAIN_DAILY: &str = "SLUICE_RETAIN_DAILY";
/// `forget --keep-weekly`.
pub const RETAIN_WEEKLY: &str = "SLUICE_RETAIN_WEEKLY";
/// `forget --keep-monthly`.
pub const RETAIN_MONTHLY: &str = "SLUICE_RETAIN_MONTHLY";
/// `forget --keep-yearly`.
pub const RETAIN_YEARLY: &str = "SLUICE_RETAIN_YEARLY";
/// `forget --keep-within`.
pub const RETAIN_WITHIN: &str = "SLUICE_RETAIN_WITHIN";
/// `check --read-data-subset` argument (`5%`, `1/10`).
pub const CHECK_SUBSET: &str = "SLUICE_CHECK_SUBSET";
/// Restore the latest snapshot at or before this RFC 3339 time.
pub const RESTORE_AS_OF: &str = "SLUICE_RESTORE_AS_OF";
/// Skip this many snapshots back from the one otherwise picked.
pub const RESTORE_PREVIOUS: &str = "SLUICE_RESTORE_PREVIOUS";
/// `true`: delete files not in the snapshot (`spec.restic.enableFileDeletion`).
pub const RESTORE_DELETE: &str = "SLUICE_RESTORE_DELETE";
/// `Fail` or `Empty`, as `spec.restic.onMissingSnapshot`.
pub const ON_MISSING_SNAPSHOT: &str = "SLUICE_ON_MISSING_SNAPSHOT";
/// The scratch directory a restore test (`verify`) restores into. Default: `/scratch`.
pub const VERIFY_DIR: &str = "SLUICE_VERIFY_DIR";
