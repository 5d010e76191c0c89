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

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoPayment {
    amount: String,
    payee: String,
}

/// `POST /account/demo/payment`: the account page's demo of a high-risk action. It moves no
/// money: it answers what it would have paid, once the session holds a single-use step-up grant
/// bound to exactly this amount and payee (a grant for another amount or payee does not count).
pub async fn demo_payment(
    req: actix_web::HttpRequest,
    state: actix_web::web::Data<super::State>,
    body: actix_web::web::Json<DemoPayment>,
) -> Result<HttpResponse, crate::error::ApiError> {
    let valid = |s: &str| !s.trim().is_empty() && s.len() <= 64 && !s.chars().any(char::is_control);
    if !valid(&body.amount) || !valid(&body.payee) {
        return Err(crate::error::ApiError::bad_request(
            "invalid_payment",
            "amount and payee are 1-64 printable characters",
        ));
    }
    let (_, session) = state.guard.session(&req, state.clock.now_ms()).await?;
    let operation =
        serde_json::json!({ "action": "payment", "amount": body.amount, "payee": body.payee });
    let need = crate::session::policy::Requirement {
        acr: crate::session::Acr::Pwd,
        max_age_secs: 300,
        role: None,
    };
    state
        .guard
        .spend_grant(&session, operation.as_object().expect("an object"), &need)
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({ "paid": body.amount, "to": body.payee, "demo": true })))
}
