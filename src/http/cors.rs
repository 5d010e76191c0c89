//! CORS for a single-page app on another origin of the same site (`allowed_origins`).
//!
//! An origin in `allowed_origins` may call the public API with the session cookie
//! (`credentials: "include"`): its requests get `Access-Control-Allow-Origin: <origin>` and
//! `Access-Control-Allow-Credentials: true`, and its preflights (`OPTIONS` with
//! `Access-Control-Request-Method`) a 204 naming the methods and headers the API takes. Any other
//! origin gets no CORS header at all, so its browser withholds every answer. The same list lets
//! those origins pass the CSRF origin check, and unsafe requests still need `X-CSRF-Token`.
//! `SameSite=Lax` keeps the cookie off cross-*site* requests: this serves sibling hosts of one
//! site (`app.example.com` calling `auth.example.com`); an app on another site uses bearer tokens.

use super::State;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};

pub async fn cors(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    // The public API only: never the admin API (on either listener) or the admin listener.
    let path = req.path();
    let public_api = path.starts_with("/v1/") && !path.starts_with("/v1/admin/");
    let allowed = public_api
        .then(|| req.headers().get(header::ORIGIN))
        .flatten()
        .filter(|origin| {
            req.app_data::<web::Data<State>>().is_some_and(|state| {
                state
                    .settings
                    .allowed_origins
                    .iter()
                    .any(|a| a.as_bytes() == origin.as_bytes())
            })
        })
        .cloned();
    let Some(origin) = allowed else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let preflight = req.method() == actix_web::http::Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let response = HttpResponse::NoContent()
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin))
            .insert_header((header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true"))
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, DELETE"))
            .insert_header((
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "content-type, x-csrf-token, authorization",
            ))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
            .insert_header((header::VARY, "Origin"))
            .finish();
        return Ok(req.into_response(response).map_into_right_body());
    }
    let mut response = next.call(req).await?;
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    Ok(response.map_into_left_body())
}
