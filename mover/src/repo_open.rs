//! The repository a command works on, configured once at the edge: the
//! location, password, backend options and write options come from the
//! flags and restic's environment here, and go down as one value. Nothing
//! below this module reads the environment or changes process state.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use sluice_repo::Repository;
use sluice_repo::backend::s3::{S3Options, WebIdentity};
use sluice_repo::backend::{self, Backend};
use sluice_repo::key::{CALIBRATION_TARGET, KdfParams};
use sluice_repo::repository::{DEFAULT_PACK_SIZE, Options};

use crate::args::Global;

/// Where the repository is and how to open it.
pub struct RepoConfig {
    location: String,
    password: String,
    s3: S3Options,
    options: Options,
    /// New keys get the weak scrypt cost of tests (`--insecure-test-kdf`).
    insecure_test_kdf: bool,
}

impl RepoConfig {
    /// The configuration the flags and the process environment give.
    pub fn from_env(g: &Global) -> Result<RepoConfig> {
        RepoConfig::new(g, |name| std::env::var(name).ok())
    }

    /// The configuration the flags and `env` give; `env` stands for the
    /// process environment, so tests pass their own.
    fn new(g: &Global, env: impl Fn(&str) -> Option<String>) -> Result<RepoConfig> {
        let env = |name: &str| env(name).filter(|v| !v.is_empty());
        let location = match &g.repo {
            Some(r) if !r.is_empty() => r.clone(),
            _ => bail!("no repository given: set RESTIC_REPOSITORY or use -r/--repo"),
        };
        let password = match (&g.password_file, env("RESTIC_PASSWORD")) {
            // restic trims a password read from a file.
            (Some(f), _) => {
                let s = std::fs::read_to_string(f)
                    .with_context(|| format!("cannot read password file {}", f.display()))?;
                if s.trim().is_empty() {
                    bail!(
                        "password file {} is empty: an empty password is not allowed, put the repository password in it",
                        f.display()
                    );
                }
                s.trim().to_string()
            }
            (None, Some(p)) => p,
            (None, None) => bail!(
                "no password given: set RESTIC_PASSWORD or RESTIC_PASSWORD_FILE, or use --password-file"
            ),
        };
        Ok(RepoConfig {
            location,
            password,
            s3: s3_options(env, g.cacert.clone()),
            options: Options {
                compression: g.compression,
                pack_size: g.pack_size.map(|m| m << 20).unwrap_or(DEFAULT_PACK_SIZE),
            },
            insecure_test_kdf: g.insecure_test_kdf,
        })
    }

    /// The backend at the location; nothing is read from it yet.
    pub fn backend(&self) -> Result<Arc<dyn Backend>> {
        Ok(Arc::from(backend::open(&self.location, self.s3.clone())?))
    }

    /// The backend at the location, retrying for seconds instead of minutes: a probe asks
    /// whether it answers now, and a long retry would only delay the answer.
    pub fn probe_backend(&self) -> Result<Arc<dyn Backend>> {
        Ok(Arc::from(backend::open_with_retry(
            &self.location,
            self.s3.clone(),
            backend::retry::RetryPolicy::PROBE,
        )?))
    }

    /// Opens the repository: the one key derivation a command needs.
    pub fn open(&self) -> Result<Repository> {
        self.open_at(self.backend()?)
    }

    /// Opens the repository in `backend` (from [`RepoConfig::backend`]).
    pub fn open_at(&self, backend: Arc<dyn Backend>) -> Result<Repository> {
        Ok(Repository::open(
            backend,
            &self.password,
            self.options.clone(),
        )?)
    }

    /// Creates a repository in `backend` (from [`RepoConfig::backend`]),
    /// its key's scrypt cost calibrated like restic's (about 0.5 s here)
    /// unless a test asked for the weak one.
    pub fn init(&self, backend: Arc<dyn Backend>) -> Result<Repository, sluice_repo::Error> {
        let kdf = if self.insecure_test_kdf {
            KdfParams::INSECURE_FOR_TESTS
        } else {
            KdfParams::calibrate(CALIBRATION_TARGET)
        };
        Repository::init(backend, &self.password, kdf, self.options.clone())
    }
}

/// restic's S3 variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`, `AWS_DEFAULT_REGION`), the CA file of
/// `--cacert`/`RESTIC_CACERT`, and the web identity the EKS Pod Identity
/// webhook (IRSA) injects: `AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_ROLE_ARN`,
/// `AWS_ROLE_SESSION_NAME`, and the AWS SDKs' `AWS_ENDPOINT_URL_STS` for
/// an STS other than AWS's. `AWS_REGION`, which the webhook sets too,
/// stands in for `AWS_DEFAULT_REGION`.
fn s3_options(env: impl Fn(&str) -> Option<String>, ca_cert: Option<PathBuf>) -> S3Options {
    S3Options {
        access_key_id: env("AWS_ACCESS_KEY_ID"),
        secret_access_key: env("AWS_SECRET_ACCESS_KEY"),
        session_token: env("AWS_SESSION_TOKEN"),
        region: env("AWS_DEFAULT_REGION").or_else(|| env("AWS_REGION")),
        ca_cert,
        web_identity: env("AWS_WEB_IDENTITY_TOKEN_FILE").map(|file| WebIdentity {
            token_file: file.into(),
            role_arn: env("AWS_ROLE_ARN"),
            session_name: env("AWS_ROLE_SESSION_NAME"),
            sts_endpoint: env("AWS_ENDPOINT_URL_STS"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::args::Cli;

    fn global(args: &[&str]) -> Global {
        let argv = ["sluice-mover"].iter().chain(args).chain(&["snapshots"]);
        Cli::try_parse_from(argv).expect("flags").global
    }

    fn config(args: &[&str], vars: &[(&str, &str)]) -> Result<RepoConfig> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        RepoConfig::new(&global(args), move |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn s3_options_come_from_restics_variables_and_empty_ones_are_unset() {
        let c = config(
            &["-r", "s3:http://127.0.0.1:9000/b", "--cacert", "/ca.pem"],
            &[
                ("RESTIC_PASSWORD", "pw"),
                ("AWS_ACCESS_KEY_ID", "id"),
                ("AWS_SECRET_ACCESS_KEY", "secret"),
                ("AWS_SESSION_TOKEN", ""),
                ("AWS_DEFAULT_REGION", "eu-west-1"),
            ],
        )
        .unwrap();
        assert_eq!(c.s3.access_key_id.as_deref(), Some("id"));
        assert_eq!(c.s3.secret_access_key.as_deref(), Some("secret"));
        assert_eq!(c.s3.session_token, None);
        assert_eq!(c.s3.region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.s3.ca_cert, Some(PathBuf::from("/ca.pem")));
        assert_eq!(c.s3.web_identity, None);
        assert_eq!(c.password, "pw");
    }

    #[test]
    fn a_web_identity_comes_from_the_variables_the_pod_identity_webhook_injects() {
        let with = |vars: &[(&str, &str)]| {
            let mut all = vec![("RESTIC_PASSWORD", "pw")];
            all.extend_from_slice(vars);
            config(&["-r", "s3:s3.amazonaws.com/b"], &all).unwrap().s3
        };
        let irsa = with(&[
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/backup"),
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
            ),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_STS_REGIONAL_ENDPOINTS", "regional"),
        ]);
        assert_eq!(
            irsa.web_identity,
            Some(WebIdentity {
                token_file: "/var/run/secrets/eks.amazonaws.com/serviceaccount/token".into(),
                role_arn: Some("arn:aws:iam::123456789012:role/backup".into()),
                session_name: None,
                sts_endpoint: None,
            })
        );
        assert_eq!(irsa.region.as_deref(), Some("eu-west-1"));
        assert_eq!(irsa.access_key_id, None);

        let minio = with(&[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/token"),
            ("AWS_ROLE_ARN", ""),
            ("AWS_ROLE_SESSION_NAME", "nightly"),
            ("AWS_ENDPOINT_URL_STS", "https://minio.example:9000"),
            ("AWS_DEFAULT_REGION", "home"),
            ("AWS_REGION", "ignored"),
        ]);
        let identity = minio.web_identity.unwrap();
        assert_eq!(identity.role_arn, None, "an empty variable is unset");
        assert_eq!(identity.session_name.as_deref(), Some("nightly"));
        assert_eq!(
            identity.sts_endpoint.as_deref(),
            Some("https://minio.example:9000")
        );
        assert_eq!(minio.region.as_deref(), Some("home"));

        assert_eq!(with(&[("AWS_ROLE_ARN", "arn:x")]).web_identity, None);
    }

    #[test]
    fn missing_settings_say_how_to_give_them() {
        for (args, vars, expected) in [
            (&["-r", "/repo"][..], &[][..], "RESTIC_PASSWORD"),
            (
                &["-r", "/repo"][..],
                &[("RESTIC_PASSWORD", "")][..],
                "RESTIC_PASSWORD",
            ),
            (
                &["-r", ""][..],
                &[("RESTIC_PASSWORD", "pw")][..],
                "-r/--repo",
            ),
            (
                &["-r", "/repo", "--password-file", "/nonexistent/pw"][..],
                &[][..],
                "/nonexistent/pw",
            ),
            (
                &["-r", "/repo", "--password-file", "/dev/null"][..],
                &[("RESTIC_PASSWORD", "pw")][..],
                "is empty",
            ),
        ] {
            let err = config(args, vars).err().expect("must fail").to_string();
            assert!(err.contains(expected), "{args:?} {vars:?}: {err}");
        }
    }

    #[test]
    fn a_password_file_wins_and_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let path = file.to_str().unwrap();
        let c = config(
            &["-r", "/repo", "--password-file", path],
            &[("RESTIC_PASSWORD", "from-env")],
        )
        .unwrap();
        assert_eq!(c.password, "from-file");
    }
}
