//! Batch → Job manifest: a pure function, so the same batch always yields the same Job.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement,
    PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, PersistentVolumeClaimVolumeSource,
    PodSecurityContext, PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile,
    SecurityContext, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use render_contract::args::WAIT_ISOLATED_ENV;
use render_contract::{Device, FrameSet, IsolationProbe, PreviewArgs, RenderArgs, exit};

use crate::crd::RenderJob;
use crate::plan::Batch;
use crate::{Error, Result};
// The keys and names the kubectl plugin shares, kept reachable here where the operator
// always found them.
pub use renderfarm_api::names::*;

/// Disruptions (evictions, preemptions, node loss) a batch may have before it fails as
/// `Evicted`, unless the operator is told otherwise (`--max-disruptions`): they do not count as
/// failures, but a batch that keeps getting evicted (filling its node's disk, say) must not
/// retry forever.
pub const MAX_DISRUPTIONS: usize = 5;
/// The preview step's program, on the node image's `PATH`.
pub const PREVIEW_COMMAND: &str = "render-preview";
/// Retries of a failed preview pod: ffmpeg on frames that are on disk seldom fails twice for
/// a reason that would pass the third time.
pub const PREVIEW_BACKOFF_LIMIT: i32 = 1;
/// Scratch space for Blender (temp files, config) under a read-only root filesystem.
pub const SCRATCH_DIR: &str = "/tmp";
/// Most the scratch space may hold: a batch that fills it is evicted on its own instead of
/// filling the node's disk and evicting its neighbours.
pub const SCRATCH_SIZE: &str = "8Gi";

/// Settings that come from the operator's configuration, not from the RenderJob.
#[derive(Debug, Clone)]
pub struct JobConfig {
    /// The render-node image of the default Blender version.
    pub image: String,
    pub image_pull_policy: Option<String>,
    /// Render-node images of other Blender versions, by version (`5.0`).
    pub images: BTreeMap<String, String>,
    /// The Blender version of a RenderJob that names none.
    pub default_version: String,
    /// Disruptions a batch may have before it fails as `Evicted`.
    pub max_disruptions: usize,
    /// Where batch pods wait, before Blender starts, until their NetworkPolicy is in force.
    pub isolation: Option<Isolation>,
}

/// The namespaces whose batch pods a NetworkPolicy isolates (`*`: every namespace), and what
/// render-node connects to there to learn that the policy is in force for its pod (an address
/// the policy blocks): a network plugin may judge a new pod's connections only a moment after
/// its container started.
#[derive(Debug, Clone, PartialEq)]
pub struct Isolation {
    pub namespaces: BTreeSet<String>,
    pub probe: IsolationProbe,
}

impl Isolation {
    /// Whether batch pods in `namespace` wait.
    pub fn covers(&self, namespace: &str) -> bool {
        self.namespaces.contains("*") || self.namespaces.contains(namespace)
    }
}

/// The Blender version the operator renders with when not told otherwise.
pub const DEFAULT_BLENDER_VERSION: &str = "4.5";

impl JobConfig {
    /// One render-node image, for the default Blender version.
    pub fn new(image: impl Into<String>) -> JobConfig {
        JobConfig {
            image: image.into(),
            image_pull_policy: None,
            images: BTreeMap::new(),
            default_version: DEFAULT_BLENDER_VERSION.to_string(),
            max_disruptions: MAX_DISRUPTIONS,
            isolation: None,
        }
    }

    /// The Blender versions offered, in order.
    pub fn offered(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.images.keys().map(String::as_str).collect();
        if !self.images.contains_key(&self.default_version) {
            v.push(&self.default_version);
        }
        v.sort_unstable();
        v
    }

    /// The render-node image for `rj`: its own `spec.image`, else its Blender version's; an
    /// error naming the offered versions when the operator offers not that version.
    pub fn image_for(&self, rj: &RenderJob) -> std::result::Result<String, String> {
        if let Some(image) = &rj.spec.image {
            return Ok(image.clone());
        }
        let version = rj
            .spec
            .blender_version
            .as_deref()
            .unwrap_or(&self.default_version);
        match self.images.get(version) {
            Some(image) => Ok(image.clone()),
            None if version == self.default_version => Ok(self.image.clone()),
            None => Err(format!(
                "blenderVersion {version} is not offered here; this cluster offers {}",
                self.offered().join(", ")
            )),
        }
    }
}

/// Tells whether a name is [`job_name`] of a RenderJob and batch without building the name:
/// a reconcile checks every Job of a render, 10,000 of them at most.
pub struct JobNames<'a> {
    renderjob: &'a str,
    /// The name's head for 4-digit indexes (every index a valid plan has).
    head: String,
}

impl<'a> JobNames<'a> {
    pub fn new(renderjob: &'a str) -> Self {
        JobNames {
            renderjob,
            head: short_name(renderjob, MAX_NAME - "-0000".len()),
        }
    }

    /// `name == job_name(renderjob, index)`.
    pub fn is(&self, name: &str, index: u32) -> bool {
        if index > 9999 {
            return name == job_name(self.renderjob, index);
        }
        let Some(suffix) = name.strip_prefix(self.head.as_str()) else {
            return false;
        };
        let digits = [1000, 100, 10, 1].map(|d| b'0' + (index / d % 10) as u8);
        suffix.len() == 5 && suffix.as_bytes()[0] == b'-' && suffix.as_bytes()[1..] == digits
    }
}

/// The arguments render-node gets for a batch.
pub fn render_args(rj: &RenderJob, batch: &Batch) -> RenderArgs {
    let mount = rj.spec.storage.mount_path.trim_end_matches('/');
    let mut args = RenderArgs::new(
        format!("{mount}/{}", rj.spec.blend_file),
        batch.frames(),
        format!("{mount}/{}", rj.output_path()),
    );
    args.format = rj.spec.output.format;
    args.engine = rj.spec.engine;
    args.device = rj.spec.device;
    args.missing_files = rj.spec.missing_files;
    args.allow_cpu_fallback = rj.spec.allow_cpu_fallback;
    args.threads = rj.spec.threads.unwrap_or(0).max(0) as u32;
    args
}

/// The extended resource a GPU device needs, if any.
pub fn gpu_resource(device: Device) -> Option<&'static str> {
    match device {
        Device::Cpu => None,
        Device::Cuda | Device::Optix => Some("nvidia.com/gpu"),
        Device::Hip => Some("amd.com/gpu"),
    }
}

fn resources(rj: &RenderJob) -> ResourceRequirements {
    let mut res = rj
        .spec
        .resources
        .clone()
        .unwrap_or_else(|| ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity("1".to_string())),
                ("memory".to_string(), Quantity("1Gi".to_string())),
            ])),
            ..Default::default()
        });
    if let Some(gpu) = gpu_resource(rj.spec.device) {
        let limits = res.limits.get_or_insert_with(BTreeMap::new);
        limits
            .entry(gpu.to_string())
            .or_insert_with(|| Quantity("1".to_string()));
    }
    res
}

fn tolerations(rj: &RenderJob) -> Option<Vec<Toleration>> {
    let mut tolerations = rj.spec.tolerations.clone().unwrap_or_default();
    // GPU nodes are usually tainted with their resource's name (what the ExtendedResourceToleration
    // admission plugin would add), so a GPU batch tolerates it.
    if let Some(gpu) = gpu_resource(rj.spec.device)
        && !tolerations.iter().any(|t| t.key.as_deref() == Some(gpu))
    {
        tolerations.push(Toleration {
            key: Some(gpu.to_string()),
            operator: Some("Exists".to_string()),
            effect: Some("NoSchedule".to_string()),
            ..Default::default()
        });
    }
    (!tolerations.is_empty()).then_some(tolerations)
}

/// Labels every Job and pod of `rj` carries, batch or preview, with `component` the one of
/// [`BATCH_COMPONENT`] and [`PREVIEW_COMPONENT`] it is: the chart's NetworkPolicy for batch pods
/// selects both.
fn common_labels(rj: &RenderJob, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "renderfarm".to_string(),
        ),
        (COMPONENT_LABEL.to_string(), component.to_string()),
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
        (RENDERJOB_LABEL.to_string(), renderjob_label(&rj.name_any())),
    ])
}

/// Labels every batch Job and pod of `rj` carries.
pub fn labels(rj: &RenderJob, batch: &Batch) -> BTreeMap<String, String> {
    let mut labels = common_labels(rj, BATCH_COMPONENT);
    labels.extend([
        (BATCH_LABEL.to_string(), batch.index.to_string()),
        (
            FRAMES_LABEL.to_string(),
            format!("{}-{}", batch.first, batch.last),
        ),
    ]);
    labels
}

/// Labels of the preview Job and its pod: no batch label.
pub fn preview_labels(rj: &RenderJob) -> BTreeMap<String, String> {
    let mut labels = common_labels(rj, PREVIEW_COMPONENT);
    labels.insert(STEP_LABEL.to_string(), PREVIEW_STEP.to_string());
    labels
}

/// A Job's metadata: the user's `jobMetadata` first, then ours, which win, and the queue's
/// label when the render names a queue.
fn job_metadata(
    rj: &RenderJob,
    name: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    owner: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
) -> ObjectMeta {
    // The API server refuses reserved keys in `jobMetadata`; they are dropped here too, so that
    // one never marks a preview Job as a batch.
    let user = |m: Option<&BTreeMap<String, String>>| -> BTreeMap<String, String> {
        m.into_iter()
            .flatten()
            .filter(|(k, _)| {
                !crate::crd::RESERVED_PREFIXES
                    .iter()
                    .any(|p| k.starts_with(p))
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let meta = rj.spec.job_metadata.as_ref();
    let mut job_labels = user(meta.map(|m| &m.labels));
    job_labels.extend(labels);
    let mut job_annotations = user(meta.map(|m| &m.annotations));
    job_annotations.extend(annotations);
    if let Some(queue) = &rj.spec.queue_name {
        job_labels.insert(QUEUE_LABEL.to_string(), queue.clone());
    }
    ObjectMeta {
        name: Some(name),
        namespace: rj.namespace(),
        labels: Some(job_labels),
        annotations: (!job_annotations.is_empty()).then_some(job_annotations),
        owner_references: Some(vec![owner]),
        ..Default::default()
    }
}

/// The RenderJob as the controller owner of its Jobs.
fn owner(rj: &RenderJob) -> Result<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
    let mut owner = rj
        .controller_owner_ref(&())
        .ok_or(Error::MissingObjectKey("metadata.uid"))?;
    // The garbage collector deletes Jobs before their RenderJob when it is deleted in the foreground.
    owner.block_owner_deletion = Some(true);
    Ok(owner)
}

/// The name of batch `index`'s handoff marker (render-node's `--marker`): the RenderJob's
/// UID makes a marker left by an earlier RenderJob of the same name never count.
pub fn marker_name(rj: &RenderJob, index: u32) -> String {
    format!("{}{index}", marker_prefix(rj))
}

/// What the names of `rj`'s markers start with: the preview step removes them.
pub fn marker_prefix(rj: &RenderJob) -> String {
    let id = rj.metadata.uid.clone().unwrap_or_else(|| rj.name_any());
    format!("{id}-")
}

/// The Job that renders `batch` of `rj`.
pub fn build(rj: &RenderJob, batch: &Batch, config: &JobConfig, suspend: bool) -> Result<Job> {
    build_after(rj, batch, config, suspend, None)
}

/// The Job that renders `batch` of `rj`; with `after`, started ahead: its pod loads the scene
/// and renders once batch `after` is done.
pub fn build_after(
    rj: &RenderJob,
    batch: &Batch,
    config: &JobConfig,
    suspend: bool,
    after: Option<u32>,
) -> Result<Job> {
    let name = rj.name_any();
    let owner = owner(rj)?;
    let labels = labels(rj, batch);
    let mut annotations = BTreeMap::from([(FRAMES_ANNOTATION.to_string(), batch.frames_label())]);
    let mut args = render_args(rj, batch);
    if rj.spec.start_ahead {
        // Every batch keeps a marker: any may get a follower once it runs.
        args.marker = Some(marker_name(rj, batch.index));
        if let Some(h) = after {
            args.after = Some(marker_name(rj, h));
            annotations.insert(AFTER_ANNOTATION.to_string(), h.to_string());
        }
    }
    let mut container = container(rj, config, None, args.to_args(), resources(rj));
    container.env = isolation_env(rj, config);
    let template = PodTemplateSpec {
        metadata: Some(pod_metadata(rj, &labels, &annotations)),
        spec: Some(pod_spec(rj, container)),
    };
    // Kueue expects a queued Job to be created suspended; it admits it by resuming it.
    let suspend = suspend || rj.spec.queue_name.is_some();
    Ok(Job {
        metadata: job_metadata(rj, job_name(&name, batch.index), labels, annotations, owner),
        spec: Some(JobSpec {
            backoff_limit: Some(rj.spec.backoff_limit),
            active_deadline_seconds: rj.spec.active_deadline_seconds,
            completions: Some(1),
            parallelism: Some(1),
            suspend: Some(suspend),
            // A replacement pod starts only once the failed one is gone: never two Blenders
            // writing the same frames.
            pod_replacement_policy: Some("Failed".to_string()),
            pod_failure_policy: Some(failure_policy()),
            template,
            ..Default::default()
        }),
        status: None,
    })
}

/// render-node's [`WAIT_ISOLATED_ENV`] in a namespace whose batch pods a NetworkPolicy
/// isolates. A variable, not a flag: an older image (`spec.image`) ignores it instead of
/// refusing to start.
fn isolation_env(rj: &RenderJob, config: &JobConfig) -> Option<Vec<EnvVar>> {
    let isolation = config.isolation.as_ref()?;
    let namespace = rj.namespace()?;
    isolation.covers(&namespace).then(|| {
        vec![EnvVar {
            name: WAIT_ISOLATED_ENV.to_string(),
            value: Some(isolation.probe.to_string()),
            value_from: None,
        }]
    })
}

/// `render-preview`'s arguments for `rj`: every frame of the render, as written.
pub fn preview_args(rj: &RenderJob) -> PreviewArgs {
    let mount = rj.spec.storage.mount_path.trim_end_matches('/');
    let f = &rj.spec.frames;
    let frames = FrameSet::Range {
        start: f.start,
        end: f.end,
        step: f.step.max(1) as u32,
    };
    let p = &rj.spec.preview;
    let mut args = PreviewArgs::new(
        format!("{mount}/{}", rj.output_path()),
        rj.spec.output.format,
        frames,
    );
    args.fps = p.fps.max(1) as u32;
    args.width = p.width.max(2) as u32;
    args.codec = p.codec;
    args.markers = Some(marker_prefix(rj));
    args
}

/// The preview Job of `rj`: `render-preview` from the same node image, with the batch pods'
/// restricted pod spec and mounts (the output directory writable, the rest of the claim
/// read-only), no GPU.
pub fn build_preview(rj: &RenderJob, config: &JobConfig) -> Result<Job> {
    let labels = preview_labels(rj);
    let annotations = BTreeMap::new();
    let container = container(
        rj,
        config,
        Some(vec![PREVIEW_COMMAND.to_string()]),
        preview_args(rj).to_args(),
        preview_resources(rj),
    );
    let mut spec = pod_spec(rj, container);
    // ffmpeg needs no GPU: the GPU pool's taint is not tolerated for it.
    spec.tolerations = rj.spec.tolerations.clone();
    let name = preview_job_name(&rj.name_any());
    Ok(Job {
        // Queued like the batches: a cluster that admits only queued Jobs admits it too.
        metadata: job_metadata(rj, name, labels.clone(), BTreeMap::new(), owner(rj)?),
        spec: Some(JobSpec {
            backoff_limit: Some(PREVIEW_BACKOFF_LIMIT),
            active_deadline_seconds: rj.spec.active_deadline_seconds,
            completions: Some(1),
            parallelism: Some(1),
            suspend: Some(rj.spec.queue_name.is_some()),
            // Never two ffmpegs writing the same preview.mp4.
            pod_replacement_policy: Some("Failed".to_string()),
            pod_failure_policy: Some(disruptions_ignored()),
            template: PodTemplateSpec {
                metadata: Some(pod_metadata(rj, &labels, &annotations)),
                spec: Some(spec),
            },
            ..Default::default()
        }),
        status: None,
    })
}

/// The batch pods' requests and limits without GPUs.
fn preview_resources(rj: &RenderJob) -> ResourceRequirements {
    let mut res = resources(rj);
    let gpus = [Device::Cuda, Device::Hip].map(gpu_resource);
    for map in [res.requests.as_mut(), res.limits.as_mut()]
        .into_iter()
        .flatten()
    {
        map.retain(|k, _| !gpus.contains(&Some(k.as_str())));
    }
    res.limits = res.limits.filter(|l| !l.is_empty());
    res.requests = res.requests.filter(|r| !r.is_empty());
    res
}

/// The user's pod labels and annotations, then ours, which win.
fn pod_metadata(
    rj: &RenderJob,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> ObjectMeta {
    let user = rj.spec.pod_metadata.as_ref();
    let mut pod_labels = user.map(|m| m.labels.clone()).unwrap_or_default();
    pod_labels.extend(labels.clone());
    let mut pod_annotations = user.map(|m| m.annotations.clone()).unwrap_or_default();
    pod_annotations.extend(annotations.clone());
    pod_annotations.insert(RENDERJOB_ANNOTATION.to_string(), rj.name_any());
    ObjectMeta {
        labels: Some(pod_labels),
        annotations: Some(pod_annotations),
        ..Default::default()
    }
}

/// The directory of an output pattern inside the claim, without empty or `.` parts
/// (`renders/shot` for `renders/shot/frame_####` and `./renders//shot/`); `None` when frames
/// go to the claim's top level.
fn output_dir(output_path: &str) -> Option<String> {
    let (dir, _) = output_path.rsplit_once('/')?;
    let parts: Vec<&str> = dir
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// The claim read-only, and only the render's output directory writable (the same claim
/// again, by `subPath`): a scene cannot change other scenes or other renders' frames. The
/// kubelet creates a missing output directory, owned by root with the claim root's mode.
/// Frames at the claim's top level leave the whole claim writable: there is no smaller
/// directory to give them.
fn storage_mounts(rj: &RenderJob) -> Vec<VolumeMount> {
    let root = &rj.spec.storage.mount_path;
    let Some(dir) = output_dir(&rj.output_path()) else {
        return vec![VolumeMount {
            name: "storage".to_string(),
            mount_path: root.clone(),
            ..Default::default()
        }];
    };
    vec![
        VolumeMount {
            name: "storage".to_string(),
            mount_path: root.clone(),
            read_only: Some(true),
            ..Default::default()
        },
        VolumeMount {
            name: "storage".to_string(),
            mount_path: format!("{}/{dir}", root.trim_end_matches('/')),
            sub_path: Some(dir),
            ..Default::default()
        },
    ]
}

/// The container: render-node (or `command`) with `args`, non-root, read-only root.
fn container(
    rj: &RenderJob,
    config: &JobConfig,
    command: Option<Vec<String>>,
    args: Vec<String>,
    resources: ResourceRequirements,
) -> Container {
    let mount = |name: &str, path: &str| VolumeMount {
        name: name.to_string(),
        mount_path: path.to_string(),
        ..Default::default()
    };
    Container {
        name: CONTAINER.to_string(),
        // The reconcile refuses a RenderJob whose version is not offered before building Jobs.
        image: Some(
            config
                .image_for(rj)
                .unwrap_or_else(|_| config.image.clone()),
        ),
        image_pull_policy: config.image_pull_policy.clone(),
        command,
        args: Some(args),
        resources: Some(resources),
        volume_mounts: Some(
            storage_mounts(rj)
                .into_iter()
                .chain([mount("scratch", SCRATCH_DIR)])
                .collect(),
        ),
        // The kubelet keeps render-node's JSON summary; the log tail if it crashed before writing it.
        termination_message_policy: Some("FallbackToLogsOnError".to_string()),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_string()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// One render container, no service account token, the storage claim and scratch space.
fn pod_spec(rj: &RenderJob, container: Container) -> PodSpec {
    PodSpec {
        restart_policy: Some("Never".to_string()),
        containers: vec![container],
        node_selector: rj.spec.node_selector.clone(),
        tolerations: tolerations(rj),
        priority_class_name: rj.spec.priority_class_name.clone(),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(NODE_UID),
            run_as_group: Some(NODE_UID),
            fs_group: Some(NODE_UID),
            // Where the volume applies fsGroup, the kubelet would otherwise change the group
            // of every frame on the claim at each batch pod's start: seconds per batch.
            fs_group_change_policy: Some("OnRootMismatch".to_string()),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_string(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volumes: Some(vec![
            Volume {
                name: "storage".to_string(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: rj.spec.storage.claim_name.clone(),
                    read_only: Some(false),
                }),
                ..Default::default()
            },
            Volume {
                name: "scratch".to_string(),
                empty_dir: Some(EmptyDirVolumeSource {
                    size_limit: Some(Quantity(SCRATCH_SIZE.to_string())),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ]),
        ..Default::default()
    }
}

/// Evictions, preemption and node loss are not the render's fault.
fn disruption_rule() -> PodFailurePolicyRule {
    PodFailurePolicyRule {
        action: "Ignore".to_string(),
        on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
            type_: "DisruptionTarget".to_string(),
            status: "True".to_string(),
        }]),
        on_exit_codes: None,
    }
}

/// Disruptions are not failures (the preview's policy).
fn disruptions_ignored() -> PodFailurePolicy {
    PodFailurePolicy {
        rules: vec![disruption_rule()],
    }
}

/// Disruptions are not failures; bad input fails the batch at once.
fn failure_policy() -> PodFailurePolicy {
    PodFailurePolicy {
        rules: vec![
            disruption_rule(),
            // A missing or corrupt .blend will not fix itself on retry.
            PodFailurePolicyRule {
                action: "FailJob".to_string(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: Some(CONTAINER.to_string()),
                    operator: "In".to_string(),
                    values: vec![exit::BAD_INPUT],
                }),
                on_pod_conditions: None,
            },
            // Stopped by SIGTERM: its Job suspended (a pause, Kueue preempting it) or its pod
            // deleted. The Job controller counts a pod deleted that way as failed unless told
            // otherwise, and a batch preempted a few times would fail. A hung batch still
            // fails: the deadline fails the Job itself.
            PodFailurePolicyRule {
                action: "Ignore".to_string(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: Some(CONTAINER.to_string()),
                    operator: "In".to_string(),
                    values: vec![exit::TERMINATED],
                }),
                on_pod_conditions: None,
            },
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{FrameRange, RenderJobSpec};
    use crate::plan::Plan;
    use proptest::prelude::*;

    fn renderjob(name: &str, device: Device) -> RenderJob {
        let spec: RenderJobSpec = serde_json::from_value(serde_json::json!({
            "blendFile": "scenes/shot.blend",
            "frames": {"start": 1, "end": 22},
            "storage": {"claimName": "render-storage"},
            "device": device,
            "backoffLimit": 2,
            "activeDeadlineSeconds": 600,
            "nodeSelector": {"pool": "render"},
        }))
        .expect("spec parses");
        let mut rj = RenderJob::new(name, spec);
        rj.metadata.namespace = Some("studio".into());
        rj.metadata.uid = Some("0b1c2d3e-0000-4000-8000-000000000001".into());
        rj
    }

    fn config() -> JobConfig {
        JobConfig {
            image_pull_policy: Some("IfNotPresent".into()),
            ..JobConfig::new("renderfarm/render-node:dev")
        }
    }

    #[test]
    fn blender_versions_pick_their_image() {
        let mut config = config();
        config
            .images
            .insert("5.0".into(), "renderfarm/render-node:5.0".into());
        let mut rj = renderjob("shot", Device::Cpu);
        assert_eq!(
            config.image_for(&rj).as_deref(),
            Ok("renderfarm/render-node:dev")
        );
        rj.spec.blender_version = Some("5.0".into());
        assert_eq!(
            config.image_for(&rj).as_deref(),
            Ok("renderfarm/render-node:5.0")
        );
        let job = build(&rj, &batch(&rj, 0), &config, false).expect("job builds");
        let pod = job.spec.and_then(|s| s.template.spec).expect("pod");
        assert_eq!(
            pod.containers[0].image.as_deref(),
            Some("renderfarm/render-node:5.0")
        );
        rj.spec.blender_version = Some("3.4".into());
        assert_eq!(
            config.image_for(&rj),
            Err("blenderVersion 3.4 is not offered here; this cluster offers 4.5, 5.0".into())
        );
        rj.spec.image = Some("my/blender:3.4".into());
        assert_eq!(
            config.image_for(&rj).as_deref(),
            Ok("my/blender:3.4"),
            "spec.image wins"
        );
    }

    fn batch(rj: &RenderJob, index: u32) -> Batch {
        Plan::new(&rj.spec.frames, rj.spec.batch_size)
            .and_then(|p| p.batch(index))
            .expect("batch exists")
    }

    #[test]
    fn job_renders_the_batch_with_the_contract_arguments() {
        let rj = renderjob("shot-010", Device::Cpu);
        let job = build(&rj, &batch(&rj, 2), &config(), false).expect("job builds");
        assert_eq!(job.metadata.name.as_deref(), Some("shot-010-0002"));
        assert_eq!(job.metadata.namespace.as_deref(), Some("studio"));
        let owner = &job.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("RenderJob", "shot-010")
        );
        assert_eq!(
            (owner.controller, owner.block_owner_deletion),
            (Some(true), Some(true))
        );
        let labels = job.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels.get(FRAMES_LABEL).map(String::as_str), Some("11-15"));
        assert_eq!(labels.get(BATCH_LABEL).map(String::as_str), Some("2"));

        let spec = job.spec.as_ref().expect("spec");
        assert_eq!(spec.backoff_limit, Some(2));
        assert_eq!(spec.active_deadline_seconds, Some(600));
        let pod = spec.template.spec.as_ref().expect("pod spec");
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(
            pod.node_selector
                .as_ref()
                .and_then(|n| n.get("pool"))
                .map(String::as_str),
            Some("render")
        );
        let c = &pod.containers[0];
        let args = c.args.clone().unwrap_or_default();
        let parsed =
            RenderArgs::try_parse_from_args(&args).expect("render-node accepts the arguments");
        assert_eq!(parsed.blend_file.to_str(), Some("/data/scenes/shot.blend"));
        assert_eq!(parsed.frames.frames(), vec![11, 12, 13, 14, 15]);
        assert_eq!(parsed.output, "/data/renders/shot-010/frame_####");

        let rules = &spec.pod_failure_policy.as_ref().expect("policy").rules;
        assert_eq!(rules[0].action, "Ignore");
        assert_eq!(
            rules[1].on_exit_codes.as_ref().map(|r| r.values.clone()),
            Some(vec![exit::BAD_INPUT])
        );
        assert_eq!(
            (
                rules[2].action.as_str(),
                rules[2].on_exit_codes.as_ref().map(|r| r.values.clone())
            ),
            ("Ignore", Some(vec![exit::TERMINATED])),
            "a suspended or preempted batch is no failure"
        );

        // Restricted pod security.
        let psc = pod.security_context.as_ref().expect("pod security context");
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(
            psc.fs_group_change_policy.as_deref(),
            Some("OnRootMismatch")
        );
        assert_eq!(
            psc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
            Some("RuntimeDefault")
        );
        let sc = c
            .security_context
            .as_ref()
            .expect("container security context");
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(
            sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
            Some(vec!["ALL".to_string()])
        );
        assert!(
            c.resources
                .as_ref()
                .and_then(|r| r.limits.as_ref())
                .is_none(),
            "no GPU for CPU renders"
        );
    }

    #[test]
    fn gpu_batches_ask_for_a_gpu_and_tolerate_its_taint() {
        let rj = renderjob("gpu", Device::Optix);
        let job = build(&rj, &batch(&rj, 0), &config(), false).expect("job builds");
        let pod = job.spec.and_then(|s| s.template.spec).expect("pod spec");
        let limits = pod.containers[0]
            .resources
            .as_ref()
            .and_then(|r| r.limits.clone())
            .unwrap_or_default();
        assert_eq!(limits.get("nvidia.com/gpu"), Some(&Quantity("1".into())));
        let tol = pod.tolerations.unwrap_or_default();
        assert!(
            tol.iter()
                .any(|t| t.key.as_deref() == Some("nvidia.com/gpu"))
        );
    }

    #[test]
    fn the_preview_job_runs_render_preview_like_a_batch_without_being_one() {
        let mut rj = renderjob("shot-010", Device::Optix);
        rj.spec.frames.step = 3;
        rj.spec.preview.fps = 12;
        rj.spec.preview.width = 320;
        rj.spec.preview.codec = render_contract::PreviewCodec::Vp9;
        let job = build_preview(&rj, &config()).expect("preview job builds");
        assert_eq!(job.metadata.name.as_deref(), Some("shot-010-preview"));
        assert_eq!(
            job,
            build_preview(&rj, &config()).expect("again"),
            "deterministic"
        );
        let labels = job.metadata.labels.clone().expect("labels");
        assert_eq!(labels.get(STEP_LABEL).map(String::as_str), Some("preview"));
        assert_eq!(
            labels.get(RENDERJOB_LABEL).map(String::as_str),
            Some("shot-010")
        );
        assert_eq!(
            labels.get(MANAGED_BY_LABEL).map(String::as_str),
            Some(MANAGED_BY)
        );
        assert_eq!(
            labels
                .get("app.kubernetes.io/component")
                .map(String::as_str),
            Some("render-preview"),
            "a component of its own: nothing that selects batch pods takes it for one"
        );
        assert!(!labels.contains_key(BATCH_LABEL) && !labels.contains_key(FRAMES_LABEL));
        let owner = &job.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("RenderJob", Some(true))
        );

        let spec = job.spec.as_ref().expect("spec");
        assert_eq!(spec.backoff_limit, Some(PREVIEW_BACKOFF_LIMIT));
        assert_eq!(spec.pod_replacement_policy.as_deref(), Some("Failed"));
        let template_labels = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        assert_eq!(
            template_labels.get(STEP_LABEL).map(String::as_str),
            Some("preview")
        );
        assert_eq!(
            template_labels.get(COMPONENT_LABEL).map(String::as_str),
            Some("render-preview")
        );
        assert!(!template_labels.contains_key(BATCH_LABEL));
        let annotations = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.clone())
            .unwrap_or_default();
        assert_eq!(
            annotations.get(RENDERJOB_ANNOTATION).map(String::as_str),
            Some("shot-010")
        );
        let pod = spec.template.spec.as_ref().expect("pod spec");
        let c = &pod.containers[0];
        assert_eq!(c.command, Some(vec![PREVIEW_COMMAND.to_string()]));
        assert_eq!(c.image.as_deref(), Some("renderfarm/render-node:dev"));
        let args = PreviewArgs::try_parse_from_args(&c.args.clone().unwrap_or_default())
            .expect("render-preview accepts the arguments");
        assert_eq!(args.output, "/data/renders/shot-010/frame_####");
        assert_eq!(args.frames.frames(), vec![1, 4, 7, 10, 13, 16, 19, 22]);
        assert_eq!(
            (args.fps, args.width, args.codec),
            (12, 320, render_contract::PreviewCodec::Vp9)
        );
        // The markers of the render's batches, by the prefix of their names.
        let prefix = args.markers.expect("--markers");
        assert!(marker_name(&rj, 3).starts_with(&prefix), "{prefix}");
        assert!(prefix.ends_with('-') && prefix.len() > 1, "{prefix}");

        // The batches' pod spec, mounts and security, but no GPU and no GPU toleration.
        let batch_job = build(&rj, &batch(&rj, 0), &config(), false).expect("batch");
        let batch_pod = batch_job
            .spec
            .and_then(|s| s.template.spec)
            .expect("batch pod");
        assert_eq!(pod.security_context, batch_pod.security_context);
        assert_eq!(pod.volumes, batch_pod.volumes);
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(pod.node_selector, batch_pod.node_selector);
        let bc = &batch_pod.containers[0];
        assert_eq!(c.name, bc.name);
        assert_eq!(c.security_context, bc.security_context);
        assert_eq!(c.volume_mounts, bc.volume_mounts);
        assert_eq!(c.termination_message_policy, bc.termination_message_policy);
        assert!(
            c.resources
                .as_ref()
                .and_then(|r| r.limits.as_ref())
                .is_none(),
            "no GPU for ffmpeg"
        );
        assert_eq!(pod.tolerations, None);
        assert_eq!(preview_job_name(&"x".repeat(80)).len(), 63);
        assert!(preview_job_name(&"x".repeat(80)).ends_with("-preview"));
    }

    /// Whether `selector` (a NetworkPolicy's `podSelector`) selects a pod with `labels`.
    fn selects(
        selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
        labels: &BTreeMap<String, String>,
    ) -> bool {
        let exact = selector
            .match_labels
            .iter()
            .flatten()
            .all(|(k, v)| labels.get(k) == Some(v));
        let expressions = selector.match_expressions.iter().flatten().all(|e| {
            let value = labels.get(&e.key);
            let listed = value.is_some_and(|v| e.values.iter().flatten().any(|x| x == v));
            match e.operator.as_str() {
                "In" => listed,
                "NotIn" => !listed,
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                other => panic!("operator {other}"),
            }
        });
        exact && expressions
    }

    #[test]
    fn batch_and_preview_pods_are_components_of_their_own_both_isolated_by_the_chart() {
        let rj = renderjob("shot", Device::Cpu);
        let batch_labels = labels(&rj, &batch(&rj, 0));
        let preview_labels = preview_labels(&rj);
        let component = |l: &BTreeMap<String, String>| l.get(COMPONENT_LABEL).cloned();
        assert_eq!(component(&batch_labels).as_deref(), Some("render-batch"));
        assert_eq!(
            component(&preview_labels).as_deref(),
            Some("render-preview")
        );
        // The chart's podSelector is plain YAML between the templating around it.
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../charts/renderfarm/templates/batch-networkpolicy.yaml"
        );
        let template = std::fs::read_to_string(path).expect("the chart's batch NetworkPolicy");
        let block = template
            .split_once("  podSelector:\n")
            .and_then(|(_, rest)| rest.split_once("  policyTypes:"))
            .map(|(block, _)| block)
            .expect("a podSelector before policyTypes");
        let selector = serde_yaml::from_str(block).expect("the podSelector is a LabelSelector");
        assert!(selects(&selector, &batch_labels), "{selector:?}");
        assert!(
            selects(&selector, &preview_labels),
            "the preview pod reads the same claim and must be isolated too: {selector:?}"
        );
        // kubectl render's reader pods are no batch.
        let reader = BTreeMap::from([(COMPONENT_LABEL.to_string(), "reader".to_string())]);
        assert!(!selects(&selector, &reader), "{selector:?}");
    }

    #[test]
    fn the_same_batch_always_builds_the_same_job() {
        let rj = renderjob("shot", Device::Cpu);
        let a = build(&rj, &batch(&rj, 1), &config(), false).expect("job");
        let b = build(&rj, &batch(&rj, 1), &config(), false).expect("job");
        assert_eq!(a, b);
    }

    #[test]
    fn scratch_space_is_bounded_and_the_claim_mounted() {
        let rj = renderjob("shot", Device::Cpu);
        let job = build(&rj, &batch(&rj, 0), &config(), false).expect("job builds");
        let pod = job.spec.and_then(|s| s.template.spec).expect("pod spec");
        let volumes = pod.volumes.expect("volumes");
        let scratch = volumes
            .iter()
            .find(|v| v.name == "scratch")
            .expect("scratch");
        let limit = scratch
            .empty_dir
            .as_ref()
            .and_then(|e| e.size_limit.as_ref());
        assert_eq!(limit.map(|q| q.0.as_str()), Some(SCRATCH_SIZE));
        let storage = volumes
            .iter()
            .find(|v| v.name == "storage")
            .expect("storage");
        let claim = storage.persistent_volume_claim.as_ref().expect("claim");
        assert_eq!(claim.claim_name, "render-storage");
    }

    fn mounts(rj: &RenderJob) -> Vec<VolumeMount> {
        let job = build(rj, &batch(rj, 0), &config(), false).expect("job builds");
        let pod = job.spec.and_then(|s| s.template.spec).expect("pod spec");
        pod.containers[0].volume_mounts.clone().expect("mounts")
    }

    #[test]
    fn scenes_are_read_only_and_only_the_output_directory_writable() {
        let rj = renderjob("shot-010", Device::Cpu);
        let m = mounts(&rj);
        assert_eq!(m.len(), 3, "{m:?}");
        assert_eq!(
            (m[0].name.as_str(), m[0].mount_path.as_str()),
            ("storage", "/data")
        );
        assert_eq!(
            (m[0].read_only, m[0].sub_path.as_deref()),
            (Some(true), None)
        );
        assert_eq!(
            (m[1].name.as_str(), m[1].mount_path.as_str()),
            ("storage", "/data/renders/shot-010")
        );
        assert_eq!(m[1].sub_path.as_deref(), Some("renders/shot-010"));
        assert_ne!(m[1].read_only, Some(true));
        assert_eq!(
            (m[2].name.as_str(), m[2].mount_path.as_str()),
            ("scratch", SCRATCH_DIR)
        );

        let mut rj = renderjob("shot", Device::Cpu);
        rj.spec.output.path = Some("./out//a/./b/f_##".into());
        rj.spec.storage.mount_path = "/mnt/render/".into();
        let m = mounts(&rj);
        assert_eq!(m[0].mount_path, "/mnt/render/");
        assert_eq!(m[1].mount_path, "/mnt/render/out/a/b");
        assert_eq!(m[1].sub_path.as_deref(), Some("out/a/b"));

        // A trailing slash: Blender writes frames into that directory.
        rj.spec.output.path = Some("renders/shot/".into());
        assert_eq!(mounts(&rj)[1].sub_path.as_deref(), Some("renders/shot"));
    }

    #[test]
    fn frames_at_the_top_of_the_claim_keep_one_writable_mount() {
        let mut rj = renderjob("shot", Device::Cpu);
        for path in ["frame_####", "./frame_####", ".//frame"] {
            rj.spec.output.path = Some(path.into());
            let m = mounts(&rj);
            assert_eq!(m.len(), 2, "{path}: {m:?}");
            assert_eq!(m[0].mount_path, "/data");
            assert_eq!((m[0].read_only, m[0].sub_path.as_deref()), (None, None));
        }
    }

    proptest! {
        /// Every frame render-node writes lands in the writable mount, never beside it.
        #[test]
        fn frames_land_in_the_writable_mount(
            parts in proptest::collection::vec("[a-z#.]{0,3}", 0..5),
            name in "[a-z_]{0,4}#{0,4}",
            frame in 0i32..10000,
        ) {
            prop_assume!(!parts.iter().any(|p| p == ".."));
            let mut rj = renderjob("shot", Device::Cpu);
            let path = parts.iter().map(|p| format!("{p}/")).collect::<String>() + &name;
            rj.spec.output.path = Some(path.clone());
            let args = render_args(&rj, &batch(&rj, 0));
            let file = args.output_file(frame);
            let m = mounts(&rj);
            let writable: Vec<_> = m.iter().filter(|m| m.name == "storage" && m.read_only != Some(true)).collect();
            prop_assert_eq!(writable.len(), 1, "{:?}", m);
            let dir = std::path::Path::new(&file).parent().expect("a directory");
            prop_assert_eq!(
                dir.components().collect::<Vec<_>>(),
                std::path::Path::new(&writable[0].mount_path).components().collect::<Vec<_>>(),
                "{} writes {} outside {:?}", path, file, writable[0]
            );
        }
    }

    #[test]
    fn job_names_are_recognised_without_building_them() {
        for renderjob in ["shot", "shot.v2", &"x".repeat(70), &"y.".repeat(40)] {
            let names = JobNames::new(renderjob);
            for index in [0, 7, 42, 999, 1000, 9999, 10_000, 123_456] {
                let name = job_name(renderjob, index);
                assert!(names.is(&name, index), "{name} {index}");
                assert!(!names.is(&name, index + 1), "{name} {}", index + 1);
                assert!(!names.is(&format!("{name}0"), index));
                assert!(!names.is(&name[1..], index));
            }
        }
        assert!(!JobNames::new("shot").is("shot-00", 0));
        assert!(!JobNames::new("shot").is("shot+0000", 0));
        assert!(!JobNames::new("shot").is("shot.v2-0000", 0));
    }

    proptest! {
        #[test]
        fn job_names_are_dns_labels(name in "[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?", index in 0u32..10000) {
            let n = job_name(&name, index);
            prop_assert!(n.len() <= 63, "{} too long", n);
            prop_assert!(n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
            prop_assert!(n.starts_with(|c: char| c.is_ascii_alphanumeric()));
            prop_assert!(n.ends_with(|c: char| c.is_ascii_alphanumeric()));
            let l = renderjob_label(&name);
            prop_assert!(l.len() <= 63);
            prop_assert!(JobNames::new(&name).is(&n, index));
            prop_assert!(!JobNames::new(&name).is(&n, (index + 1) % 10000));
        }
    }

    #[test]
    fn stepped_batches_pass_the_step() {
        let mut rj = renderjob("s", Device::Cpu);
        rj.spec.frames = FrameRange {
            start: 1,
            end: 30,
            step: 2,
        };
        let job = build(&rj, &batch(&rj, 1), &config(), false).expect("job");
        let args = job
            .spec
            .and_then(|s| s.template.spec)
            .map(|p| p.containers[0].args.clone().unwrap_or_default());
        let parsed = RenderArgs::try_parse_from_args(&args.unwrap_or_default()).expect("parses");
        assert_eq!(parsed.frames.frames(), vec![11, 13, 15, 17, 19]);
    }

    #[test]
    fn a_queue_name_labels_the_job_and_creates_it_suspended() {
        let mut rj = renderjob("q", Device::Cpu);
        let job = build(&rj, &batch(&rj, 0), &config(), false).expect("job");
        let labels = job.metadata.labels.clone().unwrap_or_default();
        assert!(!labels.contains_key(QUEUE_LABEL));
        assert_eq!(job.spec.and_then(|s| s.suspend), Some(false));

        rj.spec.queue_name = Some("artists".into());
        rj.spec.priority_class_name = Some("urgent".into());
        rj.spec.job_metadata = Some(crate::crd::JobMetadata {
            labels: BTreeMap::from([
                ("team".to_string(), "fx".to_string()),
                (BATCH_LABEL.to_string(), "99".to_string()),
            ]),
            annotations: BTreeMap::from([("cost".to_string(), "shot-1".to_string())]),
        });
        let job = build(&rj, &batch(&rj, 0), &config(), false).expect("job");
        let labels = job.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get(QUEUE_LABEL).map(String::as_str), Some("artists"));
        assert_eq!(labels.get("team").map(String::as_str), Some("fx"));
        assert_eq!(
            labels.get(BATCH_LABEL).map(String::as_str),
            Some("0"),
            "ours win, reserved keys are dropped"
        );
        let annotations = job.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(annotations.get("cost").map(String::as_str), Some("shot-1"));
        let spec = job.spec.expect("spec");
        assert_eq!(spec.suspend, Some(true), "Kueue admits it by resuming it");
        let pod = spec.template.spec.expect("pod");
        assert_eq!(pod.priority_class_name.as_deref(), Some("urgent"));
        let pod_labels = spec
            .template
            .metadata
            .and_then(|m| m.labels)
            .unwrap_or_default();
        assert!(
            !pod_labels.contains_key("team"),
            "Job labels stay on the Job"
        );

        // The preview step waits in the same queue, with the same labels and priority.
        let preview = build_preview(&rj, &config()).expect("preview job");
        let labels = preview.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get(QUEUE_LABEL).map(String::as_str), Some("artists"));
        assert_eq!(labels.get("team").map(String::as_str), Some("fx"));
        assert!(!labels.contains_key(BATCH_LABEL));
        let spec = preview.spec.expect("spec");
        assert_eq!(spec.suspend, Some(true));
        let pod = spec.template.spec.expect("pod");
        assert_eq!(pod.priority_class_name.as_deref(), Some("urgent"));
    }

    #[test]
    fn batch_pods_wait_for_isolation_only_where_a_policy_isolates_them() {
        let env_of = |job: Job| {
            let pod = job.spec.and_then(|s| s.template.spec).expect("pod");
            pod.containers[0].env.clone().unwrap_or_default()
        };
        let rj = renderjob("shot", Device::Cpu);
        let mut config = config();
        assert!(env_of(build(&rj, &batch(&rj, 0), &config, false).expect("job")).is_empty());
        for namespaces in [vec!["studio"], vec!["other", "studio"], vec!["*"]] {
            config.isolation = Some(Isolation {
                namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
                probe: IsolationProbe::ApiServer,
            });
            let env = env_of(build(&rj, &batch(&rj, 1), &config, false).expect("job"));
            assert_eq!(env.len(), 1, "{namespaces:?}: {env:?}");
            assert_eq!(env[0].name, WAIT_ISOLATED_ENV);
            let value = env[0].value.as_deref().unwrap_or_default();
            assert_eq!(value.parse(), Ok(IsolationProbe::ApiServer), "{value}");
            // Not as a flag: an older image would refuse it.
            let args = args_of(build(&rj, &batch(&rj, 1), &config, false).expect("job"));
            assert!(!args.iter().any(|a| a.contains("isolat")), "{args:?}");
        }
        let addr = "192.0.2.7:8443".parse().expect("address");
        config.isolation = Some(Isolation {
            namespaces: ["other".to_string()].into(),
            probe: IsolationProbe::Addr(addr),
        });
        assert!(env_of(build(&rj, &batch(&rj, 0), &config, false).expect("job")).is_empty());
        config.isolation = Some(Isolation {
            namespaces: ["studio".to_string()].into(),
            probe: IsolationProbe::Addr(addr),
        });
        let env = env_of(build(&rj, &batch(&rj, 0), &config, false).expect("job"));
        assert_eq!(env[0].value.as_deref(), Some("192.0.2.7:8443"));
        // The preview runs ffmpeg on frames, no scene: it does not wait.
        assert!(env_of(build_preview(&rj, &config).expect("preview")).is_empty());
    }

    fn args_of(job: Job) -> Vec<String> {
        let pod = job.spec.and_then(|s| s.template.spec).expect("pod");
        pod.containers[0].args.clone().unwrap_or_default()
    }
}
