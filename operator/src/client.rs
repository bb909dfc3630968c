//! The operator's API client: kube's default stack with one layer more, which counts every
//! write the operator sends by verb and resource (`renderfarm_api_writes_total`), in one place
//! instead of at each call site.

use std::sync::Arc;

use http::{Method, Request, header};
use kube::client::{Body, ClientBuilder};
use kube::{Client, Config};
use tower::util::MapRequestLayer;

use crate::Result;
use crate::metrics::Metrics;

/// A client for `config` whose writes are counted in `metrics`.
pub fn new(config: Config, metrics: Arc<Metrics>) -> Result<Client> {
    Ok(ClientBuilder::try_from(config)?
        .with_layer(&counting(metrics))
        .build())
}

/// The layer that counts writes.
pub fn counting(
    metrics: Arc<Metrics>,
) -> MapRequestLayer<impl Fn(Request<Body>) -> Request<Body> + Clone> {
    MapRequestLayer::new(move |req: Request<Body>| {
        if let Some((verb, resource)) = write_of(&req) {
            metrics.write(verb, &resource);
        }
        req
    })
}

/// The verb and resource of a write (`("apply", "jobs")`, `("apply", "renderjobs/status")`,
/// `("create", "events")`); `None` for reads and watches.
pub fn write_of<B>(req: &Request<B>) -> Option<(&'static str, String)> {
    let verb = match *req.method() {
        Method::POST => "create",
        Method::PUT => "update",
        Method::DELETE => "delete",
        Method::PATCH => {
            let apply = req
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|t| t.as_bytes().starts_with(b"application/apply-patch"));
            if apply { "apply" } else { "patch" }
        }
        _ => return None,
    };
    Some((verb, resource_of(req.uri().path())))
}

/// `jobs` from `/apis/batch/v1/namespaces/ns/jobs/shot-0000`, `renderjobs/status` from
/// `.../renderjobs/shot/status`, `events` from `/apis/events.k8s.io/v1/namespaces/ns/events`.
fn resource_of(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let rest = match parts.first() {
        Some(&"api") => parts.get(2..),
        Some(&"apis") => parts.get(3..),
        _ => None,
    }
    .unwrap_or_default();
    let rest = match rest {
        ["namespaces", _ns, resource, tail @ ..] => {
            let mut r = vec![*resource];
            r.extend(tail);
            r
        }
        other => other.to_vec(),
    };
    match rest.as_slice() {
        [resource] | [resource, _] => resource.to_string(),
        [resource, _, sub, ..] => format!("{resource}/{sub}"),
        [] => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, path: &str, content_type: Option<&str>) -> Request<()> {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(t) = content_type {
            b = b.header(header::CONTENT_TYPE, t);
        }
        b.body(()).expect("request")
    }

    #[test]
    fn writes_are_named_by_verb_and_resource() {
        let cases = [
            (
                req(
                    Method::PATCH,
                    "/apis/batch/v1/namespaces/ns/jobs/shot-0000?fieldManager=renderfarm-operator&force=true",
                    Some("application/apply-patch+yaml"),
                ),
                Some(("apply", "jobs")),
            ),
            (
                req(
                    Method::PATCH,
                    "/apis/renderfarm.io/v1alpha1/namespaces/ns/renderjobs/shot/status",
                    Some("application/apply-patch+yaml"),
                ),
                Some(("apply", "renderjobs/status")),
            ),
            (
                req(
                    Method::PATCH,
                    "/apis/batch/v1/namespaces/ns/jobs/shot-0001",
                    Some("application/merge-patch+json"),
                ),
                Some(("patch", "jobs")),
            ),
            (
                req(
                    Method::POST,
                    "/apis/events.k8s.io/v1/namespaces/ns/events",
                    None,
                ),
                Some(("create", "events")),
            ),
            (
                req(
                    Method::DELETE,
                    "/apis/batch/v1/namespaces/ns/jobs/shot-0002",
                    None,
                ),
                Some(("delete", "jobs")),
            ),
            (
                req(
                    Method::PUT,
                    "/apis/coordination.k8s.io/v1/namespaces/ns/leases/renderfarm-operator",
                    None,
                ),
                Some(("update", "leases")),
            ),
            (
                req(Method::POST, "/api/v1/namespaces", None),
                Some(("create", "namespaces")),
            ),
            (
                req(Method::GET, "/apis/batch/v1/jobs?watch=true", None),
                None,
            ),
        ];
        for (r, want) in cases {
            let got = write_of(&r);
            assert_eq!(
                got.as_ref().map(|(v, r)| (*v, r.as_str())),
                want,
                "{} {}",
                r.method(),
                r.uri()
            );
        }
    }
}
