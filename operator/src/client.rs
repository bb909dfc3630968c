//! The operator's API client: kube's default stack with three layers more, in one place instead
//! of at each call site. One counts every write the operator sends by verb and resource
//! (`renderfarm_api_writes_total`); one refuses every write but the Lease's while this
//! replica's lease is not current ([`Fence`]), so a leader frozen mid-reconcile (SIGSTOP, a
//! paused VM) sends nothing of what it had left to do when it wakes after another took over;
//! and kube's retry of throttled and unavailable answers, moved above the fence so that every
//! attempt passes it. [`create`] is a create that waits out admission webhooks which have not
//! seen a new namespace.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::{Method, Request, header};
use kube::client::retry::RetryPolicy;
use kube::client::{Body, ClientBuilder};
use kube::{Client, Config};
use parking_lot::Mutex;
use tower::layer::util::Identity;
use tower::retry::RetryLayer;
use tower::util::{Either, MapRequestLayer};
use tower::{BoxError, Layer, Service};

use crate::Result;
use crate::leader::Fence;
// Shared with the kubectl plugin, which creates pods in namespaces it has just made too.
use crate::metrics::Metrics;
pub use renderfarm_api::create::{create, webhook_lags_namespace};

/// A client for `config` whose writes are counted in `metrics` and, with a `fence`, sent only
/// while this replica leads.
///
/// The stack, outermost first: counting, kube's retry (when `config` asks for it), the fence,
/// then kube's own (base URI, auth, the `requesting` trace line, hyper). The fence sits under
/// the retry so a retry that fires after a freeze is checked like a first attempt, and right
/// above kube's stack so that its check, kube's `requesting` line and hyper taking the request
/// happen in one poll, with no await between them that a freeze could fall into.
pub fn new(mut config: Config, metrics: Arc<Metrics>, fence: Option<Arc<Fence>>) -> Result<Client> {
    let retry = std::mem::replace(&mut config.default_retry, false);
    Ok(ClientBuilder::try_from(config)?
        .with_layer(&FenceLayer(fence))
        .with_layer(&retrying(retry))
        .with_layer(&counting(metrics))
        .build())
}

/// kube's default retry (429, 503 and 504 answers, with backoff), or none.
pub fn retrying(on: bool) -> Either<RetryLayer<RetryPolicy>, Identity> {
    tower::util::option_layer(on.then(|| RetryLayer::new(RetryPolicy::server_retry())))
}

/// The layer that refuses writes while the [`Fence`] is not current (none: never).
#[derive(Clone)]
pub struct FenceLayer(pub Option<Arc<Fence>>);

impl<S> Layer<S> for FenceLayer {
    type Service = Fenced<S>;

    fn layer(&self, inner: S) -> Fenced<S> {
        Fenced {
            inner: Arc::new(Mutex::new(inner)),
            fence: self.0.clone(),
        }
    }
}

/// The fence as a service. The fence is checked when the request's future is first polled,
/// not when it is made: kube's client makes the future in one task (its buffer's) and polls it
/// in another, and a freeze in between would otherwise send a write checked before it.
///
/// The service underneath is shared behind a lock, not cloned: kube's stack is a boxed service
/// that cannot be cloned. At the first poll the fence is checked, then, under the lock, the
/// service is polled ready and called at once, so readiness and call stay one (tower's
/// contract); a poll that finds it not ready checks the fence again at the next.
pub struct Fenced<S> {
    inner: Arc<Mutex<S>>,
    fence: Option<Arc<Fence>>,
}

impl<S> Clone for Fenced<S> {
    fn clone(&self) -> Self {
        Fenced {
            inner: self.inner.clone(),
            fence: self.fence.clone(),
        }
    }
}

impl<S, B> Service<Request<B>> for Fenced<S>
where
    S: Service<Request<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<S::Response, BoxError>>;

    /// Always ready: the service underneath is polled ready at the request's first poll.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let inner = self.inner.clone();
        let fence = self
            .fence
            .clone()
            .filter(|_| write_of(&req).is_some_and(|(_, resource)| resource != "leases"));
        let mut req = Some(req);
        Box::pin(async move {
            let sent = futures::future::poll_fn(|cx| {
                if let Some(fence) = &fence
                    && let Err(e) = fence.check()
                {
                    return Poll::Ready(Err(BoxError::from(e)));
                }
                let mut svc = inner.lock();
                if let Err(e) = futures::ready!(svc.poll_ready(cx)) {
                    return Poll::Ready(Err(e.into()));
                }
                match req.take() {
                    Some(req) => Poll::Ready(Ok(svc.call(req))),
                    // poll_fn is not polled again once ready: not reached.
                    None => Poll::Ready(Err(BoxError::from("fenced request polled after sending"))),
                }
            })
            .await?;
            sent.await.map_err(Into::into)
        })
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

    type Mock = tower_test::mock::Mock<Request<Body>, http::Response<Body>>;
    /// What a mock API server received, `METHOD path` each, once every client is gone.
    type Received = tokio::task::JoinHandle<Vec<String>>;

    /// A mock API server that answers every request 200.
    fn mock_server() -> (Mock, Received) {
        let (mock, mut handle) = tower_test::mock::pair::<Request<Body>, http::Response<Body>>();
        let server = tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some((req, send)) = handle.next_request().await {
                seen.push(format!("{} {}", req.method(), req.uri().path()));
                send.send_response(http::Response::new(Body::empty()));
            }
            seen
        });
        (mock, server)
    }

    fn delete_job() -> Request<Body> {
        Request::delete("/apis/batch/v1/namespaces/ns/jobs/shot-0007")
            .body(Body::empty())
            .expect("request")
    }

    #[tokio::test]
    async fn the_fence_is_checked_when_the_request_is_first_polled_not_when_it_is_made() {
        use crate::leader::testing::{fence, lease};
        let fence = Arc::new(fence());
        let (mock, server) = mock_server();
        let mut svc = FenceLayer(Some(fence.clone())).layer(mock);

        // Made while this replica leads, first polled once another does (a freeze between
        // the two, as kube's buffer makes a request's future in one task and polls it in
        // another): refused, and never handed to the service underneath.
        fence.observe(Some(&lease("me", 0)));
        let made_while_leading = svc.ready().await.expect("ready").call(delete_job());
        fence.observe(Some(&lease("other", 0)));
        let got = made_while_leading.await;
        let err = got.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err.contains("not current"),
            "sent after the lease was lost: {err:?}"
        );

        // And the other way round: made while not leading, polled once leading again.
        let made_while_not = svc.ready().await.expect("ready").call(delete_job());
        fence.observe(Some(&lease("me", 0)));
        made_while_not.await.expect("sent while leading");

        drop(svc);
        let seen = server.await.expect("mock server");
        assert_eq!(
            seen,
            ["DELETE /apis/batch/v1/namespaces/ns/jobs/shot-0007"],
            "only the request polled while leading reached the API server"
        );
    }

    #[tokio::test]
    async fn a_retry_due_after_the_lease_ran_out_is_not_sent() {
        use crate::leader::testing::{fence, lease};
        use std::sync::atomic::{AtomicUsize, Ordering};
        let fence = Arc::new(fence());
        fence.observe(Some(&lease("me", 0)));
        // An API server that answers the first request 503, which kube retries; by the time
        // of the retry another replica holds the lease.
        let (lapse, received) = (fence.clone(), Arc::new(AtomicUsize::new(0)));
        let count = received.clone();
        let app = axum::Router::new().fallback(move || {
            let first = count.fetch_add(1, Ordering::SeqCst) == 0;
            lapse.observe(Some(&lease("other", 0)));
            async move {
                match first {
                    true => http::StatusCode::SERVICE_UNAVAILABLE,
                    false => http::StatusCode::OK,
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let config = Config::new(url.parse().expect("url"));
        assert!(
            config.default_retry,
            "kube retries by default: what this checks"
        );

        let client = new(config, Arc::new(Metrics::default()), Some(fence)).expect("client");
        let got = client.send(delete_job()).await;
        let err = got.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err.contains("not current"),
            "the retry was not fenced: {err:?}"
        );
        assert_eq!(
            received.load(Ordering::SeqCst),
            1,
            "the retry reached the API server"
        );
    }
}
