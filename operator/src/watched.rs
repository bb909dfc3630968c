//! The Jobs and pods as the operator's watches decode them: the fields [`crate::cache`] reads,
//! and nothing else.
//!
//! A batch Job carries its whole pod template and every object carries its managed fields, whose
//! `fieldsV1` k8s-openapi decodes into a `serde_json::Value` tree: most of each watch event, and
//! most of the work of decoding it, for fields no reconcile reads. These types let serde skip
//! them unparsed. A `Job` or `Pod` is then made of what was kept, with no spec (but a Job's
//! `suspend`) and no managed fields, and goes through the same `From` as before.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec, JobStatus};
use k8s_openapi::api::core::v1::{Pod, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use serde::{Deserialize, Deserializer};

/// The metadata the caches read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
    owner_references: Option<Vec<OwnerReference>>,
    creation_timestamp: Option<Time>,
    deletion_timestamp: Option<Time>,
}

fn meta<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    let m = Meta::deserialize(d)?;
    Ok(ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
        resource_version: m.resource_version,
        labels: m.labels,
        annotations: m.annotations,
        owner_references: m.owner_references,
        creation_timestamp: m.creation_timestamp,
        deletion_timestamp: m.deletion_timestamp,
        ..ObjectMeta::default()
    })
}

/// Of a Job's spec, only whether it is suspended.
#[derive(Deserialize)]
struct Suspend {
    suspend: Option<bool>,
}

fn suspend<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(Option::<Suspend>::deserialize(d)?.and_then(|s| s.suspend))
}

/// A batch Job as its watch decodes it.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct WatchedJob {
    #[serde(deserialize_with = "meta", default)]
    pub metadata: ObjectMeta,
    /// `spec.suspend`.
    #[serde(rename = "spec", deserialize_with = "suspend", default)]
    pub suspend: Option<bool>,
    pub status: Option<JobStatus>,
}

/// Of a pod's spec, only the node it is bound to.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bound {
    node_name: Option<String>,
}

fn node_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Bound>::deserialize(d)?.and_then(|s| s.node_name))
}

/// A batch pod as its watch decodes it: of its spec, only `nodeName`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct WatchedPod {
    #[serde(deserialize_with = "meta", default)]
    pub metadata: ObjectMeta,
    /// `spec.nodeName`: a node fault counts against it.
    #[serde(rename = "spec", deserialize_with = "node_name", default)]
    pub node_name: Option<String>,
    pub status: Option<PodStatus>,
}

impl From<WatchedJob> for Job {
    fn from(j: WatchedJob) -> Self {
        Job {
            metadata: j.metadata,
            spec: j.suspend.map(|s| JobSpec {
                suspend: Some(s),
                ..JobSpec::default()
            }),
            status: j.status,
        }
    }
}

impl From<WatchedPod> for Pod {
    fn from(p: WatchedPod) -> Self {
        Pod {
            metadata: p.metadata,
            spec: p.node_name.map(|n| PodSpec {
                node_name: Some(n),
                ..PodSpec::default()
            }),
            status: p.status,
        }
    }
}

/// They are watched as the kinds they are; `kube::Resource` follows from these.
macro_rules! watched {
    ($t:ty, $of:ty) => {
        impl k8s_openapi::Resource for $t {
            const API_VERSION: &'static str = <$of as k8s_openapi::Resource>::API_VERSION;
            const GROUP: &'static str = <$of as k8s_openapi::Resource>::GROUP;
            const KIND: &'static str = <$of as k8s_openapi::Resource>::KIND;
            const VERSION: &'static str = <$of as k8s_openapi::Resource>::VERSION;
            const URL_PATH_SEGMENT: &'static str = <$of as k8s_openapi::Resource>::URL_PATH_SEGMENT;
            type Scope = <$of as k8s_openapi::Resource>::Scope;
        }
        impl k8s_openapi::Metadata for $t {
            type Ty = ObjectMeta;
            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}
watched!(WatchedJob, Job);
watched!(WatchedPod, Pod);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{BatchJob, BatchPod};
    use crate::crd::RenderJob;
    use crate::job::{BATCH_LABEL, PAUSED_ANNOTATION, RENDERJOB_ANNOTATION};
    use k8s_openapi::api::batch::v1::JobCondition;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStatus, PodCondition, PodSpec,
        PodTemplateSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
    use kube::Resource;

    fn time(s: &str) -> Time {
        Time(s.parse().expect("timestamp"))
    }

    /// Metadata owned by a `kind`, with managed fields, as the API server sends it.
    fn object_meta(kind: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some("r-00002".into()),
            namespace: Some("art".into()),
            uid: Some("u-1".into()),
            resource_version: Some("42".into()),
            labels: Some(BTreeMap::from([(BATCH_LABEL.into(), "2".into())])),
            annotations: Some(BTreeMap::from([
                (RENDERJOB_ANNOTATION.into(), "r".into()),
                (PAUSED_ANNOTATION.into(), "true".into()),
            ])),
            owner_references: Some(vec![OwnerReference {
                api_version: if kind == "Job" {
                    "batch/v1".into()
                } else {
                    RenderJob::api_version(&()).into_owned()
                },
                kind: kind.into(),
                name: "r".into(),
                uid: "owner-uid".into(),
                controller: Some(true),
                ..OwnerReference::default()
            }]),
            creation_timestamp: Some(time("2026-12-02T01:02:03Z")),
            deletion_timestamp: Some(time("2026-12-02T01:02:09Z")),
            managed_fields: Some(vec![ManagedFieldsEntry {
                manager: Some("kube-controller-manager".into()),
                operation: Some("Update".into()),
                fields_v1: Some(FieldsV1(serde_json::json!({
                    "f:metadata": {"f:labels": {"f:renderfarm.io/batch": {}}},
                    "f:spec": {"f:template": {"f:spec": {"f:containers": {}}}}
                }))),
                ..ManagedFieldsEntry::default()
            }]),
            ..ObjectMeta::default()
        }
    }

    fn pod_spec() -> PodSpec {
        PodSpec {
            containers: vec![k8s_openapi::api::core::v1::Container {
                name: "render".into(),
                image: Some("render-node:4.5".into()),
                args: Some(vec!["--frames".into(), "3".into()]),
                ..Default::default()
            }],
            ..PodSpec::default()
        }
    }

    /// A whole object, as the API server sends it, through JSON into a watched type.
    fn through_json<T: serde::Serialize, W: serde::de::DeserializeOwned>(o: &T) -> W {
        let text = serde_json::to_string(o).expect("serialise");
        serde_json::from_str(&text).expect("decode")
    }

    #[test]
    fn a_watched_job_keeps_what_the_cache_reads_and_drops_the_template() {
        let job = Job {
            metadata: object_meta("RenderJob"),
            spec: Some(JobSpec {
                suspend: Some(true),
                template: PodTemplateSpec {
                    spec: Some(pod_spec()),
                    ..Default::default()
                },
                ..JobSpec::default()
            }),
            status: Some(JobStatus {
                active: Some(1),
                failed: Some(2),
                start_time: Some(time("2026-12-02T01:02:04Z")),
                conditions: Some(vec![JobCondition {
                    type_: "Failed".into(),
                    status: "True".into(),
                    reason: Some("BackoffLimitExceeded".into()),
                    message: Some("Job has reached the specified backoff limit".into()),
                    ..Default::default()
                }]),
                ..JobStatus::default()
            }),
        };
        let watched: WatchedJob = through_json(&job);
        assert_eq!(watched.meta().managed_fields, None);
        let slim = Job::from(watched.clone());
        assert_eq!(slim.spec.as_ref().and_then(|s| s.suspend), Some(true));
        assert!(
            slim.spec
                .as_ref()
                .is_some_and(|s| s.template.spec.is_none())
        );
        // What the cache keeps is the same either way.
        assert_eq!(BatchJob::from(slim), BatchJob::from(job.clone()));
        let kept = BatchJob::from(Job::from(watched));
        assert_eq!(kept.failed, 2);
        assert_eq!(kept.batch, Some(2));
        assert!(kept.paused && kept.suspended && kept.deleting);
        assert_eq!(kept.owner.map(|o| o.uid).as_deref(), Some("owner-uid"));

        // A Job without a spec or status decodes too.
        let bare: WatchedJob = through_json(&Job {
            metadata: object_meta("RenderJob"),
            ..Job::default()
        });
        assert_eq!(bare.suspend, None);
        assert!(!BatchJob::from(Job::from(bare)).suspended);
    }

    #[test]
    fn a_watched_pod_keeps_what_the_cache_reads_and_drops_the_spec() {
        let pod = Pod {
            metadata: object_meta("Job"),
            spec: Some(PodSpec {
                node_name: Some("worker-2".into()),
                ..pod_spec()
            }),
            status: Some(PodStatus {
                phase: Some("Failed".into()),
                conditions: Some(vec![PodCondition {
                    type_: "DisruptionTarget".into(),
                    status: "True".into(),
                    reason: Some("EvictionByEvictionAPI".into()),
                    ..Default::default()
                }]),
                container_statuses: Some(vec![ContainerStatus {
                    name: "render".into(),
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: 137,
                            reason: Some("OOMKilled".into()),
                            finished_at: Some(time("2026-12-02T01:02:08Z")),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..PodStatus::default()
            }),
        };
        let watched: WatchedPod = through_json(&pod);
        assert_eq!(watched.meta().managed_fields, None);
        let from_watched = BatchPod::from(Pod::from(watched));
        assert_eq!(from_watched, BatchPod::from(pod));
        assert!(from_watched.disruption);
        assert!(from_watched.failure.is_some());
        assert!(from_watched.finished_at.is_some());
        assert_eq!(from_watched.job_uid.as_deref(), Some("owner-uid"));
        assert_eq!(from_watched.batch, Some(2));
        assert_eq!(from_watched.renderjob.as_deref(), Some("r"));
        assert_eq!(from_watched.node.as_deref(), Some("worker-2"));
    }

    #[test]
    fn watched_types_are_watched_as_jobs_and_pods() {
        assert_eq!(WatchedJob::kind(&()), "Job");
        assert_eq!(WatchedJob::api_version(&()), "batch/v1");
        assert_eq!(WatchedJob::plural(&()), "jobs");
        assert_eq!(WatchedPod::kind(&()), "Pod");
        assert_eq!(WatchedPod::api_version(&()), "v1");
        assert_eq!(WatchedPod::plural(&()), "pods");
    }
}
