//! Batch pods sandboxed, on kind: the chart's NetworkPolicy leaves a batch pod no traffic in and
//! none out but its allow-list, a batch can write only inside its render's output directory,
//! and a namespace under the `restricted` Pod Security Standard renders real frames. Needs the
//! kind lane (`hack/kind.sh up`: renderfarm from its chart, kube-network-policies enforcing
//! NetworkPolicies, this machine's `./render` at `/renders` in every node) and its kubeconfig
//! (`eval "$(hack/kind.sh env)"`); `RENDERFARM_KIND_STORAGE` names that folder when the cluster
//! was made from another checkout. Run:
//! `cargo test -p renderfarm --test sandbox -- --ignored --nocapture`.
//!
//! Batch pods here are built by the operator's own Job builder ([`renderfarm::job::build`]),
//! with only the command changed, so they carry exactly the labels, security context and
//! mounts a batch gets.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    Namespace, PersistentVolume, PersistentVolumeClaim, Pod, PodSpec, Service,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams, LogParams, PostParams};
use kube::{Client, ResourceExt};
use renderfarm::crd::{Phase, RenderJob};
use renderfarm::job::{self, JobConfig};
use renderfarm::plan::Plan;
use renderfarm_testkit::frame::check_png;
use renderfarm_testkit::wait::await_existing;
use serde_json::{Value, json};

const IMAGE: &str = "renderfarm/render-node:dev";
const FRAMES: i32 = 4;
const WIDTH: u32 = 160;
const HEIGHT: u32 = 90;
/// The port batch pods and the plain server pod listen on.
const PORT: u16 = 8080;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The host folder kind-config.yaml mounts at /renders in every node.
fn host_storage() -> PathBuf {
    std::env::var_os("RENDERFARM_KIND_STORAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("render"))
}

async fn client() -> Result<Client> {
    Client::try_default()
        .await
        .context("no cluster: `hack/kind.sh up` and `eval \"$(hack/kind.sh env)\"`")
}

fn unique(prefix: &str) -> Result<String> {
    Ok(renderfarm_testkit::unique_name(prefix))
}

/// A namespace of this test, deleted (with its volume and host folder) when dropped.
struct Ns {
    client: Client,
    name: String,
    /// The host folder of its render storage, if it has one.
    dir: Option<PathBuf>,
}

impl Ns {
    async fn new(client: &Client, prefix: &str, labels: &[(&str, &str)]) -> Result<Ns> {
        let name = unique(prefix)?;
        let labels: BTreeMap<_, _> = labels.iter().copied().collect();
        Api::<Namespace>::all(client.clone())
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}}))?,
            )
            .await?;
        Ok(Ns {
            client: client.clone(),
            name,
            dir: None,
        })
    }

    /// Render storage like the chart's: a hostPath volume under /renders, whose root (like
    /// `./render`, which hack/kind.sh makes so) is writable by everyone, so the directories
    /// the kubelet makes in it for output mounts are too.
    async fn with_storage(mut self) -> Result<Ns> {
        let root = host_storage();
        ensure!(
            root.is_dir(),
            "{} does not exist: bring the kind lane up with `hack/kind.sh up` (or set RENDERFARM_KIND_STORAGE)",
            root.display()
        );
        let dir = root.join("e2e").join(&self.name);
        std::fs::create_dir_all(dir.join("scenes"))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))?;
        std::fs::set_permissions(dir.join("scenes"), std::fs::Permissions::from_mode(0o777))?;
        self.dir = Some(dir);
        let pv = json!({
            "metadata": {"name": self.name},
            "spec": {
                "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"],
                "storageClassName": "manual", "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": format!("/renders/e2e/{}", self.name), "type": "Directory"},
                "claimRef": {"namespace": self.name, "name": "render-storage"},
            }
        });
        Api::<PersistentVolume>::all(self.client.clone())
            .create(&PostParams::default(), &serde_json::from_value(pv)?)
            .await?;
        let pvc = json!({
            "metadata": {"name": "render-storage"},
            "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "manual",
                     "volumeName": self.name, "resources": {"requests": {"storage": "1Gi"}}}
        });
        Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), &self.name)
            .create(&PostParams::default(), &serde_json::from_value(pvc)?)
            .await?;
        Ok(self)
    }

    fn dir(&self) -> Result<&Path> {
        self.dir.as_deref().ok_or_else(|| anyhow!("no storage"))
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.name)
    }

    fn rjs(&self) -> Api<RenderJob> {
        Api::namespaced(self.client.clone(), &self.name)
    }

    async fn create_pod(&self, pod: Pod) -> Result<String> {
        let name = pod.name_any();
        renderfarm::client::create(&self.pods(), &pod).await?;
        Ok(name)
    }

    /// Wait until the pod runs; its IP.
    async fn running(&self, name: &str) -> Result<String> {
        let what = format!("pod {name} running with an IP, or failed");
        let pod = await_existing(
            self.pods(),
            name,
            Duration::from_secs(180),
            &what,
            |p: &Pod| {
                p.status.as_ref().is_some_and(|s| {
                    s.phase.as_deref() == Some("Running") && s.pod_ip.is_some()
                        || s.phase.as_deref() == Some("Failed")
                })
            },
        )
        .await?;
        let status = pod.status.unwrap_or_default();
        ensure!(
            status.phase.as_deref() == Some("Running"),
            "pod {name} failed: {}",
            self.logs(name).await.unwrap_or_default()
        );
        status.pod_ip.ok_or_else(|| anyhow!("pod {name} has no IP"))
    }

    /// Wait until the pod ends; whether it succeeded.
    async fn finished(&self, name: &str, timeout: Duration) -> Result<bool> {
        let what = format!("pod {name} to end");
        let pod = await_existing(self.pods(), name, timeout, &what, |p: &Pod| {
            p.status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|ph| ph == "Succeeded" || ph == "Failed")
        })
        .await?;
        Ok(pod.status.and_then(|s| s.phase).as_deref() == Some("Succeeded"))
    }

    async fn logs(&self, pod: &str) -> Result<String> {
        Ok(self.pods().logs(pod, &LogParams::default()).await?)
    }

    /// Write the test scene with Blender's Python, in a pod that meets the restricted standard.
    async fn make_scene(&self) -> Result<()> {
        let pod = json!({
            "metadata": {"name": "make-scene"},
            "spec": {
                "restartPolicy": "Never",
                "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "runAsGroup": 1000,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "blender", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                    "command": ["blender", "-b", "--factory-startup", "--python",
                                "/usr/local/share/render-node/make-scene.py", "--",
                                "/data/scenes/kind.blend", FRAMES.to_string(),
                                WIDTH.to_string(), HEIGHT.to_string(), "4"],
                    "volumeMounts": [{"name": "storage", "mountPath": "/data"},
                                     {"name": "tmp", "mountPath": "/tmp"}],
                    "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                                        "capabilities": {"drop": ["ALL"]}},
                }],
                "volumes": [{"name": "storage", "persistentVolumeClaim": {"claimName": "render-storage"}},
                            {"name": "tmp", "emptyDir": {}}],
            }
        });
        let name = self.create_pod(serde_json::from_value(pod)?).await?;
        let ok = self.finished(&name, Duration::from_secs(300)).await?;
        ensure!(
            ok,
            "make-scene failed: {}",
            self.logs(&name).await.unwrap_or_default()
        );
        ensure!(
            self.dir()?.join("scenes/kind.blend").is_file(),
            "no scene on the host"
        );
        Ok(())
    }

    async fn apply_renderjob(&self, name: &str, output: &str) -> Result<()> {
        let rj: RenderJob = serde_json::from_value(json!({
            "apiVersion": "renderfarm.io/v1alpha1", "kind": "RenderJob",
            "metadata": {"name": name, "namespace": self.name},
            "spec": {
                "blendFile": "scenes/kind.blend",
                "frames": {"start": 1, "end": FRAMES},
                "batchSize": 2, "parallelism": 2,
                "output": {"path": output, "format": "PNG"},
                "engine": "CYCLES", "device": "CPU",
                "storage": {"claimName": "render-storage", "mountPath": "/data"},
                "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
            }
        }))?;
        self.rjs().create(&PostParams::default(), &rj).await?;
        Ok(())
    }

    /// Wait for `Complete`; a render that fails or whose Jobs or pods are refused ends the wait.
    async fn wait_complete(&self, name: &str) -> Result<RenderJob> {
        let rj = await_existing(
            self.rjs(),
            name,
            Duration::from_secs(900),
            &format!("render {name} complete, failed or refused"),
            |rj: &RenderJob| {
                rj.status.as_ref().is_some_and(|s| {
                    s.phase == Phase::Failed
                        || s.conditions.iter().any(|c| {
                            (c.type_ == "Complete" && c.status == "True")
                                || (c.type_ == "Progressing"
                                    && c.status == "False"
                                    && c.reason.ends_with("Rejected"))
                        })
                })
            },
        )
        .await?;
        let s = rj.status.clone().unwrap_or_default();
        ensure!(
            s.conditions
                .iter()
                .any(|c| c.type_ == "Complete" && c.status == "True"),
            "render {name} did not complete: {}",
            serde_json::to_string_pretty(&s)?
        );
        Ok(rj)
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("kubectl")
            .args(["delete", "namespace", &self.name, "--wait=false"])
            .output();
        if let Some(dir) = &self.dir {
            let _ = Command::new("kubectl")
                .args(["delete", "pv", &self.name, "--wait=false"])
                .output();
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The batch Jobs the operator builds for a RenderJob `name` rendering `frames` of the test
/// scene into `output`, without their owner (no RenderJob exists: nothing else acts on them).
fn batch_jobs(ns: &str, name: &str, output: &str, frames: i32) -> Result<Vec<Job>> {
    let rj: RenderJob = serde_json::from_value(json!({
        "apiVersion": "renderfarm.io/v1alpha1", "kind": "RenderJob",
        "metadata": {"name": name, "namespace": ns, "uid": "00000000-0000-4000-8000-000000000000"},
        "spec": {
            "blendFile": "scenes/kind.blend", "frames": {"start": 1, "end": frames},
            "batchSize": 2, "output": {"path": output, "format": "PNG"},
            "engine": "CYCLES", "device": "CPU",
            "storage": {"claimName": "render-storage", "mountPath": "/data"},
            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
        }
    }))?;
    let plan = Plan::new(&rj.spec.frames, rj.spec.batch_size).ok_or_else(|| anyhow!("no plan"))?;
    let mut config = JobConfig::new(IMAGE);
    config.image_pull_policy = Some("IfNotPresent".to_string());
    let mut jobs = Vec::new();
    for index in 0.. {
        let Some(batch) = plan.batch(index) else {
            break;
        };
        let mut job = job::build(&rj, &batch, &config, false)?;
        job.metadata.owner_references = None;
        jobs.push(job);
    }
    Ok(jobs)
}

/// A batch pod exactly as the operator builds it for `output`, with `command` instead of
/// render-node; without the storage claim when `storage` is false.
fn batch_pod(ns: &str, name: &str, output: &str, command: &[&str], storage: bool) -> Result<Pod> {
    let template = batch_jobs(ns, name, output, 2)?
        .into_iter()
        .next()
        .and_then(|j| j.spec)
        .map(|s| s.template)
        .ok_or_else(|| anyhow!("no pod template"))?;
    let mut spec: PodSpec = template.spec.ok_or_else(|| anyhow!("no pod spec"))?;
    let container = &mut spec.containers[0];
    container.command = Some(command.iter().map(|s| s.to_string()).collect());
    container.args = None;
    if !storage {
        if let Some(m) = container.volume_mounts.as_mut() {
            m.retain(|m| m.name != "storage");
        }
        if let Some(v) = spec.volumes.as_mut() {
            v.retain(|v| v.name != "storage");
        }
    }
    let mut metadata = template.metadata.unwrap_or_default();
    metadata.name = Some(name.to_string());
    metadata.namespace = Some(ns.to_string());
    Ok(Pod {
        metadata,
        spec: Some(spec),
        status: None,
    })
}

/// A pod no NetworkPolicy selects, in the same restricted shape.
fn plain_pod(ns: &str, name: &str, command: &[&str]) -> Result<Pod> {
    let mut pod = batch_pod(ns, name, "renders/x/f_####", command, false)?;
    pod.metadata.labels = Some(BTreeMap::from([("app".to_string(), name.to_string())]));
    pod.metadata.annotations = None;
    Ok(pod)
}

/// Python that accepts and closes connections on [`PORT`] for ever.
const LISTEN: &str = "import socket\n\
s = socket.socket()\n\
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
s.bind(('0.0.0.0', 8080))\n\
s.listen(64)\n\
while True:\n    s.accept()[0].close()\n";

/// Whether a TCP connection from `pod` to `ip:port` opens within 3 s (a NetworkPolicy drops
/// the SYN: the attempt times out), with what the attempt said.
fn connects(ns: &str, pod: &str, ip: &str, port: u16) -> Result<(bool, String)> {
    let script = format!(
        "import socket\n\
try:\n    socket.create_connection(('{ip}', {port}), 3).close(); print('connected')\n\
except Exception as e:\n    print('failed:', type(e).__name__, e)\n"
    );
    let out = Command::new("kubectl")
        .args(["exec", "-n", ns, pod, "--", "python3", "-c", &script])
        .output()
        .context("kubectl exec")?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    ensure!(
        out.status.success() && !text.is_empty(),
        "kubectl exec in {ns}/{pod} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((text == "connected", text))
}

fn helm_template(kube_version: &str, sets: &[String]) -> Result<Vec<Value>> {
    let chart = repo_root().join("charts/renderfarm");
    let mut cmd = Command::new("helm");
    cmd.arg("template").arg("rf").arg(&chart).args([
        "--namespace",
        "renderfarm-system",
        "--kube-version",
        kube_version,
    ]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().context("running helm (is it on PATH?)")?;
    ensure!(
        out.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(doc)?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

/// The NetworkPolicies of the chart (with `sets`) that select batch pods.
fn chart_batch_policies(kube_version: &str, sets: &[String]) -> Result<Vec<NetworkPolicy>> {
    let mut out = Vec::new();
    for doc in helm_template(kube_version, sets)? {
        if doc["kind"] != "NetworkPolicy" {
            continue;
        }
        let np: NetworkPolicy = serde_json::from_value(doc)?;
        // `app.kubernetes.io/component In [render-batch, render-preview]`.
        let selects_batches = np
            .spec
            .as_ref()
            .and_then(|s| s.pod_selector.as_ref())
            .and_then(|p| p.match_expressions.as_ref())
            .is_some_and(|e| {
                e.iter().any(|r| {
                    r.key == "app.kubernetes.io/component"
                        && r.operator == "In"
                        && r.values.iter().flatten().any(|v| v == "render-batch")
                })
            });
        if selects_batches {
            out.push(np);
        }
    }
    Ok(out)
}

async fn apply_policies(client: &Client, policies: Vec<NetworkPolicy>) -> Result<()> {
    for np in policies {
        let ns = np
            .namespace()
            .ok_or_else(|| anyhow!("policy without namespace"))?;
        Api::<NetworkPolicy>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &np)
            .await?;
    }
    Ok(())
}

/// kube-network-policies runs on every node, or the test would prove nothing.
async fn require_enforcement(client: &Client) -> Result<()> {
    let ds: Api<k8s_openapi::api::apps::v1::DaemonSet> =
        Api::namespaced(client.clone(), "kube-system");
    let ready = ds
        .get_opt("kube-network-policies")
        .await?
        .and_then(|d| d.status)
        .is_some_and(|s| {
            s.desired_number_scheduled > 0 && s.number_ready == s.desired_number_scheduled
        });
    ensure!(
        ready,
        "NetworkPolicies are not enforced on this cluster: kube-network-policies is not ready in \
         kube-system (hack/kind.sh up runs it)"
    );
    Ok(())
}

/// Wait until kube-network-policies on the pod's node queues the pod's packets (its IP is in its
/// nftables set): from then on every new connection is judged by the policies. A pod
/// is covered only once the API server has its IP, which the kubelet publishes after the
/// containers start; without NRI in the container runtime that leaves a moment at start.
async fn wait_covered(ns: &Ns, pod: &str, ip: &str) -> Result<Duration> {
    let node = ns
        .pods()
        .get(pod)
        .await?
        .spec
        .and_then(|s| s.node_name)
        .ok_or_else(|| anyhow!("{pod} has no node"))?;
    let t = Instant::now();
    loop {
        let out = Command::new("docker")
            .args([
                "exec",
                &node,
                "nft",
                "list",
                "set",
                "inet",
                "kube-network-policies",
                "podips-v4",
            ])
            .output()
            .context("docker exec into the kind node")?;
        let set = String::from_utf8_lossy(&out.stdout);
        if set
            .split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .any(|w| w == ip)
        {
            return Ok(t.elapsed());
        }
        if t.elapsed() > Duration::from_secs(60) {
            bail!("{pod} ({ip}) never reached kube-network-policies' set on {node}: {set}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
#[ignore = "needs the kind lane: hack/kind.sh up"]
async fn batch_pods_reach_nothing_unless_allowed() -> Result<()> {
    let client = client().await?;
    require_enforcement(&client).await?;
    let kube_version = client.apiserver_version().await?.git_version;
    let api = Api::<Service>::namespaced(client.clone(), "default")
        .get("kubernetes")
        .await?
        .spec
        .and_then(|s| s.cluster_ip)
        .ok_or_else(|| anyhow!("the kubernetes Service has no cluster IP"))?;

    // deny: the chart's defaults; open: its opt-out; allow: an allow-list with the server.
    let deny = Ns::new(&client, "rf-sbx-deny", &[]).await?;
    let open = Ns::new(&client, "rf-sbx-open", &[]).await?;
    let allow = Ns::new(&client, "rf-sbx-allow", &[]).await?;
    let listen = ["python3", "-c", LISTEN];
    // Another pod: a plain server no policy selects.
    let server = open
        .create_pod(plain_pod(&open.name, "server", &listen)?)
        .await?;
    let server_ip = open.running(&server).await?;

    let opt_out = chart_batch_policies(
        &kube_version,
        &[
            "batchNetworkPolicy.enabled=false".into(),
            format!("batchNetworkPolicy.namespaces={{{}}}", open.name),
        ],
    )?;
    ensure!(opt_out.is_empty(), "the opt-out still renders {opt_out:?}");
    let defaults = chart_batch_policies(
        &kube_version,
        &[format!("batchNetworkPolicy.namespaces={{{}}}", deny.name)],
    )?;
    ensure!(defaults.len() == 1, "{defaults:?}");
    apply_policies(&client, defaults).await?;
    let allow_list = chart_batch_policies(
        &kube_version,
        &[
            format!("batchNetworkPolicy.namespaces={{{}}}", allow.name),
            format!("batchNetworkPolicy.egress[0].cidr={server_ip}/32"),
            format!("batchNetworkPolicy.egress[0].ports[0].port={PORT}"),
        ],
    )?;
    ensure!(allow_list.len() == 1, "{allow_list:?}");
    apply_policies(&client, allow_list).await?;

    // In each namespace a batch pod (listening too) and a plain client pod.
    let mut batch_ip = BTreeMap::new();
    for ns in [&deny, &open, &allow] {
        ns.create_pod(batch_pod(
            &ns.name,
            "batch",
            "renders/batch/f_####",
            &listen,
            false,
        )?)
        .await?;
        ns.create_pod(plain_pod(&ns.name, "client", &listen)?)
            .await?;
    }
    for ns in [&deny, &open, &allow] {
        let ip = ns.running("batch").await?;
        ns.running("client").await?;
        batch_ip.insert(ns.name.clone(), ip);
    }
    for ns in [&deny, &allow] {
        let waited = wait_covered(ns, "batch", &batch_ip[&ns.name]).await?;
        println!(
            "sandbox: {}: batch pod covered by kube-network-policies {:.1}s after it was seen Running",
            ns.name,
            waited.as_secs_f64()
        );
    }

    let mut failures = Vec::new();
    let mut check =
        |ns: &Ns, from: &str, what: &str, ip: &str, port: u16, want: bool| -> Result<()> {
            let (got, said) = connects(&ns.name, from, ip, port)?;
            println!(
                "sandbox: {}: {from} -> {what} ({ip}:{port}): {said}",
                ns.name
            );
            if got != want {
                failures.push(format!(
                    "{}: {from} -> {what}: {said}, want {}",
                    ns.name,
                    if want { "connected" } else { "blocked" }
                ));
            }
            Ok(())
        };
    // Control: the network itself works for pods no policy selects.
    check(&deny, "client", "API server Service", &api, 443, true)?;
    check(&deny, "client", "server pod", &server_ip, PORT, true)?;
    // The chart's defaults: nothing in, nothing out.
    check(&deny, "batch", "API server Service", &api, 443, false)?;
    check(&deny, "batch", "server pod", &server_ip, PORT, false)?;
    let ip = batch_ip[&deny.name].clone();
    check(&deny, "client", "batch pod", &ip, PORT, false)?;
    // The opt-out: all of it connects.
    check(&open, "batch", "API server Service", &api, 443, true)?;
    check(&open, "batch", "server pod", &server_ip, PORT, true)?;
    let ip = batch_ip[&open.name].clone();
    check(&open, "client", "batch pod", &ip, PORT, true)?;
    // The allow-list: the listed server only.
    check(&allow, "batch", "server pod", &server_ip, PORT, true)?;
    check(&allow, "batch", "API server Service", &api, 443, false)?;
    let ip = batch_ip[&allow.name].clone();
    check(&allow, "client", "batch pod", &ip, PORT, false)?;
    ensure!(failures.is_empty(), "{failures:#?}");

    start_up_window(&deny, &server_ip, &api).await
}

/// The start-up window, and render-node closing it. Measured, not asserted: how long after its
/// container starts a batch pod can still open connections, before kube-network-policies
/// learns its IP (the kubelet publishes it after the containers start; kind's containerd 1.6
/// has no NRI to tell it sooner). Asserted: in batch pods as the operator builds them for a
/// namespace its policy isolates, render-node starts Blender only once a connection is
/// blocked, and no connection Blender tries from its first moment gets out.
async fn start_up_window(deny: &Ns, server_ip: &str, api: &str) -> Result<()> {
    let open_for = window_without_waiting(deny, server_ip).await?;
    println!(
        "sandbox: start-up window, last connection that got out, seconds after the container \
         started, in {} batch pods: {}",
        open_for.len(),
        open_for.join(", ")
    );
    let mut failures = Vec::new();
    let mut waits = Vec::new();
    for (pod, log) in window_after_waiting(deny, server_ip, api).await? {
        match WaitedPod::read(&log) {
            Ok(w) => {
                println!(
                    "sandbox: {pod}: render-node waited {:.2}s ({} connections to {} got \
                     through, then one {}); Blender then tried {} connections, {} got out",
                    w.waited, w.through, w.probe, w.blocked, w.tried, w.got_out
                );
                if w.got_out > 0 {
                    failures.push(format!(
                        "{pod}: {} connections got out: {}",
                        w.got_out, w.line
                    ));
                }
                waits.push(w);
            }
            Err(e) => failures.push(format!("{pod}: {e:#}\n{log}")),
        }
    }
    ensure!(failures.is_empty(), "{failures:#?}");
    let open = waits.iter().filter(|w| w.through > 0).count();
    let slowest = waits.iter().map(|w| w.waited).fold(0.0, f64::max);
    println!(
        "sandbox: start-up window closed: in {open} of {} batch pods connections got through \
         before render-node saw them blocked; the wait cost at most {slowest:.2}s",
        waits.len()
    );
    Ok(())
}

/// Pods that connect from their first moment until a connection is blocked: when the last one
/// got through, in seconds after the process started (`never` when the first was blocked).
async fn window_without_waiting(deny: &Ns, server_ip: &str) -> Result<Vec<String>> {
    let window = format!(
        "import socket, time\n\
t0 = time.monotonic(); last = None\n\
while time.monotonic() - t0 < 5:\n    t = time.monotonic() - t0\n    try:\n        \
socket.create_connection(('{server_ip}', {PORT}), 0.25).close(); last = t\n    \
except OSError:\n        break\n    time.sleep(0.05)\n\
print('never' if last is None else f'{{last:.2f}}')\n"
    );
    let starts = 3;
    for i in 0..starts {
        deny.create_pod(batch_pod(
            &deny.name,
            &format!("start-{i}"),
            "renders/batch/f_####",
            &["python3", "-c", &window],
            false,
        )?)
        .await?;
    }
    let mut open_for = Vec::new();
    for i in 0..starts {
        let name = format!("start-{i}");
        deny.finished(&name, Duration::from_secs(120)).await?;
        open_for.push(deny.logs(&name).await?.trim().to_string());
    }
    Ok(open_for)
}

/// The marker of the stand-in Blender's one line.
const WINDOW_LINE: &str = "RF-WINDOW";

/// Batch pods running render-node with a stand-in for Blender that connects to the server
/// pod and to the API server's Service every 50 ms for 2 s from its first moment, and says how
/// many connections got out; each pod's log. The API server's Service is where the window
/// shows on kind (render-node's own probe gets through there at first): without the wait the
/// stand-in's first connections get out.
async fn window_after_waiting(
    deny: &Ns,
    server_ip: &str,
    api: &str,
) -> Result<Vec<(String, String)>> {
    let blender = format!(
        "#!/usr/bin/env python3\n\
import socket, time\n\
t0 = time.monotonic(); tried = 0; out = []\n\
while time.monotonic() - t0 < 2:\n    t = time.monotonic() - t0\n    \
for addr in (('{server_ip}', {PORT}), ('{api}', 443)):\n        tried += 1\n        try:\n            \
socket.create_connection(addr, 0.25).close(); out.append(f'{{t:.2f}}')\n        \
except OSError:\n            pass\n    time.sleep(0.05)\n\
print(f'{WINDOW_LINE} tried={{tried}} got_out={{len(out)}} at={{\",\".join(out) or \"-\"}}', flush=True)\n"
    );
    // The scratch space is the only writable place: the stand-in and a .blend header there.
    let start = "printf '%s' \"$1\" > /tmp/stand-in && chmod +x /tmp/stand-in \
        && printf 'BLENDER-v405' > /tmp/scene.blend \
        && exec render-node --blend-file /tmp/scene.blend --frames 1 \
        --output '/tmp/out/f_####' --blender /tmp/stand-in --blender-version 4.5.0";
    let pods: Vec<String> = (0..3).map(|i| format!("waited-{i}")).collect();
    for name in &pods {
        let command = ["sh", "-c", start, "sh", &blender];
        deny.create_pod(isolated_batch_pod(&deny.name, name, &command)?)
            .await?;
    }
    let mut logs = Vec::new();
    for name in pods {
        // render-node fails the batch (the stand-in saves no frame): only the log matters.
        deny.finished(&name, Duration::from_secs(120)).await?;
        let log = deny.logs(&name).await?;
        logs.push((name, log));
    }
    Ok(logs)
}

/// A batch pod as [`batch_pod`] builds it, with the environment the operator's Job builder
/// gives batch pods in a namespace its batch NetworkPolicy isolates (the chart's default
/// probe: the API server's Service).
fn isolated_batch_pod(ns: &str, name: &str, command: &[&str]) -> Result<Pod> {
    let rj: RenderJob = serde_json::from_value(json!({
        "apiVersion": "renderfarm.io/v1alpha1", "kind": "RenderJob",
        "metadata": {"name": name, "namespace": ns, "uid": "00000000-0000-4000-8000-000000000001"},
        "spec": {
            "blendFile": "scenes/kind.blend", "frames": {"start": 1, "end": 1},
            "output": {"path": "renders/batch/f_####", "format": "PNG"},
            "storage": {"claimName": "render-storage", "mountPath": "/data"},
        }
    }))?;
    let plan = Plan::new(&rj.spec.frames, rj.spec.batch_size).ok_or_else(|| anyhow!("no plan"))?;
    let batch = plan.batch(0).ok_or_else(|| anyhow!("no batch"))?;
    let mut config = JobConfig::new(IMAGE);
    config.isolation = Some(job::Isolation {
        namespaces: [ns.to_string()].into(),
        probe: render_contract::IsolationProbe::ApiServer,
    });
    let env = job::build(&rj, &batch, &config, false)?
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.containers.into_iter().next())
        .and_then(|c| c.env)
        .unwrap_or_default();
    ensure!(
        env.iter()
            .any(|e| e.name == render_contract::args::WAIT_ISOLATED_ENV),
        "the operator's Job builder gives batch pods in {ns} no {}: {env:?}",
        render_contract::args::WAIT_ISOLATED_ENV
    );
    let mut pod = batch_pod(ns, name, "renders/batch/f_####", command, false)?;
    let spec = pod.spec.as_mut().ok_or_else(|| anyhow!("no pod spec"))?;
    spec.containers[0].env = Some(env);
    Ok(pod)
}

/// What a batch pod of [`window_after_waiting`] logged: render-node's `isolated` event and the
/// stand-in Blender's line.
#[derive(Debug)]
struct WaitedPod {
    probe: String,
    through: u64,
    blocked: String,
    waited: f64,
    tried: u64,
    got_out: u64,
    line: String,
}

impl WaitedPod {
    fn read(log: &str) -> Result<WaitedPod> {
        let events: Vec<Value> = log
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e.get("event").is_some())
            .collect();
        let warned = |e: &&Value| {
            e["event"] == "warning" && e["message"].as_str().is_some_and(|m| m.contains("isolat"))
        };
        if let Some(w) = events.iter().find(warned) {
            bail!("render-node warned: {}", w["message"]);
        }
        let isolated = events
            .iter()
            .find(|e| e["event"] == "isolated")
            .ok_or_else(|| {
                anyhow!("render-node said nothing of its wait (an image without it?)")
            })?;
        let line = log
            .lines()
            .find_map(|l| {
                l.split_once(WINDOW_LINE)
                    .map(|(_, rest)| rest.trim().to_string())
            })
            .ok_or_else(|| anyhow!("the stand-in Blender never ran or said nothing"))?;
        let field = |key: &str| -> Result<u64> {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| anyhow!("no {key} in {line:?}"))
        };
        let (tried, got_out) = (field("tried")?, field("got_out")?);
        ensure!(tried > 0, "the stand-in Blender tried nothing: {line}");
        Ok(WaitedPod {
            probe: isolated["probe"].as_str().unwrap_or_default().to_string(),
            through: isolated["through"].as_u64().unwrap_or_default(),
            blocked: isolated["blocked"].as_str().unwrap_or_default().to_string(),
            waited: isolated["waited_seconds"].as_f64().unwrap_or_default(),
            tried,
            got_out,
            line,
        })
    }
}

/// [`isolated_batch_pod`] is [`batch_pod`] with the operator's isolation variable.
#[test]
fn isolated_batch_pods_are_batch_pods_that_wait() -> Result<()> {
    let pod = isolated_batch_pod("studio", "waited-0", &["true"])?;
    let plain = batch_pod(
        "studio",
        "waited-0",
        "renders/batch/f_####",
        &["true"],
        false,
    )?;
    let (spec, plain_spec) = (pod.spec.context("spec")?, plain.spec.context("spec")?);
    let env = spec.containers[0].env.clone().unwrap_or_default();
    assert_eq!(env.len(), 1, "{env:?}");
    assert_eq!(env[0].name, render_contract::args::WAIT_ISOLATED_ENV);
    assert_eq!(env[0].value.as_deref(), Some("api-server"));
    let mut without = spec.clone();
    without.containers[0].env = None;
    assert_eq!(without, plain_spec, "only the variable differs");
    assert_eq!(pod.metadata.labels, plain.metadata.labels);
    Ok(())
}

/// [`WaitedPod::read`] on render-node's output as it prints it (the lines of a local run of
/// the same command, with a local listener standing in for the server).
#[test]
fn waited_pods_logs_are_read() -> Result<()> {
    let start = r#"{"event":"start","frames":[1],"to_render":[1],"skipped":[],"device":"CPU"}"#;
    let isolated = r#"{"event":"isolated","probe":"10.96.0.1:443","through":2,"blocked":"timed out","waited_seconds":0.412}"#;
    let log = |isolated: &str, line: &str| format!("{start}\n{isolated}\nblender: {line}\n");
    let w = WaitedPod::read(&log(isolated, "RF-WINDOW tried=9 got_out=0 at=-"))?;
    assert_eq!((w.through, w.tried, w.got_out), (2, 9, 0), "{w:?}");
    assert_eq!(
        (w.probe.as_str(), w.blocked.as_str()),
        ("10.96.0.1:443", "timed out")
    );
    assert!((w.waited - 0.412).abs() < 1e-9, "{w:?}");
    let leaky = WaitedPod::read(&log(
        isolated,
        "RF-WINDOW tried=40 got_out=3 at=0.00,0.06,0.11",
    ))?;
    assert_eq!(leaky.got_out, 3);
    // An image that does not wait says nothing of it; one that could not confirm it warns.
    let silent = WaitedPod::read(&log("", "RF-WINDOW tried=9 got_out=0 at=-"));
    assert!(silent.is_err(), "{silent:?}");
    let warning =
        r#"{"event":"warning","message":"isolation not confirmed before Blender started: ..."}"#;
    let warned = WaitedPod::read(&log(warning, "RF-WINDOW tried=9 got_out=0 at=-"));
    assert!(warned.is_err(), "{warned:?}");
    let no_blender = WaitedPod::read(&format!("{start}\n{isolated}\n"));
    assert!(no_blender.is_err(), "{no_blender:?}");
    Ok(())
}

/// Python that tries each write a scene might attempt and prints one JSON object: what
/// happened to each (`ok` or the errno's name).
const WRITES: &str = r#"import errno, json, os
def attempt(f):
    try:
        f()
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e))
def write(path, mode="w"):
    with open(path, mode) as f:
        f.write("x")
def through_link():
    os.symlink("../other", "/data/renders/mine/escape")
    write("/data/renders/mine/escape/planted.txt")
print(json.dumps({
    "write a new file among the scenes": attempt(lambda: write("/data/scenes/new.blend")),
    "overwrite a scene": attempt(lambda: write("/data/scenes/scene.blend", "r+")),
    "delete a scene": attempt(lambda: os.remove("/data/scenes/scene.blend")),
    "rename a scene": attempt(lambda: os.rename("/data/scenes/scene.blend", "/data/scenes/x.blend")),
    "overwrite another render's frame": attempt(lambda: write("/data/renders/other/frame_0001.png", "r+")),
    "delete another render's frame": attempt(lambda: os.remove("/data/renders/other/frame_0001.png")),
    "make a directory beside the output": attempt(lambda: os.mkdir("/data/renders/mine2")),
    "write at the top of the claim": attempt(lambda: write("/data/top.txt")),
    "write through a symlink out of the output directory": attempt(through_link),
    "write in the output directory": attempt(lambda: write("/data/renders/mine/probe.txt")),
}))
"#;

#[tokio::test]
#[ignore = "needs the kind lane: hack/kind.sh up"]
async fn batches_write_only_their_output_directory() -> Result<()> {
    let client = client().await?;
    let ns = Ns::new(&client, "rf-sbx-ro", &[])
        .await?
        .with_storage()
        .await?;
    let dir = ns.dir()?.to_path_buf();
    // Another scene and another render's frame, writable by anyone: only the mounts can
    // keep a batch from changing them.
    std::fs::write(
        dir.join("scenes/scene.blend"),
        b"BLENDER-v304 someone's scene",
    )?;
    std::fs::create_dir_all(dir.join("renders/other"))?;
    std::fs::write(dir.join("renders/other/frame_0001.png"), b"someone's frame")?;
    for (path, mode) in [
        ("renders", 0o777),
        ("renders/other", 0o777),
        ("scenes/scene.blend", 0o666),
        ("renders/other/frame_0001.png", 0o666),
    ] {
        std::fs::set_permissions(dir.join(path), std::fs::Permissions::from_mode(mode))?;
    }
    ensure!(!dir.join("renders/mine").exists());

    // A batch of RenderJob "mine" (output renders/mine/frame_####), with the batch's mounts.
    let probe = ns
        .create_pod(batch_pod(
            &ns.name,
            "mine",
            "renders/mine/frame_####",
            &["python3", "-c", WRITES],
            true,
        )?)
        .await?;
    ensure!(
        ns.finished(&probe, Duration::from_secs(180)).await?,
        "probe failed: {}",
        ns.logs(&probe).await.unwrap_or_default()
    );
    let log = ns.logs(&probe).await?;
    let results: BTreeMap<String, String> =
        serde_json::from_str(log.trim()).with_context(|| format!("probe output: {log}"))?;
    println!("sandbox: writes from a batch pod: {results:#?}");
    let mut wrong = Vec::new();
    for (what, got) in &results {
        let want = if what == "write in the output directory" {
            "ok"
        } else {
            "EROFS"
        };
        if got != want {
            wrong.push(format!("{what}: {got}, want {want}"));
        }
    }
    ensure!(results.len() == 10 && wrong.is_empty(), "{wrong:#?}");
    assert_eq!(
        std::fs::read(dir.join("scenes/scene.blend"))?,
        b"BLENDER-v304 someone's scene"
    );
    assert_eq!(
        std::fs::read(dir.join("renders/other/frame_0001.png"))?,
        b"someone's frame"
    );
    ensure!(!dir.join("renders/other/planted.txt").exists());
    ensure!(dir.join("renders/mine/probe.txt").is_file());
    // The kubelet made the output directory for the mount: root's, with the claim root's mode.
    let made = std::fs::metadata(dir.join("renders/mine"))?;
    println!(
        "sandbox: output directory made by the kubelet: uid {} mode {:o}",
        made.uid(),
        made.mode() & 0o7777
    );

    // A real render into a directory two levels deep that does not exist yet, by the batch
    // Jobs the operator builds (real render-node, real Blender, the sandboxed mounts).
    ns.make_scene().await?;
    ensure!(!dir.join("renders/fresh").exists());
    let t = Instant::now();
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns.name);
    let built = batch_jobs(&ns.name, "fresh", "renders/fresh/shot/frame_####", FRAMES)?;
    for job in &built {
        let pod = job.spec.as_ref().and_then(|s| s.template.spec.as_ref());
        let mounts = pod
            .and_then(|p| p.containers[0].volume_mounts.clone())
            .unwrap_or_default();
        println!("sandbox: batch mounts: {}", serde_json::to_string(&mounts)?);
        renderfarm::client::create(&jobs, job).await?;
    }
    for job in &built {
        let name = job.name_any();
        let what = format!("batch Job {name} to end");
        let done = await_existing(
            jobs.clone(),
            &name,
            Duration::from_secs(900),
            &what,
            |j: &Job| {
                j.status.as_ref().is_some_and(|s| {
                    s.conditions.iter().flatten().any(|c| {
                        (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True"
                    })
                })
            },
        )
        .await?;
        let complete = done
            .status
            .iter()
            .flat_map(|s| s.conditions.iter().flatten())
            .any(|c| c.type_ == "Complete" && c.status == "True");
        let lp = ListParams::default().labels(&format!("job-name={name}"));
        let mut logs = String::new();
        for pod in ns.pods().list(&lp).await? {
            logs.push_str(&ns.logs(&pod.name_any()).await.unwrap_or_default());
        }
        ensure!(complete, "batch {name} failed: {logs}");
    }
    println!(
        "sandbox: {FRAMES} frames into a fresh output directory in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    for n in 1..=FRAMES {
        check_png(
            &dir.join(format!("renders/fresh/shot/frame_{n:04}.png")),
            WIDTH,
            HEIGHT,
        )?;
    }
    Ok(())
}

#[tokio::test]
#[ignore = "needs the kind lane: hack/kind.sh up"]
async fn restricted_namespace_renders_real_frames() -> Result<()> {
    let client = client().await?;
    let ns = Ns::new(
        &client,
        "rf-sbx-restricted",
        &[
            ("pod-security.kubernetes.io/enforce", "restricted"),
            ("pod-security.kubernetes.io/enforce-version", "latest"),
        ],
    )
    .await?
    .with_storage()
    .await?;
    // The namespace really enforces the standard: a pod that may run as root is refused.
    let loose: Pod = serde_json::from_value(json!({
        "metadata": {"name": "loose"},
        "spec": {"containers": [{"name": "c", "image": IMAGE, "imagePullPolicy": "IfNotPresent"}]},
    }))?;
    match renderfarm::client::create(&ns.pods(), &loose).await {
        Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains("PodSecurity") => {}
        other => bail!("a pod outside the restricted standard was not refused: {other:?}"),
    }
    ns.make_scene().await?;
    let t = Instant::now();
    ns.apply_renderjob("restricted", "renders/restricted/frame_####")
        .await?;
    let rj = ns.wait_complete("restricted").await?;
    println!(
        "sandbox: {FRAMES} frames in a restricted namespace in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let s = rj.status.ok_or_else(|| anyhow!("no status"))?;
    assert_eq!(s.frames.rendered, i64::from(FRAMES), "{s:?}");
    let dir = ns.dir()?;
    for n in 1..=FRAMES {
        check_png(
            &dir.join(format!("renders/restricted/frame_{n:04}.png")),
            WIDTH,
            HEIGHT,
        )?;
    }
    Ok(())
}
