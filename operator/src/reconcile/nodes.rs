//! The node blocklist as pure decisions: which batch failures were the node's fault
//! ([`fault_of`]), which failed batches are retried on another node and which failed Jobs go
//! so they can be ([`step`]), which nodes a render keeps off ([`Blocklist`]), where a batch's
//! new Job may run ([`placement`], [`keep_off`]), and when every node is blocked.
//!
//! A batch that failed for its node is retried in three steps, each safe across a crash: its
//! Job fails at once (the pod failure policy's `FailJob` on render-node's node fault codes)
//! and the fault goes into `status.nodeFaults`; once the status records it, the failed Job is
//! deleted; once it is gone the batch is created again, its pod kept off that node by a
//! required node affinity on `metadata.name` (preferred only, where that node is the only one
//! the batch fits, so a one-node cluster still renders).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    PreferredSchedulingTerm, Toleration,
};
use render_contract::exit;
use renderfarm_api::nodes::{BlockedNode, MAX_NODE_FAULTS, NodeFault};

use crate::batch::BatchState;
use crate::cache::{BatchJob, BatchPod, Finished};
use crate::crd::{RenderJob, RenderJobStatus};
use crate::events::Note;
use crate::index;
use crate::job::gpu_resource;
use crate::nodewatch::ClusterNode;
use crate::status::Hold;

/// The failure reason of a batch whose frame failed its checks twice (render-node's frame
/// verification): a node fault, as the same frame rendered fine elsewhere.
pub const BAD_FRAME_REASON: &str = "BadFrame";
/// The reason of the hold that fails a render whose every node is blocked.
pub const ALL_NODES_BLOCKED: &str = "AllNodesBlocked";

/// Why a failed batch pod failed for its node, if it did: one of render-node's node fault
/// exits, a frame failing its checks twice, or the container killed by a signal (other than
/// SIGTERM, and not by the out-of-memory killer). Disruptions are not failures at all.
pub fn fault_of(pod: &BatchPod) -> Option<&'static str> {
    if pod.disruption {
        return None;
    }
    let p = pod.failure.as_deref()?;
    if p.reason == BAD_FRAME_REASON || p.exit_code == Some(exit::BAD_FRAME) {
        return Some(BAD_FRAME_REASON);
    }
    if p.reason == "OOMKilled" {
        return None;
    }
    let code = p.exit_code?;
    exit::node_fault_name(code).or_else(|| killed_by_signal(code).then_some("KilledBySignal"))
}

/// 128 + a signal, not SIGTERM (a Job deleted or suspended).
fn killed_by_signal(code: i32) -> bool {
    code > 128 && code <= 128 + 64 && code != exit::TERMINATED
}

/// The last failed pod of a batch (disruptions aside): the one that failed its Job.
fn last_failed<'a>(pods: &[&'a BatchPod]) -> Option<&'a BatchPod> {
    pods.iter()
        .copied()
        .filter(|p| !p.disruption && p.failure.is_some())
        .max_by_key(|p| p.finished_at.as_ref())
}

/// The node fault that failed batch `index`'s Job, if its Job failed (by its pod failure
/// policy or out of retries, not by its deadline or the operator) for its node.
pub fn failed_for_node(index: u32, job: &BatchJob, pods: &[&BatchPod]) -> Option<NodeFault> {
    let Some(Finished::Failed(why)) = &job.finished else {
        return None;
    };
    let reason = why.reason.as_deref();
    if job.stopped.is_some() || !matches!(reason, Some("PodFailurePolicy" | "BackoffLimitExceeded"))
    {
        return None;
    }
    let pod = last_failed(pods)?;
    Some(NodeFault {
        node: pod.node.as_deref()?.to_string(),
        batch: i64::from(index),
        reason: fault_of(pod)?.to_string(),
        job: job.uid.clone()?,
    })
}

/// The faults of a render and what they add up to: the nodes blocked, and the nodes each
/// batch failed on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Blocklist {
    /// Every fault, oldest first.
    pub faults: Vec<NodeFault>,
    pub blocked: Vec<BlockedNode>,
    /// The nodes each batch failed on, failures forgiven by an unblock aside.
    pub by_batch: BTreeMap<u32, BTreeSet<String>>,
    /// Every fault of each batch, forgiven or not.
    pub attempts: BTreeMap<u32, usize>,
}

impl Blocklist {
    /// `faults` against `spec.nodeFailureLimit`, less the failures `spec.unblockedNodes`
    /// forgives: a node's first `failures` faults.
    pub fn new(faults: Vec<NodeFault>, rj: &RenderJob) -> Blocklist {
        let limit = i64::from(rj.spec.node_failure_limit.max(1));
        let mut forgiven: BTreeMap<&str, i64> = BTreeMap::new();
        for u in &rj.spec.unblocked_nodes {
            let f = forgiven.entry(u.node.as_str()).or_default();
            *f = (*f).max(u.failures);
        }
        let mut seen: BTreeMap<&str, i64> = BTreeMap::new();
        let mut counted: BTreeMap<&str, (i64, &str)> = BTreeMap::new();
        let mut list = Blocklist::default();
        for f in &faults {
            let batch = u32::try_from(f.batch).unwrap_or(u32::MAX);
            *list.attempts.entry(batch).or_default() += 1;
            let n = seen.entry(f.node.as_str()).or_default();
            *n += 1;
            if *n <= forgiven.get(f.node.as_str()).copied().unwrap_or(0) {
                continue;
            }
            let c = counted.entry(f.node.as_str()).or_insert((0, ""));
            *c = (c.0 + 1, f.reason.as_str());
            list.by_batch
                .entry(batch)
                .or_default()
                .insert(f.node.clone());
        }
        list.blocked = counted
            .into_iter()
            .filter(|(_, (n, _))| *n >= limit)
            .map(|(node, (failures, last))| BlockedNode {
                node: node.to_string(),
                failures,
                last_reason: last.to_string(),
            })
            .collect();
        list.faults = faults;
        list
    }

    pub fn is_blocked(&self, node: &str) -> bool {
        self.blocked.iter().any(|b| b.node == node)
    }

    fn blocked_names(&self) -> BTreeSet<String> {
        self.blocked.iter().map(|b| b.node.clone()).collect()
    }
}

/// What the blocklist changes in one reconcile.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeStep {
    pub list: Blocklist,
    /// Batches whose Job failed for its node and that are retried: active, not failed.
    pub retry: BTreeSet<u32>,
    /// Of those, the failed Jobs whose fault the status already records: deleted, so the
    /// batch can be created again elsewhere.
    pub delete: Vec<String>,
    /// Batches that failed for their node and cannot go elsewhere (every node is blocked):
    /// failed, with or without a Job.
    pub fail: BTreeSet<u32>,
    /// Every node the render fits is blocked: it fails.
    pub hold: Option<Hold>,
}

/// The blocklist's decisions: `old` is the status last written, `slots` the batches by their
/// Jobs, `nodes` the cluster's nodes when known.
pub fn step(
    rj: &RenderJob,
    old: &RenderJobStatus,
    slots: &[BatchState],
    jobs: &index::Jobs<'_>,
    pods: &index::Pods<'_>,
    nodes: Option<&[ClusterNode]>,
) -> NodeStep {
    let recorded: BTreeSet<&str> = old.node_faults.iter().map(|f| f.job.as_str()).collect();
    let mut faults = old.node_faults.clone();
    let mut failed = Vec::new();
    // The slots first: a scan of the batch states costs less than a walk over every Job.
    let failed_slots = (0u32..)
        .zip(slots)
        .filter(|(_, s)| **s == BatchState::Failed);
    for (i, job) in failed_slots.filter_map(|(i, _)| Some((i, jobs.get(&i)?))) {
        let Some(f) = failed_for_node(i, job, pods.of(i)) else {
            continue;
        };
        let known = recorded.contains(f.job.as_str());
        if !known {
            if faults.len() >= MAX_NODE_FAULTS {
                continue;
            }
            faults.push(f);
        }
        failed.push((i, *job, known));
    }
    let list = Blocklist::new(faults, rj);
    let hold = all_blocked(rj, &list, nodes);
    let most = usize::try_from(rj.spec.backoff_limit.max(1)).unwrap_or(1);
    let mut step = NodeStep {
        hold,
        ..NodeStep::default()
    };
    for (i, job, known) in failed {
        // A batch failing on node after node is more likely the scene's: it fails as any other.
        let tries = step_attempts(&list, i);
        if step.hold.is_some() || tries > most {
            continue;
        }
        step.retry.insert(i);
        if known && !job.deleting {
            step.delete.push(job.name.clone());
        }
    }
    if step.hold.is_some() {
        step.fail = (0u32..)
            .zip(slots)
            .filter(|(i, s)| **s == BatchState::Pending && list.by_batch.contains_key(i))
            .map(|(i, _)| i)
            .collect();
    }
    step.list = list;
    step
}

fn step_attempts(list: &Blocklist, batch: u32) -> usize {
    list.attempts.get(&batch).copied().unwrap_or(0)
}

/// The tolerations a batch pod carries: the spec's, and its GPU's (see `job::template`).
fn tolerations(rj: &RenderJob) -> Vec<Toleration> {
    let mut tolerations = rj.spec.tolerations.clone().unwrap_or_default();
    if let Some(gpu) = gpu_resource(rj.spec.device) {
        tolerations.push(Toleration {
            key: Some(gpu.to_string()),
            operator: Some("Exists".to_string()),
            ..Default::default()
        });
    }
    tolerations
}

/// The nodes the render's batches could run on (`None`: the nodes are not known).
pub fn fitting(rj: &RenderJob, nodes: Option<&[ClusterNode]>) -> Option<BTreeSet<String>> {
    let tolerations = tolerations(rj);
    let selector = rj.spec.node_selector.as_ref();
    Some(
        nodes?
            .iter()
            .filter(|n| n.fits(selector, &tolerations))
            .map(|n| n.name.clone())
            .collect(),
    )
}

/// Every node the render fits is blocked: the render fails, naming them, instead of waiting
/// for a node that will never come.
fn all_blocked(rj: &RenderJob, list: &Blocklist, nodes: Option<&[ClusterNode]>) -> Option<Hold> {
    let fits = fitting(rj, nodes)?;
    if fits.is_empty() || !fits.iter().all(|n| list.is_blocked(n)) {
        return None;
    }
    let named: Vec<String> = list
        .blocked
        .iter()
        .filter(|b| fits.contains(&b.node))
        .map(|b| {
            format!(
                "{} ({} failures, last {})",
                b.node, b.failures, b.last_reason
            )
        })
        .collect();
    Some(Hold {
        reason: ALL_NODES_BLOCKED.into(),
        message: format!(
            "every node this render can run on is blocked: {}; repair them and `kubectl render unblock {} NODE`",
            named.join(", "),
            rj.metadata.name.as_deref().unwrap_or_default()
        ),
        fails: true,
    })
}

/// Where a batch's new Job may run: never on `required`, rather not on `preferred`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    pub required: BTreeSet<String>,
    pub preferred: BTreeSet<String>,
}

/// Batch `batch` keeps off the blocked nodes and the nodes it failed on; where those are
/// every node it fits (`fits`, when known) but not all blocked, it only prefers to keep off the
/// nodes it failed on.
pub fn placement(list: &Blocklist, batch: u32, fits: Option<&BTreeSet<String>>) -> Placement {
    let blocked = list.blocked_names();
    let own: BTreeSet<String> = list
        .by_batch
        .get(&batch)
        .map(|n| n.difference(&blocked).cloned().collect())
        .unwrap_or_default();
    let required: BTreeSet<String> = blocked.union(&own).cloned().collect();
    let only_there = fits.is_some_and(|f| !f.is_empty() && f.is_subset(&required));
    if only_there && !own.is_empty() {
        return Placement {
            required: blocked,
            preferred: own,
        };
    }
    Placement {
        required,
        preferred: BTreeSet::new(),
    }
}

fn not_in(nodes: &BTreeSet<String>) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: "metadata.name".to_string(),
        operator: "NotIn".to_string(),
        values: Some(nodes.iter().cloned().collect()),
    }
}

/// Adds `p` to the Job's pod template as node affinity on the node's name (each required term
/// the template already has gets the `NotIn`).
pub fn keep_off(job: &mut Job, p: &Placement) {
    let Some(pod) = job.spec.as_mut().and_then(|s| s.template.spec.as_mut()) else {
        return;
    };
    if p.required.is_empty() && p.preferred.is_empty() {
        return;
    }
    let affinity = pod.affinity.get_or_insert_with(Affinity::default);
    let node = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    if !p.required.is_empty() {
        let required = node
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(NodeSelector::default);
        if required.node_selector_terms.is_empty() {
            required
                .node_selector_terms
                .push(NodeSelectorTerm::default());
        }
        for term in &mut required.node_selector_terms {
            term.match_fields
                .get_or_insert_with(Vec::new)
                .push(not_in(&p.required));
        }
    }
    if !p.preferred.is_empty() {
        node.preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(PreferredSchedulingTerm {
                weight: 100,
                preference: NodeSelectorTerm {
                    match_fields: Some(vec![not_in(&p.preferred)]),
                    ..Default::default()
                },
            });
    }
}

/// The Events for what changed: each new fault (its batch is retried elsewhere or fails), and
/// each node newly blocked, once (the node in its text: one node is blocked once).
pub fn notes(old: &RenderJobStatus, new: &RenderJobStatus, rj_name: &str) -> Vec<Note> {
    let known: BTreeSet<&str> = old.node_faults.iter().map(|f| f.job.as_str()).collect();
    let faults = new
        .node_faults
        .iter()
        .filter(|f| !known.contains(f.job.as_str()))
        // One text for every fault: the Event recorder counts Events of one reason as one
        // series and keeps the first text, so naming a batch or node here would mislead.
        .map(|_| {
            Note::warning(
                "NodeFault",
                "a batch failed because of the node it ran on and is retried on another node (status.nodeFaults says which and why)",
            )
        });
    let was: BTreeSet<&str> = old.blocked_nodes.iter().map(|b| b.node.as_str()).collect();
    let blocked = new
        .blocked_nodes
        .iter()
        .filter(|b| !was.contains(b.node.as_str()))
        .map(|b| {
            Note::warning(
                "NodeBlocked",
                format!(
                    "node {} is blocked for this render after {} batch failures (last: {}): later batches keep off it; `kubectl render unblock {rj_name} {}` lets them back",
                    b.node, b.failures, b.last_reason, b.node
                ),
            )
        });
    faults.chain(blocked).collect()
}

/// The faults `new` records that `old` did not, as `(node, reason)`: what the metrics count.
pub fn new_faults(old: &RenderJobStatus, new: &RenderJobStatus) -> Vec<(String, String)> {
    let known: BTreeSet<&str> = old.node_faults.iter().map(|f| f.job.as_str()).collect();
    new.node_faults
        .iter()
        .filter(|f| !known.contains(f.job.as_str()))
        .map(|f| (f.node.clone(), f.reason.clone()))
        .collect()
}

impl NodeStep {
    /// Puts the faults and the blocked nodes into the status to write.
    pub fn write(&self, new: &mut RenderJobStatus) {
        new.node_faults = self.list.faults.clone();
        new.blocked_nodes = self.list.blocked.clone();
    }

    /// The batches' slots as the blocklist has them: retried batches active, batches that
    /// cannot go elsewhere failed.
    pub fn apply(&self, slots: &mut [BatchState]) {
        for (i, s) in slots.iter_mut().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            if self.retry.contains(&i) {
                *s = BatchState::Active;
            } else if self.fail.contains(&i) {
                *s = BatchState::Failed;
            }
        }
    }
}

#[cfg(test)]
mod tests;
