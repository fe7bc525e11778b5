//! Every CQL text of the ScyllaDB backend: the schema, its migrations, and each statement.
//!
//! Nothing else in the backend writes CQL. Names are spliced in only from a validated keyspace
//! name (`config::parse_keyspace`) and data-centre names escaped as string literals; every
//! value travels as a bind marker.
//!
//! Layout decisions (see /work/shared/SCYLLA.md for the model this follows):
//! - Instants are `bigint` microseconds, not CQL `timestamp` (milliseconds): the domain's
//!   `Timestamp` is microseconds, records must round-trip exactly, and "not before" checks
//!   compare a session's creation to a revocation at sub-second precision, where a millisecond
//!   truncation could let a session issued just before a revocation survive it.
//! - `ip` is `text`, not `inet`: the domain keeps the client's address text as given (possibly
//!   empty, possibly with an IPv6 zone), which `inet` cannot hold.
//! - `refresh_generation` is `bigint` so every `u32` generation fits without sign tricks.
//! - `sessions_by_user` repeats the refresh columns, so a listing returns the same record as a
//!   point read; a won rotation updates them with a plain write after the CAS (the CAS itself
//!   only ever touches `sessions`).
//! - Audit tables cluster by `(at, event_id)`: event ids are version 7 UUIDs, which a
//!   `timeuuid` column rejects and a `uuid` column does not order by time.
//! - `settings` and `user_revocations` are written `USING TIMESTAMP <the instant>`, so the
//!   latest instant wins by last-write-wins without a read-modify-write: a "not before" mark
//!   never moves backwards, whatever order concurrent writers land in. No other statement
//!   writes those tables, so no server-assigned timestamp competes with these.
//! - A session's two INSERTs carry `USING TIMESTAMP`, the millisecond before
//!   `create_session` began by the wall clock (not the service's clock: it is compared with
//!   the nodes' own write timestamps), the same for every copy. They are retried, speculated
//!   and (while the batchlog is unreachable) rewritten one by one, so a copy may still land
//!   after `Issue` has answered; with a server-assigned timestamp such a late copy would
//!   overwrite a refresh rotation made meanwhile (the CAS writes the same `refresh_*` cells)
//!   and undo an acknowledged rotation. Stamped once, before the first attempt, every copy is
//!   older than anything written after `Issue` answered. This needs the nodes' clocks not to
//!   lag sessiond's by more than the time from an `Issue` to the session's first `Refresh`
//!   (NTP keeps it to milliseconds).
//! - `user_session_slots` holds, per user, the sessions that count against the per-user cap
//!   (id → expires_at). Only a compare-and-set on that one partition changes it, so racing
//!   `Issue`s of one user are decided one after the other by Paxos on that user's replicas,
//!   without a lock that any other user's `Issue` waits on.

/// The schema version this build needs; `migrate` brings a keyspace up to it.
pub(super) const SCHEMA_VERSION: i32 = 3;

/// The `settings` row holding the global "not before" instant.
const GLOBAL_NOT_BEFORE: &str = "global_not_before";

/// One schema step: statements that are each idempotent (`IF NOT EXISTS`, or an `ADD` of
/// columns whose "already exists" answer counts as done), so a step cut short is simply run
/// again.
pub(super) struct Migration {
    /// Its version; steps run in increasing order, each once.
    pub version: i32,
    /// What it does, recorded in `schema_migrations`.
    pub description: &'static str,
    /// The DDL.
    pub statements: Vec<String>,
    /// Only alters tables that an older version created: a keyspace created by this build's
    /// first step already has its columns, so the step is recorded without running.
    pub upgrade_only: bool,
}

/// The session columns that version 3 added, shared by `sessions` and `sessions_by_user`.
const SESSION_DATA_V3_DDL: &str = "refresh_salt blob, previous_generation bigint, \
    previous_hash blob, rotated_at bigint, idle_timeout bigint, auth_time bigint, acr text, \
    amr frozen<list<text>>";

/// `CREATE KEYSPACE` with `NetworkTopologyStrategy` over `replication` (data centre, factor).
pub(super) fn create_keyspace(
    ks: &str,
    replication: &[(String, u32)],
    disable_tablets: bool,
) -> String {
    let dcs: Vec<String> = replication
        .iter()
        .map(|(dc, rf)| format!(", '{}': {rf}", dc.replace('\'', "''")))
        .collect();
    let tablets = if disable_tablets {
        " AND tablets = {'enabled': false}"
    } else {
        ""
    };
    format!(
        "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = \
         {{'class': 'NetworkTopologyStrategy'{}}}{tablets}",
        dcs.concat()
    )
}

/// Reads an existing keyspace's replication map (to warn when it differs from the config).
pub(super) const SELECT_KEYSPACE_REPLICATION: &str =
    "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?";

/// The table recording which migrations ran.
pub(super) fn create_migrations_table(ks: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {ks}.schema_migrations \
         (version int PRIMARY KEY, description text, applied_at bigint)"
    )
}

/// Applied versions. Bind: none.
pub(super) fn select_migrations(ks: &str) -> String {
    format!("SELECT version FROM {ks}.schema_migrations")
}

/// Records a migration. Bind: version, description, applied_at.
pub(super) fn insert_migration(ks: &str) -> String {
    format!(
        "INSERT INTO {ks}.schema_migrations (version, description, applied_at) VALUES (?, ?, ?)"
    )
}

/// Every migration, oldest first.
pub(super) fn migrations(ks: &str) -> Vec<Migration> {
    vec![
        Migration {
            version: 1,
            description: "sessions, per-user index, revocations, feed, audit",
            statements: vec![
                // A point-lookup table, but also scanned by the admin listing: expired cells become
                // tombstones, so keep them one day (longer than the 3 h hint window), not ten. No
                // statement deletes, so a short grace period cannot resurrect anything.
                format!(
                    "CREATE TABLE IF NOT EXISTS {ks}.sessions (session_id uuid PRIMARY KEY, \
                 {SESSION_DATA_DDL}) WITH gc_grace_seconds = 86400"
                ),
                format!(
                    "CREATE TABLE IF NOT EXISTS {ks}.sessions_by_user (session_id uuid, \
                 {SESSION_DATA_DDL}, PRIMARY KEY ((user_id), tenant_id, created_at, session_id)) \
                 WITH CLUSTERING ORDER BY (tenant_id ASC, created_at DESC, session_id ASC) \
                 AND gc_grace_seconds = 86400"
                ),
                // tenant_id '' is "every tenant".
                format!(
                    "CREATE TABLE IF NOT EXISTS {ks}.user_revocations (user_id text, tenant_id text, \
                 not_before bigint, PRIMARY KEY ((user_id), tenant_id)) \
                 WITH gc_grace_seconds = 86400"
                ),
                format!(
                    "CREATE TABLE IF NOT EXISTS {ks}.settings (name text PRIMARY KEY, micros bigint)"
                ),
                // kind: session | user | global; subject: the session or user id.
                format!(
                    "CREATE TABLE IF NOT EXISTS {ks}.revocation_feed (minute bigint, shard smallint, \
                 at timeuuid, kind text, subject text, PRIMARY KEY ((minute, shard), at)) \
                 WITH default_time_to_live = 86400 AND gc_grace_seconds = 86400 \
                 AND compaction = {{'class': 'TimeWindowCompactionStrategy', \
                 'compaction_window_unit': 'HOURS', 'compaction_window_size': 1}}"
                ),
                // Each insert sets the configured retention; default_time_to_live (90 days) is
                // the backstop for rows written without one. Rows are never updated.
                format!(
                    "CREATE TABLE IF NOT EXISTS {ks}.audit_by_user (user_id text, month int, \
                 {AUDIT_DATA_DDL}, PRIMARY KEY ((user_id, month), at, event_id)) \
                 WITH CLUSTERING ORDER BY (at DESC, event_id DESC) {AUDIT_OPTIONS}"
                ),
                // Every event of a day, spread over AUDIT_DAY_SHARDS partitions so no single
                // replica set takes all audit writes.
                format!(
                    "CREATE TABLE IF NOT EXISTS {ks}.audit_by_day (day int, shard smallint, \
                 user_id text, {AUDIT_DATA_DDL}, PRIMARY KEY ((day, shard), at, event_id)) \
                 WITH CLUSTERING ORDER BY (at DESC, event_id DESC) {AUDIT_OPTIONS}"
                ),
            ],
            upgrade_only: false,
        },
        Migration {
            version: 2,
            description: "per-user session slots, decided by compare-and-set",
            statements: vec![format!(
                "CREATE TABLE IF NOT EXISTS {ks}.user_session_slots (user_id text PRIMARY KEY, \
             slots frozen<map<uuid, bigint>>) WITH gc_grace_seconds = 86400"
            )],
            upgrade_only: false,
        },
        Migration {
            version: 3,
            description: "derived refresh tokens and their previous generation, idle timeout, sign-in",
            statements: vec![
                format!("ALTER TABLE {ks}.sessions ADD ({SESSION_DATA_V3_DDL})"),
                format!("ALTER TABLE {ks}.sessions_by_user ADD ({SESSION_DATA_V3_DDL})"),
            ],
            upgrade_only: true,
        },
    ]
}

/// The session columns after the key, shared by `sessions` and `sessions_by_user`, as the
/// first step creates them (with version 3's, see `Migration::upgrade_only`).
const SESSION_DATA_DDL: &str = "user_id text, tenant_id text, created_at bigint, \
    last_seen_at bigint, expires_at bigint, ip text, user_agent text, device_name text, \
    metadata frozen<map<text, text>>, refresh_generation bigint, refresh_hash blob, \
    revoked_at bigint, revoke_reason text, refresh_salt blob, previous_generation bigint, \
    previous_hash blob, rotated_at bigint, idle_timeout bigint, auth_time bigint, acr text, \
    amr frozen<list<text>>";

/// The audit columns after the partition key.
const AUDIT_DATA_DDL: &str = "at bigint, event_id uuid, kind text, actor text, \
    session_id uuid, ip text, user_agent text, reason text";

const AUDIT_OPTIONS: &str = "AND default_time_to_live = 7776000 AND gc_grace_seconds = 86400 \
    AND compaction = {'class': 'TimeWindowCompactionStrategy', \
    'compaction_window_unit': 'DAYS', 'compaction_window_size': 3}";

/// Every column of a session row, in the order `rows::SessionRow` lists them.
const SESSION_COLUMNS: &str = "session_id, user_id, tenant_id, created_at, last_seen_at, \
    expires_at, ip, user_agent, device_name, metadata, refresh_generation, refresh_hash, \
    revoked_at, revoke_reason, refresh_salt, previous_generation, previous_hash, rotated_at, \
    idle_timeout, auth_time, acr, amr";

const SESSION_MARKERS: &str = "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?";

const AUDIT_COLUMNS: &str =
    "user_id, at, event_id, kind, actor, session_id, ip, user_agent, reason";

/// What a rotation writes, in both session tables; client and sign-in cells are bound unset
/// when the rotation does not change them.
const ROTATED_CELLS: &str = "refresh_generation = :next_generation, refresh_hash = :next_hash, \
    refresh_salt = :salt, previous_generation = :previous_generation, \
    previous_hash = :previous_hash, rotated_at = :rotated_at, last_seen_at = :last_seen_at, \
    ip = :ip, user_agent = :user_agent, device_name = :device_name, auth_time = :auth_time, \
    acr = :acr, amr = :amr";

/// The text of every data statement, for one keyspace. Bind markers are matched by name
/// (`rows` derives `SerializeRow`) or, where a struct would be overkill, positionally as the
/// comment on each field says.
pub(super) struct Cql {
    /// Issue, part 1. Bind: `rows::SessionValues`.
    pub insert_session: String,
    /// Issue, part 2. Bind: `rows::SessionValues`.
    pub insert_session_by_user: String,
    /// Bind: session_id.
    pub select_session: String,
    /// Bind: user_id.
    pub select_user_sessions: String,
    /// Bind: user_id, tenant_id.
    pub select_user_tenant_sessions: String,
    /// The admin scan, paged. Bind: none.
    pub scan_sessions: String,
    /// The refresh compare-and-set, the backend's only LWT. Bind: `rows::RotateValues`.
    pub rotate_refresh: String,
    /// Mirrors a won rotation into the per-user table. Bind: `rows::MirrorValues`.
    pub mirror_refresh_by_user: String,
    /// Revoke, part 1. Bind: ttl, revoked_at, revoke_reason, session_id.
    pub revoke_session: String,
    /// Revoke, part 2. Bind: ttl, revoked_at, revoke_reason, user_id, tenant_id, created_at,
    /// session_id.
    pub revoke_session_by_user: String,
    /// An evicted session leaves the per-user table at once. Bind: user_id, tenant_id,
    /// created_at, session_id.
    pub delete_session_by_user: String,
    /// Bind: ttl, last_seen_at, session_id.
    pub touch_session: String,
    /// Bind: ttl, last_seen_at, user_id, tenant_id, created_at, session_id.
    pub touch_session_by_user: String,
    /// Bind: user_id, tenant_id, not_before, ttl, timestamp (= not_before).
    pub upsert_user_not_before: String,
    /// Bind: user_id.
    pub select_user_not_before: String,
    /// Bind: micros, timestamp (= micros).
    pub upsert_global_not_before: String,
    /// Bind: none.
    pub select_global_not_before: String,
    /// Bind: minute, shard, at, kind, subject.
    pub insert_feed: String,
    /// Read at serial consistency before a slot compare-and-set. Bind: user_id.
    pub select_slots: String,
    /// The first slots of a user. Bind: user_id, slots, ttl.
    pub insert_slots: String,
    /// Bind: ttl, slots (new), user_id, slots (expected).
    pub update_slots: String,
    /// Bind: minute, shard, a CQL timestamp (milliseconds) the rows are at or after.
    pub select_feed: String,
    /// Bind: `rows::AuditUserValues` (with `[ttl]`).
    pub insert_audit_by_user: String,
    /// Bind: `rows::AuditDayValues` (with `[ttl]`).
    pub insert_audit_by_day: String,
    /// Bind: user_id, month, at, event_id (the keyset: rows strictly older), limit.
    pub select_audit_by_user: String,
    /// Bind: day, shard, at, event_id (the keyset), limit.
    pub select_audit_by_day: String,
    /// Bind: none.
    pub select_schema_versions: String,
}

impl Cql {
    /// The statements for keyspace `ks` (already validated).
    pub fn new(ks: &str) -> Self {
        let by_user_key = "user_id = ? AND tenant_id = ? AND created_at = ? AND session_id = ?";
        Self {
            insert_session: format!(
                "INSERT INTO {ks}.sessions ({SESSION_COLUMNS}) VALUES ({SESSION_MARKERS}) \
                 USING TTL ? AND TIMESTAMP ?"
            ),
            insert_session_by_user: format!(
                "INSERT INTO {ks}.sessions_by_user ({SESSION_COLUMNS}) VALUES ({SESSION_MARKERS}) \
                 USING TTL ? AND TIMESTAMP ?"
            ),
            select_session: format!(
                "SELECT {SESSION_COLUMNS} FROM {ks}.sessions WHERE session_id = ?"
            ),
            select_user_sessions: format!(
                "SELECT {SESSION_COLUMNS} FROM {ks}.sessions_by_user WHERE user_id = ?"
            ),
            select_user_tenant_sessions: format!(
                "SELECT {SESSION_COLUMNS} FROM {ks}.sessions_by_user WHERE user_id = ? AND tenant_id = ?"
            ),
            scan_sessions: format!("SELECT {SESSION_COLUMNS} FROM {ks}.sessions"),
            rotate_refresh: format!(
                "UPDATE {ks}.sessions USING TTL :ttl SET {ROTATED_CELLS} \
                 WHERE session_id = :session_id \
                 IF refresh_generation = :expected_generation AND refresh_hash = :expected_hash \
                 AND revoked_at = null"
            ),
            mirror_refresh_by_user: format!(
                "UPDATE {ks}.sessions_by_user USING TTL :ttl SET {ROTATED_CELLS} \
                 WHERE user_id = :user_id AND tenant_id = :tenant_id \
                 AND created_at = :created_at AND session_id = :session_id"
            ),
            revoke_session: format!(
                "UPDATE {ks}.sessions USING TTL ? SET revoked_at = ?, revoke_reason = ? \
                 WHERE session_id = ?"
            ),
            revoke_session_by_user: format!(
                "UPDATE {ks}.sessions_by_user USING TTL ? SET revoked_at = ?, revoke_reason = ? \
                 WHERE {by_user_key}"
            ),
            delete_session_by_user: format!(
                "DELETE FROM {ks}.sessions_by_user WHERE {by_user_key}"
            ),
            touch_session: format!(
                "UPDATE {ks}.sessions USING TTL ? SET last_seen_at = ? WHERE session_id = ?"
            ),
            touch_session_by_user: format!(
                "UPDATE {ks}.sessions_by_user USING TTL ? SET last_seen_at = ? WHERE {by_user_key}"
            ),
            upsert_user_not_before: format!(
                "INSERT INTO {ks}.user_revocations (user_id, tenant_id, not_before) \
                 VALUES (?, ?, ?) USING TTL ? AND TIMESTAMP ?"
            ),
            select_user_not_before: format!(
                "SELECT tenant_id, not_before FROM {ks}.user_revocations WHERE user_id = ?"
            ),
            upsert_global_not_before: format!(
                "INSERT INTO {ks}.settings (name, micros) VALUES ('{GLOBAL_NOT_BEFORE}', ?) \
                 USING TIMESTAMP ?"
            ),
            select_global_not_before: format!(
                "SELECT micros FROM {ks}.settings WHERE name = '{GLOBAL_NOT_BEFORE}'"
            ),
            select_slots: format!("SELECT slots FROM {ks}.user_session_slots WHERE user_id = ?"),
            insert_slots: format!(
                "INSERT INTO {ks}.user_session_slots (user_id, slots) VALUES (?, ?) \
                 IF NOT EXISTS USING TTL ?"
            ),
            update_slots: format!(
                "UPDATE {ks}.user_session_slots USING TTL ? SET slots = ? WHERE user_id = ? \
                 IF slots = ?"
            ),
            insert_feed: format!(
                "INSERT INTO {ks}.revocation_feed (minute, shard, at, kind, subject) \
                 VALUES (?, ?, ?, ?, ?)"
            ),
            select_feed: format!(
                "SELECT at, kind, subject FROM {ks}.revocation_feed \
                 WHERE minute = ? AND shard = ? AND at >= minTimeuuid(?)"
            ),
            insert_audit_by_user: format!(
                "INSERT INTO {ks}.audit_by_user (month, {AUDIT_COLUMNS}) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?"
            ),
            insert_audit_by_day: format!(
                "INSERT INTO {ks}.audit_by_day (day, shard, {AUDIT_COLUMNS}) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?"
            ),
            select_audit_by_user: format!(
                "SELECT {AUDIT_COLUMNS} FROM {ks}.audit_by_user \
                 WHERE user_id = ? AND month = ? AND (at, event_id) < (?, ?) LIMIT ?"
            ),
            select_audit_by_day: format!(
                "SELECT {AUDIT_COLUMNS} FROM {ks}.audit_by_day \
                 WHERE day = ? AND shard = ? AND (at, event_id) < (?, ?) LIMIT ?"
            ),
            select_schema_versions: select_migrations(ks),
        }
    }
}

/// The cheapest round trip: a local system table, no keyspace needed. Bind: none.
pub(super) const PING: &str = "SELECT now() FROM system.local";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyspace_ddl_uses_network_topology_and_escapes_dc_names() {
        let ddl = create_keyspace("ks", &[("dc1".into(), 3), ("o'dc".into(), 2)], false);
        assert_eq!(
            ddl,
            "CREATE KEYSPACE IF NOT EXISTS ks WITH replication = \
             {'class': 'NetworkTopologyStrategy', 'dc1': 3, 'o''dc': 2}"
        );
        let ddl = create_keyspace("ks", &[("dc1".into(), 1)], true);
        assert!(
            ddl.ends_with("'dc1': 1} AND tablets = {'enabled': false}"),
            "{ddl}"
        );
        assert!(!ddl.contains("SimpleStrategy"));
    }

    #[test]
    fn ddl_is_idempotent_and_statements_are_qualified() {
        for m in migrations("ks") {
            for s in &m.statements {
                let prefix = if m.upgrade_only {
                    "ALTER TABLE ks."
                } else {
                    "CREATE TABLE IF NOT EXISTS ks."
                };
                assert!(s.starts_with(prefix), "{s}");
                assert!(
                    !s.contains("ALLOW FILTERING") && !s.contains("INDEX"),
                    "{s}"
                );
            }
        }
        assert!(migrations("ks").iter().all(|m| m.version <= SCHEMA_VERSION));
        assert_eq!(
            migrations("ks").last().map(|m| m.version),
            Some(SCHEMA_VERSION)
        );
        let cql = Cql::new("ks");
        for s in [
            &cql.insert_session,
            &cql.select_session,
            &cql.scan_sessions,
            &cql.rotate_refresh,
        ] {
            assert!(s.contains(" ks."), "{s}");
        }
    }

    #[test]
    fn every_session_write_carries_a_ttl() {
        let cql = Cql::new("ks");
        for s in [
            &cql.insert_session,
            &cql.insert_session_by_user,
            &cql.rotate_refresh,
            &cql.mirror_refresh_by_user,
            &cql.revoke_session,
            &cql.revoke_session_by_user,
            &cql.touch_session,
            &cql.touch_session_by_user,
            &cql.upsert_user_not_before,
        ] {
            assert!(s.contains("USING TTL"), "{s}");
        }
        assert_eq!(
            SESSION_COLUMNS.split(',').count(),
            SESSION_MARKERS.split(',').count()
        );
    }
}
