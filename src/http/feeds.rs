//! Server-sent event streams on the admin listener:
//!
//! * `GET /admin/revocations` (scope `revocations`): the revocation feed for embedded verifiers
//!   in other services, who never get Redis credentials. Each event carries its stream id, so a
//!   client resumes with `Last-Event-ID` (or `?after=`); heartbeats arrive every second.
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
fn resume_point(req: &HttpRequest, query: &Resume) -> Result<Option<String>, ApiError> {
    let raw = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query.after.clone());
    match raw {
        None => Ok(None),
        Some(id) if stream_id(&id).is_some() => Ok(Some(id)),
        Some(_) => Err(ApiError::bad_request(
            "invalid_event_id",
            "event ids look like 1700000000000-0",
        )),
    }
}

fn stream_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

fn sse(body: impl Stream<Item = Result<Bytes, actix_web::Error>> + 'static) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body)
}

fn revocation_event((id, entry): &FeedEntry) -> Bytes {
    let kind = match entry {
        Revocation::Heartbeat { .. } => "heartbeat",
        _ => "revocation",
    };
    let data = serde_json::to_string(entry).unwrap_or_default();
    Bytes::from(format!("id: {id}\nevent: {kind}\ndata: {data}\n\n"))
}

/// `GET /admin/revocations`: backlog since the resume point (or everything still retained),
/// then live entries as this node's follower sees them.
pub async fn revocations(
    key: AdminKey,
    req: HttpRequest,
    state: web::Data<State>,
    query: web::Query<Resume>,
) -> Result<HttpResponse, ApiError> {
    key.require(Scope::Revocations)?;
    let after = resume_point(&req, &query)?;
    // Subscribe before reading the backlog so nothing falls between the two.
    let live = state.feed_tx.subscribe();
    let backlog: VecDeque<FeedEntry> = state.feed.backlog(after.as_deref(), 100_000).await?.into();
    let last = backlog.back().map(|(id, _)| id.clone()).or(after);
    let stream = stream::unfold(
        (backlog, live, last.and_then(|l| stream_id(&l))),
        |(mut backlog, mut live, mut last)| async move {
            loop {
                if let Some(entry) = backlog.pop_front() {
                    return Some((Ok(revocation_event(&entry)), (backlog, live, last)));
                }
                match live.recv().await {
                    Ok(entry) => {
                        let id = stream_id(&entry.0);
                        if id.is_some() && last.is_some() && id <= last {
                            continue; // already sent from the backlog
                        }
                        last = id.or(last);
                        return Some((Ok(revocation_event(&entry)), (backlog, live, last)));
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        // The client fell behind the buffer: end the stream; it resumes from
                        // its last id and gets the gap from the backlog.
                        tracing::warn!(
                            skipped = n,
                            "revocation SSE client lagged; closing so it resumes"
                        );
                        return None;
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    );
    Ok(sse(stream))
}

/// Event types streamed by `/admin/events`.
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
    let after = resume_point(&req, &query)?;
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
