//! Redis trouble: fail closed with 503, recover without a restart, refuse eviction policies.

use crate::helpers::*;
use std::time::Duration;

#[tokio::test]
async fn redis_killed_mid_test_fails_closed_then_recovers_without_a_restart() {
    let mut redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let app = spawn_app(&redis).await;
    let created = app.create_session("alice").await;
    assert_eq!(
        app.get_session_with_cookie(&created.token).await.status(),
        200
    );

    redis.kill();

    let response = app.get_session_with_cookie(&created.token).await;
    assert!(response.headers().get("retry-after").is_some());
    assert_eq!(error_code(response).await, (503, "unavailable".into()));

    let logout = app.logout_with_cookie(&created.token, &created.csrf).await;
    assert!(
        logout.headers().get("set-cookie").is_none(),
        "the cookie is left alone"
    );
    assert_eq!(error_code(logout).await.0, 503);

    let mint = app.mint(&created.token, None).await;
    assert_eq!(
        error_code(mint).await.0,
        503,
        "no token from a session we cannot check"
    );

    let ready = app
        .client
        .get(format!("{}/readyz", app.public))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let health = app
        .client
        .get(format!("{}/healthz", app.public))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "liveness does not depend on Redis");

    redis.restart();

    // The same node, never restarted, serves again (AOF kept the session).
    let mut recovered = false;
    for _ in 0..50 {
        if app.get_session_with_cookie(&created.token).await.status() == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "Tessera reconnected by itself");
    let ready = app
        .client
        .get(format!("{}/readyz", app.public))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(
        app.logout_with_cookie(&created.token, &created.csrf)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn a_hung_redis_times_out_into_503_instead_of_hanging() {
    let redis = RedisServer::start();
    let app = spawn_app(&redis).await;
    let created = app.create_session("alice").await;
    redis.signal("-STOP");
    let started = std::time::Instant::now();
    let response = app.get_session_with_bearer(&created.token).await;
    let elapsed = started.elapsed();
    redis.signal("-CONT");
    assert_eq!(error_code(response).await.0, 503);
    assert!(
        elapsed < Duration::from_secs(3),
        "answered within the command timeout, not hung: {elapsed:?}"
    );
    // Once Redis moves again, so does Tessera.
    let mut recovered = false;
    for _ in 0..50 {
        if app.get_session_with_bearer(&created.token).await.status() == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered);
}

#[tokio::test]
async fn tessera_refuses_to_start_on_a_redis_that_may_evict() {
    let redis = RedisServer::start_with(&["--maxmemory-policy", "allkeys-lru"]);
    let err = tessera::Application::build(test_settings(&redis))
        .await
        .err()
        .expect("must refuse");
    let text = format!("{err:#}");
    assert!(
        text.contains("allkeys-lru") && text.contains("noeviction"),
        "{text}"
    );
}

#[tokio::test]
async fn an_eviction_policy_set_at_runtime_stops_session_work_until_fixed() {
    let redis = RedisServer::start();
    let settings = tessera::Settings {
        redis_check_interval_secs: 1,
        ..test_settings(&redis)
    };
    let app = spawn_app_with(settings).await;
    let created = app.create_session("alice").await;
    let mut conn = redis.conn();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("volatile-lru")
        .query(&mut conn)
        .unwrap();
    wait_until("the node notices the eviction policy", || async {
        app.get_session_with_bearer(&created.token).await.status() == 503
    })
    .await;
    assert_eq!(
        app.client
            .get(format!("{}/readyz", app.public))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    // Introspection answers from Redis too, so it fails closed with every other route.
    let introspect = app
        .client
        .post(format!("{}/admin/introspect", app.admin))
        .bearer_auth(ADMIN_KEY)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("token", created.token.as_str())]))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(introspect).await.0, 503);

    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("noeviction")
        .query(&mut conn)
        .unwrap();
    wait_until("the node notices the fix", || async {
        app.get_session_with_bearer(&created.token).await.status() == 200
    })
    .await;
}

#[tokio::test]
async fn tessera_explains_an_unreachable_redis_at_start() {
    let settings = tessera::Settings {
        redis_url: format!("redis://127.0.0.1:{}", free_port()),
        ..test_settings(&RedisServer::start())
    };
    let err = tessera::Application::build(settings)
        .await
        .err()
        .expect("must refuse");
    assert!(format!("{err:#}").contains("cannot reach Redis"), "{err:#}");
}
