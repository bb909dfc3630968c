//! Thumbnails of the batch's frames, made one at a time while Blender renders, so that the
//! newest frame has one a moment after it is saved. A thumbnail that cannot be made is a warning
//! event: it never fails the batch.

use std::path::PathBuf;
use std::time::Instant;

use render_contract::args::output_file;
use render_contract::preview::thumbnail_file;
use render_contract::{OutputFormat, ProgressEvent};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use render_node::media;

pub struct Thumbnailer {
    pattern: String,
    format: OutputFormat,
    tx: mpsc::UnboundedSender<(i32, PathBuf, PathBuf)>,
    task: JoinHandle<()>,
}

impl Thumbnailer {
    /// Start the worker for frames written as `pattern` in `format`.
    pub fn start(pattern: &str, format: OutputFormat) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<(i32, PathBuf, PathBuf)>();
        let task = tokio::spawn(async move {
            while let Some((frame, file, thumb)) = rx.recv().await {
                let started = Instant::now();
                let event = match media::thumbnail(&file, format, &thumb).await {
                    Ok(()) => ProgressEvent::Thumbnail {
                        frame,
                        path: thumb.display().to_string(),
                        seconds: crate::tracker::round3(started.elapsed().as_secs_f64()),
                    },
                    Err(e) => ProgressEvent::Warning {
                        message: format!("no thumbnail of frame {frame}: {e}"),
                    },
                };
                println!("{}", event.to_line());
            }
        });
        Thumbnailer {
            pattern: pattern.to_string(),
            format,
            tx,
            task,
        }
    }

    fn paths(&self, frame: i32) -> (PathBuf, PathBuf) {
        (
            PathBuf::from(output_file(&self.pattern, frame, self.format)),
            PathBuf::from(thumbnail_file(&self.pattern, frame, self.format)),
        )
    }

    /// Make the thumbnail of a frame just saved.
    pub fn add(&self, frame: i32) {
        let (file, thumb) = self.paths(frame);
        // The worker lives as long as `self`; a send cannot fail before `finish`.
        let _ = self.tx.send((frame, file, thumb));
    }

    /// Make the thumbnail of a frame already on disk unless it has an up-to-date one.
    pub fn add_if_stale(&self, frame: i32) {
        let (file, thumb) = self.paths(frame);
        if media::thumbnail_stale(&file, &thumb) {
            let _ = self.tx.send((frame, file, thumb));
        }
    }

    /// Wait for the thumbnails asked for so far.
    pub async fn finish(self) {
        drop(self.tx);
        let _ = self.task.await;
    }

    /// Stop now (the batch was stopped): the thumbnail being made is abandoned.
    pub fn abort(self) {
        self.task.abort();
    }
}
