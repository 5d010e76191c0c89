//! What login needs from storage: throttling counters, MFA tickets, TOTP replay protection and
//! the per-user fingerprint that ties the users file to credential versions.

use super::limits::PasswordFailures;
use crate::session::{StoreError, UserId};
use async_trait::async_trait;

/// A pending second factor: the password was right, the TOTP code is still owed.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct MfaTicket {
    pub user_id: String,
    /// When the password was verified (becomes the session's `auth_time`).
    pub auth_time: i64,
    /// The credential version read before the password was checked.
    pub credential_version: u64,
    pub ip: String,
    pub user_agent: String,
    pub device_name: String,
    /// The login asked for a native session (refresh token, no cookie).
    #[serde(default)]
    pub native: bool,
}

#[async_trait]
pub trait AuthStore: Send + Sync {
    /// Counts one hit in a fixed window; returns (hits so far, seconds until the window resets).
    async fn hit(&self, bucket: &str, window_secs: u64) -> Result<(u32, u64), StoreError>;
    /// Password failures of a username from one client network, and from all of them.
    async fn password_failures(
        &self,
        username: &str,
        network: &str,
    ) -> Result<PasswordFailures, StoreError>;
    /// Counts a wrong password from `network` (and in the username's global count).
    async fn record_password_failure(
        &self,
        username: &str,
        network: &str,
        now: i64,
    ) -> Result<(), StoreError>;
    /// A correct password from `network` clears that network's count (never the global one,
    /// never the second-factor count).
    async fn clear_password_failures(
        &self,
        username: &str,
        network: &str,
    ) -> Result<(), StoreError>;
    /// Wrong second-factor codes of the user (every ticket, network and step-up) and when the
    /// last one came (ms).
    async fn totp_failures(&self, user: &UserId) -> Result<(u32, i64), StoreError>;
    async fn record_totp_failure(&self, user: &UserId, now: i64) -> Result<(), StoreError>;
    /// Stores a ticket under the hash of its handle.
    async fn put_ticket(
        &self,
        handle_hash: &str,
        ticket: &MfaTicket,
        ttl_secs: u64,
    ) -> Result<(), StoreError>;
    async fn get_ticket(&self, handle_hash: &str) -> Result<Option<MfaTicket>, StoreError>;
    /// Deletes the ticket; `false` if someone else consumed it first.
    async fn consume_ticket(&self, handle_hash: &str) -> Result<bool, StoreError>;
    /// Counts a wrong code against the ticket; deletes it after `max` failures.
    async fn ticket_failure(&self, handle_hash: &str, max: u32) -> Result<(), StoreError>;
    /// Records `step` as used; `false` if it (or a later one) was used already: a replay.
    async fn use_totp_step(&self, user: &UserId, step: u64) -> Result<bool, StoreError>;
    /// The user ids the users file held at its last install by any node.
    async fn known_users(&self) -> Result<Vec<String>, StoreError>;
    /// Records the users file's ids now: adds `current`, drops `removed`.
    async fn set_known_users(
        &self,
        current: &[String],
        removed: &[String],
    ) -> Result<(), StoreError>;
    /// Records the user's fingerprint; if it differs from the stored one, bumps the credential
    /// version and ends every session of the user. A missing stored fingerprint is trusted only
    /// when there is nothing to trust: no session and not `disabled`. Returns the number of
    /// sessions ended (`None` when nothing changed).
    async fn sync_fingerprint(
        &self,
        user: &UserId,
        fingerprint: &str,
        disabled: bool,
    ) -> Result<Option<u64>, StoreError>;
}
