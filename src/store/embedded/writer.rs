//! Group commit: one thread owns every write transaction of the embedded store.
//!
//! Callers queue closures; the thread takes all that are waiting, applies them in one
//! transaction and makes it durable with one fsync, then answers each caller. Under load many
//! concurrent writes share a commit instead of paying an fsync each. A closure that fails aborts
//! the whole group, so no caller's write is ever committed half-done.

use std::sync::Arc;
use std::sync::mpsc;

use redb::{Database, Durability, WriteTransaction};
use tokio::sync::oneshot;

use crate::store::StoreError;

/// Most closures applied in one transaction; bounds commit latency under a flood.
const MAX_GROUP: usize = 512;

type Deliver = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

struct Applied {
    failed: Option<StoreError>,
    deliver: Deliver,
}

type Job = Box<dyn FnOnce(&WriteTransaction) -> Applied + Send>;

/// The handle through which writes reach the writer thread. Dropping it closes the queue and
/// waits for the thread to finish, so once the store is gone its database file is released.
pub struct Writer {
    jobs: mpsc::Sender<Job>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer thread; it ends when the `Writer` is dropped.
    pub fn start(db: Arc<Database>) -> Result<Self, StoreError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("sessiond-store-writer".into())
            .spawn(move || run(&db, &queue))
            .map_err(|e| StoreError::Backend(format!("cannot start writer thread: {e}")))?;
        Ok(Self {
            jobs,
            thread: Some(thread),
        })
    }

    /// Runs `apply` inside a durable write transaction shared with other callers, and returns
    /// its result once the transaction has been committed to disk.
    pub async fn write<T, F>(&self, apply: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T, StoreError>>();
        let job: Job = Box::new(move |txn| {
            let outcome = apply(txn);
            let failed = outcome.as_ref().err().cloned();
            let deliver: Deliver = Box::new(move |commit| {
                // The caller may have given up (deadline); nothing to do then.
                let _ = tx.send(commit.and(outcome));
            });
            Applied { failed, deliver }
        });
        self.jobs
            .send(job)
            .map_err(|_| StoreError::Unavailable("store writer has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("store writer has stopped".into()))?
    }
}

impl Drop for Writer {
    /// Closes the queue and joins the thread. The thread may hold the last handle to the
    /// database, whose drop releases the file lock; without the join, a store reopened on the
    /// same directory right after (a restart in the same process) would find it still locked.
    /// Blocks for at most the last commit and the database's close.
    fn drop(&mut self) {
        // Replacing the only sender with one of a dead channel closes the thread's queue.
        drop(std::mem::replace(&mut self.jobs, mpsc::channel().0));
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("embedded store writer thread panicked");
        }
    }
}

fn run(db: &Database, queue: &mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        commit_group(db, group);
    }
}

fn commit_group(db: &Database, group: Vec<Job>) {
    let mut txn = match db.begin_write() {
        Ok(txn) => txn,
        Err(e) => {
            let err = StoreError::Backend(format!("cannot begin write: {e}"));
            tracing::error!(error = %err, "embedded store write failed");
            // Without a transaction no closure can run; they are dropped and their callers
            // see the writer as gone for this request.
            drop(group);
            return;
        }
    };
    if let Err(e) = txn.set_durability(Durability::Immediate) {
        tracing::error!(error = %e, "cannot set durability");
    }
    let applied: Vec<Applied> = group.into_iter().map(|job| job(&txn)).collect();
    let result = match applied.iter().find_map(|a| a.failed.clone()) {
        Some(err) => {
            if let Err(e) = txn.abort() {
                tracing::error!(error = %e, "abort failed");
            }
            Err(err)
        }
        None => txn
            .commit()
            .map_err(|e| StoreError::Backend(format!("commit failed: {e}"))),
    };
    if let Err(err) = &result {
        tracing::error!(error = %err, group = applied.len(), "embedded store group commit failed");
    }
    for a in applied {
        (a.deliver)(result.clone());
    }
}
