//! Logged batches that keep working while the cluster has not yet noticed a dead node.
//!
//! A logged batch is first written to the batchlog of two other nodes of the local data
//! centre, chosen among those the coordinator's failure detector believes alive, and only then
//! applied. For the seconds after a node dies and before the detectors convict it (about 20 s
//! at Cassandra's default `phi_convict_threshold`, measured on `scripts/cql-cluster`), every
//! coordinator of a three-node data centre still picks the dead node, so every logged batch
//! times out although a quorum of every partition's replicas is up: Issue and Revoke would
//! fail for that whole window.
//!
//! Every batch here consists of upserts (and one row delete) whose values are fixed before
//! the first attempt, so applying a statement again, or after a batchlog replay, changes
//! nothing. So when a batch fails for a transient reason, its statements are written one by
//! one, in the order given, each at the session's consistency with the driver's retries;
//! callers list the feed row last, so no replica reads an event before the revocation it
//! announces. For [`HOLD`] after such a failure, batches go straight to the one-by-one path
//! instead of waiting for the batchlog again; then one batch probes whether it works.
//!
//! What the one-by-one path gives up is atomicity against a crash of sessiond itself between
//! two of its writes (a batch never loses its tail): a session row without its listing row
//! (a session whose tokens were never handed out), or a revocation without its feed row
//! (other replicas then learn of it only when their cached entry expires or is reloaded).
//! Both need the store degraded and this process dying at that instant.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::Batch;
use scylla::statement::prepared::PreparedStatement;

use super::{ScyllaStore, errors};
use crate::store::StoreError;

/// How long after a failed batch statements are written one by one without trying a batch.
const HOLD: Duration = Duration::from_secs(5);

/// When logged batches last failed for a transient reason (shared by every write).
#[derive(Debug)]
pub(super) struct BatchHealth {
    /// Milliseconds after `origin` until which batches are skipped; 0 when they are not.
    skip_until_ms: AtomicU64,
    origin: Instant,
}

impl BatchHealth {
    pub(super) fn new() -> Self {
        Self {
            skip_until_ms: AtomicU64::new(0),
            origin: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn skipping(&self) -> bool {
        self.now_ms() < self.skip_until_ms.load(Ordering::Relaxed)
    }

    fn failed(&self) {
        let until = self
            .now_ms()
            .saturating_add(u64::try_from(HOLD.as_millis()).unwrap_or(u64::MAX));
        self.skip_until_ms.fetch_max(until, Ordering::Relaxed);
    }
}

impl ScyllaStore {
    /// Writes `a` then `b` atomically as `batch` (whose statements are `parts`, same order),
    /// or one by one when the batchlog is unavailable; see the module documentation.
    pub(super) async fn logged2<A, B>(
        &self,
        what: &str,
        batch: &Batch,
        parts: [&PreparedStatement; 2],
        a: A,
        b: B,
    ) -> Result<(), StoreError>
    where
        A: SerializeRow + Send + Sync,
        B: SerializeRow + Send + Sync,
    {
        if !self.batch_health.skipping() {
            match self.session.batch(batch, (&a, &b)).await {
                Ok(_) => return Ok(()),
                Err(e) => self.batch_failed(what, e)?,
            }
        }
        let [pa, pb] = parts;
        self.write(what, pa, &a).await?;
        self.write(what, pb, &b).await
    }

    /// [`logged2`](Self::logged2) for three statements.
    pub(super) async fn logged3<A, B, C>(
        &self,
        what: &str,
        batch: &Batch,
        parts: [&PreparedStatement; 3],
        a: A,
        b: B,
        c: C,
    ) -> Result<(), StoreError>
    where
        A: SerializeRow + Send + Sync,
        B: SerializeRow + Send + Sync,
        C: SerializeRow + Send + Sync,
    {
        if !self.batch_health.skipping() {
            match self.session.batch(batch, (&a, &b, &c)).await {
                Ok(_) => return Ok(()),
                Err(e) => self.batch_failed(what, e)?,
            }
        }
        let [pa, pb, pc] = parts;
        self.write(what, pa, &a).await?;
        self.write(what, pb, &b).await?;
        self.write(what, pc, &c).await
    }

    /// A failed batch: a transient failure turns on the one-by-one path (`Ok`), anything else
    /// is the caller's error.
    fn batch_failed(
        &self,
        what: &str,
        e: scylla::errors::ExecutionError,
    ) -> Result<(), StoreError> {
        match errors::execution(what, e) {
            StoreError::Unavailable(message) => {
                tracing::warn!(what, error = %message, hold = ?HOLD, "logged batch failed; writing its statements one by one");
                self.batch_health.failed();
                Ok(())
            }
            other => Err(other),
        }
    }
}
