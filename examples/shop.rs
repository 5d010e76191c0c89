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
use tessera::token::{validate_access_token, KeyLookup, Validation, VerifyingKey};

/// Keys fetched once from Tessera's JWKS (the embeddable verifier will refresh them by `kid`).
struct Keys(Vec<(String, VerifyingKey)>);

impl KeyLookup for Keys {
    fn key(&self, kid: &str) -> Option<&VerifyingKey> {
        self.0.iter().find(|(k, _)| k == kid).map(|(_, v)| v)
    }
}

struct Shop {
    keys: Keys,
    rules: Validation,
}

async fn catalog(req: HttpRequest, shop: web::Data<Shop>) -> Result<HttpResponse, ApiError> {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(tessera::http::credential::bearer_value)
        .ok_or_else(|| ApiError::unauthorized("no_token", "send an access token"))?;
    let now = tessera::http::now_ms() / 1000;
    let claims = validate_access_token(token, &shop.keys, &shop.rules, now)
        .map_err(|e| ApiError::unauthorized("invalid_token", e.to_string()))?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "for": claims.sub, "items": ["tea", "cups"] })))
}

#[derive(Deserialize)]
struct Payment {
    amount: String,
    payee: String,
}

async fn pay(
    req: HttpRequest,
    guard: web::Data<SessionGuard>,
    body: web::Json<Payment>,
) -> Result<HttpResponse, ApiError> {
    let (_, session) = guard.session(&req, tessera::http::now_ms()).await?;
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
    let guard = tessera::guard::connect(&settings).await?;
    let jwks_url = std::env::var("SHOP_JWKS_URL")
        .unwrap_or_else(|_| format!("http://{}/.well-known/jwks.json", settings.public_addr));
    let jwks: serde_json::Value = reqwest::get(&jwks_url).await?.json().await?;
    let keys = Keys(
        jwks["keys"]
            .as_array()
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| {
                        Some((
                            k["kid"].as_str()?.to_owned(),
                            VerifyingKey::from_jwk(k).ok()?,
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default(),
    );
    let shop = web::Data::new(Shop {
        keys,
        rules: Validation {
            issuer: settings.issuer.clone(),
            audiences: vec![settings.audience.clone()],
            leeway_secs: settings.token_leeway_secs,
            max_lifetime_secs: 900,
        },
    });
    let addr = std::env::var("SHOP_ADDR").unwrap_or_else(|_| "127.0.0.1:8090".into());
    tracing::info!(%addr, "shop listening");
    let guard = web::Data::new(guard);
    HttpServer::new(move || {
        App::new()
            .app_data(shop.clone())
            .app_data(guard.clone())
            .route("/catalog", web::get().to(catalog))
            .route("/payments", web::post().to(pay))
    })
    .bind(addr)?
    .run()
    .await?;
    Ok(())
}
