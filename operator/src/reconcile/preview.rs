//! The preview step of a reconcile: after the batches, in the same status.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::Input;
use crate::Result;
use crate::cache::BatchJob;
use crate::crd::{CleanupPolicy, RenderJobStatus};
use crate::job::{self, JobConfig};
use crate::state::RenderState;
use crate::status::preview::{self, PreviewSeen};

/// The preview step: after the batches, in the same status. The preview Job to apply, if it
/// is due, and its name if it is to be deleted; `new` gets the preview's status.
pub(super) fn preview_step(
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
