//! What `render-node` and `render-preview` share: ffmpeg for thumbnails, the preview video and
//! the contact sheet; the start-ahead markers (written by one, removed by the other).

pub mod handoff;
pub mod media;
pub mod preview;
