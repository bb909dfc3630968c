//! `kubectl render ui` in a real browser: headless Debian chromium, driven by Playwright
//! (`tests/browser/ui_check.py`), watches a real render on kind through the page: the
//! progress bar advancing, thumbnails loading and changing, then the preview video playable
//! with the render's duration and the contact sheet. Screenshots land in
//! `target/ui-screenshots/`. Needs the kind lane (`hack/kind.sh up`, `eval "$(hack/kind.sh
//! env)"`), Blender here, and `hack/browser.sh` (which this test runs). Run:
//! `cargo test -p kubectl-render --test browser -- --ignored --nocapture`.

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use common::kind::Storage;
use common::{repo_root, text, wait_until};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt as _};
use render_contract::preview::THUMB_WIDTH;
use serde_json::Value;

const NAME: &str = "browser";
/// A render of a scene that is not in the claim: its batches fail.
const BROKEN: &str = "broken";
const FRAMES: i64 = 12;
const READER: &str = "app.kubernetes.io/component=reader";

fn run(mut cmd: Command, what: &str) -> Result<String> {
    let t = Instant::now();
    let out = cmd.output().with_context(|| what.to_string())?;
    let all = text(&out);
    println!(
        "--- {what} ({:.1}s, exit {:?}) ---\n{}",
        t.elapsed().as_secs_f64(),
        out.status.code(),
        all.trim_end()
    );
    ensure!(out.status.success(), "{what} failed: {all}");
    Ok(all)
}

/// Playwright's python, installed by hack/browser.sh.
fn playwright_python() -> Result<String> {
    let out = Command::new(repo_root().join("hack/browser.sh"))
        .stderr(Stdio::inherit())
        .output()
        .context("running hack/browser.sh")?;
    ensure!(out.status.success(), "hack/browser.sh failed");
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

#[tokio::test]
#[ignore = "needs the kind lane and chromium: hack/kind.sh up, hack/browser.sh"]
async fn ui_shows_a_real_render_in_chromium() -> Result<()> {
    let python = playwright_python()?;
    let client = Client::try_default()
        .await
        .context("no cluster: `hack/kind.sh up` and `eval \"$(hack/kind.sh env)\"`")?;
    let st = Storage::new(client.clone()).await?;
    let scene = st.scratch.join("browser.blend");
    let made = common::blender_command()
        .args(["-b", "--factory-startup", "--python"])
        .arg(repo_root().join("node-image/scripts/make-scene.py"))
        .arg("--")
        .arg(&scene)
        .args([FRAMES.to_string(), "160".into(), "90".into(), "8".into()])
        .output()
        .context("running blender")?;
    ensure!(scene.is_file(), "no scene: {}", text(&made));

    // One batch at a time, two frames each: the page sees the bar move several times.
    let scene_arg = scene.to_string_lossy().into_owned();
    run(
        st.plugin(&[
            "submit",
            &scene_arg,
            "--name",
            NAME,
            "--batch",
            "2",
            "--parallelism",
            "1",
        ]),
        "kubectl render submit",
    )?;

    run(
        st.plugin(&[
            "submit",
            "--in-claim",
            "scenes/not-there.blend",
            "--frames",
            "1-2",
            "--batch",
            "1",
            "--backoff-limit",
            "0",
            "--name",
            BROKEN,
        ]),
        "kubectl render submit (a scene not in the claim)",
    )?;

    // Before the frames are done there is no preview to fetch: one line, exit 1.
    let early = st.scratch.join("early");
    let out = st
        .plugin(&["fetch", NAME, &early.to_string_lossy(), "--preview"])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("fetch --preview while rendering: {}", stderr.trim_end());
    ensure!(out.status.code() == Some(1), "exit {:?}", out.status.code());
    ensure!(
        stderr.lines().count() == 1
            && stderr.contains(&format!("the preview of {NAME} is not ready")),
        "{stderr}"
    );

    let mut ui = st
        .plugin(&["ui", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting kubectl render ui")?;
    let mut first = String::new();
    BufReader::new(ui.stdout.take().context("ui stdout")?).read_line(&mut first)?;
    println!("ui: {}", first.trim_end());
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .with_context(|| format!("no URL in {first:?}"))?
        .to_string();

    let shots = repo_root().join("target/ui-screenshots");
    let t = Instant::now();
    let checked = Command::new(&python)
        .arg(repo_root().join("kubectl-render/tests/browser/ui_check.py"))
        .args([&url, NAME, &shots.to_string_lossy(), "900", "300", BROKEN])
        .stderr(Stdio::inherit())
        .output()
        .context("running the browser")?;
    let seen: Value = serde_json::from_slice(&checked.stdout).with_context(|| {
        format!(
            "browser output (exit {:?}): {}",
            checked.status.code(),
            String::from_utf8_lossy(&checked.stdout)
        )
    })?;
    println!(
        "browser ({:.0}s): {}",
        t.elapsed().as_secs_f64(),
        serde_json::to_string_pretty(&seen)?
    );

    // The reader pod: one, the claim mounted read-only.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &st.ns);
    let readers = pods
        .list(&ListParams::default().labels(READER))
        .await?
        .items;
    ensure!(readers.len() == 1, "{} reader pods", readers.len());
    let mounts = readers[0]
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.volume_mounts.clone())
        .unwrap_or_default();
    ensure!(
        mounts
            .iter()
            .any(|m| m.name == "storage" && m.read_only == Some(true)),
        "reader mounts: {mounts:?}"
    );

    // Stop the ui: it deletes its reader pod.
    let pid = ui.id().to_string();
    Command::new("kill").args(["-INT", &pid]).status()?;
    let stopped = ui.wait_with_output()?;
    let ui_err = String::from_utf8_lossy(&stopped.stderr).into_owned();
    println!("ui stderr:\n{}", ui_err.trim_end());
    ensure!(
        stopped.status.success(),
        "ui exit {:?}",
        stopped.status.code()
    );
    ensure!(ui_err.contains("deleted reader pod"), "{ui_err}");
    wait_until(Duration::from_secs(60), "the reader pod gone", || async {
        let left = pods
            .list(&ListParams::default().labels(READER))
            .await?
            .items;
        Ok(left
            .iter()
            .all(|p| p.metadata.deletion_timestamp.is_some())
            .then_some(()))
    })
    .await?;

    // What the browser saw.
    ensure!(
        seen["list_row"].as_str().is_some_and(|r| r.contains(NAME)),
        "list row: {}",
        seen["list_row"]
    );
    let progress: Vec<i64> = seen["progress"]
        .as_array()
        .context("progress")?
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    ensure!(
        progress.windows(2).all(|w| w[0] < w[1]),
        "the bar went back: {progress:?}"
    );
    ensure!(
        progress.last() == Some(&FRAMES),
        "the bar did not reach {FRAMES}: {progress:?}"
    );
    ensure!(
        progress.iter().filter(|&&p| 0 < p && p < FRAMES).count() >= 2,
        "the bar did not advance in steps while rendering: {progress:?}"
    );
    let phases = seen["phases"].as_array().context("phases")?;
    ensure!(
        phases.last().and_then(Value::as_str) == Some("Succeeded"),
        "phases: {phases:?}"
    );
    let thumbs = seen["thumbs"].as_array().context("thumbs")?;
    ensure!(
        thumbs.len() >= 2,
        "the thumbnail did not load and change: {thumbs:?}"
    );
    for t in thumbs {
        ensure!(
            t["naturalWidth"].as_u64() == Some(u64::from(THUMB_WIDTH)),
            "thumbnail {t}"
        );
    }
    let last = &seen["final"];
    let video = &last["video"];
    if video.is_null() {
        bail!("no video on the page: {}", last["note"]);
    }
    ensure!(
        video["readyState"].as_i64().unwrap_or(0) >= 2,
        "video not playable: {video}"
    );
    // The preview's frames at spec.preview.fps (24 by default).
    let want = FRAMES as f64 / 24.0;
    let duration = video["duration"].as_f64().unwrap_or(0.0);
    ensure!(
        (duration - want).abs() < 0.5 / 24.0 + 0.01,
        "video duration {duration}s, want {want}s"
    );
    ensure!(
        last["contact"].as_u64().unwrap_or(0) > 0,
        "contact sheet: {last}"
    );

    // The failed render: both batches failed, each with a reason and its pod's last lines.
    let failed = seen["failed"].as_array().context("failed")?;
    ensure!(failed.len() == 2, "failed batches on the page: {failed:?}");
    for f in failed {
        let (text, log) = (
            f["text"].as_str().unwrap_or_default(),
            f["log"].as_str().unwrap_or_default(),
        );
        ensure!(
            text.contains("BadInput") && text.contains("not-there.blend"),
            "{f}"
        );
        ensure!(!log.trim().is_empty(), "no log tail: {f}");
    }
    ensure!(
        seen["failed_cells"] == serde_json::json!(["Failed", "Failed"]),
        "{}",
        seen["failed_cells"]
    );

    // fetch --preview: the two files, as the claim has them.
    let dir = st.scratch.join("preview");
    let out = run(
        st.plugin(&["fetch", NAME, &dir.to_string_lossy(), "--preview"]),
        "kubectl render fetch --preview",
    )?;
    ensure!(out.contains("preview.mp4 and contact.jpg"), "{out}");
    for f in ["preview.mp4", "contact.jpg"] {
        ensure!(
            std::fs::read(dir.join(f))?
                == std::fs::read(st.dir.join("renders").join(NAME).join(f))?,
            "{f} differs from the claim's"
        );
    }
    for r in readers {
        println!("reader pod was {}", r.name_any());
    }
    Ok(())
}
