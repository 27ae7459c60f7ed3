//! The operations listener: liveness, readiness and Prometheus metrics, plain HTTP.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::AppState;

/// Routes of the ops listener.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Ready when the database takes a commit within a second (not only a read): a read-only
/// SQLite file, a PostgreSQL standby, a lost audit head or an outage report unready, quickly.
/// Every answer is published as `ninsho_ready` (docs/metrics.md), so flapping shows.
async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let (status, text) = check(&state).await;
    state.metrics.readiness_checked(status == StatusCode::OK);
    (status, text)
}

async fn check(state: &AppState) -> (StatusCode, &'static str) {
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    let answer = match tokio::time::timeout(std::time::Duration::from_secs(1), state.store.probe_commit()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the database does not take a commit");
            Err("database does not commit")
        }
        Err(_) => Err("database does not answer"),
    };
    match answer {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let text = state.metrics.render(state.clock.unix(), &state.store.pool_usage());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
}
