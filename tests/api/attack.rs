//! Regressions from the outside attack (issue 8): each test reproduces a finding that held
//! against the earlier build and must never hold again.

use crate::helpers::*;
use crate::users::*;
use reqwest::Response;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// Rewrites the users file atomically, with a distinct mtime, as config management would.
fn edit_users_file(path: &Path, edit: impl FnOnce(String) -> String) {
    std::thread::sleep(Duration::from_millis(1100));
    let text = std::fs::read_to_string(path).unwrap();
    let staged = path.with_extension("staged");
    std::fs::write(&staged, edit(text)).unwrap();
    std::fs::rename(&staged, path).unwrap();
}

/// Removes alice's entry from the users file (written in place, as an operator would while
/// no node runs); returns the file as it was.
fn remove_alice(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let start = text.find("[[users]]\nid = \"u-alice\"").unwrap();
    let end = start + 1 + text[start + 1..].find("[[users]]").unwrap();
    std::fs::write(path, format!("{}{}", &text[..start], &text[end..])).unwrap();
    text
}

/// Disables alice in the users file text.
fn disable_alice(text: String) -> String {
    text.replacen(
        "username = \"alice\"",
        "username = \"alice\"\ndisabled = true",
        1,
    )
}

/// Polls `probe` until it answers `status` (or the deadline passes); true when it did.
async fn eventually<F, Fut>(status: u16, mut probe: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if probe().await == status {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A code for bob that is certainly wrong now (±1 step is accepted, so step +5 is not).
fn wrong_code() -> String {
    let right = [bob_code(-1), bob_code(0), bob_code(1)];
    (0..1_000_000)
        .map(|n| format!("{n:06}"))
        .find(|c| !right.contains(c))
        .unwrap()
}

// ---- 1. A missing fingerprint never means "trust what exists" ----

#[tokio::test]
async fn disabling_a_user_after_an_erasure_ends_their_new_session_and_its_tokens() {
    let (_redis, app) = app_with_users(|_| {}).await;
    let first = TestApp::cookie_of(&app.login("alice", ALICE_PW).await);
    let erased = app
        .client
        .delete(format!("{}/admin/users/u-alice", app.admin))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(erased.status(), 200);
    assert!(
        eventually(401, || async {
            app.get_session_with_cookie(&first).await.status().as_u16()
        })
        .await
    );

    // Erasure dropped the fingerprint; alice logs in again and gets tokens that work at once
    // (the erasure used to refuse her new tokens for ~16 minutes).
    let cookie = TestApp::cookie_of(&app.login("alice", ALICE_PW).await);
    let jwt = app.access_token_of(&cookie).await;
    assert_eq!(
        app.check_jwt(&jwt).await,
        200,
        "new tokens work right after an erasure"
    );

    edit_users_file(app.settings.users_file.as_ref().unwrap(), disable_alice);
    assert!(
        eventually(401, || async {
            app.get_session_with_cookie(&cookie).await.status().as_u16()
        })
        .await,
        "the disabled user's session ends"
    );
    assert_eq!(app.check_jwt(&jwt).await, 401, "and its access tokens die");
    assert_eq!(app.mint(&cookie, None).await.status(), 401);
    assert_eq!(
        error_code(app.login("alice", ALICE_PW).await).await.1,
        "account_disabled"
    );
}

#[tokio::test]
async fn a_password_change_ends_sessions_even_when_redis_lost_the_fingerprint() {
    let (redis, app) = app_with_users(|_| {}).await;
    let cookie = TestApp::cookie_of(&app.login("alice", ALICE_PW).await);
    let jwt = app.access_token_of(&cookie).await;
    // Redis loses the fingerprint key (partial data loss, an operator's DEL).
    let mut conn = redis.conn();
    let tag = tessera::session::UserId::parse("u-alice").unwrap().tag();
    let key = format!("{}:f:{{{tag}}}:u-alice", app.settings.key_prefix);
    let deleted: i64 = redis::Commands::del(&mut conn, &key).unwrap();
    assert_eq!(deleted, 1, "{key} existed");

    edit_users_file(app.settings.users_file.as_ref().unwrap(), |text| {
        let new_hash = tessera::authn::password::hash_password("a brand new passphrase");
        let start = text.find("$argon2id$").unwrap();
        let end = start + text[start..].find('"').unwrap();
        format!("{}{new_hash}{}", &text[..start], &text[end..])
    });
    assert!(
        eventually(401, || async {
            app.get_session_with_cookie(&cookie).await.status().as_u16()
        })
        .await,
        "a session nobody can vouch for ends when the entry changes"
    );
    assert!(
        eventually(401, || async { app.check_jwt(&jwt).await }).await,
        "and so do its tokens"
    );
}

#[tokio::test]
async fn a_disabled_user_is_refused_even_if_redis_forgot_to_revoke() {
    let (redis, app) = app_with_users(|_| {}).await;
    let cookie = TestApp::cookie_of(&app.login("alice", ALICE_PW).await);
    let jwt = app.access_token_of(&cookie).await;
    // Simulate a Redis that lost the revocation: the fingerprint already says "disabled" (as if
    // written before a restore), so the reload sees no change and revokes nothing.
    edit_users_file(app.settings.users_file.as_ref().unwrap(), disable_alice);
    let disabled_fp = tessera::authn::Directory::load(app.settings.users_file.as_ref().unwrap())
        .unwrap()
        .by_id("u-alice")
        .unwrap()
        .fingerprint
        .clone();
    let mut conn = redis.conn();
    let tag = tessera::session::UserId::parse("u-alice").unwrap().tag();
    let _: () = redis::Commands::set(
        &mut conn,
        format!("{}:f:{{{tag}}}:u-alice", app.settings.key_prefix),
        &disabled_fp,
    )
    .unwrap();
    // Whatever Redis remembers, the node's users file has the last word.
    assert!(
        eventually(401, || async {
            app.get_session_with_cookie(&cookie).await.status().as_u16()
        })
        .await
    );
    assert!(eventually(401, || async { app.check_jwt(&jwt).await }).await);
}

#[tokio::test]
async fn a_user_removed_while_no_node_ran_loses_their_sessions_when_the_next_node_starts() {
    let redis = RedisServer::start();
    let mut settings = test_settings(&redis);
    settings.users_file = Some(write_users_file());
    let first = spawn_app_with(settings.clone()).await;
    let cookie = TestApp::cookie_of(&first.login("alice", ALICE_PW).await);
    drop(first); // every node is down while the operator edits the file
    let path = settings.users_file.clone().unwrap();
    remove_alice(&path);
    let next = spawn_app_with(settings).await;
    assert_eq!(next.get_session_with_cookie(&cookie).await.status(), 401);
}

#[tokio::test]
async fn the_admin_api_cannot_start_a_session_for_a_disabled_user() {
    let (_redis, app) = app_with_users(|_| {}).await;
    let response = app
        .admin_post("/admin/sessions", &json!({"user_id": "u-carol"}))
        .await;
    assert_eq!(error_code(response).await, (403, "account_disabled".into()));
}

// ---- 2. Refresh-token reuse needs a genuine earlier secret ----

#[tokio::test]
async fn a_made_up_refresh_secret_for_a_public_session_id_changes_nothing() {
    let (_redis, app) = app_with_users(|_| {}).await;
    let login = app.native_login().await;
    let refresh = login["refresh_token"].as_str().unwrap().to_owned();
    // The session id is public (the `sid` claim of every access token).
    let claims = jwt_part(login["access_token"].as_str().unwrap(), 1);
    let sid = claims["sid"].as_str().unwrap();
    for forged in [
        format!("tsr_r_{sid}.{}", "A".repeat(43)),
        format!("tsr_r_{sid}.{}", "Z9_-".repeat(11).split_at(43).0),
    ] {
        assert_eq!(
            error_code(app.refresh(&forged).await).await,
            (401, "invalid_refresh_token".into())
        );
        assert_eq!(
            app.revoke_token(&forged).await.status(),
            200,
            "RFC 7009: 200 regardless"
        );
    }
    // The owner's session is untouched and no false reuse was recorded.
    assert_eq!(app.refresh(&refresh).await.status(), 200);
    let events = app.audit_events("user_id=u-alice").await;
    assert!(!events.iter().any(|e| e["event"] == "refresh_token_reused"));
}

#[tokio::test]
async fn a_genuine_refresh_token_three_generations_old_is_still_caught_as_reuse() {
    let (_redis, app) = app_with_users(|s| s.refresh_grace_secs = 0).await;
    let login = app.native_login().await;
    let mut chain = vec![login["refresh_token"].as_str().unwrap().to_owned()];
    for _ in 0..3 {
        let next: Value = app
            .refresh(chain.last().unwrap())
            .await
            .json()
            .await
            .unwrap();
        chain.push(next["refresh_token"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        error_code(app.refresh(&chain[0]).await).await,
        (401, "refresh_token_reused".into())
    );
    assert_eq!(
        error_code(app.refresh(&chain[3]).await).await.1,
        "invalid_refresh_token",
        "the family ended"
    );
}

// ---- 3. Second-factor guessing is slowed per user, whatever the password does ----

#[tokio::test]
async fn wrong_totp_codes_count_per_user_across_tickets_and_networks_and_a_password_never_resets_them(
) {
    let (_redis, app) = app_with_users(|_| {}).await;
    let wrong = wrong_code();
    for (i, ip) in ["198.51.100.1", "198.51.101.1", "198.51.102.1"]
        .iter()
        .enumerate()
    {
        let first = app.mfa_ticket(ip, "bob", BOB_PW).await;
        let ticket = &first;
        let answer = app.mfa_from(ip, ticket, &wrong).await;
        assert_eq!(error_code(answer).await.0, 401, "free guess {i}");
    }
    // A fourth guess, from yet another network with a fresh ticket after a correct password:
    // delayed, and the delay is announced.
    let ticket = app.mfa_ticket("203.0.113.50", "bob", BOB_PW).await;
    let delayed = app.mfa_from("203.0.113.50", &ticket, &wrong).await;
    assert_eq!(delayed.status(), 429);
    assert!(delayed.headers().contains_key("retry-after"));
    // Even the right code waits its turn: a delay that checked the code first would be an oracle.
    let right = app.mfa_from("203.0.113.50", &ticket, &bob_code(0)).await;
    assert_eq!(right.status(), 429);
    let events = app.audit_events("user_id=u-bob").await;
    assert!(events.iter().any(|e| e["event"] == "rate_limited"
        && e["reason"].as_str().unwrap_or("").contains("second factor")));
}

// ---- 4. Native clients can end their own session ----

#[tokio::test]
async fn a_native_client_revokes_its_refresh_token_and_its_access_tokens_die_at_once() {
    let (_redis, app) = app_with_users(|_| {}).await;
    let login = app.native_login().await;
    let refresh = login["refresh_token"].as_str().unwrap();
    let jwt = login["access_token"].as_str().unwrap();
    assert_eq!(app.check_jwt(jwt).await, 200);
    let revoked = app.revoke_token(refresh).await;
    assert_eq!(revoked.status(), 200);
    assert_eq!(
        error_code(app.refresh(refresh).await).await.1,
        "invalid_refresh_token"
    );
    assert!(eventually(401, || async { app.check_jwt(jwt).await }).await);
    let events = app.audit_events("user_id=u-alice").await;
    assert!(events.iter().any(|e| e["event"] == "session_revoked"));
}

#[tokio::test]
async fn a_native_client_logs_out_with_its_access_token() {
    let (_redis, app) = app_with_users(|_| {}).await;
    let login = app.native_login().await;
    let jwt = login["access_token"].as_str().unwrap();
    let out = app
        .client
        .post(format!("{}/v1/logout", app.public))
        .bearer_auth(jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 200);
    let refresh = login["refresh_token"].as_str().unwrap();
    assert_eq!(
        error_code(app.refresh(refresh).await).await.1,
        "invalid_refresh_token"
    );
    assert!(eventually(401, || async { app.check_jwt(jwt).await }).await);
    // A second logout with the same (now revoked) token is a 401, not a 200.
    let again = app
        .client
        .post(format!("{}/v1/logout", app.public))
        .bearer_auth(jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 401);
}

#[tokio::test]
async fn under_the_reject_policy_a_native_client_frees_its_own_slot() {
    let (_redis, app) = app_with_users(|s| {
        s.max_sessions_per_user = 1;
        s.on_session_limit = tessera::session::policy::OnLimit::Reject;
    })
    .await;
    let login = app.native_login().await;
    let blocked = app.login("alice", ALICE_PW).await;
    assert_eq!(error_code(blocked).await.1, "session_limit_reached");
    app.revoke_token(login["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(app.login("alice", ALICE_PW).await.status(), 200);
}

// ---- 5. The per-username delay is a slowdown, never a lockout ----

#[tokio::test]
async fn an_attacker_timing_guesses_to_each_delay_cannot_keep_the_victim_out() {
    let (_redis, app) = app_with_users(|s| s.login_max_delay_secs = 2).await;
    let attacker = "192.0.2.66";
    let victim = "198.51.100.23";
    let deadline = Instant::now() + Duration::from_secs(6);
    let mut victim_logins = 0;
    let mut attacker_refused = 0;
    while Instant::now() < deadline {
        // The attacker fires a wrong password the moment each delay expires.
        let guess = app.login_from(attacker, "alice", "wrong guess").await;
        if guess.status() == 429 {
            attacker_refused += 1;
        }
        // The victim, who honours Retry-After, logs in between the attacker's guesses.
        let mine = app.login_from(victim, "alice", ALICE_PW).await;
        assert_eq!(mine.status(), 200, "the victim is never delayed");
        victim_logins += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(attacker_refused > 0, "the attacker was slowed");
    assert!(victim_logins >= 3);
}

#[tokio::test]
async fn a_victim_who_mistyped_once_waits_at_most_the_cap_not_forever() {
    let (_redis, app) = app_with_users(|s| {
        s.login_max_delay_secs = 2;
        s.login_global_free_failures = 3;
        s.login_success_limit = 1000;
    })
    .await;
    let victim = "198.51.100.23";
    // The attacker pushes alice's global count past its threshold from many networks.
    for n in 0..8 {
        app.login_from(&format!("192.0.{n}.9"), "alice", "guess")
            .await;
    }
    // The victim mistypes once, so the global count now applies to their network too.
    app.login_from(victim, "alice", "typo").await;
    let started = Instant::now();
    let mut attacker_n = 10;
    loop {
        // The attacker keeps failing from fresh networks all the while.
        attacker_n += 1;
        app.login_from(&format!("192.0.{attacker_n}.9"), "alice", "guess")
            .await;
        let mine = app.login_from(victim, "alice", ALICE_PW).await;
        if mine.status() == 200 {
            break;
        }
        assert_eq!(mine.status(), 429);
        let wait: u64 = mine.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(wait <= 2, "never more than the cap: {wait}");
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "the victim got in"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

// ---- 7. Contract breaks ----

#[tokio::test]
async fn revoke_all_refuses_bad_bodies_and_changes_nothing() {
    let (_redis, app) = app_with_users(|_| {}).await;
    let session = app.create_session("alice").await;
    let url = format!("{}/admin/users/alice/revoke-all", app.admin);
    let big = format!("{{\"reason\": \"{}\"}}", "x".repeat(128 * 1024));
    let cases: Vec<(&str, String, u16)> = vec![
        ("application/json", "{".into(), 400),
        ("application/json", "[\"why\"]".into(), 400),
        (
            "application/json",
            "{\"reason\": \"x\", \"extra\": 1}".into(),
            400,
        ),
        ("text/plain", "{\"reason\": \"x\"}".into(), 415),
        ("application/json", big, 413),
    ];
    for (content_type, body, status) in cases {
        let response = app
            .client
            .post(&url)
            .bearer_auth(ADMIN_KEY)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(response).await.0, status, "{content_type}");
        assert_eq!(
            app.get_session_with_bearer(&session.token).await.status(),
            200
        );
    }
}

#[tokio::test]
async fn oversized_bodies_and_positional_arrays_get_json_errors() {
    let (_redis, app) = app_with_users(|_| {}).await;
    let session = app.create_session("alice").await;
    let huge = app
        .client
        .post(format!("{}/v1/token", app.public))
        .bearer_auth(&session.token)
        .header("content-type", "application/json")
        .body(format!("{{\"audience\": \"{}\"}}", "a".repeat(200 * 1024)))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(huge).await, (413, "payload_too_large".into()));
    let array = app
        .client
        .post(format!("{}/v1/login", app.public))
        .json(&json!(["alice", ALICE_PW]))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(array).await, (400, "invalid_json".into()));
}

#[tokio::test]
async fn a_sibling_apps_non_ascii_cookie_never_breaks_tessera() {
    let (_redis, app) = app_with_users(|_| {}).await;
    let session = app.create_session("alice").await;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "cookie",
        reqwest::header::HeaderValue::from_bytes(
            format!("lang=café; __Host-tessera={}; theme=🌙", session.token).as_bytes(),
        )
        .unwrap(),
    );
    let response = app
        .client
        .get(format!("{}/v1/session", app.public))
        .headers(headers)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let only_theirs = app
        .client
        .get(format!("{}/v1/session", app.public))
        .header(
            "cookie",
            reqwest::header::HeaderValue::from_bytes("lang=café".as_bytes()).unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(only_theirs).await, (401, "no_session".into()));
}

#[tokio::test]
async fn a_key_without_the_scope_gets_403_before_its_body_is_judged() {
    let redis = RedisServer::start();
    let mut settings = test_settings(&redis);
    let audit_only = "audit-only-key-0123456789abcdef0123456789";
    settings.admin_keys = vec![tessera::config::AdminKeyConfig {
        name: "auditor".into(),
        sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
            audit_only.as_bytes(),
        )),
        scopes: vec![tessera::scope::Scope::parse("audit").unwrap()],
        expires_at: None,
    }];
    let app = spawn_app_with(settings).await;
    for (path, body) in [
        ("/admin/sessions", "{not json"),
        ("/admin/users/alice/revoke-all", "[1,2]"),
        ("/admin/introspect", "%%%"),
    ] {
        let response = app
            .client
            .post(format!("{}{path}", app.admin))
            .bearer_auth(audit_only)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_code(response).await,
            (403, "insufficient_scope".into()),
            "{path}"
        );
    }
}

// ---- Second round: what an attack on the first fixes found ----

/// The error codes of many responses, in order.
async fn codes(responses: Vec<Response>) -> Vec<String> {
    let mut out = Vec::new();
    for r in responses {
        out.push(error_code(r).await.1);
    }
    out
}

#[tokio::test]
async fn simultaneous_code_guesses_cannot_slip_past_the_second_factor_delay() {
    let (_redis, app) = app_with_users(|_| {}).await;
    let mut tickets = Vec::new();
    for n in 0..10 {
        let ip = format!("198.51.{n}.1");
        let first = app.mfa_ticket(&ip, "bob", BOB_PW).await;
        tickets.push((ip, first));
    }
    let wrong = wrong_code();
    let guesses = (0..40).map(|i| {
        let (ip, ticket) = &tickets[i % tickets.len()];
        app.mfa_from(ip, ticket, &wrong)
    });
    let answers = codes(futures_util::future::join_all(guesses).await).await;
    let checked = answers.iter().filter(|c| *c == "invalid_totp").count();
    assert!(
        checked <= 3,
        "only the free guesses are checked: {answers:?}"
    );
    assert!(answers.iter().any(|c| c == "rate_limited"), "{answers:?}");
}

#[tokio::test]
async fn simultaneous_password_guesses_cannot_slip_past_the_network_delay() {
    let (_redis, app) = app_with_users(|s| s.argon2_queue_ms = 10_000).await;
    let ips: Vec<String> = (0..24).map(|n| format!("10.50.1.{n}")).collect();
    let guesses = ips.iter().map(|ip| app.login_from(ip, "alice", "guess"));
    let answers = codes(futures_util::future::join_all(guesses).await).await;
    let checked = answers
        .iter()
        .filter(|c| *c == "invalid_credentials")
        .count();
    assert!(
        checked <= 5,
        "only the free guesses are checked: {answers:?}"
    );
}

#[tokio::test]
async fn a_stolen_cookie_guessing_step_up_codes_does_not_delay_the_owners_login() {
    let (_redis, app) = app_with_users(|_| {}).await;
    let first = app.mfa_ticket("198.51.100.1", "bob", BOB_PW).await;
    let cookie_holder = app.mfa_from("198.51.100.1", &first, &bob_code(0)).await;
    let stolen = TestApp::cookie_of(&cookie_holder);
    let wrong = wrong_code();
    for _ in 0..6 {
        app.step_up_bearer(&stolen, json!({"totp": wrong})).await;
    }
    let delayed = app.step_up_bearer(&stolen, json!({"totp": wrong})).await;
    assert_eq!(
        error_code(delayed).await.0,
        429,
        "step-up guessing is delayed"
    );
    // The owner, elsewhere, logs in with the password and the next code: not delayed.
    let first = app.mfa_ticket("203.0.113.9", "bob", BOB_PW).await;
    let owner = app.mfa_from("203.0.113.9", &first, &bob_code(1)).await;
    assert_eq!(owner.status(), 200);
}

#[tokio::test]
async fn a_password_change_lifts_the_code_delay_and_kills_old_tickets() {
    let (_redis, app) = app_with_users(|_| {}).await;
    let wrong = wrong_code();
    let old_ticket = app.mfa_ticket("198.51.100.1", "bob", BOB_PW).await;
    for _ in 0..4 {
        app.mfa_from("198.51.100.1", &old_ticket, &wrong).await;
    }
    let fresh = app.mfa_ticket("198.51.100.1", "bob", BOB_PW).await;
    let delayed = app.mfa_from("198.51.100.1", &fresh, &bob_code(0)).await;
    assert_eq!(error_code(delayed).await.0, 429);

    let new_password = "bob's brand new passphrase";
    edit_users_file(app.settings.users_file.as_ref().unwrap(), |text| {
        let new_hash = tessera::authn::password::hash_password(new_password);
        let bob = text.find("id = \"u-bob\"").unwrap();
        let start = bob + text[bob..].find("$argon2id$").unwrap();
        let end = start + text[start..].find('"').unwrap();
        format!("{}{new_hash}{}", &text[..start], &text[end..])
    });
    // A ticket issued while the new file is installed but before the version moved is refused
    // (the login raced the change and loses); the next one works.
    let deadline = Instant::now() + Duration::from_secs(10);
    let done = loop {
        let r = app.login_from("198.51.100.1", "bob", new_password).await;
        if r.status() == 200 {
            let body: Value = r.json().await.unwrap();
            let ticket = body["mfa_token"].as_str().unwrap().to_owned();
            let answer = app.mfa_from("198.51.100.1", &ticket, &bob_code(1)).await;
            if answer.status() == 200 {
                break answer;
            }
            assert_eq!(error_code(answer).await.1, "invalid_mfa_token");
        }
        assert!(
            Instant::now() < deadline,
            "the new password and the code work"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // A ticket from before the change cannot guess (it would refill the count).
    assert_eq!(
        error_code(app.mfa_from("198.51.100.1", &old_ticket, &wrong).await)
            .await
            .1,
        "invalid_mfa_token"
    );
    assert_eq!(done.status(), 200, "the change started the count afresh");
}

#[tokio::test]
async fn revoke_all_ends_sessions_even_when_the_user_index_is_gone() {
    let (redis, app) = app_with_users(|_| {}).await;
    let cookie = TestApp::cookie_of(&app.login("alice", ALICE_PW).await);
    let native = app.native_login().await;
    let tag = tessera::session::UserId::parse("u-alice").unwrap().tag();
    let index = format!("{}:u:{{{tag}}}:u-alice", app.settings.key_prefix);
    let deleted: i64 = redis::Commands::del(&mut redis.conn(), &index).unwrap();
    assert_eq!(deleted, 1);
    let done: Value = app
        .admin_post("/admin/users/u-alice/revoke-all", &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(done["revoked"], 0, "the index listed nothing");
    // The pushed revocation reaches the node's memory at once (the follower), and the session
    // dies on its next use.
    assert!(
        eventually(401, || async {
            app.get_session_with_cookie(&cookie).await.status().as_u16()
        })
        .await
    );
    assert_eq!(app.mint(&cookie, None).await.status(), 401);
    let refresh = native["refresh_token"].as_str().unwrap();
    assert_eq!(
        error_code(app.refresh(refresh).await).await.1,
        "invalid_refresh_token"
    );
    let listed: Value = app
        .admin_get("/admin/users/u-alice/sessions")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["sessions"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn a_removed_user_is_refused_even_when_redis_forgot_the_users_file() {
    let redis = RedisServer::start();
    let mut settings = test_settings(&redis);
    settings.users_file = Some(write_users_file());
    let first = spawn_app_with(settings.clone()).await;
    let cookie = TestApp::cookie_of(&first.login("alice", ALICE_PW).await);
    drop(first);
    let forgot: i64 =
        redis::Commands::del(&mut redis.conn(), format!("{}:users", settings.key_prefix)).unwrap();
    assert_eq!(forgot, 1);
    let path = settings.users_file.clone().unwrap();
    remove_alice(&path);
    let next = spawn_app_with(settings).await;
    assert_eq!(next.get_session_with_cookie(&cookie).await.status(), 401);
}

#[tokio::test]
async fn sessions_can_still_be_ended_while_redis_may_evict() {
    let (redis, app) =
        app_with_users_on(RedisServer::start(), |s| s.redis_check_interval_secs = 1).await;
    let a = app.create_session("alice").await;
    let b = app.create_session("alice").await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("allkeys-lru")
        .query(&mut redis.conn())
        .unwrap();
    assert!(
        eventually(503, || async {
            app.get_session_with_bearer(&a.token)
                .await
                .status()
                .as_u16()
        })
        .await,
        "session work is refused"
    );
    let out = app
        .client
        .post(format!("{}/v1/logout", app.public))
        .bearer_auth(&a.token)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 200, "logout still works");
    let all = app
        .admin_post("/admin/users/alice/revoke-all", &json!({}))
        .await;
    assert_eq!(all.status(), 200, "revoke-all still works");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("noeviction")
        .query(&mut redis.conn())
        .unwrap();
    assert!(
        eventually(401, || async {
            app.get_session_with_bearer(&b.token)
                .await
                .status()
                .as_u16()
        })
        .await
    );
    assert_eq!(app.get_session_with_bearer(&a.token).await.status(), 401);
}

#[tokio::test]
async fn erasing_a_user_does_not_make_a_spent_code_usable_again() {
    let (_redis, app) = app_with_users(|_| {}).await;
    let code = bob_code(0);
    let first = app.mfa_ticket("198.51.100.1", "bob", BOB_PW).await;
    let done = app.mfa_from("198.51.100.1", &first, &code).await;
    assert_eq!(done.status(), 200);
    let erased = app
        .client
        .delete(format!("{}/admin/users/u-bob", app.admin))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(erased.status(), 200);
    let again = app.mfa_ticket("198.51.100.1", "bob", BOB_PW).await;
    let replay = app.mfa_from("198.51.100.1", &again, &code).await;
    assert_eq!(error_code(replay).await.1, "totp_replayed");
}

// ---- Third round: what an attack on the second fixes found ----

#[tokio::test]
async fn a_right_password_refused_as_busy_is_never_counted_as_a_failure() {
    let (_redis, app) = app_with_users(|s| {
        s.argon2_concurrency = 1;
        s.argon2_queue_ms = 1;
        s.login_global_free_failures = 1;
        s.login_ip_limit = 1000;
    })
    .await;
    // Failures elsewhere push alice's global count past its threshold.
    for n in 0..3 {
        app.login_from(&format!("192.0.{n}.9"), "alice", "guess")
            .await;
    }
    let victim = "10.78.0.1";
    let mut saw_busy = false;
    for _ in 0..20 {
        let ips: Vec<String> = (0..24).map(|n| format!("10.{n}.1.1")).collect();
        let flood = ips.iter().map(|ip| app.login_from(ip, "nobody", "x"));
        let (answers, mine) = tokio::join!(
            futures_util::future::join_all(flood),
            app.login_from(victim, "alice", ALICE_PW)
        );
        drop(answers);
        if mine.status() == 503 {
            saw_busy = true;
            break;
        }
        assert_eq!(mine.status(), 200);
    }
    assert!(saw_busy, "the hasher was saturated at least once");
    let again = app.login_from(victim, "alice", ALICE_PW).await;
    assert_eq!(
        again.status(),
        200,
        "the busy attempt did not count against her"
    );
}

#[tokio::test]
async fn erasing_a_user_ends_sessions_the_index_lost() {
    let (redis, app) = app_with_users(|_| {}).await;
    let orphan = app.create_session("ext-orphan").await;
    let tag = tessera::session::UserId::parse("ext-orphan").unwrap().tag();
    let index = format!("{}:u:{{{tag}}}:ext-orphan", app.settings.key_prefix);
    let _: i64 = redis::Commands::del(&mut redis.conn(), &index).unwrap();
    let erased = app
        .client
        .delete(format!("{}/admin/users/ext-orphan", app.admin))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(erased.status(), 200);
    assert!(
        eventually(401, || async {
            app.get_session_with_bearer(&orphan.token)
                .await
                .status()
                .as_u16()
        })
        .await
    );
    assert_eq!(app.mint(&orphan.token, None).await.status(), 401);
}

#[tokio::test]
async fn after_the_pushed_revocation_expires_the_renewal_still_ends_a_session_the_index_lost() {
    let (redis, app) = app_with_users(|_| {}).await;
    let orphan = app.create_session("ext-late").await;
    let tag = tessera::session::UserId::parse("ext-late").unwrap().tag();
    let index = format!("{}:u:{{{tag}}}:ext-late", app.settings.key_prefix);
    let _: i64 = redis::Commands::del(&mut redis.conn(), &index).unwrap();
    let done = app
        .admin_post("/admin/users/ext-late/revoke-all", &json!({}))
        .await;
    assert_eq!(done.status(), 200);
    // Long after: every node has forgotten the pushed minimum (it lives as long as a token
    // can), so only Redis remembers. The session's first use since then must renew, and the
    // renewal compares its stamp with the user's version in Redis.
    app.clock.advance(Duration::from_secs(17 * 60));
    assert_eq!(
        app.get_session_with_bearer(&orphan.token).await.status(),
        401
    );
    assert_eq!(app.mint(&orphan.token, None).await.status(), 401);
}

#[tokio::test]
async fn a_lost_fingerprint_and_index_end_unlisted_sessions_at_the_next_login() {
    let (redis, app) = app_with_users(|_| {}).await;
    let first = TestApp::cookie_of(&app.login("alice", ALICE_PW).await);
    let tag = tessera::session::UserId::parse("u-alice").unwrap().tag();
    let prefix = &app.settings.key_prefix;
    let _: i64 = redis::Commands::del(
        &mut redis.conn(),
        &[
            format!("{prefix}:u:{{{tag}}}:u-alice"),
            format!("{prefix}:f:{{{tag}}}:u-alice"),
        ],
    )
    .unwrap();
    let second = TestApp::cookie_of(&app.login("alice", ALICE_PW).await);
    assert_eq!(app.get_session_with_cookie(&first).await.status(), 401);
    assert_eq!(app.get_session_with_cookie(&second).await.status(), 200);
}

#[tokio::test]
async fn logging_out_everywhere_does_not_reset_the_code_delay() {
    let (_redis, app) = app_with_users(|_| {}).await;
    let first = app.mfa_ticket("198.51.100.1", "bob", BOB_PW).await;
    let session = TestApp::cookie_of(&app.mfa_from("198.51.100.1", &first, &bob_code(0)).await);
    let wrong = wrong_code();
    for _ in 0..3 {
        let t = app.mfa_ticket("203.0.113.5", "bob", BOB_PW).await;
        app.mfa_from("203.0.113.5", &t, &wrong).await;
    }
    let out = app.delete_bearer("/v1/sessions?scope=all", &session).await;
    assert_eq!(out.status(), 200);
    let t = app.mfa_ticket("203.0.113.5", "bob", BOB_PW).await;
    let next = app.mfa_from("203.0.113.5", &t, &wrong).await;
    assert_eq!(
        error_code(next).await.0,
        429,
        "the fourth wrong code still waits"
    );
}

#[tokio::test]
async fn a_session_refused_for_a_removed_user_stays_dead_when_the_user_returns() {
    let redis = RedisServer::start();
    let mut settings = test_settings(&redis);
    settings.users_file = Some(write_users_file());
    settings.users_reload_secs = 1;
    let first = spawn_app_with(settings.clone()).await;
    let cookie = TestApp::cookie_of(&first.login("alice", ALICE_PW).await);
    drop(first);
    let path = settings.users_file.clone().unwrap();
    let original = remove_alice(&path);
    let _: i64 =
        redis::Commands::del(&mut redis.conn(), format!("{}:users", settings.key_prefix)).unwrap();
    let next = spawn_app_with(settings).await;
    assert_eq!(next.get_session_with_cookie(&cookie).await.status(), 401);
    // The entry comes back unchanged: the session was ended, not merely refused.
    edit_users_file(&path, |_| original.clone());
    assert!(
        eventually(200, || async {
            next.login("alice", ALICE_PW).await.status().as_u16()
        })
        .await,
        "alice is back in the file"
    );
    assert_eq!(next.get_session_with_cookie(&cookie).await.status(), 401);
}

// ---- Fourth round ----

/// Redis command counts by name (`INFO commandstats`).
fn command_counts(redis: &RedisServer) -> std::collections::BTreeMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut redis.conn())
        .unwrap();
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn a_wrong_password_costs_the_same_redis_work_for_known_and_unknown_usernames() {
    let (redis, app) = app_with_users_on(RedisServer::start(), |_| {}).await;
    // The audit trail is written after the answer (detached); leave it out of the comparison.
    let answered_with = |before: &std::collections::BTreeMap<String, u64>,
                         after: &std::collections::BTreeMap<String, u64>| {
        after
            .iter()
            .filter(|(name, _)| {
                !matches!(
                    name.as_str(),
                    "xadd" | "lpush" | "ltrim" | "expire" | "multi" | "exec" | "info"
                )
            })
            .map(|(name, n)| (name.clone(), n - before.get(name).copied().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    // Warm both paths once (script loading), then measure.
    app.login_from("198.51.100.1", "alice", "wrong").await;
    app.login_from("198.51.101.1", "mallory", "wrong").await;
    let before = command_counts(&redis);
    assert_eq!(
        app.login_from("198.51.102.1", "alice", "wrong")
            .await
            .status(),
        401
    );
    let known = answered_with(&before, &command_counts(&redis));
    let before = command_counts(&redis);
    assert_eq!(
        app.login_from("198.51.103.1", "mallory", "wrong")
            .await
            .status(),
        401
    );
    let unknown = answered_with(&before, &command_counts(&redis));
    assert_eq!(known, unknown);
}

#[tokio::test]
async fn a_node_with_a_fast_clock_cannot_stretch_a_lost_session_past_the_pushed_revocation() {
    let (redis, app) = app_with_users(|_| {}).await;
    let orphan = app.create_session("ext-skew").await;
    let tag = tessera::session::UserId::parse("ext-skew").unwrap().tag();
    let prefix = app.settings.key_prefix.clone();
    let _: i64 =
        redis::Commands::del(&mut redis.conn(), format!("{prefix}:u:{{{tag}}}:ext-skew")).unwrap();
    let done = app
        .admin_post("/admin/users/ext-skew/revoke-all", &json!({}))
        .await;
    assert_eq!(done.status(), 200);
    // A node whose clock runs 5 minutes fast last wrote this session's `ls`.
    let sid = orphan.session["id"].as_str().unwrap();
    let key = format!("{prefix}:s:{{{tag}}}:{sid}");
    let raw: Vec<u8> = redis::Commands::get(&mut redis.conn(), &key).unwrap();
    let mut record = tessera::store::record::StoredSession::from_bytes(&raw).unwrap();
    record.last_seen_at += 5 * 60_000;
    let pttl: i64 = redis::Commands::pttl(&mut redis.conn(), &key).unwrap();
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(record.to_bytes())
        .arg("PX")
        .arg(pttl)
        .query(&mut redis.conn())
        .unwrap();
    // Past the pushed revocation's lifetime: the renewal is due all the same (a margin of half
    // that lifetime covers the fast clock), and it finds the stale stamp.
    app.clock.advance(Duration::from_secs(16 * 60));
    // (The margin itself is unit-tested in `session::service_tests`; here the node may also be
    // catching it because its feed looks stale after the jump. Either way: refused.)
    assert_eq!(
        app.get_session_with_bearer(&orphan.token).await.status(),
        401
    );
    assert_eq!(app.mint(&orphan.token, None).await.status(), 401);
}

#[tokio::test]
async fn while_the_feed_is_stale_every_use_is_checked_in_redis() {
    let (redis, app) = app_with_users(|_| {}).await;
    let orphan = app.create_session("ext-stale").await;
    let tag = tessera::session::UserId::parse("ext-stale").unwrap().tag();
    let prefix = app.settings.key_prefix.clone();
    let _: i64 =
        redis::Commands::del(&mut redis.conn(), format!("{prefix}:u:{{{tag}}}:ext-stale")).unwrap();
    // The version moves in Redis, and nothing is pushed (as if the feed had missed it).
    let now: (i64, i64) = redis::cmd("TIME").query(&mut redis.conn()).unwrap();
    let _: () = redis::Commands::set(
        &mut redis.conn(),
        format!("{prefix}:v:{{{tag}}}:ext-stale"),
        now.0 * 1000 + 60_000,
    )
    .unwrap();
    // While fresh, the session is served from one GET (the renewal is not due yet)…
    assert_eq!(
        app.get_session_with_bearer(&orphan.token).await.status(),
        200
    );
    // …but a node that has not heard its feed for a while checks every use in Redis.
    app.clock.advance(Duration::from_secs(30));
    assert_eq!(
        app.get_session_with_bearer(&orphan.token).await.status(),
        401
    );
}

/// Whatever a session key holds, the service answers as if there were no session there (401)
/// or lists around it, never a 500; and the user can still sign in.
#[tokio::test]
async fn a_corrupt_session_record_is_no_session_never_a_server_error() {
    let redis = RedisServer::shared();
    let app = spawn_app(&redis).await;
    let garbage: Vec<Vec<u8>> = vec![
        b"garbage".to_vec(),
        br#"{"u":"x""#.to_vec(),
        br#"{}"#.to_vec(),
        br#"[]"#.to_vec(),
        vec![0xc1],
        vec![0x80],
        vec![0x81, 0xa1, b'u', 0x01],
        vec![0, 0, 0],
        Vec::new(),
    ];
    for (i, value) in garbage.iter().enumerate() {
        let user = format!("corrupt-{i}");
        let created = app.create_session(&user).await;
        let sid = created.session["id"].as_str().unwrap();
        let tag = sid.split('_').nth(2).unwrap();
        let key = format!("{}:s:{{{tag}}}:{sid}", app.settings.key_prefix);
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(value.as_slice())
            .arg("KEEPTTL")
            .query(&mut redis.conn())
            .unwrap();
        let seen = app.get_session_with_bearer(&created.token).await.status();
        assert_eq!(seen, 401, "{value:?}");
        assert_eq!(
            app.get_session_with_cookie(&created.token).await.status(),
            401
        );
        let mint = app.mint(&created.token, None).await.status();
        assert_eq!(mint, 401, "{value:?}");
        let listed = app
            .admin_get(&format!("/admin/users/{user}/sessions"))
            .await;
        assert_eq!(listed.status(), 200);
        let listed: Value = listed.json().await.unwrap();
        assert_eq!(listed["sessions"], json!([]), "{value:?}");
        assert!(
            listed
                .get("unavailable_regions")
                .is_none_or(|r| r == &json!([])),
            "{listed}"
        );
        let again = app
            .admin_post(
                "/admin/sessions",
                &json!({ "user_id": user, "acr": "pwd", "amr": ["pwd"] }),
            )
            .await;
        assert_eq!(again.status(), 201, "{value:?}");
    }
}

#[tokio::test]
async fn a_user_agent_longer_than_the_stored_limit_is_not_an_anomaly() {
    let redis = RedisServer::shared();
    let mut settings = test_settings(&redis);
    settings.anomaly_policy = tessera::session::device::AnomalyPolicy::Revoke;
    let app = spawn_app_with(settings).await;
    let ua = format!(
        "Mozilla/5.0 (Linux; Android 14; wv) {} AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
        "x".repeat(240)
    );
    let token = app.session_from_agent("long-ua", &ua).await;
    for _ in 0..2 {
        let seen = app.get_session_as(&token, &ua).await;
        assert_eq!(seen.status(), 200, "the same browser, not an anomaly");
    }
}
