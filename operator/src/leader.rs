//! Leader election on a Kubernetes Lease, so the chart can run two replicas: only the leader
//! reconciles, and a standby takes over within the lease duration.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tracing::{error, info};

use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct LeaderSettings {
    pub lease_name: String,
    pub namespace: String,
    pub identity: String,
    /// Seconds a lease stays valid without renewal; a standby takes over after it.
    pub lease_seconds: u64,
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::Leader(e.to_string())
}

/// Wait until this instance holds the lease, then run `work`; return an error as soon as the
/// lease is lost, so the process exits and can never reconcile beside a new leader.
/// `standby` is true while waiting for the lease (see `http::Health::standby`).
pub async fn run_as_leader<F>(
    client: Client,
    settings: &LeaderSettings,
    standby: &AtomicBool,
    work: F,
) -> Result<()>
where
    F: std::future::Future<Output = Result<()>>,
{
    let manager = LeaseManagerBuilder::new(client, &settings.lease_name)
        .with_namespace(&settings.namespace)
        .with_identity(&settings.identity)
        .with_duration(settings.lease_seconds)
        .with_grace((settings.lease_seconds / 3).max(1))
        .with_field_manager(format!("renderfarm-operator-lease-{}", settings.identity))
        .build()
        .await
        .map_err(err)?;
    let (mut leading, _task) = manager.watch().await;
    info!(lease = %settings.lease_name, identity = %settings.identity, "waiting to become leader");
    standby.store(true, Ordering::Relaxed);
    while !*leading.borrow_and_update() {
        leading.changed().await.map_err(err)?;
    }
    standby.store(false, Ordering::Relaxed);
    info!(identity = %settings.identity, "became leader");
    let lost = async {
        loop {
            if leading.changed().await.is_err() || !*leading.borrow_and_update() {
                return;
            }
        }
    };
    tokio::select! {
        res = work => res,
        _ = lost => {
            error!("lost the lease; stopping");
            // Leave the watch task a moment to log, then exit through the error.
            tokio::time::sleep(Duration::from_millis(100)).await;
            Err(Error::Leader("lost the lease".into()))
        }
    }
}
