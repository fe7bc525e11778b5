//! Wiring: opens the store, loads the keys, starts the background tasks and serves gRPC (and,
//! when given a second listener, the HTTP surface) until shutdown, then drains in-flight calls
//! and flushes write-behind state.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::service::auth::v3::authorization_server::AuthorizationServer;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::server::NamedService;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::api::SessionApi;
use crate::api::auth::{AuthLayer, Authenticator};
use crate::api::envoy::ExtAuthz;
use crate::api::observe::ObserveLayer;
use crate::config::Config;
use crate::config::TlsFiles;
use crate::domain::cache::CacheLimits;
use crate::domain::last_seen::Touches;
use crate::domain::{Policy, Sessions};
use crate::http::HttpState;
use crate::pb;
use crate::store::metered::MeteredStore;
use crate::store::{Store, StoreError};
use crate::telemetry::prometheus::LIVE_SESSIONS;

/// Largest request accepted. Above every field bound, so oversize fields get a clear
/// `INVALID_ARGUMENT` naming the field rather than a transport error.
const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// How often the store is pinged for health.
const HEALTH_EVERY: Duration = Duration::from_secs(1);
/// How often the live-sessions gauge is refreshed.
const LIVE_SESSIONS_EVERY: Duration = Duration::from_secs(15);
/// How often histogram samples are folded into the metrics registry between scrapes, so that
/// they never pile up in memory.
const METRICS_UPKEEP_EVERY: Duration = Duration::from_secs(5);
/// How long HTTP connections may take to finish once gRPC has drained.
const HTTP_DRAIN: Duration = Duration::from_secs(5);
/// How often the server pings a gRPC connection (HTTP/2 PING), so that a peer that vanished
/// without a FIN (a crashed host, a dropped NAT entry) does not hold its connection forever.
const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a ping may go unanswered before the connection is closed.
const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest header block a gRPC request may carry (hyper's default, stated so that no upgrade
/// loosens it): a bearer credential and tracing headers need a few hundred bytes.
const HTTP2_MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;
/// Streams a client may reset before the server has accepted them, past which the connection
/// is closed with GOAWAY (h2's default, against the "rapid reset" flood, CVE-2023-44487).
const HTTP2_MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;
/// Streams the server may reset for a client's protocol errors before it closes the
/// connection (hyper's default; tonic leaves it unlimited unless set, RUSTSEC-2024-0003).
const HTTP2_MAX_LOCAL_ERROR_RESET_STREAMS: usize = 1024;

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration cannot be served as given.
    #[error("{0}")]
    Refused(String),
    /// The store could not be opened.
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    /// The keys could not be loaded.
    #[error("cannot load keys: {0}")]
    Keys(#[from] crate::keystore::KeyError),
    /// The gRPC server failed.
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The HTTP server failed.
    #[error("http server: {0}")]
    Http(#[from] std::io::Error),
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
        caches: CacheLimits::default(),
    }
}

/// Runs sessiond's gRPC service on `listener` until `shutdown` completes, then drains in-flight
/// calls, flushes pending last-seen writes and returns. No HTTP surface; see
/// [`serve_with_http`]. Refuses a non-loopback listener while no caller credentials are
/// configured.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    serve_with_http(config, listener, None, shutdown).await
}

/// Like [`serve`], and serves the HTTP surface (introspection, JWKS, metrics, health) on
/// `http` when given. Both stop on the one `shutdown` signal and drain together; if gRPC stops
/// on its own, HTTP stops with it. The loopback rule applies to both listeners.
pub async fn serve_with_http(
    config: Config,
    listener: TcpListener,
    http: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let local = listener
        .local_addr()
        .map_err(|e| ServeError::Refused(e.to_string()))?;
    let http_local = match &http {
        Some(http) => Some(
            http.local_addr()
                .map_err(|e| ServeError::Refused(e.to_string()))?,
        ),
        None => None,
    };
    let auth = Arc::new(Authenticator::new(
        config.callers.clone(),
        config.max_in_flight,
    ));
    if auth.is_open() {
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
        Some(files) => Some(tls_config(files).await?),
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
    ));
    let feed_start = sessions.warm_up().await?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let (health, health_service) = tonic_health::server::health_reporter();
    // Known from the first call on: NOT_SERVING until the first store ping says otherwise.
    set_health(&health, ServingStatus::NotServing).await;
    let mut tasks = vec![
        tokio::spawn(
            sessions
                .clone()
                .follow_revocations(feed_start, stop_rx.clone()),
        ),
        tokio::spawn(sessions.clone().sweep_expired(stop_rx.clone())),
        tokio::spawn(report_health(
            store.clone(),
            health.clone(),
            stop_rx.clone(),
        )),
        tokio::spawn(report_live_sessions(store.clone(), stop_rx.clone())),
    ];
    if let Some(handle) = metrics {
        tasks.push(tokio::spawn(metrics_upkeep(handle, stop_rx.clone())));
    }

    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| ServeError::Refused(format!("reflection: {e}")))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| ServeError::Refused(format!("reflection: {e}")))?;
    let api =
        pb::session_service_server::SessionServiceServer::new(SessionApi::new(sessions.clone()))
            .max_decoding_message_size(MAX_REQUEST_BYTES);
    let ext_authz = AuthorizationServer::new(ExtAuthz::new(sessions.clone()))
        .max_decoding_message_size(MAX_REQUEST_BYTES);

    // Tells the HTTP server to drain. Its sender lives in the gRPC shutdown signal, so it is
    // sent when shutdown starts, and dropped (which stops HTTP too) if gRPC ends on its own.
    let (drain_tx, drain_rx) = watch::channel(false);
    let http_server = http.map(|http| {
        let state = HttpState::new(&sessions, auth.clone(), metrics)
            .with_auth_cookie(config.auth_cookie.as_deref());
        let router = crate::http::router(state);
        let limits = crate::http::HttpLimits {
            header_read_timeout: config.http_header_read_timeout,
            request_timeout: config.request_timeout,
            max_connections: config.http_max_connections,
        };
        tokio::spawn(crate::http::serve(http, router, limits, drain_rx))
    });

    tracing::info!(addr = %local, store = ?config.store, "sessiond serving");
    if let Some(addr) = http_local {
        tracing::info!(%addr, "http surface serving");
    }
    let mut stop_rx_main = stop_rx.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: draining in-flight calls");
        let _ = drain_tx.send(true);
    };
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let result = builder
        .tcp_nodelay(true)
        // Every call ends by this deadline, its request body included: a stream that sends
        // HEADERS and never DATA is answered CANCELLED and gives back its in-flight slot.
        .timeout(config.request_timeout)
        .max_concurrent_streams(config.max_concurrent_streams)
        .http2_keepalive_interval(Some(HTTP2_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(HTTP2_KEEPALIVE_TIMEOUT))
        .http2_max_header_list_size(HTTP2_MAX_HEADER_LIST_BYTES)
        .http2_max_pending_accept_reset_streams(Some(HTTP2_MAX_PENDING_ACCEPT_RESET_STREAMS))
        .http2_max_local_error_reset_streams(Some(HTTP2_MAX_LOCAL_ERROR_RESET_STREAMS))
        // Outermost, so that callers refused by authentication are counted and traced too.
        .layer(ObserveLayer::new())
        .layer(AuthLayer::new(auth))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(api)
        .add_service(ext_authz)
        .serve_with_incoming_shutdown(
            // `Server::tcp_nodelay` does not reach an incoming stream: set it on the stream, or
            // Nagle's algorithm and delayed ACKs hold every small response ~40 ms.
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            signal,
        )
        .await;
    let http_result = match http_server {
        Some(task) => finish_http(task).await,
        None => Ok(()),
    };

    let _ = stop_tx.send(true);
    let _ = stop_rx_main.changed().await;
    for task in tasks {
        let _ = task.await;
    }
    // The last handle to the write-behind queue goes with `sessions`; the writer then flushes.
    drop(sessions);
    let _ = touch_writer.await;
    // Closing the store may wait for its last commit and fsync, so it happens off the runtime;
    // once `serve` returns, the data directory can be opened again (a restart in-process).
    let _ = tokio::task::spawn_blocking(move || drop(store)).await;
    tracing::info!("sessiond stopped");
    result.map_err(ServeError::from)?;
    http_result
}

/// Waits for the HTTP server to finish draining, at most [`HTTP_DRAIN`]; connections still
/// open then are left to close on their own (the router holds the authority weakly, so they
/// keep nothing alive that shutdown must release).
async fn finish_http(mut task: JoinHandle<std::io::Result<()>>) -> Result<(), ServeError> {
    match tokio::time::timeout(HTTP_DRAIN, &mut task).await {
        Ok(Ok(result)) => result.map_err(ServeError::Http),
        Ok(Err(error)) => Err(ServeError::Http(std::io::Error::other(error))),
        Err(_) => {
            tracing::warn!("http connections still open after the drain period; closing");
            task.abort();
            Ok(())
        }
    }
}

/// The server's TLS settings from PEM files; with a client CA, client certificates are required.
async fn tls_config(files: &TlsFiles) -> Result<tonic::transport::ServerTlsConfig, ServeError> {
    // tonic builds its rustls server config on the process-wide crypto provider. Two are
    // compiled in (ring through tonic's `tls-ring`, aws-lc-rs through the ScyllaDB driver), so
    // rustls cannot choose one by itself and would panic on the first TLS connection. Choose
    // ring, as the gRPC client side does; an error only means one was installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let read = |path: std::path::PathBuf| async move {
        tokio::fs::read(&path)
            .await
            .map_err(|e| ServeError::Refused(format!("cannot read {}: {e}", path.display())))
    };
    let identity = tonic::transport::Identity::from_pem(
        read(files.cert.clone()).await?,
        read(files.key.clone()).await?,
    );
    let mut tls = tonic::transport::ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &files.client_ca {
        tls = tls.client_ca_root(tonic::transport::Certificate::from_pem(
            read(ca.clone()).await?,
        ));
    }
    Ok(tls)
}

/// Reflection over every service served here, plus `google.rpc` so that tools such as grpcurl
/// can decode the `ErrorInfo` detail of an error.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(crate::api::envoy::FILE_DESCRIPTOR_SET)
}

/// Sets the status of the server as a whole and of `sessiond.v1.SessionService` together.
async fn set_health(health: &tonic_health::server::HealthReporter, status: ServingStatus) {
    let name = <pb::session_service_server::SessionServiceServer<SessionApi> as tonic::server::NamedService>::NAME;
    health.set_service_status("", status).await;
    health.set_service_status(name, status).await;
}

/// Reports SERVING for the services and the server as a whole only while the store answers.
async fn report_health(
    store: Arc<dyn Store>,
    health: tonic_health::server::HealthReporter,
    mut stop: watch::Receiver<bool>,
) {
    let names = [
        "",
        <pb::session_service_server::SessionServiceServer<SessionApi> as NamedService>::NAME,
        <AuthorizationServer<ExtAuthz> as NamedService>::NAME,
    ];
    let mut tick = tokio::time::interval(HEALTH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => {
                for name in names {
                    health.set_service_status(name, ServingStatus::NotServing).await;
                }
                return;
            }
        }
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
            for name in names {
                health.set_service_status(name, status).await;
            }
            last = Some(status);
        }
    }
}

/// Keeps the `sessiond_live_sessions` gauge current, every [`LIVE_SESSIONS_EVERY`]. Ends early
/// for a backend that cannot count cheaply.
async fn report_live_sessions(store: Arc<dyn Store>, mut stop: watch::Receiver<bool>) {
    let gauge = metrics::gauge!(LIVE_SESSIONS);
    let mut tick = tokio::time::interval(LIVE_SESSIONS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        match tokio::time::timeout(LIVE_SESSIONS_EVERY, store.approx_live_sessions()).await {
            Ok(Ok(Some(count))) => gauge.set(count as f64),
            Ok(Ok(None)) => return,
            Ok(Err(error)) => tracing::debug!(%error, "cannot count live sessions"),
            Err(_) => tracing::debug!("counting live sessions timed out"),
        }
    }
}

/// Folds recorded histogram samples into the registry every [`METRICS_UPKEEP_EVERY`].
async fn metrics_upkeep(handle: &'static PrometheusHandle, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(METRICS_UPKEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => handle.run_upkeep(),
            _ = stop.changed() => return,
        }
    }
}
