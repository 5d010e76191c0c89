//! One structured line per request (method, path, status, latency), without request bodies,
//! query strings or headers, so no credential can reach the log. Skipped entirely when the
//! `tessera::access` target is filtered out, so it costs nothing on a quiet benchmark run.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use std::time::Instant;

pub async fn access_log(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if !tracing::enabled!(target: "tessera::access", tracing::Level::INFO) {
        return next.call(req).await;
    }
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.path().to_owned();
    let response = next.call(req).await;
    let status = match &response {
        Ok(r) => r.status().as_u16(),
        Err(e) => e.as_response_error().status_code().as_u16(),
    };
    tracing::info!(
        target: "tessera::access",
        method = %method,
        path = %path,
        status = status,
        latency_us = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}
