//! The one place an HTTP error response is made. Every error is JSON in the OAuth 2.0 shape
//! (`{"error": "...", "error_description": "..."}`, RFC 6749 §5.2), so a client handles the
//! whole surface one way; store details are logged, never returned.

use std::borrow::Cow;

use crate::auth::{Refusal, RefusalKind};
use crate::domain::DomainError;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Why an HTTP request was not answered as asked.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The request is malformed: a missing or repeated parameter, a wrong content type, a body
    /// that is not a form.
    #[error("{0}")]
    InvalidRequest(Cow<'static, str>),
    /// The body is larger than the surface accepts.
    #[error("request body too large")]
    TooLarge,
    /// The caller was refused by the authenticator (missing or unknown credential, missing
    /// role, rate limit, overload).
    #[error(transparent)]
    Caller(#[from] Refusal),
    /// The store could not answer.
    #[error("store unavailable")]
    Unavailable,
    /// The request was not read and answered within `--request-timeout`.
    #[error("request timed out")]
    Timeout,
    /// The service is shutting down.
    #[error("shutting down")]
    ShuttingDown,
    /// No such route.
    #[error("not found")]
    NotFound,
    /// The route exists, not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A fault inside the service.
    #[error("internal error")]
    Internal,
}

impl From<DomainError> for HttpError {
    fn from(err: DomainError) -> HttpError {
        match err {
            DomainError::Store(error) => {
                tracing::warn!(%error, "store error");
                HttpError::Unavailable
            }
            DomainError::InvalidArgument(invalid) => {
                HttpError::InvalidRequest(invalid.to_string().into())
            }
            // The HTTP surface only checks tokens through `validate` and `revoke_token`,
            // which answer an unusable token as a verdict or `false`, never as one of these.
            DomainError::AccessToken(_)
            | DomainError::RefreshToken(_)
            | DomainError::RefreshTokenReuse
            | DomainError::SessionNotFound => HttpError::Internal,
            DomainError::Internal(error) => {
                tracing::error!(%error, "internal error");
                HttpError::Internal
            }
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let (status, error) = match &self {
            HttpError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            HttpError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "invalid_request"),
            HttpError::Caller(refusal) => match refusal.kind() {
                RefusalKind::Unauthenticated => (StatusCode::UNAUTHORIZED, "invalid_client"),
                RefusalKind::Forbidden => (StatusCode::FORBIDDEN, "unauthorized_client"),
                RefusalKind::Exhausted => {
                    (StatusCode::TOO_MANY_REQUESTS, "temporarily_unavailable")
                }
            },
            HttpError::Unavailable | HttpError::ShuttingDown => {
                (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
            }
            HttpError::Timeout => (StatusCode::REQUEST_TIMEOUT, "temporarily_unavailable"),
            HttpError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            HttpError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            HttpError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        };
        let body = Json(serde_json::json!({
            "error": error,
            "error_description": self.to_string(),
        }));
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6750 §3: tell the caller how to authenticate.
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sessiond\""),
            );
        }
        if matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}
