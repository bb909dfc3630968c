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
    /// One line saying what went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl TerminationMessage {
    /// JSON that fits in [`MAX_BYTES`]: the frame list and the message are shortened if needed.
    pub fn to_json_bounded(&self) -> String {
        const MAX_MESSAGE: usize = 512;
        let mut msg = self.clone();
        if let Some(m) = msg.message.as_mut().filter(|m| m.len() > MAX_MESSAGE) {
            let mut cut = MAX_MESSAGE;
            while !m.is_char_boundary(cut) {
                cut -= 1;
            }
            m.truncate(cut);
            m.push('…');
        }
        loop {
            let json = serde_json::to_string(&msg).unwrap_or_default();
            if json.len() <= MAX_BYTES || msg.frames_missing.is_empty() {
                return json;
            }
            let keep = msg.frames_missing.len() / 2;
            msg.frames_missing.truncate(keep);
        }
    }

    pub fn parse(s: &str) -> Option<TerminationMessage> {
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
}
