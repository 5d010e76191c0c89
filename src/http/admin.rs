//! The admin listener: backends create sessions for users they authenticated, and inspect them.
//! Every route requires `Authorization: Bearer <admin API key>`.

use super::credential::bearer_value;
use super::views::SessionView;
use super::{now_ms, State};
use crate::error::ApiError;
use crate::session::{Acr, NewSession, UserId};
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::future::{ready, Ready};
use subtle::ConstantTimeEq;

/// Proof that the request carried the admin API key. Comparing SHA-256 digests in constant time
/// leaks neither the key nor its length.
pub struct AdminKey;

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
    let expected = state.admin_key_hash.as_ref().ok_or_else(refuse)?;
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_value)
        .ok_or_else(refuse)?;
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    if bool::from(digest.ct_eq(expected)) {
        Ok(AdminKey)
    } else {
        Err(refuse())
    }
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
    _: AdminKey,
    state: web::Data<State>,
    body: web::Json<CreateSession>,
) -> Result<HttpResponse, ApiError> {
    state.ensure_redis_policy()?;
    let body = body.into_inner();
    let user_id = UserId::parse(&body.user_id).map_err(|_| {
        ApiError::bad_request(
            "invalid_user_id",
            "user_id must be 1-128 characters of [A-Za-z0-9._@:-]",
        )
    })?;
    if !body.ip.is_empty() && body.ip.parse::<std::net::IpAddr>().is_err() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "`ip` is not an IP address",
        ));
    }
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
    };
    let (session, token) = state.service.create(new, now_ms()).await?;
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
    _: AdminKey,
    state: web::Data<State>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.ensure_redis_policy()?;
    let user_id = UserId::parse(&path.into_inner()).map_err(|_| {
        ApiError::bad_request(
            "invalid_user_id",
            "user_id must be 1-128 characters of [A-Za-z0-9._@:-]",
        )
    })?;
    let sessions = state.service.list(&user_id, now_ms()).await?;
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
    _: AdminKey,
    state: web::Data<State>,
    path: web::Path<String>,
    body: web::Json<ElevateRequest>,
) -> Result<HttpResponse, ApiError> {
    state.ensure_redis_policy()?;
    let now = now_ms();
    let id = crate::session::SessionId::parse(&path.into_inner(), &state.regions)
        .map_err(|_| ApiError::not_found("no such session"))?;
    let mut session = state
        .service
        .load(&id, now)
        .await?
        .ok_or_else(|| ApiError::not_found("no such session"))?;
    let token = state
        .service
        .rotate(&mut session, Some(body.acr), now)
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({
            "session_token": token.expose(),
            "csrf_token": token.secret().csrf_token().expose(),
            "session": SessionView::new(&session, false),
        })))
}
