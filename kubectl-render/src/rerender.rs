//! `kubectl render rerender NAME --frames 12,40-42`: frames of a finished render rendered
//! again in place, overwriting them, by the operator (`spec.rerender`, a new `serial` for each
//! request); `status.rerenders` says how it went and when.

use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use renderfarm_api::crd::{RenderJob, RerenderState, RerenderStatus};
use renderfarm_api::frames;
use serde_json::json;

use crate::cli::{Global, Rerender};
use crate::cluster::Ctx;
use crate::error::{Error, Result};

/// How long `--watch` waits for the frames.
const WATCH_FOR: Duration = Duration::from_secs(6 * 3600);

/// The frames asked for, each a frame of `rj`, as `spec.rerender.frames` holds them.
pub fn frames_of(rj: &RenderJob, text: &str) -> Result<String> {
    let bad = |reason: String| Error::Frames {
        input: text.to_string(),
        reason,
    };
    let wanted = frames::parse(text).map_err(|e| bad(e.to_string()))?;
    let all: Vec<i32> = crate::frames::frames(&rj.spec.frames).collect();
    let strays: Vec<i32> = wanted
        .iter()
        .copied()
        .filter(|f| all.binary_search(f).is_err())
        .collect();
    if !strays.is_empty() {
        return Err(bad(format!(
            "frames {} are not frames of {} ({})",
            frames::encode(&strays),
            rj.name_any(),
            crate::frames::display(&rj.spec.frames)
        )));
    }
    Ok(frames::encode(&wanted))
}

/// The request still rendering, if any: a new one would replace it in the spec, and two
/// Blenders could write the same frames.
pub fn unfinished(rj: &RenderJob) -> Option<i64> {
    let serial = rj.spec.rerender.as_ref()?.serial;
    let done = rj.status.as_ref().is_some_and(|s| {
        s.rerenders.iter().any(|r| {
            r.serial == serial
                && matches!(r.state, RerenderState::Succeeded | RerenderState::Failed)
        })
    });
    (!done).then_some(serial)
}

/// The serial of the next request: one past any the spec or the status has seen.
pub fn next_serial(rj: &RenderJob) -> i64 {
    let spec = rj.spec.rerender.as_ref().map_or(0, |r| r.serial);
    let status = rj
        .status
        .as_ref()
        .and_then(|s| s.rerenders.iter().map(|r| r.serial).max())
        .unwrap_or(0);
    spec.max(status) + 1
}

/// `status`'s lines for the passes of the frames, frames of one flat colour, and the
/// requests to render frames again.
pub fn status_lines(s: &renderfarm_api::crd::RenderJobStatus) -> Vec<String> {
    let mut out = Vec::new();
    if !s.passes.is_empty() {
        out.push(format!("{:<14}{}", "Passes:", s.passes.join(", ")));
    }
    if !s.blank_frames.is_empty() {
        let blank: Vec<String> = s.blank_frames.iter().map(i32::to_string).collect();
        out.push(format!(
            "{:<14}{} (one flat colour)",
            "Blank frames:",
            blank.join(",")
        ));
    }
    if !s.rerenders.is_empty() {
        out.push("Rendered again:".to_string());
        out.extend(s.rerenders.iter().map(line));
    }
    out
}

/// One line for a request in `status`.
pub fn line(r: &RerenderStatus) -> String {
    let when = |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
        t.as_ref().map(|t| t.0.to_string()).unwrap_or_default()
    };
    let mut s = format!("  #{} frames {}: {:?}", r.serial, r.frames, r.state);
    if r.start_time.is_some() {
        s.push_str(&format!(", started {}", when(&r.start_time)));
    }
    if r.completion_time.is_some() {
        s.push_str(&format!(", finished {}", when(&r.completion_time)));
    }
    if let Some(m) = &r.message {
        s.push_str(&format!(" ({m})"));
    }
    s
}

pub async fn run(global: &Global, args: &Rerender) -> Result<()> {
    let ctx = Ctx::new(global).await?;
    let rj: RenderJob = ctx.renderjob(&args.name).await?;
    let frames = frames_of(&rj, &args.frames)?;
    if let Some(busy) = unfinished(&rj) {
        return Err(Error::Usage(format!(
            "request #{busy} of {} is not finished yet: wait for it (kubectl render status {})",
            args.name, args.name
        )));
    }
    let serial = next_serial(&rj);
    // The resource version makes this a compare-and-swap: two requests at once do not share
    // a serial.
    let patch = json!({
        "metadata": {"resourceVersion": rj.resource_version()},
        "spec": {"rerender": {"frames": frames, "serial": serial}},
    });
    ctx.rjs()
        .patch(&args.name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map_err(|e| match &e {
            kube::Error::Api(s) if s.code == 409 => Error::Usage(format!(
                "RenderJob {} changed meanwhile: run it again",
                args.name
            )),
            kube::Error::Api(s) if s.code == 422 => Error::Invalid(s.message.clone()),
            _ => ctx.unreachable(e),
        })?;
    crate::out!(
        "{}: frames {frames} will render again (request #{serial}), once no batch is running",
        args.name
    );
    if !args.watch {
        crate::out!("follow it: kubectl render status {}", args.name);
        return Ok(());
    }
    watch(&ctx, &args.name, serial).await
}

/// Wait until request `serial` has finished, saying how.
async fn watch(ctx: &Ctx, name: &str, serial: i64) -> Result<()> {
    let done = move |rj: Option<&RenderJob>| {
        rj.and_then(|r| r.status.as_ref())
            .and_then(|s| s.rerenders.iter().find(|r| r.serial == serial))
            .is_some_and(|r| matches!(r.state, RerenderState::Succeeded | RerenderState::Failed))
    };
    let api = ctx.rjs();
    let cond = kube::runtime::wait::await_condition(api, name, done);
    let rj = tokio::time::timeout(WATCH_FOR, cond)
        .await
        .map_err(|_| Error::Usage(format!("request #{serial} of {name} is not done yet")))?
        .map_err(|e| Error::Usage(format!("watching {name}: {e}")))?;
    let entry = rj
        .as_ref()
        .and_then(|r| r.status.as_ref())
        .and_then(|s| s.rerenders.iter().find(|r| r.serial == serial).cloned());
    match entry {
        Some(r) if r.state == RerenderState::Succeeded => {
            crate::out!("{}", line(&r));
            Ok(())
        }
        Some(r) => Err(Error::RenderFailed {
            name: name.to_string(),
            reason: line(&r).trim().to_string(),
        }),
        None => Err(Error::Usage(format!("{name} is gone"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rj(status: serde_json::Value) -> RenderJob {
        serde_json::from_value(json!({
            "apiVersion": "renderfarm.io/v1alpha1", "kind": "RenderJob",
            "metadata": {"name": "shot", "namespace": "art"},
            "spec": {"blendFile": "s.blend", "frames": {"start": 1, "end": 50, "step": 2},
                "storage": {"claimName": "c"}, "rerender": {"frames": "3", "serial": 2}},
            "status": status,
        }))
        .expect("RenderJob")
    }

    #[test]
    fn frames_must_be_the_renders_own() {
        let r = rj(json!({}));
        assert_eq!(frames_of(&r, "43,41,11").ok().as_deref(), Some("11,41,43"));
        let e = frames_of(&r, "12,41-43").unwrap_err().to_string();
        assert!(
            e.contains("frames 12,42 are not frames of shot (1-50:2)"),
            "{e}"
        );
    }

    #[test]
    fn a_request_not_finished_holds_the_next() {
        assert_eq!(unfinished(&rj(json!({}))), Some(2));
        let running = rj(json!({"rerenders": [{"serial": 2, "frames": "3", "state": "Running"}]}));
        assert_eq!(unfinished(&running), Some(2));
        let done = rj(json!({"rerenders": [{"serial": 2, "frames": "3", "state": "Failed"}]}));
        assert_eq!(unfinished(&done), None);
    }

    #[test]
    fn each_request_takes_the_next_serial() {
        assert_eq!(next_serial(&rj(json!({}))), 3);
        let seen = rj(json!({"rerenders": [{"serial": 7, "frames": "1", "state": "Succeeded"}]}));
        assert_eq!(next_serial(&seen), 8);
    }
}
