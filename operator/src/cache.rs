//! What the operator keeps of the Jobs and pods it watches: only what a reconcile reads.
//!
//! A k8s-openapi `Job` is 2.6 kB before a single field is set (its pod template is inline)
//! and a `Pod` 2.2 kB; with their strings, maps and conditions, 10,000 batch Jobs and their pods
//! held about 125 MiB even with managed fields and pod specs dropped. The watches decode each
//! object as it arrives and keep a [`BatchJob`] or [`BatchPod`] instead, a few hundred bytes
//! each: the pod's problems and render-node's report are worked out once, here, not on every
//! reconcile.

use std::borrow::Cow;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Resource;
use kube::runtime::reflector::Lookup;
use kube::runtime::watcher;

use crate::crd::RenderJob;
use crate::job::{
    AFTER_ANNOTATION, BATCH_LABEL, PAUSED_ANNOTATION, PREVIEW_STEP, QUEUE_LABEL,
    RENDERJOB_ANNOTATION, STEP_LABEL, STOPPED_ANNOTATION,
};
use crate::pod::{self, PodProblem};
use crate::watched::{WatchedJob, WatchedPod};

/// The controller owner of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub name: String,
    pub uid: String,
}

/// Why a Job failed: its `Failed` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFailure {
    pub reason: Option<String>,
    pub message: Option<String>,
    pub at: Option<Time>,
}

/// Whether a Job finished, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    /// Condition `Complete` is true.
    Complete,
    /// Condition `Failed` is true (and `Complete` is not).
    Failed(Box<JobFailure>),
}

/// A batch Job as the operator keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchJob {
    pub name: String,
    pub namespace: Option<String>,
    pub uid: Option<String>,
    /// What a delete sends as its precondition, with the UID: the server refuses it if the
    /// Job changed since this was seen.
    pub resource_version: Option<String>,
    /// Its controller, when that is a RenderJob.
    pub owner: Option<Owner>,
    /// The [`BATCH_LABEL`] label.
    pub batch: Option<u32>,
    pub suspended: bool,
    /// The operator suspended it itself (its [`PAUSED_ANNOTATION`]); only such a Job is resumed.
    pub paused: bool,
    /// It names a Kueue LocalQueue (the [`QUEUE_LABEL`] label): Kueue admits it.
    pub queued: bool,
    /// It has a deletion timestamp.
    pub deleting: bool,
    /// When it was created (`metadata.creationTimestamp`).
    pub created: Option<Time>,
    /// Why the operator stopped it (its [`STOPPED_ANNOTATION`]): `Evicted: …`.
    pub stopped: Option<String>,
    /// Started ahead, to render after this batch (its [`AFTER_ANNOTATION`]).
    pub after: Option<u32>,
    pub start_time: Option<Time>,
    pub completion_time: Option<Time>,
    /// The Job controller counts a pod of it as active (`status.active` above 0).
    pub active: bool,
    /// Failed pods so far (`status.failed`).
    pub failed: i32,
    pub finished: Option<Finished>,
}

/// A pod's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

/// What render-node reported in its termination message, as far as the status uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderReport {
    pub frames_rendered: u32,
    pub seconds_per_frame: Option<f64>,
    pub device: Option<String>,
    pub blender_version: Option<String>,
    /// The Blender that saved the .blend.
    pub file_version: Option<String>,
    /// External files the scene uses that were not readable (at most 20), and how many in all.
    pub missing_files: Vec<String>,
    pub missing_files_count: u32,
    /// The highest frame the batch saved.
    pub last_frame: Option<i32>,
    /// What the checks of its frames found (passes, flat frames, frames rendered again).
    pub checks: render_contract::FrameChecks,
}

/// A batch pod as the operator keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchPod {
    pub name: String,
    pub namespace: Option<String>,
    /// The [`RENDERJOB_ANNOTATION`]: the RenderJob's full name.
    pub renderjob: Option<String>,
    /// The [`BATCH_LABEL`] label.
    pub batch: Option<u32>,
    /// The UID of the Job that owns it: a pod counts for a batch only if its Job is the
    /// batch's Job now, not one deleted before or one another RenderJob owns.
    pub job_uid: Option<String>,
    pub phase: PodPhase,
    /// Why a pending pod cannot start ([`pod::stuck_reason`]).
    pub stuck: Option<Box<PodProblem>>,
    /// Why a failed pod failed ([`pod::failure_reason`]).
    pub failure: Option<Box<PodProblem>>,
    /// When its container finished.
    pub finished_at: Option<Time>,
    /// It carries a true `DisruptionTarget` condition (evicted, preempted, node lost).
    pub disruption: bool,
    /// The node it was bound to (`spec.nodeName`): a node fault counts against it. Boxed: a
    /// cache holds every batch pod.
    pub node: Option<Box<str>>,
    /// Seconds from its container's start to its first frame saved, while it runs
    /// ([`pod::first_frame_seconds`]): start ahead's estimate before any batch ended.
    pub first_frame_seconds: Option<std::num::NonZeroU32>,
    pub report: Option<Box<RenderReport>>,
    /// On the preview Job's pod: `render-preview`'s report.
    pub preview: Option<Box<render_contract::PreviewReport>>,
}

fn batch_label(meta: &ObjectMeta) -> Option<u32> {
    meta.labels.as_ref()?.get(BATCH_LABEL)?.parse().ok()
}

impl From<Job> for BatchJob {
    fn from(job: Job) -> Self {
        let batch = batch_label(&job.metadata);
        let meta = job.metadata;
        let owner = meta.owner_references.into_iter().flatten().find(|o| {
            o.controller == Some(true)
                && o.kind == <RenderJob as Resource>::kind(&())
                && o.api_version == <RenderJob as Resource>::api_version(&())
        });
        let status = job.status.unwrap_or_default();
        let condition = |type_: &str| {
            status
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == type_ && c.status == "True")
        };
        let finished = if condition("Complete").is_some() {
            Some(Finished::Complete)
        } else {
            condition("Failed").map(|c| {
                Finished::Failed(Box::new(JobFailure {
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                    at: c.last_transition_time.clone(),
                }))
            })
        };
        BatchJob {
            name: meta.name.unwrap_or_default(),
            namespace: meta.namespace,
            uid: meta.uid,
            resource_version: meta.resource_version,
            owner: owner.map(|o| Owner {
                name: o.name,
                uid: o.uid,
            }),
            batch,
            suspended: job.spec.and_then(|s| s.suspend).unwrap_or(false),
            paused: meta
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(PAUSED_ANNOTATION)),
            queued: meta
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key(QUEUE_LABEL)),
            deleting: meta.deletion_timestamp.is_some(),
            stopped: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(STOPPED_ANNOTATION))
                .cloned(),
            after: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(AFTER_ANNOTATION)?.parse().ok()),
            created: meta.creation_timestamp,
            start_time: status.start_time,
            completion_time: status.completion_time,
            active: status.active.unwrap_or(0) > 0,
            failed: status.failed.unwrap_or(0),
            finished,
        }
    }
}

impl From<WatchedJob> for BatchJob {
    fn from(job: WatchedJob) -> Self {
        Job::from(job).into()
    }
}

impl From<WatchedPod> for BatchPod {
    fn from(pod: WatchedPod) -> Self {
        Pod::from(pod).into()
    }
}

impl From<Pod> for BatchPod {
    fn from(pod: Pod) -> Self {
        let phase = match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
            Some("Pending") => PodPhase::Pending,
            Some("Running") => PodPhase::Running,
            Some("Succeeded") => PodPhase::Succeeded,
            Some("Failed") => PodPhase::Failed,
            _ => PodPhase::Unknown,
        };
        let is_preview = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(STEP_LABEL))
            .is_some_and(|s| s == PREVIEW_STEP);
        let preview = is_preview
            .then(|| pod::preview_report(&pod))
            .flatten()
            .map(Box::new);
        let report = pod::termination_message(&pod).map(|r| {
            let (m, scene) = (r.message, r.scene);
            Box::new(RenderReport {
                frames_rendered: m.frames_rendered,
                seconds_per_frame: m.seconds_per_frame,
                device: m.device,
                blender_version: m.blender_version,
                file_version: scene.file_version,
                missing_files: scene.missing_files,
                missing_files_count: scene.missing_files_count,
                last_frame: m.last_frame,
                checks: pod::frame_checks(&pod),
            })
        });
        let meta = &pod.metadata;
        BatchPod {
            renderjob: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(RENDERJOB_ANNOTATION))
                .cloned(),
            batch: batch_label(meta),
            job_uid: meta
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true) && o.kind == "Job")
                .map(|o| o.uid.clone()),
            phase,
            stuck: pod::stuck_reason(&pod).map(Box::new),
            failure: pod::failure_reason(&pod).map(Box::new),
            finished_at: pod::finished_at(&pod).map(Time),
            disruption: pod::is_disruption(&pod),
            node: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref().map(Box::from)),
            first_frame_seconds: pod::first_frame_seconds(&pod),
            report,
            preview,
            name: pod.metadata.name.unwrap_or_default(),
            namespace: pod.metadata.namespace,
        }
    }
}

/// Lets kube's reflector keep these in a store, keyed like the objects they come from (by
/// namespace and name: a store key's resource version and UID are informational, and not kept).
macro_rules! lookup {
    ($t:ty, $from:ty) => {
        impl Lookup for $t {
            type DynamicType = ();
            fn kind(_: &()) -> Cow<'_, str> {
                <$from as Resource>::kind(&())
            }
            fn group(_: &()) -> Cow<'_, str> {
                <$from as Resource>::group(&())
            }
            fn version(_: &()) -> Cow<'_, str> {
                <$from as Resource>::version(&())
            }
            fn plural(_: &()) -> Cow<'_, str> {
                <$from as Resource>::plural(&())
            }
            fn name(&self) -> Option<Cow<'_, str>> {
                Some(Cow::Borrowed(&self.name))
            }
            fn namespace(&self) -> Option<Cow<'_, str>> {
                self.namespace.as_deref().map(Cow::Borrowed)
            }
            fn resource_version(&self) -> Option<Cow<'_, str>> {
                None
            }
            fn uid(&self) -> Option<Cow<'_, str>> {
                None
            }
        }
    };
}
lookup!(BatchJob, Job);
lookup!(BatchPod, Pod);

/// The disrupted pods (evicted, preempted, node lost) seen of each batch Job, by the Job's
/// UID. Recorded as the watch events pass, since an evicted pod is deleted soon after and may
/// be gone from the cache before a reconcile looks.
#[derive(Debug, Default)]
pub struct Disruptions {
    seen: parking_lot::Mutex<std::collections::HashMap<String, std::collections::BTreeSet<String>>>,
}

impl Disruptions {
    pub fn record(&self, pod: &BatchPod) {
        if let (true, Some(uid)) = (pod.disruption, pod.job_uid.as_ref()) {
            self.seen
                .lock()
                .entry(uid.clone())
                .or_default()
                .insert(pod.name.clone());
        }
    }

    /// How many disrupted pods of the Job with `uid` were seen.
    pub fn count(&self, uid: &str) -> usize {
        self.seen.lock().get(uid).map_or(0, |p| p.len())
    }

    /// Forgets Jobs whose UID is not in `live`.
    pub fn retain(&self, live: &std::collections::HashSet<String>) {
        self.seen.lock().retain(|uid, _| live.contains(uid));
    }
}

/// A watch event with its object made small.
pub fn compact<K, C: From<K>>(event: watcher::Event<K>) -> watcher::Event<C> {
    use watcher::Event::*;
    match event {
        Apply(k) => Apply(k.into()),
        Delete(k) => Delete(k.into()),
        Init => Init,
        InitApply(k) => InitApply(k.into()),
        InitDone => InitDone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn fixture(text: &str) -> Value {
        serde_json::from_str(text).expect("fixture")
    }
    fn job(v: Value) -> BatchJob {
        serde_json::from_value::<Job>(v).expect("job").into()
    }
    fn pod(v: Value) -> BatchPod {
        serde_json::from_value::<Pod>(v).expect("pod").into()
    }
    fn time(s: &str) -> Option<Time> {
        Some(Time(s.parse().expect("time")))
    }

    #[test]
    fn sizes_stay_small() {
        // The point of this module: a Job is 2.6 kB and a Pod 2.2 kB before any heap.
        assert!(size_of::<BatchJob>() <= 288, "{}", size_of::<BatchJob>());
        assert!(size_of::<BatchPod>() <= 184, "{}", size_of::<BatchPod>());
    }

    #[test]
    fn a_complete_job_as_the_api_server_sends_it() {
        let j = job(fixture(include_str!("../examples/fixtures/job.json")));
        assert_eq!(
            j,
            BatchJob {
                name: "shot-0000".into(),
                namespace: Some("bench".into()),
                uid: Some("09337701-0a9c-4937-8cdf-ec15072d9597".into()),
                resource_version: Some("4687".into()),
                owner: Some(Owner {
                    name: "shot".into(),
                    uid: "dba0d389-0bbd-4f05-bccc-6193edea917c".into(),
                }),
                batch: Some(0),
                suspended: false,
                paused: false,
                queued: false,
                deleting: false,
                created: time("2026-11-23T11:02:09Z"),
                stopped: None,
                after: None,
                start_time: time("2026-11-23T11:02:09Z"),
                completion_time: time("2026-11-23T11:02:11Z"),
                active: false,
                failed: 0,
                finished: Some(Finished::Complete),
            }
        );
    }

    #[test]
    fn running_failed_suspended_and_foreign_jobs() {
        let mut v = fixture(include_str!("../examples/fixtures/job.json"));
        v["status"] = json!({"active": 1, "failed": 2, "startTime": "2026-11-23T11:02:09Z"});
        v["spec"]["suspend"] = json!(true);
        v["metadata"]["deletionTimestamp"] = json!("2026-11-23T11:03:00Z");
        let j = job(v.clone());
        assert_eq!(j.finished, None);
        assert_eq!((j.failed, j.suspended, j.deleting), (2, true, true));

        v["status"]["conditions"] = json!([
            {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded"},
            {"type": "Complete", "status": "False"},
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
             "message": "Job has reached the specified backoff limit",
             "lastTransitionTime": "2026-11-23T11:02:30Z"},
        ]);
        assert_eq!(
            job(v.clone()).finished,
            Some(Finished::Failed(Box::new(JobFailure {
                reason: Some("BackoffLimitExceeded".into()),
                message: Some("Job has reached the specified backoff limit".into()),
                at: time("2026-11-23T11:02:30Z"),
            })))
        );

        // Owned by something else, or not as controller: no owner.
        v["metadata"]["ownerReferences"][0]["kind"] = json!("CronJob");
        assert_eq!(job(v.clone()).owner, None);
        v["metadata"]["ownerReferences"][0]["kind"] = json!("RenderJob");
        v["metadata"]["ownerReferences"][0]["controller"] = json!(false);
        assert_eq!(job(v).owner, None);
    }

    #[test]
    fn a_succeeded_pod_as_the_api_server_sends_it() {
        let p = pod(fixture(include_str!("../examples/fixtures/pod.json")));
        assert_eq!(
            p,
            BatchPod {
                name: "shot-0000-mrjzv".into(),
                namespace: Some("bench".into()),
                renderjob: Some("shot".into()),
                batch: Some(0),
                job_uid: Some("09337701-0a9c-4937-8cdf-ec15072d9597".into()),
                phase: PodPhase::Succeeded,
                stuck: None,
                failure: None,
                finished_at: time("2026-11-23T11:02:10Z"),
                disruption: false,
                node: Some("kwok-node-0".into()),
                first_frame_seconds: None,
                report: None,
                preview: None,
            }
        );
    }

    #[test]
    fn a_running_pod_ready_since_its_first_frame_keeps_how_long_that_took() {
        let mut v = fixture(include_str!("../examples/fixtures/pod.json"));
        let running = |ready: Option<&str>| {
            let mut conditions = vec![json!({"type": "PodScheduled", "status": "True"})];
            if let Some(at) = ready {
                conditions
                    .push(json!({"type": "Ready", "status": "True", "lastTransitionTime": at}));
            }
            json!({"phase": "Running", "conditions": conditions, "containerStatuses": [{
                "name": "render-node", "ready": ready.is_some(), "restartCount": 0,
                "image": "i", "imageID": "", "started": ready.is_some(),
                "state": {"running": {"startedAt": "2026-11-23T11:02:04Z"}}}]})
        };
        v["status"] = running(Some("2026-11-23T11:02:11Z"));
        assert_eq!(pod(v.clone()).first_frame_seconds.map(u32::from), Some(7));
        // Not Ready yet; or Ready the second it started (no startup probe, or kwok).
        v["status"] = running(None);
        assert_eq!(pod(v.clone()).first_frame_seconds, None);
        v["status"] = running(Some("2026-11-23T11:02:04Z"));
        assert_eq!(pod(v.clone()).first_frame_seconds, None);
        // Ended: Ready no more, and nothing running.
        let done = pod(fixture(include_str!("../examples/fixtures/pod.json")));
        assert_eq!(done.first_frame_seconds, None);
    }

    #[test]
    fn pods_keep_their_problems_and_render_nodes_report() {
        let base = fixture(include_str!("../examples/fixtures/pod.json"));
        let report = render_contract::TerminationMessage {
            outcome: render_contract::Outcome::Succeeded,
            frames_rendered: 5,
            frames_skipped: 1,
            frames_missing: vec![],
            seconds_per_frame: Some(2.5),
            device: Some("OPTIX".into()),
            blender_version: Some("4.2.0".into()),
            last_frame: Some(12),
            message: None,
        };
        let mut v = base.clone();
        v["status"]["containerStatuses"][0]["state"]["terminated"]["message"] =
            json!(report.to_json_bounded());
        assert_eq!(
            pod(v).report.as_deref(),
            Some(&RenderReport {
                frames_rendered: 5,
                seconds_per_frame: Some(2.5),
                device: Some("OPTIX".into()),
                blender_version: Some("4.2.0".into()),
                file_version: None,
                missing_files: vec![],
                missing_files_count: 0,
                last_frame: Some(12),
                checks: render_contract::FrameChecks::default(),
            })
        );
        // The scene's facts beside the render's, as render-node 4.5 writes them.
        let mut v = base.clone();
        let full = render_contract::TerminationReport {
            message: report.clone(),
            scene: render_contract::SceneFacts {
                file_version: Some("4.5".into()),
                missing_files: vec!["/data/tex/wood.png".into()],
                missing_files_count: 1,
            },
        };
        v["status"]["containerStatuses"][0]["state"]["terminated"]["message"] =
            json!(full.to_json_bounded());
        let got = pod(v).report.expect("report");
        assert_eq!(got.file_version.as_deref(), Some("4.5"));
        assert_eq!((got.missing_files.len(), got.missing_files_count), (1, 1));

        let mut v = base.clone();
        v["status"]["phase"] = json!("Failed");
        v["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] = json!(137);
        v["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] = json!("OOMKilled");
        v["status"]["conditions"] = json!([{"type": "DisruptionTarget", "status": "True"}]);
        let p = pod(v);
        assert_eq!((p.phase, p.disruption), (PodPhase::Failed, true));
        assert_eq!(
            p.failure
                .as_deref()
                .map(|f| (f.reason.as_str(), f.exit_code)),
            Some(("OOMKilled", Some(137)))
        );

        let mut v = base;
        v["status"] = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
            "status": "False", "reason": "Unschedulable", "message": "0/4 nodes are available"}]});
        let p = pod(v);
        assert_eq!(p.phase, PodPhase::Pending);
        assert_eq!(
            p.stuck.as_deref().map(|s| s.reason.as_str()),
            Some("Unschedulable")
        );
        assert_eq!((p.failure, p.finished_at), (None, None));
    }

    #[test]
    fn events_keep_their_kind() {
        let j: Job = serde_json::from_value(fixture(include_str!("../examples/fixtures/job.json")))
            .expect("job");
        for (event, kind) in [
            (watcher::Event::Apply(j.clone()), "Apply"),
            (watcher::Event::Delete(j.clone()), "Delete"),
            (watcher::Event::InitApply(j), "InitApply"),
            (watcher::Event::Init, "Init"),
            (watcher::Event::InitDone, "InitDone"),
        ] {
            let small: watcher::Event<BatchJob> = compact(event);
            let got = match &small {
                watcher::Event::Apply(j) => ("Apply", Some(j)),
                watcher::Event::Delete(j) => ("Delete", Some(j)),
                watcher::Event::InitApply(j) => ("InitApply", Some(j)),
                watcher::Event::Init => ("Init", None),
                watcher::Event::InitDone => ("InitDone", None),
            };
            assert_eq!(got.0, kind);
            if let Some(j) = got.1 {
                assert_eq!(j.name, "shot-0000");
            }
        }
    }
}
