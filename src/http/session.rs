//! `/v1/session`, `/v1/logout`, `/v1/token`: what a holder of a session credential can do.

use super::credential::Presented;
use super::views::{SessionView, ViewInputs};
use super::State;
use crate::error::ApiError;
use crate::session::Session;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use std::num::NonZeroUsize;

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

/// How many sessions' views a worker thread keeps rendered (1 to 2 KB each).
const RENDERED_PER_WORKER: NonZeroUsize = NonZeroUsize::new(1024).unwrap();

thread_local! {
    /// The JSON view of recently read sessions, by session id, each beside the inputs it was
    /// rendered from (`ViewInputs`: what the view shows of the record, no hash). A rendering
    /// is reused only for equal inputs, so it is exactly what rendering again would give: it
    /// never decides who is let in (that was settled before), and a renewed or stepped-up
    /// session is rendered afresh. Building and serializing the view was a fifth of the
    /// instructions of a cached `GET /v1/session`.
    static RENDERED: std::cell::RefCell<lru::LruCache<String, (ViewInputs<'static>, web::Bytes)>> =
        std::cell::RefCell::new(lru::LruCache::new(RENDERED_PER_WORKER));
}

/// The session's view as JSON (`SessionView`, `current: true`).
fn rendered_view(session: &Session) -> Result<web::Bytes, ApiError> {
    let inputs = ViewInputs::of(&session.record);
    RENDERED.with(|rendered| {
        let mut rendered = rendered.borrow_mut();
        if let Some((kept, json)) = rendered.get(session.id.as_str()) {
            if *kept == inputs {
                return Ok(json.clone());
            }
        }
        let (id, region) = (session.id.as_str(), session.id.region());
        let view = SessionView::of(id, region, &inputs, true);
        let json = web::Bytes::from(serde_json::to_vec(&view).map_err(ApiError::internal)?);
        rendered.put(id.to_owned(), (inputs.into_owned(), json.clone()));
        Ok(json)
    })
}

/// Forgets this worker's rendering of a session that ended here (the other workers' copies go
/// as newer sessions push them out; none is ever served for an ended session).
fn forget_rendered(id: &str) {
    RENDERED.with(|rendered| rendered.borrow_mut().pop(id));
}

/// `GET /v1/session`: the caller's session, plus the CSRF token for cookie clients.
pub async fn current(req: HttpRequest, state: web::Data<State>) -> Result<HttpResponse, ApiError> {
    let (presented, session) = state
        .guard
        .session_low_risk(&req, state.clock.now_ms())
        .await
        .map_err(|e| clear_dead_cookie(&req, e))?;
    let view = rendered_view(&session)?;
    // `{"session": <view>, "csrf_token": "<token>"}`; the token is base64url (nothing to
    // escape), and bearer clients get no token.
    let csrf = presented
        .is_cookie()
        .then(|| presented.token().secret().csrf_token());
    let mut body = Vec::with_capacity(view.len() + 80);
    body.extend_from_slice(b"{\"session\":");
    body.extend_from_slice(&view);
    if let Some(csrf) = &csrf {
        body.extend_from_slice(b",\"csrf_token\":\"");
        body.extend_from_slice(csrf.expose().as_bytes());
        body.push(b'"');
    }
    body.push(b'}');
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type("application/json")
        .body(body))
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
    forget_rendered(session.id.as_str());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Acr;

    use crate::http::views::tests::session;

    fn fresh(session: &Session) -> web::Bytes {
        serde_json::to_vec(&SessionView::new(session, true))
            .unwrap()
            .into()
    }

    #[test]
    fn a_rendered_view_is_what_rendering_again_gives_even_after_the_record_changed() {
        let mut s = session();
        assert_eq!(rendered_view(&s).unwrap(), fresh(&s));
        assert_eq!(rendered_view(&s).unwrap(), fresh(&s), "reused");
        // A renewal, a step-up and a new secret: each is rendered afresh, never the old view.
        s.record.last_seen_at += 60_000;
        s.record.idle_expires_at += 60_000;
        assert_eq!(rendered_view(&s).unwrap(), fresh(&s));
        s.record.elevated_at = s.record.last_seen_at;
        s.record.elevated_acr = Some(Acr::Mfa);
        let stepped = rendered_view(&s).unwrap();
        assert_eq!(stepped, fresh(&s));
        assert!(String::from_utf8_lossy(&stepped).contains("\"elevated_acr\":\"mfa\""));
        // Another session of the same user never gets this one's view.
        let other = session();
        assert_eq!(rendered_view(&other).unwrap(), fresh(&other));
        assert_ne!(rendered_view(&other).unwrap(), stepped);
    }

    #[test]
    fn a_logout_on_this_worker_forgets_its_rendering() {
        let s = session();
        rendered_view(&s).unwrap();
        forget_rendered(s.id.as_str());
        RENDERED.with(|r| assert!(!r.borrow().contains(s.id.as_str())));
    }

    #[test]
    fn the_memo_holds_at_most_its_bound() {
        for _ in 0..RENDERED_PER_WORKER.get() + 10 {
            rendered_view(&session()).unwrap();
        }
        RENDERED.with(|r| assert_eq!(r.borrow().len(), RENDERED_PER_WORKER.get()));
    }
}
