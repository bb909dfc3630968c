//! The operator's API client: kube's default stack with two layers more, in one place instead
//! of at each call site. One counts every write the operator sends by verb and resource
//! (`renderfarm_api_writes_total`); the other refuses every write but the Lease's while this
//! replica's lease is not current ([`Fence`]), so a leader frozen mid-reconcile (SIGSTOP, a
//! paused VM) sends nothing of what it had left to do when it wakes after another took over.
//! [`create`] is a create that waits out admission webhooks which have not seen a new namespace.

use std::fmt::Debug;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::TryFutureExt;
use futures::future::{Either, ErrInto, Ready, ready};
use http::{Method, Request, header};
use kube::api::PostParams;
use kube::client::{Body, ClientBuilder};
use kube::{Api, Client, Config};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tower::util::MapRequestLayer;
use tower::{BoxError, Layer, Service};

use crate::Result;
use crate::leader::Fence;
use crate::metrics::Metrics;

/// A client for `config` whose writes are counted in `metrics` and, with a `fence`, sent only
/// while this replica leads.
pub fn new(config: Config, metrics: Arc<Metrics>, fence: Option<Arc<Fence>>) -> Result<Client> {
    Ok(ClientBuilder::try_from(config)?
        .with_layer(&FenceLayer(fence))
        .with_layer(&counting(metrics))
        .build())
}

/// The layer that refuses writes while the [`Fence`] is not current (none: never).
#[derive(Clone)]
pub struct FenceLayer(pub Option<Arc<Fence>>);

impl<S> Layer<S> for FenceLayer {
    type Service = Fenced<S>;

    fn layer(&self, inner: S) -> Fenced<S> {
        Fenced {
            inner,
            fence: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Fenced<S> {
    inner: S,
    fence: Option<Arc<Fence>>,
}

impl<S, B> Service<Request<B>> for Fenced<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Either<ErrInto<S::Future, BoxError>, Ready<Result<S::Response, BoxError>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if let Some(fence) = &self.fence
            && write_of(&req).is_some_and(|(_, resource)| resource != "leases")
            && let Err(e) = fence.check()
        {
            return Either::Right(ready(Err(Box::new(e))));
        }
        Either::Left(self.inner.call(req).err_into())
    }
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

/// Whether an admission webhook refused a request only because the object's namespace is not
/// in its cache yet. Kueue's webhooks look the namespace up in an informer, which lags a
/// namespace created a moment ago by a few milliseconds: the same request passes on retry.
pub fn webhook_lags_namespace(status: &kube::core::Status) -> bool {
    status.code == 404
        && status.message.starts_with("admission webhook")
        && status.message.contains("Namespace")
        && status.message.contains("not found")
}

/// How long [`create`] retries while a webhook does not know the namespace yet.
const WEBHOOK_LAG: Duration = Duration::from_secs(10);

/// Create `obj`, retrying (up to 10 s) while an admission webhook has not yet seen its
/// namespace ([`webhook_lags_namespace`]); any other answer is returned as it is.
pub async fn create<K>(api: &Api<K>, obj: &K) -> kube::Result<K>
where
    K: Clone + DeserializeOwned + Serialize + Debug,
{
    let give_up = tokio::time::Instant::now() + WEBHOOK_LAG;
    loop {
        match api.create(&PostParams::default(), obj).await {
            Err(kube::Error::Api(s))
                if webhook_lags_namespace(&s) && tokio::time::Instant::now() < give_up =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leader::LeaderSettings;
    use tower::ServiceExt;

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

    #[tokio::test]
    async fn a_fence_that_is_not_current_lets_only_reads_and_the_lease_through() {
        // No lease seen yet: the fence is not current.
        let fence = Arc::new(Fence::new(&LeaderSettings {
            lease_name: "renderfarm-operator".into(),
            namespace: "ns".into(),
            identity: "a".into(),
            lease_seconds: 15,
        }));
        let (mock, mut handle) = tower_test::mock::pair::<Request<()>, http::Response<()>>();
        let svc = FenceLayer(Some(fence)).layer(mock);
        let server = tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some((req, send)) = handle.next_request().await {
                seen.push(format!("{} {}", req.method(), req.uri().path()));
                send.send_response(http::Response::new(()));
            }
            seen
        });
        let lease = "/apis/coordination.k8s.io/v1/namespaces/ns/leases/renderfarm-operator";
        let job = "/apis/batch/v1/namespaces/ns/jobs/shot-0000";
        let cases = [
            (req(Method::GET, job, None), true),
            (req(Method::PUT, lease, None), true),
            (req(Method::DELETE, job, None), false),
            (
                req(Method::PATCH, job, Some("application/apply-patch+yaml")),
                false,
            ),
        ];
        for (r, passes) in cases {
            let what = format!("{} {}", r.method(), r.uri());
            let got = svc.clone().oneshot(r).await;
            assert_eq!(got.is_ok(), passes, "{what}");
            if let Err(e) = got {
                assert!(e.to_string().contains("not current"), "{e}");
            }
        }
        drop(svc);
        let seen = server.await.expect("mock server");
        assert_eq!(seen, [format!("GET {job}"), format!("PUT {lease}")]);
    }

    #[test]
    fn only_a_webhook_that_has_not_seen_the_namespace_is_waited_out() {
        let status = |code, message: &str| kube::core::Status {
            code,
            message: message.into(),
            reason: "NotFound".into(),
            ..Default::default()
        };
        let lag = "admission webhook \"mpod.kb.io\" denied the request: Namespace \"rf-kind-41836\" not found";
        assert!(webhook_lags_namespace(&status(404, lag)));
        // The namespace really is gone, the webhook refused for another reason, or another
        // kind of 404: answers to return, not to wait out.
        let answers = [
            (404, "namespaces \"rf\" not found"),
            (
                403,
                "admission webhook \"vpod.kb.io\" denied the request: Namespace \"rf\" not found",
            ),
            (
                404,
                "admission webhook \"mpod.kb.io\" denied the request: queue \"q\" not found",
            ),
            (404, "jobs.batch \"shot-0000\" not found"),
        ];
        for (code, message) in answers {
            assert!(!webhook_lags_namespace(&status(code, message)), "{message}");
        }
    }
}
