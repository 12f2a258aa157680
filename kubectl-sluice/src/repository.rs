//! The repository side, opened from this machine with the repository Secret's values (never
//! printed): snapshots of a host and stale locks; listings and file contents come from
//! [`sluice_repo::browse`].
//!
//! Everything here blocks (the S3 backend runs its own runtime); call it outside async code.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result, anyhow};
use serde::Serialize;

use crate::doctor::judge::Probe;
use sluice_repo::{
    Repository,
    backend::{self, s3::S3Options},
    lock::{self, LockOptions},
    repository::Options,
    snapshot::{SnapshotEntry, SnapshotFilter},
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
