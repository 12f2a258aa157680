//! The command line, in kubectl's conventions: `-n`, `-A`, `--context`, `--kubeconfig` and
//! `-o json|yaml` anywhere on the line, examples under each command's `--help`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Exit code of a command that ran but found a failure (a failed sync).
pub const EXIT_FAILED: u8 = 1;
/// Exit code of a command line that clap or the plugin refused.
pub const EXIT_USAGE: u8 = 2;

const EXAMPLES: &str = "\
Examples:
  # Every source and destination in all namespaces, with the reason of each failure
  kubectl sluice status -A

  # Back up now and wait for the result
  kubectl sluice sync db --wait -n apps

  # Browse the latest snapshot and fetch one file without restoring
  kubectl sluice snapshots db -n apps
  kubectl sluice ls db latest /etc -n apps
  kubectl sluice dump db latest /etc/app.conf -n apps > app.conf

  # Restore the latest snapshot into a new PVC
  kubectl sluice restore db --to db-copy -n apps

  # What is wrong with a source, and how to fix it
  kubectl sluice doctor db -n apps

Exit codes: 0 done, 1 the operation or a check failed, 2 usage error.";

/// Sluice backups from kubectl: status, manual syncs, snapshots, browsing, restores into new PVCs, unlock, doctor and migration.
#[derive(Parser, Debug)]
#[command(
    name = "kubectl sluice",
    bin_name = "kubectl sluice",
    version,
    after_help = EXAMPLES,
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// kubectl's flags, accepted before or after the command.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// The namespace of the objects. Default: the context's namespace.
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Every namespace (status).
    #[arg(short = 'A', long, global = true)]
    pub all_namespaces: bool,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Path of the kubeconfig file. Default: $KUBECONFIG, else ~/.kube/config.
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Output format: text for people, json or yaml for scripts.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Text)]
    pub output: Format,
}

/// `-o`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Columns, coloured on a terminal.
    Text,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// The verbs.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show sources and destinations: last sync, its age, next sync, bytes, and why the last one failed.
    #[command(
        after_help = "Examples:\n  kubectl sluice status -n apps\n  kubectl sluice status -A -o json"
    )]
    Status(StatusArgs),
    /// Start a backup of SOURCE now (spec.trigger.manual); --wait follows it to its result.
    #[command(
        after_help = "Examples:\n  kubectl sluice sync db -n apps --wait\n\nWith --wait the exit code is 1 when the sync fails; the operator retries retryable failures on its own."
    )]
    Sync(SyncArgs),
    /// List the repository's snapshots of a ReplicationSource's host (or a destination's).
    #[command(
        after_help = "Examples:\n  kubectl sluice snapshots db -n apps\n  kubectl sluice snapshots rdst/db-restore -n apps -o json\n\nThe repository is opened from this machine with the Secret's values, which are never printed."
    )]
    Snapshots(SnapshotsArgs),
    /// List the files of a snapshot under PATH (default /), as `restic ls`.
    #[command(
        after_help = "Examples:\n  kubectl sluice ls db latest -n apps\n  kubectl sluice ls db 4f2a9c1e /var/lib -n apps -o json\n  kubectl sluice ls db latest --in-cluster -n apps\n\nThe repository is opened from this machine with the Secret's values, which are never printed; --in-cluster reads it from a short-lived Pod in the namespace instead."
    )]
    Ls(LsArgs),
    /// Write one file of a snapshot to standard output, as `restic dump`.
    #[command(
        after_help = "Examples:\n  kubectl sluice dump db latest /etc/app.conf -n apps > app.conf\n  kubectl sluice dump db latest /etc/app.conf --in-cluster -n apps > app.conf\n\nWith --in-cluster the file passes through the Pod's log; a dump that arrives short fails (exit 1)."
    )]
    Dump(DumpArgs),
    /// Restore SOURCE's latest snapshot (or the one at --as-of) into a new PVC, and wait until it is filled.
    #[command(
        after_help = "Examples:\n  kubectl sluice restore db --to db-copy -n apps\n  kubectl sluice restore db --to db-yesterday --as-of 2026-12-01T00:00:00Z -n apps -o json\n\nThe new PVC has the source PVC's size, access modes and class, and is filled by the operator's volume populator through a ReplicationDestination of the same name, owned by the PVC (deleting the PVC removes it). Exit code 1 when the restore failed; the PVC then stays pending and the operator tries again."
    )]
    Restore(RestoreArgs),
    /// Remove stale locks from SOURCE's repository (--all: every lock).
    #[command(
        after_help = "Examples:\n  kubectl sluice unlock db -n apps\n  kubectl sluice unlock db -n apps --all\n\nA lock is stale when its holder has not refreshed it for 30 minutes."
    )]
    Unlock(UnlockArgs),
    /// Check what OBJECT's backups need (every object here without one) and say what to fix.
    #[command(after_help = DOCTOR_HELP)]
    Doctor(DoctorArgs),
    /// Translate other tools' manifests into Sluice's (VolSync's restic mover).
    #[command(subcommand)]
    Migrate(MigrateCommand),
    /// The former name of `migrate volsync`.
    #[command(hide = true)]
    ConvertVolsync(MigrateVolsyncArgs),
}

/// `migrate`'s tools.
#[derive(Subcommand, Debug)]
pub enum MigrateCommand {
    /// Convert VolSync restic ReplicationSources and ReplicationDestinations into Sluice's.
    #[command(after_help = MIGRATE_VOLSYNC_HELP)]
    Volsync(MigrateVolsyncArgs),
}

const DOCTOR_HELP: &str = "\
Examples:
  kubectl sluice doctor db -n apps
  kubectl sluice doctor -A -o json

Checks, each ok, warn or FAIL with the fix:
  clock           this machine and each node's kubelet against the API server
  secret          the repository Secret's keys (values are never printed)
  repository      reachable from this machine, and the password opens it
  snapshot-class  a VolumeSnapshotClass for the source PVC's CSI driver (copyMethod Snapshot)
  pod-security    the namespace's Pod Security level admits the mover Pod
  rbac            your access for the plugin's verbs, and the mover's ServiceAccount
  mover-image     the object's mover Pods pulled their image
  last-result     the last sync's reason, and what to do about a failure

Exit code 1 when a check fails.";

const MIGRATE_VOLSYNC_HELP: &str = "\
Examples:
  # Convert a GitOps directory's VolSync objects, reviewing what is not carried over
  kubectl sluice migrate volsync apps/plex/volsync.yaml > apps/plex/sluice.yaml

  # From standard input
  kubectl get replicationsources.volsync.backube -n media -o yaml | kubectl sluice migrate volsync

Objects of other kinds (the repository Secret, the application) pass through unchanged.
Snapshots keep deduplicating: the converted objects use VolSync's host name \"volsync\".
Each field not carried over is named on standard error. Exit code 1 when an object could
not be converted (it is missing from the output) or an input is not YAML. Reads no cluster.";

/// `status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Only the objects of this name.
    pub name: Option<String>,
}

/// `sync`.
#[derive(Args, Debug)]
pub struct SyncArgs {
    /// The ReplicationSource (or `rdst/NAME` for a ReplicationDestination).
    pub object: String,
    /// Follow the sync until it ends; exit 1 when it fails.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits (`30m`, `2h`).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
}

/// `snapshots`.
#[derive(Args, Debug)]
pub struct SnapshotsArgs {
    /// A ReplicationSource, or `rdst/NAME` for a ReplicationDestination.
    pub object: String,
}

/// `ls`.
#[derive(Args, Debug)]
pub struct LsArgs {
    /// The ReplicationSource whose repository holds the snapshot.
    pub source: String,
    /// A snapshot id, a unique prefix of one, or `latest`.
    pub snapshot: String,
    /// The directory to list, recursively. Default: the snapshot's root.
    pub path: Option<String>,
    #[command(flatten)]
    pub via: InClusterArgs,
}

/// `dump`.
#[derive(Args, Debug)]
pub struct DumpArgs {
    /// The ReplicationSource whose repository holds the snapshot.
    pub source: String,
    /// A snapshot id, a unique prefix of one, or `latest`.
    pub snapshot: String,
    /// The file, as `ls` shows it.
    pub path: String,
    #[command(flatten)]
    pub via: InClusterArgs,
}

/// Where `ls` and `dump` read the repository from.
#[derive(Args, Debug)]
pub struct InClusterArgs {
    /// Read the repository from a short-lived Pod in the object's namespace, with the mover's
    /// Secret and ServiceAccount, instead of from this machine: for endpoints only the cluster
    /// reaches, and identities only its Pods have (IRSA, web identity).
    #[arg(long)]
    pub in_cluster: bool,
    /// The Pod's image. Default: the operator's mover image.
    #[arg(long, requires = "in_cluster")]
    pub image: Option<String>,
}

/// `restore`.
#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The ReplicationSource whose snapshot to restore.
    pub source: String,
    /// The new PVC, and the ReplicationDestination that fills it.
    #[arg(long)]
    pub to: String,
    /// Restore the latest snapshot taken at or before this time (RFC 3339).
    #[arg(long)]
    pub as_of: Option<jiff::Timestamp>,
    /// StorageClass of the new PVC. Default: the source PVC's.
    #[arg(long)]
    pub storage_class: Option<String>,
    /// How long to wait for the PVC to be filled (`30m`, `2h`).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
}

/// `unlock`.
#[derive(Args, Debug)]
pub struct UnlockArgs {
    /// The ReplicationSource whose repository to unlock.
    pub source: String,
    /// Remove every lock, also those of movers that are running now.
    #[arg(long)]
    pub all: bool,
}

/// `doctor`.
#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// A ReplicationSource, or `rdst/NAME` for a ReplicationDestination. Default: every one.
    pub object: Option<String>,
}

/// `migrate volsync`.
#[derive(Args, Debug)]
pub struct MigrateVolsyncArgs {
    /// VolSync YAML files (multi-document); none or `-` reads standard input.
    pub files: Vec<PathBuf>,
}

/// `30s`, `5m`, `2h` or `1d`.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit: use s, m, h or d (30m)"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30m"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: unknown unit {unit:?}, use s, m, h or d")),
    };
    Ok(std::time::Duration::from_secs(number * seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn kubectl_flags_go_before_or_after_the_verb() {
        for argv in [
            &[
                "kubectl-sluice",
                "-n",
                "apps",
                "--context",
                "prod",
                "status",
                "-o",
                "json",
            ][..],
            &[
                "kubectl-sluice",
                "status",
                "-n",
                "apps",
                "--context=prod",
                "-ojson",
            ][..],
        ] {
            let cli = Cli::try_parse_from(argv).unwrap();
            assert_eq!(cli.global.namespace.as_deref(), Some("apps"), "{argv:?}");
            assert_eq!(cli.global.context.as_deref(), Some("prod"), "{argv:?}");
            assert_eq!(cli.global.output, Format::Json, "{argv:?}");
        }
    }

    #[test]
    fn durations_and_times_are_parsed_or_explained() {
        let cases = [
            ("30s", Ok(30)),
            ("5m", Ok(300)),
            ("2h", Ok(7200)),
            ("1d", Ok(86_400)),
            ("10", Err("no unit")),
            ("5x", Err("unknown unit")),
            ("m", Err("not a duration")),
        ];
        for (text, expected) in cases {
            match (parse_duration(text), expected) {
                (Ok(d), Ok(secs)) => assert_eq!(d.as_secs(), secs, "{text}"),
                (Err(e), Err(want)) => assert!(e.contains(want), "{text}: {e}"),
                (got, want) => panic!("{text}: {got:?} vs {want:?}"),
            }
        }
    }
}
