//! The anomaly signal: another network or browser family, audited once per session and
//! answered by the configured policy.

use super::*;
use crate::session::device::{AnomalyPolicy, AnomalyRules};

impl SessionService {
    /// Applies the anomaly rules to one use of a live session from `ip` with `ua`. Returns
    /// `Err(NoSession)` when the policy ended the session.
    pub async fn screen(
        &self,
        session: &mut Session,
        rules: &AnomalyRules,
        ip: Option<std::net::IpAddr>,
        ua: &str,
        now: UnixMillis,
    ) -> Result<(), AuthError> {
        if session.record.anomaly_at != 0 {
            return Ok(()); // already seen and audited; the policy applies via `anomaly_at`
        }
        // Compared as it would be stored: a user agent longer than the stored limit must not
        // look like another browser because only its stored copy was clipped. (Clipped only
        // when clipping changes it: this runs on every session check.)
        let clipped;
        let ua = if ua.len() <= MAX_USER_AGENT && !ua.chars().any(char::is_control) {
            ua
        } else {
            clipped = clip(ua, MAX_USER_AGENT);
            clipped.as_str()
        };
        let Some(reason) = rules.detect(&session.record.ip, &session.record.ua, ip, ua) else {
            return Ok(());
        };
        if !self.store.mark_anomaly(&session.id, now).await? {
            return Ok(());
        }
        session.record.anomaly_at = now;
        let seen = ip.map(|i| i.to_string()).unwrap_or_default();
        self.audit(
            AuditEvent::new("anomaly_detected", &Actor::system(), now)
                .user(session.record.user_id.as_str())
                .session(session.id.as_str())
                .ip(&seen)
                .reason(reason),
        )
        .await;
        if rules.policy == AnomalyPolicy::Revoke {
            self.revoke(session, &Actor::system(), &format!("anomaly: {reason}"))
                .await?;
            return Err(AuthError::NoSession);
        }
        Ok(())
    }
}
