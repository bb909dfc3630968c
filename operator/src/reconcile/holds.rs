//! What holds a render back or stops it: a refused Job or pod, batches disrupted too often,
//! a spec the operator cannot render.

use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::effects::{Effects, Progress, StatusWrite, Wake};
use super::observe::Observation;
use super::pace::{INSPECT_EVERY, PODLESS_AFTER};
use crate::crd::RenderJob;
use crate::events::Note;
use crate::state::RenderState;
use crate::status::{self, Hold};

/// What holds creation back because the API server refused something: a Job apply (until
/// the retry is due), or a Job's pod (while that Job still has none). Also asks for the
/// Events of a Job without pods to be read, at most every [`INSPECT_EVERY`].
pub(super) fn refusal(
    rj: &RenderJob,
    seen: &Observation<'_>,
    state: &mut RenderState,
    fx: &mut Effects,
    wake: &mut Wake,
    now: Instant,
    wall: &Time,
) -> Option<Hold> {
    let generation = rj.metadata.generation;
    wake.hold_until = state.holding(generation, now).map(|r| r.retry_at());
    let (podless, next) = podless_jobs(seen, wall);
    wake.inspect_due = next;
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
            wake.inspect_due = Some(wake.inspect_due.map_or(due, |d| d.min(due)));
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
pub(super) fn too_disrupted(
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

/// Unfinished, unsuspended batch Jobs older than [`PODLESS_AFTER`] with no pod in the cache
/// that the Job controller has started and counts no pod of,
/// and how soon the next younger one without a pod gets that old.
pub(super) fn podless_jobs(seen: &Observation<'_>, wall: &Time) -> (Vec<String>, Option<Duration>) {
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
pub(super) fn invalid(
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
