//! The signing keys a node shares with every other node: one place that rotates the ring (for
//! the admin API and the schedule; the CLI calls the same `store::keyring::rotate`), keeps it
//! whole after a data loss, and installs whatever ring Redis holds into the issuer.
//!
//! With several regions, the ring lives in the *ring region* (the first region by name): every
//! rotation is a compare-and-set there, and every node installs what it holds. Every other
//! region keeps a copy, which `keep_whole` overwrites (never merges) every 2 s when it differs,
//! so a node can start from its own region's copy while the ring region is away. A rotation
//! reaches every node within 2 s, long before its key signs (it is published `jwks_cache_secs`
//! ahead). Ring region away: rotation answers 503, minting goes on with the keys held.

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
    /// Every region's out-of-band connections, the ring region first.
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

    /// Orders `pools` (one per Redis) with the ring region first: the first by name.
    pub fn ring_region_first(
        mut pools: Vec<(crate::session::Region, crate::store::connection::Pool)>,
    ) -> Vec<(crate::session::Region, crate::store::connection::Pool)> {
        pools.sort_by(|a, b| a.0.cmp(&b.0));
        pools
    }

    /// A new key, published now and signing after the JWKS cache lifetime; installed here at
    /// once (other nodes pick it up within `KEYRING_EVERY`).
    pub async fn rotate(&self) -> Result<StoredRing, RotateError> {
        let now = self.clock.now_ms();
        let ring_region = &self.pools[0].1;
        let ring = keyring::rotate(ring_region, &self.layout, &self.kek, &self.policy, now)
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
        let held = self.held();
        let (ring_region, pool) = &self.pools[0];
        let reconciled = match keyring::reconcile(pool, &self.layout, &held, now).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(region = %ring_region, error = %format!("{e:#}"), "cannot reconcile the key ring");
                self.follow_a_copy(&held, now).await;
                return;
            }
        };
        match &reconciled {
            Reconciled::Restored(_) => tracing::error!(
                "the key ring was missing from Redis (data lost?); restored this node's copy"
            ),
            Reconciled::Merged(_) => tracing::error!(
                "another node created a new key ring after a data loss; merged this node's keys into it"
            ),
            Reconciled::Current(_) => {}
        }
        let ring = reconciled.ring();
        for (region, copy) in &self.pools[1..] {
            match keyring::copy_to(copy, &self.layout, ring).await {
                Ok(true) => tracing::info!(region = %region, "key ring copied to the region"),
                Ok(false) => {}
                Err(e) => {
                    tracing::debug!(region = %region, error = %format!("{e:#}"), "key ring copy not updated")
                }
            }
        }
        // Opening the keys and flushing the token cache every 2 s for nothing would be waste:
        // install only when the ring changed or its schedule moved since the last install.
        let (held, installed_at) = self.held.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if *ring == held && !ring.schedule_moved(installed_at, now) {
            return;
        }
        if let Err(e) = self.install(ring, now) {
            tracing::error!(error = %format!("{e:#}"), "cannot open the key ring; keeping the current keys");
        }
    }

    /// While the ring region does not answer *this* node, nodes that reach it still rotate and
    /// copy the ring to every region. A node cut off from the ring region alone would sign
    /// with its old key after that key retires everywhere else (and publish a JWKS without the
    /// new one), so it installs a copy that holds a newer key than its own ring.
    async fn follow_a_copy(&self, held: &StoredRing, now: i64) {
        for (region, copy) in &self.pools[1..] {
            let Ok(Some(ring)) = keyring::load_current(copy, &self.layout).await else {
                continue;
            };
            if ring.newest() <= held.newest() {
                continue;
            }
            if let Err(e) = ring.usable(&self.kek, now) {
                tracing::error!(copy = %region, error = %format!("{e:#}"), "the region's copy of the key ring is not usable; not followed");
                continue;
            }
            let ring = ring.merged_with(held, now).unwrap_or(ring);
            match self.install(&ring, now) {
                Ok(()) => {
                    tracing::warn!(copy = %region, "the ring region does not answer; installed the newer ring copied to this region");
                    return;
                }
                // A copy sealed under another KEK (or written by someone else) never signs here.
                Err(e) => {
                    tracing::error!(copy = %region, error = %format!("{e:#}"), "cannot open the region's copy of the key ring")
                }
            }
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
