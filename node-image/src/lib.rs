//! What `render-node` and `render-preview` share: ffmpeg for thumbnails, the preview video and
//! the contact sheet.

pub mod media;
pub mod preview;
