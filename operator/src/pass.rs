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
        // Sorted first, so the map is built in one pass.
        let mut indexed: Vec<(u32, &BatchPod)> = pods
            .iter()
            .filter_map(|p| Some((p.batch?, p.as_ref())))
            .collect();
        indexed.sort_unstable_by_key(|(i, _)| *i);
        let by_batch: BTreeMap<u32, Vec<&BatchPod>> = indexed
            .chunk_by(|a, b| a.0 == b.0)
            .map(|group| (group[0].0, group.iter().map(|(_, p)| *p).collect()))
            .collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::RenderJobSpec;
    use crate::status::BatchState;
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::{Value, json};

    const UID: &str = "dba0d389-0bbd-4f05-bccc-6193edea917c";

    fn rj() -> RenderJob {
        let spec: RenderJobSpec = serde_json::from_value(json!({
            "blendFile": "s.blend", "frames": {"start": 1, "end": 6}, "batchSize": 1,
            "parallelism": 3, "storage": {"claimName": "c"},
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
        let grouped: Vec<(u32, usize)> = seen.pods.iter().map(|(i, p)| (*i, p.len())).collect();
        assert_eq!(grouped, [(0, 1), (1, 2), (2, 1)]);

        // Batch 3 is in flight: with batches 1 and 2 running, parallelism 3 leaves no slot.
        let now = Time("2026-11-23T12:00:00Z".parse().expect("time"));
        let (todo, new) = seen.decide(&rj, &old, &BTreeSet::from([3]), &now);
        assert!(todo.create.is_empty(), "{todo:?}");
        assert_eq!((new.batches.active, new.batches.pending), (3, 2));
        assert_eq!(new.succeeded_batches.as_deref(), Some("0"));

        // Nothing in flight: batch 3 is created, and counts as active in the new status.
        let (todo, new) = seen.decide(&rj, &old, &BTreeSet::new(), &now);
        assert_eq!(todo.create, [3]);
        assert_eq!((new.batches.active, new.batches.pending), (3, 2));
        assert_eq!(
            status::batch_states(&plan, &seen.jobs, &seen.recorded)[3],
            BatchState::Pending
        );
    }
}
