//! The Helm chart on a real API server: it installs, and its RBAC is exactly enough: the
//! operator running with the chart's ServiceAccount token completes a render, and that token
//! can read no secrets and touch nothing the chart does not grant.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Secret};
use kube::api::{Api, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

use crate::harness::{Env, kubectl, status};

pub fn helm(args: &[&str]) -> Result<String> {
    let out = Command::new("helm")
        .args(args)
        .output()
        .context("running helm (is it on PATH?)")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(out.status.success(), "helm {args:?} failed: {text}");
    Ok(text)
}

pub fn chart() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../charts/renderfarm")
        .display()
        .to_string()
}

/// A kubeconfig for the same cluster that authenticates with `token` instead of admin certs.
pub fn token_kubeconfig(path: &std::path::Path, token: &str) -> Result<()> {
    let admin = Kubeconfig::read().context("reading the admin kubeconfig")?;
    let cluster = admin
        .clusters
        .first()
        .and_then(|c| c.cluster.clone())
        .context("no cluster in kubeconfig")?;
    let config = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "operator"}}],
        "current-context": "c",
    });
    std::fs::write(path, serde_yaml::to_string(&config)?)?;
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: hack/test.sh"]
async fn chart_rbac_is_enough_and_no_more() -> Result<()> {
    let mut env = Env::new("rbac").await?;
    let release = env.ns.clone();
    // Namespaced mode: a Role in the test namespace; the operator runs here with its token.
    helm(&[
        "install",
        &release,
        &chart(),
        "--namespace",
        &env.ns,
        "--wait=false",
        "--set",
        &format!("watchNamespace={}", env.ns),
        "--set",
        "replicaCount=0",
    ])?;
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.ns);
    ensure!(
        deployments.list(&ListParams::default()).await?.items.len() == 1,
        "the Deployment was not installed"
    );

    let sa = format!("{release}-renderfarm");
    let (ok, token) = kubectl(&["create", "token", &sa, "-n", &env.ns, "--duration", "1h"])?;
    ensure!(ok, "kubectl create token: {token}");
    let kubeconfig = std::env::temp_dir().join(format!("{}-operator.kubeconfig", env.ns));
    token_kubeconfig(&kubeconfig, token.trim())?;
    let kc = kubeconfig.display().to_string();
    // As the chart runs it: with leader election, under the ServiceAccount's token.
    env.start_operator_with(
        &["--leader-elect", "--lease-namespace", &env.ns.clone()],
        &[("KUBECONFIG", kc.as_str())],
    )?;
    env.create(
        "rbac",
        json!({"frames": {"start": 1, "end": 6}, "batchSize": 2}),
    )
    .await?;
    let rj = env
        .wait_phase("rbac", "Succeeded", Duration::from_secs(120))
        .await?;
    assert_eq!(status(&rj).batches.succeeded, 3);
    let events = env.event_reasons()?;
    assert!(
        events.contains("RenderComplete"),
        "the operator could not record events: {events}"
    );

    // And no more than that.
    let options = KubeConfigOptions::default();
    let config =
        kube::Config::from_custom_kubeconfig(Kubeconfig::read_from(&kubeconfig)?, &options).await?;
    let as_operator = kube::Client::try_from(config)?;
    let forbidden = |r: kube::Result<()>, what: &str| -> Result<()> {
        match r {
            Err(kube::Error::Api(e)) if e.code == 403 => Ok(()),
            Ok(()) => bail!("the operator's token may {what}"),
            Err(e) => bail!("{what}: unexpected error {e}"),
        }
    };
    let secrets: Api<Secret> = Api::namespaced(as_operator.clone(), &env.ns);
    forbidden(
        secrets.list(&ListParams::default()).await.map(|_| ()),
        "list secrets",
    )?;
    forbidden(secrets.get("anything").await.map(|_| ()), "read a secret")?;
    let cms: Api<ConfigMap> = Api::namespaced(as_operator.clone(), &env.ns);
    forbidden(
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "x"}}))?,
        )
        .await
        .map(|_| ()),
        "create configmaps",
    )?;
    let deps: Api<Deployment> = Api::namespaced(as_operator.clone(), &env.ns);
    forbidden(
        deps.list(&ListParams::default()).await.map(|_| ()),
        "list deployments",
    )?;
    let rjs: Api<renderfarm::crd::RenderJob> = Api::namespaced(as_operator.clone(), &env.ns);
    forbidden(
        rjs.delete("rbac", &Default::default()).await.map(|_| ()),
        "delete RenderJobs",
    )?;
    // Nodes: read, for the node blocklist (a render whose every node is blocked fails), and
    // nothing else.
    let nodes: Api<Node> = Api::all(as_operator.clone());
    nodes
        .list(&ListParams::default().limit(1))
        .await
        .context("the operator's token must list nodes")?;
    forbidden(
        nodes
            .delete("no-such-node", &Default::default())
            .await
            .map(|_| ()),
        "delete nodes",
    )?;
    let all_jobs: Api<k8s_openapi::api::batch::v1::Job> =
        Api::namespaced(as_operator.clone(), "default");
    forbidden(
        all_jobs.list(&ListParams::default()).await.map(|_| ()),
        "list Jobs outside its namespace",
    )?;

    helm(&["uninstall", &release, "--namespace", &env.ns, "--wait"])?;
    ensure!(
        deployments
            .list(&ListParams::default())
            .await?
            .items
            .is_empty(),
        "helm uninstall left the Deployment"
    );
    Ok(())
}
