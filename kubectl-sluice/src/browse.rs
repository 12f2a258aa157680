//! The verbs that read a repository: `snapshots`, `ls`, `dump` and `unlock`. Each resolves
//! the object to its repository Secret (and `customCA`), then opens the repository from this
//! machine on a thread of its own, since the repository's I/O blocks; `ls` and `dump` can run
//! in the cluster instead ([`crate::in_cluster`]).

use std::io::Write as _;

use base64::Engine as _;

use anyhow::{Context as _, Result, anyhow, bail};
use jiff::Timestamp;
use sluice_api::CustomCa;
use sluice_repo::browse::{self, Entry};

use crate::{
    cli::{DumpArgs, Format, InClusterArgs, LsArgs, SnapshotsArgs, UnlockArgs},
    cluster::{Cluster, Object},
    in_cluster::{self, BrowsePod},
    output::{self, Tone},
    repository::{self, Access, SnapshotView},
};

/// The repository an object names, and the host whose snapshots it means.
struct Reference {
    secret: String,
    custom_ca: Option<CustomCa>,
    service_account: Option<String>,
    /// A source's host, a destination's `hostname` (any host when unset).
    host: Option<String>,
    /// For messages: `ReplicationSource apps/db`.
    what: String,
}

/// A repository opened from this machine.
struct Target {
    access: Access,
    host: Option<String>,
    what: String,
}

async fn reference(cluster: &Cluster, reference: &str) -> Result<Reference> {
    let (secret, custom_ca, mover, host, what) = match cluster.object(reference).await? {
        Object::Source(source) => (
            source.spec.restic.repository.clone(),
            source.spec.restic.custom_ca.clone(),
            source.spec.restic.mover.clone(),
            Some(source.restic_hostname()),
            format!(
                "ReplicationSource {}/{}",
                cluster.namespace,
                source.metadata.name.clone().unwrap_or_default()
            ),
        ),
        Object::Destination(destination) => (
            destination.spec.restic.repository.clone(),
            destination.spec.restic.custom_ca.clone(),
            destination.spec.restic.mover.clone(),
            destination.spec.restic.hostname.clone(),
            format!(
                "ReplicationDestination {}/{}",
                cluster.namespace,
                destination.metadata.name.clone().unwrap_or_default()
            ),
        ),
    };
    Ok(Reference {
        secret,
        custom_ca,
        service_account: mover.mover_service_account,
        host,
        what,
    })
}

async fn target(cluster: &Cluster, object: &str) -> Result<Target> {
    let Reference {
        secret,
        custom_ca,
        host,
        what,
        ..
    } = reference(cluster, object).await?;
    let env = cluster.repository_env(&secret).await?;
    let ca = match custom_ca {
        Some(ca) => cluster.custom_ca(&ca).await?,
        None => None,
    };
    let access = Access::new(&env, ca, &format!("{}/{secret}", cluster.namespace))?;
    Ok(Target { access, host, what })
}

/// Runs `sluice-mover COMMAND` in a browse Pod for `object`, handing its output to `out`;
/// fails with the mover's error when it does.
async fn in_pod(
    cluster: &Cluster,
    object: &str,
    via: &InClusterArgs,
    command: &[&str],
    out: &mut (dyn FnMut(&[u8]) -> Result<()> + Send),
) -> Result<in_cluster::Ended> {
    let reference = reference(cluster, object).await?;
    let image = match &via.image {
        Some(image) => image.clone(),
        None => in_cluster::mover_image(cluster).await?,
    };
    let mut args: Vec<String> = vec![command[0].to_string()];
    if let Some(host) = &reference.host {
        args.extend(["--host".to_string(), host.clone()]);
    }
    args.extend(command[1..].iter().map(|a| a.to_string()));
    let browse = BrowsePod {
        image,
        secret: reference.secret,
        custom_ca: reference.custom_ca,
        service_account: reference.service_account,
        command: args,
    };
    let ended = in_cluster::run(cluster, &browse, out).await?;
    if ended.exit_code != 0 {
        let message = ended.message.trim_start_matches("Fatal: ");
        bail!(
            "{} (in a browse Pod of namespace {}, exit code {})",
            if message.is_empty() {
                "the mover gave no reason"
            } else {
                message
            },
            cluster.namespace,
            ended.exit_code
        );
    }
    Ok(ended)
}

/// Runs `work` on a thread of its own: the repository's S3 backend drives its own runtime,
/// which cannot start inside this one.
fn blocking<T: Send>(work: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(work)
            .join()
            .map_err(|_| anyhow!("the repository thread panicked"))?
    })
}

/// Runs `snapshots`.
pub async fn snapshots(cluster: &Cluster, args: &SnapshotsArgs, format: Format) -> Result<u8> {
    let target = target(cluster, &args.object).await?;
    let views: Vec<SnapshotView> = blocking(|| {
        let repo = target.access.open()?;
        Ok(repository::snapshots(&repo, target.host.as_deref())?
            .iter()
            .map(SnapshotView::from)
            .collect())
    })?;
    if output::structured(format, &views)? {
        return Ok(0);
    }
    if views.is_empty() {
        eprintln!(
            "No snapshots of host {} in {} ({}).",
            target.host.as_deref().unwrap_or("(any)"),
            target.access.location(),
            target.what
        );
        return Ok(0);
    }
    let now = Timestamp::now();
    let rows: Vec<Vec<(String, Tone)>> = views
        .iter()
        .map(|v| {
            let age = v
                .time
                .parse::<Timestamp>()
                .map(|t| output::relative(t, now))
                .unwrap_or_else(|_| v.time.clone());
            vec![
                (v.short_id.clone(), Tone::Plain),
                (v.time.clone(), Tone::Plain),
                (age, Tone::Plain),
                (v.hostname.clone(), Tone::Plain),
                (v.total_bytes.map_or("-".into(), output::bytes), Tone::Plain),
                (v.tags.join(","), Tone::Plain),
            ]
        })
        .collect();
    output::table(
        &["ID", "TIME", "AGE", "HOST", "SIZE", "TAGS"],
        &rows,
        output::colour_wanted(),
    );
    Ok(0)
}

/// Runs `ls`.
pub async fn ls(cluster: &Cluster, args: &LsArgs, format: Format) -> Result<u8> {
    let path = args.path.clone().unwrap_or_else(|| "/".into());
    let mut entries = Vec::new();
    if args.via.in_cluster {
        // One JSON entry per line from the Pod, whatever the format here.
        let mut partial = Vec::new();
        let mut take = |chunk: &[u8]| -> Result<()> {
            partial.extend_from_slice(chunk);
            while let Some(end) = partial.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = partial.drain(..=end).collect();
                let entry: Entry = serde_json::from_slice(&line).with_context(|| {
                    format!(
                        "the browse Pod printed something other than a listing: {}",
                        String::from_utf8_lossy(&line).trim()
                    )
                })?;
                shown(entry, format, &mut entries)?;
            }
            Ok(())
        };
        let command = ["ls", "--json", &args.snapshot, &path];
        in_pod(cluster, &args.source, &args.via, &command, &mut take).await?;
    } else {
        let target = target(cluster, &args.source).await?;
        entries = blocking(|| {
            let repo = repository::open_with_index(&target.access)?;
            let snapshot = repository::snapshot(&repo, &args.snapshot, target.host.as_deref())?;
            let mut entries = Vec::new();
            browse::list(&repo, &snapshot.snapshot.tree, &path, &mut |entry| {
                shown(entry, format, &mut entries).map_err(std::io::Error::other)
            })
            .map_err(|e| anyhow!("{e}; list the snapshot with `kubectl sluice ls`"))?;
            Ok(entries)
        })?;
    }
    output::structured(format, &entries)?;
    Ok(0)
}

/// Prints `entry` at once as text, or keeps it for the structured output.
fn shown(entry: Entry, format: Format, entries: &mut Vec<Entry>) -> Result<()> {
    if format == Format::Text {
        writeln!(std::io::stdout(), "{}", entry.path).context("writing to standard output")?;
    } else {
        entries.push(entry);
    }
    Ok(())
}

/// Runs `dump`.
pub async fn dump(cluster: &Cluster, args: &DumpArgs) -> Result<u8> {
    if args.via.in_cluster {
        // Base64 lines: the Pod's log is not byte-transparent (it drops the `\r` of `\r\n`).
        let mut received = 0u64;
        let mut partial = Vec::new();
        let mut stdout = std::io::stdout();
        let mut take = |chunk: &[u8]| -> Result<()> {
            partial.extend_from_slice(chunk);
            while let Some(end) = partial.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = partial.drain(..=end).collect();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(line.trim_ascii_end())
                    .map_err(|e| {
                        anyhow!("the browse Pod printed something other than the file: {e}")
                    })?;
                received += bytes.len() as u64;
                stdout
                    .write_all(&bytes)
                    .context("writing to standard output")?;
            }
            Ok(())
        };
        let command = ["dump", "--base64", &args.snapshot, &args.path];
        let ended = in_pod(cluster, &args.source, &args.via, &command, &mut take).await?;
        std::io::stdout()
            .flush()
            .context("writing to standard output")?;
        return match in_cluster::dumped_bytes(&ended.message) {
            Some(dumped) if dumped == received => Ok(0),
            Some(dumped) => bail!(
                "the browse Pod's log delivered {received} of the {dumped} bytes of {:?}: the kubelet rotates container logs at its containerLogMaxSize and drops what was not read in time; dump it without --in-cluster, or restore it",
                args.path
            ),
            None => bail!(
                "the browse Pod ended without saying how many bytes it wrote ({:?}); the output may be incomplete",
                ended.message
            ),
        };
    }
    let target = target(cluster, &args.source).await?;
    blocking(|| {
        let repo = repository::open_with_index(&target.access)?;
        let snapshot = repository::snapshot(&repo, &args.snapshot, target.host.as_deref())?;
        let stdout = std::io::stdout();
        browse::dump(
            &repo,
            &snapshot.snapshot.tree,
            &args.path,
            &mut stdout.lock(),
        )
        .map_err(|e| anyhow!("{e}; list the snapshot with `kubectl sluice ls`"))?;
        Ok(())
    })?;
    Ok(0)
}

/// Runs `unlock`.
pub async fn unlock(cluster: &Cluster, args: &UnlockArgs) -> Result<u8> {
    let target = target(cluster, &args.source).await?;
    if args.all {
        eprintln!(
            "warning: --all removes every lock of {}, also those of movers running now; a prune running beside another mover can delete data that mover relies on, so make sure no mover Job of this repository runs",
            target.access.location()
        );
    }
    let removed = blocking(|| {
        let repo = target.access.open()?;
        let removed = repository::unlock(&repo, args.all)?;
        let left = repository::locks(&repo)?;
        Ok((removed, left))
    })?;
    println!(
        "{}: removed {} lock(s) from {}",
        target.what,
        removed.0,
        target.access.location()
    );
    for lock in removed.1 {
        println!("  still held: {lock}");
    }
    Ok(0)
}
