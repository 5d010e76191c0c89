//! Metrics: a latency histogram per route template, method and status, whose labels stay as
//! few as the routes whatever paths clients send; and the lifecycle, Redis, feed and cache
//! series an SRE reads, each moved by the real thing it counts. (nextest runs each test in a
//! process of its own, so the process-wide recorder holds this test's numbers only.)

use crate::helpers::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;

#[tokio::test]
async fn every_route_label_is_a_template_whatever_the_paths() {
    let redis = RedisServer::shared();
    let app = spawn_app(&redis).await;
    let created = app.create_session("metrics-user").await;
    let mut sent = Vec::new();
    for _ in 0..25 {
        let user = random_name("user-");
        let session = random_name("v1_eu_ab12_");
        let junk = random_name("junk-");
        sent.extend([user.clone(), session.clone(), junk.clone()]);
        app.admin_get(&format!("/admin/users/{user}/sessions"))
            .await;
        app.client
            .delete(format!("{}/v1/sessions/{session}", app.public))
            .bearer_auth(&created.token)
            .send()
            .await
            .unwrap();
        app.client
            .get(format!("{}/{junk}?token={junk}", app.public))
            .send()
            .await
            .unwrap();
    }
    app.get_session_with_cookie(&created.token).await;
    let text = app.admin_get("/metrics").await.text().await.unwrap();

    let mut routes = BTreeSet::new();
    let mut statuses = BTreeSet::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("tessera_http_request_duration_seconds_bucket{"))
    {
        let label = |name: &str| {
            let start = line.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
            line[start..][..line[start..].find('"').unwrap()].to_owned()
        };
        routes.insert(label("route"));
        statuses.insert(label("status"));
    }
    for value in &sent {
        assert!(!text.contains(value.as_str()), "{value} became a label");
    }
    for route in [
        "/admin/users/{user_id}/sessions",
        "/v1/sessions/{id}",
        "/v1/session",
        "(no route)",
    ] {
        assert!(routes.contains(route), "{route} missing from {routes:?}");
    }
    // 75 distinct paths, a handful of series.
    assert!(routes.len() <= 8, "{routes:?}");
    assert!(statuses.iter().all(|s| s.len() == 3), "{statuses:?}");
    assert!(text.contains("# TYPE tessera_http_request_duration_seconds histogram"));
}

/// The sum of every sample of `name` whose labels include all of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn lifecycle_redis_feed_and_cache_series_count_what_happened() {
    let (_redis, app) = app_with_users(|s| s.refresh_grace_secs = 0).await;
    let metrics = || async { app.admin_get("/metrics").await.text().await.unwrap() };

    // Logins: two failures of two kinds, then a native login (a session created).
    assert_eq!(app.login("alice", "wrong").await.status(), 401);
    assert_eq!(app.login("nobody-at-all", "wrong").await.status(), 401);
    let login = app.native_login().await;
    let r0 = login["refresh_token"].as_str().unwrap().to_owned();

    // Refresh: one rotation, then the spent token again after the (zero) grace window: reuse,
    // the session ends. (Within the same millisecond even a zero window is still open.)
    assert_eq!(app.refresh(&r0).await.status(), 200);
    app.clock.advance(std::time::Duration::from_millis(1200));
    assert_eq!(
        error_code(app.refresh(&r0).await).await,
        (401, "refresh_token_reused".into())
    );

    // Step-up on a new session, then its logout.
    let second: Value = app
        .admin_post(
            "/admin/sessions",
            &json!({"user_id": "u-alice", "acr": "pwd"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let token = second["session_token"].as_str().unwrap().to_owned();
    let stepped = app
        .step_up_bearer(&token, json!({"password": crate::users::ALICE_PW}))
        .await;
    assert_eq!(stepped.status(), 200);
    let token = stepped.json::<Value>().await.unwrap()["session_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // An access token checked twice: the second check is a cache hit.
    let jwt = app.access_token(&token).await;
    assert_eq!(app.check_jwt(&jwt).await, 200);
    assert_eq!(app.check_jwt(&jwt).await, 200);
    let logout = app
        .client
        .post(format!("{}/v1/logout", app.public))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(logout.status().is_success(), "{}", logout.status());

    // An admin kill.
    let victim = app.create_session("metrics-victim").await;
    let sid = victim.session["id"].as_str().unwrap();
    let killed = app
        .client
        .delete(format!(
            "{}/admin/users/metrics-victim/sessions/{sid}",
            app.admin
        ))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert!(killed.status().is_success(), "{}", killed.status());

    // The node's own feed follower applies those revocations: their lag is measured.
    wait_until("feed lag observed", || async {
        sample(
            &metrics().await,
            "tessera_revocation_feed_lag_seconds_count",
            &[("region", "eu")],
        ) >= 1.0
    })
    .await;

    let text = metrics().await;
    let at = |name: &str, labels: &[(&str, &str)]| sample(&text, name, labels);
    assert_eq!(
        at(
            "tessera_logins_failed_total",
            &[("reason", "wrong_password")]
        ),
        1.0
    );
    assert_eq!(
        at("tessera_logins_failed_total", &[("reason", "unknown_user")]),
        1.0
    );
    assert_eq!(
        at("tessera_sessions_created_total", &[]),
        3.0,
        "a login, two by the admin API"
    );
    assert_eq!(
        at("tessera_refreshes_total", &[("outcome", "rotated")]),
        1.0
    );
    assert_eq!(
        at("tessera_refreshes_total", &[("outcome", "refused")]),
        1.0
    );
    assert_eq!(at("tessera_refresh_reuse_detected_total", &[]), 1.0);
    assert_eq!(at("tessera_step_ups_total", &[]), 1.0);
    let revoked = |reason| at("tessera_sessions_revoked_total", &[("reason", reason)]);
    assert_eq!(revoked("refresh_reuse"), 1.0);
    assert_eq!(revoked("logout"), 1.0);
    assert_eq!(revoked("admin"), 1.0);
    assert_eq!(
        at(
            "tessera_verified_token_cache_lookups_total",
            &[("result", "miss")]
        ),
        1.0
    );
    assert_eq!(
        at(
            "tessera_verified_token_cache_lookups_total",
            &[("result", "hit")]
        ),
        1.0
    );
    assert!(
        at(
            "tessera_redis_command_duration_seconds_count",
            &[("region", "eu")]
        ) > 10.0
    );
    assert!(text.contains("# HELP tessera_sessions_revoked_total"));
    assert!(text.contains("tessera_revocation_feed_staleness_seconds"));

    // Every series written is a documented one.
    for line in text.lines().filter(|l| l.starts_with("tessera_")) {
        assert!(is_known(series_name(line)), "undocumented series: {line}");
    }

    // Nothing a client chose became a label value.
    for line in text.lines().filter(|l| l.starts_with("tessera_")) {
        for secret in ["metrics-victim", "alice", "nobody-at-all", sid] {
            assert!(!line.contains(secret), "{secret} in {line}");
        }
    }

    // An embedded verifier's JWKS fetches.
    let verifier = tessera::verify::Verifier::start(tessera::verify::VerifierConfig::new(
        format!("{}/.well-known/jwks.json", app.public),
        tessera::token::Validation {
            issuer: app.settings.issuer.clone(),
            audiences: vec![app.settings.audience.clone()],
            leeway_secs: 5,
            max_lifetime_secs: 900,
        },
    ))
    .await
    .unwrap();
    assert!(
        sample(
            &metrics().await,
            "tessera_jwks_fetches_total",
            &[("outcome", "ok")]
        ) >= 1.0
    );
    drop(verifier);
}

/// A sample line's series, without the histogram suffixes.
fn series_name(line: &str) -> &str {
    let name = line.split(['{', ' ']).next().unwrap();
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .filter(|base| is_known(base))
        .unwrap_or(name)
}

fn is_known(name: &str) -> bool {
    tessera::meters::SERIES
        .iter()
        .any(|(known, ..)| *known == name)
}

#[test]
fn the_dashboard_and_the_readme_name_exactly_the_series_tessera_writes() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/deploy/grafana/tessera-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut used = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for (at, _) in expr.match_indices("tessera_") {
                let name: String = expr[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                used.insert(series_name(&name).to_owned());
            }
        }
    }
    for name in &used {
        assert!(
            is_known(name),
            "the dashboard reads {name}, which Tessera never writes"
        );
    }
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    for (name, ..) in tessera::meters::SERIES {
        assert!(
            readme.contains(&format!("`{name}`")),
            "{name} is not in the README"
        );
    }
    // The dashboard shows the series an SRE asks for first.
    for name in [
        "tessera_http_request_duration_seconds",
        "tessera_sessions_revoked_total",
        "tessera_redis_command_duration_seconds",
        "tessera_revocation_feed_lag_seconds",
        "tessera_verified_token_cache_lookups_total",
    ] {
        assert!(used.contains(name), "{name} is not on the dashboard");
    }
}
