//! The pure login-throttling policy. Counters live in Redis (`store::attempts`).
//!
//! Per username, failures beyond a free allowance impose an escalating delay instead of a hard
//! lockout: an attacker can slow the admin's logins down, never lock the admin out.

/// Settings for login throttling.
#[derive(Clone, Copy, Debug)]
pub struct LoginLimits {
    /// Attempts per client IP per window (checked before any hashing).
    pub per_ip: u32,
    pub ip_window_secs: u64,
    /// Failures per username before delays start.
    pub free_failures: u32,
    /// Longest delay between attempts for one username.
    pub max_delay_secs: u64,
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
            max_delay_secs: 300,
            successes: 30,
            success_window_secs: 600,
        }
    }
}

impl LoginLimits {
    /// Seconds a username must wait after `failures` consecutive failures: 0 within the free
    /// allowance, then 1, 2, 4, … capped at `max_delay_secs`.
    pub fn delay_after(&self, failures: u32) -> u64 {
        if failures < self.free_failures {
            return 0;
        }
        let exponent = (failures - self.free_failures).min(20);
        (1u64 << exponent).min(self.max_delay_secs)
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

    proptest! {
        #[test]
        fn delays_never_decrease_and_stay_capped(n in 0u32..10_000) {
            let l = LoginLimits::default();
            prop_assert!(l.delay_after(n) <= l.delay_after(n + 1));
            prop_assert!(l.delay_after(n) <= l.max_delay_secs);
        }
    }
}
