//! `POST /oauth2/revoke`: RFC 7009 token revocation of sessiond's access and refresh tokens.
//!
//! The caller authenticates as for introspection (`Authorization: Bearer <credential>`, role
//! `validator`); the body is the same form ([`TokenForm`]), its `token_type_hint`
//! (`access_token`, `refresh_token`) saying which kind to try first. The session behind an
//! authentic token ends (`Sessions::revoke_token`, audited with reason `oauth2_revoke`).
//! Every token, usable or not, is answered 200 with an empty body (RFC 7009 §2.2), so the
//! answer tells a token scanner nothing; a request without `token` is 400
//! `{"error":"invalid_request"}`, a store that cannot answer 503 (RFC 7009 §2.2.1: the client
//! retries).

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::HttpState;
use super::error::HttpError;
use super::form::TokenForm;
use crate::domain::revoke::TokenKind;

/// Handles `POST /oauth2/revoke`.
pub async fn revoke(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    let admitted = state.admit_bearer(&headers)?;
    let form = TokenForm::read(&headers, body)?;
    let hint = form.hint.as_deref().and_then(TokenKind::from_hint);

    let sessions = state.sessions()?;
    sessions
        .revoke_token(&admitted.caller, &form.token, hint)
        .await?;
    Ok((
        StatusCode::OK,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
    )
        .into_response())
}
