//! Spec changes racing the render. The pods of these renders run until the test lets chosen
//! batches finish (a kwok Stage per step), so each step is a known state, not a moment:
//! - `spec.parallelism` edited mid-render, 4 → 1 and 1 → 8: no Job is created while the Jobs
//!   unfinished reach the new value, they stay within it, and `observedGeneration` follows;
//! - suspend as a batch's pod succeeds: that batch is counted once, never run again;
//! - the operator restarted while suspended creates and resumes nothing, and resumes cleanly;
//! - suspend with `DeleteSucceeded`: Jobs deleted while suspended stay counted, never recreated.

use std::time::Instant;

use anyhow::{Result, ensure};
use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use renderfarm::crd::RenderJob;
use serde_json::json;

use crate::faultkit::{
    ClusterObjects, MINUTE, Replica, Watch, batch_of, finish, job_complete, job_suspended,
    job_unfinished, patch_spec, pod_phase, poke, rerun_batches, sum, unique, watch_jobs,
    watch_pods,
};
use crate::harness::{Env, SCENARIO_LABEL, status, wait_until};

/// A render whose pods run until a Stage of the test finishes them.
async fn held_render(env: &Env, name: &str, batches: u32, extra: serde_json::Value) -> Result<()> {
    let mut spec = json!({
        "frames": {"start": 1, "end": batches}, "batchSize": 1,
        "podMetadata": {"labels": {SCENARIO_LABEL: env.ns.clone()}},
    });
    crate::harness::merge(&mut spec, extra);
    env.create(name, spec).await?;
    Ok(())
}

/// Whether the operator has seen generation `generation`: in status and in every condition.
fn observed(rj: &RenderJob, generation: i64) -> bool {
    let s = status(rj);
    s.observed_generation == Some(generation)
        && !s.conditions.is_empty()
        && s.conditions
            .iter()
            .all(|c| c.observed_generation == Some(generation))
}

fn unfinished_batches(jobs: &Watch<Job>) -> Vec<u32> {
    let mut b: Vec<u32> = jobs.unfinished().iter().filter_map(batch_of).collect();
    b.sort();
    b
}

#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn parallelism_edits_apply_mid_render() -> Result<()> {
    const N: u32 = 16;
    let env = Env::new("par").await?;
    let mut stages = ClusterObjects::default();
    let mut jobs = watch_jobs(&env).await?;
    let mut pods = watch_pods(&env).await?;
    let _op = Replica::start(&env, "operator", &[], &[])?;
    held_render(&env, "par", N, json!({"parallelism": 4})).await?;
    env.wait_rj("par", "4 batches active", MINUTE, |rj| {
        status(rj).batches.active == 4
    })
    .await?;
    ensure!(
        unfinished_batches(&jobs) == [0, 1, 2, 3],
        "{:?}",
        unfinished_batches(&jobs)
    );

    // 4 → 1: from now on a Job may only be created when none is unfinished.
    jobs.rule(|c| {
        (c.new && c.unfinished_before >= 1).then(|| {
            format!(
                "{} created with {} unfinished at parallelism 1",
                c.obj.name_any(),
                c.unfinished_before
            )
        })
    });
    let generation = patch_spec(&env, "par", json!({"parallelism": 1})).await?;
    let t = Instant::now();
    env.wait_rj("par", "generation observed", MINUTE, |rj| {
        observed(rj, generation)
    })
    .await?;
    let observed_in = t.elapsed();
    // Three of the four finish: one is still unfinished, so nothing new may start.
    finish(
        &env,
        &mut stages,
        &format!("{}-a", env.ns),
        &env.ns,
        &[0, 1, 2],
        0,
        &mut pods,
    )
    .await?;
    env.wait_rj("par", "3 batches done", MINUTE, |rj| {
        status(rj).batches.succeeded == 3
    })
    .await?;
    ensure!(
        jobs.with(|s| s.order.len()) == 4,
        "a Job was created with 1 of parallelism 1 unfinished"
    );
    // Then one at a time.
    for (step, batch) in [3u32, 4].into_iter().enumerate() {
        finish(
            &env,
            &mut stages,
            &format!("{}-b{step}", env.ns),
            &env.ns,
            &[batch],
            0,
            &mut pods,
        )
        .await?;
        jobs.wait(MINUTE, &format!("batch {} started", batch + 1), |s| {
            s.uids.len() == batch as usize + 2
        })
        .await?;
        env.wait_rj("par", "the next batch active", MINUTE, |rj| {
            let s = status(rj);
            s.batches.succeeded == i64::from(batch) + 1 && s.batches.active == 1
        })
        .await?;
        ensure!(
            unfinished_batches(&jobs) == [batch + 1],
            "{:?}",
            unfinished_batches(&jobs)
        );
    }

    // 1 → 8: seven more start at once, and no more.
    jobs.rule(|c| {
        (c.new && c.unfinished_before >= 8).then(|| {
            format!(
                "{} created with {} unfinished at parallelism 8",
                c.obj.name_any(),
                c.unfinished_before
            )
        })
    });
    jobs.reset_peak();
    let generation = patch_spec(&env, "par", json!({"parallelism": 8})).await?;
    env.wait_rj("par", "generation observed, 8 active", MINUTE, |rj| {
        observed(rj, generation) && status(rj).batches.active == 8
    })
    .await?;
    jobs.wait(MINUTE, "8 unfinished Jobs", |s| s.uids.len() == 13)
        .await?;
    ensure!(
        unfinished_batches(&jobs) == (5..13).collect::<Vec<_>>(),
        "{:?}",
        unfinished_batches(&jobs)
    );
    // The rest finish as they start.
    finish(
        &env,
        &mut stages,
        &format!("{}-all", env.ns),
        &env.ns,
        &[],
        200,
        &mut pods,
    )
    .await?;
    let rj = env.wait_phase("par", "Succeeded", 2 * MINUTE).await?;
    let (twice, seen, peak, violations) = jobs.with(|s| {
        (
            s.twice(),
            s.uids.len(),
            s.peak_unfinished,
            s.violations.clone(),
        )
    });
    let s = status(&rj);
    println!(
        "parallelism: 4 → 1 observed in {} ms; 1 → 8: at most {peak} Jobs unfinished; {seen} \
         Jobs, {} created twice; rule violations {violations:?}",
        observed_in.as_millis(),
        twice.len()
    );
    ensure!(violations.is_empty(), "{violations:?}");
    ensure!(peak <= 8, "{peak} Jobs unfinished at parallelism 8");
    ensure!(twice.is_empty(), "batches created twice: {twice:?}");
    assert_eq!(seen, N as usize);
    assert!(observed(&rj, generation));
    assert_eq!(
        (
            s.batches.succeeded,
            s.frames.rendered,
            s.succeeded_batches.as_deref()
        ),
        (i64::from(N), i64::from(N), Some("0-15"))
    );
    Ok(())
}

/// Waits until every unfinished Job is suspended, and at least one is (else the check means
/// nothing).
async fn all_suspended(jobs: &mut Watch<Job>) -> Result<usize> {
    jobs.wait(MINUTE, "every unfinished Job suspended", |s| {
        let unfinished: Vec<&Job> = s.live.values().filter(|j| job_unfinished(j)).collect();
        !unfinished.is_empty() && unfinished.iter().all(|j| job_suspended(j))
    })
    .await?;
    Ok(jobs.unfinished().len())
}

/// From now on, every Job created or unsuspended is a violation.
fn nothing_starts(jobs: &Watch<Job>) {
    jobs.rule(|c| {
        if c.new {
            Some(format!("{} created while suspended", c.obj.name_any()))
        } else if job_unfinished(c.obj) && !job_suspended(c.obj) {
            Some(format!("{} resumed while suspended", c.obj.name_any()))
        } else {
            None
        }
    });
}

/// Every Job event before this call has reached the watch: one Job is touched and the watch
/// waits for that change (a watch delivers in order).
async fn barrier(env: &Env, jobs: &mut Watch<Job>) -> Result<()> {
    let Some(name) = jobs.with(|s| s.live.values().next().map(|j| j.name_any())) else {
        return Ok(());
    };
    let mark = unique();
    env.jobs()
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"e2e/barrier": mark}}})),
        )
        .await?;
    jobs.wait(MINUTE, "the barrier", |s| {
        s.live
            .values()
            .any(|j| j.name_any() == name && j.annotations().get("e2e/barrier") == Some(&mark))
    })
    .await
}

#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn suspend_as_a_batch_completes_counts_it_once() -> Result<()> {
    const N: u32 = 6;
    let env = Env::new("susdone").await?;
    let mut stages = ClusterObjects::default();
    let mut jobs = watch_jobs(&env).await?;
    let mut pods = watch_pods(&env).await?;
    let _op = Replica::start(&env, "operator", &[], &[])?;
    held_render(&env, "race", N, json!({"parallelism": 2})).await?;
    pods.wait(MINUTE, "two pods running", |s| {
        s.live
            .values()
            .filter(|p| pod_phase(p) == "Running")
            .count()
            == 2
    })
    .await?;
    // Batch 0's pod succeeds; the render is suspended the moment the watch sees it, before
    // the Job controller or the operator has acted on it.
    finish(
        &env,
        &mut stages,
        &format!("{}-zero", env.ns),
        &env.ns,
        &[0],
        0,
        &mut pods,
    )
    .await?;
    pods.wait(MINUTE, "batch 0's pod succeeded", |s| {
        s.last
            .values()
            .any(|p| batch_of(p) == Some(0) && pod_phase(p) == "Succeeded")
    })
    .await?;
    patch_spec(&env, "race", json!({"suspend": true})).await?;
    let rj = env.wait_phase("race", "Suspended", MINUTE).await?;
    let suspended = all_suspended(&mut jobs).await?;
    let complete_at_suspended = jobs.with(|s| {
        s.live
            .values()
            .any(|j| batch_of(j) == Some(0) && job_complete(j))
    });
    // Its pod succeeded, so its Job completes, suspended or not, and the batch is counted.
    jobs.wait(MINUTE, "batch 0's Job complete", |s| {
        s.live
            .values()
            .any(|j| batch_of(j) == Some(0) && job_complete(j))
    })
    .await?;
    let counted = env
        .wait_rj("race", "batch 0 counted", MINUTE, |rj| {
            status(rj).batches.succeeded == 1
        })
        .await?;
    println!(
        "suspend race: at Suspended {} batch(es) counted, batch 0's Job complete then: \
         {complete_at_suspended}; {suspended} Job(s) suspended; then batch 0 counted",
        status(&rj).batches.succeeded
    );
    ensure!(
        status(&counted).succeeded_batches.as_deref() == Some("0"),
        "{:?}",
        status(&counted).succeeded_batches
    );
    ensure!(
        status(&counted).phase == renderfarm::crd::Phase::Suspended,
        "{:?}",
        status(&counted).phase
    );

    finish(
        &env,
        &mut stages,
        &format!("{}-all", env.ns),
        &env.ns,
        &[],
        200,
        &mut pods,
    )
    .await?;
    patch_spec(&env, "race", json!({"suspend": false})).await?;
    let rj = env.wait_phase("race", "Succeeded", 2 * MINUTE).await?;
    let s = status(&rj);
    let (twice, seen) = jobs.with(|s| (s.twice(), s.uids.len()));
    let (rerun, zero_pods) = pods.with(|s| {
        let zero = s.last.values().filter(|p| batch_of(*p) == Some(0)).count();
        (rerun_batches(s), zero)
    });
    println!(
        "suspend race: resumed and done; batch 0 had {zero_pods} pod(s); batches run again \
         after succeeding {rerun:?}; {seen} Jobs, {} created twice",
        twice.len()
    );
    ensure!(rerun.is_empty(), "batches rendered again: {rerun:?}");
    assert_eq!(zero_pods, 1, "batch 0 ran again");
    ensure!(twice.is_empty(), "batches created twice: {twice:?}");
    assert_eq!(seen, N as usize);
    assert_eq!(
        (
            s.batches.succeeded,
            s.frames.rendered,
            s.succeeded_batches.as_deref()
        ),
        (i64::from(N), i64::from(N), Some("0-5"))
    );
    Ok(())
}

/// Reconciles the replica has run so far.
fn reconciles(r: &Replica) -> Result<f64> {
    Ok(sum(
        &r.metrics()?,
        "renderfarm_reconcile_duration_seconds_count",
    ))
}

/// Restart the operator and wait until it has reconciled the RenderJob on synced caches.
async fn restart_and_reconcile(env: &Env, op: &mut Replica, rj: &str) -> Result<()> {
    op.restart()?;
    op.wait_ready(MINUTE).await?;
    let before = reconciles(op)?;
    poke(env, rj).await?;
    wait_until(MINUTE, "a reconcile after the restart", || async {
        Ok((reconciles(op)? > before).then_some(()))
    })
    .await
}

#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn restart_while_suspended_starts_nothing() -> Result<()> {
    const N: u32 = 8;
    let env = Env::new("susrestart").await?;
    let mut stages = ClusterObjects::default();
    let mut jobs = watch_jobs(&env).await?;
    let mut pods = watch_pods(&env).await?;
    let mut op = Replica::start(&env, "operator", &[], &[])?;
    held_render(&env, "paused", N, json!({"parallelism": 3})).await?;
    env.wait_rj("paused", "3 batches active", MINUTE, |rj| {
        status(rj).batches.active == 3
    })
    .await?;
    patch_spec(&env, "paused", json!({"suspend": true})).await?;
    env.wait_phase("paused", "Suspended", MINUTE).await?;
    let suspended = all_suspended(&mut jobs).await?;
    nothing_starts(&jobs);

    // Twice: a crash, and a crash of the process that came back.
    for _ in 0..2 {
        restart_and_reconcile(&env, &mut op, "paused").await?;
    }
    let rj = env.wait_phase("paused", "Suspended", MINUTE).await?;
    let (_, writes) = op.writes()?;
    barrier(&env, &mut jobs).await?;
    jobs.no_rule();
    let (violations, created) = jobs.with(|s| (s.violations.clone(), s.order.len()));
    println!(
        "restart while suspended: {suspended} Jobs suspended, 2 restarts; the last process \
         wrote {writes:?}; {created} Jobs; violations {violations:?}"
    );
    ensure!(violations.is_empty(), "{violations:?}");
    ensure!(
        !writes.contains_key("apply jobs") && !writes.contains_key("patch jobs"),
        "Jobs written while suspended: {writes:?}"
    );
    assert_eq!(created, 3);
    assert_eq!(status(&rj).batches.active, 3);

    finish(
        &env,
        &mut stages,
        &format!("{}-all", env.ns),
        &env.ns,
        &[],
        200,
        &mut pods,
    )
    .await?;
    patch_spec(&env, "paused", json!({"suspend": false})).await?;
    let rj = env.wait_phase("paused", "Succeeded", 2 * MINUTE).await?;
    let s = status(&rj);
    let (twice, seen) = jobs.with(|s| (s.twice(), s.uids.len()));
    ensure!(twice.is_empty(), "batches created twice: {twice:?}");
    assert_eq!(seen, N as usize);
    assert_eq!(
        (
            s.batches.succeeded,
            s.frames.rendered,
            s.succeeded_batches.as_deref()
        ),
        (i64::from(N), i64::from(N), Some("0-7"))
    );
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn suspend_with_delete_succeeded_keeps_batches_counted() -> Result<()> {
    const N: u32 = 8;
    let env = Env::new("susclean").await?;
    let mut stages = ClusterObjects::default();
    let mut jobs = watch_jobs(&env).await?;
    let mut pods = watch_pods(&env).await?;
    let mut op = Replica::start(&env, "operator", &[], &[])?;
    held_render(
        &env,
        "tidy",
        N,
        json!({"parallelism": 4, "cleanup": {"policy": "DeleteSucceeded"}}),
    )
    .await?;
    env.wait_rj("tidy", "4 batches active", MINUTE, |rj| {
        status(rj).batches.active == 4
    })
    .await?;
    // Two finish and are cleaned up; the next two start.
    finish(
        &env,
        &mut stages,
        &format!("{}-a", env.ns),
        &env.ns,
        &[0, 1],
        0,
        &mut pods,
    )
    .await?;
    jobs.wait(MINUTE, "batches 0 and 1 deleted, 4 and 5 started", |s| {
        s.deleted >= 2 && s.uids.len() >= 6
    })
    .await?;
    // Two more succeed, and the render is suspended as their pods do.
    finish(
        &env,
        &mut stages,
        &format!("{}-b", env.ns),
        &env.ns,
        &[2, 3],
        0,
        &mut pods,
    )
    .await?;
    pods.wait(MINUTE, "batch 2 and 3 pods succeeded", |s| {
        let done = |b| {
            s.last
                .values()
                .any(|p| batch_of(p) == Some(b) && pod_phase(p) == "Succeeded")
        };
        done(2) && done(3)
    })
    .await?;
    patch_spec(&env, "tidy", json!({"suspend": true})).await?;
    env.wait_phase("tidy", "Suspended", MINUTE).await?;
    let suspended = all_suspended(&mut jobs).await?;
    nothing_starts(&jobs);
    // Their Jobs are deleted while suspended, once recorded.
    jobs.wait(MINUTE, "batches 2 and 3 deleted while suspended", |s| {
        s.deleted >= 4
    })
    .await?;
    // And an operator that never saw those Jobs counts them from status alone.
    restart_and_reconcile(&env, &mut op, "tidy").await?;
    let rj = env.wait_phase("tidy", "Suspended", MINUTE).await?;
    barrier(&env, &mut jobs).await?;
    jobs.no_rule();
    let violations = jobs.with(|s| s.violations.clone());
    let s = status(&rj);
    println!(
        "suspend + DeleteSucceeded: {suspended} Jobs suspended, 4 deleted; after a restart \
         status says {} succeeded ({:?}); violations {violations:?}",
        s.batches.succeeded, s.succeeded_batches
    );
    ensure!(violations.is_empty(), "{violations:?}");
    assert_eq!(
        (s.batches.succeeded, s.succeeded_batches.as_deref()),
        (4, Some("0-3"))
    );

    finish(
        &env,
        &mut stages,
        &format!("{}-all", env.ns),
        &env.ns,
        &[],
        200,
        &mut pods,
    )
    .await?;
    patch_spec(&env, "tidy", json!({"suspend": false})).await?;
    let rj = env.wait_phase("tidy", "Succeeded", 2 * MINUTE).await?;
    jobs.wait(MINUTE, "every Job deleted", |s| s.live.is_empty())
        .await?;
    let s = status(&rj);
    let (twice, seen) = jobs.with(|s| (s.twice(), s.uids.len()));
    let rerun = pods.with(rerun_batches);
    println!(
        "suspend + DeleteSucceeded: done; {seen} Jobs, {} created twice; batches run again \
         {rerun:?}",
        twice.len()
    );
    ensure!(twice.is_empty(), "batches created twice: {twice:?}");
    ensure!(rerun.is_empty(), "batches rendered again: {rerun:?}");
    assert_eq!(seen, N as usize);
    assert_eq!(
        (
            s.batches.succeeded,
            s.frames.rendered,
            s.succeeded_batches.as_deref()
        ),
        (i64::from(N), i64::from(N), Some("0-7"))
    );
    Ok(())
}
