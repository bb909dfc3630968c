//! How the Job controller treats a batch pod's failure: which exits fail the batch at once,
//! which disruptions do not count.

use k8s_openapi::api::batch::v1::{
    PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement,
    PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use render_contract::exit;
use renderfarm_api::names::CONTAINER;

/// Disruptions (evictions, preemptions, node loss) a batch may have before it fails as
/// `Evicted`, unless the operator is told otherwise (`--max-disruptions`): they do not count as
/// failures, but a batch that keeps getting evicted (filling its node's disk, say) must not
/// retry forever.
pub const MAX_DISRUPTIONS: usize = 5;

/// Evictions, preemption and node loss are not the render's fault.
fn disruption_rule() -> PodFailurePolicyRule {
    PodFailurePolicyRule {
        action: "Ignore".to_string(),
        on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
            type_: "DisruptionTarget".to_string(),
            status: "True".to_string(),
        }]),
        on_exit_codes: None,
    }
}

/// Disruptions are not failures (the preview's policy).
pub(super) fn disruptions_ignored() -> PodFailurePolicy {
    PodFailurePolicy {
        rules: vec![disruption_rule()],
    }
}

/// Disruptions are not failures; bad input fails the batch at once.
pub(super) fn failure_policy() -> PodFailurePolicy {
    PodFailurePolicy {
        rules: vec![
            disruption_rule(),
            // A missing or corrupt .blend will not fix itself on retry.
            PodFailurePolicyRule {
                action: "FailJob".to_string(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: Some(CONTAINER.to_string()),
                    operator: "In".to_string(),
                    values: vec![exit::BAD_INPUT],
                }),
                on_pod_conditions: None,
            },
            // Stopped by SIGTERM: its Job suspended (a pause, Kueue preempting it) or its pod
            // deleted. The Job controller counts a pod deleted that way as failed unless told
            // otherwise, and a batch preempted a few times would fail. A hung batch still
            // fails: the deadline fails the Job itself.
            PodFailurePolicyRule {
                action: "Ignore".to_string(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: Some(CONTAINER.to_string()),
                    operator: "In".to_string(),
                    values: vec![exit::TERMINATED],
                }),
                on_pod_conditions: None,
            },
            // A node fault (its storage read-only or unreachable, a GPU not usable, Blender
            // killed, frames failing their checks twice): the Job fails at once, and the
            // operator creates the batch again kept off that node (`reconcile::nodes`); the
            // Job controller would retry it anywhere, the same node included.
            PodFailurePolicyRule {
                action: "FailJob".to_string(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: Some(CONTAINER.to_string()),
                    operator: "In".to_string(),
                    values: node_fault_codes(),
                }),
                on_pod_conditions: None,
            },
        ],
    }
}

/// The exit codes the operator retries on another node, in order: the API server refuses a
/// rule whose values are not.
pub(super) fn node_fault_codes() -> Vec<i32> {
    let mut codes = [&exit::NODE_FAULTS[..], &[exit::BAD_FRAME]].concat();
    codes.sort_unstable();
    codes
}
