//! Batch → Job manifest: what the operator makes of a RenderJob, by concern: its settings
//! ([`config`]), names, labels and owner ([`meta`]), the batch pod ([`template`]), how a pod's
//! failure counts ([`policy`]), and the preview Job ([`preview`]).

mod config;
mod meta;
mod policy;
mod preview;
mod template;
#[cfg(test)]
mod tests;

// The keys and names the kubectl plugin shares, kept reachable here where the operator
// always found them.
pub use renderfarm_api::names::*;

pub use config::{DEFAULT_BLENDER_VERSION, Isolation, JobConfig, NotOffered};
pub use meta::{labels, marker_name, marker_prefix, preview_labels};
pub use policy::MAX_DISRUPTIONS;
pub use preview::{PREVIEW_BACKOFF_LIMIT, PREVIEW_COMMAND, build_preview, preview_args};
pub use template::{
    READY_PORT, SCRATCH_DIR, SCRATCH_SIZE, build, build_after, build_rerender, gpu_resource,
    render_args,
};
