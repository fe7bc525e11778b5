//! Serving a started service until shutdown, and the orderly stop after it.

use std::future::Future;
use std::time::Duration;

use envoy_types::pb::envoy::service::auth::v3::authorization_server::AuthorizationServer;
use futures::TryStreamExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic_health::pb::health_server::HealthServer;

use super::flat_writes::FlatWrites;
use super::{ServeError, Started};
use crate::api::SessionApi;
use crate::api::admission::AuthLayer;
use crate::api::envoy::ExtAuthz;
use crate::api::observe::ObserveLayer;
use crate::http::HttpState;
use crate::pb;

/// Largest request accepted. Above every field bound, so oversize fields get a clear
/// `INVALID_ARGUMENT` naming the field rather than a transport error.
const MAX_REQUEST_BYTES: usize = 1024 * 1024;
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

impl Started {
    /// Serves until `shutdown` completes (or the gRPC server stops on its own), then drains
    /// in-flight calls, stops the background tasks, flushes pending last-seen writes and
    /// closes the store.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let Started {
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
            tasks,
        } = self;
        let reflection_v1 = super::tls::reflection()
            .build_v1()
            .map_err(|e| ServeError::Refused(format!("reflection: {e}")))?;
        let reflection_v1alpha = super::tls::reflection()
            .build_v1alpha()
            .map_err(|e| ServeError::Refused(format!("reflection: {e}")))?;
        let api = pb::session_service_server::SessionServiceServer::new(SessionApi::new(
            sessions.clone(),
        ))
        .max_decoding_message_size(MAX_REQUEST_BYTES);
        let ext_authz = AuthorizationServer::new(ExtAuthz::new(sessions.clone()))
            .max_decoding_message_size(MAX_REQUEST_BYTES);

        // Cancelled when shutdown starts, and in any case once gRPC has stopped.
        let drain = CancellationToken::new();
        let http_local = http.as_ref().map(|(_, addr)| *addr);
        let http_server = http.map(|(http, _)| {
            let state = HttpState::new(&sessions, auth.clone(), metrics)
                .with_auth_cookie(config.auth_cookie.as_deref());
            let router = crate::http::router(state);
            let limits = crate::http::HttpLimits {
                header_read_timeout: config.http_header_read_timeout,
                request_timeout: config.request_timeout,
                max_connections: config.http_max_connections,
            };
            tokio::spawn(crate::http::serve(http, router, limits, drain.clone()))
        });

        tracing::info!(addr = %local, store = ?config.store, "sessiond serving");
        if let Some(addr) = http_local {
            tracing::info!(%addr, "http surface serving");
        }
        let signal = {
            let drain = drain.clone();
            async move {
                shutdown.await;
                tracing::info!("shutting down: draining in-flight calls");
                drain.cancel();
            }
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
            .add_service(HealthServer::new(health))
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(api)
            .add_service(ext_authz)
            .serve_with_incoming_shutdown(
                // `Server::tcp_nodelay` does not reach an incoming stream: set it on the stream,
                // or Nagle's algorithm and delayed ACKs hold every small response ~40 ms.
                tonic::transport::server::TcpIncoming::from(listener)
                    .with_nodelay(Some(true))
                    .map_ok(FlatWrites),
                signal,
            )
            .await;
        drain.cancel();
        let http_result = match http_server {
            Some(task) => finish_http(task).await,
            None => Ok(()),
        };

        stop.cancel();
        tasks.wait().await;
        // The last handle to the write-behind queue goes with `sessions`; the writer then
        // flushes.
        drop(sessions);
        let _ = touch_writer.await;
        // Closing the store may wait for its last commit and fsync, so it happens off the
        // runtime; once `run` returns, the data directory can be opened again (a restart
        // in-process).
        let _ = tokio::task::spawn_blocking(move || drop(store)).await;
        tracing::info!("sessiond stopped");
        result.map_err(ServeError::from)?;
        http_result
    }
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
