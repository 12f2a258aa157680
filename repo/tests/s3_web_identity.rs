//! S3 through a web identity, as a Pod with IRSA reaches its bucket: no static
//! keys, a token file, a role, and MinIO's STS (`AssumeRoleWithWebIdentity`)
//! trusting a real OpenID issuer's keys. The repository written this way is
//! checked by restic with MinIO's root keys, and refused tokens fail at once
//! with STS's reason, the token file and the role named.
//!
//! MinIO comes from `e2e/tools.sh minio`; without it these tests fail saying so.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_repo::Repository;
use sluice_repo::backend::retry::{RetryBackend, RetryPolicy};
use sluice_repo::backend::s3::{S3Backend, S3Options, WebIdentity};
use sluice_repo::backend::{Backend, BackendErrorKind, FileKind, Payload};
use sluice_repo::key::KdfParams;
use sluice_repo::repository::Options;
use sluice_testkit::MinIo;
use sluice_testkit::oidc::OidcIssuer;

/// The audience STS accepts: MinIO's OpenID client id.
const AUDIENCE: &str = "sts.sluice.test";
const SUBJECT: &str = "system:serviceaccount:apps:backup";

fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        initial_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(1),
        max_elapsed: Duration::from_secs(30),
    }
}

/// Options with only a web identity: `token` in a file, `role` to assume,
/// STS at the S3 endpoint (the default off AWS).
fn identity_options(dir: &Path, name: &str, token: &str, role: Option<String>) -> S3Options {
    let token_file = dir.join(format!("{name}.token"));
    std::fs::write(&token_file, token).unwrap();
    S3Options {
        region: Some(MinIo::REGION.into()),
        web_identity: Some(WebIdentity {
            token_file,
            role_arn: role,
            session_name: Some("s3-web-identity-test".into()),
            sts_endpoint: None,
        }),
        ..S3Options::default()
    }
}

#[test]
fn a_service_account_token_is_exchanged_for_credentials_that_write_a_restic_repository() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = OidcIssuer::start(dir.path());
    let minio = MinIo::start_trusting(&issuer.config_url(), AUDIENCE);
    let token = issuer.token(SUBJECT, AUDIENCE, 3600);
    let options = identity_options(dir.path(), "backup", &token, minio.role_arn());
    let url = minio.repository("web-identity/repo");

    let backend = RetryBackend::new(S3Backend::new(&url, options).unwrap(), quick_retries());
    backend.create().expect("STS credentials create the bucket");
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let repo = Repository::init(
        backend.clone(),
        "pw",
        KdfParams::INSECURE_FOR_TESTS,
        Options::default(),
    )
    .expect("init through the web identity");
    drop(repo);
    Repository::open(backend.clone(), "pw", Options::default()).expect("open it again");
    backend
        .save(FileKind::Lock, "probe", Payload::Bytes(b"{}"))
        .unwrap();
    assert_eq!(backend.load(FileKind::Lock, "probe").unwrap(), b"{}");
    backend.remove(FileKind::Lock, "probe").unwrap();

    // The same bytes, read by restic with the server's root keys.
    let out = minio
        .restic("web-identity/repo", "pw")
        .args(["check", "--no-cache"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "restic check of the repository written with STS credentials:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn refused_tokens_fail_at_once_with_the_reason_and_never_show_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = OidcIssuer::start(dir.path());
    let stranger_dir = dir.path().join("stranger");
    std::fs::create_dir(&stranger_dir).unwrap();
    let stranger = OidcIssuer::start(&stranger_dir);
    let minio = MinIo::start_trusting(&issuer.config_url(), AUDIENCE);
    let role = minio.role_arn();
    let url = minio.repository("refused/repo");
    // MinIO may answer 503 for a moment after it reports ready: wait for a
    // good token to work before judging bad ones.
    let good = identity_options(
        dir.path(),
        "good",
        &issuer.token(SUBJECT, AUDIENCE, 3600),
        role.clone(),
    );
    RetryBackend::new(S3Backend::new(&url, good).unwrap(), quick_retries())
        .create()
        .unwrap();

    let missing_file = S3Options {
        web_identity: Some(WebIdentity {
            token_file: dir.path().join("no-such-token"),
            role_arn: role.clone(),
            ..WebIdentity::default()
        }),
        ..S3Options::default()
    };
    for (case, options, kind, expected) in [
        (
            "another audience",
            identity_options(
                dir.path(),
                "audience",
                &issuer.token(SUBJECT, "some-other-client", 3600),
                role.clone(),
            ),
            BackendErrorKind::PermissionDenied,
            "must match configured OpenID Client ID",
        ),
        (
            "expired",
            identity_options(
                dir.path(),
                "expired",
                &issuer.token(SUBJECT, AUDIENCE, -600),
                role.clone(),
            ),
            BackendErrorKind::PermissionDenied,
            "HTTP 400 InvalidParameterValue: Token is expired",
        ),
        (
            "signed by an issuer MinIO does not trust",
            identity_options(
                dir.path(),
                "stranger",
                &stranger.token(SUBJECT, AUDIENCE, 3600),
                role.clone(),
            ),
            BackendErrorKind::PermissionDenied,
            "verification error",
        ),
        (
            "an unknown role",
            identity_options(
                dir.path(),
                "role",
                &issuer.token(SUBJECT, AUDIENCE, 3600),
                Some("arn:minio:iam:::role/no-such-role".into()),
            ),
            BackendErrorKind::PermissionDenied,
            "RoleARN arn:minio:iam:::role/no-such-role is not defined",
        ),
        (
            "no token file",
            missing_file,
            BackendErrorKind::PermissionDenied,
            "ServiceAccount token projection is missing",
        ),
    ] {
        let identity = options.web_identity.clone().unwrap();
        let token = std::fs::read_to_string(&identity.token_file).unwrap_or_default();
        let backend = RetryBackend::new(S3Backend::new(&url, options).unwrap(), quick_retries());
        let start = Instant::now();
        for err in [
            backend.load(FileKind::Config, "").unwrap_err(),
            backend.create().unwrap_err(),
        ] {
            assert_eq!(err.kind, kind, "{case}: {err}");
            let message = err.to_string();
            assert!(message.contains(expected), "{case}: {message}");
            assert!(message.contains("cannot assume role"), "{case}: {message}");
            assert!(
                message.contains(&identity.token_file.display().to_string()),
                "{case}: the token file is not named: {message}"
            );
            assert!(!message.contains('\n'), "{case}: not one line: {message}");
            if !token.is_empty() {
                assert!(!message.contains(&token), "{case}: the token is shown");
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{case}: a refusal was retried"
        );
    }
}
