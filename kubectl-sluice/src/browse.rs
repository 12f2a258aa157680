//! The verbs that read a repository from this machine: `snapshots`, `ls`, `dump` and
//! `unlock`. Each resolves the object to its repository Secret (and `customCA`), then opens
//! the repository on a thread of its own, since the repository's I/O blocks.

use anyhow::{Result, anyhow};
use jiff::Timestamp;

use crate::{
    cli::{DumpArgs, Format, LsArgs, SnapshotsArgs, UnlockArgs},
    cluster::{Cluster, Object},
    output::{self, Tone},
    repository::{self, Access, SnapshotView},
};

/// A repository and the host whose snapshots an object means.
struct Target {
    access: Access,
    /// A source's host, a destination's `hostname` (any host when unset).
    host: Option<String>,
    /// For messages: `ReplicationSource apps/db`.
    what: String,
}

async fn target(cluster: &Cluster, reference: &str) -> Result<Target> {
    let (secret, ca, host, what) = match cluster.object(reference).await? {
        Object::Source(source) => (
            source.spec.restic.repository.clone(),
            source.spec.restic.custom_ca.clone(),
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
            destination.spec.restic.hostname.clone(),
            format!(
                "ReplicationDestination {}/{}",
                cluster.namespace,
                destination.metadata.name.clone().unwrap_or_default()
            ),
        ),
    };
    let env = cluster.repository_env(&secret).await?;
    let ca = match ca {
        Some(ca) => cluster.custom_ca(&ca).await?,
        None => None,
    };
    let access = Access::new(&env, ca, &format!("{}/{secret}", cluster.namespace))?;
    Ok(Target { access, host, what })
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
    let target = target(cluster, &args.source).await?;
    let path = args.path.clone().unwrap_or_else(|| "/".into());
    let entries = blocking(|| {
        let repo = repository::open_with_index(&target.access)?;
        let snapshot = repository::snapshot(&repo, &args.snapshot, target.host.as_deref())?;
        let mut entries = Vec::new();
        repository::list(&repo, &snapshot, &path, &mut |entry| {
            if format == Format::Text {
                println!("{}", entry.path);
            } else {
                entries.push(entry);
            }
            Ok(())
        })?;
        Ok(entries)
    })?;
    output::structured(format, &entries)?;
    Ok(0)
}

/// Runs `dump`.
pub async fn dump(cluster: &Cluster, args: &DumpArgs) -> Result<u8> {
    let target = target(cluster, &args.source).await?;
    blocking(|| {
        let repo = repository::open_with_index(&target.access)?;
        let snapshot = repository::snapshot(&repo, &args.snapshot, target.host.as_deref())?;
        let stdout = std::io::stdout();
        repository::dump(&repo, &snapshot, &args.path, &mut stdout.lock())?;
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
