//! `cleanup: DeleteSucceeded` end to end: succeeded Jobs are deleted once status records them,
//! while the operator replicas are SIGKILLed and the lease fails over mid-deletion. No batch is
//! created twice, and once every Job is gone the status, kept only in the RenderJob, is exact,
//! also for an operator started after that.

use std::time::Instant;

use anyhow::{Result, ensure};
use serde_json::{Value, json};

use crate::faultkit::{
    MINUTE, Replica, Replicas, http_get, ms, poke, sum, wait_leader, watch_jobs,
};
use crate::harness::{Env, status, wait_until};

const BATCHES: usize = 60;

#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn delete_succeeded_survives_kills_and_a_failover() -> Result<()> {
    let env = Env::new("cleanup").await?;
    let mut jobs = watch_jobs(&env).await?;
    let replicas = Replicas::new(vec![
        Replica::elected(&env, "replica-a", &[])?,
        Replica::elected(&env, "replica-b", &[])?,
    ]);
    let started = Instant::now();
    env.create(
        "clean",
        json!({
            "frames": {"start": 1, "end": BATCHES}, "batchSize": 1, "parallelism": 6,
            "cleanup": {"policy": "DeleteSucceeded"},
        }),
    )
    .await?;

    let mut events = Vec::new();
    // 1. The leader dies while it deletes Jobs: the standby takes over once the lease ran out.
    jobs.wait(MINUTE, "6 Jobs deleted", |s| s.deleted >= 6)
        .await?;
    let first = wait_leader(&env, None).await?;
    replicas.kill(&first);
    let t = Instant::now();
    let next = wait_leader(&env, Some(&first)).await?;
    events.push(format!(
        "{first} killed, {next} leads after {} ms",
        ms(t.elapsed())
    ));
    replicas.restart(&first)?;

    // 2. Both die at once and come back, as their containers restart: the one that held the
    // lease takes it again at once, with empty caches.
    jobs.wait(MINUTE, "24 Jobs deleted", |s| s.deleted >= 24)
        .await?;
    let t = Instant::now();
    for (id, _) in replicas.ports() {
        replicas.kill(&id);
    }
    for (id, _) in replicas.ports() {
        replicas.restart(&id)?;
    }
    let holder = wait_leader(&env, None).await?;
    let port = replicas
        .ports()
        .into_iter()
        .find(|(id, _)| *id == holder)
        .map(|(_, p)| p);
    wait_until(MINUTE, "the leader to reconcile again", || async {
        let ready = port
            .and_then(|p| http_get(p, "/readyz").ok())
            .is_some_and(|(code, body)| code == 200 && !body.contains("standby"));
        Ok(ready.then_some(()))
    })
    .await?;
    events.push(format!(
        "both killed, {holder} leads and is ready after {} ms",
        ms(t.elapsed())
    ));

    // 3. The leader once more.
    jobs.wait(MINUTE, "42 Jobs deleted", |s| s.deleted >= 42)
        .await?;
    let third = wait_leader(&env, None).await?;
    replicas.kill(&third);
    let t = Instant::now();
    let next = wait_leader(&env, Some(&third)).await?;
    events.push(format!(
        "{third} killed, {next} leads after {} ms",
        ms(t.elapsed())
    ));
    replicas.restart(&third)?;

    let rj = env.wait_phase("clean", "Succeeded", 3 * MINUTE).await?;
    jobs.wait(MINUTE, "every batch Job deleted", |s| {
        s.live.is_empty() && s.deleted >= BATCHES
    })
    .await?;
    let took = started.elapsed();
    let s = status(&rj);
    let exact = |s: &renderfarm::crd::RenderJobStatus| {
        (
            s.batches.total,
            s.batches.succeeded,
            s.batches.failed,
            s.frames.rendered,
            s.succeeded_batches.clone(),
        )
    };
    let want = (
        BATCHES as i64,
        BATCHES as i64,
        0,
        BATCHES as i64,
        Some("0-59".to_string()),
    );
    assert_eq!(exact(&s), want, "status once every Job is gone");

    let before_restart = serde_json::to_value(&s)?;
    // An operator that starts now sees no Job at all: status alone says every batch is done.
    let revived = replicas.revived();
    drop(replicas);
    let fresh = Replica::start(&env, "fresh", &[], &[])?;
    fresh.wait_ready(MINUTE).await?;
    let reconciles = |r: &Replica| -> Result<f64> {
        Ok(sum(
            &r.metrics()?,
            "renderfarm_reconcile_duration_seconds_count",
        ))
    };
    let before = reconciles(&fresh)?;
    // A change of the RenderJob's metadata makes it reconcile once more, on synced caches.
    poke(&env, "clean").await?;
    wait_until(MINUTE, "the fresh operator to reconcile", || async {
        Ok((reconciles(&fresh)? > before).then_some(()))
    })
    .await?;
    let after = env.rjs().get("clean").await?;
    let after_value = serde_json::to_value(status(&after))?;
    let changed: Vec<String> = after_value
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, v)| before_restart.get(k.as_str()) != Some(v))
        .map(|(k, v)| {
            format!(
                "{k}: {} -> {v}",
                before_restart.get(k.as_str()).unwrap_or(&Value::Null)
            )
        })
        .collect();
    let (_, fresh_writes) = fresh.writes()?;
    let (twice, seen, created) = jobs.with(|s| (s.twice(), s.uids.len(), s.order.len()));
    println!(
        "cleanup: {BATCHES} batches, DeleteSucceeded, in {:.1} s with {} ({revived} replica(s) \
         restarted after losing the lease by themselves); {seen} Jobs, {} \
         created twice, every one deleted; an operator started afterwards wrote {fresh_writes:?} \
         (status changes: {changed:?})",
        took.as_secs_f64(),
        events.join("; "),
        twice.len(),
    );
    ensure!(twice.is_empty(), "batches created twice: {twice:?}");
    assert_eq!((seen, created), (BATCHES, BATCHES));
    assert_eq!(exact(&status(&after)), want, "status after a fresh start");
    assert_eq!(fresh_writes.get("apply jobs"), None, "Jobs applied again");
    Ok(())
}
