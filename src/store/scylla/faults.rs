//! Test hooks for the unhappy outcomes of the compare-and-sets and their read-backs.
//!
//! A compare-and-set whose reply is lost, or a serial read that times out while a node
//! restarts, happens on a real cluster only under load and by chance; a test that hopes for one
//! rarely gets it. [`CasFaults`] let a store-level test decide, call by call, that a statement
//! at one of these points runs and loses its reply, times out unrun, or is refused, so each
//! settling path runs every time. A store without faults (the only one `connect` builds) pays
//! one branch per compare-and-set.

use std::sync::Arc;

use scylla::errors::ExecutionError;
use scylla::response::query_result::QueryResult;
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;

use super::ScyllaStore;

/// A statement whose outcome a test may fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CasPoint {
    /// The compare-and-set of a user's session slots (`Issue` under the per-user cap).
    SlotWrite,
    /// The compare-and-set of a refresh rotation.
    RefreshWrite,
    /// A read of a session at serial consistency (how a rotation's unknown outcome is
    /// settled).
    SerialRead,
}

/// What a faulted statement does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CasFault {
    /// It runs, and its reply is lost: the client times out.
    ReplyLost,
    /// It does not run, and the client times out.
    TimedOut,
    /// No node takes it (nothing runs), a transient refusal.
    Refused,
}

/// Decides, for each statement at a [`CasPoint`], whether and how it fails.
pub type CasFaults = Arc<dyn Fn(CasPoint) -> Option<CasFault> + Send + Sync>;

impl ScyllaStore {
    /// Installs `faults` (tests only; see the module documentation).
    pub fn inject_cas_faults(&mut self, faults: CasFaults) {
        self.cas_faults = Some(faults);
    }

    /// Runs `ps` at `point`, unless a test's fault says otherwise.
    pub(super) async fn execute_at(
        &self,
        point: CasPoint,
        ps: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<QueryResult, ExecutionError> {
        let fault = self.cas_faults.as_ref().and_then(|decide| decide(point));
        match fault {
            None => self.session.execute_unpaged(ps, values).await,
            Some(CasFault::ReplyLost) => {
                self.session.execute_unpaged(ps, values).await?;
                Err(ExecutionError::RequestTimeout(self.config.request_timeout))
            }
            Some(CasFault::TimedOut) => {
                Err(ExecutionError::RequestTimeout(self.config.request_timeout))
            }
            Some(CasFault::Refused) => Err(ExecutionError::EmptyPlan),
        }
    }
}
