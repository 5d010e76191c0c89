//! Encrypted Redis: `rediss://` with a certificate verified against a CA made by the test, and
//! the transports Tessera refuses at start (plain `redis://` to another host, `#insecure`).

use crate::helpers::*;

fn tls_settings(redis: &RedisServer, ca: &TestCa) -> tessera::Settings {
    let mut settings = test_settings(redis);
    settings.redis_ca_file = Some(ca.ca_file());
    settings.regions = tessera::config::RegionsSetting::Names(vec![]);
    settings.region_redis = String::new();
    settings.region = tessera::session::Region::parse("eu").unwrap();
    settings
}

async fn start_error(settings: tessera::Settings) -> String {
    let err = tessera::Application::build(settings)
        .await
        .err()
        .expect("must refuse to start");
    format!("{err:#}")
}

#[tokio::test]
async fn sessions_live_and_die_over_tls_with_a_verified_certificate() {
    let ca = TestCa::generate();
    let redis = RedisServer::start_tls(&ca);
    let settings = tls_settings(&redis, &ca);
    assert!(settings.redis_url.starts_with("rediss://"));
    let app = spawn_app_with(settings).await;

    let created = app.create_session("tls-user").await;
    assert_eq!(
        app.get_session_with_cookie(&created.token).await.status(),
        200
    );
    let jwt = app.access_token(&created.token).await;
    assert_eq!(app.check_jwt(&jwt).await, 200);
    assert_eq!(
        app.logout_with_cookie(&created.token, &created.csrf)
            .await
            .status(),
        200
    );
    assert_eq!(
        app.get_session_with_cookie(&created.token).await.status(),
        401
    );
    assert_eq!(app.check_jwt(&jwt).await, 401);
    assert_eq!(app.readiness().await["status"], "ready");

    // The server speaks nothing but TLS (its plain port is off), so all of that went over it;
    // and the records are there, written by the ACL user.
    let mut conn = redis.plain_conn();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", app.settings.key_prefix))
        .query(&mut conn)
        .unwrap();
    assert!(!keys.is_empty());
}

#[tokio::test]
async fn a_redis_certificate_that_does_not_verify_stops_the_start() {
    let ca = TestCa::generate();
    let redis = RedisServer::start_tls(&ca);

    // The system's roots do not know the test CA.
    let mut settings = tls_settings(&redis, &ca);
    settings.redis_ca_file = None;
    let err = start_error(settings).await;
    assert!(err.contains("cannot reach Redis"), "{err}");

    // Nor does another CA.
    let other = TestCa::generate();
    let settings = tls_settings(&redis, &other);
    let err = start_error(settings).await;
    assert!(err.contains("cannot reach Redis"), "{err}");

    // A name the certificate does not carry.
    let mut settings = tls_settings(&redis, &ca);
    settings.redis_url = settings.redis_url.replace("127.0.0.1", "127.0.0.2");
    let err = start_error(settings).await;
    assert!(err.contains("cannot reach Redis"), "{err}");
}

#[tokio::test]
async fn plaintext_to_another_host_and_unverified_tls_are_refused_at_start() {
    let redis = RedisServer::shared();
    let base = test_settings(&redis);
    for (url, why) in [
        ("redis://10.0.0.5:6379", "must use rediss://"),
        ("redis://redis.internal:6379/0", "must use rediss://"),
        (
            "redis://user:s3cret@[2001:db8::1]:6379",
            "must use rediss://",
        ),
        (
            "redis+cluster://127.0.0.1:7000,10.0.0.6:7000",
            "must use rediss://",
        ),
        ("rediss://10.0.0.5:6379/#insecure", "#insecure"),
        (
            "rediss+cluster://10.0.0.5:7000,10.0.0.6:7000#insecure",
            "#insecure",
        ),
    ] {
        let settings = tessera::Settings {
            redis_url: url.into(),
            regions: tessera::config::RegionsSetting::Names(vec![]),
            region_redis: String::new(),
            ..base.clone()
        };
        let err = format!("{:#}", settings.validate().unwrap_err());
        assert!(
            err.contains(why) && err.contains("TESSERA_REDIS_URL"),
            "{url}: {err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
        assert!(start_error(settings).await.contains(why), "{url}");
    }
    // Another region's Redis follows the same rule.
    let settings = tessera::Settings {
        region_redis: "us=redis://10.1.0.5:6379".into(),
        ..base.clone()
    };
    let err = format!("{:#}", settings.validate().unwrap_err());
    assert!(
        err.contains("region 'us'") && err.contains("rediss://"),
        "{err}"
    );

    // This machine may be reached in the clear.
    for url in [
        "redis://127.0.0.1:6379",
        "redis://localhost:6379",
        "redis://[::1]:6379",
        "redis://127.0.0.2:6379",
        "rediss://10.0.0.5:6379",
    ] {
        let settings = tessera::Settings {
            redis_url: url.into(),
            regions: tessera::config::RegionsSetting::Names(vec![]),
            region_redis: String::new(),
            ..base.clone()
        };
        settings
            .validate()
            .unwrap_or_else(|e| panic!("{url}: {e:#}"));
    }
}

/// The README's `ACL SETUSER` line is the one the whole suite runs under
/// (`deploy/redis/tessera-acl.txt`, see `helpers::acl_user_args`).
#[test]
fn the_readme_shows_the_acl_line_the_suite_runs_under() {
    let rules = include_str!("../../deploy/redis/tessera-acl.txt").trim();
    let line = format!("ACL SETUSER tessera on >$TESSERA_REDIS_PASSWORD {rules}");
    let readme = include_str!("../../README.md");
    assert!(readme.contains(&line), "README must show:\n{line}");
}

#[tokio::test]
async fn keys_outside_the_acl_pattern_are_refused_by_redis_and_the_start_says_why() {
    let redis = RedisServer::start();
    let mut settings = test_settings(&redis);
    settings.key_prefix = "other".into(); // the test ACL covers t*, as tsr:* in production
    let err = start_error(settings).await;
    assert!(
        err.contains("NOPERM") && err.contains("~other:*") && err.contains("Least-privilege"),
        "{err}"
    );
    assert!(!err.contains(ACL_PASSWORD), "{err}");
    // Redis logged the refusal (the drop check would fail the test on it: clear it).
    let mut conn = redis.plain_conn();
    assert!(!acl_refusals(&mut conn).is_empty());
    let () = redis::cmd("ACL")
        .arg("LOG")
        .arg("RESET")
        .query(&mut conn)
        .unwrap();
}

#[tokio::test]
async fn a_redis_ca_file_that_is_not_a_certificate_or_would_be_ignored_is_refused() {
    let ca = TestCa::generate();
    let redis = RedisServer::start_tls(&ca);
    let mut settings = tls_settings(&redis, &ca);
    settings.redis_ca_file = Some(ca.dir.join("server.key"));
    let err = format!("{:#}", settings.validate().unwrap_err());
    assert!(
        err.contains("not a readable PEM file of certificates"),
        "{err}"
    );

    let mut settings = test_settings(&RedisServer::shared());
    settings.redis_ca_file = Some(ca.ca_file());
    let err = format!("{:#}", settings.validate().unwrap_err());
    assert!(err.contains("no Redis URL uses rediss://"), "{err}");
}
