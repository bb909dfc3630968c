//! The node blocklist's part of the RenderJob: the faults attributed to nodes
//! (`status.nodeFaults`), the nodes a render keeps off (`status.blockedNodes`) and the nodes a
//! user let back in (`spec.unblockedNodes`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Most node faults `status.nodeFaults` keeps: past this a render retries no batch elsewhere
/// (a batch failing on a node fault then fails as any other), so the status stays small.
pub const MAX_NODE_FAULTS: usize = 200;

/// A batch attempt that failed because of the node it ran on.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeFault {
    /// The node the batch's pod ran on.
    pub node: String,
    /// The batch's index.
    pub batch: i64,
    /// `OutputReadOnly`, `StorageUnreachable`, `GpuUnusable`, `BlenderKilled`, `BadFrame`,
    /// `KilledBySignal`, `NodeFault`.
    pub reason: String,
    /// The UID of the batch Job that failed: each attempt counts once.
    pub job: String,
}

/// A node the render's later batches keep off.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlockedNode {
    pub node: String,
    /// Batch failures attributed to it since it was last unblocked.
    pub failures: i64,
    /// Why the last of them failed.
    pub last_reason: String,
}

/// A node let back in (`kubectl render unblock NAME NODE`): the failures it had when it was
/// unblocked are forgiven; new ones count again.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnblockedNode {
    #[schemars(length(min = 1, max = 253))]
    pub node: String,
    /// Failures forgiven: the count `status.nodeFaults` had for the node when it was unblocked.
    #[schemars(range(min = 0))]
    pub failures: i64,
}
