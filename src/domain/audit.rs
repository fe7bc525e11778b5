//! Audit events: who did what to which session, when and from where.
//!
//! Each event is stored (readable through `AdminListAuditEvents`) and emitted as a structured
//! log event on the `sessiond::audit` target. Neither ever holds a token or a credential.
//!
//! "From where" is the end user's address (`ClientInfo.ip`) for what a service does on a
//! user's behalf, and the calling service's own network address for an operator's action,
//! which concerns no end user's client.

use std::net::{IpAddr, SocketAddr};

use crate::model::ids::SessionId;
use crate::model::records::AuditRecord;
use crate::model::time::Timestamp;

/// The calling service, as authenticated at the edge ("anonymous" when no callers are set up),
/// and the network address it called from, when the transport knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    name: String,
    address: Option<IpAddr>,
}

impl Caller {
    /// A caller of the given name, from an unknown address.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            address: None,
        }
    }

    /// The same caller, calling from `peer` (the connection's remote address). An IPv4
    /// address seen through an IPv6 socket (`::ffff:a.b.c.d`) is recorded as IPv4.
    pub fn with_peer(self, peer: Option<SocketAddr>) -> Self {
        Self {
            address: peer.map(|p| p.ip().to_canonical()),
            ..self
        }
    }

    /// Where the caller called from, when known.
    pub fn address(&self) -> Option<IpAddr> {
        self.address
    }

    /// The caller used when the service runs without caller credentials.
    pub fn anonymous() -> Self {
        Self::new("anonymous")
    }

    /// The caller's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn on_behalf_of_user(&self) -> String {
        format!("{}:user", self.name)
    }

    fn as_admin(&self) -> String {
        format!("{}:admin", self.name)
    }
}

/// What happened; the names are part of the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditKind {
    /// `Issue` created a session.
    SessionIssued,
    /// `Refresh` rotated a session's tokens.
    SessionRefreshed,
    /// One session was revoked (by its user or an operator).
    SessionRevoked,
    /// A user signed out everywhere.
    SessionsRevokedAll,
    /// An operator revoked every session of a user.
    UserRevoked,
    /// A rotated-away refresh token was presented; the session was revoked.
    RefreshTokenReuse,
    /// The per-user session limit evicted the oldest session.
    SessionLimitEvicted,
    /// An operator rejected every token issued so far.
    GlobalRevoke,
    /// The login service authenticated the user again for a session (`StepUp`).
    SessionSteppedUp,
}

impl AuditKind {
    /// The stable name stored and returned.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::SessionIssued => "session_issued",
            AuditKind::SessionRefreshed => "session_refreshed",
            AuditKind::SessionRevoked => "session_revoked",
            AuditKind::SessionsRevokedAll => "sessions_revoked_all",
            AuditKind::UserRevoked => "user_revoked",
            AuditKind::RefreshTokenReuse => "refresh_token_reuse",
            AuditKind::SessionLimitEvicted => "session_limit_evicted",
            AuditKind::GlobalRevoke => "global_revoke",
            AuditKind::SessionSteppedUp => "session_stepped_up",
        }
    }
}

/// Who acted: the calling service on a user's behalf, or as an operator.
#[derive(Clone, Copy, Debug)]
pub enum Role {
    /// On behalf of the signed-in user (or the login flow).
    User,
    /// As an operator.
    Admin,
}

/// Builds an audit record and logs it.
pub struct AuditEntry {
    record: AuditRecord,
}

impl AuditEntry {
    /// A new event of `kind` by `caller` acting in `role`, now. An operator's event is from
    /// the caller's own address; a user's is from the client [`client`](Self::client) names.
    pub fn new(kind: AuditKind, caller: &Caller, role: Role) -> Self {
        let (actor, ip) = match role {
            Role::User => (caller.on_behalf_of_user(), String::new()),
            Role::Admin => (
                caller.as_admin(),
                caller.address.map(|a| a.to_string()).unwrap_or_default(),
            ),
        };
        Self {
            record: AuditRecord {
                event_id: uuid::Uuid::now_v7(),
                at: Timestamp::from_micros(0),
                kind: kind.as_str().to_owned(),
                actor,
                user_id: String::new(),
                session_id: None,
                ip,
                user_agent: String::new(),
                reason: String::new(),
            },
        }
    }

    /// Sets the user and session concerned.
    pub fn session(mut self, user_id: &str, session_id: Option<SessionId>) -> Self {
        self.record.user_id = user_id.to_owned();
        self.record.session_id = session_id;
        self
    }

    /// Sets where the request came from.
    pub fn client(mut self, ip: &str, user_agent: &str) -> Self {
        self.record.ip = ip.to_owned();
        self.record.user_agent = user_agent.to_owned();
        self
    }

    /// Sets why.
    pub fn reason(mut self, reason: &str) -> Self {
        self.record.reason = reason.to_owned();
        self
    }

    /// Stamps the event with the instant it happened and returns the record to store, not yet
    /// logged: for an event stored only if its write succeeds (an issue) or wins (a rotation),
    /// which [`log`] once it did.
    pub fn stamped(mut self, at: Timestamp) -> AuditRecord {
        self.record.at = at;
        self.record
    }

    /// Stamps the event with the instant it happened, logs it and returns the record to store.
    pub fn finish(self, at: Timestamp) -> AuditRecord {
        let record = self.stamped(at);
        log(&record);
        record
    }
}

/// Logs an audit event on the `sessiond::audit` target.
pub fn log(r: &AuditRecord) {
    tracing::info!(
        target: "sessiond::audit",
        kind = %r.kind,
        actor = %r.actor,
        user_id = %r.user_id,
        session_id = ?r.session_id.map(|s| s.to_string()),
        ip = %r.ip,
        reason = %r.reason,
        "audit"
    );
}
