//! What a render's Jobs and pods are called, labelled and owned by.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use super::*;
use crate::crd::RenderJob;
use crate::plan::Batch;
use crate::{Error, Result};

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
pub(super) fn job_metadata(
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
pub(super) fn owner(
    rj: &RenderJob,
) -> Result<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
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

/// The user's pod labels and annotations, then ours, which win.
pub(super) fn pod_metadata(
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
