//! Sessions across regions: each region's sessions live in that region's Redis (or Redis
//! Cluster); a node reaches every region.
//!
//! - A session's own operations go to the region in its id (validated before any I/O).
//! - New sessions are created in the home region.
//! - Listing asks every region in parallel, each under a timeout, and names those that did
//!   not answer.
//! - Revoke-all and erasure act in every region; the part for a region that does not answer is
//!   parked durably (`store::pending`) and delivered when it answers.
//! - The concurrent-session limit holds across regions: the user's owner region (from the
//!   user's hash tag) keeps a ledger of the user's sessions in every region, and a place in it
//!   is taken atomically before a session is created. Owner unreachable: the login fails
//!   closed (503) rather than exceed the limit.

use super::connection::{Conn, RedisConnections};
use super::keys::KeyLayout;
use super::pending::{Pending, PendingOp};
use super::revocations::RedisFeed;
use super::sessions::RedisSessionStore;
use super::store_error;
use crate::session::policy::OnLimit;
use crate::session::ports::{
    CreateError, CreateRequest, Created, Listing, RefreshOutcome, RefreshRequest,
    RefreshRevocation, RevocationSink,
};
use crate::session::{
    Acr, Region, SecretHash, SessionId, SessionRecord, SessionStore, StoreError, UnixMillis, UserId,
};
use anyhow::anyhow;
use async_trait::async_trait;
use redis::{AsyncCommands, Script, Value};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

static RESERVE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/reserve.lua")));

/// One Redis (or Redis Cluster) as a node reaches it, with the regions whose sessions it holds
/// (usually one; regions listed by name only share `redis_url`).
#[derive(Clone)]
pub struct RegionLink {
    /// The name of this Redis in the deployment: the first of `regions` by name, the same on
    /// every node (its feed is `tsr:rev:<region>`, its parked changes `tsr:pending:<region>`).
    pub region: Region,
    pub regions: Vec<Region>,
    pub redis: RedisConnections,
    pub store: RedisSessionStore,
    pub feed: RedisFeed,
    /// This Redis's near cache (`session_cache_entries` > 0), kept coherent by a tracker.
    pub cache: Option<super::near_cache::NearCache>,
}

/// Every region, the home region first.
#[derive(Clone)]
pub struct RegionalStore {
    links: Arc<[RegionLink]>,
    keys: KeyLayout,
    pending: Pending,
    /// How long listing waits for each region.
    list_timeout: Duration,
}

/// What a place in the owner's ledger cost: sessions to end elsewhere.
type Evicted = Vec<String>;

impl RegionalStore {
    pub fn new(
        links: Vec<RegionLink>,
        keys: KeyLayout,
        pending: Pending,
        list_timeout: Duration,
    ) -> Self {
        assert!(!links.is_empty(), "at least the home region");
        Self {
            links: links.into(),
            keys,
            pending,
            list_timeout,
        }
    }

    fn home(&self) -> &RegionLink {
        &self.links[0]
    }

    pub fn links(&self) -> &[RegionLink] {
        &self.links
    }

    /// Every region of the deployment.
    fn regions(&self) -> Vec<Region> {
        self.links.iter().flat_map(|l| l.regions.clone()).collect()
    }

    fn link(&self, region: &str) -> Result<&RegionLink, StoreError> {
        self.links
            .iter()
            .find(|l| l.regions.iter().any(|r| r.as_str() == region))
            .ok_or_else(|| StoreError::Other(anyhow!("region '{region}' is not configured")))
    }

    fn of(&self, id: &SessionId) -> Result<&RedisSessionStore, StoreError> {
        Ok(&self.link(id.region())?.store)
    }

    /// The region that keeps the user's ledger: the same for every node that lists the same
    /// regions (by name order), spread by the user's hash tag.
    pub fn owner(&self, user: &UserId) -> &RegionLink {
        owner_index(&self.links, user).map_or(self.home(), |i| &self.links[i])
    }

    /// Takes a place in the owner's ledger for `request`: first without evicting; when full,
    /// forgets entries whose session no longer exists (a logout elsewhere) and asks again;
    /// only then evicts or refuses as the policy says.
    async fn reserve(&self, request: &CreateRequest<'_>) -> Result<Evicted, CreateError> {
        let owner = self.owner(request.user);
        let mut pruned = false;
        loop {
            let full_policy = if pruned {
                request.limit.on_limit
            } else {
                OnLimit::Reject
            };
            let reply: Vec<Value> = RESERVE
                .key(self.keys.ledger(request.user))
                .arg(request.now)
                .arg(request.limit.max_sessions.max(1))
                .arg(match full_policy {
                    OnLimit::Evict => "evict",
                    OnLimit::Reject => "reject",
                })
                .arg(request.id.as_str())
                .arg(request.record.expires_at)
                .invoke_async(&mut owner.redis.conn.clone())
                .await
                .map_err(store_error)?;
            let words: Vec<String> = reply
                .iter()
                .map(redis::from_redis_value_ref)
                .collect::<Result<_, _>>()
                .map_err(|e| StoreError::Other(e.into()))?;
            let Some((status, rest)) = words.split_first() else {
                return Err(StoreError::Other(anyhow!("reserve.lua answered nothing")).into());
            };
            match status.as_str() {
                // Evicted ids come with their scores.
                "ok" => return Ok(rest.iter().step_by(2).cloned().collect()),
                "limit" if !pruned => {
                    self.forget_ended(owner, request.user, rest).await?;
                    pruned = true;
                }
                "limit" => return Err(CreateError::LimitReached),
                other => {
                    return Err(StoreError::Other(anyhow!("reserve.lua answered {other:?}")).into())
                }
            }
        }
    }

    /// Drops ledger entries whose session is gone from its region. An entry of a region that
    /// does not answer keeps counting (never more sessions than the limit).
    async fn forget_ended(
        &self,
        owner: &RegionLink,
        user: &UserId,
        ids: &[String],
    ) -> Result<(), StoreError> {
        let regions = self.regions();
        let checks = ids.iter().map(|raw| async {
            let Ok(id) = SessionId::parse(raw, &regions) else {
                return Some(raw.clone()); // no region of ours: nothing can be there
            };
            let link = self.link(id.region()).ok()?;
            let exists: Option<bool> = link
                .redis
                .conn
                .clone()
                .exists(self.keys.session(&id))
                .await
                .ok();
            (exists == Some(false)).then(|| raw.clone())
        });
        let gone: Vec<String> = futures_util::future::join_all(checks)
            .await
            .into_iter()
            .flatten()
            .collect();
        if !gone.is_empty() {
            let _: i64 = owner
                .redis
                .conn
                .clone()
                .zrem(self.keys.ledger(user), &gone)
                .await
                .map_err(store_error)?;
        }
        Ok(())
    }

    /// Ends a session the ledger evicted, in its region (parked if that region is away).
    /// True when it ended now or will.
    async fn end_evicted(&self, raw: &str, user: &UserId) -> Result<bool, StoreError> {
        let Ok(id) = SessionId::parse(raw, &self.regions()) else {
            return Ok(false);
        };
        let link = self.link(id.region())?;
        match link.store.revoke(&id, user).await {
            Ok(ended) => {
                link.feed.flush(id.tag()).await;
                Ok(ended)
            }
            Err(_) if link.region != self.home().region => {
                self.pending
                    .park(
                        &link.region,
                        &link.regions,
                        PendingOp::Revoke {
                            sid: raw.to_owned(),
                            user: user.as_str().to_owned(),
                        },
                    )
                    .await?;
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    /// Runs `op` in every region: the home region first (its failure fails the whole call:
    /// nothing could be parked), then the others at once; a region that fails gets the change
    /// parked instead. Returns the sum of what the regions that answered reported.
    async fn everywhere<'a, F, Fut>(
        &'a self,
        op: F,
        parked: impl Fn() -> PendingOp,
    ) -> Result<u64, StoreError>
    where
        F: Fn(&'a RegionLink) -> Fut,
        Fut: std::future::Future<Output = Result<u64, StoreError>>,
    {
        let mut total = op(self.home()).await?;
        let others = self.links[1..].iter().map(|link| {
            let run = op(link);
            async move { (link, run.await) }
        });
        for (link, result) in futures_util::future::join_all(others).await {
            match result {
                Ok(n) => total += n,
                Err(e) => {
                    tracing::warn!(region = %link.region, error = %e, "region did not answer");
                    self.pending
                        .park(&link.region, &link.regions, parked())
                        .await?;
                }
            }
        }
        Ok(total)
    }

    /// Erases the user in one region (with the ledger, in the region that keeps it).
    async fn erase_in(&self, link: &RegionLink, user: &UserId) -> Result<u64, StoreError> {
        link.store.erase_user(user).await
    }

    /// Carries out one parked change in `link`'s region.
    async fn apply(&self, link: &RegionLink, op: PendingOp) -> Result<(), StoreError> {
        let parse_user = |raw: &str| {
            UserId::parse(raw).map_err(|e| StoreError::Other(anyhow!("parked user id: {e}")))
        };
        let tag = match op {
            PendingOp::RevokeAll { user } => {
                let user = parse_user(&user)?;
                link.store.revoke_all(&user).await?;
                user.tag()
            }
            PendingOp::Erase { user } => {
                let user = parse_user(&user)?;
                self.erase_in(link, &user).await?;
                user.tag()
            }
            PendingOp::Revoke { sid, user } => {
                let user = parse_user(&user)?;
                let Ok(id) = SessionId::parse(&sid, &link.regions) else {
                    return Ok(());
                };
                link.store.revoke(&id, &user).await?;
                user.tag()
            }
            PendingOp::Sync { user, fingerprint } => {
                let user = parse_user(&user)?;
                link.store.sync_fingerprint(&user, &fingerprint).await?;
                user.tag()
            }
        };
        link.feed.flush(&tag).await;
        Ok(())
    }

    /// Brings `user`'s users-file fingerprint up to date in every region but the home region
    /// (the login path syncs the home region itself); returns the sessions ended.
    pub async fn sync_elsewhere(
        &self,
        user: &UserId,
        fingerprint: &str,
    ) -> Result<u64, StoreError> {
        let others = self.links[1..].iter().map(|link| async move {
            let result = link.store.sync_fingerprint(user, fingerprint).await;
            (link, result)
        });
        let mut total = 0;
        for (link, result) in futures_util::future::join_all(others).await {
            match result {
                Ok(n) => {
                    if n.is_some() {
                        link.feed.flush(&user.tag()).await;
                    }
                    total += n.unwrap_or(0);
                }
                Err(_) => {
                    self.pending
                        .park(
                            &link.region,
                            &link.regions,
                            PendingOp::Sync {
                                user: user.as_str().to_owned(),
                                fingerprint: fingerprint.to_owned(),
                            },
                        )
                        .await?
                }
            }
        }
        Ok(total)
    }

    /// Delivers parked changes every second, forever: what every region this node reaches
    /// keeps for every other region (every node does; delivery is idempotent), so a change
    /// parked by a node that is now cut off still arrives through any node that reaches both.
    pub async fn deliver_pending(self) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // When this node last pushed again the effects waiting in (source, target).
        let mut pushed_at: std::collections::HashMap<(Region, Region), i64> = Default::default();
        loop {
            tick.tick().await;
            for source in self.links.iter() {
                let kept = self
                    .pending
                    .kept_in(source.redis.conn.clone(), source.feed.clone());
                let every = source.feed.retention_ms() / 2;
                for target in self.links.iter().filter(|t| t.region != source.region) {
                    let round = kept
                        .deliver(&target.region, |op| self.apply(target, op))
                        .await;
                    if round.delivered > 0 {
                        tracing::info!(from = %source.region, region = %target.region, delivered = round.delivered, "parked changes delivered");
                    }
                    let pair = (source.region.clone(), target.region.clone());
                    let now = self.pending.now_ms();
                    if !round.blocked {
                        pushed_at.remove(&pair);
                        continue;
                    }
                    // The first blocked round pushes at once: the parking node may have died
                    // (or failed to push) right after keeping the change.
                    let last = *pushed_at.entry(pair.clone()).or_insert(i64::MIN / 2);
                    if now - last >= every {
                        let n = kept
                            .push_waiting_effects(&target.region, &target.regions)
                            .await;
                        tracing::warn!(from = %source.region, region = %target.region, changes = n, "region still away: effects of its parked changes pushed again");
                        pushed_at.insert(pair, now);
                    }
                }
            }
        }
    }

    /// How many parked changes wait for each other region (readiness, tests).
    pub async fn waiting(&self) -> Vec<(Region, Result<usize, StoreError>)> {
        let mut out = Vec::new();
        for link in self.links.iter().skip(1) {
            out.push((
                link.region.clone(),
                self.pending.waiting(&link.region).await,
            ));
        }
        out
    }
}

/// Index of the owner region among `links` (by region name order), `None` for one region.
fn owner_index(links: &[RegionLink], user: &UserId) -> Option<usize> {
    let names: Vec<&Region> = links.iter().map(|l| &l.region).collect();
    owner_of(&names, user).and_then(|owner| links.iter().position(|l| l.region == *owner))
}

/// The owner region of `user` among `regions`, in name order: the user's hash tag (4 hex
/// digits, uniform) modulo the number of regions.
pub fn owner_of<'a>(regions: &[&'a Region], user: &UserId) -> Option<&'a Region> {
    if regions.len() < 2 {
        return None;
    }
    let mut sorted = regions.to_vec();
    sorted.sort();
    let tag = u32::from_str_radix(&user.tag(), 16).unwrap_or(0) as usize;
    Some(sorted[tag % sorted.len()])
}

#[async_trait]
impl SessionStore for RegionalStore {
    async fn create(&self, request: CreateRequest<'_>) -> Result<Created, CreateError> {
        if self.links.len() == 1 {
            return self.home().store.create(request).await;
        }
        // The session exists before its ledger entry, so an entry whose session is missing
        // is certainly gone (never a creation still in flight), and `reserve` may forget it.
        // The ledger alone enforces the limit: the home index must not evict on its own.
        let unlimited = CreateRequest {
            limit: crate::session::policy::LimitPolicy {
                max_sessions: u32::MAX,
                on_limit: OnLimit::Evict,
            },
            ..request
        };
        let mut created = self.home().store.create(unlimited).await?;
        let evicted = match self.reserve(&request).await {
            Ok(evicted) => evicted,
            Err(e) => {
                // Nobody holds this session's token yet: end it before answering.
                let home = self.home();
                if home.store.revoke(request.id, request.user).await.is_ok() {
                    home.feed.flush(request.id.tag()).await;
                }
                return Err(e);
            }
        };
        let mut ended = Vec::new();
        for raw in &evicted {
            match self.end_evicted(raw, request.user).await {
                Ok(true) => ended.push(raw.clone()),
                Ok(false) => {}
                Err(e) => {
                    // The evicted stay counted; the new session must not live beside them.
                    let home = self.home();
                    if home.store.revoke(request.id, request.user).await.is_ok() {
                        home.feed.flush(request.id.tag()).await;
                    }
                    return Err(e.into());
                }
            }
        }
        if !evicted.is_empty() {
            // Ended (or parked to be ended): they no longer count. Best effort: an entry
            // whose session is gone is forgotten the next time the ledger is full.
            let _: redis::RedisResult<i64> = self
                .owner(request.user)
                .redis
                .conn
                .clone()
                .zrem(self.keys.ledger(request.user), &evicted)
                .await;
        }
        created.evicted.extend(ended);
        Ok(created)
    }

    async fn load(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        self.of(id)?.load(id).await
    }

    async fn load_cached(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        self.of(id)?.load_cached(id).await
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
        self.of(id)?
            .renew(id, user, secret_hash, now, idle_expires_at, ttl_ms)
            .await
    }

    async fn revoke(&self, id: &SessionId, user: &UserId) -> Result<bool, StoreError> {
        self.of(id)?.revoke(id, user).await
    }

    async fn list(&self, user: &UserId, now: UnixMillis) -> Result<Listing, StoreError> {
        if self.links.len() == 1 {
            return self.home().store.list(user, now).await;
        }
        let asks = self.links.iter().map(|link| async move {
            let answer = tokio::time::timeout(self.list_timeout, link.store.list(user, now)).await;
            (link, answer)
        });
        let mut listing = Listing::default();
        for (link, answer) in futures_util::future::join_all(asks).await {
            match answer {
                Ok(Ok(part)) => listing.sessions.extend(part.sessions),
                Ok(Err(e)) => {
                    tracing::warn!(region = %link.region, error = %e, "listing: region failed");
                    listing
                        .unavailable_regions
                        .extend(link.regions.iter().cloned());
                }
                Err(_) => {
                    tracing::warn!(region = %link.region, "listing: region did not answer in time");
                    listing
                        .unavailable_regions
                        .extend(link.regions.iter().cloned());
                }
            }
        }
        if listing.unavailable_regions.len() == self.regions().len() {
            return Err(StoreError::Unavailable(anyhow!("no region answered")));
        }
        listing
            .sessions
            .sort_by_key(|s| std::cmp::Reverse(s.record.last_seen_at));
        Ok(listing)
    }

    async fn revoke_all(&self, user: &UserId) -> Result<u64, StoreError> {
        self.everywhere(
            |link| link.store.revoke_all(user),
            || PendingOp::RevokeAll {
                user: user.as_str().to_owned(),
            },
        )
        .await
    }

    async fn erase_user(&self, user: &UserId) -> Result<u64, StoreError> {
        self.everywhere(
            |link| self.erase_in(link, user),
            || PendingOp::Erase {
                user: user.as_str().to_owned(),
            },
        )
        .await
    }

    async fn credential_version(&self, user: &UserId) -> Result<u64, StoreError> {
        self.home().store.credential_version(user).await
    }

    async fn rotate(
        &self,
        id: &SessionId,
        old_hash: &SecretHash,
        new_hash: &SecretHash,
        elevation: Option<(UnixMillis, Acr)>,
    ) -> Result<bool, StoreError> {
        self.of(id)?.rotate(id, old_hash, new_hash, elevation).await
    }

    async fn mark_anomaly(&self, id: &SessionId, now: UnixMillis) -> Result<bool, StoreError> {
        self.of(id)?.mark_anomaly(id, now).await
    }

    async fn confirm(&self, id: &SessionId) -> Result<(), StoreError> {
        self.of(id)?.confirm(id).await
    }

    async fn revoke_by_refresh(
        &self,
        id: &SessionId,
        presented_hash: &SecretHash,
    ) -> Result<RefreshRevocation, StoreError> {
        self.of(id)?.revoke_by_refresh(id, presented_hash).await
    }

    async fn refresh(&self, request: RefreshRequest<'_>) -> Result<RefreshOutcome, StoreError> {
        self.of(request.id)?.refresh(request).await
    }

    async fn put_grant(
        &self,
        id: &SessionId,
        digest: &str,
        acr: Acr,
        ttl_ms: i64,
    ) -> Result<(), StoreError> {
        self.of(id)?.put_grant(id, digest, acr, ttl_ms).await
    }

    async fn take_grant(&self, id: &SessionId, digest: &str) -> Result<Option<Acr>, StoreError> {
        self.of(id)?.take_grant(id, digest).await
    }
}

/// Moves outbox entries to the feed of the region they were written in.
#[derive(Clone)]
pub struct RegionalFeeds(pub Arc<[RegionLink]>);

impl RegionalStore {
    pub fn feeds(&self) -> RegionalFeeds {
        RegionalFeeds(self.links.clone())
    }
}

#[async_trait]
impl RevocationSink for RegionalFeeds {
    async fn flush(&self, tag: &str) {
        futures_util::future::join_all(self.0.iter().map(|l| l.feed.flush(tag))).await;
    }

    async fn flush_region(&self, region: &str, tag: &str) {
        if let Some(link) = self
            .0
            .iter()
            .find(|l| l.regions.iter().any(|r| r.as_str() == region))
        {
            link.feed.flush(tag).await;
        }
    }

    fn flush_soon(&self, tag: &str) {
        for link in self.0.iter() {
            link.feed.flush_soon(tag);
        }
    }
}

/// The connection to each region, for callers outside this module (key ring, health).
pub fn connections(links: &[RegionLink]) -> Vec<(Region, Conn)> {
    links
        .iter()
        .map(|l| (l.region.clone(), l.redis.conn.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_names_the_same_owner_whatever_its_home() {
        let eu = Region::parse("eu").unwrap();
        let us = Region::parse("us").unwrap();
        let ap = Region::parse("ap").unwrap();
        let mut seen = std::collections::HashSet::new();
        for n in 0..200 {
            let user = UserId::parse(&format!("user{n}")).unwrap();
            let a = owner_of(&[&eu, &us, &ap], &user).unwrap();
            let b = owner_of(&[&us, &ap, &eu], &user).unwrap();
            assert_eq!(a, b, "order of the list must not matter");
            seen.insert(a.clone());
        }
        assert_eq!(seen.len(), 3, "users spread over every region");
        let alone = UserId::parse("u").unwrap();
        assert_eq!(owner_of(&[&eu], &alone), None);
    }
}
