//! Instants at microsecond precision. Revocation "not before" checks compare at sub-second
//! precision, so a session issued just after a revocation, within the same second, stays valid.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Microseconds since the Unix epoch, UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The current wall-clock time. The service never decides by it: domain and store read
    /// the one [`Clock`](super::Clock) they were given, so that tests can move time.
    pub fn now() -> Self {
        Self::from_system(SystemTime::now())
    }

    /// Converts a system time; times before the epoch become negative.
    pub fn from_system(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Self(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
            Err(e) => Self(-i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX)),
        }
    }

    /// Wraps a raw count of microseconds.
    pub const fn from_micros(us: i64) -> Self {
        Self(us)
    }

    /// The raw count of microseconds.
    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch, rounded down (what JWT `iat`/`exp` carry).
    pub fn as_secs(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    /// Sub-second part in nanoseconds, for protobuf timestamps.
    pub fn subsec_nanos(self) -> i32 {
        // rem_euclid(1_000_000) < 1_000_000, so the product fits in i32.
        (self.0.rem_euclid(1_000_000) * 1000) as i32
    }

    /// This instant moved forward, saturating.
    pub fn plus(self, d: Duration) -> Self {
        let us = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(us))
    }

    /// This instant moved back, saturating.
    pub fn minus(self, d: Duration) -> Self {
        let us = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        Self(self.0.saturating_sub(us))
    }

    /// Time from `self` until `later`; zero when `later` is not after `self`.
    pub fn until(self, later: Timestamp) -> Duration {
        Duration::from_micros(u64::try_from(later.0.saturating_sub(self.0)).unwrap_or(0))
    }
}
