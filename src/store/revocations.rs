//! The revocation feed in Redis: one Stream per region, trimmed by age, followed by every node
//! with `XREAD BLOCK` on a dedicated connection (a blocking read must not sit on the shared
//! multiplexed connection, where it would hold up every other request).

use super::connection::{Conn, Link, RedisConnections};
use super::store_error;
use crate::clock::SharedClock;
use crate::revocation::{Revocation, RevokedSet};
use crate::session::{StoreError, UnixMillis};
use anyhow::Context;
use redis::streams::{StreamRangeReply, StreamReadReply};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::broadcast;

/// Entries one `XREAD` returns at most.
const READ_BATCH: usize = 1000;

/// How long one `XREAD` blocks before looping (heartbeats arrive every second anyway).
const BLOCK_MS: u64 = 2_000;

/// An entry as read back: the feed it came from and its id there.
#[derive(Clone, Debug)]
pub struct FeedEntry {
    /// The name of the feed (`tsr:rev:<region>`).
    pub region: String,
    /// The stream id, `<ms>-<seq>`.
    pub id: String,
    pub entry: Revocation,
}

/// How many outboxes there can be: one per user hash tag (4 hex digits).
const TAGS: u32 = 0x1_0000;

#[derive(Clone)]
pub struct RedisFeed {
    conn: Conn,
    keys: super::KeyLayout,
    redis: RedisConnections,
    region: String,
    /// The Redis holds this region's sessions only, so a user entry concerns this region;
    /// false for a Redis that several regions share (their versions are one counter).
    exclusive: bool,
    key: String,
    /// Entries older than this are trimmed: every token they concern has expired.
    retention_ms: i64,
    clock: SharedClock,
    /// Outboxes this node failed to flush (Redis blinked after the script): retried every
    /// second by `sweep`, long before the full pass comes round to them.
    unflushed: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    /// Replicas confirm what a request's flush put on the stream (`redis_wait_replicas`).
    confirm: Option<super::durable::Confirmer>,
    /// This node's revoked set (known once `follow` runs): a revocation this node moves from
    /// an outbox applies here at once, so the node that answers a logout refuses the
    /// session's tokens from that moment, not when its own follower reads the stream back
    /// (the soak caught a token accepted 6 µs after its logout was answered).
    local: Arc<std::sync::OnceLock<Arc<RwLock<RevokedSet>>>>,
}

impl RedisFeed {
    pub fn new(
        redis: &RedisConnections,
        keys: super::KeyLayout,
        region: &str,
        retention_ms: i64,
        clock: SharedClock,
    ) -> Self {
        let key = keys.revocations(region);
        Self {
            conn: redis.conn.clone(),
            keys,
            redis: redis.clone(),
            region: region.to_owned(),
            exclusive: true,
            key,
            retention_ms,
            clock,
            unflushed: Arc::default(),
            confirm: None,
            local: Arc::default(),
        }
    }

    pub fn with_confirmer(mut self, confirm: Option<super::durable::Confirmer>) -> Self {
        self.confirm = confirm;
        self
    }

    fn unflushed(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<String>> {
        self.unflushed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Several regions keep their sessions in this Redis: its user entries concern them all.
    pub fn shared_by_regions(mut self, shared: bool) -> Self {
        self.exclusive = !shared;
        self
    }

    /// A user entry counts versions of the region whose feed carries it; it says so before
    /// it is passed on (SSE followers hear every region on one stream), live or from backlog.
    fn with_region(&self, mut e: FeedEntry) -> FeedEntry {
        if let (Revocation::User { region, .. }, true) = (&mut e.entry, self.exclusive) {
            region.get_or_insert_with(|| self.region.clone());
        }
        e
    }

    fn now_ms(&self) -> UnixMillis {
        self.clock.now_ms()
    }

    pub fn retention_ms(&self) -> i64 {
        self.retention_ms
    }

    /// Appends an entry (and trims entries past retention).
    pub async fn publish(&self, entry: &Revocation) -> Result<String, StoreError> {
        let json = serde_json::to_string(entry).map_err(|e| StoreError::Other(e.into()))?;
        let min_id = format!("{}-0", (self.now_ms() - self.retention_ms).max(0));
        redis::cmd("XADD")
            .arg(&self.key)
            .arg("MINID")
            .arg("~")
            .arg(min_id)
            .arg("*")
            .arg("e")
            .arg(json)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(store_error)
    }

    /// Entries after `after` (exclusive; `None`: everything still retained), oldest first.
    pub async fn backlog(
        &self,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<FeedEntry>, StoreError> {
        let start = match after {
            Some(id) => format!("({id}"),
            None => format!("{}-0", (self.now_ms() - self.retention_ms).max(0)),
        };
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(&self.key)
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(store_error)?;
        Ok(reply
            .ids
            .iter()
            .filter_map(|e| decode(&self.region, e))
            .map(|e| self.with_region(e))
            .collect())
    }

    async fn follower_connection(&self) -> anyhow::Result<Conn> {
        self.redis
            .dedicated(Duration::from_millis(BLOCK_MS))
            .await
            .context("cannot open the revocation-feed connection")
    }

    /// Follows the feed forever: applies entries to `set` and re-broadcasts them (for SSE).
    /// Reconnects after failures and resumes from the last id it saw.
    pub async fn follow(self, set: Arc<RwLock<RevokedSet>>, tx: broadcast::Sender<FeedEntry>) {
        let _ = self.local.set(set.clone());
        let mut last = format!("{}-0", (self.now_ms() - self.retention_ms).max(0));
        // Lag is measured only for entries written since this follower started: the backlog a
        // starting node reads is old by design.
        let started = self.now_ms();
        set.write()
            .unwrap_or_else(|e| e.into_inner())
            .expect(&self.region);
        loop {
            let mut conn = match self.follower_connection().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "revocation feed: cannot connect; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            loop {
                let reply: redis::RedisResult<Option<StreamReadReply>> = redis::cmd("XREAD")
                    .arg("COUNT")
                    .arg(READ_BATCH)
                    .arg("BLOCK")
                    .arg(BLOCK_MS)
                    .arg("STREAMS")
                    .arg(&self.key)
                    .arg(&last)
                    .query_async(&mut conn)
                    .await;
                let reply = match reply {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, "revocation feed: read failed; reconnecting");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        break;
                    }
                };
                let now = self.now_ms();
                let entries: Vec<FeedEntry> = reply
                    .into_iter()
                    .flat_map(|r| r.keys)
                    .flat_map(|k| k.ids)
                    .filter_map(|id| decode(&self.region, &id))
                    .map(|e| self.with_region(e))
                    .collect();
                {
                    let mut set = set.write().unwrap_or_else(|e| e.into_inner());
                    // Fresh only once caught up: a full batch means more is waiting (a node
                    // that starts reads the whole window before it counts as fresh).
                    if entries.len() < READ_BATCH {
                        set.heard(&self.region, now);
                    }
                    for e in &entries {
                        set.apply_from(&self.region, &e.entry, now);
                        if let Some(written) = entry_millis(&e.id).filter(|w| *w >= started) {
                            crate::meters::feed_lag(&self.region, now - written);
                        }
                        last = e.id.clone();
                    }
                    set.prune(now);
                }
                for entry in entries {
                    let _ = tx.send(entry);
                }
            }
        }
    }

    /// Moves a tag's outbox entries to the stream: at least once (a crash between `XADD` and
    /// `LREM` only duplicates entries, which followers apply idempotently).
    pub async fn drain(&self, outbox: &str) -> Result<usize, StoreError> {
        let mut conn = self.conn.clone();
        let entries: Vec<String> = redis::cmd("LRANGE")
            .arg(outbox)
            .arg(0)
            .arg(99)
            .query_async(&mut conn)
            .await
            .map_err(store_error)?;
        for raw in &entries {
            match serde_json::from_str::<Revocation>(raw) {
                Ok(entry) => {
                    if let Some(set) = self.local.get() {
                        let local = self.with_region(FeedEntry {
                            region: self.region.clone(),
                            id: String::new(),
                            entry: entry.clone(),
                        });
                        set.write().unwrap_or_else(|e| e.into_inner()).apply_from(
                            &self.region,
                            &local.entry,
                            self.now_ms(),
                        );
                    }
                    self.publish(&entry).await?;
                }
                Err(e) => tracing::error!(error = %e, "unreadable outbox entry dropped"),
            }
            let _: i64 = redis::cmd("LREM")
                .arg(outbox)
                .arg(1)
                .arg(raw)
                .query_async(&mut conn)
                .await
                .map_err(store_error)?;
        }
        Ok(entries.len())
    }

    /// Finds outboxes nobody drained (a node died between a script and its flush, or Redis
    /// blinked) and drains them, in the background, never on a request.
    ///
    /// An outbox is named by its user's hash tag, 4 hex digits, so there are at most 65,536
    /// of them, wherever they live (one Redis, or the slots of every primary of a cluster): the
    /// sweep asks whether each exists (`EXISTS`: a stray key of another type cannot make the
    /// question fail for the others; 256 at a time on a connection of its own: pipelined
    /// on one Redis, each to its slot's primary on a cluster) instead of walking the keyspace with `SCAN`. Its cost is the same
    /// with 2,000 sessions or 10 million: a full pass takes `every`, in slices of one second.
    /// (`SCAN` every 5 s cost one Redis 1,400 calls per pass at 1M sessions, on every node, and
    /// showed as a slower check and listing in `scripts/bench-scale`.)
    pub async fn sweep(self, every: Duration) {
        let per_second = TAGS.div_ceil(every.as_secs().max(1) as u32);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Its own connection: a slice must never queue ahead of requests on the shared one.
        let mut own: Option<Conn> = None;
        let mut next = 0;
        loop {
            tick.tick().await;
            // This node's own flushes that failed go again every second.
            let unflushed: Vec<String> = self.unflushed().iter().cloned().collect();
            for outbox in unflushed {
                if self.drain(&outbox).await.is_ok() {
                    self.unflushed().remove(&outbox);
                }
            }
            if own.is_none() {
                own = self.redis.dedicated(Duration::ZERO).await.ok();
            }
            let Some(conn) = own.as_mut() else { continue };
            let end = (next + per_second).min(TAGS);
            match self.sweep_tags(conn, next..end).await {
                Ok(()) => next = if end == TAGS { 0 } else { end },
                Err(e) => {
                    tracing::warn!(error = %e, "outbox sweep failed");
                    own = None;
                }
            }
        }
    }

    async fn sweep_tags(
        &self,
        conn: &mut Conn,
        tags: std::ops::Range<u32>,
    ) -> redis::RedisResult<()> {
        let all: Vec<u32> = tags.collect();
        for chunk in all.chunks(256) {
            let outboxes: Vec<String> = chunk
                .iter()
                .map(|t| self.keys.outbox(&format!("{t:04x}")))
                .collect();
            let found: Vec<i64> = if let Link::Single(_) = conn.link() {
                let mut pipe = redis::pipe();
                for outbox in &outboxes {
                    pipe.cmd("EXISTS").arg(outbox);
                }
                pipe.query_async(conn).await?
            } else {
                // One `redis::pipe` would go whole to the primary of its first key; single
                // commands go each to its slot's primary (the connection multiplexes them).
                let asked = outboxes.iter().map(|outbox| {
                    let mut conn = conn.clone();
                    async move {
                        redis::cmd("EXISTS")
                            .arg(outbox)
                            .query_async::<i64>(&mut conn)
                            .await
                    }
                });
                futures_util::future::join_all(asked)
                    .await
                    .into_iter()
                    .collect::<Result<_, _>>()?
            };
            for (outbox, _) in outboxes.iter().zip(found).filter(|(_, n)| *n > 0) {
                match self.drain(outbox).await {
                    Ok(n) if n > 0 => {
                        tracing::info!(moved = n, "revocations moved from an outbox by the sweep")
                    }
                    Ok(_) => {}
                    // One bad key (another type, unreadable) must not stop the sweep.
                    Err(e) => tracing::warn!(outbox = %outbox, error = %e, "outbox not drained"),
                }
            }
        }
        Ok(())
    }

    /// Writes a heartbeat every second so followers can measure staleness.
    pub async fn heartbeat(self) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            if let Err(e) = self
                .publish(&Revocation::Heartbeat { at: self.now_ms() })
                .await
            {
                tracing::debug!(error = %e, "revocation feed heartbeat failed");
            }
        }
    }
}

#[async_trait::async_trait]
impl crate::session::ports::RevocationSink for RedisFeed {
    async fn flush(&self, tag: &str) {
        let outbox = self.keys.outbox(tag);
        match self.drain(&outbox).await {
            Err(e) => {
                tracing::warn!(error = %e, "revocations stay in the outbox; this node retries every second");
                self.unflushed().insert(outbox);
            }
            // The revocation itself was confirmed by its script's `WAIT`; this one covers its
            // entry on the stream, so a replica promoted after the answer can tell every node.
            // Unconfirmed, the outbox is drained again every second: on a promoted replica the
            // entry is still in it.
            Ok(moved) if moved > 0 => {
                if let Some(confirm) = &self.confirm {
                    if confirm.confirm(&self.key).await.is_err() {
                        self.unflushed().insert(outbox);
                    }
                }
            }
            Ok(_) => {}
        }
    }

    fn flush_soon(&self, tag: &str) {
        self.unflushed().insert(self.keys.outbox(tag));
    }
}

fn decode(region: &str, entry: &redis::streams::StreamId) -> Option<FeedEntry> {
    let json: String = entry.get("e")?;
    Some(FeedEntry {
        region: region.to_owned(),
        id: entry.id.clone(),
        entry: serde_json::from_str(&json).ok()?,
    })
}

/// The milliseconds part of a stream entry id (`<ms>-<seq>`): when Redis appended it.
fn entry_millis(id: &str) -> Option<i64> {
    id.split_once('-')?.0.parse().ok()
}
