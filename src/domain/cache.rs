//! The in-process caches behind `Validate`'s hot path.
//!
//! - Verified tokens, keyed by a keyed 128-bit hash of the token text ([`TokenCache`]).
//! - Session state, and per-user "not before" marks. Entries are dropped at once by a
//!   revocation on this replica and by the revocation feed for revocations made elsewhere.
//! - Freshness: when the feed has not been read successfully for too long, the caches are not
//!   trusted (every check goes to the store) and are dropped whole once it is read again.
//! - Revocation epochs: a loader may read a session just before a revocation and hand its
//!   value on just after the revocation invalidated the key (moka inserts a finished loader's
//!   value whatever happened meanwhile). So every revocation that reaches this replica, by an
//!   RPC here or through the feed, first bumps the epoch of the key's stripe; a loader takes
//!   the epoch before it reads and its entry carries it; an entry whose epoch is no longer
//!   the stripe's is stale and is never used, however it got into the cache.
//! - One lookup per hit: a token entry remembers (weakly) the session and user entries its
//!   last successful check used, and a hit takes them from there while they are still the
//!   entries their caches hold and their revocation epochs have not moved; see [`TokenEntry`].
//!   A hit therefore leaves the session and user caches' access order alone: under memory
//!   pressure, an entry used only through shortcuts ages as if unused and is reloaded after
//!   eviction.
//! - Weight: every cache is bounded in bytes (an estimate of each entry's heap footprint),
//!   not in entries, so the largest allowed records cannot multiply its memory.

use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use metrics::Counter;
use moka::notification::RemovalCause;

use super::access::AccessClaims;
use super::token_cache::{TokenCache, TokenKey};
use crate::model::clock::SharedClock;
use crate::model::ids::{SessionId, UserId};
use crate::model::records::SessionRecord;
use crate::model::time::Timestamp;
use crate::store::UserNotBefore;
use crate::telemetry::prometheus::{
    CACHE_BYTES, CACHE_CAPACITY, CACHE_ENTRIES, CACHE_EVICTIONS, CACHE_REQUESTS, REFRESH, VALIDATE,
};

/// A session as the hot path sees it, with the instant of its last written-behind touch.
#[derive(Debug)]
pub struct CachedSession {
    /// The stored record (its `last_seen_at` may lag by the touch interval). Boxed so that
    /// the entry itself is small: a token's shortcut may keep the entry's allocation (never
    /// the record) alive after the cache let it go.
    pub record: Box<SessionRecord>,
    /// When this replica last queued a last-seen write for it (µs since the epoch).
    pub last_touch: AtomicI64,
    /// The revocation epoch of its stripe taken before the record was read.
    pub epoch: u64,
    /// When the record was read or written here, by the service's clock.
    pub cached_at: Timestamp,
    /// Set once the sessions cache no longer holds this entry (replaced, invalidated,
    /// evicted): a token entry's shortcut to it is then not taken.
    pub superseded: AtomicBool,
}

impl CachedSession {
    /// The cache entry of a session read from the store (or just written) at `now`, before
    /// which the session's revocation epoch was `epoch`.
    pub fn new(record: SessionRecord, epoch: u64, now: Timestamp) -> Self {
        let last_touch = AtomicI64::new(record.last_seen_at.as_micros());
        Self {
            record: Box::new(record),
            last_touch,
            epoch,
            cached_at: now,
            superseded: AtomicBool::new(false),
        }
    }
}

/// A user's "not before" marks as cached, with the epoch taken before they were read.
#[derive(Debug)]
pub struct CachedMarks {
    /// The marks.
    pub marks: UserNotBefore,
    /// The revocation epoch of the user's stripe taken before the marks were read.
    pub epoch: u64,
    /// When the marks were read, by the service's clock.
    pub cached_at: Timestamp,
    /// Set once the users cache no longer holds this entry; see [`CachedSession::superseded`].
    pub superseded: AtomicBool,
}

impl CachedMarks {
    /// The cache entry of marks read at `now`, before which the user's epoch was `epoch`.
    pub fn new(marks: UserNotBefore, epoch: u64, now: Timestamp) -> Self {
        Self {
            marks,
            epoch,
            cached_at: now,
            superseded: AtomicBool::new(false),
        }
    }
}

/// A verified token as cached: its claims and, once a check found its session standing, a
/// shortcut to the session and user entries that check used. While both are still the
/// entries their caches hold (neither superseded nor stale by its revocation epoch, and
/// younger than the caches' time to live), a hit needs no other lookup: one cache probe per
/// `Validate` instead of three. The shortcut holds them weakly, so it never keeps an evicted
/// entry's state alive.
pub struct TokenEntry {
    /// The verified claims.
    pub claims: Arc<AccessClaims>,
    standing: ArcSwapOption<Shortcut>,
}

struct Shortcut {
    session: Weak<CachedSession>,
    marks: Weak<CachedMarks>,
    /// The older entry's `cached_at` plus the caches' time to live.
    until: Timestamp,
    /// Uses so far, to send every `LOOKUP_EVERY`th through the caches.
    uses: AtomicU32,
}

/// One use in this many of a shortcut looks its entries up in the caches instead. The caches
/// evict by their own record of use; a session or user reached only by shortcuts would look
/// unused to them and be evicted before cold entries, and its hot tokens would then all miss at
/// once. A lookup in 32 keeps such entries in the caches' order of use at a small share of the
/// two lookups the shortcut saves.
pub const LOOKUP_EVERY: u32 = 32;

impl TokenEntry {
    /// An entry without a shortcut yet.
    pub fn new(claims: Arc<AccessClaims>) -> Self {
        Self {
            claims,
            standing: ArcSwapOption::empty(),
        }
    }

    /// The session and marks of the last check that found this token standing, if both are
    /// still what the caches would answer at `now`; `None` also for one use in
    /// `LOOKUP_EVERY`, which the caller then looks up in the caches.
    pub fn shortcut(
        &self,
        caches: &Caches,
        now: Timestamp,
    ) -> Option<(Arc<CachedSession>, Arc<CachedMarks>)> {
        let guard = self.standing.load();
        let shortcut = guard.as_ref()?;
        if now >= shortcut.until {
            return None;
        }
        if shortcut.uses.fetch_add(1, Ordering::Relaxed) % LOOKUP_EVERY == LOOKUP_EVERY - 1 {
            return None;
        }
        let session = shortcut.session.upgrade()?;
        let marks = shortcut.marks.upgrade()?;
        // The epochs are read after the entries, as a lookup reads them after its get: a
        // revocation that bumped them before this point is seen.
        let current = !session.superseded.load(Ordering::Acquire)
            && !marks.superseded.load(Ordering::Acquire)
            && session.epoch == caches.session_epochs.of(&self.claims.session_id)
            && marks.epoch == caches.user_epochs.of(&self.claims.user_id);
        current.then_some((session, marks))
    }

    /// Whether the shortcut leads to exactly these entries (then there is nothing to remember).
    pub fn leads_to(&self, session: &Arc<CachedSession>, marks: &Arc<CachedMarks>) -> bool {
        self.standing.load().as_ref().is_some_and(|s| {
            std::ptr::eq(s.session.as_ptr(), Arc::as_ptr(session))
                && std::ptr::eq(s.marks.as_ptr(), Arc::as_ptr(marks))
        })
    }

    /// Remembers the entries a check just found this token standing with.
    pub fn remember(
        &self,
        session: &Arc<CachedSession>,
        marks: &Arc<CachedMarks>,
        caches: &Caches,
    ) {
        let until = session
            .cached_at
            .min(marks.cached_at)
            .plus(caches.limits.ttl);
        self.standing.store(Some(Arc::new(Shortcut {
            session: Arc::downgrade(session),
            marks: Arc::downgrade(marks),
            until,
            uses: AtomicU32::new(0),
        })));
    }
}

/// How many revocation epochs there are per kind of key. A revocation makes the cached
/// entries of its whole stripe reload once; with this many stripes that is a handful of
/// entries per revocation even with millions cached.
const STRIPES: usize = 4096;

/// Revocation epochs by stripe of keys; see the module documentation.
pub struct Epochs {
    stripes: Box<[AtomicU64]>,
    hasher: std::collections::hash_map::RandomState,
}

impl Epochs {
    fn new() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    fn stripe<K: Hash>(&self, key: &K) -> Option<&AtomicU64> {
        let hash = self.hasher.hash_one(key);
        self.stripes.get((hash % STRIPES as u64) as usize)
    }

    /// The current epoch of `key`'s stripe.
    pub fn of<K: Hash>(&self, key: &K) -> u64 {
        self.stripe(key).map_or(0, |e| e.load(Ordering::Acquire))
    }

    /// Moves `key`'s stripe on: entries read before now are stale.
    fn bump<K: Hash>(&self, key: &K) {
        if let Some(e) = self.stripe(key) {
            e.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Moves every stripe on.
    fn bump_all(&self) {
        for e in self.stripes.iter() {
            e.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// What moka (the session and user caches) keeps beside each entry (its slot in the hash
/// table, the entry's metadata and its places in the access and write orders) plus the
/// allocator's headers. With the sizes below, the estimates stay above the process's measured
/// growth per cached session and user (docs/benchmarks.md, "Cache memory").
const ENTRY_OVERHEAD: usize = 384;

/// What the token cache keeps beside each entry: its slot (key, value, frequency and queue
/// links), its share of the table and of the ghost queue of recently evicted keys, and the
/// allocator's headers. Checked against the process's measured growth per cached token
/// (docs/benchmarks.md, "Cache memory").
const TOKEN_ENTRY_OVERHEAD: usize = 128;

/// Heap bytes of a string: its text rounded up to the allocator's 16-byte granules.
fn text(s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        s.len().div_ceil(16) * 16
    }
}

/// Estimated heap bytes of a cached session, its key and its bookkeeping.
fn session_weight(value: &Option<Arc<CachedSession>>) -> u32 {
    let fixed = ENTRY_OVERHEAD
        + (std::mem::size_of::<CachedSession>() + 16)
        + (std::mem::size_of::<SessionRecord>() + 16);
    let texts = value.as_ref().map_or(0, |s| {
        let r = &s.record;
        text(r.user_id.as_str())
            + text(r.tenant_id.as_str())
            + text(&r.ip)
            + text(&r.user_agent)
            + text(&r.device_name)
            + text(&r.revoke_reason)
            + text(&r.sign_in.acr)
            + r.sign_in.amr.iter().map(|m| text(m) + 24).sum::<usize>()
            + r.metadata
                .iter()
                .map(|(k, v)| text(k) + text(v) + 64)
                .sum::<usize>()
    });
    u32::try_from(fixed + texts).unwrap_or(u32::MAX)
}

/// Estimated heap bytes of a verified token: its key, its claims, its shortcut and its
/// bookkeeping. A shortcut's weak references keep the bare allocations of a session and a
/// user entry after their caches let them go (not the record, the marks or any text), so
/// those are counted too: the estimate is a bound, a little above the real footprint while
/// the entries are still cached.
pub(super) fn token_weight(key: &TokenKey, entry: &Arc<TokenEntry>) -> u32 {
    let claims = &entry.claims;
    let fixed = TOKEN_ENTRY_OVERHEAD
        + std::mem::size_of_val(key)
        + (std::mem::size_of::<TokenEntry>() + 16)
        + (std::mem::size_of::<AccessClaims>() + 16)
        + (std::mem::size_of::<Shortcut>() + 16)
        + (std::mem::size_of::<CachedSession>() + 16)
        + (std::mem::size_of::<CachedMarks>() + 16);
    let grant = claims
        .grant
        .as_ref()
        .map_or(0, |g| text(&g.client_id) + text(&g.audience));
    let bytes = fixed
        + text(claims.user_id.as_str())
        + text(claims.tenant_id.as_str())
        + text(&claims.acr)
        + claims.amr.iter().map(|m| text(m) + 24).sum::<usize>()
        + grant;
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

/// Estimated heap bytes of a user's marks, the user id and the bookkeeping.
fn marks_weight(user: &UserId, marks: &Arc<CachedMarks>) -> u32 {
    let fixed =
        ENTRY_OVERHEAD + std::mem::size_of::<UserId>() + std::mem::size_of::<CachedMarks>() + 16;
    let bytes = fixed
        + text(user.as_str())
        + marks
            .marks
            .keys()
            .map(|t| text(t.as_str()) + 48)
            .sum::<usize>();
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

/// The default budget of all three caches (`--cache-memory`): 192 MiB.
pub const DEFAULT_CACHE_BYTES: u64 = 192 << 20;

/// Sizes (in bytes of estimated heap footprint) and lifetimes of the caches.
#[derive(Clone, Copy, Debug)]
pub struct CacheLimits {
    /// Bytes of verified tokens kept.
    pub tokens: u64,
    /// Bytes of session state kept.
    pub sessions: u64,
    /// Bytes of users' "not before" marks kept.
    pub users: u64,
    /// How long a session or user entry may live without being refreshed from the store.
    pub ttl: Duration,
}

impl CacheLimits {
    /// Splits `bytes` between the caches: 3/8 tokens, 1/2 sessions, 1/8 users. A hit needs
    /// all three, and a token entry (the token text and its claims) weighs about as much as
    /// its session's entry, so tokens and sessions get nearly the same share.
    pub fn within(bytes: u64, ttl: Duration) -> Self {
        Self {
            tokens: bytes / 8 * 3,
            sessions: bytes / 2,
            users: bytes / 8,
            ttl,
        }
    }
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self::within(DEFAULT_CACHE_BYTES, Duration::from_secs(300))
    }
}

/// A hit and a miss counter of one cache.
pub struct HitMiss {
    /// Answered from the cache.
    pub hit: Counter,
    /// Not in the cache: verified or read from the store.
    pub miss: Counter,
}

impl HitMiss {
    fn new(cache: &'static str) -> Self {
        Self {
            hit: metrics::counter!(CACHE_REQUESTS, "cache" => cache, "result" => "hit"),
            miss: metrics::counter!(CACHE_REQUESTS, "cache" => cache, "result" => "miss"),
        }
    }

    /// Counts one cache lookup: a miss when this caller's loader ran (`loaded`), a hit when
    /// the entry was there or another caller's read was shared.
    pub fn count(&self, loaded: &AtomicBool) {
        if loaded.load(Ordering::Relaxed) {
            self.miss.increment(1);
        } else {
            self.hit.increment(1);
        }
    }
}

/// One counter per outcome of an access-token check.
pub struct Outcomes {
    /// The token stands.
    pub valid: Counter,
    /// `TokenProblem::Malformed`.
    pub malformed: Counter,
    /// `TokenProblem::BadSignature`.
    pub bad_signature: Counter,
    /// `TokenProblem::Expired`.
    pub expired: Counter,
    /// `TokenProblem::Revoked`.
    pub revoked: Counter,
    /// `TokenProblem::UnknownSession`.
    pub unknown_session: Counter,
    /// `TokenProblem::Idle`.
    pub idle_timeout: Counter,
    /// `TokenProblem::StepUpRequired`.
    pub step_up_required: Counter,
    /// The store could not answer.
    pub error: Counter,
}

impl Outcomes {
    fn new() -> Self {
        let result = |r: &'static str| metrics::counter!(VALIDATE, "result" => r);
        Self {
            valid: result("valid"),
            malformed: result("malformed"),
            bad_signature: result("bad_signature"),
            expired: result("expired"),
            revoked: result("revoked"),
            unknown_session: result("unknown_session"),
            idle_timeout: result("idle_timeout"),
            step_up_required: result("step_up_required"),
            error: result("error"),
        }
    }
}

/// One counter per outcome of a presented refresh token.
pub struct RefreshOutcomes {
    /// Rotated to the next generation.
    pub rotated: Counter,
    /// Answered the same successor inside the grace.
    pub grace_replay: Counter,
    /// Reuse: the previous generation after the grace.
    pub replay_after_grace: Counter,
    /// Reuse: an older generation.
    pub stale_generation: Counter,
}

impl RefreshOutcomes {
    fn new() -> Self {
        let result = |r: &'static str| metrics::counter!(REFRESH, "result" => r);
        Self {
            rotated: result("rotated"),
            grace_replay: result("grace_replay"),
            replay_after_grace: result("replay_after_grace"),
            stale_generation: result("stale_generation"),
        }
    }
}

/// The hot path's counters. Registered once, when the caches are built, so that a check only
/// increments atomics: no registry lookup, no allocation, no lock per call.
pub struct Meters {
    /// The verified-token cache.
    pub tokens: HitMiss,
    /// The session-state cache.
    pub sessions: HitMiss,
    /// The per-user "not before" cache.
    pub users: HitMiss,
    /// Outcomes of `Sessions::validate`.
    pub outcomes: Outcomes,
    /// Outcomes of presented refresh tokens.
    pub refreshes: RefreshOutcomes,
}

impl Meters {
    fn new() -> Self {
        Self {
            tokens: HitMiss::new("tokens"),
            sessions: HitMiss::new("sessions"),
            users: HitMiss::new("users"),
            outcomes: Outcomes::new(),
            refreshes: RefreshOutcomes::new(),
        }
    }
}

/// The caches of one replica.
pub struct Caches {
    /// Verified access tokens.
    pub tokens: TokenCache,
    /// Session state. A `None` ("no such session") is dropped right after the lookup that
    /// made it (`validate`), so a session not yet replicated here is not taken for unknown.
    pub sessions: moka::future::Cache<SessionId, Option<Arc<CachedSession>>>,
    /// Per-user "not before" marks.
    pub users: moka::future::Cache<UserId, Arc<CachedMarks>>,
    /// Revocation epochs of sessions.
    pub session_epochs: Epochs,
    /// Revocation epochs of users.
    pub user_epochs: Epochs,
    /// The global "not before" instant (µs), `i64::MIN` when never set.
    global_not_before: AtomicI64,
    /// When the revocation feed was last read successfully (µs).
    feed_ok_at: AtomicI64,
    /// Set when the feed could not be read for too long: caches must be dropped on recovery.
    feed_stale: AtomicBool,
    /// Hit, miss and outcome counters.
    pub meters: Meters,
    limits: CacheLimits,
}

/// Counts entries that leave a cache by themselves (pushed out by its budget, or expired);
/// removals by a revocation or a replacement are not evictions.
fn evictions(cache: &'static str) -> impl Fn(RemovalCause) + Send + Sync + 'static {
    let size = metrics::counter!(CACHE_EVICTIONS, "cache" => cache, "cause" => "size");
    let expired = metrics::counter!(CACHE_EVICTIONS, "cache" => cache, "cause" => "expired");
    move |cause| match cause {
        RemovalCause::Size => size.increment(1),
        RemovalCause::Expired => expired.increment(1),
        RemovalCause::Explicit | RemovalCause::Replaced => {}
    }
}

impl Caches {
    /// Empty caches of the given sizes; `clock` dates the first feed read.
    pub fn new(limits: CacheLimits, clock: SharedClock) -> Self {
        let started = clock.now();
        let (sessions_out, users_out) = (evictions("sessions"), evictions("users"));
        Self {
            tokens: TokenCache::new(limits.tokens),
            sessions: moka::future::Cache::builder()
                .max_capacity(limits.sessions)
                .weigher(|_, v| session_weight(v))
                .time_to_live(limits.ttl)
                .eviction_listener(move |_, value: Option<Arc<CachedSession>>, cause| {
                    if let Some(session) = value {
                        session.superseded.store(true, Ordering::Release);
                    }
                    sessions_out(cause)
                })
                .build(),
            users: moka::future::Cache::builder()
                .max_capacity(limits.users)
                .weigher(marks_weight)
                .time_to_live(limits.ttl)
                .eviction_listener(move |_, marks: Arc<CachedMarks>, cause| {
                    marks.superseded.store(true, Ordering::Release);
                    users_out(cause)
                })
                .build(),
            limits,
            session_epochs: Epochs::new(),
            user_epochs: Epochs::new(),
            global_not_before: AtomicI64::new(i64::MIN),
            feed_ok_at: AtomicI64::new(started.as_micros()),
            feed_stale: AtomicBool::new(false),
            meters: Meters::new(),
        }
    }

    /// Sets the cache gauges (entries, estimated bytes, budget) to what they are now, after
    /// applying the inserts and evictions the caches still have queued (moka counts lazily).
    pub async fn report(&self) {
        self.sessions.run_pending_tasks().await;
        self.users.run_pending_tasks().await;
        let sizes = [
            (
                "tokens",
                self.tokens.entry_count(),
                self.tokens.weighted_size(),
                self.limits.tokens,
            ),
            (
                "sessions",
                self.sessions.entry_count(),
                self.sessions.weighted_size(),
                self.limits.sessions,
            ),
            (
                "users",
                self.users.entry_count(),
                self.users.weighted_size(),
                self.limits.users,
            ),
        ];
        for (cache, entries, bytes, budget) in sizes {
            // Gauges are f64; these counts stay far below 2^53.
            metrics::gauge!(CACHE_ENTRIES, "cache" => cache).set(entries as f64);
            metrics::gauge!(CACHE_BYTES, "cache" => cache).set(bytes as f64);
            metrics::gauge!(CACHE_CAPACITY, "cache" => cache).set(budget as f64);
        }
    }

    /// The global "not before" instant.
    pub fn global_not_before(&self) -> Timestamp {
        Timestamp::from_micros(self.global_not_before.load(Ordering::Acquire))
    }

    /// Moves the global "not before" forward (never back).
    pub fn raise_global_not_before(&self, at: Timestamp) {
        self.global_not_before
            .fetch_max(at.as_micros(), Ordering::AcqRel);
    }

    /// True when cached session and user state may be used: the feed was read recently enough.
    pub fn is_fresh(&self, now: Timestamp, max_lag: Duration) -> bool {
        let ok_at = Timestamp::from_micros(self.feed_ok_at.load(Ordering::Acquire));
        ok_at.plus(max_lag) >= now
    }

    /// Records a successful feed read. Returns true when the caches had gone stale and were
    /// dropped whole, since revocations may have been missed meanwhile.
    pub fn feed_read(&self, now: Timestamp, max_lag: Duration) -> bool {
        let was_stale =
            !self.is_fresh(now, max_lag) || self.feed_stale.swap(false, Ordering::AcqRel);
        self.feed_ok_at.store(now.as_micros(), Ordering::Release);
        if was_stale {
            self.drop_state();
        }
        was_stale
    }

    /// How long ago the feed was last read successfully (zero if the clock went back).
    pub fn feed_age(&self, now: Timestamp) -> Duration {
        Timestamp::from_micros(self.feed_ok_at.load(Ordering::Acquire)).until(now)
    }

    /// Marks the feed as failing, so the caches are dropped once it answers again.
    pub fn feed_failed(&self) {
        self.feed_stale.store(true, Ordering::Release);
    }

    /// Drops every cached session and user entry (verified tokens stay: signatures do not
    /// change with revocations). Entries a loader still in flight inserts later are stale by
    /// their epoch.
    pub fn drop_state(&self) {
        self.session_epochs.bump_all();
        self.user_epochs.bump_all();
        self.sessions.invalidate_all();
        self.users.invalidate_all();
    }

    /// A session was revoked (here, or elsewhere as the feed says): its cached state, and any
    /// that a loader in flight is about to hand on, is stale from now on.
    pub async fn session_revoked(&self, id: &SessionId) {
        self.session_epochs.bump(id);
        self.sessions.invalidate(id).await;
    }

    /// A user's "not before" marks moved; see [`Caches::session_revoked`].
    pub async fn user_marks_moved(&self, user: &UserId) {
        self.user_epochs.bump(user);
        self.users.invalidate(user).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session_record(user: &UserId, now: Timestamp) -> SessionRecord {
        SessionRecord {
            id: SessionId::new(),
            user_id: user.clone(),
            tenant_id: crate::model::ids::TenantId::none(),
            created_at: now,
            last_seen_at: now,
            expires_at: now.plus(Duration::from_secs(86_400)),
            ip: String::new(),
            user_agent: String::new(),
            device_name: String::new(),
            metadata: Default::default(),
            refresh_generation: 0,
            refresh_hash: crate::model::records::RefreshHash([0; 32]),
            refresh_salt: None,
            previous_refresh: None,
            idle_timeout: None,
            sign_in: crate::model::records::SignIn {
                auth_time: now,
                acr: String::new(),
                amr: Vec::new(),
            },
            revoked_at: None,
            revoke_reason: String::new(),
        }
    }

    /// A token entry whose shortcut was remembered with a session and marks now in `caches`.
    async fn remembered(
        caches: &Caches,
        now: Timestamp,
    ) -> (TokenEntry, Arc<CachedSession>, Arc<CachedMarks>) {
        let user = UserId::parse("sub", "shortcut").expect("user");
        let record = session_record(&user, now);
        let claims = AccessClaims {
            session_id: record.id,
            user_id: user.clone(),
            tenant_id: crate::model::ids::TenantId::none(),
            issued_at: now,
            expires_at: now.plus(Duration::from_secs(900)),
            grant: None,
            auth_time: None,
            acr: String::new(),
            amr: Vec::new(),
            refresh_generation: None,
        };
        let session = Arc::new(CachedSession::new(
            record,
            caches.session_epochs.of(&claims.session_id),
            now,
        ));
        let marks = Arc::new(CachedMarks::new(
            UserNotBefore::new(),
            caches.user_epochs.of(&user),
            now,
        ));
        caches
            .sessions
            .insert(claims.session_id, Some(session.clone()))
            .await;
        caches.users.insert(user, marks.clone()).await;
        let entry = TokenEntry::new(Arc::new(claims));
        entry.remember(&session, &marks, caches);
        assert!(entry.leads_to(&session, &marks));
        (entry, session, marks)
    }

    fn caches(ttl: Duration) -> Caches {
        Caches::new(
            CacheLimits::within(8 << 20, ttl),
            Arc::new(crate::model::clock::SystemClock),
        )
    }

    #[tokio::test]
    async fn a_shortcut_leads_to_the_entries_the_caches_hold_and_ends_with_their_lifetime() {
        let caches = caches(Duration::from_secs(60));
        let now = Timestamp::from_micros(1_000_000_000_000_000);
        let (entry, session, marks) = remembered(&caches, now).await;
        let (s, m) = entry.shortcut(&caches, now).expect("shortcut");
        assert!(Arc::ptr_eq(&s, &session) && Arc::ptr_eq(&m, &marks));
        let later = now.plus(Duration::from_secs(59));
        assert!(entry.shortcut(&caches, later).is_some());
        let past = now.plus(Duration::from_secs(60));
        assert!(
            entry.shortcut(&caches, past).is_none(),
            "past the caches' ttl"
        );
    }

    #[tokio::test]
    async fn a_revocation_or_a_new_session_entry_closes_the_shortcut() {
        let caches = caches(Duration::from_secs(60));
        let now = Timestamp::from_micros(1_000_000_000_000_000);

        let (entry, session, _) = remembered(&caches, now).await;
        caches.session_revoked(&session.record.id).await;
        assert!(entry.shortcut(&caches, now).is_none(), "session revoked");

        let (entry, _, marks) = remembered(&caches, now).await;
        caches.user_marks_moved(&entry.claims.user_id).await;
        drop(marks);
        assert!(entry.shortcut(&caches, now).is_none(), "user signed out");

        // A newer entry for the session (a refresh written here), while the old one is still
        // in use elsewhere: the old one is superseded, not current.
        let (entry, session, _) = remembered(&caches, now).await;
        let newer = CachedSession::new((*session.record).clone(), session.epoch, now);
        caches
            .sessions
            .insert(session.record.id, Some(Arc::new(newer)))
            .await;
        assert!(
            entry.shortcut(&caches, now).is_none(),
            "session entry replaced"
        );

        // Dropped whole (the feed went stale): every shortcut closes.
        let (entry, _, _) = remembered(&caches, now).await;
        caches.drop_state();
        assert!(entry.shortcut(&caches, now).is_none(), "caches dropped");

        // Let go by its cache: the weak reference no longer leads anywhere.
        let (entry, session, marks) = remembered(&caches, now).await;
        caches.sessions.invalidate(&session.record.id).await;
        drop((session, marks));
        assert!(entry.shortcut(&caches, now).is_none(), "session entry gone");
    }

    #[tokio::test]
    async fn one_use_of_a_shortcut_in_lookup_every_goes_through_the_caches() {
        let caches = caches(Duration::from_secs(60));
        let now = Timestamp::from_micros(1_000_000_000_000_000);
        let (entry, session, marks) = remembered(&caches, now).await;
        let uses: Vec<bool> = (0..LOOKUP_EVERY * 3)
            .map(|_| entry.shortcut(&caches, now).is_some())
            .collect();
        let looked_up: Vec<usize> = (0..uses.len()).filter(|&n| !uses[n]).collect();
        let every = LOOKUP_EVERY as usize;
        assert_eq!(looked_up, vec![every - 1, 2 * every - 1, 3 * every - 1]);
        // The lookup finds the same entries, so the shortcut is kept, and its count goes on.
        assert!(entry.leads_to(&session, &marks));
        assert!(entry.shortcut(&caches, now).is_some());
    }

    #[test]
    fn the_budget_bounds_the_estimated_bytes() {
        let caches = Caches::new(
            CacheLimits::within(1 << 20, Duration::from_secs(60)),
            Arc::new(crate::model::clock::SystemClock),
        );
        let far = Timestamp::from_micros(i64::MAX / 2);
        for n in 0..5_000u32 {
            let claims = AccessClaims {
                session_id: SessionId::new(),
                user_id: UserId::parse("sub", &format!("user-{n}")).expect("user"),
                tenant_id: crate::model::ids::TenantId::none(),
                issued_at: Timestamp::from_micros(0),
                expires_at: far,
                grant: None,
                auth_time: None,
                acr: String::new(),
                amr: Vec::new(),
                refresh_generation: None,
            };
            caches.tokens.insert(
                TokenKey::of(&format!("token-{n}")),
                Arc::new(TokenEntry::new(Arc::new(claims))),
            );
        }
        let limit = caches.limits.tokens;
        assert!(caches.tokens.weighted_size() <= limit, "over the budget");
        // Most of the 5,000 were pushed out: a few hundred bytes each in 384 KiB.
        assert!(
            caches.tokens.entry_count() < 1_500,
            "{}",
            caches.tokens.entry_count()
        );
        assert!(
            caches.tokens.entry_count() > 300,
            "{}",
            caches.tokens.entry_count()
        );
    }
}
