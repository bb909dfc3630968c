//! The least any farm that makes one Job per batch must do, as a yardstick for `bench/many.sh`:
//! RENDERS chains of BATCHES one-pod Jobs, PARALLELISM of each chain unfinished at a time, the
//! next created when one completes. One watch (Jobs), one create per batch, nothing else: no
//! pod watch, no status, no Events, no checks. Whatever the control plane spends on this side
//! is the cost of a Job per batch itself, which no operator can go below.
//!
//!   job_chain -n NAMESPACE --template JOB.json --renders 100 --batches 100 --parallelism 5
//!
//! JOB.json is a Job to copy (a renderfarm batch Job with what the API server filled in taken
//! out); each copy is named `cNNN-BBBB` and its `renderfarm.io/renderjob` labels (Job and pod)
//! say `cNNN`. Prints a line per chain when its last Job is seen complete ("stamp-us cNNN
//! Complete", as `stamps` prints); once every chain is done it waits to be stopped, so that
//! the bench can read its CPU time.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};

const RENDER_LABEL: &str = "renderfarm.io/renderjob";
const CHAIN_LABEL: &str = "bench.renderfarm.io/chain";

#[derive(Parser)]
struct Args {
    #[arg(short, long)]
    namespace: String,
    #[arg(long)]
    template: std::path::PathBuf,
    #[arg(long)]
    renders: u32,
    #[arg(long)]
    batches: u32,
    #[arg(long)]
    parallelism: u32,
}

/// Batch `b` of chain `r`: the template, renamed and relabelled.
fn batch_job(template: &Job, r: u32, b: u32) -> Job {
    let chain = format!("c{r:03}");
    let mut job = template.clone();
    job.metadata.name = Some(format!("{chain}-{b:04}"));
    let labels = job.metadata.labels.get_or_insert_default();
    labels.insert(RENDER_LABEL.into(), chain.clone());
    labels.insert(CHAIN_LABEL.into(), chain.clone());
    if let Some(spec) = job.spec.as_mut()
        && let Some(meta) = spec.template.metadata.as_mut()
    {
        meta.labels
            .get_or_insert_default()
            .insert(RENDER_LABEL.into(), chain.clone());
        meta.annotations
            .get_or_insert_default()
            .insert(RENDER_LABEL.into(), chain);
    }
    job
}

/// Creates the Job, again after a second while the API server fails (it never refuses these).
async fn create(api: Api<Job>, job: Job) {
    loop {
        match api.create(&PostParams::default(), &job).await {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 409 => return,
            Err(e) => {
                eprintln!(
                    "create {}: {e}",
                    job.metadata.name.as_deref().unwrap_or("?")
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

fn complete(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Complete" && c.status == "True")
        })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let template: Job = serde_json::from_slice(
        &std::fs::read(&args.template).with_context(|| format!("{:?}", args.template))?,
    )?;
    let mut config = kube::Config::infer().await.context("no cluster")?;
    // Named in the API server's audit log, as the operator is.
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static("job-chain"),
    ));
    let api: Api<Job> = Api::namespaced(kube::Client::try_from(config)?, &args.namespace);

    // Watch first, so that no completion goes by unseen.
    let mut changes = watcher(api.clone(), watcher::Config::default().labels(CHAIN_LABEL))
        .default_backoff()
        .applied_objects()
        .boxed();
    let mut next: HashMap<u32, u32> = HashMap::new();
    for r in 0..args.renders {
        let first = args.parallelism.min(args.batches);
        for b in 0..first {
            tokio::spawn(create(api.clone(), batch_job(&template, r, b)));
        }
        next.insert(r, first);
    }
    let mut seen: HashSet<String> = HashSet::new();
    let mut done: HashMap<u32, u32> = HashMap::new();
    let mut finished = 0;
    let mut out = std::io::stdout().lock();
    while finished < args.renders {
        let job = match changes.next().await {
            Some(Ok(job)) => job,
            Some(Err(e)) => {
                eprintln!("watch: {e}");
                continue;
            }
            None => anyhow::bail!("the watch ended"),
        };
        let Some(name) = job.metadata.name.clone() else {
            continue;
        };
        if !complete(&job) || !seen.insert(name.clone()) {
            continue;
        }
        let Some(r) = name
            .strip_prefix('c')
            .and_then(|n| n.split('-').next())
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let count = done.entry(r).or_default();
        *count += 1;
        if *count == args.batches {
            finished += 1;
            let micros = SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros();
            writeln!(out, "{micros} c{r:03} Complete")?;
            out.flush()?;
        }
        let b = next.entry(r).or_default();
        if *b < args.batches {
            tokio::spawn(create(api.clone(), batch_job(&template, r, *b)));
            *b += 1;
        }
    }
    std::future::pending::<()>().await;
    Ok(())
}
