//! What the fault, race and leader tests share beyond the harness: operator replicas the test
//! can SIGSTOP, SIGCONT and SIGKILL, each with its own log and metrics port; watches that record
//! every Job and pod ever seen and check a rule on every change; kwok Stages that finish chosen
//! batches; and cluster-scoped objects that are removed again however the test ends.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use crate::harness::{Env, kubectl, wait_until};

pub const MINUTE: Duration = Duration::from_secs(60);
/// The lease of replicas with leader election: short, for quick failovers, and long enough
/// that a busy API server renews it in time (a renewal is due a third of it before it runs
/// out).
pub const LEASE_SECONDS: u64 = 6;
pub const BATCH_LABEL: &str = "renderfarm.io/batch";
/// The filter replicas log with: the operator's own debug lines and kube's HTTP client, whose
/// `requesting` line names the method and URL of every request (how writes are counted even
/// for a process that is gone).
pub const LOG_FILTER: &str = "info,renderfarm=debug,kube_client::client::builder=debug";

// ------------------------------------------------------------------------------- replicas

/// One operator process of a test, with its own metrics port (the same across restarts) and
/// log file.
pub struct Replica {
    pub id: String,
    pub port: u16,
    pub log: PathBuf,
    /// Not restarted by [`Replicas`] when it exits.
    pub hold: bool,
    child: Option<Child>,
    args: Vec<String>,
    vars: Vec<(String, String)>,
    starts: u32,
    ns: String,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Replica {
    /// Start the operator binary for the test's namespace; `args` and `vars` come after the
    /// namespace, listen address and log format (a `RUST_LOG` in `vars` replaces [`LOG_FILTER`]).
    pub fn start(env: &Env, id: &str, args: &[&str], vars: &[(&str, &str)]) -> Result<Replica> {
        let mut r = Replica {
            id: id.to_string(),
            port: 0,
            log: PathBuf::new(),
            hold: false,
            child: None,
            args: args.iter().map(|s| s.to_string()).collect(),
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            starts: 0,
            ns: env.ns.clone(),
        };
        r.log = env.log_file(&format!("-{id}.log"));
        r.spawn()?;
        Ok(r)
    }

    /// A replica with leader election in the test's namespace, on a lease of [`LEASE_SECONDS`].
    pub fn elected(env: &Env, id: &str, extra: &[&str]) -> Result<Replica> {
        let lease = LEASE_SECONDS.to_string();
        let mut args = vec![
            "--leader-elect",
            "--lease-namespace",
            env.ns.as_str(),
            "--lease-seconds",
            lease.as_str(),
            "--instance",
            id,
        ];
        args.extend_from_slice(extra);
        Replica::start(env, id, &args, &[])
    }

    fn spawn(&mut self) -> Result<()> {
        if self.port == 0 {
            self.port = free_port()?;
        }
        self.starts += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        // Where each incarnation begins, for whoever reads the log.
        use std::io::Write;
        writeln!(
            &log,
            "{{\"replica\":\"{}\",\"start\":{},\"port\":{}}}",
            self.id, self.starts, self.port
        )?;
        let listen = format!("127.0.0.1:{}", self.port);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_renderfarm-operator"));
        cmd.args([
            "--namespace",
            &self.ns,
            "--listen",
            &listen,
            "--log-format",
            "json",
        ])
        .args(&self.args)
        .env("RUST_LOG", LOG_FILTER)
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log));
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().context("starting renderfarm-operator")?);
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn signal(&self, sig: &str) -> Result<()> {
        let pid = self.pid().context("replica not running")?;
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()?
            .success();
        ensure!(ok, "kill {sig} {pid} failed");
        Ok(())
    }

    /// SIGSTOP: the process freezes, its connections stay open, its clock does not stop.
    pub fn pause(&self) -> Result<()> {
        self.signal("-STOP")
    }

    pub fn resume(&self) -> Result<()> {
        self.signal("-CONT")
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGKILL, then the same command again.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn()
    }

    /// Whether the process exited by itself (it is reaped then); false after [`Replica::kill`].
    pub fn exited_by_itself(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(_))) => {
                self.child = None;
                true
            }
            _ => false,
        }
    }

    /// Whether the process has exited (it is reaped then).
    pub fn exited(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(_))) | None => {
                self.child = None;
                true
            }
            _ => false,
        }
    }

    pub fn http_get(&self, path: &str) -> Result<(u16, String)> {
        http_get(self.port, path)
    }

    pub fn metrics(&self) -> Result<String> {
        let (code, body) = self.http_get("/metrics")?;
        ensure!(code == 200, "{}: /metrics answered {code}", self.id);
        Ok(body)
    }

    /// `renderfarm_api_writes_total` of every verb and resource, summed, and by `verb resource`.
    pub fn writes(&self) -> Result<(u64, BTreeMap<String, u64>)> {
        let by = writes_by(&self.metrics()?);
        Ok((by.values().sum(), by))
    }

    pub fn ready(&self) -> bool {
        self.http_get("/readyz")
            .is_ok_and(|(code, body)| code == 200 && !body.contains("standby"))
    }

    pub fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0)
    }

    /// Requests other than reads the process that was running at byte `from` of its log sent
    /// after that, leases apart: `METHOD path` each.
    pub fn writes_logged_since(&self, from: u64) -> Result<Vec<String>> {
        writes_logged_since(&self.log, from)
    }

    /// The same writes the process that was running at byte `to` of its log sent before that,
    /// from its start: what [`Replica::writes_logged_since`] would count of it, had it been
    /// asked then.
    pub fn writes_logged_before(&self, to: u64) -> Result<Vec<String>> {
        writes_logged_before(&self.log, to)
    }

    /// Lines of the log after byte `from` that contain `needle`.
    pub fn log_lines_since(&self, from: u64, needle: &str) -> Result<Vec<String>> {
        let text = std::fs::read(&self.log)?;
        let tail = String::from_utf8_lossy(text.get(from as usize..).unwrap_or_default());
        Ok(tail
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect())
    }

    /// Wait until the replica answers /readyz as ready (caches synced, reconciling).
    pub async fn wait_ready(&self, timeout: Duration) -> Result<Duration> {
        let t = Instant::now();
        wait_until(timeout, &format!("{} ready", self.id), || async {
            Ok(self.ready().then_some(()))
        })
        .await?;
        Ok(t.elapsed())
    }
}

/// Operator replicas restarted when they exit by themselves (a leader that lost its lease), as
/// a Deployment's pods are; those the test kills stay down until the test restarts them.
pub struct Replicas {
    inner: Arc<Mutex<BTreeMap<String, Replica>>>,
    revived: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Replicas {
    pub fn new(list: Vec<Replica>) -> Replicas {
        let inner = Arc::new(Mutex::new(
            list.into_iter()
                .map(|r| (r.id.clone(), r))
                .collect::<BTreeMap<_, _>>(),
        ));
        let revived = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (map, count) = (inner.clone(), revived.clone());
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let Ok(mut all) = map.lock() else { return };
                for r in all.values_mut() {
                    if !r.hold && r.exited_by_itself() && r.spawn().is_ok() {
                        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
        });
        Replicas {
            inner,
            revived,
            task,
        }
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<String, Replica>) -> T) -> T {
        let mut all = self.inner.lock().expect("replicas");
        f(&mut all)
    }

    /// (id, metrics port) of each replica.
    pub fn ports(&self) -> Vec<(String, u16)> {
        self.with(|all| all.values().map(|r| (r.id.clone(), r.port)).collect())
    }

    /// Replicas restarted after they exited by themselves.
    pub fn revived(&self) -> usize {
        self.revived.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn kill(&self, id: &str) {
        self.with(|all| all.get_mut(id).map(Replica::kill));
    }

    pub fn restart(&self, id: &str) -> Result<()> {
        self.with(|all| all.get_mut(id).map(Replica::restart).transpose())?;
        Ok(())
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Wait until the lease names a holder other than `not`.
pub async fn wait_leader(env: &Env, not: Option<&str>) -> Result<String> {
    wait_until(MINUTE, "a lease holder", || async {
        Ok(lease_holder(env).await.filter(|h| Some(h.as_str()) != not))
    })
    .await
}

/// /readyz of a replica by port: Some(true) standby, Some(false) ready, None neither.
pub fn standby_at(port: u16) -> Result<Option<bool>> {
    let (code, body) = http_get(port, "/readyz")?;
    Ok((code == 200).then(|| body.contains("standby")))
}

/// `renderfarm_api_writes_total` of a replica by port: (sum, by verb and resource).
pub fn writes_at(port: u16) -> Result<(u64, BTreeMap<String, u64>)> {
    let (code, body) = http_get(port, "/metrics")?;
    ensure!(code == 200, "/metrics on {port} answered {code}");
    let by = writes_by(&body);
    Ok((by.values().sum(), by))
}

impl Drop for Replica {
    fn drop(&mut self) {
        // A paused process would not die of SIGKILL until continued; continue it first.
        if self.child.is_some() {
            let _ = self.resume();
        }
        self.kill();
    }
}

/// [`Replica::writes_logged_since`] of the log at `path`.
fn writes_logged_since(path: &std::path::Path, from: u64) -> Result<Vec<String>> {
    let text = std::fs::read(path)?;
    let tail = String::from_utf8_lossy(text.get(from as usize..).unwrap_or_default());
    // Up to where the next process starts (a start marker right at `from` is this one's).
    let tail = tail
        .get(1..)
        .and_then(|t| t.find(START_MARKER))
        .map_or(&tail[..], |end| &tail[..end + 1]);
    Ok(writes_in_log(tail))
}

/// [`Replica::writes_logged_before`] of the log at `path`.
fn writes_logged_before(path: &std::path::Path, to: u64) -> Result<Vec<String>> {
    let text = std::fs::read(path)?;
    let head = String::from_utf8_lossy(text.get(..to as usize).unwrap_or(&text));
    let start = head.rfind(START_MARKER).unwrap_or(0);
    Ok(writes_in_log(&head[start..]))
}

/// How [`Replica::spawn`] marks where each process of a replica starts in its log.
const START_MARKER: &str = "{\"replica\":";

/// The requests other than reads in `log`, leases apart: `METHOD path` each.
fn writes_in_log(log: &str) -> Vec<String> {
    requests_in_log(log)
        .into_iter()
        .filter(|(m, url)| m != "GET" && !url.contains("/leases/"))
        .map(|(m, url)| format!("{m} {url}"))
        .collect()
}

/// (method, URL) of every request kube's client logged in `log`.
pub fn requests_in_log(log: &str) -> Vec<(String, String)> {
    log.lines()
        .filter(|l| l.contains("\"requesting\""))
        .filter_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            let span = v
                .get("spans")?
                .as_array()?
                .iter()
                .rev()
                .find(|s| s.get("http.method").is_some())?;
            Some((
                span.get("http.method")?.as_str()?.to_string(),
                span.get("http.url")?.as_str()?.to_string(),
            ))
        })
        .collect()
}

pub use crate::harness::http_get;

/// The labels and value of every sample of `family` in a metrics text: exact family name,
/// whole value.
pub fn samples(text: &str, family: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(family)?;
            let (labels, value) = if let Some(r) = rest.strip_prefix('{') {
                let (labels, value) = r.split_once("} ")?;
                (labels, value)
            } else {
                ("", rest.strip_prefix(' ')?)
            };
            let labels = labels
                .split(',')
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.trim().to_string(), v.trim_matches('"').to_string()))
                })
                .collect();
            let value = value.split_whitespace().next()?.parse().ok()?;
            Some((labels, value))
        })
        .collect()
}

pub fn sum(text: &str, family: &str) -> f64 {
    samples(text, family).iter().map(|(_, v)| v).sum::<f64>() + 0.0
}

/// `renderfarm_api_writes_total` by `verb resource`.
/// The operator's writes by `verb resource`, leader election's own (the Lease) left out: a
/// standby creates the Lease when there is none, which is not reconciling.
pub fn writes_by(text: &str) -> BTreeMap<String, u64> {
    samples(text, "renderfarm_api_writes_total")
        .into_iter()
        .filter(|(l, _)| l.get("resource").map(String::as_str) != Some("leases"))
        .map(|(l, v)| {
            let key = format!(
                "{} {}",
                l.get("verb").cloned().unwrap_or_default(),
                l.get("resource").cloned().unwrap_or_default()
            );
            (key, v as u64)
        })
        .collect()
}

pub async fn lease_holder(env: &Env) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &env.ns);
    leases
        .get_opt("renderfarm-operator")
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
}

// -------------------------------------------------------------------------------- watches

/// A change the watch saw, as a rule sees it.
pub struct Change<'a, K> {
    pub obj: &'a K,
    /// First time this UID was seen.
    pub new: bool,
    /// Objects unfinished just before this change, this one left out.
    pub unfinished_before: usize,
}

type Rule<K> = Arc<dyn Fn(&Change<'_, K>) -> Option<String> + Send + Sync>;

/// Everything a watch saw.
pub struct Seen<K> {
    /// Live objects by UID.
    pub live: BTreeMap<String, K>,
    /// Every UID ever seen, by name: a name with two UIDs was created twice.
    pub uids: BTreeMap<String, BTreeSet<String>>,
    /// The last state of every object ever seen, by UID.
    pub last: BTreeMap<String, K>,
    /// UIDs in the order they first appeared.
    pub order: Vec<String>,
    pub deleted: usize,
    /// Most objects unfinished at once.
    pub peak_unfinished: usize,
    /// What the rules found.
    pub violations: Vec<String>,
    pub changes: u64,
}

impl<K> Default for Seen<K> {
    fn default() -> Self {
        Seen {
            live: BTreeMap::new(),
            uids: BTreeMap::new(),
            last: BTreeMap::new(),
            order: Vec::new(),
            deleted: 0,
            peak_unfinished: 0,
            violations: Vec::new(),
            changes: 0,
        }
    }
}

impl<K> Seen<K> {
    pub fn twice(&self) -> Vec<String> {
        self.uids
            .iter()
            .filter(|(_, u)| u.len() > 1)
            .map(|(n, _)| n.clone())
            .collect()
    }
}

struct Shared<K> {
    seen: Seen<K>,
    rule: Option<Rule<K>>,
    unfinished: fn(&K) -> bool,
}

/// A watch on one kind in the test's namespace that keeps a [`Seen`] and applies the current
/// rule to every change, in the API server's order.
pub struct Watch<K: 'static> {
    shared: Arc<Mutex<Shared<K>>>,
    changed: tokio::sync::watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl<K> Watch<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    /// Starts watching and waits until the first list is in.
    pub async fn start(api: Api<K>, unfinished: fn(&K) -> bool) -> Result<Watch<K>> {
        use futures::StreamExt;
        use kube::runtime::{WatchStreamExt, watcher};
        let shared = Arc::new(Mutex::new(Shared {
            seen: Seen::default(),
            rule: None,
            unfinished,
        }));
        let (tx, changed) = tokio::sync::watch::channel(0u64);
        let (synced_tx, synced_rx) = tokio::sync::oneshot::channel::<()>();
        let state = shared.clone();
        let task = tokio::spawn(async move {
            let stream = watcher(api, watcher::Config::default()).default_backoff();
            futures::pin_mut!(stream);
            let mut synced_tx = Some(synced_tx);
            let mut relist: Option<BTreeMap<String, K>> = None;
            while let Some(event) = stream.next().await {
                let Ok(event) = event else { continue };
                let Ok(mut sh) = state.lock() else { return };
                match event {
                    watcher::Event::Init => relist = Some(BTreeMap::new()),
                    watcher::Event::InitApply(obj) => {
                        if let Some(buf) = relist.as_mut() {
                            buf.insert(obj.uid().unwrap_or_default(), obj.clone());
                        }
                        sh.apply(obj);
                    }
                    watcher::Event::InitDone => {
                        // Objects gone while the watch was away.
                        if let Some(buf) = relist.take() {
                            let gone: Vec<String> = sh
                                .seen
                                .live
                                .keys()
                                .filter(|u| !buf.contains_key(*u))
                                .cloned()
                                .collect();
                            for uid in gone {
                                sh.seen.live.remove(&uid);
                                sh.seen.deleted += 1;
                            }
                        }
                        if let Some(s) = synced_tx.take() {
                            let _ = s.send(());
                        }
                    }
                    watcher::Event::Apply(obj) => sh.apply(obj),
                    watcher::Event::Delete(obj) => {
                        let uid = obj.uid().unwrap_or_default();
                        if sh.seen.live.remove(&uid).is_some() {
                            sh.seen.deleted += 1;
                        }
                        sh.seen.last.insert(uid, obj);
                    }
                }
                sh.seen.changes += 1;
                let n = sh.seen.changes;
                drop(sh);
                let _ = tx.send(n);
            }
        });
        tokio::time::timeout(MINUTE, synced_rx)
            .await
            .map_err(|_| anyhow!("watch not synced within a minute"))??;
        Ok(Watch {
            shared,
            changed,
            task,
        })
    }

    /// Check `rule` on every change from now on; what it returns is a violation.
    pub fn rule(&self, rule: impl Fn(&Change<'_, K>) -> Option<String> + Send + Sync + 'static) {
        if let Ok(mut sh) = self.shared.lock() {
            sh.rule = Some(Arc::new(rule));
        }
    }

    pub fn no_rule(&self) {
        if let Ok(mut sh) = self.shared.lock() {
            sh.rule = None;
        }
    }

    /// Forget the peak of unfinished objects: the next peak starts from now.
    pub fn reset_peak(&self) {
        if let Ok(mut sh) = self.shared.lock() {
            let unfinished = sh.unfinished;
            sh.seen.peak_unfinished = sh.seen.live.values().filter(|o| unfinished(o)).count();
        }
    }

    pub fn with<T>(&self, f: impl FnOnce(&Seen<K>) -> T) -> T {
        let sh = self.shared.lock().expect("watch state");
        f(&sh.seen)
    }

    pub fn unfinished(&self) -> Vec<K> {
        let sh = self.shared.lock().expect("watch state");
        let f = sh.unfinished;
        sh.seen.live.values().filter(|o| f(o)).cloned().collect()
    }

    /// Wait until `pred` holds for what was seen, re-checked on every change.
    pub async fn wait(
        &mut self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Seen<K>) -> bool,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.with(&pred) {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, self.changed.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => bail!("watch ended waiting for {what}"),
                Err(_) => {
                    let (live, deleted, seen) = self.with(|s| {
                        let live: Vec<String> = s.live.values().map(|o| o.name_any()).collect();
                        (live, s.deleted, s.uids.len())
                    });
                    bail!(
                        "timed out after {timeout:?} waiting for {what} ({seen} seen, {deleted} \
                         deleted, live: {live:?})"
                    )
                }
            }
        }
    }
}

impl<K: Resource + Clone> Shared<K> {
    fn apply(&mut self, obj: K) {
        let uid = obj.uid().unwrap_or_default();
        let new = !self.seen.last.contains_key(&uid);
        let unfinished = self.unfinished;
        let unfinished_before = self
            .seen
            .live
            .iter()
            .filter(|(u, o)| **u != uid && unfinished(o))
            .count();
        if let Some(rule) = &self.rule
            && let Some(v) = rule(&Change {
                obj: &obj,
                new,
                unfinished_before,
            })
        {
            self.seen.violations.push(v);
        }
        if new {
            self.seen.order.push(uid.clone());
            self.seen
                .uids
                .entry(obj.name_any())
                .or_default()
                .insert(uid.clone());
        }
        self.seen.live.insert(uid.clone(), obj.clone());
        self.seen.last.insert(uid, obj);
        let now = self.seen.live.values().filter(|o| unfinished(o)).count();
        self.seen.peak_unfinished = self.seen.peak_unfinished.max(now);
    }
}

impl<K> Drop for Watch<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn job_condition(job: &Job, type_: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

pub fn job_finished(job: &Job) -> bool {
    job_condition(job, "Complete") || job_condition(job, "Failed")
}

pub fn job_unfinished(job: &Job) -> bool {
    !job_finished(job)
}

pub fn job_complete(job: &Job) -> bool {
    job_condition(job, "Complete")
}

pub fn job_suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend) == Some(true)
}

pub fn batch_of<K: Resource>(obj: &K) -> Option<u32> {
    obj.meta().labels.as_ref()?.get(BATCH_LABEL)?.parse().ok()
}

pub fn pod_phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

pub fn pod_unfinished(pod: &Pod) -> bool {
    !matches!(pod_phase(pod), "Succeeded" | "Failed")
}

pub async fn watch_jobs(env: &Env) -> Result<Watch<Job>> {
    Watch::start(env.jobs(), job_unfinished).await
}

pub async fn watch_pods(env: &Env) -> Result<Watch<Pod>> {
    Watch::start(env.pods(), pod_unfinished).await
}

/// Batches rendered more than once: a batch with a second pod after one that succeeded, or
/// more than one pod that succeeded.
pub fn rerun_batches(pods: &Seen<Pod>) -> Vec<u32> {
    let mut by_batch: BTreeMap<u32, Vec<&Pod>> = BTreeMap::new();
    for uid in &pods.order {
        if let Some(p) = pods.last.get(uid)
            && let Some(b) = batch_of(p)
        {
            by_batch.entry(b).or_default().push(p);
        }
    }
    by_batch
        .into_iter()
        .filter(|(_, ps)| {
            let first_ok = ps.iter().position(|p| pod_phase(p) == "Succeeded");
            first_ok.is_some_and(|i| i + 1 < ps.len())
        })
        .map(|(b, _)| b)
        .collect()
}

// --------------------------------------------------------------------- cluster-scoped objects

/// Cluster-scoped objects a test created (kwok Stages, webhook configurations, flow schemas),
/// deleted again when this is dropped, however the test ends.
#[derive(Default)]
pub struct ClusterObjects {
    objects: Vec<(String, String)>,
}

impl ClusterObjects {
    pub fn track(&mut self, resource: &str, name: &str) {
        self.objects.push((resource.to_string(), name.to_string()));
    }

    /// Delete one now and wait until it is gone.
    pub fn delete(&mut self, resource: &str, name: &str) -> Result<()> {
        let (ok, out) = kubectl(&[
            "delete",
            resource,
            name,
            "--ignore-not-found",
            "--wait=true",
            "--timeout=60s",
        ])?;
        ensure!(ok, "kubectl delete {resource} {name}: {out}");
        self.objects.retain(|(r, n)| !(r == resource && n == name));
        Ok(())
    }
}

impl Drop for ClusterObjects {
    fn drop(&mut self) {
        for (resource, name) in self.objects.drain(..).rev() {
            let _ = Command::new("kubectl")
                .args([
                    "delete",
                    &resource,
                    &name,
                    "--ignore-not-found",
                    "--wait=false",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Server-side apply of a cluster-scoped object given as JSON; tracked for deletion.
pub async fn apply_cluster_object(
    env: &Env,
    objects: &mut ClusterObjects,
    gvk: (&str, &str, &str),
    plural: &str,
    obj: Value,
) -> Result<DynamicObject> {
    let (group, version, kind) = gvk;
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    let api: Api<DynamicObject> = Api::all_with(env.client.clone(), &ar);
    let name = obj["metadata"]["name"]
        .as_str()
        .context("object without a name")?
        .to_string();
    let resource = if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    };
    objects.track(&resource, &name);
    let dynamic: DynamicObject = serde_json::from_value(obj)?;
    Ok(api
        .patch(
            &name,
            &PatchParams::apply("renderfarm-e2e").force(),
            &Patch::Apply(&dynamic),
        )
        .await?)
}

/// A kwok Stage: running pods of `scenario` whose batch is in `batches` succeed (all of the
/// scenario's pods when `batches` is empty) `delay_ms` after they start.
pub async fn finish_batches(
    env: &Env,
    objects: &mut ClusterObjects,
    name: &str,
    scenario: &str,
    batches: &[u32],
    delay_ms: u64,
) -> Result<()> {
    let mut select = vec![
        json!({"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"}),
        json!({"key": ".status.phase", "operator": "In", "values": ["Running"]}),
        json!({"key": ".metadata.labels[\"kwok.renderfarm.io/scenario\"]", "operator": "In", "values": [scenario]}),
    ];
    if !batches.is_empty() {
        let values: Vec<String> = batches.iter().map(u32::to_string).collect();
        select.push(
            json!({"key": ".metadata.labels[\"renderfarm.io/batch\"]", "operator": "In", "values": values}),
        );
    }
    let template = "{{ $now := Now }}\n{{ $started := or .status.startTime $now }}\n\
containerStatuses:\n{{ range .spec.containers }}\n- image: {{ .image | Quote }}\n  name: {{ .name | Quote }}\n  \
ready: false\n  restartCount: 0\n  started: false\n  state:\n    terminated:\n      exitCode: 0\n      \
finishedAt: {{ $now | Quote }}\n      reason: Completed\n      startedAt: {{ $started | Quote }}\n{{ end }}\n\
phase: Succeeded\n";
    let stage = json!({
        "apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Stage",
        "metadata": {"name": name},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
            "selector": {"matchExpressions": select},
            "delay": {"durationMilliseconds": delay_ms},
            "next": {"statusTemplate": template},
        }
    });
    apply_cluster_object(
        env,
        objects,
        ("kwok.x-k8s.io", "v1alpha1", "Stage"),
        "stages",
        stage,
    )
    .await?;
    Ok(())
}

/// [`finish_batches`], then touch the scenario's unfinished pods of those batches until each
/// has finished (kwok looks at a pod again only when it changes, so a new Stage does not reach
/// pods that are already running otherwise, nor always one that starts running just as kwok
/// learns of the Stage); returns once the pods watch saw them finish.
#[allow(clippy::too_many_arguments)]
pub async fn finish(
    env: &Env,
    objects: &mut ClusterObjects,
    name: &str,
    scenario: &str,
    batches: &[u32],
    delay_ms: u64,
    pods: &mut Watch<Pod>,
) -> Result<()> {
    finish_batches(env, objects, name, scenario, batches, delay_ms).await?;
    let chosen = |p: &Pod| {
        p.labels()
            .get(crate::harness::SCENARIO_LABEL)
            .map(String::as_str)
            == Some(scenario)
            && (batches.is_empty() || batch_of(p).is_some_and(|b| batches.contains(&b)))
            && pod_unfinished(p)
    };
    let targets: BTreeSet<String> = pods.with(|s| {
        s.live
            .values()
            .filter(|p| chosen(p))
            .map(|p| p.name_any())
            .collect()
    });
    let started = Instant::now();
    loop {
        let (running, unfinished) = pods.with(|s| {
            let mine: Vec<&Pod> = s
                .live
                .values()
                .filter(|p| targets.contains(&p.name_any()) && pod_unfinished(p))
                .collect();
            let running: Vec<String> = mine
                .iter()
                .filter(|p| pod_phase(p) == "Running")
                .map(|p| p.name_any())
                .collect();
            (running, mine.len())
        });
        if unfinished == 0 {
            return Ok(());
        }
        let mark = unique();
        for pod in &running {
            let touched = env
                .pods()
                .patch(
                    pod,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"annotations": {
                        "kwok.renderfarm.io/stage-applied": mark}}})),
                )
                .await;
            match touched {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let left = pods
            .wait(
                Duration::from_millis(2000 + delay_ms),
                "pods to finish",
                |s| {
                    s.live
                        .values()
                        .all(|p| !targets.contains(&p.name_any()) || !pod_unfinished(p))
                },
            )
            .await;
        match left {
            Ok(()) => return Ok(()),
            Err(e) if started.elapsed() > MINUTE => {
                return Err(e.context(format!("stage {name}: pods {targets:?} not finished")));
            }
            Err(_) => {}
        }
    }
}

// ------------------------------------------------------------------------- identities, misc

/// A ServiceAccount in the test's namespace with every right there (and none outside), and a
/// kubeconfig that authenticates as it: an identity of the test's own that API Priority and
/// Fairness and the audit log can tell apart from every other client.
pub async fn own_identity(env: &Env, name: &str) -> Result<(String, PathBuf)> {
    let (ok, out) = kubectl(&["create", "serviceaccount", name, "-n", &env.ns])?;
    ensure!(ok, "create serviceaccount: {out}");
    let (ok, out) = kubectl(&[
        "create",
        "rolebinding",
        name,
        "-n",
        &env.ns,
        "--clusterrole=cluster-admin",
        &format!("--serviceaccount={}:{name}", env.ns),
    ])?;
    ensure!(ok, "create rolebinding: {out}");
    let (ok, token) = kubectl(&["create", "token", name, "-n", &env.ns, "--duration", "1h"])?;
    ensure!(ok, "kubectl create token: {token}");
    let admin = kube::config::Kubeconfig::read().context("reading the admin kubeconfig")?;
    let cluster = admin
        .clusters
        .first()
        .and_then(|c| c.cluster.clone())
        .context("no cluster in kubeconfig")?;
    let config = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": name, "user": {"token": token.trim()}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": name}}],
        "current-context": "c",
    });
    let path = env.log_file(&format!("-{name}.kubeconfig"));
    std::fs::write(&path, serde_yaml::to_string(&config)?)?;
    Ok((format!("system:serviceaccount:{}:{name}", env.ns), path))
}

pub async fn client_from(kubeconfig: &std::path::Path) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

/// The API server's own metrics (the admin may read them).
pub fn apiserver_metrics() -> Result<String> {
    let (ok, out) = kubectl(&["get", "--raw", "/metrics"])?;
    ensure!(
        ok,
        "kubectl get --raw /metrics: {}",
        out.lines().next().unwrap_or("")
    );
    Ok(out)
}

/// Merge-patch a RenderJob's spec.
pub async fn patch_spec(env: &Env, name: &str, spec: Value) -> Result<i64> {
    let rj = env
        .rjs()
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": spec})),
        )
        .await?;
    rj.metadata.generation.context("no generation")
}

/// A value no earlier call returned: for annotations whose change must reach a watch.
pub fn unique() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
        .to_string()
}

/// Merge-patch an annotation of a RenderJob: a change its watchers see, spec and status alike.
pub async fn poke(env: &Env, name: &str) -> Result<()> {
    env.rjs()
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"e2e/poke": unique()}}})),
        )
        .await?;
    Ok(())
}

pub fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// A replica's log cut at an offset, as the split-brain test cuts it at SIGCONT (runs without
/// a cluster).
#[test]
fn writes_are_counted_on_each_side_of_an_offset_for_one_process() -> Result<()> {
    let request = |method: &str, url: &str| {
        json!({"timestamp": "2026-11-23T11:02:09.1Z", "level": "DEBUG", "message": "requesting",
               "target": "kube_client::client::builder",
               "spans": [{"http.method": method, "http.url": url, "name": "HTTP"}]})
        .to_string()
    };
    let job = "https://127.0.0.1:6443/apis/batch/v1/namespaces/ns/jobs/split-0007";
    let lease = "https://127.0.0.1:6443/apis/coordination.k8s.io/v1/namespaces/ns/leases/l";
    let marker = |n: u32| format!("{{\"replica\":\"replica-a\",\"start\":{n},\"port\":1}}");
    let first = [
        marker(1),
        request("DELETE", job),
        request("PATCH", job),
        request("PUT", lease),
        request("GET", job),
    ];
    let second = [marker(2), request("PATCH", job), request("POST", job)];
    let before_cut = [marker(1), request("DELETE", job)].join("\n") + "\n";
    let log = [&first[..], &second[..]].concat().join("\n") + "\n";
    let path = std::env::temp_dir().join(format!("rf-faultkit-{}.log", unique()));
    std::fs::write(&path, &log)?;
    let cut = before_cut.len() as u64;
    let (before, since) = (
        writes_logged_before(&path, cut)?,
        writes_logged_since(&path, cut)?,
    );
    // Reads and the lease are not writes; the next process's are not this one's.
    assert_eq!(before, [format!("DELETE {job}")]);
    assert_eq!(since, [format!("PATCH {job}")]);
    let second_start = (first.join("\n").len() + 1) as u64;
    let end = log.len() as u64;
    assert_eq!(
        writes_logged_before(&path, end)?.len(),
        2,
        "the second process's"
    );
    assert_eq!(writes_logged_since(&path, second_start)?.len(), 2);
    std::fs::remove_file(&path)?;
    Ok(())
}
