//! The preview step and the last frame in status: `status.lastFrame` from the batch pods'
//! reports, `status.preview` and the `PreviewReady` condition from the preview Job and its pod.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use render_contract::PreviewReport;
use render_contract::args::output_file;
use render_contract::preview::{
    contact_sheet_file, contact_sheet_grid, thumbnail_file, video_file,
};

use crate::cache::{BatchJob, BatchPod, Finished};
use crate::crd::{LastFrame, Phase, PreviewState, PreviewStatus, RenderJob, RenderJobStatus};
use crate::index::Pods;
use crate::pod::short;
use crate::status::set_condition;

pub const PREVIEW_READY: &str = "PreviewReady";

/// The highest frame of the batch whose pod finished last, among the pods that reported one;
/// the one in `prev` while no pod finished later (the pods of cleaned-up batches are gone).
pub fn last_frame(rj: &RenderJob, prev: &RenderJobStatus, pods: &Pods<'_>) -> Option<LastFrame> {
    let latest = pods
        .all()
        .iter()
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
    let preview = match recorded(prev, seen) {
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

/// The preview's outcome as the status last written records it, kept: Ready (its Job may be
/// cleaned up), or Failed while its Job is there. Deleting a failed preview's Job makes the
/// preview again, as deleting a failed batch's Job renders the batch again.
fn recorded<'a>(prev: &'a RenderJobStatus, seen: &PreviewSeen<'_>) -> Option<&'a PreviewStatus> {
    let p = prev.preview.as_ref()?;
    let retry = p.state == PreviewState::Failed
        && seen.job.is_none()
        && seen.refused.is_none()
        && !seen.taken;
    (p.state.finished() && !retry).then_some(p)
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
        && recorded(prev, seen).is_none()
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

fn making(job: &str, total: u32) -> String {
    format!("preview Job {job} is making the preview of {total} frames")
}

fn with(state: PreviewState, message: String) -> PreviewStatus {
    PreviewStatus {
        state,
        message: Some(message),
        ..PreviewStatus::default()
    }
}

fn current(rj: &RenderJob, new: &RenderJobStatus, seen: &PreviewSeen<'_>) -> PreviewStatus {
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
            Some(Finished::Complete) if report.is_none_or(|r| r.ok) => ready(rj, report, total),
            Some(Finished::Complete) | Some(Finished::Failed(_)) => failed(job, report, seen),
            None => running(job, seen, total),
        };
    }
    if let Some(why) = seen.refused {
        return with(
            PreviewState::Failed,
            short(&format!("the API server refused the preview Job: {why}")),
        );
    }
    match new.phase {
        // Said as once the Job is seen, so that seeing it takes no status write of its own.
        Phase::Succeeded if seen.starting => with(
            PreviewState::Running,
            making(&crate::job::preview_job_name(&rj.name_any()), total),
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

/// The preview Job succeeded: where the video and the contact sheet are, and the sheet's grid.
fn ready(rj: &RenderJob, report: Option<&PreviewReport>, total: u32) -> PreviewStatus {
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

/// The preview Job failed (or succeeded with a report that says it did not): why, from its
/// pod's report, its pods' failures or the Job's own condition.
fn failed(job: &BatchJob, report: Option<&PreviewReport>, seen: &PreviewSeen<'_>) -> PreviewStatus {
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
        .or_else(|| failure.and_then(|f| f.message.clone().or_else(|| f.reason.clone())))
        .unwrap_or_else(|| "the preview Job failed".into());
    with(
        PreviewState::Failed,
        short(&format!("preview Job {} failed: {why}", job.name)),
    )
}

/// The preview Job has not finished: its pod cannot start, or it is making the preview.
fn running(job: &BatchJob, seen: &PreviewSeen<'_>, total: u32) -> PreviewStatus {
    match seen.pods.iter().find_map(|p| p.stuck.as_deref()) {
        // Shown, not acted on: the Job controller keeps trying, as for batches.
        Some(stuck) => with(
            PreviewState::Running,
            short(&format!(
                "preview Job {}'s pod cannot start: {}: {}",
                job.name,
                stuck.reason,
                stuck.message.as_deref().unwrap_or_default()
            )),
        ),
        None => with(PreviewState::Running, making(&job.name, total)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::RenderJobSpec;
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    fn rj() -> RenderJob {
        let spec: RenderJobSpec = serde_json::from_value(json!({
            "blendFile": "s.blend", "frames": {"start": 1, "end": 10}, "batchSize": 5,
            "storage": {"claimName": "c"}, "output": {"path": "out/x/f_###", "format": "OPEN_EXR"},
        }))
        .expect("spec");
        let mut rj = RenderJob::new("x", spec);
        rj.metadata.generation = Some(2);
        rj
    }

    fn job(condition: Option<&str>) -> BatchJob {
        let conditions: Vec<_> = condition
            .map(|t| {
                json!({"type": t, "status": "True", "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit"})
            })
            .into_iter()
            .collect();
        let j: Job = serde_json::from_value(json!({
            "metadata": {"name": "x-preview", "labels": {"renderfarm.io/step": "preview"}},
            "status": {"conditions": conditions},
        }))
        .expect("job");
        j.into()
    }

    /// A pod that ended with `exit_code` and termination message `message`.
    fn pod(preview: bool, exit_code: i32, message: &str, at: &str) -> BatchPod {
        let labels = if preview {
            json!({"renderfarm.io/step": "preview"})
        } else {
            json!({"renderfarm.io/batch": "0"})
        };
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "labels": labels},
            "status": {"phase": if exit_code == 0 { "Succeeded" } else { "Failed" },
                "containerStatuses": [{"name": "render", "image": "i", "imageID": "", "ready": false,
                "restartCount": 0, "state": {"terminated": {"exitCode": exit_code,
                "reason": "Error", "message": message, "finishedAt": at}}}]},
        }))
        .expect("pod");
        p.into()
    }

    fn now() -> Time {
        Time("2026-01-01T01:00:00Z".parse().expect("time"))
    }

    fn succeeded() -> RenderJobStatus {
        RenderJobStatus {
            phase: Phase::Succeeded,
            frames: crate::crd::FrameCounts {
                total: 10,
                rendered: 10,
            },
            ..Default::default()
        }
    }

    #[test]
    fn last_frame_paths_are_relative_and_a_later_batch_wins() {
        let rj = rj();
        let msg = |f: i32| {
            format!(
                r#"{{"outcome":"Succeeded","framesRendered":5,"framesSkipped":0,"lastFrame":{f}}}"#
            )
        };
        let (a, b) = (
            pod(false, 0, &msg(5), "2026-01-01T00:00:05Z"),
            pod(false, 0, &msg(10), "2026-01-01T00:00:09Z"),
        );
        let pods = Pods::new(2, &[(0, &a), (1, &b)]);
        let last = last_frame(&rj, &RenderJobStatus::default(), &pods).expect("lastFrame");
        assert_eq!(
            (last.frame, last.file.as_str(), last.thumbnail.as_str()),
            (10, "out/x/f_010.exr", "out/x/.thumbs/f_010.jpg")
        );
        // Only the earlier batch's pod is left: the later frame stays.
        let prev = RenderJobStatus {
            last_frame: Some(last.clone()),
            ..Default::default()
        };
        let only_a = Pods::new(2, &[(0, &a)]);
        assert_eq!(last_frame(&rj, &prev, &only_a), Some(last));
        assert_eq!(
            last_frame(&rj, &RenderJobStatus::default(), &Pods::default()),
            None
        );
    }

    #[test]
    fn a_complete_job_without_its_pod_is_ready_with_the_planned_grid() {
        let rj = rj();
        let j = job(Some("Complete"));
        let seen = PreviewSeen {
            job: Some(&j),
            ..Default::default()
        };
        let mut new = succeeded();
        roll_up(&rj, &RenderJobStatus::default(), &mut new, &seen, &now());
        let p = new.preview.clone().expect("preview");
        assert_eq!(p.state, PreviewState::Ready);
        assert_eq!((p.frames, p.columns, p.rows), (Some(10), Some(5), Some(2)));
        assert_eq!(p.video.as_deref(), Some("out/x/preview.mp4"));
        let c = &new.conditions[0];
        assert_eq!(
            (c.type_.as_str(), c.status.as_str(), c.reason.as_str()),
            (PREVIEW_READY, "True", "Ready")
        );
        assert_eq!(c.observed_generation, Some(2));
        assert!(!wanted(&rj, &RenderJobStatus::default(), &new, &seen));
    }

    #[test]
    fn a_failed_job_says_why_from_its_pod_or_its_condition() {
        let rj = rj();
        let j = job(Some("Failed"));
        let crashed = pod(
            true,
            127,
            "exec: render-preview: not found",
            "2026-01-01T00:00:05Z",
        );
        let seen = PreviewSeen {
            job: Some(&j),
            pods: vec![&crashed],
            ..Default::default()
        };
        let mut new = succeeded();
        roll_up(&rj, &RenderJobStatus::default(), &mut new, &seen, &now());
        let p = new.preview.clone().expect("preview");
        assert_eq!(p.state, PreviewState::Failed);
        assert_eq!(
            p.message.as_deref(),
            Some("preview Job x-preview failed: exec: render-preview: not found")
        );
        let seen = PreviewSeen {
            job: Some(&j),
            ..Default::default()
        };
        let mut new = succeeded();
        roll_up(&rj, &RenderJobStatus::default(), &mut new, &seen, &now());
        assert_eq!(
            new.preview.and_then(|p| p.message).as_deref(),
            Some("preview Job x-preview failed: Job has reached the specified backoff limit")
        );
        // Recorded Failed stays Failed while its Job is there, and is not made again; once its
        // Job is deleted, it is made again.
        let prev = RenderJobStatus {
            preview: Some(PreviewStatus {
                state: PreviewState::Failed,
                message: Some("earlier".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let running = job(None);
        let mut new = succeeded();
        let still = PreviewSeen {
            job: Some(&running),
            ..Default::default()
        };
        roll_up(&rj, &prev, &mut new, &still, &now());
        assert_eq!(new.preview, prev.preview);
        assert!(!wanted(&rj, &prev, &new, &still));
        let gone = PreviewSeen::default();
        assert!(wanted(&rj, &prev, &new, &gone));
        let refused = PreviewSeen {
            refused: Some("quota"),
            ..Default::default()
        };
        assert!(!wanted(&rj, &prev, &new, &refused));
        let mut new = succeeded();
        let starting = PreviewSeen {
            starting: true,
            ..Default::default()
        };
        roll_up(&rj, &prev, &mut new, &starting, &now());
        let sent = new.preview.expect("preview");
        assert_eq!(sent.state, PreviewState::Running);
        // Once its Job is seen, the preview says the same: no status write for that alone.
        let mut seen_new = succeeded();
        roll_up(
            &rj,
            &RenderJobStatus::default(),
            &mut seen_new,
            &still,
            &now(),
        );
        assert_eq!(seen_new.preview, Some(sent));
    }

    #[test]
    fn a_preview_written_running_but_never_sent_is_sent_again() {
        // The status goes out before the preview Job's create: a crash between the two.
        let rj = rj();
        let prev = RenderJobStatus {
            preview: Some(PreviewStatus {
                state: PreviewState::Running,
                message: Some(making("x-preview", 10)),
                ..Default::default()
            }),
            ..succeeded()
        };
        let new = succeeded();
        assert!(wanted(&rj, &prev, &new, &PreviewSeen::default()));
        let sent = PreviewSeen {
            starting: true,
            ..Default::default()
        };
        assert!(!wanted(&rj, &prev, &new, &sent));
    }

    #[test]
    fn a_preview_pod_that_cannot_start_says_why() {
        let rj = rj();
        let j = job(None);
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "labels": {"renderfarm.io/step": "preview"}},
            "status": {"phase": "Pending", "containerStatuses": [{"name": "render", "image": "i",
                "imageID": "", "ready": false, "restartCount": 0, "state": {"waiting": {
                "reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}]},
        }))
        .expect("pod");
        let p: BatchPod = p.into();
        let seen = PreviewSeen {
            job: Some(&j),
            pods: vec![&p],
            ..Default::default()
        };
        let mut new = succeeded();
        roll_up(&rj, &RenderJobStatus::default(), &mut new, &seen, &now());
        let p = new.preview.expect("preview");
        assert_eq!(
            (p.state, p.message.as_deref()),
            (
                PreviewState::Running,
                Some(
                    "preview Job x-preview's pod cannot start: ImagePullBackOff: Back-off pulling image"
                )
            )
        );
    }

    #[test]
    fn before_the_frames_are_done_the_preview_waits() {
        let rj = rj();
        let mut new = RenderJobStatus {
            phase: Phase::Running,
            frames: crate::crd::FrameCounts {
                total: 10,
                rendered: 5,
            },
            ..Default::default()
        };
        let none = PreviewSeen::default();
        assert!(!wanted(&rj, &RenderJobStatus::default(), &new, &none));
        roll_up(&rj, &RenderJobStatus::default(), &mut new, &none, &now());
        let p = new.preview.expect("preview");
        assert_eq!(
            (p.state, p.message.as_deref()),
            (
                PreviewState::Pending,
                Some("waiting for every frame: 5 of 10 rendered")
            )
        );
    }
}
