//! What one reconcile costs, and what the caches hold, as the number of batches grows; no
//! cluster needed. The Jobs and pods are the API server's own (`fixtures/`, a batch Job and its
//! pod as `kubectl get --show-managed-fields -o json` returned them), copied once per batch,
//! decoded and kept in kube's reflector stores as the operator's watches keep them.
//!
//! One reconcile here is the controller's work without the API calls: pick the RenderJob's Jobs
//! and pods out of the stores and work out the effects (`reconcile::decide`: batch states,
//! actions, status roll-up, comparison with the status last written, Events, requeue). The world is a render near its end: every Job created, the last
//! `PARALLELISM` batches running, the others succeeded.
//!
//!   cargo run --release -p renderfarm --example reconcile_cost [BATCHES...]   (100 1000 10000)
//!
//! `--reconciles K BATCHES` builds the world and runs K reconciles, printing nothing: the
//! difference between the instructions of two such runs (callgrind, or `perf stat`) divided by
//! the difference in K is what one reconcile costs, world building excluded
//! (`bench/reconcile-cost.sh` does that).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::reflector::store::{Store, Writer};
use kube::runtime::watcher;
use renderfarm::cache::{self, BatchJob, BatchPod};
use renderfarm::crd::{RenderJob, RenderJobSpec, RenderJobStatus};
use renderfarm::job::{self, JobConfig, job_name};
use renderfarm::reconcile::{self, Input};
use renderfarm::state::RenderState;
use renderfarm::watched::{WatchedJob, WatchedPod};
use serde_json::{Value, json};

const PARALLELISM: u32 = 50;
const NAMESPACE: &str = "bench";
const NAME: &str = "shot";
/// The owner UID in the fixtures.
const UID: &str = "dba0d389-0bbd-4f05-bccc-6193edea917c";

/// Counts the heap in use as glibc lays it out: a 16-byte-aligned chunk with an 8-byte header
/// per allocation, 32 bytes at least.
struct Counting;
static FOOTPRINT: AtomicUsize = AtomicUsize::new(0);

fn footprint(size: usize) -> usize {
    ((size + 8 + 15) & !15).max(32)
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout is passed on as it came.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            FOOTPRINT.fetch_add(footprint(layout.size()), Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        FOOTPRINT.fetch_sub(footprint(layout.size()), Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            FOOTPRINT.fetch_add(footprint(new_size), Relaxed);
            FOOTPRINT.fetch_sub(footprint(layout.size()), Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Batch Job and pod texts as the API server sends them, finished or still running, with
/// `@NAME@`, `@BATCH@` and `@UID@` to fill in per batch.
struct Templates {
    job: [String; 2],
    pod: [String; 2],
}

impl Templates {
    fn new() -> Self {
        let fixture = |text: &str| -> Value { serde_json::from_str(text).expect("fixture") };
        let mut job = fixture(include_str!("fixtures/job.json"));
        job["metadata"]["name"] = json!("@NAME@");
        job["metadata"]["uid"] = json!("00000000-0000-4000-8000-@UID@");
        job["metadata"]["labels"][job::BATCH_LABEL] = json!("@BATCH@");
        let mut running_job = job.clone();
        running_job["status"] = json!({"active": 1, "ready": 1,
            "startTime": "2026-11-23T11:02:09Z", "terminating": 0, "uncountedTerminatedPods": {}});

        let text = include_str!("fixtures/pod.json").replace("shot-0000", "@NAME@");
        let mut pod = fixture(&text);
        pod["metadata"]["uid"] = json!("00000000-0000-4000-9000-@UID@");
        // Owned by its batch's Job, as the Job controller makes it.
        pod["metadata"]["ownerReferences"][0]["uid"] = json!("00000000-0000-4000-8000-@UID@");
        pod["metadata"]["labels"][job::BATCH_LABEL] = json!("@BATCH@");
        let mut running_pod = pod.clone();
        let status = &mut running_pod["status"];
        status["phase"] = json!("Running");
        status["containerStatuses"][0]["state"] =
            json!({"running": {"startedAt": "2026-11-23T11:02:10Z"}});
        status["containerStatuses"][0]["ready"] = json!(true);
        status["containerStatuses"][0]["started"] = json!(true);
        Templates {
            job: [running_job.to_string(), job.to_string()],
            pod: [running_pod.to_string(), pod.to_string()],
        }
    }

    fn fill(template: &str, i: u32) -> String {
        template
            .replace("@NAME@", &job_name(NAME, i))
            .replace("@BATCH@", &i.to_string())
            .replace("@UID@", &format!("{i:012}"))
    }

    /// Batch `i`'s Job: finished, or still running.
    fn job(&self, i: u32, done: bool) -> Job {
        serde_json::from_str(&Self::fill(&self.job[usize::from(done)], i)).expect("job")
    }

    /// Batch `i`'s pod: Succeeded, or Running.
    fn pod(&self, i: u32, done: bool) -> Pod {
        serde_json::from_str(&Self::fill(&self.pod[usize::from(done)], i)).expect("pod")
    }
}

struct World {
    rj: RenderJob,
    jobs: Store<BatchJob>,
    pods: Store<BatchPod>,
    /// Kept alive: the stores belong to them.
    _writers: (Writer<BatchJob>, Writer<BatchPod>),
    /// What the operator remembers: the status it last wrote, a while ago.
    state: RenderState,
    /// glibc's footprint of the Job store and of the pod store, bytes.
    bytes: (usize, usize),
}

fn world(n: u32) -> World {
    let templates = Templates::new();
    let spec: RenderJobSpec = serde_json::from_value(json!({
        "blendFile": "scenes/bench.blend", "frames": {"start": 1, "end": n}, "batchSize": 1,
        "parallelism": PARALLELISM, "storage": {"claimName": "render-storage"},
    }))
    .expect("spec");
    let mut rj = RenderJob::new(NAME, spec);
    rj.metadata.namespace = Some(NAMESPACE.into());
    rj.metadata.uid = Some(UID.into());
    rj.metadata.generation = Some(1);

    let mut jw: Writer<BatchJob> = Writer::default();
    let mut pw: Writer<BatchPod> = Writer::default();
    let (mut job_bytes, mut pod_bytes) = (0, 0);
    for i in 0..n {
        let done = i + PARALLELISM < n;
        // Decoded from text like a watch event and kept as the operator's watches keep it;
        // what stays is the store's entry.
        let before = FOOTPRINT.load(Relaxed);
        let job = templates.job(i, done);
        jw.apply_watcher_event(&cache::compact(watcher::Event::Apply(job)));
        let middle = FOOTPRINT.load(Relaxed);
        let pod = templates.pod(i, done);
        pw.apply_watcher_event(&cache::compact(watcher::Event::Apply(pod)));
        job_bytes += middle - before;
        pod_bytes += FOOTPRINT.load(Relaxed) - middle;
    }
    let (jobs, pods) = (jw.as_reader(), pw.as_reader());
    let mut w = World {
        rj,
        jobs,
        pods,
        _writers: (jw, pw),
        state: RenderState::default(),
        bytes: (job_bytes, pod_bytes),
    };
    // The status last written is what this world rolls up to: the steady state, where a
    // reconcile compares everything and writes nothing.
    let steady = one_reconcile(&w).1.expect("a first status to write");
    let long_ago = Instant::now()
        .checked_sub(Duration::from_secs(10))
        .unwrap_or_else(Instant::now);
    w.state.written = Some((steady, long_ago));
    let again = one_reconcile(&w).0;
    assert!(
        again.is_empty(),
        "the steady state writes nothing: {again:?}"
    );
    w
}

/// One reconcile without the API calls: what `controller::reconcile` computes.
#[inline(never)]
fn one_reconcile(w: &World) -> (reconcile::Effects, Option<RenderJobStatus>) {
    let jobs = w.jobs.state_filter(|j| reconcile::owned_by(j, UID));
    let pods = w
        .pods
        .state_filter(|p| reconcile::pod_of(p, NAMESPACE, NAME));
    let input = Input {
        rj: &w.rj,
        jobs: &jobs,
        pods: &pods,
        synced: true,
        disrupted: &|_| 0,
        taken: &[],
        active: 1,
        finishing: 0.0,
        nodes: None,
    };
    let config = JobConfig::new("renderfarm/render-node:dev");
    let now = Time("2026-11-23T12:00:00Z".parse().expect("time"));
    let decision = reconcile::decide(&input, &w.state, &config, Instant::now(), &now);
    let fx = decision.expect("decide").effects;
    let status = fx.status.as_ref().map(|w| w.status.clone());
    (black_box(fx), status)
}

/// Mean microseconds to decode `text` as a `T`, then summarise it as the cache keeps it.
fn decode_us<T: serde::de::DeserializeOwned, C: From<T>>(text: &str) -> f64 {
    const ROUNDS: u32 = 20_000;
    let started = Instant::now();
    for _ in 0..ROUNDS {
        let object: T = serde_json::from_str(black_box(text)).expect("decode");
        black_box(C::from(object));
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(ROUNDS)
}

/// What one watch event costs the operator to decode: the whole object (k8s-openapi's `Job`
/// and `Pod`, managed fields and pod template included) against the fields the cache reads
/// (`renderfarm::watched`).
fn decoding() {
    let t = Templates::new();
    let (job, pod) = (Templates::fill(&t.job[1], 7), Templates::fill(&t.pod[1], 7));
    println!("decoding one watch event's object, then its summary for the cache (us)");
    println!(
        "{:>6} {:>7} {:>8} {:>8} {:>6}",
        "object", "bytes", "whole", "watched", "ratio"
    );
    for (name, text, whole, watched) in [
        (
            "Job",
            &job,
            decode_us::<Job, BatchJob>(&job),
            decode_us::<WatchedJob, BatchJob>(&job),
        ),
        (
            "pod",
            &pod,
            decode_us::<Pod, BatchPod>(&pod),
            decode_us::<WatchedPod, BatchPod>(&pod),
        ),
    ] {
        println!(
            "{name:>6} {:>7} {whole:>8.1} {watched:>8.1} {:>6.2}",
            text.len(),
            watched / whole
        );
    }
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut count = None;
    if args.first().is_some_and(|a| a == "--reconciles") && args.len() > 1 {
        count = Some(args[1].parse::<u32>().expect("a number of reconciles"));
        args.drain(..2);
    }
    let sizes: Vec<u32> = if args.is_empty() {
        vec![100, 1000, 10_000]
    } else {
        args.iter()
            .map(|a| a.parse().expect("a number of batches"))
            .collect()
    };
    if let Some(k) = count {
        for n in sizes {
            let w = world(n);
            for _ in 0..k {
                black_box(one_reconcile(&w));
            }
        }
        return;
    }
    decoding();
    println!();
    println!(
        "{:>8} {:>13} {:>13} {:>10} {:>10} {:>10}",
        "batches", "reconcile_us", "ns_per_batch", "cache_MiB", "B_per_job", "B_per_pod"
    );
    for n in sizes {
        let w = world(n);
        let rounds = (200_000 / n).clamp(5, 2000);
        let started = Instant::now();
        for _ in 0..rounds {
            black_box(one_reconcile(&w));
        }
        let each = started.elapsed().as_secs_f64() / f64::from(rounds);
        println!(
            "{n:>8} {:>13.1} {:>13.1} {:>10.1} {:>10} {:>10}",
            each * 1e6,
            each * 1e9 / f64::from(n),
            (w.bytes.0 + w.bytes.1) as f64 / 1048576.0,
            w.bytes.0 / n as usize,
            w.bytes.1 / n as usize,
        );
    }
}
