//! Changes meant for a region that did not answer, kept durably until it answers again.
//!
//! A revoke-all, an erasure, a users-file change or a limit eviction acts in every region. When
//! a region's Redis does not answer, the part meant for it is appended to
//! `tsr:pending:<region>` in the home region's Redis (so it survives this node), and its effect
//! on tokens is pushed at once on the home region's feed, which every node follows. A task on
//! every node delivers what its home region holds, oldest first, and removes an entry only
//! after the target region carried it out: nothing acknowledged is lost, and delivering twice
//! is harmless (every operation is idempotent in effect).
//!
//! A pushed effect lapses after the feed's retention (15 min by default). While a change still
//! waits, the delivering nodes push its effect again every half retention, with the version
//! bound of the moment it was parked: nodes cut off from the home region may still serve the
//! session from its own region and mint tokens for it, and those must stay refused anywhere
//! the feed is heard, however long the region stays away.

use super::connection::Conn;
use super::keys::KeyLayout;
use super::revocations::RedisFeed;
use super::store_error;
use crate::clock::SharedClock;
use crate::revocation::Revocation;
use crate::session::{Region, StoreError};
use redis::AsyncCommands;

/// One change waiting for its region.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum PendingOp {
    /// End every session of the user there and move its credential version.
    RevokeAll { user: String },
    /// Erase the user there.
    Erase { user: String },
    /// End one session (evicted by the limit across regions).
    Revoke { sid: String, user: String },
    /// Bring the user's users-file fingerprint there up to date (ending sessions of an old
    /// entry).
    Sync { user: String, fingerprint: String },
}

impl PendingOp {
    /// What the feed must refuse from now on, until the Redis that holds `regions` (one, or
    /// several sharing it) has carried the change out.
    fn immediate_effects(&self, regions: &[Region], now: i64, until: i64) -> Vec<Revocation> {
        match self {
            PendingOp::Revoke { sid, .. } => vec![Revocation::Session {
                sid: sid.clone(),
                until,
            }],
            PendingOp::RevokeAll { user }
            | PendingOp::Erase { user }
            | PendingOp::Sync { user, .. } => regions
                .iter()
                .map(|region| Revocation::User {
                    user: user.clone(),
                    // Versions are Redis milliseconds: every session there that exists now was
                    // stamped below this (up to the clock skew between the two Redis servers).
                    min_version: now.max(0) as u64,
                    until,
                    region: Some(region.as_str().to_owned()),
                })
                .collect(),
        }
    }
}

/// A change as kept in the list: the change, and when it was parked (ms; absent in entries
/// parked before it was recorded, whose effect is not pushed again).
#[derive(serde::Serialize, serde::Deserialize)]
struct Parked {
    #[serde(flatten)]
    op: PendingOp,
    #[serde(default, skip_serializing_if = "is_zero")]
    at: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// What one delivery round did for a target.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    pub delivered: usize,
    /// Changes still wait (the target, or the list's own Redis, did not answer).
    pub blocked: bool,
}

/// Parks changes in the home region's Redis.
#[derive(Clone)]
pub struct Pending {
    conn: Conn,
    keys: KeyLayout,
    feed: RedisFeed,
    clock: SharedClock,
    /// The home region's replicas confirm a parked change before it is acknowledged.
    confirm: Option<super::durable::Confirmer>,
}

impl Pending {
    pub fn new(conn: Conn, keys: KeyLayout, feed: RedisFeed, clock: SharedClock) -> Self {
        Self {
            conn,
            keys,
            feed,
            clock,
            confirm: None,
        }
    }

    pub fn with_confirmer(mut self, confirm: Option<super::durable::Confirmer>) -> Self {
        self.confirm = confirm;
        self
    }

    /// Keeps `op` for `target` (the Redis holding `regions`; durably, before answering) and
    /// pushes its effect on tokens. An error means nothing was kept: the caller must not
    /// acknowledge.
    pub async fn park(
        &self,
        target: &Region,
        regions: &[Region],
        op: PendingOp,
    ) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let parked = Parked {
            op: op.clone(),
            at: now,
        };
        let json = serde_json::to_string(&parked).map_err(|e| StoreError::Other(e.into()))?;
        let _: i64 = self
            .conn
            .clone()
            .rpush(self.keys.pending(target.as_str()), json)
            .await
            .map_err(store_error)?;
        // A parked revocation is what makes it acknowledged: durable like the revocation.
        if let Some(confirm) = &self.confirm {
            confirm.confirm(&self.keys.pending(target.as_str())).await?;
        }
        metrics::counter!("tessera_pending_parked_total", "region" => target.as_str().to_owned())
            .increment(1);
        tracing::warn!(region = %target, op = ?op_kind(&op), "region unreachable: change kept until it answers");
        self.push_effects(&op, regions, now).await;
        Ok(())
    }

    async fn push_effects(&self, op: &PendingOp, regions: &[Region], parked_at: i64) {
        let until = self.clock.now_ms() + self.feed.retention_ms();
        for effect in op.immediate_effects(regions, parked_at, until) {
            if let Err(e) = self.feed.publish(&effect).await {
                // Kept durably all the same; the delivery will push it from the region itself.
                tracing::warn!(error = %e, "cannot push a pending change's effect on tokens");
            }
        }
    }

    /// Pushes again the effect of every change still waiting for `target` (the Redis holding
    /// `regions`), so it outlives the feed's retention; see the module comment.
    pub async fn push_waiting_effects(&self, target: &Region, regions: &[Region]) -> usize {
        let waiting: Vec<String> = match self
            .conn
            .clone()
            .lrange(self.keys.pending(target.as_str()), 0, 9_999)
            .await
        {
            Ok(w) => w,
            Err(_) => return 0,
        };
        let mut pushed = 0;
        for raw in waiting {
            match serde_json::from_str::<Parked>(&raw) {
                Ok(parked) if parked.at > 0 => {
                    self.push_effects(&parked.op, regions, parked.at).await;
                    pushed += 1;
                }
                _ => {}
            }
        }
        pushed
    }

    /// The changes parked in another Redis (`conn`, pushed on `feed`): every node delivers
    /// what any region it reaches holds, so a change parked by a node that is now cut off from
    /// the target still arrives through any node that reaches both.
    pub fn kept_in(&self, conn: Conn, feed: RedisFeed) -> Self {
        Self {
            conn,
            feed,
            ..self.clone()
        }
    }

    /// Now, on the clock parked changes are stamped with.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// How many changes wait for `target`.
    pub async fn waiting(&self, target: &Region) -> Result<usize, StoreError> {
        self.conn
            .clone()
            .llen(self.keys.pending(target.as_str()))
            .await
            .map_err(store_error)
    }

    /// Delivers what waits for `target`, oldest first, with `apply`; stops at the first
    /// failure (the region is still away) and tries again on the next call.
    pub async fn deliver<F, Fut>(&self, target: &Region, apply: F) -> Delivery
    where
        F: Fn(PendingOp) -> Fut,
        Fut: std::future::Future<Output = Result<(), StoreError>>,
    {
        let key = self.keys.pending(target.as_str());
        let mut conn = self.conn.clone();
        let mut delivered = 0;
        loop {
            let blocked = |delivered| Delivery {
                delivered,
                blocked: true,
            };
            let head: Option<String> = match conn.lindex(&key, 0).await {
                Ok(h) => h,
                Err(_) => return blocked(delivered),
            };
            let Some(raw) = head else {
                return Delivery {
                    delivered,
                    blocked: false,
                };
            };
            match serde_json::from_str::<Parked>(&raw) {
                Ok(Parked { op, .. }) => {
                    if let Err(e) = apply(op).await {
                        tracing::debug!(region = %target, error = %e, "pending change not delivered yet");
                        return blocked(delivered);
                    }
                }
                Err(e) => tracing::error!(error = %e, "unreadable pending change dropped"),
            }
            // Only the entry just carried out (another node may have delivered it already).
            let removed: redis::RedisResult<i64> = conn.lrem(&key, 1, &raw).await;
            if removed.is_err() {
                return blocked(delivered);
            }
            delivered += 1;
            metrics::counter!("tessera_pending_delivered_total", "region" => target.as_str().to_owned())
                .increment(1);
        }
    }
}

fn op_kind(op: &PendingOp) -> &'static str {
    match op {
        PendingOp::RevokeAll { .. } => "revoke_all",
        PendingOp::Erase { .. } => "erase",
        PendingOp::Revoke { .. } => "revoke",
        PendingOp::Sync { .. } => "sync",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parked_change_refuses_tokens_of_its_region_at_once() {
        let (ap, us) = (Region::parse("ap").unwrap(), Region::parse("us").unwrap());
        let all = PendingOp::RevokeAll { user: "u".into() };
        let user_entry = |region: &str| Revocation::User {
            user: "u".into(),
            min_version: 1_000,
            until: 9_000,
            region: Some(region.into()),
        };
        // Every region the away Redis holds, not only the one it is named after.
        assert_eq!(
            all.immediate_effects(&[ap, us.clone()], 1_000, 9_000),
            vec![user_entry("ap"), user_entry("us")]
        );
        let one = PendingOp::Revoke {
            sid: "v1_us_abcd_x".into(),
            user: "u".into(),
        };
        assert_eq!(
            one.immediate_effects(&[us], 1_000, 9_000),
            vec![Revocation::Session {
                sid: "v1_us_abcd_x".into(),
                until: 9_000
            }]
        );
        let json = serde_json::to_string(&all).unwrap();
        assert_eq!(json, r#"{"op":"revoke_all","user":"u"}"#);
    }

    #[test]
    fn entries_keep_when_they_were_parked_and_older_entries_still_read() {
        let op = PendingOp::Sync {
            user: "u".into(),
            fingerprint: "f".into(),
        };
        let json = serde_json::to_string(&Parked {
            op: op.clone(),
            at: 1_234,
        })
        .unwrap();
        assert_eq!(
            json,
            r#"{"op":"sync","user":"u","fingerprint":"f","at":1234}"#
        );
        let back: Parked = serde_json::from_str(&json).unwrap();
        assert_eq!((back.op, back.at), (op.clone(), 1_234));
        let old: Parked =
            serde_json::from_str(r#"{"op":"sync","user":"u","fingerprint":"f"}"#).unwrap();
        assert_eq!((old.op, old.at), (op, 0));
    }
}
