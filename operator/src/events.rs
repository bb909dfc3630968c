//! Which Events a reconcile publishes, and in what words: what changed between two statuses
//! ([`on_change`]), and how often batch creations become `BatchesCreated` Events ([`Created`]).
//!
//! A reconcile that creates Jobs used to publish one Event naming every Job it created: about
//! one Event per four batches at parallelism 50, a quarter of all the operator's API writes,
//! and a first Event of 50 names was longer than the 1 kB an Event's note may hold, so the API
//! server refused it. Now the first creations of a render are reported at once, later ones
//! gathered into at most one Event per [`EVERY`], and the Event that says the last batch was
//! created is sent at once too; each note names the batches as ranges.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use render_contract::MissingFiles;

use crate::crd::{FailedBatch, Phase, PreviewState, RenderJobStatus};
use crate::job::job_name;
use crate::plan::Plan;
use crate::ranges::encode_ranges;

/// At most one `BatchesCreated` Event per RenderJob this often (but see [`Created::note`]).
pub const EVERY: Duration = Duration::from_secs(30);
/// Longest list of batch ranges in a note (an Event's note may hold 1 kB).
const MAX_RANGES: usize = 200;

/// Batches of one RenderJob not yet reported in an Event: the first are reported at once, the
/// rest gathered into at most one Event per [`EVERY`], and the last at once (`flush`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Coalesce {
    last_sent: Option<Instant>,
    unreported: BTreeSet<u32>,
    /// Longer than [`EVERY`] while many renders share the operator's writes (see [`pace`]).
    ///
    /// [`pace`]: Coalesce::pace
    every: Duration,
}

/// Batch creations, reported as `BatchesCreated`.
pub type Created = Coalesce;

impl Coalesce {
    pub fn add(&mut self, batches: impl IntoIterator<Item = u32>) {
        self.unreported.extend(batches);
    }

    /// Gathers into one Event per `every` from now on ([`EVERY`] at the least).
    pub fn pace(&mut self, every: Duration) {
        self.every = every;
    }

    fn interval(&self) -> Duration {
        self.every.max(EVERY)
    }

    /// The batches to report now, if an Event is due: the first time, when [`EVERY`] has
    /// passed since the last one, or when `flush` says nothing more will come.
    pub fn take_due(&mut self, now: Instant, flush: bool) -> Option<BTreeSet<u32>> {
        if self.unreported.is_empty() {
            return None;
        }
        let due = match self.last_sent {
            None => true,
            Some(at) => flush || now.saturating_duration_since(at) >= self.interval(),
        };
        if !due {
            return None;
        }
        self.last_sent = Some(now);
        Some(std::mem::take(&mut self.unreported))
    }

    /// The note of the `BatchesCreated` Event to publish now, if one is due (`all_created`: no
    /// batch is left to create).
    pub fn note(
        &mut self,
        now: Instant,
        all_created: bool,
        rj_name: &str,
        plan: &Plan,
    ) -> Option<String> {
        let batches = self.take_due(now, all_created)?;
        Some(describe(&batches, all_created, rj_name, plan))
    }

    /// How long until unreported batches are due (a reconcile should come by then).
    pub fn due_in(&self, now: Instant) -> Option<Duration> {
        if self.unreported.is_empty() {
            return None;
        }
        Some(match self.last_sent {
            None => Duration::ZERO,
            Some(at) => self
                .interval()
                .saturating_sub(now.saturating_duration_since(at)),
        })
    }
}

/// An Event to publish on the RenderJob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

impl Note {
    pub fn normal(reason: &'static str, note: impl Into<String>) -> Note {
        Note {
            warning: false,
            reason,
            note: note.into(),
        }
    }

    pub fn warning(reason: &'static str, note: impl Into<String>) -> Note {
        Note {
            warning: true,
            reason,
            note: note.into(),
        }
    }
}

/// The Events for what changed between the status last written and the one written now: a
/// rejected Job, files the scene lacks (worded by the render's `missingFiles` policy), a
/// resume, and the render's new phase. (Failed batches are gathered by [`Coalesce`] and worded
/// by [`failed_note`].)
pub fn on_change(old: &RenderJobStatus, new: &RenderJobStatus, policy: MissingFiles) -> Vec<Note> {
    let mut notes = Vec::new();
    let progressing = |s: &RenderJobStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == crate::status::PROGRESSING)
            .map(|c| (c.reason.clone(), c.message.clone()))
    };
    if let Some((reason, message)) = progressing(new)
        && BLOCKED.contains(&reason.as_str())
        && progressing(old) != Some((reason.clone(), message.clone()))
    {
        notes.push(Note {
            warning: true,
            reason: BLOCKED
                .iter()
                .find(|r| **r == reason)
                .copied()
                .unwrap_or("Blocked"),
            note: message,
        });
    }
    notes.extend(on_missing_files(old, new, policy));
    notes.extend(on_blank_frames(old, new));
    // Leaving Suspended is a resume whatever comes next: the pods may not have started yet
    // (Pending), or the last batches may have finished meanwhile (Succeeded).
    if old.phase == Phase::Suspended && new.phase != Phase::Suspended {
        notes.push(Note::normal("Resumed", "Render resumed"));
    }
    if old.phase != new.phase {
        notes.extend(on_phase(old.phase, new));
    }
    notes.extend(on_preview(old, new));
    notes
}

/// `MissingFiles` when the batch pods found more external files missing than before, saying
/// what `policy` makes of them: under `Fail` the batches that find them fail as bad input (the
/// Event names the files even when the render has already ended for it); under `Warn` they
/// render without them.
fn on_missing_files(
    old: &RenderJobStatus,
    new: &RenderJobStatus,
    policy: MissingFiles,
) -> Option<Note> {
    if new.missing_files_count <= old.missing_files_count {
        return None;
    }
    let n = new.missing_files_count.unwrap_or(0);
    let files = new.missing_files.join(", ");
    let note = match policy {
        MissingFiles::Fail => format!(
            "{n} external file(s) the scene uses are not in the volume: its batches fail as bad \
             input, which ends the render (missingFiles: Fail; put them in the volume, or set \
             missingFiles: Warn to render without them): {files}"
        ),
        // A render that failed for another reason is not "rendering anyway".
        MissingFiles::Warn if new.phase == Phase::Failed => return None,
        MissingFiles::Warn => format!(
            "{n} external file(s) the scene uses are not in the volume; rendering anyway, \
             without them (missingFiles: Warn; missing images come out magenta): {files}"
        ),
    };
    Some(Note::warning("MissingFiles", cut(note)))
}

/// `BlankFrame` when batches saved frames of one flat colour not reported before: legitimate
/// in a fade, a mistake (a camera inside a wall, a light off) otherwise.
fn on_blank_frames(old: &RenderJobStatus, new: &RenderJobStatus) -> Option<Note> {
    let fresh: Vec<String> = new
        .blank_frames
        .iter()
        .filter(|f| !old.blank_frames.contains(f))
        .map(i32::to_string)
        .collect();
    if fresh.is_empty() {
        return None;
    }
    let note = format!(
        "frames {} are one flat colour; they count (spec.verify.blankFrames: Fail would fail them)",
        fresh.join(",")
    );
    Some(Note::warning("BlankFrame", cut(note)))
}

/// `PreviewReady` or `PreviewFailed` when the preview step finished.
fn on_preview(old: &RenderJobStatus, new: &RenderJobStatus) -> Option<Note> {
    let state = |s: &RenderJobStatus| s.preview.as_ref().map(|p| p.state);
    let p = new.preview.as_ref()?;
    if state(old) == Some(p.state) {
        return None;
    }
    match p.state {
        PreviewState::Ready => Some(Note::normal(
            "PreviewReady",
            cut(format!(
                "Preview ready: {} ({} frames), contact sheet {} ({}x{})",
                p.video.as_deref().unwrap_or_default(),
                p.frames.unwrap_or_default(),
                p.contact_sheet.as_deref().unwrap_or_default(),
                p.columns.unwrap_or_default(),
                p.rows.unwrap_or_default()
            )),
        )),
        PreviewState::Failed => Some(Note::warning(
            "PreviewFailed",
            cut(p
                .message
                .clone()
                .unwrap_or_else(|| "the preview failed".into())),
        )),
        _ => None,
    }
}

/// `Progressing` reasons that mean the render is held by something the user must fix; each
/// new one is a Warning Event.
pub const BLOCKED: [&str; 3] = ["JobRejected", "ClaimNotFound", "PodRejected"];

/// Batches newly failed, gathered by [`Coalesce`]: `failed` is the status's list of failed
/// batches, which words each (it may be shorter than `batches`).
pub fn failed_note(batches: &BTreeSet<u32>, failed: &[FailedBatch]) -> Note {
    let word = |f: &FailedBatch| {
        let exit = f
            .exit_code
            .map(|c| format!(", exit code {c}"))
            .unwrap_or_default();
        let why = f
            .message
            .as_deref()
            .map(|s| format!(": {s}"))
            .unwrap_or_default();
        format!("{}{exit}{why}", f.reason)
    };
    let listed: Vec<&FailedBatch> = failed
        .iter()
        .filter(|f| u32::try_from(f.index).is_ok_and(|i| batches.contains(&i)))
        .collect();
    let note = match (batches.len(), listed.first()) {
        (1, Some(f)) => format!(
            "Batch {} (frames {}) failed after {} attempt(s): {}",
            f.index,
            f.frames,
            f.attempts,
            word(f)
        ),
        _ => {
            let mut note = format!(
                "{} batches failed ({})",
                batches.len(),
                encode_ranges(batches)
            );
            if let Some(f) = listed.first() {
                note.push_str(&format!("; batch {}: {}", f.index, word(f)));
            }
            note
        }
    };
    Note::warning("BatchFailed", cut(note))
}

/// At most the 1 kB an Event's note may hold.
fn cut(mut s: String) -> String {
    const MAX: usize = 1000;
    if s.len() > MAX {
        let mut at = MAX;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
        s.push('…');
    }
    s
}

fn on_phase(old: Phase, new: &RenderJobStatus) -> Option<Note> {
    Some(match new.phase {
        Phase::Succeeded => Note::normal(
            "RenderComplete",
            format!("All {} frames rendered", new.frames.total),
        ),
        Phase::Failed => Note::warning(
            "RenderFailed",
            format!(
                "{} of {} batches failed; delete a failed batch's Job to retry its frames",
                new.batches.failed, new.batches.total
            ),
        ),
        Phase::Suspended => Note::normal("Suspended", "Render suspended; running batches stopped"),
        Phase::Running if old == Phase::Suspended => return None,
        Phase::Running => Note::normal("Rendering", "First batch pod is running"),
        Phase::Pending => return None,
    })
}

/// `Created 50 batch Jobs (shot-0000 to shot-0049), batches 0-49`, or for one batch
/// `Created batch Job shot-0003 (frames 16..20)`.
fn describe(batches: &BTreeSet<u32>, all_created: bool, rj_name: &str, plan: &Plan) -> String {
    let mut note = match (batches.first(), batches.last()) {
        (Some(&first), Some(&last)) if first == last => {
            let frames = plan
                .batch(first)
                .map(|b| format!(" (frames {})", b.frames_label()))
                .unwrap_or_default();
            format!("Created batch Job {}{frames}", job_name(rj_name, first))
        }
        (Some(&first), Some(&last)) => {
            let mut ranges = encode_ranges(batches);
            if ranges.len() > MAX_RANGES {
                let mut cut = MAX_RANGES;
                while !ranges.is_char_boundary(cut) {
                    cut -= 1;
                }
                ranges.truncate(cut);
                ranges.push('…');
            }
            format!(
                "Created {} batch Jobs ({} to {}), batches {ranges}",
                batches.len(),
                job_name(rj_name, first),
                job_name(rj_name, last)
            )
        }
        _ => String::new(),
    };
    if all_created {
        note.push_str(&format!("; all {} batches created", plan.len()));
    }
    note
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::FrameRange;

    fn plan(frames: i32, size: i32) -> Plan {
        Plan::new(
            &FrameRange {
                start: 1,
                end: frames,
                step: 1,
                list: vec![],
            },
            size,
        )
        .expect("plan")
    }

    #[test]
    fn the_first_creations_are_reported_at_once_then_at_most_every_interval() {
        let p = plan(1000, 1);
        let t0 = Instant::now();
        let mut c = Created::default();
        assert_eq!(c.note(t0, false, "shot", &p), None, "nothing created");
        c.add(0..50);
        assert_eq!(
            c.note(t0, false, "shot", &p).as_deref(),
            Some("Created 50 batch Jobs (shot-0000 to shot-0049), batches 0-49")
        );
        c.add([50, 51]);
        let soon = t0 + Duration::from_secs(5);
        assert_eq!(c.note(soon, false, "shot", &p), None);
        assert_eq!(c.due_in(soon), Some(EVERY - Duration::from_secs(5)));
        c.add([53]);
        let later = t0 + EVERY;
        assert_eq!(
            c.note(later, false, "shot", &p).as_deref(),
            Some("Created 3 batch Jobs (shot-0050 to shot-0053), batches 50-51,53")
        );
        assert_eq!(c.due_in(later), None);
        assert_eq!(c.note(later + EVERY, false, "shot", &p), None);
    }

    #[test]
    fn a_longer_pace_gathers_more_and_the_last_still_goes_at_once() {
        let p = plan(1000, 1);
        let t0 = Instant::now();
        let mut c = Created::default();
        c.pace(EVERY * 20);
        c.add(0..5);
        assert!(c.note(t0, false, "shot", &p).is_some(), "the first at once");
        c.add(5..10);
        assert_eq!(c.note(t0 + EVERY, false, "shot", &p), None);
        assert_eq!(c.due_in(t0 + EVERY), Some(EVERY * 19));
        assert!(c.note(t0 + EVERY * 20, false, "shot", &p).is_some());
        c.add([999]);
        assert!(
            c.note(t0 + EVERY * 21, true, "shot", &p).is_some(),
            "the last"
        );
        // Never shorter than EVERY.
        c.pace(Duration::from_secs(1));
        c.add([10]);
        assert_eq!(c.note(t0 + EVERY * 21 + EVERY / 2, false, "shot", &p), None);
    }

    #[test]
    fn the_last_creations_are_reported_at_once() {
        let p = plan(20, 5);
        let t0 = Instant::now();
        let mut c = Created::default();
        c.add([0, 1]);
        assert!(c.note(t0, false, "shot", &p).is_some());
        c.add([3]);
        assert_eq!(
            c.note(t0 + Duration::from_secs(1), true, "shot", &p)
                .as_deref(),
            Some("Created batch Job shot-0003 (frames 16..20); all 4 batches created")
        );
    }

    #[test]
    fn notes_fit_in_an_event() {
        let p = plan(10_000, 1);
        let mut c = Created::default();
        // Every other batch: the longest list of ranges there is.
        c.add((0..10_000).step_by(2));
        let note = c
            .note(Instant::now(), true, &"x".repeat(253), &p)
            .expect("note");
        assert!(note.len() <= 1024, "{} bytes: {note}", note.len());
        assert!(note.starts_with("Created 5000 batch Jobs ("), "{note}");
    }

    fn status(phase: Phase, failed: &[i64]) -> RenderJobStatus {
        RenderJobStatus {
            phase,
            failed_batches: failed
                .iter()
                .map(|i| crate::crd::FailedBatch {
                    index: *i,
                    frames: format!("{}..{}", i * 5 + 1, i * 5 + 5),
                    job: format!("shot-{i:04}"),
                    attempts: 4,
                    reason: "BlenderError".into(),
                    exit_code: Some(1),
                    message: Some("Segmentation fault".into()),
                })
                .collect(),
            ..Default::default()
        }
    }

    fn reasons(notes: &[Note]) -> Vec<&str> {
        notes.iter().map(|n| n.reason).collect()
    }

    #[test]
    fn failed_batches_are_worded_one_by_one_or_together() {
        let one = status(Phase::Running, &[2]);
        assert_eq!(
            failed_note(&BTreeSet::from([2]), &one.failed_batches),
            Note::warning(
                "BatchFailed",
                "Batch 2 (frames 11..15) failed after 4 attempt(s): BlenderError, exit code 1: Segmentation fault"
            )
        );
        let many = status(Phase::Running, &[2, 3, 4, 7]);
        let note = failed_note(&BTreeSet::from([3, 4, 7]), &many.failed_batches);
        assert_eq!(
            note.note,
            "3 batches failed (3-4,7); batch 3: BlenderError, exit code 1: Segmentation fault"
        );
        // Not in the status's list (it holds the first 100): still counted.
        let note = failed_note(&BTreeSet::from([500, 501]), &many.failed_batches);
        assert_eq!(note.note, "2 batches failed (500-501)");
        assert!(
            on_change(&status(Phase::Running, &[]), &many, MissingFiles::Fail).is_empty(),
            "not per change"
        );
    }

    #[test]
    fn failures_coalesce_like_creations() {
        let t0 = Instant::now();
        let mut c = Coalesce::default();
        c.add([1]);
        assert_eq!(c.take_due(t0, false), Some(BTreeSet::from([1])));
        c.add([2, 3]);
        assert_eq!(c.take_due(t0 + Duration::from_secs(1), false), None);
        assert_eq!(
            c.due_in(t0 + Duration::from_secs(1)),
            Some(EVERY - Duration::from_secs(1))
        );
        assert_eq!(
            c.take_due(t0 + Duration::from_secs(2), true),
            Some(BTreeSet::from([2, 3])),
            "the last at once"
        );
    }

    /// `status` with `n` external files missing, two of them listed.
    fn missing(phase: Phase, n: i64) -> RenderJobStatus {
        RenderJobStatus {
            missing_files: vec!["/data/tex/wood.png".into(), "/data/lib/props.blend".into()],
            missing_files_count: Some(n),
            ..status(phase, &[])
        }
    }

    #[test]
    fn missing_files_say_what_each_policy_does_once() {
        let before = status(Phase::Running, &[]);
        let listed = ": /data/tex/wood.png, /data/lib/props.blend";
        let cases = [
            (
                MissingFiles::Fail,
                "3 external file(s) the scene uses are not in the volume: its batches fail as \
                 bad input, which ends the render (missingFiles: Fail; put them in the volume, \
                 or set missingFiles: Warn to render without them)",
            ),
            (
                MissingFiles::Warn,
                "3 external file(s) the scene uses are not in the volume; rendering anyway, \
                 without them (missingFiles: Warn; missing images come out magenta)",
            ),
        ];
        for (policy, said) in cases {
            let after = missing(Phase::Running, 3);
            let notes = on_change(&before, &after, policy);
            assert_eq!(
                notes,
                [Note::warning("MissingFiles", format!("{said}{listed}"))],
                "{policy:?}"
            );
            assert!(
                on_change(&after, &after, policy).is_empty(),
                "{policy:?}: once"
            );
            assert_eq!(
                reasons(&on_change(&after, &missing(Phase::Running, 4), policy)),
                ["MissingFiles"],
                "{policy:?}: more found"
            );
        }
    }

    #[test]
    fn missing_files_are_worded_for_every_policy_the_crd_allows() {
        use kube::CustomResourceExt as _;
        let crd = serde_json::to_value(crate::crd::RenderJob::crd()).expect("crd");
        let allowed = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["missingFiles"]["enum"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(allowed.len() >= 2, "{allowed:?}");
        for value in allowed {
            let policy: MissingFiles = serde_json::from_value(value.clone()).expect("a policy");
            let notes = on_change(
                &status(Phase::Running, &[]),
                &missing(Phase::Running, 1),
                policy,
            );
            assert_eq!(reasons(&notes), ["MissingFiles"], "{value}");
            let named = format!("(missingFiles: {};", value.as_str().unwrap_or_default());
            assert!(notes[0].note.contains(&named), "{value}: {}", notes[0].note);
        }
    }

    #[test]
    fn missing_files_that_ended_the_render_are_named_and_not_rendered_anyway() {
        let before = status(Phase::Running, &[]);
        let failed = missing(Phase::Failed, 1);
        let notes = on_change(&before, &failed, MissingFiles::Fail);
        assert_eq!(reasons(&notes), ["MissingFiles", "RenderFailed"]);
        assert!(
            notes[0].note.contains("fail as bad input") && notes[0].note.contains("wood.png"),
            "{notes:?}"
        );
        // Failed for another reason: Warn's "rendering anyway" would not be true.
        let notes = on_change(&before, &failed, MissingFiles::Warn);
        assert_eq!(reasons(&notes), ["RenderFailed"]);
    }

    #[test]
    fn a_held_render_warns_once_per_reason_and_message() {
        let mut held = status(Phase::Running, &[]);
        crate::status::set_condition(
            &mut held.conditions,
            crate::status::PROGRESSING,
            false,
            "JobRejected",
            "batch 1 (Job shot-0001) was refused: exceeded quota".into(),
            Some(1),
            &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-11-23T12:00:00Z".parse().expect("time"),
            ),
        );
        let notes = on_change(&status(Phase::Running, &[]), &held, MissingFiles::Fail);
        assert_eq!(reasons(&notes), ["JobRejected"]);
        assert!(notes[0].warning && notes[0].note.contains("exceeded quota"));
        assert!(on_change(&held, &held, MissingFiles::Fail).is_empty());
    }

    #[test]
    fn blank_frames_warn_once_each() {
        let before = status(Phase::Running, &[]);
        let mut after = before.clone();
        after.blank_frames = vec![4, 5];
        let notes = on_change(&before, &after, MissingFiles::Fail);
        assert_eq!(
            notes,
            [Note::warning(
                "BlankFrame",
                "frames 4,5 are one flat colour; they count (spec.verify.blankFrames: Fail would fail them)"
            )]
        );
        assert!(on_change(&after, &after, MissingFiles::Fail).is_empty());
        let mut more = after.clone();
        more.blank_frames.push(9);
        let notes = on_change(&after, &more, MissingFiles::Fail);
        assert!(notes[0].note.starts_with("frames 9 are"), "{notes:?}");
    }

    #[test]
    fn phase_changes_say_what_happened() {
        use Phase::*;
        let cases: [(Phase, Phase, &[&str]); 8] = [
            (Pending, Running, &["Rendering"]),
            (Running, Succeeded, &["RenderComplete"]),
            (Running, Failed, &["RenderFailed"]),
            (Running, Suspended, &["Suspended"]),
            (Suspended, Running, &["Resumed"]),
            (Suspended, Pending, &["Resumed"]),
            (Suspended, Succeeded, &["Resumed", "RenderComplete"]),
            (Running, Running, &[]),
        ];
        for (from, to, want) in cases {
            let got = on_change(&status(from, &[]), &status(to, &[]), MissingFiles::Fail);
            assert_eq!(reasons(&got), want, "{from:?} -> {to:?}");
        }
        let failed = on_change(
            &status(Running, &[]),
            &status(Failed, &[]),
            MissingFiles::Fail,
        );
        assert!(failed[0].warning);
    }
}
