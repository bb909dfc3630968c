//! The names the operator gives what it creates, shared with the kubectl plugin: the label and
//! annotation keys on batch Jobs and pods, the rendering container, the node image's user, and
//! the Job names (deterministic, so the same batch always maps to the same Job).

use sha2::{Digest, Sha256};

/// Label on every Job and pod the operator creates.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "renderfarm-operator";
/// The RenderJob's name (shortened with a hash when longer than a label value may be).
pub const RENDERJOB_LABEL: &str = "renderfarm.io/renderjob";
/// The RenderJob's full name, on pods, for mapping a pod back to its RenderJob.
pub const RENDERJOB_ANNOTATION: &str = "renderfarm.io/renderjob";
/// The batch's index in the plan.
pub const BATCH_LABEL: &str = "renderfarm.io/batch";
/// The batch's first and last frame (`16-20`).
pub const FRAMES_LABEL: &str = "renderfarm.io/frames";
/// The batch's frames as render-node takes them (`1..9:2`).
pub const FRAMES_ANNOTATION: &str = "renderfarm.io/frames";
/// On a batch Job the operator stopped, why (`Evicted: evicted 5 times`).
pub const STOPPED_ANNOTATION: &str = "renderfarm.io/stopped";
/// On a batch Job the operator suspended itself (the RenderJob is paused): the only suspended
/// Jobs it ever resumes. A Job suspended by anyone else (Kueue holding it for quota or after
/// preempting it, or a person) stays as it is.
pub const PAUSED_ANNOTATION: &str = "renderfarm.io/paused";
/// On a batch Job started ahead: the batch whose render it follows (`spec.startAhead`).
pub const AFTER_ANNOTATION: &str = "renderfarm.io/after";
/// Kueue's label naming the LocalQueue of a Job.
pub const QUEUE_LABEL: &str = "kueue.x-k8s.io/queue-name";
/// On the preview Job and its pod: which step of the render it is (`preview`). Batches carry
/// none; the preview carries no [`BATCH_LABEL`], so nothing counts it as a batch.
pub const STEP_LABEL: &str = "renderfarm.io/step";
pub const PREVIEW_STEP: &str = "preview";
/// What a Job or pod of a render is: a batch ([`BATCH_COMPONENT`]) or the preview step
/// ([`PREVIEW_COMPONENT`]).
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
pub const BATCH_COMPONENT: &str = "render-batch";
pub const PREVIEW_COMPONENT: &str = "render-preview";
/// The container that renders.
pub const CONTAINER: &str = "render";
/// Non-root user of the node image.
pub const NODE_UID: i64 = 1000;

/// Most characters of a label value or a DNS label.
pub const MAX_NAME: usize = 63;

/// `name` as a DNS label of at most `max` characters: dots become dashes, and a name that does
/// not fit is cut and given a hash of the full name, so different long names never collide.
/// A name that already ends like such a hash (`-` and 8 hex digits) is hashed too: otherwise a
/// RenderJob could be named after another's hashed form and get its Jobs.
pub fn short_name(name: &str, max: usize) -> String {
    let clean: String = name
        .chars()
        .map(|c| if c == '.' { '-' } else { c })
        .collect();
    if clean.len() <= max && clean == name && !looks_hashed(name) {
        return clean;
    }
    let digest = Sha256::digest(name.as_bytes());
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let keep = max.saturating_sub(hash.len() + 1).min(clean.len());
    let head = clean[..keep].trim_end_matches('-');
    format!("{head}-{hash}")
}

/// Whether `name` ends in `-` and 8 lowercase hex digits, as [`short_name`]'s hashed forms do.
fn looks_hashed(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() > 9
        && b[b.len() - 9] == b'-'
        && b[b.len() - 8..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// The batch Job's name: `<renderjob>-<index>`, at most 63 characters, the same every time.
pub fn job_name(renderjob: &str, index: u32) -> String {
    let suffix = format!("-{index:04}");
    format!("{}{suffix}", short_name(renderjob, MAX_NAME - suffix.len()))
}

/// The preview Job's name: `<renderjob>-preview`, at most 63 characters, the same every time.
/// No batch Job's name ends so (theirs end in four digits).
pub fn preview_job_name(renderjob: &str) -> String {
    let suffix = "-preview";
    format!("{}{suffix}", short_name(renderjob, MAX_NAME - suffix.len()))
}

/// The [`STEP_LABEL`] of the Job that renders frames of a finished render again.
pub const RERENDER_STEP: &str = "rerender";

/// The Job that renders frames again for `spec.rerender.serial` `serial`:
/// `<renderjob>-rerender-<serial>`, at most 63 characters. No batch Job's name ends so.
pub fn rerender_job_name(renderjob: &str, serial: i64) -> String {
    let suffix = format!("-rerender-{serial}");
    format!("{}{suffix}", short_name(renderjob, MAX_NAME - suffix.len()))
}

/// The value of [`RENDERJOB_LABEL`] for a RenderJob.
pub fn renderjob_label(renderjob: &str) -> String {
    short_name(renderjob, MAX_NAME)
}

/// Tells whether a name is [`job_name`] of a RenderJob and batch without building the name:
/// a reconcile checks every Job of a render, 10,000 of them at most.
pub struct JobNames<'a> {
    renderjob: &'a str,
    /// The name's head for 4-digit indexes (every index a valid plan has).
    head: String,
}

impl<'a> JobNames<'a> {
    pub fn new(renderjob: &'a str) -> Self {
        JobNames {
            renderjob,
            head: short_name(renderjob, MAX_NAME - "-0000".len()),
        }
    }

    /// `name == job_name(renderjob, index)`.
    pub fn is(&self, name: &str, index: u32) -> bool {
        if index > 9999 {
            return name == job_name(self.renderjob, index);
        }
        let Some(suffix) = name.strip_prefix(self.head.as_str()) else {
            return false;
        };
        let digits = [1000, 100, 10, 1].map(|d| b'0' + (index / d % 10) as u8);
        suffix.len() == 5 && suffix.as_bytes()[0] == b'-' && suffix.as_bytes()[1..] == digits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_cut_with_a_hash() {
        let long = "a".repeat(253);
        let other = format!("{}b", "a".repeat(252));
        let (x, y) = (job_name(&long, 9999), job_name(&other, 9999));
        assert!(x.len() <= 63 && y.len() <= 63);
        assert_ne!(x, y);
        assert!(x.ends_with("-9999"));
        assert_eq!(
            job_name("shot.v2", 3),
            format!("{}-0003", short_name("shot.v2", 58))
        );
        assert_ne!(job_name("shot.v2", 3), job_name("shot-v2", 3));
    }

    #[test]
    fn a_name_like_another_names_hashed_form_gets_other_jobs() {
        let long = "a".repeat(70);
        let hashed = short_name(&long, 58);
        assert_eq!(hashed.len(), 58);
        // A RenderJob named exactly like the long one's hashed form.
        assert_ne!(job_name(&hashed, 0), job_name(&long, 0));
        assert_ne!(short_name(&hashed, 63), short_name(&long, 63));
        // Names that merely end in a number or a word stay as they are.
        for name in ["shot-0001", "shot-12345678x", "shot-abcdefgh", "cafe-beef"] {
            assert_eq!(short_name(name, 58), name);
        }
        assert_ne!(short_name("shot-deadbeef", 58), "shot-deadbeef");
    }
}
