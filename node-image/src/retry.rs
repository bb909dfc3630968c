//! Blender's run, then every frame it saved checked (`verify`); after a clean run, the
//! frames that failed are rendered once more by a second Blender run in the same pod, and
//! checked again. A frame failing twice is removed and makes the batch `BadFrame`. After a
//! run that was not clean (stopped, crashed) a frame that fails is only removed: the batch
//! fails for that reason, and a retry of the batch renders it again.

use std::io;
use std::path::Path;

use render_contract::{BlankFrames, ProgressEvent, RenderArgs};

use crate::blender::{self, Ended, Stop};
use crate::check;
use crate::thumbs::Thumbnailer;
use crate::tracker::Tracker;
use crate::verify::{self, BadFrame, Checked};

/// What the checks found, for the termination message.
#[derive(Debug, Default)]
pub struct Checks {
    /// Frames that failed their check for good, each with why (their files are gone).
    pub bad: Vec<(i32, String)>,
    /// Frames that failed once and passed rendered again.
    pub rerendered: Vec<i32>,
    /// Frames of one flat colour that count (a warning).
    pub blank: Vec<i32>,
    /// The passes of the first frame checked (multilayer EXR).
    pub passes: Vec<String>,
}

impl Checks {
    fn passed(&mut self, frame: i32, checked: Checked) {
        if checked.flat {
            self.blank.push(frame);
        }
        if self.passes.is_empty() {
            self.passes = checked.passes;
        }
    }
}

/// Blender's run (or two) and what the checks found.
pub struct Rendered {
    pub tracker: Tracker,
    pub ended: Ended,
    pub checks: Checks,
}

/// Run Blender on `todo`, check the frames, render those that fail once more.
pub async fn render_checked(
    args: &RenderArgs,
    todo: &[(i32, String)],
    stop: &mut Stop,
    thumbs: &Thumbnailer,
) -> io::Result<Rendered> {
    let (tracker, ended, checks) = render_twice(args, todo, stop, thumbs).await?;
    Ok(Rendered {
        tracker,
        ended,
        checks,
    })
}

async fn render_twice(
    args: &RenderArgs,
    todo: &[(i32, String)],
    stop: &mut Stop,
    thumbs: &Thumbnailer,
) -> io::Result<(Tracker, Ended, Checks)> {
    let (mut tracker, mut ended) = blender::render(args, todo, stop, thumbs).await?;
    let mut checks = Checks::default();
    if ended.stopped_by.is_some() || tracker.bad_input.is_some() {
        return Ok((tracker, ended, checks));
    }
    let failed = check_frames(args, todo, tracker.resolution, &mut checks).await;
    if failed.is_empty() {
        return Ok((tracker, ended, checks));
    }
    let clean = ended.status.success();
    let again: Vec<(i32, String)> = failed
        .iter()
        .map(|(f, why)| {
            let again = if clean { "; rendering it again" } else { "" };
            warn(format!("frame {f} failed its check: {why}{again}"));
            (*f, args.output_file(*f))
        })
        .collect();
    if !clean {
        // Gone from disk, so missing: the batch fails for what went wrong with Blender.
        return Ok((tracker, ended, checks));
    }
    let (second, ended_again) = blender::render(args, &again, stop, thumbs).await?;
    tracker.absorb(second);
    ended.stopped_by = ended_again.stopped_by;
    ended.killed |= ended_again.killed;
    if ended.stopped_by.is_some() {
        return Ok((tracker, ended, checks));
    }
    checks.bad = check_frames(args, &again, tracker.resolution, &mut checks).await;
    checks.rerendered = again
        .iter()
        .map(|(f, _)| *f)
        .filter(|f| !checks.bad.iter().any(|(b, _)| b == f))
        .collect();
    Ok((tracker, ended, checks))
}

impl Checks {
    /// The checks as the termination message carries them.
    pub fn to_contract(&self) -> render_contract::FrameChecks {
        render_contract::FrameChecks {
            bad_frames: self.bad.iter().map(|(f, _)| *f).collect(),
            rerendered_frames: self.rerendered.clone(),
            blank_frames: self.blank.clone(),
            passes: self.passes.clone(),
        }
    }

    /// The warning that frames are one flat colour, as an event too.
    pub fn blank_warning(&self) -> Option<String> {
        let (first, rest) = self.blank.split_first()?;
        let mut text = format!("frames {first}");
        for f in rest.iter().take(9) {
            text.push_str(&format!(",{f}"));
        }
        if rest.len() > 9 {
            text.push_str(&format!(",… ({} frames)", self.blank.len()));
        }
        text.push_str(" are one flat colour (set spec.verify.blankFrames to Fail to fail them)");
        warn(text.clone());
        Some(text)
    }
}

fn warn(message: String) {
    println!("{}", ProgressEvent::Warning { message }.to_line());
}

/// Check the frames of `todo` on disk (off the async thread: decoding takes a while), note
/// those that pass in `checks`, remove those that fail and return them with why.
async fn check_frames(
    args: &RenderArgs,
    todo: &[(i32, String)],
    size: Option<(usize, usize)>,
    checks: &mut Checks,
) -> Vec<(i32, String)> {
    let on_disk: Vec<(i32, String)> = todo
        .iter()
        .filter(|(_, p)| check::rendered(p))
        .cloned()
        .collect();
    let (format, blank) = (args.format, args.blank_frames);
    let results = tokio::task::spawn_blocking(move || {
        on_disk
            .into_iter()
            .map(|(f, p)| {
                // A decoder that panics on a damaged file fails that frame only.
                let checked =
                    std::panic::catch_unwind(|| verify::frame(Path::new(&p), format, size))
                        .unwrap_or_else(|_| {
                            Err(BadFrame::Corrupt {
                                path: p.clone(),
                                format: format.as_str(),
                                why: "the decoder gave up on it".into(),
                            })
                        });
                let result = checked.and_then(|c| {
                    if c.flat && blank == BlankFrames::Fail {
                        Err(BadFrame::Blank { path: p.clone() })
                    } else {
                        Ok(c)
                    }
                });
                (f, p, result)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let mut failed = Vec::new();
    for (frame, path, result) in results {
        match result {
            Ok(checked) => checks.passed(frame, checked),
            Err(why) => {
                // A frame that does not count must not be skipped by a retry either.
                let _ = std::fs::remove_file(&path);
                failed.push((frame, why.to_string()));
            }
        }
    }
    failed
}
