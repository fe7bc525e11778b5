//! Retries for the statements the driver's default policy never retries: the compare-and-sets
//! (not idempotent) and the reads at serial consistency (the default policy retries nothing at
//! a serial consistency).
//!
//! A coordinator can refuse a request before it starts it: `Overloaded` (Cassandra's answer
//! while it shuts down, "Server is shutting down"), `IsBootstrapping`, and `Unavailable` (the
//! coordinator counts live replicas before contacting any). Nothing was written then, so even
//! a compare-and-set may go to the next node, and a rolling restart does not fail the LWTs
//! that reach the node being stopped. A serial read is also retried on the next node after a
//! broken connection, since reading again is harmless. Anything else is not retried here: a
//! compare-and-set whose outcome is unknown is settled by the caller with a serial read.
//!
//! That serial read is itself a Paxos round, so it times out while the race it is to settle
//! still holds the session's ballots (64 refreshes of one token at once, say): it is tried
//! again here after a short random pause ([`ScyllaStore::read_session_serial`]), rather than
//! answer `UNAVAILABLE` to a racer whose outcome one more read would have told.

use std::time::Duration;

use scylla::errors::{DbError, RequestAttemptError};
use scylla::policies::retry::{RequestInfo, RetryDecision, RetryPolicy, RetrySession};

use super::{CasPoint, ScyllaStore, SessionRow, Statements, errors};
use crate::model::ids::SessionId;
use crate::model::records::SessionRecord;
use crate::store::StoreError;

/// Retries per request: enough to step past one node that is going away and one that has not
/// finished coming back.
const MAX_RETRIES: u32 = 2;

/// Serial reads of a session per settling: the first and two more.
const SERIAL_READS: u32 = 3;
/// The longest pause before a serial read is tried again; a random share of it spreads the
/// racers' reads apart.
const SERIAL_BACKOFF_MS: u64 = 64;

/// See the module documentation.
#[derive(Debug, Default)]
pub(super) struct RefusedRetryPolicy;

impl RetryPolicy for RefusedRetryPolicy {
    fn new_session(&self) -> Box<dyn RetrySession> {
        Box::new(RefusedRetrySession { retries: 0 })
    }
}

struct RefusedRetrySession {
    retries: u32,
}

impl RetrySession for RefusedRetrySession {
    fn decide_should_retry(&mut self, info: RequestInfo) -> RetryDecision {
        if self.retries >= MAX_RETRIES {
            return RetryDecision::DontRetry;
        }
        let retry = match info.error {
            RequestAttemptError::DbError(
                DbError::Overloaded | DbError::IsBootstrapping | DbError::Unavailable { .. },
                _,
            ) => true,
            RequestAttemptError::BrokenConnectionError(_) => info.is_idempotent,
            _ => false,
        };
        if retry {
            self.retries += 1;
            RetryDecision::RetryNextTarget(None)
        } else {
            RetryDecision::DontRetry
        }
    }

    fn reset(&mut self) {
        self.retries = 0;
    }
}

impl ScyllaStore {
    /// The session as a read at serial consistency sees it, read again (up to
    /// [`SERIAL_READS`] times, after a random pause of at most [`SERIAL_BACKOFF_MS`]) while such
    /// reads time out; see the module documentation. Any other failure, or the last timeout,
    /// is the caller's error.
    pub(super) async fn read_session_serial(
        &self,
        st: &Statements,
        id: SessionId,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let what = "reading session at serial consistency";
        let mut attempt = 1;
        let result = loop {
            match self
                .execute_at(
                    CasPoint::SerialRead,
                    &st.select_session_serial,
                    (id.as_uuid(),),
                )
                .await
            {
                Err(e) if attempt < SERIAL_READS && errors::serial_read_timed_out(&e) => {
                    tracing::debug!(%id, attempt, error = %e, "serial read timed out; reading again");
                    attempt += 1;
                    let pause =
                        rand::Rng::gen_range(&mut rand::thread_rng(), 0..=SERIAL_BACKOFF_MS);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                Err(e) => return Err(errors::execution(what, e)),
                Ok(result) => break result,
            }
        };
        let row: Option<SessionRow> = result
            .into_rows_result()
            .map_err(|e| errors::decode(what, e))?
            .maybe_first_row()
            .map_err(|e| errors::decode(what, e))?;
        match row {
            Some(row) => row.into_record(self.clock.now()),
            None => Ok(None),
        }
    }
}
