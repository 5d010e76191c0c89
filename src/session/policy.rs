//! The pure lifetime policy: idle and absolute timeouts, and when to renew.

use super::UnixMillis;

/// Session lifetime settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionPolicy {
    /// A session unused this long dies.
    pub idle_timeout_ms: i64,
    /// A session dies this long after creation, however active.
    pub absolute_timeout_ms: i64,
    /// Renew at least this often (ms), whatever the idle window: a renewal is where Redis
    /// checks the session against its user's current credential version, and between renewals
    /// the pushed revocations (kept this long) stand in for that check.
    pub recheck_ms: i64,
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
    /// The policy for one session: its own idle timeout (native clients) when it has one.
    pub fn for_idle(&self, idle_timeout_ms: i64) -> SessionPolicy {
        if idle_timeout_ms > 0 {
            SessionPolicy {
                idle_timeout_ms,
                ..*self
            }
        } else {
            *self
        }
    }

    /// Deadlines for a session created at `now`: (idle deadline, absolute deadline).
    pub fn initial_deadlines(&self, now: UnixMillis) -> (UnixMillis, UnixMillis) {
        let absolute = now + self.absolute_timeout_ms;
        ((now + self.idle_timeout_ms).min(absolute), absolute)
    }

    /// Redis TTL for a record with these deadlines: the nearer one.
    pub fn ttl_ms(&self, now: UnixMillis, idle: UnixMillis, absolute: UnixMillis) -> i64 {
        (idle.min(absolute) - now).max(1)
    }

    /// `check`, but a live session renews now whatever its last renewal: used while this node
    /// cannot vouch for its pushed revocations (a stale feed), so Redis checks every use.
    pub fn check_in_redis(
        &self,
        now: UnixMillis,
        idle_expires_at: UnixMillis,
        expires_at: UnixMillis,
    ) -> Liveness {
        self.check(now, i64::MIN / 2, idle_expires_at, expires_at)
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
        let threshold = (self.idle_timeout_ms / self.renew_divisor.max(1)).min(self.recheck_ms);
        if now - last_seen < threshold {
            return Liveness::Live;
        }
        // Near the absolute deadline there may be nothing to extend; it renews all the same
        // (the deadline never moves back), because the renewal is also the Redis-side check.
        let idle = (now + self.idle_timeout_ms)
            .min(expires_at)
            .max(idle_expires_at);
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
            recheck_ms: i64::MAX,
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
    fn a_session_is_renewed_at_least_every_recheck_period_whatever_its_idle_window() {
        let p = SessionPolicy {
            idle_timeout_ms: 7 * 24 * 60 * MIN,
            recheck_ms: 15 * MIN,
            ..policy()
        };
        assert_eq!(
            p.check(14 * MIN, 0, 7 * 24 * 60 * MIN, 30 * 24 * 60 * MIN),
            Liveness::Live
        );
        assert!(matches!(
            p.check(15 * MIN, 0, 7 * 24 * 60 * MIN, 30 * 24 * 60 * MIN),
            Liveness::Renew { .. }
        ));
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
        // Already capped: it still renews, because a renewal is also the Redis-side check of
        // the session's credential version; the deadline stays where it is.
        assert_eq!(
            p.check(abs - MIN, abs - 10 * MIN, abs, abs),
            Liveness::Renew {
                idle_expires_at: abs,
                ttl_ms: MIN
            }
        );
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
                    // Moves forward, or stays when capped by the absolute deadline (a renewal
                    // there is only the Redis-side check).
                    prop_assert!(idle_expires_at > idle || idle_expires_at == abs);
                    prop_assert!(idle_expires_at >= idle);
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

/// What a high-risk route demands: a level, its freshness, and optionally a role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub acr: super::Acr,
    pub max_age_secs: i64,
    pub role: Option<String>,
}

/// How a session measures up against a `Requirement`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Satisfied,
    /// Checked first: nobody is asked to step up for a route they may never use (403).
    MissingRole,
    /// Valid session, level too low or too old: RFC 9470 challenge (401).
    Insufficient,
}

impl Requirement {
    /// `elevated_acr >= acr && now - elevated_at <= max_age`; the login itself counts as an
    /// elevation at `auth_time` with the session's `acr` (a fresh MFA login needs no step-up).
    pub fn judge(&self, record: &super::SessionRecord, now: UnixMillis) -> Verdict {
        if let Some(role) = &self.role {
            if !record.roles.iter().any(|r| r == role) {
                return Verdict::MissingRole;
            }
        }
        let window = self.max_age_secs * 1000;
        // At or after: a step-up in the same millisecond as the anomaly's detection (the step-up
        // request itself may be what revealed it) is exactly the re-verification asked for.
        let after_anomaly = |t: UnixMillis| record.anomaly_at == 0 || t >= record.anomaly_at;
        let stepped_up = record.elevated_acr.is_some_and(|acr| {
            acr >= self.acr
                && now - record.elevated_at <= window
                && after_anomaly(record.elevated_at)
        });
        let fresh_login = record.acr >= self.acr
            && now - record.auth_time <= window
            && after_anomaly(record.auth_time);
        if stepped_up || fresh_login {
            Verdict::Satisfied
        } else {
            Verdict::Insufficient
        }
    }
}

#[cfg(test)]
mod requirement_tests {
    use super::*;
    use crate::session::{Acr, SessionRecord, UserId};
    use proptest::prelude::*;

    fn record(
        acr: Acr,
        auth_time: i64,
        elevated: Option<(i64, Acr)>,
        roles: &str,
    ) -> SessionRecord {
        SessionRecord {
            user_id: UserId::parse("u").unwrap(),
            credential_version: 0,
            created_at: auth_time,
            last_seen_at: auth_time,
            idle_expires_at: i64::MAX,
            expires_at: i64::MAX,
            auth_time,
            acr,
            amr: Vec::new(),
            elevated_at: elevated.map(|e| e.0).unwrap_or(0),
            elevated_acr: elevated.map(|e| e.1),
            anomaly_at: 0,
            secret_hash: crate::session::SessionSecret::generate().hash(),
            ip: String::new(),
            ua: String::new(),
            device_name: String::new(),
            roles: roles.split_whitespace().map(str::to_owned).collect(),
            idle_timeout_ms: 0,
            refresh: None,
            from_users_file: false,
        }
    }

    fn mfa_5min(role: Option<&str>) -> Requirement {
        Requirement {
            acr: Acr::Mfa,
            max_age_secs: 300,
            role: role.map(str::to_owned),
        }
    }

    #[test]
    fn role_is_checked_before_level() {
        let r = record(Acr::Pwd, 0, None, "member");
        assert_eq!(
            mfa_5min(Some("admin")).judge(&r, 1_000),
            Verdict::MissingRole
        );
        assert_eq!(mfa_5min(None).judge(&r, 1_000), Verdict::Insufficient);
    }

    #[test]
    fn a_password_step_up_never_satisfies_mfa() {
        let r = record(Acr::Pwd, 0, Some((1_000, Acr::Pwd)), "");
        assert_eq!(mfa_5min(None).judge(&r, 2_000), Verdict::Insufficient);
    }

    #[test]
    fn elevation_expires_after_max_age() {
        let r = record(Acr::Pwd, 0, Some((10_000, Acr::Mfa)), "admin");
        assert_eq!(
            mfa_5min(Some("admin")).judge(&r, 10_000 + 300_000),
            Verdict::Satisfied
        );
        assert_eq!(
            mfa_5min(Some("admin")).judge(&r, 10_000 + 300_001),
            Verdict::Insufficient
        );
    }

    #[test]
    fn after_an_anomaly_only_a_later_step_up_counts() {
        let mut r = record(Acr::Mfa, 50_000, Some((60_000, Acr::Mfa)), "");
        r.anomaly_at = 70_000;
        assert_eq!(mfa_5min(None).judge(&r, 80_000), Verdict::Insufficient);
        r.elevated_at = 75_000;
        assert_eq!(mfa_5min(None).judge(&r, 80_000), Verdict::Satisfied);
        r.elevated_at = 70_000; // same millisecond: the step-up that followed the detection
        assert_eq!(mfa_5min(None).judge(&r, 80_000), Verdict::Satisfied);
        r.elevated_at = 69_999;
        assert_eq!(mfa_5min(None).judge(&r, 80_000), Verdict::Insufficient);
    }

    #[test]
    fn a_fresh_mfa_login_counts_as_elevated() {
        let r = record(Acr::Mfa, 50_000, None, "");
        assert_eq!(mfa_5min(None).judge(&r, 60_000), Verdict::Satisfied);
        assert_eq!(
            mfa_5min(None).judge(&r, 50_000 + 300_001),
            Verdict::Insufficient
        );
    }

    proptest! {
        #[test]
        fn satisfied_implies_a_fresh_enough_strong_enough_event(
            auth in 0i64..1_000_000, acr_mfa: bool, elev in proptest::option::of((0i64..1_000_000, any::<bool>())),
            now in 0i64..2_000_000, max_age in 0i64..1000,
        ) {
            let acr = if acr_mfa { Acr::Mfa } else { Acr::Pwd };
            let elevated = elev.map(|(t, m)| (t, if m { Acr::Mfa } else { Acr::Pwd }));
            let r = record(acr, auth, elevated, "");
            let req = Requirement { acr: Acr::Mfa, max_age_secs: max_age, role: None };
            if req.judge(&r, now) == Verdict::Satisfied {
                let via_login = acr == Acr::Mfa && now - auth <= max_age * 1000;
                let via_step_up = elevated.is_some_and(|(t, a)| a == Acr::Mfa && now - t <= max_age * 1000);
                prop_assert!(via_login || via_step_up);
            }
        }
    }
}
