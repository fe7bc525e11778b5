//! The embedded store: a single-node, durable backend on redb, under `--data-dir`.
//!
//! Every acknowledged write has been fsynced (`Durability::Immediate`), and concurrent writes
//! share commits through the [`writer`] thread. Reads run on the blocking pool so no disk I/O
//! happens on the async runtime. Expired sessions, stale revocation marks and old audit events
//! are removed by [`Store::sweep`], which the service calls periodically. redb locks its file,
//! so exactly one process owns a data directory; that is why the revocation feed is empty here.

mod codec;
mod keys;
mod reader;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle,
    WriteTransaction,
};

use super::{
    AuditRecord, FeedBatch, Page, Revocation, Rotation, RotationStep, SessionFilter, SessionRecord,
    Store, StoreError, UserNotBefore,
};
use crate::model::clock::SharedClock;
use crate::model::ids::{SessionId, TenantId, UserId};
use crate::model::time::Timestamp;
use keys::Standing;
use reader::Readers;
use writer::Writer;

const SESSIONS: TableDefinition<u128, &[u8]> = TableDefinition::new("sessions");
/// The per-user index: a user's sessions, split by standing (see [`keys::Standing`]), and their
/// audit events (see [`keys::user_audit_prefix`]).
const BY_USER: TableDefinition<&[u8], ()> = TableDefinition::new("sessions_by_user_v2");
/// The index of earlier versions, without the standing; rebuilt into [`BY_USER`] on open.
const BY_USER_V1: TableDefinition<&[u8], ()> = TableDefinition::new("sessions_by_user");
const EXPIRY: TableDefinition<&[u8], ()> = TableDefinition::new("session_expiry");
/// `last_seen_at + idle_timeout ‖ id` of every session with an idle timeout, so the sweeper
/// finds idle sessions without reading the others; moved by every write of `last_seen_at`.
const IDLE: TableDefinition<&[u8], ()> = TableDefinition::new("session_idle_deadline");
const USER_NOT_BEFORE: TableDefinition<&[u8], (i64, i64)> = TableDefinition::new("user_not_before");
const SETTINGS: TableDefinition<&str, i64> = TableDefinition::new("settings");
const AUDIT: TableDefinition<&[u8], &[u8]> = TableDefinition::new("audit");
/// The per-user audit index of earlier versions, a table of its own; moved into [`BY_USER`] on
/// open.
const AUDIT_BY_USER_V1: TableDefinition<&[u8], ()> = TableDefinition::new("audit_by_user");

const GLOBAL_NOT_BEFORE: &str = "global_not_before";
/// Most rows one sweep transaction removes, so a large backlog never holds the writer long.
const SWEEP_BATCH: usize = 5000;
/// How many rows a page may skip (expired or filtered out) before it returns short.
const SCAN_BUDGET_FACTOR: usize = 10;

/// Tunables of the embedded store.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// How long audit events are kept.
    pub audit_retention: Duration,
    /// Bytes of redb's page cache (its own default, 1 GiB, would dominate the process).
    pub cache_bytes: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            audit_retention: Duration::from_secs(90 * 24 * 3600),
            cache_bytes: 64 << 20,
        }
    }
}

/// The redb-backed store.
pub struct EmbeddedStore {
    // Dropped before `writer` (declaration order), so the writer thread, joined when `writer`
    // drops, holds the last handle and closes the file before the store is gone.
    db: Arc<Database>,
    writer: Writer,
    readers: Readers,
    options: EmbeddedOptions,
    path: PathBuf,
    /// The service's clock: every expiry this store decides (reads treat a row past its end
    /// as absent) is decided by it, as the domain's are.
    clock: SharedClock,
}

fn backend<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir/sessiond.redb`. A file that is not a redb database,
    /// is corrupt, or is locked by another process is an error that names the path; the file's
    /// integrity is checked on open so a damaged file is refused rather than trusted. A new
    /// directory is made 0700 and the file is always 0600, whatever the umask. Expiry is
    /// judged by `clock`, the one clock the service runs on.
    pub fn open(
        dir: &Path,
        options: EmbeddedOptions,
        clock: SharedClock,
    ) -> Result<Self, StoreError> {
        crate::permissions::ensure_private_dir(dir, "data directory")
            .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join("sessiond.redb");
        // redb creates its file with the process umask (0644, or 0666 under umask 000); the
        // file holds every session, so it is made owner-only before redb opens it.
        crate::permissions::ensure_private_file(&path, "store file")
            .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", path.display())))?;
        let opened = std::panic::catch_unwind(|| {
            Database::builder()
                .set_check_integrity_on_open(true)
                .set_cache_size(options.cache_bytes)
                .create(&path)
        });
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(e)) => {
                return Err(StoreError::Backend(format!(
                    "cannot open {}: {e}",
                    path.display()
                )));
            }
            Err(_) => {
                return Err(StoreError::Backend(format!(
                    "cannot open {}: the file is damaged",
                    path.display()
                )));
            }
        };
        let db = Arc::new(db);
        create_tables(&db)?;
        let writer = Writer::start(db.clone())?;
        let readers = Readers::start(db.clone())?;
        Ok(Self {
            db,
            writer,
            readers,
            options,
            path,
            clock,
        })
    }

    /// Where the database file lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A scan (listings, counts): on the blocking pool, so a long one holds up no point read.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&redb::ReadTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(backend)?;
            f(&txn)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("read task failed: {e}")))?
    }

    /// A read of a few rows (a session, a user's marks, a setting): batched on the reader
    /// threads, the cheap way off the runtime for the reads behind every first-sight check.
    async fn point_read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&redb::ReadTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        self.readers.read(f).await
    }
}

/// A user's "not before" marks (the rows under `prefix`) as of `now`.
fn marks_of(
    txn: &redb::ReadTransaction,
    prefix: &[u8],
    now: Timestamp,
) -> Result<UserNotBefore, StoreError> {
    let table = txn.open_table(USER_NOT_BEFORE).map_err(backend)?;
    marks_in(&table, prefix, now)
}

/// `create_session_capped` in the writer's transaction: one closure on the one writer thread,
/// so the count, the evictions and the insert cannot interleave with another `Issue` of the
/// same user. Returns the evicted ids.
fn capped_insert(
    txn: &WriteTransaction,
    record: &SessionRecord,
    cap: usize,
    reason: &str,
    audits: &[AuditRecord],
    now: Timestamp,
) -> Result<Vec<SessionId>, StoreError> {
    let mut evicted = Vec::new();
    if cap > 0 {
        let active = {
            let by_user = txn.open_table(BY_USER).map_err(backend)?;
            let sessions = txn.open_table(SESSIONS).map_err(backend)?;
            let prefix = keys::user_standing_prefix(&record.user_id, Standing::Active);
            indexed(&by_user, &sessions, &prefix, now)?
        };
        for old in active.iter().skip(cap - 1) {
            if let Revocation::Revoked(_) =
                revoke_in(txn, old.id, record.created_at, reason, now, Listing::Drop)?
            {
                evicted.push(old.id);
            }
        }
    }
    insert_session(txn, record)?;
    insert_audits(txn, audits)?;
    Ok(evicted)
}

/// `marks_of` on an open table, of a read or of a write transaction.
fn marks_in(
    table: &impl ReadableTable<&'static [u8], (i64, i64)>,
    prefix: &[u8],
    now: Timestamp,
) -> Result<UserNotBefore, StoreError> {
    let end = keys::prefix_end(prefix);
    let mut out = UserNotBefore::new();
    for entry in table.range(prefix..end.as_slice()).map_err(backend)? {
        let (k, v) = entry.map_err(backend)?;
        // A mark past its keep-until is absent, as every expired row is (and as the ScyllaDB
        // backend's time-to-live makes it), until the sweeper removes it.
        let (at, keep_until) = v.value();
        if keep_until <= now.as_micros() {
            continue;
        }
        let tenant_bytes = k
            .value()
            .get(prefix.len()..k.value().len().saturating_sub(1))
            .unwrap_or_default();
        let tenant = std::str::from_utf8(tenant_bytes)
            .ok()
            .and_then(|t| TenantId::parse("tenant_id", t).ok())
            .ok_or_else(|| StoreError::Backend("corrupt not-before key".into()))?;
        out.insert(tenant, Timestamp::from_micros(at));
    }
    Ok(out)
}

fn create_tables(db: &Database) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(backend)?;
    txn.open_table(SESSIONS).map_err(backend)?;
    txn.open_table(BY_USER).map_err(backend)?;
    txn.open_table(EXPIRY).map_err(backend)?;
    txn.open_table(IDLE).map_err(backend)?;
    txn.open_table(USER_NOT_BEFORE).map_err(backend)?;
    txn.open_table(SETTINGS).map_err(backend)?;
    txn.open_table(AUDIT).map_err(backend)?;
    if txn.delete_table(BY_USER_V1).map_err(backend)? {
        rebuild_user_index(&txn)?;
    }
    move_audit_index(&txn)?;
    txn.commit().map_err(backend)
}

/// Moves the per-user audit index of a file an earlier version wrote into the per-user index.
fn move_audit_index(txn: &WriteTransaction) -> Result<(), StoreError> {
    let exists = txn
        .list_tables()
        .map_err(backend)?
        .any(|t| t.name() == AUDIT_BY_USER_V1.name());
    if !exists {
        return Ok(());
    }
    {
        let old = txn.open_table(AUDIT_BY_USER_V1).map_err(backend)?;
        let mut by_user = txn.open_table(BY_USER).map_err(backend)?;
        for entry in old.iter().map_err(backend)? {
            let (k, _) = entry.map_err(backend)?;
            // A key of another shape was never written by this table's code; it has no user
            // to list it under.
            if let Some(moved) = keys::audit_entry_from_v1(k.value()) {
                by_user.insert(moved.as_slice(), ()).map_err(backend)?;
            }
        }
    }
    txn.delete_table(AUDIT_BY_USER_V1).map_err(backend)?;
    Ok(())
}

/// Rebuilds the per-user index from the sessions table, for a file an earlier version wrote.
fn rebuild_user_index(txn: &WriteTransaction) -> Result<(), StoreError> {
    let sessions = txn.open_table(SESSIONS).map_err(backend)?;
    let mut by_user = txn.open_table(BY_USER).map_err(backend)?;
    for entry in sessions.iter().map_err(backend)? {
        let (k, v) = entry.map_err(backend)?;
        let id = SessionId::from_uuid(uuid::Uuid::from_u128(k.value()));
        let record = codec::decode_session(id, v.value())?;
        by_user
            .insert(index_key(&record).as_slice(), ())
            .map_err(backend)?;
    }
    Ok(())
}

/// The per-user index key of a record as it now stands.
fn index_key(r: &SessionRecord) -> Vec<u8> {
    let standing = if r.is_revoked() {
        Standing::Revoked
    } else {
        Standing::Active
    };
    keys::by_user(&r.user_id, &r.tenant_id, standing, r.created_at, r.id)
}

fn insert_session(txn: &WriteTransaction, record: &SessionRecord) -> Result<(), StoreError> {
    let bytes = codec::encode_session(record)?;
    let mut sessions = txn.open_table(SESSIONS).map_err(backend)?;
    sessions
        .insert(id_key(record.id), bytes.as_slice())
        .map_err(backend)?;
    let mut by_user = txn.open_table(BY_USER).map_err(backend)?;
    by_user
        .insert(index_key(record).as_slice(), ())
        .map_err(backend)?;
    let mut expiry = txn.open_table(EXPIRY).map_err(backend)?;
    let k = keys::expiry(record.expires_at, record.id);
    expiry.insert(k.as_slice(), ()).map_err(backend)?;
    reindex_idle(txn, None, record)
}

/// Appends audit events to the log and to their users' index of it.
fn insert_audits(txn: &WriteTransaction, events: &[AuditRecord]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut audit = txn.open_table(AUDIT).map_err(backend)?;
    let mut by_user = txn.open_table(BY_USER).map_err(backend)?;
    for e in events {
        let bytes = codec::encode_audit(e)?;
        let k = keys::audit(&[], e.at, e.event_id);
        audit
            .insert(k.as_slice(), bytes.as_slice())
            .map_err(backend)?;
        if !e.user_id.is_empty() {
            let k = keys::audit(&keys::user_audit_prefix(&e.user_id), e.at, e.event_id);
            by_user.insert(k.as_slice(), ()).map_err(backend)?;
        }
    }
    Ok(())
}

/// The key of a session in the idle index, if it has an idle timeout.
fn idle_key(record: &SessionRecord) -> Option<Vec<u8>> {
    record
        .idle_timeout
        .map(|idle| keys::expiry(record.last_seen_at.plus(idle), record.id))
}

/// Moves a session's idle-index entry from `before` (its key until now, if any) to where
/// `new` has it.
fn reindex_idle(
    txn: &WriteTransaction,
    before: Option<Vec<u8>>,
    new: &SessionRecord,
) -> Result<(), StoreError> {
    let after = idle_key(new);
    if before == after {
        return Ok(());
    }
    let mut idle = txn.open_table(IDLE).map_err(backend)?;
    if let Some(k) = before {
        idle.remove(k.as_slice()).map_err(backend)?;
    }
    if let Some(k) = after {
        idle.insert(k.as_slice(), ()).map_err(backend)?;
    }
    Ok(())
}

/// The unexpired sessions under one index prefix, newest first.
fn indexed<T: ReadableTable<&'static [u8], ()>, S: ReadableTable<u128, &'static [u8]>>(
    by_user: &T,
    sessions: &S,
    prefix: &[u8],
    now: Timestamp,
) -> Result<Vec<SessionRecord>, StoreError> {
    let end = keys::prefix_end(prefix);
    let mut out = Vec::new();
    for entry in by_user.range(prefix..end.as_slice()).map_err(backend)? {
        let (k, _) = entry.map_err(backend)?;
        let Some(id) = keys::session_of_by_user(k.value()) else {
            continue;
        };
        if let Some(r) = load(sessions, id)?.and_then(|r| live(r, now)) {
            out.push(r);
        }
    }
    out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    Ok(out)
}

fn id_key(id: SessionId) -> u128 {
    id.as_uuid().as_u128()
}

fn live(record: SessionRecord, now: Timestamp) -> Option<SessionRecord> {
    (record.expires_at > now).then_some(record)
}

/// Reads a session inside any transaction that can open tables.
fn load<T: ReadableTable<u128, &'static [u8]>>(
    table: &T,
    id: SessionId,
) -> Result<Option<SessionRecord>, StoreError> {
    match table.get(id_key(id)).map_err(backend)? {
        Some(guard) => codec::decode_session(id, guard.value()).map(Some),
        None => Ok(None),
    }
}

/// What a revocation does to the session's entry in its user's index.
#[derive(Clone, Copy)]
enum Listing {
    /// Moved to the revoked part, kept until the session expires (for the admin listing).
    Keep,
    /// Removed (evictions by the cap), as on ScyllaDB.
    Drop,
}

fn revoke_in(
    txn: &WriteTransaction,
    id: SessionId,
    at: Timestamp,
    reason: &str,
    now: Timestamp,
    listing: Listing,
) -> Result<Revocation, StoreError> {
    let mut sessions = txn.open_table(SESSIONS).map_err(backend)?;
    let Some(mut record) = load(&sessions, id)?.and_then(|r| live(r, now)) else {
        return Ok(Revocation::NotFound);
    };
    if record.is_revoked() {
        return Ok(Revocation::AlreadyRevoked(Box::new(record)));
    }
    let active_key = index_key(&record);
    record.revoked_at = Some(at);
    record.revoke_reason = reason.to_owned();
    let bytes = codec::encode_session(&record)?;
    sessions
        .insert(id_key(id), bytes.as_slice())
        .map_err(backend)?;
    // Out of the active part of the user's index at once, so per-user reads stay bounded.
    let mut by_user = txn.open_table(BY_USER).map_err(backend)?;
    by_user.remove(active_key.as_slice()).map_err(backend)?;
    if let Listing::Keep = listing {
        by_user
            .insert(index_key(&record).as_slice(), ())
            .map_err(backend)?;
    }
    Ok(Revocation::Revoked(Box::new(record)))
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn create_session(&self, record: &SessionRecord) -> Result<(), StoreError> {
        let record = record.clone();
        self.writer
            .write(move |txn| insert_session(txn, &record))
            .await
    }

    async fn create_session_capped(
        &self,
        record: &SessionRecord,
        cap: usize,
        reason: &str,
        audits: &[AuditRecord],
    ) -> Result<Vec<SessionId>, StoreError> {
        let record = record.clone();
        let reason = reason.to_owned();
        let audits = audits.to_vec();
        let now = self.clock.now();
        self.writer
            .write(move |txn| capped_insert(txn, &record, cap, &reason, &audits, now))
            .await
    }

    async fn create_session_capped_with_marks(
        &self,
        record: &SessionRecord,
        cap: usize,
        reason: &str,
        audits: &[AuditRecord],
    ) -> Result<(Vec<SessionId>, Option<UserNotBefore>), StoreError> {
        let prefix = keys::user_prefix(&record.user_id);
        let record = record.clone();
        let reason = reason.to_owned();
        let audits = audits.to_vec();
        let now = self.clock.now();
        // The marks are read in the write's own transaction: the writer already holds it, so
        // the issuing replica keeps them without a second hand-off to the store's readers.
        self.writer
            .write(move |txn| {
                let evicted = capped_insert(txn, &record, cap, &reason, &audits, now)?;
                let marks = txn
                    .open_table(USER_NOT_BEFORE)
                    .map_err(backend)
                    .and_then(|table| marks_in(&table, &prefix, now))
                    .ok();
                Ok((evicted, marks))
            })
            .await
    }

    async fn get_session(&self, id: SessionId) -> Result<Option<SessionRecord>, StoreError> {
        let now = self.clock.now();
        self.point_read(move |txn| {
            let sessions = txn.open_table(SESSIONS).map_err(backend)?;
            Ok(load(&sessions, id)?.and_then(|r| live(r, now)))
        })
        .await
    }

    async fn list_user_sessions(
        &self,
        user: &UserId,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let prefix = match tenant {
            Some(t) => keys::user_standing_tenant_prefix(user, Standing::Active, t),
            None => keys::user_standing_prefix(user, Standing::Active),
        };
        let now = self.clock.now();
        self.read(move |txn| {
            let by_user = txn.open_table(BY_USER).map_err(backend)?;
            let sessions = txn.open_table(SESSIONS).map_err(backend)?;
            indexed(&by_user, &sessions, &prefix, now)
        })
        .await
    }

    async fn rotate_refresh(
        &self,
        id: SessionId,
        step: &RotationStep,
        audits: &[AuditRecord],
    ) -> Result<Rotation, StoreError> {
        let step = step.clone();
        let audits = audits.to_vec();
        let now = self.clock.now();
        self.writer
            .write(move |txn| {
                let mut sessions = txn.open_table(SESSIONS).map_err(backend)?;
                let Some(record) = load(&sessions, id)?.and_then(|r| live(r, now)) else {
                    return Ok(Rotation::Gone);
                };
                if record.is_revoked() {
                    return Ok(Rotation::Revoked);
                }
                if record.refresh_state() != step.expected {
                    return Ok(Rotation::Lost(Box::new(record)));
                }
                let before = idle_key(&record);
                let record = step.applied_to(record);
                reindex_idle(txn, before, &record)?;
                let bytes = codec::encode_session(&record)?;
                sessions
                    .insert(id_key(id), bytes.as_slice())
                    .map_err(backend)?;
                insert_audits(txn, &audits)?;
                Ok(Rotation::Won)
            })
            .await
    }

    async fn revoke_session(
        &self,
        id: SessionId,
        at: Timestamp,
        reason: &str,
    ) -> Result<Revocation, StoreError> {
        let reason = reason.to_owned();
        let now = self.clock.now();
        self.writer
            .write(move |txn| revoke_in(txn, id, at, &reason, now, Listing::Keep))
            .await
    }

    async fn revoke_sessions(
        &self,
        ids: &[SessionId],
        at: Timestamp,
        reason: &str,
    ) -> Result<Vec<SessionId>, StoreError> {
        let ids = ids.to_vec();
        let reason = reason.to_owned();
        let now = self.clock.now();
        self.writer
            .write(move |txn| {
                let mut revoked = Vec::new();
                for id in ids {
                    if let Revocation::Revoked(_) =
                        revoke_in(txn, id, at, &reason, now, Listing::Keep)?
                    {
                        revoked.push(id);
                    }
                }
                Ok(revoked)
            })
            .await
    }

    async fn set_user_not_before(
        &self,
        user: &UserId,
        tenant: &TenantId,
        at: Timestamp,
        keep_until: Timestamp,
    ) -> Result<(), StoreError> {
        let key = keys::user_tenant_prefix(user, tenant);
        self.writer
            .write(move |txn| {
                let mut table = txn.open_table(USER_NOT_BEFORE).map_err(backend)?;
                let previous = table
                    .get(key.as_slice())
                    .map_err(backend)?
                    .map(|g| g.value());
                // Never move a mark backwards, and keep it as long as the longest-lived need.
                let (at, keep) = match previous {
                    Some((p_at, p_keep)) => {
                        (p_at.max(at.as_micros()), p_keep.max(keep_until.as_micros()))
                    }
                    None => (at.as_micros(), keep_until.as_micros()),
                };
                table.insert(key.as_slice(), (at, keep)).map_err(backend)?;
                Ok(())
            })
            .await
    }

    async fn user_not_before(&self, user: &UserId) -> Result<UserNotBefore, StoreError> {
        let prefix = keys::user_prefix(user);
        let now = self.clock.now();
        self.point_read(move |txn| marks_of(txn, &prefix, now))
            .await
    }

    async fn session_and_marks(
        &self,
        id: SessionId,
        user: &UserId,
    ) -> Result<(Option<SessionRecord>, UserNotBefore), StoreError> {
        let prefix = keys::user_prefix(user);
        let now = self.clock.now();
        self.point_read(move |txn| {
            let sessions = txn.open_table(SESSIONS).map_err(backend)?;
            let session = load(&sessions, id)?.and_then(|r| live(r, now));
            Ok((session, marks_of(txn, &prefix, now)?))
        })
        .await
    }

    async fn set_global_not_before(&self, at: Timestamp) -> Result<Timestamp, StoreError> {
        self.writer
            .write(move |txn| {
                let mut settings = txn.open_table(SETTINGS).map_err(backend)?;
                let previous = settings
                    .get(GLOBAL_NOT_BEFORE)
                    .map_err(backend)?
                    .map(|g| g.value());
                let value = previous.unwrap_or(i64::MIN).max(at.as_micros());
                settings.insert(GLOBAL_NOT_BEFORE, value).map_err(backend)?;
                Ok(Timestamp::from_micros(value))
            })
            .await
    }

    async fn global_not_before(&self) -> Result<Option<Timestamp>, StoreError> {
        self.point_read(|txn| {
            let settings = txn.open_table(SETTINGS).map_err(backend)?;
            let value = settings
                .get(GLOBAL_NOT_BEFORE)
                .map_err(backend)?
                .map(|g| g.value());
            Ok(value.map(Timestamp::from_micros))
        })
        .await
    }

    async fn list_sessions(
        &self,
        filter: &SessionFilter,
        cursor: Option<&[u8]>,
        limit: usize,
    ) -> Result<Page<SessionRecord>, StoreError> {
        let filter = filter.clone();
        let cursor = cursor.map(<[u8]>::to_vec);
        let now = self.clock.now();
        self.read(move |txn| match filter.scope.user() {
            Some(user) => page_of_user(txn, user, &filter, cursor, limit, now),
            None => page_of_all(txn, &filter, cursor, limit, now),
        })
        .await
    }

    async fn touch_sessions(&self, seen: &[(SessionId, Timestamp)]) -> Result<(), StoreError> {
        let seen = seen.to_vec();
        let now = self.clock.now();
        self.writer
            .write(move |txn| {
                let mut sessions = txn.open_table(SESSIONS).map_err(backend)?;
                for (id, at) in seen {
                    let Some(mut record) = load(&sessions, id)?.and_then(|r| live(r, now)) else {
                        continue;
                    };
                    if at > record.last_seen_at {
                        let before = idle_key(&record);
                        record.last_seen_at = at;
                        reindex_idle(txn, before, &record)?;
                        let bytes = codec::encode_session(&record)?;
                        sessions
                            .insert(id_key(id), bytes.as_slice())
                            .map_err(backend)?;
                    }
                }
                Ok(())
            })
            .await
    }

    async fn append_audit(&self, events: &[AuditRecord]) -> Result<(), StoreError> {
        let events = events.to_vec();
        self.writer
            .write(move |txn| insert_audits(txn, &events))
            .await
    }

    async fn list_audit(
        &self,
        user: Option<&UserId>,
        cursor: Option<&[u8]>,
        limit: usize,
    ) -> Result<Page<AuditRecord>, StoreError> {
        let prefix = user
            .map(|u| keys::user_audit_prefix(u.as_str()))
            .unwrap_or_default();
        let cursor = cursor.map(<[u8]>::to_vec);
        self.read(move |txn| audit_page(txn, &prefix, cursor, limit))
            .await
    }

    async fn poll_revocations(&self, _cursor: Option<&[u8]>) -> Result<FeedBatch, StoreError> {
        // One process owns the file, and it invalidates its own caches as it revokes.
        Ok(FeedBatch::default())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.point_read(|txn| {
            txn.open_table(SETTINGS).map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn approx_live_sessions(&self) -> Result<Option<u64>, StoreError> {
        // redb keeps each table's length in its root: O(1), no scan. Revoked and expired
        // sessions count until the sweeper removes them, hence "approx".
        self.read(|txn| {
            let sessions = txn.open_table(SESSIONS).map_err(backend)?;
            sessions.len().map(Some).map_err(backend)
        })
        .await
    }

    async fn sweep(&self, now: Timestamp) -> Result<u64, StoreError> {
        let audit_cutoff = now.minus(self.options.audit_retention);
        let mut total = 0;
        loop {
            let removed = self
                .writer
                .write(move |txn| sweep_batch(txn, now, audit_cutoff))
                .await?;
            total += removed as u64;
            if removed < SWEEP_BATCH {
                return Ok(total);
            }
        }
    }
}

fn page_of_all(
    txn: &redb::ReadTransaction,
    filter: &SessionFilter,
    cursor: Option<Vec<u8>>,
    limit: usize,
    now: Timestamp,
) -> Result<Page<SessionRecord>, StoreError> {
    let start = match cursor {
        Some(c) => {
            let raw: [u8; 16] = c.as_slice().try_into().map_err(|_| StoreError::BadCursor)?;
            u128::from_be_bytes(raw).checked_add(1)
        }
        None => Some(0),
    };
    let Some(start) = start else {
        return Ok(Page {
            items: Vec::new(),
            next: None,
        });
    };
    let sessions = txn.open_table(SESSIONS).map_err(backend)?;
    let mut items = Vec::new();
    let mut budget = limit.saturating_mul(SCAN_BUDGET_FACTOR).max(1000);
    for entry in sessions.range(start..).map_err(backend)? {
        let (k, v) = entry.map_err(backend)?;
        let id = SessionId::from_uuid(uuid::Uuid::from_u128(k.value()));
        if items.len() == limit || budget == 0 {
            // There is at least one more row: the next page starts after the last one read.
            let last = items
                .last()
                .map(|r: &SessionRecord| id_key(r.id))
                .unwrap_or(k.value().wrapping_sub(1));
            return Ok(Page {
                items,
                next: Some(last.to_be_bytes().to_vec()),
            });
        }
        budget -= 1;
        let record = codec::decode_session(id, v.value())?;
        if record.expires_at > now && (filter.include_revoked || !record.is_revoked()) {
            items.push(record);
        }
    }
    Ok(Page { items, next: None })
}

fn page_of_user(
    txn: &redb::ReadTransaction,
    user: &UserId,
    filter: &SessionFilter,
    cursor: Option<Vec<u8>>,
    limit: usize,
    now: Timestamp,
) -> Result<Page<SessionRecord>, StoreError> {
    let standings: &[Standing] = if filter.include_revoked {
        &[Standing::Active, Standing::Revoked]
    } else {
        &[Standing::Active]
    };
    if let Some(c) = &cursor {
        let user_prefix = keys::user_prefix(user);
        if !c.starts_with(&user_prefix) || c.len() <= user_prefix.len() {
            return Err(StoreError::BadCursor);
        }
    }
    let by_user = txn.open_table(BY_USER).map_err(backend)?;
    let sessions = txn.open_table(SESSIONS).map_err(backend)?;
    let mut items = Vec::new();
    let mut last_key: Option<Vec<u8>> = None;
    let mut budget = limit.saturating_mul(SCAN_BUDGET_FACTOR).max(1000);
    // The parts are disjoint and in byte order (active before revoked), so one key is a
    // position in the whole listing.
    for &standing in standings {
        let prefix = match filter.scope.tenant() {
            Some(t) => keys::user_standing_tenant_prefix(user, standing, t),
            None => keys::user_standing_prefix(user, standing),
        };
        let end = keys::prefix_end(&prefix);
        let lower = match &cursor {
            Some(c) if c.as_slice() >= end.as_slice() => continue,
            Some(c) if c.as_slice() >= prefix.as_slice() => std::ops::Bound::Excluded(c.as_slice()),
            _ => std::ops::Bound::Included(prefix.as_slice()),
        };
        let range = (lower, std::ops::Bound::Excluded(end.as_slice()));
        for entry in by_user.range::<&[u8]>(range).map_err(backend)? {
            let (k, _) = entry.map_err(backend)?;
            if items.len() == limit || budget == 0 {
                return Ok(Page {
                    items,
                    next: last_key,
                });
            }
            budget -= 1;
            last_key = Some(k.value().to_vec());
            let Some(id) = keys::session_of_by_user(k.value()) else {
                continue;
            };
            if let Some(record) = load(&sessions, id)?
                && record.expires_at > now
            {
                items.push(record);
            }
        }
    }
    Ok(Page { items, next: None })
}

fn audit_page(
    txn: &redb::ReadTransaction,
    prefix: &[u8],
    cursor: Option<Vec<u8>>,
    limit: usize,
) -> Result<Page<AuditRecord>, StoreError> {
    let upper = match &cursor {
        Some(c) if c.starts_with(prefix) && c.len() == prefix.len() + 24 => {
            std::ops::Bound::Excluded(c.clone())
        }
        Some(_) => return Err(StoreError::BadCursor),
        None => std::ops::Bound::Excluded(keys::prefix_end(prefix)),
    };
    let lower = std::ops::Bound::Included(prefix.to_vec());
    let audit = txn.open_table(AUDIT).map_err(backend)?;
    let by_user = txn.open_table(BY_USER).map_err(backend)?;
    let mut items = Vec::new();
    let bounds = (
        lower.as_ref().map(Vec::as_slice),
        upper.as_ref().map(Vec::as_slice),
    );
    let keys_iter: Vec<Vec<u8>> = if prefix.is_empty() {
        audit
            .range::<&[u8]>(bounds)
            .map_err(backend)?
            .rev()
            .take(limit + 1)
            .map(|e| e.map(|(k, _)| k.value().to_vec()).map_err(backend))
            .collect::<Result<_, _>>()?
    } else {
        by_user
            .range::<&[u8]>(bounds)
            .map_err(backend)?
            .rev()
            .take(limit + 1)
            .map(|e| e.map(|(k, _)| k.value().to_vec()).map_err(backend))
            .collect::<Result<_, _>>()?
    };
    let more = keys_iter.len() > limit;
    for key in keys_iter.iter().take(limit) {
        let Some(tail) = key.get(prefix.len()..) else {
            continue;
        };
        let Some(at) = keys::time_from(tail) else {
            continue;
        };
        let Some(id_bytes) = tail.get(8..24).and_then(|b| <[u8; 16]>::try_from(b).ok()) else {
            continue;
        };
        let event_id = uuid::Uuid::from_bytes(id_bytes);
        let main_key = keys::audit(&[], at, event_id);
        if let Some(v) = audit.get(main_key.as_slice()).map_err(backend)? {
            items.push(codec::decode_audit(at, event_id, v.value())?);
        }
    }
    let next = if more {
        keys_iter.get(limit.saturating_sub(1)).cloned()
    } else {
        None
    };
    Ok(Page { items, next })
}

fn sweep_batch(
    txn: &WriteTransaction,
    now: Timestamp,
    audit_cutoff: Timestamp,
) -> Result<usize, StoreError> {
    let mut removed = sweep_expired(txn, now)?;
    if removed < SWEEP_BATCH {
        removed += sweep_idle(txn, now, SWEEP_BATCH - removed)?;
    }
    if removed < SWEEP_BATCH {
        removed += sweep_audit(txn, audit_cutoff, SWEEP_BATCH - removed)?;
    }
    if removed < SWEEP_BATCH {
        let mut marks = txn.open_table(USER_NOT_BEFORE).map_err(backend)?;
        let before = marks.len().map_err(backend)?;
        marks
            .retain(|_, (_, keep_until)| keep_until > now.as_micros())
            .map_err(backend)?;
        let after = marks.len().map_err(backend)?;
        removed += usize::try_from(before.saturating_sub(after)).unwrap_or(0);
    }
    Ok(removed)
}

/// Removes up to a batch of sessions past their absolute end.
fn sweep_expired(txn: &WriteTransaction, now: Timestamp) -> Result<usize, StoreError> {
    let mut removed = 0;
    let mut expiry = txn.open_table(EXPIRY).map_err(backend)?;
    let mut idle = txn.open_table(IDLE).map_err(backend)?;
    let mut sessions = txn.open_table(SESSIONS).map_err(backend)?;
    let mut by_user = txn.open_table(BY_USER).map_err(backend)?;
    let upper = keys::expiry(now, SessionId::from_uuid(uuid::Uuid::max()));
    let due: Vec<Vec<u8>> = expiry
        .range::<&[u8]>(..=upper.as_slice())
        .map_err(backend)?
        .take(SWEEP_BATCH)
        .map(|e| e.map(|(k, _)| k.value().to_vec()).map_err(backend))
        .collect::<Result<_, _>>()?;
    for key in due {
        expiry.remove(key.as_slice()).map_err(backend)?;
        removed += 1;
        let Some(id) = keys::session_of_by_user(&key) else {
            continue;
        };
        if let Some(record) = load(&sessions, id)? {
            sessions.remove(id_key(id)).map_err(backend)?;
            by_user
                .remove(index_key(&record).as_slice())
                .map_err(backend)?;
            if let Some(k) = idle_key(&record) {
                idle.remove(k.as_slice()).map_err(backend)?;
            }
        }
    }
    Ok(removed)
}

/// Removes up to `max` sessions whose idle deadline has passed by `now`: over for every
/// surface already, they need not wait for their absolute end.
fn sweep_idle(txn: &WriteTransaction, now: Timestamp, max: usize) -> Result<usize, StoreError> {
    let mut idle = txn.open_table(IDLE).map_err(backend)?;
    // Strictly before `now`: a session is idle once its deadline has passed, not at it.
    let upper = keys::expiry(now, SessionId::from_uuid(uuid::Uuid::nil()));
    let due: Vec<Vec<u8>> = idle
        .range::<&[u8]>(..upper.as_slice())
        .map_err(backend)?
        .take(max)
        .map(|e| e.map(|(k, _)| k.value().to_vec()).map_err(backend))
        .collect::<Result<_, _>>()?;
    let mut sessions = txn.open_table(SESSIONS).map_err(backend)?;
    let mut by_user = txn.open_table(BY_USER).map_err(backend)?;
    let mut expiry = txn.open_table(EXPIRY).map_err(backend)?;
    let mut removed = 0;
    for key in due {
        idle.remove(key.as_slice()).map_err(backend)?;
        let Some(id) = keys::session_of_by_user(&key) else {
            continue;
        };
        let Some(record) = load(&sessions, id)? else {
            continue;
        };
        if idle_key(&record).as_deref() != Some(key.as_slice())
            || !record.idle_by(record.last_seen_at, now)
        {
            // Not this session's current deadline (a write moved it; that key stays).
            if let Some(current) = idle_key(&record)
                && current == key
            {
                idle.insert(key.as_slice(), ()).map_err(backend)?;
            }
            continue;
        }
        sessions.remove(id_key(id)).map_err(backend)?;
        by_user
            .remove(index_key(&record).as_slice())
            .map_err(backend)?;
        expiry
            .remove(keys::expiry(record.expires_at, id).as_slice())
            .map_err(backend)?;
        removed += 1;
    }
    Ok(removed)
}

fn sweep_audit(txn: &WriteTransaction, cutoff: Timestamp, max: usize) -> Result<usize, StoreError> {
    let mut audit = txn.open_table(AUDIT).map_err(backend)?;
    let mut by_user = txn.open_table(BY_USER).map_err(backend)?;
    let upper = keys::audit(&[], cutoff, uuid::Uuid::nil());
    let old: Vec<(Vec<u8>, String)> = audit
        .range::<&[u8]>(..upper.as_slice())
        .map_err(backend)?
        .take(max)
        .map(|e| {
            let (k, v) = e.map_err(backend)?;
            let key = k.value().to_vec();
            let at = keys::time_from(&key).unwrap_or(cutoff);
            let user = codec::decode_audit(at, uuid::Uuid::nil(), v.value())
                .map(|r| r.user_id)
                .unwrap_or_default();
            Ok((key, user))
        })
        .collect::<Result<_, StoreError>>()?;
    let count = old.len();
    for (key, user) in old {
        audit.remove(key.as_slice()).map_err(backend)?;
        if !user.is_empty() {
            let mut k = keys::user_audit_prefix(&user);
            k.extend_from_slice(&key);
            by_user.remove(k.as_slice()).map_err(backend)?;
        }
    }
    Ok(count)
}
