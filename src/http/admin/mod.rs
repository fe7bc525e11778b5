//! The admin JSON API under `/admin/api/`: the gRPC admin RPCs over HTTP, for browsers (the
//! console at `/admin/`, [`super::console`]) and for admin tools that speak JSON.
//!
//! | method and path | RPC |
//! |---|---|
//! | `GET /admin/api/sessions?user_id=&tenant_id=&include_revoked=&page_size=&page_token=` | `AdminList` |
//! | `DELETE /admin/api/sessions/{session_id}` (optional body `{"reason"}`) | `AdminRevokeSession` |
//! | `DELETE /admin/api/users/{user_id}/sessions?tenant_id=` (optional body `{"reason"}`) | `AdminRevokeUser` |
//! | `POST /admin/api/revoke-all` with `{"confirm": true, "reason"}` | `AdminRevokeAllSessions` |
//! | `GET /admin/api/audit?user_id=&page_size=&page_token=` | `AdminListAuditEvents` |
//! | `GET /admin/api/stats` | what `/metrics` knows ([`stats`]) |
//!
//! Each route decodes its query and body into the RPC's request message and calls the gRPC
//! service's own method ([`SessionApi`]) with the caller in the request's extensions, exactly as
//! the gRPC stack hands it over: the same field parsers, bounds, domain calls and audit events
//! (actor `<caller>:admin`, from the caller's network address), then renders the answer in the
//! proto3 JSON mapping ([`json`]) and every refusal as `{"error": <ErrorInfo reason>,
//! "message"}` ([`error`]). Callers are admitted by the gRPC surface's `Authenticator` with the
//! `admin` role (`Authorization: Bearer <credential>`): the same credentials, rate limits and
//! in-flight budget.
//!
//! Browsers add two rules, since a page on another site can make a browser send requests here:
//! a request that carries an `Origin` other than this server's own is refused, and, while no
//! callers are configured (anyone on loopback may act), so is a request whose `Host` is not a
//! loopback name (a DNS-rebinding page reaches 127.0.0.1 under its own host name). A body must
//! be `application/json`, so no plain HTML form can post one.

pub mod error;
pub mod json;
pub mod stats;

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{ConnectInfo, FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::OwnedSemaphorePermit;
use tonic::transport::server::TcpConnectInfo;

use super::{HttpState, console};
use crate::api::service::SessionApi;
use crate::auth::{Budget, Role};
use crate::domain::DomainError;
use crate::domain::audit::Caller;
use crate::pb;
use crate::pb::session_service_server::SessionService;
use error::AdminError;

/// How long `stats` waits for the store's count of live sessions before leaving it out.
const LIVE_SESSIONS_TIMEOUT: Duration = Duration::from_secs(1);

/// Answers a path under `/admin/api` that names no endpoint (the nested router's fallback, and
/// the prefix itself, which nesting does not route).
pub async fn not_found() -> Response {
    console::security_headers(AdminError::NotFound.into_response())
}

/// The routes, to be nested under `/admin/api`.
pub fn router() -> Router<HttpState> {
    Router::new()
        .route("/sessions", get(list_sessions))
        .route("/sessions/{session_id}", delete(revoke_session))
        .route("/users/{user_id}/sessions", delete(revoke_user))
        .route("/revoke-all", post(revoke_all))
        .route("/audit", get(list_audit))
        .route("/stats", get(stats))
        .fallback(|| async { AdminError::NotFound })
        .method_not_allowed_fallback(|| async { AdminError::MethodNotAllowed })
}

/// The connection's remote address, which the HTTP server puts in each request's extensions.
pub struct Peer(Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0),
        ))
    }
}

/// An admitted admin caller, holding one of the callers' in-flight slots until dropped.
struct Admin {
    caller: Caller,
    peer: Option<SocketAddr>,
    _slot: OwnedSemaphorePermit,
}

impl Admin {
    /// `message` as the gRPC stack hands a request to the service: the caller in the
    /// extensions, and the connection's addresses where `convert::caller` reads them.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.extensions_mut().insert(self.caller.clone());
        request.extensions_mut().insert(TcpConnectInfo {
            local_addr: None,
            remote_addr: self.peer,
        });
        request
    }
}

/// Admits an `admin` caller: the browser rules of the module documentation, then the
/// credential and role, then a slot (after authentication, as on gRPC).
fn admit(state: &HttpState, headers: &HeaderMap, peer: Peer) -> Result<Admin, AdminError> {
    same_origin(headers)?;
    if state.auth.is_open() {
        loopback_host(headers)?;
    }
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    let caller = state.auth.admit_role(Role::Admin, authorization, None)?;
    let slot = state.auth.slot(Budget::Callers)?;
    Ok(Admin {
        caller: caller.with_peer(peer.0),
        peer: peer.0,
        _slot: slot,
    })
}

/// Refuses a request whose `Origin` (sent by browsers with every cross-origin request and every
/// same-origin one that is not a `GET`) names another host than the request's `Host`.
fn same_origin(headers: &HeaderMap) -> Result<(), AdminError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let authority = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, authority)| authority);
    match (authority, host) {
        (Some(authority), Some(host)) if authority.eq_ignore_ascii_case(host) => Ok(()),
        _ => Err(AdminError::Forbidden(
            "cross-origin requests are refused: use the console this server serves",
        )),
    }
}

/// Without callers configured, requires the `Host` to be a loopback name, so that a page
/// whose own host name resolves to 127.0.0.1 (DNS rebinding) cannot act as an admin.
fn loopback_host(headers: &HeaderMap) -> Result<(), AdminError> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    // Host without its port; an IPv6 literal keeps its brackets.
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !name.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let loopback = name.eq_ignore_ascii_case("localhost")
        || name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(AdminError::Forbidden(
            "without callers configured, the admin API answers only on a loopback host name",
        ))
    }
}

/// The authority, unless the service is shutting down.
fn api(state: &HttpState) -> Result<SessionApi, AdminError> {
    state
        .sessions
        .upgrade()
        .map(SessionApi::new)
        .ok_or(AdminError::ShuttingDown)
}

/// The query parameters, each at most once, only those in `known`.
fn query(raw: Option<String>, known: &[&str]) -> Result<Vec<(String, String)>, AdminError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|e| AdminError::Malformed(format!("query: {e}")))?;
    for (i, (key, _)) in pairs.iter().enumerate() {
        if !known.contains(&key.as_str()) {
            return Err(AdminError::Malformed(format!(
                "unknown query parameter {key:?} (known: {})",
                known.join(", ")
            )));
        }
        if pairs.iter().skip(i + 1).any(|(k, _)| k == key) {
            return Err(AdminError::Malformed(format!(
                "query parameter {key:?} given twice"
            )));
        }
    }
    Ok(pairs)
}

fn param(pairs: &[(String, String)], key: &str) -> String {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// `true`/`false` (empty or absent: `false`), as proto3 JSON spells a bool.
fn bool_param(pairs: &[(String, String)], key: &'static str) -> Result<bool, AdminError> {
    match param(pairs, key).as_str() {
        "" | "false" => Ok(false),
        "true" => Ok(true),
        _ => Err(DomainError::invalid(key, "must be true or false").into()),
    }
}

/// A `uint32` (empty or absent: 0, the RPC's default page size).
fn u32_param(pairs: &[(String, String)], key: &'static str) -> Result<u32, AdminError> {
    let value = param(pairs, key);
    if value.is_empty() {
        return Ok(0);
    }
    value.parse().map_err(|_| {
        DomainError::invalid(key, "must be a whole number from 0 to 4294967295").into()
    })
}

/// The optional JSON body of a request: empty is `T::default()`; anything else must be
/// `application/json` and decode as `T`.
fn body<T: DeserializeOwned + Default>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, AdminError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AdminError::Malformed("the body is too large".into())
        } else {
            AdminError::Malformed("cannot read the body".into())
        }
    })?;
    if body.is_empty() {
        return Ok(T::default());
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(AdminError::Malformed(
            "the body must be application/json".into(),
        ));
    }
    serde_json::from_slice(&body).map_err(|e| AdminError::Malformed(format!("body: {e}")))
}

fn path(path: Result<Path<String>, PathRejection>) -> Result<String, AdminError> {
    path.map(|Path(p)| p)
        .map_err(|e| AdminError::Malformed(format!("path: {e}")))
}

/// A JSON answer no cache may keep: it lists sessions and audit records.
fn answer(value: impl Serialize) -> Response {
    let mut response = Json(value).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /admin/api/sessions`: `AdminList`.
async fn list_sessions(
    State(state): State<HttpState>,
    peer: Peer,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, AdminError> {
    let admin = admit(&state, &headers, peer)?;
    let q = query(
        raw,
        &[
            "user_id",
            "tenant_id",
            "include_revoked",
            "page_size",
            "page_token",
        ],
    )?;
    let request = pb::AdminListRequest {
        user_id: param(&q, "user_id"),
        tenant_id: param(&q, "tenant_id"),
        include_revoked: bool_param(&q, "include_revoked")?,
        page_size: u32_param(&q, "page_size")?,
        page_token: param(&q, "page_token"),
    };
    let reply = api(&state)?
        .admin_list(admin.request(request))
        .await?
        .into_inner();
    Ok(answer(json::AdminListResponse::from(&reply)))
}

/// `DELETE /admin/api/sessions/{session_id}`: `AdminRevokeSession`.
async fn revoke_session(
    State(state): State<HttpState>,
    peer: Peer,
    headers: HeaderMap,
    session_id: Result<Path<String>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, AdminError> {
    let admin = admit(&state, &headers, peer)?;
    let session_id = path(session_id)?;
    let reason: json::ReasonBody = body(&headers, raw)?;
    let request = pb::AdminRevokeSessionRequest {
        session_id,
        reason: reason.reason,
    };
    let reply = api(&state)?
        .admin_revoke_session(admin.request(request))
        .await?
        .into_inner();
    Ok(answer(json::AdminRevokeSessionResponse::from(&reply)))
}

/// `DELETE /admin/api/users/{user_id}/sessions`: `AdminRevokeUser` (force logout).
async fn revoke_user(
    State(state): State<HttpState>,
    peer: Peer,
    headers: HeaderMap,
    user_id: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
    raw_body: Result<Bytes, BytesRejection>,
) -> Result<Response, AdminError> {
    let admin = admit(&state, &headers, peer)?;
    let user_id = path(user_id)?;
    let q = query(raw, &["tenant_id"])?;
    let reason: json::ReasonBody = body(&headers, raw_body)?;
    let request = pb::AdminRevokeUserRequest {
        user_id,
        tenant_id: param(&q, "tenant_id"),
        reason: reason.reason,
    };
    let reply = api(&state)?
        .admin_revoke_user(admin.request(request))
        .await?
        .into_inner();
    Ok(answer(json::AdminRevokeUserResponse::from(&reply)))
}

/// `POST /admin/api/revoke-all`: `AdminRevokeAllSessions`, the emergency switch.
async fn revoke_all(
    State(state): State<HttpState>,
    peer: Peer,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, AdminError> {
    let admin = admit(&state, &headers, peer)?;
    let body: json::RevokeAllBody = body(&headers, raw)?;
    let request = pb::AdminRevokeAllSessionsRequest {
        reason: body.reason,
        confirm: body.confirm,
    };
    let reply = api(&state)?
        .admin_revoke_all_sessions(admin.request(request))
        .await?
        .into_inner();
    Ok(answer(json::AdminRevokeAllSessionsResponse::from(&reply)))
}

/// `GET /admin/api/audit`: `AdminListAuditEvents`.
async fn list_audit(
    State(state): State<HttpState>,
    peer: Peer,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, AdminError> {
    let admin = admit(&state, &headers, peer)?;
    let q = query(raw, &["user_id", "page_size", "page_token"])?;
    let request = pb::AdminListAuditEventsRequest {
        user_id: param(&q, "user_id"),
        page_size: u32_param(&q, "page_size")?,
        page_token: param(&q, "page_token"),
    };
    let reply = api(&state)?
        .admin_list_audit_events(admin.request(request))
        .await?
        .into_inner();
    Ok(answer(json::AdminListAuditEventsResponse::from(&reply)))
}

/// `GET /admin/api/stats`: see [`stats`].
async fn stats(
    State(state): State<HttpState>,
    peer: Peer,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, AdminError> {
    let _admin = admit(&state, &headers, peer)?;
    query(raw, &[])?;
    let sessions = state.sessions.upgrade().ok_or(AdminError::ShuttingDown)?;
    let live = tokio::time::timeout(
        LIVE_SESSIONS_TIMEOUT,
        sessions.store().approx_live_sessions(),
    )
    .await;
    let live = match live {
        Ok(Ok(count)) => count,
        Ok(Err(error)) => {
            tracing::debug!(%error, "cannot count live sessions");
            None
        }
        Err(_) => None,
    };
    let stats = state
        .stats
        .take(state.metrics, live, sessions.revocation_feed_lag());
    Ok(answer(stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn origins_must_match_the_host() {
        assert!(same_origin(&headers(&[("host", "127.0.0.1:8080")])).is_ok());
        assert!(
            same_origin(&headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8080")
            ]))
            .is_ok()
        );
        assert!(
            same_origin(&headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "https://evil.example")
            ]))
            .is_err()
        );
        assert!(same_origin(&headers(&[("host", "a"), ("origin", "null")])).is_err());
    }

    #[test]
    fn loopback_names() {
        for host in [
            "127.0.0.1:8080",
            "localhost:1",
            "[::1]:8080",
            "127.0.0.2",
            "LOCALHOST",
        ] {
            assert!(loopback_host(&headers(&[("host", host)])).is_ok(), "{host}");
        }
        for host in ["evil.example:8080", "10.0.0.1:8080", "", "[::2]:1"] {
            assert!(
                loopback_host(&headers(&[("host", host)])).is_err(),
                "{host}"
            );
        }
    }

    #[test]
    fn queries_refuse_unknown_and_repeated_parameters() {
        let known = ["user_id", "page_size"];
        assert!(query(Some("user_id=a%20b&page_size=3".into()), &known).is_ok());
        assert!(query(Some("user=a".into()), &known).is_err());
        assert!(query(Some("user_id=a&user_id=b".into()), &known).is_err());
        let q = query(Some("page_size=x".into()), &known).expect("parses");
        assert!(u32_param(&q, "page_size").is_err());
    }
}
