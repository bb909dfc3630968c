//! Table-driven tests of the roll-up, on Jobs and pods shaped as the API server returns them.

use super::*;
use crate::crd::RenderJobSpec;
use crate::job::{BATCH_LABEL, CONTAINER, job_name};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use render_contract::TerminationMessage;
use serde_json::json;
use std::collections::BTreeMap;

fn rj(frames_end: i32, batch: i32, suspend: bool) -> RenderJob {
    let spec: RenderJobSpec = serde_json::from_value(json!({
        "blendFile": "s.blend", "frames": {"start": 1, "end": frames_end}, "batchSize": batch,
        "parallelism": 2, "storage": {"claimName": "c"}, "suspend": suspend,
    }))
    .expect("spec");
    let mut rj = RenderJob::new("shot", spec);
    rj.metadata.generation = Some(1);
    rj
}

fn job(
    index: u32,
    condition: Option<(&str, &str)>,
    failed: i32,
    times: Option<(&str, &str)>,
) -> Job {
    let conditions: Vec<_> = condition
        .map(|(t, reason)| json!({"type": t, "status": "True", "reason": reason, "message": format!("{t} because {reason}"), "lastTransitionTime": "2026-01-01T00:10:00Z"}))
        .into_iter()
        .collect();
    let mut status = json!({"failed": failed, "conditions": conditions});
    if let Some((start, end)) = times {
        status["startTime"] = json!(start);
        status["completionTime"] = json!(end);
    }
    serde_json::from_value(json!({
        "metadata": {"name": job_name("shot", index), "labels": {BATCH_LABEL: index.to_string()}},
        "status": status,
    }))
    .expect("job")
}

fn pod(phase: &str, extra: serde_json::Value) -> Pod {
    let mut status = json!({"phase": phase});
    if let Some(obj) = extra.as_object() {
        for (k, v) in obj {
            status[k] = v.clone();
        }
    }
    serde_json::from_value(json!({"metadata": {"name": "p"}, "status": status})).expect("pod")
}

fn terminated(exit_code: i32, reason: &str, message: &str) -> serde_json::Value {
    json!({"containerStatuses": [{"name": CONTAINER, "image": "i", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": exit_code, "reason": reason, "message": message, "finishedAt": "2026-01-01T00:05:00Z"}}}]})
}

fn now() -> Time {
    Time("2026-01-01T01:00:00Z".parse().expect("time"))
}

struct World {
    rj: RenderJob,
    plan: Plan,
    jobs: Vec<Job>,
    pods: BTreeMap<u32, Vec<Pod>>,
}

impl World {
    fn new(rj: RenderJob) -> World {
        let plan = Plan::new(&rj.spec.frames, rj.spec.batch_size).expect("plan");
        World {
            rj,
            plan,
            jobs: vec![],
            pods: BTreeMap::new(),
        }
    }

    /// The status, from the Jobs and pods as the operator's caches keep them.
    fn status(&self) -> RenderJobStatus {
        self.status_holding(false)
    }

    /// The same, with the holds the reconcile applies (`stop`, `claim_missing`) when `hold`.
    fn status_holding(&self, hold: bool) -> RenderJobStatus {
        let kept: Vec<BatchJob> = self.jobs.iter().cloned().map(BatchJob::from).collect();
        let by_batch = jobs_by_batch("shot", &self.plan, kept.iter());
        let recorded = self
            .rj
            .status
            .as_ref()
            .and_then(|s| s.succeeded_batches.as_deref())
            .map(|r| index::Recorded::decode(r, self.plan.len()))
            .unwrap_or_default();
        let kept_pods: BTreeMap<u32, Vec<BatchPod>> = self
            .pods
            .iter()
            .map(|(k, v)| (*k, v.iter().cloned().map(BatchPod::from).collect()))
            .collect();
        let pairs: Vec<(u32, &BatchPod)> = kept_pods
            .iter()
            .flat_map(|(k, v)| v.iter().map(|p| (*k, p)))
            .collect();
        let pods = index::Pods::new(self.plan.len(), &pairs);
        let states = rendered_states(&batch_states(&self.plan, &by_batch, &recorded), &pods);
        let held = hold
            .then(|| {
                stop(&self.rj, &self.plan, &states, &by_batch, &pods)
                    .or_else(|| claim_missing(&self.rj, &states, &pods))
            })
            .flatten();
        roll_up(
            &self.rj,
            &Observed {
                plan: &self.plan,
                states: &states,
                jobs: &by_batch,
                pods: &pods,
                hold: held.as_ref(),
            },
            &now(),
        )
    }
}

fn cond<'a>(s: &'a RenderJobStatus, t: &str) -> &'a Condition {
    s.conditions
        .iter()
        .find(|c| c.type_ == t)
        .expect("condition present")
}

#[test]
fn nothing_started_is_pending_with_every_batch_waiting() {
    let s = World::new(rj(22, 5, false)).status();
    assert_eq!(s.phase, Phase::Pending);
    assert_eq!(
        s.batches,
        BatchCounts {
            total: 5,
            pending: 5,
            active: 0,
            succeeded: 0,
            failed: 0,
            queued: 0
        }
    );
    assert_eq!((s.frames.rendered, s.frames.total), (0, 22));
    assert_eq!(s.progress.as_deref(), Some("0%"));
    assert_eq!(cond(&s, COMPLETE).status, "False");
    assert_eq!(cond(&s, PROGRESSING).reason, "Waiting");
    assert_eq!(s.estimated_completion_time, None);
}

#[test]
fn running_counts_frames_of_succeeded_batches_and_estimates_time_left() {
    let mut w = World::new(rj(22, 5, false));
    w.jobs.push(job(
        0,
        Some(("Complete", "")),
        0,
        Some(("2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z")),
    ));
    w.jobs.push(job(1, None, 0, None));
    w.pods.insert(1, vec![pod("Running", json!({}))]);
    let ok = TerminationMessage {
        outcome: render_contract::Outcome::Succeeded,
        frames_rendered: 5,
        frames_skipped: 0,
        frames_missing: vec![],
        seconds_per_frame: Some(2.5),
        device: Some("CPU".into()),
        blender_version: Some("3.4.1".into()),
        last_frame: None,
        message: None,
    };
    w.pods.insert(
        0,
        vec![pod(
            "Succeeded",
            terminated(0, "Completed", &ok.to_json_bounded()),
        )],
    );
    let s = w.status();
    assert_eq!(s.phase, Phase::Running);
    assert_eq!(
        s.batches,
        BatchCounts {
            total: 5,
            pending: 3,
            active: 1,
            succeeded: 1,
            failed: 0,
            queued: 0
        }
    );
    assert_eq!(
        s.pods,
        PodCounts {
            pending: 0,
            running: 1,
            waiting: 0,
            succeeded: 1,
            failed: 0
        }
    );
    assert_eq!(s.frames_summary.as_deref(), Some("5/22"));
    assert_eq!(s.batches_summary.as_deref(), Some("1/5"));
    assert_eq!(s.progress.as_deref(), Some("22%"));
    assert_eq!(s.seconds_per_frame, Some(2.5));
    assert_eq!(s.devices_used, vec!["CPU".to_string()]);
    assert_eq!(s.blender_version.as_deref(), Some("3.4.1"));
    assert_eq!(
        s.start_time,
        Some(Time("2026-01-01T00:00:00Z".parse().expect("t")))
    );
    // 4 batches left at parallelism 2 = 2 waves of 60 s after the last completion.
    assert_eq!(
        s.estimated_completion_time,
        Some(Time("2026-01-01T00:03:00Z".parse().expect("t")))
    );
    assert_eq!(s.succeeded_batches.as_deref(), Some("0"));
}

#[test]
fn all_batches_succeeded_is_complete() {
    let mut w = World::new(rj(10, 5, false));
    w.jobs.push(job(
        0,
        Some(("Complete", "")),
        0,
        Some(("2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z")),
    ));
    w.jobs.push(job(
        1,
        Some(("Complete", "")),
        1,
        Some(("2026-01-01T00:00:00Z", "2026-01-01T00:02:00Z")),
    ));
    let s = w.status();
    assert_eq!(s.phase, Phase::Succeeded);
    assert_eq!(cond(&s, COMPLETE).status, "True");
    assert_eq!(cond(&s, PROGRESSING).status, "False");
    assert_eq!(s.progress.as_deref(), Some("100%"));
    assert_eq!(
        s.completion_time,
        Some(Time("2026-01-01T00:02:00Z".parse().expect("t")))
    );
    assert_eq!(s.estimated_completion_time, None);
    assert_eq!(s.succeeded_batches.as_deref(), Some("0-1"));
}

#[test]
fn cleaned_up_batches_stay_succeeded() {
    let mut r = rj(10, 5, false);
    r.status = Some(RenderJobStatus {
        succeeded_batches: Some("0".into()),
        ..Default::default()
    });
    let mut w = World::new(r);
    w.jobs.push(job(1, None, 0, None));
    let s = w.status();
    assert_eq!(s.batches.succeeded, 1);
    assert_eq!(s.batches.pending, 0);
    assert_eq!(s.frames.rendered, 5);
}

/// Every failure reason the status names, from the pod the API server reports.
#[test]
fn failed_batches_name_frames_attempts_and_reason() {
    let bad_input = TerminationMessage {
        outcome: render_contract::Outcome::BadInput,
        frames_rendered: 0,
        frames_skipped: 0,
        frames_missing: vec![6, 7],
        seconds_per_frame: None,
        device: None,
        blender_version: None,
        last_frame: None,
        message: Some("cannot read /data/s.blend".into()),
    };
    // (case, Job condition, failed pod, reason, exit code, message)
    type Case<'a> = (
        &'a str,
        (&'a str, &'a str),
        Option<Pod>,
        &'a str,
        Option<i32>,
        Option<&'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            "oom",
            ("Failed", "BackoffLimitExceeded"),
            Some(pod("Failed", terminated(137, "OOMKilled", ""))),
            "OOMKilled",
            Some(137),
            None,
        ),
        (
            "blender",
            ("Failed", "BackoffLimitExceeded"),
            Some(pod("Failed", terminated(75, "Error", "Blender crashed"))),
            "BlenderError",
            Some(75),
            Some("Blender crashed"),
        ),
        (
            "bad input",
            ("Failed", "PodFailurePolicy"),
            Some(pod(
                "Failed",
                terminated(64, "Error", &bad_input.to_json_bounded()),
            )),
            "BadInput",
            Some(64),
            Some("cannot read /data/s.blend"),
        ),
        (
            "deadline",
            ("Failed", "DeadlineExceeded"),
            Some(pod("Failed", terminated(143, "Error", ""))),
            "DeadlineExceeded",
            None,
            Some("Failed because DeadlineExceeded"),
        ),
        (
            "no pod left",
            ("Failed", "BackoffLimitExceeded"),
            None,
            "BackoffLimitExceeded",
            None,
            Some("Failed because BackoffLimitExceeded"),
        ),
        (
            "evicted pod only",
            ("Failed", "BackoffLimitExceeded"),
            Some(pod(
                "Failed",
                json!({"reason": "Evicted", "message": "node pressure"}),
            )),
            "Evicted",
            None,
            Some("node pressure"),
        ),
    ];
    for (name, condition, failed_pod, reason, exit_code, message) in cases {
        let mut w = World::new(rj(10, 5, false));
        w.jobs.push(job(0, Some(("Complete", "")), 0, None));
        w.jobs.push(job(1, Some(condition), 4, None));
        if let Some(p) = failed_pod {
            w.pods.insert(1, vec![p]);
        }
        let s = w.status();
        assert_eq!(s.phase, Phase::Failed, "{name}");
        assert_eq!(cond(&s, FAILED).status, "True", "{name}");
        assert!(
            cond(&s, FAILED).message.contains("frames 6..10"),
            "{name}: {}",
            cond(&s, FAILED).message
        );
        let f = &s.failed_batches[0];
        assert_eq!(
            (f.index, f.frames.as_str(), f.attempts),
            (1, "6..10", 4),
            "{name}"
        );
        assert_eq!(f.reason, reason, "{name}");
        assert_eq!(f.exit_code, exit_code, "{name}");
        assert_eq!(f.message.as_deref(), message, "{name}");
        assert_eq!(f.job, job_name("shot", 1));
    }
}

#[test]
fn a_failed_batch_does_not_stop_the_others() {
    let mut w = World::new(rj(15, 5, false));
    w.jobs
        .push(job(0, Some(("Failed", "BackoffLimitExceeded")), 4, None));
    w.jobs.push(job(1, None, 0, None));
    let s = w.status();
    assert_eq!(s.phase, Phase::Running);
    assert_eq!(cond(&s, FAILED).status, "False");
    assert_eq!(cond(&s, FAILED).reason, "BatchFailuresSoFar");
    assert_eq!(s.batches.failed, 1);
}

#[test]
fn stuck_pods_show_why() {
    let unschedulable = pod(
        "Pending",
        json!({"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/4 nodes are available: 4 node(s) didn't match Pod's node affinity/selector."}]}),
    );
    let image = pod(
        "Pending",
        json!({"containerStatuses": [{"name": CONTAINER, "image": "i", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"nope\""}}}]}),
    );
    for (p, reason, text) in [
        (unschedulable, "Unschedulable", "didn't match"),
        (image, "ImagePullBackOff", "Back-off pulling"),
    ] {
        let mut w = World::new(rj(5, 5, false));
        w.jobs.push(job(0, None, 0, None));
        w.pods.insert(0, vec![p]);
        let s = w.status();
        let c = cond(&s, PROGRESSING);
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", reason));
        assert!(c.message.contains(text), "{}", c.message);
        assert_eq!(s.pods.pending, 1);
    }
}

#[test]
fn suspended_renders_say_so() {
    let mut w = World::new(rj(10, 5, true));
    w.jobs.push(job(0, Some(("Complete", "")), 0, None));
    let s = w.status();
    assert_eq!(s.phase, Phase::Suspended);
    assert_eq!(cond(&s, SUSPENDED).status, "True");
    assert_eq!(cond(&s, PROGRESSING).status, "False");
}

#[test]
fn transition_times_move_only_on_transitions() {
    let mut w = World::new(rj(10, 5, false));
    let first = w.status();
    w.rj.status = Some(first.clone());
    // Same world later: identical status, so the controller writes nothing.
    assert_eq!(w.status(), first);
    let mut conditions = first.conditions.clone();
    let later = Time("2026-01-02T00:00:00Z".parse().expect("t"));
    set_condition(
        &mut conditions,
        COMPLETE,
        false,
        "BatchesRemaining",
        "x".into(),
        Some(1),
        &later,
    );
    assert_eq!(
        cond(
            &RenderJobStatus {
                conditions: conditions.clone(),
                ..Default::default()
            },
            COMPLETE
        )
        .last_transition_time,
        now()
    );
    set_condition(
        &mut conditions,
        COMPLETE,
        true,
        "AllBatchesSucceeded",
        "x".into(),
        Some(1),
        &later,
    );
    assert_eq!(
        cond(
            &RenderJobStatus {
                conditions,
                ..Default::default()
            },
            COMPLETE
        )
        .last_transition_time,
        later
    );
}

#[test]
fn ranges_encode_compactly_and_round_trip() {
    let set: BTreeSet<u32> = [0, 1, 2, 3, 4, 7, 9, 10].into_iter().collect();
    assert_eq!(encode_ranges(&set), "0-4,7,9-10");
    assert_eq!(decode_ranges("0-4,7,9-10"), set);
    assert_eq!(
        decode_ranges("garbage,3,5-x,9-2"),
        [3].into_iter().collect()
    );
}

#[test]
fn stray_jobs_are_ignored() {
    let w = World::new(rj(10, 5, false));
    let mut stray = job(1, Some(("Complete", "")), 0, None);
    stray.metadata.name = Some("someone-elses".into());
    let mut out_of_plan = job(7, Some(("Complete", "")), 0, None);
    out_of_plan.metadata.name = Some(job_name("shot", 7));
    let (stray, out_of_plan) = (BatchJob::from(stray), BatchJob::from(out_of_plan));
    let jobs = [&stray, &out_of_plan];
    assert!(jobs_by_batch("shot", &w.plan, jobs.iter().copied()).is_empty());
}

#[test]
fn a_started_render_does_not_fall_back_to_pending() {
    // The first pods finished but their Jobs are not Complete yet, and nothing runs.
    let mut w = World::new(rj(10, 5, false));
    w.jobs.push(job(0, None, 0, None));
    w.pods.insert(0, vec![pod("Succeeded", json!({}))]);
    assert_eq!(w.status().phase, Phase::Running);
    // Between batches: nothing runs, nothing has finished, but it was running.
    let mut w = World::new(rj(10, 5, false));
    w.rj.status = Some(RenderJobStatus {
        phase: Phase::Running,
        ..Default::default()
    });
    w.jobs.push(job(0, None, 0, None));
    assert_eq!(w.status().phase, Phase::Running);
}

#[test]
fn recorded_successes_merge_with_new_ones_and_stay_in_the_plan() {
    let mut r = rj(50, 5, false);
    r.status = Some(RenderJobStatus {
        // 40-50: batches a plan of 10 does not have (written around the schema).
        succeeded_batches: Some("0-2,5,garbage,40-50".into()),
        ..Default::default()
    });
    let mut w = World::new(r);
    w.jobs.push(job(3, Some(("Complete", "")), 0, None));
    // Recorded as succeeded, its Job made again: it stays recorded.
    w.jobs.push(job(5, None, 0, None));
    w.jobs.push(job(7, Some(("Complete", "")), 0, None));
    let s = w.status();
    assert_eq!(s.succeeded_batches.as_deref(), Some("0-3,5,7"));
    assert_eq!(s.batches.succeeded, 5);
    assert_eq!(s.frames.rendered, 25);
}

#[test]
fn only_transitions_and_failures_are_urgent() {
    let mut w = World::new(rj(20, 5, false));
    w.rj.status = Some(RenderJobStatus {
        start_time: Some(Time("2026-01-01T00:00:00Z".parse().expect("t"))),
        ..Default::default()
    });
    w.jobs.push(job(0, None, 0, None));
    w.pods.insert(0, vec![pod("Running", json!({}))]);
    let running = w.status();
    w.rj.status = Some(running.clone());
    assert!(!urgent(&running, &running));
    // The first pods bring the start time, a moment after the first write: it waits.
    let unstarted = RenderJobStatus {
        start_time: None,
        ..running.clone()
    };
    assert!(!urgent(&unstarted, &running));

    // One more batch done: counts, progress and messages change, nothing else.
    w.jobs[0] = job(
        0,
        Some(("Complete", "")),
        0,
        Some(("2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z")),
    );
    w.jobs.push(job(1, None, 0, None));
    let progressed = w.status();
    assert_ne!(progressed, running);
    assert!(!urgent(&running, &progressed));

    // A batch fails: urgent.
    w.jobs
        .push(job(2, Some(("Failed", "BackoffLimitExceeded")), 4, None));
    assert!(urgent(&running, &w.status()));

    // A pod cannot be scheduled: the Progressing reason changes, urgent.
    let mut w = World::new(rj(20, 5, false));
    w.rj.status = Some(running.clone());
    w.jobs.push(job(0, None, 0, None));
    w.pods.insert(
        0,
        vec![pod(
            "Pending",
            json!({"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}),
        )],
    );
    assert!(urgent(&running, &w.status()));

    // Everything done: a new phase, urgent.
    let mut w = World::new(rj(5, 5, false));
    w.rj.status = Some(running.clone());
    w.jobs.push(job(0, Some(("Complete", "")), 0, None));
    assert!(urgent(&running, &w.status()));
}

#[test]
fn a_batch_failed_on_bad_input_stops_the_render() {
    let mut w = World::new(rj(6, 1, false));
    w.jobs
        .push(job(0, Some(("Failed", "PodFailurePolicy")), 1, None));
    w.jobs.push(job(1, None, 0, None));
    let message = TerminationMessage {
        outcome: render_contract::Outcome::BadInput,
        frames_rendered: 0,
        frames_skipped: 0,
        frames_missing: vec![1],
        seconds_per_frame: None,
        device: None,
        blender_version: None,
        last_frame: None,
        message: Some("cannot read /data/s.blend: No such file or directory".into()),
    };
    w.pods.insert(
        0,
        vec![pod(
            "Failed",
            terminated(64, "Error", &message.to_json_bounded()),
        )],
    );
    // Batch 1 still runs: the render is not over, but nothing more starts.
    let s = w.status_holding(true);
    assert_eq!(s.phase, Phase::Running);
    let p = cond(&s, PROGRESSING);
    assert_eq!(
        (p.status.as_str(), p.reason.as_str()),
        ("False", "BadInput")
    );
    assert!(
        p.message.contains("cannot read /data/s.blend"),
        "{}",
        p.message
    );
    // Once it is done the render fails, with four batches never started.
    w.jobs[1] = job(1, Some(("Complete", "Done")), 0, None);
    let s = w.status_holding(true);
    assert_eq!(s.phase, Phase::Failed);
    assert_eq!(
        (s.batches.pending, s.batches.failed, s.batches.succeeded),
        (4, 1, 1)
    );
    let f = cond(&s, FAILED);
    assert_eq!((f.status.as_str(), f.reason.as_str()), ("True", "BadInput"));
    // Without the hold, the same world is a render with failures so far.
    assert_eq!(w.status().phase, Phase::Running);
}

#[test]
fn max_failed_batches_stops_the_render() {
    let mut r = rj(6, 1, false);
    r.spec.max_failed_batches = 2;
    let mut w = World::new(r);
    w.jobs
        .push(job(0, Some(("Failed", "BackoffLimitExceeded")), 4, None));
    w.jobs.push(job(1, None, 0, None));
    assert_eq!(w.status_holding(true).phase, Phase::Running);
    assert_eq!(
        cond(&w.status_holding(true), PROGRESSING).reason,
        "Rendering"
    );
    w.jobs[1] = job(1, Some(("Failed", "BackoffLimitExceeded")), 4, None);
    let s = w.status_holding(true);
    assert_eq!(s.phase, Phase::Failed);
    let f = cond(&s, FAILED);
    assert_eq!(f.reason, "TooManyFailedBatches");
    assert!(
        f.message
            .starts_with("2 batches failed (maxFailedBatches is 2)"),
        "{}",
        f.message
    );
}

#[test]
fn a_missing_claim_holds_the_render_and_says_which() {
    let mut w = World::new(rj(6, 1, false));
    w.jobs.push(job(0, None, 0, None));
    w.pods.insert(
        0,
        vec![pod(
            "Pending",
            json!({"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/4 nodes are available: persistentvolumeclaim \"c\" not found. preemption: 0/4 nodes are available: 4 Preemption is not helpful for scheduling."}]}),
        )],
    );
    let s = w.status_holding(true);
    let p = cond(&s, PROGRESSING);
    assert_eq!(
        (p.status.as_str(), p.reason.as_str()),
        ("False", "ClaimNotFound")
    );
    assert!(
        p.message
            .starts_with("the storage claim \"c\" does not exist"),
        "{}",
        p.message
    );
    assert_eq!(s.phase, Phase::Pending, "held, not failed");
}

#[test]
fn batches_held_by_a_queue_or_someone_else_are_queued() {
    let mut w = World::new(rj(15, 5, false));
    w.rj.spec.queue_name = Some("artists".into());
    let mut queued = job(0, None, 0, None);
    queued.spec =
        Some(serde_json::from_value(json!({"suspend": true, "template": {}})).expect("spec"));
    queued
        .metadata
        .labels
        .get_or_insert_default()
        .insert(crate::job::QUEUE_LABEL.into(), "artists".into());
    w.jobs.push(queued);
    let s = w.status();
    assert_eq!(
        (s.batches.active, s.batches.queued, s.batches.failed),
        (1, 1, 0)
    );
    let c = cond(&s, PROGRESSING);
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Queued"));
    assert!(
        c.message.contains("waits for queue artists"),
        "{}",
        c.message
    );

    // One admitted, its pod not running yet: still says what the others wait for.
    let mut second = w.jobs[0].clone();
    second.metadata.name = Some(job_name("shot", 1));
    second
        .metadata
        .labels
        .get_or_insert_default()
        .insert(BATCH_LABEL.into(), "1".into());
    w.jobs[0].spec = None;
    w.jobs.push(second);
    let s = w.status();
    assert_eq!((s.batches.active, s.batches.queued), (2, 1));
    let c = cond(&s, PROGRESSING);
    assert_eq!(c.reason, "Waiting");
    assert!(
        c.message.contains("1 batch waits for queue artists"),
        "{}",
        c.message
    );

    // Suspended by hand: queued too, and the message says by whom it is not.
    let mut by_hand = job(1, None, 0, None);
    by_hand.spec =
        Some(serde_json::from_value(json!({"suspend": true, "template": {}})).expect("spec"));
    w.jobs = vec![job(0, None, 0, None), by_hand];
    w.pods.insert(0, vec![pod("Running", json!({}))]);
    let s = w.status();
    assert_eq!((s.batches.active, s.batches.queued), (2, 1));
    let c = cond(&s, PROGRESSING);
    assert_eq!(c.reason, "Rendering");
    assert!(c.message.contains("1 running, 1 queued"), "{}", c.message);
    assert!(
        c.message
            .contains("not by renderfarm (Job shot-0001 first)"),
        "{}",
        c.message
    );

    // Suspended by the operator itself (a pause): not queued.
    let mut paused = job(1, None, 0, None);
    paused.spec =
        Some(serde_json::from_value(json!({"suspend": true, "template": {}})).expect("spec"));
    paused.metadata.annotations = Some(
        [(
            crate::job::PAUSED_ANNOTATION.to_string(),
            "true".to_string(),
        )]
        .into(),
    );
    w.jobs = vec![job(0, None, 0, None), paused];
    assert_eq!(w.status().batches.queued, 0);
}

#[test]
fn a_pod_started_ahead_waits_until_the_batch_it_follows_is_finished() {
    let mut w = World::new(rj(15, 5, false));
    let mut follower = job(2, None, 0, None);
    follower
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(crate::job::AFTER_ANNOTATION.into(), "0".into());
    w.jobs = vec![job(0, None, 0, None), follower];
    w.pods.insert(0, vec![pod("Running", json!({}))]);
    w.pods.insert(2, vec![pod("Running", json!({}))]);
    let s = w.status();
    assert_eq!((s.pods.running, s.pods.waiting), (1, 1));
    assert_eq!(s.batches.active, 2);
    // Batch 0 done: its follower renders.
    w.jobs[0] = job(0, Some(("Complete", "Done")), 0, None);
    w.pods.insert(0, vec![pod("Succeeded", json!({}))]);
    let s = w.status();
    assert_eq!((s.pods.running, s.pods.waiting), (1, 0));
}

/// The passes come from the earliest batch that reported some, and stay; flat frames of every
/// batch are listed.
#[test]
fn passes_and_flat_frames_come_from_the_frame_checks() {
    let mut w = World::new(rj(10, 5, false));
    let report = |passes: &[&str], blank: &[i32]| {
        let message = TerminationMessage {
            outcome: render_contract::Outcome::Succeeded,
            frames_rendered: 5,
            frames_skipped: 0,
            frames_missing: vec![],
            seconds_per_frame: Some(1.0),
            device: Some("CPU".into()),
            blender_version: Some("4.5.15".into()),
            last_frame: None,
            message: None,
        };
        let checks = render_contract::FrameChecks {
            passes: passes.iter().map(|p| p.to_string()).collect(),
            blank_frames: blank.to_vec(),
            ..Default::default()
        };
        let report = render_contract::TerminationReport {
            message,
            scene: Default::default(),
        };
        let json = render_contract::checks::to_json_bounded(&report, &checks);
        pod("Succeeded", terminated(0, "Completed", &json))
    };
    for i in 0..2 {
        w.jobs.push(job(i, Some(("Complete", "")), 0, None));
    }
    w.pods.insert(
        1,
        vec![report(&["ViewLayer.Combined", "ViewLayer.Mist"], &[7])],
    );
    w.pods.insert(
        0,
        vec![report(&["ViewLayer.Combined", "ViewLayer.Depth"], &[2, 3])],
    );
    let s = w.status();
    assert_eq!(s.passes, ["ViewLayer.Combined", "ViewLayer.Depth"]);
    assert_eq!(s.blank_frames, [2, 3, 7]);
    // Written once, they stay when the pods are gone.
    w.rj.status = Some(s.clone());
    w.pods.clear();
    let again = w.status();
    assert_eq!(
        (again.passes, again.blank_frames),
        (s.passes, s.blank_frames)
    );
}

/// A batch whose frames failed their checks twice: retried by the Job (not in the pod
/// failure policy), named `BadFrame` with render-node's message once it gives up.
#[test]
fn bad_frames_name_the_failed_batch() {
    let message = TerminationMessage {
        outcome: render_contract::Outcome::BadFrame,
        frames_rendered: 0,
        frames_skipped: 0,
        frames_missing: vec![6, 7],
        seconds_per_frame: None,
        device: None,
        blender_version: None,
        last_frame: None,
        message: Some("frames 6,7 failed their check rendered twice: …".into()),
    };
    let mut w = World::new(rj(10, 5, false));
    w.jobs
        .push(job(1, Some(("Failed", "BackoffLimitExceeded")), 4, None));
    let code = render_contract::exit::BAD_FRAME;
    let failed = pod(
        "Failed",
        terminated(code, "Error", &message.to_json_bounded()),
    );
    w.pods.insert(1, vec![failed]);
    let s = w.status();
    let f = &s.failed_batches[0];
    assert_eq!(
        (f.reason.as_str(), f.exit_code, f.message.as_deref()),
        ("BadFrame", Some(code), message.message.as_deref())
    );
}
