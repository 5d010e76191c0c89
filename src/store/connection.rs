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
    /// PEM certificates to trust for `rediss://` instead of the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// Replicas that must confirm a revocation (`WAIT`) before it is acknowledged; 0: none.
    pub wait_replicas: u32,
    /// How long a revocation waits for those replicas before it is answered 503.
    pub wait_timeout: Duration,
    /// The region whose Redis this is: the `region` label of its command metrics.
    pub region: String,
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
        let Some((_, credentials, hosts, tail)) = split_authority(url) else {
            return Err("names no cluster node (expected h:p,h:p)".into());
        };
        let auth = credentials.map(|c| format!("{c}@")).unwrap_or_default();
        // A cluster has no databases: a trailing '/' or '/0' is tolerated, anything else is not.
        let tail = tail.trim_end_matches("/0").trim_end_matches('/');
        if tail.starts_with('/') {
            return Err("a Redis Cluster has only database 0: drop the /<db> part".into());
        }
        if !tail.is_empty() && !tail.starts_with('#') {
            return Err("a Redis Cluster URL takes no query ('?…')".into());
        }
        let nodes: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| format!("{scheme}://{auth}{h}{tail}"))
            .collect();
        if nodes.is_empty() {
            return Err("names no cluster node (expected h:p,h:p)".into());
        }
        Ok(Self::Cluster(nodes))
    }

    /// Every node URL (one for a single server).
    pub fn nodes(&self) -> Vec<&str> {
        match self {
            Topology::Single(url) => vec![url.as_str()],
            Topology::Cluster(nodes) => nodes.iter().map(String::as_str).collect(),
        }
    }

    /// Refuses a transport that would expose sessions and the Redis password on a network:
    /// plain `redis://` to anything but this machine, and TLS without certificate verification
    /// (`#insecure`).
    pub fn check_transport(&self) -> Result<(), String> {
        for node in self.nodes() {
            if node.contains("#insecure") {
                return Err(
                    "ends in #insecure, which turns off certificate verification; \
                     give the Redis CA with redis_ca_file instead"
                        .into(),
                );
            }
            // The host as the client library will read it (the `url` crate's parser).
            let parsed = url::Url::parse(node).map_err(|e| format!("is not a valid URL ({e})"))?;
            let scheme = parsed.scheme().to_ascii_lowercase();
            let (loopback, host) = match parsed.host() {
                Some(url::Host::Ipv4(ip)) => (ip.is_loopback(), ip.to_string()),
                Some(url::Host::Ipv6(ip)) => (ip.is_loopback(), ip.to_string()),
                // `redis` is not a special scheme to the URL standard, so an IPv4 address
                // arrives as an opaque name.
                Some(url::Host::Domain(name)) => (
                    name.eq_ignore_ascii_case("localhost")
                        || name
                            .parse::<std::net::IpAddr>()
                            .is_ok_and(|ip| ip.is_loopback()),
                    name.to_owned(),
                ),
                None => (false, String::new()),
            };
            if scheme == "redis" && !loopback {
                return Err(format!(
                    "'{host}' is not this machine: a Redis reached over a network must use \
                     rediss:// (TLS, certificate verified; redis_ca_file names a private CA)"
                ));
            }
        }
        Ok(())
    }
}

/// A connection to one region's Redis: what every store, feed and script call uses. Every
/// command through it is timed and its failures counted, by region (`Meter`).
#[derive(Clone)]
pub struct Conn {
    link: Link,
    meter: Meter,
}

/// How a [`Conn`] reaches Redis.
#[derive(Clone)]
pub enum Link {
    /// One server, multiplexed and self-reconnecting.
    Single(ConnectionManager),
    /// A Redis Cluster: commands go to the primary of their key's slot; a command that meets a
    /// slot in migration is tried again within the budget (the command timeout).
    Cluster(ClusterConnection, Duration),
    /// One node of a cluster, by address (for `SCAN` and `INFO`, which are per node).
    Node(ClusterConnection, String, u16),
}

impl Conn {
    fn new(link: Link, meter: &Meter) -> Self {
        Self {
            link,
            meter: meter.clone(),
        }
    }

    /// How this connection reaches Redis (a script picks pipelines or not by it).
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// The same connection, reaching one node of the cluster (or the server itself).
    fn on_node(&self, host: String, port: u16) -> Self {
        match &self.link {
            Link::Cluster(c, _) | Link::Node(c, _, _) => {
                Self::new(Link::Node(c.clone(), host, port), &self.meter)
            }
            Link::Single(_) => self.clone(),
        }
    }
}

/// Command latency and failures of one region's Redis, as Prometheus series:
/// `tessera_redis_command_duration_seconds{region}` and `tessera_redis_errors_total{region,kind}`.
#[derive(Clone)]
pub struct Meter {
    region: std::sync::Arc<str>,
    latency: metrics::Histogram,
}

impl Meter {
    pub fn for_region(region: &str) -> Self {
        Self {
            region: region.into(),
            latency: metrics::histogram!(
                "tessera_redis_command_duration_seconds",
                "region" => region.to_owned()
            ),
        }
    }

    /// `sent`, timed from now to its answer; a failure is counted by kind.
    fn measure<'a, T: Send + 'a>(&'a self, sent: RedisFuture<'a, T>) -> RedisFuture<'a, T> {
        let started = std::time::Instant::now();
        Box::pin(async move {
            let result = sent.await;
            self.latency.record(started.elapsed().as_secs_f64());
            if let Err(e) = &result {
                metrics::counter!(
                    "tessera_redis_errors_total",
                    "region" => self.region.to_string(),
                    "kind" => error_kind(e)
                )
                .increment(1);
            }
            result
        })
    }
}

/// A bounded label for a failed command: the operator's first question is "slow, gone, or
/// refusing?".
fn error_kind(e: &redis::RedisError) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
        "connection"
    } else if e.code() == Some("NOSCRIPT") {
        // The script cache was emptied (a restart, SCRIPT FLUSH); the call loads it again.
        "noscript"
    } else if e.is_cluster_error() {
        "cluster"
    } else {
        "reply"
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.meter.measure(self.link.req_packed_command(cmd))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.meter
            .measure(self.link.req_packed_commands(pipeline, offset, count))
    }

    fn get_db(&self) -> i64 {
        self.link.get_db()
    }
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Link::Single(c) => c.req_packed_command(cmd),
            Link::Cluster(c, budget) => Box::pin(while_slots_move(c, cmd, *budget)),
            Link::Node(c, host, port) => {
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
            Link::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Link::Cluster(c, _) | Link::Node(c, _, _) => {
                c.req_packed_commands(pipeline, offset, count)
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Single(c) => c.get_db(),
            Link::Cluster(..) | Link::Node(..) => 0,
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
        url: String,
        settings: Box<RedisSettings>,
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
    Cluster(ClusterConnection),
}

impl Pool {
    /// A pooled connection, as a `Conn` for the single case or the pooled cluster connection.
    pub async fn get(&self) -> anyhow::Result<Pooled> {
        Ok(match self {
            Pool::Single(p) => Pooled::Single(p.get().await.context("no Redis connection")?),
            Pool::Cluster(c) => Pooled::Cluster(c.clone()),
        })
    }
}

/// A connection checked out of a [`Pool`].
pub enum Pooled {
    Single(deadpool_redis::Connection),
    Cluster(ClusterConnection),
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

/// The private CA of `redis_ca_file`, if one is set.
fn tls_certificates(settings: &RedisSettings) -> anyhow::Result<Option<redis::TlsCertificates>> {
    let Some(path) = &settings.ca_file else {
        return Ok(None);
    };
    let pem = std::fs::read(path).with_context(|| {
        format!(
            "cannot read redis_ca_file {}: give a readable PEM file",
            path.display()
        )
    })?;
    Ok(Some(redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    }))
}

/// A client for one server, trusting `redis_ca_file` when set.
fn single_client(url: &str, settings: &RedisSettings) -> anyhow::Result<redis::Client> {
    match tls_certificates(settings)? {
        Some(certs) if url.starts_with("rediss://") => redis::Client::build_with_tls(url, certs)
            .context("the Redis CA (redis_ca_file) or the rediss:// URL is not valid"),
        _ => redis::Client::open(url).context("the Redis URL is not a valid redis:// URL"),
    }
}

fn cluster_client(
    seeds: &[String],
    settings: &RedisSettings,
    response: Duration,
) -> anyhow::Result<ClusterClient> {
    let mut builder = ClusterClientBuilder::new(seeds.to_vec());
    if let Some(certs) = tls_certificates(settings)? {
        if seeds.iter().all(|s| s.starts_with("rediss://")) {
            builder = builder.certs(certs);
        }
    }
    builder
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
            .and_then(|t| t.check_transport().map(|()| t))
            .map_err(|e| anyhow!("the Redis URL {}: {e}", redact_url(&settings.url)))?;
        let unreachable = || {
            format!(
                "cannot reach Redis at {}: start redis-server or fix the region's redis_url",
                redact_url(&settings.url)
            )
        };
        let meter = Meter::for_region(&settings.region);
        match topology {
            Topology::Single(url) => {
                let client = single_client(&url, settings)?;
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
                // The pool's connections carry the client's TLS settings (a private CA).
                let pooled = deadpool_redis::Manager::new(client.get_connection_info().clone())
                    .context("cannot build the Redis connection pool")?;
                let pool = deadpool_redis::Pool::builder(pooled)
                    .config(pool_settings(settings))
                    .runtime(Runtime::Tokio1)
                    .build()
                    .context("cannot build the Redis connection pool")?;
                Ok(Self {
                    conn: Conn::new(Link::Single(manager), &meter),
                    opener: Opener::Single {
                        client: Box::new(client),
                        config,
                        url,
                        settings: Box::new(settings.clone()),
                    },
                    pool: Pool::Single(pool),
                })
            }
            Topology::Cluster(seeds) => {
                if eager && seeds.iter().any(|s| s.starts_with("redis://")) {
                    // Before the cluster client connects (and authenticates) to every node
                    // the cluster announces: in plain text, they must all be on this machine.
                    let seed = single_client(&seeds[0], settings)?;
                    let mut conn = tokio::time::timeout(
                        settings.connect_timeout,
                        seed.get_multiplexed_async_connection(),
                    )
                    .await
                    .map_err(|_| anyhow!("timed out"))
                    .and_then(|c| c.map_err(Into::into))
                    .with_context(unreachable)?;
                    let nodes: String = redis::cmd("CLUSTER")
                        .arg("NODES")
                        .query_async(&mut conn)
                        .await
                        .with_context(unreachable)?;
                    all_on_this_machine(&parse_primaries(&nodes))?;
                }
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
                // Out-of-band work shares one cluster connection of its own (a cluster
                // connection is already multiplexed per node; it reconnects by itself).
                let side = client
                    .get_pending_async_connection_with_config(redis::cluster::ClusterConfig::new());
                Ok(Self {
                    conn: Conn::new(Link::Cluster(conn, settings.command_timeout), &meter),
                    opener: Opener::Cluster {
                        seeds,
                        settings: settings.clone(),
                    },
                    pool: Pool::Cluster(side),
                })
            }
        }
    }

    /// A connection source that gives every thread its own multiplexed connection (a cluster
    /// connection is already one multiplexed connection per node, shared by every thread).
    pub fn per_thread(&self) -> PerThread {
        let threads = PerThread::new(self.opener.clone(), self.conn.clone());
        if let Link::Single(manager) = &self.conn.link {
            threads.registry.register(manager.clone());
        }
        threads
    }

    /// A dedicated connection whose commands may block for up to `block` (a stream follower's
    /// `XREAD BLOCK` must not sit on the shared multiplexed connection).
    pub async fn dedicated(&self, block: Duration) -> anyhow::Result<Conn> {
        let response = block + Duration::from_secs(2);
        match &self.opener {
            Opener::Single { client, config, .. } => {
                let config = config.clone().set_response_timeout(Some(response));
                Ok(Conn::new(
                    Link::Single(
                        ConnectionManager::new_with_config((**client).clone(), config)
                            .await
                            .context("cannot open a dedicated Redis connection")?,
                    ),
                    &self.conn.meter,
                ))
            }
            Opener::Cluster { seeds, settings } => Ok(Conn::new(
                Link::Cluster(
                    cluster_client(seeds, settings, response)?
                        .get_async_connection()
                        .await
                        .context("cannot open a dedicated Redis Cluster connection")?,
                    settings.command_timeout,
                ),
                &self.conn.meter,
            )),
        }
    }

    /// A side connection, connected on first use, whose commands may take up to `response`:
    /// for commands that block the connection they are sent on (`WAIT`).
    pub fn side(&self, response: Duration) -> anyhow::Result<Conn> {
        match &self.opener {
            Opener::Single { client, config, .. } => {
                let config = config.clone().set_response_timeout(Some(response));
                Ok(Conn::new(
                    Link::Single(
                        ConnectionManager::new_lazy_with_config((**client).clone(), config)
                            .context("cannot open a side Redis connection")?,
                    ),
                    &self.conn.meter,
                ))
            }
            Opener::Cluster { seeds, settings } => Ok(Conn::new(
                Link::Cluster(
                    cluster_client(seeds, settings, response)?
                        .get_pending_async_connection_with_config(
                            redis::cluster::ClusterConfig::new(),
                        ),
                    settings.command_timeout,
                ),
                &self.conn.meter,
            )),
        }
    }

    /// The confirmer of this Redis's revocations, when `wait_replicas` asks for one.
    pub fn confirmer(
        &self,
        settings: &RedisSettings,
        prefix: &str,
    ) -> anyhow::Result<Option<super::durable::Confirmer>> {
        if settings.wait_replicas == 0 {
            return Ok(None);
        }
        let conn = self.side(settings.wait_timeout + settings.command_timeout)?;
        Ok(Some(super::durable::Confirmer::new(
            conn,
            settings.wait_replicas,
            settings.wait_timeout,
            prefix,
        )))
    }

    /// True for a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.opener, Opener::Cluster { .. })
    }

    /// The URL of every server whose writes a tracking connection must hear: the server, or
    /// every primary of the cluster (its seed's URL with the primary's address), sorted.
    pub async fn tracked_nodes(&self) -> anyhow::Result<Vec<String>> {
        match &self.opener {
            Opener::Single { url, .. } => Ok(vec![url.clone()]),
            Opener::Cluster { seeds, .. } => {
                let Link::Cluster(cluster, _) = &self.conn.link else {
                    return Err(anyhow!("a cluster opener without a cluster connection"));
                };
                let nodes: String = redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query_async(&mut cluster.clone())
                    .await
                    .context("CLUSTER NODES failed")?;
                let primaries = tracked_primaries(&nodes);
                // In plain text every node the tracker authenticates to must be on this machine.
                if seeds.iter().any(|s| s.starts_with("redis://")) {
                    all_on_this_machine(&primaries)?;
                }
                let mut urls = primaries
                    .into_iter()
                    .map(|(host, port)| node_url(&seeds[0], &host, port))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                if urls.is_empty() {
                    return Err(anyhow!("CLUSTER NODES lists no primary"));
                }
                urls.sort();
                Ok(urls)
            }
        }
    }

    /// A RESP3 connection to `url` (one of `tracked_nodes`) that hands every push message
    /// (invalidations, and the library's own notice of a dropped connection) to `push`.
    pub async fn push_connection(
        &self,
        url: &str,
        push: impl redis::aio::AsyncPushSender,
        timeout: Duration,
    ) -> anyhow::Result<redis::aio::MultiplexedConnection> {
        let settings = match &self.opener {
            Opener::Single { settings, .. } => settings,
            Opener::Cluster { settings, .. } => settings,
        };
        let mut resp3 = url::Url::parse(url).context("the Redis URL is not valid")?;
        resp3.query_pairs_mut().append_pair("protocol", "resp3");
        let client = single_client(resp3.as_str(), settings)?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(timeout))
            .set_push_sender(push);
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .with_context(|| format!("cannot open a tracking connection to {}", redact_url(url)))
    }

    /// Every primary, each as its own connection: `SCAN` and `INFO` answer for one node only,
    /// so a sweep or a health check must visit each of them.
    pub async fn primaries(&self) -> anyhow::Result<Vec<Conn>> {
        let Link::Cluster(cluster, _) = &self.conn.link else {
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
        // Seeds on this machine in plain text do not make the rest of the cluster so: the
        // client follows whatever addresses the cluster announces.
        let plain = matches!(&self.opener, Opener::Cluster { seeds, .. }
            if seeds.iter().any(|s| s.starts_with("redis://")));
        if plain {
            all_on_this_machine(&primaries)?;
        }
        Ok(primaries
            .into_iter()
            .map(|(host, port)| self.conn.on_node(host, port))
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

/// Refuses primaries a plain-text cluster connection must not reach: any not on this machine.
fn all_on_this_machine(primaries: &[(String, u16)]) -> anyhow::Result<()> {
    for (host, port) in primaries {
        let url = format!("redis://{}:{port}", bracketed(host));
        Topology::Single(url)
            .check_transport()
            .map_err(|e| anyhow!("the Redis Cluster announces a primary at {host}:{port}: {e}"))?;
    }
    Ok(())
}

/// `seed` with its host and port replaced: a cluster node reached with the seed's scheme,
/// credentials and options.
fn node_url(seed: &str, host: &str, port: u16) -> anyhow::Result<String> {
    let mut url = url::Url::parse(seed).context("the Redis Cluster URL is not valid")?;
    url.set_host(Some(&bracketed(host)))
        .map_err(|e| anyhow!("the cluster announces a node at {host}: {e}"))?;
    url.set_port(Some(port))
        .map_err(|()| anyhow!("the cluster URL takes no port"))?;
    Ok(url.to_string())
}

/// An IPv6 address in brackets, as a URL wants it.
fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// `host:port` of every primary a tracker must hear, from `CLUSTER NODES`: any master not
/// agreed to have failed. A master only suspected by the node asked (`fail?`) may still take
/// writes, and one without slots yet may be importing some; missing either would let writes
/// go unheard, while tracking one too many costs only a connection.
fn tracked_primaries(nodes: &str) -> Vec<(String, u16)> {
    masters(nodes)
        .filter(|m| !m.flags.split(',').any(|f| f == "fail" || f == "noaddr"))
        .map(|m| m.addr)
        .collect()
}

/// `host:port` of every connected primary that serves slots, from `CLUSTER NODES`.
fn parse_primaries(nodes: &str) -> Vec<(String, u16)> {
    masters(nodes)
        .filter(|m| m.serves && !m.flags.contains("fail"))
        .map(|m| m.addr)
        .collect()
}

/// One master line of `CLUSTER NODES`.
struct Master<'a> {
    flags: &'a str,
    /// It lists slots.
    serves: bool,
    addr: (String, u16),
}

/// The masters of `CLUSTER NODES`
/// (`<id> <ip:port@cport[,hostname]> <flags> <primary> … <slots…>`).
fn masters(nodes: &str) -> impl Iterator<Item = Master<'_>> {
    nodes.lines().filter_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let flags = *fields.get(2)?;
        if !flags.split(',').any(|f| f == "master") {
            return None;
        }
        let addr = fields.get(1)?.split(['@', ',']).next()?;
        let (host, port) = addr.rsplit_once(':')?;
        Some(Master {
            flags,
            serves: fields.len() > 8,
            addr: (host.trim_matches(['[', ']']).to_owned(), port.parse().ok()?),
        })
    })
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
        let Opener::Single { client, config, .. } = &self.opener else {
            return self.fallback.clone();
        };
        LOCAL.with(|local| {
            let mut local = local.borrow_mut();
            if let Some(conn) = local.get(&self.id) {
                return Conn::new(Link::Single(conn.clone()), &self.fallback.meter);
            }
            match ConnectionManager::new_lazy_with_config((**client).clone(), config.clone()) {
                Ok(conn) => {
                    self.registry.register(conn.clone());
                    local.insert(self.id, conn.clone());
                    Conn::new(Link::Single(conn), &self.fallback.meter)
                }
                Err(_) => self.fallback.clone(),
            }
        })
    }
}

/// The URL without its password, for log lines and error messages.
pub fn redact_url(url: &str) -> String {
    match split_authority(url) {
        // An `@` after the authority: a password with an unencoded `/`, `?` or `#` (common in
        // `openssl rand -base64` output), or a hostile query. Which part is the host is then
        // ambiguous, so neither credentials nor host are shown; the message says what to fix.
        Some((scheme, _, _, tail)) if tail.contains('@') => format!(
            "{scheme}://<hidden: an '@' follows the host; percent-encode '@', '/', '?' and '#' \
             in a user name or password>"
        ),
        Some((scheme, Some(_), hosts, rest)) => format!("{scheme}://<credentials>@{hosts}{rest}"),
        // Not `scheme://…` at all: shown only when it cannot hold credentials.
        None if url.contains('@') => "<a URL that does not parse, not shown>".to_owned(),
        _ => url.to_owned(),
    }
}

/// `scheme://[credentials@]hosts[/path?query#fragment]` split into its parts. The credentials
/// end at the last `@` *inside the authority* (before any `/`, `?` or `#`): an `@` in a query or
/// fragment must not move the host (`redis://10.0.0.5/?x=@127.0.0.1` is 10.0.0.5).
fn split_authority(url: &str) -> Option<(&str, Option<&str>, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    Some(match authority.rsplit_once('@') {
        Some((credentials, hosts)) => (scheme, Some(credentials), hosts, tail),
        None => (scheme, None, authority, tail),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_with_slashes_or_hashes_never_reach_messages() {
        // Found by the attack on issue 13: the password was printed whole.
        for url in [
            "redis://:Ab/Cd+Ef=SECRETPW@127.0.0.1:6379",
            "redis://:pa#SECRET@127.0.0.1:6379",
            "rediss://u:pa?SECRET@cache:6380/0",
            "redis+cluster://:x/SECRET@a:1,b:2",
            ":SECRET@host",
        ] {
            let shown = redact_url(url);
            assert!(!shown.contains("SECRET"), "{url} shown as {shown}");
        }
        assert!(redact_url("redis://:Ab/Cd+Ef=SECRETPW@127.0.0.1:6379").contains("percent-encode"));
    }

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
        // An '@' after the authority makes the host ambiguous: no host is shown, so none can
        // mislead (attack findings of issues 12 and 13).
        for url in [
            "redis://u:pw@10.9.9.9:6379/?x=@127.0.0.1",
            "redis://10.9.9.9:6379/#@localhost",
        ] {
            let shown = redact_url(url);
            assert!(
                !shown.contains("pw")
                    && !shown.contains("127.0.0.1")
                    && !shown.contains("localhost"),
                "{shown}"
            );
        }
    }

    #[test]
    fn an_at_sign_after_the_host_does_not_fool_the_transport_check() {
        for url in [
            "redis://tessera:pw@10.9.9.9:6379/?x=@127.0.0.1",
            "redis://tessera:pw@10.9.9.9:6379/#@localhost",
            "redis://10.9.9.9:6379/0?x=@localhost",
            "redis+cluster://10.9.9.9:7000/#@127.0.0.1",
            "redis+cluster://127.0.0.1:7000,10.9.9.9:7000",
            "redis://127.0.0.1.evil.example:6379",
            "redis://localhost.evil.example:6379",
            "redis://[::ffff:10.0.0.1]:6379",
            "REDIS://10.0.0.1:6379",
        ] {
            let checked = Topology::parse(url, false).and_then(|t| t.check_transport());
            assert!(checked.is_err(), "{url} passed");
        }
        for url in [
            "redis://u:p@ss@127.0.0.1:6379",
            "redis://[::1]:6379/2",
            "redis+cluster://127.0.0.1:7000,localhost:7001",
        ] {
            let checked = Topology::parse(url, false).and_then(|t| t.check_transport());
            assert!(checked.is_ok(), "{url}: {checked:?}");
        }
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
    fn a_plain_text_cluster_may_announce_only_this_machine() {
        let local = "a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-16383\n";
        all_on_this_machine(&parse_primaries(local)).unwrap();
        let v6 = "a1 ::1:7001@17001 myself,master - 0 0 1 connected 0-16383\n";
        all_on_this_machine(&parse_primaries(v6)).unwrap();
        // Seeds on loopback, but the cluster points elsewhere (attack finding).
        let away = "a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-8000\n\
                    b2 192.0.2.2:7002@17002 master - 0 0 2 connected 8001-16383\n";
        let err = all_on_this_machine(&parse_primaries(away))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("192.0.2.2:7002") && err.contains("rediss://"),
            "{err}"
        );
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

    #[test]
    fn trackers_hear_suspected_and_slotless_primaries_too() {
        // Found by the review of the near cache: a primary one node only suspects (`fail?`)
        // still takes writes, and one without slots may be importing some.
        let nodes = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7002@17002 master,fail? - 0 0 2 connected 5461-10922
d4 127.0.0.1:7004@17004 slave a1 0 0 1 connected
e5 127.0.0.1:7005@17005 master,fail - 0 0 5 disconnected 1-2
f6 127.0.0.1:7006@17006 master - 0 0 6 connected
";
        assert_eq!(
            tracked_primaries(nodes),
            vec![
                ("127.0.0.1".to_owned(), 7001),
                ("127.0.0.1".to_owned(), 7002),
                ("127.0.0.1".to_owned(), 7006)
            ]
        );
        let away = "a1 10.0.0.5:7001@17001 master - 0 0 1 connected 0-16383\n";
        assert!(all_on_this_machine(&tracked_primaries(away)).is_err());
    }
}
