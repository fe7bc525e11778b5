//! Where "now" comes from. The service reads time through one [`Clock`] given to it at
//! start-up, so tests can move time forward (expiry, not-before, sweeps) instead of waiting.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use super::time::Timestamp;

/// A source of the current instant.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// The clock every layer shares.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's wall clock: the clock of every real deployment.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_system(SystemTime::now())
    }
}

impl SystemClock {
    /// The system clock, shared.
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

/// A clock that moves only when told to, for tests. Clones share one instant.
#[derive(Clone, Debug)]
pub struct ManualClock {
    micros: Arc<AtomicI64>,
}

impl ManualClock {
    /// A manual clock reading the wall clock's current instant, so records it stamps stay
    /// plausible to a store that also keeps its own time-to-live.
    pub fn starting_now() -> Self {
        Self::starting_at(SystemClock.now())
    }

    /// A manual clock reading `at`.
    pub fn starting_at(at: Timestamp) -> Self {
        Self {
            micros: Arc::new(AtomicI64::new(at.as_micros())),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let us = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.micros.fetch_add(us, Ordering::SeqCst);
    }

    /// Sets the clock to `at` (which may be in its past).
    pub fn set(&self, at: Timestamp) {
        self.micros.store(at.as_micros(), Ordering::SeqCst);
    }

    /// This clock, shared.
    pub fn shared(&self) -> SharedClock {
        Arc::new(self.clone())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_micros(self.micros.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_clones_share_it() {
        let clock = ManualClock::starting_at(Timestamp::from_micros(1_000));
        let other = clock.clone();
        assert_eq!(clock.now(), Timestamp::from_micros(1_000));
        other.advance(Duration::from_millis(2));
        assert_eq!(clock.now(), Timestamp::from_micros(3_000));
        clock.set(Timestamp::from_micros(10));
        assert_eq!(other.now(), Timestamp::from_micros(10));
    }
}
