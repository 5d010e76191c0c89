//! Admin kill switches, erasure, limits, the audit trail and scoped admin keys.

use crate::helpers::*;
use crate::users::*;
use redis::Commands;
use serde_json::{json, Value};
use sha2::Digest;
use tessera::config::AdminKeyConfig;

async fn audit(app: &TestApp, query: &str) -> Vec<Value> {
    app.audit_events(query).await
}

#[tokio::test]
async fn admins_kill_one_session_and_another_users_id_is_404() {
    let redis = RedisServer::shared();
    let app = spawn_app(&redis).await;
    let a = app.create_session("alice").await;
    let b = app.create_session("bob").await;
    let a_id = a.session["id"].as_str().unwrap();
    let wrong_user = app
        .admin_delete_as(&format!("/admin/users/bob/sessions/{a_id}"), ADMIN_KEY)
        .await;
    assert_eq!(error_code(wrong_user).await.0, 404);
    assert_eq!(app.get_session_with_bearer(&a.token).await.status(), 200);

    let ok = app
        .admin_delete_as(&format!("/admin/users/alice/sessions/{a_id}"), ADMIN_KEY)
        .await;
    assert_eq!(ok.status(), 200);
    assert_eq!(app.get_session_with_bearer(&a.token).await.status(), 401);
    assert_eq!(app.get_session_with_bearer(&b.token).await.status(), 200);
}

#[tokio::test]
async fn revoke_all_ends_every_session_and_bumps_the_version() {
    let redis = RedisServer::shared();
    let app = spawn_app(&redis).await;
    let a = app.create_session("alice").await;
    let b = app.create_session("alice").await;
    let before: Value = app.mint(&a.token, None).await.json().await.unwrap();
    let old_version = jwt_part(before["access_token"].as_str().unwrap(), 1)["ver"]
        .as_u64()
        .unwrap();
    let response = app
        .admin_post(
            "/admin/users/alice/revoke-all",
            &json!({"reason": "password changed"}),
        )
        .await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["revoked"], 2);
    for s in [&a, &b] {
        assert_eq!(app.get_session_with_bearer(&s.token).await.status(), 401);
    }
    let fresh = app.create_session("alice").await;
    let minted: Value = app.mint(&fresh.token, None).await.json().await.unwrap();
    let claims = jwt_part(minted["access_token"].as_str().unwrap(), 1);
    assert!(
        claims["ver"].as_u64().unwrap() > old_version,
        "new sessions carry the bumped credential version: {claims}"
    );
    let events = audit(&app, "user_id=alice").await;
    let bump = events
        .iter()
        .find(|e| e["event"] == "credential_version_bumped")
        .unwrap();
    assert_eq!(bump["actor"], "admin-key:admin");
    assert!(bump["reason"]
        .as_str()
        .unwrap()
        .starts_with("password changed"));
}

#[tokio::test]
async fn erasing_a_user_leaves_no_per_user_keys() {
    let redis = RedisServer::shared();
    let app = spawn_app(&redis).await;
    let a = app.create_session("alice").await;
    app.create_session("alice").await;
    app.admin_post("/admin/users/alice/revoke-all", &json!({}))
        .await;
    app.create_session("alice").await;
    let response = app.admin_delete_as("/admin/users/alice", ADMIN_KEY).await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.get_session_with_bearer(&a.token).await.status(), 401);
    let tag = tessera::session::UserId::parse("alice").unwrap().tag();
    let mut conn = redis.conn();
    let left: Vec<String> = conn
        .keys(format!("{}:*{{{tag}}}*", app.settings.key_prefix))
        .unwrap();
    // Only two keys may stay, each expiring: the spent TOTP step for two minutes (no code
    // replay), and the version tombstone for as long as any session could live (a session the
    // index lost still dies).
    let longest = app.settings.longest_session_ms();
    for key in &left {
        let ttl: i64 = conn.pttl(key).unwrap();
        let allowed = (key.contains(":totp:") && (0..=120_000).contains(&ttl))
            || (key.contains(":v:") && (0..=longest).contains(&ttl));
        assert!(allowed, "left behind: {key} (ttl {ttl} ms)");
    }
    let global = audit(&app, "").await;
    assert!(global
        .iter()
        .any(|e| e["event"] == "user_erased" && e["user_id"] == "alice"));
}

#[tokio::test]
async fn the_reject_policy_answers_409_at_the_limit() {
    let redis = RedisServer::shared();
    let settings = tessera::Settings {
        max_sessions_per_user: 2,
        on_session_limit: tessera::session::policy::OnLimit::Reject,
        ..test_settings(&redis)
    };
    let app = spawn_app_with(settings).await;
    app.create_session("alice").await;
    app.create_session("alice").await;
    let third = app
        .admin_post("/admin/sessions", &json!({"user_id": "alice"}))
        .await;
    assert_eq!(
        error_code(third).await,
        (409, "session_limit_reached".into())
    );
}

#[tokio::test]
async fn a_role_limit_overrides_the_default_and_evictions_are_audited() {
    let redis = RedisServer::shared();
    let mut settings = test_settings(&redis);
    settings.role_session_limits.insert("admin".into(), 1);
    let app = spawn_app_with(settings).await;
    let body = json!({"user_id": "root", "roles": ["admin"]});
    let first: Value = app
        .admin_post("/admin/sessions", &body)
        .await
        .json()
        .await
        .unwrap();
    let _second = app.admin_post("/admin/sessions", &body).await;
    let old = first["session_token"].as_str().unwrap();
    assert_eq!(
        app.get_session_with_bearer(old).await.status(),
        401,
        "least recently used evicted"
    );
    let events = audit(&app, "user_id=root").await;
    let evicted = events
        .iter()
        .find(|e| e["event"] == "session_evicted")
        .expect("eviction audited");
    assert_eq!(evicted["session_id"], first["session"]["id"]);
    assert_eq!(evicted["reason"], "session_limit");
}

#[tokio::test]
async fn the_audit_trail_records_lifecycle_events_per_user_and_pages() {
    let redis = RedisServer::shared();
    let mut settings = test_settings(&redis);
    settings.users_file = Some(write_users_file());
    let app = spawn_app_with(settings).await;
    assert_eq!(app.login("alice", "wrong").await.status(), 401);
    let login = app.login("alice", ALICE_PW).await;
    let cookie = TestApp::cookie_of(&login);
    let csrf = login.json::<Value>().await.unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let stepped: Value = app
        .step_up_bearer(&cookie, json!({"password": ALICE_PW}))
        .await
        .json()
        .await
        .unwrap();
    let token = stepped["session_token"].as_str().unwrap().to_owned();
    let _ = csrf;
    let logout = app
        .client
        .post(format!("{}/v1/logout", app.public))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 200);
    app.create_session("someone-else").await;

    let events = audit(&app, "user_id=u-alice").await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec![
            "login_failed",
            "session_created",
            "session_elevated",
            "session_revoked"
        ]
    );
    assert!(
        events.iter().all(|e| e["user_id"] == "u-alice"),
        "per-user query holds only that user"
    );
    assert_eq!(events[0]["reason"], "wrong password");
    assert_eq!(events[1]["actor"], "user:u-alice");
    assert!(events[1]["ip"].is_string());
    assert_eq!(events[3]["reason"], "logout");
    let sid = events[1]["session_id"].as_str().unwrap();
    assert!(events[2..].iter().all(|e| e["session_id"] == sid));
    assert!(events
        .iter()
        .all(|e| e["ts"].as_i64().unwrap() > 1_700_000_000_000));

    let first: Value = app
        .admin_get("/admin/audit?user_id=u-alice&limit=2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["events"].as_array().unwrap().len(), 2);
    let next = first["next"].as_str().unwrap();
    let second = audit(&app, &format!("user_id=u-alice&limit=2&after={next}")).await;
    let kinds: Vec<&str> = second
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["session_elevated", "session_revoked"]);

    let bad = app.admin_get("/admin/audit?after=nonsense").await;
    assert_eq!(error_code(bad).await.0, 400);
    let text = serde_json::to_string(&events).unwrap();
    assert!(
        !text.contains(ALICE_PW) && !text.contains("tsr_s_"),
        "no secrets in the audit trail"
    );
}

#[tokio::test]
async fn scoped_admin_keys_are_limited_to_their_scopes_and_expire() {
    let redis = RedisServer::shared();
    let auditor_key = "tsr_ak_auditor-key-0123456789abcdef0123456789";
    let old_key = "tsr_ak_retired-key-0123456789abcdef0123456789";
    let hash = |k: &str| hex::encode(sha2::Sha256::digest(k.as_bytes()));
    let mut settings = test_settings(&redis);
    settings.admin_keys = vec![
        AdminKeyConfig {
            name: "siem".into(),
            sha256: hash(auditor_key),
            scopes: vec![tessera::scope::Scope::parse("audit").unwrap()],
            expires_at: None,
        },
        AdminKeyConfig {
            name: "old-backend".into(),
            sha256: hash(old_key),
            scopes: vec![tessera::scope::Scope::parse("sessions").unwrap()],
            expires_at: Some("2020-01-01T00:00:00Z".into()),
        },
    ];
    let app = spawn_app_with(settings).await;
    let create = |key: &'static str| {
        app.client
            .post(format!("{}/admin/sessions", app.admin))
            .bearer_auth(key)
            .json(&json!({"user_id": "alice"}))
            .send()
    };
    assert_eq!(
        error_code(create(auditor_key).await.unwrap()).await,
        (403, "insufficient_scope".into())
    );
    assert_eq!(
        error_code(create(old_key).await.unwrap()).await,
        (401, "expired_api_key".into())
    );
    let audit_ok = app
        .client
        .get(format!("{}/admin/audit", app.admin))
        .bearer_auth(auditor_key)
        .send()
        .await
        .unwrap();
    assert_eq!(audit_ok.status(), 200);
    // The all-scopes key still works and is the audit actor of what it does.
    app.create_session("alice").await;
    let events = audit(&app, "user_id=alice").await;
    assert_eq!(events[0]["actor"], "admin-key:admin");
}

#[tokio::test]
async fn a_bad_admin_key_config_is_refused_with_its_name() {
    let redis = RedisServer::shared();
    let mut settings = test_settings(&redis);
    settings.admin_keys = vec![AdminKeyConfig {
        name: "ci".into(),
        sha256: "abc".into(),
        scopes: vec![tessera::scope::Scope::parse("sessions").unwrap()],
        expires_at: None,
    }];
    let err = tessera::Application::build(settings).await.err().unwrap();
    assert!(format!("{err:#}").contains("admin_keys[ci]"), "{err:#}");
}
