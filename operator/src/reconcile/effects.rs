//! The effects of one reconcile: what to send to the API server ([`Effects`]) and when to
//! come back ([`Wake`]); and how the server's answers are taken in.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;

use super::observe::Observation;
use super::pace::BUSY_RECHECK;
use crate::batch::BatchState;
use crate::crd::RenderJobStatus;
use crate::events::{self, Note};
use crate::plan::Plan;
use crate::state::{IN_FLIGHT_AFTER_5XX, Rejection, RenderState};
use crate::status;

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
    /// Batch failures newly attributed to a node: `(node, reason)`.
    pub node_faults: Vec<(String, String)>,
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

/// What one reconcile sends to the API server, in the order the controller sends it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Effects {
    /// Batch Jobs to apply, by batch index.
    pub apply: Vec<(u32, Job)>,
    /// The preview Job to apply, once every batch succeeded.
    pub preview: Option<Job>,
    /// The Job rendering frames again (`spec.rerender`), once no batch is running.
    pub rerender: Option<Job>,
    /// Job names to suspend, resume and delete.
    pub suspend: Vec<String>,
    pub resume: Vec<String>,
    pub delete: Vec<String>,
    /// Jobs to stop, and why: batches disrupted too often fail as `Evicted`.
    pub stop: Vec<(String, String)>,
    /// Written after the Jobs are applied.
    pub status: Option<StatusWrite>,
    /// A running batch Job that has no pod yet and is old enough that it should: read its
    /// Events (the Job controller's `FailedCreate`) to say why.
    pub inspect: Option<String>,
    /// What taking in the answers needs to know.
    pub(super) about: About,
}

/// What taking in the API server's answers needs to know of the render.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct About {
    pub rj_name: String,
    pub generation: Option<i64>,
    pub plan: Option<Plan>,
    /// Whether no batch is left to create (the creation Event says so).
    pub all_created: bool,
    /// Batches the status to write newly records as failed.
    pub newly_failed: BTreeSet<u32>,
    /// The render is finished (the last failures are reported at once).
    pub terminal: bool,
}

/// When to come back to a render without a watch event: see [`Wake::requeue`].
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Wake {
    /// Come back this soon, whatever else (caches not synced yet).
    pub(super) retry: Option<Duration>,
    /// The spec made a plan: a render to follow, not one failed as invalid.
    pub(super) planned: bool,
    /// When a status write held back by pacing is due.
    pub(super) status_due: Option<Duration>,
    /// The render is still going: come back within [`BUSY_RECHECK`] at the latest.
    pub(super) busy: bool,
    /// When the next running batch is due a follower (start ahead).
    pub(super) ahead_due: Option<Duration>,
    /// A refused Job apply holds creation back until then.
    pub(super) hold_until: Option<Instant>,
    /// Events of a Job without pods are to be read now.
    pub(super) inspecting: bool,
    /// Jobs without pods wait for their Events to be read again.
    pub(super) inspect_due: Option<Duration>,
}

/// Indexes of the batches `new` lists as failed and `old` did not.
pub(super) fn newly_failed(old: &RenderJobStatus, new: &RenderJobStatus) -> BTreeSet<u32> {
    let known: BTreeSet<i64> = old.failed_batches.iter().map(|f| f.index).collect();
    new.failed_batches
        .iter()
        .filter(|f| !known.contains(&f.index))
        .filter_map(|f| u32::try_from(f.index).ok())
        .collect()
}

/// What the metrics count for the change from `old` to `new`.
pub(super) fn progress(
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
        node_faults: super::nodes::new_faults(old, new),
    }
}

impl Effects {
    /// Nothing to send to the API server.
    pub fn is_empty(&self) -> bool {
        self.apply.is_empty()
            && self.preview.is_none()
            && self.rerender.is_none()
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
                        generation: self.about.generation,
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
        let plan = self.about.plan.as_ref()?;
        if failed {
            return None;
        }
        let note = state
            .created
            .note(now, self.about.all_created, &self.about.rj_name, plan)?;
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
        state.failed.add(self.about.newly_failed.iter().copied());
        let batches = state.failed.take_due(now, self.about.terminal)?;
        Some(events::failed_note(&batches, &w.status.failed_batches))
    }
}

impl Wake {
    /// When to reconcile again without a watch event (`None`: only on a change). Soon enough
    /// for a status write held back by pacing, for creations not reported yet, and for the
    /// oldest in-flight mark to run out: a Job apply cut off by a lost connection leaves its
    /// batch marked, and once the mark is gone no watch event may come to say that the batch
    /// still needs its Job.
    pub fn requeue(&self, state: &RenderState, now: Instant) -> Option<Duration> {
        if let Some(retry) = self.retry {
            return Some(retry);
        }
        if !self.planned {
            return None;
        }
        let wake = [
            self.status_due,
            state.created.due_in(now),
            state.failed.due_in(now),
            state.in_flight_expiry(now),
            self.inspect_due,
            self.inspecting.then_some(Duration::from_millis(200)),
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
