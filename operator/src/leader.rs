//! Leader election on a Kubernetes Lease, so the chart can run two replicas: only the leader
//! reconciles, and a standby takes over within the lease duration.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use kube_lease_manager::LeaseManagerBuilder;
use parking_lot::Mutex;
use tracing::{debug, error, info};

use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct LeaderSettings {
    pub lease_name: String,
    pub namespace: String,
    pub identity: String,
    /// Seconds a lease stays valid without renewal; a standby takes over after it.
    pub lease_seconds: u64,
}

impl LeaderSettings {
    fn grace_seconds(&self) -> u64 {
        (self.lease_seconds / 3).max(1)
    }
}

/// The lease as this process last saw it in the API: whom it names and when its holder last
/// renewed it, by the holder's own clock. Every write checks it first ([`Fence::check`]): a
/// process frozen past its lease (SIGSTOP, a paused VM) wakes up with stale caches and timers
/// that fire at once, and would otherwise write before its lease manager notices, a round trip
/// later, that another replica leads.
#[derive(Debug)]
pub struct Fence {
    identity: String,
    /// How long after a renewal writes are allowed: the lease's duration less half the grace
    /// period, which covers clock skew between replicas; a renewal is due a whole grace
    /// period before the lease runs out, so a leader stays writable from one to the next.
    valid_for: Duration,
    seen: Mutex<Option<(Option<String>, Option<Timestamp>)>>,
}

impl Fence {
    pub fn new(settings: &LeaderSettings) -> Fence {
        let valid_for = Duration::from_secs(settings.lease_seconds)
            .saturating_sub(Duration::from_millis(settings.grace_seconds() * 500));
        Fence {
            identity: settings.identity.clone(),
            valid_for,
            seen: Mutex::new(None),
        }
    }

    /// Ok while the lease last seen names this process and was renewed recently enough.
    pub fn check(&self) -> Result<()> {
        let seen = self.seen.lock().clone();
        let current = seen.is_some_and(|(holder, renewed)| {
            holder.as_deref() == Some(self.identity.as_str())
                && renewed
                    .and_then(|r| r.checked_add(self.valid_for).ok())
                    .is_some_and(|until| Timestamp::now() < until)
        });
        if current {
            Ok(())
        } else {
            Err(LeaderError::NotCurrent.into())
        }
    }

    /// Takes in the lease as the watch shows it (`None`: there is none).
    pub(crate) fn observe(&self, lease: Option<&Lease>) {
        let spec = lease.and_then(|l| l.spec.as_ref());
        let seen = spec.map(|s| {
            (
                s.holder_identity.clone(),
                s.renew_time.as_ref().map(|t| t.0),
            )
        });
        *self.seen.lock() = seen;
    }

    /// Keep [`Fence::observe`]ing the lease (a watch of that one object).
    async fn watch(&self, client: Client, settings: &LeaderSettings) {
        let leases: Api<Lease> = Api::namespaced(client, &settings.namespace);
        let config =
            watcher::Config::default().fields(&format!("metadata.name={}", settings.lease_name));
        let stream = watcher(leases, config).default_backoff();
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Apply(l) | watcher::Event::InitApply(l)) => {
                    self.observe(Some(&l))
                }
                Ok(watcher::Event::Delete(_)) => self.observe(None),
                Ok(watcher::Event::Init | watcher::Event::InitDone) => {}
                Err(e) => debug!(error = %e, "lease watch"),
            }
        }
    }
}

/// Why this replica may not, or no longer, act as the leader.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("the lease this replica holds is not current: not writing")]
    NotCurrent,
    #[error("the watch of the lease ended")]
    WatchEnded,
    #[error("lost the lease")]
    Lost,
    #[error("could not {verb} the lease: {message}")]
    Lease { verb: &'static str, message: String },
}

/// A lease manager's error (its own type is not `Send + Sync` in every version) as what it
/// was doing.
fn lease_error(verb: &'static str) -> impl FnOnce(String) -> Error {
    move |message| LeaderError::Lease { verb, message }.into()
}

/// Wait until this instance holds the lease, then run `work`; return an error as soon as the
/// lease is lost, so the process exits and can never reconcile beside a new leader. Until it
/// has noticed, `fence` keeps `work` from writing once the lease is not current.
/// `standby` is true while waiting for the lease (see `http::Health::standby`).
pub async fn run_as_leader<F>(
    client: Client,
    settings: &LeaderSettings,
    fence: &Fence,
    standby: &AtomicBool,
    work: F,
) -> Result<()>
where
    F: std::future::Future<Output = Result<()>>,
{
    let manager = LeaseManagerBuilder::new(client.clone(), &settings.lease_name)
        .with_namespace(&settings.namespace)
        .with_identity(&settings.identity)
        .with_duration(settings.lease_seconds)
        .with_grace(settings.grace_seconds())
        .with_field_manager(format!("renderfarm-operator-lease-{}", settings.identity))
        .build()
        .await
        .map_err(|e| lease_error("set up")(e.to_string()))?;
    let (mut leading, _task) = manager.watch().await;
    let fence_watch = fence.watch(client, settings);
    futures::pin_mut!(fence_watch);
    info!(lease = %settings.lease_name, identity = %settings.identity, "waiting to become leader");
    standby.store(true, Ordering::Relaxed);
    let lead = async {
        while !*leading.borrow_and_update() {
            leading
                .changed()
                .await
                .map_err(|e| lease_error("follow")(e.to_string()))?;
        }
        // The watch shows the lease this replica just took within moments; work that
        // started earlier would only be refused its writes.
        let since = Instant::now();
        while fence.check().is_err()
            && since.elapsed() < Duration::from_secs(settings.lease_seconds)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok::<_, Error>(())
    };
    tokio::select! {
        res = lead => res?,
        _ = &mut fence_watch => return Err(LeaderError::WatchEnded.into()),
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
        _ = fence_watch => Err(LeaderError::WatchEnded.into()),
        _ = lost => {
            error!("lost the lease; stopping");
            // Leave the watch task a moment to log, then exit through the error.
            tokio::time::sleep(Duration::from_millis(100)).await;
            Err(LeaderError::Lost.into())
        }
    }
}

/// A fence and leases to show it, for tests here and in [`crate::client`].
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    /// The fence of replica "me" on a 15 s lease, which has seen no lease yet.
    pub fn fence() -> Fence {
        Fence::new(&LeaderSettings {
            lease_name: "l".into(),
            namespace: "n".into(),
            identity: "me".into(),
            lease_seconds: 15,
        })
    }

    /// The lease held by `holder`, renewed `renewed_secs_ago`.
    pub fn lease(holder: &str, renewed_secs_ago: i64) -> Lease {
        let renewed = Timestamp::now()
            .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(
                renewed_secs_ago,
            ))
            .expect("time");
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "l"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                     "renewTime": MicroTime(renewed)},
        }))
        .expect("lease")
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{fence, lease};

    #[test]
    fn writes_only_while_the_lease_seen_is_ours_and_current() {
        let f = fence();
        assert!(f.check().is_err(), "nothing seen yet");
        f.observe(Some(&lease("me", 1)));
        assert!(f.check().is_ok());
        // 15 s lease, 5 s grace: writable up to 12.5 s after the renewal.
        f.observe(Some(&lease("me", 12)));
        assert!(f.check().is_ok());
        f.observe(Some(&lease("me", 13)));
        assert!(f.check().is_err(), "renewal too old");
        f.observe(Some(&lease("other", 0)));
        assert!(f.check().is_err(), "someone else leads");
        f.observe(None);
        assert!(f.check().is_err(), "lease gone");
    }
}
