//! Retries of transient backend failures, so a network blip, a restarting
//! object store or throttling does not fail an hour-long backup.
//!
//! Every operation of the repository format is safe to repeat: files are
//! write-once and named by their content (or are locks and snapshots written
//! whole), removing a missing file succeeds, and reads have no side effects.

use std::time::{Duration, Instant};

use super::{
    Backend, BackendError, BackendErrorKind, BackendResult, FileKind, ListedFile, Payload,
};

/// How long and how often to retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Upper bound of the wait before the first retry; it doubles per retry.
    pub initial_delay: Duration,
    /// Upper bound of any single wait.
    pub max_delay: Duration,
    /// No retry starts once this much time has passed since the first
    /// attempt; the last error is returned instead.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    /// Rides out about two minutes of outage (a MinIO or S3 gateway restart,
    /// a node's network flapping) before giving up.
    fn default() -> Self {
        RetryPolicy {
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// For a question about the backend now (a probe): about 15 seconds of retries, enough
    /// for a dropped connection, short enough that the answer is current.
    pub const PROBE: RetryPolicy = RetryPolicy {
        initial_delay: Duration::from_millis(500),
        max_delay: Duration::from_secs(4),
        max_elapsed: Duration::from_secs(15),
    };

    /// The wait before retry number `retry` (1-based): exponential backoff
    /// with full jitter, so many clients that failed together do not come
    /// back together.
    fn delay(&self, retry: u32) -> Duration {
        let cap = self
            .initial_delay
            .saturating_mul(1u32.checked_shl(retry - 1).unwrap_or(u32::MAX))
            .min(self.max_delay);
        let cap_ms = cap.as_millis() as u64;
        Duration::from_millis(rand::random_range(0..=cap_ms))
    }
}

/// A backend that retries the `Transient` failures of another with backoff.
pub struct RetryBackend<B> {
    inner: B,
    policy: RetryPolicy,
}

impl<B: Backend> RetryBackend<B> {
    /// Wraps `inner`, retrying by `policy`.
    pub fn new(inner: B, policy: RetryPolicy) -> RetryBackend<B> {
        RetryBackend { inner, policy }
    }

    fn run<T>(
        &self,
        operation: &str,
        file: &str,
        mut attempt_once: impl FnMut() -> BackendResult<T>,
    ) -> BackendResult<T> {
        let start = Instant::now();
        let mut attempt = 1u32;
        loop {
            let err = match attempt_once() {
                Err(e) if e.kind == BackendErrorKind::Transient => e,
                done => return done,
            };
            let delay = self.policy.delay(attempt);
            let elapsed = start.elapsed();
            if elapsed + delay > self.policy.max_elapsed {
                return Err(gave_up(err, attempt, elapsed));
            }
            tracing::warn!(
                operation,
                file,
                location = %self.inner.location(),
                attempt,
                retry_in_ms = delay.as_millis() as u64,
                cause = %err,
                "transient storage error, retrying"
            );
            std::thread::sleep(delay);
            attempt += 1;
        }
    }
}

/// The last error, saying that retries ran out; still `Transient`, so the
/// caller may treat it as an outage rather than as a broken repository.
fn gave_up(mut err: BackendError, attempts: u32, elapsed: Duration) -> BackendError {
    err.cause = format!(
        "{} (gave up after {attempts} attempts in {}s: check that the endpoint is reachable)",
        err.cause,
        elapsed.as_secs()
    );
    err
}

impl<B: Backend> Backend for RetryBackend<B> {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn create(&self) -> BackendResult<()> {
        self.run("create", "", || self.inner.create())
    }

    fn staging_dir(&self) -> Option<std::path::PathBuf> {
        self.inner.staging_dir()
    }

    fn save(&self, kind: FileKind, name: &str, payload: Payload<'_>) -> BackendResult<()> {
        self.run("save", &kind.path(name), || {
            // A payload only borrows its content, so each attempt gets its own
            // view of the same bytes or file.
            let again = match &payload {
                Payload::Bytes(b) => Payload::Bytes(b),
                Payload::File { file, len } => Payload::File { file, len: *len },
                Payload::Staged { file, path, len } => Payload::Staged {
                    file,
                    path,
                    len: *len,
                },
            };
            self.inner.save(kind, name, again)
        })
    }

    /// A retry after a lost response may find the file it created itself: the caller
    /// (repository creation) tells that apart by the file's content.
    fn save_new(&self, kind: FileKind, name: &str, bytes: &[u8]) -> BackendResult<()> {
        self.run("save", &kind.path(name), || {
            self.inner.save_new(kind, name, bytes)
        })
    }

    fn load(&self, kind: FileKind, name: &str) -> BackendResult<Vec<u8>> {
        self.run("load", &kind.path(name), || self.inner.load(kind, name))
    }

    fn load_range(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> BackendResult<Vec<u8>> {
        self.run("load_range", &kind.path(name), || {
            self.inner.load_range(kind, name, offset, length)
        })
    }

    fn load_range_into(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> BackendResult<()> {
        self.run("load_range", &kind.path(name), || {
            self.inner.load_range_into(kind, name, offset, length, buf)
        })
    }

    fn stat(&self, kind: FileKind, name: &str) -> BackendResult<u64> {
        self.run("stat", &kind.path(name), || self.inner.stat(kind, name))
    }

    fn remove(&self, kind: FileKind, name: &str) -> BackendResult<()> {
        self.run("remove", &kind.path(name), || self.inner.remove(kind, name))
    }

    fn list(&self, kind: FileKind) -> BackendResult<Vec<ListedFile>> {
        self.run("list", kind.dir(), || self.inner.list(kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A backend whose `stat` fails with the queued errors, then succeeds;
    /// the retry loop is what is under test here, not storage.
    struct Failing {
        errors: Mutex<Vec<BackendErrorKind>>,
        calls: Mutex<u32>,
    }

    impl Failing {
        fn new(errors: &[BackendErrorKind]) -> Failing {
            Failing {
                errors: Mutex::new(errors.iter().rev().copied().collect()),
                calls: Mutex::new(0),
            }
        }
        fn calls(&self) -> u32 {
            *self.calls.lock().unwrap()
        }
    }

    impl Backend for Failing {
        fn location(&self) -> String {
            "test:failing".into()
        }
        fn create(&self) -> BackendResult<()> {
            Ok(())
        }
        fn save(&self, _: FileKind, _: &str, _: Payload<'_>) -> BackendResult<()> {
            Ok(())
        }
        fn save_new(&self, _: FileKind, _: &str, _: &[u8]) -> BackendResult<()> {
            Ok(())
        }
        fn load(&self, _: FileKind, _: &str) -> BackendResult<Vec<u8>> {
            Ok(Vec::new())
        }
        fn load_range(&self, _: FileKind, _: &str, _: u64, _: u64) -> BackendResult<Vec<u8>> {
            Ok(Vec::new())
        }
        fn stat(&self, _: FileKind, _: &str) -> BackendResult<u64> {
            *self.calls.lock().unwrap() += 1;
            match self.errors.lock().unwrap().pop() {
                Some(kind) => Err(BackendError {
                    kind,
                    context: "stat config on test:failing".into(),
                    cause: "boom".into(),
                    hint: None,
                }),
                None => Ok(7),
            }
        }
        fn remove(&self, _: FileKind, _: &str) -> BackendResult<()> {
            Ok(())
        }
        fn list(&self, _: FileKind) -> BackendResult<Vec<ListedFile>> {
            Ok(Vec::new())
        }
    }

    fn quick() -> RetryPolicy {
        RetryPolicy {
            initial_delay: Duration::from_millis(2),
            max_delay: Duration::from_millis(10),
            max_elapsed: Duration::from_secs(5),
        }
    }

    #[test]
    fn transient_errors_are_retried_until_success() {
        use BackendErrorKind::Transient;
        let b = RetryBackend::new(Failing::new(&[Transient, Transient, Transient]), quick());
        assert_eq!(b.stat(FileKind::Config, "").unwrap(), 7);
        assert_eq!(b.inner.calls(), 4);
    }

    #[test]
    fn other_errors_are_returned_at_once() {
        for kind in [
            BackendErrorKind::NotFound,
            BackendErrorKind::PermissionDenied,
            BackendErrorKind::NoSuchContainer,
            BackendErrorKind::Other,
        ] {
            let b = RetryBackend::new(Failing::new(&[kind]), quick());
            assert_eq!(b.stat(FileKind::Config, "").unwrap_err().kind, kind);
            assert_eq!(b.inner.calls(), 1);
        }
    }

    #[test]
    fn gives_up_when_the_budget_is_spent() {
        let policy = RetryPolicy {
            max_elapsed: Duration::from_millis(200),
            ..quick()
        };
        let b = RetryBackend::new(Failing::new(&[BackendErrorKind::Transient; 1000]), policy);
        let start = Instant::now();
        let err = b.stat(FileKind::Config, "").unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(2));
        assert_eq!(err.kind, BackendErrorKind::Transient);
        assert!(err.to_string().contains("gave up after"), "{err}");
        assert!(b.inner.calls() > 3);
    }

    #[test]
    fn delays_grow_but_stay_capped() {
        let p = RetryPolicy::default();
        for retry in 1..100 {
            let d = p.delay(retry);
            assert!(d <= p.max_delay, "retry {retry}: {d:?}");
            if retry == 1 {
                assert!(d <= p.initial_delay);
            }
        }
    }
}
