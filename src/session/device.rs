//! Device and network comparisons: the summary people see in listings, and the pure anomaly
//! rule (a session used from another network or browser family than it was created on).

use std::net::IpAddr;

/// "Firefox on Linux"-style summary of a user agent, for people choosing which device to end.
/// Deliberately coarse: it names families, never versions.
pub fn device_summary(ua: &str) -> String {
    if ua.is_empty() {
        return "Unknown device".into();
    }
    let browser = if ua.contains("Edg/") {
        "Edge"
    } else if ua.contains("OPR/") || ua.contains("Opera") {
        "Opera"
    } else if ua.contains("Firefox/") || ua.contains("FxiOS/") {
        "Firefox"
    } else if ua.contains("Chrome/") || ua.contains("CriOS/") || ua.contains("Chromium/") {
        "Chrome"
    } else if ua.contains("Safari/") {
        "Safari"
    } else if !ua.starts_with("Mozilla/") {
        // A tool or library names itself first (`curl/8.5.0`, `okhttp/4.12`): that name is its
        // family, so an update (`curl` → `curl/8.5`) is the same device.
        let product = ua.split(['/', ' ']).next().unwrap_or_default();
        let product: String = product
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .take(32)
            .collect();
        if !product.is_empty() {
            return product;
        }
        "Unknown browser"
    } else {
        "Unknown browser"
    };
    let os = if ua.contains("Android") {
        "Android"
    } else if ua.contains("iPhone") || ua.contains("iPad") || ua.contains("iOS") {
        "iOS"
    } else if ua.contains("Windows") {
        "Windows"
    } else if ua.contains("Mac OS X") || ua.contains("Macintosh") {
        "macOS"
    } else if ua.contains("CrOS") {
        "ChromeOS"
    } else if ua.contains("Linux") || ua.contains("X11") {
        "Linux"
    } else {
        return browser.into();
    };
    format!("{browser} on {os}")
}

/// What happens when a session is used from a different network or user-agent family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyPolicy {
    /// Audit it, nothing more (default: mobile networks and IPv6 privacy addresses change often).
    Allow,
    /// Audit it, and high-risk checks demand a step-up made after the anomaly.
    RequireStepUp,
    /// Audit it and end the session.
    Revoke,
}

/// How coarse the network comparison is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnomalyRules {
    pub policy: AnomalyPolicy,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
}

impl AnomalyRules {
    /// Why this use looks unlike the session's creation, if it does.
    pub fn detect(
        &self,
        stored_ip: &str,
        stored_ua: &str,
        ip: Option<IpAddr>,
        ua: &str,
    ) -> Option<&'static str> {
        if let (Ok(then), Some(now)) = (stored_ip.parse::<IpAddr>(), ip) {
            if !self.same_network(then, now) {
                return Some("ip network changed");
            }
        }
        // (The same string is the same family: the common case skips both summaries.)
        if !stored_ua.is_empty()
            && !ua.is_empty()
            && stored_ua != ua
            && device_summary(stored_ua) != device_summary(ua)
        {
            return Some("user agent family changed");
        }
        None
    }

    fn same_network(&self, a: IpAddr, b: IpAddr) -> bool {
        let (a, b) = (canonical(a), canonical(b));
        match (a, b) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = prefix_mask_32(self.ipv4_prefix);
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = prefix_mask_128(self.ipv6_prefix);
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn prefix_mask_32(prefix: u8) -> u32 {
    match prefix.min(32) {
        0 => 0,
        p => u32::MAX << (32 - p),
    }
}

fn prefix_mask_128(prefix: u8) -> u128 {
    match prefix.min(128) {
        0 => 0,
        p => u128::MAX << (128 - p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarises_common_user_agents() {
        let cases = [
            ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "Firefox on Linux"),
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36 Edg/126.0", "Edge on Windows"),
            ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1", "Safari on iOS"),
            ("Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36", "Chrome on Android"),
            ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15", "Safari on macOS"),
            ("curl/8.5.0", "curl"),
            ("curl", "curl"),
            ("okhttp/4.12.0", "okhttp"),
            ("python-requests/2.32.3", "python-requests"),
            ("", "Unknown device"),
        ];
        for (ua, expected) in cases {
            assert_eq!(device_summary(ua), expected, "{ua}");
        }
    }

    fn rules() -> AnomalyRules {
        AnomalyRules {
            policy: AnomalyPolicy::Allow,
            ipv4_prefix: 16,
            ipv6_prefix: 48,
        }
    }

    #[test]
    fn same_network_and_browser_is_no_anomaly() {
        let ff = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
        let ff_newer = "Mozilla/5.0 (X11; Linux x86_64; rv:129.0) Gecko/20100101 Firefox/129.0";
        assert_eq!(
            rules().detect("203.0.113.7", ff, "203.0.200.1".parse().ok(), ff_newer),
            None
        );
        assert_eq!(
            rules().detect("2001:db8:1::1", ff, "2001:db8:1:ffff::9".parse().ok(), ff),
            None
        );
        assert_eq!(
            rules().detect("203.0.113.7", ff, "::ffff:203.0.1.1".parse().ok(), ff),
            None
        );
    }

    #[test]
    fn a_tool_that_only_gains_a_version_is_the_same_device() {
        assert_eq!(
            rules().detect(
                "203.0.113.7",
                "curl",
                "203.0.113.8".parse().ok(),
                "curl/8.5.0"
            ),
            None
        );
        assert_eq!(
            rules().detect(
                "203.0.113.7",
                "curl/8.5.0",
                "203.0.113.8".parse().ok(),
                "curl/8.11.1"
            ),
            None
        );
        assert!(rules()
            .detect(
                "203.0.113.7",
                "curl/8.5.0",
                "203.0.113.8".parse().ok(),
                "okhttp/4.12.0"
            )
            .is_some());
    }

    #[test]
    fn another_network_or_browser_family_is_an_anomaly() {
        let ff = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
        assert_eq!(
            rules().detect("203.0.113.7", ff, "198.51.100.1".parse().ok(), ff),
            Some("ip network changed")
        );
        assert_eq!(
            rules().detect("2001:db8:1::1", ff, "2001:db8:2::1".parse().ok(), ff),
            Some("ip network changed")
        );
        assert_eq!(
            rules().detect("203.0.113.7", ff, "203.0.1.1".parse().ok(), "curl/8.5.0"),
            Some("user agent family changed")
        );
        // Nothing stored to compare with: no verdict.
        assert_eq!(
            rules().detect("", "", "198.51.100.1".parse().ok(), "curl/8.5.0"),
            None
        );
    }
}
