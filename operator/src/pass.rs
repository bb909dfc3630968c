//! One reconcile without the API calls: from a RenderJob, the Jobs and pods it owns and the
//! status last written, the batch states, what to change and the status to write. The
//! controller runs it and applies the result; `examples/reconcile_cost.rs` measures it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::actions::{self, Actions};
use crate::cache::{BatchJob, BatchPod};
use crate::crd::{RenderJob, RenderJobStatus};
use crate::plan::Plan;
use crate::status::{self, BatchState, Observed};

/// Whether the RenderJob with `uid` is the controller owner of the Job.
pub fn owned_by(job: &BatchJob, uid: &str) -> bool {
    job.owner.as_ref().is_some_and(|o| o.uid == uid)
}

/// Whether `pod` is a batch pod of the RenderJob `name` in namespace `ns`.
pub fn pod_of(pod: &BatchPod, ns: &str, name: &str) -> bool {
    pod.namespace.as_deref() == Some(ns) && pod.renderjob.as_deref() == Some(name)
}

/// What one reconcile sees.
pub struct Observation<'a> {
    pub plan: Plan,
    /// The batch Jobs, by batch index.
    pub jobs: BTreeMap<u32, &'a BatchJob>,
    /// The batch pods, by batch index.
    pub pods: BTreeMap<u32, Vec<&'a BatchPod>>,
    /// Batches the status last written records as succeeded.
    pub recorded: BTreeSet<u32>,
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
        let job_refs: Vec<&BatchJob> = jobs.iter().map(Arc::as_ref).collect();
        let jobs = status::jobs_by_batch(rj_name, &plan, &job_refs);
        let mut by_batch: BTreeMap<u32, Vec<&BatchPod>> = BTreeMap::new();
        for p in pods {
            if let Some(i) = p.batch {
                by_batch.entry(i).or_default().push(p.as_ref());
            }
        }
        let recorded = old
            .succeeded_batches
            .as_deref()
            .map(status::decode_ranges)
            .unwrap_or_default();
        Observation {
            plan,
            jobs,
            pods: by_batch,
            recorded,
        }
    }

    /// What to change and the status to write once it is done. `old` is the status last
    /// written; `in_flight`, the batches created but not seen in the cache yet. Batches about
    /// to be created and those in flight count as active.
    pub fn decide(
        &self,
        rj: &RenderJob,
        old: &RenderJobStatus,
        in_flight: &BTreeSet<u32>,
        now: &Time,
    ) -> (Actions, RenderJobStatus) {
        let mut states = status::batch_states(&self.plan, &self.jobs, &self.recorded);
        let todo = actions::decide(rj, &states, &self.jobs, in_flight, &self.recorded);
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
        };
        let mut basis = rj.clone();
        basis.status = Some(old.clone());
        let new = status::roll_up(&basis, &seen, now);
        (todo, new)
    }
}
