//! The short-lived transfer pod: mounts the render claim, runs `tar`, `sha256sum` and `find`
//! over the exec API (as `kubectl cp` does), and is deleted when the command ends. The same pod
//! with the claim mounted read-only is `kubectl render ui`'s reader, which streams images and
//! video with `cat` for as long as the ui runs.

use std::time::Duration;

use futures::TryStreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{AttachParams, AttachedProcess, DeleteParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, ResourceExt as _};
use serde_json::json;
use tokio::io::AsyncReadExt as _;

use crate::cli::Transfer;
use crate::cluster::Ctx;
use crate::error::{Error, Result};

/// Where the claim is mounted in the transfer pod.
pub const MOUNT: &str = "/data";
/// The render pods' user: files the transfer pod writes are theirs.
const UID: i64 = renderfarm_api::names::NODE_UID;
/// A transfer pod outlives a crashed client by at most this long.
const DEADLINE_SECONDS: i64 = 3600;
/// A reader pod lives at most this long; the ui starts a new one when it is gone.
const READER_DEADLINE_SECONDS: i64 = 12 * 3600;
/// Bytes per exec stdin/stdout frame (kube's default of 1 KiB makes large transfers slow).
pub const BUF: usize = 256 * 1024;

pub struct TransferPod {
    pods: Api<Pod>,
    pub name: String,
}

/// What the pod is for: moving files both ways, or only reading them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Transfer,
    Reader,
}

impl TransferPod {
    /// Create a transfer pod (the claim mounted read-write) and wait until it runs.
    pub async fn start(ctx: &Ctx, claim: &str, opts: &Transfer) -> Result<TransferPod> {
        Self::start_as(ctx, claim, opts, Access::Transfer).await
    }

    /// Create the pod and wait until it runs.
    pub async fn start_as(
        ctx: &Ctx,
        claim: &str,
        opts: &Transfer,
        access: Access,
    ) -> Result<TransferPod> {
        let pods: Api<Pod> = ctx.api();
        let (component, deadline, read_only) = match access {
            Access::Transfer => ("transfer", DEADLINE_SECONDS, false),
            Access::Reader => ("reader", READER_DEADLINE_SECONDS, true),
        };
        let spec = json!({
            "metadata": {
                "generateName": format!("render-{component}-"),
                "labels": {
                    "app.kubernetes.io/name": "kubectl-render",
                    "app.kubernetes.io/component": component,
                },
            },
            "spec": {
                "restartPolicy": "Never",
                "activeDeadlineSeconds": deadline,
                "terminationGracePeriodSeconds": 1,
                "automountServiceAccountToken": false,
                "securityContext": {
                    "runAsNonRoot": true, "runAsUser": UID, "runAsGroup": UID,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [{
                    "name": "transfer",
                    "image": opts.image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sleep", deadline.to_string()],
                    "workingDir": "/tmp",
                    "volumeMounts": [{"name": "storage", "mountPath": MOUNT, "readOnly": read_only},
                                     {"name": "tmp", "mountPath": "/tmp"}],
                    "resources": {"requests": {"cpu": "10m", "memory": "32Mi"},
                                  "limits": {"memory": "256Mi"}},
                    "securityContext": {
                        "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }],
                "volumes": [{"name": "storage", "persistentVolumeClaim": {"claimName": claim}},
                            {"name": "tmp", "emptyDir": {}}],
            }
        });
        let pod: Pod = serde_json::from_value(spec)
            .map_err(|e| Error::Kube(format!("transfer pod manifest: {e}")))?;
        let pod = renderfarm_api::create::create(&pods, &pod)
            .await
            .map_err(|e| ctx.unreachable(e))?;
        let tp = TransferPod {
            pods,
            name: pod.name_any(),
        };
        match tp
            .wait_running(Duration::from_secs(opts.pod_timeout), &opts.image)
            .await
        {
            Ok(()) => Ok(tp),
            Err(e) => {
                tp.delete().await;
                Err(e)
            }
        }
    }

    async fn wait_running(&self, timeout: Duration, image: &str) -> Result<()> {
        let cfg = watcher::Config::default().fields(&format!("metadata.name={}", self.name));
        let stream = watcher(self.pods.clone(), cfg).applied_objects();
        futures::pin_mut!(stream);
        let mut last = String::from("not scheduled yet");
        let wait = async {
            while let Some(pod) = stream.try_next().await.map_err(|e| self.fail(e))? {
                match pod_state(&pod, image) {
                    PodState::Running => return Ok(()),
                    PodState::Waiting(why) => last = why,
                    PodState::Broken(why) => return Err(self.fail(why)),
                }
            }
            Err(self.fail("its watch ended"))
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(r) => r,
            Err(_) => Err(self.fail(format!("not running after {}s: {last}", timeout.as_secs()))),
        }
    }

    fn fail(&self, reason: impl ToString) -> Error {
        Error::TransferPod {
            pod: self.name.clone(),
            reason: reason.to_string(),
        }
    }

    /// Start `sh -c SCRIPT sh ARGS...` in the pod.
    pub async fn exec(
        &self,
        script: &str,
        args: &[&str],
        stdin: bool,
        stdout: bool,
    ) -> Result<AttachedProcess> {
        let mut cmd = vec!["sh", "-c", script, "sh"];
        cmd.extend_from_slice(args);
        let ap = AttachParams::default()
            .container("transfer")
            .stdin(stdin)
            .stdout(stdout)
            .stderr(true)
            .max_stdin_buf_size(BUF)
            .max_stdout_buf_size(BUF);
        self.pods
            .exec(&self.name, cmd, &ap)
            .await
            .map_err(|e| self.fail(format!("exec: {e}")))
    }

    /// Run a script that needs no input and collect its output.
    pub async fn run(&self, what: &'static str, script: &str, args: &[&str]) -> Result<Vec<u8>> {
        let mut proc = self.exec(script, args, false, true).await?;
        let mut out = proc
            .stdout()
            .ok_or_else(|| self.fail("exec without stdout"))?;
        let mut buf = Vec::new();
        let read = out.read_to_end(&mut buf);
        let (read, done) = tokio::join!(read, self.finish(what, proc));
        read.map_err(|e| self.fail(format!("reading output: {e}")))?;
        done?;
        Ok(buf)
    }

    /// Wait for an exec to end; its stderr becomes the error when it failed.
    pub async fn finish(&self, what: &'static str, mut proc: AttachedProcess) -> Result<()> {
        let mut stderr = proc.stderr();
        let status = proc.take_status();
        let mut err = String::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_string(&mut err).await;
        }
        let status = match status {
            Some(s) => s.await,
            None => None,
        };
        let _ = proc.join().await;
        match status {
            Some(s) if s.status.as_deref() == Some("Success") => Ok(()),
            Some(s) => Err(Error::Remote {
                what,
                pod: self.name.clone(),
                reason: first_line(&err)
                    .or(s.message)
                    .unwrap_or_else(|| "failed".into()),
            }),
            None => Err(Error::Remote {
                what,
                pod: self.name.clone(),
                reason: first_line(&err).unwrap_or_else(|| "the connection closed".into()),
            }),
        }
    }

    /// Delete the pod without waiting for it to go.
    pub async fn delete(self) {
        self.remove().await;
    }

    /// Delete the pod (shared by many requests) without waiting for it to go.
    pub async fn remove(&self) {
        let dp = DeleteParams::background().grace_period(0);
        let _ = self.pods.delete(&self.name, &dp).await;
    }

    /// Size of a file in bytes, `None` when it is not there.
    pub async fn size(&self, path: &str) -> Result<Option<u64>> {
        let out = self
            .run(
                "reading a file's size",
                r#"[ -f "$1" ] || exit 0; stat -c %s -- "$1""#,
                &[path],
            )
            .await?;
        Ok(std::str::from_utf8(&out)
            .ok()
            .and_then(|s| s.trim().parse().ok()))
    }

    /// Stream `len` bytes of a file from byte `start` (the whole file with `None`): the exec
    /// and its stdout, which ends with the bytes.
    pub async fn read(
        &self,
        path: &str,
        range: Option<(u64, u64)>,
    ) -> Result<(AttachedProcess, impl tokio::io::AsyncRead + Unpin + use<>)> {
        let mut proc = match range {
            None => {
                self.exec(r#"exec cat -- "$1""#, &[path], false, true)
                    .await?
            }
            Some((start, len)) => {
                let (from, len) = ((start + 1).to_string(), len.to_string());
                self.exec(
                    r#"tail -c "+$2" -- "$1" | head -c "$3""#,
                    &[path, &from, &len],
                    false,
                    true,
                )
                .await?
            }
        };
        let out = proc
            .stdout()
            .ok_or_else(|| self.fail("exec without stdout"))?;
        Ok((proc, out))
    }

    /// Names in a directory, newest first (none when it is not there).
    pub async fn newest_first(&self, dir: &str) -> Result<Vec<String>> {
        let out = self
            .run(
                "listing a directory",
                r#"cd "$1" 2>/dev/null || exit 0; exec ls -t"#,
                &[dir],
            )
            .await?;
        Ok(lines(&out).map(str::to_string).collect())
    }
}

fn first_line(s: &str) -> Option<String> {
    let lines: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    match lines.as_slice() {
        [] => None,
        [one] => Some(one.to_string()),
        many => Some(format!("{} (and {} more lines)", many[0], many.len() - 1)),
    }
}

enum PodState {
    Running,
    Waiting(String),
    Broken(String),
}

fn pod_state(pod: &Pod, image: &str) -> PodState {
    let Some(status) = &pod.status else {
        return PodState::Waiting("no status yet".into());
    };
    match status.phase.as_deref() {
        Some("Running") => return PodState::Running,
        Some(p @ ("Failed" | "Succeeded")) => {
            // The pod's reason (kubelet admission: OutOfcpu, ...) or its container's end.
            let ended = status
                .container_statuses
                .iter()
                .flatten()
                .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
                .map(|t| {
                    format!(
                        "container {} (exit {}) {}",
                        t.reason.clone().unwrap_or_default(),
                        t.exit_code,
                        t.message.clone().unwrap_or_default()
                    )
                })
                .next();
            let why = [status.reason.clone(), status.message.clone(), ended]
                .into_iter()
                .flatten()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(": ");
            return PodState::Broken(format!("ended {p}: {why}"));
        }
        _ => {}
    }
    for cs in status.container_statuses.iter().flatten() {
        if let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            let reason = w.reason.clone().unwrap_or_default();
            let msg = w.message.clone().unwrap_or_default();
            if matches!(
                reason.as_str(),
                "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull"
            ) {
                return PodState::Broken(format!(
                    "image {image} cannot be pulled ({reason}); pass --image with one the nodes can pull"
                ));
            }
            if reason == "CreateContainerConfigError" || reason == "CreateContainerError" {
                return PodState::Broken(format!("{reason}: {msg}"));
            }
            return PodState::Waiting(format!("{reason} {msg}").trim().to_string());
        }
    }
    for c in status.conditions.iter().flatten() {
        if c.type_ == "PodScheduled" && c.status == "False" {
            return PodState::Waiting(format!(
                "{}: {}",
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default()
            ));
        }
    }
    PodState::Waiting(status.phase.clone().unwrap_or_default())
}

/// Stream of lines from a reader, for the scripts' listings.
pub fn lines(bytes: &[u8]) -> impl Iterator<Item = &str> {
    std::str::from_utf8(bytes)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
}

/// Ctrl-C while `fut` runs: stop, with the error that says so.
pub async fn interruptible<T>(fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::select! {
        r = fut => r,
        _ = tokio::signal::ctrl_c() => Err(Error::Interrupted),
    }
}
