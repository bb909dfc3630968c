//! The contract between the renderfarm operator and the `render-node` image.
//!
//! The operator builds a batch Job's container arguments from [`RenderArgs`] and reads the
//! pod's [`TerminationMessage`]; `render-node` parses the same [`RenderArgs`] and writes the
//! same message. Both sides compile against this crate, so the two can never drift apart.

pub mod args;
pub mod checks;
pub mod exit;
pub mod frames;
pub mod preview;
pub mod progress;
pub mod termination;

pub use args::{
    BlankFrames, Device, Engine, IsolationProbe, MissingFiles, OutputFormat, RenderArgs,
};
pub use checks::FrameChecks;
pub use frames::{FrameSet, FrameSetError};
pub use preview::{PreviewArgs, PreviewCodec, PreviewReport};
pub use progress::{MissingFile, ProgressEvent};
pub use termination::{Outcome, SceneFacts, TerminationMessage, TerminationReport};
