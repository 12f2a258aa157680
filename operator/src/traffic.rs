//! The operator's own requests to the API server, counted by verb and resource on `/metrics`
//! (`sluice_api_requests_total`), so what does not scale (polling, lists per reconcile, writes
//! that change nothing) shows where people already look, not only in a benchmark.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use http::{Method, Request};
use tower::{Layer, Service};

use crate::metrics::Metrics;

/// What one request does, as the API server's audit log would name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete` or `deletecollection`.
    pub verb: &'static str,
    /// The resource, with its subresource: `jobs`, `replicationsources/status`, ...
    pub resource: String,
}

/// Names the request to `method` `path?query`. Paths are `/api/v1/...` or
/// `/apis/<group>/<version>/...`, then optionally `namespaces/<namespace>/`, then the resource,
/// a name, a subresource. Anything else (discovery, `/version`) is the `get` of a `""` resource.
pub fn call(method: &Method, path: &str, query: Option<&str>) -> Call {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match segments.as_slice() {
        ["api", _version, rest @ ..] | ["apis", _, _version, rest @ ..] => rest,
        _ => &[],
    };
    let rest = match rest {
        // `namespaces/<name>` alone is a namespace, not a namespaced collection.
        ["namespaces", _, rest @ ..] if !rest.is_empty() => rest,
        other => other,
    };
    let (resource, named) = match rest {
        [] => (String::new(), false),
        [resource] => ((*resource).to_string(), false),
        [resource, _name] => ((*resource).to_string(), true),
        [resource, _name, subresource, ..] => (format!("{resource}/{subresource}"), true),
    };
    let watching = query.is_some_and(|query| {
        query
            .split('&')
            .any(|pair| pair == "watch=true" || pair == "watch=1")
    });
    let verb = match *method {
        Method::GET if watching => "watch",
        Method::GET if named || resource.is_empty() => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "other",
    };
    Call { verb, resource }
}

/// The client layer that counts every request it passes on.
#[derive(Clone)]
pub struct CountRequests {
    metrics: Arc<Metrics>,
}

impl CountRequests {
    /// Counts into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for CountRequests {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Counted {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// A client service whose requests are counted.
#[derive(Clone)]
pub struct Counted<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B> Service<Request<B>> for Counted<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let uri = request.uri();
        let named = call(request.method(), uri.path(), uri.query());
        self.metrics.api_request(named.verb, &named.resource);
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_named_as_the_api_server_names_them() {
        let cases = [
            (
                Method::GET,
                "/apis/batch/v1/namespaces/apps/jobs/j1",
                None,
                "get",
                "jobs",
            ),
            (
                Method::GET,
                "/apis/batch/v1/namespaces/apps/jobs",
                Some("labelSelector=a%3Db"),
                "list",
                "jobs",
            ),
            (
                Method::GET,
                "/apis/batch/v1/jobs",
                Some("labelSelector=a&watch=true&resourceVersion=5"),
                "watch",
                "jobs",
            ),
            (
                Method::GET,
                "/api/v1/namespaces/apps/secrets/repo",
                None,
                "get",
                "secrets",
            ),
            (Method::GET, "/api/v1/pods", None, "list", "pods"),
            (
                Method::GET,
                "/api/v1/namespaces/apps",
                None,
                "get",
                "namespaces",
            ),
            (
                Method::PATCH,
                "/apis/sluice.dev/v1alpha1/namespaces/apps/replicationsources/db/status",
                Some("fieldManager=sluice&force=true"),
                "patch",
                "replicationsources/status",
            ),
            (
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/apps/events",
                None,
                "create",
                "events",
            ),
            (
                Method::PUT,
                "/apis/coordination.k8s.io/v1/namespaces/s/leases/l",
                None,
                "update",
                "leases",
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/apps/persistentvolumeclaims/c",
                None,
                "delete",
                "persistentvolumeclaims",
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/apps/pods",
                None,
                "deletecollection",
                "pods",
            ),
            (Method::GET, "/version", None, "get", ""),
            (
                Method::GET,
                "/apis/snapshot.storage.k8s.io/v1",
                None,
                "get",
                "",
            ),
        ];
        for (method, path, query, verb, resource) in cases {
            let named = call(&method, path, query);
            assert_eq!(
                (named.verb, named.resource.as_str()),
                (verb, resource),
                "{method} {path}"
            );
        }
    }
}
