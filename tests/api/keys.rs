//! The shared key ring: one key for all nodes, encrypted at rest, stable across restarts.

use crate::helpers::*;
use redis::Commands;

#[tokio::test]
async fn two_nodes_started_together_publish_the_same_key() {
    let redis = RedisServer::start();
    let settings = test_settings(&redis);
    let (a, b) = tokio::join!(
        spawn_app_with(settings.clone()),
        spawn_app_with(settings.clone())
    );
    let (ja, jb) = (a.jwks().await, b.jwks().await);
    assert_eq!(ja["keys"].as_array().unwrap().len(), 1);
    assert_eq!(ja, jb);

    // A session made on one node works on the other.
    let created = a.create_session("alice").await;
    assert_eq!(
        b.get_session_with_bearer(&created.token).await.status(),
        200
    );
}

#[tokio::test]
async fn signing_keys_survive_a_restart_and_rest_encrypted_in_redis() {
    let redis = RedisServer::start();
    let settings = test_settings(&redis);
    let first = spawn_app_with(settings.clone()).await.jwks().await;
    let second = spawn_app_with(settings.clone()).await.jwks().await;
    assert_eq!(first, second);

    let mut conn = redis.conn();
    let ring: String = conn
        .get(format!("{}:keyring", settings.key_prefix))
        .unwrap();
    let ring: serde_json::Value = serde_json::from_str(&ring).unwrap();
    let stored = &ring["keys"][0];
    assert_eq!(stored["kid"], first["keys"][0]["kid"]);
    assert!(stored.get("pkcs8").is_none() && stored.get("d").is_none());
    assert!(stored["ciphertext"].as_str().unwrap().len() > 100);
}

#[tokio::test]
async fn a_node_with_another_key_encryption_key_refuses_to_start_and_says_why() {
    let redis = RedisServer::start();
    let settings = test_settings(&redis);
    let _first = spawn_app_with(settings.clone()).await;
    let stranger = tessera::Settings {
        keys_dir: std::env::temp_dir().join(random_name("other-keys-")),
        ..settings
    };
    let err = tessera::Application::build(stranger)
        .await
        .err()
        .expect("must refuse");
    let text = format!("{err:#}");
    assert!(text.contains("different key-encryption key"), "{text}");
}

/// An access token minted on `app` for a fresh session.
async fn token_from(app: &TestApp) -> String {
    let created = app.create_session("alice").await;
    let minted: serde_json::Value = app.mint(&created.token, None).await.json().await.unwrap();
    minted["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn running_nodes_put_the_ring_back_after_redis_loses_it_and_a_new_node_uses_it() {
    let mut redis = RedisServer::start();
    let settings = test_settings(&redis);
    let (a, b) = tokio::join!(
        spawn_app_with(settings.clone()),
        spawn_app_with(settings.clone())
    );
    let before = a.kids().await;
    redis.restart(); // no persistence: every key is gone
    let ring_key = format!("{}:keyring", settings.key_prefix);
    wait_until("a running node restores the ring", || async {
        redis::Commands::exists::<_, bool>(&mut redis.conn(), &ring_key).unwrap()
    })
    .await;
    let c = spawn_app_with(settings.clone()).await;
    assert_eq!(
        c.kids().await,
        before,
        "the node started next loads the same ring"
    );
    assert_eq!(b.kids().await, before);
    let from_c = token_from(&c).await;
    assert_eq!(a.check_jwt(&from_c).await, 200);
    let from_a = token_from(&a).await;
    assert_eq!(c.check_jwt(&from_a).await, 200);
}

#[tokio::test]
async fn a_node_that_made_a_new_ring_during_the_outage_ends_up_publishing_everyones_keys() {
    let mut redis = RedisServer::start();
    let settings = test_settings(&redis);
    let a = spawn_app_with(settings.clone()).await;
    let old = a.kids().await;
    redis.restart();
    // C starts before A noticed: it finds no ring and creates its own.
    let c = spawn_app_with(settings.clone()).await;
    wait_until("both nodes publish both rings' keys", || async {
        let (ka, kc) = (a.kids().await, c.kids().await);
        ka == kc && ka.len() == 2 && old.iter().all(|k| ka.contains(k))
    })
    .await;
    // Both sign with the same key now, and each accepts the other's tokens.
    let (from_a, from_c) = (token_from(&a).await, token_from(&c).await);
    assert_eq!(
        jwt_part(&from_a, 0)["kid"],
        jwt_part(&from_c, 0)["kid"],
        "one signer"
    );
    assert_eq!(a.check_jwt(&from_c).await, 200);
    assert_eq!(c.check_jwt(&from_a).await, 200);
}

#[tokio::test]
async fn every_worker_connection_is_back_within_three_seconds_of_a_redis_restart() {
    let mut redis = RedisServer::start();
    let settings = tessera::Settings {
        workers: Some(4),
        ..test_settings(&redis)
    };
    let app = spawn_app_with(settings).await;
    let created = app.create_session("alice").await;
    // Warm every worker: many fresh connections, spread over the workers by the acceptor.
    let burst = |n: usize| {
        let app = &app;
        let token = created.token.clone();
        async move {
            let requests = (0..n).map(|_| {
                let client = reqwest::Client::new(); // a new TCP connection each
                let url = format!("{}/v1/session", app.public);
                let token = token.clone();
                async move {
                    client
                        .get(url)
                        .bearer_auth(token)
                        .send()
                        .await
                        .unwrap()
                        .status()
                        .as_u16()
                }
            });
            futures_util::future::join_all(requests).await
        }
    };
    assert!(burst(40).await.iter().all(|s| *s == 200));
    // Persistence on for this restart, so the session survives and only connections matter.
    let mut conn = redis.conn();
    let _: () = redis::cmd("SAVE").query(&mut conn).unwrap();
    drop(conn);
    redis.restart(); // loads the dump just saved
                     // The stated bound; nothing touches the node meanwhile, so only its own keep-alive can
                     // have healed the idle workers' connections.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let statuses = burst(40).await;
    assert!(
        statuses.iter().all(|s| *s == 200),
        "every worker answers after the bound: {statuses:?}"
    );
}
