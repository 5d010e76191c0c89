//! The pure lifetime policy: idle and absolute timeouts, and when to renew.

use super::UnixMillis;

/// Session lifetime settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionPolicy {
    /// A session unused this long dies.
    pub idle_timeout_ms: i64,
    /// A session dies this long after creation, however active.
    pub absolute_timeout_ms: i64,
    /// Renew (write to Redis) only once this fraction of the idle window has passed since the
    /// last renewal, expressed as a divisor: 5 means "a fifth". Reads stay reads otherwise.
    pub renew_divisor: i64,
}

/// What the policy says about a session at `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// Alive; no write needed.
    Live,
    /// Alive, and the idle deadline should move to `idle_expires_at` with the key's TTL `ttl_ms`.
    Renew {
        idle_expires_at: UnixMillis,
        ttl_ms: i64,
    },
    Expired,
}

impl SessionPolicy {
    /// Deadlines for a session created at `now`: (idle deadline, absolute deadline).
    pub fn initial_deadlines(&self, now: UnixMillis) -> (UnixMillis, UnixMillis) {
        let absolute = now + self.absolute_timeout_ms;
        ((now + self.idle_timeout_ms).min(absolute), absolute)
    }

    /// Redis TTL for a record with these deadlines: the nearer one.
    pub fn ttl_ms(&self, now: UnixMillis, idle: UnixMillis, absolute: UnixMillis) -> i64 {
        (idle.min(absolute) - now).max(1)
    }

    /// Judges a session last renewed at `last_seen` with the given deadlines.
    pub fn check(
        &self,
        now: UnixMillis,
        last_seen: UnixMillis,
        idle_expires_at: UnixMillis,
        expires_at: UnixMillis,
    ) -> Liveness {
        if now >= idle_expires_at || now >= expires_at {
            return Liveness::Expired;
        }
        let threshold = self.idle_timeout_ms / self.renew_divisor.max(1);
        if now - last_seen < threshold {
            return Liveness::Live;
        }
        let idle = (now + self.idle_timeout_ms).min(expires_at);
        if idle <= idle_expires_at {
            // Capped by the absolute deadline already: nothing to extend.
            return Liveness::Live;
        }
        Liveness::Renew {
            idle_expires_at: idle,
            ttl_ms: self.ttl_ms(now, idle, expires_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIN: i64 = 60_000;

    fn policy() -> SessionPolicy {
        SessionPolicy {
            idle_timeout_ms: 30 * MIN,
            absolute_timeout_ms: 24 * 60 * MIN,
            renew_divisor: 5,
        }
    }

    #[test]
    fn fresh_session_is_live_without_a_write() {
        let p = policy();
        let (idle, abs) = p.initial_deadlines(0);
        assert_eq!(p.check(MIN, 0, idle, abs), Liveness::Live);
    }

    #[test]
    fn renewal_happens_after_a_fifth_of_the_idle_window() {
        let p = policy();
        let (idle, abs) = p.initial_deadlines(0);
        assert_eq!(p.check(6 * MIN - 1, 0, idle, abs), Liveness::Live);
        assert_eq!(
            p.check(6 * MIN, 0, idle, abs),
            Liveness::Renew {
                idle_expires_at: 36 * MIN,
                ttl_ms: 30 * MIN
            }
        );
    }

    #[test]
    fn idle_and_absolute_deadlines_kill() {
        let p = policy();
        let (idle, abs) = p.initial_deadlines(0);
        assert_eq!(p.check(30 * MIN, 0, idle, abs), Liveness::Expired);
        assert_eq!(p.check(abs, abs - MIN, abs + MIN, abs), Liveness::Expired);
    }

    #[test]
    fn renewal_never_passes_the_absolute_deadline() {
        let p = policy();
        let abs = 24 * 60 * MIN;
        match p.check(abs - 10 * MIN, abs - 20 * MIN, abs - 5 * MIN, abs) {
            Liveness::Renew {
                idle_expires_at,
                ttl_ms,
            } => {
                assert_eq!(idle_expires_at, abs);
                assert_eq!(ttl_ms, 10 * MIN);
            }
            other => panic!("expected renewal, got {other:?}"),
        }
        // Already capped: nothing to write.
        assert_eq!(p.check(abs - MIN, abs - 10 * MIN, abs, abs), Liveness::Live);
    }

    proptest! {
        #[test]
        fn renewal_stays_within_both_deadlines(
            created in 0i64..1_000_000,
            elapsed in 0i64..(48 * 60 * MIN),
            since_seen in 0i64..(40 * MIN),
        ) {
            let p = policy();
            let (idle0, abs) = p.initial_deadlines(created);
            let now = created + elapsed;
            let last_seen = (now - since_seen).max(created);
            let idle = (last_seen + p.idle_timeout_ms).min(abs).max(idle0.min(abs));
            match p.check(now, last_seen, idle, abs) {
                Liveness::Expired => prop_assert!(now >= idle || now >= abs),
                Liveness::Live => prop_assert!(now < idle && now < abs),
                Liveness::Renew { idle_expires_at, ttl_ms } => {
                    prop_assert!(now < idle && now < abs);
                    prop_assert!(idle_expires_at <= abs);
                    prop_assert!(idle_expires_at > idle);
                    prop_assert!(ttl_ms > 0 && now + ttl_ms <= abs);
                }
            }
        }
    }
}

/// What happens when a user already holds the maximum number of sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnLimit {
    /// End the least recently used session to make room (the default: users are never locked out).
    Evict,
    /// Refuse the new session (409 `session_limit_reached`).
    Reject,
}

/// Per-user concurrent-session limit, enforced atomically by the store when a session is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitPolicy {
    pub max_sessions: u32,
    pub on_limit: OnLimit,
}
