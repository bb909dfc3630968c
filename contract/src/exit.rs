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
