//! What one reconcile sees of a render: its batch Jobs and pods by batch, and what they call
//! for (the actions and the status they roll up into).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::Input;
use super::nodes;
use super::pace::WAITING_PER_RENDER;
use crate::actions::{self, Actions};
use crate::ahead;
use crate::batch::BatchState;
use crate::cache::{BatchJob, BatchPod};
use crate::crd::{RenderJob, RenderJobStatus};
use crate::index;
use crate::nodewatch::ClusterNode;
use crate::plan::Plan;
use crate::state::RenderState;
use crate::status::{self, Hold, Observed};

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
    pub recorded: index::Recorded,
    /// Batches whose Job name an earlier RenderJob's Job still holds: not created until it goes.
    pub taken: BTreeSet<u32>,
    /// Followers created but not seen in the cache yet, and the batch each follows.
    pub ahead_in_flight: BTreeMap<u32, u32>,
    /// Other renders are going: hold creation to [`WAITING_PER_RENDER`] Jobs without pods.
    pub sharing: bool,
    /// The cluster's nodes, when known: a render whose every node is blocked fails.
    pub nodes: Option<&'a [ClusterNode]>,
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
            .map(|r| index::Recorded::decode(r, plan.len()))
            .unwrap_or_default();
        Observation {
            plan,
            jobs,
            pods: by_batch,
            recorded,
            taken: BTreeSet::new(),
            ahead_in_flight: BTreeMap::new(),
            sharing: false,
            nodes: None,
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
        ahead_paused: bool,
        now: &Time,
    ) -> (Actions, RenderJobStatus, Vec<BatchState>) {
        // Decisions go by the slots (a batch's Job finished or not), the status by what the
        // pods rendered.
        let mut slots = status::batch_states(&self.plan, &self.jobs, &self.recorded);
        // Batches that failed for their node are retried elsewhere: active, not failed.
        let blocklist = nodes::step(rj, old, &slots, &self.jobs, &self.pods, self.nodes);
        blocklist.apply(&mut slots);
        let mut states = status::rendered_states(&slots, &self.pods);
        let hold = (blocklist.hold.clone())
            .or_else(|| status::stop(rj, &self.plan, &slots, &self.jobs, &self.pods))
            .or(rejected)
            .or_else(|| status::claim_missing(rj, &slots, &self.pods));
        let step = self.ahead_step(rj, old, &slots, ahead_paused, now);
        let ahead = actions::Ahead {
            in_flight: Some(&self.ahead_in_flight),
            due: Some(&step.due),
        };
        let mut todo = actions::decide(rj, &slots, &self.jobs, in_flight, &self.recorded, ahead);
        todo.ahead_due = step.next;
        todo.ahead_placed = step.placed;
        todo.delete.extend(
            step.withdraw
                .iter()
                .filter_map(|i| Some(self.jobs.get(i)?.name.clone())),
        );
        todo.withdrawn = step.withdraw;
        todo.delete.extend(blocklist.delete.iter().cloned());
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
        let mut new = status::roll_up(&basis, &seen, now);
        blocklist.write(&mut new);
        (todo, new, states)
    }

    /// Start ahead's part of a pass: followers the scheduler could not place, to withdraw; and
    /// unless one is withdrawn now or the render is `paused` after one, the running batches
    /// due a follower and when the next one is.
    fn ahead_step(
        &self,
        rj: &RenderJob,
        old: &RenderJobStatus,
        slots: &[BatchState],
        paused: bool,
        now: &Time,
    ) -> AheadStep {
        if !rj.spec.start_ahead {
            return AheadStep::default();
        }
        let ahead::Waiting {
            unplaced: withdraw,
            placed,
        } = ahead::waiting(slots, &self.jobs, &self.pods);
        let (due, next) = if rj.spec.suspend || paused || !withdraw.is_empty() {
            Default::default()
        } else {
            let spf = ahead::seconds_per_frame(old.seconds_per_frame, &self.jobs, &self.pods);
            ahead::due(&self.plan, slots, &self.jobs, &self.pods, spf, now)
        };
        AheadStep {
            due,
            next,
            withdraw,
            placed,
        }
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

/// What [`Observation::ahead_step`] found.
#[derive(Default)]
struct AheadStep {
    due: BTreeSet<u32>,
    next: Option<std::time::Duration>,
    withdraw: Vec<u32>,
    placed: bool,
}

/// What this reconcile sees of the render, with the in-flight marks of `state` brought up to
/// date against the cache.
pub(super) fn observe<'a>(
    input: &Input<'a>,
    state: &mut RenderState,
    name: &str,
    plan: Plan,
    old: &RenderJobStatus,
    now: Instant,
) -> Observation<'a> {
    let mut seen = Observation::new(name, plan.clone(), old, input.jobs, input.pods);
    seen.taken = status::jobs_by_batch(name, &plan, input.taken.iter().map(Arc::as_ref))
        .keys()
        .copied()
        .collect();
    state.expire_in_flight(|i| seen.jobs.contains_key(&i), now);
    seen.ahead_in_flight = state.in_flight_after.clone();
    seen.sharing = input.active > 1;
    seen.nodes = input.nodes;
    seen
}
