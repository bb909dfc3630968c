//! The e2e harness: a namespace per test with render storage, the real operator binary scoped
//! to it, and waits that say what they waited for when they time out. Shared with the kind
//! tests (`tests/kind.rs`), which use only part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use futures::TryStreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::wait::conditions;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use renderfarm::crd::RenderJob;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

pub const STORAGE: &str = "render-storage";
/// Label kwok's default stages leave alone; a test's own Stages decide those pods' fate.
pub const SCENARIO_LABEL: &str = "kwok.renderfarm.io/scenario";

static CRD: OnceCell<()> = OnceCell::const_new();

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The local cluster's state directory (`hack/cluster.sh`): pid files, certificates, logs.
pub fn cluster_state_dir() -> PathBuf {
    std::env::var_os("RENDERFARM_CLUSTER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/renderfarm/cluster")
        })
}

pub async fn client() -> Result<Client> {
    Client::try_default().await.context(
        "no cluster: start one with `hack/cluster.sh up` and `eval \"$(hack/cluster.sh env)\"`",
    )
}

/// Install the checked-in CRD (what users install) once per test binary.
async fn ensure_crd(client: &Client) -> Result<()> {
    CRD.get_or_try_init(|| async {
        let yaml = std::fs::read_to_string(repo_root().join("crds/renderjob.yaml"))?;
        let crd: CustomResourceDefinition = serde_yaml::from_str(&yaml)?;
        let api: Api<CustomResourceDefinition> = Api::all(client.clone());
        api.patch(
            &crd.name_any(),
            &PatchParams::apply("renderfarm-e2e").force(),
            &Patch::Apply(&crd),
        )
        .await?;
        await_object(
            api,
            &crd.name_any(),
            Duration::from_secs(30),
            "CRD established",
            conditions::is_crd_established(),
        )
        .await
        .map(|_| ())
    })
    .await
    .map(|_| ())
}

// The waits every test crate shares: for one object, for a set of objects, for anything else.
// Not all of them in every test binary that includes this module (tests/kind.rs does too).
#[allow(unused_imports)]
pub use renderfarm_testkit::wait::{await_object, wait_until, watch_until};

/// How long the operator must do nothing to count as idle ([`Env::wait_idle`]): more than its
/// one-second status pacing and the time a watch event takes to arrive.
pub const QUIET: Duration = Duration::from_secs(5);

pub struct Env {
    pub client: Client,
    pub ns: String,
    operator: Option<Child>,
    log: PathBuf,
    stages: Vec<String>,
    /// Port of the operator's /healthz, /readyz and /metrics.
    pub http_port: u16,
}

impl Env {
    /// A fresh namespace `rf-<test>-<n>` with a bound PersistentVolumeClaim for render storage.
    pub async fn new(test: &str) -> Result<Env> {
        let client = client().await?;
        ensure_crd(&client).await?;
        let ns = renderfarm_testkit::unique_name(&format!("rf-{test}"));
        let nss: Api<Namespace> = Api::all(client.clone());
        nss.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
        )
        .await?;

        // A statically bound volume: kwok pods never touch it, but the scheduler wants it bound.
        let pvs: Api<PersistentVolume> = Api::all(client.clone());
        let pv = json!({
            "metadata": {"name": ns},
            "spec": {
                "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"], "storageClassName": "manual",
                "hostPath": {"path": format!("/tmp/renderfarm-e2e/{ns}")},
                "claimRef": {"namespace": ns, "name": STORAGE},
                "persistentVolumeReclaimPolicy": "Delete",
            }
        });
        pvs.create(&PostParams::default(), &serde_json::from_value(pv)?)
            .await?;
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        let pvc = json!({
            "metadata": {"name": STORAGE},
            "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "manual", "volumeName": ns,
                     "resources": {"requests": {"storage": "1Gi"}}}
        });
        pvcs.create(&PostParams::default(), &serde_json::from_value(pvc)?)
            .await?;
        await_object(
            pvcs,
            STORAGE,
            Duration::from_secs(60),
            "render storage bound",
            |pvc: Option<&PersistentVolumeClaim>| {
                pvc.and_then(|p| p.status.as_ref()?.phase.as_deref()) == Some("Bound")
            },
        )
        .await?;

        let log = repo_root()
            .join("target/e2e-logs")
            .join(format!("{ns}.log"));
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        Ok(Env {
            client,
            ns,
            operator: None,
            log,
            stages: Vec::new(),
            http_port: 0,
        })
    }

    /// Start the real operator binary, watching only this test's namespace.
    pub fn start_operator(&mut self) -> Result<()> {
        self.start_operator_with(&[], &[])
    }

    pub fn start_operator_with(&mut self, args: &[&str], env: &[(&str, &str)]) -> Result<()> {
        // A free port for the health and metrics server.
        self.http_port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        self.operator = Some(self.spawn_operator(self.http_port, args, env)?);
        Ok(())
    }

    /// Another operator process (a second replica), logging to the same file; the caller owns it.
    pub fn spawn_operator(&self, port: u16, args: &[&str], env: &[(&str, &str)]) -> Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_renderfarm-operator"));
        cmd.args([
            "--namespace",
            &self.ns,
            "--listen",
            &listen,
            "--log-format",
            "json",
        ])
        .args(args)
        .env("RUST_LOG", "info,renderfarm=debug")
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log));
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.spawn().context("starting renderfarm-operator")
    }

    /// SIGKILL: no goodbye, no flushed state, as a crash or an OOM kill.
    pub fn kill_operator(&mut self) {
        if let Some(mut child) = self.operator.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Everything the operator processes of this test logged so far.
    pub fn operator_log(&self) -> Result<String> {
        std::fs::read_to_string(&self.log)
            .with_context(|| format!("reading {}", self.log.display()))
    }

    /// A file under the e2e log directory named after this test's namespace.
    pub fn log_file(&self, suffix: &str) -> PathBuf {
        self.log.with_file_name(format!("{}{suffix}", self.ns))
    }

    /// GET a path of the operator's HTTP server: (status code, body).
    pub fn http_get(&self, path: &str) -> Result<(u16, String)> {
        http_get(self.http_port, path)
    }

    /// The operator's /metrics, parsed.
    pub fn metrics(&self) -> Result<Metrics> {
        let (code, text) = self.http_get("/metrics")?;
        ensure!(code == 200, "/metrics answered {code}: {text}");
        Metrics::parse(&text)
    }

    /// Wait until the operator is idle: for [`QUIET`] on end its /metrics show no reconcile and
    /// no API write (a status write is paced to one a second; an Event that is due goes at
    /// once). Returns the metrics then.
    pub async fn wait_idle(&self) -> Result<Metrics> {
        const RECONCILES: &str = "renderfarm_reconcile_duration_seconds_count";
        const WRITES: &str = "renderfarm_api_writes_total";
        let started = Instant::now();
        let mut last = self.metrics()?;
        let mut quiet_since = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = self.metrics()?;
            let moved =
                now.sum(RECONCILES) != last.sum(RECONCILES) || now.sum(WRITES) != last.sum(WRITES);
            if moved {
                quiet_since = Instant::now();
            } else if quiet_since.elapsed() >= QUIET {
                return Ok(now);
            }
            last = now;
            ensure!(
                started.elapsed() < Duration::from_secs(120),
                "the operator was not idle for {QUIET:?} within 120 s"
            );
        }
    }

    /// The reasons of the Events in this namespace, one per line.
    pub fn event_reasons(&self) -> Result<String> {
        let (ok, out) = kubectl(&[
            "get",
            "events",
            "-n",
            &self.ns,
            "-o",
            "custom-columns=REASON:.reason",
        ])?;
        ensure!(ok, "kubectl get events: {out}");
        Ok(out)
    }

    pub fn rjs(&self) -> Api<RenderJob> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// A RenderJob spec with storage filled in; `extra` is merged over it. The preview step
    /// and start ahead are off unless `extra` turns them on: these tests count batch Jobs
    /// against `parallelism`; `preview.rs` tests the preview Job and
    /// `render::start_ahead_...` the followers.
    pub fn renderjob(&self, name: &str, extra: Value) -> Result<RenderJob> {
        let mut spec = json!({
            "blendFile": "scenes/test.blend",
            "frames": {"start": 1, "end": 10},
            "storage": {"claimName": STORAGE},
            "preview": {"enabled": false},
            "startAhead": false,
        });
        merge(&mut spec, extra);
        Ok(serde_json::from_value(json!({
            "apiVersion": "renderfarm.io/v1alpha1", "kind": "RenderJob",
            "metadata": {"name": name, "namespace": self.ns}, "spec": spec,
        }))?)
    }

    pub async fn create(&self, name: &str, extra: Value) -> Result<RenderJob> {
        let rj = self.renderjob(name, extra)?;
        Ok(self.rjs().create(&PostParams::default(), &rj).await?)
    }

    /// Wait until the RenderJob satisfies `pred`; the error shows its last status.
    pub async fn wait_rj(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&RenderJob) -> bool,
    ) -> Result<RenderJob> {
        let api = self.rjs();
        let res = await_object(
            api.clone(),
            name,
            timeout,
            what,
            |rj: Option<&RenderJob>| rj.is_some_and(&pred),
        )
        .await
        .and_then(|rj| rj.context("the RenderJob is gone"));
        match res {
            Ok(rj) => Ok(rj),
            Err(e) => {
                let status = api
                    .get(name)
                    .await
                    .ok()
                    .and_then(|r| r.status)
                    .map(|s| serde_json::to_string_pretty(&s).unwrap_or_default());
                bail!(
                    "{e}\nlast status: {}\noperator log: {}",
                    status.unwrap_or_default(),
                    self.log.display()
                )
            }
        }
    }

    pub async fn wait_phase(
        &self,
        name: &str,
        phase: &str,
        timeout: Duration,
    ) -> Result<RenderJob> {
        // Succeeded is final: waiting on for another phase would only wait out the timeout.
        let rj = self
            .wait_rj(name, &format!("phase {phase}"), timeout, |rj| {
                let now = rj.status.as_ref().map(|s| s.phase.as_str());
                now == Some(phase) || now == Some("Succeeded")
            })
            .await?;
        let now = status(&rj).phase.as_str().to_string();
        ensure!(
            now == phase,
            "waiting for phase {phase}, the RenderJob reached {now}, which it never leaves; \
             status: {}",
            serde_json::to_string_pretty(&rj.status)?
        );
        Ok(rj)
    }

    pub async fn job_names(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .jobs()
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .map(|j| j.name_any())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Create a kwok Stage from one of `hack/kwok/`'s templates, removed again on drop.
    pub async fn stage(
        &mut self,
        template: &str,
        name: &str,
        vars: &BTreeMap<&str, String>,
    ) -> Result<()> {
        let mut text = std::fs::read_to_string(repo_root().join("hack/kwok").join(template))
            .with_context(|| format!("reading stage template {template}"))?;
        for (k, v) in vars {
            text = text.replace(&format!("${{{k}}}"), v);
        }
        let mut obj: DynamicObject = serde_yaml::from_str(&text)?;
        obj.metadata.name = Some(name.to_string());
        let api = stages(&self.client);
        api.patch(
            name,
            &PatchParams::apply("renderfarm-e2e").force(),
            &Patch::Apply(&obj),
        )
        .await?;
        self.stages.push(name.to_string());
        Ok(())
    }

    /// Stage `hack/kwok/frames.yaml` for this test's scenario: its running batch pods succeed
    /// after `delay_ms` with render-node's termination message (frames rendered, time per
    /// frame, last frame saved), as the real render-node reports them.
    pub async fn stage_frames(&mut self, delay_ms: u32) -> Result<()> {
        let scenario = self.ns.clone();
        let vars = BTreeMap::from([
            ("SCENARIO", scenario.clone()),
            ("DELAY_MS", delay_ms.to_string()),
        ]);
        self.stage("frames.yaml", &format!("{scenario}-frames"), &vars)
            .await
    }

    pub async fn delete_stage(&mut self, name: &str) -> Result<()> {
        stages(&self.client)
            .delete(name, &DeleteParams::default())
            .await?;
        self.stages.retain(|s| s != name);
        Ok(())
    }
}

fn stages(client: &Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("kwok.x-k8s.io", "v1alpha1", "Stage");
    Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk))
}

impl Drop for Env {
    fn drop(&mut self) {
        self.kill_operator();
        // Best effort, without waiting: the namespace's objects go with it.
        let mut cleanup = vec![
            vec!["delete", "namespace", self.ns.as_str(), "--wait=false"],
            vec!["delete", "pv", self.ns.as_str(), "--wait=false"],
        ];
        for s in &self.stages {
            cleanup.push(vec![
                "delete",
                "stages.kwok.x-k8s.io",
                s.as_str(),
                "--wait=false",
            ]);
        }
        for args in cleanup {
            let _ = Command::new("kubectl")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// How long the operator keeps a batch it created but has not seen yet "in flight" (its
/// `IN_FLIGHT_TTL`): the longest a straggling second Job could come after the last event.
pub const IN_FLIGHT_TTL: Duration = Duration::from_secs(60);

/// One Job as a [`JobUids`] watch first saw it.
#[derive(Debug, Clone)]
pub struct SeenJob {
    pub name: String,
    pub uid: String,
    /// UID of its controller (the RenderJob).
    pub owner: Option<String>,
    /// `metadata.resourceVersion` of the first event seen: the Job's creation, when the watch
    /// ran before it was created. Comparable with other objects' versions on an etcd-backed
    /// API server (see [`resource_version`]).
    pub first_version: u64,
    pub first_seen: Instant,
}

type SeenJobs = Arc<Mutex<BTreeMap<String, SeenJob>>>;

/// Every Job UID seen in a namespace, by Job name, from a watch that lives through API server
/// outages: a batch created twice shows as a name with two UIDs.
pub struct JobUids {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    seen: SeenJobs,
    synced: tokio::sync::watch::Receiver<bool>,
}

impl JobUids {
    pub fn watch(api: Api<Job>) -> JobUids {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let (synced_tx, synced) = tokio::sync::watch::channel(false);
        let seen: SeenJobs = Arc::default();
        let record = seen.clone();
        let task = tokio::spawn(async move {
            let stream = watcher(api, watcher::Config::default()).default_backoff();
            futures::pin_mut!(stream);
            let note = |job: &Job| {
                let uid = job.uid().unwrap_or_default();
                if let Ok(mut seen) = record.lock() {
                    seen.entry(uid.clone()).or_insert_with(|| SeenJob {
                        name: job.name_any(),
                        uid,
                        owner: job
                            .owner_references()
                            .iter()
                            .find(|o| o.controller == Some(true))
                            .map(|o| o.uid.clone()),
                        first_version: resource_version(job).unwrap_or(0),
                        first_seen: Instant::now(),
                    });
                }
            };
            loop {
                tokio::select! {
                    event = stream.try_next() => match event {
                        Ok(Some(watcher::Event::Apply(job) | watcher::Event::InitApply(job))) => note(&job),
                        Ok(Some(watcher::Event::InitDone)) => {
                            let _ = synced_tx.send(true);
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(_) => {}
                    },
                    _ = &mut stopped => break,
                }
            }
        });
        JobUids {
            stop,
            task,
            seen,
            synced,
        }
    }

    /// Wait until the watch has listed the namespace once: from then on it sees every Job
    /// created, at its creation.
    pub async fn synced(&self) -> Result<()> {
        let mut synced = self.synced.clone();
        tokio::time::timeout(Duration::from_secs(30), synced.wait_for(|s| *s))
            .await
            .context("the Job watch did not list the namespace within 30 s")??;
        Ok(())
    }

    /// Every Job seen so far.
    pub fn seen(&self) -> Vec<SeenJob> {
        self.seen
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Jobs first seen at a resourceVersion newer than `version`: created after it.
    pub fn created_after(&self, version: u64) -> Vec<SeenJob> {
        self.seen()
            .into_iter()
            .filter(|j| j.first_version > version)
            .collect()
    }

    /// Keep watching through [`IN_FLIGHT_TTL`] for stragglers, then return (Jobs seen by
    /// name, names created twice). Where the operator is one process whose metrics can say it
    /// is idle, [`JobUids::finish_idle`] ends sooner.
    pub async fn finish(self) -> Result<(usize, Vec<String>)> {
        self.finish_after(IN_FLIGHT_TTL + Duration::from_secs(5))
            .await
    }

    /// Keep watching until the operator of `env` is idle ([`Env::wait_idle`]), then return
    /// (Jobs seen by name, names created twice).
    pub async fn finish_idle(self, env: &Env) -> Result<(usize, Vec<String>)> {
        env.wait_idle().await?;
        self.finish_after(Duration::ZERO).await
    }

    /// Keep watching for `straggle`, then return (Jobs seen by name, names created twice).
    pub async fn finish_after(self, straggle: Duration) -> Result<(usize, Vec<String>)> {
        let seen = self.stop_after(straggle).await?;
        let mut by_name: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for j in seen {
            by_name.entry(j.name).or_default().insert(j.uid);
        }
        let twice = by_name
            .iter()
            .filter(|(_, u)| u.len() > 1)
            .map(|(n, _)| n.clone())
            .collect();
        Ok((by_name.len(), twice))
    }

    /// Keep watching for `straggle`, then stop and return every Job seen.
    pub async fn stop_after(self, straggle: Duration) -> Result<Vec<SeenJob>> {
        tokio::time::sleep(straggle).await;
        let _ = self.stop.send(());
        self.task.await?;
        let seen = self.seen.lock().map_err(|_| anyhow!("poisoned"))?;
        Ok(seen.values().cloned().collect())
    }
}

/// An object's resourceVersion as a number. The API calls it opaque; on an etcd-backed
/// kube-apiserver (every cluster these tests run on) it is etcd's revision, one counter for
/// every write, so it orders writes to different objects.
pub fn resource_version<K: Resource>(obj: &K) -> Result<u64> {
    let rv = obj
        .meta()
        .resource_version
        .as_deref()
        .context("no resourceVersion")?;
    rv.parse()
        .with_context(|| format!("resourceVersion {rv:?} is not a number"))
}

/// One sample of the operator's /metrics: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The operator's /metrics, parsed: samples are compared whole (name, every label, value), so
/// `...} 5` cannot pass for `...} 50`.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub samples: Vec<Sample>,
}

impl Metrics {
    /// Parse the Prometheus / OpenMetrics text format.
    pub fn parse(text: &str) -> Result<Metrics> {
        let mut samples = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            samples.push(parse_sample(line).with_context(|| format!("metrics line {line:?}"))?);
        }
        Ok(Metrics { samples })
    }

    /// The value of the sample with exactly this name and label set.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    /// [`Metrics::get`], 0 when the sample is absent (a counter never incremented).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    /// The sum over every label set of `name`.
    pub fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum()
    }
}

fn parse_sample(line: &str) -> Result<Sample> {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => bail!("no value"),
    };
    let mut labels = BTreeMap::new();
    let rest = if let Some(mut body) = rest.strip_prefix('{') {
        loop {
            body = body.trim_start_matches(',');
            if let Some(after) = body.strip_prefix('}') {
                break after;
            }
            let (key, after) = body.split_once("=\"").context("label without =\"")?;
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next() {
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c)) => value.push(c),
                        None => bail!("unterminated label value"),
                    },
                    Some((_, c)) => value.push(c),
                    None => bail!("unterminated label value"),
                }
            };
            labels.insert(key.to_string(), value);
            body = &after[end + 1..];
        }
    } else {
        rest
    };
    let value = rest
        .split_whitespace()
        .next()
        .context("no value")?
        .parse()
        .context("value is not a number")?;
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

pub fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

/// Run kubectl against the test cluster; returns (exit ok, stdout+stderr).
pub fn kubectl(args: &[&str]) -> Result<(bool, String)> {
    let out = Command::new("kubectl")
        .args(args)
        .output()
        .context("running kubectl (is it on PATH?)")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

pub fn status(rj: &RenderJob) -> renderfarm::crd::RenderJobStatus {
    rj.status.clone().unwrap_or_default()
}

pub fn condition(
    rj: &RenderJob,
    type_: &str,
) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    status(rj).conditions.into_iter().find(|c| c.type_ == type_)
}

/// GET a path of an HTTP server on 127.0.0.1 (an operator's `/metrics`, `/readyz`): (status
/// code, body).
pub fn http_get(port: u16, path: &str) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// Server-side apply of one object of any kind (Kueue's queues, PriorityClasses, ...), given
/// as JSON with apiVersion, kind and metadata.
pub async fn apply_object(client: &Client, obj: Value) -> Result<()> {
    let api_version = obj["apiVersion"].as_str().context("apiVersion")?;
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, obj["kind"].as_str().context("kind")?);
    let ar = ApiResource::from_gvk(&gvk);
    let name = obj["metadata"]["name"]
        .as_str()
        .context("name")?
        .to_string();
    let dynamic: DynamicObject = serde_json::from_value(obj.clone())?;
    let api: Api<DynamicObject> = match obj["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    api.patch(
        &name,
        &PatchParams::apply("renderfarm-e2e").force(),
        &Patch::Apply(&dynamic),
    )
    .await
    .with_context(|| format!("applying {} {name}", gvk.kind))?;
    Ok(())
}
