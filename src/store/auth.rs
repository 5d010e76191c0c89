//! `AuthStore` on Redis: login throttling, MFA tickets, TOTP replay protection, fingerprints.

use super::connection::Conn;
use super::keys::KeyLayout;
use super::store_error;
use crate::authn::limits::Schedule;
use crate::authn::ports::{AuthStore, CodePath, FingerprintSync, MfaTicket, Reservation};
use crate::clock::SharedClock;
use crate::session::{StoreError, UserId};
use anyhow::anyhow;
use async_trait::async_trait;
use redis::{AsyncCommands, Script};
use std::sync::LazyLock;

static HIT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/hit.lua")));
static TOTP_STEP: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/totp_step.lua")));
static TICKET_FAILURE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/ticket_failure.lua")));
static ATTEMPT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/attempt.lua")));
static SETTLE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/settle.lua")));
static PUT_TICKET: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/put_ticket.lua")));

/// Seconds a failure count is remembered after its last failure.
const FAILURE_MEMORY_SECS: i64 = 24 * 3600;

#[derive(Clone)]
pub struct RedisAuthStore {
    conn: Conn,
    keys: KeyLayout,
    revocation_ttl_ms: i64,
    clock: SharedClock,
    /// The other regions, where a users-file change must act too.
    elsewhere: Option<super::regional::RegionalStore>,
}

impl RedisAuthStore {
    pub fn new(conn: Conn, keys: KeyLayout, revocation_ttl_ms: i64, clock: SharedClock) -> Self {
        Self {
            conn,
            keys,
            revocation_ttl_ms,
            clock,
            elsewhere: None,
        }
    }

    /// Syncs users-file fingerprints in every region of `regions`, not only this one.
    pub fn with_regions(mut self, regions: super::regional::RegionalStore) -> Self {
        if regions.links().len() > 1 {
            self.elsewhere = Some(regions);
        }
        self
    }
}

impl RedisAuthStore {
    /// Takes a reserved password guess back (`settle.lua`): `clear` the network's count (the
    /// guess was right) or `decrement` it (never checked); the global count drops by one.
    async fn settle_password(
        &self,
        username: &str,
        network: &str,
        mode: &str,
    ) -> Result<(), StoreError> {
        let _: i64 = SETTLE
            .key(self.keys.password_failures(username, Some(network)))
            .key(self.keys.password_failures(username, None))
            .arg(mode)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(store_error)?;
        Ok(())
    }
}

#[async_trait]
impl AuthStore for RedisAuthStore {
    async fn hit(&self, bucket: &str, window_secs: u64) -> Result<(u32, u64), StoreError> {
        let (n, ttl_ms): (u32, i64) = HIT
            .key(self.keys.counter("hit", bucket))
            .arg(window_secs * 1000)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(store_error)?;
        Ok((n, (ttl_ms.max(0) as u64).div_ceil(1000)))
    }

    async fn reserve_password_guess(
        &self,
        username: &str,
        network: &str,
        now: i64,
        network_schedule: &Schedule,
        global_schedule: &Schedule,
    ) -> Result<Reservation, StoreError> {
        let (wait_ms, failures, all_failures): (i64, u32, u32) = ATTEMPT
            .key(self.keys.password_failures(username, Some(network)))
            .key(self.keys.password_failures(username, None))
            .arg(now)
            .arg(network_schedule.to_arg())
            .arg(global_schedule.to_arg())
            .arg(FAILURE_MEMORY_SECS)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(store_error)?;
        Ok(Reservation {
            wait_ms,
            failures,
            all_failures,
        })
    }

    async fn password_was_right(&self, username: &str, network: &str) -> Result<(), StoreError> {
        self.settle_password(username, network, "clear").await
    }

    async fn password_guess_unchecked(
        &self,
        username: &str,
        network: &str,
    ) -> Result<(), StoreError> {
        self.settle_password(username, network, "decrement").await
    }

    async fn reserve_code_guess(
        &self,
        user: &UserId,
        path: CodePath,
        now: i64,
        schedule: &Schedule,
    ) -> Result<Reservation, StoreError> {
        let (wait_ms, failures, _): (i64, u32, u32) = ATTEMPT
            .key(self.keys.totp_failures(user, path == CodePath::StepUp))
            .arg(now)
            .arg(schedule.to_arg())
            .arg("")
            .arg(FAILURE_MEMORY_SECS)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(store_error)?;
        Ok(Reservation {
            wait_ms,
            failures,
            all_failures: failures,
        })
    }

    async fn code_was_right(&self, user: &UserId, path: CodePath) -> Result<(), StoreError> {
        let _: i64 = SETTLE
            .key(self.keys.totp_failures(user, path == CodePath::StepUp))
            .arg("decrement")
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn known_users(&self) -> Result<Vec<String>, StoreError> {
        self.conn
            .clone()
            .smembers(self.keys.users_file_members())
            .await
            .map_err(store_error)
    }

    async fn set_known_users(
        &self,
        current: &[String],
        removed: &[String],
    ) -> Result<(), StoreError> {
        // Removals first: a failure half way leaves a removed user remembered (ended again on
        // the next install, harmlessly), never a current one forgotten.
        let key = self.keys.users_file_members();
        let mut conn = self.conn.clone();
        for chunk in removed.chunks(1000) {
            let _: i64 = conn.srem(&key, chunk).await.map_err(store_error)?;
        }
        for chunk in current.chunks(1000) {
            let _: i64 = conn.sadd(&key, chunk).await.map_err(store_error)?;
        }
        Ok(())
    }

    async fn put_ticket(
        &self,
        handle_hash: &str,
        ticket: &MfaTicket,
        ttl_secs: u64,
    ) -> Result<(), StoreError> {
        let key = self.keys.mfa_ticket(handle_hash);
        let data = serde_json::to_string(ticket).map_err(|e| StoreError::Other(e.into()))?;
        let _: i64 = PUT_TICKET
            .key(&key)
            .arg(data)
            .arg(ttl_secs)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn get_ticket(&self, handle_hash: &str) -> Result<Option<MfaTicket>, StoreError> {
        let data: Option<String> = self
            .conn
            .clone()
            .hget(self.keys.mfa_ticket(handle_hash), "data")
            .await
            .map_err(store_error)?;
        data.map(|d| {
            serde_json::from_str(&d).map_err(|e| StoreError::Other(anyhow!("bad MFA ticket: {e}")))
        })
        .transpose()
    }

    async fn consume_ticket(&self, handle_hash: &str) -> Result<bool, StoreError> {
        let n: i64 = self
            .conn
            .clone()
            .del(self.keys.mfa_ticket(handle_hash))
            .await
            .map_err(store_error)?;
        Ok(n == 1)
    }

    async fn ticket_failure(&self, handle_hash: &str, max: u32) -> Result<(), StoreError> {
        let _: i64 = TICKET_FAILURE
            .key(self.keys.mfa_ticket(handle_hash))
            .arg(max)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn use_totp_step(&self, user: &UserId, step: u64) -> Result<bool, StoreError> {
        let ok: i64 = TOTP_STEP
            .key(self.keys.totp_step(user))
            .arg(step)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(store_error)?;
        Ok(ok == 1)
    }

    async fn sync_fingerprint(
        &self,
        user: &UserId,
        fingerprint: &str,
    ) -> Result<FingerprintSync, StoreError> {
        let now = self.clock.now_ms();
        let n: i64 = super::sessions::revoke_all(
            &self.keys,
            user,
            fingerprint,
            now + self.revocation_ttl_ms,
        )
        .invoke_async(&mut self.conn.clone())
        .await
        .map_err(store_error)?;
        // The other regions hold sessions of the same user, created under the same entry.
        let elsewhere = match &self.elsewhere {
            Some(regions) => regions.sync_elsewhere(user, fingerprint).await?,
            None => 0,
        };
        Ok(match n {
            -1 if elsewhere == 0 => FingerprintSync::Unchanged,
            -1 => FingerprintSync::Changed(elsewhere),
            -2 => FingerprintSync::FirstSight,
            n => FingerprintSync::Changed(n.max(0) as u64 + elsewhere),
        })
    }
}
