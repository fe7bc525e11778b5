//! On-disk encoding of embedded rows (postcard), versioned so the layout can change later.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::ids::{SessionId, TenantId, UserId};
use crate::model::records::{AuditRecord, RefreshHash, SessionRecord};
use crate::model::time::Timestamp;
use crate::store::StoreError;

const VERSION: u8 = 1;

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
    let mut out = vec![VERSION];
    let body = postcard::to_stdvec(value).map_err(|e| StoreError::Backend(e.to_string()))?;
    out.extend_from_slice(&body);
    Ok(out)
}

fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&VERSION, body)) => {
            postcard::from_bytes(body).map_err(|e| StoreError::Backend(format!("corrupt row: {e}")))
        }
        _ => Err(StoreError::Backend(
            "row of an unknown format version".into(),
        )),
    }
}

/// Encodes a session row (its id is the key).
pub fn encode_session(r: &SessionRecord) -> Result<Vec<u8>, StoreError> {
    encode(&StoredSession {
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
    })
}

/// Decodes a session row.
pub fn decode_session(id: SessionId, bytes: &[u8]) -> Result<SessionRecord, StoreError> {
    let s: StoredSession = decode(bytes)?;
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
