//! Admin session routes: backends start sessions for users they authenticated, elevate them
//! after their own step-up, list, kill, revoke-all and erase.

use super::key::{AdminKey, Scope};
use crate::error::ApiError;
use crate::http::views::SessionView;
use crate::http::State;
use crate::session::{Acr, NewSession, UserId};
use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

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
    body: crate::http::body::Json<CreateSession>,
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
    let listing = state.service.list(&user_id, state.clock.now_ms()).await?;
    let views: Vec<_> = listing
        .sessions
        .iter()
        .map(|s| SessionView::new(s, false))
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({
            "user_id": user_id.as_str(),
            "sessions": views,
            "unavailable_regions": listing.unavailable_regions,
        })))
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
    body: crate::http::body::Json<ElevateRequest>,
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
    body: crate::http::body::OptionalJson<RevokeAllRequest>,
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
