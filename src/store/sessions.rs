//! `SessionStore` on Redis: one JSON string per session plus a per-user sorted set, changed
//! only through the Lua scripts in `lua/` so every multi-key change is atomic.

use super::connection::Conn;
use super::connection::PerThread;
use super::keys::KeyLayout;
use super::record::StoredSession;
use super::store_error;
use crate::clock::SharedClock;
use crate::session::policy::OnLimit;
use crate::session::ports::{
    CreateError, CreateRequest, Created, Listing, RefreshOutcome, RefreshRequest, RefreshRevocation,
};
use crate::session::UnixMillis;
use crate::session::{
    Acr, Region, SecretHash, Session, SessionId, SessionRecord, SessionStore, StoreError, UserId,
};
use anyhow::anyhow;
use async_trait::async_trait;
use redis::{AsyncCommands, Script, Value};
use std::sync::LazyLock;

/// A script that reads or writes session records: `lua/record.lua` (the record format's
/// decoder and encoder) followed by the script itself.
macro_rules! record_script {
    ($name:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/record.lua"),
                include_str!(concat!("lua/", $name, ".lua"))
            ))
        })
    };
}

static CREATE: LazyLock<Script> = record_script!("create");
static RENEW: LazyLock<Script> = record_script!("renew");
static REVOKE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/revoke.lua")));
static REVOKE_ALL: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/revoke_all.lua")));
static ROTATE: LazyLock<Script> = record_script!("elevate");
static ERASE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/erase.lua")));
static ANOMALY: LazyLock<Script> = record_script!("anomaly");
static REFRESH: LazyLock<Script> = record_script!("refresh");
static REVOKE_REFRESH: LazyLock<Script> = record_script!("revoke_refresh");
static LIST: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/list.lua")));

/// The one call of `revoke_all.lua`: an unconditional revoke-all (`fingerprint` empty) or a
/// users-file sync (`store::auth`), which share every key and argument but the fingerprint.
pub(super) fn revoke_all(
    keys: &KeyLayout,
    user: &UserId,
    fingerprint: &str,
    until: i64,
) -> redis::ScriptInvocation<'static> {
    let mut call = REVOKE_ALL.prepare_invoke();
    call.key(keys.credential_version(user))
        .key(keys.user_index(user))
        .key(keys.fingerprint(user))
        .key(keys.outbox(&user.tag()))
        .key(keys.totp_failures(user, false))
        .key(keys.totp_failures(user, true))
        .arg(keys.session_prefix(&user.tag()))
        .arg(fingerprint)
        .arg(user.as_str())
        .arg(until);
    call
}

/// Sessions of one region's Redis.
#[derive(Clone)]
pub struct RedisSessionStore {
    conns: PerThread,
    keys: KeyLayout,
    regions: Vec<Region>,
    /// How long a pushed revocation must live (longest token lifetime + leeway).
    revocation_ttl_ms: i64,
    /// The longest any session can live (absolute timeouts): how long an erasure's version
    /// tombstone must outlive the erasure.
    longest_session_ms: i64,
    clock: SharedClock,
    /// Replicas must confirm every revocation before it is answered (`redis_wait_replicas`).
    confirm: Option<super::durable::Confirmer>,
    /// Session records this node has read, for the low-risk read (`load_cached`).
    cache: Option<super::near_cache::NearCache>,
}

impl RedisSessionStore {
    pub fn new(
        conns: PerThread,
        keys: KeyLayout,
        regions: Vec<Region>,
        clock: SharedClock,
    ) -> Self {
        Self {
            conns,
            keys,
            regions,
            revocation_ttl_ms: 16 * 60 * 1000,
            longest_session_ms: 30 * 86_400_000,
            clock,
            confirm: None,
            cache: None,
        }
    }

    /// Serves `load_cached` from `cache` (kept coherent by a `tracking::Tracker`).
    pub fn with_cache(mut self, cache: Option<super::near_cache::NearCache>) -> Self {
        self.cache = cache;
        self
    }

    /// Drops this node's cached copy of a session it is writing: the node that answers a
    /// change never serves the record from before it, whatever its tracking connection does.
    fn forget(&self, id: &SessionId) {
        if let Some(cache) = &self.cache {
            cache.invalidate(self.keys.session(id).as_bytes());
        }
    }

    async fn read(&self, key: &str, id: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        let raw: Option<Vec<u8>> = self.conn().get(key).await.map_err(store_error)?;
        // A value that is not a record (corrupt, or written by something else) is no session:
        // refused like a missing one (401), never a 500; it expires with its TTL.
        Ok(raw.and_then(|raw| match Self::decode(&raw) {
            Ok(record) => Some(record),
            Err(e) => {
                tracing::error!(session = %id, error = %e, "undecodable session record; treated as no session");
                None
            }
        }))
    }

    pub fn with_confirmer(mut self, confirm: Option<super::durable::Confirmer>) -> Self {
        self.confirm = confirm;
        self
    }

    /// Waits until the replicas hold what was written to `key`'s primary (no-op without
    /// `redis_wait_replicas`). Called even when a revocation found nothing to end: a retry
    /// after a 503 must confirm the first attempt's write.
    async fn confirmed(&self, key: &str) -> Result<(), StoreError> {
        match &self.confirm {
            Some(confirm) => confirm.confirm(key).await,
            None => Ok(()),
        }
    }

    pub fn with_longest_session(mut self, ms: i64) -> Self {
        self.longest_session_ms = ms;
        self
    }

    pub fn with_revocation_ttl(mut self, ttl_ms: i64) -> Self {
        self.revocation_ttl_ms = ttl_ms;
        self
    }

    /// `until` of a revocation written now.
    fn until(&self) -> i64 {
        self.clock.now_ms() + self.revocation_ttl_ms
    }

    /// Brings the user's users-file fingerprint up to date (`revoke_all.lua` with a
    /// fingerprint): `None` when it was already current, else the sessions ended.
    pub async fn sync_fingerprint(
        &self,
        user: &UserId,
        fingerprint: &str,
    ) -> Result<Option<u64>, StoreError> {
        let n: i64 = revoke_all(&self.keys, user, fingerprint, self.until())
            .invoke_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        Ok((n != -1).then_some(n.max(0) as u64))
    }

    /// The per-thread connections this store opened, for `Registry::keep_alive`.
    pub fn connection_registry(&self) -> super::connection::Registry {
        self.conns.registry()
    }

    /// This thread's multiplexed connection.
    fn conn(&self) -> Conn {
        self.conns.get()
    }

    fn decode(raw: &[u8]) -> Result<SessionRecord, StoreError> {
        StoredSession::from_bytes(raw)
            .map_err(|e| StoreError::Other(e.into()))?
            .into_domain()
            .map_err(|e| StoreError::Other(e.into()))
    }
}

#[async_trait]
impl SessionStore for RedisSessionStore {
    async fn create(&self, request: CreateRequest<'_>) -> Result<Created, CreateError> {
        let CreateRequest {
            id,
            user,
            record,
            ttl_ms,
            limit,
            expected_version,
            now,
            ..
        } = request;
        let packed = StoredSession::from_domain(record).to_bytes();
        let reply: Vec<Value> = CREATE
            .key(self.keys.session(id))
            .key(self.keys.user_index(user))
            .key(self.keys.credential_version(user))
            .arg(packed)
            .arg(ttl_ms)
            .arg(now)
            .arg(limit.max_sessions.max(1))
            .arg(match limit.on_limit {
                OnLimit::Evict => "evict",
                OnLimit::Reject => "reject",
            })
            .arg(expected_version.map(|v| v.to_string()).unwrap_or_default())
            .arg(id.as_str())
            .arg(self.keys.session_prefix(id.tag()))
            .arg(self.until())
            .key(self.keys.outbox(id.tag()))
            .key(self.keys.fingerprint(user))
            .arg(request.fingerprint.unwrap_or_default())
            .arg(user.as_str())
            .invoke_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        let text = |v: &Value| -> Result<String, StoreError> {
            redis::from_redis_value_ref(v).map_err(|e| StoreError::Other(e.into()))
        };
        let status = reply.first().map(text).transpose()?.unwrap_or_default();
        let version: u64 = reply
            .get(1)
            .map(redis::from_redis_value_ref)
            .transpose()
            .map_err(|e| StoreError::Other(e.into()))?
            .unwrap_or(0);
        match status.as_str() {
            "ok" => {
                let ended = reply[2..].iter().map(text).collect::<Result<Vec<_>, _>>()?;
                let (orphans, evicted): (Vec<_>, Vec<_>) =
                    ended.into_iter().partition(|id| id.starts_with('?'));
                let version_moved = orphans.iter().any(|id| id == "?");
                for ended in evicted.iter().chain(&orphans) {
                    if let Ok(id) = SessionId::parse(ended.trim_start_matches('?'), &self.regions) {
                        self.forget(&id);
                    }
                }
                Ok(Created {
                    credential_version: version,
                    version_moved,
                    evicted,
                    // A bare '?' marks the pushed version move (no session of its own).
                    orphans: orphans
                        .into_iter()
                        .filter(|id| id.len() > 1)
                        .map(|id| id[1..].to_owned())
                        .collect(),
                })
            }
            "version" => Err(CreateError::CredentialVersionChanged),
            "limit" => Err(CreateError::LimitReached),
            other => Err(StoreError::Other(anyhow!("create script answered {other:?}")).into()),
        }
    }

    async fn load(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        self.read(&self.keys.session(id), id).await
    }

    async fn load_cached(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        use super::near_cache::Lookup;
        let Some(cache) = &self.cache else {
            return self.load(id).await;
        };
        let key = self.keys.session(id);
        let mut lookup = cache.lookup(&key);
        if let Lookup::Hit(_) = lookup {
            // Served only once every invalidation Redis sent before now has been applied: the
            // entry is looked up again after the fence (a failed fence reads Redis).
            lookup = match cache.fence().pass().await {
                Some(epoch) => cache.lookup_at(&key, epoch),
                None => Lookup::Miss(None),
            };
        }
        match lookup {
            Lookup::Hit(record) => Ok(Some(SessionRecord::clone(&record))),
            Lookup::Miss(ticket) => {
                let read = self.read(&key, id).await;
                // A record is kept; a read that found nothing or failed removes its mark.
                match (ticket, &read) {
                    (Some(ticket), Ok(Some(record))) => cache.fill(&key, ticket, record),
                    (Some(ticket), _) => cache.cancel(&key, ticket),
                    (None, _) => {}
                }
                read
            }
        }
    }

    async fn renew(
        &self,
        id: &SessionId,
        user: &UserId,
        secret_hash: &SecretHash,
        now: UnixMillis,
        idle_expires_at: UnixMillis,
        ttl_ms: i64,
    ) -> Result<bool, StoreError> {
        let reply = RENEW
            .key(self.keys.session(id))
            .key(self.keys.user_index(user))
            .key(self.keys.credential_version(user))
            .arg(secret_hash.to_base64())
            .arg(now)
            .arg(idle_expires_at)
            .arg(ttl_ms)
            .arg(id.as_str())
            .invoke_async::<i64>(&mut self.conn())
            .await;
        self.forget(id);
        let done = reply.map_err(store_error)?;
        Ok(done == 1)
    }

    async fn revoke(&self, id: &SessionId, user: &UserId) -> Result<bool, StoreError> {
        let reply = REVOKE
            .key(self.keys.session(id))
            .key(self.keys.user_index(user))
            .key(self.keys.outbox(id.tag()))
            .arg(id.as_str())
            .arg(self.until())
            .invoke_async::<i64>(&mut self.conn())
            .await;
        self.forget(id);
        let n = reply.map_err(store_error)?;
        self.confirmed(&self.keys.session(id)).await?;
        Ok(n > 0)
    }

    async fn list(&self, user: &UserId, now: UnixMillis) -> Result<Listing, StoreError> {
        let flat: Vec<Vec<u8>> = LIST
            .key(self.keys.user_index(user))
            .key(self.keys.credential_version(user))
            .arg(now)
            .arg(self.keys.session_prefix(&user.tag()))
            .invoke_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        let Some((current, flat)) = flat.split_first() else {
            return Ok(Listing::default());
        };
        let current: u64 = std::str::from_utf8(current)
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let mut sessions = Vec::with_capacity(flat.len() / 2);
        for pair in flat.chunks_exact(2) {
            let Ok(record) = Self::decode(&pair[1]) else {
                tracing::error!("undecodable session record in a user's index; not listed");
                continue;
            };
            // Skip anything that does not belong to this user or region set (defence in depth).
            let Some(Ok(id)) = std::str::from_utf8(&pair[0])
                .ok()
                .map(|raw| SessionId::parse(raw, &self.regions))
            else {
                continue;
            };
            if record.user_id != *user
                || record.expires_at <= now
                || record.credential_version < current
            {
                continue;
            }
            sessions.push(Session { id, record });
        }
        sessions.sort_by_key(|s| std::cmp::Reverse(s.record.last_seen_at));
        Ok(Listing {
            sessions,
            unavailable_regions: Vec::new(),
        })
    }

    async fn revoke_all(&self, user: &UserId) -> Result<u64, StoreError> {
        let n: i64 = revoke_all(&self.keys, user, "", self.until())
            .invoke_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        self.confirmed(&self.keys.user_index(user)).await?;
        Ok(n.max(0) as u64)
    }

    async fn erase_user(&self, user: &UserId) -> Result<u64, StoreError> {
        let n: i64 = ERASE
            .key(self.keys.outbox(&user.tag()))
            .key(self.keys.user_index(user))
            .key(self.keys.credential_version(user))
            .key(self.keys.totp_step(user))
            .key(self.keys.fingerprint(user))
            .key(self.keys.user_audit(user))
            .key(self.keys.totp_failures(user, false))
            .key(self.keys.totp_failures(user, true))
            // Only the user's owner region holds a ledger (limit across regions); deleting it in
            // the same script leaves no moment where the user is gone but still counted.
            .key(self.keys.ledger(user))
            .arg(self.keys.session_prefix(&user.tag()))
            .arg(user.as_str())
            .arg(self.until())
            .arg(self.longest_session_ms)
            .invoke_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        self.confirmed(&self.keys.user_index(user)).await?;
        Ok(n.max(0) as u64)
    }

    async fn credential_version(&self, user: &UserId) -> Result<u64, StoreError> {
        let v: Option<u64> = self
            .conn()
            .get(self.keys.credential_version(user))
            .await
            .map_err(store_error)?;
        Ok(v.unwrap_or(0))
    }

    async fn rotate(
        &self,
        id: &SessionId,
        old_hash: &SecretHash,
        new_hash: &SecretHash,
        elevation: Option<(UnixMillis, Acr)>,
    ) -> Result<bool, StoreError> {
        let (at, acr) = match elevation {
            Some((at, acr)) => (at.to_string(), acr.as_str()),
            None => (String::new(), ""),
        };
        let reply = ROTATE
            .key(self.keys.session(id))
            .arg(old_hash.to_base64())
            .arg(new_hash.to_base64())
            .arg(at)
            .arg(acr)
            .invoke_async::<i64>(&mut self.conn())
            .await;
        self.forget(id);
        let done = reply.map_err(store_error)?;
        Ok(done == 1)
    }

    async fn refresh(&self, r: RefreshRequest<'_>) -> Result<RefreshOutcome, StoreError> {
        let reply = REFRESH
            .key(self.keys.session(r.id))
            .key(self.keys.outbox(r.id.tag()))
            .arg(r.presented_hash.to_base64())
            .arg(r.successor_hash.to_base64())
            .arg(r.now)
            .arg(r.grace_ms)
            .arg(r.default_idle_ms)
            .arg(r.id.as_str())
            .arg(self.keys.user_index_prefix(r.id.tag()))
            .arg(self.until())
            .arg(self.keys.credential_version_prefix(r.id.tag()))
            .invoke_async::<Vec<Vec<u8>>>(&mut self.conn())
            .await;
        self.forget(r.id);
        let reply = reply.map_err(store_error)?;
        // Every part but a record is text.
        let text = |i: usize| reply.get(i).and_then(|v| std::str::from_utf8(v).ok());
        if !matches!(text(0), Some("rotated" | "grace" | "mismatch")) {
            // A reuse ended the session, or it is gone (perhaps ended by a reuse answered
            // 503): either answer is final only once durable.
            self.confirmed(&self.keys.session(r.id)).await?;
        }
        Ok(match (text(0), reply.get(1)) {
            (Some("rotated"), Some(raw)) => RefreshOutcome::Rotated(Box::new(Self::decode(raw)?)),
            (Some("grace"), Some(raw)) => RefreshOutcome::Grace(Box::new(Self::decode(raw)?)),
            (Some("reused"), Some(_)) => match text(1) {
                Some(user) => RefreshOutcome::Reused(user.to_owned()),
                None => RefreshOutcome::Unknown,
            },
            (Some("mismatch"), Some(_)) => match (
                text(1).and_then(SecretHash::from_base64),
                text(2).and_then(|u| UserId::parse(u).ok()),
            ) {
                (Some(current), Some(user)) => RefreshOutcome::Mismatch { current, user },
                _ => RefreshOutcome::Unknown,
            },
            _ => RefreshOutcome::Unknown,
        })
    }

    async fn revoke_by_refresh(
        &self,
        id: &SessionId,
        presented_hash: &SecretHash,
    ) -> Result<RefreshRevocation, StoreError> {
        let reply = REVOKE_REFRESH
            .key(self.keys.session(id))
            .key(self.keys.outbox(id.tag()))
            .arg(presented_hash.to_base64())
            .arg(id.as_str())
            .arg(self.keys.user_index_prefix(id.tag()))
            .arg(self.until())
            .invoke_async::<Vec<String>>(&mut self.conn())
            .await;
        self.forget(id);
        let reply = reply.map_err(store_error)?;
        self.confirmed(&self.keys.session(id)).await?;
        let user = |i: usize| reply.get(i).and_then(|u| UserId::parse(u).ok());
        Ok(match reply.first().map(String::as_str) {
            Some("revoked") => {
                user(1).map_or(RefreshRevocation::Unknown, RefreshRevocation::Revoked)
            }
            Some("mismatch") => match (
                reply.get(1).and_then(|h| SecretHash::from_base64(h)),
                user(2),
            ) {
                (Some(current), Some(user)) => RefreshRevocation::Mismatch { current, user },
                _ => RefreshRevocation::Unknown,
            },
            _ => RefreshRevocation::Unknown,
        })
    }

    async fn confirm(&self, id: &SessionId) -> Result<(), StoreError> {
        self.confirmed(&self.keys.session(id)).await
    }

    async fn mark_anomaly(&self, id: &SessionId, now: UnixMillis) -> Result<bool, StoreError> {
        let reply = ANOMALY
            .key(self.keys.session(id))
            .arg(now)
            .invoke_async::<i64>(&mut self.conn())
            .await;
        self.forget(id);
        let n = reply.map_err(store_error)?;
        Ok(n == 1)
    }

    async fn put_grant(
        &self,
        id: &SessionId,
        digest: &str,
        acr: Acr,
        ttl_ms: i64,
    ) -> Result<(), StoreError> {
        let _: () = redis::cmd("SET")
            .arg(self.keys.grant(id, digest))
            .arg(acr.as_str())
            .arg("PX")
            .arg(ttl_ms.max(1))
            .query_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn take_grant(&self, id: &SessionId, digest: &str) -> Result<Option<Acr>, StoreError> {
        let level: Option<String> = redis::cmd("GETDEL")
            .arg(self.keys.grant(id, digest))
            .query_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        Ok(level.and_then(|l| match l.as_str() {
            "pwd" => Some(Acr::Pwd),
            "mfa" => Some(Acr::Mfa),
            _ => None,
        }))
    }
}
