//! `kubectl render logs`: the render container's output of each batch's newest pod.

use std::collections::BTreeMap;

use futures::{AsyncBufReadExt as _, StreamExt as _};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, LogParams};
use kube::{Api, ResourceExt as _};
use renderfarm_api::names::{BATCH_LABEL, CONTAINER, RENDERJOB_LABEL, renderjob_label};
use tokio::sync::mpsc;

use crate::cli::{Global, Logs};
use crate::cluster::Ctx;
use crate::error::{Error, Result};

pub async fn run(global: &Global, args: &Logs) -> Result<()> {
    let ctx = Ctx::new(global).await?;
    ctx.renderjob(&args.name).await?;
    let pods: Api<Pod> = ctx.api();
    let mut selector = format!("{RENDERJOB_LABEL}={}", renderjob_label(&args.name));
    if let Some(b) = args.batch {
        selector.push_str(&format!(",{BATCH_LABEL}={b}"));
    }
    let list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| ctx.unreachable(e))?;
    // The newest pod of each batch: the one that rendered last.
    let mut newest: BTreeMap<u32, Pod> = BTreeMap::new();
    for pod in list.items {
        let Some(batch) = pod.labels().get(BATCH_LABEL).and_then(|b| b.parse().ok()) else {
            continue;
        };
        let newer = newest
            .get(&batch)
            .is_none_or(|p| p.creation_timestamp() < pod.creation_timestamp());
        if newer {
            newest.insert(batch, pod);
        }
    }
    if newest.is_empty() {
        let which = args
            .batch
            .map(|b| format!("batch {b} of "))
            .unwrap_or_default();
        return Err(Error::Usage(format!(
            "no pods for {which}{} yet (kubectl render status {})",
            args.name, args.name
        )));
    }
    let prefix = newest.len() > 1;
    let lp = LogParams {
        follow: args.follow,
        container: Some(CONTAINER.to_string()),
        ..Default::default()
    };
    if !args.follow {
        for (batch, pod) in &newest {
            match pods.logs(&pod.name_any(), &lp).await {
                Ok(text) => print_lines(prefix, *batch, &text),
                Err(e) => eprintln!("batch {batch:04}: no logs from {}: {e}", pod.name_any()),
            }
        }
        return Ok(());
    }
    let (tx, mut rx) = mpsc::channel::<(u32, String)>(256);
    for (batch, pod) in newest {
        let (pods, tx, lp, name) = (pods.clone(), tx.clone(), lp.clone(), pod.name_any());
        tokio::spawn(async move {
            match pods.log_stream(&name, &lp).await {
                Ok(stream) => {
                    let mut lines = stream.lines();
                    while let Some(Ok(line)) = lines.next().await {
                        if tx.send((batch, line)).await.is_err() {
                            break;
                        }
                    }
                }
                Err(e) => eprintln!("batch {batch:04}: no logs from {name}: {e}"),
            }
        });
    }
    drop(tx);
    loop {
        tokio::select! {
            line = rx.recv() => match line {
                Some((batch, line)) => print_lines(prefix, batch, &line),
                None => return Ok(()),
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

fn print_lines(prefix: bool, batch: u32, text: &str) {
    for line in text.lines() {
        if prefix {
            crate::out!("[batch {batch:04}] {line}");
        } else {
            crate::out!("{line}");
        }
    }
}
