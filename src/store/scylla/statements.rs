//! Every data statement, prepared once and configured once: idempotence (which lets the driver
//! retry and speculate), the serial consistency of the one compare-and-set, and the two
//! logged batches.

use scylla::client::session::Session;
use scylla::frame::types::{Consistency, SerialConsistency};
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;

use super::StoreError;
use super::cql::Cql;
use super::errors;
use super::retry::RefusedRetryPolicy;

/// The prepared statements of one keyspace.
pub(super) struct Statements {
    pub select_session: PreparedStatement,
    /// `select_session` at LOCAL_SERIAL (or SERIAL): settles an uncertain compare-and-set.
    pub select_session_serial: PreparedStatement,
    pub select_user_sessions: PreparedStatement,
    pub select_user_tenant_sessions: PreparedStatement,
    pub scan_sessions: PreparedStatement,
    /// The only LWT; never idempotent, so never retried or speculated by the driver.
    pub rotate_refresh: PreparedStatement,
    pub mirror_refresh_by_user: PreparedStatement,
    pub touch_session: PreparedStatement,
    pub touch_session_by_user: PreparedStatement,
    pub select_user_not_before: PreparedStatement,
    pub select_global_not_before: PreparedStatement,
    pub insert_feed: PreparedStatement,
    /// At LOCAL_SERIAL (or SERIAL): what the slot compare-and-set compares against.
    pub select_slots: PreparedStatement,
    /// LWTs: never idempotent.
    pub insert_slots: PreparedStatement,
    pub update_slots: PreparedStatement,
    pub select_feed: PreparedStatement,
    pub insert_audit_by_user: PreparedStatement,
    pub insert_audit_by_day: PreparedStatement,
    pub select_audit_by_user: PreparedStatement,
    pub select_audit_by_day: PreparedStatement,
    pub select_schema_versions: PreparedStatement,
    /// The statements of the batches below, on their own (idempotent): written one by one
    /// when the batchlog is unavailable (`logged`).
    pub insert_session: PreparedStatement,
    pub insert_session_by_user: PreparedStatement,
    pub revoke_session: PreparedStatement,
    pub revoke_session_by_user: PreparedStatement,
    pub delete_session_by_user: PreparedStatement,
    pub upsert_user_not_before: PreparedStatement,
    pub upsert_global_not_before: PreparedStatement,
    /// Issue: `insert_session` and `insert_session_by_user`, logged.
    pub issue_batch: Batch,
    /// Revoke: `revoke_session`, `revoke_session_by_user` and `insert_feed`, logged, so no
    /// revocation reaches the store without reaching the feed.
    pub revoke_batch: Batch,
    /// `upsert_user_not_before` and `insert_feed`, logged.
    pub user_not_before_batch: Batch,
    /// Eviction by the per-user cap: `revoke_session`, `delete_session_by_user` and
    /// `insert_feed`, logged: the session is revoked and gone from its user's listing.
    pub evict_batch: Batch,
    /// `upsert_global_not_before` and `insert_feed`, logged.
    pub global_not_before_batch: Batch,
}

impl Statements {
    /// Prepares everything. Fails when the schema is missing or older than the statements.
    pub async fn prepare(
        session: &Session,
        cql: &Cql,
        serial: SerialConsistency,
    ) -> Result<Self, NotPrepared> {
        let p = Preparer { session };
        let select_session = p.idempotent("select_session", &cql.select_session).await?;
        let mut select_session_serial = select_session.clone();
        select_session_serial.set_consistency(match serial {
            SerialConsistency::Serial => Consistency::Serial,
            SerialConsistency::LocalSerial => Consistency::LocalSerial,
        });
        retry_refused(&mut select_session_serial);
        let mut rotate_refresh = p.plain("rotate_refresh", &cql.rotate_refresh).await?;
        rotate_refresh.set_is_idempotent(false);
        rotate_refresh.set_serial_consistency(Some(serial));
        retry_refused(&mut rotate_refresh);
        let insert_session = p.idempotent("insert_session", &cql.insert_session).await?;
        let insert_session_by_user = p
            .idempotent("insert_session_by_user", &cql.insert_session_by_user)
            .await?;
        let issue_batch = logged_batch([insert_session.clone(), insert_session_by_user.clone()]);
        let insert_feed = p.idempotent("insert_feed", &cql.insert_feed).await?;
        let mut select_slots = p.idempotent("select_slots", &cql.select_slots).await?;
        select_slots.set_consistency(match serial {
            SerialConsistency::Serial => Consistency::Serial,
            SerialConsistency::LocalSerial => Consistency::LocalSerial,
        });
        retry_refused(&mut select_slots);
        let mut insert_slots = p.plain("insert_slots", &cql.insert_slots).await?;
        insert_slots.set_is_idempotent(false);
        insert_slots.set_serial_consistency(Some(serial));
        retry_refused(&mut insert_slots);
        let mut update_slots = p.plain("update_slots", &cql.update_slots).await?;
        update_slots.set_is_idempotent(false);
        update_slots.set_serial_consistency(Some(serial));
        retry_refused(&mut update_slots);
        let revoke_session = p.idempotent("revoke_session", &cql.revoke_session).await?;
        let delete_session_by_user = p
            .idempotent("delete_session_by_user", &cql.delete_session_by_user)
            .await?;
        let revoke_session_by_user = p
            .idempotent("revoke_session_by_user", &cql.revoke_session_by_user)
            .await?;
        let evict_batch = logged_batch([
            revoke_session.clone(),
            delete_session_by_user.clone(),
            insert_feed.clone(),
        ]);
        let revoke_batch = logged_batch([
            revoke_session.clone(),
            revoke_session_by_user.clone(),
            insert_feed.clone(),
        ]);
        let upsert_user_not_before = p
            .idempotent("upsert_user_not_before", &cql.upsert_user_not_before)
            .await?;
        let upsert_global_not_before = p
            .idempotent("upsert_global_not_before", &cql.upsert_global_not_before)
            .await?;
        let user_not_before_batch =
            logged_batch([upsert_user_not_before.clone(), insert_feed.clone()]);
        let global_not_before_batch =
            logged_batch([upsert_global_not_before.clone(), insert_feed.clone()]);
        Ok(Self {
            select_session,
            select_session_serial,
            select_user_sessions: p
                .idempotent("select_user_sessions", &cql.select_user_sessions)
                .await?,
            select_user_tenant_sessions: p
                .idempotent(
                    "select_user_tenant_sessions",
                    &cql.select_user_tenant_sessions,
                )
                .await?,
            scan_sessions: p.idempotent("scan_sessions", &cql.scan_sessions).await?,
            rotate_refresh,
            mirror_refresh_by_user: p
                .idempotent("mirror_refresh_by_user", &cql.mirror_refresh_by_user)
                .await?,
            touch_session: p.idempotent("touch_session", &cql.touch_session).await?,
            touch_session_by_user: p
                .idempotent("touch_session_by_user", &cql.touch_session_by_user)
                .await?,
            select_user_not_before: p
                .idempotent("select_user_not_before", &cql.select_user_not_before)
                .await?,
            select_global_not_before: p
                .idempotent("select_global_not_before", &cql.select_global_not_before)
                .await?,
            insert_feed,
            select_slots,
            insert_slots,
            update_slots,
            select_feed: p.idempotent("select_feed", &cql.select_feed).await?,
            insert_audit_by_user: p
                .idempotent("insert_audit_by_user", &cql.insert_audit_by_user)
                .await?,
            insert_audit_by_day: p
                .idempotent("insert_audit_by_day", &cql.insert_audit_by_day)
                .await?,
            select_audit_by_user: p
                .idempotent("select_audit_by_user", &cql.select_audit_by_user)
                .await?,
            select_audit_by_day: p
                .idempotent("select_audit_by_day", &cql.select_audit_by_day)
                .await?,
            select_schema_versions: p
                .idempotent("select_schema_versions", &cql.select_schema_versions)
                .await?,
            insert_session,
            insert_session_by_user,
            revoke_session,
            revoke_session_by_user,
            delete_session_by_user,
            upsert_user_not_before,
            upsert_global_not_before,
            issue_batch,
            revoke_batch,
            user_not_before_batch,
            evict_batch,
            global_not_before_batch,
        })
    }
}

/// Why the statements could not be prepared.
pub(super) enum NotPrepared {
    /// The keyspace or a table or column is missing: the schema needs `migrate`.
    SchemaMissing(StoreError),
    /// Anything else (unreachable cluster, ...).
    Failed(StoreError),
}

/// Every batch writes the same values on every attempt (fresh ids, fixed instants, a feed
/// row's timeuuid chosen before the first), so replaying one is harmless and the driver may
/// retry it.
fn logged_batch<const N: usize>(statements: [PreparedStatement; N]) -> Batch {
    let mut batch = Batch::new(BatchType::Logged);
    for s in statements {
        batch.append_statement(s);
    }
    batch.set_is_idempotent(true);
    batch
}

/// The LWTs and serial reads, which the default policy never retries, retry what a
/// coordinator refused before starting it (see `retry`).
fn retry_refused(ps: &mut PreparedStatement) {
    ps.set_retry_policy(Some(std::sync::Arc::new(RefusedRetryPolicy)));
}

struct Preparer<'a> {
    session: &'a Session,
}

impl Preparer<'_> {
    /// Prepares a statement the driver may retry and speculate: a read, or an upsert whose
    /// values are fixed before the first attempt.
    async fn idempotent(&self, what: &str, cql: &str) -> Result<PreparedStatement, NotPrepared> {
        let mut ps = self.plain(what, cql).await?;
        ps.set_is_idempotent(true);
        Ok(ps)
    }

    /// Prepares a statement; the error says whether the schema is missing.
    async fn plain(&self, what: &str, cql: &str) -> Result<PreparedStatement, NotPrepared> {
        self.session.prepare(cql).await.map_err(|e| {
            if errors::schema_missing(&e) {
                NotPrepared::SchemaMissing(errors::prepare(what, e))
            } else {
                NotPrepared::Failed(errors::prepare(what, e))
            }
        })
    }
}
