//! What the service did, as Prometheus series (the admin listener's `/metrics`).
//!
//! Every label value here comes from a fixed list, never from a request, a user or a free-text
//! reason, so the number of series stays bounded whatever clients send. The series and their
//! meaning are listed in `describe` (the `# HELP` lines) and in the README.

use crate::audit::AuditEvent;

/// How a series is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    /// In seconds.
    Histogram,
}

/// Every series Tessera writes, with its `# HELP` text: the README's list and the Grafana
/// dashboard (`deploy/grafana`) are checked against it.
pub const SERIES: &[(&str, Kind, &str)] = &[
    (
        "tessera_http_request_duration_seconds",
        Kind::Histogram,
        "HTTP requests by route template, method and status",
    ),
    (
        "tessera_sessions_created_total",
        Kind::Counter,
        "Sessions created (logins, admin-created sessions)",
    ),
    (
        "tessera_sessions_revoked_total",
        Kind::Counter,
        "Sessions ended before they expired, by reason",
    ),
    (
        "tessera_sessions_evicted_total",
        Kind::Counter,
        "Sessions ended by the concurrent-session limit",
    ),
    (
        "tessera_logins_failed_total",
        Kind::Counter,
        "Failed logins and step-ups, by reason",
    ),
    (
        "tessera_logins_rate_limited_total",
        Kind::Counter,
        "Logins refused or delayed by a limit, by scope (ip, account, mfa)",
    ),
    (
        "tessera_step_ups_total",
        Kind::Counter,
        "Sessions elevated by a step-up",
    ),
    (
        "tessera_refreshes_total",
        Kind::Counter,
        "Refresh-token requests, by outcome (rotated, grace, refused)",
    ),
    (
        "tessera_refresh_reuse_detected_total",
        Kind::Counter,
        "Spent refresh tokens presented again (each ended its session)",
    ),
    (
        "tessera_anomalies_detected_total",
        Kind::Counter,
        "Sessions seen from another network and browser at once",
    ),
    (
        "tessera_redis_command_duration_seconds",
        Kind::Histogram,
        "Redis commands and pipelines, by region",
    ),
    (
        "tessera_redis_errors_total",
        Kind::Counter,
        "Failed Redis commands, by region and kind (timeout, connection, noscript, cluster, reply)",
    ),
    (
        "tessera_revocation_feed_lag_seconds",
        Kind::Histogram,
        "From a revocation's entry in a region's feed to this node applying it",
    ),
    (
        "tessera_revocation_feed_staleness_seconds",
        Kind::Gauge,
        "Since this node last heard from the least recent region's feed",
    ),
    (
        "tessera_verified_token_cache_lookups_total",
        Kind::Counter,
        "Access-token checks, by whether the verified-token cache held the token (hit or miss)",
    ),
    (
        "tessera_session_cache_lookups_total",
        Kind::Counter,
        "Low-risk session reads, by region and whether the near cache held the record (hit or miss)",
    ),
    (
        "tessera_session_cache_invalidations_total",
        Kind::Counter,
        "Session keys dropped from the near cache: Redis reported them changed, or this node wrote them",
    ),
    (
        "tessera_session_cache_flushes_total",
        Kind::Counter,
        "Times the near cache was emptied (tracking connection lost or started, Redis flushed)",
    ),
    (
        "tessera_session_cache_entries",
        Kind::Gauge,
        "Session records the near cache holds, by region",
    ),
    (
        "tessera_session_cache_bytes",
        Kind::Gauge,
        "Memory the near cache's entries hold, by region (estimated from their sizes)",
    ),
    (
        "tessera_jwks_fetches_total",
        Kind::Counter,
        "JWKS fetches by an embedded verifier, by outcome",
    ),
    (
        "tessera_access_tokens_minted_total",
        Kind::Counter,
        "Access tokens minted",
    ),
    (
        "tessera_audit_events_total",
        Kind::Counter,
        "Audit events, by event type",
    ),
    (
        "tessera_redis_wait_total",
        Kind::Counter,
        "Revocations confirmed by replicas (WAIT), by whether enough confirmed",
    ),
    (
        "tessera_pending_parked_total",
        Kind::Counter,
        "Changes for a region that did not answer, parked for later, by region",
    ),
    (
        "tessera_pending_delivered_total",
        Kind::Counter,
        "Parked changes delivered, by region",
    ),
    (
        "tessera_revoked_set_entries",
        Kind::Gauge,
        "Revocations this node holds in memory",
    ),
    (
        "tessera_redis_policy_ok",
        Kind::Gauge,
        "1 when every Redis has maxmemory-policy noeviction",
    ),
    (
        "tessera_verified_token_cache_entries",
        Kind::Gauge,
        "Access tokens in this node's verified-token cache",
    ),
];

/// The `# HELP` text of every series (called once, with the recorder).
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    for &(name, kind, help) in SERIES {
        match kind {
            Kind::Counter => describe_counter!(name, help),
            Kind::Gauge => describe_gauge!(name, help),
            Kind::Histogram => describe_histogram!(name, Unit::Seconds, help),
        }
    }
}

/// Counts an audited lifecycle event under its own series (called for every audit event).
pub fn event(e: &AuditEvent) {
    let reason = e.reason.as_deref().unwrap_or("");
    match e.event.as_str() {
        "session_created" => metrics::counter!("tessera_sessions_created_total").increment(1),
        "session_revoked" => sessions_revoked(revocation_reason(reason, &e.actor), 1),
        "session_evicted" => metrics::counter!("tessera_sessions_evicted_total").increment(1),
        "refresh_token_reused" => {
            metrics::counter!("tessera_refresh_reuse_detected_total").increment(1);
            sessions_revoked("refresh_reuse", 1);
        }
        "login_failed" => {
            metrics::counter!("tessera_logins_failed_total", "reason" => login_failure(reason))
                .increment(1)
        }
        "rate_limited" => {
            let scope = match reason {
                "ip" => "ip",
                r if r.starts_with("second factor") => "mfa",
                _ => "account",
            };
            metrics::counter!("tessera_logins_rate_limited_total", "scope" => scope).increment(1)
        }
        "session_elevated" => metrics::counter!("tessera_step_ups_total").increment(1),
        "anomaly_detected" => metrics::counter!("tessera_anomalies_detected_total").increment(1),
        _ => {}
    }
}

/// `n` sessions ended for `reason` (one of `revocation_reason`'s labels).
pub fn sessions_revoked(reason: &'static str, n: u64) {
    if n > 0 {
        metrics::counter!("tessera_sessions_revoked_total", "reason" => reason).increment(n);
    }
}

/// The bounded label for a revocation's free-text reason: an unknown text from an admin is
/// `admin`, anything else unknown is `other`.
pub fn revocation_reason(reason: &str, actor: &str) -> &'static str {
    match reason {
        "logout" => "logout",
        "ended by user" | "ended by user (others)" | "logout everywhere" => "user",
        "access token revoked by its client"
        | "session token revoked by its client"
        | "refresh token revoked by its client" => "client",
        "created under an unknown users-file entry"
        | "the users file or a pushed revocation no longer lets it in"
        | "user removed from the users file" => "credentials_changed",
        _ if reason.starts_with("anomaly:") => "anomaly",
        _ if actor.starts_with("admin") => "admin",
        _ => "other",
    }
}

/// The bounded label for a failed login's reason.
fn login_failure(reason: &str) -> &'static str {
    match reason {
        "wrong password" => "wrong_password",
        "unknown username" => "unknown_user",
        r if r.starts_with("step-up") => "step_up",
        r if r.contains("TOTP") => "mfa",
        _ => "other",
    }
}

/// One refresh request's outcome: `rotated`, `grace` or `refused`.
pub fn refresh(outcome: &'static str) {
    metrics::counter!("tessera_refreshes_total", "outcome" => outcome).increment(1);
}

/// The counter of a verified-token cache's lookups with `result` (`hit` or `miss`); the cache
/// keeps the handle.
pub fn token_cache_lookups(result: &'static str) -> metrics::Counter {
    metrics::counter!("tessera_verified_token_cache_lookups_total", "result" => result)
}

/// One JWKS fetch by an embedded verifier.
pub fn jwks_fetch(ok: bool) {
    let outcome = if ok { "ok" } else { "error" };
    metrics::counter!("tessera_jwks_fetches_total", "outcome" => outcome).increment(1);
}

/// A feed entry from `region` applied `lag_ms` after it was written.
pub fn feed_lag(region: &str, lag_ms: i64) {
    metrics::histogram!("tessera_revocation_feed_lag_seconds", "region" => region.to_owned())
        .record(lag_ms.max(0) as f64 / 1000.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_text_reasons_map_to_a_few_labels() {
        assert_eq!(revocation_reason("logout", "user:a"), "logout");
        assert_eq!(
            revocation_reason("anomaly: new network", "system"),
            "anomaly"
        );
        assert_eq!(
            revocation_reason("because I said so", "admin-key:ops"),
            "admin"
        );
        assert_eq!(revocation_reason("because I said so", "user:a"), "other");
        assert_eq!(login_failure("wrong password"), "wrong_password");
        assert_eq!(login_failure("replayed TOTP code"), "mfa");
        assert_eq!(login_failure("anything at all"), "other");
    }
}
