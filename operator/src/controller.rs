//! The controller: watches RenderJobs, their Jobs and pods, and applies what [`actions`] and
//! [`status`] decide. Everything here is glue; the decisions are pure functions.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::utils::ResetTimerBackoff;
use kube::runtime::watcher::ExponentialBackoff;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tracing::{debug, info, warn};

use crate::actions::Actions;
use crate::cache::{self, BatchJob, BatchPod};
use crate::crd::{Phase, RenderJob, RenderJobStatus};
use crate::events;
use crate::job::{self, JobConfig, MANAGED_BY, MANAGED_BY_LABEL};
use crate::metrics::Metrics;
use crate::pass::{self, Observation};
use crate::plan::Plan;
use crate::status::{self, BatchState};
use crate::{Error, Result};

/// The one field manager for everything the operator writes.
pub const MANAGER: &str = "renderfarm-operator";
/// How long a created Job may stay unseen in the cache before it stops counting as in flight.
const IN_FLIGHT_TTL: Duration = Duration::from_secs(60);
/// The same after the server answered the apply with a 5xx: it may have created the Job all
/// the same (a timeout after the write), which the watch shows within this; most often it did
/// not (a webhook or etcd failed), and the batch is tried again soon after the fault ends.
const IN_FLIGHT_AFTER_5XX: Duration = Duration::from_secs(5);
/// The longest wait before a failed reconcile runs again. Failures come fast while the API
/// server refuses writes (every watch event retries), so an uncapped doubling would leave a
/// render idle for minutes after an outage of seconds once no event comes any more.
const MAX_RETRY: Duration = Duration::from_secs(10);
/// Job applies one reconcile sends at once.
const CREATE_CONCURRENCY: usize = 8;
/// A status change that is not [`status::urgent`] (counts, progress, messages) waits until
/// this long after the last status write, so a render writes its status about once a second
/// instead of once per pod change.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// What the operator is told on its command line.
#[derive(Debug, Clone)]
pub struct Settings {
    pub job: JobConfig,
    /// Watch only this namespace (all when `None`).
    pub namespace: Option<String>,
    /// Name of this instance in Events (the pod name).
    pub instance: Option<String>,
    /// With leader election: writes only while the lease is current.
    pub fence: Option<Arc<crate::leader::Fence>>,
}

pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub jobs: Store<BatchJob>,
    pub pods: Store<BatchPod>,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    /// Batches created and not reported in a `BatchesCreated` Event yet, by RenderJob UID.
    created: Mutex<HashMap<String, events::Created>>,
    /// Batches created but not seen in the Job cache yet, by RenderJob UID: until when each
    /// counts as in flight.
    in_flight: Mutex<HashMap<String, BTreeMap<u32, Instant>>>,
    /// Consecutive failures per RenderJob, for backoff.
    failures: Mutex<HashMap<ObjectRef<RenderJob>, u32>>,
    /// The status this process last wrote, by RenderJob UID. The cache can lag behind our own
    /// writes; comparing against what we wrote keeps metrics and Events from counting a change
    /// twice.
    written: Mutex<HashMap<String, (RenderJobStatus, Instant)>>,
}

impl Context {
    /// Every write asks first: with leader election, it may go out only while this replica's
    /// lease is current.
    fn may_write(&self) -> Result<()> {
        match &self.settings.fence {
            Some(fence) => fence.check(),
            None => Ok(()),
        }
    }

    /// Drops what the per-RenderJob maps hold for RenderJobs that are gone.
    fn forget_gone(&self, uids: &std::collections::HashSet<String>) {
        if let Ok(mut m) = self.written.lock() {
            m.retain(|uid, _| uids.contains(uid));
        }
        if let Ok(mut m) = self.created.lock() {
            m.retain(|uid, _| uids.contains(uid));
        }
        if let Ok(mut m) = self.in_flight.lock() {
            m.retain(|uid, _| uids.contains(uid));
        }
    }
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Watch retry delays: from half a second up to 5 s (kube's default climbs to 30 s), so the
/// operator is back within seconds of an API server restart.
fn watch_backoff() -> ResetTimerBackoff<ExponentialBackoff> {
    let exponential = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(5))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times();
    ResetTimerBackoff::new(exponential.into(), Duration::from_secs(60))
}

/// Run the controller until a shutdown signal.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
) -> Result<()> {
    let ns = settings.namespace.clone();
    let selector = format!("{MANAGED_BY_LABEL}={MANAGED_BY}");
    let renderjobs: Api<RenderJob> = api(&client, ns.as_deref());
    // Fail early and clearly when the CRD is not installed.
    renderjobs
        .list(&kube::api::ListParams::default().limit(1))
        .await?;

    // The caches keep a small summary of each Job and pod (see `cache`), not the objects.
    let (jobs, job_writer) = reflector::store::<BatchJob>();
    let job_triggers = reflector::reflector(
        job_writer,
        watcher(
            api::<Job>(&client, ns.as_deref()),
            watcher::Config::default().labels(&selector),
        )
        .default_backoff()
        .map_ok(cache::compact),
    )
    .touched_objects()
    .filter_map(|job: Result<BatchJob, _>| async move {
        // A Job triggers its RenderJob (its controller owner).
        let job = job.inspect_err(|e| debug!(error = %e, "job watch")).ok()?;
        Some(ObjectRef::new(&job.owner?.name).within(job.namespace.as_deref()?))
    });
    let (pods, pod_writer) = reflector::store::<BatchPod>();
    let pod_triggers = reflector::reflector(
        pod_writer,
        watcher(
            api::<Pod>(&client, ns.as_deref()),
            watcher::Config::default().labels(&selector),
        )
        .default_backoff()
        .map_ok(cache::compact),
    )
    .touched_objects()
    .filter_map(|pod: Result<BatchPod, _>| async move {
        // A pod triggers the RenderJob its annotation names.
        let pod = pod.inspect_err(|e| debug!(error = %e, "pod watch")).ok()?;
        Some(ObjectRef::new(pod.renderjob.as_deref()?).within(pod.namespace.as_deref()?))
    });

    let reporter = Reporter {
        controller: MANAGER.into(),
        instance: settings.instance.clone(),
    };
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client: client.clone(),
        settings,
        jobs: jobs.clone(),
        pods: pods.clone(),
        metrics: metrics.clone(),
        in_flight: Mutex::default(),
        created: Mutex::default(),
        failures: Mutex::default(),
        written: Mutex::default(),
    });

    let controller = Controller::new(renderjobs, watcher::Config::default().any_semantic())
        .trigger_backoff(watch_backoff())
        .reconcile_on(job_triggers)
        .reconcile_on(pod_triggers)
        .shutdown_on_signal();
    let renderjob_store = controller.store();

    // Ready once every cache holds a full list: only then can no batch be created twice.
    {
        let task_ctx = ctx.clone();
        let (rs, js, ps, ready, metrics) = (
            renderjob_store.clone(),
            jobs,
            pods,
            ready.clone(),
            metrics.clone(),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            let mut ticks: u32 = 0;
            loop {
                tick.tick().await;
                if !ready.load(Ordering::Relaxed) && synced(&rs) && synced(&js) && synced(&ps) {
                    info!("caches synced");
                    ready.store(true, Ordering::Relaxed);
                }
                ticks = ticks.wrapping_add(1);
                if ticks.is_multiple_of(25) {
                    let uids: std::collections::HashSet<String> =
                        rs.state().iter().filter_map(|rj| rj.uid()).collect();
                    task_ctx.forget_gone(&uids);
                    metrics.set_phases(
                        rs.state()
                            .iter()
                            .map(|rj| rj.status.as_ref().map(|s| s.phase).unwrap_or_default()),
                    );
                }
            }
        });
    }

    info!(
        namespace = ns.as_deref().unwrap_or("<all>"),
        "controller starting"
    );
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => debug!(renderjob = %obj, "reconciled"),
                Err(e) => debug!(error = %e, "reconcile failed"),
            }
        })
        .await;
    ready.store(false, Ordering::Relaxed);
    info!("controller stopped");
    Ok(())
}

/// Whether a cache has received its first full list. (Polled: awaiting `wait_until_ready`
/// before the list arrives was seen never to wake.)
fn synced<K>(store: &Store<K>) -> bool
where
    K: reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    use futures::FutureExt;
    store.wait_until_ready().now_or_never().is_some()
}

fn error_policy(rj: Arc<RenderJob>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .reconcile_errors
        .get_or_create(&crate::metrics::ErrorLabels {
            error: error.metric_label().into(),
        })
        .inc();
    // Not writing while the lease is not current: the next renewal makes it current within
    // the grace period, or the lease is lost and the process exits. No backoff to build up.
    if matches!(error, Error::Leader(_)) {
        debug!(renderjob = %rj.name_any(), error = %error, "reconcile waits for the lease");
        return Action::requeue(Duration::from_millis(500));
    }
    let n = ctx
        .failures
        .lock()
        .map(|mut f| {
            let n = f.entry(ObjectRef::from_obj(rj.as_ref())).or_insert(0);
            *n = n.saturating_add(1);
            *n
        })
        .unwrap_or(1);
    let delay = Duration::from_millis(500u64.saturating_mul(1 << n.min(10))).min(MAX_RETRY);
    warn!(renderjob = %rj.name_any(), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

async fn publish(ctx: &Context, rj: &RenderJob, type_: EventType, reason: &str, note: String) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: reason.into(),
        secondary: None,
    };
    if let Err(e) = ctx.may_write() {
        debug!(renderjob = %rj.name_any(), error = %e, "event not published");
        return;
    }
    ctx.metrics.write("create", "events");
    if let Err(e) = ctx.recorder.publish(&event, &rj.object_ref(&())).await {
        warn!(renderjob = %rj.name_any(), error = %e, "could not publish event");
    }
}

/// One pass: create the next batch Jobs, suspend or resume, write status, clean up.
async fn reconcile(rj: Arc<RenderJob>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let result = reconcile_inner(&rj, &ctx).await;
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    if result.is_ok()
        && let Ok(mut f) = ctx.failures.lock()
    {
        f.remove(&ObjectRef::from_obj(rj.as_ref()));
    }
    result
}

async fn reconcile_inner(rj: &RenderJob, ctx: &Context) -> Result<Action> {
    let name = rj.name_any();
    let ns = rj
        .namespace()
        .ok_or(Error::MissingObjectKey("metadata.namespace"))?;
    let uid = rj.uid().ok_or(Error::MissingObjectKey("metadata.uid"))?;
    if rj.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    // Never decide on a half-filled cache: that is how batches get created twice.
    if !synced(&ctx.jobs) || !synced(&ctx.pods) {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let now = Time(Timestamp::now());
    let rjs: Api<RenderJob> = Api::namespaced(ctx.client.clone(), &ns);

    let Some(plan) = Plan::new(&rj.spec.frames, rj.spec.batch_size) else {
        let new = status::invalid(rj, "frames and batchSize do not make a plan", &now);
        if rj.status.as_ref() != Some(&new) {
            write_status(&rjs, &name, &new, ctx).await?;
            publish(
                ctx,
                rj,
                EventType::Warning,
                "InvalidSpec",
                "frames and batchSize do not make a plan".into(),
            )
            .await;
        }
        return Ok(Action::await_change());
    };

    let owned_jobs = ctx.jobs.state_filter(|j| pass::owned_by(j, &uid));
    let owned_pods = ctx.pods.state_filter(|p| pass::pod_of(p, &ns, &name));
    // What we last wrote is newer than the cache when the cache lags behind our own write.
    let written = ctx.written.lock().ok().and_then(|w| w.get(&uid).cloned());
    let written_at = written.as_ref().map(|(_, at)| *at);
    let old = written
        .map(|(status, _)| status)
        .or_else(|| rj.status.clone())
        .unwrap_or_default();
    let seen = Observation::new(&name, plan, &old, &owned_jobs, &owned_pods);

    let in_flight: BTreeSet<u32> = {
        let mut all = ctx
            .in_flight
            .lock()
            .map_err(|_| Error::Config("in-flight lock poisoned".into()))?;
        let mine = all.entry(uid.clone()).or_default();
        let now = Instant::now();
        mine.retain(|i, until| !seen.jobs.contains_key(i) && now < *until);
        mine.keys().copied().collect()
    };
    let (todo, new) = seen.decide(rj, &old, &in_flight, &now);
    apply_actions(rj, &ns, &uid, &plan, &todo, ctx).await?;
    // Creations, this reconcile's and any not reported yet, as an Event when one is due.
    let (note, report_in) = ctx
        .created
        .lock()
        .map(|mut all| match all.get_mut(&uid) {
            Some(c) => {
                let note = c.note(Instant::now(), new.batches.pending == 0, &name, &plan);
                (note, c.due_in(Instant::now()))
            }
            None => (None, None),
        })
        .unwrap_or_default();
    if let Some(note) = note {
        publish(ctx, rj, EventType::Normal, "BatchesCreated", note).await;
    }
    // Counts and messages wait for the next write, a second at most; transitions do not.
    let status_in = written_at
        .map(|at| STATUS_EVERY.saturating_sub(at.elapsed()))
        .filter(|wait| old != new && !wait.is_zero() && !status::urgent(&old, &new));
    if old != new && status_in.is_none() {
        write_status(&rjs, &name, &new, ctx).await?;
        if let Ok(mut w) = ctx.written.lock() {
            w.insert(uid.clone(), (new.clone(), Instant::now()));
        }
        record_progress(rj, &old, &new, &seen.recorded, &seen.jobs, ctx).await;
    }

    let busy = matches!(new.phase, Phase::Running | Phase::Pending) || !todo.is_empty();
    // Come back when a status write or the creations not reported yet are due, or when a
    // batch's in-flight mark runs out: a Job apply cut off by a lost connection leaves its batch
    // marked, and once the mark is gone no watch event may come to say that the batch still
    // needs its Job.
    let wake = [status_in, report_in, in_flight_expiry(ctx, &uid)]
        .into_iter()
        .flatten()
        .min();
    Ok(match wake {
        Some(due) => {
            Action::requeue(due.clamp(Duration::from_millis(100), Duration::from_secs(300)))
        }
        None if busy => Action::requeue(Duration::from_secs(300)),
        None => Action::await_change(),
    })
}

/// Time until the oldest in-flight mark of a RenderJob runs out, and a little more.
fn in_flight_expiry(ctx: &Context, uid: &str) -> Option<Duration> {
    let all = ctx.in_flight.lock().ok()?;
    all.get(uid)?
        .values()
        .map(|until| until.saturating_duration_since(Instant::now()) + Duration::from_millis(100))
        .min()
}

async fn apply_actions(
    rj: &RenderJob,
    ns: &str,
    uid: &str,
    plan: &Plan,
    todo: &Actions,
    ctx: &Context,
) -> Result<()> {
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let mut manifests = Vec::new();
    for index in &todo.create {
        if let Some(batch) = plan.batch(*index) {
            manifests.push((*index, job::build(rj, &batch, &ctx.settings.job, false)?));
        }
    }
    // Remember them before the calls: a crash or timeout after the server acted must not let
    // a stale cache start a second Job (the deterministic name makes a retry a no-op).
    if let Ok(mut all) = ctx.in_flight.lock() {
        let mine = all.entry(uid.to_string()).or_default();
        for (index, _) in &manifests {
            mine.insert(*index, Instant::now() + IN_FLIGHT_TTL);
        }
    }
    let ssa = PatchParams::apply(MANAGER).force();
    let results: Vec<(u32, Result<Job>)> = futures::stream::iter(manifests)
        .map(|(index, manifest)| {
            let (jobs, ssa) = (&jobs, &ssa);
            async move {
                let name = manifest.name_any();
                if let Err(e) = ctx.may_write() {
                    return (index, Err(e));
                }
                ctx.metrics.write("apply", "jobs");
                let res = jobs.patch(&name, ssa, &Patch::Apply(&manifest)).await;
                (index, res.map_err(Error::from))
            }
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .collect()
        .await;
    let mut created = BTreeSet::new();
    let mut failed = None;
    for (index, result) in results {
        match result {
            Ok(_) => {
                created.insert(index);
            }
            Err(e) => {
                let code = match &e {
                    Error::Kube(kube::Error::Api(a)) => Some(a.code),
                    _ => None,
                };
                // Refused by the server, or not sent at all: no Job was created, so the batch
                // is not in flight. A 5xx: the Job may exist, but most likely does not, so
                // the mark stays briefly. A timeout keeps it: the Job may exist.
                let sent = !matches!(e, Error::Leader(_));
                if let Ok(mut all) = ctx.in_flight.lock() {
                    let mine = all.entry(uid.to_string()).or_default();
                    match code {
                        Some(c) if c < 500 => {
                            mine.remove(&index);
                        }
                        Some(_) => {
                            if let Some(until) = mine.get_mut(&index) {
                                *until = (*until).min(Instant::now() + IN_FLIGHT_AFTER_5XX);
                            }
                        }
                        None if !sent => {
                            mine.remove(&index);
                        }
                        None => {}
                    }
                }
                failed.get_or_insert(e);
            }
        }
    }
    if !created.is_empty() {
        ctx.metrics.batch("created", created.len() as u64);
        info!(renderjob = %rj.name_any(), batches = %status::encode_ranges(&created), "created batch jobs");
        if let Ok(mut all) = ctx.created.lock() {
            all.entry(uid.to_string()).or_default().add(created);
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    for (names, suspend) in [(&todo.suspend, true), (&todo.resume, false)] {
        for job_name in names {
            let patch = serde_json::json!({"spec": {"suspend": suspend}});
            ctx.may_write()?;
            ctx.metrics.write("patch", "jobs");
            jobs.patch(job_name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
    }
    for job_name in &todo.delete {
        ctx.may_write()?;
        ctx.metrics.write("delete", "jobs");
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        match jobs.delete(job_name, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

async fn write_status(
    rjs: &Api<RenderJob>,
    name: &str,
    status: &RenderJobStatus,
    ctx: &Context,
) -> Result<()> {
    let patch = serde_json::json!({
        "apiVersion": "renderfarm.io/v1alpha1",
        "kind": "RenderJob",
        "status": status,
    });
    ctx.may_write()?;
    ctx.metrics.write("apply", "renderjobs/status");
    match rjs
        .patch_status(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        // Deleted meanwhile: nothing left to report on.
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Metrics and Events for what changed between two statuses.
async fn record_progress(
    rj: &RenderJob,
    old: &RenderJobStatus,
    new: &RenderJobStatus,
    // `old.succeeded_batches`, already decoded by the caller.
    before: &BTreeSet<u32>,
    jobs: &BTreeMap<u32, &BatchJob>,
    ctx: &Context,
) {
    let m = &ctx.metrics;
    let newly_succeeded = (new.batches.succeeded - old.batches.succeeded).max(0) as u64;
    m.batch("succeeded", newly_succeeded);
    m.frames_rendered
        .inc_by((new.frames.rendered - old.frames.rendered).max(0) as u64);
    for (index, job) in jobs {
        if before.contains(index) || status::job_state(job) != BatchState::Succeeded {
            continue;
        }
        if let (Some(a), Some(b)) = (&job.start_time, &job.completion_time) {
            m.batch_duration
                .observe(b.0.duration_since(a.0).as_secs_f64());
        }
    }
    let known: BTreeSet<i64> = old.failed_batches.iter().map(|f| f.index).collect();
    for f in new
        .failed_batches
        .iter()
        .filter(|f| !known.contains(&f.index))
    {
        m.batch("failed", 1);
        let exit = f
            .exit_code
            .map(|c| format!(", exit code {c}"))
            .unwrap_or_default();
        let why = f
            .message
            .as_deref()
            .map(|s| format!(": {s}"))
            .unwrap_or_default();
        let note = format!(
            "Batch {} (frames {}) failed after {} attempt(s): {}{exit}{why}",
            f.index, f.frames, f.attempts, f.reason
        );
        publish(ctx, rj, EventType::Warning, "BatchFailed", note).await;
    }
    // Leaving Suspended is a resume whatever comes next: the pods may not have started yet
    // (Pending), or the last batches may have finished meanwhile (Succeeded).
    if old.phase == Phase::Suspended && new.phase != Phase::Suspended {
        publish(
            ctx,
            rj,
            EventType::Normal,
            "Resumed",
            "Render resumed".into(),
        )
        .await;
    }
    if old.phase != new.phase {
        let (type_, reason, note) = match new.phase {
            Phase::Succeeded => (
                EventType::Normal,
                "RenderComplete",
                format!("All {} frames rendered", new.frames.total),
            ),
            Phase::Failed => (
                EventType::Warning,
                "RenderFailed",
                format!(
                    "{} of {} batches failed; delete a failed batch's Job to retry its frames",
                    new.batches.failed, new.batches.total
                ),
            ),
            Phase::Suspended => (
                EventType::Normal,
                "Suspended",
                "Render suspended; running batches stopped".into(),
            ),
            Phase::Running if old.phase == Phase::Suspended => return,
            Phase::Running => (
                EventType::Normal,
                "Rendering",
                "First batch pod is running".into(),
            ),
            Phase::Pending => return,
        };
        publish(ctx, rj, type_, reason, note).await;
    }
}
