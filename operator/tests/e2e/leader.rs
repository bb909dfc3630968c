//! Two replicas with leader election. Only the leader writes: a standby's
//! `renderfarm_api_writes_total` stays 0 for as long as it waits for the lease. Killing the
//! leader hands the lease to the standby, which finishes the render without duplicating a batch.
//! Split brain: a leader frozen (SIGSTOP) past its lease while the standby takes over must not
//! write when it wakes up (SIGCONT), and the render stays exact.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use serde_json::json;

use crate::faultkit::{MINUTE, Replica, lease_holder, ms, watch_jobs};
use crate::harness::{Env, status, wait_until};

const BATCHES: usize = 40;

async fn holder(env: &Env, what: &str, not: Option<&str>) -> Result<String> {
    wait_until(Duration::from_secs(60), what, || async {
        Ok(lease_holder(env).await.filter(|h| Some(h.as_str()) != not))
    })
    .await
}

/// Every replica but the leader is a standby that has written nothing, and the leader has
/// written: returns (leader's writes, standbys checked).
async fn only_the_leader_writes(
    replicas: &BTreeMap<String, Replica>,
    leader: &str,
) -> Result<(u64, usize)> {
    let mut leader_writes = 0;
    let mut standbys = 0;
    for (id, r) in replicas {
        if id == leader {
            leader_writes = r.writes()?.0;
            ensure!(
                !r.is_standby()?,
                "the lease holder {id} says it is a standby"
            );
            continue;
        }
        // A replica that just started says so once it waits for the lease.
        wait_until(
            Duration::from_secs(30),
            &format!("{id} standing by"),
            || async { Ok(r.is_standby().ok().filter(|s| *s).map(|_| ())) },
        )
        .await?;
        let (writes, by) = r.writes()?;
        // Still a standby after the metrics were read: it was one when they were, and has been
        // since it started (a replica leaves standby once, for good).
        ensure!(r.is_standby()?, "{id} took the lease while it was checked");
        ensure!(
            writes == 0,
            "standby {id} wrote to the API server: {by:?} (only the leader may)"
        );
        standbys += 1;
    }
    ensure!(
        leader_writes > 0,
        "the leader {leader} has written nothing: the writes metric is not what this checks"
    );
    Ok((leader_writes, standbys))
}

#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn only_the_leader_writes_and_a_standby_takes_over() -> Result<()> {
    let env = Env::new("leader").await?;
    let mut jobs = watch_jobs(&env).await?;
    let mut replicas: BTreeMap<String, Replica> = BTreeMap::new();
    for id in ["replica-a", "replica-b"] {
        replicas.insert(id.to_string(), Replica::elected(&env, id, &[])?);
    }
    env.create(
        "lead",
        json!({"frames": {"start": 1, "end": BATCHES}, "batchSize": 1, "parallelism": 4}),
    )
    .await?;
    let mut failovers = Vec::new();
    let mut checks = Vec::new();
    for round in 0..2 {
        let leader = holder(&env, "a lease holder", None).await?;
        let want = 8 * (round + 1);
        jobs.wait(2 * MINUTE, &format!("{want} batch Jobs"), |s| {
            s.uids.len() >= want
        })
        .await?;
        checks.push(only_the_leader_writes(&replicas, &leader).await?);
        let Some(r) = replicas.get_mut(&leader) else {
            bail!("lease held by unknown {leader}")
        };
        r.kill();
        let killed = Instant::now();
        let next = holder(&env, "the standby to take the lease", Some(&leader)).await?;
        failovers.push(killed.elapsed());
        println!(
            "leader: {leader} killed, {next} leads after {} ms",
            ms(killed.elapsed())
        );
        // The killed replica comes back, as the standby.
        replicas
            .get_mut(&leader)
            .map(Replica::restart)
            .transpose()?;
    }
    let rj = env.wait_phase("lead", "Succeeded", 3 * MINUTE).await?;
    let leader = holder(&env, "a lease holder", None).await?;
    checks.push(only_the_leader_writes(&replicas, &leader).await?);
    let (twice, seen) = jobs.with(|s| (s.twice(), s.uids.len()));
    let s = status(&rj);
    println!(
        "leader: 2 failovers (lease 3 s) after {:?} ms; standbys checked at {} moments, each \
         0 writes, the leader's writes then {:?}; {seen} Jobs, {} created twice",
        failovers.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
        checks.len(),
        checks.iter().map(|(w, _)| *w).collect::<Vec<_>>(),
        twice.len()
    );
    ensure!(twice.is_empty(), "batches created twice: {twice:?}");
    assert_eq!(seen, BATCHES);
    assert!(checks.iter().all(|(_, standbys)| *standbys == 1));
    assert_eq!(
        (s.batches.succeeded, s.batches.failed, s.frames.rendered),
        (BATCHES as i64, 0, BATCHES as i64)
    );
    assert_eq!(s.succeeded_batches.as_deref(), Some("0-39"));
    Ok(())
}

/// Split brain: the leader is frozen with SIGSTOP until its lease has run out and the standby
/// has taken over and moved the render on, deleting succeeded Jobs the frozen one still has in
/// its cache as unfinished. Woken with SIGCONT, the old leader holds stale caches and timers
/// that fire at once; it must learn it lost the lease before it writes anything, and exit.
#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn a_paused_leader_writes_nothing_after_its_lease_ran_out() -> Result<()> {
    let env = Env::new("split").await?;
    let mut jobs = watch_jobs(&env).await?;
    let a = Replica::elected(&env, "replica-a", &[])?;
    let b = Replica::elected(&env, "replica-b", &[])?;
    env.create(
        "split",
        json!({
            "frames": {"start": 1, "end": BATCHES}, "batchSize": 1, "parallelism": 4,
            "cleanup": {"policy": "DeleteSucceeded"},
        }),
    )
    .await?;
    let leader = holder(&env, "a lease holder", None).await?;
    let (mut old, new) = if leader == a.id { (a, b) } else { (b, a) };

    // Mid-render, with Jobs being created and deleted.
    jobs.wait(MINUTE, "6 succeeded Jobs deleted", |s| s.deleted >= 6)
        .await?;
    old.pause()?;
    let paused = Instant::now();
    let deleted_at_pause = jobs.with(|s| s.deleted);
    holder(&env, "the standby to take the lease", Some(&old.id)).await?;
    let took_over = paused.elapsed();
    // The new leader moves on: what the frozen one remembers is now wrong.
    jobs.wait(MINUTE, "8 more Jobs deleted by the new leader", |s| {
        s.deleted >= deleted_at_pause + 8
    })
    .await?;
    let frozen = paused.elapsed();
    let new_writes = new.writes()?.0;

    let from = old.log_len();
    old.resume()?;
    let resumed = Instant::now();
    // It learns it lost the lease and exits.
    while !old.exited() {
        if resumed.elapsed() > Duration::from_secs(30) {
            bail!("the old leader was still running 30 s after SIGCONT");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let exited_after = resumed.elapsed();
    let stray = old.writes_logged_since(from)?;
    let lost = old.log_lines_since(from, "lost the lease")?;

    let rj = env.wait_phase("split", "Succeeded", 3 * MINUTE).await?;
    jobs.wait(MINUTE, "every batch Job deleted", |s| {
        s.live.is_empty() && s.deleted >= BATCHES
    })
    .await?;
    let (twice, seen) = jobs.with(|s| (s.twice(), s.uids.len()));
    let s = status(&rj);
    println!(
        "split brain: leader {} frozen {} ms (standby leads after {} ms, had written {new_writes} \
         by SIGCONT); after SIGCONT the old leader exited in {} ms, logged 'lost the lease' {} \
         time(s) and sent {} write(s): {stray:?}; {seen} Jobs, {} created twice",
        old.id,
        ms(frozen),
        ms(took_over),
        ms(exited_after),
        lost.len(),
        stray.len(),
        twice.len(),
    );
    ensure!(
        stray.is_empty(),
        "the old leader wrote after its lease ran out: {stray:?}"
    );
    ensure!(twice.is_empty(), "batches created twice: {twice:?}");
    assert_eq!(seen, BATCHES);
    assert_eq!(
        (
            s.batches.succeeded,
            s.batches.failed,
            s.frames.rendered,
            s.succeeded_batches.as_deref()
        ),
        (BATCHES as i64, 0, BATCHES as i64, Some("0-39"))
    );
    Ok(())
}
