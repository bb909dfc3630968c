//! A watch that keeps up: one line per object change, stamped with this machine's clock in
//! microseconds when the change arrived, then the fields asked for. The benchmarks time changes
//! by these stamps; `kubectl get --watch` printing 20,000 pods on two loaded cores fell behind
//! and was dropped by the API server, so what it stamped was when it caught up.
//!
//!   stamps -n NAMESPACE pods|jobs|renderjobs [-l SELECTOR] [--field-selector F] POINTER...
//!
//! POINTERs are JSON pointers into the object (`/metadata/name`,
//! `/metadata/labels/renderfarm.io~1renderjob`: `~1` is a `/` in a key); a missing field prints
//! as an empty value, a space between values, as `kubectl -o jsonpath` does. A dropped watch is
//! listed again: objects then seen again print again, so readers keep an object's first stamp.
//!
//!   cargo run --release -p renderfarm --example stamps -- -n many pods /metadata/name /status/phase

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use renderfarm::crd::RenderJob;
use serde_json::Value;

#[derive(Parser)]
struct Args {
    #[arg(short, long)]
    namespace: String,
    /// pods, jobs or renderjobs.
    resource: String,
    #[arg(short = 'l', long)]
    selector: Option<String>,
    #[arg(long)]
    field_selector: Option<String>,
    /// The fields to print, as JSON pointers.
    #[arg(required = true)]
    pointers: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let resource = match args.resource.as_str() {
        "pods" => ApiResource::erase::<Pod>(&()),
        "jobs" => ApiResource::erase::<Job>(&()),
        "renderjobs" => ApiResource::erase::<RenderJob>(&()),
        other => bail!("{other}: pods, jobs or renderjobs"),
    };
    let client = kube::Client::try_default().await.context("no cluster")?;
    let api = Api::<DynamicObject>::namespaced_with(client, &args.namespace, &resource);
    let mut config = watcher::Config::default();
    if let Some(labels) = &args.selector {
        config = config.labels(labels);
    }
    if let Some(fields) = &args.field_selector {
        config = config.fields(fields);
    }
    let mut changes = watcher(api, config).default_backoff().boxed();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    while let Some(event) = changes.next().await {
        let object = match event {
            // The watcher lists again after its backoff; say so and go on.
            Err(e) => {
                eprintln!("watch: {e}");
                continue;
            }
            Ok(event) => event,
        };
        let object = match object {
            watcher::Event::Apply(o) | watcher::Event::InitApply(o) => o,
            watcher::Event::Init => {
                eprintln!("listing");
                continue;
            }
            watcher::Event::InitDone | watcher::Event::Delete(_) => continue,
        };
        let micros = SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros();
        let json = serde_json::to_value(&object)?;
        let values: Vec<String> = args
            .pointers
            .iter()
            .map(|p| match json.pointer(p) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(v) => v.to_string(),
            })
            .collect();
        writeln!(out, "{micros} {}", values.join(" "))?;
        // A line per change as it comes: the reader may be killed at any moment.
        out.flush()?;
    }
    Ok(())
}
