//! `Validate`, the hot path, and the token check behind every user-facing RPC.
//!
//! A cache hit does no I/O, takes no lock and allocates nothing beyond the answer: the token's
//! verified claims, its session's state and its user's "not before" marks all come from the
//! in-process caches. A miss reads the store once; concurrent misses for one key share it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use super::access::{self, AccessClaims};
use super::cache::{CachedSession, Outcomes};
use super::error::{DomainError, TokenProblem};
use super::ids::{SessionId, TenantId, UserId};
use super::sessions::Sessions;
use super::time::Timestamp;
use crate::store::{StoreError, UserNotBefore};

/// The outcome of checking an access token.
#[derive(Clone, Debug)]
pub enum Verdict {
    /// The token stands; its claims and its session.
    Valid(Arc<AccessClaims>, Arc<CachedSession>),
    /// The token cannot be used, and why.
    Invalid(TokenProblem),
}

/// The latest "not before" mark that applies to a session in `tenant`.
pub fn not_before_of(marks: &UserNotBefore, tenant: &TenantId) -> Option<Timestamp> {
    let all = marks.get(&TenantId::none()).copied();
    let own = if tenant.is_empty() {
        None
    } else {
        marks.get(tenant).copied()
    };
    all.max(own)
}

impl Sessions {
    /// Checks an access token. Unusable tokens are a `Verdict::Invalid`, never an error; the
    /// only error is a store that cannot answer a question the caches could not.
    pub async fn validate(&self, token: &str) -> Result<Verdict, DomainError> {
        let outcome = self.check(token).await;
        count(&self.caches.meters.outcomes, &outcome);
        outcome
    }

    async fn check(&self, token: &str) -> Result<Verdict, DomainError> {
        let now = Timestamp::now();
        let claims = match self.verified(token) {
            Ok(claims) => claims,
            Err(problem) => return Ok(Verdict::Invalid(problem)),
        };
        if claims.expires_at <= now {
            return Ok(Verdict::Invalid(TokenProblem::Expired));
        }
        if claims.issued_at < self.caches.global_not_before() {
            return Ok(Verdict::Invalid(TokenProblem::Revoked));
        }
        let fresh = self.caches.is_fresh(now, self.policy.max_feed_lag());
        let Some(session) = self.session_state(claims.session_id, fresh).await? else {
            return Ok(Verdict::Invalid(TokenProblem::UnknownSession));
        };
        let record = &session.record;
        if record.user_id != claims.user_id || record.tenant_id != claims.tenant_id {
            // A token signed by us never names someone else's session; treat it as foreign.
            return Ok(Verdict::Invalid(TokenProblem::UnknownSession));
        }
        if record.is_revoked() {
            return Ok(Verdict::Invalid(TokenProblem::Revoked));
        }
        if record.expires_at <= now {
            return Ok(Verdict::Invalid(TokenProblem::Expired));
        }
        let marks = self.user_marks(&claims.user_id, fresh).await?;
        if not_before_of(&marks, &claims.tenant_id).is_some_and(|nb| claims.issued_at < nb) {
            return Ok(Verdict::Invalid(TokenProblem::Revoked));
        }
        self.touches.seen(&session, now);
        Ok(Verdict::Valid(claims, session))
    }

    /// Like `validate`, for RPCs that require a usable token: an unusable one is an error.
    pub async fn authenticate(
        &self,
        token: &str,
    ) -> Result<(Arc<AccessClaims>, Arc<CachedSession>), DomainError> {
        match self.validate(token).await? {
            Verdict::Valid(claims, session) => Ok((claims, session)),
            Verdict::Invalid(problem) => Err(DomainError::AccessToken(problem)),
        }
    }

    /// Signature and claims, from the cache or by verifying once.
    fn verified(&self, token: &str) -> Result<Arc<AccessClaims>, TokenProblem> {
        if let Some(claims) = self.caches.tokens.get(token) {
            self.caches.meters.tokens.hit.increment(1);
            return Ok(claims);
        }
        self.caches.meters.tokens.miss.increment(1);
        let claims = Arc::new(access::verify(&self.keys, &self.policy.issuer, token)?);
        self.caches.tokens.insert(Arc::from(token), claims.clone());
        Ok(claims)
    }

    async fn session_state(
        &self,
        id: SessionId,
        fresh: bool,
    ) -> Result<Option<Arc<CachedSession>>, DomainError> {
        let meters = &self.caches.meters.sessions;
        if !fresh {
            // Revocations made elsewhere may be missing from the cache: ask the store.
            meters.miss.increment(1);
            let record = self.store.get_session(id).await?;
            return Ok(record.map(|r| Arc::new(cached(r))));
        }
        let store = &self.store;
        // Set only by the caller whose loader runs; callers that share its read count as hits.
        let loaded = AtomicBool::new(false);
        let state = self
            .caches
            .sessions
            .try_get_with(id, async {
                loaded.store(true, Ordering::Relaxed);
                let record = store.get_session(id).await?;
                Ok::<_, StoreError>(record.map(|r| Arc::new(cached(r))))
            })
            .await
            .map_err(|e: Arc<StoreError>| DomainError::Store((*e).clone()));
        if loaded.load(Ordering::Relaxed) {
            meters.miss.increment(1);
        } else {
            meters.hit.increment(1);
        }
        state
    }

    /// The user's "not before" marks, from the cache while it is fresh, else from the store.
    pub(super) async fn user_marks(
        &self,
        user: &UserId,
        fresh: bool,
    ) -> Result<Arc<UserNotBefore>, DomainError> {
        let meters = &self.caches.meters.users;
        if !fresh {
            meters.miss.increment(1);
            return Ok(Arc::new(self.store.user_not_before(user).await?));
        }
        if let Some(marks) = self.caches.users.get(user).await {
            meters.hit.increment(1);
            return Ok(marks);
        }
        meters.miss.increment(1);
        let store = self.store.clone();
        let owned = user.clone();
        self.caches
            .users
            .try_get_with(user.clone(), async move {
                Ok::<_, StoreError>(Arc::new(store.user_not_before(&owned).await?))
            })
            .await
            .map_err(|e: Arc<StoreError>| DomainError::Store((*e).clone()))
    }
}

/// Counts one check by its outcome.
fn count(outcomes: &Outcomes, outcome: &Result<Verdict, DomainError>) {
    let counter = match outcome {
        Ok(Verdict::Valid(..)) => &outcomes.valid,
        Ok(Verdict::Invalid(TokenProblem::Malformed)) => &outcomes.malformed,
        Ok(Verdict::Invalid(TokenProblem::BadSignature)) => &outcomes.bad_signature,
        Ok(Verdict::Invalid(TokenProblem::Expired)) => &outcomes.expired,
        Ok(Verdict::Invalid(TokenProblem::Revoked)) => &outcomes.revoked,
        Ok(Verdict::Invalid(TokenProblem::UnknownSession)) => &outcomes.unknown_session,
        Err(_) => &outcomes.error,
    };
    counter.increment(1);
}

fn cached(record: crate::store::SessionRecord) -> CachedSession {
    let last_touch = AtomicI64::new(record.last_seen_at.as_micros());
    CachedSession { record, last_touch }
}
