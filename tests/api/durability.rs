//! Acknowledged means durable: revocations confirmed by a replica (`WAIT`) survive a failover,
//! and a persistent Redis (AOF, `appendfsync everysec`) keeps sessions, the key ring, outboxes
//! and the revocation feed through a crash.

use crate::helpers::*;
use crate::proxy::{Fault, FaultProxy};
use std::time::Duration;

/// A primary and a replica of it, the link up; replication passes through a proxy that
/// delays it by `lag` each way (so a replica that is behind is the normal case, not luck).
async fn primary_and_replica(lag: Duration) -> (RedisServer, RedisServer, FaultProxy) {
    let primary = RedisServer::start();
    let link = FaultProxy::start(primary.port).await;
    link.set(Fault::Latency(lag));
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &link.port.to_string()]);
    let mut conn = replica.plain_conn();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut conn)
            .unwrap();
        if info.contains("master_link_status:up") {
            return (primary, replica, link);
        }
        assert!(std::time::Instant::now() < deadline, "replica never synced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A primary and its replica (replication delayed `lag` each way), and a node with a users
/// file that waits up to `wait_ms` for the replica to confirm each revocation.
async fn node_on_replicated_redis(
    lag: Duration,
    wait_ms: u64,
) -> (RedisServer, RedisServer, FaultProxy, TestApp) {
    let (primary, replica, link) = primary_and_replica(lag).await;
    let (primary, app) = app_with_users_on(primary, |s| {
        s.redis_wait_replicas = 1;
        s.redis_wait_timeout_ms = wait_ms;
    })
    .await;
    (primary, replica, link, app)
}

/// The primary dies; the replica is promoted; a node of the same deployment starts on it.
async fn fail_over(
    primary: &mut RedisServer,
    replica: &RedisServer,
    of: &tessera::Settings,
) -> TestApp {
    primary.kill();
    let () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut replica.plain_conn())
        .unwrap();
    let node = spawn_app_with(same_deployment(replica, of)).await;
    node.wait_ready().await;
    node
}

/// Settings for a node on `redis` that shares `of`'s deployment (prefix, KEK).
fn same_deployment(redis: &RedisServer, of: &tessera::Settings) -> tessera::Settings {
    let mut settings = test_settings(redis);
    settings.key_prefix = of.key_prefix.clone();
    settings.keys_dir = of.keys_dir.clone();
    settings
}

#[tokio::test]
async fn acknowledged_revocations_survive_a_failover_to_the_replica() {
    // Replication lags 150 ms each way: without `WAIT`, a revocation answered 200 would be
    // lost in the failover below.
    let (mut primary, replica, _link, first) =
        node_on_replicated_redis(Duration::from_millis(150), 3000).await;
    let settings = first.settings.clone();

    let kept = first.create_session("failover-kept").await;
    let logged_out = first.create_session("failover-a").await;
    let logged_out_jwt = first.access_token(&logged_out.token).await;
    let everywhere = first.create_session("failover-b").await;
    let everywhere_jwt = first.access_token(&everywhere.token).await;
    let native = first.native_login().await;
    let refresh = native["refresh_token"].as_str().unwrap().to_owned();
    let native_jwt = native["access_token"].as_str().unwrap().to_owned();

    assert_eq!(
        first
            .logout_with_cookie(&logged_out.token, &logged_out.csrf)
            .await
            .status(),
        200
    );
    let revoke_all = first
        .admin_post("/admin/users/failover-b/revoke-all", &serde_json::json!({}))
        .await;
    assert_eq!(revoke_all.status(), 200);
    // Refresh-token reuse: spend it, then present the spent one after the grace window.
    let next = first.refresh(&refresh).await;
    assert_eq!(next.status(), 200);
    first.clock.advance(Duration::from_secs(
        first.settings.refresh_grace_secs as u64 + 1,
    ));
    let reuse = first.refresh(&refresh).await;
    assert_eq!(
        error_code(reuse).await,
        (401, "refresh_token_reused".into())
    );

    // The primary dies the moment it has answered; the replica is promoted.
    let second = fail_over(&mut primary, &replica, &settings).await;
    for (token, what) in [
        (&logged_out.token, "logged out"),
        (&everywhere.token, "revoked with all of the user's sessions"),
    ] {
        assert_eq!(
            second.get_session_with_cookie(token).await.status(),
            401,
            "{what}: the session is back after the failover"
        );
    }
    for (jwt, what) in [
        (&logged_out_jwt, "logged out"),
        (&everywhere_jwt, "revoke-all"),
        (&native_jwt, "refresh-token reuse"),
    ] {
        assert_eq!(
            second.check_jwt(jwt).await,
            401,
            "{what}: its access token is accepted after the failover"
        );
    }
    // What was written before a confirmed revocation is on the replica too.
    assert_eq!(
        second.get_session_with_cookie(&kept.token).await.status(),
        200
    );
}

#[tokio::test]
async fn without_a_confirming_replica_a_revocation_is_answered_503_not_200() {
    let (primary, replica, _link) = primary_and_replica(Duration::ZERO).await;
    let mut settings = test_settings(&primary);
    settings.redis_wait_replicas = 1;
    settings.redis_wait_timeout_ms = 200;
    let app = spawn_app_with(settings).await;
    let a = app.create_session("unconfirmed-a").await;
    let b = app.create_session("unconfirmed-b").await;
    let jwt = app.access_token(&b.token).await;

    replica.signal("-STOP");
    let logout = app.logout_with_cookie(&a.token, &a.csrf).await;
    assert_eq!(error_code(logout).await, (503, "unavailable".into()));
    let revoke_all = app
        .admin_post(
            "/admin/users/unconfirmed-b/revoke-all",
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(revoke_all.status(), 503);
    // Sessions are still created and checked: only acknowledgements of revocations wait.
    let c = app.create_session("unconfirmed-c").await;
    assert_eq!(app.get_session_with_cookie(&c.token).await.status(), 200);
    // The revocation did happen on the primary, and its tokens are refused here soon after.
    wait_until(
        "the unconfirmed revocation is pushed all the same",
        || async { app.check_jwt(&jwt).await == 401 },
    )
    .await;

    replica.signal("-CONT");
    assert_eq!(
        app.logout_with_cookie(&c.token, &c.csrf).await.status(),
        200
    );
}

#[tokio::test]
async fn sessions_the_key_ring_outboxes_and_the_feed_survive_a_crash_of_a_persistent_redis() {
    use tessera::session::{SessionId, SessionStore, UserId};
    let mut redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "everysec"]);
    let settings = test_settings(&redis);
    let first = spawn_app_with(settings.clone()).await;
    let kids = first.kids().await;
    let live = first.create_session("persist-live").await;
    let ended = first.create_session("persist-ended").await;
    let ended_jwt = first.access_token(&ended.token).await;
    assert_eq!(
        first
            .logout_with_cookie(&ended.token, &ended.csrf)
            .await
            .status(),
        200
    );
    // An outbox left by a node that died between its script and its flush.
    let orphan = first.create_session("persist-orphan").await;
    let orphan_jwt = first.access_token(&orphan.token).await;
    let regions = settings.known_regions();
    let sid = SessionId::parse(orphan.session["id"].as_str().unwrap(), &regions).unwrap();
    let layout = tessera::store::KeyLayout::new(settings.key_prefix.clone());
    let conns = tessera::store::RedisConnections::connect(&settings.home_redis())
        .await
        .unwrap();
    let crashed = tessera::store::RedisSessionStore::new(
        conns.per_thread(),
        layout.clone(),
        regions,
        tessera::clock::system(),
    );
    drop(first);
    assert!(crashed
        .revoke(&sid, &UserId::parse("persist-orphan").unwrap())
        .await
        .unwrap());

    // `appendfsync everysec`: what was written more than a second ago is on disk. Then the
    // process dies without a chance to save anything more.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.restart();
    let mut conn = redis.plain_conn();
    let outbox: i64 = redis::Commands::llen(&mut conn, layout.outbox(sid.tag())).unwrap();
    assert_eq!(outbox, 1, "the outbox entry survived");
    let feed: i64 = redis::Commands::xlen(&mut conn, layout.revocations("eu")).unwrap();
    assert!(feed >= 1, "the revocation feed survived");

    let mut again = settings.clone();
    again.outbox_sweep_secs = 1;
    let second = spawn_app_with(again).await;
    second.wait_ready().await;
    assert_eq!(second.kids().await, kids, "the key ring survived");
    assert_eq!(
        second.get_session_with_cookie(&live.token).await.status(),
        200
    );
    assert_eq!(
        second.get_session_with_cookie(&ended.token).await.status(),
        401
    );
    assert_eq!(second.check_jwt(&ended_jwt).await, 401, "from the feed");
    assert_eq!(
        second.get_session_with_cookie(&orphan.token).await.status(),
        401
    );
    wait_until("the orphaned outbox reaches the feed", || async {
        second.check_jwt(&orphan_jwt).await == 401
    })
    .await;
}

/// `(port, primary's node id or "-")` of every node, and each node's own id, from `CLUSTER NODES`.
fn cluster_nodes(server: &RedisServer) -> Vec<(u16, String, String, String)> {
    let nodes: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query(&mut server.plain_conn())
        .unwrap();
    nodes
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let port = f[1]
                .split(['@', ','])
                .next()
                .unwrap()
                .rsplit_once(':')
                .unwrap()
                .1;
            let slots = f.get(8..).map(|s| s.join(" ")).unwrap_or_default();
            (
                port.parse().unwrap(),
                f[0].to_owned(),
                f[3].to_owned(),
                slots,
            )
        })
        .collect()
}

#[tokio::test]
async fn on_a_cluster_wait_asks_the_primary_that_holds_the_revocation() {
    if topology() != Topology::Single {
        return; // it starts its own cluster; once per run is enough
    }
    let cluster = TestCluster::start_with_replicas(3, 1, &[]);
    let mut settings = test_settings(&cluster.servers[0]);
    settings.redis_url = cluster.view().url();
    settings.regions = tessera::config::RegionsSetting::Names(vec![]);
    settings.redis_wait_replicas = 1;
    settings.redis_wait_timeout_ms = 300;
    let app = spawn_app_with(settings.clone()).await;
    wait_until("every replica is in sync", || async {
        cluster.servers.iter().all(|s| {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut s.plain_conn())
                .unwrap();
            info.contains("role:master") || info.contains("master_link_status:up")
        })
    })
    .await;

    // Users until two of them live on different primaries.
    let layout = tessera::store::KeyLayout::new(settings.key_prefix.clone());
    let nodes = cluster_nodes(&cluster.servers[0]);
    let primary_of = |created: &Created| -> String {
        let id = created.session["id"].as_str().unwrap();
        let sid = tessera::session::SessionId::parse(id, &settings.known_regions()).unwrap();
        let slot = redis::cluster_routing::Slot::for_key(layout.session(&sid).as_bytes());
        let slot: u16 = format!("{slot:?}")
            .trim_start_matches("Slot(")
            .trim_end_matches(')')
            .parse()
            .unwrap();
        let owner = nodes.iter().find(|(_, _, primary, slots)| {
            *primary == "-"
                && slots.split_whitespace().any(|r| {
                    let (a, b) = r.split_once('-').unwrap_or((r, r));
                    (a.parse::<u16>().unwrap()..=b.parse::<u16>().unwrap()).contains(&slot)
                })
        });
        owner.unwrap().1.clone()
    };
    let mut by_primary: std::collections::HashMap<String, Vec<Created>> = Default::default();
    for i in 0.. {
        let user = format!("cluster-wait-{i}");
        let a = app.create_session(&user).await;
        let b = app.create_session(&user).await;
        by_primary.entry(primary_of(&a)).or_default().extend([a, b]);
        if by_primary.len() >= 2 {
            break;
        }
    }
    let mut groups: Vec<(String, Vec<Created>)> = by_primary.into_iter().collect();
    let (owner, mut ours_sessions) = groups.pop().unwrap();
    let (other, mut their_sessions) = groups.pop().unwrap();
    let replica_of = |primary_id: &str| {
        let port = nodes.iter().find(|n| n.2 == primary_id).unwrap().0;
        cluster.servers.iter().find(|s| s.port == port).unwrap()
    };
    let ours = replica_of(&owner);
    let theirs = replica_of(&other);
    let first = ours_sessions.pop().unwrap();
    let second = ours_sessions.pop().unwrap();
    // A revocation on the other primary first, so the side connection has written there too
    // (a `WAIT` sent to every primary would then wait for its replica as well).
    let elsewhere = their_sessions.pop().unwrap();
    assert_eq!(
        app.logout_with_cookie(&elsewhere.token, &elsewhere.csrf)
            .await
            .status(),
        200
    );

    // Another primary's replica stalled: this revocation does not depend on it.
    theirs.signal("-STOP");
    let logout = app.logout_with_cookie(&first.token, &first.csrf).await;
    theirs.signal("-CONT");
    assert_eq!(logout.status(), 200);

    // Its own primary's replica stalled: not confirmed, 503.
    ours.signal("-STOP");
    let logout = app.logout_with_cookie(&second.token, &second.csrf).await;
    ours.signal("-CONT");
    assert_eq!(error_code(logout).await, (503, "unavailable".into()));
}

/// A bearer of a made-up credential for a real session id: what anyone can send.
fn forged(token: &str) -> String {
    let mut forged = token.to_owned();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    forged
}

#[tokio::test]
async fn a_retry_after_503_gets_no_final_answer_until_the_replicas_have_the_revocation() {
    // Attack finding: the retry found the session gone on the primary and answered 401/404/200
    // at once; after a failover the session was back.
    let (mut primary, replica, link, app) = node_on_replicated_redis(Duration::ZERO, 300).await;
    let settings = app.settings.clone();
    let by_cookie = app.create_session("retry-a").await;
    let by_admin = app.create_session("retry-b").await;
    let by_token = app.create_session("retry-c").await;
    let jwt = app.access_token(&by_token.token).await;
    let native = app.native_login().await;
    let refresh = native["refresh_token"].as_str().unwrap().to_owned();

    // The replication link stalls (bytes held, as TCP would): nothing more reaches the replica.
    link.set(Fault::BlackHole);
    let kill = || async {
        let path = format!(
            "{}/admin/users/retry-b/sessions/{}",
            app.admin,
            by_admin.session["id"].as_str().unwrap()
        );
        let answer = app.client.delete(path).bearer_auth(ADMIN_KEY).send();
        answer.await.unwrap().status()
    };
    for attempt in 0..2 {
        let logout = app
            .logout_with_cookie(&by_cookie.token, &by_cookie.csrf)
            .await;
        assert_eq!(logout.status(), 503, "logout, attempt {attempt}");
        assert_eq!(kill().await, 503, "admin kill, attempt {attempt}");
        let revoked = app.revoke_token(&by_token.token).await;
        assert_eq!(revoked.status(), 503, "token revocation, attempt {attempt}");
        let by_jwt = app
            .client
            .post(format!("{}/v1/logout", app.public))
            .bearer_auth(&jwt)
            .send()
            .await
            .unwrap();
        assert_eq!(
            by_jwt.status(),
            503,
            "logout by access token, attempt {attempt}"
        );
        let native_revoked = app.revoke_token(&refresh).await;
        assert_eq!(
            native_revoked.status(),
            503,
            "refresh token revocation, attempt {attempt}"
        );
    }

    // The primary dies before the link comes back: nothing was acknowledged, nothing is owed.
    // With the link back instead, the retries get their final answers.
    link.set(Fault::None);
    wait_until("a retried logout gets its final answer", || async {
        app.logout_with_cookie(&by_cookie.token, &by_cookie.csrf)
            .await
            .status()
            == 401
    })
    .await;
    assert_eq!(kill().await, 404);
    assert_eq!(app.revoke_token(&by_token.token).await.status(), 200);

    // And that answer survives a failover.
    let second = fail_over(&mut primary, &replica, &settings).await;
    for created in [&by_cookie, &by_admin, &by_token] {
        assert_eq!(
            second
                .get_session_with_cookie(&created.token)
                .await
                .status(),
            401
        );
    }
    assert_eq!(second.refresh(&refresh).await.status(), 401);
}

#[tokio::test]
async fn a_flood_of_made_up_credentials_shares_waits_and_does_not_starve_a_real_logout() {
    // Attack finding: every unauthenticated revocation with a made-up credential took a WAIT of
    // its own on one side connection; a flood delayed real logouts past their timeout (503).
    let (primary, _replica, link, app) =
        node_on_replicated_redis(Duration::from_millis(20), 1500).await;
    let victim = app.create_session("flood-victim").await;
    let native = app.native_login().await;
    let real = app.create_session("flood-real").await;
    // Made-up secrets for real session ids: a session token and a refresh token.
    let bogus = [
        forged(&victim.token),
        forged(native["refresh_token"].as_str().unwrap()),
    ];
    let waits_before = wait_calls(&primary);

    let flood: Vec<_> = (0..200)
        .map(|i| {
            let client = app.client.clone();
            let url = format!("{}/v1/token/revoke", app.public);
            let body = form_body(&[("token", &bogus[i % 2])]);
            tokio::spawn(async move {
                client
                    .post(url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            })
        })
        .collect();
    let logout = app.logout_with_cookie(&real.token, &real.csrf).await;
    let mut statuses = std::collections::BTreeMap::new();
    for f in flood {
        *statuses.entry(f.await.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(logout.status(), 200, "the real logout, beside {statuses:?}");
    assert_eq!(statuses.get(&200), Some(&200), "{statuses:?}");
    let waits = wait_calls(&primary) - waits_before;
    assert!(
        waits < 50,
        "{waits} WAITs for 201 revocations: they must share rounds"
    );
    assert_eq!(
        app.get_session_with_cookie(&victim.token).await.status(),
        200,
        "made-up credentials end nothing"
    );
    let refreshed = app.refresh(native["refresh_token"].as_str().unwrap()).await;
    assert_eq!(refreshed.status(), 200, "nor the native session");
    drop(link);
}

/// How many `WAIT`s the server has run.
fn wait_calls(server: &RedisServer) -> u64 {
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut server.plain_conn())
        .unwrap();
    stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_wait:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
