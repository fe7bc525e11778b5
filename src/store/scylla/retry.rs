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

use scylla::errors::{DbError, RequestAttemptError};
use scylla::policies::retry::{RequestInfo, RetryDecision, RetryPolicy, RetrySession};

/// Retries per request: enough to step past one node that is going away and one that has not
/// finished coming back.
const MAX_RETRIES: u32 = 2;

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
