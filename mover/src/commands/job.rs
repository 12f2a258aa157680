//! `job`: the entry point of mover Pods.
//!
//! The operator configures a run through the environment named in
//! `sluice_api::mover_env` (the sync plan's actions, retain policy, restore
//! selection) plus the repository Secret's restic variables. The run's
//! outcome goes to the termination log as one `MoverResult` JSON object,
//! which is how the operator learns the snapshot id, bytes and duration
//! without scraping logs; the exit code follows restic's.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Parser as _;
use sluice_api::mover_env as env;
use sluice_api::mover_result::{ErrorClass, MoverResult, TERMINATION_LOG_PATH};
use sluice_repo::archiver::BackupOptions;
use sluice_repo::backend::{BackendErrorKind, FileKind};
use sluice_repo::lock::{self, LockOptions};
use sluice_repo::restorer::RestoreOptions;
use sluice_repo::snapshot::{SnapshotEntry, SnapshotFilter};

use crate::args::{Cli, Global};
use crate::repo_open;

/// What the environment asks for.
struct JobConfig {
    actions: Vec<String>,
    data_dir: PathBuf,
    hostname: Option<String>,
    tags: Vec<String>,
    excludes: Vec<String>,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn list(name: &str, sep: char) -> Vec<String> {
    var(name)
        .map(|v| {
            v.split(sep)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

impl JobConfig {
    fn from_env() -> Result<JobConfig> {
        let actions = list(env::ACTIONS, ',');
        if actions.is_empty() {
            bail!(
                "{} is empty: the Job must say what to do (e.g. backup,forget)",
                env::ACTIONS
            );
        }
        const KNOWN: [&str; 6] = ["unlock", "backup", "forget", "prune", "check", "restore"];
        if let Some(a) = actions.iter().find(|a| !KNOWN.contains(&a.as_str())) {
            bail!(
                "unknown action {a:?} in {}: expected one of {}",
                env::ACTIONS,
                KNOWN.join(", ")
            );
        }
        Ok(JobConfig {
            actions,
            data_dir: PathBuf::from(var(env::DATA_DIR).unwrap_or_else(|| "/data".into())),
            hostname: var(env::HOSTNAME),
            tags: list(env::TAGS, ','),
            excludes: list(env::EXCLUDES, '\n'),
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
    let result_file =
        PathBuf::from(var(env::RESULT_FILE).unwrap_or_else(|| TERMINATION_LOG_PATH.into()));
    let run = JobConfig::from_env().and_then(|cfg| execute(g, &cfg, &mut result));
    result.duration_seconds = started.elapsed().as_secs_f64();
    let code = match &run {
        Ok(()) => 0,
        Err(e) => {
            result.error_class = Some(classify(e));
            result.message = Some(one_line(e));
            crate::exit::report(e)
        }
    };
    let message = result.to_termination_message();
    println!("{message}");
    if let Err(e) = std::fs::write(&result_file, &message) {
        tracing::warn!(path = %result_file.display(), error = %e, "could not write the result file");
    }
    Ok(code)
}

fn execute(g: &Global, cfg: &JobConfig, result: &mut MoverResult) -> Result<()> {
    let mut g = g.clone();
    if g.retry_lock.is_zero() {
        g.retry_lock = match var(env::RETRY_LOCK) {
            Some(d) => crate::args::parse_duration(&d).map_err(anyhow::Error::msg)?,
            None => std::time::Duration::from_secs(120),
        };
    }
    if let Some(ca) = var(env::CACERT) {
        g.cacert = Some(PathBuf::from(ca));
    }
    let lock_hostname = cfg
        .hostname
        .clone()
        .unwrap_or_else(sluice_repo::host::hostname);
    // Every lock of the run carries the identity the next Job's unlock step compares.
    g.lock_hostname = Some(lock_hostname.clone());
    if cfg.has("backup") {
        result.initialized = initialize_if_missing(&g)?;
    }
    if cfg.has("unlock") {
        let repo = repo_open::open(&g)?;
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
        let mut opts = BackupOptions::new(vec![PathBuf::from(".")]);
        if let Some(h) = &cfg.hostname {
            opts.hostname = h.clone();
        }
        opts.tags = cfg.tags.clone();
        opts.excludes = cfg.excludes.clone();
        std::env::set_current_dir(&cfg.data_dir)
            .with_context(|| format!("cannot enter the volume at {}", cfg.data_dir.display()))?;
        let b = super::backup::run_backup(&g, &opts)?;
        let s = b.snapshot.summary.clone().unwrap_or_default();
        result.snapshot_id = Some(b.id.to_hex());
        result.snapshot_time = Some(b.snapshot.time.clone());
        result.files_new = s.files_new;
        result.files_changed = s.files_changed;
        result.files_unmodified = s.files_unmodified;
        result.bytes_added = s.data_added;
        result.total_bytes = s.total_bytes_processed;
    }
    if cfg.has("forget") {
        // Only this source's snapshots: a repository may be shared.
        let mut argv = vec!["forget".to_string(), "--host".into(), lock_hostname.clone()];
        for (flag, name) in [
            ("--keep-last", env::RETAIN_LAST),
            ("--keep-hourly", env::RETAIN_HOURLY),
            ("--keep-daily", env::RETAIN_DAILY),
            ("--keep-weekly", env::RETAIN_WEEKLY),
            ("--keep-monthly", env::RETAIN_MONTHLY),
            ("--keep-yearly", env::RETAIN_YEARLY),
            ("--keep-within", env::RETAIN_WITHIN),
        ] {
            if let Some(v) = var(name) {
                argv.extend([flag.to_string(), v]);
            }
        }
        run_command(&g, argv)?;
        result.forgot = true;
    }
    if cfg.has("prune") {
        run_command(&g, vec!["prune".into()])?;
        result.pruned = true;
    }
    if cfg.has("check") {
        let mut argv = vec!["check".to_string()];
        if let Some(subset) = var(env::CHECK_SUBSET) {
            argv.extend(["--read-data-subset".to_string(), subset]);
        }
        run_command(&g, argv)?;
        result.checked = true;
    }
    if cfg.has("restore") {
        restore(&g, cfg, result)?;
    }
    Ok(())
}

/// Creates the repository when a backup finds none at its location, as
/// VolSync's restic mover does, so a new ReplicationSource needs no manual
/// `init`. Only a missing `config` counts: a wrong password or an
/// unreachable bucket stays an error. Restores never create repositories.
fn initialize_if_missing(g: &Global) -> Result<bool> {
    // A stat of `config`, not a full open: deriving the key here would
    // repeat the scrypt work every later step does anyway.
    let backend = repo_open::backend(g)?;
    match backend.stat(FileKind::Config, "config") {
        Ok(_) => return Ok(false),
        Err(e) if e.is_not_found() || e.kind == BackendErrorKind::NoSuchContainer => {}
        Err(e) => return Err(sluice_repo::Error::from(e).into()),
    }
    let location = backend.location();
    let password = repo_open::password(g)?;
    match sluice_repo::Repository::init(
        backend,
        &password,
        repo_open::kdf(g),
        repo_open::options(g),
    ) {
        Ok(repo) => {
            tracing::info!(%location, id = %repo.config().id, "created the repository");
            Ok(true)
        }
        // Another source sharing the repository created it first.
        Err(sluice_repo::Error::RepositoryExists { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Runs another command exactly as the CLI would, with the job's global
/// settings, so jobs and people share one code path and one set of checks.
fn run_command(g: &Global, argv: Vec<String>) -> Result<()> {
    let name = argv[0].clone();
    let mut cli = Cli::try_parse_from(std::iter::once("sluice-mover".to_string()).chain(argv))
        .map_err(|e| {
            anyhow::anyhow!(
                "invalid {name} settings: {}",
                e.to_string().lines().next().unwrap_or("")
            )
        })?;
    cli.global = g.clone();
    match super::run(cli)? {
        0 => Ok(()),
        code => bail!("{name} failed (exit code {code}); see the log above"),
    }
}

/// Picks the snapshot a restore asks for: the newest (at or before
/// `restoreAsOf`), then `previous` steps back.
fn select(g: &Global, cfg: &JobConfig) -> Result<Option<SnapshotEntry>> {
    let repo = repo_open::open(g)?;
    let filter = SnapshotFilter {
        hosts: cfg.hostname.iter().cloned().collect(),
        ..Default::default()
    };
    let mut snaps: Vec<SnapshotEntry> = repo
        .list_snapshots()?
        .into_iter()
        .filter(|e| filter.matches(&e.snapshot))
        .collect();
    if let Some(as_of) = var(env::RESTORE_AS_OF) {
        let t: jiff::Timestamp = as_of
            .parse()
            .with_context(|| format!("invalid {}={as_of:?}: use RFC 3339", env::RESTORE_AS_OF))?;
        // Kubernetes times have whole seconds, so `restoreAsOf` copied from
        // a status field names the second a snapshot was taken in; that
        // snapshot counts as at or before it.
        snaps.retain(|e| e.snapshot.timestamp().as_second() <= t.as_second());
    }
    let previous: usize = match var(env::RESTORE_PREVIOUS) {
        Some(p) => p.parse().with_context(|| {
            format!(
                "invalid {}={p:?}: use a whole number",
                env::RESTORE_PREVIOUS
            )
        })?,
        None => 0,
    };
    Ok(snaps
        .len()
        .checked_sub(1 + previous)
        .map(|i| snaps.swap_remove(i)))
}

fn restore(g: &Global, cfg: &JobConfig, result: &mut MoverResult) -> Result<()> {
    let Some(snap) = select(g, cfg)? else {
        let empty_ok = var(env::ON_MISSING_SNAPSHOT).is_some_and(|v| v == "Empty");
        if empty_ok {
            result.message = Some(
                "no matching snapshot; the volume was left as it is (onMissingSnapshot: Empty)"
                    .into(),
            );
            return Ok(());
        }
        return Err(NoSnapshot.into());
    };
    let mut opts = RestoreOptions::new(cfg.data_dir.clone());
    opts.delete = var(env::RESTORE_DELETE).is_some_and(|v| v == "true");
    opts.verify = true;
    let (snap, r) =
        super::restore::run_restore(g, &snap.id.to_hex(), &SnapshotFilter::default(), &opts)?;
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

fn one_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for c in e.chain().skip(1) {
        let c = c.to_string();
        if !line.contains(&c) {
            line.push_str(": ");
            line.push_str(&c);
        }
    }
    line
}

/// The failure class the operator acts on.
fn classify(e: &anyhow::Error) -> ErrorClass {
    use sluice_repo::Error as E;
    if e.downcast_ref::<NoSnapshot>().is_some() {
        return ErrorClass::NoSnapshot;
    }
    match e.downcast_ref::<E>() {
        Some(E::WrongPassword { .. }) => ErrorClass::WrongPassword,
        Some(E::RepositoryNotFound { .. }) => ErrorClass::RepositoryNotFound,
        Some(E::Locked { .. }) => ErrorClass::Locked,
        Some(E::Corrupt { .. }) | Some(E::BlobMissing { .. }) | Some(E::ConfigMissing { .. }) => {
            ErrorClass::Corrupt
        }
        Some(E::Invalid(_)) => ErrorClass::Config,
        Some(E::Backend(b)) => match b.kind {
            BackendErrorKind::PermissionDenied | BackendErrorKind::NoSuchContainer => {
                ErrorClass::Config
            }
            BackendErrorKind::NotFound => ErrorClass::Corrupt,
            _ => ErrorClass::Network,
        },
        Some(E::Io { .. }) | Some(E::RepositoryExists { .. }) => ErrorClass::Internal,
        None => ErrorClass::Config,
    }
}
