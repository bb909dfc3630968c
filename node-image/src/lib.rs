//! What `render-node` and `render-preview` share: thumbnails (a PNG frame's made here, others'
//! by ffmpeg), ffmpeg for the preview video and the contact sheet; the start-ahead markers
//! (written by one, removed by the other).

pub mod handoff;
pub mod media;
pub mod png_thumb;
pub mod preview;
