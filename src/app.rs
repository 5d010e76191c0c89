//! Builds the two listeners and the background tasks from validated settings.

use crate::authn::login::LoginService;
use crate::authn::{Directory, PasswordHasher};
use crate::clock::SharedClock;
use crate::config::Settings;
use crate::http::guard::SessionGuard;
use crate::http::{self, fallback, State};
use crate::session::SessionService;
use crate::store::auth::RedisAuthStore;
use crate::store::{self, KeyLayout, RedisConnections, RedisSessionStore};
use crate::token::{ActiveKeys, Issuer, Kek};
use actix_web::dev::Server;
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A built, bound, not yet running Tessera node.
pub struct Application {
    guard: SessionGuard,
    draining: Arc<AtomicBool>,
    shutdown: (Duration, Duration),
    public_port: u16,
    admin_port: u16,
    public: Server,
    admin: Server,
    background: Vec<tokio::task::JoinHandle<()>>,
    kek_created: bool,
    /// The settings this node started with (SIGHUP compares a fresh read against them).
    settings: Settings,
    /// Wakes the users-file watcher to re-read the file now (SIGHUP).
    users_reload: Arc<tokio::sync::Notify>,
}

impl Application {
    /// Connects to Redis, checks it, loads (or creates) the key ring and binds both listeners.
    /// Port 0 binds a free port; ask `public_port()`/`admin_port()` which.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, crate::clock::system()).await
    }

    /// `build` with the clock every component reads (tests pass a `TestClock`).
    pub async fn build_with_clock(settings: Settings, clock: SharedClock) -> anyhow::Result<Self> {
        settings.validate()?;
        crate::telemetry::metrics();
        let settings = Arc::new(settings);
        let layout = KeyLayout::new(settings.key_prefix.clone());
        let retention_ms = settings.revocation_retention_ms();
        let regional = connect_regions(&settings, &layout, clock.clone()).await?;
        let links = regional.links().to_vec();
        let redis = links[0].redis.clone();
        let policy = store::health::maxmemory_policy(&redis)
            .await
            .context("cannot read Redis INFO")?;
        store::health::check_policy(&policy)?;
        store::health::check_access(&redis, &settings.key_prefix).await?;

        let (kek, kek_created) = Kek::load(
            settings.kek.as_ref().map(|k| k.expose()),
            &settings.keys_dir,
            true,
        )?;
        let pools = crate::signing::SigningKeys::ring_region_first(
            links
                .iter()
                .map(|l| (l.region.clone(), l.redis.pool.clone()))
                .collect(),
        );
        let (ring, created) = load_ring(&pools, &layout, &kek, &settings, clock.now_ms()).await?;
        let opened = ring.open(&kek)?;
        let keys = ActiveKeys::from_ring(&opened, clock.now_ms())?;
        tracing::info!(
            kid = keys.signing_kid(),
            created,
            kek = kek.fingerprint(),
            regions = links.len(),
            "key ring loaded"
        );
        let issuer = Issuer::new(settings.issuer_settings(), keys);
        let kek = Arc::new(kek);
        let token_cache = Arc::new(crate::token::cache::VerifiedCache::new(100_000));
        let signing = Arc::new(crate::signing::SigningKeys::new(
            pools,
            layout.clone(),
            kek.clone(),
            issuer.clone(),
            token_cache.clone(),
            ring,
            settings.rotation_policy(),
            clock.clone(),
        ));

        let regions = settings.known_regions();
        let audit = crate::store::audit::RedisAudit::new(redis.conn.clone(), layout.clone());
        let feed = links[0].feed.clone();
        let revoked = Arc::new(std::sync::RwLock::new(
            crate::revocation::RevokedSet::default(),
        ));
        let directory_handle = crate::authn::directory::SharedDirectory::default();
        let service = SessionService::new(
            Arc::new(regional.clone()),
            Arc::new(issuer.clone()),
            settings.session_policy(),
            settings.limit_policy(),
            settings.home_region(),
            regions.clone(),
            Arc::new(audit.clone()),
        )
        .with_role_limits(settings.role_session_limits.clone())
        .with_feed(Arc::new(regional.feeds()))
        .with_gate(Arc::new(directory_handle.clone()))
        .with_clock(clock.clone())
        .with_successor_mac(kek.clone())
        .with_pushed_revocations(Arc::new(crate::revocation::FollowedFeed {
            set: revoked.clone(),
            max_staleness_ms: settings.revocation_max_staleness_secs as i64 * 1000,
        }));
        let (feed_tx, _) = tokio::sync::broadcast::channel(4096);
        let redis_policy_ok = Arc::new(AtomicBool::new(true));
        let guard = SessionGuard::new(
            service.clone(),
            settings.allowed_origins.clone(),
            redis_policy_ok.clone(),
        )
        .with_network(settings.trusted_proxy_nets(), settings.anomaly_rules())
        .with_cookie_name(http::cookie::SessionCookie::new(settings.cookie_domain.clone()).name());
        let directory = match &settings.users_file {
            Some(path) => Some(Directory::load(path)?),
            None => {
                tracing::warn!("no users file (TESSERA_USERS_FILE): /v1/login refuses everyone");
                None
            }
        };
        let login = LoginService::new(
            directory_handle,
            PasswordHasher::new(
                settings.argon2_concurrency,
                Duration::from_millis(settings.argon2_queue_ms),
            ),
            Arc::new(
                RedisAuthStore::new(
                    redis.conn.clone(),
                    layout.clone(),
                    retention_ms,
                    clock.clone(),
                )
                .with_regions(regional.clone()),
            ),
            service.clone(),
            settings.login_limits(),
        );
        // Without a users file there is nothing to install, and nothing to judge as removed.
        if let Some(directory) = directory {
            login
                .install(directory)
                .await
                .context("cannot sync the users file with Redis")?;
        }
        if settings.admin_api_key.is_none() && settings.admin_keys.is_empty() {
            tracing::warn!("no admin API key configured (TESSERA_ADMIN_API_KEY): the admin API refuses every request");
        }
        let state = State {
            cookie: http::cookie::SessionCookie::new(settings.cookie_domain.clone()),
            service,
            guard,
            login,
            trusted_proxies: settings.trusted_proxy_nets().into(),
            issuer: issuer.clone(),
            regions: regions.into(),
            settings: settings.clone(),
            probe: store::health::Probe::new(redis.pool.clone()),
            regional: regional.clone(),
            redis_policy_ok,
            draining: Arc::new(AtomicBool::new(false)),
            admin_keys: http::admin::AdminKeyEntry::from_settings(&settings).into(),
            audit: audit.clone(),
            feed: feed.clone(),
            feed_tx: feed_tx.clone(),
            revoked: revoked.clone(),
            token_cache,
            signing,
            clock: clock.clone(),
        };

        let public_listener = TcpListener::bind(&settings.public_addr)
            .with_context(|| format!("cannot listen on public_addr {}", settings.public_addr))?;
        let admin_listener = TcpListener::bind(&settings.admin_addr)
            .with_context(|| format!("cannot listen on admin_addr {}", settings.admin_addr))?;
        let public_port = public_listener.local_addr()?.port();
        let admin_port = admin_listener.local_addr()?.port();
        let guard = state.guard.clone();
        let public = serve(public_listener, state.clone(), http::public_routes)?;
        let admin = serve(admin_listener, state.clone(), http::admin_routes)?;

        let mut background = vec![tokio::spawn(watch_redis(state.clone(), redis.clone()))];
        background.push(tokio::spawn(watch_keyring(state.signing.clone())));
        // Every node follows, sweeps and beats the feed of every region: a region with no
        // node of its own still has its revocations pushed and its staleness measured.
        for link in &links {
            let keep_alive = link.store.connection_registry();
            background.push(tokio::spawn(keep_alive.keep_alive()));
            background.push(tokio::spawn(
                link.feed.clone().follow(revoked.clone(), feed_tx.clone()),
            ));
            background.push(tokio::spawn(
                link.feed
                    .clone()
                    .sweep(Duration::from_secs(settings.outbox_sweep_secs.max(1))),
            ));
            background.push(tokio::spawn(link.feed.clone().heartbeat()));
            if let Some(cache) = &link.cache {
                let tracker = store::tracking::Tracker::new(
                    cache.clone(),
                    link.redis.clone(),
                    layout.all_sessions_prefix(),
                    Duration::from_millis(settings.redis_command_timeout_ms),
                );
                background.push(tokio::spawn(tracker.run()));
            }
        }
        background.push(tokio::spawn(regional.clone().deliver_pending()));
        let users_reload = Arc::new(tokio::sync::Notify::new());
        if let Some(path) = settings.users_file.clone() {
            background.push(tokio::spawn(watch_users_file(
                state.clone(),
                path,
                users_reload.clone(),
            )));
        }
        Ok(Self {
            guard,
            draining: state.draining.clone(),
            shutdown: (
                Duration::from_secs(settings.shutdown_drain_secs),
                Duration::from_secs(settings.shutdown_timeout_secs),
            ),
            public_port,
            admin_port,
            public,
            admin,
            background,
            kek_created,
            settings: Settings::clone(&settings),
            users_reload,
        })
    }

    /// The session guard, for apps that run Tessera in-process next to their own routes.
    pub fn session_guard(&self) -> SessionGuard {
        self.guard.clone()
    }

    pub fn public_port(&self) -> u16 {
        self.public_port
    }

    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// True when this start created the key-encryption key file (first local run).
    pub fn kek_created(&self) -> bool {
        self.kek_created
    }

    /// Serves until both listeners stop (embedders and tests stop it by dropping the task).
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let result = tokio::try_join!(self.public, self.admin);
        for task in self.background {
            task.abort();
        }
        result.context("server error")?;
        Ok(())
    }

    /// Serves until SIGTERM or SIGINT, then stops gracefully: readiness answers 503 at once
    /// while requests are still served for `shutdown_drain_secs`; then the listeners close and
    /// requests in flight get up to `shutdown_timeout_secs`; then the background tasks stop.
    ///
    /// SIGHUP re-reads the users file at once and the settings from `config` (and the
    /// environment): the log filter changes in place; any other changed setting is named in a
    /// warning as taking effect at the next start. Sessions are untouched.
    pub async fn run_until_signalled(
        self,
        config: Option<std::path::PathBuf>,
    ) -> anyhow::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
        let (mut running, users_reload) = (self.settings.clone(), self.users_reload.clone());
        let reloader = tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: re-reading the users file and the settings");
                users_reload.notify_one();
                reload_settings(&mut running, config.as_deref());
            }
        });
        let (public, admin) = (self.public.handle(), self.admin.handle());
        let (drain, _) = self.shutdown;
        let draining = self.draining.clone();
        let stopper = tokio::spawn(async move {
            let which = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            draining.store(true, Ordering::Relaxed);
            tracing::info!(
                signal = which,
                drain_secs = drain.as_secs(),
                "stopping: readiness is 503 now; still serving while load balancers notice"
            );
            tokio::time::sleep(drain).await;
            tracing::info!("stopping: listeners closed; waiting for requests in flight");
            tokio::join!(public.stop(true), admin.stop(true));
        });
        let result = self.run_until_stopped().await;
        stopper.abort();
        reloader.abort();
        tracing::info!("tessera stopped");
        result
    }
}

fn serve(
    listener: TcpListener,
    state: State,
    routes: fn(&mut web::ServiceConfig),
) -> anyhow::Result<Server> {
    let workers = state.settings.workers;
    let body_limit = state.settings.max_body_bytes;
    let state_shutdown_timeout = state.settings.shutdown_timeout_secs;
    let guard = web::Data::new(state.guard.clone());
    let data = web::Data::new(state);
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(guard.clone())
            .app_data(fallback::json_config(body_limit))
            .app_data(fallback::form_config(body_limit))
            .app_data(web::PayloadConfig::new(body_limit))
            .app_data(http::body::BodyLimit(body_limit))
            .app_data(fallback::path_config())
            .app_data(fallback::query_config())
            .wrap(
                DefaultHeaders::new()
                    .add(("X-Content-Type-Options", "nosniff"))
                    .add(("Cache-Control", "no-store"))
                    .add(("Referrer-Policy", "no-referrer")),
            )
            .wrap(actix_web::middleware::from_fn(http::cors::cors))
            .wrap(actix_web::middleware::from_fn(
                http::drain::close_when_draining,
            ))
            .wrap(actix_web::middleware::from_fn(http::access_log::access_log))
            .configure(routes)
            .default_service(web::to(fallback::not_found))
    })
    .listen(listener)?
    .client_request_timeout(Duration::from_secs(5))
    // Signals are Tessera's (`run_until_signalled`: readiness drains first).
    .disable_signals()
    .shutdown_timeout(state_shutdown_timeout);
    if let Some(n) = workers {
        server = server.workers(n);
    }
    Ok(server.run())
}

/// Re-reads `maxmemory_policy` (refusing session work while it is wrong) and rotates the key
/// ring when the schedule says so, every `redis_check_interval_secs`.
async fn watch_redis(state: State, redis: RedisConnections) {
    let mut tick = tokio::time::interval(Duration::from_secs(
        state.settings.redis_check_interval_secs.max(1),
    ));
    tick.tick().await;
    loop {
        tick.tick().await;
        match store::health::maxmemory_policy(&redis).await {
            Ok(policy) => {
                let ok = store::health::check_policy(&policy);
                if let Err(e) = &ok {
                    tracing::error!(error = %e, "refusing session work");
                }
                let was = state.redis_policy_ok.swap(ok.is_ok(), Ordering::Relaxed);
                if !was && ok.is_ok() {
                    tracing::info!("Redis maxmemory-policy is noeviction again: serving");
                }
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot read Redis INFO"),
        }
        if let Some(days) = state.settings.key_rotation_days {
            state.signing.rotate_if_due(days).await;
        }
    }
}

/// Keeps the shared key ring whole every 2 s (see `SigningKeys::keep_whole`), so no node
/// mints with a key the others do not publish for longer than that.
async fn watch_keyring(signing: Arc<crate::signing::SigningKeys>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.tick().await;
    loop {
        tick.tick().await;
        signing.keep_whole().await;
    }
}

/// What SIGHUP does with the settings: a fresh read that does not validate changes nothing; a
/// new `log` filter applies at once; every other change is named for the next start.
fn reload_settings(running: &mut Settings, config: Option<&std::path::Path>) {
    let mut fresh = match Settings::load(config) {
        Ok(fresh) => fresh,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "SIGHUP: the settings are invalid; nothing changed");
            return;
        }
    };
    if fresh.log != running.log {
        match crate::telemetry::set_filter(&fresh.log) {
            Ok(()) => {
                tracing::info!(log = %fresh.log, "SIGHUP: log filter changed");
                running.log = fresh.log.clone();
            }
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: the log filter is unchanged");
                // Said once, as refused; not again as "needs a restart".
                fresh.log = running.log.clone();
            }
        }
    }
    let changed = changed_settings(running, &fresh);
    if !changed.is_empty() {
        tracing::warn!(
            settings = %changed.join(", "),
            "SIGHUP: these settings changed and take effect only after a restart"
        );
    }
}

/// The names of the settings whose values differ (secrets are compared as redacted, so a
/// changed secret is not named).
fn changed_settings(a: &Settings, b: &Settings) -> Vec<String> {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(a), serde_json::to_value(b))
    else {
        return Vec::new();
    };
    a.iter()
        .filter(|(key, value)| b.get(*key) != Some(*value))
        .map(|(key, _)| key.clone())
        .collect()
}

/// How long the users file must be unchanged before a reload reads it.
const USERS_FILE_SETTLE: Duration = Duration::from_secs(1);

/// Reloads the users file when it changes, or at once when `now` is notified (SIGHUP); a
/// broken edit, or one that would remove every user, keeps the previous users (and says so).
async fn watch_users_file(state: State, path: std::path::PathBuf, now: Arc<tokio::sync::Notify>) {
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut seen = modified(&path);
    let mut reported = None;
    let mut tick =
        tokio::time::interval(Duration::from_secs(state.settings.users_reload_secs.max(1)));
    loop {
        let forced = tokio::select! {
            _ = tick.tick() => false,
            _ = now.notified() => true,
        };
        let mut now = modified(&path);
        if now == seen && !forced {
            continue;
        }
        // Load only a file left alone for USERS_FILE_SETTLE: an editor or a `>` redirect writes
        // in pieces, and a piece taken for the whole file ends the sessions of every user it
        // lacks (the attack on issue 13 emptied the file for 0.3 s and lost every session).
        while let Some(age) = now.and_then(|t| t.elapsed().ok()) {
            if age >= USERS_FILE_SETTLE {
                break;
            }
            tokio::time::sleep(USERS_FILE_SETTLE - age).await;
            now = modified(&path);
        }
        match Directory::load(&path) {
            Ok(directory) if directory.is_empty() && !state.login.directory().is_empty() => {
                if reported != now {
                    reported = now;
                    tracing::error!(
                        "the users file has no users: refusing to end every session (a file \
                         emptied by mistake?); to remove users, delete their entries or set \
                         `disabled = true`, keeping at least one entry"
                    );
                }
            }
            Ok(directory) => match state.login.install(directory).await {
                Ok(()) => {
                    seen = now;
                    reported = None;
                    tracing::info!(users = state.login.directory().len(), "users file reloaded");
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "users file reload could not reach Redis; will retry")
                }
            },
            // Not marked as seen: a half-written file is read again on the next tick. Said once.
            Err(e) if reported != now => {
                reported = now;
                tracing::error!(error = %format!("{e:#}"), "users file is invalid; keeping the previous users");
            }
            Err(_) => {}
        }
    }
}

/// Connects a guard for an application embedding Tessera's checks (see `examples/shop.rs`):
/// it reads sessions from the same Redis with the same settings, and never mints tokens.
pub async fn connect_guard(settings: &crate::Settings) -> anyhow::Result<SessionGuard> {
    settings.validate()?;
    let layout = KeyLayout::new(settings.key_prefix.clone());
    let regional = connect_regions(settings, &layout, crate::clock::system()).await?;
    let service = SessionService::new(
        Arc::new(regional),
        Arc::new(NoMinting),
        settings.session_policy(),
        settings.limit_policy(),
        settings.home_region(),
        settings.known_regions(),
        Arc::new(crate::audit::LogOnly),
    );
    Ok(SessionGuard::new(
        service,
        settings.allowed_origins.clone(),
        Arc::new(AtomicBool::new(true)),
    )
    .with_network(settings.trusted_proxy_nets(), settings.anomaly_rules())
    .with_cookie_name(http::cookie::SessionCookie::new(settings.cookie_domain.clone()).name()))
}

/// The session service on the configured Redis, without listeners: what `tessera sessions`
/// uses, so the CLI lists and ends sessions through the same code as the admin API (audited,
/// pushed to the revocation feed).
pub async fn connect_service(settings: &crate::Settings) -> anyhow::Result<SessionService> {
    settings.validate()?;
    let layout = KeyLayout::new(settings.key_prefix.clone());
    let regional = connect_regions(settings, &layout, crate::clock::system()).await?;
    let audit = crate::store::audit::RedisAudit::new(
        regional.links()[0].redis.conn.clone(),
        layout.clone(),
    );
    Ok(SessionService::new(
        Arc::new(regional.clone()),
        Arc::new(NoMinting),
        settings.session_policy(),
        settings.limit_policy(),
        settings.home_region(),
        settings.known_regions(),
        Arc::new(audit),
    )
    .with_feed(Arc::new(regional.feeds())))
}

/// The ring from the ring region (created there on the very first start); while that region is
/// away, from the first copy another region holds.
async fn load_ring(
    pools: &[(crate::session::Region, store::connection::Pool)],
    layout: &KeyLayout,
    kek: &Kek,
    settings: &Settings,
    now: i64,
) -> anyhow::Result<(crate::token::StoredRing, bool)> {
    let (ring_region, pool) = &pools[0];
    // The ring region answers but lost its ring (a restart without persistence, a flush):
    // a copy kept elsewhere goes back first. A fresh ring would sign with a key no verifier
    // knows yet, and be copied over every region's copy of the keys still in use.
    if let Ok(None) = store::keyring::load_current(pool, layout).await {
        for (region, copy) in &pools[1..] {
            let Ok(Some(ring)) = store::keyring::load_current(copy, layout).await else {
                continue;
            };
            // Only a ring this node can sign from goes back (a copy someone else wrote, one
            // sealed under another KEK, or one whose keys all retired would keep every node
            // from starting).
            if let Err(e) = ring.usable(kek, now) {
                tracing::error!(copy = %region, error = %format!("{e:#}"), "the key ring copy is not usable; not restored from it");
                continue;
            }
            if let Ok(true) = store::keyring::restore(pool, layout, &ring).await {
                tracing::error!(ring_region = %ring_region, copy = %region, "the ring region had lost the key ring (data lost?); restored it from a copy");
            }
            break;
        }
    }
    let error =
        match store::keyring::load_or_create(pool, layout, kek, settings.signing(), now).await {
            Ok(found) => return Ok(found),
            Err(e) => e,
        };
    for (region, copy) in &pools[1..] {
        if let Ok(Some(ring)) = store::keyring::load_current(copy, layout).await {
            if let Err(e) = ring.usable(kek, now) {
                tracing::error!(copy = %region, error = %format!("{e:#}"), "the key ring copy is not usable; skipped");
                continue;
            }
            tracing::warn!(ring_region = %ring_region, copy = %region, error = %format!("{error:#}"), "the ring region does not answer: starting from a copy");
            return Ok((ring, false));
        }
    }
    Err(error.context(format!(
        "the key ring lives in region '{ring_region}', which does not answer, and no region holds a copy"
    )))
}

/// Connects to every region's Redis: the home region at once (a node without it cannot
/// start), the others lazily (an outage elsewhere must not keep this node down).
async fn connect_regions(
    settings: &Settings,
    layout: &KeyLayout,
    clock: SharedClock,
) -> anyhow::Result<store::regional::RegionalStore> {
    let retention_ms = settings.revocation_retention_ms();
    let known = settings.known_regions();
    // Regions that share one Redis are one link: one index, one version counter, one feed.
    let mut groups: Vec<(crate::config::RegionTarget, Vec<crate::session::Region>)> = Vec::new();
    for target in settings.region_targets()? {
        match groups
            .iter_mut()
            .find(|(t, _)| t.url == target.url && t.cluster == target.cluster)
        {
            Some((_, regions)) => regions.push(target.region),
            None => groups.push((target.clone(), vec![target.region])),
        }
    }
    let mut links = Vec::new();
    for (i, (target, mut regions)) in groups.into_iter().enumerate() {
        regions.sort();
        let name = regions[0].clone();
        let redis_settings = settings.redis_for(&target);
        let redis = if i == 0 {
            RedisConnections::connect(&redis_settings).await
        } else {
            RedisConnections::connect_lazily(&redis_settings).await
        }
        .with_context(|| format!("region '{}'", target.region))?;
        let shared = regions.len() > 1;
        // One side connection per Redis for every `WAIT` (it blocks the connection it is on).
        let confirm = redis.confirmer(&redis_settings, &settings.key_prefix)?;
        let cache = (settings.session_cache_entries > 0).then(|| {
            store::near_cache::NearCache::new(settings.session_cache_entries, name.as_str())
        });
        let store = RedisSessionStore::new(
            redis.per_thread(),
            layout.clone(),
            known.clone(),
            clock.clone(),
        )
        .with_revocation_ttl(retention_ms)
        .with_longest_session(settings.longest_session_ms())
        .with_confirmer(confirm.clone())
        .with_cache(cache.clone());
        let feed = crate::store::revocations::RedisFeed::new(
            &redis,
            layout.clone(),
            name.as_str(),
            retention_ms,
            clock.clone(),
        )
        .shared_by_regions(shared)
        .with_confirmer(confirm);
        links.push(store::regional::RegionLink {
            region: name,
            regions,
            redis,
            store,
            feed,
            cache,
        });
    }
    let pending = store::pending::Pending::new(
        links[0].redis.conn.clone(),
        layout.clone(),
        links[0].feed.clone(),
        clock,
    )
    .with_confirmer(
        links[0]
            .redis
            .confirmer(&settings.home_redis(), &settings.key_prefix)?,
    );
    Ok(store::regional::RegionalStore::new(
        links,
        layout.clone(),
        pending,
        Duration::from_millis(settings.redis_command_timeout_ms),
    ))
}

/// The token issuer of a process that only checks sessions.
struct NoMinting;

impl crate::session::TokenIssuer for NoMinting {
    fn mint(
        &self,
        _: &crate::session::Session,
        _: Option<&str>,
        _: crate::clock::UnixMillis,
    ) -> Result<crate::session::ports::AccessToken, crate::session::ports::MintError> {
        Err(anyhow::anyhow!("this process checks sessions only; mint tokens at Tessera").into())
    }
}
