//! Native clients: refresh-token rotation, the grace window and reuse detection.

use crate::helpers::*;
use crate::users::*;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn a_native_login_returns_an_access_and_a_refresh_token() {
    let (_redis, app) = app_with_users(|s| s.refresh_grace_secs = 10).await;
    let body = app.native_login().await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    assert!(body["refresh_token"]
        .as_str()
        .unwrap()
        .starts_with("tsr_r_v1_eu_"));
    assert_eq!(body["session"]["device_name"], "phone");
    assert_eq!(
        app.check_jwt(body["access_token"].as_str().unwrap()).await,
        200
    );

    // A refresh token is no session credential, and a session token is no refresh token.
    let refresh = body["refresh_token"].as_str().unwrap();
    assert_eq!(app.get_session_with_bearer(refresh).await.status(), 401);
    let session = app.create_session("alice").await;
    let wrong = app.refresh(&session.token).await;
    assert_eq!(
        error_code(wrong).await,
        (401, "invalid_refresh_token".into())
    );
}

#[tokio::test]
async fn each_refresh_rotates_and_a_spent_token_after_the_window_kills_the_session() {
    let (_redis, app) = app_with_users(|s| s.refresh_grace_secs = 1).await;
    let login = app.native_login().await;
    let r0 = login["refresh_token"].as_str().unwrap().to_owned();
    let first: Value = app.refresh(&r0).await.json().await.unwrap();
    let r1 = first["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r0, r1);
    assert_eq!(
        app.check_jwt(first["access_token"].as_str().unwrap()).await,
        200
    );
    let second: Value = app.refresh(&r1).await.json().await.unwrap();
    let r2 = second["refresh_token"].as_str().unwrap().to_owned();
    let jwt = second["access_token"].as_str().unwrap().to_owned();

    app.clock.advance(Duration::from_millis(1200));
    let reused = app.refresh(&r1).await;
    assert_eq!(
        error_code(reused).await,
        (401, "refresh_token_reused".into())
    );
    // The whole session is gone: the newest refresh token and its access tokens too.
    assert_eq!(
        error_code(app.refresh(&r2).await).await.1,
        "invalid_refresh_token"
    );
    let mut refused = false;
    for _ in 0..50 {
        if app.check_jwt(&jwt).await == 401 {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        refused,
        "the session's access tokens die via the revocation feed"
    );
    let audit: Value = app
        .admin_get("/admin/audit?user_id=u-alice")
        .await
        .json()
        .await
        .unwrap();
    assert!(audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["event"] == "refresh_token_reused"));
}

#[tokio::test]
async fn a_lost_response_is_retried_safely_within_the_grace_window() {
    let (_redis, app) = app_with_users(|s| s.refresh_grace_secs = 10).await;
    let login = app.native_login().await;
    let r0 = login["refresh_token"].as_str().unwrap().to_owned();
    let lost: Value = app.refresh(&r0).await.json().await.unwrap();
    let retried: Value = app.refresh(&r0).await.json().await.unwrap();
    assert_eq!(
        lost["refresh_token"], retried["refresh_token"],
        "the very same successor"
    );
    let r1 = retried["refresh_token"].as_str().unwrap();
    let next: Value = app.refresh(r1).await.json().await.unwrap();
    assert!(next["refresh_token"].is_string());
}

#[tokio::test]
async fn ten_concurrent_refreshes_of_one_token_rotate_once_and_share_the_successor() {
    let (_redis, app) = app_with_users(|s| s.refresh_grace_secs = 10).await;
    let app = std::sync::Arc::new(app);
    let login = app.native_login().await;
    let r0 = login["refresh_token"].as_str().unwrap().to_owned();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (app, r0) = (app.clone(), r0.clone());
        tasks.push(tokio::spawn(async move {
            let response = app.refresh(&r0).await;
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()["refresh_token"]
                .as_str()
                .unwrap()
                .to_owned()
        }));
    }
    let mut successors = std::collections::HashSet::new();
    for t in tasks {
        successors.insert(t.await.unwrap());
    }
    assert_eq!(successors.len(), 1, "one rotation, one successor for all");
    let r1 = successors.into_iter().next().unwrap();
    assert_eq!(
        app.refresh(&r1).await.status(),
        200,
        "the successor is live"
    );
}

#[tokio::test]
async fn only_the_immediate_predecessor_gets_grace() {
    let (_redis, app) = app_with_users(|s| s.refresh_grace_secs = 10).await;
    let login = app.native_login().await;
    let r0 = login["refresh_token"].as_str().unwrap().to_owned();
    let r1: Value = app.refresh(&r0).await.json().await.unwrap();
    let r1 = r1["refresh_token"].as_str().unwrap().to_owned();
    let _r2: Value = app.refresh(&r1).await.json().await.unwrap();
    let older = app.refresh(&r0).await;
    assert_eq!(
        error_code(older).await,
        (401, "refresh_token_reused".into())
    );
}

#[tokio::test]
async fn native_mfa_logins_get_refresh_tokens_too() {
    let (_redis, app) = app_with_users(|s| s.refresh_grace_secs = 10).await;
    let first: Value = app
        .client
        .post(format!("{}/v1/login", app.public))
        .json(&json!({"username": "bob", "password": BOB_PW, "client": "native"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let done: Value = app
        .client
        .post(format!("{}/v1/login/mfa", app.public))
        .json(&json!({"mfa_token": first["mfa_token"], "totp": bob_code(0), "client": "native"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(done["refresh_token"]
        .as_str()
        .unwrap()
        .starts_with("tsr_r_"));
    assert_eq!(done["session"]["acr"], "mfa");
}
