//! Every error a user can meet, each one line that says what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no kubeconfig: {0} (set KUBECONFIG or --kubeconfig, or create ~/.kube/config; `kubectl config view` shows what kubectl uses)"
    )]
    NoKubeconfig(String),
    #[error("cannot reach the cluster at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error(
        "renderfarm is not installed in this cluster: the API server has no renderjobs.renderfarm.io/v1alpha1 (install it: helm install renderfarm charts/renderfarm -n renderfarm-system --create-namespace)"
    )]
    CrdMissing,
    #[error(
        "PersistentVolumeClaim {claim} not found in namespace {namespace}: pass --claim NAME (kubectl get pvc -n {namespace})"
    )]
    ClaimMissing { claim: String, namespace: String },
    #[error("cannot read {}: {reason}", path.display())]
    BlendUnreadable { path: PathBuf, reason: String },
    #[error(
        "a RenderJob named {name} already exists in namespace {namespace}: choose another with --name, or remove it with `kubectl render delete {name}`"
    )]
    NameTaken { name: String, namespace: String },
    #[error("RenderJob {name} not found in namespace {namespace} (kubectl render list)")]
    NotFound { name: String, namespace: String },
    #[error(
        "invalid frame range '{input}': {reason} (use START-END or START-END:STEP, e.g. 1-250:2)"
    )]
    Frames { input: String, reason: String },
    #[error("{0}")]
    Usage(String),
    #[error("the API server refused the RenderJob: {0}")]
    Invalid(String),
    #[error("transfer pod {pod}: {reason}")]
    TransferPod { pod: String, reason: String },
    #[error("{what} in transfer pod {pod} failed: {reason}")]
    Remote {
        what: &'static str,
        pod: String,
        reason: String,
    },
    #[error(
        "the preview of {name} is not ready (state {state}{message}); it is made once every batch succeeded (kubectl render status {name})"
    )]
    PreviewNotReady {
        name: String,
        state: String,
        message: String,
    },
    #[error("render {name} failed: {reason}")]
    RenderFailed { name: String, reason: String },
    #[error(
        "--pack needs blender-asset-tracer's `bat` command, which is not installed: pip install blender-asset-tracer=={} (Python 3.11 or newer; its 2.x versions need Python 3.13 and Blender 5.1)",
        crate::pack::BAT_VERSION
    )]
    BatMissing,
    #[error("bat pack failed: {0}")]
    Pack(String),
    #[error("interrupted")]
    Interrupted,
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Kubernetes API: {0}")]
    Kube(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Exit code: 2 for a render that failed, 130 for Ctrl-C, 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::RenderFailed { .. } => 2,
            Error::Interrupted => 130,
            _ => 1,
        }
    }

    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

/// The API server's answer, when the error is one.
pub fn api_status(e: &kube::Error) -> Option<(u16, &str, &str)> {
    match e {
        kube::Error::Api(s) => Some((s.code, s.reason.as_str(), s.message.as_str())),
        _ => None,
    }
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        match &e {
            kube::Error::Api(s) => Error::Kube(format!("{} ({})", s.message, s.code)),
            kube::Error::HyperError(_) | kube::Error::Service(_) => {
                Error::Kube(format!("{e}: is the cluster up? (`kubectl cluster-info`)"))
            }
            _ => Error::Kube(e.to_string()),
        }
    }
}
