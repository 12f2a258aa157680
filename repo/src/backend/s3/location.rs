//! Where an S3 repository lives (restic's `s3:` URL) and how to reach it
//! (credentials, region, trusted CAs).

use std::fmt;
use std::path::PathBuf;

use super::web_identity::WebIdentity;

/// Where a repository lives, parsed from a restic `s3:` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    /// `http[s]://host[:port]` of a custom endpoint, or `https://HOST` for AWS.
    pub endpoint: String,
    /// The bucket.
    pub bucket: String,
    /// The key prefix of the repository inside the bucket, without slashes
    /// at either end; empty for a repository at the bucket's root.
    pub prefix: String,
    /// True for an `s3:http://` URL: plain HTTP is allowed only then.
    pub http: bool,
}

impl S3Location {
    /// Parses restic's forms: `s3:http[s]://host[:port]/bucket[/prefix]`,
    /// and `s3:host/bucket[/prefix]` (or `s3://host/...`) meaning HTTPS.
    pub fn parse(url: &str) -> Result<S3Location, String> {
        let invalid = |why: &str| {
            format!(
                "invalid S3 repository URL {url:?}: {why} (expected s3:https://HOST[:PORT]/BUCKET[/PREFIX] or s3:s3.amazonaws.com/BUCKET[/PREFIX])"
            )
        };
        let rest = url
            .strip_prefix("s3:")
            .ok_or_else(|| invalid("no s3: prefix"))?;
        let (scheme, rest) = if let Some(r) = rest.strip_prefix("http://") {
            ("http", r)
        } else if let Some(r) = rest.strip_prefix("https://") {
            ("https", r)
        } else {
            ("https", rest.strip_prefix("//").unwrap_or(rest))
        };
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        let mut segments = path.split('/').filter(|s| !s.is_empty() && *s != ".");
        let bucket = segments.next().ok_or_else(|| invalid("no bucket"))?;
        Ok(S3Location {
            endpoint: format!("{scheme}://{host}"),
            bucket: bucket.to_string(),
            prefix: segments.collect::<Vec<_>>().join("/"),
            http: scheme == "http",
        })
    }

    fn host(&self) -> &str {
        self.endpoint.split_once("://").map_or("", |(_, h)| h)
    }

    /// True for Amazon's own endpoints, which take the region from the host
    /// and are addressed by region rather than as given.
    pub(super) fn is_aws(&self) -> bool {
        let host = self.host();
        host == "s3.amazonaws.com" || host.ends_with(".amazonaws.com")
    }

    /// The region an AWS host names, as in `s3.eu-west-1.amazonaws.com` or
    /// the older `s3-eu-west-1.amazonaws.com`.
    pub(super) fn region_from_host(&self) -> Option<String> {
        let name = self.host().strip_suffix(".amazonaws.com")?;
        let region = name
            .strip_prefix("s3.")
            .or_else(|| name.strip_prefix("s3-"))?;
        (!region.is_empty() && !region.contains('.')).then(|| region.to_string())
    }
}

/// Credentials, region and trust for an S3 endpoint: a value its caller
/// builds once (the mover from restic's `AWS_*` variables and `--cacert`).
#[derive(Clone, Default)]
pub struct S3Options {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Option<String>,
    /// `AWS_SECRET_ACCESS_KEY`; never shown in messages or `Debug`.
    pub secret_access_key: Option<String>,
    /// `AWS_SESSION_TOKEN`, for temporary credentials.
    pub session_token: Option<String>,
    /// `AWS_DEFAULT_REGION`; when unset, the region an AWS host names, else
    /// us-east-1.
    pub region: Option<String>,
    /// A PEM file of CA certificates to trust besides the system's
    /// (restic's `--cacert`, or `RESTIC_CACERT`).
    pub ca_cert: Option<PathBuf>,
    /// A web identity token to exchange for temporary credentials (IRSA,
    /// MinIO OpenID), used when no static keys are given.
    pub web_identity: Option<WebIdentity>,
}

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Options")
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "***"),
            )
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .field("region", &self.region)
            .field("ca_cert", &self.ca_cert)
            .field("web_identity", &self.web_identity)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(url: &str) -> S3Location {
        S3Location::parse(url).unwrap()
    }

    #[test]
    fn parses_http_url_with_port_and_prefix() {
        assert_eq!(
            loc("s3:http://127.0.0.1:9000/bucket/some/prefix/"),
            S3Location {
                endpoint: "http://127.0.0.1:9000".into(),
                bucket: "bucket".into(),
                prefix: "some/prefix".into(),
                http: true,
            }
        );
    }

    #[test]
    fn parses_https_url_without_prefix() {
        let l = loc("s3:https://minio.example.com/backups");
        assert_eq!(l.endpoint, "https://minio.example.com");
        assert_eq!(l.bucket, "backups");
        assert_eq!(l.prefix, "");
        assert!(!l.http);
    }

    #[test]
    fn host_without_scheme_means_https() {
        let l = loc("s3:s3.amazonaws.com/bucket/restic/repo");
        assert_eq!(l.endpoint, "https://s3.amazonaws.com");
        assert_eq!(l.bucket, "bucket");
        assert_eq!(l.prefix, "restic/repo");
        assert!(!l.http);
        assert!(l.is_aws());
        assert_eq!(loc("s3://host:9000/b").endpoint, "https://host:9000");
        assert!(!loc("s3:host/b").is_aws());
    }

    #[test]
    fn doubled_slashes_in_the_prefix_collapse() {
        assert_eq!(loc("s3:http://h/b//p//q/").prefix, "p/q");
    }

    #[test]
    fn rejects_urls_without_bucket_or_host() {
        for url in [
            "s3:http://host",
            "s3:http://host/",
            "s3:",
            "s3:/bucket",
            "local:/x",
        ] {
            let err = S3Location::parse(url).unwrap_err();
            assert!(err.contains("invalid S3 repository URL"), "{url}: {err}");
        }
    }

    #[test]
    fn region_comes_from_regional_aws_hosts() {
        assert_eq!(
            loc("s3:s3.eu-west-1.amazonaws.com/b")
                .region_from_host()
                .as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            loc("s3:s3-us-west-2.amazonaws.com/b")
                .region_from_host()
                .as_deref(),
            Some("us-west-2")
        );
        assert_eq!(loc("s3:s3.amazonaws.com/b").region_from_host(), None);
        assert_eq!(loc("s3:http://127.0.0.1:9000/b").region_from_host(), None);
    }

    #[test]
    fn debug_hides_the_secret() {
        let options = S3Options {
            access_key_id: Some("AKID".into()),
            secret_access_key: Some("very-secret".into()),
            ..S3Options::default()
        };
        let shown = format!("{options:?}");
        assert!(shown.contains("AKID"));
        assert!(!shown.contains("very-secret"), "{shown}");
    }
}
