//! What a session is: the stored record and the inputs that create one.

use super::credential::SecretHash;
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

/// What the domain knows of a session, typed. How it is stored (compact JSON with short field
/// names and joined lists) is the store's business: `store/record.rs`.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionRecord {
    pub user_id: UserId,
    /// The user's credential version when the session was created.
    pub credential_version: u64,
    pub created_at: UnixMillis,
    pub last_seen_at: UnixMillis,
    /// Idle deadline: last activity + idle timeout.
    pub idle_expires_at: UnixMillis,
    /// Absolute deadline: creation + absolute timeout; never extended.
    pub expires_at: UnixMillis,
    pub auth_time: UnixMillis,
    pub acr: Acr,
    /// Authentication methods (`pwd`, `otp`).
    pub amr: Vec<String>,
    /// Last step-up (0 = never).
    pub elevated_at: UnixMillis,
    pub elevated_acr: Option<Acr>,
    /// When an anomaly (other network / browser family) was first seen (0 = never). Under
    /// `require_step_up`, only a step-up after this instant satisfies high-risk routes.
    pub anomaly_at: UnixMillis,
    /// SHA-256 of the current secret.
    pub secret_hash: SecretHash,
    pub ip: String,
    pub ua: String,
    pub device_name: String,
    /// Idle timeout of this session in ms when it differs from the configured one (native
    /// clients live longer between uses); 0 = the configured default.
    pub idle_timeout_ms: i64,
    /// Native clients only: the refresh-token family.
    pub refresh: Option<RefreshState>,
    /// Roles snapshot. (The home region is not stored: the id says it.)
    pub roles: Vec<String>,
    /// Created for a user of Tessera's users file (login, or the admin API for such a user):
    /// such a session ends when the user leaves the file, whatever Redis remembers.
    pub from_users_file: bool,
}

/// A native session's refresh-token family as the record keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct RefreshState {
    /// Hash of the current refresh secret.
    pub current: SecretHash,
    /// Hash of its immediate predecessor (the one a lost response may bring back).
    pub previous: Option<SecretHash>,
    /// When the last rotation happened (0 = never).
    pub rotated_at: UnixMillis,
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
