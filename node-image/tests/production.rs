//! What renders, chosen by name, with real Blender 4.5 on a scene file the test makes
//! (`tests/scenes/production.py`: scenes Shot and Alt, cameras CamGreen and CamRed, view
//! layers Beauty and RedOnly). Pixel checks: every object glows in one pure colour.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use render_contract::{FrameChecks, Outcome, TerminationReport, exit};
use renderfarm_testkit::frame::{Frame, decode_png};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_render-node");

fn workdir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "render-node-production-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("tmp")).expect("work dir");
    dir
}

/// The scene file, made once per test binary.
fn scene() -> &'static Path {
    static SCENE: OnceLock<PathBuf> = OnceLock::new();
    SCENE.get_or_init(|| {
        let dir = workdir("scene");
        let blend = dir.join("production.blend");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenes/production.py");
        let out = Command::new(common::blender())
            .env("TMPDIR", dir.join("tmp"))
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
            .output()
            .expect("blender runs");
        assert!(
            out.status.success() && blend.exists(),
            "production.py failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        blend
    })
}

/// Render frames 1..2 of the scene file with `extra` arguments into a folder of its own.
fn render(name: &str, extra: &[&str]) -> (PathBuf, Output, TerminationReport, FrameChecks) {
    let dir = workdir(name);
    let out = Command::new(BIN)
        .env("TMPDIR", dir.join("tmp"))
        .env("RENDER_NODE_BLENDER_VERSION", "4.5.15")
        .arg("--blender")
        .arg(common::blender())
        .arg("--blend-file")
        .arg(scene())
        .args(["--frames", "1..2", "--output"])
        .arg(dir.join("out/f_####"))
        .arg("--termination-log")
        .arg(dir.join("term"))
        .args(extra)
        .output()
        .expect("render-node runs");
    let text = std::fs::read_to_string(dir.join("term")).unwrap_or_default();
    let report = TerminationReport::parse(&text).unwrap_or_else(|| {
        panic!(
            "no termination message: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (dir, out, report, FrameChecks::parse(&text))
}

#[track_caller]
fn succeeded(out: &Output, r: &TerminationReport) {
    assert_eq!(
        (out.status.code(), r.message.outcome),
        (Some(exit::SUCCESS), Outcome::Succeeded),
        "{r:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[track_caller]
fn frame(dir: &Path) -> Frame {
    decode_png(&dir.join("out/f_0001.png")).unwrap_or_else(|e| panic!("{e:#}"))
}

/// How many pixels are mostly `channel` (0 red, 1 green, 2 blue).
fn pixels_of(f: &Frame, channel: usize) -> usize {
    f.rgb
        .iter()
        .filter(|px| px[channel] > 200 && (0..3).all(|c| c == channel || px[c] < 60))
        .count()
}

#[test]
fn cameras_by_name_see_different_things() {
    let (green_dir, out, r, _) = render("cam-green", &["--camera", "CamGreen"]);
    succeeded(&out, &r);
    let (red_dir, out, r, _) = render(
        "cam-red",
        &["--camera", "CamRed", "--view-layer", "RedOnly"],
    );
    succeeded(&out, &r);
    let (green, red) = (frame(&green_dir), frame(&red_dir));
    let all = (green.width * green.height) as usize;
    assert_eq!((green.width, green.height), (64, 36));
    assert!(
        pixels_of(&green, 1) > all * 9 / 10,
        "CamGreen sees the green plane: {:?}",
        green.mean()
    );
    assert_eq!(pixels_of(&green, 0), 0, "CamGreen sees no red");
    assert!(
        pixels_of(&red, 0) > all * 9 / 10,
        "CamRed sees the red cube: {:?}",
        red.mean()
    );
    assert_eq!(pixels_of(&red, 1), 0, "CamRed sees no green");
}

#[test]
fn a_view_layer_renders_only_its_collections() {
    // CamRed (the scene's camera) looks at the red cube; Beauty (the file's rendered layer)
    // excludes it, RedOnly holds only it.
    let (beauty_dir, out, r, checks) = render("layer-beauty", &[]);
    succeeded(&out, &r);
    let (red_dir, out, r, _) = render("layer-red", &["--view-layer", "RedOnly"]);
    succeeded(&out, &r);
    let (beauty, red) = (frame(&beauty_dir), frame(&red_dir));
    let all = (red.width * red.height) as usize;
    assert!(
        pixels_of(&red, 0) > all * 9 / 10,
        "RedOnly shows the cube: {:?}",
        red.mean()
    );
    assert_eq!(
        pixels_of(&beauty, 0),
        0,
        "Beauty shows no red: {:?}",
        beauty.mean()
    );
    // Beauty through CamRed is black (dithered): a warning, not a failure.
    assert_eq!(checks.blank_frames, [1, 2]);
}

#[test]
fn another_scene_by_name() {
    let (dir, out, r, _) = render("scene-alt", &["--scene", "Alt"]);
    succeeded(&out, &r);
    let f = frame(&dir);
    assert!(
        pixels_of(&f, 2) > (f.width * f.height) as usize * 9 / 10,
        "scene Alt is a blue plane: {:?}",
        f.mean()
    );
}

#[test]
fn unknown_names_are_bad_input_listing_the_files_names() {
    for (args, says) in [
        (
            &["--scene", "Nope"][..],
            "scene 'Nope' is not in the file; its scenes: 'Alt', 'Shot'",
        ),
        (
            &["--camera", "AltCam"][..],
            "camera 'AltCam' is not in scene 'Shot'; its cameras: 'CamGreen', 'CamRed'",
        ),
        (
            &[
                "--scene",
                "Shot",
                "--view-layer",
                "Beauty",
                "--view-layer",
                "Shadow",
            ][..],
            "view layers 'Shadow' are not in scene 'Shot'; its view layers: 'Beauty', 'RedOnly'",
        ),
    ] {
        let (dir, out, r, _) = render("unknown", args);
        assert_eq!(
            (
                out.status.code(),
                r.message.outcome,
                r.message.message.as_deref()
            ),
            (Some(exit::BAD_INPUT), Outcome::BadInput, Some(says)),
            "{args:?}"
        );
        assert!(!dir.join("out/f_0001.png").exists());
    }
}

/// The EXR's channel names.
fn channels(path: &Path) -> Vec<String> {
    let image = exr::prelude::read_all_flat_layers_from_file(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    image.layer_data[0]
        .channel_data
        .list
        .iter()
        .map(|c| c.name.to_string())
        .collect()
}

#[test]
fn multilayer_exr_holds_the_passes_each_view_layer_enables() {
    let (dir, out, r, checks) = render(
        "multilayer",
        &[
            "--format",
            "OPEN_EXR_MULTILAYER",
            "--view-layer",
            "Beauty",
            "--view-layer",
            "RedOnly",
        ],
    );
    succeeded(&out, &r);
    let names = channels(&dir.join("out/f_0001.exr"));
    for want in [
        "Beauty.Combined.R",
        "Beauty.Depth.Z",
        "Beauty.Normal.X",
        "RedOnly.Combined.R",
        "RedOnly.Mist.Z",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    assert!(
        !names.iter().any(|n| n.starts_with("RedOnly.Normal")),
        "{names:?}"
    );
    for pass in [
        "Beauty.Combined",
        "Beauty.Depth",
        "Beauty.Normal",
        "RedOnly.Mist",
    ] {
        assert!(
            checks.passes.iter().any(|p| p == pass),
            "{pass} not reported: {:?}",
            checks.passes
        );
    }
    // The thumbnail comes from a Combined pass.
    assert!(
        dir.join("out/.thumbs/f_0001.jpg").exists()
            || std::env::var_os("RENDER_NODE_FFMPEG").is_some()
    );
}
