//! Anomaly signal: a session used from another network or browser family.

use crate::helpers::*;
use crate::users::*;
use serde_json::{json, Value};
use tessera::session::device::AnomalyPolicy;

/// `GET path` as a client at `ip` (through the trusted local proxy) with Firefox's UA.
async fn get_from(app: &TestApp, path: &str, token: &str, ip: &str) -> reqwest::Response {
    app.client
        .get(format!("{}{path}", app.public))
        .bearer_auth(token)
        .header("x-forwarded-for", ip)
        .header("user-agent", FIREFOX)
        .send()
        .await
        .unwrap()
}

async fn audit_events(app: &TestApp, user: &str) -> Vec<Value> {
    app.audit_events(&format!("user_id={user}")).await
}

#[tokio::test]
async fn allow_records_one_audit_event_and_serves_on() {
    let (_redis, app) = app_with_users(|s| s.anomaly_policy = AnomalyPolicy::Allow).await;
    let s = app.create_session("alice").await; // created at 203.0.113.7 with Firefox
    assert_eq!(
        get_from(&app, "/v1/session", &s.token, "203.0.5.5")
            .await
            .status(),
        200
    );
    assert!(
        audit_events(&app, "alice")
            .await
            .iter()
            .all(|e| e["event"] != "anomaly_detected"),
        "same /16: fine"
    );
    for _ in 0..3 {
        assert_eq!(
            get_from(&app, "/v1/session", &s.token, "198.51.100.9")
                .await
                .status(),
            200
        );
    }
    let anomalies: Vec<Value> = audit_events(&app, "alice")
        .await
        .into_iter()
        .filter(|e| e["event"] == "anomaly_detected")
        .collect();
    assert_eq!(anomalies.len(), 1, "audited once, not per request");
    assert_eq!(anomalies[0]["reason"], "ip network changed");
    assert_eq!(anomalies[0]["ip"], "198.51.100.9");
}

#[tokio::test]
async fn revoke_ends_the_session_on_first_anomalous_use() {
    let (_redis, app) = app_with_users(|s| s.anomaly_policy = AnomalyPolicy::Revoke).await;
    let s = app.create_session("alice").await;
    assert_eq!(
        get_from(&app, "/v1/session", &s.token, "203.0.113.50")
            .await
            .status(),
        200
    );
    let response = get_from(&app, "/v1/session", &s.token, "198.51.100.9").await;
    assert_eq!(error_code(response).await, (401, "invalid_session".into()));
    assert_eq!(
        get_from(&app, "/v1/session", &s.token, "203.0.113.50")
            .await
            .status(),
        401,
        "gone for good"
    );
    let events = audit_events(&app, "alice").await;
    let revoked = events
        .iter()
        .find(|e| e["event"] == "session_revoked")
        .unwrap();
    assert_eq!(revoked["reason"], "anomaly: ip network changed");
}

#[tokio::test]
async fn require_step_up_demands_a_step_up_after_the_anomaly() {
    let (_redis, app) = app_with_users(|s| s.anomaly_policy = AnomalyPolicy::RequireStepUp).await;
    let path = "/v1/admin/users/u-alice/sessions";
    // bob logs in with TOTP from 203.0.113.7: fresh MFA, the admin route is open to him.
    let first: Value = app
        .client
        .post(format!("{}/v1/login", app.public))
        .header("x-forwarded-for", "203.0.113.7")
        .header("user-agent", FIREFOX)
        .json(&json!({"username": "bob", "password": BOB_PW}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let done = app
        .client
        .post(format!("{}/v1/login/mfa", app.public))
        .header("x-forwarded-for", "203.0.113.7")
        .header("user-agent", FIREFOX)
        .json(&json!({"mfa_token": first["mfa_token"], "totp": bob_code(0)}))
        .send()
        .await
        .unwrap();
    let token = TestApp::cookie_of(&done);
    assert_eq!(
        get_from(&app, path, &token, "203.0.113.8").await.status(),
        200
    );

    // The same cookie from another network: low-risk reads still work, high-risk needs step-up.
    assert_eq!(
        get_from(&app, "/v1/session", &token, "198.51.100.9")
            .await
            .status(),
        200
    );
    let challenged = get_from(&app, path, &token, "198.51.100.9").await;
    assert_eq!(
        error_code(challenged).await,
        (401, "insufficient_user_authentication".into())
    );

    let stepped: Value = app
        .client
        .post(format!("{}/v1/session/step-up", app.public))
        .bearer_auth(&token)
        .header("x-forwarded-for", "198.51.100.9")
        .header("user-agent", FIREFOX)
        .json(&json!({"totp": bob_code(1)}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fresh = stepped["session_token"].as_str().unwrap();
    let after = get_from(&app, path, fresh, "198.51.100.9").await;
    let status = after.status();
    let body = after.text().await.unwrap_or_default();
    assert_eq!(status, 200, "after the step-up {stepped}: {body}");
}

/// The README's first example: a session created for `curl`, then used by curl itself.
#[tokio::test]
async fn a_tool_whose_user_agent_only_gains_a_version_is_not_an_anomaly() {
    let redis = RedisServer::shared();
    let mut settings = test_settings(&redis);
    settings.anomaly_policy = tessera::session::device::AnomalyPolicy::Revoke;
    let app = spawn_app_with(settings).await;
    let token = app.session_from_agent("curl-user", "curl").await;
    for _ in 0..2 {
        assert_eq!(app.get_session_as(&token, "curl/8.5.0").await.status(), 200);
    }
}
