use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::pace::{BUSY_RECHECK, MAX_PASS_EVERY, NOT_SYNCED};
use super::*;
use crate::batch::BatchState;
use crate::cache::{BatchJob, BatchPod};
use crate::crd::RenderJobSpec;
use crate::crd::{CleanupPolicy, Phase, PreviewState, RenderJob, RenderJobStatus};
use crate::events::Note;
use crate::job::{JobConfig, MAX_DISRUPTIONS};
use crate::plan::Plan;
use crate::state::{IN_FLIGHT_AFTER_5XX, RenderState};
use crate::status::preview;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

const UID: &str = "dba0d389-0bbd-4f05-bccc-6193edea917c";

fn rj() -> RenderJob {
    let spec: RenderJobSpec = serde_json::from_value(json!({
        "blendFile": "s.blend", "frames": {"start": 1, "end": 6}, "batchSize": 1,
        "parallelism": 3, "storage": {"claimName": "c"}, "startAhead": false,
    }))
    .expect("spec");
    let mut rj = RenderJob::new("shot", spec);
    rj.metadata.namespace = Some("bench".into());
    rj.metadata.uid = Some(UID.into());
    rj
}

fn job(index: u32, done: bool) -> Arc<BatchJob> {
    let mut v: Value =
        serde_json::from_str(include_str!("../../examples/fixtures/job.json")).expect("json");
    v["metadata"]["name"] = json!(crate::job::job_name("shot", index));
    v["metadata"]["labels"][crate::job::BATCH_LABEL] = json!(index.to_string());
    if !done {
        v["status"] = json!({"active": 1});
    }
    Arc::new(serde_json::from_value::<Job>(v).expect("job").into())
}

/// A Job the Job controller synced but could not create a pod for.
fn refused(index: u32) -> Arc<BatchJob> {
    let mut v: Value =
        serde_json::from_str(include_str!("../../examples/fixtures/job.json")).expect("json");
    v["metadata"]["name"] = json!(crate::job::job_name("shot", index));
    v["metadata"]["labels"][crate::job::BATCH_LABEL] = json!(index.to_string());
    v["status"] = json!({"startTime": "2026-11-23T11:02:09Z", "ready": 0});
    Arc::new(serde_json::from_value::<Job>(v).expect("job").into())
}

fn pod(index: u32, phase: &str) -> Arc<BatchPod> {
    let mut v: Value =
        serde_json::from_str(include_str!("../../examples/fixtures/pod.json")).expect("json");
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
    let seen = Observation::new("shot", plan.clone(), &old, &jobs, &pods);
    assert_eq!(seen.jobs.keys().copied().collect::<Vec<_>>(), [0, 1, 2]);
    let grouped: Vec<(u32, usize)> = seen.pods.iter().map(|(i, p)| (i, p.len())).collect();
    assert_eq!(grouped, [(0, 1), (1, 2), (2, 1)]);

    // Batch 3 is in flight: with batches 1 and 2 running, parallelism 3 leaves no slot.
    let now = Time("2026-11-23T12:00:00Z".parse().expect("time"));
    let (todo, new, _) = seen.decide(&rj, &old, &BTreeSet::from([3]), None, false, &now);
    assert!(todo.create.is_empty(), "{todo:?}");
    assert_eq!((new.batches.active, new.batches.pending), (3, 2));
    assert_eq!(new.succeeded_batches.as_deref(), Some("0"));

    // Nothing in flight: batch 3 is created, and counts as active in the new status.
    let (todo, new, _) = seen.decide(&rj, &old, &BTreeSet::new(), None, false, &now);
    assert_eq!(todo.create, [3]);
    assert_eq!((new.batches.active, new.batches.pending), (3, 2));
    assert_eq!(
        status::batch_states(&plan, &seen.jobs, &seen.recorded)[3],
        BatchState::Pending
    );
}

fn config() -> JobConfig {
    JobConfig::new("renderfarm/render-node:test")
}

/// The arguments of a Job's render-node.
fn args_of(job: &Job) -> Vec<String> {
    job.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers[0].args.clone())
        .unwrap_or_default()
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1).map(String::as_str)
}

#[test]
fn a_running_batch_gets_one_follower_even_while_the_cache_lags() {
    let mut rj = rj();
    rj.spec.start_ahead = true;
    rj.spec.parallelism = 2;
    let t = Instant::now();
    let jobs = vec![job(0, false), job(1, false)];
    let pods = vec![pod(0, "Running"), pod(1, "Pending")];
    // No batch has reported a time per frame yet: none is started ahead.
    let fx = effects(&rj, &jobs, &pods, &mut RenderState::default(), t);
    assert!(fx.apply.is_empty());
    rj.status = Some(RenderJobStatus {
        seconds_per_frame: Some(1.0),
        ..RenderJobStatus::default()
    });
    let mut state = RenderState::default();
    // Batch 0 renders, 1 is still pending: 0 gets a follower, 1 does not yet.
    let fx = effects(&rj, &jobs, &pods, &mut state, t);
    let made: Vec<u32> = fx.apply.iter().map(|(i, _)| *i).collect();
    assert_eq!(made, [2]);
    let follower = &fx.apply[0].1;
    let annotations = follower.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations
            .get(crate::job::AFTER_ANNOTATION)
            .map(String::as_str),
        Some("0")
    );
    let args = args_of(follower);
    assert_eq!(flag(&args, "--after"), Some(format!("{UID}-0").as_str()));
    assert_eq!(flag(&args, "--marker"), Some(format!("{UID}-2").as_str()));
    assert_eq!(state.in_flight_after, BTreeMap::from([(2, 0)]));

    // The cache has not caught up: no second follower for 0, and 2 takes no slot.
    let fx = effects(&rj, &jobs, &pods, &mut state, t + Duration::from_millis(50));
    assert!(
        fx.apply.is_empty(),
        "{:?}",
        fx.apply.iter().map(|(i, _)| i).collect::<Vec<_>>()
    );

    // Seen now, with 1 running too: 1 gets its follower, 3.
    let mut seen_follower: Job = follower.clone();
    seen_follower.metadata.uid = Some("follower-uid".into());
    seen_follower.metadata.creation_timestamp = jobs[0].created.clone();
    let mut jobs = jobs;
    jobs.push(Arc::new(seen_follower.into()));
    let pods = vec![pod(0, "Running"), pod(1, "Running")];
    let fx = effects(
        &rj,
        &jobs,
        &pods,
        &mut state,
        t + Duration::from_millis(100),
    );
    let made: Vec<(u32, Option<String>)> = fx
        .apply
        .iter()
        .map(|(i, j)| (*i, flag(&args_of(j), "--after").map(String::from)))
        .collect();
    assert_eq!(made, [(3, Some(format!("{UID}-1")))]);
    assert!(
        !state.in_flight_after.contains_key(&2),
        "seen: no longer in flight"
    );
}

/// A running pod that turned Ready (its first frame saved) `secs` after its container started.
fn ready_after(index: u32, secs: i64) -> Arc<BatchPod> {
    let mut v: Value =
        serde_json::from_str(include_str!("../../examples/fixtures/pod.json")).expect("json");
    v["metadata"]["labels"][crate::job::BATCH_LABEL] = json!(index.to_string());
    let started = k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).expect("time");
    let ready = k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + secs).expect("time");
    v["status"] = json!({"phase": "Running",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": ready.to_string()}],
        "containerStatuses": [{"name": "render-node", "ready": true, "restartCount": 0,
            "image": "i", "imageID": "", "state": {"running": {"startedAt": started.to_string()}}}]});
    Arc::new(serde_json::from_value::<Pod>(v).expect("pod").into())
}

#[test]
fn the_first_frame_saved_starts_the_first_followers_before_any_batch_ended() {
    let mut rj = rj();
    rj.spec.start_ahead = true;
    rj.spec.parallelism = 2;
    let t = Instant::now();
    let jobs = vec![job(0, false), job(1, false)];
    // Both render, no frame saved yet: nothing is known of the scene's time.
    let pods = vec![pod(0, "Running"), pod(1, "Running")];
    let fx = effects(&rj, &jobs, &pods, &mut RenderState::default(), t);
    assert!(fx.apply.is_empty());
    // Batch 0 saved its first frame 6 s after its start: one-frame batches are due at once.
    let pods = vec![ready_after(0, 6), pod(1, "Running")];
    let mut state = RenderState::default();
    let fx = effects(&rj, &jobs, &pods, &mut state, t);
    let made: Vec<(u32, Option<String>)> = fx
        .apply
        .iter()
        .map(|(i, j)| (*i, flag(&args_of(j), "--after").map(String::from)))
        .collect();
    assert_eq!(
        made,
        [(2, Some(format!("{UID}-0"))), (3, Some(format!("{UID}-1")))]
    );
}

/// A pending pod the scheduler found no room for.
fn unschedulable(index: u32) -> Arc<BatchPod> {
    let mut v: Value =
        serde_json::from_str(include_str!("../../examples/fixtures/pod.json")).expect("json");
    v["metadata"]["labels"][crate::job::BATCH_LABEL] = json!(index.to_string());
    // Refused by the scheduler: bound to no node.
    v["spec"]["nodeName"] = Value::Null;
    v["status"] = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
        "status": "False", "reason": "Unschedulable", "message": "0/3 nodes are available"}]});
    Arc::new(serde_json::from_value::<Pod>(v).expect("pod").into())
}

fn following(index: u32, leader: u32) -> Arc<BatchJob> {
    Arc::new(BatchJob {
        after: Some(leader),
        ..(*job(index, false)).clone()
    })
}

#[test]
fn a_follower_no_node_has_room_for_is_withdrawn_and_start_ahead_pauses() {
    let mut rj = rj();
    rj.spec.start_ahead = true;
    rj.spec.parallelism = 2;
    rj.status = Some(RenderJobStatus {
        seconds_per_frame: Some(1.0),
        ..RenderJobStatus::default()
    });
    let t = Instant::now();
    // 0 and 1 render; 2 was started ahead to follow 0, and no node has room for its pod.
    let jobs = vec![job(0, false), job(1, false), following(2, 0)];
    let pods = vec![pod(0, "Running"), pod(1, "Running"), unschedulable(2)];
    let mut state = RenderState::default();
    let fx = effects(&rj, &jobs, &pods, &mut state, t);
    assert_eq!(fx.delete, [crate::job::job_name("shot", 2)]);
    assert!(fx.apply.is_empty(), "no follower for 1 meanwhile");
    assert_eq!(state.ahead_paused_until, Some(t + crate::ahead::PAUSE));

    // Its Job gone, 2 waits for a free slot like any batch, and nothing starts ahead until the
    // pause ends, when the render looks again.
    let jobs = vec![job(0, false), job(1, false)];
    let pods = vec![pod(0, "Running"), pod(1, "Running")];
    let later = t + Duration::from_secs(1);
    let fx = effects(&rj, &jobs, &pods, &mut state, later);
    assert!(fx.apply.is_empty() && fx.delete.is_empty());
    assert_eq!(
        fx.wake.ahead_due,
        Some(crate::ahead::PAUSE - Duration::from_secs(1))
    );

    // The pause over: 0 and 1 get their followers again.
    let after_pause = t + crate::ahead::PAUSE;
    let fx = effects(&rj, &jobs, &pods, &mut state, after_pause);
    let made: Vec<u32> = fx.apply.iter().map(|(i, _)| *i).collect();
    assert_eq!(made, [2, 3]);

    // Refused again: twice the pause.
    let jobs = vec![
        job(0, false),
        job(1, false),
        following(2, 0),
        following(3, 1),
    ];
    let pods = vec![
        pod(0, "Running"),
        pod(1, "Running"),
        unschedulable(2),
        unschedulable(3),
    ];
    let fx = effects(&rj, &jobs, &pods, &mut state, after_pause);
    assert_eq!(fx.delete.len(), 2);
    assert_eq!(
        state.ahead_paused_until,
        Some(after_pause + 2 * crate::ahead::PAUSE)
    );
}

#[test]
fn with_other_renders_going_a_render_keeps_two_jobs_waiting_for_pods() {
    let mut rj = rj();
    rj.spec.parallelism = 5;
    let plan = Plan::new(&rj.spec.frames, rj.spec.batch_size).expect("plan");
    let old = RenderJobStatus::default();
    let now = Time("2026-11-23T12:00:00Z".parse().expect("time"));
    let create = |jobs: &[Arc<BatchJob>], pods: &[Arc<BatchPod>], sent: &[u32], sharing| {
        let mut seen = Observation::new("shot", plan.clone(), &old, jobs, pods);
        seen.sharing = sharing;
        let in_flight = sent.iter().copied().collect();
        seen.decide(&rj, &old, &in_flight, None, false, &now)
            .0
            .create
    };
    let with = |i: u32, change: fn(&mut BatchJob)| {
        let mut j = (*job(i, false)).clone();
        change(&mut j);
        Arc::new(j)
    };
    let none: [u32; 0] = [];
    // Alone, a render fills every slot at once.
    assert_eq!(create(&[], &[], &[], false), [0, 1, 2, 3, 4]);
    // With others, two at first; none more while those are sent, or seen without pods.
    assert_eq!(create(&[], &[], &[], true), [0, 1]);
    assert_eq!(create(&[], &[], &[0, 1], true), none);
    let (j0, j1) = (job(0, false), job(1, false));
    assert_eq!(create(&[j0.clone(), j1.clone()], &[], &[], true), none);
    // Each pod made lets one more Job go.
    let pending = [pod(0, "Pending")];
    assert_eq!(create(&[j0.clone(), j1.clone()], &pending, &[], true), [2]);
    let both = [pod(0, "Running"), pod(1, "Pending")];
    assert_eq!(create(&[j0, j1.clone()], &both, &[], true), [2, 3]);
    // Finished Jobs, and Jobs waiting for Kueue or a resume rather than a pod, do not count.
    assert_eq!(
        create(&[job(0, true), job(1, true)], &[], &[], true),
        [2, 3]
    );
    let queued = with(0, |j| j.queued = true);
    let paused = with(1, |j| j.suspended = true);
    assert_eq!(create(&[queued, paused], &[], &[], true), [2, 3]);
    // A Job whose pod is not made yet and one sent: the render waits.
    assert_eq!(create(&[j1], &[], &[2], true), none);
}

/// A decision taken as the controller takes it: its state kept, its effects and when to come
/// back at hand.
#[derive(Debug)]
struct Taken {
    fx: Effects,
    wake: Wake,
}

impl std::ops::Deref for Taken {
    type Target = Effects;
    fn deref(&self) -> &Effects {
        &self.fx
    }
}

impl Taken {
    fn requeue(&self, state: &RenderState, now: Instant) -> Option<Duration> {
        self.wake.requeue(state, now)
    }
}

fn decide_into(input: &Input<'_>, state: &mut RenderState, now: Instant, wall: &Time) -> Taken {
    let d = decide(input, state, &config(), now, wall).expect("decide");
    *state = d.state;
    Taken {
        fx: d.effects,
        wake: d.wake,
    }
}

fn effects(
    rj: &RenderJob,
    jobs: &[Arc<BatchJob>],
    pods: &[Arc<BatchPod>],
    state: &mut RenderState,
    now: Instant,
) -> Taken {
    let input = Input {
        rj,
        jobs,
        pods,
        synced: true,
        disrupted: &|_| 0,
        taken: &[],
        active: 1,
        finishing: 0.0,
        nodes: None,
    };
    let wall = Time("2026-11-23T12:00:00Z".parse().expect("time"));
    decide_into(&input, state, now, &wall)
}

#[test]
fn creations_are_marked_in_flight_before_they_are_sent() {
    let rj = rj();
    let (mut state, t0) = (RenderState::default(), Instant::now());
    let fx = effects(&rj, &[], &[], &mut state, t0);
    let applied: Vec<u32> = fx.apply.iter().map(|(i, _)| *i).collect();
    assert_eq!(applied, [0, 1, 2], "parallelism 3");
    assert_eq!(fx.apply[1].1.metadata.name.as_deref(), Some("shot-0001"));
    assert_eq!(
        state.in_flight.keys().copied().collect::<Vec<_>>(),
        [0, 1, 2]
    );
    let w = fx.status.as_ref().expect("a first status");
    assert_eq!((w.status.batches.active, w.status.batches.pending), (3, 3));
    assert!(w.events.is_empty(), "{:?}", w.events);
    // The marks hold: the same cache again creates nothing more.
    let again = effects(&rj, &[], &[], &mut state, t0 + Duration::from_secs(1));
    assert!(again.apply.is_empty());
}

#[test]
fn settling_keeps_unknown_outcomes_in_flight_and_reports_creations() {
    let rj = rj();
    let (mut state, t0) = (RenderState::default(), Instant::now());
    let fx = effects(&rj, &[], &[], &mut state, t0);
    let note = fx.settle(
        &mut state,
        &[
            (0, Applied::Created),
            (1, Applied::Refused("exceeded quota".into())),
            (2, Applied::Unknown),
        ],
        t0,
    );
    assert_eq!(note, None, "no Event while an apply failed");
    assert_eq!(state.in_flight.keys().copied().collect::<Vec<_>>(), [0, 2]);
    // At once, the refusal holds creation back and shows in status, with a warning.
    let fx = effects(&rj, &[], &[], &mut state, t0);
    assert!(fx.apply.is_empty());
    let w = fx.status.clone().expect("status");
    let progressing = w
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == status::PROGRESSING)
        .expect("Progressing");
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_str()),
        ("False", "JobRejected")
    );
    assert_eq!(
        progressing.message,
        "batch 1 (Job shot-0001) was refused by the API server: exceeded quota"
    );
    assert_eq!(reasons(&w.events), ["JobRejected"]);
    // Soon: batch 0's creation is still to be reported; at the latest when the hold ends.
    assert_eq!(fx.requeue(&state, t0), Some(Duration::from_millis(100)));
    state.created = Default::default();
    assert_eq!(fx.requeue(&state, t0), Some(Duration::from_secs(2)));
    state.created.add([0]);
    // Two seconds later it is tried again, goes through, and batch 0's creation is
    // reported with batch 1's.
    let t2 = t0 + Duration::from_secs(2);
    let fx = effects(&rj, &[], &[], &mut state, t2);
    assert_eq!(fx.apply.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [1]);
    let note = fx.settle(&mut state, &[(1, Applied::Created)], t2);
    assert_eq!(
        note,
        Some(Note::normal(
            "BatchesCreated",
            "Created 2 batch Jobs (shot-0000 to shot-0001), batches 0-1"
        ))
    );
    assert_eq!(state.rejection, None);
    // Come back when batch 2's mark runs out.
    let wake = fx
        .requeue(&state, t0 + Duration::from_secs(50))
        .expect("requeue");
    assert_eq!(wake, Duration::from_millis(10_100));
}

#[test]
fn a_5xx_keeps_a_batch_in_flight_only_briefly_and_a_timeout_for_the_full_time() {
    let rj = rj();
    let (mut state, t0) = (RenderState::default(), Instant::now());
    let fx = effects(&rj, &[], &[], &mut state, t0);
    fx.settle(
        &mut state,
        &[(0, Applied::ServerError), (1, Applied::Unknown)],
        t0,
    );
    assert_eq!(state.in_flight.get(&0), Some(&(t0 + IN_FLIGHT_AFTER_5XX)));
    assert_eq!(
        state.in_flight.get(&1),
        Some(&(t0 + crate::state::IN_FLIGHT_TTL))
    );
    // Once the short mark runs out, batch 0 is tried again; batch 1 still waits.
    let later = t0 + IN_FLIGHT_AFTER_5XX;
    let fx = effects(&rj, &[], &[], &mut state, later);
    assert_eq!(fx.apply.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0]);
    // Unanswered, batch 1 is never applied again blind, however long: only once a read
    // found no Job.
    assert_eq!(state.unanswered, BTreeSet::from([1]));
    let much_later = t0 + crate::state::IN_FLIGHT_TTL * 3;
    let fx = effects(&rj, &[], &[], &mut state, much_later);
    assert!(fx.apply.iter().all(|(i, _)| *i != 1), "{:?}", fx.apply);
    state.read_back(1, false, much_later);
    let fx = effects(&rj, &[], &[], &mut state, much_later);
    assert!(fx.apply.iter().any(|(i, _)| *i == 1), "{:?}", fx.apply);
}

#[test]
fn counts_wait_for_the_next_write_and_transitions_do_not() {
    let rj = rj();
    let t0 = Instant::now();
    let running = [job(0, false), job(1, false), job(2, false)];
    let pods = [pod(0, "Running")];
    let mut state = RenderState::default();
    let fx = effects(&rj, &running, &pods, &mut state, t0);
    let first = fx.status.clone().expect("status");
    assert_eq!(first.status.phase, Phase::Running);
    assert_eq!(reasons(&first.events), ["Rendering"]);
    fx.wrote(&mut state, t0);

    // A second pod runs 300 ms later: only a count changed, so the write waits.
    let pods = [pod(0, "Running"), pod(1, "Running")];
    let soon = t0 + Duration::from_millis(300);
    let fx = effects(&rj, &running, &pods, &mut state, soon);
    assert!(fx.status.is_none());
    assert_eq!(fx.requeue(&state, soon), Some(Duration::from_millis(700)));
    // A second later it goes out.
    let later = t0 + STATUS_EVERY;
    let fx = effects(&rj, &running, &pods, &mut state, later);
    assert_eq!(fx.status.clone().expect("status").status.pods.running, 2);

    // A batch finishing is counted; the render staying Running makes no Event.
    let done = [job(0, true), job(1, false), job(2, false)];
    let fx = effects(&rj, &done, &pods, &mut state, t0 + Duration::from_secs(5));
    let w = fx.status.clone().expect("status");
    assert_eq!(w.progress.succeeded, 1);
    assert_eq!(w.progress.frames, 1);
    assert_eq!(w.progress.batch_seconds, [2.0]);
    assert!(w.events.is_empty());
    // Batch 3 takes the free slot.
    assert_eq!(fx.apply.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [3]);
}

#[test]
fn passes_of_a_render_are_spaced_while_batches_are_left_to_create() {
    assert_eq!(pass_every(0), Duration::ZERO);
    assert_eq!(pass_every(1), Duration::from_millis(2));
    assert_eq!(pass_every(100), Duration::from_millis(200));
    assert_eq!(pass_every(10_000), MAX_PASS_EVERY);
    assert_eq!(pass_every(usize::MAX), MAX_PASS_EVERY);

    let t0 = Instant::now();
    let every = Duration::from_millis(200);
    let mut state = RenderState::default();
    assert_eq!(
        pass_wait(&state, t0, every),
        None,
        "the first pass goes at once"
    );
    state.last_pass = Some(t0);
    // The last pass left batches to create (as `decide` records).
    let fx = effects(&rj(), &[], &[], &mut state, t0);
    assert!(state.left_to_create && fx.apply.len() == 3);
    let soon = t0 + Duration::from_millis(50);
    assert_eq!(
        pass_wait(&state, soon, every),
        Some(Duration::from_millis(150))
    );
    assert_eq!(pass_wait(&state, t0 + every, every), None);
    // Every batch created: the last ones are seen done at once.
    let all: Vec<Arc<BatchJob>> = (0..6).map(|i| job(i, i < 3)).collect();
    effects(&rj(), &all, &[], &mut state, soon);
    assert!(!state.left_to_create);
    assert_eq!(pass_wait(&state, soon, every), None);
}

#[test]
fn renders_going_at_once_share_the_status_write_budget() {
    assert_eq!(status_every(0, 0.0), STATUS_EVERY);
    assert_eq!(status_every(1, 0.0), STATUS_EVERY);
    assert_eq!(
        status_every(STATUS_WRITES_PER_SECOND as usize, 0.0),
        STATUS_EVERY
    );
    assert_eq!(status_every(100, 0.0), Duration::from_secs(50));
    assert_eq!(status_every(7, 0.0), Duration::from_millis(3500));
    assert!(status_every(usize::MAX, 0.0) > Duration::from_secs(1 << 60));
    assert_eq!(created_every(STATUS_EVERY), events::EVERY);
    assert_eq!(
        created_every(status_every(100, 0.0)),
        Duration::from_secs(1500)
    );
    // Batches finishing faster: the budget grows with them, never below its floor.
    assert_eq!(status_every(100, 20.0), Duration::from_secs(50));
    assert_eq!(status_every(100, 40.0), Duration::from_secs(25));
    assert_eq!(status_every(100, 200.0), Duration::from_secs(5));
    assert_eq!(status_every(100, f64::INFINITY), STATUS_EVERY);

    // One of 100 renders: a count waits 50 s after the last write; a transition does not.
    let rj = rj();
    let t0 = Instant::now();
    let running = [job(0, false), job(1, false), job(2, false)];
    let wall = Time("2026-11-23T12:00:00Z".parse().expect("time"));
    let mut state = RenderState::default();
    let decide_at =
        |state: &mut RenderState, jobs: &[Arc<BatchJob>], pods: &[Arc<BatchPod>], at: Instant| {
            let input = Input {
                rj: &rj,
                jobs,
                pods,
                synced: true,
                disrupted: &|_| 0,
                taken: &[],
                active: 100,
                finishing: 0.0,
                nodes: None,
            };
            decide_into(&input, state, at, &wall)
        };
    let one = [pod(0, "Running"), pod(1, "Pending"), pod(2, "Pending")];
    let fx = decide_at(&mut state, &running, &one, t0);
    fx.wrote(&mut state, t0);
    let two = [pod(0, "Running"), pod(1, "Running"), pod(2, "Pending")];
    let soon = t0 + Duration::from_secs(5);
    let fx = decide_at(&mut state, &running, &two, soon);
    assert!(fx.status.is_none());
    assert_eq!(fx.requeue(&state, soon), Some(Duration::from_secs(45)));
    let fx = decide_at(&mut state, &running, &two, t0 + Duration::from_secs(50));
    assert_eq!(fx.status.as_ref().expect("status").status.pods.running, 2);
    fx.wrote(&mut state, t0 + Duration::from_secs(50));
    // Every batch succeeded: the render is over, and says so at once.
    let all: Vec<Arc<BatchJob>> = (0..6).map(|i| job(i, true)).collect();
    let fx = decide_at(&mut state, &all, &[], t0 + Duration::from_secs(51));
    assert_eq!(
        fx.status.clone().expect("status").status.phase,
        Phase::Succeeded
    );
}

#[test]
fn nothing_changed_nothing_to_do() {
    let rj = rj();
    let t0 = Instant::now();
    let running = [job(0, false), job(1, false), job(2, false)];
    let pods = [pod(0, "Running"), pod(1, "Running"), pod(2, "Running")];
    let mut state = RenderState::default();
    let fx = effects(&rj, &running, &pods, &mut state, t0);
    fx.wrote(&mut state, t0);
    let fx = effects(
        &rj,
        &running,
        &pods,
        &mut state,
        t0 + Duration::from_secs(10),
    );
    assert!(fx.is_empty(), "{fx:?}");
    assert_eq!(
        fx.requeue(&state, t0 + Duration::from_secs(10)),
        Some(BUSY_RECHECK),
        "a render still going is looked at again"
    );
}

#[test]
fn jobs_of_a_deleted_renderjob_of_the_same_name_are_never_taken_over() {
    let rj = rj();
    // Batch 1's Job still belongs to the RenderJob "shot" that was deleted.
    let old = job(1, false);
    assert!(predecessor_of(&old, "bench", "shot", "a-new-uid"));
    assert!(!predecessor_of(&old, "bench", "shot", UID));
    let taken = [old];
    let input = Input {
        rj: &rj,
        jobs: &[],
        pods: &[],
        synced: true,
        disrupted: &|_| 0,
        taken: &taken,
        active: 1,
        finishing: 0.0,
        nodes: None,
    };
    let wall = Time("2026-11-23T12:00:00Z".parse().expect("time"));
    let mut state = RenderState::default();
    let fx = decide_into(&input, &mut state, Instant::now(), &wall);
    let created: Vec<u32> = fx.apply.iter().map(|(i, _)| *i).collect();
    assert_eq!(created, [0, 2], "batch 1 waits until the old Job is gone");
    let s = fx.status.clone().expect("status").status;
    assert_eq!((s.batches.active, s.batches.pending), (2, 4));
}

#[test]
fn a_batch_disrupted_too_often_is_stopped_as_evicted() {
    let rj = rj();
    let jobs = [job(0, false), job(1, false)];
    let pods = [pod(0, "Running"), pod(1, "Running")];
    let input = Input {
        rj: &rj,
        jobs: &jobs,
        pods: &pods,
        synced: true,
        disrupted: &|uid| {
            if uid == "09337701-0a9c-4937-8cdf-ec15072d9597" {
                5
            } else {
                0
            }
        },
        taken: &[],
        active: 1,
        finishing: 0.0,
        nodes: None,
    };
    let wall = Time("2026-11-23T12:00:00Z".parse().expect("time"));
    let mut state = RenderState::default();
    let fx = decide_into(&input, &mut state, Instant::now(), &wall);
    // The fixtures' Jobs share one UID: both are stopped.
    let stopped: Vec<&str> = fx.stop.iter().map(|(j, _)| j.as_str()).collect();
    assert_eq!(stopped, ["shot-0000", "shot-0001"]);
    assert!(fx.stop[0].1.starts_with("Evicted: "), "{}", fx.stop[0].1);
    let input = Input {
        disrupted: &|_| MAX_DISRUPTIONS - 1,
        ..input
    };
    let fx = decide_into(&input, &mut state, Instant::now(), &wall);
    assert!(fx.stop.is_empty());
}

#[test]
fn a_batch_whose_pod_succeeded_is_done_before_its_job_completes() {
    let rj = rj();
    let t0 = Instant::now();
    // Parallelism 3; batch 0's pod succeeded, its Job not yet Complete: counted, but its
    // slot is held until the Job is finished.
    let jobs = [job(0, false), job(1, false), job(2, false)];
    let pods = [pod(0, "Succeeded"), pod(1, "Running"), pod(2, "Running")];
    let mut state = RenderState::default();
    let fx = effects(&rj, &jobs, &pods, &mut state, t0);
    assert!(fx.apply.is_empty(), "{:?}", fx.apply);
    let w = fx.status.clone().expect("status");
    assert_eq!(
        (w.status.batches.succeeded, w.status.batches.active),
        (1, 2)
    );
    // Every pod succeeded, no Job complete yet: the render is.
    let jobs: Vec<_> = (0..6).map(|i| job(i, false)).collect();
    let pods: Vec<_> = (0..6).map(|i| pod(i, "Succeeded")).collect();
    let fx = effects(&rj, &jobs, &pods, &mut RenderState::default(), t0);
    let w = fx.status.clone().expect("status");
    assert_eq!(w.status.phase, Phase::Succeeded, "{:?}", w.status);
    assert!(w.status.completion_time.is_some(), "{:?}", w.status);
    // A failed pod and its retry still running: the batch runs.
    let pods = [pod(0, "Failed"), pod(0, "Running")];
    let plan = Plan::new(&rj.spec.frames, rj.spec.batch_size).expect("plan");
    let seen = Observation::new("shot", plan, &RenderJobStatus::default(), &jobs, &pods);
    let slots = status::batch_states(&seen.plan, &seen.jobs, &seen.recorded);
    let states = status::rendered_states(&slots, &seen.pods);
    assert_eq!(states[0], BatchState::Active);
}

#[test]
fn a_podless_job_is_inspected_only_once_the_job_controller_has_tried() {
    let rj = rj();
    let t0 = Instant::now();
    let pods = [pod(0, "Running")];
    // Not synced yet (no startTime), or a pod the pod cache has not seen yet (active 1):
    // no FailedCreate Event can explain it, so the Events are not read.
    let mut unsynced = (*refused(1)).clone();
    unsynced.start_time = None;
    let mut counted = (*refused(1)).clone();
    counted.active = true;
    for late in [unsynced, counted] {
        let jobs = [job(0, false), Arc::new(late)];
        let fx = effects(&rj, &jobs, &pods, &mut RenderState::default(), t0);
        assert_eq!(fx.inspect, None);
    }
    let jobs = [job(0, false), refused(1)];
    let fx = effects(&rj, &jobs, &pods, &mut RenderState::default(), t0);
    assert_eq!(fx.inspect.as_deref(), Some("shot-0001"));
}

#[test]
fn a_job_whose_pod_is_refused_holds_the_render_and_says_why() {
    let rj = rj();
    let t0 = Instant::now();
    // Batch 0 runs; batch 1's Job has had no pod for an hour: the Job controller started
    // it and counts none.
    let jobs = [job(0, false), refused(1)];
    let pods = [pod(0, "Running")];
    let mut state = RenderState::default();
    let fx = effects(&rj, &jobs, &pods, &mut state, t0);
    assert_eq!(fx.inspect.as_deref(), Some("shot-0001"));
    let why = "pods \"shot-0001-x\" is forbidden: exceeded quota: mem, must specify limits.memory";
    assert!(fx.inspected(&mut state, Some(why.into())));
    assert!(
        !fx.inspected(&mut state, Some(why.into())),
        "the same again is no change"
    );
    // Shown at once, creation held; the Events are read again only after a while.
    let fx = effects(
        &rj,
        &jobs,
        &pods,
        &mut state,
        t0 + Duration::from_millis(100),
    );
    assert!(
        fx.apply.is_empty(),
        "no more Jobs whose pods would be refused"
    );
    assert_eq!(fx.inspect, None);
    let w = fx.status.clone().expect("status");
    let p = w
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == status::PROGRESSING)
        .expect("Progressing");
    assert_eq!(
        (p.status.as_str(), p.reason.as_str()),
        ("False", "PodRejected")
    );
    assert_eq!(
        p.message,
        format!("Job shot-0001 cannot create its pod: {why}")
    );
    assert_eq!(reasons(&w.events), ["PodRejected", "Rendering"]);
    fx.wrote(&mut state, t0);
    // The pod appears: the hold is gone.
    let pods = [pod(0, "Running"), pod(1, "Pending")];
    let fx = effects(&rj, &jobs, &pods, &mut state, t0 + Duration::from_secs(2));
    assert_eq!(state.pod_rejection, None);
    let w = fx.status.clone().expect("status");
    let p = w
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == status::PROGRESSING);
    assert_eq!(p.map(|c| c.reason.as_str()), Some("Rendering"));
}

#[test]
fn no_decision_on_a_half_filled_cache_or_a_deleted_renderjob() {
    let mut rj = rj();
    let mut state = RenderState::default();
    let input = Input {
        rj: &rj,
        jobs: &[],
        pods: &[],
        synced: false,
        disrupted: &|_| 0,
        taken: &[],
        active: 1,
        finishing: 0.0,
        nodes: None,
    };
    let wall = Time("2026-11-23T12:00:00Z".parse().expect("time"));
    let now = Instant::now();
    let fx = decide_into(&input, &mut state, now, &wall);
    assert!(fx.is_empty());
    assert_eq!(fx.requeue(&state, now), Some(NOT_SYNCED));
    rj.metadata.deletion_timestamp = Some(wall.clone());
    let fx = effects(&rj, &[], &[], &mut state, now);
    assert!(fx.is_empty());
    assert_eq!(fx.requeue(&state, now), None);
    assert_eq!(state, RenderState::default());
}

#[test]
fn a_blender_version_not_offered_fails_at_once_naming_the_offered_ones() {
    let mut rj = rj();
    rj.spec.blender_version = Some("3.4".into());
    let mut state = RenderState::default();
    let now = Instant::now();
    let fx = effects(&rj, &[], &[], &mut state, now);
    assert!(fx.apply.is_empty(), "no Job for a version that cannot run");
    let w = fx.status.clone().expect("status");
    assert_eq!(w.status.phase, Phase::Failed);
    let c = w
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == status::FAILED)
        .expect("Failed");
    assert_eq!(c.reason, "UnknownBlenderVersion");
    assert_eq!(
        c.message,
        "blenderVersion 3.4 is not offered here; this cluster offers 4.5"
    );
    assert_eq!(reasons(&w.events), ["UnknownBlenderVersion"]);
}

#[test]
fn an_unplannable_spec_fails_once_with_a_warning() {
    let mut rj = rj();
    rj.spec.batch_size = 0;
    let mut state = RenderState::default();
    let now = Instant::now();
    let fx = effects(&rj, &[], &[], &mut state, now);
    let w = fx.status.clone().expect("status");
    assert_eq!(w.status.phase, Phase::Failed);
    assert_eq!(reasons(&w.events), ["InvalidSpec"]);
    assert!(w.events[0].warning);
    assert_eq!(fx.requeue(&state, now), None);
    rj.status = Some(w.status);
    assert!(effects(&rj, &[], &[], &mut state, now).is_empty());
}

/// The preview Job (`done`: None running, Some(true) complete, Some(false) failed).
fn preview_job(done: Option<bool>) -> Arc<BatchJob> {
    let mut v: Value =
        serde_json::from_str(include_str!("../../examples/fixtures/job.json")).expect("json");
    v["metadata"]["name"] = json!("shot-preview");
    let labels = v["metadata"]["labels"].as_object_mut().expect("labels");
    labels.remove(crate::job::BATCH_LABEL);
    labels.insert(crate::job::STEP_LABEL.into(), json!("preview"));
    v["status"] = match done {
        None => json!({"active": 1}),
        Some(true) => json!({"conditions": [{"type": "Complete", "status": "True"}]}),
        Some(false) => json!({"failed": 2, "conditions": [{"type": "Failed",
            "status": "True", "reason": "BackoffLimitExceeded",
            "message": "Job has reached the specified backoff limit"}]}),
    };
    Arc::new(serde_json::from_value::<Job>(v).expect("job").into())
}

/// The preview Job's pod, with `render-preview`'s report.
fn preview_pod(phase: &str, report: &render_contract::PreviewReport) -> Arc<BatchPod> {
    let mut v: Value =
        serde_json::from_str(include_str!("../../examples/fixtures/pod.json")).expect("json");
    let labels = v["metadata"]["labels"].as_object_mut().expect("labels");
    labels.remove(crate::job::BATCH_LABEL);
    labels.insert(crate::job::STEP_LABEL.into(), json!("preview"));
    v["status"]["phase"] = json!(phase);
    let t = &mut v["status"]["containerStatuses"][0]["state"]["terminated"];
    t["message"] = json!(serde_json::to_string(report).expect("json"));
    if phase == "Failed" {
        t["exitCode"] = json!(1);
    }
    Arc::new(serde_json::from_value::<Pod>(v).expect("pod").into())
}

fn all_done() -> Vec<Arc<BatchJob>> {
    (0..6).map(|i| job(i, true)).collect()
}

fn preview_of(s: &RenderJobStatus) -> (PreviewState, String, String) {
    let p = s.preview.clone().expect("status.preview");
    let c = s
        .conditions
        .iter()
        .find(|c| c.type_ == preview::PREVIEW_READY)
        .expect("PreviewReady");
    (p.state, c.status.clone(), c.reason.clone())
}

#[test]
fn the_preview_job_comes_once_every_batch_succeeded_and_only_once() {
    let rj = rj();
    let t0 = Instant::now();
    let mut state = RenderState::default();
    // Five of six batches done: no preview yet.
    let mut jobs: Vec<Arc<BatchJob>> = (0..5).map(|i| job(i, true)).collect();
    jobs.push(job(5, false));
    let fx = effects(&rj, &jobs, &[], &mut state, t0);
    assert!(fx.preview.is_none());
    let w = fx.status.clone().expect("status");
    assert_eq!(
        preview_of(&w.status),
        (PreviewState::Pending, "False".into(), "Pending".into())
    );
    fx.wrote(&mut state, t0);

    // The last one succeeds: the preview Job is sent, marked in flight, status Running.
    let t1 = t0 + Duration::from_secs(2);
    let fx = effects(&rj, &all_done(), &[], &mut state, t1);
    let job = fx.preview.clone().expect("the preview Job");
    assert_eq!(job.metadata.name.as_deref(), Some("shot-preview"));
    assert_eq!(job, crate::job::build_preview(&rj, &config()).expect("job"));
    assert!(state.preview_in_flight.is_some());
    let w = fx.status.clone().expect("status");
    assert_eq!(w.status.phase, Phase::Succeeded, "the frames are done");
    assert_eq!(
        preview_of(&w.status),
        (PreviewState::Running, "False".into(), "Running".into())
    );
    fx.settle_preview(&mut state, &Applied::Created, t1);
    fx.wrote(&mut state, t1);
    assert_eq!(
        fx.requeue(&state, t1).map(|d| d > Duration::ZERO),
        Some(true),
        "comes back while the preview runs"
    );

    // The cache has not caught up: the mark holds, nothing is sent again.
    let fx = effects(
        &rj,
        &all_done(),
        &[],
        &mut state,
        t1 + Duration::from_secs(1),
    );
    assert!(fx.preview.is_none());

    // Seen running, then complete with its report: Ready, and an Event.
    let mut jobs = all_done();
    jobs.push(preview_job(None));
    let fx = effects(&rj, &jobs, &[], &mut state, t1 + Duration::from_secs(2));
    assert!(fx.preview.is_none() && state.preview_in_flight.is_none());
    let report = render_contract::PreviewReport {
        ok: true,
        frames: 6,
        columns: 3,
        rows: 2,
        message: None,
    };
    let mut jobs = all_done();
    jobs.push(preview_job(Some(true)));
    let pods = [preview_pod("Succeeded", &report)];
    let fx = effects(&rj, &jobs, &pods, &mut state, t1 + Duration::from_secs(5));
    assert!(fx.preview.is_none());
    let w = fx.status.clone().expect("status");
    assert_eq!(
        preview_of(&w.status),
        (PreviewState::Ready, "True".into(), "Ready".into())
    );
    let p = w.status.preview.clone().expect("preview");
    assert_eq!(p.video.as_deref(), Some("renders/shot/preview.mp4"));
    assert_eq!(p.contact_sheet.as_deref(), Some("renders/shot/contact.jpg"));
    assert_eq!((p.frames, p.columns, p.rows), (Some(6), Some(3), Some(2)));
    assert_eq!(reasons(&w.events), ["PreviewReady"]);
    assert!(!w.events[0].warning);
    assert!(fx.delete.is_empty(), "cleanup Keep keeps the preview Job");
    fx.wrote(&mut state, t1 + Duration::from_secs(5));

    // Its Job gone (deleted by hand), the operator restarted: Ready stays, no new Job.
    let mut fresh = RenderState::default();
    let mut rj = rj.clone();
    rj.status = Some(w.status.clone());
    let fx = effects(
        &rj,
        &all_done(),
        &[],
        &mut fresh,
        t1 + Duration::from_secs(9),
    );
    assert!(fx.preview.is_none());
    assert!(fx.status.is_none(), "{:?}", fx.status);
}

#[test]
fn a_failed_preview_fails_only_the_preview() {
    let rj = rj();
    let t0 = Instant::now();
    let mut state = RenderState::default();
    let mut jobs = all_done();
    jobs.push(preview_job(Some(false)));
    let report = render_contract::PreviewReport {
        ok: false,
        frames: 0,
        columns: 0,
        rows: 0,
        message: Some("ffmpeg: frame_0004.png is not an image".into()),
    };
    let pods = [preview_pod("Failed", &report)];
    let fx = effects(&rj, &jobs, &pods, &mut state, t0);
    let w = fx.status.clone().expect("status");
    assert_eq!(w.status.phase, Phase::Succeeded);
    assert_eq!(
        preview_of(&w.status),
        (PreviewState::Failed, "False".into(), "Failed".into())
    );
    let p = w.status.preview.clone().expect("preview");
    assert_eq!(
        p.message.as_deref(),
        Some("preview Job shot-preview failed: ffmpeg: frame_0004.png is not an image")
    );
    assert!(reasons(&w.events).contains(&"PreviewFailed"));
    assert!(
        w.events
            .iter()
            .any(|e| e.reason == "PreviewFailed" && e.warning)
    );
    assert!(w.events.iter().all(|e| e.reason != "RenderFailed"));
    fx.wrote(&mut state, t0);
    // Not made again while its Job is there.
    let fx = effects(&rj, &jobs, &pods, &mut state, t0 + Duration::from_secs(2));
    assert!(fx.preview.is_none());
    assert!(fx.status.is_none());
    // Its Job deleted: made again.
    let fx = effects(
        &rj,
        &all_done(),
        &[],
        &mut state,
        t0 + Duration::from_secs(3),
    );
    assert!(fx.preview.is_some());
    let p = fx
        .status
        .clone()
        .expect("status")
        .status
        .preview
        .expect("preview");
    assert_eq!(p.state, PreviewState::Running);
}

#[test]
fn a_refused_preview_job_fails_the_preview_once() {
    let rj = rj();
    let t0 = Instant::now();
    let mut state = RenderState::default();
    let fx = effects(&rj, &all_done(), &[], &mut state, t0);
    assert!(fx.preview.is_some());
    fx.settle_preview(
        &mut state,
        &Applied::Refused("denied by a ValidatingAdmissionPolicy".into()),
        t0,
    );
    let fx = effects(&rj, &all_done(), &[], &mut state, t0);
    assert!(fx.preview.is_none(), "not sent again");
    let w = fx.status.clone().expect("status");
    assert_eq!(w.status.phase, Phase::Succeeded);
    let p = w.status.preview.expect("preview");
    assert_eq!(p.state, PreviewState::Failed);
    assert_eq!(
        p.message.as_deref(),
        Some("the API server refused the preview Job: denied by a ValidatingAdmissionPolicy")
    );
}

#[test]
fn a_disabled_preview_makes_no_job() {
    let mut rj = rj();
    rj.spec.preview.enabled = false;
    let mut state = RenderState::default();
    let fx = effects(&rj, &all_done(), &[], &mut state, Instant::now());
    assert!(fx.preview.is_none());
    let w = fx.status.clone().expect("status");
    assert_eq!(
        preview_of(&w.status),
        (PreviewState::Disabled, "False".into(), "Disabled".into())
    );
    assert!(w.events.iter().all(|e| !e.reason.starts_with("Preview")));
}

#[test]
fn delete_succeeded_removes_the_preview_job_only_once_ready_is_recorded() {
    let mut rj = rj();
    rj.spec.cleanup.policy = CleanupPolicy::DeleteSucceeded;
    let t0 = Instant::now();
    let mut state = RenderState::default();
    let report = render_contract::PreviewReport {
        ok: true,
        frames: 6,
        columns: 3,
        rows: 2,
        message: None,
    };
    // Batch Jobs already cleaned up, recorded in status.
    let mut old = RenderJobStatus {
        succeeded_batches: Some("0-5".into()),
        ..Default::default()
    };
    old.phase = Phase::Succeeded;
    rj.status = Some(old);
    let jobs = [preview_job(Some(true))];
    let pods = [preview_pod("Succeeded", &report)];
    let fx = effects(&rj, &jobs, &pods, &mut state, t0);
    assert!(fx.delete.is_empty(), "not before Ready is written");
    assert!(fx.preview.is_none());
    let w = fx.status.clone().expect("status");
    assert_eq!(
        w.status.preview.as_ref().map(|p| p.state),
        Some(PreviewState::Ready)
    );
    fx.wrote(&mut state, t0);
    let fx = effects(&rj, &jobs, &pods, &mut state, t0 + Duration::from_secs(2));
    assert_eq!(fx.delete, ["shot-preview"]);
    assert!(fx.status.is_none());
    // Gone: still Ready, nothing sent again.
    fx.wrote(&mut state, t0);
    let fx = effects(&rj, &[], &[], &mut state, t0 + Duration::from_secs(4));
    assert!(fx.preview.is_none() && fx.delete.is_empty() && fx.status.is_none());
}

#[test]
fn an_earlier_renderjobs_preview_job_is_waited_for() {
    let rj = rj();
    let jobs = all_done();
    let taken = [preview_job(Some(true))];
    let input = Input {
        rj: &rj,
        jobs: &jobs,
        pods: &[],
        synced: true,
        disrupted: &|_| 0,
        taken: &taken,
        active: 1,
        finishing: 0.0,
        nodes: None,
    };
    let wall = Time("2026-11-23T12:00:00Z".parse().expect("time"));
    let mut state = RenderState::default();
    let fx = decide_into(&input, &mut state, Instant::now(), &wall);
    assert!(fx.preview.is_none());
    let p = fx
        .status
        .clone()
        .expect("status")
        .status
        .preview
        .expect("preview");
    assert_eq!(p.state, PreviewState::Pending);
}

#[test]
fn the_last_frame_is_the_latest_batchs_highest() {
    let rj = rj();
    let with_report = |index: u32, last: i32, at: &str| {
        let mut v: Value =
            serde_json::from_str(include_str!("../../examples/fixtures/pod.json")).expect("json");
        v["metadata"]["labels"][crate::job::BATCH_LABEL] = json!(index.to_string());
        let m = render_contract::TerminationMessage {
            outcome: render_contract::Outcome::Succeeded,
            frames_rendered: 1,
            frames_skipped: 0,
            frames_missing: vec![],
            seconds_per_frame: Some(1.0),
            device: None,
            blender_version: None,
            last_frame: Some(last),
            message: None,
        };
        let t = &mut v["status"]["containerStatuses"][0]["state"]["terminated"];
        t["message"] = json!(m.to_json_bounded());
        t["finishedAt"] = json!(at);
        Arc::new(serde_json::from_value::<Pod>(v).expect("pod").into())
    };
    let jobs = [job(0, true), job(1, true), job(2, false)];
    // Batch 1 (frame 2) finished after batch 0 (frame 1).
    let pods = [
        with_report(1, 2, "2026-11-23T11:02:30Z"),
        with_report(0, 1, "2026-11-23T11:02:20Z"),
    ];
    let mut state = RenderState::default();
    let fx = effects(&rj, &jobs, &pods, &mut state, Instant::now());
    let s = fx.status.clone().expect("status").status;
    let last = s.last_frame.clone().expect("lastFrame");
    assert_eq!(
        (last.frame, last.file.as_str(), last.thumbnail.as_str()),
        (
            2,
            "renders/shot/frame_0002.png",
            "renders/shot/.thumbs/frame_0002.jpg"
        )
    );
    // Batch 1's pod cleaned up, batch 0's still there: the recorded one stays.
    let mut rj = rj.clone();
    rj.status = Some(s);
    let mut state = RenderState::default();
    let fx = effects(&rj, &jobs, &pods[1..], &mut state, Instant::now());
    let kept = fx
        .status
        .clone()
        .and_then(|w| w.status.last_frame)
        .or(rj.status.and_then(|s| s.last_frame));
    assert_eq!(kept.map(|l| l.frame), Some(2));
}

fn reasons(notes: &[Note]) -> Vec<&str> {
    notes.iter().map(|n| n.reason).collect()
}

/// `frames.list`: its frames, in order, in batches of `batchSize`, each Job rendering its own;
/// a list that makes no plan fails the render naming what is wrong.
#[test]
fn a_frame_list_is_planned_into_batches_of_its_frames() {
    let mut rj = rj();
    rj.spec.frames =
        serde_json::from_value(json!({"start": 1, "end": 40, "list": ["30-31,2", 12, "1"]}))
            .expect("frames");
    rj.spec.batch_size = 2;
    let mut state = RenderState::default();
    let fx = effects(&rj, &[], &[], &mut state, Instant::now());
    let frames: Vec<String> = fx
        .apply
        .iter()
        .map(|(_, job)| {
            let args = args_of(job);
            args[args.iter().position(|a| a == "--frames").expect("--frames") + 1].clone()
        })
        .collect();
    assert_eq!(frames, ["1,2", "12,30", "31"]);
    let w = fx.status.as_ref().expect("status");
    assert_eq!((w.status.frames.total, w.status.batches.total), (5, 3));

    rj.spec.frames =
        serde_json::from_value(json!({"start": 1, "end": 10, "list": ["8-12"]})).expect("frames");
    let fx = effects(&rj, &[], &[], &mut RenderState::default(), Instant::now());
    let w = fx.status.clone().expect("status");
    let failed = w
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == status::FAILED)
        .expect("Failed");
    assert_eq!(
        (failed.reason.as_str(), failed.message.as_str()),
        (
            "InvalidSpec",
            "frames.list names frames 8 to 12, outside frames.start..end (1..10)"
        )
    );
}

/// `spec.rerender` on a finished render: one Job renders the frames again with
/// `--overwrite`, outside the plan's batches, and `status.rerenders` says when.
#[test]
fn a_finished_render_renders_frames_again_once() {
    let mut rj = rj();
    rj.spec.rerender = Some(crate::crd::Rerender {
        frames: "5,2-3".into(),
        serial: 1,
    });
    let done: Vec<Arc<BatchJob>> = (0..6).map(|i| job(i, true)).collect();
    let mut state = RenderState::default();
    let fx = effects(&rj, &done, &[], &mut state, Instant::now());
    let job = fx.rerender.clone().expect("a rerender Job");
    assert_eq!(job.metadata.name.as_deref(), Some("shot-rerender-1"));
    let labels = job.metadata.labels.clone().unwrap_or_default();
    assert!(!labels.contains_key(crate::job::BATCH_LABEL), "{labels:?}");
    let args = args_of(&job);
    assert_eq!(flag(&args, "--frames"), Some("2,3,5"));
    assert!(args.iter().any(|a| a == "--overwrite"), "{args:?}");
    assert!(fx.apply.is_empty(), "no batch is made again");
    let w = fx.status.clone().expect("status");
    let r = &w.status.rerenders[0];
    assert_eq!(
        (r.serial, r.frames.as_str(), r.state),
        (1, "2-3,5", crate::crd::RerenderState::Running)
    );
    assert!(r.start_time.is_some());

    // While batches render, it waits.
    let mut busy = rj.clone();
    busy.status = None;
    let fx = effects(
        &busy,
        &done[..3],
        &[],
        &mut RenderState::default(),
        Instant::now(),
    );
    assert!(fx.rerender.is_none());
}

proptest::proptest! {
    /// However many renders go and batches finish, the renders' status writes together stay
    /// within the budget, and none writes more than once a [`STATUS_EVERY`].
    #[test]
    fn the_status_write_budget_holds(active in 0usize..100_000, finishing in 0.0f64..10_000.0) {
        let every = status_every(active, finishing);
        proptest::prop_assert!(every >= STATUS_EVERY);
        let budget = (STATUS_WRITES_PER_BATCH * finishing).max(f64::from(STATUS_WRITES_PER_SECOND));
        let writes = active as f64 / every.as_secs_f64();
        proptest::prop_assert!(writes <= budget * (1.0 + 1e-9), "{writes} > {budget}");
    }
}
