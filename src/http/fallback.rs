//! JSON answers for everything the router and extractors reject on their own: unknown paths,
//! wrong methods, bad JSON, oversized or wrongly typed bodies.

use crate::error::ApiError;
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};

/// A resource whose unsupported methods answer 405 in JSON.
pub fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

pub async fn method_not_allowed() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this path",
    ))
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
        JsonPayloadError::Deserialize(e) if e.is_data() => {
            // "missing field"/"unknown field" name only a field; other data errors would quote
            // the offending value (maybe a password), so they get a neutral text.
            let text = e.to_string();
            let message = if text.starts_with("missing field") || text.starts_with("unknown field")
            {
                format!("invalid request body: {text}")
            } else {
                format!(
                    "invalid request body: a field has the wrong type or value (line {}, column {})",
                    e.line(),
                    e.column()
                )
            };
            ApiError::bad_request("invalid_request", message)
        }
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
