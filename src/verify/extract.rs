//! An actix extractor: `VerifiedToken` in a handler's arguments means "a valid, unrevoked
//! access token came with this request". Needs `web::Data<Verifier>` in the app.

use super::{Verifier, VerifyError};
use crate::error::ApiError;
use crate::token::AccessClaims;
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use std::future::Future;
use std::pin::Pin;

pub struct VerifiedToken(pub AccessClaims);

impl FromRequest for VerifiedToken {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let verifier = req.app_data::<web::Data<Verifier>>().cloned();
        let token = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_value)
            .map(str::to_owned);
        Box::pin(async move {
            let verifier =
                verifier.ok_or_else(|| ApiError::internal("Verifier missing from app data"))?;
            let token =
                token.ok_or_else(|| ApiError::unauthorized("no_token", "send an access token"))?;
            match verifier.verify(&token).await {
                Ok(claims) => Ok(VerifiedToken(claims)),
                Err(VerifyError::Stale) => {
                    Err(ApiError::unavailable("revocation feed stale").into())
                }
                Err(VerifyError::Revoked) => Err(ApiError::unauthorized(
                    "token_revoked",
                    "the session behind this token was revoked",
                )
                .into()),
                Err(VerifyError::Invalid(e)) => {
                    tracing::info!(reason = %e, "access token refused");
                    Err(ApiError::unauthorized(
                        "invalid_token",
                        "the access token is invalid or expired",
                    )
                    .into())
                }
            }
        })
    }
}

/// `Bearer <token>` with a case-insensitive scheme (RFC 6750 §2.1). Kept here, not shared with
/// the server's HTTP layer, so a service can embed the verifier without the server.
fn bearer_value(header: &str) -> Option<&str> {
    let (scheme, value) = header.split_once(' ')?;
    let value = value.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !value.is_empty() && !value.contains(' '))
        .then_some(value)
}
