//! The embeddable verifier against a running Tessera: JWKS by kid, cache, pushed revocations.

use crate::helpers::*;
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tessera::token::{TokenError, Validation};
use tessera::verify::{Verifier, VerifierConfig, VerifyError};

fn config(app: &TestApp) -> VerifierConfig {
    let mut config = VerifierConfig::new(
        format!("{}/.well-known/jwks.json", app.public),
        Validation {
            issuer: "https://auth.test".into(),
            audiences: vec!["api".into()],
            leeway_secs: 5,
            max_lifetime_secs: 900,
        },
    );
    config.revocations_url = Some(format!("{}/admin/revocations", app.admin));
    config.api_key = Some(ADMIN_KEY.into());
    config.max_staleness = Duration::from_secs(2);
    config
}

#[tokio::test]
async fn verifies_locally_caches_by_bytes_and_learns_of_revocations() {
    let redis = RedisServer::shared();
    let app = spawn_app(&redis).await;
    let verifier = Verifier::start(config(&app)).await.unwrap();
    let session = app.create_session("alice").await;
    let jwt = app.access_token(&session.token).await;

    let claims = verifier.verify(&jwt).await.unwrap();
    assert_eq!(claims.sub, "alice");
    verifier.verify(&jwt).await.unwrap();
    assert_eq!(verifier.stats().signature_checks.load(Ordering::Relaxed), 1);
    assert_eq!(
        verifier.stats().cache_hits.load(Ordering::Relaxed),
        1,
        "the second check hit the cache"
    );

    // Flip one character inside the signature (always a different value).
    let at = jwt.len() - 10;
    let flipped = if &jwt[at..at + 1] == "B" { "C" } else { "B" };
    let forged = format!("{}{flipped}{}", &jwt[..at], &jwt[at + 1..]);
    assert!(matches!(
        verifier.verify(&forged).await,
        Err(VerifyError::Invalid(_))
    ));

    app.logout_with_cookie(&session.token, &session.csrf).await;
    let mut refused = false;
    for _ in 0..100 {
        if verifier.verify(&jwt).await == Err(VerifyError::Revoked) {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        refused,
        "the cached token was refused once the revocation arrived"
    );
    assert!(!verifier.is_stale());
}

#[tokio::test]
async fn an_unknown_kid_refetches_once_per_interval_and_known_keys_survive_failures() {
    let redis = RedisServer::shared();
    let settings = tessera::Settings {
        jwks_cache_secs: 0,
        ..test_settings(&redis)
    };
    let app = spawn_app_with(settings).await;
    let verifier = Verifier::start(config(&app)).await.unwrap();
    let session = app.create_session("alice").await;
    let old = app.access_token(&session.token).await;
    verifier.verify(&old).await.unwrap();
    assert_eq!(verifier.stats().jwks_fetches.load(Ordering::Relaxed), 1);

    // Rotate with no publish delay: the next token carries a kid the verifier never saw.
    let rotated = app
        .client
        .post(format!("{}/admin/keys/rotate", app.admin))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), 200);
    let new = app.access_token(&session.token).await;
    verifier.verify(&new).await.unwrap();
    assert_eq!(
        verifier.stats().jwks_fetches.load(Ordering::Relaxed),
        2,
        "one refetch"
    );

    // A bogus kid right after: no refetch storm (at most once per 30 s).
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts: Vec<String> = new.split('.').map(str::to_owned).collect();
    let mut header: Value = serde_json::from_slice(&b64.decode(&parts[0]).unwrap()).unwrap();
    header["kid"] = "nope".into();
    parts[0] = b64.encode(header.to_string());
    assert_eq!(
        verifier.verify(&parts.join(".")).await,
        Err(VerifyError::Invalid(TokenError::UnknownKid))
    );
    assert_eq!(verifier.stats().jwks_fetches.load(Ordering::Relaxed), 2);

    // Tessera gone: known keys keep working, the feed goes stale.
    drop(app);
    wait_until("the feed goes stale", || async { verifier.is_stale() }).await;
    assert!(verifier.verify(&old).await.is_ok());
}

#[tokio::test]
async fn fail_closed_refuses_everything_once_the_feed_is_stale() {
    let redis = RedisServer::shared();
    let app = spawn_app(&redis).await;
    let mut cfg = config(&app);
    cfg.fail_closed_when_stale = true;
    cfg.max_staleness = Duration::from_secs(1);
    let verifier = Verifier::start(cfg).await.unwrap();
    let session = app.create_session("alice").await;
    let jwt = app.access_token(&session.token).await;
    let mut ok = false;
    for _ in 0..40 {
        if verifier.verify(&jwt).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await; // until the first heartbeat arrives
    }
    assert!(ok);
    drop(app);
    wait_until("the feed goes stale", || async { verifier.is_stale() }).await;
    assert_eq!(verifier.verify(&jwt).await, Err(VerifyError::Stale));
}

#[tokio::test]
async fn the_verifier_needs_the_revocations_scope() {
    use sha2::Digest;
    let redis = RedisServer::shared();
    let audit_only = "tsr_ak_audit-only-key-0123456789abcdef0123456789";
    let mut settings = test_settings(&redis);
    settings.admin_keys = vec![tessera::config::AdminKeyConfig {
        name: "wrong".into(),
        sha256: hex::encode(sha2::Sha256::digest(audit_only.as_bytes())),
        scopes: vec![tessera::scope::Scope::parse("audit").unwrap()],
        expires_at: None,
    }];
    let app = spawn_app_with(settings).await;
    // The feed itself answers the wrong key with 403 insufficient_scope.
    let refused = app
        .client
        .get(format!("{}/admin/revocations", app.admin))
        .bearer_auth(audit_only)
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(refused).await,
        (403, "insufficient_scope".into())
    );
    // And a verifier holding that key never hears the feed: it goes stale.
    let mut cfg = config(&app);
    cfg.api_key = Some(audit_only.into());
    cfg.max_staleness = Duration::from_millis(300);
    let verifier = Verifier::start(cfg).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !verifier.is_stale() {
        assert!(
            std::time::Instant::now() < deadline,
            "no feed without the scope"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
