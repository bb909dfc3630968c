//! The .blend reader against files real Blender writes (4.5 from PyPI's bpy, as the node
//! image has it; `hack/blender.sh` installs it).

mod common;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, ensure};
use kubectl_render::blend;
use render_contract::{Engine, OutputFormat};

fn scratch(name: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "kubectl-render-blend-{name}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Save a scene with Blender after running `python` on it.
fn save(out: &Path, python: &str) -> Result<()> {
    let script = format!(
        "import bpy\nbpy.ops.wm.read_factory_settings(use_empty=True)\nscene = bpy.context.scene\n{python}\nbpy.ops.wm.save_as_mainfile(filepath={out:?}, compress=False)\n"
    );
    let status = common::blender_command()
        .args(["-b", "--factory-startup", "--python-expr", &script])
        .output()
        .context("running blender (hack/blender.sh installs it)")?;
    ensure!(
        out.is_file(),
        "blender wrote no file: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    Ok(())
}

#[test]
fn reads_the_scene_settings_blender_saved() -> Result<()> {
    let dir = scratch("settings")?;
    let out = dir.join("settings.blend");
    save(
        &out,
        "scene.frame_start = 3\nscene.frame_end = 17\nscene.frame_step = 2\n\
         scene.render.fps = 30\nscene.render.fps_base = 1.001\n\
         scene.render.resolution_x = 640\nscene.render.resolution_y = 360\n\
         scene.render.resolution_percentage = 50\n\
         scene.render.engine = 'BLENDER_WORKBENCH'\n\
         scene.render.image_settings.file_format = 'JPEG'",
    )?;
    let info = blend::read(&out)?.map_err(anyhow::Error::msg)?;
    assert_eq!(
        (info.frame_start, info.frame_end, info.frame_step),
        (3, 17, 2)
    );
    assert_eq!(info.resolution, Some((640, 360, 50)));
    let fps = info.fps.context("fps")?;
    assert!((fps - 29.97).abs() < 0.01, "fps {fps}");
    assert_eq!(info.engine.as_deref(), Some("BLENDER_WORKBENCH"));
    assert_eq!(info.render_engine(), Some(Engine::BlenderWorkbench));
    assert_eq!(info.output_format(), Some(OutputFormat::Jpeg));
    assert!(
        info.version.starts_with(|c: char| c.is_ascii_digit()),
        "{}",
        info.version
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// The frame range Blender itself reports for the file's active scene when it opens it.
fn blender_frame_range(file: &Path) -> Result<(i32, i32)> {
    let out = common::blender_command()
        .arg("-b")
        .arg(file)
        .args([
            "--python-expr",
            "import bpy; s = bpy.context.scene; print('RANGE', s.frame_start, s.frame_end)",
        ])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("RANGE "))
        .context("blender printed no range")?;
    let mut it = line.split_whitespace().map(str::parse::<i32>);
    Ok((it.next().context("start")??, it.next().context("end")??))
}

#[test]
fn reads_the_scene_blender_opens_of_several() -> Result<()> {
    let dir = scratch("scenes")?;
    let out = dir.join("scenes.blend");
    // The second scene is made the window's scene, which Blender opens the file with.
    save(
        &out,
        "scene.frame_end = 10\nother = bpy.data.scenes.new('Other')\nother.frame_start = 100\n\
         other.frame_end = 140\nfor w in bpy.context.window_manager.windows:\n    w.scene = other",
    )?;
    let info = blend::read(&out)?.map_err(anyhow::Error::msg)?;
    let blender = blender_frame_range(&out)?;
    assert_eq!((info.frame_start, info.frame_end), blender);
    assert!([(1, 10), (100, 140)].contains(&blender), "{blender:?}");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn png_and_cycles_are_the_defaults_of_a_new_scene() -> Result<()> {
    let dir = scratch("defaults")?;
    let out = dir.join("defaults.blend");
    save(&out, "scene.render.engine = 'CYCLES'")?;
    let info = blend::read(&out)?.map_err(anyhow::Error::msg)?;
    assert_eq!(
        (info.frame_start, info.frame_end, info.frame_step),
        (1, 250, 1)
    );
    assert_eq!(info.fps, Some(24.0));
    assert_eq!(info.render_engine(), Some(Engine::Cycles));
    assert_eq!(info.output_format(), Some(OutputFormat::Png));
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
