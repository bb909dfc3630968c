//! `submit --list`'s names, read from files real Blender 4.5 and 5.0 (zstd-compressed) save:
//! the scene file of render-node's production tests (`node-image/tests/scenes/production.py`:
//! scenes Shot and Alt, cameras CamGreen and CamRed, view layers Beauty and RedOnly).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, ensure};
use kubectl_render::blend::names::{self, SceneNames};

fn blender(series: &str) -> Result<Command> {
    let out = Command::new(common::repo_root().join("hack/blender.sh"))
        .args(["path", series])
        .output()
        .context("running hack/blender.sh path")?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    ensure!(
        path.is_file(),
        "no Blender {series}: `hack/blender.sh {series}` installs it"
    );
    Ok(Command::new(path))
}

fn production(series: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "kubectl-render-scenes-{series}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)?;
    let out = dir.join("production.blend");
    let script = common::repo_root().join("node-image/tests/scenes/production.py");
    let run = blender(series)?
        .args([
            "-b",
            "--factory-startup",
            "--python-exit-code",
            "1",
            "--python",
        ])
        .arg(&script)
        .arg("--")
        .arg(&out)
        .output()?;
    ensure!(
        out.is_file(),
        "production.py wrote nothing: {}",
        String::from_utf8_lossy(&run.stdout)
    );
    Ok(out)
}

fn read(path: &Path) -> Result<Vec<SceneNames>> {
    Ok(names::scenes(&std::fs::read(path)?)?)
}

fn check(scenes: &[SceneNames]) {
    let shot = scenes
        .iter()
        .find(|s| s.name == "Shot")
        .expect("scene Shot");
    let alt = scenes.iter().find(|s| s.name == "Alt").expect("scene Alt");
    assert_eq!(scenes.len(), 2, "{scenes:?}");
    assert!(shot.active && !alt.active);
    assert_eq!(shot.cameras, ["CamGreen", "CamRed"]);
    assert_eq!(shot.camera.as_deref(), Some("CamRed"));
    assert_eq!(
        shot.view_layers,
        [("Beauty".to_string(), true), ("RedOnly".to_string(), false)]
    );
    assert_eq!(
        (alt.cameras.as_slice(), alt.camera.as_deref()),
        (&["AltCam".to_string()][..], Some("AltCam"))
    );
}

#[test]
fn scenes_cameras_and_view_layers_of_a_4_5_file() -> Result<()> {
    check(&read(&production("4.5")?)?);
    Ok(())
}

#[test]
fn scenes_cameras_and_view_layers_of_a_compressed_5_0_file() -> Result<()> {
    let path = production("5.0")?;
    let scenes = read(&path)?;
    check(&scenes);
    Ok(())
}

#[test]
fn submit_list_prints_them_without_a_cluster() -> Result<()> {
    let path = production("4.5")?;
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-render"))
        .env("KUBECONFIG", "/nonexistent")
        .args(["submit", "--list"])
        .arg(&path)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("scene \"Shot\"  (active)\n  cameras:     \"CamGreen\", \"CamRed\" *\n  view layers: \"Beauty\" *, \"RedOnly\"\n"),
        "{text}"
    );
    Ok(())
}
