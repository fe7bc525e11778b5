//! `POST /oauth2/introspect`: RFC 7662 token introspection of sessiond's access tokens.
//!
//! The caller authenticates like a gRPC caller (`Authorization: Bearer <credential>`, role
//! `validator`). The body is a form ([`TokenForm`]) with `token` (required) and
//! `token_type_hint` (accepted and ignored, as RFC 7662 §2.1 allows: only access tokens are
//! known here). The token goes through `Sessions::validate`, the hot path of `Validate`; every
//! unusable token, whatever the reason, is `{"active": false}`, so the answer tells a token
//! scanner nothing more. An active token's RFC 9068 claims (`client_id`, `aud`, `jti`) are
//! answered too; a token an earlier version signed has none. So is the sign-in behind it
//! (RFC 9470, under the JWT claim names that RFC 7662 §2.2 allows): `auth_time` in
//! seconds, and `acr` and `amr` when the login service gave them.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::HttpState;
use super::error::HttpError;
use super::form::TokenForm;
use crate::domain::Verdict;
use crate::domain::access::AccessClaims;

/// The answer for a usable token (RFC 7662 §2.2).
#[derive(Serialize)]
struct Active<'a> {
    active: bool,
    sub: &'a str,
    sid: String,
    #[serde(skip_serializing_if = "is_empty")]
    tid: &'a str,
    exp: i64,
    iat: i64,
    iss: &'a str,
    token_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_time: Option<i64>,
    #[serde(skip_serializing_if = "is_empty")]
    acr: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    amr: &'a [String],
}

fn is_empty(s: &&str) -> bool {
    s.is_empty()
}

/// Handles `POST /oauth2/introspect`.
pub async fn introspect(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    let _admitted = state.admit_bearer(&headers)?;
    let form = TokenForm::read(&headers, body)?;

    let sessions = state.sessions()?;
    let body = match sessions.validate(&form.token).await? {
        Verdict::Valid(valid) => active(&valid.claims, &sessions.policy().issuer),
        Verdict::Invalid(_) => serde_json::json!({ "active": false }),
    };
    let mut response = Json(body).into_response();
    // The answer describes a credential: no cache may keep it (RFC 7662 §4).
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

fn active(claims: &AccessClaims, issuer: &str) -> serde_json::Value {
    let grant = claims.grant.as_ref();
    let answer = Active {
        active: true,
        sub: claims.user_id.as_str(),
        sid: claims.session_id.to_string(),
        tid: claims.tenant_id.as_str(),
        exp: claims.expires_at.as_secs(),
        iat: claims.issued_at.as_secs(),
        iss: issuer,
        token_type: "access_token",
        client_id: grant.map(|g| g.client_id.as_str()),
        aud: grant.map(|g| g.audience.as_str()),
        jti: grant.map(|g| g.token_id.to_string()),
        auth_time: claims.auth_time.map(|at| at.as_secs()),
        acr: &claims.acr,
        amr: &claims.amr,
    };
    // Serialising plain strings and integers cannot fail; an empty answer would be inactive.
    serde_json::to_value(answer).unwrap_or_else(|_| serde_json::json!({ "active": false }))
}
