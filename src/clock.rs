//! The one clock. Production reads the system clock; tests hand in a `TestClock` they move by
//! hand, so deadlines (idle expiry, renewal, grants, grace windows, rate-limit windows) are
//! tested by advancing time, not by sleeping.
//!
//! Rules never read a clock: they take `now` as an argument. Services hold a `SharedClock` and
//! read it once per operation. Redis keeps its own time only for key TTLs (and the credential
//! versions, stamped with Redis's `TIME` so every node agrees; see `store/lua/create.lua`).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub type UnixMillis = i64;

pub trait Clock: Send + Sync {
    fn now_ms(&self) -> UnixMillis;
}

impl std::fmt::Debug for dyn Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now_ms())
    }
}

/// What every component holds.
pub type SharedClock = Arc<dyn Clock>;

/// The wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> UnixMillis {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default()
    }
}

/// The system clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock tests move by hand; clones share one time. `new()` runs with the wall clock plus
/// whatever it was advanced by (so background loops and several nodes stay sane), `at(t)` is
/// frozen at `t` and moves only when told to (for pure unit tests).
#[derive(Clone, Debug)]
pub struct TestClock {
    /// Added to the wall clock while not frozen.
    offset: Arc<AtomicI64>,
    /// The frozen time, or `i64::MIN` while running.
    frozen: Arc<AtomicI64>,
}

impl TestClock {
    /// The wall clock, plus whatever `advance` adds.
    pub fn new() -> Self {
        Self {
            offset: Arc::new(AtomicI64::new(0)),
            frozen: Arc::new(AtomicI64::new(i64::MIN)),
        }
    }

    /// Frozen at `now`.
    pub fn at(now: UnixMillis) -> Self {
        let clock = Self::new();
        clock.set(now);
        clock
    }

    pub fn advance(&self, by: Duration) {
        let by = by.as_millis() as i64;
        if self.frozen.load(Ordering::SeqCst) == i64::MIN {
            self.offset.fetch_add(by, Ordering::SeqCst);
        } else {
            self.frozen.fetch_add(by, Ordering::SeqCst);
        }
    }

    /// Freezes the clock at `now`.
    pub fn set(&self, now: UnixMillis) {
        self.frozen.store(now, Ordering::SeqCst);
    }

    pub fn shared(&self) -> SharedClock {
        Arc::new(self.clone())
    }
}

impl Default for TestClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TestClock {
    fn now_ms(&self) -> UnixMillis {
        match self.frozen.load(Ordering::SeqCst) {
            i64::MIN => SystemClock.now_ms() + self.offset.load(Ordering::SeqCst),
            frozen => frozen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_clock_moves_only_when_told_and_clones_share_it() {
        let clock = TestClock::at(1_000);
        let shared = clock.shared();
        assert_eq!(shared.now_ms(), 1_000);
        clock.advance(Duration::from_secs(2));
        assert_eq!(shared.now_ms(), 3_000);
        clock.set(5);
        assert_eq!(shared.now_ms(), 5);
    }

    #[test]
    fn a_running_test_clock_follows_the_wall_clock_plus_its_advances() {
        let clock = TestClock::new();
        let before = SystemClock.now_ms();
        clock.advance(Duration::from_secs(60));
        let now = clock.now_ms();
        assert!(now >= before + 60_000 && now < SystemClock.now_ms() + 61_000);
    }

    #[test]
    fn the_system_clock_is_after_2020() {
        assert!(SystemClock.now_ms() > 1_577_836_800_000);
    }
}
