//! Admin API keys: configured as SHA-256 digests, matched in constant time, scoped, expiring.
//! The `AdminKey` extractor checks the route's scope before any body is read.

use crate::error::ApiError;
use crate::http::credential::bearer_value;
use crate::http::State;
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use sha2::{Digest, Sha256};
use std::future::{ready, Ready};
use subtle::ConstantTimeEq;

pub use crate::scope::Scope;

/// A configured admin key, ready for constant-time matching.
#[derive(Clone, Debug)]
pub struct AdminKeyEntry {
    pub name: String,
    pub sha256: [u8; 32],
    pub scopes: Vec<Scope>,
    /// Unix ms after which the key is refused.
    pub expires_at: Option<i64>,
}

impl AdminKeyEntry {
    /// The entries from settings: the all-scopes convenience key plus the named ones.
    pub fn from_settings(settings: &crate::Settings) -> Vec<Self> {
        let mut keys = Vec::new();
        if let Some(key) = &settings.admin_api_key {
            keys.push(Self {
                name: "admin".into(),
                sha256: Sha256::digest(key.expose().as_bytes()).into(),
                scopes: Scope::ALL.to_vec(),
                expires_at: None,
            });
        }
        for k in &settings.admin_keys {
            let mut sha256 = [0u8; 32];
            if hex::decode_to_slice(&k.sha256, &mut sha256).is_err() {
                continue; // refused by validation already
            }
            keys.push(Self {
                name: k.name.clone(),
                sha256,
                scopes: k.scopes.clone(),
                expires_at: k.expires_at.as_deref().and_then(|t| {
                    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                        .ok()
                        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
                }),
            });
        }
        keys
    }
}

/// Proof that the request carried a valid admin API key. Comparing SHA-256 digests in constant
/// time, against every configured key without stopping early, leaks neither key nor length.
pub struct AdminKey {
    pub name: String,
    scopes: Vec<Scope>,
}

impl AdminKey {
    /// 403 unless the key holds `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "insufficient_scope",
                format!("this API key lacks the `{}` scope", scope.as_str()),
            ))
        }
    }

    pub fn actor(&self) -> crate::audit::Actor {
        crate::audit::Actor::admin_key(&self.name)
    }
}

impl FromRequest for AdminKey {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(check_admin_key(req).map_err(Into::into))
    }
}

fn check_admin_key(req: &HttpRequest) -> Result<AdminKey, ApiError> {
    let refuse = || ApiError::unauthorized("invalid_api_key", "a valid admin API key is required");
    let state = req
        .app_data::<web::Data<State>>()
        .ok_or_else(|| ApiError::internal("state missing"))?;
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_value)
        .ok_or_else(refuse)?;
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let mut found = None;
    for entry in state.admin_keys.iter() {
        if bool::from(digest.ct_eq(&entry.sha256)) {
            found = Some(entry);
        }
    }
    let entry = found.ok_or_else(refuse)?;
    if entry
        .expires_at
        .is_some_and(|at| state.clock.now_ms() >= at)
    {
        tracing::warn!(key = %entry.name, "expired admin API key refused");
        return Err(ApiError::unauthorized(
            "expired_api_key",
            "this admin API key has expired",
        ));
    }
    let key = AdminKey {
        name: entry.name.clone(),
        scopes: entry.scopes.clone(),
    };
    // The route's scope is checked here, in the first extractor, so a key without it gets its
    // 403 before any body is read or judged (a body error must not tell it more).
    if let Some(scope) = req.app_data::<Scope>() {
        key.require(*scope)?;
    }
    Ok(key)
}
