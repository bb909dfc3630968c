//! The controller against a mock API server (tower-test): what it sends, and what it does
//! with what the server answers.

use super::*;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::client::{Body, ClientBuilder};
use kube::runtime::reflector::store::Writer;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tower_test::mock;

use crate::crd::RenderJobSpec;

const UID: &str = "dba0d389-0bbd-4f05-bccc-6193edea917c";

/// One request the mock API server received.
#[derive(Debug, Clone)]
struct Sent {
    method: String,
    path: String,
    query: String,
    content_type: String,
    body: Value,
}

impl Sent {
    fn is(&self, method: &str, path_end: &str) -> bool {
        self.method == method && self.path.ends_with(path_end)
    }
    fn event_reason(&self) -> Option<&str> {
        self.path
            .contains("/events")
            .then(|| self.body["reason"].as_str())
            .flatten()
    }
}

/// How the mock answers one request: a status code, and a body (`None`: echo the request's).
type Answer = Box<dyn Fn(&Sent) -> (StatusCode, Option<Value>) + Send + Sync>;

struct World {
    ctx: Arc<Context>,
    sent: Arc<Mutex<Vec<Sent>>>,
    _writers: (Writer<BatchJob>, Writer<BatchPod>),
}

fn renderjob(frames: i32, parallelism: i32) -> RenderJob {
    let spec: RenderJobSpec = serde_json::from_value(json!({
        "blendFile": "s.blend", "frames": {"start": 1, "end": frames}, "batchSize": 1,
        "parallelism": parallelism, "storage": {"claimName": "c"},
    }))
    .expect("spec");
    let mut rj = RenderJob::new("shot", spec);
    rj.metadata.namespace = Some("ns".into());
    rj.metadata.uid = Some(UID.into());
    rj.metadata.generation = Some(1);
    rj
}

/// A batch Job of "shot" as the API server returns it: running, or failed for good.
fn job(index: u32, failed: bool) -> Job {
    let mut v: Value =
        serde_json::from_str(include_str!("../../examples/fixtures/job.json")).expect("json");
    v["metadata"]["name"] = json!(crate::job::job_name("shot", index));
    v["metadata"]["namespace"] = json!("ns");
    v["metadata"]["labels"][crate::job::BATCH_LABEL] = json!(index.to_string());
    v["status"] = if failed {
        json!({"failed": 4, "startTime": "2026-11-23T11:02:09Z", "conditions": [
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
             "message": "Job has reached the specified backoff limit",
             "lastTransitionTime": "2026-11-23T11:03:09Z"}]})
    } else {
        json!({"active": 1, "startTime": "2026-11-23T11:02:09Z"})
    };
    serde_json::from_value(v).expect("job")
}

/// The mock API server: records every request and answers with `answer`.
fn world(jobs: Vec<Job>, answer: Answer) -> World {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let metrics = Arc::new(Metrics::default());
    let client = ClientBuilder::new(service, "default")
        .with_layer(&crate::client::counting(metrics.clone()))
        .build();
    let sent = Arc::new(Mutex::new(Vec::new()));
    tokio::spawn(serve(handle, answer, sent.clone()));

    let (job_store, mut jw) = reflector::store::<BatchJob>();
    let (pod_store, mut pw) = reflector::store::<BatchPod>();
    let (job_index, pod_index) = (
        Arc::new(crate::owners::ByRender::default()),
        Arc::new(crate::owners::ByRender::default()),
    );
    let mut job_events = vec![watcher::Event::Init];
    job_events.extend(
        jobs.into_iter()
            .map(|j| watcher::Event::InitApply(BatchJob::from(j))),
    );
    job_events.push(watcher::Event::InitDone);
    for e in &job_events {
        job_index.observe(e, super::job_owner);
        jw.apply_watcher_event(e);
    }
    for e in [watcher::Event::Init, watcher::Event::InitDone] {
        pod_index.observe(&e, super::pod_owner);
        pw.apply_watcher_event(&e);
    }
    let settings = Settings {
        job: JobConfig::new("renderfarm/render-node:test"),
        namespace: None,
        instance: Some("test".into()),
        fence: None,
    };
    let mut ctx = Context::new(client, settings, job_store, pod_store, metrics);
    (ctx.job_index, ctx.pod_index) = (job_index, pod_index);
    World {
        ctx: Arc::new(ctx),
        sent,
        _writers: (jw, pw),
    }
}

async fn serve(
    handle: mock::Handle<Request<Body>, Response<Body>>,
    answer: Answer,
    sent: Arc<Mutex<Vec<Sent>>>,
) {
    let mut handle = std::pin::pin!(handle);
    while let Some((req, respond)) = handle.next_request().await {
        let (parts, body) = req.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let s = Sent {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().unwrap_or_default().to_string(),
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        };
        let (code, reply) = answer(&s);
        let reply = match reply {
            Some(v) => v,
            None if code.is_success() => s.body.clone(),
            None => json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "message": "refused", "reason": "Invalid", "code": code.as_u16()}),
        };
        sent.lock().push(s);
        let response = Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(&reply).expect("json")))
            .expect("response");
        respond.send_response(response);
    }
}

/// Every request succeeds; a status write answers with the RenderJob and its new status.
fn accept_all() -> Answer {
    Box::new(|s: &Sent| {
        if s.method == "GET" && s.path.ends_with("/events") {
            let list =
                json!({"kind": "EventList", "apiVersion": "v1", "metadata": {}, "items": []});
            return (StatusCode::OK, Some(list));
        }
        if s.path.ends_with("/status") {
            let mut rj = serde_json::to_value(renderjob(3, 2)).expect("rj");
            rj["status"] = s.body["status"].clone();
            return (StatusCode::OK, Some(rj));
        }
        (StatusCode::OK, None)
    })
}

impl World {
    fn sent(&self) -> Vec<Sent> {
        self.sent.lock().clone()
    }
    fn clear(&self) {
        self.sent.lock().clear();
    }
    async fn reconcile(&self, rj: &RenderJob) -> Result<Action> {
        reconcile(Arc::new(rj.clone()), self.ctx.clone()).await
    }
}

#[tokio::test]
async fn job_applies_carry_our_field_manager_and_force() {
    let w = world(vec![], accept_all());
    let action = w.reconcile(&renderjob(3, 2)).await.expect("reconcile");
    let sent = w.sent();
    let applies: Vec<&Sent> = sent.iter().filter(|s| s.path.contains("/jobs/")).collect();
    assert_eq!(applies.len(), 2, "parallelism 2: {sent:#?}");
    for (s, index) in applies.iter().zip([0, 1]) {
        assert_eq!(s.method, "PATCH");
        assert_eq!(s.content_type, "application/apply-patch+yaml");
        assert!(
            s.query.contains("fieldManager=renderfarm-operator") && s.query.contains("force=true"),
            "{}",
            s.query
        );
        assert!(
            s.path.ends_with(&crate::job::job_name("shot", index)),
            "{}",
            s.path
        );
    }
    let status = sent
        .iter()
        .find(|s| s.is("PATCH", "/renderjobs/shot/status"));
    let status = status.expect("a status write");
    assert!(status.query.contains("fieldManager=renderfarm-operator"));
    assert_eq!(status.body["status"]["batches"]["active"], json!(2));
    let reasons: Vec<&str> = sent.iter().filter_map(Sent::event_reason).collect();
    assert_eq!(reasons, ["BatchesCreated"]);
    assert_ne!(action, Action::await_change());
    // Every write went through the counting layer.
    let text = w.ctx.metrics.encode();
    for line in [
        "renderfarm_api_writes_total{verb=\"apply\",resource=\"jobs\"} 2",
        "renderfarm_api_writes_total{verb=\"apply\",resource=\"renderjobs/status\"} 1",
        "renderfarm_api_writes_total{verb=\"create\",resource=\"events\"} 1",
        "renderfarm_batches_total{result=\"created\"} 2",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
    }
}

#[tokio::test]
async fn a_refused_apply_clears_the_in_flight_mark_and_a_server_error_keeps_it() {
    let refuse: Answer = Box::new(|s: &Sent| {
        if s.path.ends_with("shot-0000") {
            (StatusCode::UNPROCESSABLE_ENTITY, None)
        } else if s.path.ends_with("shot-0001") {
            (StatusCode::SERVICE_UNAVAILABLE, None)
        } else {
            (StatusCode::OK, None)
        }
    });
    let w = world(vec![], refuse);
    let err = w.reconcile(&renderjob(3, 2)).await;
    assert!(err.is_err(), "{err:?}");
    let state = w.ctx.states.get(UID);
    assert_eq!(state.in_flight.keys().copied().collect::<Vec<_>>(), [1]);
    let sent = w.sent();
    assert!(
        !sent
            .iter()
            .any(|s| s.path.ends_with("/status") || s.path.contains("/events")),
        "no status write and no Event after a failed apply: {sent:#?}"
    );
    // The failure counts towards the backoff, and the next delay grows with it.
    error_policy(
        Arc::new(renderjob(3, 2)),
        &Error::MissingObjectKey("x"),
        w.ctx.clone(),
    );
    assert_eq!(w.ctx.states.get(UID).failures, 1);
}

#[tokio::test]
async fn a_renderjob_gone_at_the_status_write_is_not_an_error() {
    let gone: Answer = Box::new(|s: &Sent| {
        if s.path.ends_with("/status") {
            (StatusCode::NOT_FOUND, None)
        } else {
            (StatusCode::OK, None)
        }
    });
    let w = world(vec![], gone);
    w.reconcile(&renderjob(3, 2))
        .await
        .expect("a 404 on the status write is fine");
    assert!(w.sent().iter().any(|s| s.path.ends_with("/status")));
}

#[tokio::test]
async fn a_failed_batch_publishes_batch_failed_once() {
    let w = world(vec![job(0, true), job(1, false)], accept_all());
    let rj = renderjob(2, 2);
    w.reconcile(&rj).await.expect("first reconcile");
    let first = w.sent();
    let failed: Vec<&Sent> = first
        .iter()
        .filter(|s| s.event_reason() == Some("BatchFailed"))
        .collect();
    assert_eq!(failed.len(), 1, "{first:#?}");
    let note = failed[0].body["note"].as_str().unwrap_or_default();
    assert!(
        note.starts_with("Batch 0 (frames 1) failed after 4 attempt(s): BackoffLimitExceeded"),
        "{note}"
    );
    w.clear();
    // The cache has not caught up with our write yet: what we wrote is the baseline.
    w.reconcile(&rj).await.expect("second reconcile");
    let again = w.sent();
    assert!(
        again.is_empty(),
        "nothing changed, nothing sent: {again:#?}"
    );
}

#[tokio::test]
async fn a_reconcile_with_nothing_changed_makes_no_write() {
    let w = world(vec![job(0, false), job(1, false)], accept_all());
    let mut rj = renderjob(2, 2);
    w.reconcile(&rj).await.expect("first reconcile");
    let wrote = w
        .sent()
        .into_iter()
        .find(|s| s.path.ends_with("/status"))
        .expect("first reconcile writes the status");
    // A fresh process (nothing remembered) sees the same status in the RenderJob.
    rj.status = serde_json::from_value(wrote.body["status"].clone()).expect("status");
    w.ctx.states.retain(&HashSet::new());
    w.clear();
    let action = w.reconcile(&rj).await.expect("reconcile");
    // The Jobs have no pods in the cache: reading their Events is all it may do.
    let writes: Vec<Sent> = w.sent().into_iter().filter(|s| s.method != "GET").collect();
    assert!(writes.is_empty(), "{writes:#?}");
    assert_ne!(
        action,
        Action::await_change(),
        "a running render is looked at again"
    );
}

#[tokio::test]
async fn queued_jobs_are_created_not_applied_and_one_that_exists_counts_as_created() {
    let exists: Answer = Box::new(|s: &Sent| {
        if s.method == "POST" && s.body["metadata"]["name"] == "shot-0001" {
            let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": "jobs.batch \"shot-0001\" already exists", "reason": "AlreadyExists",
                "code": 409});
            return (StatusCode::CONFLICT, Some(status));
        }
        accept_all()(s)
    });
    let w = world(vec![], exists);
    let mut rj = renderjob(3, 2);
    rj.spec.queue_name = Some("artists".into());
    w.reconcile(&rj).await.expect("reconcile");
    let sent = w.sent();
    let creates: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.method == "POST" && s.path.ends_with("/jobs"))
        .collect();
    assert_eq!(creates.len(), 2, "{sent:#?}");
    for s in &creates {
        assert!(
            s.query.contains("fieldManager=renderfarm-operator"),
            "{}",
            s.query
        );
        assert_eq!(s.body["spec"]["suspend"], json!(true));
        assert_eq!(
            s.body["metadata"]["labels"][crate::job::QUEUE_LABEL],
            json!("artists")
        );
    }
    assert!(
        !sent
            .iter()
            .any(|s| s.method == "PATCH" && s.path.contains("/jobs/")),
        "a queued Job is never force-applied: {sent:#?}"
    );
    let status = sent
        .iter()
        .find(|s| s.is("PATCH", "/renderjobs/shot/status"))
        .expect("a status write");
    assert_eq!(status.body["status"]["batches"]["active"], json!(2));
    let conditions = status.body["status"]["conditions"].to_string();
    assert!(!conditions.contains("JobRejected"), "{conditions}");
}

/// [`accept_all`], and a Job patch answered with a Job.
fn accept_job_patches() -> Answer {
    Box::new(|s: &Sent| {
        if s.method == "PATCH" && s.path.contains("/jobs/") {
            let job = serde_json::to_value(job(0, false)).expect("job");
            return (StatusCode::OK, Some(job));
        }
        accept_all()(s)
    })
}

#[tokio::test]
async fn pause_and_resume_patches_mark_the_suspension_as_ours() {
    let mut paused = job(0, false);
    paused.spec.get_or_insert_default().suspend = Some(true);
    paused
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(crate::job::PAUSED_ANNOTATION.into(), "true".into());
    let mut held = job(1, false);
    held.spec.get_or_insert_default().suspend = Some(true);
    let w = world(vec![paused, held], accept_job_patches());
    let mut rj = renderjob(2, 2);
    w.reconcile(&rj).await.expect("reconcile");
    let patches: Vec<Sent> = w
        .sent()
        .into_iter()
        .filter(|s| s.method == "PATCH" && s.path.contains("/jobs/"))
        .collect();
    assert_eq!(
        patches.len(),
        1,
        "only the operator's own pause is lifted: {patches:#?}"
    );
    assert!(patches[0].path.ends_with("shot-0000"));
    assert_eq!(patches[0].body["spec"]["suspend"], json!(false));
    assert_eq!(
        patches[0].body["metadata"]["annotations"][crate::job::PAUSED_ANNOTATION],
        Value::Null
    );

    rj.spec.suspend = true;
    let w = world(vec![job(0, false)], accept_job_patches());
    w.reconcile(&rj).await.expect("reconcile");
    let patch = w
        .sent()
        .into_iter()
        .find(|s| s.method == "PATCH" && s.path.ends_with("shot-0000"))
        .expect("a suspend patch");
    assert_eq!(patch.body["spec"]["suspend"], json!(true));
    assert_eq!(
        patch.body["metadata"]["annotations"][crate::job::PAUSED_ANNOTATION],
        json!("true")
    );
}
