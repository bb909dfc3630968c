//! renderfarm: renders Blender animations on Kubernetes, one Job per batch of frames.
//!
//! The core is pure and small: [`plan`] cuts frames into batches, [`job`] builds a batch's Job,
//! [`status`] rolls Jobs and pods up into the RenderJob's status (each batch's [`batch`] state),
//! [`actions`] decides what to change (with [`ahead`], which running batches get a follower
//! started ahead), [`events`] what to tell the user, and [`reconcile`] puts them together into
//! the effects of one reconcile (over the Jobs and pods [`index`]ed by batch), remembered per
//! RenderJob in [`state`]. [`controller`] is the glue that watches (decoding only what [`cache`]
//! keeps, [`watched`]) and carries the effects out through [`client`], which counts every write.

pub mod actions;
pub mod ahead;
pub mod batch;
pub mod cache;
pub mod client;
pub mod controller;
pub mod crd;
pub mod events;
pub mod http;
pub mod index;
pub mod job;
pub mod leader;
pub mod metrics;
pub mod owners;
pub mod plan;
pub mod pod;
pub mod ranges;
pub mod reconcile;
pub mod state;
pub mod status;
pub mod telemetry;
pub mod watched;

use kube::CustomResourceExt;

/// Every error the operator can meet.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    #[error("could not serialise: {0}")]
    Json(#[from] serde_json::Error),
    #[error("could not write YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("object has no {0}")]
    MissingObjectKey(&'static str),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("leader election: {0}")]
    Leader(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A short label for the reconcile error metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Json(_) | Error::Yaml(_) => "serialization",
            Error::MissingObjectKey(_) => "object",
            Error::Io(_) => "io",
            Error::Config(_) => "config",
            Error::Leader(_) => "leader",
        }
    }
}

/// The CustomResourceDefinition as YAML, exactly as checked in at `crds/renderjob.yaml`.
pub fn crd_yaml() -> Result<String> {
    Ok(serde_yaml::to_string(&crd::RenderJob::crd())?)
}
