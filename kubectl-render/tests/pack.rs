//! `--pack` with blender-asset-tracer: a scene whose texture lives outside its folder is packed
//! into a self-contained tree; that tree, moved elsewhere (as into the render claim), renders
//! with the texture, while the bare .blend moved alone renders Blender's missing-texture
//! magenta. Needs Blender and `bat` on PATH (`pip install blender-asset-tracer`). Run:
//! `cargo test -p kubectl-render --test pack -- --ignored --nocapture`.

use std::path::Path;

use anyhow::{Context as _, Result, ensure};
use common::{blender, png_mean, textured_scene};
use kubectl_render::pack;

mod common;

/// Render frame 1 of `blend` and return the mean (r, g, b) of the image, 0..255.
fn render_mean(blend: &Path, out: &Path) -> Result<(f64, f64, f64)> {
    let pattern = out.join("f_#");
    let log = blender(&[
        &blend.to_string_lossy(),
        "-o",
        &pattern.to_string_lossy(),
        "-F",
        "PNG",
        "-f",
        "1",
    ])?;
    let png = out.join("f_1.png");
    ensure!(png.is_file(), "no frame: {log}");
    let mean = png_mean(&png)?;
    std::fs::remove_file(&png)?;
    Ok(mean)
}

#[test]
#[ignore = "needs blender-asset-tracer: pip install blender-asset-tracer"]
fn packed_scene_renders_with_its_texture_elsewhere() -> Result<()> {
    let root =
        std::env::temp_dir().join(format!("kubectl-render-pack-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let blend = textured_scene(&root.join("src"))?;

    let packed = pack::pack(&blend)?;
    let rels: Vec<&str> = packed
        .bundle
        .entries
        .iter()
        .map(|e| e.rel.as_str())
        .collect();
    println!("pack: {rels:?}");
    ensure!(rels.contains(&"scene.blend"), "{rels:?}");
    ensure!(
        rels.iter().any(|r| r.ends_with("green.png")),
        "no texture in the pack: {rels:?}"
    );
    ensure!(packed.bundle.blend_path().ends_with("/scene.blend"));

    // Somewhere the original folders are not: the pack alone, and the bare .blend alone.
    let claim = root.join("claim");
    let pack_dir = claim.join("packed");
    for e in &packed.bundle.entries {
        let to = pack_dir.join(&e.rel);
        std::fs::create_dir_all(to.parent().context("parent")?)?;
        std::fs::copy(&e.local, &to)?;
    }
    let bare = claim.join("bare");
    std::fs::create_dir_all(&bare)?;
    std::fs::copy(&blend, bare.join("scene.blend"))?;
    std::fs::remove_dir_all(root.join("src"))?;

    let (r, g, b) = render_mean(&pack_dir.join("scene.blend"), &claim)?;
    println!("packed scene: mean rgb {r:.0} {g:.0} {b:.0}");
    ensure!(
        g > 150.0 && r < 60.0 && b < 60.0,
        "packed scene is not green: {r} {g} {b}"
    );
    let (r, g, b) = render_mean(&bare.join("scene.blend"), &claim)?;
    println!("bare scene: mean rgb {r:.0} {g:.0} {b:.0}");
    ensure!(
        r > 150.0 && b > 150.0 && g < 60.0,
        "bare scene is not missing-texture magenta: {r} {g} {b}"
    );
    drop(packed);
    std::fs::remove_dir_all(&root)?;
    Ok(())
}
