//! What the controller should change, decided by a pure function of what it observed.

use std::collections::{BTreeMap, BTreeSet};

use crate::batch::BatchState;
use crate::crd::{CleanupPolicy, RenderJob};
use crate::index;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Actions {
    /// Batches whose Job to create, in order.
    pub create: Vec<u32>,
    /// Of those, the ones started ahead, and the batch each follows.
    pub after: BTreeMap<u32, u32>,
    /// When the next running batch is due a follower.
    pub ahead_due: Option<std::time::Duration>,
    /// Followers the scheduler could not place, withdrawn: their Jobs are in `delete`
    /// ([`crate::ahead::waiting`]).
    pub withdrawn: Vec<u32>,
    /// A follower still waiting has its pod bound to a node ([`crate::ahead::waiting`]).
    pub ahead_placed: bool,
    /// Unfinished Jobs to suspend (the RenderJob is suspended).
    pub suspend: Vec<String>,
    /// Jobs the operator itself suspended, to resume.
    pub resume: Vec<String>,
    /// Succeeded Jobs to delete (cleanup policy `DeleteSucceeded`), and unfinished queued
    /// Jobs of a paused RenderJob.
    pub delete: Vec<String>,
}

impl Actions {
    pub fn is_empty(&self) -> bool {
        self == &Actions::default()
    }
}

/// What start ahead ([`crate::ahead`]) adds to a decision.
#[derive(Debug, Default, Clone, Copy)]
pub struct Ahead<'a> {
    /// Followers created but not seen in the cache yet, and the batch each follows.
    pub in_flight: Option<&'a BTreeMap<u32, u32>>,
    /// Running batches due a follower ([`crate::ahead::due`]).
    pub due: Option<&'a BTreeSet<u32>>,
}

/// Decide the next changes.
///
/// - `in_flight`: batches whose Job this operator created but has not seen in its cache yet;
///   they count against `parallelism`, so a stale cache never lets more Jobs run.
/// - `recorded`: batches the RenderJob's status (as observed) records as succeeded. A Job is
///   deleted only once its success is recorded there, so it can never be rendered twice.
/// - `ahead`: with `spec.startAhead`, followers: a batch that follows an unfinished batch
///   waits for it and does not count against `parallelism`; each running batch due one gets
///   one, so a slot holds at most one batch rendering and one waiting.
pub fn decide(
    rj: &RenderJob,
    states: &[BatchState],
    jobs: &index::Jobs<'_>,
    in_flight: &BTreeSet<u32>,
    recorded: &crate::index::Recorded,
    ahead: Ahead<'_>,
) -> Actions {
    let mut actions = Actions::default();
    let unfinished =
        |i: u32| states.get(i as usize) == Some(&BatchState::Active) || in_flight.contains(&i);
    // A follower not in the cache yet is known from what this operator sent (`in_flight`);
    // its Job's annotation counts once seen.
    let follows = |i: u32| {
        jobs.follows_unfinished(i, unfinished)
            .or_else(|| ahead.in_flight?.get(&i).copied().filter(|h| unfinished(*h)))
    };
    let active = states
        .iter()
        .enumerate()
        .filter(|(_, s)| **s == BatchState::Active)
        .map(|(i, _)| i as u32)
        .chain(in_flight.iter().copied().filter(|i| !jobs.contains_key(i)));
    let mut followed = BTreeSet::new();
    let mut rendering = 0usize;
    for i in active {
        match follows(i) {
            Some(h) => {
                followed.insert(h);
            }
            None => rendering += 1,
        }
    }

    if !rj.spec.suspend {
        let slots = (rj.spec.parallelism.max(1) as usize).saturating_sub(rendering);
        let mut pending = states
            .iter()
            .enumerate()
            .filter(|(i, s)| **s == BatchState::Pending && !in_flight.contains(&(*i as u32)))
            .map(|(i, _)| i as u32);
        actions.create = pending.by_ref().take(slots).collect();
        let heads = ahead
            .due
            .into_iter()
            .flatten()
            .copied()
            .filter(|h| unfinished(*h) && !followed.contains(h) && follows(*h).is_none());
        if rj.spec.start_ahead {
            for (head, next) in heads.zip(pending) {
                actions.create.push(next);
                actions.after.insert(next, head);
            }
        }
    }

    suspend_resume_delete(rj, states, jobs, recorded, &mut actions);
    actions
}

/// The Jobs to suspend, resume and delete: a pause, its end, and the cleanup of succeeded
/// batches.
fn suspend_resume_delete(
    rj: &RenderJob,
    states: &[BatchState],
    jobs: &index::Jobs<'_>,
    recorded: &crate::index::Recorded,
    actions: &mut Actions,
) {
    for (index, job) in jobs.iter() {
        let name = || job.name.clone();
        match states.get(*index as usize) {
            // Under Kueue a pause cannot be a suspension (Kueue resumes an admitted Job it
            // finds suspended): the unfinished Jobs are deleted instead, which gives their
            // quota back; frames already on disk are skipped when the batch runs again.
            Some(BatchState::Active) if rj.spec.suspend && job.queued && !job.deleting => {
                actions.delete.push(name())
            }
            Some(BatchState::Active) if rj.spec.suspend && job.queued => {}
            Some(BatchState::Active) if rj.spec.suspend && !job.suspended => {
                actions.suspend.push(name())
            }
            // Only a suspension the operator made itself: one by Kueue (waiting for quota,
            // preempted) or by anyone else is theirs to lift.
            Some(BatchState::Active) if !rj.spec.suspend && job.suspended && job.paused => {
                actions.resume.push(name())
            }
            Some(BatchState::Succeeded)
                if rj.spec.cleanup.policy == CleanupPolicy::DeleteSucceeded
                    && recorded.contains(index)
                    && !job.deleting =>
            {
                actions.delete.push(name())
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::BatchJob;
    use crate::crd::RenderJobSpec;
    use BatchState::*;

    fn rj(parallelism: i32, suspend: bool, cleanup: &str) -> RenderJob {
        let spec: RenderJobSpec = serde_json::from_value(serde_json::json!({
            "blendFile": "s.blend", "frames": {"start": 1, "end": 50}, "parallelism": parallelism,
            "storage": {"claimName": "c"}, "suspend": suspend, "cleanup": {"policy": cleanup},
        }))
        .expect("spec");
        RenderJob::new("shot", spec)
    }

    /// `decide` with nothing in flight and nothing recorded.
    fn decide_now(rj: &RenderJob, states: &[BatchState], jobs: &index::Jobs<'_>) -> Actions {
        decide(
            rj,
            states,
            jobs,
            &BTreeSet::new(),
            &index::Recorded::default(),
            Ahead::default(),
        )
    }

    fn job(name: &str, suspend: bool) -> BatchJob {
        let job: k8s_openapi::api::batch::v1::Job = serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "spec": {"suspend": suspend, "template": {}}}))
            .expect("job");
        job.into()
    }

    /// A Job the operator suspended itself.
    fn paused(name: &str) -> BatchJob {
        BatchJob {
            paused: true,
            ..job(name, true)
        }
    }

    fn queued(name: &str, suspend: bool) -> BatchJob {
        BatchJob {
            queued: true,
            ..job(name, suspend)
        }
    }

    #[test]
    fn fills_free_slots_in_order() {
        let states = [Succeeded, Active, Pending, Pending, Pending];
        let (a, b) = (job("b", false), job("a", false));
        let jobs = index::Jobs::from_iter([(0, &a), (1, &b)]);
        let got = decide_now(&rj(3, false, "Keep"), &states, &jobs);
        assert_eq!(got.create, vec![2, 3]);
        assert!(got.suspend.is_empty() && got.resume.is_empty() && got.delete.is_empty());
    }

    #[test]
    fn jobs_not_yet_seen_count_against_parallelism() {
        let states = [Pending, Pending, Pending, Pending];
        let in_flight = BTreeSet::from([0, 1]);
        let got = decide(
            &rj(2, false, "Keep"),
            &states,
            &index::Jobs::default(),
            &in_flight,
            &index::Recorded::default(),
            Ahead::default(),
        );
        assert!(got.create.is_empty(), "{got:?}");
        let got = decide(
            &rj(3, false, "Keep"),
            &states,
            &index::Jobs::default(),
            &in_flight,
            &index::Recorded::default(),
            Ahead::default(),
        );
        assert_eq!(got.create, vec![2]);
    }

    fn following(name: &str, after: u32) -> BatchJob {
        BatchJob {
            after: Some(after),
            ..job(name, false)
        }
    }

    /// `decide` with start ahead on; `flying`: followers in flight, and whom they follow.
    fn decide_ahead(
        parallelism: i32,
        states: &[BatchState],
        jobs: &index::Jobs<'_>,
        flying: &[(u32, u32)],
        due: &[u32],
    ) -> Actions {
        let mut spec = rj(parallelism, false, "Keep");
        spec.spec.start_ahead = true;
        let flying: BTreeMap<u32, u32> = flying.iter().copied().collect();
        let due: BTreeSet<u32> = due.iter().copied().collect();
        let ahead = Ahead {
            in_flight: Some(&flying),
            due: Some(&due),
        };
        let in_flight = flying.keys().copied().collect();
        decide(
            &spec,
            states,
            jobs,
            &in_flight,
            &index::Recorded::default(),
            ahead,
        )
    }

    #[test]
    fn each_running_batch_due_gets_one_follower_that_does_not_take_a_slot() {
        let states = [Active, Active, Pending, Pending, Pending];
        let (a, b) = (job("a", false), job("b", false));
        let jobs = index::Jobs::from_iter([(0, &a), (1, &b)]);
        let got = decide_ahead(2, &states, &jobs, &[], &[0, 1]);
        assert_eq!(got.create, [2, 3], "both slots full: only followers");
        assert_eq!(got.after, BTreeMap::from([(2, 0), (3, 1)]));

        // Followed already (one seen, one still in flight): nothing more.
        let c = following("c", 0);
        let jobs = index::Jobs::from_iter([(0, &a), (1, &b), (2, &c)]);
        let states = [Active, Active, Active, Pending, Pending];
        let got = decide_ahead(2, &states, &jobs, &[(3, 1)], &[0, 1]);
        assert!(got.create.is_empty(), "{got:?}");

        // Batch 0 done: its follower renders now and is due a follower of its own; batch 1's
        // slot is still held by 1, which is followed by 3.
        let d = following("d", 1);
        let jobs = index::Jobs::from_iter([(0, &a), (1, &b), (2, &c), (3, &d)]);
        let states = [Succeeded, Active, Active, Active, Pending];
        let got = decide_ahead(2, &states, &jobs, &[], &[1, 2]);
        assert_eq!(got.create, [4]);
        assert_eq!(got.after, BTreeMap::from([(4, 2)]));
    }

    #[test]
    fn a_follower_whose_batch_is_finished_renders_and_takes_its_slot() {
        // 0 failed; 2 followed it and now renders beside 1: no free slot.
        let (a, b, c) = (job("a", false), job("b", false), following("c", 0));
        let jobs = index::Jobs::from_iter([(0, &a), (1, &b), (2, &c)]);
        let got = decide_ahead(2, &[Failed, Active, Active, Pending], &jobs, &[], &[]);
        assert!(got.create.is_empty(), "{got:?}");
        // With 1 done too, one slot is free.
        let got = decide_ahead(2, &[Failed, Succeeded, Active, Pending], &jobs, &[], &[]);
        assert_eq!(got.create, [3]);
        assert!(got.after.is_empty());
    }

    #[test]
    fn without_start_ahead_no_follower_is_made() {
        let mut spec = rj(1, false, "Keep");
        spec.spec.start_ahead = false;
        let a = job("a", false);
        let jobs = index::Jobs::from_iter([(0, &a)]);
        let due = BTreeSet::from([0]);
        let ahead = Ahead {
            in_flight: None,
            due: Some(&due),
        };
        let (none, states) = (BTreeSet::new(), [Active, Pending]);
        let got = decide(
            &spec,
            &states,
            &jobs,
            &none,
            &index::Recorded::default(),
            ahead,
        );
        assert!(got.create.is_empty() && got.after.is_empty(), "{got:?}");
    }

    #[test]
    fn suspend_stops_creation_and_suspends_running_jobs() {
        let states = [Active, Active, Pending];
        let (a, b) = (job("a", false), paused("b"));
        let jobs = index::Jobs::from_iter([(0, &a), (1, &b)]);
        let got = decide_now(&rj(5, true, "Keep"), &states, &jobs);
        assert_eq!(
            got,
            Actions {
                suspend: vec!["a".into()],
                ..Default::default()
            }
        );
        let got = decide_now(&rj(5, false, "Keep"), &states, &jobs);
        assert_eq!(
            got,
            Actions {
                create: vec![2],
                resume: vec!["b".into()],
                ..Default::default()
            }
        );
    }

    #[test]
    fn deletes_succeeded_jobs_only_once_recorded() {
        let states = [Succeeded, Succeeded, Failed];
        let (a, b, c) = (job("a", false), job("b", false), job("c", false));
        let jobs = index::Jobs::from_iter([(0, &a), (1, &b), (2, &c)]);
        let recorded = index::Recorded::from_iter([0]);
        let got = decide(
            &rj(5, false, "DeleteSucceeded"),
            &states,
            &jobs,
            &BTreeSet::new(),
            &recorded,
            Ahead::default(),
        );
        assert_eq!(got.delete, vec!["a".to_string()]);
        let got = decide(
            &rj(5, false, "Keep"),
            &states,
            &jobs,
            &BTreeSet::new(),
            &recorded,
            Ahead::default(),
        );
        assert!(got.is_empty());
    }

    #[test]
    fn a_deleted_failed_job_is_created_again() {
        // The failed batch's Job was deleted by the user: its state is Pending again.
        let states = [Succeeded, Pending];
        let a = job("a", false);
        let jobs = index::Jobs::from_iter([(0, &a)]);
        let got = decide_now(&rj(1, false, "Keep"), &states, &jobs);
        assert_eq!(got.create, vec![1]);
    }

    #[test]
    fn a_suspension_the_operator_did_not_make_is_left_alone() {
        let states = [Active, Active, Active];
        // Suspended by someone else, by the operator, and by Kueue.
        let (a, b, c) = (job("a", true), paused("b"), queued("c", true));
        let jobs = index::Jobs::from_iter([(0, &a), (1, &b), (2, &c)]);
        let got = decide_now(&rj(5, false, "Keep"), &states, &jobs);
        assert_eq!(
            got,
            Actions {
                resume: vec!["b".into()],
                ..Default::default()
            }
        );
        // Nor does a pause touch a Job someone else suspended.
        let got = decide_now(
            &rj(5, true, "Keep"),
            &states[..1],
            &index::Jobs::from_iter([(0, &a)]),
        );
        assert!(got.is_empty(), "{got:?}");
    }

    #[test]
    fn pausing_a_queued_render_deletes_its_unfinished_jobs() {
        let states = [Succeeded, Active, Active, Pending];
        let (a, b, c) = (queued("a", false), queued("b", false), queued("c", true));
        let jobs = index::Jobs::from_iter([(0, &a), (1, &b), (2, &c)]);
        let got = decide_now(&rj(5, true, "Keep"), &states, &jobs);
        assert_eq!(
            got,
            Actions {
                delete: vec!["b".into(), "c".into()],
                ..Default::default()
            }
        );
    }

    #[test]
    fn queued_jobs_count_against_parallelism() {
        // Parallelism caps what runs: a Job Kueue holds may be admitted at any moment.
        let states = [Active, Active, Pending, Pending];
        let (a, b) = (queued("a", true), queued("b", false));
        let jobs = index::Jobs::from_iter([(0, &a), (1, &b)]);
        let got = decide_now(&rj(2, false, "Keep"), &states, &jobs);
        assert!(got.is_empty(), "{got:?}");
        let got = decide_now(&rj(3, false, "Keep"), &states, &jobs);
        assert_eq!(got.create, vec![2]);
    }
}
