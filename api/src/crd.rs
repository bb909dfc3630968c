//! The `RenderJob` custom resource (`renderfarm.io/v1alpha1`).
//!
//! Validation lives in the schema and in CEL rules so the API server refuses a bad RenderJob
//! with a message a user understands; nothing half-valid is ever stored.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use render_contract::{BlankFrames, Device, Engine, MissingFiles, OutputFormat, PreviewCodec};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::nodes::{BlockedNode, NodeFault, UnblockedNode};

/// Blender's largest frame number (`MAXFRAME`); Blender's frame range starts at 0.
pub const MAX_FRAME: i32 = 1_048_574;
/// Most batches one RenderJob may plan: each batch is a Job, and a RenderJob must never flood
/// the cluster with objects. Raise `batchSize` for longer renders.
pub const MAX_BATCHES: i64 = 10_000;
/// Most failed batches listed in status; the count is always exact.
pub const MAX_FAILED_BATCHES_LISTED: usize = 20;

/// A Blender render: a .blend file, a frame range cut into batches, one Kubernetes Job per batch.
// The derive takes one `printcolumn(...)` per column.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "renderfarm.io",
    version = "v1alpha1",
    kind = "RenderJob",
    namespaced,
    status = "RenderJobStatus",
    shortname = "rj",
    category = "renderfarm",
    derive = "PartialEq",
    doc = "A Blender render: a .blend file and a frame range, rendered as one Kubernetes Job per batch of frames.",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Where the render is"
    ),
    printcolumn(
        name = "Progress",
        type_ = "string",
        json_path = ".status.progress",
        description = "Frames rendered, in percent"
    ),
    printcolumn(
        name = "Frames",
        type_ = "string",
        json_path = ".status.framesSummary",
        description = "Frames rendered/total"
    ),
    printcolumn(
        name = "Batches",
        type_ = "string",
        json_path = ".status.batchesSummary",
        description = "Batches succeeded/total"
    ),
    printcolumn(
        name = "Queued",
        type_ = "integer",
        json_path = ".status.batches.queued",
        priority = 1,
        description = "Batches held by a queue (Kueue) or suspended by someone else"
    ),
    printcolumn(
        name = "ETA",
        type_ = "date",
        json_path = ".status.estimatedCompletionTime",
        priority = 1,
        description = "Estimated completion time"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
// Keep the number in step with MAX_BATCHES (a test checks).
#[x_kube(validation = Rule::new(
    // Guarded: a zero step or batch size has its own message and must not divide by zero here.
    // A list's batches are counted by the operator, which plans it (none past 10000).
    "has(self.frames.list) || self.frames.step <= 0 || self.batchSize <= 0 || ((self.frames.end - self.frames.start) / self.frames.step + self.batchSize) / self.batchSize <= 10000"
).message("this frame range and batchSize would make more than 10000 batches (one Job each); raise batchSize")
.field_path(".batchSize"))]
#[serde(rename_all = "camelCase")]
pub struct RenderJobSpec {
    /// Path of the .blend file, relative to the storage mount (for example `scenes/shot1.blend`).
    /// Immutable.
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(
        validation = Rule::new("!self.startsWith('/') && !self.split('/').exists(p, p == '..')")
            .message("blendFile must be a relative path inside the storage volume, without '..'"),
        validation = Rule::new("self == oldSelf").message("blendFile is immutable")
    )]
    pub blend_file: String,

    /// The frames to render. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("frames are immutable"))]
    pub frames: FrameRange,

    /// Frames per batch; each batch is one Kubernetes Job with one Blender start. Immutable.
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1, max = 100000))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("batchSize is immutable"))]
    pub batch_size: i32,

    /// How many batch Jobs may run at once; the rest wait their turn.
    #[serde(default = "default_parallelism")]
    #[schemars(range(min = 1, max = 1000))]
    pub parallelism: i32,

    /// Start each batch's pod ahead of its turn, while the batch before it renders its last
    /// frames (once a first batch has saved a frame: its pod turns Ready then, by a TCP startup
    /// probe on the port render-node opens): pod start, Blender's start and the scene load then
    /// overlap that render, and the
    /// pod renders the moment that batch's Blender is done. Never more than `parallelism`
    /// batches render at once, but up to twice as many pods exist (a waiting pod holds its
    /// resource requests and the loaded scene's memory). A pod started ahead that the
    /// scheduler cannot place (no node has room) is withdrawn at once, before a cluster
    /// autoscaler would add a node for it, and the render starts nothing ahead for 30 s, twice
    /// that after each withdrawal in a row (at most 10 minutes): on a full cluster batches
    /// start as they would without it. Turn off when memory or quota is tight and frames are
    /// long.
    #[serde(default = "default_true")]
    pub start_ahead: bool,

    /// Where and how frames are written. Immutable.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("output is immutable"))]
    pub output: Output,

    /// Blender render engine.
    #[serde(default)]
    pub engine: Engine,

    /// Compute device. GPU backends request one GPU per batch pod (`nvidia.com/gpu` for CUDA and
    /// OPTIX, `amd.com/gpu` for HIP) and tolerate that resource's taint.
    #[serde(default)]
    pub device: Device,

    /// Render on the CPU when the requested GPU is not present instead of failing the batch.
    #[serde(default)]
    pub allow_cpu_fallback: bool,

    /// Render threads per batch pod (0: one per CPU Blender sees).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1024))]
    pub threads: Option<i32>,

    /// The volume holding .blend files and rendered frames, mounted in every batch pod. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("storage is immutable"))]
    pub storage: Storage,

    /// The Blender version to render with (`4.5`, `5.0`): one the cluster offers (the chart's
    /// `blender.images`); defaults to the operator's default version. A .blend saved by a newer
    /// Blender fails as bad input and says which version to set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 16), regex(pattern = r"^[0-9]+\.[0-9]+$"))]
    pub blender_version: Option<String>,

    /// What to do when the scene uses external files (textures, linked libraries, caches,
    /// fonts) that are not in the volume: `Fail` (default) fails the render as bad input
    /// listing them; `Warn` renders anyway (missing images come out magenta) and publishes a
    /// Warning Event with the list.
    #[serde(default)]
    pub missing_files: MissingFiles,

    /// The scene of the .blend file to render (default: the one the file has active). A
    /// scene the file does not have fails the render as bad input, listing those it has
    /// (`kubectl render submit --list FILE` shows them). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("scene is immutable"))]
    pub scene: Option<String>,

    /// The camera object to render through (default: the scene's camera; timeline markers
    /// bound to cameras are then ignored). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("camera is immutable"))]
    pub camera: Option<String>,

    /// The view layers to render (default: those the file marks for rendering). With
    /// `OPEN_EXR_MULTILAYER` each layer's passes go into the frame's file. Immutable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 64),
        extend(
            "x-kubernetes-list-type" = "set",
            "items" = {"type": "string", "minLength": 1, "maxLength": 255}
        )
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("viewLayers are immutable"))]
    pub view_layers: Vec<String>,

    /// How each saved frame is checked before it counts (it must decode, have the scene's
    /// size and, in EXR, hold no NaN or Inf in Combined; a frame failing twice fails its
    /// batch as `BadFrame`).
    #[serde(default, skip_serializing_if = "Verify::is_default")]
    pub verify: Verify,

    /// Keep the scene's data (BVH, textures) loaded between the frames of a batch (Blender's
    /// persistent data): later frames skip the scene sync, at the cost of the memory it
    /// holds. Used for batches of more than one frame.
    #[serde(default = "default_true")]
    pub persistent_data: bool,

    /// Frames of the finished render to render again in place, overwriting them, without
    /// touching the others (`kubectl render rerender NAME --frames 12,40-42`). Each request
    /// (`serial`) is rendered once, by one Job, once no batch is running; `status.rerenders`
    /// says when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerender: Option<Rerender>,

    /// Node image override (defaults to the operator's configured render-node image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// CPU, memory and GPU requests and limits of each batch pod. Defaults to requests of one
    /// CPU and 1Gi of memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Node labels a batch pod requires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,

    /// Taints batch pods tolerate (for example a GPU node pool's taint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,

    /// Labels and annotations added to every batch pod (cost tags, workload identity, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_metadata: Option<PodMetadata>,

    /// Labels and annotations of the batch Jobs themselves (not their pods; see
    /// `podMetadata`), for admission controllers and policies that look at Jobs. Keys under
    /// `renderfarm.io/` and `kueue.x-k8s.io/` are the operator's and Kueue's (set the queue
    /// with `queueName`), and the operator's own labels are applied last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_metadata: Option<JobMetadata>,

    /// The PriorityClass of every batch pod. Kueue also takes a Workload's priority from it,
    /// so a higher class can preempt a lower one's batches in the same ClusterQueue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub priority_class_name: Option<String>,

    /// A Kueue LocalQueue in the RenderJob's namespace: batch Jobs get its
    /// `kueue.x-k8s.io/queue-name` label and are created suspended, and Kueue admits each by
    /// resuming it once the queue's quota allows. The operator never resumes a batch Job it did
    /// not suspend itself. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("queueName is immutable"))]
    pub queue_name: Option<String>,

    /// Retries of a failed batch before it counts as failed. Evictions and node loss are not
    /// counted; bad input (a missing or corrupt .blend) fails the batch at once.
    #[serde(default = "default_backoff_limit")]
    #[schemars(range(min = 0, max = 100))]
    pub backoff_limit: i32,

    /// Longest a batch may run, in seconds, before it fails as hung (DeadlineExceeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 604800))]
    pub active_deadline_seconds: Option<i64>,

    /// Pause the render: no new batches start and running batches are suspended (their pods
    /// stop). Set back to false to resume where it stopped; finished frames are kept.
    #[serde(default)]
    pub suspend: bool,

    /// What happens to finished batch Jobs.
    #[serde(default)]
    pub cleanup: Cleanup,

    /// The render fails, and no further batch starts, once this many batches have failed.
    /// A batch that fails on bad input (the .blend missing, unreadable or too new) fails the
    /// render at once: every batch shares that input.
    #[serde(default = "default_max_failed_batches")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_failed_batches: i32,

    /// Batch failures a node may cause (its storage read-only or unreachable, a GPU asked for
    /// and not usable, Blender killed by a signal, a frame failing its checks twice) before the
    /// render's later batches keep off it. A batch that failed so is retried on another node.
    #[serde(default = "default_node_failure_limit")]
    #[schemars(range(min = 1, max = 100))]
    pub node_failure_limit: i32,

    /// Nodes let back in after they were blocked (`kubectl render unblock NAME NODE`), each
    /// with the failures forgiven.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub unblocked_nodes: Vec<UnblockedNode>,

    /// The preview made once every batch succeeded: one more Job on the node image writes
    /// `preview.mp4` and `contact.jpg` beside the frames. A failed preview never fails the
    /// render.
    #[serde(default)]
    pub preview: Preview,
}

/// The preview video and contact sheet.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Preview {
    /// Make a preview once every frame is rendered (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Frames per second of the video.
    #[serde(default = "default_preview_fps")]
    #[schemars(range(min = 1, max = 120))]
    pub fps: i32,
    /// Width of the video in pixels; the height keeps the frames' aspect. Even: H.264 in
    /// yuv420p takes no odd width.
    #[serde(default = "default_preview_width")]
    #[schemars(range(min = 16, max = 7680))]
    #[x_kube(validation = Rule::new("self % 2 == 0").message("preview.width must be even"))]
    pub width: i32,
    /// `H264` (default, plays in every browser) or `VP9`.
    #[serde(default)]
    pub codec: PreviewCodec,
}

impl Default for Preview {
    fn default() -> Self {
        Preview {
            enabled: true,
            fps: default_preview_fps(),
            width: default_preview_width(),
            codec: PreviewCodec::default(),
        }
    }
}

/// A request to render frames again.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rerender {
    /// The frames, `12,40-42`: frames of the render.
    #[schemars(length(min = 1, max = 4096))]
    pub frames: String,
    /// Which request this is: a new request takes the next number (the plugin counts).
    #[schemars(range(min = 1))]
    pub serial: i64,
}

/// A request to render frames again, and how it went.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RerenderStatus {
    /// `spec.rerender.serial` of the request.
    pub serial: i64,
    /// Its frames, `12,40-42`.
    pub frames: String,
    pub state: RerenderState,
    /// When its Job was made, and when it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Why it failed, or what it waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Where a request to render frames again is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RerenderState {
    /// Waits for the render's batches to finish.
    Waiting,
    Running,
    Succeeded,
    Failed,
}

/// How saved frames are checked.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Verify {
    /// A frame of one flat colour: `Warn` (default; a fade to black is one) publishes a
    /// Warning Event `BlankFrame`; `Fail` fails the frame's check.
    #[serde(default)]
    pub blank_frames: BlankFrames,
}

impl Verify {
    fn is_default(&self) -> bool {
        *self == Verify::default()
    }
}

/// An inclusive frame range.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[x_kube(validation = Rule::new("self.end >= self.start").message("frames.end must be greater than or equal to frames.start"))]
#[serde(rename_all = "camelCase")]
pub struct FrameRange {
    /// First frame (0 to 1048574, Blender's range).
    #[schemars(range(min = 0, max = 1048574))]
    pub start: i32,
    /// Last frame, inclusive (0 to 1048574, at least `start`).
    #[schemars(range(min = 0, max = 1048574))]
    pub end: i32,
    /// Render every step-th frame from `start`.
    #[serde(default = "default_step")]
    #[schemars(range(min = 1, max = 1048574))]
    pub step: i32,
    /// Explicit frames instead of every step-th from `start` to `end`: frame numbers and
    /// strings of frames and ranges, `["1-10,15,20-30"]` or `[1, 2, "20-30"]`, rendered in
    /// increasing order, each once, planned into batches of `batchSize` as a range is. They
    /// must lie between `start` and `end` (`kubectl render submit --frames 1-10,15` sets
    /// both); `step` is not used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10000))]
    pub list: Vec<crate::frames::FrameItem>,
}

/// Where and how frames are written.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    /// Output path pattern relative to the storage mount; the last run of `#` in the file name
    /// becomes the zero-padded frame number and the format's extension is added. Defaults to
    /// `renders/<RenderJob name>/frame_####`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new("!self.startsWith('/') && !self.split('/').exists(p, p == '..')")
        .message("output.path must be a relative path inside the storage volume, without '..'"))]
    pub path: Option<String>,
    /// Image format Blender writes.
    #[serde(default)]
    pub format: OutputFormat,
}

/// The PersistentVolumeClaim with .blend files and output, mounted in every batch pod.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Storage {
    /// Name of a PersistentVolumeClaim in the RenderJob's namespace (ReadWriteMany when batches
    /// run on several nodes).
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: String,
    /// Where the claim is mounted in batch pods.
    #[serde(default = "default_mount_path")]
    #[schemars(length(min = 2, max = 256), regex(pattern = r"^/[^\x00]*$"))]
    #[x_kube(validation = Rule::new("self != '/tmp' && !self.startsWith('/tmp/') && self != '/'")
        .message("mountPath must not be / or under /tmp: batch pods keep their scratch space at /tmp"))]
    pub mount_path: String,
}

/// Labels and annotations for batch pods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema, Default)]
pub struct PodMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    // Values are checked here; keys only when the Job is applied (a CEL rule over every key
    // is over the API server's cost budget), and a refused Job shows in status at once.
    #[schemars(extend(
        "maxProperties" = 64,
        "additionalProperties" = {"type": "string", "maxLength": 63, "pattern": "^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$"}
    ))]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Labels and annotations for batch Jobs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema, Default)]
pub struct JobMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend(
        "maxProperties" = 16,
        "additionalProperties" = {"type": "string", "maxLength": 63, "pattern": "^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$"}
    ))]
    #[x_kube(validation = Rule::new(RESERVED_KEYS).message(RESERVED_MESSAGE))]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 16))]
    #[x_kube(validation = Rule::new(RESERVED_KEYS).message(RESERVED_MESSAGE))]
    pub annotations: BTreeMap<String, String>,
}

/// Key prefixes of batch Job labels and annotations that belong to the operator and to Kueue.
pub const RESERVED_PREFIXES: [&str; 2] = ["renderfarm.io/", "kueue.x-k8s.io/"];
const RESERVED_KEYS: &str =
    "self.all(k, !k.startsWith('renderfarm.io/') && !k.startsWith('kueue.x-k8s.io/'))";
const RESERVED_MESSAGE: &str =
    "keys under renderfarm.io/ and kueue.x-k8s.io/ are reserved: set the queue with spec.queueName";

/// What happens to batch Jobs once they are done.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Cleanup {
    /// `Keep` (default) leaves every batch Job for inspection. `DeleteSucceeded` deletes a
    /// batch's Job and pod once its success is recorded in status, which keeps long renders
    /// light on the cluster; failed Jobs are kept either way (delete one to retry its frames).
    #[serde(default)]
    pub policy: CleanupPolicy,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum CleanupPolicy {
    #[default]
    Keep,
    DeleteSucceeded,
}

fn default_batch_size() -> i32 {
    5
}
fn default_parallelism() -> i32 {
    10
}
fn default_backoff_limit() -> i32 {
    3
}
fn default_node_failure_limit() -> i32 {
    2
}
fn default_max_failed_batches() -> i32 {
    10
}
fn default_step() -> i32 {
    1
}
fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn default_true() -> bool {
    true
}
fn default_preview_fps() -> i32 {
    24
}
fn default_preview_width() -> i32 {
    640
}
fn default_mount_path() -> String {
    "/data".to_string()
}

/// Where a render is, for the printer column.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema, Default)]
pub enum Phase {
    /// Accepted; no batch pod is running yet.
    #[default]
    Pending,
    Running,
    Succeeded,
    /// Every batch ended and at least one failed after its retries.
    Failed,
    Suspended,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::Pending,
        Phase::Running,
        Phase::Succeeded,
        Phase::Failed,
        Phase::Suspended,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
            Phase::Suspended => "Suspended",
        }
    }
}

/// Observed state of a RenderJob, rolled up from its batch Jobs and their pods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct RenderJobStatus {
    #[serde(default)]
    pub phase: Phase,
    /// `Progressing`, `Complete`, `Failed`, `Suspended` (and `InvalidSpec` when the operator
    /// cannot plan the render).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Frames rendered, in percent (`40%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// `rendered/total` frames, for the printer column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames_summary: Option<String>,
    /// `succeeded/total` batches, for the printer column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batches_summary: Option<String>,
    #[serde(default)]
    pub frames: FrameCounts,
    #[serde(default)]
    pub batches: BatchCounts,
    #[serde(default)]
    pub pods: PodCounts,
    /// Batches known to have succeeded (`0-4,7`), kept so a deleted batch Job is never rendered
    /// twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub succeeded_batches: Option<String>,
    /// Failed batches (at most 20 listed; `batches.failed` is the full count).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_batches: Vec<FailedBatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Estimated completion, from the mean batch duration so far and the batches left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_completion_time: Option<Time>,
    /// Mean render time per frame reported by the batch pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_per_frame: Option<f64>,
    /// Devices Blender actually rendered on, as the batch pods reported them (proof of GPU use).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices_used: Vec<String>,
    /// Blender version the batch pods reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blender_version: Option<String>,
    /// The Blender that saved the .blend file (`major.minor`, from its header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_version: Option<String>,
    /// External files (images, libraries, caches, ...) the scene uses that the batch pods could
    /// not read, at most 20; `missingFilesCount` has them all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_files: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_files_count: Option<i64>,
    /// The passes the first frame checked holds (`ViewLayer.Pass`, multilayer EXR only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passes: Vec<String>,
    /// Frames of one flat colour (a Warning Event `BlankFrame` says so; at most 50 listed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blank_frames: Vec<i32>,
    /// Frames rendered again (`spec.rerender`), the latest request last (at most 20 kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rerenders: Vec<RerenderStatus>,
    /// The highest frame of the batch that finished most recently, and its thumbnail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_frame: Option<LastFrame>,
    /// The preview video and contact sheet made after the frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<PreviewStatus>,
    /// Nodes the render's later batches keep off: `spec.nodeFailureLimit` batch failures
    /// were theirs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked_nodes: Vec<BlockedNode>,
    /// Batch failures attributed to the node they ran on, oldest first (at most 200).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_faults: Vec<NodeFault>,
}

/// A rendered frame and its thumbnail, paths relative to the storage mount.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastFrame {
    pub frame: i32,
    /// The frame's file (`renders/shot/frame_0042.png`).
    pub file: String,
    /// Its thumbnail (`renders/shot/.thumbs/frame_0042.jpg`).
    pub thumbnail: String,
    /// When its batch's pod finished: a later batch's frame replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
}

/// Where the preview is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum PreviewState {
    /// The frames are not all rendered yet.
    #[default]
    Pending,
    Running,
    Ready,
    /// The preview Job failed (the render did not).
    Failed,
    /// `spec.preview.enabled` is false.
    Disabled,
}

impl PreviewState {
    pub fn as_str(self) -> &'static str {
        match self {
            PreviewState::Pending => "Pending",
            PreviewState::Running => "Running",
            PreviewState::Ready => "Ready",
            PreviewState::Failed => "Failed",
            PreviewState::Disabled => "Disabled",
        }
    }

    /// Ready or Failed: the preview Job has run and is not run again.
    pub fn finished(self) -> bool {
        matches!(self, PreviewState::Ready | PreviewState::Failed)
    }
}

/// The preview step's outcome; paths relative to the storage mount.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct PreviewStatus {
    pub state: PreviewState,
    /// The preview video (`renders/shot/preview.mp4`), once Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<String>,
    /// The contact sheet (`renders/shot/contact.jpg`), once Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_sheet: Option<String>,
    /// Frames in the video.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames: Option<i64>,
    /// The contact sheet's grid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<i64>,
    /// Why it failed, or what it waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct FrameCounts {
    pub total: i64,
    pub rendered: i64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct BatchCounts {
    pub total: i64,
    /// Not started yet (no Job, or waiting for a free slot).
    pub pending: i64,
    /// Job created and not finished.
    pub active: i64,
    /// Of the active, those whose Job is suspended by a queue (Kueue waiting for quota, or
    /// after preempting it) or by someone else: the operator leaves them alone until resumed.
    #[serde(default)]
    pub queued: i64,

    pub succeeded: i64,
    pub failed: i64,
}

/// Phases of the batch pods that exist now.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodCounts {
    pub pending: i64,
    pub running: i64,
    /// Running pods started ahead (`spec.startAhead`) that wait for the batch they follow:
    /// Blender loaded, not rendering yet. Not counted in `running`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub waiting: i64,
    pub succeeded: i64,
    pub failed: i64,
}

/// A batch that failed after its retries.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailedBatch {
    pub index: i64,
    /// The batch's frames (`11..15`).
    pub frames: String,
    pub job: String,
    /// Pods that failed for this batch.
    pub attempts: i64,
    /// `OOMKilled`, `BlenderError`, `BadInput`, `ImagePullBackOff`, `Unschedulable`,
    /// `DeadlineExceeded`, `BackoffLimitExceeded`, ...
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl RenderJob {
    /// The output pattern relative to the storage mount, with the default filled in.
    pub fn output_path(&self) -> String {
        match &self.spec.output.path {
            Some(p) => p.clone(),
            None => format!(
                "renders/{}/frame_####",
                self.metadata.name.as_deref().unwrap_or("render")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn crd_has_names_columns_and_rules() {
        let crd = RenderJob::crd();
        assert_eq!(crd.spec.names.short_names, Some(vec!["rj".to_string()]));
        assert_eq!(
            crd.spec.names.categories,
            Some(vec!["renderfarm".to_string()])
        );
        let v = &crd.spec.versions[0];
        let cols: Vec<&str> = v
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            cols,
            [
                "Phase", "Progress", "Frames", "Batches", "Queued", "ETA", "Age"
            ]
        );
        assert!(
            v.subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
        let json = serde_json::to_string(&crd).unwrap_or_default();
        let max_batches = format!("<= {MAX_BATCHES}");
        for rule in [
            "self.end >= self.start",
            "blendFile is immutable",
            "frames are immutable",
            "preview.width must be even",
            max_batches.as_str(),
        ] {
            assert!(json.contains(rule), "missing rule {rule}");
        }
    }

    #[test]
    fn defaults_fill_in() {
        let spec: RenderJobSpec = serde_json::from_value(serde_json::json!({
            "blendFile": "a.blend", "frames": {"start": 1, "end": 10}, "storage": {"claimName": "c"}
        }))
        .expect("minimal spec parses");
        assert_eq!(spec.batch_size, 5);
        assert_eq!(spec.backoff_limit, 3);
        assert_eq!(spec.frames.step, 1);
        assert_eq!(spec.storage.mount_path, "/data");
        assert_eq!(spec.output.format, OutputFormat::Png);
        assert_eq!(
            spec.preview,
            Preview {
                enabled: true,
                fps: 24,
                width: 640,
                codec: PreviewCodec::H264
            }
        );
        let rj = RenderJob::new("shot", spec);
        assert_eq!(rj.output_path(), "renders/shot/frame_####");
    }
}
