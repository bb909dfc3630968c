//! The JSON termination message `render-node` leaves in `/dev/termination-log`; the kubelet
//! copies it into the pod's container status, where the operator reads it.

use serde::{Deserialize, Serialize};

/// The kubelet keeps at most this many bytes of a termination message.
pub const MAX_BYTES: usize = 4096;

/// How the batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Succeeded,
    /// Exit code [`crate::exit::BAD_INPUT`]: retrying cannot help.
    BadInput,
    /// Exit code [`crate::exit::RENDER_FAILED`]: worth a retry.
    RenderFailed,
    /// Stopped by SIGTERM.
    Terminated,
    /// Exit code [`crate::exit::BAD_FRAME`]: frames Blender saved failed their check twice
    /// (see [`crate::checks::FrameChecks`]); worth a retry.
    BadFrame,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TerminationMessage {
    pub outcome: Outcome,
    /// Frames Blender rendered in this run.
    pub frames_rendered: u32,
    /// Frames already on disk, not rendered again.
    pub frames_skipped: u32,
    /// Frames of the batch not on disk at the end (possibly truncated to fit).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frames_missing: Vec<i32>,
    /// Mean wall time per rendered frame, Blender's start-up excluded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_per_frame: Option<f64>,
    /// The device Blender actually rendered on (`CPU`, `CUDA`, ...), as Blender reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blender_version: Option<String>,
    /// The highest frame of the batch on disk at the end, rendered by this run or skipped (its
    /// thumbnail is [`crate::preview::thumbnail_file`]); none when there is none, and on bad
    /// input found before rendering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_frame: Option<i32>,
    /// One line saying what went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `s` cut to at most `max` bytes (on a character boundary), with `…` when cut.
fn shorten(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
}

impl TerminationMessage {
    /// JSON that fits in [`MAX_BYTES`]: the frame list and the message are shortened if needed.
    pub fn to_json_bounded(&self) -> String {
        TerminationReport {
            message: self.clone(),
            scene: SceneFacts::default(),
        }
        .to_json_bounded()
    }

    pub fn parse(s: &str) -> Option<TerminationMessage> {
        serde_json::from_str(s.trim()).ok()
    }
}

/// What render-node found out about the scene before rendering. Its fields sit beside
/// [`TerminationMessage`]'s in the same JSON object (see [`TerminationReport`]), so a reader
/// that knows only the older fields still parses the message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SceneFacts {
    /// The Blender that saved the .blend file, `major.minor` from the file's header (`4.5`,
    /// `5.0`); [`TerminationMessage::blender_version`] is the Blender that rendered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_version: Option<String>,
    /// External files the scene uses that are not readable, as absolute paths (Blender's `//`
    /// resolved); possibly cut to fit, [`SceneFacts::missing_files_count`] has them all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_files: Vec<String>,
    /// How many external files are missing in all.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub missing_files_count: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The termination message render-node writes: [`TerminationMessage`] and [`SceneFacts`] in one
/// JSON object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TerminationReport {
    #[serde(flatten)]
    pub message: TerminationMessage,
    #[serde(flatten)]
    pub scene: SceneFacts,
}

impl TerminationReport {
    /// JSON that fits in [`MAX_BYTES`]: the message, the missing files and the frame list are
    /// shortened if needed, in that order.
    pub fn to_json_bounded(&self) -> String {
        const MAX_MESSAGE: usize = 512;
        const MAX_PATH: usize = 256;
        const MAX_FILES: usize = 20;
        let mut r = self.clone();
        if let Some(m) = r.message.message.as_mut() {
            shorten(m, MAX_MESSAGE);
        }
        r.scene.missing_files.truncate(MAX_FILES);
        for path in &mut r.scene.missing_files {
            shorten(path, MAX_PATH);
        }
        loop {
            let json = serde_json::to_string(&r).unwrap_or_default();
            if json.len() <= MAX_BYTES {
                return json;
            }
            if r.scene.missing_files.len() > 1 {
                let keep = r.scene.missing_files.len() / 2;
                r.scene.missing_files.truncate(keep);
            } else if !r.message.frames_missing.is_empty() {
                let keep = r.message.frames_missing.len() / 2;
                r.message.frames_missing.truncate(keep);
            } else {
                return json;
            }
        }
    }

    pub fn parse(s: &str) -> Option<TerminationReport> {
        serde_json::from_str(s.trim()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> TerminationMessage {
        TerminationMessage {
            outcome: Outcome::Succeeded,
            frames_rendered: 3,
            frames_skipped: 1,
            frames_missing: vec![],
            seconds_per_frame: Some(0.5),
            device: Some("CPU".into()),
            blender_version: Some("3.4.1".into()),
            last_frame: None,
            message: None,
        }
    }

    #[test]
    fn round_trips() {
        let m = message();
        assert_eq!(TerminationMessage::parse(&m.to_json_bounded()), Some(m));
    }

    #[test]
    fn huge_messages_are_cut_to_fit() {
        let mut m = message();
        m.outcome = Outcome::RenderFailed;
        m.frames_missing = (0..5000).collect();
        m.message = Some("é".repeat(5000));
        let json = m.to_json_bounded();
        assert!(json.len() <= MAX_BYTES, "{} bytes", json.len());
        let back = TerminationMessage::parse(&json).expect("valid JSON");
        assert_eq!(back.outcome, Outcome::RenderFailed);
        assert!(!back.frames_missing.is_empty());
        assert_eq!(back.frames_missing[..3], [0, 1, 2]);
    }

    #[test]
    fn scene_facts_sit_beside_the_older_fields() {
        let r = TerminationReport {
            message: TerminationMessage {
                outcome: Outcome::BadInput,
                message: Some("missing files".into()),
                ..message()
            },
            scene: SceneFacts {
                file_version: Some("5.0".into()),
                missing_files: vec!["/data/tex/wood.png".into()],
                missing_files_count: 1,
            },
        };
        let json = r.to_json_bounded();
        assert!(
            json.contains(r#""blenderVersion":"3.4.1""#)
                && json.contains(r#""fileVersion":"5.0""#)
                && json.contains(r#""missingFiles":["/data/tex/wood.png"]"#)
                && json.contains(r#""missingFilesCount":1"#),
            "{json}"
        );
        assert_eq!(TerminationReport::parse(&json), Some(r.clone()));
        // A reader of the older message parses it too.
        assert_eq!(TerminationMessage::parse(&json), Some(r.message.clone()));
        // And the older message reads as a report without scene facts.
        let old = TerminationReport::parse(&message().to_json_bounded()).expect("parses");
        assert_eq!(old.scene, SceneFacts::default());
    }

    #[test]
    fn many_missing_files_are_cut_to_fit_and_counted() {
        let r = TerminationReport {
            message: TerminationMessage {
                outcome: Outcome::BadInput,
                frames_missing: (0..2000).collect(),
                message: Some("x".repeat(2000)),
                ..message()
            },
            scene: SceneFacts {
                file_version: Some("4.5".into()),
                missing_files: (0..5000)
                    .map(|i| format!("/data/{}/{i}.png", "é".repeat(200)))
                    .collect(),
                missing_files_count: 5000,
            },
        };
        let json = r.to_json_bounded();
        assert!(json.len() <= MAX_BYTES, "{} bytes", json.len());
        let back = TerminationReport::parse(&json).expect("valid JSON");
        assert_eq!(back.scene.missing_files_count, 5000);
        assert!(
            !back.scene.missing_files.is_empty() && back.scene.missing_files.len() <= 20,
            "{}",
            back.scene.missing_files.len()
        );
        assert!(back.scene.missing_files[0].starts_with("/data/"));
        assert!(!back.message.frames_missing.is_empty());
    }
}
