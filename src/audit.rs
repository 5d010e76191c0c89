//! The audit trail: lifecycle events, appended to a capped Redis Stream (global and per user)
//! and mirrored to structured logs, which are the durable record. High-volume events (token
//! mints) are not audited.

use crate::clock::UnixMillis;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Who caused an event: `user:<id>`, `admin-key:<name>`, `admin:<id>` or `system`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor(String);

impl Actor {
    pub fn user(id: &str) -> Self {
        Self(format!("user:{id}"))
    }
    pub fn admin_key(name: &str) -> Self {
        Self(format!("admin-key:{name}"))
    }
    pub fn admin_user(id: &str) -> Self {
        Self(format!("admin:{id}"))
    }
    pub fn system() -> Self {
        Self("system".into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One lifecycle event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Stream id, filled in when read back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub ts: UnixMillis,
    /// `session_created`, `session_elevated`, `session_revoked`, `session_evicted`,
    /// `credential_version_bumped`, `login_failed`, `rate_limited`, `anomaly_detected`, …
    pub event: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    pub actor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl AuditEvent {
    pub fn new(event: &str, actor: &Actor, ts: UnixMillis) -> Self {
        Self {
            event: event.into(),
            actor: actor.as_str().into(),
            ts,
            ..Self::default()
        }
    }
    pub fn user(mut self, user: &str) -> Self {
        self.user_id = Some(user.into());
        self
    }
    pub fn session(mut self, sid: &str) -> Self {
        self.session_id = Some(sid.into());
        self
    }
    pub fn ip(mut self, ip: &str) -> Self {
        if !ip.is_empty() {
            self.ip = Some(ip.into());
        }
        self
    }
    pub fn reason(mut self, reason: &str) -> Self {
        self.reason = Some(reason.into());
        self
    }
}

/// Where events go. Recording never fails the operation that caused it: a sink that cannot
/// write logs the event (the log is the durable record) and moves on.
#[async_trait]
pub trait Auditor: Send + Sync {
    async fn record(&self, event: AuditEvent);
}

/// Mirrors an event to the structured log (and counts it by type).
pub fn log(event: &AuditEvent) {
    metrics::counter!("tessera_audit_events_total", "event" => event.event.clone()).increment(1);
    crate::meters::event(event);
    tracing::info!(
        target: "tessera::audit",
        event = %event.event,
        user.id = event.user_id.as_deref().unwrap_or(""),
        session.id = event.session_id.as_deref().unwrap_or(""),
        client.ip = event.ip.as_deref().unwrap_or(""),
        actor = %event.actor,
        reason = event.reason.as_deref().unwrap_or(""),
        "audit"
    );
}

/// An auditor that only logs (processes that do not own the audit stream).
pub struct LogOnly;

#[async_trait]
impl Auditor for LogOnly {
    async fn record(&self, event: AuditEvent) {
        log(&event);
    }
}
