//! The rows a store keeps, in domain terms.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ids::{SessionId, TenantId, UserId};
use super::time::Timestamp;

/// A keyed hash of the current refresh token; the token itself is never stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshHash(pub [u8; 32]);

/// The per-session secret input that every refresh token of the session is derived from,
/// together with a pepper-derived key the store never sees: a reader of the store alone
/// cannot compute a token from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshSalt(pub [u8; 16]);

/// A refresh generation and the keyed hash of its token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefreshState {
    /// The generation, starting at 0.
    pub generation: u32,
    /// The keyed hash of that generation's token.
    pub hash: RefreshHash,
}

/// The generation a rotation replaced, kept so that its token may be replayed within the
/// refresh grace and recognised (as reuse) after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreviousRefresh {
    /// The rotated-away generation and the hash of its token.
    pub state: RefreshState,
    /// When it was rotated away.
    pub rotated_at: Timestamp,
}

/// How recently and how strongly the user authenticated for a session (RFC 9470).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignIn {
    /// When the user authenticated.
    pub auth_time: Timestamp,
    /// The authentication context class reference, or empty.
    pub acr: String,
    /// The authentication methods.
    pub amr: Vec<String>,
}

/// Where a session was last used from, as a `Refresh` or `StepUp` reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientSeen {
    /// The client's IP address text, or empty.
    pub ip: String,
    /// The client's user agent, or empty.
    pub user_agent: String,
    /// A label for the device.
    pub device_name: String,
}

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
    /// What the session's refresh tokens are derived from; `None` on a session stored before
    /// tokens were derived (its next rotation sets one).
    pub refresh_salt: Option<RefreshSalt>,
    /// The generation the last rotation replaced.
    pub previous_refresh: Option<PreviousRefresh>,
    /// How long the session may go unused; `None` when it has no idle timeout.
    pub idle_timeout: Option<Duration>,
    /// How recently and how strongly the user authenticated.
    pub sign_in: SignIn,
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

    /// The current refresh generation and hash.
    pub fn refresh_state(&self) -> RefreshState {
        RefreshState {
            generation: self.refresh_generation,
            hash: self.refresh_hash,
        }
    }

    /// True when no activity was seen for longer than the idle timeout by `now`, judging by
    /// `last_activity` (the store's `last_seen_at`, or later activity known to the caller).
    pub fn idle_by(&self, last_activity: Timestamp, now: Timestamp) -> bool {
        self.idle_timeout
            .is_some_and(|idle| last_activity.max(self.last_seen_at).plus(idle) < now)
    }
}

/// One rotation of a session's refresh token, decided by the store by compare-and-set.
#[derive(Clone, Debug)]
pub struct RotationStep {
    /// The state the rotation replaces; the step applies only while it is current.
    pub expected: RefreshState,
    /// The state after it.
    pub next: RefreshState,
    /// The salt the next token was derived from (the session's, or a new one for a session
    /// that had none).
    pub salt: RefreshSalt,
    /// When it happens: the previous state's `rotated_at` and the session's `last_seen_at`.
    pub at: Timestamp,
    /// Where the session is now used from, when the caller said.
    pub client: Option<ClientSeen>,
    /// A new sign-in (step-up), when there was one.
    pub sign_in: Option<SignIn>,
}

impl RotationStep {
    /// `record` as it stands once this step has applied to it.
    pub fn applied_to(&self, mut record: SessionRecord) -> SessionRecord {
        record.refresh_generation = self.next.generation;
        record.refresh_hash = self.next.hash;
        record.refresh_salt = Some(self.salt);
        record.previous_refresh = Some(PreviousRefresh {
            state: self.expected,
            rotated_at: self.at,
        });
        record.last_seen_at = self.at;
        if let Some(client) = &self.client {
            record.ip.clone_from(&client.ip);
            record.user_agent.clone_from(&client.user_agent);
            record.device_name.clone_from(&client.device_name);
        }
        if let Some(sign_in) = &self.sign_in {
            record.sign_in = sign_in.clone();
        }
        record
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
