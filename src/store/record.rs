//! The session as stored in Redis: one MessagePack map per session (one string value).
//!
//! Memory per session is the scale limit (≤ 512 bytes of Redis memory in cluster mode, see
//! "Scale" in the README), and Redis allocates a value in size classes (…, 192, 224, 256, 320,
//! 384 bytes). Short field names, timestamps as 9-byte integers instead of 13 digits, and the
//! user agent's short form (`ua_codes`) keep a typical browser session at about 200 bytes, in the
//! 224-byte class; the same record as JSON took 317 bytes, in the 384-byte class. A Redis hash
//! would be no smaller: a 100-byte user agent takes it out of the compact listpack encoding.
//!
//! Records written before this format are JSON objects (first byte `{`, which no MessagePack
//! map starts with). They are still read, and the Lua scripts keep each record in the format
//! it was written in, so an upgrade needs no migration: old records expire as JSON.
//!
//! Lua scripts read and update `u`, `cv`, `ls`, `ie`, `ae`, `sh`, `rh`, `rp`, `rt`, `it`, `ea`,
//! `eacr` and `an` in place (`lua/record.lua`), so those names are a contract with `lua/*.lua`.

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
    /// The stored bytes: MessagePack with field names, the user agent in its short form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut packed = self.clone();
        packed.ua = super::ua_codes::encode(&self.ua);
        rmp_serde::to_vec_named(&packed).expect("a stored session always serializes")
    }

    /// Reads a record in either stored format (JSON from before MessagePack, or MessagePack).
    pub fn from_bytes(raw: &[u8]) -> Result<Self, InvalidRecord> {
        if raw.first() == Some(&b'{') {
            return serde_json::from_slice(raw).map_err(|_| InvalidRecord("undecodable JSON"));
        }
        let mut stored: Self =
            rmp_serde::from_slice(raw).map_err(|_| InvalidRecord("undecodable MessagePack"))?;
        stored.ua = super::ua_codes::decode(&stored.ua);
        Ok(stored)
    }

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

    fn browser_session() -> StoredSession {
        StoredSession {
            version: 1,
            user_id: "scale-123456".into(),
            credential_version: 1_764_000_000_123,
            created_at: 1_764_000_000_000,
            last_seen_at: 1_764_000_000_000,
            idle_expires_at: 1_764_003_600_000,
            expires_at: 1_764_086_400_000,
            auth_time: None,
            acr: Acr::Pwd,
            amr: "pwd".into(),
            elevated_at: 0,
            elevated_acr: None,
            anomaly_at: 0,
            secret_hash: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
            ip: "203.0.113.7".into(),
            ua: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36".into(),
            device_name: "work laptop".into(),
            idle_timeout_ms: 0,
            refresh_hash: String::new(),
            refresh_previous: String::new(),
            refreshed_at: 0,
            roles: "member".into(),
            from_users_file: 0,
        }
    }

    #[test]
    fn a_browser_session_packs_into_the_224_byte_class() {
        let stored = browser_session();
        let bytes = stored.to_bytes();
        // Redis adds a 3-byte header and a terminator to the value.
        assert!(bytes.len() + 4 <= 224, "{} bytes", bytes.len());
        assert_eq!(StoredSession::from_bytes(&bytes).unwrap(), stored);
        assert!(serde_json::to_vec(&stored).unwrap().len() > 300);
    }

    #[test]
    fn records_written_as_json_are_still_read() {
        let stored = browser_session();
        let json = serde_json::to_vec(&stored).unwrap();
        assert_eq!(StoredSession::from_bytes(&json).unwrap(), stored);
        assert!(StoredSession::from_bytes(b"{not json").is_err());
        assert!(StoredSession::from_bytes(&[0xc1, 0x00]).is_err());
        assert!(StoredSession::from_bytes(b"").is_err());
    }

    #[test]
    fn a_corrupt_record_is_an_error_not_a_session() {
        let raw = r#"{"u":"bad user id!","c":1,"ls":2,"ie":3,"ae":4,"at":1,"acr":"pwd","amr":"","sh":"x","ip":"","ua":""}"#;
        let stored: StoredSession = serde_json::from_str(raw).unwrap();
        assert!(stored.into_domain().is_err());
    }
}
