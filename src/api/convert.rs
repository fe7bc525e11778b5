//! Conversions between protobuf messages and domain values. Decoding checks every field
//! through the domain's parsers, so nothing unchecked passes this module.

use std::time::Duration;

use crate::domain::audit::Caller;
use crate::domain::client::{Client, parse_metadata};
use crate::domain::{DomainError, IssueRequest, Session, SignInRequest, TokenPair, TokenProblem};
use crate::model::FieldError;
use crate::model::ids::{SessionId, TenantId, UserId};
use crate::model::records::{AuditRecord, SessionRecord};
use crate::model::time::Timestamp;
use crate::pb;

/// A domain instant as a protobuf timestamp.
pub fn timestamp(t: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.as_secs(),
        nanos: t.subsec_nanos(),
    }
}

/// A session as the API shows it.
pub fn session(r: Session, current: bool) -> pb::Session {
    pb::Session {
        session_id: r.id.to_string(),
        user_id: r.user_id.as_str().to_owned(),
        tenant_id: r.tenant_id.as_str().to_owned(),
        created_at: Some(timestamp(r.created_at)),
        last_seen_at: Some(timestamp(r.last_seen_at)),
        expires_at: Some(timestamp(r.expires_at)),
        ip: r.ip,
        user_agent: r.user_agent,
        device_name: r.device_name,
        metadata: r.metadata.into_iter().collect(),
        current,
        revoked_at: r.revoked_at.map(timestamp),
        revoke_reason: r.revoke_reason,
        idle_timeout: r.idle_timeout.map(duration),
        auth_time: Some(timestamp(r.sign_in.auth_time)),
        acr: r.sign_in.acr,
        amr: r.sign_in.amr,
    }
}

/// The `SESSION_VIEW_BASIC` answer: the ids, the lifetimes and the sign-in, read in place
/// from the cached record (no copy of the client's details or metadata).
pub fn basic_session(r: &SessionRecord) -> pb::Session {
    pb::Session {
        session_id: r.id.to_string(),
        user_id: r.user_id.as_str().to_owned(),
        tenant_id: r.tenant_id.as_str().to_owned(),
        expires_at: Some(timestamp(r.expires_at)),
        current: true,
        idle_timeout: r.idle_timeout.map(duration),
        auth_time: Some(timestamp(r.sign_in.auth_time)),
        acr: r.sign_in.acr.clone(),
        amr: r.sign_in.amr.clone(),
        ..Default::default()
    }
}

/// A request's `view`; an unknown value is refused rather than taken for the full view.
pub fn session_view(view: i32) -> Result<pb::SessionView, DomainError> {
    pb::SessionView::try_from(view)
        .map_err(|_| DomainError::invalid_owned("view", format!("unknown value {view}")))
}

/// A domain duration as a protobuf duration.
pub fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        // Below one billion by construction.
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// A protobuf duration that must not be negative, as a domain duration; `field` names it in
/// the error.
pub fn non_negative(
    field: &'static str,
    d: prost_types::Duration,
) -> Result<Duration, DomainError> {
    if d.seconds < 0 || d.nanos < 0 {
        return Err(DomainError::invalid(field, "must not be negative"));
    }
    let secs = u64::try_from(d.seconds).map_err(|_| DomainError::invalid(field, "out of range"))?;
    let nanos = u32::try_from(d.nanos).map_err(|_| DomainError::invalid(field, "out of range"))?;
    if nanos >= 1_000_000_000 {
        return Err(DomainError::invalid(field, "out of range"));
    }
    Ok(Duration::new(secs, nanos))
}

/// A protobuf timestamp as a domain instant; `field` names it in the error.
pub fn instant(field: &'static str, t: prost_types::Timestamp) -> Result<Timestamp, DomainError> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(DomainError::invalid(field, "out of range"));
    }
    let micros = t
        .seconds
        .checked_mul(1_000_000)
        .and_then(|s| s.checked_add(i64::from(t.nanos / 1000)))
        .filter(|m| *m >= 0)
        .ok_or_else(|| DomainError::invalid(field, "out of range"))?;
    Ok(Timestamp::from_micros(micros))
}

/// The sign-in a request states (Issue, StepUp), checked later against the clock.
pub fn sign_in_request(
    auth_time: Option<prost_types::Timestamp>,
    acr: String,
    amr: Vec<String>,
) -> Result<SignInRequest, DomainError> {
    Ok(SignInRequest {
        auth_time: auth_time.map(|t| instant("auth_time", t)).transpose()?,
        acr,
        amr,
    })
}

/// Client information a request gives, `None` when it gives none (or only empty fields).
pub fn given_client(c: Option<pb::ClientInfo>) -> Result<Option<Client>, DomainError> {
    match c {
        Some(c) if !(c.ip.is_empty() && c.user_agent.is_empty() && c.device_name.is_empty()) => {
            Client::parse(&c.ip, &c.user_agent, &c.device_name).map(Some)
        }
        _ => Ok(None),
    }
}

/// A token pair as the API shows it.
pub fn tokens(t: TokenPair) -> pb::TokenPair {
    pb::TokenPair {
        access_token: t.access_token,
        access_token_expires_at: Some(timestamp(t.access_token_expires_at)),
        refresh_token: t.refresh_token,
        refresh_token_expires_at: Some(timestamp(t.refresh_token_expires_at)),
    }
}

/// An audit record as the API shows it.
pub fn audit_event(r: AuditRecord) -> pb::AuditEvent {
    pb::AuditEvent {
        event_id: r.event_id.to_string(),
        at: Some(timestamp(r.at)),
        kind: r.kind,
        actor: r.actor,
        user_id: r.user_id,
        session_id: r.session_id.map(|s| s.to_string()).unwrap_or_default(),
        ip: r.ip,
        user_agent: r.user_agent,
        reason: r.reason,
    }
}

/// Why a token is unusable, as the API's enum.
pub fn invalid_reason(p: TokenProblem) -> pb::InvalidReason {
    match p {
        TokenProblem::Malformed => pb::InvalidReason::Malformed,
        TokenProblem::BadSignature => pb::InvalidReason::BadSignature,
        TokenProblem::Expired => pb::InvalidReason::Expired,
        TokenProblem::Revoked => pb::InvalidReason::Revoked,
        TokenProblem::UnknownSession => pb::InvalidReason::UnknownSession,
        TokenProblem::Idle => pb::InvalidReason::IdleTimeout,
        TokenProblem::StepUpRequired => pb::InvalidReason::StepUpRequired,
    }
}

/// Checks client information (absent means empty).
pub fn client(c: Option<pb::ClientInfo>) -> Result<Client, DomainError> {
    let c = c.unwrap_or_default();
    Client::parse(&c.ip, &c.user_agent, &c.device_name)
}

/// Checks an `Issue` request.
pub fn issue_request(r: pb::IssueRequest) -> Result<IssueRequest, DomainError> {
    let ttl = match r.ttl {
        None => None,
        Some(d) => {
            if d.seconds < 0 || d.nanos < 0 {
                return Err(DomainError::invalid("ttl", "must be at least 1s"));
            }
            let secs = u64::try_from(d.seconds)
                .map_err(|_| DomainError::invalid("ttl", "out of range"))?;
            let nanos =
                u32::try_from(d.nanos).map_err(|_| DomainError::invalid("ttl", "out of range"))?;
            Some(Duration::new(secs, 0).saturating_add(Duration::from_nanos(u64::from(nanos))))
        }
    };
    Ok(IssueRequest {
        user_id: UserId::parse("user_id", &r.user_id)?,
        tenant_id: TenantId::parse("tenant_id", &r.tenant_id)?,
        client: client(r.client)?,
        ttl,
        metadata: parse_metadata(r.metadata)?,
        idle_timeout: r
            .idle_timeout
            .map(|d| non_negative("idle_timeout", d))
            .transpose()?,
        sign_in: sign_in_request(r.auth_time, r.acr, r.amr)?,
    })
}

/// An optional user id: empty means "every user".
pub fn optional_user(field: &'static str, s: &str) -> Result<Option<UserId>, FieldError> {
    if s.is_empty() {
        Ok(None)
    } else {
        UserId::parse(field, s).map(Some)
    }
}

/// An optional tenant id: empty means "every tenant".
pub fn optional_tenant(s: &str) -> Result<Option<TenantId>, FieldError> {
    if s.is_empty() {
        Ok(None)
    } else {
        TenantId::parse("tenant_id", s).map(Some)
    }
}

/// A required session id.
pub fn session_id(s: &str) -> Result<SessionId, FieldError> {
    s.parse()
}

/// The caller a request was authenticated as (anonymous until caller credentials are set up),
/// with the connection's remote address (over TLS too), which admin audit events record.
pub fn caller<T>(req: &tonic::Request<T>) -> Caller {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or_else(Caller::anonymous)
        .with_peer(req.remote_addr())
}
