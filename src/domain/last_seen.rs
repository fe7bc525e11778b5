//! Write-behind of `last_seen_at`: `Validate` never writes.
//!
//! The hot path queues at most one touch per session per interval (an atomic compare-and-swap
//! on the cached entry, no lock) into a bounded channel without waiting; a background task
//! merges the queue and writes it in batches. When the queue is full a touch is dropped: a
//! slightly older "last seen" is better than a slower `Validate`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::cache::CachedSession;
use crate::model::ids::SessionId;
use crate::model::time::Timestamp;
use crate::store::Store;

const QUEUE: usize = 65_536;
const FLUSH_EVERY: Duration = Duration::from_secs(1);
const MAX_BATCH: usize = 4096;

/// The hot path's side of the write-behind queue.
#[derive(Clone)]
pub struct Touches {
    queue: mpsc::Sender<(SessionId, Timestamp)>,
    interval_us: i64,
}

impl Touches {
    /// Starts the background writer; it flushes what is queued and stops when every
    /// `Touches` handle has been dropped.
    pub fn start(store: Arc<dyn Store>, interval: Duration) -> (Self, JoinHandle<()>) {
        let (queue, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(run(store, rx));
        let interval_us = i64::try_from(interval.as_micros()).unwrap_or(i64::MAX);
        (Self { queue, interval_us }, task)
    }

    /// Notes a use of `session` at `now`, queuing a write if none was queued this interval.
    pub fn seen(&self, session: &CachedSession, now: Timestamp) {
        let last = session.last_touch.load(Ordering::Relaxed);
        if now.as_micros().saturating_sub(last) < self.interval_us {
            return;
        }
        let won = session
            .last_touch
            .compare_exchange(last, now.as_micros(), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok();
        if won {
            // Full queue: drop this touch (see module docs).
            let _ = self.queue.try_send((session.record.id, now));
        }
    }
}

async fn run(store: Arc<dyn Store>, mut rx: mpsc::Receiver<(SessionId, Timestamp)>) {
    let mut pending: HashMap<SessionId, Timestamp> = HashMap::new();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            item = rx.recv() => match item {
                Some((id, at)) => {
                    let slot = pending.entry(id).or_insert(at);
                    *slot = (*slot).max(at);
                    if pending.len() >= MAX_BATCH {
                        flush(&*store, &mut pending).await;
                    }
                }
                None => break,
            },
            _ = tick.tick() => flush(&*store, &mut pending).await,
        }
    }
    flush(&*store, &mut pending).await;
}

async fn flush(store: &dyn Store, pending: &mut HashMap<SessionId, Timestamp>) {
    if pending.is_empty() {
        return;
    }
    let batch: Vec<_> = pending.drain().collect();
    if let Err(error) = store.touch_sessions(&batch).await {
        tracing::warn!(%error, count = batch.len(), "last-seen write failed; dropped");
    }
}
