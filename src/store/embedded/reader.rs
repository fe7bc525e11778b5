//! Point reads off the runtime, batched: a few threads own the embedded store's small reads.
//!
//! A read through tokio's blocking pool costs two thread hand-offs (the pool's mutex and
//! condition variable on the way in, the task's wake-up on the way back), and on a first-sight
//! `Validate` those context switches cost more CPU than the reads themselves. Here a caller
//! queues its closure on a channel; a reader thread takes every closure waiting, opens one read
//! transaction for all of them and answers each. Under load one wake-up serves a whole batch.
//!
//! A batch's transaction is begun only after its closures were taken off the queue, so each
//! closure sees every commit that completed before it was queued: sharing a snapshot never
//! makes a read older than its caller.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use redb::{Database, ReadTransaction, ReadableDatabase};
use tokio::sync::oneshot;

use crate::store::StoreError;

/// Reader threads. More than one, so that a read waiting on the disk does not hold up every
/// other; few, so that a burst of reads lands in batches rather than waking a thread each
/// (first-sight `Validate` at concurrency 16 measured best with two, against one and four).
const READERS: usize = 2;

/// Most closures answered from one transaction; bounds how long the first one waits.
const MAX_BATCH: usize = 64;

type Job = Box<dyn FnOnce(Result<&ReadTransaction, StoreError>) + Send>;

/// The handle through which point reads reach the reader threads. Dropping it closes the queue
/// and joins the threads, which release their handles to the database.
pub struct Readers {
    jobs: Option<flume::Sender<Job>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Readers {
    /// Starts the reader threads; they end when the `Readers` is dropped.
    pub fn start(db: Arc<Database>) -> Result<Self, StoreError> {
        let (jobs, queue) = flume::unbounded::<Job>();
        let threads = (0..READERS)
            .map(|n| {
                let db = db.clone();
                let queue = queue.clone();
                std::thread::Builder::new()
                    .name(format!("sessiond-store-reader-{n}"))
                    .spawn(move || run(&db, &queue))
                    .map_err(|e| StoreError::Backend(format!("cannot start reader thread: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            jobs: Some(jobs),
            threads,
        })
    }

    /// Runs `read` on a reader thread inside a read transaction, and returns its result.
    pub async fn read<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&ReadTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T, StoreError>>();
        let job: Job = Box::new(move |txn| {
            // The caller may have given up (deadline); nothing to do then.
            let _ = tx.send(txn.and_then(read));
        });
        let stopped = || StoreError::Unavailable("store reader has stopped".into());
        self.jobs
            .as_ref()
            .ok_or_else(stopped)?
            .send(job)
            .map_err(|_| stopped())?;
        // A closure that panicked dropped its sender without answering.
        rx.await
            .map_err(|_| StoreError::Backend("store read failed".into()))?
    }
}

impl Drop for Readers {
    /// Closes the queue and joins the threads, so the database file is released when the store
    /// is (see the writer's drop). Blocks for at most the reads in flight.
    fn drop(&mut self) {
        drop(self.jobs.take());
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::error!("embedded store reader thread panicked");
            }
        }
    }
}

fn run(db: &Database, queue: &flume::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = queue.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // Begun after the batch was taken: see the module's note on freshness.
        let txn = db
            .begin_read()
            .map_err(|e| StoreError::Backend(format!("cannot begin read: {e}")));
        for job in batch.drain(..) {
            let txn = txn.as_ref().map_err(Clone::clone);
            // One closure's panic (a damaged page) fails its caller only.
            if catch_unwind(AssertUnwindSafe(|| job(txn))).is_err() {
                tracing::error!("embedded store read panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::TableDefinition;

    const T: TableDefinition<u64, u64> = TableDefinition::new("t");

    fn database(dir: &tempfile::TempDir) -> Arc<Database> {
        let db = Database::create(dir.path().join("db.redb")).expect("create");
        let txn = db.begin_write().expect("write");
        txn.open_table(T)
            .expect("table")
            .insert(1, 10)
            .expect("insert");
        txn.commit().expect("commit");
        Arc::new(db)
    }

    fn value(txn: &ReadTransaction, key: u64) -> Result<Option<u64>, StoreError> {
        let table = txn
            .open_table(T)
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let got = table
            .get(key)
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(got.map(|v| v.value()))
    }

    #[tokio::test]
    async fn a_read_sees_every_commit_made_before_it_was_queued() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = database(&dir);
        let readers = Readers::start(db.clone()).expect("start");
        assert_eq!(
            readers.read(|txn| value(txn, 1)).await.expect("read"),
            Some(10)
        );
        let txn = db.begin_write().expect("write");
        txn.open_table(T)
            .expect("table")
            .insert(2, 20)
            .expect("insert");
        txn.commit().expect("commit");
        let reads = (0..100).map(|_| readers.read(|txn| value(txn, 2)));
        for got in futures::future::join_all(reads).await {
            assert_eq!(got.expect("read"), Some(20));
        }
    }

    #[tokio::test]
    async fn a_read_that_panics_fails_alone_and_the_readers_go_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let readers = Readers::start(database(&dir)).expect("start");
        // As many as there are threads: without the catch, none would be left.
        for _ in 0..READERS {
            let failed = readers
                .read(|_| -> Result<(), StoreError> { panic!("damaged page") })
                .await;
            assert!(matches!(failed, Err(StoreError::Backend(_))), "{failed:?}");
        }
        for _ in 0..READERS {
            assert_eq!(
                readers.read(|txn| value(txn, 1)).await.expect("read"),
                Some(10)
            );
        }
    }

    #[tokio::test]
    async fn dropping_the_readers_releases_the_database() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = database(&dir);
        let readers = Readers::start(db.clone()).expect("start");
        assert_eq!(
            readers.read(|txn| value(txn, 1)).await.expect("read"),
            Some(10)
        );
        drop(readers);
        // The reader threads held the only other handles; now this one is the last.
        assert!(Arc::into_inner(db).is_some());
    }
}
