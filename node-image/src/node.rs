//! One batch, start to end: check the input (and that this Blender can open the file), skip
//! frames on disk, run Blender once for the rest, make each frame's thumbnail, verify every
//! file, and leave the termination message.

use std::os::unix::process::ExitStatusExt;

use render_contract::{Outcome, ProgressEvent, RenderArgs, SceneFacts, TerminationMessage};

use crate::blend::{self, Version};
use crate::blender::{self, Ended, Stop};
use crate::report::{self, Facts};
use crate::retry::{self, Rendered};
use crate::thumbs::Thumbnailer;
use crate::tracker::{self, Tracker};
use crate::{check, fault, isolation};
use render_node::handoff;

pub async fn run(args: RenderArgs, mut stop: Stop) -> i32 {
    let log = args.termination_log.clone();
    // From the start, so a batch started after this one waits while this one checks its
    // input; done once Blender has ended, or on any early return (dropped).
    let mut marker = args
        .marker
        .as_ref()
        .map(|name| handoff::Marker::start(handoff::marker_path(&args.output, name)));
    let mut scene = SceneFacts::default();
    // The storage first: read-only or lost on this node is the node's fault, not the input's.
    if let Some((code, why)) = fault::probe(&args) {
        return fault::finish(&log, code, why);
    }
    let checked = check::absolute(args).and_then(|a| check::input(&a).map(|v| (a, v)));
    let (args, file_version) = match checked {
        Ok(checked) => checked,
        Err(why) => return report::finish(&log, &report::plain(Outcome::BadInput, why), &scene),
    };
    scene.file_version = Some(file_version.to_string());
    let (todo, skipped) = check::missing(&args);
    let work = Work { todo, skipped };
    announce(&args, &work, &scene);
    if work.todo.is_empty() {
        return report::finish(&log, &all_on_disk(&args, &work).await, &scene);
    }
    let blender_version = blender_version(&args).await;
    if let Some(msg) = too_new(&args, file_version, blender_version.as_deref(), &work) {
        return report::finish(&log, &msg, &scene);
    }
    // Blender runs the scene: not before the pod's NetworkPolicy holds.
    let isolation = match isolation::before_blender(args.wait_isolated, &mut stop).await {
        Ok(warning) => warning,
        Err(signal) => {
            let why = format!("stopped by {signal} before Blender started");
            return report::finish(&log, &work.unrendered(Outcome::Terminated, why), &scene);
        }
    };
    let oom_before = report::oom_kills();
    let thumbs = thumbnailer(&args, &work.skipped);
    let rendered = retry::render_checked(&args, &work.todo, &mut stop, &thumbs).await;
    // Thumbnails and checks take little CPU: the next batch renders meanwhile.
    if let Some(m) = marker.as_mut() {
        m.done();
    }
    let done = match rendered {
        Ok(done) => done,
        Err(e) => {
            thumbs.finish().await;
            let why = format!("cannot run Blender ({}): {e}", args.blender.display());
            let mut msg = work.unrendered(Outcome::RenderFailed, why);
            msg.blender_version = blender_version;
            msg.last_frame = work.skipped.iter().max().copied();
            return report::finish(&log, &msg, &scene);
        }
    };
    end_thumbnails(thumbs, &done.ended).await;
    let mut warnings = warnings(isolation, &done.tracker, &done.ended, &work.todo);
    warnings.extend(done.checks.blank_warning());
    let msg = ended_message(&args, &work, &done, oom_before, &warnings, blender_version);
    scene.missing_files = done.tracker.missing_files.clone();
    scene.missing_files_count = done.tracker.missing_files_count;
    let code = report::finish_checked(&log, &msg, &scene, &done.checks.to_contract());
    // Blender killed by the machine (not by render-node or the OOM killer) is the node's fault.
    fault::after_blender(code, &done.ended, oom_before, done.tracker.gpu_unusable)
}

/// The batch's frames: those to render, each with its expected file, and those on disk.
struct Work {
    todo: Vec<(i32, String)>,
    skipped: Vec<i32>,
}

impl Work {
    fn to_render(&self) -> Vec<i32> {
        self.todo.iter().map(|(f, _)| *f).collect()
    }

    /// A message for an end before Blender rendered anything: every frame to render missing.
    fn unrendered(&self, outcome: Outcome, why: String) -> TerminationMessage {
        let mut msg = report::plain(outcome, why);
        msg.frames_skipped = self.skipped.len() as u32;
        msg.frames_missing = self.to_render();
        msg
    }
}

/// The `start` event: what the batch renders and what it skips.
fn announce(args: &RenderArgs, work: &Work, scene: &SceneFacts) {
    println!(
        "{}",
        ProgressEvent::Start {
            frames: args.frames.frames(),
            to_render: work.to_render(),
            skipped: work.skipped.clone(),
            device: args.device.as_str().to_string(),
            file_version: scene.file_version.clone(),
        }
        .to_line()
    );
}

/// The thumbnail worker. Frames on disk without a thumbnail (rendered by an older image, or
/// before a crash) get one too.
fn thumbnailer(args: &RenderArgs, skipped: &[i32]) -> Thumbnailer {
    let t = Thumbnailer::start(&args.output, args.format);
    for f in skipped {
        t.add_if_stale(*f);
    }
    t
}

/// Nothing to render: the batch succeeds once the thumbnails are made.
async fn all_on_disk(args: &RenderArgs, work: &Work) -> TerminationMessage {
    thumbnailer(args, &work.skipped).finish().await;
    let mut msg = report::plain(Outcome::Succeeded, "every frame was already on disk");
    msg.frames_skipped = work.skipped.len() as u32;
    msg.last_frame = work.skipped.iter().max().copied();
    msg
}

/// The image says which Blender it has; elsewhere Blender is asked.
async fn blender_version(args: &RenderArgs) -> Option<String> {
    match &args.blender_version {
        Some(v) => Some(v.clone()),
        None => blender::version(&args.blender).await,
    }
}

/// A bad-input message when the file was saved by a newer Blender than this one.
fn too_new(
    args: &RenderArgs,
    file_version: Version,
    blender_version: Option<&str>,
    work: &Work,
) -> Option<TerminationMessage> {
    let full = blender_version?;
    let version = Version::parse(full)?;
    let why = blend::too_new(&args.blend_file, file_version, version, full)?;
    let mut msg = work.unrendered(Outcome::BadInput, why);
    msg.blender_version = Some(full.to_string());
    Some(msg)
}

async fn end_thumbnails(thumbs: Thumbnailer, ended: &Ended) {
    if ended.stopped_by.is_some() {
        // The kubelet's grace period is short: the batch's end comes first.
        thumbs.abort();
    } else {
        thumbs.finish().await;
    }
}

/// The isolation warning and Blender's warnings; after an unclean end, frames written but
/// never reported saved are removed, and that is a warning too.
fn warnings(
    isolation: Option<String>,
    tracker: &Tracker,
    ended: &Ended,
    todo: &[(i32, String)],
) -> Vec<String> {
    let clean = ended.status.success() && ended.stopped_by.is_none();
    let mut warnings: Vec<String> = isolation
        .into_iter()
        .chain(tracker.warnings.clone())
        .collect();
    if !clean {
        // File times come from a coarse clock that can lag the one read before spawning
        // Blender by a few milliseconds: allow for it.
        let since = ended.spawned - std::time::Duration::from_secs(2);
        let removed = check::remove_partial(todo, &tracker.saved, since);
        if !removed.is_empty() {
            let text = format!(
                "removed frames {removed:?}, written but never reported saved by Blender (possibly cut short)"
            );
            println!(
                "{}",
                ProgressEvent::Warning {
                    message: text.clone()
                }
                .to_line()
            );
            warnings.push(text);
        }
    }
    warnings
}

/// The termination message once Blender has ended.
fn ended_message(
    args: &RenderArgs,
    work: &Work,
    done: &Rendered,
    oom_before: Option<u64>,
    warnings: &[String],
    blender_version: Option<String>,
) -> TerminationMessage {
    let (tracker, ended) = (&done.tracker, &done.ended);
    // The files are the truth.
    let missing: Vec<i32> = args
        .frames
        .frames()
        .into_iter()
        .filter(|f| !check::rendered(&args.output_file(*f)))
        .collect();
    let rendered = work
        .todo
        .iter()
        .filter(|(f, _)| !missing.contains(f))
        .count() as u32;
    let last_frame = args
        .frames
        .frames()
        .into_iter()
        .filter(|f| !missing.contains(f))
        .max();
    let (outcome, message) = report::verdict(&Facts {
        stopped_by: ended.stopped_by,
        exit_code: ended.status.code(),
        signal: ended.status.signal(),
        killed: ended.killed,
        oom_killed: matches!((oom_before, report::oom_kills()), (Some(a), Some(b)) if b > a),
        bad_input: tracker.bad_input.as_deref(),
        errors: &tracker.errors,
        warnings,
        missing: &missing,
        bad_frames: &done.checks.bad,
    });
    TerminationMessage {
        outcome,
        frames_rendered: rendered,
        frames_skipped: work.skipped.len() as u32,
        frames_missing: missing,
        seconds_per_frame: tracker.seconds_per_frame().map(tracker::round3),
        device: tracker.device.clone(),
        blender_version: tracker.version.clone().or(blender_version),
        last_frame,
        message,
    }
}
