//! The shared key ring in Redis: created once with `SET NX`, so nodes starting together agree.

use super::keys::KeyLayout;
use crate::token::{Kek, SigningAlg, StoredRing};
use anyhow::Context;
use redis::AsyncCommands;

/// One pooled connection for the key ring.
async fn connect(
    pool: &crate::store::connection::Pool,
) -> anyhow::Result<crate::store::connection::Pooled> {
    pool.get()
        .await
        .context("no Redis connection for the key ring")
}

/// Loads the ring, creating it if no node has yet. Returns the ring and whether we created it.
pub async fn load_or_create(
    pool: &crate::store::connection::Pool,
    keys: &KeyLayout,
    kek: &Kek,
    alg: SigningAlg,
    now: i64,
) -> anyhow::Result<(StoredRing, bool)> {
    let mut conn = connect(pool).await?;
    let key = keys.keyring();
    if let Some(ring) = load(&mut conn, &key).await? {
        return Ok((ring, false));
    }
    let fresh = StoredRing::first(alg, kek, now)?;
    let created: bool = redis::cmd("SET")
        .arg(&key)
        .arg(serde_json::to_string(&fresh)?)
        .arg("NX")
        .query_async::<Option<String>>(&mut conn)
        .await
        .context("cannot store the key ring")?
        .is_some();
    if created {
        return Ok((fresh, true));
    }
    // Another node won the race: use its ring.
    let ring = load(&mut conn, &key)
        .await?
        .context("the key ring vanished right after another node created it")?;
    Ok((ring, false))
}

/// Another node changed the ring while this one rotated it: retry.
#[derive(Debug, thiserror::Error)]
#[error("the key ring changed during rotation (another node rotated); try again")]
pub struct RotationConflict;

/// How a rotation schedules its keys (see `StoredRing::rotated`).
#[derive(Clone, Copy, Debug)]
pub struct RotationPolicy {
    pub alg: SigningAlg,
    /// The new key signs this long after it is published (the JWKS cache lifetime).
    pub publish_delay_ms: i64,
    /// Older keys retire this long after the new one starts signing (longest token + leeway).
    pub retire_after_ms: i64,
}

/// The one rotation routine (CLI, admin API, schedule): rotates the ring with a
/// compare-and-set, so two nodes rotating at once cannot overwrite each other; the loser gets
/// `RotationConflict`.
pub async fn rotate(
    pool: &crate::store::connection::Pool,
    keys: &KeyLayout,
    kek: &Kek,
    policy: &RotationPolicy,
    now: i64,
) -> anyhow::Result<StoredRing> {
    let mut conn = connect(pool).await?;
    let key = keys.keyring();
    let raw: Option<String> = conn.get(&key).await.context("cannot read the key ring")?;
    let raw = raw.context("there is no key ring to rotate yet: start a node first")?;
    let current: StoredRing =
        serde_json::from_str(&raw).context("the key ring in Redis is not valid JSON")?;
    current.open(kek)?; // refuse to rotate a ring this KEK cannot read
    let next = current.rotated(
        policy.alg,
        kek,
        now,
        policy.publish_delay_ms,
        policy.retire_after_ms,
    )?;
    if !compare_and_set(&mut conn, &key, &raw, &serde_json::to_string(&next)?).await? {
        return Err(RotationConflict.into());
    }
    Ok(next)
}

/// What `reconcile` found and did.
#[derive(Debug)]
pub enum Reconciled {
    /// Redis holds every live key we hold (and maybe more, e.g. after a rotation elsewhere).
    Current(StoredRing),
    /// Redis had lost the ring; ours is back.
    Restored(StoredRing),
    /// Another node made a new ring meanwhile; ours are merged into it.
    Merged(StoredRing),
}

impl Reconciled {
    pub fn ring(&self) -> &StoredRing {
        match self {
            Reconciled::Current(r) | Reconciled::Restored(r) | Reconciled::Merged(r) => r,
        }
    }
}

/// Makes sure the ring in Redis holds every live key this node holds, and returns it. When
/// Redis lost the ring (restart without persistence) the held copy goes back with `SET NX`;
/// when another node created a fresh ring first, the held keys are merged in (compare-and-set),
/// so every node publishes every key any node signs with. Never deletes a key.
pub async fn reconcile(
    pool: &crate::store::connection::Pool,
    keys: &KeyLayout,
    held: &StoredRing,
    now: i64,
) -> anyhow::Result<Reconciled> {
    let mut conn = connect(pool).await?;
    let key = keys.keyring();
    for _ in 0..5 {
        let raw: Option<String> = conn.get(&key).await.context("cannot read the key ring")?;
        let Some(raw) = raw else {
            let restored: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(serde_json::to_string(held)?)
                .arg("NX")
                .query_async(&mut conn)
                .await
                .context("cannot restore the key ring")?;
            if restored.is_some() {
                return Ok(Reconciled::Restored(held.clone()));
            }
            continue;
        };
        let current: StoredRing =
            serde_json::from_str(&raw).context("the key ring in Redis is not valid JSON")?;
        let Some(merged) = current.merged_with(held, now) else {
            return Ok(Reconciled::Current(current));
        };
        if compare_and_set(&mut conn, &key, &raw, &serde_json::to_string(&merged)?).await? {
            return Ok(Reconciled::Merged(merged));
        }
    }
    anyhow::bail!("the key ring kept changing while it was being reconciled")
}

async fn compare_and_set(
    conn: &mut crate::store::connection::Pooled,
    key: &str,
    expected: &str,
    next: &str,
) -> anyhow::Result<bool> {
    let swapped: i64 = redis::Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 end return 0",
    )
    .key(key)
    .arg(expected)
    .arg(next)
    .invoke_async(conn)
    .await
    .context("cannot store the key ring")?;
    Ok(swapped == 1)
}

/// Makes `pool`'s copy of the ring equal to `ring` (another region's copy, kept for nodes that
/// start while the ring's own region is away). True when it had to be written.
pub async fn copy_to(
    pool: &crate::store::connection::Pool,
    keys: &KeyLayout,
    ring: &StoredRing,
) -> anyhow::Result<bool> {
    let mut conn = connect(pool).await?;
    let json = serde_json::to_string(ring)?;
    let current: Option<String> = conn
        .get(keys.keyring())
        .await
        .context("cannot read the key ring copy")?;
    if current.as_deref() == Some(json.as_str()) {
        return Ok(false);
    }
    let _: () = conn
        .set(keys.keyring(), json)
        .await
        .context("cannot write the key ring copy")?;
    Ok(true)
}

/// Puts `ring` back where the ring is missing (never over one that exists). True when it
/// was written.
pub async fn restore(
    pool: &crate::store::connection::Pool,
    keys: &KeyLayout,
    ring: &StoredRing,
) -> anyhow::Result<bool> {
    let mut conn = connect(pool).await?;
    let written: Option<String> = redis::cmd("SET")
        .arg(keys.keyring())
        .arg(serde_json::to_string(ring)?)
        .arg("NX")
        .query_async(&mut conn)
        .await
        .context("cannot restore the key ring")?;
    Ok(written.is_some())
}

/// Reads the ring as it is now (for periodic refresh after a rotation).
pub async fn load_current(
    pool: &crate::store::connection::Pool,
    keys: &KeyLayout,
) -> anyhow::Result<Option<StoredRing>> {
    let mut conn = connect(pool).await?;
    load(&mut conn, &keys.keyring()).await
}

async fn load(
    conn: &mut crate::store::connection::Pooled,
    key: &str,
) -> anyhow::Result<Option<StoredRing>> {
    let raw: Option<String> = conn.get(key).await.context("cannot read the key ring")?;
    raw.map(|r| serde_json::from_str(&r).context("the key ring in Redis is not valid JSON"))
        .transpose()
}
