//! Progress: byte bars for transfers, and the pure formatting of a render's progress that
//! both the bars and the plain lines use.

use std::io::{IsTerminal as _, Read};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use k8s_openapi::jiff::Timestamp;
use renderfarm_api::crd::{FailedBatch, Phase, RenderJobStatus};

/// Bars only when stdout is a terminal; plain lines otherwise.
pub fn is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// A byte bar on stdout (hidden when stdout is not a terminal).
pub fn bytes_bar(len: u64, what: &str) -> ProgressBar {
    if !is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stdout());
    let style = ProgressStyle::with_template(
        "{prefix} [{bar:30.cyan/blue}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(what.to_string());
    bar
}

/// A reader that moves a bar by the bytes it reads.
pub struct Counted<R> {
    pub inner: R,
    pub bar: ProgressBar,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

/// `42s`, `3m05s`, `1h02m`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// `1.5 MiB`.
pub fn bytes(n: u64) -> String {
    indicatif::BinaryBytes(n).to_string()
}

/// Time left until the operator's estimated completion.
pub fn eta(s: &RenderJobStatus, now: Timestamp) -> Option<Duration> {
    let t = s.estimated_completion_time.as_ref()?.0;
    let left = t.as_millisecond() - now.as_millisecond();
    Some(Duration::from_millis(left.max(0) as u64))
}

/// Frames per minute since the render started.
pub fn frames_per_minute(s: &RenderJobStatus, now: Timestamp) -> Option<f64> {
    let start = s.start_time.as_ref()?.0;
    let end = s
        .completion_time
        .as_ref()
        .map(|t| t.0.as_millisecond())
        .unwrap_or_else(|| now.as_millisecond());
    let minutes = (end - start.as_millisecond()) as f64 / 60_000.0;
    (minutes > 0.0 && s.frames.rendered > 0).then(|| s.frames.rendered as f64 / minutes)
}

/// How long the render has run (until it completed, when it did).
pub fn elapsed(s: &RenderJobStatus, now: Timestamp) -> Option<Duration> {
    let start = s.start_time.as_ref()?.0.as_millisecond();
    let end = s
        .completion_time
        .as_ref()
        .map(|t| t.0.as_millisecond())
        .unwrap_or_else(|| now.as_millisecond());
    Some(Duration::from_millis((end - start).max(0) as u64))
}

/// Frames rendered in whole percent, rounded down (100 only when every frame is there).
pub fn percent(s: &RenderJobStatus) -> i64 {
    if s.frames.total > 0 {
        s.frames.rendered * 100 / s.frames.total
    } else {
        0
    }
}

/// The figures after the bar: `ETA 1m05s · 4.2 frames/min · batches 3/10, 2 running, 1 failed`.
pub fn details(s: &RenderJobStatus, now: Timestamp) -> String {
    let mut parts = Vec::new();
    let paused = s.phase == Phase::Suspended;
    if let Some(eta) = eta(s, now).filter(|_| s.frames.rendered < s.frames.total && !paused) {
        parts.push(format!("ETA {}", duration(eta)));
    }
    if let Some(fpm) = frames_per_minute(s, now) {
        parts.push(format!("{fpm:.1} frames/min"));
    }
    let b = &s.batches;
    let mut batches = format!("batches {}/{}", b.succeeded, b.total);
    if b.active > 0 {
        let what = if paused { "paused" } else { "running" };
        batches.push_str(&format!(", {} {what}", b.active));
    }
    if b.failed > 0 {
        batches.push_str(&format!(", {} failed", b.failed));
    }
    parts.push(batches);
    parts.join(" · ")
}

/// One plain line: `shot Running 9/12 frames 75% · ETA 12s · 4.2 frames/min · batches 3/4`.
pub fn line(name: &str, s: &RenderJobStatus, now: Timestamp) -> String {
    format!(
        "{name} {} {}/{} frames {}% · {}",
        s.phase.as_str(),
        s.frames.rendered,
        s.frames.total,
        percent(s),
        details(s, now)
    )
}

/// The last line: `shot Succeeded: 12/12 frames in 1m05s (2.1 s/frame)`.
pub fn final_line(name: &str, s: &RenderJobStatus, now: Timestamp) -> String {
    let mut out = format!(
        "{name} {}: {}/{} frames",
        s.phase.as_str(),
        s.frames.rendered,
        s.frames.total
    );
    if let Some(d) = elapsed(s, now) {
        out.push_str(&format!(" in {}", duration(d)));
    }
    if let Some(spf) = s.seconds_per_frame {
        out.push_str(&format!(" ({spf:.1} s/frame)"));
    }
    if s.batches.failed > 0 {
        out.push_str(&format!(
            ", {} of {} batches failed",
            s.batches.failed, s.batches.total
        ));
    }
    out
}

/// `FAILED batch 1 (frames 6..10): BlenderError, exit 1, 3 attempts: message`.
pub fn failed_line(f: &FailedBatch) -> String {
    let mut out = format!(
        "FAILED batch {} (frames {}): {}",
        f.index, f.frames, f.reason
    );
    if let Some(code) = f.exit_code {
        out.push_str(&format!(", exit {code}"));
    }
    out.push_str(&format!(
        ", {} attempt{}",
        f.attempts,
        if f.attempts == 1 { "" } else { "s" }
    ));
    if let Some(m) = f.message.as_deref().filter(|m| !m.is_empty()) {
        let m = m.lines().next().unwrap_or_default();
        out.push_str(&format!(": {m}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use renderfarm_api::crd::{BatchCounts, FrameCounts};

    fn at(s: &str) -> Timestamp {
        s.parse().expect("valid time")
    }

    fn time(s: &str) -> Time {
        Time(s.parse().expect("valid timestamp"))
    }

    fn running() -> RenderJobStatus {
        RenderJobStatus {
            phase: Phase::Running,
            frames: FrameCounts {
                total: 12,
                rendered: 9,
            },
            batches: BatchCounts {
                total: 4,
                pending: 0,
                active: 1,
                succeeded: 3,
                failed: 0,
                queued: 0,
            },
            start_time: Some(time("2026-01-01T10:00:00Z")),
            estimated_completion_time: Some(time("2026-01-01T10:02:20Z")),
            ..Default::default()
        }
    }

    #[test]
    fn durations_read_like_a_clock() {
        assert_eq!(duration(Duration::from_secs(0)), "0s");
        assert_eq!(duration(Duration::from_secs(59)), "59s");
        assert_eq!(duration(Duration::from_secs(65)), "1m05s");
        assert_eq!(duration(Duration::from_secs(3720)), "1h02m");
    }

    #[test]
    fn a_running_render_line() {
        let now = at("2026-01-01T10:02:00Z");
        assert_eq!(
            line("shot", &running(), now),
            "shot Running 9/12 frames 75% · ETA 20s · 4.5 frames/min · batches 3/4, 1 running"
        );
    }

    #[test]
    fn eta_is_never_negative_and_gone_when_done() {
        let late = at("2026-01-01T10:05:00Z");
        assert_eq!(eta(&running(), late), Some(Duration::ZERO));
        let mut done = running();
        done.frames.rendered = 12;
        assert!(!details(&done, late).contains("ETA"));
        let mut fresh = running();
        fresh.start_time = None;
        fresh.estimated_completion_time = None;
        fresh.frames.rendered = 0;
        assert_eq!(details(&fresh, late), "batches 3/4, 1 running");
        let mut paused = running();
        paused.phase = Phase::Suspended;
        let at_noon = at("2026-01-01T10:02:00Z");
        assert_eq!(
            details(&paused, at_noon),
            "4.5 frames/min · batches 3/4, 1 paused",
            "no ETA while paused"
        );
    }

    #[test]
    fn final_lines_and_failed_batches() {
        let mut s = running();
        s.phase = Phase::Failed;
        s.frames.rendered = 10;
        s.batches.failed = 1;
        s.completion_time = Some(time("2026-01-01T10:01:05Z"));
        s.seconds_per_frame = Some(2.14);
        assert_eq!(
            final_line("shot", &s, at("2026-01-01T11:00:00Z")),
            "shot Failed: 10/12 frames in 1m05s (2.1 s/frame), 1 of 4 batches failed"
        );
        let f = FailedBatch {
            index: 1,
            frames: "6..10".into(),
            job: "shot-0001".into(),
            attempts: 3,
            reason: "BlenderError".into(),
            exit_code: Some(1),
            message: Some("Error: out of memory\nmore".into()),
        };
        assert_eq!(
            failed_line(&f),
            "FAILED batch 1 (frames 6..10): BlenderError, exit 1, 3 attempts: Error: out of memory"
        );
    }
}
