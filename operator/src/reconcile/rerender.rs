//! The rerender step of a reconcile: frames of a finished render rendered again
//! (`spec.rerender`), after the batches, in the same status.

use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::Input;
use crate::Result;
use crate::crd::RenderJobStatus;
use crate::job::{self, JobConfig};
use crate::plan::Plan;
use crate::status::rerender::{self, RerenderSeen};

/// The Job of the request in `spec.rerender`, when it is to be applied; `new` gets
/// `status.rerenders`. It waits while batches are pending or running.
pub(super) fn rerender_step(
    input: &Input<'_>,
    config: &JobConfig,
    plan: &Plan,
    old: &RenderJobStatus,
    new: &mut RenderJobStatus,
    wall: &Time,
) -> Result<Option<Job>> {
    let rj = input.rj;
    let Some(req) = &rj.spec.rerender else {
        new.rerenders = old.rerenders.clone();
        return Ok(None);
    };
    let name = job::rerender_job_name(&rj.name_any(), req.serial);
    let job = input
        .jobs
        .iter()
        .map(Arc::as_ref)
        .find(|j| j.batch.is_none() && j.name == name);
    let uid = job.and_then(|j| j.uid.as_ref());
    let seen = RerenderSeen {
        job,
        pods: input
            .pods
            .iter()
            .map(Arc::as_ref)
            .filter(|p| p.batch.is_none() && uid.is_some() && p.job_uid.as_ref() == uid)
            .collect(),
        batches_busy: new.batches.pending > 0 || new.batches.active > 0,
    };
    let (list, frames) = rerender::roll_up(rj, plan, &old.rerenders, &seen, wall);
    new.rerenders = list;
    frames
        .map(|f| job::build_rerender(rj, &f, req.serial, config))
        .transpose()
}
