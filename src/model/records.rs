//! The rows a store keeps, in domain terms.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ids::{SessionId, TenantId, UserId};
use super::time::Timestamp;

/// A keyed hash of the current refresh token; the token itself is never stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshHash(pub [u8; 32]);

/// A session as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    /// The session's id.
    pub id: SessionId,
    /// Whose session it is.
    pub user_id: UserId,
    /// The tenant, or empty.
    pub tenant_id: TenantId,
    /// When it was issued.
    pub created_at: Timestamp,
    /// When a token of it was last used (updated at most once per interval).
    pub last_seen_at: Timestamp,
    /// When it ends; absolute, refreshes do not extend it.
    pub expires_at: Timestamp,
    /// The client's IP address text, or empty.
    pub ip: String,
    /// The client's user agent, or empty.
    pub user_agent: String,
    /// A label for the device.
    pub device_name: String,
    /// Caller-defined key/value pairs.
    pub metadata: BTreeMap<String, String>,
    /// The current refresh generation, starting at 0.
    pub refresh_generation: u32,
    /// The keyed hash of the current refresh token.
    pub refresh_hash: RefreshHash,
    /// When it was revoked; `None` while active.
    pub revoked_at: Option<Timestamp>,
    /// Why it was revoked, or empty.
    pub revoke_reason: String,
}

impl SessionRecord {
    /// True once revoked.
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }
}

/// One audit log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// A time-ordered id.
    pub event_id: uuid::Uuid,
    /// When it happened.
    pub at: Timestamp,
    /// What happened: `session_issued`, `session_revoked`, …
    pub kind: String,
    /// Who did it: the calling service, plus `user` or `admin`.
    pub actor: String,
    /// Whose session it concerns, or empty for global actions.
    pub user_id: String,
    /// The session concerned, if one.
    pub session_id: Option<SessionId>,
    /// The end user's IP, or empty.
    pub ip: String,
    /// The end user's user agent, or empty.
    pub user_agent: String,
    /// Why, or empty.
    pub reason: String,
}

/// A revocation as it travels through the feed to other replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevocationEvent {
    /// One session was revoked.
    Session(SessionId),
    /// A user's "not before" moved.
    User(UserId),
    /// The global "not before" moved.
    Global,
}
