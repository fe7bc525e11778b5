//! The session authority's decisions: issuing and refreshing sessions.
//!
//! `Sessions` is what the gRPC edge calls. It owns the keyring, the caches and the policy, and
//! talks to the store only through the `Store` trait. Validation lives in `validate`,
//! revocation and listing in `revoke`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::access::{self, AccessClaims, Grant};
use super::audit::{self, AuditEntry, AuditKind, Caller, Role};
use super::cache::{CacheLimits, Caches, TokenEntry};
use super::client::Client;
use super::error::DomainError;
use super::last_seen::Touches;
use super::refresh::RefreshToken;
use super::secrets::Keyring;
use super::token_cache::TokenKey;
use super::view::Session;
use crate::hooks::{Hooks, Step};
use crate::model::clock::SharedClock;
use crate::model::ids::{SessionId, TenantId, UserId};
use crate::model::limits::{MAX_ACR_BYTES, MAX_AMR_BYTES, MAX_AMR_ENTRIES, check_text};
use crate::model::records::{AuditRecord, SessionRecord, SignIn};
use crate::model::time::Timestamp;
use crate::store::Store;

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
    /// How long past `max_feed_lag` `Validate` may still answer from cached entries while the
    /// feed (the store) does not answer; zero fails closed at `max_feed_lag`.
    pub store_outage_grace: Duration,
    /// Cache sizes.
    pub caches: CacheLimits,
    /// How long after a rotation the previous refresh token still answers the same
    /// successor; zero is strict rotation.
    pub refresh_grace: Duration,
    /// The idle timeout of sessions whose `Issue` gives none; `None` is off.
    pub idle_timeout: Option<Duration>,
}

impl Policy {
    /// How stale cached state may grow before it is no longer trusted: a few missed polls.
    pub fn max_feed_lag(&self) -> Duration {
        self.revocation_poll * 3 + Duration::from_secs(2)
    }

    /// How stale cached state may grow before `Validate` (and the surfaces sharing its hot
    /// path) stops trusting it: `max_feed_lag` plus the store-outage grace. So a revocation
    /// made through another replica may go unseen here for at most this long (plus one feed
    /// read); one made through this replica drops its entry at once, whatever the grace.
    pub fn validate_max_lag(&self) -> Duration {
        self.max_feed_lag().saturating_add(self.store_outage_grace)
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
    /// The session's idle timeout: `None` takes the policy's, zero turns it off.
    pub idle_timeout: Option<Duration>,
    /// How recently and how strongly the user authenticated; `auth_time` `None` is now.
    pub sign_in: SignInRequest,
}

/// A sign-in as a request states it, before it is checked.
#[derive(Clone, Debug, Default)]
pub struct SignInRequest {
    /// When the user authenticated; now when `None`.
    pub auth_time: Option<Timestamp>,
    /// The authentication context class reference, or empty.
    pub acr: String,
    /// The authentication methods.
    pub amr: Vec<String>,
}

/// How far ahead of this service's clock a stated `auth_time` may be: clocks of the login
/// service and this one differ a little.
const AUTH_TIME_SKEW: Duration = Duration::from_secs(5);

impl SignInRequest {
    /// Checks the bounds (`acr` at most 64 bytes, `amr` at most 8 entries of at most 32
    /// bytes, `auth_time` not in the future) and fills in `auth_time`.
    pub fn check(self, now: Timestamp) -> Result<SignIn, DomainError> {
        check_text("acr", &self.acr, MAX_ACR_BYTES)?;
        if self.amr.len() > MAX_AMR_ENTRIES {
            return Err(DomainError::invalid("amr", "must have at most 8 entries"));
        }
        for method in &self.amr {
            if method.is_empty() {
                return Err(DomainError::invalid("amr", "entries must not be empty"));
            }
            check_text("amr", method, MAX_AMR_BYTES)?;
        }
        let auth_time = self.auth_time.unwrap_or(now);
        if auth_time > now.plus(AUTH_TIME_SKEW) {
            return Err(DomainError::invalid(
                "auth_time",
                "must not be in the future",
            ));
        }
        Ok(SignIn {
            auth_time,
            acr: self.acr,
            amr: self.amr,
        })
    }
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

/// The token cache's entry for an access token this replica just signed: `None` for a token
/// the check would refuse (longer than it accepts).
pub(super) type Minted = Option<(TokenKey, Arc<TokenEntry>)>;

/// A signed pair not yet handed out, with its token cache entry; or why it could not be signed.
pub(super) type MintedPair = Result<(TokenPair, Minted), DomainError>;

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
        let idle_timeout = self.idle_timeout_of(req.idle_timeout)?;
        let sign_in = req.sign_in.check(now)?;
        let id = SessionId::new();
        let salt = RefreshToken::new_salt();
        let refresh = RefreshToken::derive(&self.keys, id, 0, &salt);
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
            refresh_salt: Some(salt),
            previous_refresh: None,
            idle_timeout,
            sign_in,
            revoked_at: None,
            revoke_reason: String::new(),
        };
        let audit = AuditEntry::new(AuditKind::SessionIssued, caller, Role::User)
            .session(record.user_id.as_str(), Some(id))
            .client(&record.ip, &record.user_agent)
            .stamped(self.clock.now());
        // Taken before the write: a revocation landing after them makes the entries kept
        // below stale.
        let epoch = self.caches.session_epochs.of(&id);
        let user_epoch = self.caches.user_epochs.of(&record.user_id);
        let audits = [audit];
        let fresh = self.caches.is_fresh(now, self.policy.validate_max_lag());
        let (cap, reason) = (self.policy.max_sessions_per_user, SESSION_LIMIT_REASON);
        // The audit event is written with the session: one job of the store's writer. A user
        // whose marks this replica does not hold has them read with the write (in its own
        // transaction on the embedded store), so the first check of the new token reads
        // nothing here; a failed read only leaves the marks to that check.
        let write = async {
            if fresh && !self.caches.users.contains_key(&record.user_id) {
                self.store
                    .create_session_capped_with_marks(&record, cap, reason, &audits)
                    .await
            } else {
                let evicted = self
                    .store
                    .create_session_capped(&record, cap, reason, &audits)
                    .await?;
                Ok((evicted, None))
            }
        };
        // The tokens are signed once the write is on its way (the write is polled first): the
        // signature, the call's largest piece of CPU, fills the wait for the group's fsync
        // instead of following it. They leave this function, and the minted token enters the
        // token cache, only once the write has succeeded.
        let (written, minted) = tokio::join!(write, async {
            self.mint_pair(caller, &record, &refresh, now)
        });
        let (evicted, marks) = written?;
        audits.iter().for_each(audit::log);
        self.evicted(caller, &record, &evicted).await?;
        self.hooks.at(Step::IssueWritten).await;
        self.keep_session(record.clone(), epoch).await;
        if let Some(marks) = marks {
            self.keep_marks(&record.user_id, marks, user_epoch).await;
        }
        // Only now: what the write did (evictions, their audit, the kept session) is settled
        // whether or not the signing failed.
        let (tokens, minted) = minted?;
        self.keep_minted(minted);
        Ok(Issued {
            session: record.into(),
            tokens,
        })
    }

    /// Keeps a token this replica minted in the token cache: the caller's next step is usually
    /// a request validated here, which then needs no signature check.
    pub(super) fn keep_minted(&self, minted: Minted) {
        if let Some((key, entry)) = minted {
            self.caches.tokens.insert(key, entry);
        }
    }

    /// A new pair for `session`, the access token naming `caller` as its `client_id`, and the
    /// token cache's entry for that access token (`None` for a token the check would refuse),
    /// kept by [`Self::keep_minted`] once the pair is handed out.
    pub(super) fn mint_pair(
        &self,
        caller: &Caller,
        session: &SessionRecord,
        refresh: &RefreshToken,
        now: Timestamp,
    ) -> MintedPair {
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
            // Whole seconds, as the token carries it, so the claims cached for this token
            // say what every verifier of it reads.
            auth_time: Some(Timestamp::from_micros(
                session
                    .sign_in
                    .auth_time
                    .as_secs()
                    .saturating_mul(1_000_000),
            )),
            acr: session.sign_in.acr.clone(),
            amr: session.sign_in.amr.clone(),
            refresh_generation: Some(session.refresh_generation),
        };
        let (access_token, minted) =
            access::sign_verified(&self.keys, &self.policy.issuer, &claims)?;
        let minted = minted.map(|claims| {
            (
                TokenKey::of(&access_token),
                Arc::new(TokenEntry::new(Arc::new(claims))),
            )
        });
        let pair = TokenPair {
            access_token,
            // The token carries whole seconds; report what it carries.
            access_token_expires_at: Timestamp::from_micros(expires.as_secs() * 1_000_000),
            refresh_token: refresh.encode(&self.keys),
            refresh_token_expires_at: session.expires_at,
        };
        Ok((pair, minted))
    }

    /// The idle timeout a new session gets: the requested one (zero: none), else the policy's.
    /// Shorter than twice the last-seen interval it could not be kept (activity is recorded
    /// once per interval), so it is refused.
    fn idle_timeout_of(
        &self,
        requested: Option<Duration>,
    ) -> Result<Option<Duration>, DomainError> {
        let idle = match requested {
            None => return Ok(self.policy.idle_timeout),
            Some(d) if d.is_zero() => return Ok(None),
            Some(d) => d,
        };
        let least = self.policy.last_seen_interval.saturating_mul(2);
        if idle < least {
            return Err(DomainError::invalid_owned(
                "idle_timeout",
                format!(
                    "must be 0s or at least twice the last-seen interval ({}s)",
                    least.as_secs_f64()
                ),
            ));
        }
        Ok(Some(idle))
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
