//! restic-compatible repository locks.
//!
//! A lock is an unpacked file in `locks/` saying who holds it and since
//! when. Backups and restores take shared locks; forget and prune take
//! exclusive ones. Because restic and Sluice follow the same protocol they
//! never corrupt each other's work.
//!
//! Taking a lock: remove stale locks (logging each), check for conflicts,
//! write our lock, wait briefly so concurrent writers become visible, and
//! check again. The wait is only for stores whose listings may lag behind
//! writes (object storage, network file systems): on a local file system a
//! renamed-in lock file is in the very next listing, so of two processes
//! that each write then list, the one that lists last always sees the
//! other, with or without the wait. Skipping it there saves 200 ms on every
//! command, most of a no-change backup's wall time. A held lock is refreshed every 5 minutes (a new file, then
//! the old one removed) so others never take it for stale.
//!
//! Stale means older than 30 minutes, or held by this host with a dead pid.
//! Mover Pods add one rule: every Job of one ReplicationSource uses the same
//! lock hostname and runs alone, so a lock with that hostname can only be
//! left over from a killed Job ([`LockOptions::sole_holder`]). That is what
//! keeps a crashed hourly Job from wedging the next one, even within 30
//! minutes, where container pid namespaces make pid checks meaningless.

use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, FileKind, Payload};
use crate::crypto::Key;
use crate::repository::{open_unpacked, seal_unpacked};
use crate::{Error, Id, Repository, Result};

/// A lock file's content, as restic writes it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LockFile {
    pub time: String,
    pub exclusive: bool,
    pub hostname: String,
    pub username: String,
    pub pid: i64,
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
}

/// A lock older than this is stale: its holder stopped refreshing it.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
/// How often a held lock is rewritten.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);
/// Pause between writing our lock and re-checking for conflicts, on stores
/// whose listings may lag (restic waits as long on every store).
const SETTLE: Duration = Duration::from_millis(200);

/// True when `location` is a directory on a local file system, whose
/// directory listings show a completed rename at once. Network file systems
/// cache listings, so they keep the settle wait, as does anything that is
/// not a directory here (object storage URLs).
fn listing_is_immediate(location: &str) -> bool {
    let Ok(path) = std::ffi::CString::new(location) else {
        return false;
    };
    // SAFETY: statfs writes into a zeroed struct we own; the path is a
    // NUL-terminated string.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(path.as_ptr(), &mut fs) } != 0
        || !std::path::Path::new(location).is_dir()
    {
        return false;
    }
    // f_type values from linux/magic.h (and CIFS/SMB2 from fs/smb).
    const NETWORK: [i64; 8] = [
        0x6969,     // NFS
        0x517b,     // SMB
        0xfe534d42, // SMB2
        0xff534d42, // CIFS
        0x65735546, // FUSE (sshfs, s3fs, rclone mount, ...)
        0x00c36400, // Ceph
        0x01021997, // 9P
        0x47504653, // GPFS
    ];
    !NETWORK.contains(&(fs.f_type as i64))
}

/// How to take a lock.
#[derive(Clone, Debug)]
pub struct LockOptions {
    pub exclusive: bool,
    /// How long to wait for a conflicting lock to go away.
    pub retry: Duration,
    /// The hostname written into the lock (default: the machine's).
    pub hostname: String,
    /// Treat other locks with our hostname as stale: set when the caller
    /// knows no other process with this hostname can be alive.
    pub sole_holder: bool,
}

impl LockOptions {
    /// A shared lock with this machine's hostname and no waiting.
    pub fn shared() -> LockOptions {
        LockOptions {
            exclusive: false,
            retry: Duration::ZERO,
            hostname: crate::host::hostname(),
            sole_holder: false,
        }
    }

    /// An exclusive lock with this machine's hostname and no waiting.
    pub fn exclusive() -> LockOptions {
        LockOptions {
            exclusive: true,
            ..LockOptions::shared()
        }
    }
}

impl LockFile {
    fn age(&self) -> Duration {
        crate::time::parse(&self.time)
            .map(|t| {
                let d = jiff::Timestamp::now().duration_since(t.timestamp());
                Duration::try_from(d).unwrap_or(Duration::ZERO)
            })
            .unwrap_or(Duration::MAX)
    }

    /// True when the holder is known to be gone.
    pub fn is_stale(&self, options: &LockOptions) -> bool {
        if self.age() > STALE_AFTER {
            return true;
        }
        if self.hostname == options.hostname {
            return options.sole_holder || !crate::host::process_alive(self.pid);
        }
        false
    }

    /// "host h, pid p, 3m12s old": who holds it, for messages.
    pub fn describe(&self) -> String {
        let kind = if self.exclusive {
            "exclusive"
        } else {
            "shared"
        };
        let age = self.age();
        let age = if age == Duration::MAX {
            "unknown age".to_string()
        } else {
            format!("{}m{}s old", age.as_secs() / 60, age.as_secs() % 60)
        };
        format!(
            "{kind} lock of {}@{} pid {}, {age}",
            self.username, self.hostname, self.pid
        )
    }
}

/// All locks in the repository; unreadable ones are reported and skipped
/// (a lock being deleted while we read it is normal).
pub fn list(repo: &Repository) -> Result<Vec<(Id, LockFile)>> {
    let mut out = Vec::new();
    for f in repo.backend().list(FileKind::Lock)? {
        let Ok(id) = f.name.parse::<Id>() else {
            continue;
        };
        match repo.load_unpacked(FileKind::Lock, &f.name) {
            Ok(plain) => match serde_json::from_slice::<LockFile>(&plain) {
                Ok(l) => out.push((id, l)),
                Err(e) => tracing::warn!(lock = %f.name, error = %e, "ignoring unreadable lock"),
            },
            Err(Error::Backend(e)) if e.is_not_found() => {}
            Err(e) => tracing::warn!(lock = %f.name, error = %e, "ignoring unreadable lock"),
        }
    }
    Ok(out)
}

/// Removes stale locks (or all, with `all`); returns how many went.
pub fn remove_stale(repo: &Repository, options: &LockOptions, all: bool) -> Result<usize> {
    let mut removed = 0;
    for (id, lock) in list(repo)? {
        if all || lock.is_stale(options) {
            tracing::info!(lock = %id.short(), holder = %lock.describe(), "removing stale lock");
            repo.backend().remove(FileKind::Lock, &id.to_hex())?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn conflict(
    repo: &Repository,
    options: &LockOptions,
    ours: Option<Id>,
) -> Result<Option<LockFile>> {
    for (id, lock) in list(repo)? {
        if Some(id) == ours || lock.is_stale(options) {
            continue;
        }
        if options.exclusive || lock.exclusive {
            return Ok(Some(lock));
        }
    }
    Ok(None)
}

/// A held lock; dropping it stops the refresher and removes the file.
pub struct Lock {
    backend: Arc<dyn Backend>,
    current: Arc<std::sync::Mutex<Id>>,
    stop: Option<mpsc::Sender<()>>,
    refresher: Option<JoinHandle<()>>,
}

impl Lock {
    /// Takes a lock, waiting up to `options.retry` for conflicting ones.
    pub fn acquire(repo: &Repository, options: &LockOptions) -> Result<Lock> {
        let removed = remove_stale(repo, options, false)?;
        if removed > 0 {
            tracing::info!(removed, "removed stale locks before locking");
        }
        let deadline = std::time::Instant::now() + options.retry;
        loop {
            match try_acquire(repo, options)? {
                Ok(lock) => return Ok(lock),
                Err(holder) => {
                    if std::time::Instant::now() >= deadline {
                        return Err(Error::Locked {
                            holder: holder.describe(),
                        });
                    }
                    tracing::info!(holder = %holder.describe(), "repository locked, waiting");
                    std::thread::sleep(Duration::from_secs(5).min(
                        deadline.saturating_duration_since(std::time::Instant::now())
                            + Duration::from_millis(100),
                    ));
                }
            }
        }
    }
}

fn new_lock_file(options: &LockOptions) -> LockFile {
    LockFile {
        time: crate::time::now_rfc3339(),
        exclusive: options.exclusive,
        hostname: options.hostname.clone(),
        username: crate::host::username(),
        pid: std::process::id() as i64,
        uid: crate::host::uid(),
        gid: crate::host::gid(),
    }
}

fn write_lock(backend: &dyn Backend, key: &Key, version: u32, lock: &LockFile) -> Result<Id> {
    let sealed = seal_unpacked(key, version, &serde_json::to_vec(lock).expect("lock JSON"));
    let id = Id::hash(&sealed);
    backend.save(FileKind::Lock, &id.to_hex(), Payload::Bytes(&sealed))?;
    Ok(id)
}

fn try_acquire(
    repo: &Repository,
    options: &LockOptions,
) -> Result<std::result::Result<Lock, LockFile>> {
    if let Some(holder) = conflict(repo, options, None)? {
        return Ok(Err(holder));
    }
    let version = repo.config().version;
    let id = write_lock(
        &**repo.backend(),
        repo.key(),
        version,
        &new_lock_file(options),
    )?;
    if !listing_is_immediate(&repo.backend().location()) {
        std::thread::sleep(SETTLE);
    }
    if let Some(holder) = conflict(repo, options, Some(id))? {
        repo.backend().remove(FileKind::Lock, &id.to_hex())?;
        return Ok(Err(holder));
    }
    let current = Arc::new(std::sync::Mutex::new(id));
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let backend = repo.backend().clone();
    let key = repo.key().clone();
    let opts = options.clone();
    let cur = current.clone();
    let refresher = std::thread::spawn(move || {
        while let Err(mpsc::RecvTimeoutError::Timeout) = stop_rx.recv_timeout(REFRESH_EVERY) {
            match write_lock(&*backend, &key, version, &new_lock_file(&opts)) {
                Ok(new_id) => {
                    let old = std::mem::replace(&mut *cur.lock().expect("lock id"), new_id);
                    if let Err(e) = backend.remove(FileKind::Lock, &old.to_hex()) {
                        tracing::warn!(error = %e, "could not remove the previous lock file");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not refresh the repository lock"),
            }
        }
    });
    Ok(Ok(Lock {
        backend: repo.backend().clone(),
        current,
        stop: Some(stop_tx),
        refresher: Some(refresher),
    }))
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(h) = self.refresher.take() {
            let _ = h.join();
        }
        let id = *self.current.lock().expect("lock id");
        if let Err(e) = self.backend.remove(FileKind::Lock, &id.to_hex()) {
            tracing::warn!(error = %e, "could not remove the repository lock");
        }
    }
}

/// Reads one lock file's content with only the key (for tests and tools).
pub fn read(backend: &dyn Backend, key: &Key, id: &Id) -> Result<LockFile> {
    let raw = backend.load(FileKind::Lock, &id.to_hex())?;
    let plain = open_unpacked(key, &format!("locks/{id}"), &raw)?;
    serde_json::from_slice(&plain).map_err(|e| Error::corrupt(format!("locks/{id}"), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::listing_is_immediate;

    #[test]
    fn local_directories_skip_the_settle_wait_and_urls_keep_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(listing_is_immediate(&dir.path().display().to_string()));
        assert!(!listing_is_immediate("s3:http://127.0.0.1:9000/bucket"));
        assert!(!listing_is_immediate(
            &dir.path().join("missing").display().to_string()
        ));
    }
}
