//! The admin listener: backends create sessions for users they authenticated, and inspect them.
//! Every route requires `Authorization: Bearer <admin API key>`.

use super::credential::bearer_value;
use super::views::SessionView;
use super::State;
use crate::error::ApiError;
use crate::session::{Acr, NewSession, UserId};
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use serde::Deserialize;
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
                sha256: Sha256::digest(key.as_bytes()).into(),
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
                scopes: k.scopes.iter().filter_map(|s| Scope::parse(s)).collect(),
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    user_id: String,
    #[serde(default = "default_acr")]
    acr: Acr,
    #[serde(default)]
    amr: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    ip: String,
    #[serde(default)]
    user_agent: String,
    #[serde(default)]
    device_name: String,
}

fn default_acr() -> Acr {
    Acr::Pwd
}

/// Names in `amr` and `roles`: short tokens, no spaces (they are stored space-joined).
fn words(field: &'static str, list: Vec<String>) -> Result<Vec<String>, ApiError> {
    let ok = list.len() <= 16
        && list.iter().all(|w| {
            (1..=64).contains(&w.len())
                && w.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
        });
    if ok {
        Ok(list)
    } else {
        Err(ApiError::bad_request(
            "invalid_request",
            format!("`{field}`: at most 16 names of 1-64 characters [A-Za-z0-9_.:-]"),
        ))
    }
}

/// `POST /admin/sessions`: your backend authenticated the user; Tessera starts the session.
pub async fn create_session(
    key: AdminKey,
    state: web::Data<State>,
    body: super::body::Json<CreateSession>,
) -> Result<HttpResponse, ApiError> {
    key.require(Scope::Sessions)?;
    state.ensure_redis_policy()?;
    let body = body.into_inner();
    let user_id = UserId::parse(&body.user_id)?;
    if !body.ip.is_empty() && body.ip.parse::<std::net::IpAddr>().is_err() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "`ip` is not an IP address",
        ));
    }
    // A user of the users file gets a session only while the file lets them in, and the
    // session is bound to the entry as it is now (a later change ends it).
    let fingerprint = match state.login.directory().by_id(user_id.as_str()) {
        Some(user) if user.disabled => {
            return Err(ApiError::forbidden(
                "account_disabled",
                "this user is disabled in the users file",
            ))
        }
        Some(user) => Some(user.fingerprint.clone()),
        None => None,
    };
    let amr = if body.amr.is_empty() {
        vec![body.acr.as_str().to_owned()]
    } else {
        words("amr", body.amr)?
    };
    let new = NewSession {
        user_id,
        acr: body.acr,
        amr,
        roles: words("roles", body.roles)?,
        ip: body.ip,
        user_agent: body.user_agent,
        device_name: body.device_name,
        auth_time: None,
        native: None,
        fingerprint,
    };
    let (session, token) = state
        .service
        .create(new, &key.actor(), state.clock.now_ms())
        .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({
            "session_token": token.expose(),
            "csrf_token": token.secret().csrf_token().expose(),
            "session": SessionView::new(&session, false),
        })))
}

/// `GET /admin/users/{user_id}/sessions`: the user's live sessions.
pub async fn list_user_sessions(
    key: AdminKey,
    state: web::Data<State>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    key.require(Scope::Sessions)?;
    state.ensure_redis_policy()?;
    let user_id = UserId::parse(&path.into_inner())?;
    let sessions = state.service.list(&user_id, state.clock.now_ms()).await?;
    let views: Vec<_> = sessions
        .iter()
        .map(|s| SessionView::new(s, false))
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({ "user_id": user_id.as_str(), "sessions": views })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElevateRequest {
    acr: Acr,
}

/// `POST /admin/sessions/{id}/elevate`: your backend did its own WebAuthn/TOTP check. Records
/// the step-up and rotates the secret; hand the new `session_token` to the client.
pub async fn elevate(
    key: AdminKey,
    state: web::Data<State>,
    path: web::Path<String>,
    body: super::body::Json<ElevateRequest>,
) -> Result<HttpResponse, ApiError> {
    key.require(Scope::Sessions)?;
    state.ensure_redis_policy()?;
    let now = state.clock.now_ms();
    let id = crate::session::SessionId::parse(&path.into_inner(), &state.regions)
        .map_err(|_| ApiError::not_found("no such session"))?;
    let mut session = state
        .service
        .load(&id, now)
        .await?
        .ok_or_else(|| ApiError::not_found("no such session"))?;
    let token = state
        .service
        .rotate(&mut session, Some(body.acr), &key.actor(), now)
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({
            "session_token": token.expose(),
            "csrf_token": token.secret().csrf_token().expose(),
            "session": SessionView::new(&session, false),
        })))
}

fn path_user(raw: &str) -> Result<UserId, ApiError> {
    Ok(UserId::parse(raw)?)
}

/// `DELETE /admin/users/{user_id}/sessions/{id}`: end one session of a user.
pub async fn revoke_user_session(
    key: AdminKey,
    state: web::Data<State>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    key.require(Scope::Sessions)?;
    // Ending sessions is served even while Redis may evict (nothing it deletes is at risk).
    let (user, id) = path.into_inner();
    let user = path_user(&user)?;
    let victim = state
        .service
        .find(&user, &id, state.clock.now_ms())
        .await?
        .ok_or_else(|| ApiError::not_found("no such session for this user"))?;
    state
        .service
        .revoke(&victim, &key.actor(), "killed by admin API")
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "revoked": 1 })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RevokeAllRequest {
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /admin/users/{user_id}/revoke-all`: "password changed", "account disabled": bumps the
/// credential version and ends every session.
pub async fn revoke_all(
    key: AdminKey,
    state: web::Data<State>,
    path: web::Path<String>,
    body: super::body::OptionalJson<RevokeAllRequest>,
) -> Result<HttpResponse, ApiError> {
    key.require(Scope::Sessions)?;
    // Ending sessions is served even while Redis may evict (nothing it deletes is at risk).
    let user = path_user(&path.into_inner())?;
    let reason = body
        .0
        .and_then(|b| b.reason)
        .map(|r| crate::session::model::clip(&r, 128))
        .unwrap_or_else(|| "revoke-all by admin API".into());
    let n = state
        .service
        .revoke_all(&user, &key.actor(), &reason)
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "revoked": n })))
}

/// `DELETE /admin/users/{user_id}`: erase the user's sessions and per-user state (GDPR erasure).
pub async fn erase_user(
    key: AdminKey,
    state: web::Data<State>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    key.require(Scope::Sessions)?;
    // Ending sessions is served even while Redis may evict (nothing it deletes is at risk).
    let user = path_user(&path.into_inner())?;
    let n = state.service.erase_user(&user, &key.actor()).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "revoked": n, "erased": true })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /admin/audit?user_id=&after=&limit=`: pages through the audit stream, oldest first;
/// pass the last event's `id` as `after` for the next page.
pub async fn audit(
    key: AdminKey,
    state: web::Data<State>,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    key.require(Scope::Audit)?;
    let query = query.into_inner();
    let user = query.user_id.as_deref().map(path_user).transpose()?;
    if let Some(after) = &query.after {
        let valid = after.split_once('-').is_some_and(|(a, b)| {
            !a.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && !b.is_empty()
                && b.bytes().all(|c| c.is_ascii_digit())
        });
        if !valid {
            return Err(ApiError::bad_request(
                "invalid_query",
                "`after` must be an event id such as 1700000000000-0",
            ));
        }
    }
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let events = state
        .audit
        .page(user.as_ref(), query.after.as_deref(), limit)
        .await?;
    let next = events.last().and_then(|e| e.id.clone());
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({ "events": events, "next": next })))
}

/// `POST /admin/keys/rotate` (scope `keys`): publishes a new signing key now; it signs after
/// `jwks_cache_secs`; older keys retire after the longest token lifetime plus leeway.
pub async fn rotate_keys(key: AdminKey, state: web::Data<State>) -> Result<HttpResponse, ApiError> {
    key.require(Scope::Keys)?;
    let now = state.clock.now_ms();
    let ring = state.signing.rotate().await.map_err(|e| match e {
        crate::signing::RotateError::Conflict => ApiError::new(
            actix_web::http::StatusCode::CONFLICT,
            "rotation_conflict",
            "another rotation happened at the same time; retry",
        ),
        other => ApiError::unavailable(other.to_string()),
    })?;
    let new = ring
        .keys
        .last()
        .ok_or_else(|| ApiError::internal("empty ring"))?;
    crate::audit::log(
        &crate::audit::AuditEvent::new("signing_key_rotated", &key.actor(), now).reason(&new.kid),
    );
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "kid": new.kid,
        "signs_from": crate::http::views::rfc3339(new.sign_from),
        "keys": ring.keys.iter().map(|k| serde_json::json!({
            "kid": k.kid,
            "alg": k.alg,
            "signs_from": crate::http::views::rfc3339(k.sign_from),
            "retires_at": k.retire_at.map(crate::http::views::rfc3339),
        })).collect::<Vec<_>>(),
    })))
}
