//! The high-risk guard: an actix extractor that demands a live, Redis-checked session at a
//! level and freshness the route states, for Tessera's own routes and for embedding apps.
//!
//! ```ignore
//! App::new()
//!     .app_data(web::Data::new(guard))                        // a SessionGuard
//!     .service(web::resource("/payments")
//!         .app_data(Requirement { acr: Acr::Mfa, max_age_secs: 300, role: None })
//!         .route(web::post().to(pay)));
//! async fn pay(elevated: Elevated) -> impl Responder { /* elevated.session */ }
//! ```
//!
//! Answers: no valid session → plain 401; wrong role → 403; valid session lacking the level or
//! freshness → 401 with the RFC 9470 `insufficient_user_authentication` challenge.

use super::credential::{presented_session, Presented};
use super::csrf;
use crate::error::ApiError;
use crate::session::device::{AnomalyPolicy, AnomalyRules};
use crate::session::policy::{Requirement, Verdict};
use crate::session::{Region, Session, SessionService, UnixMillis};
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Everything needed to check a request's session. Cheap to clone.
#[derive(Clone)]
pub struct SessionGuard {
    service: SessionService,
    trusted_proxies: Arc<[ipnet::IpNet]>,
    anomaly: AnomalyRules,
    regions: Arc<[Region]>,
    allowed_origins: Arc<[String]>,
    /// The session cookie's name (`__Host-tessera`, or `__Secure-tessera` with a domain).
    cookie_name: &'static str,
    /// When false (Redis may evict keys), session checks fail closed.
    redis_ok: Arc<AtomicBool>,
}

impl SessionGuard {
    pub fn new(
        service: SessionService,
        allowed_origins: Vec<String>,
        redis_ok: Arc<AtomicBool>,
    ) -> Self {
        Self {
            trusted_proxies: Arc::default(),
            anomaly: AnomalyRules {
                policy: AnomalyPolicy::Allow,
                ipv4_prefix: 16,
                ipv6_prefix: 48,
            },
            regions: service.regions().to_vec().into(),
            service,
            allowed_origins: allowed_origins.into(),
            cookie_name: super::cookie::HOST_COOKIE,
            redis_ok,
        }
    }

    /// Reads the session cookie under `name` (see `SessionCookie::name`).
    pub fn with_cookie_name(mut self, name: &'static str) -> Self {
        self.cookie_name = name;
        self
    }

    /// Client-IP resolution and anomaly rules (see `Settings`).
    pub fn with_network(
        mut self,
        trusted_proxies: Vec<ipnet::IpNet>,
        anomaly: AnomalyRules,
    ) -> Self {
        self.trusted_proxies = trusted_proxies.into();
        self.anomaly = anomaly;
        self
    }

    /// Now, on the session service's clock.
    pub fn now(&self) -> crate::clock::UnixMillis {
        self.service.clock().now_ms()
    }

    pub fn service(&self) -> &SessionService {
        &self.service
    }

    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    pub fn allowed_origins(&self) -> &[String] {
        &self.allowed_origins
    }

    /// Finds the credential, runs the CSRF checks a cookie needs on unsafe methods (before any
    /// I/O), and loads the live session from Redis.
    pub async fn session(
        &self,
        req: &HttpRequest,
        now: UnixMillis,
    ) -> Result<(Presented, Session), ApiError> {
        self.load(req, now, true, false).await
    }

    /// `session` for a low-risk read (`GET /v1/session`, forward auth at `risk=low`): the
    /// record may come from the node's near cache. Never for a write or a high-risk route.
    pub async fn session_low_risk(
        &self,
        req: &HttpRequest,
        now: UnixMillis,
    ) -> Result<(Presented, Session), ApiError> {
        self.load(req, now, true, true).await
    }

    /// `session` for a request that only *ends* sessions (logout, kills): allowed even while
    /// Redis runs with an eviction policy, because refusing would keep a compromised session
    /// alive, and deleting a key is never made unsafe by eviction.
    pub async fn session_to_end(
        &self,
        req: &HttpRequest,
        now: UnixMillis,
    ) -> Result<(Presented, Session), ApiError> {
        match self.load(req, now, false, false).await {
            // A retry after a 503 finds the session already gone on the primary: that answer
            // is final only once the replicas have it too.
            Err(e) if e.code() == "invalid_session" => {
                if let Ok(Some(presented)) = presented_session(req, &self.regions, self.cookie_name)
                {
                    self.service.settle(presented.token().id()).await?;
                }
                Err(e)
            }
            other => other,
        }
    }

    async fn load(
        &self,
        req: &HttpRequest,
        now: UnixMillis,
        refuse_while_evicting: bool,
        low_risk: bool,
    ) -> Result<(Presented, Session), ApiError> {
        let presented =
            presented_session(req, &self.regions, self.cookie_name)?.ok_or_else(|| {
                ApiError::unauthorized("no_session", "no session credential presented")
            })?;
        let unsafe_method = !matches!(req.method().as_str(), "GET" | "HEAD" | "OPTIONS");
        if unsafe_method && presented.is_cookie() {
            csrf::check(
                req,
                &self.allowed_origins,
                &presented.token().secret().csrf_token(),
            )?;
        }
        if refuse_while_evicting && !self.redis_ok.load(Ordering::Relaxed) {
            return Err(ApiError::unavailable(
                "Redis maxmemory-policy is not noeviction",
            ));
        }
        let mut session = if low_risk && !unsafe_method {
            self.service
                .authenticate_low_risk(presented.token(), now)
                .await?
        } else {
            self.service.authenticate(presented.token(), now).await?
        };
        super::access_log::record_session(session.id.as_str());
        let ip = super::client_ip::client_ip(req, &self.trusted_proxies);
        let ua = req
            .headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        self.service
            .screen(&mut session, &self.anomaly, ip, ua, now)
            .await?;
        if self.anomaly.policy != AnomalyPolicy::RequireStepUp {
            // The marker only dedupes the audit event; under `allow` it must not raise the bar.
            session.record.anomaly_at = 0;
        }
        Ok((presented, session))
    }

    /// Spends the single-use grant a step-up bound to exactly this `operation`. Without one
    /// (or with one below `requirement.acr`), answers the RFC 9470 challenge; the role is
    /// still checked first.
    pub async fn spend_grant(
        &self,
        session: &Session,
        operation: &serde_json::Map<String, serde_json::Value>,
        requirement: &Requirement,
    ) -> Result<(), ApiError> {
        if let Some(role) = &requirement.role {
            if !session.record.roles.iter().any(|r| r == role) {
                return Err(ApiError::forbidden(
                    "insufficient_role",
                    "this route needs a role the session does not have",
                ));
            }
        }
        let digest = crate::session::grant::operation_digest(operation);
        match self.service.take_grant(session, &digest).await? {
            Some(level) if level >= requirement.acr => {
                tracing::info!(session.id = %session.id, "operation grant spent");
                Ok(())
            }
            _ => Err(ApiError::insufficient_user_authentication(
                requirement.acr,
                requirement.max_age_secs,
            )),
        }
    }

    /// `session`, then the route's requirement.
    pub async fn elevated(
        &self,
        req: &HttpRequest,
        requirement: &Requirement,
        now: UnixMillis,
    ) -> Result<Elevated, ApiError> {
        let (presented, session) = self.session(req, now).await?;
        check(&session, requirement, now)?;
        Ok(Elevated { presented, session })
    }
}

/// Applies a requirement to a loaded session, with the documented answers.
pub fn check(
    session: &Session,
    requirement: &Requirement,
    now: UnixMillis,
) -> Result<(), ApiError> {
    match requirement.judge(&session.record, now) {
        Verdict::Satisfied => Ok(()),
        Verdict::MissingRole => Err(ApiError::forbidden(
            "insufficient_role",
            "this route needs a role the session does not have",
        )),
        Verdict::Insufficient => {
            tracing::info!(session.id = %session.id, "step-up required");
            Err(ApiError::insufficient_user_authentication(
                requirement.acr,
                requirement.max_age_secs,
            ))
        }
    }
}

/// A session that met the route's `Requirement` (found in the route's or scope's app data).
pub struct Elevated {
    pub presented: Presented,
    pub session: Session,
}

impl FromRequest for Elevated {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let guard = req
                .app_data::<web::Data<SessionGuard>>()
                .ok_or_else(|| ApiError::internal("SessionGuard missing from app data"))?;
            let requirement = req
                .app_data::<Requirement>()
                .ok_or_else(|| ApiError::internal("route has no Requirement in its app data"))?;
            Ok(guard
                .elevated(&req, requirement, guard.service.clock().now_ms())
                .await?)
        })
    }
}
