//! Operational endpoints: liveness, readiness (the store and the event bus) and metrics.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::state::AppState;

/// `/healthz`, `/readyz`, `/metrics`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz_get))
        .route("/metrics", get(metrics_get))
}

async fn readyz_get(State(state): State<AppState>) -> Response {
    let store_ok = state.health.ping().await.is_ok();
    let events_ok = state.bus.is_connected();
    let status = if store_ok && events_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if status == StatusCode::OK { "ready" } else { "not_ready" },
        "store": if store_ok { "ok" } else { "unreachable" },
        "events": if events_ok { "connected" } else { "disconnected: caches bypassed until resynchronised" },
    });
    (status, Json(body)).into_response()
}

async fn metrics_get(State(state): State<AppState>) -> Response {
    if let Ok(n) = state.auth.live_session_count().await {
        state.metrics.set_live_sessions(n);
    }
    state
        .metrics
        .set_audit_unstored(state.auth.audit().unstored());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        state.metrics.render(),
    )
        .into_response()
}
