//! The node blocklist on a real control plane: a kwok Stage makes every batch pod bound to one
//! node fail as render-node does when that node's storage went read-only (exit 90), and pods
//! on the other nodes succeed. (a) The render completes; the node is in `status.blockedNodes`
//! with a `NodeBlocked` Event, no batch that failed there ran there again, later batches keep
//! off it, and `renderfarm_node_failures_total` counts it. (b) A render that fits only that
//! node retries there (the preferred anti-affinity of a lone node), blocks it and fails naming
//! it; once the node is repaired and unblocked (a spec patch), the render goes on and
//! succeeds.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

use crate::harness::{Env, SCENARIO_LABEL, apply_object, condition, status};

const MINUTE: Duration = Duration::from_secs(60);
/// The node whose storage is broken (one of `hack/cluster.sh`'s kwok nodes).
const BAD: &str = "kwok-node-1";

/// A Stage for this test's pods on `BAD` (`In`) or elsewhere (`NotIn`): fail with exit 90 as
/// render-node on a read-only output, or succeed.
fn stage(ns: &str, on_bad: bool) -> Value {
    let (name, op, exit, reason, phase) = if on_bad {
        (format!("{ns}-bad-node"), "In", 90, "Error", "Failed")
    } else {
        (
            format!("{ns}-good-nodes"),
            "NotIn",
            0,
            "Completed",
            "Succeeded",
        )
    };
    let template = format!(
        r#"{{{{ $now := Now }}}}
{{{{ $started := or .status.startTime $now }}}}
containerStatuses:
{{{{ range .spec.containers }}}}
- image: {{{{ .image | Quote }}}}
  name: {{{{ .name | Quote }}}}
  ready: false
  restartCount: 0
  started: false
  state:
    terminated:
      exitCode: {exit}
      finishedAt: {{{{ $now | Quote }}}}
      reason: {reason}
      message: "injected by kwok stage {name}"
      startedAt: {{{{ $started | Quote }}}}
{{{{ end }}}}
phase: {phase}
"#
    );
    json!({
        "apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Stage",
        "metadata": {"name": name},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
            "selector": {"matchExpressions": [
                {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
                {"key": ".status.phase", "operator": "In", "values": ["Running"]},
                {"key": ".metadata.labels[\"kwok.renderfarm.io/scenario\"]", "operator": "In", "values": [ns]},
                {"key": ".spec.nodeName", "operator": op, "values": [BAD]},
            ]},
            "delay": {"durationMilliseconds": 300},
            "next": {"statusTemplate": template},
        },
    })
}

async fn remove_stage(env: &Env, name: &str) -> Result<()> {
    let ar = kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
        "kwok.x-k8s.io",
        "v1alpha1",
        "Stage",
    ));
    let api: kube::Api<kube::core::DynamicObject> = kube::Api::all_with(env.client.clone(), &ar);
    api.delete(name, &DeleteParams::default()).await?;
    Ok(())
}

/// Every batch pod seen, by name: (batch, node, last phase).
type Seen = Arc<Mutex<BTreeMap<String, (String, String, String)>>>;

/// Records every batch pod of the namespace as the watch sees it, before garbage collection
/// takes the pods of a deleted Job.
fn record_pods(env: &Env) -> Seen {
    let seen: Seen = Arc::default();
    let into = seen.clone();
    let stream = watcher(env.pods(), watcher::Config::default()).applied_objects();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(Ok(pod)) = stream.next().await {
            let pod: Pod = pod;
            let batch = pod.labels().get("renderfarm.io/batch").cloned();
            let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
            let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
            if let (Some(b), Some(n)) = (batch, node)
                && let Ok(mut map) = into.lock()
            {
                map.insert(pod.name_any(), (b, n, phase.unwrap_or_default()));
            }
        }
    });
    seen
}

fn pods_of(seen: &Seen) -> Vec<(String, String, String)> {
    seen.lock()
        .map(|m| m.values().cloned().collect())
        .unwrap_or_default()
}

#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn a_broken_node_is_routed_around_and_blocked() -> Result<()> {
    let mut env = Env::new("nodes").await?;
    apply_object(&env.client, stage(&env.ns, true)).await?;
    apply_object(&env.client, stage(&env.ns, false)).await?;
    let seen = record_pods(&env);
    env.start_operator()?;
    env.create(
        "routed",
        json!({
            "frames": {"start": 1, "end": 24}, "batchSize": 2, "parallelism": 3,
            "nodeFailureLimit": 2,
            "podMetadata": {"labels": {SCENARIO_LABEL: env.ns.clone()}},
        }),
    )
    .await?;
    let rj = env.wait_phase("routed", "Succeeded", 3 * MINUTE).await?;
    let s = status(&rj);
    println!(
        "nodes: blocked {:?}; faults {:?}",
        s.blocked_nodes, s.node_faults
    );
    ensure!(s.frames.rendered == 24 && s.batches.failed == 0, "{s:?}");
    let blocked: Vec<&str> = s.blocked_nodes.iter().map(|b| b.node.as_str()).collect();
    ensure!(blocked == [BAD], "blocked nodes: {blocked:?}");
    ensure!(
        s.blocked_nodes[0].last_reason == "OutputReadOnly",
        "{:?}",
        s.blocked_nodes
    );
    ensure!(
        s.node_faults.iter().all(|f| f.node == BAD),
        "{:?}",
        s.node_faults
    );
    // No batch that failed on the bad node ran there again.
    let failed_there: BTreeSet<String> =
        s.node_faults.iter().map(|f| f.batch.to_string()).collect();
    let pods = pods_of(&seen);
    for b in &failed_there {
        let on: Vec<&(String, String, String)> = pods.iter().filter(|p| &p.0 == b).collect();
        let bad_runs = on.iter().filter(|p| p.1 == BAD).count();
        ensure!(
            bad_runs == 1,
            "batch {b} ran on {BAD} {bad_runs} times: {on:?}"
        );
        ensure!(
            on.iter().any(|p| p.2 == "Succeeded" && p.1 != BAD),
            "batch {b}: {on:?}"
        );
    }
    // Once blocked, no batch started there: at most the limit, plus batches already bound.
    let on_bad = pods.iter().filter(|p| p.1 == BAD).count();
    ensure!(on_bad <= 2 + 3, "{on_bad} pods on {BAD}: {pods:?}");
    let events = env.event_reasons()?;
    ensure!(
        events.matches("NodeBlocked").count() == 1,
        "Events: {events}"
    );
    let m = env.metrics()?;
    let count = m.value(
        "renderfarm_node_failures_total",
        &[("node", BAD), ("reason", "OutputReadOnly")],
    );
    ensure!(
        count == s.node_faults.len() as f64,
        "metric {count} for {:?}",
        s.node_faults
    );
    println!(
        "nodes: 24 frames, {} batch failures on {BAD}, {on_bad} pods there, every failed batch done elsewhere",
        s.node_faults.len()
    );
    remove_stage(&env, &format!("{}-bad-node", env.ns)).await?;
    remove_stage(&env, &format!("{}-good-nodes", env.ns)).await
}

#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn every_node_blocked_fails_the_render_and_unblock_lets_it_finish() -> Result<()> {
    let mut env = Env::new("allblocked").await?;
    let bad = format!("{}-bad-node", env.ns);
    apply_object(&env.client, stage(&env.ns, true)).await?;
    apply_object(&env.client, stage(&env.ns, false)).await?;
    env.start_operator()?;
    // Only the bad node fits: a retry may go back there (preferred anti-affinity only).
    env.create(
        "lone",
        json!({
            "frames": {"start": 1, "end": 4}, "batchSize": 2, "parallelism": 1,
            "nodeSelector": {"kubernetes.io/hostname": BAD},
            "podMetadata": {"labels": {SCENARIO_LABEL: env.ns.clone()}},
        }),
    )
    .await?;
    let rj = env.wait_phase("lone", "Failed", 2 * MINUTE).await?;
    let s = status(&rj);
    let failed = condition(&rj, "Failed").context("a Failed condition")?;
    println!("nodes: failed: {}", failed.message);
    ensure!(
        failed.message.contains(&format!(
            "every node this render can run on is blocked: {BAD}"
        )),
        "{failed:?}"
    );
    ensure!(
        s.node_faults.len() == 2,
        "retried once on the lone node: {:?}",
        s.node_faults
    );
    // Repaired: the node's pods now succeed. Unblocked through the spec, not the status.
    remove_stage(&env, &bad).await?;
    let mut fixed = stage(&env.ns, false);
    fixed["metadata"]["name"] = json!(bad);
    fixed["spec"]["selector"]["matchExpressions"][3]["operator"] = json!("In");
    apply_object(&env.client, fixed).await?;
    env.rjs()
        .patch(
            "lone",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"unblockedNodes": [{"node": BAD, "failures": 2}]}})),
        )
        .await?;
    let rj = env.wait_phase("lone", "Succeeded", 2 * MINUTE).await?;
    let s = status(&rj);
    ensure!(
        s.blocked_nodes.is_empty() && s.frames.rendered == 4,
        "{s:?}"
    );
    remove_stage(&env, &bad).await?;
    remove_stage(&env, &format!("{}-good-nodes", env.ns)).await
}
