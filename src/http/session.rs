//! `/v1/session`, `/v1/logout`, `/v1/token`: what a holder of a session credential can do.

use super::credential::Presented;
use super::views::SessionView;
use super::State;
use crate::error::ApiError;
use crate::session::Session;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

async fn authenticated(req: &HttpRequest, state: &State) -> Result<(Presented, Session), ApiError> {
    state.guard.session(req, state.clock.now_ms()).await
}

/// A 401 for a cookie client also expires the dead cookie.
pub fn clear_dead_cookie(req: &HttpRequest, err: ApiError) -> ApiError {
    let jar = req
        .app_data::<web::Data<State>>()
        .map(|s| s.cookie.clone())
        .unwrap_or_default();
    let is_dead_cookie = err.code() == "invalid_session"
        && super::credential::session_cookie(req, jar.name())
            .ok()
            .flatten()
            .is_some()
        && req.headers().get(header::AUTHORIZATION).is_none();
    if is_dead_cookie {
        err.expiring_cookie(jar.removal().to_string())
    } else {
        err
    }
}

/// Serialized directly (no intermediate `serde_json::Value`): this is the hot read path.
#[derive(serde::Serialize)]
struct CurrentSession<'a> {
    session: SessionView,
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf_token: Option<&'a str>,
}

/// `GET /v1/session`: the caller's session, plus the CSRF token for cookie clients.
pub async fn current(req: HttpRequest, state: web::Data<State>) -> Result<HttpResponse, ApiError> {
    let (presented, session) = state
        .guard
        .session_low_risk(&req, state.clock.now_ms())
        .await
        .map_err(|e| clear_dead_cookie(&req, e))?;
    let csrf = presented
        .is_cookie()
        .then(|| presented.token().secret().csrf_token());
    let body = CurrentSession {
        session: SessionView::new(&session, true),
        csrf_token: csrf.as_ref().map(|c| c.expose()),
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body))
}

/// `POST /v1/logout`: ends the current session at once and expires the cookie. Native clients
/// may present their access token (`Authorization: Bearer <JWT>`) instead of a session
/// credential; the session behind it ends, and with it every token minted from it.
pub async fn logout(req: HttpRequest, state: web::Data<State>) -> Result<HttpResponse, ApiError> {
    let (session, is_cookie) = match bearer_access_token(&req) {
        Some(jwt) => {
            match super::oauth::session_of_access_token(&state, jwt, state.clock.now_ms()).await {
                Ok(session) => (session, false),
                Err(e) => {
                    super::oauth::settle_token_session(&state, jwt).await?;
                    return Err(e);
                }
            }
        }
        None => {
            let (presented, session) = state
                .guard
                .session_to_end(&req, state.clock.now_ms())
                .await
                .map_err(|e| clear_dead_cookie(&req, e))?;
            (session, presented.is_cookie())
        }
    };
    let actor = crate::audit::Actor::user(session.record.user_id.as_str());
    state
        .service
        .revoke(&session, &actor, "logout")
        .await
        .map_err(ApiError::from)?;
    let mut response = HttpResponse::Ok();
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    if is_cookie {
        response.append_header((header::SET_COOKIE, state.cookie.removal().to_string()));
    }
    Ok(response.json(serde_json::json!({ "logged_out": true })))
}

/// The bearer value when it is shaped like a JWT (an access token, not a session token).
fn bearer_access_token(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()
        .and_then(super::credential::bearer_value)
        .filter(|v| super::oauth::looks_like_jwt(v))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    #[serde(default)]
    audience: Option<String>,
}

/// `POST /v1/token`: a short-lived JWT for the live session. Body optional: `{"audience": …}`.
pub async fn mint_token(
    req: HttpRequest,
    state: web::Data<State>,
    body: super::body::OptionalJson<TokenRequest>,
) -> Result<HttpResponse, ApiError> {
    let request = body.0;
    let (_, session) = authenticated(&req, &state)
        .await
        .map_err(|e| clear_dead_cookie(&req, e))?;
    let audience = request.and_then(|r| r.audience);
    let token = state
        .service
        .mint(&session, audience.as_deref(), state.clock.now_ms())
        .map_err(ApiError::from)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({
            "access_token": token.token,
            "token_type": "Bearer",
            "expires_in": token.expires_in_secs,
        })))
}
