//! Time arithmetic the ScyllaDB layout needs: TTLs, time buckets of the feed and audit
//! partitions, and version 1 (time) UUIDs for the feed's `timeuuid` column.
//!
//! Pure functions only: no I/O, no clock reads (callers pass `now`), so all of it is tested
//! without a server.

use rand::Rng;
use uuid::Uuid;

use crate::model::time::Timestamp;

const MICROS_PER_SEC: i64 = 1_000_000;
const MICROS_PER_MINUTE: i64 = 60 * MICROS_PER_SEC;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SEC;
/// CQL refuses TTLs above 20 years.
const MAX_TTL_SECS: i64 = 20 * 365 * 86_400;
/// 100-ns intervals between the Gregorian epoch of version 1 UUIDs and the Unix epoch.
const GREGORIAN_OFFSET_TICKS: i64 = 0x01B2_1DD2_1381_4000;

/// The `USING TTL` of a write made at `now` to a row that expires at `expires_at`, or `None`
/// when the row has expired (`expires_at <= now`) and must not be written at all.
///
/// The server starts counting a TTL from its current whole second, so a cell written with
/// exactly `ceil(expires_at - now)` can vanish up to a second before `expires_at`. One second
/// of slack keeps every cell until at least `expires_at`; reads treat `expires_at <= now` as
/// absent, so the slack never makes an expired session visible. A row in its last second is
/// still written (for two seconds): it stands until `expires_at` to the microsecond, as on
/// every backend, so a refresh or a revocation in that second must not find it gone.
pub(super) fn ttl_secs(expires_at: Timestamp, now: Timestamp) -> Option<i32> {
    let remaining = expires_at.as_micros().saturating_sub(now.as_micros());
    if remaining <= 0 {
        return None;
    }
    let secs = remaining.div_euclid(MICROS_PER_SEC) + i64::from(remaining % MICROS_PER_SEC != 0);
    i32::try_from(secs.saturating_add(1).min(MAX_TTL_SECS)).ok()
}

/// The TTL that keeps a row for `retention`, within CQL's bounds (1 s to 20 years).
pub(super) fn retention_ttl(retention: std::time::Duration) -> i32 {
    let secs = i64::try_from(retention.as_secs()).unwrap_or(MAX_TTL_SECS);
    i32::try_from(secs.clamp(1, MAX_TTL_SECS)).unwrap_or(i32::MAX)
}

/// The revocation feed's minute bucket of an instant.
pub(super) fn minute(at: Timestamp) -> i64 {
    at.as_micros().div_euclid(MICROS_PER_MINUTE)
}

/// The all-users audit table's day bucket (days since the Unix epoch, UTC).
pub(super) fn day(at: Timestamp) -> i32 {
    clamp_i32(at.as_micros().div_euclid(MICROS_PER_DAY))
}

/// The per-user audit table's month bucket as `yyyymm` (UTC), readable in `cqlsh`.
pub(super) fn month(at: Timestamp) -> i32 {
    let (y, m) = civil_year_month(at.as_micros().div_euclid(MICROS_PER_DAY));
    clamp_i32(y.saturating_mul(100).saturating_add(m))
}

/// The month bucket before `yyyymm`.
pub(super) fn previous_month(yyyymm: i32) -> i32 {
    let (y, m) = (
        i64::from(yyyymm).div_euclid(100),
        i64::from(yyyymm).rem_euclid(100),
    );
    clamp_i32(if m <= 1 {
        (y - 1) * 100 + 12
    } else {
        y * 100 + m - 1
    })
}

/// A version 1 UUID for instant `at`: its time is `at` (to the microsecond), its clock
/// sequence and node are random, so concurrent writers never collide in practice.
pub(super) fn timeuuid(at: Timestamp) -> Uuid {
    let mut rng = rand::thread_rng();
    let ticks = GREGORIAN_OFFSET_TICKS
        .saturating_add(at.as_micros().saturating_mul(10))
        .saturating_add(rng.gen_range(0..10));
    let mut node = [0u8; 6];
    rng.fill(&mut node);
    // The multicast bit marks a node id that is not a real MAC address (RFC 9562 §6.10).
    node[0] |= 0x01;
    let ticks = u64::try_from(ticks).unwrap_or(0);
    uuid::Builder::from_gregorian_timestamp(ticks, rng.gen_range(0..0x4000), &node).into_uuid()
}

/// The instant of a version 1 UUID, to the microsecond; `None` for other versions.
pub(super) fn timeuuid_instant(id: &Uuid) -> Option<Timestamp> {
    if id.get_version_num() != 1 {
        return None;
    }
    let (ticks, _) = id.get_timestamp()?.to_gregorian();
    let ticks = i64::try_from(ticks).ok()?;
    Some(Timestamp::from_micros(
        (ticks - GREGORIAN_OFFSET_TICKS).div_euclid(10),
    ))
}

fn clamp_i32(v: i64) -> i32 {
    i32::try_from(v).unwrap_or(if v < 0 { i32::MIN } else { i32::MAX })
}

/// Year and month (1..=12) of a day count since 1970-01-01, proleptic Gregorian calendar.
/// Howard Hinnant's `civil_from_days`, exact for every representable day.
fn civil_year_month(days: i64) -> (i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: i64) -> Timestamp {
        Timestamp::from_micros(s * MICROS_PER_SEC)
    }

    #[test]
    fn ttl_rounds_up_adds_slack_and_ends_with_the_row() {
        let now = secs(1_000);
        assert_eq!(ttl_secs(secs(1_010), now), Some(11));
        assert_eq!(
            ttl_secs(Timestamp::from_micros(1_010 * MICROS_PER_SEC + 1), now),
            Some(12)
        );
        assert_eq!(ttl_secs(secs(1_001), now), Some(2));
        assert_eq!(
            ttl_secs(Timestamp::from_micros(1_000_999_999), now),
            Some(2)
        );
        assert_eq!(
            ttl_secs(Timestamp::from_micros(1_000_000_001), now),
            Some(2)
        );
        assert_eq!(ttl_secs(now, now), None);
        assert_eq!(ttl_secs(secs(0), now), None);
        assert_eq!(
            ttl_secs(Timestamp::from_micros(i64::MAX), now),
            Some(630_720_000)
        );
        assert_eq!(
            ttl_secs(secs(5), Timestamp::from_micros(i64::MIN)),
            Some(630_720_000)
        );
    }

    #[test]
    fn buckets() {
        // 2024-02-29T23:59:59Z and the next second.
        let leap = secs(1_709_251_199);
        assert_eq!(month(leap), 202_402);
        assert_eq!(month(secs(1_709_251_200)), 202_403);
        assert_eq!(day(secs(1_709_251_200)), 19_783);
        assert_eq!(month(secs(0)), 197_001);
        assert_eq!(month(secs(-1)), 196_912);
        assert_eq!(minute(secs(119)), 1);
        assert_eq!(minute(secs(-1)), -1);
        assert_eq!(previous_month(202_401), 202_312);
        assert_eq!(previous_month(202_412), 202_411);
        // Extremes saturate instead of overflowing.
        let _ = (
            month(Timestamp::from_micros(i64::MAX)),
            month(Timestamp::from_micros(i64::MIN)),
        );
        let _ = (
            day(Timestamp::from_micros(i64::MAX)),
            minute(Timestamp::from_micros(i64::MIN)),
        );
    }

    #[test]
    fn timeuuids_carry_their_instant() {
        for at in [
            secs(1_700_000_000),
            Timestamp::from_micros(1_700_000_000_123_456),
            secs(0),
        ] {
            let id = timeuuid(at);
            assert_eq!(id.get_version_num(), 1);
            assert_eq!(timeuuid_instant(&id), Some(at));
            assert_ne!(timeuuid(at), id);
        }
        assert_eq!(timeuuid_instant(&Uuid::now_v7()), None);
    }
}
