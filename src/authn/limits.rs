//! The pure login-throttling policy. Counters live in Redis (`store::auth`).
//!
//! **Passwords: a slowdown, never a lockout.** Failures count per (username, client network),
//! and a network that has never failed for a username is never delayed, so an attacker
//! hammering `admin` from elsewhere cannot keep the real admin out. Each failing network waits
//! 1 s, 2 s, 4 s … after its own last failure; a global per-username count (every network)
//! raises that wait for *failing* networks only, so a botnet spreading guesses over many
//! networks is slowed as a whole. The wait always runs from the waiting network's own last
//! failure, so nobody else's attempts can extend it.
//!
//! **Second factor: per user, across everything.** Once the password is known, TOTP guesses
//! count per user across tickets, networks and step-ups; a correct password never clears them
//! and they are forgotten only a day after the last wrong code. See `totp_daily_bound`.

use std::net::IpAddr;

/// Settings for login throttling.
#[derive(Clone, Copy, Debug)]
pub struct LoginLimits {
    /// Attempts per client IP per window (checked before any hashing).
    pub per_ip: u32,
    pub ip_window_secs: u64,
    /// Failures per (username, network) before that network's delays start.
    pub free_failures: u32,
    /// Failures per username, over every network, before failing networks wait longer.
    pub global_free_failures: u32,
    /// Longest delay between password attempts of one failing network.
    pub max_delay_secs: u64,
    /// Wrong second-factor codes per user before delays start.
    pub totp_free_failures: u32,
    /// Longest delay between second-factor attempts of one user.
    pub totp_max_delay_secs: u64,
    /// Successful logins per user per window.
    pub successes: u32,
    pub success_window_secs: u64,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self {
            per_ip: 30,
            ip_window_secs: 60,
            free_failures: 5,
            global_free_failures: 20,
            max_delay_secs: 300,
            totp_free_failures: 3,
            totp_max_delay_secs: 3600,
            successes: 30,
            success_window_secs: 600,
        }
    }
}

/// Failure counts of one username as seen from one client network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PasswordFailures {
    /// Failures from this network, and when the last one happened (ms).
    pub network: u32,
    pub network_last: i64,
    /// Failures from every network.
    pub global: u32,
}

/// `free` attempts, then 1, 2, 4 … seconds, capped at `max`.
fn escalate(failures: u32, free: u32, max: u64) -> u64 {
    if failures < free {
        return 0;
    }
    let exponent = (failures - free).min(30);
    (1u64 << exponent).min(max)
}

impl LoginLimits {
    /// Seconds a network must wait after its `failures` consecutive failures for a username.
    pub fn delay_after(&self, failures: u32) -> u64 {
        escalate(failures, self.free_failures, self.max_delay_secs)
    }

    /// Milliseconds until this network may try this username's password again (0: now).
    pub fn password_wait_ms(&self, f: PasswordFailures, now: i64) -> i64 {
        if f.network == 0 {
            return 0; // never failed from here: never delayed, whatever others do
        }
        let delay = self.delay_after(f.network).max(escalate(
            f.global,
            self.global_free_failures,
            self.max_delay_secs,
        ));
        let until = f
            .network_last
            .saturating_add(delay.saturating_mul(1000) as i64);
        until.saturating_sub(now).max(0)
    }

    /// Milliseconds until the user may submit another second-factor code (0: now).
    pub fn totp_wait_ms(&self, failures: u32, last: i64, now: i64) -> i64 {
        let delay = escalate(failures, self.totp_free_failures, self.totp_max_delay_secs);
        last.saturating_add(delay.saturating_mul(1000) as i64)
            .saturating_sub(now)
            .max(0)
    }

    /// The most wrong second-factor codes one user can be sent in 24 hours of uninterrupted
    /// guessing (each code accepted with its neighbours, so 3 of 10^6 are right per guess).
    pub fn totp_daily_bound(&self) -> u64 {
        let (mut n, mut t) = (0u32, 0u64);
        loop {
            let wait = escalate(n, self.totp_free_failures, self.totp_max_delay_secs);
            if t + wait >= 86_400 {
                return n as u64 + 1;
            }
            t += wait;
            n += 1;
        }
    }
}

/// Delays (seconds) indexed by failures so far, the last one repeating: the policy as data, for
/// the store to apply atomically (`store/lua/attempt.lua`) while one guess is reserved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule(pub Vec<u64>);

impl Schedule {
    fn of(free: u32, max: u64) -> Self {
        let mut delays = Vec::new();
        for n in 0.. {
            let d = escalate(n, free, max);
            delays.push(d);
            if d >= max {
                break;
            }
        }
        Self(delays)
    }

    /// `1,2,4`: what the script reads.
    pub fn to_arg(&self) -> String {
        self.0
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The delay after `failures`.
    pub fn after(&self, failures: u32) -> u64 {
        let i = (failures as usize).min(self.0.len() - 1);
        self.0[i]
    }
}

impl LoginLimits {
    /// Per (username, network) failures.
    pub fn network_schedule(&self) -> Schedule {
        Schedule::of(self.free_failures, self.max_delay_secs)
    }

    /// Per username, over every network (applies to networks that already failed).
    pub fn global_schedule(&self) -> Schedule {
        Schedule::of(self.global_free_failures, self.max_delay_secs)
    }

    /// Per user, second-factor codes.
    pub fn totp_schedule(&self) -> Schedule {
        Schedule::of(self.totp_free_failures, self.totp_max_delay_secs)
    }
}

/// The network a client address belongs to for throttling: its /24 (IPv4) or /56 (IPv6, the
/// usual delegation to one household or site, so a holder of a /48 counts as 256 networks, not
/// 65,536). Unknown addresses share one bucket.
pub fn network_of(ip: &str) -> String {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => network_of(&v4.to_string()),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/56", s[0], s[1], s[2], s[3] & 0xff00)
            }
        },
        Err(_) => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn delays_start_after_the_free_failures_and_double() {
        let l = LoginLimits {
            free_failures: 3,
            max_delay_secs: 60,
            ..LoginLimits::default()
        };
        let delays: Vec<_> = (0..10).map(|n| l.delay_after(n)).collect();
        assert_eq!(delays, vec![0, 0, 0, 1, 2, 4, 8, 16, 32, 60]);
    }

    #[test]
    fn a_network_that_never_failed_never_waits_however_busy_the_username_is() {
        let l = LoginLimits::default();
        let attacked = PasswordFailures {
            network: 0,
            network_last: 0,
            global: 1_000_000,
        };
        assert_eq!(l.password_wait_ms(attacked, 5), 0);
    }

    #[test]
    fn a_failing_network_waits_from_its_own_last_failure_capped_at_the_max() {
        let l = LoginLimits::default();
        let now = 1_000_000;
        let victim = PasswordFailures {
            network: 1,
            network_last: now - 1_000,
            global: 10_000, // an attacker elsewhere pushes the global count high
        };
        // The global count raises the victim's wait to the cap, counted from *their* failure.
        assert_eq!(l.password_wait_ms(victim, now), 300_000 - 1_000);
        assert_eq!(l.password_wait_ms(victim, now + 299_000), 0);
        // Below the global threshold, one failure from here costs nothing.
        let quiet = PasswordFailures {
            global: 1,
            ..victim
        };
        assert_eq!(l.password_wait_ms(quiet, now), 0);
    }

    #[test]
    fn totp_guessing_is_bounded_per_day() {
        let l = LoginLimits::default();
        // 3 free, then 1 s … 2048 s (12 waits, 4095 s), then hourly: 3 + 12 + 23 = 38.
        assert_eq!(l.totp_daily_bound(), 38);
        assert_eq!(l.totp_wait_ms(2, 0, 0), 0);
        assert_eq!(l.totp_wait_ms(3, 0, 0), 1_000);
        assert_eq!(l.totp_wait_ms(50, 0, 10), 3_600_000 - 10);
    }

    #[test]
    fn schedules_are_the_escalation_as_data() {
        let l = LoginLimits::default();
        let s = l.totp_schedule();
        assert_eq!(
            s.to_arg(),
            "0,0,0,1,2,4,8,16,32,64,128,256,512,1024,2048,3600"
        );
        for n in 0..100 {
            assert_eq!(s.after(n) * 1000, l.totp_wait_ms(n, 0, 0) as u64, "{n}");
            assert_eq!(l.network_schedule().after(n), l.delay_after(n));
        }
    }

    #[test]
    fn networks_group_neighbours() {
        assert_eq!(network_of("203.0.113.7"), "203.0.113.0/24");
        assert_eq!(network_of("203.0.113.200"), "203.0.113.0/24");
        assert_eq!(network_of("::ffff:203.0.113.9"), "203.0.113.0/24");
        assert_eq!(network_of("2001:db8:1:2:3:4:5:6"), "2001:db8:1:0::/56");
        assert_eq!(network_of("2001:db8:1:ff:3:4:5:6"), "2001:db8:1:0::/56");
        assert_eq!(network_of("2001:db8:1:100::1"), "2001:db8:1:100::/56");
        assert_eq!(network_of(""), "unknown");
    }

    proptest! {
        #[test]
        fn delays_never_decrease_and_stay_capped(n in 0u32..10_000) {
            let l = LoginLimits::default();
            prop_assert!(l.delay_after(n) <= l.delay_after(n + 1));
            prop_assert!(l.delay_after(n) <= l.max_delay_secs);
        }

        #[test]
        fn no_wait_ever_exceeds_the_cap(net in 0u32..1000, global in 0u32..100_000, back in 0i64..10_000_000, now in 0i64..10_000_000) {
            let l = LoginLimits::default();
            let last = now - back;
            let w = l.password_wait_ms(PasswordFailures { network: net, network_last: last, global }, now);
            prop_assert!(w >= 0 && w <= l.max_delay_secs as i64 * 1000);
        }
    }
}
