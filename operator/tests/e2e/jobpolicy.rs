//! The chart's ValidatingAdmissionPolicy: with the cluster-wide ClusterRole, the operator's
//! ServiceAccount token can still create only renderfarm-shaped Jobs, in allowed namespaces.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use renderfarm::job::{self, JobConfig};
use renderfarm::plan::Plan;
use serde_json::json;

use crate::chart::{chart, helm, token_kubeconfig};
use crate::harness::{Env, condition, kubectl, status};

/// A client and kubeconfig that authenticate with the chart's ServiceAccount token.
async fn as_service_account(env: &Env, sa: &str) -> Result<(kube::Client, PathBuf)> {
    let (ok, token) = kubectl(&["create", "token", sa, "-n", &env.ns, "--duration", "1h"])?;
    ensure!(ok, "kubectl create token: {token}");
    let path = std::env::temp_dir().join(format!("{}-policy.kubeconfig", env.ns));
    token_kubeconfig(&path, token.trim())?;
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&path)?,
        &KubeConfigOptions::default(),
    )
    .await?;
    Ok((kube::Client::try_from(config)?, path))
}

/// The Job the operator would create for batch 0 of `rj`, in namespace `ns`.
fn batch_job(env: &Env, ns: &str) -> Result<Job> {
    let mut rj = env.renderjob("probe", json!({"frames": {"start": 1, "end": 1}}))?;
    rj.metadata.uid = Some("0b1c2d3e-0000-4000-8000-00000000abcd".into());
    rj.metadata.namespace = Some(ns.into());
    let plan = Plan::new(&rj.spec.frames, rj.spec.batch_size).context("plan")?;
    let config = JobConfig::new("renderfarm/render-node:dev");
    let mut job = job::build(&rj, &plan.batch(0).context("batch")?, &config, true)?;
    // No owner: the probe RenderJob does not exist.
    job.metadata.owner_references = None;
    Ok(job)
}

/// Creating `job` in `ns` is refused by the policy, with `words` in the message.
async fn refused(client: &kube::Client, ns: &str, job: &Job, words: &str) -> Result<()> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    match jobs.create(&PostParams::default(), job).await {
        Err(kube::Error::Api(e)) if e.message.contains(words) => {
            println!("refused ({}): {}", e.code, e.message);
            Ok(())
        }
        Err(e) => bail!("refused, but not for {words:?}: {e}"),
        Ok(_) => bail!("the operator's token created a Job it must not: {words}"),
    }
}

#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn the_operators_token_creates_only_renderfarm_shaped_jobs() -> Result<()> {
    let mut env = Env::new("jobpolicy").await?;
    let release = env.ns.clone();
    // Cluster mode: a ClusterRole to create Jobs anywhere, and the policy that narrows it.
    helm(&[
        "install",
        &release,
        &chart(),
        "--namespace",
        &env.ns,
        "--wait=false",
        "--set",
        "replicaCount=0",
    ])?;
    let result = check(&mut env, &release).await;
    helm(&["uninstall", &release, "--namespace", &env.ns, "--wait"])?;
    result
}

async fn check(env: &mut Env, release: &str) -> Result<()> {
    let sa = format!("{release}-renderfarm");
    let (client, kubeconfig) = as_service_account(env, &sa).await?;
    let ns = env.ns.clone();
    // The policy takes a moment to reach the API server's admission chain: wait until a Job
    // with a Secret volume is refused.
    let mut secret = batch_job(env, &ns)?;
    if let Some(pod) = secret.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        pod.volumes
            .get_or_insert_with(Vec::new)
            .push(serde_json::from_value(
                json!({"name": "creds", "secret": {"secretName": "anything"}}),
            )?);
    }
    let started = std::time::Instant::now();
    loop {
        match refused(&client, &ns, &secret, "mount only the render storage claim").await {
            Ok(()) => break,
            Err(e) if started.elapsed() < Duration::from_secs(20) => {
                println!("not yet: {e}");
                // A probe that got through must not linger.
                let jobs: Api<Job> = Api::namespaced(env.client.clone(), &ns);
                let _ = jobs.delete("probe-0000", &Default::default()).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
    let mut other_sa = batch_job(env, &ns)?;
    if let Some(pod) = other_sa
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
    {
        pod.service_account_name = Some("deployer".into());
    }
    refused(&client, &ns, &other_sa, "default ServiceAccount").await?;
    let mut token = batch_job(env, &ns)?;
    if let Some(pod) = token.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        pod.automount_service_account_token = Some(true);
    }
    refused(&client, &ns, &token, "no ServiceAccount token").await?;
    let mut root = batch_job(env, &ns)?;
    if let Some(pod) = root.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        pod.containers[0].security_context = None;
    }
    refused(&client, &ns, &root, "drop every capability").await?;
    refused(
        &client,
        "kube-system",
        &batch_job(env, "kube-system")?,
        "system namespace",
    )
    .await?;

    // A normal render, by the operator running under that token, and its preview Job: the
    // policy admits both.
    let kc = kubeconfig.display().to_string();
    env.start_operator_with(&[], &[("KUBECONFIG", kc.as_str())])?;
    env.create(
        "allowed",
        json!({"frames": {"start": 1, "end": 4}, "batchSize": 2, "preview": {"enabled": true}}),
    )
    .await?;
    let rj = env
        .wait_phase("allowed", "Succeeded", Duration::from_secs(120))
        .await?;
    assert_eq!(status(&rj).batches.succeeded, 2);
    let rj = env
        .wait_rj("allowed", "PreviewReady", Duration::from_secs(120), |rj| {
            condition(rj, "PreviewReady")
                .is_some_and(|c| c.reason != "Running" && c.reason != "Pending")
        })
        .await?;
    let ready = condition(&rj, "PreviewReady").context("PreviewReady")?;
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "Ready"),
        "{}",
        ready.message
    );
    Ok(())
}
