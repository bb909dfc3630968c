//! Creating an object in a namespace made a moment ago: admission webhooks that look the
//! namespace up in an informer refuse it until they have seen the namespace. The operator and
//! the kubectl plugin both create there.

use std::fmt::Debug;
use std::time::Duration;

use kube::Api;
use kube::api::PostParams;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Whether an admission webhook refused a request only because the object's namespace is not
/// in its cache yet. Kueue's webhooks look the namespace up in an informer, which lags a
/// namespace created a moment ago by a few milliseconds: the same request passes on retry.
pub fn webhook_lags_namespace(status: &kube::core::Status) -> bool {
    status.code == 404
        && status.message.starts_with("admission webhook")
        && status.message.contains("Namespace")
        && status.message.contains("not found")
}

/// How long [`create`] retries while a webhook does not know the namespace yet.
const WEBHOOK_LAG: Duration = Duration::from_secs(10);

/// Create `obj`, retrying (up to 10 s) while an admission webhook has not yet seen its
/// namespace ([`webhook_lags_namespace`]); any other answer is returned as it is.
pub async fn create<K>(api: &Api<K>, obj: &K) -> kube::Result<K>
where
    K: Clone + DeserializeOwned + Serialize + Debug,
{
    let give_up = tokio::time::Instant::now() + WEBHOOK_LAG;
    loop {
        match api.create(&PostParams::default(), obj).await {
            Err(kube::Error::Api(s))
                if webhook_lags_namespace(&s) && tokio::time::Instant::now() < give_up =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_webhook_that_has_not_seen_the_namespace_is_waited_out() {
        let status = |code, message: &str| kube::core::Status {
            code,
            message: message.into(),
            reason: "NotFound".into(),
            ..Default::default()
        };
        let lag = "admission webhook \"mpod.kb.io\" denied the request: Namespace \"rf-kind-41836\" not found";
        assert!(webhook_lags_namespace(&status(404, lag)));
        // The namespace really is gone, the webhook refused for another reason, or another
        // kind of 404: answers to return, not to wait out.
        let answers = [
            (404, "namespaces \"rf\" not found"),
            (
                403,
                "admission webhook \"vpod.kb.io\" denied the request: Namespace \"rf\" not found",
            ),
            (
                404,
                "admission webhook \"mpod.kb.io\" denied the request: queue \"q\" not found",
            ),
            (404, "jobs.batch \"shot-0000\" not found"),
        ];
        for (code, message) in answers {
            assert!(!webhook_lags_namespace(&status(code, message)), "{message}");
        }
    }
}
