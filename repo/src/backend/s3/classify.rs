//! What an S3 failure means: object_store errors and raw bucket responses
//! become a backend error kind (retry or not) and a short one-line cause.

use super::web_identity::StsError;
use crate::backend::BackendErrorKind;

/// Joins a message's lines, so every error a user sees is one line.
pub(super) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The text between `<tag>` and `</tag>` in an S3 XML error body.
pub(super) fn xml_field<'a>(body: &'a str, tag: &str) -> Option<&'a str> {
    let start = body.find(&format!("<{tag}>"))? + tag.len() + 2;
    let len = body[start..].find(&format!("</{tag}>"))?;
    Some(&body[start..start + len])
}

/// A short cause from an HTTP status and S3 error body:
/// `403 InvalidAccessKeyId: The Access Key Id you provided does not exist`.
pub(super) fn status_cause(status: u16, body: &str) -> String {
    match (xml_field(body, "Code"), xml_field(body, "Message")) {
        (Some(code), Some(message)) => format!("HTTP {status} {code}: {message}"),
        (Some(code), None) => format!("HTTP {status} {code}"),
        _ => format!("HTTP {status}"),
    }
}

/// Classifies an HTTP status (with the S3 error body, when there is one).
pub(super) fn status_kind(status: u16, body: &str) -> BackendErrorKind {
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
pub(super) fn transport_kind(text: &str) -> BackendErrorKind {
    if text.contains("certificate") {
        BackendErrorKind::Other
    } else {
        BackendErrorKind::Transient
    }
}

/// The innermost cause of a transport failure (e.g. `Connection refused`),
/// which is the part that tells the user something.
pub(super) fn transport_cause(e: &(dyn std::error::Error + 'static)) -> String {
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
pub(super) fn classify(e: &object_store::Error) -> (BackendErrorKind, String) {
    // No credentials from STS: the provider has already said why.
    let chain = std::iter::successors(Some(e as &(dyn std::error::Error + 'static)), |e| {
        e.source()
    });
    if let Some(sts) = chain.into_iter().find_map(|e| e.downcast_ref::<StsError>()) {
        return (sts.kind, sts.message.clone());
    }
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
pub(super) fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
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
