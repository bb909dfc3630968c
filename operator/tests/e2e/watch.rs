//! Closed and expired watches: the operator's watches are cut mid-render and, when they come
//! back, the API server answers `410 Gone` ("too old resource version"); the operator lists
//! again, loses no event, creates no batch twice, and does not spin.
//!
//! How the 410 is made without disturbing the shared API server: the test starts a second
//! kube-apiserver of its own on the local cluster's etcd (what an HA control plane runs), with
//! the main one's flags except its port and audit log, and points only this test's operator at
//! it. It then SIGKILLs that API server mid-render, which closes every watch, and starts it
//! again. A fresh API server's watch cache starts at the current etcd revision, so a watch that
//! resumes from an older resourceVersion gets an ERROR event with code 410 and must relist.
//! Etcd compaction alone would not do it: the API server serves watches from its watch cache,
//! which answers 410 only for versions older than its own window, not etcd's.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use kube::api::PostParams;
use serde_json::json;

use crate::harness::{Env, JobUids, cluster_state_dir, kubectl, status, wait_until};

const MINUTE: Duration = Duration::from_secs(60);
const BATCHES: i64 = 40;

/// A second kube-apiserver on the local cluster's etcd, for one test's operator only.
struct ApiServer {
    exe: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    kubeconfig: PathBuf,
    child: Option<Child>,
}

impl ApiServer {
    /// Copy the running local API server's command line, with its own port and no audit log.
    fn beside_local_cluster(env: &Env) -> Result<ApiServer> {
        let pid_file = cluster_state_dir().join("run/kube-apiserver.pid");
        let pid = std::fs::read_to_string(&pid_file)
            .with_context(|| format!("{} (is this the local cluster?)", pid_file.display()))?;
        let proc = PathBuf::from("/proc").join(pid.trim());
        let exe = std::fs::read_link(proc.join("exe"))?;
        let cmdline = std::fs::read(proc.join("cmdline"))?;
        let main_args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .skip(1)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut args = Vec::new();
        let mut i = 0;
        while i < main_args.len() {
            let a = &main_args[i];
            let dropped = a.starts_with("--secure-port")
                || a.starts_with("--audit-")
                || a.starts_with("--authorization-mode");
            let takes_next = !a.contains('=')
                && main_args
                    .get(i + 1)
                    .is_some_and(|next| !next.starts_with("--"));
            if !dropped {
                args.push(a.clone());
                if takes_next {
                    args.push(main_args[i + 1].clone());
                }
            }
            i += if takes_next { 2 } else { 1 };
        }
        ensure!(
            args.iter().any(|a| a.starts_with("--etcd-servers")),
            "no --etcd-servers in the API server's command line: {main_args:?}"
        );
        args.extend([
            "--secure-port".to_string(),
            port.to_string(),
            // No kubelet talks to it, so no Node authorizer, whose graph of every pod and
            // volume takes seconds to fill before the server is ready.
            "--authorization-mode".to_string(),
            "RBAC".to_string(),
            // Both API servers would otherwise claim the same identity Lease (named after
            // the host) and take it from each other.
            "--feature-gates".to_string(),
            "APIServerIdentity=false,UnknownVersionInteroperabilityProxy=false".to_string(),
        ]);

        // The test's kubeconfig with this API server's address.
        let path = std::env::var_os("KUBECONFIG").context("KUBECONFIG is not set")?;
        let mut config: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(path)?)?;
        let clusters = config
            .get_mut("clusters")
            .and_then(|c| c.as_sequence_mut())
            .context("kubeconfig without clusters")?;
        for c in clusters {
            if let Some(cluster) = c.get_mut("cluster").and_then(|c| c.as_mapping_mut()) {
                cluster.insert("server".into(), format!("https://127.0.0.1:{port}").into());
            }
        }
        let kubeconfig = env.log_file("-apiserver.kubeconfig");
        std::fs::write(&kubeconfig, serde_yaml::to_string(&config)?)?;
        Ok(ApiServer {
            exe,
            args,
            log: env.log_file("-apiserver.log"),
            kubeconfig,
            child: None,
        })
    }

    /// Start it and wait until it is ready; returns how long that took.
    async fn start(&mut self) -> Result<Duration> {
        let started = Instant::now();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        self.child = Some(
            Command::new(&self.exe)
                .args(&self.args)
                .stdout(Stdio::from(log.try_clone()?))
                .stderr(Stdio::from(log))
                .spawn()
                .context("starting kube-apiserver")?,
        );
        let kubeconfig = self.kubeconfig.to_string_lossy().into_owned();
        let log = self.log.display().to_string();
        let child = self.child.as_mut().expect("just started");
        // A few seconds on an idle machine; far more when the cores are busy.
        wait_until(
            Duration::from_secs(90),
            "the second API server ready",
            || {
                let exited = child.try_wait();
                let kubeconfig = kubeconfig.clone();
                let log = log.clone();
                async move {
                    if let Ok(Some(code)) = exited {
                        bail!("kube-apiserver exited ({code}); see {log}");
                    }
                    let (ok, _) =
                        kubectl(&["--kubeconfig", &kubeconfig, "get", "--raw", "/readyz"])?;
                    Ok(ok.then_some(()))
                }
            },
        )
        .await?;
        Ok(started.elapsed())
    }

    /// SIGKILL: every connection to it drops at once.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sum of every sample of a metric family (all label sets) on the operator's /metrics.
fn metric(env: &Env, name: &str) -> Result<f64> {
    let (code, text) = env.http_get("/metrics")?;
    ensure!(code == 200, "/metrics answered {code}");
    Ok(text
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// `renderfarm_api_writes_total` by verb and resource: `apply jobs 40, ...`.
fn writes_by_kind(env: &Env) -> Result<String> {
    let (_, text) = env.http_get("/metrics")?;
    let parts: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let labels = l.strip_prefix("renderfarm_api_writes_total{")?;
            let (labels, value) = labels.split_once("} ")?;
            let field = |k: &str| {
                labels
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(k)?.strip_prefix("=\""))
                    .map(|v| v.trim_end_matches('"').to_string())
                    .unwrap_or_default()
            };
            Some(format!("{} {} {value}", field("verb"), field("resource")))
        })
        .collect();
    Ok(parts.join(", "))
}

const WRITES: &str = "renderfarm_api_writes_total";
const RECONCILES: &str = "renderfarm_reconcile_duration_seconds_count";
const CREATED: &str = "renderfarm_batches_total{result=\"created\"}";

#[tokio::test]
#[ignore = "needs the local cluster (hack/cluster.sh): runs a second kube-apiserver on its etcd"]
async fn closed_and_expired_watches_lose_nothing() -> Result<()> {
    let mut env = Env::new("gone").await?;
    let mut apiserver = ApiServer::beside_local_cluster(&env)?;
    let first_start = apiserver.start().await?;

    // The test itself, the Job controller and kwok use the main API server; only the operator
    // talks to the second one.
    let observer = JobUids::watch(env.jobs());
    let kubeconfig = apiserver.kubeconfig.to_string_lossy().into_owned();
    env.start_operator_with(
        &[],
        &[
            ("KUBECONFIG", kubeconfig.as_str()),
            // kube's watcher logs the 410 it gets at debug level.
            (
                "RUST_LOG",
                "info,renderfarm=debug,kube_runtime::watcher=debug",
            ),
        ],
    )?;
    let started = Instant::now();
    env.create(
        "gone",
        json!({"frames": {"start": 1, "end": BATCHES}, "batchSize": 1, "parallelism": 4}),
    )
    .await?;

    // A steady stretch first: writes per batch Job created while nothing goes wrong.
    env.wait_rj("gone", "a quarter of the batches done", MINUTE, |rj| {
        status(rj).batches.succeeded >= BATCHES / 4
    })
    .await?;
    let (steady_writes, steady_created) = (metric(&env, WRITES)?, metric(&env, CREATED)?);

    // Cut every watch; while the API server is away the render goes on (the Job controller
    // and kwok use the main one) and this write moves etcd's revision on for certain.
    apiserver.kill();
    let cut = Instant::now();
    let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(env.client.clone(), &env.ns);
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "while-away"}}))?,
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let restart = apiserver.start().await?;
    let downtime = cut.elapsed();

    let rj = env.wait_phase("gone", "Succeeded", 2 * MINUTE).await?;
    let took = started.elapsed();
    let (seen, duplicates) = observer.finish().await?;

    // No spinning once done: nothing written, (almost) nothing reconciled for five seconds.
    let (writes, reconciles) = (metric(&env, WRITES)?, metric(&env, RECONCILES)?);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_writes = metric(&env, WRITES)? - writes;
    let idle_reconciles = metric(&env, RECONCILES)? - reconciles;
    let created = metric(&env, CREATED)?;
    let kinds = writes_by_kind(&env)?;

    // The evidence that the API server answered 410 Gone to resumed watches.
    let log = env.operator_log()?;
    let gone: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("too old resource version") && l.contains("410"))
        .collect();
    let s = status(&rj);
    let per_batch = writes / BATCHES as f64;
    let steady_per_batch = steady_writes / steady_created.max(1.0);
    println!(
        "watch 410: second API server up in {:.1} s, killed and back after {:.1} s (ready in \
         {:.1} s); 410 Gone answers to the operator's resumed watches: {}; render of {BATCHES} \
         batches in {:.1} s; {seen} Jobs, duplicates {}; API writes {writes} = {per_batch:.2} \
         per batch ({kinds}; steady stretch before the cut: {steady_writes} for {steady_created} \
         batches = {steady_per_batch:.2}); reconciles {reconciles} = {:.1} per batch; idle 5 s \
         after: +{idle_writes} writes, +{idle_reconciles} reconciles",
        first_start.as_secs_f64(),
        downtime.as_secs_f64(),
        restart.as_secs_f64(),
        gone.len(),
        took.as_secs_f64(),
        duplicates.len(),
        reconciles / BATCHES as f64,
    );
    if let Some(line) = gone.first() {
        println!("watch 410: first one logged: {line}");
    }

    assert!(
        !gone.is_empty(),
        "no watch was answered 410 Gone: the test did not test what it says"
    );
    // Three watches (RenderJobs, Jobs, pods), one relist each; more is a relist loop.
    assert!(gone.len() <= 6, "{} 410s: a relist loop?", gone.len());
    assert!(
        duplicates.is_empty(),
        "batches created twice: {duplicates:?}"
    );
    assert_eq!(seen as i64, BATCHES);
    assert_eq!(created as i64, BATCHES, "batch Jobs the operator created");
    assert_eq!(
        (
            s.batches.total,
            s.batches.succeeded,
            s.batches.failed,
            s.frames.rendered
        ),
        (BATCHES, BATCHES, 0, BATCHES)
    );
    assert_eq!(s.succeeded_batches.as_deref(), Some("0-39"));
    // The most a batch can cost with nothing coalesced: its Job apply, one BatchesCreated
    // Event, and a status write for each change it makes (Job created, pod Pending, Running,
    // Succeeded, Job Complete): 7. Coalescing brings it to about 5 at parallelism 4 and under
    // 3 at parallelism 50 (bench/README.md); a hot loop goes far past 8.
    assert!(
        steady_per_batch < 8.0,
        "{steady_per_batch:.2} writes per batch while steady"
    );
    assert!(per_batch < 8.0, "{per_batch:.2} writes per batch");
    assert_eq!(idle_writes, 0.0, "writes after the render finished");
    assert!(
        idle_reconciles <= 2.0,
        "{idle_reconciles} reconciles in 5 idle seconds"
    );
    Ok(())
}
