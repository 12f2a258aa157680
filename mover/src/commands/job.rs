//! `job`: the entry point of mover Pods.
//!
//! The operator configures a run through the environment named in
//! `sluice_api::mover_env` (the sync plan's actions, retain policy, restore
//! selection) plus the repository Secret's restic variables. The run's
//! outcome goes to the termination log as one `MoverResult` JSON object,
//! which is how the operator learns the snapshot id, bytes and duration
//! without scraping logs; the exit code follows restic's.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use sluice_api::mover_env as env;
use sluice_api::mover_result::{
    ErrorClass, MAX_MISMATCH_CHARS, MAX_MISMATCHES, MoverResult, TERMINATION_LOG_PATH, Verified,
};
use sluice_repo::Repository;
use sluice_repo::archiver::BackupOptions;
use sluice_repo::backend::{BackendErrorKind, FileKind};
use sluice_repo::check::ReadData;
use sluice_repo::forget::{KeepCount, KeepDuration, RetainPolicy, parse_keep_count};
use sluice_repo::lock::{self, LockOptions};
use sluice_repo::prune::MaxUnused;
use sluice_repo::restore_mark;
use sluice_repo::restorer::{RestoreOptions, RestoreResult};
use sluice_repo::snapshot::{SnapshotEntry, SnapshotFilter};

use super::forget::ForgetOptions;
use super::restore::Onto;
use crate::args::Global;
use crate::repo_open::RepoConfig;

/// The file a Block volume's backup is stored as, at the snapshot's root:
/// one name for every backup, so each finds the last as its parent, and
/// `restic restore` yields the image as this file.
const BLOCK_IMAGE: &str = "volume.img";

/// The actions a Job may be asked for, in the order it runs them.
const ACTIONS: [&str; 8] = [
    "unlock", "backup", "forget", "prune", "check", "verify", "restore", PROBE,
];

/// The action of the operator's probe Jobs ([`probe`]); it runs alone.
const PROBE: &str = "probe";

/// What the environment asks for, parsed and checked before the repository
/// is touched.
#[derive(Debug, PartialEq)]
struct JobConfig {
    actions: Vec<String>,
    data_dir: PathBuf,
    /// The scratch directory a restore test restores into.
    verify_dir: PathBuf,
    /// A Block volume's device, read or written instead of `data_dir`.
    block_device: Option<PathBuf>,
    hostname: Option<String>,
    tags: Vec<String>,
    excludes: Vec<String>,
    /// Overrides `--retry-lock` when that is not given.
    retry_lock: Option<Duration>,
    /// Overrides `--cacert`/`RESTIC_CACERT`.
    cacert: Option<PathBuf>,
    retain: RetainPolicy,
    check: ReadData,
    restore: RestoreSelection,
}

/// Which snapshot a restore takes and what it does with the volume.
#[derive(Debug, Default, PartialEq)]
struct RestoreSelection {
    /// The newest snapshot at or before this time.
    as_of: Option<jiff::Timestamp>,
    /// Steps back from that snapshot.
    previous: usize,
    /// Delete files the snapshot does not have.
    delete: bool,
    /// No matching snapshot leaves the volume as it is instead of failing.
    empty_ok: bool,
}

/// The value of `name` in `env`, unless empty or blank.
fn var(env: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    env(name).filter(|v| !v.trim().is_empty())
}

fn list(env: &impl Fn(&str) -> Option<String>, name: &str, sep: char) -> Vec<String> {
    var(env, name)
        .map(|v| {
            v.split(sep)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Parses variable `name` with `parse`; an error names the variable.
fn parsed<T, E: std::fmt::Display>(
    env: &impl Fn(&str) -> Option<String>,
    name: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<Option<T>> {
    var(env, name)
        .map(|v| parse(v.trim()).map_err(|e| anyhow!("invalid {name}={v:?}: {e}")))
        .transpose()
}

impl JobConfig {
    /// The configuration `env` (the process environment, or a test's
    /// table) gives.
    fn new(env: impl Fn(&str) -> Option<String>) -> Result<JobConfig> {
        let actions = list(&env, env::ACTIONS, ',');
        if actions.is_empty() {
            bail!(
                "{} is empty: the Job must say what to do (e.g. backup,forget)",
                env::ACTIONS
            );
        }
        if let Some(a) = actions.iter().find(|a| !ACTIONS.contains(&a.as_str())) {
            bail!(
                "unknown action {a:?} in {}: expected one of {}",
                env::ACTIONS,
                ACTIONS.join(", ")
            );
        }
        if actions.len() > 1 && actions.iter().any(|a| a == PROBE) {
            bail!(
                "{PROBE} runs alone, not with other actions ({}={})",
                env::ACTIONS,
                actions.join(",")
            );
        }
        let count =
            |name| -> Result<KeepCount> { Ok(parsed(&env, name, parse_keep_count)?.unwrap_or(0)) };
        let retain = RetainPolicy {
            last: count(env::RETAIN_LAST)?,
            hourly: count(env::RETAIN_HOURLY)?,
            daily: count(env::RETAIN_DAILY)?,
            weekly: count(env::RETAIN_WEEKLY)?,
            monthly: count(env::RETAIN_MONTHLY)?,
            yearly: count(env::RETAIN_YEARLY)?,
            within: parsed(&env, env::RETAIN_WITHIN, str::parse::<KeepDuration>)?
                .unwrap_or_default(),
            ..RetainPolicy::default()
        };
        let restore = RestoreSelection {
            as_of: parsed(&env, env::RESTORE_AS_OF, |v| {
                v.parse::<jiff::Timestamp>()
                    .map_err(|e| format!("{e}; use RFC 3339, e.g. 2024-01-02T03:04:05Z"))
            })?,
            previous: parsed(&env, env::RESTORE_PREVIOUS, |v| {
                v.parse::<usize>().map_err(|_| "use a whole number")
            })?
            .unwrap_or(0),
            delete: var(&env, env::RESTORE_DELETE).is_some_and(|v| v == "true"),
            empty_ok: var(&env, env::ON_MISSING_SNAPSHOT).is_some_and(|v| v == "Empty"),
        };
        Ok(JobConfig {
            actions,
            data_dir: PathBuf::from(var(&env, env::DATA_DIR).unwrap_or_else(|| "/data".into())),
            verify_dir: PathBuf::from(
                var(&env, env::VERIFY_DIR).unwrap_or_else(|| "/scratch".into()),
            ),
            block_device: var(&env, env::BLOCK_DEVICE).map(PathBuf::from),
            hostname: var(&env, env::HOSTNAME),
            tags: list(&env, env::TAGS, ','),
            excludes: list(&env, env::EXCLUDES, '\n'),
            retry_lock: parsed(&env, env::RETRY_LOCK, crate::args::parse_duration)?,
            cacert: var(&env, env::CACERT).map(PathBuf::from),
            retain,
            check: parsed(&env, env::CHECK_SUBSET, str::parse::<ReadData>)?.unwrap_or_default(),
            restore,
        })
    }

    fn has(&self, action: &str) -> bool {
        self.actions.iter().any(|a| a == action)
    }
}

/// Runs the job and returns the exit code; the result is written whatever
/// happens.
pub fn run(g: &Global) -> Result<i32> {
    let started = Instant::now();
    let mut result = MoverResult::default();
    let result_file = PathBuf::from(
        std::env::var(env::RESULT_FILE)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| TERMINATION_LOG_PATH.into()),
    );
    let run = JobConfig::new(|name| std::env::var(name).ok())
        .and_then(|cfg| execute(g, &cfg, &mut result, started));
    result.duration_seconds = started.elapsed().as_secs_f64();
    let code = match &run {
        Ok(()) => 0,
        Err(e) => {
            result.error_class = Some(classify(e));
            result.message = Some(crate::exit::one_line(e));
            crate::exit::report(e, None)
        }
    };
    let message = result.to_termination_message();
    println!("{message}");
    if let Err(e) = std::fs::write(&result_file, &message) {
        tracing::warn!(path = %result_file.display(), error = %e, "could not write the result file");
    }
    Ok(code)
}

/// Opens the repository once and runs every action of the plan on that
/// handle, so a Job derives the key once however many steps it has.
fn execute(g: &Global, cfg: &JobConfig, result: &mut MoverResult, started: Instant) -> Result<()> {
    let mut g = g.clone();
    g.progress_log = true;
    tracing::info!(actions = %cfg.actions.join(","), "mover job started");
    if g.retry_lock.is_zero() {
        g.retry_lock = cfg.retry_lock.unwrap_or(Duration::from_secs(120));
    }
    if let Some(ca) = &cfg.cacert {
        g.cacert = Some(ca.clone());
    }
    let lock_hostname = cfg
        .hostname
        .clone()
        .unwrap_or_else(sluice_repo::host::hostname);
    // Every lock of the run carries the identity the next Job's unlock step compares.
    g.lock_hostname = Some(lock_hostname.clone());
    if cfg.has(PROBE) {
        return probe(&RepoConfig::from_env(&g)?, result);
    }
    let missing = if cfg.has("backup") {
        Missing::Create
    } else if cfg.has("restore") && cfg.restore.empty_ok {
        Missing::LeaveEmpty
    } else {
        Missing::Fail
    };
    let Some((mut repo, initialized)) = open_repository(&RepoConfig::from_env(&g)?, missing)?
    else {
        result.repository_missing = true;
        result.message = Some(
            "no repository at RESTIC_REPOSITORY yet; the volume was left as it is \
             (onMissingSnapshot: Empty)"
                .into(),
        );
        return Ok(());
    };
    result.initialized = initialized;
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        initialized,
        "repository opened"
    );
    if cfg.has("unlock") {
        let opts = LockOptions {
            hostname: lock_hostname.clone(),
            sole_holder: true,
            ..LockOptions::shared()
        };
        let removed = lock::remove_stale(&repo, &opts, false)?;
        result.unlocked = true;
        tracing::info!(removed, "removed stale locks");
    }
    if cfg.has("backup") {
        let mut opts = match &cfg.block_device {
            Some(device) => BackupOptions::device(device.clone(), BLOCK_IMAGE.into()),
            // `backup .` inside the volume: its contents at the snapshot's root,
            // its path in `paths`.
            None => {
                let mut opts = BackupOptions::new(vec![PathBuf::from(".")], cfg.data_dir.clone());
                opts.restored_at = restore_mark::read(&cfg.data_dir);
                opts
            }
        };
        if let Some(h) = &cfg.hostname {
            opts.hostname = h.clone();
        }
        opts.tags = cfg.tags.clone();
        opts.excludes = cfg.excludes.clone();
        let b = super::backup::backup(&mut repo, &g, &opts)?;
        let s = b.snapshot.summary.clone().unwrap_or_default();
        result.snapshot_id = Some(b.id.to_hex());
        result.snapshot_time = Some(b.snapshot.time.clone());
        result.files_new = s.files_new;
        result.files_changed = s.files_changed;
        result.files_unmodified = s.files_unmodified;
        result.bytes_added = s.data_added;
        result.total_bytes = s.total_bytes_processed;
        tracing::info!(
            snapshot = %b.id.short(),
            files_new = s.files_new,
            files_changed = s.files_changed,
            files_unmodified = s.files_unmodified,
            bytes_added = s.data_added,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "backup finished"
        );
    }
    if cfg.has("forget") {
        // Only this source's snapshots: a repository may be shared.
        let opts = ForgetOptions::for_host(lock_hostname.clone(), cfg.retain.clone());
        super::forget::forget(&mut repo, &g, &opts)?;
        result.forgot = true;
    }
    if cfg.has("prune") {
        super::prune::prune(&mut repo, &g, MaxUnused::default(), false)?;
        result.pruned = true;
    }
    if cfg.has("check") {
        super::check::check(&mut repo, &g, cfg.check)?;
        result.checked = true;
    }
    if cfg.has("verify") {
        verify(&mut repo, &g, cfg, result)?;
    }
    if cfg.has("restore") {
        restore(&mut repo, &g, cfg, result)?;
    }
    Ok(())
}

/// The restore test: restores the snapshot this run wrote (else the host's latest) into the
/// scratch directory and reads every file back against the snapshot's tree. What does not
/// match, unreadable data included, is reported in the result, not as a failure of the run:
/// the backup itself succeeded, and the operator records the verdict.
fn verify(
    repo: &mut Repository,
    g: &Global,
    cfg: &JobConfig,
    result: &mut MoverResult,
) -> Result<()> {
    let _lock = super::lock(repo, g, false)?;
    let spec = match &result.snapshot_id {
        Some(id) => id.clone(),
        None => select(repo, cfg)?.ok_or(NoSnapshot)?.id.to_hex(),
    };
    let mut opts = RestoreOptions::new(cfg.verify_dir.clone());
    opts.verify = true;
    let (snap, restored) = super::restore::restore_listing_errors(
        repo,
        g,
        &spec,
        &SnapshotFilter::default(),
        &opts,
        Onto::Directory,
    )?;
    let verified = verified(snap.id.to_hex(), &restored);
    if verified.files_mismatched == 0 {
        tracing::info!(
            snapshot = %snap.id.short(),
            files = verified.files_checked,
            bytes = verified.bytes_checked,
            "restore test passed"
        );
    } else {
        tracing::warn!(
            snapshot = %snap.id.short(),
            mismatched = verified.files_mismatched,
            files = verified.files_checked,
            "restore test failed"
        );
    }
    result.verification = Some(verified);
    Ok(())
}

/// The verdict of a restore test from what the restore did. A file counts as mismatched when
/// it could not be restored or read back as recorded; an error that names no file (a
/// directory's metadata) still fails the test.
fn verified(snapshot_id: String, restored: &RestoreResult) -> Verified {
    let files_checked = restored.files + restored.files_failed;
    let unmatched = files_checked - restored.verified.min(files_checked);
    let files_mismatched = unmatched.max(u64::from(!restored.errors.is_empty()));
    let mismatches = restored
        .errors
        .iter()
        .take(MAX_MISMATCHES)
        .map(|line| line.chars().take(MAX_MISMATCH_CHARS).collect())
        .collect();
    Verified {
        snapshot_id,
        files_checked,
        bytes_checked: restored.bytes,
        files_mismatched,
        mismatches,
    }
}

/// The operator's circuit breaker asks whether the repository's backend answers again
/// (`sluice_operator::breaker`): one quick request for the repository's `config`, retried for
/// seconds, not minutes, and nothing written or decrypted. An answer of any kind counts,
/// "no such file", "no such bucket" and "access denied" included: the breaker is about
/// reachability, and each sync then succeeds or fails on its own.
fn probe(config: &RepoConfig, result: &mut MoverResult) -> Result<()> {
    let backend = config.probe_backend()?;
    let location = backend.location();
    result.message = Some(match backend.stat(FileKind::Config, "config") {
        Ok(_) => format!("{location} answers; the repository is there"),
        Err(e) if answered(e.kind) => format!("{location} answers: {e}"),
        Err(e) => return Err(sluice_repo::Error::from(e).into()),
    });
    Ok(())
}

/// Whether a failure of this kind came from a backend that answered.
fn answered(kind: BackendErrorKind) -> bool {
    matches!(
        kind,
        BackendErrorKind::NotFound
            | BackendErrorKind::NoSuchContainer
            | BackendErrorKind::PermissionDenied
            | BackendErrorKind::AlreadyExists
            | BackendErrorKind::NoSpace
    )
}

/// What opening the repository does when nothing is there: only a missing `config` counts, a
/// wrong password or an unreachable bucket stays an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Missing {
    /// A backup creates it, as VolSync's restic mover does, so a new ReplicationSource needs no
    /// manual `init`.
    Create,
    /// A restore with `onMissingSnapshot: Empty` leaves the volume as it is: the first
    /// deployment of an application whose repository does not exist yet.
    LeaveEmpty,
    /// Any other restore fails with `RepositoryNotFound`; restores never create repositories.
    Fail,
}

/// Opens the repository for the whole Job: the repository and whether it was created, or
/// `None` when it is missing and `missing` says to leave it so.
fn open_repository(config: &RepoConfig, missing: Missing) -> Result<Option<(Repository, bool)>> {
    let backend = config.backend()?;
    if missing != Missing::Fail {
        match backend.stat(FileKind::Config, "config") {
            Ok(_) => {}
            Err(e) if e.is_not_found() || e.kind == BackendErrorKind::NoSuchContainer => {
                if missing == Missing::LeaveEmpty {
                    tracing::info!(location = %backend.location(), "no repository yet");
                    return Ok(None);
                }
                let location = backend.location();
                match config.init(backend.clone()) {
                    Ok(repo) => {
                        tracing::info!(%location, id = %repo.config().id, "created the repository");
                        return Ok(Some((repo, true)));
                    }
                    // Another source sharing the repository created it first.
                    Err(sluice_repo::Error::RepositoryExists { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(sluice_repo::Error::from(e).into()),
        }
    }
    Ok(Some((config.open_at(backend)?, false)))
}

/// Picks the snapshot a restore asks for: the newest (at or before
/// `restoreAsOf`), then `previous` steps back.
fn select(repo: &Repository, cfg: &JobConfig) -> Result<Option<SnapshotEntry>> {
    let filter = SnapshotFilter {
        hosts: cfg.hostname.iter().cloned().collect(),
        ..Default::default()
    };
    let mut snaps: Vec<SnapshotEntry> = repo
        .list_snapshots()?
        .into_iter()
        .filter(|e| filter.matches(&e.snapshot))
        .collect();
    if let Some(t) = cfg.restore.as_of {
        // Kubernetes times have whole seconds, so `restoreAsOf` copied from
        // a status field names the second a snapshot was taken in; that
        // snapshot counts as at or before it.
        snaps.retain(|e| e.snapshot.timestamp().as_second() <= t.as_second());
    }
    Ok(snaps
        .len()
        .checked_sub(1 + cfg.restore.previous)
        .map(|i| snaps.swap_remove(i)))
}

fn restore(
    repo: &mut Repository,
    g: &Global,
    cfg: &JobConfig,
    result: &mut MoverResult,
) -> Result<()> {
    // Taken before the selection: with an exclusive holder (a prune, a forget) the restore
    // fails as Locked, and an empty listing is never taken for "no snapshot yet".
    let _lock = super::lock(repo, g, false)?;
    let Some(snap) = select(repo, cfg)? else {
        if cfg.restore.empty_ok {
            result.message = Some(
                "no matching snapshot; the volume was left as it is (onMissingSnapshot: Empty)"
                    .into(),
            );
            return Ok(());
        }
        return Err(NoSnapshot.into());
    };
    let (target, onto) = match &cfg.block_device {
        Some(device) => (device.clone(), Onto::Device),
        None => {
            if is_block_image(&snap) {
                return Err(VolumeModeMismatch(snap.id.short()).into());
            }
            (cfg.data_dir.clone(), Onto::Directory)
        }
    };
    let mut opts = RestoreOptions::new(target);
    opts.delete = cfg.restore.delete;
    opts.verify = true;
    let (snap, r) = super::restore::restore(
        repo,
        g,
        &snap.id.to_hex(),
        &SnapshotFilter::default(),
        &opts,
        onto,
    )?;
    if onto == Onto::Directory
        && let Err(e) = restore_mark::write(&cfg.data_dir, jiff::Timestamp::now())
    {
        // The data is restored; only the next backup's shortcut is lost.
        tracing::warn!(error = %e, "the next backup reads every file again");
    }
    result.snapshot_id = Some(snap.id.to_hex());
    result.snapshot_time = Some(snap.snapshot.time.clone());
    result.total_bytes = r.bytes;
    result.message = Some(format!(
        "restored {} files ({} bytes), verified {}",
        r.files, r.bytes, r.verified
    ));
    Ok(())
}

/// No snapshot matches the restore's selection.
#[derive(Debug, thiserror::Error)]
#[error(
    "no snapshot matches the restore request: back the source up first, or set onMissingSnapshot: Empty to accept an empty volume"
)]
struct NoSnapshot;

/// Whether a snapshot is a Block volume's backup: the one path a Job's
/// block backup records.
fn is_block_image(snap: &SnapshotEntry) -> bool {
    snap.snapshot.paths == [format!("/{BLOCK_IMAGE}")]
}

/// A Block volume's image asked to be restored into a Filesystem volume,
/// where it would land as one large file nobody can mount.
#[derive(Debug, thiserror::Error)]
#[error(
    "snapshot {0} is a Block volume's image ({BLOCK_IMAGE}): set spec.restic.volumeMode: Block to write it onto a Block volume"
)]
struct VolumeModeMismatch(String);

/// The failure class the operator acts on.
fn classify(e: &anyhow::Error) -> ErrorClass {
    use sluice_repo::Error as E;
    if e.downcast_ref::<NoSnapshot>().is_some() {
        return ErrorClass::NoSnapshot;
    }
    if e.downcast_ref::<VolumeModeMismatch>().is_some() {
        return ErrorClass::VolumeModeMismatch;
    }
    match e.downcast_ref::<E>() {
        Some(E::WrongPassword { .. }) => ErrorClass::WrongPassword,
        Some(E::RepositoryNotFound { .. }) => ErrorClass::RepositoryNotFound,
        Some(E::Locked { .. }) => ErrorClass::Locked,
        Some(E::Corrupt { .. }) | Some(E::BlobMissing { .. }) | Some(E::ConfigMissing { .. }) => {
            ErrorClass::Corrupt
        }
        Some(E::Invalid(_)) | Some(E::SnapshotNotFound { .. }) => ErrorClass::Config,
        Some(E::Backend(b)) => match b.kind {
            BackendErrorKind::PermissionDenied | BackendErrorKind::NoSuchContainer => {
                ErrorClass::Config
            }
            BackendErrorKind::NotFound => ErrorClass::Corrupt,
            _ => ErrorClass::Network,
        },
        Some(E::NotAnImage { .. }) => ErrorClass::VolumeModeMismatch,
        Some(E::Io { .. }) | Some(E::RepositoryExists { .. }) => ErrorClass::Internal,
        None => ErrorClass::Config,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<JobConfig> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        JobConfig::new(move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn a_plan_alone_gets_the_defaults() {
        let c = config(&[(env::ACTIONS, "backup")]).unwrap();
        assert_eq!(
            c,
            JobConfig {
                actions: vec!["backup".into()],
                data_dir: "/data".into(),
                verify_dir: "/scratch".into(),
                block_device: None,
                hostname: None,
                tags: vec![],
                excludes: vec![],
                retry_lock: None,
                cacert: None,
                retain: RetainPolicy::default(),
                check: ReadData::None,
                restore: RestoreSelection::default(),
            }
        );
    }

    #[test]
    fn every_variable_becomes_a_typed_setting() {
        let c = config(&[
            (env::ACTIONS, " unlock, backup,forget,,prune,check "),
            (env::DATA_DIR, "/volume"),
            (env::HOSTNAME, "ns/src"),
            (env::TAGS, "hourly, sluice"),
            (env::EXCLUDES, "*.tmp\n\n/cache\n"),
            (env::RETRY_LOCK, "5m"),
            (env::CACERT, "/ca/ca.crt"),
            (env::RETAIN_LAST, "3"),
            (env::RETAIN_HOURLY, "24"),
            (env::RETAIN_DAILY, "7"),
            (env::RETAIN_WEEKLY, "unlimited"),
            (env::RETAIN_MONTHLY, "2"),
            (env::RETAIN_YEARLY, "1"),
            (env::RETAIN_WITHIN, "3d"),
            (env::CHECK_SUBSET, "2/5"),
            (env::RESTORE_AS_OF, "2024-01-02T03:04:05Z"),
            (env::RESTORE_PREVIOUS, "2"),
            (env::RESTORE_DELETE, "true"),
            (env::ON_MISSING_SNAPSHOT, "Empty"),
        ])
        .unwrap();
        assert_eq!(c.actions, ["unlock", "backup", "forget", "prune", "check"]);
        assert_eq!(c.data_dir, PathBuf::from("/volume"));
        assert_eq!(c.hostname.as_deref(), Some("ns/src"));
        assert_eq!(c.tags, ["hourly", "sluice"]);
        assert_eq!(c.excludes, ["*.tmp", "/cache"]);
        assert_eq!(c.retry_lock, Some(Duration::from_secs(300)));
        assert_eq!(c.cacert, Some(PathBuf::from("/ca/ca.crt")));
        assert_eq!(
            c.retain,
            RetainPolicy {
                last: 3,
                hourly: 24,
                daily: 7,
                weekly: sluice_repo::forget::UNLIMITED,
                monthly: 2,
                yearly: 1,
                within: "3d".parse().unwrap(),
                ..RetainPolicy::default()
            }
        );
        assert_eq!(c.check, ReadData::Part { n: 2, t: 5 });
        assert_eq!(
            c.restore,
            RestoreSelection {
                as_of: Some("2024-01-02T03:04:05Z".parse().unwrap()),
                previous: 2,
                delete: true,
                empty_ok: true,
            }
        );
    }

    #[test]
    fn a_restore_test_counts_every_file_that_did_not_come_back() {
        let restored = |files, files_failed, verified, errors: &[&str]| RestoreResult {
            files,
            files_failed,
            bytes: 100,
            verified,
            errors: errors.iter().map(|e| e.to_string()).collect(),
            ..Default::default()
        };
        let long = "x".repeat(500);
        let many: Vec<String> = (0..9).map(|i| format!("/f{i}: content differs")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        // (what the restore did, files checked, mismatched, mismatch lines kept)
        let cases = [
            (restored(3, 0, 3, &[]), 3, 0, 0),
            (
                restored(3, 0, 2, &["/a: verification failed: size 1 differs"]),
                3,
                1,
                1,
            ),
            (
                restored(2, 1, 2, &["/b: blob 12 could not be read"]),
                3,
                1,
                1,
            ),
            (restored(3, 0, 3, &["/dir: cannot set mode"]), 3, 1, 1),
            (restored(9, 0, 0, &many), 9, 9, MAX_MISMATCHES),
            (restored(1, 0, 0, &[&long]), 1, 1, 1),
        ];
        for (i, (restored, checked, mismatched, lines)) in cases.into_iter().enumerate() {
            let v = verified("id".into(), &restored);
            assert_eq!(v.files_checked, checked, "case {i}");
            assert_eq!(v.files_mismatched, mismatched, "case {i}");
            assert_eq!(v.mismatches.len(), lines, "case {i}");
            assert!(
                v.mismatches.iter().all(|m| m.chars().count() <= 200),
                "case {i}"
            );
            assert_eq!(v.bytes_checked, 100);
        }
    }

    #[test]
    fn a_probe_is_a_job_of_its_own() {
        let c = config(&[(env::ACTIONS, "probe")]).unwrap();
        assert_eq!(c.actions, ["probe"]);
    }

    #[test]
    fn only_a_backend_that_did_not_answer_fails_a_probe() {
        use BackendErrorKind as K;
        let cases = [
            (K::NotFound, true),
            (K::NoSuchContainer, true),
            (K::PermissionDenied, true),
            (K::AlreadyExists, true),
            (K::NoSpace, true),
            (K::Transient, false),
            (K::Other, false),
        ];
        for (kind, answered_) in cases {
            assert_eq!(answered(kind), answered_, "{kind:?}");
        }
    }

    #[test]
    fn bad_values_are_refused_naming_the_variable() {
        for (name, value, expected) in [
            (env::ACTIONS, "", "SLUICE_JOB_ACTIONS is empty"),
            (
                env::ACTIONS,
                "backup,frobnicate",
                "unknown action \"frobnicate\"",
            ),
            (env::RETAIN_LAST, "-1", "SLUICE_RETAIN_LAST"),
            (env::RETAIN_DAILY, "seven", "SLUICE_RETAIN_DAILY"),
            (env::RETAIN_WITHIN, "3x", "SLUICE_RETAIN_WITHIN"),
            (env::CHECK_SUBSET, "200%", "SLUICE_CHECK_SUBSET"),
            (env::RESTORE_AS_OF, "yesterday", "use RFC 3339"),
            (env::RESTORE_PREVIOUS, "-1", "use a whole number"),
            (env::RETRY_LOCK, "5", "SLUICE_RETRY_LOCK"),
            (env::ACTIONS, "probe,backup", "probe runs alone"),
        ] {
            let mut vars = vec![(env::ACTIONS, "backup")];
            vars.retain(|(k, _)| *k != name);
            vars.push((name, value));
            let err = config(&vars).expect_err("must fail").to_string();
            assert!(err.contains(expected), "{name}={value:?}: {err}");
        }
    }
}
