//! CSRF defence for cookie-authenticated unsafe requests (DESIGN §3): a same-origin `Origin`
//! (or `Sec-Fetch-Site: same-origin` when `Origin` is absent) plus `X-CSRF-Token` matching the
//! session's. Bearer requests are exempt: a browser never attaches them on its own.

use crate::error::ApiError;
use crate::session::CsrfToken;
use actix_web::http::header;
use actix_web::HttpRequest;

pub const CSRF_HEADER: &str = "x-csrf-token";

/// Is the request from an allowed origin: the same host as the request, or one listed in
/// `allowed` (a single-page app elsewhere on the site; listing it never locks out the pages
/// served on Tessera's own host).
pub fn check_origin(req: &HttpRequest, allowed: &[String]) -> Result<(), ApiError> {
    let refuse = || ApiError::forbidden("cross_origin_request", "cross-origin request refused");
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let origin = origin.to_str().map_err(|_| refuse())?;
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        let same_host = origin.split_once("://").is_some_and(|(scheme, rest)| {
            matches!(scheme, "http" | "https") && !host.is_empty() && rest == host
        });
        let ok = same_host || allowed.iter().any(|a| a == origin);
        return if ok { Ok(()) } else { Err(refuse()) };
    }
    match req.headers().get("sec-fetch-site").map(|v| v.as_bytes()) {
        None | Some(b"same-origin") | Some(b"none") => Ok(()),
        Some(_) => Err(refuse()),
    }
}

/// Origin check plus the session's CSRF token in `X-CSRF-Token` (constant-time comparison).
pub fn check(req: &HttpRequest, allowed: &[String], expected: &CsrfToken) -> Result<(), ApiError> {
    check_origin(req, allowed)?;
    let presented = req
        .headers()
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::forbidden("csrf_token_missing", "X-CSRF-Token header required"))?;
    if expected.matches(presented) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "csrf_token_invalid",
            "X-CSRF-Token does not match the session",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn same_host_origin_passes_and_foreign_fails() {
        let ok = TestRequest::default()
            .insert_header((header::HOST, "app.example:8080"))
            .insert_header((header::ORIGIN, "https://app.example:8080"))
            .to_http_request();
        assert!(check_origin(&ok, &[]).is_ok());
        let foreign = TestRequest::default()
            .insert_header((header::HOST, "app.example"))
            .insert_header((header::ORIGIN, "https://evil.example"))
            .to_http_request();
        assert!(check_origin(&foreign, &[]).is_err());
        let null = TestRequest::default()
            .insert_header((header::HOST, "app.example"))
            .insert_header((header::ORIGIN, "null"))
            .to_http_request();
        assert!(check_origin(&null, &[]).is_err());
    }

    #[test]
    fn configured_origins_replace_the_host_rule() {
        let allowed = vec!["https://app.example".to_owned()];
        let req = TestRequest::default()
            .insert_header((header::HOST, "auth.internal"))
            .insert_header((header::ORIGIN, "https://app.example"))
            .to_http_request();
        assert!(check_origin(&req, &allowed).is_ok());
    }

    #[test]
    fn without_origin_fetch_metadata_decides() {
        let cross = TestRequest::default()
            .insert_header(("sec-fetch-site", "cross-site"))
            .to_http_request();
        assert!(check_origin(&cross, &[]).is_err());
        let plain = TestRequest::default().to_http_request();
        assert!(check_origin(&plain, &[]).is_ok());
    }
}
