//! Byte layouts of the embedded store's composite keys.
//!
//! Ids never contain control characters (checked at the edge), so `0x00` separates text parts
//! and a `user 0x00` prefix selects exactly one user's rows. Integers are big-endian with the
//! sign bit flipped, so byte order is numeric order.

use crate::model::ids::{SessionId, TenantId, UserId};
use crate::model::time::Timestamp;

/// Order-preserving encoding of a signed instant.
pub fn time_bytes(t: Timestamp) -> [u8; 8] {
    ((t.as_micros() as u64) ^ (1 << 63)).to_be_bytes()
}

/// Inverse of [`time_bytes`].
pub fn time_from(bytes: &[u8]) -> Option<Timestamp> {
    let arr: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    Some(Timestamp::from_micros(
        (u64::from_be_bytes(arr) ^ (1 << 63)) as i64,
    ))
}

/// `user 0x00`: the prefix of every row of one user.
pub fn user_prefix(user: &UserId) -> Vec<u8> {
    let mut k = Vec::with_capacity(user.as_str().len() + 1);
    k.extend_from_slice(user.as_str().as_bytes());
    k.push(0);
    k
}

/// `user 0x00 tenant 0x00`: the prefix of one user's rows in one tenant.
pub fn user_tenant_prefix(user: &UserId, tenant: &TenantId) -> Vec<u8> {
    let mut k = user_prefix(user);
    k.extend_from_slice(tenant.as_str().as_bytes());
    k.push(0);
    k
}

/// Which part of the per-user index a session is in. Active sessions come first in byte
/// order, so what `Issue`, `List` and `RevokeAll` read is bounded by the live sessions of a
/// user, never by their history of revoked ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Not revoked.
    Active,
    /// Revoked, kept until it expires for the admin listing.
    Revoked,
}

impl Standing {
    fn byte(self) -> u8 {
        match self {
            Standing::Active => b'a',
            Standing::Revoked => b'r',
        }
    }
}

/// The byte after `user 0x00` of the per-user index's audit entries. Between the two standings'
/// bytes, so a scan of one standing never meets them; and beside the user's session entries, so
/// an `Issue`'s session entry and its audit entry land on one page of the index, and its write
/// copies and flushes one page where two tables would each have needed their own.
const AUDIT_PART: u8 = b'e';

/// `user 0x00 'e'`: the prefix of one user's audit entries in the per-user index. Takes the
/// audit record's user text, which is a `UserId`'s or empty (an event of no user is not indexed).
pub fn user_audit_prefix(user: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(user.len() + 2);
    k.extend_from_slice(user.as_bytes());
    k.push(0);
    k.push(AUDIT_PART);
    k
}

/// The per-user index key of an audit entry that earlier versions kept in a table of its own
/// (`user 0x00 at event_id`); `None` for bytes of another shape.
pub fn audit_entry_from_v1(old: &[u8]) -> Option<Vec<u8>> {
    let (user, tail) = old.split_at(old.len().checked_sub(24)?);
    if user.last() != Some(&0) || user.len() < 2 {
        return None;
    }
    let mut k = Vec::with_capacity(old.len() + 1);
    k.extend_from_slice(user);
    k.push(AUDIT_PART);
    k.extend_from_slice(tail);
    Some(k)
}

/// `user 0x00 standing`: one user's sessions of one standing, every tenant.
pub fn user_standing_prefix(user: &UserId, standing: Standing) -> Vec<u8> {
    let mut k = user_prefix(user);
    k.push(standing.byte());
    k
}

/// `user 0x00 standing tenant 0x00`: one user's sessions of one standing in one tenant.
pub fn user_standing_tenant_prefix(
    user: &UserId,
    standing: Standing,
    tenant: &TenantId,
) -> Vec<u8> {
    let mut k = user_standing_prefix(user, standing);
    k.extend_from_slice(tenant.as_str().as_bytes());
    k.push(0);
    k
}

/// A `sessions_by_user_v2` key: `user 0x00 standing tenant 0x00 created_at session_id`.
pub fn by_user(
    user: &UserId,
    tenant: &TenantId,
    standing: Standing,
    created: Timestamp,
    id: SessionId,
) -> Vec<u8> {
    let mut k = user_standing_tenant_prefix(user, standing, tenant);
    k.extend_from_slice(&time_bytes(created));
    k.extend_from_slice(id.as_bytes());
    k
}

/// The session id at the end of a `sessions_by_user` key.
pub fn session_of_by_user(key: &[u8]) -> Option<SessionId> {
    let start = key.len().checked_sub(16)?;
    let raw: [u8; 16] = key.get(start..)?.try_into().ok()?;
    Some(SessionId::from_uuid(uuid::Uuid::from_bytes(raw)))
}

/// An expiry index key: `expires_at session_id`.
pub fn expiry(at: Timestamp, id: SessionId) -> Vec<u8> {
    let mut k = Vec::with_capacity(24);
    k.extend_from_slice(&time_bytes(at));
    k.extend_from_slice(id.as_bytes());
    k
}

/// An audit key: `at event_id`, optionally behind a user prefix.
pub fn audit(prefix: &[u8], at: Timestamp, event: uuid::Uuid) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 24);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&time_bytes(at));
    k.extend_from_slice(event.as_bytes());
    k
}

/// The smallest key greater than every key that starts with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    // Only an all-0xFF prefix gets here; no id contains such bytes, so any bound works.
    vec![u8::MAX; prefix.len() + 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_bytes_preserve_order() {
        let ts = [-5_i64, -1, 0, 1, 1_700_000_000_000_000];
        for w in ts.windows(2) {
            let (a, b) = (Timestamp::from_micros(w[0]), Timestamp::from_micros(w[1]));
            assert!(time_bytes(a) < time_bytes(b));
            assert_eq!(time_from(&time_bytes(a)), Some(a));
        }
    }

    #[test]
    fn a_users_audit_entries_sit_beside_their_sessions_and_outside_both_standings() {
        let u = UserId::parse("u", "alice").expect("valid");
        let session = |standing| {
            by_user(
                &u,
                &TenantId::none(),
                standing,
                Timestamp::from_micros(5),
                SessionId::new(),
            )
        };
        let event = audit(
            &user_audit_prefix(u.as_str()),
            Timestamp::from_micros(7),
            uuid::Uuid::now_v7(),
        );
        assert!(event.starts_with(&user_prefix(&u)));
        for standing in [Standing::Active, Standing::Revoked] {
            let part = user_standing_prefix(&u, standing);
            assert!(!event.starts_with(&part));
            assert!(!session(standing).starts_with(&user_audit_prefix(u.as_str())));
        }
        assert!(session(Standing::Active) < event && event < session(Standing::Revoked));
    }

    #[test]
    fn an_earlier_versions_audit_index_key_moves_under_the_audit_part() {
        let at = Timestamp::from_micros(1_700_000_000_000_000);
        let id = uuid::Uuid::now_v7();
        let mut old = b"alice".to_vec();
        old.push(0);
        let old = audit(&old, at, id);
        assert_eq!(
            audit_entry_from_v1(&old),
            Some(audit(&user_audit_prefix("alice"), at, id))
        );
        // No user, no separator, or too short: not a key of that table.
        assert_eq!(audit_entry_from_v1(&audit(&[], at, id)), None);
        assert_eq!(audit_entry_from_v1(&audit(b"alice", at, id)), None);
        assert_eq!(audit_entry_from_v1(&[0; 10]), None);
    }

    #[test]
    fn user_prefix_does_not_match_longer_user() {
        let a = UserId::parse("u", "ab").expect("valid");
        let b = UserId::parse("u", "abc").expect("valid");
        let key = by_user(
            &b,
            &TenantId::none(),
            Standing::Active,
            Timestamp::from_micros(1),
            SessionId::new(),
        );
        assert!(!key.starts_with(&user_prefix(&a)));
        assert!(prefix_end(&user_prefix(&a)) > user_prefix(&a));
    }
}
