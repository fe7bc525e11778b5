//! The one place a `tonic::Status` is made from a domain error, a refused caller or an
//! undecodable request.
//! Every status carries a `google.rpc.ErrorInfo` with a stable reason; store details are
//! logged, never returned.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::auth::{Refusal, RefusalKind};
use crate::domain::DomainError;
use crate::model::FieldError;

/// The `ErrorInfo.domain` of every error.
pub const ERROR_DOMAIN: &str = "sessiond";

impl From<DomainError> for Status {
    fn from(err: DomainError) -> Status {
        let code = match &err {
            DomainError::InvalidArgument(_) => Code::InvalidArgument,
            DomainError::AccessToken(_) => Code::Unauthenticated,
            DomainError::RefreshToken(_) => Code::Unauthenticated,
            DomainError::RefreshTokenReuse => Code::Unauthenticated,
            DomainError::SessionNotFound => Code::NotFound,
            DomainError::Store(_) => Code::Unavailable,
            DomainError::Internal(_) => Code::Internal,
        };
        match &err {
            DomainError::Store(e) => tracing::warn!(error = %e, "store error"),
            DomainError::Internal(e) => tracing::error!(error = %e, "internal error"),
            _ => {}
        }
        let mut metadata = HashMap::new();
        if let DomainError::InvalidArgument(invalid) = &err {
            metadata.insert("field".to_owned(), invalid.field.to_owned());
        }
        let details = ErrorDetails::with_error_info(err.reason(), ERROR_DOMAIN, metadata);
        Status::with_error_details(code, err.to_string(), details)
    }
}

impl From<Refusal> for Status {
    fn from(refusal: Refusal) -> Status {
        let code = match refusal.kind() {
            RefusalKind::Unauthenticated => Code::Unauthenticated,
            RefusalKind::Forbidden => Code::PermissionDenied,
            RefusalKind::Exhausted => Code::ResourceExhausted,
        };
        let details = ErrorDetails::with_error_info(refusal.reason(), ERROR_DOMAIN, HashMap::new());
        Status::with_error_details(code, refusal.to_string(), details)
    }
}

impl From<FieldError> for Status {
    fn from(err: FieldError) -> Status {
        DomainError::from(err).into()
    }
}

/// `INVALID_ARGUMENT` (reason `MALFORMED_REQUEST`) for a request message that is not valid
/// protobuf for its type. The decoder's description says what is wrong (a truncated field, a
/// string that is not UTF-8); it holds no request bytes.
pub fn malformed_message(error: &prost::DecodeError) -> Status {
    let details = ErrorDetails::with_error_info("MALFORMED_REQUEST", ERROR_DOMAIN, HashMap::new());
    Status::with_error_details(
        Code::InvalidArgument,
        format!("malformed request: {error}"),
        details,
    )
}
