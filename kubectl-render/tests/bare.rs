//! A cluster without renderfarm: every verb that needs RenderJobs says so in one line and
//! exits 1. Needs a control plane where the RenderJob CRD is not installed, such as a second
//! local one: `RENDERFARM_PORT_OFFSET=300 RENDERFARM_CLUSTER_DIR=DIR hack/cluster.sh up`, then
//! `eval "$(RENDERFARM_PORT_OFFSET=300 RENDERFARM_CLUSTER_DIR=DIR hack/cluster.sh env)"`. Run:
//! `cargo test -p kubectl-render --test bare -- --ignored --nocapture`.

mod common;

use anyhow::{Context as _, Result, ensure};
use common::plugin;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::Api;

const CRD: &str = "renderjobs.renderfarm.io";
const WANT: &str = "error: renderfarm is not installed in this cluster: the API server has no renderjobs.renderfarm.io/v1alpha1 (install it: helm install renderfarm";

#[tokio::test]
#[ignore = "needs a cluster without renderfarm's CRD: hack/cluster.sh up with RENDERFARM_CLUSTER_DIR of its own"]
async fn every_verb_says_renderfarm_is_not_installed() -> Result<()> {
    let client = Client::try_default()
        .await
        .context("no cluster: start one without renderfarm (see this file's header)")?;
    let crds: Api<CustomResourceDefinition> = Api::all(client);
    ensure!(
        crds.get_opt(CRD).await?.is_none(),
        "this cluster has {CRD}: run this test on one without renderfarm"
    );
    let cases: [&[&str]; 8] = [
        &["list"],
        &["list", "-A"],
        &["status", "shot"],
        &["watch", "shot"],
        &["submit", "--in-claim", "scenes/a.blend", "--frames", "1-3"],
        &["fetch", "shot", "--preview"],
        &["logs", "shot"],
        &["ui", "--port", "0"],
    ];
    for args in cases {
        let out = plugin().args(args).output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        println!(
            "kubectl render {} (exit {:?}): {}",
            args.join(" "),
            out.status.code(),
            stderr.trim_end()
        );
        ensure!(
            out.status.code() == Some(1),
            "{args:?} exit {:?}",
            out.status.code()
        );
        ensure!(
            stderr.lines().count() == 1,
            "{args:?}: not one line: {stderr}"
        );
        ensure!(stderr.starts_with(WANT), "{args:?}: {stderr}");
        ensure!(
            out.stdout.is_empty(),
            "{args:?} printed {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(())
}
