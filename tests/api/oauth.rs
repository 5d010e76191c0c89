//! RFC 7009 revocation, RFC 7662 introspection and the SSE feeds on the admin listener.

use crate::helpers::*;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn introspection_answers_only_active_false_for_anything_not_live() {
    let redis = RedisServer::start();
    let app = spawn_app(&redis).await;
    let created = app.create_session("alice").await;
    let jwt = app.access_token(&created.token).await;

    let live: Value = app
        .admin_form("/admin/introspect", &[("token", &jwt)])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(live["active"], true);
    assert_eq!(live["sub"], "alice");
    assert_eq!(live["sid"], created.session["id"]);
    assert_eq!(live["session"]["acr"], "pwd");
    let by_session: Value = app
        .admin_form(
            "/admin/introspect",
            &[
                ("token", &created.token),
                ("token_type_hint", "session_token"),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_session["active"], true);
    assert_eq!(by_session["token_type"], "session_token");

    for junk in [
        "nonsense",
        "eyJhbGciOiJub25lIn0.e30.",
        &format!("{}x", &jwt[..jwt.len() - 1]),
    ] {
        let body: Value = app
            .admin_form("/admin/introspect", &[("token", junk)])
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(body, json!({"active": false}), "{junk}");
    }
    app.logout_with_cookie(&created.token, &created.csrf).await;
    for token in [&jwt, &created.token] {
        let body: Value = app
            .admin_form("/admin/introspect", &[("token", token)])
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(body, json!({"active": false}));
    }
}

#[tokio::test]
async fn rfc_7009_revocation_kills_the_session_and_its_tokens() {
    let redis = RedisServer::start();
    let app = spawn_app(&redis).await;
    let created = app.create_session("alice").await;
    let jwt = app.access_token(&created.token).await;
    let response = app
        .admin_form(
            "/admin/revoke",
            &[("token", &jwt), ("token_type_hint", "access_token")],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        app.get_session_with_bearer(&created.token).await.status(),
        401
    );

    let unknown = app
        .admin_form("/admin/revoke", &[("token", "whatever")])
        .await;
    assert_eq!(
        unknown.status(),
        200,
        "unknown tokens: 200, nothing revealed"
    );
    let missing = app.admin_form("/admin/revoke", &[("nothing", "x")]).await;
    assert_eq!(error_code(missing).await.0, 400);
}

#[tokio::test]
async fn revocation_that_cannot_be_stored_is_503_never_200() {
    let mut redis = RedisServer::start();
    let app = spawn_app(&redis).await;
    let created = app.create_session("alice").await;
    redis.kill();
    let response = app
        .admin_form("/admin/revoke", &[("token", &created.token)])
        .await;
    assert!(response.headers().get("retry-after").is_some());
    assert_eq!(error_code(response).await.0, 503);
}

#[tokio::test]
async fn scopes_guard_the_oauth_endpoints() {
    use sha2::Digest;
    let redis = RedisServer::start();
    let key = "tsr_ak_introspect-only-0123456789abcdef0123456789";
    let mut settings = test_settings(&redis);
    settings.admin_keys = vec![tessera::config::AdminKeyConfig {
        name: "gateway".into(),
        sha256: hex::encode(sha2::Sha256::digest(key.as_bytes())),
        scopes: vec![tessera::scope::Scope::parse("introspect").unwrap()],
        expires_at: None,
    }];
    let app = spawn_app_with(settings).await;
    let post = |path: &str| {
        app.client
            .post(format!("{}{path}", app.admin))
            .bearer_auth(key)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("token=x")
            .send()
    };
    assert_eq!(post("/admin/introspect").await.unwrap().status(), 200);
    assert_eq!(
        error_code(post("/admin/revoke").await.unwrap()).await.1,
        "insufficient_scope"
    );
}

/// Reads SSE chunks until `pred` holds for the accumulated text, or 5 s pass.
async fn read_sse_until(response: &mut reqwest::Response, pred: impl Fn(&str) -> bool) -> String {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !pred(&text) {
        let chunk = tokio::time::timeout_at(deadline, response.chunk()).await;
        match chunk {
            Ok(Ok(Some(bytes))) => text.push_str(&String::from_utf8_lossy(&bytes)),
            _ => panic!("SSE stream ended or timed out; got: {text}"),
        }
    }
    text
}

#[tokio::test]
async fn the_revocation_feed_streams_over_sse_and_resumes_from_the_last_event_id() {
    let redis = RedisServer::start();
    let app = spawn_app(&redis).await;
    let a = app.create_session("alice").await;
    let b = app.create_session("bob").await;
    let mut feed = app.revocation_stream(None).await;
    assert_eq!(feed.headers()["content-type"], "text/event-stream");
    let sid_a = a.session["id"].as_str().unwrap().to_owned();
    app.logout_with_cookie(&a.token, &a.csrf).await;
    let text = read_sse_until(&mut feed, |t| t.contains(&sid_a)).await;
    assert!(text.contains("event: revocation"));
    let revocation_block = text
        .split("\n\n")
        .find(|block| block.contains(&sid_a))
        .unwrap();
    let last_id = revocation_block
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .unwrap()
        .to_owned();
    let heartbeats = read_sse_until(&mut feed, |t| t.contains("event: heartbeat")).await;
    assert!(heartbeats.contains("\"kind\":\"heartbeat\""));
    drop(feed);

    // Missed while disconnected, delivered on resume; nothing from before the resume point.
    let sid_b = b.session["id"].as_str().unwrap().to_owned();
    app.logout_with_cookie(&b.token, &b.csrf).await;
    let mut resumed = app.revocation_stream(Some(&last_id)).await;
    let text = read_sse_until(&mut resumed, |t| t.contains(&sid_b)).await;
    assert!(!text.contains(&sid_a), "resumed after {last_id}: {text}");
}

#[tokio::test]
async fn the_event_stream_carries_session_events() {
    let redis = RedisServer::start();
    let app = spawn_app(&redis).await;
    let mut events = app
        .client
        .get(format!("{}/admin/events", app.admin))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    let a = app.create_session("alice").await;
    app.logout_with_cookie(&a.token, &a.csrf).await;
    let text = read_sse_until(&mut events, |t| t.contains("event: session_revoked")).await;
    assert!(text.contains("event: session_created"));
    assert!(!text.contains("tsr_s_"), "no credentials in events");
}
