//! Redis health: reachability and the eviction policy Tessera insists on.

use anyhow::{anyhow, Context};

/// Reads `maxmemory_policy` from `INFO memory` (works where `CONFIG` is disabled, as on most
/// managed Redis offerings) on every primary; answers the first that is not `noeviction`, so
/// one misconfigured cluster node is enough to refuse.
pub async fn maxmemory_policy(redis: &crate::store::RedisConnections) -> anyhow::Result<String> {
    let mut policy = String::new();
    for mut conn in redis.primaries().await? {
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut conn)
            .await
            .context("INFO memory failed")?;
        policy = parse_policy(&info)
            .ok_or_else(|| anyhow!("INFO memory has no maxmemory_policy line"))?;
        if policy != "noeviction" {
            break;
        }
    }
    Ok(policy)
}

fn parse_policy(info: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix("maxmemory_policy:"))
        .map(|p| p.trim().to_owned())
}

/// Checks at start that the Redis user may touch Tessera's keys and run its scripts, so a
/// too-narrow ACL is named as such instead of surfacing later as an outage (503).
pub async fn check_access(
    redis: &crate::store::RedisConnections,
    prefix: &str,
) -> anyhow::Result<()> {
    let mut conn = redis.conn.clone();
    let probe = format!("{prefix}:acl-probe");
    let checked: redis::RedisResult<i64> = redis::cmd("EVAL")
        .arg("return redis.call('EXISTS', KEYS[1])")
        .arg(1)
        .arg(&probe)
        .query_async(&mut conn)
        .await;
    match checked {
        Err(e) if e.code() == Some("NOPERM") => Err(anyhow!(
            "Redis refused the command or the key prefix '{prefix}' to this user (NOPERM): \
             give it the ACL of README \"Least-privilege Redis user\" with ~{prefix}:* as its \
             key pattern ({e})"
        )),
        Err(e) => Err(anyhow!(e).context("cannot run a script on Redis")),
        Ok(_) => Ok(()),
    }
}

/// Refuses any policy that could silently drop sessions or revocations.
pub fn check_policy(policy: &str) -> anyhow::Result<()> {
    if policy == "noeviction" {
        Ok(())
    } else {
        Err(anyhow!(
            "Redis maxmemory-policy is '{policy}': Tessera refuses to run on a Redis that may evict \
             keys (an evicted session or revocation would silently vanish). Fix: set \
             `maxmemory-policy noeviction` in redis.conf, run `CONFIG SET maxmemory-policy \
             noeviction`, or choose 'noeviction' in your managed Redis settings"
        ))
    }
}

/// Asks Redis whether it answers (readiness), without handing out the pool.
#[derive(Clone)]
pub struct Probe(crate::store::connection::Pool);

impl Probe {
    pub fn new(pool: crate::store::connection::Pool) -> Self {
        Self(pool)
    }

    pub async fn ping(&self) -> anyhow::Result<()> {
        ping(&self.0).await
    }
}

/// `PING` over a pooled connection.
pub async fn ping(pool: &crate::store::connection::Pool) -> anyhow::Result<()> {
    let mut conn = pool.get().await?;
    let _: String = redis::cmd("PING").query_async(&mut conn).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_policy_line() {
        let info = "# Memory\r\nused_memory:1\r\nmaxmemory_policy:allkeys-lru\r\n";
        assert_eq!(parse_policy(info).as_deref(), Some("allkeys-lru"));
        assert!(check_policy("allkeys-lru")
            .unwrap_err()
            .to_string()
            .contains("noeviction"));
        assert!(check_policy("noeviction").is_ok());
    }
}
