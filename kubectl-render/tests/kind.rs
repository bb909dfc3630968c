//! The plugin against real pods: a scene made here with Blender goes up through a transfer
//! pod, renders on kind, and its frames come back here. Needs the kind lane (`hack/kind.sh
//! up`, `eval "$(hack/kind.sh env)"`) and Blender on this machine. Run:
//! `cargo test -p kubectl-render --test kind -- --ignored --nocapture`.
//! `RENDERFARM_KIND_STORAGE` names the folder kind-config.yaml mounts at /renders when the
//! cluster was made from another checkout.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, Result, bail, ensure};
use common::kind::Storage;
use common::{png_mean, repo_root, text, textured_scene};
use kube::Client;
use renderfarm_testkit::frame::check_png;
use sha2::{Digest as _, Sha256};

const FRAMES: u32 = 6;
const WIDTH: u32 = 160;
const HEIGHT: u32 = 90;

fn sha256(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn run(mut cmd: Command, what: &str) -> Result<(String, f64)> {
    let t = Instant::now();
    let out = cmd.output().with_context(|| what.to_string())?;
    let secs = t.elapsed().as_secs_f64();
    let all = text(&out);
    println!(
        "--- {what} ({secs:.1}s, exit {:?}) ---\n{}",
        out.status.code(),
        all.trim_end()
    );
    ensure!(out.status.success(), "{what} failed: {all}");
    Ok((all, secs))
}

#[tokio::test]
#[ignore = "needs the kind lane: hack/kind.sh up"]
async fn submit_watch_fetch_real_frames() -> Result<()> {
    let client = Client::try_default()
        .await
        .context("no cluster: `hack/kind.sh up` and `eval \"$(hack/kind.sh env)\"`")?;
    let st = Storage::new(client).await?;

    // The scene, made here: the claim has never seen it.
    let scene = st.scratch.join("plugin.blend");
    let made = common::blender_command()
        .args(["-b", "--factory-startup", "--python"])
        .arg(repo_root().join("node-image/scripts/make-scene.py"))
        .arg("--")
        .arg(&scene)
        .args([
            FRAMES.to_string(),
            WIDTH.to_string(),
            HEIGHT.to_string(),
            "4".into(),
        ])
        .output()
        .context("running blender (hack/deps.sh blender installs it)")?;
    ensure!(scene.is_file(), "no scene: {}", text(&made));
    let digest = sha256(&scene)?;
    let in_claim = st
        .dir
        .join("scenes")
        .join(&digest[..16])
        .join("plugin.blend");
    ensure!(!in_claim.exists(), "the scene is in the claim already");

    // Submit without --frames: the range comes from the scene (1-6).
    let scene_arg = scene.to_string_lossy().into_owned();
    let (out, submit_secs) = run(
        st.plugin(&[
            "submit",
            &scene_arg,
            "--batch",
            "2",
            "--parallelism",
            "2",
            "--watch",
        ]),
        "kubectl render submit --watch",
    )?;
    ensure!(out.contains("scene (Blender "), "{out}");
    ensure!(out.contains(&format!("frames 1-{FRAMES}")), "{out}");
    ensure!(out.contains("uploaded 1 file"), "{out}");
    ensure!(
        out.contains("renderjob.renderfarm.io/plugin created: frames 1-6 (6 frames) in 3 batches of 2, 2 at a time"),
        "{out}"
    );
    ensure!(out.contains("plugin Succeeded: 6/6 frames in "), "{out}");
    ensure!(sha256(&in_claim)? == digest, "the claim's copy differs");
    let uploaded = std::fs::metadata(&in_claim)?;

    // Fetch: every frame, byte for byte what the pods wrote.
    let frames = st.scratch.join("frames");
    let frames_arg = frames.to_string_lossy().into_owned();
    let (out, fetch_secs) = run(
        st.plugin(&["fetch", "plugin", &frames_arg]),
        "kubectl render fetch",
    )?;
    ensure!(out.contains("fetched 6 frames"), "{out}");
    let mut names: Vec<String> = std::fs::read_dir(&frames)?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_>>()?;
    names.sort();
    let want: Vec<String> = (1..=FRAMES).map(|n| format!("frame_{n:04}.png")).collect();
    ensure!(names == want, "frames here: {names:?}");
    for name in &names {
        check_png(&frames.join(name), WIDTH, HEIGHT)?;
        let pods_wrote = st.dir.join("renders/plugin").join(name);
        ensure!(
            std::fs::read(frames.join(name))? == std::fs::read(&pods_wrote)?,
            "{name} differs from the claim's"
        );
    }

    // Only what is missing comes again.
    let (out, _) = run(st.plugin(&["fetch", "plugin", &frames_arg]), "fetch again")?;
    ensure!(
        out.contains("nothing to fetch: 6 frames already in"),
        "{out}"
    );
    std::fs::remove_file(frames.join("frame_0003.png"))?;
    let (out, _) = run(
        st.plugin(&["fetch", "plugin", &frames_arg]),
        "fetch after losing a frame",
    )?;
    ensure!(
        out.contains("fetched 1 frame, ") && out.contains("(5 were here already)"),
        "{out}"
    );
    check_png(&frames.join("frame_0003.png"), WIDTH, HEIGHT)?;

    // The same file again: nothing is uploaded, the claim's copy is untouched.
    let (out, _) = run(
        st.plugin(&[
            "submit",
            &scene_arg,
            "--name",
            "plugin-again",
            "--frames",
            "1-1",
        ]),
        "second submit of the same file",
    )?;
    ensure!(
        out.contains("already in render-storage (same SHA-256): nothing uploaded"),
        "{out}"
    );
    ensure!(!out.contains("uploaded 1 file"), "{out}");
    let again = std::fs::metadata(&in_claim)?;
    ensure!(
        again.modified()? == uploaded.modified()?,
        "the claim's copy was written again"
    );
    {
        use std::os::unix::fs::MetadataExt as _;
        ensure!(
            again.ino() == uploaded.ino(),
            "the claim's copy was replaced"
        );
    }
    let (out, _) = run(
        st.plugin(&["delete", "plugin-again"]),
        "kubectl render delete",
    )?;
    ensure!(
        out.contains("renderjob.renderfarm.io/plugin-again deleted"),
        "{out}"
    );

    // What the pods said, through the plugin.
    let (out, _) = run(
        st.plugin(&["logs", "plugin", "--batch", "1"]),
        "kubectl render logs --batch 1",
    )?;
    ensure!(out.contains(r#""event":"frame_saved","frame":3"#), "{out}");
    let (out, _) = run(st.plugin(&["status", "plugin"]), "kubectl render status")?;
    ensure!(out.contains("Phase:        Succeeded"), "{out}");
    ensure!(out.contains("devices CPU"), "{out}");
    ensure!(out.contains("RenderComplete"), "{out}");

    println!(
        "kind: submit (upload, render {FRAMES} frames {WIDTH}x{HEIGHT}, watch) {submit_secs:.1}s; fetch {fetch_secs:.1}s"
    );
    Ok(())
}

/// Where render-node in a batch pod looks for the texture of [`textured_scene`] sent bare.
/// Blender saves the scene's paths relative to it: `project/scene.blend` uses
/// `//../textures/green.png`. Sent bare, the .blend alone lands in `scenes/<its SHA-256, 16
/// hex digits>/` of the claim, mounted at `/data` (the RenderJob's default), and render-node
/// lists the missing path normalised (node-image/src/prepare.py), without that folder.
const BARE_TEXTURE: &str = "/data/scenes/textures/green.png";

/// `--pack` on real pods: a scene whose texture lives outside its folder renders with the
/// texture when packed; sent bare, the batch fails as bad input naming the missing texture
/// before any frame (render-node checks a scene's external files: `missingFiles: Fail`).
#[tokio::test]
#[ignore = "needs the kind lane and blender-asset-tracer's bat: hack/kind.sh up"]
async fn packed_scene_renders_with_its_texture_on_kind() -> Result<()> {
    let client = Client::try_default()
        .await
        .context("no cluster: `hack/kind.sh up` and `eval \"$(hack/kind.sh env)\"`")?;
    let st = Storage::new(client).await?;
    let blend = textured_scene(&st.scratch.join("src"))?;
    let blend = blend.to_string_lossy().into_owned();
    let out = st
        .plugin(&["submit", &blend, "--name", "bare", "--watch"])
        .output()?;
    let bare = text(&out);
    println!(
        "--- submit bare (exit {:?}) ---\n{}",
        out.status.code(),
        bare.trim_end()
    );
    match out.status.code() {
        Some(2) => {}
        Some(0) => bail!(
            "the bare scene rendered without its texture {BARE_TEXTURE}: no missing-files check \
             failed it (render-node's default is missingFiles: Fail, exit 2):\n{bare}"
        ),
        other => {
            bail!("submit bare exited {other:?}, want 2 (a batch failed as bad input): {bare}")
        }
    }
    let failed = bare
        .lines()
        .find(|l| l.contains("FAILED batch 0 (frames 1): BadInput"))
        .with_context(|| format!("no `FAILED batch 0 (frames 1): BadInput` line: {bare}"))?;
    ensure!(
        failed.contains(&format!("image {BARE_TEXTURE}")),
        "the bad input is not the missing texture image {BARE_TEXTURE}: {failed}"
    );

    let (out, secs) = run(
        st.plugin(&["submit", &blend, "--name", "packed", "--pack", "--watch"]),
        "submit --pack",
    )?;
    ensure!(out.contains("packed 3 files"), "{out}");
    ensure!(out.contains("uploaded 3 files"), "{out}");
    ensure!(out.contains("packed Succeeded: 1/1 frames"), "{out}");
    let dir = st.scratch.join("packed");
    let dir_arg = dir.to_string_lossy().into_owned();
    run(st.plugin(&["fetch", "packed", &dir_arg]), "fetch packed")?;
    let (r, g, b) = png_mean(&dir.join("frame_0001.png"))?;
    println!("kind: packed scene rendered mean rgb {r:.0} {g:.0} {b:.0} ({secs:.1}s)");
    ensure!(
        g > 150.0 && r < 60.0 && b < 60.0,
        "packed scene is not green: {r} {g} {b}"
    );
    Ok(())
}

/// A scene Blender 5.0 saved as it saves by default (zstd-compressed), with its own frame range
/// 3-6, submitted without `--frames` and with `--blender 5.0`: the plugin reads the range
/// through the compression, and the render on the chart's 5.0 image (`hack/kind.sh up` builds
/// it) Succeeds with those four frames, not blank.
#[tokio::test]
#[ignore = "needs the kind lane (hack/kind.sh up, with its 5.0 image) and hack/blender.sh 5.0"]
async fn a_compressed_blender_5_0_scene_renders_its_own_frame_range() -> Result<()> {
    use anyhow::{Context as _, ensure};
    let client = kube::Client::try_default()
        .await
        .context("no cluster: `hack/kind.sh up` and `eval \"$(hack/kind.sh env)\"`")?;
    let st = common::kind::Storage::new(client.clone()).await?;
    let out = std::process::Command::new(common::repo_root().join("hack/blender.sh"))
        .args(["path", "5.0"])
        .output()?;
    let blender = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // make-scene.py's range starts at 1: the expression moves it and saves again, as Blender 5.0
    // saves by default.
    let scene = st.scratch.join("five.blend");
    let made = std::process::Command::new(&blender)
        .args(["-b", "--factory-startup", "--python"])
        .arg(common::repo_root().join("node-image/scripts/make-scene.py"))
        .args(["--python-expr", "import bpy; s = bpy.context.scene; s.frame_start = 3; s.frame_end = 6; bpy.ops.wm.save_mainfile()"])
        .arg("--")
        .arg(&scene)
        .args(["6".to_string(), WIDTH.to_string(), HEIGHT.to_string(), "4".into()])
        .output()
        .with_context(|| format!("running {blender:?} (hack/blender.sh 5.0 installs it)"))?;
    ensure!(scene.is_file(), "no scene: {}", common::text(&made));
    ensure!(
        std::fs::read(&scene)?.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]),
        "Blender 5.0 saved {} uncompressed",
        scene.display()
    );

    let scene_arg = scene.to_string_lossy().into_owned();
    let (out, secs) = run(
        st.plugin(&[
            "submit",
            &scene_arg,
            "--blender",
            "5.0",
            "--batch",
            "2",
            "--parallelism",
            "2",
            "--watch",
        ]),
        "kubectl render submit (a compressed Blender 5.0 scene) --watch",
    )?;
    ensure!(
        out.contains("scene (Blender 5.0, zstd-compressed): frames 3-6"),
        "{out}"
    );
    ensure!(
        out.contains("renderjob.renderfarm.io/five created: frames 3-6 (4 frames) in 2 batches of 2, 2 at a time"),
        "{out}"
    );
    ensure!(out.contains("five Succeeded: 4/4 frames in "), "{out}");
    for n in 3..=6 {
        let png = st.dir.join(format!("renders/five/frame_{n:04}.png"));
        renderfarm_testkit::frame::check_png(&png, WIDTH, HEIGHT)?;
    }
    let rjs: kube::Api<renderfarm_api::crd::RenderJob> = kube::Api::namespaced(client, &st.ns);
    let s = rjs.get("five").await?.status.context("no status")?;
    ensure!(s.file_version.as_deref() == Some("5.0"), "{s:?}");
    ensure!(
        s.blender_version
            .as_deref()
            .is_some_and(|v| v == "5.0" || v.starts_with("5.0.")),
        "{s:?}"
    );
    println!(
        "kind: a compressed Blender 5.0 scene, its frames 3-6, submitted and rendered in {secs:.1}s"
    );
    Ok(())
}
