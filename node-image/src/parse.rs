//! One line of Blender's output → what it says. Pure; tested on logs captured from Blender 3.4
//! (Debian bookworm) and Blender 4.2 (see `testdata/`).

/// What one line of Blender output says.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// `Blender 3.4.1` (3.x) or `Blender 4.2.3 LTS (hash … built …)` (4.x): the first line.
    Version(String),
    /// A `Fra:N …` status line, with sample progress when it has some.
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
    /// `BAD_INPUT <text>`: a GPU that is not there, without fallback.
    BadInput(String),
    /// `WARNING <text>`.
    Warning(String),
    /// `MISSING_FILES <json>`: external files the scene uses that are not readable.
    MissingFiles(Missing),
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
        "WARNING" => Marker::Warning(text.to_string()),
        "MISSING_FILES" => Marker::MissingFiles(serde_json::from_str(text).ok()?),
        _ => return None,
    })
}

pub fn parse(line: &str) -> Line {
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
        assert_eq!(parse("RENDER_NODE:NONSENSE x"), Line::Other);
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
}
