//! What login needs from storage: throttling counters, MFA tickets, TOTP replay protection and
//! the per-user fingerprint that ties the users file to credential versions.

use super::limits::Schedule;
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

/// What syncing one users-file entry did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FingerprintSync {
    Unchanged,
    /// No fingerprint was stored: the version moved (pushed) and nothing else had to end.
    FirstSight,
    /// The entry changed (or was unknown with sessions): this many sessions ended.
    Changed(u64),
}

/// Where a second-factor code is entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodePath {
    Login,
    StepUp,
}

/// The answer to a reserved guess.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// Milliseconds to wait; 0 means the guess is reserved and may be checked.
    pub wait_ms: i64,
    /// Failures counted before this guess (for the audit trail).
    pub failures: u32,
    /// The wider count (every network), when there is one.
    pub all_failures: u32,
}

#[async_trait]
pub trait AuthStore: Send + Sync {
    /// Counts one hit in a fixed window; returns (hits so far, seconds until the window resets).
    async fn hit(&self, bucket: &str, window_secs: u64) -> Result<(u32, u64), StoreError>;
    /// Reserves one password guess for `username` from `network` before it is checked: when
    /// the network must still wait (`schedules`: per network, and per username over every
    /// network for networks that already failed) nothing is counted and the wait comes back;
    /// otherwise the guess counts as a failure until `password_was_right` takes it back. One
    /// atomic step, so simultaneous guesses cannot all pass the same check.
    async fn reserve_password_guess(
        &self,
        username: &str,
        network: &str,
        now: i64,
        network_schedule: &Schedule,
        global_schedule: &Schedule,
    ) -> Result<Reservation, StoreError>;
    /// The reserved password guess was right: that network's count is cleared and the
    /// username's global count takes the reservation back.
    async fn password_was_right(&self, username: &str, network: &str) -> Result<(), StoreError>;
    /// A reserved password guess was never checked (the client left, a fault cut the request
    /// short): both counts take it back.
    async fn password_guess_unchecked(
        &self,
        username: &str,
        network: &str,
    ) -> Result<(), StoreError>;
    /// Reserves one second-factor guess for `user` on `path` (login and step-up count apart,
    /// so a stolen cookie cannot slow the owner's login), as `reserve_password_guess` does.
    async fn reserve_code_guess(
        &self,
        user: &UserId,
        path: CodePath,
        now: i64,
        schedule: &Schedule,
    ) -> Result<Reservation, StoreError>;
    /// The reserved code was right: its reservation is taken back (earlier failures stay).
    async fn code_was_right(&self, user: &UserId, path: CodePath) -> Result<(), StoreError>;
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
    /// Records the user's fingerprint; if it differs from the stored one, or none is stored,
    /// bumps the credential version (pushed) and ends every session of the user.
    async fn sync_fingerprint(
        &self,
        user: &UserId,
        fingerprint: &str,
    ) -> Result<FingerprintSync, StoreError>;
}
