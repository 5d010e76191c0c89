//! The audit stream in Redis: a capped global stream plus a capped stream per user, so a
//! per-user query reads only that user's events (never a scan of the whole stream).

use super::keys::KeyLayout;
use crate::audit::{self, AuditEvent, Auditor};
use crate::session::{StoreError, UserId};
use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::streams::{StreamMaxlen, StreamRangeReply};

/// Events kept in the global stream (approximate trimming).
pub const GLOBAL_MAXLEN: usize = 100_000;
/// Events kept per user.
pub const USER_MAXLEN: usize = 1_000;

#[derive(Clone)]
pub struct RedisAudit {
    conn: ConnectionManager,
    keys: KeyLayout,
}

impl RedisAudit {
    pub fn new(conn: ConnectionManager, keys: KeyLayout) -> Self {
        Self { conn, keys }
    }

    /// Events after stream id `after` (exclusive), oldest first, at most `limit`.
    pub async fn page(
        &self,
        user: Option<&UserId>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let key = match user {
            Some(u) => self.keys.user_audit(u),
            None => self.keys.audit(),
        };
        let start = after.map(|a| format!("({a}")).unwrap_or_else(|| "-".into());
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(&key)
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(super::store_error)?;
        Ok(reply
            .ids
            .into_iter()
            .filter_map(|entry| {
                let text = |f: &str| entry.get::<String>(f).filter(|s| !s.is_empty());
                Some(AuditEvent {
                    id: Some(entry.id.clone()),
                    ts: text("ts")?.parse().ok()?,
                    event: text("event")?,
                    user_id: text("user"),
                    session_id: text("sid"),
                    ip: text("ip"),
                    actor: text("actor").unwrap_or_default(),
                    reason: text("reason"),
                })
            })
            .collect())
    }
}

#[async_trait]
impl Auditor for RedisAudit {
    async fn record(&self, event: AuditEvent) {
        audit::log(&event);
        let fields: Vec<(&str, String)> = vec![
            ("ts", event.ts.to_string()),
            ("event", event.event.clone()),
            ("user", event.user_id.clone().unwrap_or_default()),
            ("sid", event.session_id.clone().unwrap_or_default()),
            ("ip", event.ip.clone().unwrap_or_default()),
            ("actor", event.actor.clone()),
            ("reason", event.reason.clone().unwrap_or_default()),
        ];
        let mut pipe = redis::pipe();
        pipe.xadd_maxlen(
            self.keys.audit(),
            StreamMaxlen::Approx(GLOBAL_MAXLEN),
            "*",
            &fields,
        )
        .ignore();
        // An erasure is recorded globally only: writing it to the user's own stream would
        // recreate the per-user state that was just erased.
        let per_user = event.event != "user_erased";
        if let Some(user) = event
            .user_id
            .as_deref()
            .filter(|_| per_user)
            .and_then(|u| UserId::parse(u).ok())
        {
            pipe.xadd_maxlen(
                self.keys.user_audit(&user),
                StreamMaxlen::Approx(USER_MAXLEN),
                "*",
                &fields,
            )
            .ignore();
        }
        let result: redis::RedisResult<()> = pipe.query_async(&mut self.conn.clone()).await;
        if let Err(e) = result {
            tracing::warn!(error = %e, event = %event.event, "audit stream write failed; the log line above is the record");
        }
    }
}
