//! Driver errors in store terms: what a caller may retry later (`Unavailable`) versus what
//! will not go away by itself (`Backend`). The driver's message is kept for the logs.

use scylla::errors::{
    DbError, ExecutionError, NewSessionError, NextPageError, NextRowError, PagerExecutionError,
    PrepareError, RequestAttemptError, SchemaAgreementError, WriteType,
};

use super::StoreError;

/// Cassandra's CAS_WRITE_UNKNOWN (protocol v5): the compare-and-set may or may not have landed.
const CAS_WRITE_UNKNOWN: i32 = 0x1700;

/// Maps a failed statement.
pub(super) fn execution(what: &str, e: ExecutionError) -> StoreError {
    let message = format!("{what}: {e}");
    if execution_is_transient(&e) {
        StoreError::Unavailable(message)
    } else {
        StoreError::Backend(message)
    }
}

/// Maps a failed prepare.
pub(super) fn prepare(what: &str, e: PrepareError) -> StoreError {
    let transient = match &e {
        PrepareError::ConnectionPoolError(_) => true,
        PrepareError::AllAttemptsFailed { first_attempt } => attempt_is_transient(first_attempt),
        _ => false,
    };
    let message = format!("preparing {what}: {e}");
    if transient {
        StoreError::Unavailable(message)
    } else {
        StoreError::Backend(message)
    }
}

/// Maps a failed paged read.
pub(super) fn pager(what: &str, e: PagerExecutionError) -> StoreError {
    let transient = match &e {
        PagerExecutionError::NextPageError(p) => next_page_is_transient(p),
        PagerExecutionError::PrepareError(p) => {
            matches!(prepare(what, p.clone()), StoreError::Unavailable(_))
        }
        _ => false,
    };
    let message = format!("{what}: {e}");
    if transient {
        StoreError::Unavailable(message)
    } else {
        StoreError::Backend(message)
    }
}

/// Maps a failure while streaming rows: a page that could not be fetched is transient, a row
/// that does not decode is not.
pub(super) fn next_row(what: &str, e: NextRowError) -> StoreError {
    match &e {
        NextRowError::NextPageError(p) if next_page_is_transient(p) => {
            StoreError::Unavailable(format!("{what}: {e}"))
        }
        _ => StoreError::Backend(format!("{what}: {e}")),
    }
}

/// Maps a failed connection attempt.
pub(super) fn new_session(e: NewSessionError) -> StoreError {
    match e {
        NewSessionError::EmptyKnownNodesList | NewSessionError::IllegalConfig(_) => {
            StoreError::Backend(format!("connecting: {e}"))
        }
        _ => StoreError::Unavailable(format!("connecting: {e}")),
    }
}

/// Maps a schema agreement failure.
pub(super) fn schema_agreement(e: SchemaAgreementError) -> StoreError {
    StoreError::Unavailable(format!("awaiting schema agreement: {e}"))
}

/// Maps a result that could not be decoded.
pub(super) fn decode(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("{what}: decoding result: {e}"))
}

/// True when a compare-and-set failed without saying whether it was applied: a server-side
/// write timeout in the Paxos phase, CAS_WRITE_UNKNOWN, or the client giving up waiting. The
/// outcome must then be read back at serial consistency, never guessed and never retried
/// blindly.
pub(super) fn cas_outcome_unknown(e: &ExecutionError) -> bool {
    match e {
        ExecutionError::RequestTimeout(_) => true,
        ExecutionError::LastAttemptError(attempt) => match attempt {
            RequestAttemptError::DbError(DbError::WriteTimeout { write_type, .. }, _) => {
                matches!(write_type, WriteType::Cas | WriteType::Simple)
            }
            RequestAttemptError::DbError(DbError::Other(code), _) => *code == CAS_WRITE_UNKNOWN,
            // The request may have reached the coordinator before the connection broke.
            RequestAttemptError::BrokenConnectionError(_) => true,
            _ => false,
        },
        _ => false,
    }
}

/// True when a read at serial consistency timed out. A serial read runs a Paxos round of its
/// own, so while racing compare-and-sets hold the partition's ballots it times out as they do
/// (Cassandra reports a CAS write timeout); it writes nothing of its own, so reading again
/// later is harmless.
pub(super) fn serial_read_timed_out(e: &ExecutionError) -> bool {
    matches!(
        e,
        ExecutionError::RequestTimeout(_)
            | ExecutionError::LastAttemptError(RequestAttemptError::DbError(
                DbError::WriteTimeout { .. } | DbError::ReadTimeout { .. },
                _
            ))
    )
}

/// True when a server rejected a statement because of its paging state: the cursor is not one
/// of this listing (or this server version), so the caller gets `BadCursor`.
pub(super) fn rejects_paging_state(e: &ExecutionError) -> bool {
    matches!(
        e,
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::ProtocolError | DbError::Invalid,
            _
        ))
    )
}

/// True when an `ALTER TABLE … ADD` was refused because a column it adds exists: Cassandra
/// says "… already exists", ScyllaDB "… conflicts with an existing column".
pub(super) fn column_exists(e: &ExecutionError) -> bool {
    match e {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(DbError::Invalid, msg)) => {
            let msg = msg.to_ascii_lowercase();
            msg.contains("already exist") || msg.contains("existing column")
        }
        _ => false,
    }
}

/// True when a query failed because its table or keyspace is unknown to the coordinator.
pub(super) fn table_missing(e: &ExecutionError) -> bool {
    match e {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(DbError::Invalid, msg)) => {
            msg.to_ascii_lowercase().contains("does not exist")
        }
        _ => false,
    }
}

/// True when a statement failed because the keyspace or a table does not exist (yet).
pub(super) fn schema_missing(e: &PrepareError) -> bool {
    match e {
        PrepareError::AllAttemptsFailed { first_attempt } => matches!(
            first_attempt,
            RequestAttemptError::DbError(DbError::Invalid | DbError::SyntaxError, _)
        ),
        _ => false,
    }
}

fn next_page_is_transient(e: &NextPageError) -> bool {
    match e {
        NextPageError::RequestFailure(r) => {
            execution_is_transient(&r.clone().into_execution_error())
        }
        _ => false,
    }
}

fn execution_is_transient(e: &ExecutionError) -> bool {
    match e {
        ExecutionError::EmptyPlan
        | ExecutionError::ConnectionPoolError(_)
        | ExecutionError::RequestTimeout(_)
        | ExecutionError::SchemaAgreementError(_)
        | ExecutionError::MetadataError(_) => true,
        ExecutionError::PrepareError(p) => {
            matches!(prepare("", p.clone()), StoreError::Unavailable(_))
        }
        ExecutionError::LastAttemptError(attempt) => attempt_is_transient(attempt),
        _ => false,
    }
}

fn attempt_is_transient(e: &RequestAttemptError) -> bool {
    match e {
        RequestAttemptError::UnableToAllocStreamId
        | RequestAttemptError::BrokenConnectionError(_) => true,
        RequestAttemptError::DbError(db, _) => matches!(
            db,
            DbError::Unavailable { .. }
                | DbError::Overloaded
                | DbError::IsBootstrapping
                | DbError::ReadTimeout { .. }
                | DbError::WriteTimeout { .. }
                | DbError::ReadFailure { .. }
                | DbError::WriteFailure { .. }
                | DbError::RateLimitReached { .. }
                | DbError::TruncateError
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use scylla::frame::types::Consistency;

    use super::*;

    fn db(e: DbError) -> ExecutionError {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(e, "msg".into()))
    }

    #[test]
    fn timeouts_and_overload_are_unavailable_the_rest_backend() {
        let unavailable = [
            ExecutionError::RequestTimeout(Duration::from_secs(2)),
            ExecutionError::EmptyPlan,
            db(DbError::Overloaded),
            db(DbError::Unavailable {
                consistency: Consistency::LocalQuorum,
                required: 2,
                alive: 1,
            }),
            db(DbError::ReadTimeout {
                consistency: Consistency::LocalQuorum,
                received: 1,
                required: 2,
                data_present: false,
            }),
        ];
        for e in unavailable {
            assert!(matches!(execution("x", e), StoreError::Unavailable(_)));
        }
        for e in [
            db(DbError::SyntaxError),
            db(DbError::Invalid),
            db(DbError::Unauthorized),
        ] {
            assert!(matches!(execution("x", e), StoreError::Backend(_)));
        }
    }

    #[test]
    fn cas_outcome_is_unknown_only_after_timeouts() {
        let cas_timeout = db(DbError::WriteTimeout {
            consistency: Consistency::LocalSerial,
            received: 0,
            required: 1,
            write_type: WriteType::Cas,
        });
        assert!(cas_outcome_unknown(&cas_timeout));
        assert!(cas_outcome_unknown(&ExecutionError::RequestTimeout(
            Duration::from_secs(1)
        )));
        assert!(cas_outcome_unknown(&db(DbError::Other(CAS_WRITE_UNKNOWN))));
        assert!(!cas_outcome_unknown(&db(DbError::Unavailable {
            consistency: Consistency::LocalSerial,
            required: 2,
            alive: 1,
        })));
        assert!(!cas_outcome_unknown(&db(DbError::Invalid)));
    }

    #[test]
    fn only_an_unknown_table_counts_as_missing() {
        let missing = ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::Invalid,
            "table schema_migrations does not exist".into(),
        ));
        assert!(table_missing(&missing));
        assert!(!table_missing(&db(DbError::Invalid)));
        assert!(!table_missing(&ExecutionError::RequestTimeout(
            Duration::from_secs(1)
        )));
    }
}
