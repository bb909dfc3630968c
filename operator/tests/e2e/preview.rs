//! The preview step on the local cluster: kwok plays render-node (the batches' termination
//! messages name their last frame) and render-preview (its report, or its failure). One
//! preview Job, only after every batch succeeded; `PreviewReady` and `status.preview` follow
//! it; a failed preview leaves the render Succeeded; `enabled: false` makes none; an operator
//! killed while the preview runs makes no second one.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams};
use kube::{Resource, ResourceExt};
use renderfarm::crd::{PreviewState, RenderJob};
use renderfarm::job::{STEP_LABEL, preview_job_name};
use serde_json::{Value, json};

use crate::faultkit::{MINUTE, batch_of, pod_phase};
use crate::harness::{Env, JobUids, SCENARIO_LABEL, condition, status, watch_until};

const FRAMES: i32 = 6;
const BATCH_SIZE: i32 = 2;
const BATCHES: usize = 3;

fn vars(pairs: &[(&'static str, &str)]) -> BTreeMap<&'static str, String> {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

/// Batch pods of the scenario succeed after 1 s naming their last frame; its preview pods end
/// after `delay_ms` with `exit_code`, `phase` and render-preview's report `report`.
async fn stages(
    env: &mut Env,
    delay_ms: u32,
    exit_code: u8,
    phase: &str,
    report: Value,
) -> Result<()> {
    env.stage_frames(1000).await?;
    let scenario = env.ns.clone();
    env.stage(
        "preview.yaml",
        &format!("{scenario}-preview"),
        &vars(&[
            ("SCENARIO", &scenario),
            ("DELAY_MS", &delay_ms.to_string()),
            ("EXIT_CODE", &exit_code.to_string()),
            ("PHASE", phase),
            ("MESSAGE", &report.to_string()),
        ]),
    )
    .await
}

/// A render of [`FRAMES`] frames in [`BATCHES`] batches, one at a time (so the last batch to
/// finish is the one with the highest frames), its pods in the test's kwok scenario.
async fn render(env: &Env, name: &str, extra: Value) -> Result<RenderJob> {
    let mut spec = json!({
        "frames": {"start": 1, "end": FRAMES}, "batchSize": BATCH_SIZE, "parallelism": 1,
        "podMetadata": {"labels": {SCENARIO_LABEL: env.ns.clone()}},
        "preview": {"enabled": true},
    });
    crate::harness::merge(&mut spec, extra);
    env.create(name, spec).await
}

fn is_preview<K: Resource>(obj: &K) -> bool {
    obj.labels().get(STEP_LABEL).map(String::as_str) == Some("preview")
}

/// Whether every batch's pod had succeeded when a pod watch first saw the preview's pod. The
/// operator counts a batch done once its pod has succeeded, before its Job completes; one
/// watch delivers changes in order, so a batch pod's success is seen before a pod created
/// after it.
fn watch_preview_order(env: &Env) -> Arc<Mutex<Option<bool>>> {
    let seen: Arc<Mutex<Option<bool>>> = Arc::default();
    let record = seen.clone();
    let pods = env.pods();
    tokio::spawn(async move {
        let _ = watch_until(pods, 3 * MINUTE, "the preview pod", |all: &[&Pod]| {
            if !all.iter().any(|p| is_preview(*p)) {
                return None;
            }
            let succeeded: BTreeSet<u32> = all
                .iter()
                .filter(|p| pod_phase(p) == "Succeeded")
                .filter_map(|p| batch_of(*p))
                .collect();
            if let Ok(mut s) = record.lock() {
                *s = Some(succeeded.len() == BATCHES);
            }
            Some(())
        })
        .await;
    });
    seen
}

async fn wait_preview(env: &Env, name: &str, state: PreviewState) -> Result<RenderJob> {
    env.wait_rj(name, &format!("preview {state:?}"), 2 * MINUTE, |rj| {
        status(rj).preview.is_some_and(|p| p.state == state)
    })
    .await
}

/// The Jobs seen, by name, and the names seen with more than one UID.
fn one_preview(seen: usize, twice: &[String]) -> Result<()> {
    ensure!(twice.is_empty(), "Jobs created twice: {twice:?}");
    ensure!(
        seen == BATCHES + 1,
        "{seen} Jobs seen, not {BATCHES} batches and one preview"
    );
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn one_preview_job_after_every_batch_then_ready() -> Result<()> {
    let mut env = Env::new("preview").await?;
    let report = json!({"ok": true, "frames": FRAMES, "columns": 3, "rows": 2});
    stages(&mut env, 2000, 0, "Succeeded", report).await?;
    let uids = JobUids::watch(env.jobs());
    uids.synced().await?;
    let order = watch_preview_order(&env);
    env.start_operator()?;
    let started = std::time::Instant::now();
    render(&env, "shot", json!({})).await?;

    // Once the frames are done the phase is Succeeded while the preview runs.
    let rj = wait_preview(&env, "shot", PreviewState::Running).await?;
    ensure!(
        status(&rj).phase.as_str() == "Succeeded",
        "{:?}",
        status(&rj)
    );
    let rj = wait_preview(&env, "shot", PreviewState::Ready).await?;
    println!(
        "preview: frames and preview done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let s = status(&rj);
    assert_eq!(s.phase.as_str(), "Succeeded");
    let p = s.preview.clone().context("status.preview")?;
    assert_eq!(p.video.as_deref(), Some("renders/shot/preview.mp4"));
    assert_eq!(p.contact_sheet.as_deref(), Some("renders/shot/contact.jpg"));
    assert_eq!((p.frames, p.columns, p.rows), (Some(6), Some(3), Some(2)));
    let ready = condition(&rj, "PreviewReady").context("PreviewReady")?;
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "Ready")
    );
    let last = s.last_frame.clone().context("status.lastFrame")?;
    assert_eq!(
        (last.frame, last.file.as_str(), last.thumbnail.as_str()),
        (
            6,
            "renders/shot/frame_0006.png",
            "renders/shot/.thumbs/frame_0006.jpg"
        )
    );
    assert_eq!(
        *order.lock().map_err(|_| anyhow::anyhow!("poisoned"))?,
        Some(true),
        "the preview started before every batch pod had succeeded"
    );
    let (seen, twice) = uids.finish_idle(&env).await?;
    one_preview(seen, &twice)?;
    let events = env.event_reasons()?;
    ensure!(events.contains("PreviewReady"), "events: {events}");
    let names = env.job_names().await?;
    assert!(names.contains(&preview_job_name("shot")), "{names:?}");
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn a_failed_preview_leaves_the_render_succeeded() -> Result<()> {
    let mut env = Env::new("preview-fail").await?;
    let report = json!({"ok": false, "frames": 0, "message": "ffmpeg: no frames could be read"});
    stages(&mut env, 500, 1, "Failed", report).await?;
    let uids = JobUids::watch(env.jobs());
    uids.synced().await?;
    env.start_operator()?;
    render(&env, "shot", json!({})).await?;
    let rj = wait_preview(&env, "shot", PreviewState::Failed).await?;
    let s = status(&rj);
    assert_eq!(
        s.phase.as_str(),
        "Succeeded",
        "a failed preview never fails the render"
    );
    assert_eq!((s.batches.succeeded, s.frames.rendered), (3, 6));
    let p = s.preview.clone().context("status.preview")?;
    let message = p.message.unwrap_or_default();
    ensure!(
        message.contains("ffmpeg: no frames could be read"),
        "{message}"
    );
    let ready = condition(&rj, "PreviewReady").context("PreviewReady")?;
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "Failed")
    );
    let complete = condition(&rj, "Complete").context("Complete")?;
    assert_eq!(complete.status, "True");
    let (seen, twice) = uids.finish_idle(&env).await?;
    one_preview(seen, &twice)?;
    let events = env.event_reasons()?;
    ensure!(events.contains("PreviewFailed"), "events: {events}");
    ensure!(!events.contains("RenderFailed"), "events: {events}");

    // The cause gone, deleting the failed preview Job makes the preview again.
    let scenario = env.ns.clone();
    env.delete_stage(&format!("{scenario}-preview")).await?;
    env.stage(
        "preview.yaml",
        &format!("{scenario}-preview"),
        &vars(&[
            ("SCENARIO", &scenario),
            ("DELAY_MS", "500"),
            ("EXIT_CODE", "0"),
            ("PHASE", "Succeeded"),
            (
                "MESSAGE",
                &json!({"ok": true, "frames": FRAMES, "columns": 3, "rows": 2}).to_string(),
            ),
        ]),
    )
    .await?;
    let uids = JobUids::watch(env.jobs());
    uids.synced().await?;
    env.jobs()
        .delete(&preview_job_name("shot"), &DeleteParams::background())
        .await?;
    let rj = wait_preview(&env, "shot", PreviewState::Ready).await?;
    assert_eq!(status(&rj).phase.as_str(), "Succeeded");
    let seen = uids.stop_after(Duration::ZERO).await?;
    let made: Vec<&str> = seen.iter().map(|j| j.name.as_str()).collect();
    let previews = made
        .iter()
        .filter(|n| **n == preview_job_name("shot"))
        .count();
    // The watch saw the deleted Job in its first list, and the new one.
    ensure!(previews == 2, "preview Jobs seen: {made:?}");
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn a_disabled_preview_makes_no_job() -> Result<()> {
    let mut env = Env::new("preview-off").await?;
    stages(
        &mut env,
        500,
        0,
        "Succeeded",
        json!({"ok": true, "frames": FRAMES}),
    )
    .await?;
    env.start_operator()?;
    render(&env, "shot", json!({"preview": {"enabled": false}})).await?;
    env.wait_phase("shot", "Succeeded", 2 * MINUTE).await?;
    env.wait_idle().await?;
    let jobs = env.jobs().list(&ListParams::default()).await?.items;
    assert_eq!(
        jobs.len(),
        BATCHES,
        "{:?}",
        jobs.iter().map(|j| j.name_any()).collect::<Vec<_>>()
    );
    assert!(!jobs.iter().any(is_preview));
    let rj = env.rjs().get("shot").await?;
    let p = status(&rj).preview.context("status.preview")?;
    assert_eq!(p.state, PreviewState::Disabled);
    let ready = condition(&rj, "PreviewReady").context("PreviewReady")?;
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "Disabled")
    );
    Ok(())
}

/// SIGKILL while the preview Job runs; the next operator adopts it. With cleanup
/// DeleteSucceeded the preview Job is deleted once Ready is recorded, and not made again.
#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn an_operator_killed_during_the_preview_makes_no_second_one() -> Result<()> {
    let mut env = Env::new("preview-kill").await?;
    let report = json!({"ok": true, "frames": FRAMES, "columns": 3, "rows": 2});
    stages(&mut env, 8000, 0, "Succeeded", report).await?;
    let uids = JobUids::watch(env.jobs());
    uids.synced().await?;
    env.start_operator()?;
    render(
        &env,
        "shot",
        json!({"cleanup": {"policy": "DeleteSucceeded"}}),
    )
    .await?;
    let name = preview_job_name("shot");
    watch_until(
        env.jobs(),
        2 * MINUTE,
        "the preview Job",
        |all: &[&Job]| all.iter().any(|j| j.name_any() == name).then_some(()),
    )
    .await?;
    env.kill_operator();
    println!("preview-kill: operator killed while {name} runs");
    env.start_operator()?;
    let rj = wait_preview(&env, "shot", PreviewState::Ready).await?;
    assert_eq!(status(&rj).phase.as_str(), "Succeeded");
    // Cleaned up after Ready was written; Ready stays.
    watch_until(
        env.jobs(),
        MINUTE,
        "every Job cleaned up",
        |all: &[&Job]| all.is_empty().then_some(()),
    )
    .await?;
    let (seen, twice) = uids.finish_idle(&env).await?;
    one_preview(seen, &twice)?;
    let rj = env.rjs().get("shot").await?;
    let p = status(&rj).preview.context("status.preview")?;
    assert_eq!(p.state, PreviewState::Ready);
    Ok(())
}

/// A RenderJob deleted and created again under the same name gets a preview Job of its own,
/// once the earlier one's is gone.
#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn a_renderjob_made_again_makes_a_fresh_preview() -> Result<()> {
    let mut env = Env::new("preview-again").await?;
    let report = json!({"ok": true, "frames": FRAMES, "columns": 3, "rows": 2});
    stages(&mut env, 500, 0, "Succeeded", report).await?;
    let uids = JobUids::watch(env.jobs());
    uids.synced().await?;
    env.start_operator()?;
    render(&env, "shot", json!({})).await?;
    let first = wait_preview(&env, "shot", PreviewState::Ready).await?;
    env.rjs().delete("shot", &Default::default()).await?;
    crate::harness::await_object(
        env.rjs(),
        "shot",
        MINUTE,
        "the RenderJob gone",
        |rj: Option<&RenderJob>| rj.is_none(),
    )
    .await?;
    render(&env, "shot", json!({})).await?;
    let second = wait_preview(&env, "shot", PreviewState::Ready).await?;
    assert_ne!(first.uid(), second.uid());
    let seen = uids.stop_after(Duration::ZERO).await?;
    let name = preview_job_name("shot");
    let mut owners: Vec<String> = seen
        .iter()
        .filter(|j| j.name == name)
        .filter_map(|j| j.owner.clone())
        .collect();
    owners.sort();
    let mut expected: Vec<String> = [first.uid(), second.uid()].into_iter().flatten().collect();
    expected.sort();
    assert_eq!(owners, expected, "one preview Job for each RenderJob");
    let batches = seen.iter().filter(|j| j.name != name).count();
    assert_eq!(batches, 2 * BATCHES, "each RenderJob's batches, once");
    Ok(())
}
