//! The authority's background work: following the revocation feed and sweeping expired rows
//! and cached tokens.
//! Each loop ends when its cancellation token fires.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::sessions::Sessions;
use crate::model::records::RevocationEvent;

/// Where following the revocation feed starts; see [`Sessions::warm_up`].
#[derive(Debug)]
pub struct FeedStart(Vec<u8>);

/// How often expired rows are swept (for stores that do not expire rows themselves).
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);

impl Sessions {
    /// Loads the state the hot path needs before serving, the global "not before" instant,
    /// and returns where following the feed starts: before that read, so that a switch or a
    /// revocation landing between warm-up and the first poll is not lost.
    pub async fn warm_up(&self) -> Result<FeedStart, crate::store::StoreError> {
        let start = self.store.poll_revocations(None).await?.cursor;
        if let Some(at) = self.store.global_not_before().await? {
            self.caches.raise_global_not_before(at);
        }
        Ok(FeedStart(start))
    }

    /// Reads the revocation feed every `revocation_poll` and drops what it names from the
    /// caches, so revocations made through other replicas take effect here within that bound.
    /// The global instant is read again on every poll (one row), so no failed read, gap or
    /// lost event can make this replica miss an emergency switch for longer than that.
    pub async fn follow_revocations(self: Arc<Self>, start: FeedStart, stop: CancellationToken) {
        let mut cursor: Option<Vec<u8>> = Some(start.0);
        let mut tick = tokio::time::interval(self.policy.revocation_poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while stop.run_until_cancelled(tick.tick()).await.is_some() {
            let now = self.clock.now();
            let polled = async {
                let batch = self.store.poll_revocations(cursor.as_deref()).await?;
                let global = self.store.global_not_before().await?;
                Ok::<_, crate::store::StoreError>((batch, global))
            }
            .await;
            match polled {
                Ok((batch, global)) => {
                    if let Some(at) = global {
                        self.caches.raise_global_not_before(at);
                    }
                    if batch.gap {
                        tracing::warn!("revocation feed fell behind its window; dropping caches");
                        self.caches.drop_state();
                    }
                    self.apply(&batch.events).await;
                    self.caches.feed_read(now, self.policy.max_feed_lag());
                    cursor = Some(batch.cursor);
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot read the revocation feed");
                    self.caches.feed_failed();
                }
            }
        }
    }

    /// Time since the revocation feed was last read successfully (the
    /// `sessiond_revocation_feed_lag_seconds` gauge): about one poll interval while the feed
    /// works, growing while it fails.
    pub fn revocation_feed_lag(&self) -> Duration {
        self.caches.feed_age(self.clock.now())
    }

    /// Sets the cache gauges (`sessiond_cache_entries`, `_bytes`, `_capacity_bytes`).
    pub async fn report_caches(&self) {
        self.caches.report().await;
    }

    async fn apply(&self, events: &[RevocationEvent]) {
        for event in events {
            match event {
                RevocationEvent::Session(id) => self.caches.session_revoked(id).await,
                RevocationEvent::User(user) => self.caches.user_marks_moved(user).await,
                // Read with the poll that brought it.
                RevocationEvent::Global => {}
            }
        }
    }

    /// Removes expired sessions, revocation marks and old audit events, and drops expired
    /// tokens from the token cache, every `SWEEP_EVERY`.
    pub async fn sweep_expired(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while stop.run_until_cancelled(tick.tick()).await.is_some() {
            let now = self.clock.now();
            match self.store.sweep(now).await {
                Ok(0) => {}
                Ok(removed) => tracing::debug!(removed, "swept expired rows"),
                Err(error) => tracing::warn!(%error, "sweep failed"),
            }
            // A walk over every shard of the cache: not on the runtime's threads.
            let this = self.clone();
            match tokio::task::spawn_blocking(move || this.caches.tokens.sweep_expired(now)).await {
                Ok(0) => {}
                Ok(removed) => tracing::debug!(removed, "dropped expired tokens from the cache"),
                Err(error) => tracing::warn!(%error, "token cache sweep failed"),
            }
        }
    }
}
