//! `/v1/sessions`: the user's devices and kill switches.

use crate::helpers::*;
use crate::users::*;
use serde_json::Value;

#[tokio::test]
async fn users_list_their_own_devices_with_the_current_one_marked() {
    let (_redis, app) = app_with_users(|_| {}).await;
    let a = TestApp::cookie_of(&app.login("alice", ALICE_PW).await);
    let b = TestApp::cookie_of(&app.login("alice", ALICE_PW).await);
    app.create_session("u-someone-else").await;
    let listed: Value = app
        .get_bearer("/v1/sessions", &a)
        .await
        .json()
        .await
        .unwrap();
    let sessions = listed["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    let current: Vec<_> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(
        current[0]["id"].as_str().unwrap(),
        a.trim_start_matches("tsr_s_").split('.').next().unwrap()
    );
    assert!(
        !listed.to_string().contains(b.rsplit('.').next().unwrap()),
        "no secrets in listings"
    );
}

#[tokio::test]
async fn another_users_session_id_is_a_404_and_changes_nothing() {
    let (_redis, app) = app_with_users(|_| {}).await;
    let alice = TestApp::cookie_of(&app.login("alice", ALICE_PW).await);
    let victim = app.create_session("u-bob").await;
    let id = victim.session["id"].as_str().unwrap();
    let response = app
        .delete_bearer(&format!("/v1/sessions/{id}"), &alice)
        .await;
    assert_eq!(error_code(response).await, (404, "not_found".into()));
    assert_eq!(
        app.get_session_with_bearer(&victim.token).await.status(),
        200
    );
}

#[tokio::test]
async fn ending_one_of_my_other_sessions_kills_it_at_once() {
    let (_redis, app) = app_with_users(|_| {}).await;
    let a = TestApp::cookie_of(&app.login("alice", ALICE_PW).await);
    let b = TestApp::cookie_of(&app.login("alice", ALICE_PW).await);
    let b_id = b
        .trim_start_matches("tsr_s_")
        .split('.')
        .next()
        .unwrap()
        .to_owned();
    let done: Value = app
        .delete_bearer(&format!("/v1/sessions/{b_id}"), &a)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(done["revoked"], 1);
    assert_eq!(app.get_session_with_bearer(&b).await.status(), 401);
    assert_eq!(app.get_session_with_bearer(&a).await.status(), 200);
}

#[tokio::test]
async fn scope_all_logs_out_everywhere_and_bumps_the_credential_version() {
    let (redis, app) = app_with_users(|_| {}).await;
    let a = TestApp::cookie_of(&app.login("alice", ALICE_PW).await);
    let b = TestApp::cookie_of(&app.login("alice", ALICE_PW).await);
    let before: Value = app.mint(&a, None).await.json().await.unwrap();
    let old_version = jwt_part(before["access_token"].as_str().unwrap(), 1)["ver"]
        .as_u64()
        .unwrap();
    let done: Value = app
        .delete_bearer("/v1/sessions?scope=all", &a)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(done["revoked"], 2);
    for token in [&a, &b] {
        assert_eq!(app.get_session_with_bearer(token).await.status(), 401);
    }
    let mut conn = redis.conn();
    let key = format!(
        "{}:v:{{{}}}:u-alice",
        app.settings.key_prefix,
        tessera::session::UserId::parse("u-alice").unwrap().tag()
    );
    let version: u64 = redis::Commands::get(&mut conn, key).unwrap();
    assert!(version > old_version, "{version} must pass {old_version}");
    // New logins carry the new version into their tokens.
    let c = TestApp::cookie_of(&app.login("alice", ALICE_PW).await);
    let minted: Value = app.mint(&c, None).await.json().await.unwrap();
    let claims = jwt_part(minted["access_token"].as_str().unwrap(), 1);
    assert_eq!(claims["ver"], version);
}

#[tokio::test]
async fn bad_scopes_are_refused() {
    let (_redis, app) = app_with_users(|_| {}).await;
    let a = TestApp::cookie_of(&app.login("alice", ALICE_PW).await);
    let response = app.delete_bearer("/v1/sessions?scope=everything", &a).await;
    assert_eq!(error_code(response).await.0, 400);
}
