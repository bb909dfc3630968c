use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, VolumeMount};
use render_contract::args::WAIT_ISOLATED_ENV;

use super::*;
use crate::crd::RenderJob;
use crate::crd::{FrameRange, RenderJobSpec};
use crate::plan::Batch;
use crate::plan::Plan;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use proptest::prelude::*;
use render_contract::{Device, IsolationProbe, PreviewArgs, RenderArgs, exit};

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
        config.image_for(&rj).map_err(|e| e.to_string()),
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
    let parsed = RenderArgs::try_parse_from_args(&args).expect("render-node accepts the arguments");
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
    assert_eq!(
        (
            rules[3].action.as_str(),
            rules[3].on_exit_codes.as_ref().map(|r| r.values.clone())
        ),
        ("FailJob", Some(vec![exit::BAD_FRAME, 90, 91, 92, 93])),
        "a node fault (a frame bad twice too) fails the Job at once, to be retried on another node"
    );
    // The API server refuses a rule whose exit codes are not in order.
    for rule in rules {
        let codes = rule.on_exit_codes.as_ref().map(|r| r.values.clone());
        assert!(codes.as_ref().is_none_or(|c| c.is_sorted()), "{codes:?}");
    }

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
        list: vec![],
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

/// The render container of a Job's pod.
fn container_of(job: Job) -> Container {
    let pod = job.spec.and_then(|s| s.template.spec).expect("pod");
    pod.containers.into_iter().next().expect("container")
}

fn args_of(job: Job) -> Vec<String> {
    container_of(job).args.unwrap_or_default()
}

#[test]
fn with_start_ahead_a_batch_turns_ready_once_its_first_frame_is_saved() {
    let mut rj = renderjob("shot-010", Device::Cpu);
    rj.spec.start_ahead = true;
    let built = |rj: &RenderJob| {
        let c = container_of(build(rj, &batch(rj, 2), &config(), false).expect("job builds"));
        let args = RenderArgs::try_parse_from_args(c.args.as_deref().unwrap_or_default())
            .expect("render-node accepts the arguments");
        (c, args)
    };
    let (c, args) = built(&rj);
    // The port render-node listens on is the port the probe dials, a TCP probe: no process
    // started in the container each second.
    assert_eq!(args.ready_port, Some(READY_PORT));
    let probe = c.startup_probe.as_ref().expect("startup probe");
    assert_eq!(
        probe.tcp_socket.as_ref().map(|t| t.port.clone()),
        Some(IntOrString::Int(i32::from(READY_PORT)))
    );
    assert!(probe.exec.is_none() && probe.http_get.is_none());
    assert!(c.readiness_probe.is_none() && c.liveness_probe.is_none());
    // Never the probe's verdict that ends a batch: a first frame may take a day and more.
    let patience = i64::from(probe.period_seconds.unwrap_or(10))
        * i64::from(probe.failure_threshold.unwrap_or(3));
    assert!(patience > 30 * 24 * 3600, "{patience} s");

    rj.spec.start_ahead = false;
    let (c, args) = built(&rj);
    assert!(c.startup_probe.is_none());
    assert_eq!(args.ready_port, None);
}
