//! How render-node ends when Blender misbehaves in ways real Blender does rarely or only under
//! load: exits 0 having rendered nothing, crashes, is killed by the out-of-memory killer, dies
//! mid-write. A stand-in `--blender` script plays Blender here; everything else is real.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use render_contract::{Outcome, TerminationMessage, exit};

const BIN: &str = env!("CARGO_BIN_EXE_render-node");

fn workdir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("render-node-fail-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("out")).expect("work dir");
    std::fs::write(dir.join("scene.blend"), b"BLENDER-v304 stand-in").expect("blend");
    dir
}

/// A whole PNG frame (2×2), as Blender would leave it: frames are decoded before they count.
fn png_frame() -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, 2, 2);
    enc.set_color(png::ColorType::Rgb);
    let mut writer = enc.write_header().expect("png header");
    writer
        .write_image_data(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
        .expect("png data");
    drop(writer);
    out
}

/// A stand-in Blender: a shell script with `body`.
fn fake_blender(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("blender");
    std::fs::write(&path, format!("#!/bin/sh\necho 'Blender 3.4.1'\n{body}\n")).expect("script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

fn run(dir: &Path, blender: &Path, extra: &[&str]) -> (Output, TerminationMessage) {
    let out = Command::new(BIN)
        // As the image says it: the stand-in is not asked (it would play its part for that too).
        .env("RENDER_NODE_BLENDER_VERSION", "3.4.1")
        .arg("--blend-file")
        .arg(dir.join("scene.blend"))
        .args(["--frames", "1..3", "--output"])
        .arg(dir.join("out/f_####"))
        .arg("--termination-log")
        .arg(dir.join("term"))
        .arg("--blender")
        .arg(blender)
        .args(extra)
        .output()
        .expect("render-node runs");
    let msg =
        TerminationMessage::parse(&std::fs::read_to_string(dir.join("term")).unwrap_or_default())
            .unwrap_or_else(|| {
                panic!(
                    "no termination message; stderr: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
    (out, msg)
}

/// The GPU the pod was given is not usable on its node: the node's fault (exit 92, retried on
/// another node), not the scene's, though Blender refused as for bad input.
#[test]
fn a_gpu_not_usable_on_its_node_is_a_node_fault() {
    let dir = workdir("gpu");
    let blender = fake_blender(
        &dir,
        "echo 'RENDER_NODE:GPU_UNUSABLE no CUDA device found on this node'\nexit 64",
    );
    let (out, msg) = run(&dir, &blender, &[]);
    assert_eq!(out.status.code(), Some(exit::NODE_GPU_UNUSABLE));
    assert_eq!(
        msg.message.as_deref(),
        Some("no CUDA device found on this node")
    );
    // The same refusal without the marker is the scene's: bad input.
    let blender = fake_blender(&dir, "echo 'RENDER_NODE:BAD_INPUT no CUDA device'\nexit 64");
    let (out, _) = run(&dir, &blender, &[]);
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT));
}

#[test]
fn exit_0_without_the_frames_is_a_retryable_failure() {
    let dir = workdir("zero");
    let blender = fake_blender(&dir, "exit 0");
    let (out, msg) = run(&dir, &blender, &[]);
    assert_eq!(out.status.code(), Some(exit::RENDER_FAILED));
    assert_eq!(
        (msg.outcome, msg.frames_missing.clone()),
        (Outcome::RenderFailed, vec![1, 2, 3])
    );
    assert_eq!(
        msg.message.as_deref(),
        Some("Blender exited 0 but frames 1,2,3 missing")
    );
    assert_eq!(msg.blender_version.as_deref(), Some("3.4.1"));
}

#[test]
fn a_crash_is_a_node_fault_and_its_partial_file_removed() {
    let dir = workdir("crash");
    let out_dir = dir.join("out").display().to_string();
    std::fs::write(dir.join("frame.png"), png_frame()).expect("frame");
    let frame = dir.join("frame.png").display().to_string();
    // Frame 1 saved, frame 2 half-written when Blender crashes.
    let blender = fake_blender(
        &dir,
        &format!(
            "cp {frame} {out_dir}/f_0001.png\necho \"Saved: '{out_dir}/f_0001.png'\"\necho ' Time: 00:00.50 (Saving: 00:00.01)'\n\
             printf 'pn' > {out_dir}/f_0002.png\nkill -SEGV $$"
        ),
    );
    let (out, msg) = run(&dir, &blender, &[]);
    // Killed by a signal: the node's fault (retried on another node), not the scene's.
    assert_eq!(out.status.code(), Some(exit::NODE_BLENDER_KILLED));
    assert_eq!(
        (msg.outcome, msg.frames_rendered),
        (Outcome::RenderFailed, 1)
    );
    assert_eq!(msg.frames_missing, [2, 3]);
    assert_eq!(msg.seconds_per_frame, Some(0.5));
    assert!(
        msg.message
            .as_deref()
            .unwrap_or("")
            .starts_with("Blender was killed by SIGSEGV"),
        "{msg:?}"
    );
    assert!(
        !dir.join("out/f_0002.png").exists(),
        "the partial frame 2 must go, or a retry would skip it"
    );
    assert!(dir.join("out/f_0001.png").exists());
}

#[test]
fn blender_error_lines_decide_the_class() {
    let dir = workdir("errors");
    let blender = fake_blender(
        &dir,
        "echo \"Error: Cannot read file '/x.blend': No such file or directory\"\nexit 1",
    );
    let (out, msg) = run(&dir, &blender, &[]);
    assert_eq!(
        (out.status.code(), msg.outcome),
        (Some(exit::BAD_INPUT), Outcome::BadInput)
    );
    assert_eq!(
        msg.message.as_deref(),
        Some("Error: Cannot read file '/x.blend': No such file or directory")
    );

    let blender = fake_blender(
        &dir,
        "echo 'Error: CUDA error: Out of memory in cuMemAlloc' >&2\nexit 1",
    );
    let (out, msg) = run(&dir, &blender, &[]);
    assert_eq!(
        (out.status.code(), msg.outcome),
        (Some(exit::RENDER_FAILED), Outcome::RenderFailed)
    );
    assert!(
        msg.message
            .as_deref()
            .unwrap_or("")
            .starts_with("Error: CUDA error: Out of memory"),
        "{msg:?}"
    );
}

#[test]
fn a_missing_blender_is_reported() {
    let dir = workdir("noblender");
    let (out, msg) = run(&dir, &dir.join("no-such-blender"), &[]);
    assert_eq!(out.status.code(), Some(exit::RENDER_FAILED));
    assert!(
        msg.message
            .as_deref()
            .unwrap_or("")
            .starts_with("cannot run Blender"),
        "{msg:?}"
    );
}

#[test]
fn an_unwritable_termination_log_only_warns() {
    let dir = workdir("termlog");
    for f in 1..=3 {
        std::fs::write(dir.join(format!("out/f_{f:04}.png")), png_frame()).expect("frame");
    }
    let out = Command::new(BIN)
        .arg("--blend-file")
        .arg(dir.join("scene.blend"))
        .args(["--frames", "1..3", "--output"])
        .arg(dir.join("out/f_####"))
        .arg("--termination-log")
        .arg(dir.join("scene.blend/term"))
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("warning: cannot write the termination message")
    );
}
