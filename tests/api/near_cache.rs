//! The near cache: low-risk reads served from memory, and never a stale accept after any kind
//! of revocation, on the node that made it or on another, nor across a Redis restart or a lost
//! tracking connection.

use crate::helpers::*;
use serde_json::{json, Value};
use std::time::Duration;

/// `calls` of one command in `INFO commandstats` (0 before its first call).
fn calls(redis: &RedisServer, command: &str) -> u64 {
    let mut conn = redis.admin_client().get_connection().unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut conn)
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

/// Two nodes on one Redis (or the suite's topology on the shared servers).
async fn two_nodes(settings: tessera::config::Settings) -> (TestApp, TestApp) {
    let a = spawn_app_with(settings.clone()).await;
    // The first node creates the key ring; the second reads it.
    let b = spawn_app_with(settings).await;
    (a, b)
}

async fn check_cookie(node: &TestApp, token: &str) -> u16 {
    node.client
        .get(format!("{}/v1/auth/check?risk=low", node.public))
        .header("cookie", format!("__Host-tessera={token}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Reads the session on `node` until its cache holds it (the first read after the tracking
/// connection is up fills it).
async fn warm(node: &TestApp, token: &str) {
    wait_until("the node's tracking connection is up", || async {
        node.get_session_with_cookie(token).await.status() == 200
            && node.readiness().await["near_cache"] == "tracking"
    })
    .await;
    assert_eq!(node.get_session_with_cookie(token).await.status(), 200);
    assert_eq!(check_cookie(node, token).await, 200);
}

#[tokio::test]
async fn low_risk_reads_come_from_memory_and_high_risk_ones_from_redis() {
    let redis = RedisServer::start();
    let app = spawn_app(&redis).await;
    let created = app.create_session("alice").await;
    warm(&app, &created.token).await;

    let before = calls(&redis, "get");
    for _ in 0..20 {
        assert_eq!(
            app.get_session_with_cookie(&created.token).await.status(),
            200
        );
        assert_eq!(check_cookie(&app, &created.token).await, 200);
        assert_eq!(
            app.get_session_with_bearer(&created.token).await.status(),
            200
        );
    }
    // (A background task may read a key meanwhile; 60 reads from Redis would be 60 GETs.)
    let during = calls(&redis, "get") - before;
    assert!(during <= 2, "60 low-risk reads sent {during} GETs");

    // The high-risk check, minting and listing read Redis every time.
    let high = app
        .client
        .get(format!("{}/v1/auth/check?risk=high&acr=pwd", app.public))
        .header("cookie", format!("__Host-tessera={}", created.token))
        .send()
        .await
        .unwrap();
    assert_eq!(high.status(), 200);
    assert_eq!(app.mint(&created.token, None).await.status(), 200);
    assert!(calls(&redis, "get") >= before + during + 2);
}

#[tokio::test]
async fn with_the_cache_off_every_read_goes_to_redis() {
    let redis = RedisServer::start();
    let mut settings = test_settings(&redis);
    settings.session_cache_entries = 0;
    let app = spawn_app_with(settings).await;
    let created = app.create_session("alice").await;
    assert_eq!(app.readiness().await["near_cache"], "off");
    let before = calls(&redis, "get");
    for _ in 0..5 {
        assert_eq!(
            app.get_session_with_cookie(&created.token).await.status(),
            200
        );
    }
    assert!(calls(&redis, "get") >= before + 5);
}

#[tokio::test]
async fn no_node_accepts_a_cookie_after_logout_kill_or_revoke_all() {
    let redis = RedisServer::shared();
    let (a, b) = two_nodes(test_settings(&redis)).await;

    // Logout on A.
    let s = a.create_session("alice").await;
    warm(&a, &s.token).await;
    warm(&b, &s.token).await;
    assert_eq!(a.logout_with_cookie(&s.token, &s.csrf).await.status(), 200);
    assert_eq!(check_cookie(&b, &s.token).await, 401, "logout, other node");
    assert_eq!(check_cookie(&a, &s.token).await, 401, "logout, same node");

    // An admin kill on A.
    let s = a.create_session("bob").await;
    let id = s.session["id"].as_str().unwrap();
    warm(&a, &s.token).await;
    warm(&b, &s.token).await;
    assert_eq!(
        a.admin_delete_as(&format!("/admin/users/bob/sessions/{id}"), ADMIN_KEY)
            .await
            .status(),
        200
    );
    assert_eq!(check_cookie(&b, &s.token).await, 401, "kill, other node");
    assert_eq!(b.get_session_with_cookie(&s.token).await.status(), 401);
    assert_eq!(check_cookie(&a, &s.token).await, 401, "kill, same node");

    // Revoke-all on A: both of carol's sessions, cached on both nodes.
    let first = a.create_session("carol").await;
    let second = a.create_session("carol").await;
    for token in [&first.token, &second.token] {
        warm(&a, token).await;
        warm(&b, token).await;
    }
    let response = a
        .admin_post("/admin/users/carol/revoke-all", &json!({}))
        .await;
    assert_eq!(response.status(), 200);
    for token in [&first.token, &second.token] {
        assert_eq!(check_cookie(&b, token).await, 401, "revoke-all, other node");
        assert_eq!(check_cookie(&a, token).await, 401, "revoke-all, same node");
    }
}

#[tokio::test]
async fn a_session_key_deleted_in_redis_behind_tessera_is_not_served() {
    // No feed entry, no pushed revocation: only Redis's invalidation can tell the nodes.
    let redis = RedisServer::shared();
    let settings = test_settings(&redis);
    let (a, b) = two_nodes(settings.clone()).await;
    let s = a.create_session("alice").await;
    warm(&a, &s.token).await;
    warm(&b, &s.token).await;
    let id = s.session["id"].as_str().unwrap().to_owned();
    let prefix = settings.key_prefix.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = redis.conn();
        let regions = [
            tessera::session::Region::parse("eu").unwrap(),
            tessera::session::Region::parse("us").unwrap(),
        ];
        let id = tessera::session::SessionId::parse(&id, &regions).unwrap();
        let key = tessera::store::keys::KeyLayout::new(prefix).session(&id);
        let deleted: i64 = redis::cmd("DEL").arg(&key).query(&mut conn).unwrap_or(0);
        assert_eq!(deleted, 1, "{key}");
    })
    .await
    .unwrap();
    assert_eq!(check_cookie(&b, &s.token).await, 401);
    assert_eq!(check_cookie(&a, &s.token).await, 401);
}

#[tokio::test]
async fn no_node_accepts_a_session_the_limit_evicted() {
    let redis = RedisServer::shared();
    let mut settings = test_settings(&redis);
    settings.max_sessions_per_user = 2;
    let (a, b) = two_nodes(settings).await;
    let oldest = a.create_session("alice").await;
    warm(&a, &oldest.token).await;
    warm(&b, &oldest.token).await;
    let _second = a.create_session("alice").await;
    let _third = a.create_session("alice").await; // evicts the least recently used
    assert_eq!(check_cookie(&b, &oldest.token).await, 401);
    assert_eq!(check_cookie(&a, &oldest.token).await, 401);
}

#[tokio::test]
async fn no_node_accepts_the_secret_a_step_up_rotated_away() {
    let (_redis, a) = app_with_users(|_| {}).await;
    let b = spawn_app_with(a.settings.clone()).await;
    let old = TestApp::cookie_of(&a.login("alice", crate::users::ALICE_PW).await);
    warm(&a, &old).await;
    warm(&b, &old).await;
    let response = a
        .step_up_bearer(&old, json!({"password": crate::users::ALICE_PW}))
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let new = body["session_token"].as_str().unwrap().to_owned();
    assert_eq!(check_cookie(&b, &old).await, 401, "old secret, other node");
    assert_eq!(check_cookie(&a, &old).await, 401, "old secret, same node");
    assert_eq!(check_cookie(&b, &new).await, 200);
    // The new record (elevated) is what B serves now.
    let view: Value = b.get_session_with_cookie(&new).await.json().await.unwrap();
    assert_eq!(view["session"]["elevated_acr"], "pwd");
}

async fn idle_expires_at(node: &TestApp, token: &str) -> String {
    let view: Value = node
        .get_session_with_cookie(token)
        .await
        .json()
        .await
        .unwrap();
    view["session"]["idle_expires_at"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn deadlines_are_checked_on_every_hit_and_renewal_reaches_the_other_node() {
    let redis = RedisServer::shared();
    let (a, b) = two_nodes(test_settings(&redis)).await;
    let s = a.create_session("alice").await;
    warm(&a, &s.token).await;
    warm(&b, &s.token).await;
    let idle = Duration::from_secs(a.settings.idle_timeout_secs as u64);

    // Past a fifth of the idle window, B's read renews the session in Redis; A's copy goes.
    let before = idle_expires_at(&a, &s.token).await;
    b.clock.advance(idle / 4);
    let renewed = idle_expires_at(&b, &s.token).await;
    assert_ne!(renewed, before, "B renewed the session");
    assert_eq!(
        idle_expires_at(&a, &s.token).await,
        renewed,
        "A reads the renewed record"
    );

    // Past the idle deadline, the cached record is refused on A (its clock moved further).
    a.clock.advance(idle / 4 + idle + Duration::from_secs(1));
    assert_eq!(check_cookie(&a, &s.token).await, 401);
}

/// Finds the node's tracking connection(s) in `CLIENT LIST` (flag `t`).
fn tracking_clients(redis: &RedisServer) -> Vec<String> {
    let mut conn = redis.admin_client().get_connection().unwrap();
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut conn).unwrap();
    list.lines()
        .filter(|l| {
            l.split(' ')
                .any(|f| f.strip_prefix("flags=").is_some_and(|f| f.contains('t')))
        })
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_lost_tracking_connection_flushes_the_cache_before_it_is_trusted_again() {
    let redis = RedisServer::start();
    let settings = test_settings(&redis);
    let app = spawn_app_with(settings.clone()).await;
    let s = app.create_session("alice").await;
    warm(&app, &s.token).await;
    let tracking = tracking_clients(&redis);
    assert_eq!(tracking.len(), 1);

    // Cut the tracking connection, and delete the session while nobody listens: no
    // invalidation can ever reach the node for that change.
    let mut conn = redis.admin_client().get_connection().unwrap();
    let id = s.session["id"].as_str().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:s:*{id}", settings.key_prefix))
        .query(&mut conn)
        .unwrap();
    assert_eq!(keys.len(), 1);
    // Off the runtime that runs the node's tracking connection, so that it reads the close
    // as soon as Redis sends it (nothing blocks it in production).
    let old = tracking[0].clone();
    tokio::task::spawn_blocking(move || {
        let _: () = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(&old)
            .query(&mut conn)
            .unwrap();
        let _: () = redis::cmd("DEL").arg(&keys[0]).query(&mut conn).unwrap();
    })
    .await
    .unwrap();

    // Refused at once (not only after the next heartbeat) and from then on.
    wait_until("a new tracking connection", || async {
        assert_eq!(check_cookie(&app, &s.token).await, 401);
        matches!(tracking_clients(&redis).as_slice(), [new] if *new != tracking[0])
            && app.readiness().await["near_cache"] == "tracking"
    })
    .await;
    assert_eq!(check_cookie(&app, &s.token).await, 401);
}

#[tokio::test]
async fn a_redis_restart_leaves_no_cached_session_behind() {
    let mut redis = RedisServer::start();
    let (a, b) = two_nodes(test_settings(&redis)).await;
    let s = a.create_session("alice").await;
    warm(&a, &s.token).await;
    warm(&b, &s.token).await;
    // Without persistence, the restart loses the session. (Restarted off the runtime that runs
    // the nodes' tracking connections, as in production, where nothing blocks it.)
    let _redis = tokio::task::spawn_blocking(move || {
        redis.restart();
        redis
    })
    .await
    .unwrap();
    for node in [&a, &b] {
        wait_until("the node answers again", || async {
            let status = check_cookie(node, &s.token).await;
            assert_ne!(
                status, 200,
                "a session Redis lost was served from the cache"
            );
            status == 401
        })
        .await;
    }
    // And tracking is back on afterwards.
    for node in [&a, &b] {
        wait_until("tracking again", || async {
            node.readiness().await["near_cache"] == "tracking"
        })
        .await;
    }
}

/// The read barrier (`store::fence`). A tracking reader that applies an invalidation late (the
/// window `scripts/bench-revocation` found: 1 and 25 of 10,000 cookie checks accepted right
/// after a logout on another node) cannot make a hit serve a record Redis deleted before the
/// hit: once the fence is passed, the invalidation has been applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_waits_for_the_invalidations_redis_already_sent() {
    use tessera::store::near_cache::{Lookup, NearCache};
    let redis = RedisServer::start();
    let cache = NearCache::new(100, "eu");
    let late = cache.clone();
    // Every push is applied 300 ms late, as by a tracking task a busy machine runs late.
    let push = move |info: redis::PushInfo| -> Result<(), ()> {
        std::thread::sleep(Duration::from_millis(300));
        if let (redis::PushKind::Invalidate, Some(redis::Value::Array(keys))) =
            (&info.kind, info.data.first())
        {
            for key in keys {
                if let redis::Value::BulkString(key) = key {
                    late.invalidate(key);
                }
            }
        }
        Ok(())
    };
    let client = redis::Client::open(format!("{}?protocol=resp3", redis.url())).unwrap();
    let config = redis::AsyncConnectionConfig::new().set_push_sender(push);
    let mut tracking = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap();
    redis::cmd("CLIENT")
        .arg("TRACKING")
        .arg("ON")
        .arg("BCAST")
        .arg("PREFIX")
        .arg("tfence:")
        .query_async::<()>(&mut tracking)
        .await
        .unwrap();
    let epoch = cache.distrust();
    assert!(cache.trust(epoch));
    cache
        .fence()
        .arm(epoch, vec![tracking], Duration::from_secs(5));
    tokio::spawn(cache.fence().clone().run());

    let key = "tfence:s:one";
    // Changes go through a blocking connection: its answers must not wait for the runtime's
    // threads, one of which the late tracking reader is holding.
    let mut admin = redis.admin_client().get_connection().unwrap();
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg("a record")
        .query(&mut admin)
        .unwrap();
    // The SET's own invalidation is applied before the entry is filled.
    assert_eq!(cache.fence().pass().await, Some(epoch));
    let Lookup::Miss(Some(ticket)) = cache.lookup(key) else {
        panic!("the first lookup misses and may fill");
    };
    let user = tessera::session::UserId::parse("alice").unwrap();
    let secret = tessera::session::SessionSecret::generate().hash();
    cache.fill(key, ticket, &crate::contract::record(&user, 0, &secret));
    assert!(matches!(cache.lookup(key), Lookup::Hit(_)));

    // Redis sends the invalidation before DEL's reply; this node has not applied it yet.
    let _: () = redis::cmd("DEL").arg(key).query(&mut admin).unwrap();
    assert!(
        matches!(cache.lookup(key), Lookup::Hit(_)),
        "the window the fence closes"
    );
    assert_eq!(cache.fence().pass().await, Some(epoch));
    assert!(
        matches!(cache.lookup_at(key, epoch), Lookup::Miss(_)),
        "after the fence, the deletion has been applied"
    );

    // Rounds are group commits: 200 hits at once share a few `PING`s.
    let before = calls(&redis, "ping");
    let passes = futures_util::future::join_all((0..200).map(|_| cache.fence().pass())).await;
    assert!(passes.iter().all(|p| *p == Some(epoch)));
    let pings = calls(&redis, "ping") - before;
    assert!((1..=10).contains(&pings), "{pings} PINGs for 200 hits");

    // A lookup for an epoch the cache has left finds nothing.
    let Lookup::Miss(Some(ticket)) = cache.lookup(key) else {
        panic!("the deleted key misses");
    };
    cache.fill(key, ticket, &crate::contract::record(&user, 0, &secret));
    assert!(matches!(cache.lookup_at(key, epoch), Lookup::Hit(_)));
    assert!(matches!(
        cache.lookup_at(key, epoch + 1),
        Lookup::Miss(None)
    ));

    // Not armed (tracking down): the fence never passes, and the caller reads Redis.
    cache.fence().disarm();
    assert_eq!(cache.fence().pass().await, None);
}
