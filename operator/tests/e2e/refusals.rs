//! A shared cluster refuses things and inputs go missing: each refusal shows in status within
//! seconds, with a Warning Event, while the rest of the render goes on; failures that every
//! batch would share end the render after the first, and failures are bounded.

use std::time::{Duration, Instant};

use anyhow::Result;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, ResourceQuota};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

use crate::harness::{Env, SCENARIO_LABEL, condition, status};

const MINUTE: Duration = Duration::from_secs(60);
/// How soon a refusal must show in status.
const SOON: Duration = Duration::from_secs(10);

fn vars(pairs: &[(&'static str, &str)]) -> std::collections::BTreeMap<&'static str, String> {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

/// The RenderJob's `Progressing` condition is False with `reason` (and `Some(message)`).
async fn wait_held(env: &Env, name: &str, reason: &str) -> Result<String> {
    let started = Instant::now();
    let rj = env
        .wait_rj(name, &format!("Progressing=False {reason}"), SOON, |rj| {
            condition(rj, "Progressing").is_some_and(|c| c.status == "False" && c.reason == reason)
        })
        .await?;
    println!(
        "{name}: {reason} shown {:.1}s after waiting began",
        started.elapsed().as_secs_f64()
    );
    Ok(condition(&rj, "Progressing")
        .map(|c| c.message)
        .unwrap_or_default())
}

/// The notes of the Warning Events with `reason` on RenderJob `name`.
async fn warnings(env: &Env, name: &str, reason: &str) -> Result<Vec<String>> {
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(env.client.clone(), &env.ns);
    let all = events.list(&ListParams::default()).await?;
    Ok(all
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason) && e.type_.as_deref() == Some("Warning"))
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter_map(|e| e.note)
        .collect())
}

#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn a_job_quota_refusal_shows_while_admitted_batches_count_up() -> Result<()> {
    let mut env = Env::new("quota").await?;
    let scenario = env.ns.clone();
    env.stage(
        "slow.yaml",
        &format!("{scenario}-slow"),
        &vars(&[("SCENARIO", &scenario), ("DELAY_MS", "3000")]),
    )
    .await?;
    let quotas: Api<ResourceQuota> = Api::namespaced(env.client.clone(), &env.ns);
    quotas
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "one-job"}, "spec": {"hard": {"count/jobs.batch": "1"}},
            }))?,
        )
        .await?;
    env.start_operator()?;
    env.create(
        "quota",
        json!({"frames": {"start": 1, "end": 3}, "batchSize": 1, "parallelism": 3,
               "podMetadata": {"labels": {SCENARIO_LABEL: scenario}}}),
    )
    .await?;
    let message = wait_held(&env, "quota", "JobRejected").await?;
    assert!(message.contains("exceeded quota"), "{message}");
    // The admitted batch is still counted while the others are refused.
    let rj = env
        .wait_rj("quota", "the admitted batch counted", MINUTE, |rj| {
            rj.status.as_ref().is_some_and(|s| s.frames.rendered == 1)
        })
        .await?;
    let progressing = condition(&rj, "Progressing");
    assert_eq!(
        progressing.as_ref().map(|c| c.reason.as_str()),
        Some("JobRejected"),
        "{progressing:?}"
    );
    let notes = warnings(&env, "quota", "JobRejected").await?;
    assert!(
        !notes.is_empty() && notes[0].contains("exceeded quota"),
        "{notes:?}"
    );
    // Whichever apply came first was admitted.
    assert_eq!(env.job_names().await?.len(), 1);
    // The quota goes: the refused batches are created and the render completes.
    quotas.delete("one-job", &DeleteParams::default()).await?;
    let rj = env.wait_phase("quota", "Succeeded", 2 * MINUTE).await?;
    assert_eq!(status(&rj).frames.rendered, 3);
    assert_eq!(
        env.job_names().await?,
        ["quota-0000", "quota-0001", "quota-0002"]
    );
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn an_invalid_pod_label_key_is_refused_with_the_servers_words() -> Result<()> {
    let mut env = Env::new("badlabel").await?;
    env.start_operator()?;
    env.create(
        "badlabel",
        json!({"frames": {"start": 1, "end": 2}, "batchSize": 1,
               "podMetadata": {"labels": {"team/cost center": "x"}}}),
    )
    .await?;
    let message = wait_held(&env, "badlabel", "JobRejected").await?;
    assert!(message.contains("team/cost center"), "{message}");
    assert!(env.job_names().await?.is_empty());
    assert!(!warnings(&env, "badlabel", "JobRejected").await?.is_empty());
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn a_missing_claim_holds_the_render_until_it_exists() -> Result<()> {
    let mut env = Env::new("noclaim").await?;
    env.start_operator()?;
    env.create(
        "noclaim",
        json!({"frames": {"start": 1, "end": 6}, "batchSize": 1, "parallelism": 2,
               "storage": {"claimName": "later"}}),
    )
    .await?;
    let message = wait_held(&env, "noclaim", "ClaimNotFound").await?;
    assert!(message.contains("\"later\""), "{message}");
    assert!(!warnings(&env, "noclaim", "ClaimNotFound").await?.is_empty());
    assert_eq!(
        env.job_names().await?.len(),
        2,
        "no more Jobs than parallelism while held"
    );

    // The claim is made: the pods schedule and the render completes.
    let pvs: Api<PersistentVolume> = Api::all(env.client.clone());
    let pv_name = format!("{}-later", env.ns);
    pvs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": pv_name},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"],
                     "storageClassName": "manual", "persistentVolumeReclaimPolicy": "Delete",
                     "hostPath": {"path": format!("/tmp/renderfarm-e2e/{pv_name}")},
                     "claimRef": {"namespace": env.ns, "name": "later"}},
        }))?,
    )
    .await?;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), &env.ns);
    pvcs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "later"},
            "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "manual",
                     "volumeName": pv_name, "resources": {"requests": {"storage": "1Gi"}}},
        }))?,
    )
    .await?;
    let rj = env.wait_phase("noclaim", "Succeeded", 3 * MINUTE).await?;
    assert_eq!(status(&rj).frames.rendered, 6);
    pvs.delete(&pv_name, &DeleteParams::default()).await.ok();
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn bad_input_on_a_thousand_batches_ends_the_render_after_the_first() -> Result<()> {
    let mut env = Env::new("missingblend").await?;
    let scenario = env.ns.clone();
    let code = render_contract::exit::BAD_INPUT.to_string();
    env.stage(
        "fail-all.yaml",
        &format!("{scenario}-fail-all"),
        &vars(&[
            ("SCENARIO", &scenario),
            ("EXIT_CODE", &code),
            ("REASON", "Error"),
        ]),
    )
    .await?;
    env.start_operator()?;
    env.create(
        "missing",
        json!({"frames": {"start": 1, "end": 1000}, "batchSize": 1, "parallelism": 5,
               "podMetadata": {"labels": {SCENARIO_LABEL: scenario}}}),
    )
    .await?;
    let rj = env.wait_phase("missing", "Failed", 2 * MINUTE).await?;
    let jobs = env.job_names().await?;
    println!("{} Jobs for 1000 batches", jobs.len());
    assert!(jobs.len() <= 5, "at most parallelism Jobs: {jobs:?}");
    let failed = condition(&rj, "Failed").expect("Failed");
    assert_eq!(
        (failed.status.as_str(), failed.reason.as_str()),
        ("True", "BadInput")
    );
    let s = status(&rj);
    assert!(s.batches.pending >= 995, "{:?}", s.batches);
    // Coalesced: the first failure at once, the rest together at the end.
    let notes = warnings(&env, "missing", "BatchFailed").await?;
    println!("BatchFailed Events: {notes:?}");
    assert!(!notes.is_empty() && notes.len() <= 2, "{notes:?}");
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn max_failed_batches_ends_the_render_with_bounded_jobs_and_events() -> Result<()> {
    let mut env = Env::new("maxfailed").await?;
    let scenario = env.ns.clone();
    env.stage(
        "fail-all.yaml",
        &format!("{scenario}-fail-all"),
        &vars(&[
            ("SCENARIO", &scenario),
            ("EXIT_CODE", "1"),
            ("REASON", "Error"),
        ]),
    )
    .await?;
    env.start_operator()?;
    env.create(
        "flaky",
        json!({"frames": {"start": 1, "end": 40}, "batchSize": 1, "parallelism": 2,
               "backoffLimit": 0, "maxFailedBatches": 3,
               "podMetadata": {"labels": {SCENARIO_LABEL: scenario}}}),
    )
    .await?;
    let rj = env.wait_phase("flaky", "Failed", 2 * MINUTE).await?;
    let jobs = env.job_names().await?;
    println!(
        "{} Jobs for 40 batches, maxFailedBatches 3, parallelism 2",
        jobs.len()
    );
    assert!(
        jobs.len() <= 4,
        "maxFailedBatches + parallelism - 1 at most: {jobs:?}"
    );
    let s = status(&rj);
    assert!((3..=4).contains(&s.batches.failed), "{:?}", s.batches);
    let failed = condition(&rj, "Failed").expect("Failed");
    assert_eq!(failed.reason, "TooManyFailedBatches");
    let notes = warnings(&env, "flaky", "BatchFailed").await?;
    assert!(!notes.is_empty() && notes.len() <= 3, "{notes:?}");
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn renderjobs_named_like_each_others_hashed_form_both_complete() -> Result<()> {
    let mut env = Env::new("collide").await?;
    env.start_operator()?;
    let long = "a".repeat(70);
    // What the long name's Jobs were called before names could not collide: its cut, hashed
    // form, a valid name of its own.
    let hashed = renderfarm::job::short_name(&long, 58);
    for name in [&long, &hashed] {
        env.create(
            name,
            json!({"frames": {"start": 1, "end": 2}, "batchSize": 1}),
        )
        .await?;
    }
    for name in [&long, &hashed] {
        let rj = env.wait_phase(name, "Succeeded", 2 * MINUTE).await?;
        assert_eq!(status(&rj).frames.rendered, 2);
    }
    let jobs = env.jobs().list(&ListParams::default()).await?.items;
    assert_eq!(
        jobs.len(),
        4,
        "{:?}",
        jobs.iter().map(|j| j.name_any()).collect::<Vec<_>>()
    );
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn a_pod_refused_by_a_quota_shows_why() -> Result<()> {
    let mut env = Env::new("podquota").await?;
    let quotas: Api<ResourceQuota> = Api::namespaced(env.client.clone(), &env.ns);
    // A quota on memory limits refuses every pod that sets none (batch pods set requests).
    quotas
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "limits"}, "spec": {"hard": {"limits.memory": "10Gi"}},
            }))?,
        )
        .await?;
    env.start_operator()?;
    env.create(
        "podquota",
        json!({"frames": {"start": 1, "end": 4}, "batchSize": 1, "parallelism": 2}),
    )
    .await?;
    let message = wait_held(&env, "podquota", "PodRejected").await?;
    assert!(message.contains("limits.memory"), "{message}");
    assert!(!warnings(&env, "podquota", "PodRejected").await?.is_empty());
    assert!(
        env.job_names().await?.len() <= 2,
        "no more Jobs while pods are refused"
    );
    // The batches are given limits by a LimitRange and the quota stays: pods are admitted.
    let ranges: Api<k8s_openapi::api::core::v1::LimitRange> =
        Api::namespaced(env.client.clone(), &env.ns);
    ranges
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "defaults"},
                "spec": {"limits": [{"type": "Container", "default": {"memory": "1Gi"}}]},
            }))?,
        )
        .await?;
    let rj = env.wait_phase("podquota", "Succeeded", 3 * MINUTE).await?;
    assert_eq!(status(&rj).frames.rendered, 4);
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn a_blender_version_not_offered_fails_at_once_naming_the_offered_ones() -> Result<()> {
    let mut env = Env::new("version").await?;
    env.start_operator_with(&["--node-images", "5.0=renderfarm/render-node:5.0"], &[])?;
    env.create(
        "old",
        json!({"frames": {"start": 1, "end": 4}, "blenderVersion": "3.4"}),
    )
    .await?;
    let rj = env.wait_phase("old", "Failed", SOON).await?;
    let failed = condition(&rj, "Failed").expect("Failed");
    assert_eq!(failed.reason, "UnknownBlenderVersion");
    assert_eq!(
        failed.message,
        "blenderVersion 3.4 is not offered here; this cluster offers 4.5, 5.0"
    );
    assert!(
        env.job_names().await?.is_empty(),
        "no pod that cannot start"
    );
    assert!(
        !warnings(&env, "old", "UnknownBlenderVersion")
            .await?
            .is_empty()
    );
    // An offered one renders, with that version's image.
    env.create(
        "new",
        json!({"frames": {"start": 1, "end": 2}, "blenderVersion": "5.0"}),
    )
    .await?;
    env.wait_phase("new", "Succeeded", 2 * MINUTE).await?;
    let job = env.jobs().get("new-0000").await?;
    let image = job
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|p| p.containers.into_iter().next())
        .and_then(|c| c.image);
    assert_eq!(image.as_deref(), Some("renderfarm/render-node:5.0"));
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn a_batch_evicted_again_and_again_fails_as_evicted() -> Result<()> {
    let mut env = Env::new("evictloop").await?;
    let scenario = env.ns.clone();
    // Pods run long enough to be evicted while they render.
    env.stage(
        "slow.yaml",
        &format!("{scenario}-slow"),
        &vars(&[("SCENARIO", &scenario), ("DELAY_MS", "60000")]),
    )
    .await?;
    // Two disruptions at most: the Job controller waits longer before each replacement pod.
    env.start_operator_with(&["--max-disruptions", "2"], &[])?;
    env.create(
        "evicted",
        json!({"frames": {"start": 1, "end": 1}, "batchSize": 1, "backoffLimit": 0,
               "podMetadata": {"labels": {SCENARIO_LABEL: scenario}}}),
    )
    .await?;
    let pods = env.pods();
    let mut evictions = 0;
    // Evictions are not failures, but a batch evicted this often stops retrying.
    let rjs = env.rjs();
    while evictions < 4 {
        // The next running pod, or none once the render failed.
        let next = crate::harness::wait_until(2 * MINUTE, "a running batch pod", || async {
            let rj = rjs.get("evicted").await?;
            if rj.status.as_ref().map(|s| s.phase.as_str()) == Some("Failed") {
                return Ok(Some(None));
            }
            let list = pods.list(&ListParams::default()).await?;
            Ok(list
                .items
                .into_iter()
                .find(|p| {
                    p.metadata.deletion_timestamp.is_none()
                        && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                })
                .map(Some))
        })
        .await?;
        let Some(pod) = next else { break };
        pods.evict(&pod.name_any(), &Default::default()).await?;
        evictions += 1;
    }
    println!("{evictions} evictions");
    let rj = env.wait_phase("evicted", "Failed", 2 * MINUTE).await?;
    let s = status(&rj);
    assert_eq!(s.failed_batches.len(), 1, "{:?}", s.failed_batches);
    let f = &s.failed_batches[0];
    assert_eq!(f.reason, "Evicted", "{f:?}");
    assert!(
        f.message.as_deref().unwrap_or_default().contains("2 times"),
        "{f:?}"
    );
    assert!(evictions >= 2, "stopped after {evictions}");
    let job = env.jobs().get("evicted-0000").await?;
    let stopped = job
        .annotations()
        .get(renderfarm::job::STOPPED_ANNOTATION)
        .cloned();
    assert!(
        stopped.is_some_and(|s| s.starts_with("Evicted: ")),
        "the operator stopped it"
    );
    Ok(())
}

/// render-node's report for a batch whose scene uses a texture that is not in the volume.
fn missing_texture_report(outcome: &str, frames_rendered: u32) -> serde_json::Value {
    let mut report = json!({
        "outcome": outcome, "framesRendered": frames_rendered, "framesSkipped": 0,
        "missingFiles": ["/data/tex/wood.png"], "missingFilesCount": 1,
    });
    if outcome == "BadInput" {
        report["message"] = json!(
            "1 external files the scene uses are missing or unreadable: image /data/tex/wood.png"
        );
    }
    report
}

/// The scenario's batch pods end after 500 ms with `exit_code`, pod phase `phase` and `report`
/// as their termination message.
async fn stage_reports(
    env: &mut Env,
    exit_code: i32,
    phase: &str,
    report: &serde_json::Value,
) -> Result<()> {
    let scenario = env.ns.clone();
    env.stage(
        "batch-report.yaml",
        &format!("{scenario}-report"),
        &vars(&[
            ("SCENARIO", &scenario),
            ("DELAY_MS", "500"),
            ("EXIT_CODE", &exit_code.to_string()),
            ("PHASE", phase),
            ("MESSAGE", &report.to_string()),
        ]),
    )
    .await
}

/// The notes of RenderJob `name`'s `MissingFiles` Warning Events, once there is one.
async fn missing_files_warnings(env: &Env, name: &str) -> Result<Vec<String>> {
    crate::harness::wait_until(SOON, "a MissingFiles Warning Event", || async {
        let notes = warnings(env, name, "MissingFiles").await?;
        Ok((!notes.is_empty()).then_some(notes))
    })
    .await
}

/// Under the default `missingFiles: Fail`, the Event about the missing texture says what
/// happens: the batches fail as bad input (not "rendering anyway"), naming the file.
#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn missing_files_under_fail_say_the_batches_fail_as_bad_input() -> Result<()> {
    let mut env = Env::new("missingfail").await?;
    let report = missing_texture_report("BadInput", 0);
    stage_reports(
        &mut env,
        render_contract::exit::BAD_INPUT,
        "Failed",
        &report,
    )
    .await?;
    env.start_operator()?;
    env.create(
        "textureless",
        json!({"frames": {"start": 1, "end": 8}, "batchSize": 2, "parallelism": 2,
               "podMetadata": {"labels": {SCENARIO_LABEL: env.ns.clone()}}}),
    )
    .await?;
    let rj = env.wait_phase("textureless", "Failed", 2 * MINUTE).await?;
    let failed = condition(&rj, "Failed").expect("Failed");
    assert_eq!(failed.reason, "BadInput", "{failed:?}");
    let s = status(&rj);
    assert_eq!(s.missing_files, ["/data/tex/wood.png"], "{s:?}");
    let notes = missing_files_warnings(&env, "textureless").await?;
    println!("MissingFiles Events under Fail: {notes:?}");
    for note in &notes {
        assert!(
            note.contains("its batches fail as bad input")
                && note.contains("missingFiles: Fail")
                && note.contains("/data/tex/wood.png")
                && !note.contains("rendering anyway"),
            "{note}"
        );
    }
    Ok(())
}

/// Under `missingFiles: Warn` the batches render without the texture, and the Event says so.
#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn missing_files_under_warn_say_the_render_goes_on() -> Result<()> {
    let mut env = Env::new("missingwarn").await?;
    let report = missing_texture_report("Succeeded", 2);
    stage_reports(&mut env, 0, "Succeeded", &report).await?;
    env.start_operator()?;
    env.create(
        "magenta",
        json!({"frames": {"start": 1, "end": 4}, "batchSize": 2, "missingFiles": "Warn",
               "podMetadata": {"labels": {SCENARIO_LABEL: env.ns.clone()}}}),
    )
    .await?;
    let rj = env.wait_phase("magenta", "Succeeded", 2 * MINUTE).await?;
    let s = status(&rj);
    assert_eq!(s.missing_files, ["/data/tex/wood.png"], "{s:?}");
    let notes = missing_files_warnings(&env, "magenta").await?;
    println!("MissingFiles Events under Warn: {notes:?}");
    for note in &notes {
        assert!(
            note.contains("rendering anyway")
                && note.contains("missingFiles: Warn")
                && note.contains("/data/tex/wood.png")
                && !note.contains("bad input"),
            "{note}"
        );
    }
    Ok(())
}
