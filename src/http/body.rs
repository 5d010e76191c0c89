//! The one way a request body becomes a value: size limit first (413), then the media type
//! (415), then "a JSON object" (400), then the typed fields (400). Every refusal is the JSON
//! error body, and a handler never runs on a body it did not ask for.
//!
//! actix's own `web::Json` accepts a positional array for a struct (serde allows it) and an
//! `Option<web::Json<T>>` silently turns a broken body into "no body"; `web::Bytes` answers an
//! oversized body in plain text. These extractors close all three.

use crate::error::ApiError;
use actix_web::dev::Payload;
use actix_web::http::{header, StatusCode};
use actix_web::{FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

/// The largest body any route reads (`max_body_bytes`), registered as app data.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

/// A required JSON object body.
pub struct Json<T>(pub T);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Json<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// An optional JSON object body: empty means `None`; anything else must be valid.
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    /// `OptionalJson`, where no body is an error too.
    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let optional = OptionalJson::<T>::from_request(req, payload);
        Box::pin(async move {
            match optional.await?.0 {
                Some(value) => Ok(Json(value)),
                None => Err(ApiError::bad_request(
                    "invalid_json",
                    "a JSON object body is required",
                )
                .into()),
            }
        })
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for OptionalJson<T> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let read = read(req, payload);
        let req = req.clone();
        Box::pin(async move {
            let bytes = read.await?;
            Ok(OptionalJson(parse(&req, &bytes)?))
        })
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "request body is too large",
    )
}

/// Reads the whole body, refusing (413) as soon as it passes the limit: a declared
/// `Content-Length` over the limit is refused before a byte is read.
fn read(
    req: &HttpRequest,
    payload: &mut Payload,
) -> LocalBoxFuture<'static, Result<Vec<u8>, ApiError>> {
    let limit = req
        .app_data::<BodyLimit>()
        .map(|l| l.0)
        .unwrap_or(64 * 1024);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut payload = payload.take();
    Box::pin(async move {
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|_| {
                ApiError::bad_request("invalid_body", "the request body could not be read")
            })?;
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    })
}

/// `None` for an empty (or all-whitespace) body; otherwise a JSON object of shape `T`.
pub fn parse<T: DeserializeOwned>(req: &HttpRequest, body: &[u8]) -> Result<Option<T>, ApiError> {
    let Some(first) = body.iter().find(|b| !b.is_ascii_whitespace()) else {
        return Ok(None);
    };
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as application/json",
        ));
    }
    if *first != b'{' {
        return Err(ApiError::bad_request(
            "invalid_json",
            "the request body must be a JSON object",
        ));
    }
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|e| field_error(&e))
}

/// "missing field"/"unknown field" name only a field; other data errors would quote the
/// offending value (maybe a password), so they get a neutral text.
pub fn field_error(e: &serde_json::Error) -> ApiError {
    if !e.is_data() {
        return ApiError::bad_request("invalid_json", "request body is not valid JSON");
    }
    let text = e.to_string();
    let message = if text.starts_with("missing field") || text.starts_with("unknown field") {
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

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Login {
        #[allow(dead_code)]
        username: String,
    }

    fn json_req() -> HttpRequest {
        TestRequest::default()
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .to_http_request()
    }

    #[test]
    fn a_positional_array_is_not_an_object() {
        let err = parse::<Login>(&json_req(), br#"["alice"]"#).unwrap_err();
        assert_eq!(err.code(), "invalid_json");
        assert!(parse::<Login>(&json_req(), br#" {"username":"alice"}"#)
            .unwrap()
            .is_some());
    }

    #[test]
    fn unknown_fields_other_types_and_empty_bodies() {
        assert_eq!(
            parse::<Login>(&json_req(), br#"{"username":"a","x":1}"#)
                .unwrap_err()
                .code(),
            "invalid_request"
        );
        let text = TestRequest::default()
            .insert_header((header::CONTENT_TYPE, "text/plain"))
            .to_http_request();
        assert_eq!(
            parse::<Login>(&text, b"{}").unwrap_err().code(),
            "unsupported_media_type"
        );
        assert!(parse::<Login>(&text, b"  \n").unwrap().is_none());
    }
}
