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
use futures::TryStreamExt;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use renderfarm::controller;
use renderfarm::crd::RenderJob;
use serde_json::json;

use crate::faultkit::{rerun_batches, watch_pods};
use crate::harness::{Env, JobUids, Metrics, cluster_state_dir, kubectl, status, wait_until};

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

/// `renderfarm_api_writes_total` by verb and resource: `apply jobs 40, ...`.
fn writes_by_kind(m: &Metrics) -> String {
    m.samples
        .iter()
        .filter(|s| s.name == WRITES)
        .map(|s| {
            let label = |k: &str| s.labels.get(k).map(String::as_str).unwrap_or_default();
            format!("{} {} {}", label("verb"), label("resource"), s.value)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

const WRITES: &str = "renderfarm_api_writes_total";
const RECONCILES: &str = "renderfarm_reconcile_duration_seconds_count";
const JOB_APPLIES: [(&str, &str); 2] = [("verb", "apply"), ("resource", "jobs")];
const STATUS_WRITES: [(&str, &str); 2] = [("verb", "apply"), ("resource", "renderjobs/status")];

fn created(m: &Metrics) -> f64 {
    m.value("renderfarm_batches_total", &[("result", "created")])
}

/// What makes the operator write a status at once rather than at its once-a-second pace: a
/// new phase, observedGeneration, failed batch, start or completion time, or a condition that
/// turns or changes reason.
fn transition_key(rj: &RenderJob) -> String {
    let s = status(rj);
    let conditions: Vec<(String, String, String)> = s
        .conditions
        .iter()
        .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
        .collect();
    format!(
        "{:?} {:?} {} {:?} {:?} {conditions:?}",
        s.phase,
        s.observed_generation,
        s.failed_batches.len(),
        s.start_time,
        s.completion_time
    )
}

/// Count, from a watch of the RenderJob on the main API server, the statuses that were
/// transitions, until it is Succeeded. Resolves once the watch has listed (before the
/// RenderJob is created, so it sees every status).
async fn count_transitions(
    api: Api<RenderJob>,
    name: &str,
) -> Result<tokio::task::JoinHandle<Result<usize>>> {
    let fields = format!("metadata.name={name}");
    let (listed_tx, listed) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let stream = watcher(api, watcher::Config::default().fields(&fields)).default_backoff();
        futures::pin_mut!(stream);
        let (mut last, mut transitions, mut listed_tx) = (None, 0, Some(listed_tx));
        while let Some(event) = stream.try_next().await? {
            let rj = match event {
                watcher::Event::InitDone => {
                    if let Some(tx) = listed_tx.take() {
                        let _ = tx.send(());
                    }
                    continue;
                }
                watcher::Event::Apply(rj) | watcher::Event::InitApply(rj) => rj,
                _ => continue,
            };
            let key = transition_key(&rj);
            if rj.status.is_some() && last.as_ref() != Some(&key) {
                transitions += 1;
                last = Some(key);
            }
            if status(&rj).phase.as_str() == "Succeeded" {
                return Ok(transitions);
            }
        }
        bail!("the RenderJob watch ended")
    });
    tokio::time::timeout(Duration::from_secs(30), listed)
        .await
        .context("the RenderJob watch did not list within 30 s")??;
    Ok(task)
}

/// What the operator's log says of its Job applies beyond one per batch.
#[derive(Debug, Default)]
struct Resent {
    /// Reads of a Job whose apply went unanswered that found no Job: each is followed by one
    /// apply more, the only kind there may be.
    absent: usize,
    /// Such reads (or the cache) that found the Job created after all: no apply more.
    created: usize,
    /// Applies answered with an error (refused, 5xx): `job outcome` each.
    refused: Vec<String>,
}

/// [`Resent`] from the operator's JSON log.
fn resent(log: &str) -> Resent {
    let mut r = Resent::default();
    for line in log.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let field = |k: &str| v.get(k).and_then(|m| m.as_str()).unwrap_or_default();
        match field("message") {
            m if m == controller::UNANSWERED_ABSENT => r.absent += 1,
            m if m == controller::UNANSWERED_CREATED => r.created += 1,
            "Job apply not taken" if field("outcome") != "Unknown" => {
                r.refused
                    .push(format!("{} {}", field("job"), field("outcome")))
            }
            _ => {}
        }
    }
    r
}

/// Kills the API server, moves etcd's revision on while it is away, and starts it again:
/// how long it was away, and how long it took to be ready.
async fn cut_every_watch(env: &Env, apiserver: &mut ApiServer) -> Result<(Duration, Duration)> {
    apiserver.kill();
    let cut = Instant::now();
    let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(env.client.clone(), &env.ns);
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "while-away"}}))?,
    )
    .await?;
    // Away for a moment, as an API server that crashed and is restarted.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let restart = apiserver.start().await?;
    Ok((cut.elapsed(), restart))
}

/// The batches exact across the cut: no Job created twice, no batch rendered twice, one Job
/// created per batch, and one apply per batch plus one for each apply the cut left unanswered
/// whose read then found no Job: never one sent blind.
fn check_batches(idle: &Metrics, log: &str, seen: usize, duplicates: &[String], rerun: &[u32]) {
    let job_applies = idle.value(WRITES, &JOB_APPLIES);
    let resent = resent(log);
    println!(
        "watch 410: Job applies {job_applies} for {BATCHES} batches: {} after a read of an \
         unanswered apply found no Job, {} such applies found created; applies refused: {:?}; \
         Jobs created twice: {duplicates:?}; batches rendered twice: {rerun:?}",
        resent.absent, resent.created, resent.refused
    );
    assert!(
        duplicates.is_empty(),
        "batches created twice: {duplicates:?}"
    );
    assert!(rerun.is_empty(), "batches rendered twice: {rerun:?}");
    assert_eq!(seen as i64, BATCHES);
    assert_eq!(
        created(idle),
        BATCHES as f64,
        "batch Jobs the operator created"
    );
    assert_eq!(
        job_applies,
        (BATCHES as usize + resent.absent) as f64,
        "Job applies ({}) beyond one per batch must each follow a read that found no Job ({} \
         did); applies refused: {:?}",
        writes_by_kind(idle),
        resent.absent,
        resent.refused
    );
}

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
    observer.synced().await?;
    let pods = watch_pods(&env).await?;
    let transitions = count_transitions(env.rjs(), "gone").await?;
    let started = Instant::now();
    env.create(
        "gone",
        json!({"frames": {"start": 1, "end": BATCHES}, "batchSize": 1, "parallelism": 4}),
    )
    .await?;

    // A steady stretch first, while nothing goes wrong.
    env.wait_rj("gone", "a quarter of the batches done", MINUTE, |rj| {
        status(rj).batches.succeeded >= BATCHES / 4
    })
    .await?;
    let steady = env.metrics()?;

    // Cut every watch; while the API server is away the render goes on (the Job controller
    // and kwok use the main one). Applies in flight then get no answer.
    let (downtime, restart) = cut_every_watch(&env, &mut apiserver).await?;

    let rj = env.wait_phase("gone", "Succeeded", 2 * MINUTE).await?;
    let took = started.elapsed();
    let transitions = tokio::time::timeout(MINUTE, transitions).await???;

    // No spinning once done: the operator goes idle (no reconcile, no write for 5 s).
    let done = env.metrics()?;
    let idle_from = Instant::now();
    let idle = env.wait_idle().await?;
    let idle_after = idle_from.elapsed();
    let (seen, duplicates) = observer.finish_after(Duration::ZERO).await?;
    let (writes, reconciles) = (idle.sum(WRITES), idle.sum(RECONCILES));
    let (job_applies, status_writes) = (
        idle.value(WRITES, &JOB_APPLIES),
        idle.value(WRITES, &STATUS_WRITES),
    );
    // A status write once a second at most, and one at once for each transition.
    let status_bound = took.as_secs_f64().ceil() + transitions as f64 + 1.0;
    let kinds = writes_by_kind(&idle);

    // The evidence that the API server answered 410 Gone to resumed watches.
    let log = env.operator_log()?;
    let gone: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("too old resource version") && l.contains("410"))
        .collect();
    let s = status(&rj);
    println!(
        "watch 410: second API server up in {:.1} s, killed and back after {:.1} s (ready in \
         {:.1} s); 410 Gone answers to the operator's resumed watches: {}; render of {BATCHES} \
         batches in {:.1} s; {seen} Jobs, duplicates {}; API writes {writes} = {:.2} per batch \
         ({kinds}); Job applies {job_applies} (steady stretch: {} for {} created); status \
         writes {status_writes}, bound {status_bound} ({:.0} s and {transitions} transitions); \
         reconciles {reconciles} = {:.1} per batch; idle {:.1} s after Succeeded (+{} writes, \
         +{} reconciles)",
        first_start.as_secs_f64(),
        downtime.as_secs_f64(),
        restart.as_secs_f64(),
        gone.len(),
        took.as_secs_f64(),
        duplicates.len(),
        writes / BATCHES as f64,
        steady.value(WRITES, &JOB_APPLIES),
        created(&steady),
        took.as_secs_f64().ceil(),
        reconciles / BATCHES as f64,
        idle_after.as_secs_f64(),
        writes - done.sum(WRITES),
        reconciles - done.sum(RECONCILES),
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
    check_batches(&idle, &log, seen, &duplicates, &pods.with(rerun_batches));
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
    assert!(
        status_writes <= status_bound,
        "{status_writes} status writes in {:.1} s with {transitions} transitions",
        took.as_secs_f64()
    );
    Ok(())
}

/// The operator's log as [`resent`] reads it (runs without a cluster).
#[test]
fn applies_resent_are_read_from_the_operators_log() {
    let line = |v: serde_json::Value| v.to_string();
    let log = [
        line(
            json!({"level": "INFO", "message": controller::UNANSWERED_ABSENT,
                    "renderjob": "gone", "job": "gone-0017", "target": "renderfarm::controller"}),
        ),
        line(
            json!({"level": "INFO", "message": controller::UNANSWERED_CREATED,
                    "renderjob": "gone", "job": "gone-0018", "target": "renderfarm::controller"}),
        ),
        line(
            json!({"level": "DEBUG", "message": "Job apply not taken", "job": "gone-0017",
                    "outcome": "Unknown", "error": "connection reset"}),
        ),
        line(
            json!({"level": "DEBUG", "message": "Job apply not taken", "job": "gone-0019",
                    "outcome": "ServerError", "error": "etcdserver: request timed out"}),
        ),
        "not json".to_string(),
    ]
    .join("\n");
    let r = resent(&log);
    assert_eq!((r.absent, r.created), (1, 1));
    assert_eq!(r.refused, ["gone-0019 ServerError"]);
}
