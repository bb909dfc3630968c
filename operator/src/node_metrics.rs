//! The metrics a cluster admin alerts on across renders (see the chart's alert rules): batch
//! failures by node and reason, and, for each render still going, its progress and failures.
//! Label sets stay bounded: nodes are bounded by the cluster, reasons by render-node's codes,
//! and the per-render gauges hold only renders still going.

use std::collections::BTreeMap;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::crd::{Phase, RenderJobStatus};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeFaultLabels {
    pub node: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    pub node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RenderLabels {
    pub namespace: String,
    pub renderjob: String,
}

pub struct NodeMetrics {
    /// `renderfarm_node_failures_total{node,reason}`.
    pub failures: Family<NodeFaultLabels, Counter>,
    /// Renders still going that block the node.
    pub blocked_renders: Family<NodeLabels, Gauge>,
    pub frames_rendered: Family<RenderLabels, Gauge>,
    pub frames_total: Family<RenderLabels, Gauge>,
    pub batches_succeeded: Family<RenderLabels, Gauge>,
    /// Failed batches and batch attempts that failed for their node.
    pub batch_failures: Family<RenderLabels, Gauge>,
}

impl NodeMetrics {
    pub fn register(registry: &mut Registry) -> NodeMetrics {
        let m = NodeMetrics {
            failures: Family::default(),
            blocked_renders: Family::default(),
            frames_rendered: Family::default(),
            frames_total: Family::default(),
            batches_succeeded: Family::default(),
            batch_failures: Family::default(),
        };
        let r = registry;
        r.register(
            "node_failures",
            "Batch failures attributed to the node they ran on, by reason",
            m.failures.clone(),
        );
        r.register(
            "node_blocked_renders",
            "Renders still going that keep their batches off the node",
            m.blocked_renders.clone(),
        );
        r.register(
            "render_frames_rendered",
            "Frames rendered so far, per render still going",
            m.frames_rendered.clone(),
        );
        r.register(
            "render_frames",
            "Frames to render, per render still going",
            m.frames_total.clone(),
        );
        r.register(
            "render_batches_succeeded",
            "Batches succeeded, per render still going",
            m.batches_succeeded.clone(),
        );
        r.register(
            "render_batch_failures",
            "Batches failed and batch attempts failed for their node, per render still going",
            m.batch_failures.clone(),
        );
        m
    }

    /// A batch failure attributed to `node`.
    pub fn failure(&self, node: &str, reason: &str) {
        self.failures
            .get_or_create(&NodeFaultLabels {
                node: node.into(),
                reason: reason.into(),
            })
            .inc();
    }

    /// The per-render gauges afresh from every render's `(namespace, name, status)`: renders
    /// that finished drop out.
    pub fn set_renders<'a>(
        &self,
        renders: impl Iterator<Item = (String, String, &'a RenderJobStatus)>,
    ) {
        for f in [
            &self.frames_rendered,
            &self.frames_total,
            &self.batches_succeeded,
            &self.batch_failures,
        ] {
            f.clear();
        }
        self.blocked_renders.clear();
        let mut blocked: BTreeMap<String, i64> = BTreeMap::new();
        for (namespace, renderjob, s) in renders {
            if !matches!(s.phase, Phase::Running | Phase::Pending) {
                continue;
            }
            let l = RenderLabels {
                namespace,
                renderjob,
            };
            self.frames_rendered
                .get_or_create(&l)
                .set(s.frames.rendered);
            self.frames_total.get_or_create(&l).set(s.frames.total);
            self.batches_succeeded
                .get_or_create(&l)
                .set(s.batches.succeeded);
            let failures = s.batches.failed + s.node_faults.len() as i64;
            self.batch_failures.get_or_create(&l).set(failures);
            for b in &s.blocked_nodes {
                *blocked.entry(b.node.clone()).or_default() += 1;
            }
        }
        for (node, n) in blocked {
            self.blocked_renders
                .get_or_create(&NodeLabels { node })
                .set(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use renderfarm_api::nodes::{BlockedNode, NodeFault};

    #[test]
    fn node_failures_and_render_gauges_are_exposed_and_finished_renders_drop_out() {
        let mut registry = Registry::with_prefix("renderfarm");
        let m = NodeMetrics::register(&mut registry);
        m.failure("worker-2", "OutputReadOnly");
        m.failure("worker-2", "OutputReadOnly");
        let mut running = RenderJobStatus {
            phase: Phase::Running,
            ..Default::default()
        };
        running.frames.rendered = 12;
        running.frames.total = 40;
        running.batches.failed = 1;
        running.blocked_nodes = vec![BlockedNode {
            node: "worker-2".into(),
            failures: 2,
            last_reason: "OutputReadOnly".into(),
        }];
        running.node_faults = vec![NodeFault {
            node: "worker-2".into(),
            batch: 3,
            reason: "OutputReadOnly".into(),
            job: "u".into(),
        }];
        let done = RenderJobStatus {
            phase: Phase::Succeeded,
            ..Default::default()
        };
        let renders = [("art", "shot", &running), ("art", "old", &done)];
        m.set_renders(
            renders
                .iter()
                .map(|(n, r, s)| (n.to_string(), r.to_string(), *s)),
        );
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        for line in [
            "renderfarm_node_failures_total{node=\"worker-2\",reason=\"OutputReadOnly\"} 2",
            "renderfarm_node_blocked_renders{node=\"worker-2\"} 1",
            "renderfarm_render_frames_rendered{namespace=\"art\",renderjob=\"shot\"} 12",
            "renderfarm_render_frames{namespace=\"art\",renderjob=\"shot\"} 40",
            "renderfarm_render_batch_failures{namespace=\"art\",renderjob=\"shot\"} 2",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(
            !text.contains("renderjob=\"old\""),
            "a finished render stays out:\n{text}"
        );
    }
}
