//! What the e2e suite relies on from the local cluster (`hack/cluster.sh`, hack/README.md): the
//! real Job controller, scheduler and Eviction API, and kwok's Stages playing the kubelet. Each
//! test works in a namespace of its own and removes it and its Stages afterwards. Needs a
//! cluster with the kwok nodes and the Stage CRD (`hack/cluster.sh up`,
//! `eval "$(hack/cluster.sh env)"`). Run:
//! `cargo test -p renderfarm --test cluster -- --ignored --nocapture`.

use std::cell::RefCell;
use std::fmt::Debug;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use futures::TryStreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{
    Api, DeleteParams, DynamicObject, EvictParams, ListParams, Patch, PatchParams, PostParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::wait::{Condition, await_condition, conditions};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

const MINUTE: Duration = Duration::from_secs(60);
/// Label kwok's default stages leave alone; a test's own Stages decide those pods' fate.
const SCENARIO: &str = "kwok.renderfarm.io/scenario";
const GPU_NODE: &str = "kwok-gpu-0";

/// A namespace of one test, and the cluster-wide Stages it made.
struct Scope {
    client: Client,
    ns: String,
    stages: RefCell<Vec<String>>,
}

impl Scope {
    async fn new(test: &str) -> Result<Scope> {
        let client = Client::try_default().await.context(
            "no cluster: start one with `hack/cluster.sh up` and `eval \"$(hack/cluster.sh env)\"`",
        )?;
        let ns = renderfarm_testkit::unique_name(&format!("rf-cluster-{test}"));
        let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}}))?;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await?;
        Ok(Scope {
            client,
            ns,
            stages: RefCell::new(Vec::new()),
        })
    }

    fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    fn stage_api(&self) -> Api<DynamicObject> {
        let gvk = GroupVersionKind::gvk("kwok.x-k8s.io", "v1alpha1", "Stage");
        Api::all_with(self.client.clone(), &ApiResource::from_gvk(&gvk))
    }

    /// Create a Stage from a `hack/kwok/` template, its `${KEY}`s replaced by `vars`.
    async fn stage(&self, template: &str, vars: &[(&str, &str)]) -> Result<String> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../hack/kwok")
            .join(template);
        let mut text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading stage template {}", path.display()))?;
        for (key, value) in vars {
            text = text.replace(&format!("${{{key}}}"), value);
        }
        // Only the YAML: the comments at the top name the placeholders too.
        let body = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        ensure!(
            !body.contains("${"),
            "{template}: a placeholder is left unfilled"
        );
        let stage: DynamicObject = serde_yaml::from_str(&body)?;
        let name = stage.name_any();
        self.stage_api()
            .create(&PostParams::default(), &stage)
            .await
            .with_context(|| format!("creating Stage {name}"))?;
        self.stages.borrow_mut().push(name.clone());
        Ok(name)
    }

    /// A Job like the operator's batches: pods labelled with the scenario and batch index;
    /// disruptions ignored, exit code 64 fails the Job at once.
    async fn batch_job(
        &self,
        name: &str,
        scenario: &str,
        batch: &str,
        backoff_limit: i32,
    ) -> Result<()> {
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {
                "backoffLimit": backoff_limit,
                "podFailurePolicy": {"rules": [
                    {"action": "Ignore",
                     "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                    {"action": "FailJob",
                     "onExitCodes": {"containerName": "render", "operator": "In", "values": [64]}},
                ]},
                "template": {
                    "metadata": {"labels": {SCENARIO: scenario, "renderfarm.io/batch": batch}},
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "render", "image": "busybox"}],
                    },
                },
            },
        }))?;
        self.jobs().create(&PostParams::default(), &job).await?;
        Ok(())
    }

    async fn pod(&self, pod: Value) -> Result<()> {
        let pod: Pod = serde_json::from_value(pod)?;
        self.pods().create(&PostParams::default(), &pod).await?;
        Ok(())
    }

    /// The only pod of a Job.
    async fn job_pod(&self, job: &str) -> Result<Pod> {
        let mut pods = self
            .pods()
            .list(&ListParams::default().labels(&format!("job-name={job}")))
            .await?
            .items;
        ensure!(
            pods.len() == 1,
            "Job {job} has {} pods, expected one",
            pods.len()
        );
        pods.pop().context("no pod")
    }

    /// Best effort and without waiting: the namespace's objects go with it.
    async fn cleanup(self) {
        for name in self.stages.take() {
            let _ = self
                .stage_api()
                .delete(&name, &DeleteParams::default())
                .await;
        }
        let _ = Api::<Namespace>::all(self.client.clone())
            .delete(&self.ns, &DeleteParams::background())
            .await;
    }
}

/// Run a test body in a fresh Scope; clean up however it ends.
async fn in_scope(test: &str, body: impl AsyncFnOnce(&Scope) -> Result<()>) -> Result<()> {
    let scope = Scope::new(test).await?;
    let started = Instant::now();
    let result = body(&scope).await;
    println!("{test}: {:.1} s", started.elapsed().as_secs_f64());
    scope.cleanup().await;
    result
}

/// `await_condition` with a timeout; on timeout the error shows the object's last status.
async fn wait_for<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    timeout: Duration,
    cond: impl Condition<K>,
) -> Result<K>
where
    K: Clone + Debug + Send + DeserializeOwned + Resource + serde::Serialize + 'static,
{
    match tokio::time::timeout(timeout, await_condition(api.clone(), name, cond)).await {
        Ok(found) => found?.with_context(|| format!("{name} is gone, waiting for {what}")),
        Err(_) => {
            let last = api
                .get_opt(name)
                .await?
                .and_then(|o| serde_json::to_value(o).ok())
                .and_then(|v| v.get("status").cloned());
            bail!("{what}: not after {timeout:?}; {name}'s status: {last:?}")
        }
    }
}

/// A Job's terminal condition (`Complete` or `Failed`) and its reason, if it has one.
fn finished(job: &Job) -> Option<(String, String)> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find_map(|c| {
            ((c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
                .then(|| (c.type_.clone(), c.reason.clone().unwrap_or_default()))
        })
}

async fn job_finished(scope: &Scope, job: &str, timeout: Duration) -> Result<(String, String)> {
    let what = format!("Job {job} finished");
    let done = wait_for(&scope.jobs(), job, &what, timeout, |j: Option<&Job>| {
        j.is_some_and(|j| finished(j).is_some())
    })
    .await?;
    finished(&done).context("finished without a condition")
}

/// `(exitCode, reason)` of a pod's first container once it terminated.
fn terminated(pod: &Pod) -> Option<(i32, String)> {
    let state = pod
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .terminated
        .as_ref()?;
    Some((state.exit_code, state.reason.clone().unwrap_or_default()))
}

/// `(status, reason)` of a pod condition.
fn condition(pod: &Pod, type_: &str) -> Option<(String, String)> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone().unwrap_or_default()))
}

/// `ensure!` for equality, so that a failed check still cleans up (a panic would not).
fn same<T: PartialEq + Debug>(what: &str, got: T, want: T) -> Result<()> {
    ensure!(got == want, "{what}: got {got:?}, want {want:?}");
    println!("ok: {what}: {got:?}");
    Ok(())
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

#[tokio::test]
#[ignore = "needs the local cluster (hack/cluster.sh up)"]
async fn a_job_completes() -> Result<()> {
    in_scope("plain", async |s| {
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "plain"},
            "spec": {"template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "c", "image": "busybox", "command": ["true"]}],
            }}},
        }))?;
        s.jobs().create(&PostParams::default(), &job).await?;
        wait_for(
            &s.jobs(),
            "plain",
            "Job plain complete",
            MINUTE,
            conditions::is_job_completed(),
        )
        .await?;
        let (exit, reason) =
            terminated(&s.job_pod("plain").await?).context("pod not terminated")?;
        same(
            "plain: the pod's exit code, reason",
            (exit, reason.as_str()),
            (0, "Completed"),
        )?;
        Ok(())
    })
    .await
}

/// fail.yaml with exit code 64 on batch 1, succeed-others.yaml for the rest: the exit code
/// reaches the pod's terminated state, and the podFailurePolicy `FailJob` rule on 64 fails the
/// Job after one pod; the other batch completes.
#[tokio::test]
#[ignore = "needs the local cluster (hack/cluster.sh up)"]
async fn fail_stage_exit_code_reaches_pod_failure_policy() -> Result<()> {
    in_scope("fail", async |s| {
        let scenario = s.ns.as_str();
        s.stage(
            "fail.yaml",
            &[
                ("SCENARIO", scenario),
                ("BATCHES", "1"),
                ("EXIT_CODE", "64"),
                ("REASON", "Error"),
            ],
        )
        .await?;
        s.stage(
            "succeed-others.yaml",
            &[("SCENARIO", scenario), ("BATCHES", "1")],
        )
        .await?;
        s.batch_job("batch-0", scenario, "0", 3).await?;
        s.batch_job("batch-1", scenario, "1", 3).await?;

        let (cond, _) = job_finished(s, "batch-0", MINUTE).await?;
        same("succeed-others.yaml: batch-0", cond.as_str(), "Complete")?;
        let (cond, reason) = job_finished(s, "batch-1", MINUTE).await?;
        same(
            "fail.yaml, exit code 64: batch-1",
            (cond.as_str(), reason.as_str()),
            ("Failed", "PodFailurePolicy"),
        )?;
        let job = s.jobs().get("batch-1").await?;
        same(
            "batch-1: failed pods",
            job.status.and_then(|st| st.failed),
            Some(1),
        )?;
        let pod = s.job_pod("batch-1").await?;
        same(
            "batch-1: the pod's exit code, reason",
            terminated(&pod),
            Some((64, "Error".to_string())),
        )?;
        same("batch-1: the pod's phase", phase(&pod), "Failed")?;
        Ok(())
    })
    .await
}

/// An exit code the `FailJob` rule does not name counts against `backoffLimit` instead.
#[tokio::test]
#[ignore = "needs the local cluster (hack/cluster.sh up)"]
async fn fail_stage_other_exit_code_counts_against_backoff_limit() -> Result<()> {
    in_scope("exit3", async |s| {
        let scenario = s.ns.as_str();
        s.stage(
            "fail.yaml",
            &[
                ("SCENARIO", scenario),
                ("BATCHES", "0"),
                ("EXIT_CODE", "3"),
                ("REASON", "Error"),
            ],
        )
        .await?;
        s.batch_job("batch-0", scenario, "0", 0).await?;
        let (cond, reason) = job_finished(s, "batch-0", MINUTE).await?;
        same(
            "fail.yaml, exit code 3: the Job",
            (cond.as_str(), reason.as_str()),
            ("Failed", "BackoffLimitExceeded"),
        )?;
        same(
            "the pod's exit code, reason",
            terminated(&s.job_pod("batch-0").await?),
            Some((3, "Error".to_string())),
        )?;
        Ok(())
    })
    .await
}

#[tokio::test]
#[ignore = "needs the local cluster (hack/cluster.sh up)"]
async fn oom_stage_exit_code_137() -> Result<()> {
    in_scope("oom", async |s| {
        let scenario = s.ns.as_str();
        s.stage("oom.yaml", &[("SCENARIO", scenario), ("BATCHES", "0")])
            .await?;
        s.batch_job("oom", scenario, "0", 0).await?;
        let (cond, _) = job_finished(s, "oom", MINUTE).await?;
        same("oom.yaml: the Job", cond.as_str(), "Failed")?;
        same(
            "oom.yaml: the pod's exit code, reason",
            terminated(&s.job_pod("oom").await?),
            Some((137, "OOMKilled".to_string())),
        )?;
        Ok(())
    })
    .await
}

fn unschedulable(p: Option<&Pod>) -> bool {
    p.and_then(|p| condition(p, "PodScheduled"))
        .is_some_and(|(status, reason)| status == "False" && reason == "Unschedulable")
}

#[tokio::test]
#[ignore = "needs the local cluster (hack/cluster.sh up)"]
async fn pod_no_node_fits_is_unschedulable() -> Result<()> {
    in_scope("nowhere", async |s| {
        s.pod(json!({
            "metadata": {"name": "nowhere"},
            "spec": {
                "nodeSelector": {"renderfarm.io/no-such-node": "true"},
                "containers": [{"name": "c", "image": "busybox"}],
            },
        }))
        .await?;
        wait_for(
            &s.pods(),
            "nowhere",
            "PodScheduled False, Unschedulable",
            MINUTE,
            unschedulable,
        )
        .await?;
        Ok(())
    })
    .await
}

fn pod_ips(pod: &Pod) -> Vec<String> {
    let ips = pod.status.as_ref().and_then(|s| s.pod_ips.as_ref());
    ips.into_iter().flatten().map(|ip| ip.ip.clone()).collect()
}

/// kwok plays `pod-ready` again on a pod it already ran (as it does on an old copy of a pod
/// after a re-list): the pod runs again with the IP it had. A second IP, merged beside the
/// first, is refused by the API server, and the pod would wait for kwok's retries.
#[tokio::test]
#[ignore = "needs the local cluster (hack/cluster.sh up)"]
async fn pod_ready_played_again_keeps_the_pod_ip() -> Result<()> {
    in_scope("replay", async |s| {
        // No Job owns it, so kwok's pod-complete leaves it Running.
        s.pod(json!({
            "metadata": {"name": "replay"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }))
        .await?;
        let running =
            |p: Option<&Pod>| p.is_some_and(|p| phase(p) == "Running" && !pod_ips(p).is_empty());
        let pods = s.pods();
        let first = wait_for(&pods, "replay", "Running with an IP", MINUTE, running).await?;
        let ips = pod_ips(&first);
        same("the pod's IPs", ips.len(), 1)?;

        // Back to Pending and not Ready: pod-ready's selector matches the pod again.
        let back = json!({"status": {"phase": "Pending", "conditions": [
            {"type": "Ready", "status": "False"},
        ]}});
        pods.patch_status("replay", &PatchParams::default(), &Patch::Merge(&back))
            .await?;
        let again = wait_for(
            &pods,
            "replay",
            "Running again after pod-ready played twice",
            MINUTE,
            |p: Option<&Pod>| {
                running(p)
                    && p.and_then(|p| condition(p, "Ready"))
                        .is_some_and(|c| c.0 == "True")
            },
        )
        .await?;
        same(
            "the pod's IPs after pod-ready played again",
            pod_ips(&again),
            ips,
        )?;
        Ok(())
    })
    .await
}

/// The GPU node takes a pod that asks for a GPU and tolerates its taint, and only such a pod.
#[tokio::test]
#[ignore = "needs the local cluster (hack/cluster.sh up)"]
async fn gpu_pod_runs_on_the_gpu_node() -> Result<()> {
    in_scope("gpu", async |s| {
        let gpu = |name: &str, tolerate: bool| {
            let tolerations = if tolerate {
                json!([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])
            } else {
                json!([])
            };
            json!({
                "metadata": {"name": name},
                "spec": {
                    "tolerations": tolerations,
                    "containers": [{"name": "c", "image": "busybox",
                                    "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
                },
            })
        };
        s.pod(gpu("gpu", true)).await?;
        s.pod(gpu("untolerated", false)).await?;
        let pod = wait_for(
            &s.pods(),
            "gpu",
            "GPU pod running",
            MINUTE,
            conditions::is_pod_running(),
        )
        .await?;
        let node = pod.spec.and_then(|spec| spec.node_name);
        same("the GPU pod's node", node.as_deref(), Some(GPU_NODE))?;
        wait_for(
            &s.pods(),
            "untolerated",
            "GPU pod without the toleration Unschedulable",
            MINUTE,
            unschedulable,
        )
        .await?;
        Ok(())
    })
    .await
}

/// Evicting a running Job pod: the API server adds `DisruptionTarget`, kwok's `pod-terminate`
/// ends the pod Failed with the condition kept, and a Job with `backoffLimit: 0` and an `Ignore`
/// rule on `DisruptionTarget` counts no failure, starts a new pod and completes.
#[tokio::test]
#[ignore = "needs the local cluster (hack/cluster.sh up)"]
async fn evicted_pod_keeps_disruption_target_and_job_ignores_it() -> Result<()> {
    in_scope("evict", async |s| {
        let scenario = s.ns.as_str();
        s.stage("slow.yaml", &[("SCENARIO", scenario), ("DELAY_MS", "5000")])
            .await?;
        s.batch_job("evicted", scenario, "0", 0).await?;

        // One watch from before the eviction to the end: the evicted pod is Failed only for the
        // moment before its deletion, which a watch started after the eviction could miss.
        let pods = s.pods();
        let events = watcher(
            pods.clone(),
            watcher::Config::default().labels("job-name=evicted"),
        );
        let mut evicted: Option<String> = None;
        let outcome = tokio::time::timeout(MINUTE, async {
            let mut events = std::pin::pin!(events);
            while let Some(event) = events.try_next().await? {
                let (watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) = event else {
                    continue;
                };
                match &evicted {
                    None if phase(&pod) == "Running" => {
                        let status = pods.evict(&pod.name_any(), &EvictParams::default()).await?;
                        ensure!(status.is_success(), "eviction: {status:?}");
                        evicted = Some(pod.name_any());
                    }
                    Some(name) if *name == pod.name_any() && phase(&pod) == "Failed" => {
                        return Ok(pod);
                    }
                    _ => {}
                }
            }
            bail!("the pod watch ended")
        })
        .await;
        let pod = outcome.map_err(|_| {
            anyhow!("evicted pod Failed: not within {MINUTE:?} (evicted {evicted:?})")
        })??;
        let (status, reason) =
            condition(&pod, "DisruptionTarget").context("no DisruptionTarget")?;
        same(
            "the evicted pod's DisruptionTarget",
            status.as_str(),
            "True",
        )?;
        println!("evicted pod Failed with DisruptionTarget, reason {reason}");

        let (cond, _) = job_finished(s, "evicted", MINUTE).await?;
        same("the Job of the evicted pod", cond.as_str(), "Complete")?;
        let job = s.jobs().get("evicted").await?;
        let failed = job.status.as_ref().and_then(|st| st.failed).unwrap_or(0);
        same("its failed pods", failed, 0)?;
        Ok(())
    })
    .await
}
