//! The pages, as plain HTML built from a RenderJob's status and its batch Jobs: pure
//! functions, so what a user sees is tested without a cluster or a browser.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt as _;
use renderfarm_api::crd::{Phase, RenderJob};
use renderfarm_api::names::BATCH_LABEL;
use renderfarm_api::plan::Plan;
use renderfarm_api::ranges::decode_ranges;

use crate::preview::Render;
use crate::progress;

/// Text made safe for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A name as one URL path segment (RenderJob names are DNS labels; anything else is encoded).
pub fn url_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// A batch's state as the grid colours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchState {
    /// No Job yet (parallelism, or the render is paused).
    Waiting,
    /// A Job whose pod is not running yet.
    Starting,
    Running,
    Succeeded,
    Failed,
}

impl BatchState {
    pub fn as_str(self) -> &'static str {
        match self {
            BatchState::Waiting => "Waiting",
            BatchState::Starting => "Starting",
            BatchState::Running => "Running",
            BatchState::Succeeded => "Succeeded",
            BatchState::Failed => "Failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchCell {
    pub index: u32,
    pub frames: String,
    pub state: BatchState,
}

/// Every batch of the plan with its state: the status's succeeded and failed batches first
/// (they outlive their Jobs), then what each batch Job says.
pub fn batch_cells(rj: &RenderJob, jobs: &[Job]) -> Vec<BatchCell> {
    let Some(plan) = Plan::new(&rj.spec.frames, rj.spec.batch_size) else {
        return Vec::new();
    };
    let status = rj.status.clone().unwrap_or_default();
    let succeeded: BTreeSet<u32> = status
        .succeeded_batches
        .as_deref()
        .map(decode_ranges)
        .unwrap_or_default();
    let failed: BTreeSet<u32> = status
        .failed_batches
        .iter()
        .filter_map(|f| u32::try_from(f.index).ok())
        .collect();
    let mut from_jobs = std::collections::BTreeMap::new();
    for job in jobs {
        let Some(index) = job
            .labels()
            .get(BATCH_LABEL)
            .and_then(|b| b.parse::<u32>().ok())
        else {
            continue;
        };
        from_jobs.insert(index, job_state(job));
    }
    plan.batches()
        .map(|b| {
            let state = if succeeded.contains(&b.index) {
                BatchState::Succeeded
            } else if failed.contains(&b.index) {
                BatchState::Failed
            } else {
                from_jobs
                    .get(&b.index)
                    .copied()
                    .unwrap_or(BatchState::Waiting)
            };
            BatchCell {
                index: b.index,
                frames: b.frames_label(),
                state,
            }
        })
        .collect()
}

fn job_state(job: &Job) -> BatchState {
    let Some(s) = &job.status else {
        return BatchState::Starting;
    };
    let condition = |t: &str| {
        s.conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == t && c.status == "True")
    };
    if condition("Complete") || s.succeeded.unwrap_or(0) > 0 {
        BatchState::Succeeded
    } else if condition("Failed") {
        BatchState::Failed
    } else if s.ready.unwrap_or(0) > 0 {
        BatchState::Running
    } else {
        BatchState::Starting
    }
}

/// A failed batch as the page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedView {
    pub index: i64,
    pub frames: String,
    pub reason: String,
    pub message: Option<String>,
    pub attempts: i64,
    pub exit_code: Option<i32>,
    /// The last lines of its newest pod's log.
    pub log_tail: Option<String>,
}

fn percent(rendered: i64, total: i64) -> f64 {
    if total <= 0 {
        0.0
    } else {
        (rendered as f64 * 100.0 / total as f64).clamp(0.0, 100.0)
    }
}

fn phase_class(p: Phase) -> &'static str {
    match p {
        Phase::Succeeded => "ok",
        Phase::Failed => "bad",
        Phase::Running => "run",
        _ => "idle",
    }
}

fn bar(id: Option<&str>, rendered: i64, total: i64, phase: Phase) -> String {
    let pct = percent(rendered, total);
    let id = id.map(|i| format!(" id=\"{i}\"")).unwrap_or_default();
    format!(
        "<div class=\"bar {cls}\"{id} role=\"progressbar\" aria-valuemin=\"0\" aria-valuemax=\"{total}\" aria-valuenow=\"{rendered}\" data-rendered=\"{rendered}\" data-total=\"{total}\"><div style=\"width:{pct:.1}%\"></div><span>{rendered}/{total} frames · {pct:.0}%</span></div>",
        cls = phase_class(phase),
    )
}

/// The list page's rows, one per render.
pub fn list_rows(renders: &[Render], now: Timestamp) -> String {
    if renders.is_empty() {
        return "<tr><td colspan=\"6\" class=\"empty\">No RenderJobs in this namespace yet: <code>kubectl render submit SCENE.blend</code></td></tr>".into();
    }
    let mut out = String::new();
    for r in renders {
        let name = r.rj.name_any();
        let s = r.rj.status.clone().unwrap_or_default();
        let eta = progress::eta(&s, now)
            .filter(|_| s.frames.rendered < s.frames.total)
            .map(progress::duration)
            .unwrap_or_else(|| "-".into());
        let preview = r
            .preview
            .as_ref()
            .map(|p| p.state.as_str())
            .filter(|s| !s.is_empty())
            .unwrap_or("-");
        let _ = write!(
            out,
            "<tr data-name=\"{n}\"><td class=\"name\"><a href=\"/r/{u}\" title=\"{n}\">{n}</a></td><td><span class=\"phase {cls}\">{phase}</span></td><td class=\"wide\">{bar}</td><td>{bs}/{bt} batches{failed}</td><td>{eta}</td><td>{preview}</td></tr>",
            n = esc(&name),
            u = url_segment(&name),
            cls = phase_class(s.phase),
            phase = s.phase.as_str(),
            bar = bar(None, s.frames.rendered, s.frames.total, s.phase),
            bs = s.batches.succeeded,
            bt = s.batches.total,
            failed = if s.batches.failed > 0 {
                format!(", <span class=\"bad\">{} failed</span>", s.batches.failed)
            } else {
                String::new()
            },
            eta = esc(&eta),
            preview = esc(preview),
        );
    }
    out
}

/// The render page's changing part: summary and progress, the batch grid, failed batches.
pub fn live(r: &Render, cells: &[BatchCell], failed: &[FailedView], now: Timestamp) -> String {
    let s = r.rj.status.clone().unwrap_or_default();
    let spec = &r.rj.spec;
    let mut out = String::new();
    let _ = write!(
        out,
        "<div class=\"summary\"><span class=\"phase {cls}\" id=\"phase\">{phase}</span> <span>{details}</span></div>{bar}",
        cls = phase_class(s.phase),
        phase = s.phase.as_str(),
        details = esc(&format!(
            "{} · {} · {} · {}",
            spec.blend_file,
            crate::frames::display(&spec.frames),
            spec.engine.as_str(),
            progress::details(&s, now)
        )),
        bar = bar(Some("progress"), s.frames.rendered, s.frames.total, s.phase),
    );
    let mut counts = [0usize; 5];
    for c in cells {
        counts[c.state as usize] += 1;
    }
    out.push_str("<h2>Batches</h2><div class=\"legend\">");
    for (state, n) in [
        BatchState::Succeeded,
        BatchState::Running,
        BatchState::Starting,
        BatchState::Waiting,
        BatchState::Failed,
    ]
    .iter()
    .map(|s| (*s, counts[*s as usize]))
    {
        let _ = write!(
            out,
            "<span><i class=\"b {c}\"></i>{n} {c}</span>",
            c = state.as_str()
        );
    }
    out.push_str("</div><div class=\"grid\" id=\"batches\">");
    for c in cells {
        let _ = write!(
            out,
            "<div class=\"b {st}\" data-batch=\"{i}\" data-state=\"{st}\" title=\"batch {i} · frames {f} · {st}\">{i}</div>",
            i = c.index,
            f = esc(&c.frames),
            st = c.state.as_str(),
        );
    }
    out.push_str("</div>");
    out.push_str(&crate::unblock::blocked_html(&r.rj.name_any(), &s));
    if !failed.is_empty() {
        out.push_str("<h2>Failed batches</h2>");
        for f in failed {
            let _ = write!(
                out,
                "<div class=\"failed\" data-batch=\"{i}\"><div><b>batch {i}</b> · frames {fr} · <span class=\"bad\">{reason}</span>{code} · {a} attempt{s}</div>",
                i = f.index,
                fr = esc(&f.frames),
                reason = esc(&f.reason),
                code = f
                    .exit_code
                    .map(|c| format!(" (exit {c})"))
                    .unwrap_or_default(),
                a = f.attempts,
                s = if f.attempts == 1 { "" } else { "s" },
            );
            if let Some(m) = &f.message {
                let _ = write!(out, "<div class=\"msg\">{}</div>", esc(m));
            }
            if let Some(log) = &f.log_tail {
                let _ = write!(out, "<pre>{}</pre>", esc(log));
            }
            out.push_str("</div>");
        }
    }
    out
}

/// The preview section's text when there is no video to show.
pub fn preview_note(r: &Render) -> String {
    match &r.preview {
        None => "No preview in this render's status (the operator makes one once every batch succeeded).".into(),
        Some(p) => {
            let what = match p.state.as_str() {
                "Pending" => "pending",
                "Running" => "being made",
                "Ready" => "ready",
                "Failed" => "failed",
                "Disabled" => "turned off",
                other => other,
            };
            let mut s = format!("Preview {what}");
            match p.message.as_deref().filter(|m| !m.is_empty()) {
                Some(m) => {
                    s.push_str(": ");
                    s.push_str(m);
                }
                None if p.state == "Disabled" => s.push_str(" (spec.preview.enabled: false)"),
                None if p.ready() => {
                    if let Some(n) = p.frames.filter(|n| *n > 0) {
                        let secs = f64::from(n) / f64::from(r.fps.max(1));
                        s.push_str(&format!(": {n} frames at {} fps ({secs:.1} s)", r.fps));
                    }
                    if let (Some(c), Some(rows)) = (p.columns, p.rows) {
                        s.push_str(&format!(", contact sheet {c}×{rows}"));
                    }
                }
                None => {}
            }
            s
        }
    }
}

const STYLE: &str = include_str!("ui.css");
const SCRIPT: &str = include_str!("ui.js");

fn page(title: &str, body: &str, data: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{t}</title><style>{STYLE}</style></head><body {data}><header><a href=\"/\">renderfarm</a><span class=\"ns\"></span></header><main>{body}</main><script>{SCRIPT}</script></body></html>",
        t = esc(title),
    )
}

/// The list page; its rows come from `/api/renders`.
pub fn list_page(namespace: &str, rows: &str) -> String {
    page(
        &format!("Renders in {namespace}"),
        &format!(
            "<h1>Renders <small>namespace {ns}</small></h1><table class=\"renders\"><thead><tr><th class=\"name\">Name</th><th>Phase</th><th>Progress</th><th>Batches</th><th>ETA</th><th>Preview</th></tr></thead><tbody id=\"rows\">{rows}</tbody></table>",
            ns = esc(namespace)
        ),
        "data-page=\"list\"",
    )
}

/// A render's page; its changing parts come from `/api/r/NAME`.
pub fn render_page(name: &str, live_html: &str) -> String {
    page(
        name,
        &format!(
            "<h1>{n}</h1><div id=\"live\">{live_html}</div><div class=\"media\"><section><h2>Last frame</h2><figure><div id=\"thumb-empty\"></div><img id=\"thumb\" alt=\"the newest rendered frame\" hidden><figcaption id=\"thumb-caption\">No frame yet</figcaption></figure></section><section id=\"preview\"><h2>Preview</h2><p id=\"preview-note\"></p><video id=\"video\" controls muted loop autoplay playsinline preload=\"auto\" hidden></video><img id=\"contact\" alt=\"contact sheet\" hidden></section></div>",
            n = esc(name)
        ),
        &format!(
            "data-page=\"render\" data-name=\"{}\"",
            esc(&url_segment(name))
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(status: serde_json::Value) -> Render {
        Render::from_json(json!({
            "apiVersion": "renderfarm.io/v1alpha1", "kind": "RenderJob",
            "metadata": {"name": "shot<1>"},
            "spec": {"blendFile": "scenes/a.blend", "frames": {"start": 1, "end": 10},
                     "batchSize": 2, "storage": {"claimName": "c"}},
            "status": status,
        }))
        .expect("render")
    }

    fn job(batch: u32, status: serde_json::Value) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": format!("j{batch}"), "labels": {BATCH_LABEL: batch.to_string()}},
            "status": status,
        }))
        .expect("job")
    }

    #[test]
    fn batches_take_their_state_from_status_then_jobs() {
        let r = render(json!({
            "phase": "Running", "succeededBatches": "0-1",
            "failedBatches": [{"index": 4, "frames": "9..10", "job": "j4", "attempts": 2,
                               "reason": "OOMKilled"}],
        }));
        let jobs = [
            job(2, json!({"active": 1, "ready": 1})),
            job(3, json!({"active": 1})),
            // The status's failed list wins over a Job that is still being cleaned up.
            job(4, json!({"active": 1, "ready": 1})),
        ];
        let cells = batch_cells(&r.rj, &jobs);
        let states: Vec<_> = cells.iter().map(|c| c.state).collect();
        assert_eq!(
            states,
            [
                BatchState::Succeeded,
                BatchState::Succeeded,
                BatchState::Running,
                BatchState::Starting,
                BatchState::Failed
            ]
        );
        assert_eq!(cells[4].frames, "9..10");
        let no_jobs = batch_cells(&render(json!({"phase": "Pending"})).rj, &[]);
        assert!(no_jobs.iter().all(|c| c.state == BatchState::Waiting));
        assert_eq!(no_jobs.len(), 5);
    }

    #[test]
    fn live_part_shows_progress_grid_and_failures_escaped() {
        let r = render(json!({
            "phase": "Running", "frames": {"total": 10, "rendered": 4},
            "batches": {"total": 5, "pending": 2, "active": 0, "succeeded": 2, "failed": 1},
        }));
        let cells = batch_cells(&r.rj, &[]);
        let failed = [FailedView {
            index: 4,
            frames: "9..10".into(),
            reason: "BlenderError".into(),
            message: Some("Error: <missing> file".into()),
            attempts: 2,
            exit_code: Some(1),
            log_tail: Some("Fra:9 <crash>\nbye".into()),
        }];
        let html = live(&r, &cells, &failed, Timestamp::now());
        assert!(
            html.contains("id=\"progress\"") && html.contains("data-rendered=\"4\""),
            "{html}"
        );
        assert!(html.contains("width:40.0%"), "{html}");
        assert!(html.contains("4/10 frames · 40%"), "{html}");
        assert_eq!(html.matches("class=\"b Waiting\" data-batch").count(), 5);
        assert!(html.contains("BlenderError</span> (exit 1) · 2 attempts"));
        assert!(html.contains("Error: &lt;missing&gt; file"));
        assert!(html.contains("<pre>Fra:9 &lt;crash&gt;\nbye</pre>"));
        assert!(!html.contains("<crash>") && !html.contains("<missing>"));
    }

    #[test]
    fn list_rows_link_each_render() {
        let r = render(
            json!({"phase": "Succeeded", "frames": {"total": 10, "rendered": 10},
                              "preview": {"state": "Ready"}}),
        );
        let rows = list_rows(&[r], Timestamp::now());
        assert!(
            rows.contains(
                "<td class=\"name\"><a href=\"/r/shot%3C1%3E\" title=\"shot&lt;1&gt;\">shot&lt;1&gt;</a></td>"
            ),
            "{rows}"
        );
        assert!(
            rows.contains("width:100.0%") && rows.contains(">Ready<"),
            "{rows}"
        );
        let empty = list_rows(&[], Timestamp::now());
        assert!(empty.contains("No RenderJobs"), "{empty}");
        let columns = list_page("default", "").matches("</th>").count();
        assert!(
            empty.contains(&format!("colspan=\"{columns}\"")),
            "{columns} columns: {empty}"
        );
    }

    #[test]
    fn a_long_name_is_whole_in_its_title_and_the_cell_the_stylesheet_cuts() {
        let name = format!("shot-{}", "a".repeat(248));
        let r = Render::from_json(json!({
            "apiVersion": "renderfarm.io/v1alpha1", "kind": "RenderJob",
            "metadata": {"name": name},
            "spec": {"blendFile": "a.blend", "frames": {"start": 1, "end": 2},
                     "storage": {"claimName": "c"}},
        }))
        .expect("render");
        let rows = list_rows(&[r], Timestamp::now());
        assert!(
            rows.contains(&format!(
                "<td class=\"name\"><a href=\"/r/{name}\" title=\"{name}\">{name}</a>"
            )),
            "{rows}"
        );
        // What keeps the other columns on screen (tests/browser.rs checks it in chromium).
        assert!(
            STYLE.contains(".renders .name{width:100%}")
                && STYLE.contains(
                    ".renders td.name a{display:block;contain:inline-size;overflow:hidden;text-overflow:ellipsis}"
                ),
            "ui.css lost the rules that keep a long name from pushing the other columns off screen"
        );
    }

    #[test]
    fn preview_note_says_why_there_is_no_video() {
        let r = render(json!({"preview": {"state": "Failed", "message": "ffmpeg: no frames"}}));
        assert_eq!(preview_note(&r), "Preview failed: ffmpeg: no frames");
        let r = render(json!({"preview": {"state": "Pending",
                                          "message": "waiting for every frame: 6 of 12 rendered"}}));
        assert_eq!(
            preview_note(&r),
            "Preview pending: waiting for every frame: 6 of 12 rendered"
        );
        let r = render(
            json!({"preview": {"state": "Ready", "frames": 12, "columns": 4,
                                          "rows": 3}}),
        );
        assert_eq!(
            preview_note(&r),
            "Preview ready: 12 frames at 24 fps (0.5 s), contact sheet 4×3"
        );
        let r = render(json!({"preview": {"state": "Disabled"}}));
        assert_eq!(
            preview_note(&r),
            "Preview turned off (spec.preview.enabled: false)"
        );
        assert!(preview_note(&render(json!({}))).starts_with("No preview"));
    }

    #[test]
    fn pages_embed_style_and_script() {
        let p = render_page("shot", "");
        assert!(p.contains("<style>") && p.contains("<script>") && p.contains("id=\"video\""));
        assert!(list_page("default", "").contains("namespace default"));
    }
}
