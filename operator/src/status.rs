//! Jobs + pods → RenderJob status: pure functions, so every rule is a table-driven test.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use render_contract::{TerminationMessage, exit};

use crate::cache::{BatchJob, BatchPod, Finished, PodPhase};
use crate::crd::{
    BatchCounts, FailedBatch, FrameCounts, MAX_FAILED_BATCHES_LISTED, Phase, PodCounts, RenderJob,
    RenderJobStatus,
};
use crate::job::{CONTAINER, JobNames};
use crate::plan::Plan;

pub const COMPLETE: &str = "Complete";
pub const FAILED: &str = "Failed";
pub const PROGRESSING: &str = "Progressing";
pub const SUSPENDED: &str = "Suspended";
pub const INVALID_SPEC: &str = "InvalidSpec";

/// Where one batch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchState {
    /// No Job yet.
    Pending,
    /// Job exists and has not finished (it may be suspended).
    Active,
    Succeeded,
    Failed,
}

/// The batch Jobs of one RenderJob, by batch index (Jobs whose name is not the batch's
/// deterministic name are ignored).
pub fn jobs_by_batch<'a>(
    rj_name: &str,
    plan: &Plan,
    jobs: &[&'a BatchJob],
) -> BTreeMap<u32, &'a BatchJob> {
    let names = JobNames::new(rj_name);
    jobs.iter()
        .filter_map(|job| {
            let index = job.batch?;
            let ok = index < plan.len() && names.is(&job.name, index);
            ok.then_some((index, *job))
        })
        .collect()
}

/// Finished, and how.
pub fn job_state(job: &BatchJob) -> BatchState {
    match job.finished {
        Some(Finished::Complete) => BatchState::Succeeded,
        Some(Finished::Failed(_)) => BatchState::Failed,
        None => BatchState::Active,
    }
}

/// The state of every batch: from its Job, or from the succeeded set kept in status when its
/// Job was cleaned up.
pub fn batch_states(
    plan: &Plan,
    jobs: &BTreeMap<u32, &BatchJob>,
    recorded_succeeded: &BTreeSet<u32>,
) -> Vec<BatchState> {
    (0..plan.len())
        .map(|i| match jobs.get(&i) {
            Some(job) => job_state(job),
            None if recorded_succeeded.contains(&i) => BatchState::Succeeded,
            None => BatchState::Pending,
        })
        .collect()
}

/// `0-4,7,9-10`: compact, since batches finish roughly in order.
pub fn encode_ranges(set: &BTreeSet<u32>) -> String {
    encode_sorted(set.iter().copied())
}

/// [`encode_ranges`] of numbers given in increasing order.
fn encode_sorted(numbers: impl Iterator<Item = u32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = numbers.peekable();
    while let Some(first) = iter.next() {
        let mut last = first;
        while iter.peek() == Some(&(last + 1)) {
            last += 1;
            iter.next();
        }
        out.push(if first == last {
            first.to_string()
        } else {
            format!("{first}-{last}")
        });
    }
    out.join(",")
}

/// Inverse of [`encode_ranges`]; unreadable parts are ignored (the Jobs are the truth then).
pub fn decode_ranges(s: &str) -> BTreeSet<u32> {
    let mut all: Vec<u32> = ranges(s).flat_map(|(a, b)| a..=b).collect();
    // Sorted input builds the set in one pass.
    all.sort_unstable();
    all.into_iter().collect()
}

/// The readable `(first, last)` ranges of an [`encode_ranges`] string.
fn ranges(s: &str) -> impl Iterator<Item = (u32, u32)> + '_ {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .filter_map(|part| {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let (a, b) = (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?);
            (a <= b && b - a < 1_000_000).then_some((a, b))
        })
}

/// Why a pod could not run or failed, in the words a user looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodProblem {
    pub reason: String,
    pub exit_code: Option<i32>,
    pub message: Option<String>,
}

fn short(s: &str) -> String {
    const MAX: usize = 300;
    let line = s.trim();
    if line.len() <= MAX {
        return line.to_string();
    }
    let mut cut = MAX;
    while !line.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &line[..cut])
}

/// Why a pending pod is stuck: Unschedulable, ImagePullBackOff, ...
pub fn stuck_reason(pod: &Pod) -> Option<PodProblem> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Pending") {
        return None;
    }
    if let Some(c) = status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    }) {
        return Some(PodProblem {
            reason: "Unschedulable".into(),
            exit_code: None,
            message: c.message.as_deref().map(short),
        });
    }
    status.container_statuses.iter().flatten().find_map(|cs| {
        let waiting = cs.state.as_ref()?.waiting.as_ref()?;
        let reason = waiting.reason.as_deref()?;
        let known = [
            "ImagePullBackOff",
            "ErrImagePull",
            "InvalidImageName",
            "CreateContainerConfigError",
            "CreateContainerError",
        ];
        known.contains(&reason).then(|| PodProblem {
            reason: if reason == "ErrImagePull" {
                "ImagePullBackOff".into()
            } else {
                reason.to_string()
            },
            exit_code: None,
            message: waiting.message.as_deref().map(short),
        })
    })
}

/// render-node's report, from the render container's termination message.
pub fn termination_message(pod: &Pod) -> Option<TerminationMessage> {
    let cs = pod
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == CONTAINER)?;
    let message = cs.state.as_ref()?.terminated.as_ref()?.message.as_deref()?;
    TerminationMessage::parse(message)
}

/// Why a failed pod failed: OOMKilled, BadInput, BlenderError, DeadlineExceeded, Evicted, ...
pub fn failure_reason(pod: &Pod) -> Option<PodProblem> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Failed") {
        return None;
    }
    let terminated = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == CONTAINER)
        .and_then(|c| c.state.as_ref()?.terminated.as_ref());
    if let Some(t) = terminated {
        let from_message = t
            .message
            .as_deref()
            .and_then(TerminationMessage::parse)
            .and_then(|m| m.message);
        let message = from_message
            .or_else(|| t.message.clone())
            .as_deref()
            .map(short)
            .filter(|m| !m.is_empty());
        let reason = match (t.reason.as_deref(), t.exit_code) {
            (Some("OOMKilled"), _) => "OOMKilled",
            (_, code) if code == exit::BAD_INPUT => "BadInput",
            (_, code) if code == exit::TERMINATED => "Terminated",
            _ => "BlenderError",
        };
        return Some(PodProblem {
            reason: reason.into(),
            exit_code: Some(t.exit_code),
            message,
        });
    }
    Some(PodProblem {
        reason: status.reason.clone().unwrap_or_else(|| "PodFailed".into()),
        exit_code: None,
        message: status.message.as_deref().map(short),
    })
}

/// Whether the pod was disrupted (evicted, preempted, its node lost): not the render's fault.
pub fn is_disruption(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "DisruptionTarget" && c.status == "True")
        })
}

/// When the pod's first terminated container finished.
pub fn finished_at(pod: &Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find_map(|c| {
            c.state
                .as_ref()?
                .terminated
                .as_ref()?
                .finished_at
                .as_ref()
                .map(|t| t.0)
        })
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
    let (reason, exit_code, message) = match latest {
        Some(p) if !deadline => (p.reason, p.exit_code, p.message),
        _ => (
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

fn job_duration(job: &BatchJob) -> Option<(Timestamp, SignedDuration)> {
    let (start, end) = (job.start_time.as_ref()?.0, job.completion_time.as_ref()?.0);
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

/// Everything the roll-up looks at.
pub struct Observed<'a> {
    pub plan: &'a Plan,
    pub states: &'a [BatchState],
    pub jobs: &'a BTreeMap<u32, &'a BatchJob>,
    /// The RenderJob's batch pods, by batch index.
    pub pods: &'a BTreeMap<u32, Vec<&'a BatchPod>>,
}

/// The status `rj` should have now. Only condition transition times depend on `now`, so an
/// unchanged world gives an unchanged status and no write.
pub fn roll_up(rj: &RenderJob, seen: &Observed<'_>, now: &Time) -> RenderJobStatus {
    let prev = rj.status.clone().unwrap_or_default();
    let plan = seen.plan;
    let generation = rj.metadata.generation;
    let count = |s: BatchState| seen.states.iter().filter(|x| **x == s).count() as i64;
    let batches = BatchCounts {
        total: i64::from(plan.len()),
        pending: count(BatchState::Pending),
        active: count(BatchState::Active),
        succeeded: count(BatchState::Succeeded),
        failed: count(BatchState::Failed),
    };
    let succeeded =
        || (0..plan.len()).filter(|i| seen.states.get(*i as usize) == Some(&BatchState::Succeeded));
    let rendered: i64 = succeeded()
        .filter_map(|i| plan.batch(i))
        .map(|b| b.frame_count())
        .sum();
    let frames = FrameCounts {
        total: plan.total_frames(),
        rendered,
    };

    let mut pods = PodCounts::default();
    let mut stuck: Vec<(u32, PodProblem)> = Vec::new();
    let (mut busy_seconds, mut timed_frames) = (0.0_f64, 0_u32);
    let mut devices: BTreeSet<String> = prev.devices_used.iter().cloned().collect();
    let mut blender_version = prev.blender_version.clone();
    for (index, batch_pods) in seen.pods {
        for pod in batch_pods {
            match pod.phase {
                PodPhase::Pending => pods.pending += 1,
                PodPhase::Running => pods.running += 1,
                PodPhase::Succeeded => pods.succeeded += 1,
                PodPhase::Failed => pods.failed += 1,
                PodPhase::Unknown => {}
            }
            if seen.states.get(*index as usize) == Some(&BatchState::Active)
                && let Some(p) = &pod.stuck
            {
                stuck.push((*index, p.as_ref().clone()));
            }
            if let Some(m) = &pod.report {
                if let Some(spf) = m.seconds_per_frame.filter(|_| m.frames_rendered > 0) {
                    busy_seconds += spf * f64::from(m.frames_rendered);
                    timed_frames += m.frames_rendered;
                }
                devices.extend(m.device.iter().cloned());
                if m.blender_version.is_some() {
                    blender_version = m.blender_version.clone();
                }
            }
        }
    }
    let seconds_per_frame = if timed_frames > 0 {
        Some((busy_seconds / f64::from(timed_frames) * 1000.0).round() / 1000.0)
    } else {
        prev.seconds_per_frame
    };

    // In batch order, as the range walks them.
    let failed_batches: Vec<FailedBatch> = (0..plan.len())
        .filter(|i| seen.states[*i as usize] == BatchState::Failed)
        .filter_map(|i| {
            let job = seen.jobs.get(&i)?;
            let pods = seen.pods.get(&i).map(Vec::as_slice).unwrap_or(&[]);
            Some(failed_batch(i, plan, job, pods))
        })
        .take(MAX_FAILED_BATCHES_LISTED)
        .collect();

    // Times: derived from the Jobs, remembered once known (cleaned-up Jobs take theirs along).
    let job_times = |f: fn(&BatchJob) -> Option<&Time>| {
        seen.jobs.values().filter_map(move |j| f(j).map(|t| t.0))
    };
    let start_time = prev
        .start_time
        .clone()
        .or_else(|| job_times(|j| j.start_time.as_ref()).min().map(Time));
    let unfinished = batches.pending + batches.active;
    let finished = unfinished == 0;
    let phase = if batches.total > 0 && batches.succeeded == batches.total {
        Phase::Succeeded
    } else if finished && batches.failed > 0 {
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
    };
    let terminal = matches!(phase, Phase::Succeeded | Phase::Failed);
    let completion_time = if terminal {
        prev.completion_time.clone().or_else(|| {
            let failed_at = seen.jobs.values().filter_map(|j| match &j.finished {
                Some(Finished::Failed(f)) => f.at.as_ref().map(|t| t.0),
                _ => None,
            });
            job_times(|j| j.completion_time.as_ref())
                .chain(failed_at)
                .max()
                .map(Time)
        })
    } else {
        None
    };

    // Time left: mean batch duration so far × the waves of batches still to run.
    let durations: Vec<(Timestamp, SignedDuration)> =
        seen.jobs.values().filter_map(|j| job_duration(j)).collect();
    let estimated_completion_time = if terminal {
        None
    } else if let Some(latest) = durations.iter().map(|(end, _)| *end).max() {
        let total: f64 = durations.iter().map(|(_, d)| d.as_secs_f64()).sum();
        let mean = total / durations.len() as f64;
        let parallelism = i64::from(rj.spec.parallelism.max(1));
        let waves = (unfinished + parallelism - 1) / parallelism;
        let ahead = SignedDuration::from_secs_f64((mean * waves as f64).round());
        latest.checked_add(ahead).ok().map(Time)
    } else {
        prev.estimated_completion_time.clone()
    };

    let mut conditions = prev.conditions.clone();
    conditions.retain(|c| c.type_ != INVALID_SPEC);
    let summary = format!(
        "{} of {} batches succeeded, {} failed, {} running, {} waiting",
        batches.succeeded, batches.total, batches.failed, batches.active, batches.pending
    );
    set_condition(
        &mut conditions,
        COMPLETE,
        phase == Phase::Succeeded,
        if phase == Phase::Succeeded {
            "AllBatchesSucceeded"
        } else {
            "BatchesRemaining"
        },
        format!("{} of {} frames rendered", frames.rendered, frames.total),
        generation,
        now,
    );
    let failed_message = if failed_batches.is_empty() {
        "no batch failed".to_string()
    } else {
        let list: Vec<String> = failed_batches
            .iter()
            .map(|f| format!("batch {} (frames {}): {}", f.index, f.frames, f.reason))
            .collect();
        format!("{} failed: {}", batches.failed, list.join("; "))
    };
    set_condition(
        &mut conditions,
        FAILED,
        phase == Phase::Failed,
        if phase == Phase::Failed {
            "BatchesFailed"
        } else if batches.failed > 0 {
            "BatchFailuresSoFar"
        } else {
            "NoFailures"
        },
        failed_message,
        generation,
        now,
    );
    let (progressing, reason, message) = match (phase, stuck.first()) {
        (Phase::Succeeded | Phase::Failed, _) => (false, "Finished".to_string(), summary.clone()),
        (Phase::Suspended, _) => (false, "Suspended".to_string(), summary.clone()),
        (_, Some((index, p))) => (
            true,
            p.reason.clone(),
            format!(
                "batch {index} cannot start: {}: {}",
                p.reason,
                p.message.clone().unwrap_or_default()
            ),
        ),
        (Phase::Pending, None) => (true, "Waiting".to_string(), summary.clone()),
        _ => (true, "Rendering".to_string(), summary.clone()),
    };
    set_condition(
        &mut conditions,
        PROGRESSING,
        progressing,
        &reason,
        message,
        generation,
        now,
    );
    set_condition(
        &mut conditions,
        SUSPENDED,
        phase == Phase::Suspended,
        if phase == Phase::Suspended {
            "SuspendedByUser"
        } else {
            "NotSuspended"
        },
        if phase == Phase::Suspended {
            summary
        } else {
            String::new()
        },
        generation,
        now,
    );

    let percent = if frames.total > 0 {
        frames.rendered * 100 / frames.total
    } else {
        0
    };
    // Keep every success ever seen: a cleaned-up Job's batch stays succeeded.
    let mut recorded = vec![false; plan.len() as usize];
    let previously = prev.succeeded_batches.as_deref().unwrap_or_default();
    for (a, b) in ranges(previously) {
        for r in recorded.iter_mut().take(b as usize + 1).skip(a as usize) {
            *r = true;
        }
    }
    for i in succeeded() {
        recorded[i as usize] = true;
    }
    let recorded = encode_sorted((0..plan.len()).filter(|i| recorded[*i as usize]));
    RenderJobStatus {
        phase,
        conditions,
        observed_generation: generation,
        progress: Some(format!("{percent}%")),
        frames_summary: Some(format!("{}/{}", frames.rendered, frames.total)),
        batches_summary: Some(format!("{}/{}", batches.succeeded, batches.total)),
        frames,
        batches,
        pods,
        succeeded_batches: (!recorded.is_empty()).then_some(recorded),
        failed_batches,
        start_time,
        completion_time,
        estimated_completion_time,
        seconds_per_frame,
        devices_used: devices.into_iter().collect(),
        blender_version,
    }
}

/// Whether a new status must be written at once. A new phase, a condition turning true or
/// false or changing its reason, a new failed batch, a new generation seen, or the start and
/// completion times cannot wait; counts, progress, messages and the estimate can wait for the
/// next write, a second at most (the controller paces them).
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
        || old.start_time != new.start_time
        || old.completion_time != new.completion_time
        || key(old) != key(new)
}

/// Status for a RenderJob the operator cannot plan (written around the schema).
pub fn invalid(rj: &RenderJob, why: &str, now: &Time) -> RenderJobStatus {
    let mut status = rj.status.clone().unwrap_or_default();
    status.phase = Phase::Failed;
    status.observed_generation = rj.metadata.generation;
    let g = rj.metadata.generation;
    set_condition(
        &mut status.conditions,
        INVALID_SPEC,
        true,
        "InvalidSpec",
        why.to_string(),
        g,
        now,
    );
    set_condition(
        &mut status.conditions,
        FAILED,
        true,
        "InvalidSpec",
        why.to_string(),
        g,
        now,
    );
    set_condition(
        &mut status.conditions,
        PROGRESSING,
        false,
        "InvalidSpec",
        why.to_string(),
        g,
        now,
    );
    status
}

#[cfg(test)]
mod tests;
