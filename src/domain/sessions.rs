//! The session authority's decisions: issuing and refreshing sessions.
//!
//! `Sessions` is what the gRPC edge calls. It owns the keyring, the caches and the policy, and
//! talks to the store only through the `Store` trait. Validation lives in `validate`,
//! revocation and listing in `revoke`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::access::{self, AccessClaims, Grant};
use super::audit::{AuditEntry, AuditKind, Caller, Role};
use super::cache::{CacheLimits, Caches};
use super::client::Client;
use super::error::{DomainError, TokenProblem};
use super::last_seen::Touches;
use super::refresh::RefreshToken;
use super::secrets::Keyring;
use super::view::Session;
use crate::hooks::{Hooks, Step};
use crate::model::clock::SharedClock;
use crate::model::ids::{SessionId, TenantId, UserId};
use crate::model::records::{AuditRecord, SessionRecord};
use crate::model::time::Timestamp;
use crate::store::{Rotation, Store};

/// The revocation reason of sessions the per-user limit evicts.
const SESSION_LIMIT_REASON: &str = "session_limit";

/// What the service decides by configuration.
#[derive(Clone, Debug)]
pub struct Policy {
    /// The `iss` of every access token.
    pub issuer: String,
    /// The `aud` of every access token, and the only one `Validate` accepts.
    pub audience: String,
    /// Lifetime of an access token (cut short by its session's end).
    pub access_token_ttl: Duration,
    /// Session lifetime when `Issue` gives none.
    pub session_ttl: Duration,
    /// The longest session lifetime `Issue` may ask for.
    pub max_session_ttl: Duration,
    /// Most live sessions per user; issuing one more revokes the oldest.
    pub max_sessions_per_user: usize,
    /// Least time between two last-seen writes of one session.
    pub last_seen_interval: Duration,
    /// How often the revocation feed is read.
    pub revocation_poll: Duration,
    /// Cache sizes.
    pub caches: CacheLimits,
}

impl Policy {
    /// How stale cached state may grow before it is no longer trusted: a few missed polls.
    pub fn max_feed_lag(&self) -> Duration {
        self.revocation_poll * 3 + Duration::from_secs(2)
    }
}

/// A request to start a session.
#[derive(Clone, Debug)]
pub struct IssueRequest {
    /// Whose session.
    pub user_id: UserId,
    /// The tenant, or empty.
    pub tenant_id: TenantId,
    /// Where from.
    pub client: Client,
    /// Requested lifetime; the policy's default when `None`.
    pub ttl: Option<Duration>,
    /// Caller-defined key/value pairs.
    pub metadata: BTreeMap<String, String>,
}

/// Tokens handed to a client.
#[derive(Clone, Debug)]
pub struct TokenPair {
    /// The signed JWT.
    pub access_token: String,
    /// When it expires.
    pub access_token_expires_at: Timestamp,
    /// The opaque refresh token.
    pub refresh_token: String,
    /// When it expires (with its session).
    pub refresh_token_expires_at: Timestamp,
}

/// A session with a fresh token pair.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The session.
    pub session: Session,
    /// Its tokens.
    pub tokens: TokenPair,
}

/// The session authority.
pub struct Sessions {
    pub(super) store: Arc<dyn Store>,
    pub(super) keys: Arc<Keyring>,
    pub(super) policy: Policy,
    pub(super) caches: Caches,
    pub(super) touches: Touches,
    pub(super) hooks: Hooks,
    pub(super) clock: SharedClock,
}

impl Sessions {
    /// Wires the authority to its store, keys and clock. `touches` is the last-seen
    /// write-behind queue; `hooks` are a test's pauses (none in production). Every instant
    /// the authority decides by comes from `clock`.
    pub fn new(
        store: Arc<dyn Store>,
        keys: Arc<Keyring>,
        policy: Policy,
        touches: Touches,
        hooks: Hooks,
        clock: SharedClock,
    ) -> Self {
        let caches = Caches::new(policy.caches, clock.clone());
        Self {
            store,
            keys,
            policy,
            caches,
            touches,
            hooks,
            clock,
        }
    }

    /// The store behind this authority.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The keyring.
    pub fn keys(&self) -> &Arc<Keyring> {
        &self.keys
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Starts a session for a user the caller has authenticated. Over the per-user limit, the
    /// oldest live sessions are revoked (`session_limit`), decided by the store in the same
    /// atomic step as the new session's write, so racing `Issue`s cannot overshoot it.
    pub async fn issue(&self, caller: &Caller, req: IssueRequest) -> Result<Issued, DomainError> {
        let ttl = match req.ttl {
            Some(ttl) if ttl < Duration::from_secs(1) => {
                return Err(DomainError::invalid("ttl", "must be at least 1s"));
            }
            Some(ttl) => ttl.min(self.policy.max_session_ttl),
            None => self.policy.session_ttl.min(self.policy.max_session_ttl),
        };
        let now = self.clock.now();
        let id = SessionId::new();
        let refresh = RefreshToken::generate(id, 0);
        let record = SessionRecord {
            id,
            user_id: req.user_id,
            tenant_id: req.tenant_id,
            created_at: now,
            last_seen_at: now,
            expires_at: now.plus(ttl),
            ip: req.client.ip,
            user_agent: req.client.user_agent,
            device_name: req.client.device_name,
            metadata: req.metadata,
            refresh_generation: 0,
            refresh_hash: refresh.hash(&self.keys),
            revoked_at: None,
            revoke_reason: String::new(),
        };
        let audit = AuditEntry::new(AuditKind::SessionIssued, caller, Role::User)
            .session(record.user_id.as_str(), Some(id))
            .client(&record.ip, &record.user_agent)
            .finish(self.clock.now());
        // Both writes usually land in the same group commit.
        let audits = [audit];
        let (created, audited) = tokio::join!(
            self.store.create_session_capped(
                &record,
                self.policy.max_sessions_per_user,
                SESSION_LIMIT_REASON
            ),
            self.store.append_audit(&audits)
        );
        let evicted = created?;
        audited?;
        self.evicted(caller, &record, &evicted).await?;
        let tokens = self.token_pair(caller, &record, &refresh, now)?;
        Ok(Issued {
            session: record.into(),
            tokens,
        })
    }

    /// Trades a refresh token for a new pair. The presented token dies; presenting a token that
    /// was already rotated away revokes the whole session (`refresh_token_reuse`).
    pub async fn refresh(
        &self,
        caller: &Caller,
        token: &str,
        client: &Client,
    ) -> Result<Issued, DomainError> {
        let presented =
            RefreshToken::parse(&self.keys, token).map_err(DomainError::RefreshToken)?;
        let id = presented.session_id;
        let Some(record) = self.store.get_session(id).await? else {
            return Err(DomainError::RefreshToken(TokenProblem::UnknownSession));
        };
        if let Err(ended) = self.still_stands(&record).await? {
            return Err(DomainError::RefreshToken(ended.problem()));
        }
        let presented_hash = presented.hash(&self.keys);
        let current = presented.generation == record.refresh_generation
            && bool::from(subtle::ConstantTimeEq::ct_eq(
                &presented_hash.0[..],
                &record.refresh_hash.0[..],
            ));
        if !current {
            return Err(self.reuse_detected(caller, &record, client).await);
        }
        self.hooks.at(Step::RefreshChecked(id)).await;
        let next_generation = record.refresh_generation.wrapping_add(1);
        let next = RefreshToken::generate(id, next_generation);
        let next_hash = next.hash(&self.keys);
        let rotation = self
            .store
            .rotate_refresh(
                id,
                (record.refresh_generation, &presented_hash),
                (next_generation, &next_hash),
            )
            .await?;
        match rotation {
            Rotation::Won => {}
            // Strict rotation: whoever loses the race presented a token that is no longer current.
            Rotation::Lost => return Err(self.reuse_detected(caller, &record, client).await),
            // Lost to a revocation, not to a thief: no alarm.
            Rotation::Revoked => return Err(DomainError::RefreshToken(TokenProblem::Revoked)),
            Rotation::Gone => return Err(DomainError::RefreshToken(TokenProblem::UnknownSession)),
        }
        // A switch or a user's sign-out that landed since the check ends this session too:
        // say so now rather than hand out tokens that every surface rejects.
        if let Err(ended) = self.still_stands(&record).await? {
            return Err(DomainError::RefreshToken(ended.problem()));
        }
        let audit = AuditEntry::new(AuditKind::SessionRefreshed, caller, Role::User)
            .session(record.user_id.as_str(), Some(id))
            .client(&client.ip, &client.user_agent)
            .finish(self.clock.now());
        self.store.append_audit(&[audit]).await?;
        let mut session = record;
        session.refresh_generation = next_generation;
        session.refresh_hash = next_hash;
        let tokens = self.token_pair(caller, &session, &next, self.clock.now())?;
        Ok(Issued {
            session: session.into(),
            tokens,
        })
    }

    /// Revokes a session whose rotated-away refresh token came back, and says so.
    async fn reuse_detected(
        &self,
        caller: &Caller,
        record: &SessionRecord,
        client: &Client,
    ) -> DomainError {
        tracing::warn!(session_id = %record.id, user_id = %record.user_id, "refresh token reuse; revoking session");
        let audit = AuditEntry::new(AuditKind::RefreshTokenReuse, caller, Role::User)
            .session(record.user_id.as_str(), Some(record.id))
            .client(&client.ip, &client.user_agent)
            .reason("refresh_token_reuse")
            .finish(self.clock.now());
        match self
            .revoke_ids(&[record.id], "refresh_token_reuse", vec![audit])
            .await
        {
            Ok(_) => DomainError::RefreshTokenReuse,
            Err(e) => e,
        }
    }

    /// A new pair for `session`, the access token naming `caller` as its `client_id`.
    fn token_pair(
        &self,
        caller: &Caller,
        session: &SessionRecord,
        refresh: &RefreshToken,
        now: Timestamp,
    ) -> Result<TokenPair, DomainError> {
        let expires = now
            .plus(self.policy.access_token_ttl)
            .min(session.expires_at);
        let claims = AccessClaims {
            session_id: session.id,
            user_id: session.user_id.clone(),
            tenant_id: session.tenant_id.clone(),
            issued_at: now,
            expires_at: expires,
            grant: Some(Grant::new(caller.name(), &self.policy.audience)),
        };
        let access_token = access::sign(&self.keys, &self.policy.issuer, &claims)?;
        Ok(TokenPair {
            access_token,
            // The token carries whole seconds; report what it carries.
            access_token_expires_at: Timestamp::from_micros(expires.as_secs() * 1_000_000),
            refresh_token: refresh.encode(&self.keys),
            refresh_token_expires_at: session.expires_at,
        })
    }

    /// Drops sessions the per-user limit evicted from the caches and audits each.
    async fn evicted(
        &self,
        caller: &Caller,
        record: &SessionRecord,
        evicted: &[SessionId],
    ) -> Result<(), DomainError> {
        if evicted.is_empty() {
            return Ok(());
        }
        for id in evicted {
            self.caches.session_revoked(id).await;
        }
        let audits: Vec<AuditRecord> = evicted
            .iter()
            .map(|id| {
                AuditEntry::new(AuditKind::SessionLimitEvicted, caller, Role::User)
                    .session(record.user_id.as_str(), Some(*id))
                    .client(&record.ip, &record.user_agent)
                    .reason(SESSION_LIMIT_REASON)
                    .finish(self.clock.now())
            })
            .collect();
        self.store.append_audit(&audits).await?;
        Ok(())
    }

    /// Revokes sessions, drops them from the caches and stores the audit events.
    pub(super) async fn revoke_ids(
        &self,
        ids: &[SessionId],
        reason: &str,
        audits: Vec<AuditRecord>,
    ) -> Result<Vec<SessionId>, DomainError> {
        let now = self.clock.now();
        let (revoked, audited) = tokio::join!(
            self.store.revoke_sessions(ids, now, reason),
            self.store.append_audit(&audits)
        );
        for id in ids {
            self.caches.session_revoked(id).await;
        }
        audited?;
        Ok(revoked?)
    }
}
