//! The embeddable verifier: what another service of your system links to check Tessera's access
//! tokens locally, with revocations pushed to it.
//!
//! * Keys come from Tessera's JWKS, cached by `kid`. An unknown `kid` triggers one refetch
//!   (single-flight, at most once per `refetch_interval`); keys already known are kept when a
//!   fetch fails. Keys that leave the JWKS flush the tokens they verified from the cache.
//! * Validation is Tessera's one function (`token::validate_access_token`).
//! * Verified tokens are cached by their exact bytes (bounded), so a client reusing its token
//!   costs a hash lookup; expiry and revocation are still checked on every request.
//! * Revocations arrive over Tessera's SSE feed (`GET /admin/revocations`, an admin key with
//!   the `revocations` scope), resumed by `Last-Event-ID` after a disconnect, never with Redis
//!   credentials. When the feed is silent longer than `max_staleness`, `is_stale()` says so and,
//!   with `fail_closed_when_stale`, every token is refused.

pub mod extract;
mod sse;

use crate::clock::SharedClock;
use crate::revocation::{Revocation, RevokedSet};
use crate::token::{
    validate_access_token, AccessClaims, KeyLookup, TokenError, Validation, VerifyingKey,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

pub use extract::VerifiedToken;

/// How a verifier reaches Tessera and what it accepts.
#[derive(Clone, Debug)]
pub struct VerifierConfig {
    /// e.g. `https://auth.example.com/.well-known/jwks.json`
    pub jwks_url: String,
    /// e.g. `http://tessera-admin.internal:8081/admin/revocations`; None: no pushed revocations.
    pub revocations_url: Option<String>,
    /// An admin key with the `revocations` scope.
    pub api_key: Option<String>,
    pub validation: Validation,
    pub max_staleness: Duration,
    pub fail_closed_when_stale: bool,
    /// Verified tokens kept (by exact bytes).
    pub cache_capacity: usize,
    /// Minimum gap between refetches triggered by unknown `kid`s.
    pub refetch_interval: Duration,
    /// Regular JWKS refresh (picks up rotations and retirements).
    pub jwks_refresh: Duration,
    /// Expiry and feed staleness are judged on this clock (a `TestClock` in tests).
    pub clock: SharedClock,
}

impl VerifierConfig {
    pub fn new(jwks_url: impl Into<String>, validation: Validation) -> Self {
        Self {
            jwks_url: jwks_url.into(),
            revocations_url: None,
            api_key: None,
            validation,
            max_staleness: Duration::from_secs(10),
            fail_closed_when_stale: false,
            cache_capacity: 100_000,
            refetch_interval: Duration::from_secs(30),
            jwks_refresh: Duration::from_secs(300),
            clock: crate::clock::system(),
        }
    }
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error(transparent)]
    Invalid(#[from] TokenError),
    #[error("the session behind this token was revoked")]
    Revoked,
    #[error("the revocation feed is stale")]
    Stale,
}

/// The usable keys of a JWKS document, by `kid`.
#[derive(Default)]
pub struct Keys(HashMap<String, VerifyingKey>);

impl KeyLookup for Keys {
    fn key(&self, kid: &str) -> Option<&VerifyingKey> {
        self.0.get(kid)
    }
}

impl Keys {
    /// Imports a JWKS strictly: only EC P-256 / Ed25519 signature keys (`VerifyingKey::from_jwk`),
    /// every key needs a `kid`, and a `kid` that appears twice is dropped altogether (which of
    /// the two would be meant is exactly what an attacker would like to decide).
    pub fn from_jwks(doc: &serde_json::Value) -> Self {
        let mut keys = HashMap::new();
        let mut seen = std::collections::HashSet::new();
        let mut duplicated = std::collections::HashSet::new();
        for jwk in doc["keys"].as_array().into_iter().flatten() {
            let Some(kid) = jwk["kid"].as_str() else {
                continue;
            };
            if !seen.insert(kid.to_owned()) {
                duplicated.insert(kid.to_owned());
                continue;
            }
            match VerifyingKey::from_jwk(jwk) {
                Ok(key) => {
                    keys.insert(kid.to_owned(), key);
                }
                Err(e) => tracing::warn!(kid, error = %e, "JWKS key refused"),
            }
        }
        for kid in duplicated {
            tracing::warn!(kid = %kid, "JWKS holds this kid twice: both refused");
            keys.remove(&kid);
        }
        Keys(keys)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Counters for tests and metrics.
#[derive(Default, Debug)]
pub struct VerifierStats {
    pub jwks_fetches: AtomicU64,
    pub cache_hits: AtomicU64,
    pub signature_checks: AtomicU64,
}

struct Inner {
    config: VerifierConfig,
    http: reqwest::Client,
    keys: RwLock<Keys>,
    /// Single flight: one refetch at a time; `last_fetch` rate-limits unknown-kid refetches.
    fetch_lock: tokio::sync::Mutex<()>,
    last_fetch: Mutex<Option<Instant>>,
    cache: crate::token::cache::VerifiedCache,
    revoked: RwLock<RevokedSet>,
    stats: VerifierStats,
}

/// A cheap-to-clone handle; background tasks stop when the last handle drops.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

impl Verifier {
    /// Fetches the JWKS once (an error if Tessera cannot be reached at all: a verifier with no
    /// keys would refuse everything) and starts the background refresh and feed follower.
    pub async fn start(config: VerifierConfig) -> anyhow::Result<Self> {
        let capacity = config.cache_capacity;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .build()?;
        let verifier = Self {
            inner: Arc::new(Inner {
                config,
                http,
                keys: RwLock::default(),
                fetch_lock: tokio::sync::Mutex::new(()),
                last_fetch: Mutex::new(None),
                cache: crate::token::cache::VerifiedCache::new(capacity),
                revoked: RwLock::default(),
                stats: VerifierStats::default(),
            }),
        };
        verifier.fetch_keys().await?;
        let weak = Arc::downgrade(&verifier.inner);
        tokio::spawn(refresh_loop(weak.clone()));
        if verifier.inner.config.revocations_url.is_some() {
            tokio::spawn(sse::follow(weak));
        }
        Ok(verifier)
    }

    pub fn stats(&self) -> &VerifierStats {
        &self.inner.stats
    }

    /// Milliseconds since the revocation feed was last heard from.
    pub fn staleness_ms(&self) -> i64 {
        self.inner
            .revoked
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .staleness(self.inner.config.clock.now_ms())
    }

    pub fn is_stale(&self) -> bool {
        self.staleness_ms() > self.inner.config.max_staleness.as_millis() as i64
    }

    /// Verifies an access token: cached by exact bytes, expiry and revocation on every call.
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, VerifyError> {
        let now = self.inner.config.clock.now_ms();
        if self.inner.config.fail_closed_when_stale && self.is_stale() {
            return Err(VerifyError::Stale);
        }
        let claims = match self.cached(token, now) {
            Some(claims) => claims,
            None => self.verify_uncached(token, now).await?,
        };
        let revoked = self.inner.revoked.read().unwrap_or_else(|e| e.into_inner());
        if revoked.is_revoked(&claims.sid, &claims.sub, claims.ver, now) {
            return Err(VerifyError::Revoked);
        }
        Ok(claims)
    }

    fn cached(&self, token: &str, now: i64) -> Option<AccessClaims> {
        // An expired token misses and falls through to the full check, which says so.
        let leeway = self.inner.config.validation.leeway_secs;
        let hit = self.inner.cache.get(token, now / 1000, leeway)?;
        self.inner.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
        Some(AccessClaims::clone(&hit))
    }

    async fn verify_uncached(&self, token: &str, now: i64) -> Result<AccessClaims, VerifyError> {
        let mut result = self.validate(token, now);
        if result == Err(TokenError::UnknownKid) && self.refetch_allowed() {
            let _ = self.fetch_keys().await;
            result = self.validate(token, now);
        }
        let claims = result?;
        let kid = crate::token::cache::header_kid(token).unwrap_or_default();
        self.inner
            .cache
            .insert(token, &kid, Arc::new(claims.clone()), now / 1000);
        Ok(claims)
    }

    fn validate(&self, token: &str, now: i64) -> Result<AccessClaims, TokenError> {
        self.inner
            .stats
            .signature_checks
            .fetch_add(1, Ordering::Relaxed);
        let keys = self.inner.keys.read().unwrap_or_else(|e| e.into_inner());
        validate_access_token(token, &*keys, &self.inner.config.validation, now / 1000)
    }

    fn refetch_allowed(&self) -> bool {
        let mut last = self
            .inner
            .last_fetch
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let allowed = last.is_none_or(|t| t.elapsed() >= self.inner.config.refetch_interval);
        if allowed {
            *last = Some(Instant::now());
        }
        allowed
    }

    /// Fetches the JWKS (single flight). On failure the known keys stay.
    async fn fetch_keys(&self) -> anyhow::Result<()> {
        fetch_keys(&self.inner).await
    }

    /// Applies one revocation-feed entry (the SSE follower calls this).
    fn apply(inner: &Inner, entry: &Revocation) {
        inner
            .revoked
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .apply(entry, inner.config.clock.now_ms());
    }
}

async fn fetch_keys(inner: &Inner) -> anyhow::Result<()> {
    let _single = inner.fetch_lock.lock().await;
    inner.stats.jwks_fetches.fetch_add(1, Ordering::Relaxed);
    let fetched = async {
        let response = inner
            .http
            .get(&inner.config.jwks_url)
            .timeout(Duration::from_secs(5))
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "JWKS answered {}",
            response.status()
        );
        let doc: serde_json::Value = response.json().await?;
        let keys = Keys::from_jwks(&doc);
        anyhow::ensure!(!keys.is_empty(), "the JWKS holds no usable key");
        Ok(keys.0)
    }
    .await;
    crate::meters::jwks_fetch(fetched.is_ok());
    match fetched {
        Ok(keys) => {
            let retired: Vec<String> = {
                let old = inner.keys.read().unwrap_or_else(|e| e.into_inner());
                old.0
                    .keys()
                    .filter(|k| !keys.contains_key(*k))
                    .cloned()
                    .collect()
            };
            *inner.keys.write().unwrap_or_else(|e| e.into_inner()) = Keys(keys);
            if !retired.is_empty() {
                inner
                    .cache
                    .retain_kids(|kid| !retired.iter().any(|r| r == kid));
            }
            Ok(())
        }
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "JWKS fetch failed; keeping the known keys");
            Err(e)
        }
    }
}

async fn refresh_loop(inner: std::sync::Weak<Inner>) {
    loop {
        let period = match inner.upgrade() {
            Some(i) => i.config.jwks_refresh,
            None => return,
        };
        tokio::time::sleep(period).await;
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let _ = fetch_keys(&strong).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{KeyMaterial, SigningAlg};

    #[test]
    fn a_kid_that_appears_twice_is_refused_altogether() {
        let a = KeyMaterial::generate(SigningAlg::Es256)
            .unwrap()
            .public_jwk();
        let mut b = KeyMaterial::generate(SigningAlg::Es256)
            .unwrap()
            .public_jwk();
        let c = KeyMaterial::generate(SigningAlg::EdDsa)
            .unwrap()
            .public_jwk();
        b["kid"] = a["kid"].clone();
        let keys = Keys::from_jwks(&serde_json::json!({ "keys": [a.clone(), b, c.clone()] }));
        assert!(keys.key(a["kid"].as_str().unwrap()).is_none());
        assert!(keys.key(c["kid"].as_str().unwrap()).is_some());
    }

    #[test]
    fn private_parts_and_foreign_key_types_never_enter_the_set() {
        let mut with_d = KeyMaterial::generate(SigningAlg::Es256)
            .unwrap()
            .public_jwk();
        with_d["d"] = "AAAA".into();
        let hmac = serde_json::json!({"kty": "oct", "k": "c2VjcmV0", "kid": "h", "alg": "HS256"});
        let keys = Keys::from_jwks(&serde_json::json!({ "keys": [with_d, hmac] }));
        assert!(keys.is_empty());
    }
}
