//! The node blocklist in the plugin: `status`'s lines for blocked nodes, and
//! `kubectl render unblock NAME NODE`, which lets a render's batches back onto a repaired node
//! through the spec (`spec.unblockedNodes`: the failures it forgives), never the status.

use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use renderfarm_api::crd::{RenderJob, RenderJobSpec, RenderJobStatus};
use renderfarm_api::nodes::UnblockedNode;
use serde_json::json;

use crate::cli::{Global, Unblock};
use crate::cluster::Ctx;
use crate::error::{Error, Result};

/// `status`'s lines for the nodes the render keeps off, each with how to let it back.
pub fn blocked_lines(name: &str, s: &RenderJobStatus) -> Vec<String> {
    if s.blocked_nodes.is_empty() {
        return Vec::new();
    }
    let mut out = vec!["Blocked nodes:".to_string()];
    for b in &s.blocked_nodes {
        out.push(format!(
            "  {}: {} failed batch{}, last {} (kubectl render unblock {name} {})",
            b.node,
            b.failures,
            if b.failures == 1 { "" } else { "es" },
            b.last_reason,
            b.node
        ));
    }
    out
}

/// The web page's part for the nodes the render keeps off (empty when none).
pub fn blocked_html(name: &str, s: &RenderJobStatus) -> String {
    use crate::ui::html::esc;
    if s.blocked_nodes.is_empty() {
        return String::new();
    }
    let mut out = String::from("<h2>Blocked nodes</h2>");
    for b in &s.blocked_nodes {
        out.push_str(&format!(
            "<div class=\"failed\" data-node=\"{n}\"><div><b>{n}</b> · <span class=\"bad\">{r}</span> · {f} failed batch{es}</div><div class=\"msg\">later batches keep off it: <code>kubectl render unblock {name} {n}</code></div></div>",
            n = esc(&b.node),
            r = esc(&b.last_reason),
            f = b.failures,
            es = if b.failures == 1 { "" } else { "es" },
            name = esc(name),
        ));
    }
    out
}

/// The failures the status has for `node`: what an unblock forgives.
pub fn failures_of(s: &RenderJobStatus, node: &str) -> i64 {
    s.node_faults.iter().filter(|f| f.node == node).count() as i64
}

/// `spec.unblockedNodes` with `node` forgiving `failures` (its entry replaced, the rest kept).
pub fn unblocked(spec: &RenderJobSpec, node: &str, failures: i64) -> Vec<UnblockedNode> {
    let mut list: Vec<UnblockedNode> = spec
        .unblocked_nodes
        .iter()
        .filter(|u| u.node != node)
        .cloned()
        .collect();
    list.push(UnblockedNode {
        node: node.to_string(),
        failures,
    });
    list
}

pub async fn run(global: &Global, args: &Unblock) -> Result<()> {
    let ctx = Ctx::new(global).await?;
    let rj: RenderJob = ctx.renderjob(&args.name).await?;
    let status = rj.status.clone().unwrap_or_default();
    if !status.blocked_nodes.iter().any(|b| b.node == args.node) {
        let blocked: Vec<&str> = status
            .blocked_nodes
            .iter()
            .map(|b| b.node.as_str())
            .collect();
        crate::out!(
            "{} does not block node {} (blocked: {})",
            args.name,
            args.node,
            if blocked.is_empty() {
                "none".to_string()
            } else {
                blocked.join(", ")
            }
        );
        return Ok(());
    }
    let failures = failures_of(&status, &args.node);
    let list = unblocked(&rj.spec, &args.node, failures);
    // The resource version makes this a compare-and-swap: an edit meanwhile is not lost.
    let patch = json!({
        "metadata": {"resourceVersion": rj.resource_version()},
        "spec": {"unblockedNodes": list},
    });
    ctx.rjs()
        .patch(&args.name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map_err(|e| match &e {
            kube::Error::Api(s) if s.code == 409 => Error::Usage(format!(
                "RenderJob {} changed while unblocking node {}: run it again",
                args.name, args.node
            )),
            _ => ctx.unreachable(e),
        })?;
    crate::out!(
        "node {} unblocked for {}: its {failures} failures are forgiven, and its batches may run there again",
        args.node,
        args.name
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rj(v: serde_json::Value) -> RenderJob {
        serde_json::from_value(json!({
            "apiVersion": "renderfarm.io/v1alpha1", "kind": "RenderJob",
            "metadata": {"name": "shot", "namespace": "art"},
            "spec": {"blendFile": "s.blend", "frames": {"start": 1, "end": 8},
                "storage": {"claimName": "c"},
                "unblockedNodes": [{"node": "w1", "failures": 2}, {"node": "w2", "failures": 2}]},
            "status": v,
        }))
        .expect("RenderJob")
    }

    #[test]
    fn blocked_nodes_say_how_to_let_them_back() {
        let r = rj(
            json!({"blockedNodes": [{"node": "kind-worker2", "failures": 2,
            "lastReason": "OutputReadOnly"}], "nodeFaults": [
            {"node": "kind-worker2", "batch": 0, "reason": "OutputReadOnly", "job": "a"},
            {"node": "kind-worker", "batch": 1, "reason": "BlenderKilled", "job": "b"},
            {"node": "kind-worker2", "batch": 2, "reason": "OutputReadOnly", "job": "c"}]}),
        );
        let s = r.status.clone().unwrap_or_default();
        assert_eq!(
            blocked_lines("shot", &s),
            [
                "Blocked nodes:",
                "  kind-worker2: 2 failed batches, last OutputReadOnly (kubectl render unblock shot kind-worker2)"
            ]
        );
        assert_eq!(failures_of(&s, "kind-worker2"), 2);
        assert!(blocked_lines("shot", &RenderJobStatus::default()).is_empty());
        let html = blocked_html("shot", &s);
        assert!(
            html.contains("<b>kind-worker2</b>")
                && html.contains("kubectl render unblock shot kind-worker2"),
            "{html}"
        );
        assert!(blocked_html("shot", &RenderJobStatus::default()).is_empty());
    }

    #[test]
    fn an_unblock_replaces_the_nodes_entry_and_keeps_the_others() {
        let r = rj(json!({}));
        let list = unblocked(&r.spec, "w2", 5);
        let nodes: Vec<(&str, i64)> = list.iter().map(|u| (u.node.as_str(), u.failures)).collect();
        assert_eq!(nodes, [("w1", 2), ("w2", 5)]);
    }
}
