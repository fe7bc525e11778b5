//! The domain's one error type. `api::status` maps each variant to a gRPC status in one place.

use crate::model::FieldError;
use crate::store::StoreError;

/// Why a token cannot be used. Shared by `Validate` (as a reason) and by the RPCs that
/// require a token (as an `UNAUTHENTICATED` error).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenProblem {
    /// Empty, not a token, or not parseable.
    Malformed,
    /// The signature (or the refresh token's tag) does not verify under any known key.
    BadSignature,
    /// The token or its session has expired.
    Expired,
    /// The session was revoked, or the token predates a user or global revocation.
    Revoked,
    /// The session does not exist (or no longer exists).
    UnknownSession,
    /// The session saw no activity for longer than its idle timeout.
    Idle,
    /// The sign-in is older than the caller's `max_age`, or its `acr` is not one the caller
    /// accepts. Only `Validate` asks this.
    StepUpRequired,
}

impl TokenProblem {
    /// A stable, machine-readable name.
    pub fn reason(self) -> &'static str {
        match self {
            TokenProblem::Malformed => "TOKEN_MALFORMED",
            TokenProblem::BadSignature => "TOKEN_BAD_SIGNATURE",
            TokenProblem::Expired => "TOKEN_EXPIRED",
            TokenProblem::Revoked => "SESSION_REVOKED",
            TokenProblem::UnknownSession => "SESSION_UNKNOWN",
            TokenProblem::Idle => "SESSION_IDLE",
            TokenProblem::StepUpRequired => "STEP_UP_REQUIRED",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            TokenProblem::Malformed => "token is malformed",
            TokenProblem::BadSignature => "token signature does not verify",
            TokenProblem::Expired => "token has expired",
            TokenProblem::Revoked => "session has been revoked",
            TokenProblem::UnknownSession => "session does not exist",
            TokenProblem::Idle => "session was idle for longer than its idle timeout",
            TokenProblem::StepUpRequired => "a more recent or stronger sign-in is required",
        }
    }
}

/// Everything the domain can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// A request field is missing or out of bounds.
    #[error(transparent)]
    InvalidArgument(#[from] FieldError),
    /// The access token presented is unusable.
    #[error("access {}", .0.describe())]
    AccessToken(TokenProblem),
    /// The refresh token presented is unusable.
    #[error("refresh {}", .0.describe())]
    RefreshToken(TokenProblem),
    /// An authentic refresh token that was already rotated away: the session is now revoked.
    #[error("refresh token was already used; the session has been revoked")]
    RefreshTokenReuse,
    /// The session does not exist or is not the caller's (deliberately the same answer).
    #[error("session not found")]
    SessionNotFound,
    /// The store could not be reached or failed.
    #[error("store unavailable")]
    Store(#[from] StoreError),
    /// A fault inside the service that no caller can fix.
    #[error("internal error")]
    Internal(String),
}

impl DomainError {
    /// An `InvalidArgument` with a fixed message.
    pub fn invalid(field: &'static str, message: &'static str) -> Self {
        DomainError::InvalidArgument(FieldError::new(field, message))
    }

    /// An `InvalidArgument` with a formatted message.
    pub fn invalid_owned(field: &'static str, message: String) -> Self {
        DomainError::InvalidArgument(FieldError::owned(field, message))
    }

    /// A stable, machine-readable reason, carried in the `ErrorInfo` detail.
    pub fn reason(&self) -> &'static str {
        match self {
            DomainError::InvalidArgument(_) => "INVALID_ARGUMENT",
            DomainError::AccessToken(p) => p.reason(),
            DomainError::RefreshToken(TokenProblem::Malformed) => "REFRESH_TOKEN_MALFORMED",
            DomainError::RefreshToken(TokenProblem::BadSignature) => "REFRESH_TOKEN_INVALID",
            DomainError::RefreshToken(p) => p.reason(),
            DomainError::RefreshTokenReuse => "REFRESH_TOKEN_REUSE",
            DomainError::SessionNotFound => "SESSION_NOT_FOUND",
            DomainError::Store(_) => "STORE_UNAVAILABLE",
            DomainError::Internal(_) => "INTERNAL",
        }
    }
}
