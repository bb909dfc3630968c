//! `renderfarm-operator`: `run` the controller (the default) or print the `crd`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::{Parser, Subcommand};
use render_contract::IsolationProbe;
use renderfarm::controller::{self, Settings};
use renderfarm::http::{self, Health};
use renderfarm::job::{Isolation, JobConfig};
use renderfarm::leader::{self, LeaderSettings};
use renderfarm::metrics::Metrics;
use renderfarm::telemetry::{self, LogFormat};

#[derive(Parser, Debug)]
#[command(
    name = "renderfarm-operator",
    version,
    about = "Renders Blender animations on Kubernetes, one Job per batch of frames",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the controller (the default).
    Run(Box<RunArgs>),
    /// Print the RenderJob CustomResourceDefinition as YAML.
    Crd,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// The render-node image batch pods run, unless a RenderJob overrides it.
    #[arg(
        long,
        env = "RENDERFARM_NODE_IMAGE",
        default_value = "renderfarm/render-node:dev"
    )]
    node_image: String,
    /// Render-node images of further Blender versions: `5.0=REPO:TAG,4.2=REPO:TAG`.
    #[arg(long, env = "RENDERFARM_NODE_IMAGES", value_delimiter = ',', value_parser = parse_version_image)]
    node_images: Vec<(String, String)>,
    /// The Blender version of a RenderJob without spec.blenderVersion (its image: --node-image).
    #[arg(long, env = "RENDERFARM_BLENDER_VERSION", default_value = renderfarm::job::DEFAULT_BLENDER_VERSION)]
    blender_version: String,
    /// Disruptions (evictions, preemptions, node loss) a batch may have before it fails as
    /// Evicted.
    #[arg(long, env = "RENDERFARM_MAX_DISRUPTIONS", default_value_t = renderfarm::job::MAX_DISRUPTIONS as u64, value_parser = clap::value_parser!(u64).range(1..=1000))]
    max_disruptions: u64,
    /// Namespaces whose batch pods a NetworkPolicy isolates (`*`: every one): there render-node
    /// waits, before Blender starts, until the policy is in force for its pod. The chart lists
    /// the namespaces it gives its batch NetworkPolicy.
    #[arg(long, env = "RENDERFARM_ISOLATED_NAMESPACES", value_delimiter = ',')]
    isolated_namespaces: Vec<String>,
    /// What render-node connects to in those namespaces to learn that: an address the policy
    /// blocks (IP:PORT), or `api-server`, the API server's Service.
    #[arg(long, env = "RENDERFARM_ISOLATION_PROBE", default_value = IsolationProbe::API_SERVER)]
    isolation_probe: IsolationProbe,
    /// Pull policy for the render-node image (Always, IfNotPresent, Never).
    #[arg(long, env = "RENDERFARM_NODE_IMAGE_PULL_POLICY")]
    node_image_pull_policy: Option<String>,
    /// Watch RenderJobs in this namespace only (default: all namespaces).
    #[arg(long, env = "RENDERFARM_NAMESPACE")]
    namespace: Option<String>,
    /// Address of the /healthz, /readyz and /metrics server.
    #[arg(long, env = "RENDERFARM_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Log format.
    #[arg(long, env = "RENDERFARM_LOG_FORMAT", value_enum, default_value_t)]
    log_format: LogFormat,
    /// This instance's name in Events and in the leader lease (the chart sets the pod name).
    #[arg(long, env = "POD_NAME")]
    instance: Option<String>,
    /// Reconcile only while holding a Lease, so several replicas can run.
    #[arg(long, env = "RENDERFARM_LEADER_ELECT")]
    leader_elect: bool,
    /// Namespace of the leader Lease (the chart sets the release namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Seconds the lease is valid without renewal; a standby takes over after that.
    #[arg(long, env = "RENDERFARM_LEASE_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..=300))]
    lease_seconds: u64,
}

/// `5.0=renderfarm/render-node:5.0` → (`5.0`, the image).
fn parse_version_image(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((v, image)) if !v.is_empty() && !image.is_empty() => {
            Ok((v.trim().to_string(), image.trim().to_string()))
        }
        _ => Err(format!("{s:?} is not VERSION=IMAGE")),
    }
}

/// The batch pods' isolation, if any namespace has it (an empty list item is no namespace).
fn isolation(namespaces: Vec<String>, probe: IsolationProbe) -> Option<Isolation> {
    let namespaces: std::collections::BTreeSet<String> = namespaces
        .into_iter()
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect();
    (!namespaces.is_empty()).then_some(Isolation { namespaces, probe })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crd) => {
            print!("{}", renderfarm::crd_yaml()?);
            Ok(())
        }
        Some(Command::Run(args)) => run(*args).await,
        None => run(cli.run).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_format);
    let mut config = kube::Config::infer().await?;
    // Names us in the API server's audit log and request metrics (kube sets no User-Agent).
    config.headers.push((
        axum::http::header::USER_AGENT,
        axum::http::HeaderValue::from_static(concat!(
            "renderfarm-operator/",
            env!("CARGO_PKG_VERSION")
        )),
    ));
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let standby = Arc::new(AtomicBool::new(false));
    let health = Health {
        metrics: metrics.clone(),
        ready: ready.clone(),
        standby: standby.clone(),
    };
    let identity = args
        .instance
        .clone()
        .unwrap_or_else(|| format!("renderfarm-operator-{}", std::process::id()));
    let lease = LeaderSettings {
        lease_name: "renderfarm-operator".into(),
        namespace: args.lease_namespace,
        identity,
        lease_seconds: args.lease_seconds,
    };
    let fence = args
        .leader_elect
        .then(|| Arc::new(leader::Fence::new(&lease)));
    let client = renderfarm::client::new(config, metrics.clone(), fence.clone())?;
    let settings = Settings {
        job: JobConfig {
            image: args.node_image,
            image_pull_policy: args.node_image_pull_policy,
            images: args.node_images.into_iter().collect(),
            default_version: args.blender_version,
            max_disruptions: usize::try_from(args.max_disruptions).unwrap_or(usize::MAX),
            isolation: isolation(args.isolated_namespaces, args.isolation_probe),
        },
        namespace: args.namespace,
        instance: args.instance,
        fence: fence.clone(),
    };
    let controller = controller::run(client.clone(), settings, metrics, ready);
    let work = async {
        if let Some(fence) = &fence {
            leader::run_as_leader(client, &lease, fence, &standby, controller).await
        } else {
            controller.await
        }
    };
    tokio::select! {
        res = http::serve(args.listen, health) => res?,
        res = work => res?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolated_namespaces_from_the_chart() {
        let probe = IsolationProbe::ApiServer;
        let list = |s: &[&str]| s.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        // The chart sets the variable to a comma list; an empty one isolates nowhere.
        assert_eq!(isolation(list(&[""]), probe), None);
        assert_eq!(isolation(vec![], probe), None);
        let got = isolation(list(&["studio", " fx ", ""]), probe).expect("isolation");
        assert_eq!(got.namespaces, ["fx", "studio"].map(String::from).into());
        assert!(got.covers("fx") && !got.covers("other"));
        let cli = Cli::try_parse_from([
            "renderfarm-operator",
            "--isolated-namespaces",
            "a,b",
            "--isolation-probe",
            "10.0.0.9:8443",
        ])
        .expect("parses");
        let got = isolation(cli.run.isolated_namespaces, cli.run.isolation_probe);
        assert_eq!(
            got.map(|i| i.probe.to_string()).as_deref(),
            Some("10.0.0.9:8443")
        );
    }
}
