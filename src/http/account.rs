//! `/v1/sessions`: a user sees their devices and ends any of them.
//!
//! Ending *other* sessions needs a recent authentication (login or step-up within
//! `recent_auth_secs`), so a stolen cookie cannot lock the owner out; ending the current one
//! never does.

use super::session::clear_dead_cookie;
use super::views::SessionView;
use super::State;
use crate::audit::Actor;
use crate::error::ApiError;
use crate::guard;
use crate::session::policy::Requirement;
use crate::session::{Acr, Session, UserId};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

fn recent_auth(state: &State) -> Requirement {
    Requirement {
        acr: Acr::Pwd,
        max_age_secs: state.settings.recent_auth_secs,
        role: None,
    }
}

fn owner(session: &Session) -> Result<UserId, ApiError> {
    Ok(session.record.user_id.clone())
}

/// The caller's live session; a dead cookie is expired in the 401. Kills (`to_end`) are
/// served even while Redis may evict (see `SessionGuard::session_to_end`).
async fn caller(
    req: &HttpRequest,
    state: &State,
    now: i64,
    to_end: bool,
) -> Result<(crate::http::credential::Presented, Session), ApiError> {
    let found = if to_end {
        state.guard.session_to_end(req, now).await
    } else {
        state.guard.session(req, now).await
    };
    found.map_err(|e| clear_dead_cookie(req, e))
}

/// `GET /v1/sessions`: the caller's live sessions, `current: true` on this one.
pub async fn list(req: HttpRequest, state: web::Data<State>) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now_ms();
    let (_, current) = caller(&req, &state, now, false).await?;
    let listing = state
        .service
        .list(&owner(&current)?, now)
        .await
        .map_err(ApiError::from)?;
    let views: Vec<_> = listing
        .sessions
        .iter()
        .map(|s| SessionView::new(s, s.id == current.id))
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({
            "sessions": views,
            "unavailable_regions": listing.unavailable_regions,
        })))
}

/// `DELETE /v1/sessions/{id}`: end one of the caller's sessions (another user's id: 404).
pub async fn revoke_one(
    req: HttpRequest,
    state: web::Data<State>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now_ms();
    let (presented, current) = caller(&req, &state, now, true).await?;
    let target = path.into_inner();
    let is_current = target == current.id.as_str();
    let victim = if is_current {
        current.clone()
    } else {
        let victim = state
            .service
            .find(&owner(&current)?, &target, now)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::not_found("no such session"))?;
        guard::check(&current, &recent_auth(&state), now)?;
        victim
    };
    let revoked = state
        .service
        .revoke(
            &victim,
            &Actor::user(current.record.user_id.as_str()),
            if is_current {
                "logout"
            } else {
                "ended by user"
            },
        )
        .await
        .map_err(ApiError::from)?;
    let mut response = HttpResponse::Ok();
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    if is_current && presented.is_cookie() {
        response.append_header((header::SET_COOKIE, state.cookie.removal().to_string()));
    }
    Ok(response.json(serde_json::json!({ "revoked": revoked as u8 })))
}

#[derive(Deserialize)]
pub struct Scope {
    scope: String,
}

/// `DELETE /v1/sessions?scope=others|all` → `{revoked: n}`. `all` also bumps the credential
/// version ("log out everywhere"), so every access token of the user dies with the sessions.
pub async fn revoke_many(
    req: HttpRequest,
    state: web::Data<State>,
    query: web::Query<Scope>,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now_ms();
    let (presented, current) = caller(&req, &state, now, true).await?;
    let user = owner(&current)?;
    let all = match query.scope.as_str() {
        "others" => false,
        "all" => true,
        _ => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "scope must be `others` or `all`",
            ))
        }
    };
    guard::check(&current, &recent_auth(&state), now)?;
    let mut response = HttpResponse::Ok();
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    let revoked = if all {
        if presented.is_cookie() {
            response.append_header((header::SET_COOKIE, state.cookie.removal().to_string()));
        }
        state
            .service
            .revoke_all(&user, &Actor::user(user.as_str()), "logout everywhere")
            .await
            .map_err(ApiError::from)?
    } else {
        let mut n = 0;
        let listing = state
            .service
            .list(&user, now)
            .await
            .map_err(ApiError::from)?;
        for other in listing.sessions {
            if other.id != current.id
                && state
                    .service
                    .revoke(
                        &other,
                        &Actor::user(user.as_str()),
                        "ended by user (others)",
                    )
                    .await
                    .map_err(ApiError::from)?
            {
                n += 1;
            }
        }
        // The sessions of a region that did not answer are still alive: never claim success.
        if !listing.unavailable_regions.is_empty() {
            let regions: Vec<&str> = listing
                .unavailable_regions
                .iter()
                .map(|r| r.as_str())
                .collect();
            return Err(ApiError::new(
                actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                "region_unavailable",
                format!(
                    "{n} other sessions ended, but region(s) {} did not answer: sessions there \
                     are still signed in; try again",
                    regions.join(", ")
                ),
            )
            .retry_after(1));
        }
        n
    };
    Ok(response.json(serde_json::json!({ "revoked": revoked })))
}
