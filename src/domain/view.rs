//! What the edges see of a session: everything but its refresh state, so no edge can encode
//! a refresh hash or generation by mistake.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::access::AccessClaims;
use super::cache::CachedSession;
use crate::model::ids::{SessionId, TenantId, UserId};
use crate::model::records::{SessionRecord, SignIn};
use crate::model::time::Timestamp;

/// A session as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// The session's id.
    pub id: SessionId,
    /// Whose session it is.
    pub user_id: UserId,
    /// The tenant, or empty.
    pub tenant_id: TenantId,
    /// When it was issued.
    pub created_at: Timestamp,
    /// When a token of it was last used (as last written).
    pub last_seen_at: Timestamp,
    /// When it ends.
    pub expires_at: Timestamp,
    /// The client's IP address text, or empty.
    pub ip: String,
    /// The client's user agent, or empty.
    pub user_agent: String,
    /// A label for the device.
    pub device_name: String,
    /// Caller-defined key/value pairs.
    pub metadata: BTreeMap<String, String>,
    /// When it was revoked; `None` while active.
    pub revoked_at: Option<Timestamp>,
    /// Why it was revoked, or empty.
    pub revoke_reason: String,
    /// How long it may go unused; `None` when it has no idle timeout.
    pub idle_timeout: Option<std::time::Duration>,
    /// How recently and how strongly the user authenticated.
    pub sign_in: SignIn,
}

impl From<SessionRecord> for Session {
    fn from(r: SessionRecord) -> Self {
        Self {
            id: r.id,
            user_id: r.user_id,
            tenant_id: r.tenant_id,
            created_at: r.created_at,
            last_seen_at: r.last_seen_at,
            expires_at: r.expires_at,
            ip: r.ip,
            user_agent: r.user_agent,
            device_name: r.device_name,
            metadata: r.metadata,
            revoked_at: r.revoked_at,
            revoke_reason: r.revoke_reason,
            idle_timeout: r.idle_timeout,
            sign_in: r.sign_in,
        }
    }
}

impl From<&SessionRecord> for Session {
    fn from(r: &SessionRecord) -> Self {
        Self {
            id: r.id,
            user_id: r.user_id.clone(),
            tenant_id: r.tenant_id.clone(),
            created_at: r.created_at,
            last_seen_at: r.last_seen_at,
            expires_at: r.expires_at,
            ip: r.ip.clone(),
            user_agent: r.user_agent.clone(),
            device_name: r.device_name.clone(),
            metadata: r.metadata.clone(),
            revoked_at: r.revoked_at,
            revoke_reason: r.revoke_reason.clone(),
            idle_timeout: r.idle_timeout,
            sign_in: r.sign_in.clone(),
        }
    }
}

/// An access token that stands: its claims, and its session on demand (the gateways' paths
/// need only the claims, so the session is copied out only when asked for).
#[derive(Clone, Debug)]
pub struct ValidToken {
    /// The verified claims.
    pub claims: Arc<AccessClaims>,
    pub(super) entry: Arc<CachedSession>,
}

impl ValidToken {
    pub(super) fn new(claims: Arc<AccessClaims>, entry: Arc<CachedSession>) -> Self {
        Self { claims, entry }
    }

    /// The token's session.
    pub fn session(&self) -> Session {
        Session::from(&*self.entry.record)
    }

    /// The token's session as cached, to read a few fields without copying the rest.
    pub fn record(&self) -> &SessionRecord {
        &self.entry.record
    }
}
