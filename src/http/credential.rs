//! Finding the session credential in a request: `Authorization: Bearer` or the `__Host-`
//! cookie read from the raw `Cookie` header. Never from the query string.

use crate::error::ApiError;
use crate::session::credential::MAX_TOKEN_LEN;
use crate::session::{Region, SessionToken};
use actix_web::http::header;
use actix_web::HttpRequest;

/// The session cookie's default name. `__Host-` makes browsers insist on `Secure`, `Path=/`
/// and no `Domain`, so no sibling subdomain can plant or overwrite it (see `cookie.rs` for the
/// opt-in `__Secure-` mode).
pub const COOKIE_NAME: &str = super::cookie::HOST_COOKIE;

/// How the session credential arrived; cookie requests need CSRF checks, bearer ones do not.
#[derive(Debug)]
pub enum Presented {
    Cookie(SessionToken),
    Bearer(SessionToken),
}

impl Presented {
    pub fn token(&self) -> &SessionToken {
        match self {
            Presented::Cookie(t) | Presented::Bearer(t) => t,
        }
    }

    pub fn is_cookie(&self) -> bool {
        matches!(self, Presented::Cookie(_))
    }
}

/// The raw value of the session cookie, if exactly one is present.
///
/// Names are compared byte for byte: a percent-encoded `%5F%5FHost-tessera` is another cookie
/// (actix's `req.cookies()` would decode it and could be fooled). Two session cookies mean
/// someone planted one: refused rather than guessing which is genuine.
pub fn session_cookie<'r>(req: &'r HttpRequest, name: &str) -> Result<Option<&'r str>, ApiError> {
    let mut found = None;
    // Bytes, not `to_str`: a sibling app's `lang=café` is not visible ASCII and must not break
    // Tessera's cookie. Only the session cookie's own value has to be text.
    for value in req.headers().get_all(header::COOKIE) {
        for pair in value.as_bytes().split(|b| *b == b';') {
            let pair = pair.trim_ascii();
            let Some(eq) = pair.iter().position(|b| *b == b'=') else {
                continue;
            };
            if pair[..eq].trim_ascii() != name.as_bytes() {
                continue;
            }
            if found.is_some() {
                return Err(ApiError::bad_request(
                    "duplicate_session_cookie",
                    "more than one session cookie was sent",
                ));
            }
            let raw = std::str::from_utf8(pair[eq + 1..].trim_ascii())
                .ok()
                .filter(|v| v.is_ascii())
                .ok_or_else(ApiError::invalid_session)?;
            found = Some(raw);
        }
    }
    Ok(found)
}

/// The session credential of the request, if any. A credential that is present but malformed is
/// a 401 (never silently ignored).
pub fn presented_session(
    req: &HttpRequest,
    regions: &[Region],
    cookie_name: &str,
) -> Result<Option<Presented>, ApiError> {
    if let Some(auth) = req.headers().get(header::AUTHORIZATION) {
        let raw = auth.to_str().ok().and_then(bearer_value).ok_or_else(|| {
            ApiError::unauthorized(
                "invalid_authorization",
                "Authorization must be `Bearer <session token>`",
            )
        })?;
        let token = SessionToken::parse(raw, regions).map_err(|e| {
            tracing::info!(reason = %e, "bearer credential refused");
            ApiError::invalid_session()
        })?;
        return Ok(Some(Presented::Bearer(token)));
    }
    let Some(raw) = session_cookie(req, cookie_name)? else {
        return Ok(None);
    };
    if raw.len() > MAX_TOKEN_LEN {
        return Err(ApiError::invalid_session());
    }
    let token = SessionToken::parse(raw, regions).map_err(|e| {
        tracing::info!(reason = %e, "session cookie refused");
        ApiError::invalid_session()
    })?;
    Ok(Some(Presented::Cookie(token)))
}

/// `Bearer <token>` with a case-insensitive scheme (RFC 6750 §2.1).
pub fn bearer_value(header: &str) -> Option<&str> {
    let (scheme, value) = header.split_once(' ')?;
    let value = value.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !value.is_empty() && !value.contains(' '))
        .then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn reads_the_exact_cookie_name_only() {
        let req = TestRequest::default()
            .insert_header((header::COOKIE, "a=1; __Host-tessera=abc; b=2"))
            .to_http_request();
        assert_eq!(session_cookie(&req, COOKIE_NAME).unwrap(), Some("abc"));

        let encoded = TestRequest::default()
            .insert_header((header::COOKIE, "%5F%5FHost-tessera=abc"))
            .to_http_request();
        assert_eq!(session_cookie(&encoded, COOKIE_NAME).unwrap(), None);

        let lookalike = TestRequest::default()
            .insert_header((header::COOKIE, "__host-tessera=abc; __Host-tessera2=x"))
            .to_http_request();
        assert_eq!(session_cookie(&lookalike, COOKIE_NAME).unwrap(), None);
    }

    #[test]
    fn a_sibling_apps_non_ascii_cookie_is_ignored() {
        let value =
            header::HeaderValue::from_bytes("lang=café; __Host-tessera=abc".as_bytes()).unwrap();
        let req = TestRequest::default()
            .insert_header((header::COOKIE, value))
            .to_http_request();
        assert_eq!(session_cookie(&req, COOKIE_NAME).unwrap(), Some("abc"));
        let only_theirs = header::HeaderValue::from_bytes("lang=café".as_bytes()).unwrap();
        let req = TestRequest::default()
            .insert_header((header::COOKIE, only_theirs))
            .to_http_request();
        assert_eq!(session_cookie(&req, COOKIE_NAME).unwrap(), None);
    }

    #[test]
    fn two_session_cookies_are_refused() {
        let req = TestRequest::default()
            .insert_header((header::COOKIE, "__Host-tessera=a; __Host-tessera=b"))
            .to_http_request();
        assert_eq!(
            session_cookie(&req, COOKIE_NAME).unwrap_err().code(),
            "duplicate_session_cookie"
        );
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_strict() {
        assert_eq!(bearer_value("Bearer abc"), Some("abc"));
        assert_eq!(bearer_value("bearer abc"), Some("abc"));
        assert_eq!(bearer_value("Basic abc"), None);
        assert_eq!(bearer_value("Bearer "), None);
        assert_eq!(bearer_value("Bearer a b"), None);
    }
}
