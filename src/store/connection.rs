//! Connections to one region's Redis, with explicit timeouts everywhere.

use anyhow::Context;
use deadpool_redis::{PoolConfig, Runtime, Timeouts};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;

/// Connection settings (see `config.rs` for the documented defaults).
#[derive(Clone, Debug)]
pub struct RedisSettings {
    pub url: String,
    /// Opening a TCP connection (and the handshake) may take this long.
    pub connect_timeout: Duration,
    /// Any single command may take this long before the request fails closed with 503.
    pub command_timeout: Duration,
    /// Connections for out-of-band work (health probes, key ring, stream readers).
    pub pool_size: usize,
}

/// The connections a node holds to one Redis.
#[derive(Clone)]
pub struct RedisConnections {
    /// Multiplexed and self-reconnecting: the request path.
    pub manager: ConnectionManager,
    /// What it takes to open more managers like `manager` (one per worker thread, see
    /// `PerThread`).
    pub client: redis::Client,
    pub config: ConnectionManagerConfig,
    /// Pooled connections for work that may hold one (never on the request path: a deadpool
    /// checkout sends extra commands and costs a third of the throughput).
    pub pool: deadpool_redis::Pool,
}

impl RedisConnections {
    /// Connects, or explains what is wrong with the URL or the server.
    pub async fn connect(settings: &RedisSettings) -> anyhow::Result<Self> {
        let client = redis::Client::open(settings.url.as_str())
            .with_context(|| "TESSERA_REDIS_URL is not a valid redis:// URL")?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.command_timeout))
            // Reconnect quickly and give up quickly: a request waits at most for one attempt,
            // the next request tries again.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_with_config(client.clone(), config.clone())
            .await
            .with_context(|| {
                format!(
                    "cannot reach Redis at {}: start redis-server or set TESSERA_REDIS_URL",
                    redact_url(&settings.url)
                )
            })?;
        let mut pool_config = deadpool_redis::Config::from_url(settings.url.clone());
        pool_config.pool = Some(PoolConfig {
            max_size: settings.pool_size,
            timeouts: Timeouts {
                wait: Some(settings.connect_timeout),
                create: Some(settings.connect_timeout),
                recycle: Some(settings.command_timeout),
            },
            ..PoolConfig::default()
        });
        let pool = pool_config
            .create_pool(Some(Runtime::Tokio1))
            .context("cannot build the Redis connection pool")?;
        Ok(Self {
            manager,
            client,
            config,
            pool,
        })
    }

    /// A connection source that gives every thread its own multiplexed connection.
    pub fn per_thread(&self) -> PerThread {
        let threads = PerThread::new(
            self.client.clone(),
            self.config.clone(),
            self.manager.clone(),
        );
        threads.registry.register(self.manager.clone());
        threads
    }
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
    client: redis::Client,
    config: ConnectionManagerConfig,
    fallback: ConnectionManager,
    registry: Registry,
}

impl PerThread {
    fn new(
        client: redis::Client,
        config: ConnectionManagerConfig,
        fallback: ConnectionManager,
    ) -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        Self {
            id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            client,
            config,
            fallback,
            registry: Registry::default(),
        }
    }

    /// The connections opened so far (and from now on), for `Registry::keep_alive`.
    pub fn registry(&self) -> Registry {
        self.registry.clone()
    }

    /// This thread's connection (a cheap clone of a handle).
    pub fn get(&self) -> ConnectionManager {
        LOCAL.with(|local| {
            local
                .borrow_mut()
                .entry(self.id)
                .or_insert_with(|| {
                    let conn = ConnectionManager::new_lazy_with_config(
                        self.client.clone(),
                        self.config.clone(),
                    )
                    .unwrap_or_else(|_| self.fallback.clone());
                    self.registry.register(conn.clone());
                    conn
                })
                .clone()
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
    use super::redact_url;

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
    }
}
