//! renderfarm: renders Blender animations on Kubernetes, one Job per batch of frames.
//!
//! The core is pure and small: [`plan`] cuts frames into batches, [`job`] builds a batch's Job,
//! [`status`] rolls Jobs and pods up into the RenderJob's status (each batch's [`batch`] state),
//! [`actions`] decides what to change (with [`ahead`], which running batches get a follower
//! started ahead), [`events`] what to tell the user, and [`reconcile`] puts them together into
//! the effects of one reconcile (over the Jobs and pods [`index`]ed by batch), remembered per
//! RenderJob in [`state`]. [`controller`] is the glue that watches (decoding only what [`cache`]
//! keeps, [`watched`]) and carries the effects out through [`client`], which counts every write.

pub(crate) mod actions;
pub(crate) mod ahead;
pub(crate) mod batch;
pub mod cache;
pub mod client;
pub mod controller;
pub(crate) mod events;
pub mod http;
pub(crate) mod index;
pub mod job;
pub mod leader;
pub mod metrics;
pub mod node_metrics;
pub mod nodewatch;
pub(crate) mod owners;
pub(crate) mod pod;
pub mod reconcile;
pub mod state;
pub(crate) mod status;
pub mod telemetry;
pub mod watched;

// The RenderJob types, the frame plan and batch ranges live in renderfarm-api, which the
// kubectl plugin shares; here they keep the paths the operator's code uses.
pub(crate) use renderfarm_api::ranges;
pub use renderfarm_api::{crd, plan};

use kube::CustomResourceExt;

/// Every error the operator can meet.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    /// An API call on one object failed: which call, on what.
    #[error("could not {verb} {object}: {source}")]
    Api {
        verb: &'static str,
        /// Kind and name, with the namespace where there is one: `Job studio/shot-0001`.
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("could not serialise: {0}")]
    Json(#[from] serde_json::Error),
    #[error("could not write YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("object has no {0}")]
    MissingObjectKey(&'static str),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("leader election: {0}")]
    Leader(#[from] leader::LeaderError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An API call's error as [`Error::Api`]: `verb` (`apply`, `delete`) on `object` (`Job ns/name`).
pub(crate) fn api_error(
    verb: &'static str,
    object: impl Into<String>,
) -> impl FnOnce(kube::Error) -> Error {
    let object = object.into();
    move |source| Error::Api {
        verb,
        object,
        source,
    }
}

impl Error {
    /// A short label for the reconcile error metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) | Error::Api { .. } => "kube",
            Error::Json(_) | Error::Yaml(_) => "serialization",
            Error::MissingObjectKey(_) => "object",
            Error::Io(_) => "io",
            Error::Leader(_) => "leader",
        }
    }
}

/// The CustomResourceDefinition as YAML, exactly as checked in at `crds/renderjob.yaml`.
pub fn crd_yaml() -> Result<String> {
    Ok(serde_yaml::to_string(&crd::RenderJob::crd())?)
}

#[cfg(test)]
mod tests {
    /// The CRD checked in at `crds/renderjob.yaml`, and the chart's copy, must be what the Rust
    /// types generate.
    #[test]
    fn checked_in_crds_match_the_types() {
        let generated = crate::crd_yaml().expect("CRD serialises");
        for path in [
            "crds/renderjob.yaml",
            "charts/renderfarm/crds/renderjob.yaml",
        ] {
            let full = format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"));
            let checked_in = std::fs::read_to_string(&full).unwrap_or_default();
            assert!(
                generated == checked_in,
                "{path} is out of date: run `cargo run -p renderfarm -- crd | tee crds/renderjob.yaml > charts/renderfarm/crds/renderjob.yaml`"
            );
        }
    }
}
