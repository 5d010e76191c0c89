//! Follows Tessera's revocation feed over SSE, resuming with `Last-Event-ID`.

use super::{Inner, Verifier};
use crate::revocation::Revocation;
use std::sync::Weak;
use std::time::Duration;

pub(super) async fn follow(inner: Weak<Inner>) {
    let mut last_id: Option<String> = None;
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let url = strong.config.revocations_url.clone().unwrap_or_default();
        let mut request = strong.http.get(&url).header("accept", "text/event-stream");
        if let Some(key) = &strong.config.api_key {
            request = request.bearer_auth(key);
        }
        if let Some(id) = &last_id {
            request = request.header("last-event-id", id);
        }
        // Do not keep the verifier alive through a long-lived stream.
        drop(strong);
        match request.send().await {
            Ok(mut response) if response.status().is_success() => {
                let mut buffer = String::new();
                loop {
                    let chunk =
                        tokio::time::timeout(Duration::from_secs(10), response.chunk()).await;
                    let Ok(Ok(Some(bytes))) = chunk else { break };
                    buffer.push_str(&String::from_utf8_lossy(&bytes));
                    while let Some(end) = buffer.find("\n\n") {
                        let event: String = buffer.drain(..end + 2).collect();
                        let Some(strong) = inner.upgrade() else {
                            return;
                        };
                        if let Some((id, entry)) = parse(&event) {
                            Verifier::apply(&strong, &entry);
                            last_id = Some(id);
                        }
                    }
                }
            }
            Ok(response) => {
                tracing::warn!(status = %response.status(), "revocation feed refused the verifier")
            }
            Err(e) => tracing::warn!(error = %e, "revocation feed unreachable"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One SSE event block → (id, entry).
fn parse(block: &str) -> Option<(String, Revocation)> {
    let mut id = None;
    let mut data = String::new();
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("id:") {
            id = Some(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.trim_start());
        }
    }
    Some((id?, serde_json::from_str(&data).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_and_skips_comments() {
        let block = "id: 1-0\nevent: revocation\ndata: {\"kind\":\"session\",\"sid\":\"s\",\"until\":5}\n\n";
        let (id, entry) = parse(block).unwrap();
        assert_eq!(id, "1-0");
        assert_eq!(
            entry,
            Revocation::Session {
                sid: "s".into(),
                until: 5
            }
        );
        assert!(parse(": keep-alive\n\n").is_none());
    }
}
