//! Progress events `render-node` prints on stdout, one JSON object per line, so `kubectl logs`
//! reads as a timeline and tools can follow a render.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ProgressEvent {
    /// The batch is checked and Blender is about to start.
    Start {
        frames: Vec<i32>,
        to_render: Vec<i32>,
        skipped: Vec<i32>,
        device: String,
        /// The Blender that saved the .blend file (`major.minor`, from its header).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file_version: Option<String>,
    },
    /// Blender may start: the pod's NetworkPolicy is in force (`--wait-isolated`). A connection
    /// to `probe` was `blocked` (`timed out`, `refused`, ...) after `through` connections got
    /// through, `waited_seconds` after render-node began to wait.
    Isolated {
        probe: String,
        through: u32,
        blocked: String,
        waited_seconds: f64,
    },
    /// Started ahead of its turn (`--after`): Blender loads the scene, then waits for the
    /// batch whose marker is `after` to be done before it renders.
    Waiting { after: String },
    /// The wait is over: `opened` is `done` (that batch's Blender ended), `stale` (its marker
    /// stopped changing: its pod is gone) or `absent` (it never wrote one).
    Handoff {
        after: String,
        opened: String,
        waited_seconds: f64,
    },
    /// External files the scene uses that are not readable (at most 100 listed, `count` in
    /// all); `fail`: the batch fails as bad input, `warn`: it renders without them.
    MissingFiles {
        action: String,
        count: u32,
        files: Vec<MissingFile>,
    },
    /// Blender loaded the scene and picked its device: the device the frames render on
    /// (`CPU` after a fallback), with the GPUs' names when it has some.
    Device {
        requested: String,
        used: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        fallback: bool,
    },
    /// Blender is ready and starts rendering; `startup_seconds` is the time from starting
    /// Blender to its first frame (loading the program and the .blend file).
    Rendering {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        blender_version: Option<String>,
        startup_seconds: f64,
    },
    /// Blender started a frame.
    FrameStarted { frame: i32 },
    /// Cycles/Eevee sample progress within a frame.
    Samples { frame: i32, done: u32, total: u32 },
    /// Blender saved a frame.
    FrameSaved {
        frame: i32,
        path: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        seconds: Option<f64>,
    },
    /// A frame's thumbnail ([`crate::preview::thumbnail_file`]) was written; `seconds` is the
    /// time ffmpeg took.
    Thumbnail {
        frame: i32,
        path: String,
        seconds: f64,
    },
    /// A line from Blender that says something went wrong.
    BlenderError { message: String },
    /// Something the user should know that does not fail the batch (a CPU fallback, frames
    /// outside the scene's range, a partial file removed after an interrupted render).
    Warning { message: String },
    /// The batch ended; mirrors the termination message.
    Done {
        rendered: u32,
        skipped: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        seconds_per_frame: Option<f64>,
        exit_code: i32,
    },
}

/// One external file a scene uses that is not readable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingFile {
    /// `image`, `library`, `movie clip`, `font`, `volume` or `cache file`.
    pub kind: String,
    /// The data-block's name in the scene.
    pub name: String,
    /// The path, absolute (as Blender resolves `//`).
    pub path: String,
}

impl ProgressEvent {
    /// One JSON line.
    pub fn to_line(&self) -> String {
        // Serialising these plain types cannot fail; fall back to a debug line if it ever did.
        serde_json::to_string(self)
            .unwrap_or_else(|e| format!("{{\"event\":\"error\",\"message\":\"{e}\"}}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tagged_json_lines() {
        let e = ProgressEvent::FrameSaved {
            frame: 3,
            path: "/o/f_0003.png".into(),
            seconds: Some(0.25),
        };
        let line = e.to_line();
        assert_eq!(
            line,
            r#"{"event":"frame_saved","frame":3,"path":"/o/f_0003.png","seconds":0.25}"#
        );
        assert_eq!(serde_json::from_str::<ProgressEvent>(&line).ok(), Some(e));
    }

    #[test]
    fn device_event_omits_what_it_does_not_know() {
        let e = ProgressEvent::Device {
            requested: "CUDA".into(),
            used: "CPU".into(),
            detail: None,
            fallback: true,
        };
        let line = e.to_line();
        assert_eq!(
            line,
            r#"{"event":"device","requested":"CUDA","used":"CPU","fallback":true}"#
        );
        assert_eq!(serde_json::from_str::<ProgressEvent>(&line).ok(), Some(e));
        let cpu = r#"{"event":"device","requested":"CPU","used":"CPU"}"#;
        assert!(matches!(
            serde_json::from_str::<ProgressEvent>(cpu),
            Ok(ProgressEvent::Device {
                fallback: false,
                ..
            })
        ));
    }
}
