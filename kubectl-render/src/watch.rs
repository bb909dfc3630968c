//! `kubectl render watch`: the RenderJob's status and its batch pods, watched (not polled),
//! shown as an overall bar and a line per active batch on a terminal, or as plain lines.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::{AsyncBufReadExt as _, StreamExt as _};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::LogParams;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, ResourceExt as _};
use render_contract::ProgressEvent;
use renderfarm_api::crd::{Phase, PreviewState, RenderJob, RenderJobStatus};
use renderfarm_api::names::{
    AFTER_ANNOTATION, BATCH_LABEL, CONTAINER, FRAMES_LABEL, RENDERJOB_LABEL, renderjob_label,
};
use tokio::sync::mpsc;

use crate::cluster::Ctx;
use crate::error::{Error, Result};
use crate::{frames, progress};

/// Batch pods whose logs are followed for their current frame (each is one open stream).
const MAX_FOLLOWED: usize = 8;
/// The longest `watch --preview` waits for the preview once the frames are done.
const PREVIEW_WAIT: Duration = Duration::from_secs(30 * 60);

/// What a batch pod showed so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchView {
    pub batch: u32,
    pub frames: String,
    pub phase: String,
    pub node: Option<String>,
    pub waiting: Option<String>,
    /// Frames to render in this pod (from its start event, else the frames label).
    pub to_render: Option<usize>,
    pub saved: usize,
    pub frame: Option<i32>,
    pub samples: Option<(u32, u32)>,
    pub started: Option<Timestamp>,
    /// Started ahead: the batch it waits for, until its wait is over.
    pub after: Option<u32>,
    /// Its wait is over (a handoff or a first frame seen).
    pub handed_off: bool,
}

impl BatchView {
    fn from_pod(pod: &Pod) -> Option<BatchView> {
        let labels = pod.labels();
        let batch = labels.get(BATCH_LABEL)?.parse().ok()?;
        let status = pod.status.as_ref();
        let waiting = status
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
            .next()
            .or_else(|| {
                status?
                    .conditions
                    .iter()
                    .flatten()
                    .find(|c| c.type_ == "PodScheduled" && c.status == "False")
                    .and_then(|c| c.reason.clone())
            });
        Some(BatchView {
            batch,
            frames: labels.get(FRAMES_LABEL).cloned().unwrap_or_default(),
            phase: status.and_then(|s| s.phase.clone()).unwrap_or_default(),
            node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            waiting,
            started: status.and_then(|s| s.start_time.as_ref()).map(|t| t.0),
            after: pod
                .annotations()
                .get(AFTER_ANNOTATION)
                .and_then(|a| a.parse().ok()),
            ..Default::default()
        })
    }

    fn active(&self) -> bool {
        matches!(self.phase.as_str(), "Pending" | "Running" | "")
    }

    fn apply(&mut self, ev: &ProgressEvent) {
        match ev {
            ProgressEvent::Start { to_render, .. } => self.to_render = Some(to_render.len()),
            ProgressEvent::FrameStarted { frame } => {
                self.frame = Some(*frame);
                self.samples = None;
                self.handed_off = true;
            }
            ProgressEvent::Handoff { .. } => self.handed_off = true,
            ProgressEvent::Samples { frame, done, total } => {
                self.frame = Some(*frame);
                self.samples = Some((*done, *total));
            }
            ProgressEvent::FrameSaved { .. } => {
                self.saved += 1;
                self.samples = None;
            }
            _ => {}
        }
    }

    /// Frames in the batch from its label (`16-20`), when no start event said better.
    fn planned(&self) -> usize {
        let span = self.frames.split_once('-').and_then(|(a, b)| {
            let (a, b) = (a.parse::<i64>().ok()?, b.parse::<i64>().ok()?);
            Some((b - a + 1).max(1) as usize)
        });
        self.to_render.or(span).unwrap_or(1)
    }
}

/// The text after a batch's bar: `frame 11 · samples 8/16`, `Pending: Unschedulable`, ...
pub fn batch_message(b: &BatchView, now: Timestamp) -> String {
    if b.phase != "Running" {
        let phase = if b.phase.is_empty() {
            "Pending"
        } else {
            b.phase.as_str()
        };
        return match &b.waiting {
            Some(w) => format!("{phase}: {w}"),
            None => phase.to_string(),
        };
    }
    let mut parts = Vec::new();
    if let Some(a) = b.after.filter(|_| !b.handed_off && b.frame.is_none()) {
        parts.push(format!("started ahead, waits for batch {a:04}"));
    }
    if let Some(f) = b.frame {
        parts.push(format!("frame {f}"));
    }
    if let Some((done, total)) = b.samples {
        parts.push(format!("samples {done}/{total}"));
    }
    if let Some(t) = b.started {
        let secs = (now.as_second() - t.as_second()).max(0) as u64;
        parts.push(progress::duration(Duration::from_secs(secs)));
    }
    if let Some(n) = &b.node {
        parts.push(format!("on {n}"));
    }
    parts.join(" · ")
}

/// `batch 0003 frames 10-12`.
pub fn batch_prefix(b: &BatchView) -> String {
    format!("batch {:04} frames {}", b.batch, b.frames)
}

enum Update {
    Render(Option<Box<RenderJob>>),
    Pods,
    Log(String, ProgressEvent),
    Tick,
}

/// Follow `name` until it succeeds (Ok) or fails ([`Error::RenderFailed`]).
pub async fn follow(ctx: &Ctx, name: &str, plain: bool, preview: bool) -> Result<()> {
    let rj = ctx.renderjob(name).await?;
    let plain = plain || !progress::is_terminal();
    let mut view = View::new(name, plain);
    view.preview_wait = preview.then(|| (Instant::now(), PREVIEW_WAIT));
    view.planned = frames::frames(&rj.spec.frames).count() as i64;
    view.render(rj.status.clone().unwrap_or_default());
    if let Some(done) = view.finished() {
        view.close();
        return done;
    }

    let (tx, mut rx) = mpsc::channel::<Update>(256);
    let rj_task = watch_render(ctx, name, tx.clone());
    let pods: Api<Pod> = ctx.api();
    let (store, pod_task) = watch_pods(&pods, name, tx.clone());
    let tick_task = tick(tx.clone());
    let mut logs: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();

    let result = loop {
        let update = tokio::select! {
            u = rx.recv() => u,
            _ = tokio::signal::ctrl_c() => break Err(Error::Interrupted),
        };
        match update {
            None => break Err(Error::Kube("the watch ended".into())),
            Some(Update::Render(None)) => {
                break Err(Error::Usage(format!("RenderJob {name} was deleted")));
            }
            Some(Update::Render(Some(rj))) => view.render(rj.status.unwrap_or_default()),
            Some(Update::Pods) => {
                view.pods(&store);
                follow_logs(&view, &pods, &tx, &mut logs);
            }
            Some(Update::Log(pod, ev)) => view.log(&pod, &ev),
            Some(Update::Tick) => view.tick(),
        }
        if let Some(done) = view.finished() {
            break done;
        }
    };
    for (_, task) in logs {
        task.abort();
    }
    rj_task.abort();
    pod_task.abort();
    tick_task.abort();
    view.close();
    result
}

/// The RenderJob `name`, watched: each change (or its deletion) as an update.
fn watch_render(ctx: &Ctx, name: &str, tx: mpsc::Sender<Update>) -> tokio::task::JoinHandle<()> {
    let rjs = ctx.rjs();
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    tokio::spawn(async move {
        let stream = watcher(rjs, cfg).default_backoff();
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            let update = match ev {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                    Update::Render(Some(Box::new(o)))
                }
                Ok(watcher::Event::Delete(_)) => Update::Render(None),
                _ => continue,
            };
            if tx.send(update).await.is_err() {
                break;
            }
        }
    })
}

/// The render's batch pods, kept in a store; each change is an update.
fn watch_pods(
    pods: &Api<Pod>,
    name: &str,
    tx: mpsc::Sender<Update>,
) -> (Store<Pod>, tokio::task::JoinHandle<()>) {
    let selector = format!("{RENDERJOB_LABEL}={}", renderjob_label(name));
    let (store, writer) = reflector::store();
    let pod_stream = reflector::reflector(
        writer,
        watcher(pods.clone(), watcher::Config::default().labels(&selector)).default_backoff(),
    )
    .touched_objects();
    let task = tokio::spawn(async move {
        futures::pin_mut!(pod_stream);
        while let Some(ev) = pod_stream.next().await {
            if ev.is_ok() && tx.send(Update::Pods).await.is_err() {
                break;
            }
        }
    });
    (store, task)
}

/// An update every second, so times shown move on.
fn tick(tx: mpsc::Sender<Update>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut t = tokio::time::interval(Duration::from_secs(1));
        loop {
            t.tick().await;
            if tx.send(Update::Tick).await.is_err() {
                break;
            }
        }
    })
}

/// Follow the logs of running batch pods (up to [`MAX_FOLLOWED`]); stop following finished ones.
fn follow_logs(
    view: &View,
    pods: &Api<Pod>,
    tx: &mpsc::Sender<Update>,
    logs: &mut HashMap<String, tokio::task::JoinHandle<()>>,
) {
    logs.retain(|pod, task| {
        let keep = view.batches.get(pod).is_some_and(BatchView::active);
        if !keep {
            task.abort();
        }
        keep
    });
    for (pod, b) in &view.batches {
        if logs.len() >= MAX_FOLLOWED {
            break;
        }
        if b.phase != "Running" || logs.contains_key(pod) {
            continue;
        }
        let (pods, tx, name) = (pods.clone(), tx.clone(), pod.clone());
        let task = tokio::spawn(async move {
            let lp = LogParams {
                follow: true,
                container: Some(CONTAINER.to_string()),
                ..Default::default()
            };
            // Pods that serve no logs (fake nodes) just show no frame.
            let Ok(stream) = pods.log_stream(&name, &lp).await else {
                return;
            };
            let mut lines = stream.lines();
            while let Some(Ok(line)) = lines.next().await {
                if let Ok(ev) = serde_json::from_str::<ProgressEvent>(&line)
                    && tx.send(Update::Log(name.clone(), ev)).await.is_err()
                {
                    break;
                }
            }
        });
        logs.insert(pod.clone(), task);
    }
}

/// The display: bars on a terminal, plain lines elsewhere.
struct View {
    name: String,
    plain: bool,
    /// Frames in the spec's range.
    planned: i64,
    status: RenderJobStatus,
    batches: BTreeMap<String, BatchView>,
    failed_shown: HashSet<(i64, i64)>,
    last_line: String,
    multi: MultiProgress,
    main: ProgressBar,
    bars: HashMap<String, ProgressBar>,
    /// With `--preview`: since when, and how long at most, to wait for the preview.
    preview_wait: Option<(Instant, Duration)>,
}

impl View {
    fn new(name: &str, plain: bool) -> View {
        let multi = MultiProgress::with_draw_target(if plain {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stdout()
        });
        let main = multi.add(ProgressBar::new(0));
        main.set_style(style(
            "{prefix:.bold} [{bar:30.green/white}] {pos}/{len} frames {wide_msg}",
        ));
        main.set_prefix(name.to_string());
        View {
            name: name.to_string(),
            plain,
            planned: 0,
            status: RenderJobStatus::default(),
            batches: BTreeMap::new(),
            failed_shown: HashSet::new(),
            last_line: String::new(),
            multi,
            main,
            bars: HashMap::new(),
            preview_wait: None,
        }
    }

    fn say(&self, line: String) {
        if self.plain {
            crate::out!("{line}");
        } else {
            let _ = self.multi.println(line);
        }
    }

    fn render(&mut self, mut status: RenderJobStatus) {
        // Before the operator's first status, the spec says how many frames there are.
        if status.frames.total == 0 {
            status.frames.total = self.planned;
        }
        self.status = status;
        for f in &self.status.failed_batches {
            if self.failed_shown.insert((f.index, f.attempts)) {
                self.say(progress::failed_line(f));
            }
        }
        let now = Timestamp::now();
        if self.plain {
            let line = progress::line(&self.name, &self.status, now);
            // The figures that change by themselves (ETA, rate) do not make a new line.
            let key = format!(
                "{:?} {} {:?}",
                self.status.phase, self.status.frames.rendered, self.status.batches
            );
            if key != self.last_line {
                self.last_line = key;
                crate::out!("{line}");
            }
        } else {
            self.tick();
        }
    }

    fn tick(&mut self) {
        if self.plain {
            return;
        }
        let now = Timestamp::now();
        let s = &self.status;
        self.main.set_length(s.frames.total.max(0) as u64);
        self.main.set_position(s.frames.rendered.max(0) as u64);
        self.main
            .set_prefix(format!("{} {}", self.name, s.phase.as_str()));
        self.main.set_message(format!(
            "{:>3}% · {}",
            progress::percent(s),
            progress::details(s, now)
        ));
        for (pod, bar) in &self.bars {
            if let Some(b) = self.batches.get(pod) {
                bar.set_length(b.planned() as u64);
                bar.set_position(b.saved as u64);
                bar.set_message(batch_message(b, now));
            }
        }
    }

    fn pods(&mut self, store: &Store<Pod>) {
        let mut seen = HashSet::new();
        for pod in store.state() {
            let Some(mut b) = BatchView::from_pod(&pod) else {
                continue;
            };
            let name = pod.name_any();
            seen.insert(name.clone());
            let before = self.batches.get(&name).cloned();
            if let Some(old) = &before {
                (b.to_render, b.saved, b.frame, b.samples, b.handed_off) = (
                    old.to_render,
                    old.saved,
                    old.frame,
                    old.samples,
                    old.handed_off,
                );
            }
            let changed_phase = before.as_ref().map(|o| o.phase.as_str()) != Some(b.phase.as_str());
            // Pods already finished when the watch starts are history, not news.
            let news = before.is_some() || b.active();
            if self.plain && news && changed_phase && b.phase != "Pending" {
                let on = b
                    .node
                    .as_deref()
                    .map(|n| format!(" on {n}"))
                    .unwrap_or_default();
                self.say(format!("{} {}{on}", batch_prefix(&b), b.phase));
            }
            if !self.plain {
                if b.active() && !self.bars.contains_key(&name) {
                    let bar = self.multi.add(ProgressBar::new(b.planned() as u64));
                    bar.set_style(style(
                        "  {prefix} [{bar:12.cyan/white}] {pos}/{len} {wide_msg}",
                    ));
                    bar.set_prefix(batch_prefix(&b));
                    self.bars.insert(name.clone(), bar);
                } else if !b.active()
                    && let Some(bar) = self.bars.remove(&name)
                {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
            }
            self.batches.insert(name, b);
        }
        self.batches.retain(|n, _| seen.contains(n));
        let gone: Vec<String> = self
            .bars
            .keys()
            .filter(|n| !seen.contains(*n))
            .cloned()
            .collect();
        for n in gone {
            if let Some(bar) = self.bars.remove(&n) {
                bar.finish_and_clear();
                self.multi.remove(&bar);
            }
        }
        self.tick();
    }

    fn log(&mut self, pod: &str, ev: &ProgressEvent) {
        let Some(b) = self.batches.get_mut(pod) else {
            return;
        };
        b.apply(ev);
        if self.plain
            && let ProgressEvent::FrameSaved { frame, seconds, .. } = ev
        {
            let secs = seconds.map(|s| format!(" in {s:.1}s")).unwrap_or_default();
            let line = format!("batch {:04}: frame {frame} saved{secs}", b.batch);
            self.say(line);
        }
        self.tick();
    }

    /// Whether the preview is still to come (being made or about to be).
    fn preview_pending(&self) -> bool {
        self.status
            .preview
            .as_ref()
            .is_some_and(|p| matches!(p.state, PreviewState::Pending | PreviewState::Running))
    }

    /// The outcome once the render is over (and, with `--preview`, its preview).
    fn finished(&self) -> Option<Result<()>> {
        match self.status.phase {
            Phase::Succeeded => {
                let waiting = self
                    .preview_wait
                    .is_some_and(|(since, most)| self.preview_pending() && since.elapsed() < most);
                (!waiting).then_some(Ok(()))
            }
            Phase::Failed => Some(Err(Error::RenderFailed {
                name: self.name.clone(),
                reason: format!(
                    "{} of {} batches failed (kubectl render status {}; kubectl render retry {})",
                    self.status.batches.failed, self.status.batches.total, self.name, self.name
                ),
            })),
            _ => None,
        }
    }

    fn close(&mut self) {
        for (_, bar) in self.bars.drain() {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        let now = Timestamp::now();
        if !self.plain {
            self.tick();
            self.main.abandon();
        }
        if self.status.phase == Phase::Succeeded
            && let Some(line) = preview_line(&self.name, &self.status, self.preview_pending())
        {
            crate::out!("{line}");
        }
        if matches!(self.status.phase, Phase::Succeeded | Phase::Failed) {
            crate::out!("{}", progress::final_line(&self.name, &self.status, now));
        }
    }
}

/// What became of the preview, said before the final line; none when the render has none.
fn preview_line(name: &str, s: &RenderJobStatus, pending: bool) -> Option<String> {
    let p = s.preview.as_ref()?;
    let why = p
        .message
        .as_deref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    match p.state {
        PreviewState::Ready => Some(format!(
            "preview ready ({} frames): kubectl render fetch {name} --preview",
            p.frames.unwrap_or_default()
        )),
        PreviewState::Failed => Some(format!("preview failed (the frames are fine){why}")),
        _ if pending => Some(format!(
            "preview being made: kubectl render watch {name} --preview waits for it"
        )),
        _ => None,
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running() -> BatchView {
        BatchView {
            batch: 3,
            frames: "10-12".into(),
            phase: "Running".into(),
            node: Some("kind-worker".into()),
            started: Some("2026-01-01T10:00:00Z".parse().expect("time")),
            ..Default::default()
        }
    }

    #[test]
    fn batch_lines_follow_progress_events() {
        let now: Timestamp = "2026-01-01T10:00:42Z".parse().expect("time");
        let mut b = running();
        assert_eq!(batch_prefix(&b), "batch 0003 frames 10-12");
        assert_eq!(b.planned(), 3);
        assert_eq!(batch_message(&b, now), "42s · on kind-worker");
        b.apply(&ProgressEvent::Start {
            frames: vec![10, 11, 12],
            to_render: vec![11, 12],
            skipped: vec![10],
            device: "CPU".into(),
            file_version: None,
        });
        b.apply(&ProgressEvent::FrameStarted { frame: 11 });
        b.apply(&ProgressEvent::Samples {
            frame: 11,
            done: 8,
            total: 16,
        });
        assert_eq!(b.planned(), 2, "frames on disk are not rendered");
        assert_eq!(
            batch_message(&b, now),
            "frame 11 · samples 8/16 · 42s · on kind-worker"
        );
        b.apply(&ProgressEvent::FrameSaved {
            frame: 11,
            path: "x".into(),
            seconds: None,
        });
        assert_eq!(b.saved, 1);
        assert_eq!(batch_message(&b, now), "frame 11 · 42s · on kind-worker");
    }

    #[test]
    fn a_batch_started_ahead_says_whom_it_waits_for_until_its_turn() {
        let now: Timestamp = "2026-01-01T10:00:42Z".parse().expect("time");
        let mut b = BatchView {
            after: Some(1),
            ..running()
        };
        assert_eq!(
            batch_message(&b, now),
            "started ahead, waits for batch 0001 · 42s · on kind-worker"
        );
        b.apply(&ProgressEvent::Handoff {
            after: "u-1".into(),
            opened: "done".into(),
            waited_seconds: 3.5,
        });
        assert_eq!(batch_message(&b, now), "42s · on kind-worker");
    }

    #[test]
    fn waiting_batches_say_why() {
        let now = Timestamp::now();
        let b = BatchView {
            phase: "Pending".into(),
            waiting: Some("Unschedulable".into()),
            ..running()
        };
        assert_eq!(batch_message(&b, now), "Pending: Unschedulable");
        assert!(b.active());
        let done = BatchView {
            phase: "Succeeded".into(),
            ..running()
        };
        assert!(!done.active());
    }

    #[test]
    fn watch_preview_waits_for_the_preview_and_says_what_became_of_it() {
        use renderfarm_api::crd::PreviewStatus;
        let mut view = View::new("shot", true);
        let mut s = RenderJobStatus {
            phase: Phase::Succeeded,
            preview: Some(PreviewStatus {
                state: PreviewState::Running,
                ..Default::default()
            }),
            ..Default::default()
        };
        view.status = s.clone();
        assert!(
            view.finished().is_some(),
            "without --preview: done with the frames"
        );
        view.preview_wait = Some((Instant::now(), PREVIEW_WAIT));
        assert!(
            view.finished().is_none(),
            "--preview waits while it is made"
        );
        assert_eq!(
            preview_line("shot", &view.status, view.preview_pending()).as_deref(),
            Some("preview being made: kubectl render watch shot --preview waits for it")
        );
        view.preview_wait = Some((Instant::now(), Duration::ZERO));
        assert!(view.finished().is_some(), "not longer than the wait");

        s.preview = Some(PreviewStatus {
            state: PreviewState::Ready,
            frames: Some(12),
            ..Default::default()
        });
        view.status = s.clone();
        view.preview_wait = Some((Instant::now(), PREVIEW_WAIT));
        assert!(matches!(view.finished(), Some(Ok(()))));
        assert_eq!(
            preview_line("shot", &s, false).as_deref(),
            Some("preview ready (12 frames): kubectl render fetch shot --preview")
        );
        s.preview = Some(PreviewStatus {
            state: PreviewState::Failed,
            message: Some("ffmpeg exited 1".into()),
            ..Default::default()
        });
        view.status = s.clone();
        assert!(
            matches!(view.finished(), Some(Ok(()))),
            "a failed preview fails nothing"
        );
        assert_eq!(
            preview_line("shot", &s, false).as_deref(),
            Some("preview failed (the frames are fine): ffmpeg exited 1")
        );
        s.preview = None;
        assert_eq!(preview_line("shot", &s, false), None);
    }
}
