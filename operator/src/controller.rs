//! The controller: watches RenderJobs, their batch Jobs and pods, and carries out what
//! [`reconcile::decide`] works out. Everything here is glue: the watches, the API calls and
//! what they answered; every decision is in the pure modules.

use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Event as CoreEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy,
};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::utils::ResetTimerBackoff;
use kube::runtime::watcher::ExponentialBackoff;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::{debug, info, instrument, warn};

use crate::cache::{self, BatchJob, BatchPod, Disruptions};
use crate::client::webhook_lags_namespace;
use crate::crd::{RenderJob, RenderJobStatus};
use crate::events::Note;
use crate::job::{
    self, JobConfig, MANAGED_BY, MANAGED_BY_LABEL, PAUSED_ANNOTATION, STOPPED_ANNOTATION,
};
use crate::metrics::Metrics;
use crate::nodewatch::{self, Nodes};
use crate::owners::ByRender;
use crate::ranges::encode_ranges;
use crate::reconcile::{self, Applied, Effects, Input, Progress};
use crate::state::{RenderState, States};
use crate::watched::{WatchedJob, WatchedPod};
use crate::{Error, Result, api_error};

/// The one field manager for everything the operator writes.
pub const MANAGER: &str = "renderfarm-operator";
/// Job applies one reconcile sends at once.
const CREATE_CONCURRENCY: usize = 8;

/// What the operator is told on its command line.
#[derive(Debug, Clone)]
pub struct Settings {
    pub job: JobConfig,
    /// Watch only this namespace (all when `None`).
    pub namespace: Option<String>,
    /// Name of this instance in Events (the pod name).
    pub instance: Option<String>,
    /// With leader election: writes wait until the lease seen is this replica's and current.
    pub fence: Option<Arc<crate::leader::Fence>>,
}

pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub jobs: Store<BatchJob>,
    pub pods: Store<BatchPod>,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    /// What the operator remembers of each RenderJob.
    pub states: States,
    /// Disrupted pods seen per batch Job, recorded by the pod watch.
    pub disruptions: Arc<Disruptions>,
    /// The cached Jobs' and pods' names by RenderJob: a reconcile reads only its own.
    pub job_index: Arc<ByRender>,
    pub pod_index: Arc<ByRender>,
    /// RenderJobs still going (neither finished nor being deleted), counted every second:
    /// they share the status write budget (see [`reconcile::status_every`]).
    pub active: AtomicUsize,
    /// Batch Jobs that completed within [`reconcile::FINISHING_WINDOW`], counted every 5 s:
    /// the status write budget grows with them.
    pub finished_lately: AtomicUsize,
    /// The cluster's nodes (see [`crate::nodewatch`]).
    pub nodes: Arc<Nodes>,
}

impl Context {
    pub fn new(
        client: Client,
        settings: Settings,
        jobs: Store<BatchJob>,
        pods: Store<BatchPod>,
        metrics: Arc<Metrics>,
    ) -> Context {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: settings.instance.clone(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            jobs,
            pods,
            metrics,
            states: States::default(),
            disruptions: Arc::default(),
            active: AtomicUsize::new(0),
            finished_lately: AtomicUsize::new(0),
            job_index: Arc::default(),
            pod_index: Arc::default(),
            nodes: Arc::default(),
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

/// A cache of the operator's batch objects of kind `K`, kept as their small summary `C`, and
/// the RenderJobs their changes concern (`owner`); `index` keeps their names by owner, and
/// `seen` looks at every object that passes. A change that leaves an object's summary as it
/// was (`unchanged`: a pod's Ready condition, its IP) triggers nothing: every decision is made
/// from the summaries, so a pass would decide what the last one did.
fn batch_watch<K, C>(
    client: &Client,
    namespace: Option<&str>,
    owner: fn(&C) -> Option<ObjectRef<RenderJob>>,
    unchanged: fn(&C, &C) -> bool,
    index: Arc<ByRender>,
    seen: impl Fn(&C) + Send + Sync + 'static,
) -> (
    Store<C>,
    impl Stream<Item = ObjectRef<RenderJob>> + Send + 'static,
)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned
        + Send
        + 'static,
    C: From<K> + reflector::Lookup<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let selector = format!("{MANAGED_BY_LABEL}={MANAGED_BY}");
    let (store, mut writer) = reflector::store::<C>();
    let before = store.clone();
    let triggers = watcher(
        api::<K>(client, namespace),
        watcher::Config::default().labels(&selector),
    )
    .default_backoff()
    .map_ok(cache::compact)
    .map_ok(move |event: watcher::Event<C>| {
        index.observe(&event, owner);
        if let watcher::Event::Apply(o) | watcher::Event::InitApply(o) | watcher::Event::Delete(o) =
            &event
        {
            seen(o);
        }
        // Looked up before the store takes the change in.
        let was = |o: &C| before.get(&ObjectRef::from_obj(o));
        let trigger = trigger_of(&event, was, owner, unchanged);
        writer.apply_watcher_event(&event);
        trigger
    })
    .filter_map(
        |trigger: Result<Option<ObjectRef<RenderJob>>, watcher::Error>| async move {
            trigger
                .inspect_err(|e| debug!(error = %e, "batch watch"))
                .ok()
                .flatten()
        },
    );
    (store, triggers)
}

/// The RenderJob a watch event calls a pass of, if any: the owner of an object listed, deleted
/// or changed, unless the change left its summary as the cache had it (`was`).
pub fn trigger_of<C, W: AsRef<C>>(
    event: &watcher::Event<C>,
    was: impl Fn(&C) -> Option<W>,
    owner: fn(&C) -> Option<ObjectRef<RenderJob>>,
    unchanged: fn(&C, &C) -> bool,
) -> Option<ObjectRef<RenderJob>> {
    match event {
        watcher::Event::Apply(o) => match was(o) {
            Some(was) if unchanged(was.as_ref(), o) => None,
            _ => owner(o),
        },
        watcher::Event::InitApply(o) | watcher::Event::Delete(o) => owner(o),
        watcher::Event::Init | watcher::Event::InitDone => None,
    }
}

/// A Job triggers its RenderJob (its controller owner).
pub fn job_owner(job: &BatchJob) -> Option<ObjectRef<RenderJob>> {
    Some(ObjectRef::new(&job.owner.as_ref()?.name).within(job.namespace.as_deref()?))
}

/// A pod triggers the RenderJob its annotation names.
pub fn pod_owner(pod: &BatchPod) -> Option<ObjectRef<RenderJob>> {
    Some(ObjectRef::new(pod.renderjob.as_deref()?).within(pod.namespace.as_deref()?))
}

/// Run the controller until a shutdown signal.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
) -> Result<()> {
    let ns = settings.namespace.clone();
    let renderjobs: Api<RenderJob> = api(&client, ns.as_deref());
    // Fail early and clearly when the CRD is not installed.
    renderjobs
        .list(&kube::api::ListParams::default().limit(1))
        .await?;

    // The caches keep a small summary of each Job and pod (see `cache`), not the objects, and
    // the watches decode only the fields it is made of (see `watched`).
    let disruptions = Arc::new(Disruptions::default());
    let (job_index, pod_index) = (Arc::<ByRender>::default(), Arc::<ByRender>::default());
    let (jobs, job_triggers) = batch_watch::<WatchedJob, BatchJob>(
        &client,
        ns.as_deref(),
        job_owner,
        // A Job's summary keeps its resource version, for the preconditions of a delete.
        |_, _| false,
        job_index.clone(),
        |_| {},
    );
    let recorder = disruptions.clone();
    let (pods, pod_triggers) = batch_watch::<WatchedPod, BatchPod>(
        &client,
        ns.as_deref(),
        pod_owner,
        BatchPod::eq,
        pod_index.clone(),
        move |p| recorder.record(p),
    );
    let mut ctx = Context::new(client, settings, jobs, pods, metrics);
    ctx.disruptions = disruptions;
    (ctx.job_index, ctx.pod_index) = (job_index, pod_index);
    tokio::spawn(nodewatch::watch(ctx.client.clone(), ctx.nodes.clone()));
    let ctx = Arc::new(ctx);

    let controller = Controller::new(renderjobs, watcher::Config::default().any_semantic())
        .trigger_backoff(watch_backoff())
        .reconcile_on(job_triggers)
        .reconcile_on(pod_triggers)
        .shutdown_on_signal();
    tokio::spawn(housekeeping(controller.store(), ctx.clone(), ready.clone()));

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

/// Ready once every cache holds a full list (only then can no batch be created twice); count
/// the renders going every tick; every 5 s, forget RenderJobs that are gone and count phases.
async fn housekeeping(renderjobs: Store<RenderJob>, ctx: Arc<Context>, ready: Arc<AtomicBool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut ticks: u32 = 0;
    loop {
        tick.tick().await;
        if !ready.load(Ordering::Relaxed)
            && synced(&renderjobs)
            && synced(&ctx.jobs)
            && synced(&ctx.pods)
        {
            info!("caches synced");
            ready.store(true, Ordering::Relaxed);
        }
        ticks = ticks.wrapping_add(1);
        // Every tick: a render submitted with others must see them at its first pass.
        let going = renderjobs
            .state()
            .iter()
            .filter(|rj| rj.metadata.deletion_timestamp.is_none() && !finished(rj))
            .count();
        ctx.active.store(going, Ordering::Relaxed);
        if ticks.is_multiple_of(25) {
            let all = renderjobs.state();
            let uids: HashSet<String> = all.iter().filter_map(|rj| rj.uid()).collect();
            ctx.states.retain(&uids);
            let jobs = ctx.jobs.state();
            let job_uids: HashSet<String> = jobs.iter().filter_map(|j| j.uid.clone()).collect();
            let since = Timestamp::now() - reconcile::FINISHING_WINDOW;
            ctx.finished_lately
                .store(finished_since(&jobs, since), Ordering::Relaxed);
            ctx.disruptions.retain(&job_uids);
            ctx.metrics.set_phases(
                all.iter()
                    .map(|rj| rj.status.as_ref().map(|s| s.phase).unwrap_or_default()),
            );
            ctx.metrics.nodes.set_renders(
                all.iter()
                    .filter_map(|rj| Some((ns_of(rj), rj.name_any(), rj.status.as_ref()?))),
            );
        }
    }
}

/// How many of `jobs` completed at or after `since`.
pub fn finished_since(jobs: &[Arc<BatchJob>], since: Timestamp) -> usize {
    jobs.iter()
        .filter(|j| j.completion_time.as_ref().is_some_and(|t| t.0 >= since))
        .count()
}

/// Whether the RenderJob's status says it is over.
fn finished(rj: &RenderJob) -> bool {
    use crate::crd::Phase;
    rj.status
        .as_ref()
        .is_some_and(|s| matches!(s.phase, Phase::Succeeded | Phase::Failed))
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

/// The longest wait before a failed reconcile runs again. Failures come fast while the API
/// server refuses writes (every watch event retries), so an uncapped doubling would leave a
/// render idle for minutes after an outage of seconds once no event comes any more.
const MAX_RETRY: Duration = Duration::from_secs(10);

/// Retry a failed reconcile after a jittered exponential delay, from 0.5 s up to [`MAX_RETRY`].
pub fn error_policy(rj: Arc<RenderJob>, error: &Error, ctx: Arc<Context>) -> Action {
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
    let failures = match rj.uid() {
        Some(uid) => ctx.states.update(&uid, |s| {
            s.failures = s.failures.saturating_add(1);
            s.failures
        }),
        None => 1,
    };
    let delay = error_delay(failures);
    warn!(renderjob = %rj.name_any(), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// The delay before retry `n` (1 for the first) of a failing reconcile.
pub fn error_delay(n: u32) -> Duration {
    let mut delays = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(MAX_RETRY)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build();
    use backon::BackoffBuilder as _;
    delays
        .nth(n.saturating_sub(1).min(20) as usize)
        .unwrap_or(MAX_RETRY)
}

/// One pass: work out the effects, carry them out, remember what happened. Every line it logs
/// carries the RenderJob (the span's fields).
#[instrument(skip_all, fields(
    namespace = rj.namespace().as_deref().unwrap_or_default(),
    renderjob = %rj.name_any(),
    uid = rj.metadata.uid.as_deref().unwrap_or_default(),
    generation = rj.metadata.generation.unwrap_or_default(),
))]
pub async fn reconcile(rj: Arc<RenderJob>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let uid = rj.uid().ok_or(Error::MissingObjectKey("metadata.uid"))?;
    let every = reconcile::pass_every(ctx.active.load(Ordering::Relaxed));
    if let Some(wait) = ctx
        .states
        .update(&uid, |s| reconcile::pass_wait(s, started, every))
    {
        ctx.metrics.reconcile_deferred.inc();
        return Ok(Action::requeue(wait));
    }
    let mut state = ctx.states.get(&uid);
    state.last_pass = Some(started);
    let result = reconcile_with(&rj, &ctx, &mut state).await;
    if result.is_ok() {
        state.failures = 0;
    }
    ctx.states.put(&uid, state);
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    result
}

async fn reconcile_with(rj: &RenderJob, ctx: &Context, state: &mut RenderState) -> Result<Action> {
    let name = rj.name_any();
    let ns = rj
        .namespace()
        .ok_or(Error::MissingObjectKey("metadata.namespace"))?;
    let uid = rj.uid().ok_or(Error::MissingObjectKey("metadata.uid"))?;
    // This render's own objects, by the indexes: not a walk over every render's.
    let key = ObjectRef::<RenderJob>::new(&name).within(&ns);
    let (jobs, taken): (Vec<_>, Vec<_>) = ctx
        .job_index
        .lookup(&key, &ctx.jobs)
        .into_iter()
        .filter(|j| reconcile::owned_by(j, &uid) || reconcile::predecessor_of(j, &ns, &name, &uid))
        .partition(|j| reconcile::owned_by(j, &uid));
    let mut pods = ctx.pod_index.lookup(&key, &ctx.pods);
    pods.retain(|p| reconcile::pod_of(p, &ns, &name));
    read_back(ctx, rj, (&jobs, &taken), state).await?;
    let nodes = ctx.nodes.snapshot();
    let input = Input {
        rj,
        jobs: &jobs,
        pods: &pods,
        synced: synced(&ctx.jobs) && synced(&ctx.pods),
        disrupted: &|uid| ctx.disruptions.count(uid),
        taken: &taken,
        active: ctx.active.load(Ordering::Relaxed),
        finishing: ctx.finished_lately.load(Ordering::Relaxed) as f64
            / reconcile::FINISHING_WINDOW.as_secs_f64(),
        nodes: nodes.as_deref(),
    };
    let decision = reconcile::decide(
        &input,
        state,
        &ctx.settings.job,
        Instant::now(),
        &Time(Timestamp::now()),
    )?;
    *state = decision.state;
    let (fx, wake) = (decision.effects, decision.wake);
    if carry_out(rj, &ns, &fx, &jobs, state, ctx).await? == Refused::Yes {
        // Look again at once: the refusal holds creation back and shows in status.
        return Ok(Action::requeue(Duration::from_millis(100)));
    }
    if let Some(job) = &fx.inspect
        && fx.inspected(state, failed_create(ctx, &ns, job).await)
    {
        return Ok(Action::requeue(Duration::from_millis(100)));
    }
    Ok(match wake.requeue(state, Instant::now()) {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

/// Logged when a Job whose apply went unanswered is read back and is not there: one more
/// apply of it follows, the only one after an apply that got no answer.
pub const UNANSWERED_ABSENT: &str = "an unanswered Job apply left no Job: applying it again";
/// Logged when such a Job is there after all: created, and not applied again.
pub const UNANSWERED_CREATED: &str = "an unanswered Job apply created its Job";

/// Settles the Job applies that went unanswered (see [`RenderState::unanswered`]) before the
/// pass decides: a Job the cache shows, or a read by name finds, owned by this RenderJob, was
/// created; one not there loses its mark and is applied again by this pass. `cached` is this
/// RenderJob's Jobs and those of a predecessor of the same name. A read that fails fails the
/// pass, marks kept, so nothing is applied blind.
async fn read_back(
    ctx: &Context,
    rj: &RenderJob,
    cached: (&[Arc<BatchJob>], &[Arc<BatchJob>]),
    state: &mut RenderState,
) -> Result<()> {
    if state.unanswered.is_empty() && !state.preview_unanswered {
        return Ok(());
    }
    let (name, ns) = (rj.name_any(), rj.namespace().unwrap_or_default());
    let uid = rj.uid().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let batches = state
        .unanswered
        .iter()
        .map(|i| (Some(*i), job::job_name(&name, *i)));
    let preview = state
        .preview_unanswered
        .then(|| (None, job::preview_job_name(&name)));
    let wanted: Vec<(Option<u32>, String)> = batches.chain(preview).collect();
    let now = Instant::now();
    for (index, job_name) in wanted {
        let in_cache = |jobs: &[Arc<BatchJob>]| jobs.iter().any(|j| j.name == job_name);
        let ours = if in_cache(cached.0) {
            true
        } else if in_cache(cached.1) {
            false
        } else {
            let read = api.get_opt(&job_name).await;
            match read.map_err(api_error("read back", job_ref(&api, &job_name)))? {
                Some(job) => reconcile::owned_by(&BatchJob::from(job), &uid),
                None => {
                    info!(job = %job_name, "{UNANSWERED_ABSENT}");
                    false
                }
            }
        };
        match index {
            Some(i) => state.read_back(i, ours, now),
            None => state.read_back_preview(ours, now),
        }
        if ours {
            info!(job = %job_name, "{UNANSWERED_CREATED}");
            if let Some(i) = index {
                ctx.metrics.batch("created", 1);
                state.created.add([i]);
            }
        }
    }
    Ok(())
}

/// Whether the API server refused a Job apply.
#[derive(Debug, PartialEq, Eq)]
enum Refused {
    Yes,
    No,
}

/// Sends the effects to the API server, in the order that keeps a crash harmless: Jobs first,
/// then suspensions and deletions, then the status and its Events.
async fn carry_out(
    rj: &RenderJob,
    ns: &str,
    fx: &Effects,
    cached: &[Arc<BatchJob>],
    state: &mut RenderState,
    ctx: &Context,
) -> Result<Refused> {
    // A leader frozen past its lease (SIGSTOP, a paused VM) wakes with stale caches: no write
    // until the lease it sees is its own and current.
    if let Some(fence) = &ctx.settings.fence
        && !fx.is_empty()
    {
        fence.check()?;
    }
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let (outcomes, failed) = apply_jobs(&jobs, fx.apply.clone()).await;
    let created: std::collections::BTreeSet<u32> = outcomes
        .iter()
        .filter(|(_, o)| *o == Applied::Created)
        .map(|(i, _)| *i)
        .collect();
    if !created.is_empty() {
        ctx.metrics.batch("created", created.len() as u64);
        info!(batches = %encode_ranges(&created), "created batch jobs");
    }
    let created_note = fx.settle(state, &outcomes, Instant::now());
    if let Some(e) = failed {
        return Err(e);
    }
    change_jobs(fx, &jobs, cached).await?;
    if let Some(note) = created_note {
        publish(ctx, rj, &note).await;
    }
    if Effects::refused(&outcomes) {
        warn!("a Job was refused; showing it in status");
        return Ok(Refused::Yes);
    }
    if let Some(w) = &fx.status {
        write_status(ctx, rj, &w.status).await?;
        let failed_note = fx.wrote(state, Instant::now());
        count_progress(&ctx.metrics, &w.progress);
        for note in w.events.iter().chain(&failed_note) {
            publish(ctx, rj, note).await;
        }
    }
    // After the status: the render's `Complete` does not wait for the preview Job's create.
    // A preview the status calls running but never sent (a crash in between) is wanted again.
    let mut preview_refused = false;
    if let Some(manifest) = fx.preview.clone() {
        let (outcomes, failed) = apply_jobs(&jobs, vec![(0, manifest)]).await;
        for (_, outcome) in &outcomes {
            fx.settle_preview(state, outcome, Instant::now());
            preview_refused |= matches!(outcome, Applied::Refused(_));
            if *outcome == Applied::Created {
                info!("created the preview job");
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
    }
    apply_rerender(fx, &jobs).await?;
    if preview_refused {
        warn!("the preview Job was refused; showing it in status");
        return Ok(Refused::Yes);
    }
    Ok(Refused::No)
}

/// The Job rendering frames of a finished render again (`spec.rerender`), after the status
/// that says it runs; applied again, while the cache has not seen it, it stays as it is.
async fn apply_rerender(fx: &Effects, jobs: &Api<Job>) -> Result<()> {
    let Some(manifest) = fx.rerender.clone() else {
        return Ok(());
    };
    let (outcomes, failed) = apply_jobs(jobs, vec![(0, manifest)]).await;
    for (_, outcome) in &outcomes {
        match outcome {
            Applied::Created => info!("created the rerender job"),
            Applied::Refused(why) => warn!(%why, "the rerender Job was refused"),
            _ => {}
        }
    }
    failed.map_or(Ok(()), Err)
}

/// Suspends, resumes, deletes and stops the Jobs `fx` names; `cached` is how the reconcile
/// saw them.
async fn change_jobs(fx: &Effects, jobs: &Api<Job>, cached: &[Arc<BatchJob>]) -> Result<()> {
    for (names, suspend) in [(&fx.suspend, true), (&fx.resume, false)] {
        for job_name in names {
            // The annotation marks the suspension as the operator's: the only kind it lifts.
            let paused = suspend.then_some("true");
            let patch = serde_json::json!({
                "metadata": {"annotations": {PAUSED_ANNOTATION: paused}},
                "spec": {"suspend": suspend},
            });
            let verb = if suspend { "suspend" } else { "resume" };
            jobs.patch(job_name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(api_error(verb, job_ref(jobs, job_name)))?;
        }
    }
    for job_name in &fx.delete {
        let seen = cached.iter().find(|j| &j.name == job_name);
        delete_job(jobs, job_name, seen.map(Arc::as_ref)).await?;
    }
    for (job_name, why) in &fx.stop {
        // A deadline already past makes the Job controller fail the Job and stop its pod; the
        // annotation says why (the status reads it).
        let patch = serde_json::json!({
            "metadata": {"annotations": {STOPPED_ANNOTATION: why}},
            "spec": {"activeDeadlineSeconds": 1},
        });
        warn!(job = %job_name, why, "stopping a batch");
        jobs.patch(job_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(api_error("stop", job_ref(jobs, job_name)))?;
    }
    Ok(())
}

/// Applies the Jobs, a few at once; how each went, and the first error.
async fn apply_jobs(
    jobs: &Api<Job>,
    manifests: Vec<(u32, Job)>,
) -> (Vec<(u32, Applied)>, Option<Error>) {
    let ssa = PatchParams::apply(MANAGER).force();
    let post = PostParams {
        field_manager: Some(MANAGER.to_string()),
        ..Default::default()
    };
    let results: Vec<(u32, String, kube::Result<Job>)> = futures::stream::iter(manifests)
        .map(|(index, manifest)| {
            let (ssa, post) = (&ssa, &post);
            async move {
                let name = manifest.name_any();
                // A queued Job is created, never applied: Kueue's manager takes `spec.suspend`
                // over when it admits or preempts the Job, and a forced apply of a Job that
                // exists after all (an answer lost, the cache behind) would take it back and
                // suspend an admitted batch. One that exists is as good as created.
                let queued = manifest.labels().contains_key(crate::job::QUEUE_LABEL);
                let result = if queued {
                    match jobs.create(post, &manifest).await {
                        Err(kube::Error::Api(e))
                            if e.code == 409 && e.reason == "AlreadyExists" =>
                        {
                            Ok(manifest)
                        }
                        other => other,
                    }
                } else {
                    jobs.patch(&name, ssa, &Patch::Apply(&manifest)).await
                };
                (index, name, result)
            }
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .collect()
        .await;
    let mut failed = None;
    let outcomes = results
        .into_iter()
        .map(|(index, name, result)| {
            let outcome = match &result {
                Ok(_) => Applied::Created,
                // A webhook that has not seen a new namespace yet refuses for a moment only.
                Err(kube::Error::Api(e)) if e.code < 500 && !webhook_lags_namespace(e) => {
                    Applied::Refused(e.message.clone())
                }
                Err(kube::Error::Api(_)) => Applied::ServerError,
                Err(_) => Applied::Unknown,
            };
            if let Err(e) = &result {
                debug!(job = %name, outcome = ?outcome, error = %e, "Job apply not taken");
            }
            // A refusal is shown in status (see `Effects::settle`); anything else is retried.
            if let Err(e) = result
                && matches!(outcome, Applied::Unknown | Applied::ServerError)
            {
                failed.get_or_insert_with(|| api_error("apply", job_ref(jobs, &name))(e));
            }
            (index, outcome)
        })
        .collect();
    (outcomes, failed)
}

/// The message of the Job controller's latest `FailedCreate` Event on Job `job`: why its pod
/// was refused. (A read error is only logged: this is a diagnosis, not a decision.)
async fn failed_create(ctx: &Context, ns: &str, job: &str) -> Option<String> {
    let events: Api<CoreEvent> = Api::namespaced(ctx.client.clone(), ns);
    let lp = ListParams::default().fields(&format!(
        "involvedObject.kind=Job,involvedObject.name={job},reason=FailedCreate"
    ));
    match events.list(&lp).await {
        Ok(list) => list
            .items
            .into_iter()
            .max_by_key(|e| {
                e.last_timestamp
                    .clone()
                    .or(e.event_time.clone().map(|t| Time(t.0)))
            })
            .and_then(|e| e.message),
        Err(e) => {
            warn!(job, error = %e, "could not read the Job's events");
            None
        }
    }
}

/// Deletes Job `name` as it was `seen` in the cache: the server refuses the delete (409) if
/// the Job changed since, or another took its name, so a replica acting on a stale view (a
/// leader that lost its lease without knowing yet) cannot delete what it has not seen.
async fn delete_job(jobs: &Api<Job>, name: &str, seen: Option<&BatchJob>) -> Result<()> {
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        preconditions: seen.map(|j| Preconditions {
            uid: j.uid.clone(),
            resource_version: j.resource_version.clone(),
        }),
        ..Default::default()
    };
    match jobs.delete(name, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        // Not an error to show: the change that made the view stale comes as a watch
        // event, and the pass it triggers decides again on the fresh Job.
        Err(kube::Error::Api(e)) if e.code == 409 => {
            debug!(job = name, error = %e.message, "not deleting a Job changed since it was seen");
            Ok(())
        }
        Err(e) => Err(api_error("delete", job_ref(jobs, name))(e)),
    }
}

async fn write_status(ctx: &Context, rj: &RenderJob, status: &RenderJobStatus) -> Result<()> {
    let rjs: Api<RenderJob> =
        Api::namespaced(ctx.client.clone(), &rj.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": "renderfarm.io/v1alpha1",
        "kind": "RenderJob",
        "status": status,
    });
    match rjs
        .patch_status(
            &rj.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        // Deleted meanwhile: nothing left to report on.
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => {
            let object = format!("the status of RenderJob {}/{}", ns_of(rj), rj.name_any());
            Err(api_error("write", object)(e))
        }
    }
}

fn count_progress(m: &Metrics, p: &Progress) {
    m.batch("succeeded", p.succeeded);
    if p.failed > 0 {
        m.batch("failed", p.failed);
    }
    m.frames_rendered.inc_by(p.frames);
    for seconds in &p.batch_seconds {
        m.batch_duration.observe(*seconds);
    }
    for (node, reason) in &p.node_faults {
        m.nodes.failure(node, reason);
    }
}

async fn publish(ctx: &Context, rj: &RenderJob, note: &Note) {
    let event = Event {
        type_: if note.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: note.reason.into(),
        note: Some(note.note.clone()),
        action: note.reason.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &rj.object_ref(&())).await {
        warn!(error = %e, "could not publish event");
    }
}

/// `Job namespace/name`, for errors.
fn job_ref(jobs: &Api<Job>, name: &str) -> String {
    match jobs.namespace() {
        Some(ns) => format!("Job {ns}/{name}"),
        None => format!("Job {name}"),
    }
}

fn ns_of(rj: &RenderJob) -> String {
    rj.namespace().unwrap_or_default()
}

#[cfg(test)]
mod tests;
