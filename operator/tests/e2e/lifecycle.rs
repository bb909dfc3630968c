//! Lifecycle: suspend and resume, deletion, and a crashing operator.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use futures::TryStreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use renderfarm::crd::RenderJob;
use serde_json::json;

use crate::harness::{
    Env, JobUids, SCENARIO_LABEL, await_object, resource_version, status, watch_until,
};

const MINUTE: Duration = Duration::from_secs(60);

fn slow(env: &Env) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("SCENARIO", env.ns.clone()),
        ("DELAY_MS", "3000".to_string()),
    ])
}

fn unfinished(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.completion_time.as_ref())
        .is_none()
}

fn suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend) == Some(true)
}

fn running(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

fn reasons(env: &Env) -> Result<BTreeSet<String>> {
    Ok(env
        .event_reasons()?
        .lines()
        .skip(1)
        .map(|l| l.trim().to_string())
        .collect())
}

/// 6. Suspend mid-render: running Jobs suspended, their pods stopped, phase Suspended, and no
/// Job created for as long as the render stays suspended; resume finishes it, the suspended
/// Jobs resumed rather than created again.
#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn suspend_and_resume() -> Result<()> {
    let mut env = Env::new("suspend").await?;
    let vars = slow(&env);
    env.stage("slow.yaml", &format!("{}-slow", env.ns), &vars)
        .await?;
    let observer = JobUids::watch(env.jobs());
    observer.synced().await?;
    env.start_operator()?;
    env.create(
        "sus",
        json!({
            "frames": {"start": 1, "end": 12}, "batchSize": 2, "parallelism": 2,
            "podMetadata": {"labels": {SCENARIO_LABEL: env.ns.clone()}},
        }),
    )
    .await?;
    watch_until(env.jobs(), MINUTE, "two batch Jobs", |jobs| {
        (jobs.len() >= 2).then_some(())
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
    // The status that says Suspended: from here on no Job may be created.
    let acknowledged = resource_version(&rj)?;
    assert_eq!(
        crate::harness::condition(&rj, "Suspended").map(|c| c.status),
        Some("True".into())
    );
    // Every unfinished Job suspended, and there is at least one: with 3 s pods the two first
    // batches are still running when the suspension comes.
    let suspended_jobs = watch_until(env.jobs(), MINUTE, "unfinished Jobs suspended", |jobs| {
        let open: Vec<&&Job> = jobs.iter().filter(|j| unfinished(j)).collect();
        (!open.is_empty() && open.iter().all(|j| suspended(j))).then_some(open.len())
    })
    .await?;
    // The Job controller stops a suspended Job's pods.
    watch_until(env.pods(), MINUTE, "no batch pod running", |pods| {
        (!pods.iter().any(|p| running(p))).then_some(())
    })
    .await?;
    // Suspended for as long as the operator has anything to react to: until it is idle.
    let window = Instant::now();
    env.wait_idle().await?;
    let still = env.rjs().get("sus").await?;
    assert_eq!(status(&still).phase.as_str(), "Suspended");
    let during = observer.created_after(acknowledged);
    assert!(
        during.is_empty(),
        "Jobs created while suspended: {:?}",
        during.iter().map(|j| &j.name).collect::<Vec<_>>()
    );
    let before = observer.seen().len();
    println!(
        "suspend: {suspended_jobs} unfinished Jobs suspended, {before} Jobs in all; no Job \
         created in {:.1} s suspended (operator idle)",
        window.elapsed().as_secs_f64()
    );

    env.rjs()
        .patch(
            "sus",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": false}})),
        )
        .await?;
    let rj = env.wait_phase("sus", "Succeeded", 3 * MINUTE).await?;
    assert_eq!(status(&rj).batches.succeeded, 6);
    let (seen, twice) = observer.finish_idle(&env).await?;
    assert!(twice.is_empty(), "batches created twice: {twice:?}");
    assert_eq!(seen, 6);
    assert_eq!(env.job_names().await?.len(), 6);
    let events = reasons(&env)?;
    assert!(
        events.contains("Suspended") && events.contains("Resumed"),
        "{events:?}"
    );
    Ok(())
}

/// The resourceVersion at which the RenderJob with `uid` started to go away: the write that
/// set its deletion timestamp (foreground deletion) or its removal (background), from a
/// watch; resolves once the watch has listed, to a task that yields the version.
async fn deletion_version(
    api: Api<RenderJob>,
    uid: String,
) -> Result<tokio::task::JoinHandle<Result<u64>>> {
    let (listed_tx, listed) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let stream = watcher(api, watcher::Config::default()).default_backoff();
        futures::pin_mut!(stream);
        let mut listed_tx = Some(listed_tx);
        while let Some(event) = stream.try_next().await? {
            match event {
                watcher::Event::InitDone => {
                    if let Some(tx) = listed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                watcher::Event::Apply(rj) | watcher::Event::InitApply(rj)
                    if rj.uid().as_deref() == Some(&uid)
                        && rj.metadata.deletion_timestamp.is_some() =>
                {
                    return resource_version(&rj);
                }
                watcher::Event::Delete(rj) if rj.uid().as_deref() == Some(&uid) => {
                    return resource_version(&rj);
                }
                _ => {}
            }
        }
        bail!("the RenderJob watch ended")
    });
    tokio::time::timeout(Duration::from_secs(30), listed)
        .await
        .context("the RenderJob watch did not list within 30 s")??;
    Ok(task)
}

/// A finalizer the test puts on Jobs to keep them while they are being deleted.
const HOLD: &str = "e2e.renderfarm.io/hold";

/// Jobs held by [`HOLD`]; let go on drop, however the test ends (a namespace with a held Job
/// would never go).
struct Held {
    ns: String,
    names: Vec<String>,
}

impl Drop for Held {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = std::process::Command::new("kubectl")
                .args(["patch", "job", name, "-n", &self.ns, "--type", "merge"])
                .args(["-p", r#"{"metadata":{"finalizers":null}}"#])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// Eight batches at parallelism 2 with 3 s pods, two of them running: six are still to be
/// created when the RenderJob is deleted.
const GC_BATCHES: usize = 8;

async fn start_gc_render(env: &mut Env, name: &str) -> Result<()> {
    env.create(
        name,
        json!({
            "frames": {"start": 1, "end": GC_BATCHES * 2}, "batchSize": 2, "parallelism": 2,
            "podMetadata": {"labels": {SCENARIO_LABEL: env.ns.clone()}},
        }),
    )
    .await?;
    Ok(())
}

async fn two_pods_running(env: &Env) -> Result<()> {
    watch_until(env.pods(), MINUTE, "two batch pods running", |pods| {
        (pods.iter().filter(|p| running(p)).count() >= 2).then_some(())
    })
    .await
}

async fn everything_gone(env: &Env, name: &str) -> Result<()> {
    await_object(
        env.rjs(),
        name,
        2 * MINUTE,
        "the RenderJob gone",
        |rj: Option<&RenderJob>| rj.is_none(),
    )
    .await?;
    watch_until(env.jobs(), 2 * MINUTE, "no Jobs left", |jobs| {
        jobs.is_empty().then_some(())
    })
    .await?;
    watch_until(env.pods(), 2 * MINUTE, "no pods left", |pods| {
        pods.is_empty().then_some(())
    })
    .await
}

/// `0-3,5` → {0, 1, 2, 3, 5}: the status's `succeededBatches`.
fn decode_ranges(ranges: &str) -> BTreeSet<u32> {
    ranges
        .split(',')
        .filter_map(|r| {
            let (a, b) = r.split_once('-').unwrap_or((r, r));
            Some(a.trim().parse::<u32>().ok()?..=b.trim().parse::<u32>().ok()?)
        })
        .flatten()
        .collect()
}

fn names(jobs: &[crate::harness::SeenJob]) -> Vec<&str> {
    jobs.iter().map(|j| j.name.as_str()).collect()
}

/// 7. Deleting a RenderJob mid-render (foreground): the operator creates no Job after the
/// delete, though batches were left to create, and the real garbage collector removes its
/// Jobs and pods before the RenderJob itself goes.
#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn deleting_a_renderjob_collects_its_jobs_and_pods() -> Result<()> {
    let mut env = Env::new("gc").await?;
    let vars = slow(&env);
    env.stage("slow.yaml", &format!("{}-slow", env.ns), &vars)
        .await?;
    let observer = JobUids::watch(env.jobs());
    observer.synced().await?;
    env.start_operator()?;
    start_gc_render(&mut env, "gc").await?;
    two_pods_running(&env).await?;

    let uid = env.rjs().get("gc").await?.uid().context("no uid")?;
    let deletion = deletion_version(env.rjs(), uid).await?;
    let deleted = Instant::now();
    let answer = env.rjs().delete("gc", &DeleteParams::foreground()).await?;
    // Foreground: the RenderJob stays, with a deletion timestamp, until its Jobs are gone.
    let being_deleted = answer
        .left()
        .context("a foreground delete answered with a Status, not the RenderJob")?;
    ensure!(being_deleted.metadata.deletion_timestamp.is_some());
    let deleted_at = tokio::time::timeout(MINUTE, deletion).await???;
    everything_gone(&env, "gc").await?;
    let gone_after = deleted.elapsed();
    // Until the operator has nothing left to do: a reconcile of the RenderJob it still held
    // would show as a Job apply.
    let idle = env.wait_idle().await?;
    let late = observer.created_after(deleted_at);
    let seen = observer.stop_after(Duration::ZERO).await?;
    let applies = idle.value(
        "renderfarm_api_writes_total",
        &[("verb", "apply"), ("resource", "jobs")],
    );
    println!(
        "delete (foreground): {} of {GC_BATCHES} batch Jobs existed at the delete, {} created \
         after it; RenderJob, Jobs and pods gone {:.1} s after the delete; operator Job \
         applies {applies}",
        seen.len() - late.len(),
        late.len(),
        gone_after.as_secs_f64()
    );
    assert!(
        late.is_empty(),
        "Jobs created after the delete: {:?}",
        names(&late)
    );
    ensure!(
        seen.len() < GC_BATCHES,
        "all {GC_BATCHES} batches were created before the delete: nothing was left to test"
    );
    assert_eq!(
        applies,
        seen.len() as f64,
        "Job applies: one per Job that existed, none after the delete"
    );
    Ok(())
}

/// 7b. Background deletion, and the same name created again at once: the new RenderJob
/// renders every batch with Jobs of its own, none of the old RenderJob's Jobs (same names,
/// still being collected) is taken over or counted, and none is created after the delete.
#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn background_delete_then_same_name_renders_afresh() -> Result<()> {
    let mut env = Env::new("gcbg").await?;
    let vars = slow(&env);
    env.stage("slow.yaml", &format!("{}-slow", env.ns), &vars)
        .await?;
    let observer = JobUids::watch(env.jobs());
    observer.synced().await?;
    env.start_operator()?;
    start_gc_render(&mut env, "again").await?;
    two_pods_running(&env).await?;

    let old_uid = env.rjs().get("again").await?.uid().context("no uid")?;
    // The old Jobs stay (deleting, as under a busy garbage collector) until the test lets
    // them go: the new RenderJob meets Jobs of its own names that are not its own.
    let held = Held {
        ns: env.ns.clone(),
        names: env.job_names().await?,
    };
    for name in &held.names {
        env.jobs()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": [HOLD]}})),
            )
            .await?;
    }
    let deletion = deletion_version(env.rjs(), old_uid.clone()).await?;
    env.rjs()
        .delete("again", &DeleteParams::background())
        .await?;
    // At once, with the old RenderJob's Jobs, named as the new ones will be, still there.
    let new = {
        let started = Instant::now();
        loop {
            match start_gc_render(&mut env, "again").await {
                Ok(_) => break,
                // The old one may take a moment to go.
                Err(e) if started.elapsed() < Duration::from_secs(10) => {
                    eprintln!("create again: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e),
            }
        }
        env.rjs().get("again").await?
    };
    let new_uid = new.uid().context("no uid")?;
    let created_at = resource_version(&new)?;
    let deleted_at = tokio::time::timeout(MINUTE, deletion).await???;

    // While the old Jobs are held: the operator neither takes them over nor counts them.
    env.wait_idle().await?;
    let mut problems = Vec::new();
    let mut taken_over = Vec::new();
    for name in &held.names {
        let job = env.jobs().get(name).await?;
        let owners: Vec<&str> = job
            .owner_references()
            .iter()
            .map(|o| o.uid.as_str())
            .collect();
        if owners != [old_uid.as_str()] {
            taken_over.push(name.clone());
            problems.push(format!(
                "held Job {name} of the old RenderJob taken over: owners {owners:?}, old {old_uid}, new {new_uid}"
            ));
        }
    }
    // Batches whose names the old Jobs hold cannot have succeeded for the new RenderJob yet.
    let held_batches: BTreeSet<u32> = {
        let mut b = BTreeSet::new();
        for name in &held.names {
            let job = env.jobs().get(name).await?;
            if let Some(i) = job
                .labels()
                .get("renderfarm.io/batch")
                .and_then(|i| i.parse().ok())
            {
                b.insert(i);
            }
        }
        b
    };
    let meanwhile = status(&env.rjs().get("again").await?);
    let counted: BTreeSet<u32> =
        decode_ranges(meanwhile.succeeded_batches.as_deref().unwrap_or(""))
            .intersection(&held_batches)
            .copied()
            .collect();
    if !counted.is_empty() {
        problems.push(format!(
            "the new RenderJob counted batches {counted:?} as succeeded while only the old \
             RenderJob's Jobs of those names existed (status: {} succeeded, {:?})",
            meanwhile.batches.succeeded, meanwhile.succeeded_batches
        ));
    }
    // Let them go.
    let held_names = held.names.clone();
    drop(held);

    let rj = env.wait_phase("again", "Succeeded", 3 * MINUTE).await?;
    let idle = env.wait_idle().await?;
    let seen = observer.stop_after(Duration::ZERO).await?;
    let old: Vec<_> = seen
        .iter()
        .filter(|j| j.owner.as_deref() == Some(&old_uid))
        .cloned()
        .collect();
    let fresh: Vec<_> = seen
        .iter()
        .filter(|j| j.owner.as_deref() == Some(&new_uid))
        .cloned()
        .collect();
    let old_late: Vec<_> = old
        .iter()
        .filter(|j| j.first_version > deleted_at)
        .cloned()
        .collect();
    let old_uids: BTreeSet<&str> = old.iter().map(|j| j.uid.as_str()).collect();
    let now: Vec<Job> = env.jobs().list(&ListParams::default()).await?.items;
    let s = status(&rj);
    println!(
        "delete (background) and create again: {} old Jobs ({:?} held while the new RenderJob \
         started, taken over: {taken_over:?}), {} created after the delete; new RenderJob: {} \
         Jobs of its own, {} Jobs at the end; operator Job applies {}",
        old.len(),
        held_names,
        old_late.len(),
        fresh.len(),
        now.len(),
        idle.value(
            "renderfarm_api_writes_total",
            &[("verb", "apply"), ("resource", "jobs")]
        ),
    );

    if !old_late.is_empty() {
        problems.push(format!(
            "old Jobs created after the delete: {:?}",
            names(&old_late)
        ));
    }
    let strangers: Vec<_> = seen
        .iter()
        .filter(|j| j.owner.as_deref() != Some(&old_uid) && j.owner.as_deref() != Some(&new_uid))
        .collect();
    if !strangers.is_empty() {
        problems.push(format!("Jobs of neither RenderJob: {strangers:?}"));
    }
    // Every batch of the new RenderJob has a Job created for it, after it was created.
    let fresh_names: BTreeSet<&str> = fresh.iter().map(|j| j.name.as_str()).collect();
    if (fresh.len(), fresh_names.len()) != (GC_BATCHES, GC_BATCHES) {
        problems.push(format!(
            "new Jobs: {:?}, want one for each of the {GC_BATCHES} batches",
            names(&fresh)
        ));
    }
    let stale: Vec<_> = fresh
        .iter()
        .filter(|j| j.first_version <= created_at)
        .collect();
    if !stale.is_empty() {
        problems.push(format!("new Jobs older than the new RenderJob: {stale:?}"));
    }
    // And what is left is only the new RenderJob's, none of the old taken over.
    if now.len() != GC_BATCHES {
        problems.push(format!("{} Jobs at the end, want {GC_BATCHES}", now.len()));
    }
    for j in &now {
        let uid = j.uid().unwrap_or_default();
        let owner = j
            .owner_references()
            .iter()
            .find(|o| o.controller == Some(true))
            .map(|o| o.uid.clone());
        if old_uids.contains(uid.as_str()) || owner.as_deref() != Some(new_uid.as_str()) {
            problems.push(format!(
                "Job {} at the end: uid {uid} (old: {}), owner {owner:?}",
                j.name_any(),
                old_uids.contains(uid.as_str())
            ));
        }
    }
    let counts = (
        s.batches.total,
        s.batches.succeeded,
        s.batches.failed,
        s.frames.rendered,
        s.frames.total,
    );
    let want = (GC_BATCHES as i64, GC_BATCHES as i64, 0, 16, 16);
    if counts != want || s.succeeded_batches.as_deref() != Some("0-7") {
        problems.push(format!(
            "status (total, succeeded, failed, frames rendered, frames total) {counts:?}, \
             succeeded {:?}; want {want:?}, \"0-7\"",
            s.succeeded_batches
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
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
    let mut kills = 0;
    for target in [3usize, 8, 14] {
        watch_until(env.jobs(), 2 * MINUTE, &format!("{target} Jobs"), |jobs| {
            (jobs.len() >= target).then_some(())
        })
        .await?;
        env.kill_operator();
        kills += 1;
        // Down for a moment, as a crashed pod is before its restart.
        tokio::time::sleep(Duration::from_millis(700)).await;
        env.start_operator()?;
    }
    let rj = env.wait_phase("crash", "Succeeded", 3 * MINUTE).await?;
    let s = status(&rj);
    assert_eq!(
        (s.batches.succeeded, s.batches.total, s.frames.rendered),
        (20, 20, 20)
    );
    let (seen, twice) = observer.finish_idle(&env).await?;
    assert!(twice.is_empty(), "batches created twice: {twice:?}");
    assert_eq!(seen, 20);
    assert_eq!(env.job_names().await?.len(), 20);
    eprintln!("operator killed {kills} times; 20 batches, 0 duplicates");
    Ok(())
}
