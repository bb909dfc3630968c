//! Two replicas with leader election. Only the leader writes: a standby's
//! `renderfarm_api_writes_total` stays 0 for as long as it waits for the lease. Killing the
//! leader hands the lease to the standby, which finishes the render without duplicating a batch.
//! Split brain: a leader frozen (SIGSTOP) past its lease while the standby takes over must not
//! write when it wakes up (SIGCONT), and the render stays exact.

use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use serde_json::json;

use crate::faultkit::{
    LEASE_SECONDS, MINUTE, Replica, Replicas, lease_holder, ms, standby_at, wait_leader,
    watch_jobs, writes_at,
};
use crate::harness::{Env, status, wait_until};

const BATCHES: usize = 40;

/// What one look at every replica found.
enum Look {
    /// The leader's writes, and how many standbys were seen with none.
    Fine(u64, usize),
    /// The replicas moved under the look (a lease changed hands, a process restarted).
    Moved(String),
}

/// Every replica but the lease holder is a standby that has written nothing, and the holder
/// has written. A standby that wrote fails at once.
async fn look(env: &Env, replicas: &Replicas) -> Result<Look> {
    let Some(leader) = lease_holder(env).await else {
        return Ok(Look::Moved("no lease holder".into()));
    };
    let mut leader_writes = None;
    let mut standbys = 0;
    for (id, port) in replicas.ports() {
        if id == leader {
            let (Ok((writes, _)), Ok(Some(false))) = (writes_at(port), standby_at(port)) else {
                return Ok(Look::Moved(format!("the holder {id} is not reconciling")));
            };
            leader_writes = Some(writes);
            continue;
        }
        // A replica that just started says so once it waits for the lease.
        let waiting = wait_until(
            Duration::from_secs(30),
            &format!("{id} standing by"),
            || async { Ok(standby_at(port).ok().flatten().filter(|s| *s).map(|_| ())) },
        )
        .await;
        if waiting.is_err() {
            return Ok(Look::Moved(format!("{id} is not standing by")));
        }
        let Ok((writes, by)) = writes_at(port) else {
            return Ok(Look::Moved(format!("{id} stopped answering")));
        };
        // Still a standby after the metrics were read: it was one when they were, and has been
        // since its process started (a process leaves standby once, for good).
        if standby_at(port).ok().flatten() != Some(true) {
            return Ok(Look::Moved(format!(
                "{id} took the lease while it was checked"
            )));
        }
        ensure!(
            writes == 0,
            "standby {id} wrote to the API server: {by:?} (only the leader may)"
        );
        standbys += 1;
    }
    let Some(leader_writes) = leader_writes else {
        bail!("lease held by unknown {leader}")
    };
    ensure!(
        leader_writes > 0,
        "the leader {leader} has written nothing: the writes metric is not what this checks"
    );
    Ok(Look::Fine(leader_writes, standbys))
}

/// [`look`], again while the replicas move.
async fn only_the_leader_writes(env: &Env, replicas: &Replicas) -> Result<(u64, usize)> {
    let mut moved = Vec::new();
    for _ in 0..5 {
        match look(env, replicas).await? {
            Look::Fine(writes, standbys) => return Ok((writes, standbys)),
            Look::Moved(why) => moved.push(why),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    bail!("the replicas never held still to be checked: {moved:?}")
}

#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn only_the_leader_writes_and_a_standby_takes_over() -> Result<()> {
    let env = Env::new("leader").await?;
    let mut jobs = watch_jobs(&env).await?;
    let replicas = Replicas::new(vec![
        Replica::elected(&env, "replica-a", &[])?,
        Replica::elected(&env, "replica-b", &[])?,
    ]);
    env.create(
        "lead",
        json!({"frames": {"start": 1, "end": BATCHES}, "batchSize": 1, "parallelism": 4}),
    )
    .await?;
    let mut failovers = Vec::new();
    let mut checks = Vec::new();
    for round in 0..2 {
        let want = 8 * (round + 1);
        jobs.wait(2 * MINUTE, &format!("{want} batch Jobs"), |s| {
            s.uids.len() >= want
        })
        .await?;
        checks.push(only_the_leader_writes(&env, &replicas).await?);
        let leader = wait_leader(&env, None).await?;
        replicas.kill(&leader);
        let killed = Instant::now();
        let next = wait_leader(&env, Some(&leader)).await?;
        failovers.push(killed.elapsed());
        println!(
            "leader: {leader} killed, {next} leads after {} ms",
            ms(killed.elapsed())
        );
        // The killed replica comes back, as the standby.
        replicas.restart(&leader)?;
    }
    let rj = env.wait_phase("lead", "Succeeded", 3 * MINUTE).await?;
    checks.push(only_the_leader_writes(&env, &replicas).await?);
    let (twice, seen) = jobs.with(|s| (s.twice(), s.uids.len()));
    let s = status(&rj);
    println!(
        "leader: 2 failovers (lease {LEASE_SECONDS} s) after {:?} ms; standbys checked at {} \
         moments, each 0 writes, the leader's writes then {:?}; {} replica(s) restarted after \
         losing the lease by themselves; {seen} Jobs, {} created twice",
        failovers.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
        checks.len(),
        checks.iter().map(|(w, _)| *w).collect::<Vec<_>>(),
        replicas.revived(),
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
    let replicas = Replicas::new(vec![
        Replica::elected(&env, "replica-a", &[])?,
        Replica::elected(&env, "replica-b", &[])?,
    ]);
    env.create(
        "split",
        json!({
            "frames": {"start": 1, "end": BATCHES}, "batchSize": 1, "parallelism": 4,
            "cleanup": {"policy": "DeleteSucceeded"},
        }),
    )
    .await?;

    // Mid-render, with Jobs being created and deleted.
    jobs.wait(MINUTE, "6 succeeded Jobs deleted", |s| s.deleted >= 6)
        .await?;
    let old = wait_leader(&env, None).await?;
    replicas.with(|all| -> Result<()> {
        let r = all
            .get_mut(&old)
            .ok_or_else(|| anyhow::anyhow!("no {old}"))?;
        // Examined below before anything restarts it.
        r.hold = true;
        r.pause()
    })?;
    let paused = Instant::now();
    let deleted_at_pause = jobs.with(|s| s.deleted);
    let new = wait_leader(&env, Some(&old)).await?;
    let took_over = paused.elapsed();
    // The new leader moves on: what the frozen one remembers is now wrong.
    jobs.wait(MINUTE, "8 more Jobs deleted by the new leader", |s| {
        s.deleted >= deleted_at_pause + 8
    })
    .await?;
    let frozen = paused.elapsed();

    let from = replicas.with(|all| -> Result<u64> {
        let r = all
            .get_mut(&old)
            .ok_or_else(|| anyhow::anyhow!("no {old}"))?;
        let from = r.log_len();
        r.resume()?;
        Ok(from)
    })?;
    let resumed = Instant::now();
    // It learns it lost the lease and exits.
    while !replicas.with(|all| all.get_mut(&old).is_some_and(Replica::exited)) {
        if resumed.elapsed() > Duration::from_secs(30) {
            bail!("the old leader was still running 30 s after SIGCONT");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let exited_after = resumed.elapsed();
    let (stray, lost) = replicas.with(|all| -> Result<_> {
        let r = all
            .get_mut(&old)
            .ok_or_else(|| anyhow::anyhow!("no {old}"))?;
        Ok((
            r.writes_logged_since(from)?,
            r.log_lines_since(from, "lost the lease")?,
        ))
    })?;
    // Back as a standby, as its Deployment would have it.
    replicas.with(|all| -> Result<()> {
        let r = all
            .get_mut(&old)
            .ok_or_else(|| anyhow::anyhow!("no {old}"))?;
        r.hold = false;
        r.restart()
    })?;

    let rj = env.wait_phase("split", "Succeeded", 3 * MINUTE).await?;
    jobs.wait(MINUTE, "every batch Job deleted", |s| {
        s.live.is_empty() && s.deleted >= BATCHES
    })
    .await?;
    let (twice, seen) = jobs.with(|s| (s.twice(), s.uids.len()));
    let s = status(&rj);
    println!(
        "split brain: leader {old} frozen {} ms ({new} leads after {} ms); after SIGCONT the \
         old leader exited in {} ms, logged 'lost the lease' {} time(s) and sent {} write(s): \
         {stray:?}; {seen} Jobs, {} created twice",
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
