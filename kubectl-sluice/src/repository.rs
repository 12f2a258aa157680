//! The repository side, opened from this machine with the repository Secret's values (never
//! printed): snapshots of a host, a directory listing, one file's content, stale locks.
//!
//! Everything here blocks (the S3 backend runs its own runtime); call it outside async code.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result, anyhow, bail};
use serde::Serialize;

use crate::doctor::judge::Probe;
use sluice_repo::{
    Repository,
    backend::{self, s3::S3Options},
    lock::{self, LockOptions},
    repository::Options,
    snapshot::{SnapshotEntry, SnapshotFilter},
    tree::{Node, NodeType, Tree},
};

/// What opening a repository needs, taken from a Secret: restic's variables.
pub struct Access {
    location: String,
    password: String,
    s3: S3Options,
    /// Keeps the CA file of `customCA` alive while the repository is open.
    _ca_file: Option<tempfile::NamedTempFile>,
}

impl Access {
    /// The access restic's variables in `env` give, with the PEM bundle of `customCA`.
    pub fn new(
        env: &BTreeMap<String, String>,
        ca: Option<Vec<u8>>,
        secret: &str,
    ) -> Result<Access> {
        let get = |key: &str| env.get(key).filter(|v| !v.is_empty()).cloned();
        let location = get("RESTIC_REPOSITORY")
            .ok_or_else(|| anyhow!("the repository Secret {secret} lacks RESTIC_REPOSITORY"))?;
        let password = get("RESTIC_PASSWORD")
            .ok_or_else(|| anyhow!("the repository Secret {secret} lacks RESTIC_PASSWORD"))?;
        let ca_file = match ca {
            Some(pem) => {
                let mut file = tempfile::NamedTempFile::new()
                    .context("cannot create a temporary file for the customCA bundle")?;
                file.write_all(&pem)
                    .context("cannot write the customCA bundle to a temporary file")?;
                Some(file)
            }
            None => None,
        };
        let s3 = S3Options {
            access_key_id: get("AWS_ACCESS_KEY_ID"),
            secret_access_key: get("AWS_SECRET_ACCESS_KEY"),
            session_token: get("AWS_SESSION_TOKEN"),
            region: get("AWS_DEFAULT_REGION"),
            ca_cert: ca_file.as_ref().map(|f| PathBuf::from(f.path())),
            // A web identity belongs to the mover's Pod; this machine has no token.
            web_identity: None,
        };
        Ok(Access {
            location,
            password,
            s3,
            _ca_file: ca_file,
        })
    }

    /// The repository URL, for messages (it holds no credentials in restic's forms).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Opens the repository: reaches the store and derives the key from the password.
    pub fn open(&self) -> Result<Repository> {
        let backend = backend::open(&self.location, self.s3.clone())
            .map_err(|e| anyhow!("cannot reach the repository {}: {e}", self.location))?;
        Repository::open(Arc::from(backend), &self.password, Options::default()).map_err(|e| {
            anyhow!(
                "cannot open the repository {} from this machine: {e}",
                self.location
            )
        })
    }
}

/// Opens the repository as `doctor` does, telling a wrong password, a missing repository,
/// refused credentials and an unreachable store apart; counts `host`'s snapshots.
pub fn probe(access: &Access, host: Option<&str>) -> Probe {
    use sluice_repo::{Error, backend::BackendErrorKind};
    let from_backend = |e: &sluice_repo::backend::BackendError| match e.kind {
        BackendErrorKind::PermissionDenied => Probe::Denied(e.to_string()),
        BackendErrorKind::Transient => Probe::Unreachable(e.to_string()),
        BackendErrorKind::NoSuchContainer => Probe::NotFound,
        _ => Probe::Other(e.to_string()),
    };
    let backend = match backend::open(&access.location, access.s3.clone()) {
        Ok(backend) => backend,
        Err(e) => return from_backend(&e),
    };
    let repo = match Repository::open(Arc::from(backend), &access.password, Options::default()) {
        Ok(repo) => repo,
        Err(Error::WrongPassword { .. }) => return Probe::WrongPassword,
        Err(Error::RepositoryNotFound { .. }) => return Probe::NotFound,
        Err(Error::Backend(e)) => return from_backend(&e),
        Err(e) => return Probe::Other(e.to_string()),
    };
    match snapshots(&repo, host) {
        Ok(found) => Probe::Opened {
            snapshots: found.len(),
            host: host.unwrap_or("(any)").to_string(),
        },
        Err(e) => Probe::Other(format!("cannot list snapshots: {e:#}")),
    }
}

/// Opens the repository and loads its index, which reading trees and file contents needs.
pub fn open_with_index(access: &Access) -> Result<Repository> {
    let mut repo = access.open()?;
    repo.load_index()
        .map_err(|e| anyhow!("cannot read the index of {}: {e}", access.location()))?;
    Ok(repo)
}

/// One snapshot as `snapshots -o json` shows it: restic's fields.
#[derive(Serialize, Debug, PartialEq)]
pub struct SnapshotView {
    pub id: String,
    pub short_id: String,
    pub time: String,
    pub hostname: String,
    pub paths: Vec<String>,
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<u64>,
}

impl From<&SnapshotEntry> for SnapshotView {
    fn from(entry: &SnapshotEntry) -> Self {
        SnapshotView {
            id: entry.id.to_hex(),
            short_id: entry.id.short(),
            time: entry.snapshot.time.clone(),
            hostname: entry.snapshot.hostname.clone(),
            paths: entry.snapshot.paths.clone(),
            tags: entry.snapshot.tags.clone(),
            total_bytes: entry
                .snapshot
                .summary
                .as_ref()
                .map(|s| s.total_bytes_processed),
        }
    }
}

/// Snapshots of `host` (every host when `None`), oldest first.
pub fn snapshots(repo: &Repository, host: Option<&str>) -> Result<Vec<SnapshotEntry>> {
    let filter = filter(host);
    Ok(repo
        .list_snapshots()?
        .into_iter()
        .filter(|e| filter.matches(&e.snapshot))
        .collect())
}

fn filter(host: Option<&str>) -> SnapshotFilter {
    SnapshotFilter {
        hosts: host.map(str::to_string).into_iter().collect(),
        ..Default::default()
    }
}

/// The snapshot `spec` (`latest` or an id prefix) among `host`'s.
pub fn snapshot(repo: &Repository, spec: &str, host: Option<&str>) -> Result<SnapshotEntry> {
    repo.find_snapshot(spec, &filter(host))
        .map_err(|e| anyhow!("{e}; list them with `kubectl sluice snapshots`"))
}

/// One entry of `ls`.
#[derive(Serialize, Debug, PartialEq)]
pub struct Entry {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub size: u64,
    pub mode: String,
    pub mtime: String,
}

/// The path components of `path` inside a snapshot: `/a/b/` is `["a", "b"]`; `..` is refused so
/// a path never means something outside the tree.
pub fn components(path: &str) -> Result<Vec<&str>> {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        bail!(
            "{path:?}: '..' is not allowed in a snapshot path; give the path from the snapshot's root"
        );
    }
    Ok(parts)
}

/// The node at `path` under the snapshot's root tree; `None` for the root itself.
fn find(repo: &Repository, root: &sluice_repo::Id, path: &str) -> Result<(Option<Node>, Tree)> {
    let mut tree = repo.load_tree(root)?;
    let mut node = None;
    let parts = components(path)?;
    for (i, part) in parts.iter().enumerate() {
        let found = tree
            .nodes
            .iter()
            .find(|n| n.name_bytes() == part.as_bytes())
            .cloned()
            .ok_or_else(|| {
                anyhow!(
                    "{path:?} is not in the snapshot (no {part:?} in /{})",
                    parts[..i].join("/")
                )
            })?;
        if i + 1 < parts.len() || found.node_type == NodeType::Dir {
            if found.node_type != NodeType::Dir {
                bail!("{path:?}: /{} is not a directory", parts[..=i].join("/"));
            }
            let subtree = found.subtree.ok_or_else(|| {
                anyhow!(
                    "directory /{} has no tree in the snapshot",
                    parts[..=i].join("/")
                )
            })?;
            tree = repo.load_tree(&subtree)?;
        }
        node = Some(found);
    }
    Ok((node, tree))
}

/// Every entry under `path`, depth first, as `restic ls` lists them (`repo` from
/// [`open_with_index`]). The walk keeps a stack of
/// directories still to read, never recursion, so a deep tree cannot exhaust the stack.
pub fn list(
    repo: &Repository,
    entry: &SnapshotEntry,
    path: &str,
    out: &mut dyn FnMut(Entry) -> Result<()>,
) -> Result<()> {
    let (node, tree) = find(repo, &entry.snapshot.tree, path)?;
    let base = format!("/{}", components(path)?.join("/"));
    if let Some(node) = &node
        && node.node_type != NodeType::Dir
    {
        return out(view(&base, node));
    }
    // Directories still to read, by tree id (trees are loaded when their turn comes, so a wide
    // snapshot holds ids, not trees); reversed onto the stack so they come out in sorted order.
    let mut pending: Vec<(String, sluice_repo::Id)> = Vec::new();
    let mut next = Some((base.trim_end_matches('/').to_string(), tree));
    while let Some((dir, tree)) = next.take() {
        let mut subdirs = Vec::new();
        for node in &tree.nodes {
            let name = String::from_utf8_lossy(&node.name_bytes()).into_owned();
            let path = format!("{dir}/{name}");
            out(view(&path, node))?;
            if let (NodeType::Dir, Some(subtree)) = (&node.node_type, node.subtree) {
                subdirs.push((path, subtree));
            }
        }
        pending.extend(subdirs.into_iter().rev());
        if let Some((dir, id)) = pending.pop() {
            next = Some((dir, repo.load_tree(&id)?));
        }
    }
    Ok(())
}

fn view(path: &str, node: &Node) -> Entry {
    Entry {
        path: path.to_string(),
        kind: match node.node_type {
            NodeType::File => "file",
            NodeType::Dir => "dir",
            NodeType::Symlink => "symlink",
            NodeType::Dev => "dev",
            NodeType::Chardev => "chardev",
            NodeType::Fifo => "fifo",
            NodeType::Socket => "socket",
            NodeType::Irregular => "irregular",
        },
        size: node.size,
        mode: format!("{:o}", node.mode & 0o7777),
        mtime: node.mtime.clone(),
    }
}

/// Writes the file at `path` to `out` (`repo` from [`open_with_index`]), one blob at a time, so memory stays at one blob
/// whatever the file's size.
pub fn dump(
    repo: &Repository,
    entry: &SnapshotEntry,
    path: &str,
    out: &mut dyn Write,
) -> Result<u64> {
    let (node, _) = find(repo, &entry.snapshot.tree, path)?;
    let node = node.ok_or_else(|| anyhow!("{path:?} is the snapshot's root, a directory; dump takes a file (list it with `kubectl sluice ls`)"))?;
    if node.node_type != NodeType::File {
        bail!(
            "{path:?} is not a regular file; dump writes files only (list it with `kubectl sluice ls`)"
        );
    }
    let mut written = 0u64;
    for blob in node.content() {
        let data = repo
            .load_blob(blob)
            .with_context(|| format!("reading {path:?} from the repository"))?;
        out.write_all(&data).context("writing to standard output")?;
        written += data.len() as u64;
    }
    out.flush().context("writing to standard output")?;
    Ok(written)
}

/// Removes stale locks (every lock with `all`); returns how many were removed.
pub fn unlock(repo: &Repository, all: bool) -> Result<usize> {
    Ok(lock::remove_stale(repo, &LockOptions::shared(), all)?)
}

/// Descriptions of the locks in the repository, for messages.
pub fn locks(repo: &Repository) -> Result<Vec<String>> {
    Ok(lock::list(repo)?
        .into_iter()
        .map(|(id, lock)| format!("{} ({})", id.short(), lock.describe()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_components_from_the_root() {
        assert_eq!(components("/").unwrap(), Vec::<&str>::new());
        assert_eq!(components("").unwrap(), Vec::<&str>::new());
        assert_eq!(
            components("/etc//app/./x.conf").unwrap(),
            ["etc", "app", "x.conf"]
        );
        assert_eq!(components("etc/").unwrap(), ["etc"]);
        assert!(
            components("/etc/../root")
                .unwrap_err()
                .to_string()
                .contains("'..'")
        );
    }

    #[test]
    fn access_needs_the_required_keys_and_never_shows_values() {
        let env = BTreeMap::from([("RESTIC_PASSWORD".to_string(), "hunter2".to_string())]);
        let error = Access::new(&env, None, "apps/repo")
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("lacks RESTIC_REPOSITORY"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
        let env = BTreeMap::from([
            ("RESTIC_REPOSITORY".to_string(), "/tmp/x".to_string()),
            ("RESTIC_PASSWORD".to_string(), String::new()),
        ]);
        let error = Access::new(&env, None, "apps/repo")
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("lacks RESTIC_PASSWORD"), "{error}");
    }
}
