//! JSON answers for everything the router and extractors reject on their own: unknown paths,
//! wrong methods, bad JSON, oversized or wrongly typed bodies.

use crate::error::ApiError;
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};

/// A resource whose unsupported methods answer 405 in JSON with the `Allow` header RFC 9110
/// requires. `allow` lists the methods the caller routes (`"GET, DELETE"`); a test checks it
/// against the OpenAPI document, which another test checks against the routes.
pub fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    ROUTES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(path.to_owned(), allow);
    web::resource(path).default_service(web::to(move || method_not_allowed(allow)))
}

/// Every path a listener routed in this process, with its methods: what the OpenAPI test
/// compares against the document (every route documented, not only every documented route).
static ROUTES: std::sync::Mutex<std::collections::BTreeMap<String, &'static str>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// The routes registered so far (after an `Application` was built).
pub fn registered_routes() -> std::collections::BTreeMap<String, &'static str> {
    ROUTES.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

async fn method_not_allowed(allow: &'static str) -> actix_web::HttpResponse {
    let err = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("method not allowed on this path; use {allow}"),
    );
    let mut response = actix_web::ResponseError::error_response(&err);
    response.headers_mut().insert(
        actix_web::http::header::ALLOW,
        actix_web::http::header::HeaderValue::from_static(allow),
    );
    response
}

pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::not_found("no such endpoint"))
}

pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(|err, _req: &HttpRequest| json_error(&err).into())
}

fn json_error(err: &JsonPayloadError) -> ApiError {
    match err {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "request body is too large",
            )
        }
        JsonPayloadError::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as application/json",
        ),
        JsonPayloadError::Deserialize(e) => super::body::field_error(e),
        _ => ApiError::bad_request("invalid_json", "request body is not valid JSON"),
    }
}

pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|_err: PathError, _req| {
        ApiError::bad_request("invalid_path", "invalid path parameter").into()
    })
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|_err: QueryPayloadError, _req| {
        ApiError::bad_request("invalid_query", "invalid query string").into()
    })
}

pub fn form_config(limit: usize) -> web::FormConfig {
    web::FormConfig::default()
        .limit(limit)
        .error_handler(|err, _req| {
            use actix_web::error::UrlencodedError;
            match err {
                UrlencodedError::Overflow { .. } => ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "request body is too large",
                ),
                UrlencodedError::ContentType => ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "send the body as application/x-www-form-urlencoded",
                ),
                _ => ApiError::bad_request(
                    "invalid_request",
                    "malformed form body (`token` is required)",
                ),
            }
            .into()
        })
}
