//! `POST /admin/keys/rotate`: the signing-key rotation (the same routine as the CLI's and the
//! schedule's, see `signing.rs`).

use super::key::{AdminKey, Scope};
use crate::error::ApiError;
use crate::http::State;
use actix_web::{web, HttpResponse};

/// `POST /admin/keys/rotate` (scope `keys`): publishes a new signing key now; it signs after
/// `jwks_cache_secs`; older keys retire after the longest token lifetime plus leeway.
pub async fn rotate_keys(key: AdminKey, state: web::Data<State>) -> Result<HttpResponse, ApiError> {
    key.require(Scope::Keys)?;
    let now = state.clock.now_ms();
    let ring = state.signing.rotate().await.map_err(|e| match e {
        crate::signing::RotateError::Conflict => ApiError::new(
            actix_web::http::StatusCode::CONFLICT,
            "rotation_conflict",
            "another rotation happened at the same time; retry",
        ),
        other => ApiError::unavailable(other.to_string()),
    })?;
    let new = ring
        .keys
        .last()
        .ok_or_else(|| ApiError::internal("empty ring"))?;
    crate::audit::log(
        &crate::audit::AuditEvent::new("signing_key_rotated", &key.actor(), now).reason(&new.kid),
    );
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "kid": new.kid,
        "signs_from": crate::http::views::rfc3339(new.sign_from),
        "keys": ring.keys.iter().map(|k| serde_json::json!({
            "kid": k.kid,
            "alg": k.alg,
            "signs_from": crate::http::views::rfc3339(k.sign_from),
            "retires_at": k.retire_at.map(crate::http::views::rfc3339),
        })).collect::<Vec<_>>(),
    })))
}
