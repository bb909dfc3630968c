//! The e2e harness: a namespace per test with render storage, the real operator binary scoped
//! to it, and waits that say what they waited for when they time out.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
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
        wait_until(Duration::from_secs(30), "CRD established", || async {
            let crd = api.get(&crd.name_any()).await?;
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            Ok(established.then_some(()))
        })
        .await
    })
    .await
    .map(|_| ())
}

/// Poll `check` until it returns `Some`, or fail naming `what`.
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() > deadline {
            return Err(anyhow!(
                "timed out after {timeout:?} waiting for {what} (last error: {last_err:?})"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

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
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .subsec_nanos();
        let ns = format!("rf-{test}-{:05}", nanos % 100_000);
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
        wait_until(Duration::from_secs(60), "render storage bound", || async {
            let pvc = pvcs.get(STORAGE).await?;
            Ok((pvc.status.and_then(|s| s.phase).as_deref() == Some("Bound")).then_some(()))
        })
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
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.http_port))?;
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

    /// A RenderJob spec with storage filled in; `extra` is merged over it.
    pub fn renderjob(&self, name: &str, extra: Value) -> Result<RenderJob> {
        let mut spec = json!({
            "blendFile": "scenes/test.blend",
            "frames": {"start": 1, "end": 10},
            "storage": {"claimName": STORAGE},
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
        let res = wait_until(timeout, what, || async {
            let rj = api.get(name).await?;
            Ok(pred(&rj).then_some(rj))
        })
        .await;
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
        self.wait_rj(name, &format!("phase {phase}"), timeout, |rj| {
            rj.status.as_ref().map(|s| s.phase.as_str()) == Some(phase)
        })
        .await
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

/// Every Job UID seen in a namespace, by Job name, from a watch that lives through API server
/// outages: a batch created twice shows as a name with two UIDs.
pub struct JobUids {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<BTreeMap<String, std::collections::BTreeSet<String>>>,
}

impl JobUids {
    pub fn watch(api: Api<Job>) -> JobUids {
        use futures::TryStreamExt;
        use kube::runtime::{WatchStreamExt, watcher};
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut uids: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
            let stream = watcher(api, watcher::Config::default())
                .default_backoff()
                .applied_objects();
            futures::pin_mut!(stream);
            loop {
                tokio::select! {
                    job = stream.try_next() => match job {
                        Ok(Some(job)) => {
                            uids.entry(job.name_any()).or_default().insert(job.uid().unwrap_or_default());
                        }
                        Ok(None) => break,
                        Err(_) => {}
                    },
                    _ = &mut stopped => break,
                }
            }
            uids
        });
        JobUids { stop, task }
    }

    /// Watch a little longer for stragglers, then return (Jobs seen, names created twice).
    pub async fn finish(self) -> Result<(usize, Vec<String>)> {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let _ = self.stop.send(());
        let uids = self.task.await?;
        let twice = uids
            .iter()
            .filter(|(_, u)| u.len() > 1)
            .map(|(n, _)| n.clone())
            .collect();
        Ok((uids.len(), twice))
    }
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
