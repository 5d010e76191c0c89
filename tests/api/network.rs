//! A slow or broken network between Tessera and Redis (`proxy::FaultProxy`): requests answer
//! 503 within the command timeout and never hang, a logout is never acknowledged unless it
//! happened, readiness follows each state, and connections and feed followers recover alone.

use crate::helpers::*;
use crate::proxy::{Fault, FaultProxy};
use std::time::{Duration, Instant};

/// A node that reaches `redis` only through a fault proxy (regions eu and us both there).
async fn node_behind_proxy(redis: &RedisServer) -> (FaultProxy, TestApp) {
    let proxy = FaultProxy::start(redis.port).await;
    let mut settings = test_settings(redis);
    settings.redis_url = proxy.url();
    (proxy, spawn_app_with(settings).await)
}

/// How much longer than `redis_command_timeout_ms` a request may take to fail: a request may
/// need two commands (a script sent again after `NOSCRIPT`, a reconnection), and the test
/// machine is shared.
const SLACK: Duration = Duration::from_millis(1500);

/// Lifts the fault and waits until the node says it is ready again.
async fn heal(proxy: &FaultProxy, app: &TestApp) {
    proxy.set(Fault::None);
    app.wait_ready().await;
}

/// Runs `request` and returns its status and how long it took.
async fn timed<F, Fut>(request: F) -> (u16, Duration)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = reqwest::Response>,
{
    let started = Instant::now();
    let status = request().await.status().as_u16();
    (status, started.elapsed())
}

#[tokio::test]
async fn a_slow_redis_answers_503_within_the_command_timeout_and_never_hangs() {
    let redis = RedisServer::start();
    let (proxy, app) = node_behind_proxy(&redis).await;
    let budget = Duration::from_millis(app.settings.redis_command_timeout_ms) + SLACK;
    let created = app.create_session("slow").await;
    let jwt = app.access_token(&created.token).await;

    // Slow, but within the budget: still served.
    proxy.set(Fault::Latency(Duration::from_millis(50)));
    assert_eq!(
        app.get_session_with_cookie(&created.token).await.status(),
        200
    );

    // Slower than the command timeout: 503, in bounded time, for every kind of request.
    proxy.set(Fault::Latency(Duration::from_secs(3)));
    let (status, took) = timed(|| app.get_session_with_cookie(&created.token)).await;
    assert_eq!(status, 503);
    assert!(took < budget, "the session check took {took:?}");
    let (status, took) = timed(|| app.mint(&created.token, None)).await;
    assert_eq!(status, 503);
    assert!(took < budget, "minting took {took:?}");
    let (status, took) = timed(|| app.logout_with_cookie(&created.token, &created.csrf)).await;
    assert_eq!(status, 503, "never a 200 for a logout not confirmed");
    assert!(took < budget, "the logout took {took:?}");
    let started = Instant::now();
    assert_eq!(app.ready_status().await, 503);
    assert!(
        started.elapsed() < budget,
        "readiness took {:?}",
        started.elapsed()
    );
    // The JWT path does not touch Redis.
    assert_eq!(app.check_jwt(&jwt).await, 200);
    // Each timeout is on the operator's dashboard, under its region and kind.
    let metrics = app.admin_get("/metrics").await.text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tessera_redis_errors_total{")
                && l.contains("region=\"eu\"")
                && l.contains("kind=\"timeout\"")),
        "no Redis timeout counted"
    );

    // The network heals: the same node serves again by itself.
    heal(&proxy, &app).await;
    // Replies still held in the slow network arrive late; then the connection serves again.
    wait_until("the request path answers again", || async {
        app.get_session_with_cookie(&created.token).await.status() != 503
    })
    .await;
    let session = app.get_session_with_cookie(&created.token).await;
    let status = session.status();
    let body: serde_json::Value = session.json().await.unwrap_or_default();
    // The logout that timed out may have run in Redis after all (the command was sent); what
    // counts is that every answer now is a consistent one for this very session.
    match status.as_u16() {
        200 => assert_eq!(body["session"]["user_id"], "slow", "{body}"),
        401 => {}
        other => panic!("after healing: {other} {body}"),
    }
}

#[tokio::test]
async fn a_logout_is_acknowledged_only_when_it_happened() {
    let redis = RedisServer::start();
    let (proxy, app) = node_behind_proxy(&redis).await;
    // Redis has the logout script loaded (else the first cut reply would be NOSCRIPT's, and
    // the script would not have run).
    let warm = app.create_session("warm-up").await;
    assert_eq!(
        app.logout_with_cookie(&warm.token, &warm.csrf)
            .await
            .status(),
        200
    );

    // The request never reaches Redis: 503, and the session is untouched.
    let kept = app.create_session("cut-request").await;
    proxy.set(Fault::CutRequests);
    let (status, took) = timed(|| app.logout_with_cookie(&kept.token, &kept.csrf)).await;
    assert_eq!(status, 503);
    assert!(took < Duration::from_millis(app.settings.redis_command_timeout_ms) + SLACK);
    assert_eq!(app.ready_status().await, 503);
    heal(&proxy, &app).await;
    assert_eq!(
        app.get_session_with_cookie(&kept.token).await.status(),
        200,
        "a logout answered 503 that never ran leaves the session as it was"
    );

    // Every reply cut: the logout's first read already fails, so nothing runs.
    let cut = app.create_session("cut-early").await;
    proxy.set(Fault::CutReplies);
    assert_eq!(
        app.logout_with_cookie(&cut.token, &cut.csrf).await.status(),
        503
    );
    heal(&proxy, &app).await;
    wait_until("the request path answers again", || async {
        app.get_session_with_cookie(&cut.token).await.status() == 200
    })
    .await;
    // The script runs but its reply is lost: still 503 (Tessera cannot know), and the session
    // is in fact gone; its revocation still reaches the feed within a second or so.
    let ended = app.create_session("cut-reply").await;
    let jwt = app.access_token(&ended.token).await;
    proxy.set(Fault::CutReplyTo("EVALSHA"));
    let (status, took) = timed(|| app.logout_with_cookie(&ended.token, &ended.csrf)).await;
    assert_eq!(status, 503);
    assert!(took < Duration::from_millis(app.settings.redis_command_timeout_ms) + SLACK);
    heal(&proxy, &app).await;
    assert_eq!(
        app.get_session_with_cookie(&ended.token).await.status(),
        401
    );
    // The client's retry learns that the session is over (and its cookie is cleared).
    let retry = app.logout_with_cookie(&ended.token, &ended.csrf).await;
    assert!(retry.headers().get("set-cookie").is_some());
    assert_eq!(error_code(retry).await, (401, "invalid_session".into()));
    wait_until(
        "the token is refused once the feed has the logout",
        || async { app.check_jwt(&jwt).await == 401 },
    )
    .await;

    // And the happy path through the same proxy.
    assert_eq!(
        app.logout_with_cookie(&kept.token, &kept.csrf)
            .await
            .status(),
        200
    );
    assert_eq!(app.get_session_with_cookie(&kept.token).await.status(), 401);
}

#[tokio::test]
async fn after_a_black_hole_connections_and_the_feed_follower_recover_by_themselves() {
    let redis = RedisServer::start();
    let direct = spawn_app(&redis).await;
    let mut settings = test_settings(&redis);
    settings.key_prefix = direct.settings.key_prefix.clone();
    settings.kek = direct.settings.kek.clone();
    settings.keys_dir = direct.settings.keys_dir.clone();
    let proxy = FaultProxy::start(redis.port).await;
    settings.redis_url = proxy.url();
    let far = spawn_app_with(settings).await;

    let doomed = direct.create_session("hole-a").await;
    let jwt = direct.access_token(&doomed.token).await;
    let other = direct.create_session("hole-b").await;
    assert_eq!(far.check_jwt(&jwt).await, 200);

    proxy.set(Fault::BlackHole);
    let budget = Duration::from_millis(far.settings.redis_command_timeout_ms) + SLACK;
    let (status, took) = timed(|| far.get_session_with_cookie(&other.token)).await;
    assert_eq!(status, 503);
    assert!(took < budget, "the check took {took:?}");
    let (status, took) = timed(|| far.logout_with_cookie(&other.token, &other.csrf)).await;
    assert_eq!(status, 503);
    assert!(took < budget, "the logout took {took:?}");
    assert_eq!(far.ready_status().await, 503);

    // Meanwhile a logout elsewhere: the far node's follower cannot see it yet.
    assert_eq!(
        direct
            .logout_with_cookie(&doomed.token, &doomed.csrf)
            .await
            .status(),
        200
    );
    // Held for longer than any timeout, so every connection has given up at least once.
    tokio::time::sleep(Duration::from_secs(2)).await;

    heal(&proxy, &far).await;
    wait_until("the far node's follower catches up", || async {
        far.check_jwt(&jwt).await == 401
    })
    .await;
    // Answers are for the right request (nothing was lost or reordered on the connection).
    let session = far.get_session_with_cookie(&other.token).await;
    assert_eq!(session.status(), 200);
    let body: serde_json::Value = session.json().await.unwrap();
    assert_eq!(body["session"]["user_id"], "hole-b");
    assert_eq!(
        far.get_session_with_cookie(&doomed.token).await.status(),
        401
    );
}

#[tokio::test]
async fn the_node_that_answers_a_logout_refuses_its_tokens_at_once_whatever_its_follower_does() {
    let redis = RedisServer::start();
    let (proxy, app) = node_behind_proxy(&redis).await;
    let created = app.create_session("own-node").await;
    let jwt = app.access_token(&created.token).await;
    assert_eq!(app.check_jwt(&jwt).await, 200);

    // The feed follower's reads never come back (every XREAD reply is cut); everything
    // else passes.
    proxy.set(Fault::CutReplyTo("XREAD"));
    // Past the read that was in flight (a heartbeat ends it within a second, the block
    // within two): every read from now on is cut.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        app.logout_with_cookie(&created.token, &created.csrf)
            .await
            .status(),
        200
    );
    // The soak once saw this node accept the token 6 µs after answering the logout.
    assert_eq!(app.check_jwt(&jwt).await, 401);
}
