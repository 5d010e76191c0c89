//! The stateless path: JWTs minted from live sessions, checked by independent code.

use crate::helpers::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::*;
use serde_json::Value;
use tessera::token::{validate_access_token, KeyLookup, TokenError, Validation, VerifyingKey};

/// A key set built from nothing but a JWKS document.
struct Jwks(Vec<(String, VerifyingKey)>);

impl Jwks {
    fn from_document(doc: &Value) -> Self {
        Jwks(
            doc["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| {
                    (
                        k["kid"].as_str().unwrap().to_owned(),
                        VerifyingKey::from_jwk(k).unwrap(),
                    )
                })
                .collect(),
        )
    }
}

impl KeyLookup for Jwks {
    fn key(&self, kid: &str) -> Option<&VerifyingKey> {
        self.0.iter().find(|(k, _)| k == kid).map(|(_, v)| v)
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn mint_ok(app: &TestApp, session_token: &str, body: Option<Value>) -> (String, u64) {
    let response = app.mint(session_token, body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let json: Value = response.json().await.unwrap();
    assert_eq!(json["token_type"], "Bearer");
    (
        json["access_token"].as_str().unwrap().to_owned(),
        json["expires_in"].as_u64().unwrap(),
    )
}

#[tokio::test]
async fn a_minted_token_verifies_with_an_independent_jwt_library_from_the_jwks_alone() {
    let redis = RedisServer::shared();
    let app = spawn_app(&redis).await;
    let created = app.create_session("alice").await;
    let (token, expires_in) = mint_ok(&app, &created.token, None).await;
    assert_eq!(expires_in, 300, "default lifetime: 5 minutes");

    let jwks = app.jwks().await;
    let jwk = &jwks["keys"][0];
    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["alg"], "ES256");
    assert!(jwk.get("d").is_none(), "never a private part in the JWKS");
    let mut point = vec![4u8];
    point.extend(URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap());
    point.extend(URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap());
    let key = ES256PublicKey::from_bytes(&point).unwrap();
    let options = VerificationOptions {
        allowed_issuers: Some(HashSet::from_strings(&["https://auth.test"])),
        allowed_audiences: Some(HashSet::from_strings(&["api"])),
        required_key_id: Some(jwk["kid"].as_str().unwrap().to_owned()),
        required_signature_type: Some("at+jwt".into()),
        time_tolerance: Some(Duration::from_secs(5)),
        ..Default::default()
    };
    let claims = key
        .verify_token::<serde_json::Map<String, Value>>(&token, Some(options))
        .expect("jwt-simple accepts Tessera's token");
    assert_eq!(claims.subject.as_deref(), Some("alice"));
    let custom = claims.custom;
    assert_eq!(custom["sid"], created.session["id"]);
    assert_eq!(custom["acr"], "pwd");
    assert_eq!(custom["amr"], serde_json::json!(["pwd"]));
    assert_eq!(custom["roles"], serde_json::json!(["member"]));
    // A first session starts the user's version at Redis's clock (ms), never 0 (see create.lua).
    assert!(custom["ver"].as_u64().unwrap() > 1_700_000_000_000);
    assert!(custom["auth_time"].is_i64());
    assert!(claims.jwt_id.is_some());
    assert!(claims.invalid_before.is_some(), "nbf is set");
    assert!(claims.issued_at.is_some());

    // Tessera's own strict validation agrees, using only the JWKS document.
    let keys = Jwks::from_document(&jwks);
    let rules = Validation {
        issuer: "https://auth.test".into(),
        audiences: vec!["api".into()],
        leeway_secs: 5,
        max_lifetime_secs: 900,
    };
    let ours = validate_access_token(&token, &keys, &rules, now_secs()).unwrap();
    assert_eq!(ours.sid, created.session["id"].as_str().unwrap());
}

#[tokio::test]
async fn eddsa_can_be_selected() {
    let redis = RedisServer::shared();
    let settings = tessera::Settings {
        signing_alg: tessera::token::SigningAlg::EdDsa,
        ..test_settings(&redis)
    };
    let app = spawn_app_with(settings).await;
    let created = app.create_session("alice").await;
    let (token, _) = mint_ok(&app, &created.token, None).await;
    let jwks = app.jwks().await;
    let jwk = &jwks["keys"][0];
    assert_eq!(
        (jwk["kty"].as_str(), jwk["crv"].as_str()),
        (Some("OKP"), Some("Ed25519"))
    );
    let raw = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
    let key = Ed25519PublicKey::from_bytes(&raw).unwrap();
    let claims = key
        .verify_token::<serde_json::Map<String, Value>>(&token, None)
        .expect("jwt-simple accepts the EdDSA token");
    assert_eq!(claims.subject.as_deref(), Some("alice"));
}

#[tokio::test]
async fn audiences_come_only_from_the_allow_list() {
    let redis = RedisServer::shared();
    let app = spawn_app(&redis).await;
    let created = app.create_session("alice").await;
    let (token, _) = mint_ok(
        &app,
        &created.token,
        Some(serde_json::json!({"audience": "billing"})),
    )
    .await;
    let keys = Jwks::from_document(&app.jwks().await);
    let for_api = Validation {
        issuer: "https://auth.test".into(),
        audiences: vec!["api".into()],
        leeway_secs: 5,
        max_lifetime_secs: 900,
    };
    assert_eq!(
        validate_access_token(&token, &keys, &for_api, now_secs()),
        Err(TokenError::WrongAudience),
        "a billing token is no good at the api"
    );
    let for_billing = Validation {
        audiences: vec!["billing".into()],
        ..for_api
    };
    assert!(validate_access_token(&token, &keys, &for_billing, now_secs()).is_ok());

    let refused = app
        .mint(
            &created.token,
            Some(serde_json::json!({"audience": "evil"})),
        )
        .await;
    assert_eq!(error_code(refused).await, (400, "invalid_audience".into()));
}

#[tokio::test]
async fn a_cookie_client_mints_only_with_csrf_proof() {
    let redis = RedisServer::shared();
    let app = spawn_app(&redis).await;
    let created = app.create_session("alice").await;
    let bare = app
        .client
        .post(format!("{}/v1/token", app.public))
        .headers(app.cookie_headers(&created.token))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(bare).await.0, 403);
    let ok = app
        .client
        .post(format!("{}/v1/token", app.public))
        .headers(app.browser_unsafe_headers(&created.token, &created.csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn an_access_token_is_not_a_session_credential() {
    let redis = RedisServer::shared();
    let app = spawn_app(&redis).await;
    let created = app.create_session("alice").await;
    let (jwt, _) = mint_ok(&app, &created.token, None).await;
    let (status, code) = error_code(app.get_session_with_bearer(&jwt).await).await;
    assert_eq!((status, code.as_str()), (401, "invalid_session"));
}
