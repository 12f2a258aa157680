//! Temporary S3 credentials from a web identity token: what an EKS Pod with
//! IRSA, or any Pod whose ServiceAccount token an S3 server trusts (MinIO
//! with OpenID, Ceph RGW), uses instead of static keys.
//!
//! The token file is read again on every refresh, because the kubelet
//! rotates projected ServiceAccount tokens. The token is exchanged with
//! STS `AssumeRoleWithWebIdentity` (a form POST, so the token never appears
//! in a URL), and the temporary credentials are kept until five minutes
//! before they expire.
//!
//! object_store has a provider of its own, but it reads its settings from
//! the process environment inside `build()` and refuses an `http` STS
//! endpoint; this one takes typed settings from the caller and talks to
//! the endpoint the caller names, through the same HTTP client setup
//! (timeouts, custom CA) as the bucket.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};
use object_store::CredentialProvider;
use object_store::aws::AwsCredential;
use object_store::client::{HttpClient, HttpRequestBody};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::classify::{
    chain_text, status_cause, status_kind, transport_cause, transport_kind, xml_field,
};
use crate::backend::BackendErrorKind;

/// Where to find the token and which role to assume: `AWS_WEB_IDENTITY_TOKEN_FILE`,
/// `AWS_ROLE_ARN`, `AWS_ROLE_SESSION_NAME` and `AWS_ENDPOINT_URL_STS`, as the
/// EKS Pod Identity webhook injects them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WebIdentity {
    /// The file holding the token (a projected ServiceAccount token).
    pub token_file: PathBuf,
    /// The role to assume. AWS requires one; MinIO with a claim-based
    /// OpenID provider does not.
    pub role_arn: Option<String>,
    /// Names the session in the server's audit log; `sluice` when unset.
    pub session_name: Option<String>,
    /// The STS endpoint. When unset: `https://sts.REGION.amazonaws.com` for
    /// an AWS bucket, and the S3 endpoint itself otherwise (MinIO and Ceph
    /// serve STS there).
    pub sts_endpoint: Option<String>,
}

/// Session name when the caller gives none.
const DEFAULT_SESSION_NAME: &str = "sluice";

/// Credentials are renewed when less than this is left of their lifetime,
/// so no request is signed with credentials about to expire.
const RENEW_BEFORE_EXPIRY: SignedDuration = SignedDuration::from_mins(5);

/// An STS response larger than this is not a credential response.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Form values are percent-encoded except for RFC 3986's unreserved characters.
const FORM_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Why no credentials could be had: a backend error kind (retry or not) and
/// a one-line message that names the token file, the role and the endpoint.
#[derive(Debug)]
pub(super) struct StsError {
    pub(super) kind: BackendErrorKind,
    pub(super) message: String,
}

impl fmt::Display for StsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StsError {}

/// Temporary credentials and when to renew them.
struct Lease {
    credential: Arc<AwsCredential>,
    expires: Timestamp,
    /// [`RENEW_BEFORE_EXPIRY`] before `expires`.
    renew_at: Timestamp,
}

/// The object_store credential provider for a [`WebIdentity`].
pub(super) struct WebIdentityProvider {
    identity: WebIdentity,
    /// The STS endpoint actually used.
    endpoint: String,
    http: HttpClient,
    lease: Mutex<Option<Lease>>,
}

impl fmt::Debug for WebIdentityProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebIdentityProvider")
            .field("identity", &self.identity)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl WebIdentityProvider {
    /// A provider that asks `endpoint` through `http`; nothing is sent yet.
    pub(super) fn new(identity: WebIdentity, endpoint: String, http: HttpClient) -> Self {
        WebIdentityProvider {
            identity,
            endpoint,
            http,
            lease: Mutex::new(None),
        }
    }

    /// What the failure messages say was attempted.
    fn attempt(&self) -> String {
        format!(
            "cannot assume role {} with the web identity token in {} at {}",
            self.identity.role_arn.as_deref().unwrap_or("(none given)"),
            self.identity.token_file.display(),
            self.endpoint
        )
    }

    fn fail(&self, kind: BackendErrorKind, cause: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: Box::new(StsError {
                kind,
                message: format!("{}: {cause}", self.attempt()),
            }),
        }
    }

    /// Exchanges the current token for new credentials.
    async fn assume_role(&self) -> object_store::Result<Lease> {
        // No token is missing credentials: a person must fix it, retrying does not.
        let token = std::fs::read_to_string(&self.identity.token_file).map_err(|e| {
            self.fail(
                BackendErrorKind::PermissionDenied,
                &format!(
                    "cannot read the token ({e}); the ServiceAccount token projection is missing \
                     from the Pod, or AWS_WEB_IDENTITY_TOKEN_FILE names the wrong file"
                ),
            )
        })?;
        let token = token.trim();
        if token.is_empty() {
            return Err(self.fail(
                BackendErrorKind::PermissionDenied,
                "the token file is empty",
            ));
        }
        let body = request_form(&self.identity, token);
        let request = http::Request::builder()
            .method(http::Method::POST)
            .uri(self.endpoint.as_str())
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(HttpRequestBody::from(body))
            .map_err(|e| self.fail(BackendErrorKind::Other, &e.to_string()))?;
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|e| self.fail(transport_kind(&chain_text(&e)), &transport_cause(&e)))?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .bytes()
            .await
            .map_err(|e| self.fail(BackendErrorKind::Transient, &transport_cause(&e)))?;
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_RESPONSE_BYTES)]);
        parse_response(status, &text).map_err(|(kind, cause)| self.fail(kind, &cause))
    }
}

#[async_trait::async_trait]
impl CredentialProvider for WebIdentityProvider {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let now = Timestamp::now();
        if let Some(lease) = self.lease.lock().expect("lease lock").as_ref()
            && now < lease.renew_at
        {
            return Ok(lease.credential.clone());
        }
        // Two concurrent renewals may both ask STS; either answer is good.
        let lease = self.assume_role().await?;
        let credential = lease.credential.clone();
        tracing::debug!(expires = %lease.expires, endpoint = %self.endpoint, "assumed role with web identity");
        *self.lease.lock().expect("lease lock") = Some(lease);
        Ok(credential)
    }
}

/// The STS endpoint for `identity`: the one it names, else AWS's regional
/// endpoint for a bucket on AWS, else the S3 endpoint itself.
pub(super) fn sts_endpoint(
    identity: &WebIdentity,
    s3_endpoint: &str,
    on_aws: bool,
    region: &str,
) -> String {
    match &identity.sts_endpoint {
        Some(endpoint) => endpoint.clone(),
        None if on_aws => format!("https://sts.{region}.amazonaws.com"),
        None => s3_endpoint.to_string(),
    }
}

/// The form body of an `AssumeRoleWithWebIdentity` request.
fn request_form(identity: &WebIdentity, token: &str) -> String {
    let mut fields = vec![
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", "2011-06-15"),
        (
            "RoleSessionName",
            identity
                .session_name
                .as_deref()
                .unwrap_or(DEFAULT_SESSION_NAME),
        ),
        ("WebIdentityToken", token),
    ];
    if let Some(role) = &identity.role_arn {
        fields.push(("RoleArn", role));
    }
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, FORM_VALUE)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The credentials in an STS response, or why there are none.
fn parse_response(status: u16, body: &str) -> Result<Lease, (BackendErrorKind, String)> {
    if status != 200 {
        // STS says "the token is not accepted" with 400 (InvalidIdentityToken,
        // MinIO's InvalidParameterValue); retrying never fixes that.
        let kind = match status_kind(status, body) {
            BackendErrorKind::Other if status == 400 => BackendErrorKind::PermissionDenied,
            kind => kind,
        };
        return Err((kind, status_cause(status, body)));
    }
    let field = |tag: &str| {
        xml_field(body, tag).map(unescape).ok_or_else(|| {
            (
                BackendErrorKind::Other,
                format!("the STS response holds no {tag}; is the endpoint an STS service?"),
            )
        })
    };
    let expiration = field("Expiration")?;
    let expires = expiration.trim().parse::<Timestamp>().map_err(|e| {
        (
            BackendErrorKind::Other,
            format!("the STS response's Expiration {expiration:?} is not a time: {e}"),
        )
    })?;
    Ok(Lease {
        credential: Arc::new(AwsCredential {
            key_id: field("AccessKeyId")?,
            secret_key: field("SecretAccessKey")?,
            token: Some(field("SessionToken")?),
        }),
        expires,
        renew_at: expires.checked_sub(RENEW_BEFORE_EXPIRY).unwrap_or(expires),
    })
}

/// XML character data with the five predefined entities replaced.
fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <Credentials>
      <AccessKeyId>ASIAEXAMPLE</AccessKeyId>
      <SecretAccessKey>se/cret+key&amp;more</SecretAccessKey>
      <SessionToken>FQoGZXIvYXdzEXAMPLE</SessionToken>
      <Expiration>2026-12-03T13:00:00Z</Expiration>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>"#;

    #[test]
    fn a_credential_response_gives_the_temporary_keys_and_their_expiry() {
        let lease = parse_response(200, OK).unwrap();
        assert_eq!(lease.credential.key_id, "ASIAEXAMPLE");
        assert_eq!(lease.credential.secret_key, "se/cret+key&more");
        assert_eq!(
            lease.credential.token.as_deref(),
            Some("FQoGZXIvYXdzEXAMPLE")
        );
        assert_eq!(
            lease.expires,
            "2026-12-03T13:00:00Z".parse::<Timestamp>().unwrap()
        );
    }

    #[test]
    fn refusals_and_bad_responses_are_classified_with_the_servers_words() {
        use BackendErrorKind as K;
        let error = |code: &str| {
            format!(
                "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>why</Message></Error></ErrorResponse>"
            )
        };
        for (status, body, kind, cause) in [
            (
                400,
                error("InvalidIdentityToken"),
                K::PermissionDenied,
                "HTTP 400 InvalidIdentityToken: why",
            ),
            (
                400,
                error("InvalidParameterValue"),
                K::PermissionDenied,
                "HTTP 400 InvalidParameterValue: why",
            ),
            (
                403,
                error("AccessDenied"),
                K::PermissionDenied,
                "HTTP 403 AccessDenied: why",
            ),
            (503, error("ServiceUnavailable"), K::Transient, "HTTP 503"),
            (429, String::new(), K::Transient, "HTTP 429"),
            (
                200,
                "<html>hello</html>".to_string(),
                K::Other,
                "holds no Expiration",
            ),
            (
                200,
                OK.replace("2026-12-03T13:00:00Z", "soon"),
                K::Other,
                "\"soon\" is not a time",
            ),
        ] {
            let (got_kind, got_cause) = parse_response(status, &body).err().expect("must fail");
            assert_eq!(got_kind, kind, "{status} {body}");
            assert!(got_cause.contains(cause), "{status} {body}: {got_cause}");
        }
    }

    #[test]
    fn the_request_is_a_form_with_every_value_encoded() {
        let identity = WebIdentity {
            token_file: "/t".into(),
            role_arn: Some("arn:aws:iam::123456789012:role/backup".into()),
            session_name: None,
            sts_endpoint: None,
        };
        assert_eq!(
            request_form(&identity, "eyJ.a-b_c.x+y/z="),
            "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleSessionName=sluice\
             &WebIdentityToken=eyJ.a-b_c.x%2By%2Fz%3D\
             &RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fbackup"
        );
        let claim_based = WebIdentity {
            role_arn: None,
            session_name: Some("nightly".into()),
            ..identity
        };
        let form = request_form(&claim_based, "t");
        assert!(form.contains("RoleSessionName=nightly"), "{form}");
        assert!(!form.contains("RoleArn"), "{form}");
    }

    #[test]
    fn the_sts_endpoint_is_the_named_one_else_aws_regional_else_the_s3_endpoint() {
        let named = WebIdentity {
            sts_endpoint: Some("https://sts.example:8443".into()),
            ..WebIdentity::default()
        };
        let unnamed = WebIdentity::default();
        for (identity, s3, on_aws, expected) in [
            (
                &named,
                "https://s3.eu-west-1.amazonaws.com",
                true,
                "https://sts.example:8443",
            ),
            (
                &unnamed,
                "https://s3.eu-west-1.amazonaws.com",
                true,
                "https://sts.eu-west-1.amazonaws.com",
            ),
            (
                &unnamed,
                "http://127.0.0.1:9000",
                false,
                "http://127.0.0.1:9000",
            ),
        ] {
            assert_eq!(sts_endpoint(identity, s3, on_aws, "eu-west-1"), expected);
        }
    }
}
