//! Typed rows of the ScyllaDB tables and their mapping to and from the store's records.
//!
//! Read rows are all-`Option`: TTL expiry removes cells one by one, so a row read around its
//! expiry may be partial. Mapping decides what a partial row means (absent) and what a
//! malformed one means (`StoreError::Backend`). Values to write bind `MaybeUnset::Unset` for
//! anything empty: a bound null would write a tombstone.

use std::collections::BTreeMap;
use std::time::Duration;

use scylla::value::{CqlTimeuuid, MaybeUnset};
use scylla::{DeserializeRow, SerializeRow};
use uuid::Uuid;

use super::StoreError;
use super::buckets;
use crate::model::ids::{SessionId, TenantId, UserId};
use crate::model::records::{
    AuditRecord, PreviousRefresh, RefreshHash, RefreshSalt, RefreshState, RevocationEvent,
    RotationStep, SessionRecord, SignIn,
};
use crate::model::time::Timestamp;

/// A row of `sessions` or `sessions_by_user` (same columns, see `cql::SESSION_COLUMNS`).
#[derive(Debug, DeserializeRow)]
pub(super) struct SessionRow {
    session_id: Uuid,
    user_id: Option<String>,
    tenant_id: Option<String>,
    created_at: Option<i64>,
    last_seen_at: Option<i64>,
    expires_at: Option<i64>,
    ip: Option<String>,
    user_agent: Option<String>,
    device_name: Option<String>,
    metadata: Option<BTreeMap<String, String>>,
    refresh_generation: Option<i64>,
    refresh_hash: Option<Vec<u8>>,
    revoked_at: Option<i64>,
    revoke_reason: Option<String>,
    refresh_salt: Option<Vec<u8>>,
    previous_generation: Option<i64>,
    previous_hash: Option<Vec<u8>>,
    rotated_at: Option<i64>,
    idle_timeout: Option<i64>,
    auth_time: Option<i64>,
    acr: Option<String>,
    amr: Option<Vec<String>>,
}

impl SessionRow {
    /// The record, or `None` when the row has expired by `now` (or its expiry cell is already
    /// gone). An unexpired row missing a required cell, or holding a malformed one, is
    /// corrupt: `Backend`.
    pub fn into_record(self, now: Timestamp) -> Result<Option<SessionRecord>, StoreError> {
        let Some(expires_at) = self.expires_at.map(Timestamp::from_micros) else {
            return Ok(None);
        };
        if expires_at <= now {
            return Ok(None);
        }
        let id = self.session_id;
        let corrupt = |what: &str| StoreError::Backend(format!("session {id}: {what}"));
        let user = self.user_id.ok_or_else(|| corrupt("no user_id"))?;
        let user_id = UserId::parse("user_id", &user).map_err(|_| corrupt("bad user_id"))?;
        let tenant = self.tenant_id.unwrap_or_default();
        let tenant_id =
            TenantId::parse("tenant_id", &tenant).map_err(|_| corrupt("bad tenant_id"))?;
        let created_at = self.created_at.ok_or_else(|| corrupt("no created_at"))?;
        let generation = self
            .refresh_generation
            .ok_or_else(|| corrupt("no refresh_generation"))?;
        let refresh_generation =
            u32::try_from(generation).map_err(|_| corrupt("refresh_generation out of range"))?;
        let hash = self
            .refresh_hash
            .ok_or_else(|| corrupt("no refresh_hash"))?;
        let refresh_hash = RefreshHash(
            <[u8; 32]>::try_from(hash.as_slice())
                .map_err(|_| corrupt("refresh_hash is not 32 bytes"))?,
        );
        let refresh_salt = self
            .refresh_salt
            .map(|salt| {
                <[u8; 16]>::try_from(salt.as_slice())
                    .map(RefreshSalt)
                    .map_err(|_| corrupt("refresh_salt is not 16 bytes"))
            })
            .transpose()?;
        // All three or nothing: a rotation writes them together.
        let previous_refresh = match (
            self.previous_generation,
            self.previous_hash,
            self.rotated_at,
        ) {
            (Some(generation), Some(hash), Some(at)) => Some(PreviousRefresh {
                state: RefreshState {
                    generation: u32::try_from(generation)
                        .map_err(|_| corrupt("previous_generation out of range"))?,
                    hash: RefreshHash(
                        <[u8; 32]>::try_from(hash.as_slice())
                            .map_err(|_| corrupt("previous_hash is not 32 bytes"))?,
                    ),
                },
                rotated_at: Timestamp::from_micros(at),
            }),
            _ => None,
        };
        let idle_timeout = self
            .idle_timeout
            .filter(|micros| *micros > 0)
            .map(|micros| Duration::from_micros(micros.unsigned_abs()));
        Ok(Some(SessionRecord {
            id: SessionId::from_uuid(id),
            user_id,
            tenant_id,
            created_at: Timestamp::from_micros(created_at),
            last_seen_at: Timestamp::from_micros(self.last_seen_at.unwrap_or(created_at)),
            expires_at,
            ip: self.ip.unwrap_or_default(),
            user_agent: self.user_agent.unwrap_or_default(),
            device_name: self.device_name.unwrap_or_default(),
            metadata: self.metadata.unwrap_or_default(),
            refresh_generation,
            refresh_hash,
            revoked_at: self.revoked_at.map(Timestamp::from_micros),
            revoke_reason: self.revoke_reason.unwrap_or_default(),
            refresh_salt,
            previous_refresh,
            idle_timeout,
            sign_in: SignIn {
                auth_time: Timestamp::from_micros(self.auth_time.unwrap_or(created_at)),
                acr: self.acr.unwrap_or_default(),
                amr: self.amr.unwrap_or_default(),
            },
        }))
    }
}

fn micros_of(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// The values of `cql::Cql::insert_session` and `insert_session_by_user`.
#[derive(Debug, SerializeRow)]
pub(super) struct SessionValues<'a> {
    session_id: Uuid,
    user_id: &'a str,
    tenant_id: &'a str,
    created_at: i64,
    last_seen_at: i64,
    expires_at: i64,
    ip: MaybeUnset<&'a str>,
    user_agent: MaybeUnset<&'a str>,
    device_name: MaybeUnset<&'a str>,
    metadata: MaybeUnset<&'a BTreeMap<String, String>>,
    refresh_generation: i64,
    refresh_hash: &'a [u8],
    revoked_at: MaybeUnset<i64>,
    revoke_reason: MaybeUnset<&'a str>,
    refresh_salt: MaybeUnset<&'a [u8]>,
    previous_generation: MaybeUnset<i64>,
    previous_hash: MaybeUnset<&'a [u8]>,
    rotated_at: MaybeUnset<i64>,
    idle_timeout: MaybeUnset<i64>,
    auth_time: i64,
    acr: MaybeUnset<&'a str>,
    amr: MaybeUnset<&'a [String]>,
    #[scylla(rename = "[ttl]")]
    ttl: i32,
    /// The write timestamp, taken once before the first attempt, so that a late copy of the
    /// insert never overwrites a later write (see `cql`).
    #[scylla(rename = "[timestamp]")]
    timestamp: i64,
}

impl<'a> SessionValues<'a> {
    /// The values that store `r`, expiring after `ttl` seconds, written at `written_at` (µs).
    pub fn new(r: &'a SessionRecord, ttl: i32, written_at: i64) -> Self {
        Self {
            session_id: r.id.as_uuid(),
            user_id: r.user_id.as_str(),
            tenant_id: r.tenant_id.as_str(),
            created_at: r.created_at.as_micros(),
            last_seen_at: r.last_seen_at.as_micros(),
            expires_at: r.expires_at.as_micros(),
            ip: unset_if_empty(&r.ip),
            user_agent: unset_if_empty(&r.user_agent),
            device_name: unset_if_empty(&r.device_name),
            metadata: if r.metadata.is_empty() {
                MaybeUnset::Unset
            } else {
                MaybeUnset::Set(&r.metadata)
            },
            refresh_generation: i64::from(r.refresh_generation),
            refresh_hash: &r.refresh_hash.0,
            revoked_at: r
                .revoked_at
                .map_or(MaybeUnset::Unset, |t| MaybeUnset::Set(t.as_micros())),
            revoke_reason: unset_if_empty(&r.revoke_reason),
            refresh_salt: r
                .refresh_salt
                .as_ref()
                .map_or(MaybeUnset::Unset, |s| MaybeUnset::Set(&s.0[..])),
            previous_generation: r.previous_refresh.map_or(MaybeUnset::Unset, |p| {
                MaybeUnset::Set(i64::from(p.state.generation))
            }),
            previous_hash: r
                .previous_refresh
                .as_ref()
                .map_or(MaybeUnset::Unset, |p| MaybeUnset::Set(&p.state.hash.0[..])),
            rotated_at: r.previous_refresh.map_or(MaybeUnset::Unset, |p| {
                MaybeUnset::Set(p.rotated_at.as_micros())
            }),
            idle_timeout: r
                .idle_timeout
                .map_or(MaybeUnset::Unset, |d| MaybeUnset::Set(micros_of(d))),
            auth_time: r.sign_in.auth_time.as_micros(),
            acr: unset_if_empty(&r.sign_in.acr),
            amr: if r.sign_in.amr.is_empty() {
                MaybeUnset::Unset
            } else {
                MaybeUnset::Set(&r.sign_in.amr)
            },
            ttl,
            timestamp: written_at,
        }
    }
}

/// The values of the refresh compare-and-set (`cql::Cql::rotate_refresh`) and of its copy into
/// the per-user table (`mirror_refresh_by_user`, which binds the key columns instead of the
/// condition). Client and sign-in columns are unset, so left as they are, when the step does
/// not change them.
#[derive(Debug, SerializeRow)]
pub(super) struct RotateValues<'a> {
    ttl: i32,
    next_generation: i64,
    next_hash: &'a [u8],
    salt: &'a [u8],
    previous_generation: i64,
    previous_hash: &'a [u8],
    rotated_at: i64,
    last_seen_at: i64,
    ip: MaybeUnset<&'a str>,
    user_agent: MaybeUnset<&'a str>,
    device_name: MaybeUnset<&'a str>,
    auth_time: MaybeUnset<i64>,
    acr: MaybeUnset<&'a str>,
    amr: MaybeUnset<&'a [String]>,
    session_id: Uuid,
    expected_generation: i64,
    expected_hash: &'a [u8],
}

impl<'a> RotateValues<'a> {
    /// The values that apply `step` to session `id`, the cells expiring after `ttl` seconds.
    pub fn new(id: SessionId, step: &'a RotationStep, ttl: i32) -> Self {
        let client = step.client.as_ref();
        let sign_in = step.sign_in.as_ref();
        Self {
            ttl,
            next_generation: i64::from(step.next.generation),
            next_hash: &step.next.hash.0,
            salt: &step.salt.0,
            previous_generation: i64::from(step.expected.generation),
            previous_hash: &step.expected.hash.0,
            rotated_at: step.at.as_micros(),
            last_seen_at: step.at.as_micros(),
            ip: client.map_or(MaybeUnset::Unset, |c| MaybeUnset::Set(c.ip.as_str())),
            user_agent: client.map_or(MaybeUnset::Unset, |c| {
                MaybeUnset::Set(c.user_agent.as_str())
            }),
            device_name: client.map_or(MaybeUnset::Unset, |c| {
                MaybeUnset::Set(c.device_name.as_str())
            }),
            auth_time: sign_in.map_or(MaybeUnset::Unset, |s| {
                MaybeUnset::Set(s.auth_time.as_micros())
            }),
            acr: sign_in.map_or(MaybeUnset::Unset, |s| MaybeUnset::Set(s.acr.as_str())),
            amr: sign_in.map_or(MaybeUnset::Unset, |s| MaybeUnset::Set(s.amr.as_slice())),
            session_id: id.as_uuid(),
            expected_generation: i64::from(step.expected.generation),
            expected_hash: &step.expected.hash.0,
        }
    }
}

/// The key of a session's row in `sessions_by_user`, for `mirror_refresh_by_user`.
#[derive(Debug, SerializeRow)]
pub(super) struct MirrorValues<'a> {
    ttl: i32,
    next_generation: i64,
    next_hash: &'a [u8],
    salt: &'a [u8],
    previous_generation: i64,
    previous_hash: &'a [u8],
    rotated_at: i64,
    last_seen_at: i64,
    ip: MaybeUnset<&'a str>,
    user_agent: MaybeUnset<&'a str>,
    device_name: MaybeUnset<&'a str>,
    auth_time: MaybeUnset<i64>,
    acr: MaybeUnset<&'a str>,
    amr: MaybeUnset<&'a [String]>,
    user_id: &'a str,
    tenant_id: &'a str,
    created_at: i64,
    session_id: Uuid,
}

impl<'a> MirrorValues<'a> {
    /// The copy of `step`'s rotation of `r` into the per-user table.
    pub fn new(r: &'a SessionRecord, step: &'a RotationStep, ttl: i32) -> Self {
        let rotate = RotateValues::new(r.id, step, ttl);
        Self {
            ttl,
            next_generation: rotate.next_generation,
            next_hash: rotate.next_hash,
            salt: rotate.salt,
            previous_generation: rotate.previous_generation,
            previous_hash: rotate.previous_hash,
            rotated_at: rotate.rotated_at,
            last_seen_at: rotate.last_seen_at,
            ip: rotate.ip,
            user_agent: rotate.user_agent,
            device_name: rotate.device_name,
            auth_time: rotate.auth_time,
            acr: rotate.acr,
            amr: rotate.amr,
            user_id: r.user_id.as_str(),
            tenant_id: r.tenant_id.as_str(),
            created_at: r.created_at.as_micros(),
            session_id: r.id.as_uuid(),
        }
    }
}

/// A row of `user_revocations`.
#[derive(Debug, DeserializeRow)]
pub(super) struct NotBeforeRow {
    pub tenant_id: String,
    pub not_before: Option<i64>,
}

/// A row of `revocation_feed`.
#[derive(Debug, DeserializeRow)]
pub(super) struct FeedRow {
    pub at: CqlTimeuuid,
    pub kind: Option<String>,
    pub subject: Option<String>,
}

/// The feed's `kind` column of each event type.
pub(super) mod feed_kind {
    /// One session.
    pub const SESSION: &str = "session";
    /// A user's "not before".
    pub const USER: &str = "user";
    /// The global "not before".
    pub const GLOBAL: &str = "global";
}

impl FeedRow {
    /// The event, or `None` (with a warning) when the row is not one this backend writes:
    /// skipping it keeps one bad row from stopping every replica's feed until it expires.
    pub fn into_event(self) -> Option<RevocationEvent> {
        let kind = self.kind.unwrap_or_default();
        let subject = self.subject.unwrap_or_default();
        let event = match kind.as_str() {
            feed_kind::SESSION => subject
                .parse::<SessionId>()
                .ok()
                .map(RevocationEvent::Session),
            feed_kind::USER => UserId::parse("user_id", &subject)
                .ok()
                .map(RevocationEvent::User),
            feed_kind::GLOBAL => Some(RevocationEvent::Global),
            _ => None,
        };
        if event.is_none() {
            tracing::warn!(%kind, %subject, "skipping malformed revocation feed row");
        }
        event
    }

    /// The kind and subject columns of an event.
    pub fn columns(event: &RevocationEvent) -> (&'static str, String) {
        match event {
            RevocationEvent::Session(id) => (feed_kind::SESSION, id.to_string()),
            RevocationEvent::User(user) => (feed_kind::USER, user.as_str().to_owned()),
            RevocationEvent::Global => (feed_kind::GLOBAL, String::new()),
        }
    }
}

/// A row of `audit_by_user` or `audit_by_day` (same selected columns).
#[derive(Debug, DeserializeRow)]
pub(super) struct AuditRow {
    user_id: Option<String>,
    at: i64,
    event_id: Uuid,
    kind: Option<String>,
    actor: Option<String>,
    session_id: Option<Uuid>,
    ip: Option<String>,
    user_agent: Option<String>,
    reason: Option<String>,
}

impl AuditRow {
    /// The clustering key, for keyset paging.
    pub fn key(&self) -> (i64, Uuid) {
        (self.at, self.event_id)
    }

    /// The record.
    pub fn into_record(self) -> AuditRecord {
        AuditRecord {
            event_id: self.event_id,
            at: Timestamp::from_micros(self.at),
            kind: self.kind.unwrap_or_default(),
            actor: self.actor.unwrap_or_default(),
            user_id: self.user_id.unwrap_or_default(),
            session_id: self.session_id.map(SessionId::from_uuid),
            ip: self.ip.unwrap_or_default(),
            user_agent: self.user_agent.unwrap_or_default(),
            reason: self.reason.unwrap_or_default(),
        }
    }
}

/// The audit columns every audit table shares.
#[derive(Debug, SerializeRow)]
pub(super) struct AuditValues<'a> {
    user_id: MaybeUnset<&'a str>,
    at: i64,
    event_id: Uuid,
    kind: MaybeUnset<&'a str>,
    actor: MaybeUnset<&'a str>,
    session_id: MaybeUnset<Uuid>,
    ip: MaybeUnset<&'a str>,
    user_agent: MaybeUnset<&'a str>,
    reason: MaybeUnset<&'a str>,
}

impl<'a> AuditValues<'a> {
    /// The columns of `e`.
    pub fn new(e: &'a AuditRecord) -> Self {
        Self {
            user_id: unset_if_empty(&e.user_id),
            at: e.at.as_micros(),
            event_id: e.event_id,
            kind: unset_if_empty(&e.kind),
            actor: unset_if_empty(&e.actor),
            session_id: e
                .session_id
                .map_or(MaybeUnset::Unset, |s| MaybeUnset::Set(s.as_uuid())),
            ip: unset_if_empty(&e.ip),
            user_agent: unset_if_empty(&e.user_agent),
            reason: unset_if_empty(&e.reason),
        }
    }
}

/// The values of `cql::Cql::insert_audit_by_user`.
#[derive(Debug, SerializeRow)]
pub(super) struct AuditUserValues<'a> {
    pub month: i32,
    #[scylla(rename = "[ttl]")]
    pub ttl: i32,
    #[scylla(flatten)]
    pub audit: AuditValues<'a>,
}

/// The values of `cql::Cql::insert_audit_by_day`.
#[derive(Debug, SerializeRow)]
pub(super) struct AuditDayValues<'a> {
    pub day: i32,
    pub shard: i16,
    #[scylla(rename = "[ttl]")]
    pub ttl: i32,
    #[scylla(flatten)]
    pub audit: AuditValues<'a>,
}

/// The bucket of an audit event in `audit_by_user`.
pub(super) fn audit_month(e: &AuditRecord) -> i32 {
    buckets::month(e.at)
}

fn unset_if_empty(s: &str) -> MaybeUnset<&str> {
    if s.is_empty() {
        MaybeUnset::Unset
    } else {
        MaybeUnset::Set(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn record() -> Result<SessionRecord, Box<dyn std::error::Error>> {
        Ok(SessionRecord {
            id: SessionId::new(),
            user_id: UserId::parse("user_id", "alice")?,
            tenant_id: TenantId::parse("tenant_id", "acme")?,
            created_at: Timestamp::from_micros(1_700_000_000_123_456),
            last_seen_at: Timestamp::from_micros(1_700_000_001_000_001),
            expires_at: Timestamp::from_micros(1_700_086_400_000_007),
            ip: "2001:db8::1".into(),
            user_agent: "curl/8".into(),
            device_name: "laptop".into(),
            metadata: BTreeMap::from([("k".to_owned(), "v".to_owned())]),
            refresh_generation: u32::MAX,
            refresh_hash: RefreshHash([7; 32]),
            refresh_salt: Some(RefreshSalt([3; 16])),
            previous_refresh: Some(PreviousRefresh {
                state: RefreshState {
                    generation: u32::MAX - 1,
                    hash: RefreshHash([6; 32]),
                },
                rotated_at: Timestamp::from_micros(1_700_000_001_500_000),
            }),
            idle_timeout: Some(Duration::from_secs(900)),
            sign_in: SignIn {
                auth_time: Timestamp::from_micros(1_699_999_999_000_000),
                acr: "urn:example:mfa".into(),
                amr: vec!["pwd".into(), "otp".into()],
            },
            revoked_at: Some(Timestamp::from_micros(1_700_000_002_000_000)),
            revoke_reason: "user_logout".into(),
        })
    }

    fn set<T>(m: MaybeUnset<T>) -> Option<T> {
        match m {
            MaybeUnset::Set(v) => Some(v),
            MaybeUnset::Unset => None,
        }
    }

    /// What the database hands back for the values written from `r`.
    fn row_of(r: &SessionRecord) -> SessionRow {
        let v = SessionValues::new(r, 60, 1);
        SessionRow {
            session_id: v.session_id,
            user_id: Some(v.user_id.to_owned()),
            tenant_id: Some(v.tenant_id.to_owned()),
            created_at: Some(v.created_at),
            last_seen_at: Some(v.last_seen_at),
            expires_at: Some(v.expires_at),
            ip: set(v.ip).map(str::to_owned),
            user_agent: set(v.user_agent).map(str::to_owned),
            device_name: set(v.device_name).map(str::to_owned),
            metadata: set(v.metadata).cloned(),
            refresh_generation: Some(v.refresh_generation),
            refresh_hash: Some(v.refresh_hash.to_vec()),
            revoked_at: set(v.revoked_at),
            revoke_reason: set(v.revoke_reason).map(str::to_owned),
            refresh_salt: set(v.refresh_salt).map(<[u8]>::to_vec),
            previous_generation: set(v.previous_generation),
            previous_hash: set(v.previous_hash).map(<[u8]>::to_vec),
            rotated_at: set(v.rotated_at),
            idle_timeout: set(v.idle_timeout),
            auth_time: Some(v.auth_time),
            acr: set(v.acr).map(str::to_owned),
            amr: set(v.amr).map(<[String]>::to_vec),
        }
    }

    #[test]
    fn session_round_trips_exactly() -> TestResult {
        let r = record()?;
        let now = Timestamp::from_micros(1_700_000_003_000_000);
        assert_eq!(row_of(&r).into_record(now)?, Some(r.clone()));

        let mut bare = r;
        bare.ip.clear();
        bare.user_agent.clear();
        bare.device_name.clear();
        bare.metadata.clear();
        bare.revoked_at = None;
        bare.revoke_reason.clear();
        bare.tenant_id = TenantId::none();
        bare.refresh_generation = 0;
        bare.refresh_salt = None;
        bare.previous_refresh = None;
        bare.idle_timeout = None;
        bare.sign_in.acr.clear();
        bare.sign_in.amr.clear();
        let v = SessionValues::new(&bare, 60, 1);
        assert!(matches!(v.ip, MaybeUnset::Unset));
        assert!(matches!(v.metadata, MaybeUnset::Unset));
        assert!(matches!(v.revoked_at, MaybeUnset::Unset));
        assert_eq!(row_of(&bare).into_record(now)?, Some(bare));
        Ok(())
    }

    #[test]
    fn a_row_from_before_version_3_reads_as_signed_in_at_creation() -> TestResult {
        let r = record()?;
        let mut row = row_of(&r);
        row.refresh_salt = None;
        row.previous_generation = None;
        row.previous_hash = None;
        row.rotated_at = None;
        row.idle_timeout = None;
        row.auth_time = None;
        row.acr = None;
        row.amr = None;
        let read = row
            .into_record(r.created_at)?
            .ok_or("the row reads as absent")?;
        assert_eq!(read.refresh_salt, None);
        assert_eq!(read.previous_refresh, None);
        assert_eq!(read.idle_timeout, None);
        assert_eq!(read.sign_in.auth_time, r.created_at);
        assert!(read.sign_in.acr.is_empty() && read.sign_in.amr.is_empty());
        Ok(())
    }

    #[test]
    fn expired_or_expiring_rows_are_absent() -> TestResult {
        let r = record()?;
        assert_eq!(row_of(&r).into_record(r.expires_at)?, None);
        let mut row = row_of(&r);
        row.expires_at = None;
        row.user_id = None;
        assert_eq!(row.into_record(r.created_at)?, None);
        Ok(())
    }

    #[test]
    fn malformed_live_rows_are_backend_errors() -> TestResult {
        let r = record()?;
        let now = r.created_at;
        let mut row = row_of(&r);
        row.refresh_hash = Some(vec![1; 31]);
        assert!(matches!(row.into_record(now), Err(StoreError::Backend(_))));
        let mut row = row_of(&r);
        row.refresh_generation = Some(-1);
        assert!(matches!(row.into_record(now), Err(StoreError::Backend(_))));
        let mut row = row_of(&r);
        row.user_id = Some(String::new());
        assert!(matches!(row.into_record(now), Err(StoreError::Backend(_))));
        let mut row = row_of(&r);
        row.user_id = None;
        assert!(matches!(row.into_record(now), Err(StoreError::Backend(_))));
        Ok(())
    }

    #[test]
    fn feed_rows_map_to_events_and_back() -> TestResult {
        let events = [
            RevocationEvent::Session(SessionId::new()),
            RevocationEvent::User(UserId::parse("user_id", "bob")?),
            RevocationEvent::Global,
        ];
        for e in events {
            let (kind, subject) = FeedRow::columns(&e);
            let row = FeedRow {
                at: CqlTimeuuid::from(Uuid::nil()),
                kind: Some(kind.to_owned()),
                subject: Some(subject),
            };
            assert_eq!(row.into_event(), Some(e));
        }
        let junk = FeedRow {
            at: CqlTimeuuid::from(Uuid::nil()),
            kind: Some("session".into()),
            subject: Some("nope".into()),
        };
        assert_eq!(junk.into_event(), None);
        Ok(())
    }

    #[test]
    fn audit_values_unset_empty_fields_and_rows_map_back() {
        let e = AuditRecord {
            event_id: Uuid::now_v7(),
            at: Timestamp::from_micros(1_700_000_000_000_001),
            kind: "session_revoked".into(),
            actor: "svc:admin".into(),
            user_id: String::new(),
            session_id: None,
            ip: String::new(),
            user_agent: String::new(),
            reason: "why".into(),
        };
        let v = AuditValues::new(&e);
        assert!(matches!(v.user_id, MaybeUnset::Unset));
        assert!(matches!(v.session_id, MaybeUnset::Unset));
        let row = AuditRow {
            user_id: None,
            at: v.at,
            event_id: v.event_id,
            kind: Some("session_revoked".into()),
            actor: Some("svc:admin".into()),
            session_id: None,
            ip: None,
            user_agent: None,
            reason: Some("why".into()),
        };
        assert_eq!(row.key(), (e.at.as_micros(), e.event_id));
        assert_eq!(row.into_record(), e);
    }
}
