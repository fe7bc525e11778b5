//! The ScyllaDB backend of `Store` (Apache Cassandra 4+/5 works too; CI runs it on Cassandra).
//!
//! [`ScyllaStore::connect`] opens a driver session (token-aware routing pinned to the local data
//! centre, LOCAL_QUORUM, retries and speculative execution for idempotent statements only) and
//! prepares every statement once. [`ScyllaStore::migrate`] creates the keyspace and tables;
//! until it has run, `connect` still succeeds (so that `migrate` can be called) and every
//! store operation fails with `StoreError::Backend` naming the missing schema.
//!
//! What this module guarantees, whatever the interleaving of replicas:
//! - Refresh rotation and the per-user session cap (`slots`) are the backend's only
//!   lightweight transactions: of racing rotations exactly one wins, and racing `Issue`s of one
//!   user take turns. An outcome the server could not confirm is read back at serial
//!   consistency, never guessed.
//! - Every row of a session expires by TTL with the session (`buckets::ttl_secs`), every write
//!   recomputing it. The one delete: a session evicted by the cap leaves `sessions_by_user`
//!   (one row tombstone per eviction, gone after `gc_grace_seconds`).
//! - Reads treat a session whose `expires_at` has passed as absent, even while its cells live
//!   on (a TTL's second of slack, or a manual clock ahead of the node's).
//! - Every revocation's feed row is in the same logged batch as the revocation, so no
//!   revocation reaches the store without reaching the feed, and a replica that reads the event
//!   and re-reads the store sees the revocation. While the batchlog is unavailable (a node dead
//!   but not yet convicted) the batch's statements are written one by one, the feed row last
//!   (`logged`).
//!
//! It holds no policy (which sessions may be revoked, caps, token checks live in `domain`), and
//! all CQL text lives in `cql`.
//!
//! Time. Session time comes from the service's clock (`connect`'s `clock`): reads compare
//! `expires_at` with `clock.now()`, and every `USING TTL` is `expires_at - clock.now()` plus a
//! second. The node expires cells by its own clock, counting each TTL from the real write; with
//! the system clock the two agree. A test's manual clock moved ahead of real time makes a
//! session that has ended by the clock read as absent while its cells live on, until their TTL
//! runs out in real time. A manual clock that stands still while real seconds pass could see
//! cells go before it says the row has ended, so tests give lifetimes far longer than the real
//! time between their steps. `USING TIMESTAMP` carries a "not before" instant itself (see
//! `cql`); one ahead of the node's clock is harmless, as no statement with a server-assigned
//! timestamp writes those tables. The revocation feed, the cap's pending slots and a session's
//! insert timestamp (`insert_timestamp`) are real-time mechanisms and keep the wall clock (see
//! `feed_now` and `slots`).

mod buckets;
mod config;
mod cql;
mod cursor;
mod errors;
mod faults;
mod logged;
mod retry;
mod rows;
mod slots;
mod statements;
mod tls;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::deserialize::row::DeserializeRow;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::policies::retry::DefaultRetryPolicy;
use scylla::policies::speculative_execution::{
    SimpleSpeculativeExecutionPolicy, SpeculativeExecutionPolicy,
};
use scylla::response::{PagingState, PagingStateResponse};
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::unprepared::Statement;
use scylla::value::{CqlTimestamp, CqlTimeuuid, MaybeUnset, Row};
use tokio::sync::OnceCell;
use uuid::Uuid;

use super::{
    AuditRecord, FeedBatch, Page, Revocation, RevocationEvent, Rotation, RotationStep,
    SessionFilter, SessionRecord, SessionScope, Store, StoreError, UserNotBefore,
};
use crate::model::clock::{Clock, SharedClock, SystemClock};
use crate::model::ids::{SessionId, TenantId, UserId};
use crate::model::time::Timestamp;
use cursor::{CursorKind, FeedCursor, Keyset};
use rows::{
    AuditRow, FeedRow, MirrorValues, NotBeforeRow, RotateValues, SessionRow, SessionValues,
};
use statements::{NotPrepared, Statements};

pub use config::{
    Credentials, Replication, ScyllaConfig, ScyllaConfigError, Speculative, TlsFiles,
};
pub use faults::{CasFault, CasFaults, CasPoint};

/// Shards of each revocation-feed minute: a poll reads this many partitions per minute, and
/// no single partition takes every revocation.
const FEED_SHARDS: i16 = 4;
/// How far back each poll re-reads before the previous one. Events are stamped by the clock
/// of the replica that wrote them, so this bounds the clock skew (plus write latency) between
/// replicas that the feed tolerates without missing an event.
const FEED_OVERLAP: Duration = Duration::from_secs(5);
/// A poll reads at most this many minutes before the current one; a cursor older than that is
/// a gap (the caller drops its caches whole). The feed rows themselves live a day.
const FEED_REACH_MINUTES: i64 = 2;
/// Shards of each day of `audit_by_day`.
const AUDIT_DAY_SHARDS: i16 = 4;
/// Audit events stamped this far ahead of the reader's clock are still listed.
const AUDIT_FUTURE_SLACK: Duration = Duration::from_secs(3600);
/// Empty time buckets an audit listing walks before returning a short page with a cursor.
const AUDIT_MAX_BUCKETS_PER_PAGE: usize = 31;
/// Server pages a session listing reads (when filters drop rows) before returning a short page.
const MAX_ROUND_TRIPS_PER_PAGE: usize = 8;
/// Concurrent statements of one multi-session call (revoke many, touch many, audit).
const CONCURRENCY: usize = 16;
/// How long a refresh keeps trying a compare-and-set whose outcome stays unknown before it
/// answers `UNAVAILABLE`: a few attempts of the driver's request timeout, well within the
/// server's request timeout.
const ROTATION_PATIENCE: Duration = Duration::from_secs(6);
/// Compare-and-sets of one rotation at most, however quickly they fail.
const ROTATION_ATTEMPTS: u32 = 6;
/// The longest pause between two of them; a random share of it.
const ROTATION_BACKOFF_MS: u64 = 50;

/// Sessions, revocations and audit events in a ScyllaDB or Cassandra keyspace.
pub struct ScyllaStore {
    session: Session,
    config: ScyllaConfig,
    cql: cql::Cql,
    ping: PreparedStatement,
    /// Prepared on first success: at `connect` when the schema exists, else after `migrate`.
    statements: OnceCell<Statements>,
    /// The service's clock, for every instant of session time: expiry on read, TTLs, the
    /// cap's slots and the audit listing's window (see "Time" below).
    clock: SharedClock,
    /// Whether logged batches are being written one by one (see `logged`).
    batch_health: logged::BatchHealth,
    /// Tests' faults at the compare-and-sets (see `faults`); `None` otherwise.
    cas_faults: Option<CasFaults>,
}

impl fmt::Debug for ScyllaStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScyllaStore")
            .field("hosts", &self.config.hosts)
            .field("keyspace", &self.config.keyspace)
            .field("prepared", &self.statements.initialized())
            .finish()
    }
}

impl ScyllaStore {
    /// Connects to the cluster and prepares every statement; session time is read from `clock`.
    ///
    /// Fails with `Unavailable` when no contact point answers, `Backend` when the TLS files
    /// cannot be used. A missing or outdated schema is not an error here (it is logged): every
    /// operation then fails until [`migrate`](Self::migrate) has run.
    pub async fn connect(config: ScyllaConfig, clock: SharedClock) -> Result<Self, StoreError> {
        let mut builder = SessionBuilder::new()
            .known_nodes(&config.hosts)
            .connection_timeout(config.connect_timeout)
            .schema_agreement_timeout(config.schema_agreement_timeout)
            .default_execution_profile_handle(execution_profile(&config).into_handle());
        if let Some(dc) = &config.local_dc {
            builder = builder.prefer_datacenter(dc.clone());
        }
        if let Some(c) = &config.credentials {
            builder = builder.user(c.username.clone(), c.password.clone());
        }
        if let Some(files) = &config.tls {
            builder = builder.tls_context(Some(tls::client_config(files).await?));
        }
        let session = builder.build().await.map_err(errors::new_session)?;
        let mut ping = session
            .prepare(cql::PING)
            .await
            .map_err(|e| errors::prepare("ping", e))?;
        ping.set_is_idempotent(true);
        let store = Self {
            session,
            cql: cql::Cql::new(&config.keyspace),
            config,
            ping,
            statements: OnceCell::new(),
            clock,
            batch_health: logged::BatchHealth::new(),
            cas_faults: None,
        };
        // Not an error yet: `migrate` is about to run, or the caller checks `check_schema`.
        if let Err(error) = store.statements().await {
            tracing::info!(keyspace = %store.config.keyspace, %error, "scylla store is not ready");
        }
        Ok(store)
    }

    /// Creates or upgrades the schema: the keyspace (`NetworkTopologyStrategy`, see
    /// [`Replication`]; an existing keyspace is never altered, a different replication is only
    /// logged), then each migration not yet recorded in `schema_migrations`, waiting for
    /// schema agreement after each. Every statement is `IF NOT EXISTS`, so running it again,
    /// or after an interrupted run, is safe.
    ///
    /// Run it from one process at a time: Cassandra (before 5.1) may create a table twice when
    /// two nodes receive the same `CREATE TABLE` concurrently. ScyllaDB with Raft-managed
    /// schema does not have that problem.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let ks = &self.config.keyspace;
        let replication = self.replication()?;
        self.ddl(&cql::create_keyspace(
            ks,
            &replication,
            self.config.disable_tablets,
        ))
        .await?;
        self.warn_if_replication_differs(&replication).await;
        self.ddl(&cql::create_migrations_table(ks)).await?;
        let applied = self.applied_migrations().await?;
        // Created by this run's first step, the tables already have every later column.
        let created_now = !applied.contains(&1);
        for migration in cql::migrations(ks) {
            if applied.contains(&migration.version) {
                continue;
            }
            if !(migration.upgrade_only && created_now) {
                for statement in &migration.statements {
                    self.ddl_step(statement, migration.upgrade_only).await?;
                }
            }
            self.await_agreement().await?;
            let record = (
                migration.version,
                migration.description,
                // When an operator's schema step ran: a real instant, not session time.
                SystemClock.now().as_micros(),
            );
            self.session
                .query_unpaged(self.ddl_statement(cql::insert_migration(ks)), record)
                .await
                .map_err(|e| errors::execution("recording migration", e))?;
            tracing::info!(keyspace = %ks, version = migration.version, "applied schema migration");
        }
        self.await_agreement().await?;
        self.statements().await.map(|_| ())
    }

    /// Succeeds once the schema is current and every statement is prepared; the error says
    /// what is missing. For start-up checks.
    pub async fn check_schema(&self) -> Result<(), StoreError> {
        self.statements().await.map(|_| ())
    }

    /// The prepared statements, preparing them on first use.
    async fn statements(&self) -> Result<&Statements, StoreError> {
        self.statements
            .get_or_try_init(|| async {
                let st = match Statements::prepare(
                    &self.session,
                    &self.cql,
                    self.config.serial_consistency,
                )
                .await
                {
                    Ok(st) => st,
                    Err(NotPrepared::SchemaMissing(e)) => {
                        return Err(StoreError::Backend(format!(
                            "schema missing, run `sessiond migrate`: {e}"
                        )));
                    }
                    Err(NotPrepared::Failed(e)) => return Err(e),
                };
                let versions: Vec<(i32,)> = self
                    .all_rows("reading schema version", &st.select_schema_versions, ())
                    .await?;
                let current = versions.iter().map(|(v,)| *v).max().unwrap_or(0);
                if current < cql::SCHEMA_VERSION {
                    return Err(StoreError::Backend(format!(
                        "schema version {current} is older than {}, run `sessiond migrate`",
                        cql::SCHEMA_VERSION
                    )));
                }
                Ok(st)
            })
            .await
    }

    /// The keyspace's data centres and factors, resolving `Replication::LocalDc` against the
    /// nodes the driver sees.
    fn replication(&self) -> Result<Vec<(String, u32)>, StoreError> {
        let rf = match &self.config.replication {
            Replication::Explicit(list) => return Ok(list.clone()),
            Replication::LocalDc { rf } => *rf,
        };
        let state = self.session.get_cluster_state();
        let nodes = state.get_nodes_info();
        let dc = match &self.config.local_dc {
            Some(dc) => dc.clone(),
            None => {
                let dcs: HashSet<&str> = nodes
                    .iter()
                    .filter_map(|n| n.datacenter.as_deref())
                    .collect();
                match dcs.into_iter().collect::<Vec<_>>().as_slice() {
                    [only] => (*only).to_owned(),
                    _ => {
                        return Err(StoreError::Backend(
                            "the cluster has several data centres (or none known): \
                             name one with dc= or give replication="
                                .to_owned(),
                        ));
                    }
                }
            }
        };
        let in_dc = nodes
            .iter()
            .filter(|n| n.datacenter.as_deref() == Some(dc.as_str()))
            .count();
        if in_dc == 0 {
            return Err(StoreError::Backend(format!(
                "no node of data centre {dc:?} is known"
            )));
        }
        let rf = rf.unwrap_or_else(|| {
            config::DEFAULT_RF.min(u32::try_from(in_dc).unwrap_or(config::DEFAULT_RF))
        });
        if rf < 3 {
            tracing::warn!(%dc, rf, "keyspace replication factor below 3: a node loss loses data or availability");
        }
        Ok(vec![(dc, rf)])
    }

    async fn warn_if_replication_differs(&self, wanted: &[(String, u32)]) {
        let found = self
            .session
            .query_unpaged(cql::SELECT_KEYSPACE_REPLICATION, (&self.config.keyspace,))
            .await
            .ok()
            .and_then(|r| r.into_rows_result().ok())
            .and_then(|r| {
                r.maybe_first_row::<(BTreeMap<String, String>,)>()
                    .ok()
                    .flatten()
            });
        let Some((mut found,)) = found else { return };
        let class = found.remove("class").unwrap_or_default();
        let same = class.ends_with("NetworkTopologyStrategy")
            && found.len() == wanted.len()
            && wanted
                .iter()
                .all(|(dc, rf)| found.get(dc) == Some(&rf.to_string()));
        if !same {
            tracing::warn!(
                keyspace = %self.config.keyspace, %class, existing = ?found, wanted = ?wanted,
                "keyspace exists with a different replication; it is left as it is"
            );
        }
    }

    /// The migration versions recorded so far. A node that has not yet learnt of a table
    /// another process just created answers "does not exist"; such a read is retried after
    /// the nodes agree, a bounded number of times.
    async fn applied_migrations(&self) -> Result<HashSet<i32>, StoreError> {
        const ATTEMPTS: u32 = 3;
        let mut attempt = 1;
        let result = loop {
            let outcome = self
                .session
                .query_unpaged(
                    self.ddl_statement(cql::select_migrations(&self.config.keyspace)),
                    (),
                )
                .await;
            match outcome {
                Ok(result) => break result,
                Err(e) if attempt < ATTEMPTS && errors::table_missing(&e) => {
                    tracing::info!(attempt, "migrations table not yet known to the coordinator");
                    attempt += 1;
                    self.await_agreement().await?;
                }
                Err(e) => return Err(errors::execution("reading migrations", e)),
            }
        };
        let rows = result
            .into_rows_result()
            .map_err(|e| errors::decode("migrations", e))?;
        let versions = rows
            .rows::<(i32,)>()
            .map_err(|e| errors::decode("migrations", e))?
            .map(|r| r.map(|(v,)| v))
            .collect::<Result<HashSet<_>, _>>()
            .map_err(|e| errors::decode("migrations", e))?;
        Ok(versions)
    }

    /// Schema statements are not prepared (each runs once) and get the schema-agreement
    /// timeout: the driver waits for agreement before it returns.
    fn ddl_statement(&self, text: String) -> Statement {
        let mut statement = Statement::new(text);
        statement.set_request_timeout(Some(self.config.schema_agreement_timeout));
        statement
    }

    /// One migration statement; an `ADD` of columns a cut-short earlier run already added is
    /// done, not an error (neither Cassandra nor ScyllaDB has `ADD IF NOT EXISTS` in every
    /// supported version).
    async fn ddl_step(&self, text: &str, adds_columns: bool) -> Result<(), StoreError> {
        let outcome = self
            .session
            .query_unpaged(self.ddl_statement(text.to_owned()), ())
            .await;
        match outcome {
            Ok(_) => {}
            Err(e) if adds_columns && errors::column_exists(&e) => {
                tracing::info!(statement = %text, "columns already present");
            }
            Err(e) => return Err(errors::execution("applying schema", e)),
        }
        self.await_agreement().await
    }

    /// One schema statement, then agreement. The driver waits for agreement only when the
    /// answer reports a schema change; an `IF NOT EXISTS` that found the object (another
    /// process created it a moment ago through another node) reports none, and the next
    /// statement could reach a node that has not learnt of it yet.
    async fn ddl(&self, text: &str) -> Result<(), StoreError> {
        self.session
            .query_unpaged(self.ddl_statement(text.to_owned()), ())
            .await
            .map_err(|e| errors::execution("applying schema", e))?;
        self.await_agreement().await
    }

    async fn await_agreement(&self) -> Result<(), StoreError> {
        self.session
            .await_schema_agreement()
            .await
            .map(|_| ())
            .map_err(errors::schema_agreement)
    }
}

/// The default execution profile: what every statement runs with unless it says otherwise.
fn execution_profile(config: &ScyllaConfig) -> ExecutionProfile {
    let mut lbp = DefaultPolicy::builder()
        .token_aware(true)
        .permit_dc_failover(false);
    if let Some(dc) = &config.local_dc {
        lbp = lbp.prefer_datacenter(dc.clone());
    }
    let speculative = config.speculative.map(|s| {
        Arc::new(SimpleSpeculativeExecutionPolicy {
            max_retry_count: s.max_retries,
            retry_interval: s.delay,
        }) as Arc<dyn SpeculativeExecutionPolicy>
    });
    ExecutionProfile::builder()
        .consistency(config.consistency)
        .serial_consistency(Some(config.serial_consistency))
        .request_timeout(Some(config.request_timeout))
        .load_balancing_policy(lbp.build())
        .retry_policy(Arc::new(DefaultRetryPolicy::new()))
        .speculative_execution_policy(speculative)
        .build()
}

// Statement helpers: one place that runs a statement and maps its errors and rows.
impl ScyllaStore {
    async fn write(
        &self,
        what: &str,
        ps: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(ps, values)
            .await
            .map(|_| ())
            .map_err(|e| errors::execution(what, e))
    }

    async fn first_row<R>(
        &self,
        what: &str,
        ps: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<Option<R>, StoreError>
    where
        R: for<'f, 'm> DeserializeRow<'f, 'm>,
    {
        let result = self
            .session
            .execute_unpaged(ps, values)
            .await
            .map_err(|e| errors::execution(what, e))?;
        let rows = result
            .into_rows_result()
            .map_err(|e| errors::decode(what, e))?;
        rows.maybe_first_row::<R>()
            .map_err(|e| errors::decode(what, e))
    }

    /// Every row, paging through them with the statement's page size.
    async fn all_rows<R>(
        &self,
        what: &str,
        ps: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<Vec<R>, StoreError>
    where
        R: for<'f, 'm> DeserializeRow<'f, 'm> + 'static,
    {
        let pager = self
            .session
            .execute_iter(ps.clone(), values)
            .await
            .map_err(|e| errors::pager(what, e))?;
        pager
            .rows_stream::<R>()
            .map_err(|e| errors::decode(what, e))?
            .map_err(|e| errors::next_row(what, e))
            .try_collect()
            .await
    }

    /// One server page from `state`; the paging state after it, if there are more rows. When
    /// the server refuses a paging state we were given, the cursor was bad.
    async fn one_page<R>(
        &self,
        what: &str,
        ps: &PreparedStatement,
        values: impl SerializeRow,
        state: PagingState,
    ) -> Result<(Vec<R>, Option<Vec<u8>>), StoreError>
    where
        R: for<'f, 'm> DeserializeRow<'f, 'm>,
    {
        let resumed = state.as_bytes_slice().is_some();
        let (result, paging) = match self.session.execute_single_page(ps, values, state).await {
            Ok(page) => page,
            Err(e) if resumed && errors::rejects_paging_state(&e) => {
                tracing::debug!(error = %e, "server rejected a paging state");
                return Err(StoreError::BadCursor);
            }
            Err(e) => return Err(errors::execution(what, e)),
        };
        let rows = result
            .into_rows_result()
            .map_err(|e| errors::decode(what, e))?;
        let items = rows
            .rows::<R>()
            .map_err(|e| errors::decode(what, e))?
            .collect::<Result<Vec<R>, _>>()
            .map_err(|e| errors::decode(what, e))?;
        Ok((items, next_state(paging)))
    }
}

fn next_state(paging: PagingStateResponse) -> Option<Vec<u8>> {
    match paging.into_paging_control_flow() {
        ControlFlow::Continue(state) => state.as_bytes_slice().map(|b| b.to_vec()),
        ControlFlow::Break(()) => None,
    }
}

// Sessions.
impl ScyllaStore {
    async fn read_session(
        &self,
        ps: &PreparedStatement,
        id: SessionId,
        now: Timestamp,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let row: Option<SessionRow> = self
            .first_row("reading session", ps, (id.as_uuid(),))
            .await?;
        match row {
            Some(row) => row.into_record(now),
            None => Ok(None),
        }
    }

    /// Rotation after the read: the compare-and-set, settled at serial consistency when its
    /// outcome is unknown. When the serial read shows the expected state still current, the
    /// CAS certainly did not apply and is tried again (a later attempt writes the same cells,
    /// so even a late-landing earlier one cannot change the result), for as long as
    /// [`ROTATION_PATIENCE`] allows: while a node restarts, the coordinators may count it
    /// alive for seconds, and every Paxos round that waits for it times out.
    async fn compare_and_set_refresh(
        &self,
        st: &Statements,
        record: &SessionRecord,
        values: &RotateValues<'_>,
        step: &RotationStep,
    ) -> Result<Rotation, StoreError> {
        let id = record.id;
        let deadline = tokio::time::Instant::now() + ROTATION_PATIENCE;
        let mut attempt: u32 = 0;
        while attempt < 2 || (attempt < ROTATION_ATTEMPTS && tokio::time::Instant::now() < deadline)
        {
            attempt = attempt.saturating_add(1);
            if attempt > 1 {
                // Failures that come at once (a broken connection) must not become a spin.
                let pause = rand::Rng::gen_range(&mut rand::thread_rng(), 0..=ROTATION_BACKOFF_MS);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            let e = match self
                .execute_at(CasPoint::RefreshWrite, &st.rotate_refresh, values)
                .await
            {
                Ok(result) => {
                    return if cas_applied(result)? {
                        Ok(Rotation::Won)
                    } else if attempt > 1 {
                        // An earlier attempt whose outcome is unknown may be what changed it.
                        match self.read_session_serial(st, id).await? {
                            None => Ok(Rotation::Gone),
                            Some(current) => Ok(settled(current.clone(), step)
                                .unwrap_or_else(|| Rotation::Lost(Box::new(current)))),
                        }
                    } else {
                        self.why_rotation_lost(st, id).await
                    };
                }
                Err(e) if errors::cas_outcome_unknown(&e) => e,
                Err(e) => return Err(errors::execution("rotating refresh token", e)),
            };
            tracing::warn!(%id, attempt, error = %e, "refresh compare-and-set outcome unknown; reading it back");
            let current = match self.read_session_serial(st, id).await {
                Ok(current) => current,
                // Still unknown; the next attempt's own outcome or read may tell.
                Err(StoreError::Unavailable(message)) if tokio::time::Instant::now() < deadline => {
                    tracing::warn!(%id, attempt, error = %message, "refresh outcome not read back; trying again");
                    continue;
                }
                Err(e) => return Err(e),
            };
            let Some(current) = current else {
                return Ok(Rotation::Gone);
            };
            if let Some(settled) = settled(current, step) {
                return Ok(settled);
            }
        }
        Err(StoreError::Unavailable(format!(
            "refresh rotation of session {id} could not be settled"
        )))
    }

    /// A compare-and-set that did not apply lost either to another rotation or to a
    /// revocation; a serial read says which, so a revoke is never reported as token theft.
    async fn why_rotation_lost(
        &self,
        st: &Statements,
        id: SessionId,
    ) -> Result<Rotation, StoreError> {
        match self.read_session_serial(st, id).await? {
            None => Ok(Rotation::Gone),
            Some(current) if current.is_revoked() => Ok(Rotation::Revoked),
            Some(current) => Ok(Rotation::Lost(Box::new(current))),
        }
    }

    /// Copies a won rotation into `sessions_by_user`. The rotation has happened whatever this
    /// does, so a failure is logged, not returned: only listings would show the previous
    /// refresh state, and nothing decides anything from a listing's refresh columns.
    async fn mirror_rotation(
        &self,
        st: &Statements,
        r: &SessionRecord,
        step: &RotationStep,
        ttl: i32,
    ) {
        let values = MirrorValues::new(r, step, ttl);
        if let Err(error) = self
            .write("mirroring rotation", &st.mirror_refresh_by_user, values)
            .await
        {
            tracing::warn!(session_id = %r.id, %error, "per-user index keeps the previous refresh state");
        }
    }

    /// Revokes one session: read, the logged batch of both rows, then the feed event.
    async fn revoke_one(
        &self,
        st: &Statements,
        id: SessionId,
        at: Timestamp,
        reason: &str,
        listing: Listing,
    ) -> Result<Revocation, StoreError> {
        let now = self.clock.now();
        let Some(mut record) = self.read_session(&st.select_session, id, now).await? else {
            return Ok(Revocation::NotFound);
        };
        if record.is_revoked() {
            return Ok(Revocation::AlreadyRevoked(Box::new(record)));
        }
        let Some(ttl) = buckets::ttl_secs(record.expires_at, now) else {
            // Not reached: the read at the same `now` found it live, so it has a TTL.
            return Ok(Revocation::NotFound);
        };
        let reason_value = if reason.is_empty() {
            MaybeUnset::Unset
        } else {
            MaybeUnset::Set(reason)
        };
        let session_row = (ttl, at.as_micros(), reason_value, id.as_uuid());
        let user_row = (
            ttl,
            at.as_micros(),
            reason_value,
            record.user_id.as_str(),
            record.tenant_id.as_str(),
            record.created_at.as_micros(),
            id.as_uuid(),
        );
        let feed = feed_row(&RevocationEvent::Session(id));
        let what = "revoking session";
        match listing {
            Listing::Keep => {
                let parts = [
                    &st.revoke_session,
                    &st.revoke_session_by_user,
                    &st.insert_feed,
                ];
                self.logged3(what, &st.revoke_batch, parts, session_row, user_row, feed)
                    .await?;
            }
            Listing::Drop => {
                let user_key = (
                    record.user_id.as_str(),
                    record.tenant_id.as_str(),
                    record.created_at.as_micros(),
                    id.as_uuid(),
                );
                let parts = [
                    &st.revoke_session,
                    &st.delete_session_by_user,
                    &st.insert_feed,
                ];
                self.logged3(what, &st.evict_batch, parts, session_row, user_key, feed)
                    .await?;
            }
        }
        record.revoked_at = Some(at);
        record.revoke_reason = reason.to_owned();
        Ok(Revocation::Revoked(Box::new(record)))
    }

    async fn touch_one(
        &self,
        st: &Statements,
        id: SessionId,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let Some(r) = self.read_session(&st.select_session, id, now).await? else {
            return Ok(());
        };
        let Some(ttl) = buckets::ttl_secs(r.expires_at, now) else {
            return Ok(());
        };
        // A revoked session needs no last-seen, and an evicted one must not reappear in its
        // user's listing as a fragment of a row.
        if at <= r.last_seen_at || r.is_revoked() {
            return Ok(());
        }
        let by_user = (
            ttl,
            at.as_micros(),
            r.user_id.as_str(),
            r.tenant_id.as_str(),
            r.created_at.as_micros(),
            id.as_uuid(),
        );
        tokio::try_join!(
            self.write(
                "touching session",
                &st.touch_session,
                (ttl, at.as_micros(), id.as_uuid())
            ),
            self.write("touching session", &st.touch_session_by_user, by_user),
        )?;
        Ok(())
    }

    /// One listing page, reading further server pages while filters leave it short (up to
    /// `MAX_ROUND_TRIPS_PER_PAGE`), each asking only for the rows still missing so that the
    /// paging state after it is exactly where the page ends.
    async fn session_page(
        &self,
        kind: CursorKind,
        ps: &PreparedStatement,
        values: impl SerializeRow,
        keep: impl Fn(&SessionRecord) -> bool,
        cursor: Option<&[u8]>,
        limit: usize,
    ) -> Result<Page<SessionRecord>, StoreError> {
        let limit = limit.max(1);
        let mut state = match cursor {
            Some(c) => PagingState::new_from_raw_bytes(cursor::decode_paging(kind, c)?),
            None => PagingState::start(),
        };
        let mut items = Vec::new();
        let now = self.clock.now();
        for _ in 0..MAX_ROUND_TRIPS_PER_PAGE {
            let want = limit.saturating_sub(items.len()).max(1);
            let mut page_ps = ps.clone();
            page_ps.set_page_size(i32::try_from(want).unwrap_or(i32::MAX));
            let (rows, next) = self
                .one_page::<SessionRow>("listing sessions", &page_ps, &values, state)
                .await?;
            for row in rows {
                if let Some(record) = row.into_record(now)?
                    && keep(&record)
                {
                    items.push(record);
                }
            }
            let Some(next) = next else {
                return Ok(Page { items, next: None });
            };
            if items.len() >= limit {
                return Ok(Page {
                    items,
                    next: Some(cursor::encode_paging(kind, &next)),
                });
            }
            state = PagingState::new_from_raw_bytes(next);
        }
        let next = state
            .as_bytes_slice()
            .map(|s| cursor::encode_paging(kind, s));
        Ok(Page { items, next })
    }
}

/// The one write timestamp of every copy of a session's inserts (see `cql`): the start of the
/// millisecond before `now`. Cassandra stamps server-side writes with its clock's milliseconds
/// × 1000, so a write the server stamps after this call began (a revocation, an eviction's
/// delete, a rotation) is never older than the inserts, not even within the same millisecond.
fn insert_timestamp(now: Timestamp) -> i64 {
    (now.as_micros().div_euclid(1000) - 1) * 1000
}

/// What the serial read after a compare-and-set of unknown outcome says of it, `None` when
/// the expected state is still current (so the CAS certainly did not apply).
///
/// The next state alone does not tell whose CAS applied: a generation's token is derived from
/// the session's salt, so every racer presenting the same token computes the same next state.
/// The step's own instant, which the CAS writes as the replaced state's `rotated_at`, does: a
/// racer that finds the next state stamped with another instant lost, and must not answer
/// the winner's token as its own win (with `--refresh-grace 0s` a loser revokes the session).
/// Two racers would have to read the clock in the same microsecond to be taken for each other.
fn settled(current: SessionRecord, step: &RotationStep) -> Option<Rotation> {
    let state = current.refresh_state();
    if state == step.next {
        let mine = current
            .previous_refresh
            .is_some_and(|p| p.state == step.expected && p.rotated_at == step.at);
        return Some(if mine {
            Rotation::Won
        } else {
            Rotation::Lost(Box::new(current))
        });
    }
    if current.is_revoked() {
        return Some(Rotation::Revoked);
    }
    (state != step.expected).then(|| Rotation::Lost(Box::new(current)))
}

/// Reads `[applied]` of a compare-and-set. Cassandra answers `[applied]` alone on success and
/// with the current values on failure; ScyllaDB always adds the row. Only the flag matters.
fn cas_applied(result: scylla::response::query_result::QueryResult) -> Result<bool, StoreError> {
    let what = "compare-and-set result";
    let rows = result
        .into_rows_result()
        .map_err(|e| errors::decode(what, e))?;
    let index = rows
        .column_specs()
        .iter()
        .position(|c| c.name() == "[applied]")
        .ok_or_else(|| StoreError::Backend(format!("{what}: no [applied] column")))?;
    let row = rows
        .maybe_first_row::<Row>()
        .map_err(|e| errors::decode(what, e))?;
    row.and_then(|r| r.columns.into_iter().nth(index).flatten())
        .and_then(|v| v.as_boolean())
        .ok_or_else(|| StoreError::Backend(format!("{what}: [applied] is not a boolean")))
}

/// What a revocation does to the session's row in its user's listing.
#[derive(Clone, Copy)]
enum Listing {
    /// Kept, marked revoked, until it expires (for the admin listing).
    Keep,
    /// Removed: per-user reads stay bounded by live sessions (evictions by the cap).
    Drop,
}

// Revocation feed.
impl ScyllaStore {
    /// Appends one event on its own, for a mark whose row needs no writing.
    async fn append_feed(
        &self,
        st: &Statements,
        event: &RevocationEvent,
    ) -> Result<(), StoreError> {
        self.write(
            "appending revocation feed",
            &st.insert_feed,
            feed_row(event),
        )
        .await
    }

    /// Feed rows of the minutes `first..=last` stamped at or after `from` (to the
    /// millisecond; callers filter exactly).
    async fn feed_rows(
        &self,
        st: &Statements,
        first: i64,
        last: i64,
        from: Timestamp,
    ) -> Result<Vec<FeedRow>, StoreError> {
        let from_ms = CqlTimestamp(from.as_micros().div_euclid(1000));
        let reads = (first..=last).flat_map(|minute| {
            (0..FEED_SHARDS).map(move |shard| {
                self.all_rows::<FeedRow>(
                    "polling revocation feed",
                    &st.select_feed,
                    (minute, shard, from_ms),
                )
            })
        });
        let batches: Vec<Vec<FeedRow>> = futures::future::try_join_all(reads).await?;
        Ok(batches.into_iter().flatten().collect())
    }
}

/// The instant the revocation feed is stamped and polled by: the wall clock, not the service's
/// clock. The feed carries revocations between replicas; its overlap and reach bound real
/// write latency and clock skew between processes, and its order is the order events were
/// written. A manual clock standing still would stamp every event at the instant a cursor
/// starts from (events at or before it are never returned) and lose them.
fn feed_now() -> Timestamp {
    SystemClock.now()
}

/// The values of one feed row, stamped now: written in the same logged batch as the
/// revocation it announces.
fn feed_row(event: &RevocationEvent) -> (i64, i16, CqlTimeuuid, &'static str, String) {
    let now = feed_now();
    let (kind, subject) = FeedRow::columns(event);
    let shard = rand::Rng::gen_range(&mut rand::thread_rng(), 0..FEED_SHARDS);
    (
        buckets::minute(now),
        shard,
        CqlTimeuuid::from(buckets::timeuuid(now)),
        kind,
        subject,
    )
}

// Audit.
#[derive(Clone, Copy)]
enum AuditScope<'a> {
    User(&'a UserId),
    All,
}

impl AuditScope<'_> {
    fn kind(self) -> CursorKind {
        match self {
            AuditScope::User(_) => CursorKind::UserAudit,
            AuditScope::All => CursorKind::AllAudit,
        }
    }

    fn bucket(self, at: Timestamp) -> i32 {
        match self {
            AuditScope::User(_) => buckets::month(at),
            AuditScope::All => buckets::day(at),
        }
    }

    fn previous(self, bucket: i32) -> i32 {
        match self {
            AuditScope::User(_) => buckets::previous_month(bucket),
            AuditScope::All => bucket.saturating_sub(1),
        }
    }
}

impl ScyllaStore {
    async fn insert_audit(&self, st: &Statements, e: &AuditRecord) -> Result<(), StoreError> {
        let ttl = buckets::retention_ttl(self.config.audit_retention);
        let day = rows::AuditDayValues {
            day: buckets::day(e.at),
            ttl,
            // Version 7 ids end in random bits, so this spreads events evenly.
            shard: i16::try_from(e.event_id.as_u128() % AUDIT_DAY_SHARDS.unsigned_abs() as u128)
                .unwrap_or(0),
            audit: rows::AuditValues::new(e),
        };
        let by_day = self.write("appending audit", &st.insert_audit_by_day, day);
        if e.user_id.is_empty() {
            return by_day.await;
        }
        let user = rows::AuditUserValues {
            month: rows::audit_month(e),
            ttl,
            audit: rows::AuditValues::new(e),
        };
        tokio::try_join!(
            by_day,
            self.write("appending audit", &st.insert_audit_by_user, user)
        )?;
        Ok(())
    }

    /// Up to `want` events of one bucket strictly older than `pos`, newest first.
    async fn audit_bucket(
        &self,
        st: &Statements,
        scope: AuditScope<'_>,
        pos: Keyset,
        want: usize,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let limit = i32::try_from(want).unwrap_or(i32::MAX);
        let what = "listing audit";
        match scope {
            AuditScope::User(user) => {
                let values = (user.as_str(), pos.bucket, pos.at, pos.event_id, limit);
                self.all_rows(what, &st.select_audit_by_user, values).await
            }
            AuditScope::All => {
                let reads = (0..AUDIT_DAY_SHARDS).map(|shard| {
                    let values = (pos.bucket, shard, pos.at, pos.event_id, limit);
                    self.all_rows::<AuditRow>(what, &st.select_audit_by_day, values)
                });
                let mut rows: Vec<AuditRow> = futures::future::try_join_all(reads)
                    .await?
                    .into_iter()
                    .flatten()
                    .collect();
                // The clustering order: `at` then `event_id` (uuid: version, then bytes), both
                // descending, so the last row kept is a valid keyset for every shard.
                rows.sort_by_key(|r| std::cmp::Reverse(r.key()));
                rows.truncate(want);
                Ok(rows)
            }
        }
    }

    async fn audit_page(
        &self,
        st: &Statements,
        scope: AuditScope<'_>,
        cursor: Option<&[u8]>,
        limit: usize,
    ) -> Result<Page<AuditRecord>, StoreError> {
        let limit = limit.max(1);
        let kind = scope.kind();
        let now = self.clock.now();
        let oldest = scope.bucket(now.minus(self.config.audit_retention));
        let mut pos = match cursor {
            Some(c) => cursor::decode_keyset(kind, c)?,
            None => Keyset::bucket_start(scope.bucket(now.plus(AUDIT_FUTURE_SLACK))),
        };
        let mut items = Vec::new();
        let mut walked = 0;
        while pos.bucket >= oldest {
            let rows = self
                .audit_bucket(st, scope, pos, limit - items.len())
                .await?;
            for row in rows {
                (pos.at, pos.event_id) = row.key();
                items.push(row.into_record());
            }
            if items.len() >= limit {
                return Ok(Page {
                    items,
                    next: Some(cursor::encode_keyset(kind, pos)),
                });
            }
            pos = Keyset::bucket_start(scope.previous(pos.bucket));
            walked += 1;
            if walked >= AUDIT_MAX_BUCKETS_PER_PAGE && pos.bucket >= oldest {
                return Ok(Page {
                    items,
                    next: Some(cursor::encode_keyset(kind, pos)),
                });
            }
        }
        Ok(Page { items, next: None })
    }
}

#[async_trait]
impl Store for ScyllaStore {
    async fn create_session(&self, record: &SessionRecord) -> Result<(), StoreError> {
        let st = self.statements().await?;
        let Some(ttl) = buckets::ttl_secs(record.expires_at, self.clock.now()) else {
            // Already expired: reads would treat it as absent, so there is nothing to keep.
            return Ok(());
        };
        let values = SessionValues::new(record, ttl, insert_timestamp(SystemClock.now()));
        let parts = [&st.insert_session, &st.insert_session_by_user];
        self.logged2("issuing session", &st.issue_batch, parts, &values, &values)
            .await
    }

    async fn create_session_capped(
        &self,
        record: &SessionRecord,
        cap: usize,
        reason: &str,
        audits: &[AuditRecord],
    ) -> Result<Vec<SessionId>, StoreError> {
        let mut evicted = Vec::new();
        if cap > 0 {
            let st = self.statements().await?;
            let oldest = self.claim_slot(st, record, cap).await?;
            for id in oldest {
                let outcome = self
                    .revoke_one(st, id, record.created_at, reason, Listing::Drop)
                    .await?;
                if let Revocation::Revoked(_) = outcome {
                    evicted.push(id);
                }
            }
        }
        // No transaction spans the two tables here: the events go alongside the session.
        tokio::try_join!(self.create_session(record), self.append_audit(audits))?;
        Ok(evicted)
    }

    async fn get_session(&self, id: SessionId) -> Result<Option<SessionRecord>, StoreError> {
        let st = self.statements().await?;
        self.read_session(&st.select_session, id, self.clock.now())
            .await
    }

    async fn list_user_sessions(
        &self,
        user: &UserId,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let st = self.statements().await?;
        let what = "listing user sessions";
        let rows: Vec<SessionRow> = match tenant {
            Some(t) => {
                self.all_rows(
                    what,
                    &st.select_user_tenant_sessions,
                    (user.as_str(), t.as_str()),
                )
                .await?
            }
            None => {
                self.all_rows(what, &st.select_user_sessions, (user.as_str(),))
                    .await?
            }
        };
        let now = self.clock.now();
        let mut records = Vec::with_capacity(rows.len());
        for row in rows {
            if let Some(r) = row.into_record(now)?
                && !r.is_revoked()
            {
                records.push(r);
            }
        }
        // The partition clusters by tenant first; the contract is newest first across tenants.
        records.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(records)
    }

    async fn rotate_refresh(
        &self,
        id: SessionId,
        step: &RotationStep,
        audits: &[AuditRecord],
    ) -> Result<Rotation, StoreError> {
        let st = self.statements().await?;
        let now = self.clock.now();
        let Some(record) = self.read_session(&st.select_session, id, now).await? else {
            return Ok(Rotation::Gone);
        };
        // Decided without Paxos when the read already shows the CAS would fail.
        if record.is_revoked() {
            return Ok(Rotation::Revoked);
        }
        if record.refresh_state() != step.expected {
            return Ok(Rotation::Lost(Box::new(record)));
        }
        let Some(ttl) = buckets::ttl_secs(record.expires_at, now) else {
            return Ok(Rotation::Gone);
        };
        let values = RotateValues::new(id, step, ttl);
        let rotation = self
            .compare_and_set_refresh(st, &record, &values, step)
            .await?;
        if rotation == Rotation::Won {
            let ((), audited) = tokio::join!(
                self.mirror_rotation(st, &record, step, ttl),
                self.append_audit(audits)
            );
            audited?;
        }
        Ok(rotation)
    }

    async fn revoke_session(
        &self,
        id: SessionId,
        at: Timestamp,
        reason: &str,
    ) -> Result<Revocation, StoreError> {
        let st = self.statements().await?;
        self.revoke_one(st, id, at, reason, Listing::Keep).await
    }

    async fn revoke_sessions(
        &self,
        ids: &[SessionId],
        at: Timestamp,
        reason: &str,
    ) -> Result<Vec<SessionId>, StoreError> {
        let st = self.statements().await?;
        let outcomes: Vec<(SessionId, Result<Revocation, StoreError>)> = futures::stream::iter(
            ids.iter().copied(),
        )
        .map(|id| async move { (id, self.revoke_one(st, id, at, reason, Listing::Keep).await) })
        .buffered(CONCURRENCY)
        .collect()
        .await;
        let mut revoked = Vec::new();
        for (id, outcome) in outcomes {
            if let Revocation::Revoked(_) = outcome? {
                revoked.push(id);
            }
        }
        Ok(revoked)
    }

    async fn set_user_not_before(
        &self,
        user: &UserId,
        tenant: &TenantId,
        at: Timestamp,
        keep_until: Timestamp,
    ) -> Result<(), StoreError> {
        let st = self.statements().await?;
        // Past `keep_until` no token the mark could reject is alive: nothing to store.
        let feed = feed_row(&RevocationEvent::User(user.clone()));
        let Some(ttl) = buckets::ttl_secs(keep_until, self.clock.now()) else {
            return self
                .append_feed(st, &RevocationEvent::User(user.clone()))
                .await;
        };
        let micros = at.as_micros();
        let mark = (user.as_str(), tenant.as_str(), micros, ttl, micros);
        let parts = [&st.upsert_user_not_before, &st.insert_feed];
        self.logged2(
            "storing user not-before",
            &st.user_not_before_batch,
            parts,
            mark,
            feed,
        )
        .await
    }

    async fn user_not_before(&self, user: &UserId) -> Result<UserNotBefore, StoreError> {
        let st = self.statements().await?;
        let rows: Vec<NotBeforeRow> = self
            .all_rows(
                "reading user not-before",
                &st.select_user_not_before,
                (user.as_str(),),
            )
            .await?;
        let mut marks = UserNotBefore::new();
        for row in rows {
            let Some(micros) = row.not_before else {
                continue;
            };
            let tenant = TenantId::parse("tenant_id", &row.tenant_id).map_err(|_| {
                StoreError::Backend(format!("user {user}: bad tenant_id in not-before"))
            })?;
            marks.insert(tenant, Timestamp::from_micros(micros));
        }
        Ok(marks)
    }

    async fn set_global_not_before(&self, at: Timestamp) -> Result<Timestamp, StoreError> {
        let st = self.statements().await?;
        let micros = at.as_micros();
        let parts = [&st.upsert_global_not_before, &st.insert_feed];
        self.logged2(
            "storing global not-before",
            &st.global_not_before_batch,
            parts,
            (micros, micros),
            feed_row(&RevocationEvent::Global),
        )
        .await?;
        // A later instant written by anyone else wins; report what now stands.
        Ok(self
            .global_not_before()
            .await?
            .map_or(at, |current| current.max(at)))
    }

    async fn global_not_before(&self) -> Result<Option<Timestamp>, StoreError> {
        let st = self.statements().await?;
        let row: Option<(Option<i64>,)> = self
            .first_row(
                "reading global not-before",
                &st.select_global_not_before,
                (),
            )
            .await?;
        Ok(row.and_then(|(micros,)| micros).map(Timestamp::from_micros))
    }

    async fn list_sessions(
        &self,
        filter: &SessionFilter,
        cursor: Option<&[u8]>,
        limit: usize,
    ) -> Result<Page<SessionRecord>, StoreError> {
        let st = self.statements().await?;
        let include_revoked = filter.include_revoked;
        let live = |r: &SessionRecord| include_revoked || !r.is_revoked();
        match &filter.scope {
            SessionScope::UserInTenant(user, tenant) => {
                let values = (user.as_str(), tenant.as_str());
                let ps = &st.select_user_tenant_sessions;
                self.session_page(CursorKind::UserSessions, ps, values, live, cursor, limit)
                    .await
            }
            SessionScope::User(user) => {
                let ps = &st.select_user_sessions;
                self.session_page(
                    CursorKind::UserSessions,
                    ps,
                    (user.as_str(),),
                    live,
                    cursor,
                    limit,
                )
                .await
            }
            SessionScope::Everyone => {
                self.session_page(
                    CursorKind::Sessions,
                    &st.scan_sessions,
                    (),
                    live,
                    cursor,
                    limit,
                )
                .await
            }
        }
    }

    async fn touch_sessions(&self, seen: &[(SessionId, Timestamp)]) -> Result<(), StoreError> {
        let st = self.statements().await?;
        // One write per session, at its latest instant.
        let mut latest: BTreeMap<SessionId, Timestamp> = BTreeMap::new();
        for (id, at) in seen {
            let entry = latest.entry(*id).or_insert(*at);
            *entry = (*entry).max(*at);
        }
        futures::stream::iter(latest)
            .map(|(id, at)| self.touch_one(st, id, at))
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await
            .map(|_| ())
    }

    async fn append_audit(&self, events: &[AuditRecord]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let st = self.statements().await?;
        // Built eagerly: a closure over `&AuditRecord` inside the stream trips the
        // higher-ranked lifetime check of `async_trait`'s boxed future.
        let writes: Vec<_> = events.iter().map(|e| self.insert_audit(st, e)).collect();
        futures::stream::iter(writes)
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await
            .map(|_| ())
    }

    async fn list_audit(
        &self,
        user: Option<&UserId>,
        cursor: Option<&[u8]>,
        limit: usize,
    ) -> Result<Page<AuditRecord>, StoreError> {
        let st = self.statements().await?;
        let scope = user.map_or(AuditScope::All, AuditScope::User);
        self.audit_page(st, scope, cursor, limit).await
    }

    async fn poll_revocations(&self, cursor: Option<&[u8]>) -> Result<FeedBatch, StoreError> {
        let now = feed_now();
        let fresh = |gap| FeedBatch {
            events: Vec::new(),
            cursor: FeedCursor::start(now).encode(),
            gap,
        };
        let Some(cursor) = cursor else {
            return Ok(fresh(false));
        };
        let previous = FeedCursor::decode(cursor)?;
        let st = self.statements().await?;
        let from = previous.polled_at.minus(FEED_OVERLAP);
        let floor = previous.floor.max(from);
        let (first, last) = (buckets::minute(from), buckets::minute(now));
        if last.saturating_sub(first) > FEED_REACH_MINUTES {
            return Ok(fresh(true));
        }
        // A clock that stepped back still reads the minutes the cursor covers.
        let (first, last) = (first.min(last), first.max(last));
        let seen: HashSet<Uuid> = previous.seen.into_iter().collect();
        let mut fetched: Vec<(Timestamp, Uuid, FeedRow)> = self
            .feed_rows(st, first, last, from)
            .await?
            .into_iter()
            .filter_map(|row| {
                let id = Uuid::from(row.at);
                buckets::timeuuid_instant(&id).map(|at| (at, id, row))
            })
            .filter(|(at, _, _)| *at > floor)
            .collect();
        fetched.sort_by_key(|(at, id, _)| (*at, *id));
        // Everything the next poll will read again, newest first so that the cap drops the
        // oldest (which are the first to leave the overlap anyway).
        let next_from = now.minus(FEED_OVERLAP);
        let next_seen: Vec<Uuid> = fetched
            .iter()
            .rev()
            .filter(|(at, _, _)| *at > next_from)
            .map(|(_, id, _)| *id)
            .take(cursor::FEED_SEEN_MAX)
            .collect();
        let events = fetched
            .into_iter()
            .filter(|(_, id, _)| !seen.contains(id))
            .filter_map(|(_, _, row)| row.into_event())
            .collect();
        Ok(FeedBatch {
            events,
            cursor: FeedCursor {
                polled_at: now,
                floor,
                seen: next_seen,
            }
            .encode(),
            gap: false,
        })
    }

    /// Succeeds only while the keyspace answers a read at the configured consistency (one row
    /// of `settings`, a partition every node of a three-node data centre holds): a node's
    /// `system.local` answers while its peers are down, so it would report a cluster that has
    /// lost its quorum as serving. Before the schema exists, it only asks whether a node
    /// answers at all.
    async fn ping(&self) -> Result<(), StoreError> {
        if let Some(st) = self.statements.get() {
            let _: Option<(Option<i64>,)> = self
                .first_row("ping", &st.select_global_not_before, ())
                .await?;
            return Ok(());
        }
        self.session
            .execute_unpaged(&self.ping, ())
            .await
            .map(|_| ())
            .map_err(|e| errors::execution("ping", e))
    }

    async fn sweep(&self, _now: Timestamp) -> Result<u64, StoreError> {
        // TTL expires every row that expires; nothing to sweep.
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::records::{PreviousRefresh, RefreshHash, RefreshSalt, RefreshState, SignIn};

    fn state(generation: u32, byte: u8) -> RefreshState {
        RefreshState {
            generation,
            hash: RefreshHash([byte; 32]),
        }
    }

    fn step(at: i64) -> RotationStep {
        RotationStep {
            expected: state(4, 4),
            next: state(5, 5),
            salt: RefreshSalt([9; 16]),
            at: Timestamp::from_micros(at),
            client: None,
            sign_in: None,
        }
    }

    fn session(current: RefreshState, previous: Option<(RefreshState, i64)>) -> SessionRecord {
        SessionRecord {
            id: SessionId::new(),
            user_id: UserId::parse("user_id", "alice").expect("user"),
            tenant_id: TenantId::none(),
            created_at: Timestamp::from_micros(1),
            last_seen_at: Timestamp::from_micros(1),
            expires_at: Timestamp::from_micros(i64::MAX),
            ip: String::new(),
            user_agent: String::new(),
            device_name: String::new(),
            metadata: BTreeMap::new(),
            refresh_generation: current.generation,
            refresh_hash: current.hash,
            refresh_salt: Some(RefreshSalt([9; 16])),
            previous_refresh: previous.map(|(state, at)| PreviousRefresh {
                state,
                rotated_at: Timestamp::from_micros(at),
            }),
            idle_timeout: None,
            sign_in: SignIn {
                auth_time: Timestamp::from_micros(1),
                acr: String::new(),
                amr: Vec::new(),
            },
            revoked_at: None,
            revoke_reason: String::new(),
        }
    }

    #[test]
    fn an_unknown_rotation_is_won_only_if_the_next_state_carries_its_own_instant() {
        let mine = step(1_000);
        let by_me = session(state(5, 5), Some((state(4, 4), 1_000)));
        assert_eq!(settled(by_me, &mine), Some(Rotation::Won));
        // Another racer's identical next state, stamped with its own instant.
        let by_other = session(state(5, 5), Some((state(4, 4), 1_001)));
        assert!(matches!(settled(by_other, &mine), Some(Rotation::Lost(_))));
        // Still the expected state: the CAS did not apply, try again.
        assert_eq!(settled(session(state(4, 4), None), &mine), None);
        // Moved on past the next state: lost.
        let later = session(state(6, 6), Some((state(5, 5), 2_000)));
        assert!(matches!(settled(later, &mine), Some(Rotation::Lost(_))));
        let mut revoked = session(state(4, 4), None);
        revoked.revoked_at = Some(Timestamp::from_micros(1_500));
        assert_eq!(settled(revoked, &mine), Some(Rotation::Revoked));
    }
}
