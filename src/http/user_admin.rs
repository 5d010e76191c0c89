//! `/v1/admin/users/{user_id}/sessions`: human admins on the public listener. They need the
//! `admin` role and an `mfa` authentication from the last 5 minutes (the high-risk guard).

use super::views::SessionView;
use crate::audit::Actor;
use crate::error::ApiError;
use crate::http::guard::{Elevated, SessionGuard};
use crate::session::policy::Requirement;
use crate::session::{Acr, UserId};
use actix_web::http::header;
use actix_web::{web, HttpResponse};

pub fn requirement() -> Requirement {
    Requirement {
        acr: Acr::Mfa,
        max_age_secs: 300,
        role: Some("admin".into()),
    }
}

fn user_id(raw: &str) -> Result<UserId, ApiError> {
    Ok(UserId::parse(raw)?)
}

pub async fn list(
    admin: Elevated,
    guard: web::Data<SessionGuard>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = user_id(&path.into_inner())?;
    let listing = guard
        .service()
        .list(&user, guard.service().clock().now_ms())
        .await?;
    tracing::info!(actor = %admin.session.record.user_id, user.id = %user, "admin listed sessions");
    let views: Vec<_> = listing
        .sessions
        .iter()
        .map(|s| SessionView::new(s, s.id == admin.session.id))
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({
            "user_id": user.as_str(),
            "sessions": views,
            "unavailable_regions": listing.unavailable_regions,
        })))
}

pub async fn revoke_all(
    admin: Elevated,
    guard: web::Data<SessionGuard>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = user_id(&path.into_inner())?;
    let actor = Actor::admin_user(admin.session.record.user_id.as_str());
    let n = guard
        .service()
        .revoke_all(&user, &actor, "revoked by admin")
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "revoked": n })))
}

pub async fn revoke_one(
    admin: Elevated,
    guard: web::Data<SessionGuard>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (user, id) = path.into_inner();
    let user = user_id(&user)?;
    let victim = guard
        .service()
        .find(&user, &id, guard.service().clock().now_ms())
        .await?
        .ok_or_else(|| ApiError::not_found("no such session for this user"))?;
    let actor = Actor::admin_user(admin.session.record.user_id.as_str());
    guard
        .service()
        .revoke(&victim, &actor, "killed by admin")
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "revoked": 1 })))
}
