//! How a batch ended: the outcome, its one-line message, and the termination message written
//! on every exit path.

use std::path::Path;

use render_contract::{
    FrameChecks, Outcome, ProgressEvent, SceneFacts, TerminationMessage, TerminationReport, exit,
};

use crate::parse::Class;

/// What happened to Blender, as far as the outcome is concerned.
#[derive(Debug, Default)]
pub struct Facts<'a> {
    /// The signal render-node received and passed on.
    pub stopped_by: Option<&'a str>,
    pub exit_code: Option<i32>,
    /// The signal that ended Blender.
    pub signal: Option<i32>,
    /// render-node killed Blender after it ignored SIGTERM.
    pub killed: bool,
    /// The cgroup's out-of-memory killer fired while Blender ran.
    pub oom_killed: bool,
    /// A GPU that is not there (render-node's own check inside Blender).
    pub bad_input: Option<&'a str>,
    pub errors: &'a [(Class, String)],
    pub warnings: &'a [String],
    /// Frames of the batch not on disk afterwards.
    pub missing: &'a [i32],
    /// Frames that failed their check twice (among `missing`), each with why.
    pub bad_frames: &'a [(i32, String)],
}

fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGSEGV => "SIGSEGV".into(),
        libc::SIGABRT => "SIGABRT".into(),
        libc::SIGKILL => "SIGKILL".into(),
        libc::SIGBUS => "SIGBUS".into(),
        libc::SIGILL => "SIGILL".into(),
        libc::SIGFPE => "SIGFPE".into(),
        libc::SIGTERM => "SIGTERM".into(),
        other => format!("signal {other}"),
    }
}

fn frame_list(frames: &[i32]) -> String {
    let shown: Vec<String> = frames.iter().take(10).map(i32::to_string).collect();
    if frames.len() > 10 {
        format!("{},… ({} frames)", shown.join(","), frames.len())
    } else {
        shown.join(",")
    }
}

/// The outcome and its one-line message. The files on disk are the truth: Blender sometimes
/// exits 0 having rendered nothing, and a frame it did not save is missing whatever it says.
pub fn verdict(f: &Facts) -> (Outcome, Option<String>) {
    let first = |class| {
        f.errors
            .iter()
            .find(|(c, _)| *c == class)
            .map(|(_, e)| e.clone())
    };
    if let Some(name) = f.stopped_by {
        let mut text = format!("stopped by {name}");
        if !f.missing.is_empty() {
            text.push_str(&format!("; frames {} not rendered", frame_list(f.missing)));
        }
        return (Outcome::Terminated, Some(text));
    }
    if let Some(text) = f.bad_input {
        return (Outcome::BadInput, Some(text.to_string()));
    }
    if let Some((_, why)) = f.bad_frames.first() {
        let frames: Vec<i32> = f.bad_frames.iter().map(|(frame, _)| *frame).collect();
        return (
            Outcome::BadFrame,
            Some(format!(
                "frames {} failed their check rendered twice: {why}",
                frame_list(&frames)
            )),
        );
    }
    if f.missing.is_empty() {
        let mut notes: Vec<String> = f.warnings.to_vec();
        if f.exit_code != Some(0) {
            let how = match (f.exit_code, f.signal) {
                (Some(c), _) => format!("exit code {c}"),
                (None, Some(s)) => signal_name(s),
                (None, None) => "an unknown status".into(),
            };
            notes.push(format!("Blender ended with {how} after saving every frame"));
        }
        return (
            Outcome::Succeeded,
            (!notes.is_empty()).then(|| notes.join("; ")),
        );
    }
    let missing = format!("frames {} missing", frame_list(f.missing));
    if let Some(e) = first(Class::BadInput) {
        return (Outcome::BadInput, Some(e));
    }
    if f.exit_code == Some(exit::BAD_INPUT) {
        return (
            Outcome::BadInput,
            Some(
                first(Class::Retry)
                    .unwrap_or_else(|| format!("Blender refused the input; {missing}")),
            ),
        );
    }
    let text = if f.oom_killed {
        format!(
            "Blender was killed by the out-of-memory killer (raise the memory limit); {missing}"
        )
    } else if f.killed {
        format!("Blender did not stop after SIGTERM and was killed; {missing}")
    } else if let Some(sig) = f.signal {
        let why = if sig == libc::SIGKILL {
            " (out of memory?)"
        } else {
            ""
        };
        format!("Blender was killed by {}{why}; {missing}", signal_name(sig))
    } else if let Some(e) = first(Class::Retry) {
        format!("{e}; {missing}")
    } else {
        match f.exit_code {
            Some(0) => format!("Blender exited 0 but {missing}"),
            Some(c) => format!("Blender exited with code {c}; {missing}"),
            None => format!("Blender ended abnormally; {missing}"),
        }
    };
    (Outcome::RenderFailed, Some(text))
}

pub fn exit_code(outcome: Outcome) -> i32 {
    match outcome {
        Outcome::Succeeded => exit::SUCCESS,
        Outcome::BadInput => exit::BAD_INPUT,
        Outcome::RenderFailed => exit::RENDER_FAILED,
        Outcome::Terminated => exit::TERMINATED,
        Outcome::BadFrame => exit::BAD_FRAME,
    }
}

/// A message for an end without Blender (bad input, nothing to do, could not start).
pub fn plain(outcome: Outcome, text: impl Into<String>) -> TerminationMessage {
    TerminationMessage {
        outcome,
        frames_rendered: 0,
        frames_skipped: 0,
        frames_missing: vec![],
        seconds_per_frame: None,
        device: None,
        blender_version: None,
        last_frame: None,
        message: Some(text.into()),
    }
}

/// The end of every path: the message on stderr, the `done` event on stdout, the termination
/// message with what is known of the scene in `log` (a warning if it cannot be written).
/// Returns the exit code.
pub fn finish(log: &Path, msg: &TerminationMessage, scene: &SceneFacts) -> i32 {
    finish_checked(log, msg, scene, &FrameChecks::default())
}

/// [`finish`], with what the frame checks found beside the report.
pub fn finish_checked(
    log: &Path,
    msg: &TerminationMessage,
    scene: &SceneFacts,
    checks: &FrameChecks,
) -> i32 {
    let code = exit_code(msg.outcome);
    if let Some(m) = &msg.message {
        eprintln!("render-node: {m}");
    }
    println!(
        "{}",
        ProgressEvent::Done {
            rendered: msg.frames_rendered,
            skipped: msg.frames_skipped,
            seconds_per_frame: msg.seconds_per_frame,
            exit_code: code,
        }
        .to_line()
    );
    let report = TerminationReport {
        message: msg.clone(),
        scene: scene.clone(),
    };
    let json = render_contract::checks::to_json_bounded(&report, checks);
    if let Err(e) = std::fs::write(log, json) {
        eprintln!(
            "render-node: warning: cannot write the termination message to {}: {e}",
            log.display()
        );
    }
    code
}

/// The cgroup's count of out-of-memory kills (cgroup v2 `memory.events`, v1 `oom_control`).
pub fn oom_kills() -> Option<u64> {
    [
        "/sys/fs/cgroup/memory.events",
        "/sys/fs/cgroup/memory/memory.oom_control",
    ]
    .iter()
    .find_map(|p| {
        let text = std::fs::read_to_string(p).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_on_disk_decide_success() {
        let ok = Facts {
            exit_code: Some(0),
            ..Facts::default()
        };
        assert_eq!(verdict(&ok), (Outcome::Succeeded, None));
        let nothing = Facts {
            exit_code: Some(0),
            missing: &[20, 21],
            ..Facts::default()
        };
        assert_eq!(
            verdict(&nothing),
            (
                Outcome::RenderFailed,
                Some("Blender exited 0 but frames 20,21 missing".into())
            )
        );
        let late_crash = Facts {
            exit_code: None,
            signal: Some(libc::SIGSEGV),
            ..Facts::default()
        };
        assert_eq!(
            verdict(&late_crash),
            (
                Outcome::Succeeded,
                Some("Blender ended with SIGSEGV after saving every frame".into())
            )
        );
        let warned = Facts {
            exit_code: Some(0),
            warnings: &["frames 20 are outside".to_string()],
            ..Facts::default()
        };
        assert_eq!(verdict(&warned).1.as_deref(), Some("frames 20 are outside"));
    }

    #[test]
    fn bad_input_beats_retry_and_stop_beats_everything() {
        let errors = [
            (Class::Retry, "Error: something".to_string()),
            (
                Class::BadInput,
                "Error: File format is not supported in file '/d/x.blend'".to_string(),
            ),
        ];
        let f = Facts {
            exit_code: Some(1),
            errors: &errors,
            missing: &[1],
            ..Facts::default()
        };
        assert_eq!(verdict(&f).0, Outcome::BadInput);
        assert_eq!(verdict(&f).1.as_deref(), Some(errors[1].1.as_str()));
        let gpu = Facts {
            exit_code: Some(64),
            bad_input: Some("no CUDA device found"),
            missing: &[1],
            ..Facts::default()
        };
        assert_eq!(
            verdict(&gpu),
            (Outcome::BadInput, Some("no CUDA device found".into()))
        );
        let stopped = Facts {
            stopped_by: Some("SIGTERM"),
            signal: Some(15),
            errors: &errors,
            missing: &[2, 3],
            ..Facts::default()
        };
        assert_eq!(
            verdict(&stopped),
            (
                Outcome::Terminated,
                Some("stopped by SIGTERM; frames 2,3 not rendered".into())
            )
        );
    }

    #[test]
    fn retryable_failures_say_why() {
        let missing: Vec<i32> = (1..=12).collect();
        let oom = Facts {
            signal: Some(9),
            oom_killed: true,
            missing: &missing,
            ..Facts::default()
        };
        let (outcome, text) = verdict(&oom);
        assert_eq!(outcome, Outcome::RenderFailed);
        assert_eq!(
            text.as_deref(),
            Some(
                "Blender was killed by the out-of-memory killer (raise the memory limit); frames 1,2,3,4,5,6,7,8,9,10,… (12 frames) missing"
            )
        );
        let crash = Facts {
            signal: Some(libc::SIGSEGV),
            missing: &[4],
            ..Facts::default()
        };
        assert_eq!(
            verdict(&crash).1.as_deref(),
            Some("Blender was killed by SIGSEGV; frames 4 missing")
        );
        let py = [(Class::Retry, "Python error: RuntimeError: boom".to_string())];
        let f = Facts {
            exit_code: Some(1),
            errors: &py,
            missing: &[4],
            ..Facts::default()
        };
        assert_eq!(
            verdict(&f),
            (
                Outcome::RenderFailed,
                Some("Python error: RuntimeError: boom; frames 4 missing".into())
            )
        );
        assert_eq!(exit_code(Outcome::RenderFailed), 75);
    }

    #[test]
    fn frames_failing_twice_are_a_bad_frame_naming_them() {
        let bad = [
            (
                2,
                "frame /o/f_0002.png holds 3 NaN or infinite values in R".to_string(),
            ),
            (
                5,
                "frame /o/f_0005.png is 8x8, the scene renders 16x9".to_string(),
            ),
        ];
        let f = Facts {
            exit_code: Some(0),
            missing: &[2, 5],
            bad_frames: &bad,
            ..Facts::default()
        };
        let (outcome, text) = verdict(&f);
        assert_eq!(outcome, Outcome::BadFrame);
        assert_eq!(
            text.as_deref(),
            Some(
                "frames 2,5 failed their check rendered twice: frame /o/f_0002.png holds 3 NaN or infinite values in R"
            )
        );
        assert_eq!(exit_code(outcome), exit::BAD_FRAME);
        // A stop still says it was stopped.
        let stopped = Facts {
            stopped_by: Some("SIGTERM"),
            ..f
        };
        assert_eq!(verdict(&stopped).0, Outcome::Terminated);
    }
}
