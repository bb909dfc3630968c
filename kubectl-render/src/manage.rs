//! `list`, `status`, `retry`, `pause`, `resume`, `delete`.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, ResourceExt as _};
use renderfarm_api::crd::{RenderJob, RenderJobStatus};
use renderfarm_api::names::{BATCH_LABEL, RENDERJOB_LABEL, renderjob_label};
use serde_json::json;

use crate::cli::{Delete, Global, List, Named, Retry, Status, StatusOutput};
use crate::cluster::Ctx;
use crate::error::{Error, Result};
use crate::{frames, progress, watch};

fn age(t: Option<Timestamp>, now: Timestamp) -> String {
    match t {
        Some(t) => progress::duration(Duration::from_secs(
            (now.as_second() - t.as_second()).max(0) as u64,
        )),
        None => "-".into(),
    }
}

/// Columns padded to their widest cell.
pub fn table(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
                .collect();
            cells.join("   ").trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub async fn list(global: &Global, args: &List) -> Result<()> {
    let ctx = Ctx::new(global).await?;
    ctx.check_crd().await?;
    let api: Api<RenderJob> = if args.all_namespaces {
        Api::all(ctx.client.clone())
    } else {
        ctx.rjs()
    };
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| ctx.unreachable(e))?;
    if list.items.is_empty() {
        crate::out!(
            "no RenderJobs in {}",
            if args.all_namespaces {
                "any namespace".to_string()
            } else {
                format!("namespace {}", ctx.namespace)
            }
        );
        return Ok(());
    }
    let now = Timestamp::now();
    let mut rows = vec![];
    let mut head = vec![
        "NAME", "PHASE", "PROGRESS", "FRAMES", "BATCHES", "FAILED", "ETA", "AGE",
    ];
    if args.all_namespaces {
        head.insert(0, "NAMESPACE");
    }
    rows.push(head.into_iter().map(String::from).collect());
    for rj in &list.items {
        let s = rj.status.clone().unwrap_or_default();
        let mut row = vec![
            rj.name_any(),
            s.phase.as_str().to_string(),
            s.progress.clone().unwrap_or_else(|| "0%".into()),
            format!("{}/{}", s.frames.rendered, s.frames.total),
            format!("{}/{}", s.batches.succeeded, s.batches.total),
            s.batches.failed.to_string(),
            progress::eta(&s, now)
                .filter(|_| s.frames.rendered < s.frames.total)
                .map(progress::duration)
                .unwrap_or_else(|| "-".into()),
            age(rj.metadata.creation_timestamp.as_ref().map(|t| t.0), now),
        ];
        if args.all_namespaces {
            row.insert(0, rj.namespace().unwrap_or_default());
        }
        rows.push(row);
    }
    crate::out!("{}", table(&rows));
    Ok(())
}

pub async fn status(global: &Global, args: &Status) -> Result<()> {
    let ctx = Ctx::new(global).await?;
    if args.output == StatusOutput::Json {
        let rj = ctx.renderjob(&args.name).await?;
        let json = serde_json::to_string_pretty(&rj)
            .map_err(|e| Error::Usage(format!("writing RenderJob {} as JSON: {e}", args.name)))?;
        crate::out!("{json}");
        return Ok(());
    }
    let render = crate::preview::get(&ctx, &args.name).await?;
    let rj = &render.rj;
    let events: Api<Event> = ctx.api();
    // By UID: Events of an earlier RenderJob of the same name are not this one's.
    let lp = ListParams::default().fields(&format!(
        "involvedObject.kind=RenderJob,involvedObject.name={},involvedObject.uid={}",
        args.name,
        rj.uid().unwrap_or_default()
    ));
    let mut events = events
        .list(&lp)
        .await
        .map_err(|e| ctx.unreachable(e))?
        .items;
    events.sort_by_key(event_time);
    let mut text = describe(rj, &events, Timestamp::now());
    let extra = preview_lines(&render);
    if !extra.is_empty() {
        // After the render's own lines, before failures, conditions and Events.
        let at = text
            .find("\nFailed batches:")
            .or_else(|| text.find("\nConditions:"))
            .or_else(|| text.find("\nEvents:"))
            .unwrap_or(text.len());
        text.insert_str(at, &format!("\n{}", extra.join("\n")));
    }
    crate::out!("{text}");
    Ok(())
}

fn event_time(e: &Event) -> Option<Timestamp> {
    e.event_time
        .as_ref()
        .map(|t| t.0)
        .or_else(|| e.last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| e.first_timestamp.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// `status`'s lines for the newest frame and the preview, when status has them.
pub fn preview_lines(r: &crate::preview::Render) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(l) = &r.last_frame {
        let frame = l.frame.map(|f| f.to_string()).unwrap_or_else(|| "?".into());
        let file = l.file.as_deref().unwrap_or("-");
        out.push(format!("{:<14}{frame} ({file})", "Last frame:"));
    }
    if let Some(p) = &r.preview {
        let mut line = p.state.clone();
        let files: Vec<&str> = [p.video.as_deref(), p.contact_sheet.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        if p.ready() && !files.is_empty() {
            line.push_str(&format!(": {}", files.join(", ")));
            if let Some(n) = p.frames {
                line.push_str(&format!(" ({n} frames at {} fps", r.fps));
                if let (Some(c), Some(rows)) = (p.columns, p.rows) {
                    line.push_str(&format!(", sheet {c}x{rows}"));
                }
                line.push(')');
            }
            line.push_str(&format!(
                " (kubectl render fetch {} --preview)",
                r.rj.name_any()
            ));
        } else if let Some(m) = p.message.as_deref().filter(|m| !m.is_empty()) {
            line.push_str(&format!(": {m}"));
        }
        out.push(format!("{:<14}{line}", "Preview:"));
    }
    out
}

/// The readable summary `status` prints.
pub fn describe(rj: &RenderJob, events: &[Event], now: Timestamp) -> String {
    let s = rj.status.clone().unwrap_or_default();
    let mut out = spec_lines(rj);
    out.extend(progress_lines(&s, now));
    out.extend(failed_lines(&s));
    out.extend(crate::unblock::blocked_lines(&rj.name_any(), &s));
    out.extend(crate::rerender::status_lines(&s));
    out.extend(condition_lines(&s));
    out.extend(event_lines(events, now));
    out.join("\n")
}

/// `Key:` and its value, in the summary's column.
fn kv(k: &str, v: String) -> String {
    format!("{:<14}{v}", format!("{k}:"))
}

/// What the RenderJob asks for: its name, scene, frames and render settings.
fn spec_lines(rj: &RenderJob) -> Vec<String> {
    let spec = &rj.spec;
    let count = frames::frames(&spec.frames).count();
    vec![
        kv("Name", rj.name_any()),
        kv("Namespace", rj.namespace().unwrap_or_default()),
        kv(
            "Scene",
            format!("{} (claim {})", spec.blend_file, spec.storage.claim_name),
        ),
        kv(
            "Frames",
            format!(
                "{} ({count} frames), batches of {}, {} at a time{}",
                frames::display(&spec.frames),
                spec.batch_size,
                spec.parallelism,
                if spec.suspend { ", paused" } else { "" }
            ),
        ),
        kv(
            "Render",
            format!(
                "{} on {}, {} to {}",
                spec.engine.as_str(),
                spec.device.as_str(),
                spec.output.format.as_str(),
                rj.output_path()
            ),
        ),
    ]
}

/// Where the render is: its phase, frames, batches, pods, time and how it rendered.
fn progress_lines(s: &RenderJobStatus, now: Timestamp) -> Vec<String> {
    let mut out = vec![
        kv("Phase", s.phase.as_str().to_string()),
        kv(
            "Progress",
            format!(
                "{}/{} frames · {}",
                s.frames.rendered,
                s.frames.total,
                progress::details(s, now)
            ),
        ),
        kv(
            "Batches",
            format!(
                "{} succeeded, {} running, {} pending, {} failed, of {}",
                s.batches.succeeded,
                s.batches.active,
                s.batches.pending,
                s.batches.failed,
                s.batches.total
            ),
        ),
        kv(
            "Pods",
            format!(
                "{} running, {}{} pending, {} succeeded, {} failed",
                s.pods.running,
                match s.pods.waiting {
                    0 => String::new(),
                    n => format!("{n} started ahead (waiting), "),
                },
                s.pods.pending,
                s.pods.succeeded,
                s.pods.failed
            ),
        ),
    ];
    if let Some(d) = progress::elapsed(s, now) {
        let done = if s.completion_time.is_some() {
            "took"
        } else {
            "running for"
        };
        out.push(kv("Time", format!("{done} {}", progress::duration(d))));
    }
    let mut render = Vec::new();
    if let Some(spf) = s.seconds_per_frame {
        render.push(format!("{spf:.2} s per frame"));
    }
    if !s.devices_used.is_empty() {
        render.push(format!("devices {}", s.devices_used.join(", ")));
    }
    if let Some(v) = &s.blender_version {
        render.push(format!("Blender {v}"));
    }
    if !render.is_empty() {
        out.push(kv("Rendered", render.join(", ")));
    }
    out
}

fn failed_lines(s: &RenderJobStatus) -> Vec<String> {
    let mut out = Vec::new();
    if !s.failed_batches.is_empty() {
        out.push("Failed batches:".into());
        for f in &s.failed_batches {
            out.push(format!("  {}", progress::failed_line(f)));
        }
        if s.batches.failed as usize > s.failed_batches.len() {
            out.push(format!(
                "  ... and {} more",
                s.batches.failed as usize - s.failed_batches.len()
            ));
        }
    }
    out
}

fn condition_lines(s: &RenderJobStatus) -> Vec<String> {
    let mut out = Vec::new();
    if !s.conditions.is_empty() {
        out.push("Conditions:".into());
        for c in &s.conditions {
            let message = if c.message.trim().is_empty() {
                String::new()
            } else {
                format!(": {}", c.message)
            };
            out.push(format!(
                "  {:<12} {:<5} {}{message}",
                c.type_, c.status, c.reason
            ));
        }
    }
    out
}

fn event_lines(events: &[Event], now: Timestamp) -> Vec<String> {
    let mut out = vec!["Events:".to_string()];
    if events.is_empty() {
        out.push("  <none>".into());
        return out;
    }
    let mut rows = vec![
        ["AGE", "TYPE", "REASON", "MESSAGE"]
            .map(String::from)
            .to_vec(),
    ];
    for e in events {
        let count = e
            .series
            .as_ref()
            .and_then(|s| s.count)
            .or(e.count)
            .unwrap_or(1);
        let mut message = e.message.clone().unwrap_or_default();
        if count > 1 {
            message.push_str(&format!(" (x{count})"));
        }
        rows.push(vec![
            age(event_time(e), now),
            e.type_.clone().unwrap_or_default(),
            e.reason.clone().unwrap_or_default(),
            message,
        ]);
    }
    for line in table(&rows).lines() {
        out.push(format!("  {line}"));
    }
    out
}

fn failed(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Failed" && c.status == "True"))
}

pub async fn retry(global: &Global, args: &Retry) -> Result<()> {
    let ctx = Ctx::new(global).await?;
    let rj = ctx.renderjob(&args.name).await?;
    let jobs: Api<Job> = ctx.api();
    let lp = ListParams::default().labels(&format!(
        "{RENDERJOB_LABEL}={}",
        renderjob_label(&args.name)
    ));
    let mut failed_jobs: Vec<Job> = jobs
        .list(&lp)
        .await
        .map_err(|e| ctx.unreachable(e))?
        .items
        .into_iter()
        .filter(|j| failed(j) && j.metadata.deletion_timestamp.is_none())
        .collect();
    failed_jobs.sort_by_key(|j| j.name_any());
    if failed_jobs.is_empty() {
        crate::out!("nothing to retry: {} has no failed batches", args.name);
        return Ok(());
    }
    let reasons = rj.status.clone().unwrap_or_default().failed_batches;
    for job in &failed_jobs {
        let name = job.name_any();
        jobs.delete(&name, &DeleteParams::background())
            .await
            .map_err(|e| ctx.unreachable(e))?;
        // The preview Job carries no batch label; the operator makes it again once deleted.
        let what = match job.labels().get(BATCH_LABEL) {
            Some(batch) => format!("batch {batch}"),
            None => "preview".to_string(),
        };
        let why = reasons
            .iter()
            .find(|f| f.job == name)
            .map(|f| format!(", frames {}, {}", f.frames, f.reason))
            .unwrap_or_default();
        crate::out!("{what}: deleted Job {name}{why}");
    }
    let batches = failed_jobs
        .iter()
        .filter(|j| j.labels().contains_key(BATCH_LABEL))
        .count();
    if batches > 0 {
        crate::out!(
            "{batches} failed batch{} will render again (frames already on disk are skipped)",
            if batches == 1 { "" } else { "es" }
        );
    }
    if batches < failed_jobs.len() {
        crate::out!("the preview will be made again");
    }
    if args.watch {
        // The status says Failed until the operator has seen the Jobs go.
        let api = ctx.rjs();
        let name = args.name.clone();
        let cond = move |rj: Option<&RenderJob>| {
            rj.and_then(|r| r.status.as_ref())
                .is_some_and(|s| s.phase != renderfarm_api::crd::Phase::Failed)
        };
        let _ =
            tokio::time::timeout(Duration::from_secs(60), await_condition(api, &name, cond)).await;
        watch::follow(&ctx, &args.name, false, false).await?;
    }
    Ok(())
}

pub async fn suspend(global: &Global, args: &Named, suspend: bool) -> Result<()> {
    let ctx = Ctx::new(global).await?;
    let rj = ctx.renderjob(&args.name).await?;
    if rj.spec.suspend == suspend {
        crate::out!(
            "{} is already {}",
            args.name,
            if suspend {
                "paused"
            } else {
                "running (not paused)"
            }
        );
        return Ok(());
    }
    ctx.rjs()
        .patch(
            &args.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": suspend}})),
        )
        .await
        .map_err(|e| ctx.unreachable(e))?;
    if suspend {
        crate::out!(
            "{} paused: running batches stop, frames on disk stay (kubectl render resume {})",
            args.name,
            args.name
        );
    } else {
        crate::out!("{} resumed", args.name);
    }
    Ok(())
}

pub async fn delete(global: &Global, args: &Delete) -> Result<()> {
    let ctx = Ctx::new(global).await?;
    let rj = ctx.renderjob(&args.name).await?;
    let api = ctx.rjs();
    api.delete(&args.name, &DeleteParams::foreground())
        .await
        .map_err(|e| ctx.unreachable(e))?;
    if !args.no_wait {
        let uid = rj.uid().unwrap_or_default();
        let wait = await_condition(api, &args.name, conditions::is_deleted(&uid));
        tokio::time::timeout(Duration::from_secs(120), wait)
            .await
            .map_err(|_| Error::Kube(format!("{} still exists after 120s", args.name)))?
            .map_err(|e| Error::Kube(e.to_string()))?;
    }
    let dir = rj.output_path();
    let dir = dir.rsplit_once('/').map_or(dir.as_str(), |(d, _)| d);
    crate::out!(
        "renderjob.renderfarm.io/{} deleted (its frames stay in claim {} under {dir}/)",
        args.name,
        rj.spec.storage.claim_name
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preview_lines_name_the_files_once_ready() {
        let r = crate::preview::Render::from_json(json!({
            "apiVersion": "renderfarm.io/v1alpha1", "kind": "RenderJob",
            "metadata": {"name": "shot"},
            "spec": {"blendFile": "a.blend", "frames": {"start": 1, "end": 24},
                     "storage": {"claimName": "c"}},
            "status": {"lastFrame": {"frame": 24, "file": "renders/shot/frame_0024.png",
                                     "thumbnail": "renders/shot/.thumbs/frame_0024.jpg"},
                       "preview": {"state": "Ready", "video": "renders/shot/preview.mp4",
                                   "contactSheet": "renders/shot/contact.jpg", "frames": 24,
                                   "columns": 5, "rows": 5}},
        }))
        .expect("render");
        assert_eq!(
            preview_lines(&r),
            [
                "Last frame:   24 (renders/shot/frame_0024.png)",
                "Preview:      Ready: renders/shot/preview.mp4, renders/shot/contact.jpg (24 frames at 24 fps, sheet 5x5) (kubectl render fetch shot --preview)",
            ]
        );
        let mut failed = r.clone();
        failed.last_frame = None;
        failed.preview = Some(crate::preview::PreviewStatus {
            state: "Failed".into(),
            message: Some("ffmpeg exited 1".into()),
            ..Default::default()
        });
        assert_eq!(
            preview_lines(&failed),
            ["Preview:      Failed: ffmpeg exited 1"]
        );
    }

    #[test]
    fn tables_align_columns() {
        let rows = vec![
            vec!["NAME".to_string(), "PHASE".to_string()],
            vec!["a-long-name".to_string(), "Running".to_string()],
        ];
        assert_eq!(table(&rows), "NAME          PHASE\na-long-name   Running");
    }

    #[test]
    fn describe_shows_status_failures_and_events() {
        let rj: RenderJob = serde_json::from_value(json!({
            "apiVersion": "renderfarm.io/v1alpha1", "kind": "RenderJob",
            "metadata": {"name": "shot", "namespace": "art"},
            "spec": {"blendFile": "scenes/x/shot.blend", "frames": {"start": 1, "end": 15},
                     "batchSize": 5, "parallelism": 3, "storage": {"claimName": "render-storage"}},
            "status": {"phase": "Failed", "frames": {"total": 15, "rendered": 10},
                       "batches": {"total": 3, "pending": 0, "active": 0, "succeeded": 2, "failed": 1},
                       "pods": {"pending": 0, "running": 0, "succeeded": 2, "failed": 3},
                       "failedBatches": [{"index": 1, "frames": "6..10", "job": "shot-0001", "attempts": 3,
                                          "reason": "BlenderError", "exitCode": 1}]},
        }))
        .expect("RenderJob");
        let ev: Event = serde_json::from_value(json!({
            "metadata": {"name": "e1", "creationTimestamp": "2026-01-01T10:00:00Z"},
            "involvedObject": {"kind": "RenderJob", "name": "shot"},
            "type": "Warning", "reason": "BatchFailed", "message": "batch 1 failed", "count": 3,
        }))
        .expect("Event");
        let text = describe(&rj, &[ev], "2026-01-01T10:01:00Z".parse().expect("time"));
        for want in [
            "Scene:        scenes/x/shot.blend (claim render-storage)",
            "Frames:       1-15 (15 frames), batches of 5, 3 at a time",
            "Render:       CYCLES on CPU, PNG to renders/shot/frame_####",
            "Phase:        Failed",
            "Batches:      2 succeeded, 0 running, 0 pending, 1 failed, of 3",
            "  FAILED batch 1 (frames 6..10): BlenderError, exit 1, 3 attempts",
            "  1m00s   Warning   BatchFailed   batch 1 failed (x3)",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }
}
