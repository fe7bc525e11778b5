//! Wiring: opens the store, loads the keys, starts the background tasks and serves gRPC on a
//! bound listener until shutdown, then drains in-flight calls and flushes write-behind state.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::api::SessionApi;
use crate::api::auth::{AuthLayer, Authenticator};
use crate::config::TlsFiles;
use crate::config::Config;
use crate::domain::cache::CacheLimits;
use crate::domain::last_seen::Touches;
use crate::domain::{Policy, Sessions};
use crate::pb;
use crate::store::{Store, StoreError};

/// Largest request accepted. Above every field bound, so oversize fields get a clear
/// `INVALID_ARGUMENT` naming the field rather than a transport error.
const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// How often the store is pinged for health.
const HEALTH_EVERY: Duration = Duration::from_secs(1);

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
}

fn policy(config: &Config) -> Policy {
    Policy {
        issuer: config.issuer.clone(),
        access_token_ttl: config.access_token_ttl,
        session_ttl: config.session_ttl,
        max_session_ttl: config.max_session_ttl,
        max_sessions_per_user: config.max_sessions_per_user,
        last_seen_interval: config.last_seen_interval,
        revocation_poll: config.revocation_poll,
        caches: CacheLimits::default(),
    }
}

/// Runs sessiond on `listener` until `shutdown` completes, then drains in-flight calls, flushes
/// pending last-seen writes and returns. Refuses a non-loopback listener while no caller
/// credentials are configured.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let local = listener
        .local_addr()
        .map_err(|e| ServeError::Refused(e.to_string()))?;
    let auth = Arc::new(Authenticator::new(config.callers.clone(), config.max_in_flight));
    if auth.is_open() {
        if !local.ip().is_loopback() {
            return Err(ServeError::Refused(format!(
                "refusing to serve on {local} without caller credentials: configure [[callers]] \
                 (see `sessiond credential --help`) or listen on a loopback address (127.0.0.1 or ::1)"
            )));
        }
        tracing::warn!("no callers configured: any local process may call every RPC");
    }
    let tls = match &config.tls {
        Some(files) => Some(tls_config(files).await?),
        None => None,
    };

    let store = crate::store::backend::open(&config).await?;
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
    ));
    sessions.warm_up().await?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let (health, health_service) = tonic_health::server::health_reporter();
    let tasks = vec![
        tokio::spawn(sessions.clone().follow_revocations(stop_rx.clone())),
        tokio::spawn(sessions.clone().sweep_expired(stop_rx.clone())),
        tokio::spawn(report_health(
            store.clone(),
            health.clone(),
            stop_rx.clone(),
        )),
    ];

    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| ServeError::Refused(format!("reflection: {e}")))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| ServeError::Refused(format!("reflection: {e}")))?;
    let api =
        pb::session_service_server::SessionServiceServer::new(SessionApi::new(sessions.clone()))
            .max_decoding_message_size(MAX_REQUEST_BYTES);

    tracing::info!(addr = %local, store = ?config.store, "sessiond serving");
    let mut stop_rx_main = stop_rx.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: draining in-flight calls");
    };
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let result = builder
        .tcp_nodelay(true)
        .layer(AuthLayer::new(auth))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(api)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), signal)
        .await;

    let _ = stop_tx.send(true);
    let _ = stop_rx_main.changed().await;
    for task in tasks {
        let _ = task.await;
    }
    // The last handle to the write-behind queue goes with `sessions`; the writer then flushes.
    drop(sessions);
    let _ = touch_writer.await;
    tracing::info!("sessiond stopped");
    result.map_err(ServeError::from)
}

/// The server's TLS settings from PEM files; with a client CA, client certificates are required.
async fn tls_config(files: &TlsFiles) -> Result<tonic::transport::ServerTlsConfig, ServeError> {
    let read = |path: std::path::PathBuf| async move {
        tokio::fs::read(&path)
            .await
            .map_err(|e| ServeError::Refused(format!("cannot read {}: {e}", path.display())))
    };
    let identity = tonic::transport::Identity::from_pem(read(files.cert.clone()).await?, read(files.key.clone()).await?);
    let mut tls = tonic::transport::ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &files.client_ca {
        tls = tls.client_ca_root(tonic::transport::Certificate::from_pem(read(ca.clone()).await?));
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
}

/// Reports SERVING for the service and the server as a whole only while the store answers.
async fn report_health(
    store: Arc<dyn Store>,
    health: tonic_health::server::HealthReporter,
    mut stop: watch::Receiver<bool>,
) {
    let name = <pb::session_service_server::SessionServiceServer<SessionApi> as tonic::server::NamedService>::NAME;
    let mut tick = tokio::time::interval(HEALTH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => {
                health.set_service_status("", ServingStatus::NotServing).await;
                health.set_service_status(name, ServingStatus::NotServing).await;
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
            health.set_service_status("", status).await;
            health.set_service_status(name, status).await;
            last = Some(status);
        }
    }
}
