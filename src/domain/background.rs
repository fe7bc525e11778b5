//! The authority's background work: following the revocation feed and sweeping expired rows.
//! Each loop ends when the shutdown signal fires.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::sessions::Sessions;
use super::time::Timestamp;
use crate::store::RevocationEvent;

/// How often expired rows are swept (for stores that do not expire rows themselves).
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);

impl Sessions {
    /// Loads the state the hot path needs before serving: the global "not before" instant.
    pub async fn warm_up(&self) -> Result<(), crate::store::StoreError> {
        if let Some(at) = self.store.global_not_before().await? {
            self.caches.raise_global_not_before(at);
        }
        Ok(())
    }

    /// Reads the revocation feed every `revocation_poll` and drops what it names from the
    /// caches, so revocations made through other replicas take effect here within that bound.
    pub async fn follow_revocations(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut cursor: Option<Vec<u8>> = None;
        let mut tick = tokio::time::interval(self.policy.revocation_poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            match self.store.poll_revocations(cursor.as_deref()).await {
                Ok(batch) => {
                    let now = Timestamp::now();
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
        self.caches.feed_age(Timestamp::now())
    }

    async fn apply(&self, events: &[RevocationEvent]) {
        for event in events {
            match event {
                RevocationEvent::Session(id) => self.caches.sessions.invalidate(id).await,
                RevocationEvent::User(user) => self.caches.users.invalidate(user).await,
                RevocationEvent::Global => match self.store.global_not_before().await {
                    Ok(Some(at)) => self.caches.raise_global_not_before(at),
                    Ok(None) => {}
                    // The feed will not say it again: stop trusting the caches until it works.
                    Err(error) => {
                        tracing::warn!(%error, "cannot read the global not-before");
                        self.caches.feed_failed();
                    }
                },
            }
        }
    }

    /// Removes expired sessions, revocation marks and old audit events every `SWEEP_EVERY`.
    pub async fn sweep_expired(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            match self.store.sweep(Timestamp::now()).await {
                Ok(0) => {}
                Ok(removed) => tracing::debug!(removed, "swept expired rows"),
                Err(error) => tracing::warn!(%error, "sweep failed"),
            }
        }
    }
}
