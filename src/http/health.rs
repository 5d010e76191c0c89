//! Liveness, readiness and the JWKS document.

use super::State;
use actix_web::http::header;
use actix_web::{web, HttpResponse};
use std::sync::atomic::Ordering;

/// `GET /healthz`: the process answers.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz`: Redis answers, runs with `noeviction`, and the key ring is loaded.
pub async fn readyz(state: web::Data<State>) -> HttpResponse {
    let redis = state.probe.ping().await;
    let policy_ok = state.redis_policy_ok.load(Ordering::Relaxed);
    // Ready means this node serves its home region: another region being away makes that
    // region's sessions answer 503, and must not take every node of every region out of its
    // load balancer. Every feed's staleness is reported all the same.
    let home_feed = state.regional.links()[0].region.to_string();
    let now = state.clock.now_ms();
    let (staleness, feeds) = {
        let revoked = state.revoked.read().unwrap_or_else(|e| e.into_inner());
        (revoked.staleness_of(&home_feed, now), revoked.feeds(now))
    };
    let feed_ok = staleness <= state.settings.revocation_max_staleness_secs as i64 * 1000;
    let draining = state.draining.load(Ordering::Relaxed);
    let ready = redis.is_ok() && policy_ok && feed_ok && !draining;
    if let Err(e) = &redis {
        tracing::warn!(error = %format!("{e:#}"), "readiness: Redis unreachable");
    }
    // Informational: an untrusted cache only sends the low-risk read to Redis.
    let caches: Vec<_> = state
        .regional
        .links()
        .iter()
        .filter_map(|l| l.cache.as_ref())
        .collect();
    let near_cache = if caches.is_empty() {
        "off"
    } else if caches.iter().all(|c| c.is_trusted()) {
        "tracking"
    } else {
        "connecting"
    };
    let body = serde_json::json!({
        "status": if draining { "draining" } else if ready { "ready" } else { "unavailable" },
        "region": state.settings.region,
        "redis": if redis.is_ok() { "ok" } else { "unavailable" },
        "redis_policy": if policy_ok { "ok" } else { "maxmemory-policy must be noeviction" },
        "signing_key": state.issuer.keys().signing_kid(),
        "revocation_feed": if feed_ok { "ok" } else { "stale" },
        "revocation_feed_staleness_ms": (staleness != i64::MAX).then_some(staleness),
        "revocation_feeds_staleness_ms": feeds,
        "near_cache": near_cache,
    });
    let mut response = if ready {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    response
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}

/// `GET /metrics` (admin listener, Prometheus text format): counters of minted tokens and audit
/// events by type, plus gauges read at scrape time (revocation-feed staleness, revoked-set size,
/// Redis policy).
pub async fn metrics(state: web::Data<State>) -> HttpResponse {
    let handle = crate::telemetry::metrics();
    {
        let revoked = state.revoked.read().unwrap_or_else(|e| e.into_inner());
        let staleness = revoked.staleness(state.clock.now_ms());
        if staleness != i64::MAX {
            metrics::gauge!("tessera_revocation_feed_staleness_seconds")
                .set(staleness as f64 / 1000.0);
        }
        metrics::gauge!("tessera_revoked_set_entries").set(revoked.len() as f64);
    }
    metrics::gauge!("tessera_redis_policy_ok").set(
        if state.redis_policy_ok.load(Ordering::Relaxed) {
            1.0
        } else {
            0.0
        },
    );
    metrics::gauge!("tessera_verified_token_cache_entries").set(state.token_cache.len() as f64);
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/plain; version=0.0.4"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(handle.render())
}

/// `GET /openapi.json`: the OpenAPI 3.1 description of both listeners (hand-written; a test
/// checks that every documented operation exists).
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .body(include_str!("openapi.json"))
}

/// `GET /.well-known/jwks.json`: public keys (upcoming, current, still-valid previous).
/// Cacheable for 5 minutes: rotation publishes a key at least that long before signing with it.
pub async fn jwks(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            header::CACHE_CONTROL,
            format!("public, max-age={}", state.settings.jwks_cache_secs),
        ))
        .json(state.issuer.keys().jwks())
}
