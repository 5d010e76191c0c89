//! What a session is: the stored record and the inputs that create one.

use super::id::{SessionId, UserId};
use super::UnixMillis;
use serde::{Deserialize, Serialize};

/// Longest user agent kept (longer ones are cut at a character boundary).
pub const MAX_USER_AGENT: usize = 256;
/// Longest device name kept.
pub const MAX_DEVICE_NAME: usize = 64;

/// Authentication context class, ordered: `pwd` < `mfa`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Acr {
    Pwd,
    Mfa,
}

impl Acr {
    pub fn as_str(self) -> &'static str {
        match self {
            Acr::Pwd => "pwd",
            Acr::Mfa => "mfa",
        }
    }
}

/// The session as stored in Redis: one compact JSON string per session.
///
/// Short field names and space-joined lists keep a session with a typical browser user agent
/// under 512 bytes of Redis memory (a hash with a 100+ byte value would leave the compact
/// listpack encoding and cost twice as much). Lua scripts update `ls`, `ie` and `sh` in place.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Record layout version (absent means 1).
    #[serde(rename = "v", default = "v1", skip_serializing_if = "is_v1")]
    pub version: u8,
    #[serde(rename = "u")]
    pub user_id: String,
    /// The user's credential version when the session was created (absent means 0; the create
    /// script appends it).
    #[serde(rename = "cv", default, skip_serializing_if = "is_zero_u64")]
    pub credential_version: u64,
    #[serde(rename = "c")]
    pub created_at: UnixMillis,
    #[serde(rename = "ls")]
    pub last_seen_at: UnixMillis,
    /// Idle deadline: last activity + idle timeout.
    #[serde(rename = "ie")]
    pub idle_expires_at: UnixMillis,
    /// Absolute deadline: creation + absolute timeout; never extended.
    #[serde(rename = "ae")]
    pub expires_at: UnixMillis,
    #[serde(rename = "at")]
    pub auth_time: UnixMillis,
    pub acr: Acr,
    /// Authentication methods, space-separated (`pwd otp`).
    pub amr: String,
    /// Last step-up (0 = never).
    #[serde(rename = "ea", default, skip_serializing_if = "is_zero")]
    pub elevated_at: UnixMillis,
    #[serde(rename = "eacr", default, skip_serializing_if = "Option::is_none")]
    pub elevated_acr: Option<Acr>,
    /// When an anomaly (other network / browser family) was first seen (0 = never). Under
    /// `require_step_up`, only a step-up after this instant satisfies high-risk routes.
    #[serde(rename = "an", default, skip_serializing_if = "is_zero")]
    pub anomaly_at: UnixMillis,
    /// base64url SHA-256 of the current secret.
    #[serde(rename = "sh")]
    pub secret_hash: String,
    pub ip: String,
    pub ua: String,
    #[serde(rename = "dn", default, skip_serializing_if = "String::is_empty")]
    pub device_name: String,
    /// Idle timeout of this session in ms when it differs from the configured one (native
    /// clients live longer between uses); 0 = the configured default.
    #[serde(rename = "it", default, skip_serializing_if = "is_zero")]
    pub idle_timeout_ms: i64,
    /// Native clients: hash of the current refresh secret, of its immediate predecessor, and
    /// when the last rotation happened (ms).
    #[serde(rename = "rh", default, skip_serializing_if = "String::is_empty")]
    pub refresh_hash: String,
    #[serde(rename = "rp", default, skip_serializing_if = "String::is_empty")]
    pub refresh_previous: String,
    #[serde(rename = "rt", default, skip_serializing_if = "is_zero")]
    pub refreshed_at: UnixMillis,
    /// Roles snapshot, space-separated. (The home region is not stored: the id says it.)
    #[serde(rename = "ro", default, skip_serializing_if = "String::is_empty")]
    pub roles: String,
}

impl SessionRecord {
    pub fn amr_list(&self) -> Vec<String> {
        split_words(&self.amr)
    }

    pub fn role_list(&self) -> Vec<String> {
        split_words(&self.roles)
    }
}

fn is_zero(v: &i64) -> bool {
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

fn split_words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

/// A loaded, live session.
#[derive(Clone, Debug)]
pub struct Session {
    pub id: SessionId,
    pub record: SessionRecord,
}

/// What a caller (admin API, later login) supplies to start a session.
#[derive(Clone, Debug)]
pub struct NewSession {
    pub user_id: UserId,
    pub acr: Acr,
    pub amr: Vec<String>,
    pub roles: Vec<String>,
    pub ip: String,
    pub user_agent: String,
    pub device_name: String,
    /// When the user proved who they are (defaults to now).
    pub auth_time: Option<UnixMillis>,
    /// A native client: the session gets this refresh secret and a longer idle timeout.
    pub native: Option<NativeClient>,
    /// The users-file fingerprint of the user's entry the credentials were checked against.
    pub fingerprint: Option<String>,
}

/// What a native session starts with.
#[derive(Clone, Debug)]
pub struct NativeClient {
    pub refresh_hash: super::SecretHash,
    pub idle_timeout_ms: i64,
    pub absolute_timeout_ms: i64,
}

/// Cuts `s` to at most `max` bytes without splitting a character; control characters dropped.
pub fn clip(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn acr_levels_are_ordered() {
        assert!(Acr::Pwd < Acr::Mfa);
    }

    proptest! {
        #[test]
        fn clip_respects_the_limit_and_char_boundaries(s in "\\PC{0,400}", max in 0usize..300) {
            let out = clip(&s, max);
            prop_assert!(out.len() <= max);
            prop_assert!(s.starts_with(&out) || s.chars().any(char::is_control));
        }
    }
}
