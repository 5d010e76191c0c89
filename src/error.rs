//! One error type for the HTTP layer: status + `{"error": code, "message": text}`.
//!
//! Internal causes go to the log, never to the client. Every error response carries
//! `Cache-Control: no-store`.

use crate::session::ports::{CreateError, MintError};
use crate::session::{AuthError, StoreError};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use std::borrow::Cow;
use std::fmt;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: Cow<'static, str>,
    /// `WWW-Authenticate`, `Retry-After`, a `Set-Cookie` expiring a dead session cookie.
    headers: Vec<(header::HeaderName, String)>,
    /// Logged, never sent.
    cause: Option<String>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
            cause: None,
        }
    }

    /// The same answer, plus a `Set-Cookie` (`removal`) that expires the dead cookie.
    pub fn expiring_cookie(mut self, removal: String) -> Self {
        self.headers.push((header::SET_COOKIE, removal));
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401 with `WWW-Authenticate: Bearer` (RFC 6750), so clients know how to authenticate.
    pub fn unauthorized(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, code, message);
        e.headers
            .push((header::WWW_AUTHENTICATE, r#"Bearer realm="tessera""#.into()));
        e
    }

    pub fn invalid_session() -> Self {
        Self::unauthorized("invalid_session", "no valid session: log in again")
    }

    pub fn forbidden(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// RFC 9470 §3: a valid session lacking the level or freshness a route needs.
    pub fn insufficient_user_authentication(acr: crate::session::Acr, max_age_secs: i64) -> Self {
        let description = "A stronger or more recent authentication is required";
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            "insufficient_user_authentication",
            format!(
                "step up to acr '{}' within the last {max_age_secs} seconds",
                acr.as_str()
            ),
        );
        e.headers
            .retain(|(name, _)| name != header::WWW_AUTHENTICATE);
        e.headers.push((header::WWW_AUTHENTICATE, format!(
            r#"Bearer error="insufficient_user_authentication", error_description="{description}", acr_values="{}", max_age="{max_age_secs}""#,
            acr.as_str()
        )));
        e
    }

    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many attempts; wait before retrying",
        );
        e.headers
            .push((header::RETRY_AFTER, retry_after_secs.max(1).to_string()));
        e
    }

    /// Asks the client to retry after `secs` (a `Retry-After` header).
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.headers
            .push((header::RETRY_AFTER, secs.max(1).to_string()));
        self
    }

    /// Redis (or another dependency) cannot answer: fail closed, ask to retry.
    pub fn unavailable(cause: impl fmt::Display) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the session store is unavailable; retry shortly",
        );
        e.headers.push((header::RETRY_AFTER, "1".into()));
        e.cause = Some(cause.to_string());
        e
    }

    /// An opaque 500; the cause is logged.
    pub fn internal(cause: impl fmt::Display) -> Self {
        let mut e = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error",
        );
        e.cause = Some(cause.to_string());
        e
    }

    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        match (&self.cause, self.status.is_server_error()) {
            (Some(cause), true) => {
                tracing::error!(error.code = self.code, error.cause = %cause, "request failed")
            }
            (cause, _) => tracing::info!(
                error.code = self.code,
                status = self.status.as_u16(),
                error.cause = cause.as_deref().unwrap_or(""),
                "request refused"
            ),
        }
        let mut response = HttpResponse::build(self.status);
        response.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        for (name, value) in &self.headers {
            response.append_header((name.clone(), value.as_str()));
        }
        response.json(serde_json::json!({ "error": self.code, "message": self.message }))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(cause) => ApiError::unavailable(format!("{cause:#}")),
            other => ApiError::internal(format!("{other:#}")),
        }
    }
}

impl From<CreateError> for ApiError {
    fn from(e: CreateError) -> Self {
        match e {
            CreateError::LimitReached => ApiError::new(
                StatusCode::CONFLICT,
                "session_limit_reached",
                "this user already has the maximum number of sessions",
            ),
            CreateError::CredentialVersionChanged => ApiError::new(
                StatusCode::CONFLICT,
                "credentials_changed",
                "the user's credentials changed meanwhile; authenticate again",
            ),
            CreateError::Store(e) => e.into(),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::NoSession => ApiError::invalid_session(),
            AuthError::Store(e) => e.into(),
        }
    }
}

/// A user id in a path or body is the caller's mistake (400, saying what a user id is); a
/// session id that does not parse is answered like one that does not exist (404), so nobody
/// learns which ids are well-formed.
impl From<crate::session::id::IdError> for ApiError {
    fn from(e: crate::session::id::IdError) -> Self {
        match e {
            crate::session::id::IdError::UserId => {
                ApiError::bad_request("invalid_user_id", e.to_string())
            }
            _ => ApiError::not_found("no such session"),
        }
    }
}

impl From<crate::authn::login::LoginError> for ApiError {
    fn from(e: crate::authn::login::LoginError) -> Self {
        use crate::authn::login::LoginError as L;
        match e {
            L::InvalidCredentials => ApiError::unauthorized("invalid_credentials", "wrong username or password"),
            L::Disabled => ApiError::forbidden("account_disabled", "this account is disabled"),
            L::RateLimited { retry_after_secs } => ApiError::too_many_requests(retry_after_secs),
            L::Busy => {
                let mut e = ApiError::unavailable("argon2 capacity exhausted");
                e.code = "busy";
                e.message = "the server is busy; retry shortly".into();
                e
            }
            L::MfaTicketInvalid => ApiError::unauthorized("invalid_mfa_token", "the MFA token is unknown, used or expired; log in again"),
            L::TotpInvalid => ApiError::unauthorized("invalid_totp", "wrong or expired TOTP code"),
            L::TotpReplayed => ApiError::unauthorized("totp_replayed", "this TOTP code was already used; wait for the next one"),
            L::NotStepUpCapable => ApiError::forbidden("step_up_unavailable", "this session's user has no credentials Tessera can check; step up through your backend"),
            L::Store(e) => e.into(),
            L::Create(e) => e.into(),
        }
    }
}

impl From<MintError> for ApiError {
    fn from(e: MintError) -> Self {
        match e {
            MintError::UnknownAudience => ApiError::bad_request(
                "invalid_audience",
                "audience is not one this service mints tokens for",
            ),
            other => ApiError::internal(format!("{other:#}")),
        }
    }
}
