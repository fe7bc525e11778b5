//! A `Store` decorator that measures every operation of the store it wraps: latency
//! (`sessiond_store_operation_duration_seconds{op}`), failures (`sessiond_store_errors_total{op}`)
//! and a trace span per operation (`store.<op>`, target `sessiond::store`).
//!
//! It only observes: every call is passed through unchanged, results and errors included, so
//! any backend keeps its exact semantics behind it. The error counters are registered when the
//! decorator is built (a scrape shows 0, not nothing, for an operation that never failed); a
//! latency histogram on an operation's first use, so that operations a backend never runs add
//! no empty histograms to the scrape. After that an operation costs two clock reads and an
//! atomic update or two.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use async_trait::async_trait;
use metrics::{Counter, Histogram};
use tracing::Instrument;

use super::{
    AuditRecord, FeedBatch, Page, Revocation, Rotation, RotationStep, SessionFilter, SessionRecord,
    Store, StoreError, UserNotBefore,
};
use crate::hooks::{Fault, Hooks};
use crate::model::ids::{SessionId, TenantId, UserId};
use crate::model::time::Timestamp;
use crate::telemetry::prometheus::{STORE_DURATION, STORE_ERRORS};

/// Every operation of the `Store` trait, as named in metrics and spans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // each is the `Store` method of the same name
pub enum Op {
    CreateSession,
    GetSession,
    ListUserSessions,
    RotateRefresh,
    RevokeSession,
    RevokeSessions,
    SetUserNotBefore,
    UserNotBefore,
    SetGlobalNotBefore,
    GlobalNotBefore,
    ListSessions,
    TouchSessions,
    AppendAudit,
    ListAudit,
    PollRevocations,
    Ping,
    Sweep,
    ApproxLiveSessions,
    CreateSessionCapped,
    SessionAndMarks,
}

impl Op {
    const ALL: [Op; 20] = [
        Op::CreateSession,
        Op::GetSession,
        Op::ListUserSessions,
        Op::RotateRefresh,
        Op::RevokeSession,
        Op::RevokeSessions,
        Op::SetUserNotBefore,
        Op::UserNotBefore,
        Op::SetGlobalNotBefore,
        Op::GlobalNotBefore,
        Op::ListSessions,
        Op::TouchSessions,
        Op::AppendAudit,
        Op::ListAudit,
        Op::PollRevocations,
        Op::Ping,
        Op::Sweep,
        Op::ApproxLiveSessions,
        Op::CreateSessionCapped,
        Op::SessionAndMarks,
    ];

    /// The `op` label.
    fn label(self) -> &'static str {
        match self {
            Op::CreateSession => "create_session",
            Op::GetSession => "get_session",
            Op::ListUserSessions => "list_user_sessions",
            Op::RotateRefresh => "rotate_refresh",
            Op::RevokeSession => "revoke_session",
            Op::RevokeSessions => "revoke_sessions",
            Op::SetUserNotBefore => "set_user_not_before",
            Op::UserNotBefore => "user_not_before",
            Op::SetGlobalNotBefore => "set_global_not_before",
            Op::GlobalNotBefore => "global_not_before",
            Op::ListSessions => "list_sessions",
            Op::TouchSessions => "touch_sessions",
            Op::AppendAudit => "append_audit",
            Op::ListAudit => "list_audit",
            Op::PollRevocations => "poll_revocations",
            Op::Ping => "ping",
            Op::Sweep => "sweep",
            Op::ApproxLiveSessions => "approx_live_sessions",
            Op::CreateSessionCapped => "create_session_capped",
            Op::SessionAndMarks => "session_and_marks",
        }
    }

    /// The span name: static, so naming a span allocates nothing.
    fn span_name(self) -> &'static str {
        match self {
            Op::CreateSession => "store.create_session",
            Op::GetSession => "store.get_session",
            Op::ListUserSessions => "store.list_user_sessions",
            Op::RotateRefresh => "store.rotate_refresh",
            Op::RevokeSession => "store.revoke_session",
            Op::RevokeSessions => "store.revoke_sessions",
            Op::SetUserNotBefore => "store.set_user_not_before",
            Op::UserNotBefore => "store.user_not_before",
            Op::SetGlobalNotBefore => "store.set_global_not_before",
            Op::GlobalNotBefore => "store.global_not_before",
            Op::ListSessions => "store.list_sessions",
            Op::TouchSessions => "store.touch_sessions",
            Op::AppendAudit => "store.append_audit",
            Op::ListAudit => "store.list_audit",
            Op::PollRevocations => "store.poll_revocations",
            Op::Ping => "store.ping",
            Op::Sweep => "store.sweep",
            Op::ApproxLiveSessions => "store.approx_live_sessions",
            Op::CreateSessionCapped => "store.create_session_capped",
            Op::SessionAndMarks => "store.session_and_marks",
        }
    }
}

/// The handles of one operation.
struct OpMeters {
    duration: OnceLock<Histogram>,
    errors: Counter,
}

/// Wraps a store and measures it; see the module documentation.
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    /// Failures a test injects; none in production.
    hooks: Hooks,
    /// Indexed by `Op as usize`, in the order of `Op::ALL`.
    meters: Vec<OpMeters>,
}

impl MeteredStore {
    /// Measures `inner`. The handles go to the metrics recorder installed at this point, so
    /// build the decorator after `telemetry::prometheus::install`.
    pub fn new(inner: Arc<dyn Store>, hooks: Hooks) -> Self {
        let meters = Op::ALL
            .iter()
            .map(|op| OpMeters {
                duration: OnceLock::new(),
                errors: metrics::counter!(STORE_ERRORS, "op" => op.label()),
            })
            .collect();
        Self {
            inner,
            hooks,
            meters,
        }
    }

    async fn observe<T>(
        &self,
        op: Op,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let span = tracing::debug_span!(
            target: "sessiond::store",
            "store",
            otel.name = op.span_name(),
            db.operation.name = op.label(),
            otel.status_code = tracing::field::Empty,
        );
        let fault = self.hooks.fault(op);
        if fault == Some(Fault::FailBefore) {
            return Err(injected(op));
        }
        // Latency is real time, on the monotonic clock, whatever clock the service decides
        // by: the decorator reads no session instant at all, and passes every one through.
        let started = Instant::now();
        let mut result = call.instrument(span.clone()).await;
        if fault == Some(Fault::FailAfter) {
            result = Err(injected(op));
        }
        if let Some(meters) = self.meters.get(op as usize) {
            meters
                .duration
                .get_or_init(|| metrics::histogram!(STORE_DURATION, "op" => op.label()))
                .record(started.elapsed().as_secs_f64());
            if result.is_err() {
                meters.errors.increment(1);
            }
        }
        if result.is_err() {
            span.record("otel.status_code", "ERROR");
        }
        result
    }
}

fn injected(op: Op) -> StoreError {
    StoreError::Unavailable(format!("injected failure of {}", op.label()))
}

#[async_trait]
impl Store for MeteredStore {
    async fn create_session(&self, record: &SessionRecord) -> Result<(), StoreError> {
        self.observe(Op::CreateSession, self.inner.create_session(record))
            .await
    }

    async fn create_session_capped(
        &self,
        record: &SessionRecord,
        cap: usize,
        reason: &str,
        audits: &[AuditRecord],
    ) -> Result<Vec<SessionId>, StoreError> {
        self.observe(
            Op::CreateSessionCapped,
            self.inner
                .create_session_capped(record, cap, reason, audits),
        )
        .await
    }

    async fn create_session_capped_with_marks(
        &self,
        record: &SessionRecord,
        cap: usize,
        reason: &str,
        audits: &[AuditRecord],
    ) -> Result<(Vec<SessionId>, Option<UserNotBefore>), StoreError> {
        // The same write as `create_session_capped`, measured and failed under its name: the
        // marks ride along with it.
        self.observe(
            Op::CreateSessionCapped,
            self.inner
                .create_session_capped_with_marks(record, cap, reason, audits),
        )
        .await
    }

    async fn get_session(&self, id: SessionId) -> Result<Option<SessionRecord>, StoreError> {
        self.observe(Op::GetSession, self.inner.get_session(id))
            .await
    }

    async fn list_user_sessions(
        &self,
        user: &UserId,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        self.observe(
            Op::ListUserSessions,
            self.inner.list_user_sessions(user, tenant),
        )
        .await
    }

    async fn rotate_refresh(
        &self,
        id: SessionId,
        step: &RotationStep,
        audits: &[AuditRecord],
    ) -> Result<Rotation, StoreError> {
        self.observe(
            Op::RotateRefresh,
            self.inner.rotate_refresh(id, step, audits),
        )
        .await
    }

    async fn revoke_session(
        &self,
        id: SessionId,
        at: Timestamp,
        reason: &str,
    ) -> Result<Revocation, StoreError> {
        self.observe(Op::RevokeSession, self.inner.revoke_session(id, at, reason))
            .await
    }

    async fn revoke_sessions(
        &self,
        ids: &[SessionId],
        at: Timestamp,
        reason: &str,
    ) -> Result<Vec<SessionId>, StoreError> {
        self.observe(
            Op::RevokeSessions,
            self.inner.revoke_sessions(ids, at, reason),
        )
        .await
    }

    async fn set_user_not_before(
        &self,
        user: &UserId,
        tenant: &TenantId,
        at: Timestamp,
        keep_until: Timestamp,
    ) -> Result<(), StoreError> {
        self.observe(
            Op::SetUserNotBefore,
            self.inner.set_user_not_before(user, tenant, at, keep_until),
        )
        .await
    }

    async fn user_not_before(&self, user: &UserId) -> Result<UserNotBefore, StoreError> {
        self.observe(Op::UserNotBefore, self.inner.user_not_before(user))
            .await
    }

    async fn session_and_marks(
        &self,
        id: SessionId,
        user: &UserId,
    ) -> Result<(Option<SessionRecord>, UserNotBefore), StoreError> {
        self.observe(Op::SessionAndMarks, self.inner.session_and_marks(id, user))
            .await
    }

    async fn set_global_not_before(&self, at: Timestamp) -> Result<Timestamp, StoreError> {
        self.observe(Op::SetGlobalNotBefore, self.inner.set_global_not_before(at))
            .await
    }

    async fn global_not_before(&self) -> Result<Option<Timestamp>, StoreError> {
        self.observe(Op::GlobalNotBefore, self.inner.global_not_before())
            .await
    }

    async fn list_sessions(
        &self,
        filter: &SessionFilter,
        cursor: Option<&[u8]>,
        limit: usize,
    ) -> Result<Page<SessionRecord>, StoreError> {
        self.observe(
            Op::ListSessions,
            self.inner.list_sessions(filter, cursor, limit),
        )
        .await
    }

    async fn touch_sessions(&self, seen: &[(SessionId, Timestamp)]) -> Result<(), StoreError> {
        self.observe(Op::TouchSessions, self.inner.touch_sessions(seen))
            .await
    }

    async fn append_audit(&self, events: &[AuditRecord]) -> Result<(), StoreError> {
        self.observe(Op::AppendAudit, self.inner.append_audit(events))
            .await
    }

    async fn list_audit(
        &self,
        user: Option<&UserId>,
        cursor: Option<&[u8]>,
        limit: usize,
    ) -> Result<Page<AuditRecord>, StoreError> {
        self.observe(Op::ListAudit, self.inner.list_audit(user, cursor, limit))
            .await
    }

    async fn poll_revocations(&self, cursor: Option<&[u8]>) -> Result<FeedBatch, StoreError> {
        self.observe(Op::PollRevocations, self.inner.poll_revocations(cursor))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.observe(Op::Ping, self.inner.ping()).await
    }

    async fn sweep(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.observe(Op::Sweep, self.inner.sweep(now)).await
    }

    async fn approx_live_sessions(&self) -> Result<Option<u64>, StoreError> {
        self.observe(Op::ApproxLiveSessions, self.inner.approx_live_sessions())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_are_listed_in_discriminant_order() {
        for (i, op) in Op::ALL.iter().enumerate() {
            assert_eq!(*op as usize, i, "{op:?}");
            assert_eq!(op.span_name(), format!("store.{}", op.label()));
        }
    }
}
