//! `/healthz`, `/readyz` and `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::Result;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct Health {
    pub metrics: Arc<Metrics>,
    /// True once the caches are filled and the controller reconciles.
    pub ready: Arc<AtomicBool>,
    /// True while this replica waits for the leader lease. A standby is ready to take over, so
    /// it reports Ready: a rolling update waits for the new replica to be Ready before it stops
    /// the old one, which holds the lease, and would otherwise never finish.
    pub standby: Arc<AtomicBool>,
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(h): State<Health>) -> impl IntoResponse {
    if h.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else if h.standby.load(Ordering::Relaxed) {
        (StatusCode::OK, "standby: waiting for the leader lease")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
    }
}

async fn metrics(State(h): State<Health>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        h.metrics.encode(),
    )
}

pub fn router(health: Health) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(health)
}

/// Serve until the process ends.
pub async fn serve(addr: SocketAddr, health: Health) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /healthz, /readyz and /metrics");
    axum::serve(listener, router(health)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn readyz_of(ready: bool, standby: bool) -> StatusCode {
        let health = Health {
            metrics: Arc::new(Metrics::default()),
            ready: Arc::new(AtomicBool::new(ready)),
            standby: Arc::new(AtomicBool::new(standby)),
        };
        readyz(State(health)).await.into_response().status()
    }

    #[tokio::test]
    async fn readyz_is_ready_when_synced_or_standing_by() {
        assert_eq!(readyz_of(true, false).await, StatusCode::OK);
        assert_eq!(readyz_of(false, true).await, StatusCode::OK);
        assert_eq!(
            readyz_of(false, false).await,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
