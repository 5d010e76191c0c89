//! `/account`: the account page, built into the binary (no CDN, no inline script).
//!
//! Every answer carries a Content-Security-Policy that allows only this origin's own script,
//! style and API calls, and no framing; the page itself is in `page/`.

use actix_web::http::header;
use actix_web::HttpResponse;

/// Only this origin's files and API; no inline script or style, no plugins, no framing, no
/// form posts elsewhere.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header(("Cross-Origin-Opener-Policy", "same-origin"))
        .body(body)
}

pub async fn index() -> HttpResponse {
    asset("text/html; charset=utf-8", include_str!("page/index.html"))
}

pub async fn script() -> HttpResponse {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("page/app.js"),
    )
}

pub async fn style() -> HttpResponse {
    asset("text/css; charset=utf-8", include_str!("page/app.css"))
}
