//! The audit trail in Redis: a capped global stream, plus a small capped list per user (with
//! a retention TTL) so a per-user query reads only that user's events, never the whole stream.
//! (A stream per user would cost ~4.5 KB of Redis memory per user; a short list costs bytes.)

use super::connection::Conn;
use super::keys::KeyLayout;
use crate::audit::{self, AuditEvent, Auditor};
use crate::session::{StoreError, UserId};
use async_trait::async_trait;
use redis::streams::StreamRangeReply;
use redis::AsyncCommands;

/// Events kept in the global stream (approximate trimming).
pub const GLOBAL_MAXLEN: usize = 100_000;
/// Events kept per user.
pub const USER_MAXLEN: isize = 200;
/// A user's event list expires this long after their last event.
pub const USER_RETENTION_SECS: i64 = 90 * 24 * 3600;

#[derive(Clone)]
pub struct RedisAudit {
    conn: Conn,
    keys: KeyLayout,
}

impl RedisAudit {
    pub fn new(conn: Conn, keys: KeyLayout) -> Self {
        Self { conn, keys }
    }

    /// Events after event id `after` (exclusive), oldest first, at most `limit`.
    pub async fn page(
        &self,
        user: Option<&UserId>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        match user {
            Some(user) => self.user_page(user, after, limit).await,
            None => self.global_page(after, limit).await,
        }
    }

    async fn global_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let start = after.map(|a| format!("({a}")).unwrap_or_else(|| "-".into());
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(self.keys.audit())
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

    async fn user_page(
        &self,
        user: &UserId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let raw: Vec<String> = redis::cmd("LRANGE")
            .arg(self.keys.user_audit(user))
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(super::store_error)?;
        let after = after.and_then(stream_id);
        let mut events: Vec<AuditEvent> = raw
            .iter()
            .rev()
            .filter_map(|r| serde_json::from_str::<AuditEvent>(r).ok())
            .filter(|e| match (after, e.id.as_deref().and_then(stream_id)) {
                (Some(after), Some(id)) => id > after,
                _ => true,
            })
            .collect();
        events.truncate(limit);
        Ok(events)
    }
}

/// A stream id `ms-seq` as a comparable pair.
fn stream_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
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
        let id: redis::RedisResult<String> = redis::cmd("XADD")
            .arg(self.keys.audit())
            .arg("MAXLEN")
            .arg("~")
            .arg(GLOBAL_MAXLEN)
            .arg("*")
            .arg(&fields)
            .query_async(&mut self.conn.clone())
            .await;
        let id = match id {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(error = %e, event = %event.event, "audit stream write failed; the log line above is the record");
                return;
            }
        };
        // An erasure is recorded globally only: writing it to the user's own list would
        // recreate the per-user state that was just erased.
        let user = event
            .user_id
            .as_deref()
            .filter(|_| event.event != "user_erased")
            .and_then(|u| UserId::parse(u).ok());
        if let Some(user) = user {
            let key = self.keys.user_audit(&user);
            let entry = AuditEvent {
                id: Some(id),
                ..event
            };
            let json = serde_json::to_string(&entry).unwrap_or_default();
            // Three single-key commands rather than a MULTI block, which a cluster refuses as
            // a whole while the key's slot moves. Best effort, in an order that never leaves
            // an entry without a retention once the second command ran.
            let mut conn = self.conn.clone();
            let result: redis::RedisResult<()> = async {
                let _: i64 = conn.lpush(&key, json).await?;
                let _: bool = conn.expire(&key, USER_RETENTION_SECS).await?;
                conn.ltrim(&key, 0, USER_MAXLEN - 1).await
            }
            .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "per-user audit write failed; the global stream has the event");
            }
        }
    }
}
