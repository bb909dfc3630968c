//! The command line: `kubectl render VERB ...`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use render_contract::{Device, Engine, OutputFormat};

/// Render Blender scenes on a Kubernetes cluster running renderfarm.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl-render",
    bin_name = "kubectl render",
    version,
    after_help = "Example:\n  kubectl render submit shot.blend --frames 1-250 --batch 10 --watch\n  kubectl render fetch shot ./frames"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct Global {
    /// Namespace (default: the kubeconfig context's).
    #[arg(short, long, global = true, env = "KUBECTL_RENDER_NAMESPACE")]
    pub namespace: Option<String>,
    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Submit(Submit),
    Watch(Watch),
    Fetch(Fetch),
    List(List),
    Status(Status),
    Logs(Logs),
    Retry(Retry),
    Rerender(Rerender),
    Unblock(Unblock),
    Pause(Named),
    Resume(Named),
    Delete(Delete),
    Ui(Ui),
    Completion(Completion),
}

/// Upload a .blend into the render storage and start a RenderJob.
///
/// The scene goes to scenes/<hash>/<file> in the claim, through a short-lived pod that mounts
/// it; a file already there with the same SHA-256 is not sent again. Frame range, engine and
/// output format default to the scene's own settings.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  kubectl render submit shot.blend --frames 1-250 --batch 10 --watch
  kubectl render submit shot.blend --frames 1-250:5 --name shot-preview --engine BLENDER_EEVEE
  kubectl render submit shot-5.blend --frames 1-48 --blender 5.0
  kubectl render submit shot.blend --list
  kubectl render submit shot.blend --scene Shot --camera CamB --view-layer Beauty --view-layer Shadow
  kubectl render submit --in-claim scenes/shot.blend --frames 1-100 --name shot")]
pub struct Submit {
    /// The .blend file on this machine.
    #[arg(required_unless_present = "in_claim", value_name = "SCENE.blend")]
    pub scene: Option<PathBuf>,
    /// Use a .blend already in the claim (a path relative to it) instead of uploading one.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["scene", "pack"])]
    pub in_claim: Option<String>,
    /// Frames: START-END, START-END:STEP or a list `1-10,15,20-30` (default: the scene's
    /// range).
    #[arg(long, short = 'f')]
    pub frames: Option<String>,
    /// Frames per batch (one Kubernetes Job each).
    #[arg(long, default_value_t = 5)]
    pub batch: i32,
    /// Batches rendering at once.
    #[arg(long, short = 'p', default_value_t = 10)]
    pub parallelism: i32,
    /// Compute device.
    #[arg(long, value_enum)]
    pub device: Option<Device>,
    /// Render engine (default: the scene's).
    #[arg(long, value_enum)]
    pub engine: Option<Engine>,
    /// Blender version to render with, one the cluster offers (default: the operator's, 4.5).
    #[arg(long, value_name = "VERSION")]
    pub blender: Option<String>,
    /// Output image format (default: the scene's, PNG for movie formats).
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,
    /// The PersistentVolumeClaim holding scenes and frames.
    #[arg(long, default_value = "render-storage")]
    pub claim: String,
    /// RenderJob name (default: the file name without .blend).
    #[arg(long)]
    pub name: Option<String>,
    /// Retries per batch.
    #[arg(long)]
    pub backoff_limit: Option<i32>,
    /// Collect textures and linked files with blender-asset-tracer (`bat pack`) and upload them.
    #[arg(long)]
    pub pack: bool,
    /// Follow the render until it ends (as `kubectl render watch`).
    #[arg(long, short = 'w')]
    pub watch: bool,
    /// The scene of the .blend to render (default: its active scene).
    #[arg(long = "scene", id = "scene_name", value_name = "NAME")]
    pub scene_name: Option<String>,
    /// The camera object to render through (default: the scene's camera).
    #[arg(long, value_name = "NAME")]
    pub camera: Option<String>,
    /// A view layer to render; repeat for more (default: those the scene renders).
    #[arg(long = "view-layer", value_name = "NAME")]
    pub view_layers: Vec<String>,
    /// List the .blend's scenes, their cameras and view layers, and submit nothing.
    #[arg(long, conflicts_with = "in_claim")]
    pub list: bool,
    #[command(flatten)]
    pub transfer: Transfer,
}

#[derive(Debug, Args, Clone)]
pub struct Transfer {
    /// Image of the short-lived transfer pod (needs sh, tar, sha256sum and find).
    #[arg(
        long,
        env = "KUBECTL_RENDER_IMAGE",
        default_value = "renderfarm/render-node:dev"
    )]
    pub image: String,
    /// Seconds to wait for the transfer pod to start.
    #[arg(long, default_value_t = 180)]
    pub pod_timeout: u64,
}

/// Follow a render: overall progress, active batches, failures.
///
/// Exits 0 when the render succeeds, 2 when it fails, 1 on any other error. Prints plain lines
/// instead of bars when stdout is not a terminal.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  kubectl render watch shot\n  kubectl render watch shot --preview && kubectl render fetch shot --preview"
)]
pub struct Watch {
    pub name: String,
    /// Plain lines even on a terminal.
    #[arg(long)]
    pub plain: bool,
    /// Once the frames are done, wait for the preview video too (at most 30 minutes); a
    /// failed preview does not fail the watch.
    #[arg(long)]
    pub preview: bool,
}

/// Download the rendered frames that are not on this machine yet.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  kubectl render fetch shot ./frames\n  kubectl render fetch shot ./preview --preview"
)]
pub struct Fetch {
    pub name: String,
    /// Where the frames go (default: ./NAME).
    pub dir: Option<PathBuf>,
    /// The preview video and contact sheet (status.preview) instead of the frames.
    #[arg(long)]
    pub preview: bool,
    #[command(flatten)]
    pub transfer: Transfer,
}

/// List RenderJobs.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  kubectl render list -A")]
pub struct List {
    /// Every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

/// A RenderJob by name.
#[derive(Debug, Args)]
pub struct Named {
    pub name: String,
}

/// A render's status; `-o json` prints the RenderJob as the API server has it, for programs
/// (the Blender add-on polls it).
#[derive(Debug, Args)]
pub struct Status {
    pub name: String,
    /// Output format: the summary for people (default) or `json`.
    #[arg(long, short = 'o', value_enum, default_value_t = StatusOutput::Text)]
    pub output: StatusOutput,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusOutput {
    Text,
    Json,
}

/// Delete the failed batches' Jobs so the operator creates them again.
#[derive(Debug, Args)]
pub struct Retry {
    pub name: String,
    /// Follow the render afterwards (as `kubectl render watch`).
    #[arg(long, short = 'w')]
    pub watch: bool,
}

/// Render frames of a finished render again, in place: the others stay as they are.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  kubectl render rerender shot --frames 12,40-42 --watch")]
pub struct Rerender {
    pub name: String,
    /// The frames: `12,40-42` (frames of the render).
    #[arg(long, short = 'f')]
    pub frames: String,
    /// Wait until they are rendered.
    #[arg(long, short = 'w')]
    pub watch: bool,
}

/// Let a render's batches back onto a node it blocked (after batches failed there because of
/// the node): its failures so far are forgiven; new ones count again.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  kubectl render status shot   # lists the blocked nodes\n  kubectl render unblock shot kind-worker2"
)]
pub struct Unblock {
    pub name: String,
    /// The node, as `kubectl render status` names it.
    pub node: String,
}

/// Logs of a render's batch pods.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  kubectl render logs shot --batch 3\n  kubectl render logs shot -f"
)]
pub struct Logs {
    pub name: String,
    /// Only this batch (its index, as in `status`).
    #[arg(long, short = 'b')]
    pub batch: Option<u32>,
    /// Keep streaming.
    #[arg(long, short = 'f')]
    pub follow: bool,
}

/// Delete a RenderJob and its batch Jobs (frames in the storage stay).
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  kubectl render delete shot")]
pub struct Delete {
    pub name: String,
    /// Return at once instead of waiting until it is gone.
    #[arg(long)]
    pub no_wait: bool,
}

/// A web page on this machine with the namespace's renders: progress, batches, failures, the
/// newest frame and, once made, the preview video and contact sheet.
///
/// Serves on 127.0.0.1 only, with your kubeconfig; images and video come from the claim
/// through one read-only reader pod per claim, deleted when the ui stops.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  kubectl render ui --open\n  kubectl render ui -n shots --port 9000"
)]
pub struct Ui {
    /// Port on 127.0.0.1 (0: any free one).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Open the page in the default browser.
    #[arg(long)]
    pub open: bool,
    #[command(flatten)]
    pub transfer: Transfer,
}

/// Print a shell completion script.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  source <(kubectl render completion bash)\n  kubectl render completion zsh > \"${fpath[1]}/_kubectl-render\""
)]
pub struct Completion {
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Each verb's one-line help and, for the verbs that share [`Named`], its example.
const VERBS: [(&str, &str, Option<&str>); 14] = [
    ("submit", "Upload a .blend and start rendering it", None),
    ("watch", "Follow a render with progress bars", None),
    ("fetch", "Download the rendered frames not here yet", None),
    ("list", "List RenderJobs", None),
    (
        "status",
        "Summary of a render's status and Events",
        Some("Example:\n  kubectl render status shot"),
    ),
    ("logs", "Logs of a render's batch pods", None),
    (
        "retry",
        "Render the failed batches again (only their frames not on disk)",
        Some("Example:\n  kubectl render retry shot --watch"),
    ),
    (
        "rerender",
        "Render frames of a finished render again, in place",
        None,
    ),
    (
        "unblock",
        "Let a render's batches back onto a node it blocked",
        None,
    ),
    (
        "pause",
        "Pause a render: running batches stop, finished frames stay",
        Some("Example:\n  kubectl render pause shot"),
    ),
    (
        "resume",
        "Resume a paused render",
        Some("Example:\n  kubectl render resume shot"),
    ),
    (
        "delete",
        "Delete a RenderJob and its Jobs (frames stay)",
        None,
    ),
    (
        "ui",
        "A local web page with live progress, frames and the preview",
        None,
    ),
    ("completion", "Print a shell completion script", None),
];

/// The clap command, with each verb's one-line help and example.
pub fn command() -> clap::Command {
    use clap::CommandFactory as _;
    let mut cmd = Cli::command();
    for (name, about, example) in VERBS {
        cmd = cmd.mut_subcommand(name, |c| {
            let c = c.about(about);
            match example {
                Some(e) => c.after_help(e),
                None => c,
            }
        });
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_is_well_formed_and_every_verb_has_an_example() {
        let cmd = command();
        cmd.clone().debug_assert();
        for sub in cmd.get_subcommands() {
            let help = sub
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(
                help.contains("kubectl render"),
                "{} has no example",
                sub.get_name()
            );
            assert!(sub.get_about().is_some(), "{} has no about", sub.get_name());
        }
    }
}
