//! Lifecycle: suspend and resume, deletion, and a crashing operator.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;

use crate::harness::{Env, SCENARIO_LABEL, status, wait_until};

const MINUTE: Duration = Duration::from_secs(60);

fn slow(env: &Env) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("SCENARIO", env.ns.clone()),
        ("DELAY_MS", "3000".to_string()),
    ])
}

/// 6. Suspend mid-render: no new Jobs, running Jobs suspended, phase Suspended; resume finishes.
#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn suspend_and_resume() -> Result<()> {
    let mut env = Env::new("suspend").await?;
    let vars = slow(&env);
    env.stage("slow.yaml", &format!("{}-slow", env.ns), &vars)
        .await?;
    env.start_operator()?;
    env.create(
        "sus",
        json!({
            "frames": {"start": 1, "end": 12}, "batchSize": 2, "parallelism": 2,
            "podMetadata": {"labels": {SCENARIO_LABEL: env.ns.clone()}},
        }),
    )
    .await?;
    let jobs = env.jobs();
    wait_until(MINUTE, "two batch Jobs", || async {
        Ok((jobs.list(&ListParams::default()).await?.items.len() >= 2).then_some(()))
    })
    .await?;

    env.rjs()
        .patch(
            "sus",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": true}})),
        )
        .await?;
    let rj = env.wait_phase("sus", "Suspended", MINUTE).await?;
    assert_eq!(
        crate::harness::condition(&rj, "Suspended").map(|c| c.status),
        Some("True".into())
    );
    let suspended_jobs = wait_until(MINUTE, "unfinished Jobs suspended", || async {
        let list = jobs.list(&ListParams::default()).await?.items;
        let unfinished: Vec<_> = list
            .iter()
            .filter(|j| {
                j.status
                    .as_ref()
                    .and_then(|s| s.completion_time.as_ref())
                    .is_none()
            })
            .collect();
        let all = unfinished
            .iter()
            .all(|j| j.spec.as_ref().and_then(|s| s.suspend) == Some(true));
        Ok(all.then_some(list.len()))
    })
    .await?;
    // Nothing new starts while suspended.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        jobs.list(&ListParams::default()).await?.items.len(),
        suspended_jobs,
        "a Job was created while suspended"
    );
    let running = env
        .pods()
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .count();
    assert_eq!(running, 0, "pods still running while suspended");

    env.rjs()
        .patch(
            "sus",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": false}})),
        )
        .await?;
    let rj = env.wait_phase("sus", "Succeeded", 3 * MINUTE).await?;
    assert_eq!(status(&rj).batches.succeeded, 6);
    assert_eq!(jobs.list(&ListParams::default()).await?.items.len(), 6);
    let events = env.event_reasons()?;
    assert!(
        events.contains("Suspended") && events.contains("Resumed"),
        "{events}"
    );
    Ok(())
}

/// 7. Deleting a RenderJob removes its Jobs and pods (the real garbage collector).
#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn deleting_a_renderjob_collects_its_jobs_and_pods() -> Result<()> {
    let mut env = Env::new("gc").await?;
    let vars = slow(&env);
    env.stage("slow.yaml", &format!("{}-slow", env.ns), &vars)
        .await?;
    env.start_operator()?;
    env.create(
        "gc",
        json!({
            "frames": {"start": 1, "end": 6}, "batchSize": 2, "parallelism": 3,
            "podMetadata": {"labels": {SCENARIO_LABEL: env.ns.clone()}},
        }),
    )
    .await?;
    let (jobs, pods) = (env.jobs(), env.pods());
    wait_until(MINUTE, "three pods", || async {
        Ok((pods.list(&ListParams::default()).await?.items.len() >= 3).then_some(()))
    })
    .await?;
    env.rjs()
        .delete("gc", &kube::api::DeleteParams::foreground())
        .await?;
    // Foreground deletion: the RenderJob goes last, once the garbage collector removed its
    // Jobs and their pods.
    let rjs = env.rjs();
    wait_until(2 * MINUTE, "no Jobs, pods or RenderJob left", || async {
        let (j, p) = (
            jobs.list(&ListParams::default()).await?.items.len(),
            pods.list(&ListParams::default()).await?.items.len(),
        );
        let gone = rjs.get_opt("gc").await?.is_none();
        Ok((j == 0 && p == 0 && gone).then_some(()))
    })
    .await?;
    Ok(())
}

/// 9. SIGKILL the operator mid-render, start it again: no batch is created twice, the render
/// completes, status is exact.
#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn operator_killed_mid_render_duplicates_nothing() -> Result<()> {
    let mut env = Env::new("crash").await?;
    let api = env.jobs();
    // Every Job UID ever seen, by name: a duplicate would be a second UID for a name, or a
    // name outside the plan.
    let observer = crate::harness::JobUids::watch(api);
    env.start_operator()?;
    env.create(
        "crash",
        json!({"frames": {"start": 1, "end": 20}, "batchSize": 1, "parallelism": 4}),
    )
    .await?;
    let jobs = env.jobs();
    let mut kills = 0;
    for target in [3usize, 8, 14] {
        wait_until(2 * MINUTE, "more Jobs", || async {
            Ok((jobs.list(&ListParams::default()).await?.items.len() >= target).then_some(()))
        })
        .await?;
        env.kill_operator();
        kills += 1;
        tokio::time::sleep(Duration::from_millis(700)).await;
        env.start_operator()?;
    }
    let rj = env.wait_phase("crash", "Succeeded", 3 * MINUTE).await?;
    let s = status(&rj);
    assert_eq!(
        (s.batches.succeeded, s.batches.total, s.frames.rendered),
        (20, 20, 20)
    );
    let (seen, twice) = observer.finish().await?;
    assert!(twice.is_empty(), "batches created twice: {twice:?}");
    assert_eq!(seen, 20);
    assert_eq!(env.job_names().await?.len(), 20);
    eprintln!("operator killed {kills} times; 20 batches, 0 duplicates");
    Ok(())
}
