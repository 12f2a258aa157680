//! Helpers shared by the maintenance tests: repositories driven by both
//! sluice-mover and the real restic, and tree comparison.

#![allow(dead_code, unused_imports)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const PASSWORD: &str = "maintenance-test-password";

/// A repository on the local file system.
pub struct Repo {
    pub path: PathBuf,
}

impl Repo {
    pub fn new(path: &Path) -> Repo {
        Repo {
            path: path.to_path_buf(),
        }
    }

    /// sluice-mover with the repository and password set.
    pub fn sluice(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sluice-mover"));
        c.env("RESTIC_REPOSITORY", &self.path)
            .env("RESTIC_PASSWORD", PASSWORD)
            .env_remove("RESTIC_PASSWORD_FILE")
            .env_remove("SLUICE_LOG")
            // New keys derive cheaply: these tests create many repositories.
            .env("SLUICE_INSECURE_TEST_KDF", "1");
        c
    }

    /// The real restic with the repository and password set.
    pub fn restic(&self) -> Command {
        let mut c = Command::new(sluice_testkit::tools::Tool::Restic.path());
        c.env("RESTIC_REPOSITORY", &self.path)
            .env("RESTIC_PASSWORD", PASSWORD)
            .env_remove("RESTIC_PASSWORD_FILE")
            .env("RESTIC_CACHE_DIR", self.path.with_extension("cache"))
            .arg("--no-cache");
        c
    }

    /// Ids of the snapshots, as restic lists them.
    pub fn snapshot_ids(&self) -> Vec<String> {
        let out = ok(self.restic().args(["snapshots", "--json"]));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("snapshots JSON");
        let mut ids: Vec<String> = v
            .as_array()
            .expect("array")
            .iter()
            .map(|s| s["id"].as_str().expect("id").to_string())
            .collect();
        ids.sort();
        ids
    }

    /// Files in a repository directory (`locks`, `index`, `snapshots`...).
    pub fn files(&self, dir: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk_files(&self.path.join(dir), &mut out);
        out.sort();
        out
    }
}

fn walk_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn describe(c: &Command, o: &Output) -> String {
    format!(
        "{:?} exited with {}\nstdout:\n{}\nstderr:\n{}",
        c,
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs the command and returns its output, failing unless it exited 0.
pub fn ok(c: &mut Command) -> Output {
    let o = c
        .output()
        .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"));
    assert!(o.status.success(), "{}", describe(c, &o));
    o
}

/// Runs the command, failing unless it exited with `code`.
pub fn exits(c: &mut Command, code: i32) -> Output {
    let o = c
        .output()
        .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"));
    assert_eq!(o.status.code(), Some(code), "{}", describe(c, &o));
    o
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub use sluice_testkit::data::random_bytes;

/// Everything a restore must reproduce of a tree: for each relative path,
/// its kind, permission bits and content.
pub fn tree_digest(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    digest_into(root, root, &mut out);
    out
}

fn digest_into(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let meta = std::fs::symlink_metadata(&p).unwrap();
        let perm = meta.permissions().mode() & 0o7777;
        if meta.is_dir() {
            out.insert(rel, format!("dir {perm:o}"));
            digest_into(root, &p, out);
        } else if meta.file_type().is_symlink() {
            out.insert(
                rel,
                format!("link {}", std::fs::read_link(&p).unwrap().display()),
            );
        } else {
            let data = std::fs::read(&p).unwrap();
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            data.hash(&mut h);
            out.insert(
                rel,
                format!("file {perm:o} {} {:x}", data.len(), h.finish()),
            );
        }
    }
}

/// Restores a snapshot with restic into `target` and digests the result.
pub fn restic_restore(repo: &Repo, id: &str, target: &Path) -> BTreeMap<String, String> {
    ok(repo.restic().args(["restore", id, "--target"]).arg(target));
    tree_digest(target)
}

/// Waits until `dir` of the repository holds at least one file.
pub fn wait_for_file(repo: &Repo, dir: &str, timeout: std::time::Duration) -> bool {
    let until = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < until {
        // Only complete files count: the local backend writes under a
        // dot-prefixed temporary name first.
        let complete = repo
            .files(dir)
            .iter()
            .any(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'));
        if complete {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    false
}

/// Kills a child with SIGKILL and reaps it.
pub fn kill9(child: &mut std::process::Child) {
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
}

/// Copies a directory tree (repositories are plain files).
pub fn copy_dir(from: &Path, to: &Path) {
    ok(Command::new("cp").arg("-a").arg(from).arg(to));
}
