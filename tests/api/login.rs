//! Tessera's own login, step-up, CSRF and the high-risk guard.

use crate::helpers::*;
use crate::users::*;
use serde_json::{json, Value};
use std::time::Duration;

const CHALLENGE_MFA_300: &str = r#"Bearer error="insufficient_user_authentication", error_description="A stronger or more recent authentication is required", acr_values="mfa", max_age="300""#;

/// bob (TOTP) logs in fully; returns his session token.
async fn bob_session(app: &TestApp) -> String {
    let first: Value = app.login("bob", BOB_PW).await.json().await.unwrap();
    let response = app
        .login_mfa(first["mfa_token"].as_str().unwrap(), &bob_code(0))
        .await;
    assert_eq!(response.status(), 200);
    TestApp::cookie_of(&response)
}

/// A session for bob with the admin role but only a password-level authentication.
async fn bob_pwd_admin_session(app: &TestApp) -> String {
    let response = app
        .admin_post(
            "/admin/sessions",
            &json!({"user_id": "u-bob", "acr": "pwd", "roles": ["admin"]}),
        )
        .await;
    let body: Value = response.json().await.unwrap();
    body["session_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_password_login_sets_a_host_cookie_and_returns_the_session() {
    let (_redis, app) = app_with_users(|_| {}).await;
    let response = app.login("alice", ALICE_PW).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let set = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    for part in [
        "__Host-tessera=tsr_s_",
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=",
    ] {
        assert!(set.contains(part), "{set} lacks {part}");
    }
    assert!(!set.contains("Domain"));
    let cookie = TestApp::cookie_of(&response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["session"]["user_id"], "u-alice");
    assert_eq!(body["session"]["acr"], "pwd");
    assert_eq!(body["session"]["amr"], json!(["pwd"]));
    assert_eq!(body["session"]["roles"], json!(["member"]));
    assert!(body["csrf_token"].is_string());
    assert!(
        !body.to_string().contains(&cookie),
        "the credential travels only in the cookie"
    );
    assert_eq!(app.get_session_with_cookie(&cookie).await.status(), 200);
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_identical_answers() {
    let (_redis, app) = app_with_users(|_| {}).await;
    let wrong = app.login("alice", "not the password").await;
    let unknown = app.login("mallory", "whatever").await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(unknown.status(), 401);
    assert_eq!(
        wrong.headers().get("www-authenticate"),
        unknown.headers().get("www-authenticate")
    );
    let (a, b) = (wrong.text().await.unwrap(), unknown.text().await.unwrap());
    assert_eq!(a, b);
    assert!(a.contains("invalid_credentials"));
}

#[tokio::test]
async fn totp_users_finish_with_a_single_use_mfa_token() {
    let (_redis, app) = app_with_users(|_| {}).await;
    let first = app.login("bob", BOB_PW).await;
    assert_eq!(first.status(), 200);
    assert!(
        first.headers().get("set-cookie").is_none(),
        "no session before the second factor"
    );
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["mfa_required"], true);
    let ticket = first["mfa_token"].as_str().unwrap();

    let (status, code) = error_code(app.login_mfa(ticket, "000000").await).await;
    assert_eq!((status, code.as_str()), (401, "invalid_totp"));

    let done = app.login_mfa(ticket, &bob_code(0)).await;
    assert_eq!(done.status(), 200);
    let body: Value = done.json().await.unwrap();
    assert_eq!(body["session"]["acr"], "mfa");
    assert_eq!(body["session"]["amr"], json!(["pwd", "otp"]));

    let again = app.login_mfa(ticket, &bob_code(1)).await;
    assert_eq!(error_code(again).await, (401, "invalid_mfa_token".into()));
}

#[tokio::test]
async fn a_totp_code_cannot_be_replayed() {
    let (_redis, app) = app_with_users(|_| {}).await;
    let code = bob_code(0);
    for attempt in 0..2 {
        let first: Value = app.login("bob", BOB_PW).await.json().await.unwrap();
        let response = app
            .login_mfa(first["mfa_token"].as_str().unwrap(), &code)
            .await;
        if attempt == 0 {
            assert_eq!(response.status(), 200);
        } else {
            assert_eq!(error_code(response).await, (401, "totp_replayed".into()));
        }
    }
}

#[tokio::test]
async fn a_disabled_user_cannot_log_in() {
    let (_redis, app) = app_with_users(|_| {}).await;
    assert_eq!(
        error_code(app.login("carol", "carol's password").await).await,
        (403, "account_disabled".into())
    );
    assert_eq!(
        error_code(app.login("carol", "wrong").await).await.0,
        401,
        "no hint without the password"
    );
}

/// Found by the attack on issue 13: a users file caught empty or half-written (an editor, a `>`
/// redirect) ended the sessions of every user it lacked, though it ended up unchanged.
#[tokio::test]
async fn a_users_file_caught_empty_or_half_written_ends_no_session() {
    use std::io::Write;
    let (_redis, app) = app_with_users(|_| {}).await;
    let alice = TestApp::cookie_of(&app.login("alice", ALICE_PW).await);
    let bob = bob_session(&app).await;
    let path = app.settings.users_file.clone().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let alive = |cookie: String| {
        let app = &app;
        async move { app.get_session_with_cookie(&cookie).await.status() }
    };

    // Written in two pieces, 0.4 s apart, ending byte for byte as it was.
    let cut = text.find("[[users]]\nid = \"u-bob\"").unwrap();
    {
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(&text.as_bytes()[..cut]).unwrap();
        file.flush().unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        file.write_all(&text.as_bytes()[cut..]).unwrap();
    }
    // Emptied, and left empty (a mistake): refused, the running users stay.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    std::fs::write(&path, "").unwrap();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(alive(alice.clone()).await, 200, "alice's session survived");
    assert_eq!(alive(bob.clone()).await, 200, "bob's session survived");
    assert_eq!(app.login("alice", ALICE_PW).await.status(), 200);
    std::fs::write(&path, &text).unwrap();
}

#[tokio::test]
async fn editing_the_users_file_ends_that_users_sessions() {
    let (_redis, app) = app_with_users(|_| {}).await;
    let alice = TestApp::cookie_of(&app.login("alice", ALICE_PW).await);
    let bob = bob_session(&app).await;
    let path = app.settings.users_file.clone().unwrap();
    // A new password for alice: only her line changes, bob's entry stays byte for byte.
    let text = std::fs::read_to_string(&path).unwrap();
    let alice_hash_line = text
        .lines()
        .find(|l| l.starts_with("password_hash"))
        .unwrap()
        .to_owned();
    let new_line = format!(
        "password_hash = \"{}\"",
        tessera::authn::password::hash_password("new password")
    );
    std::thread::sleep(Duration::from_millis(1100)); // a distinct mtime
                                                     // Replace the file atomically, as editors and config management do.
    let staged = path.with_extension("staged");
    std::fs::write(&staged, text.replacen(&alice_hash_line, &new_line, 1)).unwrap();
    std::fs::rename(&staged, &path).unwrap();

    let mut dead = false;
    for _ in 0..60 {
        if app.get_session_with_cookie(&alice).await.status() == 401 {
            dead = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(dead, "alice's session ended after her entry changed");
    let metrics = app.admin_get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.lines().any(
            |l| l.starts_with("tessera_sessions_revoked_total{reason=\"credentials_changed\"}")
        ),
        "the revocation is counted"
    );
    assert_eq!(
        app.get_session_with_cookie(&bob).await.status(),
        200,
        "bob is untouched"
    );
    assert_eq!(app.login("alice", ALICE_PW).await.status(), 401);
    assert_eq!(app.login("alice", "new password").await.status(), 200);
}

#[tokio::test]
async fn the_ip_limit_answers_429_with_retry_after_and_trusts_only_configured_proxies() {
    let (_redis, app) = app_with_users(|s| {
        s.login_ip_limit = 3;
        s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let attempt = |ip: &'static str| {
        app.client
            .post(format!("{}/v1/login", app.public))
            .header("x-forwarded-for", ip)
            .json(&json!({"username": "nobody", "password": "x"}))
            .send()
    };
    for _ in 0..3 {
        assert_eq!(attempt("198.51.100.1").await.unwrap().status(), 401);
    }
    let limited = attempt("198.51.100.1").await.unwrap();
    assert!(
        limited.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert_eq!(error_code(limited).await, (429, "rate_limited".into()));
    // Another client behind the same trusted proxy is unaffected.
    assert_eq!(attempt("198.51.100.2").await.unwrap().status(), 401);
}

#[tokio::test]
async fn repeated_failures_for_one_username_escalate_delays_without_locking_out() {
    let (_redis, app) = app_with_users(|s| {
        s.login_free_failures = 2;
        s.login_max_delay_secs = 1;
    })
    .await;
    assert_eq!(app.login("alice", "bad").await.status(), 401);
    assert_eq!(app.login("alice", "bad").await.status(), 401);
    let delayed = app.login("alice", ALICE_PW).await;
    assert!(delayed.headers().get("retry-after").is_some());
    assert_eq!(error_code(delayed).await, (429, "rate_limited".into()));
    app.clock.advance(Duration::from_millis(1100));
    assert_eq!(
        app.login("alice", ALICE_PW).await.status(),
        200,
        "the delay passes; no lockout"
    );
}

#[tokio::test]
async fn a_login_storm_never_stalls_health_checks() {
    let (_redis, app) = app_with_users(|s| {
        s.argon2_concurrency = 1;
        s.argon2_queue_ms = 50;
        s.login_ip_limit = 1000;
        s.workers = Some(2);
    })
    .await;
    let app = std::sync::Arc::new(app);
    let mut storm = Vec::new();
    for i in 0..40 {
        let app = app.clone();
        storm.push(tokio::spawn(async move {
            app.login(&format!("user{i}"), "password")
                .await
                .status()
                .as_u16()
        }));
    }
    for _ in 0..5 {
        let health = app
            .client
            .get(format!("{}/healthz", app.public))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
    }
    let mut busy = 0;
    for t in storm {
        let status = t.await.unwrap();
        assert!(matches!(status, 401 | 503), "{status}");
        busy += (status == 503) as usize;
    }
    assert!(
        busy > 0,
        "a saturated hasher answers 503 rather than queueing without bound"
    );
}

#[tokio::test]
async fn the_guard_answers_401_403_and_the_exact_rfc_9470_challenge() {
    let (_redis, app) = app_with_users(|_| {}).await;
    let path = "/v1/admin/users/u-alice/sessions";

    let anonymous = app
        .client
        .get(format!("{}{path}", app.public))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(!anonymous.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("insufficient"));

    let alice = TestApp::cookie_of(&app.login("alice", ALICE_PW).await);
    assert_eq!(
        error_code(app.get_bearer(path, &alice).await).await,
        (403, "insufficient_role".into())
    );

    let bob = bob_pwd_admin_session(&app).await;
    let challenged = app.get_bearer(path, &bob).await;
    assert_eq!(challenged.headers()["www-authenticate"], CHALLENGE_MFA_300);
    assert_eq!(
        error_code(challenged).await,
        (401, "insufficient_user_authentication".into())
    );

    // A fresh MFA login satisfies it.
    let bob_mfa = bob_session(&app).await;
    let listed = app.get_bearer(path, &bob_mfa).await;
    assert_eq!(listed.status(), 200);
}

#[tokio::test]
async fn step_up_reaches_only_the_level_proven_and_rotates_the_secret() {
    let (_redis, app) = app_with_users(|_| {}).await;
    let path = "/v1/admin/users/u-alice/sessions";
    let old = bob_pwd_admin_session(&app).await;

    // Password alone: pwd, never mfa for a TOTP-enrolled user.
    let response = app.step_up_bearer(&old, json!({"password": BOB_PW})).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["acr"], "pwd");
    let after_pwd = body["session_token"].as_str().unwrap().to_owned();
    assert_eq!(
        app.get_session_with_bearer(&old).await.status(),
        401,
        "the old secret died at once"
    );
    assert_eq!(
        error_code(app.get_bearer(path, &after_pwd).await).await.1,
        "insufficient_user_authentication"
    );

    // Wrong password: refused, session unchanged.
    let wrong = app
        .step_up_bearer(&after_pwd, json!({"password": "nope"}))
        .await;
    assert_eq!(error_code(wrong).await, (401, "invalid_credentials".into()));

    // TOTP: mfa.
    let response = app
        .step_up_bearer(&after_pwd, json!({"totp": bob_code(0)}))
        .await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["acr"], "mfa");
    assert_eq!(body["session"]["elevated_acr"], "mfa");
    let elevated = body["session_token"].as_str().unwrap().to_owned();
    assert_eq!(
        body["session"]["id"].as_str().unwrap(),
        elevated
            .trim_start_matches("tsr_s_")
            .split('.')
            .next()
            .unwrap(),
        "the session id stays; only the secret rotates"
    );
    assert_eq!(app.get_bearer(path, &elevated).await.status(), 200);
    assert_eq!(app.get_session_with_bearer(&after_pwd).await.status(), 401);
}

#[tokio::test]
async fn recent_authentication_expires_and_step_up_renews_it() {
    let (_redis, app) = app_with_users(|s| s.recent_auth_secs = 1).await;
    let first = TestApp::cookie_of(&app.login("alice", ALICE_PW).await);
    let _second = TestApp::cookie_of(&app.login("alice", ALICE_PW).await);
    app.clock.advance(Duration::from_millis(2100));
    let stale = app.delete_bearer("/v1/sessions?scope=others", &first).await;
    assert_eq!(
        stale.headers()["www-authenticate"],
        r#"Bearer error="insufficient_user_authentication", error_description="A stronger or more recent authentication is required", acr_values="pwd", max_age="1""#
    );
    assert_eq!(error_code(stale).await.0, 401);
    let body: Value = app
        .step_up_bearer(&first, json!({"password": ALICE_PW}))
        .await
        .json()
        .await
        .unwrap();
    let fresh = body["session_token"].as_str().unwrap();
    let done: Value = app
        .delete_bearer("/v1/sessions?scope=others", fresh)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(done["revoked"], 1);
}

#[tokio::test]
async fn an_operation_bound_grant_is_spent_once_and_only_on_the_same_operation() {
    let (_redis, app) = app_with_users(|_| {}).await;
    let token = bob_pwd_admin_session(&app).await;
    let payment = json!({"action": "payment", "amount": "120.00 EUR", "payee": "ACME GmbH"});
    let response = app
        .step_up_bearer(&token, json!({"totp": bob_code(0), "bind": payment}))
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["grant"]["expires_in"], 300);
    assert!(
        body["session"]["elevated_at"].is_null(),
        "a bound step-up elevates nothing else"
    );
    let token = body["session_token"].as_str().unwrap().to_owned();

    let guard = app.guard.clone();
    let session = guard
        .service()
        .authenticate(
            &tessera::session::SessionToken::parse(&token, guard.regions()).unwrap(),
            now(),
        )
        .await
        .unwrap();
    let need = tessera::session::policy::Requirement {
        acr: tessera::session::Acr::Mfa,
        max_age_secs: 300,
        role: None,
    };
    let other = json!({"action": "payment", "amount": "9999.00 EUR", "payee": "ACME GmbH"});
    let refused = guard
        .spend_grant(&session, other.as_object().unwrap(), &need)
        .await;
    assert_eq!(
        refused.unwrap_err().code(),
        "insufficient_user_authentication"
    );
    let reordered = json!({"payee": "ACME GmbH", "amount": "120.00 EUR", "action": "payment"});
    guard
        .spend_grant(&session, reordered.as_object().unwrap(), &need)
        .await
        .unwrap();
    let twice = guard
        .spend_grant(&session, payment.as_object().unwrap(), &need)
        .await;
    assert!(twice.is_err(), "a grant is single-use");
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn csrf_rules_cover_login_and_cookie_requests_but_not_bearer_ones() {
    let (_redis, app) = app_with_users(|_| {}).await;
    let foreign = app
        .client
        .post(format!("{}/v1/login", app.public))
        .header("origin", "https://evil.example")
        .json(&json!({"username": "alice", "password": ALICE_PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(foreign).await,
        (403, "cross_origin_request".into())
    );

    let login = app.login("alice", ALICE_PW).await;
    let cookie = TestApp::cookie_of(&login);
    let csrf = login.json::<Value>().await.unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let missing = app
        .client
        .post(format!("{}/v1/session/step-up", app.public))
        .headers(app.cookie_headers(&cookie))
        .json(&json!({"password": ALICE_PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(missing).await,
        (403, "csrf_token_missing".into())
    );

    let ok = app
        .client
        .post(format!("{}/v1/session/step-up", app.public))
        .headers(app.browser_unsafe_headers(&cookie, &csrf))
        .json(&json!({"password": ALICE_PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .starts_with("__Host-tessera=tsr_s_"));
    let body: Value = ok.json().await.unwrap();
    assert!(
        body.get("session_token").is_none(),
        "cookie clients get the new secret only as a cookie"
    );
    assert_ne!(
        body["csrf_token"].as_str().unwrap(),
        csrf,
        "the CSRF token rotates with the secret"
    );

    let bearer = app
        .step_up_bearer(&cookie, json!({"password": ALICE_PW}))
        .await;
    assert_eq!(
        bearer.status(),
        401,
        "the cookie's old secret was rotated away"
    );
}
