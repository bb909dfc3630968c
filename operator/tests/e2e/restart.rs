//! The API server and etcd restart in the middle of a render: the operator reconnects, the
//! render completes, nothing is duplicated. Disruptive for everything else on the cluster, so
//! `hack/test.sh` runs it on its own, after the rest of the suite.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use kube::api::ListParams;
use serde_json::json;

use crate::harness::{Env, cluster_state_dir, status, wait_until};

fn kill(component: &str) -> Result<()> {
    let pid = std::fs::read_to_string(cluster_state_dir().join(format!("run/{component}.pid")))
        .with_context(|| format!("{component} pid file (is this the local cluster?)"))?;
    let status = Command::new("kill").args(["-9", pid.trim()]).status()?;
    ensure!(status.success(), "could not kill {component}");
    Ok(())
}

#[tokio::test]
#[ignore = "restarts the local control plane: hack/test.sh runs it alone"]
async fn apiserver_and_etcd_restart_mid_render() -> Result<()> {
    let mut env = Env::new("restart").await?;
    let api = env.jobs();
    let observer = crate::harness::JobUids::watch(api);
    env.start_operator()?;
    env.create(
        "rs",
        json!({"frames": {"start": 1, "end": 30}, "batchSize": 1, "parallelism": 3}),
    )
    .await?;
    let jobs = env.jobs();
    wait_until(Duration::from_secs(60), "a third of the Jobs", || async {
        Ok((jobs.list(&ListParams::default()).await?.items.len() >= 10).then_some(()))
    })
    .await?;

    kill("kube-apiserver")?;
    kill("etcd")?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let down = Instant::now();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let up = Command::new("bash")
        .arg(root.join("hack/cluster.sh"))
        .arg("up")
        .output()?;
    ensure!(
        up.status.success(),
        "cluster.sh up: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    eprintln!(
        "restart: API server and etcd back after {} ms",
        down.elapsed().as_millis()
    );

    let rj = env
        .wait_phase("rs", "Succeeded", Duration::from_secs(240))
        .await?;
    let (seen, duplicates) = observer.finish().await?;
    assert!(
        duplicates.is_empty(),
        "batches created twice: {duplicates:?}"
    );
    assert_eq!(seen, 30);
    let s = status(&rj);
    assert_eq!(
        (s.batches.succeeded, s.frames.rendered, s.batches.failed),
        (30, 30, 0)
    );
    eprintln!("restart: render completed after the outage, 30 batches, 0 duplicates");
    Ok(())
}
