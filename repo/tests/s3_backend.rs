//! The S3 backend against a real MinIO server: round trips in restic's
//! layout, bucket creation, and the failures a user meets (wrong
//! credentials, unknown bucket, unreachable endpoint, a server that goes away
//! and comes back).
//!
//! MinIO comes from `e2e/tools.sh minio`; without it these tests fail saying so.

use std::io::Write;
use std::time::{Duration, Instant};

use sluice_repo::backend::retry::{RetryBackend, RetryPolicy};
use sluice_repo::backend::s3::{S3Backend, S3Options};
use sluice_repo::backend::{Backend, BackendErrorKind, FileKind, ListedFile, Payload};
use sluice_testkit::MinIo;

fn options() -> S3Options {
    S3Options {
        access_key_id: Some(MinIo::ACCESS_KEY.into()),
        secret_access_key: Some(MinIo::SECRET_KEY.into()),
        region: Some(MinIo::REGION.into()),
        ..S3Options::default()
    }
}

/// A retrying backend for `bucket_and_prefix` whose bucket exists. MinIO
/// may answer 503 for a moment after it reports ready, as S3 may at any time.
fn ready(minio: &MinIo, bucket_and_prefix: &str) -> RetryBackend<S3Backend> {
    let b = S3Backend::new(&minio.repository(bucket_and_prefix), options()).unwrap();
    let b = RetryBackend::new(b, quick_retries(Duration::from_secs(90)));
    b.create().unwrap();
    b
}

fn quick_retries(max_elapsed: Duration) -> RetryPolicy {
    RetryPolicy {
        initial_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
        max_elapsed,
    }
}

fn pack_name(i: u8) -> String {
    format!("{i:02x}{}", "5a".repeat(31))
}

fn sorted(mut v: Vec<ListedFile>) -> Vec<ListedFile> {
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

#[test]
fn round_trip_in_restics_layout() {
    let minio = MinIo::start();
    let b = ready(&minio, "repo/nested/prefix");

    b.save(FileKind::Config, "", Payload::Bytes(b"config-bytes"))
        .unwrap();
    b.save(FileKind::Key, "k1", Payload::Bytes(b"key-one"))
        .unwrap();
    b.save(FileKind::Snapshot, "s1", Payload::Bytes(b""))
        .unwrap();

    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&content).unwrap();
    for i in [0x00, 0xab, 0xff] {
        let len = content.len() as u64;
        b.save(
            FileKind::Pack,
            &pack_name(i),
            Payload::File { file: &file, len },
        )
        .unwrap();
    }

    assert_eq!(b.load(FileKind::Config, "").unwrap(), b"config-bytes");
    assert_eq!(b.load(FileKind::Key, "k1").unwrap(), b"key-one");
    assert_eq!(b.load(FileKind::Snapshot, "s1").unwrap(), b"");
    assert_eq!(b.load(FileKind::Pack, &pack_name(0xab)).unwrap(), content);
    assert_eq!(
        b.load_range(FileKind::Pack, &pack_name(0xab), 1_234_567, 1000)
            .unwrap(),
        &content[1_234_567..1_235_567]
    );
    assert_eq!(
        b.load_range(FileKind::Pack, &pack_name(0xab), 2_999_990, 10)
            .unwrap(),
        &content[2_999_990..]
    );
    assert_eq!(b.stat(FileKind::Pack, &pack_name(0xff)).unwrap(), 3_000_000);
    assert_eq!(b.stat(FileKind::Key, "k1").unwrap(), 7);

    // Objects land where restic looks for them.
    let objects = minio.data_dir().join("repo/nested/prefix");
    assert!(objects.join("config").exists());
    assert!(objects.join("keys/k1").exists());
    assert!(
        objects
            .join(format!("data/ab/{}", pack_name(0xab)))
            .exists()
    );

    let packs = sorted(b.list(FileKind::Pack).unwrap());
    let expect: Vec<ListedFile> = [0x00, 0xab, 0xff]
        .map(|i| ListedFile {
            name: pack_name(i),
            size: 3_000_000,
        })
        .into();
    assert_eq!(packs, expect);
    assert_eq!(
        b.list(FileKind::Key).unwrap(),
        vec![ListedFile {
            name: "k1".into(),
            size: 7
        }]
    );
    assert_eq!(
        b.list(FileKind::Config).unwrap(),
        vec![ListedFile {
            name: "config".into(),
            size: 12
        }]
    );
    assert!(b.list(FileKind::Index).unwrap().is_empty());

    let missing = b.stat(FileKind::Index, "nope").unwrap_err();
    assert_eq!(missing.kind, BackendErrorKind::NotFound, "{missing}");
    let missing = b.load(FileKind::Index, "nope").unwrap_err();
    assert!(missing.is_not_found(), "{missing}");

    b.remove(FileKind::Key, "k1").unwrap();
    b.remove(FileKind::Key, "k1").unwrap(); // missing: still fine
    assert!(b.list(FileKind::Key).unwrap().is_empty());
    assert!(b.load(FileKind::Key, "k1").unwrap_err().is_not_found());
}

#[test]
fn listing_pages_through_many_files_and_stays_inside_the_prefix() {
    let minio = MinIo::start();
    let b = ready(&minio, "bucket/one");
    let other = ready(&minio, "bucket/one-other");
    other
        .save(FileKind::Lock, "foreign", Payload::Bytes(b"x"))
        .unwrap();
    // More than one page: S3 lists at most 1000 keys a request.
    let names: Vec<String> = (0..1100).map(|i| format!("lock{i:05}")).collect();
    std::thread::scope(|s| {
        for chunk in names.chunks(150) {
            let b = &b;
            s.spawn(move || {
                for n in chunk {
                    b.save(FileKind::Lock, n, Payload::Bytes(n.as_bytes()))
                        .unwrap();
                }
            });
        }
    });
    let listed = sorted(b.list(FileKind::Lock).unwrap());
    assert_eq!(listed.len(), 1100);
    assert!(
        listed
            .iter()
            .zip(&names)
            .all(|(l, n)| &l.name == n && l.size == 9)
    );
    assert_eq!(other.list(FileKind::Lock).unwrap().len(), 1);
}

#[test]
fn create_makes_a_missing_bucket_and_is_idempotent() {
    let minio = MinIo::start();
    let b = S3Backend::new(&minio.repository("fresh-bucket/repo"), options()).unwrap();
    let b = RetryBackend::new(b, quick_retries(Duration::from_secs(30)));
    let err = b.list(FileKind::Key).unwrap_err();
    assert_eq!(err.kind, BackendErrorKind::NoSuchContainer, "{err}");
    b.create().unwrap();
    assert!(minio.data_dir().join("fresh-bucket").is_dir());
    b.create().unwrap();
    b.save(FileKind::Key, "k", Payload::Bytes(b"v")).unwrap();
    assert_eq!(b.load(FileKind::Key, "k").unwrap(), b"v");
}

/// Asserts the message is one line naming endpoint and bucket, without
/// `secret`.
fn assert_user_message(message: &str, minio_port: u16, bucket: &str, secret: &str) {
    assert!(!message.contains('\n'), "not one line: {message}");
    assert!(
        message.contains(&format!("127.0.0.1:{minio_port}")),
        "endpoint missing: {message}"
    );
    assert!(message.contains(bucket), "bucket missing: {message}");
    assert!(!message.contains(secret), "secret shown: {message}");
}

#[test]
fn wrong_credentials_are_permission_denied_without_the_secret() {
    let minio = MinIo::start();
    ready(&minio, "guarded");
    let secret = "wrong-secret-never-show-me";
    for (key_id, expected_code) in [
        (MinIo::ACCESS_KEY, "SignatureDoesNotMatch"),
        ("no-such-key-id", "InvalidAccessKeyId"),
    ] {
        let opts = S3Options {
            access_key_id: Some(key_id.into()),
            secret_access_key: Some(secret.into()),
            ..options()
        };
        let b = S3Backend::new(&minio.repository("guarded/repo"), opts).unwrap();
        let b = RetryBackend::new(b, quick_retries(Duration::from_secs(30)));
        let start = Instant::now();
        for err in [
            b.load(FileKind::Config, "").unwrap_err(),
            b.list(FileKind::Snapshot).unwrap_err(),
            b.save(FileKind::Key, "k", Payload::Bytes(b"v"))
                .unwrap_err(),
            b.create().unwrap_err(),
        ] {
            assert_eq!(err.kind, BackendErrorKind::PermissionDenied, "{err}");
            let message = err.to_string();
            assert_user_message(&message, minio.port(), "guarded", secret);
            assert!(message.contains("check the credentials"), "{message}");
            assert!(message.contains("HTTP 403"), "{message}");
            // HEAD requests (create's bucket check) carry no error body.
            if !message.contains("bucket guarded") {
                assert!(message.contains(expected_code), "{message}");
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "permission errors were retried"
        );
    }
}

#[test]
fn unknown_bucket_is_no_such_container() {
    let minio = MinIo::start();
    let b = S3Backend::new(&minio.repository("no-such-bucket/repo"), options()).unwrap();
    let b = RetryBackend::new(b, quick_retries(Duration::from_secs(30)));
    for err in [
        b.load(FileKind::Config, "").unwrap_err(),
        b.list(FileKind::Snapshot).unwrap_err(),
        b.save(FileKind::Key, "k", Payload::Bytes(b"v"))
            .unwrap_err(),
    ] {
        assert_eq!(err.kind, BackendErrorKind::NoSuchContainer, "{err}");
        let message = err.to_string();
        assert_user_message(&message, minio.port(), "no-such-bucket", MinIo::SECRET_KEY);
        assert!(message.contains("NoSuchBucket"), "{message}");
    }
}

#[test]
fn unreachable_endpoint_is_transient_after_retries() {
    // A port nobody listens on: connections are refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("s3:http://127.0.0.1:{port}/far-bucket/repo");
    let b = RetryBackend::new(
        S3Backend::new(&url, options()).unwrap(),
        quick_retries(Duration::from_secs(3)),
    );
    let start = Instant::now();
    let err = b.load(FileKind::Config, "").unwrap_err();
    let elapsed = start.elapsed();
    assert_eq!(err.kind, BackendErrorKind::Transient, "{err}");
    let message = err.to_string();
    assert_user_message(&message, port, "far-bucket", MinIo::SECRET_KEY);
    assert!(message.contains("gave up after"), "{message}");
    assert!(message.contains("cannot reach the server"), "{message}");
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(10),
        "retried for {elapsed:?} with a 3s budget"
    );
    let err = b.create().unwrap_err();
    assert_eq!(err.kind, BackendErrorKind::Transient, "{err}");
}

#[test]
fn operations_survive_minio_restarting() {
    let mut minio = MinIo::start();
    let b = ready(&minio, "restarts/repo");
    b.save(FileKind::Key, "before", Payload::Bytes(b"1"))
        .unwrap();

    // A pack big enough for a multipart upload, sent while the server is down.
    let content: Vec<u8> = (0..(40u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&content).unwrap();
    let len = content.len() as u64;

    minio.stop();
    let restarted = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(3));
        minio.start_again();
        minio
    });
    let start = Instant::now();
    b.save(
        FileKind::Pack,
        &pack_name(7),
        Payload::File { file: &file, len },
    )
    .unwrap();
    assert!(
        start.elapsed() >= Duration::from_secs(3),
        "saved while MinIO was down?"
    );
    let minio = restarted.join().unwrap();

    assert_eq!(b.load(FileKind::Pack, &pack_name(7)).unwrap(), content);
    let keys = sorted(b.list(FileKind::Key).unwrap());
    assert_eq!(keys.len(), 1);

    // Down in the middle of a run of small saves: each one waits it out.
    let mut minio = minio;
    minio.kill();
    let restarted = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        minio.start_again();
        minio
    });
    for i in 0..5 {
        b.save(
            FileKind::Snapshot,
            &format!("s{i}"),
            Payload::Bytes(b"snap"),
        )
        .unwrap();
    }
    let _minio = restarted.join().unwrap();
    assert_eq!(b.list(FileKind::Snapshot).unwrap().len(), 5);
}

#[test]
fn save_new_lets_exactly_one_of_many_racing_writers_create_a_file() {
    let minio = MinIo::start();
    let b = ready(&minio, "race/prefix");
    let outcomes: Vec<Result<(), BackendErrorKind>> = std::thread::scope(|s| {
        let b = &b;
        let writers: Vec<_> = (0..8u8)
            .map(|i| {
                s.spawn(move || {
                    b.save_new(FileKind::Config, "", &[i; 100])
                        .map_err(|e| e.kind)
                })
            })
            .collect();
        writers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let winners: Vec<usize> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| o.is_ok())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .filter(|o| o.is_err())
            .all(|o| *o == Err(BackendErrorKind::AlreadyExists)),
        "{outcomes:?}"
    );
    assert_eq!(
        b.load(FileKind::Config, "").unwrap(),
        vec![winners[0] as u8; 100],
        "the winner's content stays"
    );
}
