//! Waits that say what they waited for when they time out: for one object (a watch of it),
//! for a set of objects (a watch of all of them), or for anything else (polling).
//!
//! Watches live through API server restarts and compacted resource versions: a test that
//! restarts the API server, or runs while it is slow, waits for its condition, not for the
//! first hiccup.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use futures::TryStreamExt as _;
use kube::api::Api;
use kube::runtime::wait::{Condition, await_condition};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Resource, ResourceExt as _};
use serde::de::DeserializeOwned;
use tokio::time::{Instant, sleep, timeout as within};

/// How often [`wait_until`] asks again.
pub const POLL: Duration = Duration::from_millis(200);
/// How long [`await_object`] waits before watching again after its watch failed.
pub const REWATCH: Duration = Duration::from_millis(500);

/// Why a wait ended without what it waited for.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("timed out after {timeout:?} waiting for {what} ({detail})")]
    TimedOut {
        what: String,
        timeout: Duration,
        /// What was last seen: the last error, how many objects.
        detail: String,
    },
    #[error("the watch for {what} ended")]
    WatchEnded { what: String },
}

fn timed_out(what: &str, timeout: Duration, detail: String) -> anyhow::Error {
    WaitError::TimedOut {
        what: what.to_string(),
        timeout,
        detail,
    }
    .into()
}

/// Wait, with kube's [`await_condition`] (a watch of the one object), until `cond` holds for
/// the object `name`; fail naming `what` after `timeout`. A watch cut off (an API server
/// restart) is started again until the time is up. Returns the object (`None`: it is gone).
pub async fn await_object<K>(
    api: Api<K>,
    name: &str,
    timeout: Duration,
    what: &str,
    cond: impl Condition<K>,
) -> anyhow::Result<Option<K>>
where
    K: Clone + Debug + Send + DeserializeOwned + Resource + 'static,
{
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let holds = |obj: Option<&K>| cond.matches_object(obj);
        match within(left, await_condition(api.clone(), name, holds)).await {
            Ok(Ok(obj)) => return Ok(obj),
            Ok(Err(e)) => last_err = Some(e),
            Err(_) => break,
        }
        if Instant::now() >= deadline {
            break;
        }
        sleep(REWATCH).await;
    }
    Err(timed_out(
        what,
        timeout,
        format!("last error: {last_err:?}"),
    ))
}

/// [`await_object`] for a condition on the object itself: waits through its absence (not
/// created yet, deleted and created again) and returns it once `cond` holds.
pub async fn await_existing<K>(
    api: Api<K>,
    name: &str,
    timeout: Duration,
    what: &str,
    cond: impl Fn(&K) -> bool,
) -> anyhow::Result<K>
where
    K: Clone + Debug + Send + DeserializeOwned + Resource + 'static,
{
    let holds = |obj: Option<&K>| obj.is_some_and(&cond);
    await_object(api, name, timeout, what, holds)
        .await?
        // `holds` is false without an object, so the wait cannot end on one that is gone.
        .ok_or_else(|| WaitError::WatchEnded { what: what.into() }.into())
}

/// Watch every object of `api` (a namespace's Jobs, pods, ...) and return as soon as `check`,
/// called with all of them after the first list and after every change, returns `Some`; fail
/// naming `what` after `timeout`. The watch lives through API server restarts.
pub async fn watch_until<K, T>(
    api: Api<K>,
    timeout: Duration,
    what: &str,
    mut check: impl FnMut(&[&K]) -> Option<T>,
) -> anyhow::Result<T>
where
    K: Clone + Debug + Send + DeserializeOwned + Resource + 'static,
{
    let mut last_err = None;
    let mut last_seen = 0;
    let run = async {
        let stream = watcher(api, watcher::Config::default()).default_backoff();
        futures::pin_mut!(stream);
        let key = |o: &K| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any());
        // Objects as of the last complete list; a relist is gathered aside and replaces them
        // whole, so `check` never sees half a list.
        let (mut objects, mut listing) = (BTreeMap::new(), None::<BTreeMap<String, K>>);
        let mut synced = false;
        loop {
            match stream.try_next().await {
                Ok(Some(watcher::Event::Init)) => listing = Some(BTreeMap::new()),
                Ok(Some(watcher::Event::InitApply(o))) => {
                    listing.get_or_insert_default().insert(key(&o), o);
                }
                Ok(Some(watcher::Event::InitDone)) => {
                    objects = listing.take().unwrap_or_default();
                    synced = true;
                }
                Ok(Some(watcher::Event::Apply(o))) => {
                    objects.insert(key(&o), o);
                }
                Ok(Some(watcher::Event::Delete(o))) => {
                    objects.remove(&key(&o));
                }
                Ok(None) => return Err(WaitError::WatchEnded { what: what.into() }.into()),
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            }
            if synced && listing.is_none() {
                let all: Vec<&K> = objects.values().collect();
                last_seen = all.len();
                if let Some(v) = check(&all) {
                    return Ok(v);
                }
            }
        }
    };
    match within(timeout, run).await {
        Ok(result) => result,
        Err(_) => Err(timed_out(
            what,
            timeout,
            format!("{last_seen} objects at the end; last watch error: {last_err:?}"),
        )),
    }
}

/// Poll `check` until it returns `Some`, or fail naming `what`. An error from `check` is
/// remembered (the timeout shows the last) and `check` is asked again. For what no watch
/// shows (an HTTP endpoint, a file); objects are better waited for with [`await_object`] or
/// [`watch_until`].
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() > deadline {
            return Err(timed_out(
                what,
                timeout,
                format!("last error: {last_err:?}"),
            ));
        }
        sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests;
