//! Kueue: batch Jobs queued in LocalQueues, admitted under a ClusterQueue's quota, preempted by
//! higher priority; and a batch Job suspended by someone else is left alone. The Kueue tests
//! need Kueue running against the cluster (`hack/kueue.sh up`, which `hack/test.sh` does).

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use renderfarm::crd::RenderJob;
use serde_json::{Value, json};

use crate::harness::{
    Env, JobUids, SCENARIO_LABEL, apply_object as apply, condition, status, watch_until,
};

const MINUTE: Duration = Duration::from_secs(60);
const QUEUE: &str = "artists";

/// Cluster-scoped objects a test made (ClusterQueues, ResourceFlavors, PriorityClasses),
/// deleted when it ends.
struct ClusterObjects(Vec<String>);

impl Drop for ClusterObjects {
    fn drop(&mut self) {
        for obj in &self.0 {
            let _ = Command::new("kubectl")
                .args(["delete", obj, "--wait=false", "--ignore-not-found"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Fails unless Kueue's API is served: these tests need Kueue itself.
async fn kueue_served(client: &Client) -> Result<()> {
    let gvk = GroupVersionKind::gvk("kueue.x-k8s.io", "v1beta2", "ClusterQueue");
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk));
    api.list(&ListParams::default().limit(1))
        .await
        .context("Kueue is not installed: run `hack/kueue.sh up`")?;
    Ok(())
}

/// A ResourceFlavor and a ClusterQueue of 2 CPUs named `name`, and the LocalQueue [`QUEUE`]
/// in each namespace. `extra` is merged into the ClusterQueue's spec.
async fn queues(client: &Client, name: &str, nss: &[&str], extra: Value) -> Result<ClusterObjects> {
    kueue_served(client).await?;
    let objects = ClusterObjects(vec![
        format!("clusterqueues.kueue.x-k8s.io/{name}"),
        format!("resourceflavors.kueue.x-k8s.io/{name}"),
    ]);
    apply(
        client,
        json!({"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor", "metadata": {"name": name}}),
    )
    .await?;
    let mut spec = json!({
        "namespaceSelector": {},
        "resourceGroups": [{
            "coveredResources": ["cpu", "memory"],
            "flavors": [{"name": name, "resources": [
                {"name": "cpu", "nominalQuota": "2"},
                {"name": "memory", "nominalQuota": "64Gi"},
            ]}],
        }],
    });
    crate::harness::merge(&mut spec, extra);
    apply(
        client,
        json!({"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue", "metadata": {"name": name}, "spec": spec}),
    )
    .await?;
    // Kueue's controller marks a ClusterQueue it can admit to Active: proof that it runs.
    let gvk = GroupVersionKind::gvk("kueue.x-k8s.io", "v1beta2", "ClusterQueue");
    let cqs: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk));
    crate::harness::await_object(
        cqs,
        name,
        Duration::from_secs(30),
        "the ClusterQueue Active (is Kueue running? `hack/kueue.sh up`)",
        |o: Option<&DynamicObject>| {
            o.and_then(|o| o.data["status"]["conditions"].as_array().cloned())
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Active" && c["status"] == "True")
                })
        },
    )
    .await?;
    for ns in nss {
        apply(
            client,
            json!({"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue",
                   "metadata": {"name": QUEUE, "namespace": ns}, "spec": {"clusterQueue": name}}),
        )
        .await?;
    }
    Ok(objects)
}

/// One change of a batch pod, as a watch saw it.
#[derive(Debug, Clone)]
struct PodEvent {
    at: Instant,
    ns: String,
    name: String,
    /// Running, Succeeded, ...; `Gone` once deleted.
    phase: String,
}

/// Every phase change of the batch pods in `nss`, from a watch of all namespaces.
struct PodLog {
    events: Arc<Mutex<Vec<PodEvent>>>,
    task: tokio::task::JoinHandle<()>,
}

impl PodLog {
    fn watch(client: &Client, nss: &[&str]) -> PodLog {
        let api: Api<Pod> = Api::all(client.clone());
        let nss: BTreeSet<String> = nss.iter().map(|s| s.to_string()).collect();
        let events: Arc<Mutex<Vec<PodEvent>>> = Arc::default();
        let record = events.clone();
        let task = tokio::spawn(async move {
            let cfg = watcher::Config::default().labels("app.kubernetes.io/component=render-batch");
            let stream = watcher(api, cfg).default_backoff();
            futures::pin_mut!(stream);
            let mut last: BTreeMap<(String, String), String> = BTreeMap::new();
            while let Ok(Some(event)) = stream.try_next().await {
                let (pod, gone) = match event {
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p) => (p, false),
                    watcher::Event::Delete(p) => (p, true),
                    _ => continue,
                };
                let ns = pod.namespace().unwrap_or_default();
                if !nss.contains(&ns) {
                    continue;
                }
                let phase = if gone {
                    "Gone".to_string()
                } else {
                    pod.status
                        .as_ref()
                        .and_then(|s| s.phase.clone())
                        .unwrap_or_default()
                };
                let key = (ns.clone(), pod.name_any());
                if last.get(&key) == Some(&phase) {
                    continue;
                }
                last.insert(key, phase.clone());
                if let Ok(mut e) = record.lock() {
                    e.push(PodEvent {
                        at: Instant::now(),
                        ns,
                        name: pod.name_any(),
                        phase,
                    });
                }
            }
        });
        PodLog { events, task }
    }

    fn events(&self) -> Vec<PodEvent> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// The most batch pods Running at once.
    fn max_running(&self) -> usize {
        let mut running = BTreeSet::new();
        let mut max = 0;
        for e in self.events() {
            if e.phase == "Running" {
                running.insert((e.ns, e.name));
            } else {
                running.remove(&(e.ns, e.name));
            }
            max = max.max(running.len());
        }
        max
    }

    /// From each batch pod that finished (quota freeing) to the next pod Running, in seconds.
    fn handoffs(&self) -> Vec<f64> {
        let events = self.events();
        events
            .iter()
            .filter(|e| e.phase == "Succeeded")
            .filter_map(|done| {
                events
                    .iter()
                    .find(|e| e.phase == "Running" && e.at > done.at)
                    .map(|next| (next.at - done.at).as_secs_f64())
            })
            .collect()
    }
}

impl Drop for PodLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn slow(env: &Env, ms: u32) -> BTreeMap<&'static str, String> {
    BTreeMap::from([("SCENARIO", env.ns.clone()), ("DELAY_MS", ms.to_string())])
}

/// The operator's API writes so far (Jobs, status, Events), once it is idle.
async fn writes(env: &Env) -> Result<f64> {
    Ok(env.wait_idle().await?.sum("renderfarm_api_writes_total"))
}

fn summary(list: &[f64]) -> String {
    if list.is_empty() {
        return "none".into();
    }
    let mean = list.iter().sum::<f64>() / list.len() as f64;
    let max = list.iter().copied().fold(0.0, f64::max);
    format!("n={} mean={mean:.2}s max={max:.2}s", list.len())
}

/// A ClusterQueue of 2 CPUs shared by two LocalQueues in two namespaces, with fair sharing:
/// two RenderJobs of 1-CPU batches never run more than 2 batch pods together, both progress,
/// both complete, no batch created twice, none failed.
#[tokio::test]
#[ignore = "needs a cluster and Kueue: hack/test.sh"]
async fn two_queues_share_a_two_cpu_quota() -> Result<()> {
    let mut a = Env::new("kq-fair-a").await?;
    let mut b = Env::new("kq-fair-b").await?;
    let cq = format!("rf-{}", a.ns);
    let _objects = queues(
        &a.client,
        &cq,
        &[&a.ns, &b.ns],
        json!({"admissionScope": {"admissionMode": "UsageBasedAdmissionFairSharing"}}),
    )
    .await?;
    let pods = PodLog::watch(&a.client, &[&a.ns, &b.ns]);
    let mut observers = Vec::new();
    for env in [&mut a, &mut b] {
        // 4 s pods: on a loaded machine Kueue's second admission can lag the first by
        // seconds, and two pods must still overlap for the full quota to be seen in use.
        let vars = slow(env, 4000);
        env.stage("slow.yaml", &format!("{}-slow", env.ns), &vars)
            .await?;
        let observer = JobUids::watch(env.jobs());
        observer.synced().await?;
        observers.push(observer);
        env.start_operator()?;
    }
    let spec = |env: &Env| {
        json!({
            "frames": {"start": 1, "end": 12}, "batchSize": 2, "parallelism": 4,
            "queueName": QUEUE,
            "podMetadata": {"labels": {SCENARIO_LABEL: env.ns.clone()}},
        })
    };
    let started = Instant::now();
    a.create("fair", spec(&a)).await?;
    b.create("fair", spec(&b)).await?;

    // More batches than the quota: some wait in the queue, and status says so.
    let queued = a
        .wait_rj("fair", "batches queued", MINUTE, |rj| {
            status(rj).batches.queued > 0
        })
        .await?;
    let progressing = condition(&queued, "Progressing").context("Progressing")?;
    ensure!(
        progressing
            .message
            .contains(&format!("wait for queue {QUEUE}")),
        "{progressing:?}"
    );

    let mut done = Vec::new();
    for env in [&a, &b] {
        let rj = env.wait_phase("fair", "Succeeded", 3 * MINUTE).await?;
        let s = status(&rj);
        ensure!(s.batches.failed == 0 && s.batches.queued == 0, "{s:?}");
        ensure!(s.frames.rendered == 12, "{s:?}");
        done.push(rj);
    }
    println!("both rendered in {:.1}s", started.elapsed().as_secs_f64());
    let max = pods.max_running();
    ensure!(max <= 2, "{max} batch pods ran at once under a 2-CPU quota");
    ensure!(
        max == 2,
        "the quota was never used in full: at most {max} at once"
    );

    // Both progress: each had a batch done before the other's last batch was.
    let events = pods.events();
    let finished = |ns: &str| -> Vec<Instant> {
        events
            .iter()
            .filter(|e| e.ns == ns && e.phase == "Succeeded")
            .map(|e| e.at)
            .collect()
    };
    let (fa, fb) = (finished(&a.ns), finished(&b.ns));
    ensure!(
        fa.len() == 6 && fb.len() == 6,
        "{} and {} batch pods succeeded",
        fa.len(),
        fb.len()
    );
    ensure!(
        fa.first() < fb.last() && fb.first() < fa.last(),
        "one RenderJob ran only after the other had finished"
    );
    let handoffs = pods.handoffs();
    println!("quota freed to next batch Running: {}", summary(&handoffs));

    for (env, observer) in [&a, &b].into_iter().zip(observers) {
        let (jobs, twice) = observer.finish_idle(env).await?;
        ensure!(
            jobs == 6 && twice.is_empty(),
            "{jobs} Jobs, created twice: {twice:?}"
        );
        println!(
            "API writes per batch with Kueue ({}): {:.1}",
            env.ns,
            writes(env).await? / 6.0
        );
    }

    // The same render without a queue, for the writes it takes.
    let mut base = Env::new("kq-base").await?;
    let base_pods = PodLog::watch(&base.client, &[&base.ns]);
    let vars = slow(&base, 1500);
    base.stage("slow.yaml", &format!("{}-slow", base.ns), &vars)
        .await?;
    base.start_operator()?;
    let mut plain = spec(&base);
    plain["queueName"] = Value::Null;
    plain["parallelism"] = json!(2);
    base.create("fair", plain).await?;
    base.wait_phase("fair", "Succeeded", 2 * MINUTE).await?;
    println!(
        "API writes per batch without Kueue: {:.1}",
        writes(&base).await? / 6.0
    );
    println!(
        "without Kueue (parallelism 2), batch done to next batch Running: {}",
        summary(&base_pods.handoffs())
    );
    Ok(())
}

/// A high-priority RenderJob preempts a low one in the same 2-CPU ClusterQueue: the low one's
/// running batches are suspended by Kueue, it shows them queued (not failed), and it completes
/// after the high one, every batch rendered by one Job, none failed.
#[tokio::test]
#[ignore = "needs a cluster and Kueue: hack/test.sh"]
async fn higher_priority_preempts_and_the_preempted_batches_run_again() -> Result<()> {
    let mut env = Env::new("kq-prio").await?;
    let cq = format!("rf-{}", env.ns);
    let mut objects = queues(
        &env.client,
        &cq,
        &[&env.ns],
        json!({"preemption": {"withinClusterQueue": "LowerPriority"}}),
    )
    .await?;
    let (low, high) = (format!("{}-low", env.ns), format!("{}-high", env.ns));
    for (name, value) in [(&low, 100), (&high, 1000)] {
        apply(
            &env.client,
            json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                   "metadata": {"name": name}, "value": value}),
        )
        .await?;
        objects
            .0
            .push(format!("priorityclasses.scheduling.k8s.io/{name}"));
    }
    let vars = slow(&env, 4000);
    env.stage("slow.yaml", &format!("{}-slow", env.ns), &vars)
        .await?;
    let observer = JobUids::watch(env.jobs());
    observer.synced().await?;
    env.start_operator()?;
    let spec = |end: i32, class: &str| {
        json!({
            "frames": {"start": 1, "end": end}, "batchSize": 2, "parallelism": 2,
            "queueName": QUEUE, "priorityClassName": class,
            "podMetadata": {"labels": {SCENARIO_LABEL: env.ns.clone()}},
        })
    };
    env.create("low", spec(8, &low)).await?;
    env.wait_rj("low", "two low batches running", MINUTE, |rj| {
        status(rj).pods.running == 2
    })
    .await?;
    let preempted_at = Instant::now();
    env.create("high", spec(4, &high)).await?;

    // Kueue suspends the low batches that run; the low RenderJob counts them queued.
    let held = env
        .wait_rj("low", "low batches queued after preemption", MINUTE, |rj| {
            let s = status(rj);
            s.batches.queued >= 1 && s.pods.running == 0
        })
        .await?;
    let s = status(&held);
    ensure!(
        s.batches.failed == 0,
        "preempted batches counted as failed: {s:?}"
    );
    ensure!(s.phase.as_str() != "Failed", "{s:?}");
    println!(
        "low preempted {:.1}s after the high one was created: {:?}",
        preempted_at.elapsed().as_secs_f64(),
        condition(&held, "Progressing").map(|c| c.message)
    );

    let high_done = env.wait_phase("high", "Succeeded", 2 * MINUTE).await?;
    let low_done = env.wait_phase("low", "Succeeded", 3 * MINUTE).await?;
    let (h, l) = (status(&high_done), status(&low_done));
    ensure!(
        h.batches.failed == 0 && l.batches.failed == 0,
        "{h:?} {l:?}"
    );
    ensure!(
        l.frames.rendered == 8 && h.frames.rendered == 4,
        "{l:?} {h:?}"
    );
    ensure!(
        l.completion_time > h.completion_time,
        "the low RenderJob finished first: {:?} {:?}",
        l.completion_time,
        h.completion_time
    );
    // Every batch once: one Job each, each succeeded once (the preempted ones resumed, not
    // created again).
    let (jobs, twice) = observer.finish_idle(&env).await?;
    ensure!(
        jobs == 6 && twice.is_empty(),
        "{jobs} Jobs, created twice: {twice:?}"
    );
    for job in env.jobs().list(&ListParams::default()).await? {
        let st = job.status.clone().unwrap_or_default();
        ensure!(st.succeeded == Some(1), "{}: {st:?}", job.name_any());
        println!("{}: failed pods {:?}", job.name_any(), st.failed);
    }
    let metrics = env.wait_idle().await?;
    println!(
        "API writes per batch with Kueue and preemption: {:.1}",
        metrics.sum("renderfarm_api_writes_total") / 6.0
    );
    Ok(())
}

/// A batch Job suspended by someone else (no Kueue here: a plain patch) stays suspended: the
/// operator does not resume it for 30 s and more, does not start another batch in its place,
/// and says in status that it is held; resumed by that someone, the render finishes.
#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn a_job_suspended_by_someone_else_stays_suspended() -> Result<()> {
    let mut env = Env::new("kq-held").await?;
    let vars = slow(&env, 2000);
    env.stage("slow.yaml", &format!("{}-slow", env.ns), &vars)
        .await?;
    let observer = JobUids::watch(env.jobs());
    observer.synced().await?;
    env.start_operator()?;
    env.create(
        "held",
        json!({
            "frames": {"start": 1, "end": 4}, "batchSize": 2, "parallelism": 1,
            "podMetadata": {"labels": {SCENARIO_LABEL: env.ns.clone()}},
        }),
    )
    .await?;
    let job = watch_until(env.jobs(), MINUTE, "the first batch Job", |jobs| {
        jobs.first().map(|j| j.name_any())
    })
    .await?;
    let someone = PatchParams {
        field_manager: Some("someone".into()),
        ..Default::default()
    };
    let suspend = |on: bool| json!({"spec": {"suspend": on}});
    env.jobs()
        .patch(&job, &someone, &Patch::Merge(&suspend(true)))
        .await?;
    let rj = env
        .wait_rj("held", "the held batch counted as queued", MINUTE, |rj| {
            status(rj).batches.queued == 1
        })
        .await?;
    let message = condition(&rj, "Progressing")
        .map(|c| c.message)
        .unwrap_or_default();
    ensure!(message.contains("not by renderfarm"), "{message}");

    let held_since = Instant::now();
    let moved = watch_until(env.jobs(), Duration::from_secs(30), "no change", |jobs| {
        let resumed = jobs
            .iter()
            .any(|j| j.spec.as_ref().and_then(|s| s.suspend) != Some(true));
        (resumed || jobs.len() > 1).then_some(jobs.len())
    })
    .await;
    match moved {
        Ok(n) => bail!("the operator resumed the held Job or started another ({n} Jobs)"),
        Err(e) if e.to_string().contains("timed out") => {}
        Err(e) => return Err(e),
    }
    let rj: RenderJob = env.rjs().get("held").await?;
    let s = status(&rj);
    ensure!(s.batches.queued == 1 && s.batches.failed == 0, "{s:?}");
    println!(
        "held {:.1}s, untouched; Progressing: {message}",
        held_since.elapsed().as_secs_f64()
    );

    env.jobs()
        .patch(&job, &someone, &Patch::Merge(&suspend(false)))
        .await?;
    let rj = env.wait_phase("held", "Succeeded", 2 * MINUTE).await?;
    ensure!(status(&rj).batches.failed == 0);
    let (jobs, twice) = observer.finish_idle(&env).await?;
    ensure!(
        jobs == 2 && twice.is_empty(),
        "{jobs} Jobs, created twice: {twice:?}"
    );
    Ok(())
}

/// Job labels and annotations under the operator's and Kueue's prefixes are refused by the
/// API server with a message that says where the queue goes; others are accepted.
#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn reserved_job_metadata_keys_are_refused() -> Result<()> {
    let env = Env::new("kq-keys").await?;
    for (what, meta) in [
        (
            "labels",
            json!({"labels": {"kueue.x-k8s.io/queue-name": "other"}}),
        ),
        (
            "annotations",
            json!({"annotations": {"renderfarm.io/paused": "true"}}),
        ),
    ] {
        let refused = env
            .create("bad", json!({"jobMetadata": meta}))
            .await
            .err()
            .with_context(|| format!("reserved {what} accepted"))?;
        ensure!(
            refused
                .to_string()
                .contains("set the queue with spec.queueName"),
            "{refused}"
        );
    }
    env.create(
        "good",
        json!({"jobMetadata": {"labels": {"team": "fx"}, "annotations": {"cost-centre": "shot-010"}}}),
    )
    .await?;
    Ok(())
}

/// Pausing a queued render: its unfinished batch Jobs are deleted (Kueue would resume an
/// admitted Job it found suspended) and their quota freed; no Job exists while it is paused;
/// resumed, it finishes with every batch succeeded and none failed.
#[tokio::test]
#[ignore = "needs a cluster and Kueue: hack/test.sh"]
async fn pausing_a_queued_render_gives_its_quota_back() -> Result<()> {
    let mut env = Env::new("kq-pause").await?;
    let cq = format!("rf-{}", env.ns);
    let _objects = queues(&env.client, &cq, &[&env.ns], json!({})).await?;
    let vars = slow(&env, 3000);
    env.stage("slow.yaml", &format!("{}-slow", env.ns), &vars)
        .await?;
    env.start_operator()?;
    env.create(
        "pause",
        json!({
            "frames": {"start": 1, "end": 8}, "batchSize": 2, "parallelism": 3,
            "queueName": QUEUE,
            "podMetadata": {"labels": {SCENARIO_LABEL: env.ns.clone()}},
        }),
    )
    .await?;
    env.wait_rj("pause", "two batches running, one queued", MINUTE, |rj| {
        let s = status(rj);
        s.pods.running == 2 && s.batches.queued == 1
    })
    .await?;
    let suspend = |on: bool| json!({"spec": {"suspend": on}});
    env.rjs()
        .patch(
            "pause",
            &PatchParams::default(),
            &Patch::Merge(&suspend(true)),
        )
        .await?;
    watch_until(env.jobs(), MINUTE, "every unfinished Job deleted", |jobs| {
        jobs.iter()
            .all(|j| {
                j.status
                    .as_ref()
                    .and_then(|s| s.completion_time.as_ref())
                    .is_some()
            })
            .then_some(())
    })
    .await?;
    let rj = env
        .wait_rj("pause", "Suspended with no batch active", MINUTE, |rj| {
            let s = status(rj);
            s.phase.as_str() == "Suspended" && s.batches.active == 0
        })
        .await?;
    let s = status(&rj);
    ensure!(s.batches.failed == 0 && s.batches.queued == 0, "{s:?}");
    // The quota is back: the ClusterQueue reserves nothing for it.
    let gvk = GroupVersionKind::gvk("kueue.x-k8s.io", "v1beta2", "ClusterQueue");
    let cqs: Api<DynamicObject> = Api::all_with(env.client.clone(), &ApiResource::from_gvk(&gvk));
    crate::harness::await_object(
        cqs,
        &cq,
        MINUTE,
        "the ClusterQueue reserving nothing",
        |o: Option<&DynamicObject>| {
            o.is_some_and(|o| o.data["status"]["reservingWorkloads"].as_i64() == Some(0))
        },
    )
    .await?;
    let unfinished = env
        .jobs()
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|j| {
            j.status
                .as_ref()
                .and_then(|s| s.completion_time.as_ref())
                .is_none()
        })
        .count();
    ensure!(
        unfinished == 0,
        "{unfinished} unfinished Jobs left while paused"
    );
    env.rjs()
        .patch(
            "pause",
            &PatchParams::default(),
            &Patch::Merge(&suspend(false)),
        )
        .await?;
    let rj = env.wait_phase("pause", "Succeeded", 2 * MINUTE).await?;
    let s = status(&rj);
    ensure!(s.batches.failed == 0 && s.frames.rendered == 8, "{s:?}");
    Ok(())
}
