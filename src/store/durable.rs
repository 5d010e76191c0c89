//! Acknowledged means durable: where a region's Redis has replicas, a revocation is answered
//! only after `WAIT` saw it reach `redis_wait_replicas` of them.
//!
//! `WAIT` blocks the connection it is sent on and counts only that connection's own writes, so
//! it runs on a side connection of its own (never the request path's multiplexed one), after a
//! tiny write there: the barrier `<prefix>:w:{<slot>}`. Replication is one ordered stream per
//! primary, so once a replica has the barrier it has every write the primary made before it,
//! the revocation included; and the barrier shares the revocation's hash slot, so in a cluster
//! both are on the same primary, where `WAIT` is sent.

use super::connection::{Conn, Link};
use crate::session::StoreError;
use anyhow::anyhow;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use std::time::Duration;

/// Waits for replicas to confirm what this node wrote.
#[derive(Clone)]
pub struct Confirmer {
    conn: Conn,
    replicas: u32,
    timeout: Duration,
    prefix: String,
    /// Callers that arrive while a round runs share the next round (group commit): one barrier
    /// and one `WAIT` per round per primary, however many revocations (or made-up credentials
    /// that anyone can send) are waiting.
    groups:
        std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<Group>>>>,
}

/// The rounds of one primary (one hash slot's part on a cluster; everything on one server).
#[derive(Default)]
struct Group {
    /// One round at a time.
    turn: tokio::sync::Mutex<()>,
    /// Rounds started so far.
    started: std::sync::atomic::AtomicU64,
    /// The last finished round (0: none yet) and its outcome (`Some(why)`: not confirmed).
    last: std::sync::Mutex<(u64, Option<String>)>,
}

impl Confirmer {
    /// `conn` must be a connection no request shares (see the module comment), whose response
    /// timeout exceeds `timeout`.
    pub fn new(conn: Conn, replicas: u32, timeout: Duration, prefix: &str) -> Self {
        Self {
            conn,
            replicas,
            timeout,
            prefix: prefix.to_owned(),
            groups: Default::default(),
        }
    }

    fn group(&self, part: &str) -> std::sync::Arc<Group> {
        let part = match self.conn.link() {
            Link::Single(_) => "",
            _ => part,
        };
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(part.to_owned())
            .or_default()
            .clone()
    }

    /// Ok once `replicas` replicas hold everything written before this call to the primary
    /// that holds `key`; `Unavailable` (503: the caller retries, which is safe, since every
    /// revocation is idempotent and a retry confirms the first attempt's write too) otherwise.
    pub async fn confirm(&self, key: &str) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        let group = self.group(slot_part(key));
        // Any round that starts after this point has its barrier written after the caller's
        // writes, so it covers them.
        let ticket = group.started.load(SeqCst);
        let _turn = group.turn.lock().await;
        let last = group.last.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let failed = if last.0 > ticket {
            last.1
        } else {
            let round = group.started.fetch_add(1, SeqCst) + 1;
            let failed = self.round(key).await.err();
            *group.last.lock().unwrap_or_else(|e| e.into_inner()) = (round, failed.clone());
            failed
        };
        match failed {
            None => Ok(()),
            Some(why) => Err(StoreError::Unavailable(anyhow!(why))),
        }
    }

    /// One barrier and one `WAIT`.
    async fn round(&self, key: &str) -> Result<(), String> {
        let barrier = format!("{}:w:{{{}}}", self.prefix, slot_part(key));
        let mut conn = self.conn.clone();
        let () = redis::cmd("SET")
            .arg(&barrier)
            .arg(1)
            .arg("PX")
            .arg(60_000)
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        let mut wait = redis::cmd("WAIT");
        wait.arg(self.replicas)
            .arg(self.timeout.as_millis().max(1) as u64);
        let acked: i64 = match conn.link().clone() {
            // Only the primary of the barrier's slot holds it (the cluster client would ask
            // every primary and take the least).
            Link::Cluster(mut cluster, _) => {
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                    Route::with_key(barrier.as_bytes(), SlotAddr::Master),
                ));
                let value = cluster
                    .route_command(wait, routing)
                    .await
                    .map_err(|e| e.to_string())?;
                redis::from_redis_value(value).map_err(|e| e.to_string())?
            }
            _ => wait
                .query_async(&mut conn)
                .await
                .map_err(|e| e.to_string())?,
        };
        metrics::counter!("tessera_redis_wait_total", "confirmed" => (acked >= i64::from(self.replicas)).to_string()).increment(1);
        if acked >= i64::from(self.replicas) {
            return Ok(());
        }
        tracing::warn!(
            acked,
            wanted = self.replicas,
            "a revocation was not confirmed by enough replicas in time: answered 503"
        );
        Err(format!(
            "the change reached {acked} of {} replica(s) within {} ms",
            self.replicas,
            self.timeout.as_millis()
        ))
    }
}

/// What decides `key`'s hash slot: the content of its first non-empty `{…}`, else the whole
/// key (Redis Cluster's rule), so a barrier built on it lands in the same slot.
fn slot_part(key: &str) -> &str {
    if let Some(open) = key.find('{') {
        if let Some(len) = key[open + 1..].find('}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_barrier_shares_the_slot_of_the_key_it_confirms() {
        for key in ["tsr:s:{ab12}:eu.xyz", "tsr:pending:us", "a{b}{c}", "plain"] {
            let barrier = format!("tsr:w:{{{}}}", slot_part(key));
            assert_eq!(
                redis::cluster_routing::Slot::for_key(barrier.as_bytes()),
                redis::cluster_routing::Slot::for_key(key.as_bytes()),
                "{key} → {barrier}"
            );
        }
    }
}
