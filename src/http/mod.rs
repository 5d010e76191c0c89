//! The HTTP layer: one route table per listener, handlers by resource, request parsing.
//!
//! Handlers turn requests into calls on the session domain and domain answers into JSON; they
//! hold no business rules of their own.

pub mod access_log;
pub mod account;
pub mod admin;
pub mod auth;
pub mod body;
pub mod check;
pub mod client_ip;
pub mod cookie;
pub mod cors;
pub mod credential;
pub mod csrf;
pub mod drain;
pub mod fallback;
pub mod feeds;
pub mod guard;
pub mod health;
pub mod oauth;
pub mod page;
pub mod session;
pub mod user_admin;
pub mod views;

use crate::config::Settings;
use crate::session::{Region, SessionService};
use crate::token::Issuer;
use actix_web::web;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Shared state of both listeners.
#[derive(Clone)]
pub struct State {
    /// The session cookie's name and scope (`cookie_domain`).
    pub cookie: cookie::SessionCookie,
    pub service: SessionService,
    pub guard: guard::SessionGuard,
    pub login: crate::authn::login::LoginService,
    pub trusted_proxies: Arc<[ipnet::IpNet]>,
    pub issuer: Issuer,
    pub regions: Arc<[Region]>,
    pub settings: Arc<Settings>,
    /// Reachability of Redis, for readiness.
    pub probe: crate::store::health::Probe,
    /// Every region's Redis (readiness names the regions that do not answer).
    pub regional: crate::store::regional::RegionalStore,
    /// False while Redis runs with an eviction policy other than `noeviction`.
    pub redis_policy_ok: Arc<AtomicBool>,
    /// True once the process was asked to stop: readiness answers 503 at once, so load
    /// balancers take the node out while it still serves what they send meanwhile.
    pub draining: Arc<AtomicBool>,
    /// Configured admin keys (SHA-256 digests, compared in constant time).
    pub admin_keys: Arc<[admin::AdminKeyEntry]>,
    pub audit: crate::store::audit::RedisAudit,
    pub feed: crate::store::revocations::RedisFeed,
    pub feed_tx: tokio::sync::broadcast::Sender<crate::store::revocations::FeedEntry>,
    pub revoked: Arc<std::sync::RwLock<crate::revocation::RevokedSet>>,
    /// Verified access tokens (forward auth, introspection): flushed with key changes.
    pub token_cache: Arc<crate::token::cache::VerifiedCache>,
    /// The shared signing keys: rotation and the ring's upkeep.
    pub signing: Arc<crate::signing::SigningKeys>,
    /// The one clock (a `TestClock` in tests).
    pub clock: crate::clock::SharedClock,
}

impl State {
    /// The client IP as far as this deployment can tell (see `client_ip`).
    pub fn client_ip(&self, req: &actix_web::HttpRequest) -> String {
        client_ip::client_ip(req, &self.trusted_proxies)
            .map(|ip| ip.to_string())
            .unwrap_or_default()
    }

    /// Tessera's own check of an access token: signature and claims (one validation function),
    /// then the pushed revocations, all in memory.
    pub fn check_access_token(
        &self,
        token: &str,
    ) -> Result<Arc<crate::token::AccessClaims>, crate::error::ApiError> {
        use crate::error::ApiError;
        let now = self.clock.now_ms();
        let leeway = self.settings.token_leeway_secs;
        let claims = match self.token_cache.get(token, now / 1000, leeway) {
            Some(claims) => claims,
            None => {
                let claims = self.issuer.validate(token, now / 1000).map_err(|e| {
                    tracing::info!(reason = %e, "access token refused");
                    ApiError::unauthorized(
                        "invalid_token",
                        "the access token is invalid or expired",
                    )
                })?;
                let kid = crate::token::cache::header_kid(token).unwrap_or_default();
                let claims = Arc::new(claims);
                self.token_cache
                    .insert(token, &kid, claims.clone(), now / 1000);
                claims
            }
        };
        let revoked = self.revoked.read().unwrap_or_else(|e| e.into_inner());
        let stale =
            revoked.staleness(now) > self.settings.revocation_max_staleness_secs as i64 * 1000;
        if stale && self.settings.revocation_fail_closed {
            return Err(ApiError::unavailable("revocation feed is stale"));
        }
        if revoked.is_revoked(&claims.sid, &claims.sub, claims.ver, now)
            || !self.service.admits(&claims.sub)
        {
            return Err(ApiError::unauthorized(
                "token_revoked",
                "the session behind this token was revoked",
            ));
        }
        Ok(claims)
    }

    /// Refuses session work while Redis is misconfigured (it could evict sessions silently).
    pub fn ensure_redis_policy(&self) -> Result<(), crate::error::ApiError> {
        if self.redis_policy_ok.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err(crate::error::ApiError::unavailable(
                "Redis maxmemory-policy is not noeviction",
            ))
        }
    }
}

/// The public listener's whole surface.
pub fn public_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(fallback::resource("/v1/login", "POST").route(web::post().to(auth::login)))
        .service(fallback::resource("/v1/login/mfa", "POST").route(web::post().to(auth::login_mfa)))
        .service(
            fallback::resource("/v1/session/step-up", "POST").route(web::post().to(auth::step_up)),
        )
        .service(fallback::resource("/v1/session", "GET").route(web::get().to(session::current)))
        .service(fallback::resource("/v1/auth/check", "GET").route(web::get().to(check::check)))
        .service(
            fallback::resource("/v1/sessions", "GET, DELETE")
                .route(web::get().to(account::list))
                .route(web::delete().to(account::revoke_many)),
        )
        .service(
            fallback::resource("/v1/sessions/{id}", "DELETE")
                .route(web::delete().to(account::revoke_one)),
        )
        .service(
            fallback::resource("/v1/admin/users/{user_id}/sessions", "GET, DELETE")
                .app_data(user_admin::requirement())
                .route(web::get().to(user_admin::list))
                .route(web::delete().to(user_admin::revoke_all)),
        )
        .service(
            fallback::resource("/v1/admin/users/{user_id}/sessions/{id}", "DELETE")
                .app_data(user_admin::requirement())
                .route(web::delete().to(user_admin::revoke_one)),
        )
        .service(fallback::resource("/v1/logout", "POST").route(web::post().to(session::logout)))
        .service(fallback::resource("/v1/token", "POST").route(web::post().to(session::mint_token)))
        .service(
            fallback::resource("/v1/token/refresh", "POST").route(web::post().to(auth::refresh)),
        )
        .service(
            fallback::resource("/v1/token/revoke", "POST").route(web::post().to(oauth::revoke_own)),
        )
        .service(
            fallback::resource("/.well-known/jwks.json", "GET").route(web::get().to(health::jwks)),
        )
        .service(fallback::resource("/openapi.json", "GET").route(web::get().to(health::openapi)))
        .service(fallback::resource("/healthz", "GET").route(web::get().to(health::healthz)))
        .service(fallback::resource("/readyz", "GET").route(web::get().to(health::readyz)))
        .service(fallback::resource("/account", "GET").route(web::get().to(page::index)))
        .service(fallback::resource("/account/app.js", "GET").route(web::get().to(page::script)))
        .service(fallback::resource("/account/app.css", "GET").route(web::get().to(page::style)))
        .service(
            fallback::resource("/account/demo/payment", "POST")
                .route(web::post().to(page::demo_payment)),
        );
}

/// The admin listener's whole surface (every route needs the admin API key).
pub fn admin_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        fallback::resource("/admin/sessions", "POST")
            .app_data(admin::Scope::Sessions)
            .route(web::post().to(admin::create_session)),
    )
    .service(
        fallback::resource("/admin/sessions/{id}/elevate", "POST")
            .app_data(admin::Scope::Sessions)
            .route(web::post().to(admin::elevate)),
    )
    .service(
        fallback::resource("/admin/users/{user_id}/sessions", "GET")
            .app_data(admin::Scope::Sessions)
            .route(web::get().to(admin::list_user_sessions)),
    )
    .service(
        fallback::resource("/admin/users/{user_id}/sessions/{id}", "DELETE")
            .app_data(admin::Scope::Sessions)
            .route(web::delete().to(admin::revoke_user_session)),
    )
    .service(
        fallback::resource("/admin/users/{user_id}/revoke-all", "POST")
            .app_data(admin::Scope::Sessions)
            .route(web::post().to(admin::revoke_all)),
    )
    .service(
        fallback::resource("/admin/users/{user_id}", "DELETE")
            .app_data(admin::Scope::Sessions)
            .route(web::delete().to(admin::erase_user)),
    )
    .service(
        fallback::resource("/admin/audit", "GET")
            .app_data(admin::Scope::Audit)
            .route(web::get().to(admin::audit)),
    )
    .service(
        fallback::resource("/admin/keys/rotate", "POST")
            .app_data(admin::Scope::Keys)
            .route(web::post().to(admin::rotate_keys)),
    )
    .service(
        fallback::resource("/admin/revoke", "POST")
            .app_data(admin::Scope::Revoke)
            .route(web::post().to(oauth::revoke)),
    )
    .service(
        fallback::resource("/admin/introspect", "POST")
            .app_data(admin::Scope::Introspect)
            .route(web::post().to(oauth::introspect)),
    )
    .service(
        fallback::resource("/admin/revocations", "GET")
            .app_data(admin::Scope::Revocations)
            .route(web::get().to(feeds::revocations)),
    )
    .service(
        fallback::resource("/admin/events", "GET")
            .app_data(admin::Scope::Audit)
            .route(web::get().to(feeds::events)),
    )
    .service(fallback::resource("/metrics", "GET").route(web::get().to(health::metrics)))
    .service(fallback::resource("/healthz", "GET").route(web::get().to(health::healthz)))
    .service(fallback::resource("/readyz", "GET").route(web::get().to(health::readyz)));
}
