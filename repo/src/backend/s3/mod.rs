//! A repository in an S3 bucket (AWS, MinIO or any S3-compatible store), in
//! restic's layout under an optional prefix.
//!
//! Built on `object_store` 0.12 (the workspace pin): it covers what a
//! repository needs (PUT, multipart upload, range GET, HEAD, DELETE,
//! paginated LIST, SigV4, custom CA) with far fewer dependencies than
//! `aws-sdk-s3`. It cannot create buckets, so [`S3Backend::create`] sends a
//! CreateBucket request itself, signed with object_store's public
//! [`AwsAuthorizer`] and sent through its [`HttpClient`]: no second signer
//! and no second HTTP stack.
//!
//! object_store's own retries are switched off; [`super::retry::RetryBackend`]
//! is the single retry layer, so the retry budget is one number and every
//! retry is logged. The trait is synchronous, so the backend owns a small
//! tokio runtime and blocks on it; call it from plain threads, never from
//! inside an async task.

mod classify;
mod location;
mod multipart;
mod web_identity;

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, AwsAuthorizer};
use object_store::client::{HttpClient, HttpConnector, HttpRequestBody, ReqwestConnector};
use object_store::path::Path as ObjectPath;
use object_store::{
    Certificate, ClientOptions, ObjectStore, PutMode, PutOptions, PutPayload, RetryConfig,
};
use tokio::runtime::Runtime;

use self::classify::{
    chain_text, classify, one_line, status_cause, status_kind, transport_cause, transport_kind,
};
pub use self::location::{S3Location, S3Options};
pub use self::web_identity::WebIdentity;
use self::web_identity::{WebIdentityProvider, sts_endpoint};
use super::{
    Backend, BackendError, BackendErrorKind, BackendResult, FileKind, ListedFile, Payload,
};

/// Time allowed for one HTTP request, including sending a whole part.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// Time allowed to open a connection; a dead endpoint fails this fast.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// restic's default region, and MinIO's.
const DEFAULT_REGION: &str = "us-east-1";

/// A repository in an S3 bucket; see the module documentation.
pub struct S3Backend {
    /// The URL as the user wrote it, for messages.
    url: String,
    location: S3Location,
    /// Endpoint actually used (AWS hosts become regional endpoints).
    endpoint: String,
    region: String,
    store: Arc<AmazonS3>,
    /// The same HTTP client setup as `store`, for bucket requests.
    http: HttpClient,
    /// Redacted from every message, in case a server echoes it.
    secrets: Vec<String>,
    runtime: Runtime,
}

impl S3Backend {
    /// A backend for the restic URL `url` (see [`S3Location::parse`]).
    /// Nothing is sent to the server yet.
    pub fn new(url: &str, options: S3Options) -> BackendResult<S3Backend> {
        let setup_err = |cause: String| {
            BackendError::object_storage(BackendErrorKind::Other, format!("open {url}"), cause)
        };
        let location = S3Location::parse(url).map_err(setup_err)?;
        let region = options
            .region
            .clone()
            .or_else(|| location.region_from_host())
            .unwrap_or_else(|| DEFAULT_REGION.to_string());
        let endpoint = if location.is_aws() {
            format!("https://s3.{region}.amazonaws.com")
        } else {
            location.endpoint.clone()
        };

        let mut client = ClientOptions::new()
            .with_allow_http(location.http)
            .with_timeout(REQUEST_TIMEOUT)
            .with_connect_timeout(CONNECT_TIMEOUT);
        if let Some(path) = &options.ca_cert {
            let pem = std::fs::read(path).map_err(|e| {
                setup_err(format!(
                    "cannot read CA certificate file {}: {e}",
                    path.display()
                ))
            })?;
            let certs = Certificate::from_pem_bundle(&pem).map_err(|e| {
                setup_err(format!(
                    "CA certificate file {} is not PEM: {e}",
                    path.display()
                ))
            })?;
            if certs.is_empty() {
                return Err(setup_err(format!(
                    "CA certificate file {} holds no certificate",
                    path.display()
                )));
            }
            for cert in certs {
                client = client.with_root_certificate(cert);
            }
        }

        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&location.bucket)
            .with_region(&region)
            .with_endpoint(&endpoint)
            .with_virtual_hosted_style_request(false)
            .with_allow_http(location.http)
            .with_client_options(client.clone())
            .with_retry(RetryConfig {
                max_retries: 0,
                ..RetryConfig::default()
            });
        let http = ReqwestConnector::default()
            .connect(&client)
            .map_err(|e| setup_err(one_line(&e.to_string())))?;
        let mut secrets = Vec::new();
        match (
            &options.access_key_id,
            &options.secret_access_key,
            &options.web_identity,
        ) {
            (Some(id), Some(secret), _) => {
                builder = builder
                    .with_access_key_id(id)
                    .with_secret_access_key(secret);
                secrets.push(secret.clone());
                if let Some(token) = &options.session_token {
                    builder = builder.with_token(token);
                    secrets.push(token.clone());
                }
            }
            (None, None, Some(identity)) => {
                let sts = sts_endpoint(identity, &endpoint, location.is_aws(), &region);
                // Plain HTTP to STS only when the user named an http:// endpoint.
                let sts_client = client.clone().with_allow_http(sts.starts_with("http://"));
                let sts_http = ReqwestConnector::default()
                    .connect(&sts_client)
                    .map_err(|e| setup_err(one_line(&e.to_string())))?;
                builder = builder.with_credentials(Arc::new(WebIdentityProvider::new(
                    identity.clone(),
                    sts,
                    sts_http,
                )));
            }
            (Some(_), None, _) | (None, Some(_), _) => {
                return Err(setup_err(
                    "only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY is set: set both"
                        .into(),
                ));
            }
            // Without this check object_store would fall back to the EC2
            // instance metadata service and fail slowly off EC2.
            (None, None, None) => {
                return Err(setup_err(
                    "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give \
                     the mover a ServiceAccount with a web identity (AWS_ROLE_ARN and \
                     AWS_WEB_IDENTITY_TOKEN_FILE)"
                        .into(),
                ));
            }
        }
        let store = builder
            .build()
            .map_err(|e| setup_err(one_line(&e.to_string())))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sluice-s3")
            .enable_all()
            .build()
            .map_err(|e| setup_err(format!("cannot start the I/O runtime: {e}")))?;
        Ok(S3Backend {
            url: url.to_string(),
            location,
            endpoint,
            region,
            store: Arc::new(store),
            http,
            secrets,
            runtime,
        })
    }

    /// The object key of a repository file.
    fn key(&self, kind: FileKind, name: &str) -> ObjectPath {
        self.key_of(&kind.path(name))
    }

    fn key_of(&self, relative: &str) -> ObjectPath {
        if self.location.prefix.is_empty() {
            ObjectPath::from(relative)
        } else {
            ObjectPath::from(format!("{}/{relative}", self.location.prefix))
        }
    }

    fn error(&self, op: &str, what: &str, kind: BackendErrorKind, cause: &str) -> BackendError {
        let mut cause = one_line(cause);
        for secret in &self.secrets {
            cause = cause.replace(secret.as_str(), "***");
        }
        BackendError::object_storage(kind, format!("{op} {what} on {}", self.url), cause)
    }

    fn store_error(&self, op: &str, what: &str, e: &object_store::Error) -> BackendError {
        let (kind, cause) = classify(e);
        self.error(op, what, kind, &cause)
    }

    /// Sends a signed request for the bucket itself (HEAD, or PUT to create
    /// it); returns the status and body.
    fn bucket_request(&self, method: http::Method, body: String) -> BackendResult<(u16, String)> {
        let what = format!("bucket {}", self.location.bucket);
        let url = format!("{}/{}", self.endpoint, self.location.bucket);
        let result = self.runtime.block_on(async {
            let credential = self
                .store
                .credentials()
                .get_credential()
                .await
                .map_err(|e| classify(&e))?;
            let mut request = http::Request::builder()
                .method(method)
                .uri(url.as_str())
                .body(HttpRequestBody::from(body))
                .map_err(|e| (BackendErrorKind::Other, e.to_string()))?;
            AwsAuthorizer::new(&credential, "s3", &self.region).authorize(&mut request, None);
            let response = self
                .http
                .execute(request)
                .await
                .map_err(|e| (transport_kind(&chain_text(&e)), transport_cause(&e)))?;
            let status = response.status().as_u16();
            let text = response.into_body().bytes().await.unwrap_or_default();
            Ok::<_, (BackendErrorKind, String)>((
                status,
                String::from_utf8_lossy(&text).into_owned(),
            ))
        });
        result.map_err(|(kind, cause)| self.error("access", &what, kind, &cause))
    }
}

impl Backend for S3Backend {
    fn location(&self) -> String {
        self.url.clone()
    }

    /// Creates the bucket when it does not exist; S3 has no directories.
    fn create(&self) -> BackendResult<()> {
        let what = format!("bucket {}", self.location.bucket);
        let fail = |op: &str, status: u16, body: &str| {
            let kind = status_kind(status, body);
            self.error(op, &what, kind, &status_cause(status, body))
        };
        match self.bucket_request(http::Method::HEAD, String::new())? {
            (200, _) => return Ok(()),
            (404, _) => {}
            (status, body) => return Err(fail("check", status, &body)),
        }
        // us-east-1 is the default and must not be named (S3 refuses it).
        let body = if self.region == DEFAULT_REGION {
            String::new()
        } else {
            format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                self.region
            )
        };
        match self.bucket_request(http::Method::PUT, body)? {
            (200, _) => {
                tracing::info!(bucket = %self.location.bucket, endpoint = %self.endpoint, "created bucket");
                Ok(())
            }
            // Created meanwhile by a concurrent `init`: fine, it is ours.
            (409, body) if body.contains("BucketAlreadyOwnedByYou") => Ok(()),
            (status, body) => Err(fail("create", status, &body)),
        }
    }

    fn save(&self, kind: FileKind, name: &str, payload: Payload<'_>) -> BackendResult<()> {
        let what = kind.path(name);
        let key = self.key(kind, name);
        match payload {
            Payload::Bytes(b) => self
                .runtime
                .block_on(self.store.put(&key, PutPayload::from(b.to_vec())))
                .map(|_| ())
                .map_err(|e| self.store_error("save", &what, &e)),
            Payload::File { file, len } | Payload::Staged { file, len, .. } => {
                self.put_file(&key, &what, file, len)
            }
        }
    }

    /// A conditional PUT (`If-None-Match: *`), which S3 and MinIO honour atomically:
    /// the store answers 412 to every writer but the first.
    fn save_new(&self, kind: FileKind, name: &str, bytes: &[u8]) -> BackendResult<()> {
        let what = kind.path(name);
        let key = self.key(kind, name);
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        self.runtime
            .block_on(
                self.store
                    .put_opts(&key, PutPayload::from(bytes.to_vec()), options),
            )
            .map(|_| ())
            .map_err(|e| match e {
                object_store::Error::AlreadyExists { .. } => self.error(
                    "create",
                    &what,
                    BackendErrorKind::AlreadyExists,
                    "it exists already",
                ),
                e => self.store_error("create", &what, &e),
            })
    }

    fn load(&self, kind: FileKind, name: &str) -> BackendResult<Vec<u8>> {
        let what = kind.path(name);
        let key = self.key(kind, name);
        self.runtime
            .block_on(async {
                let got = self.store.get(&key).await?;
                got.bytes().await
            })
            .map(|b| b.to_vec())
            .map_err(|e| self.store_error("read", &what, &e))
    }

    fn load_range(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> BackendResult<Vec<u8>> {
        let what = kind.path(name);
        if length == 0 {
            return Ok(Vec::new());
        }
        let key = self.key(kind, name);
        let bytes = self
            .runtime
            .block_on(self.store.get_range(&key, offset..offset + length))
            .map_err(|e| self.store_error("read", &what, &e))?;
        if bytes.len() as u64 != length {
            return Err(self.error(
                "read",
                &what,
                BackendErrorKind::Other,
                &format!(
                    "got {} bytes at offset {offset} instead of {length}: the file is shorter",
                    bytes.len()
                ),
            ));
        }
        Ok(bytes.to_vec())
    }

    fn stat(&self, kind: FileKind, name: &str) -> BackendResult<u64> {
        let what = kind.path(name);
        let key = self.key(kind, name);
        self.runtime
            .block_on(self.store.head(&key))
            .map(|meta| meta.size)
            .map_err(|e| self.store_error("stat", &what, &e))
    }

    fn remove(&self, kind: FileKind, name: &str) -> BackendResult<()> {
        let what = kind.path(name);
        let key = self.key(kind, name);
        // S3 deletes of missing keys succeed, as the trait wants.
        self.runtime
            .block_on(self.store.delete(&key))
            .map_err(|e| self.store_error("remove", &what, &e))
    }

    fn list(&self, kind: FileKind) -> BackendResult<Vec<ListedFile>> {
        let what = format!("{}/", kind.dir());
        let listed = |meta: object_store::ObjectMeta| ListedFile {
            name: meta.location.filename().unwrap_or_default().to_string(),
            size: meta.size,
        };
        let result = if kind == FileKind::Config {
            // The config sits at the prefix's root; list only that level.
            let prefix = (!self.location.prefix.is_empty())
                .then(|| ObjectPath::from(self.location.prefix.as_str()));
            self.runtime
                .block_on(self.store.list_with_delimiter(prefix.as_ref()))
                .map(|l| l.objects.into_iter().map(listed).collect())
        } else {
            // object_store pages through the listing with continuation tokens.
            let prefix = self.key_of(kind.dir());
            self.runtime.block_on(
                self.store
                    .list(Some(&prefix))
                    .map_ok(listed)
                    .try_collect::<Vec<_>>(),
            )
        };
        result.map_err(|e| self.store_error("list", &what, &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> S3Options {
        S3Options {
            access_key_id: Some("AKID".into()),
            secret_access_key: Some("very-secret".into()),
            ..S3Options::default()
        }
    }

    #[test]
    fn keys_follow_restics_layout_under_the_prefix() {
        let b = S3Backend::new("s3:http://127.0.0.1:1/bucket/pre/fix", options()).unwrap();
        let name = "ab".to_string() + &"0".repeat(62);
        assert_eq!(
            b.key(FileKind::Pack, &name).as_ref(),
            format!("pre/fix/data/ab/{name}")
        );
        assert_eq!(b.key(FileKind::Config, "").as_ref(), "pre/fix/config");
        let root = S3Backend::new("s3:http://127.0.0.1:1/bucket", options()).unwrap();
        assert_eq!(root.key(FileKind::Key, "k1").as_ref(), "keys/k1");
    }

    #[test]
    fn aws_hosts_use_the_regional_endpoint() {
        let mut o = options();
        o.region = Some("eu-central-1".into());
        let b = S3Backend::new("s3:s3.amazonaws.com/bucket", o).unwrap();
        assert_eq!(b.endpoint, "https://s3.eu-central-1.amazonaws.com");
        let b = S3Backend::new("s3:s3.ap-south-1.amazonaws.com/bucket", options()).unwrap();
        assert_eq!(b.region, "ap-south-1");
    }

    #[test]
    fn missing_credentials_are_reported_before_any_request() {
        let err = S3Backend::new("s3:http://127.0.0.1:1/b", S3Options::default())
            .err()
            .expect("no credentials must fail");
        assert!(err.to_string().contains("AWS_ACCESS_KEY_ID"), "{err}");
    }

    #[test]
    fn unreadable_ca_file_is_named() {
        let mut o = options();
        o.ca_cert = Some("/nonexistent/ca.pem".into());
        let err = S3Backend::new("s3:https://h/b", o)
            .err()
            .expect("must fail");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
