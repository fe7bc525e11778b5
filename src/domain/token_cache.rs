//! The verified-token cache: a token's checked claims by a keyed hash of its text.
//!
//! A `Validate` hit is one lookup here and nothing else (see [`TokenEntry`]'s shortcut). It
//! is a sharded S3-FIFO cache (`quick_cache`): a hit takes one shard's read lock and, until
//! it saturates, bumps the entry's own frequency counter; it appends to no log. A cache that
//! keeps an access order (moka's LRU) logs every read into buffers all cores write, which cost
//! a hit 1.0–1.5 µs where this lookup costs 0.4–0.5 µs (docs/benchmarks.md, "This round: a
//! token cache without a shared read log").
//!
//! Entries are weighed in estimated heap bytes ([`token_weight`]) within a byte budget. An
//! expired token's entry is left where it is until the budget pushes it out or
//! [`TokenCache::sweep_expired`] (run once a minute, off the runtime) drops it; a lookup of an
//! expired token still answers its claims, which the check then refuses as expired.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use metrics::Counter;
use quick_cache::Lifecycle;
use siphasher::sip128::SipHasher24;

use super::cache::{TokenEntry, token_weight};
use crate::model::time::Timestamp;
use crate::telemetry::prometheus::CACHE_EVICTIONS;

/// The verified-token cache's key: a keyed 128-bit hash of the token text (SipHash-2-4 under
/// a key drawn at random when the process starts): 16 bytes instead of the token's 600 or
/// more. To borrow a verified token's claims, a forged token would need the same 128 bits
/// under a key it never sees. SHA-256 would do as well but costs over a quarter of a hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TokenKey(u128);

/// The process's key for [`TokenKey`], drawn once.
fn token_key_secret() -> &'static SipHasher24 {
    static SECRET: std::sync::OnceLock<SipHasher24> = std::sync::OnceLock::new();
    SECRET.get_or_init(|| {
        let key: [u8; 16] = rand::random();
        SipHasher24::new_with_key(&key)
    })
}

impl TokenKey {
    /// The key of `token`.
    pub fn of(token: &str) -> Self {
        Self(token_key_secret().hash(token.as_bytes()).as_u128())
    }
}

/// Weighs an entry by [`token_weight`].
#[derive(Clone, Copy)]
pub struct Weight;

impl quick_cache::Weighter<TokenKey, Arc<TokenEntry>> for Weight {
    fn weight(&self, key: &TokenKey, entry: &Arc<TokenEntry>) -> u64 {
        u64::from(token_weight(key, entry))
    }
}

/// Counts entries the byte budget pushes out (replacements are not evictions).
#[derive(Clone)]
pub struct Evictions {
    size: Counter,
}

impl Lifecycle<TokenKey, Arc<TokenEntry>> for Evictions {
    type RequestState = ();

    fn begin_request(&self) {}

    fn on_evict(&self, _state: &mut (), _key: TokenKey, _entry: Arc<TokenEntry>) {
        self.size.increment(1);
    }
}

/// Verified tokens by [`TokenKey`], within a byte budget.
pub struct TokenCache {
    entries: quick_cache::sync::Cache<
        TokenKey,
        Arc<TokenEntry>,
        Weight,
        quick_cache::DefaultHashBuilder,
        Evictions,
    >,
    expired: Counter,
}

/// What a typical entry weighs, to size the cache's tables for its budget.
const TYPICAL_WEIGHT: u64 = 512;

impl TokenCache {
    /// An empty cache of `bytes` (at least one entry's worth).
    pub fn new(bytes: u64) -> Self {
        let bytes = bytes.max(TYPICAL_WEIGHT);
        let items = usize::try_from(bytes / TYPICAL_WEIGHT).unwrap_or(usize::MAX);
        let lifecycle = Evictions {
            size: metrics::counter!(CACHE_EVICTIONS, "cache" => "tokens", "cause" => "size"),
        };
        Self {
            entries: quick_cache::sync::Cache::with(
                items,
                bytes,
                Weight,
                quick_cache::DefaultHashBuilder::default(),
                lifecycle,
            ),
            expired: metrics::counter!(CACHE_EVICTIONS, "cache" => "tokens", "cause" => "expired"),
        }
    }

    /// The entry of `key`, if cached.
    pub fn get(&self, key: &TokenKey) -> Option<Arc<TokenEntry>> {
        self.entries.get(key)
    }

    /// Keeps `entry` under `key` (replacing any entry there).
    pub fn insert(&self, key: TokenKey, entry: Arc<TokenEntry>) {
        self.entries.insert(key, entry);
    }

    /// Drops every entry whose token expired by `now` and returns how many. Takes each
    /// shard's write lock in turn for a walk over it: run it off the async runtime.
    pub fn sweep_expired(&self, now: Timestamp) -> u64 {
        let removed = AtomicU64::new(0);
        self.entries.retain(|_, entry| {
            let live = entry.claims.expires_at > now;
            if !live {
                removed.fetch_add(1, Ordering::Relaxed);
            }
            live
        });
        let removed = removed.into_inner();
        self.expired.increment(removed);
        removed
    }

    /// Entries held.
    pub fn entry_count(&self) -> u64 {
        self.entries.len() as u64
    }

    /// Their estimated bytes.
    pub fn weighted_size(&self) -> u64 {
        self.entries.weight()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::access::AccessClaims;
    use crate::model::ids::{SessionId, TenantId, UserId};

    fn entry(n: u32, expires_at: Timestamp) -> Arc<TokenEntry> {
        Arc::new(TokenEntry::new(Arc::new(AccessClaims {
            session_id: SessionId::new(),
            user_id: UserId::parse("sub", &format!("user-{n}")).expect("user"),
            tenant_id: TenantId::none(),
            issued_at: Timestamp::from_micros(0),
            expires_at,
            grant: None,
            auth_time: None,
            acr: String::new(),
            amr: Vec::new(),
            refresh_generation: None,
        })))
    }

    #[test]
    fn a_token_key_is_stable_and_tells_tokens_apart() {
        let token = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1c2VyLTEifQ.c2lnbmF0dXJl";
        assert_eq!(TokenKey::of(token), TokenKey::of(token));
        assert_ne!(TokenKey::of(token), TokenKey::of(&token[..token.len() - 1]));
        assert_ne!(TokenKey::of(token), TokenKey::of(&format!("{token}x")));
        // Keyed: not a plain SipHash-2-4 under the all-zero key.
        let unkeyed = SipHasher24::new_with_key(&[0; 16])
            .hash(token.as_bytes())
            .as_u128();
        assert_ne!(TokenKey::of(token), TokenKey(unkeyed));
    }

    #[test]
    fn a_sweep_drops_the_expired_tokens_and_only_those() {
        let cache = TokenCache::new(1 << 20);
        let now = Timestamp::from_micros(1_000_000_000_000_000);
        let later = now.plus(Duration::from_secs(60));
        for n in 0..100 {
            let expires = if n % 4 == 0 { now } else { later };
            cache.insert(TokenKey::of(&format!("token-{n}")), entry(n, expires));
        }
        assert_eq!(cache.entry_count(), 100);
        assert_eq!(cache.sweep_expired(now), 25);
        assert_eq!(cache.entry_count(), 75);
        for n in 0..100 {
            let held = cache.get(&TokenKey::of(&format!("token-{n}"))).is_some();
            assert_eq!(held, n % 4 != 0, "token-{n}");
        }
        assert_eq!(cache.sweep_expired(now), 0);
        assert_eq!(cache.sweep_expired(later), 75);
        assert_eq!(cache.entry_count(), 0);
    }
}
