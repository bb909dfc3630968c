//! What a render leaves for people to look at: a thumbnail of every frame (written by
//! `render-node` as it saves the frame) and, once every frame is on disk, a preview video and a
//! contact sheet (written by `render-preview`, the preview step's program). The operator builds
//! the preview Job's arguments from [`PreviewArgs`] and derives every path from these functions,
//! so the operator, the node image and `kubectl render` always agree on where files are.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::args::{DEFAULT_TERMINATION_LOG, OutputFormat, output_file};
use crate::frames::FrameSet;

/// The directory of thumbnails, beside the frames.
pub const THUMBS_DIR: &str = ".thumbs";
/// Width of a frame's thumbnail in pixels; the height keeps the frame's aspect.
pub const THUMB_WIDTH: u32 = 320;
/// The preview video's file name, beside the frames.
pub const VIDEO_FILE: &str = "preview.mp4";
/// The contact sheet's file name, beside the frames.
pub const CONTACT_SHEET_FILE: &str = "contact.jpg";
/// Most frames on a contact sheet; longer renders are sampled evenly.
pub const CONTACT_SHEET_MAX_TILES: u32 = 36;
/// Width of one tile of the contact sheet in pixels.
pub const CONTACT_SHEET_TILE_WIDTH: u32 = 240;

/// The directory part of an output pattern (`renders/shot/frame_####` → `renders/shot/`), with
/// its trailing slash; empty when the pattern has no directory.
pub fn output_dir(pattern: &str) -> &str {
    match pattern.rfind('/') {
        Some(i) => &pattern[..=i],
        None => "",
    }
}

/// The thumbnail of `frame`: `<dir>/.thumbs/<frame file's stem>.jpg`.
pub fn thumbnail_file(pattern: &str, frame: i32, format: OutputFormat) -> String {
    let file = output_file(pattern, frame, format);
    let (dir, name) = file.split_at(file.rfind('/').map_or(0, |i| i + 1));
    let stem = name
        .strip_suffix(format.extension())
        .or_else(|| name.rsplit_once('.').map(|(s, _)| s))
        .unwrap_or(name);
    format!("{dir}{THUMBS_DIR}/{stem}.jpg")
}

/// The preview video of a render whose frames follow `pattern`.
pub fn video_file(pattern: &str) -> String {
    format!("{}{VIDEO_FILE}", output_dir(pattern))
}

/// The contact sheet of a render whose frames follow `pattern`.
pub fn contact_sheet_file(pattern: &str) -> String {
    format!("{}{CONTACT_SHEET_FILE}", output_dir(pattern))
}

/// The contact sheet's grid for `frames` frames: (columns, rows). At most
/// [`CONTACT_SHEET_MAX_TILES`] tiles, about square, wider than tall; of the square grid and the
/// one a column wider, the one with fewer empty cells (24 frames: 6 × 4, not 5 × 5 with one
/// cell empty), since an empty cell reads as a frame that is missing.
pub fn contact_sheet_grid(frames: u32) -> (u32, u32) {
    let tiles = frames.clamp(1, CONTACT_SHEET_MAX_TILES);
    let mut square = 1;
    while square * square < tiles {
        square += 1;
    }
    let empty = |columns: u32| columns * tiles.div_ceil(columns) - tiles;
    let columns = if empty(square + 1) < empty(square) {
        square + 1
    } else {
        square
    };
    (columns, tiles.div_ceil(columns))
}

/// The preview video's codec.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, ValueEnum,
)]
pub enum PreviewCodec {
    /// H.264 in yuv420p: plays in every browser.
    #[default]
    #[serde(rename = "H264")]
    #[value(name = "H264")]
    H264,
    /// VP9: smaller files, plays in current browsers.
    #[serde(rename = "VP9")]
    #[value(name = "VP9")]
    Vp9,
}

impl PreviewCodec {
    pub fn as_str(self) -> &'static str {
        match self {
            PreviewCodec::H264 => "H264",
            PreviewCodec::Vp9 => "VP9",
        }
    }
}

/// Make a finished render's preview: `preview.mp4` and `contact.jpg` in the frames' directory,
/// made from the frames on disk (EXR and other HDR frames tone-mapped), each written to a
/// temporary name first and renamed, so a reader never sees half a file and running it again
/// replaces both.
#[derive(Parser, Debug, Clone, PartialEq)]
#[command(name = "render-preview", version, about, long_about = None)]
pub struct PreviewArgs {
    /// The frames' output path pattern, as given to render-node.
    #[arg(long, value_name = "PATTERN")]
    pub output: String,

    /// The frames' image format.
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,

    /// The render's frames, in the order the video shows them.
    #[arg(long, value_name = "FRAMES")]
    pub frames: FrameSet,

    /// Frames per second of the video.
    #[arg(long, default_value_t = 24)]
    pub fps: u32,

    /// Width of the video in pixels (the height keeps the aspect, rounded to even).
    #[arg(long, default_value_t = 640)]
    pub width: u32,

    /// The video's codec.
    #[arg(long, value_enum, default_value_t)]
    pub codec: PreviewCodec,

    /// Where to write the JSON termination message ([`PreviewReport`]).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_TERMINATION_LOG)]
    pub termination_log: PathBuf,

    /// The render's start-ahead markers to remove, every batch being done: the files
    /// `.renderfarm/PREFIX*` beside the frames (see `render-node --marker`).
    #[arg(long, value_name = "PREFIX")]
    pub markers: Option<String>,
}

impl PreviewArgs {
    /// The preview of `frames` written as `pattern` in `format`, with default settings.
    pub fn new(output: impl Into<String>, format: OutputFormat, frames: FrameSet) -> Self {
        PreviewArgs {
            output: output.into(),
            format,
            frames,
            fps: 24,
            width: 640,
            codec: PreviewCodec::default(),
            termination_log: PathBuf::from(DEFAULT_TERMINATION_LOG),
            markers: None,
        }
    }

    /// The command-line arguments (without the program name) that parse back into `self`.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "--output".to_string(),
            self.output.clone(),
            "--format".to_string(),
            self.format.as_str().to_string(),
            "--frames".to_string(),
            self.frames.to_string(),
            "--fps".to_string(),
            self.fps.to_string(),
            "--width".to_string(),
            self.width.to_string(),
            "--codec".to_string(),
            self.codec.as_str().to_string(),
        ];
        if let Some(prefix) = &self.markers {
            args.extend(["--markers".to_string(), prefix.clone()]);
        }
        if self.termination_log.as_os_str() != DEFAULT_TERMINATION_LOG {
            args.extend([
                "--termination-log".to_string(),
                self.termination_log.display().to_string(),
            ]);
        }
        args
    }

    /// Parse arguments as built by [`PreviewArgs::to_args`] (no program name).
    pub fn try_parse_from_args(args: &[String]) -> Result<Self, clap::Error> {
        Self::try_parse_from(
            std::iter::once("render-preview").chain(args.iter().map(String::as_str)),
        )
    }
}

/// The termination message `render-preview` leaves (JSON, camelCase).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreviewReport {
    /// True when both files were written.
    pub ok: bool,
    /// Frames in the video.
    pub frames: u32,
    /// The contact sheet's grid.
    #[serde(default)]
    pub columns: u32,
    #[serde(default)]
    pub rows: u32,
    /// One line saying what went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl PreviewReport {
    pub fn parse(s: &str) -> Option<PreviewReport> {
        serde_json::from_str(s.trim()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_sit_beside_the_frames() {
        let p = "/data/renders/shot/frame_####";
        assert_eq!(
            thumbnail_file(p, 7, OutputFormat::Png),
            "/data/renders/shot/.thumbs/frame_0007.jpg"
        );
        assert_eq!(
            thumbnail_file(p, 7, OutputFormat::OpenExr),
            "/data/renders/shot/.thumbs/frame_0007.jpg"
        );
        assert_eq!(video_file(p), "/data/renders/shot/preview.mp4");
        assert_eq!(contact_sheet_file(p), "/data/renders/shot/contact.jpg");
        assert_eq!(video_file("frame_##"), "preview.mp4");
        assert_eq!(
            thumbnail_file("f_##.png", 3, OutputFormat::Png),
            ".thumbs/f_03.jpg"
        );
    }

    #[test]
    fn contact_sheet_grid_is_squarish_and_bounded() {
        assert_eq!(contact_sheet_grid(0), (1, 1));
        assert_eq!(contact_sheet_grid(1), (1, 1));
        assert_eq!(contact_sheet_grid(2), (2, 1));
        assert_eq!(contact_sheet_grid(3), (3, 1));
        assert_eq!(contact_sheet_grid(5), (3, 2));
        assert_eq!(contact_sheet_grid(12), (4, 3));
        assert_eq!(contact_sheet_grid(23), (6, 4));
        assert_eq!(contact_sheet_grid(24), (6, 4));
        assert_eq!(contact_sheet_grid(25), (5, 5));
        assert_eq!(contact_sheet_grid(36), (6, 6));
        assert_eq!(contact_sheet_grid(250), (6, 6));
        for frames in 1..=CONTACT_SHEET_MAX_TILES {
            let (columns, rows) = contact_sheet_grid(frames);
            let cells = columns * rows;
            assert!(cells >= frames, "{frames}: {columns} x {rows}");
            assert!(cells - frames < columns, "{frames}: a row empty");
            assert!(
                columns >= rows && columns <= 2 * rows + 1,
                "{frames}: {columns} x {rows}"
            );
        }
    }

    #[test]
    fn args_round_trip() {
        let mut a = PreviewArgs::new(
            "/data/renders/x/frame_####",
            OutputFormat::OpenExr,
            "1..24:2".parse().expect("frames"),
        );
        a.fps = 12;
        a.codec = PreviewCodec::Vp9;
        assert_eq!(
            PreviewArgs::try_parse_from_args(&a.to_args()).ok(),
            Some(a.clone())
        );
        a.markers = Some("0b7c-".into());
        assert_eq!(PreviewArgs::try_parse_from_args(&a.to_args()).ok(), Some(a));
    }

    #[test]
    fn report_round_trips() {
        let r = PreviewReport {
            ok: false,
            frames: 3,
            columns: 2,
            rows: 2,
            message: Some("ffmpeg failed".into()),
        };
        let json = serde_json::to_string(&r).expect("json");
        assert_eq!(PreviewReport::parse(&json), Some(r));
    }
}
