//! `AuthStore` on Redis: login throttling, MFA tickets, TOTP replay protection, fingerprints.

use super::keys::KeyLayout;
use super::store_error;
use crate::authn::limits::PasswordFailures;
use crate::authn::ports::{AuthStore, MfaTicket};
use crate::clock::SharedClock;
use crate::session::{StoreError, UserId};
use anyhow::anyhow;
use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use std::sync::LazyLock;

static HIT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/hit.lua")));
static TOTP_STEP: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/totp_step.lua")));
static TICKET_FAILURE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/ticket_failure.lua")));
static SYNC: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/revoke_all.lua")));

/// Seconds a failure count is remembered after its last failure.
const FAILURE_MEMORY_SECS: i64 = 24 * 3600;

#[derive(Clone)]
pub struct RedisAuthStore {
    conn: ConnectionManager,
    keys: KeyLayout,
    revocation_ttl_ms: i64,
    clock: SharedClock,
}

impl RedisAuthStore {
    pub fn new(
        conn: ConnectionManager,
        keys: KeyLayout,
        revocation_ttl_ms: i64,
        clock: SharedClock,
    ) -> Self {
        Self {
            conn,
            keys,
            revocation_ttl_ms,
            clock,
        }
    }

    /// Per (username, client network): the counter that delays a failing network.
    fn failures_key(&self, username: &str, network: &str) -> String {
        self.keys
            .counter("fail", &format!("{}\0{network}", username.to_lowercase()))
    }

    /// Per username over every network: raises the wait of failing networks only.
    fn global_failures_key(&self, username: &str) -> String {
        self.keys.counter("failg", &username.to_lowercase())
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

    async fn password_failures(
        &self,
        username: &str,
        network: &str,
    ) -> Result<PasswordFailures, StoreError> {
        let ((n, last), global): ((Option<u32>, Option<i64>), Option<u32>) = redis::pipe()
            .hmget(self.failures_key(username, network), &["n", "last"])
            .hget(self.global_failures_key(username), "n")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(store_error)?;
        Ok(PasswordFailures {
            network: n.unwrap_or(0),
            network_last: last.unwrap_or(0),
            global: global.unwrap_or(0),
        })
    }

    async fn record_password_failure(
        &self,
        username: &str,
        network: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let key = self.failures_key(username, network);
        let global = self.global_failures_key(username);
        let _: () = redis::pipe()
            .atomic()
            .hincr(&key, "n", 1)
            .hset(&key, "last", now)
            .expire(&key, FAILURE_MEMORY_SECS)
            .hincr(&global, "n", 1)
            .expire(&global, FAILURE_MEMORY_SECS)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn clear_password_failures(
        &self,
        username: &str,
        network: &str,
    ) -> Result<(), StoreError> {
        let _: () = self
            .conn
            .clone()
            .del(self.failures_key(username, network))
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn totp_failures(&self, user: &UserId) -> Result<(u32, i64), StoreError> {
        let (n, last): (Option<u32>, Option<i64>) = self
            .conn
            .clone()
            .hmget(self.keys.totp_failures(user), &["n", "last"])
            .await
            .map_err(store_error)?;
        Ok((n.unwrap_or(0), last.unwrap_or(0)))
    }

    async fn record_totp_failure(&self, user: &UserId, now: i64) -> Result<(), StoreError> {
        let key = self.keys.totp_failures(user);
        let _: () = redis::pipe()
            .atomic()
            .hincr(&key, "n", 1)
            .hset(&key, "last", now)
            .expire(&key, FAILURE_MEMORY_SECS)
            .query_async(&mut self.conn.clone())
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
        let key = self.keys.users_file_members();
        let mut pipe = redis::pipe();
        pipe.atomic();
        for chunk in removed.chunks(1000) {
            pipe.srem(&key, chunk).ignore();
        }
        for chunk in current.chunks(1000) {
            pipe.sadd(&key, chunk).ignore();
        }
        let _: () = pipe
            .query_async(&mut self.conn.clone())
            .await
            .map_err(store_error)?;
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
        let _: () = redis::pipe()
            .atomic()
            .hset(&key, "data", data)
            .expire(&key, ttl_secs as i64)
            .query_async(&mut self.conn.clone())
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
        disabled: bool,
    ) -> Result<Option<u64>, StoreError> {
        let now = self.clock.now_ms();
        let n: i64 = SYNC
            .key(self.keys.credential_version(user))
            .key(self.keys.user_index(user))
            .key(self.keys.fingerprint(user))
            .key(self.keys.outbox(&user.tag()))
            .arg(self.keys.session_prefix(&user.tag()))
            .arg(fingerprint)
            .arg(user.as_str())
            .arg(now + self.revocation_ttl_ms)
            .arg(if disabled { "1" } else { "" })
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(store_error)?;
        Ok((n >= 0).then_some(n as u64))
    }
}
