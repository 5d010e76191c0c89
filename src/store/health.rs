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
        policy = info_field(&info, "maxmemory_policy")
            .ok_or_else(|| anyhow!("INFO memory has no maxmemory_policy line"))?;
        if policy != "noeviction" {
            break;
        }
    }
    Ok(policy)
}

/// The value of `name` in `INFO` text (`name:value` lines).
fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().to_owned())
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
        assert_eq!(
            info_field(info, "maxmemory_policy").as_deref(),
            Some("allkeys-lru")
        );
        assert!(check_policy("allkeys-lru")
            .unwrap_err()
            .to_string()
            .contains("noeviction"));
        assert!(check_policy("noeviction").is_ok());
    }
}

/// What `tessera config check` reports of one Redis node: read from `INFO` (allowed to
/// Tessera's least-privilege user, unlike `CONFIG GET`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NodeReport {
    pub version: String,
    pub maxmemory_policy: String,
    pub aof: bool,
    /// `rdb_last_bgsave_status` (`ok`, `err`), when the node has saved at all.
    pub rdb_last_save: String,
    pub role: String,
    pub replicas: u32,
}

impl NodeReport {
    /// Parses the sections of `INFO server`, `INFO memory`, `INFO persistence` and
    /// `INFO replication` (one text or several).
    pub fn parse(info: &str) -> Self {
        let field = |name: &str| info_field(info, name).unwrap_or_default();
        Self {
            version: field("redis_version"),
            maxmemory_policy: field("maxmemory_policy"),
            aof: field("aof_enabled") == "1",
            rdb_last_save: field("rdb_last_bgsave_status"),
            role: field("role"),
            replicas: field("connected_slaves").parse().unwrap_or(0),
        }
    }

    /// Problems that must be fixed before Tessera may use this node (it refuses to start).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = check_policy(&self.maxmemory_policy) {
            problems.push(format!("{e:#}"));
        }
        problems
    }

    /// Advice that does not stop a start: without persistence a restart loses every session
    /// and, worse, every revocation still in force.
    pub fn warnings(&self, wait_replicas: u32) -> Vec<String> {
        let mut warnings = Vec::new();
        if !self.aof {
            warnings.push(
                "AOF is off: a restart of this Redis forgets sessions and revocations; run it \
                 with --appendonly yes --appendfsync everysec (README \"Durability and failure\")"
                    .to_owned(),
            );
        }
        if self.role == "master" && self.replicas < wait_replicas {
            warnings.push(format!(
                "{} replica(s) connected, redis_wait_replicas is {wait_replicas}: every \
                 revocation will be answered 503",
                self.replicas
            ));
        }
        warnings
    }
}

/// One report per primary (a cluster has several).
pub async fn report(redis: &crate::store::RedisConnections) -> anyhow::Result<Vec<NodeReport>> {
    let mut reports = Vec::new();
    for mut conn in redis.primaries().await? {
        let mut info = String::new();
        for section in ["server", "memory", "persistence", "replication"] {
            let text: String = redis::cmd("INFO")
                .arg(section)
                .query_async(&mut conn)
                .await
                .with_context(|| format!("INFO {section} failed"))?;
            info.push_str(&text);
        }
        reports.push(NodeReport::parse(&info));
    }
    Ok(reports)
}

#[cfg(test)]
mod report_tests {
    use super::*;

    #[test]
    fn reads_info_and_names_what_to_fix() {
        let info =
            "# Server\r\nredis_version:7.0.15\r\n# Memory\r\nmaxmemory_policy:allkeys-lru\r\n\
                    # Persistence\r\naof_enabled:0\r\nrdb_last_bgsave_status:ok\r\n\
                    # Replication\r\nrole:master\r\nconnected_slaves:1\r\n";
        let report = NodeReport::parse(info);
        assert_eq!(report.version, "7.0.15");
        assert_eq!(report.maxmemory_policy, "allkeys-lru");
        assert!(!report.aof);
        assert_eq!(report.replicas, 1);
        assert_eq!(report.problems().len(), 1);
        assert_eq!(report.warnings(0).len(), 1, "AOF off");
        assert_eq!(report.warnings(2).len(), 2, "AOF off, too few replicas");
    }
}
