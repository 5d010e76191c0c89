//! Two regions on two `redis-server`s of the test's own (whatever the suite's topology): where
//! sessions live, listing across regions, revocations that reach a region that was cut off,
//! the session limit across regions and the signing keys every region shares.

use crate::helpers::*;
use redis::Commands;
use serde_json::Value;
use std::collections::BTreeMap;
use tessera::config::{RegionRedis, RegionsSetting};
use tessera::session::{Region, UserId};
use tessera::Settings;

fn region(name: &str) -> Region {
    Region::parse(name).unwrap()
}

/// Settings for a deployment with `eu` on one server and `us` on another; `home` picks the
/// node's home region (every node of the deployment shares prefix, keys and KEK).
fn two_regions(eu: &RedisServer, us: &RedisServer) -> Settings {
    let mut settings = test_settings(eu);
    settings.redis_url = eu.url();
    settings.regions = RegionsSetting::Table(BTreeMap::from([
        (
            region("eu"),
            RegionRedis {
                redis_url: Some(eu.url()),
                cluster: false,
            },
        ),
        (
            region("us"),
            RegionRedis {
                redis_url: Some(us.url()),
                cluster: false,
            },
        ),
    ]));
    // A stopped region costs a request this long, not the default second.
    settings.redis_command_timeout_ms = 300;
    settings.redis_connect_timeout_ms = 300;
    settings
}

fn at(settings: &Settings, home: &str) -> Settings {
    Settings {
        region: region(home),
        ..settings.clone()
    }
}

/// `settings` as a deployment of the one region `name`, on `redis` (as a node that only ever
/// knew that region would be configured).
fn only_in(settings: &mut Settings, name: &str, redis: &RedisServer) {
    settings.redis_url = redis.url();
    settings.regions = RegionsSetting::Table(BTreeMap::from([(
        region(name),
        RegionRedis {
            redis_url: Some(redis.url()),
            cluster: false,
        },
    )]));
}

/// `settings` with the path to region `name`'s Redis broken (a refused port): that node alone
/// never reaches it.
fn cut_off_from(settings: &mut Settings, name: &str) {
    if let RegionsSetting::Table(regions) = &mut settings.regions {
        regions.get_mut(&region(name)).unwrap().redis_url = Some("redis://127.0.0.1:1".into());
    }
}

fn session_key(settings: &Settings, id: &str) -> String {
    let tag = id.split('_').nth(2).unwrap();
    format!("{}:s:{{{tag}}}:{id}", settings.key_prefix)
}

fn exists(redis: &RedisServer, key: &str) -> bool {
    redis.plain_conn().exists(key).unwrap()
}

async fn listed(app: &TestApp, user: &str) -> Value {
    let response = app
        .admin_get(&format!("/admin/users/{user}/sessions"))
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn pending(redis: &RedisServer, settings: &Settings, region: &str) -> usize {
    redis
        .plain_conn()
        .llen(format!("{}:pending:{region}", settings.key_prefix))
        .unwrap()
}

#[tokio::test]
async fn sessions_live_in_their_home_region_and_every_node_serves_them() {
    let (eu, us) = (RedisServer::start(), RedisServer::start());
    let settings = two_regions(&eu, &us);
    let eu_node = spawn_app_with(at(&settings, "eu")).await;
    // Started second, on an empty `us` Redis: it adopts the ring `eu` created.
    let us_node = spawn_app_with(at(&settings, "us")).await;

    let a = eu_node.create_session("alice").await;
    let b = us_node.create_session("alice").await;
    let (a_id, b_id) = (
        a.session["id"].as_str().unwrap(),
        b.session["id"].as_str().unwrap(),
    );
    assert!(a_id.starts_with("v1_eu_") && b_id.starts_with("v1_us_"));
    assert!(exists(&eu, &session_key(&settings, a_id)));
    assert!(!exists(&us, &session_key(&settings, a_id)));
    assert!(exists(&us, &session_key(&settings, b_id)));
    assert!(!exists(&eu, &session_key(&settings, b_id)));

    // Any node serves any session by reading the Redis of the region in its id.
    for node in [&eu_node, &us_node] {
        for token in [&a.token, &b.token] {
            assert_eq!(node.get_session_with_cookie(token).await.status(), 200);
        }
    }
    // Listing merges both regions, at either node.
    for node in [&eu_node, &us_node] {
        let list = listed(node, "alice").await;
        assert_eq!(list["sessions"].as_array().unwrap().len(), 2, "{list}");
        assert_eq!(list["unavailable_regions"], serde_json::json!([]));
    }
    // One ring: the same JWKS everywhere, and a token minted in one region checks in the other.
    assert_eq!(eu_node.jwks().await, us_node.jwks().await);
    let jwt = us_node.access_token(&b.token).await;
    assert_eq!(eu_node.check_jwt(&jwt).await, 200);
}

#[tokio::test]
async fn listing_names_the_region_that_does_not_answer() {
    let (eu, us) = (RedisServer::start(), RedisServer::start());
    let settings = two_regions(&eu, &us);
    let eu_node = spawn_app_with(at(&settings, "eu")).await;
    let us_node = spawn_app_with(at(&settings, "us")).await;
    eu_node.create_session("alice").await;
    us_node.create_session("alice").await;

    us.signal("-STOP");
    let list = listed(&eu_node, "alice").await;
    us.signal("-CONT");
    assert_eq!(list["sessions"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["sessions"][0]["id"].as_str().unwrap()[..6], *"v1_eu_");
    assert_eq!(list["unavailable_regions"], serde_json::json!(["us"]));
    let list = listed(&eu_node, "alice").await;
    assert_eq!(list["sessions"].as_array().unwrap().len(), 2, "{list}");
}

#[tokio::test]
async fn a_revoke_all_reaches_a_region_that_was_cut_off() {
    let (eu, us) = (RedisServer::start(), RedisServer::start());
    let settings = two_regions(&eu, &us);
    let eu_node = spawn_app_with(at(&settings, "eu")).await;
    let us_node = spawn_app_with(at(&settings, "us")).await;
    let a = eu_node.create_session("alice").await;
    let b = us_node.create_session("alice").await;
    let b_id = b.session["id"].as_str().unwrap().to_owned();
    let jwt_b = us_node.access_token(&b.token).await;
    assert_eq!(eu_node.check_jwt(&jwt_b).await, 200);

    us.signal("-STOP");
    let response = eu_node
        .admin_post("/admin/users/alice/revoke-all", &serde_json::json!({}))
        .await;
    assert_eq!(response.status(), 200, "acknowledged: the us part is kept");
    assert_eq!(pending(&eu, &settings, "us"), 1);
    // Refused at once wherever the home region's feed is heard.
    assert_eq!(eu_node.check_jwt(&jwt_b).await, 401);
    assert_eq!(
        eu_node.get_session_with_cookie(&a.token).await.status(),
        401
    );

    us.signal("-CONT");
    wait_until("the parked revoke-all is delivered", || async {
        pending(&eu, &settings, "us") == 0
    })
    .await;
    assert!(
        !exists(&us, &session_key(&settings, &b_id)),
        "the session is gone from its own region"
    );
    for node in [&eu_node, &us_node] {
        assert_eq!(node.get_session_with_cookie(&b.token).await.status(), 401);
        assert_eq!(node.check_jwt(&jwt_b).await, 401);
    }
    // A node that starts now, with nothing in memory, refuses the token too (feed backlog).
    let fresh = spawn_app_with(at(&settings, "us")).await;
    wait_until("the fresh node refuses the token", || async {
        fresh.check_jwt(&jwt_b).await == 401
    })
    .await;
    // New sessions in the region that was away work.
    let c = us_node.create_session("alice").await;
    assert_eq!(
        us_node.get_session_with_cookie(&c.token).await.status(),
        200
    );
    let jwt_c = us_node.access_token(&c.token).await;
    assert_eq!(eu_node.check_jwt(&jwt_c).await, 200);
}

#[tokio::test]
async fn the_session_limit_holds_across_regions() {
    let (eu, us) = (RedisServer::start(), RedisServer::start());
    let mut settings = two_regions(&eu, &us);
    settings.max_sessions_per_user = 2;
    settings.on_session_limit = tessera::session::policy::OnLimit::Reject;
    let eu_node = spawn_app_with(at(&settings, "eu")).await;
    let us_node = spawn_app_with(at(&settings, "us")).await;
    let body = serde_json::json!({ "user_id": "dave", "acr": "pwd", "amr": ["pwd"] });

    let first = us_node.create_session("dave").await;
    eu_node.create_session("dave").await;
    for node in [&eu_node, &us_node] {
        let (status, code) = error_code(node.admin_post("/admin/sessions", &body).await).await;
        assert_eq!((status, code.as_str()), (409, "session_limit_reached"));
    }
    // A logout in one region frees a place for a login in the other.
    assert_eq!(
        us_node
            .logout_with_cookie(&first.token, &first.csrf)
            .await
            .status(),
        200
    );
    assert_eq!(
        eu_node.admin_post("/admin/sessions", &body).await.status(),
        201
    );
    let list = listed(&eu_node, "dave").await;
    assert_eq!(list["sessions"].as_array().unwrap().len(), 2);

    // Concurrent logins in both regions: never more than the limit.
    let mut tasks = Vec::new();
    for i in 0..10 {
        let node = if i % 2 == 0 { &eu_node } else { &us_node };
        let (client, admin) = (node.client.clone(), node.admin.clone());
        let body = serde_json::json!({ "user_id": "erin", "acr": "pwd", "amr": ["pwd"] });
        tasks.push(tokio::spawn(async move {
            client
                .post(format!("{admin}/admin/sessions"))
                .bearer_auth(ADMIN_KEY)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            201 => created += 1,
            409 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(created, 2);
    assert_eq!(
        listed(&eu_node, "erin").await["sessions"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn the_limit_evicts_the_oldest_session_of_any_region() {
    let (eu, us) = (RedisServer::start(), RedisServer::start());
    let mut settings = two_regions(&eu, &us);
    settings.max_sessions_per_user = 2;
    let eu_node = spawn_app_with(at(&settings, "eu")).await;
    let us_node = spawn_app_with(at(&settings, "us")).await;
    let oldest = us_node.create_session("frank").await;
    let jwt = us_node.access_token(&oldest.token).await;
    eu_node.create_session("frank").await;
    let newest = eu_node.create_session("frank").await;
    for node in [&eu_node, &us_node] {
        assert_eq!(
            node.get_session_with_cookie(&oldest.token).await.status(),
            401
        );
        assert_eq!(
            node.get_session_with_cookie(&newest.token).await.status(),
            200
        );
    }
    wait_until("the eviction is pushed", || async {
        eu_node.check_jwt(&jwt).await == 401
    })
    .await;
    let events = eu_node.audit_events("user_id=frank").await;
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "session_evicted" && e["session_id"] == oldest.session["id"]),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_login_fails_closed_while_the_users_owner_region_is_away() {
    let (eu, us) = (RedisServer::start(), RedisServer::start());
    let settings = two_regions(&eu, &us);
    let eu_node = spawn_app_with(at(&settings, "eu")).await;
    let (eu_r, us_r) = (region("eu"), region("us"));
    let owned_by = |name: &str| {
        (0..1000)
            .map(|i| format!("user{i}"))
            .find(|u| {
                tessera::store::regional::owner_of(&[&eu_r, &us_r], &UserId::parse(u).unwrap())
                    .is_some_and(|o| o.as_str() == name)
            })
            .unwrap()
    };
    let (of_us, of_eu) = (owned_by("us"), owned_by("eu"));

    us.signal("-STOP");
    let body = |user: &str| serde_json::json!({ "user_id": user, "acr": "pwd", "amr": ["pwd"] });
    let (status, _) = error_code(eu_node.admin_post("/admin/sessions", &body(&of_us)).await).await;
    let owned_here = eu_node.admin_post("/admin/sessions", &body(&of_eu)).await;
    us.signal("-CONT");
    assert_eq!(
        status, 503,
        "no limit can be checked: refused, never exceeded"
    );
    assert_eq!(
        owned_here.status(),
        201,
        "users owned by eu log in as usual"
    );
    wait_until("the owner answers again", || async {
        eu_node
            .admin_post("/admin/sessions", &body(&of_us))
            .await
            .status()
            == 201
    })
    .await;
}

#[tokio::test]
async fn a_rotation_reaches_every_region_and_an_outage_stops_neither_minting_nor_rotation() {
    let (eu, us) = (RedisServer::start(), RedisServer::start());
    let settings = two_regions(&eu, &us);
    let eu_node = spawn_app_with(at(&settings, "eu")).await;
    let us_node = spawn_app_with(at(&settings, "us")).await;
    let ring_in = |redis: &RedisServer| -> Option<String> {
        redis
            .plain_conn()
            .get(format!("{}:keyring", settings.key_prefix))
            .unwrap()
    };
    wait_until("one ring, a copy in each region", || async {
        ring_in(&eu) == ring_in(&us)
    })
    .await;

    let rotate = |node: &TestApp| {
        let request = node
            .client
            .post(format!("{}/admin/keys/rotate", node.admin))
            .bearer_auth(ADMIN_KEY)
            .send();
        async move { request.await.unwrap().status().as_u16() }
    };
    assert_eq!(rotate(&eu_node).await, 200);
    let after = eu_node.kids().await;
    assert_eq!(after.len(), 2);
    wait_until("the us node publishes the new key", || async {
        us_node.kids().await == after
    })
    .await;
    assert_eq!(ring_in(&eu), ring_in(&us));

    // us away: the eu node still mints and rotates; us catches up when it answers.
    let in_eu = eu_node.create_session("gina").await;
    us.signal("-STOP");
    assert!(!eu_node.access_token(&in_eu.token).await.is_empty());
    assert_eq!(rotate(&eu_node).await, 200);
    let three = eu_node.kids().await;
    assert_eq!(three.len(), 3);
    us.signal("-CONT");
    wait_until("the us node installs the rotation", || async {
        us_node.kids().await == three
    })
    .await;
    wait_until("the us copy catches up", || async {
        ring_in(&eu) == ring_in(&us)
    })
    .await;

    // The ring region (eu, first by name) away: no rotation anywhere, minting goes on, and a
    // node can start from its own region's copy.
    let in_us = us_node.create_session("gina").await;
    eu.signal("-STOP");
    assert_eq!(rotate(&us_node).await, 503);
    assert!(!us_node.access_token(&in_us.token).await.is_empty());
    let late = spawn_app_with(at(&settings, "us")).await;
    assert_eq!(late.kids().await, three);
    eu.signal("-CONT");
}

#[tokio::test]
async fn a_users_file_change_ends_the_users_sessions_in_every_region() {
    let (eu, us) = (RedisServer::start(), RedisServer::start());
    let mut settings = two_regions(&eu, &us);
    let users = crate::users::write_users_file();
    settings.users_file = Some(users.clone());
    settings.users_reload_secs = 1;
    settings.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    let eu_node = spawn_app_with(at(&settings, "eu")).await;
    let us_node = spawn_app_with(at(&settings, "us")).await;
    let in_us = TestApp::cookie_of(&us_node.login("alice", crate::users::ALICE_PW).await);
    let in_eu = TestApp::cookie_of(&eu_node.login("alice", crate::users::ALICE_PW).await);
    assert_eq!(us_node.get_session_with_cookie(&in_us).await.status(), 200);
    // Only the eu node is left to notice the edit: its sync must reach the us region too.
    drop(us_node);
    std::fs::write(&users, crate::users::users_toml("a new password for alice")).unwrap();
    let us_sessions = |redis: &RedisServer| -> usize {
        let keys: Vec<String> = redis
            .plain_conn()
            .keys(format!("{}:s:*", settings.key_prefix))
            .unwrap();
        keys.len()
    };
    wait_until("alice's us session ends", || async {
        us_sessions(&us) == 0
    })
    .await;
    assert_eq!(eu_node.get_session_with_cookie(&in_eu).await.status(), 401);
    let us_node = spawn_app_with(at(&settings, "us")).await;
    assert_eq!(us_node.get_session_with_cookie(&in_us).await.status(), 401);
}

#[tokio::test]
async fn a_change_parked_by_a_node_that_is_gone_is_delivered_by_any_node_that_reaches_both() {
    let (eu, us) = (RedisServer::start(), RedisServer::start());
    let settings = two_regions(&eu, &us);
    let eu_node = spawn_app_with(at(&settings, "eu")).await;
    let us_node = spawn_app_with(at(&settings, "us")).await;
    let b = us_node.create_session("ivan").await;
    let b_id = b.session["id"].as_str().unwrap().to_owned();

    us.signal("-STOP");
    let response = eu_node
        .admin_post("/admin/users/ivan/revoke-all", &serde_json::json!({}))
        .await;
    assert_eq!(response.status(), 200);
    // The node that parked it goes away before the region returns: the us node delivers
    // what the eu Redis keeps for us.
    drop(eu_node);
    us.signal("-CONT");
    wait_until(
        "the change parked in eu is delivered by the us node",
        || async { pending(&eu, &settings, "us") == 0 },
    )
    .await;
    assert!(!exists(&us, &session_key(&settings, &b_id)));
    assert_eq!(
        us_node.get_session_with_cookie(&b.token).await.status(),
        401
    );
}

#[tokio::test]
async fn a_region_away_is_named_never_mistaken_for_a_missing_session() {
    let (eu, us) = (RedisServer::start(), RedisServer::start());
    let settings = two_regions(&eu, &us);
    let eu_node = spawn_app_with(at(&settings, "eu")).await;
    let us_node = spawn_app_with(at(&settings, "us")).await;
    let a = eu_node.create_session("judy").await;
    let b = us_node.create_session("judy").await;
    let b_id = b.session["id"].as_str().unwrap().to_owned();

    us.signal("-STOP");
    // Killing a session of the region away: 503 (retry), not 404 (the client would believe
    // it gone).
    let kill = eu_node
        .client
        .delete(format!(
            "{}/admin/users/judy/sessions/{b_id}",
            eu_node.admin
        ))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    let status = kill.status().as_u16();
    // "Sign out everywhere else" cannot claim success while us sessions live.
    let others = eu_node
        .client
        .delete(format!("{}/v1/sessions?scope=others", eu_node.public))
        .headers(eu_node.browser_unsafe_headers(&a.token, &a.csrf))
        .send()
        .await
        .unwrap();
    let others = error_code(others).await;
    // The eu node still serves its own region: ready.
    let ready = eu_node
        .client
        .get(format!("{}/readyz", eu_node.public))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    us.signal("-CONT");
    assert_eq!(status, 503);
    assert_eq!(others, (503, "region_unavailable".to_owned()));
    assert_eq!(ready, 200);
    assert_eq!(
        us_node.get_session_with_cookie(&b.token).await.status(),
        200
    );
}

#[tokio::test]
async fn the_last_possible_event_id_is_refused_not_a_server_error() {
    let (eu, us) = (RedisServer::start(), RedisServer::start());
    let eu_node = spawn_app_with(at(&two_regions(&eu, &us), "eu")).await;
    let last = "18446744073709551615-18446744073709551615";
    for id in [last.to_owned(), format!("eu=0-0,us={last}")] {
        let response = eu_node.revocation_stream(Some(&id)).await;
        assert_eq!(error_code(response).await.0, 400);
    }
}

#[tokio::test]
async fn a_starting_node_counts_as_fresh_only_once_it_has_read_the_whole_feed() {
    let redis = RedisServer::start();
    let settings = test_settings(&redis);
    let until = unix_ms() + 600_000;
    let mut pipe = redis::pipe();
    for i in 0..5_000 {
        let entry = serde_json::json!({ "kind": "session", "sid": format!("v1_eu_abcd_{i:022}"), "until": until });
        pipe.cmd("XADD")
            .arg(format!("{}:rev:eu", settings.key_prefix))
            .arg("*")
            .arg("e")
            .arg(entry.to_string())
            .ignore();
    }
    let _: () = pipe.query(&mut redis.plain_conn()).unwrap();
    let app = spawn_app_with(settings).await;
    let metric = |text: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix("tessera_revoked_set_entries "))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0.0)
    };
    wait_until("the node's home feed is fresh", || async {
        app.readiness().await["revocation_feed"] == "ok"
    })
    .await;
    let text = app.admin_get("/metrics").await.text().await.unwrap();
    assert!(
        metric(&text) >= 5_000.0,
        "fresh before the backlog was read: {}",
        metric(&text)
    );
}

/// Reads an SSE response until `done` holds for everything read so far (at most 10 s).
async fn read_until(
    response: &mut reqwest::Response,
    text: &mut String,
    done: impl Fn(&str) -> bool,
) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done(text) {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .expect("the stream said it in time")
            .unwrap()
            .expect("the stream stays open");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn the_revocation_stream_keeps_going_while_a_region_is_away_and_shows_the_gap() {
    let (eu, us) = (RedisServer::start(), RedisServer::start());
    let settings = two_regions(&eu, &us);
    let eu_node = spawn_app_with(at(&settings, "eu")).await;
    // Writes the us feed's heartbeats.
    let _us_node = spawn_app_with(at(&settings, "us")).await;
    let a = eu_node.create_session("alice").await;
    let a_id = a.session["id"].as_str().unwrap().to_owned();

    us.signal("-STOP");
    let mut feed = eu_node.revocation_stream(None).await;
    assert_eq!(feed.status(), 200, "one region away stops nothing");
    let mut text = String::new();
    read_until(&mut feed, &mut text, |t| t.contains(": feeds behind: us")).await;
    // The eu node's own heartbeats arrive every second, but none is forwarded: a verifier
    // must not count a stream that misses a region as fresh.
    assert!(!text.contains("event: heartbeat"), "{text}");
    let logout = eu_node.logout_with_cookie(&a.token, &a.csrf).await;
    assert_eq!(logout.status(), 200);
    read_until(&mut feed, &mut text, |t| t.contains(&a_id)).await;
    assert!(!text.contains("event: heartbeat"), "{text}");

    us.signal("-CONT");
    read_until(&mut feed, &mut text, |t| t.contains("event: heartbeat")).await;
    read_until(&mut feed, &mut text, |t| t.contains(",us=")).await;
    // The ids now carry both regions' positions, so a client resumes exactly.
    let last_id = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("id: "))
        .unwrap()
        .to_owned();
    assert!(
        last_id.starts_with("eu=") && last_id.contains(",us="),
        "{last_id}"
    );

    // With every region away, there is nothing to stream: 503, never an empty 200.
    eu.signal("-STOP");
    us.signal("-STOP");
    let refused = eu_node.revocation_stream(None).await;
    eu.signal("-CONT");
    us.signal("-CONT");
    assert_eq!(error_code(refused).await.0, 503);
}

#[tokio::test]
async fn a_node_cut_off_from_the_ring_region_alone_follows_the_rotations_copied_to_its_region() {
    let (eu, us) = (RedisServer::start(), RedisServer::start());
    let settings = two_regions(&eu, &us);
    let eu_node = spawn_app_with(at(&settings, "eu")).await;
    let ring = format!("{}:keyring", settings.key_prefix);
    wait_until("a copy of the ring in us", || async {
        us.plain_conn().exists::<_, bool>(&ring).unwrap()
    })
    .await;
    // This node's path to eu (the ring region) is broken; every other path works.
    let mut cut_off = at(&settings, "us");
    cut_off_from(&mut cut_off, "eu");
    let us_node = spawn_app_with(cut_off).await;
    assert_eq!(us_node.kids().await, eu_node.kids().await);

    let rotated = eu_node
        .client
        .post(format!("{}/admin/keys/rotate", eu_node.admin))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), 200);
    let after = eu_node.kids().await;
    assert_eq!(after.len(), 2);
    wait_until("the cut-off node publishes the new key", || async {
        us_node.kids().await == after
    })
    .await;
}

#[tokio::test]
async fn a_ring_region_that_lost_the_ring_gets_it_back_from_a_copy_not_a_fresh_ring() {
    let (eu, us) = (RedisServer::start(), RedisServer::start());
    let settings = two_regions(&eu, &us);
    // Only us holds the ring: as after eu restarted without persistence, with no node left
    // running that still holds the keys in memory.
    let mut us_only = at(&settings, "us");
    only_in(&mut us_only, "us", &us);
    let in_use = spawn_app_with(us_only).await.kids().await;
    let ring = format!("{}:keyring", settings.key_prefix);
    assert!(!eu.plain_conn().exists::<_, bool>(&ring).unwrap());

    let eu_node = spawn_app_with(at(&settings, "eu")).await;
    assert_eq!(
        eu_node.kids().await,
        in_use,
        "the keys in use, not a fresh ring"
    );
    let restored: Option<String> = eu.plain_conn().get(&ring).unwrap();
    let copy: Option<String> = us.plain_conn().get(&ring).unwrap();
    assert_eq!(restored, copy);
}

#[tokio::test]
async fn the_effect_of_a_change_still_parked_is_pushed_again_before_it_lapses() {
    let (eu, us) = (RedisServer::start(), RedisServer::start());
    let mut settings = two_regions(&eu, &us);
    // This node never reaches us: whatever it parks for us stays parked.
    cut_off_from(&mut settings, "us");
    let eu_node = spawn_app_with(at(&settings, "eu")).await;
    let done = eu_node
        .admin_post("/admin/users/alice/revoke-all", &serde_json::json!({}))
        .await;
    assert_eq!(done.status(), 200);
    assert_eq!(pending(&eu, &settings, "us"), 1);
    // The user entries for alice in us on the eu feed: (min_version, until).
    let feed_key = format!("{}:rev:eu", settings.key_prefix);
    let entries = || -> Vec<(u64, i64)> {
        let found: redis::streams::StreamRangeReply =
            eu.plain_conn().xrange_all(&feed_key).unwrap();
        found
            .ids
            .iter()
            .filter_map(|e| e.get::<String>("e"))
            .filter_map(|raw| serde_json::from_str::<Value>(&raw).ok())
            .filter(|v| v["kind"] == "user" && v["user"] == "alice" && v["region"] == "us")
            .map(|v| {
                (
                    v["min_version"].as_u64().unwrap(),
                    v["until"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    // Pushed by the park, and again by the first delivery round that finds us away (the
    // parking node could have died before its own push).
    wait_until("the first delivery round pushes it", || async {
        entries().len() == 2
    })
    .await;
    let first = entries();
    assert_eq!(first[1].0, first[0].0);

    // Half the feed's retention later (the entry lapses at the full retention), the delivering
    // node pushes it again: the same version bound, a later lapse.
    eu_node
        .clock
        .advance(std::time::Duration::from_secs(8 * 60));
    wait_until("the effect is pushed again", || async {
        entries().len() == 3
    })
    .await;
    let again = entries();
    assert_eq!(
        again[2].0, first[0].0,
        "the bound of the moment it was parked"
    );
    assert!(again[2].1 >= first[0].1 + 8 * 60_000, "{again:?}");
}

#[tokio::test]
async fn erasing_a_user_removes_the_limit_ledger_with_the_rest_in_one_step() {
    let (eu, us) = (RedisServer::start(), RedisServer::start());
    let settings = two_regions(&eu, &us);
    let eu_node = spawn_app_with(at(&settings, "eu")).await;
    let us_node = spawn_app_with(at(&settings, "us")).await;
    eu_node.create_session("erin").await;
    us_node.create_session("erin").await;
    let tag = UserId::parse("erin").unwrap().tag();
    let ledger = format!("{}:lim:{{{tag}}}:erin", settings.key_prefix);
    let holders = || [&eu, &us].map(|r| r.plain_conn().exists::<_, bool>(&ledger).unwrap());
    assert_eq!(
        holders().iter().filter(|h| **h).count(),
        1,
        "the owner region keeps it"
    );
    let erased = eu_node
        .client
        .delete(format!("{}/admin/users/erin", eu_node.admin))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert!(erased.status().is_success(), "{}", erased.status());
    assert_eq!(holders(), [false, false]);
    assert_eq!(
        listed(&us_node, "erin").await["sessions"],
        serde_json::json!([])
    );
}

#[tokio::test]
async fn a_ring_copy_sealed_under_another_kek_is_neither_restored_nor_followed() {
    let (eu, us) = (RedisServer::start(), RedisServer::start());
    let settings = two_regions(&eu, &us);
    // Someone with another KEK (or none) wrote the ring in us.
    let mut stranger = at(&settings, "us");
    stranger.keys_dir = std::env::temp_dir().join(random_name("tessera-other-keys-"));
    only_in(&mut stranger, "us", &us);
    let foreign = spawn_app_with(stranger).await.kids().await;
    let ring = format!("{}:keyring", settings.key_prefix);
    let foreign_copy: Option<String> = us.plain_conn().get(&ring).unwrap();
    assert!(foreign_copy.is_some());

    // The ring region is empty: the node starts with a ring of its own instead of restoring a
    // copy it cannot open (which would keep every node from starting).
    let eu_node = spawn_app_with(at(&settings, "eu")).await;
    let own = eu_node.kids().await;
    assert_ne!(own, foreign);
    let in_eu: Option<String> = eu.plain_conn().get(&ring).unwrap();
    assert!(in_eu.is_some());
    assert_ne!(in_eu, foreign_copy, "not the foreign copy");
}

#[tokio::test]
async fn an_open_revocation_stream_stops_its_heartbeats_when_a_region_goes_quiet() {
    let (eu, us) = (RedisServer::start(), RedisServer::start());
    let settings = two_regions(&eu, &us);
    let eu_node = spawn_app_with(at(&settings, "eu")).await;
    let _us_node = spawn_app_with(at(&settings, "us")).await;
    let mut feed = eu_node.revocation_stream(None).await;
    let mut text = String::new();
    read_until(&mut feed, &mut text, |t| t.contains("event: heartbeat")).await;

    // us stops after the stream opened: the eu feed's heartbeats keep coming to the node, but
    // the stream must not pass them on, or a verifier would count a stream missing us as fresh.
    us.signal("-STOP");
    text.clear();
    read_until(&mut feed, &mut text, |t| t.contains(": feeds behind: us")).await;
    let since = text.len();
    read_until(&mut feed, &mut text, |t| {
        t.matches(": feeds behind: us").count() >= 3
    })
    .await;
    us.signal("-CONT");
    assert!(!text[since..].contains("event: heartbeat"), "{text}");
    read_until(&mut feed, &mut text, |t| {
        t[since..].contains("event: heartbeat")
    })
    .await;
}

#[tokio::test]
async fn a_resumed_stream_sends_every_entry_of_a_backlog_longer_than_one_read() {
    let redis = RedisServer::start();
    let settings = test_settings(&redis);
    let app = spawn_app_with(settings.clone()).await;
    let key = format!("{}:rev:eu", settings.key_prefix);
    let until = unix_ms() + 600_000;
    let start: String = redis::cmd("XADD")
        .arg(&key)
        .arg("*")
        .arg("e")
        .arg(r#"{"kind":"heartbeat","at":0}"#)
        .query(&mut redis.plain_conn())
        .unwrap();
    // More than the 100,000 one read used to take (the attack that found it), so several pages.
    let total = 100_100;
    let mut pipe = redis::pipe();
    for i in 0..total {
        let entry = serde_json::json!({ "kind": "session", "sid": format!("v1_eu_abcd_{i:022}"), "until": until });
        pipe.cmd("XADD")
            .arg(&key)
            .arg("*")
            .arg("e")
            .arg(entry.to_string())
            .ignore();
    }
    let _: () = pipe.query(&mut redis.plain_conn()).unwrap();
    let mut feed = app.revocation_stream(Some(&start)).await;
    let last = format!("v1_eu_abcd_{:022}", total - 1);
    let (mut sent, mut tail) = (0, String::new());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !tail.contains(&last) {
        let chunk = tokio::time::timeout_at(deadline, feed.chunk())
            .await
            .expect("the whole backlog in time")
            .unwrap()
            .expect("the stream stays open");
        tail.push_str(&String::from_utf8_lossy(&chunk));
        // Count whole events only, keeping a partial one for the next chunk.
        if let Some(end) = tail.rfind("\n\n") {
            sent += tail[..end].matches("\"kind\":\"session\"").count();
            if !tail[..end].contains(&last) {
                tail.drain(..end + 2);
            }
        }
    }
    assert_eq!(sent, total, "every entry after the resume point, once");
}

#[tokio::test]
async fn a_ring_copy_whose_keys_all_retired_is_not_restored() {
    let (eu, us) = (RedisServer::start(), RedisServer::start());
    let settings = two_regions(&eu, &us);
    let mut us_only = at(&settings, "us");
    only_in(&mut us_only, "us", &us);
    drop(spawn_app_with(us_only).await);
    // Someone with write access to us (but not the KEK) retires every key of the copy.
    let ring = format!("{}:keyring", settings.key_prefix);
    let raw: String = us.plain_conn().get(&ring).unwrap();
    let mut tampered: Value = serde_json::from_str(&raw).unwrap();
    for key in tampered["keys"].as_array_mut().unwrap() {
        key["retire_at"] = serde_json::json!(unix_ms() - 1_000);
    }
    let _: () = us.plain_conn().set(&ring, tampered.to_string()).unwrap();

    // The node starts (with a ring of its own) instead of restoring a ring no one can sign
    // from and refusing to start, which is what every node would then do.
    let eu_node = spawn_app_with(at(&settings, "eu")).await;
    assert_eq!(eu_node.kids().await.len(), 1);
    let in_eu: String = eu.plain_conn().get(&ring).unwrap();
    assert_ne!(in_eu, tampered.to_string());
}
