//! Rendering: batches, parallelism, failures and retries, scheduling.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use anyhow::{Result, ensure};
use clap::Parser;
use futures::TryStreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::api::{DeleteParams, EvictParams, ListParams};
use kube::runtime::{WatchStreamExt, watcher};
use render_contract::RenderArgs;
use serde_json::json;

use crate::harness::{Env, SCENARIO_LABEL, condition, kubectl, status, watch_until};

const MINUTE: Duration = Duration::from_secs(60);

/// A metric sample: name, labels, value.
type MetricSample = (&'static str, &'static [(&'static str, &'static str)], f64);

fn finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        })
}

/// 1. Frames 1–22 in batches of 5: five Jobs with the right frames and arguments, the phases in
/// order, exact counts, the printer columns, and `kubectl wait --for=condition=Complete`.
#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn renders_every_batch_and_reports_progress() -> Result<()> {
    let mut env = Env::new("render").await?;
    env.start_operator()?;
    // Watch every status the operator writes, to see the phases in order.
    let phases = {
        let api = env.rjs();
        tokio::spawn(async move {
            let mut seen: Vec<String> = Vec::new();
            let stream = watcher(api, watcher::Config::default().fields("metadata.name=shot"))
                .applied_objects();
            futures::pin_mut!(stream);
            while let Ok(Some(rj)) = stream.try_next().await {
                let phase = rj
                    .status
                    .map(|s| s.phase.as_str().to_string())
                    .unwrap_or_default();
                if !phase.is_empty() && seen.last() != Some(&phase) {
                    seen.push(phase.clone());
                }
                if phase == "Succeeded" {
                    break;
                }
            }
            seen
        })
    };
    env.create(
        "shot",
        json!({"frames": {"start": 1, "end": 22}, "batchSize": 5, "parallelism": 5}),
    )
    .await?;
    let rj = env.wait_phase("shot", "Succeeded", 2 * MINUTE).await?;

    let jobs = env.jobs().list(&ListParams::default()).await?.items;
    let mut frames: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for job in &jobs {
        let pod = job
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod template");
        let args =
            RenderArgs::try_parse_from_args(pod.containers[0].args.as_deref().unwrap_or_default())?;
        ensure!(
            args.blend_file.to_str() == Some("/data/scenes/test.blend"),
            "blend file {:?}",
            args.blend_file
        );
        ensure!(
            args.output == "/data/renders/shot/frame_####",
            "output {}",
            args.output
        );
        frames.insert(job.name_any(), args.frames.frames());
    }
    let expected: BTreeMap<String, Vec<i32>> = [
        ("shot-0000", (1..=5).collect()),
        ("shot-0001", (6..=10).collect()),
        ("shot-0002", (11..=15).collect()),
        ("shot-0003", (16..=20).collect()),
        ("shot-0004", vec![21, 22]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(frames, expected);

    let s = status(&rj);
    assert_eq!(
        (
            s.batches.total,
            s.batches.succeeded,
            s.batches.failed,
            s.batches.pending,
            s.batches.active
        ),
        (5, 5, 0, 0, 0)
    );
    assert_eq!((s.frames.rendered, s.frames.total), (22, 22));
    assert_eq!(s.pods.succeeded, 5);
    assert_eq!(s.progress.as_deref(), Some("100%"));
    assert!(s.start_time.is_some() && s.completion_time.is_some());
    assert_eq!(s.observed_generation, rj.metadata.generation);
    assert_eq!(
        condition(&rj, "Complete").map(|c| c.status),
        Some("True".into())
    );

    let seen = tokio::time::timeout(MINUTE, phases).await??;
    assert_eq!(
        seen.first().map(String::as_str),
        Some("Pending"),
        "phases seen: {seen:?}"
    );
    assert!(
        seen.contains(&"Running".to_string()),
        "phases seen: {seen:?}"
    );
    assert_eq!(
        seen.last().map(String::as_str),
        Some("Succeeded"),
        "phases seen: {seen:?}"
    );

    // The operator's own view: health, readiness and metrics.
    assert_eq!(env.http_get("/healthz")?.0, 200);
    assert_eq!(env.http_get("/readyz")?.0, 200);
    // Whole samples, name, labels and value: `...} 5` does not pass for `...} 50`.
    let expected: [MetricSample; 4] = [
        ("renderfarm_batches_total", &[("result", "created")], 5.0),
        ("renderfarm_batches_total", &[("result", "succeeded")], 5.0),
        ("renderfarm_frames_rendered_total", &[], 22.0),
        (
            "renderfarm_api_writes_total",
            &[("verb", "apply"), ("resource", "jobs")],
            5.0,
        ),
    ];
    let differ = |m: &crate::harness::Metrics| -> Vec<String> {
        expected
            .iter()
            .filter(|(name, labels, value)| m.get(name, labels) != Some(*value))
            .map(|(name, labels, value)| {
                format!("{name}{labels:?} = {:?}, want {value}", m.get(name, labels))
            })
            .collect()
    };
    // The counters move just after the status write that the test saw: wait for the operator
    // to be idle, then compare.
    let metrics = env.wait_idle().await?;
    let wrong = differ(&metrics);
    assert!(wrong.is_empty(), "metrics: {wrong:?}");
    let metrics = env.metrics()?;
    assert!(
        differ(&metrics).is_empty(),
        "metrics moved after idle: {:?}",
        differ(&metrics)
    );

    let (ok, out) = kubectl(&["get", "rj", "-n", &env.ns])?;
    assert!(ok, "{out}");
    let header: Vec<&str> = out
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "PHASE", "PROGRESS", "FRAMES", "BATCHES", "AGE"],
        "{out}"
    );
    let row: Vec<&str> = out
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        &row[..5],
        ["shot", "Succeeded", "100%", "22/22", "5/5"],
        "{out}"
    );
    let (ok, out) = kubectl(&[
        "wait",
        "--for=condition=Complete",
        "rj/shot",
        "-n",
        &env.ns,
        "--timeout=30s",
    ])?;
    assert!(ok, "kubectl wait failed: {out}");

    let events = env.event_reasons()?;
    for reason in ["BatchesCreated", "RenderComplete"] {
        assert!(events.contains(reason), "no {reason} event in {events}");
    }
    Ok(())
}

/// 2. Parallelism 2 over 10 batches: never more than 2 unfinished Jobs at once.
#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn parallelism_bounds_running_batches() -> Result<()> {
    let mut env = Env::new("parallel").await?;
    let api = env.jobs();
    let observer = tokio::spawn(async move {
        let mut jobs: HashMap<String, bool> = HashMap::new();
        let mut max_unfinished = 0;
        let stream = watcher(api, watcher::Config::default()).applied_objects();
        futures::pin_mut!(stream);
        while let Ok(Some(job)) = stream.try_next().await {
            jobs.insert(job.name_any(), finished(&job));
            max_unfinished = max_unfinished.max(jobs.values().filter(|f| !**f).count());
            if jobs.len() == 10 && jobs.values().all(|f| *f) {
                break;
            }
        }
        (max_unfinished, jobs.len())
    });
    env.start_operator()?;
    env.create(
        "par",
        json!({"frames": {"start": 1, "end": 10}, "batchSize": 1, "parallelism": 2}),
    )
    .await?;
    let rj = env.wait_phase("par", "Succeeded", 3 * MINUTE).await?;
    let (max_unfinished, total) = tokio::time::timeout(MINUTE, observer).await??;
    assert_eq!(total, 10);
    assert!(
        max_unfinished <= 2,
        "{max_unfinished} unfinished Jobs at once"
    );
    assert_eq!(max_unfinished, 2, "parallelism was never used");
    assert_eq!(status(&rj).batches.succeeded, 10);
    Ok(())
}

/// 2b. Start ahead, parallelism 2 over 10 batches: each running batch gets one follower whose
/// pod is told to wait for it; at no point do more than 2 Jobs render (unfinished and not
/// following an unfinished one), and never more than 4 exist unfinished.
#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn start_ahead_follows_each_running_batch_once_and_renders_within_parallelism() -> Result<()>
{
    let mut env = Env::new("ahead").await?;
    // Pods that report a time per frame, as render-node does: no batch is started ahead
    // before the render has one.
    env.stage_frames(1000).await?;
    let api = env.jobs();
    let observer = tokio::spawn(async move {
        // name → (finished, the batch it follows, its own batch)
        let mut jobs: HashMap<String, (bool, Option<u32>, Option<u32>)> = HashMap::new();
        let mut followed: BTreeMap<u32, String> = BTreeMap::new();
        let (mut max_rendering, mut max_unfinished, mut followers) = (0, 0, 0);
        let mut problems = Vec::new();
        let stream = watcher(api, watcher::Config::default()).applied_objects();
        futures::pin_mut!(stream);
        while let Ok(Some(job)) = stream.try_next().await {
            let name = job.name_any();
            let label = |key: &str| job.labels().get(key).and_then(|v| v.parse().ok());
            let after: Option<u32> = job
                .annotations()
                .get("renderfarm.io/after")
                .and_then(|v| v.parse().ok());
            let batch: Option<u32> = label("renderfarm.io/batch");
            if !jobs.contains_key(&name)
                && let Some(h) = after
            {
                followers += 1;
                let args = job
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.spec.as_ref())
                    .and_then(|p| p.containers[0].args.clone())
                    .unwrap_or_default();
                let parsed = RenderArgs::try_parse_from(
                    std::iter::once("render-node".to_string()).chain(args),
                );
                match parsed {
                    Ok(a)
                        if a.after
                            .as_ref()
                            .is_some_and(|m| m.ends_with(&format!("-{h}"))) => {}
                    other => problems.push(format!("{name}: args do not wait for {h}: {other:?}")),
                }
                let head_unfinished = jobs.values().any(|(done, _, b)| *b == Some(h) && !*done);
                if !head_unfinished {
                    problems.push(format!("{name} follows {h}, which is not running"));
                }
                if let Some(first) = followed.insert(h, name.clone()) {
                    problems.push(format!("{h} followed twice: {first}, {name}"));
                }
            }
            jobs.insert(name, (finished(&job), after, batch));
            let unfinished: BTreeSet<u32> = jobs
                .values()
                .filter(|(done, _, _)| !*done)
                .filter_map(|(_, _, b)| *b)
                .collect();
            let rendering = jobs
                .values()
                .filter(|(done, after, _)| {
                    !*done && !after.is_some_and(|h| unfinished.contains(&h))
                })
                .count();
            max_rendering = max_rendering.max(rendering);
            max_unfinished = max_unfinished.max(unfinished.len());
            if jobs.len() == 10 && jobs.values().all(|(done, _, _)| *done) {
                break;
            }
        }
        (max_rendering, max_unfinished, followers, problems)
    });
    env.start_operator()?;
    env.create(
        "ahead",
        json!({"frames": {"start": 1, "end": 10}, "batchSize": 1, "parallelism": 2, "startAhead": true,
               "podMetadata": {"labels": {SCENARIO_LABEL: env.ns.clone()}}}),
    )
    .await?;
    let rj = env.wait_phase("ahead", "Succeeded", 3 * MINUTE).await?;
    let (max_rendering, max_unfinished, followers, problems) =
        tokio::time::timeout(MINUTE, observer).await??;
    println!(
        "start ahead: at most {max_rendering} rendering, {max_unfinished} unfinished; {followers} of 10 started ahead"
    );
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(max_rendering, 2, "rendering Jobs at once");
    assert!(
        max_unfinished <= 4,
        "{max_unfinished} unfinished Jobs at once"
    );
    assert!(followers >= 1, "no batch was started ahead");
    assert_eq!(status(&rj).batches.succeeded, 10);
    Ok(())
}

fn vars(pairs: &[(&'static str, &str)]) -> BTreeMap<&'static str, String> {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

/// Make every pod of `scenario` in batches `failing` fail with `exit_code`, and the rest succeed.
async fn fail_batches(
    env: &mut Env,
    scenario: &str,
    failing: &str,
    exit_code: &str,
    reason: &str,
) -> Result<()> {
    let fail = vars(&[
        ("SCENARIO", scenario),
        ("BATCHES", failing),
        ("EXIT_CODE", exit_code),
        ("REASON", reason),
    ]);
    env.stage("fail.yaml", &format!("{scenario}-fail"), &fail)
        .await?;
    let ok = vars(&[("SCENARIO", scenario), ("BATCHES", failing)]);
    env.stage("succeed-others.yaml", &format!("{scenario}-ok"), &ok)
        .await
}

/// 3. A batch whose pod keeps failing is retried backoffLimit times, the others complete, the
/// RenderJob ends Failed naming the batch; deleting its Job renders those frames again.
#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn failing_batch_is_retried_then_reported_and_rerun_on_delete() -> Result<()> {
    let mut env = Env::new("retry").await?;
    let scenario = env.ns.clone();
    fail_batches(&mut env, &scenario, "1", "1", "Error").await?;
    env.start_operator()?;
    env.create(
        "retry",
        json!({
            "frames": {"start": 1, "end": 15}, "batchSize": 5, "parallelism": 3, "backoffLimit": 2,
            "podMetadata": {"labels": {SCENARIO_LABEL: scenario}},
        }),
    )
    .await?;
    let rj = env.wait_phase("retry", "Failed", 3 * MINUTE).await?;
    let s = status(&rj);
    assert_eq!((s.batches.succeeded, s.batches.failed), (2, 1));
    assert_eq!((s.frames.rendered, s.frames.total), (10, 15));
    assert_eq!(s.failed_batches.len(), 1, "{:?}", s.failed_batches);
    let f = &s.failed_batches[0];
    assert_eq!(
        (f.index, f.frames.as_str(), f.job.as_str()),
        (1, "6..10", "retry-0001")
    );
    assert_eq!(f.attempts, 3, "backoffLimit 2 means three attempts");
    assert_eq!((f.reason.as_str(), f.exit_code), ("BlenderError", Some(1)));
    let failed = condition(&rj, "Failed").expect("Failed condition");
    assert_eq!(failed.status, "True");
    assert!(
        failed.message.contains("frames 6..10"),
        "{}",
        failed.message
    );
    let events = env.event_reasons()?;
    assert!(
        events.contains("BatchFailed") && events.contains("RenderFailed"),
        "{events}"
    );

    // Fix the cause, delete the failed batch's Job: only that batch renders again.
    let old_uid = env.jobs().get("retry-0001").await?.uid();
    env.delete_stage(&format!("{scenario}-fail")).await?;
    env.delete_stage(&format!("{scenario}-ok")).await?;
    let all_succeed = vars(&[("SCENARIO", &scenario), ("DELAY_MS", "500")]);
    env.stage("slow.yaml", &format!("{scenario}-slow"), &all_succeed)
        .await?;
    env.jobs()
        .delete("retry-0001", &DeleteParams::background())
        .await?;
    let rj = env.wait_phase("retry", "Succeeded", 2 * MINUTE).await?;
    assert_ne!(
        env.jobs().get("retry-0001").await?.uid(),
        old_uid,
        "the Job was created again"
    );
    assert_eq!(
        env.job_names().await?,
        ["retry-0000", "retry-0001", "retry-0002"]
    );
    assert_eq!(status(&rj).frames.rendered, 15);
    assert!(status(&rj).failed_batches.is_empty());
    Ok(())
}

/// 4. The node image's bad-input exit code fails the batch at once, without retries.
#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn bad_input_fails_without_retries() -> Result<()> {
    let mut env = Env::new("badinput").await?;
    let scenario = env.ns.clone();
    let code = render_contract::exit::BAD_INPUT.to_string();
    fail_batches(&mut env, &scenario, "0", &code, "Error").await?;
    env.start_operator()?;
    env.create(
        "bad",
        json!({
            "frames": {"start": 1, "end": 5}, "batchSize": 5, "backoffLimit": 3,
            "podMetadata": {"labels": {SCENARIO_LABEL: scenario}},
        }),
    )
    .await?;
    let rj = env.wait_phase("bad", "Failed", 2 * MINUTE).await?;
    let failed = status(&rj).failed_batches;
    assert_eq!(failed.len(), 1, "{failed:?}");
    let f = &failed[0];
    assert_eq!(
        (f.reason.as_str(), f.exit_code, f.attempts),
        ("BadInput", Some(64), 1)
    );
    let job = env.jobs().get("bad-0000").await?;
    let reason = job
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Failed")
        .and_then(|c| c.reason);
    assert_eq!(reason.as_deref(), Some("PodFailurePolicy"));
    Ok(())
}

/// OOMKilled is named as such.
#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn oom_killed_batches_say_so() -> Result<()> {
    let mut env = Env::new("oom").await?;
    let scenario = env.ns.clone();
    fail_batches(&mut env, &scenario, "0", "137", "OOMKilled").await?;
    env.start_operator()?;
    env.create(
        "oom",
        json!({
            "frames": {"start": 1, "end": 10}, "batchSize": 5, "backoffLimit": 0,
            "podMetadata": {"labels": {SCENARIO_LABEL: scenario}},
        }),
    )
    .await?;
    let rj = env.wait_phase("oom", "Failed", 2 * MINUTE).await?;
    let s = status(&rj);
    assert_eq!((s.batches.succeeded, s.batches.failed), (1, 1));
    assert_eq!(s.failed_batches.len(), 1, "{:?}", s.failed_batches);
    assert_eq!(
        (
            s.failed_batches[0].reason.as_str(),
            s.failed_batches[0].exit_code
        ),
        ("OOMKilled", Some(137))
    );
    Ok(())
}

/// 5. Evicting a running batch pod is not a render failure; the batch still completes.
#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn eviction_is_not_a_failure() -> Result<()> {
    let mut env = Env::new("evict").await?;
    let scenario = env.ns.clone();
    env.stage(
        "slow.yaml",
        &format!("{scenario}-slow"),
        &vars(&[("SCENARIO", &scenario), ("DELAY_MS", "6000")]),
    )
    .await?;
    env.start_operator()?;
    env.create(
        "ev",
        json!({
            "frames": {"start": 1, "end": 5}, "batchSize": 5, "backoffLimit": 0,
            "podMetadata": {"labels": {SCENARIO_LABEL: scenario}},
        }),
    )
    .await?;
    let pods = env.pods();
    let pod = watch_until(env.pods(), MINUTE, "a running batch pod", |list| {
        list.iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .map(|p| (*p).clone())
    })
    .await?;
    pods.evict(&pod.name_any(), &EvictParams::default()).await?;
    // backoffLimit 0: had the eviction counted, the batch would have failed.
    let rj = env.wait_phase("ev", "Succeeded", 2 * MINUTE).await?;
    let s = status(&rj);
    assert_eq!((s.batches.succeeded, s.batches.failed), (1, 0));
    // The render counts the batch once its pod succeeded; its Job completes after.
    let job = watch_until(env.jobs(), MINUTE, "ev-0000 finished", |all| {
        all.iter()
            .find(|j| j.name_any() == "ev-0000" && finished(j))
            .map(|j| (*j).clone())
    })
    .await?;
    let js = job.status.unwrap_or_default();
    // podFailurePolicy's Ignore: the evicted pod counts neither as failed nor against backoff.
    assert_eq!((js.succeeded, js.failed.unwrap_or(0)), (Some(1), 0));
    let pods_now = env.pods().list(&ListParams::default()).await?.items;
    assert!(
        pods_now.iter().all(|p| p.name_any() != pod.name_any()),
        "the evicted pod is still there"
    );
    assert_eq!(pods_now.len(), 1, "a replacement pod ran the batch");
    Ok(())
}

/// 10a. A GPU RenderJob lands on the GPU node.
#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn gpu_batches_land_on_gpu_nodes() -> Result<()> {
    let mut env = Env::new("gpu").await?;
    env.start_operator()?;
    env.create(
        "gpu",
        json!({"frames": {"start": 1, "end": 4}, "batchSize": 2, "device": "OPTIX"}),
    )
    .await?;
    let nodes: BTreeSet<String> =
        watch_until(env.pods(), MINUTE, "both GPU pods scheduled", |list| {
            let nodes: BTreeSet<String> = list
                .iter()
                .filter_map(|p| p.spec.as_ref()?.node_name.clone())
                .collect();
            (list.len() >= 2
                && list
                    .iter()
                    .all(|p| p.spec.as_ref().is_some_and(|s| s.node_name.is_some())))
            .then_some(nodes)
        })
        .await?;
    assert_eq!(nodes, BTreeSet::from(["kwok-gpu-0".to_string()]));
    env.wait_phase("gpu", "Succeeded", 2 * MINUTE).await?;
    Ok(())
}

/// 10b. Pods that cannot be scheduled show Unschedulable in status.
#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn unschedulable_batches_show_why() -> Result<()> {
    let mut env = Env::new("unsched").await?;
    env.start_operator()?;
    env.create(
        "stuck",
        json!({"frames": {"start": 1, "end": 2}, "nodeSelector": {"pool": "nowhere"}}),
    )
    .await?;
    let rj = env
        .wait_rj("stuck", "Progressing reason Unschedulable", MINUTE, |rj| {
            condition(rj, "Progressing").is_some_and(|c| c.reason == "Unschedulable")
        })
        .await?;
    let c = condition(&rj, "Progressing").expect("condition");
    assert!(c.message.contains("node"), "{}", c.message);
    assert_eq!(status(&rj).pods.pending, 1);
    assert_eq!(status(&rj).phase.as_str(), "Pending");
    Ok(())
}

const TEXT: &str = r#"# HELP renderfarm_batches Batch Jobs created, succeeded and failed.
# TYPE renderfarm_batches counter
renderfarm_batches_total{result="created"} 50
renderfarm_batches_total{result="succeeded"} 5
renderfarm_api_writes_total{verb="apply",resource="jobs"} 5
renderfarm_api_writes_total{verb="apply",resource="renderjobs/status"} 12
renderfarm_frames_rendered_total 22
odd{a="x\"y,z}",b="\\"} 1.5
# EOF
"#;

/// The harness's /metrics parser (runs without a cluster).
#[test]
fn metrics_compare_whole_samples() -> anyhow::Result<()> {
    use crate::harness::Metrics;
    let m = Metrics::parse(TEXT)?;
    assert_eq!(
        m.get("renderfarm_batches_total", &[("result", "created")]),
        Some(50.0)
    );
    // A substring check would take `...} 50` for `...} 5`; whole samples do not.
    assert_ne!(
        m.get("renderfarm_batches_total", &[("result", "created")]),
        Some(5.0)
    );
    assert_eq!(m.get("renderfarm_batches_total", &[]), None);
    assert_eq!(m.get("renderfarm_batches", &[("result", "created")]), None);
    assert_eq!(
        m.get(
            "renderfarm_api_writes_total",
            &[("resource", "jobs"), ("verb", "apply")]
        ),
        Some(5.0)
    );
    assert_eq!(
        m.get("renderfarm_api_writes_total", &[("verb", "apply")]),
        None
    );
    assert_eq!(m.sum("renderfarm_api_writes_total"), 17.0);
    assert_eq!(m.get("renderfarm_frames_rendered_total", &[]), Some(22.0));
    assert_eq!(m.get("odd", &[("a", "x\"y,z}"), ("b", "\\")]), Some(1.5));
    assert!(Metrics::parse("broken{a=\"1\" 2").is_err());
    assert!(Metrics::parse("novalue").is_err());
    Ok(())
}
