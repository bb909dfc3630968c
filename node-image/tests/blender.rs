//! render-node with real Blender on a real scene this test makes. Needs `blender` on PATH
//! (Debian's package); fails, not skips, without it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use render_contract::{Outcome, TerminationMessage, exit};

const BIN: &str = env!("CARGO_BIN_EXE_render-node");

/// The scene, made once per test run: 320×180, 8 samples, a moving cube, 12 frames.
fn scene() -> &'static Path {
    static SCENE: OnceLock<PathBuf> = OnceLock::new();
    SCENE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("render-node-scene");
        std::fs::create_dir_all(&dir).expect("temp dir");
        let blend = dir.join("scene.blend");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-scene.py");
        let out = Command::new("blender")
            .args(["-b", "--factory-startup", "--python"])
            .arg(&script)
            .arg("--")
            .arg(&blend)
            .arg("12")
            .output()
            .expect("blender must be installed (apt-get install blender) to run these tests");
        assert!(
            out.status.success() && blend.exists(),
            "making the scene failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        blend
    })
}

fn workdir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("render-node-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("work dir");
    dir
}

fn render(
    dir: &Path,
    blend: &Path,
    frames: &str,
    extra: &[&str],
) -> (Output, Option<TerminationMessage>) {
    let term = dir.join("termination-log");
    let out = Command::new(BIN)
        .arg("--blend-file")
        .arg(blend)
        .args(["--frames", frames, "--output"])
        .arg(dir.join("out/frame_####"))
        .arg("--termination-log")
        .arg(&term)
        .args(extra)
        .output()
        .expect("render-node runs");
    let msg = std::fs::read_to_string(&term)
        .ok()
        .and_then(|s| TerminationMessage::parse(&s));
    (out, msg)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Decode a PNG: (width, height, distinct byte values seen).
fn decode(path: &Path) -> (u32, u32, usize) {
    let decoder = png::Decoder::new(std::fs::File::open(path).expect("png exists"));
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("png data");
    let mut seen = [false; 256];
    for b in &buf[..info.buffer_size()] {
        seen[*b as usize] = true;
    }
    (info.width, info.height, seen.iter().filter(|s| **s).count())
}

#[test]
fn renders_three_frames_and_reports_them() {
    let dir = workdir("render");
    let (out, msg) = render(&dir, scene(), "1..3", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for f in 1..=3 {
        let (w, h, values) = decode(&dir.join(format!("out/frame_{f:04}.png")));
        assert_eq!((w, h), (320, 180));
        assert!(
            values > 20,
            "frame {f} looks blank ({values} distinct values)"
        );
    }
    let msg = msg.expect("termination message");
    assert_eq!(
        (msg.outcome, msg.frames_rendered, msg.frames_skipped),
        (Outcome::Succeeded, 3, 0)
    );
    assert_eq!(msg.device.as_deref(), Some("CPU"));
    assert_eq!(
        msg.blender_version
            .as_deref()
            .map(|v| v.starts_with(|c: char| c.is_ascii_digit())),
        Some(true)
    );
    assert!(msg.seconds_per_frame.is_some_and(|s| s > 0.0));
    let log = stdout(&out);
    for f in 1..=3 {
        assert!(
            log.contains(&format!("{{\"event\":\"frame_saved\",\"frame\":{f},")),
            "no progress line for frame {f}:\n{log}"
        );
    }
}

#[test]
fn skips_frames_on_disk_unless_overwriting() {
    let dir = workdir("skip");
    let (first, _) = render(&dir, scene(), "2", &[]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let (out, msg) = render(&dir, scene(), "1..3", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let msg = msg.expect("message");
    assert_eq!((msg.frames_rendered, msg.frames_skipped), (2, 1));
    let log = stdout(&out);
    assert!(log.contains("\"to_render\":[1,3],\"skipped\":[2]"), "{log}");
    assert!(
        !log.contains("\"frame_saved\",\"frame\":2,"),
        "frame 2 rendered again:\n{log}"
    );

    let (out, msg) = render(&dir, scene(), "1..3", &["--overwrite"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        msg.map(|m| (m.frames_rendered, m.frames_skipped)),
        Some((3, 0))
    );

    // Nothing missing: Blender is not even started.
    let (out, msg) = render(&dir, scene(), "1..3", &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        msg.map(|m| (m.frames_rendered, m.frames_skipped)),
        Some((0, 3))
    );
    assert!(
        !stderr(&out).contains("blender:"),
        "Blender ran for nothing"
    );
}

#[test]
fn bad_input_exits_64_with_one_line_saying_why() {
    let dir = workdir("bad");
    let corrupt = dir.join("corrupt.blend");
    std::fs::write(
        &corrupt,
        (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect::<Vec<u8>>(),
    )
    .expect("write");
    let a_file = dir.join("not-a-dir");
    std::fs::write(&a_file, b"x").expect("write");

    let out_ok = format!("{}/o/f_####", dir.display());
    let out_bad = format!("{}/out/f_####", a_file.display());
    let blend = scene().to_path_buf();
    // (case, blend file, frames, output pattern, what the message says)
    let cases: [(&str, PathBuf, &str, &str, &str); 4] = [
        (
            "missing",
            dir.join("nope.blend"),
            "1..2",
            &out_ok,
            "cannot read blend file",
        ),
        ("corrupt", corrupt, "1..2", &out_ok, "is not a .blend file"),
        (
            "unwritable output",
            blend.clone(),
            "1..2",
            &out_bad,
            "cannot create output directory",
        ),
        (
            "bad arguments",
            blend,
            "5..1",
            &out_ok,
            "frame range end 1 is before its start 5",
        ),
    ];
    for (case, blend, frames, output, why) in cases {
        let out = Command::new(BIN)
            .arg("--blend-file")
            .arg(&blend)
            .args(["--frames", frames, "--output", output])
            .arg("--termination-log")
            .arg(dir.join("term"))
            .output()
            .expect("runs");
        assert_eq!(
            out.status.code(),
            Some(exit::BAD_INPUT),
            "{case}: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(why),
            "{case}: stderr lacks {why:?}: {}",
            stderr(&out)
        );
        if case != "bad arguments" {
            let msg = std::fs::read_to_string(dir.join("term"))
                .ok()
                .and_then(|s| TerminationMessage::parse(&s))
                .expect("message");
            assert_eq!(msg.outcome, Outcome::BadInput, "{case}");
            assert!(msg.message.unwrap_or_default().contains(why), "{case}");
        }
    }
}

#[test]
fn frames_outside_the_scene_still_render() {
    // Blender renders frames past the scene's end (the animation holds its last pose);
    // render-node renders what it is asked and verifies the files.
    let dir = workdir("outside");
    let (out, msg) = render(&dir, scene(), "40..41", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(msg.map(|m| m.frames_rendered), Some(2));
}

#[test]
fn missing_gpu_is_bad_input_unless_fallback_is_allowed() {
    let dir = workdir("gpu");
    let (out, msg) = render(&dir, scene(), "1", &["--device", "CUDA"]);
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT), "{}", stderr(&out));
    let msg = msg.expect("message");
    assert!(
        msg.message
            .unwrap_or_default()
            .contains("no CUDA device found")
    );

    let (out, msg) = render(
        &dir,
        scene(),
        "1",
        &["--device", "CUDA", "--allow-cpu-fallback"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("falling back to CPU"),
        "{}",
        stderr(&out)
    );
    assert_eq!(msg.and_then(|m| m.device).as_deref(), Some("CPU"));
}

#[test]
fn sigterm_stops_blender_and_leaves_no_process() {
    let dir = workdir("sigterm");
    let term = dir.join("termination-log");
    let mut child = Command::new(BIN)
        .arg("--blend-file")
        .arg(scene())
        .args(["--frames", "1..12", "--output"])
        .arg(dir.join("out/frame_####"))
        .arg("--termination-log")
        .arg(&term)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // Wait for the first frame to start, then stop the batch as Kubernetes would.
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    while std::io::BufRead::read_line(&mut stdout, &mut line).unwrap_or(0) > 0
        && !line.contains("frame_started")
    {
        line.clear();
    }
    let pid = child.id() as i32;
    // SAFETY: signalling a child we spawned.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let stopped = Instant::now();
    let status = child.wait().expect("wait");
    assert!(
        stopped.elapsed() < Duration::from_secs(10),
        "took {:?}",
        stopped.elapsed()
    );
    assert_eq!(status.code(), Some(exit::TERMINATED));
    let msg = std::fs::read_to_string(&term)
        .ok()
        .and_then(|s| TerminationMessage::parse(&s))
        .expect("message");
    assert_eq!(msg.outcome, Outcome::Terminated);
    // No Blender left rendering this scene.
    let scene_path = scene().display().to_string();
    let left: Vec<String> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&scene_path) && c.contains(&dir.display().to_string()))
        .collect();
    assert!(left.is_empty(), "left running: {left:?}");
}
