//! Connections to one region's Redis (a single server or a Redis Cluster), with explicit
//! timeouts everywhere.
//!
//! Every caller talks through [`Conn`], which is a single server's self-reconnecting
//! `ConnectionManager` or a cluster connection (which follows `MOVED`/`ASK` and refreshes its
//! slot map by itself). Scripts and commands are written once for both: every multi-key script
//! touches one hash slot.

use anyhow::{anyhow, Context};
use deadpool_redis::{PoolConfig, Runtime, Timeouts};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Pipeline, RedisFuture, Value};
use std::time::Duration;

/// Connection settings (see `config.rs` for the documented defaults).
#[derive(Clone, Debug)]
pub struct RedisSettings {
    /// `redis://`, `rediss://`, or a cluster: `redis+cluster://h:p,h:p` (`rediss+cluster://`).
    pub url: String,
    /// The URL lists cluster nodes even without the `+cluster` scheme.
    pub cluster: bool,
    /// Opening a TCP connection (and the handshake) may take this long.
    pub connect_timeout: Duration,
    /// Any single command may take this long before the request fails closed with 503.
    pub command_timeout: Duration,
    /// Connections for out-of-band work (health probes, key ring).
    pub pool_size: usize,
}

/// Where a URL points: one server, or the seed nodes of a cluster (as plain node URLs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Topology {
    Single(String),
    Cluster(Vec<String>),
}

impl Topology {
    /// Reads `redis://h:p/db`, `rediss://…`, `redis+cluster://[user:pw@]h:p,h:p` or, with
    /// `cluster`, `redis://h:p,h:p`; explains what is wrong otherwise.
    pub fn parse(url: &str, cluster: bool) -> Result<Self, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or("must start with redis://, rediss://, redis+cluster:// or rediss+cluster://")?;
        let (scheme, is_cluster) =
            match scheme {
                "redis" | "rediss" => (scheme, cluster),
                "redis+cluster" => ("redis", true),
                "rediss+cluster" => ("rediss", true),
                _ => return Err(
                    "must start with redis://, rediss://, redis+cluster:// or rediss+cluster://"
                        .into(),
                ),
            };
        if !is_cluster {
            if rest.contains(',') {
                return Err("lists several hosts: use redis+cluster:// (or cluster = true) for a Redis Cluster".into());
            }
            return Ok(Self::Single(format!("{scheme}://{rest}")));
        }
        let (auth, hosts) = match rest.rfind('@') {
            Some(at) => (&rest[..=at], &rest[at + 1..]),
            None => ("", rest),
        };
        // A cluster has no databases: a trailing '/' or '/0' is tolerated, anything else is not.
        let hosts = hosts.trim_end_matches("/0").trim_end_matches('/');
        if hosts.contains('/') {
            return Err("a Redis Cluster has only database 0: drop the /<db> part".into());
        }
        let nodes: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| format!("{scheme}://{auth}{h}"))
            .collect();
        if nodes.is_empty() {
            return Err("names no cluster node (expected h:p,h:p)".into());
        }
        Ok(Self::Cluster(nodes))
    }
}

/// A connection to one region's Redis: what every store, feed and script call uses.
#[derive(Clone)]
pub enum Conn {
    /// One server, multiplexed and self-reconnecting.
    Single(ConnectionManager),
    /// A Redis Cluster: commands go to the primary of their key's slot; a command that meets a
    /// slot in migration is tried again within the budget (the command timeout).
    Cluster(ClusterConnection, Duration),
    /// One node of a cluster, by address (for `SCAN` and `INFO`, which are per node).
    Node(ClusterConnection, String, u16),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c, budget) => Box::pin(while_slots_move(c, cmd, *budget)),
            Conn::Node(c, host, port) => {
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                });
                Box::pin(c.route_command(cmd.clone(), routing))
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c, _) | Conn::Node(c, _, _) => {
                c.req_packed_commands(pipeline, offset, count)
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(..) | Conn::Node(..) => 0,
        }
    }
}

/// Sends `cmd` on the cluster, again while its slot is moving between primaries.
///
/// During a migration a command may meet `ASK` (the key moved), `MOVED` (the slot moved) or,
/// for a script whose keys are split between the two nodes, `TRYAGAIN`. Each means the
/// command did not run, so sending it again is safe; the cluster client follows a redirect a
/// few times by itself, and this keeps trying, with a growing pause, until `budget` is spent.
async fn while_slots_move(
    conn: &mut ClusterConnection,
    cmd: &Cmd,
    budget: Duration,
) -> redis::RedisResult<Value> {
    let deadline = tokio::time::Instant::now() + budget;
    let mut pause = Duration::from_millis(5);
    loop {
        match conn.req_packed_command(cmd).await {
            Err(e)
                if matches!(e.code(), Some("TRYAGAIN" | "ASK" | "MOVED"))
                    && tokio::time::Instant::now() + pause < deadline =>
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// How more connections like the shared one are opened.
#[derive(Clone)]
enum Opener {
    Single {
        client: Box<redis::Client>,
        config: ConnectionManagerConfig,
    },
    Cluster {
        seeds: Vec<String>,
        settings: RedisSettings,
    },
}

/// The connections a node holds to one region's Redis.
#[derive(Clone)]
pub struct RedisConnections {
    /// Multiplexed and self-reconnecting: the request path.
    pub conn: Conn,
    opener: Opener,
    /// Pooled connections for out-of-band work (never on the request path: a deadpool checkout
    /// sends extra commands and costs a third of the throughput).
    pub pool: Pool,
}

/// Out-of-band connections (deadpool), for a server or a cluster.
#[derive(Clone)]
pub enum Pool {
    Single(deadpool_redis::Pool),
    Cluster(deadpool_redis::cluster::Pool),
}

impl Pool {
    /// A pooled connection, as a `Conn` for the single case or the pooled cluster connection.
    pub async fn get(&self) -> anyhow::Result<Pooled> {
        Ok(match self {
            Pool::Single(p) => Pooled::Single(p.get().await.context("no Redis connection")?),
            Pool::Cluster(p) => Pooled::Cluster(p.get().await.context("no Redis connection")?),
        })
    }
}

/// A connection checked out of a [`Pool`].
pub enum Pooled {
    Single(deadpool_redis::Connection),
    Cluster(deadpool_redis::cluster::Connection),
}

impl ConnectionLike for Pooled {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Pooled::Single(c) => c.req_packed_command(cmd),
            Pooled::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Pooled::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Pooled::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Pooled::Single(c) => c.get_db(),
            Pooled::Cluster(_) => 0,
        }
    }
}

fn cluster_client(
    seeds: &[String],
    settings: &RedisSettings,
    response: Duration,
) -> anyhow::Result<ClusterClient> {
    ClusterClientBuilder::new(seeds.to_vec())
        .connection_timeout(settings.connect_timeout)
        .response_timeout(response)
        // A moved slot or a failover is retried a few times inside one request's budget.
        .retries(3)
        .min_retry_wait(10)
        .max_retry_wait(200)
        .build()
        .context("the Redis Cluster URL is not valid")
}

impl RedisConnections {
    /// Connects, or explains what is wrong with the URL or the server.
    pub async fn connect(settings: &RedisSettings) -> anyhow::Result<Self> {
        Self::open(settings, true).await
    }

    /// Like `connect`, but connects on first use: for another region, whose outage must not
    /// keep this node from starting (its requests fail, its changes are parked).
    pub async fn connect_lazily(settings: &RedisSettings) -> anyhow::Result<Self> {
        Self::open(settings, false).await
    }

    async fn open(settings: &RedisSettings, eager: bool) -> anyhow::Result<Self> {
        let topology = Topology::parse(&settings.url, settings.cluster)
            .map_err(|e| anyhow!("the Redis URL {}: {e}", redact_url(&settings.url)))?;
        let unreachable = || {
            format!(
                "cannot reach Redis at {}: start redis-server or fix the region's redis_url",
                redact_url(&settings.url)
            )
        };
        match topology {
            Topology::Single(url) => {
                let client = redis::Client::open(url.as_str())
                    .with_context(|| "the Redis URL is not a valid redis:// URL")?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(settings.connect_timeout))
                    .set_response_timeout(Some(settings.command_timeout))
                    // Reconnect quickly and give up quickly: a request waits at most for one
                    // attempt, the next request tries again.
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(Duration::from_millis(500));
                let manager = if eager {
                    ConnectionManager::new_with_config(client.clone(), config.clone())
                        .await
                        .with_context(unreachable)?
                } else {
                    ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
                        .with_context(unreachable)?
                };
                let mut pool_config = deadpool_redis::Config::from_url(url);
                pool_config.pool = Some(pool_settings(settings));
                let pool = pool_config
                    .create_pool(Some(Runtime::Tokio1))
                    .context("cannot build the Redis connection pool")?;
                Ok(Self {
                    conn: Conn::Single(manager),
                    opener: Opener::Single {
                        client: Box::new(client),
                        config,
                    },
                    pool: Pool::Single(pool),
                })
            }
            Topology::Cluster(seeds) => {
                let client = cluster_client(&seeds, settings, settings.command_timeout)?;
                let conn = if eager {
                    client
                        .get_async_connection()
                        .await
                        .with_context(unreachable)?
                } else {
                    client.get_pending_async_connection_with_config(
                        redis::cluster::ClusterConfig::new(),
                    )
                };
                let mut pool_config = deadpool_redis::cluster::Config::from_urls(seeds.clone());
                pool_config.pool = Some(pool_settings(settings));
                let pool = pool_config
                    .create_pool(Some(Runtime::Tokio1))
                    .context("cannot build the Redis Cluster connection pool")?;
                Ok(Self {
                    conn: Conn::Cluster(conn, settings.command_timeout),
                    opener: Opener::Cluster {
                        seeds,
                        settings: settings.clone(),
                    },
                    pool: Pool::Cluster(pool),
                })
            }
        }
    }

    /// A connection source that gives every thread its own multiplexed connection (a cluster
    /// connection is already one multiplexed connection per node, shared by every thread).
    pub fn per_thread(&self) -> PerThread {
        let threads = PerThread::new(self.opener.clone(), self.conn.clone());
        if let Conn::Single(manager) = &self.conn {
            threads.registry.register(manager.clone());
        }
        threads
    }

    /// A dedicated connection whose commands may block for up to `block` (a stream follower's
    /// `XREAD BLOCK` must not sit on the shared multiplexed connection).
    pub async fn dedicated(&self, block: Duration) -> anyhow::Result<Conn> {
        let response = block + Duration::from_secs(2);
        match &self.opener {
            Opener::Single { client, config } => {
                let config = config.clone().set_response_timeout(Some(response));
                Ok(Conn::Single(
                    ConnectionManager::new_with_config((**client).clone(), config)
                        .await
                        .context("cannot open a dedicated Redis connection")?,
                ))
            }
            Opener::Cluster { seeds, settings } => Ok(Conn::Cluster(
                cluster_client(seeds, settings, response)?
                    .get_async_connection()
                    .await
                    .context("cannot open a dedicated Redis Cluster connection")?,
                settings.command_timeout,
            )),
        }
    }

    /// Every primary, each as its own connection: `SCAN` and `INFO` answer for one node only,
    /// so a sweep or a health check must visit each of them.
    pub async fn primaries(&self) -> anyhow::Result<Vec<Conn>> {
        let Conn::Cluster(cluster, _) = &self.conn else {
            return Ok(vec![self.conn.clone()]);
        };
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut cluster.clone())
            .await
            .context("CLUSTER NODES failed")?;
        let primaries = parse_primaries(&nodes);
        if primaries.is_empty() {
            return Err(anyhow!("CLUSTER NODES lists no primary"));
        }
        Ok(primaries
            .into_iter()
            .map(|(host, port)| Conn::Node(cluster.clone(), host, port))
            .collect())
    }
}

fn pool_settings(settings: &RedisSettings) -> PoolConfig {
    PoolConfig {
        max_size: settings.pool_size,
        timeouts: Timeouts {
            wait: Some(settings.connect_timeout),
            create: Some(settings.connect_timeout),
            recycle: Some(settings.command_timeout),
        },
        ..PoolConfig::default()
    }
}

/// `host:port` of every connected primary that serves slots, from `CLUSTER NODES`
/// (`<id> <ip:port@cport[,hostname]> <flags> <primary> … <slots…>`).
fn parse_primaries(nodes: &str) -> Vec<(String, u16)> {
    nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = fields.get(2)?;
            let serves = fields.len() > 8;
            if !flags.split(',').any(|f| f == "master") || flags.contains("fail") || !serves {
                return None;
            }
            let addr = fields.get(1)?.split(['@', ',']).next()?;
            let (host, port) = addr.rsplit_once(':')?;
            Some((host.trim_matches(['[', ']']).to_owned(), port.parse().ok()?))
        })
        .collect()
}

/// Every multiplexed connection a node opened, so one task can keep them all awake.
///
/// A `ConnectionManager` notices a dead socket only when a command fails on it, and reconnects
/// after that. A worker thread that was idle while Redis restarted would otherwise fail its
/// first request (503) long after Redis came back. `keep_alive` pings each one every
/// `KEEPALIVE_EVERY`, so each is back within about two pings of Redis answering again.
#[derive(Clone, Default)]
pub struct Registry(std::sync::Arc<std::sync::Mutex<Vec<ConnectionManager>>>);

/// How often `keep_alive` pings every connection. The recovery bound stated in the README
/// (every connection usable within 3 s of Redis answering) is two of these plus a reconnect.
pub const KEEPALIVE_EVERY: Duration = Duration::from_secs(1);

impl Registry {
    fn register(&self, conn: ConnectionManager) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
    }

    fn all(&self) -> Vec<ConnectionManager> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Pings every registered connection forever (a failed ping starts its reconnection).
    pub async fn keep_alive(self) {
        let mut tick = tokio::time::interval(KEEPALIVE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let pings = self.all().into_iter().map(|mut conn| async move {
                let _ = redis::cmd("PING").query_async::<String>(&mut conn).await;
            });
            futures_util::future::join_all(pings).await;
        }
    }
}

thread_local! {
    static LOCAL: std::cell::RefCell<std::collections::HashMap<usize, ConnectionManager>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// One `ConnectionManager` per thread, created lazily on first use in that thread.
///
/// Each actix worker runs its own single-threaded runtime; a connection whose driver task lives
/// on the same thread answers without waking another thread for every command (`perf` showed
/// those cross-thread wake-ups and context switches as the largest cost of the read path).
#[derive(Clone)]
pub struct PerThread {
    id: usize,
    opener: Opener,
    fallback: Conn,
    registry: Registry,
}

impl PerThread {
    fn new(opener: Opener, fallback: Conn) -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        Self {
            id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            opener,
            fallback,
            registry: Registry::default(),
        }
    }

    /// The connections opened so far (and from now on), for `Registry::keep_alive`.
    pub fn registry(&self) -> Registry {
        self.registry.clone()
    }

    /// This thread's connection (a cheap clone of a handle).
    pub fn get(&self) -> Conn {
        let Opener::Single { client, config } = &self.opener else {
            return self.fallback.clone();
        };
        LOCAL.with(|local| {
            let mut local = local.borrow_mut();
            if let Some(conn) = local.get(&self.id) {
                return Conn::Single(conn.clone());
            }
            match ConnectionManager::new_lazy_with_config((**client).clone(), config.clone()) {
                Ok(conn) => {
                    self.registry.register(conn.clone());
                    local.insert(self.id, conn.clone());
                    Conn::Single(conn)
                }
                Err(_) => self.fallback.clone(),
            }
        })
    }
}

/// The URL without its password, for log lines and error messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://<credentials>{}", &url[..scheme], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact_url("redis://user:hunter2@db:6379/0"),
            "redis://<credentials>@db:6379/0"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(
            redact_url("redis+cluster://:pw@a:1,b:2"),
            "redis+cluster://<credentials>@a:1,b:2"
        );
    }

    #[test]
    fn reads_single_and_cluster_urls() {
        assert_eq!(
            Topology::parse("redis://h:1/2", false),
            Ok(Topology::Single("redis://h:1/2".into()))
        );
        assert_eq!(
            Topology::parse("redis+cluster://:pw@a:1,b:2", false),
            Ok(Topology::Cluster(vec![
                "redis://:pw@a:1".into(),
                "redis://:pw@b:2".into()
            ]))
        );
        assert_eq!(
            Topology::parse("rediss://a:1,b:2/", true),
            Ok(Topology::Cluster(vec![
                "rediss://a:1".into(),
                "rediss://b:2".into()
            ]))
        );
        for (url, cluster, why) in [
            ("http://h:1", false, "must start"),
            ("redis://a:1,b:2", false, "redis+cluster"),
            ("redis+cluster://a:1/3", false, "database 0"),
            ("redis+cluster://", false, "no cluster node"),
        ] {
            let err = Topology::parse(url, cluster).unwrap_err();
            assert!(err.contains(why), "{url}: {err}");
        }
    }

    #[test]
    fn finds_serving_primaries_in_cluster_nodes() {
        let nodes = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7002@17002 master - 0 0 2 connected 5461-10922
c3 127.0.0.1:7003@17003,host3 master - 0 0 3 connected 10923-16383
d4 127.0.0.1:7004@17004 slave a1 0 0 1 connected
e5 127.0.0.1:7005@17005 master,fail - 0 0 5 disconnected 1-2
f6 127.0.0.1:7006@17006 master - 0 0 6 connected
";
        assert_eq!(
            parse_primaries(nodes),
            vec![
                ("127.0.0.1".to_owned(), 7001),
                ("127.0.0.1".to_owned(), 7002),
                ("127.0.0.1".to_owned(), 7003)
            ]
        );
    }
}
