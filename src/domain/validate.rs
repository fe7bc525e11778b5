//! `Validate`, the hot path, and the token check behind every user-facing RPC.
//!
//! A cache hit does no I/O, takes no lock and allocates nothing beyond the answer: the token's
//! verified claims, its session's state and its user's "not before" marks all come from the
//! in-process caches, in one lookup of the token (its entry's shortcut leads to the other two).
//! A miss reads the store once; concurrent misses for one key share it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use super::access::{self, AccessClaims};
use super::cache::{CachedMarks, CachedSession, Outcomes, TokenEntry};
use super::error::{DomainError, TokenProblem};
use super::sessions::Sessions;
use super::token_cache::TokenKey;
use super::view::ValidToken;
use crate::hooks::Step;
use crate::model::ids::{SessionId, TenantId, UserId};
use crate::model::records::SessionRecord;
use crate::model::time::Timestamp;
use crate::store::{StoreError, UserNotBefore};

/// The outcome of checking an access token.
#[derive(Clone, Debug)]
pub enum Verdict {
    /// The token stands.
    Valid(ValidToken),
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

/// Whether a stored session still stands: the one validity rule of every surface (`Validate`,
/// `Check`, introspection, `List`, `Refresh`, `AdminList`). A session created before the
/// global or its user's "not before" instant is over, whatever its tokens' `iat` says: a
/// token minted after the instant for such a session (a refresh that raced the switch) is as
/// dead as the session. A session whose `last_seen_at` is older than its idle timeout is
/// over too; since a cached record's `last_seen_at` lags what other replicas saw, `Validate`
/// takes `Ended::Idle` from a cached record only as a reason to read the store again.
pub fn standing(
    record: &SessionRecord,
    global: Timestamp,
    marks: &UserNotBefore,
    now: Timestamp,
) -> Result<(), Ended> {
    if record.is_revoked() {
        return Err(Ended::Revoked);
    }
    if record.expires_at <= now {
        return Err(Ended::Expired);
    }
    if record.created_at < global {
        return Err(Ended::GlobalNotBefore(global));
    }
    if let Some(nb) = not_before_of(marks, &record.tenant_id)
        && record.created_at < nb
    {
        return Err(Ended::UserNotBefore(nb));
    }
    if record.idle_by(record.last_seen_at, now) {
        return Err(Ended::Idle);
    }
    Ok(())
}

/// What a caller demands of the sign-in behind a token (RFC 9470), beyond that it stands.
#[derive(Clone, Debug, Default)]
pub struct StepUpDemand {
    /// The sign-in must be at most this old.
    pub max_age: Option<std::time::Duration>,
    /// When non-empty, the sign-in's `acr` must be one of these.
    pub acr_values: Vec<String>,
}

impl StepUpDemand {
    /// No demand: any sign-in will do.
    pub const NONE: StepUpDemand = StepUpDemand {
        max_age: None,
        acr_values: Vec::new(),
    };

    /// Whether the token's own claims meet the demand at `now`. A token without `auth_time`
    /// (an earlier version's) cannot show its age, so it meets no `max_age`; a sign-in without
    /// an `acr` meets no `acr_values`, not even an empty entry among them, which names no
    /// class and must not let a sign-in of no stated strength through.
    pub fn met_by(&self, claims: &AccessClaims, now: Timestamp) -> bool {
        if let Some(max_age) = self.max_age {
            match claims.auth_time {
                Some(at) if at.plus(max_age) >= now => {}
                _ => return false,
            }
        }
        self.acr_values.is_empty()
            || (!claims.acr.is_empty() && self.acr_values.contains(&claims.acr))
    }
}

/// Why a session no longer stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// Revoked by name.
    Revoked,
    /// Past its end.
    Expired,
    /// Created before the emergency switch.
    GlobalNotBefore(Timestamp),
    /// Created before its user was signed out everywhere.
    UserNotBefore(Timestamp),
    /// No activity for longer than its idle timeout.
    Idle,
}

impl Ended {
    /// The token problem a caller sees.
    pub fn problem(self) -> TokenProblem {
        match self {
            Ended::Expired => TokenProblem::Expired,
            Ended::Idle => TokenProblem::Idle,
            Ended::Revoked | Ended::GlobalNotBefore(_) | Ended::UserNotBefore(_) => {
                TokenProblem::Revoked
            }
        }
    }
}

/// How often a session or user entry found stale by its epoch is reloaded through the cache
/// before the store is asked directly.
const LOAD_ATTEMPTS: usize = 3;

impl Sessions {
    /// Checks an access token. Unusable tokens are a `Verdict::Invalid`, never an error; the
    /// only error is a store that cannot answer a question the caches could not.
    pub async fn validate(&self, token: &str) -> Result<Verdict, DomainError> {
        self.validate_for(token, &StepUpDemand::NONE).await
    }

    /// Like `validate`, and a token that stands but whose sign-in does not meet `demand` is
    /// `StepUpRequired`.
    pub async fn validate_for(
        &self,
        token: &str,
        demand: &StepUpDemand,
    ) -> Result<Verdict, DomainError> {
        let outcome = self.check(token, demand).await;
        count(&self.caches.meters.outcomes, &outcome);
        outcome
    }

    async fn check(&self, token: &str, demand: &StepUpDemand) -> Result<Verdict, DomainError> {
        let now = self.clock.now();
        let entry = match self.verified(token) {
            Ok(entry) => entry,
            Err(problem) => return Ok(Verdict::Invalid(problem)),
        };
        let claims = &entry.claims;
        if claims.expires_at <= now {
            return Ok(Verdict::Invalid(TokenProblem::Expired));
        }
        // Within the store-outage grace, cached entries still answer (misses still need the
        // store); local revocations have already dropped theirs.
        let fresh = self.caches.is_fresh(now, self.policy.validate_max_lag());
        let global = self.global_not_before(fresh).await?;
        if claims.issued_at < global {
            return Ok(Verdict::Invalid(TokenProblem::Revoked));
        }
        let shortcut = if fresh {
            entry.shortcut(&self.caches, now)
        } else {
            None
        };
        let (session, marks) = match shortcut {
            Some(found) => {
                // The same entries the two lookups would have found: count them as hits.
                self.caches.meters.sessions.hit.increment(1);
                self.caches.meters.users.hit.increment(1);
                found
            }
            None => {
                let generation = claims.refresh_generation.unwrap_or(0);
                let (session, brought) = self
                    .session_state(claims.session_id, generation, fresh, &claims.user_id)
                    .await?;
                let Some(session) = session else {
                    return Ok(Verdict::Invalid(TokenProblem::UnknownSession));
                };
                let record = &session.record;
                if record.user_id != claims.user_id || record.tenant_id != claims.tenant_id {
                    // A token signed by us never names someone else's session; treat it as
                    // foreign.
                    return Ok(Verdict::Invalid(TokenProblem::UnknownSession));
                }
                let marks = match brought {
                    Some(marks) if marks.epoch == self.caches.user_epochs.of(&claims.user_id) => {
                        marks
                    }
                    _ => self.user_marks(&claims.user_id, fresh).await?,
                };
                (session, marks)
            }
        };
        match standing(&session.record, global, &marks.marks, now) {
            Ok(()) => {}
            Err(Ended::Idle) => {
                if let Some(problem) = self.idle_here(&session, global, &marks.marks, now).await? {
                    return Ok(Verdict::Invalid(problem));
                }
            }
            Err(ended) => return Ok(Verdict::Invalid(ended.problem())),
        }
        if !demand.met_by(claims, now) {
            return Ok(Verdict::Invalid(TokenProblem::StepUpRequired));
        }
        if fresh && !entry.leads_to(&session, &marks) {
            self.hooks.at(Step::ShortcutKept(claims.session_id)).await;
            entry.remember(&session, &marks, &self.caches);
        }
        self.touches.seen(&session, now);
        Ok(Verdict::Valid(ValidToken::new(
            entry.claims.clone(),
            session,
        )))
    }

    /// A cached session looks idle. Other replicas may have seen activity that this one has
    /// not, so only the store's `last_seen_at` (or this replica's own later activity) decides:
    /// `None` when the session is in use after all (the entry learns the store's instant).
    async fn idle_here(
        &self,
        session: &CachedSession,
        global: Timestamp,
        marks: &UserNotBefore,
        now: Timestamp,
    ) -> Result<Option<TokenProblem>, DomainError> {
        let id = session.record.id;
        let Some(stored) = self.store.get_session(id).await? else {
            return Ok(Some(TokenProblem::UnknownSession));
        };
        let here = Timestamp::from_micros(session.last_touch.load(Ordering::Relaxed));
        let last = here.max(stored.last_seen_at);
        if stored.idle_by(last, now) {
            return Ok(Some(TokenProblem::Idle));
        }
        match standing(&stored, global, marks, now) {
            Ok(()) | Err(Ended::Idle) => {}
            Err(ended) => return Ok(Some(ended.problem())),
        }
        session
            .last_touch
            .fetch_max(stored.last_seen_at.as_micros(), Ordering::Relaxed);
        Ok(None)
    }

    /// Like `validate`, for RPCs that require a usable token: an unusable one is an error.
    pub async fn authenticate(
        &self,
        token: &str,
    ) -> Result<(Arc<AccessClaims>, Arc<CachedSession>), DomainError> {
        match self.validate(token).await? {
            Verdict::Valid(valid) => Ok((valid.claims, valid.entry)),
            Verdict::Invalid(problem) => Err(DomainError::AccessToken(problem)),
        }
    }

    /// Whether a session read from the store still stands, by the same rule and from the same
    /// sources (with the same staleness bound) as `Validate`.
    pub(super) async fn still_stands(
        &self,
        record: &SessionRecord,
    ) -> Result<Result<(), Ended>, DomainError> {
        let now = self.clock.now();
        let fresh = self.caches.is_fresh(now, self.policy.max_feed_lag());
        let global = self.global_not_before(fresh).await?;
        let marks = self.user_marks(&record.user_id, fresh).await?;
        match standing(record, global, &marks.marks, now) {
            // This replica's own activity may not have reached the store yet.
            Err(Ended::Idle) => {
                let here = self.local_activity(record.id).await;
                if here.is_some_and(|at| !record.idle_by(at, now)) {
                    return Ok(Ok(()));
                }
                Ok(Err(Ended::Idle))
            }
            verdict => Ok(verdict),
        }
    }

    /// The latest activity this replica saw on a session it holds in its cache.
    async fn local_activity(&self, id: SessionId) -> Option<Timestamp> {
        let entry = self.caches.sessions.get(&id).await.flatten()?;
        Some(Timestamp::from_micros(
            entry.last_touch.load(Ordering::Relaxed),
        ))
    }

    /// The global "not before" instant: kept current by local switches and the feed while the
    /// feed is fresh, read from the store (and kept) when it is not.
    pub(super) async fn global_not_before(&self, fresh: bool) -> Result<Timestamp, DomainError> {
        if !fresh && let Some(at) = self.store.global_not_before().await? {
            self.caches.raise_global_not_before(at);
        }
        Ok(self.caches.global_not_before())
    }

    /// Signature and claims, from the cache or by verifying once.
    pub(super) fn verified(&self, token: &str) -> Result<Arc<TokenEntry>, TokenProblem> {
        let key = TokenKey::of(token);
        if let Some(entry) = self.caches.tokens.get(&key) {
            self.caches.meters.tokens.hit.increment(1);
            return Ok(entry);
        }
        self.caches.meters.tokens.miss.increment(1);
        let claims = access::verify(
            &self.keys,
            &self.policy.issuer,
            &self.policy.audience,
            token,
        )?;
        let entry = Arc::new(TokenEntry::new(Arc::new(claims)));
        self.caches.tokens.insert(key, entry.clone());
        Ok(entry)
    }

    /// The session's state through the cache, never an entry that a revocation made stale
    /// (see `cache`'s revocation epochs), nor one older than the token's own refresh
    /// `generation`: a token minted by a rotation on another replica (a `Refresh` that moved
    /// the session to a new client, a `StepUp`) reloads the entry once, so the session this
    /// replica answers with is never older than the token.
    ///
    /// A read of the session whose `user`'s marks are not cached either (a first sight) reads
    /// both in one store call, keeps the marks and returns them beside the session, so the
    /// check that follows needs no second read.
    async fn session_state(
        &self,
        id: SessionId,
        generation: u32,
        fresh: bool,
        user: &UserId,
    ) -> Result<(Option<Arc<CachedSession>>, Option<Arc<CachedMarks>>), DomainError> {
        let meters = &self.caches.meters.sessions;
        if fresh {
            for _ in 0..LOAD_ATTEMPTS {
                // Taken before the loader can read: a revocation landing after this makes
                // whatever the read returns stale.
                let epoch = self.caches.session_epochs.of(&id);
                let user_epoch = self.caches.user_epochs.of(user);
                // Set only by the caller whose loader runs; callers that share its read count
                // as hits.
                let loaded = AtomicBool::new(false);
                let brought = OnceLock::new();
                let state = self
                    .caches
                    .sessions
                    .try_get_with(id, async {
                        loaded.store(true, Ordering::Relaxed);
                        let (record, marks) = if self.caches.users.contains_key(user) {
                            (self.store.get_session(id).await?, None)
                        } else {
                            let (record, marks) = self.store.session_and_marks(id, user).await?;
                            (record, Some(marks))
                        };
                        self.hooks.at(Step::SessionRead(id)).await;
                        if let Some(marks) = marks {
                            let _ = brought.set(self.keep_marks(user, marks, user_epoch).await);
                        }
                        Ok::<_, StoreError>(record.map(|r| Arc::new(self.cached(r, epoch))))
                    })
                    .await
                    .map_err(|e: Arc<StoreError>| DomainError::Store((*e).clone()))?;
                meters.count(&loaded);
                let brought = brought.into_inner();
                match state {
                    Some(s)
                        if s.epoch != self.caches.session_epochs.of(&id)
                            || s.record.refresh_generation < generation =>
                    {
                        self.caches.sessions.invalidate(&id).await;
                    }
                    None => {
                        // Not kept: the id comes from a token this service signed, so the
                        // session exists or existed. Absent here, it is either gone for good
                        // (and its tokens are about to expire) or not replicated to this data
                        // centre yet; a cached "unknown" would outlive the replication lag by
                        // the cache's whole lifetime.
                        self.caches.sessions.invalidate(&id).await;
                        return Ok((None, brought));
                    }
                    state => return Ok((state, brought)),
                }
            }
        }
        // Revocations elsewhere may be missing from the cache, or keep landing on this
        // stripe: ask the store, and keep nothing.
        meters.miss.increment(1);
        let epoch = self.caches.session_epochs.of(&id);
        let record = self.store.get_session(id).await?;
        Ok((record.map(|r| Arc::new(self.cached(r, epoch))), None))
    }

    /// Keeps a user's marks read from the store, as a miss of the users cache. `epoch` is the
    /// user's revocation epoch taken before the read: marks of a user whose marks moved since
    /// are stale and never used.
    pub(super) async fn keep_marks(
        &self,
        user: &UserId,
        marks: UserNotBefore,
        epoch: u64,
    ) -> Arc<CachedMarks> {
        let marks = Arc::new(CachedMarks::new(marks, epoch, self.clock.now()));
        self.caches.users.insert(user.clone(), marks.clone()).await;
        self.caches.meters.users.miss.increment(1);
        marks
    }

    /// The cache entry of a session read or written now.
    fn cached(&self, record: SessionRecord, epoch: u64) -> CachedSession {
        CachedSession::new(record, epoch, self.clock.now())
    }

    /// Keeps a session this replica has just written, as the store now has it, so the first
    /// check of its new token needs no read. `epoch` is the session's revocation epoch taken
    /// before the write: an entry of a session revoked since is stale and never used.
    pub(super) async fn keep_session(&self, record: SessionRecord, epoch: u64) {
        if !self.hooks.keeps_written_sessions() {
            return;
        }
        let id = record.id;
        self.caches
            .sessions
            .insert(id, Some(Arc::new(self.cached(record, epoch))))
            .await;
    }

    /// The user's "not before" marks, from the cache while it is fresh and not stale by its
    /// epoch, else from the store.
    pub(super) async fn user_marks(
        &self,
        user: &UserId,
        fresh: bool,
    ) -> Result<Arc<CachedMarks>, DomainError> {
        let meters = &self.caches.meters.users;
        if fresh {
            for _ in 0..LOAD_ATTEMPTS {
                let epoch = self.caches.user_epochs.of(user);
                let loaded = AtomicBool::new(false);
                let marks = self
                    .caches
                    .users
                    .try_get_with_by_ref(user, async {
                        loaded.store(true, Ordering::Relaxed);
                        let marks = self.store.user_not_before(user).await?;
                        Ok::<_, StoreError>(Arc::new(CachedMarks::new(
                            marks,
                            epoch,
                            self.clock.now(),
                        )))
                    })
                    .await
                    .map_err(|e: Arc<StoreError>| DomainError::Store((*e).clone()))?;
                meters.count(&loaded);
                if marks.epoch == self.caches.user_epochs.of(user) {
                    return Ok(marks);
                }
                self.caches.users.invalidate(user).await;
            }
        }
        meters.miss.increment(1);
        let epoch = self.caches.user_epochs.of(user);
        let marks = self.store.user_not_before(user).await?;
        Ok(Arc::new(CachedMarks::new(marks, epoch, self.clock.now())))
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
        Ok(Verdict::Invalid(TokenProblem::Idle)) => &outcomes.idle_timeout,
        Ok(Verdict::Invalid(TokenProblem::StepUpRequired)) => &outcomes.step_up_required,
        Err(_) => &outcomes.error,
    };
    counter.increment(1);
}
