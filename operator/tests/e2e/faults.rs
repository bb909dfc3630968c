//! The API server pushing back. (a) API Priority and Fairness: a priority level of a few seats
//! that rejects what does not fit, for the operator's identity only, answers bursts with 429;
//! the render completes, exact, with no batch created twice. (b) Injected 5xx: an admission
//! webhook that cannot be reached, with `failurePolicy: Fail`, refuses Job creation and status
//! writes in the test's namespace for a while mid-render; once it is removed the operator
//! recovers on its own and the render completes, exact, with no batch created twice.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::api::PostParams;
use serde_json::{Value, json};

use crate::faultkit::{
    ClusterObjects, MINUTE, Replica, apiserver_metrics, apply_cluster_object, client_from, ms,
    own_identity, poke, samples, sum, watch_jobs,
};
use crate::harness::{Env, status, wait_until};

const RENDERS: usize = 3;
/// How long after the fault ends a render must be moving again.
const RECOVERY_BOUND: std::time::Duration = std::time::Duration::from_secs(30);
/// Batches of each render under a throttled priority level.
const BATCHES: usize = 40;

/// Requests the API server rejected at a priority level.
fn rejected(priority_level: &str) -> Result<f64> {
    Ok(samples(
        &apiserver_metrics()?,
        "apiserver_flowcontrol_rejected_requests_total",
    )
    .iter()
    .filter(|(l, _)| l.get("priority_level").map(String::as_str) == Some(priority_level))
    .map(|(_, v)| v)
    .sum())
}

#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn throttled_by_priority_and_fairness_still_exact() -> Result<()> {
    let env = Env::new("apf").await?;
    let mut jobs = watch_jobs(&env).await?;
    let (user, kubeconfig) = own_identity(&env, "operator").await?;
    let mut cluster = ClusterObjects::default();
    let level = format!("{}-tiny", env.ns);
    // The fewest seats a Limited level can have that still lets work through (1 share of
    // the server's concurrency), nothing lent or borrowed, and no queue: what does not fit is
    // rejected at once with 429.
    let pl = apply_cluster_object(
        &env,
        &mut cluster,
        (
            "flowcontrol.apiserver.k8s.io",
            "v1",
            "PriorityLevelConfiguration",
        ),
        "prioritylevelconfigurations",
        json!({
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "PriorityLevelConfiguration",
            "metadata": {"name": level},
            "spec": {"type": "Limited", "limited": {
                "nominalConcurrencyShares": 1, "lendablePercent": 0, "borrowingLimitPercent": 0,
                "limitResponse": {"type": "Reject"},
            }},
        }),
    )
    .await?;
    apply_cluster_object(
        &env,
        &mut cluster,
        ("flowcontrol.apiserver.k8s.io", "v1", "FlowSchema"),
        "flowschemas",
        json!({
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema",
            "metadata": {"name": level},
            "spec": {
                "priorityLevelConfiguration": {"name": level},
                // Before every default schema that could match a ServiceAccount.
                "matchingPrecedence": 500,
                "distinguisherMethod": {"type": "ByUser"},
                "rules": [{
                    "subjects": [{"kind": "ServiceAccount",
                                  "serviceAccount": {"name": "operator", "namespace": env.ns}}],
                    "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                                       "namespaces": ["*"], "clusterScope": true}],
                    "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                }],
            },
        }),
    )
    .await?;
    // In force once the API server files the identity's requests under the new level (it says
    // which in a response header).
    let as_operator = client_from(&kubeconfig).await?;
    let pl_uid = pl.uid().context("priority level without uid")?;
    let path = format!("/api/v1/namespaces/{}/configmaps?limit=1", env.ns);
    wait_until(MINUTE, "the flow schema in force", || async {
        let req = axum::http::Request::get(path.as_str()).body(kube::client::Body::empty())?;
        let res = as_operator.send(req).await?;
        let level = res
            .headers()
            .get("X-Kubernetes-PF-PriorityLevel-UID")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok((level.as_deref() == Some(pl_uid.as_str())).then_some(()))
    })
    .await?;
    let rejected_before = rejected(&level)?;

    let kc = kubeconfig.display().to_string();
    let op = Replica::start(&env, "operator", &[], &[("KUBECONFIG", kc.as_str())])?;
    let started = Instant::now();
    let spec = json!({"frames": {"start": 1, "end": BATCHES}, "batchSize": 1,
                      "parallelism": BATCHES});
    // One render alone fills its slots in one pass, applying 8 Jobs at a time: far more
    // requests at once than the level has seats. Then more renders while it runs, which
    // share the Job controller's queue (a few Jobs waiting each) but not the level's seats.
    env.create("apf-0", spec.clone()).await?;
    jobs.wait(MINUTE, "the first render's Jobs seen", |s| {
        s.uids.len() >= BATCHES
    })
    .await?;
    for i in 1..RENDERS {
        env.create(&format!("apf-{i}"), spec.clone()).await?;
    }
    let mut finished = Vec::new();
    for i in 0..RENDERS {
        let rj = env
            .wait_phase(&format!("apf-{i}"), "Succeeded", 3 * MINUTE)
            .await?;
        finished.push(rj);
    }
    let took = started.elapsed();
    jobs.wait(MINUTE, "every Job seen", |s| {
        s.uids.len() >= RENDERS * BATCHES
    })
    .await?;
    let rejected_429 = rejected(&level)? - rejected_before;
    let metrics = op.metrics()?;
    let errors = sum(&metrics, "renderfarm_reconcile_errors_total");
    let (writes, by) = op.writes()?;
    let requests = op.writes_logged_since(0)?.len();
    let (twice, seen) = jobs.with(|s| (s.twice(), s.uids.len()));
    println!(
        "apf: {user} on a priority level of its own ({level}, 1 share, no queue): {rejected_429} \
         requests rejected with 429; {RENDERS} renders of {BATCHES} batches in {:.1} s; \
         {requests} write requests sent (429s retried by the client), {writes} writes counted \
         ({by:?}), {errors} failed reconciles; {seen} Jobs, {} created twice",
        took.as_secs_f64(),
        twice.len()
    );
    ensure!(
        rejected_429 > 0.0,
        "the API server rejected none of the operator's requests: nothing was throttled"
    );
    ensure!(twice.is_empty(), "batches created twice: {twice:?}");
    assert_eq!(seen, RENDERS * BATCHES);
    let all = format!("0-{}", BATCHES - 1);
    for rj in &finished {
        let s = status(rj);
        assert_eq!(
            (
                s.batches.succeeded,
                s.batches.failed,
                s.frames.rendered,
                s.succeeded_batches.as_deref()
            ),
            (BATCHES as i64, 0, BATCHES as i64, Some(all.as_str())),
            "{}",
            rj.name_any()
        );
    }
    drop(cluster);
    Ok(())
}

/// Requests of the operator the API server failed with a 5xx after byte `from` of its log:
/// (names of the Jobs whose create was refused, Job creates refused, status writes refused).
fn refused(op: &Replica, from: u64) -> Result<(BTreeSet<String>, usize, usize)> {
    let lines = op.log_lines_since(from, "failed with status 5")?;
    let url = |l: &str| -> Option<String> {
        let v: Value = serde_json::from_str(l).ok()?;
        v.get("spans")?.as_array()?.iter().find_map(|s| {
            s.get("http.url")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
    };
    let urls: Vec<String> = lines.iter().filter_map(|l| url(l)).collect();
    let status_writes = urls.iter().filter(|u| u.contains("/renderjobs/")).count();
    let creates: Vec<String> = urls
        .iter()
        .filter_map(|u| u.split("/jobs/").nth(1)?.split('?').next())
        .map(str::to_string)
        .collect();
    Ok((
        creates.iter().cloned().collect(),
        creates.len(),
        status_writes,
    ))
}

#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn injected_5xx_on_job_create_and_status_write() -> Result<()> {
    const N: usize = 30;
    let env = Env::new("http5xx").await?;
    let mut jobs = watch_jobs(&env).await?;
    let mut cluster = ClusterObjects::default();
    let op = Replica::start(&env, "operator", &[], &[])?;
    let started = Instant::now();
    env.create(
        "flaky",
        json!({"frames": {"start": 1, "end": N}, "batchSize": 1, "parallelism": 4}),
    )
    .await?;
    env.wait_rj("flaky", "4 batches done", MINUTE, |rj| {
        status(rj).batches.succeeded >= 4
    })
    .await?;

    // Nothing listens on this port: every call of the webhook fails, and with failurePolicy
    // Fail the API server answers 500. Only this namespace's Job creates and RenderJob status
    // writes are sent to it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let name = format!("{}-unreachable", env.ns);
    let webhook = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{
            "name": "unreachable.e2e.renderfarm.io",
            "clientConfig": {"url": format!("https://127.0.0.1:{closed}/validate")},
            "rules": [
                {"apiGroups": ["batch"], "apiVersions": ["v1"], "operations": ["CREATE"],
                 "resources": ["jobs"], "scope": "Namespaced"},
                {"apiGroups": ["renderfarm.io"], "apiVersions": ["*"], "operations": ["UPDATE"],
                 "resources": ["renderjobs/status"], "scope": "Namespaced"},
            ],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": env.ns}},
            "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 2,
        }],
    });
    let from = op.log_len();
    apply_cluster_object(
        &env,
        &mut cluster,
        (
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
        ),
        "validatingwebhookconfigurations",
        webhook,
    )
    .await?;
    let installed = Instant::now();
    // In force once a dry-run Job create in the namespace fails the same way.
    let probe: Job = serde_json::from_value(json!({
        "metadata": {"name": "probe"},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
                 "containers": [{"name": "c", "image": "busybox"}]}}},
    }))?;
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let jobs_api = env.jobs();
    wait_until(MINUTE, "the webhook in force", || async {
        Ok(match jobs_api.create(&dry, &probe).await {
            Err(kube::Error::Api(e)) if e.code >= 500 => Some(()),
            _ => None,
        })
    })
    .await?;
    let in_force = installed.elapsed();
    // Held until the operator was refused both kinds of write and failed 8 reconciles in a
    // row: an uncapped doubling of the retry delay would be at minutes by then. Changes to the
    // RenderJob make it reconcile (and fail) at once, as pod changes do on a busy cluster.
    let failed = || -> Result<f64> { Ok(sum(&op.metrics()?, "renderfarm_reconcile_errors_total")) };
    let (creates, writes) = loop {
        let (_, c, w) = refused(&op, from)?;
        let n = failed()?;
        if c >= 3 && w >= 1 && n >= 8.0 {
            break (c, w);
        }
        ensure!(
            installed.elapsed() < MINUTE,
            "after a minute only {c} Job creates and {w} status writes refused, {n} failed \
             reconciles"
        );
        poke(&env, "flaky").await?;
        wait_until(Duration::from_secs(2), "a reconcile to fail", || async {
            Ok((failed()? > n).then_some(()))
        })
        .await
        .ok();
    };
    let held = installed.elapsed();
    let created_before = jobs.with(|s| s.order.len());
    cluster.delete(
        "validatingwebhookconfigurations.admissionregistration.k8s.io",
        &name,
    )?;
    let removed = Instant::now();
    let (names, all_creates, all_writes) = refused(&op, from)?;

    // Bounded backoff: the operator's retries are due within seconds, so a Job comes well
    // within this bound once nothing refuses it, also for the batches whose create failed
    // (the figures are printed).
    jobs.wait(
        RECOVERY_BOUND,
        "a Job created after the webhook is gone",
        |s| s.order.len() > created_before,
    )
    .await?;
    let first_create = removed.elapsed();
    jobs.wait(
        RECOVERY_BOUND,
        &format!("the Jobs whose create was refused: {names:?}"),
        |s| names.iter().all(|n| s.uids.contains_key(n)),
    )
    .await?;
    let refused_created = removed.elapsed();
    let rj = env.wait_phase("flaky", "Succeeded", 2 * MINUTE).await?;
    let recovered = removed.elapsed();
    let took = started.elapsed();
    let errors = sum(&op.metrics()?, "renderfarm_reconcile_errors_total");
    let (twice, seen) = jobs.with(|s| (s.twice(), s.uids.len()));
    let s = status(&rj);
    println!(
        "5xx: webhook in force after {} ms, held {} ms: {all_creates} Job creates and \
         {all_writes} status writes answered 5xx (at least {creates} and {writes} when removal \
         began); {errors} failed reconciles; after removal the first Job came in {} ms, the \
         refused ones ({names:?}) in {} ms, the render finished in {} ms ({:.1} s in all); \
         {seen} Jobs, {} created twice",
        ms(in_force),
        ms(held),
        ms(first_create),
        ms(refused_created),
        ms(recovered),
        took.as_secs_f64(),
        twice.len()
    );
    ensure!(twice.is_empty(), "batches created twice: {twice:?}");
    assert_eq!(seen, N);
    assert_eq!(
        (
            s.batches.succeeded,
            s.batches.failed,
            s.frames.rendered,
            s.succeeded_batches.as_deref()
        ),
        (N as i64, 0, N as i64, Some("0-29"))
    );
    Ok(())
}
