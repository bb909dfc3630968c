//! `kubectl render fetch`: the render's frames that are in the claim and not here (or here
//! with another size) come back as a tar stream from a transfer pod.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use render_contract::args::output_file;
use renderfarm_api::crd::RenderJob;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::io::SyncIoBridge;

use crate::cli::{Fetch, Global};
use crate::cluster::Ctx;
use crate::error::{Error, Result};
use crate::pod::{Access, MOUNT, TransferPod, interruptible, lines};
use crate::preview::{self, PreviewStatus, claim_path};
use crate::{frames, progress};

/// The folder of the render's frames in the claim and each frame's file name, in frame order.
pub fn frame_files(rj: &RenderJob) -> (String, Vec<String>) {
    let pattern = rj.output_path();
    let format = rj.spec.output.format;
    let mut dir = String::new();
    let names = frames::frames(&rj.spec.frames)
        .map(|f| {
            let path = output_file(&pattern, f, format);
            let (d, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
            dir = d.to_string();
            name.to_string()
        })
        .collect();
    (dir, names)
}

/// What to fetch.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    pub fetch: Vec<String>,
    pub bytes: u64,
    /// Already here with the same size.
    pub here: usize,
    /// Not in the claim (not rendered yet, or failed).
    pub missing: usize,
}

/// Frames in the claim that are not here with the same size.
pub fn plan(
    expected: &[String],
    remote: &BTreeMap<String, u64>,
    local: &BTreeMap<String, u64>,
) -> Plan {
    let mut p = Plan {
        fetch: Vec::new(),
        bytes: 0,
        here: 0,
        missing: 0,
    };
    for name in expected {
        match (remote.get(name), local.get(name)) {
            (None, _) => p.missing += 1,
            (Some(r), Some(l)) if r == l => p.here += 1,
            (Some(r), _) => {
                p.fetch.push(name.clone());
                p.bytes += r;
            }
        }
    }
    p
}

/// `find -printf '%s %f\n'` lines: file name → size.
pub fn parse_listing(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (size, name) = l.split_once(' ')?;
            Some((name.to_string(), size.parse().ok()?))
        })
        .collect()
}

fn local_sizes(dir: &Path, names: &[String]) -> BTreeMap<String, u64> {
    names
        .iter()
        .filter_map(|n| Some((n.clone(), std::fs::metadata(dir.join(n)).ok()?.len())))
        .collect()
}

const LIST_SCRIPT: &str = r#"cd "$1" 2>/dev/null || exit 0
find . -maxdepth 1 -type f -printf '%s %f\n'"#;
const TAR_SCRIPT: &str = r#"cd "$1" && exec tar -cf - --verbatim-files-from -T -"#;

pub async fn run(global: &Global, args: &Fetch) -> Result<()> {
    let ctx = Ctx::new(global).await?;
    if args.preview {
        return fetch_preview(&ctx, args).await;
    }
    let rj = ctx.renderjob(&args.name).await?;
    let claim = rj.spec.storage.claim_name.clone();
    ctx.check_claim(&claim).await?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let (remote_dir, names) = frame_files(&rj);
    let pod = interruptible(TransferPod::start(&ctx, &claim, &args.transfer)).await?;
    let result = interruptible(fetch(&pod, &remote_dir, &names, &dir)).await;
    pod.delete().await;
    let (plan, secs) = result?;
    let mut line = if plan.fetch.is_empty() {
        format!(
            "nothing to fetch: {} frames already in {}",
            plan.here,
            dir.display()
        )
    } else {
        format!(
            "fetched {} frame{}, {} in {secs:.1}s to {}{}",
            plan.fetch.len(),
            if plan.fetch.len() == 1 { "" } else { "s" },
            progress::bytes(plan.bytes),
            dir.display(),
            if plan.here > 0 {
                format!(" ({} were here already)", plan.here)
            } else {
                String::new()
            }
        )
    };
    if plan.missing > 0 {
        line.push_str(&format!(
            "; {} of {} frames are not rendered yet",
            plan.missing,
            names.len()
        ));
    }
    crate::out!("{line}");
    Ok(())
}

async fn fetch(
    pod: &TransferPod,
    remote_dir: &str,
    names: &[String],
    dir: &Path,
) -> Result<(Plan, f64)> {
    let t = Instant::now();
    let remote_dir = format!("{MOUNT}/{remote_dir}");
    let listing = pod
        .run("listing the frames", LIST_SCRIPT, &[&remote_dir])
        .await?;
    let remote = parse_listing(&lines(&listing).collect::<Vec<_>>().join("\n"));
    let plan = plan(names, &remote, &local_sizes(dir, names));
    if plan.fetch.is_empty() {
        return Ok((plan, 0.0));
    }
    let bar = progress::bytes_bar(plan.bytes, "fetching");
    let mut proc = pod.exec(TAR_SCRIPT, &[&remote_dir], true, true).await?;
    let mut stdin = proc
        .stdin()
        .ok_or_else(|| Error::Kube("exec without stdin".into()))?;
    let stdout = proc
        .stdout()
        .ok_or_else(|| Error::Kube("exec without stdout".into()))?;
    let list: String = plan.fetch.iter().map(|n| format!("{n}\n")).collect();
    let send = async move {
        stdin.write_all(list.as_bytes()).await?;
        stdin.shutdown().await
    };
    let wanted: HashSet<String> = plan.fetch.iter().cloned().collect();
    let (dest, reader_bar) = (dir.to_path_buf(), bar.clone());
    let unpack = tokio::task::spawn_blocking(move || {
        unpack(SyncIoBridge::new(stdout), &dest, &wanted, &reader_bar)
    });
    let (sent, unpacked, finished) =
        tokio::join!(send, unpack, pod.finish("reading the frames", proc));
    finished?;
    sent.map_err(Error::io("sending the frame list"))?;
    let count = unpacked.map_err(|e| Error::Kube(format!("fetch task: {e}")))??;
    bar.finish_and_clear();
    if count != plan.fetch.len() {
        return Err(Error::Remote {
            what: "reading the frames",
            pod: pod.name.clone(),
            reason: format!("{count} of {} frames arrived", plan.fetch.len()),
        });
    }
    Ok((plan, t.elapsed().as_secs_f64()))
}

/// The files of a Ready preview (paths in the claim), or the error that says why there are
/// none.
pub fn preview_files(name: &str, preview: Option<&PreviewStatus>) -> Result<Vec<String>> {
    let not_ready = |state: &str, message: Option<&str>| Error::PreviewNotReady {
        name: name.to_string(),
        state: state.to_string(),
        message: message
            .filter(|m| !m.is_empty())
            .map(|m| format!(": {m}"))
            .unwrap_or_default(),
    };
    let Some(p) = preview else {
        return Err(not_ready("none", Some("its status has no preview")));
    };
    if !p.ready() {
        return Err(not_ready(&p.state, p.message.as_deref()));
    }
    [p.video.as_deref(), p.contact_sheet.as_deref()]
        .into_iter()
        .flatten()
        .map(|f| {
            claim_path(f).map(str::to_string).ok_or_else(|| {
                Error::Usage(format!(
                    "status.preview of {name} names '{f}', not a path in the claim"
                ))
            })
        })
        .collect()
}

async fn fetch_preview(ctx: &Ctx, args: &Fetch) -> Result<()> {
    let render = preview::get(ctx, &args.name).await?;
    let files = preview_files(&args.name, render.preview.as_ref())?;
    let claim = render.rj.spec.storage.claim_name.clone();
    ctx.check_claim(&claim).await?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let pod = interruptible(TransferPod::start_as(
        ctx,
        &claim,
        &args.transfer,
        Access::Reader,
    ))
    .await?;
    let t = Instant::now();
    let result = interruptible(async {
        let mut total = 0;
        let mut names = Vec::new();
        for file in &files {
            total += copy_file(&pod, file, &dir).await?;
            names.push(file.rsplit('/').next().unwrap_or(file).to_string());
        }
        Ok((total, names))
    })
    .await;
    pod.delete().await;
    let (bytes, names) = result?;
    crate::out!(
        "fetched the preview of {}: {}, {} in {:.1}s to {}",
        args.name,
        names.join(" and "),
        progress::bytes(bytes),
        t.elapsed().as_secs_f64(),
        dir.display()
    );
    Ok(())
}

/// Copy one file of the claim into `dir` under its own name (through a `.part` file).
async fn copy_file(pod: &TransferPod, file: &str, dir: &Path) -> Result<u64> {
    let remote = format!("{MOUNT}/{file}");
    let name = file.rsplit('/').next().unwrap_or(file);
    let Some(size) = pod.size(&remote).await? else {
        return Err(Error::Remote {
            what: "reading the preview",
            pod: pod.name.clone(),
            reason: format!("{file} is not in the claim"),
        });
    };
    let bar = progress::bytes_bar(size, name);
    let (proc, mut out) = pod.read(&remote, None).await?;
    let part = dir.join(format!(".{name}.part"));
    let mut local = tokio::fs::File::create(&part)
        .await
        .map_err(Error::io(format!("writing {}", part.display())))?;
    let copy = async {
        let mut buf = vec![0; 256 * 1024];
        let mut n = 0u64;
        loop {
            let got = out
                .read(&mut buf)
                .await
                .map_err(Error::io("reading the preview"))?;
            if got == 0 {
                break;
            }
            local
                .write_all(&buf[..got])
                .await
                .map_err(Error::io(format!("writing {}", part.display())))?;
            n += got as u64;
            bar.inc(got as u64);
        }
        local
            .flush()
            .await
            .map_err(Error::io(format!("writing {}", part.display())))?;
        Ok::<u64, Error>(n)
    };
    let (copied, finished) = tokio::join!(copy, pod.finish("reading the preview", proc));
    bar.finish_and_clear();
    finished?;
    let copied = copied?;
    if copied != size {
        return Err(Error::Remote {
            what: "reading the preview",
            pod: pod.name.clone(),
            reason: format!("{copied} of {size} bytes of {file} arrived"),
        });
    }
    let dest = dir.join(name);
    std::fs::rename(&part, &dest).map_err(Error::io(format!("writing {}", dest.display())))?;
    Ok(size)
}

/// Write each frame of the tar stream next to its final name, then rename it into place.
fn unpack(
    input: impl std::io::Read,
    dir: &Path,
    wanted: &HashSet<String>,
    bar: &indicatif::ProgressBar,
) -> Result<usize> {
    let broken = |e: std::io::Error| Error::Io {
        context: "reading the frames".into(),
        source: e,
    };
    let mut archive = tar::Archive::new(input);
    let mut count = 0;
    for entry in archive.entries().map_err(broken)? {
        let entry = entry.map_err(broken)?;
        let name = entry
            .path()
            .map_err(broken)?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        // Only the plain file names asked for: nothing lands outside `dir`.
        if !wanted.contains(&name) {
            return Err(Error::Usage(format!(
                "unexpected file '{name}' in the stream"
            )));
        }
        let part = dir.join(format!(".{name}.part"));
        let mut out = std::fs::File::create(&part)
            .map_err(Error::io(format!("writing {}", part.display())))?;
        let mut counted = progress::Counted {
            inner: entry,
            bar: bar.clone(),
        };
        std::io::copy(&mut counted, &mut out).map_err(broken)?;
        std::fs::rename(&part, dir.join(&name))
            .map_err(Error::io(format!("writing {}", dir.join(&name).display())))?;
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn frame_names_follow_the_output_pattern() {
        let rj: RenderJob = serde_json::from_value(json!({
            "apiVersion": "renderfarm.io/v1alpha1", "kind": "RenderJob",
            "metadata": {"name": "shot"},
            "spec": {"blendFile": "a.blend", "frames": {"start": 1, "end": 7, "step": 3},
                     "storage": {"claimName": "c"}},
        }))
        .expect("RenderJob");
        let (dir, names) = frame_files(&rj);
        assert_eq!(dir, "renders/shot");
        assert_eq!(
            names,
            ["frame_0001.png", "frame_0004.png", "frame_0007.png"]
        );
    }

    #[test]
    fn preview_files_only_when_ready() {
        let ready = PreviewStatus {
            state: "Ready".into(),
            video: Some("renders/shot/preview.mp4".into()),
            contact_sheet: Some("renders/shot/contact.jpg".into()),
            ..Default::default()
        };
        assert_eq!(
            preview_files("shot", Some(&ready)).expect("ready"),
            ["renders/shot/preview.mp4", "renders/shot/contact.jpg"]
        );
        let running = PreviewStatus {
            state: "Running".into(),
            message: Some("encoding 24 frames".into()),
            ..Default::default()
        };
        let e = preview_files("shot", Some(&running)).expect_err("not ready");
        assert_eq!(
            e.to_string(),
            "the preview of shot is not ready (state Running: encoding 24 frames); it is made once every batch succeeded (kubectl render status shot)"
        );
        assert!(preview_files("shot", None).is_err());
        let outside = PreviewStatus {
            video: Some("../../etc/passwd".into()),
            ..ready
        };
        assert!(preview_files("shot", Some(&outside)).is_err());
    }

    #[test]
    fn fetches_only_frames_missing_here() {
        let expected: Vec<String> = ["a.png", "b.png", "c.png", "d.png"]
            .map(String::from)
            .into();
        let remote = parse_listing("100 a.png\n200 b.png\n300 c.png\n7 unrelated.txt\n");
        let local = BTreeMap::from([("a.png".to_string(), 100), ("b.png".to_string(), 50)]);
        let p = plan(&expected, &remote, &local);
        assert_eq!(
            p.fetch,
            ["b.png", "c.png"],
            "b differs in size, c is not here"
        );
        assert_eq!((p.bytes, p.here, p.missing), (500, 1, 1));
        let all_here = BTreeMap::from([
            ("a.png".to_string(), 100),
            ("b.png".to_string(), 200),
            ("c.png".to_string(), 300),
        ]);
        assert!(plan(&expected, &remote, &all_here).fetch.is_empty());
    }
}
