//! The waits against a fake API server: one ConfigMap whose value a watch changes.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Result, anyhow, bail, ensure};
use http::{Request, Response, StatusCode};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

use super::*;

const NAME: &str = "cm";

fn config_map(value: &str, version: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": NAME, "namespace": "ns", "resourceVersion": version},
           "data": {"v": value}})
}

fn answer(code: StatusCode, body: Value) -> Response<Body> {
    let mut res = Response::new(Body::from(body.to_string().into_bytes()));
    *res.status_mut() = code;
    res
}

/// A fake API server of one ConfigMap `cm`: a list shows it with `v` = 1, the first watch
/// changes it to 2, later watches end with nothing new. The first `failing` requests are
/// answered 500 (an API server going away). Returns the client and the count of requests.
fn fake(failing: usize) -> (Client, Arc<AtomicUsize>) {
    let served = Arc::new(AtomicUsize::new(0));
    let watches = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    let service = tower::service_fn(move |req: Request<Body>| {
        let n = count.fetch_add(1, Ordering::SeqCst);
        let watch = req.uri().query().unwrap_or_default().contains("watch=true");
        let first_watch = watch && watches.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            if n < failing {
                let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Failure", "message": "going away", "reason": "InternalError",
                    "code": 500});
                return Ok::<_, Infallible>(answer(StatusCode::INTERNAL_SERVER_ERROR, status));
            }
            if !watch {
                let list = json!({"apiVersion": "v1", "kind": "ConfigMapList",
                    "metadata": {"resourceVersion": "1"}, "items": [config_map("1", "1")]});
                return Ok(answer(StatusCode::OK, list));
            }
            if first_watch {
                let event = json!({"type": "MODIFIED", "object": config_map("2", "2")});
                return Ok(Response::new(Body::from(format!("{event}\n").into_bytes())));
            }
            // A watch that ends with nothing new, a little later (the client watches again).
            sleep(Duration::from_millis(50)).await;
            Ok(Response::new(Body::empty()))
        }
    });
    (Client::new(service, "ns"), served)
}

fn value(cm: &ConfigMap) -> &str {
    cm.data
        .as_ref()
        .and_then(|d| d.get("v"))
        .map_or("", String::as_str)
}

fn api(client: Client) -> Api<ConfigMap> {
    Api::namespaced(client, "ns")
}

/// The object as the watch changed it, not as first listed (which does not pass).
#[tokio::test]
async fn await_existing_returns_the_object_once_its_condition_holds() -> Result<()> {
    let (client, _) = fake(0);
    let seen = std::sync::Mutex::new(Vec::new());
    let cm = await_existing(api(client), NAME, Duration::from_secs(10), "v 2", |cm| {
        if let Ok(mut seen) = seen.lock() {
            seen.push(value(cm).to_string());
        }
        value(cm) == "2"
    })
    .await?;
    ensure!(value(&cm) == "2", "returned {cm:?}");
    let seen = seen.lock().map_err(|e| anyhow!("{e}"))?.clone();
    ensure!(seen == ["1", "2"], "the condition saw {seen:?}");
    Ok(())
}

/// Two failed requests (the list, then the list again) do not end the wait: the watch is
/// started again until the condition holds.
#[tokio::test]
async fn await_object_watches_again_after_its_watch_failed() -> Result<()> {
    let (client, served) = fake(2);
    let holds = |cm: Option<&ConfigMap>| cm.is_some_and(|cm| value(cm) == "2");
    let cm = await_object(api(client), NAME, Duration::from_secs(10), "v 2", holds).await?;
    ensure!(cm.as_ref().map(value) == Some("2"), "returned {cm:?}");
    let n = served.load(Ordering::SeqCst);
    ensure!(
        n >= 4,
        "{n} requests: 2 failed, a list and a watch after them"
    );
    Ok(())
}

/// A condition that never holds: the wait ends at its timeout, naming what it waited for.
#[tokio::test]
async fn await_existing_times_out_naming_what_it_waited_for() -> Result<()> {
    let (client, _) = fake(0);
    let timeout = Duration::from_millis(700);
    let started = Instant::now();
    let Err(err) = await_existing(api(client), NAME, timeout, "cm at v 3", |cm| {
        value(cm) == "3"
    })
    .await
    else {
        bail!("a condition that never holds was met");
    };
    ensure!(started.elapsed() < timeout * 3, "{:?}", started.elapsed());
    ensure!(
        matches!(err.downcast_ref(), Some(WaitError::TimedOut { what, .. }) if what == "cm at v 3"),
        "{err:?}"
    );
    ensure!(
        err.to_string()
            .starts_with("timed out after 700ms waiting for cm at v 3"),
        "{err}"
    );
    Ok(())
}

/// `check` sees the whole list first, then every change; its answer ends the wait.
#[tokio::test]
async fn watch_until_checks_the_list_then_every_change() -> Result<()> {
    let (client, _) = fake(0);
    let mut seen = Vec::new();
    let got = watch_until(api(client), Duration::from_secs(10), "v 2", |all| {
        let values: Vec<String> = all.iter().map(|cm| value(cm).to_string()).collect();
        seen.push(values.join(","));
        all.iter()
            .find(|cm| value(cm) == "2")
            .map(|cm| cm.name_any())
    })
    .await?;
    ensure!(got == NAME, "returned {got}");
    ensure!(seen == ["1", "2"], "check saw {seen:?}");
    Ok(())
}

/// The watch fails for good: the timeout says how many objects there were and the last error.
#[tokio::test]
async fn watch_until_times_out_with_the_last_watch_error() -> Result<()> {
    let (client, _) = fake(usize::MAX);
    let timeout = Duration::from_millis(700);
    let Err(err) = watch_until(api(client), timeout, "any cm", |all| {
        all.first().map(|_| ())
    })
    .await
    else {
        bail!("a watch that always fails saw an object");
    };
    let text = err.to_string();
    ensure!(
        text.starts_with("timed out after 700ms waiting for any cm (0 objects at the end")
            && text.contains("going away"),
        "{text}"
    );
    Ok(())
}

/// An error and a `None` are asked again; the first `Some` ends the wait.
#[tokio::test]
async fn wait_until_asks_again_until_some() -> Result<()> {
    let asked = AtomicUsize::new(0);
    let got = wait_until(Duration::from_secs(10), "the third answer", || async {
        match asked.fetch_add(1, Ordering::SeqCst) {
            0 => Err(anyhow!("not up yet")),
            1 => Ok(None),
            n => Ok(Some(n)),
        }
    })
    .await?;
    ensure!(got == 2, "returned {got}");
    ensure!(asked.load(Ordering::SeqCst) == 3);
    Ok(())
}

/// Never `Some`: the timeout names what it waited for and the last error.
#[tokio::test]
async fn wait_until_times_out_with_the_last_error() -> Result<()> {
    let asked = AtomicUsize::new(0);
    let timeout = Duration::from_millis(500);
    let Err(err) = wait_until(timeout, "a file", || async {
        let n = asked.fetch_add(1, Ordering::SeqCst);
        Err::<Option<()>, _>(anyhow!("no file after {} tries", n + 1))
    })
    .await
    else {
        bail!("a check that always fails succeeded");
    };
    let n = asked.load(Ordering::SeqCst);
    ensure!(n >= 2, "asked {n} times in {timeout:?}");
    let text = err.to_string();
    ensure!(
        text.starts_with("timed out after 500ms waiting for a file")
            && text.contains(&format!("no file after {n} tries")),
        "{text}"
    );
    Ok(())
}
