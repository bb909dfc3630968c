//! The controller against a mock API server (tower-test): what it sends, and what it does
//! with what the server answers.

use super::*;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::client::{Body, ClientBuilder};
use kube::runtime::reflector::store::Writer;
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::collections::BTreeSet;
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

/// Which requests the mock answers with no answer at all: the connection drops.
type Cut = Box<dyn Fn(&Sent) -> bool + Send + Sync>;

/// The mock API server: records every request and answers with `answer`.
fn world(jobs: Vec<Job>, answer: Answer) -> World {
    world_cutting(jobs, answer, Box::new(|_| false))
}

/// [`world`], where the requests `cut` picks get no answer.
fn world_cutting(jobs: Vec<Job>, answer: Answer, cut: Cut) -> World {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let metrics = Arc::new(Metrics::default());
    let client = ClientBuilder::new(service, "default")
        .with_layer(&crate::client::counting(metrics.clone()))
        .build();
    let sent = Arc::new(Mutex::new(Vec::new()));
    tokio::spawn(serve(handle, answer, cut, sent.clone()));

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
    cut: Cut,
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
        if cut(&s) {
            sent.lock().push(s);
            let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
            respond.send_error(reset);
            continue;
        }
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

/// Two passes over a render of 3 batches, 2 at a time, whose first apply of batch 1 gets no
/// answer; a read of batch 1's Job finds it when `exists`. What the mock received in each.
async fn unanswered_then_read(exists: bool) -> (World, Vec<Sent>, Vec<Sent>) {
    let first_try = std::sync::atomic::AtomicBool::new(true);
    let cut: Cut = Box::new(move |s: &Sent| {
        s.is("PATCH", "/jobs/shot-0001") && first_try.swap(false, Ordering::Relaxed)
    });
    let read: Answer = Box::new(move |s: &Sent| {
        if s.is("GET", "/jobs/shot-0001") {
            if !exists {
                let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "message": "jobs.batch \"shot-0001\" not found", "reason": "NotFound",
                    "code": 404});
                return (StatusCode::NOT_FOUND, Some(status));
            }
            let job = serde_json::to_value(job(1, false)).expect("job");
            return (StatusCode::OK, Some(job));
        }
        accept_all()(s)
    });
    let w = world_cutting(vec![], read, cut);
    let rj = renderjob(3, 2);
    let err = w.reconcile(&rj).await;
    assert!(err.is_err(), "an unanswered apply fails the pass: {err:?}");
    assert_eq!(w.ctx.states.get(UID).unanswered, BTreeSet::from([1]));
    let first = w.sent();
    w.clear();
    w.reconcile(&rj).await.expect("second pass");
    let second = w.sent();
    assert!(w.ctx.states.get(UID).unanswered.is_empty());
    (w, first, second)
}

fn job_requests(sent: &[Sent]) -> Vec<String> {
    sent.iter()
        .filter(|s| s.path.contains("/jobs/"))
        .map(|s| {
            format!(
                "{} {}",
                s.method,
                s.path.rsplit('/').next().unwrap_or_default()
            )
        })
        .collect()
}

#[tokio::test]
async fn an_unanswered_apply_is_read_back_and_its_job_if_there_not_applied_again() {
    let (w, first, second) = unanswered_then_read(true).await;
    assert_eq!(
        job_requests(&first),
        ["PATCH shot-0000", "PATCH shot-0001"],
        "{first:#?}"
    );
    assert_eq!(
        job_requests(&second),
        ["GET shot-0001"],
        "read back, and there: not applied again"
    );
    // It counts as created, as an answered apply would have.
    let text = w.ctx.metrics.encode();
    let created = "renderfarm_batches_total{result=\"created\"} 2";
    assert!(text.lines().any(|l| l == created), "{text}");
    // In flight until the cache shows it; never read again.
    assert!(w.ctx.states.get(UID).in_flight.contains_key(&1));
    w.clear();
    w.reconcile(&renderjob(3, 2)).await.expect("third pass");
    assert_eq!(job_requests(&w.sent()), Vec::<String>::new());
}

#[tokio::test]
async fn an_unanswered_apply_whose_job_is_not_there_is_applied_once_more() {
    let (w, _, second) = unanswered_then_read(false).await;
    assert_eq!(
        job_requests(&second),
        ["GET shot-0001", "PATCH shot-0001"],
        "read back, not there: applied again, once"
    );
    let text = w.ctx.metrics.encode();
    for line in [
        // Three sent, the one cut off included; two created.
        "renderfarm_api_writes_total{verb=\"apply\",resource=\"jobs\"} 3",
        "renderfarm_batches_total{result=\"created\"} 2",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
    }
}

#[tokio::test]
async fn an_unanswered_apply_is_not_applied_again_while_it_cannot_be_read() {
    let first_try = std::sync::atomic::AtomicBool::new(true);
    // The API server goes away after the first apply of batch 1: nothing is answered.
    let cut: Cut = Box::new(move |s: &Sent| {
        s.path.ends_with("shot-0001")
            && (s.method == "GET" || first_try.swap(false, Ordering::Relaxed))
    });
    let w = world_cutting(vec![], accept_all(), cut);
    let rj = renderjob(3, 2);
    assert!(w.reconcile(&rj).await.is_err());
    w.clear();
    // Long after the in-flight time, still no answer to the read: no apply either.
    w.ctx.states.update(UID, |s| {
        for until in s.in_flight.values_mut() {
            *until = Instant::now();
        }
    });
    assert!(w.reconcile(&rj).await.is_err(), "the read failed");
    assert_eq!(job_requests(&w.sent()), ["GET shot-0001"]);
    assert_eq!(w.ctx.states.get(UID).unanswered, BTreeSet::from([1]));
}

/// A batch Job of "shot" that succeeded.
fn done_job(index: u32) -> Job {
    let mut j = serde_json::to_value(job(index, false)).expect("job");
    j["status"] = json!({"succeeded": 1, "startTime": "2026-11-23T11:02:09Z",
        "completionTime": "2026-11-23T11:02:11Z",
        "conditions": [{"type": "Complete", "status": "True"}]});
    serde_json::from_value(j).expect("job")
}

#[tokio::test]
async fn a_job_is_deleted_only_as_it_was_seen_and_a_conflict_waits_for_the_next_pass() {
    for conflict in [false, true] {
        let answer: Answer = Box::new(move |s: &Sent| {
            if conflict && s.method == "DELETE" {
                return (StatusCode::CONFLICT, None);
            }
            accept_all()(s)
        });
        let w = world(vec![done_job(0)], answer);
        let mut rj = renderjob(1, 1);
        rj.spec.cleanup.policy = crate::crd::CleanupPolicy::DeleteSucceeded;
        // The first pass records the success; the next deletes the Job.
        w.reconcile(&rj).await.expect("first pass");
        let got = w.reconcile(&rj).await;
        assert!(got.is_ok(), "a 409 is no error: {got:?}");
        let sent = w.sent();
        let delete = sent
            .iter()
            .find(|s| s.is("DELETE", "/jobs/shot-0000"))
            .expect("a delete");
        assert_eq!(
            delete.body["preconditions"],
            json!({"uid": "09337701-0a9c-4937-8cdf-ec15072d9597", "resourceVersion": "4687"}),
            "{:#?}",
            delete.body
        );
        assert_eq!(delete.body["propagationPolicy"], json!("Background"));
    }
}

fn watched_pod(phase: &str, ready: &str) -> BatchPod {
    let mut v: Value =
        serde_json::from_str(include_str!("../../examples/fixtures/pod.json")).expect("json");
    v["metadata"]["annotations"][crate::job::RENDERJOB_ANNOTATION] = json!("shot");
    v["status"]["phase"] = json!(phase);
    v["status"]["conditions"] = json!([{"type": "Ready", "status": ready}]);
    serde_json::from_value::<k8s_openapi::api::core::v1::Pod>(v)
        .expect("pod")
        .into()
}

#[test]
fn a_pod_change_its_summary_does_not_show_triggers_no_pass() {
    let running = watched_pod("Running", "False");
    let cached = Arc::new(running.clone());
    let was = |_: &BatchPod| Some(cached.clone());
    let pass = |event| trigger_of(&event, was, pod_owner, BatchPod::eq);
    // Its Ready condition turned True: nothing the operator keeps of it changed.
    assert_eq!(
        pass(watcher::Event::Apply(watched_pod("Running", "True"))),
        None
    );
    // It finished: a pass.
    let owner = pod_owner(&running).expect("owner");
    assert_eq!(
        pass(watcher::Event::Apply(watched_pod("Succeeded", "False"))),
        Some(owner.clone())
    );
    // Listed or deleted: always a pass.
    assert_eq!(
        pass(watcher::Event::Delete(running.clone())),
        Some(owner.clone())
    );
    assert_eq!(
        pass(watcher::Event::InitApply(running.clone())),
        Some(owner)
    );
    // Not seen before: a pass.
    let unseen = trigger_of(
        &watcher::Event::Apply(running),
        |_: &BatchPod| None::<Arc<BatchPod>>,
        pod_owner,
        BatchPod::eq,
    );
    assert!(unseen.is_some());
}

#[test]
fn batches_finishing_are_counted_by_their_completion_time() {
    let at = |secs: i64| Timestamp::from_second(1_800_000_000 + secs).expect("time");
    let done = |secs: Option<i64>| {
        Arc::new(BatchJob {
            completion_time: secs.map(|s| Time(at(s))),
            ..BatchJob::from(job(0, false))
        })
    };
    let jobs = vec![
        done(Some(0)),
        done(Some(59)),
        done(Some(60)),
        done(None),
        done(Some(61)),
    ];
    assert_eq!(
        finished_since(&jobs, at(60)),
        2,
        "at or after the window's start"
    );
    assert_eq!(
        finished_since(&jobs, at(0)),
        4,
        "never completed: not counted"
    );
    assert_eq!(finished_since(&[], at(0)), 0);
}
