//! `status.rerenders`: requests to render frames of a finished render again
//! (`spec.rerender`), each rendered once by one Job (`<render>-rerender-<serial>`) once no
//! batch is running. Pure: the reconcile applies the Job this asks for.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use renderfarm_api::frames;

use crate::cache::{BatchJob, BatchPod, Finished};
use crate::crd::{RenderJob, RerenderState, RerenderStatus};
use crate::plan::Plan;

/// Requests kept in status, the latest last.
pub const MAX_RERENDERS_KEPT: usize = 20;

/// What the rerender step sees.
#[derive(Debug, Default)]
pub struct RerenderSeen<'a> {
    /// The Job of the request in `spec.rerender`, if it exists.
    pub job: Option<&'a BatchJob>,
    /// Its pods.
    pub pods: Vec<&'a BatchPod>,
    /// Batches are still to render or rendering: the request waits.
    pub batches_busy: bool,
}

/// The requests as they stand now, and the frames to render when the Job of `spec.rerender`
/// is to be applied (again: an apply of the same Job changes nothing).
pub fn roll_up(
    rj: &RenderJob,
    plan: &Plan,
    old: &[RerenderStatus],
    seen: &RerenderSeen<'_>,
    wall: &Time,
) -> (Vec<RerenderStatus>, Option<Vec<i32>>) {
    let mut list = old.to_vec();
    let Some(req) = &rj.spec.rerender else {
        return (list, None);
    };
    let at = list.iter().position(|r| r.serial == req.serial);
    let before = at.map(|i| list[i].clone());
    if before
        .as_ref()
        .is_some_and(|r| matches!(r.state, RerenderState::Succeeded | RerenderState::Failed))
    {
        return (list, None);
    }
    let (entry, apply) = match wanted_frames(plan, &req.frames) {
        Err(why) => (
            entry(
                req.serial,
                &req.frames,
                RerenderState::Failed,
                wall,
                Some(why),
            ),
            None,
        ),
        Ok(wanted) => next(&wanted, req.serial, before.as_ref(), seen, wall),
    };
    match at {
        Some(i) => list[i] = entry,
        None => list.push(entry),
    }
    let drop = list.len().saturating_sub(MAX_RERENDERS_KEPT);
    list.drain(..drop);
    (list, apply)
}

/// The request's frames, each a frame of the render.
fn wanted_frames(plan: &Plan, text: &str) -> Result<Vec<i32>, String> {
    let wanted = frames::parse(text).map_err(|e| e.to_string())?;
    let strays: Vec<i32> = wanted
        .iter()
        .copied()
        .filter(|f| !plan.contains(*f))
        .collect();
    if !strays.is_empty() {
        return Err(format!(
            "frames {} are not frames of this render",
            frames::encode(&strays)
        ));
    }
    Ok(wanted)
}

fn entry(
    serial: i64,
    frames_text: &str,
    state: RerenderState,
    wall: &Time,
    message: Option<String>,
) -> RerenderStatus {
    let done = matches!(state, RerenderState::Succeeded | RerenderState::Failed);
    RerenderStatus {
        serial,
        frames: frames::parse(frames_text)
            .map(|f| frames::encode(&f))
            .unwrap_or_else(|_| frames_text.to_string()),
        state,
        start_time: (state != RerenderState::Waiting).then(|| wall.clone()),
        completion_time: done.then(|| wall.clone()),
        message,
    }
}

/// The request's next state: from its Job when there is one, else waiting for the batches or
/// starting its Job.
fn next(
    wanted: &[i32],
    serial: i64,
    before: Option<&RerenderStatus>,
    seen: &RerenderSeen<'_>,
    wall: &Time,
) -> (RerenderStatus, Option<Vec<i32>>) {
    let text = frames::encode(wanted);
    let started = before.and_then(|r| r.start_time.clone());
    let Some(job) = seen.job else {
        if seen.batches_busy {
            let why = "waits for the render's batches to finish".to_string();
            return (
                entry(serial, &text, RerenderState::Waiting, wall, Some(why)),
                None,
            );
        }
        let mut e = entry(serial, &text, RerenderState::Running, wall, None);
        e.start_time = started.or(e.start_time);
        return (e, Some(wanted.to_vec()));
    };
    let mut e = entry(serial, &text, RerenderState::Running, wall, None);
    e.start_time = started.or_else(|| job.start_time.clone()).or(e.start_time);
    e.completion_time = None;
    match &job.finished {
        Some(Finished::Complete) => {
            e.state = RerenderState::Succeeded;
            e.completion_time = job.completion_time.clone().or(Some(wall.clone()));
        }
        Some(Finished::Failed(f)) => {
            e.state = RerenderState::Failed;
            e.completion_time = f.at.clone().or(Some(wall.clone()));
            let pod_why = seen.pods.iter().rev().find_map(|p| p.failure.as_deref());
            e.message = pod_why
                .map(|p| format!("{}: {}", p.reason, p.message.as_deref().unwrap_or("")))
                .or_else(|| f.message.clone().or_else(|| f.reason.clone()));
        }
        None => {}
    }
    (e, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rj(rerender: Option<(&str, i64)>) -> RenderJob {
        let mut spec = json!({
            "blendFile": "s.blend", "frames": {"start": 1, "end": 50},
            "storage": {"claimName": "c"},
        });
        if let Some((frames, serial)) = rerender {
            spec["rerender"] = json!({"frames": frames, "serial": serial});
        }
        RenderJob::new("shot", serde_json::from_value(spec).expect("spec"))
    }

    fn plan(rj: &RenderJob) -> Plan {
        Plan::new(&rj.spec.frames, 5).expect("plan")
    }

    fn at(t: &str) -> Time {
        Time(t.parse().expect("time"))
    }

    fn job(finished: Option<Finished>) -> BatchJob {
        let v = json!({"metadata": {"name": "shot-rerender-1"}, "status": {"startTime": "2026-01-01T00:01:00Z"}});
        let mut j: BatchJob = serde_json::from_value::<k8s_openapi::api::batch::v1::Job>(v)
            .expect("job")
            .into();
        j.finished = finished;
        j
    }

    #[test]
    fn a_request_waits_for_the_batches_then_runs_once_and_records_when() {
        let rj = rj(Some(("40-42,12", 1)));
        let (p, t0, t1) = (
            plan(&rj),
            at("2026-01-01T00:00:00Z"),
            at("2026-01-01T00:05:00Z"),
        );
        let busy = RerenderSeen {
            batches_busy: true,
            ..Default::default()
        };
        let (list, apply) = roll_up(&rj, &p, &[], &busy, &t0);
        assert_eq!((list[0].state, apply), (RerenderState::Waiting, None));
        let (list, apply) = roll_up(&rj, &p, &list, &RerenderSeen::default(), &t0);
        assert_eq!(apply, Some(vec![12, 40, 41, 42]));
        assert_eq!(
            (
                list[0].state,
                list[0].frames.as_str(),
                list[0].start_time.clone()
            ),
            (RerenderState::Running, "12,40-42", Some(t0.clone()))
        );
        // The Job not in the cache yet: applied again, the start kept.
        let (again, apply) = roll_up(&rj, &p, &list, &RerenderSeen::default(), &t1);
        assert_eq!(
            (again[0].start_time.clone(), apply.is_some()),
            (Some(t0.clone()), true)
        );
        let running = job(None);
        let seen = RerenderSeen {
            job: Some(&running),
            ..Default::default()
        };
        let (list, apply) = roll_up(&rj, &p, &again, &seen, &t1);
        assert_eq!((list[0].state, apply), (RerenderState::Running, None));
        let mut done = job(Some(Finished::Complete));
        done.completion_time = Some(t1.clone());
        let seen = RerenderSeen {
            job: Some(&done),
            ..Default::default()
        };
        let (list, _) = roll_up(&rj, &p, &list, &seen, &t1);
        assert_eq!(
            (
                list[0].state,
                list[0].start_time.clone(),
                list[0].completion_time.clone()
            ),
            (RerenderState::Succeeded, Some(t0), Some(t1.clone()))
        );
        // Done is done: the Job gone, nothing is rendered again.
        assert_eq!(
            roll_up(&rj, &p, &list, &RerenderSeen::default(), &t1),
            (list, None)
        );
    }

    #[test]
    fn frames_outside_the_render_fail_the_request_naming_them() {
        let rj = rj(Some(("49-52,3", 2)));
        let t = at("2026-01-01T00:00:00Z");
        let (list, apply) = roll_up(&rj, &plan(&rj), &[], &RerenderSeen::default(), &t);
        assert_eq!(apply, None);
        assert_eq!(list[0].state, RerenderState::Failed);
        assert_eq!(
            list[0].message.as_deref(),
            Some("frames 51-52 are not frames of this render")
        );
    }

    #[test]
    fn a_new_request_is_added_and_old_ones_kept_up_to_a_limit() {
        let t = at("2026-01-01T00:00:00Z");
        let old: Vec<RerenderStatus> = (1..=MAX_RERENDERS_KEPT as i64)
            .map(|s| entry(s, "1", RerenderState::Succeeded, &t, None))
            .collect();
        let rj = rj(Some(("7", 21)));
        let (list, apply) = roll_up(&rj, &plan(&rj), &old, &RerenderSeen::default(), &t);
        assert_eq!(list.len(), MAX_RERENDERS_KEPT);
        assert_eq!(
            (list[0].serial, list.last().map(|r| r.serial)),
            (2, Some(21))
        );
        assert_eq!(apply, Some(vec![7]));
        // No request: the list as it was.
        let none = self::rj(None);
        assert_eq!(
            roll_up(&none, &plan(&none), &old, &RerenderSeen::default(), &t),
            (old, None)
        );
    }
}
