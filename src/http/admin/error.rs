//! The one place an error of the admin JSON API is rendered: `{"error": <ErrorInfo reason>,
//! "message": ...}` with the HTTP status of its gRPC code.
//!
//! A refusal of the admin API is, almost always, exactly the `tonic::Status` the gRPC admin
//! RPC would have answered: the caller check (`CREDENTIAL_MISSING`, `PERMISSION_DENIED`,
//! `RATE_LIMITED`, `OVERLOADED`) and the domain (`INVALID_ARGUMENT`, `SESSION_NOT_FOUND`,
//! `STORE_UNAVAILABLE`) build it in their own single places, and this module only renders it
//! a second way, so both surfaces answer the same reason for the same fault. The few refusals
//! that only HTTP knows (an undecodable body, a cross-origin request, an unknown path) are
//! variants of their own.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tonic::Code;
use tonic_types::StatusExt;

use crate::auth::Refusal;
use crate::domain::DomainError;

/// Why an admin API request was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// What the gRPC admin RPC answers for the same request.
    #[error("{}", .0.message())]
    Status(tonic::Status),
    /// The query or body cannot be decoded (not JSON, the wrong content type, an unknown or
    /// repeated field): `400 MALFORMED_REQUEST`, as gRPC answers an undecodable message.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// A browser sent the request from another origin (or, without callers configured, to a
    /// host name that is not loopback): `403`.
    #[error("{0}")]
    Forbidden(&'static str),
    /// No such path under `/admin/api/`.
    #[error("no such admin endpoint")]
    NotFound,
    /// The path exists, not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The service is shutting down.
    #[error("shutting down")]
    ShuttingDown,
}

impl From<DomainError> for AdminError {
    fn from(err: DomainError) -> Self {
        // Through the gRPC mapping, which also logs store and internal faults.
        AdminError::Status(tonic::Status::from(err))
    }
}

impl From<Refusal> for AdminError {
    fn from(refusal: Refusal) -> Self {
        // Through the gRPC rendering, so both surfaces answer the same reason.
        AdminError::Status(tonic::Status::from(refusal))
    }
}

impl From<tonic::Status> for AdminError {
    fn from(status: tonic::Status) -> Self {
        AdminError::Status(status)
    }
}

/// The HTTP status of a gRPC code (the mapping of `google.rpc.Code`'s documentation).
fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl AdminError {
    /// The HTTP status and the stable machine-readable reason.
    fn parts(&self) -> (StatusCode, String) {
        match self {
            AdminError::Status(status) => {
                let reason = status
                    .get_details_error_info()
                    .map(|info| info.reason)
                    .unwrap_or_else(|| "INTERNAL".to_owned());
                (http_status(status.code()), reason)
            }
            AdminError::Malformed(_) => (StatusCode::BAD_REQUEST, "MALFORMED_REQUEST".to_owned()),
            AdminError::Forbidden(_) => (StatusCode::FORBIDDEN, "FORBIDDEN_ORIGIN".to_owned()),
            AdminError::NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND".to_owned()),
            AdminError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED".to_owned(),
            ),
            AdminError::ShuttingDown => {
                (StatusCode::SERVICE_UNAVAILABLE, "SHUTTING_DOWN".to_owned())
            }
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, reason) = self.parts();
        let body = Json(serde_json::json!({
            "error": reason,
            "message": self.to_string(),
        }));
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6750 §3: tell the caller how to authenticate.
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sessiond-admin\""),
            );
        }
        if matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_errors_keep_their_grpc_reason() {
        let (status, reason) =
            AdminError::from(DomainError::invalid("user_id", "is required")).parts();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(reason, "INVALID_ARGUMENT");
        let (status, reason) = AdminError::from(DomainError::SessionNotFound).parts();
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(reason, "SESSION_NOT_FOUND");
    }

    #[test]
    fn a_status_without_error_info_is_internal() {
        let (status, reason) = AdminError::Status(tonic::Status::internal("boom")).parts();
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(reason, "INTERNAL");
    }
}
