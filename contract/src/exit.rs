//! Exit codes of `render-node`. The operator's podFailurePolicy keys on these.

/// Every requested frame is on disk and non-empty.
pub const SUCCESS: i32 = 0;
/// Bad input that a retry cannot fix: missing/unreadable/corrupt .blend, bad arguments,
/// unwritable output, a GPU device that is not there (without fallback). `EX_USAGE`.
pub const BAD_INPUT: i32 = 64;
/// The render failed in a way worth retrying (Blender crashed, frames missing afterwards).
/// `EX_TEMPFAIL`.
pub const RENDER_FAILED: i32 = 75;
/// Stopped by SIGTERM (Job deleted or suspended): 128 + 15, as a shell reports it.
pub const TERMINATED: i32 = 143;
/// A frame Blender saved failed its check twice in the same pod (it does not decode, has
/// another size than the scene renders, or holds NaN/Inf in Combined). Worth a retry, on
/// another node where there is one: never a code the pod failure policy fails the Job on.
/// Beside [`RENDER_FAILED`], and outside the node-fault range.
pub const BAD_FRAME: i32 = 76;

// Node faults: the batch failed because of the machine it ran on, not the scene. The operator
// counts them against the node (for this render), retries the batch on another node and, after
// `spec.nodeFailureLimit` of them, keeps the render's later batches off that node. One small
// range, so an operator reads a code from a newer image as a node fault all the same.

/// The output directory is on a read-only filesystem (`EROFS`): the node's mount of the
/// render storage went read-only.
pub const NODE_OUTPUT_READ_ONLY: i32 = 90;
/// The render storage does not answer (`EIO`, `ESTALE`, `ENOTCONN`, `ETIMEDOUT`,
/// `EHOSTDOWN`): a network filesystem lost by this node.
pub const NODE_STORAGE_UNREACHABLE: i32 = 91;
/// A GPU was asked for (and scheduled) but Blender finds no usable device: a driver fell over.
pub const NODE_GPU_UNUSABLE: i32 = 92;
/// Blender was killed by a signal other than the out-of-memory killer's (SIGSEGV, SIGBUS,
/// SIGILL, SIGKILL): most often bad memory, a broken driver or a kernel that kills it.
pub const NODE_BLENDER_KILLED: i32 = 93;
/// The range of node faults: [`NODE_FAULT_FIRST`] to [`NODE_FAULT_LAST`].
pub const NODE_FAULT_FIRST: i32 = 90;
pub const NODE_FAULT_LAST: i32 = 99;
/// Every node fault code render-node exits with today (what the Job's pod failure policy
/// fails the Job at once on, so the operator retries the batch elsewhere).
pub const NODE_FAULTS: [i32; 4] = [
    NODE_OUTPUT_READ_ONLY,
    NODE_STORAGE_UNREACHABLE,
    NODE_GPU_UNUSABLE,
    NODE_BLENDER_KILLED,
];

/// Whether `code` is a node fault.
pub fn is_node_fault(code: i32) -> bool {
    (NODE_FAULT_FIRST..=NODE_FAULT_LAST).contains(&code)
}

/// The name a node fault is counted under (the `reason` label of
/// `renderfarm_node_failures_total`, and `status.blockedNodes[].lastReason`).
pub fn node_fault_name(code: i32) -> Option<&'static str> {
    match code {
        NODE_OUTPUT_READ_ONLY => Some("OutputReadOnly"),
        NODE_STORAGE_UNREACHABLE => Some("StorageUnreachable"),
        NODE_GPU_UNUSABLE => Some("GpuUnusable"),
        NODE_BLENDER_KILLED => Some("BlenderKilled"),
        c if is_node_fault(c) => Some("NodeFault"),
        _ => None,
    }
}
