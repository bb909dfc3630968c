//! Jobs + pods → RenderJob status: pure functions, so every rule is a table-driven test.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::batch::BatchState;
use crate::cache::{BatchJob, BatchPod, Finished, PodPhase};
use crate::crd::{
    BatchCounts, FailedBatch, FrameCounts, MAX_FAILED_BATCHES_LISTED, Phase, PodCounts, RenderJob,
    RenderJobStatus,
};
use crate::index;
use crate::job::JobNames;
use crate::plan::Plan;
use crate::pod::{PodProblem, short};
#[cfg(test)]
use crate::ranges::{decode_ranges, encode_ranges};
use crate::ranges::{encode_sorted, ranges};

pub const COMPLETE: &str = "Complete";
pub const FAILED: &str = "Failed";
pub const PROGRESSING: &str = "Progressing";
pub const SUSPENDED: &str = "Suspended";
pub const INVALID_SPEC: &str = "InvalidSpec";
/// Most missing files the status lists.
const MAX_MISSING_LISTED: usize = 20;

/// The batch Jobs of one RenderJob, by batch index (Jobs whose name is not the batch's
/// deterministic name are ignored).
pub fn jobs_by_batch<'a>(
    rj_name: &str,
    plan: &Plan,
    jobs: impl IntoIterator<Item = &'a BatchJob>,
) -> index::Jobs<'a> {
    let names = JobNames::new(rj_name);
    let mine = jobs.into_iter().filter_map(|job| {
        let index = job.batch?;
        let ok = index < plan.len() && names.is(&job.name, index);
        ok.then_some((index, job))
    });
    index::Jobs::new(plan.len(), mine)
}

/// Finished, and how, by the Job's own conditions.
pub fn job_state(job: &BatchJob) -> BatchState {
    match job.finished {
        Some(Finished::Complete) => BatchState::Succeeded,
        Some(Finished::Failed(_)) => BatchState::Failed,
        None => BatchState::Active,
    }
}

/// What a batch has rendered, from its slot (see [`batch_states`]): succeeded as soon as one
/// of its pods has, while its Job is not finished yet. Such a pod saved the batch's frames; the
/// Job controller's `Complete` came seconds later with many renders at once, and the render's
/// counts and its `Complete` need not wait for it.
pub fn batch_state(slot: BatchState, pods: &[&BatchPod]) -> BatchState {
    match slot {
        BatchState::Active if succeeded_pod(pods).is_some() => BatchState::Succeeded,
        state => state,
    }
}

/// The batch's pod that succeeded, if one has.
pub fn succeeded_pod<'a>(pods: &[&'a BatchPod]) -> Option<&'a BatchPod> {
    pods.iter()
        .copied()
        .find(|p| p.phase == PodPhase::Succeeded)
}

/// When a succeeded batch ended: its Job's completion, or before that its pod's end.
pub fn ended_at<'a>(job: &'a BatchJob, pods: &[&'a BatchPod]) -> Option<&'a Time> {
    job.completion_time
        .as_ref()
        .or_else(|| succeeded_pod(pods)?.finished_at.as_ref())
}

/// Every batch's state by its Job, or, once its Job is gone, by the status's record of the
/// batches that succeeded: the slots `parallelism` counts, as the Job controller and Kueue
/// do, a batch holding its slot until its Job is finished.
pub fn batch_states(
    plan: &Plan,
    jobs: &index::Jobs<'_>,
    recorded_succeeded: &index::Recorded,
) -> Vec<BatchState> {
    states_by(plan, jobs, recorded_succeeded, |_, job| job_state(job))
}

/// The same with the pods seen (see [`batch_state`]): what the status says.
pub fn rendered_states(slots: &[BatchState], pods: &index::Pods<'_>) -> Vec<BatchState> {
    (0u32..)
        .zip(slots)
        .map(|(i, slot)| batch_state(*slot, pods.of(i)))
        .collect()
}

fn states_by(
    plan: &Plan,
    jobs: &index::Jobs<'_>,
    recorded_succeeded: &index::Recorded,
    by_job: impl Fn(u32, &BatchJob) -> BatchState,
) -> Vec<BatchState> {
    (0..plan.len())
        .map(|i| match jobs.get(&i) {
            Some(job) => by_job(i, job),
            None if recorded_succeeded.contains(&i) => BatchState::Succeeded,
            None => BatchState::Pending,
        })
        .collect()
}

/// Why a failed batch failed, from its Job's Failed condition and its latest failed pod.
pub fn failed_batch(index: u32, plan: &Plan, job: &BatchJob, pods: &[&BatchPod]) -> FailedBatch {
    let cond = match &job.finished {
        Some(Finished::Failed(f)) => Some(f.as_ref()),
        _ => None,
    };
    let latest = pods
        .iter()
        .filter(|p| !p.disruption)
        .filter_map(|p| p.failure.as_deref().map(|r| (p.finished_at.as_ref(), r)))
        .max_by_key(|(at, _)| *at)
        .map(|(_, r)| r.clone());
    let deadline = cond.and_then(|c| c.reason.as_deref()) == Some("DeadlineExceeded");
    // Stopped by the operator (see `reconcile`): its reason, not the deadline it used.
    let stopped = job.stopped.as_deref().map(|s| match s.split_once(": ") {
        Some((reason, message)) => (reason.to_string(), Some(message.to_string())),
        None => (s.to_string(), None),
    });
    let (reason, exit_code, message) = match (latest, stopped) {
        (_, Some((reason, message))) => (reason, None, message),
        (Some(p), None) if !deadline => (p.reason, p.exit_code, p.message),
        (_, None) => (
            cond.and_then(|c| c.reason.clone())
                .unwrap_or_else(|| "Failed".into()),
            None,
            cond.and_then(|c| c.message.as_deref()).map(short),
        ),
    };
    FailedBatch {
        index: i64::from(index),
        frames: plan
            .batch(index)
            .map(|b| b.frames_label())
            .unwrap_or_default(),
        job: job.name.clone(),
        attempts: i64::from(job.failed),
        reason,
        exit_code,
        message,
    }
}

/// When a succeeded batch ended, and how long it took from its Job's start.
pub(crate) fn job_duration(
    job: &BatchJob,
    pods: &[&BatchPod],
) -> Option<(Timestamp, SignedDuration)> {
    let (start, end) = (job.start_time.as_ref()?.0, ended_at(job, pods)?.0);
    Some((end, end.duration_since(start)))
}

/// Sets `type_` to `status`, keeping the transition time unless the status flipped.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) {
    let status = if status { "True" } else { "False" }.to_string();
    let previous = conditions.iter().position(|c| c.type_ == type_);
    let last_transition_time = match previous.map(|i| &conditions[i]) {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => now.clone(),
    };
    let cond = Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time,
    };
    match previous {
        Some(i) => conditions[i] = cond,
        None => conditions.push(cond),
    }
}

/// Why no further batch starts: something the user must fix. Shown in `Progressing` (and in
/// `Failed` when it fails the render).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// `JobRejected`, `ClaimNotFound`, `BadInput`, `TooManyFailedBatches`.
    pub reason: String,
    pub message: String,
    /// The render fails once no batch is running: every batch would fail the same way, or
    /// enough have.
    pub fails: bool,
}

/// The render stops when a batch failed on bad input (the .blend and the arguments are the
/// same for every batch) or when `maxFailedBatches` have failed.
pub fn stop(
    rj: &RenderJob,
    plan: &Plan,
    states: &[BatchState],
    jobs: &index::Jobs<'_>,
    pods: &index::Pods<'_>,
) -> Option<Hold> {
    let failed: Vec<u32> = (0..plan.len())
        .filter(|i| states[*i as usize] == BatchState::Failed)
        .collect();
    let bad_input = failed.iter().find_map(|i| {
        let f = failed_batch(*i, plan, jobs.get(i)?, pods.of(*i));
        (f.reason == "BadInput").then_some(f)
    });
    if let Some(f) = bad_input {
        return Some(Hold {
            reason: "BadInput".into(),
            message: format!(
                "batch {} failed on input every batch shares, so no further batch starts: {}",
                f.index,
                f.message.as_deref().unwrap_or("bad input")
            ),
            fails: true,
        });
    }
    let max = rj.spec.max_failed_batches.max(1) as usize;
    (failed.len() >= max).then(|| Hold {
        reason: "TooManyFailedBatches".into(),
        message: format!(
            "{} batches failed (maxFailedBatches is {max}), so no further batch starts",
            failed.len()
        ),
        fails: true,
    })
}

/// A pod of an unfinished batch cannot start because the storage claim does not exist: no
/// other batch could start either.
pub fn claim_missing(
    rj: &RenderJob,
    states: &[BatchState],
    pods: &index::Pods<'_>,
) -> Option<Hold> {
    let stuck = pods.iter().find_map(|(i, pods)| {
        let active = states.get(i as usize) == Some(&BatchState::Active);
        pods.iter()
            .filter(|_| active)
            .find_map(|p| p.stuck.as_deref().filter(|s| s.reason == "ClaimNotFound"))
    })?;
    Some(Hold {
        reason: "ClaimNotFound".into(),
        message: format!(
            "the storage claim {:?} does not exist in this namespace; create it and the render goes on ({})",
            rj.spec.storage.claim_name,
            stuck.message.as_deref().unwrap_or_default()
        ),
        fails: false,
    })
}

/// Everything the roll-up looks at.
pub struct Observed<'a> {
    pub plan: &'a Plan,
    pub states: &'a [BatchState],
    pub jobs: &'a index::Jobs<'a>,
    /// The RenderJob's batch pods, by batch index.
    pub pods: &'a index::Pods<'a>,
    /// Why no further batch starts, if something holds the render.
    pub hold: Option<&'a Hold>,
}

/// The status `rj` should have now. Only condition transition times depend on `now`, so an
/// unchanged world gives an unchanged status and no write.
pub fn roll_up(rj: &RenderJob, seen: &Observed<'_>, now: &Time) -> RenderJobStatus {
    let prev = rj.status.clone().unwrap_or_default();
    let plan = seen.plan;
    let mut batches = batch_counts(plan, seen.states);
    let held = held(seen);
    batches.queued = held.len() as i64;
    let frames = FrameCounts {
        total: plan.total_frames(),
        rendered: succeeded(seen.states)
            .filter_map(|i| plan.batch(i))
            .map(|b| b.frame_count())
            .sum(),
    };
    let tally = PodTally::of(seen, &prev);
    let failed_batches = failed_batches(seen);
    let phase = phase(rj, &prev, &batches, &tally.pods, seen.hold);
    let times = times(rj, &prev, seen, &batches, phase);
    let conditions = conditions(
        rj,
        &prev,
        &Summary {
            phase,
            batches: &batches,
            frames: &frames,
            failed: &failed_batches,
            stuck: tally.stuck.first(),
            hold: seen.hold,
            held: held.first().copied(),
            queue: rj.spec.queue_name.as_deref(),
        },
        now,
    );
    let percent = if frames.total > 0 {
        frames.rendered * 100 / frames.total
    } else {
        0
    };
    let recorded = recorded_successes(plan, &prev, seen.states);
    RenderJobStatus {
        phase,
        conditions,
        observed_generation: rj.metadata.generation,
        progress: Some(format!("{percent}%")),
        frames_summary: Some(format!("{}/{}", frames.rendered, frames.total)),
        batches_summary: Some(format!("{}/{}", batches.succeeded, batches.total)),
        frames,
        batches,
        pods: tally.pods,
        succeeded_batches: (!recorded.is_empty()).then_some(recorded),
        failed_batches,
        start_time: times.start,
        completion_time: times.completion,
        estimated_completion_time: times.estimate,
        seconds_per_frame: tally.seconds_per_frame,
        devices_used: tally.devices.into_iter().collect(),
        blender_version: tally.blender_version,
        file_version: tally.file_version,
        missing_files: tally
            .missing_files
            .into_iter()
            .take(MAX_MISSING_LISTED)
            .collect(),
        missing_files_count: tally.missing_files_count,
        passes: tally.passes.map(|(_, p)| p).unwrap_or_default(),
        // Worked out by `reconcile::rerender`, which sees the rerender Job.
        rerenders: prev.rerenders.clone(),
        blank_frames: tally
            .blank_frames
            .into_iter()
            .take(MAX_BLANK_LISTED)
            .collect(),
        last_frame: preview::last_frame(rj, &prev, seen.pods),
        // Worked out by `preview::roll_up`, once the preview Job is decided on.
        preview: prev.preview.clone(),
        // Worked out by `reconcile::nodes`, which reads the failed pods' nodes.
        blocked_nodes: prev.blocked_nodes.clone(),
        node_faults: prev.node_faults.clone(),
    }
}

/// Indexes of the succeeded batches, in order.
fn succeeded(states: &[BatchState]) -> impl Iterator<Item = u32> + '_ {
    (0..states.len() as u32).filter(|i| states[*i as usize] == BatchState::Succeeded)
}

/// Unfinished batch Jobs suspended, but not by the operator: Kueue holds them (quota, or
/// preempted) or someone else suspended them.
fn held<'a>(seen: &Observed<'a>) -> Vec<&'a BatchJob> {
    seen.jobs
        .iter()
        .filter(|(i, j)| {
            seen.states.get(**i as usize) == Some(&BatchState::Active)
                && j.suspended
                && !j.paused
                && !j.deleting
        })
        .map(|(_, j)| *j)
        .collect()
}

fn batch_counts(plan: &Plan, states: &[BatchState]) -> BatchCounts {
    let count = |s: BatchState| states.iter().filter(|x| **x == s).count() as i64;
    BatchCounts {
        total: i64::from(plan.len()),
        pending: count(BatchState::Pending),
        active: count(BatchState::Active),
        succeeded: count(BatchState::Succeeded),
        failed: count(BatchState::Failed),
        queued: 0,
    }
}

/// What the pods say, all together.
struct PodTally {
    pods: PodCounts,
    /// Pods of unfinished batches that cannot start, by batch.
    stuck: Vec<(u32, PodProblem)>,
    seconds_per_frame: Option<f64>,
    devices: BTreeSet<String>,
    blender_version: Option<String>,
    file_version: Option<String>,
    missing_files: BTreeSet<String>,
    missing_files_count: Option<i64>,
    /// The passes of the earliest batch that reported some, with that batch.
    passes: Option<(u32, Vec<String>)>,
    blank_frames: BTreeSet<i32>,
}

/// Most frames of one flat colour the status lists.
pub const MAX_BLANK_LISTED: usize = 50;

impl PodTally {
    fn of(seen: &Observed<'_>, prev: &RenderJobStatus) -> PodTally {
        let mut tally = PodTally {
            pods: PodCounts::default(),
            stuck: Vec::new(),
            seconds_per_frame: None,
            devices: prev.devices_used.iter().cloned().collect(),
            blender_version: prev.blender_version.clone(),
            file_version: prev.file_version.clone(),
            missing_files: prev.missing_files.iter().cloned().collect(),
            missing_files_count: prev.missing_files_count,
            // Once known they stay: the first frame's passes do not change.
            passes: (!prev.passes.is_empty()).then(|| (0, prev.passes.clone())),
            blank_frames: prev.blank_frames.iter().copied().collect(),
        };
        let (mut busy_seconds, mut timed_frames) = (0.0_f64, 0_u32);
        let unfinished = |i: u32| seen.states.get(i as usize) == Some(&BatchState::Active);
        for (index, batch_pods) in seen.pods.iter() {
            let active = unfinished(index);
            // Started ahead and the batch it follows not finished: it waits, loaded.
            let waits = seen.jobs.follows_unfinished(index, unfinished).is_some();
            for pod in batch_pods {
                if waits && pod.phase == PodPhase::Running {
                    tally.pods.waiting += 1;
                } else {
                    tally.count(pod.phase);
                }
                if active && let Some(p) = &pod.stuck {
                    tally.stuck.push((index, p.as_ref().clone()));
                }
                let Some(m) = &pod.report else { continue };
                if let Some(spf) = m.seconds_per_frame.filter(|_| m.frames_rendered > 0) {
                    busy_seconds += spf * f64::from(m.frames_rendered);
                    timed_frames += m.frames_rendered;
                }
                tally.devices.extend(m.device.iter().cloned());
                if m.blender_version.is_some() {
                    tally.blender_version = m.blender_version.clone();
                }
                if m.file_version.is_some() {
                    tally.file_version = m.file_version.clone();
                }
                if m.missing_files_count > 0 {
                    tally.missing_files.extend(m.missing_files.iter().cloned());
                    let n = i64::from(m.missing_files_count);
                    tally.missing_files_count = Some(tally.missing_files_count.unwrap_or(0).max(n));
                }
                tally.checks(index, &m.checks);
            }
        }
        tally.seconds_per_frame = if timed_frames > 0 {
            Some((busy_seconds / f64::from(timed_frames) * 1000.0).round() / 1000.0)
        } else {
            prev.seconds_per_frame
        };
        tally
    }

    /// A batch's frame checks: its passes if it is the earliest batch to report some, and
    /// its flat frames.
    fn checks(&mut self, index: u32, checks: &render_contract::FrameChecks) {
        let earlier = self.passes.as_ref().is_some_and(|(i, _)| *i <= index);
        if !checks.passes.is_empty() && !earlier {
            self.passes = Some((index, checks.passes.clone()));
        }
        self.blank_frames
            .extend(checks.blank_frames.iter().copied());
    }

    fn count(&mut self, phase: PodPhase) {
        match phase {
            PodPhase::Pending => self.pods.pending += 1,
            PodPhase::Running => self.pods.running += 1,
            PodPhase::Succeeded => self.pods.succeeded += 1,
            PodPhase::Failed => self.pods.failed += 1,
            PodPhase::Unknown => {}
        }
    }
}

/// The failed batches, in batch order, at most [`MAX_FAILED_BATCHES_LISTED`].
fn failed_batches(seen: &Observed<'_>) -> Vec<FailedBatch> {
    (0..seen.plan.len())
        .filter(|i| seen.states[*i as usize] == BatchState::Failed)
        .filter_map(|i| {
            let job = seen.jobs.get(&i)?;
            Some(failed_batch(i, seen.plan, job, seen.pods.of(i)))
        })
        .take(MAX_FAILED_BATCHES_LISTED)
        .collect()
}

fn phase(
    rj: &RenderJob,
    prev: &RenderJobStatus,
    batches: &BatchCounts,
    pods: &PodCounts,
    hold: Option<&Hold>,
) -> Phase {
    let finished = batches.pending + batches.active == 0;
    let stopped = hold.is_some_and(|h| h.fails) && batches.active == 0;
    if batches.total > 0 && batches.succeeded == batches.total {
        Phase::Succeeded
    } else if (finished || stopped) && batches.failed > 0 {
        Phase::Failed
    } else if rj.spec.suspend {
        Phase::Suspended
    } else if pods.running + pods.succeeded + pods.failed > 0
        || batches.succeeded + batches.failed > 0
        // Once rendering, a render stays Running between one batch's pod and the next.
        || prev.phase == Phase::Running
    {
        Phase::Running
    } else {
        Phase::Pending
    }
}

/// Start, completion and estimated completion.
struct Times {
    start: Option<Time>,
    completion: Option<Time>,
    estimate: Option<Time>,
}

/// Derived from the Jobs and remembered once known (cleaned-up Jobs take theirs along).
fn times(
    rj: &RenderJob,
    prev: &RenderJobStatus,
    seen: &Observed<'_>,
    batches: &BatchCounts,
    phase: Phase,
) -> Times {
    let job_times = |f: fn(&BatchJob) -> Option<&Time>| {
        seen.jobs.values().filter_map(move |j| f(j).map(|t| t.0))
    };
    let start = prev
        .start_time
        .clone()
        .or_else(|| job_times(|j| j.start_time.as_ref()).min().map(Time));
    let terminal = matches!(phase, Phase::Succeeded | Phase::Failed);
    if terminal {
        let completion = prev.completion_time.clone().or_else(|| {
            let failed_at = seen.jobs.values().filter_map(|j| match &j.finished {
                Some(Finished::Failed(f)) => f.at.as_ref().map(|t| t.0),
                _ => None,
            });
            let ended = seen
                .jobs
                .iter()
                .filter_map(|(i, j)| ended_at(j, seen.pods.of(*i)));
            ended.map(|t| t.0).chain(failed_at).max().map(Time)
        });
        return Times {
            start,
            completion,
            estimate: None,
        };
    }
    let unfinished = batches.pending + batches.active;
    let estimate = eta(seen, unfinished, rj.spec.parallelism)
        .or_else(|| prev.estimated_completion_time.clone());
    Times {
        start,
        completion: None,
        estimate,
    }
}

/// Time left: mean batch duration so far × the waves of batches still to run, from the latest
/// batch to finish.
fn eta(seen: &Observed<'_>, unfinished: i64, parallelism: i32) -> Option<Time> {
    let durations: Vec<(Timestamp, SignedDuration)> = seen
        .jobs
        .iter()
        .filter_map(|(i, j)| job_duration(j, seen.pods.of(*i)))
        .collect();
    let latest = durations.iter().map(|(end, _)| *end).max()?;
    let total: f64 = durations.iter().map(|(_, d)| d.as_secs_f64()).sum();
    let mean = total / durations.len() as f64;
    let parallelism = i64::from(parallelism.max(1));
    let waves = (unfinished + parallelism - 1) / parallelism;
    let ahead = SignedDuration::from_secs_f64((mean * waves as f64).round());
    latest.checked_add(ahead).ok().map(Time)
}

/// What the conditions are worded from.
struct Summary<'a> {
    phase: Phase,
    batches: &'a BatchCounts,
    frames: &'a FrameCounts,
    failed: &'a [FailedBatch],
    /// The first pod that cannot start, and its batch.
    stuck: Option<&'a (u32, PodProblem)>,
    hold: Option<&'a Hold>,
    /// The first batch Job suspended by a queue or someone else.
    held: Option<&'a BatchJob>,
    /// The RenderJob's queue.
    queue: Option<&'a str>,
}

impl Summary<'_> {
    fn counts(&self) -> String {
        let b = self.batches;
        let queued = if b.queued > 0 {
            format!(", {} queued", b.queued)
        } else {
            String::new()
        };
        format!(
            "{} of {} batches succeeded, {} failed, {} running{queued}, {} waiting",
            b.succeeded,
            b.total,
            b.failed,
            b.active - b.queued,
            b.pending
        )
    }

    /// Who holds the queued batches.
    fn queued(&self) -> Option<String> {
        let job = self.held?;
        let n = self.batches.queued;
        let (batches, wait) = if n == 1 {
            ("batch", "waits")
        } else {
            ("batches", "wait")
        };
        Some(match self.queue.filter(|_| job.queued) {
            Some(q) => {
                format!(
                    "{n} {batches} {wait} for queue {q} (Kueue admits them as its quota allows)"
                )
            }
            None => format!(
                "{n} {batches} suspended, not by renderfarm (Job {} first): left so until whoever suspended them resumes them",
                job.name
            ),
        })
    }
}

/// Complete, Failed, Progressing and Suspended, each as `(status, reason, message)`.
fn conditions(
    rj: &RenderJob,
    prev: &RenderJobStatus,
    s: &Summary<'_>,
    now: &Time,
) -> Vec<Condition> {
    let mut conditions = prev.conditions.clone();
    conditions.retain(|c| c.type_ != INVALID_SPEC);
    let wanted = [
        (COMPLETE, complete_condition(s)),
        (FAILED, failed_condition(s)),
        (PROGRESSING, progressing_condition(s)),
        (SUSPENDED, suspended_condition(s)),
    ];
    for (type_, (status, reason, message)) in wanted {
        set_condition(
            &mut conditions,
            type_,
            status,
            reason,
            message,
            rj.metadata.generation,
            now,
        );
    }
    conditions
}

type ConditionValue<'a> = (bool, &'a str, String);

fn complete_condition<'a>(s: &Summary<'a>) -> ConditionValue<'a> {
    let done = s.phase == Phase::Succeeded;
    let reason = if done {
        "AllBatchesSucceeded"
    } else {
        "BatchesRemaining"
    };
    let message = format!(
        "{} of {} frames rendered",
        s.frames.rendered, s.frames.total
    );
    (done, reason, message)
}

fn failed_condition<'a>(s: &Summary<'a>) -> ConditionValue<'a> {
    let message = if s.failed.is_empty() {
        "no batch failed".to_string()
    } else {
        let list: Vec<String> = s
            .failed
            .iter()
            .map(|f| format!("batch {} (frames {}): {}", f.index, f.frames, f.reason))
            .collect();
        format!("{} failed: {}", s.batches.failed, list.join("; "))
    };
    if let Some(h) = s.hold.filter(|h| h.fails && s.phase == Phase::Failed) {
        return (true, h.reason.as_str(), format!("{}; {message}", h.message));
    }
    let reason = if s.phase == Phase::Failed {
        "BatchesFailed"
    } else if s.batches.failed > 0 {
        "BatchFailuresSoFar"
    } else {
        "NoFailures"
    };
    (s.phase == Phase::Failed, reason, message)
}

fn progressing_condition<'a>(s: &Summary<'a>) -> ConditionValue<'a> {
    let open = !matches!(s.phase, Phase::Succeeded | Phase::Failed | Phase::Suspended);
    if open && let Some(h) = s.hold {
        return (false, h.reason.as_str(), h.message.clone());
    }
    match (s.phase, s.stuck) {
        (Phase::Succeeded | Phase::Failed, _) => (false, "Finished", s.counts()),
        (Phase::Suspended, _) => (false, "Suspended", s.counts()),
        (_, Some((index, p))) => (
            true,
            p.reason.as_str(),
            format!(
                "batch {index} cannot start: {}: {}",
                p.reason,
                p.message.clone().unwrap_or_default()
            ),
        ),
        _ if s.batches.queued > 0 && s.batches.queued == s.batches.active => (
            true,
            "Queued",
            format!("{}; {}", s.queued().unwrap_or_default(), s.counts()),
        ),
        (phase, None) => {
            let reason = if phase == Phase::Pending {
                "Waiting"
            } else {
                "Rendering"
            };
            match s.queued() {
                Some(queued) => (true, reason, format!("{}; {queued}", s.counts())),
                None => (true, reason, s.counts()),
            }
        }
    }
}

fn suspended_condition<'a>(s: &Summary<'a>) -> ConditionValue<'a> {
    if s.phase == Phase::Suspended {
        (true, "SuspendedByUser", s.counts())
    } else {
        (false, "NotSuspended", String::new())
    }
}

/// Every success ever seen, as ranges: a cleaned-up Job's batch stays succeeded.
fn recorded_successes(plan: &Plan, prev: &RenderJobStatus, states: &[BatchState]) -> String {
    let mut recorded = vec![false; plan.len() as usize];
    let previously = prev.succeeded_batches.as_deref().unwrap_or_default();
    for (a, b) in ranges(previously) {
        for r in recorded.iter_mut().take(b as usize + 1).skip(a as usize) {
            *r = true;
        }
    }
    for i in succeeded(states) {
        recorded[i as usize] = true;
    }
    encode_sorted((0..plan.len()).filter(|i| recorded[*i as usize]))
}

/// Whether a new status must be written at once. A new phase, a condition turning true or
/// false or changing its reason, a new failed batch, a new generation seen, or the completion
/// time cannot wait; counts, progress, messages, the estimate and the start time can wait for
/// the next paced write (`reconcile::status_every`: a second with few renders going, longer
/// with many). The start time comes with the first pods, a moment after the first write and
/// before the phase turns Running.
pub fn urgent(old: &RenderJobStatus, new: &RenderJobStatus) -> bool {
    let key = |s: &RenderJobStatus| -> Vec<(String, String, String)> {
        s.conditions
            .iter()
            .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
            .collect()
    };
    old.phase != new.phase
        || old.observed_generation != new.observed_generation
        || old.failed_batches != new.failed_batches
        || old.completion_time != new.completion_time
        || key(old) != key(new)
}

/// Status for a RenderJob the operator cannot render as it is (a spec the schema let through
/// that makes no plan, a Blender version not offered): Failed, with `reason` and `why`.
pub fn invalid(rj: &RenderJob, reason: &str, why: &str, now: &Time) -> RenderJobStatus {
    let mut status = rj.status.clone().unwrap_or_default();
    status.phase = Phase::Failed;
    status.observed_generation = rj.metadata.generation;
    let g = rj.metadata.generation;
    set_condition(
        &mut status.conditions,
        INVALID_SPEC,
        true,
        reason,
        why.to_string(),
        g,
        now,
    );
    set_condition(
        &mut status.conditions,
        FAILED,
        true,
        reason,
        why.to_string(),
        g,
        now,
    );
    set_condition(
        &mut status.conditions,
        PROGRESSING,
        false,
        reason,
        why.to_string(),
        g,
        now,
    );
    status
}

pub mod preview;
pub mod rerender;

#[cfg(test)]
mod tests;
