//! Persistence: the `Store` trait and its backends.
//!
//! A store keeps sessions, revocation marks and audit events, and decides the one race that
//! must be decided durably (refresh rotation, a compare-and-set). It holds no policy: it never
//! sees tokens, never decides whether a session is usable, and treats expired rows as absent.

pub mod backend;
pub mod embedded;
pub mod metered;
pub mod scylla;

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::model::FieldError;
use crate::model::ids::{SessionId, TenantId, UserId};
use crate::model::time::Timestamp;

use crate::model::records::{AuditRecord, RevocationEvent, RotationStep, SessionRecord};

/// What a store can fail with. Details are for logs; callers see `UNAVAILABLE`.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or did not answer in time.
    #[error("store unreachable: {0}")]
    Unavailable(String),
    /// The backend answered with an error or stored data could not be decoded.
    #[error("store failure: {0}")]
    Backend(String),
    /// A cursor handed back by the caller does not belong to this store.
    #[error("bad cursor")]
    BadCursor,
}

/// The outcome of a refresh rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The expected generation and hash were current and have been replaced.
    Won,
    /// Another rotation got there first; the session as it now stands (read at serial
    /// consistency where the backend has levels), from which a grace replay is answered.
    Lost(Box<SessionRecord>),
    /// The session is revoked: the refresh lost to a revocation, not to another refresh.
    Revoked,
    /// The session does not exist (or has expired).
    Gone,
}

/// The outcome of revoking one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// The session was active and is now revoked; the record as it now stands.
    Revoked(Box<SessionRecord>),
    /// The session was already revoked; nothing changed.
    AlreadyRevoked(Box<SessionRecord>),
    /// No such session (or it has expired).
    NotFound,
}

/// Whose sessions a paged listing walks. A tenant narrows one user's listing only: a listing
/// of one tenant across users has no index on either backend, so it cannot be asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SessionScope {
    /// Every user's sessions.
    #[default]
    Everyone,
    /// One user's sessions, every tenant.
    User(UserId),
    /// One user's sessions in one tenant.
    UserInTenant(UserId, TenantId),
}

impl SessionScope {
    /// The scope of an optional user and tenant as a request gives them; a tenant without
    /// a user is refused, naming `tenant_id`.
    pub fn of(user: Option<UserId>, tenant: Option<TenantId>) -> Result<Self, FieldError> {
        match (user, tenant) {
            (None, None) => Ok(SessionScope::Everyone),
            (Some(user), None) => Ok(SessionScope::User(user)),
            (Some(user), Some(tenant)) => Ok(SessionScope::UserInTenant(user, tenant)),
            (None, Some(_)) => Err(FieldError::new("tenant_id", "requires user_id")),
        }
    }

    /// The one user it is limited to, if any.
    pub fn user(&self) -> Option<&UserId> {
        match self {
            SessionScope::Everyone => None,
            SessionScope::User(user) | SessionScope::UserInTenant(user, _) => Some(user),
        }
    }

    /// The one tenant it is limited to, if any.
    pub fn tenant(&self) -> Option<&TenantId> {
        match self {
            SessionScope::Everyone | SessionScope::User(_) => None,
            SessionScope::UserInTenant(_, tenant) => Some(tenant),
        }
    }
}

/// Which sessions a paged listing walks.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    /// Whose sessions.
    pub scope: SessionScope,
    /// Whether revoked (but not yet expired) sessions are included.
    pub include_revoked: bool,
}

/// One page of a listing and the opaque position after it (`None` on the last page).
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The items, at most the requested count; a page may be short.
    pub items: Vec<T>,
    /// Where the next page starts.
    pub next: Option<Vec<u8>>,
}

/// A batch of revocations read from the store's revocation feed.
#[derive(Debug, Clone, Default)]
pub struct FeedBatch {
    /// The revocations since the cursor, oldest first.
    pub events: Vec<RevocationEvent>,
    /// Where the next poll starts.
    pub cursor: Vec<u8>,
    /// True when the feed no longer reaches back to the cursor: caches must be dropped whole.
    pub gap: bool,
}

/// Per-user "not before" instants, by tenant; the empty tenant applies to every tenant.
pub type UserNotBefore = BTreeMap<TenantId, Timestamp>;

/// The persistence contract. Every backend gives the same semantics; the conformance suite in
/// `tests/store_conformance.rs` holds each to it.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores a new session. The id is fresh, so this never overwrites.
    async fn create_session(&self, record: &SessionRecord) -> Result<(), StoreError>;

    /// Stores a new session and, in the same atomic step, revokes (with `reason`, at the new
    /// session's creation instant) the oldest active sessions of its user, every tenant, beyond
    /// `cap - 1`, so that however many of these calls race, at most `cap` sessions of a user
    /// stay active (`cap` 0: no limit). Returns the evicted ids; a session that two racing
    /// calls both evicted may be reported by both. `audits` (the issue's own events) are
    /// appended with the session: in the same transaction where the store has them (the
    /// embedded store: one job of its writer, one commit), else alongside it.
    async fn create_session_capped(
        &self,
        record: &SessionRecord,
        cap: usize,
        reason: &str,
        audits: &[AuditRecord],
    ) -> Result<Vec<SessionId>, StoreError>;

    /// `create_session_capped`, and the user's "not before" marks beside it, so the replica
    /// that issues a session can keep them without a read of its own: `None` when they could
    /// not be read (the session is stored all the same, and a failed read fails no write). The
    /// marks are what `user_not_before` would have returned at some instant during this call.
    /// A store that can read them in the write's own step (the embedded store: in its
    /// writer's transaction, no hand-off to its readers) overrides this; by default the write
    /// and the read go side by side.
    async fn create_session_capped_with_marks(
        &self,
        record: &SessionRecord,
        cap: usize,
        reason: &str,
        audits: &[AuditRecord],
    ) -> Result<(Vec<SessionId>, Option<UserNotBefore>), StoreError> {
        let (created, marks) = tokio::join!(
            self.create_session_capped(record, cap, reason, audits),
            self.user_not_before(&record.user_id)
        );
        Ok((created?, marks.ok()))
    }

    /// Reads one session; `None` when absent or expired (`expires_at <= now`).
    async fn get_session(&self, id: SessionId) -> Result<Option<SessionRecord>, StoreError>;

    /// `get_session` and `user_not_before` at once, for a first-sight check that needs both: a
    /// store that can answer the two from one round trip (the embedded store: one hand-off to
    /// its readers, one read transaction) overrides this; each answer is what its own call
    /// would have returned at some instant during this one.
    async fn session_and_marks(
        &self,
        id: SessionId,
        user: &UserId,
    ) -> Result<(Option<SessionRecord>, UserNotBefore), StoreError> {
        tokio::try_join!(self.get_session(id), self.user_not_before(user))
    }

    /// The active (unexpired, unrevoked) sessions of a user, newest first, optionally of one
    /// tenant only. Revoked sessions are not read, so the cost follows the user's live
    /// sessions, never their history.
    async fn list_user_sessions(
        &self,
        user: &UserId,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<SessionRecord>, StoreError>;

    /// Compare-and-set on the refresh state: applies `step` (the next generation and hash, the
    /// salt, the replaced state as `previous_refresh` at `step.at`, `last_seen_at`, and the
    /// client and sign-in when given) only while the session is unrevoked and its current
    /// generation and hash equal `step.expected`, so of racing rotations exactly one gets
    /// `Rotation::Won`. A revoked session is `Rotation::Revoked`, whatever the presented state.
    /// `audits` are appended only when the rotation wins, in its transaction where the store
    /// has them (the embedded store), else right after it; an error then means the rotation
    /// may have been applied without them.
    async fn rotate_refresh(
        &self,
        id: SessionId,
        step: &RotationStep,
        audits: &[AuditRecord],
    ) -> Result<Rotation, StoreError>;

    /// Marks one session revoked at `at` with `reason`, and records it in the revocation feed.
    async fn revoke_session(
        &self,
        id: SessionId,
        at: Timestamp,
        reason: &str,
    ) -> Result<Revocation, StoreError>;

    /// Marks the given sessions revoked; returns those that were active until now.
    async fn revoke_sessions(
        &self,
        ids: &[SessionId],
        at: Timestamp,
        reason: &str,
    ) -> Result<Vec<SessionId>, StoreError>;

    /// Records that every token of `user` (in `tenant`, or all tenants when empty) issued
    /// before `at` is rejected. Kept until `keep_until`, after which no such token can be alive.
    async fn set_user_not_before(
        &self,
        user: &UserId,
        tenant: &TenantId,
        at: Timestamp,
        keep_until: Timestamp,
    ) -> Result<(), StoreError>;

    /// The user's "not before" instants.
    async fn user_not_before(&self, user: &UserId) -> Result<UserNotBefore, StoreError>;

    /// Sets the global "not before" instant (never moves it backwards).
    async fn set_global_not_before(&self, at: Timestamp) -> Result<Timestamp, StoreError>;

    /// The global "not before" instant, if one was ever set.
    async fn global_not_before(&self) -> Result<Option<Timestamp>, StoreError>;

    /// One page of sessions in a stable order, starting after `cursor`.
    async fn list_sessions(
        &self,
        filter: &SessionFilter,
        cursor: Option<&[u8]>,
        limit: usize,
    ) -> Result<Page<SessionRecord>, StoreError>;

    /// Updates `last_seen_at` of existing sessions; absent ones are skipped, never recreated.
    async fn touch_sessions(&self, seen: &[(SessionId, Timestamp)]) -> Result<(), StoreError>;

    /// Appends audit events; they expire after the store's audit retention.
    async fn append_audit(&self, events: &[AuditRecord]) -> Result<(), StoreError>;

    /// One page of audit events, newest first, of one user or of all.
    async fn list_audit(
        &self,
        user: Option<&UserId>,
        cursor: Option<&[u8]>,
        limit: usize,
    ) -> Result<Page<AuditRecord>, StoreError>;

    /// Revocations recorded since `cursor` (from now when `None`), for replicas that share this
    /// store. A store only one process can open returns an empty batch.
    async fn poll_revocations(&self, cursor: Option<&[u8]>) -> Result<FeedBatch, StoreError>;

    /// A cheap round trip that succeeds only while the store answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Removes what has expired by `now`; returns how many rows went. Backends whose engine
    /// expires rows by itself return 0.
    async fn sweep(&self, now: Timestamp) -> Result<u64, StoreError>;

    /// Roughly how many sessions the store holds, for the `sessiond_live_sessions` gauge; it
    /// may count revoked and expired sessions not yet removed. `None` when the backend cannot
    /// tell cheaply. Called periodically, never on a request path.
    async fn approx_live_sessions(&self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }
}
