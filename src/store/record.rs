//! The session as stored in Redis: one compact JSON string per session.
//!
//! Short field names and space-joined lists keep a session with a typical browser user agent
//! under 512 bytes of Redis memory (a hash with a 100+ byte value would leave the compact
//! listpack encoding and cost twice as much). Lua scripts read and update `u`, `ls`, `ie`, `sh`,
//! `rh`, `rp`, `rt` and `an` in place, so those names are a contract with `lua/*.lua`.

use crate::session::model::RefreshState;
use crate::session::{Acr, SecretHash, SessionRecord, UnixMillis, UserId};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredSession {
    /// Record layout version (absent means 1).
    #[serde(rename = "v", default = "v1", skip_serializing_if = "is_v1")]
    pub version: u8,
    #[serde(rename = "u")]
    pub user_id: String,
    /// Absent means 0; the create script appends it.
    #[serde(rename = "cv", default, skip_serializing_if = "is_zero_u64")]
    pub credential_version: u64,
    #[serde(rename = "c")]
    pub created_at: UnixMillis,
    #[serde(rename = "ls")]
    pub last_seen_at: UnixMillis,
    #[serde(rename = "ie")]
    pub idle_expires_at: UnixMillis,
    #[serde(rename = "ae")]
    pub expires_at: UnixMillis,
    /// Absent when it equals `c` (a session created by the login itself): 19 bytes that keep a
    /// typical record inside the smaller allocation class now that `cv` is a timestamp.
    #[serde(rename = "at", default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<UnixMillis>,
    pub acr: Acr,
    /// Space-separated (`pwd otp`).
    pub amr: String,
    #[serde(rename = "ea", default, skip_serializing_if = "is_zero")]
    pub elevated_at: UnixMillis,
    #[serde(rename = "eacr", default, skip_serializing_if = "Option::is_none")]
    pub elevated_acr: Option<Acr>,
    #[serde(rename = "an", default, skip_serializing_if = "is_zero")]
    pub anomaly_at: UnixMillis,
    /// base64url SHA-256 of the current secret.
    #[serde(rename = "sh")]
    pub secret_hash: String,
    pub ip: String,
    pub ua: String,
    #[serde(rename = "dn", default, skip_serializing_if = "String::is_empty")]
    pub device_name: String,
    #[serde(rename = "it", default, skip_serializing_if = "is_zero")]
    pub idle_timeout_ms: i64,
    #[serde(rename = "rh", default, skip_serializing_if = "String::is_empty")]
    pub refresh_hash: String,
    #[serde(rename = "rp", default, skip_serializing_if = "String::is_empty")]
    pub refresh_previous: String,
    #[serde(rename = "rt", default, skip_serializing_if = "is_zero")]
    pub refreshed_at: UnixMillis,
    /// Space-separated.
    #[serde(rename = "ro", default, skip_serializing_if = "String::is_empty")]
    pub roles: String,
    /// 1 for a session of a users-file user.
    #[serde(rename = "f", default, skip_serializing_if = "is_zero_u8")]
    pub from_users_file: u8,
}

/// A stored record that does not make a session (corrupt or written by something else).
#[derive(Debug, thiserror::Error)]
#[error("stored session record is invalid: {0}")]
pub struct InvalidRecord(&'static str);

impl StoredSession {
    pub fn from_domain(r: &SessionRecord) -> Self {
        let (refresh_hash, refresh_previous, refreshed_at) = match &r.refresh {
            Some(f) => (
                f.current.to_base64(),
                f.previous
                    .as_ref()
                    .map(SecretHash::to_base64)
                    .unwrap_or_default(),
                f.rotated_at,
            ),
            None => (String::new(), String::new(), 0),
        };
        Self {
            version: 1,
            user_id: r.user_id.as_str().to_owned(),
            credential_version: r.credential_version,
            created_at: r.created_at,
            last_seen_at: r.last_seen_at,
            idle_expires_at: r.idle_expires_at,
            expires_at: r.expires_at,
            auth_time: (r.auth_time != r.created_at).then_some(r.auth_time),
            acr: r.acr,
            amr: r.amr.join(" "),
            elevated_at: r.elevated_at,
            elevated_acr: r.elevated_acr,
            anomaly_at: r.anomaly_at,
            secret_hash: r.secret_hash.to_base64(),
            ip: r.ip.clone(),
            ua: r.ua.clone(),
            device_name: r.device_name.clone(),
            idle_timeout_ms: r.idle_timeout_ms,
            refresh_hash,
            refresh_previous,
            refreshed_at,
            roles: r.roles.join(" "),
            from_users_file: u8::from(r.from_users_file),
        }
    }

    pub fn into_domain(self) -> Result<SessionRecord, InvalidRecord> {
        let hash = |s: &str, what| SecretHash::from_base64(s).ok_or(InvalidRecord(what));
        let refresh = if self.refresh_hash.is_empty() {
            None
        } else {
            Some(RefreshState {
                current: hash(&self.refresh_hash, "refresh hash")?,
                previous: match self.refresh_previous.as_str() {
                    "" => None,
                    p => Some(hash(p, "previous refresh hash")?),
                },
                rotated_at: self.refreshed_at,
            })
        };
        Ok(SessionRecord {
            user_id: UserId::parse(&self.user_id).map_err(|_| InvalidRecord("user id"))?,
            credential_version: self.credential_version,
            created_at: self.created_at,
            last_seen_at: self.last_seen_at,
            idle_expires_at: self.idle_expires_at,
            expires_at: self.expires_at,
            auth_time: self.auth_time.unwrap_or(self.created_at),
            acr: self.acr,
            amr: words(&self.amr),
            elevated_at: self.elevated_at,
            elevated_acr: self.elevated_acr,
            anomaly_at: self.anomaly_at,
            secret_hash: hash(&self.secret_hash, "secret hash")?,
            ip: self.ip,
            ua: self.ua,
            device_name: self.device_name,
            idle_timeout_ms: self.idle_timeout_ms,
            refresh,
            roles: words(&self.roles),
            from_users_file: self.from_users_file != 0,
        })
    }
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

fn is_zero_u8(v: &u8) -> bool {
    *v == 0
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

fn v1() -> u8 {
    1
}

fn is_v1(v: &u8) -> bool {
    *v == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_keeps_the_compact_names() {
        let raw = r#"{"u":"alice","c":1,"ls":2,"ie":3,"ae":4,"at":0,"acr":"mfa","amr":"pwd otp","sh":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","ip":"","ua":"x","rh":"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","ro":"admin"}"#;
        let stored: StoredSession = serde_json::from_str(raw).unwrap();
        let domain = stored.clone().into_domain().unwrap();
        assert_eq!(domain.amr, vec!["pwd", "otp"]);
        assert_eq!(domain.roles, vec!["admin"]);
        assert!(domain.refresh.as_ref().unwrap().previous.is_none());
        assert_eq!(StoredSession::from_domain(&domain), stored);
        assert_eq!(
            serde_json::to_string(&StoredSession::from_domain(&domain)).unwrap(),
            raw
        );
    }

    #[test]
    fn an_auth_time_equal_to_the_creation_is_not_stored() {
        let raw = r#"{"u":"alice","c":5,"ls":5,"ie":9,"ae":9,"acr":"pwd","amr":"pwd","sh":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","ip":"","ua":""}"#;
        let domain = serde_json::from_str::<StoredSession>(raw)
            .unwrap()
            .into_domain()
            .unwrap();
        assert_eq!(domain.auth_time, 5);
        let again = serde_json::to_string(&StoredSession::from_domain(&domain)).unwrap();
        assert_eq!(again, raw);
    }

    #[test]
    fn a_corrupt_record_is_an_error_not_a_session() {
        let raw = r#"{"u":"bad user id!","c":1,"ls":2,"ie":3,"ae":4,"at":1,"acr":"pwd","amr":"","sh":"x","ip":"","ua":""}"#;
        let stored: StoredSession = serde_json::from_str(raw).unwrap();
        assert!(stored.into_domain().is_err());
    }
}
