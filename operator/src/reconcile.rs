//! One reconcile as data: from what the caches hold of a RenderJob, its batch Jobs and pods,
//! and what the operator remembers of it ([`RenderState`]), [`decide`] works out every effect
//! (Jobs to apply, suspend, resume or delete, the status to write, the Events, when to come
//! back) and the controller only carries them out. What the API server answered to the Job
//! applies comes back through [`Effects::settle`]. `examples/reconcile_cost.rs` measures it.

mod effects;
mod holds;
pub mod nodes;
mod observe;
mod pace;
mod preview;
mod rerender;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::Result;
use crate::actions::Actions;
use crate::ahead;
use crate::cache::{BatchJob, BatchPod};
use crate::crd::{Phase, PreviewState, RenderJob, RenderJobStatus};
use crate::events;
use crate::job::{self, JobConfig};
use crate::nodewatch::ClusterNode;
use crate::plan::Plan;
use crate::state::RenderState;
use crate::status;
use effects::{About, newly_failed, progress};
use holds::{invalid, refusal, too_disrupted};
use observe::observe;
use pace::NOT_SYNCED;
use preview::preview_step;

pub use effects::{Applied, Effects, Progress, StatusWrite, Wake};
pub use observe::{Observation, owned_by, pod_of, predecessor_of};
pub use pace::{
    FINISHING_WINDOW, PODLESS_AFTER, STATUS_EVERY, STATUS_WRITES_PER_BATCH,
    STATUS_WRITES_PER_SECOND, WAITING_PER_RENDER, created_every, pass_every, pass_wait,
    status_every,
};

/// What the caches hold for one RenderJob.
pub struct Input<'a> {
    pub rj: &'a RenderJob,
    /// Its batch Jobs (see [`owned_by`]).
    pub jobs: &'a [Arc<BatchJob>],
    /// Its batch pods (see [`pod_of`]).
    pub pods: &'a [Arc<BatchPod>],
    /// Jobs of an earlier RenderJob of the same name, not yet gone (see [`predecessor_of`]).
    pub taken: &'a [Arc<BatchJob>],
    /// Whether the Job and pod caches hold a full list yet.
    pub synced: bool,
    /// How many disrupted pods of the Job with this UID were seen.
    pub disrupted: &'a (dyn Fn(&str) -> usize + Sync),
    /// How many renders are going, this one included: they share the status write budget
    /// ([`status_every`]) and, more than one, the Job controller ([`WAITING_PER_RENDER`]).
    pub active: usize,
    /// Batches of every render finishing a second, lately ([`FINISHING_WINDOW`]): the status
    /// write budget grows with them.
    pub finishing: f64,
    /// The cluster's nodes, when the operator may watch them (see [`nodes`]).
    pub nodes: Option<&'a [ClusterNode]>,
}

/// What one reconcile decided: the effects to carry out, when to come back, and the state to
/// remember once they are sent.
#[derive(Debug, Clone)]
pub struct Decision {
    pub effects: Effects,
    pub wake: Wake,
    /// The state as if the effects were carried out: batches to create are marked in flight
    /// before their applies are sent, so a crash or a timeout after the server acted cannot
    /// let a stale cache start a second Job (the deterministic name makes a retry a no-op).
    pub state: RenderState,
}

/// Works out every effect of one reconcile, and the state that follows (see [`Decision`]).
pub fn decide(
    input: &Input<'_>,
    state: &RenderState,
    config: &JobConfig,
    now: Instant,
    wall: &Time,
) -> Result<Decision> {
    let rj = input.rj;
    let about = About {
        rj_name: rj.name_any(),
        generation: rj.metadata.generation,
        ..About::default()
    };
    let mut d = Decision {
        effects: Effects {
            about,
            ..Effects::default()
        },
        wake: Wake::default(),
        state: state.clone(),
    };
    if rj.metadata.deletion_timestamp.is_some() {
        return Ok(d);
    }
    // Never decide on a half-filled cache: that is how batches get created twice.
    if !input.synced {
        d.wake.retry = Some(NOT_SYNCED);
        return Ok(d);
    }
    let Some(plan) = Plan::new(&rj.spec.frames, rj.spec.batch_size) else {
        // A frame list says what is wrong with it.
        let why = Plan::why_not(&rj.spec.frames, rj.spec.batch_size)
            .unwrap_or_else(|| "frames and batchSize do not make a plan".into());
        d.effects = invalid(rj, d.effects, "InvalidSpec", &why, wall);
        return Ok(d);
    };
    if let Err(why) = config.image_for(rj) {
        d.effects = invalid(
            rj,
            d.effects,
            "UnknownBlenderVersion",
            &why.to_string(),
            wall,
        );
        return Ok(d);
    }
    d.effects.about.plan = Some(plan.clone());
    d.wake.planned = true;
    decide_planned(input, &mut d, config, plan, now, wall)?;
    Ok(d)
}

/// After followers were withdrawn, the render starts nothing ahead for a while, longer each
/// time in a row ([`ahead::pause`]); a follower placed since starts the count again.
fn pause_ahead(state: &mut RenderState, todo: &Actions, now: Instant) {
    if todo.ahead_placed {
        state.withdrawals = 0;
    }
    if !todo.withdrawn.is_empty() {
        state.withdrawals = state.withdrawals.saturating_add(1);
        let pause = ahead::pause(state.withdrawals);
        state.ahead_paused_until = Some(now + pause);
        tracing::info!(
            batches = ?todo.withdrawn,
            pause_s = pause.as_secs(),
            "withdrew batches started ahead that no node has room for"
        );
    }
}

/// [`decide`] for a spec that makes `plan`, into `d`.
fn decide_planned(
    input: &Input<'_>,
    d: &mut Decision,
    config: &JobConfig,
    plan: Plan,
    now: Instant,
    wall: &Time,
) -> Result<()> {
    let rj = input.rj;
    let Decision {
        effects: fx,
        wake,
        state,
    } = d;
    // What we last wrote is newer than the cache when the cache lags behind our own write.
    let written_at = state.written.as_ref().map(|(_, at)| *at);
    let old = state
        .written
        .as_ref()
        .map(|(s, _)| s.clone())
        .or_else(|| rj.status.clone())
        .unwrap_or_default();
    let write_every = status_every(input.active, input.finishing);
    state.created.pace(created_every(write_every));
    let seen = observe(input, state, &fx.about.rj_name, plan.clone(), &old, now);
    let in_flight: BTreeSet<u32> = state.in_flight.keys().copied().collect();
    let rejected = refusal(rj, &seen, state, fx, wake, now, wall);
    fx.stop = too_disrupted(&seen, input.disrupted, config.max_disruptions.max(1));
    let paused = state.ahead_paused_until.is_some_and(|until| now < until);
    let (todo, mut new, states) = seen.decide(rj, &old, &in_flight, rejected, paused, wall);
    pause_ahead(state, &todo, now);
    let blocklist = nodes::Blocklist::new(new.node_faults.clone(), rj);
    let fits = nodes::fitting(rj, input.nodes);
    let place = |i: u32| nodes::placement(&blocklist, i, fits.as_ref());
    create_jobs(rj, &plan, config, &todo, state, fx, now, &place)?;
    wake.ahead_due = todo.ahead_due.or_else(|| {
        let until = state.ahead_paused_until.filter(|_| rj.spec.start_ahead)?;
        Some(until.saturating_duration_since(now)).filter(|d| !d.is_zero())
    });
    let Actions {
        suspend,
        resume,
        mut delete,
        create,
        ..
    } = todo;
    let (preview_job, delete_preview) =
        preview_step(input, state, config, &old, &mut new, now, wall)?;
    fx.preview = preview_job;
    fx.rerender = rerender::rerender_step(input, config, &plan, &old, &mut new, wall)?;
    delete.extend(delete_preview);
    (fx.suspend, fx.resume, fx.delete) = (suspend, resume, delete);
    fx.about.all_created = new.batches.pending == 0;
    state.left_to_create = !fx.about.all_created;
    wake.busy = busy(&new, !create.is_empty());
    wake.inspecting = fx.inspect.is_some();
    // Counts and messages wait for the next paced write (`status_every`); transitions do not.
    wake.status_due = written_at
        .map(|at| write_every.saturating_sub(now.saturating_duration_since(at)))
        .filter(|wait| old != new && !wait.is_zero() && !status::urgent(&old, &new));
    fx.about.terminal = matches!(new.phase, Phase::Succeeded | Phase::Failed);
    if old != new && wake.status_due.is_none() {
        fx.about.newly_failed = newly_failed(&old, &new);
        let mut notes = events::on_change(&old, &new, rj.spec.missing_files);
        notes.extend(nodes::notes(&old, &new, &fx.about.rj_name));
        fx.status = Some(StatusWrite {
            events: notes,
            progress: progress(&old, &new, &seen, &states),
            status: new,
        });
    }
    Ok(())
}

/// The render is still going: batches running or pending, Jobs being created, or the preview
/// being made.
fn busy(new: &RenderJobStatus, creating: bool) -> bool {
    let previewing = new
        .preview
        .as_ref()
        .is_some_and(|p| p.state == PreviewState::Running);
    matches!(new.phase, Phase::Running | Phase::Pending) || creating || previewing
}

/// The batch Jobs to create, each marked in flight (and, started ahead, with the batch it
/// follows) as its apply is queued; each kept off the nodes `place` says.
#[allow(clippy::too_many_arguments)]
fn create_jobs(
    rj: &RenderJob,
    plan: &Plan,
    config: &JobConfig,
    todo: &Actions,
    state: &mut RenderState,
    fx: &mut Effects,
    now: Instant,
    place: &dyn Fn(u32) -> nodes::Placement,
) -> Result<()> {
    for index in &todo.create {
        if let Some(batch) = plan.batch(*index) {
            let after = todo.after.get(index).copied();
            let mut job = job::build_after(rj, &batch, config, false, after)?;
            nodes::keep_off(&mut job, &place(*index));
            fx.apply.push((*index, job));
            state.mark_in_flight(*index, now);
            if let Some(h) = after {
                state.in_flight_after.insert(*index, h);
            }
        }
    }
    Ok(())
}
