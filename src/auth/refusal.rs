//! Why a caller is turned away: one value that the gRPC edge renders as a `Status`
//! (`api::status`) and the HTTP edge as a response (`http::error`).

/// A caller refused before its request reaches the domain.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No credential was presented.
    #[error("missing caller credential")]
    CredentialMissing,
    /// The `Authorization` value is not `Bearer <credential>`.
    #[error("authorization must be `Bearer <credential>`")]
    CredentialMalformed,
    /// The credential is no configured caller's.
    #[error("unknown caller credential")]
    CredentialUnknown,
    /// The client certificate's subject is no configured caller's.
    #[error("client certificate maps to no caller")]
    CertificateUnknown,
    /// The caller lacks the role the request needs.
    #[error("caller {caller} lacks the {} role", .role.name())]
    PermissionDenied {
        /// The caller's name.
        caller: String,
        /// The role it lacks.
        role: super::Role,
    },
    /// The caller is over its rate limit.
    #[error("caller {caller} is over its rate limit")]
    RateLimited {
        /// The caller's name.
        caller: String,
    },
    /// Every in-flight slot of the request's budget is taken.
    #[error("too many requests in flight")]
    Overloaded,
}

/// How a refusal is answered, whatever the surface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalKind {
    /// The caller is not known (gRPC `UNAUTHENTICATED`, HTTP 401).
    Unauthenticated,
    /// The caller is known and may not do this (gRPC `PERMISSION_DENIED`, HTTP 403).
    Forbidden,
    /// The caller should retry later (gRPC `RESOURCE_EXHAUSTED`, HTTP 429).
    Exhausted,
}

impl Refusal {
    /// The stable `ErrorInfo` reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::CredentialMissing => "CREDENTIAL_MISSING",
            Refusal::CredentialMalformed => "CREDENTIAL_MALFORMED",
            Refusal::CredentialUnknown => "CREDENTIAL_UNKNOWN",
            Refusal::CertificateUnknown => "CERTIFICATE_UNKNOWN",
            Refusal::PermissionDenied { .. } => "PERMISSION_DENIED",
            Refusal::RateLimited { .. } => "RATE_LIMITED",
            Refusal::Overloaded => "OVERLOADED",
        }
    }

    /// Which of the three answers it gets.
    pub fn kind(&self) -> RefusalKind {
        match self {
            Refusal::CredentialMissing
            | Refusal::CredentialMalformed
            | Refusal::CredentialUnknown
            | Refusal::CertificateUnknown => RefusalKind::Unauthenticated,
            Refusal::PermissionDenied { .. } => RefusalKind::Forbidden,
            Refusal::RateLimited { .. } | Refusal::Overloaded => RefusalKind::Exhausted,
        }
    }
}
