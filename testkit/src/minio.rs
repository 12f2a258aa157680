//! A real MinIO server on 127.0.0.1, for object-storage tests.
//!
//! Each [`MinIo`] owns a temporary data directory and a free port. It can be
//! stopped and started again on the same port and data, which is how tests
//! take the object store away in the middle of a backup.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::probe::http_get_at;
use crate::process::{Daemon, free_port_on, succeed_with_input};
use crate::tools::Tool;

/// MinIO refuses every write that would leave less than this fraction of its
/// drive free (its `diskFillFraction` is 0.99); tests would then fail with
/// S3 errors that do not say why.
const MINIO_RESERVED_FRACTION: f64 = 0.01;

/// Room the tests themselves need beyond MinIO's reserve.
const TEST_ROOM_BYTES: u64 = 1 << 30;

/// Why MinIO could not take writes in `dir`, or `None` when there is room:
/// a one-line message with the figures and what to do.
fn free_space_shortfall(dir: &Path) -> Option<String> {
    let (free, total) = disk_space(dir)?;
    shortfall_message(dir, free, total)
}

/// The decision of [`free_space_shortfall`], apart from the system call.
fn shortfall_message(dir: &Path, free: u64, total: u64) -> Option<String> {
    let needed = (total as f64 * MINIO_RESERVED_FRACTION) as u64 + TEST_ROOM_BYTES;
    (free < needed).then(|| {
        format!(
            "{} has {} MiB free of {} GiB; MinIO refuses writes below 1% free and the tests need \
             1 GiB more ({} MiB in all): free disk space (old cargo target dirs and Go build \
             caches are the usual culprits) or point TMPDIR at a roomier file system",
            dir.display(),
            free >> 20,
            total >> 30,
            needed >> 20
        )
    })
}

/// Bytes available to unprivileged users and the file system's size, by
/// `statvfs`; `None` if the call fails (then MinIO reports for itself).
fn disk_space(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is NUL-terminated and `stat` is written by the call
    // before it is read, only when the call succeeds.
    let stat = unsafe {
        if libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) != 0 {
            return None;
        }
        stat.assume_init()
    };
    let block = stat.f_frsize as u64;
    Some((stat.f_bavail as u64 * block, stat.f_blocks as u64 * block))
}

/// A running (or stopped) MinIO server with known root credentials.
#[derive(Debug)]
pub struct MinIo {
    address: IpAddr,
    port: u16,
    console_port: u16,
    dir: TempDir,
    daemon: Option<Daemon>,
    /// The OpenID client id whose tokens STS accepts, if any.
    openid: Option<OpenId>,
}

/// An OpenID provider MinIO's STS trusts (`MINIO_IDENTITY_OPENID_*`).
#[derive(Clone, Debug)]
struct OpenId {
    config_url: String,
    client_id: String,
}

impl MinIo {
    /// Root user, used as `AWS_ACCESS_KEY_ID`.
    pub const ACCESS_KEY: &'static str = "sluice-e2e";
    /// Root password, used as `AWS_SECRET_ACCESS_KEY`.
    pub const SECRET_KEY: &'static str = "sluice-e2e-secret";
    /// MinIO's default region, used as `AWS_DEFAULT_REGION`.
    pub const REGION: &'static str = "us-east-1";

    /// Starts MinIO on 127.0.0.1, a free port, with an empty data directory
    /// and waits until it serves requests.
    pub fn start() -> MinIo {
        MinIo::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// Starts MinIO listening on `address` (127.0.0.1, or the test
    /// cluster's bridge address so that Pods reach it too).
    pub fn start_on(address: IpAddr) -> MinIo {
        MinIo::start_with(address, None)
    }

    /// Starts MinIO on 127.0.0.1 with its STS trusting the OpenID provider
    /// at `config_url` (a discovery document) for tokens whose audience is
    /// `client_id`; [`MinIo::role_arn`] names the role, whose policy is
    /// MinIO's built-in `readwrite`. The provider must be serving already:
    /// MinIO reads the document at startup.
    pub fn start_trusting(config_url: &str, client_id: &str) -> MinIo {
        MinIo::start_with(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            Some(OpenId {
                config_url: config_url.to_string(),
                client_id: client_id.to_string(),
            }),
        )
    }

    fn start_with(address: IpAddr, openid: Option<OpenId>) -> MinIo {
        let dir = tempfile::Builder::new()
            .prefix("sluice-minio-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory for MinIO: {e}"));
        std::fs::create_dir(dir.path().join("data"))
            .unwrap_or_else(|e| panic!("cannot create {}/data: {e}", dir.path().display()));
        if let Some(shortfall) = free_space_shortfall(dir.path()) {
            panic!("{shortfall}");
        }
        let mut minio = MinIo {
            address,
            port: free_port_on(address),
            console_port: free_port_on(address),
            dir,
            daemon: None,
            openid,
        };
        minio.start_again();
        minio
    }

    /// Starts the server again after [`MinIo::stop`] or [`MinIo::kill`], on
    /// the same port and data directory, and waits until it is ready.
    pub fn start_again(&mut self) {
        assert!(
            self.daemon.is_none(),
            "MinIO on port {} is already running",
            self.port
        );
        let mut command = Command::new(Tool::Minio.path());
        command
            .arg("server")
            .arg("--quiet")
            .arg("--address")
            .arg(self.socket_address().to_string())
            .arg("--console-address")
            .arg(SocketAddr::new(self.address, self.console_port).to_string())
            .arg(self.data_dir())
            .env("MINIO_ROOT_USER", Self::ACCESS_KEY)
            .env("MINIO_ROOT_PASSWORD", Self::SECRET_KEY)
            .env("MINIO_BROWSER", "off")
            .env("MINIO_UPDATE", "off")
            // Keep MinIO's config and certs inside the temporary directory.
            .env("HOME", self.dir.path());
        if let Some(openid) = &self.openid {
            command
                .env("MINIO_IDENTITY_OPENID_CONFIG_URL", &openid.config_url)
                .env("MINIO_IDENTITY_OPENID_CLIENT_ID", &openid.client_id)
                .env("MINIO_IDENTITY_OPENID_ROLE_POLICY", "readwrite");
        }
        let log = self.dir.path().join("minio.log");
        let mut daemon = Daemon::spawn("minio", command, &log);
        let address = self.socket_address();
        daemon.wait_ready("ready", Duration::from_secs(60), || {
            matches!(http_get_at(address, "/minio/health/ready"), Some((200, _)))
        });
        self.daemon = Some(daemon);
    }

    /// Stops the server gracefully; the data stays for [`MinIo::start_again`].
    pub fn stop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            daemon.stop(Duration::from_secs(10));
        }
    }

    /// Kills the server at once (SIGKILL), as a crash or a lost node would.
    pub fn kill(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            daemon.kill();
        }
    }

    /// Whether the server process is running.
    pub fn is_running(&mut self) -> bool {
        self.daemon.as_mut().is_some_and(Daemon::is_running)
    }

    /// The ARN of the role STS grants to tokens for the trusted client id
    /// (see [`MinIo::start_trusting`]): MinIO derives it from the client id.
    pub fn role_arn(&self) -> Option<String> {
        let openid = self.openid.as_ref()?;
        let mut sha1 = Command::new("openssl");
        sha1.args(["dgst", "-sha1", "-binary"]);
        let digest = succeed_with_input(sha1, openid.client_id.as_bytes());
        use base64::Engine as _;
        Some(format!(
            "arn:minio:iam:::role/{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
        ))
    }

    /// The S3 endpoint, `http://ADDRESS:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.socket_address())
    }

    /// Where the S3 API listens.
    pub fn socket_address(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port)
    }

    /// The port the S3 API listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The restic repository URL of `bucket_and_prefix` on this server, e.g.
    /// `s3:http://ADDRESS:PORT/bucket/prefix`.
    pub fn repository(&self, bucket_and_prefix: &str) -> String {
        format!(
            "s3:{}/{}",
            self.endpoint(),
            bucket_and_prefix.trim_start_matches('/')
        )
    }

    /// The AWS variables that give a client root access to this server.
    pub fn env(&self) -> [(&'static str, &'static str); 3] {
        [
            ("AWS_ACCESS_KEY_ID", Self::ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", Self::SECRET_KEY),
            ("AWS_DEFAULT_REGION", Self::REGION),
        ]
    }

    /// A `restic` command against `bucket_and_prefix` on this server, with
    /// the repository, password and credentials in its environment; add the
    /// subcommand and run it.
    pub fn restic(&self, bucket_and_prefix: &str, password: &str) -> Command {
        let mut command = Command::new(Tool::Restic.path());
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("RESTIC_CACHE_DIR", self.dir.path().join("restic-cache"))
            .env("RESTIC_REPOSITORY", self.repository(bucket_and_prefix))
            .env("RESTIC_PASSWORD", password)
            .envs(self.env());
        command
    }

    /// The bytes of object `key` in `bucket`, fetched through the S3 API (curl signs the request).
    pub fn get_object(&self, bucket: &str, key: &str) -> Vec<u8> {
        let output = self
            .curl(bucket, key)
            .output()
            .unwrap_or_else(|e| panic!("cannot run curl: {e}"));
        assert!(
            output.status.success(),
            "GET {bucket}/{key} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    /// Writes object `key` in `bucket` through the S3 API, as any client with write access to
    /// the bucket could: tests use it to damage a repository the way a hostile writer would.
    pub fn put_object(&self, bucket: &str, key: &str, bytes: &[u8]) {
        // From a file: MinIO refuses a chunked upload of unknown length.
        let upload = tempfile::NamedTempFile::new_in(self.dir.path()).expect("a temporary file");
        std::fs::write(upload.path(), bytes).expect("the upload is written");
        let mut curl = self.curl(bucket, key);
        curl.arg("--upload-file").arg(upload.path());
        crate::process::succeed(curl);
    }

    /// A `curl` of `bucket/key` signed with the root credentials (`--aws-sigv4`).
    fn curl(&self, bucket: &str, key: &str) -> Command {
        let mut curl = Command::new("curl");
        curl.args(["--silent", "--show-error", "--fail"])
            .arg("--aws-sigv4")
            .arg(format!("aws:amz:{}:s3", Self::REGION))
            .arg("--user")
            .arg(format!("{}:{}", Self::ACCESS_KEY, Self::SECRET_KEY))
            .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
            .arg(format!("{}/{bucket}/{key}", self.endpoint()));
        curl
    }

    /// The directory MinIO stores objects in (one subdirectory per bucket).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// MinIO's log file, for diagnosing a failed test.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("minio.log")
    }

    /// The temporary directory that holds data, log and client caches.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for MinIo {
    fn drop(&mut self) {
        // Kill before the TempDir goes, so MinIO never writes into a
        // directory being deleted.
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_little_free_space_is_named_with_its_figures() {
        const GIB: u64 = 1 << 30;
        let dir = Path::new("/tmp/x");
        // (free, total, short?)
        let cases = [
            (80 * GIB, 252 * GIB, false),
            (700 << 20, 252 * GIB, true), // the CI run that failed: 0.25% free
            (3 * GIB, 252 * GIB, true),   // 2.52 GiB reserve + 1 GiB room
            (4 * GIB, 252 * GIB, false),
            (2 * GIB, 10 * GIB, false),
        ];
        for (free, total, short) in cases {
            let message = shortfall_message(dir, free, total);
            assert_eq!(message.is_some(), short, "free {free} of {total}");
            if let Some(m) = message {
                assert!(m.starts_with("/tmp/x has "), "{m}");
                assert!(m.contains(&format!("{} MiB free", free >> 20)), "{m}");
            }
        }
    }

    #[test]
    fn the_temporary_directory_has_a_size() {
        let (free, total) = disk_space(&std::env::temp_dir()).expect("statvfs of TMPDIR");
        assert!(total > 0 && free <= total, "free {free} of {total}");
    }
}
