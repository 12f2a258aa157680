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

use std::fmt;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, AwsAuthorizer};
use object_store::client::{HttpClient, HttpConnector, HttpRequestBody, ReqwestConnector};
use object_store::path::Path as ObjectPath;
use object_store::{Certificate, ClientOptions, ObjectStore, PutPayload, RetryConfig};
use tokio::runtime::Runtime;

use super::{
    Backend, BackendError, BackendErrorKind, BackendResult, FileKind, ListedFile, Payload,
};

/// Files up to this size are sent in one PUT, read into memory once.
const SINGLE_PUT_MAX: u64 = 32 << 20;
/// Part size of multipart uploads (S3 wants at least 5 MiB but the last).
const PART_SIZE: u64 = 16 << 20;
/// Parts of one upload in flight at once: with [`PART_SIZE`] this bounds an
/// upload's memory to [`SINGLE_PUT_MAX`], whatever the file's size.
const PARTS_IN_FLIGHT: usize = 2;
/// Time allowed for one HTTP request, including sending a whole part.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// Time allowed to open a connection; a dead endpoint fails this fast.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// restic's default region, and MinIO's.
const DEFAULT_REGION: &str = "us-east-1";

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
    fn is_aws(&self) -> bool {
        let host = self.host();
        host == "s3.amazonaws.com" || host.ends_with(".amazonaws.com")
    }

    /// The region an AWS host names, as in `s3.eu-west-1.amazonaws.com` or
    /// the older `s3-eu-west-1.amazonaws.com`.
    fn region_from_host(&self) -> Option<String> {
        let name = self.host().strip_suffix(".amazonaws.com")?;
        let region = name
            .strip_prefix("s3.")
            .or_else(|| name.strip_prefix("s3-"))?;
        (!region.is_empty() && !region.contains('.')).then(|| region.to_string())
    }
}

/// Credentials, region and trust for an S3 endpoint.
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
}

impl S3Options {
    /// Reads the variables restic reads: `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_DEFAULT_REGION`
    /// and `RESTIC_CACERT`. Empty values count as unset.
    pub fn from_env() -> S3Options {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        S3Options {
            access_key_id: var("AWS_ACCESS_KEY_ID"),
            secret_access_key: var("AWS_SECRET_ACCESS_KEY"),
            session_token: var("AWS_SESSION_TOKEN"),
            region: var("AWS_DEFAULT_REGION"),
            ca_cert: var("RESTIC_CACERT").map(PathBuf::from),
        }
    }
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
            .finish()
    }
}

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
        let setup_err = |cause: String| BackendError {
            kind: BackendErrorKind::Other,
            context: format!("open {url}"),
            cause,
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
        let mut secrets = Vec::new();
        match (&options.access_key_id, &options.secret_access_key) {
            (Some(id), Some(secret)) => {
                builder = builder
                    .with_access_key_id(id)
                    .with_secret_access_key(secret);
                secrets.push(secret.clone());
                if let Some(token) = &options.session_token {
                    builder = builder.with_token(token);
                    secrets.push(token.clone());
                }
            }
            // object_store reads these itself (EKS pod identity via IRSA).
            _ if std::env::var_os("AWS_WEB_IDENTITY_TOKEN_FILE").is_some() => {}
            // Without this check object_store would fall back to the EC2
            // instance metadata service and fail slowly off EC2.
            _ => {
                return Err(setup_err(
                    "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
                ));
            }
        }
        let store = builder
            .build()
            .map_err(|e| setup_err(one_line(&e.to_string())))?;
        let http = ReqwestConnector::default()
            .connect(&client)
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

    /// A backend for `url` configured from restic's environment variables
    /// (see [`S3Options::from_env`]).
    pub fn from_env(url: &str) -> BackendResult<S3Backend> {
        S3Backend::new(url, S3Options::from_env())
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
        BackendError {
            kind,
            context: format!("{op} {what} on {}", self.url),
            cause,
        }
    }

    fn store_error(&self, op: &str, what: &str, e: &object_store::Error) -> BackendError {
        let (kind, cause) = classify(e);
        self.error(op, what, kind, &cause)
    }

    fn put_file(&self, key: &ObjectPath, what: &str, file: &File, len: u64) -> BackendResult<()> {
        let read = |offset: u64, n: u64| -> BackendResult<Bytes> {
            let mut buf = vec![0u8; n as usize];
            file.read_exact_at(&mut buf, offset).map_err(|e| {
                BackendError::from_io(format!("read the payload of {what} for {}", self.url), &e)
            })?;
            Ok(Bytes::from(buf))
        };
        if len <= SINGLE_PUT_MAX {
            let body = read(0, len)?;
            return self
                .runtime
                .block_on(self.store.put(key, PutPayload::from(body)))
                .map(|_| ())
                .map_err(|e| self.store_error("save", what, &e));
        }

        let mut upload = self
            .runtime
            .block_on(self.store.put_multipart(key))
            .map_err(|e| self.store_error("start multipart upload of", what, &e))?;
        let mut in_flight = std::collections::VecDeque::new();
        let mut send_parts = || -> BackendResult<()> {
            let mut offset = 0;
            while offset < len {
                if in_flight.len() == PARTS_IN_FLIGHT {
                    let oldest = in_flight.pop_front().expect("a part in flight");
                    self.join_part(oldest, what)?;
                }
                let n = PART_SIZE.min(len - offset);
                let part = upload.put_part(PutPayload::from(read(offset, n)?));
                in_flight.push_back(self.runtime.spawn(part));
                offset += n;
            }
            while let Some(part) = in_flight.pop_front() {
                self.join_part(part, what)?;
            }
            Ok(())
        };
        let sent = send_parts();
        let result = sent.and_then(|()| {
            self.runtime
                .block_on(upload.complete())
                .map(|_| ())
                .map_err(|e| self.store_error("complete multipart upload of", what, &e))
        });
        if result.is_err() {
            for part in &in_flight {
                part.abort();
            }
            // Best effort: an upload left behind holds storage until the
            // bucket's lifecycle rules remove it, but never becomes visible.
            if let Err(e) = self.runtime.block_on(upload.abort()) {
                tracing::debug!(key = %key, error = %one_line(&e.to_string()), "aborting a failed multipart upload failed");
            }
        }
        result
    }

    fn join_part(
        &self,
        part: tokio::task::JoinHandle<object_store::Result<()>>,
        what: &str,
    ) -> BackendResult<()> {
        match self.runtime.block_on(part) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.store_error("save part of", what, &e)),
            Err(e) => Err(self.error(
                "save part of",
                what,
                BackendErrorKind::Other,
                &e.to_string(),
            )),
        }
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
            Payload::File { file, len } => self.put_file(&key, &what, file, len),
        }
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

/// Joins a message's lines, so every error a user sees is one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The text between `<tag>` and `</tag>` in an S3 XML error body.
fn xml_field<'a>(body: &'a str, tag: &str) -> Option<&'a str> {
    let start = body.find(&format!("<{tag}>"))? + tag.len() + 2;
    let len = body[start..].find(&format!("</{tag}>"))?;
    Some(&body[start..start + len])
}

/// A short cause from an HTTP status and S3 error body:
/// `403 InvalidAccessKeyId: The Access Key Id you provided does not exist`.
fn status_cause(status: u16, body: &str) -> String {
    match (xml_field(body, "Code"), xml_field(body, "Message")) {
        (Some(code), Some(message)) => format!("HTTP {status} {code}: {message}"),
        (Some(code), None) => format!("HTTP {status} {code}"),
        _ => format!("HTTP {status}"),
    }
}

/// Classifies an HTTP status (with the S3 error body, when there is one).
fn status_kind(status: u16, body: &str) -> BackendErrorKind {
    match status {
        404 if body.contains("NoSuchBucket") => BackendErrorKind::NoSuchContainer,
        404 => BackendErrorKind::NotFound,
        401 | 403 => BackendErrorKind::PermissionDenied,
        408 | 429 | 500..=599 => BackendErrorKind::Transient,
        // S3 signals throttling and timeouts with these codes on other statuses too.
        _ if [
            "SlowDown",
            "RequestTimeout",
            "InternalError",
            "ServiceUnavailable",
        ]
        .iter()
        .any(|code| xml_field(body, "Code") == Some(code)) =>
        {
            BackendErrorKind::Transient
        }
        _ if body.contains("QuotaExceeded") || body.contains("EntityTooLarge") => {
            BackendErrorKind::NoSpace
        }
        _ => BackendErrorKind::Other,
    }
}

/// Classifies a failure to get any response at all. Transport failures are
/// transient, except an untrusted TLS certificate, which retrying never fixes.
fn transport_kind(text: &str) -> BackendErrorKind {
    if text.contains("certificate") {
        BackendErrorKind::Other
    } else {
        BackendErrorKind::Transient
    }
}

/// The innermost cause of a transport failure (e.g. `Connection refused`),
/// which is the part that tells the user something.
fn transport_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e;
    while let Some(source) = inner.source() {
        inner = source;
    }
    let text = one_line(&inner.to_string());
    if transport_kind(&chain_text(e)) == BackendErrorKind::Other {
        format!(
            "TLS certificate not trusted ({text}): pass the server's CA certificate with RESTIC_CACERT"
        )
    } else {
        format!("cannot reach the server: {text}")
    }
}

/// Classifies an object_store error into a backend error kind and a short
/// one-line cause.
///
/// object_store maps 404/403/401 to variants but keeps the status of other
/// failures in a private type, so those are read from its message
/// (`... status code: 503 Service Unavailable: <body>`); transport failures
/// show as `HTTP error` in the chain.
fn classify(e: &object_store::Error) -> (BackendErrorKind, String) {
    let text = e.to_string();
    let body = text
        .split_once("status code: ")
        .map(|(_, rest)| rest)
        .unwrap_or("");
    let status: Option<u16> = body.get(..3).and_then(|s| s.parse().ok());
    match (e, status) {
        (object_store::Error::NotFound { .. }, _) => {
            let kind = status_kind(404, &text);
            let cause = if kind == BackendErrorKind::NoSuchContainer {
                status_cause(404, &text)
            } else {
                "no such file".to_string()
            };
            (kind, cause)
        }
        (
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. },
            _,
        ) => (
            BackendErrorKind::PermissionDenied,
            status_cause(status.unwrap_or(403), &text),
        ),
        (_, Some(status)) => (status_kind(status, &text), status_cause(status, &text)),
        // A 200 response whose body is an S3 error (InternalError, SlowDown).
        _ if text.contains("Server returned error response") => (
            BackendErrorKind::Transient,
            format!(
                "server error: {}",
                xml_field(&text, "Code").unwrap_or("unknown")
            ),
        ),
        _ if text.contains("HTTP error") || has_io_source(e) => {
            (transport_kind(&chain_text(e)), transport_cause(e))
        }
        _ => (BackendErrorKind::Other, one_line(&text)),
    }
}

/// Every message in an error's chain, joined: the deepest ones (TLS, socket)
/// are not part of the top-level message.
fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut current = e.source();
    while let Some(err) = current {
        text.push_str(": ");
        text.push_str(&err.to_string());
        current = err.source();
    }
    text
}

/// True when an I/O error (connection reset, broken pipe...) is among the
/// causes, as when a response body stops halfway.
fn has_io_source(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = e.source();
    while let Some(err) = current {
        if err.is::<std::io::Error>() {
            return true;
        }
        current = err.source();
    }
    false
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

    fn options() -> S3Options {
        S3Options {
            access_key_id: Some("AKID".into()),
            secret_access_key: Some("very-secret".into()),
            ..S3Options::default()
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let shown = format!("{:?}", options());
        assert!(shown.contains("AKID"));
        assert!(!shown.contains("very-secret"), "{shown}");
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
        if std::env::var_os("AWS_WEB_IDENTITY_TOKEN_FILE").is_some() {
            return; // the pod identity path applies instead
        }
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

    #[test]
    fn statuses_map_to_kinds() {
        use BackendErrorKind as K;
        let body = |code: &str| format!("<Error><Code>{code}</Code><Message>m</Message></Error>");
        assert_eq!(status_kind(404, &body("NoSuchBucket")), K::NoSuchContainer);
        assert_eq!(status_kind(404, &body("NoSuchKey")), K::NotFound);
        assert_eq!(status_kind(404, ""), K::NotFound);
        assert_eq!(
            status_kind(403, &body("InvalidAccessKeyId")),
            K::PermissionDenied
        );
        assert_eq!(
            status_kind(403, &body("SignatureDoesNotMatch")),
            K::PermissionDenied
        );
        assert_eq!(status_kind(503, &body("SlowDown")), K::Transient);
        assert_eq!(status_kind(500, ""), K::Transient);
        assert_eq!(status_kind(429, ""), K::Transient);
        assert_eq!(status_kind(400, &body("RequestTimeout")), K::Transient);
        assert_eq!(status_kind(400, &body("InvalidArgument")), K::Other);
        assert_eq!(
            status_kind(403, &body("QuotaExceeded")),
            K::PermissionDenied
        );
        assert_eq!(status_kind(400, &body("EntityTooLarge")), K::NoSpace);
    }

    #[test]
    fn status_causes_are_short() {
        assert_eq!(
            status_cause(
                403,
                "<?xml version=\"1.0\"?>\n<Error><Code>InvalidAccessKeyId</Code><Message>Unknown key.</Message></Error>"
            ),
            "HTTP 403 InvalidAccessKeyId: Unknown key."
        );
        assert_eq!(status_cause(404, ""), "HTTP 404");
    }

    #[test]
    fn certificate_failures_are_not_retried() {
        assert_eq!(
            transport_kind("invalid peer certificate: UnknownIssuer"),
            BackendErrorKind::Other
        );
        assert_eq!(
            transport_kind("tcp connect error: Connection refused (os error 111)"),
            BackendErrorKind::Transient
        );
    }
}
