//! Keeps a node's [`NearCache`] coherent with Redis (server-assisted client-side caching).
//!
//! One RESP3 connection per primary runs `CLIENT TRACKING ON BCAST PREFIX <session prefix>`:
//! Redis then pushes the name of every session key that is written, deleted, expired or
//! evicted on it, by any client. Broadcast mode keeps no per-key bookkeeping in Redis and lets
//! the node read on any connection; the cost is that every node hears of every session write.
//!
//! A hit is served only after a `PING` on every such connection of the cache's epoch, sent after
//! the hit began, has been answered (`store::fence`): the pushes before it have been applied.
//!
//! The cache is trusted only while every such connection is up with tracking on. A dropped
//! connection (pushed at once by the client library), a heartbeat that fails, or a change in
//! a cluster's primaries flushes it before it is trusted again.

use super::connection::RedisConnections;
use super::near_cache::NearCache;
use redis::{PushInfo, PushKind, Value};
use std::time::Duration;

/// How often each tracking connection is pinged (a silent peer is found within about this
/// plus the command timeout) and a cluster's primaries are read again.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// Keeps one cache coherent with one region's Redis.
pub struct Tracker {
    cache: NearCache,
    redis: RedisConnections,
    /// Every session key starts with it (`tsr:s:`).
    prefix: String,
    timeout: Duration,
}

impl Tracker {
    pub fn new(
        cache: NearCache,
        redis: RedisConnections,
        prefix: String,
        timeout: Duration,
    ) -> Self {
        Self {
            cache,
            redis,
            prefix,
            timeout,
        }
    }

    /// Connects, trusts the cache, and starts over (flushed) whenever tracking may have
    /// missed a change. Runs forever.
    pub async fn run(self) {
        // The fence's rounds run here, on this runtime, whichever worker waits on them.
        tokio::spawn(self.cache.fence().clone().run());
        let mut pause = Duration::from_millis(100);
        loop {
            let epoch = self.cache.distrust();
            match self.connect(epoch).await {
                Ok((conns, nodes)) => {
                    if self.cache.trust(epoch) {
                        self.cache.fence().arm(epoch, conns.clone(), self.timeout);
                        tracing::info!(primaries = nodes.len(), "near cache: tracking on");
                        pause = Duration::from_millis(100);
                    }
                    let why = self.watch(epoch, conns, &nodes).await;
                    self.cache.fence().disarm();
                    tracing::warn!(
                        reason = why,
                        "near cache flushed; reconnecting its tracking"
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "near cache: cannot start tracking; the cache stays off");
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    async fn connect(
        &self,
        epoch: u64,
    ) -> anyhow::Result<(Vec<redis::aio::MultiplexedConnection>, Vec<String>)> {
        let nodes = self.redis.tracked_nodes().await?;
        let mut conns = Vec::with_capacity(nodes.len());
        for url in &nodes {
            let cache = self.cache.clone();
            let push = move |info: PushInfo| -> Result<(), ()> {
                apply(&cache, epoch, info);
                Ok(())
            };
            let mut conn = self.redis.push_connection(url, push, self.timeout).await?;
            redis::cmd("CLIENT")
                .arg("TRACKING")
                .arg("ON")
                .arg("BCAST")
                .arg("PREFIX")
                .arg(&self.prefix)
                .query_async::<()>(&mut conn)
                .await
                .map_err(|e| anyhow::anyhow!("CLIENT TRACKING failed: {e}"))?;
            conns.push(conn);
        }
        // A primary that appeared while the connections were being opened is not heard yet.
        if self.redis.is_cluster() && self.redis.tracked_nodes().await? != nodes {
            anyhow::bail!("the cluster's primaries changed while tracking started");
        }
        Ok((conns, nodes))
    }

    /// Returns (why) once the cache can no longer be trusted.
    async fn watch(
        &self,
        epoch: u64,
        mut conns: Vec<redis::aio::MultiplexedConnection>,
        nodes: &[String],
    ) -> &'static str {
        loop {
            tokio::time::sleep(HEARTBEAT).await;
            if self.cache.epoch() != epoch {
                return "a tracking connection dropped";
            }
            for conn in &mut conns {
                let cmd = redis::cmd("PING");
                let ping = cmd.query_async::<String>(conn);
                if !matches!(tokio::time::timeout(self.timeout, ping).await, Ok(Ok(_))) {
                    self.cache.lost(epoch);
                    return "a tracking connection stopped answering";
                }
            }
            if self.redis.is_cluster() {
                match self.redis.tracked_nodes().await {
                    Ok(now) if now == nodes => {}
                    Ok(_) => {
                        self.cache.lost(epoch);
                        return "the cluster's primaries changed";
                    }
                    Err(_) => {
                        self.cache.lost(epoch);
                        return "the cluster's primaries could not be read";
                    }
                }
            }
        }
    }
}

/// One push message of a tracking connection of `epoch`.
fn apply(cache: &NearCache, epoch: u64, info: PushInfo) {
    match info.kind {
        PushKind::Invalidate => match info.data.first() {
            Some(Value::Array(keys)) => {
                for key in keys {
                    if let Value::BulkString(key) = key {
                        cache.invalidate(key);
                    }
                }
            }
            // FLUSHALL / FLUSHDB: every key changed.
            _ => cache.clear(),
        },
        PushKind::Disconnection => cache.lost(epoch),
        _ => {}
    }
}
