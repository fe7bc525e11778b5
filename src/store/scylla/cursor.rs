//! The opaque cursors this backend hands out: listing positions and revocation-feed positions.
//!
//! A listing cursor is `version ‖ kind ‖ payload`: the kind says which listing made it, so a
//! cursor of one listing given to another is `BadCursor`, never a confusing server error. The
//! payload is the driver's raw paging state (session listings) or a keyset position (audit
//! listings, which walk several time-bucket partitions). The domain authenticates cursors
//! before they come back; the checks here are about versions and misuse, not forgery.

use uuid::Uuid;

use super::StoreError;
use crate::model::time::Timestamp;

const VERSION: u8 = 1;
const FEED_VERSION: u8 = 1;
/// Most event ids a feed cursor remembers; more only means some events are delivered twice.
pub(super) const FEED_SEEN_MAX: usize = 256;

/// Which listing a cursor belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum CursorKind {
    /// All users' sessions: a paging state over `sessions`.
    Sessions = 1,
    /// One user's sessions: a paging state over `sessions_by_user`.
    UserSessions = 2,
    /// One user's audit events: a keyset over `audit_by_user`.
    UserAudit = 3,
    /// All audit events: a keyset over `audit_by_day`.
    AllAudit = 4,
}

/// A position in a listing that walks time buckets newest first: the bucket, and the
/// clustering key `(at, event_id)` of the last row returned from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Keyset {
    /// The partition's time bucket (`yyyymm` or day number).
    pub bucket: i32,
    /// `at` of the last row returned, in microseconds; `i64::MAX` to start a bucket.
    pub at: i64,
    /// `event_id` of the last row returned.
    pub event_id: Uuid,
}

impl Keyset {
    /// The start of `bucket`: before every row in it.
    pub fn bucket_start(bucket: i32) -> Self {
        Self {
            bucket,
            at: i64::MAX,
            event_id: Uuid::nil(),
        }
    }
}

/// Wraps a driver paging state.
pub(super) fn encode_paging(kind: CursorKind, state: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + state.len());
    out.push(VERSION);
    out.push(kind as u8);
    out.extend_from_slice(state);
    out
}

/// Unwraps a driver paging state of listing `kind`.
pub(super) fn decode_paging(kind: CursorKind, cursor: &[u8]) -> Result<&[u8], StoreError> {
    match cursor {
        [VERSION, k, state @ ..] if *k == kind as u8 && !state.is_empty() => Ok(state),
        _ => Err(StoreError::BadCursor),
    }
}

/// Encodes a keyset position.
pub(super) fn encode_keyset(kind: CursorKind, k: Keyset) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + 4 + 8 + 16);
    out.push(VERSION);
    out.push(kind as u8);
    out.extend_from_slice(&k.bucket.to_be_bytes());
    out.extend_from_slice(&k.at.to_be_bytes());
    out.extend_from_slice(k.event_id.as_bytes());
    out
}

/// Decodes a keyset position of listing `kind`.
pub(super) fn decode_keyset(kind: CursorKind, cursor: &[u8]) -> Result<Keyset, StoreError> {
    let [VERSION, k, rest @ ..] = cursor else {
        return Err(StoreError::BadCursor);
    };
    if *k != kind as u8 {
        return Err(StoreError::BadCursor);
    }
    let (bucket, rest) = take::<4>(rest)?;
    let (at, rest) = take::<8>(rest)?;
    let (id, rest) = take::<16>(rest)?;
    if !rest.is_empty() {
        return Err(StoreError::BadCursor);
    }
    Ok(Keyset {
        bucket: i32::from_be_bytes(bucket),
        at: i64::from_be_bytes(at),
        event_id: Uuid::from_bytes(id),
    })
}

/// Where a revocation-feed poll resumes: the instant the previous poll ran, the instant no
/// event at or before which is ever returned (where the caller started following the feed),
/// and the ids of returned events recent enough to be read again (polls overlap, see
/// `FEED_OVERLAP`), so that no event is returned twice while they fit in `FEED_SEEN_MAX`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct FeedCursor {
    /// When the previous poll read the feed.
    pub polled_at: Timestamp,
    /// Events stamped at or before this are never returned.
    pub floor: Timestamp,
    /// Ids of recently returned events, newest first.
    pub seen: Vec<Uuid>,
}

impl FeedCursor {
    /// A cursor at `now` that has returned nothing.
    pub fn start(now: Timestamp) -> Self {
        Self {
            polled_at: now,
            floor: now,
            seen: Vec::new(),
        }
    }

    /// `version ‖ polled_at (i64 BE) ‖ floor (i64 BE) ‖ count (u16 BE) ‖ ids`.
    pub fn encode(&self) -> Vec<u8> {
        let seen = self.seen.get(..FEED_SEEN_MAX).unwrap_or(&self.seen);
        let mut out = Vec::with_capacity(1 + 8 + 8 + 2 + 16 * seen.len());
        out.push(FEED_VERSION);
        out.extend_from_slice(&self.polled_at.as_micros().to_be_bytes());
        out.extend_from_slice(&self.floor.as_micros().to_be_bytes());
        // FEED_SEEN_MAX fits in a u16.
        out.extend_from_slice(&u16::try_from(seen.len()).unwrap_or(0).to_be_bytes());
        for id in seen {
            out.extend_from_slice(id.as_bytes());
        }
        out
    }

    /// Decodes `encode`'s output; anything else is `BadCursor`.
    pub fn decode(cursor: &[u8]) -> Result<Self, StoreError> {
        let [FEED_VERSION, rest @ ..] = cursor else {
            return Err(StoreError::BadCursor);
        };
        let (at, rest) = take::<8>(rest)?;
        let (floor, rest) = take::<8>(rest)?;
        let (count, mut rest) = take::<2>(rest)?;
        let count = usize::from(u16::from_be_bytes(count));
        if count > FEED_SEEN_MAX || rest.len() != count * 16 {
            return Err(StoreError::BadCursor);
        }
        let mut seen = Vec::with_capacity(count);
        while !rest.is_empty() {
            let (id, tail) = take::<16>(rest)?;
            seen.push(Uuid::from_bytes(id));
            rest = tail;
        }
        Ok(Self {
            polled_at: Timestamp::from_micros(i64::from_be_bytes(at)),
            floor: Timestamp::from_micros(i64::from_be_bytes(floor)),
            seen,
        })
    }
}

fn take<const N: usize>(bytes: &[u8]) -> Result<([u8; N], &[u8]), StoreError> {
    let (head, tail) = bytes
        .split_first_chunk::<N>()
        .ok_or(StoreError::BadCursor)?;
    Ok((*head, tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(r: Result<impl std::fmt::Debug, StoreError>) -> bool {
        matches!(r, Err(StoreError::BadCursor))
    }

    #[test]
    fn paging_cursors_round_trip_and_check_their_kind() {
        let c = encode_paging(CursorKind::Sessions, b"\x00\x04state");
        assert_eq!(
            decode_paging(CursorKind::Sessions, &c).ok(),
            Some(&b"\x00\x04state"[..])
        );
        assert!(bad(decode_paging(CursorKind::UserSessions, &c)));
        assert!(bad(decode_paging(
            CursorKind::Sessions,
            &encode_paging(CursorKind::Sessions, b"")
        )));
        assert!(bad(decode_paging(CursorKind::Sessions, b"")));
        assert!(bad(decode_paging(CursorKind::Sessions, b"\x02\x01abc")));
    }

    #[test]
    fn keyset_cursors_round_trip_and_check_their_kind() {
        let k = Keyset {
            bucket: 202_405,
            at: -5,
            event_id: Uuid::now_v7(),
        };
        let c = encode_keyset(CursorKind::UserAudit, k);
        assert_eq!(decode_keyset(CursorKind::UserAudit, &c).ok(), Some(k));
        assert!(bad(decode_keyset(CursorKind::AllAudit, &c)));
        assert!(bad(decode_keyset(CursorKind::UserAudit, &c[..c.len() - 1])));
        let mut long = c.clone();
        long.push(0);
        assert!(bad(decode_keyset(CursorKind::UserAudit, &long)));
    }

    #[test]
    fn feed_cursors_round_trip() {
        let c = FeedCursor {
            polled_at: Timestamp::from_micros(1_700_000_000_000_001),
            floor: Timestamp::from_micros(-3),
            seen: vec![Uuid::now_v7(), Uuid::nil()],
        };
        assert_eq!(FeedCursor::decode(&c.encode()).ok(), Some(c.clone()));
        let empty = FeedCursor::start(Timestamp::from_micros(0));
        assert_eq!(FeedCursor::decode(&empty.encode()).ok(), Some(empty));
        let bytes = c.encode();
        assert!(bad(FeedCursor::decode(&bytes[..bytes.len() - 1])));
        assert!(bad(FeedCursor::decode(b"")));
        assert!(bad(FeedCursor::decode(&encode_paging(
            CursorKind::Sessions,
            b"x"
        ))));
    }

    #[test]
    fn feed_cursor_keeps_at_most_the_cap() {
        let c = FeedCursor {
            polled_at: Timestamp::from_micros(1),
            floor: Timestamp::from_micros(1),
            seen: (0..FEED_SEEN_MAX as u128 + 10)
                .map(Uuid::from_u128)
                .collect(),
        };
        let back = FeedCursor::decode(&c.encode()).ok().map(|c| c.seen.len());
        assert_eq!(back, Some(FEED_SEEN_MAX));
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = FeedCursor::decode(&bytes);
            let _ = decode_keyset(CursorKind::AllAudit, &bytes);
            let _ = decode_paging(CursorKind::Sessions, &bytes);
        }
    }
}
