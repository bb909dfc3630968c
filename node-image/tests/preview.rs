//! What people look at, made from real frames: render-node's thumbnails of PNG and EXR frames
//! rendered by real Blender 4.5 (the venv `hack/blender.sh` installs) from a scene these tests
//! make, and render-preview's video and contact sheet of them, checked with Debian's ffprobe
//! and decoded with its ffmpeg. EXR frames must come out neither black nor blown out.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Instant;

use render_contract::preview::{CONTACT_SHEET_TILE_WIDTH, THUMB_WIDTH, contact_sheet_grid};
use render_contract::{Outcome, PreviewReport, ProgressEvent, TerminationMessage, exit};

mod common;
use common::blender;

const NODE: &str = env!("CARGO_BIN_EXE_render-node");
const PREVIEW: &str = env!("CARGO_BIN_EXE_render-preview");
/// Wider than a thumbnail, so thumbnails scale down; 225 keeps an odd height to round.
const WIDTH: u32 = 400;
const HEIGHT: u32 = 225;

fn workdir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("render-preview-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("work dir");
    dir
}

/// The demo scene (`scripts/make-scene.py`): a cube moving over a sunlit plane, 4 samples.
fn scene() -> &'static Path {
    static SCENE: OnceLock<PathBuf> = OnceLock::new();
    SCENE.get_or_init(|| {
        let blend = workdir("scene").join("scene.blend");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-scene.py");
        let out = Command::new(blender())
            .args([
                "-b",
                "--factory-startup",
                "--python-exit-code",
                "1",
                "--python",
            ])
            .arg(&script)
            .arg("--")
            .arg(&blend)
            .args(["12", &WIDTH.to_string(), &HEIGHT.to_string(), "4"])
            .output()
            .expect("blender runs");
        assert!(
            out.status.success() && blend.exists(),
            "make-scene.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        blend
    })
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// render-node on `frames` into `dir/<sub>/frame_####` in `format`; (output, events, message).
fn render(
    dir: &Path,
    sub: &str,
    frames: &str,
    format: &str,
    env: &[(&str, &str)],
) -> (Output, Vec<ProgressEvent>, TerminationMessage) {
    let log = dir.join(format!("{sub}.term"));
    let started = Instant::now();
    let out = Command::new(NODE)
        .env_remove("RENDER_NODE_BLENDER_VERSION")
        .envs(env.iter().copied())
        .arg("--blender")
        .arg(blender())
        .arg("--blend-file")
        .arg(scene())
        .args(["--frames", frames, "--format", format, "--output"])
        .arg(dir.join(sub).join("frame_####"))
        .arg("--termination-log")
        .arg(&log)
        .output()
        .expect("render-node runs");
    println!(
        "render-node {frames} {format}: exit {:?} in {:.1}s",
        out.status.code(),
        started.elapsed().as_secs_f64()
    );
    let events = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not an event ({e}): {l}")))
        .collect();
    let msg = std::fs::read_to_string(&log)
        .ok()
        .and_then(|t| TerminationMessage::parse(&t))
        .unwrap_or_else(|| panic!("no termination message: {}", text(&out)));
    (out, events, msg)
}

/// Frames with a thumbnail event, and the mean seconds each took.
fn thumbnails(events: &[ProgressEvent]) -> (Vec<i32>, f64) {
    let (frames, secs): (Vec<i32>, Vec<f64>) = events
        .iter()
        .filter_map(|e| match e {
            ProgressEvent::Thumbnail { frame, seconds, .. } => Some((*frame, *seconds)),
            _ => None,
        })
        .unzip();
    let mean = secs.iter().sum::<f64>() / secs.len().max(1) as f64;
    (frames, mean)
}

/// `ffprobe -show_streams -count_frames` of a file's first video stream, as JSON.
fn probe(path: &Path) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_streams", "-show_format", "-of", "json"])
        .arg(path)
        .output()
        .expect("ffprobe runs (Debian's ffmpeg: hack/blender.sh installs it)");
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        path.display(),
        text(&out)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ffprobe JSON");
    v
}

fn stream(probe: &serde_json::Value) -> &serde_json::Value {
    &probe["streams"][0]
}

/// Decode an image (or a video's first frame) with ffmpeg: (width, height, RGB bytes).
fn pixels(path: &Path) -> (u32, u32, Vec<u8>) {
    let p = probe(path);
    let s = stream(&p);
    let (w, h) = (
        s["width"].as_u64().expect("width") as u32,
        s["height"].as_u64().expect("height") as u32,
    );
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "decode {}: {}",
        path.display(),
        text(&out)
    );
    assert_eq!(out.stdout.len(), (w * h * 3) as usize, "{}", path.display());
    (w, h, out.stdout)
}

/// Pixel statistics: (mean, standard deviation, share of pixels white in every channel).
fn stats(rgb: &[u8]) -> (f64, f64, f64) {
    let n = rgb.len() as f64;
    let mean = rgb.iter().map(|v| *v as f64).sum::<f64>() / n;
    let var = rgb.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / n;
    let white = rgb
        .chunks(3)
        .filter(|p| p.iter().all(|v| *v >= 250))
        .count() as f64;
    (mean, var.sqrt(), white / (n / 3.0))
}

/// A picture that is neither black nor blown out, and not flat.
fn assert_sane(what: &str, rgb: &[u8]) -> f64 {
    let (mean, sd, white) = stats(rgb);
    println!(
        "{what}: mean {mean:.1}, sd {sd:.1}, white {:.1}%",
        white * 100.0
    );
    assert!(
        (40.0..215.0).contains(&mean) && sd > 8.0 && white < 0.02,
        "{what} looks wrong: mean {mean:.1}, sd {sd:.1}, {:.1}% white",
        white * 100.0
    );
    mean
}

fn thumb(dir: &Path, sub: &str, frame: i32) -> PathBuf {
    dir.join(sub).join(format!(".thumbs/frame_{frame:04}.jpg"))
}

/// render-preview with `args` after `--output dir/sub/frame_####`; (output, report).
fn preview(dir: &Path, sub: &str, args: &[&str], env: &[(&str, &str)]) -> (Output, PreviewReport) {
    let log = dir.join(format!("{sub}.preview"));
    let _ = std::fs::remove_file(&log);
    let started = Instant::now();
    let out = Command::new(PREVIEW)
        .envs(env.iter().copied())
        .arg("--output")
        .arg(dir.join(sub).join("frame_####"))
        .args(args)
        .arg("--termination-log")
        .arg(&log)
        .output()
        .expect("render-preview runs");
    println!(
        "render-preview {args:?}: exit {:?} in {:.2}s",
        out.status.code(),
        started.elapsed().as_secs_f64()
    );
    let report = std::fs::read_to_string(&log)
        .ok()
        .and_then(|t| PreviewReport::parse(&t))
        .unwrap_or_else(|| panic!("no report: {}", text(&out)));
    (out, report)
}

/// No temporary file left beside the frames or the thumbnails.
fn assert_no_temporaries(dir: &Path) {
    for d in [dir.to_path_buf(), dir.join(".thumbs")] {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(!name.contains(".tmp-"), "{} left in {}", name, d.display());
        }
    }
}

fn frame_rate(s: &serde_json::Value) -> String {
    s["r_frame_rate"].as_str().unwrap_or("").to_string()
}

fn frames_in(s: &serde_json::Value) -> u64 {
    s["nb_read_frames"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn png_frames_get_thumbnails_and_a_preview() {
    let dir = workdir("png");
    // A PNG frame's thumbnail is made by render-node itself: no ffmpeg is needed.
    let no_ffmpeg = [("RENDER_NODE_FFMPEG", "/nonexistent/ffmpeg")];
    let (out, events, msg) = render(&dir, "png", "1..4", "PNG", &no_ffmpeg);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!((msg.outcome, msg.last_frame), (Outcome::Succeeded, Some(4)));
    let (made, secs) = thumbnails(&events);
    assert_eq!(made, [1, 2, 3, 4], "{events:?}");
    println!("thumbnail of a {WIDTH}x{HEIGHT} PNG: {secs:.3}s a frame");
    let mut pictures = Vec::new();
    for f in 1..=4 {
        let (w, h, rgb) = pixels(&thumb(&dir, "png", f));
        assert_eq!((w, h), (THUMB_WIDTH, 180), "thumbnail of frame {f}");
        assert_sane(&format!("thumbnail of frame {f}"), &rgb);
        pictures.push(rgb);
    }
    // It looks like ffmpeg's thumbnail of the same frame.
    let reference = dir.join("reference.jpg");
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(dir.join("png/frame_0001.png"))
        .args([
            "-vf",
            &format!("scale={THUMB_WIDTH}:-1:flags=lanczos"),
            "-q:v",
            "4",
        ])
        .arg(&reference)
        .output()
        .expect("ffmpeg runs");
    assert!(out.status.success(), "{}", text(&out));
    let (_, _, theirs) = pixels(&reference);
    let diff = pictures[0]
        .iter()
        .zip(&theirs)
        .map(|(a, b)| f64::from(a.abs_diff(*b)))
        .sum::<f64>()
        / theirs.len() as f64;
    println!("thumbnail of frame 1 against ffmpeg's: mean difference {diff:.2} of 255");
    assert!(
        theirs.len() == pictures[0].len() && diff < 4.0,
        "thumbnail of frame 1 differs from ffmpeg's by {diff:.2}"
    );
    assert!(
        pictures[0] != pictures[3],
        "the thumbnails do not follow the frames"
    );
    assert_no_temporaries(&dir.join("png"));

    // A frame on disk without a thumbnail gets one; the others are not made again.
    std::fs::remove_file(thumb(&dir, "png", 2)).expect("remove a thumbnail");
    let (out, events, msg) = render(&dir, "png", "1..4", "PNG", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!((msg.frames_skipped, msg.last_frame), (4, Some(4)));
    assert_eq!(thumbnails(&events).0, [2]);
    assert_eq!(pixels(&thumb(&dir, "png", 2)).0, THUMB_WIDTH);

    // A thumbnail that cannot be made is a warning, never a failed batch: here a folder stands
    // where it goes.
    std::fs::create_dir_all(thumb(&dir, "png", 5)).expect("a folder in the thumbnail's place");
    let (out, events, msg) = render(&dir, "png", "5", "PNG", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!((msg.frames_rendered, msg.last_frame), (1, Some(5)));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ProgressEvent::Warning { message }
            if message.contains("no thumbnail of frame 5") && message.contains("frame_0005.jpg"))),
        "{events:?}"
    );
    assert!(thumb(&dir, "png", 5).is_dir());
    std::fs::remove_dir(thumb(&dir, "png", 5)).expect("remove the folder");

    // The preview: frames 1..5 are on disk, 6 is not. Start-ahead markers beside them: the
    // render's go, another render's stay.
    let markers = dir.join("png/.renderfarm");
    std::fs::create_dir_all(&markers).expect("markers folder");
    for name in ["u1-0", "u1-3", "u2-0"] {
        std::fs::write(markers.join(name), "done").expect("a marker");
    }
    let (out, report) = preview(
        &dir,
        "png",
        &[
            "--frames",
            "1..6",
            "--fps",
            "12",
            "--width",
            "200",
            "--markers",
            "u1-",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(exit::SUCCESS), "{}", text(&out));
    let mut left: Vec<String> = std::fs::read_dir(&markers)
        .expect("markers folder")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    left.sort();
    assert_eq!(left, ["u2-0"]);
    std::fs::remove_file(markers.join("u2-0")).expect("remove a marker");
    let (columns, rows) = contact_sheet_grid(5);
    assert_eq!(
        (report.ok, report.frames, report.columns, report.rows),
        (true, 5, columns, rows)
    );
    let message = report.message.clone().unwrap_or_default();
    assert!(
        message.contains("frames 6") && message.contains("5 of 6"),
        "{message}"
    );
    let video = dir.join("png/preview.mp4");
    let p = probe(&video);
    let s = stream(&p);
    assert_eq!(
        (
            s["codec_name"].as_str(),
            s["pix_fmt"].as_str(),
            frame_rate(s),
            frames_in(s)
        ),
        (Some("h264"), Some("yuv420p"), "12/1".to_string(), 5),
        "{s}"
    );
    assert_eq!(
        (s["width"].as_u64(), s["height"].as_u64()),
        (Some(200), Some(112))
    );
    // +faststart: the index (moov) comes before the data (mdat).
    let bytes = std::fs::read(&video).expect("video");
    let at = |tag: &[u8]| {
        bytes
            .windows(4)
            .position(|w| w == tag)
            .unwrap_or(usize::MAX)
    };
    assert!(at(b"moov") < at(b"mdat"), "moov after mdat: no +faststart");
    assert_sane("the video's first frame", &pixels(&video).2);
    let (w, h, rgb) = pixels(&dir.join("png/contact.jpg"));
    assert_eq!((w, h), (columns * CONTACT_SHEET_TILE_WIDTH, rows * 136));
    let (mean, ..) = stats(&rgb);
    println!("contact sheet {w}x{h} ({columns}x{rows}, one cell empty): mean {mean:.1}");
    // The cell with no frame (the last) is the page's grey, not black.
    let tile_height = h / rows;
    let (x, y) = (
        (columns - 1) * CONTACT_SHEET_TILE_WIDTH + CONTACT_SHEET_TILE_WIDTH / 2,
        (rows - 1) * tile_height + tile_height / 2,
    );
    let at = ((y * w + x) * 3) as usize;
    let empty = &rgb[at..at + 3];
    assert!(
        empty
            .iter()
            .zip([0xF6, 0xF7, 0xF9])
            .all(|(&v, want)| v.abs_diff(want) <= 8),
        "the empty cell is {empty:?}"
    );

    // VP9, asked for.
    let (out, report) = preview(&dir, "png", &["--frames", "1..5", "--codec", "VP9"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(report.ok && report.message.is_none(), "{report:?}");
    let p = probe(&video);
    let s = stream(&p);
    assert_eq!(
        (
            s["codec_name"].as_str(),
            frame_rate(s),
            frames_in(s),
            s["width"].as_u64()
        ),
        (Some("vp9"), "24/1".to_string(), 5, Some(640))
    );
    assert_no_temporaries(&dir.join("png"));

    // No frame on disk: bad input. ffmpeg failing: worth a retry, and the files stay as they were.
    let (out, report) = preview(&dir, "png", &["--frames", "20..22"], &[]);
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT), "{}", text(&out));
    assert!(!report.ok && report.frames == 0, "{report:?}");
    assert!(
        report
            .message
            .unwrap_or_default()
            .contains("none of the 3 frames")
    );
    let before = std::fs::read(&video).expect("video");
    let (out, report) = preview(
        &dir,
        "png",
        &["--frames", "1..5"],
        &[("RENDER_NODE_FFMPEG", "false")],
    );
    assert_eq!(
        out.status.code(),
        Some(exit::RENDER_FAILED),
        "{}",
        text(&out)
    );
    let message = report.message.clone().unwrap_or_default();
    assert!(
        !report.ok && message.contains("preview video: ffmpeg failed"),
        "{report:?}"
    );
    assert_eq!(std::fs::read(&video).expect("video"), before);
    assert_no_temporaries(&dir.join("png"));
}

#[test]
fn exr_frames_are_tone_mapped_neither_black_nor_blown_out() {
    let dir = workdir("exr");
    let (out, events, msg) = render(&dir, "exr", "1..3", "OPEN_EXR", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(msg.last_frame, Some(3));
    let (made, secs) = thumbnails(&events);
    assert_eq!(made, [1, 2, 3]);
    println!("thumbnail of a {WIDTH}x{HEIGHT} EXR: {secs:.3}s a frame");
    // The same frame as a PNG, through Blender's view transform: the tone-mapped EXR is near it.
    let (out, ..) = render(&dir, "png", "1", "PNG", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let png = assert_sane(
        "PNG thumbnail of frame 1",
        &pixels(&thumb(&dir, "png", 1)).2,
    );
    for f in 1..=3 {
        let (w, h, rgb) = pixels(&thumb(&dir, "exr", f));
        assert_eq!((w, h), (THUMB_WIDTH, 180), "thumbnail of frame {f}");
        let mean = assert_sane(&format!("EXR thumbnail of frame {f}"), &rgb);
        if f == 1 {
            assert!((mean - png).abs() < 30.0, "EXR {mean:.1} vs PNG {png:.1}");
        }
    }

    // An EXR frame's thumbnail is ffmpeg's: without it, a warning, never a failed batch.
    let no_ffmpeg = [("RENDER_NODE_FFMPEG", "/nonexistent/ffmpeg")];
    let (out, events, msg) = render(&dir, "exr", "4", "OPEN_EXR", &no_ffmpeg);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!((msg.frames_rendered, msg.last_frame), (1, Some(4)));
    assert!(
        events.iter().any(|e| matches!(e, ProgressEvent::Warning { message }
            if message.contains("no thumbnail of frame 4") && message.contains("/nonexistent/ffmpeg"))),
        "{events:?}"
    );
    assert!(!thumb(&dir, "exr", 4).exists());

    // Multilayer EXR: the picture is the Combined pass of the view layer.
    let (out, events, _) = render(&dir, "ml", "1..2", "OPEN_EXR_MULTILAYER", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(thumbnails(&events).0, [1, 2], "{events:?}");
    for f in 1..=2 {
        let (w, _, rgb) = pixels(&thumb(&dir, "ml", f));
        assert_eq!(w, THUMB_WIDTH);
        assert_sane(&format!("multilayer EXR thumbnail of frame {f}"), &rgb);
    }

    for (sub, format, frames) in [("exr", "OPEN_EXR", 3), ("ml", "OPEN_EXR_MULTILAYER", 2)] {
        let range = format!("1..{frames}");
        let (out, report) = preview(&dir, sub, &["--format", format, "--frames", &range], &[]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(report.ok && report.frames == frames, "{report:?}");
        let video = dir.join(sub).join("preview.mp4");
        let p = probe(&video);
        let s = stream(&p);
        assert_eq!(
            (
                s["codec_name"].as_str(),
                s["pix_fmt"].as_str(),
                frames_in(s)
            ),
            (Some("h264"), Some("yuv420p"), frames as u64)
        );
        assert_sane(&format!("{format} video's first frame"), &pixels(&video).2);
        let (w, _, rgb) = pixels(&dir.join(sub).join("contact.jpg"));
        assert_eq!(w, contact_sheet_grid(frames).0 * CONTACT_SHEET_TILE_WIDTH);
        if frames == 2 {
            assert_sane(&format!("{format} contact sheet"), &rgb);
        }
    }
}

#[test]
fn long_renders_are_sampled_onto_the_contact_sheet() {
    // 40 frames of one picture each (made by ffmpeg: this is about sampling, not Blender).
    let dir = workdir("long");
    std::fs::create_dir_all(dir.join("seq")).expect("dir");
    let out = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180:rate=24",
        ])
        .args(["-frames:v", "40", "-start_number", "1"])
        .arg(dir.join("seq/frame_%04d.png"))
        .output()
        .expect("ffmpeg runs");
    assert!(out.status.success(), "{}", text(&out));
    let (out, report) = preview(&dir, "seq", &["--frames", "1..40", "--width", "320"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        (report.frames, report.columns, report.rows),
        (40, 6, 6),
        "{report:?}"
    );
    let p = probe(&dir.join("seq/preview.mp4"));
    assert_eq!(frames_in(stream(&p)), 40);
    let (w, h, _) = pixels(&dir.join("seq/contact.jpg"));
    assert_eq!((w, h), (6 * CONTACT_SHEET_TILE_WIDTH, 6 * 136));
}

#[test]
fn bad_arguments_are_bad_input_with_a_report() {
    let dir = workdir("args");
    let log = dir.join("log");
    let run = |args: &[&str]| {
        let _ = std::fs::remove_file(&log);
        let out = Command::new(PREVIEW)
            .args(args)
            .arg("--termination-log")
            .arg(&log)
            .output()
            .expect("render-preview runs");
        let report = std::fs::read_to_string(&log)
            .ok()
            .and_then(|t| PreviewReport::parse(&t));
        (out.status.code(), report)
    };
    let (code, report) = run(&["--output", "/o/f_####", "--frames", "9..1"]);
    assert_eq!(code, Some(exit::BAD_INPUT));
    let report = report.expect("a report");
    assert!(!report.ok && report.message.is_some_and(|m| m.contains("--frames")));
    let (code, report) = run(&["--output", "/o/f_####", "--frames", "1..3", "--fps", "0"]);
    assert_eq!(code, Some(exit::BAD_INPUT));
    assert!(report.is_some_and(|r| !r.ok && r.message.is_some_and(|m| m.contains("--fps"))));
    let help = Command::new(PREVIEW).arg("--help").output().expect("runs");
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("--codec"));
}
