//! An in-memory `SessionStore` with the Redis store's semantics, for fast tests of the session
//! service (with a `TestClock`) and as the second implementation the store contract suite runs
//! against (`tests/api/store.rs`). Not for production: nothing persists, nothing is shared
//! between processes, and no revocation is pushed.

use crate::clock::SharedClock;
use crate::session::model::RefreshState;
use crate::session::policy::OnLimit;
use crate::session::ports::{
    CreateError, CreateRequest, Created, Listing, RefreshOutcome, RefreshRequest, RefreshRevocation,
};
use crate::session::{
    Acr, SecretHash, Session, SessionId, SessionRecord, SessionStore, StoreError, UnixMillis,
    UserId,
};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
struct Data {
    /// Session id → (record, the moment its key would expire in Redis).
    sessions: HashMap<String, (SessionRecord, UnixMillis)>,
    /// User id → session id → index score (expiry ms).
    index: HashMap<String, HashMap<String, UnixMillis>>,
    versions: HashMap<String, u64>,
    fingerprints: HashMap<String, String>,
    /// Grant key → (level, expiry).
    grants: HashMap<String, (Acr, UnixMillis)>,
}

pub struct MemoryStore {
    data: Mutex<Data>,
    clock: SharedClock,
}

impl MemoryStore {
    pub fn new(clock: SharedClock) -> Self {
        Self {
            data: Mutex::new(Data::default()),
            clock,
        }
    }

    /// Fault injection for tests: the user's index is lost (as an operator's `DEL` or a partial
    /// data loss would lose it in Redis), while the sessions stay.
    pub fn lose_index(&self, user: &UserId) {
        self.data().index.remove(user.as_str());
    }

    fn data(&self) -> std::sync::MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Data {
    /// The record, if its "key" has not expired (Redis would have dropped it).
    fn live(&self, id: &str, now: UnixMillis) -> Option<&SessionRecord> {
        self.sessions
            .get(id)
            .filter(|(_, expires)| *expires > now)
            .map(|(r, _)| r)
    }

    fn version(&self, user: &UserId) -> u64 {
        self.versions.get(user.as_str()).copied().unwrap_or(0)
    }

    /// `max(version + 1, now)`: versions never go back (see `store/lua/revoke_all.lua`).
    fn bump(&mut self, user: &UserId, now: UnixMillis) -> u64 {
        let next = (self.version(user) + 1).max(now.max(0) as u64);
        self.versions.insert(user.as_str().to_owned(), next);
        next
    }

    fn end_all(&mut self, user: &UserId) -> u64 {
        let ids: Vec<String> = self
            .index
            .remove(user.as_str())
            .map(|m| m.into_keys().collect())
            .unwrap_or_default();
        ids.iter()
            .filter(|id| self.sessions.remove(*id).is_some())
            .count() as u64
    }

    fn unindex(&mut self, user: &UserId, id: &str) {
        if let Some(members) = self.index.get_mut(user.as_str()) {
            members.remove(id);
        }
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create(&self, r: CreateRequest<'_>) -> Result<Created, CreateError> {
        let mut d = self.data();
        let stored = d.versions.get(r.user.as_str()).copied();
        if r.expected_version.is_some_and(|v| v != stored.unwrap_or(0)) {
            return Err(CreateError::CredentialVersionChanged);
        }
        let mut orphans = Vec::new();
        let mut version_moved = false;
        let mut stored = stored;
        if let Some(fp) = r.fingerprint {
            match d.fingerprints.get(r.user.as_str()) {
                Some(known) if known != fp => return Err(CreateError::CredentialVersionChanged),
                Some(_) => {}
                None => {
                    let ids: Vec<String> = d
                        .index
                        .remove(r.user.as_str())
                        .map(|m| m.into_keys().collect())
                        .unwrap_or_default();
                    for id in ids {
                        if d.sessions.remove(&id).is_some() {
                            orphans.push(id);
                        }
                    }
                    d.fingerprints
                        .insert(r.user.as_str().to_owned(), fp.to_owned());
                    stored = Some(d.bump(r.user, self.clock.now_ms()));
                    version_moved = true;
                }
            }
        }
        let version = match stored {
            Some(v) => v,
            None => {
                let v = self.clock.now_ms().max(0) as u64;
                d.versions.insert(r.user.as_str().to_owned(), v);
                v
            }
        };
        let now = r.now;
        let members: Vec<(String, UnixMillis)> = d
            .index
            .get(r.user.as_str())
            .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        let mut live = Vec::new();
        for (id, score) in members {
            match d.live(&id, now).filter(|_| score > now) {
                Some(rec) => live.push((id.clone(), rec.last_seen_at)),
                None => d.unindex(r.user, &id),
            }
        }
        let mut evicted = Vec::new();
        let max = r.limit.max_sessions.max(1) as usize;
        if live.len() >= max {
            if r.limit.on_limit == OnLimit::Reject {
                return Err(CreateError::LimitReached);
            }
            live.sort_by_key(|(_, seen)| *seen);
            for (id, _) in live.iter().take(live.len() - max + 1) {
                d.sessions.remove(id);
                d.unindex(r.user, id);
                evicted.push(id.clone());
            }
        }
        if d.live(r.id.as_str(), now).is_some() {
            return Err(StoreError::Other(anyhow::anyhow!("session id collision")).into());
        }
        let mut record = r.record.clone();
        record.credential_version = version;
        d.sessions
            .insert(r.id.as_str().to_owned(), (record, now + r.ttl_ms));
        d.index
            .entry(r.user.as_str().to_owned())
            .or_default()
            .insert(r.id.as_str().to_owned(), now + r.ttl_ms);
        Ok(Created {
            credential_version: version,
            evicted,
            orphans,
            version_moved,
        })
    }

    async fn load(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        let d = self.data();
        Ok(d.live(id.as_str(), self.clock.now_ms()).cloned())
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
        let mut d = self.data();
        let wall = self.clock.now_ms();
        let current = d.version(user);
        let stale = d
            .sessions
            .get(id.as_str())
            .is_some_and(|(r, _)| r.credential_version < current);
        if stale {
            d.sessions.remove(id.as_str());
            d.unindex(user, id.as_str());
            return Ok(false);
        }
        let Some((record, expires)) = d
            .sessions
            .get_mut(id.as_str())
            .filter(|(r, e)| *e > wall && r.secret_hash.matches(secret_hash))
        else {
            return Ok(false);
        };
        record.last_seen_at = now;
        record.idle_expires_at = idle_expires_at;
        *expires = now + ttl_ms;
        let score = now + ttl_ms;
        if let Some(entry) = d
            .index
            .get_mut(user.as_str())
            .and_then(|m| m.get_mut(id.as_str()))
        {
            *entry = score;
        }
        Ok(true)
    }

    async fn revoke(&self, id: &SessionId, user: &UserId) -> Result<bool, StoreError> {
        let mut d = self.data();
        let now = self.clock.now_ms();
        let existed = d.live(id.as_str(), now).is_some();
        d.sessions.remove(id.as_str());
        d.unindex(user, id.as_str());
        Ok(existed)
    }

    async fn list(&self, user: &UserId, now: UnixMillis) -> Result<Listing, StoreError> {
        let d = self.data();
        let current = d.version(user);
        let mut sessions: Vec<Session> = d
            .index
            .get(user.as_str())
            .into_iter()
            .flatten()
            .filter(|(_, score)| **score > now)
            .filter_map(|(id, _)| {
                let record = d.live(id, now)?;
                let keep = record.user_id == *user
                    && record.expires_at > now
                    && record.credential_version >= current;
                let id = SessionId::parse(id, &[id_region(id)?]).ok()?;
                keep.then(|| Session {
                    id,
                    record: record.clone(),
                })
            })
            .collect();
        sessions.sort_by_key(|s| std::cmp::Reverse(s.record.last_seen_at));
        Ok(Listing {
            sessions,
            unavailable_regions: Vec::new(),
        })
    }

    async fn revoke_all(&self, user: &UserId) -> Result<u64, StoreError> {
        let mut d = self.data();
        d.bump(user, self.clock.now_ms());
        Ok(d.end_all(user))
    }

    async fn erase_user(&self, user: &UserId) -> Result<u64, StoreError> {
        let mut d = self.data();
        d.bump(user, self.clock.now_ms());
        let n = d.end_all(user);
        // The version stays as a tombstone (Redis: for the longest session lifetime).
        d.fingerprints.remove(user.as_str());
        Ok(n)
    }

    async fn credential_version(&self, user: &UserId) -> Result<u64, StoreError> {
        Ok(self.data().version(user))
    }

    async fn rotate(
        &self,
        id: &SessionId,
        old_hash: &SecretHash,
        new_hash: &SecretHash,
        elevation: Option<(UnixMillis, Acr)>,
    ) -> Result<bool, StoreError> {
        let mut d = self.data();
        let now = self.clock.now_ms();
        let Some((record, _)) = d
            .sessions
            .get_mut(id.as_str())
            .filter(|(r, e)| *e > now && r.secret_hash.matches(old_hash))
        else {
            return Ok(false);
        };
        record.secret_hash = new_hash.clone();
        if let Some((at, acr)) = elevation {
            record.elevated_at = at;
            record.elevated_acr = Some(acr);
        }
        Ok(true)
    }

    async fn mark_anomaly(&self, id: &SessionId, now: UnixMillis) -> Result<bool, StoreError> {
        let mut d = self.data();
        let wall = self.clock.now_ms();
        match d.sessions.get_mut(id.as_str()) {
            Some((record, expires)) if *expires > wall && record.anomaly_at == 0 => {
                record.anomaly_at = now;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn revoke_by_refresh(
        &self,
        id: &SessionId,
        presented_hash: &SecretHash,
    ) -> Result<RefreshRevocation, StoreError> {
        let mut d = self.data();
        let now = self.clock.now_ms();
        let Some(record) = d.live(id.as_str(), now).cloned() else {
            return Ok(RefreshRevocation::Unknown);
        };
        let Some(family) = &record.refresh else {
            return Ok(RefreshRevocation::Unknown);
        };
        let previous = family.previous.as_ref();
        if !family.current.matches(presented_hash)
            && !previous.is_some_and(|p| p.matches(presented_hash))
        {
            return Ok(RefreshRevocation::Mismatch {
                current: family.current.clone(),
                user: record.user_id.clone(),
            });
        }
        d.sessions.remove(id.as_str());
        d.unindex(&record.user_id, id.as_str());
        Ok(RefreshRevocation::Revoked(record.user_id))
    }

    async fn refresh(&self, r: RefreshRequest<'_>) -> Result<RefreshOutcome, StoreError> {
        let mut d = self.data();
        let now = r.now;
        let Some(mut record) = d.live(r.id.as_str(), self.clock.now_ms()).cloned() else {
            return Ok(RefreshOutcome::Unknown);
        };
        let Some(family) = record.refresh.clone() else {
            return Ok(RefreshOutcome::Unknown);
        };
        if now >= record.expires_at
            || now >= record.idle_expires_at
            || record.credential_version < d.version(&record.user_id)
        {
            return Ok(RefreshOutcome::Unknown);
        }
        let was_previous = family
            .previous
            .as_ref()
            .is_some_and(|p| p.matches(r.presented_hash));
        let grace = was_previous
            && family.current.matches(r.successor_hash)
            && now - family.rotated_at <= r.grace_ms;
        let rotated = family.current.matches(r.presented_hash);
        if !rotated && !grace {
            if was_previous {
                d.sessions.remove(r.id.as_str());
                d.unindex(&record.user_id, r.id.as_str());
                return Ok(RefreshOutcome::Reused(record.user_id.as_str().to_owned()));
            }
            return Ok(RefreshOutcome::Mismatch {
                current: family.current,
                user: record.user_id,
            });
        }
        if rotated {
            record.refresh = Some(RefreshState {
                current: r.successor_hash.clone(),
                previous: Some(family.current),
                rotated_at: now,
            });
        }
        let idle = if record.idle_timeout_ms > 0 {
            record.idle_timeout_ms
        } else {
            r.default_idle_ms
        };
        record.last_seen_at = now;
        record.idle_expires_at = (now + idle).min(record.expires_at);
        let ttl = (record.idle_expires_at - now).max(1);
        let user = record.user_id.clone();
        d.sessions
            .insert(r.id.as_str().to_owned(), (record.clone(), now + ttl));
        if let Some(entry) = d
            .index
            .get_mut(user.as_str())
            .and_then(|m| m.get_mut(r.id.as_str()))
        {
            *entry = now + ttl;
        }
        Ok(if rotated {
            RefreshOutcome::Rotated(Box::new(record))
        } else {
            RefreshOutcome::Grace(Box::new(record))
        })
    }

    async fn put_grant(
        &self,
        id: &SessionId,
        digest: &str,
        acr: Acr,
        ttl_ms: i64,
    ) -> Result<(), StoreError> {
        let expires = self.clock.now_ms() + ttl_ms.max(1);
        self.data()
            .grants
            .insert(format!("{id}:{digest}"), (acr, expires));
        Ok(())
    }

    async fn take_grant(&self, id: &SessionId, digest: &str) -> Result<Option<Acr>, StoreError> {
        let now = self.clock.now_ms();
        Ok(self
            .data()
            .grants
            .remove(&format!("{id}:{digest}"))
            .filter(|(_, expires)| *expires > now)
            .map(|(acr, _)| acr))
    }
}

/// The region named inside a session id (`v1_<region>_…`), to re-parse stored ids.
fn id_region(id: &str) -> Option<crate::session::Region> {
    crate::session::Region::parse(id.split('_').nth(1)?).ok()
}
