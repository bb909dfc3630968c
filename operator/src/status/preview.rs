//! The preview step and the last frame in status: `status.lastFrame` from the batch pods'
//! reports, `status.preview` and the `PreviewReady` condition from the preview Job and its pod.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use render_contract::args::output_file;
use render_contract::preview::{
    contact_sheet_file, contact_sheet_grid, thumbnail_file, video_file,
};

use crate::cache::{BatchJob, BatchPod, Finished};
use crate::crd::{LastFrame, Phase, PreviewState, PreviewStatus, RenderJob, RenderJobStatus};
use crate::pod::short;
use crate::status::set_condition;

pub const PREVIEW_READY: &str = "PreviewReady";

/// The highest frame of the batch whose pod finished last, among the pods that reported one;
/// the one in `prev` while no pod finished later (the pods of cleaned-up batches are gone).
pub fn last_frame(
    rj: &RenderJob,
    prev: &RenderJobStatus,
    pods: &BTreeMap<u32, Vec<&BatchPod>>,
) -> Option<LastFrame> {
    let latest = pods
        .values()
        .flatten()
        .filter_map(|p| {
            let frame = p.report.as_ref()?.last_frame?;
            Some((p.finished_at.as_ref()?, frame))
        })
        .max_by_key(|(at, frame)| (at.0, *frame));
    let Some((at, frame)) = latest else {
        return prev.last_frame.clone();
    };
    if let Some(old) = &prev.last_frame
        && old.finished_at.as_ref().is_some_and(|t| t.0 > at.0)
    {
        return Some(old.clone());
    }
    let pattern = rj.output_path();
    let format = rj.spec.output.format;
    Some(LastFrame {
        frame,
        file: output_file(&pattern, frame, format),
        thumbnail: thumbnail_file(&pattern, frame, format),
        finished_at: Some(at.clone()),
    })
}

/// What the roll-up sees of the preview step.
#[derive(Debug, Default)]
pub struct PreviewSeen<'a> {
    /// The RenderJob's preview Job.
    pub job: Option<&'a BatchJob>,
    /// Its pods.
    pub pods: Vec<&'a BatchPod>,
    /// Applied in this reconcile, or sent and not seen yet.
    pub starting: bool,
    /// The API server refused the preview Job, in its words.
    pub refused: Option<&'a str>,
    /// An earlier RenderJob of the same name still has its preview Job.
    pub taken: bool,
}

/// `status.preview` and the `PreviewReady` condition. A preview that finished (Ready or
/// Failed) stays as it was recorded: its Job may be cleaned up, and it is not made again.
pub fn roll_up(
    rj: &RenderJob,
    prev: &RenderJobStatus,
    new: &mut RenderJobStatus,
    seen: &PreviewSeen<'_>,
    now: &Time,
) {
    let preview = match prev.preview.as_ref().filter(|p| p.state.finished()) {
        Some(done) => done.clone(),
        None => current(rj, new, seen),
    };
    let reason = preview.state.as_str();
    let message = preview
        .message
        .clone()
        .unwrap_or_else(|| match preview.state {
            PreviewState::Ready => format!(
                "{} and {} written",
                preview.video.as_deref().unwrap_or_default(),
                preview.contact_sheet.as_deref().unwrap_or_default()
            ),
            _ => String::new(),
        });
    set_condition(
        &mut new.conditions,
        PREVIEW_READY,
        preview.state == PreviewState::Ready,
        reason,
        message,
        rj.metadata.generation,
        now,
    );
    new.preview = Some(preview);
}

/// Whether the preview Job is to be applied now: preview on, every batch succeeded, no preview
/// made or under way, none sent and not seen yet, and none left by an earlier RenderJob of the
/// same name.
pub fn wanted(
    rj: &RenderJob,
    prev: &RenderJobStatus,
    new: &RenderJobStatus,
    seen: &PreviewSeen<'_>,
) -> bool {
    rj.spec.preview.enabled
        && new.phase == Phase::Succeeded
        && !prev.preview.as_ref().is_some_and(|p| p.state.finished())
        && seen.job.is_none()
        && !seen.starting
        && !seen.taken
        && seen.refused.is_none()
}

/// Whether the preview Job is to be deleted (cleanup `DeleteSucceeded`): it succeeded, and
/// the status last written records it Ready.
pub fn deletable(prev: &RenderJobStatus, seen: &PreviewSeen<'_>) -> bool {
    let recorded = prev
        .preview
        .as_ref()
        .is_some_and(|p| p.state == PreviewState::Ready);
    seen.job
        .is_some_and(|j| matches!(j.finished, Some(Finished::Complete)) && !j.deleting && recorded)
}

fn current(rj: &RenderJob, new: &RenderJobStatus, seen: &PreviewSeen<'_>) -> PreviewStatus {
    let with = |state: PreviewState, message: String| PreviewStatus {
        state,
        message: Some(message),
        ..PreviewStatus::default()
    };
    if !rj.spec.preview.enabled {
        return with(
            PreviewState::Disabled,
            "spec.preview.enabled is false".into(),
        );
    }
    // The latest report of the Job's pods.
    let report = seen
        .pods
        .iter()
        .filter_map(|p| Some((p.finished_at.as_ref().map(|t| t.0), p.preview.as_deref()?)))
        .max_by_key(|(at, _)| *at)
        .map(|(_, r)| r);
    let total = u32::try_from(new.frames.total).unwrap_or(u32::MAX);
    if let Some(job) = seen.job {
        return match &job.finished {
            Some(Finished::Complete) if report.is_none_or(|r| r.ok) => {
                let pattern = rj.output_path();
                let frames = report.map_or(total, |r| r.frames);
                let (columns, rows) = match report {
                    Some(r) if r.columns > 0 && r.rows > 0 => (r.columns, r.rows),
                    _ => contact_sheet_grid(frames),
                };
                PreviewStatus {
                    state: PreviewState::Ready,
                    video: Some(video_file(&pattern)),
                    contact_sheet: Some(contact_sheet_file(&pattern)),
                    frames: Some(i64::from(frames)),
                    columns: Some(i64::from(columns)),
                    rows: Some(i64::from(rows)),
                    message: None,
                }
            }
            Some(Finished::Complete) | Some(Finished::Failed(_)) => {
                let failure = match &job.finished {
                    Some(Finished::Failed(f)) => Some(f.as_ref()),
                    _ => None,
                };
                let why = report
                    .and_then(|r| r.message.clone())
                    .or_else(|| {
                        seen.pods
                            .iter()
                            .filter_map(|p| p.failure.as_deref())
                            .find_map(|f| f.message.clone().or_else(|| Some(f.reason.clone())))
                    })
                    .or_else(|| {
                        failure.and_then(|f| f.message.clone().or_else(|| f.reason.clone()))
                    })
                    .unwrap_or_else(|| "the preview Job failed".into());
                with(
                    PreviewState::Failed,
                    short(&format!("preview Job {} failed: {why}", job.name)),
                )
            }
            None => with(
                PreviewState::Running,
                format!(
                    "preview Job {} is making the preview of {total} frames",
                    job.name
                ),
            ),
        };
    }
    if let Some(why) = seen.refused {
        return with(
            PreviewState::Failed,
            short(&format!("the API server refused the preview Job: {why}")),
        );
    }
    match new.phase {
        Phase::Succeeded if seen.starting => with(
            PreviewState::Running,
            format!("starting the preview of {total} frames"),
        ),
        Phase::Succeeded if seen.taken => with(
            PreviewState::Pending,
            "an earlier RenderJob of this name still has its preview Job; waiting for it to go"
                .into(),
        ),
        Phase::Failed => with(
            PreviewState::Pending,
            "the render failed: a preview is made once every batch has succeeded".into(),
        ),
        _ => with(
            PreviewState::Pending,
            format!(
                "waiting for every frame: {} of {} rendered",
                new.frames.rendered, new.frames.total
            ),
        ),
    }
}
