//! What render-node's check of every saved frame found, in the termination message beside
//! [`crate::TerminationReport`]'s fields (one JSON object): a reader of the older fields parses
//! the same message, and [`FrameChecks::parse`] reads these from it.

use serde::{Deserialize, Serialize};

use crate::termination::{MAX_BYTES, TerminationReport};

/// At most this many frames are listed in each of [`FrameChecks`]'s lists.
pub const MAX_FRAMES: usize = 50;
/// At most this many passes are listed, each cut at [`MAX_PASS_BYTES`].
pub const MAX_PASSES: usize = 64;
pub const MAX_PASS_BYTES: usize = 64;

/// What the frame checks found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FrameChecks {
    /// Frames that failed their check after being rendered a second time (the batch's outcome
    /// is then [`crate::Outcome::BadFrame`]); their files are removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bad_frames: Vec<i32>,
    /// Frames that failed their check once and passed it rendered again, in the same pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rerendered_frames: Vec<i32>,
    /// Frames of one flat colour (a fade to black is one): a warning, or bad frames with
    /// `--blank-frames fail`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blank_frames: Vec<i32>,
    /// The passes the first frame checked holds, `ViewLayer.Pass` (multilayer EXR only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passes: Vec<String>,
}

impl FrameChecks {
    pub fn is_empty(&self) -> bool {
        *self == FrameChecks::default()
    }

    /// The checks in a termination message (none in one from an older render-node).
    pub fn parse(s: &str) -> FrameChecks {
        serde_json::from_str(s.trim()).unwrap_or_default()
    }

    fn bounded(&self) -> FrameChecks {
        let mut c = self.clone();
        for list in [
            &mut c.bad_frames,
            &mut c.rerendered_frames,
            &mut c.blank_frames,
        ] {
            list.truncate(MAX_FRAMES);
        }
        c.passes.truncate(MAX_PASSES);
        for p in &mut c.passes {
            if p.len() > MAX_PASS_BYTES {
                let mut cut = MAX_PASS_BYTES;
                while !p.is_char_boundary(cut) {
                    cut -= 1;
                }
                p.truncate(cut);
            }
        }
        c
    }
}

/// `report` and `checks` as one JSON object within [`MAX_BYTES`]: the report's list of
/// missing frames is halved first (the bad frames are among them), then the checks' lists,
/// until it fits.
pub fn to_json_bounded(report: &TerminationReport, checks: &FrameChecks) -> String {
    let mut report = report.clone();
    let mut checks = checks.bounded();
    loop {
        let base = report.to_json_bounded();
        if checks.is_empty() {
            return base;
        }
        let merged = merge(&base, &checks);
        if merged.len() <= MAX_BYTES {
            return merged;
        }
        let missing = &mut report.message.frames_missing;
        if missing.len() > 1 {
            missing.truncate(missing.len() / 2);
            continue;
        }
        for list in [
            &mut checks.bad_frames,
            &mut checks.rerendered_frames,
            &mut checks.blank_frames,
        ] {
            list.truncate(list.len() / 2);
        }
        let keep = checks.passes.len() / 2;
        checks.passes.truncate(keep);
    }
}

fn merge(base: &str, checks: &FrameChecks) -> String {
    let (Ok(serde_json::Value::Object(mut obj)), Ok(serde_json::Value::Object(extra))) = (
        serde_json::from_str::<serde_json::Value>(base),
        serde_json::to_value(checks),
    ) else {
        return base.to_string();
    };
    obj.extend(extra);
    serde_json::to_string(&obj).unwrap_or_else(|_| base.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Outcome, SceneFacts, TerminationMessage};

    fn report() -> TerminationReport {
        TerminationReport {
            message: TerminationMessage {
                outcome: Outcome::BadFrame,
                frames_rendered: 1,
                frames_skipped: 0,
                frames_missing: vec![2],
                seconds_per_frame: None,
                device: None,
                blender_version: None,
                last_frame: Some(1),
                message: Some("frames 2 failed their check twice".into()),
            },
            scene: SceneFacts::default(),
        }
    }

    #[test]
    fn checks_sit_beside_the_report_and_older_readers_still_parse_it() {
        let checks = FrameChecks {
            bad_frames: vec![2],
            rerendered_frames: vec![],
            blank_frames: vec![1],
            passes: vec!["ViewLayer.Combined".into(), "ViewLayer.Depth".into()],
        };
        let json = to_json_bounded(&report(), &checks);
        assert!(
            json.contains(r#""badFrames":[2]"#) && json.contains(r#""outcome":"BadFrame""#),
            "{json}"
        );
        assert_eq!(FrameChecks::parse(&json), checks);
        assert_eq!(TerminationReport::parse(&json), Some(report()));
        assert_eq!(
            FrameChecks::parse(&report().to_json_bounded()),
            FrameChecks::default()
        );
    }

    #[test]
    fn many_checks_are_cut_to_fit() {
        let checks = FrameChecks {
            bad_frames: (0..5000).collect(),
            rerendered_frames: (0..5000).collect(),
            blank_frames: (0..5000).collect(),
            passes: (0..500)
                .map(|i| format!("{}{i}", "é".repeat(100)))
                .collect(),
        };
        let mut r = report();
        r.message.frames_missing = (0..2000).collect();
        let json = to_json_bounded(&r, &checks);
        assert!(json.len() <= MAX_BYTES, "{} bytes", json.len());
        let back = FrameChecks::parse(&json);
        assert!(!back.bad_frames.is_empty() && back.bad_frames.len() <= MAX_FRAMES);
        assert!(back.passes.iter().all(|p| p.len() <= MAX_PASS_BYTES));
    }
}
