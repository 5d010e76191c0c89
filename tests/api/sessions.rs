//! The stateful path: create, read, log out, expire.

use crate::helpers::*;
use redis::Commands;
use std::time::Duration;

#[tokio::test]
async fn a_created_session_is_readable_by_cookie_and_by_bearer() {
    let redis = RedisServer::shared();
    let app = spawn_app(&redis).await;
    let created = app.create_session("alice@example.com").await;
    assert!(created.token.starts_with("tsr_s_v1_eu_"));

    let by_cookie = app.get_session_with_cookie(&created.token).await;
    assert_eq!(by_cookie.status(), 200);
    assert_eq!(by_cookie.headers()["cache-control"], "no-store");
    assert_eq!(by_cookie.headers()["content-type"], "application/json");
    // The body is assembled from a (reused) rendering of the view: exactly one JSON object,
    // the view first, then the token.
    let text = by_cookie.text().await.unwrap();
    assert!(text.starts_with("{\"session\":{\"id\":"), "{text}");
    assert!(
        text.ends_with(&format!(",\"csrf_token\":\"{}\"}}", created.csrf)),
        "{text}"
    );
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    let view = &body["session"];
    assert_eq!(view["id"], created.session["id"]);
    assert_eq!(view["user_id"], "alice@example.com");
    assert_eq!(view["acr"], "pwd");
    assert_eq!(view["amr"], serde_json::json!(["pwd"]));
    assert_eq!(view["ip"], "203.0.113.7");
    assert_eq!(view["device"], "Firefox on Linux");
    assert_eq!(view["device_name"], "work laptop");
    assert_eq!(view["region"], "eu");
    assert_eq!(view["current"], true);
    assert_eq!(
        body["csrf_token"],
        created.csrf.as_str(),
        "cookie clients get their CSRF token"
    );
    for field in [
        "created_at",
        "last_seen_at",
        "expires_at",
        "idle_expires_at",
        "auth_time",
    ] {
        assert!(
            view[field].as_str().unwrap().ends_with('Z'),
            "{field} is RFC 3339 UTC"
        );
    }
    assert!(!body
        .to_string()
        .contains(created.token.rsplit('.').next().unwrap()));

    let by_bearer = app.get_session_with_bearer(&created.token).await;
    assert_eq!(by_bearer.status(), 200);
    assert_eq!(by_bearer.headers()["content-type"], "application/json");
    let text = by_bearer.text().await.unwrap();
    assert!(
        text.starts_with("{\"session\":{\"id\":") && text.ends_with("}}"),
        "{text}"
    );
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["session"]["id"], created.session["id"]);
    assert!(
        body.get("csrf_token").is_none(),
        "bearer clients need no CSRF token"
    );
}

#[tokio::test]
async fn redis_holds_only_the_hash_of_the_secret() {
    let redis = RedisServer::shared();
    let app = spawn_app(&redis).await;
    let created = app.create_session("alice").await;
    let secret = created.token.rsplit('.').next().unwrap();
    let mut conn = redis.conn();
    let keys: Vec<String> = conn.keys(format!("{}:*", app.settings.key_prefix)).unwrap();
    assert!(
        keys.len() >= 4,
        "session, index, key ring and audit: {keys:?}"
    );
    for key in keys {
        let kind: String = redis::cmd("TYPE").arg(&key).query(&mut conn).unwrap();
        let dump = match kind.as_str() {
            "string" => {
                String::from_utf8_lossy(&conn.get::<_, Vec<u8>>(&key).unwrap()).into_owned()
            }
            "zset" => format!("{:?}", conn.zrange::<_, Vec<String>>(&key, 0, -1).unwrap()),
            "list" => conn
                .lrange::<_, Vec<String>>(&key, 0, -1)
                .unwrap()
                .join(" "),
            "stream" => format!(
                "{:?}",
                redis::cmd("XRANGE")
                    .arg(&key)
                    .arg("-")
                    .arg("+")
                    .query::<redis::Value>(&mut conn)
                    .unwrap()
            ),
            other => panic!("unexpected key type {other} for {key}"),
        };
        assert!(!dump.contains(secret), "secret stored in {key}");
    }
}

#[tokio::test]
async fn all_keys_of_a_user_share_one_cluster_hash_tag() {
    let redis = RedisServer::shared();
    let app = spawn_app(&redis).await;
    app.create_session("bob").await;
    let mut conn = redis.conn();
    let keys: Vec<String> = conn
        .keys(format!("{}:[suv]:*", app.settings.key_prefix))
        .unwrap();
    let tags: std::collections::HashSet<_> = keys
        .iter()
        .map(|k| {
            k.split('{')
                .nth(1)
                .unwrap()
                .split('}')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(keys.len(), 3, "session, index and version: {keys:?}");
    assert_eq!(tags.len(), 1, "{keys:?}");
}

#[tokio::test]
async fn logout_kills_the_session_at_once_and_expires_the_cookie() {
    let redis = RedisServer::shared();
    let app = spawn_app(&redis).await;
    let created = app.create_session("alice").await;

    let response = app.logout_with_cookie(&created.token, &created.csrf).await;
    assert_eq!(response.status(), 200);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    for part in [
        "__Host-tessera=",
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=0",
    ] {
        assert!(cookie.contains(part), "{cookie} lacks {part}");
    }
    assert!(!cookie.contains("Domain"));

    let (status, code) = error_code(app.get_session_with_cookie(&created.token).await).await;
    assert_eq!((status, code.as_str()), (401, "invalid_session"));
    let (status, _) = error_code(app.get_session_with_bearer(&created.token).await).await;
    assert_eq!(status, 401);
    let (status, _) = error_code(app.mint(&created.token, None).await).await;
    assert_eq!(status, 401, "no token can be minted from a dead session");
    let listed: serde_json::Value = app
        .admin_get("/admin/users/alice/sessions")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["sessions"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn bearer_logout_needs_no_csrf_token() {
    let redis = RedisServer::shared();
    let app = spawn_app(&redis).await;
    let created = app.create_session("alice").await;
    let response = app
        .client
        .post(format!("{}/v1/logout", app.public))
        .bearer_auth(&created.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("set-cookie").is_none());
    assert_eq!(
        app.get_session_with_bearer(&created.token).await.status(),
        401
    );
}

#[tokio::test]
async fn cookie_logout_without_csrf_proof_is_refused_and_changes_nothing() {
    let redis = RedisServer::shared();
    let app = spawn_app(&redis).await;
    let created = app.create_session("alice").await;

    let no_token = app
        .client
        .post(format!("{}/v1/logout", app.public))
        .headers(app.cookie_headers(&created.token))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(no_token).await,
        (403, "csrf_token_missing".into())
    );

    let mut foreign = app.browser_unsafe_headers(&created.token, &created.csrf);
    foreign.insert("origin", "https://evil.example".parse().unwrap());
    let response = app
        .client
        .post(format!("{}/v1/logout", app.public))
        .headers(foreign)
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(response).await,
        (403, "cross_origin_request".into())
    );

    let mut wrong = app.browser_unsafe_headers(&created.token, &created.csrf);
    wrong.insert("x-csrf-token", "AAAA".parse().unwrap());
    let response = app
        .client
        .post(format!("{}/v1/logout", app.public))
        .headers(wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(response).await,
        (403, "csrf_token_invalid".into())
    );

    assert_eq!(
        app.get_session_with_cookie(&created.token).await.status(),
        200
    );
}

#[tokio::test]
async fn a_session_dies_after_its_idle_timeout() {
    let redis = RedisServer::shared();
    let settings = tessera::Settings {
        idle_timeout_secs: 1,
        absolute_timeout_secs: 60,
        ..test_settings(&redis)
    };
    let app = spawn_app_with(settings).await;
    let created = app.create_session("alice").await;
    assert_eq!(
        app.get_session_with_bearer(&created.token).await.status(),
        200
    );
    app.clock.advance(Duration::from_millis(1300));
    assert_eq!(
        app.get_session_with_bearer(&created.token).await.status(),
        401
    );
}

#[tokio::test]
async fn use_renews_the_idle_deadline_but_only_after_a_fifth_of_it() {
    let redis = RedisServer::shared();
    let settings = tessera::Settings {
        idle_timeout_secs: 3,
        absolute_timeout_secs: 60,
        ..test_settings(&redis)
    };
    let app = spawn_app_with(settings).await;
    // Created from the address the test client uses, so no anomaly write muddies the picture.
    let body: serde_json::Value = app
        .admin_post(
            "/admin/sessions",
            &serde_json::json!({"user_id": "alice", "ip": "127.0.0.1"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let created = Created {
        token: body["session_token"].as_str().unwrap().to_owned(),
        csrf: body["csrf_token"].as_str().unwrap().to_owned(),
        session: body["session"].clone(),
    };
    let key = format!(
        "{}:s:{{{}}}:{}",
        app.settings.key_prefix,
        created.session["id"]
            .as_str()
            .unwrap()
            .split('_')
            .nth(2)
            .unwrap(),
        created.session["id"].as_str().unwrap()
    );
    let mut conn = redis.conn();
    let before: Vec<u8> = conn.get(&key).unwrap();

    // Within the first fifth (0.6 s): a read, not a write.
    assert_eq!(
        app.get_session_with_bearer(&created.token).await.status(),
        200
    );
    let unchanged: Vec<u8> = conn.get(&key).unwrap();
    assert_eq!(before, unchanged);

    // Keep using it past the original 3 s idle deadline: every use after 0.6 s renews.
    for _ in 0..5 {
        app.clock.advance(Duration::from_millis(800));
        assert_eq!(
            app.get_session_with_bearer(&created.token).await.status(),
            200
        );
    }
    let ttl: i64 = conn.pttl(&key).unwrap();
    assert!(ttl > 2_000, "renewal moved the TTL forward: {ttl} ms left");
}

#[tokio::test]
async fn a_session_dies_at_its_absolute_deadline_however_active() {
    let redis = RedisServer::shared();
    let settings = tessera::Settings {
        idle_timeout_secs: 2,
        absolute_timeout_secs: 2,
        ..test_settings(&redis)
    };
    let app = spawn_app_with(settings).await;
    let created = app.create_session("alice").await;
    for _ in 0..3 {
        assert_eq!(
            app.get_session_with_bearer(&created.token).await.status(),
            200
        );
        app.clock.advance(Duration::from_millis(500));
    }
    app.clock.advance(Duration::from_millis(700));
    assert_eq!(
        app.get_session_with_bearer(&created.token).await.status(),
        401
    );
}

#[tokio::test]
async fn admin_lists_a_users_live_sessions() {
    let redis = RedisServer::shared();
    let app = spawn_app(&redis).await;
    let a = app.create_session("carol").await;
    let b = app.create_session("carol").await;
    app.create_session("dave").await;
    let listed: serde_json::Value = app
        .admin_get("/admin/users/carol/sessions")
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<_> = listed["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&a.session["id"].as_str().unwrap().to_owned()));
    assert!(ids.contains(&b.session["id"].as_str().unwrap().to_owned()));
    assert!(
        !listed.to_string().contains("tsr_s_"),
        "listings never carry credentials"
    );
}

#[tokio::test]
async fn the_admin_api_demands_its_key() {
    let redis = RedisServer::shared();
    let app = spawn_app(&redis).await;
    let body = serde_json::json!({"user_id": "alice"});
    let none = app
        .client
        .post(format!("{}/admin/sessions", app.admin))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(none.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    assert_eq!(error_code(none).await, (401, "invalid_api_key".into()));
    let wrong = app
        .client
        .post(format!("{}/admin/sessions", app.admin))
        .bearer_auth(format!("{ADMIN_KEY}x"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(wrong).await.0, 401);
    let on_public = app
        .client
        .post(format!("{}/admin/sessions", app.public))
        .bearer_auth(ADMIN_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(on_public).await.0,
        404,
        "admin routes live only on the admin listener"
    );
}

#[tokio::test]
async fn concurrent_creations_never_exceed_the_per_user_limit() {
    let redis = RedisServer::shared();
    let settings = tessera::Settings {
        max_sessions_per_user: 3,
        ..test_settings(&redis)
    };
    let app = std::sync::Arc::new(spawn_app_with(settings).await);
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let body = serde_json::json!({"user_id": "erin"});
            app.admin_post("/admin/sessions", &body)
                .await
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(
            t.await.unwrap(),
            201,
            "policy evict: every creation succeeds"
        );
    }
    let listed: serde_json::Value = app
        .admin_get("/admin/users/erin/sessions")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["sessions"].as_array().unwrap().len(), 3);
    let mut conn = redis.conn();
    let live: Vec<String> = conn
        .keys(format!("{}:s:*", app.settings.key_prefix))
        .unwrap();
    assert_eq!(
        live.len(),
        3,
        "evicted sessions are deleted, not just unlisted"
    );
}
