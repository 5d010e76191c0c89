//! JSON shapes of the HTTP API.

use crate::session::device::device_summary;
use crate::session::{Session, UnixMillis};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A session as clients and admins see it (DESIGN §3). Never contains a secret.
#[derive(Debug, Serialize)]
pub struct SessionView {
    pub id: String,
    pub user_id: String,
    pub created_at: String,
    pub last_seen_at: String,
    pub expires_at: String,
    pub idle_expires_at: String,
    pub auth_time: String,
    pub acr: &'static str,
    pub amr: Vec<String>,
    pub elevated_at: Option<String>,
    pub elevated_acr: Option<&'static str>,
    pub ip: String,
    pub user_agent: String,
    pub device: String,
    pub device_name: String,
    pub region: String,
    pub roles: Vec<String>,
    pub current: bool,
}

impl SessionView {
    pub fn new(session: &Session, current: bool) -> Self {
        let r = &session.record;
        Self {
            id: session.id.to_string(),
            user_id: r.user_id.as_str().to_owned(),
            created_at: rfc3339(r.created_at),
            last_seen_at: rfc3339(r.last_seen_at),
            expires_at: rfc3339(r.expires_at),
            idle_expires_at: rfc3339(r.idle_expires_at.min(r.expires_at)),
            auth_time: rfc3339(r.auth_time),
            acr: r.acr.as_str(),
            amr: r.amr.clone(),
            elevated_at: (r.elevated_at > 0).then(|| rfc3339(r.elevated_at)),
            elevated_acr: r.elevated_acr.map(|a| a.as_str()),
            ip: r.ip.clone(),
            user_agent: r.ua.clone(),
            device: device_summary(&r.ua),
            device_name: r.device_name.clone(),
            region: session.id.region().to_owned(),
            roles: r.roles.clone(),
            current,
        }
    }
}

/// RFC 3339 UTC with second precision.
pub fn rfc3339(ms: UnixMillis) -> String {
    OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_999), "2023-11-14T22:13:20Z");
    }
}
