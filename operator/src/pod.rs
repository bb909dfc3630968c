//! What one pod says: why it cannot start, why it failed, render-node's report, when it
//! finished, whether it was disrupted. A leaf: the caches and the status roll-up both read pods
//! through it.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use render_contract::{FrameChecks, PreviewReport, TerminationMessage, TerminationReport, exit};

use crate::job::CONTAINER;

/// Why a pod could not run or failed, in the words a user looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodProblem {
    pub reason: String,
    pub exit_code: Option<i32>,
    pub message: Option<String>,
}

pub fn short(s: &str) -> String {
    const MAX: usize = 300;
    let line = s.trim();
    if line.len() <= MAX {
        return line.to_string();
    }
    let mut cut = MAX;
    while !line.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &line[..cut])
}

/// Why a pending pod is stuck: Unschedulable, ImagePullBackOff, ...
pub fn stuck_reason(pod: &Pod) -> Option<PodProblem> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Pending") {
        return None;
    }
    if let Some(c) = status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    }) {
        let message = c.message.as_deref().unwrap_or_default();
        // The scheduler says so when the storage claim does not exist.
        let no_claim =
            message.contains("persistentvolumeclaim \"") && message.contains("not found");
        return Some(PodProblem {
            reason: if no_claim {
                "ClaimNotFound"
            } else {
                "Unschedulable"
            }
            .into(),
            exit_code: None,
            message: c.message.as_deref().map(short),
        });
    }
    status.container_statuses.iter().flatten().find_map(|cs| {
        let waiting = cs.state.as_ref()?.waiting.as_ref()?;
        let reason = waiting.reason.as_deref()?;
        let known = [
            "ImagePullBackOff",
            "ErrImagePull",
            "InvalidImageName",
            "CreateContainerConfigError",
            "CreateContainerError",
        ];
        known.contains(&reason).then(|| PodProblem {
            reason: if reason == "ErrImagePull" {
                "ImagePullBackOff".into()
            } else {
                reason.to_string()
            },
            exit_code: None,
            message: waiting.message.as_deref().map(short),
        })
    })
}

/// render-node's report, from the render container's termination message.
pub fn termination_message(pod: &Pod) -> Option<TerminationReport> {
    let cs = pod
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == CONTAINER)?;
    let message = cs.state.as_ref()?.terminated.as_ref()?.message.as_deref()?;
    TerminationReport::parse(message)
}

/// What render-node's frame checks found, from the same termination message (nothing from an
/// older render-node).
pub fn frame_checks(pod: &Pod) -> FrameChecks {
    let message = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == CONTAINER))
        .and_then(|c| c.state.as_ref()?.terminated.as_ref()?.message.as_deref());
    message.map(FrameChecks::parse).unwrap_or_default()
}

/// `render-preview`'s report, from the preview pod's termination message.
pub fn preview_report(pod: &Pod) -> Option<PreviewReport> {
    let cs = pod
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == CONTAINER)?;
    let message = cs.state.as_ref()?.terminated.as_ref()?.message.as_deref()?;
    PreviewReport::parse(message)
}

/// Why a failed pod failed: OOMKilled, BadInput, BlenderError, DeadlineExceeded, Evicted, ...
pub fn failure_reason(pod: &Pod) -> Option<PodProblem> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Failed") {
        return None;
    }
    let terminated = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == CONTAINER)
        .and_then(|c| c.state.as_ref()?.terminated.as_ref());
    if let Some(t) = terminated {
        let from_message = t
            .message
            .as_deref()
            .and_then(TerminationMessage::parse)
            .and_then(|m| m.message);
        let message = from_message
            .or_else(|| t.message.clone())
            .as_deref()
            .map(short)
            .filter(|m| !m.is_empty());
        let reason = match (t.reason.as_deref(), t.exit_code) {
            (Some("OOMKilled"), _) => "OOMKilled",
            (_, code) if code == exit::BAD_INPUT => "BadInput",
            (_, code) if code == exit::TERMINATED => "Terminated",
            // Frames that failed their check twice; the message lists them.
            (_, code) if code == exit::BAD_FRAME => "BadFrame",
            _ => "BlenderError",
        };
        return Some(PodProblem {
            reason: reason.into(),
            exit_code: Some(t.exit_code),
            message,
        });
    }
    Some(PodProblem {
        reason: status.reason.clone().unwrap_or_else(|| "PodFailed".into()),
        exit_code: None,
        message: status.message.as_deref().map(short),
    })
}

/// Whether the pod was disrupted (evicted, preempted, its node lost): not the render's fault.
pub fn is_disruption(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "DisruptionTarget" && c.status == "True")
        })
}

/// Seconds from its running container's start to the pod turning Ready: with the startup
/// probe on render-node's [`crate::job::READY_PORT`], Blender's start, the scene's
/// load and the first frame. Whole seconds (the API's timestamps); none before it is Ready,
/// once it ended, or where it turned Ready the second it started (no such probe).
pub fn first_frame_seconds(pod: &Pod) -> Option<std::num::NonZeroU32> {
    let status = pod.status.as_ref()?;
    let ready = status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?
        .last_transition_time
        .as_ref()?;
    let started = status
        .container_statuses
        .as_ref()?
        .iter()
        .find_map(|c| c.state.as_ref()?.running.as_ref()?.started_at.as_ref())?;
    let secs = ready.0.as_second() - started.0.as_second();
    u32::try_from(secs).ok().and_then(std::num::NonZeroU32::new)
}

/// When the pod's first terminated container finished.
pub fn finished_at(pod: &Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find_map(|c| {
            c.state
                .as_ref()?
                .terminated
                .as_ref()?
                .finished_at
                .as_ref()
                .map(|t| t.0)
        })
}
