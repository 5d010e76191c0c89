//! RFC 7009 token revocation and RFC 7662 token introspection, on the admin listener.

use super::admin::{AdminKey, Scope};
use super::State;
use crate::error::ApiError;
use crate::session::{AuthError, RefreshToken, Session, SessionId, SessionToken};
use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

#[derive(Deserialize)]
pub struct TokenForm {
    token: String,
    #[serde(default)]
    token_type_hint: Option<String>,
}

fn inactive() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({ "active": false }))
}

pub fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.matches('.').count() == 2
}

/// `POST /v1/token/revoke` (RFC 7009, public listener): a client ends its own session with any
/// token it holds, each token being its own authorization: a refresh token (current, last
/// spent, or a proven older generation, which also counts as reuse), an access token, or a
/// session token. 200 whether or not anything was live (nothing to reveal); a made-up secret
/// for a known session id changes nothing. 503, never 200, when the revocation cannot be made.
pub async fn revoke_own(
    state: web::Data<State>,
    form: web::Form<TokenForm>,
) -> Result<HttpResponse, ApiError> {
    // Revocation is served even while Redis may evict: see `SessionGuard::session_to_end`.
    let now = state.clock.now_ms();
    let token = form.token.trim();
    if let Ok(refresh) = RefreshToken::parse(token, &state.regions) {
        state.service.revoke_by_refresh(&refresh, now).await?;
    } else if looks_like_jwt(token) {
        match session_of_access_token(&state, token, now).await {
            Ok(session) => end(&state, &session, "access token revoked by its client").await?,
            Err(_) => settle_token_session(&state, token).await?,
        }
    } else if let Ok(presented) = SessionToken::parse(token, &state.regions) {
        match state.service.authenticate(&presented, now).await {
            Ok(session) => end(&state, &session, "session token revoked by its client").await?,
            Err(AuthError::NoSession) => state.service.settle(presented.id()).await?,
            Err(AuthError::Store(e)) => return Err(e.into()),
        }
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({})))
}

/// Before answering that an access token's session cannot be ended (it is gone, or the token
/// is refused): waits until the replicas hold whatever was written about that session (see
/// `SessionStore::confirm`). The `sid` is read without verifying the token: it only picks
/// which Redis primary to wait for.
pub async fn settle_token_session(state: &State, jwt: &str) -> Result<(), ApiError> {
    use base64::Engine;
    let sid = jwt
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|raw| serde_json::from_slice::<serde_json::Value>(&raw).ok())
        .and_then(|claims| claims["sid"].as_str().map(str::to_owned));
    if let Some(id) = sid.and_then(|sid| SessionId::parse(&sid, &state.regions).ok()) {
        state.service.settle(&id).await?;
    }
    Ok(())
}

async fn end(state: &State, session: &Session, reason: &str) -> Result<(), ApiError> {
    let actor = crate::audit::Actor::user(session.record.user_id.as_str());
    state.service.revoke(session, &actor, reason).await?;
    Ok(())
}

/// The live session behind a valid, unrevoked access token of the same user: what an access
/// token may end (the bearer of a token can act as its session anyway, for its few minutes).
pub async fn session_of_access_token(
    state: &State,
    token: &str,
    now: i64,
) -> Result<Session, ApiError> {
    let claims = state.check_access_token(token)?;
    session_of_claims(state, &claims, now)
        .await?
        .ok_or_else(ApiError::invalid_session)
}

/// The live session a token's claims name, if it still belongs to the token's user.
async fn session_of_claims(
    state: &State,
    claims: &crate::token::AccessClaims,
    now: i64,
) -> Result<Option<Session>, ApiError> {
    let Ok(sid) = SessionId::parse(&claims.sid, &state.regions) else {
        return Ok(None);
    };
    Ok(state
        .service
        .load(&sid, now)
        .await?
        .filter(|s| s.record.user_id.as_str() == claims.sub))
}

/// `POST /admin/revoke` (RFC 7009): `token` (session token or access token),
/// `token_type_hint` optional. Unknown or invalid tokens get 200 (nothing to reveal); if the
/// revocation cannot be stored, 503 with `Retry-After`, never 200.
pub async fn revoke(
    key: AdminKey,
    state: web::Data<State>,
    form: web::Form<TokenForm>,
) -> Result<HttpResponse, ApiError> {
    key.require(Scope::Revoke)?;
    let _ = &form.token_type_hint; // every type is recognised by its shape; the hint is optional
    let now = state.clock.now_ms();
    let session = if looks_like_jwt(&form.token) {
        match state.issuer.validate(&form.token, now / 1000) {
            Ok(claims) => session_of_claims(&state, &claims, now).await?,
            Err(_) => None,
        }
    } else {
        match SessionToken::parse(&form.token, &state.regions) {
            Ok(token) => match state.service.authenticate(&token, now).await {
                Ok(session) => Some(session),
                Err(AuthError::NoSession) => None,
                Err(AuthError::Store(e)) => return Err(e.into()),
            },
            Err(_) => None,
        }
    };
    if let Some(session) = session {
        state
            .service
            .revoke(&session, &key.actor(), "RFC 7009 revocation")
            .await?;
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

/// `POST /admin/introspect` (RFC 7662): `{"active": false}` and nothing else for anything not
/// live; for live tokens the claims plus the session's current level from Redis.
pub async fn introspect(
    key: AdminKey,
    state: web::Data<State>,
    form: web::Form<TokenForm>,
) -> Result<HttpResponse, ApiError> {
    key.require(Scope::Introspect)?;
    // Introspection answers from Redis like every session route, so it fails closed with them
    // while Redis could be evicting sessions.
    state.ensure_redis_policy()?;
    let now = state.clock.now_ms();
    let (mut body, session) = if looks_like_jwt(&form.token) {
        let Ok(claims) = state.check_access_token(&form.token) else {
            return Ok(inactive());
        };
        let Some(session) = session_of_claims(&state, &claims, now).await? else {
            return Ok(inactive());
        };
        let mut body = serde_json::to_value(&*claims).map_err(ApiError::internal)?;
        body["token_type"] = "access_token".into();
        (body, session)
    } else {
        let Ok(token) = SessionToken::parse(&form.token, &state.regions) else {
            return Ok(inactive());
        };
        let session = match state.service.authenticate(&token, now).await {
            Ok(s) => s,
            Err(AuthError::NoSession) => return Ok(inactive()),
            Err(AuthError::Store(e)) => return Err(e.into()),
        };
        let r = &session.record;
        let body = serde_json::json!({
            "token_type": "session_token",
            "sub": r.user_id.as_str(),
            "sid": session.id.as_str(),
            "iat": r.created_at / 1000,
            "exp": r.idle_expires_at.min(r.expires_at) / 1000,
            "auth_time": r.auth_time / 1000,
            "acr": r.acr.as_str(),
            "amr": r.amr,
            "roles": r.roles,
        });
        (body, session)
    };
    body["active"] = true.into();
    body["session"] = serde_json::json!({
        "acr": session.record.acr.as_str(),
        "elevated_acr": session.record.elevated_acr.map(|a| a.as_str()),
        "elevated_at": (session.record.elevated_at > 0).then_some(session.record.elevated_at / 1000),
        "expires_at": session.record.expires_at / 1000,
    });
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body))
}
