//! One line of Blender's output → what it says. Pure; tested on logs captured from Blender 3.4
//! (Debian bookworm), Blender 4.2 and Blender 5.0 (see `testdata/`).
//!
//! Blender 5.0 prints much of its output through its logging system (CLOG): a timestamp and a
//! category column come before the message (`00:00.773  render           | Saved: '…'`), and
//! errors and warnings say their level (`00:00.419  image            | ERROR Couldn't …`).
//! Such a line is read by its message, as the line 4.x printed. 5.0 logs its render progress
//! (`Fra:`, `Time:`) only when the `render` category is at the INFO level; render-node has it
//! printed behind `RENDER_NODE:STATS` instead (see `blender.rs`).

/// What one line of Blender output says.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// `Blender 3.4.1` (3.x) or `Blender 4.2.3 LTS (hash … built …)` (4.x): the first line.
    Version(String),
    /// A `Fra:N …` status line (`Fra: N | …` in 5.0), with sample progress when it has some.
    Frame {
        frame: i32,
        samples: Option<(u32, u32)>,
    },
    /// `Saved: '<path>'`.
    Saved(String),
    /// ` Time: 00:00.32 (Saving: 00:00.14)` (3.x, leading space) or `Time: …` (4.x): the
    /// last frame's render-and-save time in seconds, Blender's start-up excluded.
    FrameTime(f64),
    /// A line printed by render-node's own Python (`RENDER_NODE:KEY text`).
    Marker(Marker),
    /// `Error: …`: something went wrong.
    Error(String),
    /// `Error: Python: Traceback …`: the exception follows a few lines later.
    Traceback,
    Other,
}

/// What render-node's Python inside Blender reports (see `device.py`).
#[derive(Debug, Clone, PartialEq)]
pub enum Marker {
    /// `SCENE <frame_start> <frame_end> <version>`.
    Scene {
        start: i32,
        end: i32,
        version: String,
    },
    /// `DEVICE <type> [names]`: the device the frames render on.
    Device {
        device: String,
        detail: Option<String>,
    },
    /// `FALLBACK <text>`: the GPU is not there, rendering on the CPU as allowed.
    Fallback(String),
    /// `BAD_INPUT <text>`: input Blender cannot render as it is.
    BadInput(String),
    /// `GPU_UNUSABLE <text>`: the GPU the batch asked for (and its node was given) is not
    /// usable there, without fallback: the node's fault.
    GpuUnusable(String),
    /// `WARNING <text>`.
    Warning(String),
    /// `MISSING_FILES <json>`: external files the scene uses that are not readable.
    MissingFiles(Missing),
    /// `RESOLUTION <width> <height>`: the size of every frame the scene renders.
    Resolution(usize, usize),
}

/// The external files a scene uses that are not readable, as `prepare.py` reports them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Missing {
    /// `fail` or `warn`.
    pub action: String,
    /// How many in all.
    pub count: u32,
    /// The first ones.
    pub files: Vec<render_contract::MissingFile>,
}

/// How a failure should be reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Retrying cannot help (exit 64).
    BadInput,
    /// Worth a retry (exit 75).
    Retry,
}

/// `[hh:]mm:ss.xx` → seconds.
fn clock(s: &str) -> Option<f64> {
    let mut total = 0.0;
    for part in s.trim().split(':') {
        total = total * 60.0 + part.parse::<f64>().ok()?;
    }
    Some(total)
}

/// Cycles: `| Sample 16/16`; Eevee: `| Rendering 16 / 16 samples`.
fn samples(line: &str) -> Option<(u32, u32)> {
    for field in line.split('|').map(str::trim).rev() {
        let rest = field.strip_prefix("Sample ").or_else(|| {
            field
                .strip_prefix("Rendering ")
                .map(|r| r.trim_end_matches(" samples"))
        });
        if let Some((done, total)) = rest.and_then(|r| r.split_once('/'))
            && let (Ok(d), Ok(t)) = (done.trim().parse(), total.trim().parse())
        {
            return Some((d, t));
        }
    }
    None
}

fn marker(rest: &str) -> Option<Marker> {
    let (key, text) = rest.split_once(' ').unwrap_or((rest, ""));
    let text = text.trim();
    Some(match key {
        "SCENE" => {
            let mut it = text.splitn(3, ' ');
            let start = it.next()?.parse().ok()?;
            let end = it.next()?.parse().ok()?;
            Marker::Scene {
                start,
                end,
                version: it.next().unwrap_or("").trim().to_string(),
            }
        }
        "DEVICE" => {
            let (device, detail) = text.split_once(' ').unwrap_or((text, ""));
            let detail = detail.trim();
            Marker::Device {
                device: device.to_string(),
                detail: (!detail.is_empty()).then(|| detail.to_string()),
            }
        }
        "FALLBACK" => Marker::Fallback(text.to_string()),
        "BAD_INPUT" => Marker::BadInput(text.to_string()),
        "GPU_UNUSABLE" => Marker::GpuUnusable(text.to_string()),
        "WARNING" => Marker::Warning(text.to_string()),
        "MISSING_FILES" => Marker::MissingFiles(serde_json::from_str(text).ok()?),
        "RESOLUTION" => {
            let (w, h) = text.split_once(' ')?;
            Marker::Resolution(w.trim().parse().ok()?, h.trim().parse().ok()?)
        }
        _ => return None,
    })
}

/// A line of Blender 5.0's log: its category, its level when below INFO (`ERROR`, `WARNING`,
/// `FATAL`), and its message.
#[derive(Debug, PartialEq)]
struct Logged<'a> {
    category: &'a str,
    level: Option<&'a str>,
    message: &'a str,
}

/// CLOG's `[[hh:]mm:ss.mmm  ]category<padding>| [LEVEL ]message`, the category padded with
/// spaces to 16 columns and one more. The padding is checked exactly, so that another line
/// with a `|` in it is not taken for one.
fn logged(line: &str) -> Option<Logged<'_>> {
    let line = line.trim_end();
    let rest = match line.split_once("  ") {
        Some((stamp, rest)) if is_timestamp(stamp) => rest,
        _ => line,
    };
    let (category, after) = rest.split_once(' ')?;
    let named = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if category.is_empty() || !category.chars().all(named) {
        return None;
    }
    let message = after.trim_start_matches(' ');
    let spaces = 1 + after.len() - message.len();
    if spaces != 16usize.saturating_sub(category.len()) + 1 {
        return None;
    }
    let message = message.strip_prefix("| ")?;
    let level = ["ERROR ", "WARNING ", "FATAL "]
        .into_iter()
        .find_map(|l| Some((l.trim_end(), message.strip_prefix(l)?)));
    Some(Logged {
        category,
        level: level.map(|(l, _)| l),
        message: level.map_or(message, |(_, m)| m),
    })
}

/// `mm:ss.mmm` or `hh:mm:ss.mmm`.
fn is_timestamp(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    matches!(parts.len(), 2 | 3)
        && parts[..parts.len() - 1].iter().all(|p| digits(p))
        && parts[parts.len() - 1]
            .split_once('.')
            .is_some_and(|(s, ms)| digits(s) && digits(ms))
}

/// What a line says, without Blender 5.0's log columns: the message of a logged line, else the
/// line itself, trimmed.
pub fn text(line: &str) -> &str {
    logged(line).map_or(line.trim(), |l| l.message.trim())
}

pub fn parse(line: &str) -> Line {
    match logged(line) {
        Some(Logged {
            category,
            level: Some("ERROR" | "FATAL"),
            message,
        }) => Line::Error(format!("Error: {category}: {}", message.trim())),
        // 4.x printed these without a level, and nothing read them.
        Some(Logged { level: Some(_), .. }) => Line::Other,
        Some(logged) => message(logged.message),
        None => message(line),
    }
}

/// `RENDER_NODE:STATS <line>`: the progress line Blender 5.0 logs at the INFO level (`Fra: N |
/// …` or `Time: …`), printed by render-node's handler inside Blender.
fn stats(line: &str) -> Line {
    match message(line) {
        l @ (Line::Frame { .. } | Line::FrameTime(_)) => l,
        _ => Line::Other,
    }
}

/// A line as Blender 4.x prints it, or the message of a 5.0 log line.
fn message(line: &str) -> Line {
    let trimmed = line.trim();
    if let Some(rest) = trimmed.strip_prefix("Fra:") {
        let frame = rest.split_whitespace().next().and_then(|f| f.parse().ok());
        return match frame {
            Some(frame) => Line::Frame {
                frame,
                samples: samples(trimmed),
            },
            None => Line::Other,
        };
    }
    if let Some(rest) = trimmed.strip_prefix("Saved: ") {
        let path = rest.trim();
        let path = path
            .strip_prefix('\'')
            .and_then(|p| p.strip_suffix('\''))
            .unwrap_or(path);
        let path = path
            .strip_prefix('"')
            .and_then(|p| p.strip_suffix('"'))
            .unwrap_or(path);
        return Line::Saved(path.to_string());
    }
    if let Some(rest) = trimmed.strip_prefix("Time: ") {
        let t = rest.split_whitespace().next().and_then(clock);
        return t.map(Line::FrameTime).unwrap_or(Line::Other);
    }
    if let Some(rest) = trimmed.strip_prefix("RENDER_NODE:STATS ") {
        return stats(rest);
    }
    if let Some(rest) = trimmed.strip_prefix("RENDER_NODE:") {
        return marker(rest).map(Line::Marker).unwrap_or(Line::Other);
    }
    if let Some(rest) = trimmed.strip_prefix("Blender ")
        && let Some(v) = rest
            .split_whitespace()
            .next()
            .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
    {
        return Line::Version(v.to_string());
    }
    if trimmed.starts_with("Error: Python: Traceback") {
        return Line::Traceback;
    }
    if trimmed.starts_with("Error:") || trimmed.starts_with("ERROR:") {
        return Line::Error(trimmed.to_string());
    }
    // Out of memory inside Blender (guarded allocator) ends the render without an `Error:` line.
    if trimmed.starts_with("Malloc returns null") || trimmed.starts_with("Calloc returns null") {
        return Line::Error(format!("Error: out of memory ({trimmed})"));
    }
    Line::Other
}

/// Blender's errors that a retry cannot fix; everything else is worth a retry.
pub fn classify(error: &str) -> Class {
    const BAD: [&str; 8] = [
        "Cannot read file",
        "engine not found",
        "File format is not supported",
        "Missing DNA block",
        "Failed to read blend file",
        "cannot save",
        "Permission denied",
        "Found no Cycles device",
    ];
    if BAD.iter().any(|b| error.contains(b)) {
        Class::BadInput
    } else {
        Class::Retry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CYCLES_34: &str = include_str!("../testdata/blender-3.4-cycles.log");
    const CYCLES_42: &str = include_str!("../testdata/blender-4.2-cycles.log");
    const EEVEE_34: &str = include_str!("../testdata/blender-3.4-eevee.log");
    const EEVEE_42: &str = include_str!("../testdata/blender-4.2-eevee-next.log");
    const WORKBENCH_34: &str = include_str!("../testdata/blender-3.4-workbench.log");
    const WORKBENCH_42: &str = include_str!("../testdata/blender-4.2-workbench.log");
    const ERRORS_34: &str = include_str!("../testdata/blender-3.4-errors.log");
    const CANNOT_SAVE_34: &str = include_str!("../testdata/blender-3.4-cannot-save.log");
    const CYCLES_50: &str = include_str!("../testdata/blender-5.0-cycles.log");
    const CYCLES_50_LOG_RENDER: &str =
        include_str!("../testdata/blender-5.0-cycles-log-render.log");
    const EEVEE_50: &str = include_str!("../testdata/blender-5.0-eevee.log");
    const WORKBENCH_50: &str = include_str!("../testdata/blender-5.0-workbench.log");
    const ERRORS_50: &str = include_str!("../testdata/blender-5.0-errors.log");

    fn interesting(log: &str) -> Vec<Line> {
        log.lines()
            .map(parse)
            .filter(|l| !matches!(l, Line::Other | Line::Frame { samples: None, .. }))
            .collect()
    }

    #[test]
    fn blender_3_4_cycles_log() {
        let lines = interesting(CYCLES_34);
        assert_eq!(lines[0], Line::Version("3.4.1".into()));
        let saved: Vec<&Line> = lines
            .iter()
            .filter(|l| matches!(l, Line::Saved(_)))
            .collect();
        assert_eq!(
            saved,
            [
                &Line::Saved("/data/out/frame_0001.png".into()),
                &Line::Saved("/data/out/frame_0003.png".into()),
                &Line::Saved("/data/out/frame_0004.png".into())
            ]
        );
        let times: Vec<f64> = lines
            .iter()
            .filter_map(|l| {
                if let Line::FrameTime(t) = l {
                    Some(*t)
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(times, [0.89, 0.63, 0.47]);
        // Frame 1's samples: 0/8, 1/8, 8/8 in that order.
        let frame1: Vec<(u32, u32)> = lines
            .iter()
            .filter_map(|l| {
                if let Line::Frame { frame: 1, samples } = l {
                    *samples
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(frame1, [(0, 8), (1, 8), (8, 8)]);
        assert!(
            !lines
                .iter()
                .any(|l| matches!(l, Line::Error(_) | Line::Traceback))
        );
    }

    #[test]
    fn blender_4_2_cycles_log() {
        let lines = interesting(CYCLES_42);
        assert!(lines.contains(&Line::Frame {
            frame: 2,
            samples: Some((8, 8))
        }));
        // 4.x prints `Time:` without the leading space.
        assert!(CYCLES_42.lines().any(|l| l.starts_with("Time: ")));
        let tail: Vec<&Line> = lines.iter().rev().take(2).collect();
        assert_eq!(
            tail,
            [
                &Line::FrameTime(1.03),
                &Line::Saved("/data/out/frame_0002.png".into())
            ]
        );
        assert_eq!(parse("Read blend: \"/data/scene.blend\""), Line::Other);
        assert_eq!(
            parse("Blender 4.2.3 LTS (hash 2f1c2a3b4d5e built 2024-10-15 01:23:45)"),
            Line::Version("4.2.3".into())
        );
    }

    #[test]
    fn eevee_samples_in_3_4_and_4_2() {
        assert!(interesting(EEVEE_34).contains(&Line::Frame {
            frame: 2,
            samples: Some((26, 64))
        }));
        assert!(interesting(EEVEE_42).contains(&Line::Frame {
            frame: 1,
            samples: Some((64, 64))
        }));
        assert!(interesting(EEVEE_42).contains(&Line::FrameTime(178.29)));
        // Software OpenGL complaints are not errors.
        assert!(
            !interesting(EEVEE_34)
                .iter()
                .any(|l| matches!(l, Line::Error(_)))
        );
    }

    #[test]
    fn workbench_prints_no_frame_lines() {
        for log in [WORKBENCH_34, WORKBENCH_42] {
            let lines = interesting(log);
            assert!(!lines.iter().any(|l| matches!(l, Line::Frame { .. })));
            assert_eq!(
                lines.iter().filter(|l| matches!(l, Line::Saved(_))).count(),
                2
            );
        }
    }

    #[test]
    fn errors_and_their_class() {
        let errors: Vec<String> = ERRORS_34
            .lines()
            .chain(CANNOT_SAVE_34.lines())
            .filter_map(|l| {
                if let Line::Error(e) = parse(l) {
                    Some(e)
                } else {
                    None
                }
            })
            .collect();
        let classes: Vec<(Class, &str)> = errors
            .iter()
            .map(|e| (classify(e), &e[..e.len().min(40)]))
            .collect();
        assert_eq!(
            classes,
            [
                (Class::BadInput, "Error: Cannot read file '/data/nope.blen"),
                (Class::BadInput, "Error: File format is not supported in f"),
                (Class::BadInput, "Error: Failed to read blend file '/data/"),
                (Class::BadInput, "Error: Render error (Invalid argument) c"),
                (Class::BadInput, "Error: Found no Cycles device of the spe"),
                (Class::Retry, "Error: script failed, expr: 'raise Runti"),
                (Class::BadInput, "Error: Render error (No such file or dir"),
            ]
        );
        assert!(ERRORS_34.lines().any(|l| parse(l) == Line::Traceback));
        assert_eq!(
            classify("Error: CUDA error: Out of memory in cuMemAlloc"),
            Class::Retry
        );
        assert_eq!(
            parse("Malloc returns null: len=1024 in Cycles, total 4096"),
            Line::Error(
                "Error: out of memory (Malloc returns null: len=1024 in Cycles, total 4096)".into()
            )
        );
    }

    #[test]
    fn markers() {
        assert_eq!(
            parse("RENDER_NODE:SCENE 1 250 3.4.1"),
            Line::Marker(Marker::Scene {
                start: 1,
                end: 250,
                version: "3.4.1".into()
            })
        );
        assert_eq!(
            parse("RENDER_NODE:DEVICE CUDA NVIDIA GeForce RTX 3080, NVIDIA A100"),
            Line::Marker(Marker::Device {
                device: "CUDA".into(),
                detail: Some("NVIDIA GeForce RTX 3080, NVIDIA A100".into())
            })
        );
        assert_eq!(
            parse("RENDER_NODE:DEVICE CPU"),
            Line::Marker(Marker::Device {
                device: "CPU".into(),
                detail: None
            })
        );
        assert_eq!(
            parse("RENDER_NODE:BAD_INPUT no CUDA"),
            Line::Marker(Marker::BadInput("no CUDA".into()))
        );
        assert_eq!(
            parse("RENDER_NODE:GPU_UNUSABLE no CUDA"),
            Line::Marker(Marker::GpuUnusable("no CUDA".into()))
        );
        assert_eq!(parse("RENDER_NODE:NONSENSE x"), Line::Other);
        assert_eq!(
            parse("RENDER_NODE:RESOLUTION 1920 1080"),
            Line::Marker(Marker::Resolution(1920, 1080))
        );
        assert_eq!(parse("RENDER_NODE:RESOLUTION 1920"), Line::Other);
        assert_eq!(
            parse(
                r#"RENDER_NODE:MISSING_FILES {"action": "fail", "count": 3, "files": [{"kind": "image", "name": "wood", "path": "/data/tex/wood grain.png"}]}"#
            ),
            Line::Marker(Marker::MissingFiles(Missing {
                action: "fail".into(),
                count: 3,
                files: vec![render_contract::MissingFile {
                    kind: "image".into(),
                    name: "wood".into(),
                    path: "/data/tex/wood grain.png".into()
                }]
            }))
        );
        assert_eq!(parse("RENDER_NODE:MISSING_FILES {not json"), Line::Other);
    }

    /// Frames saved, frame times and frame 1's samples, in order.
    fn progress(lines: &[Line]) -> (Vec<&str>, Vec<f64>, Vec<(u32, u32)>) {
        let saved = lines
            .iter()
            .filter_map(|l| match l {
                Line::Saved(p) => Some(p.as_str()),
                _ => None,
            })
            .collect();
        let times = lines
            .iter()
            .filter_map(|l| match l {
                Line::FrameTime(t) => Some(*t),
                _ => None,
            })
            .collect();
        let frame1 = lines
            .iter()
            .filter_map(|l| match l {
                Line::Frame { frame: 1, samples } => *samples,
                _ => None,
            })
            .collect();
        (saved, times, frame1)
    }

    #[test]
    fn blender_5_0_log_lines_are_read_by_their_message() {
        let saved = "00:00.303  render           | Saved: '/data/out/frame_0001.png'";
        assert_eq!(text(saved), "Saved: '/data/out/frame_0001.png'");
        assert_eq!(parse(saved), Line::Saved("/data/out/frame_0001.png".into()));
        // Past an hour the timestamp has hours; a category of 16 or more is followed by one space.
        assert_eq!(
            parse("01:02:03.456  render           | Time: 00:00.09 (Saving: 00:00.05)"),
            Line::FrameTime(0.09)
        );
        assert_eq!(
            parse("00:00.002  a.category.of.sixteen | Saved: '/x.png'"),
            Line::Saved("/x.png".into())
        );
        assert_eq!(
            parse("00:00.263  blend            | Read blend: \"/data/scene.blend\""),
            Line::Other
        );
        assert_eq!(
            parse("00:00.415  image            | ERROR Couldn't create directory for file /data/afile/sub/f_0001.png: Not a directory"),
            Line::Error("Error: image: Couldn't create directory for file /data/afile/sub/f_0001.png: Not a directory".into())
        );
        assert_eq!(
            parse(
                "00:00.206  cycles           | WARNING CUEW initialization failed: Error opening the library"
            ),
            Line::Other
        );
        // Not logged lines: 4.x's, Blender's reports, other libraries', a padding that is off.
        for line in [
            "Fra:1 Mem:8.41M (Peak 8.41M) | Time:00:00.00 | Mem:0.00M, Peak:0.00M | Scene, ViewLayer | Sample 1/4",
            "Error: Render error (Not a directory) cannot save: '/data/afile/sub/f_0001.png'",
            "EGL Error (0x3009): EGL_BAD_MATCH: Arguments are inconsistent",
            "  File \"<expr>\", line 1, in <module>",
            "00:00.303  render | Saved: '/data/out/frame_0001.png'",
            "Info: Read library: '/data/ext/lib.blend', '//lib.blend', parent '<direct>'",
        ] {
            assert_eq!(logged(line), None, "{line}");
        }
        assert_eq!(
            text("Fra:1 Mem:8.41M | Sample 1/4 "),
            "Fra:1 Mem:8.41M | Sample 1/4"
        );
    }

    #[test]
    fn blender_5_0_cycles_log() {
        let lines = interesting(CYCLES_50);
        assert_eq!(lines[0], Line::Version("5.0.1".into()));
        assert_eq!(
            progress(&lines),
            (
                vec!["/data/out/frame_0001.png", "/data/out/frame_0002.png"],
                vec![0.09, 0.04],
                vec![(0, 4), (1, 4), (4, 4)]
            )
        );
        assert!(lines.contains(&Line::Frame {
            frame: 2,
            samples: Some((4, 4))
        }));
        assert!(
            !lines
                .iter()
                .any(|l| matches!(l, Line::Error(_) | Line::Traceback))
        );
        // Only what render-node's handler prints is read from a marker.
        assert_eq!(parse("RENDER_NODE:STATS Mem: 2M | Sample 1/4"), Line::Other);
        assert_eq!(parse("RENDER_NODE:STATS Saved: '/x.png'"), Line::Other);
    }

    #[test]
    fn blender_5_0_logs_what_the_handler_prints() {
        // With the `render` category at INFO, Blender 5.0 logs its progress itself: the same
        // lines, behind its log columns instead of render-node's marker.
        let logged = interesting(CYCLES_50_LOG_RENDER);
        let printed = interesting(CYCLES_50);
        let (saved, times, frame1) = progress(&logged);
        assert_eq!(saved, progress(&printed).0);
        assert_eq!((times.len(), frame1), (2, vec![(0, 4), (1, 4), (4, 4)]));
        let frames = |lines: &[Line]| -> Vec<(i32, Option<(u32, u32)>)> {
            lines
                .iter()
                .filter_map(|l| match l {
                    Line::Frame { frame, samples } => Some((*frame, *samples)),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(frames(&logged), frames(&printed));
    }

    #[test]
    fn blender_5_0_eevee_and_workbench() {
        let eevee = interesting(EEVEE_50);
        assert_eq!(
            progress(&eevee),
            (
                vec!["/data/out/frame_0001.png", "/data/out/frame_0002.png"],
                vec![2.91, 2.4],
                vec![(1, 4), (4, 4)]
            )
        );
        let workbench = interesting(WORKBENCH_50);
        assert!(!workbench.iter().any(|l| matches!(l, Line::Frame { .. })));
        let (saved, times, _) = progress(&workbench);
        assert_eq!((saved.len(), times), (2, vec![0.15, 0.02]));
        // Software OpenGL complaints are not errors.
        assert!(
            !eevee
                .iter()
                .chain(&workbench)
                .any(|l| matches!(l, Line::Error(_)))
        );
    }

    #[test]
    fn blender_5_0_errors_and_their_class() {
        let errors: Vec<(Class, String)> = ERRORS_50
            .lines()
            .filter_map(|l| match parse(l) {
                Line::Error(e) => Some((classify(&e), e)),
                _ => None,
            })
            .collect();
        let short: Vec<(Class, &str)> = errors
            .iter()
            .map(|(c, e)| (*c, &e[..e.len().min(40)]))
            .collect();
        assert_eq!(
            short,
            [
                (Class::BadInput, "Error: Cannot read file \"/data/nope.blen"),
                (Class::BadInput, "Error: File format is not supported in f"),
                (
                    Class::BadInput,
                    "Error: Loading \"/data/trunc.blend\" faile"
                ),
                (Class::Retry, "Error: image: Couldn't create directory "),
                (Class::BadInput, "Error: Render error (Not a directory) ca"),
                (Class::BadInput, "Error: Found no Cycles device of the spe"),
                (Class::BadInput, "Error: Found no Cycles device of the spe"),
                (Class::BadInput, "Error: engine not found 'NOPE' (bpy_stru"),
                (Class::Retry, "Error: cycles: Image file '/data/ext/tex"),
            ]
        );
        assert!(ERRORS_50.lines().any(|l| parse(l) == Line::Traceback));
        // The frame rendered all the same (its image magenta).
        assert!(
            ERRORS_50
                .lines()
                .any(|l| parse(l) == Line::Saved("/data/out/t_0001.png".into()))
        );
    }
}
