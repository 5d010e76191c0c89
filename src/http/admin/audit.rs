//! `GET /admin/audit`: the audit trail, paged.

use super::key::{AdminKey, Scope};
use crate::error::ApiError;
use crate::http::State;
use crate::session::UserId;
use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

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
    let user = query.user_id.as_deref().map(UserId::parse).transpose()?;
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
