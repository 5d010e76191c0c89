//! Request ids and one structured line per request.
//!
//! Every request gets an id: a well-formed `X-Request-Id` from the client (or a proxy) is kept,
//! anything else is replaced by a fresh one; it is echoed in the response and is a field of
//! every log line written while the request runs (the `request` span). The access line has the
//! route *template* (never the raw path, which may hold ids), the status, the latency and, once
//! a session was checked, a short hash of its id; never bodies, query strings or headers, so no
//! credential can reach the log.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use sha2::Digest;
use std::time::Instant;
use tracing::Instrument;

pub const REQUEST_ID: &str = "x-request-id";

/// The route label of a request no route matched (404s, probes for random paths).
const NO_ROUTE: &str = "(no route)";

/// The method as a label: the standard ones by name, anything else as one value.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// A client's request id is kept when it is up to 31 characters of `A-Z a-z 0-9 . _ -`, a UUID,
/// or 32 lowercase hex digits (a W3C trace id, nginx's `$request_id`), and not `tsr_…`.
/// Anything else could forge log structure or carry a secret: Tessera's own credentials and
/// secrets are `tsr_`-prefixed or 43+ characters, and were echoed and logged when the limit
/// was 64 (the attack on issue 13).
pub fn well_formed(id: &str) -> bool {
    let plain = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    let hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let uuid = id.len() == 36
        && id.split('-').map(str::len).eq([8, 4, 4, 4, 12])
        && hex(&id.to_ascii_lowercase().replace('-', ""));
    let trace = id.len() == 32 && hex(id);
    !id.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("tsr_"))
        && (((1..=31).contains(&id.len()) && plain(id)) || uuid || trace)
}

/// A short, one-way tag of a session id for logs: lines of one session can be grouped, and the
/// id (public, but a handle for the admin API) is not spelled out.
pub fn session_tag(id: &str) -> String {
    hex::encode(&sha2::Sha256::digest(id.as_bytes())[..6])
}

/// Notes the session a request acted for in its log lines.
pub fn record_session(id: &str) {
    let span = tracing::Span::current();
    // Hashed only when a line will be written (the access log is often off in production).
    if !span.is_disabled() {
        span.record("session", session_tag(id).as_str());
    }
}

/// Handles of one route template, by method and status.
type ByOutcome = std::collections::HashMap<(&'static str, u16), metrics::Histogram>;

thread_local! {
    /// This thread's handles of `tessera_http_request_duration_seconds`, by route template,
    /// then method and status: the label strings and the registry's lookup are paid once per
    /// series and worker thread instead of on every request. Bounded like the series.
    static DURATIONS: std::cell::RefCell<std::collections::HashMap<String, ByOutcome>> =
        Default::default();
}

fn duration_histogram(route: &str, method: &'static str, status: u16) -> metrics::Histogram {
    DURATIONS.with(|handles| {
        let mut handles = handles.borrow_mut();
        if let Some(h) = handles.get(route).and_then(|m| m.get(&(method, status))) {
            return h.clone();
        }
        let h = metrics::histogram!(
            "tessera_http_request_duration_seconds",
            "route" => route.to_owned(),
            "method" => method,
            "status" => status.to_string(),
        );
        handles
            .entry(route.to_owned())
            .or_default()
            .insert((method, status), h.clone());
        h
    })
}

pub async fn access_log(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| well_formed(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let span = tracing::info_span!(
        target: "tessera::access",
        "request",
        request_id = %id,
        session = tracing::field::Empty
    );
    let started = Instant::now();
    let method = req.method().clone();
    let mut response = next.call(req).instrument(span.clone()).await;
    if let Ok(r) = &mut response {
        if let Ok(value) = HeaderValue::from_str(&id) {
            r.headers_mut()
                .insert(HeaderName::from_static(REQUEST_ID), value);
        }
    }
    let (status, route) = match &response {
        Ok(r) => (
            r.status().as_u16(),
            r.request()
                .match_pattern()
                .unwrap_or_else(|| NO_ROUTE.to_owned()),
        ),
        Err(e) => (
            e.as_response_error().status_code().as_u16(),
            NO_ROUTE.to_owned(),
        ),
    };
    let latency = started.elapsed();
    // Labels are the route template, the method and the status class, never a raw path or an
    // id: the series stay as few as the routes (metrics::every_route_label_is_a_template).
    duration_histogram(&route, method_label(&method), status).record(latency.as_secs_f64());
    if tracing::enabled!(target: "tessera::access", tracing::Level::INFO) {
        span.in_scope(|| {
            tracing::info!(
                target: "tessera::access",
                method = method_label(&method),
                route = %route,
                status = status,
                latency_us = latency.as_micros() as u64,
                "request"
            )
        });
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_short_request_ids_are_kept() {
        for id in [
            "a",
            "0f3c-88.ab_C",
            &"x".repeat(31),
            "6F9619FF-8B86-D011-B42D-00C04FC964FF",
            "4bf92f3577b34da6a3ce929d0e0e4736",
        ] {
            assert!(well_formed(id), "{id}");
        }
        // Secrets that fit the old 64-character rule (attack on issue 13).
        for id in [
            "q1Yb7lRkQmV0ZXN0LWtlay1ub3Qtc2VjcmV0LTEyMzQ", // a KEK or a session secret
            "tsr_ak_abcdef",
            "TSR_s_v1_eu_ab12_x",
            "test-admin-key-0123456789abcdef0123456789",
            &"g".repeat(32),
        ] {
            assert!(!well_formed(id), "{id}");
        }
        for id in [
            "",
            &"x".repeat(65),
            "a b",
            "a\"b",
            "line\nbreak",
            "{\"json\":1}",
            "tsr_s_v1 eu",
            "ü",
        ] {
            assert!(!well_formed(id), "{id:?}");
        }
        assert_eq!(session_tag("v1_eu_ab12_x").len(), 12);
        assert_ne!(session_tag("a"), session_tag("b"));
    }
}
