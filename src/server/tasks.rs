//! The background tasks of the wiring: health from store pings, the live-sessions gauge, and
//! metrics upkeep. Each runs on an interval until its cancellation token fires.

use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::service::auth::v3::authorization_server::AuthorizationServer;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::api::SessionApi;
use crate::api::envoy::ExtAuthz;
use crate::pb;
use crate::store::Store;
use crate::telemetry::prometheus::LIVE_SESSIONS;

/// How often the store is pinged for health.
const HEALTH_EVERY: Duration = Duration::from_secs(1);
/// How often the live-sessions gauge is refreshed.
const LIVE_SESSIONS_EVERY: Duration = Duration::from_secs(15);
/// How often histogram samples are folded into the metrics registry between scrapes, so that
/// they never pile up in memory.
const METRICS_UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Every health service name this server answers for: the server as a whole and each service.
fn health_names() -> [&'static str; 3] {
    [
        "",
        <pb::session_service_server::SessionServiceServer<SessionApi> as NamedService>::NAME,
        <AuthorizationServer<ExtAuthz> as NamedService>::NAME,
    ]
}

/// An interval that, after a stall, waits a whole period again rather than firing in bursts.
pub(crate) fn every(period: Duration) -> Interval {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick
}

/// Sets the status of the server as a whole and of each service together.
pub(super) async fn set_health(health: &HealthReporter, status: ServingStatus) {
    for name in health_names() {
        health.set_service_status(name, status).await;
    }
}

/// Reports SERVING for the services and the server as a whole only while the store answers;
/// NOT_SERVING once stopped.
pub(super) async fn report_health(
    store: Arc<dyn Store>,
    health: HealthReporter,
    stop: CancellationToken,
) {
    let mut tick = every(HEALTH_EVERY);
    let mut last = None;
    while stop.run_until_cancelled(tick.tick()).await.is_some() {
        let ping = tokio::time::timeout(HEALTH_EVERY, store.ping()).await;
        let status = match ping {
            Ok(Ok(())) => ServingStatus::Serving,
            Ok(Err(error)) => {
                tracing::warn!(%error, "store ping failed");
                ServingStatus::NotServing
            }
            Err(_) => {
                tracing::warn!("store ping timed out");
                ServingStatus::NotServing
            }
        };
        if last != Some(status) {
            set_health(&health, status).await;
            last = Some(status);
        }
    }
    set_health(&health, ServingStatus::NotServing).await;
}

/// Keeps the `sessiond_live_sessions` gauge current, every [`LIVE_SESSIONS_EVERY`]. Ends early
/// for a backend that cannot count cheaply.
pub(super) async fn report_live_sessions(store: Arc<dyn Store>, stop: CancellationToken) {
    let gauge = metrics::gauge!(LIVE_SESSIONS);
    let mut tick = every(LIVE_SESSIONS_EVERY);
    while stop.run_until_cancelled(tick.tick()).await.is_some() {
        let counted = tokio::time::timeout(LIVE_SESSIONS_EVERY, store.approx_live_sessions());
        match stop.run_until_cancelled(counted).await {
            None => return,
            Some(Ok(Ok(Some(count)))) => gauge.set(count as f64),
            Some(Ok(Ok(None))) => return,
            Some(Ok(Err(error))) => tracing::debug!(%error, "cannot count live sessions"),
            Some(Err(_)) => tracing::debug!("counting live sessions timed out"),
        }
    }
}

/// Folds recorded histogram samples into the registry every [`METRICS_UPKEEP_EVERY`].
pub(super) async fn metrics_upkeep(handle: &'static PrometheusHandle, stop: CancellationToken) {
    let mut tick = every(METRICS_UPKEEP_EVERY);
    while stop.run_until_cancelled(tick.tick()).await.is_some() {
        handle.run_upkeep();
    }
}
