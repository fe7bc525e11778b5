//! Wiring: [`start`] opens the store, loads the keys and starts the background tasks;
//! [`Started::run`] serves gRPC (and, when given a second listener, the HTTP surface) until
//! shutdown, then drains in-flight calls and flushes write-behind state.
//!
//! Background tasks share one `CancellationToken` and one `TaskTracker`: shutdown cancels the
//! token, and the tracker is waited on before the store is closed.

mod flat_writes;
mod run;
mod start;
mod tasks;
mod tls;

use std::future::Future;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::store::StoreError;

pub use start::{Started, start};

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
    start(config, listener, http).await?.run(shutdown).await
}
