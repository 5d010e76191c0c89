//! The signing keys a node shares with every other node: one place that rotates the ring (for
//! the admin API and the schedule; the CLI calls the same `store::keyring::rotate`), keeps it
//! whole after a data loss, and installs whatever ring Redis holds into the issuer.
//!
//! Every region's Redis holds a copy of the ring. A rotation is a compare-and-set on the home
//! region's copy; `keep_whole` merges every region's copy into the held ring and writes the
//! union back to each copy that lacks a key, every 2 s, so a new key reaches every region
//! within two passes, long before it signs (it is published `jwks_cache_secs` ahead). A region
//! that does not answer keeps its last copy and catches up when it answers; minting never
//! waits for any region.

use crate::clock::SharedClock;
use crate::store::keyring::{self, Reconciled, RotationConflict, RotationPolicy};
use crate::store::KeyLayout;
use crate::token::cache::VerifiedCache;
use crate::token::{ActiveKeys, Issuer, Kek, KeyLookup, StoredRing};
use std::sync::{Arc, Mutex};

/// Why a rotation did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RotateError {
    /// Another node rotated at the same moment: retry.
    #[error("another rotation happened at the same time; retry")]
    Conflict,
    #[error("the key ring could not be rotated: {0:#}")]
    Unavailable(#[source] anyhow::Error),
}

pub struct SigningKeys {
    /// Every region's out-of-band connections, the home region first.
    pools: Vec<(crate::session::Region, crate::store::connection::Pool)>,
    layout: KeyLayout,
    kek: Arc<Kek>,
    issuer: Issuer,
    /// Verified tokens: those of keys that leave the ring are forgotten.
    cache: Arc<VerifiedCache>,
    /// The sealed ring this node signs from (put back into Redis if Redis loses it), and when
    /// its keys were last installed.
    held: Mutex<(StoredRing, i64)>,
    policy: RotationPolicy,
    clock: SharedClock,
}

impl SigningKeys {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        pools: Vec<(crate::session::Region, crate::store::connection::Pool)>,
        layout: KeyLayout,
        kek: Arc<Kek>,
        issuer: Issuer,
        cache: Arc<VerifiedCache>,
        held: StoredRing,
        policy: RotationPolicy,
        clock: SharedClock,
    ) -> Self {
        assert!(!pools.is_empty(), "at least the home region");
        Self {
            pools,
            layout,
            kek,
            issuer,
            cache,
            held: Mutex::new((held, i64::MIN)),
            policy,
            clock,
        }
    }

    /// A new key, published now and signing after the JWKS cache lifetime; installed here at
    /// once (other nodes pick it up within `KEYRING_EVERY`).
    pub async fn rotate(&self) -> Result<StoredRing, RotateError> {
        let now = self.clock.now_ms();
        let home = &self.pools[0].1;
        let ring = keyring::rotate(home, &self.layout, &self.kek, &self.policy, now)
            .await
            .map_err(|e| {
                if e.is::<RotationConflict>() {
                    RotateError::Conflict
                } else {
                    RotateError::Unavailable(e)
                }
            })?;
        self.install(&ring, now).map_err(RotateError::Unavailable)?;
        Ok(ring)
    }

    /// Rotates when the newest key is older than `days` (every node may try; the
    /// compare-and-set lets exactly one win).
    pub async fn rotate_if_due(&self, days: u32) {
        let newest = self.held().newest();
        if self.clock.now_ms() - newest < i64::from(days) * 86_400_000 {
            return;
        }
        match self.rotate().await {
            Ok(ring) => tracing::info!(
                kid = %ring.keys.last().map(|k| k.kid.as_str()).unwrap_or(""),
                "scheduled key rotation"
            ),
            Err(e) => tracing::info!(error = %e, "scheduled key rotation skipped"),
        }
    }

    /// One step of keeping the ring whole: picks up rotations made elsewhere, puts the ring
    /// back when Redis lost it, merges this node's keys into a ring another node created
    /// meanwhile. A missing or unreadable ring never stops minting with the keys held.
    pub async fn keep_whole(&self) {
        let now = self.clock.now_ms();
        let mut ring = self.held();
        for (i, (region, pool)) in self.pools.iter().enumerate() {
            let reconciled = match keyring::reconcile(pool, &self.layout, &ring, now).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(region = %region, error = %format!("{e:#}"), "cannot reconcile the key ring");
                    continue;
                }
            };
            match (&reconciled, i) {
                (Reconciled::Restored(_), 0) => tracing::error!(
                    "the key ring was missing from Redis (data lost?); restored this node's copy"
                ),
                (Reconciled::Merged(_), 0) => tracing::error!(
                    "another node created a new key ring after a data loss; merged this node's keys into it"
                ),
                (Reconciled::Restored(_) | Reconciled::Merged(_), _) => {
                    tracing::info!(region = %region, "key ring copied to another region")
                }
                (Reconciled::Current(_), _) => {}
            }
            ring = reconciled.ring().clone();
        }
        // Opening the keys and flushing the token cache every 2 s for nothing would be waste:
        // install only when the ring changed or its schedule moved since the last install.
        let (held, installed_at) = self.held.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let ring = &ring;
        if *ring == held && !ring.schedule_moved(installed_at, now) {
            return;
        }
        if let Err(e) = self.install(ring, now) {
            tracing::error!(error = %format!("{e:#}"), "cannot open the key ring; keeping the current keys");
        }
    }

    /// Signs with and publishes `ring` from now on.
    fn install(&self, ring: &StoredRing, now: i64) -> anyhow::Result<()> {
        let keys = ActiveKeys::from_ring(&ring.open(&self.kek)?, now)?;
        // Tokens of keys that left the ring must be verified again (and fail).
        self.cache.retain_kids(|kid| keys.key(kid).is_some());
        self.issuer.replace_keys(keys);
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = (ring.clone(), now);
        Ok(())
    }

    fn held(&self) -> StoredRing {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }
}
