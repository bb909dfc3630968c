//! A batch's Job: its pod template (the render-node container, storage, security) and
//! `build`, a pure function, so the same batch always yields the same Job.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, PersistentVolumeClaimVolumeSource,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
    SecurityContext, TCPSocketAction, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use render_contract::args::WAIT_ISOLATED_ENV;
use render_contract::{Device, RenderArgs};

use super::meta::{job_metadata, labels, marker_name, owner, pod_metadata};
use super::policy::failure_policy;
use super::*;
use crate::Result;
use crate::crd::RenderJob;
use crate::plan::Batch;

/// Scratch space for Blender (temp files, config) under a read-only root filesystem.
pub const SCRATCH_DIR: &str = "/tmp";
/// Most the scratch space may hold: a batch that fills it is evicted on its own instead of
/// filling the node's disk and evicting its neighbours.
pub const SCRATCH_SIZE: &str = "8Gi";

/// The port render-node listens on once its first frame is saved (`--ready-port`).
pub const READY_PORT: u16 = 8642;
/// How often the kubelet dials it: the pod turns Ready at most this long after.
pub const READY_PROBE_SECONDS: i32 = 1;
/// The startup probe's failures before the kubelet would kill the container: a first frame
/// (with Blender's start, the scene's load and a wait for the batch followed) may take hours,
/// and must never be cut short by the probe, so about 115 days.
pub const READY_PROBE_FAILURES: i32 = 10_000_000;

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
    args.scene = rj.spec.scene.clone();
    args.camera = rj.spec.camera.clone();
    args.view_layers = rj.spec.view_layers.clone();
    args.blank_frames = rj.spec.verify.blank_frames;
    args.no_persistent_data = !rj.spec.persistent_data;
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

pub(super) fn resources(rj: &RenderJob) -> ResourceRequirements {
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
        args.ready_port = Some(READY_PORT);
        if let Some(h) = after {
            args.after = Some(marker_name(rj, h));
            annotations.insert(AFTER_ANNOTATION.to_string(), h.to_string());
        }
    }
    let mut container = container(rj, config, None, args.to_args(), resources(rj));
    container.env = isolation_env(rj, config);
    container.startup_probe = args.ready_port.map(first_frame_probe);
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

/// The Job that renders `frames` of a finished `rj` again, overwriting them, for request
/// `serial` (`spec.rerender`): a batch pod in all but its name, its labels (no batch label:
/// the plan's batches stay as they were; the batch component, so the batch NetworkPolicy
/// isolates it) and `--overwrite`.
pub fn build_rerender(
    rj: &RenderJob,
    frames: &[i32],
    serial: i64,
    config: &JobConfig,
) -> Result<Job> {
    // The roll-up asks only for frames a request names: none is a request without frames.
    let (Some(first), Some(last)) = (frames.first(), frames.last()) else {
        return Err(crate::Error::MissingObjectKey("spec.rerender.frames"));
    };
    let batch = Batch {
        index: 0,
        first: *first,
        last: *last,
        step: 1,
        listed: Some(frames.into()),
    };
    let mut labels = labels(rj, &batch);
    labels.remove(BATCH_LABEL);
    labels.insert(STEP_LABEL.to_string(), RERENDER_STEP.to_string());
    let annotations = BTreeMap::from([(FRAMES_ANNOTATION.to_string(), batch.frames_label())]);
    let mut args = render_args(rj, &batch);
    args.overwrite = true;
    let mut container = container(rj, config, None, args.to_args(), resources(rj));
    container.env = isolation_env(rj, config);
    let name = rerender_job_name(&rj.name_any(), serial);
    Ok(Job {
        metadata: job_metadata(rj, name, labels.clone(), annotations.clone(), owner(rj)?),
        spec: Some(JobSpec {
            backoff_limit: Some(rj.spec.backoff_limit),
            active_deadline_seconds: rj.spec.active_deadline_seconds,
            completions: Some(1),
            parallelism: Some(1),
            suspend: Some(rj.spec.queue_name.is_some()),
            pod_replacement_policy: Some("Failed".to_string()),
            pod_failure_policy: Some(failure_policy()),
            template: PodTemplateSpec {
                metadata: Some(pod_metadata(rj, &labels, &annotations)),
                spec: Some(pod_spec(rj, container)),
            },
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

/// Ready once render-node saved its first frame and listens on `port`: the earliest sign of
/// how long the batch takes, for start ahead. A TCP probe costs the node next to nothing (an
/// exec probe runs a process in the container each time), and NetworkPolicy lets a pod's own
/// node in. A startup probe, not a readiness probe: the kubelet stops once it succeeded.
fn first_frame_probe(port: u16) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(i32::from(port)),
            ..Default::default()
        }),
        period_seconds: Some(READY_PROBE_SECONDS),
        failure_threshold: Some(READY_PROBE_FAILURES),
        ..Default::default()
    }
}

/// The container: render-node (or `command`) with `args`, non-root, read-only root.
pub(super) fn container(
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
pub(super) fn pod_spec(rj: &RenderJob, container: Container) -> PodSpec {
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

#[cfg(test)]
mod selection_tests {
    use super::*;
    use crate::crd::RenderJobSpec;
    use render_contract::BlankFrames;

    fn render_job(extra: serde_json::Value) -> RenderJob {
        let mut spec = serde_json::json!({
            "blendFile": "scenes/shot.blend",
            "frames": {"start": 1, "end": 8},
            "storage": {"claimName": "render-storage"},
        });
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        let spec: RenderJobSpec = serde_json::from_value(spec).expect("spec parses");
        let mut rj = RenderJob::new("shot", spec);
        rj.metadata.namespace = Some("studio".into());
        rj.metadata.uid = Some("0b1c2d3e-0000-4000-8000-000000000002".into());
        rj
    }

    fn batch() -> Batch {
        Batch {
            index: 0,
            first: 1,
            last: 4,
            step: 1,
            listed: None,
        }
    }

    #[test]
    fn what_renders_and_how_it_is_checked_reach_render_node() {
        let rj = render_job(serde_json::json!({
            "scene": "Shot 10",
            "camera": "CamB",
            "viewLayers": ["Beauty", "Shadow"],
            "verify": {"blankFrames": "Fail"},
            "persistentData": false,
        }));
        let args = render_args(&rj, &batch());
        assert_eq!(args.scene.as_deref(), Some("Shot 10"));
        assert_eq!(args.camera.as_deref(), Some("CamB"));
        assert_eq!(args.view_layers, ["Beauty", "Shadow"]);
        assert_eq!(args.blank_frames, BlankFrames::Fail);
        assert!(args.no_persistent_data);
        let argv = args.to_args();
        let at = |flag: &str| {
            argv.iter()
                .position(|a| a == flag)
                .map(|i| argv[i + 1].as_str())
        };
        assert_eq!(at("--scene"), Some("Shot 10"));
        assert_eq!(at("--blank-frames"), Some("fail"));
        assert!(argv.contains(&"--no-persistent-data".to_string()));
    }

    /// A frame failing its checks twice is worth a retry (on another node where there is
    /// one): never failed as bad input is.
    #[test]
    fn bad_frames_are_retried_not_failed_at_once() {
        let rj = render_job(serde_json::json!({}));
        let config = JobConfig::new("renderfarm/render-node:dev");
        let job = build(&rj, &batch(), &config, false).expect("job");
        let policy = job
            .spec
            .and_then(|s| s.pod_failure_policy)
            .expect("a pod failure policy");
        let codes = |r: &k8s_openapi::api::batch::v1::PodFailurePolicyRule| {
            r.on_exit_codes
                .as_ref()
                .map(|c| c.values.clone())
                .unwrap_or_default()
        };
        let bad_input = policy
            .rules
            .iter()
            .find(|r| codes(r).contains(&render_contract::exit::BAD_INPUT))
            .expect("a rule for bad input");
        assert!(
            !codes(bad_input).contains(&render_contract::exit::BAD_FRAME),
            "{bad_input:?}"
        );
    }

    #[test]
    fn defaults_add_no_flag_an_older_image_would_refuse() {
        let args = render_args(&render_job(serde_json::json!({})), &batch());
        let argv = args.to_args();
        for flag in [
            "--scene",
            "--camera",
            "--view-layer",
            "--blank-frames",
            "--no-persistent-data",
        ] {
            assert!(!argv.iter().any(|a| a == flag), "{flag} in {argv:?}");
        }
    }
}
