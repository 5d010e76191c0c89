//! Pushed revocation: a killed session's access tokens die on every node long before `exp`.

use crate::helpers::*;
use serde_json::{json, Value};
use std::time::Duration;

async fn check_low(app: &TestApp, jwt: &str) -> reqwest::Response {
    app.client
        .get(format!("{}/v1/auth/check?risk=low", app.public))
        .bearer_auth(jwt)
        .send()
        .await
        .unwrap()
}

/// Polls until `check` answers 401 on `node`; panics after 5 s (tokens live 300 s).
async fn until_refused(node: &TestApp, jwt: &str) -> String {
    for _ in 0..100 {
        let response = check_low(node, jwt).await;
        if response.status() == 401 {
            let (_, code) = error_code(response).await;
            return code;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the revoked token was still accepted after 5 s");
}

async fn two_nodes(redis: &RedisServer) -> (TestApp, TestApp) {
    let settings = test_settings(redis);
    tokio::join!(spawn_app_with(settings.clone()), spawn_app_with(settings))
}

#[tokio::test]
async fn a_logged_out_sessions_token_is_refused_by_another_node() {
    let redis = RedisServer::start();
    let (a, b) = two_nodes(&redis).await;
    let created = a.create_session("alice").await;
    let jwt = a.access_token(&created.token).await;
    let ok = check_low(&b, &jwt).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["x-tessera-user"], "alice");
    assert_eq!(
        ok.headers()["x-tessera-session"],
        created.session["id"].as_str().unwrap()
    );

    let other = a.create_session("alice").await;
    let other_jwt = a.access_token(&other.token).await;

    assert_eq!(
        a.logout_with_cookie(&created.token, &created.csrf)
            .await
            .status(),
        200
    );
    assert_eq!(until_refused(&b, &jwt).await, "token_revoked");
    assert_eq!(
        check_low(&a, &jwt).await.status(),
        401,
        "the node that revoked refuses too"
    );
    assert_eq!(
        check_low(&b, &other_jwt).await.status(),
        200,
        "only that session's tokens die"
    );
}

#[tokio::test]
async fn revoke_all_kills_every_token_of_the_user_but_not_newer_ones() {
    let redis = RedisServer::start();
    let (a, b) = two_nodes(&redis).await;
    let s1 = a.create_session("alice").await;
    let jwt1 = a.access_token(&s1.token).await;
    let bob = a.create_session("bob").await;
    let bob_jwt = a.access_token(&bob.token).await;
    a.admin_post("/admin/users/alice/revoke-all", &json!({}))
        .await;
    assert_eq!(until_refused(&b, &jwt1).await, "token_revoked");
    let s2 = a.create_session("alice").await;
    let jwt2 = a.access_token(&s2.token).await;
    assert_eq!(
        check_low(&b, &jwt2).await.status(),
        200,
        "tokens minted after the bump live"
    );
    assert_eq!(check_low(&b, &bob_jwt).await.status(), 200);
}

#[tokio::test]
async fn evictions_and_kills_are_pushed_too() {
    let redis = RedisServer::start();
    let settings = tessera::Settings {
        max_sessions_per_user: 1,
        ..test_settings(&redis)
    };
    let (a, b) = tokio::join!(spawn_app_with(settings.clone()), spawn_app_with(settings));
    let first = a.create_session("alice").await;
    let jwt = a.access_token(&first.token).await;
    a.create_session("alice").await; // evicts the first
    assert_eq!(until_refused(&b, &jwt).await, "token_revoked");
}

#[tokio::test]
async fn the_feed_catches_up_after_redis_restarts() {
    let mut redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let (a, b) = two_nodes(&redis).await;
    let created = a.create_session("alice").await;
    let jwt = a.access_token(&created.token).await;
    redis.restart();
    // The JWT path keeps working from memory while followers reconnect.
    assert_eq!(check_low(&b, &jwt).await.status(), 200);
    let mut logged_out = false;
    for _ in 0..50 {
        if a.logout_with_cookie(&created.token, &created.csrf)
            .await
            .status()
            == 200
        {
            logged_out = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(logged_out);
    assert_eq!(until_refused(&b, &jwt).await, "token_revoked");
}

#[tokio::test]
async fn readiness_reports_the_feed() {
    let redis = RedisServer::start();
    let app = spawn_app(&redis).await;
    let mut body = Value::Null;
    for _ in 0..40 {
        body = app.readiness().await;
        if body["revocation_feed"] == "ok" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(body["revocation_feed"], "ok", "{body}");
    assert!(body["revocation_feed_staleness_ms"].as_i64().unwrap() < 10_000);
}

#[tokio::test]
async fn forward_auth_answers_for_both_risk_levels() {
    let redis = RedisServer::start();
    let app = spawn_app(&redis).await;
    let check = |query: &'static str, token: Option<String>, cookie: Option<String>| {
        let mut request = app
            .client
            .get(format!("{}/v1/auth/check{query}", app.public));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        if let Some(c) = cookie {
            request = request.header("cookie", format!("__Host-tessera={c}"));
        }
        request.send()
    };
    let pwd = app.create_session("alice").await;

    let anonymous = check("?risk=low", None, None).await.unwrap();
    assert_eq!(anonymous.headers()["vary"], "Cookie, Authorization");
    assert_eq!(anonymous.headers()["cache-control"], "no-store");
    assert_eq!(error_code(anonymous).await.0, 401);

    let by_cookie = check("?risk=low", None, Some(pwd.token.clone()))
        .await
        .unwrap();
    assert_eq!(by_cookie.status(), 200);
    assert_eq!(by_cookie.headers()["x-tessera-acr"], "pwd");
    assert_eq!(by_cookie.headers()["vary"], "Cookie, Authorization");

    let jwt = app.access_token(&pwd.token).await;
    assert_eq!(
        check("?risk=low", Some(jwt.clone()), None)
            .await
            .unwrap()
            .status(),
        200
    );
    let forged = format!("{}x", &jwt[..jwt.len() - 1]);
    assert_eq!(
        error_code(check("?risk=low", Some(forged), None).await.unwrap())
            .await
            .1,
        "invalid_token"
    );

    // High risk never accepts a JWT alone and wants the level.
    let high = check("?risk=high", Some(jwt), None).await.unwrap();
    assert_eq!(high.status(), 401);
    let challenged = check(
        "?risk=high&acr=mfa&max_age=300",
        None,
        Some(pwd.token.clone()),
    )
    .await
    .unwrap();
    assert_eq!(
        challenged.headers()["www-authenticate"],
        r#"Bearer error="insufficient_user_authentication", error_description="A stronger or more recent authentication is required", acr_values="mfa", max_age="300""#
    );
    assert_eq!(
        check("?risk=high&acr=pwd", None, Some(pwd.token.clone()))
            .await
            .unwrap()
            .status(),
        200
    );

    let mfa: Value = app
        .admin_post(
            "/admin/sessions",
            &json!({"user_id": "bob", "acr": "mfa", "amr": ["pwd", "otp"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    let strong = check(
        "?risk=high",
        Some(mfa["session_token"].as_str().unwrap().to_owned()),
        None,
    )
    .await
    .unwrap();
    assert_eq!(strong.status(), 200);
    assert_eq!(strong.headers()["x-tessera-acr"], "mfa");

    assert_eq!(
        check("?risk=medium", None, None).await.unwrap().status(),
        400
    );
}

#[tokio::test]
async fn metrics_report_mints_audit_events_and_feed_staleness_on_the_admin_listener_only() {
    let redis = RedisServer::start();
    let app = spawn_app(&redis).await;
    let created = app.create_session("alice").await;
    app.access_token(&created.token).await;
    // Wait for a heartbeat to have been heard (staleness reported and small), polling.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = app
            .client
            .get(format!("{}/metrics", app.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let heard = text.lines().any(|l| {
            l.starts_with("tessera_revocation_feed_staleness_seconds")
                && l.split_whitespace()
                    .last()
                    .and_then(|v| v.parse::<f64>().ok())
                    .is_some_and(|v| v < 5.0)
        });
        if heard {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no heartbeat heard: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for metric in [
        "tessera_access_tokens_minted_total",
        "tessera_audit_events_total{event=\"session_created\"}",
        "tessera_revocation_feed_staleness_seconds",
        "tessera_revoked_set_entries",
    ] {
        assert!(text.contains(metric), "{metric} missing from:\n{text}");
    }
    let public = app
        .client
        .get(format!("{}/metrics", app.public))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 404);
}

#[tokio::test]
async fn revocations_left_in_an_outbox_by_a_crashed_node_are_swept_to_the_feed() {
    use tessera::session::{SessionId, SessionStore, UserId};
    let redis = RedisServer::start();
    let settings = tessera::Settings {
        outbox_sweep_secs: 1,
        ..test_settings(&redis)
    };
    let app = spawn_app_with(settings.clone()).await;
    let created = app.create_session("alice").await;
    let jwt = app.access_token(&created.token).await;
    assert_eq!(check_low(&app, &jwt).await.status(), 200);

    // A "node" that revokes (the script writes the outbox entry) and dies before flushing it.
    let conns = tessera::store::RedisConnections::connect(&settings.home_redis())
        .await
        .unwrap();
    let layout = tessera::store::KeyLayout::new(settings.key_prefix.clone());
    let regions = settings.known_regions();
    let store = tessera::store::RedisSessionStore::new(
        conns.per_thread(),
        layout.clone(),
        regions.clone(),
        tessera::clock::system(),
    );
    let sid = SessionId::parse(created.session["id"].as_str().unwrap(), &regions).unwrap();
    assert!(store
        .revoke(&sid, &UserId::parse("alice").unwrap())
        .await
        .unwrap());
    let mut conn = redis.conn();
    let pending: i64 = redis::Commands::llen(&mut conn, layout.outbox(sid.tag())).unwrap();
    assert_eq!(
        pending, 1,
        "the revocation waits in the outbox, written by the same script"
    );

    assert_eq!(until_refused(&app, &jwt).await, "token_revoked");
    let pending: i64 = redis::Commands::llen(&mut conn, layout.outbox(sid.tag())).unwrap();
    assert_eq!(pending, 0, "the sweep moved it");
    // It found it without walking the keyspace: its cost must not grow with sessions.
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut conn)
        .unwrap();
    assert!(!stats.contains("cmdstat_scan:"), "{stats}");
    assert!(stats.contains("cmdstat_exists:"), "{stats}");
}

#[tokio::test]
async fn a_normal_logout_leaves_no_outbox_behind() {
    let redis = RedisServer::start();
    let app = spawn_app(&redis).await;
    let created = app.create_session("alice").await;
    app.logout_with_cookie(&created.token, &created.csrf).await;
    let mut conn = redis.conn();
    let outboxes: Vec<String> =
        redis::Commands::keys(&mut conn, format!("{}:ob:*", app.settings.key_prefix)).unwrap();
    assert!(outboxes.is_empty(), "{outboxes:?}");
}

#[tokio::test]
async fn a_stray_key_where_an_outbox_would_be_does_not_stop_the_sweep() {
    let redis = RedisServer::start();
    let settings = tessera::Settings {
        outbox_sweep_secs: 1,
        ..test_settings(&redis)
    };
    let app = spawn_app_with(settings.clone()).await;
    let mut conn = redis.conn();
    // Not a list: draining it fails, every pass.
    let _: () = redis::Commands::set(
        &mut conn,
        format!("{}:ob:{{0001}}", settings.key_prefix),
        "x",
    )
    .unwrap();
    // A revocation a crashed node left behind, in a later outbox of the same slice.
    let created = app.create_session("alice").await;
    let jwt = app.access_token(&created.token).await;
    let sid = created.session["id"].as_str().unwrap();
    let tag = sid.split('_').nth(2).unwrap();
    let entry = serde_json::json!({ "kind": "session", "sid": sid, "until": unix_ms() + 600_000 });
    let _: () = redis::Commands::rpush(
        &mut conn,
        format!("{}:ob:{{{tag}}}", settings.key_prefix),
        entry.to_string(),
    )
    .unwrap();
    assert_eq!(until_refused(&app, &jwt).await, "token_revoked");
}
