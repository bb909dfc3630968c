//! Blender's stdout → progress events. Pure, tested on lines captured from Blender 3.4 and 4.x.

/// What one line of Blender output says.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// `Blender 3.4.1 (hash ... built ...)`.
    Version(String),
    /// A `Fra:N ...` status line, with sample progress when it has some.
    Frame {
        frame: i32,
        samples: Option<(u32, u32)>,
    },
    /// `Saved: '<path>'`.
    Saved(String),
    /// ` Time: 00:00.32 (Saving: 00:00.14)`: the last frame's render time, in seconds.
    FrameTime(f64),
    /// render-node's own device probe: `RENDER_NODE_DEVICE=<device>`.
    Device(String),
    /// `Error: ...` and other lines that mean the render failed.
    Error(String),
    Other,
}

/// `[hh:]mm:ss.xx` → seconds.
fn clock(s: &str) -> Option<f64> {
    let mut total = 0.0;
    for part in s.trim().split(':') {
        total = total * 60.0 + part.parse::<f64>().ok()?;
    }
    Some(total)
}

fn samples(line: &str) -> Option<(u32, u32)> {
    // Cycles: `| Sample 16/16`; Eevee: `| Rendering 16 / 16 samples`.
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
        return Line::Saved(rest.trim().trim_matches('\'').trim_matches('"').to_string());
    }
    if let Some(rest) = trimmed.strip_prefix("Time: ") {
        let t = rest.split_whitespace().next().and_then(clock);
        return t.map(Line::FrameTime).unwrap_or(Line::Other);
    }
    if let Some(dev) = trimmed.strip_prefix("RENDER_NODE_DEVICE=") {
        return Line::Device(dev.to_string());
    }
    if let Some(rest) = trimmed.strip_prefix("Blender ")
        && let Some(v) = rest
            .split_whitespace()
            .next()
            .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
    {
        return Line::Version(v.to_string());
    }
    let lower = trimmed.to_ascii_lowercase();
    if trimmed.starts_with("Error")
        || trimmed.starts_with("RENDER_NODE_ERROR")
        || lower.contains("traceback (most recent call last)")
        || lower.starts_with("error:")
    {
        return Line::Error(trimmed.to_string());
    }
    Line::Other
}

/// Which class of failure Blender's error lines describe.
pub fn is_bad_input(error: &str) -> bool {
    const BAD: [&str; 7] = [
        "Cannot read file",
        "File format is not supported",
        "Missing DNA block",
        "cannot save",
        "Permission denied",
        "Found no Cycles device",
        "RENDER_NODE_ERROR",
    ];
    BAD.iter().any(|b| error.contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from Debian bookworm's Blender 3.4.1, Cycles and Eevee, headless.
    const BLENDER_34: &[&str] = &[
        "Blender 3.4.1",
        "Read blend: /tmp/scene.blend",
        "Fra:1 Mem:8.76M (Peak 9.33M) | Time:00:00.02 | Mem:0.00M, Peak:0.00M | Scene, ViewLayer | Synchronizing object | Cube",
        "Fra:1 Mem:10.84M (Peak 11.09M) | Time:00:00.18 | Remaining:00:00.35 | Mem:2.59M, Peak:2.59M | Scene, ViewLayer | Sample 1/16",
        "Fra:1 Mem:10.84M (Peak 11.09M) | Time:00:00.30 | Mem:2.59M, Peak:2.59M | Scene, ViewLayer | Sample 16/16",
        "Fra:1 Mem:10.84M (Peak 11.09M) | Time:00:00.31 | Mem:2.59M, Peak:2.59M | Scene, ViewLayer | Finished",
        "Saved: '/tmp/out/frame_0001.png'",
        " Time: 00:00.32 (Saving: 00:00.14)",
        "Fra:2 Mem:21.10M (Peak 21.10M) | Time:00:00.45 | Rendering 16 / 16 samples",
    ];

    #[test]
    fn blender_3_4_lines() {
        let parsed: Vec<Line> = BLENDER_34.iter().map(|l| parse(l)).collect();
        assert_eq!(parsed[0], Line::Version("3.4.1".into()));
        assert_eq!(parsed[1], Line::Other);
        assert_eq!(
            parsed[2],
            Line::Frame {
                frame: 1,
                samples: None
            }
        );
        assert_eq!(
            parsed[3],
            Line::Frame {
                frame: 1,
                samples: Some((1, 16))
            }
        );
        assert_eq!(
            parsed[4],
            Line::Frame {
                frame: 1,
                samples: Some((16, 16))
            }
        );
        assert_eq!(
            parsed[5],
            Line::Frame {
                frame: 1,
                samples: None
            }
        );
        assert_eq!(parsed[6], Line::Saved("/tmp/out/frame_0001.png".into()));
        assert_eq!(parsed[7], Line::FrameTime(0.32));
        assert_eq!(
            parsed[8],
            Line::Frame {
                frame: 2,
                samples: Some((16, 16))
            }
        );
    }

    // Blender 4.x prints the version with its hash line and keeps the Fra/Saved/Time shapes.
    #[test]
    fn blender_4_lines() {
        assert_eq!(
            parse("Blender 4.2.3 LTS (hash 2f1c2a3b4d5e built 2024-10-15 01:23:45)"),
            Line::Version("4.2.3".into())
        );
        assert_eq!(
            parse(
                "Fra:12 Mem:45.12M (Peak 60.01M) | Time:00:01.24 | Remaining:00:03.10 | Mem:12.00M, Peak:12.00M | Scene, ViewLayer | Sample 64/128"
            ),
            Line::Frame {
                frame: 12,
                samples: Some((64, 128))
            }
        );
        assert_eq!(
            parse("Saved: \"/data/out/shot_0012.exr\""),
            Line::Saved("/data/out/shot_0012.exr".into())
        );
        assert_eq!(
            parse(" Time: 01:02.50 (Saving: 00:00.20)"),
            Line::FrameTime(62.5)
        );
    }

    #[test]
    fn errors_and_their_class() {
        let cases = [
            (
                "Error: Cannot read file '/nope.blend': No such file or directory",
                true,
            ),
            (
                "Error: File format is not supported in file '/x.blend'",
                true,
            ),
            (
                "Error: Render error (Permission denied) cannot save: '/ro/f_0001.png'",
                true,
            ),
            ("Error: Found no Cycles device of the specified type", true),
            ("Error: Not freed memory blocks: 2", false),
        ];
        for (line, bad) in cases {
            let Line::Error(e) = parse(line) else {
                panic!("{line} is an error")
            };
            assert_eq!(is_bad_input(&e), bad, "{line}");
        }
        assert_eq!(
            parse("RENDER_NODE_DEVICE=CUDA"),
            Line::Device("CUDA".into())
        );
    }
}
