//! The shared key ring in Redis: created once with `SET NX`, so nodes starting together agree.

use super::keys::KeyLayout;
use crate::token::{Kek, SigningAlg, StoredRing};
use anyhow::Context;
use redis::AsyncCommands;

/// Loads the ring, creating it if no node has yet. Returns the ring and whether we created it.
pub async fn load_or_create(
    pool: &deadpool_redis::Pool,
    keys: &KeyLayout,
    kek: &Kek,
    alg: SigningAlg,
    now: i64,
) -> anyhow::Result<(StoredRing, bool)> {
    let mut conn = pool
        .get()
        .await
        .context("no Redis connection for the key ring")?;
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

/// Rotates the ring (see `StoredRing::rotated`) with a compare-and-set, so two nodes rotating
/// at once cannot overwrite each other; the loser reports the conflict.
pub async fn rotate(
    pool: &deadpool_redis::Pool,
    keys: &KeyLayout,
    kek: &Kek,
    alg: SigningAlg,
    now: i64,
    publish_delay_ms: i64,
    retire_after_ms: i64,
) -> anyhow::Result<StoredRing> {
    let mut conn = pool
        .get()
        .await
        .context("no Redis connection for the key ring")?;
    let key = keys.keyring();
    let raw: Option<String> = conn.get(&key).await.context("cannot read the key ring")?;
    let raw = raw.context("there is no key ring to rotate yet: start a node first")?;
    let current: StoredRing =
        serde_json::from_str(&raw).context("the key ring in Redis is not valid JSON")?;
    current.open(kek)?; // refuse to rotate a ring this KEK cannot read
    let next = current.rotated(alg, kek, now, publish_delay_ms, retire_after_ms)?;
    let swapped: i64 = redis::Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 end return 0",
    )
    .key(&key)
    .arg(&raw)
    .arg(serde_json::to_string(&next)?)
    .invoke_async(&mut conn)
    .await
    .context("cannot store the rotated key ring")?;
    anyhow::ensure!(
        swapped == 1,
        "the key ring changed during rotation (another node rotated); try again"
    );
    Ok(next)
}

/// `rotate` with the algorithm and delays the settings prescribe.
pub async fn rotate_as_configured(
    pool: &deadpool_redis::Pool,
    keys: &KeyLayout,
    kek: &Kek,
    settings: &crate::Settings,
    now: i64,
) -> anyhow::Result<StoredRing> {
    let (publish, retire) = settings.rotation_delays();
    rotate(pool, keys, kek, settings.signing(), now, publish, retire).await
}

/// Reads the ring as it is now (for periodic refresh after a rotation).
pub async fn load_current(
    pool: &deadpool_redis::Pool,
    keys: &KeyLayout,
) -> anyhow::Result<Option<StoredRing>> {
    let mut conn = pool
        .get()
        .await
        .context("no Redis connection for the key ring")?;
    load(&mut conn, &keys.keyring()).await
}

async fn load(
    conn: &mut deadpool_redis::Connection,
    key: &str,
) -> anyhow::Result<Option<StoredRing>> {
    let raw: Option<String> = conn.get(key).await.context("cannot read the key ring")?;
    raw.map(|r| serde_json::from_str(&r).context("the key ring in Redis is not valid JSON"))
        .transpose()
}
