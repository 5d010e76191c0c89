//! `GET /v1/auth/check?risk=low|high`: forward auth for nginx `auth_request` and Traefik
//! ForwardAuth.
//!
//! `low` accepts an access token checked locally (signature, claims, pushed revocations: no
//! Redis) or a session credential checked in Redis; `high` demands the Redis-checked session at
//! the level the query names (`acr`, `max_age`; default `mfa` within 300 s) and answers the
//! RFC 9470 challenge otherwise. 200 carries `X-Tessera-User`, `X-Tessera-Session` and
//! `X-Tessera-Acr`. Every answer has `Cache-Control: no-store` and `Vary: Cookie, Authorization`.

use super::credential::bearer_value;
use super::State;
use crate::error::ApiError;
use crate::guard;
use crate::session::policy::Requirement;
use crate::session::Acr;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckQuery {
    #[serde(default)]
    risk: Option<String>,
    #[serde(default)]
    acr: Option<String>,
    #[serde(default)]
    max_age: Option<i64>,
}

/// A bearer value shaped like a JWT (three base64url parts), as opposed to a session token.
fn looks_like_jwt(value: &str) -> bool {
    value.starts_with("eyJ") && value.matches('.').count() == 2
}

#[derive(serde::Serialize)]
struct Allowed<'a> {
    user: &'a str,
    session: &'a str,
    acr: &'a str,
}

fn allowed(user: &str, session: &str, acr: &str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::VARY, "Cookie, Authorization"))
        .insert_header(("X-Tessera-User", user))
        .insert_header(("X-Tessera-Session", session))
        .insert_header(("X-Tessera-Acr", acr))
        .json(Allowed { user, session, acr })
}

fn denied(err: ApiError) -> HttpResponse {
    let mut response = err.error_response();
    response.headers_mut().insert(
        header::VARY,
        header::HeaderValue::from_static("Cookie, Authorization"),
    );
    response
}

pub async fn check(
    req: HttpRequest,
    state: web::Data<State>,
    query: web::Query<CheckQuery>,
) -> HttpResponse {
    match decide(&req, &state, &query).await {
        Ok(response) => response,
        // A credential problem the client made is a refusal (401), not a malformed request:
        // a proxy turns any answer but 2xx/401/403 into an outage page.
        Err(err) if err.code() == "duplicate_session_cookie" => denied(ApiError::unauthorized(
            "duplicate_session_cookie",
            "more than one session cookie was sent; clear this site's cookies and sign in again",
        )),
        Err(err) => denied(err),
    }
}

async fn decide(
    req: &HttpRequest,
    state: &State,
    query: &CheckQuery,
) -> Result<HttpResponse, ApiError> {
    let high = match query.risk.as_deref() {
        None | Some("low") => false,
        Some("high") => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "risk must be `low` or `high`",
            ))
        }
    };
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_value);
    if !high {
        if let Some(jwt) = bearer.filter(|b| looks_like_jwt(b)) {
            let claims = state.check_access_token(jwt)?;
            return Ok(allowed(&claims.sub, &claims.sid, &claims.acr));
        }
    }
    let now = state.clock.now_ms();
    let (_, session) = if high {
        state.guard.session(req, now).await?
    } else {
        state.guard.session_low_risk(req, now).await?
    };
    if high {
        let acr = match query.acr.as_deref() {
            None | Some("mfa") => Acr::Mfa,
            Some("pwd") => Acr::Pwd,
            Some(_) => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    "acr must be `pwd` or `mfa`",
                ))
            }
        };
        let max_age = query.max_age.unwrap_or(300);
        if !(0..=86_400).contains(&max_age) {
            return Err(ApiError::bad_request(
                "invalid_query",
                "max_age must be 0..86400 seconds",
            ));
        }
        guard::check(
            &session,
            &Requirement {
                acr,
                max_age_secs: max_age,
                role: None,
            },
            now,
        )?;
    }
    Ok(allowed(
        session.record.user_id.as_str(),
        session.id.as_str(),
        session.record.acr.as_str(),
    ))
}
