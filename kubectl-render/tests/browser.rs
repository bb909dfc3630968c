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

/// The namespace of the stand-in API server's RenderJobs.
const LAYOUT_NS: &str = "studio";
/// Window widths the list must fit: a laptop's, and a narrow window.
const WIDTHS: [u32; 2] = [1280, 800];

/// `kubectl render ui` against a stand-in API server (no cluster) that lists two RenderJobs,
/// one named with 253 characters and nothing to break them at: in chromium at 1280 and 800 px,
/// every column of its row (phase and progress among them) stays inside the window, the name is
/// cut with the whole of it in its title, and the page does not scroll sideways; the render's
/// own page wraps its title. Screenshots: `target/ui-screenshots/*-long-name-*.png`. Run:
/// `cargo test -p kubectl-render --test browser -- --ignored --nocapture long_names`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and Playwright: hack/browser.sh (the test runs it)"]
async fn long_names_keep_the_list_columns_on_screen_in_chromium() -> Result<()> {
    let python = tokio::task::spawn_blocking(playwright_python).await??;
    let name = format!("long-{}", "a".repeat(248));
    ensure!(name.len() == 253, "{} characters", name.len());
    let server = fake_api_server(vec![
        fake_renderjob(&name, "Running", 5),
        fake_renderjob("demo", "Succeeded", 12),
    ])
    .await?;
    let dir = std::env::temp_dir().join(format!("kubectl-render-layout-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, fake_kubeconfig(&server)?)?;
    // Blocking reads and waits off the runtime: the stand-in API server answers on it.
    let (ui, url) = tokio::task::spawn_blocking(move || {
        let mut cmd = common::plugin();
        cmd.arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["-n", LAYOUT_NS]);
        common::start_ui(cmd)
    })
    .await??;
    let shots = repo_root().join("target/ui-screenshots");
    let mut browser = Command::new(&python);
    browser
        .arg(repo_root().join("kubectl-render/tests/browser/layout_check.py"))
        .args([url.as_str(), name.as_str(), &shots.to_string_lossy()])
        .args(WIDTHS.map(|w| w.to_string()))
        .stderr(Stdio::inherit());
    let checked = tokio::task::spawn_blocking(move || browser.output()).await?;
    let ui_err = tokio::task::spawn_blocking(move || stop_ui(ui)).await??;
    let _ = std::fs::remove_dir_all(&dir);
    let checked = checked.context("running the browser")?;
    let seen: Value = serde_json::from_slice(&checked.stdout).with_context(|| {
        format!(
            "browser output (exit {:?}): {}\nui stderr: {ui_err}",
            checked.status.code(),
            String::from_utf8_lossy(&checked.stdout)
        )
    })?;
    println!("browser: {}", serde_json::to_string_pretty(&seen)?);
    for width in WIDTHS {
        let at = &seen["widths"][width.to_string()];
        check_list(&at["list"], width, &name)?;
        check_render_page(&at["render"], width)?;
    }
    Ok(())
}

/// A RenderJob as the API server lists it: `rendered` of 12 frames, one batch of 4 failed.
fn fake_renderjob(name: &str, phase: &str, rendered: i64) -> Value {
    serde_json::json!({
        "apiVersion": "renderfarm.io/v1alpha1", "kind": "RenderJob",
        "metadata": {"name": name, "namespace": LAYOUT_NS, "uid": format!("uid-{}", name.len()),
                     "resourceVersion": "1", "generation": 1},
        "spec": {"blendFile": "scenes/shot.blend", "frames": {"start": 1, "end": 12},
                 "batchSize": 3, "storage": {"claimName": "render-storage"}},
        "status": {"phase": phase, "frames": {"total": 12, "rendered": rendered},
                   "batches": {"total": 4, "pending": 1, "active": 1, "succeeded": 1,
                               "failed": 1}},
    })
}

fn json_reply(code: axum::http::StatusCode, body: &Value) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let json = [(axum::http::header::CONTENT_TYPE, "application/json")];
    (code, json, body.to_string()).into_response()
}

/// An API server that answers only what the ui's pages ask (renderfarm's API group, the
/// RenderJobs, their batch Jobs: none) from `renders`, and 404 to anything else (the reader
/// pod the render page would start). Returns its URL.
async fn fake_api_server(renders: Vec<Value>) -> Result<String> {
    use axum::extract::Path;
    use axum::http::StatusCode;
    use axum::routing::get;
    let resources = serde_json::json!({
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "renderfarm.io/v1alpha1",
        "resources": [{"name": "renderjobs", "singularName": "renderjob", "namespaced": true,
                       "kind": "RenderJob", "verbs": ["get", "list", "watch"]}],
    });
    let list = serde_json::json!({
        "apiVersion": "renderfarm.io/v1alpha1", "kind": "RenderJobList",
        "metadata": {"resourceVersion": "1"}, "items": renders,
    });
    let jobs = serde_json::json!({
        "apiVersion": "batch/v1", "kind": "JobList", "metadata": {"resourceVersion": "1"},
        "items": [],
    });
    let not_found = |what: &str| {
        serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                           "status": "Failure", "reason": "NotFound", "code": 404,
                           "message": format!("{what} not found")})
    };
    let one = {
        let list = list.clone();
        move |Path((_, name)): Path<(String, String)>| async move {
            match list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["metadata"]["name"].as_str() == Some(name.as_str()))
            {
                Some(rj) => json_reply(StatusCode::OK, rj),
                None => json_reply(StatusCode::NOT_FOUND, &not_found(&name)),
            }
        }
    };
    let group = "/apis/renderfarm.io/v1alpha1";
    let app = axum::Router::new()
        .route(
            group,
            get(move || async move { json_reply(StatusCode::OK, &resources) }),
        )
        .route(
            &format!("{group}/namespaces/{{ns}}/renderjobs"),
            get(move || async move { json_reply(StatusCode::OK, &list) }),
        )
        .route(
            &format!("{group}/namespaces/{{ns}}/renderjobs/{{name}}"),
            get(one),
        )
        .route(
            "/apis/batch/v1/namespaces/{ns}/jobs",
            get(move || async move { json_reply(StatusCode::OK, &jobs) }),
        )
        .fallback(move |uri: axum::http::Uri| async move {
            json_reply(StatusCode::NOT_FOUND, &not_found(uri.path()))
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("the stand-in API server stopped: {e}");
        }
    });
    Ok(format!("http://{addr}"))
}

/// A kubeconfig for `server`, in [`LAYOUT_NS`], without credentials.
fn fake_kubeconfig(server: &str) -> Result<String> {
    Ok(serde_yaml::to_string(&serde_json::json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": server}}],
        "users": [{"name": "fake", "user": {}}],
        "contexts": [{"name": "fake",
                      "context": {"cluster": "fake", "user": "fake", "namespace": LAYOUT_NS}}],
        "current-context": "fake",
    }))?)
}

/// Stops the ui as Ctrl-C does; its stderr.
fn stop_ui(ui: std::process::Child) -> Result<String> {
    Command::new("kill")
        .args(["-INT", &ui.id().to_string()])
        .status()?;
    let out = ui.wait_with_output()?;
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The list at `width` px: every cell of the long-named row inside the window, the page not
/// wider than the window, the name cut and whole in its title.
fn check_list(list: &Value, width: u32, name: &str) -> Result<()> {
    ensure!(
        list["error"].as_str() == Some(""),
        "{width} px: the page could not fetch its rows: {list}"
    );
    let window = list["clientWidth"].as_f64().context("clientWidth")?;
    let cells = list["cells"]
        .as_array()
        .with_context(|| format!("{width} px: no row for the long name: {list}"))?;
    let columns = list["columns"].as_array().context("columns")?;
    ensure!(cells.len() == columns.len(), "{width} px: {list}");
    for (cell, column) in cells.iter().zip(columns) {
        let (left, right) = (
            cell["left"].as_f64().unwrap_or(f64::NAN),
            cell["right"].as_f64().unwrap_or(f64::NAN),
        );
        ensure!(
            left >= 0.0 && right <= window + 0.5,
            "{width} px: the {column} column spans {left:.0}..{right:.0} px, outside the \
             {window:.0} px window"
        );
    }
    let cell_width = |i: usize| cells[i]["width"].as_f64().unwrap_or(0.0);
    ensure!(
        cell_width(2) >= 160.0,
        "{width} px: the progress column is {:.0} px wide",
        cell_width(2)
    );
    ensure!(
        cell_width(0) >= 64.0,
        "{width} px: the name column is {:.0} px wide",
        cell_width(0)
    );
    let scroll = list["scrollWidth"].as_f64().unwrap_or(f64::NAN);
    ensure!(
        scroll <= window,
        "{width} px: the page scrolls sideways ({scroll:.0} px wide in a {window:.0} px window)"
    );
    ensure!(
        list["title"].as_str() == Some(name),
        "{width} px: the link's title is not the whole name: {}",
        list["title"]
    );
    ensure!(
        list["cut"] == Value::Bool(true),
        "{width} px: the name is not cut: {list}"
    );
    Ok(())
}

/// The render's own page at `width` px: its title wraps inside the window.
fn check_render_page(render: &Value, width: u32) -> Result<()> {
    let window = render["clientWidth"].as_f64().context("clientWidth")?;
    let right = render["title"]["right"].as_f64().unwrap_or(f64::NAN);
    let scroll = render["scrollWidth"].as_f64().unwrap_or(f64::NAN);
    ensure!(
        right <= window + 0.5 && scroll <= window,
        "{width} px: the render page's title ends at {right:.0} px and the page is \
         {scroll:.0} px wide, in a {window:.0} px window"
    );
    Ok(())
}
