//! render-node with real Blender on a real scene that these tests make. They need `blender` on
//! PATH (Debian's package: `apt-get install blender`) and fail, not skip, without it.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use render_contract::{Outcome, ProgressEvent, TerminationMessage, exit};

const BIN: &str = env!("CARGO_BIN_EXE_render-node");

/// The scene, made once per test binary: 320×180, Cycles, 8 samples, a cube moving over 12
/// frames (`scripts/make-scene.py`).
fn scene() -> &'static Path {
    static SCENE: OnceLock<PathBuf> = OnceLock::new();
    SCENE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("render-node-scene-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let blend = dir.join("scene.blend");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-scene.py");
        let out = Command::new("blender")
            .args(["-b", "--factory-startup", "--python"])
            .arg(&script)
            .arg("--")
            .arg(&blend)
            .args(["12", "320", "180", "8"])
            .output()
            .unwrap_or_else(|e| {
                panic!("these tests need Blender: `blender` is not runnable ({e}); install it with `apt-get install -y blender`")
            });
        assert!(out.status.success() && blend.exists(), "making the scene failed: {}", String::from_utf8_lossy(&out.stdout));
        blend
    })
}

fn workdir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("render-node-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("work dir");
    dir
}

fn command(dir: &Path, blend: &Path, frames: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--blend-file")
        .arg(blend)
        .args(["--frames", frames, "--output"])
        .arg(dir.join("out/frame_####"))
        .arg("--termination-log")
        .arg(dir.join("termination-log"))
        .args(extra);
    cmd
}

fn message(dir: &Path) -> TerminationMessage {
    let text =
        std::fs::read_to_string(dir.join("termination-log")).expect("termination message written");
    TerminationMessage::parse(&text)
        .unwrap_or_else(|| panic!("termination message is not valid: {text}"))
}

fn render(dir: &Path, blend: &Path, frames: &str, extra: &[&str]) -> (Output, TerminationMessage) {
    let _ = std::fs::remove_file(dir.join("termination-log"));
    let out = command(dir, blend, frames, extra)
        .output()
        .expect("render-node runs");
    (out, message(dir))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every stdout line is a progress event.
fn events(out: &Output) -> Vec<ProgressEvent> {
    stdout(out)
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a progress event ({e}): {l}"))
        })
        .collect()
}

fn saved(events: &[ProgressEvent]) -> Vec<i32> {
    events
        .iter()
        .filter_map(|e| {
            if let ProgressEvent::FrameSaved { frame, .. } = e {
                Some(*frame)
            } else {
                None
            }
        })
        .collect()
}

/// Decode a PNG: (width, height, pixels).
fn decode(path: &Path) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(
        std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    );
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("png data");
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

#[test]
fn renders_three_frames_and_reports_them() {
    let dir = workdir("render");
    let (out, msg) = render(&dir, scene(), "1..3", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut images = Vec::new();
    for f in 1..=3 {
        let (w, h, pixels) = decode(&dir.join(format!("out/frame_{f:04}.png")));
        assert_eq!((w, h), (320, 180), "frame {f}");
        let distinct = pixels
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        assert!(
            distinct > 20,
            "frame {f} looks blank ({distinct} distinct values)"
        );
        images.push(pixels);
    }
    // The cube moves: no two frames are the same picture.
    assert!(
        images[0] != images[1] && images[1] != images[2],
        "frames do not differ"
    );

    assert_eq!(
        (msg.outcome, msg.frames_rendered, msg.frames_skipped),
        (Outcome::Succeeded, 3, 0)
    );
    assert!(
        msg.frames_missing.is_empty() && msg.message.is_none(),
        "{msg:?}"
    );
    assert_eq!(msg.device.as_deref(), Some("CPU"));
    assert!(
        msg.blender_version
            .as_deref()
            .is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit())),
        "{msg:?}"
    );
    assert!(
        msg.seconds_per_frame.is_some_and(|s| s > 0.0 && s < 60.0),
        "{msg:?}"
    );

    let ev = events(&out);
    assert_eq!(saved(&ev), [1, 2, 3]);
    assert!(matches!(&ev[0], ProgressEvent::Start { to_render, .. } if to_render == &[1, 2, 3]));
    assert!(ev.iter().any(
        |e| matches!(e, ProgressEvent::Rendering { startup_seconds, .. } if *startup_seconds > 0.0)
    ));
    assert!(
        ev.iter()
            .any(|e| matches!(e, ProgressEvent::Device { used, .. } if used == "CPU"))
    );
    assert!(ev.iter().any(|e| matches!(
        e,
        ProgressEvent::Samples {
            frame: 3,
            done: 8,
            total: 8
        }
    )));
    assert!(matches!(
        ev.last(),
        Some(ProgressEvent::Done {
            rendered: 3,
            skipped: 0,
            exit_code: 0,
            ..
        })
    ));
}

#[test]
fn skips_frames_on_disk_unless_overwriting() {
    let dir = workdir("skip");
    let (first, _) = render(&dir, scene(), "2", &[]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let frame2 = std::fs::metadata(dir.join("out/frame_0002.png"))
        .and_then(|m| m.modified())
        .expect("frame 2");

    let (out, msg) = render(&dir, scene(), "1..3", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!((msg.frames_rendered, msg.frames_skipped), (2, 1));
    let ev = events(&out);
    assert!(
        matches!(&ev[0], ProgressEvent::Start { to_render, skipped, .. } if to_render == &[1, 3] && skipped == &[2])
    );
    assert_eq!(saved(&ev), [1, 3]);
    assert_eq!(
        std::fs::metadata(dir.join("out/frame_0002.png"))
            .and_then(|m| m.modified())
            .ok(),
        Some(frame2)
    );

    let (out, msg) = render(&dir, scene(), "1..3", &["--overwrite"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!((msg.frames_rendered, msg.frames_skipped), (3, 0));
    assert_eq!(saved(&events(&out)), [1, 2, 3]);

    // Nothing missing: Blender is not even started.
    let (out, msg) = render(&dir, scene(), "1..3", &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        (msg.outcome, msg.frames_rendered, msg.frames_skipped),
        (Outcome::Succeeded, 0, 3)
    );
    assert!(
        !stderr(&out).contains("blender:"),
        "Blender ran for nothing: {}",
        stderr(&out)
    );
}

#[test]
fn bad_input_exits_64_with_one_line_saying_why() {
    let dir = workdir("bad");
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let corrupt = dir.join("corrupt.blend");
    std::fs::write(&corrupt, &noise).expect("write");
    // Passes the header check, so Blender itself reads it and refuses it.
    let truncated = dir.join("truncated.blend");
    std::fs::write(&truncated, [b"BLENDER-v304".as_slice(), &noise].concat()).expect("write");
    // No one, not even root, can create a folder under a regular file.
    let a_file = dir.join("not-a-dir");
    std::fs::write(&a_file, b"x").expect("write");
    let under_file = format!("{}/out/f_####", a_file.display());
    let blend = scene().to_path_buf();
    let ok = format!("{}/o/f_####", dir.display());

    // (case, blend file, frames, output pattern, what the message says)
    let cases: [(&str, &Path, &str, &str, &str); 6] = [
        (
            "missing",
            &dir.join("nope.blend"),
            "1..2",
            &ok,
            "cannot read blend file",
        ),
        ("corrupt", &corrupt, "1..2", &ok, "is not a .blend file"),
        ("truncated", &truncated, "1..2", &ok, "Missing DNA block"),
        (
            "unwritable output",
            &blend,
            "1..2",
            &under_file,
            "cannot create output directory",
        ),
        (
            "reversed frames",
            &blend,
            "5..1",
            &ok,
            "frame range end 1 is before its start 5",
        ),
        (
            "unknown device",
            &blend,
            "1",
            &ok,
            "invalid value 'TPU' for '--device",
        ),
    ];
    for (case, blend, frames, output, why) in cases {
        let _ = std::fs::remove_file(dir.join("term"));
        let mut cmd = Command::new(BIN);
        cmd.arg("--blend-file")
            .arg(blend)
            .args(["--frames", frames, "--output", output]);
        cmd.arg("--termination-log").arg(dir.join("term"));
        if case == "unknown device" {
            cmd.args(["--device", "TPU"]);
        }
        let out = cmd.output().expect("runs");
        assert_eq!(
            out.status.code(),
            Some(exit::BAD_INPUT),
            "{case}: {}",
            stderr(&out)
        );
        let msg = TerminationMessage::parse(
            &std::fs::read_to_string(dir.join("term")).unwrap_or_default(),
        )
        .unwrap_or_else(|| panic!("{case}: no termination message"));
        let text = msg.message.unwrap_or_default();
        assert_eq!(msg.outcome, Outcome::BadInput, "{case}");
        assert!(
            text.contains(why) && !text.contains('\n'),
            "{case}: message {text:?} should say {why:?}"
        );
        assert!(
            stderr(&out).contains(why),
            "{case}: stderr lacks {why:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn frames_outside_the_scene_render_with_a_warning() {
    // Blender renders frames past the scene's end (the animation holds its last pose); so does
    // render-node, and it says so.
    let dir = workdir("outside");
    let (out, msg) = render(&dir, scene(), "12..13", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!((msg.outcome, msg.frames_rendered), (Outcome::Succeeded, 2));
    let text = msg.message.unwrap_or_default();
    assert!(
        text.contains("frames 13 are outside the scene's frame range 1..12"),
        "{text}"
    );
    assert!(
        events(&out)
            .iter()
            .any(|e| matches!(e, ProgressEvent::Warning { .. }))
    );
}

#[test]
fn missing_gpu_is_bad_input_unless_fallback_is_allowed() {
    let dir = workdir("gpu");
    let started = Instant::now();
    let (out, msg) = render(&dir, scene(), "1", &["--device", "CUDA"]);
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT), "{}", stderr(&out));
    assert_eq!(msg.outcome, Outcome::BadInput);
    let text = msg.message.unwrap_or_default();
    assert!(
        text.contains("no CUDA device found") && text.contains("--allow-cpu-fallback"),
        "{text}"
    );
    assert!(!dir.join("out/frame_0001.png").exists());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "no frame should render"
    );

    let (out, msg) = render(
        &dir,
        scene(),
        "1",
        &["--device", "CUDA", "--allow-cpu-fallback"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        (msg.outcome, msg.device.as_deref()),
        (Outcome::Succeeded, Some("CPU"))
    );
    assert!(
        msg.message
            .unwrap_or_default()
            .contains("no CUDA device found; rendering on the CPU")
    );
    let ev = events(&out);
    assert!(
        ev.iter().any(|e| matches!(e, ProgressEvent::Device { requested, used, fallback: true, .. } if requested == "CUDA" && used == "CPU")),
        "{}",
        stdout(&out)
    );
}

#[test]
fn workbench_renders_without_frame_lines() {
    let dir = workdir("workbench");
    let (out, msg) = render(&dir, scene(), "1..2", &["--engine", "BLENDER_WORKBENCH"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        (msg.frames_rendered, msg.device.as_deref()),
        (2, Some("OPENGL"))
    );
    assert_eq!(saved(&events(&out)), [1, 2]);
    assert_eq!(decode(&dir.join("out/frame_0002.png")).0, 320);
}

/// Processes whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let status = std::fs::read_to_string(e.path().join("status")).ok()?;
            let ppid: u32 = status
                .lines()
                .find_map(|l| l.strip_prefix("PPid:"))?
                .trim()
                .parse()
                .ok()?;
            (ppid == pid).then(|| e.file_name().to_str()?.parse().ok())?
        })
        .collect()
}

fn alive(pid: u32) -> bool {
    // A zombie is dead; anything else under /proc/<pid> is running.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// Start a 12-frame render and return once the first frame is rendering, with Blender's pid.
fn start_long_render(dir: &Path) -> (std::process::Child, u32) {
    let mut child = command(dir, scene(), "1..12", &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    while stdout.read_line(&mut line).unwrap_or(0) > 0 && !line.contains("frame_started") {
        line.clear();
    }
    assert!(line.contains("frame_started"), "the render did not start");
    // Keep draining stdout so render-node never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let blender = children(child.id());
    assert_eq!(
        blender.len(),
        1,
        "render-node should run exactly one Blender: {blender:?}"
    );
    (child, blender[0])
}

#[test]
fn sigterm_stops_blender_and_leaves_no_process() {
    let dir = workdir("sigterm");
    let (mut child, blender) = start_long_render(&dir);
    // SAFETY: signalling a child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let stopped = Instant::now();
    let status = child.wait().expect("wait");
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "took {:?}",
        stopped.elapsed()
    );
    assert_eq!(status.code(), Some(exit::TERMINATED));
    assert!(!alive(blender), "Blender ({blender}) outlived render-node");
    let msg = message(&dir);
    assert_eq!(msg.outcome, Outcome::Terminated);
    assert!(
        msg.message
            .unwrap_or_default()
            .starts_with("stopped by SIGTERM")
    );
    assert!(
        !msg.frames_missing.is_empty()
            && msg.frames_missing.len() + msg.frames_rendered as usize == 12,
        "{:?}",
        msg.frames_missing
    );
    // Whatever is on disk is a whole frame: a retry may skip it safely.
    for f in 1..=12 {
        let path = dir.join(format!("out/frame_{f:04}.png"));
        if path.exists() {
            assert_eq!(decode(&path).0, 320, "frame {f} is cut short");
        }
    }
}

#[test]
fn blender_dies_with_render_node_even_on_sigkill() {
    let dir = workdir("sigkill");
    let (mut child, blender) = start_long_render(&dir);
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(blender) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(blender), "Blender ({blender}) was orphaned");
}

#[test]
fn help_and_version_exit_0() {
    for flag in ["--help", "--version"] {
        let out = Command::new(BIN).arg(flag).output().expect("runs");
        assert_eq!(out.status.code(), Some(0), "{flag}");
        assert!(!out.stdout.is_empty());
    }
}
