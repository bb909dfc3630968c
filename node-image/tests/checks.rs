//! Every frame is checked before it counts: a stand-in `--blender` writes a frame cut short,
//! an EXR with NaN, a frame of another size or of one flat colour (once, or every time), and
//! real Blender 4.5 renders frames a wrapper spoils after its first run.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use exr::prelude::{AnyChannel, AnyChannels, FlatSamples, Image, SmallVec, WritableImage};
use render_contract::{FrameChecks, Outcome, TerminationReport, exit};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_render-node");

fn workdir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("render-node-checks-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("out")).expect("work dir");
    std::fs::write(dir.join("scene.blend"), b"BLENDER-v405 stand-in").expect("blend");
    dir
}

/// An RGB PNG `w`×`h`, a gradient (or one colour when `flat`).
fn png_bytes(w: u32, h: u32, flat: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    let mut writer = enc.write_header().expect("png header");
    let data: Vec<u8> = (0..w * h)
        .flat_map(|i| if flat { [9, 9, 9] } else { [i as u8, 40, 90] })
        .collect();
    writer.write_image_data(&data).expect("png data");
    drop(writer);
    out
}

/// An RGBA EXR `w`×`h` whose red channel holds a NaN when `nan`.
fn exr_bytes(w: usize, h: usize, nan: bool) -> Vec<u8> {
    let mut red: Vec<f32> = (0..w * h).map(|i| i as f32 / 10.0).collect();
    if nan {
        red[w + 1] = f32::NAN;
    }
    let list: SmallVec<[AnyChannel<FlatSamples>; 4]> = [
        ("R", red),
        ("G", vec![0.25; w * h]),
        ("B", vec![0.5; w * h]),
        ("A", vec![1.0; w * h]),
    ]
    .into_iter()
    .map(|(n, v)| AnyChannel::new(n, FlatSamples::F32(v)))
    .collect();
    let mut out = std::io::Cursor::new(Vec::new());
    Image::from_channels((w, h), AnyChannels::sort(list))
        .write()
        .to_buffered(&mut out)
        .expect("exr");
    out.into_inner()
}

/// A stand-in Blender that copies `first` as every frame on its first run and `later` on the
/// next ones, saying the scene renders `size`, and counts its runs in `runs`.
fn fake_blender(dir: &Path, ext: &str, first: &[u8], later: &[u8], size: (u32, u32)) -> PathBuf {
    std::fs::write(dir.join(format!("first.{ext}")), first).expect("first");
    std::fs::write(dir.join(format!("later.{ext}")), later).expect("later");
    let d = dir.display();
    let body = format!(
        "echo 'Blender 4.5.15'\necho 'RENDER_NODE:RESOLUTION {w} {h}'\n\
         echo run >> {d}/runs\n\
         if [ \"$(wc -l < {d}/runs)\" -eq 1 ]; then src={d}/first.{ext}; else src={d}/later.{ext}; fi\n\
         for f in 1 2 3; do out={d}/out/f_000$f.{ext}; cp $src $out; echo \"Saved: '$out'\"; done\n",
        w = size.0,
        h = size.1,
    );
    let path = dir.join("blender");
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).expect("script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

fn run(dir: &Path, blender: &Path, extra: &[&str]) -> (Output, TerminationReport, FrameChecks) {
    let out = Command::new(BIN)
        .env("RENDER_NODE_BLENDER_VERSION", "4.5.15")
        .env("RENDER_NODE_FFMPEG", "/nonexistent/ffmpeg")
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
    let text = std::fs::read_to_string(dir.join("term")).unwrap_or_default();
    let report = TerminationReport::parse(&text).unwrap_or_else(|| {
        panic!(
            "no termination message; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, report, FrameChecks::parse(&text))
}

fn runs(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("runs"))
        .unwrap_or_default()
        .lines()
        .count()
}

#[track_caller]
fn assert_bad_frames(out: &Output, r: &TerminationReport, checks: &FrameChecks, why: &str) {
    assert_eq!(
        (out.status.code(), r.message.outcome),
        (Some(exit::BAD_FRAME), Outcome::BadFrame),
        "{r:?}"
    );
    assert_eq!(checks.bad_frames, [1, 2, 3]);
    assert_eq!(r.message.frames_missing, [1, 2, 3]);
    let message = r.message.message.as_deref().unwrap_or("");
    assert!(
        message.starts_with("frames 1,2,3 failed their check rendered twice: frame ")
            && message.contains(why),
        "{message}"
    );
}

#[test]
fn a_png_cut_short_twice_fails_the_batch_as_bad_frame() {
    let dir = workdir("cut");
    let png = png_bytes(16, 9, false);
    let cut = &png[..png.len() - 30];
    let blender = fake_blender(&dir, "png", cut, cut, (16, 9));
    let (out, r, checks) = run(&dir, &blender, &[]);
    assert_bad_frames(
        &out,
        &r,
        &checks,
        "does not decode as PNG (truncated or corrupt)",
    );
    assert_eq!(runs(&dir), 2, "rendered once more, in the same pod");
    assert!(
        !dir.join("out/f_0001.png").exists(),
        "a frame that fails its check must not stay to be skipped"
    );
}

#[test]
fn an_exr_with_nan_twice_fails_the_batch_as_bad_frame() {
    let dir = workdir("nan");
    let nan = exr_bytes(16, 9, true);
    let blender = fake_blender(&dir, "exr", &nan, &nan, (16, 9));
    let (out, r, checks) = run(&dir, &blender, &["--format", "OPEN_EXR"]);
    assert_bad_frames(&out, &r, &checks, "holds 1 NaN or infinite values in R");
    assert_eq!(runs(&dir), 2);
}

#[test]
fn a_frame_of_another_size_twice_fails_the_batch_as_bad_frame() {
    let dir = workdir("size");
    let small = png_bytes(8, 8, false);
    let blender = fake_blender(&dir, "png", &small, &small, (16, 9));
    let (out, r, checks) = run(&dir, &blender, &[]);
    assert_bad_frames(&out, &r, &checks, "is 8x8, the scene renders 16x9");
}

#[test]
fn bad_frames_rendered_again_and_good_count() {
    let dir = workdir("again");
    let png = png_bytes(16, 9, false);
    let blender = fake_blender(&dir, "png", &png[..png.len() / 2], &png, (16, 9));
    // Started ahead-able: its second Blender run finds the ready port open, and says nothing.
    let port = std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
        .to_string();
    let (out, r, checks) = run(&dir, &blender, &["--ready-port", &port]);
    assert_eq!(
        (out.status.code(), r.message.outcome),
        (Some(exit::SUCCESS), Outcome::Succeeded),
        "{r:?}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("cannot listen"), "{stderr}");
    assert_eq!(
        (checks.rerendered_frames, checks.bad_frames),
        (vec![1, 2, 3], vec![])
    );
    assert_eq!(r.message.frames_rendered, 3);
    assert_eq!(runs(&dir), 2);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("frame 2 failed its check: frame ")
            && stdout.contains("; rendering it again"),
        "{stdout}"
    );

    let exr = workdir("again-exr");
    let blender = fake_blender(
        &exr,
        "exr",
        &exr_bytes(16, 9, true),
        &exr_bytes(16, 9, false),
        (16, 9),
    );
    let (out, r, checks) = run(&exr, &blender, &["--format", "OPEN_EXR"]);
    assert_eq!(
        (out.status.code(), checks.rerendered_frames.len()),
        (Some(0), 3),
        "{r:?}"
    );
}

#[test]
fn flat_frames_warn_unless_told_to_fail() {
    let dir = workdir("flat");
    let flat = png_bytes(16, 9, true);
    let blender = fake_blender(&dir, "png", &flat, &flat, (16, 9));
    let (out, r, checks) = run(&dir, &blender, &[]);
    assert_eq!(out.status.code(), Some(exit::SUCCESS), "{r:?}");
    assert_eq!(checks.blank_frames, [1, 2, 3]);
    assert_eq!(
        r.message.message.as_deref(),
        Some("frames 1,2,3 are one flat colour (set spec.verify.blankFrames to Fail to fail them)")
    );
    assert_eq!(runs(&dir), 1);

    let dir = workdir("flat-fail");
    let blender = fake_blender(&dir, "png", &flat, &flat, (16, 9));
    let (out, r, checks) = run(&dir, &blender, &["--blank-frames", "fail"]);
    assert_bad_frames(&out, &r, &checks, "is one flat colour");
}

#[test]
fn frames_on_disk_that_do_not_decode_are_rendered_again() {
    let dir = workdir("skip");
    let png = png_bytes(16, 9, false);
    std::fs::write(dir.join("out/f_0001.png"), &png).expect("good frame");
    std::fs::write(dir.join("out/f_0002.png"), &png[..40]).expect("cut frame");
    let blender = fake_blender(&dir, "png", &png, &png, (16, 9));
    let (out, r, _) = run(&dir, &blender, &[]);
    assert_eq!(out.status.code(), Some(0), "{r:?}");
    let start = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(
        start.contains(r#""to_render":[2,3],"skipped":[1]"#),
        "{start}"
    );
}

/// Real Blender through a wrapper that, after Blender's first run only, cuts frame 2 short
/// and writes NaN into frame 3 (as a full disk and a broken GPU would).
fn spoiling_blender(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("nan.exr"), exr_bytes(160, 90, true)).expect("nan exr");
    let d = dir.display();
    let body = format!(
        "\"{real}\" \"$@\"\ncode=$?\n\
         if [ ! -e {d}/spoiled ]; then touch {d}/spoiled\n\
           head -c 300 {d}/out/f_0002.exr > {d}/cut && mv {d}/cut {d}/out/f_0002.exr\n\
           cp {d}/nan.exr {d}/out/f_0003.exr\nfi\nexit $code\n",
        real = common::blender().display()
    );
    let path = dir.join("spoiling-blender");
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).expect("script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

#[test]
fn real_frames_spoiled_once_are_rendered_again_and_count() {
    let dir = workdir("real");
    let blend = dir.join("scene.blend");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-scene.py");
    let made = Command::new(common::blender())
        .args(["-b", "--factory-startup", "--python"])
        .arg(&script)
        .arg("--")
        .arg(&blend)
        .args(["12", "160", "90", "2"])
        .output()
        .expect("blender runs");
    assert!(
        blend.exists(),
        "no scene: {}",
        String::from_utf8_lossy(&made.stdout)
    );
    let blender = spoiling_blender(&dir);
    let (out, r, checks) = run(&dir, &blender, &["--format", "OPEN_EXR"]);
    assert_eq!(
        (out.status.code(), r.message.outcome),
        (Some(exit::SUCCESS), Outcome::Succeeded),
        "{r:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(checks.rerendered_frames, [2, 3]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("frame 3 failed its check: frame ")
            && stdout.contains("holds 1 NaN or infinite values in R"),
        "{stdout}"
    );
    for f in 1..=3 {
        let path = dir.join(format!("out/f_{f:04}.exr"));
        let image = exr::prelude::read_all_flat_layers_from_file(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(image.layer_data[0].size.0, 160);
    }
}
