//! Helpers shared by the mover's integration tests: repositories that
//! sluice-mover and the real restic both drive (local, or on MinIO),
//! running commands, awkward trees, crafted repositories (`craft`), and
//! killing and waiting. Data and tree comparison come from
//! `sluice_testkit`, so every crate's tests use the same ones.

#![allow(dead_code, unused_imports)] // each test binary uses a different subset

use std::ffi::{CString, OsStr};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sluice_testkit::MinIo;
pub use sluice_testkit::data::random_bytes;
use sluice_testkit::tools::Tool;
pub use sluice_testkit::tree::{Compare, assert_same_tree};

pub mod craft;

pub const PASSWORD: &str = "correct horse battery staple";

/// Variables of the test's own environment that would change what the
/// tools do; each command gets only what its `Repo` sets.
const AMBIENT: [&str; 15] = [
    "RESTIC_PASSWORD_FILE",
    "RESTIC_CACERT",
    "RESTIC_COMPRESSION",
    "RESTIC_PACK_SIZE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_SESSION_NAME",
    "AWS_ENDPOINT_URL_STS",
    "SLUICE_LOG",
    "SLUICE_LOG_FORMAT",
];

/// A repository location plus the environment both tools need.
pub struct Repo {
    pub location: String,
    pub password: String,
    pub env: Vec<(String, String)>,
}

impl Repo {
    /// A repository in a local directory.
    pub fn local(path: &Path) -> Repo {
        Repo {
            location: path.display().to_string(),
            password: PASSWORD.to_string(),
            env: Vec::new(),
        }
    }

    /// A repository at `bucket_and_prefix` on `minio`, with its credentials.
    pub fn s3(minio: &MinIo, bucket_and_prefix: &str) -> Repo {
        Repo {
            location: minio.repository(bucket_and_prefix),
            password: PASSWORD.to_string(),
            env: minio
                .env()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// The directory of a local repository.
    pub fn path(&self) -> PathBuf {
        assert!(
            !self.location.starts_with("s3:"),
            "{} is not a local repository",
            self.location
        );
        PathBuf::from(&self.location)
    }

    fn apply(&self, c: &mut Command) {
        for name in AMBIENT {
            c.env_remove(name);
        }
        c.env("RESTIC_REPOSITORY", &self.location)
            .env("RESTIC_PASSWORD", &self.password)
            // New keys derive cheaply: these tests create many repositories.
            .env("SLUICE_INSECURE_TEST_KDF", "1");
        for (k, v) in &self.env {
            c.env(k, v);
        }
    }

    /// A sluice-mover command against this repository.
    pub fn sluice(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sluice-mover"));
        self.apply(&mut c);
        c
    }

    /// A restic command against this repository, without a cache, so what
    /// it reports is what the repository holds.
    pub fn restic(&self) -> Command {
        let mut c = Command::new(Tool::Restic.path());
        self.apply(&mut c);
        c.arg("--no-cache");
        c
    }

    /// Ids of the snapshots, sorted, as restic lists them.
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

    /// Files in a directory of a local repository (`locks`, `index`,
    /// `data`...; `""` for all), sorted.
    pub fn files(&self, dir: &str) -> Vec<PathBuf> {
        files_below(&self.path().join(dir))
    }
}

/// Every file below `dir` (none when it does not exist), sorted.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

fn describe(c: &Command, o: &Output) -> String {
    format!(
        "{c:?} exited with {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run(c: &mut Command) -> Output {
    c.output()
        .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"))
}

/// Runs a command and returns its output, panicking with both streams if
/// it did not exit 0.
pub fn ok(c: &mut Command) -> Output {
    let o = run(c);
    assert!(o.status.success(), "{}", describe(c, &o));
    o
}

/// Runs a command that is expected to fail and returns its output.
pub fn fails(c: &mut Command) -> Output {
    let o = run(c);
    assert!(
        !o.status.success(),
        "unexpected success: {}",
        describe(c, &o)
    );
    o
}

/// Runs a command, failing unless it exited with `code`.
pub fn exits(c: &mut Command, code: i32) -> Output {
    let o = run(c);
    assert_eq!(o.status.code(), Some(code), "{}", describe(c, &o));
    o
}

/// Starts `n` commands (`make(i)` for each i) at once and waits for all.
pub fn all_at_once(n: usize, make: impl Fn(usize) -> Command) -> Vec<Output> {
    let children: Vec<_> = (0..n)
        .map(|i| {
            make(i)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Waits until `dir` of a local repository holds at least one complete
/// file (the local backend writes under a dot-prefixed temporary name
/// first).
pub fn wait_for_file(repo: &Repo, dir: &str, timeout: std::time::Duration) -> bool {
    let until = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < until {
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

/// Restores snapshot `id` with restic into `target`.
pub fn restic_restore(repo: &Repo, id: &str, target: &Path) {
    ok(repo.restic().args(["restore", id, "--target"]).arg(target));
}

fn c_path(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// Sets atime and mtime (seconds, nanoseconds) without following symlinks.
pub fn set_times(p: &Path, secs: i64, nanos: i64) {
    let ts = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: nanos as libc::c_long,
    };
    let times = [ts, ts];
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c_path(p).as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(
        rc,
        0,
        "utimensat {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

fn name(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

/// True when the tests run as root (ownership and special bits need it).
pub fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// Builds a tree with every kind of entry and awkward names, modes and
/// times a volume can hold.
pub fn make_awkward_tree(root: &Path) {
    fs::create_dir_all(root).unwrap();
    let w = |rel: &[u8], data: &[u8]| {
        let p = root.join(name(rel));
        fs::write(&p, data).unwrap();
        p
    };
    w(b"empty", b"");
    w(b"one-byte", b"x");
    w(b"page", &random_bytes(1, 4096));
    w(b"small-random", &random_bytes(2, 700 * 1024));
    w(b"multi-chunk-random", &random_bytes(3, 12 * 1024 * 1024));
    let text: Vec<u8> = (0..200_000)
        .flat_map(|i| format!("line {i} of compressible text\n").into_bytes())
        .collect();
    w(b"compressible.txt", &text);
    // Awkward names: not UTF-8, newline, quotes, backslash, unicode,
    // leading dash, spaces, escapes Go quotes, and the longest allowed.
    for (i, n) in [
        &b"not-utf8-\xff\xfe"[..],
        b"new\nline",
        b"quote\"s and 'single'",
        b"back\\slash",
        "unicod\u{e9} \u{65e5}\u{672c} \u{1f600}".as_bytes(),
        "nbsp\u{a0}and\u{feff}bom".as_bytes(),
        b"-leading-dash",
        b" spaces ",
        b"tab\there\x01ctl",
        &[b'L'; 255][..],
    ]
    .iter()
    .enumerate()
    {
        w(n, format!("awkward {i}").as_bytes());
    }
    // Sparse: 64 MiB with data at two places only.
    {
        let p = root.join("sparse");
        let f = fs::File::create(&p).unwrap();
        f.set_len(64 << 20).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(&random_bytes(4, 100_000), 1 << 20).unwrap();
        f.write_all_at(b"tail", (64 << 20) - 4).unwrap();
    }
    // Deep directories.
    let mut deep = root.join("deep");
    for i in 0..6 {
        deep = deep.join(format!("level{i}"));
    }
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("bottom"), b"bottom of the tree").unwrap();
    fs::create_dir(root.join("empty-dir")).unwrap();
    // Links.
    std::os::unix::fs::symlink("page", root.join("link-relative")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", root.join("link-dangling")).unwrap();
    std::os::unix::fs::symlink(name(b"target-\xff"), root.join("link-not-utf8")).unwrap();
    std::os::unix::fs::symlink("deep/level0", root.join("link-to-dir")).unwrap();
    fs::write(root.join("hard-a"), b"shared by two names").unwrap();
    fs::hard_link(root.join("hard-a"), root.join("deep/hard-b")).unwrap();
    // A named pipe.
    let rc = unsafe { libc::mkfifo(c_path(&root.join("fifo")).as_ptr(), 0o640) };
    assert_eq!(rc, 0);
    // Extended attributes.
    xattr_set(
        &root.join("page"),
        "user.sluice.test",
        b"value with \0 bytes",
    );
    xattr_set(&root.join("deep"), "user.dir-attr", b"on a directory");
    // Modes.
    fs::set_permissions(root.join("one-byte"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(root.join("page"), fs::Permissions::from_mode(0o444)).unwrap();
    fs::set_permissions(root.join("empty-dir"), fs::Permissions::from_mode(0o700)).unwrap();
    if is_root() {
        fs::set_permissions(root.join("empty"), fs::Permissions::from_mode(0o4755)).unwrap();
        fs::set_permissions(root.join("deep/level0"), fs::Permissions::from_mode(0o3775)).unwrap();
        for (p, uid, gid) in [("small-random", 1234, 5678), ("deep/level0", 4321, 8765)] {
            let rc = unsafe { libc::lchown(c_path(&root.join(p)).as_ptr(), uid, gid) };
            assert_eq!(rc, 0);
        }
        let rc = unsafe { libc::lchown(c_path(&root.join("link-relative")).as_ptr(), 42, 43) };
        assert_eq!(rc, 0);
        // chown clears setuid/setgid; set the dir's bits again.
        fs::set_permissions(root.join("deep/level0"), fs::Permissions::from_mode(0o3775)).unwrap();
    }
    // Times: nanoseconds, before 1970, far future; directories last.
    set_times(&root.join("one-byte"), 1_000_000_000, 123_456_789);
    set_times(&root.join("page"), -86_400 * 365, 0);
    set_times(&root.join("compressible.txt"), 4_102_444_800, 999_999_999);
    set_times(&root.join("link-relative"), 1_234_567_890, 5);
    set_times(&deep, 1_500_000_000, 1);
    set_times(&root.join("empty-dir"), 1_600_000_000, 42);
}

pub fn xattr_set(p: &Path, key: &str, value: &[u8]) {
    let k = CString::new(key).unwrap();
    let rc = unsafe {
        libc::lsetxattr(
            c_path(p).as_ptr(),
            k.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        rc,
        0,
        "setxattr {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

/// Allocated bytes of a file (to check sparseness).
pub fn allocated(p: &Path) -> u64 {
    fs::metadata(p).unwrap().blocks() * 512
}

/// The directory a test works in; removed when dropped.
pub fn workdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("sluice-test-")
        .tempdir()
        .unwrap()
}

/// Parses the last JSON line of `--json` output.
pub fn last_json(out: &Output) -> serde_json::Value {
    let s = stdout(out);
    let line = s
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line in {s}"));
    serde_json::from_str(line).unwrap()
}

/// Runs a child and returns its status, peak resident memory in bytes and
/// stderr. The peak is the child's own `VmHWM`, polled while it runs:
/// `wait4`'s `ru_maxrss` would include the test process's memory, which
/// Linux carries across the fork and exec.
pub fn run_measuring_rss(c: &mut Command) -> (std::process::ExitStatus, u64, String) {
    let program = Path::new(c.get_program())
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let mut child = c
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    let mut err_pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        use std::io::Read;
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Ok(st) = fs::read_to_string(&status_path) {
            let name_ok = st
                .lines()
                .any(|l| l.starts_with("Name:") && program.starts_with(l[5..].trim()));
            if name_ok && let Some(hwm) = st.lines().find(|l| l.starts_with("VmHWM:")) {
                let kb: u64 = hwm.split_whitespace().nth(1).unwrap().parse().unwrap();
                peak = peak.max(kb * 1024);
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    (status, peak, reader.join().unwrap())
}

/// Path of a file below `root` given raw name components.
pub fn raw(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(OsStr::from_bytes(rel))
}

/// A tmpfs mounted for a test (it needs root), unmounted when dropped.
pub struct Tmpfs {
    pub path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `10m`) at `path`, creating the directory.
    pub fn mount(path: &Path, size: &str) -> Tmpfs {
        assert!(
            is_root(),
            "this test mounts a tmpfs of {size} and needs root (run the tests as root)"
        );
        fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount a tmpfs at {}", path.display());
        Tmpfs {
            path: path.to_path_buf(),
        }
    }

    /// Makes the file system read-only.
    pub fn read_only(&self) {
        let status = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.path)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "remount {} read-only",
            self.path.display()
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// Counts the files in `dir` opened while `run` runs, watched with inotify
/// from outside the process: reading a key file is what every key
/// derivation starts with, so on a repository with one key file this counts
/// derivations without any hook in the mover.
pub fn count_opens_in(dir: &Path, run: impl FnOnce()) -> usize {
    // SAFETY: plain inotify calls on a descriptor this function owns.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    assert!(
        fd >= 0,
        "inotify_init1: {}",
        std::io::Error::last_os_error()
    );
    let wd = unsafe { libc::inotify_add_watch(fd, c_path(dir).as_ptr(), libc::IN_OPEN) };
    assert!(
        wd >= 0,
        "inotify_add_watch {}: {}",
        dir.display(),
        std::io::Error::last_os_error()
    );
    run();
    // Events are queued when the open happens, so all of them are there
    // once `run` has waited for its process.
    let header = std::mem::size_of::<libc::inotify_event>();
    let mut buf = vec![0u8; 64 << 10];
    let mut opens = 0;
    loop {
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        let mut at = 0;
        while at + header <= n as usize {
            // SAFETY: the kernel wrote a whole event at `at`; it may be unaligned.
            let event: libc::inotify_event =
                unsafe { std::ptr::read_unaligned(buf.as_ptr().add(at).cast()) };
            // Named, non-directory events are opens of files in `dir`.
            if event.len > 0 && event.mask & libc::IN_ISDIR == 0 {
                opens += 1;
            }
            at += header + event.len as usize;
        }
    }
    unsafe { libc::close(fd) };
    opens
}
