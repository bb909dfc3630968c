//! How often a render is looked at and written: the pacing that keeps the operator's writes
//! near one per batch however many renders go at once.

use std::time::{Duration, Instant};

use crate::events;
use crate::state::RenderState;

/// A status change that is not [`status::urgent`] (counts, progress, messages) waits until
/// at least this long after the last status write, so a render writes its status about once a
/// second instead of once per pod change.
pub const STATUS_EVERY: Duration = Duration::from_secs(1);
/// Status writes that are not urgent, per second, shared by every render still going, at the
/// least: with many renders at once each writes less often (see [`status_every`]), so the
/// operator's writes per batch stay near one, the Job apply, however many render together.
pub const STATUS_WRITES_PER_SECOND: u32 = 2;
/// ... and as many more as this share of the batches finishing: where batches finish faster,
/// each render's status is written more often, its writes per batch staying the same. With
/// 100 renders finishing 30 batches a second in all, each writes every 33 s, 0.1 writes per
/// batch; `kubectl render watch` follows the pods themselves.
pub const STATUS_WRITES_PER_BATCH: f64 = 0.1;
/// How far back the batches finishing are counted (their Jobs' `completionTime`).
pub const FINISHING_WINDOW: Duration = Duration::from_secs(60);

/// How long a render's status changes that are not urgent wait after its last status write,
/// with `active` renders going and `finishing` batches a second: [`STATUS_EVERY`], or their
/// share of the status write budget ([`STATUS_WRITES_PER_SECOND`], or
/// [`STATUS_WRITES_PER_BATCH`] of the batches finishing, whichever is more).
pub fn status_every(active: usize, finishing: f64) -> Duration {
    let budget = (STATUS_WRITES_PER_BATCH * finishing).max(f64::from(STATUS_WRITES_PER_SECOND));
    let share = Duration::try_from_secs_f64(active as f64 / budget).unwrap_or(Duration::MAX);
    share.max(STATUS_EVERY)
}

/// The shortest time between two full passes of one render, per render going: with many
/// renders, a render's watch events (about ten per batch) come in bursts, and one pass a
/// little later does what a pass per event would.
const PASS_PER_RENDER: Duration = Duration::from_millis(2);
/// ... but never longer than this: a freed slot waits at most this long for its next batch.
pub(super) const MAX_PASS_EVERY: Duration = Duration::from_millis(250);

/// The shortest time between two full passes of one render with `active` renders going.
pub fn pass_every(active: usize) -> Duration {
    PASS_PER_RENDER
        .saturating_mul(u32::try_from(active).unwrap_or(u32::MAX))
        .min(MAX_PASS_EVERY)
}

/// How long a pass at `now` should wait, if at all: while batches are left to create, until
/// `every` after the last pass. Once every batch is created nothing waits, so the render is
/// seen complete as soon as its last batch is.
pub fn pass_wait(state: &RenderState, now: Instant, every: Duration) -> Option<Duration> {
    let last = state.last_pass?;
    let wait = every.saturating_sub(now.saturating_duration_since(last));
    (state.left_to_create && !wait.is_zero()).then_some(wait)
}

/// How often a render gathers its batch creations into one `BatchesCreated` Event: the
/// Events' own [`events::EVERY`], stretched as its status writes are by [`status_every`].
pub fn created_every(status_every: Duration) -> Duration {
    events::EVERY.mul_f64(status_every.as_secs_f64() / STATUS_EVERY.as_secs_f64())
}
/// How soon to look again while the caches are still filling.
pub(super) const NOT_SYNCED: Duration = Duration::from_millis(500);
/// The longest a running render goes without a reconcile, watch events or not.
pub(super) const BUSY_RECHECK: Duration = Duration::from_secs(300);
/// A batch Job this old without a pod has had its pod refused, or soon will: its Events say why.
pub const PODLESS_AFTER: Duration = Duration::from_secs(3);
/// How often the Events of Jobs without pods are read.
pub(super) const INSPECT_EVERY: Duration = Duration::from_secs(5);
/// While other renders are going, a render keeps at most this many batch Jobs waiting for the
/// Job controller to make their pods. The Job controller takes Jobs first come, first served:
/// renders submitted together that each create their whole first wave at once put the last
/// one's first batch behind every other's wave (35 s behind with 100 renders in
/// `bench/many.sh`); two at a time each, the queue serves the renders in turn. Queued (Kueue)
/// and suspended Jobs do not count: they wait for admission or a resume, not for a pod.
pub const WAITING_PER_RENDER: usize = 2;
