//! One reconcile as data: from what the caches hold of a RenderJob, its batch Jobs and pods,
//! and what the operator remembers of it ([`RenderState`]), [`decide`] works out every effect
//! (Jobs to apply, suspend, resume or delete, the status to write, the Events, when to come
//! back) and the controller only carries them out. What the API server answered to the Job
//! applies comes back through [`Effects::settle`]. `examples/reconcile_cost.rs` measures it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::Result;
use crate::actions::{self, Actions};
use crate::ahead;
use crate::batch::BatchState;
use crate::cache::{BatchJob, BatchPod};
use crate::crd::{CleanupPolicy, Phase, PreviewState, RenderJob, RenderJobStatus};
use crate::events::{self, Note};
use crate::index;
#[cfg(test)]
use crate::job::MAX_DISRUPTIONS;
use crate::job::{self, JobConfig};
use crate::plan::Plan;
use crate::ranges::decode_ranges;
use crate::state::{IN_FLIGHT_AFTER_5XX, Rejection, RenderState};
use crate::status::preview::{self, PreviewSeen};
use crate::status::{self, Hold, Observed};

/// A status change that is not [`status::urgent`] (counts, progress, messages) waits until
/// at least this long after the last status write, so a render writes its status about once a
/// second instead of once per pod change.
pub const STATUS_EVERY: Duration = Duration::from_secs(1);
/// Status writes that are not urgent, per second, shared by every render still going: with
/// many renders at once each writes less often (see [`status_every`]), so the operator's
/// writes per batch stay near one, the Job apply, however many render together. Two renders
/// write every second, ten every 5 s, a hundred every 50 s (0.1 writes per batch at the
/// 24 batches a second two cores manage); `kubectl render watch` follows the pods themselves.
pub const STATUS_WRITES_PER_SECOND: u32 = 2;

/// How long a render's status changes that are not urgent wait after its last status write,
/// with `active` renders going: [`STATUS_EVERY`], or their share of
/// [`STATUS_WRITES_PER_SECOND`] when more than that many render at once.
pub fn status_every(active: usize) -> Duration {
    let share = Duration::from_secs(1) * u32::try_from(active).unwrap_or(u32::MAX)
        / STATUS_WRITES_PER_SECOND;
    share.max(STATUS_EVERY)
}

/// The shortest time between two full passes of one render, per render going: with many
/// renders, a render's watch events (about ten per batch) come in bursts, and one pass a
/// little later does what a pass per event would.
const PASS_PER_RENDER: Duration = Duration::from_millis(2);
/// ... but never longer than this: a freed slot waits at most this long for its next batch.
const MAX_PASS_EVERY: Duration = Duration::from_millis(250);

/// The shortest time between two full passes of one render with `active` renders going.
pub fn pass_every(active: usize) -> Duration {
    PASS_PER_RENDER
        .saturating_mul(u32::try_from(active).unwrap_or(u32::MAX))
        .min(MAX_PASS_EVERY)
}

/// How long a pass at `now` should wait, if at all: while batches are left to create, until
/// `every` after the last pass. Once every batch is created nothing waits, so the render is
/// seen complete as soon as its last batch is.
pub fn pass_wait(state: &RenderState, now: Instant, every: Duration) -> Option<Duration> {
    let last = state.last_pass?;
    let wait = every.saturating_sub(now.saturating_duration_since(last));
    (state.left_to_create && !wait.is_zero()).then_some(wait)
}

/// How often a render gathers its batch creations into one `BatchesCreated` Event: the
/// Events' own [`events::EVERY`], stretched as its status writes are by [`status_every`].
pub fn created_every(status_every: Duration) -> Duration {
    events::EVERY.mul_f64(status_every.as_secs_f64() / STATUS_EVERY.as_secs_f64())
}
/// How soon to look again while the caches are still filling.
const NOT_SYNCED: Duration = Duration::from_millis(500);
/// The longest a running render goes without a reconcile, watch events or not.
const BUSY_RECHECK: Duration = Duration::from_secs(300);
/// A batch Job this old without a pod has had its pod refused, or soon will: its Events say why.
pub const PODLESS_AFTER: Duration = Duration::from_secs(3);
/// How often the Events of Jobs without pods are read.
const INSPECT_EVERY: Duration = Duration::from_secs(5);
/// While other renders are going, a render keeps at most this many batch Jobs waiting for the
/// Job controller to make their pods. The Job controller takes Jobs first come, first served:
/// renders submitted together that each create their whole first wave at once put the last
/// one's first batch behind every other's wave (35 s behind with 100 renders in
/// `bench/many.sh`); two at a time each, the queue serves the renders in turn. Queued (Kueue)
/// and suspended Jobs do not count: they wait for admission or a resume, not for a pod.
pub const WAITING_PER_RENDER: usize = 2;

/// Whether the RenderJob with `uid` is the controller owner of the Job.
pub fn owned_by(job: &BatchJob, uid: &str) -> bool {
    job.owner.as_ref().is_some_and(|o| o.uid == uid)
}

/// Whether the Job belongs to an earlier RenderJob of the same name and namespace (deleted,
/// its Jobs not yet collected): its batch's Job name is taken until it is gone, and applying
/// ours would take that Job over.
pub fn predecessor_of(job: &BatchJob, ns: &str, name: &str, uid: &str) -> bool {
    job.namespace.as_deref() == Some(ns)
        && job
            .owner
            .as_ref()
            .is_some_and(|o| o.name == name && o.uid != uid)
}

/// Whether `pod` is a batch pod of the RenderJob `name` in namespace `ns`.
pub fn pod_of(pod: &BatchPod, ns: &str, name: &str) -> bool {
    pod.namespace.as_deref() == Some(ns) && pod.renderjob.as_deref() == Some(name)
}

/// What one reconcile sees.
pub struct Observation<'a> {
    pub plan: Plan,
    /// The batch Jobs, by batch index.
    pub jobs: index::Jobs<'a>,
    /// The batch pods, by batch index.
    pub pods: index::Pods<'a>,
    /// Batches the status last written records as succeeded.
    pub recorded: BTreeSet<u32>,
    /// Batches whose Job name an earlier RenderJob's Job still holds: not created until it goes.
    pub taken: BTreeSet<u32>,
    /// Followers created but not seen in the cache yet, and the batch each follows.
    pub ahead_in_flight: BTreeMap<u32, u32>,
    /// Other renders are going: hold creation to [`WAITING_PER_RENDER`] Jobs without pods.
    pub sharing: bool,
}

impl<'a> Observation<'a> {
    /// `jobs` and `pods`: the RenderJob's own (see [`owned_by`] and [`pod_of`]).
    pub fn new(
        rj_name: &str,
        plan: Plan,
        old: &RenderJobStatus,
        jobs: &'a [Arc<BatchJob>],
        pods: &'a [Arc<BatchPod>],
    ) -> Self {
        let jobs = status::jobs_by_batch(rj_name, &plan, jobs.iter().map(Arc::as_ref));
        // A pod counts for its batch only while it belongs to the batch's Job (by UID).
        let mine: Vec<(u32, &BatchPod)> = pods
            .iter()
            .filter_map(|p| {
                let index = p.batch?;
                let uid = jobs.get(&index)?.uid.as_ref()?;
                (p.job_uid.as_ref() == Some(uid)).then_some((index, p.as_ref()))
            })
            .collect();
        let by_batch = index::Pods::new(plan.len(), &mine);
        let recorded = old
            .succeeded_batches
            .as_deref()
            .map(decode_ranges)
            .unwrap_or_default();
        Observation {
            plan,
            jobs,
            pods: by_batch,
            recorded,
            taken: BTreeSet::new(),
            ahead_in_flight: BTreeMap::new(),
            sharing: false,
        }
    }

    /// What to change and the status to write once it is done. `old` is the status last
    /// written; `in_flight`, the batches created but not seen in the cache yet; `rejected`, a
    /// refused Job apply that holds creation back. Batches about to be created and those in
    /// flight count as active.
    pub fn decide(
        &self,
        rj: &RenderJob,
        old: &RenderJobStatus,
        in_flight: &BTreeSet<u32>,
        rejected: Option<Hold>,
        now: &Time,
    ) -> (Actions, RenderJobStatus, Vec<BatchState>) {
        // Decisions go by the slots (a batch's Job finished or not), the status by what the
        // pods rendered.
        let slots = status::batch_states(&self.plan, &self.jobs, &self.recorded);
        let mut states = status::rendered_states(&slots, &self.pods);
        let hold = status::stop(rj, &self.plan, &slots, &self.jobs, &self.pods)
            .or(rejected)
            .or_else(|| status::claim_missing(rj, &slots, &self.pods));
        let (due, ahead_due) = if rj.spec.start_ahead && !rj.spec.suspend {
            let spf = old.seconds_per_frame;
            ahead::due(&self.plan, &slots, &self.jobs, &self.pods, spf, now)
        } else {
            Default::default()
        };
        let ahead = actions::Ahead {
            in_flight: Some(&self.ahead_in_flight),
            due: Some(&due),
        };
        let mut todo = actions::decide(rj, &slots, &self.jobs, in_flight, &self.recorded, ahead);
        todo.ahead_due = ahead_due;
        if hold.is_some() {
            todo.create.clear();
        }
        todo.create.retain(|i| !self.taken.contains(i));
        if self.sharing {
            let waiting = self.waiting_for_pods(&slots, in_flight);
            todo.create
                .truncate(WAITING_PER_RENDER.saturating_sub(waiting));
        }
        todo.after.retain(|i, _| todo.create.contains(i));
        for i in todo.create.iter().chain(in_flight.iter()) {
            if let Some(s) = states.get_mut(*i as usize)
                && *s == BatchState::Pending
            {
                *s = BatchState::Active;
            }
        }
        let seen = Observed {
            plan: &self.plan,
            states: &states,
            jobs: &self.jobs,
            pods: &self.pods,
            hold: hold.as_ref(),
        };
        let mut basis = rj.clone();
        basis.status = Some(old.clone());
        let new = status::roll_up(&basis, &seen, now);
        (todo, new, states)
    }

    /// Batch Jobs the Job controller has yet to make a pod for: unfinished, neither queued
    /// nor suspended, no pod seen; and those created but not in the cache yet.
    fn waiting_for_pods(&self, slots: &[BatchState], in_flight: &BTreeSet<u32>) -> usize {
        let unseen = in_flight
            .iter()
            .filter(|i| !self.jobs.contains_key(i))
            .count();
        let podless = self
            .jobs
            .iter()
            .filter(|(i, job)| {
                slots.get(**i as usize) == Some(&BatchState::Active)
                    && !job.queued
                    && !job.suspended
                    && self.pods.of(**i).is_empty()
            })
            .count();
        unseen + podless
    }
}

/// What the caches hold for one RenderJob.
pub struct Input<'a> {
    pub rj: &'a RenderJob,
    /// Its batch Jobs (see [`owned_by`]).
    pub jobs: &'a [Arc<BatchJob>],
    /// Its batch pods (see [`pod_of`]).
    pub pods: &'a [Arc<BatchPod>],
    /// Jobs of an earlier RenderJob of the same name, not yet gone (see [`predecessor_of`]).
    pub taken: &'a [Arc<BatchJob>],
    /// Whether the Job and pod caches hold a full list yet.
    pub synced: bool,
    /// How many disrupted pods of the Job with this UID were seen.
    pub disrupted: &'a (dyn Fn(&str) -> usize + Sync),
    /// How many renders are going, this one included: they share the status write budget
    /// ([`status_every`]) and, more than one, the Job controller ([`WAITING_PER_RENDER`]).
    pub active: usize,
}

/// A status to write, and what follows once it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusWrite {
    pub status: RenderJobStatus,
    /// Events for what changed since the status last written.
    pub events: Vec<Note>,
    pub progress: Progress,
}

/// What the metrics count once a status is written.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Progress {
    pub succeeded: u64,
    pub failed: u64,
    pub frames: u64,
    /// Seconds each newly succeeded batch Job took.
    pub batch_seconds: Vec<f64>,
}

/// How the API server answered one Job apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Created,
    /// Refused (a 4xx), with the server's message: nothing was created.
    Refused(String),
    /// A 5xx: the Job may exist, but most likely does not.
    ServerError,
    /// No answer: the Job may exist.
    Unknown,
}

/// Everything one reconcile does.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Effects {
    /// Batch Jobs to apply, by batch index.
    pub apply: Vec<(u32, Job)>,
    /// The preview Job to apply, once every batch succeeded.
    pub preview: Option<Job>,
    /// Job names to suspend, resume and delete.
    pub suspend: Vec<String>,
    pub resume: Vec<String>,
    pub delete: Vec<String>,
    /// Jobs to stop, and why: batches disrupted too often fail as `Evicted`.
    pub stop: Vec<(String, String)>,
    /// Written after the Jobs are applied.
    pub status: Option<StatusWrite>,
    /// When a status write held back by pacing is due.
    status_due: Option<Duration>,
    /// The render is still going: come back within [`BUSY_RECHECK`] at the latest.
    busy: bool,
    /// Whether no batch is left to create (the creation Event says so).
    all_created: bool,
    rj_name: String,
    generation: Option<i64>,
    plan: Option<Plan>,
    /// Come back this soon, whatever else (caches not synced yet).
    retry: Option<Duration>,
    /// When the next running batch is due a follower (start ahead).
    ahead_due: Option<Duration>,
    /// A refused Job apply holds creation back until then.
    hold_until: Option<Instant>,
    /// A running batch Job that has no pod yet and is old enough that it should: read its
    /// Events (the Job controller's `FailedCreate`) to say why.
    pub inspect: Option<String>,
    /// Jobs without pods wait for their Events to be read again.
    inspect_due: Option<Duration>,
    /// Batches the status to write newly records as failed.
    newly_failed: BTreeSet<u32>,
    /// The render is finished (the last failures are reported at once).
    terminal: bool,
}

/// Works out every effect of one reconcile. `state` is updated as if the effects will be
/// carried out: batches to create are marked in flight before their applies are sent, so a
/// crash or a timeout after the server acted cannot let a stale cache start a second Job (the
/// deterministic name makes a retry a no-op).
pub fn decide(
    input: &Input<'_>,
    state: &mut RenderState,
    config: &JobConfig,
    now: Instant,
    wall: &Time,
) -> Result<Effects> {
    let rj = input.rj;
    let name = rj.name_any();
    let mut fx = Effects {
        rj_name: name.clone(),
        generation: rj.metadata.generation,
        ..Effects::default()
    };
    if rj.metadata.deletion_timestamp.is_some() {
        return Ok(fx);
    }
    // Never decide on a half-filled cache: that is how batches get created twice.
    if !input.synced {
        fx.retry = Some(NOT_SYNCED);
        return Ok(fx);
    }
    let Some(plan) = Plan::new(&rj.spec.frames, rj.spec.batch_size) else {
        let why = "frames and batchSize do not make a plan";
        return Ok(invalid(rj, fx, "InvalidSpec", why, wall));
    };
    if let Err(why) = config.image_for(rj) {
        return Ok(invalid(rj, fx, "UnknownBlenderVersion", &why, wall));
    }
    fx.plan = Some(plan);
    // What we last wrote is newer than the cache when the cache lags behind our own write.
    let written_at = state.written.as_ref().map(|(_, at)| *at);
    let old = state
        .written
        .as_ref()
        .map(|(s, _)| s.clone())
        .or_else(|| rj.status.clone())
        .unwrap_or_default();
    let write_every = status_every(input.active);
    state.created.pace(created_every(write_every));
    let seen = observe(input, state, &name, plan, &old, now);
    let in_flight: BTreeSet<u32> = state.in_flight.keys().copied().collect();
    let rejected = refusal(rj, &seen, state, &mut fx, now, wall);
    fx.stop = too_disrupted(&seen, input.disrupted, config.max_disruptions.max(1));
    let (todo, mut new, states) = seen.decide(rj, &old, &in_flight, rejected, wall);
    create_jobs(rj, &plan, config, &todo, state, &mut fx, now)?;
    fx.ahead_due = todo.ahead_due;
    let Actions {
        suspend,
        resume,
        mut delete,
        create,
        ..
    } = todo;
    let (preview_job, delete_preview) =
        preview_step(input, state, config, &old, &mut new, now, wall)?;
    fx.preview = preview_job;
    delete.extend(delete_preview);
    (fx.suspend, fx.resume, fx.delete) = (suspend, resume, delete);
    fx.all_created = new.batches.pending == 0;
    state.left_to_create = !fx.all_created;
    fx.busy = busy(&new, !create.is_empty());
    // Counts and messages wait for the next paced write (`status_every`); transitions do not.
    fx.status_due = written_at
        .map(|at| write_every.saturating_sub(now.saturating_duration_since(at)))
        .filter(|wait| old != new && !wait.is_zero() && !status::urgent(&old, &new));
    fx.terminal = matches!(new.phase, Phase::Succeeded | Phase::Failed);
    if old != new && fx.status_due.is_none() {
        fx.newly_failed = newly_failed(&old, &new);
        fx.status = Some(StatusWrite {
            events: events::on_change(&old, &new, rj.spec.missing_files),
            progress: progress(&old, &new, &seen, &states),
            status: new,
        });
    }
    Ok(fx)
}

/// The render is still going: batches running or pending, Jobs being created, or the preview
/// being made.
fn busy(new: &RenderJobStatus, creating: bool) -> bool {
    let previewing = new
        .preview
        .as_ref()
        .is_some_and(|p| p.state == PreviewState::Running);
    matches!(new.phase, Phase::Running | Phase::Pending) || creating || previewing
}

/// What this reconcile sees of the render, with the in-flight marks of `state` brought up to
/// date against the cache.
fn observe<'a>(
    input: &Input<'a>,
    state: &mut RenderState,
    name: &str,
    plan: Plan,
    old: &RenderJobStatus,
    now: Instant,
) -> Observation<'a> {
    let mut seen = Observation::new(name, plan, old, input.jobs, input.pods);
    seen.taken = status::jobs_by_batch(name, &plan, input.taken.iter().map(Arc::as_ref))
        .keys()
        .copied()
        .collect();
    state.expire_in_flight(|i| seen.jobs.contains_key(&i), now);
    seen.ahead_in_flight = state.in_flight_after.clone();
    seen.sharing = input.active > 1;
    seen
}

/// The batch Jobs to create, each marked in flight (and, started ahead, with the batch it
/// follows) as its apply is queued.
fn create_jobs(
    rj: &RenderJob,
    plan: &Plan,
    config: &JobConfig,
    todo: &Actions,
    state: &mut RenderState,
    fx: &mut Effects,
    now: Instant,
) -> Result<()> {
    for index in &todo.create {
        if let Some(batch) = plan.batch(*index) {
            let after = todo.after.get(index).copied();
            fx.apply
                .push((*index, job::build_after(rj, &batch, config, false, after)?));
            state.mark_in_flight(*index, now);
            if let Some(h) = after {
                state.in_flight_after.insert(*index, h);
            }
        }
    }
    Ok(())
}

/// The preview step: after the batches, in the same status. The preview Job to apply, if it
/// is due, and its name if it is to be deleted; `new` gets the preview's status.
fn preview_step(
    input: &Input<'_>,
    state: &mut RenderState,
    config: &JobConfig,
    old: &RenderJobStatus,
    new: &mut RenderJobStatus,
    now: Instant,
    wall: &Time,
) -> Result<(Option<Job>, Option<String>)> {
    let rj = input.rj;
    let preview_name = job::preview_job_name(&rj.name_any());
    let is_preview = |j: &&BatchJob| j.batch.is_none() && j.name == preview_name;
    let preview_job = input.jobs.iter().map(Arc::as_ref).find(is_preview);
    state.expire_preview(preview_job.is_some(), now);
    let refused = state.preview_refused.clone();
    let mut seen_preview = PreviewSeen {
        job: preview_job,
        pods: preview_job
            .and_then(|j| j.uid.as_ref())
            .map(|uid| {
                input
                    .pods
                    .iter()
                    .map(Arc::as_ref)
                    .filter(|p| p.batch.is_none() && p.job_uid.as_ref() == Some(uid))
                    .collect()
            })
            .unwrap_or_default(),
        starting: state.preview_in_flight.is_some(),
        refused: refused.as_deref(),
        taken: input.taken.iter().map(Arc::as_ref).any(|j| is_preview(&j)),
    };
    let mut apply = None;
    if preview::wanted(rj, old, new, &seen_preview) {
        apply = Some(job::build_preview(rj, config)?);
        state.preview_in_flight = Some(now + crate::state::IN_FLIGHT_TTL);
        seen_preview.starting = true;
    }
    let delete = (rj.spec.cleanup.policy == CleanupPolicy::DeleteSucceeded
        && preview::deletable(old, &seen_preview))
    .then(|| preview_name.clone());
    preview::roll_up(rj, old, new, &seen_preview, wall);
    Ok((apply, delete))
}

/// What holds creation back because the API server refused something: a Job apply (until
/// the retry is due), or a Job's pod (while that Job still has none). Also asks for the
/// Events of a Job without pods to be read, at most every [`INSPECT_EVERY`].
fn refusal(
    rj: &RenderJob,
    seen: &Observation<'_>,
    state: &mut RenderState,
    fx: &mut Effects,
    now: Instant,
    wall: &Time,
) -> Option<Hold> {
    let generation = rj.metadata.generation;
    fx.hold_until = state.holding(generation, now).map(|r| r.retry_at());
    let (podless, next) = podless_jobs(seen, wall);
    fx.inspect_due = next;
    if state
        .pod_rejection
        .as_ref()
        .is_some_and(|(job, _)| !podless.contains(job))
    {
        state.pod_rejection = None;
    }
    if let Some(job) = podless.first() {
        let due = state
            .inspected
            .map(|at| INSPECT_EVERY.saturating_sub(now.saturating_duration_since(at)))
            .unwrap_or_default();
        if due.is_zero() {
            fx.inspect = Some(job.clone());
            state.inspected = Some(now);
        } else {
            fx.inspect_due = Some(fx.inspect_due.map_or(due, |d| d.min(due)));
        }
    }
    let job = state.holding(generation, now).map(|r| Hold {
        reason: "JobRejected".into(),
        message: format!(
            "batch {} (Job {}) was refused by the API server: {}",
            r.batch, r.job, r.message
        ),
        fails: false,
    });
    job.or_else(|| {
        let (job, message) = state.pod_rejection.as_ref()?;
        Some(Hold {
            reason: "PodRejected".into(),
            message: format!("Job {job} cannot create its pod: {message}"),
            fails: false,
        })
    })
}

/// Unfinished batch Jobs whose pods were disrupted `max` times, to be stopped:
/// a batch that keeps being evicted (filling its node's disk, say) must not retry forever.
fn too_disrupted(
    seen: &Observation<'_>,
    disrupted: &(dyn Fn(&str) -> usize + Sync),
    max: usize,
) -> Vec<(String, String)> {
    seen.jobs
        .values()
        .filter(|j| j.finished.is_none() && j.stopped.is_none() && !j.deleting)
        .filter_map(|j| {
            let n = disrupted(j.uid.as_deref()?);
            (n >= max).then(|| {
                let why = format!(
                    "Evicted: its pods were evicted, preempted or lost with their node {n} times"
                );
                (j.name.clone(), why)
            })
        })
        .collect()
}

/// Indexes of the batches `new` lists as failed and `old` did not.
fn newly_failed(old: &RenderJobStatus, new: &RenderJobStatus) -> BTreeSet<u32> {
    let known: BTreeSet<i64> = old.failed_batches.iter().map(|f| f.index).collect();
    new.failed_batches
        .iter()
        .filter(|f| !known.contains(&f.index))
        .filter_map(|f| u32::try_from(f.index).ok())
        .collect()
}

/// Unfinished, unsuspended batch Jobs older than [`PODLESS_AFTER`] with no pod in the cache
/// that the Job controller has started and counts no pod of,
/// and how soon the next younger one without a pod gets that old.
fn podless_jobs(seen: &Observation<'_>, wall: &Time) -> (Vec<String>, Option<Duration>) {
    let grace = PODLESS_AFTER.as_secs_f64();
    let mut old = Vec::new();
    let mut next: Option<Duration> = None;
    // Both maps are in batch order: walk them together.
    for (i, job) in seen.jobs.iter() {
        let has_pod = !seen.pods.of(*i).is_empty();
        if job.finished.is_some() || job.suspended || job.deleting || has_pod {
            continue;
        }
        // Only a Job the Job controller has synced (its first sync sets startTime) and that it
        // holds no pod for can have had its pod refused. Under load the Job controller takes
        // seconds to reach a new Job, and reading Events before then only made the API server
        // scan the namespace's Events (0.27 lists per batch with 100 renders at once).
        if job.start_time.is_none() || job.active {
            continue;
        }
        let Some(created) = &job.created else {
            continue;
        };
        let age = wall.0.duration_since(created.0).as_secs_f64();
        if age >= grace {
            old.push(job.name.clone());
        } else {
            let left = Duration::from_secs_f64(grace - age.max(0.0));
            next = Some(next.map_or(left, |n| n.min(left)));
        }
    }
    (old, next)
}

/// The effects for a RenderJob the operator cannot render as it is (frames and batch size
/// that make no plan, a Blender version not offered): a Failed status and a warning, once.
fn invalid(
    rj: &RenderJob,
    mut fx: Effects,
    reason: &'static str,
    why: &str,
    wall: &Time,
) -> Effects {
    let new = status::invalid(rj, reason, why, wall);
    if rj.status.as_ref() != Some(&new) {
        fx.status = Some(StatusWrite {
            status: new,
            events: vec![Note::warning(reason, why)],
            progress: Progress::default(),
        });
    }
    fx
}

/// What the metrics count for the change from `old` to `new`.
fn progress(
    old: &RenderJobStatus,
    new: &RenderJobStatus,
    seen: &Observation<'_>,
    states: &[BatchState],
) -> Progress {
    let known: BTreeSet<i64> = old.failed_batches.iter().map(|f| f.index).collect();
    // Counted when first seen succeeded, which may be before its Job completes.
    let batch_seconds = (0u32..)
        .zip(states)
        .filter(|(i, s)| **s == BatchState::Succeeded && !seen.recorded.contains(i))
        .filter_map(|(i, _)| status::job_duration(seen.jobs.get(&i)?, seen.pods.of(i)))
        .map(|(_, took)| took.as_secs_f64())
        .collect();
    Progress {
        succeeded: (new.batches.succeeded - old.batches.succeeded).max(0) as u64,
        failed: new
            .failed_batches
            .iter()
            .filter(|f| !known.contains(&f.index))
            .count() as u64,
        frames: (new.frames.rendered - old.frames.rendered).max(0) as u64,
        batch_seconds,
    }
}

impl Effects {
    /// Nothing to send to the API server.
    pub fn is_empty(&self) -> bool {
        self.apply.is_empty()
            && self.preview.is_none()
            && self.suspend.is_empty()
            && self.resume.is_empty()
            && self.delete.is_empty()
            && self.stop.is_empty()
            && self.status.is_none()
            && self.inspect.is_none()
    }

    /// Takes in how the Job applies went: a refused batch is no longer in flight (a timeout or
    /// a 5xx keeps the mark: the Job may exist; one unanswered is read back before it is
    /// applied again) and holds creation back for a while (see [`Rejection::retry_at`]);
    /// created batches wait for their Event. Returns the `BatchesCreated` Event when one is
    /// due; none while an apply failed, since the reconcile is retried.
    pub fn settle(
        &self,
        state: &mut RenderState,
        outcomes: &[(u32, Applied)],
        now: Instant,
    ) -> Option<Note> {
        let mut created = BTreeSet::new();
        for (index, outcome) in outcomes {
            match outcome {
                Applied::Created => {
                    created.insert(*index);
                }
                Applied::Refused(message) => {
                    state.in_flight.remove(index);
                    let count = state.rejection.as_ref().map_or(0, |r| r.count) + 1;
                    state.rejection = Some(Rejection {
                        batch: *index,
                        job: self.job_name(*index),
                        message: message.clone(),
                        generation: self.generation,
                        at: now,
                        count,
                    });
                }
                Applied::ServerError => {
                    if let Some(until) = state.in_flight.get_mut(index) {
                        *until = (*until).min(now + IN_FLIGHT_AFTER_5XX);
                    }
                }
                // Read back before it is applied again (see `RenderState::unanswered`).
                Applied::Unknown => state.mark_unanswered(*index),
            }
        }
        let failed = outcomes.iter().any(|(_, o)| *o != Applied::Created);
        if !created.is_empty()
            && !outcomes
                .iter()
                .any(|(_, o)| matches!(o, Applied::Refused(_)))
        {
            state.rejection = None;
        }
        state.created.add(created);
        let plan = self.plan.as_ref()?;
        if failed {
            return None;
        }
        let note = state
            .created
            .note(now, self.all_created, &self.rj_name, plan)?;
        Some(Note::normal("BatchesCreated", note))
    }

    /// Takes in how the preview Job's apply went: a refusal is kept and shown (the preview
    /// fails, the render does not) and the Job is not sent again; a 5xx keeps the mark only
    /// briefly, a timeout until the Job is seen or read back (it may exist).
    pub fn settle_preview(&self, state: &mut RenderState, outcome: &Applied, now: Instant) {
        match outcome {
            Applied::Created => {}
            Applied::Unknown => state.preview_unanswered = state.preview_in_flight.is_some(),
            Applied::Refused(message) => {
                state.preview_in_flight = None;
                state.preview_refused = Some(message.clone());
            }
            Applied::ServerError => {
                if let Some(until) = state.preview_in_flight.as_mut() {
                    *until = (*until).min(now + IN_FLIGHT_AFTER_5XX);
                }
            }
        }
    }

    /// Takes in why a Job without pods has none (the message of its latest `FailedCreate`
    /// Event), so the next reconcile shows it.
    pub fn inspected(&self, state: &mut RenderState, failed_create: Option<String>) -> bool {
        let (Some(job), Some(message)) = (self.inspect.as_ref(), failed_create) else {
            return false;
        };
        let new = Some((job.clone(), message));
        let changed = state.pod_rejection != new;
        state.pod_rejection = new;
        changed
    }

    /// Whether an apply was refused: the status worked out before it assumed the Job would
    /// exist, so it is not written; the next reconcile, at once, shows the refusal instead.
    pub fn refused(outcomes: &[(u32, Applied)]) -> bool {
        outcomes
            .iter()
            .any(|(_, o)| matches!(o, Applied::Refused(_)))
    }

    fn job_name(&self, index: u32) -> String {
        self.apply
            .iter()
            .find(|(i, _)| *i == index)
            .and_then(|(_, j)| j.metadata.name.clone())
            .unwrap_or_default()
    }

    /// Records a status write the API server took; returns the `BatchFailed` Event when one is
    /// due (the first failures at once, then at most every 30 s, the last when the render ends).
    pub fn wrote(&self, state: &mut RenderState, now: Instant) -> Option<Note> {
        let w = self.status.as_ref()?;
        state.written = Some((w.status.clone(), now));
        state.failed.add(self.newly_failed.iter().copied());
        let batches = state.failed.take_due(now, self.terminal)?;
        Some(events::failed_note(&batches, &w.status.failed_batches))
    }

    /// When to reconcile again without a watch event (`None`: only on a change). Soon enough
    /// for a status write held back by pacing, for creations not reported yet, and for the
    /// oldest in-flight mark to run out: a Job apply cut off by a lost connection leaves its
    /// batch marked, and once the mark is gone no watch event may come to say that the batch
    /// still needs its Job.
    pub fn requeue(&self, state: &RenderState, now: Instant) -> Option<Duration> {
        if let Some(retry) = self.retry {
            return Some(retry);
        }
        self.plan.as_ref()?;
        let wake = [
            self.status_due,
            state.created.due_in(now),
            state.failed.due_in(now),
            state.in_flight_expiry(now),
            self.inspect_due,
            self.inspect.as_ref().map(|_| Duration::from_millis(200)),
            self.hold_until.map(|at| at.saturating_duration_since(now)),
            self.ahead_due,
        ]
        .into_iter()
        .flatten()
        .min();
        match wake {
            Some(due) => Some(due.clamp(Duration::from_millis(100), BUSY_RECHECK)),
            None if self.busy => Some(BUSY_RECHECK),
            None => None,
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BatchState;
    use crate::crd::RenderJobSpec;
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::{Value, json};

    const UID: &str = "dba0d389-0bbd-4f05-bccc-6193edea917c";

    fn rj() -> RenderJob {
        let spec: RenderJobSpec = serde_json::from_value(json!({
            "blendFile": "s.blend", "frames": {"start": 1, "end": 6}, "batchSize": 1,
            "parallelism": 3, "storage": {"claimName": "c"}, "startAhead": false,
        }))
        .expect("spec");
        let mut rj = RenderJob::new("shot", spec);
        rj.metadata.namespace = Some("bench".into());
        rj.metadata.uid = Some(UID.into());
        rj
    }

    fn job(index: u32, done: bool) -> Arc<BatchJob> {
        let mut v: Value =
            serde_json::from_str(include_str!("../examples/fixtures/job.json")).expect("json");
        v["metadata"]["name"] = json!(crate::job::job_name("shot", index));
        v["metadata"]["labels"][crate::job::BATCH_LABEL] = json!(index.to_string());
        if !done {
            v["status"] = json!({"active": 1});
        }
        Arc::new(serde_json::from_value::<Job>(v).expect("job").into())
    }

    /// A Job the Job controller synced but could not create a pod for.
    fn refused(index: u32) -> Arc<BatchJob> {
        let mut v: Value =
            serde_json::from_str(include_str!("../examples/fixtures/job.json")).expect("json");
        v["metadata"]["name"] = json!(crate::job::job_name("shot", index));
        v["metadata"]["labels"][crate::job::BATCH_LABEL] = json!(index.to_string());
        v["status"] = json!({"startTime": "2026-11-23T11:02:09Z", "ready": 0});
        Arc::new(serde_json::from_value::<Job>(v).expect("job").into())
    }

    fn pod(index: u32, phase: &str) -> Arc<BatchPod> {
        let mut v: Value =
            serde_json::from_str(include_str!("../examples/fixtures/pod.json")).expect("json");
        v["metadata"]["labels"][crate::job::BATCH_LABEL] = json!(index.to_string());
        v["status"]["phase"] = json!(phase);
        Arc::new(serde_json::from_value::<Pod>(v).expect("pod").into())
    }

    #[test]
    fn one_reconcile_from_the_caches() {
        let rj = rj();
        let plan = Plan::new(&rj.spec.frames, rj.spec.batch_size).expect("plan");
        let jobs = vec![job(2, false), job(0, true), job(1, false)];
        let pods = vec![
            pod(1, "Failed"),
            pod(0, "Succeeded"),
            pod(1, "Running"),
            pod(2, "Pending"),
        ];
        assert!(jobs.iter().all(|j| owned_by(j, UID)));
        assert!(!owned_by(&jobs[0], "another"));
        assert!(pods.iter().all(|p| pod_of(p, "bench", "shot")));
        assert!(!pod_of(&pods[0], "bench", "other") && !pod_of(&pods[0], "other", "shot"));

        let old = RenderJobStatus::default();
        let seen = Observation::new("shot", plan, &old, &jobs, &pods);
        assert_eq!(seen.jobs.keys().copied().collect::<Vec<_>>(), [0, 1, 2]);
        let grouped: Vec<(u32, usize)> = seen.pods.iter().map(|(i, p)| (i, p.len())).collect();
        assert_eq!(grouped, [(0, 1), (1, 2), (2, 1)]);

        // Batch 3 is in flight: with batches 1 and 2 running, parallelism 3 leaves no slot.
        let now = Time("2026-11-23T12:00:00Z".parse().expect("time"));
        let (todo, new, _) = seen.decide(&rj, &old, &BTreeSet::from([3]), None, &now);
        assert!(todo.create.is_empty(), "{todo:?}");
        assert_eq!((new.batches.active, new.batches.pending), (3, 2));
        assert_eq!(new.succeeded_batches.as_deref(), Some("0"));

        // Nothing in flight: batch 3 is created, and counts as active in the new status.
        let (todo, new, _) = seen.decide(&rj, &old, &BTreeSet::new(), None, &now);
        assert_eq!(todo.create, [3]);
        assert_eq!((new.batches.active, new.batches.pending), (3, 2));
        assert_eq!(
            status::batch_states(&plan, &seen.jobs, &seen.recorded)[3],
            BatchState::Pending
        );
    }

    fn config() -> JobConfig {
        JobConfig::new("renderfarm/render-node:test")
    }

    /// The arguments of a Job's render-node.
    fn args_of(job: &Job) -> Vec<String> {
        job.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|p| p.containers[0].args.clone())
            .unwrap_or_default()
    }

    fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
        let at = args.iter().position(|a| a == name)?;
        args.get(at + 1).map(String::as_str)
    }

    #[test]
    fn a_running_batch_gets_one_follower_even_while_the_cache_lags() {
        let mut rj = rj();
        rj.spec.start_ahead = true;
        rj.spec.parallelism = 2;
        let t = Instant::now();
        let jobs = vec![job(0, false), job(1, false)];
        let pods = vec![pod(0, "Running"), pod(1, "Pending")];
        // No batch has reported a time per frame yet: none is started ahead.
        let fx = effects(&rj, &jobs, &pods, &mut RenderState::default(), t);
        assert!(fx.apply.is_empty());
        rj.status = Some(RenderJobStatus {
            seconds_per_frame: Some(1.0),
            ..RenderJobStatus::default()
        });
        let mut state = RenderState::default();
        // Batch 0 renders, 1 is still pending: 0 gets a follower, 1 does not yet.
        let fx = effects(&rj, &jobs, &pods, &mut state, t);
        let made: Vec<u32> = fx.apply.iter().map(|(i, _)| *i).collect();
        assert_eq!(made, [2]);
        let follower = &fx.apply[0].1;
        let annotations = follower.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            annotations
                .get(crate::job::AFTER_ANNOTATION)
                .map(String::as_str),
            Some("0")
        );
        let args = args_of(follower);
        assert_eq!(flag(&args, "--after"), Some(format!("{UID}-0").as_str()));
        assert_eq!(flag(&args, "--marker"), Some(format!("{UID}-2").as_str()));
        assert_eq!(state.in_flight_after, BTreeMap::from([(2, 0)]));

        // The cache has not caught up: no second follower for 0, and 2 takes no slot.
        let fx = effects(&rj, &jobs, &pods, &mut state, t + Duration::from_millis(50));
        assert!(
            fx.apply.is_empty(),
            "{:?}",
            fx.apply.iter().map(|(i, _)| i).collect::<Vec<_>>()
        );

        // Seen now, with 1 running too: 1 gets its follower, 3.
        let mut seen_follower: Job = follower.clone();
        seen_follower.metadata.uid = Some("follower-uid".into());
        seen_follower.metadata.creation_timestamp = jobs[0].created.clone();
        let mut jobs = jobs;
        jobs.push(Arc::new(seen_follower.into()));
        let pods = vec![pod(0, "Running"), pod(1, "Running")];
        let fx = effects(
            &rj,
            &jobs,
            &pods,
            &mut state,
            t + Duration::from_millis(100),
        );
        let made: Vec<(u32, Option<String>)> = fx
            .apply
            .iter()
            .map(|(i, j)| (*i, flag(&args_of(j), "--after").map(String::from)))
            .collect();
        assert_eq!(made, [(3, Some(format!("{UID}-1")))]);
        assert!(
            !state.in_flight_after.contains_key(&2),
            "seen: no longer in flight"
        );
    }

    #[test]
    fn with_other_renders_going_a_render_keeps_two_jobs_waiting_for_pods() {
        let mut rj = rj();
        rj.spec.parallelism = 5;
        let plan = Plan::new(&rj.spec.frames, rj.spec.batch_size).expect("plan");
        let old = RenderJobStatus::default();
        let now = Time("2026-11-23T12:00:00Z".parse().expect("time"));
        let create = |jobs: &[Arc<BatchJob>], pods: &[Arc<BatchPod>], sent: &[u32], sharing| {
            let mut seen = Observation::new("shot", plan, &old, jobs, pods);
            seen.sharing = sharing;
            let in_flight = sent.iter().copied().collect();
            seen.decide(&rj, &old, &in_flight, None, &now).0.create
        };
        let with = |i: u32, change: fn(&mut BatchJob)| {
            let mut j = (*job(i, false)).clone();
            change(&mut j);
            Arc::new(j)
        };
        let none: [u32; 0] = [];
        // Alone, a render fills every slot at once.
        assert_eq!(create(&[], &[], &[], false), [0, 1, 2, 3, 4]);
        // With others, two at first; none more while those are sent, or seen without pods.
        assert_eq!(create(&[], &[], &[], true), [0, 1]);
        assert_eq!(create(&[], &[], &[0, 1], true), none);
        let (j0, j1) = (job(0, false), job(1, false));
        assert_eq!(create(&[j0.clone(), j1.clone()], &[], &[], true), none);
        // Each pod made lets one more Job go.
        let pending = [pod(0, "Pending")];
        assert_eq!(create(&[j0.clone(), j1.clone()], &pending, &[], true), [2]);
        let both = [pod(0, "Running"), pod(1, "Pending")];
        assert_eq!(create(&[j0, j1.clone()], &both, &[], true), [2, 3]);
        // Finished Jobs, and Jobs waiting for Kueue or a resume rather than a pod, do not count.
        assert_eq!(
            create(&[job(0, true), job(1, true)], &[], &[], true),
            [2, 3]
        );
        let queued = with(0, |j| j.queued = true);
        let paused = with(1, |j| j.suspended = true);
        assert_eq!(create(&[queued, paused], &[], &[], true), [2, 3]);
        // A Job whose pod is not made yet and one sent: the render waits.
        assert_eq!(create(&[j1], &[], &[2], true), none);
    }

    fn effects(
        rj: &RenderJob,
        jobs: &[Arc<BatchJob>],
        pods: &[Arc<BatchPod>],
        state: &mut RenderState,
        now: Instant,
    ) -> Effects {
        let input = Input {
            rj,
            jobs,
            pods,
            synced: true,
            disrupted: &|_| 0,
            taken: &[],
            active: 1,
        };
        let wall = Time("2026-11-23T12:00:00Z".parse().expect("time"));
        decide(&input, state, &config(), now, &wall).expect("decide")
    }

    #[test]
    fn creations_are_marked_in_flight_before_they_are_sent() {
        let rj = rj();
        let (mut state, t0) = (RenderState::default(), Instant::now());
        let fx = effects(&rj, &[], &[], &mut state, t0);
        let applied: Vec<u32> = fx.apply.iter().map(|(i, _)| *i).collect();
        assert_eq!(applied, [0, 1, 2], "parallelism 3");
        assert_eq!(fx.apply[1].1.metadata.name.as_deref(), Some("shot-0001"));
        assert_eq!(
            state.in_flight.keys().copied().collect::<Vec<_>>(),
            [0, 1, 2]
        );
        let w = fx.status.as_ref().expect("a first status");
        assert_eq!((w.status.batches.active, w.status.batches.pending), (3, 3));
        assert!(w.events.is_empty(), "{:?}", w.events);
        // The marks hold: the same cache again creates nothing more.
        let again = effects(&rj, &[], &[], &mut state, t0 + Duration::from_secs(1));
        assert!(again.apply.is_empty());
    }

    #[test]
    fn settling_keeps_unknown_outcomes_in_flight_and_reports_creations() {
        let rj = rj();
        let (mut state, t0) = (RenderState::default(), Instant::now());
        let fx = effects(&rj, &[], &[], &mut state, t0);
        let note = fx.settle(
            &mut state,
            &[
                (0, Applied::Created),
                (1, Applied::Refused("exceeded quota".into())),
                (2, Applied::Unknown),
            ],
            t0,
        );
        assert_eq!(note, None, "no Event while an apply failed");
        assert_eq!(state.in_flight.keys().copied().collect::<Vec<_>>(), [0, 2]);
        // At once, the refusal holds creation back and shows in status, with a warning.
        let fx = effects(&rj, &[], &[], &mut state, t0);
        assert!(fx.apply.is_empty());
        let w = fx.status.clone().expect("status");
        let progressing = w
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == status::PROGRESSING)
            .expect("Progressing");
        assert_eq!(
            (progressing.status.as_str(), progressing.reason.as_str()),
            ("False", "JobRejected")
        );
        assert_eq!(
            progressing.message,
            "batch 1 (Job shot-0001) was refused by the API server: exceeded quota"
        );
        assert_eq!(reasons(&w.events), ["JobRejected"]);
        // Soon: batch 0's creation is still to be reported; at the latest when the hold ends.
        assert_eq!(fx.requeue(&state, t0), Some(Duration::from_millis(100)));
        state.created = Default::default();
        assert_eq!(fx.requeue(&state, t0), Some(Duration::from_secs(2)));
        state.created.add([0]);
        // Two seconds later it is tried again, goes through, and batch 0's creation is
        // reported with batch 1's.
        let t2 = t0 + Duration::from_secs(2);
        let fx = effects(&rj, &[], &[], &mut state, t2);
        assert_eq!(fx.apply.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [1]);
        let note = fx.settle(&mut state, &[(1, Applied::Created)], t2);
        assert_eq!(
            note,
            Some(Note::normal(
                "BatchesCreated",
                "Created 2 batch Jobs (shot-0000 to shot-0001), batches 0-1"
            ))
        );
        assert_eq!(state.rejection, None);
        // Come back when batch 2's mark runs out.
        let wake = fx
            .requeue(&state, t0 + Duration::from_secs(50))
            .expect("requeue");
        assert_eq!(wake, Duration::from_millis(10_100));
    }

    #[test]
    fn a_5xx_keeps_a_batch_in_flight_only_briefly_and_a_timeout_for_the_full_time() {
        let rj = rj();
        let (mut state, t0) = (RenderState::default(), Instant::now());
        let fx = effects(&rj, &[], &[], &mut state, t0);
        fx.settle(
            &mut state,
            &[(0, Applied::ServerError), (1, Applied::Unknown)],
            t0,
        );
        assert_eq!(state.in_flight.get(&0), Some(&(t0 + IN_FLIGHT_AFTER_5XX)));
        assert_eq!(
            state.in_flight.get(&1),
            Some(&(t0 + crate::state::IN_FLIGHT_TTL))
        );
        // Once the short mark runs out, batch 0 is tried again; batch 1 still waits.
        let later = t0 + IN_FLIGHT_AFTER_5XX;
        let fx = effects(&rj, &[], &[], &mut state, later);
        assert_eq!(fx.apply.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0]);
        // Unanswered, batch 1 is never applied again blind, however long: only once a read
        // found no Job.
        assert_eq!(state.unanswered, BTreeSet::from([1]));
        let much_later = t0 + crate::state::IN_FLIGHT_TTL * 3;
        let fx = effects(&rj, &[], &[], &mut state, much_later);
        assert!(fx.apply.iter().all(|(i, _)| *i != 1), "{:?}", fx.apply);
        state.read_back(1, false, much_later);
        let fx = effects(&rj, &[], &[], &mut state, much_later);
        assert!(fx.apply.iter().any(|(i, _)| *i == 1), "{:?}", fx.apply);
    }

    #[test]
    fn counts_wait_for_the_next_write_and_transitions_do_not() {
        let rj = rj();
        let t0 = Instant::now();
        let running = [job(0, false), job(1, false), job(2, false)];
        let pods = [pod(0, "Running")];
        let mut state = RenderState::default();
        let fx = effects(&rj, &running, &pods, &mut state, t0);
        let first = fx.status.clone().expect("status");
        assert_eq!(first.status.phase, Phase::Running);
        assert_eq!(reasons(&first.events), ["Rendering"]);
        fx.wrote(&mut state, t0);

        // A second pod runs 300 ms later: only a count changed, so the write waits.
        let pods = [pod(0, "Running"), pod(1, "Running")];
        let soon = t0 + Duration::from_millis(300);
        let fx = effects(&rj, &running, &pods, &mut state, soon);
        assert!(fx.status.is_none());
        assert_eq!(fx.requeue(&state, soon), Some(Duration::from_millis(700)));
        // A second later it goes out.
        let later = t0 + STATUS_EVERY;
        let fx = effects(&rj, &running, &pods, &mut state, later);
        assert_eq!(fx.status.expect("status").status.pods.running, 2);

        // A batch finishing is counted; the render staying Running makes no Event.
        let done = [job(0, true), job(1, false), job(2, false)];
        let fx = effects(&rj, &done, &pods, &mut state, t0 + Duration::from_secs(5));
        let w = fx.status.expect("status");
        assert_eq!(w.progress.succeeded, 1);
        assert_eq!(w.progress.frames, 1);
        assert_eq!(w.progress.batch_seconds, [2.0]);
        assert!(w.events.is_empty());
        // Batch 3 takes the free slot.
        assert_eq!(fx.apply.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [3]);
    }

    #[test]
    fn passes_of_a_render_are_spaced_while_batches_are_left_to_create() {
        assert_eq!(pass_every(0), Duration::ZERO);
        assert_eq!(pass_every(1), Duration::from_millis(2));
        assert_eq!(pass_every(100), Duration::from_millis(200));
        assert_eq!(pass_every(10_000), MAX_PASS_EVERY);
        assert_eq!(pass_every(usize::MAX), MAX_PASS_EVERY);

        let t0 = Instant::now();
        let every = Duration::from_millis(200);
        let mut state = RenderState::default();
        assert_eq!(
            pass_wait(&state, t0, every),
            None,
            "the first pass goes at once"
        );
        state.last_pass = Some(t0);
        // The last pass left batches to create (as `decide` records).
        let fx = effects(&rj(), &[], &[], &mut state, t0);
        assert!(state.left_to_create && fx.apply.len() == 3);
        let soon = t0 + Duration::from_millis(50);
        assert_eq!(
            pass_wait(&state, soon, every),
            Some(Duration::from_millis(150))
        );
        assert_eq!(pass_wait(&state, t0 + every, every), None);
        // Every batch created: the last ones are seen done at once.
        let all: Vec<Arc<BatchJob>> = (0..6).map(|i| job(i, i < 3)).collect();
        effects(&rj(), &all, &[], &mut state, soon);
        assert!(!state.left_to_create);
        assert_eq!(pass_wait(&state, soon, every), None);
    }

    #[test]
    fn renders_going_at_once_share_the_status_write_budget() {
        assert_eq!(status_every(0), STATUS_EVERY);
        assert_eq!(status_every(1), STATUS_EVERY);
        assert_eq!(
            status_every(STATUS_WRITES_PER_SECOND as usize),
            STATUS_EVERY
        );
        assert_eq!(status_every(100), Duration::from_secs(50));
        assert_eq!(status_every(7), Duration::from_millis(3500));
        assert_eq!(status_every(usize::MAX), status_every(u32::MAX as usize));
        assert_eq!(created_every(STATUS_EVERY), events::EVERY);
        assert_eq!(created_every(status_every(100)), Duration::from_secs(1500));

        // One of 100 renders: a count waits 50 s after the last write; a transition does not.
        let rj = rj();
        let t0 = Instant::now();
        let running = [job(0, false), job(1, false), job(2, false)];
        let wall = Time("2026-11-23T12:00:00Z".parse().expect("time"));
        let mut state = RenderState::default();
        let decide_at = |state: &mut RenderState,
                         jobs: &[Arc<BatchJob>],
                         pods: &[Arc<BatchPod>],
                         at: Instant| {
            let input = Input {
                rj: &rj,
                jobs,
                pods,
                synced: true,
                disrupted: &|_| 0,
                taken: &[],
                active: 100,
            };
            decide(&input, state, &config(), at, &wall).expect("decide")
        };
        let one = [pod(0, "Running"), pod(1, "Pending"), pod(2, "Pending")];
        let fx = decide_at(&mut state, &running, &one, t0);
        fx.wrote(&mut state, t0);
        let two = [pod(0, "Running"), pod(1, "Running"), pod(2, "Pending")];
        let soon = t0 + Duration::from_secs(5);
        let fx = decide_at(&mut state, &running, &two, soon);
        assert!(fx.status.is_none());
        assert_eq!(fx.requeue(&state, soon), Some(Duration::from_secs(45)));
        let fx = decide_at(&mut state, &running, &two, t0 + Duration::from_secs(50));
        assert_eq!(fx.status.as_ref().expect("status").status.pods.running, 2);
        fx.wrote(&mut state, t0 + Duration::from_secs(50));
        // Every batch succeeded: the render is over, and says so at once.
        let all: Vec<Arc<BatchJob>> = (0..6).map(|i| job(i, true)).collect();
        let fx = decide_at(&mut state, &all, &[], t0 + Duration::from_secs(51));
        assert_eq!(fx.status.expect("status").status.phase, Phase::Succeeded);
    }

    #[test]
    fn nothing_changed_nothing_to_do() {
        let rj = rj();
        let t0 = Instant::now();
        let running = [job(0, false), job(1, false), job(2, false)];
        let pods = [pod(0, "Running"), pod(1, "Running"), pod(2, "Running")];
        let mut state = RenderState::default();
        let fx = effects(&rj, &running, &pods, &mut state, t0);
        fx.wrote(&mut state, t0);
        let fx = effects(
            &rj,
            &running,
            &pods,
            &mut state,
            t0 + Duration::from_secs(10),
        );
        assert!(fx.is_empty(), "{fx:?}");
        assert_eq!(
            fx.requeue(&state, t0 + Duration::from_secs(10)),
            Some(BUSY_RECHECK),
            "a render still going is looked at again"
        );
    }

    #[test]
    fn jobs_of_a_deleted_renderjob_of_the_same_name_are_never_taken_over() {
        let rj = rj();
        // Batch 1's Job still belongs to the RenderJob "shot" that was deleted.
        let old = job(1, false);
        assert!(predecessor_of(&old, "bench", "shot", "a-new-uid"));
        assert!(!predecessor_of(&old, "bench", "shot", UID));
        let taken = [old];
        let input = Input {
            rj: &rj,
            jobs: &[],
            pods: &[],
            synced: true,
            disrupted: &|_| 0,
            taken: &taken,
            active: 1,
        };
        let wall = Time("2026-11-23T12:00:00Z".parse().expect("time"));
        let mut state = RenderState::default();
        let fx = decide(&input, &mut state, &config(), Instant::now(), &wall).expect("decide");
        let created: Vec<u32> = fx.apply.iter().map(|(i, _)| *i).collect();
        assert_eq!(created, [0, 2], "batch 1 waits until the old Job is gone");
        let s = fx.status.expect("status").status;
        assert_eq!((s.batches.active, s.batches.pending), (2, 4));
    }

    #[test]
    fn a_batch_disrupted_too_often_is_stopped_as_evicted() {
        let rj = rj();
        let jobs = [job(0, false), job(1, false)];
        let pods = [pod(0, "Running"), pod(1, "Running")];
        let input = Input {
            rj: &rj,
            jobs: &jobs,
            pods: &pods,
            synced: true,
            disrupted: &|uid| {
                if uid == "09337701-0a9c-4937-8cdf-ec15072d9597" {
                    5
                } else {
                    0
                }
            },
            taken: &[],
            active: 1,
        };
        let wall = Time("2026-11-23T12:00:00Z".parse().expect("time"));
        let mut state = RenderState::default();
        let fx = decide(&input, &mut state, &config(), Instant::now(), &wall).expect("decide");
        // The fixtures' Jobs share one UID: both are stopped.
        let stopped: Vec<&str> = fx.stop.iter().map(|(j, _)| j.as_str()).collect();
        assert_eq!(stopped, ["shot-0000", "shot-0001"]);
        assert!(fx.stop[0].1.starts_with("Evicted: "), "{}", fx.stop[0].1);
        let input = Input {
            disrupted: &|_| MAX_DISRUPTIONS - 1,
            ..input
        };
        let fx = decide(&input, &mut state, &config(), Instant::now(), &wall).expect("decide");
        assert!(fx.stop.is_empty());
    }

    #[test]
    fn a_batch_whose_pod_succeeded_is_done_before_its_job_completes() {
        let rj = rj();
        let t0 = Instant::now();
        // Parallelism 3; batch 0's pod succeeded, its Job not yet Complete: counted, but its
        // slot is held until the Job is finished.
        let jobs = [job(0, false), job(1, false), job(2, false)];
        let pods = [pod(0, "Succeeded"), pod(1, "Running"), pod(2, "Running")];
        let mut state = RenderState::default();
        let fx = effects(&rj, &jobs, &pods, &mut state, t0);
        assert!(fx.apply.is_empty(), "{:?}", fx.apply);
        let w = fx.status.expect("status");
        assert_eq!(
            (w.status.batches.succeeded, w.status.batches.active),
            (1, 2)
        );
        // Every pod succeeded, no Job complete yet: the render is.
        let jobs: Vec<_> = (0..6).map(|i| job(i, false)).collect();
        let pods: Vec<_> = (0..6).map(|i| pod(i, "Succeeded")).collect();
        let fx = effects(&rj, &jobs, &pods, &mut RenderState::default(), t0);
        let w = fx.status.expect("status");
        assert_eq!(w.status.phase, Phase::Succeeded, "{:?}", w.status);
        assert!(w.status.completion_time.is_some(), "{:?}", w.status);
        // A failed pod and its retry still running: the batch runs.
        let pods = [pod(0, "Failed"), pod(0, "Running")];
        let plan = Plan::new(&rj.spec.frames, rj.spec.batch_size).expect("plan");
        let seen = Observation::new("shot", plan, &RenderJobStatus::default(), &jobs, &pods);
        let slots = status::batch_states(&seen.plan, &seen.jobs, &seen.recorded);
        let states = status::rendered_states(&slots, &seen.pods);
        assert_eq!(states[0], BatchState::Active);
    }

    #[test]
    fn a_podless_job_is_inspected_only_once_the_job_controller_has_tried() {
        let rj = rj();
        let t0 = Instant::now();
        let pods = [pod(0, "Running")];
        // Not synced yet (no startTime), or a pod the pod cache has not seen yet (active 1):
        // no FailedCreate Event can explain it, so the Events are not read.
        let mut unsynced = (*refused(1)).clone();
        unsynced.start_time = None;
        let mut counted = (*refused(1)).clone();
        counted.active = true;
        for late in [unsynced, counted] {
            let jobs = [job(0, false), Arc::new(late)];
            let fx = effects(&rj, &jobs, &pods, &mut RenderState::default(), t0);
            assert_eq!(fx.inspect, None);
        }
        let jobs = [job(0, false), refused(1)];
        let fx = effects(&rj, &jobs, &pods, &mut RenderState::default(), t0);
        assert_eq!(fx.inspect.as_deref(), Some("shot-0001"));
    }

    #[test]
    fn a_job_whose_pod_is_refused_holds_the_render_and_says_why() {
        let rj = rj();
        let t0 = Instant::now();
        // Batch 0 runs; batch 1's Job has had no pod for an hour: the Job controller started
        // it and counts none.
        let jobs = [job(0, false), refused(1)];
        let pods = [pod(0, "Running")];
        let mut state = RenderState::default();
        let fx = effects(&rj, &jobs, &pods, &mut state, t0);
        assert_eq!(fx.inspect.as_deref(), Some("shot-0001"));
        let why =
            "pods \"shot-0001-x\" is forbidden: exceeded quota: mem, must specify limits.memory";
        assert!(fx.inspected(&mut state, Some(why.into())));
        assert!(
            !fx.inspected(&mut state, Some(why.into())),
            "the same again is no change"
        );
        // Shown at once, creation held; the Events are read again only after a while.
        let fx = effects(
            &rj,
            &jobs,
            &pods,
            &mut state,
            t0 + Duration::from_millis(100),
        );
        assert!(
            fx.apply.is_empty(),
            "no more Jobs whose pods would be refused"
        );
        assert_eq!(fx.inspect, None);
        let w = fx.status.clone().expect("status");
        let p = w
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == status::PROGRESSING)
            .expect("Progressing");
        assert_eq!(
            (p.status.as_str(), p.reason.as_str()),
            ("False", "PodRejected")
        );
        assert_eq!(
            p.message,
            format!("Job shot-0001 cannot create its pod: {why}")
        );
        assert_eq!(reasons(&w.events), ["PodRejected", "Rendering"]);
        fx.wrote(&mut state, t0);
        // The pod appears: the hold is gone.
        let pods = [pod(0, "Running"), pod(1, "Pending")];
        let fx = effects(&rj, &jobs, &pods, &mut state, t0 + Duration::from_secs(2));
        assert_eq!(state.pod_rejection, None);
        let w = fx.status.expect("status");
        let p = w
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == status::PROGRESSING);
        assert_eq!(p.map(|c| c.reason.as_str()), Some("Rendering"));
    }

    #[test]
    fn no_decision_on_a_half_filled_cache_or_a_deleted_renderjob() {
        let mut rj = rj();
        let mut state = RenderState::default();
        let input = Input {
            rj: &rj,
            jobs: &[],
            pods: &[],
            synced: false,
            disrupted: &|_| 0,
            taken: &[],
            active: 1,
        };
        let wall = Time("2026-11-23T12:00:00Z".parse().expect("time"));
        let now = Instant::now();
        let fx = decide(&input, &mut state, &config(), now, &wall).expect("decide");
        assert!(fx.is_empty());
        assert_eq!(fx.requeue(&state, now), Some(NOT_SYNCED));
        rj.metadata.deletion_timestamp = Some(wall.clone());
        let fx = effects(&rj, &[], &[], &mut state, now);
        assert!(fx.is_empty());
        assert_eq!(fx.requeue(&state, now), None);
        assert_eq!(state, RenderState::default());
    }

    #[test]
    fn a_blender_version_not_offered_fails_at_once_naming_the_offered_ones() {
        let mut rj = rj();
        rj.spec.blender_version = Some("3.4".into());
        let mut state = RenderState::default();
        let now = Instant::now();
        let fx = effects(&rj, &[], &[], &mut state, now);
        assert!(fx.apply.is_empty(), "no Job for a version that cannot run");
        let w = fx.status.expect("status");
        assert_eq!(w.status.phase, Phase::Failed);
        let c = w
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == status::FAILED)
            .expect("Failed");
        assert_eq!(c.reason, "UnknownBlenderVersion");
        assert_eq!(
            c.message,
            "blenderVersion 3.4 is not offered here; this cluster offers 4.5"
        );
        assert_eq!(reasons(&w.events), ["UnknownBlenderVersion"]);
    }

    #[test]
    fn an_unplannable_spec_fails_once_with_a_warning() {
        let mut rj = rj();
        rj.spec.batch_size = 0;
        let mut state = RenderState::default();
        let now = Instant::now();
        let fx = effects(&rj, &[], &[], &mut state, now);
        let w = fx.status.clone().expect("status");
        assert_eq!(w.status.phase, Phase::Failed);
        assert_eq!(reasons(&w.events), ["InvalidSpec"]);
        assert!(w.events[0].warning);
        assert_eq!(fx.requeue(&state, now), None);
        rj.status = Some(w.status);
        assert!(effects(&rj, &[], &[], &mut state, now).is_empty());
    }

    /// The preview Job (`done`: None running, Some(true) complete, Some(false) failed).
    fn preview_job(done: Option<bool>) -> Arc<BatchJob> {
        let mut v: Value =
            serde_json::from_str(include_str!("../examples/fixtures/job.json")).expect("json");
        v["metadata"]["name"] = json!("shot-preview");
        let labels = v["metadata"]["labels"].as_object_mut().expect("labels");
        labels.remove(crate::job::BATCH_LABEL);
        labels.insert(crate::job::STEP_LABEL.into(), json!("preview"));
        v["status"] = match done {
            None => json!({"active": 1}),
            Some(true) => json!({"conditions": [{"type": "Complete", "status": "True"}]}),
            Some(false) => json!({"failed": 2, "conditions": [{"type": "Failed",
                "status": "True", "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit"}]}),
        };
        Arc::new(serde_json::from_value::<Job>(v).expect("job").into())
    }

    /// The preview Job's pod, with `render-preview`'s report.
    fn preview_pod(phase: &str, report: &render_contract::PreviewReport) -> Arc<BatchPod> {
        let mut v: Value =
            serde_json::from_str(include_str!("../examples/fixtures/pod.json")).expect("json");
        let labels = v["metadata"]["labels"].as_object_mut().expect("labels");
        labels.remove(crate::job::BATCH_LABEL);
        labels.insert(crate::job::STEP_LABEL.into(), json!("preview"));
        v["status"]["phase"] = json!(phase);
        let t = &mut v["status"]["containerStatuses"][0]["state"]["terminated"];
        t["message"] = json!(serde_json::to_string(report).expect("json"));
        if phase == "Failed" {
            t["exitCode"] = json!(1);
        }
        Arc::new(serde_json::from_value::<Pod>(v).expect("pod").into())
    }

    fn all_done() -> Vec<Arc<BatchJob>> {
        (0..6).map(|i| job(i, true)).collect()
    }

    fn preview_of(s: &RenderJobStatus) -> (PreviewState, String, String) {
        let p = s.preview.clone().expect("status.preview");
        let c = s
            .conditions
            .iter()
            .find(|c| c.type_ == preview::PREVIEW_READY)
            .expect("PreviewReady");
        (p.state, c.status.clone(), c.reason.clone())
    }

    #[test]
    fn the_preview_job_comes_once_every_batch_succeeded_and_only_once() {
        let rj = rj();
        let t0 = Instant::now();
        let mut state = RenderState::default();
        // Five of six batches done: no preview yet.
        let mut jobs: Vec<Arc<BatchJob>> = (0..5).map(|i| job(i, true)).collect();
        jobs.push(job(5, false));
        let fx = effects(&rj, &jobs, &[], &mut state, t0);
        assert!(fx.preview.is_none());
        let w = fx.status.clone().expect("status");
        assert_eq!(
            preview_of(&w.status),
            (PreviewState::Pending, "False".into(), "Pending".into())
        );
        fx.wrote(&mut state, t0);

        // The last one succeeds: the preview Job is sent, marked in flight, status Running.
        let t1 = t0 + Duration::from_secs(2);
        let fx = effects(&rj, &all_done(), &[], &mut state, t1);
        let job = fx.preview.clone().expect("the preview Job");
        assert_eq!(job.metadata.name.as_deref(), Some("shot-preview"));
        assert_eq!(job, crate::job::build_preview(&rj, &config()).expect("job"));
        assert!(state.preview_in_flight.is_some());
        let w = fx.status.clone().expect("status");
        assert_eq!(w.status.phase, Phase::Succeeded, "the frames are done");
        assert_eq!(
            preview_of(&w.status),
            (PreviewState::Running, "False".into(), "Running".into())
        );
        fx.settle_preview(&mut state, &Applied::Created, t1);
        fx.wrote(&mut state, t1);
        assert_eq!(
            fx.requeue(&state, t1).map(|d| d > Duration::ZERO),
            Some(true),
            "comes back while the preview runs"
        );

        // The cache has not caught up: the mark holds, nothing is sent again.
        let fx = effects(
            &rj,
            &all_done(),
            &[],
            &mut state,
            t1 + Duration::from_secs(1),
        );
        assert!(fx.preview.is_none());

        // Seen running, then complete with its report: Ready, and an Event.
        let mut jobs = all_done();
        jobs.push(preview_job(None));
        let fx = effects(&rj, &jobs, &[], &mut state, t1 + Duration::from_secs(2));
        assert!(fx.preview.is_none() && state.preview_in_flight.is_none());
        let report = render_contract::PreviewReport {
            ok: true,
            frames: 6,
            columns: 3,
            rows: 2,
            message: None,
        };
        let mut jobs = all_done();
        jobs.push(preview_job(Some(true)));
        let pods = [preview_pod("Succeeded", &report)];
        let fx = effects(&rj, &jobs, &pods, &mut state, t1 + Duration::from_secs(5));
        assert!(fx.preview.is_none());
        let w = fx.status.clone().expect("status");
        assert_eq!(
            preview_of(&w.status),
            (PreviewState::Ready, "True".into(), "Ready".into())
        );
        let p = w.status.preview.clone().expect("preview");
        assert_eq!(p.video.as_deref(), Some("renders/shot/preview.mp4"));
        assert_eq!(p.contact_sheet.as_deref(), Some("renders/shot/contact.jpg"));
        assert_eq!((p.frames, p.columns, p.rows), (Some(6), Some(3), Some(2)));
        assert_eq!(reasons(&w.events), ["PreviewReady"]);
        assert!(!w.events[0].warning);
        assert!(fx.delete.is_empty(), "cleanup Keep keeps the preview Job");
        fx.wrote(&mut state, t1 + Duration::from_secs(5));

        // Its Job gone (deleted by hand), the operator restarted: Ready stays, no new Job.
        let mut fresh = RenderState::default();
        let mut rj = rj.clone();
        rj.status = Some(w.status.clone());
        let fx = effects(
            &rj,
            &all_done(),
            &[],
            &mut fresh,
            t1 + Duration::from_secs(9),
        );
        assert!(fx.preview.is_none());
        assert!(fx.status.is_none(), "{:?}", fx.status);
    }

    #[test]
    fn a_failed_preview_fails_only_the_preview() {
        let rj = rj();
        let t0 = Instant::now();
        let mut state = RenderState::default();
        let mut jobs = all_done();
        jobs.push(preview_job(Some(false)));
        let report = render_contract::PreviewReport {
            ok: false,
            frames: 0,
            columns: 0,
            rows: 0,
            message: Some("ffmpeg: frame_0004.png is not an image".into()),
        };
        let pods = [preview_pod("Failed", &report)];
        let fx = effects(&rj, &jobs, &pods, &mut state, t0);
        let w = fx.status.clone().expect("status");
        assert_eq!(w.status.phase, Phase::Succeeded);
        assert_eq!(
            preview_of(&w.status),
            (PreviewState::Failed, "False".into(), "Failed".into())
        );
        let p = w.status.preview.clone().expect("preview");
        assert_eq!(
            p.message.as_deref(),
            Some("preview Job shot-preview failed: ffmpeg: frame_0004.png is not an image")
        );
        assert!(reasons(&w.events).contains(&"PreviewFailed"));
        assert!(
            w.events
                .iter()
                .any(|e| e.reason == "PreviewFailed" && e.warning)
        );
        assert!(w.events.iter().all(|e| e.reason != "RenderFailed"));
        fx.wrote(&mut state, t0);
        // Not made again while its Job is there.
        let fx = effects(&rj, &jobs, &pods, &mut state, t0 + Duration::from_secs(2));
        assert!(fx.preview.is_none());
        assert!(fx.status.is_none());
        // Its Job deleted: made again.
        let fx = effects(
            &rj,
            &all_done(),
            &[],
            &mut state,
            t0 + Duration::from_secs(3),
        );
        assert!(fx.preview.is_some());
        let p = fx.status.expect("status").status.preview.expect("preview");
        assert_eq!(p.state, PreviewState::Running);
    }

    #[test]
    fn a_refused_preview_job_fails_the_preview_once() {
        let rj = rj();
        let t0 = Instant::now();
        let mut state = RenderState::default();
        let fx = effects(&rj, &all_done(), &[], &mut state, t0);
        assert!(fx.preview.is_some());
        fx.settle_preview(
            &mut state,
            &Applied::Refused("denied by a ValidatingAdmissionPolicy".into()),
            t0,
        );
        let fx = effects(&rj, &all_done(), &[], &mut state, t0);
        assert!(fx.preview.is_none(), "not sent again");
        let w = fx.status.expect("status");
        assert_eq!(w.status.phase, Phase::Succeeded);
        let p = w.status.preview.expect("preview");
        assert_eq!(p.state, PreviewState::Failed);
        assert_eq!(
            p.message.as_deref(),
            Some("the API server refused the preview Job: denied by a ValidatingAdmissionPolicy")
        );
    }

    #[test]
    fn a_disabled_preview_makes_no_job() {
        let mut rj = rj();
        rj.spec.preview.enabled = false;
        let mut state = RenderState::default();
        let fx = effects(&rj, &all_done(), &[], &mut state, Instant::now());
        assert!(fx.preview.is_none());
        let w = fx.status.expect("status");
        assert_eq!(
            preview_of(&w.status),
            (PreviewState::Disabled, "False".into(), "Disabled".into())
        );
        assert!(w.events.iter().all(|e| !e.reason.starts_with("Preview")));
    }

    #[test]
    fn delete_succeeded_removes_the_preview_job_only_once_ready_is_recorded() {
        let mut rj = rj();
        rj.spec.cleanup.policy = CleanupPolicy::DeleteSucceeded;
        let t0 = Instant::now();
        let mut state = RenderState::default();
        let report = render_contract::PreviewReport {
            ok: true,
            frames: 6,
            columns: 3,
            rows: 2,
            message: None,
        };
        // Batch Jobs already cleaned up, recorded in status.
        let mut old = RenderJobStatus {
            succeeded_batches: Some("0-5".into()),
            ..Default::default()
        };
        old.phase = Phase::Succeeded;
        rj.status = Some(old);
        let jobs = [preview_job(Some(true))];
        let pods = [preview_pod("Succeeded", &report)];
        let fx = effects(&rj, &jobs, &pods, &mut state, t0);
        assert!(fx.delete.is_empty(), "not before Ready is written");
        assert!(fx.preview.is_none());
        let w = fx.status.clone().expect("status");
        assert_eq!(
            w.status.preview.as_ref().map(|p| p.state),
            Some(PreviewState::Ready)
        );
        fx.wrote(&mut state, t0);
        let fx = effects(&rj, &jobs, &pods, &mut state, t0 + Duration::from_secs(2));
        assert_eq!(fx.delete, ["shot-preview"]);
        assert!(fx.status.is_none());
        // Gone: still Ready, nothing sent again.
        fx.wrote(&mut state, t0);
        let fx = effects(&rj, &[], &[], &mut state, t0 + Duration::from_secs(4));
        assert!(fx.preview.is_none() && fx.delete.is_empty() && fx.status.is_none());
    }

    #[test]
    fn an_earlier_renderjobs_preview_job_is_waited_for() {
        let rj = rj();
        let jobs = all_done();
        let taken = [preview_job(Some(true))];
        let input = Input {
            rj: &rj,
            jobs: &jobs,
            pods: &[],
            synced: true,
            disrupted: &|_| 0,
            taken: &taken,
            active: 1,
        };
        let wall = Time("2026-11-23T12:00:00Z".parse().expect("time"));
        let mut state = RenderState::default();
        let fx = decide(&input, &mut state, &config(), Instant::now(), &wall).expect("decide");
        assert!(fx.preview.is_none());
        let p = fx.status.expect("status").status.preview.expect("preview");
        assert_eq!(p.state, PreviewState::Pending);
    }

    #[test]
    fn the_last_frame_is_the_latest_batchs_highest() {
        let rj = rj();
        let with_report = |index: u32, last: i32, at: &str| {
            let mut v: Value =
                serde_json::from_str(include_str!("../examples/fixtures/pod.json")).expect("json");
            v["metadata"]["labels"][crate::job::BATCH_LABEL] = json!(index.to_string());
            let m = render_contract::TerminationMessage {
                outcome: render_contract::Outcome::Succeeded,
                frames_rendered: 1,
                frames_skipped: 0,
                frames_missing: vec![],
                seconds_per_frame: Some(1.0),
                device: None,
                blender_version: None,
                last_frame: Some(last),
                message: None,
            };
            let t = &mut v["status"]["containerStatuses"][0]["state"]["terminated"];
            t["message"] = json!(m.to_json_bounded());
            t["finishedAt"] = json!(at);
            Arc::new(serde_json::from_value::<Pod>(v).expect("pod").into())
        };
        let jobs = [job(0, true), job(1, true), job(2, false)];
        // Batch 1 (frame 2) finished after batch 0 (frame 1).
        let pods = [
            with_report(1, 2, "2026-11-23T11:02:30Z"),
            with_report(0, 1, "2026-11-23T11:02:20Z"),
        ];
        let mut state = RenderState::default();
        let fx = effects(&rj, &jobs, &pods, &mut state, Instant::now());
        let s = fx.status.expect("status").status;
        let last = s.last_frame.clone().expect("lastFrame");
        assert_eq!(
            (last.frame, last.file.as_str(), last.thumbnail.as_str()),
            (
                2,
                "renders/shot/frame_0002.png",
                "renders/shot/.thumbs/frame_0002.jpg"
            )
        );
        // Batch 1's pod cleaned up, batch 0's still there: the recorded one stays.
        let mut rj = rj.clone();
        rj.status = Some(s);
        let mut state = RenderState::default();
        let fx = effects(&rj, &jobs, &pods[1..], &mut state, Instant::now());
        let kept = fx
            .status
            .and_then(|w| w.status.last_frame)
            .or(rj.status.and_then(|s| s.last_frame));
        assert_eq!(kept.map(|l| l.frame), Some(2));
    }

    fn reasons(notes: &[Note]) -> Vec<&str> {
        notes.iter().map(|n| n.reason).collect()
    }
}
