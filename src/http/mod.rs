//! The HTTP edge on `--http-addr`: forward authentication for gateways, RFC 7662 token
//! introspection, RFC 7009 token revocation, the JWKS, Prometheus metrics and health probes
//! (axum).
//!
//! Routes:
//! - `GET /auth/check` ([`check`]): the gateway authenticates with `X-Sessiond-Credential`.
//! - `POST /oauth2/introspect` ([`introspect`]) and `POST /oauth2/revoke` ([`revoke`]): the
//!   caller authenticates like a gRPC caller.
//! - `GET /.well-known/jwks.json` ([`keys`]): every verification key, so a gateway can check
//!   signatures itself.
//! - `GET /metrics`, `GET /healthz`, `GET /readyz` ([`ops`]).
//! - `/admin/api/...` ([`admin`]): the admin RPCs as JSON, for the `admin` role; `GET /admin/`
//!   ([`console`]): the admin console, built into the binary.
//!
//! Every error is JSON ([`error`]), bodies are capped at [`MAX_BODY_BYTES`], and nothing here
//! panics on input. [`serve`] bounds what one client can hold ([`HttpLimits`]): the time to
//! send headers, the time of a request, and the number of open connections. Like `api`, this
//! layer decodes, calls the domain and encodes; it decides nothing itself. Callers are admitted
//! by the same `auth::Authenticator` as gRPC callers, so credentials, roles, rate limits and the
//! in-flight budget are the same on both.
//!
//! The router holds the authority weakly: once `serve` lets go of it to flush write-behind
//! state and close the store, a straggling HTTP connection cannot keep either alive; its
//! requests are answered 503 instead.

pub mod admin;
pub mod check;
pub mod console;
pub mod error;
pub mod form;
pub mod introspect;
pub mod keys;
pub mod ops;
pub mod revoke;

use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::error_handling::HandleErrorLayer;
use axum::extract::ConnectInfo;
use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get, post};
use axum::serve::{Listener, ListenerExt};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tower::{ServiceBuilder, ServiceExt};

use crate::auth::{Authenticator, Budget, Role};
use crate::domain::Sessions;
use crate::domain::audit::Caller;
use crate::telemetry::prometheus::HTTP_CONNECTIONS_REFUSED;
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
    auth_cookie: Option<Arc<str>>,
    stats: Arc<admin::stats::Sampler>,
}

/// A caller admitted to a route that needs the `validator` role, holding one of the callers'
/// in-flight slots until it is dropped.
pub struct Admitted {
    /// Who called (for audit).
    pub caller: Caller,
    _slot: OwnedSemaphorePermit,
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
            auth_cookie: None,
            stats: Arc::new(admin::stats::Sampler::new(metrics)),
        }
    }

    /// The same state, with `GET /auth/check` also reading the access token from the cookie
    /// `name` (`--auth-cookie`).
    pub fn with_auth_cookie(self, name: Option<&str>) -> Self {
        Self {
            auth_cookie: name.map(Arc::from),
            ..self
        }
    }

    /// Admits a `validator` caller by its `Authorization: Bearer <credential>` header, as a
    /// gRPC caller is admitted.
    fn admit_bearer(&self, headers: &axum::http::HeaderMap) -> Result<Admitted, HttpError> {
        let authorization = headers
            .get(axum::http::header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        let caller = self
            .auth
            .admit_role(Role::Validator, authorization, None)
            .map_err(HttpError::from)?;
        self.admitted(caller)
    }

    /// Admits a `validator` caller by its bare `credential` (a header other than
    /// `Authorization`, which then carries the end user's token).
    fn admit_credential(&self, credential: Option<&[u8]>) -> Result<Admitted, HttpError> {
        let caller = self
            .auth
            .admit_credential(Role::Validator, credential)
            .map_err(HttpError::from)?;
        self.admitted(caller)
    }

    /// Takes the slot after authentication, as on gRPC: a request without credentials holds
    /// none.
    fn admitted(&self, caller: Caller) -> Result<Admitted, HttpError> {
        let slot = self.auth.slot(Budget::Callers).map_err(HttpError::from)?;
        Ok(Admitted {
            caller,
            _slot: slot,
        })
    }

    /// The authority, unless the service is shutting down.
    fn sessions(&self) -> Result<Arc<Sessions>, HttpError> {
        self.sessions.upgrade().ok_or(HttpError::ShuttingDown)
    }
}

/// Every route of the HTTP surface.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/auth/check", any(check::check))
        .route("/auth/check/{*path}", any(check::check))
        .route("/oauth2/introspect", post(introspect::introspect))
        .route("/oauth2/revoke", post(revoke::revoke))
        .route("/.well-known/jwks.json", get(keys::serve_jwks))
        .route("/metrics", get(ops::metrics))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/admin", get(console::to_index))
        .route("/admin/", get(console::index))
        .route("/admin/console.js", get(console::script))
        .route("/admin/console.css", get(console::style))
        .route("/admin/api", any(admin::not_found))
        .route("/admin/api/", any(admin::not_found))
        .nest(
            "/admin/api",
            admin::router().layer(axum::middleware::map_response(
                console::add_security_headers,
            )),
        )
        .fallback(|| async { HttpError::NotFound })
        .method_not_allowed_fallback(|| async { HttpError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// The bounds that keep one client from holding the HTTP surface: hyper's header-read timer,
/// a deadline per request and a cap on open connections.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// How long a client may take to send a request's headers. hyper restarts the timer while
    /// a keep-alive connection waits for its next request, so it bounds idle connections too.
    pub header_read_timeout: Duration,
    /// How long a request may take from its headers to its answer, body included (`408`).
    pub request_timeout: Duration,
    /// Most connections open at once; a connection over it is closed as soon as it is
    /// accepted (counted in `sessiond_http_connections_refused_total`).
    pub max_connections: usize,
}

/// Serves `router` on `listener` within `limits` until `stop` turns true (or its sender is
/// dropped), then stops accepting, lets the requests in progress finish, closes idle
/// connections and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    drain: CancellationToken,
) -> std::io::Result<()> {
    let mut listener = listener.tap_io(|tcp| {
        // Small answers go out at once rather than waiting on the peer's delayed ACK.
        let _ = tcp.set_nodelay(true);
    });
    let router = router.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(timed_out))
            .timeout(limits.request_timeout),
    );
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let refused = metrics::counter!(HTTP_CONNECTIONS_REFUSED);
    let graceful = GracefulShutdown::new();
    loop {
        // axum's `Listener::accept` retries failed accepts, pausing when the process is out
        // of file descriptors.
        let (tcp, peer) = tokio::select! {
            accepted = Listener::accept(&mut listener) => accepted,
            _ = drain.cancelled() => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Closed at once rather than left in the backlog: a flood of stalled clients then
            // holds at most `max_connections` descriptors, and the rest of the process
            // (the gRPC port, the store) keeps the ones it needs.
            drop(tcp);
            refused.increment(1);
            continue;
        };
        // The peer's address, for the admin API's audit events (as gRPC records it).
        let service = router.clone().map_request(
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            },
        );
        let connection =
            http1.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                // A header-read timeout, a client that went away: nothing to act on.
                tracing::debug!(%error, "http connection ended");
            }
            drop(slot);
        });
    }
    // Closes the listening socket before draining, so new clients are refused at once.
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The answer to a request that ran past `--request-timeout`; the router's own services never
/// fail, so any other error is a fault of the service.
async fn timed_out(error: tower::BoxError) -> HttpError {
    if error.is::<tower::timeout::error::Elapsed>() {
        HttpError::Timeout
    } else {
        tracing::error!(%error, "http service failed");
        HttpError::Internal
    }
}
