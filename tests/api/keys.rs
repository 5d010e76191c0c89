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
