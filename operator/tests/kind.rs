//! Real renders on kind: batch pods that Kubernetes scheduled run Blender, and the PNGs they
//! write appear on this machine. Needs the kind lane (`hack/kind.sh up`: renderfarm installed
//! by its chart, this machine's `./render` mounted at `/renders` in every node) and its
//! kubeconfig (`eval "$(hack/kind.sh env)"`). Run:
//! `cargo test -p renderfarm --test kind -- --ignored --nocapture`.
//!
//! The kwok failure-injection tests (`--test e2e`) need kwok's Stages and stay on the local
//! control plane; this suite checks what only real pods can show.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use kube::{Client, ResourceExt};
use renderfarm::crd::{Phase, RenderJob};
use renderfarm_testkit::frame::{MIN_COLOURS, check_png};
use serde_json::{Value, json};

// The e2e harness's waits (kube's await_condition, watches) and paths, shared.
#[path = "e2e/harness.rs"]
mod harness;
use harness::{await_object, repo_root, watch_until};

const IMAGE: &str = "renderfarm/render-node:dev";
const FRAMES: i32 = 6;
const WIDTH: u32 = 160;
const HEIGHT: u32 = 90;

/// The kind lane's cluster, from `hack/kind.sh env`'s KUBECONFIG.
async fn kind_client() -> Result<Client> {
    Client::try_default()
        .await
        .context("no cluster: `hack/kind.sh up` and `eval \"$(hack/kind.sh env)\"`")
}

/// The host folder kind-config.yaml mounts at /renders in every node.
fn host_storage() -> PathBuf {
    std::env::var_os("RENDERFARM_KIND_STORAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("render"))
}

/// A namespace with render storage: a hostPath volume under /renders, i.e. `dir` on this machine.
struct Storage {
    client: Client,
    ns: String,
    dir: PathBuf,
}

impl Storage {
    async fn new(client: Client) -> Result<Storage> {
        let ns = renderfarm_testkit::unique_name("rf-kind");
        let root = host_storage();
        ensure!(
            root.is_dir(),
            "{} does not exist: bring the kind lane up with `hack/kind.sh up`",
            root.display()
        );
        let dir = root.join("e2e").join(&ns);
        // Blender (uid 1000 in the pods, whoever runs the test) writes into scenes/ and renders/.
        std::fs::create_dir_all(dir.join("scenes"))?;
        std::fs::create_dir_all(dir.join("renders"))?;
        for d in ["", "scenes", "renders"] {
            set_mode(&dir.join(d), 0o777)?;
        }
        Api::<Namespace>::all(client.clone())
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
            )
            .await?;
        let pv = json!({
            "metadata": {"name": ns},
            "spec": {
                "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"],
                "storageClassName": "manual", "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": format!("/renders/e2e/{ns}"), "type": "Directory"},
                "claimRef": {"namespace": ns, "name": "render-storage"},
            }
        });
        Api::<PersistentVolume>::all(client.clone())
            .create(&PostParams::default(), &serde_json::from_value(pv)?)
            .await?;
        let pvc = json!({
            "metadata": {"name": "render-storage"},
            "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "manual", "volumeName": ns,
                     "resources": {"requests": {"storage": "1Gi"}}}
        });
        Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &serde_json::from_value(pvc)?)
            .await?;
        Ok(Storage { client, ns, dir })
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    fn rjs(&self) -> Api<RenderJob> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Write the test scene with Blender's Python, in a pod on the cluster.
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
        let pods = self.pods();
        renderfarm::client::create(&pods, &serde_json::from_value(pod)?).await?;
        let phase = |p: Option<&Pod>| {
            p.and_then(|p| p.status.as_ref()?.phase.clone())
                .unwrap_or_default()
        };
        let done = await_object(
            pods,
            "make-scene",
            Duration::from_secs(240),
            "make-scene pod finished",
            |p: Option<&Pod>| matches!(phase(p).as_str(), "Succeeded" | "Failed"),
        )
        .await?;
        let phase = phase(done.as_ref());
        ensure!(
            phase == "Succeeded",
            "make-scene pod {phase}: {}",
            self.logs("make-scene").await.unwrap_or_default()
        );
        ensure!(
            self.dir.join("scenes/kind.blend").is_file(),
            "no scene on the host"
        );
        Ok(())
    }

    async fn logs(&self, pod: &str) -> Result<String> {
        Ok(self.pods().logs(pod, &LogParams::default()).await?)
    }

    async fn apply_renderjob(&self, name: &str) -> Result<()> {
        self.apply_renderjob_with(name, json!({})).await
    }

    /// [`Storage::apply_renderjob`] with `extra` merged into the spec.
    async fn apply_renderjob_with(&self, name: &str, extra: Value) -> Result<()> {
        let mut rj = json!({
            "apiVersion": "renderfarm.io/v1alpha1", "kind": "RenderJob",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": {
                "blendFile": "scenes/kind.blend",
                "frames": {"start": 1, "end": FRAMES},
                "batchSize": 2, "parallelism": 2,
                "output": {"path": "renders/kind/frame_####", "format": "PNG"},
                "engine": "CYCLES", "device": "CPU",
                "storage": {"claimName": "render-storage", "mountPath": "/data"},
                "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
            }
        });
        harness::merge(&mut rj["spec"], extra);
        let rj: RenderJob = serde_json::from_value(rj)?;
        self.rjs().create(&PostParams::default(), &rj).await?;
        Ok(())
    }

    /// Wait for `Complete`, noting whether an ETA showed while frames were still missing.
    async fn wait_complete(&self, name: &str) -> Result<(RenderJob, bool)> {
        let eta_seen = AtomicBool::new(false);
        let rj = await_object(
            self.rjs(),
            name,
            Duration::from_secs(900),
            "the render Complete (or Failed)",
            |rj: Option<&RenderJob>| {
                let Some(s) = rj.and_then(|rj| rj.status.as_ref()) else {
                    return false;
                };
                if s.phase == Phase::Running
                    && s.frames.rendered < s.frames.total
                    && s.estimated_completion_time.is_some()
                {
                    eta_seen.store(true, Ordering::Relaxed);
                }
                s.phase == Phase::Failed
                    || s.conditions
                        .iter()
                        .any(|c| c.type_ == "Complete" && c.status == "True")
            },
        )
        .await?
        .context("the RenderJob is gone")?;
        if let Some(s) = rj.status.as_ref().filter(|s| s.phase == Phase::Failed) {
            bail!("render failed: {}", serde_json::to_string_pretty(s)?);
        }
        Ok((rj, eta_seen.load(Ordering::Relaxed)))
    }

    /// Each batch pod's progress events (JSON lines on stdout), by pod name:
    /// [`Storage::timed_progress`] without the timestamps.
    async fn progress(&self, name: &str) -> Result<BTreeMap<String, Vec<Value>>> {
        let timed = self.timed_progress(name).await?;
        Ok(timed
            .into_iter()
            .map(|(pod, events)| (pod, events.into_iter().map(|(_, e)| e).collect()))
            .collect())
    }

    /// Each batch pod's log, by pod name; with `timestamps`, each line stamped by the container
    /// runtime.
    async fn batch_logs(&self, name: &str, timestamps: bool) -> Result<BTreeMap<String, String>> {
        // Batch pods only: the preview step's pod has no batch label.
        let lp = ListParams::default().labels(&format!(
            "renderfarm.io/renderjob={name},renderfarm.io/batch"
        ));
        let params = LogParams {
            timestamps,
            ..LogParams::default()
        };
        let mut out = BTreeMap::new();
        for pod in self.pods().list(&lp).await? {
            let log = self.pods().logs(&pod.name_any(), &params).await?;
            out.insert(pod.name_any(), log);
        }
        Ok(out)
    }

    /// Each batch pod's progress events with the container runtime's timestamps (ns), by pod.
    async fn timed_progress(
        &self,
        name: &str,
    ) -> Result<BTreeMap<String, Vec<(k8s_openapi::jiff::Timestamp, Value)>>> {
        let mut out = BTreeMap::new();
        for (pod, log) in self.batch_logs(name, true).await? {
            let events = log
                .lines()
                .filter_map(|l| {
                    let (at, line) = l.split_once(' ')?;
                    let event = serde_json::from_str::<Value>(line).ok()?;
                    event.get("event")?;
                    Some((at.parse().ok()?, event))
                })
                .collect();
            out.insert(pod, events);
        }
        Ok(out)
    }

    async fn delete_renderjob(&self, name: &str) -> Result<()> {
        self.rjs().delete(name, &DeleteParams::foreground()).await?;
        let timeout = Duration::from_secs(120);
        await_object(
            self.rjs(),
            name,
            timeout,
            "the RenderJob gone",
            |rj: Option<&RenderJob>| rj.is_none(),
        )
        .await?;
        let of_it = |labels: &BTreeMap<String, String>| {
            labels.get("renderfarm.io/renderjob").map(String::as_str) == Some(name)
        };
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), &self.ns);
        watch_until(jobs, timeout, "its Jobs gone", |all| {
            (!all.iter().any(|j| of_it(j.labels()))).then_some(())
        })
        .await?;
        watch_until(self.pods(), timeout, "its pods gone", |all| {
            (!all.iter().any(|p| of_it(p.labels()))).then_some(())
        })
        .await
    }

    fn frame(&self, n: i32) -> PathBuf {
        self.dir.join(format!("renders/kind/frame_{n:04}.png"))
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        let _ = Command::new("kubectl")
            .args(["delete", "namespace", &self.ns, "--wait=false"])
            .output();
        let _ = Command::new("kubectl")
            .args(["delete", "pv", &self.ns, "--wait=false"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

fn frames_in(events: &[Value], kind: &str) -> Vec<i64> {
    events
        .iter()
        .filter(|e| e["event"] == kind)
        .filter_map(|e| e["frame"].as_i64())
        .collect()
}

/// Seconds per frame of bare Blender on this machine for the same scene, run as the RenderJob
/// runs it: one Blender per batch of two frames (a run's first frame is the slowest), two at a
/// time. From Blender's own per-frame "Time:" lines (start-up excluded, as in the status figure).
fn bare_blender_seconds_per_frame(scene: &Path) -> Option<f64> {
    let out = tempdir().ok()?;
    // The Blender the node image has, as hack/blender.sh installs it on the host.
    let path = Command::new(repo_root().join("hack/blender.sh"))
        .args(["path", "4.5"])
        .output()
        .ok()?;
    let blender = String::from_utf8_lossy(&path.stdout).trim().to_string();
    let batches: Vec<i32> = (1..=FRAMES).step_by(2).collect();
    let mut times = Vec::new();
    for wave in batches.chunks(2) {
        let children: Vec<_> = wave
            .iter()
            .map(|&first| {
                Command::new(&blender)
                    .args(["-b", "--factory-startup"])
                    .arg(scene)
                    .arg("-o")
                    .arg(out.join("f_####"))
                    .args(["-F", "PNG", "-s", &first.to_string(), "-e"])
                    .arg((first + 1).min(FRAMES).to_string())
                    .arg("-a")
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::null())
                    .spawn()
            })
            .collect::<std::io::Result<_>>()
            .ok()?;
        for child in children {
            let output = child.wait_with_output().ok()?;
            times.extend(
                String::from_utf8_lossy(&output.stdout)
                    .lines()
                    .filter_map(|l| l.trim().strip_prefix("Time: "))
                    .filter_map(|t| {
                        let t = t.split_whitespace().next()?;
                        let (m, s) = t.split_once(':')?;
                        Some(m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
                    }),
            );
        }
    }
    let _ = std::fs::remove_dir_all(&out);
    (!times.is_empty()).then(|| times.iter().sum::<f64>() / times.len() as f64)
}

fn tempdir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("renderfarm-bare-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[tokio::test]
#[ignore = "needs the kind lane: hack/kind.sh up"]
async fn real_frames_from_real_pods() -> Result<()> {
    let client = kind_client().await?;
    let st = Storage::new(client).await?;
    let t = Instant::now();
    st.make_scene().await?;
    println!(
        "kind: scene written by a pod in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    // First render: every frame.
    let t = Instant::now();
    st.apply_renderjob("kind").await?;
    let (rj, eta_seen) = st.wait_complete("kind").await?;
    let wall = t.elapsed().as_secs_f64();
    let s = rj.status.clone().ok_or_else(|| anyhow!("no status"))?;
    assert_eq!(s.frames.total, i64::from(FRAMES), "{s:?}");
    assert_eq!(s.frames.rendered, i64::from(FRAMES), "{s:?}");
    assert_eq!(s.batches.succeeded, 3, "{s:?}");
    assert!(
        s.devices_used.iter().any(|d| d == "CPU"),
        "devices used: {:?}",
        s.devices_used
    );
    let spf = s
        .seconds_per_frame
        .ok_or_else(|| anyhow!("no seconds per frame in status"))?;
    assert!(spf > 0.0, "seconds per frame {spf}");
    assert!(eta_seen, "no estimated completion time while rendering");
    let mut colours = Vec::new();
    for n in 1..=FRAMES {
        colours.push(check_png(&st.frame(n), WIDTH, HEIGHT)?);
    }
    println!("kind: distinct colours per frame {colours:?} (blank below {MIN_COLOURS})");
    // Per-frame progress in every batch pod's log, and every frame saved exactly once.
    let progress = st.progress("kind").await?;
    assert_eq!(progress.len(), 3, "batch pods: {:?}", progress.keys());
    let mut saved: Vec<i64> = progress
        .values()
        .flat_map(|ev| frames_in(ev, "frame_saved"))
        .collect();
    saved.sort_unstable();
    assert_eq!(saved, (1..=i64::from(FRAMES)).collect::<Vec<_>>());
    for (pod, ev) in &progress {
        assert!(
            !frames_in(ev, "frame_started").is_empty(),
            "{pod} logged no frame_started"
        );
    }
    // Nothing in a batch's log that reads like trouble with the storage when there is none.
    for (pod, log) in st.batch_logs("kind", false).await? {
        assert!(
            !log.contains("could not get a list of mounted file-systems"),
            "{pod}: Blender found no /etc/mtab:\n{log}"
        );
    }

    // Second render after losing one frame: only that frame is rendered again.
    let mtimes: Vec<SystemTime> = (1..=FRAMES)
        .map(|n| Ok(std::fs::metadata(st.frame(n))?.modified()?))
        .collect::<Result<_>>()?;
    std::fs::remove_file(st.frame(3))?;
    st.delete_renderjob("kind").await?;
    let t = Instant::now();
    st.apply_renderjob("kind").await?;
    let (rj, _) = st.wait_complete("kind").await?;
    let rewall = t.elapsed().as_secs_f64();
    let s2 = rj.status.ok_or_else(|| anyhow!("no status"))?;
    assert_eq!(s2.frames.rendered, i64::from(FRAMES), "{s2:?}");
    check_png(&st.frame(3), WIDTH, HEIGHT)?;
    for n in (1..=FRAMES).filter(|&n| n != 3) {
        let m = std::fs::metadata(st.frame(n))?.modified()?;
        assert_eq!(m, mtimes[n as usize - 1], "frame {n} was rendered again");
    }
    let progress = st.progress("kind").await?;
    let rendered: Vec<i64> = progress
        .values()
        .flat_map(|ev| frames_in(ev, "frame_saved"))
        .collect();
    assert_eq!(rendered, vec![3], "frames rendered the second time");

    let bare = bare_blender_seconds_per_frame(&st.dir.join("scenes/kind.blend"));
    println!(
        "kind: {FRAMES} frames {WIDTH}x{HEIGHT} in 3 batches of 2 (parallelism 2): {wall:.1}s; \
         after deleting one frame: {rewall:.1}s"
    );
    match bare {
        Some(b) => println!(
            "kind: seconds per frame in a pod {spf:.2}, bare Blender on this machine, same \
             batches two at a time {b:.2} (ratio {:.2})",
            spf / b
        ),
        None => println!("kind: seconds per frame in a pod {spf:.2} (no host Blender to compare)"),
    }
    Ok(())
}

/// Start ahead with real Blender: eight one-frame batches, parallelism 2. Batches started ahead
/// say they wait and for whom; by the container runtime's clock no more than two batches ever
/// render at once (first `frame_started` to last `frame_saved`), and the batch started ahead
/// starts its frame right after the one it follows saved its last.
#[tokio::test]
#[ignore = "needs the kind lane: hack/kind.sh up"]
async fn batches_started_ahead_render_in_turn() -> Result<()> {
    let client = kind_client().await?;
    let st = Storage::new(client).await?;
    st.make_scene().await?;
    let t = Instant::now();
    st.apply_renderjob_with(
        "ahead",
        json!({"frames": {"start": 1, "end": FRAMES}, "batchSize": 1, "parallelism": 2,
               "startAhead": true, "preview": {"enabled": false}}),
    )
    .await?;
    st.wait_complete("ahead").await?;
    let wall = t.elapsed().as_secs_f64();
    for n in 1..=FRAMES {
        check_png(&st.frame(n), WIDTH, HEIGHT)?;
    }
    let progress = st.timed_progress("ahead").await?;
    ensure!(
        progress.len() == FRAMES as usize,
        "batch pods: {:?}",
        progress.keys()
    );
    // (start, end) of each pod's rendering, and the handoffs.
    let mut spans = Vec::new();
    let mut handoffs = Vec::new();
    for (pod, events) in &progress {
        let first = events.iter().find(|(_, e)| e["event"] == "frame_started");
        let last = events
            .iter()
            .rev()
            .find(|(_, e)| e["event"] == "frame_saved");
        let (Some((start, _)), Some((end, _))) = (first, last) else {
            bail!("{pod} rendered nothing: {events:?}");
        };
        spans.push((*start, *end, pod.clone()));
        let waiting = events.iter().any(|(_, e)| e["event"] == "waiting");
        let handoff = events.iter().find(|(_, e)| e["event"] == "handoff");
        ensure!(
            waiting == handoff.is_some(),
            "{pod}: a wait without its end: {events:?}"
        );
        if let Some((_, h)) = handoff {
            handoffs.push((pod.clone(), h.clone()));
        }
    }
    ensure!(!handoffs.is_empty(), "no batch was started ahead");
    for (pod, h) in &handoffs {
        ensure!(h["opened"] == "done", "{pod}: {h}");
    }
    // Ends before starts at the same instant: one frame saved as the next starts is a handoff.
    let mut edges: Vec<(k8s_openapi::jiff::Timestamp, i32)> = spans
        .iter()
        .flat_map(|(s, e, _)| [(*s, 1), (*e, -1)])
        .collect();
    edges.sort();
    let (mut now, mut most) = (0, 0);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    // How long each slot stood idle at a handoff: the batch followed saved its last frame, the
    // follower started its own.
    let span_of = |index: u64| {
        let job = renderfarm::job::job_name("ahead", index as u32);
        spans
            .iter()
            .find(|(_, _, pod)| pod.starts_with(&format!("{job}-")))
    };
    let mut gaps = Vec::new();
    for (pod, h) in &handoffs {
        let before = h["after"]
            .as_str()
            .and_then(|m| m.rsplit('-').next()?.parse().ok())
            .and_then(span_of);
        let own = spans.iter().find(|(_, _, p)| p == pod);
        if let (Some(b), Some(o)) = (before, own) {
            gaps.push(o.0.duration_since(b.1).as_secs_f64());
        }
    }
    println!(
        "kind: {FRAMES} one-frame batches, parallelism 2, start ahead: {wall:.1}s; {} of {} \
         waited; at most {most} rendering at once; slot idle at each handoff {gaps:.2?} s",
        handoffs.len(),
        spans.len()
    );
    ensure!(most <= 2, "{most} batches rendered at once");
    Ok(())
}

/// `ffprobe`'s JSON about `path`'s first video stream, decoding it (`-count_frames`).
fn ffprobe(path: &Path) -> Result<Value> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
        ])
        .arg("stream=codec_name,pix_fmt,width,height,r_frame_rate,nb_read_frames")
        .args(["-of", "json"])
        .arg(path)
        .output()
        .context("running ffprobe (hack/test.sh installs ffmpeg)")?;
    ensure!(
        out.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout)?;
    v["streams"][0]
        .as_object()
        .map(|o| Value::Object(o.clone()))
        .with_context(|| format!("{}: no video stream: {v}", path.display()))
}

/// A real render on kind, then its preview step: `render-preview` in the node image writes
/// `preview.mp4` (as many frames as were rendered, at the fps and codec asked) and a
/// `contact.jpg` of the expected grid beside the frames, and status says so.
#[tokio::test]
#[ignore = "needs the kind lane: hack/kind.sh up"]
async fn a_real_render_gets_a_preview_video_and_contact_sheet() -> Result<()> {
    let client = kind_client().await?;
    let st = Storage::new(client).await?;
    st.make_scene().await?;
    let fps = 12;
    let rj: RenderJob = serde_json::from_value(json!({
        "apiVersion": "renderfarm.io/v1alpha1", "kind": "RenderJob",
        "metadata": {"name": "preview", "namespace": st.ns},
        "spec": {
            "blendFile": "scenes/kind.blend",
            "frames": {"start": 1, "end": FRAMES},
            "batchSize": 3, "parallelism": 2,
            "output": {"path": "renders/preview/frame_####", "format": "PNG"},
            "storage": {"claimName": "render-storage", "mountPath": "/data"},
            "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
            "preview": {"fps": fps, "width": WIDTH, "codec": "H264"},
        }
    }))?;
    let t = Instant::now();
    st.rjs().create(&PostParams::default(), &rj).await?;
    let rj = await_object(
        st.rjs(),
        "preview",
        Duration::from_secs(900),
        "PreviewReady True or False with reason Failed",
        |rj: Option<&RenderJob>| {
            rj.and_then(|rj| rj.status.as_ref()).is_some_and(|s| {
                s.conditions.iter().any(|c| {
                    c.type_ == "PreviewReady" && (c.status == "True" || c.reason == "Failed")
                })
            })
        },
    )
    .await?
    .context("the RenderJob is gone")?;
    let s = rj.status.clone().context("no status")?;
    let p = s.preview.clone().context("no status.preview")?;
    ensure!(
        p.state == renderfarm::crd::PreviewState::Ready,
        "preview {:?}: {}",
        p.state,
        p.message.unwrap_or_default()
    );
    assert_eq!(s.phase, Phase::Succeeded);
    println!(
        "kind: {FRAMES} frames and their preview in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let video = st.dir.join(p.video.as_deref().context("no video path")?);
    let info = ffprobe(&video)?;
    println!("kind: ffprobe {}: {info}", video.display());
    assert_eq!(info["codec_name"], "h264", "{info}");
    assert_eq!(info["pix_fmt"], "yuv420p", "{info}");
    assert_eq!(info["r_frame_rate"], format!("{fps}/1"), "{info}");
    assert_eq!(info["nb_read_frames"], FRAMES.to_string(), "{info}");
    assert_eq!(info["width"], WIDTH, "{info}");
    assert_eq!(p.frames, Some(i64::from(FRAMES)));

    let (columns, rows) = render_contract::preview::contact_sheet_grid(FRAMES as u32);
    assert_eq!(
        (p.columns, p.rows),
        (Some(i64::from(columns)), Some(i64::from(rows)))
    );
    let sheet = st.dir.join(
        p.contact_sheet
            .as_deref()
            .context("no contact sheet path")?,
    );
    let info = ffprobe(&sheet)?;
    println!("kind: ffprobe {}: {info}", sheet.display());
    assert_eq!(info["codec_name"], "mjpeg", "{info}");
    let tile = render_contract::preview::CONTACT_SHEET_TILE_WIDTH;
    assert_eq!(
        info["width"],
        columns * tile,
        "{columns} tiles of {tile} px: {info}"
    );
    let tile_height = u64::from(tile * HEIGHT / WIDTH);
    let height = info["height"].as_u64().context("height")?;
    ensure!(
        height.abs_diff(u64::from(rows) * tile_height) <= u64::from(rows),
        "{rows} rows of about {tile_height} px: {info}"
    );
    let last = s.last_frame.clone().context("no status.lastFrame")?;
    ensure!(
        st.dir.join(&last.thumbnail).is_file(),
        "the last frame's thumbnail {} is not on the volume",
        last.thumbnail
    );
    Ok(())
}

/// A render queued through Kueue (installed on kind with `hack/kueue.sh kind`, from an image
/// built here): a LocalQueue whose ClusterQueue admits one 500m batch at a time; every frame
/// rendered, each batch admitted by a Workload of its own, and no two batch pods ran at once.
#[tokio::test]
#[ignore = "needs the kind lane with Kueue: hack/kind.sh up && hack/kueue.sh kind"]
async fn a_render_queued_through_kueue() -> Result<()> {
    let client = kind_client().await?;
    let st = Storage::new(client.clone()).await?;
    st.make_scene().await?;
    let name = format!("rf-{}", st.ns);
    let _cleanup = ClusterObjects(vec![
        format!("clusterqueues.kueue.x-k8s.io/{name}"),
        format!("resourceflavors.kueue.x-k8s.io/{name}"),
    ]);
    harness::apply_object(
        &client,
        json!({"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor", "metadata": {"name": name}}),
    )
    .await
    .context("is Kueue installed? `hack/kueue.sh kind`")?;
    harness::apply_object(
        &client,
        json!({"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue", "metadata": {"name": name},
               "spec": {"namespaceSelector": {}, "resourceGroups": [{
                   "coveredResources": ["cpu", "memory"],
                   "flavors": [{"name": name, "resources": [
                       {"name": "cpu", "nominalQuota": "500m"}, {"name": "memory", "nominalQuota": "8Gi"}]}]}]}}),
    )
    .await?;
    harness::apply_object(
        &client,
        json!({"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue",
               "metadata": {"name": "artists", "namespace": st.ns}, "spec": {"clusterQueue": name}}),
    )
    .await?;
    let t = Instant::now();
    st.apply_renderjob_with("kueue", json!({"queueName": "artists"}))
        .await?;
    let (rj, _) = st.wait_complete("kueue").await?;
    let s = rj.status.clone().ok_or_else(|| anyhow!("no status"))?;
    ensure!(s.phase == Phase::Succeeded, "{s:?}");
    ensure!(
        s.frames.rendered == i64::from(FRAMES) && s.batches.failed == 0,
        "{s:?}"
    );
    for n in 1..=FRAMES {
        check_png(&st.frame(n), WIDTH, HEIGHT)?;
    }
    let gvk = kube::core::GroupVersionKind::gvk("kueue.x-k8s.io", "v1beta2", "Workload");
    let workloads: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        &st.ns,
        &kube::core::ApiResource::from_gvk(&gvk),
    );
    // The render is Complete once its last batch's pod succeeded; that batch's Job, and so its
    // Workload, finish a moment later.
    let is_finished = |w: &kube::api::DynamicObject| {
        w.data["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Finished" && c["status"] == "True")
        })
    };
    watch_until(
        workloads,
        Duration::from_secs(60),
        "3 Workloads finished",
        |all| (all.iter().filter(|w| is_finished(w)).count() == 3).then_some(()),
    )
    .await?;
    // One at a time under a 500m quota: no two batch containers' run times overlap.
    let mut spans: Vec<(String, String)> = st
        .pods()
        .list(&ListParams::default().labels("app.kubernetes.io/component=render-batch"))
        .await?
        .items
        .iter()
        .filter_map(|p| {
            let t = p.status.as_ref()?.container_statuses.as_ref()?.first()?;
            let done = t.state.as_ref()?.terminated.as_ref()?;
            Some((
                done.started_at.as_ref()?.0.to_string(),
                done.finished_at.as_ref()?.0.to_string(),
            ))
        })
        .collect();
    spans.sort();
    ensure!(spans.len() == 3, "batch pods: {spans:?}");
    for w in spans.windows(2) {
        ensure!(w[0].1 <= w[1].0, "two batches ran at once: {spans:?}");
    }
    println!(
        "kind: {FRAMES} frames through a Kueue LocalQueue, one batch at a time: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Deletes cluster-scoped objects by `kubectl delete TYPE/NAME` when dropped.
struct ClusterObjects(Vec<String>);

impl Drop for ClusterObjects {
    fn drop(&mut self) {
        for obj in &self.0 {
            let _ = Command::new("kubectl")
                .args(["delete", obj, "--wait=false", "--ignore-not-found"])
                .output();
        }
    }
}

/// A scene saved by Blender 5.0 (made on this machine with the 5.0 wheel) given to the 4.5
/// node image: the first batches fail as bad input naming both versions and the
/// blenderVersion to set, status shows the file's version, and no further batch starts.
#[tokio::test]
#[ignore = "needs the kind lane: hack/kind.sh up"]
async fn a_scene_from_a_newer_blender_fails_naming_both_versions() -> Result<()> {
    let client = kind_client().await?;
    let st = Storage::new(client).await?;
    let out = Command::new(repo_root().join("hack/blender.sh"))
        .args(["path", "5.0"])
        .output()?;
    let blender = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let scene = st.dir.join("scenes/newer.blend");
    let made = Command::new(&blender)
        .args(["-b", "--factory-startup", "--python"])
        .arg(repo_root().join("node-image/scripts/make-scene.py"))
        .arg("--")
        .arg(&scene)
        .args(["8", "160", "90", "1"])
        .output()
        .with_context(|| format!("running {blender:?} (hack/blender.sh 5.0 installs it)"))?;
    ensure!(
        scene.is_file(),
        "Blender 5.0 wrote no scene: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let rj: RenderJob = serde_json::from_value(json!({
        "apiVersion": "renderfarm.io/v1alpha1", "kind": "RenderJob",
        "metadata": {"name": "newer", "namespace": st.ns},
        "spec": {
            "blendFile": "scenes/newer.blend", "frames": {"start": 1, "end": 8},
            "batchSize": 1, "parallelism": 2,
            "storage": {"claimName": "render-storage", "mountPath": "/data"},
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
        }
    }))?;
    st.rjs().create(&PostParams::default(), &rj).await?;
    let rj = await_object(
        st.rjs(),
        "newer",
        Duration::from_secs(300),
        "the render Failed",
        |rj: Option<&RenderJob>| {
            rj.and_then(|r| r.status.as_ref())
                .is_some_and(|s| s.phase == Phase::Failed)
        },
    )
    .await?
    .context("the RenderJob is gone")?;
    let s = rj.status.ok_or_else(|| anyhow!("no status"))?;
    println!("kind: newer scene: {:?}", s.failed_batches.first());
    assert_eq!(s.file_version.as_deref(), Some("5.0"), "{s:?}");
    let f = s.failed_batches.first().context("a failed batch")?;
    assert_eq!(f.reason, "BadInput", "{f:?}");
    let message = f.message.clone().unwrap_or_default();
    assert!(
        message.contains("5.0") && message.contains("4.5") && message.contains("blenderVersion"),
        "{message}"
    );
    assert!(
        s.batches.failed <= 2 && s.batches.pending >= 6,
        "{:?}",
        s.batches
    );
    Ok(())
}

/// A scene whose image texture is not in the volume, with `missingFiles: Warn`: the frames
/// render, status lists the missing file, and a Warning Event says so.
#[tokio::test]
#[ignore = "needs the kind lane: hack/kind.sh up"]
async fn missing_textures_with_warn_render_and_warn() -> Result<()> {
    let client = kind_client().await?;
    let st = Storage::new(client.clone()).await?;
    let out = Command::new(repo_root().join("hack/blender.sh"))
        .args(["path", "4.5"])
        .output()?;
    let blender = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dir = st.dir.join("scenes/ext");
    let made = Command::new(&blender)
        .args(["-b", "--factory-startup", "--python"])
        .arg(repo_root().join("node-image/tests/scenes/external.py"))
        .arg("--")
        .arg(&dir)
        .output()
        .with_context(|| format!("running {blender:?} (hack/blender.sh installs it)"))?;
    ensure!(
        dir.join("scene.blend").is_file(),
        "no scene: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    std::fs::remove_file(dir.join("tex.png"))?;
    let rj: RenderJob = serde_json::from_value(json!({
        "apiVersion": "renderfarm.io/v1alpha1", "kind": "RenderJob",
        "metadata": {"name": "warned", "namespace": st.ns},
        "spec": {
            "blendFile": "scenes/ext/scene.blend", "frames": {"start": 1, "end": 2},
            "batchSize": 2, "missingFiles": "Warn",
            "output": {"path": "renders/warned/frame_####", "format": "PNG"},
            "storage": {"claimName": "render-storage", "mountPath": "/data"},
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
        }
    }))?;
    st.rjs().create(&PostParams::default(), &rj).await?;
    let (rj, _) = st.wait_complete("warned").await?;
    let s = rj.status.ok_or_else(|| anyhow!("no status"))?;
    println!(
        "kind: missing files {:?} ({:?})",
        s.missing_files, s.missing_files_count
    );
    assert_eq!(s.frames.rendered, 2, "{s:?}");
    assert!(
        s.missing_files.iter().any(|f| f.ends_with("tex.png")),
        "{:?}",
        s.missing_files
    );
    for frame in 1..=2 {
        // Flat colours (magenta where the texture is missing): frames, not the shaded scene.
        let png = st.dir.join(format!("renders/warned/frame_{frame:04}.png"));
        let bytes = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
        ensure!(bytes > 0, "{} missing or empty", png.display());
    }
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client, &st.ns);
    let warned = warning_note(&events, "MissingFiles").await?;
    assert!(warned.contains("tex.png"), "{warned}");
    Ok(())
}

/// The note of the first Warning Event with `reason`, waiting a little for it.
async fn warning_note(
    events: &Api<k8s_openapi::api::events::v1::Event>,
    reason: &str,
) -> Result<String> {
    for _ in 0..50 {
        let list = events.list(&ListParams::default()).await?;
        if let Some(note) = list
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some(reason) && e.type_.as_deref() == Some("Warning"))
            .and_then(|e| e.note)
        {
            return Ok(note);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("no {reason} Warning Event")
}

/// The namespace `hack/kind.sh up` installs the chart, and so the operator, in.
const OPERATOR_NAMESPACE: &str = "renderfarm-system";

/// The operator killed while the preview Job's pod runs, with real pods: the Deployment's next
/// operator pod records the preview Ready, one preview Job was ever made, one `preview.mp4`
/// lies beside the frames, and ffprobe reads it as the render's frames at the preview's fps.
/// The pods get a quarter of a CPU, so that render-preview runs for seconds: long enough to be
/// seen running, and to be killed during.
#[tokio::test]
#[ignore = "needs the kind lane: hack/kind.sh up"]
async fn an_operator_killed_during_the_preview_makes_one_preview_on_kind() -> Result<()> {
    use renderfarm::crd::PreviewState;
    let client = kind_client().await?;
    let st = Storage::new(client.clone()).await?;
    st.make_scene().await?;
    let uids = harness::JobUids::watch(Api::namespaced(client.clone(), &st.ns));
    uids.synced().await?;
    let fps = 12;
    st.apply_renderjob_with(
        "crash",
        json!({"preview": {"fps": fps, "width": 1920, "codec": "H264"},
               "resources": {"requests": {"cpu": "250m", "memory": "512Mi"},
                             "limits": {"cpu": "250m", "memory": "2Gi"}}}),
    )
    .await?;
    let (pod, phase) = preview_pod_started(&st, "crash").await?;
    let state = |rj: RenderJob| rj.status.and_then(|s| s.preview).map(|p| p.state);
    let before = state(st.rjs().get("crash").await?);
    ensure!(
        before != Some(PreviewState::Ready),
        "the preview was Ready before the operator could be killed: nothing would be tested"
    );
    let killed = kill_operator(&client).await?;
    let after = state(st.rjs().get("crash").await?);
    println!(
        "kind: operator {killed:?} killed while preview pod {pod} was {phase} (preview \
         {before:?}, once it was gone {after:?})"
    );
    let t = Instant::now();
    let rj = await_object(
        st.rjs(),
        "crash",
        Duration::from_secs(600),
        "the preview Ready or Failed",
        |rj: Option<&RenderJob>| {
            rj.and_then(|rj| rj.status.as_ref()?.preview.as_ref())
                .is_some_and(|p| matches!(p.state, PreviewState::Ready | PreviewState::Failed))
        },
    )
    .await?
    .context("the RenderJob is gone")?;
    let p = rj
        .status
        .and_then(|s| s.preview)
        .context("no status.preview")?;
    ensure!(
        p.state == PreviewState::Ready,
        "preview {:?}: {}",
        p.state,
        p.message.unwrap_or_default()
    );
    println!(
        "kind: the next operator recorded the preview Ready {:.1}s after the kill",
        t.elapsed().as_secs_f64()
    );
    // Stragglers: a second preview Job would follow the first operator event of the new one.
    let seen = uids.stop_after(Duration::from_secs(10)).await?;
    let name = renderfarm::job::preview_job_name("crash");
    // Every Job of the render that is not a batch's (theirs end in four digits), whatever its
    // name: a preview made twice under two names counts twice.
    let batch = |n: &str| {
        n.rsplit_once('-')
            .is_some_and(|(_, i)| i.len() == 4 && i.bytes().all(|b| b.is_ascii_digit()))
    };
    let previews: Vec<_> = seen.iter().filter(|j| !batch(&j.name)).collect();
    ensure!(
        previews.len() == 1 && previews[0].name == name,
        "want one preview Job, {name}; made: {previews:#?}"
    );
    let seconds = one_preview_video(&st, fps)?;
    for n in 1..=FRAMES {
        check_png(&st.frame(n), WIDTH, HEIGHT)?;
    }
    println!("kind: one preview Job, one preview.mp4: {FRAMES} frames at {fps} fps, {seconds}s");
    Ok(())
}

/// The one video beside the render's frames is `preview.mp4`, of every frame at `fps`; its
/// duration in seconds.
fn one_preview_video(st: &Storage, fps: i32) -> Result<f64> {
    let dir = st
        .frame(1)
        .parent()
        .context("no frames directory")?
        .to_path_buf();
    let mut videos = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let file = entry?.file_name().to_string_lossy().to_string();
        if file.ends_with(".mp4") || file.contains("preview") {
            videos.push(file);
        }
    }
    ensure!(
        videos == ["preview.mp4"],
        "in {}: {videos:?}",
        dir.display()
    );
    let video = dir.join("preview.mp4");
    let info = ffprobe(&video)?;
    // ffprobe writes both as strings.
    let counted = info["nb_read_frames"].as_str();
    ensure!(counted == Some(FRAMES.to_string().as_str()), "{info}");
    ensure!(
        info["r_frame_rate"].as_str() == Some(format!("{fps}/1").as_str()),
        "{info}"
    );
    let seconds = video_seconds(&video)?;
    let want = f64::from(FRAMES) / f64::from(fps);
    ensure!(
        (seconds - want).abs() <= 1.0 / f64::from(fps),
        "{seconds}s, want {want}s"
    );
    Ok(seconds)
}

/// Wait until the preview Job's pod of `name` runs (or has run: a pod that ends within the
/// kubelet's status period may never show `Running`); its name and phase.
async fn preview_pod_started(st: &Storage, name: &str) -> Result<(String, String)> {
    let selector = [
        (renderfarm::job::STEP_LABEL, renderfarm::job::PREVIEW_STEP),
        (renderfarm::job::RENDERJOB_LABEL, name),
    ];
    let started = |p: &Pod| {
        let status = p.status.as_ref();
        let phase = status.and_then(|s| s.phase.clone()).unwrap_or_default();
        let ran = status
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|c| c.state.as_ref())
            .any(|s| s.running.is_some() || s.terminated.is_some());
        (phase == "Running" || ran).then_some(phase)
    };
    watch_until(
        st.pods(),
        Duration::from_secs(900),
        "the preview Job's pod running",
        |all: &[&Pod]| {
            all.iter()
                .filter(|p| {
                    selector
                        .iter()
                        .all(|(k, v)| p.labels().get(*k).map(String::as_str) == Some(*v))
                })
                .find_map(|p| Some((p.name_any(), started(p)?)))
        },
    )
    .await
}

/// Delete the operator's pods (the chart's Deployment makes a new one) and wait until they are
/// gone, their processes ended; their names.
async fn kill_operator(client: &Client) -> Result<Vec<String>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let lp = ListParams::default()
        .labels("app.kubernetes.io/name=renderfarm,app.kubernetes.io/component=operator");
    let old: BTreeMap<String, String> = pods
        .list(&lp)
        .await?
        .items
        .iter()
        .map(|p| (p.uid().unwrap_or_default(), p.name_any()))
        .collect();
    ensure!(
        !old.is_empty(),
        "no operator pod in {OPERATOR_NAMESPACE}: `hack/kind.sh up` installs the chart there"
    );
    // A second's grace, then SIGKILL; the pod object goes once the process has.
    let now = DeleteParams {
        grace_period_seconds: Some(1),
        ..DeleteParams::default()
    };
    for name in old.values() {
        pods.delete(name, &now).await?;
    }
    watch_until(
        pods,
        Duration::from_secs(120),
        "the killed operator pods gone",
        |all: &[&Pod]| {
            (!all
                .iter()
                .any(|p| p.uid().is_some_and(|u| old.contains_key(&u))))
            .then_some(())
        },
    )
    .await?;
    Ok(old.into_values().collect())
}

/// A video's duration in seconds, as ffprobe reads its container.
fn video_seconds(path: &Path) -> Result<f64> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .context("running ffprobe (hack/test.sh installs ffmpeg)")?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    ensure!(
        out.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    text.parse()
        .with_context(|| format!("ffprobe {}: duration {text:?}", path.display()))
}

/// The render-node image `hack/kind.sh up` builds with Blender 5.0 and offers through the chart's
/// `blender.images`.
const BLENDER_5_0_IMAGE: &str = "renderfarm/render-node:dev-blender5.0";

/// Blender 5.0 for real: a scene Blender 5.0 saved (zstd-compressed, as it saves by default;
/// made on this machine with the 5.0 wheel) renders with `blenderVersion: "5.0"`. Every frame
/// decodes and is not blank, the batch pods ran the chart's 5.0 image, and status names 5.0 as
/// both the Blender that rendered and the file's.
#[tokio::test]
#[ignore = "needs the kind lane (hack/kind.sh up, with its 5.0 image) and hack/blender.sh 5.0"]
async fn a_scene_from_blender_5_0_renders_with_blender_version_5_0() -> Result<()> {
    use anyhow::{Context as _, anyhow, ensure};
    let client = kind_client().await?;
    let st = Storage::new(client).await?;
    let out = Command::new(repo_root().join("hack/blender.sh"))
        .args(["path", "5.0"])
        .output()?;
    let blender = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let (frames, scene): (i32, _) = (4, st.dir.join("scenes/v5.blend"));
    let made = Command::new(&blender)
        .args(["-b", "--factory-startup", "--python"])
        .arg(repo_root().join("node-image/scripts/make-scene.py"))
        .arg("--")
        .arg(&scene)
        .args([
            frames.to_string(),
            WIDTH.to_string(),
            HEIGHT.to_string(),
            "4".into(),
        ])
        .output()
        .with_context(|| format!("running {blender:?} (hack/blender.sh 5.0 installs it)"))?;
    ensure!(
        scene.is_file(),
        "Blender 5.0 wrote no scene: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    ensure!(
        std::fs::read(&scene)?.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]),
        "{} is not zstd-compressed, as Blender 5.0 saves by default",
        scene.display()
    );
    let t = Instant::now();
    st.apply_renderjob_with(
        "v5",
        json!({"blendFile": "scenes/v5.blend", "frames": {"start": 1, "end": frames},
               "output": {"path": "renders/v5/frame_####", "format": "PNG"},
               "blenderVersion": "5.0", "preview": {"enabled": false}}),
    )
    .await?;
    let (rj, _) = st.wait_complete("v5").await?;
    let s = rj.status.ok_or_else(|| anyhow!("no status"))?;
    ensure!(s.phase == Phase::Succeeded, "{s:?}");
    ensure!(s.frames.rendered == i64::from(frames), "{s:?}");
    for n in 1..=frames {
        let png = st.dir.join(format!("renders/v5/frame_{n:04}.png"));
        renderfarm_testkit::frame::check_png(&png, WIDTH, HEIGHT)?;
    }
    // The file's version from its header, and the Blender the pods reported (`5.0.1`).
    let rendered_by = s.blender_version.clone().unwrap_or_default();
    ensure!(
        s.file_version.as_deref() == Some("5.0") && rendered_by.starts_with("5.0."),
        "status.fileVersion and status.blenderVersion: {s:?}"
    );
    // Blender 5.0 logs its frames through CLOG: render-node still times each one.
    ensure!(
        s.seconds_per_frame.is_some_and(|t| t > 0.0),
        "no status.secondsPerFrame from Blender 5.0's log: {s:?}"
    );
    // The operator picked the image by spec.blenderVersion: the chart's 5.0 entry.
    let lp = ListParams::default().labels("renderfarm.io/renderjob=v5,renderfarm.io/batch");
    let pods = st.pods().list(&lp).await?;
    ensure!(!pods.items.is_empty(), "no batch pods to look at");
    for pod in &pods {
        let container = pod.spec.as_ref().and_then(|s| s.containers.first());
        let image = container.and_then(|c| c.image.as_deref());
        ensure!(
            image == Some(BLENDER_5_0_IMAGE),
            "{}: image {image:?}",
            pod.name_any()
        );
    }
    println!(
        "kind: a Blender 5.0 scene, {frames} frames with blenderVersion 5.0 (Blender {rendered_by}): {:.1}s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The kind workers' node names (every node but the control plane), sorted.
async fn kind_workers(client: &Client) -> Result<Vec<String>> {
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let lp = ListParams::default().labels("!node-role.kubernetes.io/control-plane");
    let mut names: Vec<String> = nodes
        .list(&lp)
        .await?
        .iter()
        .map(|n| n.name_any())
        .collect();
    names.sort();
    Ok(names)
}

/// One worker's `/renders` (its view of the render storage) read-only, as a node whose mount
/// went bad, until dropped (or [`ReadOnly::repair`]ed): `mount -o remount,ro,bind` inside that
/// node's container.
struct ReadOnly {
    node: String,
    repaired: bool,
}

impl ReadOnly {
    fn remount(node: &str, mode: &str) -> Result<()> {
        let out = Command::new("docker")
            .args([
                "exec",
                node,
                "mount",
                "-o",
                &format!("remount,{mode},bind"),
                "/renders",
            ])
            .output()
            .context("running docker exec (the kind lane's docker)")?;
        ensure!(
            out.status.success(),
            "remounting /renders {mode} in {node}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    fn break_node(node: &str) -> Result<ReadOnly> {
        Self::remount(node, "ro")?;
        Ok(ReadOnly {
            node: node.to_string(),
            repaired: false,
        })
    }

    fn repair(&mut self) -> Result<()> {
        Self::remount(&self.node, "rw")?;
        self.repaired = true;
        Ok(())
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        if !self.repaired {
            let _ = Self::remount(&self.node, "rw");
        }
    }
}

/// Each batch's pods that exist now: (batch, node, phase), by pod name.
async fn batch_pods(
    st: &Storage,
    name: &str,
) -> Result<BTreeMap<String, (String, String, String)>> {
    let lp = ListParams::default().labels(&format!(
        "renderfarm.io/renderjob={name},renderfarm.io/batch"
    ));
    Ok(st
        .pods()
        .list(&lp)
        .await?
        .iter()
        .map(|p| {
            let batch = p
                .labels()
                .get("renderfarm.io/batch")
                .cloned()
                .unwrap_or_default();
            let node = p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default();
            let phase = p
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default();
            (p.name_any(), (batch, node, phase))
        })
        .collect())
}

/// The first render with `bad` read-only: complete, every frame once, `bad` blocked, no
/// failed batch back on `bad`, the rest rendered by `good`. Returns the failures forgiven.
async fn render_around(st: &Storage, bad: &str, good: &str) -> Result<i64> {
    st.apply_renderjob_with(
        "routed",
        json!({"batchSize": 1, "parallelism": 2, "nodeFailureLimit": 2}),
    )
    .await?;
    let (rj, _) = st.wait_complete("routed").await?;
    let s = rj.status.clone().ok_or_else(|| anyhow!("no status"))?;
    println!(
        "kind: blocked {:?}, faults {:?}",
        s.blocked_nodes, s.node_faults
    );
    ensure!(s.frames.rendered == i64::from(FRAMES), "{s:?}");
    for n in 1..=FRAMES {
        check_png(&st.frame(n), WIDTH, HEIGHT)?;
    }
    let mut saved: Vec<i64> = (st.progress("routed").await?.values())
        .flat_map(|ev| frames_in(ev, "frame_saved"))
        .collect();
    saved.sort_unstable();
    ensure!(
        saved == (1..=i64::from(FRAMES)).collect::<Vec<_>>(),
        "frames saved: {saved:?}"
    );
    let blocked: Vec<&str> = s.blocked_nodes.iter().map(|b| b.node.as_str()).collect();
    ensure!(blocked == [bad], "blocked nodes {blocked:?}, want [{bad}]");
    ensure!(
        s.node_faults
            .iter()
            .all(|f| f.node == bad && f.reason == "OutputReadOnly"),
        "{:?}",
        s.node_faults
    );
    let pods = batch_pods(st, "routed").await?;
    for f in &s.node_faults {
        let again: Vec<_> = pods
            .values()
            .filter(|p| p.0 == f.batch.to_string())
            .collect();
        ensure!(
            !again.is_empty() && again.iter().all(|p| p.1 != bad),
            "batch {} failed on {bad} and its pods now: {again:?}",
            f.batch
        );
    }
    let succeeded: Vec<_> = pods.values().filter(|p| p.2 == "Succeeded").collect();
    ensure!(
        succeeded.iter().all(|p| p.1 == good),
        "succeeded pods: {succeeded:?}"
    );
    Ok(s.node_faults.iter().filter(|f| f.node == bad).count() as i64)
}

/// A worker's render storage goes read-only while a render runs with parallelism 2: the batches
/// that fail there are retried on the other worker, the worker is blocked for the render, and
/// the render completes with every frame on disk once. Repaired and unblocked, the next render
/// uses both workers.
#[tokio::test]
#[ignore = "needs the kind lane: hack/kind.sh up"]
async fn a_worker_with_read_only_storage_is_routed_around_then_unblocked() -> Result<()> {
    let client = kind_client().await?;
    let workers = kind_workers(&client).await?;
    ensure!(workers.len() == 2, "two kind workers, found {workers:?}");
    let (good, bad) = (workers[0].clone(), workers[1].clone());
    let st = Storage::new(client).await?;
    st.make_scene().await?;
    let mut broken = ReadOnly::break_node(&bad)?;
    let forgiven = render_around(&st, &bad, &good).await?;
    broken.repair()?;
    // Unblocked through the spec (what `kubectl render unblock routed NODE` patches).
    st.rjs()
        .patch(
            "routed",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                json!({"spec": {"unblockedNodes": [{"node": bad, "failures": forgiven}]}}),
            ),
        )
        .await?;
    await_object(
        st.rjs(),
        "routed",
        Duration::from_secs(60),
        "no blocked node after the unblock",
        |rj: Option<&RenderJob>| {
            rj.and_then(|r| r.status.as_ref())
                .is_some_and(|s| s.blocked_nodes.is_empty())
        },
    )
    .await?;
    st.apply_renderjob_with(
        "again",
        json!({"batchSize": 1, "parallelism": 2, "output": {"path": "renders/again/frame_####"}}),
    )
    .await?;
    st.wait_complete("again").await?;
    let pods = batch_pods(&st, "again").await?;
    let used: std::collections::BTreeSet<&str> = pods
        .values()
        .filter(|p| p.2 == "Succeeded")
        .map(|p| p.1.as_str())
        .collect();
    ensure!(
        used.len() == 2,
        "the second render ran on {used:?}, want both workers"
    );
    println!("kind: {bad} blocked after {forgiven} failures, unblocked; second render on {used:?}");
    Ok(())
}

/// The scene file of render-node's production tests (`node-image/tests/scenes/production.py`:
/// scenes Shot and Alt, cameras CamGreen and CamRed, view layers Beauty and RedOnly), written
/// by host Blender into `scenes/prod/production.blend` of the storage.
fn make_production_scene(st: &Storage) -> Result<()> {
    let out = Command::new(repo_root().join("hack/blender.sh"))
        .args(["path", "4.5"])
        .output()?;
    let blender = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let blend = st.dir.join("scenes/prod/production.blend");
    std::fs::create_dir_all(st.dir.join("scenes/prod"))?;
    let made = Command::new(&blender)
        .args([
            "-b",
            "--factory-startup",
            "--python-exit-code",
            "1",
            "--python",
        ])
        .arg(repo_root().join("node-image/tests/scenes/production.py"))
        .arg("--")
        .arg(&blend)
        .output()
        .with_context(|| format!("running {blender:?} (hack/blender.sh installs it)"))?;
    ensure!(
        blend.is_file(),
        "no scene: {}",
        String::from_utf8_lossy(&made.stdout)
    );
    set_mode(&st.dir.join("scenes/prod"), 0o777)
}

/// Render `name` of the production scene with `extra` merged into its spec, to the end.
async fn render_production(st: &Storage, name: &str, extra: Value) -> Result<RenderJob> {
    let mut rj = json!({
        "apiVersion": "renderfarm.io/v1alpha1", "kind": "RenderJob",
        "metadata": {"name": name, "namespace": st.ns},
        "spec": {
            "blendFile": "scenes/prod/production.blend", "frames": {"start": 1, "end": 1},
            "batchSize": 1, "parallelism": 2,
            "output": {"path": format!("renders/{name}/frame_####"), "format": "PNG"},
            "storage": {"claimName": "render-storage", "mountPath": "/data"},
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
        }
    });
    harness::merge(&mut rj["spec"], extra);
    st.rjs()
        .create(&PostParams::default(), &serde_json::from_value(rj)?)
        .await?;
    Ok(st.wait_complete(name).await?.0)
}

/// Pixels of a rendered frame that are mostly `channel` (0 red, 1 green, 2 blue).
fn pixels_of(st: &Storage, name: &str, frame: i32, channel: usize) -> Result<usize> {
    let path = st.dir.join(format!("renders/{name}/frame_{frame:04}.png"));
    let f = renderfarm_testkit::frame::decode_png(&path)?;
    Ok(f.rgb
        .iter()
        .filter(|px| px[channel] > 200 && (0..3).all(|c| c == channel || px[c] < 60))
        .count())
}

/// `spec.camera` and `spec.viewLayers` reach Blender in a batch pod: CamGreen sees the green
/// plane, the RedOnly layer shows the red cube where the file's own layer (Beauty) shows none
/// and is black, which the operator says with a `BlankFrame` Warning Event. An unknown camera
/// fails the render at once as bad input, naming the file's cameras.
#[tokio::test]
#[ignore = "needs the kind lane (hack/kind.sh up) and hack/blender.sh 4.5"]
async fn cameras_and_view_layers_chosen_by_name() -> Result<()> {
    let client = kind_client().await?;
    let st = Storage::new(client.clone()).await?;
    make_production_scene(&st)?;
    let all = 64 * 36;
    render_production(&st, "green", json!({"camera": "CamGreen"})).await?;
    ensure!(
        pixels_of(&st, "green", 1, 1)? > all * 9 / 10,
        "CamGreen shows no green plane"
    );
    render_production(&st, "red", json!({"viewLayers": ["RedOnly"]})).await?;
    ensure!(
        pixels_of(&st, "red", 1, 0)? > all * 9 / 10,
        "RedOnly shows no red cube"
    );
    let beauty = render_production(&st, "beauty", json!({})).await?;
    assert_eq!(pixels_of(&st, "beauty", 1, 0)?, 0, "Beauty shows red");
    let s = beauty.status.ok_or_else(|| anyhow!("no status"))?;
    assert_eq!(s.blank_frames, [1], "{s:?}");
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client, &st.ns);
    let note = warning_note(&events, "BlankFrame").await?;
    assert!(note.starts_with("frames 1 are one flat colour"), "{note}");

    let rj: RenderJob = serde_json::from_value(json!({
        "apiVersion": "renderfarm.io/v1alpha1", "kind": "RenderJob",
        "metadata": {"name": "nocam", "namespace": st.ns},
        "spec": {"blendFile": "scenes/prod/production.blend", "frames": {"start": 1, "end": 1},
                 "camera": "Nope", "storage": {"claimName": "render-storage", "mountPath": "/data"}},
    }))?;
    st.rjs().create(&PostParams::default(), &rj).await?;
    let err = st
        .wait_complete("nocam")
        .await
        .expect_err("an unknown camera fails");
    let text = format!("{err:#}");
    assert!(
        text.contains("BadInput") && text.contains("its cameras: 'CamGreen', 'CamRed'"),
        "{text}"
    );
    Ok(())
}

/// `frames.list` renders only its frames, in batches; `spec.rerender` on the finished render
/// renders frame 3 again in place (a newer file) and leaves frame 1 as it was, and
/// `status.rerenders` records it with its start and end.
#[tokio::test]
#[ignore = "needs the kind lane (hack/kind.sh up) and hack/blender.sh 4.5"]
async fn a_frame_list_renders_its_frames_and_a_rerender_only_those_asked_for() -> Result<()> {
    let client = kind_client().await?;
    let st = Storage::new(client).await?;
    make_production_scene(&st)?;
    let extra = json!({"frames": {"start": 1, "end": 4, "list": ["3", 1]}, "camera": "CamGreen"});
    let rj = render_production(&st, "listed", extra).await?;
    let s = rj.status.ok_or_else(|| anyhow!("no status"))?;
    assert_eq!(
        (s.frames.total, s.frames.rendered, s.batches.total),
        (2, 2, 2),
        "{s:?}"
    );
    let frame = |n: i32| st.dir.join(format!("renders/listed/frame_{n:04}.png"));
    ensure!(
        frame(1).is_file() && frame(3).is_file(),
        "frames 1 and 3 rendered"
    );
    ensure!(
        !frame(2).exists() && !frame(4).exists(),
        "frames 2 and 4 are not in the list"
    );
    let mtime = |n: i32| -> Result<SystemTime> { Ok(std::fs::metadata(frame(n))?.modified()?) };
    let (one, three) = (mtime(1)?, mtime(3)?);

    let patch = json!({"spec": {"rerender": {"frames": "3", "serial": 1}}});
    st.rjs()
        .patch(
            "listed",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(patch),
        )
        .await?;
    let done = await_object(
        st.rjs(),
        "listed",
        Duration::from_secs(600),
        "rerender #1 finished",
        |rj: Option<&RenderJob>| {
            rj.and_then(|r| r.status.as_ref()).is_some_and(|s| {
                s.rerenders.iter().any(|r| {
                    r.serial == 1
                        && matches!(
                            r.state,
                            renderfarm::crd::RerenderState::Succeeded
                                | renderfarm::crd::RerenderState::Failed
                        )
                })
            })
        },
    )
    .await?
    .context("the RenderJob is gone")?;
    let r = done
        .status
        .as_ref()
        .map(|s| s.rerenders[0].clone())
        .context("status")?;
    assert_eq!(r.state, renderfarm::crd::RerenderState::Succeeded, "{r:?}");
    assert_eq!(r.frames, "3");
    assert!(
        r.start_time.is_some() && r.completion_time.is_some(),
        "{r:?}"
    );
    assert!(mtime(3)? > three, "frame 3 was not rendered again");
    assert_eq!(mtime(1)?, one, "frame 1 was rendered again");
    ensure!(
        pixels_of(&st, "listed", 3, 1)? > 64 * 36 * 9 / 10,
        "frame 3 is CamGreen's"
    );
    Ok(())
}

/// Multilayer EXR of two view layers: the status lists the passes the first frame holds,
/// each layer's own.
#[tokio::test]
#[ignore = "needs the kind lane (hack/kind.sh up) and hack/blender.sh 4.5"]
async fn multilayer_exr_passes_are_in_status() -> Result<()> {
    let client = kind_client().await?;
    let st = Storage::new(client).await?;
    make_production_scene(&st)?;
    let extra =
        json!({"viewLayers": ["Beauty", "RedOnly"], "output": {"format": "OPEN_EXR_MULTILAYER"}});
    let rj = render_production(&st, "layered", extra).await?;
    let s = rj.status.ok_or_else(|| anyhow!("no status"))?;
    for pass in [
        "Beauty.Combined",
        "Beauty.Depth",
        "Beauty.Normal",
        "RedOnly.Combined",
        "RedOnly.Mist",
    ] {
        assert!(
            s.passes.iter().any(|p| p == pass),
            "{pass} not in {:?}",
            s.passes
        );
    }
    Ok(())
}
