//! `GET /auth/check`: forward authentication for gateways that delegate with a sub-request
//! (nginx `auth_request`, Traefik `forwardAuth`, Caddy `forward_auth`, Envoy's HTTP ext_authz).
//!
//! The gateway authenticates itself with `X-Sessiond-Credential: <credential>` (role
//! `validator`; open when no callers are configured), since the `Authorization` header it
//! forwards belongs to the end user. The user's access token is read from `Authorization:
//! Bearer <token>` or, when the request has no bearer token, from the cookie `--auth-cookie`
//! names. It goes through `Sessions::validate`, the hot path of `Validate`: nothing is logged
//! and nothing is allocated beyond the answer's headers.
//!
//! - A usable token: 200 with `X-Session-Id`, `X-User-Id` and `X-Tenant-Id` (empty for a
//!   session without a tenant), which the gateway copies onto the upstream request in place of
//!   whatever the client sent under those names.
//! - Anything else (no token, an unusable one): 401 with `WWW-Authenticate: Bearer
//!   error="invalid_token"` and `X-Session-Invalid-Reason`, the `InvalidReason` name that
//!   `Validate` would answer (`INVALID_REASON_MALFORMED` when there is no token at all, as
//!   `Validate` answers an empty token).
//!
//! Every method and every path below `/auth/check/` is answered alike, so that Envoy's HTTP
//! ext_authz (which sends the checked request's method and appends its path) can use it too;
//! a request body is never read. Answers carry `Cache-Control: no-store`: they describe one
//! user's credential, under a URL that is the same for every user.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::HttpState;
use super::error::HttpError;
use crate::api::convert::invalid_reason;
use crate::api::envoy::bearer;
use crate::domain::access::AccessClaims;
use crate::domain::{TokenProblem, Verdict};

/// The header that carries the gateway's own credential.
pub const CREDENTIAL_HEADER: HeaderName = HeaderName::from_static("x-sessiond-credential");
/// The session of a usable token.
pub const SESSION_ID: HeaderName = HeaderName::from_static("x-session-id");
/// The user of a usable token.
pub const USER_ID: HeaderName = HeaderName::from_static("x-user-id");
/// The tenant of a usable token (empty when none).
pub const TENANT_ID: HeaderName = HeaderName::from_static("x-tenant-id");
/// Why a token is not usable.
pub const INVALID_REASON: HeaderName = HeaderName::from_static("x-session-invalid-reason");
/// The RFC 6750 §3 challenge of every refusal.
const CHALLENGE: &str = "Bearer error=\"invalid_token\"";

/// Handles `/auth/check` (any method) and every path below it.
pub async fn check(
    State(state): State<HttpState>,
    request: Request,
) -> Result<Response, HttpError> {
    // The request itself rather than a `HeaderMap` extractor, which would clone the headers.
    let headers = request.headers();
    let credential = headers.get(CREDENTIAL_HEADER).map(HeaderValue::as_bytes);
    let _admitted = state.admit_credential(credential)?;
    let token = user_token(headers, state.auth_cookie.as_deref()).unwrap_or("");
    let sessions = state.sessions()?;
    let answer = match sessions.validate(token).await? {
        Verdict::Valid(valid) => allowed(&valid.claims)?,
        Verdict::Invalid(problem) => denied(problem),
    };
    Ok(answer)
}

/// The user's token: the `Authorization: Bearer` credentials, else the value of the cookie
/// named `cookie`. `None` when neither is there.
fn user_token<'h>(headers: &'h HeaderMap, cookie: Option<&str>) -> Option<&'h str> {
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    from_header.or_else(|| {
        let name = cookie?;
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| cookie_value(v, name))
    })
}

/// The value of the cookie `name` in one `Cookie` header (RFC 6265 §4.2.1: `name=value` pairs
/// separated by `; `), without the double quotes a value may be wrapped in.
fn cookie_value<'h>(header: &'h str, name: &str) -> Option<&'h str> {
    header.split(';').find_map(|pair| {
        let (n, v) = pair.trim().split_once('=')?;
        if n.trim() != name {
            return None;
        }
        let v = v.trim();
        Some(
            v.strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v),
        )
    })
}

/// The identity of a usable token, for the gateway to pass on.
fn allowed(claims: &AccessClaims) -> Result<Response, HttpError> {
    // Ids hold no control characters (the domain refuses them), so each is a valid header
    // value; failing here would be a fault of the service, not of the request.
    let value =
        |text: &str| HeaderValue::from_bytes(text.as_bytes()).map_err(|_| HttpError::Internal);
    let mut id = uuid::Uuid::encode_buffer();
    let session_id = claims
        .session_id
        .as_uuid()
        .hyphenated()
        .encode_lower(&mut id);
    let mut response = StatusCode::OK.into_response();
    let headers = response.headers_mut();
    headers.insert(SESSION_ID, value(session_id)?);
    headers.insert(USER_ID, value(claims.user_id.as_str())?);
    headers.insert(TENANT_ID, value(claims.tenant_id.as_str())?);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

fn denied(problem: TokenProblem) -> Response {
    let reason = invalid_reason(problem).as_str_name();
    (
        StatusCode::UNAUTHORIZED,
        [
            (
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(CHALLENGE),
            ),
            (INVALID_REASON, HeaderValue::from_static(reason)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_exact_name() {
        assert_eq!(cookie_value("sid=abc", "sid"), Some("abc"));
        assert_eq!(cookie_value("a=1; sid=abc; b=2", "sid"), Some("abc"));
        assert_eq!(cookie_value("a=1;sid=\"abc\"", "sid"), Some("abc"));
        assert_eq!(cookie_value("xsid=abc; sidx=def", "sid"), None);
        assert_eq!(cookie_value("sid", "sid"), None);
        assert_eq!(cookie_value("sid=", "sid"), Some(""));
        assert_eq!(cookie_value("", "sid"), None);
        // A JWT's dots and base64url characters pass untouched; only the first `=` splits.
        assert_eq!(cookie_value("sid=a.b-c_d=", "sid"), Some("a.b-c_d="));
    }

    #[test]
    fn the_bearer_header_wins_over_the_cookie() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("sid=from-cookie"));
        assert_eq!(user_token(&headers, None), None, "no cookie configured");
        assert_eq!(user_token(&headers, Some("sid")), Some("from-cookie"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dXNlcjpwYXNz"),
        );
        assert_eq!(user_token(&headers, Some("sid")), Some("from-cookie"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer from-header"),
        );
        assert_eq!(user_token(&headers, Some("sid")), Some("from-header"));
        // Several Cookie headers (as HTTP/2 may send them) are all searched.
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1"));
        headers.append(header::COOKIE, HeaderValue::from_static("sid=second"));
        assert_eq!(user_token(&headers, Some("sid")), Some("second"));
    }

    #[test]
    fn a_refusal_names_the_reason() {
        let response = denied(TokenProblem::Revoked);
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers().get(INVALID_REASON),
            Some(&HeaderValue::from_static("INVALID_REASON_REVOKED"))
        );
        assert_eq!(
            response.headers().get(header::WWW_AUTHENTICATE),
            Some(&HeaderValue::from_static(CHALLENGE))
        );
    }
}
