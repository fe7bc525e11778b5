//! On-disk encoding of embedded rows (postcard), versioned so the layout can change later.
//!
//! Session rows are at version 2 (refresh salt and previous generation, idle timeout, sign-in);
//! version 1 rows, written before those existed, still decode: no salt, no previous
//! generation, no idle timeout, signed in when created.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::ids::{SessionId, TenantId, UserId};
use std::time::Duration;

use crate::model::records::{
    AuditRecord, PreviousRefresh, RefreshHash, RefreshSalt, RefreshState, SessionRecord, SignIn,
};
use crate::model::time::Timestamp;
use crate::store::StoreError;

const VERSION: u8 = 1;
const SESSION_VERSION: u8 = 2;

/// A session row as version 1 wrote it.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct StoredSessionV1 {
    user_id: String,
    tenant_id: String,
    created_at: i64,
    last_seen_at: i64,
    expires_at: i64,
    ip: String,
    user_agent: String,
    device_name: String,
    metadata: BTreeMap<String, String>,
    refresh_generation: u32,
    refresh_hash: [u8; 32],
    revoked_at: Option<i64>,
    revoke_reason: String,
}

#[derive(Serialize, Deserialize)]
struct StoredSession {
    user_id: String,
    tenant_id: String,
    created_at: i64,
    last_seen_at: i64,
    expires_at: i64,
    ip: String,
    user_agent: String,
    device_name: String,
    metadata: BTreeMap<String, String>,
    refresh_generation: u32,
    refresh_hash: [u8; 32],
    revoked_at: Option<i64>,
    revoke_reason: String,
    refresh_salt: Option<[u8; 16]>,
    /// Generation, hash, rotated at (µs).
    previous_refresh: Option<(u32, [u8; 32], i64)>,
    /// Microseconds.
    idle_timeout: Option<u64>,
    auth_time: i64,
    acr: String,
    amr: Vec<String>,
}

impl From<StoredSessionV1> for StoredSession {
    fn from(v1: StoredSessionV1) -> Self {
        Self {
            auth_time: v1.created_at,
            user_id: v1.user_id,
            tenant_id: v1.tenant_id,
            created_at: v1.created_at,
            last_seen_at: v1.last_seen_at,
            expires_at: v1.expires_at,
            ip: v1.ip,
            user_agent: v1.user_agent,
            device_name: v1.device_name,
            metadata: v1.metadata,
            refresh_generation: v1.refresh_generation,
            refresh_hash: v1.refresh_hash,
            revoked_at: v1.revoked_at,
            revoke_reason: v1.revoke_reason,
            refresh_salt: None,
            previous_refresh: None,
            idle_timeout: None,
            acr: String::new(),
            amr: Vec::new(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct StoredAudit {
    kind: String,
    actor: String,
    user_id: String,
    session_id: Option<[u8; 16]>,
    ip: String,
    user_agent: String,
    reason: String,
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    encode_at(VERSION, value)
}

fn encode_at<T: Serialize>(version: u8, value: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![version];
    let body = postcard::to_stdvec(value).map_err(|e| StoreError::Backend(e.to_string()))?;
    out.extend_from_slice(&body);
    Ok(out)
}

fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&VERSION, body)) => body_of(body),
        _ => Err(unknown_version()),
    }
}

fn body_of<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, StoreError> {
    postcard::from_bytes(body).map_err(|e| StoreError::Backend(format!("corrupt row: {e}")))
}

fn unknown_version() -> StoreError {
    StoreError::Backend("row of an unknown format version".into())
}

fn micros_of(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Encodes a session row (its id is the key).
pub fn encode_session(r: &SessionRecord) -> Result<Vec<u8>, StoreError> {
    encode_at(
        SESSION_VERSION,
        &StoredSession {
            user_id: r.user_id.as_str().to_owned(),
            tenant_id: r.tenant_id.as_str().to_owned(),
            created_at: r.created_at.as_micros(),
            last_seen_at: r.last_seen_at.as_micros(),
            expires_at: r.expires_at.as_micros(),
            ip: r.ip.clone(),
            user_agent: r.user_agent.clone(),
            device_name: r.device_name.clone(),
            metadata: r.metadata.clone(),
            refresh_generation: r.refresh_generation,
            refresh_hash: r.refresh_hash.0,
            revoked_at: r.revoked_at.map(Timestamp::as_micros),
            revoke_reason: r.revoke_reason.clone(),
            refresh_salt: r.refresh_salt.map(|s| s.0),
            previous_refresh: r
                .previous_refresh
                .map(|p| (p.state.generation, p.state.hash.0, p.rotated_at.as_micros())),
            idle_timeout: r.idle_timeout.map(micros_of),
            auth_time: r.sign_in.auth_time.as_micros(),
            acr: r.sign_in.acr.clone(),
            amr: r.sign_in.amr.clone(),
        },
    )
}

/// Decodes a session row.
pub fn decode_session(id: SessionId, bytes: &[u8]) -> Result<SessionRecord, StoreError> {
    let s: StoredSession = match bytes.split_first() {
        Some((&SESSION_VERSION, body)) => body_of(body)?,
        Some((&VERSION, body)) => body_of::<StoredSessionV1>(body)?.into(),
        _ => return Err(unknown_version()),
    };
    let corrupt = |_| StoreError::Backend("corrupt id in session row".into());
    Ok(SessionRecord {
        id,
        user_id: UserId::parse("user_id", &s.user_id).map_err(corrupt)?,
        tenant_id: TenantId::parse("tenant_id", &s.tenant_id).map_err(corrupt)?,
        created_at: Timestamp::from_micros(s.created_at),
        last_seen_at: Timestamp::from_micros(s.last_seen_at),
        expires_at: Timestamp::from_micros(s.expires_at),
        ip: s.ip,
        user_agent: s.user_agent,
        device_name: s.device_name,
        metadata: s.metadata,
        refresh_generation: s.refresh_generation,
        refresh_hash: RefreshHash(s.refresh_hash),
        revoked_at: s.revoked_at.map(Timestamp::from_micros),
        revoke_reason: s.revoke_reason,
        refresh_salt: s.refresh_salt.map(RefreshSalt),
        previous_refresh: s
            .previous_refresh
            .map(|(generation, hash, at)| PreviousRefresh {
                state: RefreshState {
                    generation,
                    hash: RefreshHash(hash),
                },
                rotated_at: Timestamp::from_micros(at),
            }),
        idle_timeout: s.idle_timeout.map(Duration::from_micros),
        sign_in: SignIn {
            auth_time: Timestamp::from_micros(s.auth_time),
            acr: s.acr,
            amr: s.amr,
        },
    })
}

/// Encodes an audit row (its time and id are the key).
pub fn encode_audit(r: &AuditRecord) -> Result<Vec<u8>, StoreError> {
    encode(&StoredAudit {
        kind: r.kind.clone(),
        actor: r.actor.clone(),
        user_id: r.user_id.clone(),
        session_id: r.session_id.map(|s| *s.as_bytes()),
        ip: r.ip.clone(),
        user_agent: r.user_agent.clone(),
        reason: r.reason.clone(),
    })
}

/// Decodes an audit row.
pub fn decode_audit(
    at: Timestamp,
    event_id: uuid::Uuid,
    bytes: &[u8],
) -> Result<AuditRecord, StoreError> {
    let a: StoredAudit = decode(bytes)?;
    Ok(AuditRecord {
        event_id,
        at,
        kind: a.kind,
        actor: a.actor,
        user_id: a.user_id,
        session_id: a
            .session_id
            .map(|b| SessionId::from_uuid(uuid::Uuid::from_bytes(b))),
        ip: a.ip,
        user_agent: a.user_agent,
        reason: a.reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_1_row_reads_as_signed_in_when_created() {
        let v1 = StoredSessionV1 {
            user_id: "alice".into(),
            tenant_id: String::new(),
            created_at: 1_700_000_000_000_001,
            last_seen_at: 1_700_000_000_500_000,
            expires_at: 1_700_086_400_000_000,
            ip: "192.0.2.1".into(),
            user_agent: "ua".into(),
            device_name: "d".into(),
            metadata: BTreeMap::new(),
            refresh_generation: 4,
            refresh_hash: [7; 32],
            revoked_at: None,
            revoke_reason: String::new(),
        };
        let bytes = encode_at(VERSION, &v1).expect("encode v1");
        let id = SessionId::new();
        let r = decode_session(id, &bytes).expect("a version 1 row decodes");
        assert_eq!(r.refresh_generation, 4);
        assert_eq!(r.refresh_salt, None);
        assert_eq!(r.previous_refresh, None);
        assert_eq!(r.idle_timeout, None);
        assert_eq!(
            r.sign_in.auth_time,
            Timestamp::from_micros(1_700_000_000_000_001)
        );
        // Written back, it is a version 2 row that reads the same.
        let again = encode_session(&r).expect("encode");
        assert_eq!(again.first(), Some(&SESSION_VERSION));
        assert_eq!(decode_session(id, &again).expect("decode"), r);
        assert!(decode_session(id, &[9, 1, 2]).is_err());
    }
}
