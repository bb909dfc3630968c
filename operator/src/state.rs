//! What the operator remembers of each RenderJob between reconciles, in one map keyed by UID
//! and pruned in one place when a RenderJob is gone.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::crd::RenderJobStatus;
use crate::events::{Coalesce, Created};

/// How long a created Job may stay unseen in the cache before it stops counting as in flight.
pub const IN_FLIGHT_TTL: Duration = Duration::from_secs(60);
/// The same after the server answered the apply with a 5xx: it may have created the Job all
/// the same (a timeout after the write), which the watch shows within this; most often it did
/// not (a webhook or etcd failed), and the batch is tried again soon after the fault ends.
pub const IN_FLIGHT_AFTER_5XX: Duration = Duration::from_secs(5);

/// One RenderJob's memory.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RenderState {
    /// Batches whose Job was sent but not seen in the cache yet, and until when they count as
    /// running, so a stale cache never starts a batch twice.
    pub in_flight: BTreeMap<u32, Instant>,
    /// Of those, the batches whose apply got no answer (the connection dropped, the request
    /// timed out): their Job may exist or not. Such a batch keeps its mark until the cache
    /// shows its Job or a read of it by name says whether it exists ([`Self::read_back`]); a
    /// second apply sent blind would be a second write for a Job that is most often there.
    pub unanswered: BTreeSet<u32>,
    /// Of those, the followers started ahead, and the batch each follows: until the cache
    /// shows their Jobs (and their `renderfarm.io/after`), this is how they count as waiting
    /// and their batch as followed.
    pub in_flight_after: BTreeMap<u32, u32>,
    /// Batches created and not reported in a `BatchesCreated` Event yet.
    pub created: Created,
    /// The status this process last wrote, and when. The cache can lag behind our own writes;
    /// comparing against what we wrote keeps metrics and Events from counting a change twice.
    pub written: Option<(RenderJobStatus, Instant)>,
    /// Failed batches not reported in a `BatchFailed` Event yet.
    pub failed: Coalesce,
    /// The last Job apply the API server refused, while no later one went through.
    pub rejection: Option<Rejection>,
    /// Why a batch Job's pod could not be created (a quota, Pod Security admission, a
    /// LimitRange), from the Job controller's `FailedCreate` Event: `(job, message)`.
    pub pod_rejection: Option<(String, String)>,
    /// When the Events of a Job without pods were last read.
    pub inspected: Option<Instant>,
    /// Reconciles that failed in a row, for the error backoff.
    pub failures: u32,
    /// Until when the preview Job, sent but not seen in the cache yet, counts as running: as
    /// for batches, a stale cache must not send a second one.
    pub preview_in_flight: Option<Instant>,
    /// The preview Job's apply got no answer: as [`Self::unanswered`] for a batch.
    pub preview_unanswered: bool,
    /// Why the API server refused the preview Job (it is not sent again).
    pub preview_refused: Option<String>,
    /// When the last full reconcile began, and whether it left batches to create (see
    /// [`crate::reconcile::pass_wait`]).
    pub last_pass: Option<Instant>,
    pub left_to_create: bool,
    /// Followers withdrawn in a row, none placed since ([`crate::ahead::waiting`]), and until
    /// when the render starts nothing ahead ([`crate::ahead::pause`]).
    pub withdrawals: u32,
    pub ahead_paused_until: Option<Instant>,
}

/// A Job apply the API server refused (a quota, an admission webhook, an invalid field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub batch: u32,
    pub job: String,
    /// The API server's words.
    pub message: String,
    /// The RenderJob's generation then: an edited spec is tried again at once.
    pub generation: Option<i64>,
    pub at: Instant,
    /// Refusals in a row.
    pub count: u32,
}

impl Rejection {
    /// No Job is applied before this: 2 s after the first refusal, doubling up to a minute.
    pub fn retry_at(&self) -> Instant {
        let secs = 1u64 << self.count.clamp(1, 6);
        self.at + Duration::from_secs(secs.min(60))
    }
}

impl RenderState {
    /// Marks batch `index` in flight from `now` for [`IN_FLIGHT_TTL`].
    pub fn mark_in_flight(&mut self, index: u32, now: Instant) {
        self.in_flight.insert(index, now + IN_FLIGHT_TTL);
    }

    /// Drops the in-flight marks of batches now seen, and of those run out but for the
    /// unanswered ones: those end only when seen or [`Self::read_back`].
    pub fn expire_in_flight(&mut self, seen: impl Fn(u32) -> bool, now: Instant) {
        let unanswered = &self.unanswered;
        self.in_flight
            .retain(|i, until| !seen(*i) && (now < *until || unanswered.contains(i)));
        let flying = &self.in_flight;
        self.in_flight_after.retain(|i, _| flying.contains_key(i));
        self.unanswered.retain(|i| flying.contains_key(i));
    }

    /// Drops the preview Job's in-flight mark once it is seen, or run out (unless its apply
    /// went unanswered: then once seen or read back).
    pub fn expire_preview(&mut self, seen: bool, now: Instant) {
        let ran_out = self.preview_in_flight.is_some_and(|until| now >= until);
        if seen || (ran_out && !self.preview_unanswered) {
            self.preview_in_flight = None;
            self.preview_unanswered = false;
        }
    }

    /// Marks batch `index`, in flight, as unanswered.
    pub fn mark_unanswered(&mut self, index: u32) {
        if self.in_flight.contains_key(&index) {
            self.unanswered.insert(index);
        }
    }

    /// Takes in what a read by name found of unanswered batch `index`'s Job: one that exists
    /// counts as running for [`IN_FLIGHT_TTL`] more, until the cache shows it; one that does
    /// not loses its mark, so the next decision applies it again.
    pub fn read_back(&mut self, index: u32, exists: bool, now: Instant) {
        self.unanswered.remove(&index);
        if exists {
            self.mark_in_flight(index, now);
        } else {
            self.in_flight.remove(&index);
            self.in_flight_after.remove(&index);
        }
    }

    /// [`Self::read_back`] for the preview Job.
    pub fn read_back_preview(&mut self, exists: bool, now: Instant) {
        self.preview_unanswered = false;
        self.preview_in_flight = exists.then_some(now + IN_FLIGHT_TTL);
    }

    /// The refusal that holds Job creation back at `now`, if any.
    pub fn holding(&self, generation: Option<i64>, now: Instant) -> Option<&Rejection> {
        self.rejection
            .as_ref()
            .filter(|r| r.generation == generation && now < r.retry_at())
    }

    /// Time until the oldest in-flight mark runs out, and a little more.
    pub fn in_flight_expiry(&self, now: Instant) -> Option<Duration> {
        self.in_flight
            .values()
            .chain(self.preview_in_flight.iter())
            .map(|until| until.saturating_duration_since(now) + Duration::from_millis(100))
            .min()
    }
}

/// Every RenderJob's [`RenderState`]. The lock is held only to copy a state in or out, never
/// across an API call; kube's controller never reconciles one object twice at once, so a
/// reconcile can take its RenderJob's state, work on it, and put it back.
#[derive(Debug, Default)]
pub struct States {
    map: Mutex<HashMap<String, RenderState>>,
}

impl States {
    /// A copy of the RenderJob's state (empty if there is none).
    pub fn get(&self, uid: &str) -> RenderState {
        self.map.lock().get(uid).cloned().unwrap_or_default()
    }

    pub fn put(&self, uid: &str, state: RenderState) {
        self.map.lock().insert(uid.to_string(), state);
    }

    /// Changes one RenderJob's state in place.
    pub fn update<R>(&self, uid: &str, f: impl FnOnce(&mut RenderState) -> R) -> R {
        f(self.map.lock().entry(uid.to_string()).or_default())
    }

    /// Forgets the RenderJobs whose UID is not in `live`.
    pub fn retain(&self, live: &HashSet<String>) {
        self.map.lock().retain(|uid, _| live.contains(uid));
    }

    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_marks_end_when_seen_or_too_old() {
        let t0 = Instant::now();
        let mut s = RenderState::default();
        s.mark_in_flight(1, t0);
        s.mark_in_flight(2, t0);
        s.mark_in_flight(3, t0 + Duration::from_secs(30));
        assert_eq!(
            s.in_flight_expiry(t0),
            Some(IN_FLIGHT_TTL + Duration::from_millis(100))
        );
        s.expire_in_flight(|i| i == 2, t0 + Duration::from_secs(1));
        assert_eq!(s.in_flight.keys().copied().collect::<Vec<_>>(), [1, 3]);
        s.expire_in_flight(|_| false, t0 + IN_FLIGHT_TTL);
        assert_eq!(s.in_flight.keys().copied().collect::<Vec<_>>(), [3]);
        assert_eq!(
            s.in_flight_expiry(t0 + IN_FLIGHT_TTL),
            Some(Duration::from_secs(30) + Duration::from_millis(100))
        );
    }

    #[test]
    fn an_unanswered_apply_keeps_its_mark_until_seen_or_read_back() {
        let t0 = Instant::now();
        let mut s = RenderState::default();
        for i in [1, 2, 3] {
            s.mark_in_flight(i, t0);
        }
        s.in_flight_after.insert(2, 1);
        s.mark_unanswered(2);
        s.mark_unanswered(3);
        s.mark_unanswered(9);
        assert_eq!(
            s.unanswered,
            BTreeSet::from([2, 3]),
            "only batches in flight"
        );
        // Past the in-flight time: 1 runs out, the unanswered ones wait for a read.
        let later = t0 + IN_FLIGHT_TTL;
        s.expire_in_flight(|_| false, later);
        assert_eq!(s.in_flight.keys().copied().collect::<Vec<_>>(), [2, 3]);
        // Its Job is there: in flight again for the full time, no longer unanswered.
        s.read_back(2, true, later);
        assert_eq!(s.in_flight.get(&2), Some(&(later + IN_FLIGHT_TTL)));
        assert_eq!(s.in_flight_after.get(&2), Some(&1));
        // Its Job is not there: the mark goes, so the batch is applied again.
        s.read_back(3, false, later);
        assert!(!s.in_flight.contains_key(&3));
        assert!(s.unanswered.is_empty());
        // Seen in the cache: the unanswered mark goes with the in-flight one.
        s.mark_in_flight(4, later);
        s.mark_unanswered(4);
        s.expire_in_flight(|i| i == 4, later);
        assert!(s.unanswered.is_empty() && !s.in_flight.contains_key(&4));

        s.preview_in_flight = Some(t0 + IN_FLIGHT_TTL);
        s.preview_unanswered = true;
        s.expire_preview(false, later);
        assert!(
            s.preview_in_flight.is_some(),
            "an unanswered preview waits for its read"
        );
        s.read_back_preview(false, later);
        assert_eq!((s.preview_in_flight, s.preview_unanswered), (None, false));
    }

    #[test]
    fn a_refusal_holds_creation_back_with_a_growing_delay_until_the_spec_changes() {
        let t0 = Instant::now();
        let mut s = RenderState::default();
        let mut r = Rejection {
            batch: 1,
            job: "shot-0001".into(),
            message: "exceeded quota".into(),
            generation: Some(1),
            at: t0,
            count: 1,
        };
        assert_eq!(r.retry_at(), t0 + Duration::from_secs(2));
        r.count = 10;
        assert_eq!(r.retry_at(), t0 + Duration::from_secs(60));
        r.count = 1;
        s.rejection = Some(r);
        assert!(s.holding(Some(1), t0 + Duration::from_secs(1)).is_some());
        assert!(s.holding(Some(1), t0 + Duration::from_secs(2)).is_none());
        assert!(
            s.holding(Some(2), t0).is_none(),
            "an edited spec is tried at once"
        );
    }

    #[test]
    fn gone_renderjobs_are_forgotten_in_one_place() {
        let states = States::default();
        states.put("a", RenderState::default());
        states.update("b", |s| s.failures += 1);
        states.update("c", |s| {
            s.in_flight.insert(0, Instant::now());
        });
        assert_eq!(states.len(), 3);
        assert_eq!(states.get("b").failures, 1);
        states.retain(&HashSet::from(["b".to_string()]));
        assert_eq!(states.len(), 1);
        assert_eq!(states.get("b").failures, 1);
        assert_eq!(states.get("c"), RenderState::default());
    }
}
