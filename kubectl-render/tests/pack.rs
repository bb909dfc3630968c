//! `--pack` with blender-asset-tracer: a scene whose texture lives outside its folder is packed
//! into a self-contained tree; that tree, moved elsewhere (as into the render claim), renders
//! with the texture, while the bare .blend moved alone renders Blender's missing-texture
//! magenta. Needs Blender and `bat` on PATH (`pip install blender-asset-tracer`). Run:
//! `cargo test -p kubectl-render --test pack -- --ignored --nocapture`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, ensure};
use kubectl_render::pack;

fn blender(args: &[&str]) -> Result<String> {
    let out = Command::new("blender")
        .args(["-b", "--factory-startup"])
        .args(args)
        .output()
        .context("running blender")?;
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// A pure-green texture in `textures/`, and `project/scene.blend` showing it on a plane that
/// fills the camera, with an emission shader so the colour is the texture's.
fn make_scene(root: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(root.join("textures"))?;
    std::fs::create_dir_all(root.join("project"))?;
    let tex = root.join("textures/green.png");
    let blend = root.join("project/scene.blend");
    let script = format!(
        r#"
import bpy
bpy.ops.wm.read_factory_settings(use_empty=True)
img = bpy.data.images.new("green", 8, 8)
img.pixels = [0.0, 1.0, 0.0, 1.0] * 64
img.filepath_raw = {tex:?}
img.file_format = "PNG"
img.save()
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.samples = 1
scene.cycles.use_denoising = False
scene.render.resolution_x = 32
scene.render.resolution_y = 32
scene.frame_start = 1
scene.frame_end = 1
bpy.ops.mesh.primitive_plane_add(size=4)
plane = bpy.context.active_object
mat = bpy.data.materials.new("tex")
mat.use_nodes = True
nodes = mat.node_tree.nodes
for n in list(nodes):
    nodes.remove(n)
out = nodes.new("ShaderNodeOutputMaterial")
emit = nodes.new("ShaderNodeEmission")
image = nodes.new("ShaderNodeTexImage")
image.image = bpy.data.images.load({tex:?})
mat.node_tree.links.new(image.outputs["Color"], emit.inputs["Color"])
mat.node_tree.links.new(emit.outputs["Emission"], out.inputs["Surface"])
plane.data.materials.append(mat)
bpy.ops.object.camera_add(location=(0, 0, 3))
scene.camera = bpy.context.active_object
bpy.ops.wm.save_as_mainfile(filepath={blend:?}, relative_remap=True, compress=False)
"#
    );
    let log = blender(&["--python-expr", &script])?;
    ensure!(blend.is_file(), "no scene: {log}");
    Ok(blend)
}

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
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png)?));
    let mut reader = decoder.read_info()?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf)?;
    let channels = info.color_type.samples();
    let px = &buf[..info.buffer_size()];
    let n = (px.len() / channels) as f64;
    let mean = |c: usize| px.chunks(channels).map(|p| f64::from(p[c])).sum::<f64>() / n;
    std::fs::remove_file(&png)?;
    Ok((mean(0), mean(1), mean(2)))
}

#[test]
#[ignore = "needs blender-asset-tracer: pip install blender-asset-tracer"]
fn packed_scene_renders_with_its_texture_elsewhere() -> Result<()> {
    let root =
        std::env::temp_dir().join(format!("kubectl-render-pack-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let blend = make_scene(&root.join("src"))?;

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
