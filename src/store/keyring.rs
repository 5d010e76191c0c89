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
