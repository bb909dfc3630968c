//! The plugin on the local control plane (`hack/cluster.sh up`, kwok nodes), with the real
//! operator: the watch display in a real terminal (tmux) and as plain lines, `retry` after a
//! batch fails, the management verbs, and the errors a user meets. Run:
//! `cargo test -p kubectl-render --test kwok -- --ignored --nocapture`.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use common::{Env, text, wait_until};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt as _;
use kube::api::ListParams;
use serde_json::json;

const MINUTE: Duration = Duration::from_secs(60);

/// The main bar's `N/TOTAL frames` on a captured screen.
fn frames_on_screen(screen: &str, total: u32) -> Option<u32> {
    let needle = format!("/{total} frames");
    screen.lines().find_map(|l| {
        let at = l.find(&needle)?;
        let digits: String = l[..at]
            .chars()
            .rev()
            .take_while(char::is_ascii_digit)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        digits.parse().ok()
    })
}

struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(socket: &str, command: &str) -> Result<Tmux> {
        let status = Command::new("tmux")
            .args([
                "-L",
                socket,
                "new-session",
                "-d",
                "-s",
                "watch",
                "-x",
                "150",
                "-y",
                "20",
            ])
            .arg(command)
            .status()
            .context("running tmux (hack/deps.sh tmux installs it)")?;
        ensure!(status.success(), "tmux new-session failed");
        Ok(Tmux {
            socket: socket.to_string(),
        })
    }

    fn capture(&self) -> Result<String> {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-t", "watch"])
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

/// (b) `kubectl render watch` in a real terminal draws a bar that moves and ends with the final
/// line and exit 0; with stdout not a terminal it prints plain lines.
#[tokio::test]
#[ignore = "needs the local cluster and tmux: hack/cluster.sh up"]
async fn watch_draws_a_moving_bar_in_a_terminal_and_lines_elsewhere() -> Result<()> {
    let mut env = Env::new("watch").await?;
    let ns = env.ns.clone();
    env.stage("slow.yaml", &[("SCENARIO", &ns), ("DELAY_MS", "1500")])
        .await?;
    env.create(
        "shot",
        json!({"frames": {"start": 1, "end": 12}, "batchSize": 1, "parallelism": 2}),
    )
    .await?;

    let bin = env!("CARGO_BIN_EXE_kubectl-render");
    let kubeconfig = std::env::var("KUBECONFIG").unwrap_or_default();
    let tmux = Tmux::start(
        &ns,
        &format!("env KUBECONFIG='{kubeconfig}' {bin} -n {ns} watch shot; echo EXIT=$?; sleep 600"),
    )?;
    let plain = env
        .plugin(&["watch", "shot"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    env.start_operator()?;

    let t = Instant::now();
    let mut seen = BTreeSet::new();
    let mut screens = Vec::new();
    let mut batch_lines = 0;
    let last = loop {
        let screen = tmux.capture()?;
        if let Some(n) = frames_on_screen(&screen, 12)
            && seen.insert(n)
        {
            screens.push(screen.clone());
        }
        if screen.contains("  batch 00") {
            batch_lines += 1;
        }
        if screen.contains("EXIT=") {
            break screen;
        }
        if t.elapsed() > 3 * MINUTE {
            bail!("watch did not end; last screen:\n{screen}");
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    };
    println!(
        "watch: {} distinct bar positions in {:.1}s: {seen:?}",
        seen.len(),
        t.elapsed().as_secs_f64()
    );
    for s in screens.iter().take(3) {
        println!("--- screen ---\n{}", s.trim_end());
    }
    println!("--- last screen ---\n{}", last.trim_end());
    ensure!(seen.len() >= 4, "the bar did not move: {seen:?}");
    ensure!(
        seen.iter().any(|&n| n > 0 && n < 12),
        "no intermediate position: {seen:?}"
    );
    ensure!(batch_lines > 0, "no line per active batch was ever drawn");
    ensure!(
        last.contains("shot Succeeded: 12/12 frames"),
        "no final line:\n{last}"
    );
    ensure!(last.contains("EXIT=0"), "watch did not exit 0:\n{last}");
    ensure!(
        last.contains("[") && last.contains("12/12 frames 100% ·"),
        "no full bar:\n{last}"
    );

    let out = plain.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success(), "plain watch: {}", text(&out));
    ensure!(
        !stdout.contains('\r') && !stdout.contains('\u{1b}'),
        "plain output has terminal control characters: {stdout:?}"
    );
    let running: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("shot Running "))
        .collect();
    ensure!(
        running.len() >= 2,
        "plain output has too few progress lines:\n{stdout}"
    );
    ensure!(
        stdout
            .lines()
            .any(|l| l.starts_with("batch 0003 frames 4-4 Running on kwok-")),
        "no batch line:\n{stdout}"
    );
    ensure!(
        stdout
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("shot Succeeded: 12/12 frames in ")),
        "last plain line:\n{stdout}"
    );
    println!("--- plain output ---\n{stdout}");
    Ok(())
}

async fn job_uids(env: &Env, name: &str) -> Result<Vec<(String, String)>> {
    let lp = ListParams::default().labels(&format!("renderfarm.io/renderjob={name}"));
    let mut v: Vec<(String, String)> = env
        .api::<Job>()
        .list(&lp)
        .await?
        .items
        .iter()
        .map(|j| (j.name_any(), j.uid().unwrap_or_default()))
        .collect();
    v.sort();
    Ok(v)
}

/// (c) A batch fails after its retries; `kubectl render watch` exits 2 naming it; after the
/// cause is gone, `kubectl render retry --watch` re-runs that batch only, to Succeeded.
#[tokio::test]
#[ignore = "needs the local cluster: hack/cluster.sh up"]
async fn retry_reruns_only_the_failed_batch() -> Result<()> {
    let mut env = Env::new("retry").await?;
    let ns = env.ns.clone();
    let fail = env
        .stage(
            "fail.yaml",
            &[
                ("SCENARIO", &ns),
                ("BATCHES", "1"),
                ("EXIT_CODE", "1"),
                ("REASON", "Error"),
            ],
        )
        .await?;
    let ok = env
        .stage(
            "succeed-others.yaml",
            &[("SCENARIO", &ns), ("BATCHES", "1")],
        )
        .await?;
    env.create(
        "shot",
        json!({"frames": {"start": 1, "end": 15}, "batchSize": 5, "parallelism": 3, "backoffLimit": 1}),
    )
    .await?;
    env.start_operator()?;

    let out = env.plugin(&["watch", "shot"]).output()?;
    let first = text(&out);
    println!("--- watch ---\n{first}");
    ensure!(
        out.status.code() == Some(2),
        "watch of a failed render: {first}"
    );
    ensure!(
        first.contains("FAILED batch 1 (frames 6..10): BlenderError, exit 1, 2 attempts"),
        "{first}"
    );
    ensure!(first.contains("shot Failed: 10/15 frames"), "{first}");
    ensure!(
        first.contains("error: render shot failed: 1 of 3 batches failed"),
        "{first}"
    );
    let before = job_uids(&env, "shot").await?;
    ensure!(before.len() == 3, "{before:?}");

    // kubectl render ui shows it: the grid with batch 1 failed, its reason; no preview.
    let (ui, base) = common::start_ui(env.plugin(&[]))?;
    let (code, _, body) = common::http_get(&base, "/api/r/shot", None)?;
    ensure!(
        code == 200,
        "/api/r/shot: {code} {}",
        String::from_utf8_lossy(&body)
    );
    let page: serde_json::Value = serde_json::from_slice(&body)?;
    let live = page["live"].as_str().context("live")?;
    for (batch, state) in [(0, "Succeeded"), (1, "Failed"), (2, "Succeeded")] {
        ensure!(
            live.contains(&format!("data-batch=\"{batch}\" data-state=\"{state}\"")),
            "batch {batch} not {state}: {live}"
        );
    }
    ensure!(
        live.contains("BlenderError</span> (exit 1) · 2 attempts"),
        "{live}"
    );
    ensure!(page["video"].is_null() && page["rendered"] == 10, "{page}");
    let (code, _, list) = common::http_get(&base, "/", None)?;
    let list = String::from_utf8_lossy(&list);
    ensure!(
        code == 200 && list.contains("<a href=\"/r/shot\" title=\"shot\">shot</a>"),
        "{list}"
    );
    ensure!(list.contains("1 failed"), "{list}");
    let (code, _, _) = common::http_get(&base, "/files/shot/video", None)?;
    ensure!(code == 404, "a video before the preview: {code}");
    let (code, _, _) = common::http_get(&base, "/api/r/shot", Some("rebound.example:80"))?;
    ensure!(code == 403, "another Host: {code}");
    let (code, _, _) = common::http_get(&base, "/api/r/nothere", None)?;
    ensure!(code == 404, "an unknown render: {code}");
    let (status, stderr) = common::stop_ui(ui)?;
    println!("--- ui stderr ---\n{stderr}");
    ensure!(status.success(), "ui exit {status}");

    // The cause goes away; the others keep succeeding.
    env.delete_stage(&fail).await?;
    env.delete_stage(&ok).await?;
    env.stage("slow.yaml", &[("SCENARIO", &ns), ("DELAY_MS", "500")])
        .await?;
    let out = env.plugin(&["retry", "shot", "--watch"]).output()?;
    let retried = text(&out);
    println!("--- retry --watch ---\n{retried}");
    ensure!(out.status.success(), "{retried}");
    ensure!(
        retried.contains("batch 1: deleted Job shot-0001, frames 6..10, BlenderError"),
        "{retried}"
    );
    ensure!(
        retried.contains("1 failed batch will render again"),
        "{retried}"
    );
    ensure!(
        retried.contains("shot Succeeded: 15/15 frames"),
        "{retried}"
    );

    let after = job_uids(&env, "shot").await?;
    for ((name, old), (name2, new)) in before.iter().zip(&after) {
        ensure!(name == name2, "{before:?} {after:?}");
        if name == "shot-0001" {
            ensure!(old != new, "the failed batch's Job was not created again");
        } else {
            ensure!(old == new, "{name} ran again");
        }
    }
    // Batches 0 and 2 kept their one pod each.
    let pods = env.api::<Pod>().list(&ListParams::default()).await?;
    for batch in ["0", "2"] {
        let n = pods
            .items
            .iter()
            .filter(|p| p.labels().get("renderfarm.io/batch").map(String::as_str) == Some(batch))
            .count();
        ensure!(n == 1, "batch {batch} has {n} pods");
    }
    let out = env.plugin(&["retry", "shot"]).output()?;
    ensure!(
        text(&out).contains("nothing to retry: shot has no failed batches"),
        "{}",
        text(&out)
    );
    let out = env.plugin(&["status", "shot"]).output()?;
    let status = text(&out);
    println!("--- status ---\n{status}");
    ensure!(status.contains("Phase:        Succeeded"), "{status}");
    ensure!(
        status.contains("BatchFailed"),
        "no BatchFailed event:\n{status}"
    );
    Ok(())
}

/// `submit --in-claim`, `list`, `pause`, `resume`, `delete` do what they say.
#[tokio::test]
#[ignore = "needs the local cluster: hack/cluster.sh up"]
async fn submit_in_claim_pause_resume_delete() -> Result<()> {
    let mut env = Env::new("verbs").await?;
    let ns = env.ns.clone();
    env.stage("slow.yaml", &[("SCENARIO", &ns), ("DELAY_MS", "600000")])
        .await?;
    let out = env
        .plugin(&[
            "submit",
            "--in-claim",
            "scenes/test.blend",
            "--frames",
            "1-20:2",
            "--batch",
            "2",
            "--parallelism",
            "3",
            "--engine",
            "BLENDER_EEVEE",
            "--format",
            "JPEG",
        ])
        .output()?;
    let submitted = text(&out);
    ensure!(out.status.success(), "{submitted}");
    ensure!(
        submitted.contains("renderjob.renderfarm.io/test created: frames 1-20:2 (10 frames) in 5 batches of 2, 3 at a time"),
        "{submitted}"
    );
    let rj = env.rjs().get("test").await?;
    ensure!(rj.spec.blend_file == "scenes/test.blend", "{:?}", rj.spec);
    ensure!(
        (
            rj.spec.frames.start,
            rj.spec.frames.end,
            rj.spec.frames.step
        ) == (1, 20, 2)
    );
    ensure!(rj.spec.engine.as_str() == "BLENDER_EEVEE" && rj.spec.output.format.as_str() == "JPEG");
    // The kwok Stages need the scenario label, which submit does not set: add it.
    env.rjs()
        .patch(
            "test",
            &Default::default(),
            &kube::api::Patch::Merge(
                json!({"spec": {"podMetadata": {"labels": {common::SCENARIO_LABEL: ns}}}}),
            ),
        )
        .await?;
    env.start_operator()?;
    let rjs = env.rjs();
    wait_until(MINUTE, "3 batches running", || async {
        let s = rjs.get("test").await?.status.unwrap_or_default();
        Ok((s.pods.running == 3).then_some(()))
    })
    .await?;

    let out = env.plugin(&["list"]).output()?;
    let list = text(&out);
    ensure!(
        list.starts_with("NAME   PHASE     PROGRESS   FRAMES   BATCHES   FAILED"),
        "{list}"
    );
    ensure!(
        list.contains("test   Running   0%         0/10     0/5       0"),
        "{list}"
    );

    let out = env.plugin(&["pause", "test"]).output()?;
    ensure!(text(&out).contains("test paused"), "{}", text(&out));
    wait_until(MINUTE, "Suspended with no pods running", || async {
        let s = rjs.get("test").await?.status.unwrap_or_default();
        Ok((s.phase.as_str() == "Suspended" && s.pods.running == 0).then_some(()))
    })
    .await?;
    let out = env.plugin(&["pause", "test"]).output()?;
    ensure!(text(&out).contains("already paused"), "{}", text(&out));
    let out = env.plugin(&["resume", "test"]).output()?;
    ensure!(text(&out).contains("test resumed"), "{}", text(&out));
    wait_until(MINUTE, "running again", || async {
        let s = rjs.get("test").await?.status.unwrap_or_default();
        Ok((s.phase.as_str() == "Running" && s.pods.running == 3).then_some(()))
    })
    .await?;

    let out = env.plugin(&["delete", "test"]).output()?;
    ensure!(out.status.success(), "{}", text(&out));
    ensure!(
        text(&out).contains("renderjob.renderfarm.io/test deleted (its frames stay in claim render-storage under renders/test/)"),
        "{}",
        text(&out)
    );
    ensure!(
        rjs.get_opt("test").await?.is_none(),
        "still there after delete"
    );
    Ok(())
}

/// Errors a user meets: one line on stderr, exit 1.
#[tokio::test]
#[ignore = "needs the local cluster: hack/cluster.sh up"]
async fn errors_are_one_clear_line() -> Result<()> {
    let env = Env::new("errors").await?;
    env.create("taken", json!({"frames": {"start": 1, "end": 2}}))
        .await?;
    let blend = std::env::temp_dir().join(format!("not-a-scene-{}.blend", std::process::id()));
    std::fs::write(&blend, b"hello")?;
    let blend = blend.to_string_lossy().into_owned();
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![
                "submit",
                "--in-claim",
                "scenes/a.blend",
                "--frames",
                "1-3",
                "--name",
                "taken",
            ],
            vec![],
            "error: a RenderJob named taken already exists in namespace",
        ),
        (
            vec![
                "submit",
                "--in-claim",
                "scenes/a.blend",
                "--frames",
                "1-3",
                "--claim",
                "nope",
            ],
            vec![],
            "error: PersistentVolumeClaim nope not found in namespace",
        ),
        (
            vec!["submit", "/no/such/scene.blend", "--frames", "1-3"],
            vec![],
            "error: cannot read /no/such/scene.blend: No such file or directory",
        ),
        (
            vec!["submit", &blend, "--frames", "1-3"],
            vec![],
            "not a .blend file (no BLENDER header)",
        ),
        (
            vec!["submit", "--in-claim", "scenes/a.blend", "--frames", "9-3"],
            vec![],
            "error: invalid frame range '9-3': the end is before the start",
        ),
        (
            vec!["status", "nothere"],
            vec![],
            "error: RenderJob nothere not found in namespace",
        ),
        (
            vec!["list"],
            vec![("KUBECONFIG", "/no/such/kubeconfig")],
            "error: no kubeconfig: ",
        ),
    ];
    for (args, vars, want) in cases {
        let mut cmd = env.plugin(&args);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let out = cmd.output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        println!("kubectl render {}: {}", args.join(" "), stderr.trim_end());
        ensure!(
            out.status.code() == Some(1),
            "{args:?} exit {:?}",
            out.status.code()
        );
        ensure!(
            stderr.lines().count() == 1,
            "{args:?}: not one line: {stderr}"
        );
        ensure!(stderr.contains(want), "{args:?}: {stderr}");
    }
    let _ = std::fs::remove_file(&blend);
    Ok(())
}
