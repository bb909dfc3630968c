//! `kubectl render submit`: check everything that can be checked here, upload the scene
//! (unless the claim has it), create the RenderJob, and optionally watch it.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use kube::api::PostParams;
use renderfarm_api::crd::{FrameRange, RenderJob};
use serde_json::json;

use crate::blend::{self, SceneInfo};
use crate::cli::{Global, Submit};
use crate::cluster::{API_VERSION, Ctx};
use crate::error::{Error, Result, api_status};
use crate::pod::{TransferPod, interruptible};
use crate::upload::{self, Bundle};
use crate::{frames, pack, progress, watch};

/// A scene file given on the command line, and its settings when they could be read.
type Scene = (PathBuf, std::result::Result<SceneInfo, blend::BlendError>);

pub async fn run(global: &Global, args: &Submit) -> Result<()> {
    if args.list {
        return crate::choose::list(args);
    }
    // Everything local first: a bad file or range fails before any cluster call.
    let scene = match &args.scene {
        Some(path) => Some(read_scene(path)?),
        None => None,
    };
    let info = scene.as_ref().and_then(|(_, i)| i.as_ref().ok());
    if let Some((path, _)) = &scene {
        crate::choose::check(args, path)?;
    }
    let range = frame_range(args, scene.as_ref())?;
    let name = render_name(args)?;
    check_name(&name)?;
    if args.batch < 1 || args.parallelism < 1 {
        return Err(Error::Usage(
            "--batch and --parallelism must be at least 1".into(),
        ));
    }
    if let Some(i) = info {
        crate::out!("{}", describe(i));
    }

    let ctx = Ctx::new(global).await?;
    check_cluster(&ctx, args, &name).await?;
    let blend_file = blend_file(&ctx, args, scene.as_ref()).await?;
    let rj = renderjob(&name, &blend_file, &range, args, info)?;
    create(&ctx, &rj, &name).await?;
    let count = frames::frames(&range).count() as i32;
    let batches = (count + args.batch - 1) / args.batch;
    crate::out!(
        "renderjob.renderfarm.io/{name} created: frames {} ({count} frame{}) in {batches} batch{} of {}, {} at a time",
        frames::display(&range),
        if count == 1 { "" } else { "s" },
        if batches == 1 { "" } else { "es" },
        args.batch,
        args.parallelism,
    );
    if args.watch {
        watch::follow(&ctx, &name, false, false).await
    } else {
        crate::out!("follow it: kubectl render watch {name}");
        Ok(())
    }
}

/// `--frames`, else the scene's own range.
fn frame_range(args: &Submit, scene: Option<&Scene>) -> Result<FrameRange> {
    let info = scene.and_then(|(_, i)| i.as_ref().ok());
    match (&args.frames, info) {
        (Some(f), _) => frames::parse(f),
        (None, Some(i)) => frames::parse(&format!(
            "{}-{}:{}",
            i.frame_start, i.frame_end, i.frame_step
        )),
        (None, None) => {
            let why = match scene.map(|(_, i)| i) {
                Some(Err(e)) => format!(" (the scene's range could not be read: {e})"),
                _ => String::new(),
            };
            Err(Error::Usage(format!("pass --frames START-END{why}")))
        }
    }
}

/// `--name`, else one made from the scene's file name.
fn render_name(args: &Submit) -> Result<String> {
    match (&args.name, &args.scene, &args.in_claim) {
        (Some(n), _, _) => Ok(n.clone()),
        (None, Some(p), _) => Ok(default_name(p)),
        (None, None, Some(p)) => Ok(default_name(Path::new(p))),
        (None, None, None) => Err(Error::Usage("pass SCENE.blend or --in-claim".into())),
    }
}

/// renderfarm is installed, the name is free and the claim is there.
async fn check_cluster(ctx: &Ctx, args: &Submit, name: &str) -> Result<()> {
    ctx.check_crd().await?;
    if ctx
        .rjs()
        .get_opt(name)
        .await
        .map_err(|e| ctx.unreachable(e))?
        .is_some()
    {
        return Err(name_taken(ctx, name));
    }
    ctx.check_claim(&args.claim).await?;
    Ok(())
}

/// The scene's path in the claim: uploaded (packed with `--pack`) or, with `--in-claim`,
/// already there.
async fn blend_file(ctx: &Ctx, args: &Submit, scene: Option<&Scene>) -> Result<String> {
    match (scene, &args.in_claim) {
        (Some((path, _)), _) => {
            let (bundle, _tmp) = if args.pack {
                let packed = pack::pack(path)?;
                (packed.bundle.clone(), Some(packed))
            } else {
                (Bundle::file(path)?, None)
            };
            send(ctx, args, &bundle).await?;
            Ok(bundle.blend_path())
        }
        (None, Some(p)) => Ok(p.trim_start_matches("./").to_string()),
        (None, None) => Err(Error::Usage("pass SCENE.blend or --in-claim".into())),
    }
}

/// Create the RenderJob; the API server's refusal said as the user's error.
async fn create(ctx: &Ctx, rj: &RenderJob, name: &str) -> Result<()> {
    match ctx.rjs().create(&PostParams::default(), rj).await {
        Ok(_) => Ok(()),
        Err(e) => match api_status(&e) {
            Some((409, _, _)) => Err(name_taken(ctx, name)),
            Some((422, _, msg)) | Some((400, _, msg)) => Err(Error::Invalid(msg.to_string())),
            _ => Err(ctx.unreachable(e)),
        },
    }
}

/// The path and, when readable, the scene's settings; an unreadable or foreign file fails.
fn read_scene(path: &Path) -> Result<Scene> {
    let unreadable = |reason: String| Error::BlendUnreadable {
        path: path.to_path_buf(),
        reason,
    };
    let mut head = [0u8; 12];
    let mut file = std::fs::File::open(path).map_err(|e| unreadable(e.to_string()))?;
    if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        return Err(unreadable("it is a directory".into()));
    }
    let n = file
        .read(&mut head)
        .map_err(|e| unreadable(e.to_string()))?;
    if !blend::looks_like_blend(&head[..n]) {
        return Err(unreadable("not a .blend file (no BLENDER header)".into()));
    }
    let info = blend::read(path).map_err(|e| unreadable(e.to_string()))?;
    Ok((path.to_path_buf(), info))
}

fn describe(i: &SceneInfo) -> String {
    // Compressed files are read as well as plain ones; saying so shows which was read.
    let compressed = i
        .compression
        .map(|c| format!(", {c}-compressed"))
        .unwrap_or_default();
    let mut out = format!(
        "scene (Blender {}{compressed}): frames {}-{}",
        i.version, i.frame_start, i.frame_end
    );
    if i.frame_step > 1 {
        out.push_str(&format!(":{}", i.frame_step));
    }
    if let Some(fps) = i.fps {
        out.push_str(&format!(", {fps:.3} fps").replace(".000 fps", " fps"));
    }
    if let Some((x, y, p)) = i.resolution {
        out.push_str(&format!(", {x}x{y}"));
        if p != 100 {
            out.push_str(&format!(" at {p}%"));
        }
    }
    if let Some(e) = &i.engine {
        out.push_str(&format!(", {e}"));
    }
    if let Some(f) = i.output_format() {
        out.push_str(&format!(", {}", f.as_str()));
    }
    out
}

async fn send(ctx: &Ctx, args: &Submit, bundle: &Bundle) -> Result<()> {
    let t = Instant::now();
    let size = progress::bytes(bundle.bytes());
    crate::out!(
        "scene {} ({size}, sha256 {}) -> {}:{}",
        bundle.blend,
        &bundle.digest[..16],
        args.claim,
        bundle.blend_path()
    );
    let pod = interruptible(TransferPod::start(ctx, &args.claim, &args.transfer)).await?;
    let bar = progress::bytes_bar(bundle.bytes(), "uploading");
    let result = interruptible(upload::upload(&pod, bundle, bar)).await;
    pod.delete().await;
    let report = result?;
    if report.files == 0 {
        crate::out!("already in {} (same SHA-256): nothing uploaded", args.claim);
    } else {
        crate::out!(
            "uploaded {} file{}, {} in {:.1}s{}",
            report.files,
            if report.files == 1 { "" } else { "s" },
            progress::bytes(report.bytes),
            t.elapsed().as_secs_f64(),
            if report.skipped > 0 {
                format!(" ({} already there)", report.skipped)
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

fn renderjob(
    name: &str,
    blend_file: &str,
    range: &FrameRange,
    args: &Submit,
    info: Option<&SceneInfo>,
) -> Result<RenderJob> {
    let format = args
        .format
        .or_else(|| info.and_then(SceneInfo::output_format))
        .unwrap_or_default();
    let engine = args
        .engine
        .or_else(|| info.and_then(SceneInfo::render_engine))
        .unwrap_or_default();
    let mut spec = json!({
        "blendFile": blend_file,
        "frames": range,
        "batchSize": args.batch,
        "parallelism": args.parallelism,
        "output": {"format": format},
        "engine": engine,
        "device": args.device.unwrap_or_default(),
        "storage": {"claimName": args.claim},
    });
    if let Some(b) = args.backoff_limit {
        spec["backoffLimit"] = json!(b);
    }
    if let Some(v) = &args.blender {
        spec["blenderVersion"] = json!(v);
    }
    crate::choose::add_to_spec(&mut spec, args);
    serde_json::from_value(json!({
        "apiVersion": API_VERSION, "kind": "RenderJob",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/created-by": "kubectl-render"}},
        "spec": spec,
    }))
    .map_err(|e| Error::Usage(format!("building the RenderJob: {e}")))
}

fn name_taken(ctx: &Ctx, name: &str) -> Error {
    Error::NameTaken {
        name: name.to_string(),
        namespace: ctx.namespace.clone(),
    }
}

/// The file name without `.blend`, as a Kubernetes name: `My Shot_01.blend` → `my-shot-01`.
pub fn default_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut out = String::new();
    for c in stem.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out: String = out.trim_matches('-').chars().take(63).collect();
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() { "render".into() } else { out }
}

/// RenderJob names are DNS subdomains; batch Job names derive from them.
fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "'{name}' is not a valid name: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_file_names() {
        assert_eq!(default_name(Path::new("/x/My Shot_01.blend")), "my-shot-01");
        assert_eq!(default_name(Path::new("shot.blend")), "shot");
        assert_eq!(default_name(Path::new("__.blend")), "render");
        assert_eq!(
            default_name(Path::new(&format!("{}.blend", "a".repeat(80)))).len(),
            63
        );
        assert!(check_name("shot-01").is_ok());
        assert!(check_name("Shot").is_err());
        assert!(check_name("-shot").is_err());
        assert!(check_name("").is_err());
    }

    #[test]
    fn a_compressed_scene_is_described_as_such() {
        let info = SceneInfo {
            version: "5.0".into(),
            compression: Some("zstd"),
            frame_start: 1,
            frame_end: 8,
            frame_step: 1,
            fps: Some(24.0),
            resolution: Some((160, 90, 100)),
            engine: Some("CYCLES".into()),
            image_type: Some(17),
        };
        assert_eq!(
            describe(&info),
            "scene (Blender 5.0, zstd-compressed): frames 1-8, 24 fps, 160x90, CYCLES, PNG"
        );
        let plain = SceneInfo {
            compression: None,
            ..info
        };
        assert!(describe(&plain).starts_with("scene (Blender 5.0): frames 1-8"));
    }

    #[test]
    fn the_renderjob_carries_the_blender_version_asked_for() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from([
            "kubectl-render",
            "submit",
            "shot.blend",
            "--frames",
            "1-10",
            "--blender",
            "5.0",
        ])
        .expect("arguments");
        let crate::cli::Command::Submit(args) = cli.command else {
            panic!("not submit");
        };
        let range = FrameRange {
            start: 1,
            end: 10,
            step: 1,
            list: vec![],
        };
        let rj = renderjob("shot", "scenes/x/shot.blend", &range, &args, None).expect("rj");
        assert_eq!(rj.spec.blender_version.as_deref(), Some("5.0"));
        assert_eq!((rj.spec.frames.start, rj.spec.frames.end), (1, 10));
    }
}
