//! Node loss: a node running batch pods goes away for good. Its pods are garbage-collected by
//! the control plane with a `DisruptionTarget` condition, the Jobs start them again on another
//! node, and the render counts no failure and duplicates nothing.
//!
//! The test registers two kwok nodes of its own (a label and a taint keep every other test's
//! pods off them) and deletes one: the shared nodes are never touched. The pods on the lost node
//! stay Running, as pods of a dead kubelet do, because no Stage completes them: the test's slow
//! Stage is created only after the node is gone (kwok stops playing Stages for the pods of a
//! node it no longer has, except ones it already scheduled). The control plane's pod garbage
//! collector notices pods bound to a Node that no longer exists, waits out its 40 s quarantine,
//! marks them Failed with `DisruptionTarget` (reason `DeletionByPodGC`) and deletes them; the
//! Job's podFailurePolicy ignores that failure.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::harness::{Env, JobUids, SCENARIO_LABEL, await_object, status, watch_until};

const MINUTE: Duration = Duration::from_secs(60);
/// Label and taint that keep a test's nodes to itself.
const POOL: &str = "renderfarm.io/e2e-pool";
const BATCHES: i64 = 8;

/// Nodes this test registered; deleted again however the test ends.
struct OwnNodes {
    api: Api<Node>,
    names: Vec<String>,
}

impl OwnNodes {
    /// A kwok node (kwok manages nodes with the `kwok.x-k8s.io/node: fake` annotation) in the
    /// pool `pool`, tainted so that only pods tolerating the pool land on it; waits until Ready.
    async fn register(&mut self, name: &str, pool: &str) -> Result<()> {
        let node: Node = serde_json::from_value(json!({
            "metadata": {
                "name": name,
                "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    POOL: pool, "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                },
            },
            "spec": {"taints": [{"key": POOL, "value": pool, "effect": "NoSchedule"}]},
            "status": {
                "allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110"},
                "capacity": {"cpu": "32", "memory": "128Gi", "pods": "110"},
            },
        }))?;
        self.names.push(name.to_string());
        self.api.create(&PostParams::default(), &node).await?;
        await_object(
            self.api.clone(),
            name,
            MINUTE,
            &format!("node {name} Ready"),
            |node: Option<&Node>| {
                node.and_then(|n| n.status.as_ref()?.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            },
        )
        .await
        .map(|_| ())
    }
}

impl Drop for OwnNodes {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = std::process::Command::new("kubectl")
                .args(["delete", "node", name, "--ignore-not-found", "--wait=false"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn node_of(p: &Pod) -> &str {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

fn batch_of(p: &Pod) -> Option<u32> {
    p.labels().get("renderfarm.io/batch")?.parse().ok()
}

/// The reason of a pod's `DisruptionTarget=True` condition, if it has one.
fn disruption(p: &Pod) -> Option<String> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "DisruptionTarget" && c.status == "True")
        .map(|c| c.reason.clone().unwrap_or_default())
}

/// Every pod state seen in the namespace, by pod name: the last DisruptionTarget reason seen.
/// Garbage-collected pods vanish quickly, so a watch catches what polling could miss.
fn watch_disruptions(
    client: Client,
    ns: &str,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<BTreeMap<String, String>>,
) {
    use futures::TryStreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let api: Api<Pod> = Api::namespaced(client, ns);
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut seen = BTreeMap::new();
        let stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .touched_objects();
        futures::pin_mut!(stream);
        loop {
            tokio::select! {
                pod = stream.try_next() => match pod {
                    Ok(Some(pod)) => {
                        if let Some(reason) = disruption(&pod) {
                            seen.insert(pod.name_any(), reason);
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {}
                },
                _ = &mut stopped => break,
            }
        }
        seen
    });
    (stop, task)
}

#[tokio::test]
#[ignore = "needs a cluster with kwok: hack/test.sh"]
async fn lost_node_batches_rerun_elsewhere_without_failures() -> Result<()> {
    let mut env = Env::new("nodeloss").await?;
    let pool = env.ns.clone();
    let (lost, spare) = (format!("{pool}-a"), format!("{pool}-b"));
    let mut nodes = OwnNodes {
        api: Api::all(env.client.clone()),
        names: Vec::new(),
    };
    // Only the node to be lost exists at first, so the first wave of batches runs on it.
    nodes.register(&lost, &pool).await?;

    let observer = JobUids::watch(env.jobs());
    observer.synced().await?;
    let (stop_disruptions, disruptions) = watch_disruptions(env.client.clone(), &env.ns);
    env.start_operator()?;
    env.create(
        "nl",
        json!({
            "frames": {"start": 1, "end": BATCHES * 2}, "batchSize": 2, "parallelism": 4,
            "backoffLimit": 0,
            "nodeSelector": {POOL: pool},
            "tolerations": [{"key": POOL, "operator": "Equal", "value": pool, "effect": "NoSchedule"}],
            "podMetadata": {"labels": {SCENARIO_LABEL: env.ns.clone()}},
        }),
    )
    .await?;

    let on_lost: Vec<Pod> = watch_until(
        env.pods(),
        MINUTE,
        "four batch pods Running on the node",
        |list| {
            let running: Vec<Pod> = list
                .iter()
                .filter(|p| node_of(p) == lost && phase(p) == "Running")
                .map(|p| (*p).clone())
                .collect();
            (running.len() == 4).then_some(running)
        },
    )
    .await?;
    let lost_batches: BTreeSet<u32> = on_lost.iter().filter_map(batch_of).collect();
    let lost_pods: BTreeSet<String> = on_lost.iter().map(|p| p.name_any()).collect();
    assert_eq!(lost_batches.len(), 4, "one pod per batch: {lost_pods:?}");

    // A node for the batches to go to, then the node goes away.
    nodes.register(&spare, &pool).await?;
    nodes.api.delete(&lost, &DeleteParams::default()).await?;
    let node_lost = Instant::now();
    await_object(
        nodes.api.clone(),
        &lost,
        MINUTE,
        "the lost Node object gone",
        |n: Option<&Node>| n.is_none(),
    )
    .await?;
    // From now on kwok runs batch pods (on the spare node) for two seconds, then they succeed.
    let vars = BTreeMap::from([
        ("SCENARIO", env.ns.clone()),
        ("DELAY_MS", "2000".to_string()),
    ]);
    env.stage("slow.yaml", &format!("{}-slow", env.ns), &vars)
        .await?;

    // Every lost batch running again on another node: the pod garbage collector waits 40 s
    // before it deletes the pods of a vanished node and checks every 20 s.
    let rerun = watch_until(
        env.pods(),
        Duration::from_secs(100),
        "every lost batch running again on another node",
        |list| {
            let again: BTreeSet<u32> = list
                .iter()
                .filter(|p| node_of(p) == spare && matches!(phase(p), "Running" | "Succeeded"))
                .filter_map(|p| batch_of(p))
                .filter(|b| lost_batches.contains(b))
                .collect();
            (again == lost_batches).then(|| node_lost.elapsed())
        },
    )
    .await?;

    let rj = env.wait_phase("nl", "Succeeded", 2 * MINUTE).await?;
    let (seen, duplicates) = observer.finish_idle(&env).await?;
    let _ = stop_disruptions.send(());
    let disrupted = disruptions.await?;
    let s = status(&rj);

    // What the Jobs themselves counted as failed pods (podFailurePolicy Ignore: nothing).
    let mut job_failures = 0;
    for job in env.jobs().list(&ListParams::default()).await?.items {
        job_failures += job.status.and_then(|s| s.failed).unwrap_or(0);
    }
    let events = env.event_reasons()?;
    let batch_failed_events = events.lines().filter(|l| l.trim() == "BatchFailed").count();
    let reasons: BTreeSet<&str> = lost_pods
        .iter()
        .filter_map(|p| disrupted.get(p).map(String::as_str))
        .collect();
    println!(
        "node loss: {} pods lost on {lost} (batches {lost_batches:?}); all running again on \
         {spare} {:.1} s after the node went; DisruptionTarget reasons {reasons:?}; failed \
         batches counted {} (status), {job_failures} (Jobs' failed pods), BatchFailed events \
         {batch_failed_events}; {seen} Jobs, duplicates {}; frames {}/{}",
        on_lost.len(),
        rerun.as_secs_f64(),
        s.batches.failed,
        duplicates.len(),
        s.frames.rendered,
        s.frames.total,
    );

    for p in &lost_pods {
        assert!(
            disrupted.contains_key(p),
            "lost pod {p} was never marked DisruptionTarget (seen: {disrupted:?})"
        );
    }
    assert!(
        duplicates.is_empty(),
        "batches created twice: {duplicates:?}"
    );
    assert_eq!(seen as i64, BATCHES, "one Job per batch");
    assert_eq!(
        (s.batches.total, s.batches.succeeded, s.batches.failed),
        (BATCHES, BATCHES, 0)
    );
    assert!(s.failed_batches.is_empty(), "{:?}", s.failed_batches);
    assert_eq!(
        (s.frames.rendered, s.frames.total),
        (BATCHES * 2, BATCHES * 2)
    );
    assert_eq!(s.succeeded_batches.as_deref(), Some("0-7"));
    assert_eq!(
        job_failures, 0,
        "a lost pod counted against a Job's backoff"
    );
    assert_eq!(batch_failed_events, 0, "events: {events}");

    // Put things back: the spare node goes too; the lost one is gone already.
    nodes.api.delete(&spare, &DeleteParams::default()).await?;
    let names = nodes.names.clone();
    watch_until(
        nodes.api.clone(),
        MINUTE,
        "the test's nodes deleted",
        |all| (!all.iter().any(|n| names.contains(&n.name_any()))).then_some(()),
    )
    .await
    .context("deleting the test's nodes")?;
    Ok(())
}
