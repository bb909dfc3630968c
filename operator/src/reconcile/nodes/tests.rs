use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::crd::{Phase, RenderJobSpec};
use crate::job::JobConfig;
use crate::reconcile::{Input, decide};
use crate::state::RenderState;

const UID: &str = "dba0d389-0bbd-4f05-bccc-6193edea917c";

fn rj(batches: i32, limit: i32, unblocked: serde_json::Value) -> RenderJob {
    let spec: RenderJobSpec = serde_json::from_value(json!({
        "blendFile": "s.blend", "frames": {"start": 1, "end": batches}, "batchSize": 1,
        "parallelism": 2, "storage": {"claimName": "c"}, "nodeFailureLimit": limit,
        "unblockedNodes": unblocked,
    }))
    .expect("spec");
    let mut rj = RenderJob::new("shot", spec);
    rj.metadata.namespace = Some("art".into());
    rj.metadata.uid = Some(UID.into());
    rj
}

fn job_uid(index: u32, attempt: u32) -> String {
    format!("job-{index}-{attempt}")
}

/// Batch `index`'s Job, failed with `reason` or (`None`) running.
fn job(index: u32, attempt: u32, failed: Option<&str>) -> BatchJob {
    let conditions = match failed {
        Some(reason) => json!([{"type": "Failed", "status": "True", "reason": reason}]),
        None => json!([]),
    };
    let j: k8s_openapi::api::batch::v1::Job = serde_json::from_value(json!({
        "metadata": {"name": crate::job::job_name("shot", index), "uid": job_uid(index, attempt),
            "labels": {"renderfarm.io/batch": index.to_string()}},
        "spec": {"template": {}},
        "status": {"conditions": conditions, "active": i32::from(failed.is_none())},
    }))
    .expect("job");
    j.into()
}

/// A pod of batch `index`'s Job that failed on `node` with `exit_code` (container reason
/// `reason`).
fn failed_pod(index: u32, attempt: u32, node: &str, exit_code: i32, reason: &str) -> BatchPod {
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": format!("shot-{index}-{attempt}"),
            "labels": {"renderfarm.io/batch": index.to_string()},
            "annotations": {"renderfarm.io/renderjob": "shot"},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "j",
                "uid": job_uid(index, attempt), "controller": true}]},
        "spec": {"nodeName": node, "containers": []},
        "status": {"phase": "Failed", "containerStatuses": [{"name": "render", "image": "i",
            "imageID": "", "ready": false, "restartCount": 0, "state": {"terminated": {
            "exitCode": exit_code, "reason": reason, "finishedAt": "2026-12-07T10:00:00Z"}}}]},
    }))
    .expect("pod");
    p.into()
}

fn node(name: &str) -> ClusterNode {
    let n: Node = serde_json::from_value(json!({"metadata": {"name": name},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}}))
    .expect("node");
    ClusterNode::from(&n)
}

fn fault(node: &str, batch: i64, job: &str) -> NodeFault {
    NodeFault {
        node: node.into(),
        batch,
        reason: "OutputReadOnly".into(),
        job: job.into(),
    }
}

#[test]
fn node_faults_are_told_from_the_scenes() {
    let cases = [
        (exit::NODE_OUTPUT_READ_ONLY, "Error", Some("OutputReadOnly")),
        (
            exit::NODE_STORAGE_UNREACHABLE,
            "Error",
            Some("StorageUnreachable"),
        ),
        (exit::NODE_GPU_UNUSABLE, "Error", Some("GpuUnusable")),
        (exit::NODE_BLENDER_KILLED, "Error", Some("BlenderKilled")),
        (98, "Error", Some("NodeFault")),
        (exit::BAD_FRAME, "Error", Some(BAD_FRAME_REASON)),
        (139, "Error", Some("KilledBySignal")),
        (137, "Error", Some("KilledBySignal")),
        (137, "OOMKilled", None),
        (exit::TERMINATED, "Error", None),
        (exit::BAD_INPUT, "Error", None),
        (exit::RENDER_FAILED, "Error", None),
        (1, "Error", None),
    ];
    for (code, reason, want) in cases {
        let pod = failed_pod(0, 0, "w1", code, reason);
        assert_eq!(fault_of(&pod), want, "exit {code} ({reason})");
    }
    let mut evicted = failed_pod(0, 0, "w1", exit::NODE_OUTPUT_READ_ONLY, "Error");
    evicted.disruption = true;
    assert_eq!(fault_of(&evicted), None, "a disruption is no failure");
}

#[test]
fn only_a_job_failed_by_its_pods_counts() {
    let pod = failed_pod(3, 0, "w2", exit::NODE_OUTPUT_READ_ONLY, "Error");
    let got = failed_for_node(3, &job(3, 0, Some("PodFailurePolicy")), &[&pod]);
    assert_eq!(got, Some(fault("w2", 3, "job-3-0")));
    let deadline = job(3, 0, Some("DeadlineExceeded"));
    assert_eq!(failed_for_node(3, &deadline, &[&pod]), None);
    assert_eq!(failed_for_node(3, &job(3, 0, None), &[&pod]), None);
    let scene = failed_pod(3, 0, "w2", exit::RENDER_FAILED, "Error");
    let out = job(3, 0, Some("BackoffLimitExceeded"));
    assert_eq!(failed_for_node(3, &out, &[&scene]), None);
}

#[test]
fn a_node_is_blocked_at_the_limit_and_an_unblock_forgives_what_it_had() {
    let faults = vec![
        fault("w2", 0, "a"),
        fault("w1", 1, "b"),
        fault("w2", 2, "c"),
    ];
    let list = Blocklist::new(faults.clone(), &rj(6, 2, json!([])));
    let want = BlockedNode {
        node: "w2".into(),
        failures: 2,
        last_reason: "OutputReadOnly".into(),
    };
    assert_eq!(list.blocked, vec![want.clone()]);
    assert_eq!(
        list.by_batch.get(&2),
        Some(&BTreeSet::from(["w2".to_string()]))
    );

    let unblocked = rj(6, 2, json!([{"node": "w2", "failures": 2}]));
    let list = Blocklist::new(faults.clone(), &unblocked);
    assert!(list.blocked.is_empty(), "{list:?}");
    assert!(
        !list.by_batch.contains_key(&0),
        "forgiven: batch 0 may go back"
    );
    // New failures count again, from zero.
    let mut more = faults;
    more.push(fault("w2", 4, "d"));
    assert!(Blocklist::new(more.clone(), &unblocked).blocked.is_empty());
    more.push(fault("w2", 5, "e"));
    assert_eq!(Blocklist::new(more, &unblocked).blocked, vec![want]);
}

#[test]
fn a_batch_keeps_off_where_it_failed_unless_that_is_the_only_node() {
    let list = Blocklist::new(
        vec![
            fault("w2", 0, "a"),
            fault("w3", 1, "b"),
            fault("w3", 2, "c"),
        ],
        &rj(6, 2, json!([])),
    );
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let two = set(&["w1", "w2", "w3"]);
    let p = placement(&list, 0, Some(&two));
    assert_eq!((p.required, p.preferred), (set(&["w2", "w3"]), set(&[])));
    assert_eq!(placement(&list, 5, None).required, set(&["w3"]), "blocked");
    let p = placement(&list, 0, Some(&set(&["w2", "w3"])));
    assert_eq!(
        (p.required, p.preferred),
        (set(&["w3"]), set(&["w2"])),
        "only w2 fits"
    );
}

#[test]
fn keep_off_adds_not_in_to_every_required_term() {
    let mut job = k8s_openapi::api::batch::v1::Job {
        spec: Some(k8s_openapi::api::batch::v1::JobSpec {
            template: serde_json::from_value(json!({"spec": {"containers": [],
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                {"nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In",
                "values": ["a"]}]}, {"matchExpressions": [{"key": "pool", "operator": "In",
                "values": ["b"]}]}]}}}}}))
            .expect("template"),
            ..Default::default()
        }),
        ..Default::default()
    };
    let p = Placement {
        required: BTreeSet::from(["w2".to_string()]),
        preferred: BTreeSet::from(["w1".to_string()]),
    };
    keep_off(&mut job, &p);
    let v = serde_json::to_value(&job).expect("json");
    let na = &v["spec"]["template"]["spec"]["affinity"]["nodeAffinity"];
    let terms = na["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        .as_array()
        .expect("terms");
    assert_eq!(terms.len(), 2);
    for t in terms {
        let want = json!([{"key": "metadata.name", "operator": "NotIn", "values": ["w2"]}]);
        assert_eq!(t["matchFields"], want, "{t}");
    }
    let pref = &na["preferredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(
        pref["preference"]["matchFields"][0]["values"],
        json!(["w1"])
    );
}

/// One reconcile of `rj` with the status it has, as the controller would run it.
fn once(rj: &RenderJob, jobs: &[BatchJob], pods: &[BatchPod], nodes: &[ClusterNode]) -> Decision {
    let jobs: Vec<Arc<BatchJob>> = jobs.iter().cloned().map(Arc::new).collect();
    let pods: Vec<Arc<BatchPod>> = pods.iter().cloned().map(Arc::new).collect();
    let input = Input {
        rj,
        jobs: &jobs,
        pods: &pods,
        taken: &[],
        synced: true,
        disrupted: &|_| 0,
        active: 1,
        finishing: 0.0,
        nodes: Some(nodes),
    };
    let wall = Time("2026-12-07T10:00:05Z".parse().expect("time"));
    let config = JobConfig::new("renderfarm/render-node:test");
    decide(
        &input,
        &RenderState::default(),
        &config,
        Instant::now(),
        &wall,
    )
    .expect("decide")
}

use crate::reconcile::Decision;

fn written(d: &Decision) -> RenderJobStatus {
    d.effects
        .status
        .as_ref()
        .expect("a status write")
        .status
        .clone()
}

#[test]
fn a_batch_failed_by_its_node_is_recorded_then_deleted_then_created_elsewhere() {
    let mut r = rj(2, 2, json!([]));
    let nodes = [node("w1"), node("w2")];
    let failed = job(0, 0, Some("PodFailurePolicy"));
    let pod = failed_pod(0, 0, "w2", exit::NODE_OUTPUT_READ_ONLY, "Error");
    let running = job(1, 0, None);
    // 1. Recorded: the batch counts as active, not failed; nothing deleted yet.
    let d = once(
        &r,
        &[failed.clone(), running.clone()],
        std::slice::from_ref(&pod),
        &nodes,
    );
    let s = written(&d);
    assert_eq!(s.node_faults, vec![fault("w2", 0, "job-0-0")]);
    assert_eq!((s.batches.failed, s.batches.active), (0, 2));
    assert!(s.blocked_nodes.is_empty() && d.effects.delete.is_empty());
    let events = &d.effects.status.as_ref().expect("write").events;
    assert!(events.iter().any(|n| n.reason == "NodeFault" && n.warning));
    assert_eq!(
        d.effects
            .status
            .as_ref()
            .expect("write")
            .progress
            .node_faults
            .len(),
        1
    );
    // 2. The status records it: the failed Job goes.
    r.status = Some(s);
    let d = once(
        &r,
        &[failed.clone(), running.clone()],
        std::slice::from_ref(&pod),
        &nodes,
    );
    assert_eq!(d.effects.delete, ["shot-0000"]);
    assert!(d.effects.status.is_none(), "nothing new to write");
    // 3. Gone: the batch's new Job keeps off w2.
    let d = once(&r, &[running], &[], &nodes);
    let (index, job) = d.effects.apply.first().expect("batch 0 created again");
    assert_eq!(*index, 0);
    let v = serde_json::to_value(job).expect("json");
    let term = &v["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"][0];
    assert_eq!(term["matchFields"][0]["values"], json!(["w2"]), "{v}");
}

#[test]
fn a_second_failure_blocks_the_node_once_and_every_node_blocked_fails_the_render() {
    let mut r = rj(3, 2, json!([]));
    r.status = Some(RenderJobStatus {
        node_faults: vec![fault("w2", 0, "earlier")],
        ..Default::default()
    });
    let failed = job(1, 0, Some("PodFailurePolicy"));
    let pod = failed_pod(1, 0, "w2", exit::NODE_OUTPUT_READ_ONLY, "Error");
    let d = once(
        &r,
        std::slice::from_ref(&failed),
        std::slice::from_ref(&pod),
        &[node("w1"), node("w2")],
    );
    let s = written(&d);
    assert_eq!(s.blocked_nodes.len(), 1, "{s:?}");
    let events = &d.effects.status.as_ref().expect("write").events;
    let blocked: Vec<_> = events
        .iter()
        .filter(|n| n.reason == "NodeBlocked")
        .collect();
    assert_eq!(blocked.len(), 1, "{events:?}");
    assert!(blocked[0].warning && blocked[0].note.contains("kubectl render unblock shot w2"));
    // Later batches keep off w2.
    for (_, job) in &d.effects.apply {
        let v = serde_json::to_value(job).expect("json");
        assert!(v.to_string().contains("\"NotIn\""), "{v}");
    }
    // Only w2 in the cluster: every node is blocked, the render fails naming it.
    let d = once(&r, &[failed], &[pod], &[node("w2")]);
    let s = written(&d);
    assert!(d.effects.apply.is_empty(), "{:?}", d.effects.apply);
    assert_eq!(s.phase, Phase::Failed, "{s:?}");
    let failed = s
        .conditions
        .iter()
        .find(|c| c.type_ == "Failed")
        .expect("Failed");
    assert!(
        failed
            .message
            .contains("every node this render can run on is blocked: w2"),
        "{failed:?}"
    );
}

fn arb_fault() -> impl Strategy<Value = NodeFault> {
    (0u8..4, 0i64..8).prop_map(|(n, b)| NodeFault {
        node: format!("w{n}"),
        batch: b,
        reason: "OutputReadOnly".into(),
        job: format!("{n}-{b}"),
    })
}

proptest! {
    /// Whatever failed where: a node is blocked exactly when its failures since its unblock
    /// reach the limit, and unless every node the render fits is blocked (and the render
    /// fails), every batch has a node left to run on.
    #[test]
    fn never_every_node_without_failing(
        faults in prop::collection::vec(arb_fault(), 0..30),
        limit in 1i32..4,
        forgive in prop::collection::vec((0u8..4, 0i64..5), 0..3),
        cluster in 1u8..5,
    ) {
        let unblocked: Vec<_> = forgive.iter()
            .map(|(n, f)| json!({"node": format!("w{n}"), "failures": f})).collect();
        let r = rj(8, limit, json!(unblocked));
        let list = Blocklist::new(faults.clone(), &r);
        for n in 0..4u8 {
            let name = format!("w{n}");
            let all = faults.iter().filter(|f| f.node == name).count() as i64;
            let forgiven = forgive.iter().filter(|(m, _)| *m == n).map(|(_, f)| *f).max().unwrap_or(0);
            let counted = (all - forgiven).max(0);
            prop_assert_eq!(list.is_blocked(&name), counted >= i64::from(limit));
        }
        let nodes: Vec<ClusterNode> = (0..cluster).map(|n| node(&format!("w{n}"))).collect();
        let fits = fitting(&r, Some(&nodes)).expect("known");
        let hold = all_blocked(&r, &list, Some(&nodes));
        for batch in 0..8 {
            let p = placement(&list, batch, Some(&fits));
            let left = fits.iter().any(|n| !p.required.contains(n));
            prop_assert!(left || hold.is_some(), "batch {batch}: {p:?} of {fits:?}");
        }
    }
}
