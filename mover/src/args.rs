//! Command-line arguments, modelled on restic's.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The exit codes, as restic's, shown at the end of `--help`.
pub const EXIT_CODES: &str = "\
Exit codes:
  0   success
  1   failure (the error line says what failed and what to do)
  2   usage error: unknown command or flag, invalid value
  3   backup saved, but some files could not be read or changed while read
  10  no repository at the location
  11  the repository is locked
  12  wrong password";

/// Back up directories into restic-format repositories, and restore them.
#[derive(Parser, Debug)]
#[command(
    name = "sluice-mover",
    version,
    about,
    propagate_version = true,
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts, before or after the command name.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Repository: a local path or s3:http[s]://host[:port]/bucket[/prefix].
    #[arg(short = 'r', long = "repo", env = "RESTIC_REPOSITORY", global = true)]
    pub repo: Option<String>,
    /// File holding the repository password.
    #[arg(long, env = "RESTIC_PASSWORD_FILE", global = true)]
    pub password_file: Option<PathBuf>,
    /// Print machine-readable JSON, in restic's shapes.
    #[arg(long, global = true)]
    pub json: bool,
    /// Do not take a repository lock (dangerous next to a concurrent prune).
    #[arg(long, global = true)]
    pub no_lock: bool,
    /// Wait this long for a conflicting lock to go away, e.g. 5m.
    #[arg(long, global = true, value_parser = parse_duration, default_value = "0s")]
    pub retry_lock: std::time::Duration,
    /// Compression: auto, off or max.
    #[arg(
        long,
        env = "RESTIC_COMPRESSION",
        global = true,
        default_value = "auto"
    )]
    pub compression: sluice_repo::repository::Compression,
    /// Target pack size in MiB (4 to 128).
    #[arg(long, env = "RESTIC_PACK_SIZE", global = true, value_parser = clap::value_parser!(u64).range(4..=128))]
    pub pack_size: Option<u64>,
    /// CA certificate file for TLS to object storage.
    #[arg(long, env = "RESTIC_CACERT", global = true)]
    pub cacert: Option<PathBuf>,
    /// Print only errors and what a command is asked for (snapshot lists, JSON): no progress,
    /// no summaries, as restic's `-q`.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// New keys derive with a weak scrypt cost instead of the calibrated one: for
    /// tests that create many repositories, never for a real password.
    #[arg(
        long,
        env = "SLUICE_INSECURE_TEST_KDF",
        global = true,
        hide = true,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub insecure_test_kdf: bool,
    /// The hostname written into the locks this run takes; the machine's when unset. A
    /// mover Job sets it to `SLUICE_HOSTNAME`, the identity its unlock step compares,
    /// because a Pod's own hostname changes with every Job.
    #[arg(skip)]
    pub lock_hostname: Option<String>,
    /// Progress as a log line every few seconds: set by `job`, whose standard error is a
    /// mover Pod's log, the place `kubectl logs` shows what a long backup is doing.
    #[arg(skip)]
    pub progress_log: bool,
    /// Write the command's last line to this file instead of standard error: the one-line
    /// error when it fails, else what `dump` wrote. For a Pod's termination log, when standard
    /// output is the data and the Pod's log carries both streams.
    #[arg(long, global = true)]
    pub termination_log: Option<PathBuf>,
    /// Log more (repeat for debug output).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new repository.
    Init,
    /// Back up files and directories.
    Backup(BackupArgs),
    /// Restore a snapshot into a directory.
    Restore(RestoreArgs),
    /// List snapshots.
    Snapshots(SnapshotsArgs),
    /// List a snapshot's files and directories, as `restic ls`.
    Ls(LsArgs),
    /// Write one file of a snapshot to standard output, as `restic dump`.
    Dump(DumpArgs),
    /// Run a mover Pod's work, configured by SLUICE_* variables.
    Job,
    /// Remove snapshots according to a retention policy.
    Forget(ForgetArgs),
    /// Remove data no snapshot needs.
    Prune(PruneArgs),
    /// Check the repository for errors.
    Check(CheckArgs),
    /// Remove stale locks (or all locks).
    Unlock(UnlockArgs),
    /// Print version information, as `restic version` does.
    Version,
    /// Repair a damaged repository: rebuild the index, or rewrite broken snapshots.
    #[command(subcommand)]
    Repair(RepairCommand),
}

/// What `repair` repairs, as restic's `repair` subcommands.
#[derive(Subcommand, Debug)]
pub enum RepairCommand {
    /// Rebuild the index from the packs' headers (after an index file was lost or damaged).
    Index,
    /// Rewrite snapshots whose trees or data are missing, so they restore and check again.
    Snapshots(RepairSnapshotsArgs),
}

#[derive(Args, Debug)]
pub struct RepairSnapshotsArgs {
    /// Remove the original snapshots after saving the repaired ones, and remove the
    /// unreadable snapshot files named on the command line.
    #[arg(long)]
    pub forget: bool,
    /// Only show what would be done.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Snapshot ids (or unique prefixes) to repair; all snapshots when none is given.
    pub ids: Vec<String>,
}

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Files and directories to back up; `.` stores the current
    /// directory's contents at the snapshot root.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Host name recorded in the snapshot (default: this machine's).
    #[arg(long, short = 'H')]
    pub host: Option<String>,
    /// Tag the snapshot (repeatable; commas separate several).
    #[arg(long, value_delimiter = ',')]
    pub tag: Vec<String>,
    /// Leave out paths matching this pattern (repeatable).
    #[arg(long, short = 'e')]
    pub exclude: Vec<String>,
    /// Snapshot time instead of now, e.g. "2024-01-02 03:04:05".
    #[arg(long)]
    pub time: Option<String>,
    /// Compare against this snapshot instead of the latest matching one.
    #[arg(long)]
    pub parent: Option<String>,
    /// Read every file even if unchanged since the parent snapshot.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// Snapshot id (or a unique prefix), or `latest`.
    pub snapshot: String,
    /// Directory to restore into.
    #[arg(long, short = 't')]
    pub target: PathBuf,
    /// With `latest`: only snapshots of this host.
    #[arg(long, short = 'H')]
    pub host: Vec<String>,
    /// With `latest`: only snapshots with this tag.
    #[arg(long, value_delimiter = ',')]
    pub tag: Vec<String>,
    /// With `latest`: only snapshots of this path.
    #[arg(long)]
    pub path: Vec<String>,
    /// Delete files in the target that are not in the snapshot.
    #[arg(long)]
    pub delete: bool,
    /// Re-read restored files and check them against the snapshot.
    #[arg(long)]
    pub verify: bool,
}

#[derive(Args, Debug)]
pub struct SnapshotsArgs {
    /// Only snapshots of this host.
    #[arg(long, short = 'H')]
    pub host: Vec<String>,
    /// Only snapshots with this tag.
    #[arg(long, value_delimiter = ',')]
    pub tag: Vec<String>,
    /// Only snapshots of this path.
    #[arg(long)]
    pub path: Vec<String>,
}

/// Parses durations like `30s`, `5m`, `1h30m`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num
            .parse()
            .map_err(|_| format!("invalid duration {s:?}: use e.g. 30s, 5m, 1h"))?;
        num.clear();
        total += n * match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return Err(format!("invalid duration {s:?}: units are s, m, h")),
        };
    }
    if !num.is_empty() {
        return Err(format!(
            "invalid duration {s:?}: the number needs a unit (s, m, h)"
        ));
    }
    Ok(std::time::Duration::from_secs(total))
}

#[derive(Args, Debug)]
pub struct ForgetArgs {
    /// Keep the last n snapshots (`unlimited` for all).
    #[arg(long, short = 'l', value_parser = sluice_repo::forget::parse_keep_count, default_value = "0")]
    pub keep_last: i32,
    /// Keep the last n hourly snapshots.
    #[arg(long, short = 'H', value_parser = sluice_repo::forget::parse_keep_count, default_value = "0")]
    pub keep_hourly: i32,
    /// Keep the last n daily snapshots.
    #[arg(long, short = 'd', value_parser = sluice_repo::forget::parse_keep_count, default_value = "0")]
    pub keep_daily: i32,
    /// Keep the last n weekly snapshots.
    #[arg(long, short = 'w', value_parser = sluice_repo::forget::parse_keep_count, default_value = "0")]
    pub keep_weekly: i32,
    /// Keep the last n monthly snapshots.
    #[arg(long, short = 'm', value_parser = sluice_repo::forget::parse_keep_count, default_value = "0")]
    pub keep_monthly: i32,
    /// Keep the last n yearly snapshots.
    #[arg(long, short = 'y', value_parser = sluice_repo::forget::parse_keep_count, default_value = "0")]
    pub keep_yearly: i32,
    /// Keep snapshots newer than this duration before the latest, e.g. 1y5m7d2h.
    #[arg(long)]
    pub keep_within: Option<String>,
    /// Keep hourly snapshots within this duration of the latest.
    #[arg(long)]
    pub keep_within_hourly: Option<String>,
    /// Keep daily snapshots within this duration of the latest.
    #[arg(long)]
    pub keep_within_daily: Option<String>,
    /// Keep weekly snapshots within this duration of the latest.
    #[arg(long)]
    pub keep_within_weekly: Option<String>,
    /// Keep monthly snapshots within this duration of the latest.
    #[arg(long)]
    pub keep_within_monthly: Option<String>,
    /// Keep yearly snapshots within this duration of the latest.
    #[arg(long)]
    pub keep_within_yearly: Option<String>,
    /// Keep snapshots with all these tags (repeatable; commas join tags).
    #[arg(long)]
    pub keep_tag: Vec<String>,
    /// Only snapshots of this host (repeatable).
    #[arg(long)]
    pub host: Vec<String>,
    /// Only snapshots with all these tags (repeatable, any list matches).
    #[arg(long)]
    pub tag: Vec<String>,
    /// Only snapshots of exactly these paths (repeatable).
    #[arg(long)]
    pub path: Vec<String>,
    /// Group snapshots by host, paths and/or tags.
    #[arg(long, short = 'g', default_value = "host,paths")]
    pub group_by: sluice_repo::forget::GroupBy,
    /// Only show what would be removed.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Run prune afterwards.
    #[arg(long)]
    pub prune: bool,
    /// With --prune: the unused space to tolerate.
    #[arg(long, default_value = "5%")]
    pub max_unused: String,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Unused space to tolerate: a percentage (5%), a size (500M) or unlimited.
    #[arg(long, default_value = "5%")]
    pub max_unused: String,
    /// Only show what would be done.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Read every pack and verify every blob.
    #[arg(long, conflicts_with = "read_data_subset")]
    pub read_data: bool,
    /// Read a subset of the packs: N% or n/t.
    #[arg(long)]
    pub read_data_subset: Option<String>,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Snapshot id (or a unique prefix), or `latest`.
    pub snapshot: String,
    /// The directory to list, recursively, or one file. Default: the snapshot's root.
    pub path: Option<String>,
    /// With `latest`: only snapshots of this host.
    #[arg(long, short = 'H')]
    pub host: Vec<String>,
}

#[derive(Args, Debug)]
pub struct DumpArgs {
    /// Snapshot id (or a unique prefix), or `latest`.
    pub snapshot: String,
    /// The file, as `ls` shows it.
    pub path: String,
    /// With `latest`: only snapshots of this host.
    #[arg(long, short = 'H')]
    pub host: Vec<String>,
    /// Write the content as base64 lines of 76 characters, for a channel that is not
    /// byte-transparent: a Pod's log drops the `\r` of every `\r\n`.
    #[arg(long)]
    pub base64: bool,
}

#[derive(Args, Debug)]
pub struct UnlockArgs {
    /// Remove every lock, not only stale ones.
    #[arg(long)]
    pub remove_all: bool,
}
