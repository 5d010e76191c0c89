//! A second service next to Tessera: low-risk reads with a locally verified JWT, payments
//! behind Tessera's high-risk guard (a Redis-checked session plus a grant bound to the exact
//! payment).
//!
//! Run Tessera (`scripts/dev`), then in another shell, with the same `TESSERA_*` settings:
//!
//! ```sh
//! SHOP_ADDR=127.0.0.1:8090 cargo run --example shop
//! ```
//!
//! * `GET /catalog` with `Authorization: Bearer <access token from POST /v1/token>`
//! * `POST /payments {"amount": "120.00 EUR", "payee": "ACME"}` with the session credential,
//!   after `POST /v1/session/step-up {"totp": …, "bind": {"action": "payment", "amount":
//!   "120.00 EUR", "payee": "ACME"}}` at Tessera.

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde::Deserialize;
use tessera::error::ApiError;
use tessera::guard::SessionGuard;
use tessera::session::policy::Requirement;
use tessera::session::Acr;
use tessera::token::Validation;
use tessera::verify::{VerifiedToken, Verifier, VerifierConfig};

/// Low risk: a locally verified access token (no Redis, revocations pushed to the verifier).
async fn catalog(token: VerifiedToken) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "for": token.0.sub, "items": ["tea", "cups"] }))
}

#[derive(Deserialize)]
struct Payment {
    amount: String,
    payee: String,
}

/// High risk: the Redis-checked session and a step-up grant bound to exactly this payment.
async fn pay(
    req: HttpRequest,
    guard: web::Data<SessionGuard>,
    body: web::Json<Payment>,
) -> Result<HttpResponse, ApiError> {
    let (_, session) = guard.session(&req, guard.now()).await?;
    let operation =
        serde_json::json!({ "action": "payment", "amount": body.amount, "payee": body.payee });
    let need = Requirement {
        acr: Acr::Mfa,
        max_age_secs: 300,
        role: None,
    };
    guard
        .spend_grant(&session, operation.as_object().expect("object"), &need)
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "paid": body.amount, "to": body.payee })))
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let settings = tessera::Settings::load(None)?;
    tessera::telemetry::init("pretty", "info");
    let guard = tessera::connect_guard(&settings).await?;
    let public = std::env::var("SHOP_TESSERA_PUBLIC")
        .unwrap_or_else(|_| format!("http://{}", settings.public_addr));
    let admin = std::env::var("SHOP_TESSERA_ADMIN")
        .unwrap_or_else(|_| format!("http://{}", settings.admin_addr));
    let mut config = VerifierConfig::new(
        format!("{public}/.well-known/jwks.json"),
        Validation {
            issuer: settings.issuer.clone(),
            audiences: vec![settings.audience.clone()],
            leeway_secs: settings.token_leeway_secs,
            max_lifetime_secs: 900,
        },
    );
    // An admin key with the `revocations` scope (SHOP_REVOCATIONS_KEY, else the all-scopes key).
    config.api_key = std::env::var("SHOP_REVOCATIONS_KEY").ok().or(settings
        .admin_api_key
        .as_ref()
        .map(|k| k.expose().to_owned()));
    config.revocations_url = Some(format!("{admin}/admin/revocations"));
    let verifier = web::Data::new(Verifier::start(config).await?);
    let addr = std::env::var("SHOP_ADDR").unwrap_or_else(|_| "127.0.0.1:8090".into());
    tracing::info!(%addr, "shop listening");
    let guard = web::Data::new(guard);
    HttpServer::new(move || {
        App::new()
            .app_data(verifier.clone())
            .app_data(guard.clone())
            .route("/catalog", web::get().to(catalog))
            .route("/payments", web::post().to(pay))
    })
    .bind(addr)?
    .run()
    .await?;
    Ok(())
}
