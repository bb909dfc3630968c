//! Two replicas with leader election: only the leader reconciles; killing the leader hands the
//! lease to the standby, which finishes the render without duplicating a batch.

use std::collections::BTreeMap;
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams};
use serde_json::json;

use crate::harness::{Env, status, wait_until};

const BATCHES: usize = 40;

fn args(ns: &str, id: &str) -> Vec<String> {
    [
        "--leader-elect",
        "--lease-namespace",
        ns,
        "--lease-seconds",
        "3",
        "--instance",
        id,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("renderfarm-operator")
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
}

#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn standby_takes_over_when_the_leader_dies() -> Result<()> {
    let env = Env::new("leader").await?;
    let api = env.jobs();
    let observer = crate::harness::JobUids::watch(api);

    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &env.ns);
    let mut replicas: BTreeMap<String, Child> = BTreeMap::new();
    for id in ["replica-a", "replica-b"] {
        let a = args(&env.ns, id);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        replicas.insert(id.to_string(), env.spawn_operator(0, &a, &[])?);
    }
    env.create(
        "lead",
        json!({"frames": {"start": 1, "end": BATCHES}, "batchSize": 1, "parallelism": 4}),
    )
    .await?;
    let mut failovers = Vec::new();
    for round in 0..2 {
        let leader = wait_until(Duration::from_secs(60), "a lease holder", || async {
            Ok(holder(&leases).await)
        })
        .await?;
        let jobs = env.jobs();
        let want = 8 * (round + 1);
        wait_until(
            Duration::from_secs(120),
            "the render to progress",
            || async {
                Ok((jobs.list(&ListParams::default()).await?.items.len() >= want).then_some(()))
            },
        )
        .await?;
        let Some(mut child) = replicas.remove(&leader) else {
            bail!("lease held by unknown {leader}")
        };
        let killed = Instant::now();
        let _ = child.kill();
        let _ = child.wait();
        let next = wait_until(
            Duration::from_secs(30),
            "the standby to take the lease",
            || async { Ok(holder(&leases).await.filter(|h| *h != leader)) },
        )
        .await?;
        failovers.push(killed.elapsed());
        eprintln!(
            "leader: {leader} killed, {next} leads after {} ms",
            killed.elapsed().as_millis()
        );
        // The killed replica comes back as the standby.
        let a = args(&env.ns, &leader);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        replicas.insert(leader.clone(), env.spawn_operator(0, &a, &[])?);
    }
    let rj = env
        .wait_phase("lead", "Succeeded", Duration::from_secs(300))
        .await;
    for (_, mut c) in replicas {
        let _ = c.kill();
        let _ = c.wait();
    }
    let rj = rj?;
    let (seen, duplicates) = observer.finish().await?;
    assert!(
        duplicates.is_empty(),
        "batches created twice: {duplicates:?}"
    );
    assert_eq!(seen, BATCHES);
    let s = status(&rj);
    assert_eq!(
        (s.batches.succeeded, s.frames.rendered),
        (BATCHES as i64, BATCHES as i64)
    );
    let max = failovers.iter().max().copied().unwrap_or_default();
    eprintln!(
        "leader: 2 failovers, max {} ms (lease 3 s), 0 duplicates",
        max.as_millis()
    );
    assert!(max < Duration::from_secs(30));
    Ok(())
}
