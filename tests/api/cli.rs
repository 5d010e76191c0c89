//! The operator's CLI against real Redis: `sessions list|revoke`, `keys list`, `completions`.
//! The CLI goes through the session service (audited, pushed to every node), so a running node
//! refuses what the CLI ended, at once.

use crate::helpers::*;
use std::process::Output;

fn tessera(app: &TestApp, args: &[&str]) -> Output {
    let mut command = tessera_binary();
    let s = &app.settings;
    command
        .args(args)
        .env("TESSERA_REDIS_URL", &s.redis_url)
        .env("TESSERA_REGION_REDIS", &s.region_redis)
        .env("TESSERA_REGION", s.region.as_str())
        .env("TESSERA_REGIONS", "eu,us")
        .env("TESSERA_KEY_PREFIX", &s.key_prefix)
        .env("TESSERA_KEYS_DIR", &s.keys_dir)
        .env("TESSERA_LOG", "warn")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[tokio::test]
async fn sessions_are_listed_and_ended_from_the_cli_and_the_node_refuses_them_at_once() {
    let redis = RedisServer::shared();
    let app = spawn_app(&redis).await;
    let a = app.create_session("cli-user").await;
    let b = app.create_session("cli-user").await;
    let jwt = app.access_token(&a.token).await;

    let listed = stdout(&tessera(&app, &["sessions", "list", "--user", "cli-user"]));
    let views: Vec<serde_json::Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(views.len(), 2, "{listed}");
    assert!(views.iter().all(|v| v["user_id"] == "cli-user"));
    assert!(
        !listed.contains(&a.token) && !listed.contains("tsr_s_"),
        "no secret listed"
    );

    // One session.
    let id = a.session["id"].as_str().unwrap();
    let out = stdout(&tessera(
        &app,
        &["sessions", "revoke", "--user", "cli-user", "--session", id],
    ));
    assert_eq!(out.trim(), "revoked 1");
    assert_eq!(app.get_session_with_cookie(&a.token).await.status(), 401);
    wait_until("the running node refuses the token", || async {
        app.check_jwt(&jwt).await == 401
    })
    .await;
    assert_eq!(app.get_session_with_cookie(&b.token).await.status(), 200);
    // An unknown session of the user: an error and a non-zero exit.
    let missing = tessera(
        &app,
        &["sessions", "revoke", "--user", "cli-user", "--session", id],
    );
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no live session"));

    // All of them.
    let out = stdout(&tessera(
        &app,
        &["sessions", "revoke", "--user", "cli-user"],
    ));
    assert_eq!(out.trim(), "revoked 1");
    assert_eq!(app.get_session_with_cookie(&b.token).await.status(), 401);
    // Audited like the admin API.
    let events = app.audit_events("user_id=cli-user").await;
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "session_revoked" && e["actor"] == "admin-key:cli"),
        "{events:?}"
    );
}

#[tokio::test]
async fn keys_list_shows_the_signing_key_and_completions_are_printed() {
    let redis = RedisServer::shared();
    let app = spawn_app(&redis).await;
    let kids = app.kids().await;
    let listed = stdout(&tessera(&app, &["keys", "list"]));
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), kids.len(), "{listed}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("  signing  ") && l.starts_with(&kids[0])),
        "{listed}"
    );
    for shell in ["bash", "zsh", "fish"] {
        let script = stdout(&tessera(&app, &["completions", shell]));
        assert!(
            script.contains("sessions") && script.contains("revoke"),
            "{shell}"
        );
    }
    let help = stdout(&tessera(&app, &["sessions", "revoke", "--help"]));
    assert!(help.contains("--session") && help.contains("every session of the user"));
}

#[tokio::test]
async fn config_check_reports_each_regions_redis_and_fails_on_one_it_cannot_use() {
    let redis = RedisServer::shared();
    let app = spawn_app(&redis).await;
    let out = tessera(&app, &["config", "check"]);
    let settings = stdout(&out);
    serde_json::from_str::<serde_json::Value>(&settings).expect("stdout is the settings' JSON");
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    for region in ["eu", "us"] {
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(&format!("# region {region} (")))
            .collect();
        assert!(!lines.is_empty(), "no report of {region}:\n{text}");
        for line in lines {
            assert!(line.contains(": Redis 7."), "{line}");
            assert!(line.contains("maxmemory-policy noeviction"), "{line}");
            // The test servers keep nothing on disk: said, with the fix.
            assert!(line.contains("AOF off"), "{line}");
        }
    }
    assert!(text.contains("warning: AOF is off"), "{text}");
    assert!(
        !text.contains("tessera-test-password"),
        "a password was printed"
    );

    if topology() != Topology::Single {
        return; // the failures below need no cluster; once per run
    }
    let evicting = RedisServer::start_with(&["--maxmemory-policy", "allkeys-lru"]);
    let gone = format!("redis://127.0.0.1:{}", free_port());
    for (url, says) in [(evicting.url(), "PROBLEM: "), (gone, "UNREACHABLE: ")] {
        let out = tessera_binary()
            .args(["config", "check"])
            .env("TESSERA_REDIS_URL", &url)
            .env("TESSERA_KEYS_DIR", &app.settings.keys_dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{url}: {stderr}");
        assert!(stderr.contains(says), "{url}: {stderr}");
        assert!(stderr.contains("Tessera cannot use: region "), "{stderr}");
    }
}

#[test]
fn a_reader_that_goes_away_ends_the_cli_quietly() {
    // `tessera completions bash | head -c 10` panicked with a backtrace (attack on issue 13).
    let mut child = tessera_binary()
        .args(["completions", "bash"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader is gone before the first write
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{:?} {stderr}", out.status);
}
