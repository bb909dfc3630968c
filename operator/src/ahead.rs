//! Start ahead (`spec.startAhead`): when a running batch gets a follower, the Job of the next
//! batch that will take its place. The follower's pod loads Blender and the scene while the
//! batch renders its last frames, and renders once that batch's Blender is done (render-node's
//! `--after`), so the refill round trip, pod start, Blender's start and the scene load all
//! overlap rendering. Which batches follow which is on the Jobs (`renderfarm.io/after`);
//! [`crate::actions::decide`] counts a follower as waiting, not rendering, while the batch it
//! follows is unfinished ([`crate::index::Jobs::follows_unfinished`]).
//!
//! A follower is a bet that the cluster has room for one more pod now. Where it has none, the
//! waiting pod stays Pending: it would take the room a finishing batch frees (any render's), and
//! to a cluster autoscaler a Pending pod asks for a new node, made only for a pod that waits.
//! So a follower the scheduler cannot place is withdrawn ([`waiting`]): its Job is deleted
//! before the autoscaler acts on it, its batch goes back to the queue, and the render starts
//! nothing ahead for a while ([`pause`]).

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::batch::BatchState;
use crate::cache::PodPhase;
use crate::index;
use crate::plan::Plan;

/// How long before a batch's predicted end its follower is created: time enough for the Job
/// controller, the scheduler and the kubelet to start a pod and for Blender to start and load
/// a scene of some size. Too early costs only a pod waiting longer.
pub const LEAD: Duration = Duration::from_secs(20);

/// How long a render starts nothing ahead after a follower was withdrawn, the first time; each
/// withdrawal in a row doubles it, up to [`MAX_PAUSE`].
pub const PAUSE: Duration = Duration::from_secs(30);
pub const MAX_PAUSE: Duration = Duration::from_secs(600);

/// The pause after the `n`th withdrawal in a row (`n` from 1).
pub fn pause(n: u32) -> Duration {
    PAUSE
        .saturating_mul(1 << n.saturating_sub(1).min(16))
        .min(MAX_PAUSE)
}

/// The followers still waiting for the batch they follow, as the scheduler left them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Waiting {
    /// Those whose pod it refused (no node has room): to withdraw. A follower whose leader is
    /// done is a batch like any other, and waits for room like one.
    pub unplaced: Vec<u32>,
    /// One has its pod bound to a node: withdrawals in a row start counting again.
    pub placed: bool,
}

/// Where the scheduler put the render's followers that still wait for their leader.
pub fn waiting(states: &[BatchState], jobs: &index::Jobs<'_>, pods: &index::Pods<'_>) -> Waiting {
    let active = |i: u32| states.get(i as usize) == Some(&BatchState::Active);
    let mut w = Waiting::default();
    for (i, job) in jobs.iter() {
        if job.deleting || !active(*i) || jobs.follows_unfinished(*i, active).is_none() {
            continue;
        }
        let pods = pods.of(*i);
        if pods.iter().any(|p| {
            p.stuck
                .as_ref()
                .is_some_and(|s| s.reason == "Unschedulable")
        }) {
            w.unplaced.push(*i);
        }
        w.placed |= pods.iter().any(|p| p.node.is_some());
    }
    w
}

/// Seconds per frame to predict a batch's end by: what finished batches reported or, before
/// any did, the longest a running batch took from its container's start to its first frame
/// saved ([`crate::cache::BatchPod::first_frame_seconds`]). That counts Blender's start and the
/// scene's load as part of a frame, so a batch is predicted to end later than it will and its
/// follower comes late rather than early. A batch started ahead does not count: its first
/// frame waited for the batch it follows.
pub fn seconds_per_frame(
    reported: Option<f64>,
    jobs: &index::Jobs<'_>,
    pods: &index::Pods<'_>,
) -> Option<f64> {
    reported.filter(|s| *s > 0.0).or_else(|| {
        jobs.iter()
            .filter(|(_, job)| job.after.is_none())
            .flat_map(|(i, _)| pods.of(*i).iter().filter_map(|p| p.first_frame_seconds))
            .max()
            .map(|s| f64::from(s.get()))
    })
}

/// The running batches due a follower now, and how long until the next one is.
///
/// A batch is due once its pod runs and its predicted end (start + frames × the render's
/// seconds per frame) is less than [`LEAD`] away. None is before a batch of the render has
/// saved a frame ([`seconds_per_frame`]): until the scene is seen to render, a batch started
/// ahead could only fail beside the first ones (a file this Blender cannot open, a missing
/// texture).
pub fn due(
    plan: &Plan,
    states: &[BatchState],
    jobs: &index::Jobs<'_>,
    pods: &index::Pods<'_>,
    seconds_per_frame: Option<f64>,
    now: &Time,
) -> (BTreeSet<u32>, Option<Duration>) {
    let mut due = BTreeSet::new();
    let mut next: Option<Duration> = None;
    let Some(spf) = seconds_per_frame.filter(|s| *s > 0.0) else {
        return (due, next);
    };
    for (i, job) in jobs.iter() {
        if states.get(*i as usize) != Some(&BatchState::Active)
            || job.suspended
            || !pods.of(*i).iter().any(|p| p.phase == PodPhase::Running)
        {
            continue;
        }
        // A batch started ahead renders once its leader has succeeded: until then none follows
        // it, or two batches could each wait for the other (leaders retried on another node,
        // each made again to follow the other's follower).
        if job
            .after
            .is_some_and(|l| states.get(l as usize) != Some(&BatchState::Succeeded))
        {
            continue;
        }
        let left = match (&job.start_time, plan.batch(*i)) {
            (Some(started), Some(batch)) => {
                let total = Duration::from_secs_f64(spf * batch.frame_count() as f64);
                let since = now.0.duration_since(started.0);
                let elapsed = Duration::try_from(since).unwrap_or_default();
                total.saturating_sub(elapsed)
            }
            _ => Duration::ZERO,
        };
        if left <= LEAD {
            due.insert(*i);
        } else {
            let wait = left - LEAD;
            next = Some(next.map_or(wait, |n| n.min(wait)));
        }
    }
    (due, next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{BatchJob, BatchPod};
    use crate::crd::FrameRange;
    use BatchState::*;

    fn at(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + secs).expect("time"))
    }

    fn job(index: u32, started: i64) -> BatchJob {
        let job: k8s_openapi::api::batch::v1::Job = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("shot-{index:04}"), "uid": format!("u{index}"),
                         "labels": {"renderfarm.io/batch": index.to_string()}},
            "spec": {"template": {}},
        }))
        .expect("job");
        BatchJob {
            start_time: Some(at(started)),
            ..job.into()
        }
    }

    fn pod(index: u32, phase: PodPhase) -> BatchPod {
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("shot-{index:04}-x"),
                         "labels": {"renderfarm.io/batch": index.to_string()}},
        }))
        .expect("pod");
        BatchPod {
            phase,
            job_uid: Some(format!("u{index}")),
            ..pod.into()
        }
    }

    fn plan() -> Plan {
        // Batches of 10 frames.
        let range = FrameRange {
            start: 1,
            end: 100,
            step: 1,
            list: vec![],
        };
        Plan::new(&range, 10).expect("plan")
    }

    #[test]
    fn a_batch_is_due_lead_before_its_predicted_end_and_only_while_its_pod_runs() {
        let (a, b, c) = (job(0, 0), job(1, 0), job(2, 0));
        let jobs = index::Jobs::from_iter([(0, &a), (1, &b), (2, &c)]);
        let (pa, pb) = (pod(0, PodPhase::Running), pod(1, PodPhase::Pending));
        let list = [(0, &pa), (1, &pb)];
        let pods = index::Pods::new(10, &list);
        let states = [Active, Active, Active];
        // 10 frames at 5 s: 50 s; due from 30 s in.
        let (due_now, next) = due(&plan(), &states, &jobs, &pods, Some(5.0), &at(10));
        assert!(due_now.is_empty());
        assert_eq!(next, Some(Duration::from_secs(20)));
        let (due_now, next) = due(&plan(), &states, &jobs, &pods, Some(5.0), &at(30));
        assert_eq!(
            due_now,
            BTreeSet::from([0]),
            "1 has no running pod, 2 none at all"
        );
        assert_eq!(next, None);
    }

    #[test]
    fn a_follower_whose_leader_still_renders_is_never_followed() {
        // Batch 3 follows batch 1, which failed on its node and is being made again: were 3
        // due, 1 would be made to follow it and each would wait for the other.
        let (one, three) = (
            job(1, 0),
            BatchJob {
                after: Some(1),
                ..job(3, 0)
            },
        );
        let jobs = index::Jobs::from_iter([(1, &one), (3, &three)]);
        let (p1, p3) = (pod(1, PodPhase::Running), pod(3, PodPhase::Running));
        let list = [(1, &p1), (3, &p3)];
        let pods = index::Pods::new(10, &list);
        let states = [Succeeded, Active, Succeeded, Active];
        let (due_now, _) = due(&plan(), &states, &jobs, &pods, Some(1.0), &at(100));
        assert_eq!(due_now, BTreeSet::from([1]), "3 waits for 1: not due");
        // Its leader's Job gone, to be made again: still not due.
        let states = [Succeeded, Pending, Succeeded, Active];
        let (due_now, _) = due(&plan(), &states, &jobs, &pods, Some(1.0), &at(100));
        assert!(due_now.is_empty(), "3 waits for 1, made again: {due_now:?}");
        // Its leader done, the follower renders and is due like any other.
        let states = [Succeeded, Succeeded, Succeeded, Active];
        let (due_now, _) = due(&plan(), &states, &jobs, &pods, Some(1.0), &at(100));
        assert_eq!(due_now, BTreeSet::from([3]));
    }

    fn unschedulable(index: u32) -> BatchPod {
        BatchPod {
            stuck: Some(Box::new(crate::pod::PodProblem {
                reason: "Unschedulable".into(),
                exit_code: None,
                message: Some("0/3 nodes are available: 3 Too many pods.".into()),
            })),
            ..pod(index, PodPhase::Pending)
        }
    }

    #[test]
    fn a_follower_is_withdrawn_only_while_its_leader_runs_and_no_node_has_room() {
        let lead = job(0, 0);
        let follower = BatchJob {
            after: Some(0),
            ..job(2, 0)
        };
        let plain = job(1, 0);
        let jobs = index::Jobs::from_iter([(0, &lead), (1, &plain), (2, &follower)]);
        let (p0, p1, p2) = (
            pod(0, PodPhase::Running),
            unschedulable(1),
            unschedulable(2),
        );
        let list = [(0, &p0), (1, &p1), (2, &p2)];
        let pods = index::Pods::new(10, &list);
        assert_eq!(
            waiting(&[Active, Active, Active], &jobs, &pods),
            Waiting {
                unplaced: vec![2],
                placed: false
            },
            "1 is no follower: it waits for room like any batch"
        );
        // The leader done, the follower is a batch like any other.
        assert_eq!(
            waiting(&[Succeeded, Active, Active], &jobs, &pods),
            Waiting::default()
        );
        // Merely Pending (not refused by the scheduler): kept.
        let p2 = pod(2, PodPhase::Pending);
        let list = [(0, &p0), (1, &p1), (2, &p2)];
        let pods = index::Pods::new(10, &list);
        assert_eq!(
            waiting(&[Active, Active, Active], &jobs, &pods),
            Waiting::default()
        );
        // Bound to a node while it waits: placed.
        let p2 = BatchPod {
            node: Some("kwok-node-0".into()),
            ..pod(2, PodPhase::Running)
        };
        let list = [(0, &p0), (2, &p2)];
        let pods = index::Pods::new(10, &list);
        assert!(waiting(&[Active, Active, Active], &jobs, &pods).placed);
        // A follower that rendered long ago, its leader done, says nothing of the room now.
        let p2 = BatchPod {
            node: Some("kwok-node-0".into()),
            ..pod(2, PodPhase::Succeeded)
        };
        let list = [(0, &p0), (2, &p2)];
        let pods = index::Pods::new(10, &list);
        assert!(!waiting(&[Succeeded, Active, Succeeded], &jobs, &pods).placed);
    }

    #[test]
    fn each_withdrawal_in_a_row_doubles_the_pause_up_to_its_bound() {
        let secs: Vec<u64> = (1..=7).map(|n| pause(n).as_secs()).collect();
        assert_eq!(secs, [30, 60, 120, 240, 480, 600, 600]);
        assert_eq!(pause(u32::MAX), MAX_PAUSE);
    }

    #[test]
    fn none_is_due_before_the_render_has_a_time_per_frame_nor_once_finished() {
        let a = job(0, 0);
        let jobs = index::Jobs::from_iter([(0, &a)]);
        let pa = pod(0, PodPhase::Running);
        let list = [(0, &pa)];
        let pods = index::Pods::new(10, &list);
        let (due_now, next) = due(&plan(), &[Active], &jobs, &pods, None, &at(100));
        assert!(due_now.is_empty() && next.is_none());
        let (due_now, _) = due(&plan(), &[Active], &jobs, &pods, Some(1.0), &at(1));
        assert_eq!(
            due_now,
            BTreeSet::from([0]),
            "10 frames at 1 s: due at once"
        );
        let (due_now, _) = due(&plan(), &[Succeeded], &jobs, &pods, Some(1.0), &at(1));
        assert!(due_now.is_empty());
    }

    #[test]
    fn before_any_batch_reported_the_first_frame_saved_gives_the_time_per_frame() {
        let (a, b) = (job(0, 0), job(1, 0));
        let follower = BatchJob {
            after: Some(0),
            ..job(2, 0)
        };
        let jobs = index::Jobs::from_iter([(0, &a), (1, &b), (2, &follower)]);
        let ready = |index: u32, secs: Option<u32>| BatchPod {
            first_frame_seconds: secs.and_then(std::num::NonZeroU32::new),
            ..pod(index, PodPhase::Running)
        };
        let (p0, p1, p2) = (ready(0, None), ready(1, None), ready(2, Some(90)));
        let list = [(0, &p0), (1, &p1), (2, &p2)];
        let pods = index::Pods::new(10, &list);
        // No frame saved yet (the follower's waited for its leader: not a measure).
        assert_eq!(seconds_per_frame(None, &jobs, &pods), None);
        let (p0, p1) = (ready(0, Some(6)), ready(1, Some(8)));
        let list = [(0, &p0), (1, &p1), (2, &p2)];
        let pods = index::Pods::new(10, &list);
        // The slowest first frame, so no follower comes early.
        assert_eq!(seconds_per_frame(None, &jobs, &pods), Some(8.0));
        // What finished batches reported wins.
        assert_eq!(seconds_per_frame(Some(2.5), &jobs, &pods), Some(2.5));
        // 10 frames at 8 s from its start: batch 0 is due 60 s in.
        let spf = seconds_per_frame(None, &jobs, &pods);
        let (due_now, next) = due(
            &plan(),
            &[Active, Active, Active],
            &jobs,
            &pods,
            spf,
            &at(10),
        );
        assert!(due_now.is_empty());
        assert_eq!(next, Some(Duration::from_secs(50)));
    }
}
