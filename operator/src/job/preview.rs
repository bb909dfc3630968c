//! The preview Job: one pod that encodes the render's frames into a video once every batch
//! succeeded.

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{PodTemplateSpec, ResourceRequirements};
use std::collections::BTreeMap;

use kube::ResourceExt;
use render_contract::{Device, FrameSet, PreviewArgs};

use super::meta::{job_metadata, owner, pod_metadata, preview_labels};
use super::policy::disruptions_ignored;
use super::template::{container, pod_spec, resources};
use super::*;
use crate::Result;
use crate::crd::RenderJob;

/// The preview step's program, on the node image's `PATH`.
pub const PREVIEW_COMMAND: &str = "render-preview";
/// Retries of a failed preview pod: ffmpeg on frames that are on disk seldom fails twice for
/// a reason that would pass the third time.
pub const PREVIEW_BACKOFF_LIMIT: i32 = 1;

/// Most frames of a `frames.list` the preview names one by one.
const MAX_PREVIEW_LISTED: usize = 2000;

/// `render-preview`'s arguments for `rj`: every frame of the render, as written.
pub fn preview_args(rj: &RenderJob) -> PreviewArgs {
    let mount = rj.spec.storage.mount_path.trim_end_matches('/');
    let f = &rj.spec.frames;
    let frames = match renderfarm_api::frames::list(&f.list) {
        // A list's own frames, while they make an argument of a sane length (a longer one
        // goes as its range: render-preview leaves out the frames not on disk).
        Ok(listed) if listed.len() <= MAX_PREVIEW_LISTED => FrameSet::List(listed),
        _ => FrameSet::Range {
            start: f.start,
            end: f.end,
            step: f.step.max(1) as u32,
        },
    };
    let p = &rj.spec.preview;
    let mut args = PreviewArgs::new(
        format!("{mount}/{}", rj.output_path()),
        rj.spec.output.format,
        frames,
    );
    args.fps = p.fps.max(1) as u32;
    args.width = p.width.max(2) as u32;
    args.codec = p.codec;
    args.markers = Some(marker_prefix(rj));
    args
}

/// The preview Job of `rj`: `render-preview` from the same node image, with the batch pods'
/// restricted pod spec and mounts (the output directory writable, the rest of the claim
/// read-only), no GPU.
pub fn build_preview(rj: &RenderJob, config: &JobConfig) -> Result<Job> {
    let labels = preview_labels(rj);
    let annotations = BTreeMap::new();
    let container = container(
        rj,
        config,
        Some(vec![PREVIEW_COMMAND.to_string()]),
        preview_args(rj).to_args(),
        preview_resources(rj),
    );
    let mut spec = pod_spec(rj, container);
    // ffmpeg needs no GPU: the GPU pool's taint is not tolerated for it.
    spec.tolerations = rj.spec.tolerations.clone();
    let name = preview_job_name(&rj.name_any());
    Ok(Job {
        // Queued like the batches: a cluster that admits only queued Jobs admits it too.
        metadata: job_metadata(rj, name, labels.clone(), BTreeMap::new(), owner(rj)?),
        spec: Some(JobSpec {
            backoff_limit: Some(PREVIEW_BACKOFF_LIMIT),
            active_deadline_seconds: rj.spec.active_deadline_seconds,
            completions: Some(1),
            parallelism: Some(1),
            suspend: Some(rj.spec.queue_name.is_some()),
            // Never two ffmpegs writing the same preview.mp4.
            pod_replacement_policy: Some("Failed".to_string()),
            pod_failure_policy: Some(disruptions_ignored()),
            template: PodTemplateSpec {
                metadata: Some(pod_metadata(rj, &labels, &annotations)),
                spec: Some(spec),
            },
            ..Default::default()
        }),
        status: None,
    })
}

/// The batch pods' requests and limits without GPUs.
fn preview_resources(rj: &RenderJob) -> ResourceRequirements {
    let mut res = resources(rj);
    let gpus = [Device::Cuda, Device::Hip].map(gpu_resource);
    for map in [res.requests.as_mut(), res.limits.as_mut()]
        .into_iter()
        .flatten()
    {
        map.retain(|k, _| !gpus.contains(&Some(k.as_str())));
    }
    res.limits = res.limits.filter(|l| !l.is_empty());
    res.requests = res.requests.filter(|r| !r.is_empty());
    res
}
