//! Server-sent event streams on the admin listener:
//!
//! * `GET /admin/revocations` (scope `revocations`): the revocation feeds of every region, on one
//!   stream, for embedded verifiers in other services, who never get Redis credentials. Each
//!   event's id says where the stream stands in every feed (`<ms>-<seq>` with one feed,
//!   `eu=<ms>-<seq>,us=<ms>-<seq>` with several), so a client resumes with `Last-Event-ID` (or
//!   `?after=`); heartbeats arrive every second.
//! * `GET /admin/events` (scope `audit`): session lifecycle events for SIEMs and webhook relays,
//!   resumable the same way.

use super::admin::{AdminKey, Scope};
use super::State;
use crate::error::ApiError;
use crate::revocation::Revocation;
use crate::store::revocations::FeedEntry;
use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::broadcast;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resume {
    #[serde(default)]
    after: Option<String>,
}

/// Where to resume: `Last-Event-ID` wins over `?after=`; both must be stream ids.
fn resume_point(req: &HttpRequest, query: &Resume) -> Result<Option<Cursor>, ApiError> {
    let raw = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query.after.clone());
    match raw {
        None => Ok(None),
        Some(id) => Cursor::parse(&id).map(Some).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_event_id",
                "event ids look like 1700000000000-0, or eu=1700000000000-0,us=1700000000000-0",
            )
        }),
    }
}

fn stream_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    let id = (ms.parse().ok()?, seq.parse().ok()?);
    // The last possible id has no successor: Redis refuses it as an exclusive start.
    (id != (u64::MAX, u64::MAX)).then_some(id)
}

/// Where a follower stands in each region's feed. A bare id (from a one-feed deployment, or
/// the audit stream) stands for the same point in every feed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    every: Option<(u64, u64)>,
    at: std::collections::BTreeMap<String, (u64, u64)>,
}

impl Cursor {
    fn parse(raw: &str) -> Option<Self> {
        if let Some(id) = stream_id(raw) {
            return Some(Self {
                every: Some(id),
                ..Self::default()
            });
        }
        let mut at = std::collections::BTreeMap::new();
        for part in raw.split(',') {
            let (region, id) = part.split_once('=')?;
            crate::session::Region::parse(region).ok()?;
            at.insert(region.to_owned(), stream_id(id)?);
        }
        (!at.is_empty()).then_some(Self { every: None, at })
    }

    fn position(&self, feed: &str) -> Option<(u64, u64)> {
        self.at.get(feed).copied().or(self.every)
    }

    /// Moves past `entry`; false when it was already passed (sent from the backlog).
    fn advance(&mut self, entry: &FeedEntry) -> bool {
        let Some(id) = stream_id(&entry.id) else {
            return true;
        };
        if self.position(&entry.region).is_some_and(|at| id <= at) {
            return false;
        }
        self.at.insert(entry.region.clone(), id);
        true
    }

    /// The id of the event just passed: bare with one feed, per feed with several.
    fn encode(&self, feeds: &[String]) -> String {
        let show = |(ms, seq): (u64, u64)| format!("{ms}-{seq}");
        if let [only] = feeds {
            return self.position(only).map(show).unwrap_or_default();
        }
        feeds
            .iter()
            .filter_map(|f| self.position(f).map(|p| format!("{f}={}", show(p))))
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn sse(body: impl Stream<Item = Result<Bytes, actix_web::Error>> + 'static) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body)
}

fn revocation_event(event_id: &str, entry: &FeedEntry) -> Bytes {
    let kind = match entry.entry {
        Revocation::Heartbeat { .. } => "heartbeat",
        _ => "revocation",
    };
    let data = serde_json::to_string(&entry.entry).unwrap_or_default();
    Bytes::from(format!("id: {event_id}\nevent: {kind}\ndata: {data}\n\n"))
}

/// How often a stream retries the backlog of a region whose Redis did not answer.
const BEHIND_RETRY: Duration = Duration::from_secs(1);

/// A region this node has not heard from for this long (three of its heartbeats) counts as
/// behind for open streams too: they forward no heartbeat until it is heard again.
const QUIET_AFTER_MS: i64 = 3_000;

/// Entries one backlog read asks for; a backlog is read page after page to its end.
const BACKLOG_PAGE: usize = 10_000;

/// One revocation stream: the backlog still to send, live entries, where the client stands,
/// and the regions whose backlog could not be read yet.
struct RevocationStream {
    backlog: VecDeque<FeedEntry>,
    live: broadcast::Receiver<FeedEntry>,
    cursor: Cursor,
    feeds: Vec<String>,
    links: Vec<crate::store::regional::RegionLink>,
    /// While a region is behind, its position in the event ids stays where the client
    /// resumed from (its revocations are still forwarded as they arrive, and sent again from
    /// the backlog later), and no heartbeat is forwarded: a verifier that counts its feed fresh
    /// by heartbeats sees the gap instead of a stream that looks whole.
    behind: Vec<String>,
    retry_at: tokio::time::Instant,
    /// This node's own view of every feed: a region whose follower went quiet after the
    /// stream opened (its Redis stopped, the link to it cut) withholds heartbeats too.
    revoked: std::sync::Arc<std::sync::RwLock<crate::revocation::RevokedSet>>,
    clock: crate::clock::SharedClock,
}

/// Reads the backlog of every link in `links` after the cursor; the regions that did not
/// answer are returned apart.
async fn read_backlogs(
    links: &[crate::store::regional::RegionLink],
    cursor: &Cursor,
) -> (Vec<FeedEntry>, Vec<String>) {
    let reads = links.iter().map(|link| async move {
        let mut after = cursor
            .position(link.region.as_str())
            .map(|(ms, seq)| format!("{ms}-{seq}"));
        // Page after page to the end: a cursor moved by a live entry must never skip an
        // entry of the backlog that was not read.
        let mut all = Vec::new();
        loop {
            match link.feed.backlog(after.as_deref(), BACKLOG_PAGE).await {
                Ok(page) => {
                    let full = page.len() == BACKLOG_PAGE;
                    after = page.last().map(|e| e.id.clone()).or(after);
                    all.extend(page);
                    if !full {
                        return (link.region.to_string(), Ok(all));
                    }
                }
                Err(e) => return (link.region.to_string(), Err(e)),
            }
        }
    });
    let mut entries = Vec::new();
    let mut failed = Vec::new();
    for (region, read) in futures_util::future::join_all(reads).await {
        match read {
            Ok(found) => entries.extend(found),
            Err(e) => {
                tracing::warn!(region = %region, error = %e, "revocation backlog unreadable; streaming the other regions and retrying");
                failed.push(region);
            }
        }
    }
    entries.sort_by_key(|e| stream_id(&e.id));
    (entries, failed)
}

impl RevocationStream {
    /// The next event to send, or `None` when the stream should end (the client resumes).
    async fn next_event(&mut self) -> Option<Bytes> {
        loop {
            if !self.behind.is_empty() && tokio::time::Instant::now() >= self.retry_at {
                self.catch_up().await;
                if !self.behind.is_empty() {
                    // A comment (ignored by SSE clients) for whoever reads the stream.
                    let names = self.behind.join(",");
                    return Some(Bytes::from(format!(": feeds behind: {names}\n\n")));
                }
            }
            let entry = match self.backlog.pop_front() {
                Some(entry) => entry,
                None => match tokio::time::timeout(BEHIND_RETRY, self.live.recv()).await {
                    Err(_) => continue,
                    Ok(Ok(entry)) => entry,
                    Ok(Err(broadcast::error::RecvError::Lagged(n))) => {
                        tracing::warn!(
                            skipped = n,
                            "revocation SSE client lagged; closing so it resumes"
                        );
                        return None;
                    }
                    Ok(Err(broadcast::error::RecvError::Closed)) => return None,
                },
            };
            if matches!(entry.entry, Revocation::Heartbeat { .. }) {
                if let Some(quiet) = self.quiet_regions() {
                    // A comment instead (SSE clients ignore it), for whoever reads the stream.
                    return Some(Bytes::from(format!(": feeds behind: {quiet}\n\n")));
                }
            }
            if !self.behind.is_empty() {
                if matches!(entry.entry, Revocation::Heartbeat { .. }) {
                    continue;
                }
                if self.behind.contains(&entry.region) {
                    let id = self.cursor.encode(&self.feeds);
                    return Some(revocation_event(&id, &entry));
                }
            }
            if !self.cursor.advance(&entry) {
                continue; // already sent from the backlog
            }
            return Some(revocation_event(&self.cursor.encode(&self.feeds), &entry));
        }
    }

    /// The regions this node has not heard from lately, if any (comma-separated).
    fn quiet_regions(&self) -> Option<String> {
        let now = self.clock.now_ms();
        let revoked = self.revoked.read().unwrap_or_else(|e| e.into_inner());
        let quiet: Vec<&str> = self
            .feeds
            .iter()
            .filter(|f| revoked.staleness_of(f, now) > QUIET_AFTER_MS)
            .map(String::as_str)
            .collect();
        (!quiet.is_empty()).then(|| quiet.join(","))
    }

    /// Retries the backlog of the regions still behind; those that answer join the stream.
    async fn catch_up(&mut self) {
        let behind: Vec<_> = self
            .links
            .iter()
            .filter(|l| self.behind.contains(&l.region.to_string()))
            .cloned()
            .collect();
        let (entries, failed) = read_backlogs(&behind, &self.cursor).await;
        self.backlog.extend(entries);
        self.behind = failed;
        self.retry_at = tokio::time::Instant::now() + BEHIND_RETRY;
    }
}

/// `GET /admin/revocations`: what every region's feed still holds after the resume point,
/// then live entries as nodes push them. A region whose Redis does not answer does not stop
/// the others: its backlog is retried every second (see `RevocationStream::behind`); only
/// when no region answers is the answer 503.
pub async fn revocations(
    key: AdminKey,
    req: HttpRequest,
    state: web::Data<State>,
    query: web::Query<Resume>,
) -> Result<HttpResponse, ApiError> {
    key.require(Scope::Revocations)?;
    let cursor = resume_point(&req, &query)?.unwrap_or_default();
    let live = state.feed_tx.subscribe();
    let links: Vec<_> = state.regional.links().to_vec();
    let feeds: Vec<String> = links.iter().map(|l| l.region.to_string()).collect();
    let (backlog, behind) = read_backlogs(&links, &cursor).await;
    if behind.len() == links.len() {
        return Err(ApiError::unavailable(
            "no region's revocation feed answered; retry shortly",
        ));
    }
    let stream = RevocationStream {
        backlog: backlog.into(),
        live,
        cursor,
        feeds,
        links,
        behind,
        retry_at: tokio::time::Instant::now() + BEHIND_RETRY,
        revoked: state.revoked.clone(),
        clock: state.clock.clone(),
    };
    let body = stream::unfold(stream, |mut stream| async move {
        let event = stream.next_event().await?;
        Some((Ok(event), stream))
    });
    Ok(sse(body))
}

const SESSION_EVENTS: &[&str] = &[
    "session_created",
    "session_revoked",
    "session_elevated",
    "session_evicted",
    "credential_version_bumped",
    "refresh_token_reused",
    "anomaly_detected",
    "user_erased",
];

/// `GET /admin/events`: session events from the audit stream, polled every 250 ms, with a
/// keep-alive comment every 15 s.
pub async fn events(
    key: AdminKey,
    req: HttpRequest,
    state: web::Data<State>,
    query: web::Query<Resume>,
) -> Result<HttpResponse, ApiError> {
    key.require(Scope::Audit)?;
    let after = resume_point(&req, &query)?
        .and_then(|c| c.every)
        .map(|(ms, seq)| format!("{ms}-{seq}"));
    let audit = state.audit.clone();
    let stream = stream::unfold((after, 0u32), move |(mut after, mut idle)| {
        let audit = audit.clone();
        async move {
            loop {
                match audit.page(None, after.as_deref(), 200).await {
                    Ok(events) if !events.is_empty() => {
                        let mut out = String::new();
                        for event in &events {
                            after = event.id.clone().or(after);
                            if SESSION_EVENTS.contains(&event.event.as_str()) {
                                let data = serde_json::to_string(event).unwrap_or_default();
                                out.push_str(&format!(
                                    "id: {}\nevent: {}\ndata: {data}\n\n",
                                    event.id.as_deref().unwrap_or_default(),
                                    event.event
                                ));
                            }
                        }
                        if !out.is_empty() {
                            return Some((Ok(Bytes::from(out)), (after, 0)));
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "event stream: audit read failed"),
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
                idle += 1;
                if idle >= 60 {
                    return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), (after, 0)));
                }
            }
        }
    });
    Ok(sse(stream.boxed_local()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(region: &str, id: &str) -> FeedEntry {
        FeedEntry {
            region: region.into(),
            id: id.into(),
            entry: Revocation::Heartbeat { at: 0 },
        }
    }

    #[test]
    fn a_cursor_resumes_each_feed_where_it_stood() {
        let feeds = ["eu".to_owned(), "us".to_owned()];
        let mut cursor = Cursor::parse("5-0").unwrap();
        assert!(!cursor.advance(&entry("us", "4-9")), "before the bare id");
        assert!(cursor.advance(&entry("eu", "7-0")));
        assert_eq!(cursor.encode(&feeds), "eu=7-0,us=5-0");
        let resumed = Cursor::parse(&cursor.encode(&feeds)).unwrap();
        assert_eq!(resumed.position("eu"), Some((7, 0)));
        assert_eq!(resumed.position("us"), Some((5, 0)));
        assert!(!cursor.clone().advance(&entry("eu", "6-3")));
        assert!(
            cursor.advance(&entry("us", "6-0")),
            "feeds move independently"
        );
        assert_eq!(cursor.encode(&feeds[..1]), "7-0", "one feed: a bare id");
        let last = "18446744073709551615-18446744073709551615";
        for bad in [
            "",
            "x",
            "eu=",
            "EU=1-0",
            "eu=1-0,us",
            last,
            &format!("eu={last}"),
        ] {
            assert!(Cursor::parse(bad).is_none(), "{bad}");
        }
    }
}
