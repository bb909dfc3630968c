//! The .blend reader against files real Blender writes (4.5 and 5.0 from PyPI's bpy, as the
//! node images have them; `hack/blender.sh 4.5 5.0` installs them). Without them these tests
//! fail, saying so.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

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

/// Save a scene with Blender after running `python` on it, uncompressed.
fn save(out: &Path, python: &str) -> Result<()> {
    save_with(common::blender_command(), out, python, Some(false))
}

/// Save a scene with `blender`: `compress` as asked, or (None) as that Blender saves by default.
fn save_with(mut blender: Command, out: &Path, python: &str, compress: Option<bool>) -> Result<()> {
    let compress = match compress {
        Some(true) => ", compress=True",
        Some(false) => ", compress=False",
        None => "",
    };
    let script = format!(
        "import bpy\nbpy.ops.wm.read_factory_settings(use_empty=True)\nscene = bpy.context.scene\n{python}\nbpy.ops.wm.save_as_mainfile(filepath={out:?}{compress})\n"
    );
    let status = blender
        .args(["-b", "--factory-startup", "--python-expr", &script])
        .output()
        .with_context(|| format!("running {blender:?} (hack/blender.sh 4.5 5.0 installs it)"))?;
    ensure!(
        out.is_file(),
        "blender wrote no file: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    Ok(())
}

/// The `blender` of a series `hack/blender.sh` installs (`5.0`).
fn blender_of(series: &str) -> Result<Command> {
    let out = Command::new(common::repo_root().join("hack/blender.sh"))
        .args(["path", series])
        .output()
        .context("running hack/blender.sh path")?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    ensure!(
        path.is_file(),
        "no Blender {series} at {}: `hack/blender.sh {series}` installs it",
        path.display()
    );
    Ok(Command::new(path))
}

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

fn starts_with_zstd(path: &Path) -> Result<bool> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(bytes.starts_with(&ZSTD_MAGIC))
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
    blender_frame_range_with(common::blender_command(), file)
}

fn blender_frame_range_with(mut blender: Command, file: &Path) -> Result<(i32, i32)> {
    let out = blender
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

/// Blender 5.0 saves zstd-compressed by default: the settings come out of that file as they do
/// out of the same scene saved uncompressed, and match what Blender 5.0 opens it with.
#[test]
fn reads_a_scene_blender_5_0_saved_as_it_saves_by_default() -> Result<()> {
    let dir = scratch("blender5")?;
    let python = "scene.frame_start = 11\nscene.frame_end = 35\nscene.frame_step = 4\n\
                  scene.render.fps = 25\nscene.render.resolution_x = 320\n\
                  scene.render.resolution_y = 180\nscene.render.engine = 'CYCLES'\n\
                  scene.render.image_settings.file_format = 'OPEN_EXR'";
    let (packed, plain) = (dir.join("default.blend"), dir.join("plain.blend"));
    save_with(blender_of("5.0")?, &packed, python, None)?;
    save_with(blender_of("5.0")?, &plain, python, Some(false))?;
    ensure!(
        starts_with_zstd(&packed)?,
        "Blender 5.0 no longer saves zstd by default: {}",
        packed.display()
    );
    let info = blend::read(&packed)?.map_err(anyhow::Error::msg)?;
    assert_eq!(info.version, "5.0");
    assert_eq!(info.compression, Some("zstd"));
    assert_eq!(
        (info.frame_start, info.frame_end, info.frame_step),
        (11, 35, 4)
    );
    assert_eq!(info.fps, Some(25.0));
    assert_eq!(info.resolution, Some((320, 180, 100)));
    assert_eq!(info.render_engine(), Some(Engine::Cycles));
    assert_eq!(info.output_format(), Some(OutputFormat::OpenExr));
    let uncompressed = blend::read(&plain)?.map_err(anyhow::Error::msg)?;
    assert_eq!(uncompressed.compression, None);
    assert_eq!(
        blend::SceneInfo {
            compression: Some("zstd"),
            ..uncompressed
        },
        info
    );
    let blender = blender_frame_range_with(blender_of("5.0")?, &packed)?;
    assert_eq!((info.frame_start, info.frame_end), blender);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// A scene large enough that Blender 5.0 writes it as many zstd frames (its file is a series of
/// frames and a seek table): every frame is read, up to the blocks at the end.
#[test]
fn reads_a_large_compressed_blender_5_0_scene() -> Result<()> {
    let dir = scratch("blender5-large")?;
    let out = dir.join("large.blend");
    save_with(
        blender_of("5.0")?,
        &out,
        "scene.frame_start = 2\nscene.frame_end = 9\nfor i in range(24):\n    \
         bpy.ops.mesh.primitive_uv_sphere_add(segments=64, ring_count=32, location=(i, 0, 0))",
        None,
    )?;
    let size = std::fs::metadata(&out)?.len();
    let info = blend::read(&out)?.map_err(anyhow::Error::msg)?;
    assert_eq!(
        (info.compression, info.version.as_str()),
        (Some("zstd"), "5.0")
    );
    assert_eq!((info.frame_start, info.frame_end), (2, 9), "{size} bytes");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// Blender 4.5 compresses with zstd when asked (3.0 on): read the same way.
#[test]
fn reads_a_scene_blender_4_5_saved_compressed() -> Result<()> {
    let dir = scratch("blender45-compressed")?;
    let out = dir.join("compressed.blend");
    save_with(
        common::blender_command(),
        &out,
        "scene.frame_start = 5\nscene.frame_end = 6",
        Some(true),
    )?;
    ensure!(starts_with_zstd(&out)?, "not zstd: {}", out.display());
    let info = blend::read(&out)?.map_err(anyhow::Error::msg)?;
    assert_eq!(
        (info.compression, info.version.as_str()),
        (Some("zstd"), "4.5")
    );
    assert_eq!((info.frame_start, info.frame_end), (5, 6));
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// An uncompressed file compressed here with zstd as one frame (not as Blender splits it), and
/// with gzip as Blender before 3.0 did: the same settings come out.
#[test]
fn reads_a_blender_file_compressed_here() -> Result<()> {
    let dir = scratch("compressed-here")?;
    let plain = dir.join("plain.blend");
    save(&plain, "scene.frame_start = 3\nscene.frame_end = 30")?;
    let bytes = std::fs::read(&plain)?;
    let zstd =
        ruzstd::encoding::compress_to_vec(&bytes[..], ruzstd::encoding::CompressionLevel::Fastest);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &bytes)?;
    let gzip = gz.finish()?;
    let want = blend::parse(&bytes).map_err(anyhow::Error::msg)?;
    for (format, file) in [("zstd", zstd), ("gzip", gzip)] {
        let info = blend::parse(&file).map_err(anyhow::Error::msg)?;
        assert_eq!(info.compression, Some(format));
        assert_eq!(
            blend::SceneInfo {
                compression: None,
                ..info
            },
            want,
            "{format}"
        );
    }
    assert_eq!((want.frame_start, want.frame_end), (3, 30));
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
