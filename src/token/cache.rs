//! A bounded cache of already-verified access tokens, keyed on their exact bytes: a client that
//! reuses its token costs a hash lookup instead of an ECDSA verification (which costs more than
//! a Redis round trip). Expiry and revocation are still checked by the caller on every request;
//! the cache is flushed when signing keys change, so a retired key's tokens are re-verified.

use super::AccessClaims;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Token bytes → (claims, kid that verified them).
type Entries = HashMap<Box<str>, (Arc<AccessClaims>, Box<str>)>;

pub struct VerifiedCache {
    capacity: usize,
    entries: Mutex<Entries>,
    /// `tessera_verified_token_cache_lookups_total{result}`, made once: a lookup is on every
    /// access-token check, so it must not search the metrics registry each time.
    hits: metrics::Counter,
    misses: metrics::Counter,
}

impl VerifiedCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(HashMap::new()),
            hits: crate::meters::token_cache_lookups("hit"),
            misses: crate::meters::token_cache_lookups("miss"),
        }
    }

    /// The claims of `token` if it was verified before and has not expired (`now_secs`).
    /// Shared, so a hit costs a lookup and a reference count, not a copy of every claim.
    pub fn get(&self, token: &str, now_secs: i64, leeway_secs: i64) -> Option<Arc<AccessClaims>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let found = entries
            .get(token)
            .filter(|(claims, _)| now_secs < claims.exp.saturating_add(leeway_secs))
            .map(|(claims, _)| claims.clone());
        match found {
            Some(_) => self.hits.increment(1),
            None => self.misses.increment(1),
        }
        found
    }

    pub fn insert(&self, token: &str, kid: &str, claims: Arc<AccessClaims>, now_secs: i64) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity {
            entries.retain(|_, (c, _)| c.exp > now_secs);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(token.into(), (claims, kid.into()));
    }

    /// Drops the tokens verified with keys no longer in `live_kids`.
    pub fn retain_kids(&self, live: impl Fn(&str) -> bool) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, (_, kid)| live(kid));
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The `kid` of a token whose signature was already verified (no second verification).
pub fn header_kid(token: &str) -> Option<String> {
    use base64::Engine;
    let header = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some(value.get("kid")?.as_str()?.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::validate::Audience;

    fn claims(exp: i64) -> AccessClaims {
        AccessClaims {
            iss: "i".into(),
            sub: "s".into(),
            aud: Audience::One("a".into()),
            exp,
            nbf: 0,
            iat: 0,
            jti: "j".into(),
            sid: "sid".into(),
            auth_time: 0,
            acr: "pwd".into(),
            amr: vec![],
            roles: vec![],
            ver: 0,
        }
    }

    #[test]
    fn hits_until_expiry_and_forgets_retired_keys() {
        let cache = VerifiedCache::new(10);
        cache.insert("t", "k1", Arc::new(claims(100)), 0);
        assert!(cache.get("t", 99, 0).is_some());
        assert!(
            cache.get("t", 100, 0).is_none(),
            "expired tokens are not served from cache"
        );
        assert!(cache.get("other", 0, 0).is_none());
        cache.retain_kids(|k| k != "k1");
        assert!(cache.is_empty());
    }

    #[test]
    fn stays_bounded() {
        let cache = VerifiedCache::new(3);
        for i in 0..10 {
            cache.insert(&format!("t{i}"), "k", Arc::new(claims(1_000)), 0);
        }
        assert!(cache.len() <= 3);
    }
}
