//! Key rotation end to end: publish first, sign later, old tokens keep verifying.

use crate::helpers::*;
use serde_json::Value;
use std::time::Duration;

fn kid_of(jwt: &str) -> String {
    jwt_part(jwt, 0)["kid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_rotated_key_is_published_first_then_signs_while_old_tokens_still_verify() {
    let redis = RedisServer::shared();
    let settings = tessera::Settings {
        jwks_cache_secs: 1,
        redis_check_interval_secs: 1,
        ..test_settings(&redis)
    };
    let (a, b) = tokio::join!(spawn_app_with(settings.clone()), spawn_app_with(settings));
    let session = a.create_session("alice").await;
    let old_token = a.access_token(&session.token).await;
    let old_kid = kid_of(&old_token);

    let rotated: Value = a
        .client
        .post(format!("{}/admin/keys/rotate", a.admin))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new_kid = rotated["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);
    assert_eq!(rotated["keys"].as_array().unwrap().len(), 2);
    assert!(rotated["keys"][0]["retires_at"].is_string());

    // Published at once, on this node and (after its next ring read) on the other.
    let jwks = a.jwks().await;
    assert!(jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["kid"] == new_kid.as_str()));
    assert_eq!(
        kid_of(&a.access_token(&session.token).await),
        old_kid,
        "not signing yet"
    );
    let mut b_has_it = false;
    for _ in 0..40 {
        let jwks = b.jwks().await;
        if jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == new_kid.as_str())
        {
            b_has_it = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(b_has_it, "the other node publishes the new key too");

    // After the JWKS cache lifetime every node signs with the new key.
    let mut switched = false;
    for _ in 0..40 {
        if kid_of(&b.access_token(&session.token).await) == new_kid {
            switched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(switched, "the new key signs after the publish delay");

    // Tokens signed by the old key keep verifying until they expire.
    let check = b
        .client
        .get(format!("{}/v1/auth/check", b.public))
        .bearer_auth(&old_token)
        .send()
        .await
        .unwrap();
    assert_eq!(check.status(), 200);

    let scoped_out = a
        .client
        .post(format!("{}/admin/keys/rotate", a.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(scoped_out.status(), 401);
}

#[test]
fn the_cli_rotates_the_ring_in_redis() {
    let redis = RedisServer::shared();
    let settings = test_settings(&redis);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let app = runtime.block_on(spawn_app_with(settings.clone()));
    let before = runtime.block_on(app.jwks());
    let out = tessera_binary()
        .args(["keys", "rotate"])
        .env("TESSERA_REDIS_URL", &settings.redis_url)
        .env("TESSERA_KEY_PREFIX", &settings.key_prefix)
        .env("TESSERA_KEYS_DIR", &settings.keys_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(printed.lines().count(), 2, "{printed}");
    assert!(printed.contains(before["keys"][0]["kid"].as_str().unwrap()));
    drop(app);
}
