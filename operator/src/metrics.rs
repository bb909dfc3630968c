//! Prometheus metrics, served on `/metrics`.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::crd::Phase;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    pub verb: String,
    pub resource: String,
}

pub struct Metrics {
    pub registry: Mutex<Registry>,
    pub renderjobs: Family<PhaseLabels, Gauge>,
    pub batches: Family<ResultLabels, Counter>,
    pub frames_rendered: Counter,
    pub batch_duration: Histogram,
    pub reconcile_duration: Histogram,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    /// Reconciles put off because the render's last pass was too recent.
    pub reconcile_deferred: Counter,
    pub api_writes: Family<WriteLabels, Counter>,
    /// Failures by node, and each render's progress (see [`crate::node_metrics`]).
    pub nodes: crate::node_metrics::NodeMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("renderfarm");
        let renderjobs = Family::<PhaseLabels, Gauge>::default();
        registry.register("renderjobs", "RenderJobs by phase", renderjobs.clone());
        let batches = Family::<ResultLabels, Counter>::default();
        registry.register(
            "batches",
            "Batch Jobs created, succeeded and failed",
            batches.clone(),
        );
        let frames_rendered = Counter::default();
        registry.register(
            "frames_rendered",
            "Frames rendered by succeeded batches",
            frames_rendered.clone(),
        );
        let batch_duration = Histogram::new(exponential_buckets(1.0, 2.0, 16));
        registry.register(
            "batch_duration_seconds",
            "Wall time of succeeded batch Jobs",
            batch_duration.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took",
            reconcile_duration.clone(),
        );
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by error kind",
            reconcile_errors.clone(),
        );
        let reconcile_deferred = Counter::default();
        registry.register(
            "reconcile_deferred",
            "Reconciles put off for a moment after the render's last full pass",
            reconcile_deferred.clone(),
        );
        let api_writes = Family::<WriteLabels, Counter>::default();
        registry.register(
            "api_writes",
            "Writes the operator sent to the API server",
            api_writes.clone(),
        );
        let nodes = crate::node_metrics::NodeMetrics::register(&mut registry);
        Metrics {
            nodes,
            registry: Mutex::new(registry),
            renderjobs,
            batches,
            frames_rendered,
            batch_duration,
            reconcile_duration,
            reconcile_errors,
            reconcile_deferred,
            api_writes,
        }
    }
}

impl Metrics {
    pub fn write(&self, verb: &str, resource: &str) {
        self.api_writes
            .get_or_create(&WriteLabels {
                verb: verb.into(),
                resource: resource.into(),
            })
            .inc();
    }

    pub fn batch(&self, result: &str, n: u64) {
        self.batches
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc_by(n);
    }

    /// Set the RenderJob gauges from a fresh count of every phase.
    pub fn set_phases(&self, phases: impl Iterator<Item = Phase>) {
        let mut counts = [0_i64; Phase::ALL.len()];
        for p in phases {
            if let Some(i) = Phase::ALL.iter().position(|x| *x == p) {
                counts[i] += 1;
            }
        }
        for (p, n) in Phase::ALL.iter().zip(counts) {
            self.renderjobs
                .get_or_create(&PhaseLabels {
                    phase: p.as_str().into(),
                })
                .set(n);
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(registry) = self.registry.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_every_family() {
        let m = Metrics::default();
        m.set_phases([Phase::Running, Phase::Running, Phase::Failed].into_iter());
        m.batch("succeeded", 3);
        m.write("create", "jobs");
        m.frames_rendered.inc_by(15);
        let text = m.encode();
        for line in [
            "renderfarm_renderjobs{phase=\"Running\"} 2",
            "renderfarm_renderjobs{phase=\"Succeeded\"} 0",
            "renderfarm_batches_total{result=\"succeeded\"} 3",
            "renderfarm_frames_rendered_total 15",
            "renderfarm_api_writes_total{verb=\"create\",resource=\"jobs\"} 1",
            "renderfarm_reconcile_duration_seconds_count 0",
            "renderfarm_reconcile_deferred_total 0",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
