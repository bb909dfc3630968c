//! The cluster's nodes as the node blocklist needs them: which a render's batches could run on
//! ([`ClusterNode::fits`]), so a render whose every such node is blocked fails instead of
//! waiting for ever. Kept by one watch of Nodes (get, list and watch on nodes: the chart's
//! ClusterRole); without it the operator still blocks nodes, but cannot tell when every node
//! is blocked.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Toleration};
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use parking_lot::RwLock;
use tracing::warn;

/// A node taint: key and effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    pub value: Option<String>,
    pub effect: String,
}

/// A node as the blocklist sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterNode {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Ready and not cordoned.
    pub schedulable: bool,
    /// Taints that keep pods off (`NoSchedule`, `NoExecute`).
    pub taints: Vec<Taint>,
}

impl From<&Node> for ClusterNode {
    fn from(node: &Node) -> Self {
        let spec = node.spec.as_ref();
        let cordoned = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let taints = spec
            .and_then(|s| s.taints.as_ref())
            .into_iter()
            .flatten()
            .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
            .map(|t| Taint {
                key: t.key.clone(),
                value: t.value.clone(),
                effect: t.effect.clone(),
            })
            .collect();
        ClusterNode {
            name: node.name_any(),
            labels: node.labels().clone(),
            schedulable: ready && !cordoned,
            taints,
        }
    }
}

impl ClusterNode {
    /// Whether a batch pod with this node selector and these tolerations could run here.
    pub fn fits(
        &self,
        selector: Option<&BTreeMap<String, String>>,
        tolerations: &[Toleration],
    ) -> bool {
        let selected = selector
            .into_iter()
            .flatten()
            .all(|(k, v)| self.labels.get(k) == Some(v));
        let tolerated = self
            .taints
            .iter()
            .all(|t| tolerations.iter().any(|tol| tolerates(tol, t)));
        self.schedulable && selected && tolerated
    }
}

/// Whether `tol` tolerates `taint` (the scheduler's rule).
fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    let effect = tol
        .effect
        .as_deref()
        .is_none_or(|e| e.is_empty() || e == taint.effect);
    let key =
        tol.key.as_deref().is_none_or(|k| k.is_empty()) || tol.key.as_deref() == Some(&taint.key);
    let value = match tol.operator.as_deref() {
        Some("Exists") => true,
        _ => tol.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default(),
    };
    // An empty key with `Exists` tolerates everything; an empty key otherwise matches nothing.
    let any = tol.key.as_deref().is_none_or(|k| k.is_empty());
    if any && tol.operator.as_deref() != Some("Exists") {
        return false;
    }
    effect && key && value
}

/// The nodes the watch has seen, once it listed them all.
#[derive(Debug, Default)]
pub struct Nodes {
    map: RwLock<BTreeMap<String, ClusterNode>>,
    synced: AtomicBool,
}

impl Nodes {
    /// Every node, or `None` until the watch has listed them (or while it is not allowed to).
    pub fn snapshot(&self) -> Option<Vec<ClusterNode>> {
        self.synced
            .load(Ordering::Relaxed)
            .then(|| self.map.read().values().cloned().collect())
    }

    fn apply(&self, event: Event<Node>, pending: &mut BTreeMap<String, ClusterNode>) {
        match event {
            Event::Apply(n) => {
                self.map.write().insert(n.name_any(), ClusterNode::from(&n));
            }
            Event::Delete(n) => {
                self.map.write().remove(&n.name_any());
            }
            Event::Init => pending.clear(),
            Event::InitApply(n) => {
                pending.insert(n.name_any(), ClusterNode::from(&n));
            }
            Event::InitDone => {
                *self.map.write() = std::mem::take(pending);
                self.synced.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// Keeps `nodes` up to date until the stream ends. A watch the operator is not allowed
/// (RBAC) logs a warning now and then and leaves the nodes unknown.
pub async fn watch(client: Client, nodes: Arc<Nodes>) {
    let api: Api<Node> = Api::all(client);
    let mut pending = BTreeMap::new();
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut warned = false;
    while let Some(event) = stream.next().await {
        match event {
            Ok(e) => nodes.apply(e, &mut pending),
            Err(e) if !warned => {
                warned = true;
                warn!(error = %e, "cannot watch nodes: a render whose every node is blocked is not failed");
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(v: serde_json::Value) -> ClusterNode {
        let n: Node = serde_json::from_value(v).expect("node");
        ClusterNode::from(&n)
    }

    #[test]
    fn a_node_fits_by_readiness_cordon_selector_and_taints() {
        let ready = serde_json::json!({"type": "Ready", "status": "True"});
        let good = node(
            serde_json::json!({"metadata": {"name": "a", "labels": {"pool": "cpu"}},
            "status": {"conditions": [ready]}}),
        );
        let cordoned = node(serde_json::json!({"metadata": {"name": "b"},
            "spec": {"unschedulable": true}, "status": {"conditions": [ready]}}));
        let gpu = node(serde_json::json!({"metadata": {"name": "c"},
            "spec": {"taints": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]},
            "status": {"conditions": [ready]}}));
        let not_ready = node(serde_json::json!({"metadata": {"name": "d"}}));
        let pool = BTreeMap::from([("pool".to_string(), "cpu".to_string())]);
        assert!(good.fits(None, &[]) && good.fits(Some(&pool), &[]));
        assert!(!cordoned.fits(None, &[]) && !not_ready.fits(None, &[]));
        assert!(!gpu.fits(None, &[]), "a taint keeps it off");
        let tol = Toleration {
            key: Some("nvidia.com/gpu".into()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Default::default()
        };
        assert!(gpu.fits(None, std::slice::from_ref(&tol)));
        assert!(!gpu.fits(Some(&pool), &[tol]), "the selector still applies");
    }
}
