//! The HTTP edge on `--http-addr`: RFC 7662 token introspection, the JWKS, Prometheus metrics
//! and health probes (axum).
//!
//! Routes:
//! - `POST /oauth2/introspect` ([`introspect`]): the caller authenticates like a gRPC caller.
//! - `GET /.well-known/jwks.json` ([`keys`]): every verification key, so a gateway can check
//!   signatures itself.
//! - `GET /metrics`, `GET /healthz`, `GET /readyz` ([`ops`]).
//!
//! Every error is JSON ([`error`]), bodies are capped at [`MAX_BODY_BYTES`], and nothing here
//! panics on input. Like `api`, this layer decodes, calls the domain and encodes; it decides
//! nothing itself.
//!
//! The router holds the authority weakly: once `serve` lets go of it to flush write-behind
//! state and close the store, a straggling HTTP connection cannot keep either alive; its
//! requests are answered 503 instead.

pub mod error;
pub mod introspect;
pub mod keys;
pub mod ops;

use std::sync::{Arc, Weak};

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::auth::Authenticator;
use crate::domain::Sessions;
use error::HttpError;

/// The largest request body accepted. An introspection form holds one token (at most 4 KiB),
/// so this leaves ample room and still bounds what a client can make the server buffer.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct HttpState {
    sessions: Weak<Sessions>,
    auth: Arc<Authenticator>,
    jwks: Bytes,
    metrics: Option<&'static PrometheusHandle>,
}

impl HttpState {
    /// State over `sessions` (held weakly, see the module documentation), authenticating
    /// callers with `auth` (shared with gRPC, so limits apply across both surfaces) and
    /// rendering `metrics`.
    pub fn new(
        sessions: &Arc<Sessions>,
        auth: Arc<Authenticator>,
        metrics: Option<&'static PrometheusHandle>,
    ) -> Self {
        Self {
            jwks: keys::jwks(sessions.keys()),
            sessions: Arc::downgrade(sessions),
            auth,
            metrics,
        }
    }

    /// The authority, unless the service is shutting down.
    fn sessions(&self) -> Result<Arc<Sessions>, HttpError> {
        self.sessions.upgrade().ok_or(HttpError::ShuttingDown)
    }
}

/// Every route of the HTTP surface.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/oauth2/introspect", post(introspect::introspect))
        .route("/.well-known/jwks.json", get(keys::serve_jwks))
        .route("/metrics", get(ops::metrics))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .fallback(|| async { HttpError::NotFound })
        .method_not_allowed_fallback(|| async { HttpError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves `router` on `listener` until `stop` turns true (or its sender is dropped), then
/// finishes the requests in progress and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let listener = listener.tap_io(|tcp| {
        // Small answers go out at once rather than waiting on the peer's delayed ACK.
        let _ = tcp.set_nodelay(true);
    });
    let signal = async move {
        let _ = stop.wait_for(|stop| *stop).await;
    };
    axum::serve(listener, router)
        .with_graceful_shutdown(signal)
        .await
}
