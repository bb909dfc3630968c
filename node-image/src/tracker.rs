//! Blender's output, line by line → progress events and what the termination message needs.
//! Pure (the clock is passed in), so it is tested on captured logs.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use render_contract::ProgressEvent;

use crate::parse::{Class, Line, Marker, classify, parse, text};

/// Longest error text kept (Blender echoes whole Python expressions in some errors).
const MAX_ERROR: usize = 300;

fn shorten(s: &str) -> String {
    let first = s.lines().next().unwrap_or("").trim();
    if first.len() <= MAX_ERROR {
        return first.to_string();
    }
    let mut cut = MAX_ERROR;
    while !first.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &first[..cut])
}

#[derive(Debug)]
pub struct Tracker {
    spawned: Instant,
    requested: String,
    todo: Vec<i32>,
    /// Expected output file → frame.
    expected: HashMap<String, i32>,
    current: Option<(i32, Instant)>,
    /// Tenths of the current frame's samples already reported.
    tenths: u32,
    /// A saved frame waiting for its `Time:` line.
    pending: Option<(i32, String, Instant)>,
    fallback: bool,
    in_traceback: bool,
    pub version: Option<String>,
    pub device: Option<String>,
    pub startup_seconds: Option<f64>,
    /// Input Blender cannot render as it is (reported by render-node's Python).
    pub bad_input: Option<String>,
    /// The GPU asked for is not usable on this node (reported by render-node's Python).
    pub gpu_unusable: bool,
    pub errors: Vec<(Class, String)>,
    pub warnings: Vec<String>,
    /// Frames Blender said it saved, in order.
    pub saved: Vec<i32>,
    /// Render-and-save seconds of each saved frame, from Blender's `Time:` lines.
    pub frame_seconds: Vec<f64>,
    /// External files the scene uses that are not readable (the first ones), and how many.
    pub missing_files: Vec<String>,
    pub missing_files_count: u32,
    /// The size of the frames, as the scene says (none when it crops to a border).
    pub resolution: Option<(usize, usize)>,
}

impl Tracker {
    /// `todo` with each frame's expected output file.
    pub fn new(spawned: Instant, requested: &str, todo: &[(i32, String)]) -> Self {
        Tracker {
            spawned,
            requested: requested.to_string(),
            todo: todo.iter().map(|(f, _)| *f).collect(),
            expected: todo.iter().map(|(f, p)| (p.clone(), *f)).collect(),
            current: None,
            tenths: 0,
            pending: None,
            fallback: false,
            in_traceback: false,
            version: None,
            device: None,
            startup_seconds: None,
            bad_input: None,
            gpu_unusable: false,
            errors: Vec::new(),
            warnings: Vec::new(),
            saved: Vec::new(),
            frame_seconds: Vec::new(),
            missing_files: Vec::new(),
            missing_files_count: 0,
            resolution: None,
        }
    }

    /// Whether a raw line is worth passing on to stderr (progress lines and render-node's own
    /// markers become events instead), Blender 5.0's logged lines read by their message.
    pub fn echo(line: &str) -> bool {
        let t = text(line);
        !(t.is_empty()
            || t.starts_with("Fra:")
            || t.starts_with("RENDER_NODE:")
            || t.starts_with("Saved: ")
            || t.starts_with("Time: "))
    }

    /// Blender sat loaded for `idle`, held until the batch before it was done.
    pub fn held(&mut self, idle: Duration) {
        self.spawned += idle;
    }

    fn started(&mut self, now: Instant, out: &mut Vec<ProgressEvent>) {
        if self.startup_seconds.is_none() {
            let s = round3(now.duration_since(self.spawned).as_secs_f64());
            self.startup_seconds = Some(s);
            out.push(ProgressEvent::Rendering {
                blender_version: self.version.clone(),
                startup_seconds: s,
            });
        }
    }

    fn flush(&mut self, seconds: Option<f64>, now: Instant, out: &mut Vec<ProgressEvent>) {
        if let Some((frame, path, started)) = self.pending.take() {
            let s = round3(seconds.unwrap_or_else(|| now.duration_since(started).as_secs_f64()));
            self.frame_seconds.push(s);
            out.push(ProgressEvent::FrameSaved {
                frame,
                path,
                seconds: Some(s),
            });
        }
    }

    fn error(&mut self, message: String, out: &mut Vec<ProgressEvent>) {
        let message = shorten(&message);
        self.errors.push((classify(&message), message.clone()));
        out.push(ProgressEvent::BlenderError { message });
    }

    fn warn(&mut self, message: String, out: &mut Vec<ProgressEvent>) {
        self.warnings.push(message.clone());
        out.push(ProgressEvent::Warning { message });
    }

    /// One line of Blender's output, read at `now`.
    pub fn line(&mut self, raw: &str, now: Instant) -> Vec<ProgressEvent> {
        let mut out = Vec::new();
        if self.in_traceback {
            self.traceback(raw, &mut out);
            return out;
        }
        match parse(raw) {
            Line::Version(v) => {
                self.version.get_or_insert(v);
            }
            Line::Marker(marker) => self.marker(marker, now, &mut out),
            Line::Frame { frame, samples } => self.frame(frame, samples, now, &mut out),
            Line::Saved(path) => self.saved(path, now, &mut out),
            Line::FrameTime(t) => self.flush(Some(t), now, &mut out),
            Line::Traceback => self.in_traceback = true,
            Line::Error(e) => self.error(e, &mut out),
            Line::Other => {}
        }
        out
    }

    /// A line of a Python traceback: its last line is the error.
    fn traceback(&mut self, raw: &str, out: &mut Vec<ProgressEvent>) {
        let t = raw.trim_end();
        if t.is_empty() || t.starts_with(char::is_whitespace) || t.starts_with("Traceback") {
            return;
        }
        self.in_traceback = false;
        self.error(format!("Python error: {t}"), out);
    }

    /// A line of render-node's own Python.
    fn marker(&mut self, marker: Marker, now: Instant, out: &mut Vec<ProgressEvent>) {
        match marker {
            Marker::Scene {
                start,
                end,
                version,
            } => self.scene(start, end, version, now, out),
            Marker::Fallback(text) => {
                self.fallback = true;
                self.warn(text, out);
            }
            Marker::Warning(text) => self.warn(text, out),
            Marker::Device { device, detail } => {
                self.device = Some(device.clone());
                out.push(ProgressEvent::Device {
                    requested: self.requested.clone(),
                    used: device,
                    detail,
                    fallback: self.fallback,
                });
            }
            Marker::MissingFiles(m) => {
                self.missing_files = m.files.iter().map(|f| f.path.clone()).collect();
                self.missing_files_count = m.count;
                out.push(ProgressEvent::MissingFiles {
                    action: m.action,
                    count: m.count,
                    files: m.files,
                });
            }
            Marker::Resolution(w, h) => self.resolution = Some((w, h)),
            Marker::BadInput(text) => {
                self.bad_input = Some(text.clone());
                out.push(ProgressEvent::BlenderError { message: text });
            }
            Marker::GpuUnusable(text) => {
                self.gpu_unusable = true;
                self.bad_input = Some(text.clone());
                out.push(ProgressEvent::BlenderError { message: text });
            }
        }
    }

    /// The scene loaded: its frame range (frames outside it are a warning) and Blender's
    /// version. Rendering starts.
    fn scene(
        &mut self,
        start: i32,
        end: i32,
        version: String,
        now: Instant,
        out: &mut Vec<ProgressEvent>,
    ) {
        if !version.is_empty() {
            self.version = Some(version);
        }
        let outside: Vec<String> = self
            .todo
            .iter()
            .filter(|f| **f < start || **f > end)
            .map(i32::to_string)
            .collect();
        if !outside.is_empty() {
            let list = if outside.len() > 10 {
                format!("{},… ({} frames)", outside[..10].join(","), outside.len())
            } else {
                outside.join(",")
            };
            self.warn(
                format!("frames {list} are outside the scene's frame range {start}..{end}; Blender renders them anyway"),
                out,
            );
        }
        self.started(now, out);
    }

    /// A progress line of `frame`: a new frame starts, or its samples reach another tenth.
    fn frame(
        &mut self,
        frame: i32,
        samples: Option<(u32, u32)>,
        now: Instant,
        out: &mut Vec<ProgressEvent>,
    ) {
        self.started(now, out);
        if self.current.map(|(f, _)| f) != Some(frame) {
            self.flush(None, now, out);
            self.current = Some((frame, now));
            self.tenths = 0;
            out.push(ProgressEvent::FrameStarted { frame });
        }
        if let Some((done, total)) = samples.filter(|(_, t)| *t > 0) {
            let tenths = done.min(total) * 10 / total;
            if tenths > self.tenths {
                self.tenths = tenths;
                out.push(ProgressEvent::Samples { frame, done, total });
            }
        }
    }

    /// Blender saved `path`: its frame waits for its `Time:` line.
    fn saved(&mut self, path: String, now: Instant, out: &mut Vec<ProgressEvent>) {
        self.started(now, out);
        self.flush(None, now, out);
        let frame = self
            .expected
            .get(&path)
            .copied()
            .or(self.current.map(|(f, _)| f));
        if let Some(frame) = frame {
            if self.expected.contains_key(&path) {
                self.saved.push(frame);
            }
            let started = self.current.map(|(_, t)| t).unwrap_or(now);
            self.pending = Some((frame, path, started));
        }
        // A workbench render prints no `Fra:` lines: the next frame starts now.
        self.current = None;
    }

    /// Blender's output ended.
    pub fn finish(&mut self, now: Instant) -> Vec<ProgressEvent> {
        let mut out = Vec::new();
        self.flush(None, now, &mut out);
        out
    }

    /// What a second run of Blender (the frames that failed their check, rendered again) saw,
    /// added to this one's.
    pub fn absorb(&mut self, again: Tracker) {
        self.errors.extend(again.errors);
        self.warnings.extend(again.warnings);
        self.saved.extend(again.saved);
        self.frame_seconds.extend(again.frame_seconds);
        self.bad_input = self.bad_input.take().or(again.bad_input);
        self.gpu_unusable |= again.gpu_unusable;
        self.resolution = self.resolution.or(again.resolution);
    }

    /// Mean render seconds per saved frame.
    pub fn seconds_per_frame(&self) -> Option<f64> {
        (!self.frame_seconds.is_empty()).then(|| {
            round3(self.frame_seconds.iter().sum::<f64>() / self.frame_seconds.len() as f64)
        })
    }
}

pub fn round3(s: f64) -> f64 {
    (s * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn todo(frames: &[i32]) -> Vec<(i32, String)> {
        frames
            .iter()
            .map(|f| (*f, format!("/data/out/frame_{f:04}.png")))
            .collect()
    }

    /// Feeds a log, one line every 10 ms.
    fn feed(t: &mut Tracker, log: &str) -> Vec<ProgressEvent> {
        let mut now = t.spawned;
        let mut events = Vec::new();
        for line in log.lines() {
            now += Duration::from_millis(10);
            events.extend(t.line(line, now));
        }
        events.extend(t.finish(now));
        events
    }

    fn kinds(events: &[ProgressEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                ProgressEvent::FrameStarted { frame } => format!("start {frame}"),
                ProgressEvent::Samples { frame, done, total } => {
                    format!("samples {frame} {done}/{total}")
                }
                ProgressEvent::FrameSaved { frame, seconds, .. } => {
                    format!("saved {frame} {seconds:?}")
                }
                ProgressEvent::Rendering { .. } => "rendering".into(),
                ProgressEvent::Device { used, .. } => format!("device {used}"),
                ProgressEvent::Warning { .. } => "warning".into(),
                ProgressEvent::BlenderError { message } => format!("error {message}"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn cycles_3_4_batch_with_a_gap() {
        let mut t = Tracker::new(Instant::now(), "CPU", &todo(&[1, 3, 4]));
        let log = format!(
            "RENDER_NODE:SCENE 1 12 3.4.1\nRENDER_NODE:DEVICE CPU\n{}",
            include_str!("../testdata/blender-3.4-cycles.log")
        );
        let events = feed(&mut t, &log);
        assert_eq!(
            kinds(&events),
            [
                "rendering",
                "device CPU",
                "start 1",
                "samples 1 1/8",
                "samples 1 8/8",
                "saved 1 Some(0.89)",
                "start 3",
                "samples 3 1/8",
                "samples 3 8/8",
                "saved 3 Some(0.63)",
                "start 4",
                "samples 4 1/8",
                "samples 4 8/8",
                "saved 4 Some(0.47)",
            ]
        );
        assert_eq!(t.saved, [1, 3, 4]);
        assert_eq!(t.seconds_per_frame(), Some(0.663));
        assert_eq!(t.version.as_deref(), Some("3.4.1"));
        assert_eq!(t.device.as_deref(), Some("CPU"));
        assert_eq!(t.startup_seconds, Some(0.01));
        assert!(t.errors.is_empty() && t.warnings.is_empty());
    }

    #[test]
    fn cycles_4_2_and_eevee_and_workbench() {
        let mut t = Tracker::new(Instant::now(), "CPU", &todo(&[1, 2]));
        feed(&mut t, include_str!("../testdata/blender-4.2-cycles.log"));
        assert_eq!(
            (t.saved.clone(), t.frame_seconds.clone()),
            (vec![1, 2], vec![1.23, 1.03])
        );

        let mut t = Tracker::new(Instant::now(), "CPU", &todo(&[1, 2]));
        let events = feed(&mut t, include_str!("../testdata/blender-3.4-eevee.log"));
        let samples = events
            .iter()
            .filter(|e| matches!(e, ProgressEvent::Samples { frame: 2, .. }))
            .count();
        assert_eq!((t.saved.clone(), samples), (vec![1, 2], 3)); // 26/64, 51/64, 64/64

        for log in [
            include_str!("../testdata/blender-3.4-workbench.log"),
            include_str!("../testdata/blender-4.2-workbench.log"),
        ] {
            let mut t = Tracker::new(Instant::now(), "CPU", &todo(&[1, 2]));
            let events = feed(&mut t, log);
            assert_eq!(t.saved, [1, 2], "{events:?}");
            assert!(t.errors.is_empty(), "{:?}", t.errors);
        }
    }

    #[test]
    fn errors_python_tracebacks_and_fallback() {
        let mut t = Tracker::new(Instant::now(), "CUDA", &todo(&[1]));
        feed(&mut t, include_str!("../testdata/blender-3.4-errors.log"));
        let classes: Vec<Class> = t.errors.iter().map(|(c, _)| *c).collect();
        assert_eq!(
            classes,
            [
                Class::BadInput,
                Class::BadInput,
                Class::BadInput,
                Class::BadInput,
                Class::BadInput,
                Class::Retry,
                Class::Retry
            ]
        );
        assert_eq!(t.errors[5].1, "Python error: RuntimeError: boom");
        assert!(t.errors[6].1.starts_with("Error: script failed"));

        let mut t = Tracker::new(Instant::now(), "CUDA", &todo(&[1, 20]));
        let events = feed(
            &mut t,
            "RENDER_NODE:SCENE 1 12 3.4.1\nRENDER_NODE:FALLBACK no CUDA device found; rendering on CPU\nRENDER_NODE:DEVICE CPU\n",
        );
        assert_eq!(
            kinds(&events),
            ["warning", "rendering", "warning", "device CPU"]
        );
        assert!(
            t.warnings[0].starts_with("frames 20 are outside the scene's frame range 1..12"),
            "{:?}",
            t.warnings
        );
        assert!(
            matches!(&events[3], ProgressEvent::Device { fallback: true, requested, .. } if requested == "CUDA")
        );
    }

    #[test]
    fn long_errors_are_cut_to_one_line() {
        let long = format!(
            "Error: script failed, expr: '{}\nsecond line",
            "x".repeat(1000)
        );
        assert_eq!(shorten(&long).chars().count(), MAX_ERROR + 1);
        assert!(!shorten(&long).contains('\n'));
    }

    #[test]
    fn blender_5_0_batches() {
        let mut t = Tracker::new(Instant::now(), "CPU", &todo(&[1, 2]));
        let log = format!(
            "RENDER_NODE:SCENE 1 12 5.0.1\nRENDER_NODE:DEVICE CPU\n{}",
            include_str!("../testdata/blender-5.0-cycles.log")
        );
        assert_eq!(
            kinds(&feed(&mut t, &log)),
            [
                "rendering",
                "device CPU",
                "start 1",
                "samples 1 1/4",
                "samples 1 4/4",
                "saved 1 Some(0.09)",
                "start 2",
                "samples 2 1/4",
                "samples 2 4/4",
                "saved 2 Some(0.04)",
            ]
        );
        assert_eq!(t.seconds_per_frame(), Some(0.065));
        assert!(t.errors.is_empty() && t.warnings.is_empty());

        for (log, seconds) in [
            (
                include_str!("../testdata/blender-5.0-eevee.log"),
                [2.91, 2.4],
            ),
            (
                include_str!("../testdata/blender-5.0-workbench.log"),
                [0.15, 0.02],
            ),
        ] {
            let mut t = Tracker::new(Instant::now(), "CPU", &todo(&[1, 2]));
            let events = feed(&mut t, log);
            assert_eq!(
                (t.saved.clone(), t.frame_seconds.clone()),
                (vec![1, 2], seconds.to_vec()),
                "{events:?}"
            );
            assert!(t.errors.is_empty(), "{:?}", t.errors);
        }
    }

    #[test]
    fn blender_5_0_progress_lines_are_not_echoed() {
        let hidden = [
            "00:00.303  render           | Saved: '/data/out/frame_0001.png'",
            "00:00.392  render           | Time: 00:00.12 (Saving: 00:00.06)",
            "00:00.290  render           | Fra: 1 | Remaining: 00:00.04 | Mem: 2M | Sample 1/4",
            "RENDER_NODE:STATS Fra: 1 | Mem: 2M | Sample 4/4",
            "Fra:1 Mem:9.04M (Peak 9.04M) | Time:00:00.03 | Sample 4/4",
            "Saved: '/data/out/frame_0001.png'",
        ];
        let shown = [
            "00:00.199  blend            | Read blend: \"/data/scene.blend\"",
            "00:00.213  cycles           | WARNING CUEW initialization failed: Error opening the library",
            "00:00.415  image            | ERROR Couldn't create directory for file /data/f_0001.png: Not a directory",
            "Blender 5.0.1 (hash a3db93c5b259 built 2025-12-16 14:26:17)",
        ];
        for line in hidden {
            assert!(!Tracker::echo(line), "echoed: {line}");
        }
        for line in shown {
            assert!(Tracker::echo(line), "not echoed: {line}");
        }
    }

    #[test]
    fn blender_5_0_errors() {
        let mut t = Tracker::new(Instant::now(), "CUDA", &todo(&[1]));
        feed(&mut t, include_str!("../testdata/blender-5.0-errors.log"));
        let errors: Vec<(Class, &str)> = t
            .errors
            .iter()
            .map(|(c, e)| (*c, &e[..e.len().min(30)]))
            .collect();
        assert_eq!(
            errors,
            [
                (Class::BadInput, "Error: Cannot read file \"/data"),
                (Class::BadInput, "Error: File format is not supp"),
                (Class::BadInput, "Error: Loading \"/data/trunc.bl"),
                (Class::Retry, "Error: image: Couldn't create "),
                (Class::BadInput, "Error: Render error (Not a dir"),
                (Class::BadInput, "Error: Found no Cycles device "),
                (Class::BadInput, "Error: Found no Cycles device "),
                (Class::Retry, "Python error: RuntimeError: bo"),
                (Class::BadInput, "Error: engine not found 'NOPE'"),
                (Class::Retry, "Error: cycles: Image file '/da"),
            ]
        );
    }
}
