//! Start-up: everything that must hold before the first request is served.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic_health::ServingStatus;
use tonic_health::server::{HealthReporter, HealthService};

use super::ServeError;
use super::tasks;
use crate::auth::Authenticator;
use crate::config::Config;
use crate::domain::cache::CacheLimits;
use crate::domain::last_seen::Touches;
use crate::domain::{Policy, Sessions};
use crate::store::Store;
use crate::store::metered::MeteredStore;

/// A started service: store open, keys loaded, caches warm, background tasks running, and
/// nothing served yet. [`Started::run`] serves it.
pub struct Started {
    pub(super) config: Config,
    pub(super) listener: TcpListener,
    pub(super) local: SocketAddr,
    pub(super) http: Option<(TcpListener, SocketAddr)>,
    pub(super) auth: Arc<Authenticator>,
    pub(super) tls: Option<tonic::transport::ServerTlsConfig>,
    pub(super) metrics: Option<&'static metrics_exporter_prometheus::PrometheusHandle>,
    pub(super) store: Arc<dyn Store>,
    pub(super) sessions: Arc<Sessions>,
    pub(super) touch_writer: JoinHandle<()>,
    pub(super) health: HealthService,
    /// Cancelled when shutdown starts; every background task ends on it.
    pub(super) stop: CancellationToken,
    /// The background tasks, waited on before the store is closed.
    pub(super) tasks: TaskTracker,
}

fn policy(config: &Config) -> Policy {
    Policy {
        issuer: config.issuer.clone(),
        audience: config.audience.clone(),
        access_token_ttl: config.access_token_ttl,
        session_ttl: config.session_ttl,
        max_session_ttl: config.max_session_ttl,
        max_sessions_per_user: config.max_sessions_per_user,
        last_seen_interval: config.last_seen_interval,
        revocation_poll: config.revocation_poll,
        store_outage_grace: config.store_outage_grace,
        caches: CacheLimits::within(config.cache_memory.as_u64(), CacheLimits::default().ttl),
        refresh_grace: config.refresh_grace,
        idle_timeout: (!config.idle_timeout.is_zero()).then_some(config.idle_timeout),
    }
}

/// Starts the service on its listeners: checks that it may serve them, opens the store, loads
/// the keys, warms the caches and starts the background tasks (revocation feed, sweeper,
/// health, live-sessions gauge, metrics upkeep). Refuses a non-loopback listener while no
/// caller credentials are configured.
pub async fn start(
    config: Config,
    listener: TcpListener,
    http: Option<TcpListener>,
) -> Result<Started, ServeError> {
    let local = listener
        .local_addr()
        .map_err(|e| ServeError::Refused(e.to_string()))?;
    let http = match http {
        Some(http) => {
            let addr = http
                .local_addr()
                .map_err(|e| ServeError::Refused(e.to_string()))?;
            Some((http, addr))
        }
        None => None,
    };
    let auth = Arc::new(Authenticator::new(
        config.callers.clone(),
        config.max_in_flight,
    ));
    if auth.is_open() {
        let http_local = http.as_ref().map(|(_, addr)| *addr);
        for addr in std::iter::once(local).chain(http_local) {
            if !addr.ip().is_loopback() {
                return Err(ServeError::Refused(format!(
                    "refusing to serve on {addr} without caller credentials: configure [[callers]] \
                     (see `sessiond credential --help`) or listen on a loopback address (127.0.0.1 or ::1)"
                )));
            }
        }
        tracing::warn!("no callers configured: any local process may call every RPC");
    }
    let tls = match &config.tls {
        Some(files) => Some(super::tls::server_config(files).await?),
        None => None,
    };

    // Installed before anything registers a metric handle (the store decorator, the caches).
    let metrics = crate::telemetry::prometheus::install();
    let store: Arc<dyn Store> = Arc::new(MeteredStore::new(
        crate::store::backend::open(&config.store_settings()).await?,
        config.hooks.clone(),
    ));
    let key_sources = config.key_sources();
    let keys = tokio::task::spawn_blocking(move || crate::keystore::load(&key_sources))
        .await
        .map_err(|e| ServeError::Refused(e.to_string()))??;
    let (touches, touch_writer) = Touches::start(store.clone(), config.last_seen_interval);
    let sessions = Arc::new(Sessions::new(
        store.clone(),
        Arc::new(keys),
        policy(&config),
        touches,
        config.hooks.clone(),
        config.clock.clone(),
    ));
    let feed_start = sessions.warm_up().await?;

    let reporter = HealthReporter::new();
    // Known from the first call on: NOT_SERVING until the first store ping says otherwise.
    tasks::set_health(&reporter, ServingStatus::NotServing).await;
    let health = HealthService::from_health_reporter(reporter.clone());

    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    tracker.spawn(
        sessions
            .clone()
            .follow_revocations(feed_start, stop.child_token()),
    );
    tracker.spawn(sessions.clone().sweep_expired(stop.child_token()));
    tracker.spawn(tasks::report_health(
        store.clone(),
        reporter,
        stop.child_token(),
    ));
    tracker.spawn(tasks::report_live_sessions(
        store.clone(),
        stop.child_token(),
    ));
    if let Some(handle) = metrics {
        tracker.spawn(tasks::metrics_upkeep(handle, stop.child_token()));
    }
    tracker.close();

    Ok(Started {
        config,
        listener,
        local,
        http,
        auth,
        tls,
        metrics,
        store,
        sessions,
        touch_writer,
        health,
        stop,
        tasks: tracker,
    })
}
