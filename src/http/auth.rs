//! `/v1/login`, `/v1/login/mfa`, `/v1/session/step-up`: Tessera's own authentication.

use super::session::clear_dead_cookie;
use super::views::SessionView;
use super::{csrf, State};
use crate::authn::login::{ClientInfo, LoggedIn, LoginOutcome, NativeLifetimes};
use crate::error::ApiError;
use crate::session::service::RefreshError;
use crate::session::RefreshToken;
use crate::session::{Session, SessionToken};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    username: String,
    password: String,
    #[serde(default)]
    client: Option<String>,
    #[serde(default)]
    device_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MfaRequest {
    mfa_token: String,
    totp: String,
    #[serde(default)]
    client: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepUpRequest {
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    totp: Option<String>,
    /// Bind the step-up to one operation: yields a single-use grant for exactly that operation.
    #[serde(default)]
    bind: Option<serde_json::Map<String, serde_json::Value>>,
}

fn client_info(
    req: &HttpRequest,
    state: &State,
    device_name: Option<String>,
    native: Option<NativeLifetimes>,
) -> ClientInfo {
    ClientInfo {
        native,
        ip: state.client_ip(req),
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        device_name: device_name.unwrap_or_default(),
    }
}

/// `client` in a login body: browser (default) or native.
fn native_or_browser(
    state: &State,
    client: Option<&str>,
) -> Result<Option<NativeLifetimes>, ApiError> {
    match client {
        None | Some("browser") => Ok(None),
        Some("native") => Ok(Some(NativeLifetimes {
            idle_timeout_ms: state.settings.native_idle_timeout_secs * 1000,
            absolute_timeout_ms: state.settings.native_absolute_timeout_secs * 1000,
        })),
        Some(_) => Err(ApiError::bad_request(
            "invalid_request",
            "`client` must be \"browser\" or \"native\"",
        )),
    }
}

/// A login finished: cookie + `{session, csrf_token}` for browsers, `{access_token,
/// refresh_token, token_type, expires_in, session}` and no cookie for native clients.
fn logged_in(state: &State, done: &LoggedIn) -> Result<HttpResponse, ApiError> {
    let Some(refresh) = &done.refresh else {
        return Ok(established(
            &state.cookie,
            &done.session,
            &done.token,
            actix_web::http::StatusCode::OK,
            state.clock.now_ms(),
        ));
    };
    let access = state
        .service
        .mint(&done.session, None, state.clock.now_ms())?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({
            "access_token": access.token,
            "refresh_token": refresh.expose(),
            "token_type": "Bearer",
            "expires_in": access.expires_in_secs,
            "session": SessionView::new(&done.session, true),
        })))
}

/// A browser session was established: cookie plus `{session, csrf_token}`.
fn established(
    jar: &super::cookie::SessionCookie,
    session: &Session,
    token: &SessionToken,
    status: actix_web::http::StatusCode,
    now: crate::clock::UnixMillis,
) -> HttpResponse {
    let max_age = (session.record.expires_at - now) / 1000;
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .append_header((
            header::SET_COOKIE,
            jar.set(token.expose(), max_age).to_string(),
        ))
        .json(serde_json::json!({
            "session": SessionView::new(session, true),
            "csrf_token": token.secret().csrf_token().expose(),
        }))
}

/// `POST /v1/login`: password first; users with TOTP get an `mfa_token` to finish with.
pub async fn login(
    req: HttpRequest,
    state: web::Data<State>,
    body: super::body::Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    // Login CSRF: a foreign page must not log the victim into the attacker's account.
    csrf::check_origin(&req, &state.settings.allowed_origins)?;
    state.ensure_redis_policy()?;
    let body = body.into_inner();
    let native = native_or_browser(&state, body.client.as_deref())?;
    if body.username.is_empty() || body.username.len() > 128 || body.password.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "username and password are required",
        ));
    }
    let client = client_info(&req, &state, body.device_name, native);
    match state
        .login
        .login(&body.username, &body.password, client, state.clock.now_ms())
        .await?
    {
        LoginOutcome::Session(done) => logged_in(&state, &done),
        LoginOutcome::MfaRequired { ticket } => Ok(HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(serde_json::json!({ "mfa_required": true, "mfa_token": ticket }))),
    }
}

/// `POST /v1/login/mfa`: the TOTP code for a pending login.
pub async fn login_mfa(
    req: HttpRequest,
    state: web::Data<State>,
    body: super::body::Json<MfaRequest>,
) -> Result<HttpResponse, ApiError> {
    csrf::check_origin(&req, &state.settings.allowed_origins)?;
    state.ensure_redis_policy()?;
    if body.mfa_token.len() > 64 {
        return Err(ApiError::unauthorized(
            "invalid_mfa_token",
            "the MFA token is unknown, used or expired; log in again",
        ));
    }
    let native = native_or_browser(&state, body.client.as_deref())?;
    let done = state
        .login
        .login_mfa(&body.mfa_token, &body.totp, native, state.clock.now_ms())
        .await?;
    logged_in(&state, &done)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshBody {
    refresh_token: String,
}

/// `POST /v1/token/refresh`: a native client spends its refresh token for a new access token
/// and a new refresh token. A spent token presented again (outside the short grace window for
/// the immediate predecessor) ends the whole session: `401 refresh_token_reused`.
pub async fn refresh(
    state: web::Data<State>,
    body: super::body::Json<RefreshBody>,
) -> Result<HttpResponse, ApiError> {
    state.ensure_redis_policy()?;
    let invalid = || {
        ApiError::unauthorized(
            "invalid_refresh_token",
            "the refresh token is invalid or expired; log in again",
        )
    };
    let presented =
        RefreshToken::parse(&body.refresh_token, &state.regions).map_err(|_| invalid())?;
    let now = state.clock.now_ms();
    let grace_ms = state.settings.refresh_grace_secs * 1000;
    let (session, successor) = state
        .service
        .refresh(&presented, grace_ms, now)
        .await
        .map_err(|e| match e {
            RefreshError::Invalid => invalid(),
            RefreshError::Reused => ApiError::unauthorized(
                "refresh_token_reused",
                "this refresh token was already used; the session has been ended for safety",
            ),
            RefreshError::Store(e) => e.into(),
        })?;
    let access = state.service.mint(&session, None, now)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({
            "access_token": access.token,
            "refresh_token": successor.expose(),
            "token_type": "Bearer",
            "expires_in": access.expires_in_secs,
        })))
}

/// `POST /v1/session/step-up`: re-verify and become elevated (or earn a grant for one bound
/// operation). The secret rotates either way; the old credential dies at once.
pub async fn step_up(
    req: HttpRequest,
    state: web::Data<State>,
    body: super::body::Json<StepUpRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    if body.password.is_none() && body.totp.is_none() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "send `password` and/or `totp`",
        ));
    }
    if let Some(bind) = &body.bind {
        if bind.is_empty()
            || bind.len() > 16
            || serde_json::to_string(bind)
                .map(|s| s.len())
                .unwrap_or(usize::MAX)
                > 2048
        {
            return Err(ApiError::bad_request(
                "invalid_request",
                "`bind` must be a small non-empty object",
            ));
        }
    }
    let now = state.clock.now_ms();
    let (presented, mut session) = state
        .guard
        .session(&req, now)
        .await
        .map_err(|e| clear_dead_cookie(&req, e))?;
    let ip = state.client_ip(&req);
    let level = state
        .login
        .step_up(
            &session,
            body.password.as_deref(),
            body.totp.as_deref(),
            &ip,
            now,
        )
        .await
        .map_err(ApiError::from)?;
    let grant = match &body.bind {
        Some(operation) => {
            let ttl = state.settings.step_up_grant_secs;
            state
                .service
                .grant(
                    &session,
                    &crate::session::grant::operation_digest(operation),
                    level,
                    ttl * 1000,
                )
                .await
                .map_err(ApiError::from)?;
            Some(ttl)
        }
        None => None,
    };
    let elevation = grant.is_none().then_some(level);
    let actor = crate::audit::Actor::user(session.record.user_id.as_str());
    let token = state
        .service
        .rotate(&mut session, elevation, &actor, now)
        .await
        .map_err(ApiError::from)?;
    let mut body = serde_json::json!({
        "session": SessionView::new(&session, true),
        "acr": level.as_str(),
    });
    if let Some(ttl) = grant {
        body["grant"] = serde_json::json!({ "expires_in": ttl });
    }
    let mut response = HttpResponse::Ok();
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    if presented.is_cookie() {
        let max_age = (session.record.expires_at - now) / 1000;
        response.append_header((
            header::SET_COOKIE,
            state.cookie.set(token.expose(), max_age).to_string(),
        ));
        body["csrf_token"] = token.secret().csrf_token().expose().into();
    } else {
        body["session_token"] = token.expose().into();
    }
    Ok(response.json(body))
}
