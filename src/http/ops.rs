//! Operator endpoints: `GET /metrics` (Prometheus text format), `GET /healthz` (the process
//! answers) and `GET /readyz` (the store answers too).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::HttpState;
use crate::telemetry::prometheus::{FEED_LAG, LOG_LINES_DROPPED};

/// How long `/readyz` waits for the store.
const READY_TIMEOUT: Duration = Duration::from_secs(1);

/// The Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Handles `GET /metrics`. Gauges that describe "now" (the revocation feed's lag) are updated
/// at scrape time, so the value is exact whatever the scrape interval.
pub async fn metrics(State(state): State<HttpState>) -> Response {
    let Some(handle) = state.metrics else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder unavailable\n",
        )
            .into_response();
    };
    metrics::counter!(LOG_LINES_DROPPED).absolute(crate::telemetry::logs::dropped());
    if let Ok(sessions) = state.sessions() {
        metrics::gauge!(FEED_LAG).set(sessions.revocation_feed_lag().as_secs_f64());
        sessions.report_caches().await;
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROMETHEUS_TEXT),
        )],
        handle.render(),
    )
        .into_response()
}

/// Handles `GET /healthz`: 200 while the process can answer at all.
pub async fn healthz() -> Response {
    Json(serde_json::json!({ "status": "ok" })).into_response()
}

/// Handles `GET /readyz`: 200 only while the store answers a ping within [`READY_TIMEOUT`];
/// 503 otherwise and while shutting down.
pub async fn readyz(State(state): State<HttpState>) -> Response {
    let ready = match state.sessions() {
        Ok(sessions) => matches!(
            tokio::time::timeout(READY_TIMEOUT, sessions.store().ping()).await,
            Ok(Ok(()))
        ),
        Err(_) => false,
    };
    if ready {
        Json(serde_json::json!({ "status": "ready" })).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "unavailable" })),
        )
            .into_response()
    }
}
